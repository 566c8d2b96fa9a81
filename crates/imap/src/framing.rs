//! Splits the client's byte stream into IMAP messages (commands, SASL
//! responses, IDLE's DONE), literals included, before any parsing — so a
//! malformed message is dropped whole and its literal bytes are never taken
//! for commands. Sync literals get their continuation request here; a
//! literal over the limit is refused and skipped (RFC 7888, RFC 9051 7.1
//! TOOBIG). What is held is bounded by the session's state: 8 KiB per
//! message before login, 1 MiB after; a large APPEND literal is handed out
//! in pieces as it arrives (issue #8).

use imap_codec::decode::Decoder;
use imap_codec::fragmentizer::{FragmentInfo, Fragmentizer, LiteralAnnouncement};
use imap_codec::imap_types::auth::AuthenticateData;
use imap_codec::imap_types::command::Command;
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::imap_types::IntoStatic;
use imap_codec::{AuthenticateDataCodec, CommandCodec, IdleDoneCodec};

use crate::extensions::{lift, Extras};

/// What the framer expects next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Command,
    /// A SASL response line (after a `+` continuation).
    AuthData,
    /// `DONE` ending IDLE.
    IdleDone,
}

#[derive(Debug)]
pub enum Frame {
    Command(Box<Command<'static>>, Extras),
    /// A SASL response; `None` means the client cancelled with `*`.
    AuthData(Option<Vec<u8>>),
    IdleDone,
    /// Bytes to send at once (continuation requests, BAD replies).
    Reply(Vec<u8>),
    /// An APPEND's message literal of this many octets begins: they follow
    /// as `LiteralChunk`s, then the command, with `Extras::streamed`.
    LiteralStart(u32),
    LiteralChunk(Vec<u8>),
}

/// The largest message (lines and literals) before login: a LOGIN with
/// two literals or an AUTHENTICATE PLAIN response needs a few hundred
/// octets; 8 KiB leaves room for long passwords and ID parameters.
/// Without it an unauthenticated client could make the server hold
/// `max_append` (50 MB) per connection: 50 connections took it from 74 MB
/// to 2.4 GB of RSS (issue #8).
pub const PRE_AUTH_MAX: u32 = 8 * 1024;

/// The most octets handed to the fragmentizer at once: its queue keeps
/// its capacity, so this bounds it whatever the caller pushes.
const FEED: usize = 16 * 1024;

/// The largest message held in memory after login (everything but a
/// streamed APPEND literal): Dovecot's command line limit is 64 KiB; a
/// long UID set of a large mailbox fits in 1 MiB many times over. It was
/// `max_append` + 64 KiB (50 MB), for a line without CRLF too.
pub const POST_AUTH_MAX: u32 = 1024 * 1024;

/// APPEND literals from this size on are handed out in pieces as they
/// arrive (the session writes them to a file) instead of being gathered
/// in memory: up to `max_append` (50 MB) per connection otherwise.
/// Smaller ones, most mail, stay on the simpler path.
pub const STREAM_MIN: u32 = 64 * 1024;

pub struct Framer {
    frag: Fragmentizer,
    /// The size limit `frag` was made with.
    frag_limit: u32,
    expect: Expect,
    max_literal: u32,
    authenticated: bool,
    /// Received octets not yet handed to `frag` (from `start`). The
    /// fragmentizer is fed no further than the end of the current line or
    /// literal, so between messages it holds nothing and can be replaced
    /// by one with another size limit at login.
    input: Vec<u8>,
    start: usize,
    /// Octets of an announced literal not yet handed to `frag`.
    literal_left: u32,
    /// Messages refused for their size (lines or literals over the limit).
    oversized: u32,
    /// Octets of an APPEND literal still to hand out as chunks.
    streaming: u32,
    /// The current message's literal was handed out.
    streamed: bool,
    /// A frame to return next (the continuation after `LiteralStart`).
    pending: Option<Frame>,
    /// Literal announcements seen in the current message.
    announced: u32,
    /// Announcements the fragmentizer will report again (the message so
    /// far, fed anew when a literal is streamed) and that were answered
    /// already.
    replay: u32,
}

impl Framer {
    /// A framer for a logged-in session: `max_literal` is the APPENDLIMIT
    /// (for an APPEND's message literal); anything else held in memory may
    /// have [`POST_AUTH_MAX`].
    pub fn new(max_literal: u32) -> Self {
        let mut f = Self::pre_auth(max_literal);
        f.set_authenticated();
        f.refresh_limit();
        f
    }

    /// A framer before login: every message (line and literals) is capped
    /// at [`PRE_AUTH_MAX`] until [`Framer::set_authenticated`].
    pub fn pre_auth(max_literal: u32) -> Self {
        Framer {
            frag: Fragmentizer::new(PRE_AUTH_MAX),
            frag_limit: PRE_AUTH_MAX,
            expect: Expect::Command,
            max_literal,
            authenticated: false,
            input: Vec::new(),
            start: 0,
            literal_left: 0,
            oversized: 0,
            streaming: 0,
            streamed: false,
            pending: None,
            announced: 0,
            replay: 0,
        }
    }

    /// The session logged in: from the next message on, literals up to
    /// `max_literal` are accepted.
    pub fn set_authenticated(&mut self) {
        self.authenticated = true;
    }

    /// (largest literal, largest message held in memory) in the current
    /// state. After login an APPEND's message literal may have
    /// `max_literal`, but from [`STREAM_MIN`] on it is handed out, not held.
    fn limits(&self) -> (u32, u32) {
        if self.authenticated {
            (self.max_literal, POST_AUTH_MAX)
        } else {
            (PRE_AUTH_MAX, PRE_AUTH_MAX)
        }
    }

    pub fn expect(&mut self, e: Expect) {
        self.expect = e;
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// How many messages were refused for their size so far.
    pub fn oversized(&self) -> u32 {
        self.oversized
    }

    /// Octets held: received and not yet framed, plus the current
    /// message's (which the fragmentizer caps at the size limit).
    pub fn buffered(&self) -> usize {
        self.input.len() - self.start + self.frag.message_bytes().len()
    }

    /// Hands the fragmentizer the next piece: up to the end of the current
    /// line, or of the current literal. `false` when nothing is left.
    fn feed(&mut self) -> bool {
        let avail = &self.input[self.start..];
        if avail.is_empty() {
            return false;
        }
        let window = &avail[..avail.len().min(FEED)];
        let n = if self.literal_left > 0 {
            let n = window.len().min(self.literal_left as usize);
            // n <= literal_left, a u32.
            self.literal_left -= n as u32;
            n
        } else {
            memchr::memchr(b'\n', window).map_or(window.len(), |i| i + 1)
        };
        self.frag.enqueue_bytes(&window[..n]);
        self.consume(n);
        true
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.input.len() {
            self.start = 0;
            self.input.clear();
            if self.input.capacity() > 4 * FEED {
                self.input = Vec::new();
            }
        }
    }

    /// The next piece of a literal being handed out.
    fn chunk(&mut self) -> Option<Frame> {
        let avail = &self.input[self.start..];
        if avail.is_empty() {
            return None;
        }
        let n = avail.len().min(self.streaming as usize).min(FEED);
        let chunk = avail[..n].to_vec();
        self.consume(n);
        // n <= streaming, a u32.
        self.streaming -= n as u32;
        Some(Frame::LiteralChunk(chunk))
    }

    /// When the current message is an APPEND whose literal was just
    /// announced: the message so far with an empty literal (`{0+}`) in
    /// place of the announced one, for a new fragmentizer to go on with
    /// while the octets are handed out.
    fn streamable_prefix(&self) -> Option<Vec<u8>> {
        if self.frag.is_max_message_size_exceeded() || self.frag.is_message_poisoned() {
            return None;
        }
        let msg = self.frag.message_bytes();
        let sp = memchr::memchr(b' ', msg)?;
        if !crate::extensions::starts_with_ci(&msg[sp + 1..], b"APPEND ") {
            return None;
        }
        let open = memchr::memrchr(b'{', msg)?;
        let open = if open > 0 && msg[open - 1] == b'~' {
            open - 1
        } else {
            open
        };
        let mut prefix = msg[..open].to_vec();
        prefix.extend_from_slice(b"{0+}\r\n");
        Some(prefix)
    }

    /// Between two messages (nothing of the next one read yet), makes sure
    /// the fragmentizer has the state's size limit.
    fn refresh_limit(&mut self) {
        let limit = self.limits().1;
        if self.frag_limit != limit
            && !self.streamed
            && (self.frag.is_message_complete() || self.frag.message_bytes().is_empty())
        {
            self.frag = Fragmentizer::new(limit);
            self.frag_limit = limit;
        }
    }

    fn tag(&self) -> String {
        self.frag
            .decode_tag()
            .map(|t| t.as_ref().to_string())
            .unwrap_or_else(|| "*".to_string())
    }

    /// The next fragment, feeding the fragmentizer as it needs; `None`
    /// when more bytes are needed.
    fn progress(&mut self) -> Option<FragmentInfo> {
        loop {
            if let Some(info) = self.frag.progress() {
                return Some(info);
            }
            if !self.feed() {
                return None;
            }
        }
    }

    /// The next complete frame, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.pending.take() {
                return Some(f);
            }
            if self.streaming > 0 {
                return self.chunk();
            }
            self.refresh_limit();
            let info = self.progress()?;
            if let FragmentInfo::Line {
                announcement: Some(LiteralAnnouncement { mode, length }),
                ..
            } = info
            {
                if self.replay > 0 {
                    // Answered when it first came.
                    self.replay -= 1;
                    continue;
                }
                self.announced += 1;
                let (max_literal, max_message) = self.limits();
                let prefix = if self.authenticated
                    && self.expect == Expect::Command
                    && (STREAM_MIN..=max_literal).contains(&length)
                {
                    self.streamable_prefix()
                } else {
                    None
                };
                // Else the literal is held: it must fit in the message.
                let held = self.frag.message_bytes().len().min(u32::MAX as usize) as u32;
                let limit = match prefix {
                    Some(_) => max_literal,
                    None => max_literal.min(max_message.saturating_sub(held)),
                };
                if length > limit {
                    self.oversized += 1;
                    let tag = self.tag();
                    let reply = if self.authenticated {
                        // RFC 7889 / RFC 9051 7.1: APPENDLIMIT exceeded.
                        format!("{tag} NO [TOOBIG] Literal is larger than {limit} octets\r\n")
                    } else {
                        format!("{tag} BAD [TOOBIG] Too large before login\r\n")
                    };
                    self.announced = 0;
                    match mode {
                        // The client waits for our go-ahead: skip the rest.
                        LiteralMode::Sync => self.frag.skip_message(),
                        // LITERAL+: the octets come anyway; read and drop them
                        // (the fragmentizer keeps no more than its limit).
                        LiteralMode::NonSync => {
                            self.frag.poison_message();
                            self.literal_left = length;
                        }
                    }
                    return Some(Frame::Reply(reply.into_bytes()));
                }
                if let Some(prefix) = prefix {
                    // A fragmentizer that takes the message as having an
                    // empty literal here; the octets go round it. It
                    // reports the announcements before this one again.
                    self.frag = Fragmentizer::new(self.frag_limit);
                    self.frag.enqueue_bytes(&prefix);
                    self.replay = self.announced;
                    self.streaming = length;
                    self.streamed = true;
                    if mode == LiteralMode::Sync {
                        self.pending = Some(Frame::Reply(b"+ Ready for literal data\r\n".to_vec()));
                    }
                    return Some(Frame::LiteralStart(length));
                }
                self.literal_left = length;
                if mode == LiteralMode::Sync {
                    return Some(Frame::Reply(b"+ Ready for literal data\r\n".to_vec()));
                }
                continue;
            }
            if !self.frag.is_message_complete() {
                continue;
            }
            let streamed = std::mem::take(&mut self.streamed);
            self.announced = 0;
            let too_long = self.frag.is_max_message_size_exceeded();
            if too_long && !self.frag.is_message_poisoned() {
                self.oversized += 1;
            }
            let frame = match self.expect {
                Expect::Command => {
                    if self.frag.is_message_poisoned() {
                        // Already answered with TOOBIG.
                        continue;
                    }
                    let tag = self.tag();
                    if too_long {
                        Frame::Reply(format!("{tag} BAD [TOOBIG] Command too long\r\n").into_bytes())
                    } else {
                        let (message, extras) = lift(self.frag.message_bytes());
                        match CommandCodec::default().decode(&message) {
                            Ok((b"", cmd)) => {
                                Frame::Command(Box::new(cmd.into_static()), Extras { streamed, ..extras })
                            }
                            _ => Frame::Reply(format!("{tag} BAD Command syntax error\r\n").into_bytes()),
                        }
                    }
                }
                Expect::AuthData => match self.frag.decode_message(&AuthenticateDataCodec::default()) {
                    Ok(AuthenticateData::Continue(data)) => Frame::AuthData(Some(data.declassify().to_vec())),
                    Ok(AuthenticateData::Cancel) => Frame::AuthData(None),
                    Err(_) => Frame::AuthData(Some(Vec::new())),
                },
                Expect::IdleDone => match self.frag.decode_message(&IdleDoneCodec::default()) {
                    Ok(_) => Frame::IdleDone,
                    Err(_) => Frame::Reply(b"* BAD Expected DONE\r\n".to_vec()),
                },
            };
            return Some(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(f: &mut Framer, input: &[u8]) -> Vec<String> {
        f.push(input);
        let mut v = Vec::new();
        while let Some(frame) = f.next_frame() {
            v.push(match frame {
                Frame::Command(c, _) => format!("cmd {} {}", c.tag.as_ref(), c.body.name()),
                Frame::Reply(r) => format!("reply {}", String::from_utf8_lossy(&r).trim_end()),
                Frame::AuthData(d) => format!("auth {d:?}"),
                Frame::IdleDone => "done".into(),
                Frame::LiteralStart(n) => format!("start {n}"),
                Frame::LiteralChunk(c) => format!("chunk {}", c.len()),
            });
        }
        v
    }

    #[test]
    fn commands_literals_and_errors() {
        let mut f = Framer::new(100);
        assert_eq!(
            frames(&mut f, b"a1 NOOP\r\na2 LOGIN {3}\r\n"),
            ["cmd a1 NOOP", "reply + Ready for literal data"]
        );
        assert_eq!(frames(&mut f, b"bob pw\r\n"), ["cmd a2 LOGIN"]);
        assert_eq!(
            frames(&mut f, b"a3 FROB\r\n"),
            ["reply a3 BAD Command syntax error"]
        );
        assert_eq!(
            frames(&mut f, b"a4 APPEND INBOX {1000}\r\na5 NOOP\r\n"),
            [
                "reply a4 NO [TOOBIG] Literal is larger than 100 octets",
                "cmd a5 NOOP"
            ]
        );
        // LITERAL+: the octets arrive anyway and must not be read as commands.
        let mut body = b"a6 APPEND INBOX {150+}\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'x', 139));
        body.extend_from_slice(b"\r\na7 NOOP\r\n");
        assert_eq!(body.len(), 24 + 150);
        body.extend_from_slice(b"\r\na8 NOOP\r\n");
        let got = frames(&mut f, &body);
        assert_eq!(got[0], "reply a6 NO [TOOBIG] Literal is larger than 100 octets");
        assert_eq!(got.last().unwrap(), "cmd a8 NOOP");
    }

    /// Issue #8: before login, a line without CRLF is not buffered past
    /// the pre-login limit, however long it grows.
    #[test]
    fn pre_auth_line_without_crlf_is_not_buffered() {
        let mut f = Framer::pre_auth(50_000_000);
        let chunk = vec![b'x'; 16 * 1024];
        f.push(b"a1 LOGIN ");
        for _ in 0..640 {
            f.push(&chunk);
            assert!(f.next_frame().is_none());
            assert!(
                f.buffered() <= PRE_AUTH_MAX as usize,
                "{} octets held",
                f.buffered()
            );
        }
        // 10 MB later, the end of the line: BAD, and the next command works.
        assert_eq!(
            frames(&mut f, b"\r\na2 NOOP\r\n"),
            ["reply a1 BAD [TOOBIG] Command too long", "cmd a2 NOOP"]
        );
        assert_eq!(f.oversized(), 1);
    }

    /// Issue #8: before login a literal is capped at PRE_AUTH_MAX, not at
    /// the APPENDLIMIT; after login the APPENDLIMIT applies.
    #[test]
    fn pre_auth_literals_are_capped() {
        let mut f = Framer::pre_auth(50_000_000);
        assert_eq!(
            frames(&mut f, b"a1 LOGIN {49000000}\r\n"),
            ["reply a1 BAD [TOOBIG] Too large before login"]
        );
        // LITERAL+: read and dropped, never held.
        f.push(b"a2 LOGIN {49000000+}\r\n");
        let reply = f.next_frame();
        assert!(
            matches!(&reply, Some(Frame::Reply(r)) if r.starts_with(b"a2 BAD [TOOBIG]")),
            "{reply:?}"
        );
        let chunk = vec![b'y'; 16 * 1024];
        let mut sent = 0;
        while sent + chunk.len() <= 49_000_000 {
            f.push(&chunk);
            sent += chunk.len();
            assert!(f.next_frame().is_none());
            assert!(
                f.buffered() <= PRE_AUTH_MAX as usize,
                "{} octets held",
                f.buffered()
            );
        }
        f.push(&vec![b'y'; 49_000_000 - sent]);
        assert_eq!(frames(&mut f, b" x\r\na3 NOOP\r\n"), ["cmd a3 NOOP"]);
        assert_eq!(f.oversized(), 2);
        // A small literal (a password) is fine.
        assert_eq!(
            frames(&mut f, b"a4 LOGIN {3}\r\n"),
            ["reply + Ready for literal data"]
        );
        assert_eq!(frames(&mut f, b"bob pw\r\n"), ["cmd a4 LOGIN"]);
        // Logged in: the APPENDLIMIT applies from the next command on.
        f.set_authenticated();
        assert_eq!(
            frames(&mut f, b"a5 APPEND INBOX {20000}\r\n"),
            ["reply + Ready for literal data"]
        );
        let mut body = vec![b'z'; 20000];
        body.extend_from_slice(b"\r\n");
        assert_eq!(frames(&mut f, &body), ["cmd a5 APPEND"]);
    }

    /// Pipelined commands after LOGIN are framed with the limit in force
    /// when each begins (the session reads none while a login is open).
    #[test]
    fn limit_changes_between_messages() {
        let mut f = Framer::pre_auth(50_000);
        f.push(b"a1 LOGIN bob pw\r\na2 APPEND INBOX {10000+}\r\n");
        assert_eq!(f.next_frame().map(|_| ()), Some(()));
        f.set_authenticated();
        let mut body = vec![b'z'; 10000];
        body.extend_from_slice(b"\r\n");
        assert_eq!(frames(&mut f, &body), ["cmd a2 APPEND"]);
    }

    /// Issue #8: after login, a large APPEND literal is handed out in
    /// pieces as it arrives instead of being gathered; the command follows
    /// with an empty literal, marked `streamed`.
    #[test]
    fn append_literal_is_streamed() {
        let n = STREAM_MIN as usize + 1000;
        for (announce, plus) in [("{N}", false), ("{N+}", true), ("~{N}", false)] {
            let mut f = Framer::new(50_000_000);
            let line = format!(
                "a1 APPEND INBOX (\\Seen) {}\r\n",
                announce.replace('N', &n.to_string())
            );
            f.push(line.as_bytes());
            assert!(matches!(f.next_frame(), Some(Frame::LiteralStart(len)) if len as usize == n));
            if !plus {
                assert!(matches!(f.next_frame(), Some(Frame::Reply(r)) if r.starts_with(b"+ ")));
            }
            let mut got = 0;
            let body = vec![b'm'; n];
            for piece in body.chunks(5000) {
                f.push(piece);
                while let Some(frame) = f.next_frame() {
                    match frame {
                        Frame::LiteralChunk(c) => got += c.len(),
                        other => panic!("{other:?}"),
                    }
                }
                assert!(f.buffered() < 20_000, "{} octets held", f.buffered());
            }
            assert_eq!(got, n);
            f.push(b"\r\na2 NOOP\r\n");
            match f.next_frame() {
                Some(Frame::Command(cmd, extras)) => {
                    assert!(extras.streamed);
                    assert_eq!(cmd.body.name(), "APPEND");
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(frames(&mut f, b""), ["cmd a2 NOOP"]);
        }
        // Not logged in, or a small literal, or not an APPEND: as before.
        let mut f = Framer::new(50_000_000);
        assert_eq!(
            frames(&mut f, b"a1 APPEND INBOX {10}\r\n0123456789\r\n"),
            ["reply + Ready for literal data", "cmd a1 APPEND"]
        );
        let big = format!("a2 LOGIN {{{n}}}\r\n");
        assert_eq!(frames(&mut f, big.as_bytes()), ["reply + Ready for literal data"]);
    }

    /// After login too, what is held is bounded by POST_AUTH_MAX, not by
    /// the APPENDLIMIT: a line without CRLF, a literal of another command;
    /// an APPEND whose mailbox name came as a literal is still streamed.
    #[test]
    fn post_auth_memory_is_bounded() {
        let mut f = Framer::new(50_000_000);
        let chunk = vec![b'x'; 16 * 1024];
        f.push(b"a1 NOOP ");
        for _ in 0..320 {
            f.push(&chunk);
            assert!(f.next_frame().is_none());
            assert!(
                f.buffered() <= POST_AUTH_MAX as usize,
                "{} octets held",
                f.buffered()
            );
        }
        assert_eq!(
            frames(&mut f, b"\r\n"),
            ["reply a1 BAD [TOOBIG] Command too long"]
        );
        let big = format!("a2 SEARCH TEXT {{{}}}\r\n", 2 * POST_AUTH_MAX);
        let got = frames(&mut f, big.as_bytes());
        assert!(
            got.len() == 1 && got[0].starts_with("reply a2 NO [TOOBIG]"),
            "{got:?}"
        );

        let n = STREAM_MIN as usize * 2;
        assert_eq!(
            frames(&mut f, b"a3 APPEND {5}\r\n"),
            ["reply + Ready for literal data"]
        );
        let rest = format!("INBOX (\\Seen) {{{n}}}\r\n");
        f.push(b"INBOX");
        f.push(&rest.as_bytes()[5..]);
        assert!(matches!(f.next_frame(), Some(Frame::LiteralStart(len)) if len as usize == n));
        assert!(matches!(f.next_frame(), Some(Frame::Reply(r)) if r.starts_with(b"+ ")));
        f.push(&vec![b'm'; n]);
        let mut got = 0;
        while let Some(Frame::LiteralChunk(c)) = f.next_frame() {
            got += c.len();
        }
        assert_eq!(got, n);
        f.push(b"\r\n");
        match f.next_frame() {
            Some(Frame::Command(cmd, extras)) => {
                assert!(extras.streamed);
                assert_eq!(cmd.body.name(), "APPEND");
            }
            other => panic!("{other:?}"),
        }
        assert!(f.next_frame().is_none());
    }

    #[test]
    fn idle_done_and_auth_data() {
        let mut f = Framer::new(100);
        f.expect(Expect::IdleDone);
        assert_eq!(frames(&mut f, b"DONE\r\n"), ["done"]);
        f.expect(Expect::AuthData);
        assert_eq!(frames(&mut f, b"*\r\n"), ["auth None"]);
    }
}
