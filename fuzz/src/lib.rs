//! What the fuzz targets share: splitting input into pieces, reference
//! models of the decoders, and session drivers that check the `Session`
//! contracts (SMTP here, IMAP in [`imap`], POP3 in [`pop3`]). Every check
//! panics, which libFuzzer reports as a crash with the input saved under
//! `fuzz/artifacts/<target>/`.

pub mod imap;
pub mod pop3;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use postroom_smtp::data::DecodedBody;
use postroom_smtp::{
    Action, DeliveryOutcome, Envelope, RcptTarget, RcptVerdict, Reply, Session, SessionConfig,
};

/// Cuts `input` into pieces whose sizes come from a small xorshift seeded
/// by `seed`: the same input always gives the same pieces. Sizes are
/// 0..=max with `max` between 1 and 64 (seed 0: one byte at a time).
pub fn pieces(input: &[u8], seed: u8) -> Vec<&[u8]> {
    let max = 1 + (seed as usize % 64);
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed);
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = if seed == 0 {
            1
        } else {
            (state % (max as u64 + 1)) as usize
        };
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        out.push(piece);
        rest = tail;
    }
    out
}

/// True when `bytes` has a CR not followed by LF or a LF not preceded by CR.
pub fn has_bare_line_end(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| match b {
        b'\r' => bytes.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || bytes[i - 1] != b'\r',
        _ => false,
    })
}

/// Panics unless `reply` is a well-formed SMTP reply: lines of three digits
/// (the same code), `-` between and a space on the last, text without CR
/// or LF, each ended by CRLF.
pub fn check_reply(reply: &Reply) {
    assert!((200..=599).contains(&reply.code), "reply code {}", reply.code);
    let bytes = reply.to_bytes();
    assert!(bytes.ends_with(b"\r\n"), "reply without CRLF: {bytes:?}");
    let code = reply.code.to_string().into_bytes();
    let lines: Vec<&[u8]> = bytes[..bytes.len() - 2].split(|&b| b == b'\n').collect();
    for (i, raw) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        let line = if last {
            &raw[..]
        } else {
            assert!(raw.ends_with(b"\r"), "bare LF in reply {bytes:?}");
            &raw[..raw.len() - 1]
        };
        assert!(!line.contains(&b'\r'), "bare CR in reply {bytes:?}");
        assert!(line.len() >= 4, "short reply line in {bytes:?}");
        assert_eq!(&line[..3], &code[..], "reply line without its code: {bytes:?}");
        assert_eq!(
            line[3],
            if last { b' ' } else { b'-' },
            "bad separator: {bytes:?}"
        );
    }
}

/// A decoder's result, comparable.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub consumed: usize,
    pub done: bool,
    pub body: Vec<u8>,
    pub too_big: bool,
    pub bare: u64,
    pub has_8bit: bool,
}

impl Decoded {
    pub fn new(consumed: usize, done: bool, b: DecodedBody) -> Self {
        Decoded {
            consumed,
            done,
            body: b.body,
            too_big: b.too_big,
            bare: b.bare_line_ends,
            has_8bit: b.has_8bit,
        }
    }
}

/// The reference for a finished DATA: the end is the first `<CRLF>.<CRLF>`
/// (a `.<CRLF>` at the very start counts); before it, a dot that starts a
/// line (after a real CRLF) is removed and every bare CR or LF becomes CRLF.
/// `None` when there is no end.
pub fn reference_data(input: &[u8], limit: u64) -> Option<Decoded> {
    let mut padded = b"\r\n".to_vec();
    padded.extend_from_slice(input);
    let dot = padded.windows(5).position(|w| w == b"\r\n.\r\n")?;
    let content = &input[..dot];
    let mut body = Vec::new();
    let mut bare = 0;
    let mut line_start = true;
    let mut i = 0;
    while i < content.len() {
        let b = content[i];
        if line_start && b == b'.' {
            line_start = false;
            i += 1;
            continue;
        }
        line_start = false;
        match b {
            b'\r' if content.get(i + 1) == Some(&b'\n') => {
                body.extend_from_slice(b"\r\n");
                line_start = true;
                i += 2;
                continue;
            }
            b'\r' | b'\n' => {
                body.extend_from_slice(b"\r\n");
                bare += 1;
            }
            _ => body.push(b),
        }
        i += 1;
    }
    let too_big = body.len() as u64 > limit;
    Some(Decoded {
        consumed: dot + 3,
        done: true,
        body: if too_big { Vec::new() } else { body },
        too_big,
        bare,
        has_8bit: content.iter().any(|&b| b >= 0x80),
    })
}

/// The reference for BDAT content: bare CR and bare LF become CRLF.
pub fn reference_chunks(input: &[u8], limit: u64) -> Decoded {
    let mut body = Vec::new();
    let mut bare = 0;
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' if input.get(i + 1) == Some(&b'\n') => {
                body.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => {
                body.extend_from_slice(b"\r\n");
                bare += 1;
            }
            b => body.push(b),
        }
        i += 1;
    }
    let too_big = body.len() as u64 > limit;
    Decoded {
        consumed: input.len(),
        done: true,
        body: if too_big { Vec::new() } else { body },
        too_big,
        bare,
        has_8bit: input.iter().any(|&b| b >= 0x80),
    }
}

/// A session configuration from a flags byte, so the fuzzer explores the
/// limits too.
pub fn session_config(flags: u8) -> SessionConfig {
    SessionConfig {
        hostname: "mx.example".into(),
        max_message_size: if flags & 0x04 != 0 { 200 } else { 45_000_000 },
        max_recipients: if flags & 0x10 != 0 { 2 } else { 100 },
        max_line_length: if flags & 0x08 != 0 { 64 } else { 2048 },
        soft_error_limit: if flags & 0x20 != 0 { 2 } else { 10 },
        hard_error_limit: if flags & 0x20 != 0 { 5 } else { 20 },
        error_sleep: Duration::from_millis(1),
        strict_line_endings: flags & 0x01 != 0,
        starttls: flags & 0x02 != 0,
        auth: flags & 0x40 != 0,
        submission: flags & 0x80 != 0,
    }
}

/// Drives a session like the tokio glue does and checks its contract:
/// replies well-formed, `poll` quiet while a question is open, nothing
/// after `Close`, delivered envelopes within the limits and CRLF-clean.
pub struct Driver {
    cfg: Arc<SessionConfig>,
    pub session: Session<u32>,
    /// Everything the session did, in order.
    pub log: Vec<String>,
    pub delivered: usize,
    pub closed: bool,
    /// The body since the last BodyStart, from its chunks.
    body: Option<Vec<u8>>,
}

impl Driver {
    pub fn new(cfg: SessionConfig) -> Self {
        let cfg = Arc::new(cfg);
        Driver {
            session: Session::new(cfg.clone(), IpAddr::from([192, 0, 2, 1]), false),
            cfg,
            log: Vec::new(),
            delivered: 0,
            closed: false,
            body: None,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.session.receive(bytes);
        while let Some(action) = self.session.poll() {
            assert!(!self.closed, "action after Close: {action:?}");
            match action {
                Action::Send(reply) => {
                    check_reply(&reply);
                    self.log.push(format!("send {:?}", reply.to_bytes()));
                }
                Action::Delay(d) => {
                    assert_eq!(d, self.cfg.error_sleep);
                    self.log.push("delay".into());
                }
                Action::Refused { command, reply } => {
                    assert!(reply.is_error(), "refusal with {}", reply.summary());
                    check_reply(&reply);
                    self.log.push(format!("refused {command} {}", reply.summary()));
                }
                Action::CheckRecipient(target) => {
                    assert!(self.session.poll().is_none(), "poll went on before the verdict");
                    self.log.push(format!("check {target:?}"));
                    let verdict = match &target {
                        RcptTarget::Postmaster => RcptVerdict::Accept(0),
                        RcptTarget::Mailbox(a) if a.local_canonical().starts_with("user") => {
                            RcptVerdict::Accept(1)
                        }
                        RcptTarget::Mailbox(_) => {
                            RcptVerdict::Reject(Reply::new(550, "5.1.1", "User unknown"))
                        }
                    };
                    self.session.recipient_verdict(verdict);
                }
                Action::Authenticate { user, password } => {
                    let ok = password.expose() == "pw";
                    self.session.auth_result(if ok { Ok(user) } else { Err(postroom_smtp::AuthFailure::Failed) });
                }
                Action::CheckSender(_) => self.session.sender_verdict(Ok(())),
                Action::BodyStart => self.body = Some(Vec::new()),
                Action::BodyChunk(chunk) => {
                    assert!(!chunk.is_empty(), "empty chunk");
                    self.body.as_mut().expect("a chunk before BodyStart").extend_from_slice(&chunk);
                }
                Action::Deliver(env) => {
                    assert!(self.session.poll().is_none(), "poll went on before the outcome");
                    let body = self.body.take().unwrap_or_default();
                    assert_eq!(env.size, body.len() as u64);
                    self.check_envelope(&env, &body);
                    self.log.push(format!("deliver {env:?} {body:?}"));
                    self.delivered += 1;
                    let outcome = if body.windows(6).any(|w| w == b"REJECT") {
                        DeliveryOutcome::Rejected(Reply::new(554, "5.7.1", "Rejected"))
                    } else {
                        DeliveryOutcome::Accepted {
                            queue_id: format!("Q{}", self.delivered),
                        }
                    };
                    self.session.delivery_outcome(outcome);
                }
                Action::StartTls => {
                    assert!(self.session.poll().is_none(), "poll went on before TLS");
                    self.log.push("starttls".into());
                    self.session.tls_established();
                    assert!(self.session.is_tls());
                }
                Action::Close => {
                    self.log.push("close".into());
                    self.closed = true;
                    assert!(self.session.is_closed());
                }
            }
        }
    }

    fn check_envelope(&self, env: &Envelope<u32>, body: &[u8]) {
        assert!(!has_bare_line_end(body), "bare CR/LF delivered");
        assert!(body.len() as u64 <= self.cfg.max_message_size);
        assert!(!env.recipients.is_empty());
        assert!(env.recipients.len() <= self.cfg.max_recipients);
        if self.cfg.strict_line_endings {
            assert_eq!(env.bare_line_ends, 0);
        }
        if !body.is_empty() && !env.chunking {
            assert!(body.ends_with(b"\r\n"));
        }
    }
}
