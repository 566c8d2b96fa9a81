//! The pieces of IMAP4rev2 that `imap-codec` does not parse yet: SEARCH
//! RETURN options (ESEARCH, RFC 4731 / RFC 9051 6.4.4) and LIST selection
//! and RETURN options (LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819,
//! SPECIAL-USE RFC 6154). They are lifted out of the command's first line
//! before the codec sees the rest, and handed to the session beside it.

/// Options taken out of a command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    /// `SEARCH RETURN (...)`: the options, upper-cased (empty: ALL).
    pub search_return: Option<Vec<String>>,
    /// `LIST (selection) ...`: SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE.
    pub list_select: Vec<String>,
    /// `LIST ... RETURN (...)`: SUBSCRIBED, CHILDREN, SPECIAL-USE.
    pub list_return: Vec<String>,
    /// `RETURN (STATUS (...))`: the status items, upper-cased.
    pub list_status: Option<Vec<String>>,
    /// `LIST ref (p1 p2 ...)`: the patterns (RFC 5258 3), as sent (quoted
    /// ones unescaped); the command keeps the first in the list's place.
    pub list_patterns: Option<Vec<Vec<u8>>>,
    /// An APPEND whose message literal was handed out as
    /// [`crate::framing::Frame::LiteralChunk`]s: the command carries an
    /// empty literal in its place.
    pub streamed: bool,
}

pub(crate) fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The index just past the `)` that closes the `(` at `open`.
fn close_paren(s: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_quote = false;
    let mut i = open;
    while i < s.len() {
        match s[i] {
            b'\\' if in_quote => i += 1,
            b'"' => in_quote = !in_quote,
            b'(' if !in_quote => depth += 1,
            b')' if !in_quote => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b'\r' | b'\n' => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Words of a parenthesised list, nested lists kept as one item.
fn words(list: &[u8]) -> Vec<String> {
    let inner = match list {
        [b'(', inner @ .., b')'] => inner,
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < inner.len() && inner[i] != b' ' && inner[i] != b'(' {
            i += 1;
        }
        if i < inner.len() && inner[i] == b'(' {
            let end = close_paren(inner, i).unwrap_or(inner.len());
            i = end;
        }
        out.push(String::from_utf8_lossy(&inner[start..i]).to_ascii_uppercase());
    }
    out
}

/// A quoted string at the start of `s`: (its content unescaped, its
/// length with the quotes).
fn quoted(s: &[u8]) -> Option<(Vec<u8>, usize)> {
    if s.first() != Some(&b'"') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => return Some((out, i + 1)),
            b'\\' => {
                out.push(*s.get(i + 1)?);
                i += 2;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

/// `reference (p1 p2 ...)` (RFC 5258 3: `mbox-or-pat`), the list at the end
/// of `body`: where the list opens, the patterns (quoted ones unescaped)
/// and the first one as written, which takes the list's place for the
/// codec. `None` when `body` is not that (one pattern, a literal, a nested
/// list, an empty list: the codec judges those).
fn pattern_list(body: &[u8]) -> Option<(usize, Vec<Vec<u8>>, Vec<u8>)> {
    let ref_len = match quoted(body) {
        Some((_, n)) => n,
        None => body.iter().position(|&b| b == b' ')?,
    };
    let open = ref_len + 1;
    if body.get(ref_len) != Some(&b' ')
        || body.get(open) != Some(&b'(')
        || close_paren(body, open)? != body.len()
    {
        return None;
    }
    let inner = &body[open + 1..body.len() - 1];
    let mut patterns = Vec::new();
    let mut first = None;
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b' ' {
            i += 1;
            continue;
        }
        let (pattern, len) = match inner[i] {
            b'"' => quoted(&inner[i..])?,
            b'(' | b')' | b'{' => return None,
            _ => {
                let len = inner[i..]
                    .iter()
                    .position(|&b| b == b' ')
                    .unwrap_or(inner.len() - i);
                (inner[i..i + len].to_vec(), len)
            }
        };
        first.get_or_insert_with(|| inner[i..i + len].to_vec());
        patterns.push(pattern);
        i += len;
    }
    Some((open, patterns, first?))
}

/// Rewrites a complete command message, taking out what the codec does not
/// know. Returns the message unchanged when there is nothing to take.
pub fn lift(message: &[u8]) -> (Vec<u8>, Extras) {
    let mut extras = Extras::default();
    let Some(sp) = message.iter().position(|&b| b == b' ') else {
        return (message.to_vec(), extras);
    };
    let mut pos = sp + 1;
    if starts_with_ci(&message[pos..], b"UID ") {
        pos += 4;
    }
    if starts_with_ci(&message[pos..], b"SEARCH RETURN (") {
        let open = pos + b"SEARCH RETURN ".len();
        if let Some(end) = close_paren(message, open) {
            extras.search_return = Some(words(&message[open..end]));
            let mut out = message[..pos + b"SEARCH ".len()].to_vec();
            let rest = &message[end..];
            out.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
            return (out, extras);
        }
    }
    if starts_with_ci(&message[pos..], b"LIST ") {
        let open = pos + b"LIST ".len();
        let mut out = message[..open].to_vec();
        let mut rest_start = open;
        if message.get(open) == Some(&b'(') {
            if let Some(end) = close_paren(message, open) {
                extras.list_select = words(&message[open..end]);
                rest_start = end + usize::from(message.get(end) == Some(&b' '));
            }
        }
        let rest_start = rest_start.min(message.len());
        // The end of the line the options are on (not an earlier CRLF).
        let line_end =
            memchr::memmem::find(&message[rest_start..], b"\r\n").map_or(message.len(), |i| rest_start + i);
        let line = &message[rest_start..line_end];
        let upper = line.to_ascii_uppercase();
        // `RETURN (...)` at the end of the line: taken out.
        let mut body_end = line.len();
        if let Some(r) = memchr::memmem::rfind(&upper, b" RETURN (") {
            let open = r + b" RETURN ".len();
            if close_paren(line, open) == Some(line.len()) {
                let mut ws = words(&line[open..]).into_iter();
                while let Some(w) = ws.next() {
                    if w == "STATUS" {
                        // `STATUS (items)`: the list is the next word.
                        extras.list_status = Some(ws.next().map(|l| words(l.as_bytes())).unwrap_or_default());
                    } else {
                        extras.list_return.push(w);
                    }
                }
                body_end = r;
            }
        }
        let body = &line[..body_end];
        match pattern_list(body) {
            Some((open, patterns, first)) => {
                out.extend_from_slice(&body[..open]);
                out.extend_from_slice(&first);
                extras.list_patterns = Some(patterns);
            }
            None => out.extend_from_slice(body),
        }
        out.extend_from_slice(&message[line_end..]);
        return (out, extras);
    }
    (message.to_vec(), extras)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn never_panics(input in proptest::collection::vec(proptest::sample::select(
            b"aLIST SEARCHRETURNUID() \"\\*%\r\nSTATUS".to_vec()), 0..80)) {
            let _ = lift(&input);
        }
    }

    #[test]
    fn search_return() {
        let (m, e) = lift(b"a1 UID SEARCH RETURN (MIN COUNT) UNSEEN\r\n");
        assert_eq!(m, b"a1 UID SEARCH UNSEEN\r\n");
        assert_eq!(e.search_return, Some(vec!["MIN".into(), "COUNT".into()]));
        let (m, e) = lift(b"a1 search return () all\r\n");
        assert_eq!(m, b"a1 search all\r\n");
        assert_eq!(e.search_return, Some(vec![]));
    }

    #[test]
    fn list_extended() {
        let (m, e) = lift(b"a1 LIST (SUBSCRIBED) \"\" \"*\" RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n");
        assert_eq!(m, b"a1 LIST \"\" \"*\"\r\n");
        assert_eq!(e.list_select, ["SUBSCRIBED"]);
        assert_eq!(e.list_return, ["CHILDREN"]);
        assert_eq!(e.list_status, Some(vec!["MESSAGES".into(), "UNSEEN".into()]));
        let (m, e) = lift(b"a2 LIST \"\" % RETURN (SPECIAL-USE)\r\n");
        assert_eq!(m, b"a2 LIST \"\" %\r\n");
        assert_eq!(e.list_return, ["SPECIAL-USE"]);
        // RFC 5258 3: several patterns; the first stays for the codec.
        let (m, e) = lift(b"a4 LIST (SUBSCRIBED) \"\" (INBOX \"Sent \\\"x\\\"\" %) RETURN (CHILDREN)\r\n");
        assert_eq!(m, b"a4 LIST \"\" INBOX\r\n");
        assert_eq!(
            e.list_patterns,
            Some(vec![b"INBOX".to_vec(), b"Sent \"x\"".to_vec(), b"%".to_vec()])
        );
        assert_eq!(e.list_return, ["CHILDREN"]);
        let (m, e) = lift(b"a5 LIST \"\" (\"*\")\r\n");
        assert_eq!(m, b"a5 LIST \"\" \"*\"\r\n");
        assert_eq!(e.list_patterns, Some(vec![b"*".to_vec()]));
        for odd in [
            &b"a6 LIST \"\" ()\r\n"[..],
            b"a6 LIST \"\" ((x))\r\n",
            b"a6 LIST \"\" ({1}\r\nx)\r\n",
        ] {
            let (m, e) = lift(odd);
            assert_eq!(m, odd);
            assert_eq!(e.list_patterns, None);
        }
        let (m, e) = lift(b"a3 LIST \"\" \"Sent RETURN (x\"\r\n");
        assert_eq!(m, b"a3 LIST \"\" \"Sent RETURN (x\"\r\n");
        assert_eq!(e, Extras::default());
        // Hostile input never panics.
        for s in [
            &b"a LIST ("[..],
            b"a LIST ((((",
            b"a UID SEARCH RETURN (",
            b"x",
            b"",
            b"a LIST () \"\" * RETURN (STATUS)\r\n",
            b"a LIST () \"\" * RETURN (STATUS ())\r\n",
            b"a LIST () \"\" * RETURN ()\r\n",
            b"a SEARCH RETURN () \r\n",
            b"a LIST \"\" (\"",
            b"a LIST \"\\\" (x)",
            b"a LIST x (\"\\",
            b"a LIST x (\"a\" \"",
        ] {
            let _ = lift(s);
        }
    }
}
