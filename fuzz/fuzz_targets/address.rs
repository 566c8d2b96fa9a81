//! A string into `Address::parse` (with and without SMTPUTF8) and
//! `Domain::parse`.
//!
//! Checks: no panic; accepted addresses respect the RFC 5321 limits, are
//! ASCII without SMTPUTF8, display as written, and have a canonical form
//! that is a fixed point (parsing it again gives it back).

#![no_main]

use libfuzzer_sys::fuzz_target;
use postroom_core::address::{MAX_DOMAIN_LEN, MAX_LOCAL_LEN};
use postroom_core::{Address, Domain};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = Domain::parse(s) {
        let c = d.canonical();
        assert!(c.len() <= MAX_DOMAIN_LEN && c.is_ascii());
        assert!(!c.bytes().any(|b| b.is_ascii_uppercase()));
        let again = Domain::parse(c).expect("canonical domain parses");
        assert_eq!(again.canonical(), c);
    }
    for utf8 in [false, true] {
        let Ok(a) = Address::parse(s, utf8) else {
            continue;
        };
        assert!(a.local_display().len() <= MAX_LOCAL_LEN);
        assert!(a.domain().display().len() <= MAX_DOMAIN_LEN);
        if !utf8 {
            assert!(a.is_ascii());
            assert_eq!(Address::parse(s, true).ok(), Some(a.clone()));
        }
        assert_eq!(a.to_string(), s);
        let canonical = a.canonical();
        if let Ok(again) = Address::parse(&canonical, true) {
            assert_eq!(again.canonical(), canonical);
        }
    }
});
