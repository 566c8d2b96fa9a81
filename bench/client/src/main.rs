//! mailbench: the load generator of bench/imap-pop3.
//!
//! A deliberately small IMAP and POP3 client: blocking sockets, one thread
//! per connection, responses parsed only as far as needed to find the end of
//! each one (literals are honoured, so message text can never be mistaken
//! for a tagged reply) and to check the answer (FETCH and SEARCH counts).
//! Every subcommand prints one JSON object on stdout.
//!
//! ```text
//! mailbench fill  --addr A --pass P --jobs USER=FILE[,USER=FILE...]
//! mailbench imap  --addr A --user U --pass P --op OP --clients N --seconds S
//!                 --messages M [--words w1,w2] [--seed X]
//! mailbench idle  --addr A --tls --user U --pass P --connections N [--threads T]
//! mailbench pop3  --addr A --pass P --users u1,u2 --expect N [--window W]
//! ```
//!
//! OP is one of select, fetch_flags, fetch_headers, search_subject,
//! search_body, store, append (one small message into INBOX per op). `idle` prints its JSON once every connection is in
//! IDLE and holds them until its standard input closes (or a line arrives).
//! Message files for `fill` are records of `LENGTH DATE\n` followed by
//! LENGTH bytes of message (CRLF line ends), DATE an IMAP date-time or `-`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

type Res<T> = Result<T, String>;

fn main() {
    let mut argv = std::env::args().skip(1);
    let Some(cmd) = argv.next() else {
        eprintln!("usage: mailbench fill|imap|idle|pop3 --key value ...");
        std::process::exit(2);
    };
    let mut args: HashMap<String, String> = HashMap::new();
    let rest: Vec<String> = argv.collect();
    let mut i = 0;
    while i < rest.len() {
        let k = rest[i].trim_start_matches("--").to_string();
        if i + 1 < rest.len() && !rest[i + 1].starts_with("--") {
            args.insert(k, rest[i + 1].clone());
            i += 2;
        } else {
            args.insert(k, "1".to_string());
            i += 1;
        }
    }
    let r = match cmd.as_str() {
        "fill" => fill(&args),
        "imap" => imap_ops(&args),
        "idle" => idle(&args),
        "pop3" => pop3(&args),
        _ => Err(format!("unknown subcommand {cmd}")),
    };
    match r {
        Ok(json) => {
            println!("{json}");
        }
        Err(e) => {
            eprintln!("mailbench {cmd}: {e}");
            std::process::exit(1);
        }
    }
}

fn arg<'a>(a: &'a HashMap<String, String>, k: &str) -> Res<&'a str> {
    a.get(k).map(|s| s.as_str()).ok_or_else(|| format!("--{k} is required"))
}

fn num<T: std::str::FromStr>(a: &HashMap<String, String>, k: &str, default: Option<T>) -> Res<T> {
    match a.get(k) {
        Some(v) => v.parse().map_err(|_| format!("--{k}: not a number: {v}")),
        None => default.ok_or_else(|| format!("--{k} is required")),
    }
}

/// CPU seconds (user + system, all threads) of this process so far.
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// xorshift64*: the same sequence for the same seed, on every server.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in lo..=hi.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

// ------------------------------------------------------------ transport --

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// The benchmark talks to its own servers with self-signed certificates.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    Arc::new(cfg)
}

fn tcp(addr: &str) -> Res<TcpStream> {
    let ip = addr.split(':').next().unwrap_or("");
    // Loopback only, never a name to look up.
    if !ip.starts_with("127.") {
        return Err(format!("{addr}: only 127.0.0.0/8 addresses are allowed"));
    }
    let s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(600))).map_err(|e| e.to_string())?;
    Ok(s)
}

fn open(addr: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Res<BufReader<Box<dyn Stream>>> {
    let sock = tcp(addr)?;
    let s: Box<dyn Stream> = match tls {
        Some(cfg) => {
            let name = ServerName::try_from("bench.example.com").unwrap().to_owned();
            let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| e.to_string())?;
            let mut s = rustls::StreamOwned::new(conn, sock);
            while s.conn.is_handshaking() {
                s.conn.complete_io(&mut s.sock).map_err(|e| format!("TLS handshake: {e}"))?;
            }
            Box::new(s)
        }
        None => Box::new(sock),
    };
    Ok(BufReader::with_capacity(64 * 1024, s))
}

// ----------------------------------------------------------------- IMAP --

struct Imap {
    io: BufReader<Box<dyn Stream>>,
    n: u64,
    buf: Vec<u8>,
    caps: String,
}

/// The length of a literal announced at the end of `line` (`{123}\r\n` or
/// `{123+}\r\n`).
fn literal_len(line: &[u8]) -> Option<usize> {
    let l = line.strip_suffix(b"}\r\n")?;
    let open = l.iter().rposition(|&b| b == b'{')?;
    let digits = &l[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let s = s.trim_end();
    if s.len() > 300 {
        format!("{}...", &s[..s.char_indices().take_while(|(i, _)| *i < 300).last().map(|(i, _)| i).unwrap_or(0)])
    } else {
        s.to_string()
    }
}

impl Imap {
    fn connect(addr: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Res<Imap> {
        let io = open(addr, tls)?;
        let mut c = Imap { io, n: 0, buf: Vec::with_capacity(64 * 1024), caps: String::new() };
        c.read_response()?;
        if !c.buf.starts_with(b"* OK") {
            return Err(format!("greeting: {}", lossy(&c.buf)));
        }
        c.caps = String::from_utf8_lossy(&c.buf).to_uppercase();
        Ok(c)
    }

    /// Reads one response (a line and the literals it announces) into buf.
    fn read_response(&mut self) -> Res<()> {
        self.buf.clear();
        loop {
            let n = self.io.read_until(b'\n', &mut self.buf).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err(format!("connection closed by the server (after {})", lossy(&self.buf)));
            }
            match literal_len(&self.buf) {
                Some(len) => {
                    let start = self.buf.len();
                    self.buf.resize(start + len, 0);
                    self.io.read_exact(&mut self.buf[start..]).map_err(|e| format!("read literal: {e}"))?;
                }
                None => return Ok(()),
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Res<()> {
        let w = self.io.get_mut();
        w.write_all(bytes).and_then(|_| w.flush()).map_err(|e| format!("write: {e}"))
    }

    /// Sends a command and reads until its tagged response; `untagged` sees
    /// every other response. Returns the tagged line.
    fn cmd(&mut self, line: &str, untagged: &mut dyn FnMut(&[u8])) -> Res<String> {
        self.n += 1;
        let tag = format!("b{}", self.n);
        self.send(format!("{tag} {line}\r\n").as_bytes())?;
        self.finish(&tag, untagged)
    }

    fn finish(&mut self, tag: &str, untagged: &mut dyn FnMut(&[u8])) -> Res<String> {
        loop {
            self.read_response()?;
            let b = &self.buf;
            if b.len() > tag.len() && b.starts_with(tag.as_bytes()) && b[tag.len()] == b' ' {
                return Ok(String::from_utf8_lossy(&b[tag.len() + 1..]).trim_end().to_string());
            }
            if b.starts_with(b"* ") {
                untagged(b);
            } else {
                return Err(format!("unexpected response to {tag}: {}", lossy(b)));
            }
        }
    }

    fn ok(&mut self, line: &str, untagged: &mut dyn FnMut(&[u8])) -> Res<()> {
        let r = self.cmd(line, untagged)?;
        if r.starts_with("OK") {
            Ok(())
        } else {
            Err(format!("{line} -> {r}"))
        }
    }

    fn login(&mut self, user: &str, pass: &str) -> Res<()> {
        self.ok(&format!("LOGIN \"{user}\" \"{pass}\""), &mut |_| {})
            .map_err(|e| e.replace(pass, "***"))
    }

    /// SELECT INBOX; returns EXISTS.
    fn select(&mut self) -> Res<u64> {
        let mut exists = None;
        self.ok("SELECT INBOX", &mut |b| {
            if let Some(n) = untagged_number(b, b"EXISTS") {
                exists = Some(n);
            }
        })?;
        exists.ok_or_else(|| "SELECT INBOX: no EXISTS".to_string())
    }
}

/// `* 123 WORD...` -> 123 when the word matches.
fn untagged_number(b: &[u8], word: &[u8]) -> Option<u64> {
    let rest = b.strip_prefix(b"* ")?;
    let sp = rest.iter().position(|&c| c == b' ')?;
    let n: u64 = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
    let w = &rest[sp + 1..];
    if w.len() >= word.len() && w[..word.len()].eq_ignore_ascii_case(word) {
        Some(n)
    } else {
        None
    }
}

fn search_count(b: &[u8]) -> Option<usize> {
    let rest = b.strip_prefix(b"* SEARCH")?;
    Some(rest.split(|c| c.is_ascii_whitespace()).filter(|t| !t.is_empty() && t[0].is_ascii_digit()).count())
}

// ----------------------------------------------------------------- fill --

fn read_records(path: &str) -> Res<Vec<(String, Vec<u8>)>> {
    let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let nl = data[i..].iter().position(|&b| b == b'\n').ok_or("bad record header")? + i;
        let head = std::str::from_utf8(&data[i..nl]).map_err(|_| "bad record header")?;
        let (len, date) = head.split_once(' ').ok_or("bad record header")?;
        let len: usize = len.parse().map_err(|_| "bad record length")?;
        let body = data.get(nl + 1..nl + 1 + len).ok_or("truncated record")?.to_vec();
        out.push((date.to_string(), body));
        i = nl + 1 + len;
    }
    Ok(out)
}

fn fill_one(addr: &str, user: &str, pass: &str, file: &str, window: usize) -> Res<(usize, u64)> {
    let msgs = read_records(file)?;
    let mut c = Imap::connect(addr, None)?;
    c.login(user, pass)?;
    let mut caps = String::new();
    c.ok("CAPABILITY", &mut |b| caps.push_str(&String::from_utf8_lossy(b).to_uppercase()))?;
    let plus = caps.contains("LITERAL+");
    let mut tags = Vec::new();
    for chunk in msgs.chunks(if plus { window } else { 1 }) {
        let mut out = Vec::new();
        tags.clear();
        for (date, body) in chunk {
            c.n += 1;
            let tag = format!("f{}", c.n);
            let date = if date == "-" { String::new() } else { format!("\"{date}\" ") };
            let lit = if plus { format!("{{{}+}}", body.len()) } else { format!("{{{}}}", body.len()) };
            out.extend_from_slice(format!("{tag} APPEND INBOX {date}{lit}\r\n").as_bytes());
            if !plus {
                c.send(&out)?;
                out.clear();
                c.read_response()?;
                if !c.buf.starts_with(b"+") {
                    return Err(format!("APPEND: expected a continuation, got {}", lossy(&c.buf)));
                }
            }
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
            tags.push(tag);
        }
        c.send(&out)?;
        for tag in &tags {
            let r = c.finish(tag, &mut |_| {})?;
            if !r.starts_with("OK") {
                return Err(format!("APPEND -> {r}"));
            }
        }
    }
    let exists = c.select()?;
    let _ = c.cmd("LOGOUT", &mut |_| {});
    Ok((msgs.len(), exists))
}

fn fill(a: &HashMap<String, String>) -> Res<String> {
    let addr = arg(a, "addr")?.to_string();
    let pass = arg(a, "pass")?.to_string();
    let window: usize = num(a, "window", Some(32))?;
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for job in arg(a, "jobs")?.split(',') {
        let (user, file) = job.split_once('=').ok_or("--jobs USER=FILE,...")?;
        let (addr, pass, user, file) = (addr.clone(), pass.clone(), user.to_string(), file.to_string());
        handles.push(std::thread::spawn(move || {
            let r = fill_one(&addr, &user, &pass, &file, window);
            (user, r)
        }));
    }
    let mut parts = Vec::new();
    for h in handles {
        let (user, r) = h.join().map_err(|_| "a fill thread panicked")?;
        let (appended, exists) = r.map_err(|e| format!("{user}: {e}"))?;
        parts.push(format!("{}: {{\"appended\": {appended}, \"exists\": {exists}}}", json_str(&user)));
    }
    Ok(format!(
        "{{\"seconds\": {:.3}, \"users\": {{{}}}}}",
        t0.elapsed().as_secs_f64(),
        parts.join(", ")
    ))
}

// ----------------------------------------------------------- IMAP load --

#[derive(Default)]
struct ClientResult {
    ops: u64,
    lat: Vec<f64>,
    end: Option<Instant>,
    errors: Vec<String>,
    /// word -> the result counts seen (one per distinct answer).
    answers: BTreeMap<String, BTreeMap<usize, u64>>,
    bytes: u64,
}

fn imap_client(
    idx: u64,
    a: Arc<HashMap<String, String>>,
    ready: Arc<Barrier>,
    start: Arc<std::sync::Mutex<Option<Instant>>>,
) -> Res<ClientResult> {
    let addr = arg(&a, "addr")?;
    let op = arg(&a, "op")?.to_string();
    let m: u64 = num(&a, "messages", None)?;
    let secs: f64 = num(&a, "seconds", Some(5.0))?;
    let seed: u64 = num(&a, "seed", Some(1))?;
    let words: Vec<String> =
        a.get("words").map(|w| w.split(',').map(str::to_string).collect()).unwrap_or_default();
    let mut c = match Imap::connect(addr, None) {
        Ok(c) => c,
        Err(e) => {
            ready.wait();
            return Err(e);
        }
    };
    let setup = c.login(arg(&a, "user")?, arg(&a, "pass")?).and_then(|_| c.select());
    let exists = match setup {
        Ok(n) => n,
        Err(e) => {
            ready.wait();
            return Err(e);
        }
    };
    ready.wait();
    let t0 = start.lock().unwrap().expect("start time");
    let deadline = t0 + Duration::from_secs_f64(secs);
    let mut rng = Rng::new(seed ^ (idx + 1).wrapping_mul(0x1000_0001));
    let mut r = ClientResult::default();
    if exists != m {
        r.errors.push(format!("SELECT INBOX: {exists} EXISTS, expected {m}"));
    }
    let mut i: u64 = 0;
    let mut store_msg = 1;
    loop {
        // STORE runs in +FLAGS/-FLAGS pairs on one message: stop only between pairs.
        if Instant::now() >= deadline && !(op == "store" && i % 2 == 1) {
            break;
        }
        let t = Instant::now();
        let res: Res<()> = match op.as_str() {
            "select" => c.select().and_then(|n| {
                if n == m {
                    Ok(())
                } else {
                    Err(format!("SELECT INBOX: {n} EXISTS, expected {m}"))
                }
            }),
            "fetch_flags" => {
                let mut n = 0u64;
                c.ok("UID FETCH 1:* FLAGS", &mut |b| {
                    if untagged_number(b, b"FETCH").is_some() {
                        n += 1;
                    }
                })
                .and_then(|_| {
                    if n == m {
                        Ok(())
                    } else {
                        Err(format!("UID FETCH 1:* FLAGS: {n} FETCH responses, expected {m}"))
                    }
                })
            }
            "fetch_headers" => {
                let lo = rng.range(1, m.saturating_sub(99).max(1));
                let hi = (lo + 99).min(m);
                let mut n = 0u64;
                let mut bytes = 0u64;
                let line = format!("FETCH {lo}:{hi} (BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE)])");
                c.ok(&line, &mut |b| {
                    if untagged_number(b, b"FETCH").is_some() {
                        n += 1;
                        bytes += b.len() as u64;
                    }
                })
                .and_then(|_| {
                    r.bytes += bytes;
                    if n == hi - lo + 1 {
                        Ok(())
                    } else {
                        Err(format!("{line}: {n} FETCH responses, expected {}", hi - lo + 1))
                    }
                })
            }
            "search_subject" | "search_body" => {
                let w = &words[((idx + i) % words.len() as u64) as usize];
                let key = if op == "search_subject" { "SUBJECT" } else { "BODY" };
                let mut count = None;
                c.ok(&format!("UID SEARCH {key} {w}"), &mut |b| {
                    if let Some(n) = search_count(b) {
                        count = Some(count.unwrap_or(0) + n);
                    }
                })
                .and_then(|_| {
                    let n = count.ok_or_else(|| format!("UID SEARCH {key} {w}: no SEARCH response"))?;
                    *r.answers.entry(w.clone()).or_default().entry(n).or_default() += 1;
                    Ok(())
                })
            }
            "store" => {
                let sign = if i.is_multiple_of(2) {
                    store_msg = rng.range(1, m);
                    '+'
                } else {
                    '-'
                };
                c.ok(&format!("STORE {store_msg} {sign}FLAGS (\\Flagged)"), &mut |_| {})
            }
            "append" => {
                // One small message into INBOX, with a synchronizing
                // literal (both servers offer LITERAL+, but a client
                // appending one message at a time waits for "+" anyway).
                c.n += 1;
                let tag = format!("a{}", c.n);
                let body = format!(
                    "From: Bench <bench@bench.example.com>\r\nTo: bench@bench.example.com\r\n\
                     Subject: appended {idx}.{i}\r\nMessage-ID: <append.{seed}.{idx}.{i}@bench>\r\n\r\n\
                     A message appended while the benchmark measures.\r\n"
                );
                c.send(format!("{tag} APPEND INBOX {{{}}}\r\n", body.len()).as_bytes())
                    .and_then(|_| c.read_response())
                    .and_then(|_| {
                        if c.buf.starts_with(b"+") {
                            Ok(())
                        } else {
                            Err(format!("APPEND: expected a continuation, got {}", lossy(&c.buf)))
                        }
                    })
                    .and_then(|_| c.send(format!("{body}\r\n").as_bytes()))
                    .and_then(|_| c.finish(&tag, &mut |_| {}))
                    .and_then(|r| if r.starts_with("OK") { Ok(()) } else { Err(format!("APPEND -> {r}")) })
            }
            _ => Err(format!("unknown --op {op}")),
        };
        r.lat.push(t.elapsed().as_secs_f64());
        r.ops += 1;
        i += 1;
        if let Err(e) = res {
            if r.errors.len() < 5 {
                r.errors.push(e);
            }
            if r.errors.len() >= 5 && op == "select" {
                break;
            }
        }
    }
    r.end = Some(Instant::now());
    let _ = c.cmd("LOGOUT", &mut |_| {});
    Ok(r)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn imap_ops(a: &HashMap<String, String>) -> Res<String> {
    let clients: u64 = num(a, "clients", Some(4))?;
    let a = Arc::new(a.clone());
    let ready = Arc::new(Barrier::new(clients as usize + 1));
    let start = Arc::new(std::sync::Mutex::new(None));
    let mut handles = Vec::new();
    {
        // Hold the start lock until every client is logged in and selected.
        let mut s = start.lock().unwrap();
        for idx in 0..clients {
            let (a, ready, start) = (a.clone(), ready.clone(), start.clone());
            handles.push(std::thread::spawn(move || imap_client(idx, a, ready, start)));
        }
        ready.wait();
        *s = Some(Instant::now());
    }
    let t0 = start.lock().unwrap().unwrap();
    let cpu0 = cpu_seconds();
    let mut all = Vec::new();
    for h in handles {
        all.push(h.join().map_err(|_| "a client thread panicked")??);
    }
    let cpu = cpu_seconds() - cpu0;
    let end = all.iter().filter_map(|r| r.end).max().unwrap_or(t0);
    let secs = (end - t0).as_secs_f64();
    let ops: u64 = all.iter().map(|r| r.ops).sum();
    let mut lat: Vec<f64> = all.iter().flat_map(|r| r.lat.iter().copied()).collect();
    lat.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let errors: Vec<String> = all.iter().flat_map(|r| r.errors.iter().cloned()).take(10).collect();
    let mut answers: BTreeMap<String, BTreeMap<usize, u64>> = BTreeMap::new();
    for r in &all {
        for (w, m) in &r.answers {
            for (n, k) in m {
                *answers.entry(w.clone()).or_default().entry(*n).or_default() += k;
            }
        }
    }
    let answers_json: Vec<String> = answers
        .iter()
        .map(|(w, m)| {
            let counts: Vec<String> = m.keys().map(|n| n.to_string()).collect();
            format!("{}: [{}]", json_str(w), counts.join(", "))
        })
        .collect();
    let errors_json: Vec<String> = errors.iter().map(|e| json_str(e)).collect();
    Ok(format!(
        "{{\"op\": {}, \"clients\": {}, \"ops\": {ops}, \"seconds\": {secs:.4}, \"ops_per_s\": {:.2}, \
         \"lat_ms\": {{\"p50\": {:.3}, \"p95\": {:.3}, \"max\": {:.3}}}, \"client_cpu_s\": {cpu:.3}, \
         \"bytes\": {}, \"answers\": {{{}}}, \"errors\": [{}]}}",
        json_str(arg(&a, "op")?),
        clients,
        ops as f64 / secs.max(1e-9),
        pct(&lat, 0.5) * 1e3,
        pct(&lat, 0.95) * 1e3,
        lat.last().copied().unwrap_or(0.0) * 1e3,
        all.iter().map(|r| r.bytes).sum::<u64>(),
        answers_json.join(", "),
        errors_json.join(", ")
    ))
}

// ----------------------------------------------------------------- IDLE --

fn idle_one(addr: &str, tls: Option<&Arc<rustls::ClientConfig>>, user: &str, pass: &str) -> Res<Imap> {
    let mut c = Imap::connect(addr, tls)?;
    c.login(user, pass)?;
    c.select()?;
    c.send(b"i1 IDLE\r\n")?;
    loop {
        c.read_response()?;
        if c.buf.starts_with(b"+") {
            return Ok(c);
        }
        if !c.buf.starts_with(b"* ") {
            return Err(format!("IDLE: {}", lossy(&c.buf)));
        }
    }
}

fn idle(a: &HashMap<String, String>) -> Res<String> {
    let n: usize = num(a, "connections", Some(1000))?;
    let threads: usize = num(a, "threads", Some(8))?;
    let tls = if a.contains_key("tls") { Some(tls_config()) } else { None };
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for t in 0..threads {
        let count = n / threads + usize::from(t < n % threads);
        let (addr, user, pass) = (arg(a, "addr")?.to_string(), arg(a, "user")?.to_string(), arg(a, "pass")?.to_string());
        let tls = tls.clone();
        handles.push(std::thread::spawn(move || {
            let mut conns = Vec::new();
            let mut errors = Vec::new();
            for _ in 0..count {
                match idle_one(&addr, tls.as_ref(), &user, &pass) {
                    Ok(c) => conns.push(c),
                    Err(e) => errors.push(e),
                }
            }
            (conns, errors)
        }));
    }
    let mut conns = Vec::new();
    let mut errors = Vec::new();
    for h in handles {
        let (c, e) = h.join().map_err(|_| "an idle thread panicked")?;
        conns.extend(c);
        errors.extend(e);
    }
    let opened = conns.len();
    let first_errors: Vec<String> = errors.iter().take(5).map(|e| json_str(e)).collect();
    println!(
        "{{\"opened\": {opened}, \"failed\": {}, \"seconds\": {:.3}, \"errors\": [{}]}}",
        errors.len(),
        t0.elapsed().as_secs_f64(),
        first_errors.join(", ")
    );
    io::stdout().flush().ok();
    // Hold the connections until told to let go.
    let mut line = String::new();
    let _ = io::stdin().read_line(&mut line);
    for c in conns.iter_mut() {
        let _ = c.send(b"DONE\r\ni2 LOGOUT\r\n");
    }
    std::thread::sleep(Duration::from_millis(200));
    drop(conns);
    Ok(format!("{{\"closed\": {opened}}}"))
}

// ----------------------------------------------------------------- POP3 --

fn pop_line(r: &mut BufReader<TcpStream>, buf: &mut Vec<u8>) -> Res<()> {
    buf.clear();
    let n = r.read_until(b'\n', buf).map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("connection closed by the server".to_string());
    }
    Ok(())
}

fn pop_ok(r: &mut BufReader<TcpStream>, buf: &mut Vec<u8>, what: &str) -> Res<()> {
    pop_line(r, buf)?;
    if buf.starts_with(b"+OK") {
        Ok(())
    } else {
        Err(format!("{what}: {}", lossy(buf)))
    }
}

struct PopResult {
    messages: u64,
    bytes: u64,
    end: Instant,
}

fn pop3_client(
    addr: String,
    user: String,
    pass: String,
    expect: u64,
    window: usize,
    ready: Arc<Barrier>,
) -> Res<PopResult> {
    let setup = (|| -> Res<(BufReader<TcpStream>, TcpStream)> {
        let sock = tcp(&addr)?;
        let w = sock.try_clone().map_err(|e| e.to_string())?;
        let mut r = BufReader::with_capacity(64 * 1024, sock);
        let mut buf = Vec::new();
        pop_ok(&mut r, &mut buf, "greeting")?;
        let mut wr = &w;
        wr.write_all(format!("USER {user}\r\n").as_bytes()).map_err(|e| e.to_string())?;
        pop_ok(&mut r, &mut buf, "USER")?;
        wr.write_all(format!("PASS {pass}\r\n").as_bytes()).map_err(|e| e.to_string())?;
        pop_ok(&mut r, &mut buf, "PASS")?;
        wr.write_all(b"STAT\r\n").map_err(|e| e.to_string())?;
        pop_ok(&mut r, &mut buf, "STAT")?;
        let n: u64 = String::from_utf8_lossy(&buf)
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("STAT: {}", lossy(&buf)))?;
        if n != expect {
            return Err(format!("STAT: {n} messages, expected {expect}"));
        }
        Ok((r, w))
    })();
    let (mut r, w) = match setup {
        Ok(x) => x,
        Err(e) => {
            ready.wait();
            return Err(format!("{user}: {e}"));
        }
    };
    ready.wait();
    // The writer sends RETR i / DELE i with at most `window` commands
    // unanswered; the reader acknowledges each answer.
    let (ack_tx, ack_rx) = mpsc::channel::<()>();
    let writer = std::thread::spawn(move || -> Res<()> {
        let mut out = BufWriter::new(w);
        let mut sent = 0usize;
        let mut acked = 0usize;
        let mut cmds: Vec<String> = Vec::new();
        for i in 1..=expect {
            cmds.push(format!("RETR {i}\r\n"));
            cmds.push(format!("DELE {i}\r\n"));
        }
        cmds.push("QUIT\r\n".to_string());
        for c in cmds {
            while sent - acked >= window {
                out.flush().map_err(|e| e.to_string())?;
                if ack_rx.recv().is_err() {
                    return Ok(()); // the reader stopped (an error there)
                }
                acked += 1;
            }
            out.write_all(c.as_bytes()).map_err(|e| e.to_string())?;
            sent += 1;
        }
        out.flush().map_err(|e| e.to_string())
    });
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut bytes = 0u64;
    let read = (|| -> Res<()> {
        for i in 1..=expect {
            pop_ok(&mut r, &mut buf, &format!("RETR {i}"))?;
            loop {
                pop_line(&mut r, &mut buf)?;
                if buf == b".\r\n" {
                    break;
                }
                bytes += buf.len() as u64;
            }
            let _ = ack_tx.send(());
            pop_ok(&mut r, &mut buf, &format!("DELE {i}"))?;
            let _ = ack_tx.send(());
        }
        pop_ok(&mut r, &mut buf, "QUIT")
    })();
    let end = Instant::now();
    drop(ack_tx);
    let wr = writer.join().map_err(|_| "writer panicked")?;
    read.map_err(|e| format!("{user}: {e}"))?;
    wr.map_err(|e| format!("{user}: write: {e}"))?;
    Ok(PopResult { messages: expect, bytes, end })
}

/// What is left in a mailbox after QUIT (should be nothing). Asked only
/// once every client has finished: this is another login, and one client's
/// login must not take CPU from the others while they are being timed.
fn pop3_left(addr: &str, user: &str, pass: &str) -> Option<u64> {
    (|| -> Res<u64> {
        let sock = tcp(addr)?;
        let mut wr = sock.try_clone().map_err(|e| e.to_string())?;
        let mut r = BufReader::new(sock);
        let mut buf = Vec::new();
        pop_ok(&mut r, &mut buf, "greeting")?;
        wr.write_all(format!("USER {user}\r\nPASS {pass}\r\nSTAT\r\nQUIT\r\n").as_bytes()).map_err(|e| e.to_string())?;
        pop_ok(&mut r, &mut buf, "USER")?;
        pop_ok(&mut r, &mut buf, "PASS")?;
        pop_ok(&mut r, &mut buf, "STAT")?;
        let n = String::from_utf8_lossy(&buf).split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
        let _ = pop_line(&mut r, &mut buf);
        Ok(n)
    })()
    .ok()
}

fn pop3(a: &HashMap<String, String>) -> Res<String> {
    let users: Vec<String> = arg(a, "users")?.split(',').map(str::to_string).collect();
    let expect: u64 = num(a, "expect", None)?;
    let window: usize = num(a, "window", Some(32))?;
    let ready = Arc::new(Barrier::new(users.len() + 1));
    let mut handles = Vec::new();
    for u in &users {
        let (addr, user, pass, ready) = (arg(a, "addr")?.to_string(), u.clone(), arg(a, "pass")?.to_string(), ready.clone());
        handles.push(std::thread::spawn(move || pop3_client(addr, user, pass, expect, window, ready)));
    }
    ready.wait();
    let t0 = Instant::now();
    let cpu0 = cpu_seconds();
    let mut res = Vec::new();
    let mut errors = Vec::new();
    for h in handles {
        match h.join().map_err(|_| "a POP3 thread panicked")? {
            Ok(r) => res.push(r),
            Err(e) => errors.push(e),
        }
    }
    let cpu = cpu_seconds() - cpu0;
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let end = res.iter().map(|r| r.end).max().unwrap_or(t0);
    let secs = (end - t0).as_secs_f64();
    let msgs: u64 = res.iter().map(|r| r.messages).sum();
    let bytes: u64 = res.iter().map(|r| r.bytes).sum();
    let addr = arg(a, "addr")?;
    let pass = arg(a, "pass")?;
    let left: Vec<String> = users
        .iter()
        .map(|u| pop3_left(addr, u, pass).map(|n| n.to_string()).unwrap_or("null".into()))
        .collect();
    Ok(format!(
        "{{\"messages\": {msgs}, \"bytes\": {bytes}, \"seconds\": {secs:.4}, \"msgs_per_s\": {:.2}, \
         \"client_cpu_s\": {cpu:.3}, \"left_after_quit\": [{}]}}",
        msgs as f64 / secs.max(1e-9),
        left.join(", ")
    ))
}
