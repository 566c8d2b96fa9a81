//! The submission From:/Sender: check (issue #8 part 3): one From: only,
//! read as the IMAP ENVELOPE reads it (`From :` included), and a quoted
//! local part is an address, not a display name.

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use postroom_core::Address;
use postroom_directory::Route;
use postroom_pipeline::policy::AcceptedRcpt;
use postroom_pipeline::{MxPipeline, NoFilter};
use postroom_smtp::service::{BodySpool, PeerContext, SmtpHandler};
use postroom_smtp::{BodyType, DeliveryOutcome, Envelope, RcptTarget};
use postroom_store::Store;

struct Setup {
    _dir: tempfile::TempDir,
    pipeline: Arc<MxPipeline>,
    account_id: postroom_store::AccountId,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let d = store
        .sqlite()
        .unwrap()
        .add_domain("probe.test", "probe.test", None)
        .unwrap();
    let acct = store
        .sqlite()
        .unwrap()
        .add_account(d.id, "alice", "alice", None, None)
        .unwrap();
    store
        .sqlite()
        .unwrap()
        .add_account(d.id, "bob", "bob", None, None)
        .unwrap();
    let pipeline = Arc::new(common::test_pipeline(store, "mx.probe.test", Arc::new(NoFilter)));
    Setup {
        _dir: dir,
        pipeline,
        account_id: acct.id,
    }
}

/// Alice (authenticated) submits `header` to herself.
async fn submit(s: &Setup, header: &str) -> DeliveryOutcome {
    let body = format!("{header}Subject: t\r\n\r\nbody\r\n").into_bytes();
    let rcpt = AcceptedRcpt {
        forwarded: false,
        rcpt: "alice@probe.test".into(),
        routes: vec![Route::Local {
            account_id: s.account_id,
            address: "alice@probe.test".into(),
            enabled: true,
        }],
    };
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let env = Envelope {
        helo: "client.example".into(),
        esmtp: true,
        tls: true,
        peer: ip,
        mail_from: Some(Address::parse("alice@probe.test", false).unwrap()),
        recipients: vec![(
            RcptTarget::Mailbox(Address::parse("alice@probe.test", false).unwrap()),
            rcpt,
        )],
        body_type: BodyType::SevenBit,
        smtputf8: false,
        chunking: false,
        has_8bit: false,
        size: body.len() as u64,
        bare_line_ends: 0,
        auth: Some("alice@probe.test".into()),
    };
    let peer = PeerContext {
        ip,
        helo: Some("client.example".into()),
        tls: true,
        declared_size: None,
        auth: Some("alice@probe.test".into()),
    };
    // The body arrives as the SMTP glue writes it: into the spool.
    let mut spool = s.pipeline.open_spool().unwrap();
    spool.write(&body).unwrap();
    s.pipeline.deliver(&peer, env, spool).await
}

fn refused(outcome: &DeliveryOutcome) -> Option<String> {
    match outcome {
        DeliveryOutcome::Accepted { .. } => None,
        DeliveryOutcome::Rejected(r) => Some(r.summary()),
    }
}

#[tokio::test]
async fn own_from_is_accepted() {
    let s = setup();
    for header in [
        "From: alice@probe.test\r\n",
        "From: Alice <alice@probe.test>\r\n",
        "From : alice@probe.test\r\n",
        // A quoted local part is the same address (RFC 5322 3.4.1), not a
        // display name.
        "From: \"alice\"@probe.test\r\n",
        "From: Alice <\"alice\"@probe.test>\r\nSender: alice@probe.test\r\n",
        // No From: at all: nobody is named (as before).
        "",
    ] {
        assert_eq!(refused(&submit(&s, header).await), None, "{header:?}");
    }
}

#[tokio::test]
async fn a_second_from_is_refused() {
    let s = setup();
    for header in [
        "From: bob@probe.test\r\nFrom: alice@probe.test\r\n",
        "From: alice@probe.test\r\nFrom: alice@probe.test\r\n",
        "From: alice@probe.test\r\nFROM : bob@probe.test\r\n",
        "From : bob@probe.test\r\nFrom: alice@probe.test\r\n",
        "From: alice@probe.test\r\nSender: alice@probe.test\r\nSender: bob@probe.test\r\n",
    ] {
        let why = refused(&submit(&s, header).await).unwrap_or_else(|| panic!("accepted: {header:?}"));
        assert!(why.starts_with("550 5.7.1"), "{why}");
        assert!(why.contains("more than one"), "{why}");
    }
}

#[tokio::test]
async fn someone_elses_from_is_refused_however_written() {
    let s = setup();
    for header in [
        "From: bob@probe.test\r\n",
        "From : bob@probe.test\r\n",
        "From\t: Alice <bob@probe.test>\r\n",
        "From: \"bob\"@probe.test\r\n",
        "From: alice@probe.test, bob@probe.test\r\n",
        "From: alice@probe.test\r\nSender : bob@probe.test\r\n",
        "From: bob\r\n",
    ] {
        let why = refused(&submit(&s, header).await).unwrap_or_else(|| panic!("accepted: {header:?}"));
        assert!(why.starts_with("550 5.7.1"), "{why}");
    }
}
