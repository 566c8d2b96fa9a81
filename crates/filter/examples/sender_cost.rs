//! What the sender checks cost per message without DNS (the filter
//! stage's throughput goal is measured with no DNS and no clamd), and the
//! CPU part they add with DNS on (reading the DKIM/ARC headers and hashing
//! the body, before any lookup).
//!
//! `cargo run --release -p postroom-filter --example sender_cost`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use postroom_config::{FilterPolicyConfig, FilterSenderConfig};
use postroom_filter::{sender, Chain, Deps, Envelope, Scan};

fn main() {
    let body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n".repeat(80);
    let raw = format!(
        "Received: from mail.example.com ([192.0.2.10]) by mx.example.net\r\n\
         DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=s1;\r\n\
         \th=from:to:subject:date; bh=frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=;\r\n\
         \tb=dGVzdA==\r\n\
         From: Someone <someone@example.com>\r\nTo: <user@example.net>\r\nSubject: hello\r\n\
         Date: Tue, 08 Dec 2026 02:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\n{body}"
    )
    .into_bytes();
    let n = 100_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deps = Deps {
        hostname: "mx.example.net".into(),
        ..Default::default()
    };
    let checks = sender::checks(
        &FilterSenderConfig::default(),
        &FilterPolicyConfig::default(),
        &deps,
    )
    .unwrap();
    let chain = Chain::new(checks, BTreeMap::new());
    let message = mail_parser::MessageParser::default().parse(&raw[..]).unwrap();
    let start = Instant::now();
    for i in 0..n {
        let env = Envelope {
            peer: "192.0.2.10".parse().unwrap(),
            peer_rdns: None,
            helo: if i % 2 == 0 {
                "server1.local".into()
            } else {
                "mail.example.com".into()
            },
            tls: false,
            auth_user: None,
            mail_from: Some("someone@example.com".into()),
            recipients: Vec::new(),
            deadline: Instant::now() + Duration::from_secs(30),
        };
        let scan = Scan {
            envelope: &env,
            raw: &raw,
            message: &message,
        };
        std::hint::black_box(rt.block_on(chain.run(&scan)));
    }
    let per = start.elapsed() / n;
    println!(
        "sender checks, no DNS ({} byte message): {per:?} a message",
        raw.len()
    );

    let start = Instant::now();
    for _ in 0..n {
        let m = mail_auth::AuthenticatedMessage::from_parsed(&message, &raw, true);
        std::hint::black_box(m);
    }
    let per = start.elapsed() / n;
    println!("with DNS on, reading DKIM/ARC and hashing the body before lookups: {per:?} a message");
}
