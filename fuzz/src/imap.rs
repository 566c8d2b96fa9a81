//! What the IMAP targets share: the response syntax check, the framer and
//! `lift` checks, a store made once per process, and a session driver that
//! checks the `Session` contract.

use std::path::PathBuf;
use std::sync::OnceLock;

use imap_codec::imap_types::command::CommandBody;
use postroom_imap::extensions::{lift, Extras};
use postroom_imap::framing::{Expect, Frame, Framer};
use postroom_imap::session::{Action, LoginFailure, Session, SessionConfig};
use postroom_store::folders::FlagOp;
use postroom_store::mailbox::FolderRow;
use postroom_store::Store;

/// Runs a store call to completion (the embedded back end answers at once).
fn wait<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

use crate::pieces;

/// A tag (RFC 9051 9: `1*<any ASTRING-CHAR except "+">`).
pub fn is_tag(tag: &[u8]) -> bool {
    !tag.is_empty()
        && tag
            .iter()
            .all(|&b| (0x21..0x7f).contains(&b) && !b"(){%*\"\\+".contains(&b))
}

/// Panics unless `chunk` is whole IMAP response lines: each starts with
/// `* `, `+ ` or a tag and OK, NO or BAD; CR and LF only as the CRLF ending
/// a line or inside a literal; a line ending in `{n}` or `~{n}` is followed
/// by exactly n octets and goes on; NUL only inside a `~{n}` literal8.
/// Returns the tags of the tagged lines.
pub fn check_responses(chunk: &[u8]) -> Vec<String> {
    let show = || String::from_utf8_lossy(chunk).into_owned();
    assert!(!chunk.is_empty(), "empty send");
    let mut tags = Vec::new();
    let mut i = 0;
    while i < chunk.len() {
        let rest = &chunk[i..];
        if rest.starts_with(b"* ") || rest.starts_with(b"+ ") {
            assert!(
                !rest.starts_with(b"* \r\n"),
                "empty untagged response in {:?}",
                show()
            );
        } else {
            let sp = rest
                .iter()
                .position(|&b| b == b' ')
                .unwrap_or_else(|| panic!("line without tag or `*` in {:?}", show()));
            let tag = &rest[..sp];
            assert!(
                is_tag(tag),
                "bad tag {:?} in {:?}",
                String::from_utf8_lossy(tag),
                show()
            );
            let after = &rest[sp + 1..];
            assert!(
                ["OK", "NO", "BAD"].iter().any(|s| after.starts_with(s.as_bytes())
                    && matches!(after.get(s.len()), Some(b' ') | Some(b'\r'))),
                "tagged response without status in {:?}",
                show()
            );
            tags.push(String::from_utf8_lossy(tag).into_owned());
        }
        let mut seg = i;
        loop {
            let off = chunk[seg..]
                .iter()
                .position(|&b| b == b'\r' || b == b'\n' || b == 0)
                .unwrap_or_else(|| panic!("response line without CRLF in {:?}", show()));
            let pos = seg + off;
            assert!(chunk[pos] != 0, "NUL outside a literal8 in {:?}", show());
            assert!(
                chunk[pos] == b'\r' && chunk.get(pos + 1) == Some(&b'\n'),
                "bare CR or LF at {pos} in {:?}",
                show()
            );
            match literal_announcement(&chunk[i..pos]) {
                Some((n, literal8)) => {
                    let start = pos + 2;
                    let end = start
                        .checked_add(n)
                        .filter(|&e| e <= chunk.len())
                        .unwrap_or_else(|| panic!("literal of {n} octets runs past the end in {:?}", show()));
                    assert!(
                        literal8 || !chunk[start..end].contains(&0),
                        "NUL in a literal in {:?}",
                        show()
                    );
                    seg = end;
                }
                None => {
                    i = pos + 2;
                    break;
                }
            }
        }
    }
    tags
}

/// `{n}` or `~{n}` at the end of `text`: (n, literal8).
fn literal_announcement(text: &[u8]) -> Option<(usize, bool)> {
    let inner = text.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, open > 0 && inner[open - 1] == b'~'))
}

// ---------------------------------------------------------------------------
// Framer and lift

/// Literal limits the framing target picks from (3 bits).
pub const LIMITS: [u32; 8] = [0, 1, 16, 100, 1000, 65_536, u32::MAX - 1, u32::MAX];

/// What the session expects after a frame: AUTHENTICATE without an
/// initial response wants a SASL line, IDLE wants DONE, anything else a
/// command.
pub fn next_expect(frame: &Frame) -> Expect {
    match frame {
        Frame::Command(cmd, _) => match &cmd.body {
            CommandBody::Authenticate {
                initial_response: None,
                ..
            } => Expect::AuthData,
            CommandBody::Idle => Expect::IdleDone,
            _ => Expect::Command,
        },
        Frame::Reply(_) | Frame::AuthData(_) | Frame::IdleDone => Expect::Command,
        Frame::LiteralStart(_) | Frame::LiteralChunk(_) => Expect::Command,
    }
}

/// Feeds the pieces to a framer (switching what it expects as the session
/// would when `follow`), checks every frame, and describes them.
pub fn frame_all<'a>(
    limit: u32,
    first: Expect,
    follow: bool,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<String> {
    let mut f = Framer::new(limit);
    f.expect(first);
    let mut frames: Vec<String> = Vec::new();
    for piece in pieces {
        f.push(piece);
        while let Some(frame) = f.next_frame() {
            match &frame {
                Frame::Reply(r) => {
                    let tags = check_responses(r);
                    assert!(tags.len() <= 1, "a reply with several completions: {r:?}");
                }
                Frame::Command(cmd, _) => {
                    assert!(is_tag(cmd.tag.as_ref().as_bytes()), "bad tag {:?}", cmd.tag);
                }
                Frame::AuthData(_) | Frame::IdleDone | Frame::LiteralStart(_) => {}
                Frame::LiteralChunk(c) => {
                    // How a streamed literal is cut depends on the reads:
                    // counted together, it does not.
                    let n = c.len();
                    match frames.last_mut() {
                        Some(last) if last.starts_with("LiteralChunks(") => {
                            let had: usize = last["LiteralChunks(".len()..last.len() - 1].parse().unwrap_or(0);
                            *last = format!("LiteralChunks({})", had + n);
                        }
                        _ => frames.push(format!("LiteralChunks({n})")),
                    }
                    continue;
                }
            }
            if follow && !matches!(frame, Frame::Reply(_) | Frame::LiteralStart(_)) {
                f.expect(next_expect(&frame));
            }
            frames.push(match &frame {
                Frame::Reply(r) => format!("Reply({:?})", String::from_utf8_lossy(r)),
                other => format!("{other:?}"),
            });
        }
    }
    frames
}

/// `lift` only shortens, keeps the tag, and deletes bytes within lines only
/// (every CR and LF stays, so literals and later lines are intact).
pub fn check_lift(message: &[u8]) {
    let (out, extras) = lift(message);
    if extras == Extras::default() {
        assert!(out.len() <= message.len());
    } else {
        assert!(
            out.len() < message.len(),
            "lift took {extras:?} but did not shorten {message:?}"
        );
    }
    let sp = message.iter().position(|&b| b == b' ').unwrap_or(message.len());
    assert!(
        out.starts_with(&message[..sp]),
        "tag changed: {message:?} -> {out:?}"
    );
    let split = |m: &[u8]| -> Vec<Vec<u8>> {
        m.split_inclusive(|&b| b == b'\r' || b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    };
    let (before, after) = (split(message), split(&out));
    assert_eq!(
        before.len(),
        after.len(),
        "line ends changed: {message:?} -> {out:?}"
    );
    for (b, a) in before.iter().zip(&after) {
        if matches!(b.last(), Some(b'\r' | b'\n')) {
            assert_eq!(b.last(), a.last(), "line ends changed: {message:?} -> {out:?}");
        }
        let mut rest = b.iter();
        assert!(
            a.iter().all(|x| rest.any(|y| y == x)),
            "not a deletion: {b:?} -> {a:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// The store

/// The messages every session's account starts with (as in
/// `crates/imap/tests/properties.rs`): plain, nested multipart with
/// encodings and RFC 2231, message/rfc822, NUL and bare line ends with an
/// unknown transfer encoding, a header alone, almost nothing, a digest
/// without its close delimiter, odd dates and addresses.
pub const MESSAGES: &[(&[u8], i64, &str)] = &[
    (
        b"From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>, \"Carol, C.\" <carol@example.com>\r\n\
Cc: undisclosed-recipients:;\r\nSubject: Hello there\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\
Message-ID: <1@example.com>\r\n\r\nHello Bob.\r\n.\r\n..dots\r\n",
        1,
        "",
    ),
    (
        b"From: =?UTF-8?B?w4lsb2TDrWU=?= <e@example.com>\r\nSubject: =?ISO-8859-1?Q?caf=E9?= report\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\npreamble\r\n--outer\r\n\
Content-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=E9 =\r\nsoft=3D\r\n--inner\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--inner--\r\n--outer\r\n\
Content-Type: application/octet-stream; name*0=\"a\"; name*1=\"b.bin\"\r\n\
Content-Disposition: attachment; filename*=utf-8''%C3%A9.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n\
AAECAwQFBgcICQ==\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\nFrom: inner@example.com\r\n\
Subject: inner\r\nContent-Type: text/plain\r\n\r\ninner body\r\n--outer--\r\nepilogue\r\n",
        0,
        "$Forwarded",
    ),
    (
        b"Subject: nul\x00here \xff\xfe\nFrom: \"Quote \\\" \\\\ Name\" <q@example.com> (comment)\n\
To: group: a@b.example, c@d.example;\nContent-Type: text/plain; charset=\"x-unknown\"\n\
Content-Transfer-Encoding: x-uuencode\n\nbody with \x00 NUL\rbare CR\n.\n",
        8 | 4,
        "$Junk NonJunk",
    ),
    (b"Subject: only a header\r\n", 16, ""),
    (b"\r\n", 0, ""),
    (
        b"Subject: folded\r\n  over\r\n\tlines\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n\
Subject: in digest\r\n\r\ntext\r\n--d\r\nContent-Type: text/plain\r\n\r\nx\r\n",
        2,
        "",
    ),
    (
        b"Date: 29 Feb 2023 25:61:61 +9999\r\nFrom: <>\r\nTo: @route:a@b, \"\"@x, a@[1.2.3.4]\r\n\
Reply-To: ,,,\r\nIn-Reply-To: <x>\r\nSubject: \r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: base64\r\n\r\n5pel5pys6Kqe\r\n====\r\n",
        1 | 8,
        "",
    ),
];

/// The login every session can use.
pub const USER: &str = "fuzz@example.com";
pub const PASSWORD: &str = "secret";

/// A store made once per process in `/dev/shm` (or the temporary folder),
/// removed at exit; a template account holds [`MESSAGES`].
pub struct Fixture {
    pub store: Store,
    domain_id: postroom_store::DomainId,
    template: FolderRow,
    template_uids: Vec<postroom_store::Uid>,
}

static DIR: OnceLock<PathBuf> = OnceLock::new();
static FIXTURE: OnceLock<Fixture> = OnceLock::new();

extern "C" fn remove_store() {
    if let Some(dir) = DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

pub fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("postroom-fuzz-imap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let dir = DIR.get_or_init(|| dir);
        // SAFETY: registers a plain function; libFuzzer exits through exit().
        unsafe {
            libc::atexit(remove_store);
        }
        let store = Store::open(dir).expect("store");
        let domain = store.sqlite().unwrap().add_domain("example.com", "example.com", None).unwrap();
        let tpl = store
            .sqlite().unwrap().add_account(domain.id, "template", "template", None, None)
            .unwrap();
        let template = store.sqlite().unwrap().find_folder(tpl.id, "INBOX").unwrap().unwrap();
        let template_uids = MESSAGES
            .iter()
            .enumerate()
            .map(|(i, (m, flags, kw))| {
                let date = 760_000_000 + i as i64 * 86_400 * 400;
                wait(store.append(&template, m, *flags, kw, Some(date))).unwrap()
            })
            .collect();
        Fixture {
            store,
            domain_id: domain.id,
            template,
            template_uids,
        }
    })
}

impl Fixture {
    /// A fresh account `fuzz@example.com`: the messages in INBOX, two in
    /// Archive, Sent subscribed, a quota when asked.
    pub fn account(&self, quota: Option<i64>) -> postroom_store::AccountId {
        let a = self
            .store
            .sqlite().unwrap().add_account(self.domain_id, "fuzz", "fuzz", None, quota)
            .unwrap();
        let inbox = self.store.sqlite().unwrap().find_folder(a.id, "INBOX").unwrap().unwrap();
        let archive = self.store.sqlite().unwrap().find_folder(a.id, "Archive").unwrap().unwrap();
        self.store
            .sqlite().unwrap().copy_messages(self.template.id, &self.template_uids, inbox.id)
            .unwrap();
        self.store
            .sqlite().unwrap().copy_messages(self.template.id, &self.template_uids[..2], archive.id)
            .unwrap();
        self.store.sqlite().unwrap().set_subscribed(a.id, "Sent", true).unwrap();
        a.id
    }

    /// Removes the account, its folders and messages (bodies no longer
    /// referenced go too), so every input starts from the same state.
    pub fn remove(&self, account: postroom_store::AccountId) {
        for f in self.store.sqlite().unwrap().folders(account).unwrap() {
            let uids: Vec<postroom_store::Uid> = self
                .store
                .sqlite().unwrap().message_meta(f.id)
                .unwrap()
                .into_iter()
                .map(|m| m.uid)
                .collect();
            wait(self.store.expunge(f.id, &uids)).unwrap();
        }
        self.store
            .sqlite().unwrap().write(|tx| {
                tx.execute(
                    "DELETE FROM expunged WHERE folder_id IN (SELECT id FROM folders WHERE account_id = ?1)",
                    [account],
                )?;
                tx.execute("DELETE FROM folders WHERE account_id = ?1", [account])?;
                tx.execute("DELETE FROM accounts WHERE id = ?1", [account])?;
                Ok(())
            })
            .unwrap();
    }

    /// Another session or a delivery changes INBOX: `n` picks what.
    pub fn other(&self, account: postroom_store::AccountId, n: usize) {
        let Some(inbox) = self.store.sqlite().unwrap().find_folder(account, "INBOX").unwrap() else {
            return;
        };
        let uids: Vec<postroom_store::Uid> = self
            .store
            .sqlite().unwrap().message_meta(inbox.id)
            .unwrap()
            .into_iter()
            .map(|m| m.uid)
            .collect();
        match n % 3 {
            0 => {
                let uid = self.template_uids[n % self.template_uids.len()];
                self.store
                    .sqlite().unwrap().copy_messages(self.template.id, &[uid], inbox.id)
                    .unwrap();
            }
            1 if !uids.is_empty() => {
                let op = if n.is_multiple_of(2) {
                    FlagOp::Add
                } else {
                    FlagOp::Remove
                };
                self.store
                    .sqlite().unwrap().store_flags(
                        inbox.id,
                        &[uids[n % uids.len()]],
                        op,
                        1 | 4,
                        &["$Other".into()],
                        None,
                    )
                    .unwrap();
            }
            2 if !uids.is_empty() => {
                wait(self.store.expunge(inbox.id, &[uids[n % uids.len()]])).unwrap();
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// The session

/// A session configuration and prelude from a flags byte: bit 0 log in
/// first, 1 then SELECT INBOX, 2 login not allowed (LOGINDISABLED), 3
/// STARTTLS offered, 4 a 64-octet APPEND limit, 5 five errors at most, 6
/// ENABLE QRESYNC IMAP4rev2 after login, 7 other sessions change INBOX
/// between reads.
pub fn session_config(flags: u8) -> SessionConfig {
    SessionConfig {
        hostname: "imap.example".into(),
        starttls: flags & 0x08 != 0,
        login_allowed: flags & 0x04 == 0,
        max_append: if flags & 0x10 != 0 { 64 } else { 1 << 20 },
        max_errors: if flags & 0x20 != 0 { 5 } else { 50 },
    }
}

pub fn prelude(flags: u8) -> Vec<u8> {
    let mut v = Vec::new();
    if flags & 0x01 != 0 {
        v.extend_from_slice(format!("P1 LOGIN {USER} {PASSWORD}\r\n").as_bytes());
        if flags & 0x40 != 0 {
            v.extend_from_slice(b"P2 ENABLE QRESYNC IMAP4rev2\r\n");
        }
        if flags & 0x02 != 0 {
            v.extend_from_slice(b"P3 SELECT INBOX\r\n");
        }
    }
    v
}

/// Drives a session like the tokio glue does and checks its contract:
/// every send is whole, well-formed response lines; `poll` is quiet while
/// a login or TLS handshake is open; nothing after `Close`.
pub struct Driver {
    pub session: Session,
    glue: postroom_imap::storage::Glue,
    pub account: postroom_store::AccountId,
    pub closed: bool,
    pub sent: usize,
}

impl Driver {
    pub fn new(cfg: SessionConfig, account: postroom_store::AccountId) -> Self {
        let session = Session::new(cfg, false);
        check_responses(&session.greeting());
        Driver {
            session,
            glue: postroom_imap::storage::Glue::new(fixture().store.clone()),
            account,
            closed: false,
            sent: 0,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.session.receive(bytes);
        self.pump();
    }

    pub fn pump(&mut self) {
        while let Some(action) = self.session.poll() {
            assert!(!self.closed, "action after Close: {action:?}");
            match action {
                Action::Send(bytes) => {
                    check_responses(&bytes);
                    self.sent += bytes.len();
                }
                Action::Authenticate { user, password } => {
                    assert!(
                        self.session.poll().is_none(),
                        "poll went on before the login result"
                    );
                    let ok = user.eq_ignore_ascii_case(USER) && password.expose() == PASSWORD;
                    self.session.login_result(if ok {
                        Ok((self.account, USER.to_string()))
                    } else {
                        Err(LoginFailure::Failed)
                    });
                }
                Action::StartTls => {
                    assert!(self.session.poll().is_none(), "poll went on before TLS");
                    self.session.tls_established();
                }
                Action::Idle => self.session.idle_check(),
                Action::Upload(step) => self.glue.upload(step),
                Action::Query(q) => {
                    assert!(
                        self.session.poll().is_none(),
                        "poll went on before the store's answer"
                    );
                    self.session.answered(wait(self.glue.ask(q)));
                }
                Action::Close => {
                    self.closed = true;
                    assert!(self.session.is_closed());
                }
            }
        }
    }
}

/// One whole input of the session target: flags byte, split byte, stream.
pub fn run_session(flags: u8, split: u8, stream: &[u8]) {
    let fx = fixture();
    let account = fx.account((flags & 0x10 != 0).then_some(4000));
    let mut d = Driver::new(session_config(flags), account);
    let prelude = prelude(flags);
    if !prelude.is_empty() {
        d.send(&prelude);
    }
    for (i, piece) in pieces(stream, split).into_iter().enumerate() {
        d.send(piece);
        if flags & 0x80 != 0 && !d.closed {
            fx.other(account, i);
            d.session.idle_check();
            d.pump();
        }
    }
    if d.closed {
        // Once closed, more input does nothing.
        d.send(b"Z NOOP\r\n");
    }
    drop(d);
    fx.remove(account);
}
