//! The hand-made fixtures in tests/fixtures/filter/ through a chain of the
//! content checks (header rules, links with the fixtures' phishing list,
//! HTML, attachments) and the disarming rewriter: each gets the action,
//! the symbols and the {Cleaned} outcome expected.toml gives it, and
//! disarming keeps every part but the changed text/html ones byte for
//! byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mail_parser::{MessageParser, PartType};
use postroom_config::FilterConfig;
use postroom_filter::{attachments, html, links, rules, Chain, Deps, Envelope, Scan, Thresholds};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/filter")
}

/// The chain of this crate's content modules only: the sender checks,
/// clamd and the classifier are tested where they are built.
pub fn content_chain(config: &FilterConfig) -> Chain {
    let deps = Deps::default();
    let lists = links::Lists::load(&config.links).unwrap();
    let mut checks = Vec::new();
    checks.extend(rules::checks(&deps).unwrap());
    checks.extend(links::checks(&config.links, &lists, &deps).unwrap());
    checks.extend(html::checks(&config.html, &deps).unwrap());
    checks.extend(attachments::checks(&config.attachments, &deps).unwrap());
    let chain = Chain::new(checks, BTreeMap::new());
    match html::rewriter(&config.html, &config.links, &lists, &deps).unwrap() {
        Some(r) => chain.with_rewriter(r),
        None => chain,
    }
}

fn envelope() -> Envelope {
    Envelope::unauthenticated(
        "192.0.2.10".parse().unwrap(),
        "mail.shop.example",
        Some("sender@shop.example"),
        Instant::now() + Duration::from_secs(30),
    )
}

#[derive(serde::Deserialize)]
struct Expected {
    action: String,
    symbols: Vec<String>,
    cleaned: bool,
    #[serde(default)]
    no_symbols: bool,
}

/// The raw bytes of every leaf part that is not a text/html body, and of
/// every part's header that is not one's.
fn kept_parts(raw: &[u8]) -> Vec<Vec<u8>> {
    let m = MessageParser::default().parse(raw).unwrap();
    m.parts
        .iter()
        .skip(1)
        .filter(|p| !matches!(p.body, PartType::Html(_) | PartType::Multipart(_)))
        .map(|p| raw[p.offset_header as usize..p.offset_end as usize].to_vec())
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn every_fixture_gets_its_expected_outcome() {
    let expected: BTreeMap<String, Expected> =
        toml::from_str(&std::fs::read_to_string(dir().join("expected.toml")).unwrap()).unwrap();
    let mut config = FilterConfig::default();
    config.links.phishing_blocklists = vec![dir().join("phishing.bad.sites")];
    let chain = content_chain(&config);
    let mut files: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "{files:?}");
    let env = envelope();
    for file in files {
        let want = expected
            .get(&file)
            .unwrap_or_else(|| panic!("{file} has no entry in expected.toml"));
        let raw = std::fs::read(dir().join(&file)).unwrap();
        let message = MessageParser::default().parse(&raw[..]).unwrap();
        let scan = Scan {
            envelope: &env,
            raw: &raw,
            message: &message,
        };
        let report = chain.run(&scan).await;
        let action = Thresholds::default().decide(&report, false);
        let found: Vec<String> = report
            .symbols()
            .map(|s| format!("{} {} ({})", s.name, s.score, s.detail))
            .collect();
        assert_eq!(action.as_str(), want.action, "{file}: {found:#?}");
        for s in &want.symbols {
            assert!(
                report.symbols().any(|x| x.name == s.as_str()),
                "{file}: {s} not in {found:#?}"
            );
        }
        if want.no_symbols {
            assert!(found.is_empty(), "{file}: {found:#?}");
        }
        let rewritten = chain.rewrite(&scan);
        assert_eq!(
            rewritten.is_some(),
            want.cleaned,
            "{file}: {:?}",
            rewritten.as_ref().map(|r| &r.changes)
        );
        let Some(rewritten) = rewritten else { continue };
        let out = &rewritten.message;
        let parsed = MessageParser::default().parse(&out[..]).unwrap();
        assert!(parsed.subject().unwrap().starts_with("{Cleaned} "), "{file}");
        assert!(!rewritten.changes.is_empty());
        let header = parsed
            .header_raw("X-Postroom-Cleaned")
            .unwrap_or_else(|| panic!("{file}: no changes header"));
        assert!(!header.trim().is_empty());
        // Every attachment and plain-text part is there, byte for byte.
        for part in kept_parts(&raw) {
            assert!(
                contains(out, &part),
                "{file}: a part changed:\n{}",
                String::from_utf8_lossy(&part)
            );
        }
        // The MIME structure is the same: as many parts, of the same kinds.
        assert_eq!(parsed.parts.len(), message.parts.len(), "{file}");
        for (a, b) in parsed.parts.iter().zip(&message.parts) {
            assert_eq!(
                std::mem::discriminant(&a.body),
                std::mem::discriminant(&b.body),
                "{file}"
            );
        }
        // And the HTML is disarmed.
        for i in 0..parsed.html_body_count() {
            let body = parsed.body_html(i).unwrap().to_ascii_lowercase();
            for bad in [
                "<script",
                "<iframe",
                "onload",
                "onerror",
                "javascript:",
                "<form",
                "track.example",
            ] {
                assert!(!body.contains(bad), "{file}: {bad} in {body}");
            }
        }
        // Disarming is done once: the disarmed message needs nothing more.
        let again = MessageParser::default().parse(&out[..]).unwrap();
        let scan = Scan {
            envelope: &env,
            raw: out,
            message: &again,
        };
        assert!(chain.rewrite(&scan).is_none(), "{file}: disarmed twice");
    }
}

#[tokio::test]
async fn the_subject_tag_can_be_changed_or_turned_off() {
    let raw = std::fs::read(dir().join("script.eml")).unwrap();
    let message = MessageParser::default().parse(&raw[..]).unwrap();
    let env = envelope();
    let scan = Scan {
        envelope: &env,
        raw: &raw,
        message: &message,
    };
    let mut config = FilterConfig::default();
    config.html.subject_tag = String::new();
    let out = content_chain(&config).rewrite(&scan).unwrap();
    let parsed = MessageParser::default().parse(&out.message[..]).unwrap();
    assert_eq!(parsed.subject(), Some("Hello"));
    config.html.subject_tag = "[disarmed]".into();
    let out = content_chain(&config).rewrite(&scan).unwrap();
    let parsed = MessageParser::default().parse(&out.message[..]).unwrap();
    assert_eq!(parsed.subject(), Some("[disarmed] Hello"));
    config.html.disarm = false;
    assert!(content_chain(&config).rewrite(&scan).is_none());
}

#[tokio::test]
async fn a_whitelisted_sender_is_still_rejected_for_a_phishing_link_or_an_attachment() {
    let mut config = FilterConfig::default();
    config.links.phishing_blocklists = vec![dir().join("phishing.bad.sites")];
    let chain = content_chain(&config);
    let env = envelope();
    for file in [
        "blocklisted-domain.eml",
        "double-extension.eml",
        "password-zip.eml",
    ] {
        let raw = std::fs::read(dir().join(file)).unwrap();
        let message = MessageParser::default().parse(&raw[..]).unwrap();
        let scan = Scan {
            envelope: &env,
            raw: &raw,
            message: &message,
        };
        let report = chain.run(&scan).await;
        assert_eq!(
            Thresholds::default().decide(&report, true).as_str(),
            "reject",
            "{file}"
        );
    }
}

#[tokio::test]
async fn password_protected_archives_can_be_scored_or_allowed() {
    let raw = std::fs::read(dir().join("password-zip.eml")).unwrap();
    let message = MessageParser::default().parse(&raw[..]).unwrap();
    let env = envelope();
    let scan = Scan {
        envelope: &env,
        raw: &raw,
        message: &message,
    };
    let mut config = FilterConfig::default();
    config.attachments.encrypted_archives = "score".into();
    let report = content_chain(&config).run(&scan).await;
    assert!(report.forced.is_none());
    assert!(report.symbols().any(|s| s.name == "ATTACH_ENCRYPTED_ARCHIVE"));
    config.attachments.encrypted_archives = "allow".into();
    let report = content_chain(&config).run(&scan).await;
    assert!(report.forced.is_none());
    assert!(!report.symbols().any(|s| s.name == "ATTACH_ENCRYPTED_ARCHIVE"));
}
