//! Message structure for FETCH and SEARCH: ENVELOPE, BODYSTRUCTURE,
//! BODY[section], BINARY[part] and the text SEARCH looks at, computed from a
//! stored message (raw RFC 5322 bytes, CRLF line endings; bare LF is
//! tolerated). Pure: no I/O, no panics on malformed input.
//!
//! The MIME tree is parsed here, from the raw bytes, so that every size and
//! section is exact: the CRLF before a boundary delimiter belongs to the
//! delimiter (RFC 2046 5.1.1), a part's body ends before it, a boundary line
//! is any line starting with `--boundary` (the longest boundary of the
//! enclosing multiparts wins, as in Dovecot), an outer boundary ends inner
//! multiparts, and a missing close delimiter ends everything at the end of
//! the message. `mail-parser` is used for charset conversion only.
//!
//! Conventions follow Dovecot where the RFCs leave a choice:
//! - strings are quoted unless they hold 8-bit bytes, CR/LF or more than four
//!   `"`/`\` (then a literal); NUL bytes become 0x80;
//! - the subject and display names are "for humans": runs of white space
//!   become one space, leading and trailing space goes, and a literal is
//!   used whenever that changed something or the text needs escaping;
//! - media type, subtype, parameter names and values are sent as written
//!   (imap-codec always writes the `"TEXT"` and `"MESSAGE" "RFC822"` type
//!   names in capitals); a text part without a charset gets `"charset"
//!   "us-ascii"` appended; no Content-Type means `text/plain` (or
//!   `message/rfc822` in a multipart/digest); no Content-Transfer-Encoding
//!   means `"7bit"`; an empty parameter list is NIL;
//! - RFC 2231 continuations are merged (`name*0`, `name*1` into `name`;
//!   encoded ones into `name*` with the `charset'language'` prefix kept);
//! - addresses without a domain get `MISSING_DOMAIN`, without a local part
//!   `MISSING_MAILBOX`; a display name missing but a comment present (`user@host
//!   (Real Name)`) uses the comment.
//!
//! Sizes are octets of the body as stored (transfer encoded); line counts
//! are the number of LF in it.

use std::num::NonZeroU32;

use imap_codec::imap_types::{
    body::{
        BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
        SinglePartExtensionData, SpecificFields,
    },
    core::{AString, IString, Literal, NString, Quoted, Vec1},
    envelope::{Address, Envelope},
    fetch::{Part, Section},
};

#[cfg(test)]
mod tests;

/// Deepest nesting of multipart and message/rfc822 parts that is parsed;
/// deeper ones are single parts.
const MAX_DEPTH: usize = 40;
/// Most MIME parts parsed in one message; further parts of a multipart are
/// left in its epilogue.
const MAX_PARTS: usize = 10_000;

/// The part's Content-Transfer-Encoding is none BINARY can undo
/// (RFC 3516: the server answers `NO [UNKNOWN-CTE]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownCte;

impl std::fmt::Display for UnknownCte {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unknown content transfer encoding")
    }
}

impl std::error::Error for UnknownCte {}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// RFC 3501 7.4.2 / RFC 9051 7.5.2 ENVELOPE of the message.
///
/// Date, subject, in-reply-to and message-id are the raw (not RFC 2047
/// decoded) header values, unfolded; NIL when the header is absent. Sender
/// and reply-to default to from when absent or empty.
pub fn envelope(raw: &[u8]) -> Envelope<'static> {
    envelope_of(&raw[..header_end(raw)])
}

/// BODYSTRUCTURE (`extended = true`: with the extension data: MD5,
/// disposition, language, location) or BODY (`extended = false`).
pub fn body_structure(raw: &[u8], extended: bool) -> BodyStructure<'static> {
    let tree = Tree::parse(raw);
    structure(raw, &tree.root, extended)
}

/// The bytes of BODY[section] (RFC 3501 6.4.5 / RFC 9051 6.4.5). `None`
/// section = the whole message.
///
/// Part 1 of a message that is not multipart is its body; HEADER, TEXT and
/// HEADER.FIELDS after a part number need a message/rfc822 part; MIME is
/// the part's own header (the blank line included). HEADER.FIELDS(.NOT)
/// returns the matching fields as written, then a blank line.
///
/// Returns `None` when the section does not exist. The caller should then
/// answer `BODY[section] NIL` (what Dovecot and Cyrus do); an empty string
/// is the other choice clients accept.
pub fn section(raw: &[u8], section: Option<&Section<'_>>) -> Option<Vec<u8>> {
    let Some(section) = section else {
        return Some(raw.to_vec());
    };
    match section {
        Section::Part(Part(path)) => {
            let tree = Tree::parse(raw);
            resolve(&tree.root, path.as_ref()).map(|e| raw[e.header_end..e.end].to_vec())
        }
        Section::Mime(Part(path)) => {
            let tree = Tree::parse(raw);
            resolve(&tree.root, path.as_ref()).map(|e| raw[e.start..e.header_end].to_vec())
        }
        Section::Header(part) => message_span(raw, part.as_ref()).map(|(s, h, _)| raw[s..h].to_vec()),
        Section::Text(part) => message_span(raw, part.as_ref()).map(|(_, h, e)| raw[h..e].to_vec()),
        Section::HeaderFields(part, list) => {
            message_span(raw, part.as_ref()).map(|(s, h, _)| header_subset(&raw[s..h], list, true))
        }
        Section::HeaderFieldsNot(part, list) => {
            message_span(raw, part.as_ref()).map(|(s, h, _)| header_subset(&raw[s..h], list, false))
        }
    }
}

/// BINARY[part] (RFC 3516, RFC 9051 6.4.5): the part's content with its
/// Content-Transfer-Encoding (base64, quoted-printable) undone; 7bit, 8bit,
/// binary or none are returned as they are. An empty `part` is the whole
/// message. `Ok(None)` when the part does not exist; `Err` when the encoding
/// is unknown (answer `NO [UNKNOWN-CTE]`).
pub fn binary(raw: &[u8], part: &[NonZeroU32]) -> Result<Option<Vec<u8>>, UnknownCte> {
    if part.is_empty() {
        return Ok(Some(raw.to_vec()));
    }
    let tree = Tree::parse(raw);
    match resolve(&tree.root, part) {
        None => Ok(None),
        Some(e) => decode_entity(raw, e).map(Some),
    }
}

/// BINARY.SIZE[part]: the size of what [`binary`] returns.
pub fn binary_size(raw: &[u8], part: &[NonZeroU32]) -> Result<Option<u32>, UnknownCte> {
    binary(raw, part).map(|v| v.map(|v| u32::try_from(v.len()).unwrap_or(u32::MAX)))
}

/// Whether BINARY data (after any partial range is applied) must go out as
/// a `~{n}` literal8: RFC 3516 requires it for NUL; like Dovecot, also for
/// a CR or LF that is not part of a CRLF.
pub fn needs_literal8(data: &[u8]) -> bool {
    data.iter().enumerate().any(|(i, &b)| match b {
        0 => true,
        b'\r' => data.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || data[i - 1] != b'\r',
        _ => false,
    })
}

/// The message's header: up to and including its first blank line (all of
/// it when there is none).
pub fn header_block(raw: &[u8]) -> &[u8] {
    &raw[..header_end(raw)]
}

/// The values of every top-level header field named `name` (case-insensitive),
/// unfolded, trimmed and RFC 2047 decoded, in message order. Empty when
/// there is no such field; a field present but empty gives `""`.
pub fn header_values(raw: &[u8], name: &str) -> Vec<String> {
    postroom_core::header::fields(&raw[..header_end(raw)])
        .filter(|f| f.name.is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes())))
        .map(|f| decode_rfc2047(&unfold(f.value)))
        .collect()
}

/// What SEARCH FROM/TO/CC/BCC match against (RFC 3501 / RFC 9051 6.4.4:
/// a substring of the field): for each field named `name`, its decoded
/// value as [`header_values`] gives it, and its addresses as a reader sees
/// them, `Name <local@domain>` (or `local@domain` without a name) joined by
/// `, `: the display name, or a comment standing for one, RFC 2047 decoded
/// also inside quotes, the quotes and escapes of a quoted local part or
/// name gone, obsolete white space around `@` dropped. So
/// `"user"@example.org`, `user @ example.org` and `user@example.org (Name)`
/// are found by `user@example.org` and `Name <user@example.org>`. The list
/// is read by `postroom_core::header::address_list`, as ENVELOPE's is.
pub fn address_values(raw: &[u8], name: &str) -> Vec<String> {
    use postroom_core::header::AddressItem;
    let mut out = Vec::new();
    for f in postroom_core::header::fields(&raw[..header_end(raw)])
        .filter(|f| f.name.is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes())))
    {
        let value = unfold(f.value);
        out.push(decode_rfc2047(&value));
        let mut shown: Vec<String> = Vec::new();
        for item in postroom_core::header::address_list(&value) {
            match item {
                AddressItem::Mailbox(m) => {
                    let addr = format!(
                        "{}@{}",
                        String::from_utf8_lossy(&m.local),
                        String::from_utf8_lossy(&m.domain)
                    );
                    shown.push(match m.name.as_deref().map(decode_rfc2047) {
                        Some(n) if !n.is_empty() => format!("{n} <{addr}>"),
                        _ => addr,
                    });
                }
                AddressItem::GroupStart(g) => shown.push(format!("{}:", decode_rfc2047(&g))),
                AddressItem::GroupEnd => {}
            }
        }
        out.push(shown.join(", "));
    }
    out
}

/// The text of the message body for SEARCH BODY/TEXT: every text/* part
/// (attachments included, message/rfc822 parts' bodies included, their
/// headers not), transfer-decoded and converted to UTF-8, joined by
/// newlines. Parts with an unknown transfer encoding are taken as they are.
pub fn body_text(raw: &[u8]) -> String {
    let tree = Tree::parse(raw);
    let mut out = String::new();
    collect_text(raw, &tree.root, &mut out);
    out
}

/// The Date: header as unix seconds (for SEARCH SENTBEFORE/SENTON/SENTSINCE),
/// `None` if missing or unparseable.
///
/// RFC 3501 compares the date "disregarding time and timezone", which
/// Dovecot takes as the calendar day written in the header: prefer
/// [`sent_day`] for those keys.
pub fn sent_date(raw: &[u8]) -> Option<i64> {
    sent_date_with_zone(raw).map(|(t, _)| t)
}

/// The Date: header as (unix seconds, the header's zone offset in seconds
/// east of UTC).
pub fn sent_date_with_zone(raw: &[u8]) -> Option<(i64, i32)> {
    let fields = fields(&raw[..header_end(raw)]);
    let date = first(&fields, b"date")?;
    parse_date(&unfold(date))
}

/// The calendar day written in the Date: header, as days since 1970-01-01
/// (what SENTBEFORE/SENTON/SENTSINCE compare against the search date's day
/// number), `None` if missing or unparseable.
pub fn sent_day(raw: &[u8]) -> Option<i64> {
    sent_date_with_zone(raw).map(|(t, zone)| (t + i64::from(zone)).div_euclid(86_400))
}

// ---------------------------------------------------------------------------
// Header fields
// ---------------------------------------------------------------------------

// The fields come from the one header reader, `postroom_core::header`, so
// the ENVELOPE's From is the field the submission check verified.
use postroom_core::header::{header_end, is_blank_line, is_wsp, line_end, strip_eol, Field};

/// The fields of a header section (which may end with its blank line).
fn fields(header: &[u8]) -> Vec<Field<'_>> {
    postroom_core::header::fields(header).collect()
}

/// The value of the first field named `name` (lowercase).
fn first<'a>(fields: &[Field<'a>], name: &[u8]) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|f| f.name.is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .map(|f| f.value)
}

/// Unfolded and trimmed of surrounding white space: a line break and the
/// white space character after it become one space (Dovecot's "clean one
/// line"); stray CR and LF go.
fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\r' => {}
            b'\n' => {
                if value.get(i + 1).is_some_and(|&next| is_wsp(next)) {
                    out.push(b' ');
                    i += 1;
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    trim(&out).to_vec()
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| !is_wsp(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|&b| !is_wsp(b)).map_or(start, |i| i + 1);
    &v[start..end.max(start)]
}

/// HEADER.FIELDS (`keep = true`) or HEADER.FIELDS.NOT: the fields as
/// written, then the blank line.
fn header_subset(header: &[u8], names: &Vec1<AString<'_>>, keep: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len());
    for field in postroom_core::header::fields(header) {
        let listed = field.name.is_some_and(|n| {
            names
                .as_ref()
                .iter()
                .any(|want| <AString<'_> as AsRef<[u8]>>::as_ref(want).eq_ignore_ascii_case(n))
        });
        if listed == keep {
            out.extend_from_slice(field.raw);
            if !field.raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

// ---------------------------------------------------------------------------
// MIME tree
// ---------------------------------------------------------------------------

/// MIME parameters: (attribute, value) as written.
type Params = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, Clone, PartialEq, Eq)]
struct ContentType {
    ty: Vec<u8>,
    subtype: Vec<u8>,
    params: Params,
}

impl ContentType {
    fn text_plain() -> Self {
        ContentType {
            ty: b"text".to_vec(),
            subtype: b"plain".to_vec(),
            params: Vec::new(),
        }
    }

    fn message_rfc822() -> Self {
        ContentType {
            ty: b"message".to_vec(),
            subtype: b"rfc822".to_vec(),
            params: Vec::new(),
        }
    }

    fn is(&self, ty: &str, subtype: &str) -> bool {
        self.ty.eq_ignore_ascii_case(ty.as_bytes()) && self.subtype.eq_ignore_ascii_case(subtype.as_bytes())
    }

    fn is_text(&self) -> bool {
        self.ty.eq_ignore_ascii_case(b"text")
    }

    /// message/rfc822 or message/global (RFC 9051 body-type-msg).
    fn is_message(&self) -> bool {
        self.is("message", "rfc822") || self.is("message", "global")
    }

    fn param(&self, name: &str) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }
}

#[derive(Debug)]
enum Kind {
    Leaf,
    Multipart(Vec<Entity>),
    /// message/rfc822: the encapsulated message.
    Message(Box<Entity>),
}

/// A MIME entity: `raw[start..header_end]` is its header (blank line
/// included), `raw[header_end..end]` its body.
#[derive(Debug)]
struct Entity {
    start: usize,
    header_end: usize,
    end: usize,
    ct: ContentType,
    kind: Kind,
}

struct Tree {
    root: Entity,
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

impl Tree {
    fn parse(raw: &[u8]) -> Tree {
        let mut parser = MimeParser {
            raw,
            boundaries: Vec::new(),
            parts: 0,
        };
        let (root, _) = parser.entity(0, &ContentType::text_plain(), 0, false);
        Tree { root }
    }
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
        let fields = fields(&raw[start..header_end]);
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
fn resolve<'t>(root: &'t Entity, path: &[NonZeroU32]) -> Option<&'t Entity> {
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
fn message_span(raw: &[u8], part: Option<&Part>) -> Option<(usize, usize, usize)> {
    let Some(Part(path)) = part else {
        return Some((0, header_end(raw), raw.len()));
    };
    let tree = Tree::parse(raw);
    match &resolve(&tree.root, path.as_ref())?.kind {
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
        postroom_core::header::read_comment(self.s, &mut self.i)
    }

    /// A quoted string starting at `"`; returns its content, unescaped.
    fn quoted(&mut self) -> Vec<u8> {
        postroom_core::header::read_quoted(self.s, &mut self.i)
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
fn parse_content_type(value: &[u8]) -> Option<ContentType> {
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
fn parse_disposition(value: &[u8]) -> Option<(Vec<u8>, Params)> {
    let mut lx = Lexer::new(value);
    lx.skip_cfws();
    let ty = lx.token()?.to_vec();
    let params = lx.params();
    Some((ty, params))
}

/// A single token (Content-Transfer-Encoding).
fn parse_token(value: &[u8]) -> Option<Vec<u8>> {
    let mut lx = Lexer::new(value);
    lx.skip_cfws();
    lx.token().map(<[u8]>::to_vec)
}

/// Content-Language: the comma-separated tags.
fn parse_languages(value: &[u8]) -> Vec<Vec<u8>> {
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
// IMAP strings
// ---------------------------------------------------------------------------

fn literal(data: Vec<u8>) -> IString<'static> {
    match Literal::try_from(data) {
        Ok(lit) => IString::Literal(lit),
        Err(_) => IString::Quoted(Quoted::unvalidated(String::new())),
    }
}

fn without_nul(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|&b| if b == 0 { 0x80 } else { b }).collect()
}

/// A string, quoted when it can be (7-bit, no CR/LF, at most four
/// characters to escape), else a literal (Dovecot's `imap_append_string`).
fn istring(bytes: &[u8]) -> IString<'static> {
    let data = without_nul(bytes);
    let escapes = data.iter().filter(|&&b| b == b'"' || b == b'\\').count();
    let quotable = escapes <= 4 && data.iter().all(|&b| b < 0x80 && b != b'\r' && b != b'\n');
    if quotable {
        match String::from_utf8(data) {
            Ok(s) => match Quoted::try_from(s) {
                Ok(q) => IString::Quoted(q),
                Err(_) => literal(without_nul(bytes)),
            },
            Err(e) => literal(e.into_bytes()),
        }
    } else {
        literal(data)
    }
}

fn nstring(bytes: Option<&[u8]>) -> NString<'static> {
    NString(bytes.map(istring))
}

/// Dovecot's `imap_append_string_for_humans`: white space runs become one
/// space, leading and trailing space goes; a literal when anything changed
/// or needs escaping.
fn humans(bytes: &[u8]) -> IString<'static> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut last_lwsp = true;
    for &b in bytes {
        match b {
            0 => {
                out.push(0x80);
                last_lwsp = false;
            }
            b' ' | b'\t' | b'\r' | b'\n' => {
                if !last_lwsp {
                    out.push(b' ');
                }
                last_lwsp = true;
            }
            _ => {
                out.push(b);
                last_lwsp = false;
            }
        }
    }
    if last_lwsp && !out.is_empty() {
        out.pop();
    }
    if out.is_empty() {
        return IString::Quoted(Quoted::unvalidated(String::new()));
    }
    let plain = out.as_slice() == bytes && out.iter().all(|&b| b < 0x80 && b != b'"' && b != b'\\');
    if plain {
        if let Ok(s) = String::from_utf8(out.clone()) {
            if let Ok(q) = Quoted::try_from(s) {
                return IString::Quoted(q);
            }
        }
    }
    literal(out)
}

// ---------------------------------------------------------------------------
// ENVELOPE
// ---------------------------------------------------------------------------

fn envelope_of(header: &[u8]) -> Envelope<'static> {
    let fields = fields(header);
    let value = |name: &[u8]| first(&fields, name).map(unfold);
    let addresses = |name: &[u8]| value(name).map(|v| parse_addresses(&v)).unwrap_or_default();
    let from = addresses(b"from");
    let mut sender = addresses(b"sender");
    if sender.is_empty() {
        sender = from.clone();
    }
    let mut reply_to = addresses(b"reply-to");
    if reply_to.is_empty() {
        reply_to = from.clone();
    }
    Envelope {
        date: nstring(value(b"date").as_deref()),
        subject: NString(value(b"subject").map(|s| humans(&s))),
        from,
        sender,
        reply_to,
        to: addresses(b"to"),
        cc: addresses(b"cc"),
        bcc: addresses(b"bcc"),
        in_reply_to: nstring(value(b"in-reply-to").as_deref()),
        message_id: nstring(value(b"message-id").as_deref()),
    }
}

fn mailbox_address(
    name: Option<Vec<u8>>,
    route: Option<Vec<u8>>,
    local: Vec<u8>,
    domain: Vec<u8>,
) -> Address<'static> {
    let local = if local.is_empty() {
        b"MISSING_MAILBOX".to_vec()
    } else {
        local
    };
    let domain = if domain.is_empty() {
        b"MISSING_DOMAIN".to_vec()
    } else {
        domain
    };
    Address {
        name: NString(name.map(|n| humans(&n))),
        adl: nstring(route.as_deref()),
        mailbox: NString(Some(istring(&local))),
        host: NString(Some(istring(&domain))),
    }
}

fn group_start(name: &[u8]) -> Address<'static> {
    Address {
        name: NString::NIL,
        adl: NString::NIL,
        mailbox: NString(Some(istring(name))),
        host: NString::NIL,
    }
}

fn group_end() -> Address<'static> {
    Address {
        name: NString::NIL,
        adl: NString::NIL,
        mailbox: NString::NIL,
        host: NString::NIL,
    }
}

/// An RFC 5322 address list (obsolete syntax included) as ENVELOPE address
/// structures, groups as RFC 3501 7.4.2 says. The list is read by
/// `postroom_core::header::address_list`, the parser the submission From:
/// check uses.
fn parse_addresses(v: &[u8]) -> Vec<Address<'static>> {
    use postroom_core::header::AddressItem;
    postroom_core::header::address_list(v)
        .into_iter()
        .map(|item| match item {
            AddressItem::Mailbox(m) => mailbox_address(m.name, m.route, m.local, m.domain),
            AddressItem::GroupStart(name) => group_start(&name),
            AddressItem::GroupEnd => group_end(),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// BODYSTRUCTURE
// ---------------------------------------------------------------------------

fn u32_len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn lines(body: &[u8]) -> u32 {
    u32_len(memchr::memchr_iter(b'\n', body).count())
}

fn param_list(params: &[(Vec<u8>, Vec<u8>)]) -> Vec<(IString<'static>, IString<'static>)> {
    params.iter().map(|(n, v)| (istring(n), istring(v))).collect()
}

/// The extension data shared by single and multipart bodies: disposition,
/// language, location.
fn disposition_tail(fields: &[Field<'_>]) -> Disposition<'static> {
    let disposition = first(fields, b"content-disposition")
        .and_then(|v| parse_disposition(&unfold(v)))
        .map(|(ty, params)| (istring(&ty), param_list(&params)));
    let language = first(fields, b"content-language")
        .map(|v| parse_languages(&unfold(v)))
        .unwrap_or_default()
        .iter()
        .map(|l| istring(l))
        .collect();
    let location = first(fields, b"content-location").map(unfold);
    Disposition {
        disposition,
        tail: Some(Language {
            language,
            tail: Some(Location {
                location: nstring(location.as_deref()),
                extensions: Vec::new(),
            }),
        }),
    }
}

/// `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)` (a
/// multipart without parts already has such a part; this is a fallback).
fn empty_body(extended: bool) -> BodyStructure<'static> {
    let charset = (istring(b"charset"), istring(b"us-ascii"));
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: vec![charset],
                id: NString::NIL,
                description: NString::NIL,
                content_transfer_encoding: istring(b"7bit"),
                size: 0,
            },
            specific: SpecificFields::Text {
                subtype: istring(b"plain"),
                number_of_lines: 0,
            },
        },
        extension_data: extended.then(|| SinglePartExtensionData {
            md5: NString::NIL,
            tail: Some(Disposition {
                disposition: None,
                tail: Some(Language {
                    language: Vec::new(),
                    tail: Some(Location {
                        location: NString::NIL,
                        extensions: Vec::new(),
                    }),
                }),
            }),
        }),
    }
}

fn structure(raw: &[u8], e: &Entity, extended: bool) -> BodyStructure<'static> {
    let fields = fields(&raw[e.start..e.header_end]);
    let body = &raw[e.header_end..e.end];
    if let Kind::Multipart(children) = &e.kind {
        let bodies: Vec<BodyStructure<'static>> =
            children.iter().map(|c| structure(raw, c, extended)).collect();
        let bodies = Vec1::try_from(bodies).unwrap_or_else(|_| Vec1::from(empty_body(extended)));
        return BodyStructure::Multi {
            bodies,
            subtype: istring(&e.ct.subtype),
            extension_data: extended.then(|| MultiPartExtensionData {
                parameter_list: param_list(&e.ct.params),
                tail: Some(disposition_tail(&fields)),
            }),
        };
    }
    let mut params = param_list(&e.ct.params);
    if e.ct.is_text() && e.ct.param("charset").is_none() {
        params.push((istring(b"charset"), istring(b"us-ascii")));
    }
    let value = |name: &[u8]| first(&fields, name).map(unfold);
    let cte = first(&fields, b"content-transfer-encoding")
        .and_then(|v| parse_token(&unfold(v)))
        .unwrap_or_else(|| b"7bit".to_vec());
    let basic = BasicFields {
        parameter_list: params,
        id: nstring(value(b"content-id").as_deref()),
        description: nstring(value(b"content-description").as_deref()),
        content_transfer_encoding: istring(&cte),
        size: u32_len(body.len()),
    };
    let specific = match &e.kind {
        Kind::Message(inner) => SpecificFields::Message {
            envelope: Box::new(envelope_of(&raw[inner.start..inner.header_end])),
            body_structure: Box::new(structure(raw, inner, extended)),
            number_of_lines: lines(body),
        },
        _ if e.ct.is_text() => SpecificFields::Text {
            subtype: istring(&e.ct.subtype),
            number_of_lines: lines(body),
        },
        // A message/rfc822 part left unparsed (nesting too deep) cannot be
        // sent as "MESSAGE" "RFC822" without an envelope.
        _ if e.ct.is_message() => SpecificFields::Basic {
            r#type: istring(b"application"),
            subtype: istring(b"octet-stream"),
        },
        _ => SpecificFields::Basic {
            r#type: istring(&e.ct.ty),
            subtype: istring(&e.ct.subtype),
        },
    };
    BodyStructure::Single {
        body: Body { basic, specific },
        extension_data: extended.then(|| SinglePartExtensionData {
            md5: nstring(value(b"content-md5").as_deref()),
            tail: Some(disposition_tail(&fields)),
        }),
    }
}

// ---------------------------------------------------------------------------
// Transfer decoding, charsets, RFC 2047
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cte {
    Identity,
    Base64,
    QuotedPrintable,
}

fn entity_cte(raw: &[u8], e: &Entity) -> Result<Cte, UnknownCte> {
    let fields = fields(&raw[e.start..e.header_end]);
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

fn decode_entity(raw: &[u8], e: &Entity) -> Result<Vec<u8>, UnknownCte> {
    let body = &raw[e.header_end..e.end];
    Ok(match entity_cte(raw, e)? {
        Cte::Identity => body.to_vec(),
        Cte::Base64 => decode_base64(body),
        Cte::QuotedPrintable => decode_qp(body),
    })
}

fn base64_value(b: u8) -> Option<u32> {
    match b {
        b'A'..=b'Z' => Some(u32::from(b - b'A')),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Lenient base64: characters outside the alphabet are skipped, `=` ends.
fn decode_base64(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3);
    let mut acc = 0u32;
    let mut n = 0;
    for &b in data {
        if b == b'=' {
            break;
        }
        let Some(v) = base64_value(b) else { continue };
        acc = (acc << 6) | v;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Quoted-printable (RFC 2045 6.7): trailing white space on a line is
/// dropped, `=` at the end of a line joins it to the next, a malformed `=`
/// is kept as it is; line breaks are kept as they are.
fn decode_qp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut pos = 0;
    while pos < data.len() {
        let end = line_end(data, pos);
        let line = &data[pos..end];
        let content = strip_eol(line);
        let eol = &line[content.len()..];
        let mut content = content;
        while let [rest @ .., last] = content {
            if !is_wsp(*last) {
                break;
            }
            content = rest;
        }
        let soft = content.last() == Some(&b'=');
        if soft {
            content = &content[..content.len() - 1];
        }
        let mut i = 0;
        while i < content.len() {
            let b = content[i];
            if b == b'=' {
                if let (Some(h), Some(l)) = (
                    content.get(i + 1).and_then(|&c| hex_value(c)),
                    content.get(i + 2).and_then(|&c| hex_value(c)),
                ) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
            }
            out.push(b);
            i += 1;
        }
        if !soft {
            out.extend_from_slice(eol);
        }
        pos = end;
    }
    out
}

/// Bytes in `charset` as UTF-8 (malformed sequences replaced).
fn to_utf8(bytes: &[u8], charset: Option<&[u8]>) -> String {
    let charset = charset.map(|c| c.to_ascii_lowercase()).unwrap_or_default();
    let unicode = matches!(
        charset.as_slice(),
        b"" | b"utf-8" | b"utf8" | b"us-ascii" | b"ascii"
    );
    if unicode || charset.len() > 64 {
        if let Ok(s) = std::str::from_utf8(bytes) {
            return s.to_string();
        }
    }
    let decoder = if unicode {
        None
    } else {
        mail_parser::decoders::charsets::map::charset_decoder(&charset)
    };
    match decoder {
        Some(decode) => decode(bytes),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// One encoded word at the start of `s`: (decoded text, its length).
fn encoded_word(s: &[u8]) -> Option<(String, usize)> {
    let rest = s.strip_prefix(b"=?")?;
    let q1 = memchr::memchr(b'?', rest)?;
    let charset = &rest[..q1];
    if charset.is_empty() || charset.iter().any(|&b| b <= b' ' || b >= 0x7f) {
        return None;
    }
    let enc = *rest.get(q1 + 1)?;
    if rest.get(q1 + 2) != Some(&b'?') {
        return None;
    }
    let text_start = q1 + 3;
    let text_len = memchr::memmem::find(rest.get(text_start..)?, b"?=")?;
    let text = &rest[text_start..text_start + text_len];
    if text.iter().any(|&b| b <= b' ' || b >= 0x7f) {
        return None;
    }
    let bytes = match enc {
        b'b' | b'B' => decode_base64(text),
        b'q' | b'Q' => {
            let mut out = Vec::with_capacity(text.len());
            let mut i = 0;
            while i < text.len() {
                match text[i] {
                    b'_' => out.push(b' '),
                    b'=' => {
                        if let (Some(h), Some(l)) = (
                            text.get(i + 1).and_then(|&c| hex_value(c)),
                            text.get(i + 2).and_then(|&c| hex_value(c)),
                        ) {
                            out.push(h << 4 | l);
                            i += 3;
                            continue;
                        }
                        out.push(b'=');
                    }
                    b => out.push(b),
                }
                i += 1;
            }
            out
        }
        _ => return None,
    };
    // RFC 2231: charset*language.
    let charset = charset.split(|&b| b == b'*').next().unwrap_or(charset);
    Some((to_utf8(&bytes, Some(charset)), 2 + text_start + text_len + 2))
}

/// RFC 2047 encoded words decoded; white space between two of them dropped;
/// the rest taken as UTF-8 (RFC 6532).
fn decode_rfc2047(v: &[u8]) -> String {
    let mut out = String::new();
    let mut literal_start = 0;
    let mut after_word = false;
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'=' && v.get(i + 1) == Some(&b'?') {
            if let Some((text, len)) = encoded_word(&v[i..]) {
                let between = &v[literal_start..i];
                if !(after_word && between.iter().all(|&b| is_wsp(b))) {
                    out.push_str(&String::from_utf8_lossy(between));
                }
                out.push_str(&text);
                i += len;
                literal_start = i;
                after_word = true;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&String::from_utf8_lossy(&v[literal_start..]));
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
            out.push_str(&to_utf8(&body, e.ct.param("charset")));
        }
        Kind::Leaf => {}
    }
}

// ---------------------------------------------------------------------------
// Dates (RFC 5322 3.3, obsolete forms included)
// ---------------------------------------------------------------------------

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn month_number(word: &[u8]) -> Option<i64> {
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
    ];
    let prefix = word.get(..3)?.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| *m == prefix.as_slice())
        .map(|i| i as i64 + 1)
}

fn number(word: &[u8], max_len: usize) -> Option<i64> {
    if word.is_empty() || word.len() > max_len || !word.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(word).ok()?.parse().ok()
}

/// Zone offset in seconds east of UTC.
fn zone_offset(word: &[u8]) -> Option<i32> {
    match word.first()? {
        sign @ (b'+' | b'-') => {
            let digits = &word[1..];
            if digits.len() != 4 {
                return None;
            }
            let n = number(digits, 4)?;
            let (h, m) = (n / 100, n % 100);
            if m > 59 {
                return None;
            }
            let secs = i32::try_from(h * 3600 + m * 60).ok()?;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => {
            let hours = match word.to_ascii_uppercase().as_slice() {
                b"UT" | b"UTC" | b"GMT" | b"Z" => 0,
                b"EDT" => -4,
                b"EST" | b"CDT" => -5,
                b"CST" | b"MDT" => -6,
                b"MST" | b"PDT" => -7,
                b"PST" => -8,
                // Military zones: RFC 5322 says treat them as -0000.
                w if w.len() == 1 && w[0].is_ascii_alphabetic() => 0,
                _ => return None,
            };
            Some(hours * 3600)
        }
    }
}

/// An RFC 5322 date-time: (unix seconds, zone offset seconds east).
fn parse_date(value: &[u8]) -> Option<(i64, i32)> {
    // Comments out, then words split on white space and commas.
    let mut lx = Lexer::new(value);
    let mut clean = Vec::with_capacity(value.len());
    while let Some(b) = lx.peek() {
        if b == b'(' {
            lx.comment();
            clean.push(b' ');
        } else {
            clean.push(b);
            lx.i += 1;
        }
    }
    let mut words = clean
        .split(|&b| is_wsp(b) || b == b',')
        .filter(|w| !w.is_empty())
        .peekable();
    // Optional day of week.
    if let Some(w) = words.peek() {
        if w.iter().all(u8::is_ascii_alphabetic) {
            words.next();
        }
    }
    let day = number(words.next()?, 2)?;
    let month = month_number(words.next()?)?;
    let year_word = words.next()?;
    let year = number(year_word, 4)?;
    let year = match year_word.len() {
        1 | 2 if year < 50 => year + 2000,
        1..=3 => year + 1900,
        _ => year,
    };
    let mut time = words.next()?.split(|&b| b == b':');
    let hour = number(time.next()?, 2)?;
    let minute = number(time.next()?, 2)?;
    let second = match time.next() {
        Some(s) => number(s, 2)?,
        None => 0,
    };
    if time.next().is_some() {
        return None;
    }
    let zone = match words.next() {
        Some(w) => zone_offset(w).unwrap_or(0),
        None => 0,
    };
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some((local - i64::from(zone), zone))
}
