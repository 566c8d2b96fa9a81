//! Property tests for the IMAP server's input side: no input makes the
//! framer, the extension lifter or the session panic, and everything the
//! session sends is well-formed IMAP response syntax.
//!
//! - `Framer`: arbitrary and IMAP-shaped bytes (tags, literals `{n}`,
//!   `{n+}`, `~{n}`, huge sizes, CR/LF soup, NUL) cut into random pieces;
//!   replies are whole, well-formed lines; the frames are the same however
//!   the input is cut; the octets of an accepted or refused LITERAL+ are
//!   never taken for commands.
//! - `extensions::lift`: when it takes something out, the message gets
//!   shorter; it keeps the tag and only deletes bytes within lines, so
//!   every CR and LF, the literals and the later lines stay.
//! - `Session` over a real store (a temporary folder, in /dev/shm when
//!   there is one; every case gets a fresh account with sample messages):
//!   random sequences of valid and invalid commands (logins, SELECT, FETCH
//!   with every kind of item and sequence set, nested SEARCH, STORE,
//!   COPY/MOVE, EXPUNGE, APPEND with every kind of literal, IDLE/DONE, LIST
//!   with wildcards and RETURN options, STATUS, CREATE/RENAME/DELETE of odd
//!   names, ENABLE), with deliveries, flag changes, expunges and folder
//!   deletions by "other sessions" in between, fed in random pieces; every
//!   response line starts with `* `, `+ ` or a tag, ends with CRLF, and
//!   literals carry exactly their announced octets; `poll` is quiet while a
//!   login or TLS handshake is open; nothing follows `Close`; with valid
//!   commands every tag is answered exactly once; and the answers do not
//!   depend on how the input is cut.
//!
//! Bugs these found are at the end: fixed ones as regression tests, open
//! ones `#[ignore]`d with a minimal reproducer.
//!
//! The runs are reproducible (fixed seed, see [`config`]);
//! `PROPTEST_CASES=N` and `PROPTEST_RNG_SEED=S` override case count and seed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use imap_codec::imap_types::command::CommandBody;
use postroom_imap::extensions::{lift, Extras};
use postroom_imap::framing::{Expect, Frame, Framer};
use postroom_imap::session::{Action, LoginFailure, Session, SessionConfig};
use postroom_store::folders::FlagOp;
use postroom_store::mailbox::FolderRow;
use postroom_store::Store;

/// Runs a store call to completion: the session's glue is not under test
/// here, and the embedded back end answers without waiting.
fn wait<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{RngAlgorithm, RngSeed, TestRunner};

const SEED: u64 = 0x0049_4d41_5034_7276; // "IMAP4rv"

/// A deterministic configuration: ChaCha with a fixed seed, no failure
/// files written into the source tree.
fn config(cases: u32) -> ProptestConfig {
    // `default()` reads the PROPTEST_* variables; only what they set
    // explicitly overrides the fixed values below.
    let env = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            env.cases
        } else {
            cases
        },
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: match env.rng_seed {
            RngSeed::Random => RngSeed::Fixed(SEED),
            fixed => fixed,
        },
        failure_persistence: None,
        max_shrink_iters: 1024,
        ..env
    }
}

// ---------------------------------------------------------------------------
// Bytes and pieces

/// Bytes that matter to IMAP parsers: line ends, literal syntax, list and
/// string delimiters, wildcards, digits, NUL, 8-bit.
const SPECIAL: &[u8] = b"\r\n{}+~()[]<>\"\\*% .:,0123456789\x00\x7f\x80\xc3\xa9\xff";

/// Maps a uniform `u16` to a byte weighted towards what matters to IMAP
/// parsers: a third special, a third letters, a third any byte.
fn bias(v: u16) -> u8 {
    let b = v as u8;
    match (v >> 8) % 3 {
        0 => SPECIAL[b as usize % SPECIAL.len()],
        1 => b'A' + b % 26,
        _ => b,
    }
}

fn soup(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u16>().prop_map(bias), 0..max)
}

fn crlf_soup(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(&b"\r\n\r\n{}0+ a\x00"[..]), 0..max)
}

/// Cuts `input` into pieces at the given points (duplicates give empty
/// pieces, which must be harmless too).
fn pieces<'a>(input: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::with_capacity(at.len() + 1);
    let mut start = 0;
    for cut in at {
        out.push(&input[start..cut]);
        start = cut;
    }
    out.push(&input[start..]);
    out
}

fn cuts() -> impl Strategy<Value = Vec<Index>> {
    prop::collection::vec(any::<Index>(), 0..24)
}

// ---------------------------------------------------------------------------
// Response syntax

/// A tag (RFC 9051 9: `1*<any ASTRING-CHAR except "+">`).
fn is_tag(tag: &[u8]) -> bool {
    !tag.is_empty()
        && tag
            .iter()
            .all(|&b| (0x21..0x7f).contains(&b) && !b"(){%*\"\\+".contains(&b))
}

/// One response line's completion, when tagged: (tag, status).
type Completion = (String, String);

/// Checks that `chunk` is whole IMAP response lines: each starts with `* `,
/// `+ ` or a tag followed by OK, NO or BAD; CR and LF appear only as the
/// CRLF that ends a line or inside a literal; a line ending in `{n}` or
/// `~{n}` is followed by exactly n octets and goes on after them; NUL only
/// inside a `~{n}` literal8. Returns the tagged completions.
fn check_responses(chunk: &[u8]) -> Result<Vec<Completion>, String> {
    let show = || String::from_utf8_lossy(chunk).into_owned();
    let mut done = Vec::new();
    let mut i = 0;
    if chunk.is_empty() {
        return Err("empty send".into());
    }
    while i < chunk.len() {
        let rest = &chunk[i..];
        let tagged = if rest.starts_with(b"* ") || rest.starts_with(b"+ ") {
            if rest.starts_with(b"* \r\n") {
                return Err(format!("empty untagged response in {:?}", show()));
            }
            None
        } else {
            let sp = rest
                .iter()
                .position(|&b| b == b' ')
                .ok_or_else(|| format!("line without tag or `*` in {:?}", show()))?;
            let tag = &rest[..sp];
            if !is_tag(tag) {
                return Err(format!(
                    "bad tag {:?} in {:?}",
                    String::from_utf8_lossy(tag),
                    show()
                ));
            }
            let after = &rest[sp + 1..];
            let status = ["OK", "NO", "BAD"]
                .into_iter()
                .find(|s| {
                    after.starts_with(s.as_bytes()) && matches!(after.get(s.len()), Some(b' ') | Some(b'\r'))
                })
                .ok_or_else(|| format!("tagged response without status in {:?}", show()))?;
            Some((String::from_utf8_lossy(tag).into_owned(), status.to_string()))
        };
        // Scan the line, literals included.
        let mut seg = i;
        loop {
            let Some(off) = chunk[seg..]
                .iter()
                .position(|&b| b == b'\r' || b == b'\n' || b == 0)
            else {
                return Err(format!("response line without CRLF in {:?}", show()));
            };
            let pos = seg + off;
            match chunk[pos] {
                0 => return Err(format!("NUL outside a literal8 in {:?}", show())),
                b'\r' if chunk.get(pos + 1) == Some(&b'\n') => {}
                _ => return Err(format!("bare CR or LF at {pos} in {:?}", show())),
            }
            let text = &chunk[i..pos];
            match literal_announcement(text) {
                Some((n, literal8)) => {
                    let start = pos + 2;
                    let end = start
                        .checked_add(n)
                        .filter(|&e| e <= chunk.len())
                        .ok_or_else(|| format!("literal of {n} octets runs past the end in {:?}", show()))?;
                    if !literal8 && chunk[start..end].contains(&0) {
                        return Err(format!("NUL in a literal in {:?}", show()));
                    }
                    seg = end;
                }
                None => {
                    i = pos + 2;
                    break;
                }
            }
        }
        if let Some(t) = tagged {
            done.push(t);
        }
    }
    Ok(done)
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
// IMAP-shaped input

/// Pieces of command lines that steer the parsers into their deeper parts.
const TOKENS: &[&str] = &[
    "a1",
    "A2",
    "*",
    "+",
    "tag",
    " ",
    "  ",
    "\r\n",
    "\n",
    "\r",
    "\0",
    "{0}\r\n",
    "{1}\r\n",
    "{3}\r\n",
    "{5+}\r\n",
    "{0+}\r\n",
    "~{3}\r\n",
    "{4294967295}\r\n",
    "{4294967296}\r\n",
    "{99999999999}\r\n",
    "{4294967295+}\r\n",
    "{12",
    "}",
    "{",
    "{}",
    "{+}",
    "(",
    ")",
    "((",
    "))",
    "[",
    "]",
    "<",
    ">",
    "\"",
    "\\",
    "\"\"",
    "NIL",
    "INBOX",
    "inbox",
    "LOGIN",
    "AUTHENTICATE",
    "PLAIN",
    "SELECT",
    "EXAMINE",
    "FETCH",
    "STORE",
    "COPY",
    "MOVE",
    "UID",
    "SEARCH",
    "RETURN",
    "LIST",
    "LSUB",
    "STATUS",
    "APPEND",
    "IDLE",
    "DONE",
    "ENABLE",
    "NOOP",
    "LOGOUT",
    "EXPUNGE",
    "CLOSE",
    "BODY[",
    "BODY.PEEK[",
    "BINARY[",
    "HEADER.FIELDS",
    "1:*",
    "*:1",
    "0",
    "4294967295",
    "4294967296",
    "FLAGS",
    "+FLAGS.SILENT",
    "\\Seen",
    "(CHANGEDSINCE 1)",
    "(UNCHANGEDSINCE 0)",
    "(QRESYNC (1 1))",
    "(CONDSTORE)",
    "%",
    "*%*",
    "/",
    "é",
    "\u{80}",
    "&AOk-",
    "=",
    "AHVzZXIAcHc=",
];

fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::sample::select(TOKENS).prop_map(|t| t.as_bytes().to_vec()),
        1 => "[a-zA-Z0-9]{1,8}".prop_map(String::into_bytes),
        1 => soup(6),
        1 => (0..200u32).prop_map(|n| format!("{{{n}}}\r\n").into_bytes()),
    ]
}

/// A command-ish line built from tokens, ended by CRLF most of the time.
fn shaped_message() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(token(), 0..14),
        prop::sample::select(vec!["\r\n", "\r\n", "\r\n", "\n", ""]),
    )
        .prop_map(|(tokens, end)| {
            let mut v = tokens.concat();
            v.extend_from_slice(end.as_bytes());
            v
        })
}

fn shaped_stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            6 => shaped_message(),
            1 => crlf_soup(20),
            1 => soup(40),
        ],
        0..16,
    )
    .prop_map(|v| v.concat())
}

// ---------------------------------------------------------------------------
// Framer

/// What the session would expect after a frame: AUTHENTICATE without an
/// initial response wants a SASL line, IDLE wants DONE; after those, or
/// anything else, a command.
fn next_expect(frame: &Frame) -> Expect {
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

/// A frame as text, replies readable.
fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Reply(r) => format!("Reply({:?})", String::from_utf8_lossy(r)),
        other => format!("{other:?}"),
    }
}

/// Feeds the pieces to a framer, switching the expected kind of message as
/// the session would when `follow`; checks and describes every frame.
fn frame_all<'a>(
    limit: u32,
    first: Expect,
    reads: impl IntoIterator<Item = &'a [u8]>,
    follow: bool,
) -> Result<Vec<String>, TestCaseError> {
    let mut f = Framer::new(limit);
    f.expect(first);
    let mut expect = first;
    let mut frames: Vec<String> = Vec::new();
    for piece in reads {
        f.push(piece);
        while let Some(frame) = f.next_frame() {
            match &frame {
                Frame::Reply(r) => {
                    let done = check_responses(r).map_err(TestCaseError::fail)?;
                    prop_assert!(done.len() <= 1, "a reply of several completions: {:?}", r);
                }
                Frame::Command(cmd, _) => {
                    prop_assert!(is_tag(cmd.tag.as_ref().as_bytes()), "bad tag {:?}", cmd.tag);
                }
                Frame::AuthData(_) | Frame::IdleDone | Frame::LiteralStart(_) => {}
                Frame::LiteralChunk(c) => {
                    // Pieces of a literal depend on how the input came:
                    // counted together, they do not.
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
            if follow {
                // A reply (BAD, TOOBIG, continuation) and the start of a
                // literal leave the state alone.
                if !matches!(frame, Frame::Reply(_) | Frame::LiteralStart(_)) {
                    expect = next_expect(&frame);
                }
                f.expect(expect);
            }
            frames.push(describe(&frame));
        }
    }
    Ok(frames)
}

fn literal_limit() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        1..64u32,
        Just(1000u32),
        Just(u32::MAX - 1),
        Just(u32::MAX)
    ]
}

fn expect_mode() -> impl Strategy<Value = Expect> {
    prop_oneof![
        4 => Just(Expect::Command),
        1 => Just(Expect::AuthData),
        1 => Just(Expect::IdleDone),
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn framer_arbitrary_bytes(
        input in prop::collection::vec(any::<u8>(), 0..2048),
        limit in literal_limit(),
        first in expect_mode(),
        follow in any::<bool>(),
        cuts in cuts(),
    ) {
        let whole = frame_all(limit, first, [&input[..]], follow)?;
        let split = frame_all(limit, first, pieces(&input, &cuts), follow)?;
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn framer_imap_shaped(
        input in shaped_stream(),
        limit in literal_limit(),
        first in expect_mode(),
        follow in any::<bool>(),
        cuts in cuts(),
    ) {
        let whole = frame_all(limit, first, [&input[..]], follow)?;
        let split = frame_all(limit, first, pieces(&input, &cuts), follow)?;
        prop_assert_eq!(&split, &whole);
        let bytes = frame_all(limit, first, input.chunks(1), follow)?;
        prop_assert_eq!(bytes, whole, "byte at a time");
    }

    /// The octets of a LITERAL+ are never commands: under the limit they are
    /// the APPEND's message, over it they are read and dropped (TOOBIG).
    /// A synchronising literal under the limit is the same.
    #[test]
    fn framer_literal_octets_are_not_commands(
        inner in prop::collection::vec(prop::sample::select(vec![
            &b"b1 NOOP\r\n"[..], b"b2 LOGOUT\r\n", b"\r\n", b"{3}\r\n", b"{2+}\r\n", b"DONE\r\n", b"x",
        ]), 0..20),
        limit in 0..200u32,
        sync in any::<bool>(),
        cuts in cuts(),
    ) {
        let inner = inner.concat();
        let n = inner.len() as u32;
        if sync && n > limit {
            // The client must not send those octets; nothing to check.
            return Ok(());
        }
        let mut input = format!("a1 APPEND INBOX {{{n}{}}}\r\n", if sync { "" } else { "+" }).into_bytes();
        input.extend_from_slice(&inner);
        input.extend_from_slice(b"\r\nc1 NOOP\r\n");
        let frames = frame_all(limit, Expect::Command, pieces(&input, &cuts), true)?;
        prop_assert!(frames.iter().all(|f| !f.contains("\"b1\"") && !f.contains("\"b2\"")), "{frames:#?}");
        prop_assert!(frames.last().is_some_and(|f| f.contains("\"c1\"")), "{frames:#?}");
        if n > limit {
            prop_assert!(frames[0].contains("TOOBIG"), "{frames:#?}");
        }
    }
}

// ---------------------------------------------------------------------------
// extensions::lift

fn lift_token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "a1 ", "UID ", "uid ", "SEARCH ", "search ", "RETURN ", "return ", "(", ")", "()", "(MIN MAX)",
            "(COUNT ALL SAVE)", "LIST ", "list ", "LSUB ", "(SUBSCRIBED) ", "(SPECIAL-USE RECURSIVEMATCH) ",
            "\"\" ", "\"*\"", "% ", "* ", " RETURN (", " RETURN (CHILDREN)", " RETURN (STATUS (MESSAGES UNSEEN))",
            "STATUS ", "(STATUS)", "\"", "\\\"", "\\", "\r\n", "\n", "\r", "{3}\r\n", "{0+}\r\n", " ", "ALL",
            "UNSEEN", "((((", "))))",
        ]).prop_map(|s| s.as_bytes().to_vec()),
        1 => soup(6),
    ]
}

fn lift_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(lift_token(), 0..16).prop_map(|v| v.concat()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ]
}

fn check_lift(message: &[u8]) -> Result<(), TestCaseError> {
    let (out, extras) = lift(message);
    if extras == Extras::default() {
        // Nothing taken out: the message is unchanged, or only an empty
        // selection list `()` went.
        prop_assert!(out.len() <= message.len());
    } else {
        prop_assert!(
            out.len() < message.len(),
            "lift took {extras:?} but did not shorten {message:?}"
        );
    }
    // The tag stays.
    let sp = message.iter().position(|&b| b == b' ').unwrap_or(message.len());
    prop_assert!(
        out.starts_with(&message[..sp]),
        "tag changed: {message:?} -> {out:?}"
    );
    // Only bytes within lines go: every CR and LF stays, so the message
    // still ends the same way and its literals and later lines are intact.
    let split = |m: &[u8]| -> Vec<Vec<u8>> {
        m.split_inclusive(|&b| b == b'\r' || b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    };
    let (before, after) = (split(message), split(&out));
    prop_assert_eq!(
        before.len(),
        after.len(),
        "line ends changed: {:?} -> {:?}",
        String::from_utf8_lossy(message),
        String::from_utf8_lossy(&out)
    );
    for (b, a) in before.iter().zip(&after) {
        prop_assert_eq!(
            b.last(),
            a.last(),
            "line ends changed: {:?} -> {:?}",
            message,
            out
        );
        let mut rest = b.iter();
        prop_assert!(
            a.iter().all(|x| rest.any(|y| y == x)),
            "not a deletion: {:?} -> {:?}",
            String::from_utf8_lossy(b),
            String::from_utf8_lossy(a)
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn lift_never_panics_and_only_shortens(message in lift_input(), crlf in any::<bool>()) {
        let mut message = message;
        if crlf {
            message.extend_from_slice(b"\r\n");
        }
        check_lift(&message)?;
    }
}

// ---------------------------------------------------------------------------
// Session over a store

/// Messages every test account starts with (and "deliveries" copy from):
/// plain, nested multipart with encodings and RFC 2231, message/rfc822,
/// NUL and bare line ends and 8-bit headers with an unknown transfer
/// encoding, a header alone, almost nothing, a digest without its close
/// delimiter, and odd dates and addresses.
const MESSAGES: &[(&[u8], i64, &str)] = &[
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

/// A store in a temporary folder (in memory when /dev/shm exists), with
/// one template account holding [`MESSAGES`]; every test case gets a fresh
/// account with copies of them, so cases do not see each other.
struct Fixture {
    store: Store,
    domain_id: postroom_store::DomainId,
    template: FolderRow,
    template_uids: Vec<postroom_store::Uid>,
    next: AtomicUsize,
    _dir: tempfile::TempDir,
}

/// One test case's account.
#[derive(Clone)]
struct Account {
    id: postroom_store::AccountId,
    address: String,
}

const PASSWORD: &str = "secret";

impl Fixture {
    fn new() -> Self {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            tempfile::Builder::new()
                .prefix("postroom-imap-props")
                .tempdir_in("/dev/shm")
                .or_else(|_| tempfile::tempdir())
        } else {
            tempfile::tempdir()
        }
        .unwrap();
        let store = Store::open(dir.path()).unwrap();
        let domain = store
            .sqlite()
            .unwrap()
            .add_domain("example.com", "example.com", None)
            .unwrap();
        let tpl = store
            .sqlite()
            .unwrap()
            .add_account(domain.id, "template", "template", None, None)
            .unwrap();
        let template = store
            .sqlite()
            .unwrap()
            .find_folder(tpl.id, "INBOX")
            .unwrap()
            .unwrap();
        let mut template_uids = Vec::new();
        for (i, (m, flags, kw)) in MESSAGES.iter().enumerate() {
            let date = 760_000_000 + i as i64 * 86_400 * 400;
            template_uids.push(wait(store.append(&template, m, *flags, kw, Some(date))).unwrap());
        }
        Fixture {
            store,
            domain_id: domain.id,
            template,
            template_uids,
            next: AtomicUsize::new(0),
            _dir: dir,
        }
    }

    /// A fresh account: the messages in INBOX, two in Archive, one of the
    /// folders subscribed, maybe a quota.
    fn account(&self, quota: Option<i64>) -> Account {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let local = format!("u{n}");
        let a = self
            .store
            .sqlite()
            .unwrap()
            .add_account(self.domain_id, &local, &local, None, quota)
            .unwrap();
        let inbox = self
            .store
            .sqlite()
            .unwrap()
            .find_folder(a.id, "INBOX")
            .unwrap()
            .unwrap();
        let archive = self
            .store
            .sqlite()
            .unwrap()
            .find_folder(a.id, "Archive")
            .unwrap()
            .unwrap();
        wait(
            self.store
                .meta()
                .copy_messages(self.template.id, &self.template_uids, inbox.id),
        )
        .unwrap();
        wait(
            self.store
                .meta()
                .copy_messages(self.template.id, &self.template_uids[..2], archive.id),
        )
        .unwrap();
        self.store
            .sqlite()
            .unwrap()
            .set_subscribed(a.id, "Sent", true)
            .unwrap();
        Account {
            id: a.id,
            address: format!("{local}@example.com"),
        }
    }
}

/// What "other sessions" and deliveries do while the session runs.
#[derive(Clone, Debug)]
enum Other {
    /// A new message in INBOX.
    Deliver(Index),
    /// Another session sets or clears a flag.
    Flag(Index, bool),
    /// Another session expunges a message.
    Expunge(Index),
    /// Another session deletes a folder (maybe the selected one).
    DeleteFolder(&'static str),
    /// The glue's IDLE tick.
    IdleCheck,
}

fn other(delete_folders: bool) -> BoxedStrategy<Other> {
    let base = prop_oneof![
        2 => any::<Index>().prop_map(Other::Deliver),
        2 => (any::<Index>(), any::<bool>()).prop_map(|(i, on)| Other::Flag(i, on)),
        2 => any::<Index>().prop_map(Other::Expunge),
        2 => Just(Other::IdleCheck),
    ];
    if delete_folders {
        prop_oneof![
            8 => base,
            1 => prop::sample::select(vec!["Archive", "Trash", "a", "a/b"]).prop_map(Other::DeleteFolder),
        ]
        .boxed()
    } else {
        base.boxed()
    }
}

/// Drives a session like the tokio glue does, checking the contract on the
/// way: every send is whole, well-formed response lines; `poll` is quiet
/// while a login or TLS handshake is open; nothing after `Close`.
struct Driver<'f> {
    fx: &'f Fixture,
    account: Account,
    s: Session,
    /// What the tokio glue keeps: the store, the APPEND literal uploaded.
    glue: postroom_imap::storage::Glue,
    /// Every tagged completion, in order.
    completions: Vec<Completion>,
    /// Everything sent, for failure messages.
    transcript: Vec<u8>,
    /// Everything received.
    client: Vec<u8>,
    closed: bool,
    /// Checks actions after Close (off where a known bug would trip it).
    strict_close: bool,
    /// Store questions (`Action::Query`) answered with a failure: bit `n
    /// % 64` for the n-th question.
    faults: u64,
    /// Questions asked, and how many were answered with a failure.
    queries: u32,
    faulted: u32,
    /// Of those, the failures the session logs instead of answering: the
    /// refresh while idling, and the one announcing what an APPEND or COPY
    /// just put into the selected mailbox (the command succeeded).
    logged: u32,
    /// The last question when it was an APPEND or COPY answered and
    /// nothing was sent since: a refresh asked right then is the
    /// announcing one.
    last_query: &'static str,
}

impl<'f> Driver<'f> {
    fn new(fx: &'f Fixture, account: Account, cfg: SessionConfig) -> Self {
        let s = Session::new(cfg, false);
        let greeting = s.greeting();
        assert!(check_responses(&greeting).is_ok(), "bad greeting {greeting:?}");
        Driver {
            fx,
            account,
            s,
            glue: postroom_imap::storage::Glue::new(fx.store.clone()),
            completions: Vec::new(),
            transcript: greeting,
            client: Vec::new(),
            closed: false,
            strict_close: true,
            faults: 0,
            queries: 0,
            faulted: 0,
            logged: 0,
            last_query: "",
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), TestCaseError> {
        self.client.extend_from_slice(bytes);
        self.s.receive(bytes);
        self.pump()
    }

    fn pump(&mut self) -> Result<(), TestCaseError> {
        while let Some(action) = self.s.poll() {
            if self.strict_close {
                prop_assert!(
                    !self.closed,
                    "action after Close: {:?}\n{}",
                    action,
                    String::from_utf8_lossy(&self.transcript)
                );
            }
            match action {
                Action::Send(bytes) => {
                    let done = check_responses(&bytes).map_err(|e| {
                        TestCaseError::fail(format!(
                            "{e}\nafter:\n{}",
                            String::from_utf8_lossy(&self.transcript)
                        ))
                    })?;
                    self.completions.extend(done);
                    self.transcript.extend_from_slice(&bytes);
                    // The APPEND or COPY was answered: a refresh now is
                    // another command's.
                    self.last_query = "";
                }
                Action::Authenticate { user, password } => {
                    prop_assert!(self.s.poll().is_none(), "poll went on before the login result");
                    let ok =
                        user.eq_ignore_ascii_case(&self.account.address) && password.expose() == PASSWORD;
                    self.s.login_result(if ok {
                        Ok((self.account.id, self.account.address.clone()))
                    } else {
                        Err(LoginFailure::Failed)
                    });
                }
                Action::StartTls => {
                    prop_assert!(self.s.poll().is_none(), "poll went on before TLS");
                    self.s.tls_established();
                }
                Action::Idle => {
                    self.s.idle_check();
                }
                Action::Upload(step) => self.glue.upload(step),
                Action::Query(q) => {
                    prop_assert!(self.s.poll().is_none(), "poll went on before the store's answer");
                    let n = self.queries;
                    self.queries += 1;
                    let courtesy = matches!(q, postroom_imap::storage::Query::Refresh { .. })
                        && (self.s.is_idling() || matches!(self.last_query, "Append" | "Copy"));
                    let faulted = self.faults >> (n % 64) & 1 == 1;
                    self.last_query = match &q {
                        _ if faulted => "",
                        postroom_imap::storage::Query::Append { .. } => "Append",
                        postroom_imap::storage::Query::Copy { .. } => "Copy",
                        _ => "",
                    };
                    if faulted {
                        self.faulted += 1;
                        self.logged += u32::from(courtesy);
                        self.s.answered(Err(postroom_store::StoreError::Unavailable));
                    } else {
                        self.s.answered(wait(self.glue.ask(q)));
                    }
                }
                Action::Close => {
                    self.closed = true;
                    prop_assert!(self.s.is_closed());
                }
            }
        }
        Ok(())
    }

    fn folder(&self, name: &str) -> Option<FolderRow> {
        self.fx
            .store
            .sqlite()
            .unwrap()
            .find_folder(self.account.id, name)
            .ok()
            .flatten()
    }

    /// Applies a change made elsewhere, then lets the session run (as the
    /// glue does when the store announces a change).
    fn other(&mut self, op: &Other) -> Result<(), TestCaseError> {
        let store = &self.fx.store;
        let inbox = self.folder("INBOX").unwrap();
        let uids: Vec<postroom_store::Uid> = store
            .sqlite()
            .unwrap()
            .message_meta(inbox.id)
            .unwrap()
            .into_iter()
            .map(|m| m.uid)
            .collect();
        match op {
            Other::Deliver(i) => {
                let uid = *i.get(&self.fx.template_uids);
                wait(store.meta().copy_messages(self.fx.template.id, &[uid], inbox.id)).unwrap();
            }
            Other::Flag(i, on) if !uids.is_empty() => {
                let op = if *on { FlagOp::Add } else { FlagOp::Remove };
                store
                    .sqlite()
                    .unwrap()
                    .store_flags(inbox.id, &[*i.get(&uids)], op, 1 | 4, &["$Other".into()], None)
                    .unwrap();
            }
            Other::Expunge(i) if !uids.is_empty() => {
                wait(store.expunge(inbox.id, &[*i.get(&uids)])).unwrap();
            }
            Other::DeleteFolder(name) => {
                if let Some(f) = self.folder(name) {
                    wait(store.delete_folder(&f)).unwrap();
                }
            }
            Other::Flag(..) | Other::Expunge(_) | Other::IdleCheck => {}
        }
        if !self.closed {
            self.s.idle_check();
        }
        self.pump()
    }
}

// Command generators. Bodies come without their tag; the runner adds one.

fn pick(v: &'static [&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(v).prop_map(String::from).boxed()
}

/// Mailbox names, folders that exist and ones that do not, in every IMAP
/// string syntax. Kept short: LIST wildcards backtrack (see the ignored
/// `list_wildcards_backtrack_exponentially`).
fn mailbox() -> BoxedStrategy<String> {
    pick(&[
        "INBOX",
        "inbox",
        "Sent",
        "Archive",
        "Trash",
        "Junk",
        "Drafts",
        "a",
        "a/b",
        "a/b/c",
        "\"New Folder\"",
        "\"\"",
        "\"x%\"",
        "\"*\"",
        "\"/lead\"",
        "\"trail/\"",
        "\"a//b\"",
        "\"Ünï\"",
        "&AOk-",
        "\"q\\\"uote\"",
        "{3}\r\nlit",
        "{4+}\r\nlit2",
        "NIL",
        "INBOX/sub",
        "\"\\\\\"",
        "Sent/x",
        "\"sp ace/x\"",
    ])
}

/// Mostly `good`, sometimes `odd` (invalid syntax, out of range).
fn mostly(good: &'static [&'static str], odd: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![8 => pick(good), 1 => pick(odd)].boxed()
}

fn sequence_set() -> BoxedStrategy<String> {
    prop_oneof![
        4 => mostly(
            &[
                "1", "2", "*", "1:*", "*:1", "3:2", "1,2,3", "1:2,4:*", "4294967295", "1:4294967295", "999",
                "2,2,2", "1:1", "7:*", "*:*", "1,*",
            ],
            &["0", "0:*", "1:0", "4294967296", "$", "-1", ""],
        ),
        1 => (1..12u32, 1..12u32).prop_map(|(a, b)| format!("{a}:{b}")),
    ]
    .boxed()
}

fn flag_list() -> BoxedStrategy<String> {
    prop::collection::vec(
        pick(&[
            "\\Seen",
            "\\Answered",
            "\\Flagged",
            "\\Deleted",
            "\\Draft",
            "\\Recent",
            "$Junk",
            "NonJunk",
            "\\Foo",
            "kw",
        ]),
        0..4,
    )
    .prop_map(|v| format!("({})", v.join(" ")))
    .boxed()
}

fn fetch_item() -> BoxedStrategy<String> {
    mostly(
        &[
            "FLAGS",
            "UID",
            "INTERNALDATE",
            "RFC822.SIZE",
            "ENVELOPE",
            "BODYSTRUCTURE",
            "BODY",
            "BODY[]",
            "BODY.PEEK[]",
            "BODY[HEADER]",
            "BODY.PEEK[TEXT]",
            "BODY[1]",
            "BODY[2]",
            "BODY[1.1]",
            "BODY[1.2.3]",
            "BODY[1.MIME]",
            "BODY[3.MIME]",
            "BODY[3.HEADER]",
            "BODY[3.TEXT]",
            "BODY[2.HEADER.FIELDS (Subject)]",
            "BODY[HEADER.FIELDS (From To)]",
            "BODY.PEEK[HEADER.FIELDS.NOT (Subject Date)]",
            "BODY[HEADER.FIELDS (\"X y\")]",
            "BODY[]<0.10>",
            "BODY[]<100.1>",
            "BODY[TEXT]<4294967295.4294967295>",
            "RFC822",
            "RFC822.HEADER",
            "RFC822.TEXT",
            "BINARY[1]",
            "BINARY.PEEK[1]<0.5>",
            "BINARY.PEEK[2]",
            "BINARY[1.1]",
            "BINARY.PEEK[]",
            "BINARY.SIZE[1]",
            "BINARY.SIZE[3]",
            "MODSEQ",
        ],
        &[
            "BINARY[0]",
            "X-GM-MSGID",
            "BODY[0]",
            "BODY[1.0]",
            "BODY[]<1.0>",
            "BODY[1]<0.0>",
            "BODY[MIME]",
            "BODY[HEADER.FIELDS ()]",
        ],
    )
}

fn fetch_items() -> BoxedStrategy<String> {
    prop_oneof![
        1 => pick(&["ALL", "FAST", "FULL"]),
        2 => fetch_item(),
        4 => prop::collection::vec(fetch_item(), 0..6).prop_map(|v| format!("({})", v.join(" "))),
    ]
    .boxed()
}

fn date() -> BoxedStrategy<String> {
    pick(&[
        "1-Jan-2000",
        "31-Dec-1969",
        "29-Feb-2023",
        "01-Jan-9999",
        "1-Jan-0000",
        "7-Feb-1994",
        "x",
    ])
}

fn search_key() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        4 => pick(&[
            "ALL", "ANSWERED", "DELETED", "FLAGGED", "NEW", "OLD", "RECENT", "SEEN", "UNSEEN", "DRAFT", "UNDRAFT",
            "UNANSWERED", "UNDELETED", "UNFLAGGED", "KEYWORD $Junk", "UNKEYWORD kw", "LARGER 100", "SMALLER 0",
            "LARGER 4294967295", "MODSEQ 1", "MODSEQ 18446744073709551615", "FROM \"alice\"", "TO bob",
            "CC \"\"", "BCC x", "SUBJECT \"café\"", "SUBJECT {4}\r\ncafé", "BODY hello", "TEXT \"\\\"\"",
            "HEADER Message-ID \"<1@\"", "HEADER X-None \"\"", "BODY {0}\r\n", "TEXT \"ü\"",
        ]),
        1 => date().prop_map(|d| format!("SINCE {d}")),
        1 => (pick(&["BEFORE", "ON", "SENTBEFORE", "SENTON", "SENTSINCE"]), date())
            .prop_map(|(k, d)| format!("{k} {d}")),
        2 => sequence_set(),
        1 => sequence_set().prop_map(|s| format!("UID {s}")),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|k| format!("NOT {k}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("OR {a} {b}")),
            prop::collection::vec(inner, 1..4).prop_map(|v| format!("({})", v.join(" "))),
        ]
    })
    .boxed()
}

fn search() -> BoxedStrategy<String> {
    (
        prop::option::of(prop::collection::vec(
            pick(&["MIN", "MAX", "COUNT", "ALL", "SAVE"]),
            0..4,
        )),
        prop::option::of(pick(&["CHARSET UTF-8 ", "CHARSET us-ascii ", "CHARSET x-bogus "])),
        prop::collection::vec(search_key(), 1..4),
    )
        .prop_map(|(ret, charset, keys)| {
            let ret = ret
                .map(|r| format!("RETURN ({}) ", r.join(" ")))
                .unwrap_or_default();
            format!("SEARCH {ret}{}{}", charset.unwrap_or_default(), keys.join(" "))
        })
        .boxed()
}

fn list_pattern() -> BoxedStrategy<String> {
    pick(&[
        "*",
        "%",
        "\"\"",
        "INBOX",
        "inbox",
        "\"a/%\"",
        "\"*%*%\"",
        "\"%/%/%\"",
        "\"%%%%%%%%\"",
        "\"*a*b*c*d*e*f*g*h*i*\"",
        "\"**********\"",
        "\"*/*\"",
        "Sent*",
        "\"Ü*\"",
        "{1}\r\n*",
        "\"a/b/*\"",
        "\"\\\\*\"",
    ])
}

fn list() -> BoxedStrategy<String> {
    (
        mostly(&["LIST", "list"], &["LSUB"]),
        prop::option::weighted(
            0.3,
            pick(&[
                "(SUBSCRIBED)",
                "(SPECIAL-USE)",
                "(SUBSCRIBED RECURSIVEMATCH)",
                "(REMOTE)",
                "()",
            ]),
        ),
        pick(&["\"\"", "\"a/\"", "INBOX", "\"%\"", "\"*\""]),
        list_pattern(),
        prop::option::weighted(
            0.4,
            pick(&[
                "RETURN (CHILDREN)",
                "RETURN (SUBSCRIBED SPECIAL-USE)",
                "RETURN (STATUS (MESSAGES UNSEEN SIZE))",
                "RETURN (STATUS (UIDNEXT UIDVALIDITY RECENT DELETED HIGHESTMODSEQ DELETED-STORAGE))",
                "RETURN (STATUS)",
                "RETURN ()",
            ]),
        ),
    )
        .prop_map(|(verb, select, reference, pattern, ret)| {
            let mut s = verb;
            if let Some(sel) = select {
                s = format!("{s} {sel}");
            }
            s = format!("{s} {reference} {pattern}");
            if let Some(r) = ret {
                s = format!("{s} {r}");
            }
            s
        })
        .boxed()
}

fn status() -> BoxedStrategy<String> {
    (
        mailbox(),
        prop::collection::vec(
            pick(&[
                "MESSAGES",
                "RECENT",
                "UIDNEXT",
                "UIDVALIDITY",
                "UNSEEN",
                "DELETED",
                "SIZE",
                "HIGHESTMODSEQ",
                "DELETED-STORAGE",
                "APPENDLIMIT",
            ]),
            0..5,
        ),
    )
        .prop_map(|(m, items)| format!("STATUS {m} ({})", items.join(" ")))
        .boxed()
}

/// Message contents for APPEND: the samples, cut or mutated, or soup.
fn message_content() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        3 => any::<Index>().prop_map(|i| i.get(MESSAGES).0.to_vec()),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, cut)| {
            let m = i.get(MESSAGES).0;
            m[..cut.index(m.len() + 1)].to_vec()
        }),
        2 => (any::<Index>(), prop::collection::vec((any::<Index>(), any::<u16>()), 1..8)).prop_map(|(i, edits)| {
            let mut m = i.get(MESSAGES).0.to_vec();
            for (at, v) in edits {
                let at = at.index(m.len());
                m[at] = bias(v);
            }
            m
        }),
        1 => soup(300),
    ]
    .boxed()
}

fn append() -> BoxedStrategy<Vec<u8>> {
    (
        mailbox(),
        prop::option::of(flag_list()),
        prop::option::of(mostly(
            &[
                "\"07-Feb-1994 21:52:25 -0800\"",
                "\" 1-Jan-2000 00:00:00 +0000\"",
                "\"31-Dec-2099 23:59:59 -1259\"",
            ],
            &[
                "\"31-Dec-9999 23:59:59 -9959\"",
                "\"29-Feb-2023 00:00:00 +0000\"",
                "\"1-Jan-2000\"",
            ],
        )),
        prop::sample::select(vec!["", "+", "~"]),
        message_content(),
    )
        .prop_map(|(m, flags, date, mode, content)| {
            let mut s = format!("APPEND {m}");
            if let Some(f) = flags {
                s = format!("{s} {f}");
            }
            if let Some(d) = date {
                s = format!("{s} {d}");
            }
            let n = content.len();
            let lit = match mode {
                "+" => format!("{{{n}+}}"),
                "~" => format!("~{{{n}}}"),
                _ => format!("{{{n}}}"),
            };
            let mut v = format!("{s} {lit}\r\n").into_bytes();
            v.extend_from_slice(&content);
            v.extend_from_slice(b"\r\n");
            v
        })
        .boxed()
}

/// base64 of `authzid NUL user NUL password`.
fn sasl_plain(authz: &str, user: &str, pass: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{authz}\0{user}\0{pass}"))
}

/// Ways to log in (the `{user}` placeholder is the account's address).
fn login() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        12 => Just("LOGIN {user} secret\r\n".to_string()),
        1 => Just("LOGIN \"{user}\" {6}\r\nsecret\r\n".to_string()),
        1 => Just("LOGIN {user} {6+}\r\nsecret\r\n".to_string()),
        1 => Just("LOGIN {user} wrong\r\n".to_string()),
        3 => Just("AUTHENTICATE PLAIN\r\n{plain}\r\n".to_string()),
        1 => Just("AUTHENTICATE PLAIN {plain}\r\n".to_string()),
        1 => Just("AUTHENTICATE PLAIN\r\n*\r\n".to_string()),
        1 => Just("AUTHENTICATE PLAIN\r\n{other}\r\n".to_string()),
        1 => Just("AUTHENTICATE PLAIN =\r\n".to_string()),
    ]
    .prop_map(|s| s.into_bytes())
    .boxed()
}

/// A command body without its tag, CRLF included. `valid`: only commands a
/// well-behaved client could send (so every one gets its tagged answer).
fn command(valid: bool) -> BoxedStrategy<Vec<u8>> {
    let text = prop_oneof![
        2 => pick(&[
            "CAPABILITY", "NOOP", "CHECK", "NAMESPACE", "ID NIL", "ID (\"name\" \"mbsync\")", "CLOSE", "UNSELECT",
            "EXPUNGE", "GETQUOTAROOT INBOX", "GETQUOTA \"\"", "GETQUOTA x", "STARTTLS", "COMPRESS DEFLATE",
            "XLIST \"\" *", "FROB", "LOGIN a b", "CREATE a/b/", "ENABLE CONDSTORE", "ENABLE QRESYNC",
            "ENABLE IMAP4rev2", "ENABLE UTF8=ACCEPT X-FOO CONDSTORE",
        ]),
        3 => (pick(&["SELECT", "EXAMINE", "select"]), prop_oneof![3 => pick(&["INBOX", "Archive", "inbox"]), 1 => mailbox()], prop::option::weighted(0.3, mostly(&[
            "(CONDSTORE)", "(QRESYNC (1 1))", "(QRESYNC (4294967295 9223372036854775807 1:*))",
            "(QRESYNC (7 2 1:4 (1:2 1:2)))",
        ], &["(FOO)", "(QRESYNC (4294967295 18446744073709551615 1:*))", "(QRESYNC (0 0))"]))).prop_map(|(v, m, p)| match p {
            Some(p) => format!("{v} {m} {p}"),
            None => format!("{v} {m}"),
        }),
        2 => (pick(&["CREATE", "DELETE", "SUBSCRIBE", "UNSUBSCRIBE", "GETQUOTAROOT"]), mailbox())
            .prop_map(|(v, m)| format!("{v} {m}")),
        1 => (mailbox(), mailbox()).prop_map(|(a, b)| format!("RENAME {a} {b}")),
        2 => list(),
        1 => status(),
        4 => (pick(&["", "UID "]), sequence_set(), fetch_items(), prop::option::weighted(0.2, mostly(&[
            "(CHANGEDSINCE 1)", "(CHANGEDSINCE 9223372036854775807)", "(CHANGEDSINCE 3 VANISHED)",
        ], &["(CHANGEDSINCE 18446744073709551615)", "(CHANGEDSINCE 0)"]))).prop_map(|(uid, set, items, m)| match m {
            Some(m) => format!("{uid}FETCH {set} {items} {m}"),
            None => format!("{uid}FETCH {set} {items}"),
        }),
        3 => (pick(&["", "UID "]), search()).prop_map(|(uid, s)| format!("{uid}{s}")),
        3 => (
            pick(&["", "UID "]),
            sequence_set(),
            prop::option::weighted(0.2, pick(&["(UNCHANGEDSINCE 0)", "(UNCHANGEDSINCE 5)", "(UNCHANGEDSINCE 9223372036854775808)"])),
            pick(&["FLAGS", "+FLAGS", "-FLAGS", "FLAGS.SILENT", "+FLAGS.SILENT", "-FLAGS.SILENT"]),
            flag_list(),
        ).prop_map(|(uid, set, m, kind, flags)| match m {
            Some(m) => format!("{uid}STORE {set} {m} {kind} {flags}"),
            None => format!("{uid}STORE {set} {kind} {flags}"),
        }),
        2 => (pick(&["", "UID "]), pick(&["COPY", "MOVE"]), sequence_set(), mailbox())
            .prop_map(|(uid, v, set, m)| format!("{uid}{v} {set} {m}")),
        1 => sequence_set().prop_map(|s| format!("UID EXPUNGE {s}")),
    ]
    .prop_map(|s| format!("{s}\r\n").into_bytes());
    let mut cases: Vec<(u32, BoxedStrategy<Vec<u8>>)> = vec![
        (30, text.boxed()),
        (3, append()),
        (2, Just(b"IDLE\r\nDONE\r\n".to_vec()).boxed()),
        (1, login()),
        (
            1,
            Just(format!("AUTHENTICATE PLAIN {}\r\n", sasl_plain("", "x", "y")).into_bytes()).boxed(),
        ),
    ];
    cases.push((1, Just(b"LSUB \"\" *\r\n".to_vec()).boxed()));
    // Rare: it ends the session (about one command in two hundred when valid).
    if valid {
        for c in &mut cases {
            c.0 *= 5;
        }
    }
    cases.push((1, Just(b"LOGOUT\r\n".to_vec()).boxed()));
    if !valid {
        cases.extend([
            (3, soup(60).boxed()),
            (2, crlf_soup(12).boxed()),
            (3, shaped_message().boxed()),
            (1, Just(b"IDLE\r\nx\r\n".to_vec()).boxed()),
            (1, Just(b"DONE\r\n".to_vec()).boxed()),
            (1, Just(b"AUTHENTICATE PLAIN\r\n".to_vec()).boxed()),
            (1, Just(b"AUTHENTICATE LOGIN\r\n".to_vec()).boxed()),
            // A literal whose announced size is not what follows.
            (
                2,
                (0..40usize, soup(40))
                    .prop_map(|(n, s)| {
                        let mut v = format!("APPEND INBOX {{{n}}}\r\n").into_bytes();
                        v.extend(s);
                        v
                    })
                    .boxed(),
            ),
            (1, Just(b"APPEND INBOX {4294967295+}\r\nx\r\n".to_vec()).boxed()),
        ]);
    }
    prop::strategy::Union::new_weighted(cases).boxed()
}

/// One step of a session: a command (tagged by the runner), raw bytes, or
/// something done by someone else.
#[derive(Clone)]
enum Step {
    Command(Vec<u8>),
    Raw(Vec<u8>),
    Other(Other),
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Command(b) => write!(f, "Command({:?})", String::from_utf8_lossy(b)),
            Step::Raw(b) => write!(f, "Raw({:?})", String::from_utf8_lossy(b)),
            Step::Other(o) => write!(f, "Other({o:?})"),
        }
    }
}

fn steps(valid: bool) -> BoxedStrategy<Vec<Step>> {
    let step = if valid {
        prop_oneof![
            8 => command(true).prop_map(Step::Command),
            1 => other(false).prop_map(Step::Other),
        ]
        .boxed()
    } else {
        prop_oneof![
            8 => command(false).prop_map(Step::Command),
            2 => soup(40).prop_map(Step::Raw),
            2 => other(true).prop_map(Step::Other),
        ]
        .boxed()
    };
    (
        login(),
        prop::option::weighted(
            0.85,
            pick(&[
                "SELECT INBOX",
                "EXAMINE INBOX",
                "SELECT Archive",
                "ENABLE QRESYNC",
            ]),
        ),
        prop::collection::vec(step, 0..30),
    )
        .prop_map(|(login, select, mut rest)| {
            let mut v = vec![Step::Command(login)];
            if let Some(s) = select {
                v.push(Step::Command(format!("{s}\r\n").into_bytes()));
            }
            v.append(&mut rest);
            v
        })
        .boxed()
}

/// Tags the commands (`T0`, `T1`, ...), fills in the account, and cuts
/// everything the client sends at the cut points.
fn render(steps: &[Step], account: &Account) -> (Vec<u8>, Vec<(usize, Other)>, Vec<String>) {
    let plain = sasl_plain("", &account.address, PASSWORD);
    let other = sasl_plain("someone@example.com", &account.address, PASSWORD);
    let mut stream = Vec::new();
    let mut others = Vec::new();
    let mut tags = Vec::new();
    for step in steps {
        match step {
            Step::Command(body) => {
                let tag = format!("T{}", tags.len());
                let text = String::from_utf8_lossy(body);
                let filled = if ["{user}", "{plain}", "{other}"].iter().any(|p| text.contains(p)) {
                    text.replace("{user}", &account.address)
                        .replace("{plain}", &plain)
                        .replace("{other}", &other)
                        .into_bytes()
                } else {
                    body.clone()
                };
                stream.extend_from_slice(tag.as_bytes());
                stream.push(b' ');
                stream.extend_from_slice(&filled);
                tags.push(tag);
            }
            Step::Raw(bytes) => stream.extend_from_slice(bytes),
            Step::Other(o) => others.push((stream.len(), o.clone())),
        }
    }
    (stream, others, tags)
}

fn session_config(valid: bool) -> BoxedStrategy<SessionConfig> {
    if valid {
        Just(SessionConfig {
            hostname: "imap.example".into(),
            starttls: false,
            login_allowed: true,
            max_append: 1 << 20,
            max_errors: 1000,
        })
        .boxed()
    } else {
        (
            any::<bool>(),
            prop::bool::weighted(0.9),
            prop_oneof![Just(1u32 << 20), 0..400u32],
            1..60u32,
        )
            .prop_map(
                |(starttls, login_allowed, max_append, max_errors)| SessionConfig {
                    hostname: "imap.example".into(),
                    starttls,
                    login_allowed,
                    max_append,
                    max_errors,
                },
            )
            .boxed()
    }
}

/// Runs one session: the stream in pieces, the other sessions' changes at
/// the points where they were generated.
fn run_session<'f>(
    fx: &'f Fixture,
    cfg: SessionConfig,
    quota: bool,
    steps: &[Step],
    cuts: &[Index],
    strict_close: bool,
) -> Result<(Driver<'f>, Vec<String>), TestCaseError> {
    run_session_with_faults(fx, cfg, quota, steps, cuts, strict_close, 0)
}

/// [`run_session`], with the store questions `faults` picks answered with
/// a failure ([`Driver::faults`]).
fn run_session_with_faults<'f>(
    fx: &'f Fixture,
    cfg: SessionConfig,
    quota: bool,
    steps: &[Step],
    cuts: &[Index],
    strict_close: bool,
    faults: u64,
) -> Result<(Driver<'f>, Vec<String>), TestCaseError> {
    let account = fx.account(quota.then_some(4000));
    let (stream, others, tags) = render(steps, &account);
    let mut d = Driver::new(fx, account, cfg);
    d.strict_close = strict_close;
    d.faults = faults;
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
    at.extend(others.iter().map(|(p, _)| *p));
    at.sort_unstable();
    let mut start = 0;
    let mut pending = others.into_iter().peekable();
    for cut in at.into_iter().chain(std::iter::once(stream.len())) {
        d.send(&stream[start..cut])?;
        start = cut;
        while let Some((_, op)) = pending.next_if(|(p, _)| *p <= cut) {
            d.other(&op)?;
        }
    }
    Ok((d, tags))
}

/// Each tag answered exactly once (unless the session closed first).
fn check_completions(d: &Driver<'_>, tags: &[String]) -> Result<(), TestCaseError> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (tag, _) in &d.completions {
        prop_assert!(
            tags.contains(tag),
            "an answer for a tag never sent: {tag}\n{}",
            String::from_utf8_lossy(&d.transcript)
        );
        *count.entry(tag.as_str()).or_default() += 1;
    }
    for tag in tags {
        let n = count.get(tag.as_str()).copied().unwrap_or(0);
        prop_assert!(
            n <= 1,
            "{tag} answered {n} times\n{}",
            String::from_utf8_lossy(&d.transcript)
        );
        if !d.closed {
            prop_assert!(
                n == 1,
                "{tag} never answered\n{}",
                String::from_utf8_lossy(&d.transcript)
            );
        }
    }
    Ok(())
}

/// Runs `f` on `cases` generated values with the fixed seed, on one store.
fn run_with_store<S: Strategy>(
    cases: u32,
    strategy: S,
    f: impl Fn(&Fixture, S::Value) -> Result<(), TestCaseError>,
) {
    let fx = Fixture::new();
    let mut runner = TestRunner::new(config(cases));
    if let Err(e) = runner.run(&strategy, |v| f(&fx, v)) {
        panic!("{e}");
    }
}

#[test]
fn session_valid_commands_are_answered_once_and_well_formed() {
    run_with_store(
        128,
        (steps(true), cuts(), any::<bool>()),
        |fx, (steps, cuts, quota)| {
            let cfg = SessionConfig {
                hostname: "imap.example".into(),
                starttls: false,
                login_allowed: true,
                max_append: 1 << 20,
                max_errors: 1000,
            };
            let (d, tags) = run_session(fx, cfg, quota, &steps, &cuts, true)?;
            if std::env::var_os("PROPS_VERBOSE").is_some() {
                eprintln!(
                    "=====\n{}\n-----\n{}",
                    String::from_utf8_lossy(&d.client),
                    String::from_utf8_lossy(&d.transcript)
                );
            }
            check_completions(&d, &tags)?;
            // The answers do not depend on how the input was cut (the
            // other sessions' changes come at the same points).
            let cfg = SessionConfig {
                hostname: "imap.example".into(),
                starttls: false,
                login_allowed: true,
                max_append: 1 << 20,
                max_errors: 1000,
            };
            let (whole, _) = run_session(fx, cfg, quota, &steps, &[], true)?;
            prop_assert_eq!(
                &d.completions,
                &whole.completions,
                "cut differently, answered differently"
            );
            Ok(())
        },
    );
}

/// Issue #9: a store that fails (some `Action::Query` answered with an
/// error) makes exactly those commands answer `NO [UNAVAILABLE]`; every
/// tag is still answered once, and the responses stay well-formed.
#[test]
fn session_store_failures_are_answered_unavailable() {
    run_with_store(
        96,
        (steps(true), cuts(), any::<bool>(), any::<u64>()),
        |fx, (steps, cuts, quota, faults)| {
            let cfg = SessionConfig {
                hostname: "imap.example".into(),
                starttls: false,
                login_allowed: true,
                max_append: 1 << 20,
                max_errors: 1000,
            };
            let (d, tags) = run_session_with_faults(fx, cfg, quota, &steps, &cuts, true, faults)?;
            check_completions(&d, &tags)?;
            let transcript = String::from_utf8_lossy(&d.transcript);
            let unavailable = transcript
                .split("\r\n")
                .filter(|l| {
                    let mut w = l.splitn(3, ' ');
                    w.next().is_some_and(|t| t != "*" && t != "+")
                        && w.next() == Some("NO")
                        && w.next().is_some_and(|r| r.starts_with("[UNAVAILABLE]"))
                })
                .count();
            prop_assert_eq!(
                unavailable,
                (d.faulted - d.logged) as usize,
                "{} questions, {} failed ({} logged only)\n{}",
                d.queries,
                d.faulted,
                d.logged,
                transcript
            );
            Ok(())
        },
    );
}

#[test]
fn session_mixed_input_never_panics_and_responses_are_well_formed() {
    run_with_store(
        192,
        (session_config(false), steps(false), cuts(), any::<bool>()),
        |fx, (cfg, steps, cuts, quota)| {
            // Actions after Close are checked in the cases without folder
            // deletions (see the ignored
            // `deleted_selected_mailbox_says_bye_before_close`).
            let strict = !steps
                .iter()
                .any(|s| matches!(s, Step::Other(Other::DeleteFolder(_))));
            let (mut d, _) = run_session(fx, cfg.clone(), quota, &steps, &cuts, strict)?;
            if !cfg.starttls {
                // STARTTLS discards what was pipelined after it, which by
                // design depends on what had arrived; otherwise the answers
                // do not depend on how the input was cut.
                let (whole, _) = run_session(fx, cfg, quota, &steps, &[], strict)?;
                prop_assert_eq!(
                    &d.completions,
                    &whole.completions,
                    "cut differently, answered differently"
                );
            }
            if std::env::var_os("PROPS_VERBOSE").is_some() {
                eprintln!(
                    "=====\n{}\n-----\n{}",
                    String::from_utf8_lossy(&d.client),
                    String::from_utf8_lossy(&d.transcript)
                );
            }
            if d.closed {
                // Once closed, more input does nothing.
                let before = d.transcript.len();
                d.strict_close = true;
                d.send(b"Z1 NOOP\r\n")?;
                prop_assert_eq!(d.transcript.len(), before);
            }
            Ok(())
        },
    );
}

#[test]
fn session_arbitrary_bytes_after_login() {
    run_with_store(
        256,
        (prop::collection::vec(any::<u8>(), 0..2048), any::<bool>(), cuts()),
        |fx, (bytes, select, cuts)| {
            let mut steps = vec![Step::Command(b"LOGIN {user} secret\r\n".to_vec())];
            if select {
                steps.push(Step::Command(b"SELECT INBOX\r\n".to_vec()));
            }
            steps.push(Step::Raw(bytes));
            let cfg = SessionConfig {
                hostname: "imap.example".into(),
                starttls: true,
                login_allowed: true,
                max_append: 100,
                max_errors: 1000,
            };
            let t = std::time::Instant::now();
            let r = run_session(fx, cfg, false, &steps, &cuts, true);
            if std::env::var_os("PROPS_VERBOSE").is_some() {
                eprintln!("case {:?} {:?}", t.elapsed(), steps.last());
            }
            r?;
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------
// The checker itself

#[test]
fn check_responses_accepts_and_refuses() {
    assert!(check_responses(b"* OK hi\r\n").is_ok());
    assert_eq!(
        check_responses(b"* 1 FETCH (BODY[] {3}\r\na\r\n UID 4)\r\nT1 OK done\r\n").unwrap(),
        [("T1".to_string(), "OK".to_string())]
    );
    assert!(check_responses(b"* 1 FETCH (BINARY[1] ~{2}\r\n\0\0)\r\n").is_ok());
    assert!(check_responses(b"+ go ahead\r\n").is_ok());
    for bad in [
        &b"* OK no end"[..],
        b"* OK bare\nLF\r\n",
        b"* OK bare\rCR\r\n",
        b"T1 MAYBE\r\n",
        b"T+1 OK x\r\n",
        b"* 1 FETCH (BODY[] {5}\r\nabc)\r\n",
        b"* 1 FETCH (BODY[] {2}\r\n\0a)\r\n",
        b"* OK nul\0\r\n",
        b"",
    ] {
        assert!(check_responses(bad).is_err(), "accepted {bad:?}");
    }
}

// ---------------------------------------------------------------------------
// Bugs found with these tests (the open ones ignored until fixed; each is
// minimal).

/// A driver for the reproducers: one fresh account, logged in with LOGIN.
fn logged_in(fx: &Fixture) -> Driver<'_> {
    logged_in_as(fx, fx.account(None))
}

/// A driver logged in to `account`.
fn logged_in_as(fx: &Fixture, account: Account) -> Driver<'_> {
    let cfg = SessionConfig {
        hostname: "imap.example".into(),
        starttls: false,
        login_allowed: true,
        max_append: 1 << 20,
        max_errors: 1000,
    };
    let mut d = Driver::new(fx, account, cfg);
    let login = format!("L1 LOGIN {} {PASSWORD}\r\n", d.account.address);
    d.send(login.as_bytes()).unwrap();
    d
}

/// Fixed in 511f1ac: `lift` took the first CRLF of the message as the end
/// of the LIST line; when a literal came first (`a{0}` CRLF ` LIST x`), the
/// line's end was before its start and slicing panicked, before login.
#[test]
fn lift_list_after_an_earlier_line_end() {
    let _ = lift(b"\r\n LIST ");
    let _ = lift(b"a{0}\r\n LIST x\r\n");
    let fx = Fixture::new();
    let account = fx.account(None);
    let cfg = SessionConfig {
        hostname: "imap.example".into(),
        starttls: false,
        login_allowed: true,
        max_append: 1 << 20,
        max_errors: 1000,
    };
    let mut d = Driver::new(&fx, account, cfg);
    d.send(b"a{0}\r\n LIST x\r\nb NOOP\r\n").unwrap();
    assert!(d.completions.iter().any(|(t, _)| t == "b"));
}

/// FETCH echoes HEADER.FIELDS names in a quoted string as they came, but a
/// name may arrive as a literal holding CR LF: the response then has a bare
/// line break inside a quoted string (`BODY[HEADER.FIELDS ("a` CRLF `")]`),
/// which desynchronises the client's parser. (Names are also converted
/// lossily to UTF-8 and quoted with 8-bit bytes without UTF8=ACCEPT.)
#[test]
fn header_fields_name_with_crlf_is_echoed_raw() {
    let fx = Fixture::new();
    let mut d = logged_in(&fx);
    d.send(b"S1 SELECT INBOX\r\n").unwrap();
    d.send(b"F1 FETCH 1 BODY.PEEK[HEADER.FIELDS ({3}\r\na\r\n)]\r\n")
        .unwrap();
    assert!(d.completions.iter().any(|(t, s)| t == "F1" && s == "OK"));
}

/// LIST matches `*` by trying every split of the rest of the name, so a
/// pattern with up to 8 wildcards (more are refused) against a long folder
/// name (a client can CREATE names up to 512 octets) takes time
/// exponential in the wildcards: with a 40-octet name, `LIST "" "*a*a*a*a*a*a*a*b"`
/// takes about 6 s in a debug build; at 60 octets minutes, at 512 octets
/// forever, with the session's thread busy (a CPU denial of service by an
/// authenticated user).
#[test]
fn list_wildcards_backtrack_exponentially() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let name = "a".repeat(60);
        let _ = tx.send(postroom_imap::session::wildmatch("*a*a*a*a*a*a*a*b", &name));
    });
    // A linear matcher answers in microseconds.
    assert_eq!(
        rx.recv_timeout(std::time::Duration::from_secs(2)),
        Ok(false),
        "LIST pattern matching took over 2 s"
    );
}

/// When another session deletes the selected mailbox, `refresh` writes
/// `* BYE Selected mailbox was deleted` into the command's own output and
/// queues `Action::Close` at once. FETCH, STORE, SEARCH, COPY and MOVE
/// (UID or not) then return without sending that output: no BYE, no tagged
/// response, the connection just closes. NOOP and CHECK send the BYE and
/// their tagged OK *after* `Close`, and so does an IDLE's change check
/// with the BYE (DONE is then never answered); the glue stops at `Close`,
/// so none of it is written. (EXPUNGE instead answers `NO [SERVERBUG]` and
/// stays on the deleted mailbox.)
#[test]
fn deleted_selected_mailbox_says_bye_before_close() {
    let fx = Fixture::new();
    for cmd in [&b"F1 FETCH 1 FLAGS\r\n"[..], b"F1 NOOP\r\n"] {
        let mut d = logged_in(&fx);
        d.send(b"S1 SELECT Archive\r\n").unwrap();
        let archive = d.folder("Archive").unwrap();
        wait(fx.store.delete_folder(&archive)).unwrap();
        // Driver::send fails on an action after Close.
        d.send(cmd).unwrap();
        assert!(d.closed);
        let text = String::from_utf8_lossy(&d.transcript).into_owned();
        assert!(text.contains("* BYE "), "closed without BYE:\n{text}");
    }
}

/// Sends one command line and returns what the session answered to it.
fn answer(d: &mut Driver<'_>, line: &str) -> String {
    let before = d.transcript.len();
    d.send(format!("{line}\r\n").as_bytes()).unwrap();
    String::from_utf8_lossy(&d.transcript[before..]).into_owned()
}

/// Issue #8: `SEARCH MODSEQ 18446744073709551615` matched every message
/// (the value was cast to i64 and became -1), and `SEARCH 1:4294967295`
/// matched none while `1:*` matched all.
#[test]
fn search_modseq_and_sequence_range_beyond_the_mailbox() {
    let fx = Fixture::new();
    let mut d = logged_in(&fx);
    d.send(b"S1 SELECT INBOX (CONDSTORE)\r\n").unwrap();
    let all = answer(&mut d, "A1 SEARCH 1:*");
    assert!(all.starts_with("* SEARCH 1 2"), "{all}");
    let ranged = answer(&mut d, "A2 SEARCH 1:4294967295");
    assert_eq!(ranged.lines().next(), all.lines().next());
    let beyond = answer(&mut d, "A3 SEARCH 4294967295");
    assert_eq!(beyond.lines().next(), Some("* SEARCH"), "{beyond}");
    for v in ["18446744073709551615", "9223372036854775808"] {
        let huge = answer(&mut d, &format!("A4 SEARCH MODSEQ {v}"));
        assert_eq!(huge.lines().next(), Some("* SEARCH"), "{huge}");
    }
    // CHANGEDSINCE the same: nothing changed since; UNCHANGEDSINCE it:
    // every message may be changed.
    let fetch = answer(&mut d, "A5 FETCH 1:* (FLAGS) (CHANGEDSINCE 18446744073709551615)");
    assert!(fetch.starts_with("A5 OK"), "{fetch}");
    let store = answer(
        &mut d,
        "A6 STORE 1 (UNCHANGEDSINCE 18446744073709551615) +FLAGS (\\Flagged)",
    );
    assert!(
        store.contains("FLAGGED") || store.contains("\\Flagged"),
        "{store}"
    );
    assert!(!store.contains("MODIFIED"), "{store}");
}

/// Issue #8: CREATE and RENAME took `.`/`..` levels and invalid or
/// non-canonical modified UTF-7 (RFC 3501 5.1.3 says refuse).
#[test]
fn odd_mailbox_names_are_refused() {
    let fx = Fixture::new();
    let mut d = logged_in(&fx);
    for name in [
        ".",
        "..",
        "../x",
        "a/../../b",
        "a/./b",
        "x/..",
        // Invalid modified UTF-7: no end, a bad base64 digit, an odd
        // number of octets, a lone surrogate.
        "&Jjo",
        "&Jjo!-",
        "&AGE",
        "&2D3-",
        // Non-canonical: printable ASCII in base64 ("a"), two shifts
        // in a row, and raw 8-bit text without UTF8=ACCEPT.
        "&AGE-",
        "&U,BTFw-&ZeVnLIqe-",
        "caf\u{e9}",
    ] {
        let create = answer(&mut d, &format!("C1 CREATE {}", quoted_or_literal(name)));
        assert!(create.starts_with("C1 NO [CANNOT]"), "{name}: {create}");
        let rename = answer(&mut d, &format!("R1 RENAME Archive {}", quoted_or_literal(name)));
        assert!(rename.starts_with("R1 NO [CANNOT]"), "{name}: {rename}");
    }
    for name in ["&U,BTFw-/&ZeVnLIqe-", "A&-B", "x/", "a.b/.c/..d"] {
        let create = answer(&mut d, &format!("C2 CREATE \"{name}\""));
        assert!(create.starts_with("C2 OK"), "{name}: {create}");
    }
}

/// A quoted string, or a literal when the name has 8-bit text.
fn quoted_or_literal(name: &str) -> String {
    if name.is_ascii() {
        format!("\"{name}\"")
    } else {
        format!("{{{}+}}\r\n{name}", name.len())
    }
}

/// Issue #8: a folder could gather any number of keywords; 100 distinct
/// ones is the limit, answered `NO [LIMIT]`.
#[test]
fn keywords_per_folder_are_limited() {
    let fx = Fixture::new();
    let mut d = logged_in(&fx);
    // A folder of two messages without keywords.
    d.send(
        b"C1 CREATE kw\r\nA1 APPEND kw {7+}\r\nSubj: x\r\nA2 APPEND kw {7+}\r\nSubj: y\r\nS1 SELECT kw\r\n",
    )
    .unwrap();
    let kw: Vec<String> = (0..postroom_store::folders::MAX_KEYWORDS)
        .map(|i| format!("k{i}"))
        .collect();
    let ok = answer(&mut d, &format!("K1 STORE 1 +FLAGS ({})", kw.join(" ")));
    assert!(ok.lines().last().is_some_and(|l| l.starts_with("K1 OK")), "{ok}");
    let more = answer(&mut d, "K2 STORE 2 +FLAGS (one-more)");
    assert!(more.starts_with("K2 NO [LIMIT]"), "{more}");
    let append = answer(&mut d, "K3 APPEND kw (another) {7+}\r\nSubj: x");
    assert!(append.starts_with("K3 NO [LIMIT]"), "{append}");
}

/// Issue #8: an APPEND literal over `framing::STREAM_MIN` is written to a
/// file as it arrives; the stored message is the same octets, whether the
/// literal is synchronising, LITERAL+ or literal8, after a mailbox name
/// sent as a literal too, and an APPEND refused
/// after its upload (no such mailbox) stores nothing.
#[test]
fn large_append_is_stored_from_its_upload() {
    let fx = Fixture::new();
    let mut d = logged_in(&fx);
    let mut body = b"Subject: big\r\nMessage-ID: <big@example.com>\r\n\r\n".to_vec();
    // Past both the streaming threshold and what a spool keeps in memory:
    // the upload goes through a spool file.
    let want =
        (postroom_imap::framing::STREAM_MIN as usize).max(postroom_store::blob::SPOOL_IN_MEMORY) + 5000;
    while body.len() < want {
        body.extend_from_slice(b"0123456789abcdefghijklmnopqrstuvwxyz\r\n");
    }
    let inbox = d.folder("INBOX").unwrap();
    let before = fx.store.sqlite().unwrap().message_meta(inbox.id).unwrap().len();
    for (i, announce) in ["{N}", "{N+}", "~{N}"].iter().enumerate() {
        let line = format!(
            "P{i} APPEND INBOX (\\Seen) {}\r\n",
            announce.replace('N', &body.len().to_string())
        );
        d.send(line.as_bytes()).unwrap();
        // In uneven pieces, as a network delivers them.
        for piece in body.chunks(7777) {
            d.send(piece).unwrap();
        }
        d.send(b"\r\n").unwrap();
        assert!(
            d.completions
                .iter()
                .any(|(t, s)| t == &format!("P{i}") && s == "OK"),
            "{}",
            String::from_utf8_lossy(&d.transcript[d.transcript.len().saturating_sub(500)..])
        );
    }
    // The mailbox name as a literal first.
    let line = format!("P3 APPEND {{5}}\r\nINBOX {{{}+}}\r\n", body.len());
    d.send(line.as_bytes()).unwrap();
    d.send(&body).unwrap();
    d.send(b"\r\n").unwrap();
    assert!(d.completions.iter().any(|(t, s)| t == "P3" && s == "OK"));
    let metas = fx.store.sqlite().unwrap().message_meta(inbox.id).unwrap();
    assert_eq!(metas.len(), before + 4);
    for m in &metas[before..] {
        assert_eq!(m.size as usize, body.len());
        let row = fx
            .store
            .sqlite()
            .unwrap()
            .message(inbox.id, m.uid)
            .unwrap()
            .unwrap();
        let stored = fx.store.message_bytes(&row).unwrap();
        assert!(stored == body, "stored body differs");
    }
    // Refused after the upload: nothing stored, nothing left in the spool.
    let line = format!("Q1 APPEND Nowhere {{{}+}}\r\n", body.len());
    d.send(line.as_bytes()).unwrap();
    d.send(&body).unwrap();
    d.send(b"\r\n").unwrap();
    assert!(d.completions.iter().any(|(t, s)| t == "Q1" && s == "NO"));
    assert_eq!(
        fx.store.sqlite().unwrap().message_meta(inbox.id).unwrap().len(),
        before + 4
    );
    // (Bodies under SPOOL_IN_MEMORY never make the directory.)
    let uploads = fx._dir.path().join("blobs/spool");
    assert_eq!(
        std::fs::read_dir(&uploads).map_or(0, |d| d.count()),
        0,
        "left in {uploads:?}"
    );
}

/// Removes the body file of an INBOX message under the store, as a disk
/// fault or an operator's mistake would.
fn remove_blob(d: &Driver<'_>, uid: postroom_store::Uid) {
    let inbox = d.folder("INBOX").unwrap();
    let row =
        d.fx.store
            .sqlite()
            .unwrap()
            .message(inbox.id, uid)
            .unwrap()
            .unwrap();
    let mut dirs = vec![d.fx._dir.path().join("blobs")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else if e.file_name().to_string_lossy() == row.blob_id {
                std::fs::remove_file(e.path()).unwrap();
                return;
            }
        }
    }
    panic!("no blob {}", row.blob_id);
}

/// Issue #9: a message whose body cannot be read was answered
/// `NO [SERVERBUG]` by FETCH and taken for "no match" by SEARCH (an OK
/// with fewer hits). A failed store read is `NO [UNAVAILABLE]` (RFC 9051
/// 7.1), never an empty or cut body, never a wrong answer.
#[test]
fn unreadable_message_is_unavailable_not_empty() {
    let fx = Fixture::new();
    let mut d = logged_in(&fx);
    d.send(b"S1 SELECT INBOX\r\n").unwrap();
    // Each message of the fixture has its own body; the second's is gone.
    let uid =
        d.fx.store
            .sqlite()
            .unwrap()
            .message_meta(d.folder("INBOX").unwrap().id)
            .unwrap()[1]
            .uid;
    remove_blob(&d, uid);
    let one = answer(&mut d, "F1 FETCH 2 BODY.PEEK[]");
    assert!(one.starts_with("F1 NO [UNAVAILABLE]"), "{one}");
    let all = answer(&mut d, "F2 FETCH 1:3 (BODY.PEEK[] FLAGS)");
    assert!(all.starts_with("* 1 FETCH ("), "{all}");
    assert!(!all.contains("* 2 FETCH"), "{all}");
    assert!(
        all.lines().last().unwrap().starts_with("F2 NO [UNAVAILABLE]"),
        "{all}"
    );
    let search = answer(&mut d, "F3 SEARCH BODY zzz-not-there");
    assert!(search.starts_with("F3 NO [UNAVAILABLE]"), "{search}");
    // The other messages still answer.
    let ok = answer(&mut d, "F4 FETCH 1 BODY.PEEK[]");
    assert!(ok.lines().last().unwrap().starts_with("F4 OK"), "{ok}");
}

// ---------------------------------------------------------------------------
// Conformance gaps found with an independent IMAP conformance suite (issue
// #9). Each test failed before its fix.

/// The tagged line of a command's answer.
fn tagged_line(text: &str, tag: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(&format!("{tag} ")))
        .unwrap_or_else(|| panic!("no {tag} line in {text}"))
        .to_string()
}

/// RFC 7162 3.1: FETCH (MODSEQ), FETCH (CHANGEDSINCE), SEARCH MODSEQ,
/// STORE (UNCHANGEDSINCE) and STATUS (HIGHESTMODSEQ) enable CONDSTORE as
/// SELECT (CONDSTORE) does: the first one's tagged OK carries
/// [HIGHESTMODSEQ], and from then on every FETCH a STORE or another
/// session causes has UID and MODSEQ.
#[test]
fn condstore_enabled_by_a_command_other_than_select() {
    let fx = Fixture::new();
    for enabling in [
        "E1 FETCH 1 (MODSEQ)",
        "E1 FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
        "E1 SEARCH MODSEQ 1",
        "E1 STORE 2 (UNCHANGEDSINCE 18446744073709551615) +FLAGS.SILENT (x)",
        "E1 STATUS INBOX (HIGHESTMODSEQ)",
    ] {
        let mut d = logged_in(&fx);
        d.send(b"S1 SELECT INBOX\r\n").unwrap();
        let first = answer(&mut d, enabling);
        let ok = tagged_line(&first, "E1");
        assert!(ok.starts_with("E1 OK [HIGHESTMODSEQ "), "{enabling}: {first}");
        // Only the first enabling command says so.
        let again = answer(&mut d, "E2 FETCH 1 (MODSEQ)");
        assert!(
            !tagged_line(&again, "E2").contains("HIGHESTMODSEQ"),
            "{enabling}: {again}"
        );
        let store = answer(&mut d, "T1 STORE 1 +FLAGS (\\Flagged)");
        assert!(
            store.starts_with("* 1 FETCH (UID ") && store.contains(" MODSEQ ("),
            "{enabling}: {store}"
        );
        // A change made elsewhere.
        let inbox = d.folder("INBOX").unwrap();
        let uid = fx.store.sqlite().unwrap().message_meta(inbox.id).unwrap()[0].uid;
        fx.store
            .sqlite()
            .unwrap()
            .store_flags(inbox.id, &[uid], FlagOp::Remove, 4, &[], None)
            .unwrap();
        let noop = answer(&mut d, "N1 NOOP");
        assert!(
            noop.starts_with("* 1 FETCH (UID ") && noop.contains(" MODSEQ ("),
            "{enabling}: {noop}"
        );
    }
    // ENABLE CONDSTORE with a mailbox selected announces the mailbox's
    // HIGHESTMODSEQ.
    let mut d = logged_in(&fx);
    d.send(b"S1 SELECT INBOX\r\n").unwrap();
    let enable = answer(&mut d, "E1 ENABLE CONDSTORE");
    assert!(enable.contains("* OK [HIGHESTMODSEQ "), "{enable}");
}

/// RFC 7162 3.1.5: `MODSEQ "/flags/\\seen" all 5` (an entry name and
/// type) was refused with BAD; the entry may be ignored, the message's
/// MODSEQ used.
#[test]
fn search_modseq_with_an_entry_name() {
    let fx = Fixture::new();
    let mut d = logged_in(&fx);
    d.send(b"S1 SELECT INBOX (CONDSTORE)\r\n").unwrap();
    let plain = answer(&mut d, "A1 SEARCH MODSEQ 1");
    for entry in [
        "A2 SEARCH MODSEQ \"/flags/\\\\seen\" all 1",
        "A2 SEARCH MODSEQ \"/flags/$Junk\" shared 1",
        "A2 SEARCH MODSEQ \"/flags/\\\\draft\" priv 1",
    ] {
        let got = answer(&mut d, entry);
        assert!(tagged_line(&got, "A2").starts_with("A2 OK"), "{entry}: {got}");
        assert_eq!(got.lines().next(), plain.lines().next(), "{entry}");
    }
}

/// RFC 5258 3: `LIST "" (p1 p2)` lists what any pattern matches (it was
/// BAD), and `LIST (options) "" ""` answers the delimiter (it closed the
/// connection).
#[test]
fn list_with_several_patterns_and_options_with_an_empty_pattern() {
    let fx = Fixture::new();
    let mut d = logged_in(&fx);
    let both = answer(&mut d, "L1 LIST \"\" (INBOX Sent)");
    assert!(tagged_line(&both, "L1").starts_with("L1 OK"), "{both}");
    assert!(
        both.contains(" INBOX\r\n") && both.contains(" Sent\r\n"),
        "{both}"
    );
    assert!(!both.contains("Archive"), "{both}");
    let quoted = answer(
        &mut d,
        "L2 LIST (SUBSCRIBED) \"\" (\"Se*\" \"INB%\") RETURN (CHILDREN)",
    );
    assert!(tagged_line(&quoted, "L2").starts_with("L2 OK"), "{quoted}");
    assert!(
        quoted.contains(" Sent\r\n") && quoted.contains(" INBOX\r\n"),
        "{quoted}"
    );
    assert!(!quoted.contains("Archive"), "{quoted}");
    let root = answer(&mut d, "L3 LIST () \"\" \"\"");
    assert!(root.starts_with("* LIST (\\Noselect) \"/\" \"\"\r\n"), "{root}");
    assert!(tagged_line(&root, "L3").starts_with("L3 OK"), "{root}");
    let root = answer(&mut d, "L4 LIST (SUBSCRIBED) \"\" \"\" RETURN (CHILDREN)");
    assert!(tagged_line(&root, "L4").starts_with("L4 OK"), "{root}");
    assert!(!d.closed);
    let noop = answer(&mut d, "N1 NOOP");
    assert!(noop.starts_with("N1 OK"), "{noop}");
}

/// COPY or MOVE into the selected mailbox itself adds messages to it: the
/// session announces them (EXISTS) before the tagged OK, as for APPEND.
#[test]
fn copy_and_move_into_the_selected_mailbox_announce_exists() {
    let fx = Fixture::new();
    let mut d = logged_in(&fx);
    let select = answer(&mut d, "S1 SELECT INBOX");
    let n: usize = select
        .lines()
        .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
        .unwrap();
    let copy = answer(&mut d, "C1 COPY 1 INBOX");
    assert!(copy.contains(&format!("* {} EXISTS\r\n", n + 1)), "{copy}");
    let exists = copy.find(" EXISTS").unwrap();
    assert!(exists < copy.find("C1 OK").unwrap(), "{copy}");
    let moved = answer(&mut d, "M1 MOVE 2 INBOX");
    assert!(moved.contains(&format!("* {} EXISTS\r\n", n + 2)), "{moved}");
    assert!(moved.contains("* 2 EXPUNGE\r\n"), "{moved}");
    assert!(tagged_line(&moved, "M1").starts_with("M1 OK"), "{moved}");
    // The numbers agree with the store.
    let all = answer(&mut d, "F1 FETCH 1:* (UID)");
    assert_eq!(all.matches(" FETCH (").count(), n + 1, "{all}");
}

/// RFC 3501 / RFC 9051 6.4.4: FROM, TO, CC and BCC are substring
/// matches on the field as a reader sees it, the address included: a
/// quoted local part (`"user-from"@domain.org`), white space around `@`,
/// a name given as a comment (`user-from@domain.org (User From)`) or RFC
/// 2047 encoded inside quotes was missed by the address, or by `Name
/// <address>`.
#[test]
fn search_address_fields_match_names_and_addresses() {
    let fx = Fixture::new();
    let mut d = logged_in(&fx);
    let froms = [
        "\"user-from\"@domain.org",
        "user-from@domain.org (User From)",
        "User From <user-from @ domain.org>",
        "\"=?UTF-8?Q?User_From?=\" <user-from@domain.org>",
        "=?UTF-8?Q?User?= =?UTF-8?Q?_From?= <user-from@domain.org>",
        "Someone Else <other@domain.org>",
    ];
    answer(&mut d, "C1 CREATE Senders");
    for (i, f) in froms.iter().enumerate() {
        let msg = format!("From: {f}\r\nTo: \"Team, The\" <team@domain.org>\r\nCc: \"cc\"@domain.org\r\nSubject: s{i}\r\n\r\nbody\r\n");
        let got = answer(&mut d, &format!("A1 APPEND Senders {{{}+}}\r\n{msg}", msg.len()));
        assert!(got.contains("A1 OK"), "{got}");
    }
    answer(&mut d, "S1 SELECT Senders");
    for (key, want) in [
        ("FROM user-from@domain.org", "* SEARCH 1 2 3 4 5\r\n"),
        (
            "FROM \"User From <user-from@domain.org>\"",
            "* SEARCH 2 3 4 5\r\n",
        ),
        ("FROM \"User From\"", "* SEARCH 2 3 4 5\r\n"),
        ("FROM other@domain.org", "* SEARCH 6\r\n"),
        ("TO \"Team, The <team@domain.org>\"", "* SEARCH 1 2 3 4 5 6\r\n"),
        ("CC cc@domain.org", "* SEARCH 1 2 3 4 5 6\r\n"),
        ("BCC cc@domain.org", "* SEARCH\r\n"),
        ("FROM nobody@domain.org", "* SEARCH\r\n"),
    ] {
        let got = answer(&mut d, &format!("A2 SEARCH {key}"));
        assert!(got.starts_with(want), "{key}: {got}");
    }
    // The fixture's own: a display name, an encoded one.
    d.send(b"S2 SELECT INBOX\r\n").unwrap();
    let got = answer(&mut d, "A3 SEARCH FROM alice@example.com");
    assert!(got.starts_with("* SEARCH 1\r\n"), "{got}");
    let name = "\u{c9}lod\u{ed}e <e@example.com>";
    let got = answer(
        &mut d,
        &format!("A4 SEARCH CHARSET UTF-8 FROM {{{}+}}\r\n{name}", name.len()),
    );
    assert!(got.starts_with("* SEARCH 2\r\n"), "{got}");
}

/// RFC 3501 2.3.2 and 7.3.2: an IMAP4rev1 session that sees new messages
/// first gets `* n RECENT` and `\Recent` on them; an IMAP4rev2 session
/// (ENABLE IMAP4rev2) gets neither (RFC 9051 appendix E).
#[test]
fn recent_for_imap4rev1_sessions() {
    let fx = Fixture::new();
    let mut d = logged_in(&fx);
    // The fixture's messages were put there before any session looked.
    let select = answer(&mut d, "S1 SELECT INBOX");
    let n: usize = select
        .lines()
        .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
        .unwrap();
    assert!(select.contains(&format!("* {n} RECENT\r\n")), "{select}");
    let flags = answer(&mut d, "F1 FETCH 1 (FLAGS)");
    assert!(flags.contains("\\Recent"), "{flags}");
    // A second session does not see them as recent any more.
    let mut e = logged_in_as(&fx, d.account.clone());
    let select = answer(&mut e, "S1 SELECT INBOX");
    assert!(select.contains("* 0 RECENT\r\n"), "{select}");
    // A message delivered meanwhile is recent to the first that sees it.
    let inbox = d.folder("INBOX").unwrap();
    wait(
        fx.store
            .meta()
            .copy_messages(fx.template.id, &fx.template_uids[..1], inbox.id),
    )
    .unwrap();
    let noop = answer(&mut d, "N1 NOOP");
    assert!(
        noop.contains(&format!("* {} EXISTS\r\n* {} RECENT\r\n", n + 1, n + 1)),
        "{noop}"
    );
    let flags = answer(&mut d, &format!("F2 FETCH {} (FLAGS)", n + 1));
    assert!(flags.contains("\\Recent"), "{flags}");
    let status = answer(&mut e, "T1 STATUS INBOX (RECENT)");
    assert!(status.contains("(RECENT 0)"), "{status}");
    // IMAP4rev2: no RECENT, no \Recent, and nothing claimed: an
    // IMAP4rev1 session after it still gets them.
    let fresh = fx.account(None);
    let mut r = logged_in_as(&fx, fresh.clone());
    answer(&mut r, "E1 ENABLE IMAP4rev2");
    let select = answer(&mut r, "S1 SELECT INBOX");
    assert!(!select.contains("RECENT"), "{select}");
    let flags = answer(&mut r, "F1 FETCH 1:* (FLAGS)");
    assert!(!flags.contains("\\Recent"), "{flags}");
    // EXAMINE shows them as \Recent without claiming them (RFC 3501
    // 6.3.2), also those that arrive while it is open.
    let mut x = logged_in_as(&fx, fresh.clone());
    let examine = answer(&mut x, "S1 EXAMINE INBOX");
    assert!(examine.contains(&format!("* {n} RECENT\r\n")), "{examine}");
    let flags = answer(&mut x, "F1 FETCH 1 (FLAGS)");
    assert!(flags.contains("\\Recent"), "{flags}");
    let inbox = x.folder("INBOX").unwrap();
    wait(
        fx.store
            .meta()
            .copy_messages(fx.template.id, &fx.template_uids[..1], inbox.id),
    )
    .unwrap();
    let noop = answer(&mut x, "N1 NOOP");
    assert!(noop.contains(&format!("* {} RECENT\r\n", n + 1)), "{noop}");
    let mut y = logged_in_as(&fx, fresh);
    let select = answer(&mut y, "S1 SELECT INBOX");
    assert!(select.contains(&format!("* {} RECENT\r\n", n + 1)), "{select}");
}

/// RFC 3501 6.3.9: LSUB `%` answers a subscribed folder's unsubscribed
/// (or missing) parent as `\Noselect`, and LSUB has no \HasChildren or
/// \HasNoChildren (LIST's attributes, RFC 3348).
#[test]
fn lsub_answers_parents_noselect_without_children_attributes() {
    let fx = Fixture::new();
    let mut d = logged_in(&fx);
    answer(&mut d, "C1 CREATE Work/Sub");
    answer(&mut d, "U1 SUBSCRIBE Work/Sub");
    answer(&mut d, "U2 UNSUBSCRIBE Work");
    let top = answer(&mut d, "L1 LSUB \"\" %");
    assert!(top.contains("* LSUB (\\Noselect) \"/\" Work\r\n"), "{top}");
    assert!(top.contains("* LSUB () \"/\" Sent\r\n"), "{top}");
    assert!(!top.contains("Children"), "{top}");
    let all = answer(&mut d, "L2 LSUB \"\" *");
    assert!(all.contains("* LSUB () \"/\" Work/Sub\r\n"), "{all}");
    assert!(!all.contains(" Work\r\n"), "{all}");
    assert!(!all.contains("Children"), "{all}");
}

/// The sans-IO seam (`postroom_imap::storage`): GETQUOTA and GETQUOTAROOT
/// ask the store through `Action::Query`, `poll` is quiet until the
/// answer, and a failed answer is `NO [UNAVAILABLE]` (issue #9) — no
/// fault-injecting store needed to see it.
#[test]
fn quota_is_asked_of_the_store_and_a_failure_is_unavailable() {
    use postroom_imap::storage::{Answer, Query};
    let fx = Fixture::new();
    let account = fx.account(Some(1 << 20));
    let cfg = SessionConfig {
        hostname: "imap.example".into(),
        starttls: false,
        login_allowed: true,
        max_append: 1 << 20,
        max_errors: 1000,
    };
    let mut s = Session::new(cfg, false);
    s.receive(format!("L1 LOGIN {} {PASSWORD}\r\n", account.address).as_bytes());
    assert!(matches!(s.poll(), Some(Action::Authenticate { .. })));
    s.login_result(Ok((account.id, account.address.clone())));
    assert!(matches!(s.poll(), Some(Action::Send(_))));
    let text = |s: &mut Session| {
        let mut out = Vec::new();
        while let Some(a) = s.poll() {
            match a {
                Action::Send(b) => out.extend_from_slice(&b),
                other => panic!("{other:?}"),
            }
        }
        String::from_utf8(out).unwrap()
    };
    s.receive(b"Q1 GETQUOTAROOT INBOX\r\nQ2 NOOP\r\n");
    let Some(Action::Query(q)) = s.poll() else {
        panic!("no query");
    };
    assert!(
        matches!(&q, Query::Quota { account_id, folder: Some(f) } if *account_id == account.id && f == "INBOX"),
        "{q:?}"
    );
    assert!(s.poll().is_none(), "poll went on before the answer");
    s.answered(Err(postroom_store::StoreError::Unavailable));
    let got = text(&mut s);
    assert!(got.starts_with("Q1 NO [UNAVAILABLE] "), "{got}");
    assert!(got.contains("Q2 OK"), "{got}");
    // The answer, formatted: usage rounded up to KiB.
    s.receive(b"Q3 GETQUOTA \"\"\r\n");
    assert!(matches!(
        s.poll(),
        Some(Action::Query(Query::Quota { folder: None, .. }))
    ));
    s.answered(Ok(Answer::Quota {
        folder_exists: true,
        quota: Some((1025, 1 << 20)),
    }));
    assert_eq!(
        text(&mut s),
        "* QUOTA \"\" (STORAGE 2 1024)\r\nQ3 OK GETQUOTA completed\r\n"
    );
    // And over the real store (the glue's `storage::ask`).
    let mut d = logged_in_as(&fx, account);
    let got = answer(&mut d, "Q4 GETQUOTAROOT INBOX");
    assert!(
        got.starts_with("* QUOTAROOT INBOX \"\"\r\n* QUOTA \"\" (STORAGE "),
        "{got}"
    );
    let got = answer(&mut d, "Q5 GETQUOTAROOT Nowhere");
    assert!(got.starts_with("Q5 NO [NONEXISTENT]"), "{got}");
}

/// The mailbox commands through the seam: a failed read of the folders
/// is `NO [UNAVAILABLE]`, not an empty LIST (issue #9), and so is a failed
/// CREATE, DELETE, RENAME or (UN)SUBSCRIBE; LIST-STATUS asks the folders,
/// then their STATUS.
#[test]
fn mailbox_commands_are_asked_of_the_store() {
    use postroom_imap::storage::{ask, Query};
    let run = |store, q| wait(ask(store, q));
    let fx = Fixture::new();
    let account = fx.account(None);
    let mut s = Session::new(
        SessionConfig {
            hostname: "imap.example".into(),
            starttls: false,
            login_allowed: true,
            max_append: 1 << 20,
            max_errors: 1000,
        },
        false,
    );
    s.receive(format!("L1 LOGIN {} {PASSWORD}\r\n", account.address).as_bytes());
    assert!(matches!(s.poll(), Some(Action::Authenticate { .. })));
    s.login_result(Ok((account.id, account.address.clone())));
    assert!(matches!(s.poll(), Some(Action::Send(_))));
    let sent = |s: &mut Session| {
        let mut out = Vec::new();
        while let Some(a) = s.poll() {
            match a {
                Action::Send(b) => out.extend_from_slice(&b),
                other => panic!("{other:?}"),
            }
        }
        String::from_utf8(out).unwrap()
    };
    for (cmd, name) in [
        ("A1 LIST \"\" *", "LIST"),
        ("A1 LSUB \"\" *", "LSUB"),
        ("A1 STATUS INBOX (MESSAGES)", "STATUS"),
        ("A1 CREATE New", "CREATE"),
        ("A1 DELETE Archive", "DELETE"),
        ("A1 RENAME Archive Old", "RENAME"),
        ("A1 SUBSCRIBE Archive", "SUBSCRIBE"),
        ("A1 UNSUBSCRIBE Archive", "UNSUBSCRIBE"),
        ("A1 SELECT INBOX", "SELECT"),
        ("A1 EXAMINE INBOX", "EXAMINE"),
        ("A1 APPEND INBOX {5+}\r\nhello", "APPEND"),
    ] {
        s.receive(format!("{cmd}\r\n").as_bytes());
        assert!(matches!(s.poll(), Some(Action::Query(_))), "{cmd}");
        assert!(s.poll().is_none());
        s.answered(Err(postroom_store::StoreError::Unavailable));
        let got = sent(&mut s);
        assert_eq!(
            got,
            format!("A1 NO [UNAVAILABLE] {name} failed, try again later\r\n")
        );
    }
    // LIST-STATUS: two questions, one answer.
    s.receive(b"A2 LIST \"\" INBOX RETURN (STATUS (MESSAGES))\r\n");
    let Some(Action::Query(q)) = s.poll() else {
        panic!()
    };
    assert!(
        matches!(&q, Query::Folders { account_id } if *account_id == account.id),
        "{q:?}"
    );
    s.answered(run(&fx.store, q));
    let Some(Action::Query(q)) = s.poll() else {
        panic!()
    };
    assert!(
        matches!(&q, Query::Status { account_id, names } if *account_id == account.id && names == &["INBOX"]),
        "{q:?}"
    );
    s.answered(run(&fx.store, q));
    let got = sent(&mut s);
    assert_eq!(
        got,
        format!(
            "* LIST (\\HasNoChildren) \"/\" INBOX\r\n* STATUS INBOX (MESSAGES {})\r\nA2 OK LIST completed\r\n",
            MESSAGES.len()
        )
    );
    // An answer that does not fit the question fails the command only.
    s.receive(b"A3 STATUS INBOX (MESSAGES)\r\nA4 NOOP\r\n");
    assert!(matches!(s.poll(), Some(Action::Query(Query::Status { .. }))));
    s.answered(Ok(postroom_imap::storage::Answer::Folders(Vec::new())));
    let got = sent(&mut s);
    assert!(
        got.starts_with("A3 NO [SERVERBUG]") && got.contains("A4 OK"),
        "{got}"
    );
}

/// Issue #9: the selected state's commands ask the store through
/// `Action::Query` as the others do (the session holds no store), a
/// question at a time: the refresh, then the command's own. A FETCH of
/// headers is one question for every target (answered from the header
/// cache), not one per message; whole messages are read
/// `BODIES_PER_QUERY` at a time, the ones before a failed read answered;
/// a failed question is `NO [UNAVAILABLE]`.
#[test]
fn selected_commands_are_asked_of_the_store() {
    use postroom_imap::session::BODIES_PER_QUERY;
    use postroom_imap::storage::{Glue, Query};
    let fx = Fixture::new();
    let account = fx.account(None);
    let inbox = fx
        .store
        .sqlite()
        .unwrap()
        .find_folder(account.id, "INBOX")
        .unwrap()
        .unwrap();
    for _ in 0..6 {
        wait(
            fx.store
                .meta()
                .copy_messages(fx.template.id, &fx.template_uids, inbox.id),
        )
        .unwrap();
    }
    let total = MESSAGES.len() * 7;
    assert!(total > BODIES_PER_QUERY && total < 2 * BODIES_PER_QUERY);
    let mut glue = Glue::new(fx.store.clone());
    let mut s = Session::new(
        SessionConfig {
            hostname: "imap.example".into(),
            starttls: false,
            login_allowed: true,
            max_append: 1 << 20,
            max_errors: 1000,
        },
        false,
    );
    // Sends a command; returns the questions asked (the `fail`-th failed)
    // and what was answered.
    let mut run = |s: &mut Session, line: &str, fail: Option<usize>| {
        s.receive(format!("{line}\r\n").as_bytes());
        let (mut asked, mut out) = (Vec::new(), Vec::new());
        while let Some(a) = s.poll() {
            match a {
                Action::Send(b) => out.extend_from_slice(&b),
                Action::Authenticate { .. } => s.login_result(Ok((account.id, account.address.clone()))),
                Action::Query(q) => {
                    assert!(s.poll().is_none(), "poll went on before the answer");
                    asked.push(match &q {
                        Query::Headers { uids, .. } => format!("Headers({})", uids.len()),
                        Query::Messages { uids, .. } => format!("Messages({})", uids.len()),
                        other => format!("{other:?}").split([' ', '{']).next().unwrap().to_string(),
                    });
                    if fail == Some(asked.len() - 1) {
                        s.answered(Err(postroom_store::StoreError::Unavailable));
                    } else {
                        s.answered(wait(glue.ask(q)));
                    }
                }
                Action::Upload(step) => glue.upload(step),
                other => panic!("{other:?}"),
            }
        }
        (asked, String::from_utf8_lossy(&out).into_owned())
    };
    run(&mut s, &format!("L1 LOGIN {} {PASSWORD}", account.address), None);
    let (asked, got) = run(&mut s, "S1 SELECT INBOX", None);
    assert_eq!(asked, ["Select"], "{got}");
    let fetches = |t: &str| t.lines().filter(|l| l.contains(" FETCH (")).count();

    let (asked, got) = run(&mut s, "F1 FETCH 1:* (UID ENVELOPE)", None);
    assert_eq!(asked, ["Refresh", &format!("Headers({total})")]);
    assert_eq!(fetches(&got), total, "{got}");
    assert!(got.ends_with("F1 OK FETCH completed\r\n"), "{got}");

    let rest = format!("Messages({})", total - BODIES_PER_QUERY);
    let first = format!("Messages({BODIES_PER_QUERY})");
    let (asked, got) = run(&mut s, "F2 FETCH 1:* (BODY.PEEK[])", None);
    assert_eq!(asked, ["Refresh", &first, &rest]);
    assert_eq!(fetches(&got), total);
    assert!(got.ends_with("F2 OK FETCH completed\r\n"), "{got}");
    let (asked, got) = run(&mut s, "F3 FETCH 1:* (BODY.PEEK[])", Some(2));
    assert_eq!(asked, ["Refresh", &first, &rest]);
    assert_eq!(fetches(&got), BODIES_PER_QUERY);
    assert!(
        got.ends_with("F3 NO [UNAVAILABLE] FETCH failed, try again later\r\n"),
        "{got}"
    );

    // FETCH setting \Seen: the flags first, then the bodies.
    let (asked, got) = run(&mut s, "F4 FETCH 2 (BODY[])", None);
    assert_eq!(asked, ["Refresh", "StoreFlags", "Messages(1)"], "{got}");
    assert!(got.contains("\\Seen"), "{got}");

    let (asked, got) = run(&mut s, "T1 SEARCH SUBJECT hello", None);
    assert_eq!(asked, ["Refresh", &format!("Headers({total})")], "{got}");
    let (asked, got) = run(&mut s, "T2 SEARCH BODY zzz-not-there", Some(1));
    assert_eq!(asked, ["Refresh", &first], "{got}");
    assert_eq!(got, "T2 NO [UNAVAILABLE] SEARCH failed, try again later\r\n");

    let (asked, got) = run(&mut s, "W1 STORE 1 +FLAGS (\\Flagged)", None);
    assert_eq!(asked, ["Refresh", "StoreFlags"], "{got}");
    assert!(got.ends_with("W1 OK STORE completed\r\n"), "{got}");
    let (asked, got) = run(&mut s, "C1 COPY 1 Archive", None);
    assert_eq!(asked, ["Refresh", "FindFolder", "Copy"], "{got}");
    assert!(got.contains("C1 OK [COPYUID "), "{got}");
    let (asked, got) = run(&mut s, "C2 COPY 1 Nowhere", None);
    assert_eq!(asked, ["Refresh", "FindFolder"], "{got}");
    assert!(got.ends_with("C2 NO [TRYCREATE] No such mailbox\r\n"), "{got}");
    let (asked, got) = run(&mut s, "M1 MOVE 1 Archive", Some(3));
    assert_eq!(asked, ["Refresh", "FindFolder", "Copy", "Expunge"], "{got}");
    assert!(got.starts_with("* OK [COPYUID "), "{got}");
    assert!(
        got.ends_with("M1 NO [UNAVAILABLE] MOVE failed, try again later\r\n"),
        "{got}"
    );
    let (asked, got) = run(&mut s, "M2 MOVE 1 Archive", None);
    assert_eq!(asked, ["Refresh", "FindFolder", "Copy", "Expunge"], "{got}");
    assert!(got.contains("* 1 EXPUNGE\r\nM2 OK MOVE completed"), "{got}");

    let (asked, got) = run(&mut s, "N1 NOOP", Some(0));
    assert_eq!(asked, ["Refresh"]);
    assert_eq!(got, "N1 NO [UNAVAILABLE] NOOP failed, try again later\r\n");
    let (asked, got) = run(&mut s, "E1 EXPUNGE", None);
    assert_eq!(asked, ["Expunge", "Refresh"], "{got}");
    assert!(got.ends_with("E1 OK EXPUNGE completed\r\n"), "{got}");
    let (asked, got) = run(&mut s, "X1 CLOSE", Some(0));
    assert_eq!(asked, ["Expunge"]);
    assert_eq!(got, "X1 NO [UNAVAILABLE] CLOSE failed, try again later\r\n");
    let (asked, got) = run(&mut s, "X2 CLOSE", None);
    assert_eq!(asked, ["Expunge"]);
    assert_eq!(got, "X2 OK CLOSE completed\r\n");
}
