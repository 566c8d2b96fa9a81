//! What the content checks cost per message, in a release build:
//!
//!     cargo run --release -p postroom-filter --example content_cost [N]
//!
//! runs the header rules, the links checks (with the fixtures' phishing
//! list), the HTML check, the attachment rules and the disarming rewriter
//! over every fixture in tests/fixtures/filter/, N rounds (default 2,000),
//! on one thread, and prints the time per message; `N newsletter` times a
//! 46 KB HTML newsletter with 150 links instead, and `N newsletter parts`
//! times its pieces (the HTML walk, disarming, link collection, the MIME
//! parse, the rewriter). On a loaded machine, read the CPU time
//! (`perf stat -e task-clock`) rather than the wall-clock figure. With a file name
//! instead of N it prints that message as disarmed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use mail_parser::MessageParser;
use postroom_config::FilterConfig;
use postroom_filter::{attachments, html, links, rules, Chain, Deps, Envelope, Scan};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/filter");
    let mut config = FilterConfig::default();
    config.links.phishing_blocklists = vec![dir.join("phishing.bad.sites")];
    let deps = Deps::default();
    let lists = links::Lists::load(&config.links).unwrap();
    let mut checks = Vec::new();
    checks.extend(rules::checks(&deps).unwrap());
    checks.extend(links::checks(&config.links, &lists, &deps).unwrap());
    checks.extend(html::checks(&config.html, &deps).unwrap());
    checks.extend(attachments::checks(&config.attachments, &deps).unwrap());
    let chain = Chain::new(checks, BTreeMap::new()).with_rewriter(
        html::rewriter(&config.html, &config.links, &lists, &deps)
            .unwrap()
            .unwrap(),
    );
    let env = Envelope::unauthenticated(
        "192.0.2.10".parse().unwrap(),
        "mail.example",
        None,
        Instant::now() + Duration::from_secs(3600),
    );
    let arg = std::env::args().nth(1).unwrap_or_else(|| "2000".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    if let Ok(rounds) = arg.parse::<usize>() {
        let mut messages = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "eml") {
                messages.push(std::fs::read(p).unwrap());
            }
        }
        if std::env::args().nth(2).as_deref() == Some("newsletter") {
            // A marketing newsletter's shape: 40 KB of HTML, 150 tracked
            // links, 60 images, a web bug, a plain-text alternative.
            messages = vec![newsletter()];
        }
        if std::env::args().nth(3).as_deref() == Some("parts") {
            let raw = &messages[0];
            let message = MessageParser::default().parse(&raw[..]).unwrap();
            let h = message.body_html(0).unwrap().into_owned();
            let t = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(html::analyze(&h, 1000));
            }
            println!("analyze {:?}", t.elapsed() / rounds as u32);
            let t = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(html::disarm(&h, &[]));
            }
            println!("disarm {:?}", t.elapsed() / rounds as u32);
            let t = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(links::collect(&message, 1000));
            }
            println!("collect {:?}", t.elapsed() / rounds as u32);
            let t = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(MessageParser::default().parse(&raw[..]));
            }
            println!("parse {:?}", t.elapsed() / rounds as u32);
            let t = Instant::now();
            for _ in 0..rounds {
                let scan = Scan {
                    envelope: &env,
                    raw,
                    message: &message,
                };
                std::hint::black_box(chain.rewrite(&scan));
            }
            println!("rewrite {:?}", t.elapsed() / rounds as u32);
            return;
        }
        let bytes: usize = messages.iter().map(Vec::len).sum();
        let start = Instant::now();
        for _ in 0..rounds {
            for raw in &messages {
                let message = MessageParser::default().parse(&raw[..]).unwrap();
                let scan = Scan {
                    envelope: &env,
                    raw,
                    message: &message,
                };
                let report = rt.block_on(chain.run(&scan));
                std::hint::black_box(&report);
                std::hint::black_box(chain.rewrite(&scan));
            }
        }
        let n = rounds * messages.len();
        let per = start.elapsed() / n as u32;
        println!(
            "{n} messages ({} bytes on average): {per:?} per message with its MIME parse, {:.0} messages/s on one core",
            bytes / messages.len(),
            1.0 / per.as_secs_f64()
        );
    } else {
        let raw = std::fs::read(dir.join(&arg)).unwrap();
        let message = MessageParser::default().parse(&raw[..]).unwrap();
        let scan = Scan {
            envelope: &env,
            raw: &raw,
            message: &message,
        };
        let report = rt.block_on(chain.run(&scan));
        for s in report.symbols() {
            eprintln!("{} {} {}", s.name, s.score, s.detail);
        }
        match chain.rewrite(&scan) {
            Some(r) => print!("{}", String::from_utf8_lossy(&r.message)),
            None => eprintln!("(unchanged)"),
        }
    }
}

fn newsletter() -> Vec<u8> {
    let mut html = String::from("<html><head><style>p{margin:0}</style></head><body><table>");
    let mut text = String::new();
    for i in 0..150 {
        html.push_str(&format!(
            "<tr><td><p style=\"font-family:Arial\">Item {i}: a fine offer on things you may like, with a long description of the product.</p>\
             <a href=\"https://click.news.example/c/{i}?u=https%3A%2F%2Fshop.example%2Fitem%2F{i}\">See item {i}</a>"
        ));
        if i % 5 < 2 {
            html.push_str(&format!(
                "<img src=\"https://img.news.example/{i}.jpg\" width=\"200\" height=\"120\" alt=\"item\">"
            ));
        }
        html.push_str("</td></tr>");
        text.push_str(&format!("Item {i}: https://shop.example/item/{i}\n"));
    }
    html.push_str("</table><img src=\"https://t.news.example/open.gif\" width=1 height=1></body></html>");
    format!(
        "From: News <news@news.example>\r\nTo: a@b.example\r\nSubject: This week\r\nDate: Mon, 07 Dec 2026 09:30:00 +0000\r\n\
         Message-ID: <n1@news.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--b--\r\n"
    )
    .into_bytes()
}
