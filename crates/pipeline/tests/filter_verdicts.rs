//! The filter's verdicts as the SMTP client sees them, through
//! `MxPipeline::deliver` (issue #10): a forced temporary failure is
//! `451 4.7.1`, a refusal for every recipient `550 5.7.1` and nothing
//! stored or queued (never a bounce), a discard `250` with nothing stored.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use postroom_core::Address;
use postroom_directory::Route;
use postroom_filter::{Chain, Check, Findings, Forced, Scan, Thresholds};
use postroom_pipeline::policy::AcceptedRcpt;
use postroom_pipeline::{ChainFilter, MxPipeline};
use postroom_smtp::service::{BodySpool, PeerContext, SmtpHandler};
use postroom_smtp::{BodyType, DeliveryOutcome, Envelope, RcptTarget};
use postroom_store::Store;

/// Forces what the message's Subject names.
struct BySubject;

#[async_trait::async_trait]
impl Check for BySubject {
    fn name(&self) -> &'static str {
        "test"
    }
    async fn check(&self, scan: &Scan<'_>, out: &mut Findings) {
        let subject = scan.message.subject().unwrap_or("");
        let (symbol, reason) = ("TEST_FORCED".to_string(), subject.to_string());
        match subject {
            "tempfail" => out.force(Forced::TempFail { symbol, reason }),
            "reject" => out.force(Forced::Reject { symbol, reason }),
            "discard" => out.add("TEST_SCORE", 50.0, "high"),
            _ => {}
        }
    }
}

fn pipeline(dir: &tempfile::TempDir, high_discards: bool) -> (Arc<MxPipeline>, postroom_store::AccountId) {
    let store = Store::open(dir.path()).unwrap();
    let db = store.sqlite().unwrap();
    let d = db.add_domain("probe.test", "probe.test", None).unwrap();
    let acct = db.add_account(d.id, "alice", "alice", None, None).unwrap();
    let chain = Chain::new(vec![Box::new(BySubject)], BTreeMap::new());
    let thresholds = Thresholds {
        high_discards,
        ..Thresholds::default()
    };
    let pipeline = Arc::new(common::test_pipeline(
        store,
        "mx.probe.test",
        Arc::new(ChainFilter::new(chain, thresholds, None)),
    ));
    (pipeline, acct.id)
}

async fn send(p: &MxPipeline, account: postroom_store::AccountId, subject: &str) -> DeliveryOutcome {
    let body = format!("From: s@sender.example\r\nSubject: {subject}\r\n\r\nbody\r\n").into_bytes();
    let rcpt = AcceptedRcpt {
        forwarded: false,
        rcpt: "alice@probe.test".into(),
        routes: vec![Route::Local {
            account_id: account,
            address: "alice@probe.test".into(),
            enabled: true,
        }],
    };
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let env = Envelope {
        helo: "client.example".into(),
        esmtp: true,
        tls: false,
        peer: ip,
        mail_from: Some(Address::parse("s@sender.example", false).unwrap()),
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
        auth: None,
    };
    let peer = PeerContext {
        ip,
        helo: Some("client.example".into()),
        tls: false,
        declared_size: None,
        auth: None,
    };
    let mut spool = p.open_spool().unwrap();
    spool.write(&body).unwrap();
    p.deliver(&peer, env, spool).await
}

async fn stored(p: &MxPipeline, account: postroom_store::AccountId) -> usize {
    let folders = p.store.meta().folders(account).await.unwrap();
    let mut n = 0;
    for f in folders {
        n += p.store.meta().messages(f.id).await.unwrap().len();
    }
    n + p.store.meta().outbound().await.unwrap().len()
}

#[tokio::test]
async fn forced_and_high_verdicts_answer_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let (p, alice) = pipeline(&dir, false);
    let reply = |o: &DeliveryOutcome| match o {
        DeliveryOutcome::Accepted { .. } => "250".to_string(),
        DeliveryOutcome::Rejected(r) => r.summary(),
    };
    let r = reply(&send(&p, alice, "tempfail").await);
    assert!(r.starts_with("451 4.7.1"), "{r}");
    let r = reply(&send(&p, alice, "reject").await);
    assert!(r.starts_with("550 5.7.1 Message refused: reject ["), "{r}");
    let r = reply(&send(&p, alice, "discard").await);
    assert!(r.starts_with("550 5.7.1"), "{r}");
    // Refused, nothing kept, nothing queued (no bounce to the sender).
    assert_eq!(stored(&p, alice).await, 0);
    assert_eq!(reply(&send(&p, alice, "fine").await), "250");
    assert_eq!(stored(&p, alice).await, 1);

    let dir = tempfile::tempdir().unwrap();
    let (p, alice) = pipeline(&dir, true);
    assert_eq!(reply(&send(&p, alice, "discard").await), "250");
    assert_eq!(stored(&p, alice).await, 0);
}
