//! The filter seam. The filter runs before the `250`, may do async lookups
//! (DNS, clamd), may rewrite the message (HTML disarming), and returns a
//! verdict per recipient. Since DATA has one reply for all recipients, the
//! message is refused at SMTP time only when every verdict is `Reject`.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Instant;

use postroom_filter::{Action, Report, Thresholds};
use postroom_store::AccountId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Deliver,
    /// Deliver into the recipient's Junk folder.
    Junk,
    /// Hold for an administrator's release.
    Quarantine(String),
    /// Refuse (only when every recipient's verdict is a refusal).
    Reject(String),
    /// Accept and drop: nothing is stored or sent for this recipient.
    Discard,
}

impl Verdict {
    /// The action's name, as `postroom explain` and the log print it.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Deliver => "deliver",
            Verdict::Junk => "junk",
            Verdict::Quarantine(_) => "quarantine",
            Verdict::Reject(_) => "reject",
            Verdict::Discard => "discard",
        }
    }
}

/// One accepted recipient as the filter sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterRecipient {
    /// As given in RCPT TO.
    pub address: String,
    /// The hosted domain: the mailbox's when it reaches one (an alias
    /// domain's mail counts as its target's), else the address's, lower
    /// case (empty for a bare `Postmaster`).
    pub domain: String,
    /// The canonical address of the mailbox it reaches, when it reaches a
    /// local one (the first, for an alias of several).
    pub mailbox: Option<String>,
    /// The mailbox it reaches, when it reaches a local one (the first,
    /// for an alias of several).
    pub account: Option<AccountId>,
}

/// What the filter sees and may change.
pub struct FilterInput<'a> {
    pub peer: IpAddr,
    pub helo: &'a str,
    /// Whether the message came over TLS.
    pub tls: bool,
    /// The SMTP AUTH user of a submission.
    pub auth_user: Option<&'a str>,
    pub mail_from: Option<&'a str>,
    /// One verdict each is returned.
    pub recipients: &'a [FilterRecipient],
    /// The client is waiting for its reply: every check ends by then.
    pub deadline: Instant,
    /// The message; a filter that disarms HTML rewrites it in place.
    pub body: &'a mut Vec<u8>,
}

/// What the filter decided.
#[derive(Debug, Default)]
pub struct FilterOutcome {
    /// One per recipient, in order.
    pub verdicts: Vec<Verdict>,
    /// Per recipient: header lines (each ending in CRLF) for its copy,
    /// after its `Received:` (`Authentication-Results`, `X-Spam-*`). Kept
    /// out of the shared body, so a message the filter did not rewrite is
    /// stored as it came (its spool file linked into place, not copied).
    pub headers: Vec<Vec<u8>>,
    /// Answer the whole transaction `451 4.7.1` with this reason (a check
    /// that must not be skipped could not run).
    pub tempfail: Option<String>,
    /// Whether `body` was changed.
    pub changed: bool,
    /// What the checks found and the score per recipient, for the log
    /// line and `postroom explain`.
    pub report: Option<FilterReport>,
}

/// The chain's report with the score each recipient's action came from.
#[derive(Clone, Debug)]
pub struct FilterReport {
    pub report: Report,
    /// Per recipient.
    pub scores: Vec<f64>,
    /// Per recipient: whether the sender was whitelisted for it.
    pub whitelisted: Vec<bool>,
    /// Per recipient: the thresholds that applied.
    pub thresholds: Vec<Thresholds>,
    /// The lines the rewriter changed.
    pub changes: Vec<String>,
}

pub type FilterFuture<'a> = Pin<Box<dyn Future<Output = FilterOutcome> + Send + 'a>>;

pub trait Filter: Send + Sync {
    fn check<'a>(&'a self, input: FilterInput<'a>) -> FilterFuture<'a>;
    /// Whether the filter reads (or rewrites) the body. Bodies are spooled
    /// to disk as they arrive; one that a filter reads is loaded whole,
    /// within the pipeline's memory budget. A filter that says `false` is
    /// given only the header section, and must not change it.
    fn reads_body(&self) -> bool {
        true
    }
}

/// The filter when `[filter] enabled = false`: every recipient gets the
/// message, unscored.
pub struct NoFilter;

impl Filter for NoFilter {
    fn check<'a>(&'a self, input: FilterInput<'a>) -> FilterFuture<'a> {
        let n = input.recipients.len();
        Box::pin(async move {
            FilterOutcome {
                verdicts: vec![Verdict::Deliver; n],
                headers: vec![Vec::new(); n],
                ..Default::default()
            }
        })
    }

    fn reads_body(&self) -> bool {
        false
    }
}

/// The verdict for an action; `why` names the top symbols.
pub fn verdict_for(action: Action, why: &str) -> Verdict {
    match action {
        Action::Deliver => Verdict::Deliver,
        Action::Junk => Verdict::Junk,
        Action::Quarantine => Verdict::Quarantine(why.to_string()),
        Action::Reject => Verdict::Reject(why.to_string()),
        Action::Discard => Verdict::Discard,
    }
}
