use std::fmt::Write;

/// One SMTP reply: a code, an enhanced status code (RFC 3463, sent because
/// we announce ENHANCEDSTATUSCODES, RFC 2034) and one or more lines of text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Empty for the greeting and the EHLO/HELO reply (RFC 2034 3).
    pub enhanced: &'static str,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Self {
        Reply {
            code,
            enhanced,
            lines: vec![text.into()],
        }
    }

    pub fn multi(code: u16, lines: Vec<String>) -> Self {
        Reply {
            code,
            enhanced: "",
            lines,
        }
    }

    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// The first line as it appears in a log: `550 5.1.1 text`.
    pub fn summary(&self) -> String {
        let text = self.lines.first().map(String::as_str).unwrap_or("");
        if self.enhanced.is_empty() {
            format!("{} {}", self.code, text)
        } else {
            format!("{} {} {}", self.code, self.enhanced, text)
        }
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut s = String::new();
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 < n { '-' } else { ' ' };
            // Text never carries a line break: it may contain what a peer sent.
            let text: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            if self.enhanced.is_empty() {
                let _ = write!(s, "{}{}{}\r\n", self.code, sep, text);
            } else {
                let _ = write!(s, "{}{}{} {}\r\n", self.code, sep, self.enhanced, text);
            }
        }
        out.extend_from_slice(s.as_bytes());
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiline_and_enhanced() {
        let r = Reply {
            code: 250,
            enhanced: "",
            lines: vec!["mx.example".into(), "PIPELINING".into()],
        };
        assert_eq!(r.to_bytes(), b"250-mx.example\r\n250 PIPELINING\r\n");
        let r = Reply::new(550, "5.1.1", "no such user\r\nX");
        assert_eq!(r.to_bytes(), b"550 5.1.1 no such userX\r\n");
    }
}
