//! Recipient verification for gateway domains: ask the customer's own
//! server whether it would take a recipient (a "callout", as Postfix's
//! reject_unverified_recipient does), without sending anything.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::TcpStream;

use crate::client::{Conn, RemoteReply};

/// What the customer's server said about a recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CalloutAnswer {
    Accepted,
    /// A 5xx to RCPT: the address does not exist there.
    Refused(RemoteReply),
    /// A 4xx, or the server could not be asked: try again later.
    Unavailable(String),
}

/// EHLO, `MAIL FROM:<>` (so nothing the server sends back can loop),
/// `RCPT TO`, then QUIT before DATA (RFC 5321 4.1.1.10: nothing is
/// delivered).
pub async fn callout(addr: SocketAddr, helo: &str, recipient: &str, timeout: Duration) -> CalloutAnswer {
    match ask(addr, helo, recipient, timeout).await {
        Ok(r) if r.is_positive() => CalloutAnswer::Accepted,
        Ok(r) if r.is_permanent() => CalloutAnswer::Refused(r),
        Ok(r) => CalloutAnswer::Unavailable(r.to_string()),
        Err(e) => CalloutAnswer::Unavailable(e),
    }
}

async fn ask(
    addr: SocketAddr,
    helo: &str,
    recipient: &str,
    timeout: Duration,
) -> Result<RemoteReply, String> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connection to {addr} timed out"))?
        .map_err(|e| format!("connection to {addr} failed: {e}"))?;
    let mut conn = Conn {
        io: BufReader::new(Box::new(tcp)),
        timeout,
    };
    let greeting = conn.reply().await?;
    if greeting.code != 220 {
        return Err(format!("greeting: {greeting}"));
    }
    let mut hello = conn.command(&format!("EHLO {helo}")).await?;
    if !hello.is_positive() {
        hello = conn.command(&format!("HELO {helo}")).await?;
    }
    if !hello.is_positive() {
        return Err(format!("HELO refused: {hello}"));
    }
    let mail = conn.command("MAIL FROM:<>").await?;
    if !mail.is_positive() {
        return Err(format!("MAIL FROM:<> refused: {mail}"));
    }
    let rcpt = conn.command(&format!("RCPT TO:<{recipient}>")).await?;
    let _ = conn.command("QUIT").await;
    Ok(rcpt)
}
