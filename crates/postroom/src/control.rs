//! The control socket: how `postroom status` and `postroom reload` ask
//! the running server what only it knows, or to re-read its settings. A Unix socket in the data
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
    Reload,
}

#[derive(Serialize, Deserialize)]
struct RequestLine {
    request: String,
}

impl Request {
    pub fn encode(self) -> Vec<u8> {
        let word = match self {
            Request::Status => "status",
            Request::Reload => "reload",
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
            "reload" => Ok(Request::Reload),
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

/// What a reload did (see reload.rs).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// Settings (and files) now in effect.
    pub applied: Vec<String>,
    /// Changed in the file, but only a restart changes them.
    pub restart_needed: Vec<String>,
    /// What could not be done; the old setting stays.
    pub errors: Vec<String>,
}

/// What the server does for each request.
pub struct Handlers {
    pub live: Box<dyn Fn() -> Live + Send + Sync>,
    pub reload: Box<dyn Fn() -> ReloadReport + Send + Sync>,
}

#[derive(Serialize, Deserialize)]
struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Live>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reload: Option<ReloadReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The server's answer to one request's bytes.
pub fn answer(request: &[u8], handlers: &Handlers) -> Vec<u8> {
    let reply = match Request::parse(request) {
        Ok(Request::Status) => Reply {
            status: Some((handlers.live)()),
            reload: None,
            error: None,
        },
        Ok(Request::Reload) => Reply {
            status: None,
            reload: Some((handlers.reload)()),
            error: None,
        },
        Err(e) => Reply {
            status: None,
            reload: None,
            error: Some(e),
        },
    };
    let mut v = serde_json::to_vec(&reply).unwrap_or_default();
    v.push(b'\n');
    v
}

fn parse(bytes: &[u8]) -> Result<Reply, String> {
    let reply: Reply =
        serde_json::from_slice(bytes.trim_ascii()).map_err(|e| format!("bad reply from the server: {e}"))?;
    match reply.error {
        Some(e) => Err(format!("the server refused the request: {e}")),
        None => Ok(reply),
    }
}

/// The client's reading of a reply to `status`.
pub fn parse_reply(bytes: &[u8]) -> Result<Live, String> {
    parse(bytes)?
        .status
        .ok_or_else(|| "empty reply from the server".into())
}

/// The client's reading of a reply to `reload`.
pub fn parse_reload_reply(bytes: &[u8]) -> Result<ReloadReport, String> {
    parse(bytes)?
        .reload
        .ok_or_else(|| "empty reply from the server".into())
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

pub async fn serve(listener: tokio::net::UnixListener, handlers: Arc<Handlers>) {
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
        let handlers = Arc::clone(&handlers);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(TIMEOUT, one(stream, handlers)).await;
        });
    }
}

async fn one(mut stream: tokio::net::UnixStream, handlers: Arc<Handlers>) {
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
    // A reload reads a file and re-reads certificates: off the runtime's
    // worker threads.
    let line = line.to_vec();
    let Ok(reply) = tokio::task::spawn_blocking(move || answer(&line, &handlers)).await else {
        return;
    };
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
}

/// Asks the server on `data_dir` for its status (blocking, for the CLI).
pub fn ask(data_dir: &Path, request: Request) -> Result<Live, String> {
    parse_reply(&exchange(data_dir, request)?)
}

/// Asks the server on `data_dir` to reload (blocking, for the CLI).
pub fn ask_reload(data_dir: &Path) -> Result<ReloadReport, String> {
    parse_reload_reply(&exchange(data_dir, Request::Reload)?)
}

fn exchange(data_dir: &Path, request: Request) -> Result<Vec<u8>, String> {
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
    Ok(reply)
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

    fn report() -> ReloadReport {
        ReloadReport {
            applied: vec!["smtp.max_connections".into()],
            restart_needed: vec!["smtp.listen".into()],
            errors: vec![],
        }
    }

    fn handlers() -> Handlers {
        Handlers {
            live: Box::new(live),
            reload: Box::new(report),
        }
    }

    #[test]
    fn a_status_request_is_answered_with_the_live_state() {
        let reply = answer(&Request::Status.encode(), &handlers());
        assert!(reply.ends_with(b"\n"));
        assert_eq!(parse_reply(&reply), Ok(live()));
    }

    #[test]
    fn a_reload_request_is_answered_with_what_changed() {
        let reply = answer(&Request::Reload.encode(), &handlers());
        assert_eq!(parse_reload_reply(&reply), Ok(report()));
        assert!(parse_reply(&reply).is_err());
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
            let h = Handlers {
                live: Box::new(|| panic!("no status for a bad request")),
                reload: Box::new(|| panic!("no reload for a bad request")),
            };
            let reply = answer(bad, &h);
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
        let task = tokio::spawn(serve(listener, Arc::new(handlers())));
        let d = dir.path().to_path_buf();
        let got = tokio::task::spawn_blocking(move || ask(&d, Request::Status))
            .await
            .unwrap();
        assert_eq!(got, Ok(live()));
        task.abort();
    }
}
