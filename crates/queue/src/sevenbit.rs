//! 8-bit to 7-bit conversion (RFC 6152 3, RFC 1652): a message with 8-bit
//! content may only go to a server that offers 8BITMIME; for any other the
//! client converts it, text parts to quoted-printable (RFC 2045 6.7), all
//! others to base64 (RFC 2045 6.8). And the test for content that needs
//! SMTPUTF8 (RFC 6531 3.2, RFC 6532): UTF-8 in the header section.
//!
//! Pure functions over the message bytes (CRLF line ends): no I/O.

use base64::Engine;

/// True when any octet has the high bit set (or is NUL), so the message is
/// not 7bit data (RFC 5321 2.3.1, RFC 6152).
pub fn is_8bit(message: &[u8]) -> bool {
    message.iter().any(|b| *b >= 0x80 || *b == 0)
}

/// True when the top-level header section holds UTF-8 beyond ASCII: an
/// internationalized message (RFC 6532) that only an SMTPUTF8 server may
/// take (RFC 6531 3.2). Octets that are not UTF-8 (a legacy Latin-1
/// subject) do not make a message internationalized; they are sent as they
/// are, as every MTA does.
pub fn headers_need_smtputf8(message: &[u8]) -> bool {
    let head = &message[..header_end(message).0];
    !head.is_ascii() && std::str::from_utf8(head).is_ok()
}

/// Where the header section ends: (end of the headers incl. the last
/// field's CRLF, start of the body).
fn header_end(entity: &[u8]) -> (usize, usize) {
    if entity.starts_with(b"\r\n") {
        return (0, 2);
    }
    match memfind(entity, b"\r\n\r\n") {
        Some(i) => (i + 2, i + 4),
        None => (entity.len(), entity.len()),
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One header field, folded lines included, and its name.
struct Field<'a> {
    name: String,
    raw: &'a [u8],
}

fn fields(head: &[u8]) -> Vec<Field<'_>> {
    let mut out: Vec<Field<'_>> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < head.len() {
        let end = memfind(&head[i..], b"\r\n").map_or(head.len(), |p| i + p + 2);
        let line = &head[i..end];
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation && i > start {
            out.push(field(&head[start..i]));
            start = i;
        }
        i = end;
    }
    if start < head.len() {
        out.push(field(&head[start..]));
    }
    out
}

fn field(raw: &[u8]) -> Field<'_> {
    let name = raw
        .iter()
        .position(|b| *b == b':')
        .map(|p| String::from_utf8_lossy(&raw[..p]).trim().to_ascii_lowercase())
        .unwrap_or_default();
    Field { name, raw }
}

/// The unfolded value of a field.
fn value(f: &Field<'_>) -> String {
    let v = f
        .raw
        .iter()
        .position(|b| *b == b':')
        .map_or(&f.raw[..0], |p| &f.raw[p + 1..]);
    String::from_utf8_lossy(v).replace("\r\n", "").trim().to_string()
}

/// `type/subtype` (lower case) and the `boundary` parameter of a
/// Content-Type value (RFC 2045 5.1).
fn content_type(v: &str) -> (String, Option<String>) {
    let mut parts = v.split(';');
    let ty = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let mut boundary = None;
    for p in parts {
        if let Some((k, val)) = p.split_once('=') {
            if k.trim().eq_ignore_ascii_case("boundary") {
                let val = val.trim();
                let val = val
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .unwrap_or(val);
                boundary = Some(val.to_string());
            }
        }
    }
    (ty, boundary)
}

/// The message converted so that it holds 7-bit data only (header
/// sections are left alone: UTF-8 there is SMTPUTF8's business, RFC 6532).
/// A message without 8-bit content comes back unchanged.
pub fn to_7bit(message: &[u8]) -> Vec<u8> {
    if !is_8bit(message) {
        return message.to_vec();
    }
    let mut out = Vec::with_capacity(message.len() * 4 / 3 + 256);
    entity(message, "text/plain", true, &mut out);
    out
}

/// Converts one MIME entity (header section + body) into `out`.
/// `default_type`: text/plain, or message/rfc822 inside multipart/digest
/// (RFC 2046 5.1.5). `top`: the message itself, which gets MIME-Version and
/// a Content-Type when it had none (a plain RFC 5322 message with 8-bit
/// text).
fn entity(ent: &[u8], default_type: &str, top: bool, out: &mut Vec<u8>) {
    let (head_end, body_start) = header_end(ent);
    let head = &ent[..head_end];
    let body = &ent[body_start.min(ent.len())..];
    if !is_8bit(body) {
        out.extend_from_slice(ent);
        return;
    }
    let fs = fields(head);
    let ct = fs.iter().find(|f| f.name == "content-type").map(value);
    let cte = fs
        .iter()
        .find(|f| f.name == "content-transfer-encoding")
        .map(|f| value(f).to_ascii_lowercase());
    let (ty, boundary) = match &ct {
        Some(v) => content_type(v),
        None => (default_type.to_string(), None),
    };
    if let (true, Some(b)) = (ty.starts_with("multipart/"), boundary) {
        out.extend_from_slice(&ent[..body_start]);
        let inner_default = if ty == "multipart/digest" {
            "message/rfc822"
        } else {
            "text/plain"
        };
        multipart(body, &b, inner_default, out);
        return;
    }
    if ty == "message/rfc822" || ty == "message/global" {
        // RFC 2046 5.2.1: message/rfc822 may not be encoded itself; its
        // content is converted instead.
        out.extend_from_slice(&ent[..body_start]);
        entity(body, "text/plain", false, out);
        return;
    }
    if matches!(cte.as_deref(), Some("quoted-printable" | "base64")) {
        // Already encoded yet with 8-bit octets: broken; nothing sensible
        // to do but drop the high bit would corrupt it more. Sent as is.
        out.extend_from_slice(ent);
        return;
    }
    let text = ty.starts_with("text/");
    for f in &fs {
        if f.name != "content-transfer-encoding" {
            out.extend_from_slice(f.raw);
        }
    }
    if top && ct.is_none() {
        let has_version = fs.iter().any(|f| f.name == "mime-version");
        if !has_version {
            out.extend_from_slice(b"MIME-Version: 1.0\r\n");
        }
        // RFC 1428: 8-bit text of unknown charset is `unknown-8bit`.
        let charset = if std::str::from_utf8(body).is_ok() {
            "utf-8"
        } else {
            "unknown-8bit"
        };
        out.extend_from_slice(format!("Content-Type: text/plain; charset={charset}\r\n").as_bytes());
    }
    if text {
        out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n");
        quoted_printable(body, out);
    } else {
        out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
        base64_lines(body, out);
    }
}

/// The parts of a multipart body, each converted; delimiter lines, the
/// preamble and the epilogue kept (RFC 2046 5.1.1).
fn multipart(body: &[u8], boundary: &str, default_type: &str, out: &mut Vec<u8>) {
    let delim = format!("--{boundary}");
    // Line starts of delimiter lines, and whether each is the close one.
    let mut marks: Vec<(usize, usize, bool)> = Vec::new(); // (line start, line end incl. CRLF, close)
    let mut i = 0;
    while i < body.len() {
        let end = memfind(&body[i..], b"\r\n").map_or(body.len(), |p| i + p + 2);
        let line = &body[i..end];
        if let Some(rest) = line.strip_prefix(delim.as_bytes()) {
            let close = rest.starts_with(b"--");
            let tail = if close { &rest[2..] } else { rest };
            // Only white space may follow the boundary (RFC 2046 5.1.1).
            if tail.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
                marks.push((i, end, close));
                if close {
                    break;
                }
            }
        }
        i = end;
    }
    let Some(&(first, _, _)) = marks.first() else {
        // No delimiter at all: not really multipart; encode as opaque data
        // would change its type; keep the octets 7-bit by escaping instead.
        seven_bit_lossy(body, out);
        return;
    };
    seven_bit_lossy(&body[..first], out);
    for w in 0..marks.len() {
        let (start, end, close) = marks[w];
        out.extend_from_slice(&body[start..end]);
        if close {
            seven_bit_lossy(&body[end..], out);
            return;
        }
        // The CRLF before the next delimiter belongs to the delimiter.
        let next = marks.get(w + 1).map_or(body.len(), |m| m.0);
        let part_end = if next >= end + 2 && body[..next].ends_with(b"\r\n") {
            next - 2
        } else {
            next
        };
        entity(&body[end..part_end.max(end)], default_type, false, out);
        out.extend_from_slice(&body[part_end.max(end)..next]);
    }
}

/// Preambles and epilogues are to be ignored by readers (RFC 2046 5.1.1):
/// 8-bit octets there become `?`.
fn seven_bit_lossy(data: &[u8], out: &mut Vec<u8>) {
    out.extend(data.iter().map(|b| if *b >= 0x80 || *b == 0 { b'?' } else { *b }));
}

/// RFC 2045 6.7: line breaks (CRLF) stay hard breaks; `=`, controls and
/// 8-bit octets become `=XX`; white space before a line end is encoded;
/// lines are at most 76 characters, soft-broken with a trailing `=`.
pub fn quoted_printable(data: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut col = 0usize;
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if b == b'\r' && data.get(i + 1) == Some(&b'\n') {
            out.extend_from_slice(b"\r\n");
            col = 0;
            i += 2;
            continue;
        }
        let at_line_end = matches!(data.get(i + 1), None | Some(b'\r'));
        let literal = (b == b' ' || b == b'\t') && !at_line_end || (33..=126).contains(&b) && b != b'=';
        let width = if literal { 1 } else { 3 };
        // Room for the soft break `=` at column 76.
        if col + width > 75 {
            out.extend_from_slice(b"=\r\n");
            col = 0;
        }
        if literal {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'=', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
        col += width;
        i += 1;
    }
}

/// RFC 2045 6.8: base64 in lines of 76 characters.
fn base64_lines(data: &[u8], out: &mut Vec<u8>) {
    let enc = base64::engine::general_purpose::STANDARD.encode(data);
    for chunk in enc.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qp(s: &[u8]) -> String {
        let mut out = Vec::new();
        quoted_printable(s, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn quoted_printable_rules() {
        assert_eq!(qp("café = ok\r\n".as_bytes()), "caf=C3=A9 =3D ok\r\n");
        // White space before a line end is encoded, elsewhere not.
        assert_eq!(qp(b"a \r\nb\t"), "a=20\r\nb=09");
        let long = "é".repeat(40);
        let enc = qp(long.as_bytes());
        assert!(enc.lines().all(|l| l.len() <= 76), "{enc}");
        assert!(enc.contains("=\r\n"));
        assert!(enc.is_ascii());
        // A bare LF is data, not a line break.
        assert_eq!(qp(b"a\nb"), "a=0Ab");
    }

    #[test]
    fn plain_message_gets_mime_headers_and_qp() {
        let m = "From: a@b.example\r\nSubject: x\r\n\r\nGrüße\r\n.dot\r\n".as_bytes();
        let c = String::from_utf8(to_7bit(m)).unwrap();
        assert!(
            c.starts_with("From: a@b.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"),
            "{c}"
        );
        assert!(c.contains("Content-Type: text/plain; charset=utf-8\r\n"));
        assert!(c.contains("Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe\r\n.dot\r\n"));
        assert!(!is_8bit(c.as_bytes()));
    }

    #[test]
    fn ascii_message_is_unchanged() {
        let m = b"Subject: x\r\n\r\nplain\r\n";
        assert_eq!(to_7bit(m), m.to_vec());
    }

    #[test]
    fn existing_8bit_encoding_is_replaced() {
        let m = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9\r\n";
        let c = String::from_utf8(to_7bit(m)).unwrap();
        assert_eq!(
            c,
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n"
        );
    }

    #[test]
    fn multipart_text_qp_binary_base64() {
        let m = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n boundary=\"XX\"\r\n\r\npre\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa9t\xc3\xa9\r\n--XX\r\nContent-Type: text/plain\r\n\r\nascii part\r\n--XX\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\xff\xfe\r\n--XX--\r\nepi\r\n";
        let c = String::from_utf8(to_7bit(m)).unwrap();
        assert!(!is_8bit(c.as_bytes()), "{c}");
        assert!(c.contains("--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9t=C3=A9\r\n--XX\r\n"), "{c}");
        assert!(c.contains("--XX\r\nContent-Type: text/plain\r\n\r\nascii part\r\n--XX\r\n"));
        assert!(c.contains("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAH//g==\r\n\r\n--XX--\r\nepi\r\n"), "{c}");
        assert!(c.starts_with(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n boundary=\"XX\"\r\n\r\npre\r\n"
        ));
    }

    #[test]
    fn nested_message_is_converted_inside() {
        let m = b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nna\xc3\xafve\r\n";
        let c = String::from_utf8(to_7bit(m)).unwrap();
        assert!(c.starts_with("Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n"));
        assert!(c.contains("na=C3=AFve"), "{c}");
        assert!(!c.contains("Content-Transfer-Encoding: quoted-printable\r\n\r\nSubject"));
    }

    #[test]
    fn smtputf8_detection() {
        assert!(headers_need_smtputf8("Subject: Grüße\r\n\r\nx\r\n".as_bytes()));
        assert!(!headers_need_smtputf8("Subject: hi\r\n\r\nGrüße\r\n".as_bytes()));
        // Latin-1 octets are not UTF-8: not an internationalized message.
        assert!(!headers_need_smtputf8(b"Subject: caf\xe9\r\n\r\nx\r\n"));
    }
}
