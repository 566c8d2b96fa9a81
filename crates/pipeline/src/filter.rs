//! The filter seam. The filter runs before the `250`, may do async lookups
//! (DNS, clamd), may rewrite the message (HTML disarming), and returns a
//! verdict per recipient. Since DATA has one reply for all recipients, the
//! message is refused at SMTP time only when every verdict is `Reject`.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Deliver,
    /// Deliver into the recipient's Junk folder.
    Junk,
    /// Hold for an administrator's release.
    Quarantine(String),
    /// Refuse (only when every recipient's verdict is a refusal).
    Reject(String),
}

/// What the filter sees and may change.
pub struct FilterInput<'a> {
    pub peer: IpAddr,
    pub helo: &'a str,
    pub mail_from: Option<&'a str>,
    /// The RCPT addresses as given, one verdict each is returned.
    pub recipients: &'a [String],
    /// The message; a filter that disarms HTML rewrites it in place.
    pub body: &'a mut Vec<u8>,
}

pub type FilterFuture<'a> = Pin<Box<dyn Future<Output = Vec<Verdict>> + Send + 'a>>;

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

/// The filter until the content filter exists: every recipient gets the
/// message.
pub struct NoFilter;

impl Filter for NoFilter {
    fn check<'a>(&'a self, input: FilterInput<'a>) -> FilterFuture<'a> {
        let n = input.recipients.len();
        Box::pin(async move { vec![Verdict::Deliver; n] })
    }

    fn reads_body(&self) -> bool {
        false
    }
}
