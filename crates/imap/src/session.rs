//! The IMAP session: states (RFC 9051 3), capabilities, and every command.
//!
//! Bytes go in through [`Session::receive`]; [`Session::poll`] returns
//! [`Action`]s. Logging in, STARTTLS and IDLE are handed to the caller (they
//! wait on a password hash, a handshake or other sessions), and so is
//! every question for the store ([`Action::Query`], answered with
//! [`Session::answered`]): the session is sans-IO and holds no store.
//!
//! This file keeps the session's state, the framing and the dispatch
//! (`Session::command`); each command family has a file of its own:
//! `auth` (LOGIN, AUTHENTICATE, ENABLE), `mailboxes` (SELECT/EXAMINE,
//! CREATE, DELETE, RENAME, SUBSCRIBE, LIST/LSUB, STATUS), `quota`,
//! `append`, `messages` (FETCH, STORE, SEARCH, COPY/MOVE, EXPUNGE,
//! CLOSE/UNSELECT) and `idle`.

use std::collections::VecDeque;
use std::fmt::Write as _;

use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;
use postroom_core::Secret;
use postroom_store::cache::FolderSnapshot;
use postroom_store::{AccountId, FolderId, StoreError, Uid};

use crate::extensions::Extras;
use crate::framing::{Expect, Frame, Framer};
use crate::selected::Selected;
use crate::storage::{Answer, Message, Query, UploadStep};

mod append;
mod auth;
mod idle;
mod mailboxes;
mod messages;
mod quota;

pub use mailboxes::wildmatch;
pub use messages::{BODIES_PER_QUERY, BODY_OCTETS_PER_QUERY};

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
    /// Ask the store ([`crate::storage::Glue::ask`]); answer with
    /// [`Session::answered`]. `poll` is quiet until then.
    Query(Query),
    /// A piece of an APPEND literal arriving (or the end of one that
    /// belongs to no APPEND): the glue writes it to a spool file
    /// ([`crate::storage::Glue::upload`]). Nothing to answer.
    Upload(UploadStep),
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
    framer: Framer,
    state: State,
    tls: bool,
    account: Option<(AccountId, String)>,
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
    /// The octets of an APPEND literal arriving in pieces so far (the
    /// glue writes them: [`Action::Upload`]).
    upload: Option<u64>,
    /// The command waiting for the answer to an [`Action::Query`].
    asked: Option<Asked>,
}

/// A command waiting for the store's [`Answer`], with what it needs to
/// finish.
#[derive(Debug)]
enum Asked {
    GetQuota {
        tag: String,
        root: String,
    },
    GetQuotaRoot {
        tag: String,
        name: String,
    },
    List {
        tag: String,
        plan: mailboxes::ListPlan,
    },
    /// LIST-STATUS: the LIST responses so far, then the STATUS ones.
    ListStatus {
        tag: String,
        out: Vec<u8>,
        items: Vec<String>,
    },
    Status {
        tag: String,
        items: Vec<String>,
        first_condstore: bool,
    },
    Select {
        tag: String,
        read_only: bool,
        condstore: bool,
    },
    Append {
        tag: String,
    },
    /// CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE.
    Change {
        tag: String,
        verb: &'static str,
    },
    /// The selected folder as it is now, for `then`; `allow_expunge`:
    /// EXPUNGE may be sent (RFC 9051 7.5.1).
    Refresh {
        allow_expunge: bool,
        then: Then,
    },
    Fetch(Box<crate::fetch::FetchJob>),
    Search(Box<messages::SearchJob>),
    Store(Box<messages::StoreJob>),
    /// COPY/MOVE's target looked up.
    CopyTarget(Box<messages::CopyJob>),
    /// COPY/MOVE's copies made (into `dst`).
    Copy {
        job: Box<messages::CopyJob>,
        dst: FolderId,
    },
    /// MOVE's originals expunged.
    Moved(Box<messages::CopyJob>),
    Expunge {
        tag: String,
        uids: Vec<Uid>,
    },
    Close {
        tag: String,
    },
}

/// What a refresh of the selected folder is for.
#[derive(Debug)]
enum Then {
    /// FETCH, STORE, SEARCH, COPY, MOVE: what changed is announced, then
    /// the command runs.
    Command {
        tag: String,
        body: Box<CommandBody<'static>>,
        extras: Extras,
    },
    /// NOOP and CHECK.
    Noop { tag: String, name: &'static str },
    /// IDLE's DONE.
    IdleDone { tag: String },
    /// A look while idling: nothing to answer.
    IdleCheck,
    /// APPEND into the selected mailbox: the new message announced, then
    /// OK with APPENDUID.
    Appended { tag: String, uidvalidity: i64, uid: Uid },
    /// EXPUNGE: the expunges announced so far, then the rest.
    Expunged { tag: String, out: Vec<u8> },
    /// COPY or MOVE into the selected mailbox.
    Copied(Box<messages::CopyJob>),
}

impl Asked {
    /// The command's tag and name.
    fn command(&self) -> (&str, &'static str) {
        match self {
            Asked::GetQuota { tag, .. } => (tag, "GETQUOTA"),
            Asked::GetQuotaRoot { tag, .. } => (tag, "GETQUOTAROOT"),
            Asked::List { tag, plan } => (tag, if plan.is_lsub() { "LSUB" } else { "LIST" }),
            Asked::ListStatus { tag, .. } => (tag, "LIST"),
            Asked::Status { tag, .. } => (tag, "STATUS"),
            Asked::Change { tag, verb } => (tag, verb),
            Asked::Append { tag } => (tag, "APPEND"),
            Asked::Select { tag, read_only, .. } => (tag, if *read_only { "EXAMINE" } else { "SELECT" }),
            // Each of these answers its own failures (`Session::answered`).
            Asked::Refresh { .. }
            | Asked::Fetch(_)
            | Asked::Search(_)
            | Asked::Store(_)
            | Asked::CopyTarget(_)
            | Asked::Copy { .. }
            | Asked::Moved(_)
            | Asked::Expunge { .. }
            | Asked::Close { .. } => ("*", "selected"),
        }
    }
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
    pub fn new(cfg: SessionConfig, tls: bool) -> Self {
        let framer = Framer::pre_auth(cfg.max_append);
        Session {
            cfg,
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
            asked: None,
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
    pub fn selected_folder(&self) -> Option<FolderId> {
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

    /// Closes after a BYE once the command that wrote it is done (not
    /// while it waits for the store: its response comes first).
    fn close_if_bye(&mut self) {
        if !self.waiting && std::mem::take(&mut self.closing) {
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
            _ => {
                if self.upload.take().is_some() {
                    self.out.push_back(Action::Upload(UploadStep::Discard));
                }
            }
        }
        match frame {
            Frame::LiteralStart(_) => {
                self.upload = Some(0);
                self.out.push_back(Action::Upload(UploadStep::Begin));
            }
            Frame::LiteralChunk(bytes) => {
                if let Some(n) = &mut self.upload {
                    *n = n.saturating_add(bytes.len() as u64);
                    self.out.push_back(Action::Upload(UploadStep::Chunk(bytes)));
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
            Frame::IdleDone => self.idle_done(),
        }
    }

    /// The caller's answer to [`Action::Authenticate`].
    pub fn login_result(&mut self, result: Result<(AccountId, String), LoginFailure>) {
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

    /// Asks the store: the command `asked` finishes when the answer comes
    /// ([`Session::answered`]).
    fn ask(&mut self, asked: Asked, query: Query) {
        self.asked = Some(asked);
        self.waiting = true;
        self.out.push_back(Action::Query(query));
    }

    /// The glue's answer to [`Action::Query`]: the waiting command
    /// finishes (a store error is its `NO [UNAVAILABLE]`, as for the
    /// commands that still call the store themselves).
    pub fn answered(&mut self, answer: Result<Answer, StoreError>) {
        let Some(asked) = self.asked.take().filter(|_| self.waiting) else {
            return;
        };
        self.waiting = false;
        match asked {
            Asked::Refresh { allow_expunge, then } => self.refreshed(allow_expunge, then, answer),
            Asked::Fetch(job) => self.fetch_answered(job, answer),
            Asked::Search(job) => self.search_answered(job, answer),
            Asked::Store(job) => self.stored(*job, answer),
            Asked::CopyTarget(job) => self.copy_target(job, answer),
            Asked::Copy { job, dst } => self.copied(job, dst, answer),
            Asked::Moved(job) => self.moved(*job, answer),
            Asked::Expunge { tag, uids } => self.expunged(tag, &uids, answer),
            Asked::Close { tag } => self.closed_mailbox(&tag, answer),
            asked => match answer {
                Ok(answer) => self.finish(asked, answer),
                Err(e) => {
                    let (tag, name) = asked.command();
                    let tag = tag.to_string();
                    self.store_failed(&tag, name, &e);
                }
            },
        }
        self.close_if_bye();
    }

    fn finish(&mut self, asked: Asked, answer: Answer) {
        match (asked, answer) {
            (Asked::GetQuota { tag, root }, Answer::Quota { quota, .. }) => {
                self.get_quota(&tag, &root, quota)
            }
            (Asked::GetQuotaRoot { tag, name }, Answer::Quota { folder_exists, quota }) => {
                self.get_quota_root(&tag, &name, folder_exists, quota)
            }
            (Asked::List { tag, plan }, Answer::Folders(folders)) => self.listed(tag, plan, folders),
            (Asked::ListStatus { tag, out, items }, Answer::Status(found)) => {
                self.list_status(&tag, out, &items, &found)
            }
            (
                Asked::Status {
                    tag,
                    items,
                    first_condstore,
                },
                Answer::Status(found),
            ) => self.statused(
                &tag,
                &items,
                first_condstore,
                found.first().and_then(Option::as_ref),
            ),
            (Asked::Change { tag, verb }, Answer::Changed(change)) => self.changed(&tag, verb, change),
            (Asked::Append { tag }, Answer::Appended(appended)) => self.appended(&tag, appended),
            (
                Asked::Select {
                    tag,
                    read_only,
                    condstore,
                },
                Answer::Selected(opened),
            ) => self.opened(&tag, read_only, condstore, opened),
            // An answer to another question: the glue's mistake, never the
            // client's. The command fails; the session goes on.
            (asked, answer) => {
                let (tag, name) = asked.command();
                tracing::error!(target: "imap", command = name, ?answer, "store answer does not fit the query");
                let tag = tag.to_string();
                self.tagged(&tag, "NO", &format!("[SERVERBUG] {name} failed"));
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

    fn account_id(&self) -> AccountId {
        self.account.as_ref().map_or(AccountId(0), |a| a.0)
    }

    /// Runs a command. FETCH, STORE, SEARCH, COPY and MOVE first fold in
    /// what changed elsewhere and send it ahead of their own responses (so
    /// that no early answer can lose it): a refresh, then the command
    /// ([`Then::Command`]). A failed store question ends a command with the
    /// tagged answer [`Session::store_failed`] writes, after whatever it
    /// wrote before, so the client's view and the session's agree.
    fn command(&mut self, cmd: Command<'static>, extras: Extras) {
        let tag = cmd.tag.as_ref().to_string();
        if let Some(allow_expunge) = self.refreshes_first(&cmd.body) {
            let then = Then::Command {
                tag,
                body: Box::new(cmd.body),
                extras,
            };
            self.ask_refresh(allow_expunge, then);
            return;
        }
        self.dispatch(&tag, cmd.body, extras);
    }

    /// Whether the command starts with a refresh, and whether that may
    /// announce expunges (RFC 9051 7.5.1: not during FETCH, STORE, SEARCH,
    /// except their UID forms).
    fn refreshes_first(&self, body: &CommandBody<'_>) -> Option<bool> {
        if !matches!(self.state, State::Selected(_)) {
            return None;
        }
        match body {
            CommandBody::Search { charset, uid, .. } => {
                // RFC 3501 6.4.4 / RFC 9051 6.4.4: an unknown charset is
                // answered at once (NO [BADCHARSET]).
                search_charset_known(charset).then_some(*uid)
            }
            CommandBody::Fetch { uid, .. }
            | CommandBody::Store { uid, .. }
            | CommandBody::Copy { uid, .. }
            | CommandBody::Move { uid, .. } => Some(*uid),
            _ => None,
        }
    }

    fn dispatch(&mut self, tag: &str, body: CommandBody<'static>, extras: Extras) {
        let tag = tag.to_string();
        let authed = matches!(self.state, State::Authenticated | State::Selected(_));
        let selected = matches!(self.state, State::Selected(_));
        match body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.send(format!("* CAPABILITY {caps}\r\n").into_bytes());
                self.tagged(&tag, "OK", "CAPABILITY completed");
            }
            CommandBody::Noop | CommandBody::Check => {
                let name = body.name();
                if !self.ask_refresh(
                    true,
                    Then::Noop {
                        tag: tag.clone(),
                        name,
                    },
                ) {
                    self.tagged(&tag, "OK", "Completed");
                }
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
                        // The glue holds the file (and answers for a
                        // failed write).
                        Some(len) => Message::Streamed(len),
                        _ => {
                            self.tagged(&tag, "NO", "[UNAVAILABLE] APPEND failed, try again later");
                            return;
                        }
                    }
                } else {
                    Message::Bytes(data)
                };
                self.append(tag, &mailbox, &flags, date, body);
            }
            CommandBody::GetQuotaRoot { mailbox } => self.quota_root(tag, &mailbox),
            CommandBody::GetQuota { root } => {
                self.quota(tag, String::from_utf8_lossy(root.as_ref()).into_owned())
            }
            CommandBody::Idle => self.idle(tag),
            _ if !selected => self.bad(&tag, "Select a mailbox first"),
            CommandBody::Close => self.close(&tag),
            CommandBody::Unselect => self.unselect(&tag),
            CommandBody::Expunge => self.expunge(&tag, None),
            CommandBody::ExpungeUid { sequence_set } => self.expunge(&tag, Some(sequence_set)),
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => {
                if search_charset_known(&charset) {
                    self.search(&tag, criteria.into_inner(), uid, extras.search_return)
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

    /// A CONDSTORE enabling command (RFC 7162 3.1: SELECT/EXAMINE
    /// (CONDSTORE), STATUS (HIGHESTMODSEQ), FETCH (MODSEQ), FETCH
    /// (CHANGEDSINCE), SEARCH MODSEQ, STORE (UNCHANGEDSINCE), ENABLE)
    /// turns CONDSTORE on for the session: from then on every FETCH response
    /// a STORE, an implicit \Seen or another session causes has UID and
    /// MODSEQ. True when this is the first one and a mailbox is selected:
    /// RFC 7162 3.1 then has the command's tagged OK carry the mailbox's
    /// HIGHESTMODSEQ ([`Session::highestmodseq_code`]), so the client
    /// knows where it stands without selecting again.
    fn enable_condstore(&mut self) -> bool {
        let first = !self.condstore;
        self.condstore = true;
        match &mut self.state {
            State::Selected(sel) => {
                sel.condstore = true;
                first
            }
            _ => false,
        }
    }

    /// `[HIGHESTMODSEQ n] ` for a tagged OK, with the selected mailbox's
    /// value as the command left it.
    fn highestmodseq_code(&self) -> String {
        match &self.state {
            State::Selected(sel) => format!("[HIGHESTMODSEQ {}] ", sel.highestmodseq),
            _ => String::new(),
        }
    }

    /// The one answer to a failed store call: `NO [LIMIT]` when an
    /// account or folder limit refused it, else `NO [UNAVAILABLE]` (RFC 9051
    /// 7.1: a temporary failure; the client may try again), logged once
    /// with the error and the account. A failed read is never taken for
    /// "nothing there" (an empty LIST, a quota of 0, a missing mailbox):
    /// a client would act on it (issue #9).
    fn store_failed(&mut self, tag: &str, what: &str, e: &StoreError) {
        if let StoreError::Limit(why) = e {
            self.tagged(tag, "NO", &format!("[LIMIT] {what} refused: {why}"));
            return;
        }
        self.log_store_error(what, e);
        self.tagged(
            tag,
            "NO",
            &format!("[UNAVAILABLE] {what} failed, try again later"),
        );
    }

    /// One log line for a failed store call: the command, the account and
    /// the error.
    fn log_store_error(&self, what: &str, e: &StoreError) {
        let account = self.account.as_ref().map_or("", |a| a.1.as_str());
        tracing::error!(target: "imap", %account, command = what, error = %e, "store failed");
    }

    /// Asks for the selected folder as it is now, for `then`; `false`
    /// (nothing asked) when no folder is selected.
    fn ask_refresh(&mut self, allow_expunge: bool, then: Then) -> bool {
        let State::Selected(sel) = &self.state else {
            return false;
        };
        let query = Query::Refresh {
            folder_id: sel.folder_id,
            uidnext: sel.uidnext,
            read_only: sel.read_only,
            rev2: self.rev2,
        };
        self.ask(Asked::Refresh { allow_expunge, then }, query);
        true
    }

    /// Folds the folder as it is now into the view; `allow_expunge`:
    /// EXPUNGE may be sent. Returns what changed, as responses. On a store
    /// error nothing was folded in (and nothing written): the session's
    /// view is the one the client has.
    fn fold(
        &mut self,
        answer: Result<Answer, StoreError>,
        allow_expunge: bool,
    ) -> Result<Vec<u8>, StoreError> {
        let now: Option<(std::sync::Arc<FolderSnapshot>, i64)> = match answer? {
            Answer::Refreshed(now) => now,
            other => {
                tracing::error!(target: "imap", ?other, "store answer does not fit the refresh");
                return Err(StoreError::Invalid("store answer does not fit the query".into()));
            }
        };
        let mut out = Vec::new();
        let State::Selected(sel) = &mut self.state else {
            return Ok(out);
        };
        match now {
            Some((snap, mark)) => sel.sync(&snap, allow_expunge, mark, &mut out),
            None => {
                // The mailbox was deleted under us: BYE, sent with the
                // current response, then the connection closes.
                out.extend_from_slice(b"* BYE Selected mailbox was deleted\r\n");
                self.closing = true;
            }
        }
        Ok(out)
    }

    /// A refresh answered: what changed is folded in, then `then` goes on.
    fn refreshed(&mut self, allow_expunge: bool, then: Then, answer: Result<Answer, StoreError>) {
        let folded = self.fold(answer, allow_expunge);
        match then {
            Then::Command { tag, body, extras } => match folded {
                Ok(out) => {
                    self.send(out);
                    self.dispatch(&tag, *body, extras);
                }
                Err(e) => self.store_failed(&tag, body.name(), &e),
            },
            Then::Noop { tag, name } => match folded {
                Ok(out) => {
                    self.send(out);
                    self.tagged(&tag, "OK", "Completed");
                }
                Err(e) => self.store_failed(&tag, name, &e),
            },
            Then::IdleDone { tag } => match folded {
                Ok(out) => {
                    self.send(out);
                    self.tagged(&tag, "OK", "IDLE terminated");
                }
                Err(e) => self.store_failed(&tag, "IDLE", &e),
            },
            // Nothing to answer while idling, and nothing was folded in:
            // the client's view stays the session's, and the next signal
            // (or the glue's tick) tries again. Logged, not hidden.
            Then::IdleCheck => match folded {
                Ok(out) => self.send(out),
                Err(e) => self.log_store_error("IDLE", &e),
            },
            Then::Appended {
                tag,
                uidvalidity,
                uid,
            } => {
                let out = folded.unwrap_or_else(|e| {
                    self.log_store_error("APPEND", &e);
                    Vec::new()
                });
                self.append_ok(&tag, out, uidvalidity, uid);
            }
            Then::Expunged { tag, out } => self.expunge_done(&tag, out, folded),
            Then::Copied(job) => self.copy_refreshed(job, folded),
        }
    }
}

/// RFC 3501 6.4.4 / RFC 9051 6.4.4: US-ASCII and UTF-8 are what we search
/// in; anything else is NO [BADCHARSET].
fn search_charset_known(charset: &Option<imap_codec::imap_types::core::Charset<'_>>) -> bool {
    charset.as_ref().is_none_or(|c| {
        c.as_ref().eq_ignore_ascii_case("UTF-8") || c.as_ref().eq_ignore_ascii_case("US-ASCII")
    })
}
