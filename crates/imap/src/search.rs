//! SEARCH (RFC 9051 6.4.4): every key, evaluated against a selected
//! mailbox. Header and text keys read the message (once, and only when a
//! key needs it); string matching is case-insensitive on Unicode text.

use std::sync::Arc;

use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::SequenceSet;

use crate::format::{days_from_civil, ANSWERED, DELETED, DRAFT, FLAGGED, SEEN};
use crate::selected::{Msg, Selected};
use crate::sequence::{modseq_arg, set_contains};

/// Loads a message by its index in the selected list: the whole message, or
/// only its header block when no key looks further ([`needs_body`]).
pub type Loader<'a> = dyn Fn(usize) -> Option<Arc<[u8]>> + 'a;

/// Unix day number of an IMAP date (time zone disregarded, RFC 9051 6.4.4).
fn day(d: &imap_codec::imap_types::datetime::NaiveDate) -> i64 {
    use chrono::Datelike;
    let d = d.as_ref();
    days_from_civil(i64::from(d.year()), d.month(), d.day())
}

fn contains(haystack: &str, needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    // ASCII needle and haystack (the common case): compare without
    // allocating. Otherwise Unicode lowercase of both.
    if needle.is_ascii() && haystack.is_ascii() {
        return contains_ascii_ci(haystack.as_bytes(), needle);
    }
    let needle = String::from_utf8_lossy(needle).to_lowercase();
    haystack.to_lowercase().contains(&needle)
}

/// ASCII case-insensitive substring search: candidates by the first byte
/// (either case, memchr2), then a comparison; bodies are kilobytes long.
fn contains_ascii_ci(h: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    let (lo, up) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    memchr::memchr2_iter(lo, up, h).any(|i| {
        h.get(i..i + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(needle))
    })
}

/// Whether some header value could contain `needle`: false only when it
/// certainly cannot, which a plain scan of the raw header tells when
/// nothing in it changes in decoding: the header is ASCII (no Unicode
/// lowercasing that yields ASCII, like U+212A KELVIN SIGN), has no RFC 2047
/// encoded word (`=?`) and no CR outside CRLF (unfolding drops stray CRs),
/// and the needle has no white space (unfolding turns a line break and its
/// white space into one space, RFC 5322 2.2.3).
fn may_contain(head: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty()
        || !needle.is_ascii()
        || needle.iter().any(u8::is_ascii_whitespace)
        || !head.is_ascii()
        || memchr::memmem::find(head, b"=?").is_some()
        || memchr::memchr_iter(b'\r', head).any(|i| head.get(i + 1) != Some(&b'\n'))
    {
        return true;
    }
    contains_ascii_ci(head, needle)
}

/// [`may_contain`] for an address field: false only when no field named
/// `name` can contain `needle` as [`crate::mime::address_values`] shows
/// it. A field whose addresses read otherwise than written is always
/// looked at: a quoted string or escape (`"user"@host`), a comment that
/// stands for a name (`user@host (Name)`), white space inside an address
/// (`user @ host`, `< user@host >`).
fn address_may_contain(head: &[u8], name: &str, needle: &[u8]) -> bool {
    postroom_message::header::fields(head)
        .filter(|f| f.name.is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes())))
        .any(|f| {
            let v = f.value;
            v.iter().any(|b| matches!(b, b'"' | b'\\' | b'('))
                || [&b" @"[..], b"@ ", b"< ", b" >", b"\t@", b"@\t", b"\n@", b"@\r"]
                    .iter()
                    .any(|p| memchr::memmem::find(v, p).is_some())
                || may_contain(v, needle)
        })
}

/// Whether a message matches: `idx` is its index in `sel.msgs`.
pub fn matches(
    key: &SearchKey<'_>,
    sel: &Selected,
    idx: usize,
    load: &Loader<'_>,
    raw: &mut Option<Option<Arc<[u8]>>>,
) -> bool {
    let m: &Msg = &sel.msgs()[idx];
    let seq = idx as i64 + 1;
    let body = |raw: &mut Option<Option<Arc<[u8]>>>| -> Option<Arc<[u8]>> {
        raw.get_or_insert_with(|| load(idx)).clone()
    };
    let header_has = |name: &str, needle: &[u8], raw: &mut Option<Option<Arc<[u8]>>>| -> bool {
        let Some(bytes) = raw.get_or_insert_with(|| load(idx)).as_ref() else {
            return false;
        };
        if !may_contain(crate::mime::header_block(bytes), needle) {
            return false;
        }
        crate::mime::header_values(bytes, name)
            .iter()
            .any(|v| contains(v, needle))
    };
    // FROM, TO, CC, BCC: the field and its addresses as a reader sees them
    // (`crate::mime::address_values`).
    let address_has = |name: &str, needle: &[u8], raw: &mut Option<Option<Arc<[u8]>>>| -> bool {
        let Some(bytes) = raw.get_or_insert_with(|| load(idx)).as_ref() else {
            return false;
        };
        if !address_may_contain(crate::mime::header_block(bytes), name, needle) {
            return false;
        }
        crate::mime::address_values(bytes, name)
            .iter()
            .any(|v| contains(v, needle))
    };
    match key {
        SearchKey::All => true,
        SearchKey::And(keys) => keys.as_ref().iter().all(|k| matches(k, sel, idx, load, raw)),
        SearchKey::Or(a, b) => matches(a, sel, idx, load, raw) || matches(b, sel, idx, load, raw),
        SearchKey::Not(k) => !matches(k, sel, idx, load, raw),
        SearchKey::SequenceSet(set) => in_seq(set, seq, sel),
        SearchKey::Uid(set) => in_uid(set, m.uid, sel),
        SearchKey::Answered => m.flags & ANSWERED != 0,
        SearchKey::Unanswered => m.flags & ANSWERED == 0,
        SearchKey::Deleted => m.flags & DELETED != 0,
        SearchKey::Undeleted => m.flags & DELETED == 0,
        SearchKey::Draft => m.flags & DRAFT != 0,
        SearchKey::Undraft => m.flags & DRAFT == 0,
        SearchKey::Flagged => m.flags & FLAGGED != 0,
        SearchKey::Unflagged => m.flags & FLAGGED == 0,
        SearchKey::Seen => m.flags & SEEN != 0,
        SearchKey::Unseen => m.flags & SEEN == 0,
        SearchKey::Recent => sel.is_recent(m.uid),
        SearchKey::Old => !sel.is_recent(m.uid),
        SearchKey::New => sel.is_recent(m.uid) && m.flags & SEEN == 0,
        SearchKey::Keyword(k) => m.keywords.split(' ').any(|x| x.eq_ignore_ascii_case(k.as_ref())),
        SearchKey::Unkeyword(k) => !m.keywords.split(' ').any(|x| x.eq_ignore_ascii_case(k.as_ref())),
        SearchKey::Larger(n) => m.size > i64::from(*n),
        SearchKey::Smaller(n) => m.size < i64::from(*n),
        SearchKey::Before(d) => m.internal_date.div_euclid(86_400) < day(d),
        SearchKey::On(d) => m.internal_date.div_euclid(86_400) == day(d),
        SearchKey::Since(d) => m.internal_date.div_euclid(86_400) >= day(d),
        SearchKey::SentBefore(d) | SearchKey::SentOn(d) | SearchKey::SentSince(d) => {
            // The calendar day written in the Date: header (as Dovecot does),
            // else the internal date's.
            let sent_day = body(raw)
                .and_then(|b| crate::mime::sent_day(&b))
                .unwrap_or(m.internal_date.div_euclid(86_400));
            match key {
                SearchKey::SentBefore(_) => sent_day < day(d),
                SearchKey::SentOn(_) => sent_day == day(d),
                _ => sent_day >= day(d),
            }
        }
        SearchKey::From(s) => address_has("From", s.as_ref(), raw),
        SearchKey::To(s) => address_has("To", s.as_ref(), raw),
        SearchKey::Cc(s) => address_has("Cc", s.as_ref(), raw),
        SearchKey::Bcc(s) => address_has("Bcc", s.as_ref(), raw),
        SearchKey::Subject(s) => header_has("Subject", s.as_ref(), raw),
        SearchKey::Header(name, s) => {
            let name = String::from_utf8_lossy(name.as_ref()).into_owned();
            let Some(bytes) = body(raw) else {
                return false;
            };
            let values = crate::mime::header_values(&bytes, &name);
            // An empty string matches every message that has the header.
            !values.is_empty() && values.iter().any(|v| contains(v, s.as_ref()))
        }
        SearchKey::Body(s) => body(raw).is_some_and(|b| contains(&crate::mime::body_text(&b), s.as_ref())),
        SearchKey::Text(s) => body(raw).is_some_and(|b| {
            let head = postroom_message::header::header_section(&b);
            contains(&String::from_utf8_lossy(head), s.as_ref())
                || contains(&crate::mime::body_text(&b), s.as_ref())
        }),
        SearchKey::ModSequence { modseq, .. } => m.modseq >= modseq_arg(*modseq),
    }
}

// Asked once per message: membership is tested against the set's ranges,
// never by expanding the set (which made `SEARCH 1:* UID 1:*` quadratic).
//
// A number past the last message matches nothing, and a range reaching past
// it covers the messages up to the last: `1:4294967295` is `1:*` (as for
// UIDs, RFC 9051 9). Refusing the whole set made `SEARCH 1:4294967295`
// match nothing while `1:*` matched all.
fn in_seq(set: &SequenceSet, seq: i64, sel: &Selected) -> bool {
    set_contains(set, seq, sel.msgs().len() as i64)
}

fn in_uid(set: &SequenceSet, uid: postroom_store::Uid, sel: &Selected) -> bool {
    set_contains(set, uid.as_i64(), sel.msgs().last().map_or(0, |m| m.uid.as_i64()))
}

/// Whether a search looks past the header (BODY, TEXT): else the header
/// block of each message is all it reads.
pub fn needs_body(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().any(needs_body),
        SearchKey::Or(a, b) => needs_body(a) || needs_body(b),
        SearchKey::Not(k) => needs_body(k),
        SearchKey::Body(_) | SearchKey::Text(_) => true,
        _ => false,
    }
}

/// Whether a search needs message contents (to read them only when so).
pub fn needs_content(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().any(needs_content),
        SearchKey::Or(a, b) => needs_content(a) || needs_content(b),
        SearchKey::Not(k) => needs_content(k),
        SearchKey::From(_)
        | SearchKey::To(_)
        | SearchKey::Cc(_)
        | SearchKey::Bcc(_)
        | SearchKey::Subject(_)
        | SearchKey::Header(..)
        | SearchKey::Body(_)
        | SearchKey::Text(_)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The raw-header prefilter never rejects a message the full decoding
    /// would match.
    #[test]
    fn prefilter_has_no_false_negatives() {
        let headers: [&[u8]; 9] = [
            b"Subject: Quarterly invoice\r\n\r\n",
            b"Subject: inv\roice\r\n\r\n",
            b"Subject: =?UTF-8?Q?invoice?=\r\n\r\n",
            b"Subject: =?UTF-8?B?aW52b2ljZQ==?=\r\n\r\n",
            b"Subject: foo\r\n bar\r\n\r\n",
            b"Subject: \xe2\x84\xaaelvin\r\n\r\n",
            b"Subject: INVOICE\n\n",
            b"From: x\r\nSubject:invoice\r\n",
            b"Subject: nothing here\r\n\r\n",
        ];
        assert!(contains("Quarterly INVOICE", b"invoice") && !contains("Quarterly", b"invoices"));
        assert!(contains("abc", b"") && contains("aab", b"ab") && !contains("", b"a"));
        let needles: [&[u8]; 7] = [
            b"invoice", b"INVOICE", b"foo bar", b"kelvin", b"", b"here", b"zzz",
        ];
        for h in headers {
            for n in needles {
                let full = crate::mime::header_values(h, "Subject")
                    .iter()
                    .any(|v| contains(v, n));
                if full {
                    assert!(
                        may_contain(crate::mime::header_block(h), n),
                        "{:?} / {:?}",
                        String::from_utf8_lossy(h),
                        String::from_utf8_lossy(n)
                    );
                }
            }
        }
        assert!(!may_contain(b"Subject: nothing here\r\n\r\n", b"invoice"));
    }

    /// The address prefilter never rejects a message the address reading
    /// would match, and still rejects plain headers that cannot.
    #[test]
    fn address_prefilter_has_no_false_negatives() {
        let headers: [&[u8]; 9] = [
            b"From: \"user-from\"@domain.org\r\n\r\n",
            b"From: user-from@domain.org (User From)\r\n\r\n",
            b"From: User From <user-from @ domain.org>\r\n\r\n",
            b"From: \"=?UTF-8?Q?User_From?=\" <user-from@domain.org>\r\n\r\n",
            b"From: =?UTF-8?Q?J=C3=BCrgen?= <user-from@domain.org>\r\n\r\n",
            b"From: User\r\n From <user-from@\r\n domain.org>\r\n\r\n",
            b"From: Team: a@b.example, c@d.example;\r\n\r\n",
            b"Received: (comment)\r\nFrom: plain@else.example\r\n\r\n",
            b"From: \"a\\\"b\" <q@x.example>\r\n\r\n",
        ];
        let needles: [&[u8]; 8] = [
            b"user-from@domain.org",
            b"User From <user-from@domain.org>",
            b"User From",
            b"J\xc3\xbcrgen <user-from",
            b"team:",
            b"a\"b <q@x.example>",
            b"plain@else.example",
            b"zzz",
        ];
        for h in headers {
            for n in needles {
                let full = crate::mime::address_values(h, "From")
                    .iter()
                    .any(|v| contains(v, n));
                if full {
                    assert!(
                        address_may_contain(crate::mime::header_block(h), "From", n),
                        "{:?} / {:?}",
                        String::from_utf8_lossy(h),
                        String::from_utf8_lossy(n)
                    );
                }
            }
        }
        // The decoded forms a reader sees are found.
        for (h, n) in [
            (headers[0], &b"user-from@domain.org"[..]),
            (headers[1], b"User From <user-from@domain.org>"),
            (headers[2], b"user-from@domain.org"),
            (headers[3], b"User From <user-from@domain.org>"),
            (headers[5], b"user-from@domain.org"),
            (headers[8], b"a\"b <q@x.example>"),
        ] {
            assert!(
                crate::mime::address_values(h, "from")
                    .iter()
                    .any(|v| contains(v, n)),
                "{:?} / {:?}: {:?}",
                String::from_utf8_lossy(h),
                String::from_utf8_lossy(n),
                crate::mime::address_values(h, "from")
            );
        }
        assert!(!address_may_contain(
            b"Received: (x)\r\nFrom: plain@else.example\r\n\r\n",
            "From",
            b"other"
        ));
    }
}
