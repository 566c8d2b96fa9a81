//! The header block the store caches (the message up to its first blank
//! line, `postroom_store::cache::header_len`) gives exactly what the whole
//! message gives for every item FETCH and SEARCH answer from it: BODY[HEADER],
//! BODY[HEADER.FIELDS (...)], BODY[HEADER.FIELDS.NOT (...)], ENVELOPE,
//! header values (SEARCH FROM/SUBJECT/HEADER) and the Date: day (SENTON...).

use imap_codec::imap_types::core::{AString, Vec1};
use imap_codec::imap_types::fetch::Section;
use postroom_imap::mime;
use proptest::prelude::*;

fn head(raw: &[u8]) -> &[u8] {
    &raw[..postroom_store::cache::header_len(raw).unwrap_or(raw.len())]
}

fn names(v: &[&str]) -> Vec1<AString<'static>> {
    let list: Vec<AString<'static>> = v
        .iter()
        .filter_map(|n| AString::try_from(n.to_string()).ok())
        .collect();
    Vec1::try_from(list).unwrap_or_else(|_| Vec1::from(AString::try_from("subject").unwrap()))
}

fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"From: A <a@example.com>".to_vec()),
        Just(b"To: b@example.com, \"C D\" <c@example.com>".to_vec()),
        Just(b"Subject: =?UTF-8?Q?caf=C3=A9?= invoice".to_vec()),
        Just(b"subject : second".to_vec()),
        Just(b"Date: Tue, 1 Dec 2026 10:00:00 +0100".to_vec()),
        Just(b" folded continuation".to_vec()),
        Just(b"\tfolded tab".to_vec()),
        Just(b"no colon here".to_vec()),
        Just(b"".to_vec()),
        Just(b"X-Empty:".to_vec()),
        Just(b"\r".to_vec()),
        proptest::collection::vec(prop_oneof![Just(b'a'), Just(b':'), Just(b' '), Just(b'\r')], 0..6),
    ]
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec((line(), prop_oneof![Just(&b"\r\n"[..]), Just(&b"\n"[..])]), 0..12),
        any::<bool>(),
    )
        .prop_map(|(lines, final_eol)| {
            let mut m = Vec::new();
            let n = lines.len();
            for (i, (l, eol)) in lines.into_iter().enumerate() {
                m.extend_from_slice(&l);
                if i + 1 < n || final_eol {
                    m.extend_from_slice(eol);
                }
            }
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn header_items_need_only_the_header_block(raw in message()) {
        let h = head(&raw);
        let list = names(&["subject", "from", "date", "to"]);
        for sec in [
            Section::Header(None),
            Section::HeaderFields(None, list.clone()),
            Section::HeaderFieldsNot(None, list.clone()),
        ] {
            prop_assert_eq!(mime::section(&raw, Some(&sec)), mime::section(h, Some(&sec)));
        }
        prop_assert_eq!(mime::envelope(&raw), mime::envelope(h));
        for name in ["Subject", "From", "To", "X-Empty", "no colon here"] {
            prop_assert_eq!(mime::header_values(&raw, name), mime::header_values(h, name));
        }
        prop_assert_eq!(mime::sent_day(&raw), mime::sent_day(h));
    }
}
