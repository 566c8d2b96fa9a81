//! A whole client byte stream into a `Session`, answered like a directory
//! and a store would (recipients `user*` and `Postmaster` exist; a body
//! containing `REJECT` is refused).
//!
//! Input: a flags byte (see `postroom_fuzz::session_config`: bit 0 strict
//! line endings, 1 STARTTLS offered, 2 200-byte messages, 3 64-byte lines,
//! 4 two recipients, 5 low error limits), a split byte (how the stream is
//! cut into reads; 0 is one byte at a time), then the stream.
//!
//! Checks: no panic, every reply well-formed, the `Session` contract (see
//! `Driver`), and — without STARTTLS, which by design discards what was
//! pipelined after it — the same actions however the stream is split.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postroom_fuzz::{pieces, session_config, Driver};

fuzz_target!(|data: &[u8]| {
    let [flags, split, stream @ ..] = data else {
        return;
    };
    let cfg = session_config(*flags);
    let mut whole = Driver::new(cfg.clone());
    whole.send(stream);
    if !cfg.starttls {
        let mut split_up = Driver::new(cfg);
        for piece in pieces(stream, *split) {
            split_up.send(piece);
        }
        assert_eq!(
            split_up.log, whole.log,
            "the result depends on how the input was split"
        );
    }
    if whole.closed {
        // Once closed, nothing more happens (Driver panics on any action).
        whole.send(b"NOOP\r\n");
    }
});
