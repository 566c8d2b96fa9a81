//! The check seam: what every check sees ([`Scan`]) and what it reports
//! ([`Findings`]).

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Instant;

use async_trait::async_trait;
use serde::Serialize;

use crate::symbol::Symbol;

/// The SMTP transaction around the message.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub peer: IpAddr,
    /// The client's reverse DNS name, when one was looked up and confirmed.
    pub peer_rdns: Option<String>,
    pub helo: String,
    pub tls: bool,
    /// The authenticated user of a submission; such mail skips the inbound
    /// sender checks.
    pub auth_user: Option<String>,
    /// `None` for the null sender `<>`.
    pub mail_from: Option<String>,
    pub recipients: Vec<Recipient>,
    /// The client is waiting for its `250`: every check ends by then.
    pub deadline: Instant,
}

impl Envelope {
    /// A message from a client that did not log in, over plain SMTP, with
    /// no recipients named (what `postroom filter check`, the examples and
    /// the tests score).
    pub fn unauthenticated(peer: IpAddr, helo: &str, mail_from: Option<&str>, deadline: Instant) -> Envelope {
        Envelope {
            peer,
            peer_rdns: None,
            helo: helo.to_string(),
            tls: false,
            auth_user: None,
            mail_from: mail_from.map(str::to_string),
            recipients: Vec::new(),
            deadline,
        }
    }
}

/// One accepted recipient.
#[derive(Clone, Debug)]
pub struct Recipient {
    /// As given in RCPT TO.
    pub address: String,
    /// The hosted domain it belongs to (lower case).
    pub domain: String,
    /// The mailbox's account id when it is a local mailbox.
    pub account: Option<i64>,
}

/// What a check sees: the envelope and the message, raw and parsed.
pub struct Scan<'a> {
    pub envelope: &'a Envelope,
    pub raw: &'a [u8],
    pub message: &'a mail_parser::Message<'a>,
}

/// A finding that decides alone, whatever the score.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Forced {
    /// `550 5.7.1`: a virus, a phishing-blocklisted link, a forbidden
    /// attachment.
    Reject { symbol: String, reason: String },
    /// `451 4.7.1`: a check that must not be skipped could not run (clamd
    /// unreachable or past the deadline).
    TempFail { symbol: String, reason: String },
}

/// What one check reports.
#[derive(Debug, Default)]
pub struct Findings {
    pub symbols: Vec<Symbol>,
    pub forced: Option<Forced>,
    /// Header fields to add, name and value (`Authentication-Results`).
    pub headers: Vec<(String, String)>,
}

impl Findings {
    pub fn add(&mut self, name: impl Into<Cow<'static, str>>, score: f64, detail: impl Into<String>) {
        self.symbols.push(Symbol::new(name, score, detail));
    }

    /// A temporary failure outranks a rejection: the message is not
    /// accepted unscanned, and its sender tries again.
    pub fn force(&mut self, forced: Forced) {
        let replace = matches!(
            (&self.forced, &forced),
            (None, _) | (Some(Forced::Reject { .. }), Forced::TempFail { .. })
        );
        if replace {
            self.forced = Some(forced);
        }
    }

    pub fn add_header(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.headers.push((name.into(), value.into()));
    }
}

/// One check of the chain.
#[async_trait]
pub trait Check: Send + Sync {
    /// A short lower-case name for logs (`sender`, `links`, `clamav`).
    fn name(&self) -> &'static str;

    async fn check(&self, scan: &Scan<'_>, out: &mut Findings);

    /// Whether the message must be tempfailed when this check cannot finish
    /// by the deadline (clamd), rather than scored without it (DNS).
    fn fail_closed(&self) -> bool {
        false
    }

    /// Whether a whitelisted sender skips this check's score. The virus
    /// scan, the phishing blocklist and the attachment rules say `false`.
    fn whitelist_skips(&self) -> bool {
        true
    }
}

/// The message as changed by a rewriter, and what was changed.
#[derive(Clone, Debug)]
pub struct Rewritten {
    pub message: Vec<u8>,
    /// One line per change, for the changes header and the report
    /// (`removed <script>`, `disabled onclick`).
    pub changes: Vec<String>,
}

/// A stage that changes the message after scoring (HTML disarming).
pub trait Rewriter: Send + Sync {
    /// `None` when nothing needed changing.
    fn rewrite(&self, scan: &Scan<'_>) -> Option<Rewritten>;
}
