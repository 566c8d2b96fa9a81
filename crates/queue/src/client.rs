//! The SMTP client side of delivery: a `Session` is one connection that
//! carries one transaction after another (PIPELINING when offered),
//! with opportunistic STARTTLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

/// A reply from the remote server: code and text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReply {
    pub code: u16,
    pub text: String,
}

impl RemoteReply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

impl std::fmt::Display for RemoteReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// Parses one (possibly multi-line) reply from lines already read.
/// Pure; the async reader below feeds it.
pub fn parse_reply(lines: &[String]) -> Option<RemoteReply> {
    let last = lines.last()?;
    let code: u16 = last.get(..3)?.parse().ok()?;
    let text = lines
        .iter()
        .map(|l| l.get(4..).unwrap_or("").trim_end().to_string())
        .collect::<Vec<_>>()
        .join(" / ");
    Some(RemoteReply { code, text })
}

/// Opportunistic TLS (RFC 7435): encrypt when offered, without
/// authenticating the server — as Postfix's `smtp_tls_security_level =
/// may`. Refusing unverifiable certificates would only push delivery back
/// to plaintext.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub fn opportunistic_tls() -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth()
        });
    match config {
        Ok(c) => TlsConnector::from(Arc::new(c)),
        // Only if ring lacked the default protocol versions; use plain rustls defaults.
        Err(_) => TlsConnector::from(Arc::new(
            ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )),
    }
}

/// What happened to each recipient of one attempt.
#[derive(Debug, Clone)]
pub enum RcptOutcome {
    Delivered(RemoteReply),
    /// Try again later (4xx, or the connection failed).
    Deferred(String),
    /// Give up and bounce (5xx).
    Failed(RemoteReply),
    /// RCPT got 452: too many recipients for this transaction; the
    /// recipient goes in the next one (RFC 5321 4.5.3.1.10).
    TooMany(RemoteReply),
}

pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub(crate) struct Conn {
    pub(crate) io: BufReader<Box<dyn Stream>>,
    pub(crate) timeout: Duration,
}

impl Conn {
    pub(crate) async fn reply(&mut self) -> Result<RemoteReply, String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(self.timeout, self.io.read_line(&mut line))
                .await
                .map_err(|_| "timeout waiting for the server".to_string())?
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed by the server".into());
            }
            if line.len() > 4096 || lines.len() > 100 {
                return Err("reply too long".into());
            }
            let done = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.trim_end().to_string());
            if done {
                return parse_reply(&lines).ok_or_else(|| format!("malformed reply: {}", lines.join(" ")));
            }
        }
    }

    async fn send(&mut self, data: &[u8]) -> Result<(), String> {
        tokio::time::timeout(self.timeout, async {
            self.io.get_mut().write_all(data).await?;
            self.io.get_mut().flush().await
        })
        .await
        .map_err(|_| "timeout sending".to_string())?
        .map_err(|e| e.to_string())
    }

    pub(crate) async fn command(&mut self, line: &str) -> Result<RemoteReply, String> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }
}

pub struct Transaction<'a> {
    pub sender: &'a str,
    pub recipients: &'a [String],
    /// The message as it goes on the wire (already converted to 7 bit when
    /// the server lacks 8BITMIME), CRLF line ends, not yet dot-stuffed.
    pub message: &'a [u8],
    /// MAIL FROM gets SMTPUTF8 (RFC 6531 3.4).
    pub smtputf8: bool,
}

/// What the server offered in its EHLO reply (RFC 5321 4.1.1.1).
#[derive(Debug, Clone, Copy, Default)]
pub struct Extensions {
    /// RFC 2920.
    pub pipelining: bool,
    /// RFC 6152.
    pub eightbitmime: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// RFC 1870.
    pub size: bool,
}

impl Extensions {
    fn from_ehlo(r: &RemoteReply) -> Self {
        // The first line is the greeting, the others keywords.
        let has = |ext: &str| {
            r.text.split(" / ").skip(1).any(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case(ext))
            })
        };
        Extensions {
            pipelining: has("PIPELINING"),
            eightbitmime: has("8BITMIME"),
            smtputf8: has("SMTPUTF8"),
            size: has("SIZE"),
        }
    }
}

/// Why a transaction did not complete.
#[derive(Debug, Clone)]
pub enum TxError {
    /// The connection failed before anything was decided: the transaction
    /// may go to another connection or MX host at once.
    Retry(String),
    /// The connection failed after the message was sent and before the
    /// final reply: the server may have it. The recipients are deferred,
    /// never retried at once (RFC 5321 6.1 accepts the possible duplicate
    /// of a later retry; sending at once would make it likely).
    Unknown(String),
}

/// One open SMTP connection, greeted and EHLO'd (with STARTTLS when
/// offered), that carries one transaction after another (RFC 5321 3.3:
/// after a transaction ends, MAIL may begin the next).
pub struct Session {
    conn: Conn,
    pub ext: Extensions,
    pub addr: SocketAddr,
    /// The MX host name (or the gateway's relay host) this connection reaches.
    pub host: String,
    pub tls: bool,
    /// Transactions that reached DATA on this connection.
    pub transactions: u32,
    /// The connection is in an unknown state: do not reuse it.
    broken: bool,
}

/// Connects, reads the greeting, says EHLO (HELO if refused), and upgrades
/// with STARTTLS when the server offers it and `tls` is given.
pub async fn connect(
    addr: SocketAddr,
    helo: &str,
    tls: Option<&TlsConnector>,
    host: &str,
    timeout: Duration,
) -> Result<Session, String> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connection to {addr} timed out"))?
        .map_err(|e| format!("connection to {addr} failed: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut conn = Conn {
        io: BufReader::new(Box::new(tcp)),
        timeout,
    };
    let greeting = conn.reply().await?;
    if greeting.code != 220 {
        return Err(format!("greeting: {greeting}"));
    }
    let mut ehlo = conn.command(&format!("EHLO {helo}")).await?;
    let mut esmtp = true;
    if !ehlo.is_positive() {
        ehlo = conn.command(&format!("HELO {helo}")).await?;
        esmtp = false;
        if !ehlo.is_positive() {
            return Err(format!("HELO refused: {ehlo}"));
        }
    }
    let offers_tls = esmtp
        && ehlo
            .text
            .split(" / ")
            .skip(1)
            .any(|l| l.eq_ignore_ascii_case("STARTTLS"));
    let mut encrypted = false;
    if let (Some(connector), true) = (tls, offers_tls) {
        let r = conn.command("STARTTLS").await?;
        if r.code == 220 {
            let plain = conn.io.into_inner();
            let name = ServerName::try_from(host.to_string()).unwrap_or_else(|_| {
                ServerName::try_from("localhost".to_string())
                    .unwrap_or(ServerName::IpAddress(addr.ip().into()))
            });
            let tls_stream = tokio::time::timeout(timeout, connector.connect(name, plain))
                .await
                .map_err(|_| "TLS handshake timed out".to_string())?
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            conn = Conn {
                io: BufReader::new(Box::new(tls_stream)),
                timeout,
            };
            // RFC 3207 4.2: forget what was learnt before; EHLO again.
            ehlo = conn.command(&format!("EHLO {helo}")).await?;
            if !ehlo.is_positive() {
                return Err(format!("EHLO after STARTTLS refused: {ehlo}"));
            }
            encrypted = true;
        }
    }
    Ok(Session {
        conn,
        ext: if esmtp {
            Extensions::from_ehlo(&ehlo)
        } else {
            Extensions::default()
        },
        addr,
        host: host.to_string(),
        tls: encrypted,
        transactions: 0,
        broken: false,
    })
}

fn outcome_of(r: &RemoteReply) -> RcptOutcome {
    if r.is_positive() {
        RcptOutcome::Delivered(r.clone())
    } else if r.is_permanent() {
        RcptOutcome::Failed(r.clone())
    } else {
        RcptOutcome::Deferred(r.to_string())
    }
}

impl Session {
    /// False once the connection is in an unknown state.
    pub fn reusable(&self) -> bool {
        !self.broken
    }

    /// One mail transaction: MAIL, a RCPT per recipient, DATA. With
    /// PIPELINING (RFC 2920 3.1) MAIL, the RCPTs and DATA go in one write
    /// and their replies are read in order. Returns one outcome per
    /// recipient; a recipient refused with 452 comes back as `TooMany`
    /// (RFC 5321 4.5.3.1.10: send it in another transaction).
    pub async fn transaction(&mut self, tx: &Transaction<'_>) -> Result<Vec<RcptOutcome>, TxError> {
        let r = self.transaction_inner(tx).await;
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    async fn transaction_inner(&mut self, tx: &Transaction<'_>) -> Result<Vec<RcptOutcome>, TxError> {
        let retry = TxError::Retry;
        let mut mail = format!("MAIL FROM:<{}>", tx.sender);
        if tx.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if self.ext.size {
            mail.push_str(&format!(" SIZE={}", tx.message.len()));
        }
        if self.ext.eightbitmime && crate::sevenbit::is_8bit(tx.message) {
            mail.push_str(" BODY=8BITMIME");
        }
        let (mail_r, rcpt_r, data_r) = if self.ext.pipelining {
            let mut batch = String::with_capacity(64 + 48 * tx.recipients.len());
            batch.push_str(&mail);
            batch.push_str("\r\n");
            for rcpt in tx.recipients {
                batch.push_str(&format!("RCPT TO:<{rcpt}>\r\n"));
            }
            // RFC 2920 3.1: DATA may end the group; its reply says whether
            // to send the body.
            batch.push_str("DATA\r\n");
            self.conn.send(batch.as_bytes()).await.map_err(retry)?;
            let mail_r = self.conn.reply().await.map_err(retry)?;
            let mut rcpt_r = Vec::with_capacity(tx.recipients.len());
            for _ in tx.recipients {
                rcpt_r.push(self.conn.reply().await.map_err(retry)?);
            }
            let data_r = self.conn.reply().await.map_err(retry)?;
            (mail_r, rcpt_r, Some(data_r))
        } else {
            let mail_r = self.conn.command(&mail).await.map_err(retry)?;
            let mut rcpt_r = Vec::with_capacity(tx.recipients.len());
            if mail_r.is_positive() {
                for rcpt in tx.recipients {
                    rcpt_r.push(
                        self.conn
                            .command(&format!("RCPT TO:<{rcpt}>"))
                            .await
                            .map_err(retry)?,
                    );
                }
            }
            let data_r = if rcpt_r.iter().any(RemoteReply::is_positive) {
                Some(self.conn.command("DATA").await.map_err(retry)?)
            } else {
                None
            };
            (mail_r, rcpt_r, data_r)
        };
        if !mail_r.is_positive() {
            // Every RCPT (and DATA) was answered 503 if pipelined.
            if data_r.as_ref().is_some_and(|d| d.code == 354) {
                self.end_empty_data().await?;
            }
            self.rset().await;
            return Ok(vec![outcome_of(&mail_r); tx.recipients.len()]);
        }
        let mut outcomes: Vec<Option<RcptOutcome>> = rcpt_r
            .iter()
            .map(|r| {
                if r.is_positive() {
                    None
                } else if r.code == 452 {
                    Some(RcptOutcome::TooMany(r.clone()))
                } else {
                    Some(outcome_of(r))
                }
            })
            .collect();
        let accepted = outcomes.iter().filter(|o| o.is_none()).count();
        let final_r = match data_r {
            Some(d) if d.code == 354 && accepted == 0 => {
                // RFC 2920 3.1: DATA accepted though no recipient was: end
                // it with an empty body, which the server must refuse.
                self.end_empty_data().await?;
                None
            }
            Some(d) if d.code == 354 => {
                self.conn
                    .send(&dot_stuff(tx.message))
                    .await
                    .map_err(TxError::Unknown)?;
                self.transactions += 1;
                Some(self.conn.reply().await.map_err(TxError::Unknown)?)
            }
            Some(d) => {
                self.rset().await;
                Some(d)
            }
            None => {
                self.rset().await;
                None
            }
        };
        Ok(outcomes
            .iter_mut()
            .map(|o| match (o.take(), &final_r) {
                (Some(o), _) => o,
                (None, Some(f)) => outcome_of(f),
                (None, None) => RcptOutcome::Deferred("no reply to DATA".into()),
            })
            .collect())
    }

    async fn end_empty_data(&mut self) -> Result<(), TxError> {
        self.conn.send(b".\r\n").await.map_err(TxError::Unknown)?;
        self.conn.reply().await.map_err(TxError::Unknown)?;
        Ok(())
    }

    /// RFC 5321 4.1.1.5: ends an unfinished transaction so the connection
    /// can carry the next one.
    async fn rset(&mut self) {
        match self.conn.command("RSET").await {
            Ok(r) if r.code == 250 => {}
            _ => self.broken = true,
        }
    }

    /// Asks whether the server would take `recipient`, delivering nothing:
    /// `MAIL FROM:<>` (so no answer can loop), `RCPT TO`, then RSET. The
    /// RCPT reply, or an error for a refused MAIL or a lost connection.
    pub async fn verify_recipient(&mut self, recipient: &str) -> Result<RemoteReply, String> {
        let mail = self.conn.command("MAIL FROM:<>").await?;
        if !mail.is_positive() {
            return Err(format!("MAIL FROM:<> refused: {mail}"));
        }
        let rcpt = self.conn.command(&format!("RCPT TO:<{recipient}>")).await?;
        let _ = self.conn.command("RSET").await;
        Ok(rcpt)
    }

    /// Ends the session politely (RFC 5321 4.1.1.10), not waiting long.
    pub async fn quit(mut self) {
        self.conn.timeout = self.conn.timeout.min(Duration::from_secs(5));
        let _ = self.conn.command("QUIT").await;
    }
}

/// RFC 5321 4.5.2: a leading dot gets another; the data ends with CRLF.CRLF.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_stuffing() {
        let r = parse_reply(&["250-mx.example".into(), "250 SIZE 10".into()]).unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.text, "mx.example / SIZE 10");
        assert!(parse_reply(&["xyz".into()]).is_none());
        assert_eq!(dot_stuff(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b".x"), b"..x\r\n.\r\n");
    }
}

/// What `postroom check smtp` learns from a server.
#[derive(Debug, Default)]
pub struct Probe {
    pub banner: String,
    pub ehlo: Vec<String>,
    /// TLS version, certificate SHA-256, whether it names the host.
    pub tls: Option<(String, String, bool)>,
    pub tls_error: Option<String>,
}

/// Connects, reads the banner, says EHLO and tries STARTTLS: the seed's
/// "SMTP connection test".
pub async fn probe(addr: SocketAddr, helo: &str, host: &str, timeout: Duration) -> Result<Probe, String> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let mut conn = Conn {
        io: BufReader::new(Box::new(tcp)),
        timeout,
    };
    let mut p = Probe {
        banner: conn.reply().await?.to_string(),
        ..Probe::default()
    };
    let ehlo = conn.command(&format!("EHLO {helo}")).await?;
    p.ehlo = ehlo.text.split(" / ").map(str::to_string).collect();
    if !p.ehlo.iter().any(|l| l.eq_ignore_ascii_case("STARTTLS")) {
        let _ = conn.command("QUIT").await;
        return Ok(p);
    }
    let r = conn.command("STARTTLS").await?;
    if r.code != 220 {
        p.tls_error = Some(format!("STARTTLS refused: {r}"));
        return Ok(p);
    }
    let name = ServerName::try_from(host.to_string()).unwrap_or(ServerName::IpAddress(addr.ip().into()));
    match tokio::time::timeout(
        timeout,
        opportunistic_tls().connect(name.clone(), conn.io.into_inner()),
    )
    .await
    {
        Ok(Ok(tls)) => {
            let (_, session) = tls.get_ref();
            let version = session
                .protocol_version()
                .map_or("?".to_string(), |v| format!("{v:?}"));
            let (fingerprint, names_host) = match session.peer_certificates().and_then(|c| c.first()) {
                Some(cert) => {
                    let digest = ring_digest(cert.as_ref());
                    let ok = webpki_names_host(cert, &name);
                    (digest, ok)
                }
                None => ("(none)".into(), false),
            };
            p.tls = Some((version, fingerprint, names_host));
        }
        Ok(Err(e)) => p.tls_error = Some(format!("TLS handshake failed: {e}")),
        Err(_) => p.tls_error = Some("TLS handshake timed out".into()),
    }
    Ok(p)
}

/// `AB:CD:...`: the SHA-256 fingerprint of a certificate.
fn ring_digest(data: &[u8]) -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, data);
    hash.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn webpki_names_host(cert: &CertificateDer<'_>, name: &ServerName<'_>) -> bool {
    webpki::EndEntityCert::try_from(cert).is_ok_and(|ee| ee.verify_is_valid_for_subject_name(name).is_ok())
}
