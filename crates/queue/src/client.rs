//! The SMTP client side of delivery: one connection, one transaction (or
//! several on the same connection), opportunistic STARTTLS.

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
    /// The message, CRLF line ends.
    pub message: &'a [u8],
}

/// Delivers one transaction to one server address. `Err` means the
/// connection failed before any recipient was decided (try the next MX).
pub async fn deliver(
    addr: SocketAddr,
    helo: &str,
    tls: Option<&TlsConnector>,
    tls_name: &str,
    timeout: Duration,
    tx: &Transaction<'_>,
) -> Result<Vec<RcptOutcome>, String> {
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
    if !ehlo.is_positive() {
        ehlo = conn.command(&format!("HELO {helo}")).await?;
        if !ehlo.is_positive() {
            return Err(format!("HELO refused: {ehlo}"));
        }
    }
    let offers = |r: &RemoteReply, ext: &str| {
        r.text
            .split(" / ")
            .any(|l| l.to_ascii_uppercase().starts_with(ext))
    };
    if let Some(connector) = tls {
        if offers(&ehlo, "STARTTLS") {
            let r = conn.command("STARTTLS").await?;
            if r.code == 220 {
                let plain = conn.io.into_inner();
                let name = ServerName::try_from(tls_name.to_string()).unwrap_or_else(|_| {
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
                ehlo = conn.command(&format!("EHLO {helo}")).await?;
                if !ehlo.is_positive() {
                    return Err(format!("EHLO after STARTTLS refused: {ehlo}"));
                }
            }
        }
    }
    // RFC 6531 3.2: UTF-8 addresses need SMTPUTF8 at the other end too;
    // without it the message cannot be delivered there (5.6.7).
    let needs_utf8 = !tx.sender.is_ascii() || tx.recipients.iter().any(|r| !r.is_ascii());
    let offers_utf8 = offers(&ehlo, "SMTPUTF8");
    if needs_utf8 && !offers_utf8 {
        let _ = conn.command("QUIT").await;
        let reply = RemoteReply {
            code: 553,
            text: "5.6.7 the receiving server does not support SMTPUTF8, which these addresses need".into(),
        };
        return Ok(vec![RcptOutcome::Failed(reply); tx.recipients.len()]);
    }
    let mut mail = format!("MAIL FROM:<{}>", tx.sender);
    if needs_utf8 {
        mail.push_str(" SMTPUTF8");
    }
    if offers(&ehlo, "SIZE") {
        mail.push_str(&format!(" SIZE={}", tx.message.len()));
    }
    if offers(&ehlo, "8BITMIME") && tx.message.iter().any(|b| *b >= 0x80) {
        mail.push_str(" BODY=8BITMIME");
    }
    let r = conn.command(&mail).await?;
    if !r.is_positive() {
        let outcome = if r.is_permanent() {
            RcptOutcome::Failed(r)
        } else {
            RcptOutcome::Deferred(r.to_string())
        };
        return Ok(vec![outcome; tx.recipients.len()]);
    }
    let mut outcomes: Vec<Option<RcptOutcome>> = Vec::with_capacity(tx.recipients.len());
    let mut accepted = 0;
    for rcpt in tx.recipients {
        let r = conn.command(&format!("RCPT TO:<{rcpt}>")).await?;
        if r.is_positive() {
            accepted += 1;
            outcomes.push(None);
        } else if r.is_permanent() {
            outcomes.push(Some(RcptOutcome::Failed(r)));
        } else {
            outcomes.push(Some(RcptOutcome::Deferred(r.to_string())));
        }
    }
    if accepted == 0 {
        let _ = conn.command("QUIT").await;
        return Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(RcptOutcome::Deferred(String::new())))
            .collect());
    }
    let r = conn.command("DATA").await?;
    let final_reply = if r.code == 354 {
        conn.send(&dot_stuff(tx.message)).await?;
        conn.reply().await?
    } else {
        r
    };
    let _ = conn.command("QUIT").await;
    Ok(outcomes
        .into_iter()
        .map(|o| match o {
            Some(o) => o,
            None if final_reply.is_positive() => RcptOutcome::Delivered(final_reply.clone()),
            None if final_reply.is_permanent() => RcptOutcome::Failed(final_reply.clone()),
            None => RcptOutcome::Deferred(final_reply.to_string()),
        })
        .collect())
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
