//! Message content as it arrives after DATA (dot-terminated, RFC 5321
//! 4.1.1.4 and 4.5.2) or in BDAT chunks (RFC 3030).
//!
//! SMTP smuggling is prevented here: only `<CRLF>.<CRLF>` ends DATA. A bare
//! LF or bare CR never starts a line for the purpose of finding the end, and
//! every line end is stored as CRLF, so nothing that follows a bare line end
//! can later be read as a terminator by another server. Bare line ends are
//! counted so a strict configuration can refuse the message.

use std::mem;

/// Turns bare CR and bare LF into CRLF across chunk boundaries, counting them.
#[derive(Debug, Default)]
struct LineEndings {
    pending_cr: bool,
    bare: u64,
}

impl LineEndings {
    fn push(&mut self, input: &[u8], out: &mut Sink) {
        let mut rest = input;
        while !rest.is_empty() {
            if self.pending_cr {
                self.pending_cr = false;
                out.extend(b"\r\n");
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                } else {
                    self.bare += 1;
                }
                continue;
            }
            match memchr::memchr2(b'\r', b'\n', rest) {
                None => {
                    out.extend(rest);
                    return;
                }
                Some(i) => {
                    out.extend(&rest[..i]);
                    if rest[i] == b'\r' {
                        self.pending_cr = true;
                    } else {
                        self.bare += 1;
                        out.extend(b"\r\n");
                    }
                    rest = &rest[i + 1..];
                }
            }
        }
    }

    fn finish(&mut self, out: &mut Sink) {
        if self.pending_cr {
            self.pending_cr = false;
            self.bare += 1;
            out.extend(b"\r\n");
        }
    }
}

/// How much decoded content is held before it is handed on as one
/// [`crate::Action::BodyChunk`]: 64 KiB keeps a connection's memory small
/// (40 connections hold 2.5 MiB) while each write to the spool file is
/// large enough not to cost a system call per line.
pub const BODY_CHUNK: usize = 64 * 1024;

/// Collects the decoded body up to the size limit, then only counts. The
/// owner takes what has collected with [`Sink::take`], so it never holds
/// a whole message.
#[derive(Debug)]
struct Sink {
    body: Vec<u8>,
    limit: u64,
    total: u64,
}

impl Sink {
    fn new(limit: u64) -> Self {
        Sink {
            body: Vec::new(),
            limit,
            total: 0,
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        self.total = self.total.saturating_add(bytes.len() as u64);
        if self.total <= self.limit {
            self.body.extend_from_slice(bytes);
        } else if !self.body.is_empty() {
            // Over the limit: the message will be refused, keep no memory.
            self.body = Vec::new();
        }
    }

    fn overflowed(&self) -> bool {
        self.total > self.limit
    }

    /// What has collected, once it is at least `min` bytes; nothing past
    /// the limit (that message is refused, none of it is written).
    fn take(&mut self, min: usize) -> Option<Vec<u8>> {
        if self.overflowed() || self.body.len() < min || self.body.is_empty() {
            return None;
        }
        Some(mem::take(&mut self.body))
    }
}

/// What a finished decoder hands over.
#[derive(Debug)]
pub struct DecodedBody {
    /// CRLF-normalised content not yet taken with `take_chunk` (all of it
    /// when nothing was); empty when `too_big`.
    pub body: Vec<u8>,
    /// The size of the whole decoded content (taken chunks included).
    pub size: u64,
    pub too_big: bool,
    /// Bare CR or LF line ends seen (and converted to CRLF).
    pub bare_line_ends: u64,
    pub has_8bit: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DotState {
    /// At the start of a line (after a real CRLF, or at the very start).
    LineStart,
    /// Inside a line.
    Mid,
    /// A `.` at the start of a line was seen and held back.
    Dot,
    /// `.` then CR at the start of a line.
    DotCr,
    /// A CR inside a line was seen; a LF next makes a real line end.
    Cr,
}

/// Decodes dot-terminated DATA content.
#[derive(Debug)]
pub struct DataDecoder {
    state: DotState,
    endings: LineEndings,
    sink: Sink,
    has_8bit: bool,
}

impl DataDecoder {
    pub fn new(limit: u64) -> Self {
        DataDecoder {
            state: DotState::LineStart,
            endings: LineEndings::default(),
            sink: Sink::new(limit),
            has_8bit: false,
        }
    }

    /// Feeds bytes; returns how many were consumed and whether the end was
    /// reached. Bytes after the terminator are left to the caller (pipelined
    /// commands).
    pub fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                DotState::Mid => {
                    // Fast path: copy up to the next CR or LF in one go.
                    let run = &input[i..];
                    let n = memchr::memchr2(b'\r', b'\n', run).unwrap_or(run.len());
                    self.emit(&run[..n]);
                    i += n;
                    if n < run.len() {
                        if run[n] == b'\r' {
                            self.state = DotState::Cr;
                        } else {
                            // Bare LF: stored as CRLF, but never a line start.
                            self.emit(b"\n");
                        }
                        i += 1;
                    }
                }
                DotState::LineStart => {
                    i += 1;
                    match b {
                        b'.' => self.state = DotState::Dot,
                        b'\r' => self.state = DotState::Cr,
                        b'\n' => {
                            self.emit(b"\n");
                            self.state = DotState::Mid;
                        }
                        _ => {
                            self.emit(&[b]);
                            self.state = DotState::Mid;
                        }
                    }
                }
                DotState::Cr => {
                    if b == b'\n' {
                        self.emit(b"\r\n");
                        self.state = DotState::LineStart;
                        i += 1;
                    } else {
                        // Bare CR: stored as CRLF, never a line start; `b`
                        // is looked at again inside the line.
                        self.emit(b"\r");
                        self.state = DotState::Mid;
                    }
                }
                DotState::Dot => {
                    if b == b'\r' {
                        self.state = DotState::DotCr;
                        i += 1;
                    } else {
                        // RFC 5321 4.5.2: a leading dot with more on the line
                        // is removed.
                        self.state = DotState::Mid;
                    }
                }
                DotState::DotCr => {
                    if b == b'\n' {
                        return (i + 1, true);
                    }
                    // `.` CR x: the dot is stuffing, the CR is bare.
                    self.emit(b"\r");
                    self.state = DotState::Mid;
                }
            }
        }
        (i, false)
    }

    fn emit(&mut self, bytes: &[u8]) {
        if !self.has_8bit && !bytes.is_ascii() {
            self.has_8bit = true;
        }
        self.endings.push(bytes, &mut self.sink);
    }

    /// The decoded content so far, once at least `min` bytes have
    /// collected (and the size limit is not passed).
    pub fn take_chunk(&mut self, min: usize) -> Option<Vec<u8>> {
        self.sink.take(min)
    }

    pub fn finish(mut self) -> DecodedBody {
        self.endings.finish(&mut self.sink);
        DecodedBody {
            too_big: self.sink.overflowed(),
            size: self.sink.total,
            body: self.sink.body,
            bare_line_ends: self.endings.bare,
            has_8bit: self.has_8bit,
        }
    }
}

/// Collects BDAT chunks: octet-counted, no dot handling (RFC 3030 2).
#[derive(Debug)]
pub struct ChunkCollector {
    endings: LineEndings,
    sink: Sink,
    has_8bit: bool,
}

impl ChunkCollector {
    pub fn new(limit: u64) -> Self {
        ChunkCollector {
            endings: LineEndings::default(),
            sink: Sink::new(limit),
            has_8bit: false,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if !self.has_8bit && !bytes.is_ascii() {
            self.has_8bit = true;
        }
        self.endings.push(bytes, &mut self.sink);
    }

    pub fn too_big(&self) -> bool {
        self.sink.overflowed()
    }

    /// As [`DataDecoder::take_chunk`].
    pub fn take_chunk(&mut self, min: usize) -> Option<Vec<u8>> {
        self.sink.take(min)
    }

    pub fn finish(mut self) -> DecodedBody {
        self.endings.finish(&mut self.sink);
        DecodedBody {
            too_big: self.sink.overflowed(),
            size: self.sink.total,
            body: self.sink.body,
            bare_line_ends: self.endings.bare,
            has_8bit: self.has_8bit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> (Option<DecodedBody>, usize) {
        let mut d = DataDecoder::new(1 << 20);
        let (n, done) = d.feed(input);
        (done.then(|| d.finish()), n)
    }

    #[test]
    fn terminator_and_unstuffing() {
        let (b, n) = decode_all(b"Subject: x\r\n\r\n..hidden\r\n.\r\nQUIT\r\n");
        let b = b.unwrap();
        assert_eq!(b.body, b"Subject: x\r\n\r\n.hidden\r\n");
        assert_eq!(n, b"Subject: x\r\n\r\n..hidden\r\n.\r\n".len());
        let (b, _) = decode_all(b".\r\n");
        assert_eq!(b.unwrap().body, b"");
    }

    #[test]
    fn smuggling_sequences_do_not_end_data() {
        // The published sequences: <LF>.<LF>, <LF>.<CRLF>, <CR>.<CR>,
        // <CRLF>.<LF>, <CR>.<CRLF>, <LF>.<CR>, <CRLF>.<CR> followed by a
        // smuggled command, none of which is <CRLF>.<CRLF>.
        for seq in [
            &b"\n.\n"[..],
            b"\n.\r\n",
            b"\r.\r",
            b"\r\n.\n",
            b"\r.\r\n",
            b"\n.\r",
            b"\r\n.\r",
            b"\r\n\x00.\r\n",
        ] {
            let mut msg = b"Subject: x\r\n\r\nbody".to_vec();
            msg.extend_from_slice(seq);
            msg.extend_from_slice(b"MAIL FROM:<evil@example.com>\r\n");
            let mut d = DataDecoder::new(1 << 20);
            let (n, done) = d.feed(&msg);
            assert!(!done, "{seq:?} ended DATA");
            assert_eq!(n, msg.len());
            let (_, done) = d.feed(b"\r\n.\r\n");
            assert!(done);
            let body = d.finish();
            // Stored with CRLF only: no bare CR/LF survives.
            let s = &body.body;
            for (i, &c) in s.iter().enumerate() {
                if c == b'\n' {
                    assert_eq!(s[i - 1], b'\r');
                }
                if c == b'\r' {
                    assert_eq!(s[i + 1], b'\n');
                }
            }
        }
    }

    #[test]
    fn split_feeding_matches_whole() {
        let msg = b"a\r\n..b\r\nc\nd\re\r\n.\r\n";
        let (whole, _) = decode_all(msg);
        let whole = whole.unwrap();
        for split in 1..msg.len() {
            let mut d = DataDecoder::new(1 << 20);
            let (n1, done1) = d.feed(&msg[..split]);
            assert_eq!(n1, split);
            assert!(!done1);
            let (_, done) = d.feed(&msg[split..]);
            assert!(done);
            let b = d.finish();
            assert_eq!(b.body, whole.body);
            assert_eq!(b.bare_line_ends, whole.bare_line_ends);
        }
        assert_eq!(whole.body, b"a\r\n.b\r\nc\r\nd\r\ne\r\n");
        assert_eq!(whole.bare_line_ends, 2);
    }

    #[test]
    fn size_limit_keeps_scanning() {
        let mut d = DataDecoder::new(10);
        let (_, done) = d.feed(b"0123456789012345\r\n.\r\n");
        assert!(done);
        let b = d.finish();
        assert!(b.too_big);
        assert!(b.body.is_empty());
    }

    #[test]
    fn taken_chunks_and_the_rest_make_the_body() {
        let line = b"0123456789abcdef\r\n";
        let mut input = Vec::new();
        for _ in 0..10_000 {
            input.extend_from_slice(line);
        }
        let expected = input.clone();
        input.extend_from_slice(b".\r\n");
        let mut d = DataDecoder::new(1 << 20);
        let mut got = Vec::new();
        let mut held = 0;
        for piece in input.chunks(8192) {
            d.feed(piece);
            if let Some(c) = d.take_chunk(BODY_CHUNK) {
                got.extend_from_slice(&c);
            }
            held = held.max(d.sink.body.len());
        }
        // Never more than a chunk and one piece of input held.
        assert!(held < BODY_CHUNK + 8192 * 2, "held {held}");
        let b = d.finish();
        assert_eq!(b.size, expected.len() as u64);
        got.extend_from_slice(&b.body);
        assert_eq!(got, expected);
    }

    #[test]
    fn nothing_is_taken_past_the_limit() {
        let mut d = DataDecoder::new(100);
        d.feed(&[b'x'; 60]);
        assert_eq!(d.take_chunk(50).map(|c| c.len()), Some(60));
        d.feed(&[b'x'; 60]);
        assert_eq!(d.take_chunk(1), None);
        let (_, done) = d.feed(b"\r\n.\r\n");
        assert!(done);
        let b = d.finish();
        assert!(b.too_big && b.body.is_empty());
    }

    #[test]
    fn chunks_normalise_across_boundaries() {
        let mut c = ChunkCollector::new(100);
        c.push(b"a\r");
        c.push(b"\nb\n");
        c.push(b"c\r");
        let b = c.finish();
        assert_eq!(b.body, b"a\r\nb\r\nc\r\n");
        assert_eq!(b.bare_line_ends, 2);
    }
}
