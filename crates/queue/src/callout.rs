//! Recipient verification for gateway domains: ask the customer's own
//! server whether it would take a recipient (a "callout", as Postfix's
//! reject_unverified_recipient does), without sending anything.

use std::net::SocketAddr;
use std::time::Duration;

use crate::client::{connect, RemoteReply};

/// What the customer's server said about a recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CalloutAnswer {
    Accepted,
    /// A 5xx to RCPT: the address does not exist there.
    Refused(RemoteReply),
    /// A 4xx, or the server could not be asked: try again later.
    Unavailable(String),
}

/// Connects (no TLS: only an address is asked), EHLO, then
/// `Session::verify_recipient` and QUIT: nothing is delivered (RFC 5321
/// 4.1.1.10).
pub async fn callout(addr: SocketAddr, helo: &str, recipient: &str, timeout: Duration) -> CalloutAnswer {
    let mut session = match connect(addr, helo, None, &addr.ip().to_string(), timeout).await {
        Ok(s) => s,
        Err(e) => return CalloutAnswer::Unavailable(e),
    };
    let answer = session.verify_recipient(recipient).await;
    session.quit().await;
    match answer {
        Ok(r) if r.is_positive() => CalloutAnswer::Accepted,
        Ok(r) if r.is_permanent() => CalloutAnswer::Refused(r),
        Ok(r) => CalloutAnswer::Unavailable(r.to_string()),
        Err(e) => CalloutAnswer::Unavailable(e),
    }
}
