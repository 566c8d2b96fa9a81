//! Properties of the one message-format crate: every way of asking where
//! the header ends agrees, every MIME part's offsets slice back to exactly
//! its bytes, dates round-trip, and no input makes a decoder panic.

use std::num::NonZeroU32;

use postroom_message::mime::{self, Entity, Kind};
use postroom_message::{date, decode, header};
use proptest::prelude::*;

/// Every header-end answer the crate gives, for one message.
fn header_ends(m: &[u8]) -> Vec<usize> {
    let via_fields = header::fields(m).map(|f| f.raw.len()).sum::<usize>();
    let section = header::header_section(m).len();
    let mut ends = vec![
        header::header_end(m),
        header::header_len(m).unwrap_or(m.len()),
        mime::parse(m).header_end,
        mime::message_span(m, None).map_or(usize::MAX, |(_, h, _)| h),
    ];
    // The fields cover the header section exactly; the empty line follows.
    assert_eq!(via_fields, section, "fields vs section in {m:?}");
    let rest = &m[section..];
    let blank = if rest.starts_with(b"\r\n") {
        2
    } else if rest.starts_with(b"\n") {
        1
    } else {
        0
    };
    ends.push(section + blank);
    ends
}

#[test]
fn one_rule_for_the_empty_line() {
    // RFC 5322 2.1 with bare LF tolerated: CRLF CRLF, LF LF, CRLF LF, LF CRLF.
    for (m, end) in [
        (&b"A: 1\r\n\r\nbody"[..], 8),
        (b"A: 1\n\nbody", 6),
        (b"A: 1\r\n\nbody", 7),
        (b"A: 1\n\r\nbody", 7),
        (b"\r\nbody", 2),
        (b"\nbody", 1),
        (b"A: 1\r\n \r\nB: 2\r\n\r\n", 17),
        (b"A: 1\r\n\r", 7),
        (b"A: 1\rB: 2\r\r\n", 12),
        (b"", 0),
    ] {
        let ends = header_ends(m);
        assert!(
            ends.iter().all(|&e| e == end),
            "{:?}: {ends:?}",
            String::from_utf8_lossy(m)
        );
    }
    // Not complete yet: no empty line so far.
    assert_eq!(header::header_len(b"A: 1\r\n\r"), None);
    assert_eq!(header::header_len(b"A: 1\r\n"), None);
}

/// Header-ish lines: mostly fields, with folding, empty lines and line ends
/// of every kind mixed in.
fn headerish() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just(b"Subject: x".to_vec()),
        Just(b" folded".to_vec()),
        Just(b"".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"From : a@b".to_vec()),
        prop::collection::vec(any::<u8>(), 0..12),
    ];
    let eol = prop_oneof![Just(b"\r\n".to_vec()), Just(b"\n".to_vec()), Just(b"".to_vec())];
    prop::collection::vec((line, eol), 0..12).prop_map(|ls| {
        ls.into_iter()
            .flat_map(|(mut l, e)| {
                l.extend(e);
                l
            })
            .collect()
    })
}

/// Checks that every entity's offsets nest inside its parent, in order, and
/// that the header slice is what the header reader reads for that part.
fn check_offsets(raw: &[u8], e: &Entity, lo: usize, hi: usize) {
    assert!(lo <= e.start && e.start <= e.header_end && e.header_end <= e.end && e.end <= hi);
    assert!(e.end <= raw.len());
    let head = &raw[e.start..e.header_end];
    // The header slice holds no empty line before its end: the reader sees
    // every field of it.
    let fields_len: usize = header::fields(head).map(|f| f.raw.len()).sum();
    assert!(fields_len <= head.len());
    match &e.kind {
        Kind::Leaf => {}
        Kind::Multipart(children) => {
            let mut pos = e.header_end;
            for c in children {
                assert!(c.start >= pos, "parts overlap");
                check_offsets(raw, c, e.header_end, e.end);
                pos = c.end;
            }
        }
        Kind::Message(inner) => {
            assert_eq!(inner.start, e.header_end);
            check_offsets(raw, inner, e.header_end, e.end);
        }
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_header_end_agrees(head in headerish(), body in prop::collection::vec(any::<u8>(), 0..40)) {
        let mut m = head;
        m.extend(body);
        let ends = header_ends(&m);
        prop_assert!(ends.iter().all(|&e| e == ends[0]), "{:?}: {:?}", String::from_utf8_lossy(&m), ends);
        // A prefix holding the empty line gives the same answer as the whole.
        if let Some(len) = header::header_len(&m) {
            prop_assert_eq!(header::header_len(&m[..len]), Some(len));
        }
    }

    /// A generated multipart message: each part's BODY[n] and BODY[n.MIME]
    /// slice back to exactly the bytes it was made of.
    #[test]
    fn part_offsets_slice_back_to_their_bytes(
        parts in prop::collection::vec(
            (prop::collection::vec(prop_oneof![Just(b"Content-Type: text/plain".to_vec()), Just(b"X-A: b".to_vec())], 0..3),
             prop::collection::vec(prop_oneof![Just(b'a'), Just(b'\r'), Just(b'\n'), Just(b'-'), Just(0xc3u8)], 0..60)),
            1..6),
        lf in any::<bool>(),
        preamble in "[a-z ]{0,10}",
    ) {
        let nl: &[u8] = if lf { b"\n" } else { b"\r\n" };
        let mut m = Vec::new();
        m.extend_from_slice(b"Content-Type: multipart/mixed; boundary=\"=_b\"");
        m.extend_from_slice(nl);
        m.extend_from_slice(nl);
        m.extend_from_slice(preamble.as_bytes());
        let mut expect = Vec::new();
        for (fields, body) in &parts {
            m.extend_from_slice(nl);
            m.extend_from_slice(b"--=_b");
            m.extend_from_slice(nl);
            let h0 = m.len();
            for f in fields {
                m.extend_from_slice(f);
                m.extend_from_slice(nl);
            }
            m.extend_from_slice(nl);
            let b0 = m.len();
            // A body line never starts with the boundary; and a body ends
            // without a line break of its own (the one before the delimiter
            // is the delimiter's, RFC 2046 5.1.1).
            let body: Vec<u8> = body.iter().copied().filter(|&b| b != b'-').collect();
            let keep = body.iter().rposition(|&b| b != b'\r').map_or(0, |i| i + 1);
            let body = body[..keep].to_vec();
            m.extend_from_slice(&body);
            expect.push((h0, b0, m.len()));
        }
        m.extend_from_slice(nl);
        m.extend_from_slice(b"--=_b--");
        m.extend_from_slice(nl);
        let root = mime::parse(&m);
        check_offsets(&m, &root, 0, m.len());
        let Kind::Multipart(children) = &root.kind else { panic!("not multipart") };
        prop_assert_eq!(children.len(), parts.len());
        for (i, (c, (h0, b0, e0))) in children.iter().zip(&expect).enumerate() {
            // A body may itself end in what looks like an empty line; the
            // part's header then still ends where it was written.
            prop_assert_eq!((c.start, c.header_end, c.end), (*h0, *b0, *e0), "part {}", i + 1);
            let path = [nz(u32::try_from(i + 1).unwrap())];
            let found = mime::resolve(&root, &path).unwrap();
            prop_assert_eq!(&m[found.header_end..found.end], &m[*b0..*e0]);
        }
    }

    #[test]
    fn offsets_nest_for_any_input(raw in prop::collection::vec(prop_oneof![
        Just(b"Content-Type: multipart/mixed; boundary=x\r\n".to_vec()),
        Just(b"Content-Type: message/rfc822\r\n".to_vec()),
        Just(b"--x\r\n".to_vec()),
        Just(b"--x--\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"body\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ], 0..24)) {
        let m: Vec<u8> = raw.concat();
        let root = mime::parse(&m);
        prop_assert_eq!((root.start, root.end), (0, m.len()));
        check_offsets(&m, &root, 0, m.len());
        let _ = mime::body_text(&m);
    }

    #[test]
    fn dates_round_trip(secs in 0i64..253_402_300_800) {
        let s = date::format_unix(secs);
        prop_assert_eq!(date::parse(s.as_bytes()), Some((secs, 0)), "{}", s);
    }

    #[test]
    fn zoned_dates_read_back(secs in 0i64..4_000_000_000, zone_min in -(23 * 60 + 59)..(23 * 60 + 59i32)) {
        // The same instant written in another zone parses to the same time.
        let s = date::format_unix(secs + i64::from(zone_min) * 60);
        let base = s.strip_suffix(" +0000").unwrap();
        let sign = if zone_min < 0 { '-' } else { '+' };
        let z = zone_min.abs();
        let zoned = format!("{base} {sign}{:02}{:02}", z / 60, z % 60);
        prop_assert_eq!(date::parse(zoned.as_bytes()), Some((secs, zone_min * 60)));
    }

    #[test]
    fn malformed_input_never_panics(data in prop::collection::vec(any::<u8>(), 0..200), charset in prop::collection::vec(any::<u8>(), 0..20)) {
        let _ = decode::decode_base64(&data);
        let _ = decode::decode_qp(&data);
        let _ = decode::decode_rfc2047(&data);
        let _ = decode::to_utf8(&data, Some(&charset));
        let _ = date::parse(&data);
        let _ = header::address_list(&data);
        let _ = mime::parse_content_type(&data);
        let mut out = Vec::new();
        decode::encode_quoted_printable(&data, &mut out);
        prop_assert!(out.is_ascii());
    }

    #[test]
    fn quoted_printable_round_trips(data in prop::collection::vec(any::<u8>(), 0..300)) {
        // CRLF-only data: the encoder keeps CRLF as hard breaks, and the
        // decoder returns them as they are.
        let data: Vec<u8> = data.into_iter().filter(|&b| b != b'\r' && b != b'\n').collect();
        let mut out = Vec::new();
        decode::encode_quoted_printable(&data, &mut out);
        prop_assert_eq!(decode::decode_qp(&out), data);
    }

    #[test]
    fn base64_round_trips(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut out = Vec::new();
        decode::encode_base64_lines(&data, &mut out);
        prop_assert_eq!(decode::decode_base64(&out), data);
    }
}
