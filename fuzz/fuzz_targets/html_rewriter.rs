//! Any bytes as an HTML part into the disarming rewriter (`html::disarm`,
//! the same walk `html::analyze` makes), with every anchor marked as a
//! phishing-net mismatch by the first byte's bit 0.
//!
//! Checks: no panic; the output holds no `<script` and no `javascript:`
//! (any case); read back by lol_html, no element carries an `on*`
//! attribute and no script, iframe, object or embed element is left.

#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use lol_html::{element, HtmlRewriter, Settings};
use postroom_filter::html;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let input = String::from_utf8_lossy(rest);
    let plan = if flags & 1 == 1 { vec![Some("http://real.example/".to_string()); 64] } else { Vec::new() };
    let _ = html::analyze(&input, 1000);
    let out = html::disarm(&input, &plan).html;
    let low = out.to_ascii_lowercase();
    assert!(!low.contains("<script"), "{out}");
    assert!(!low.contains("javascript:"), "{out}");
    let live = RefCell::new(Vec::new());
    let mut reader = HtmlRewriter::new(
        Settings::new()
            .append_element_content_handler(element!("*", |el| {
                let tag = el.tag_name();
                if matches!(tag.as_str(), "script" | "iframe" | "object" | "embed") {
                    live.borrow_mut().push(tag.clone());
                }
                for a in el.attributes() {
                    let name = a.name();
                    if name.len() > 2 && name.starts_with("on") {
                        live.borrow_mut().push(format!("{tag} {name}"));
                    }
                }
                Ok(())
            }))
            .with_strict(false),
        |_: &[u8]| {},
    );
    let _ = reader.write(out.as_bytes()).and_then(|()| reader.end());
    let live = live.into_inner();
    assert!(live.is_empty(), "{live:?} left in {out}");
});
