//! The POP3 state machine: AUTHORIZATION, TRANSACTION, UPDATE (RFC 1939 3).

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine;
use postroom_core::Secret;

#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub hostname: String,
    /// STLS may be offered (a certificate exists, the connection is plain).
    pub starttls: bool,
    /// USER/PASS and AUTH PLAIN are allowed: the connection is TLS, or the
    /// client is in the plaintext allow-list.
    pub login_allowed: bool,
    /// Longest command line (RFC 2449 allows 255 octets; AUTH's base64
    /// lines are longer).
    pub max_line_length: usize,
    /// Errors before the session is closed.
    pub max_errors: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".into(),
            starttls: false,
            login_allowed: true,
            max_line_length: 2048,
            max_errors: 20,
        }
    }
}

/// One message of the maildrop as it was when the session logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaildropEntry {
    pub uid: i64,
    pub size: u64,
    pub uidl: String,
}

#[derive(Debug)]
pub enum Action {
    Send(Vec<u8>),
    /// Check a login; answer with [`Session::login_result`].
    Authenticate {
        user: String,
        password: Secret<String>,
    },
    /// Read the maildrop; answer with [`Session::maildrop_loaded`].
    LoadMaildrop,
    /// Read message `uid`; answer with [`Session::message`]. `top`: only
    /// the header and this many body lines.
    Retrieve {
        uid: i64,
        top: Option<u64>,
    },
    /// QUIT in TRANSACTION: remove these; answer with [`Session::committed`].
    Commit {
        deleted: Vec<i64>,
    },
    StartTls,
    /// Slow down a failing client before the next reply.
    Delay(Duration),
    Close,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Authorization {
        user: Option<String>,
    },
    /// AUTH PLAIN sent without an initial response: the next line is it.
    SaslPlain,
    AwaitLogin,
    AwaitMaildrop,
    Transaction,
    AwaitMessage {
        top: Option<u64>,
    },
    AwaitCommit,
    AwaitTls,
    Closed,
}

#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    tls: bool,
    state: State,
    input: Vec<u8>,
    discarding: bool,
    out: VecDeque<Action>,
    maildrop: Vec<MaildropEntry>,
    deleted: Vec<bool>,
    errors: u32,
}

fn ok(text: &str) -> Action {
    Action::Send(format!("+OK {text}\r\n").into_bytes())
}

fn err(text: &str) -> Action {
    Action::Send(format!("-ERR {text}\r\n").into_bytes())
}

impl Session {
    pub fn new(cfg: SessionConfig, tls: bool) -> Self {
        Session {
            cfg,
            tls,
            state: State::Authorization { user: None },
            input: Vec::new(),
            discarding: false,
            out: VecDeque::new(),
            maildrop: Vec::new(),
            deleted: Vec::new(),
            errors: 0,
        }
    }

    pub fn greeting(&self) -> Vec<u8> {
        format!("+OK {} POP3 server ready\r\n", self.cfg.hostname).into_bytes()
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    pub fn receive(&mut self, bytes: &[u8]) {
        if !self.is_closed() {
            self.input.extend_from_slice(bytes);
        }
    }

    /// The idle timeout ran out (RFC 1939 3: at least 10 minutes). No
    /// deletions happen: that is only at QUIT.
    pub fn timed_out(&mut self) -> Vec<u8> {
        self.state = State::Closed;
        b"-ERR autologout: idle for too long\r\n".to_vec()
    }

    pub fn poll(&mut self) -> Option<Action> {
        loop {
            if let Some(a) = self.out.pop_front() {
                return Some(a);
            }
            if !self.step() {
                return self.out.pop_front();
            }
        }
    }

    pub fn login_result(&mut self, result: Result<(), LoginFailure>) {
        if self.state != State::AwaitLogin {
            return;
        }
        match result {
            Ok(()) => {
                self.state = State::AwaitMaildrop;
                self.out.push_back(Action::LoadMaildrop);
            }
            Err(LoginFailure::Failed) => {
                self.state = State::Authorization { user: None };
                self.error("[AUTH] Authentication failed");
            }
            Err(LoginFailure::Refused) => {
                self.state = State::Authorization { user: None };
                self.error("[LOGIN-DELAY] Too many failed logins, try again later");
            }
            Err(LoginFailure::Unavailable) => {
                self.state = State::Authorization { user: None };
                self.error("[SYS/TEMP] Authentication is unavailable, try again later");
            }
            Err(LoginFailure::TooManySessions) => {
                self.state = State::Authorization { user: None };
                self.error("[IN-USE] Too many connections for this account");
            }
        }
    }

    pub fn maildrop_loaded(&mut self, maildrop: Option<Vec<MaildropEntry>>) {
        if self.state != State::AwaitMaildrop {
            return;
        }
        match maildrop {
            Some(m) => {
                let n = m.len();
                let size: u64 = m.iter().map(|e| e.size).sum();
                self.deleted = vec![false; n];
                self.maildrop = m;
                self.state = State::Transaction;
                self.out
                    .push_back(ok(&format!("Logged in, {n} messages ({size} octets)")));
            }
            None => {
                self.state = State::Closed;
                self.out
                    .push_back(err("[SYS/TEMP] Mailbox unavailable, try again later"));
                self.out.push_back(Action::Close);
            }
        }
    }

    /// The message for a RETR or TOP could not be read (a storage
    /// failure, not a message that is gone): RFC 3206 `[SYS/TEMP]`.
    pub fn message_unavailable(&mut self) {
        if let State::AwaitMessage { .. } = self.state {
            self.state = State::Transaction;
            self.error("[SYS/TEMP] The message cannot be read now, try again later");
        }
    }

    /// The message for a RETR or TOP; `None` if it vanished meanwhile.
    pub fn message(&mut self, bytes: Option<&[u8]>) {
        let State::AwaitMessage { top } = self.state else {
            return;
        };
        self.state = State::Transaction;
        match bytes {
            Some(b) => {
                let mut v = Vec::with_capacity(b.len() + b.len() / 50 + 32);
                v.extend_from_slice(b"+OK message follows\r\n");
                stuff(b, top, &mut v);
                self.out.push_back(Action::Send(v));
            }
            None => self.error("Message was removed by another session"),
        }
    }

    pub fn committed(&mut self, ok_: bool) {
        if self.state != State::AwaitCommit {
            return;
        }
        self.state = State::Closed;
        self.out.push_back(if ok_ {
            ok("Bye")
        } else {
            err("[SYS/TEMP] Some deleted messages were not removed")
        });
        self.out.push_back(Action::Close);
    }

    pub fn tls_established(&mut self) {
        if self.state == State::AwaitTls {
            self.tls = true;
            self.cfg.login_allowed = true;
            self.state = State::Authorization { user: None };
            self.input.clear();
        }
    }

    fn step(&mut self) -> bool {
        match self.state {
            State::Authorization { .. } | State::Transaction | State::SaslPlain => {}
            _ => return false,
        }
        let Some(i) = memchr::memchr(b'\n', &self.input) else {
            if self.input.len() > self.cfg.max_line_length {
                self.input.clear();
                self.discarding = true;
            }
            return false;
        };
        let mut line: Vec<u8> = self.input.drain(..=i).collect();
        if std::mem::take(&mut self.discarding) || line.len() > self.cfg.max_line_length {
            self.error("Line too long");
            return true;
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        if self.state == State::SaslPlain {
            self.state = State::Authorization { user: None };
            self.sasl_plain(line.trim());
        } else {
            self.command(&line);
        }
        true
    }

    fn error(&mut self, text: &str) {
        self.errors += 1;
        if self.errors > self.cfg.max_errors / 2 {
            self.out.push_back(Action::Delay(Duration::from_secs(1)));
        }
        self.out.push_back(err(text));
        if self.errors >= self.cfg.max_errors {
            self.state = State::Closed;
            self.out.push_back(err("Too many errors, closing"));
            self.out.push_back(Action::Close);
        }
    }

    fn command(&mut self, line: &str) {
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a),
            None => (line.to_ascii_uppercase(), ""),
        };
        let in_auth = matches!(self.state, State::Authorization { .. });
        match (verb.as_str(), in_auth) {
            ("CAPA", _) => self.capa(),
            ("QUIT", true) => {
                self.state = State::Closed;
                self.out.push_back(ok("Bye"));
                self.out.push_back(Action::Close);
            }
            ("QUIT", false) => {
                let deleted: Vec<i64> = self
                    .maildrop
                    .iter()
                    .zip(&self.deleted)
                    .filter(|(_, d)| **d)
                    .map(|(e, _)| e.uid)
                    .collect();
                if deleted.is_empty() {
                    self.state = State::Closed;
                    self.out.push_back(ok("Bye"));
                    self.out.push_back(Action::Close);
                } else {
                    // RFC 1939 6: the UPDATE state.
                    self.state = State::AwaitCommit;
                    self.out.push_back(Action::Commit { deleted });
                }
            }
            ("NOOP", false) => self.out.push_back(ok("")),
            ("STLS", true) => self.stls(),
            ("USER", true) => self.user(arg),
            ("PASS", true) => self.pass(arg),
            ("AUTH", true) => self.auth(arg),
            ("STAT", false) => {
                let (n, size) = self.live().fold((0, 0), |(n, s), (_, e)| (n + 1, s + e.size));
                self.out.push_back(ok(&format!("{n} {size}")));
            }
            ("LIST", false) => self.list(arg, false),
            ("UIDL", false) => self.list(arg, true),
            ("RETR", false) => self.retrieve(arg, None),
            ("TOP", false) => {
                let mut it = arg.split(' ');
                match (it.next(), it.next().and_then(|n| n.parse::<u64>().ok())) {
                    (Some(msg), Some(lines)) => self.retrieve(msg, Some(lines)),
                    _ => self.error("Usage: TOP msg lines"),
                }
            }
            ("DELE", false) => match self.index(arg) {
                Ok(i) => {
                    self.deleted[i] = true;
                    self.out.push_back(ok(&format!("Message {} deleted", i + 1)));
                }
                Err(e) => self.error(e),
            },
            ("RSET", false) => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                self.out
                    .push_back(ok(&format!("{} messages", self.maildrop.len())));
            }
            ("STAT" | "LIST" | "UIDL" | "RETR" | "TOP" | "DELE" | "RSET" | "NOOP", true) => {
                self.error("Not logged in")
            }
            ("USER" | "PASS" | "AUTH" | "STLS", false) => self.error("Already logged in"),
            _ => self.error("Unknown command"),
        }
    }

    fn live(&self) -> impl Iterator<Item = (usize, &MaildropEntry)> {
        self.maildrop
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted[*i])
    }

    /// A message number (1-based) that exists and is not deleted.
    fn index(&self, arg: &str) -> Result<usize, &'static str> {
        let n: usize = arg.trim().parse().map_err(|_| "Invalid message number")?;
        if n == 0 || n > self.maildrop.len() {
            return Err("No such message");
        }
        if self.deleted[n - 1] {
            return Err("Message is deleted");
        }
        Ok(n - 1)
    }

    fn list(&mut self, arg: &str, uidl: bool) {
        let show = |i: usize, e: &MaildropEntry| {
            if uidl {
                format!("{} {}", i + 1, e.uidl)
            } else {
                format!("{} {}", i + 1, e.size)
            }
        };
        if !arg.trim().is_empty() {
            match self.index(arg) {
                Ok(i) => {
                    let line = show(i, &self.maildrop[i]);
                    self.out.push_back(ok(&line));
                }
                Err(e) => self.error(e),
            }
            return;
        }
        let mut v = b"+OK\r\n".to_vec();
        for (i, e) in self.live() {
            v.extend_from_slice(show(i, e).as_bytes());
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(b".\r\n");
        self.out.push_back(Action::Send(v));
    }

    fn retrieve(&mut self, arg: &str, top: Option<u64>) {
        match self.index(arg) {
            Ok(i) => {
                self.state = State::AwaitMessage { top };
                self.out.push_back(Action::Retrieve {
                    uid: self.maildrop[i].uid,
                    top,
                });
            }
            Err(e) => self.error(e),
        }
    }

    fn capa(&mut self) {
        let mut lines = vec![
            "+OK Capability list follows",
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
        ];
        if matches!(self.state, State::Authorization { .. }) {
            if self.cfg.starttls && !self.tls {
                lines.push("STLS");
            }
            if self.cfg.login_allowed {
                lines.push("USER");
                lines.push("SASL PLAIN");
            }
        }
        lines.push("IMPLEMENTATION Postroom");
        let mut v = lines.join("\r\n").into_bytes();
        v.extend_from_slice(b"\r\n.\r\n");
        self.out.push_back(Action::Send(v));
    }

    fn stls(&mut self) {
        if !self.cfg.starttls || self.tls {
            self.error("STLS not available");
            return;
        }
        // RFC 2595 4: anything pipelined after STLS is discarded.
        self.input.clear();
        self.out.push_back(ok("Begin TLS negotiation"));
        self.out.push_back(Action::StartTls);
        self.state = State::AwaitTls;
    }

    fn plaintext_refused(&mut self) -> bool {
        if self.cfg.login_allowed {
            return false;
        }
        self.error("[AUTH] Plaintext authentication disallowed on non-secure connections: use STLS");
        true
    }

    fn user(&mut self, arg: &str) {
        if self.plaintext_refused() {
            return;
        }
        let user = arg.trim();
        if user.is_empty() {
            self.error("Usage: USER name");
            return;
        }
        self.state = State::Authorization {
            user: Some(user.to_string()),
        };
        self.out.push_back(ok("Send PASS"));
    }

    fn pass(&mut self, arg: &str) {
        if self.plaintext_refused() {
            return;
        }
        let State::Authorization { user: Some(user) } = &self.state else {
            self.error("Send USER first");
            return;
        };
        let user = user.clone();
        self.begin_login(user, arg.to_string());
    }

    fn begin_login(&mut self, user: String, password: String) {
        self.state = State::AwaitLogin;
        self.out.push_back(Action::Authenticate {
            user,
            password: Secret::new(password),
        });
    }

    fn auth(&mut self, arg: &str) {
        let mut it = arg.split(' ');
        let mech = it.next().unwrap_or("").to_ascii_uppercase();
        if mech.is_empty() {
            // RFC 5034 4: AUTH without a mechanism lists them (RFC 1734).
            let mechs: &[u8] = if self.cfg.login_allowed {
                b"+OK\r\nPLAIN\r\n.\r\n"
            } else {
                b"+OK\r\n.\r\n"
            };
            self.out.push_back(Action::Send(mechs.to_vec()));
            return;
        }
        if mech != "PLAIN" {
            self.error("Unsupported authentication mechanism");
            return;
        }
        if self.plaintext_refused() {
            return;
        }
        match it.next() {
            Some(initial) => self.sasl_plain(initial),
            None => {
                self.state = State::SaslPlain;
                self.out.push_back(Action::Send(b"+ \r\n".to_vec()));
            }
        }
    }

    /// RFC 4616: authzid NUL authcid NUL password, base64. `*` cancels.
    fn sasl_plain(&mut self, b64: &str) {
        if b64 == "*" {
            self.error("Authentication cancelled");
            return;
        }
        let decoded = match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(d) => d,
            Err(_) => {
                self.error("Invalid base64");
                return;
            }
        };
        let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
        let [authz, user, pass] = parts.as_slice() else {
            self.error("Invalid PLAIN response");
            return;
        };
        let (Ok(authz), Ok(user), Ok(pass)) = (
            std::str::from_utf8(authz),
            std::str::from_utf8(user),
            std::str::from_utf8(pass),
        ) else {
            self.error("Invalid PLAIN response");
            return;
        };
        // Logging in as someone else (master users) is not supported.
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(user) {
            self.error("[AUTH] Authorization identity must be empty or the user");
            return;
        }
        self.begin_login(user.to_string(), pass.to_string());
    }
}

/// Why a login failed, as the caller learned it.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginFailure {
    Failed,
    Refused,
    Unavailable,
    /// The account has as many sessions open as it may.
    TooManySessions,
}

/// Byte-stuffs a message for RETR/TOP (RFC 1939 3) and ends it with
/// `.CRLF`. `top`: only the header and that many body lines.
pub fn stuff(message: &[u8], top: Option<u64>, out: &mut Vec<u8>) {
    let mut in_body = false;
    let mut body_lines = 0u64;
    let mut rest = message;
    while !rest.is_empty() {
        if in_body && top.is_some_and(|t| body_lines >= t) {
            break;
        }
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        rest = &rest[end..];
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        if in_body {
            body_lines += 1;
        } else if line == b"\r\n" || line == b"\n" {
            in_body = true;
        }
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests;
