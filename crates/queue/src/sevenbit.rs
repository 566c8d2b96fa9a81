//! 8-bit to 7-bit conversion (RFC 6152 3, RFC 1652): a message with 8-bit
//! content may only go to a server that offers 8BITMIME; for any other the
//! client converts it, text parts to quoted-printable (RFC 2045 6.7), all
//! others to base64 (RFC 2045 6.8). And the test for content that needs
//! SMTPUTF8 (RFC 6531 3.2, RFC 6532): UTF-8 in the header section.
//!
//! Pure functions over the message bytes (CRLF line ends): no I/O.

use postroom_message::decode;
use postroom_message::header::{self, Field};
use postroom_message::mime::{self, Entity, Kind};

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
    let head = header::header_section(message);
    !head.is_ascii() && std::str::from_utf8(head).is_ok()
}

/// The message converted so that it holds 7-bit data only (header
/// sections are left alone: UTF-8 there is SMTPUTF8's business, RFC 6532).
/// A message without 8-bit content comes back unchanged.
///
/// The MIME structure is postroom-message's tree (the one IMAP shows), so
/// the parts converted are the parts a reader will see; every byte between
/// them (delimiter lines, preamble, epilogue) is copied from its offsets.
pub fn to_7bit(message: &[u8]) -> Vec<u8> {
    if !is_8bit(message) {
        return message.to_vec();
    }
    let mut out = Vec::with_capacity(message.len() * 4 / 3 + 256);
    let root = mime::parse(message);
    entity(message, &root, true, &mut out);
    out.extend_from_slice(&message[root.end.min(message.len())..]);
    out
}

/// Converts one MIME entity (`raw[e.start..e.end]`) into `out`. `top`: the
/// message itself, which gets MIME-Version and a Content-Type when it had
/// none (a plain RFC 5322 message with 8-bit text).
fn entity(raw: &[u8], e: &Entity, top: bool, out: &mut Vec<u8>) {
    let body = &raw[e.header_end..e.end];
    if !is_8bit(body) {
        out.extend_from_slice(&raw[e.start..e.end]);
        return;
    }
    match &e.kind {
        Kind::Multipart(children) => {
            // The header, then each gap (preamble, delimiter lines,
            // epilogue) and each converted part.
            out.extend_from_slice(&raw[e.start..e.header_end]);
            let mut pos = e.header_end;
            for c in children {
                between_parts(&raw[pos..c.start.max(pos)], out);
                entity(raw, c, false, out);
                pos = c.end.max(pos);
            }
            between_parts(&raw[pos..e.end.max(pos)], out);
            return;
        }
        Kind::Message(inner) => {
            // RFC 2046 5.2.1: message/rfc822 may not be encoded itself; its
            // content is converted instead.
            out.extend_from_slice(&raw[e.start..inner.start]);
            entity(raw, inner, false, out);
            out.extend_from_slice(&raw[inner.end..e.end]);
            return;
        }
        Kind::Leaf => {}
    }
    let head = &raw[e.start..e.header_end];
    let fs: Vec<Field<'_>> = header::fields(head).collect();
    let has_ct = fs.iter().any(|f| f.is("content-type"));
    let cte = fs
        .iter()
        .find(|f| f.is("content-transfer-encoding"))
        .map(|f| String::from_utf8_lossy(&f.unfolded()).to_ascii_lowercase());
    if matches!(cte.as_deref(), Some("quoted-printable" | "base64")) {
        // Already encoded yet with 8-bit octets: broken; nothing sensible
        // to do but drop the high bit would corrupt it more. Sent as is.
        out.extend_from_slice(&raw[e.start..e.end]);
        return;
    }
    for f in &fs {
        if !f.is("content-transfer-encoding") {
            out.extend_from_slice(f.raw);
            if !f.raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    if top && !has_ct {
        if !fs.iter().any(|f| f.is("mime-version")) {
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
    if e.ct.is_text() {
        out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n");
        decode::encode_quoted_printable(body, out);
    } else {
        out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
        decode::encode_base64_lines(body, out);
    }
}

/// Bytes between the parts of a multipart: delimiter lines (`--` at the
/// start) are copied, the preamble and epilogue made 7-bit.
fn between_parts(gap: &[u8], out: &mut Vec<u8>) {
    for line in gap.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"--") {
            out.extend_from_slice(line);
        } else {
            seven_bit_lossy(line, out);
        }
    }
}

/// Preambles and epilogues are to be ignored by readers (RFC 2046 5.1.1):
/// 8-bit octets there become `?`.
fn seven_bit_lossy(data: &[u8], out: &mut Vec<u8>) {
    out.extend(data.iter().map(|b| if *b >= 0x80 || *b == 0 { b'?' } else { *b }));
}

#[cfg(test)]
mod tests {
    use super::*;

    // The quoted-printable encoder's own rules are tested where it lives,
    // postroom_message::decode (quoted_printable_rules).

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
    fn a_bare_lf_empty_line_ends_the_header_as_for_imap() {
        // Issue #10: this reader ended the header at CRLF CRLF only, so a
        // bare-LF message was all header: its 8-bit body went out
        // unconverted and its body's UTF-8 asked for SMTPUTF8.
        let m = "Subject: x\nFrom: a@b.example\n\nGrüße\r\n".as_bytes();
        let c = to_7bit(m);
        assert!(!is_8bit(&c), "{}", String::from_utf8_lossy(&c));
        assert!(!headers_need_smtputf8(m));
    }

    #[test]
    fn parts_are_the_parts_imap_shows() {
        // Inner boundary `a` inside outer `ab`: the longest boundary wins
        // (the tree IMAP's BODYSTRUCTURE shows), so the 8-bit part is the
        // inner text part and is converted, delimiters kept.
        let m = b"Content-Type: multipart/mixed; boundary=ab\r\n\r\n--ab\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\ncaf\xc3\xa9\r\n--a--\r\n--ab--\r\n";
        let c = String::from_utf8(to_7bit(m)).unwrap();
        assert!(c.contains("--a\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n--a--\r\n--ab--\r\n"), "{c}");
    }

    #[test]
    fn smtputf8_detection() {
        assert!(headers_need_smtputf8("Subject: Grüße\r\n\r\nx\r\n".as_bytes()));
        assert!(!headers_need_smtputf8("Subject: hi\r\n\r\nGrüße\r\n".as_bytes()));
        // Latin-1 octets are not UTF-8: not an internationalized message.
        assert!(!headers_need_smtputf8(b"Subject: caf\xe9\r\n\r\nx\r\n"));
    }
}
