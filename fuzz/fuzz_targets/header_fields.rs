//! A raw message into the one header reader (`postroom_core::header`):
//! `fields`, `count`, `header_value` and the address-list parser, which the
//! submission From: check, DKIM and the IMAP ENVELOPE all read From: with.
//!
//! Checks: no panic; the fields, as written, are exactly the header
//! section, in order; each named field is `name *WSP ":" value EOL` with
//! no colon in the name and no white space ending it; `count` and
//! `header_value` agree with the fields; every mailbox of a From: value
//! with a plain domain reads back as itself from its `addr_spec`, which
//! `Address::parse` takes without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postroom_core::header::{self, mailboxes, Mailbox};
use postroom_core::Address;

fuzz_target!(|data: &[u8]| {
    let head = header::header_section(data);
    assert!(data.starts_with(head));
    assert!(header::header_end(data) >= head.len());
    let fields: Vec<_> = header::fields(data).collect();
    let written: Vec<u8> = fields.iter().flat_map(|f| f.raw.iter().copied()).collect();
    assert_eq!(written, head);
    for f in &fields {
        let Some(name) = f.name else {
            assert!(!f.raw.split(|&b| b == b'\n').next().unwrap_or(b"").contains(&b':'));
            continue;
        };
        assert!(!name.contains(&b':'));
        assert!(!name.ends_with(b" ") && !name.ends_with(b"\t"));
        let after_name = &f.raw[name.len()..];
        let colon = after_name
            .iter()
            .position(|&b| b == b':')
            .expect("a named field has a colon");
        assert!(after_name[..colon].iter().all(|&b| b == b' ' || b == b'\t'));
        assert!(after_name[colon + 1..].starts_with(f.value));
        let unfolded = f.unfolded();
        assert!(!unfolded.contains(&b'\n') && !unfolded.contains(&b'\r'));
    }
    let froms: Vec<_> = fields.iter().filter(|f| f.is("from")).collect();
    assert_eq!(header::count(data, "FROM"), froms.len());
    match froms.first() {
        None => assert_eq!(header::header_value(data, "from"), None),
        Some(f) => assert_eq!(
            header::header_value(data, "from").map(String::into_bytes),
            String::from_utf8(f.unfolded()).ok().map(String::into_bytes)
        ),
    }
    for f in froms {
        for m in mailboxes(&f.unfolded()) {
            let Some(spec) = m.addr_spec() else {
                assert!(
                    m.local.is_empty()
                        || m.domain.is_empty()
                        || std::str::from_utf8(&m.local).is_err()
                        || std::str::from_utf8(&m.domain).is_err()
                );
                continue;
            };
            let _ = Address::parse(&spec, true);
            let plain_domain = m
                .domain
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(b));
            if plain_domain {
                let again = mailboxes(spec.as_bytes());
                let want = Mailbox {
                    name: None,
                    route: None,
                    local: m.local.clone(),
                    domain: m.domain.clone(),
                };
                assert_eq!(again, vec![want], "{spec}");
            }
        }
    }
});
