//! Reading single header fields from a raw message (RFC 5322 2.2), for the
//! few places that need one field without parsing the whole message.

/// The header section, up to and including the CRLF before the empty line.
pub fn header_section(message: &[u8]) -> &[u8] {
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &message[..i + 2],
        None => message,
    }
}

/// The first field called `name` (case-insensitive), unfolded (RFC 5322
/// 2.2.3) and trimmed; None when absent or not UTF-8.
pub fn header_value(message: &[u8], name: &str) -> Option<String> {
    let head = header_section(message);
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    while let Some(line) = lines.next() {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon]
            .trim_ascii_end()
            .eq_ignore_ascii_case(name.as_bytes())
        {
            continue;
        }
        let mut value = line[colon + 1..].to_vec();
        for cont in lines.by_ref() {
            if cont.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                value.extend_from_slice(cont);
            } else {
                break;
            }
        }
        return String::from_utf8(value).ok().map(|v| v.trim().to_string());
    }
    None
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
}
