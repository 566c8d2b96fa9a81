//! The sender checks against a real DNS server (dnsmasq on 127.0.0.1)
//! publishing the fixtures: an SPF fail, a DMARC reject and quarantine
//! policy, a DKIM key, a PTR, and DNS blocklist zones.

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use base64::Engine;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use postroom_config::{FilterPolicyConfig, FilterSenderConfig};
use postroom_filter::sender::{self, AUTH_FAILURES};
use postroom_filter::{Chain, Deps, Envelope, Forced, Report, Scan};
use support::Dnsmasq;

/// The client in every test: TEST-NET-1, so nothing here depends on the
/// machine's own addresses.
const PEER: &str = "192.0.2.10";

fn records(dkim_public: &str) -> String {
    format!(
        "local=/test/\n\
         local=/in-addr.arpa/\n\
         # SPF fail, no DMARC.\n\
         txt-record=forged.test,\"v=spf1 ip4:198.51.100.0/24 -all\"\n\
         # DMARC reject: SPF neutral, so DMARC decides alone.\n\
         txt-record=strict.test,\"v=spf1 ?all\"\n\
         txt-record=_dmarc.strict.test,\"v=DMARC1; p=reject\"\n\
         txt-record=careful.test,\"v=spf1 ?all\"\n\
         txt-record=_dmarc.careful.test,\"v=DMARC1; p=quarantine\"\n\
         # Everything passes.\n\
         txt-record=good.test,\"v=spf1 ip4:192.0.2.0/24 -all\"\n\
         txt-record=_dmarc.good.test,\"v=DMARC1; p=reject\"\n\
         txt-record=sel._domainkey.good.test,\"v=DKIM1; k=ed25519; p={dkim_public}\"\n\
         ptr-record=10.2.0.192.in-addr.arpa,mail.good.test\n\
         address=/mail.good.test/192.0.2.10\n\
         # Blocklists: one lists the client, one refuses, one is clean.\n\
         address=/10.2.0.192.bl.test/127.0.0.2\n\
         address=/10.2.0.192.refuse.test/127.255.255.254\n"
    )
}

struct Fixture {
    dns: Dnsmasq,
    key: Vec<u8>,
}

fn fixture() -> Option<Fixture> {
    let key = Ed25519Key::generate_pkcs8().unwrap();
    let public = Ed25519Key::from_pkcs8_der(&key).unwrap().public_key();
    let public = base64::engine::general_purpose::STANDARD.encode(public);
    let dns = Dnsmasq::start(&records(&public))?;
    Some(Fixture { dns, key })
}

fn message(from: &str, body: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <rcpt@example.net>\r\nSubject: hello\r\n\
         Date: Tue, 08 Dec 2026 02:00:00 +0000\r\nMessage-ID: <1@x>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn signed(key: &[u8], from: &str, body: &str) -> Vec<u8> {
    let m = message(from, body);
    let sig = DkimSigner::from_key(Ed25519Key::from_pkcs8_der(key).unwrap())
        .domain("good.test")
        .selector("sel")
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .sign(&m)
        .unwrap();
    let mut out = sig.to_header().into_bytes();
    out.extend_from_slice(&m);
    out
}

fn envelope(mail_from: Option<&str>, wait: Duration) -> Envelope {
    Envelope::unauthenticated(
        PEER.parse().unwrap(),
        "mail.good.test",
        mail_from,
        Instant::now() + wait,
    )
}

fn chain(dns: Option<hickory_resolver::TokioResolver>, zones: &[&str]) -> Chain {
    let config = FilterSenderConfig {
        dnsbl_zones: zones.iter().map(|z| z.to_string()).collect(),
        ..Default::default()
    };
    let deps = Deps {
        hostname: "mx.example.net".into(),
        dns,
        ..Default::default()
    };
    let checks = sender::checks(&config, &FilterPolicyConfig::default(), &deps).unwrap();
    Chain::new(checks, BTreeMap::new())
}

async fn run(chain: &Chain, env: &Envelope, raw: &[u8]) -> Report {
    let message = mail_parser::MessageParser::default().parse(raw).unwrap();
    let scan = Scan {
        envelope: env,
        raw,
        message: &message,
    };
    chain.run(&scan).await
}

fn names(report: &Report) -> Vec<String> {
    report.symbols().map(|s| s.name.to_string()).collect()
}

fn header(report: &Report) -> String {
    report
        .headers
        .iter()
        .find(|(n, _)| n == "Authentication-Results")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn spf_fail_is_refused() {
    let Some(f) = fixture() else { return };
    let chain = chain(Some(f.dns.resolver()), &[]);
    let env = envelope(Some("ceo@forged.test"), Duration::from_secs(20));
    let report = run(&chain, &env, &message("ceo@forged.test", "pay this")).await;
    assert!(names(&report).contains(&"SPF_FAIL".into()), "{report:?}");
    assert!(
        matches!(&report.forced, Some(Forced::Reject { symbol, .. }) if symbol == "SPF_FAIL"),
        "{report:?}"
    );
    let ar = header(&report);
    assert!(ar.starts_with("mx.example.net;"), "{ar}");
    assert!(ar.contains("spf=fail"), "{ar}");
    assert!(ar.contains("smtp.mailfrom=ceo@forged.test"), "{ar}");
    // Only scored when the configuration says so.
    let config = FilterSenderConfig {
        spf_fail_rejects: false,
        ..Default::default()
    };
    let deps = Deps {
        hostname: "mx.example.net".into(),
        dns: Some(f.dns.resolver()),
        ..Default::default()
    };
    let scoring = Chain::new(
        sender::checks(&config, &FilterPolicyConfig::default(), &deps).unwrap(),
        BTreeMap::new(),
    );
    let report = run(&scoring, &env, &message("ceo@forged.test", "pay this")).await;
    assert_eq!(report.forced, None);
    assert!(report.score(false) >= sender::default_score("SPF_FAIL"));
}

#[tokio::test]
async fn dmarc_reject_and_quarantine_policies() {
    let Some(f) = fixture() else { return };
    let chain = chain(Some(f.dns.resolver()), &[]);
    let env = envelope(Some("bank@strict.test"), Duration::from_secs(20));
    let report = run(&chain, &env, &message("bank@strict.test", "log in")).await;
    assert!(
        matches!(&report.forced, Some(Forced::Reject { symbol, .. }) if symbol == "DMARC_REJECT"),
        "{report:?}"
    );
    let ar = header(&report);
    assert!(
        ar.contains("dmarc=fail") && ar.contains("policy.dmarc=reject"),
        "{ar}"
    );

    let env = envelope(Some("shop@careful.test"), Duration::from_secs(20));
    let report = run(&chain, &env, &message("shop@careful.test", "offer")).await;
    assert_eq!(report.forced, None, "{report:?}");
    let q = report
        .symbols()
        .find(|s| s.name == "DMARC_QUARANTINE")
        .expect("DMARC_QUARANTINE");
    assert_eq!(q.score, FilterPolicyConfig::default().quarantine_at);
    // The symbols the whitelist logic looks for are the ones emitted.
    assert!(AUTH_FAILURES.contains(&"DMARC_QUARANTINE"));
}

#[tokio::test]
async fn an_authenticated_domain_passes_everything() {
    let Some(f) = fixture() else { return };
    let chain = chain(Some(f.dns.resolver()), &[]);
    let env = envelope(Some("news@good.test"), Duration::from_secs(20));
    let report = run(&chain, &env, &signed(&f.key, "news@good.test", "hello")).await;
    let names = names(&report);
    for want in ["SPF_PASS", "DKIM_PASS", "DMARC_PASS", "RDNS_CONFIRMED"] {
        assert!(names.contains(&want.to_string()), "{want} missing: {report:?}");
    }
    assert_eq!(report.forced, None);
    assert_eq!(report.score(false), 0.0, "{report:?}");
    let ar = header(&report);
    for want in [
        "iprev=pass",
        "spf=pass",
        "dkim=pass header.d=good.test",
        "dmarc=pass",
    ] {
        assert!(ar.contains(want), "{want} missing: {ar}");
    }

    // Hundreds of signatures: only the first MAX_DKIM_SIGNATURES are
    // verified (each is a lookup and a verification).
    let one = signed(&f.key, "news@good.test", "hello");
    let end = one.windows(3).position(|w| w == b"\r\nF").unwrap() + 2;
    let mut many = one[..end].repeat(300);
    many.extend_from_slice(&one);
    let report = run(&chain, &env, &many).await;
    let ar = header(&report);
    assert_eq!(ar.matches("dkim=").count(), sender::MAX_DKIM_SIGNATURES, "{ar}");
    assert!(ar.contains("dkim=pass"), "{ar}");

    // The same signature over a changed body fails, and DMARC with it.
    let mut tampered = signed(&f.key, "news@good.test", "hello");
    let at = tampered.len() - 4;
    tampered[at] = b'X';
    let env = envelope(Some("news@elsewhere.test"), Duration::from_secs(20));
    let report = run(&chain, &env, &tampered).await;
    let names: Vec<String> = self::names(&report);
    assert!(names.contains(&"DKIM_FAIL".to_string()), "{report:?}");
    assert!(
        matches!(&report.forced, Some(Forced::Reject { symbol, .. }) if symbol == "DMARC_REJECT"),
        "{report:?}"
    );
}

#[tokio::test]
async fn dnsbl_zones_list_and_refuse() {
    let Some(f) = fixture() else { return };
    let chain = chain(Some(f.dns.resolver()), &["bl.test", "refuse.test.", "clean.test"]);
    let env = envelope(Some("news@good.test"), Duration::from_secs(20));
    let report = run(&chain, &env, &message("news@good.test", "hi")).await;
    let listed: Vec<_> = report.symbols().filter(|s| s.name == "DNSBL_LISTED").collect();
    assert_eq!(listed.len(), 1, "{report:?}");
    assert!(listed[0].detail.contains("bl.test") && listed[0].detail.contains("127.0.0.2"));
    assert_eq!(listed[0].score, sender::default_score("DNSBL_LISTED"));
    let refused: Vec<_> = report.symbols().filter(|s| s.name == "DNSBL_ERROR").collect();
    assert_eq!(refused.len(), 1, "{report:?}");
    assert!(refused[0].detail.contains("refuse.test") && refused[0].score == 0.0);
}

#[tokio::test]
async fn submissions_and_dns_off_skip_the_lookups() {
    let Some(f) = fixture() else { return };
    let chain = chain(Some(f.dns.resolver()), &["bl.test"]);
    let mut env = envelope(Some("ceo@forged.test"), Duration::from_secs(20));
    env.auth_user = Some("ceo@forged.test".into());
    env.helo = "server1.local".into();
    let report = run(&chain, &env, &message("ceo@forged.test", "hi")).await;
    assert_eq!(report.symbols().count(), 0, "{report:?}");
    assert!(report.headers.is_empty() && report.forced.is_none());

    // A trusted relay's mail is not judged either.
    let config = FilterSenderConfig {
        dnsbl_zones: vec!["bl.test".into()],
        ..Default::default()
    };
    let deps = Deps {
        hostname: "mx.example.net".into(),
        dns: Some(f.dns.resolver()),
        trusted_networks: postroom_core::IpNetList::parse(&["192.0.2.0/24"]).unwrap(),
        ..Default::default()
    };
    let trusting = Chain::new(
        sender::checks(&config, &FilterPolicyConfig::default(), &deps).unwrap(),
        BTreeMap::new(),
    );
    env.auth_user = None;
    let report = run(&trusting, &env, &message("ceo@forged.test", "hi")).await;
    assert_eq!(report.symbols().count(), 0, "{report:?}");
    assert!(report.headers.is_empty() && report.forced.is_none());

    // dns.enabled = false: the HELO rules only, no header.
    let chain = self::chain(None, &["bl.test"]);
    env.auth_user = None;
    let report = run(&chain, &env, &message("ceo@forged.test", "hi")).await;
    assert_eq!(names(&report), ["HELO_LOCAL"]);
    assert!(report.headers.is_empty() && report.forced.is_none());
}

#[tokio::test]
async fn a_silent_resolver_ends_by_the_deadline_with_a_header() {
    // A UDP socket nobody reads: every question goes unanswered.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server: SocketAddr = silent.local_addr().unwrap();
    let resolver = support::resolver(server, Duration::from_secs(60));
    let chain = chain(Some(resolver), &["bl.test"]);
    let env = envelope(Some("a@good.test"), Duration::from_secs(3));
    let report = run(&chain, &env, &message("a@good.test", "hi")).await;
    // Finished before the chain's own cut (which would leave a
    // SENDER_TIMEOUT symbol and no header).
    assert!(
        !names(&report).contains(&"SENDER_TIMEOUT".to_string()),
        "{report:?}"
    );
    let ar = header(&report);
    assert!(ar.contains("spf=temperror"), "{ar}");
    assert!(names(&report).contains(&"SPF_TEMPERROR".to_string()));
    assert!(report.forced.is_none());
    let _: IpAddr = PEER.parse().unwrap();
}
