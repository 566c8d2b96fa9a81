//! Property tests: no input makes the HTML rewriter, the URL extractor,
//! the message rewriter or the attachment rules panic, and disarmed HTML
//! holds no script, no on* handler and no javascript: URL, read back by
//! an independent parse.

use std::cell::RefCell;

use lol_html::{element, HtmlRewriter, Settings};
use mail_parser::MessageParser;
use postroom_config::FilterAttachmentsConfig;
use postroom_filter::attachments::Attachments;
use postroom_filter::html::{self, disarm, rewrite_message};
use postroom_filter::links::{self, Lists};
use postroom_filter::Findings;
use proptest::prelude::*;

/// What a browser would run in `html`: script elements, on* attributes,
/// script URLs; read with lol_html's own tokenizer, in strict mode off.
fn live(html: &str) -> Vec<String> {
    let found = RefCell::new(Vec::new());
    let mut rewriter = HtmlRewriter::new(
        Settings::new()
            .append_element_content_handler(element!("*", |el| {
                let tag = el.tag_name();
                if tag == "script" || tag == "iframe" || tag == "object" || tag == "embed" {
                    found.borrow_mut().push(format!("<{tag}>"));
                }
                for a in el.attributes() {
                    let name = a.name();
                    if name.starts_with("on") && name.len() > 2 {
                        found.borrow_mut().push(format!("{tag} {name}"));
                    }
                    let v: String = html::decode_entities(&a.value())
                        .chars()
                        .filter(|c| !c.is_whitespace() && !c.is_control())
                        .collect();
                    if v.to_ascii_lowercase().starts_with("javascript:") {
                        found.borrow_mut().push(format!("{tag} {name}={v}"));
                    }
                }
                Ok(())
            }))
            .with_strict(false),
        |_: &[u8]| {},
    );
    let ok = rewriter
        .write(html.as_bytes())
        .and_then(|()| rewriter.end())
        .is_ok();
    let mut v = found.into_inner();
    if !ok {
        v.push("unparsable".into());
    }
    v
}

fn html_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("<script>".to_string()),
        Just("</script>".to_string()),
        Just("<SCRIPT src=x>".to_string()),
        Just("<scr".to_string()),
        Just("ipt>".to_string()),
        Just("<a href=\"".to_string()),
        Just("<a href='javascript:alert(1)'>".to_string()),
        Just("java&#x09;script:".to_string()),
        Just("\" onclick=\"x()\" ".to_string()),
        Just(" onmouseover=y ".to_string()),
        Just("<img src=http://t.example/a.gif width=1 height=1>".to_string()),
        Just("<iframe src=x width=0>".to_string()),
        Just("</iframe>".to_string()),
        Just("<form action=http://x.example/>".to_string()),
        Just("<svg><script>".to_string()),
        Just("<!--".to_string()),
        Just("-->".to_string()),
        Just("<style>".to_string()),
        Just("</style>".to_string()),
        Just("<textarea>".to_string()),
        Just("<p>".to_string()),
        Just(">".to_string()),
        Just("<".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("&".to_string()),
        Just("http://a.example/?u=https%3A%2F%2Fb.example%2F".to_string()),
        "[ -~]{0,8}",
        "\\PC{0,4}",
    ];
    prop::collection::vec(token, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn disarmed_html_runs_nothing(html in html_soup()) {
        let plan = vec![Some("http://real.example/".to_string()); 8];
        let d = disarm(&html, &plan);
        let low = d.html.to_ascii_lowercase();
        prop_assert!(!low.contains("<script"), "{}", d.html);
        prop_assert!(!low.contains("javascript:"), "{}", d.html);
        let l = live(&d.html);
        prop_assert!(l.is_empty(), "{:?} in {}", l, d.html);
    }

    #[test]
    fn any_text_disarms_without_panic(html in "\\PC{0,300}") {
        let d = disarm(&html, &[]);
        prop_assert!(live(&d.html).is_empty());
        let _ = html::analyze(&html, 100);
    }

    #[test]
    fn the_url_extractor_never_panics(text in "\\PC{0,300}", soup in html_soup()) {
        let mut urls = Vec::new();
        links::text_urls(&text, &mut urls, 50);
        links::text_urls(&soup, &mut urls, 50);
        for u in &urls {
            let _ = links::host_of(u);
            let _ = links::redirect_targets(u);
        }
        let _ = links::host_of(&text);
        let _ = links::shown_host(&text);
        let _ = links::phishing_net(&Lists::default(), &text, &soup);
        let _ = links::parse_list(&text);
    }

    #[test]
    fn messages_rewrite_without_panic_and_keep_the_attachment(
        html in html_soup(),
        qp in any::<bool>(),
        att in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let (cte, body) = if qp {
            ("quoted-printable", String::from_utf8_lossy(&html::quoted_printable(html.as_bytes(), b"\r\n")).into_owned())
        } else {
            ("8bit", html.replace('\r', "").replace('\n', "\r\n"))
        };
        let att_part = format!(
            "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=a.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
            base64_lines(&att)
        );
        let raw = format!(
            "Subject: t\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: {cte}\r\n\r\n{body}\r\n--zz\r\n{att_part}\r\n--zz--\r\n"
        );
        let m = MessageParser::default().parse(raw.as_bytes()).unwrap();
        if let Some(r) = rewrite_message(raw.as_bytes(), &m, "{Cleaned}", &Lists::default(), true) {
            let out = String::from_utf8_lossy(&r.message);
            prop_assert!(out.contains(&att_part));
            let again = MessageParser::default().parse(&r.message[..]).unwrap();
            prop_assert!(again.subject().unwrap_or("").starts_with("{Cleaned}"), "subject {:?}", again.subject());
            if let Some(h) = again.body_html(0) {
                prop_assert!(live(&h).is_empty(), "{}", h);
            }
        }
    }

    #[test]
    fn any_bytes_as_an_archive_never_panic(data in prop::collection::vec(any::<u8>(), 0..600), name in "[a-z.]{0,12}") {
        let a = Attachments::new(&FilterAttachmentsConfig::default());
        let raw = format!(
            "Subject: z\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename=\"{name}.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
            base64_lines(&[b"PK\x03\x04".as_slice(), &data].concat())
        );
        let m = MessageParser::default().parse(raw.as_bytes()).unwrap();
        let mut out = Findings::default();
        a.scan(&m, &mut out);
        let _ = a.judge(&name, None);
    }
}

fn base64_lines(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for (i, c) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            s.push_str("\r\n");
        }
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                s.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}
