//! Message content into the DATA decoder and the BDAT chunk collector.
//!
//! Input: a selector byte (bits 0-1: the size limit, none / 64 bytes / half
//! the input; bits 2-7: how the content is cut into reads, 0 is one byte at
//! a time), then the content as it follows `DATA` or `BDAT`.
//!
//! Checks, for both: pieces give exactly what the whole gives, which is
//! what a straightforward reference model gives (only `<CRLF>.<CRLF>` ends
//! DATA; line-start dots removed; bare CR/LF stored as CRLF and counted),
//! and the body never holds a bare CR or LF.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postroom_fuzz::{has_bare_line_end, pieces, reference_chunks, reference_data, Decoded};
use postroom_smtp::data::{ChunkCollector, DataDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let limit = match sel & 3 {
        0 | 1 => u64::MAX,
        2 => 64,
        _ => input.len() as u64 / 2,
    };
    let split = sel >> 2;

    // DATA
    let mut d = DataDecoder::new(limit);
    let (n, done) = d.feed(input);
    let whole = Decoded::new(n, done, d.finish());
    let mut d = DataDecoder::new(limit);
    let (mut consumed, mut done) = (0, false);
    for piece in pieces(input, split) {
        let (n, end) = d.feed(piece);
        consumed += n;
        if end {
            done = true;
            break;
        }
        assert_eq!(n, piece.len(), "bytes left over before the end of DATA");
    }
    let split_up = Decoded::new(consumed, done, d.finish());
    assert_eq!(split_up, whole, "DATA depends on how the input was split");
    match reference_data(input, limit) {
        Some(expected) => assert_eq!(whole, expected),
        None => {
            assert!(!whole.done, "DATA ended without <CRLF>.<CRLF>");
            assert_eq!(whole.consumed, input.len());
        }
    }
    assert!(!has_bare_line_end(&whole.body));

    // BDAT
    let mut c = ChunkCollector::new(limit);
    c.push(input);
    let whole = Decoded::new(input.len(), true, c.finish());
    let mut c = ChunkCollector::new(limit);
    for piece in pieces(input, split) {
        c.push(piece);
    }
    let split_up = Decoded::new(input.len(), true, c.finish());
    assert_eq!(split_up, whole, "BDAT depends on how the input was split");
    assert_eq!(whole, reference_chunks(input, limit));
    assert!(!has_bare_line_end(&whole.body));
});
