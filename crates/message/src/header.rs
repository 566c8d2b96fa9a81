//! The one reader of header fields (RFC 5322 2.2): where the header section
//! ends, which lines make up each field, where it starts and ends, and what
//! its name is. The submission From: check, DKIM's From: domain, the Sent
//! copy, the loop checks, the 7-bit conversion, the header cache and the
//! IMAP ENVELOPE / HEADER.FIELDS / SEARCH all read fields here, so they
//! agree on which field is the From: (issue #8: the submission check read
//! the last `From:` and skipped `From :`, the ENVELOPE showed the first)
//! and on where the body starts (issue #10: six header-end finders, three
//! of them blind to a bare-LF empty line).
//!
//! Rules, for stored and submitted messages alike:
//! - a line ends at LF (CRLF or, tolerated, bare LF); the header section
//!   ends at the first empty line (`CRLF` or `LF`) or at the end (see
//!   [`header_end`] for why a bare LF counts);
//! - a line starting with a space or tab continues the field before it
//!   (RFC 5322 2.2.3 folding);
//! - the name is everything before the first colon, with white space before
//!   the colon dropped: `From :` is a From field (RFC 5322 4.5.1 obs-optional,
//!   `field-name *WSP ":"`); names compare case-insensitively;
//! - a line without a colon is a field without a name (matches nothing).

/// One header field. `name` is `None` for a line without a colon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: Option<&'a [u8]>,
    /// After the colon up to the end of the field, folding included, the
    /// final line break excluded.
    pub value: &'a [u8],
    /// The whole field, final line break included (when there is one).
    pub raw: &'a [u8],
}

impl Field<'_> {
    /// Whether the field is called `name` (ASCII case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// The value unfolded (RFC 5322 2.2.3: CRLF / LF before white space
    /// removed, stray CR and LF dropped) and trimmed of surrounding white
    /// space.
    pub fn unfolded(&self) -> Vec<u8> {
        let v: Vec<u8> = self
            .value
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        trim_wsp(&v).to_vec()
    }
}

/// Space or tab (RFC 5322 WSP).
pub fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_wsp(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| !is_wsp(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|&b| !is_wsp(b)).map_or(start, |i| i + 1);
    &v[start..end.max(start)]
}

/// Index after the LF ending the line that starts at `pos` (or the end).
pub fn line_end(raw: &[u8], pos: usize) -> usize {
    // memchr: FETCH of header fields and SEARCH on headers scan every
    // message's header, line by line.
    match raw.get(pos..).and_then(|rest| memchr::memchr(b'\n', rest)) {
        Some(i) => pos + i + 1,
        None => raw.len(),
    }
}

/// An empty line: CRLF or a bare LF.
pub fn is_blank_line(line: &[u8]) -> bool {
    line == b"\r\n" || line == b"\n"
}

/// Without a final LF or CRLF.
pub fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The first empty line at or after `from` (which starts a line), as (its
/// start, its end); None when there is none.
fn blank_line(message: &[u8], from: usize) -> Option<(usize, usize)> {
    // An empty line right at `from`; then every LF followed by LF or CRLF.
    // memchr from LF to LF, not line by line: the header cache runs this on
    // every message of a FETCH of header fields.
    match message.get(from..) {
        Some([b'\n', ..]) => return Some((from, from + 1)),
        Some([b'\r', b'\n', ..]) => return Some((from, from + 2)),
        _ => {}
    }
    let mut pos = from;
    while let Some(i) = message.get(pos..).and_then(|rest| memchr::memchr(b'\n', rest)) {
        let at = pos + i + 1;
        match message.get(at..) {
            Some([b'\n', ..]) => return Some((at, at + 1)),
            Some([b'\r', b'\n', ..]) => return Some((at, at + 2)),
            _ => pos = at,
        }
    }
    None
}

/// (end of the last field, end of the header): the second is after the
/// empty line when there is one; both are the end of the message without.
fn split(message: &[u8]) -> (usize, usize) {
    blank_line(message, 0).unwrap_or((message.len(), message.len()))
}

/// The end of the header: after its empty line when there is one, else the
/// end of the message. This is the one rule every part of Postroom uses.
///
/// RFC 5322 2.1 separates header and body by an empty line, and lines end
/// in CRLF (RFC 5321 2.3.8: a bare LF is not a line end on the wire).
/// Stored messages can still hold bare LFs (an IMAP APPEND from a Unix
/// client, a file piped to `postroom sendmail`), and Dovecot, mail-parser
/// and most MUAs take `LF LF` as the end of the header. So a bare LF ends
/// a line here too, and an empty line is `CRLF` or `LF` at a line start:
/// had the 7-bit conversion (CRLF only) and the IMAP parser (LF too)
/// disagreed, a body line could be a header field to one and body to the
/// other. A lone CR ends nothing.
pub fn header_end(message: &[u8]) -> usize {
    split(message).1
}

/// [`header_end`] for the beginning of a message that may not be complete
/// yet (a spool read in pieces, the header cache's read of a blob's start):
/// `Some` once the empty line is in `buf`, `None` while it may still come.
pub fn header_len(buf: &[u8]) -> Option<usize> {
    blank_line(buf, 0).map(|(_, end)| end)
}

/// The header section: its fields, the line end of the last one included,
/// the empty line after them not.
pub fn header_section(message: &[u8]) -> &[u8] {
    &message[..split(message).0]
}

/// The fields of a message (or of a header section), in order; reading
/// stops at the empty line that ends the header.
pub fn fields(message: &[u8]) -> Fields<'_> {
    Fields {
        header: message,
        pos: 0,
    }
}

/// Iterator of [`fields`].
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    header: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        let header = self.header;
        let start = self.pos;
        if start >= header.len() {
            return None;
        }
        let mut end = line_end(header, start);
        let first = &header[start..end];
        if is_blank_line(first) {
            self.pos = header.len();
            return None;
        }
        let colon = memchr::memchr(b':', first).map(|i| start + i);
        // Continuation lines (starting with white space) belong to this field.
        while end < header.len() && is_wsp(header[end]) {
            end = line_end(header, end);
        }
        self.pos = end;
        let raw = &header[start..end];
        Some(match colon {
            Some(colon) => {
                let mut name = &header[start..colon];
                // RFC 5322 4.5.1: obs-optional allows white space before the colon.
                while let [rest @ .., last] = name {
                    if !is_wsp(*last) {
                        break;
                    }
                    name = rest;
                }
                Field {
                    name: Some(name),
                    value: strip_eol(&header[colon + 1..end]),
                    raw,
                }
            }
            None => Field {
                name: None,
                value: b"",
                raw,
            },
        })
    }
}

/// The first field called `name` (case-insensitive), unfolded (RFC 5322
/// 2.2.3) and trimmed; None when absent or not UTF-8.
pub fn header_value(message: &[u8], name: &str) -> Option<String> {
    let field = fields(message).find(|f| f.is(name))?;
    String::from_utf8(field.unfolded()).ok()
}

/// How many fields are called `name`.
pub fn count(message: &[u8], name: &str) -> usize {
    fields(message).filter(|f| f.is(name)).count()
}

/// The value of the first of `fields` named `name` (ASCII case-insensitive).
pub fn first_value<'a>(fields: &[Field<'a>], name: &[u8]) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|f| f.name.is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .map(|f| f.value)
}

/// A value unfolded for display (Dovecot's "clean one line", what IMAP
/// ENVELOPE and SEARCH show): a line break and the white space character
/// after it become one space (RFC 5322 2.2.3), stray CR and LF go, and
/// surrounding white space is trimmed. [`Field::unfolded`] keeps the white
/// space after a break as written (the submission checks compare values
/// as sent).
pub fn unfold(value: &[u8]) -> Vec<u8> {
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
    trim_wsp(&out).to_vec()
}

/// Whether any field is called `name` (ASCII case-insensitive).
pub fn has(message: &[u8], name: &str) -> bool {
    fields(message).any(|f| f.is(name))
}

// ---------------------------------------------------------------------------
// Address lists
// ---------------------------------------------------------------------------

/// One item of an RFC 5322 address list (3.4), obsolete syntax included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressItem {
    Mailbox(Mailbox),
    /// `name:` starting a group (RFC 5322 3.4).
    GroupStart(Vec<u8>),
    /// The `;` ending it.
    GroupEnd,
}

/// A mailbox as written: the local part without its quotes (`"alice"@x`
/// has the local part `alice`), empty parts when missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The display name (words joined by one space), or the last comment
    /// when there is none (`user@host (Real Name)`).
    pub name: Option<Vec<u8>>,
    /// An obsolete source route (`<@a,@b:user@host>`), without its colon.
    pub route: Option<Vec<u8>>,
    pub local: Vec<u8>,
    pub domain: Vec<u8>,
}

impl Mailbox {
    /// `local@domain`, the local part quoted when it is not a dot-atom
    /// (RFC 5322 3.4.1), for `Address::parse`; None when a part is missing.
    pub fn addr_spec(&self) -> Option<String> {
        if self.local.is_empty() || self.domain.is_empty() {
            return None;
        }
        let local = std::str::from_utf8(&self.local).ok()?;
        let domain = std::str::from_utf8(&self.domain).ok()?;
        let atext = |c: char| c.is_alphanumeric() || !c.is_ascii() || "!#$%&'*+-/=?^_`{|}~".contains(c);
        let dot_atom = !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.chars().all(|c| c == '.' || atext(c));
        if dot_atom {
            Some(format!("{local}@{domain}"))
        } else {
            let escaped: String = local
                .chars()
                .flat_map(|c| (c == '"' || c == '\\').then_some('\\').into_iter().chain([c]))
                .collect();
            Some(format!("\"{escaped}\"@{domain}"))
        }
    }
}

/// A comment starting at `s[*i] == '('`: its content (nested comments kept
/// with their parentheses, quoted-pairs unescaped); `*i` ends after it.
pub fn read_comment(s: &[u8], i: &mut usize) -> Vec<u8> {
    let mut depth = 0usize;
    let mut out = Vec::new();
    while let Some(&b) = s.get(*i) {
        *i += 1;
        match b {
            b'(' => {
                if depth > 0 {
                    out.push(b);
                }
                depth += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
                out.push(b);
            }
            b'\\' => {
                if let Some(&next) = s.get(*i) {
                    out.push(next);
                    *i += 1;
                }
            }
            _ => out.push(b),
        }
    }
    out
}

/// A quoted string starting at `s[*i] == '"'`: its content, unescaped;
/// `*i` ends after the closing quote (or at the end).
pub fn read_quoted(s: &[u8], i: &mut usize) -> Vec<u8> {
    let mut out = Vec::new();
    *i += 1;
    while let Some(&b) = s.get(*i) {
        *i += 1;
        match b {
            b'"' => break,
            b'\\' => {
                if let Some(&next) = s.get(*i) {
                    out.push(next);
                    *i += 1;
                }
            }
            _ => out.push(b),
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// Atom (dots included) or quoted string.
    Word(Vec<u8>),
    DomainLiteral(Vec<u8>),
    Comment(Vec<u8>),
    Special(u8),
}

fn tokenize_addresses(v: &[u8]) -> Vec<Tok> {
    let mut i = 0;
    let mut out = Vec::new();
    while let Some(&b) = v.get(i) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => out.push(Tok::Comment(read_comment(v, &mut i))),
            b'"' => out.push(Tok::Word(read_quoted(v, &mut i))),
            b'[' => {
                let start = i;
                i += 1;
                while let Some(&c) = v.get(i) {
                    i += 1;
                    match c {
                        b']' => break,
                        b'\\' => i += 1,
                        _ => {}
                    }
                }
                let end = i.min(v.len());
                out.push(Tok::DomainLiteral(v[start..end].to_vec()));
            }
            b'<' | b'>' | b'@' | b',' | b';' | b':' => {
                out.push(Tok::Special(b));
                i += 1;
            }
            _ => {
                let start = i;
                while let Some(&c) = v.get(i) {
                    if matches!(
                        c,
                        b' ' | b'\t'
                            | b'\r'
                            | b'\n'
                            | b'('
                            | b'"'
                            | b'['
                            | b'<'
                            | b'>'
                            | b'@'
                            | b','
                            | b';'
                            | b':'
                    ) {
                        break;
                    }
                    i += 1;
                }
                out.push(Tok::Word(v[start..i].to_vec()));
            }
        }
    }
    out
}

fn mailbox(name: Option<Vec<u8>>, route: Option<Vec<u8>>, local: Vec<u8>, domain: Vec<u8>) -> AddressItem {
    AddressItem::Mailbox(Mailbox {
        name,
        route,
        local,
        domain,
    })
}

/// An RFC 5322 address list (obsolete syntax included), as written: what
/// the IMAP ENVELOPE shows and what the submission check verifies. Never
/// fails: whatever is not an address becomes a mailbox with missing parts.
pub fn address_list(v: &[u8]) -> Vec<AddressItem> {
    let toks = tokenize_addresses(v);
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_group = false;
    while i < toks.len() {
        // A phrase (or local part).
        let mut words: Vec<Vec<u8>> = Vec::new();
        let mut comment: Option<Vec<u8>> = None;
        while let Some(tok) = toks.get(i) {
            match tok {
                Tok::Word(w) | Tok::DomainLiteral(w) => words.push(w.clone()),
                Tok::Comment(c) => comment = Some(c.clone()),
                Tok::Special(_) => break,
            }
            i += 1;
        }
        let nonempty_name = |words: &[Vec<u8>]| Some(words.join(&b' ')).filter(|n| !n.is_empty());
        match toks.get(i) {
            None => {
                if !words.is_empty() {
                    out.push(mailbox(comment, None, words.concat(), Vec::new()));
                }
                break;
            }
            Some(Tok::Special(b':')) => {
                i += 1;
                if !in_group {
                    out.push(AddressItem::GroupStart(words.join(&b' ')));
                    in_group = true;
                }
                continue;
            }
            Some(Tok::Special(b'<')) => {
                i += 1;
                // [route ":"] local "@" domain ">"
                let mut route = None;
                if toks.get(i) == Some(&Tok::Special(b'@')) {
                    let mut r = Vec::new();
                    let mut j = i;
                    let mut closed = false;
                    while let Some(tok) = toks.get(j) {
                        match tok {
                            Tok::Special(b':') => {
                                closed = true;
                                break;
                            }
                            Tok::Special(b'>') => break,
                            Tok::Special(c) => r.push(*c),
                            Tok::Word(w) | Tok::DomainLiteral(w) => r.extend_from_slice(w),
                            Tok::Comment(_) => {}
                        }
                        j += 1;
                    }
                    if closed {
                        route = Some(r);
                        i = j + 1;
                    }
                }
                let mut local = Vec::new();
                let mut domain = Vec::new();
                let mut in_domain = false;
                while let Some(tok) = toks.get(i) {
                    match tok {
                        Tok::Special(b'>') => {
                            i += 1;
                            break;
                        }
                        Tok::Special(b'@') if !in_domain => in_domain = true,
                        Tok::Special(b',' | b';') => break,
                        Tok::Special(_) => {}
                        Tok::Word(w) | Tok::DomainLiteral(w) => {
                            if in_domain { &mut domain } else { &mut local }.extend_from_slice(w)
                        }
                        Tok::Comment(c) => comment = Some(c.clone()),
                    }
                    i += 1;
                }
                // Anything up to the next address.
                while let Some(tok) = toks.get(i) {
                    match tok {
                        Tok::Special(b',' | b';') => break,
                        Tok::Comment(c) => comment = Some(c.clone()),
                        _ => {}
                    }
                    i += 1;
                }
                let name = nonempty_name(&words).or(comment);
                out.push(mailbox(name, route, local, domain));
            }
            Some(Tok::Special(b'@')) => {
                i += 1;
                let mut domain = Vec::new();
                while let Some(tok) = toks.get(i) {
                    match tok {
                        Tok::Special(b',' | b';') => break,
                        Tok::Special(_) => {}
                        Tok::Word(w) | Tok::DomainLiteral(w) => domain.extend_from_slice(w),
                        Tok::Comment(c) => comment = Some(c.clone()),
                    }
                    i += 1;
                }
                out.push(mailbox(comment, None, words.concat(), domain));
            }
            Some(Tok::Special(b';')) => {
                i += 1;
                if !words.is_empty() {
                    out.push(mailbox(comment, None, words.concat(), Vec::new()));
                }
                if in_group {
                    out.push(AddressItem::GroupEnd);
                    in_group = false;
                }
                continue;
            }
            Some(Tok::Special(_)) => {
                // ',' or a stray '>'.
                i += 1;
                if !words.is_empty() {
                    out.push(mailbox(comment, None, words.concat(), Vec::new()));
                }
                continue;
            }
            Some(_) => {
                i += 1;
                continue;
            }
        }
        // After a mailbox: the ',' (a ';' is left for the group end).
        if toks.get(i) == Some(&Tok::Special(b',')) {
            i += 1;
        }
    }
    if in_group {
        out.push(AddressItem::GroupEnd);
    }
    out
}

/// The mailboxes of an address list (group names and ends left out).
pub fn mailboxes(v: &[u8]) -> Vec<Mailbox> {
    address_list(v)
        .into_iter()
        .filter_map(|item| match item {
            AddressItem::Mailbox(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// The header lines a copy gets at final delivery (RFC 5321 4.4:
/// `Return-Path`; `Delivered-To` names the mailbox, which the loop check
/// reads). Control characters become `?`: a peer's reverse-path must not
/// end the line early. The one place these lines are written: the router
/// at delivery, and `queue release` when a held item turns out local.
pub fn final_delivery_lines(return_path: &str, delivered_to: &str) -> Vec<u8> {
    let clean = |s: &str| -> String { s.chars().map(|c| if c.is_control() { '?' } else { c }).collect() };
    format!(
        "Return-Path: <{}>\r\nDelivered-To: {}\r\n",
        clean(return_path),
        clean(delivered_to)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_unfolded_values() {
        let m = b"From: a@b\r\nMessage-ID:\r\n <x@y>\r\nSubject: s\r\n\r\nMessage-ID: <body@z>\r\n";
        assert_eq!(header_value(m, "message-id").as_deref(), Some("<x@y>"));
        assert_eq!(header_value(m, "SUBJECT").as_deref(), Some("s"));
        assert_eq!(header_value(m, "to"), None);
        assert_eq!(header_value(b"", "to"), None);
        assert_eq!(header_value(b"no colon here", "to"), None);
    }

    #[test]
    fn white_space_before_the_colon_is_part_of_no_name() {
        // RFC 5322 4.5.1 obs-optional: `From :` is a From field.
        let m = b"From : bob@x\r\nFrom\t: alice@y\r\nSubject: s\r\n\r\nFrom: body@z\r\n";
        assert_eq!(count(m, "from"), 2);
        assert_eq!(header_value(m, "From").as_deref(), Some("bob@x"));
    }

    #[test]
    fn the_header_ends_at_the_first_empty_line_crlf_or_lf() {
        assert_eq!(header_section(b"A: 1\r\nB: 2\r\n\r\nbody"), b"A: 1\r\nB: 2\r\n");
        assert_eq!(header_section(b"A: 1\nB: 2\n\nbody"), b"A: 1\nB: 2\n");
        assert_eq!(header_section(b"A: 1\r\nB: 2"), b"A: 1\r\nB: 2");
        assert_eq!(header_section(b"\r\nbody"), b"");
        assert_eq!(header_end(b"A: 1\r\n\r\nbody"), 8);
        assert_eq!(count(b"A: 1\n\nFrom: x\n", "from"), 0);
    }

    #[test]
    fn quoted_local_parts_are_local_parts() {
        let m = mailboxes(br#""alice"@probe.test"#);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].local, b"alice");
        assert_eq!(m[0].domain, b"probe.test");
        assert_eq!(m[0].name, None);
        assert_eq!(m[0].addr_spec().as_deref(), Some("alice@probe.test"));
        let m = mailboxes(br#""Bob" <"a b"@x.test>, c@d.test (Cee)"#);
        assert_eq!(m[0].name.as_deref(), Some(&b"Bob"[..]));
        assert_eq!(m[0].addr_spec().as_deref(), Some(r#""a b"@x.test"#));
        assert_eq!(m[1].addr_spec().as_deref(), Some("c@d.test"));
        assert_eq!(m[1].name.as_deref(), Some(&b"Cee"[..]));
        assert_eq!(mailboxes(b"bob").first().and_then(Mailbox::addr_spec), None);
    }
}
