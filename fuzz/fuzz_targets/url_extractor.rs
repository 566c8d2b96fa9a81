//! Any bytes into the URL extractor: as plain text (`links::text_urls`),
//! as a URL (`host_of`, `redirect_targets`), as an anchor for the phishing
//! net, as a blocklist file, and as a whole message (`links::collect`,
//! which also walks the HTML parts).
//!
//! Checks: no panic; every URL found is a substring of the text; every
//! host is lower-case ASCII without spaces; at most `max` links come back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postroom_filter::links::{self, Lists};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut urls = Vec::new();
    links::text_urls(&text, &mut urls, 100);
    assert!(urls.len() <= 100);
    for u in &urls {
        assert!(text.contains(u.as_str()));
        if let Some(h) = links::host_of(u) {
            assert!(h.is_ascii() && !h.contains(char::is_whitespace) && h == h.to_ascii_lowercase(), "{h}");
            let _ = links::registrable(&h);
            let _ = links::is_numeric_host(&h);
        }
        for t in links::redirect_targets(u) {
            let _ = links::host_of(&t);
        }
    }
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid -= 1;
    }
    let (a, b) = text.split_at(mid);
    let _ = links::phishing_net(&Lists::default(), a, b);
    let _ = links::shown_host(&text);
    let _ = links::parse_list(&text);
    if let Some(m) = mail_parser::MessageParser::default().parse(data) {
        let c = links::collect(&m, 50);
        assert!(c.urls.len() <= 50);
    }
});
