//! A whole client byte stream into a POP3 `Session`, its questions answered
//! from a fake maildrop (`postroom_fuzz::pop3::MESSAGES`; login
//! `user@example.com`, password `secret`).
//!
//! Input: a flags byte (see `postroom_fuzz::pop3::session_config`: bit 0
//! STLS offered, 1 login not allowed, 2 64-octet lines, 3 four errors at
//! most, 4 log in first, 5 the commit at QUIT fails, 6-7 the first right
//! login's answer: ok, failed, refused, unavailable), a split byte (how the
//! stream is cut into reads; 0 is one byte at a time), then the stream.
//!
//! Checks: no panic; every reply is one status line (`+OK`, `-ERR`, `+ `)
//! or a `+OK` multi-line response ended by its first `CRLF . CRLF`; `poll`
//! is quiet while a question is open; nothing after `Close`; RETR gives the
//! message back exactly and TOP a prefix of it; without STLS the result is
//! the same however the stream is cut.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postroom_fuzz::pieces;
use postroom_fuzz::pop3::{prelude, Driver};

fn run<'a>(flags: u8, reads: impl IntoIterator<Item = &'a [u8]>) -> Driver {
    let mut d = Driver::new(flags);
    let prelude = prelude(flags);
    if !prelude.is_empty() {
        d.send(&prelude);
    }
    for piece in reads {
        d.send(piece);
    }
    d
}

fuzz_target!(|data: &[u8]| {
    let [flags, split, stream @ ..] = data else {
        return;
    };
    let whole = run(*flags, [stream]);
    if flags & 0x01 == 0 {
        let split_up = run(*flags, pieces(stream, *split));
        assert_eq!(
            split_up.log, whole.log,
            "the result depends on how the input was split"
        );
    }
    if whole.closed {
        let mut d = whole;
        let before = d.log.len();
        d.send(b"NOOP\r\n");
        assert_eq!(d.log.len(), before, "input after Close was answered");
    }
});
