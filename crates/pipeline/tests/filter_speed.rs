//! What the filter stage costs per message (issue #10: the whole stage
//! must reach 2,000 messages a second per core, no DNS, no clamd). Not a
//! timed test: it prints, and asserts nothing about speed. Run in release:
//!
//! cargo test --release -p postroom-pipeline --test filter_speed -- --ignored --nocapture

use std::sync::Arc;
use std::time::{Duration, Instant};

use postroom_filter::Thresholds;
use postroom_pipeline::{ChainFilter, Filter, FilterInput, FilterRecipient};

fn sample(i: usize) -> Vec<u8> {
    let mut m = format!(
        "Received: from mx.example.org ([192.0.2.{}])\r\nFrom: \"Sender {i}\" <s{i}@example.org>\r\n\
         To: u@x.example\r\nSubject: message number {i}\r\nDate: Tue, 08 Dec 2026 02:00:00 +0000\r\n\
         Message-ID: <{i}@example.org>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n",
        i % 250
    );
    for _ in 0..40 {
        m.push_str("Some words of the message, and a link https://www.example.com/page?id=7 here.\r\n");
    }
    m.push_str("--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>");
    for _ in 0..40 {
        m.push_str("<p>Some words of the message, <a href=\"https://www.example.com/\">a link</a>.</p>\r\n");
    }
    m.push_str("</body></html>\r\n--b--\r\n");
    m.into_bytes()
}

#[tokio::test(flavor = "current_thread")]
#[ignore]
async fn filter_stage_messages_per_second() {
    let deps = postroom_filter::Deps {
        hostname: "mx.x.example".into(),
        offline: true,
        ..Default::default()
    };
    let chain = postroom_filter::chain(&Default::default(), &deps).unwrap();
    let filter = Arc::new(ChainFilter::new(chain, Thresholds::default(), None));
    let rcpts = vec![FilterRecipient {
        address: "u@x.example".into(),
        domain: "x.example".into(),
        mailbox: Some("u@x.example".into()),
        account: None,
    }];
    let messages: Vec<Vec<u8>> = (0..1000).map(sample).collect();
    let size: usize = messages.iter().map(Vec::len).sum::<usize>() / messages.len();
    let n = 20_000;
    let started = Instant::now();
    for i in 0..n {
        let mut body = messages[i % messages.len()].clone();
        let out = filter
            .check(FilterInput {
                peer: "192.0.2.1".parse().unwrap(),
                helo: "mx.example.org",
                tls: true,
                auth_user: None,
                mail_from: Some("s@example.org"),
                recipients: &rcpts,
                deadline: std::time::Instant::now() + Duration::from_secs(60),
                body: &mut body,
            })
            .await;
        assert_eq!(out.verdicts.len(), 1);
    }
    let took = started.elapsed();
    println!(
        "filter stage: {n} messages of {size} bytes in {took:?}: {:.0} msgs/s on one core, {:.1} us each",
        n as f64 / took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / n as f64
    );
}
