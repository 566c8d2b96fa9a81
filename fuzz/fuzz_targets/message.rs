//! A raw message into postroom-message, the one place for the message
//! format: the header end, the MIME tree, dates and the decoders that IMAP,
//! the 7-bit conversion, the pipeline and the filter all use.
//!
//! Checks: no panic; every way of asking where the header ends agrees
//! (`header_end`, `header_len`, the fields, the MIME root, `message_span`);
//! every MIME part's offsets lie inside its parent's body, in order, the
//! root covering the whole input; `resolve` of each part's number finds
//! that part; transfer decoding, charsets, RFC 2047 words and `body_text`
//! never panic; a Date: that parses writes back to the same instant.

#![no_main]

use std::num::NonZeroU32;

use libfuzzer_sys::fuzz_target;
use postroom_message::mime::{self, Entity, Kind};
use postroom_message::{date, decode, header};

fn check(raw: &[u8], e: &Entity, lo: usize, hi: usize, depth: usize) {
    assert!(depth <= mime::MAX_DEPTH + 2);
    assert!(lo <= e.start && e.start <= e.header_end && e.header_end <= e.end && e.end <= hi);
    let _ = mime::decode_entity(raw, e);
    match &e.kind {
        Kind::Leaf => {}
        Kind::Multipart(children) => {
            let mut pos = e.header_end;
            for c in children {
                assert!(c.start >= pos);
                check(raw, c, e.header_end, e.end, depth + 1);
                pos = c.end;
            }
        }
        Kind::Message(inner) => {
            assert_eq!(inner.start, e.header_end);
            check(raw, inner, e.header_end, e.end, depth + 1);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let end = header::header_end(data);
    assert_eq!(header::header_len(data).unwrap_or(data.len()), end);
    let section = header::header_section(data);
    let fields: Vec<_> = header::fields(data).collect();
    assert_eq!(fields.iter().map(|f| f.raw.len()).sum::<usize>(), section.len());
    assert!(section.len() <= end && end - section.len() <= 2);

    let root = mime::parse(data);
    assert_eq!((root.start, root.header_end, root.end), (0, end, data.len()));
    assert_eq!(mime::message_span(data, None), Some((0, end, data.len())));
    check(data, &root, 0, data.len(), 0);
    if let Kind::Multipart(children) = &root.kind {
        for (i, c) in children.iter().enumerate().take(64) {
            let n = NonZeroU32::new(u32::try_from(i + 1).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
            let found = mime::resolve(&root, &[n]).expect("every part has its number");
            assert_eq!((found.start, found.end), (c.start, c.end));
        }
    }
    let _ = mime::body_text(data);

    for f in &fields {
        let v = header::unfold(f.value);
        let _ = decode::decode_rfc2047(&v);
        if f.is("date") {
            if let Some((t, _)) = date::parse(&v) {
                if (0..253_402_300_800).contains(&t) {
                    assert_eq!(date::parse(date::format_unix(t).as_bytes()).map(|(t, _)| t), Some(t));
                }
            }
        }
        if f.is("content-type") {
            if let Some(ct) = mime::parse_content_type(&v) {
                let charset = ct.param("charset").map(<[u8]>::to_vec);
                let _ = decode::to_utf8(data, charset.as_deref());
            }
        }
    }
    let _ = decode::decode_base64(data);
    let _ = decode::decode_qp(data);
});
