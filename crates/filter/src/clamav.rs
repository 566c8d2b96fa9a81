//! Virus scanning through clamd's INSTREAM protocol (unix or TCP socket).
//! Fail-closed: an unreachable or slow clamd tempfails the message.
//!
//! The protocol (clamd(8), "INSTREAM"): the command `zINSTREAM\0`, then the
//! data in chunks, each preceded by its length as 4 bytes in network order,
//! then a chunk of length zero; clamd answers one NUL-terminated line:
//! `stream: OK`, `stream: <signature> FOUND`, or `<text> ERROR` (above its
//! `StreamMaxLength`: `INSTREAM size limit exceeded. ERROR`). The framing
//! and the reply are pure functions ([`frame_chunk`], [`parse_reply`]); the
//! check only moves their bytes.

use std::net::SocketAddr;
use std::path::PathBuf;

use async_trait::async_trait;
use postroom_config::FilterClamavConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::build::Deps;
use crate::check::{Check, Findings, Forced, Scan};

/// A virus: the message is refused (`550 5.7.1`), whitelisted or not.
pub const CLAMAV_VIRUS: &str = "CLAMAV_VIRUS";
/// clamd could not be asked or answered an error: `451 4.7.1`.
pub const CLAMAV_UNAVAILABLE: &str = "CLAMAV_UNAVAILABLE";
/// The message was larger than `max_stream_bytes`: only its start was
/// scanned.
pub const CLAMAV_PARTIAL: &str = "CLAMAV_PARTIAL";

/// The score beside the forced rejection, so a report read without the
/// rejection still ranks the message at the top.
const VIRUS_SCORE: f64 = 20.0;

/// The command, with `z`: the reply ends in a NUL rather than a newline.
pub const INSTREAM: &[u8] = b"zINSTREAM\0";

/// Bytes per chunk: the SMTP body chunk (64 KiB), far below clamd's
/// `StreamMaxLength` so no single chunk is refused for its size.
pub const CHUNK: usize = 64 * 1024;

/// clamd's reply is one short line (`stream: <signature name> FOUND`):
/// more than this is not clamd.
const MAX_REPLY: usize = 4096;

/// The length prefix of one chunk (a zero-length chunk ends the stream).
pub fn frame_chunk(len: usize) -> [u8; 4] {
    // CHUNK and max_stream_bytes (validated below 4 GiB) keep this in u32.
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

/// The whole request for `data`, as the check sends it; for tests and for
/// messages small enough to send in one write.
pub fn instream_request(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(INSTREAM.len() + data.len() + 4 * (data.len() / CHUNK + 2));
    out.extend_from_slice(INSTREAM);
    for chunk in data.chunks(CHUNK) {
        out.extend_from_slice(&frame_chunk(chunk.len()));
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&frame_chunk(0));
    out
}

/// What clamd said about a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Clean,
    /// The signature's name (`Eicar-Test-Signature`).
    Virus(String),
    /// clamd's error text, or what was wrong with its answer.
    Error(String),
}

/// Reads clamd's reply line (NUL or newline terminated).
pub fn parse_reply(raw: &[u8]) -> Reply {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let line = String::from_utf8_lossy(&raw[..end]);
    let line = line.trim_end_matches(['\r', '\n']).trim();
    if line.is_empty() {
        return Reply::Error("clamd closed the connection without an answer".into());
    }
    let body = line.strip_prefix("stream:").map(str::trim);
    match body {
        Some("OK") => Reply::Clean,
        Some(b) if b.ends_with("FOUND") => {
            let name = b.trim_end_matches("FOUND").trim();
            Reply::Virus(if name.is_empty() {
                "unnamed".into()
            } else {
                name.into()
            })
        }
        _ if line.ends_with("ERROR") => Reply::Error(line.trim_end_matches("ERROR").trim().into()),
        _ => Reply::Error(format!("unexpected answer from clamd: {:.200}", line)),
    }
}

/// Where clamd listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "{}", p.display()),
            Target::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// Sends `data` to clamd and reads its verdict. No time limit of its own:
/// the chain drops it at the client's deadline, and the check is
/// fail-closed.
pub async fn scan(target: &Target, data: &[u8]) -> Result<Reply, String> {
    match target {
        Target::Unix(path) => {
            let s = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| format!("clamd at {}: {e}", path.display()))?;
            exchange(s, data).await
        }
        Target::Tcp(addr) => {
            let s = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("clamd at {addr}: {e}"))?;
            let _ = s.set_nodelay(true);
            exchange(s, data).await
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, data: &[u8]) -> Result<Reply, String> {
    let sent = send(&mut s, data).await;
    // clamd may answer and close before reading everything (size limit):
    // its reply says more than the broken pipe.
    let mut reply = Vec::with_capacity(64);
    let read = read_reply(&mut s, &mut reply).await;
    match (sent, read) {
        (_, Ok(())) if !reply.is_empty() => Ok(parse_reply(&reply)),
        (Err(e), _) => Err(format!("sending to clamd: {e}")),
        (Ok(()), Err(e)) => Err(format!("reading clamd's answer: {e}")),
        (Ok(()), Ok(())) => Ok(parse_reply(&reply)),
    }
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, data: &[u8]) -> std::io::Result<()> {
    s.write_all(INSTREAM).await?;
    for chunk in data.chunks(CHUNK) {
        s.write_all(&frame_chunk(chunk.len())).await?;
        s.write_all(chunk).await?;
    }
    s.write_all(&frame_chunk(0)).await?;
    s.flush().await
}

async fn read_reply<S: AsyncRead + Unpin>(s: &mut S, reply: &mut Vec<u8>) -> std::io::Result<()> {
    let mut buf = [0u8; 512];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.contains(&0) || reply.len() >= MAX_REPLY {
            return Ok(());
        }
    }
}

/// The checks `[filter.clamav]` asks for: none without `socket` or
/// `address`.
pub fn checks(config: &FilterClamavConfig, deps: &Deps) -> Result<Vec<Box<dyn Check>>, String> {
    let target = match (&config.socket, &config.address) {
        (None, None) => return Ok(Vec::new()),
        (Some(_), Some(_)) => return Err("filter.clamav: set socket or address, not both".into()),
        (Some(p), None) => Target::Unix(PathBuf::from(p)),
        (None, Some(a)) => Target::Tcp(
            a.parse()
                .map_err(|_| format!("filter.clamav.address: `{a}` is not an address:port"))?,
        ),
    };
    let max_bytes = usize::try_from(config.max_stream_bytes).unwrap_or(usize::MAX);
    if max_bytes == 0 {
        return Err("filter.clamav.max_stream_bytes: must be more than 0".into());
    }
    // Scoring files offline (`postroom filter check`) reaches no clamd;
    // the settings are still checked above.
    if deps.offline {
        return Ok(Vec::new());
    }
    Ok(vec![Box::new(ClamavCheck { target, max_bytes })])
}

pub struct ClamavCheck {
    target: Target,
    /// clamd's `StreamMaxLength` or less: more is refused by clamd with an
    /// error, which would tempfail the message for ever.
    max_bytes: usize,
}

impl ClamavCheck {
    pub fn new(target: Target, max_bytes: usize) -> ClamavCheck {
        ClamavCheck {
            target,
            max_bytes: max_bytes.max(1),
        }
    }
}

#[async_trait]
impl Check for ClamavCheck {
    fn name(&self) -> &'static str {
        "clamav"
    }

    async fn check(&self, scan: &Scan<'_>, out: &mut Findings) {
        let data = if scan.raw.len() > self.max_bytes {
            out.add(
                CLAMAV_PARTIAL,
                0.0,
                format!(
                    "only the first {} of {} bytes scanned (filter.clamav.max_stream_bytes)",
                    self.max_bytes,
                    scan.raw.len()
                ),
            );
            &scan.raw[..self.max_bytes]
        } else {
            scan.raw
        };
        // The detail (logs, `postroom explain`) names the socket and the
        // error; the reason, which the client reads in the 451, does not.
        let failed = |out: &mut Findings, why: String| {
            out.add(CLAMAV_UNAVAILABLE, 0.0, why);
            out.force(Forced::TempFail {
                symbol: CLAMAV_UNAVAILABLE.into(),
                reason: "the virus scan is not available, try again later".into(),
            });
        };
        match self::scan(&self.target, data).await {
            Ok(Reply::Clean) => {}
            Ok(Reply::Virus(name)) => {
                out.add(CLAMAV_VIRUS, VIRUS_SCORE, name.clone());
                out.force(Forced::Reject {
                    symbol: CLAMAV_VIRUS.into(),
                    reason: format!("virus found: {name}"),
                });
            }
            Ok(Reply::Error(e)) => failed(out, format!("clamd at {}: {e}", self.target)),
            Err(e) => failed(out, e),
        }
    }

    fn fail_closed(&self) -> bool {
        true
    }

    fn whitelist_skips(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        let req = instream_request(b"hello");
        assert_eq!(&req[..10], b"zINSTREAM\0");
        assert_eq!(&req[10..14], &[0, 0, 0, 5]);
        assert_eq!(&req[14..19], b"hello");
        assert_eq!(&req[19..], &[0, 0, 0, 0]);
        // Two chunks for one byte more than a chunk.
        let big = vec![b'a'; CHUNK + 1];
        let req = instream_request(&big);
        assert_eq!(req.len(), 10 + 4 + CHUNK + 4 + 1 + 4);
        assert_eq!(&req[10..14], &(CHUNK as u32).to_be_bytes());
        assert_eq!(&req[14 + CHUNK..18 + CHUNK], &[0, 0, 0, 1]);
        assert_eq!(instream_request(b""), b"zINSTREAM\0\0\0\0\0");
    }

    #[test]
    fn replies() {
        assert_eq!(parse_reply(b"stream: OK\0"), Reply::Clean);
        assert_eq!(parse_reply(b"stream: OK\n"), Reply::Clean);
        assert_eq!(
            parse_reply(b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\0"),
            Reply::Virus("Eicar-Test-Signature.UNOFFICIAL".into())
        );
        assert_eq!(
            parse_reply(b"INSTREAM size limit exceeded. ERROR\0"),
            Reply::Error("INSTREAM size limit exceeded.".into())
        );
        assert!(matches!(parse_reply(b""), Reply::Error(_)));
        assert!(matches!(parse_reply(b"\0"), Reply::Error(_)));
        assert!(matches!(parse_reply(b"PONG\0"), Reply::Error(_)));
        assert!(matches!(parse_reply(b"stream: FOUND\0"), Reply::Virus(_)));
    }

    proptest::proptest! {
        #[test]
        fn any_reply_parses(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse_reply(&raw);
        }
    }

    #[tokio::test]
    async fn a_fake_clamd_sees_the_framing() {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let data = vec![7u8; CHUNK * 2 + 3];
        let expected = instream_request(&data);
        let server = tokio::spawn(async move {
            let mut got = vec![0u8; expected.len()];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(got, expected);
            server.write_all(b"stream: OK\0").await.unwrap();
        });
        assert_eq!(exchange(client, &data).await, Ok(Reply::Clean));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn nobody_listening_is_an_error() {
        let dir = std::env::temp_dir().join(format!("postroom-no-clamd-{}", std::process::id()));
        let target = Target::Unix(dir.join("clamd.sock"));
        assert!(scan(&target, b"x").await.is_err());
    }
}
