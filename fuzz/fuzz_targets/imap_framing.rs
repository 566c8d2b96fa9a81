//! The IMAP framer (`framing::Framer`) and the extension lifter
//! (`extensions::lift`) on a client's byte stream.
//!
//! Input: a flags byte (bits 0-1 what the framer expects first: command,
//! SASL line, DONE, command; bit 2 switch as the session would after each
//! frame; bits 3-5 the literal limit, see `postroom_fuzz::imap::LIMITS`), a
//! split byte (how the stream is cut into reads; 0 is one byte at a time),
//! then the stream.
//!
//! Checks: no panic; replies (continuations, BAD, TOOBIG) are whole,
//! well-formed response lines; commands have valid tags; the frames are the
//! same whole, split and byte at a time; `lift` on every line and on the
//! whole stream only deletes within lines.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postroom_fuzz::imap::{check_lift, frame_all, LIMITS};
use postroom_fuzz::pieces;
use postroom_imap::framing::Expect;

fuzz_target!(|data: &[u8]| {
    let [flags, split, stream @ ..] = data else {
        return;
    };
    let first = match flags & 0x03 {
        1 => Expect::AuthData,
        2 => Expect::IdleDone,
        _ => Expect::Command,
    };
    let follow = flags & 0x04 != 0;
    let limit = LIMITS[usize::from((flags >> 3) & 0x07)];
    let whole = frame_all(limit, first, follow, [stream]);
    let split_up = frame_all(limit, first, follow, pieces(stream, *split));
    assert_eq!(split_up, whole, "the frames depend on how the input was split");
    let singles = frame_all(limit, first, follow, stream.chunks(1));
    assert_eq!(singles, whole, "the frames differ byte at a time");
    check_lift(stream);
    for line in stream.split_inclusive(|&b| b == b'\n') {
        check_lift(line);
    }
});
