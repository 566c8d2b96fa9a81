//! Property tests for the POP3 session: no input makes it panic, and every
//! reply is well-formed.
//!
//! The session is driven like the tokio glue drives it, its questions
//! answered from a fake maildrop (messages with dot lines, bare line ends,
//! NUL, no final line end, an empty one, one that vanishes). Every reply is
//! one status line (`+OK`, `-ERR`, or `+ ` for a SASL continuation) or a
//! `+OK` multi-line response whose first `CRLF . CRLF` is its end; `poll`
//! is quiet while a question is open; nothing follows `Close`; RETR gives
//! back the message exactly (after un-stuffing) and TOP a prefix of it;
//! without STLS the result does not depend on how the input is cut; and
//! with well-behaved commands each line gets exactly one answer.
//!
//! The runs are reproducible (fixed seed, see [`config`]);
//! `PROPTEST_CASES=N` and `PROPTEST_RNG_SEED=S` override case count and seed.

use postroom_pop3::session::LoginFailure;
use postroom_pop3::{Action, MaildropEntry, Session, SessionConfig};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{RngAlgorithm, RngSeed};

const SEED: u64 = 0x0050_4f50_3372_6663; // "POP3rfc"

/// A deterministic configuration: ChaCha with a fixed seed, no failure
/// files written into the source tree.
fn config(cases: u32) -> ProptestConfig {
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
        max_shrink_iters: 4096,
        ..env
    }
}

// ---------------------------------------------------------------------------
// The fake maildrop

const USER: &str = "user@example.com";
const PASSWORD: &str = "secret";

/// (uid, UIDL, message). UID 13 has vanished when it is retrieved.
const MESSAGES: &[(i64, &str, &[u8])] = &[
    (
        1,
        "0000000100000001",
        b"From: a@example.com\r\nSubject: one\r\n\r\n.dot first\r\n..two dots\r\n.\r\nlast\r\n",
    ),
    (2, "0000000100000002", b"Subject: bare\n\nline\n.\n.x\nend"),
    (5, "0000000100000005", b""),
    (
        7,
        "0000000100000007",
        b"Subject: nul\r\n\r\n\x00\r\n\r.\r\n\r\n.\r",
    ),
    (13, "0000000100000013", b"Subject: gone\r\n\r\nbody\r\n"),
    (21, "0000000100000021", b"no header at all, no line end ."),
    (
        34,
        "0000000100000034",
        b"Subject: long\r\n\r\n1\r\n2\r\n3\r\n4\r\n5\r\n6\r\n7\r\n8\r\n9\r\n10\r\n",
    ),
];

fn maildrop() -> Vec<MaildropEntry> {
    MESSAGES
        .iter()
        .map(|(uid, uidl, m)| MaildropEntry {
            uid: *uid,
            size: m.len() as u64,
            uidl: uidl.to_string(),
        })
        .collect()
}

fn message(uid: i64) -> Option<&'static [u8]> {
    MESSAGES
        .iter()
        .find(|(u, _, _)| *u == uid && *u != 13)
        .map(|(_, _, m)| *m)
}

// ---------------------------------------------------------------------------
// Reply syntax

/// Checks one send: a single status line, or a `+OK` multi-line response
/// ended by its first `CRLF . CRLF`. Returns whether it was multi-line.
fn check_reply(bytes: &[u8]) -> Result<bool, String> {
    let show = || String::from_utf8_lossy(bytes).into_owned();
    let Some(first_end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return Err(format!("reply without CRLF: {:?}", show()));
    };
    let first = &bytes[..first_end];
    if first.contains(&b'\r') || first.contains(&b'\n') || first.contains(&0) {
        return Err(format!("bare CR, LF or NUL in the status line: {:?}", show()));
    }
    let ok = first == b"+OK" || first.starts_with(b"+OK ");
    let err = first == b"-ERR" || first.starts_with(b"-ERR ");
    let cont = first.starts_with(b"+ ");
    if !(ok || err || cont) {
        return Err(format!("reply without +OK, -ERR or +: {:?}", show()));
    }
    let body = &bytes[first_end + 2..];
    if body.is_empty() {
        return Ok(false);
    }
    if !ok {
        return Err(format!("more than one line after {:?}: {:?}", first, show()));
    }
    // The first CRLF . CRLF (the status line's CRLF counts) is the end.
    let padded = &bytes[first_end..];
    let end = padded
        .windows(5)
        .position(|w| w == b"\r\n.\r\n")
        .ok_or_else(|| format!("multi-line reply without its end: {:?}", show()))?;
    if end + 5 != padded.len() {
        return Err(format!("a multi-line reply ends early: {:?}", show()));
    }
    Ok(true)
}

/// What a client gets from a multi-line response: the lines after the
/// status line, up to the end marker, dot-unstuffed (lines cut after LF,
/// as the server stuffs them).
fn unstuff(bytes: &[u8]) -> Vec<u8> {
    let first_end = bytes.windows(2).position(|w| w == b"\r\n").unwrap();
    let body = &bytes[first_end + 2..bytes.len() - 3];
    let mut out = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

// ---------------------------------------------------------------------------
// The driver

/// Drives a session like the tokio glue does, checking the contract on the
/// way.
struct Driver {
    s: Session,
    /// Everything the session did, in order, for comparisons.
    log: Vec<String>,
    /// Status replies (+OK, -ERR, +), in order.
    replies: usize,
    closed: bool,
    /// The message of the RETR or TOP being answered (uid, top).
    retrieving: Option<(i64, Option<u64>)>,
    commit_ok: bool,
    /// Answers to the next right logins: 0 yes, 1 failed, 2 refused, 3
    /// unavailable (then yes).
    login_answers: Vec<u8>,
}

impl Driver {
    fn new(cfg: SessionConfig, tls: bool) -> Self {
        let s = Session::new(cfg, tls);
        assert!(check_reply(&s.greeting()).is_ok());
        Driver {
            s,
            log: Vec::new(),
            replies: 0,
            closed: false,
            retrieving: None,
            commit_ok: true,
            login_answers: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), TestCaseError> {
        self.s.receive(bytes);
        while let Some(action) = self.s.poll() {
            prop_assert!(!self.closed, "action after Close: {:?}", action);
            match action {
                Action::Send(bytes) => {
                    let multi = check_reply(&bytes).map_err(TestCaseError::fail)?;
                    self.replies += 1;
                    if let Some((uid, top)) = self.retrieving.take() {
                        if bytes.starts_with(b"+OK") {
                            prop_assert!(multi, "RETR/TOP answered with one line: {:?}", bytes);
                            self.check_message(&bytes, uid, top)?;
                        }
                    }
                    self.log
                        .push(format!("send {:?}", String::from_utf8_lossy(&bytes)));
                }
                Action::Authenticate { user, password } => {
                    prop_assert!(self.s.poll().is_none(), "poll went on before the login result");
                    self.log.push(format!("auth {user:?}"));
                    let right = user == USER && password.expose() == PASSWORD;
                    let code = if !right {
                        1
                    } else if self.login_answers.is_empty() {
                        0
                    } else {
                        self.login_answers.remove(0)
                    };
                    let answer = match code {
                        0 => Ok(()),
                        1 => Err(LoginFailure::Failed),
                        2 => Err(LoginFailure::Refused),
                        _ => Err(LoginFailure::Unavailable),
                    };
                    self.s.login_result(answer);
                }
                Action::LoadMaildrop => {
                    prop_assert!(self.s.poll().is_none(), "poll went on before the maildrop");
                    self.log.push("load".into());
                    self.s.maildrop_loaded(Some(maildrop()));
                }
                Action::Retrieve { uid, top } => {
                    prop_assert!(self.s.poll().is_none(), "poll went on before the message");
                    self.log.push(format!("retrieve {uid} {top:?}"));
                    self.retrieving = Some((uid, top));
                    self.s.message(message(uid));
                }
                Action::Commit { deleted } => {
                    prop_assert!(self.s.poll().is_none(), "poll went on before the commit");
                    prop_assert!(!deleted.is_empty());
                    self.log.push(format!("commit {deleted:?}"));
                    self.s.committed(self.commit_ok);
                }
                Action::StartTls => {
                    prop_assert!(self.s.poll().is_none(), "poll went on before TLS");
                    self.log.push("stls".into());
                    self.s.tls_established();
                }
                Action::Delay(_) => self.log.push("delay".into()),
                Action::Close => {
                    self.log.push("close".into());
                    self.closed = true;
                    prop_assert!(self.s.is_closed());
                }
            }
        }
        Ok(())
    }

    /// RETR gives the message back exactly (a CRLF added when it does not
    /// end with one, nothing for an empty one); TOP a prefix of that.
    fn check_message(&self, bytes: &[u8], uid: i64, top: Option<u64>) -> Result<(), TestCaseError> {
        let m = message(uid).unwrap_or_default();
        let mut full = m.to_vec();
        if !full.is_empty() && !full.ends_with(b"\r\n") {
            full.extend_from_slice(b"\r\n");
        }
        let got = unstuff(bytes);
        match top {
            None => prop_assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&full),
                "RETR {} changed the message",
                uid
            ),
            Some(_) => {
                let prefix = got.strip_suffix(b"\r\n").unwrap_or(&got);
                prop_assert!(
                    full.starts_with(prefix),
                    "TOP {:?} of {} is not a prefix: {:?}",
                    top,
                    uid,
                    String::from_utf8_lossy(&got)
                );
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Input

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

const SPECIAL: &[u8] = b"\r\n. +-*=/0123456789\x00\x7f\x80\xc3\xa9\xff";

fn soup(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        any::<u16>().prop_map(|v| {
            let b = v as u8;
            match (v >> 8) % 3 {
                0 => SPECIAL[b as usize % SPECIAL.len()],
                1 => b'A' + b % 26,
                _ => b,
            }
        }),
        0..max,
    )
}

fn plain(authz: &str, user: &str, pass: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{authz}\0{user}\0{pass}"))
}

fn number() -> BoxedStrategy<String> {
    prop_oneof![
        6 => (1..9u32).prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "0", "-1", "+1", " 1", "1 2", "99999999999999999999", "18446744073709551616", "１", "", "x", "1.0",
        ])
        .prop_map(String::from),
    ]
    .boxed()
}

/// A command line without its line end. `valid`: what a well-behaved
/// client might send (short lines; no STLS).
fn command(valid: bool) -> BoxedStrategy<String> {
    let mut v: Vec<(u32, BoxedStrategy<String>)> = vec![
        (
            6,
            prop::sample::select(vec![
                "STAT", "LIST", "UIDL", "NOOP", "RSET", "CAPA", "AUTH", "stat", "list",
            ])
            .prop_map(String::from)
            .boxed(),
        ),
        (
            8,
            (
                prop::sample::select(vec!["LIST", "UIDL", "RETR", "DELE", "retr"]),
                number(),
            )
                .prop_map(|(c, n)| format!("{c} {n}"))
                .boxed(),
        ),
        (
            3,
            (
                number(),
                prop_oneof![(0..5u64).prop_map(|n| n.to_string()), number()],
            )
                .prop_map(|(n, l)| format!("TOP {n} {l}"))
                .boxed(),
        ),
        (
            2,
            prop::sample::select(vec![
                format!("USER {USER}"),
                format!("PASS {PASSWORD}"),
                "PASS wrong".into(),
                "USER".into(),
                "APOP user digest".into(),
                format!("AUTH PLAIN {}", plain("", USER, PASSWORD)),
                format!("AUTH PLAIN {}", plain("someone", USER, PASSWORD)),
                "AUTH PLAIN !!!".into(),
                "AUTH PLAIN *".into(),
                "AUTH LOGIN".into(),
                format!("AUTH PLAIN\r\n{}", plain(USER, USER, PASSWORD)),
                "AUTH PLAIN\r\n*".into(),
                "AUTH PLAIN\r\nAAAA".into(),
                "XTND XLST".into(),
                "".into(),
            ])
            .boxed(),
        ),
        (1, Just("QUIT".to_string()).boxed()),
    ];
    if !valid {
        v.extend([
            (1, Just("STLS".to_string()).boxed()),
            (
                3,
                soup(40)
                    .prop_map(|b| String::from_utf8_lossy(&b).replace(['\r', '\n'], " "))
                    .boxed(),
            ),
            (1, (2040..2060usize).prop_map(|n| "N".repeat(n)).boxed()),
        ]);
    }
    prop::strategy::Union::new_weighted(v).boxed()
}

fn line_end(valid: bool) -> BoxedStrategy<&'static str> {
    if valid {
        Just("\r\n").boxed()
    } else {
        prop_oneof![8 => Just("\r\n"), 2 => Just("\n"), 1 => Just("\r"), 1 => Just("")].boxed()
    }
}

/// A session: maybe logged in first, then commands. Returns the stream and
/// the number of lines in it.
fn stream(valid: bool) -> BoxedStrategy<(Vec<u8>, usize)> {
    (
        prop_oneof![
            3 => Just(format!("USER {USER}\r\nPASS {PASSWORD}\r\n")),
            1 => Just(format!("AUTH PLAIN {}\r\n", plain("", USER, PASSWORD))),
            1 => Just(String::new()),
        ],
        prop::collection::vec((command(valid), line_end(valid)), 0..30),
    )
        .prop_map(|(login, cmds)| {
            let mut s = login.into_bytes();
            for (c, end) in cmds {
                s.extend_from_slice(c.as_bytes());
                s.extend_from_slice(end.as_bytes());
            }
            let lines = s.iter().filter(|&&b| b == b'\n').count();
            (s, lines)
        })
        .boxed()
}

fn session_config() -> impl Strategy<Value = SessionConfig> {
    (
        any::<bool>(),
        prop::bool::weighted(0.9),
        prop_oneof![3 => Just(2048usize), 1 => 0..100usize],
        prop_oneof![3 => Just(20u32), 1 => 0..6u32],
    )
        .prop_map(
            |(starttls, login_allowed, max_line_length, max_errors)| SessionConfig {
                hostname: "pop.example".into(),
                starttls,
                login_allowed,
                max_line_length,
                max_errors,
            },
        )
}

fn run(cfg: SessionConfig, input: &[u8], cuts: &[Index], commit_ok: bool) -> Result<Driver, TestCaseError> {
    let mut d = Driver::new(cfg, false);
    d.commit_ok = commit_ok;
    for piece in pieces(input, cuts) {
        d.send(piece)?;
    }
    if d.closed {
        // Once closed, more input does nothing.
        let before = d.log.len();
        d.send(b"NOOP\r\n")?;
        prop_assert_eq!(d.log.len(), before);
    }
    Ok(d)
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn arbitrary_bytes_never_panic(
        cfg in session_config(),
        login in any::<bool>(),
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        cuts in cuts(),
    ) {
        let mut input = if login { format!("USER {USER}\r\nPASS {PASSWORD}\r\n").into_bytes() } else { Vec::new() };
        input.extend(bytes);
        run(cfg, &input, &cuts, true)?;
    }

    #[test]
    fn pop3_shaped_input_gives_well_formed_replies(
        cfg in session_config(),
        (input, _) in stream(false),
        cuts in cuts(),
        commit_ok in any::<bool>(),
        failures in prop::collection::vec(0..4u8, 0..3),
    ) {
        let mut d = Driver::new(cfg.clone(), false);
        d.commit_ok = commit_ok;
        d.login_answers = failures;
        for piece in pieces(&input, &cuts) {
            d.send(piece)?;
        }
    }

    #[test]
    fn every_line_gets_one_answer(
        (input, lines) in stream(true),
        cuts in cuts(),
    ) {
        let cfg = SessionConfig { max_errors: 1000, ..SessionConfig::default() };
        let d = run(cfg, &input, &cuts, true)?;
        if !d.closed {
            prop_assert_eq!(d.replies, lines, "{:#?}", d.log);
        } else {
            prop_assert!(d.replies <= lines, "{:#?}", d.log);
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn the_result_does_not_depend_on_how_input_is_cut(
        cfg in session_config(),
        (input, _) in stream(false),
        cuts in cuts(),
    ) {
        // STLS discards pipelined input, which by design depends on what
        // has arrived when it is processed.
        let cfg = SessionConfig { starttls: false, ..cfg };
        let whole = run(cfg.clone(), &input, &[], true)?;
        let split = run(cfg.clone(), &input, &cuts, true)?;
        prop_assert_eq!(&split.log, &whole.log);
        let mut bytes = Driver::new(cfg, false);
        for b in &input {
            bytes.send(std::slice::from_ref(b))?;
        }
        prop_assert_eq!(&bytes.log, &whole.log);
    }
}

/// Every message, whole and with TOP 0..3, through a logged-in session.
#[test]
fn retr_and_top_give_back_the_messages() {
    let mut d = Driver::new(SessionConfig::default(), true);
    d.send(format!("USER {USER}\r\nPASS {PASSWORD}\r\n").as_bytes())
        .unwrap();
    for n in 1..=MESSAGES.len() {
        d.send(format!("RETR {n}\r\n").as_bytes()).unwrap();
        for lines in 0..4 {
            d.send(format!("TOP {n} {lines}\r\n").as_bytes()).unwrap();
        }
    }
    // The vanished one answers -ERR; the others +OK.
    let errs = d.log.iter().filter(|l| l.starts_with("send \"-ERR")).count();
    assert_eq!(errs, 5, "{:#?}", d.log);
}

#[test]
fn check_reply_accepts_and_refuses() {
    for good in [
        &b"+OK\r\n"[..],
        b"+OK 2 320\r\n",
        b"-ERR no\r\n",
        b"+ \r\n",
        b"+OK\r\n.\r\n",
        b"+OK list\r\n1 2\r\n.\r\n",
        b"+OK\r\n..x\r\n.\r\n",
    ] {
        assert!(check_reply(good).is_ok(), "refused {good:?}");
    }
    for bad in [
        &b"+OK"[..],
        b"OK\r\n",
        b"-ERR a\nb\r\n",
        b"-ERR x\r\nmore\r\n.\r\n",
        b"+OK\r\n.\r\nmore\r\n.\r\n",
        b"+OK\r\nno end\r\n",
        b"+OK\0\r\n",
    ] {
        assert!(check_reply(bad).is_err(), "accepted {bad:?}");
    }
    assert_eq!(unstuff(b"+OK\r\n..a\r\nb\r\n.\r\n"), b".a\r\nb\r\n");
}
