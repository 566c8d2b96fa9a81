//! Decoding and encoding: the transfer encodings (RFC 2045 6.7
//! quoted-printable, 6.8 base64), charsets to UTF-8 and RFC 2047 encoded
//! words. Decoders are lenient (what a reader of stored mail needs: IMAP
//! BINARY, SEARCH, the filter's text) and never fail or panic on malformed
//! input; encoders write what RFC 2045 allows (the 7-bit conversion).
//!
//! mail-parser gives the charset tables (`charset_decoder`): its own base64
//! and quoted-printable decoders return nothing at the first bad octet,
//! where IMAP BINARY and SEARCH must still show what can be read (Dovecot
//! skips characters outside the alphabet), so those stay here.

use base64::Engine;

use crate::header::{is_wsp, line_end, strip_eol};

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
pub fn decode_base64(data: &[u8]) -> Vec<u8> {
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
pub fn decode_qp(data: &[u8]) -> Vec<u8> {
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
pub fn to_utf8(bytes: &[u8], charset: Option<&[u8]>) -> String {
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
pub fn encoded_word(s: &[u8]) -> Option<(String, usize)> {
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
pub fn decode_rfc2047(v: &[u8]) -> String {
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

/// RFC 2045 6.7: line breaks (CRLF) stay hard breaks; `=`, controls and
/// 8-bit octets become `=XX`; white space before a line end is encoded;
/// lines are at most 76 characters, soft-broken with a trailing `=`.
pub fn encode_quoted_printable(data: &[u8], out: &mut Vec<u8>) {
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
pub fn encode_base64_lines(data: &[u8], out: &mut Vec<u8>) {
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
        encode_quoted_printable(s, &mut out);
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
    fn encoded_words() {
        assert_eq!(
            decode_rfc2047(b"=?UTF-8?B?SGVsbG8gV8O2cmxk?= =?ISO-8859-1?Q?caf=E9?="),
            "Hello Wörldcafé"
        );
        assert_eq!(decode_rfc2047(b"a =?utf-8?q?b_c?= d"), "a b c d");
        // Not a word: kept as written.
        assert_eq!(decode_rfc2047(b"=?x?y?z?="), "=?x?y?z?=");
        assert_eq!(decode_rfc2047(b"=?utf-8?b?"), "=?utf-8?b?");
        assert_eq!(to_utf8(b"caf\xe9", Some(b"iso-8859-1")), "café");
        assert_eq!(to_utf8(b"caf\xe9", Some(b"no-such-charset")), "caf\u{fffd}");
    }

    #[test]
    fn lenient_transfer_decoding() {
        assert_eq!(decode_base64(b"aGVs\r\nbG8=\r\n"), b"hello");
        assert_eq!(decode_base64(b"a!G*V@s"), b"hel");
        assert_eq!(decode_qp(b"a=3Db =\r\nc  \r\n=ZZ=4"), b"a=b c\r\n=ZZ=4");
    }
}
