//! The SMTP server session state machine (RFC 5321 4.1.4 command order).
//!
//! The caller feeds bytes with [`Session::receive`] and takes [`Action`]s from
//! [`Session::poll`] until it returns `None` (more input needed). Some actions
//! ask a question the session cannot answer itself (is this recipient ours?
//! is the message stored?); the session then waits, and `poll` returns `None`
//! until the answer comes through [`Session::recipient_verdict`] or
//! [`Session::delivery_outcome`].

use std::mem;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use postroom_core::Address;

use crate::command::{parse_command, BodyParam, Command, CommandError, MailParams, RcptTarget};
use crate::data::{ChunkCollector, DataDecoder, DecodedBody, BODY_CHUNK};
use crate::reply::Reply;

#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The name in the banner and EHLO reply: the configured FQDN.
    pub hostname: String,
    pub max_message_size: u64,
    pub max_recipients: usize,
    /// Longest command line, CRLF included.
    pub max_line_length: usize,
    /// After this many errors each reply is delayed by `error_sleep`.
    pub soft_error_limit: u32,
    /// After this many errors the session ends with 421 4.7.0.
    pub hard_error_limit: u32,
    pub error_sleep: Duration,
    /// Refuse messages with bare CR or LF line ends (550 5.5.2).
    pub strict_line_endings: bool,
    /// Offer STARTTLS (a certificate is configured and TLS is not yet on).
    pub starttls: bool,
    /// Offer AUTH (RFC 4954), once the connection is encrypted (or the
    /// client may send passwords in plaintext, see
    /// [`Session::allow_plaintext_auth`]).
    pub auth: bool,
    /// A submission listener (RFC 6409): MAIL needs TLS first (530 5.7.0)
    /// and AUTH (530 5.7.0).
    pub submission: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".into(),
            max_message_size: 45_000_000,
            max_recipients: 100,
            max_line_length: 2048,
            soft_error_limit: 10,
            hard_error_limit: 20,
            error_sleep: Duration::from_secs(1),
            strict_line_endings: false,
            starttls: false,
            auth: false,
            submission: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
}

/// The answer to [`Action::CheckRecipient`]. `R` is whatever the caller
/// resolved the recipient to; the session hands it back in the envelope.
#[derive(Debug)]
pub enum RcptVerdict<R> {
    Accept(R),
    Reject(Reply),
}

/// Why a login failed, as the caller learned it.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// Wrong user or password: 535 5.7.8.
    Failed,
    /// Too many failures from this client, or the password store is
    /// unavailable: 454 4.7.0.
    Unavailable,
}

/// The answer to [`Action::Deliver`].
#[derive(Debug)]
pub enum DeliveryOutcome {
    /// Durably stored; the queue id goes into the 250 reply.
    Accepted {
        queue_id: String,
    },
    Rejected(Reply),
}

/// One complete transaction, handed over at the end of DATA or BDAT LAST.
#[derive(Debug)]
pub struct Envelope<R> {
    pub helo: String,
    pub esmtp: bool,
    pub tls: bool,
    pub peer: IpAddr,
    /// `None` for the null reverse-path `<>`.
    pub mail_from: Option<Address>,
    pub recipients: Vec<(RcptTarget, R)>,
    pub body_type: BodyType,
    pub smtputf8: bool,
    pub chunking: bool,
    /// The size of the CRLF-normalised message content. The content itself
    /// went out in [`Action::BodyChunk`]s before this envelope.
    pub size: u64,
    pub has_8bit: bool,
    pub bare_line_ends: u64,
    /// The authenticated user (SMTP AUTH), if any.
    pub auth: Option<String>,
}

#[derive(Debug)]
pub enum Action<R> {
    /// Wait this long before sending the next reply (the error sleep; the
    /// caller uses a timer, nothing blocks).
    Delay(Duration),
    Send(Reply),
    /// Log line for a refused command (a NOQUEUE-style reject).
    Refused {
        command: String,
        reply: Reply,
    },
    /// Answer with [`Session::recipient_verdict`].
    CheckRecipient(RcptTarget),
    /// An authenticated client's MAIL FROM: may it send as this address?
    /// Answer with [`Session::sender_verdict`].
    CheckSender(Option<Address>),
    /// Check a login; answer with [`Session::auth_result`]. The password
    /// is a [`postroom_core::Secret`]: it never reaches a log.
    Authenticate {
        user: String,
        password: postroom_core::Secret<String>,
    },
    /// A message body begins (DATA, or a transaction's first BDAT): what
    /// an earlier [`Action::BodyChunk`] left is not part of it.
    BodyStart,
    /// The next piece of the body that began with [`Action::BodyStart`],
    /// CRLF-normalised and dot-unstuffed, at least
    /// [`crate::data::BODY_CHUNK`] bytes but the last. The caller writes it
    /// to a spool file, so no session holds a whole message.
    BodyChunk(Vec<u8>),
    /// Every chunk of the body is out: answer with
    /// [`Session::delivery_outcome`]. A body that ends without this
    /// (too big, refused, RSET) is discarded by the caller.
    Deliver(Box<Envelope<R>>),
    /// Send nothing more in plaintext: start the TLS handshake, then call
    /// [`Session::tls_established`].
    StartTls,
    /// Flush what was sent and close the connection.
    Close,
}

#[derive(Debug)]
struct Transaction<R> {
    mail_from: Option<Address>,
    params: MailParams,
    recipients: Vec<(RcptTarget, R)>,
    chunks: Option<ChunkCollector>,
}

#[derive(Debug)]
enum Phase {
    Commands,
    /// Discarding a command line that is too long, up to its LF.
    LongLine,
    Data(DataDecoder),
    /// Reading `remaining` octets of a BDAT chunk; `keep` is false when the
    /// chunk is being skipped after an error.
    Chunk {
        remaining: u64,
        last: bool,
        keep: bool,
    },
    AwaitRecipient(RcptTarget),
    AwaitSender,
    /// AUTH PLAIN sent without an initial response: the next line is it.
    AuthPlain,
    /// AUTH LOGIN: the next line is the user name.
    AuthLoginUser,
    /// AUTH LOGIN: the next line is the password for this user.
    AuthLoginPassword(String),
    AwaitAuth,
    AwaitDelivery,
    AwaitTls,
    Closed,
}

#[derive(Debug)]
pub struct Session<R> {
    cfg: Arc<SessionConfig>,
    peer: IpAddr,
    input: Vec<u8>,
    phase: Phase,
    helo: Option<(String, bool)>,
    tls: bool,
    tx: Option<Transaction<R>>,
    errors: u32,
    out: std::collections::VecDeque<Action<R>>,
    /// The reply to a chunk that was skipped (sent when its octets are in).
    chunk_error: Option<Reply>,
    /// The authenticated user.
    auth: Option<String>,
    /// Passwords may cross this connection unencrypted.
    plaintext_auth: bool,
    /// MAIL FROM waiting for [`Session::sender_verdict`].
    pending_mail: Option<(Option<Address>, MailParams)>,
}

impl<R> Session<R> {
    pub fn new(cfg: Arc<SessionConfig>, peer: IpAddr, tls: bool) -> Self {
        Session {
            cfg,
            peer,
            input: Vec::new(),
            phase: Phase::Commands,
            helo: None,
            tls,
            tx: None,
            errors: 0,
            out: Default::default(),
            chunk_error: None,
            auth: None,
            plaintext_auth: false,
            pending_mail: None,
        }
    }

    /// Lets this connection send passwords without TLS (the client is in a
    /// network configured for it).
    pub fn allow_plaintext_auth(&mut self, allow: bool) {
        self.plaintext_auth = allow;
    }

    pub fn authenticated(&self) -> Option<&str> {
        self.auth.as_deref()
    }

    fn auth_offered(&self) -> bool {
        self.cfg.auth && (self.tls || self.plaintext_auth)
    }

    /// The caller's answer to [`Action::Authenticate`].
    pub fn auth_result(&mut self, result: Result<String, AuthFailure>) {
        if !matches!(self.phase, Phase::AwaitAuth) {
            return;
        }
        self.phase = Phase::Commands;
        match result {
            Ok(user) => {
                self.auth = Some(user);
                self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
            }
            Err(AuthFailure::Failed) => {
                self.refuse("AUTH", Reply::new(535, "5.7.8", "Error: authentication failed"))
            }
            Err(AuthFailure::Unavailable) => self.refuse(
                "AUTH",
                Reply::new(454, "4.7.0", "Temporary authentication failure, try again later"),
            ),
        }
    }

    /// The caller's answer to [`Action::CheckSender`].
    pub fn sender_verdict(&mut self, verdict: Result<(), Reply>) {
        if !matches!(self.phase, Phase::AwaitSender) {
            return;
        }
        self.phase = Phase::Commands;
        let Some((from, params)) = self.pending_mail.take() else {
            return;
        };
        match verdict {
            Ok(()) => self.start_transaction(from, params),
            Err(reply) => self.refuse("MAIL", reply),
        }
    }

    pub fn greeting(&self) -> Reply {
        Reply::multi(220, vec![format!("{} ESMTP Postroom", self.cfg.hostname)])
    }

    pub fn helo_name(&self) -> Option<&str> {
        self.helo.as_ref().map(|(name, _)| name.as_str())
    }

    /// The SIZE the client declared for the current transaction (for quota
    /// checks at RCPT time).
    pub fn declared_size(&self) -> Option<u64> {
        self.tx.as_ref().and_then(|t| t.params.size)
    }

    /// The current transaction's reverse-path, for log lines (`<>` for the
    /// null sender, empty outside a transaction).
    pub fn sender(&self) -> String {
        match &self.tx {
            Some(tx) => tx
                .mail_from
                .as_ref()
                .map_or_else(|| "<>".to_string(), |a| a.to_string()),
            None => String::new(),
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// True between MAIL and the end of the transaction, and while a line
    /// has arrived only in part: shutdown waits for these.
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some() || !self.input.is_empty()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// True while message content is being read (after DATA's 354, inside
    /// a BDAT chunk): the caller's data deadline applies, not the command
    /// deadline.
    pub fn reading_body(&self) -> bool {
        matches!(self.phase, Phase::Data(_) | Phase::Chunk { .. })
    }

    /// True from [`Action::BodyStart`] until the body is delivered or
    /// discarded: outside of it the caller keeps no spool file.
    pub fn body_open(&self) -> bool {
        self.reading_body() || self.tx.as_ref().is_some_and(|t| t.chunks.is_some())
    }

    /// True while a command line (or an AUTH response) has arrived only in
    /// part, or an overlong one is being skipped: the caller's command
    /// deadline runs, which a client sending a byte at a time cannot
    /// stretch (the idle timeout restarts with every byte).
    pub fn mid_command(&self) -> bool {
        !self.reading_body() && (!self.input.is_empty() || matches!(self.phase, Phase::LongLine))
    }

    /// True while a command or chunk has been read only in part; the
    /// caller's idle timeout applies either way.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Bytes from the peer.
    pub fn receive(&mut self, bytes: &[u8]) {
        if !self.is_closed() {
            self.input.extend_from_slice(bytes);
        }
    }

    /// The idle timeout ran out (RFC 5321 4.5.3.2).
    pub fn timed_out(&mut self) -> Reply {
        self.phase = Phase::Closed;
        Reply::new(
            421,
            "4.4.2",
            format!("{} Error: timeout exceeded", self.cfg.hostname),
        )
    }

    /// The server is shutting down.
    pub fn shutting_down(&mut self) -> Reply {
        self.phase = Phase::Closed;
        Reply::new(
            421,
            "4.3.2",
            format!("{} Service shutting down", self.cfg.hostname),
        )
    }

    pub fn recipient_verdict(&mut self, verdict: RcptVerdict<R>) {
        let Phase::AwaitRecipient(target) = mem::replace(&mut self.phase, Phase::Commands) else {
            return;
        };
        match verdict {
            RcptVerdict::Accept(resolved) => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.recipients.push((target, resolved));
                }
                self.reply(Reply::new(250, "2.1.5", "Ok"));
            }
            RcptVerdict::Reject(reply) => self.refuse("RCPT", reply),
        }
    }

    pub fn delivery_outcome(&mut self, outcome: DeliveryOutcome) {
        if !matches!(self.phase, Phase::AwaitDelivery) {
            return;
        }
        self.phase = Phase::Commands;
        self.tx = None;
        match outcome {
            DeliveryOutcome::Accepted { queue_id } => {
                self.reply(Reply::new(250, "2.0.0", format!("Ok: queued as {queue_id}")))
            }
            DeliveryOutcome::Rejected(reply) => self.refuse("DATA", reply),
        }
    }

    #[cfg(test)]
    pub(crate) fn tls_established_for_tests(&mut self) {
        self.tls = true;
    }

    /// The TLS handshake after STARTTLS succeeded: the session starts over
    /// (RFC 3207 4.2), and the client must greet again.
    pub fn tls_established(&mut self) {
        if matches!(self.phase, Phase::AwaitTls) {
            self.phase = Phase::Commands;
            self.tls = true;
            self.helo = None;
            self.tx = None;
            self.input.clear();
        }
    }

    /// The next thing to do, or `None` when more input (or an answer) is
    /// needed.
    pub fn poll(&mut self) -> Option<Action<R>> {
        loop {
            if let Some(action) = self.out.pop_front() {
                return Some(action);
            }
            if !self.step() {
                return self.out.pop_front();
            }
        }
    }

    /// Advances by one unit of work; false when nothing can be done now.
    fn step(&mut self) -> bool {
        match &mut self.phase {
            Phase::Closed
            | Phase::AwaitRecipient(_)
            | Phase::AwaitSender
            | Phase::AwaitAuth
            | Phase::AwaitDelivery
            | Phase::AwaitTls => false,
            Phase::AuthPlain | Phase::AuthLoginUser | Phase::AuthLoginPassword(_) => {
                let Some(i) = memchr::memchr(b'\n', &self.input) else {
                    if self.input.len() > 12 * 1024 {
                        self.input.clear();
                        self.phase = Phase::Commands;
                        self.refuse(
                            "AUTH",
                            Reply::new(500, "5.5.6", "Authentication exchange line too long"),
                        );
                    }
                    return false;
                };
                let mut line: Vec<u8> = self.input.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let line = String::from_utf8_lossy(&line).into_owned();
                self.auth_line(line.trim());
                true
            }
            Phase::LongLine => match memchr::memchr(b'\n', &self.input) {
                Some(i) => {
                    self.input.drain(..=i);
                    self.phase = Phase::Commands;
                    self.refuse("(long line)", Reply::new(500, "5.5.2", "Error: line too long"));
                    true
                }
                None => {
                    self.input.clear();
                    false
                }
            },
            Phase::Data(decoder) => {
                if self.input.is_empty() {
                    return false;
                }
                let (used, done) = decoder.feed(&self.input);
                self.input.drain(..used);
                if let Some(chunk) = decoder.take_chunk(BODY_CHUNK) {
                    self.out.push_back(Action::BodyChunk(chunk));
                }
                if done {
                    let Phase::Data(decoder) = mem::replace(&mut self.phase, Phase::Commands) else {
                        return false;
                    };
                    self.end_of_message(decoder.finish(), false);
                }
                true
            }
            Phase::Chunk {
                remaining,
                last,
                keep,
            } => {
                if *remaining > 0 && self.input.is_empty() {
                    return false;
                }
                let n = (*remaining).min(self.input.len() as u64) as usize;
                *remaining -= n as u64;
                let (last, keep, done) = (*last, *keep, *remaining == 0);
                if keep {
                    if let Some(chunks) = self.tx.as_mut().and_then(|t| t.chunks.as_mut()) {
                        chunks.push(&self.input[..n]);
                        if let Some(chunk) = chunks.take_chunk(BODY_CHUNK) {
                            self.out.push_back(Action::BodyChunk(chunk));
                        }
                    }
                }
                self.input.drain(..n);
                if done {
                    self.phase = Phase::Commands;
                    self.chunk_done(last, keep);
                }
                true
            }
            Phase::Commands => {
                let limit = self.cfg.max_line_length;
                match memchr::memchr(b'\n', &self.input) {
                    Some(i) if i < limit => {
                        let mut line: Vec<u8> = self.input.drain(..=i).collect();
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        self.command(&line);
                        true
                    }
                    Some(_) => {
                        self.phase = Phase::LongLine;
                        true
                    }
                    None if self.input.len() >= limit => {
                        self.phase = Phase::LongLine;
                        true
                    }
                    None => false,
                }
            }
        }
    }

    fn reply(&mut self, reply: Reply) {
        if self.errors > self.cfg.soft_error_limit {
            self.out.push_back(Action::Delay(self.cfg.error_sleep));
        }
        self.out.push_back(Action::Send(reply));
    }

    /// An error reply: counted, logged, and the session ends at the hard
    /// limit (as Postfix's smtpd_hard_error_limit).
    fn refuse(&mut self, command: &str, reply: Reply) {
        self.errors += 1;
        self.out.push_back(Action::Refused {
            command: command.to_string(),
            reply: reply.clone(),
        });
        self.reply(reply);
        if self.errors >= self.cfg.hard_error_limit {
            self.close_with(Reply::new(
                421,
                "4.7.0",
                format!("{} Error: too many errors", self.cfg.hostname),
            ));
        }
    }

    fn close_with(&mut self, reply: Reply) {
        self.out.push_back(Action::Send(reply));
        self.out.push_back(Action::Close);
        self.phase = Phase::Closed;
        self.input.clear();
    }

    fn command(&mut self, line: &[u8]) {
        let ehlo = matches!(self.helo, Some((_, true)));
        let utf8 = self.tx.as_ref().is_some_and(|t| t.params.smtputf8);
        let verb = command_name(line);
        let cmd = match parse_command(line, ehlo, utf8) {
            Ok(cmd) => cmd,
            Err(CommandError::BadChunkSize) => {
                // The chunk's length is unknown, so its octets cannot be
                // skipped: the connection cannot go on (RFC 3030 2).
                self.errors += 1;
                self.out.push_back(Action::Refused {
                    command: verb,
                    reply: CommandError::BadChunkSize.reply(),
                });
                self.close_with(CommandError::BadChunkSize.reply());
                return;
            }
            Err(e) => {
                self.refuse(&verb, e.reply());
                return;
            }
        };
        match cmd {
            Command::Quit => self.close_with(Reply::new(221, "2.0.0", "Bye")),
            Command::Noop => self.reply(Reply::new(250, "2.0.0", "Ok")),
            Command::Help => self.reply(Reply::new(214, "2.0.0", "See RFC 5321")),
            Command::Rset => {
                self.tx = None;
                self.reply(Reply::new(250, "2.0.0", "Ok"));
            }
            // Disabled as in the seed (Postfix disable_vrfy_command = yes):
            // neither reveals which addresses exist.
            Command::Vrfy => self.refuse(&verb, Reply::new(502, "5.5.1", "VRFY command is disabled")),
            Command::Expn => self.refuse(&verb, Reply::new(502, "5.5.1", "EXPN command is disabled")),
            Command::Auth { mechanism, initial } => self.auth_command(&mechanism, initial),
            Command::Helo(name) => self.greet(name, false),
            Command::Ehlo(name) => self.greet(name, true),
            Command::StartTls => self.starttls(),
            _ if self.helo.is_none() => {
                self.refuse(&verb, Reply::new(503, "5.5.1", "Error: send HELO/EHLO first"))
            }
            Command::Mail(from, params) => self.mail(from, params),
            Command::Rcpt(target) => self.rcpt(target),
            Command::Data => self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
        }
    }

    fn greet(&mut self, name: String, esmtp: bool) {
        self.tx = None;
        self.helo = Some((name, esmtp));
        if !esmtp {
            self.reply(Reply::multi(250, vec![self.cfg.hostname.clone()]));
            return;
        }
        let mut lines = vec![
            self.cfg.hostname.clone(),
            "PIPELINING".into(),
            format!("SIZE {}", self.cfg.max_message_size),
        ];
        if self.cfg.starttls && !self.tls {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() && self.auth.is_none() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.extend(["ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8", "CHUNKING"].map(String::from));
        self.reply(Reply::multi(250, lines));
    }

    fn starttls(&mut self) {
        if !self.cfg.starttls || self.tls {
            self.refuse("STARTTLS", Reply::new(502, "5.5.1", "STARTTLS not available"));
            return;
        }
        if self.helo.is_none() {
            self.refuse("STARTTLS", Reply::new(503, "5.5.1", "Error: send EHLO first"));
            return;
        }
        // RFC 3207 5: anything the client pipelined after STARTTLS arrived in
        // plaintext and must not be acted on after the handshake.
        self.input.clear();
        self.out
            .push_back(Action::Send(Reply::new(220, "2.0.0", "Ready to start TLS")));
        self.out.push_back(Action::StartTls);
        self.phase = Phase::AwaitTls;
    }

    fn mail(&mut self, from: Option<Address>, params: MailParams) {
        // The log's refusal line names the sender (issue #12): no
        // transaction holds it yet.
        let verb = format!(
            "MAIL FROM:<{}>",
            from.as_ref().map(Address::to_string).unwrap_or_default()
        );
        if self.tx.is_some() {
            self.refuse(&verb, Reply::new(503, "5.5.1", "Error: nested MAIL command"));
            return;
        }
        if self.cfg.submission && self.auth.is_none() {
            // RFC 3207 4 / RFC 4954 6: 530 5.7.0 for both.
            let text = if !self.tls && !self.plaintext_auth {
                "Must issue a STARTTLS command first"
            } else {
                "Authentication required"
            };
            self.refuse(&verb, Reply::new(530, "5.7.0", text));
            return;
        }
        if params.size.is_some_and(|s| s > self.cfg.max_message_size) {
            self.refuse(
                &verb,
                Reply::new(552, "5.3.4", "Message size exceeds fixed limit"),
            );
            return;
        }
        if self.auth.is_some() || from.is_some() {
            // The handler checks every sender: an authenticated client may
            // send only as its own addresses, and a domain that accepts no
            // mail (null MX) may not send any (RFC 7505 4.2).
            self.out.push_back(Action::CheckSender(from.clone()));
            self.pending_mail = Some((from, params));
            self.phase = Phase::AwaitSender;
            return;
        }
        self.start_transaction(from, params);
    }

    fn start_transaction(&mut self, from: Option<Address>, params: MailParams) {
        self.tx = Some(Transaction {
            mail_from: from,
            params,
            recipients: Vec::new(),
            chunks: None,
        });
        self.reply(Reply::new(250, "2.1.0", "Ok"));
    }

    fn auth_command(&mut self, mechanism: &str, initial: Option<String>) {
        if !self.cfg.auth {
            self.refuse("AUTH", Reply::new(502, "5.5.1", "Authentication not enabled"));
            return;
        }
        if self.helo.is_none() {
            self.refuse("AUTH", Reply::new(503, "5.5.1", "Error: send EHLO first"));
            return;
        }
        if self.auth.is_some() {
            // RFC 4954 4: no second AUTH in a session.
            self.refuse("AUTH", Reply::new(503, "5.5.1", "Error: already authenticated"));
            return;
        }
        if self.tx.is_some() {
            self.refuse(
                "AUTH",
                Reply::new(503, "5.5.1", "Error: AUTH not allowed during a transaction"),
            );
            return;
        }
        if !self.tls && !self.plaintext_auth {
            // RFC 4954 6: no password over an unencrypted connection.
            self.refuse(
                "AUTH",
                Reply::new(
                    538,
                    "5.7.11",
                    "Encryption required for requested authentication mechanism",
                ),
            );
            return;
        }
        match (mechanism, initial) {
            ("PLAIN", Some(resp)) => self.auth_plain(&resp),
            ("PLAIN", None) => {
                self.phase = Phase::AuthPlain;
                self.reply(Reply::new(334, "", ""));
            }
            ("LOGIN", Some(user)) => match decode_b64(&user) {
                Some(u) => {
                    self.phase = Phase::AuthLoginPassword(u);
                    self.reply(Reply::new(334, "", "UGFzc3dvcmQ6"));
                }
                None => self.refuse("AUTH", Reply::new(501, "5.5.2", "Invalid base64 data")),
            },
            ("LOGIN", None) => {
                self.phase = Phase::AuthLoginUser;
                self.reply(Reply::new(334, "", "VXNlcm5hbWU6"));
            }
            _ => self.refuse(
                "AUTH",
                Reply::new(504, "5.5.4", "Unrecognized authentication mechanism"),
            ),
        }
    }

    fn auth_line(&mut self, line: &str) {
        let phase = std::mem::replace(&mut self.phase, Phase::Commands);
        if line == "*" {
            self.refuse("AUTH", Reply::new(501, "5.0.0", "Authentication cancelled"));
            return;
        }
        match phase {
            Phase::AuthPlain => self.auth_plain(line),
            Phase::AuthLoginUser => match decode_b64(line) {
                Some(u) => {
                    self.phase = Phase::AuthLoginPassword(u);
                    self.reply(Reply::new(334, "", "UGFzc3dvcmQ6"));
                }
                None => self.refuse("AUTH", Reply::new(501, "5.5.2", "Invalid base64 data")),
            },
            Phase::AuthLoginPassword(user) => match decode_b64(line) {
                Some(password) => self.begin_auth(user, password),
                None => self.refuse("AUTH", Reply::new(501, "5.5.2", "Invalid base64 data")),
            },
            other => self.phase = other,
        }
    }

    /// RFC 4616: authzid NUL authcid NUL password, base64 (`=` is empty).
    fn auth_plain(&mut self, b64: &str) {
        let decoded = if b64 == "=" {
            Some(String::new())
        } else {
            decode_b64(b64)
        };
        let Some(decoded) = decoded else {
            self.refuse("AUTH", Reply::new(501, "5.5.2", "Invalid base64 data"));
            return;
        };
        let parts: Vec<&str> = decoded.split('\0').collect();
        let [authz, user, pass] = parts.as_slice() else {
            self.refuse("AUTH", Reply::new(535, "5.7.8", "Error: authentication failed"));
            return;
        };
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(user) {
            self.refuse(
                "AUTH",
                Reply::new(535, "5.7.8", "Error: authorization identity not allowed"),
            );
            return;
        }
        self.begin_auth(user.to_string(), pass.to_string());
    }

    fn begin_auth(&mut self, user: String, password: String) {
        self.phase = Phase::AwaitAuth;
        self.out.push_back(Action::Authenticate {
            user,
            password: postroom_core::Secret::new(password),
        });
    }

    fn rcpt(&mut self, target: RcptTarget) {
        let Some(tx) = self.tx.as_ref() else {
            self.refuse("RCPT", Reply::new(503, "5.5.1", "Error: need MAIL command"));
            return;
        };
        if tx.chunks.is_some() {
            self.refuse("RCPT", Reply::new(503, "5.5.1", "Error: RCPT after BDAT"));
            return;
        }
        if tx.recipients.len() >= self.cfg.max_recipients {
            // RFC 5321 4.5.3.1.10: 452 for too many recipients.
            self.refuse("RCPT", Reply::new(452, "4.5.3", "Error: too many recipients"));
            return;
        }
        self.out.push_back(Action::CheckRecipient(target.clone()));
        self.phase = Phase::AwaitRecipient(target);
    }

    /// Checks that DATA or BDAT may start; replies and returns false if not.
    fn transaction_ready(&mut self, verb: &str) -> bool {
        match self.tx.as_ref() {
            None => {
                self.refuse(verb, Reply::new(503, "5.5.1", "Error: need MAIL command"));
                false
            }
            Some(tx) if tx.recipients.is_empty() => {
                self.refuse(verb, Reply::new(554, "5.5.1", "Error: no valid recipients"));
                false
            }
            Some(_) => true,
        }
    }

    fn data(&mut self) {
        if self.tx.as_ref().is_some_and(|t| t.chunks.is_some()) {
            self.refuse("DATA", Reply::new(503, "5.5.1", "Error: DATA after BDAT"));
            return;
        }
        if !self.transaction_ready("DATA") {
            return;
        }
        self.reply(Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"));
        self.out.push_back(Action::BodyStart);
        self.phase = Phase::Data(DataDecoder::new(self.cfg.max_message_size));
    }

    fn bdat(&mut self, size: u64, last: bool) {
        let in_progress = self.tx.as_ref().is_some_and(|t| t.chunks.is_some());
        let keep = in_progress || self.transaction_ready("BDAT");
        // When refused, the refusal is already queued and the chunk's octets
        // are skipped.
        if !keep && self.is_closed() {
            return;
        }
        if keep {
            if let Some(tx) = self.tx.as_mut() {
                if tx.chunks.is_none() {
                    tx.chunks = Some(ChunkCollector::new(self.cfg.max_message_size));
                    self.out.push_back(Action::BodyStart);
                }
            }
        } else {
            // The reply was sent before the octets: take it back and send it
            // once they are consumed, so replies stay in order.
            self.chunk_error = self.take_last_reply();
        }
        self.phase = Phase::Chunk {
            remaining: size,
            last,
            keep,
        };
    }

    fn take_last_reply(&mut self) -> Option<Reply> {
        match self.out.pop_back() {
            Some(Action::Send(r)) => Some(r),
            Some(other) => {
                self.out.push_back(other);
                None
            }
            None => None,
        }
    }

    fn chunk_done(&mut self, last: bool, keep: bool) {
        if !keep {
            if let Some(reply) = self.chunk_error.take() {
                self.reply(reply);
            }
            return;
        }
        let too_big = self
            .tx
            .as_ref()
            .and_then(|t| t.chunks.as_ref())
            .is_some_and(ChunkCollector::too_big);
        if too_big {
            self.tx = None;
            self.refuse(
                "BDAT",
                Reply::new(552, "5.3.4", "Message size exceeds fixed limit"),
            );
            return;
        }
        if !last {
            self.reply(Reply::new(250, "2.0.0", "Ok: chunk received"));
            return;
        }
        if let Some(chunks) = self.tx.as_mut().and_then(|t| t.chunks.take()) {
            self.end_of_message(chunks.finish(), true);
        }
    }

    fn end_of_message(&mut self, body: DecodedBody, chunking: bool) {
        let verb = if chunking { "BDAT" } else { "DATA" };
        let Some(tx) = self.tx.take() else {
            return;
        };
        if body.too_big {
            self.refuse(verb, Reply::new(552, "5.3.4", "Message size exceeds fixed limit"));
            return;
        }
        if self.cfg.strict_line_endings && body.bare_line_ends > 0 {
            self.refuse(
                verb,
                Reply::new(550, "5.5.2", "Message contains bare CR or LF line endings"),
            );
            return;
        }
        if !body.body.is_empty() {
            self.out.push_back(Action::BodyChunk(body.body));
        }
        let (helo, esmtp) = self.helo.clone().unwrap_or_default();
        let envelope = Envelope {
            helo,
            esmtp,
            tls: self.tls,
            peer: self.peer,
            mail_from: tx.mail_from,
            recipients: tx.recipients,
            body_type: match tx.params.body {
                Some(BodyParam::EightBitMime) => BodyType::EightBitMime,
                _ => BodyType::SevenBit,
            },
            smtputf8: tx.params.smtputf8,
            chunking,
            size: body.size,
            has_8bit: body.has_8bit,
            bare_line_ends: body.bare_line_ends,
            auth: self.auth.clone(),
        };
        self.out.push_back(Action::Deliver(Box::new(envelope)));
        self.phase = Phase::AwaitDelivery;
    }
}

/// Base64 to UTF-8 text (SASL payloads); `None` if either is invalid.
fn decode_b64(s: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

/// The verb of a line, for logs: printable ASCII only, at most 16 chars.
fn command_name(line: &[u8]) -> String {
    line.iter()
        .take_while(|b| **b != b' ')
        .take(16)
        .map(|&b| {
            if b.is_ascii_graphic() {
                (b as char).to_ascii_uppercase()
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
