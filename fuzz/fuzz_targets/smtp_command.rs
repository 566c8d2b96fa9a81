//! One SMTP command line into `parse_command`.
//!
//! Input: a flags byte (bit 0: the session greeted with EHLO, bit 1: MAIL
//! carried SMTPUTF8), then the line without its CRLF.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postroom_fuzz::check_reply;
use postroom_smtp::command::parse_command;
use postroom_smtp::{Command, RcptTarget};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, line)) = data.split_first() else {
        return;
    };
    let (ehlo, utf8) = (flags & 1 != 0, flags & 2 != 0);
    let result = parse_command(line, ehlo, utf8);
    match &result {
        Err(e) => check_reply(&e.reply()),
        Ok(Command::Rcpt(RcptTarget::Mailbox(a))) if !utf8 => assert!(a.is_ascii()),
        Ok(Command::Mail(Some(a), params)) if !params.smtputf8 => assert!(a.is_ascii()),
        Ok(_) => {}
    }
    // Verbs are case-insensitive.
    let verb_len = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let mut upper = line.to_vec();
    upper[..verb_len].make_ascii_uppercase();
    assert_eq!(parse_command(&upper, ehlo, utf8), result);
});
