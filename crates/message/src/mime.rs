//! The MIME tree (RFC 2045, RFC 2046) of a message, with the exact byte
//! offsets of each part's header and body, which IMAP needs (BODYSTRUCTURE
//! sizes and line counts, BODY[n], BODY[n.MIME], partial fetches) and the
//! 7-bit conversion walks. Pure: no I/O, no panics on malformed input,
//! limits on depth and part count.
//!
//! Every size and section is exact: the CRLF before a boundary delimiter
//! belongs to the delimiter (RFC 2046 5.1.1), a part's body ends before
//! it, a boundary line is any line starting with `--boundary` (the longest
//! boundary of the enclosing multiparts wins, as in Dovecot), an outer
//! boundary ends inner multiparts, and a missing close delimiter ends
//! everything at the end of the message.
//!
//! mail-parser's part offsets were not usable here: its body end includes
//! the CRLF that RFC 2046 5.1.1 gives to the delimiter, and it has no
//! longest-boundary rule, so BODY[n] sizes would differ from Dovecot's
//! (the IMAP conformance tests compare them). Its charset tables are used
//! (crate::decode).

use std::num::NonZeroU32;

use crate::decode;
use crate::header::{
    fields, first_value as first, header_end, is_blank_line, line_end, read_comment, read_quoted, unfold,
};

/// Deepest nesting of multipart and message/rfc822 parts that is parsed;
/// deeper ones are single parts.
pub const MAX_DEPTH: usize = 40;
/// Most MIME parts parsed in one message; further parts of a multipart are
/// left in its epilogue.
pub const MAX_PARTS: usize = 10_000;

/// The part's Content-Transfer-Encoding is none this crate can undo
/// (RFC 3516: IMAP answers `NO [UNKNOWN-CTE]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownCte;

impl std::fmt::Display for UnknownCte {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unknown content transfer encoding")
    }
}

impl std::error::Error for UnknownCte {}

/// MIME parameters: (attribute, value) as written.
pub type Params = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    pub ty: Vec<u8>,
    pub subtype: Vec<u8>,
    /// As written, RFC 2231 continuations merged.
    pub params: Params,
}

impl ContentType {
    pub fn text_plain() -> Self {
        ContentType {
            ty: b"text".to_vec(),
            subtype: b"plain".to_vec(),
            params: Vec::new(),
        }
    }

    pub fn message_rfc822() -> Self {
        ContentType {
            ty: b"message".to_vec(),
            subtype: b"rfc822".to_vec(),
            params: Vec::new(),
        }
    }

    pub fn is(&self, ty: &str, subtype: &str) -> bool {
        self.ty.eq_ignore_ascii_case(ty.as_bytes()) && self.subtype.eq_ignore_ascii_case(subtype.as_bytes())
    }

    pub fn is_text(&self) -> bool {
        self.ty.eq_ignore_ascii_case(b"text")
    }

    /// message/rfc822 or message/global (RFC 9051 body-type-msg).
    pub fn is_message(&self) -> bool {
        self.is("message", "rfc822") || self.is("message", "global")
    }

    pub fn param(&self, name: &str) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }
}

#[derive(Debug)]
pub enum Kind {
    Leaf,
    Multipart(Vec<Entity>),
    /// message/rfc822: the encapsulated message.
    Message(Box<Entity>),
}

/// A MIME entity: `raw[start..header_end]` is its header (blank line
/// included), `raw[header_end..end]` its body.
#[derive(Debug)]
pub struct Entity {
    pub start: usize,
    pub header_end: usize,
    pub end: usize,
    /// Its Content-Type, or the default where it has none or an invalid
    /// one (RFC 2045 5.2; RFC 2046 5.1.5 in a multipart/digest).
    pub ct: ContentType,
    pub kind: Kind,
}

/// A boundary delimiter line.
#[derive(Debug, Clone, Copy)]
struct Hit {
    /// Start of the delimiter line.
    start: usize,
    /// After its line break.
    end: usize,
    /// Index of the boundary in the stack.
    level: usize,
    close: bool,
}

struct MimeParser<'a> {
    raw: &'a [u8],
    boundaries: Vec<Vec<u8>>,
    parts: usize,
}

/// The MIME tree of a message: the root entity is the whole message
/// (`start` 0, `end` its length), every part's offsets exact, so that
/// `raw[start..header_end]` and `raw[header_end..end]` are what IMAP
/// BODY[n.MIME] and BODY[n] return. Never fails: anything unparseable is a
/// leaf.
pub fn parse(raw: &[u8]) -> Entity {
    let mut parser = MimeParser {
        raw,
        boundaries: Vec::new(),
        parts: 0,
    };
    let (root, _) = parser.entity(0, &ContentType::text_plain(), 0, false);
    root
}

impl MimeParser<'_> {
    /// The delimiter line `[start, end)`, if it is one.
    fn hit(&self, start: usize, end: usize) -> Option<Hit> {
        if self.boundaries.is_empty() {
            return None;
        }
        let rest = self.raw.get(start..end)?.strip_prefix(b"--")?;
        let mut best: Option<(usize, usize)> = None;
        for (level, b) in self.boundaries.iter().enumerate().rev() {
            if rest.starts_with(b) && best.is_none_or(|(_, len)| b.len() > len) {
                best = Some((level, b.len()));
            }
        }
        best.map(|(level, len)| Hit {
            start,
            end,
            level,
            close: rest[len..].starts_with(b"--"),
        })
    }

    /// The next delimiter line at or after `pos` (which starts a line).
    fn next_hit(&self, mut pos: usize) -> Option<Hit> {
        if self.boundaries.is_empty() {
            return None;
        }
        while pos < self.raw.len() {
            let end = line_end(self.raw, pos);
            if let Some(hit) = self.hit(pos, end) {
                return Some(hit);
            }
            pos = end;
        }
        None
    }

    /// Where the content before a delimiter line at `hit_start` ends: before
    /// the line break that belongs to the delimiter, not before `floor`.
    fn end_before(&self, hit_start: usize, floor: usize) -> usize {
        let raw = self.raw;
        if hit_start >= floor + 2 && raw.get(hit_start - 2..hit_start) == Some(b"\r\n") {
            hit_start - 2
        } else if hit_start > floor && raw.get(hit_start - 1) == Some(&b'\n') {
            hit_start - 1
        } else {
            hit_start.max(floor)
        }
    }

    /// Parses the entity starting at `start`; returns it and the delimiter
    /// line that ended it (`None`: the end of the message).
    fn entity(
        &mut self,
        start: usize,
        default: &ContentType,
        depth: usize,
        leaf_only: bool,
    ) -> (Entity, Option<Hit>) {
        self.parts += 1;
        let raw = self.raw;
        // Header: up to the blank line, or a delimiter line, or the end.
        let mut pos = start;
        let mut header_end = raw.len();
        let mut header_hit = None;
        while pos < raw.len() {
            let end = line_end(raw, pos);
            if is_blank_line(&raw[pos..end]) {
                header_end = end;
                break;
            }
            if let Some(hit) = self.hit(pos, end) {
                header_end = self.end_before(pos, start);
                header_hit = Some(hit);
                break;
            }
            pos = end;
        }
        let fields: Vec<_> = fields(&raw[start..header_end]).collect();
        let ct = first(&fields, b"content-type")
            .and_then(|v| parse_content_type(&unfold(v)))
            .unwrap_or_else(|| default.clone());
        if header_hit.is_some() {
            // No body: a message/rfc822 part then holds an empty message.
            let kind = if ct.is_message() && !leaf_only {
                let inner = Entity {
                    start: header_end,
                    header_end,
                    end: header_end,
                    ct: ContentType::text_plain(),
                    kind: Kind::Leaf,
                };
                Kind::Message(Box::new(inner))
            } else {
                Kind::Leaf
            };
            return (
                Entity {
                    start,
                    header_end,
                    end: header_end,
                    ct,
                    kind,
                },
                header_hit,
            );
        }
        let can_nest = !leaf_only && depth < MAX_DEPTH && self.parts < MAX_PARTS;
        let boundary = if ct.ty.eq_ignore_ascii_case(b"multipart") {
            ct.param("boundary").filter(|b| !b.is_empty()).map(<[u8]>::to_vec)
        } else {
            None
        };
        match boundary {
            Some(boundary) if can_nest => {
                let child_default = if ct.is("multipart", "digest") {
                    ContentType::message_rfc822()
                } else {
                    ContentType::text_plain()
                };
                let (mut children, end, hit) = self.multipart(header_end, boundary, &child_default, depth);
                if children.is_empty() {
                    // No parts: an empty text/plain part 1, as Dovecot shows.
                    let ct = ContentType::text_plain();
                    children.push(Entity {
                        start: end,
                        header_end: end,
                        end,
                        ct,
                        kind: Kind::Leaf,
                    });
                }
                (
                    Entity {
                        start,
                        header_end,
                        end,
                        ct,
                        kind: Kind::Multipart(children),
                    },
                    hit,
                )
            }
            _ if ct.is_message() && !leaf_only => {
                let (inner, hit) = self.entity(header_end, &ContentType::text_plain(), depth + 1, !can_nest);
                let end = inner.end;
                (
                    Entity {
                        start,
                        header_end,
                        end,
                        ct,
                        kind: Kind::Message(Box::new(inner)),
                    },
                    hit,
                )
            }
            _ => {
                let hit = self.next_hit(header_end);
                let end = hit.map_or(raw.len(), |h| self.end_before(h.start, header_end));
                (
                    Entity {
                        start,
                        header_end,
                        end,
                        ct,
                        kind: Kind::Leaf,
                    },
                    hit,
                )
            }
        }
    }

    /// The body of a multipart starting at `body`: (children, end of the
    /// body, the delimiter line of an enclosing multipart that ended it).
    fn multipart(
        &mut self,
        body: usize,
        boundary: Vec<u8>,
        child_default: &ContentType,
        depth: usize,
    ) -> (Vec<Entity>, usize, Option<Hit>) {
        self.boundaries.push(boundary);
        let level = self.boundaries.len() - 1;
        let mut children = Vec::new();
        // The preamble.
        let mut hit = self.next_hit(body);
        loop {
            match hit {
                None => {
                    self.boundaries.truncate(level);
                    return (children, self.raw.len(), None);
                }
                Some(h) if h.level < level => {
                    self.boundaries.truncate(level);
                    return (children, self.end_before(h.start, body), Some(h));
                }
                Some(h) if h.close || self.parts >= MAX_PARTS => {
                    // The epilogue runs to an enclosing delimiter or the end.
                    self.boundaries.truncate(level);
                    let outer = self.next_hit(h.end);
                    let end = outer.map_or(self.raw.len(), |o| self.end_before(o.start, body));
                    return (children, end, outer);
                }
                Some(h) => {
                    let (child, next) = self.entity(h.end, child_default, depth + 1, false);
                    children.push(child);
                    hit = next;
                }
            }
        }
    }
}

/// Part `n` of a message: its n-th part if multipart, else part 1 is its body.
fn message_part(m: &Entity, n: u32) -> Option<&Entity> {
    match &m.kind {
        Kind::Multipart(children) => children.get(usize::try_from(n).ok()?.checked_sub(1)?),
        _ if n == 1 => Some(m),
        _ => None,
    }
}

/// The entity a part number (`1.2.3`) names.
pub fn resolve<'t>(root: &'t Entity, path: &[NonZeroU32]) -> Option<&'t Entity> {
    let (first, rest) = path.split_first()?;
    let mut cur = message_part(root, first.get())?;
    for n in rest {
        cur = match &cur.kind {
            Kind::Multipart(children) => children.get(usize::try_from(n.get()).ok()?.checked_sub(1)?)?,
            Kind::Message(m) => message_part(m, n.get())?,
            Kind::Leaf => return None,
        };
    }
    Some(cur)
}

/// The message HEADER/TEXT refer to: the whole message, or the one
/// encapsulated in a message/rfc822 part, as (start, end of header, end).
/// The whole message needs no MIME parsing.
pub fn message_span(raw: &[u8], path: Option<&[NonZeroU32]>) -> Option<(usize, usize, usize)> {
    let Some(path) = path else {
        return Some((0, header_end(raw), raw.len()));
    };
    let root = parse(raw);
    match &resolve(&root, path)?.kind {
        Kind::Message(m) => Some((m.start, m.header_end, m.end)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// MIME header values (RFC 2045, RFC 2183, RFC 2231)
// ---------------------------------------------------------------------------

fn is_tspecial(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')'
            | b'<'
            | b'>'
            | b'@'
            | b','
            | b';'
            | b':'
            | b'\\'
            | b'"'
            | b'/'
            | b'['
            | b']'
            | b'?'
            | b'='
    )
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a [u8]) -> Self {
        Lexer { s, i: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips white space and (nested) comments.
    fn skip_cfws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.i += 1,
                b'(' => {
                    self.comment();
                }
                _ => break,
            }
        }
    }

    /// A comment starting at `(`; returns its content.
    fn comment(&mut self) -> Vec<u8> {
        read_comment(self.s, &mut self.i)
    }

    /// A quoted string starting at `"`; returns its content, unescaped.
    fn quoted(&mut self) -> Vec<u8> {
        read_quoted(self.s, &mut self.i)
    }

    /// A MIME token (8-bit bytes allowed, for the sloppy).
    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while let Some(b) = self.peek() {
            if b <= b' ' || b == 0x7f || is_tspecial(b) {
                break;
            }
            self.i += 1;
        }
        (self.i > start).then(|| &self.s[start..self.i])
    }

    /// A parameter value: quoted string or token.
    fn value(&mut self) -> Option<Vec<u8>> {
        match self.peek() {
            Some(b'"') => Some(self.quoted()),
            _ => self.token().map(<[u8]>::to_vec),
        }
    }

    /// Skips to just after the next `;` outside quotes; false at the end.
    fn skip_past_semicolon(&mut self) -> bool {
        while let Some(b) = self.peek() {
            match b {
                b';' => {
                    self.i += 1;
                    return true;
                }
                b'"' => {
                    self.quoted();
                }
                b'(' => {
                    self.comment();
                }
                _ => self.i += 1,
            }
        }
        false
    }

    /// `*(";" attribute "=" value)`, RFC 2231 continuations merged.
    fn params(&mut self) -> Params {
        let mut raw_params = Vec::new();
        loop {
            self.skip_cfws();
            match self.peek() {
                None => break,
                Some(b';') => self.i += 1,
                Some(_) => {
                    if !self.skip_past_semicolon() {
                        break;
                    }
                }
            }
            self.skip_cfws();
            let Some(name) = self.token() else {
                continue;
            };
            self.skip_cfws();
            if self.peek() != Some(b'=') {
                continue;
            }
            self.i += 1;
            self.skip_cfws();
            if let Some(value) = self.value() {
                raw_params.push((name.to_vec(), value));
            }
        }
        merge_rfc2231(raw_params)
    }
}

/// RFC 2231: `name*0`, `name*1`... merged into `name`; when any section is
/// encoded (`name*0*`), into `name*` with the `charset'language'` prefix and
/// the plain sections %-escaped. Merged parameters come after the others.
fn merge_rfc2231(params: Params) -> Params {
    struct Piece {
        index: u32,
        extended: bool,
        value: Vec<u8>,
    }
    let mut plain = Vec::new();
    let mut groups: Vec<(Vec<u8>, Vec<Piece>)> = Vec::new();
    for (name, value) in params {
        let Some(star) = memchr::memchr(b'*', &name) else {
            plain.push((name, value));
            continue;
        };
        let (base, rest) = (&name[..star], &name[star + 1..]);
        let (digits, extended) = match rest.strip_suffix(b"*") {
            Some(d) => (d, true),
            None => (rest, false),
        };
        let index = std::str::from_utf8(digits)
            .ok()
            .filter(|d| !d.is_empty())
            .and_then(|d| d.parse::<u32>().ok());
        let (Some(index), false) = (index, base.is_empty()) else {
            plain.push((name, value));
            continue;
        };
        let piece = Piece {
            index,
            extended,
            value,
        };
        match groups.iter_mut().find(|(b, _)| b.eq_ignore_ascii_case(base)) {
            Some((_, pieces)) => pieces.push(piece),
            None => groups.push((base.to_vec(), vec![piece])),
        }
    }
    for (base, mut pieces) in groups {
        pieces.sort_by_key(|s| s.index);
        let contiguous: Vec<&Piece> = pieces
            .iter()
            .enumerate()
            .take_while(|(i, s)| s.index as usize == *i)
            .map(|(_, s)| s)
            .collect();
        if contiguous.is_empty() {
            continue;
        }
        let extended = contiguous.iter().any(|s| s.extended);
        let mut value = Vec::new();
        if extended && !contiguous[0].extended {
            value.extend_from_slice(b"''");
        }
        for s in &contiguous {
            if extended && !s.extended {
                for &b in &s.value {
                    if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                        value.push(b);
                    } else {
                        value.extend_from_slice(format!("%{b:02X}").as_bytes());
                    }
                }
            } else {
                value.extend_from_slice(&s.value);
            }
        }
        let mut name = base;
        if extended {
            name.push(b'*');
        }
        plain.push((name, value));
    }
    plain
}

/// `type "/" subtype *(";" parameter)`; `None` when invalid.
pub fn parse_content_type(value: &[u8]) -> Option<ContentType> {
    let mut lx = Lexer::new(value);
    lx.skip_cfws();
    let ty = lx.token()?.to_vec();
    lx.skip_cfws();
    if lx.peek() != Some(b'/') {
        return None;
    }
    lx.i += 1;
    lx.skip_cfws();
    let subtype = lx.token()?.to_vec();
    let params = lx.params();
    Some(ContentType { ty, subtype, params })
}

/// Content-Disposition: (type, parameters).
pub fn parse_disposition(value: &[u8]) -> Option<(Vec<u8>, Params)> {
    let mut lx = Lexer::new(value);
    lx.skip_cfws();
    let ty = lx.token()?.to_vec();
    let params = lx.params();
    Some((ty, params))
}

/// A single token (Content-Transfer-Encoding).
pub fn parse_token(value: &[u8]) -> Option<Vec<u8>> {
    let mut lx = Lexer::new(value);
    lx.skip_cfws();
    lx.token().map(<[u8]>::to_vec)
}

/// Content-Language: the comma-separated tags.
pub fn parse_languages(value: &[u8]) -> Vec<Vec<u8>> {
    let mut lx = Lexer::new(value);
    let mut out = Vec::new();
    loop {
        lx.skip_cfws();
        let Some(b) = lx.peek() else { break };
        if b == b',' {
            lx.i += 1;
            continue;
        }
        match lx.token() {
            Some(tag) => out.push(tag.to_vec()),
            None => lx.i += 1,
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Transfer encodings
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cte {
    Identity,
    Base64,
    QuotedPrintable,
}

/// The entity's Content-Transfer-Encoding (none is 7bit, RFC 2045 6.1).
pub fn entity_cte(raw: &[u8], e: &Entity) -> Result<Cte, UnknownCte> {
    let fields: Vec<_> = fields(&raw[e.start..e.header_end]).collect();
    let Some(value) = first(&fields, b"content-transfer-encoding") else {
        return Ok(Cte::Identity);
    };
    let Some(token) = parse_token(&unfold(value)) else {
        return Ok(Cte::Identity);
    };
    let token = token.to_ascii_lowercase();
    match token.as_slice() {
        b"7bit" | b"8bit" | b"binary" => Ok(Cte::Identity),
        b"base64" => Ok(Cte::Base64),
        b"quoted-printable" => Ok(Cte::QuotedPrintable),
        _ => Err(UnknownCte),
    }
}

/// The entity's body with its transfer encoding undone.
pub fn decode_entity(raw: &[u8], e: &Entity) -> Result<Vec<u8>, UnknownCte> {
    let body = &raw[e.header_end..e.end];
    Ok(match entity_cte(raw, e)? {
        Cte::Identity => body.to_vec(),
        Cte::Base64 => decode::decode_base64(body),
        Cte::QuotedPrintable => decode::decode_qp(body),
    })
}

/// The text of the message body (what SEARCH BODY/TEXT and the content
/// filter read): every text/* part (attachments included, message/rfc822
/// parts' bodies included, their headers not), transfer-decoded and
/// converted to UTF-8, joined by newlines. Parts with an unknown transfer
/// encoding are taken as they are.
pub fn body_text(raw: &[u8]) -> String {
    let root = parse(raw);
    let mut out = String::new();
    collect_text(raw, &root, &mut out);
    out
}

fn collect_text(raw: &[u8], e: &Entity, out: &mut String) {
    match &e.kind {
        Kind::Multipart(children) => children.iter().for_each(|c| collect_text(raw, c, out)),
        Kind::Message(inner) => collect_text(raw, inner, out),
        Kind::Leaf if e.ct.is_text() => {
            let body = decode_entity(raw, e).unwrap_or_else(|_| raw[e.header_end..e.end].to_vec());
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&decode::to_utf8(&body, e.ct.param("charset")));
        }
        Kind::Leaf => {}
    }
}
