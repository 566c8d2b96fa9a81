//! Property tests for the SMTP parsers: no input makes them panic, the
//! decoders give the same result however their input is split, dot-stuffing
//! round-trips, only `<CRLF>.<CRLF>` ends DATA, and every reply the session
//! sends is a well-formed SMTP reply.
//!
//! The runs are reproducible: every property uses a fixed seed (see
//! [`config`]). `PROPTEST_CASES=N` and `PROPTEST_RNG_SEED=S` still override
//! the case count and the seed for a longer or different exploration.

use std::sync::Arc;
use std::time::Duration;

use postroom_smtp::command::parse_command;
use postroom_smtp::data::{ChunkCollector, DataDecoder, DecodedBody};
use postroom_smtp::{
    Action, Command, DeliveryOutcome, Envelope, RcptTarget, RcptVerdict, Reply, Session, SessionConfig,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{RngAlgorithm, RngSeed};

const SEED: u64 = 0x0050_6f73_7472_6f6f; // "Postroo"

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
        max_shrink_iters: 4096,
        ..env
    }
}

// ---------------------------------------------------------------------------
// Strategies

/// Bytes that matter to SMTP parsers: line ends, dots, brackets, quotes,
/// pieces of multi-byte UTF-8 (é, combining acute, €, 📮), NUL, DEL, 0xff.
const SPECIAL: &[u8] = b"\r\n. :<>@\"\\=[]\x00\x7f\x80\xc3\xa9\xcc\x81\xe2\x82\xac\xf0\x9f\x93\xae\xff";

/// Maps a uniform `u16` to a byte weighted towards what matters to SMTP
/// parsers: a third special, a third lower-case letters, a third any byte.
/// (A map over `any::<u16>()` is much cheaper than a union of strategies.)
fn bias(v: u16) -> u8 {
    let b = v as u8;
    match (v >> 8) % 3 {
        0 => SPECIAL[b as usize % SPECIAL.len()],
        1 => b'a' + b % 26,
        _ => b,
    }
}

fn smtp_byte() -> impl Strategy<Value = u8> {
    any::<u16>().prop_map(bias)
}

fn soup(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(smtp_byte(), 0..max)
}

/// Only line-end bytes, dots and a letter: the input smuggling is made of.
fn crlf_soup(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(&b"\r\n.\r\n.x\x00"[..]), 0..max)
}

/// The published SMTP smuggling end-of-data variants (none of them is
/// `<CRLF>.<CRLF>`), plus a NUL variant.
const SMUGGLING: [&[u8]; 8] = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r.\r",
    b"\r\n.\n",
    b"\r.\r\n",
    b"\n.\r",
    b"\r\n.\r",
    b"\r\n\x00.\r\n",
];

fn smuggling_sequence() -> impl Strategy<Value = &'static [u8]> {
    prop::sample::select(&SMUGGLING[..])
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

/// True when `bytes` has a CR not followed by LF or a LF not preceded by CR.
fn has_bare_line_end(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| match b {
        b'\r' => bytes.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || bytes[i - 1] != b'\r',
        _ => false,
    })
}

// ---------------------------------------------------------------------------
// Commands

/// Pieces that steer a command line into the deeper parts of the parser.
fn command_token() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "FROM:",
            "TO:",
            "from:",
            "To:",
            "<",
            ">",
            "<>",
            "@",
            "\"",
            "\\",
            ".",
            " ",
            "  ",
            ":",
            ",",
            "=",
            "SIZE=",
            "SIZE=100",
            "SIZE=99999999999999999999",
            "BODY=7BIT",
            "BODY=8BITMIME",
            "BODY=BINARYMIME",
            "SMTPUTF8",
            "AUTH=<>",
            "RET=FULL",
            "LAST",
            "last",
            "Postmaster",
            "user@example.com",
            "a@b.example",
            "\"a b\"@example.com",
            "\"a\\\"b\"@x.example",
            "@relay.example:",
            "@a,@b:",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "[999.1.1.1]",
            "xn--",
            "xn--bcher-kva",
            "é",
            "ü",
            "e\u{301}",
            "İ",
            "ß",
            "\u{fb01}",
            "\u{2126}",
            "€",
            "📮",
            "\u{0}",
            "\t",
            "\u{7f}",
            "0",
            "18446744073709551615",
            "18446744073709551616",
        ])
        .prop_map(String::from),
        "[a-zA-Z0-9.+-]{1,12}",
        any::<char>().prop_map(String::from),
    ]
}

fn command_verb() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY", "EXPN", "HELP",
            "STARTTLS", "AUTH", "XCLIENT", "",
        ]),
        any::<u16>(),
    )
        .prop_map(|(verb, case_mask)| {
            // Mixed case: verbs are case-insensitive.
            verb.chars()
                .enumerate()
                .map(|(i, c)| {
                    if case_mask & (1 << (i % 16)) != 0 {
                        c.to_ascii_lowercase()
                    } else {
                        c
                    }
                })
                .collect()
        })
}

/// A command line (without line end) that is likely to get far.
fn structured_line() -> impl Strategy<Value = Vec<u8>> {
    (command_verb(), prop::collection::vec(command_token(), 0..16)).prop_map(|(verb, tokens)| {
        let mut line = verb;
        line.push(' ');
        for t in tokens {
            line.push_str(&t);
        }
        line.into_bytes()
    })
}

fn assert_well_formed_reply(reply: &Reply) -> Result<(), TestCaseError> {
    let bytes = reply.to_bytes();
    prop_assert!(
        bytes.ends_with(b"\r\n"),
        "reply does not end with CRLF: {bytes:?}"
    );
    prop_assert!(
        (200..=599).contains(&reply.code),
        "reply code {} out of range",
        reply.code
    );
    let lines: Vec<&[u8]> = bytes[..bytes.len() - 2].split(|&b| b == b'\n').collect();
    let code = format!("{}", reply.code).into_bytes();
    for (i, raw) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        // Every line but the last ended in "\r\n"; the split removed the LF.
        let line = if last {
            &raw[..]
        } else {
            prop_assert!(raw.ends_with(b"\r"), "bare LF in reply {bytes:?}");
            &raw[..raw.len() - 1]
        };
        prop_assert!(
            !line.contains(&b'\r'),
            "bare CR in reply line {line:?} of {bytes:?}"
        );
        prop_assert!(line.len() >= 4, "short reply line {line:?}");
        prop_assert!(line[..3].iter().all(u8::is_ascii_digit), "no code in {line:?}");
        prop_assert_eq!(&line[..3], &code[..], "mixed codes in {:?}", bytes);
        let sep = if last { b' ' } else { b'-' };
        prop_assert_eq!(line[3], sep, "bad separator in {:?}", bytes);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn parse_command_never_panics_on_bytes(
        line in prop::collection::vec(any::<u8>(), 0..4096),
        ehlo in any::<bool>(),
        utf8 in any::<bool>(),
    ) {
        if let Err(e) = parse_command(&line, ehlo, utf8) {
            assert_well_formed_reply(&e.reply())?;
        }
    }

    #[test]
    fn parse_command_never_panics_on_smtp_like_lines(
        line in soup(2500),
        ehlo in any::<bool>(),
        utf8 in any::<bool>(),
    ) {
        if let Err(e) = parse_command(&line, ehlo, utf8) {
            assert_well_formed_reply(&e.reply())?;
        }
    }

    #[test]
    fn parse_command_structured(
        line in structured_line(),
        ehlo in any::<bool>(),
        utf8 in any::<bool>(),
    ) {
        let result = parse_command(&line, ehlo, utf8);
        match &result {
            Err(e) => assert_well_formed_reply(&e.reply())?,
            // Without SMTPUTF8 nothing but ASCII gets through.
            Ok(Command::Rcpt(RcptTarget::Mailbox(a))) if !utf8 => prop_assert!(a.is_ascii()),
            Ok(Command::Mail(Some(a), params)) if !params.smtputf8 => prop_assert!(a.is_ascii()),
            // ESMTP parameters need EHLO.
            Ok(Command::Mail(_, params)) if !ehlo => prop_assert_eq!(params, &Default::default()),
            Ok(_) => {}
        }
        // The verb is case-insensitive: upper-casing it changes nothing.
        let verb_len = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
        let mut upper = line.clone();
        upper[..verb_len].make_ascii_uppercase();
        prop_assert_eq!(parse_command(&upper, ehlo, utf8), result);
    }
}

// ---------------------------------------------------------------------------
// DATA decoding

#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    consumed: usize,
    done: bool,
    body: Vec<u8>,
    too_big: bool,
    bare: u64,
    has_8bit: bool,
}

impl Decoded {
    fn new(consumed: usize, done: bool, b: DecodedBody) -> Self {
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

fn decode_whole(input: &[u8], limit: u64) -> Decoded {
    let mut d = DataDecoder::new(limit);
    let (consumed, done) = d.feed(input);
    Decoded::new(consumed, done, d.finish())
}

fn decode_pieces(input: &[u8], cuts: &[Index], limit: u64) -> Result<Decoded, TestCaseError> {
    let mut d = DataDecoder::new(limit);
    let mut consumed = 0;
    let mut done = false;
    for piece in pieces(input, cuts) {
        let (n, end) = d.feed(piece);
        consumed += n;
        if end {
            done = true;
            break;
        }
        // Before the end everything offered is taken.
        prop_assert_eq!(n, piece.len());
    }
    Ok(Decoded::new(consumed, done, d.finish()))
}

/// The reference for a finished DATA: the end is the first `<CRLF>.<CRLF>`
/// (a `.<CRLF>` at the very start counts); before it, a dot that starts a
/// line (after a real CRLF) is removed and every bare CR or LF becomes CRLF.
fn reference_data(input: &[u8], limit: u64) -> Option<Decoded> {
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
fn reference_chunks(input: &[u8], limit: u64) -> Decoded {
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

fn limit() -> impl Strategy<Value = u64> {
    prop_oneof![3 => Just(u64::MAX), 1 => Just(45_000_000), 2 => 0..400u64]
}

/// Arbitrary DATA content: soup, line-end soup, smuggling attempts, and
/// sometimes a real terminator.
fn data_input() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => soup(40),
            3 => crlf_soup(12),
            2 => smuggling_sequence().prop_map(<[u8]>::to_vec),
            1 => Just(b"\r\n.\r\n".to_vec()),
            1 => Just(b"MAIL FROM:<evil@example.com>\r\n".to_vec()),
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

/// Lines of a message (no CR or LF inside), often starting with dots.
fn message_lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let line_byte = smtp_byte().prop_map(|b| match b {
        b'\r' => b'.',
        b'\n' => b'x',
        b => b,
    });
    prop::collection::vec(
        (
            prop_oneof![2 => Just(0usize), 1 => 1..4usize],
            prop::collection::vec(line_byte, 0..60),
        )
            .prop_map(|(dots, rest)| {
                let mut line = vec![b'.'; dots];
                line.extend(rest);
                line
            }),
        0..24,
    )
}

/// RFC 5321 4.5.2 on the sending side: double a leading dot, end each line
/// with CRLF, then `.<CRLF>`.
fn dot_stuff(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn data_split_feeding_matches_whole(input in data_input(), cuts in cuts(), limit in limit()) {
        let whole = decode_whole(&input, limit);
        let split = decode_pieces(&input, &cuts, limit)?;
        prop_assert_eq!(&split, &whole);
    }

    #[test]
    fn data_matches_the_reference(input in data_input(), cuts in cuts(), limit in limit()) {
        let got = decode_pieces(&input, &cuts, limit)?;
        match reference_data(&input, limit) {
            Some(expected) => prop_assert_eq!(got, expected),
            // No <CRLF>.<CRLF>: DATA goes on, whatever smuggling was tried.
            None => {
                prop_assert!(!got.done);
                prop_assert_eq!(got.consumed, input.len());
            }
        }
    }

    #[test]
    fn data_body_has_no_bare_line_ends(input in data_input(), cuts in cuts()) {
        let got = decode_pieces(&input, &cuts, u64::MAX)?;
        prop_assert!(!has_bare_line_end(&got.body), "bare CR/LF in {:?}", got.body);
        prop_assert!(!got.too_big);
    }

    #[test]
    fn data_arbitrary_bytes(input in prop::collection::vec(any::<u8>(), 0..2048), cuts in cuts()) {
        let whole = decode_whole(&input, 1 << 20);
        prop_assert_eq!(decode_pieces(&input, &cuts, 1 << 20)?, whole);
    }

    #[test]
    fn dot_stuffing_round_trips(
        lines in message_lines(),
        after in soup(40),
        cuts in cuts(),
    ) {
        let mut wire = dot_stuff(&lines);
        let message_len = wire.len();
        // Pipelined commands after the terminator are not consumed.
        wire.extend_from_slice(&after);
        let got = decode_pieces(&wire, &cuts, u64::MAX)?;
        let mut expected = Vec::new();
        for line in &lines {
            expected.extend_from_slice(line);
            expected.extend_from_slice(b"\r\n");
        }
        prop_assert!(got.done);
        prop_assert_eq!(got.consumed, message_len);
        prop_assert_eq!(got.bare, 0);
        prop_assert!(!got.too_big);
        prop_assert_eq!(got.has_8bit, expected.iter().any(|&b| b >= 0x80));
        prop_assert_eq!(got.body, expected);
    }

    #[test]
    fn smuggled_terminators_do_not_end_data(
        before in soup(30),
        seq in smuggling_sequence(),
        after in soup(30),
        cuts in cuts(),
    ) {
        let mut body = b"Subject: x\r\n\r\n".to_vec();
        body.extend(before.iter().filter(|&&b| b != b'\r' && b != b'\n' && b != b'.'));
        body.extend_from_slice(seq);
        body.extend_from_slice(b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n");
        body.extend(after.iter().filter(|&&b| b != b'\r' && b != b'\n' && b != b'.'));
        let end = body.len() + 5;
        body.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
        let got = decode_pieces(&body, &cuts, u64::MAX)?;
        prop_assert!(got.done);
        prop_assert_eq!(got.consumed, end);
        prop_assert!(!has_bare_line_end(&got.body));
        // The smuggled command is stored as content, on its own CRLF line.
        prop_assert!(got
            .body
            .windows(32)
            .any(|w| w == b"\r\nMAIL FROM:<evil@example.com>\r\n"));
    }

    #[test]
    fn chunk_collector_split_matches_whole_and_reference(
        input in data_input(),
        cuts in cuts(),
        limit in limit(),
    ) {
        let mut whole = ChunkCollector::new(limit);
        whole.push(&input);
        let whole_too_big = whole.too_big();
        let whole = Decoded::new(input.len(), true, whole.finish());
        let mut split = ChunkCollector::new(limit);
        for piece in pieces(&input, &cuts) {
            split.push(piece);
        }
        prop_assert_eq!(split.too_big(), whole_too_big);
        let split = Decoded::new(input.len(), true, split.finish());
        prop_assert_eq!(&split, &whole);
        prop_assert_eq!(&split, &reference_chunks(&input, limit));
        prop_assert!(!has_bare_line_end(&split.body));
    }
}

// ---------------------------------------------------------------------------
// Sessions

/// A delivered envelope and the body its chunks carried.
struct Delivered {
    env: Envelope<u32>,
    body: Vec<u8>,
}

impl std::ops::Deref for Delivered {
    type Target = Envelope<u32>;
    fn deref(&self) -> &Envelope<u32> {
        &self.env
    }
}

/// Drives a session like the tokio glue does, checking the contract on the
/// way: every reply well-formed, `poll` quiet while a question is open,
/// nothing after `Close`.
struct Driver {
    cfg: Arc<SessionConfig>,
    s: Session<u32>,
    /// Everything the session did, in order, for comparisons.
    log: Vec<String>,
    delivered: Vec<Delivered>,
    /// The body since the last BodyStart, from its chunks.
    body: Option<Vec<u8>>,
    closed: bool,
    tls_requests: usize,
}

impl Driver {
    fn new(cfg: SessionConfig) -> Self {
        let cfg = Arc::new(cfg);
        Driver {
            s: Session::new(cfg.clone(), "192.0.2.1".parse().unwrap(), false),
            cfg,
            log: Vec::new(),
            delivered: Vec::new(),
            body: None,
            closed: false,
            tls_requests: 0,
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), TestCaseError> {
        self.s.receive(bytes);
        while let Some(action) = self.s.poll() {
            prop_assert!(!self.closed, "action after Close: {:?}", action);
            match action {
                Action::Send(reply) => {
                    assert_well_formed_reply(&reply)?;
                    self.log.push(format!("send {:?}", reply.to_bytes()));
                }
                Action::Delay(d) => {
                    prop_assert_eq!(d, self.cfg.error_sleep);
                    self.log.push("delay".into());
                }
                Action::Refused { command, reply } => {
                    prop_assert!(reply.is_error(), "refusal with {}", reply.summary());
                    assert_well_formed_reply(&reply)?;
                    self.log.push(format!("refused {command} {}", reply.summary()));
                }
                Action::CheckRecipient(target) => {
                    prop_assert!(self.s.poll().is_none(), "poll went on before the verdict");
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
                    self.s.recipient_verdict(verdict);
                }
                Action::Authenticate { user, password } => {
                    let ok = password.expose() == "pw";
                    self.s.auth_result(if ok {
                        Ok(user)
                    } else {
                        Err(postroom_smtp::AuthFailure::Failed)
                    });
                }
                Action::CheckSender(_) => self.s.sender_verdict(Ok(())),
                Action::BodyStart => self.body = Some(Vec::new()),
                Action::BodyChunk(chunk) => {
                    prop_assert!(!chunk.is_empty(), "empty chunk");
                    let Some(body) = self.body.as_mut() else {
                        return Err(TestCaseError::fail("a chunk before BodyStart"));
                    };
                    body.extend_from_slice(&chunk);
                }
                Action::Deliver(env) => {
                    prop_assert!(self.s.poll().is_none(), "poll went on before the outcome");
                    let body = self.body.take().unwrap_or_default();
                    prop_assert_eq!(env.size, body.len() as u64);
                    let env = Delivered { env: *env, body };
                    self.check_envelope(&env)?;
                    self.log.push(format!("deliver {:?} {:?}", env.env, env.body));
                    let outcome = if env.body.windows(6).any(|w| w == b"REJECT") {
                        DeliveryOutcome::Rejected(Reply::new(554, "5.7.1", "Rejected"))
                    } else {
                        DeliveryOutcome::Accepted {
                            queue_id: format!("Q{}", self.delivered.len()),
                        }
                    };
                    self.delivered.push(env);
                    self.s.delivery_outcome(outcome);
                }
                Action::StartTls => {
                    prop_assert!(self.s.poll().is_none(), "poll went on before TLS");
                    self.log.push("starttls".into());
                    self.tls_requests += 1;
                    self.s.tls_established();
                    prop_assert!(self.s.is_tls());
                }
                Action::Close => {
                    self.log.push("close".into());
                    self.closed = true;
                    prop_assert!(self.s.is_closed());
                }
            }
        }
        if self.closed {
            prop_assert!(self.s.is_closed());
        }
        Ok(())
    }

    fn check_envelope(&self, env: &Delivered) -> Result<(), TestCaseError> {
        prop_assert!(!has_bare_line_end(&env.body), "bare CR/LF delivered");
        prop_assert!(env.body.len() as u64 <= self.cfg.max_message_size);
        prop_assert!(!env.recipients.is_empty());
        prop_assert!(env.recipients.len() <= self.cfg.max_recipients);
        if self.cfg.strict_line_endings {
            prop_assert_eq!(env.bare_line_ends, 0);
        }
        if !env.body.is_empty() && !env.chunking {
            // A dot-terminated body always ends with its last CRLF.
            prop_assert!(env.body.ends_with(b"\r\n"));
        }
        Ok(())
    }
}

fn session_config() -> impl Strategy<Value = SessionConfig> {
    (
        prop_oneof![2 => Just(45_000_000u64), 1 => 0..600u64],
        0..5usize,
        prop_oneof![3 => Just(2048usize), 1 => 0..80usize],
        0..12u32,
        1..30u32,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(max_message_size, max_recipients, max_line_length, soft, hard, strict, starttls)| {
                SessionConfig {
                    hostname: "mx.example".into(),
                    max_message_size,
                    max_recipients,
                    max_line_length,
                    soft_error_limit: soft,
                    hard_error_limit: hard,
                    error_sleep: Duration::from_millis(1),
                    strict_line_endings: strict,
                    starttls,
                    auth: starttls,
                    submission: false,
                }
            },
        )
}

fn line_end() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![
        8 => Just(&b"\r\n"[..]),
        1 => Just(&b"\n"[..]),
        1 => Just(&b"\r"[..]),
        1 => Just(&b""[..]),
    ]
}

fn known_command() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "EHLO client.example",
        "ehlo client.example",
        "HELO client.example",
        "HELO",
        "MAIL FROM:<a@b.example>",
        "MAIL FROM:<>",
        "MAIL FROM: <a@b.example> SIZE=100 BODY=8BITMIME",
        "MAIL FROM:<a@b.example> SIZE=99999999999",
        "MAIL FROM:<jösé@b.example> SMTPUTF8",
        "MAIL FROM:a@b.example",
        "RCPT TO:<user@example.com>",
        "RCPT TO:<User+tag@Example.COM>",
        "RCPT TO:<üser@example.com>",
        "RCPT TO:<other@example.com>",
        "RCPT TO:<Postmaster>",
        "RCPT TO:<@relay.example:user@example.com>",
        "DATA",
        "BDAT 0",
        "BDAT 0 LAST",
        "BDAT x",
        "RSET",
        "NOOP",
        "NOOP anything",
        "QUIT",
        "STARTTLS",
        "VRFY user",
        "EXPN list",
        "HELP",
        "AUTH PLAIN",
        "BOGUS",
        "",
    ])
}

/// One piece of a session stream.
fn segment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => (known_command(), line_end()).prop_map(|(c, end)| [c.as_bytes(), end].concat()),
        2 => (structured_line(), line_end()).prop_map(|(c, end)| [&c[..], end].concat()),
        // A whole transaction, dot-terminated.
        2 => (message_lines(), prop::option::of(smuggling_sequence())).prop_map(|(lines, seq)| {
            let mut s = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n".to_vec();
            if let Some(seq) = seq {
                s.extend_from_slice(b"x");
                s.extend_from_slice(seq);
                s.extend_from_slice(b"MAIL FROM:<evil@example.com>\r\n");
            }
            s.extend(dot_stuff(&lines));
            s
        }),
        // A BDAT chunk whose stated size may or may not match what follows.
        3 => (0..300usize, -3..3isize, any::<bool>(), soup(300)).prop_map(|(size, skew, last, content)| {
            let len = (size as isize + skew).clamp(0, content.len() as isize) as usize;
            let mut s = format!("BDAT {size}{}\r\n", if last { " LAST" } else { "" }).into_bytes();
            s.extend_from_slice(&content[..len.min(content.len())]);
            s
        }),
        2 => soup(64),
        2 => crlf_soup(16),
        1 => smuggling_sequence().prop_map(<[u8]>::to_vec),
        // Long lines, around the 2,048-octet limit.
        1 => (2040..2060usize, line_end()).prop_map(|(n, end)| {
            let mut s = b"EHLO ".to_vec();
            s.resize(n, b'a');
            s.extend_from_slice(end);
            s
        }),
    ]
}

fn session_stream() -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), prop::collection::vec(segment(), 0..24)).prop_map(|(greet, segments)| {
        let mut stream = if greet {
            b"EHLO client.example\r\n".to_vec()
        } else {
            Vec::new()
        };
        stream.extend(segments.concat());
        stream
    })
}

fn run_session(cfg: SessionConfig, stream: &[u8], cuts: &[Index]) -> Result<Driver, TestCaseError> {
    let mut d = Driver::new(cfg);
    for piece in pieces(stream, cuts) {
        d.send(piece)?;
    }
    Ok(d)
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn session_never_panics_and_replies_are_well_formed(
        cfg in session_config(),
        stream in session_stream(),
        cuts in cuts(),
    ) {
        let d = run_session(cfg, &stream, &cuts)?;
        // Once closed, more input does nothing.
        if d.closed {
            let mut d = d;
            d.send(b"NOOP\r\n")?;
            prop_assert_eq!(d.log.last().map(String::as_str), Some("close"));
        }
    }

    #[test]
    fn session_does_not_depend_on_how_input_is_split(
        cfg in session_config(),
        stream in session_stream(),
        cuts in cuts(),
    ) {
        // STARTTLS discards pipelined plaintext, which by design depends on
        // what has arrived when it is processed.
        let cfg = SessionConfig { starttls: false, ..cfg };
        let whole = run_session(cfg.clone(), &stream, &[])?;
        let split = run_session(cfg, &stream, &cuts)?;
        prop_assert_eq!(split.log, whole.log);
    }

    #[test]
    fn session_byte_at_a_time_matches_whole(
        cfg in session_config(),
        stream in session_stream(),
    ) {
        let cfg = SessionConfig { starttls: false, ..cfg };
        let whole = run_session(cfg.clone(), &stream, &[])?;
        let mut d = Driver::new(cfg);
        for b in &stream {
            d.send(&[*b])?;
        }
        prop_assert_eq!(d.log, whole.log);
    }

    #[test]
    fn session_arbitrary_bytes(
        stream in prop::collection::vec(any::<u8>(), 0..4096),
        greet in any::<bool>(),
        cuts in cuts(),
    ) {
        let mut input = if greet { b"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<user@example.com>\r\n".to_vec() } else { Vec::new() };
        input.extend(stream);
        run_session(SessionConfig::default(), &input, &cuts)?;
    }

    #[test]
    fn smuggling_in_a_session_is_stored_as_content(
        seq in smuggling_sequence(),
        filler in "[a-z ]{0,20}",
        cuts in cuts(),
        strict in any::<bool>(),
    ) {
        let mut stream = b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<user@example.com>\r\nDATA\r\nSubject: x\r\n\r\n".to_vec();
        stream.extend_from_slice(filler.as_bytes());
        stream.extend_from_slice(seq);
        stream.extend_from_slice(b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<user@example.com>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n");
        let cfg = SessionConfig { strict_line_endings: strict, ..SessionConfig::default() };
        let d = run_session(cfg, &stream, &cuts)?;
        let replies: Vec<&String> = d.log.iter().filter(|l| l.starts_with("send")).collect();
        // EHLO, MAIL, RCPT, 354, the one end of DATA, QUIT: nothing smuggled.
        prop_assert_eq!(replies.len(), 6, "{:#?}", d.log);
        prop_assert!(d.closed);
        let bare = SMUGGLING.iter().position(|s| *s == seq).is_some_and(|i| i != 7);
        if strict && bare {
            prop_assert!(d.delivered.is_empty());
        } else {
            prop_assert_eq!(d.delivered.len(), 1);
            let body = &d.delivered[0].body;
            prop_assert!(body.windows(28).any(|w| w == b"MAIL FROM:<evil@example.com>"));
            prop_assert!(body.ends_with(b"\r\nsmuggled\r\n"));
        }
    }
}

// ---------------------------------------------------------------------------
// Regressions found by these properties.

/// `expect_keyword` sliced `rest[..keyword.len()]` by bytes: `MAIL FROMé`
/// put that offset inside `é` and panicked ("byte index 5 is not a char
/// boundary"), before any greeting.
#[test]
fn keyword_followed_by_multibyte_character() {
    assert!(matches!(
        parse_command("MAIL FROMé".as_bytes(), true, false),
        Err(postroom_smtp::CommandError::Syntax(_))
    ));
    assert!(matches!(
        parse_command("RCPT TOé".as_bytes(), true, true),
        Err(postroom_smtp::CommandError::Syntax(_))
    ));
    let mut d = Driver::new(SessionConfig::default());
    d.send("MAIL FROMé\r\nRCPT TOé\r\nNOOP\r\n".as_bytes()).unwrap();
    assert_eq!(
        d.log.iter().filter(|l| l.starts_with("send")).count(),
        3,
        "{:#?}",
        d.log
    );
}
