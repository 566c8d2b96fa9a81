//! A whole client byte stream into an IMAP `Session`, its store questions
//! answered by an in-memory model of the store (`postroom_fuzz::imap::Model`:
//! no database, nothing on disk; every input starts from the same account,
//! `fuzz@example.com`, password `secret`, holding the sample messages of
//! `postroom_fuzz::imap::MESSAGES`).
//!
//! Input: a flags byte (see `postroom_fuzz::imap::session_config` and
//! `prelude`: bit 0 log in first, 1 then SELECT INBOX, 2 LOGINDISABLED, 3
//! STARTTLS offered, 4 a 64-octet APPEND limit and a quota, 5 five errors
//! at most, 6 ENABLE QRESYNC IMAP4rev2, 7 other sessions change INBOX
//! between reads), a split byte (how the stream is cut into reads; 0 is
//! one byte at a time; with its top bit set, some store questions fail,
//! a pattern the low six bits pick), then the stream.
//!
//! Checks: no panic; every send is whole, well-formed response lines
//! (`* `, `+ ` or a tag and a status; CRLF; literals carry exactly their
//! octets; no NUL outside literal8); `poll` is quiet while a login, TLS
//! handshake or store question is open; nothing after `Close`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [flags, split, stream @ ..] = data else {
        return;
    };
    postroom_fuzz::imap::run_session(*flags, *split, stream);
});
