//! A raw message into `header_section` and `header_value` (the Sent copy's
//! Message-ID and Bcc list come from peer-supplied messages).
//!
//! Checks: no panic; the header section is a prefix of the message; a
//! value found is trimmed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postroom_core::header::{header_section, header_value};

fuzz_target!(|data: &[u8]| {
    let head = header_section(data);
    assert!(data.starts_with(head));
    for name in ["message-id", "to", "cc", ""] {
        if let Some(v) = header_value(data, name) {
            assert_eq!(v.trim(), v);
        }
    }
});
