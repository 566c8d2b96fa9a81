//! The control socket: how `postroom status` (and later `postroom reload`)
//! asks the running server what only it knows. A Unix socket in the data
//! folder (`DATA_DIR/control.sock`, 0600: the server's user alone, and the
//! peer's uid is checked as well), one JSON request line and one JSON
//! reply per connection.
//!
//! The protocol is the sans-IO part ([`Request::parse`], [`answer`],
//! [`parse_reply`]); [`serve`] and [`ask`] only move its bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const SOCKET_FILE: &str = "control.sock";

/// A request is one short line (`{"request":"status"}` is 21 bytes);
/// anything longer is refused unread.
pub const MAX_REQUEST: usize = 4096;
/// A reply lists listeners and certificates: far below this.
pub const MAX_REPLY: usize = 1 << 20;
/// Neither side waits longer for the other (a stuck peer must not hold
/// a server task or hang `postroom status`).
pub const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Status,
}

#[derive(Serialize, Deserialize)]
struct RequestLine {
    request: String,
}

impl Request {
    pub fn encode(self) -> Vec<u8> {
        let word = match self {
            Request::Status => "status",
        };
        let mut v = serde_json::to_vec(&RequestLine { request: word.into() }).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// One request line (the newline optional).
    pub fn parse(bytes: &[u8]) -> Result<Request, String> {
        if bytes.len() > MAX_REQUEST {
            return Err(format!("request longer than {MAX_REQUEST} bytes"));
        }
        let line: RequestLine =
            serde_json::from_slice(bytes.trim_ascii()).map_err(|e| format!("bad request: {e}"))?;
        match line.request.as_str() {
            "status" => Ok(Request::Status),
            other => Err(format!("unknown request `{other}`")),
        }
    }
}

/// A listening socket.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Listener {
    /// smtp, submission, submissions, pop3, pop3s, imap, imaps.
    pub protocol: String,
    pub address: String,
}

/// A certificate in use.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Certificate {
    pub file: String,
    /// The end of its validity, seconds since the epoch (`None`: not
    /// readable).
    pub not_after: Option<i64>,
}

/// What the running server says about itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Live {
    pub version: String,
    pub pid: u32,
    /// When it started, seconds since the epoch.
    pub started: i64,
    pub listeners: Vec<Listener>,
    /// Open connections by protocol (smtp, submission, imap, pop3).
    pub connections: BTreeMap<String, u64>,
    pub certificates: Vec<Certificate>,
}

#[derive(Serialize, Deserialize)]
struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Live>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The server's answer to one request's bytes.
pub fn answer(request: &[u8], live: impl FnOnce() -> Live) -> Vec<u8> {
    let reply = match Request::parse(request) {
        Ok(Request::Status) => Reply {
            status: Some(live()),
            error: None,
        },
        Err(e) => Reply {
            status: None,
            error: Some(e),
        },
    };
    let mut v = serde_json::to_vec(&reply).unwrap_or_default();
    v.push(b'\n');
    v
}

/// The client's reading of a reply.
pub fn parse_reply(bytes: &[u8]) -> Result<Live, String> {
    let reply: Reply =
        serde_json::from_slice(bytes.trim_ascii()).map_err(|e| format!("bad reply from the server: {e}"))?;
    match (reply.status, reply.error) {
        (Some(live), _) => Ok(live),
        (None, Some(e)) => Err(format!("the server refused the request: {e}")),
        (None, None) => Err("empty reply from the server".into()),
    }
}

/// The protocol families connections are counted by.
pub const FAMILIES: [&str; 4] = ["smtp", "submission", "imap", "pop3"];

/// The family of a listener (`submissions` is `submission`, ...).
pub fn family(listener: &str) -> &'static str {
    match listener {
        "submission" | "submissions" => "submission",
        "imap" | "imaps" => "imap",
        "pop3" | "pop3s" => "pop3",
        _ => "smtp",
    }
}

/// Open connections, one counter per family; a connection holds a
/// [`Counted`] for as long as it is open.
#[derive(Default)]
pub struct Connections {
    counts: [AtomicU64; FAMILIES.len()],
}

/// Decrements its counter when the connection ends, however it ends.
pub struct Counted(Arc<Connections>, usize);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.counts[self.1].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connections {
    pub fn open(self: &Arc<Self>, listener: &str) -> Counted {
        let f = family(listener);
        let i = FAMILIES.iter().position(|x| *x == f).unwrap_or(0);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        Counted(Arc::clone(self), i)
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        FAMILIES
            .iter()
            .zip(&self.counts)
            .map(|(f, c)| (f.to_string(), c.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Answers on `DATA_DIR/control.sock` until the task is dropped. The
/// server holds the data folder's lock, so a socket file already there is
/// a dead server's and is replaced.
pub fn bind(data_dir: &Path) -> Result<(tokio::net::UnixListener, PathBuf), String> {
    use std::os::unix::fs::PermissionsExt;
    let path = data_dir.join(SOCKET_FILE);
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((listener, path))
}

pub async fn serve(listener: tokio::net::UnixListener, live: Arc<dyn Fn() -> Live + Send + Sync>) {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // The file is 0600; root can open it anyway, and may ask.
        match stream.peer_cred() {
            Ok(c) if c.uid() == me || c.uid() == 0 => {}
            _ => continue,
        }
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(TIMEOUT, one(stream, live)).await;
        });
    }
}

async fn one(mut stream: tokio::net::UnixStream, live: Arc<dyn Fn() -> Live + Send + Sync>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    // Up to the newline, the end of input, or one byte past the limit
    // (which `answer` refuses).
    while !buf.contains(&b'\n') && buf.len() <= MAX_REQUEST {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let line = match buf.iter().position(|b| *b == b'\n') {
        Some(i) => &buf[..i],
        None => &buf[..],
    };
    let reply = answer(line, || live());
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
}

/// Asks the server on `data_dir` (blocking, for the CLI).
pub fn ask(data_dir: &Path, request: Request) -> Result<Live, String> {
    use std::io::{Read, Write};
    let path = data_dir.join(SOCKET_FILE);
    let mut s =
        std::os::unix::net::UnixStream::connect(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let _ = s.set_read_timeout(Some(TIMEOUT));
    let _ = s.set_write_timeout(Some(TIMEOUT));
    s.write_all(&request.encode())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reply = Vec::new();
    (&mut s)
        .take(MAX_REPLY as u64 + 1)
        .read_to_end(&mut reply)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if reply.len() > MAX_REPLY {
        return Err(format!("{}: reply longer than {MAX_REPLY} bytes", path.display()));
    }
    parse_reply(&reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Live {
        Live {
            version: "1.2.3".into(),
            pid: 42,
            started: 1_000,
            listeners: vec![Listener {
                protocol: "smtp".into(),
                address: "127.0.0.1:25".into(),
            }],
            connections: [("smtp".to_string(), 2)].into_iter().collect(),
            certificates: vec![Certificate {
                file: "/etc/x.crt".into(),
                not_after: Some(2_000),
            }],
        }
    }

    #[test]
    fn a_status_request_is_answered_with_the_live_state() {
        let reply = answer(&Request::Status.encode(), live);
        assert!(reply.ends_with(b"\n"));
        assert_eq!(parse_reply(&reply), Ok(live()));
    }

    #[test]
    fn bad_requests_get_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"status",
            b"{\"request\":\"reboot\"}",
            b"{\"request\":5}",
            b"\xff\xfe",
            &[b'{'; MAX_REQUEST + 1][..],
        ] {
            let reply = answer(bad, || panic!("no status for a bad request"));
            let e = parse_reply(&reply).err().unwrap();
            assert!(e.starts_with("the server refused the request"), "{e}");
        }
        assert!(parse_reply(b"").is_err());
        assert!(parse_reply(b"{}").is_err());
    }

    #[test]
    fn connections_are_counted_while_open() {
        let c = Arc::new(Connections::default());
        let a = c.open("imaps");
        let b = c.open("imap");
        let s = c.open("submissions");
        assert_eq!(c.snapshot()["imap"], 2);
        assert_eq!(c.snapshot()["submission"], 1);
        assert_eq!(c.snapshot()["smtp"], 0);
        drop((a, s));
        assert_eq!(c.snapshot()["imap"], 1);
        assert_eq!(c.snapshot()["submission"], 0);
        drop(b);
        assert_eq!(c.snapshot()["imap"], 0);
    }

    #[tokio::test]
    async fn the_socket_answers_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (listener, path) = bind(dir.path()).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let task = tokio::spawn(serve(listener, Arc::new(live)));
        let d = dir.path().to_path_buf();
        let got = tokio::task::spawn_blocking(move || ask(&d, Request::Status))
            .await
            .unwrap();
        assert_eq!(got, Ok(live()));
        task.abort();
    }
}
