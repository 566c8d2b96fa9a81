//! The POP3 session target's driver: a fake maildrop answers the session's
//! questions, and every reply and action is checked.

use postroom_pop3::session::LoginFailure;
use postroom_pop3::{Action, MaildropEntry, Session, SessionConfig};

pub const USER: &str = "user@example.com";
pub const PASSWORD: &str = "secret";

/// (uid, UIDL, message): dot lines, bare line ends, an empty message, NUL,
/// no final line end. UID 13 has vanished when it is retrieved.
pub const MESSAGES: &[(i64, &str, &[u8])] = &[
    (
        1,
        "0000000100000001",
        b"From: a@example.com\r\nSubject: one\r\n\r\n.dot first\r\n..two dots\r\n.\r\nlast\r\n",
    ),
    (2, "0000000100000002", b"Subject: bare\n\nline\n.\n.x\nend"),
    (5, "0000000100000005", b""),
    (
        7,
        "0000000100000007",
        b"Subject: nul\r\n\r\n\x00\r\n\r.\r\n\r\n.\r",
    ),
    (13, "0000000100000013", b"Subject: gone\r\n\r\nbody\r\n"),
    (21, "0000000100000021", b"no header at all, no line end ."),
    (
        34,
        "0000000100000034",
        b"Subject: long\r\n\r\n1\r\n2\r\n3\r\n4\r\n5\r\n6\r\n7\r\n8\r\n9\r\n10\r\n",
    ),
];

fn maildrop() -> Vec<MaildropEntry> {
    MESSAGES
        .iter()
        .map(|(uid, uidl, m)| MaildropEntry {
            uid: *uid,
            size: m.len() as u64,
            uidl: uidl.to_string(),
        })
        .collect()
}

fn message(uid: i64) -> Option<&'static [u8]> {
    MESSAGES
        .iter()
        .find(|(u, _, _)| *u == uid && *u != 13)
        .map(|(_, _, m)| *m)
}

/// Panics unless `bytes` is one status line (`+OK`, `-ERR`, `+ `) or a
/// `+OK` multi-line response whose first `CRLF . CRLF` is its end. Returns
/// whether it was multi-line.
pub fn check_reply(bytes: &[u8]) -> bool {
    let show = || String::from_utf8_lossy(bytes).into_owned();
    let first_end = bytes
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or_else(|| panic!("reply without CRLF: {:?}", show()));
    let first = &bytes[..first_end];
    assert!(
        !first.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
        "bare CR, LF or NUL in the status line: {:?}",
        show()
    );
    let ok = first == b"+OK" || first.starts_with(b"+OK ");
    let err = first == b"-ERR" || first.starts_with(b"-ERR ");
    assert!(
        ok || err || first.starts_with(b"+ "),
        "reply without +OK, -ERR or +: {:?}",
        show()
    );
    if first_end + 2 == bytes.len() {
        return false;
    }
    assert!(ok, "more than one line after {first:?}: {:?}", show());
    let padded = &bytes[first_end..];
    let end = padded
        .windows(5)
        .position(|w| w == b"\r\n.\r\n")
        .unwrap_or_else(|| panic!("multi-line reply without its end: {:?}", show()));
    assert_eq!(
        end + 5,
        padded.len(),
        "a multi-line reply ends early: {:?}",
        show()
    );
    true
}

/// The lines of a multi-line response, dot-unstuffed (lines cut after LF,
/// as the server stuffs them).
fn unstuff(bytes: &[u8]) -> Vec<u8> {
    let first_end = bytes.windows(2).position(|w| w == b"\r\n").unwrap();
    let body = &bytes[first_end + 2..bytes.len() - 3];
    let mut out = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

/// A configuration from a flags byte: bit 0 STLS offered, 1 login not
/// allowed, 2 64-octet lines, 3 four errors at most, 4 log in first, 5 the
/// commit fails, 6-7 the first right login's answer (ok, failed, refused,
/// unavailable).
pub fn session_config(flags: u8) -> SessionConfig {
    SessionConfig {
        hostname: "pop.example".into(),
        starttls: flags & 0x01 != 0,
        login_allowed: flags & 0x02 == 0,
        max_line_length: if flags & 0x04 != 0 { 64 } else { 2048 },
        max_errors: if flags & 0x08 != 0 { 4 } else { 20 },
    }
}

/// Drives a session and checks its contract: replies well-formed, `poll`
/// quiet while a question is open, nothing after `Close`, RETR gives the
/// message back and TOP a prefix of it.
pub struct Driver {
    pub session: Session,
    pub log: Vec<String>,
    pub closed: bool,
    retrieving: Option<(i64, Option<u64>)>,
    commit_ok: bool,
    first_login: u8,
}

impl Driver {
    pub fn new(flags: u8) -> Self {
        let session = Session::new(session_config(flags), false);
        check_reply(&session.greeting());
        Driver {
            session,
            log: Vec::new(),
            closed: false,
            retrieving: None,
            commit_ok: flags & 0x20 == 0,
            first_login: flags >> 6,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.session.receive(bytes);
        while let Some(action) = self.session.poll() {
            assert!(!self.closed, "action after Close: {action:?}");
            match action {
                Action::Send(bytes) => {
                    let multi = check_reply(&bytes);
                    if let Some((uid, top)) = self.retrieving.take() {
                        if bytes.starts_with(b"+OK") {
                            assert!(multi, "RETR/TOP answered with one line");
                            check_message(&bytes, uid, top);
                        }
                    }
                    self.log
                        .push(format!("send {:?}", String::from_utf8_lossy(&bytes)));
                }
                Action::Authenticate { user, password } => {
                    assert!(
                        self.session.poll().is_none(),
                        "poll went on before the login result"
                    );
                    self.log.push(format!("auth {user:?}"));
                    let answer = if user == USER && password.expose() == PASSWORD {
                        match std::mem::take(&mut self.first_login) {
                            0 => Ok(()),
                            1 => Err(LoginFailure::Failed),
                            2 => Err(LoginFailure::Refused),
                            _ => Err(LoginFailure::Unavailable),
                        }
                    } else {
                        Err(LoginFailure::Failed)
                    };
                    self.session.login_result(answer);
                }
                Action::LoadMaildrop => {
                    assert!(self.session.poll().is_none(), "poll went on before the maildrop");
                    self.log.push("load".into());
                    self.session.maildrop_loaded(Some(maildrop()));
                }
                Action::Retrieve { uid, top } => {
                    assert!(self.session.poll().is_none(), "poll went on before the message");
                    self.log.push(format!("retrieve {uid} {top:?}"));
                    self.retrieving = Some((uid, top));
                    self.session.message(message(uid));
                }
                Action::Commit { deleted } => {
                    assert!(self.session.poll().is_none(), "poll went on before the commit");
                    assert!(!deleted.is_empty());
                    self.log.push(format!("commit {deleted:?}"));
                    self.session.committed(self.commit_ok);
                }
                Action::StartTls => {
                    assert!(self.session.poll().is_none(), "poll went on before TLS");
                    self.log.push("stls".into());
                    self.session.tls_established();
                }
                Action::Delay(_) => self.log.push("delay".into()),
                Action::Close => {
                    self.log.push("close".into());
                    self.closed = true;
                    assert!(self.session.is_closed());
                }
            }
        }
    }
}

fn check_message(bytes: &[u8], uid: i64, top: Option<u64>) {
    let mut full = message(uid).unwrap_or_default().to_vec();
    if !full.is_empty() && !full.ends_with(b"\r\n") {
        full.extend_from_slice(b"\r\n");
    }
    let got = unstuff(bytes);
    match top {
        None => assert_eq!(got, full, "RETR {uid} changed the message"),
        Some(_) => {
            let prefix = got.strip_suffix(b"\r\n").unwrap_or(&got);
            assert!(full.starts_with(prefix), "TOP {top:?} of {uid} is not a prefix");
        }
    }
}

pub fn prelude(flags: u8) -> Vec<u8> {
    if flags & 0x10 != 0 {
        format!("USER {USER}\r\nPASS {PASSWORD}\r\n").into_bytes()
    } else {
        Vec::new()
    }
}
