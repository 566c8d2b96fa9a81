//! Splits the client's byte stream into IMAP messages (commands, SASL
//! responses, IDLE's DONE), literals included, before any parsing — so a
//! malformed message is dropped whole and its literal bytes are never taken
//! for commands. Sync literals get their continuation request here; a
//! literal over the limit is refused and skipped (RFC 7888, RFC 9051 7.1
//! TOOBIG).

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
}

pub struct Framer {
    frag: Fragmentizer,
    expect: Expect,
    max_literal: u32,
}

impl Framer {
    /// `max_message`: the largest whole command (literals included), the
    /// APPENDLIMIT plus room for the command line.
    pub fn new(max_literal: u32) -> Self {
        Framer {
            frag: Fragmentizer::new(max_literal.saturating_add(64 * 1024)),
            expect: Expect::Command,
            max_literal,
        }
    }

    pub fn expect(&mut self, e: Expect) {
        self.expect = e;
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.frag.enqueue_bytes(bytes);
    }

    fn tag(&self) -> String {
        self.frag
            .decode_tag()
            .map(|t| t.as_ref().to_string())
            .unwrap_or_else(|| "*".to_string())
    }

    /// The next complete frame, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            let info = self.frag.progress()?;
            if let FragmentInfo::Line {
                announcement: Some(LiteralAnnouncement { mode, length }),
                ..
            } = info
            {
                if length > self.max_literal {
                    let tag = self.tag();
                    let reply = format!(
                        "{tag} NO [TOOBIG] Literal is larger than {} octets\r\n",
                        self.max_literal
                    );
                    match mode {
                        // The client waits for our go-ahead: skip the rest.
                        LiteralMode::Sync => self.frag.skip_message(),
                        // LITERAL+: the octets come anyway; read and drop them.
                        LiteralMode::NonSync => self.frag.poison_message(),
                    }
                    return Some(Frame::Reply(reply.into_bytes()));
                }
                if mode == LiteralMode::Sync {
                    return Some(Frame::Reply(b"+ Ready for literal data\r\n".to_vec()));
                }
                continue;
            }
            if !self.frag.is_message_complete() {
                continue;
            }
            let frame = match self.expect {
                Expect::Command => {
                    if self.frag.is_message_poisoned() {
                        // Already answered with TOOBIG.
                        continue;
                    }
                    let tag = self.tag();
                    if self.frag.is_max_message_size_exceeded() {
                        Frame::Reply(format!("{tag} BAD [TOOBIG] Command too long\r\n").into_bytes())
                    } else {
                        let (message, extras) = lift(self.frag.message_bytes());
                        match CommandCodec::default().decode(&message) {
                            Ok((b"", cmd)) => Frame::Command(Box::new(cmd.into_static()), extras),
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

    #[test]
    fn idle_done_and_auth_data() {
        let mut f = Framer::new(100);
        f.expect(Expect::IdleDone);
        assert_eq!(frames(&mut f, b"DONE\r\n"), ["done"]);
        f.expect(Expect::AuthData);
        assert_eq!(frames(&mut f, b"*\r\n"), ["auth None"]);
    }
}
