//! What the IMAP targets share: the response syntax check, the framer and
//! `lift` checks, an in-memory model of the store that answers the
//! session's questions (no database), and a session driver that checks
//! the `Session` contract.

use std::sync::Arc;

use imap_codec::imap_types::command::CommandBody;
use postroom_imap::extensions::{lift, Extras};
use postroom_imap::framing::{Expect, Frame, Framer};
use postroom_imap::session::{Action, LoginFailure, Session, SessionConfig};
use postroom_imap::storage::{
    Answer, Appended, Change, FlagsStored, FolderEntry, FolderStatus, Message, Opened, Query, UploadStep,
};
use postroom_store::cache::FolderSnapshot;
use postroom_store::folders::{FlagOp, MessageMeta};
use postroom_store::{AccountId, FolderId, ModSeq, StoreError, Uid};

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
                            let had: usize =
                                last["LiteralChunks(".len()..last.len() - 1].parse().unwrap_or(0);
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

/// The account every input logs in to.
pub const ACCOUNT: AccountId = AccountId(1);

/// One folder of the in-memory [`Model`].
struct Folder {
    id: FolderId,
    name: String,
    special_use: Option<String>,
    subscribed: bool,
    uidvalidity: i64,
    uidnext: i64,
    highestmodseq: i64,
    /// Messages above it are \Recent (no session claimed them).
    recent_mark: i64,
    /// By UID, with their text.
    msgs: Vec<(MessageMeta, Arc<[u8]>)>,
    /// Expunged UIDs and the MODSEQ of their expunge (QRESYNC).
    expunged: Vec<(Uid, i64)>,
}

impl Folder {
    fn snapshot(&self) -> Arc<FolderSnapshot> {
        Arc::new(FolderSnapshot {
            folder_id: self.id,
            uidvalidity: self.uidvalidity,
            uidnext: self.uidnext,
            highestmodseq: ModSeq(self.highestmodseq),
            msgs: Arc::new(self.msgs.iter().map(|(m, _)| m.clone()).collect()),
            keywords: Default::default(),
        })
    }

    fn add(&mut self, text: Arc<[u8]>, flags: i64, keywords: &str, date: i64) -> Uid {
        let uid = Uid(u32::try_from(self.uidnext).unwrap_or(u32::MAX));
        self.uidnext += 1;
        self.highestmodseq += 1;
        let meta = MessageMeta {
            uid,
            flags,
            keywords: keywords.to_string(),
            modseq: ModSeq(self.highestmodseq),
            size: text.len() as i64,
            internal_date: date,
        };
        self.msgs.push((meta, text));
        uid
    }

    fn expunge(&mut self, uids: &[Uid]) {
        let before = self.msgs.len();
        self.msgs.retain(|(m, _)| !uids.contains(&m.uid));
        if self.msgs.len() != before {
            self.highestmodseq += 1;
            for &u in uids {
                self.expunged.push((u, self.highestmodseq));
            }
        }
    }

    fn text(&self, uid: Uid) -> Option<Arc<[u8]>> {
        self.msgs
            .iter()
            .find(|(m, _)| m.uid == uid)
            .map(|(_, t)| Arc::clone(t))
    }
}

/// The store as the session sees it, in memory: one account's folders
/// (INBOX with [`MESSAGES`], Archive with the first two, Drafts, Sent
/// subscribed, Trash, Junk), a quota when asked, and the APPEND literal
/// uploaded. It answers every [`Query`] as the real store does, closely
/// enough for the session's part (which is what is fuzzed): no database,
/// nothing on disk, every input starts from the same state.
pub struct Model {
    folders: Vec<Folder>,
    next_id: i64,
    next_uidvalidity: i64,
    quota: Option<i64>,
    /// The APPEND literal arriving in pieces (`Action::Upload`).
    upload: Option<Vec<u8>>,
}

impl Model {
    pub fn new(quota: Option<i64>) -> Self {
        let mut m = Model {
            folders: Vec::new(),
            next_id: 1,
            next_uidvalidity: 1000,
            quota,
            upload: None,
        };
        for (name, special) in [
            ("INBOX", None),
            ("Archive", Some("\\Archive")),
            ("Drafts", Some("\\Drafts")),
            ("Sent", Some("\\Sent")),
            ("Trash", Some("\\Trash")),
            ("Junk", Some("\\Junk")),
        ] {
            m.create(name, special.map(str::to_string));
        }
        for (i, (text, flags, kw)) in MESSAGES.iter().enumerate() {
            let date = 760_000_000 + i as i64 * 86_400 * 400;
            let text: Arc<[u8]> = Arc::from(*text);
            if i < 2 {
                m.folders[1].add(Arc::clone(&text), *flags, kw, date);
            }
            m.folders[0].add(text, *flags, kw, date);
        }
        m.folders[3].subscribed = true;
        m
    }

    fn create(&mut self, name: &str, special_use: Option<String>) -> FolderId {
        let id = FolderId(self.next_id);
        self.next_id += 1;
        self.next_uidvalidity += 1;
        self.folders.push(Folder {
            id,
            name: name.to_string(),
            special_use,
            subscribed: false,
            uidvalidity: self.next_uidvalidity,
            uidnext: 1,
            highestmodseq: 1,
            recent_mark: 0,
            msgs: Vec::new(),
            expunged: Vec::new(),
        });
        id
    }

    fn by_name(&self, name: &str) -> Option<usize> {
        self.folders.iter().position(|f| f.name == name)
    }

    fn by_id(&self, id: FolderId) -> Option<usize> {
        self.folders.iter().position(|f| f.id == id)
    }

    fn usage(&self) -> i64 {
        self.folders
            .iter()
            .flat_map(|f| &f.msgs)
            .map(|(m, _)| m.size)
            .sum()
    }

    /// The UID above which the folder's messages are \Recent to a session
    /// (as `storage::recent_above`).
    fn recent_above(&mut self, i: usize, read_only: bool, rev2: bool) -> i64 {
        let f = &mut self.folders[i];
        if rev2 {
            i64::MAX
        } else if read_only {
            f.recent_mark
        } else {
            let previous = f.recent_mark;
            f.recent_mark = f.recent_mark.max(f.uidnext - 1);
            previous
        }
    }

    /// Carries out an upload step (as `storage::Glue::upload`).
    pub fn upload(&mut self, step: UploadStep) {
        match step {
            UploadStep::Begin => self.upload = Some(Vec::new()),
            UploadStep::Chunk(bytes) => {
                if let Some(u) = &mut self.upload {
                    u.extend_from_slice(&bytes);
                }
            }
            UploadStep::Discard => self.upload = None,
        }
    }

    /// Answers a question as the store would.
    pub fn ask(&mut self, query: Query) -> Result<Answer, StoreError> {
        Ok(match query {
            Query::Quota { account_id, folder } => {
                assert_eq!(account_id, ACCOUNT, "another account's quota");
                Answer::Quota {
                    folder_exists: folder.is_none_or(|n| self.by_name(&n).is_some()),
                    quota: self.quota.map(|q| (self.usage(), q)),
                }
            }
            Query::Folders { .. } => {
                let mut list: Vec<FolderEntry> = self
                    .folders
                    .iter()
                    .map(|f| (f.name.clone(), f.special_use.clone(), f.subscribed))
                    .collect();
                list.sort();
                Answer::Folders(list)
            }
            Query::Status { names, .. } => Answer::Status(
                names
                    .iter()
                    .map(|n| {
                        self.by_name(n).map(|i| {
                            let f = &self.folders[i];
                            FolderStatus {
                                name: f.name.clone(),
                                uidnext: f.uidnext,
                                uidvalidity: f.uidvalidity,
                                highestmodseq: ModSeq(f.highestmodseq),
                                recent_mark: f.recent_mark,
                                msgs: Arc::clone(&f.snapshot().msgs),
                            }
                        })
                    })
                    .collect(),
            ),
            Query::Create { name, .. } => {
                if self.by_name(&name).is_some() {
                    return Ok(Answer::Changed(Change::AlreadyExists));
                }
                let parts: Vec<&str> = name.split('/').collect();
                for i in 1..parts.len() {
                    let parent = parts[..i].join("/");
                    if self.by_name(&parent).is_none() {
                        self.create(&parent, None);
                    }
                }
                Answer::Changed(Change::Done(Some(self.create(&name, None))))
            }
            Query::Delete { name, .. } => {
                let Some(i) = self.by_name(&name) else {
                    return Ok(Answer::Changed(Change::NoSuchFolder));
                };
                if name == "INBOX" {
                    return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
                }
                let inferiors = format!("{name}/");
                if self.folders.iter().any(|f| f.name.starts_with(&inferiors)) {
                    return Ok(Answer::Changed(Change::HasChildren));
                }
                let f = self.folders.remove(i);
                Answer::Changed(Change::Done(Some(f.id)))
            }
            Query::Rename { from, to, .. } => {
                if self.by_name(&to).is_some() {
                    return Ok(Answer::Changed(Change::AlreadyExists));
                }
                let Some(i) = self.by_name(&from) else {
                    return Ok(Answer::Changed(Change::NoSuchFolder));
                };
                if from == "INBOX" {
                    // RFC 9051 6.3.6: INBOX's messages move, INBOX stays.
                    let id = self.create(&to, None);
                    let msgs = std::mem::take(&mut self.folders[i].msgs);
                    let uids: Vec<Uid> = msgs.iter().map(|(m, _)| m.uid).collect();
                    self.folders[i].msgs = msgs.clone();
                    self.folders[i].expunge(&uids);
                    let j = self.folders.len() - 1;
                    for (m, t) in msgs {
                        self.folders[j].add(t, m.flags, &m.keywords, m.internal_date);
                    }
                    return Ok(Answer::Changed(Change::Done(Some(id))));
                }
                let prefix = format!("{from}/");
                let id = self.folders[i].id;
                for f in &mut self.folders {
                    if f.name == from {
                        f.name = to.clone();
                    } else if let Some(rest) = f.name.strip_prefix(&prefix) {
                        f.name = format!("{to}/{rest}");
                    }
                }
                Answer::Changed(Change::Done(Some(id)))
            }
            Query::Subscribe { name, on, .. } => match self.by_name(&name) {
                Some(i) => {
                    self.folders[i].subscribed = on;
                    Answer::Changed(Change::Done(None))
                }
                None if !on => Answer::Changed(Change::Done(None)),
                None => Answer::Changed(Change::NoSuchFolder),
            },
            Query::Select {
                name,
                read_only,
                rev2,
                qresync,
                ..
            } => {
                let Some(i) = self.by_name(&name) else {
                    return Ok(Answer::Selected(None));
                };
                let recent_above = self.recent_above(i, read_only, rev2);
                let f = &self.folders[i];
                let qresync = match qresync {
                    Some((uidvalidity, since)) if uidvalidity == f.uidvalidity => Some((
                        since,
                        f.expunged
                            .iter()
                            .filter(|(_, m)| *m > since.0)
                            .map(|(u, _)| *u)
                            .collect(),
                    )),
                    _ => None,
                };
                Answer::Selected(Some(Opened {
                    name: f.name.clone(),
                    snap: f.snapshot(),
                    recent_above,
                    qresync,
                }))
            }
            Query::Append {
                name,
                flags,
                keywords,
                date,
                message,
                ..
            } => {
                let text: Vec<u8> = match message {
                    Message::Bytes(b) => b,
                    // The glue's file: here, the pieces kept.
                    Message::Streamed(len) => match self.upload.take() {
                        Some(b) => {
                            assert_eq!(b.len() as u64, len, "the session counted another length");
                            b
                        }
                        None => return Err(StoreError::Unavailable),
                    },
                    Message::Upload(_) => unreachable!("the model makes no uploads"),
                };
                let Some(i) = self.by_name(&name) else {
                    return Ok(Answer::Appended(Appended::NoSuchFolder));
                };
                if let Some(q) = self.quota {
                    if self.usage().saturating_add(text.len() as i64) > q {
                        return Ok(Answer::Appended(Appended::OverQuota));
                    }
                }
                let f = &mut self.folders[i];
                let uid = f.add(Arc::from(text), flags, &keywords, date.unwrap_or(1_700_000_000));
                Answer::Appended(Appended::Stored {
                    folder_id: f.id,
                    uidvalidity: f.uidvalidity,
                    uid,
                })
            }
            Query::Refresh {
                folder_id,
                uidnext,
                read_only,
                rev2,
            } => {
                let Some(i) = self.by_id(folder_id) else {
                    return Ok(Answer::Refreshed(None));
                };
                let snap = self.folders[i].snapshot();
                let mark = if snap.uidnext > uidnext {
                    self.recent_above(i, read_only, rev2)
                } else {
                    i64::MAX
                };
                Answer::Refreshed(Some((snap, mark)))
            }
            Query::FindFolder { name, .. } => Answer::Folder(self.by_name(&name).map(|i| self.folders[i].id)),
            Query::Headers { folder_id, uids } => {
                let f = self.by_id(folder_id).map(|i| &self.folders[i]);
                Answer::Blocks(
                    uids.iter()
                        .map(|&u| {
                            let t = f?.text(u)?;
                            Some(Arc::from(postroom_imap::mime::header_block(&t)))
                        })
                        .collect(),
                )
            }
            Query::Messages { folder_id, uids } => {
                let f = self.by_id(folder_id).map(|i| &self.folders[i]);
                Answer::Blocks(uids.iter().map(|&u| f?.text(u)).collect())
            }
            Query::StoreFlags {
                folder_id,
                uids,
                op,
                flags,
                keywords,
                unchanged_since,
            } => {
                let Some(i) = self.by_id(folder_id) else {
                    return Ok(Answer::FlagsStored(FlagsStored {
                        changed: Vec::new(),
                        refused: Vec::new(),
                        snapshots: None,
                    }));
                };
                let f = &mut self.folders[i];
                let modseq = f.highestmodseq + 1;
                let (mut changed, mut refused) = (Vec::new(), Vec::new());
                for (m, _) in f.msgs.iter_mut().filter(|(m, _)| uids.contains(&m.uid)) {
                    if unchanged_since.is_some_and(|u| m.modseq > u) {
                        refused.push(m.uid);
                        continue;
                    }
                    let mut kw: Vec<String> = m
                        .keywords
                        .split(' ')
                        .filter(|k| !k.is_empty())
                        .map(str::to_string)
                        .collect();
                    let new_flags = match op {
                        FlagOp::Replace => {
                            kw = keywords.clone();
                            flags
                        }
                        FlagOp::Add => {
                            kw.extend(keywords.iter().cloned());
                            m.flags | flags
                        }
                        FlagOp::Remove => {
                            kw.retain(|k| !keywords.contains(k));
                            m.flags & !flags
                        }
                    };
                    kw.sort();
                    kw.dedup();
                    let new_kw = kw.join(" ");
                    if new_flags != m.flags || new_kw != m.keywords {
                        m.flags = new_flags;
                        m.keywords = new_kw;
                        m.modseq = ModSeq(modseq);
                        changed.push(m.clone());
                    }
                }
                if !changed.is_empty() {
                    f.highestmodseq = modseq;
                }
                Answer::FlagsStored(FlagsStored {
                    changed,
                    refused,
                    snapshots: None,
                })
            }
            Query::Copy { from, uids, to } => {
                let (Some(a), Some(b)) = (self.by_id(from), self.by_id(to)) else {
                    return Err(StoreError::Invalid("no such folder".into()));
                };
                let msgs: Vec<(MessageMeta, Arc<[u8]>)> = self.folders[a]
                    .msgs
                    .iter()
                    .filter(|(m, _)| uids.contains(&m.uid))
                    .cloned()
                    .collect();
                let dst = &mut self.folders[b];
                let pairs = msgs
                    .into_iter()
                    .map(|(m, t)| (m.uid, dst.add(t, m.flags, &m.keywords, m.internal_date)))
                    .collect();
                Answer::Copied {
                    uidvalidity: dst.uidvalidity,
                    pairs,
                }
            }
            Query::Expunge { folder_id, uids } => {
                if let Some(i) = self.by_id(folder_id) {
                    self.folders[i].expunge(&uids);
                }
                Answer::Expunged
            }
        })
    }

    /// Another session or a delivery changes INBOX: `n` picks what.
    pub fn other(&mut self, n: usize) {
        let Some(i) = self.by_name("INBOX") else {
            return;
        };
        let f = &mut self.folders[i];
        let uids: Vec<Uid> = f.msgs.iter().map(|(m, _)| m.uid).collect();
        match n % 3 {
            0 => {
                let (text, flags, kw) = MESSAGES[n % MESSAGES.len()];
                f.add(Arc::from(text), flags, kw, 1_700_000_000);
            }
            1 if !uids.is_empty() => {
                f.highestmodseq += 1;
                let modseq = f.highestmodseq;
                let add = n.is_multiple_of(2);
                let m = &mut f.msgs[n % uids.len()].0;
                m.flags = if add { m.flags | 1 | 4 } else { m.flags & !(1 | 4) };
                m.keywords = if add { "$Other".into() } else { String::new() };
                m.modseq = ModSeq(modseq);
            }
            2 if !uids.is_empty() => f.expunge(&[uids[n % uids.len()]]),
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
/// a login, TLS handshake or store question is open; nothing after
/// `Close`. The store's part is played by a [`Model`]; questions whose bit
/// in `faults` is set (the n-th question, bit `n % 64`) fail instead, as
/// a store that is unavailable does.
pub struct Driver {
    pub session: Session,
    pub model: Model,
    pub faults: u64,
    pub queries: u32,
    pub closed: bool,
    pub sent: usize,
}

impl Driver {
    pub fn new(cfg: SessionConfig, model: Model, faults: u64) -> Self {
        let session = Session::new(cfg, false);
        check_responses(&session.greeting());
        Driver {
            session,
            model,
            faults,
            queries: 0,
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
                        Ok((ACCOUNT, USER.to_string()))
                    } else {
                        Err(LoginFailure::Failed)
                    });
                }
                Action::StartTls => {
                    assert!(self.session.poll().is_none(), "poll went on before TLS");
                    self.session.tls_established();
                }
                Action::Idle => self.session.idle_check(),
                Action::Upload(step) => self.model.upload(step),
                Action::Query(q) => {
                    assert!(
                        self.session.poll().is_none(),
                        "poll went on before the store's answer"
                    );
                    let n = self.queries;
                    self.queries = self.queries.wrapping_add(1);
                    let answer = if self.faults >> (n % 64) & 1 == 1 {
                        Err(StoreError::Unavailable)
                    } else {
                        self.model.ask(q)
                    };
                    self.session.answered(answer);
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
/// The split byte also picks which store questions fail (none for most:
/// only when its top bit is set, so most inputs exercise the answers).
pub fn run_session(flags: u8, split: u8, stream: &[u8]) {
    let model = Model::new((flags & 0x10 != 0).then_some(4000));
    let faults = if split & 0x80 != 0 {
        // A fixed pattern per split value: the same input fails the same
        // questions every time.
        0x9e37_79b9_7f4a_7c15u64.rotate_left(u32::from(split & 0x3f))
    } else {
        0
    };
    let mut d = Driver::new(session_config(flags), model, faults);
    let prelude = prelude(flags);
    if !prelude.is_empty() {
        d.send(&prelude);
    }
    for (i, piece) in pieces(stream, split).into_iter().enumerate() {
        d.send(piece);
        if flags & 0x80 != 0 && !d.closed {
            d.model.other(i);
            d.session.idle_check();
            d.pump();
        }
    }
    if d.closed {
        // Once closed, more input does nothing.
        d.send(b"Z NOOP\r\n");
    }
}
