//! The IMAP session: states (RFC 9051 3), capabilities, and every command.
//!
//! Bytes go in through [`Session::receive`]; [`Session::poll`] returns
//! [`Action`]s. Logging in, STARTTLS and IDLE are handed to the caller (they
//! wait on a password hash, a handshake or other sessions); the rest runs
//! here against the store, which the caller provides.

use std::collections::VecDeque;
use std::fmt::Write as _;

use imap_codec::imap_types::command::{Command, CommandBody, SelectParameter};
use imap_codec::imap_types::core::{Tag, Vec1};
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::status::StatusDataItemName;
use postroom_core::Secret;
use postroom_store::folders::FlagOp;
use postroom_store::folders::Upload;
use postroom_store::Store;

use crate::extensions::Extras;
use crate::fetch;
use crate::format::{flag_list, mailbox as write_mailbox, uid_list, uid_set, Lossless, SYSTEM_FLAGS};
use crate::framing::{Expect, Frame, Framer};
use crate::search;
use crate::selected::Selected;
use crate::sequence::{modseq_arg, resolve_seq, resolve_uid};

/// Oversized messages (over [`crate::framing::PRE_AUTH_MAX`]) before
/// login: the third is answered with BAD and then BYE. A real client sends
/// none; three leaves room for a mistaken retry.
pub const MAX_OVERSIZED: u32 = 3;

#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub hostname: String,
    /// STARTTLS may be offered (a certificate exists, the connection is plain).
    pub starttls: bool,
    /// LOGIN/AUTHENTICATE allowed: TLS is on, or the client's network is in
    /// the plaintext allow-list.
    pub login_allowed: bool,
    /// The largest APPEND (APPENDLIMIT) and literal.
    pub max_append: u32,
    /// Bad commands before the connection is closed.
    pub max_errors: u32,
}

#[derive(Debug)]
pub enum Action {
    Send(Vec<u8>),
    /// Check a login; answer with [`Session::login_result`].
    Authenticate {
        user: String,
        password: Secret<String>,
    },
    /// Answer with [`Session::tls_established`] (or drop the connection).
    StartTls,
    /// IDLE began: call [`Session::idle_check`] when something may have
    /// changed (and at least every few seconds); DONE arrives as input.
    Idle,
    Close,
}

/// Why a login failed.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginFailure {
    Failed,
    Refused,
    Unavailable,
    /// The account has as many sessions open as it may.
    TooManySessions,
}

#[derive(Debug)]
enum State {
    NotAuthenticated,
    Authenticated,
    Selected(Box<Selected>),
    Logout,
}

pub struct Session {
    cfg: SessionConfig,
    store: Store,
    framer: Framer,
    state: State,
    tls: bool,
    account: Option<(i64, String)>,
    out: VecDeque<Action>,
    /// Tag of a command waiting for an answer from the caller (login) or
    /// for more input (AUTHENTICATE continuation, IDLE).
    pending_tag: Option<String>,
    waiting: bool,
    idling: bool,
    /// ENABLEd: IMAP4rev2, CONDSTORE, QRESYNC, UTF8=ACCEPT.
    rev2: bool,
    condstore: bool,
    qresync: bool,
    utf8: bool,
    errors: u32,
    /// A BYE was written (the selected mailbox vanished): close once the
    /// current response is out.
    closing: bool,
    /// The body of an APPEND arriving in pieces (`Err`: writing failed).
    upload: Option<Result<Upload, ()>>,
}

/// An APPEND's message: in memory, or written to a file as it arrived.
enum Body {
    Bytes(Vec<u8>),
    Upload(Upload),
}

/// A mailbox name as stored (UTF-8): IMAP4rev1 clients without
/// UTF8=ACCEPT send modified UTF-7 (RFC 3501 5.1.3). `None` when the name
/// is not valid: not UTF-8 (UTF8=ACCEPT, IMAP4rev2), or not ASCII in
/// canonical modified UTF-7 (RFC 3501 5.1.3: printable ASCII stands for
/// itself, never in base64, and one shift covers a run of other
/// characters), so that one folder has one name on the wire.
fn decode_name(raw: &[u8], utf8: bool) -> Option<String> {
    let s = std::str::from_utf8(raw).ok()?;
    if utf8 {
        return Some(s.to_string());
    }
    if !s.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return None;
    }
    if !s.contains('&') {
        return Some(s.to_string());
    }
    crate::mutf7::decode(s).filter(|d| crate::mutf7::encode(d) == s)
}

/// Flags from a command: the system-flag bits and the keywords.
fn flag_bits(flags: &[Flag<'_>]) -> (i64, Vec<String>) {
    let mut bits = 0;
    let mut keywords = Vec::new();
    for f in flags {
        match f {
            Flag::Seen => bits |= crate::format::SEEN,
            Flag::Answered => bits |= crate::format::ANSWERED,
            Flag::Flagged => bits |= crate::format::FLAGGED,
            Flag::Deleted => bits |= crate::format::DELETED,
            Flag::Draft => bits |= crate::format::DRAFT,
            // \Recent and other backslash flags cannot be set.
            Flag::Extension(_) => {}
            Flag::Keyword(k) => keywords.push(k.as_ref().to_string()),
        }
    }
    (bits, keywords)
}

impl Session {
    pub fn new(cfg: SessionConfig, store: Store, tls: bool) -> Self {
        let framer = Framer::pre_auth(cfg.max_append);
        Session {
            cfg,
            store,
            framer,
            state: State::NotAuthenticated,
            tls,
            account: None,
            out: VecDeque::new(),
            pending_tag: None,
            waiting: false,
            idling: false,
            rev2: false,
            condstore: false,
            qresync: false,
            utf8: false,
            errors: 0,
            closing: false,
            upload: None,
        }
    }

    pub fn greeting(&self) -> Vec<u8> {
        format!(
            "* OK [CAPABILITY {}] {} Postroom IMAP ready\r\n",
            self.capabilities(),
            self.cfg.hostname
        )
        .into_bytes()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Logout)
    }

    pub fn is_idling(&self) -> bool {
        self.idling
    }

    /// The selected folder, for change notifications.
    pub fn selected_folder(&self) -> Option<i64> {
        match &self.state {
            State::Selected(s) => Some(s.folder_id),
            _ => None,
        }
    }

    pub fn receive(&mut self, bytes: &[u8]) {
        self.framer.push(bytes);
    }

    /// The autologout timer ran out (RFC 9051 5.4: at least 30 minutes).
    pub fn timed_out(&mut self) -> Vec<u8> {
        self.state = State::Logout;
        b"* BYE Autologout; idle for too long\r\n".to_vec()
    }

    pub fn shutting_down(&mut self) -> Vec<u8> {
        self.state = State::Logout;
        b"* BYE Server shutting down\r\n".to_vec()
    }

    fn capabilities(&self) -> String {
        let mut caps = vec![
            "IMAP4rev1",
            "IMAP4rev2",
            "LITERAL+",
            "SASL-IR",
            "ID",
            "ENABLE",
            "IDLE",
        ];
        let authed = matches!(self.state, State::Authenticated | State::Selected(_));
        if !authed {
            if self.cfg.starttls && !self.tls {
                caps.push("STARTTLS");
            }
            if self.cfg.login_allowed {
                caps.push("AUTH=PLAIN");
            } else {
                caps.push("LOGINDISABLED");
            }
        } else {
            caps.extend([
                "NAMESPACE",
                "UIDPLUS",
                "MOVE",
                "UNSELECT",
                "CHILDREN",
                "SPECIAL-USE",
                "ESEARCH",
                "LIST-EXTENDED",
                "LIST-STATUS",
                "CONDSTORE",
                "QRESYNC",
                "QUOTA",
                "QUOTA=RES-STORAGE",
                "BINARY",
                "STATUS=SIZE",
                "UTF8=ACCEPT",
            ]);
        }
        let mut s = caps.join(" ");
        if authed {
            let _ = write!(s, " APPENDLIMIT={}", self.cfg.max_append);
        }
        s
    }

    pub fn poll(&mut self) -> Option<Action> {
        loop {
            if let Some(a) = self.out.pop_front() {
                return Some(a);
            }
            if self.waiting || self.is_closed() {
                return None;
            }
            let frame = self.framer.next_frame()?;
            self.frame(frame);
            self.close_if_oversized();
            self.close_if_bye();
        }
    }

    /// Before login, a client that keeps sending lines or literals over
    /// the pre-login limit is not a mail client: it is let go after
    /// [`MAX_OVERSIZED`] of them (issue #8).
    fn close_if_oversized(&mut self) {
        if matches!(self.state, State::NotAuthenticated) && self.framer.oversized() >= MAX_OVERSIZED {
            self.send(b"* BYE Too many oversized commands\r\n".to_vec());
            self.out.push_back(Action::Close);
            self.state = State::Logout;
        }
    }

    fn close_if_bye(&mut self) {
        if std::mem::take(&mut self.closing) {
            self.state = State::Logout;
            self.out.push_back(Action::Close);
        }
    }

    fn send(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.out.push_back(Action::Send(bytes));
        }
    }

    fn tagged(&mut self, tag: &str, status: &str, text: &str) {
        self.send(format!("{tag} {status} {text}\r\n").into_bytes());
    }

    fn bad(&mut self, tag: &str, text: &str) {
        self.errors += 1;
        self.tagged(tag, "BAD", text);
        if self.errors >= self.cfg.max_errors {
            self.send(b"* BYE Too many errors\r\n".to_vec());
            self.out.push_back(Action::Close);
            self.state = State::Logout;
        }
    }

    fn frame(&mut self, frame: Frame) {
        match &frame {
            Frame::LiteralStart(_) | Frame::LiteralChunk(_) => {}
            Frame::Command(_, extras) if extras.streamed => {}
            // The go-ahead for the literal being uploaded.
            Frame::Reply(r) if r.starts_with(b"+ ") => {}
            // Whatever was being uploaded is not part of this.
            _ => self.upload = None,
        }
        match frame {
            Frame::LiteralStart(_) => {
                self.upload = Some(self.store.begin_upload().map_err(|e| {
                    tracing::error!(error = %e, "APPEND upload failed");
                }));
            }
            Frame::LiteralChunk(bytes) => {
                if let Some(Ok(w)) = &mut self.upload {
                    if let Err(e) = w.write(&bytes) {
                        tracing::error!(error = %e, "APPEND upload failed");
                        self.upload = Some(Err(()));
                    }
                }
            }
            Frame::Reply(bytes) => {
                if bytes.starts_with(b"+ ") {
                    self.send(bytes);
                } else {
                    self.errors += 1;
                    self.send(bytes);
                }
            }
            Frame::Command(cmd, extras) => self.command(*cmd, extras),
            Frame::AuthData(data) => {
                self.framer.expect(Expect::Command);
                let tag = self.pending_tag.take().unwrap_or_else(|| "*".into());
                match data {
                    None => self.bad(&tag, "AUTHENTICATE cancelled"),
                    Some(d) => self.sasl_plain(&tag, &d),
                }
            }
            Frame::IdleDone => {
                self.framer.expect(Expect::Command);
                self.idling = false;
                let tag = self.pending_tag.take().unwrap_or_else(|| "*".into());
                let mut out = Vec::new();
                self.refresh(true, &mut out);
                self.send(out);
                self.tagged(&tag, "OK", "IDLE terminated");
            }
        }
    }

    /// The caller's answer to [`Action::Authenticate`].
    pub fn login_result(&mut self, result: Result<(i64, String), LoginFailure>) {
        if !self.waiting {
            return;
        }
        self.waiting = false;
        let tag = self.pending_tag.take().unwrap_or_else(|| "*".into());
        match result {
            Ok(account) => {
                self.account = Some(account);
                self.state = State::Authenticated;
                self.framer.set_authenticated();
                let caps = self.capabilities();
                self.tagged(&tag, "OK", &format!("[CAPABILITY {caps}] Logged in"));
            }
            Err(LoginFailure::Failed) => {
                self.tagged(&tag, "NO", "[AUTHENTICATIONFAILED] Authentication failed")
            }
            Err(LoginFailure::Refused) => self.tagged(
                &tag,
                "NO",
                "[UNAVAILABLE] Too many failed logins, try again later",
            ),
            Err(LoginFailure::Unavailable) => {
                self.tagged(&tag, "NO", "[UNAVAILABLE] Authentication unavailable")
            }
            Err(LoginFailure::TooManySessions) => {
                self.tagged(&tag, "NO", "[LIMIT] Too many connections for this account")
            }
        }
    }

    /// STARTTLS completed: the session starts over (RFC 9051 6.2.1).
    pub fn tls_established(&mut self) {
        if self.waiting {
            self.waiting = false;
            self.tls = true;
            self.cfg.login_allowed = true;
            // Anything sent before the handshake is discarded.
            self.framer = Framer::pre_auth(self.cfg.max_append);
        }
    }

    /// While idling: announce what changed in the selected mailbox.
    pub fn idle_check(&mut self) {
        if !self.idling {
            return;
        }
        let mut out = Vec::new();
        self.refresh(true, &mut out);
        self.send(out);
        self.close_if_bye();
    }

    fn account_id(&self) -> i64 {
        self.account.as_ref().map_or(0, |a| a.0)
    }

    fn command(&mut self, cmd: Command<'static>, extras: Extras) {
        let tag = cmd.tag.as_ref().to_string();
        let authed = matches!(self.state, State::Authenticated | State::Selected(_));
        let selected = matches!(self.state, State::Selected(_));
        match cmd.body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.send(format!("* CAPABILITY {caps}\r\n").into_bytes());
                self.tagged(&tag, "OK", "CAPABILITY completed");
            }
            CommandBody::Noop | CommandBody::Check => {
                let mut out = Vec::new();
                self.refresh(true, &mut out);
                self.send(out);
                self.tagged(&tag, "OK", "Completed");
            }
            CommandBody::Logout => {
                self.send(b"* BYE Logging out\r\n".to_vec());
                self.tagged(&tag, "OK", "LOGOUT completed");
                self.out.push_back(Action::Close);
                self.state = State::Logout;
            }
            CommandBody::Id { .. } => {
                self.send(b"* ID (\"name\" \"Postroom\")\r\n".to_vec());
                self.tagged(&tag, "OK", "ID completed");
            }
            CommandBody::StartTLS if !authed => {
                if !self.cfg.starttls || self.tls {
                    self.bad(&tag, "STARTTLS not available");
                    return;
                }
                self.tagged(&tag, "OK", "Begin TLS negotiation now");
                self.out.push_back(Action::StartTls);
                self.waiting = true;
            }
            CommandBody::Login { username, password } if !authed => {
                if !self.cfg.login_allowed {
                    self.tagged(
                        &tag,
                        "NO",
                        "[PRIVACYREQUIRED] Use TLS (port 993) or STARTTLS before logging in",
                    );
                    return;
                }
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let pw = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                self.begin_login(&tag, user, pw);
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } if !authed => {
                if !self.cfg.login_allowed {
                    self.tagged(
                        &tag,
                        "NO",
                        "[PRIVACYREQUIRED] Use TLS (port 993) or STARTTLS before logging in",
                    );
                    return;
                }
                if !mechanism.as_ref().eq_ignore_ascii_case("PLAIN") {
                    self.tagged(&tag, "NO", "Unsupported authentication mechanism");
                    return;
                }
                match initial_response {
                    Some(data) => {
                        let data = data.declassify().to_vec();
                        self.sasl_plain(&tag, &data);
                    }
                    None => {
                        self.pending_tag = Some(tag);
                        self.framer.expect(Expect::AuthData);
                        self.send(b"+ \r\n".to_vec());
                    }
                }
            }
            CommandBody::StartTLS | CommandBody::Login { .. } | CommandBody::Authenticate { .. } => {
                self.bad(&tag, "Already authenticated")
            }
            _ if !authed => self.bad(&tag, "Log in first"),
            CommandBody::Enable { capabilities } => self.enable(&tag, capabilities),
            CommandBody::Namespace => {
                self.send(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n".to_vec());
                self.tagged(&tag, "OK", "NAMESPACE completed");
            }
            CommandBody::Select { mailbox, parameters } => self.select(&tag, &mailbox, false, parameters),
            CommandBody::Examine { mailbox, parameters } => self.select(&tag, &mailbox, true, parameters),
            CommandBody::Create { mailbox } => self.create(&tag, &mailbox),
            CommandBody::Delete { mailbox } => self.delete(&tag, &mailbox),
            CommandBody::Rename { from, to } => self.rename(&tag, &from, &to),
            CommandBody::Subscribe { mailbox } => self.subscribe(&tag, &mailbox, true),
            CommandBody::Unsubscribe { mailbox } => self.subscribe(&tag, &mailbox, false),
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => self.list(&tag, &reference, &mailbox_wildcard, false, &extras),
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => self.list(&tag, &reference, &mailbox_wildcard, true, &extras),
            CommandBody::Status { mailbox, item_names } => self.status(&tag, &mailbox, &item_names),
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                let data = match &message {
                    imap_codec::imap_types::extensions::binary::LiteralOrLiteral8::Literal(l) => {
                        l.as_ref().to_vec()
                    }
                    imap_codec::imap_types::extensions::binary::LiteralOrLiteral8::Literal8(l) => {
                        l.data.to_vec()
                    }
                };
                let date = date.map(|d| d.as_ref().timestamp());
                let body = if extras.streamed {
                    match self.upload.take() {
                        Some(Ok(w)) => Body::Upload(w),
                        _ => {
                            self.tagged(&tag, "NO", "[SERVERBUG] APPEND failed");
                            return;
                        }
                    }
                } else {
                    Body::Bytes(data)
                };
                self.append(&tag, &mailbox, &flags, date, body);
            }
            CommandBody::GetQuotaRoot { mailbox } => self.quota_root(&tag, &mailbox),
            CommandBody::GetQuota { root } => {
                let root = String::from_utf8_lossy(root.as_ref()).into_owned();
                let line = self.quota_line();
                if root.is_empty() && !line.is_empty() {
                    self.send(line.into_bytes());
                    self.tagged(&tag, "OK", "GETQUOTA completed");
                } else {
                    self.tagged(&tag, "NO", "[NONEXISTENT] No such quota root");
                }
            }
            CommandBody::Idle => {
                self.pending_tag = Some(tag);
                self.idling = true;
                self.framer.expect(Expect::IdleDone);
                self.send(b"+ idling\r\n".to_vec());
                self.out.push_back(Action::Idle);
            }
            _ if !selected => self.bad(&tag, "Select a mailbox first"),
            CommandBody::Close => {
                let mut out = Vec::new();
                if let State::Selected(sel) = &self.state {
                    if !sel.read_only {
                        let deleted = deleted_uids(sel);
                        let _ = self.store.expunge(sel.folder_id, &deleted);
                    }
                }
                self.state = State::Authenticated;
                out.extend_from_slice(format!("{tag} OK CLOSE completed\r\n").as_bytes());
                self.send(out);
            }
            CommandBody::Unselect => {
                self.state = State::Authenticated;
                self.tagged(&tag, "OK", "UNSELECT completed");
            }
            CommandBody::Expunge => self.expunge(&tag, None),
            CommandBody::ExpungeUid { sequence_set } => self.expunge(&tag, Some(sequence_set)),
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => {
                // RFC 3501 6.4.4 / RFC 9051 6.4.4: US-ASCII and UTF-8 are
                // what we search in; anything else is NO [BADCHARSET].
                let known = charset.as_ref().is_none_or(|c| {
                    c.as_ref().eq_ignore_ascii_case("UTF-8") || c.as_ref().eq_ignore_ascii_case("US-ASCII")
                });
                if known {
                    self.search(&tag, criteria.as_ref(), uid, extras.search_return.as_deref())
                } else {
                    self.tagged(&tag, "NO", "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset");
                }
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => self.fetch(&tag, &sequence_set, macro_or_item_names, uid, &modifiers),
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => self.store_cmd(&tag, &sequence_set, kind, response, &flags, uid, &modifiers),
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&tag, &sequence_set, &mailbox, uid, false),
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&tag, &sequence_set, &mailbox, uid, true),
            _ => self.bad(&tag, "Command not supported"),
        }
    }

    fn begin_login(&mut self, tag: &str, user: String, password: String) {
        self.pending_tag = Some(tag.to_string());
        self.waiting = true;
        self.out.push_back(Action::Authenticate {
            user,
            password: Secret::new(password),
        });
    }

    /// RFC 4616: authzid NUL authcid NUL password.
    fn sasl_plain(&mut self, tag: &str, data: &[u8]) {
        let parts: Vec<&[u8]> = data.split(|b| *b == 0).collect();
        let [authz, user, pass] = parts.as_slice() else {
            self.tagged(tag, "NO", "[AUTHENTICATIONFAILED] Invalid PLAIN response");
            return;
        };
        let (Ok(authz), Ok(user), Ok(pass)) = (
            std::str::from_utf8(authz),
            std::str::from_utf8(user),
            std::str::from_utf8(pass),
        ) else {
            self.tagged(tag, "NO", "[AUTHENTICATIONFAILED] Invalid PLAIN response");
            return;
        };
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(user) {
            self.tagged(tag, "NO", "[AUTHORIZATIONFAILED] Cannot act as another user");
            return;
        }
        self.begin_login(tag, user.to_string(), pass.to_string());
    }

    fn enable(&mut self, tag: &str, caps: Vec1<CapabilityEnable<'static>>) {
        let mut enabled = Vec::new();
        for c in caps.as_ref() {
            match c {
                CapabilityEnable::CondStore if !self.condstore => {
                    self.condstore = true;
                    enabled.push("CONDSTORE");
                }
                CapabilityEnable::Utf8(_) if !self.utf8 => {
                    self.utf8 = true;
                    enabled.push("UTF8=ACCEPT");
                }
                CapabilityEnable::Other(_) => {
                    let name = c.to_string().to_ascii_uppercase();
                    if name == "QRESYNC" && !self.qresync {
                        // RFC 7162 3.2.3: QRESYNC implies CONDSTORE.
                        self.qresync = true;
                        self.condstore = true;
                        enabled.push("QRESYNC");
                    } else if name == "IMAP4REV2" && !self.rev2 {
                        self.rev2 = true;
                        enabled.push("IMAP4rev2");
                    }
                }
                _ => {}
            }
        }
        if let State::Selected(sel) = &mut self.state {
            sel.condstore |= self.condstore;
            sel.qresync |= self.qresync;
            sel.show_recent = !self.rev2;
        }
        let list = if enabled.is_empty() {
            String::new()
        } else {
            format!(" {}", enabled.join(" "))
        };
        self.send(format!("* ENABLED{list}\r\n").into_bytes());
        self.tagged(tag, "OK", "ENABLE completed");
    }

    /// The stored name a command means. An invalid name (see
    /// [`decode_name`]) is kept as it came: CREATE and RENAME refuse it
    /// ([`Session::new_mailbox_name`]), so no such folder exists.
    fn mailbox_name(&self, m: &Mailbox<'_>) -> String {
        match m {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(o) => decode_name(o.as_ref(), self.utf8 || self.rev2)
                .unwrap_or_else(|| String::from_utf8_lossy(o.as_ref()).into_owned()),
        }
    }

    /// The name of a mailbox to be made (CREATE, RENAME's target), without
    /// a trailing `/` (RFC 9051 6.3.4); `None` when it is not a valid
    /// name.
    fn new_mailbox_name(&self, m: &Mailbox<'_>) -> Option<String> {
        let name = match m {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(o) => decode_name(o.as_ref(), self.utf8 || self.rev2)?,
        };
        let name = name.trim_end_matches('/');
        Self::valid_new_name(name).then(|| name.to_string())
    }

    /// A store error as the tagged NO: `[LIMIT]` for a limit (RFC 9051
    /// 7.1), else `[SERVERBUG]`.
    fn store_failed(&mut self, tag: &str, what: &str, e: &postroom_store::StoreError) {
        match e {
            postroom_store::StoreError::Limit(why) => {
                let why = format!("[LIMIT] {what} refused: {why}");
                self.tagged(tag, "NO", &why)
            }
            _ => self.tagged(tag, "NO", &format!("[SERVERBUG] {what} failed")),
        }
    }

    fn folder(&self, name: &str) -> Option<postroom_store::mailbox::FolderRow> {
        self.store.db.find_folder(self.account_id(), name).ok().flatten()
    }

    fn select(&mut self, tag: &str, mailbox: &Mailbox<'_>, read_only: bool, params: Vec<SelectParameter>) {
        // Selecting a mailbox closes the one selected (without expunge).
        self.state = State::Authenticated;
        let name = self.mailbox_name(mailbox);
        let Some(f) = self.folder(&name) else {
            self.tagged(tag, "NO", "[NONEXISTENT] No such mailbox");
            return;
        };
        let mut condstore = self.condstore;
        let mut qresync_from = None;
        for p in params {
            match p {
                SelectParameter::CondStore => condstore = true,
                SelectParameter::QResync {
                    uid_validity,
                    mod_sequence_value,
                    ..
                } => {
                    if !self.qresync {
                        self.bad(tag, "ENABLE QRESYNC first");
                        return;
                    }
                    condstore = true;
                    if i64::from(uid_validity.get()) == f.uidvalidity {
                        qresync_from = Some(modseq_arg(mod_sequence_value.get()));
                    }
                }
            }
        }
        // Claiming \Recent changes state: EXAMINE must not (RFC 3501 6.3.2).
        let recent_above = if read_only {
            i64::MAX
        } else {
            self.store.db.claim_recent(f.id).unwrap_or(i64::MAX)
        };
        // The message list from the server-wide cache: no message rows are
        // read when the folder has not changed since it was last built.
        let snap = match self
            .store
            .folder_snapshot(f.id, Some((f.highestmodseq, f.uidnext)))
        {
            Ok(Some(snap)) => snap,
            Ok(None) => {
                self.tagged(tag, "NO", "[NONEXISTENT] No such mailbox");
                return;
            }
            Err(_) => {
                self.tagged(tag, "NO", "[UNAVAILABLE] Mailbox unavailable");
                return;
            }
        };
        let mut sel = Selected::new(f.name.clone(), read_only, &snap, recent_above, !self.rev2);
        sel.condstore = condstore;
        sel.qresync = self.qresync;
        self.condstore |= condstore;
        let mut out = Vec::new();
        let w = &mut Lossless(&mut out);
        let _ = write!(w, "* {} EXISTS\r\n", sel.msgs().len());
        if !self.rev2 {
            let _ = write!(w, "* {} RECENT\r\n", sel.recent_count());
            if let Some(i) = sel.msgs().iter().position(|m| m.flags & crate::format::SEEN == 0) {
                let _ = write!(w, "* OK [UNSEEN {}] First unseen\r\n", i + 1);
            }
        }
        let _ = write!(w, "* OK [UIDVALIDITY {}] UIDs valid\r\n", sel.uidvalidity);
        let _ = write!(w, "* OK [UIDNEXT {}] Predicted next UID\r\n", sel.uidnext);
        sel.announce_flags(w.0);
        if condstore {
            let _ = write!(w, "* OK [HIGHESTMODSEQ {}] Highest\r\n", sel.highestmodseq);
        }
        if self.rev2 {
            out.extend_from_slice(b"* LIST () \"/\" ");
            write_mailbox(&mut out, &f.name, self.utf8 || self.rev2);
            out.extend_from_slice(b"\r\n");
        }
        if let Some(since) = qresync_from {
            if let Ok(vanished) = self.store.db.expunged_since(f.id, since) {
                if !vanished.is_empty() {
                    let _ = write!(
                        Lossless(&mut out),
                        "* VANISHED (EARLIER) {}\r\n",
                        uid_set(&vanished)
                    );
                }
            }
            for (i, m) in sel.msgs().iter().enumerate() {
                if m.modseq > since {
                    out.extend_from_slice(sel.flags_response(i + 1, m, true).as_bytes());
                }
            }
        }
        let code = if read_only { "[READ-ONLY]" } else { "[READ-WRITE]" };
        let _ = write!(
            Lossless(&mut out),
            "{tag} OK {code} {} completed\r\n",
            if read_only { "EXAMINE" } else { "SELECT" }
        );
        self.send(out);
        self.state = State::Selected(Box::new(sel));
    }

    fn valid_new_name(name: &str) -> bool {
        !name.is_empty()
            && !name.eq_ignore_ascii_case("INBOX")
            && !name.starts_with('/')
            && !name.ends_with('/')
            && !name.contains("//")
            // RFC 3501 5.1.3 / RFC 9051 5.1: no `.` or `..` hierarchy
            // level (a client or a backup tool may take them for paths).
            && name.split('/').all(|level| !level.is_empty() && level != "." && level != "..")
            && !name.chars().any(|c| c.is_control() || c == '*' || c == '%')
            && name.len() <= 512
    }

    fn create(&mut self, tag: &str, mailbox: &Mailbox<'_>) {
        let Some(name) = self.new_mailbox_name(mailbox) else {
            self.tagged(tag, "NO", "[CANNOT] Invalid mailbox name");
            return;
        };
        if self.folder(&name).is_some() {
            self.tagged(tag, "NO", "[ALREADYEXISTS] Mailbox exists");
            return;
        }
        // RFC 9051 6.3.4: create missing superiors.
        let parts: Vec<&str> = name.split('/').collect();
        for i in 1..parts.len() {
            let parent = parts[..i].join("/");
            if self.folder(&parent).is_none() {
                let _ = self.store.db.create_folder(self.account_id(), &parent, None);
            }
        }
        match self.store.db.create_folder(self.account_id(), &name, None) {
            Ok(_) => self.tagged(tag, "OK", "CREATE completed"),
            Err(e) => self.store_failed(tag, "CREATE", &e),
        }
    }

    fn delete(&mut self, tag: &str, mailbox: &Mailbox<'_>) {
        let name = self.mailbox_name(mailbox);
        if name == "INBOX" {
            self.tagged(tag, "NO", "[CANNOT] INBOX cannot be deleted");
            return;
        }
        let Some(f) = self.folder(&name) else {
            self.tagged(tag, "NO", "[NONEXISTENT] No such mailbox");
            return;
        };
        let has_children = self
            .store
            .db
            .folder_list(self.account_id())
            .unwrap_or_default()
            .iter()
            .any(|(n, _, _)| n.starts_with(&format!("{name}/")));
        if has_children {
            // RFC 9051 6.3.5: a mailbox with inferiors is not removed here.
            // RFC 9051 6.3.4 and 7.1: refusing is allowed, with HASCHILDREN.
            self.tagged(tag, "NO", "[HASCHILDREN] Mailbox has children; delete them first");
            return;
        }
        if matches!(&self.state, State::Selected(s) if s.folder_id == f.id) {
            self.state = State::Authenticated;
        }
        match self.store.delete_folder(&f) {
            Ok(()) => self.tagged(tag, "OK", "DELETE completed"),
            Err(_) => self.tagged(tag, "NO", "[SERVERBUG] DELETE failed"),
        }
    }

    fn rename(&mut self, tag: &str, from: &Mailbox<'_>, to: &Mailbox<'_>) {
        let from = self.mailbox_name(from);
        let Some(to) = self.new_mailbox_name(to) else {
            self.tagged(tag, "NO", "[CANNOT] Invalid mailbox name");
            return;
        };
        if self.folder(&to).is_some() {
            self.tagged(tag, "NO", "[ALREADYEXISTS] Target exists");
            return;
        }
        let Some(src) = self.folder(&from) else {
            self.tagged(tag, "NO", "[NONEXISTENT] No such mailbox");
            return;
        };
        if from == "INBOX" {
            // RFC 9051 6.3.6: renaming INBOX moves its messages to the new
            // name and leaves INBOX empty.
            let result = self
                .store
                .db
                .create_folder(self.account_id(), &to, None)
                .and_then(|dst| {
                    let uids: Vec<i64> = self
                        .store
                        .db
                        .message_meta(src.id)?
                        .into_iter()
                        .map(|m| m.uid)
                        .collect();
                    self.store.db.copy_messages(src.id, &uids, dst.id)?;
                    self.store.expunge(src.id, &uids)
                });
            match result {
                Ok(_) => self.tagged(tag, "OK", "RENAME completed"),
                Err(e) => self.store_failed(tag, "RENAME", &e),
            }
            return;
        }
        match self.store.db.rename_folder(self.account_id(), &from, &to) {
            Ok(()) => self.tagged(tag, "OK", "RENAME completed"),
            Err(_) => self.tagged(tag, "NO", "[CANNOT] RENAME failed"),
        }
    }

    fn subscribe(&mut self, tag: &str, mailbox: &Mailbox<'_>, on: bool) {
        let name = self.mailbox_name(mailbox);
        match self.store.db.set_subscribed(self.account_id(), &name, on) {
            Ok(true) => self.tagged(tag, "OK", "Completed"),
            Ok(false) if !on => self.tagged(tag, "OK", "Completed"),
            _ => self.tagged(tag, "NO", "[NONEXISTENT] No such mailbox"),
        }
    }

    fn list(
        &mut self,
        tag: &str,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
        extras: &Extras,
    ) {
        let select_subscribed = extras.list_select.iter().any(|o| o == "SUBSCRIBED");
        let select_special = extras.list_select.iter().any(|o| o == "SPECIAL-USE");
        let return_subscribed = select_subscribed || extras.list_return.iter().any(|o| o == "SUBSCRIBED");
        let utf8 = self.utf8 || self.rev2;
        let reference = self.mailbox_name(reference);
        let pattern: &[u8] = match pattern {
            ListMailbox::Token(t) => t.as_ref(),
            ListMailbox::String(s) => s.as_ref(),
        };
        let pattern =
            decode_name(pattern, utf8).unwrap_or_else(|| String::from_utf8_lossy(pattern).into_owned());
        let verb = if lsub { "LSUB" } else { "LIST" };
        let mut out = Vec::new();
        if pattern.is_empty() && !lsub {
            // RFC 9051 6.3.9: the delimiter and root.
            out.extend_from_slice(b"* LIST (\\Noselect) \"/\" \"\"\r\n");
            let _ = write!(Lossless(&mut out), "{tag} OK LIST completed\r\n");
            self.send(out);
            return;
        }
        let full = format!("{reference}{pattern}");
        let folders = self.store.db.folder_list(self.account_id()).unwrap_or_default();
        let mut status_for = Vec::new();
        for (name, special, subscribed) in &folders {
            if (lsub || select_subscribed) && !subscribed {
                continue;
            }
            if select_special && special.is_none() {
                continue;
            }
            let matched = if name == "INBOX" {
                wildmatch(&full.to_uppercase(), "INBOX")
            } else {
                wildmatch(&full, name)
            };
            if !matched {
                continue;
            }
            let has_children = folders.iter().any(|(n, _, _)| n.starts_with(&format!("{name}/")));
            let mut attrs = vec![if has_children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            }];
            if let Some(s) = special {
                if !lsub {
                    attrs.push(s.as_str());
                }
            }
            if *subscribed && !lsub && (self.rev2 || return_subscribed) {
                attrs.push("\\Subscribed");
            }
            let _ = write!(Lossless(&mut out), "* {verb} ({}) \"/\" ", attrs.join(" "));
            write_mailbox(&mut out, name, self.utf8 || self.rev2);
            out.extend_from_slice(b"\r\n");
            status_for.push(name.clone());
        }
        // LIST-STATUS (RFC 5819): a STATUS response after each mailbox.
        if let Some(items) = &extras.list_status {
            for name in status_for {
                if let Some(line) = self.status_line(&name, items) {
                    out.extend_from_slice(&line);
                }
            }
        }
        let _ = write!(Lossless(&mut out), "{tag} OK {verb} completed\r\n");
        self.send(out);
    }

    fn status(&mut self, tag: &str, mailbox: &Mailbox<'_>, items: &[StatusDataItemName]) {
        let name = self.mailbox_name(mailbox);
        let names: Vec<String> = items
            .iter()
            .map(|i| {
                match i {
                    StatusDataItemName::Messages => "MESSAGES",
                    StatusDataItemName::Recent => "RECENT",
                    StatusDataItemName::UidNext => "UIDNEXT",
                    StatusDataItemName::UidValidity => "UIDVALIDITY",
                    StatusDataItemName::Unseen => "UNSEEN",
                    StatusDataItemName::Deleted => "DELETED",
                    StatusDataItemName::Size => "SIZE",
                    StatusDataItemName::HighestModSeq => "HIGHESTMODSEQ",
                    StatusDataItemName::DeletedStorage => "DELETED-STORAGE",
                }
                .to_string()
            })
            .collect();
        match self.status_line(&name, &names) {
            Some(mut line) => {
                let _ = write!(Lossless(&mut line), "{tag} OK STATUS completed\r\n");
                self.send(line);
            }
            None => self.tagged(tag, "NO", "[NONEXISTENT] No such mailbox"),
        }
    }

    /// `* STATUS name (ITEM value ...)` for the named items.
    fn status_line(&self, name: &str, items: &[String]) -> Option<Vec<u8>> {
        let f = self.folder(name)?;
        let snap = self
            .store
            .folder_snapshot(f.id, Some((f.highestmodseq, f.uidnext)))
            .ok()
            .flatten();
        let metas: &[postroom_store::folders::MessageMeta] = snap.as_ref().map_or(&[], |s| &s.msgs[..]);
        let recent_mark = self
            .store
            .db
            .read(|c| {
                Ok(
                    c.query_row("SELECT recent_uid FROM folders WHERE id = ?1", [f.id], |r| {
                        r.get::<_, i64>(0)
                    })?,
                )
            })
            .unwrap_or(0);
        let count = |pred: &dyn Fn(&postroom_store::folders::MessageMeta) -> bool| {
            metas.iter().filter(|m| pred(m)).count()
        };
        let mut parts = Vec::new();
        for item in items {
            let v = match item.as_str() {
                "MESSAGES" => metas.len().to_string(),
                "RECENT" => count(&|m| m.uid > recent_mark).to_string(),
                "UIDNEXT" => f.uidnext.to_string(),
                "UIDVALIDITY" => f.uidvalidity.to_string(),
                "UNSEEN" => count(&|m| m.flags & crate::format::SEEN == 0).to_string(),
                "DELETED" => count(&|m| m.flags & crate::format::DELETED != 0).to_string(),
                "SIZE" => metas.iter().map(|m| m.size).sum::<i64>().to_string(),
                "HIGHESTMODSEQ" => f.highestmodseq.to_string(),
                "DELETED-STORAGE" => metas
                    .iter()
                    .filter(|m| m.flags & crate::format::DELETED != 0)
                    .map(|m| m.size)
                    .sum::<i64>()
                    .to_string(),
                _ => continue,
            };
            parts.push(format!("{item} {v}"));
        }
        let mut out = b"* STATUS ".to_vec();
        write_mailbox(&mut out, &f.name, self.utf8 || self.rev2);
        let _ = write!(Lossless(&mut out), " ({})\r\n", parts.join(" "));
        Some(out)
    }

    /// The account's quota as a QUOTA response, or nothing without a quota.
    fn quota_line(&self) -> String {
        let id = self.account_id();
        let used = self.store.db.usage(id).unwrap_or(0);
        match self
            .store
            .db
            .account_by_id(id)
            .ok()
            .flatten()
            .and_then(|a| a.quota)
        {
            // RFC 9208 5.1: STORAGE in units of 1024 octets.
            Some(l) => format!("* QUOTA \"\" (STORAGE {} {})\r\n", (used + 1023) / 1024, l / 1024),
            None => String::new(),
        }
    }

    fn quota_root(&mut self, tag: &str, mailbox: &Mailbox<'_>) {
        let name = self.mailbox_name(mailbox);
        if self.folder(&name).is_none() {
            self.tagged(tag, "NO", "[NONEXISTENT] No such mailbox");
            return;
        }
        let quota = self.quota_line();
        let mut out = b"* QUOTAROOT ".to_vec();
        write_mailbox(&mut out, &name, self.utf8 || self.rev2);
        // Without a quota the mailbox has no quota root (RFC 9208 4.3.3).
        if !quota.is_empty() {
            out.extend_from_slice(b" \"\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(quota.as_bytes());
        let _ = write!(Lossless(&mut out), "{tag} OK GETQUOTAROOT completed\r\n");
        self.send(out);
    }

    fn append(
        &mut self,
        tag: &str,
        mailbox: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<i64>,
        body: Body,
    ) {
        let name = self.mailbox_name(mailbox);
        let Some(f) = self.folder(&name) else {
            self.tagged(tag, "NO", "[TRYCREATE] No such mailbox");
            return;
        };
        let (len, head) = match &body {
            Body::Bytes(d) => (d.len() as u64, &d[..]),
            Body::Upload(w) => (w.len(), w.head()),
        };
        if len == 0 {
            self.tagged(tag, "NO", "Empty message");
            return;
        }
        if let Some(uid) = self.server_sent_copy(&f, head) {
            // The server saved this message at submission already; the
            // client's copy would be a duplicate (the issue's "move a copy to
            // Sent" done once). Its UID is the APPENDUID (RFC 4315 3).
            self.appended(tag, &f, uid);
            return;
        }
        let id = self.account_id();
        if let Some(quota) = self
            .store
            .db
            .account_by_id(id)
            .ok()
            .flatten()
            .and_then(|a| a.quota)
        {
            let used = self.store.db.usage(id).unwrap_or(0);
            if used.saturating_add(i64::try_from(len).unwrap_or(i64::MAX)) > quota {
                self.tagged(tag, "NO", "[OVERQUOTA] Quota exceeded");
                return;
            }
        }
        let (bits, keywords) = flag_bits(flags);
        let keywords = keywords.join(" ");
        let result = match body {
            Body::Bytes(data) => self.store.append(&f, &data, bits, &keywords, date),
            Body::Upload(w) => self.store.append_upload(&f, w, bits, &keywords, date),
        };
        match result {
            Ok(uid) => self.appended(tag, &f, uid),
            Err(e) => {
                if !matches!(e, postroom_store::StoreError::Limit(_)) {
                    tracing::error!(error = %e, "APPEND failed");
                }
                self.store_failed(tag, "APPEND", &e);
            }
        }
    }

    /// APPEND's OK with APPENDUID (RFC 4315 3), after announcing the new
    /// message when it went to the selected mailbox.
    fn appended(&mut self, tag: &str, f: &postroom_store::mailbox::FolderRow, uid: i64) {
        let mut out = Vec::new();
        if matches!(&self.state, State::Selected(s) if s.folder_id == f.id) {
            self.refresh(false, &mut out);
        }
        let _ = write!(
            Lossless(&mut out),
            "{tag} OK [APPENDUID {} {uid}] APPEND completed\r\n",
            f.uidvalidity
        );
        self.send(out);
    }

    /// The server-side Sent copy of this message, when `folder` is the
    /// \Sent folder and one was made in the last few minutes.
    fn server_sent_copy(&self, folder: &postroom_store::mailbox::FolderRow, data: &[u8]) -> Option<i64> {
        if folder.special_use.as_deref() != Some("\\Sent") {
            return None;
        }
        let message_id = postroom_core::header::header_value(data, "message-id")?;
        self.store
            .db
            .recent_sent_copy(folder.id, &message_id)
            .ok()
            .flatten()
    }

    /// Folds in changes made elsewhere; `allow_expunge`: EXPUNGE may be sent.
    fn refresh(&mut self, allow_expunge: bool, out: &mut Vec<u8>) {
        let State::Selected(sel) = &mut self.state else {
            return;
        };
        match self.store.folder_snapshot(sel.folder_id, None) {
            Ok(Some(snap)) => {
                let grew = snap.uidnext > sel.uidnext;
                // New messages become \Recent for the first session that sees them.
                let mark = if grew && !sel.read_only {
                    self.store.db.claim_recent(sel.folder_id).unwrap_or(i64::MAX)
                } else {
                    i64::MAX
                };
                sel.sync(&snap, allow_expunge, mark, out);
            }
            Ok(None) => {
                // The mailbox was deleted under us: BYE, sent with the
                // current response, then the connection closes.
                out.extend_from_slice(b"* BYE Selected mailbox was deleted\r\n");
                self.closing = true;
            }
            Err(_) => {}
        }
    }

    fn expunge(&mut self, tag: &str, uids: Option<imap_codec::imap_types::sequence::SequenceSet>) {
        let mut out = Vec::new();
        let State::Selected(sel) = &mut self.state else {
            return;
        };
        if sel.read_only {
            self.tagged(tag, "NO", "[READ-ONLY] Mailbox is read-only");
            return;
        }
        let mut deleted = deleted_uids(sel);
        if let Some(set) = uids {
            let allowed = resolve_uid(&set, sel);
            deleted.retain(|u| allowed.contains(u));
        }
        if let Err(e) = self.store.expunge(sel.folder_id, &deleted) {
            tracing::error!(error = %e, "EXPUNGE failed");
            self.tagged(tag, "NO", "[SERVERBUG] EXPUNGE failed");
            return;
        }
        sel.remove(&deleted, &mut out);
        self.refresh(true, &mut out);
        let hms = match &self.state {
            State::Selected(s) if s.condstore => format!("[HIGHESTMODSEQ {}] ", s.highestmodseq),
            _ => String::new(),
        };
        let _ = write!(Lossless(&mut out), "{tag} OK {hms}EXPUNGE completed\r\n");
        self.send(out);
    }

    fn search(
        &mut self,
        tag: &str,
        criteria: &[imap_codec::imap_types::search::SearchKey<'_>],
        uid: bool,
        return_opts: Option<&[String]>,
    ) {
        let mut out = Vec::new();
        self.refresh(uid, &mut out);
        let State::Selected(sel) = &self.state else {
            return;
        };
        let store = self.store.clone();
        let folder_id = sel.folder_id;
        let content = criteria.iter().any(search::needs_content);
        let body = criteria.iter().any(search::needs_body);
        // Header keys only: every message's header block at once, mostly
        // from the server-wide cache, instead of each whole message.
        let heads: Vec<Option<std::sync::Arc<[u8]>>> = if content && !body {
            let uids: Vec<i64> = sel.msgs().iter().map(|m| m.uid).collect();
            store.header_blocks(folder_id, &uids).unwrap_or_default()
        } else {
            Vec::new()
        };
        let msgs = sel.msgs();
        let load = |i: usize| -> Option<std::sync::Arc<[u8]>> {
            if !body {
                return heads.get(i).cloned().flatten();
            }
            let row = store.db.message(folder_id, msgs.get(i)?.uid).ok()??;
            store.message_bytes(&row).ok().map(Into::into)
        };
        let mut hits = Vec::new();
        let mut max_modseq = 0;
        let uses_modseq = criteria.iter().any(has_modseq);
        for i in 0..sel.msgs().len() {
            let mut raw = None;
            if criteria
                .iter()
                .all(|k| search::matches(k, sel, i, &load, &mut raw))
            {
                let m = &sel.msgs()[i];
                max_modseq = max_modseq.max(m.modseq);
                hits.push(if uid { m.uid } else { i as i64 + 1 });
            }
        }
        let w = &mut Lossless(&mut out);
        if self.rev2 || return_opts.is_some() {
            // RFC 4731 / RFC 9051 7.3.4: ESEARCH, with the asked-for parts
            // (RETURN () means ALL).
            let opts = return_opts.unwrap_or(&[]);
            let want = |o: &str| opts.iter().any(|x| x == o) || (opts.is_empty() && o == "ALL");
            let _ = write!(w, "* ESEARCH (TAG \"{tag}\")");
            if uid {
                let _ = write!(w, " UID");
            }
            if let (true, Some(min)) = (want("MIN"), hits.iter().min()) {
                let _ = write!(w, " MIN {min}");
            }
            if let (true, Some(max)) = (want("MAX"), hits.iter().max()) {
                let _ = write!(w, " MAX {max}");
            }
            if want("COUNT") {
                let _ = write!(w, " COUNT {}", hits.len());
            }
            if want("ALL") && !hits.is_empty() {
                let _ = write!(w, " ALL {}", uid_set(&hits));
            }
            if uses_modseq && !hits.is_empty() {
                let _ = write!(w, " MODSEQ {max_modseq}");
            }
            let _ = write!(w, "\r\n");
        } else {
            let _ = write!(w, "* SEARCH");
            for h in &hits {
                let _ = write!(w, " {h}");
            }
            if uses_modseq && !hits.is_empty() {
                let _ = write!(w, " (MODSEQ {max_modseq})");
            }
            let _ = write!(w, "\r\n");
        }
        let _ = write!(w, "{tag} OK SEARCH completed\r\n");
        self.send(out);
    }

    fn targets(
        &mut self,
        tag: &str,
        set: &imap_codec::imap_types::sequence::SequenceSet,
        uid: bool,
    ) -> Option<Vec<usize>> {
        let State::Selected(sel) = &self.state else {
            return None;
        };
        if uid {
            Some(crate::sequence::resolve_uid_indices(set, sel))
        } else {
            match resolve_seq(set, sel.msgs().len()) {
                Some(v) => Some(v),
                None => {
                    self.bad(tag, "Invalid message sequence number");
                    None
                }
            }
        }
    }

    fn fetch(
        &mut self,
        tag: &str,
        set: &imap_codec::imap_types::sequence::SequenceSet,
        items: imap_codec::imap_types::fetch::MacroOrMessageDataItemNames<'_>,
        uid: bool,
        modifiers: &[imap_codec::imap_types::command::FetchModifier],
    ) {
        let mut out = Vec::new();
        self.refresh(uid, &mut out);
        let Some(targets) = self.targets(tag, set, uid) else {
            return;
        };
        let changed_since = modifiers.iter().find_map(|m| match m {
            imap_codec::imap_types::command::FetchModifier::ChangedSince(v) => Some(modseq_arg(v.get())),
            _ => None,
        });
        let State::Selected(sel) = &mut self.state else {
            return;
        };
        if changed_since.is_some() {
            sel.condstore = true;
            self.condstore = true;
        }
        let mut ctx = fetch::FetchContext {
            store: &self.store,
            utf8: self.utf8 || self.rev2,
            rev2: self.rev2,
        };
        match fetch::run(&mut ctx, sel, &targets, items, uid, changed_since, &mut out) {
            Ok(()) => {
                let _ = write!(Lossless(&mut out), "{tag} OK FETCH completed\r\n");
            }
            Err(fetch::FetchError::UnknownCte) => {
                let _ = write!(
                    Lossless(&mut out),
                    "{tag} NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding\r\n"
                );
            }
            Err(fetch::FetchError::Store) => {
                let _ = write!(Lossless(&mut out), "{tag} NO [SERVERBUG] Message unavailable\r\n");
            }
        }
        self.send(out);
    }

    #[allow(clippy::too_many_arguments)]
    fn store_cmd(
        &mut self,
        tag: &str,
        set: &imap_codec::imap_types::sequence::SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        modifiers: &[imap_codec::imap_types::command::StoreModifier],
    ) {
        let mut out = Vec::new();
        self.refresh(uid, &mut out);
        let Some(targets) = self.targets(tag, set, uid) else {
            return;
        };
        let State::Selected(sel) = &mut self.state else {
            return;
        };
        if sel.read_only {
            self.tagged(tag, "NO", "[READ-ONLY] Mailbox is read-only");
            return;
        }
        let unchanged_since = modifiers
            .iter()
            .map(|m| match m {
                imap_codec::imap_types::command::StoreModifier::UnchangedSince(v) => modseq_arg(*v),
            })
            .next();
        if unchanged_since.is_some() {
            sel.condstore = true;
            self.condstore = true;
        }
        let (bits, keywords) = flag_bits(flags);
        let op = match kind {
            StoreType::Replace => FlagOp::Replace,
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
        };
        let uids: Vec<i64> = targets.iter().map(|i| sel.msgs()[*i].uid).collect();
        let (changed, refused) =
            match self
                .store
                .db
                .store_flags(sel.folder_id, &uids, op, bits, &keywords, unchanged_since)
            {
                Ok(r) => r,
                Err(e) => {
                    self.store_failed(tag, "STORE", &e);
                    return;
                }
            };
        let adopted = self
            .store
            .note_flag_changes(sel.folder_id, &changed)
            .is_some_and(|(old, new)| sel.adopt(&old, &new));
        for c in changed.iter().filter(|_| !adopted) {
            if let Some(i) = sel.index_of(c.uid) {
                let m = &mut sel.msgs_mut()[i];
                m.flags = c.flags;
                m.keywords = c.keywords.clone();
                m.modseq = c.modseq;
            }
        }
        if op != FlagOp::Remove {
            sel.learn_keywords(keywords.iter().map(String::as_str), &mut out);
        }
        // Report every target's flags (unless .SILENT); with CONDSTORE, a
        // silent STORE still reports MODSEQ (RFC 7162 3.1.3).
        // Sets, not scans: `STORE 1:* ...` on a large mailbox stays linear.
        let refused_set: std::collections::HashSet<i64> = refused.iter().copied().collect();
        let changed_set: std::collections::HashSet<i64> = changed.iter().map(|c| c.uid).collect();
        for &i in &targets {
            let m = &sel.msgs()[i];
            if refused_set.contains(&m.uid) {
                continue;
            }
            let was_changed = changed_set.contains(&m.uid);
            match response {
                StoreResponse::Answer => out.extend_from_slice(sel.flags_response(i + 1, m, uid).as_bytes()),
                StoreResponse::Silent if sel.condstore && was_changed => {
                    let _ = write!(Lossless(&mut out), "* {} FETCH (", i + 1);
                    if uid {
                        let _ = write!(Lossless(&mut out), "UID {} ", m.uid);
                    }
                    let _ = write!(Lossless(&mut out), "MODSEQ ({}))\r\n", m.modseq);
                }
                StoreResponse::Silent => {}
            }
        }
        if let Some(hm) = changed.iter().map(|c| c.modseq).max() {
            sel.highestmodseq = sel.highestmodseq.max(hm);
        }
        if refused.is_empty() {
            let _ = write!(Lossless(&mut out), "{tag} OK STORE completed\r\n");
        } else {
            let set = if uid {
                uid_set(&refused)
            } else {
                let seqs: Vec<i64> = refused
                    .iter()
                    .filter_map(|u| sel.index_of(*u))
                    .map(|i| i as i64 + 1)
                    .collect();
                uid_set(&seqs)
            };
            let _ = write!(
                Lossless(&mut out),
                "{tag} OK [MODIFIED {set}] Conditional STORE failed for some\r\n"
            );
        }
        let _ = flag_list; // flags are written through Selected::flags_response
        self.send(out);
    }

    fn copy(
        &mut self,
        tag: &str,
        set: &imap_codec::imap_types::sequence::SequenceSet,
        mailbox: &Mailbox<'_>,
        uid: bool,
        moving: bool,
    ) {
        let mut out = Vec::new();
        self.refresh(uid, &mut out);
        let Some(targets) = self.targets(tag, set, uid) else {
            return;
        };
        let name = self.mailbox_name(mailbox);
        let Some(dst) = self.folder(&name) else {
            self.tagged(tag, "NO", "[TRYCREATE] No such mailbox");
            return;
        };
        let State::Selected(sel) = &mut self.state else {
            return;
        };
        if moving && sel.read_only {
            self.tagged(tag, "NO", "[READ-ONLY] Mailbox is read-only");
            return;
        }
        let uids: Vec<i64> = targets.iter().map(|i| sel.msgs()[*i].uid).collect();
        let (uidvalidity, pairs) = match self.store.db.copy_messages(sel.folder_id, &uids, dst.id) {
            Ok(r) => r,
            Err(e) => {
                self.store_failed(tag, if moving { "MOVE" } else { "COPY" }, &e);
                return;
            }
        };
        let verb = if moving { "MOVE" } else { "COPY" };
        if pairs.is_empty() {
            let _ = write!(Lossless(&mut out), "{tag} OK {verb} completed\r\n");
            self.send(out);
            return;
        }
        let src: Vec<i64> = pairs.iter().map(|p| p.0).collect();
        let new: Vec<i64> = pairs.iter().map(|p| p.1).collect();
        let copyuid = format!("COPYUID {uidvalidity} {} {}", uid_list(&src), uid_list(&new));
        if moving {
            // RFC 6851 4.3: COPYUID in an untagged OK, then the expunges.
            let _ = write!(Lossless(&mut out), "* OK [{copyuid}] Moved\r\n");
            if let Err(e) = self.store.expunge(sel.folder_id, &src) {
                tracing::error!(error = %e, "MOVE expunge failed");
            }
            sel.remove(&src, &mut out);
            let _ = write!(Lossless(&mut out), "{tag} OK MOVE completed\r\n");
        } else {
            let _ = write!(Lossless(&mut out), "{tag} OK [{copyuid}] COPY completed\r\n");
        }
        self.send(out);
    }
}

fn deleted_uids(sel: &Selected) -> Vec<i64> {
    sel.msgs()
        .iter()
        .filter(|m| m.flags & crate::format::DELETED != 0)
        .map(|m| m.uid)
        .collect()
}

fn has_modseq(k: &imap_codec::imap_types::search::SearchKey<'_>) -> bool {
    use imap_codec::imap_types::search::SearchKey;
    match k {
        SearchKey::ModSequence { .. } => true,
        SearchKey::And(v) => v.as_ref().iter().any(has_modseq),
        SearchKey::Or(a, b) => has_modseq(a) || has_modseq(b),
        SearchKey::Not(a) => has_modseq(a),
        _ => false,
    }
}

/// LIST wildcards (RFC 9051 6.3.9): `*` matches anything, `%` anything but
/// the hierarchy delimiter. Dynamic programming over (pattern, name)
/// positions: linear in their product, whatever the pattern (backtracking
/// was exponential in the number of wildcards).
pub fn wildmatch(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // reach[j]: the first i pattern chars can match the first j name chars.
    let mut reach = vec![false; n.len() + 1];
    reach[0] = true;
    for &c in &p {
        let mut next = vec![false; n.len() + 1];
        match c {
            '*' => {
                let mut any = false;
                for j in 0..=n.len() {
                    any |= reach[j];
                    next[j] = any;
                }
            }
            '%' => {
                let mut any = false;
                for j in 0..=n.len() {
                    if j > 0 && n[j - 1] == '/' {
                        any = false;
                    }
                    any |= reach[j];
                    next[j] = any;
                }
            }
            c => {
                for j in 1..=n.len() {
                    next[j] = reach[j - 1] && n[j - 1] == c;
                }
            }
        }
        reach = next;
    }
    reach[n.len()]
}

#[allow(dead_code)]
const _: () = {
    let _ = SYSTEM_FLAGS;
};

#[allow(dead_code)]
fn _tag_is_used(_: Tag<'_>) {}
