//! The virus scan against a real clamd started by the test, with a
//! signature database the test writes (EICAR's MD5): no download.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use postroom_config::FilterClamavConfig;
use postroom_filter::{clamav, Action, Chain, Deps, Envelope, Forced, Report, Scan, Thresholds};
use support::{Clamd, EICAR};

fn envelope(wait: Duration) -> Envelope {
    Envelope::unauthenticated(
        "192.0.2.10".parse().unwrap(),
        "mail.example.com",
        Some("a@example.com"),
        Instant::now() + wait,
    )
}

fn with_attachment(content: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(content);
    format!(
        "From: <a@example.com>\r\nTo: <b@example.net>\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n\
         see attached\r\n--b1\r\nContent-Type: application/octet-stream; name=\"eicar.com\"\r\n\
         Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"eicar.com\"\r\n\r\n\
         {b64}\r\n--b1--\r\n"
    )
    .into_bytes()
}

fn chain(config: FilterClamavConfig) -> Chain {
    Chain::new(
        clamav::checks(&config, &Deps::default()).unwrap(),
        BTreeMap::new(),
    )
}

async fn run(chain: &Chain, raw: &[u8], wait: Duration) -> Report {
    let env = envelope(wait);
    let message = mail_parser::MessageParser::default().parse(raw).unwrap();
    let scan = Scan {
        envelope: &env,
        raw,
        message: &message,
    };
    chain.run(&scan).await
}

fn unix(clamd: &Clamd) -> FilterClamavConfig {
    FilterClamavConfig {
        socket: Some(clamd.socket.display().to_string()),
        ..Default::default()
    }
}

#[tokio::test]
async fn eicar_is_refused_over_both_sockets_whitelisted_or_not() {
    let Some(clamd) = Clamd::start("10M") else { return };
    let tcp = FilterClamavConfig {
        address: Some(clamd.address.to_string()),
        ..Default::default()
    };
    for config in [unix(&clamd), tcp] {
        let report = run(&chain(config), &with_attachment(EICAR), Duration::from_secs(20)).await;
        let Some(Forced::Reject { symbol, reason }) = &report.forced else {
            panic!("not refused: {report:?}");
        };
        assert_eq!(symbol, clamav::CLAMAV_VIRUS);
        assert!(reason.contains("Eicar-Test-Signature"), "{reason}");
        // A whitelist never skips the virus scan.
        assert_eq!(Thresholds::default().decide(&report, true), Action::Reject);
        assert!(report.score(true) > 0.0);
    }
    let report = run(
        &chain(unix(&clamd)),
        &with_attachment(b"just a file"),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(report.forced, None, "{report:?}");
    assert_eq!(report.symbols().count(), 0);
}

#[tokio::test]
async fn a_stopped_clamd_tempfails() {
    let Some(mut clamd) = Clamd::start("10M") else {
        return;
    };
    let chain = chain(unix(&clamd));
    clamd.stop();
    let report = run(&chain, &with_attachment(b"anything"), Duration::from_secs(20)).await;
    assert!(
        matches!(&report.forced, Some(Forced::TempFail { symbol, reason })
            if symbol == clamav::CLAMAV_UNAVAILABLE && !reason.contains("clamd.sock")),
        "{report:?}"
    );
    // What failed is in the detail, for the administrator.
    assert!(report.symbols().any(|s| s.detail.contains("clamd.sock")));
}

#[tokio::test]
async fn above_max_stream_bytes_only_the_start_is_scanned() {
    let Some(clamd) = Clamd::start("1M") else { return };
    // The virus after the first max_stream_bytes is not seen, and the
    // report says the scan was partial.
    let mut raw = with_attachment(&vec![b'a'; 300 * 1024]);
    raw.extend_from_slice(&with_attachment(EICAR));
    let config = FilterClamavConfig {
        max_stream_bytes: 200 * 1024,
        ..unix(&clamd)
    };
    let report = run(&chain(config), &raw, Duration::from_secs(20)).await;
    assert_eq!(report.forced, None, "{report:?}");
    assert!(report.symbols().any(|s| s.name == clamav::CLAMAV_PARTIAL));
    // max_stream_bytes above clamd's StreamMaxLength: clamd's error
    // tempfails rather than letting the message through unscanned.
    let config = FilterClamavConfig {
        max_stream_bytes: 4 * 1024 * 1024,
        ..unix(&clamd)
    };
    let big = with_attachment(&vec![b'a'; 2 * 1024 * 1024]);
    let report = run(&chain(config), &big, Duration::from_secs(20)).await;
    assert!(
        matches!(&report.forced, Some(Forced::TempFail { .. })),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_clamd_that_never_answers_tempfails_at_the_deadline() {
    // Accepts and reads nothing: the scan can only end by the deadline.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let config = FilterClamavConfig {
        address: Some(address.to_string()),
        ..Default::default()
    };
    // Larger than the socket buffers, so the write blocks too.
    let raw = with_attachment(&vec![b'a'; 8 * 1024 * 1024]);
    let report = run(&chain(config), &raw, Duration::from_millis(500)).await;
    assert!(
        matches!(&report.forced, Some(Forced::TempFail { .. })),
        "{report:?}"
    );
}
