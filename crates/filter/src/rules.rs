//! Header rules: forged or missing Date/Message-ID, From/Reply-To
//! mismatch, all-caps subject, HTML-only, bad encodings.
//!
//! Scores are SpamAssassin's order of magnitude and kept modest: scripts,
//! monitoring and test suites send mail without a Date or a Message-ID
//! (RFC 5322 3.6 makes Message-ID optional; RFC 5321 6.4 lets the
//! receiving MTA add a Date), so all of these together stay far below
//! the junk threshold of 6.

use async_trait::async_trait;
use mail_parser::{HeaderName, HeaderValue, PartType};

use crate::build::Deps;
use crate::check::{Check, Findings, Scan};

pub const MISSING_DATE: &str = "MISSING_DATE";
pub const INVALID_DATE: &str = "INVALID_DATE";
pub const DATE_IN_FUTURE: &str = "DATE_IN_FUTURE";
pub const DATE_IN_PAST: &str = "DATE_IN_PAST";
pub const MISSING_MID: &str = "MISSING_MID";
pub const INVALID_MID: &str = "INVALID_MID";
pub const MISSING_FROM: &str = "MISSING_FROM";
pub const FROM_REPLYTO_DIFF: &str = "FROM_REPLYTO_DIFF";
pub const SUBJ_ALL_CAPS: &str = "SUBJ_ALL_CAPS";
pub const MIME_HTML_ONLY: &str = "MIME_HTML_ONLY";
pub const MIME_BAD_ENCODING: &str = "MIME_BAD_ENCODING";
pub const HEADER_8BIT: &str = "HEADER_8BIT";

/// SpamAssassin 4 scores MISSING_DATE 1.4 and MISSING_MID 0.5; ours are
/// lower because the MX adds neither and much honest automated mail lacks
/// them: both together are 0.8.
const SCORE_MISSING_DATE: f64 = 0.5;
const SCORE_MISSING_MID: f64 = 0.3;
const SCORE_INVALID_DATE: f64 = 1.0;
/// A date more than a day ahead: a clock off by hours is a time zone
/// mistake, a day is a spamware habit (to sort at the top of a mailbox).
const SCORE_DATE_IN_FUTURE: f64 = 1.5;
/// A date more than 30 days old on arrival: a replayed or queued-forever
/// message.
const SCORE_DATE_IN_PAST: f64 = 1.0;
const SCORE_INVALID_MID: f64 = 1.0;
const SCORE_MISSING_FROM: f64 = 1.5;
/// Mailing lists and newsletters set Reply-To elsewhere on purpose: low.
const SCORE_FROM_REPLYTO_DIFF: f64 = 0.5;
const SCORE_SUBJ_ALL_CAPS: f64 = 1.0;
const SCORE_MIME_HTML_ONLY: f64 = 0.7;
const SCORE_MIME_BAD_ENCODING: f64 = 1.0;
const SCORE_HEADER_8BIT: f64 = 0.5;

/// A day (future) and 30 days (past), in seconds.
const FUTURE_SLACK: i64 = 24 * 3600;
const PAST_SLACK: i64 = 30 * 24 * 3600;
/// A subject shorter than this many letters is not "shouting" ("OK",
/// "RE: FYI").
const CAPS_MIN_LETTERS: usize = 10;

/// The header rules (they have no settings beyond their scores).
pub fn checks(_deps: &Deps) -> Result<Vec<Box<dyn Check>>, String> {
    Ok(vec![Box::new(HeaderRules)])
}

struct HeaderRules;

#[async_trait]
impl Check for HeaderRules {
    fn name(&self) -> &'static str {
        "rules"
    }

    async fn check(&self, scan: &Scan<'_>, out: &mut Findings) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        header_rules(scan.message, now, out);
    }
}

/// The rules on one message, `now` in Unix seconds.
pub fn header_rules(m: &mail_parser::Message<'_>, now: i64, out: &mut Findings) {
    let root = m.root_part();
    let find = |name: HeaderName<'static>| root.headers.iter().find(|h| h.name == name);

    match find(HeaderName::Date) {
        None => out.add(MISSING_DATE, SCORE_MISSING_DATE, "no Date header"),
        Some(h) => match &h.value {
            HeaderValue::DateTime(d) if d.is_valid() => {
                let t = d.to_timestamp();
                if t > now + FUTURE_SLACK {
                    out.add(
                        DATE_IN_FUTURE,
                        SCORE_DATE_IN_FUTURE,
                        format!("Date: {}", d.to_rfc3339()),
                    );
                } else if t < now - PAST_SLACK {
                    out.add(
                        DATE_IN_PAST,
                        SCORE_DATE_IN_PAST,
                        format!("Date: {}", d.to_rfc3339()),
                    );
                }
            }
            _ => out.add(
                INVALID_DATE,
                SCORE_INVALID_DATE,
                format!("Date: {}", raw_value(m, h)),
            ),
        },
    }

    match find(HeaderName::MessageId) {
        None => out.add(MISSING_MID, SCORE_MISSING_MID, "no Message-ID header"),
        Some(h) => {
            // RFC 5322 3.6.4: msg-id = "<" id-left "@" id-right ">".
            let raw = raw_value(m, h);
            let raw = raw.trim();
            let ok = raw.starts_with('<')
                && raw.ends_with('>')
                && raw[1..raw.len() - 1]
                    .split_once('@')
                    .is_some_and(|(l, r)| !l.is_empty() && !r.is_empty() && !r.contains('@'));
            if !ok {
                out.add(
                    INVALID_MID,
                    SCORE_INVALID_MID,
                    format!("Message-ID: {}", clip(raw)),
                );
            }
        }
    }

    let from = m.from().and_then(|a| a.first()).and_then(|a| a.address());
    match from {
        None => out.add(MISSING_FROM, SCORE_MISSING_FROM, "no From address"),
        Some(from) => {
            let reply = m.reply_to().and_then(|a| a.first()).and_then(|a| a.address());
            if let Some(reply) = reply {
                let dom = |a: &str| a.rsplit_once('@').map(|(_, d)| d.trim().to_ascii_lowercase());
                let (fd, rd) = (dom(from), dom(reply));
                if fd.is_some() && rd.is_some() && fd != rd {
                    let reg =
                        |d: &Option<String>| d.as_deref().map(|d| psl::domain_str(d).unwrap_or(d).to_owned());
                    if reg(&fd) != reg(&rd) {
                        out.add(
                            FROM_REPLYTO_DIFF,
                            SCORE_FROM_REPLYTO_DIFF,
                            format!("From {from}, Reply-To {reply}"),
                        );
                    }
                }
            }
        }
    }

    if let Some(subject) = m.subject() {
        let letters = subject.chars().filter(|c| c.is_alphabetic()).count();
        if letters >= CAPS_MIN_LETTERS && !subject.chars().any(|c| c.is_lowercase()) {
            out.add(
                SUBJ_ALL_CAPS,
                SCORE_SUBJ_ALL_CAPS,
                format!("Subject: {}", clip(subject)),
            );
        }
    }

    let mut html = false;
    let mut text = false;
    let mut bad = None;
    for part in m.parts.iter().take(100) {
        match part.body {
            PartType::Html(_) => html = true,
            PartType::Text(_) => text = true,
            _ => {}
        }
        if part.is_encoding_problem && bad.is_none() {
            bad = Some(match part.encoding {
                mail_parser::Encoding::Base64 => "a base64 part that does not decode",
                mail_parser::Encoding::QuotedPrintable => "a quoted-printable part that does not decode",
                mail_parser::Encoding::None => "a part in an unknown charset or encoding",
            });
        }
    }
    if html && !text {
        out.add(
            MIME_HTML_ONLY,
            SCORE_MIME_HTML_ONLY,
            "HTML without a plain-text alternative",
        );
    }
    if let Some(what) = bad {
        out.add(MIME_BAD_ENCODING, SCORE_MIME_BAD_ENCODING, what);
    }

    // RFC 5322 2.2: header fields are US-ASCII; RFC 6532 allows UTF-8.
    // Anything else (raw Latin-1, say) is spamware that never encoded its
    // words (RFC 2047).
    let header_end = root.offset_body as usize;
    if let Some(header) = m.raw_message.get(..header_end) {
        if !header.is_ascii() && std::str::from_utf8(header).is_err() {
            out.add(
                HEADER_8BIT,
                SCORE_HEADER_8BIT,
                "8-bit header bytes that are not UTF-8",
            );
        }
    }
}

fn raw_value(m: &mail_parser::Message<'_>, h: &mail_parser::Header<'_>) -> String {
    m.raw_message
        .get(h.offset_start as usize..h.offset_end as usize)
        .map(|b| String::from_utf8_lossy(b).trim().to_owned())
        .unwrap_or_default()
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(raw: &str) -> Vec<String> {
        let m = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .unwrap();
        let mut out = Findings::default();
        // 2026-12-08
        header_rules(&m, 1_796_688_000, &mut out);
        out.symbols.iter().map(|s| s.name.to_string()).collect()
    }

    #[test]
    fn a_proper_message_scores_nothing() {
        let v = run("Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <a@b.example>\r\nFrom: A <a@b.example>\r\nReply-To: c@lists.b.example\r\nSubject: Hello there\r\n\r\nhi\r\n");
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn script_mail_without_date_and_id_stays_far_below_junk() {
        let raw = "From: cron@host.example\r\nSubject: backup done\r\n\r\nok\r\n";
        let m = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .unwrap();
        let mut out = Findings::default();
        header_rules(&m, 1_796_688_000, &mut out);
        let total: f64 = out.symbols.iter().map(|s| s.score).sum();
        assert!(total <= 1.0, "{total}");
    }

    #[test]
    fn forgeries_and_shouting() {
        let v = run("Date: yesterday-ish\r\nMessage-ID: 12345\r\nFrom: a@bank.example\r\nReply-To: x@other.example\r\nSubject: FREE MONEY NOW!!!\r\nContent-Type: text/html\r\n\r\n<b>hi</b>\r\n");
        for s in [
            INVALID_DATE,
            INVALID_MID,
            FROM_REPLYTO_DIFF,
            SUBJ_ALL_CAPS,
            MIME_HTML_ONLY,
        ] {
            assert!(v.iter().any(|x| x == s), "{s} in {v:?}");
        }
        let v = run("Date: Mon, 7 Dec 2037 10:00:00 +0000\r\nMessage-ID: <a@b>\r\nFrom: a@b.example\r\nSubject: x\r\n\r\nhi\r\n");
        assert_eq!(v, [DATE_IN_FUTURE]);
        let v = run("Date: Mon, 7 Dec 2020 10:00:00 +0000\r\nMessage-ID: <a@b>\r\nSubject: x\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!***\r\n");
        assert!(v.iter().any(|x| x == DATE_IN_PAST), "{v:?}");
        assert!(v.iter().any(|x| x == MISSING_FROM), "{v:?}");
    }

    #[test]
    fn raw_latin1_headers() {
        let raw = b"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <a@b>\r\nFrom: a@b.example\r\nSubject: caf\xe9\r\n\r\nhi\r\n";
        let m = mail_parser::MessageParser::default().parse(&raw[..]).unwrap();
        let mut out = Findings::default();
        header_rules(&m, 1_796_688_000, &mut out);
        assert!(out.symbols.iter().any(|s| s.name == HEADER_8BIT));
    }
}
