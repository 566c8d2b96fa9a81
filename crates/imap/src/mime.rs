//! Message structure for FETCH and SEARCH: ENVELOPE, BODYSTRUCTURE,
//! BODY[section], BINARY[part] and the text SEARCH looks at, computed from a
//! stored message (raw RFC 5322 bytes, CRLF line endings; bare LF is
//! tolerated). Pure: no I/O, no panics on malformed input.
//!
//! The MIME tree, its offsets, transfer decoding, charsets, RFC 2047 words
//! and dates come from `postroom_message` (the one place for the message
//! format, shared with the 7-bit conversion and the filter), whose tree
//! follows Dovecot: the CRLF before a boundary delimiter belongs to the
//! delimiter (RFC 2046 5.1.1), the longest boundary of the enclosing
//! multiparts wins, a missing close delimiter ends everything at the end of
//! the message. What is IMAP's own stays here.
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
    structure(raw, &parse_tree(raw), extended)
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
            resolve(&parse_tree(raw), path.as_ref()).map(|e| raw[e.header_end..e.end].to_vec())
        }
        Section::Mime(Part(path)) => {
            resolve(&parse_tree(raw), path.as_ref()).map(|e| raw[e.start..e.header_end].to_vec())
        }
        Section::Header(part) => {
            message_span(raw, part.as_ref().map(|Part(p)| p.as_ref())).map(|(s, h, _)| raw[s..h].to_vec())
        }
        Section::Text(part) => {
            message_span(raw, part.as_ref().map(|Part(p)| p.as_ref())).map(|(_, h, e)| raw[h..e].to_vec())
        }
        Section::HeaderFields(part, list) => message_span(raw, part.as_ref().map(|Part(p)| p.as_ref()))
            .map(|(s, h, _)| header_subset(&raw[s..h], list, true)),
        Section::HeaderFieldsNot(part, list) => message_span(raw, part.as_ref().map(|Part(p)| p.as_ref()))
            .map(|(s, h, _)| header_subset(&raw[s..h], list, false)),
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
    match resolve(&parse_tree(raw), part) {
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
    postroom_message::header::fields(&raw[..header_end(raw)])
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
/// is read by `postroom_message::header::address_list`, as ENVELOPE's is.
pub fn address_values(raw: &[u8], name: &str) -> Vec<String> {
    use postroom_message::header::AddressItem;
    let mut out = Vec::new();
    for f in postroom_message::header::fields(&raw[..header_end(raw)])
        .filter(|f| f.name.is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes())))
    {
        let value = unfold(f.value);
        out.push(decode_rfc2047(&value));
        let mut shown: Vec<String> = Vec::new();
        for item in postroom_message::header::address_list(&value) {
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
    postroom_message::mime::body_text(raw)
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
    postroom_message::date::parse(&unfold(date))
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

// The fields come from the one header reader, `postroom_message::header`,
// so the ENVELOPE's From is the field the submission check verified; the
// MIME tree, transfer decoding, charsets, RFC 2047 and dates come from the
// same crate (issue #10).
#[cfg(test)]
use postroom_message::decode::decode_base64;
use postroom_message::decode::decode_rfc2047;
use postroom_message::header::{first_value as first, header_end, unfold, Field};
pub use postroom_message::mime::UnknownCte;
use postroom_message::mime::{
    decode_entity, message_span, parse as parse_tree, parse_disposition, parse_languages, parse_token,
    resolve, Entity, Kind,
};
#[cfg(test)]
use postroom_message::mime::{MAX_DEPTH, MAX_PARTS};

/// The fields of a header section (which may end with its blank line).
fn fields(header: &[u8]) -> Vec<Field<'_>> {
    postroom_message::header::fields(header).collect()
}

/// HEADER.FIELDS (`keep = true`) or HEADER.FIELDS.NOT: the fields as
/// written, then the blank line.
fn header_subset(header: &[u8], names: &Vec1<AString<'_>>, keep: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len());
    for field in postroom_message::header::fields(header) {
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
/// `postroom_message::header::address_list`, the parser the submission From:
/// check uses.
fn parse_addresses(v: &[u8]) -> Vec<Address<'static>> {
    use postroom_message::header::AddressItem;
    postroom_message::header::address_list(v)
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
