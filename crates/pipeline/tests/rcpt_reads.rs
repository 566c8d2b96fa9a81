//! How many storage calls RCPT makes. On PostgreSQL each call is a round
//! trip to the database server, at every RCPT: profiled at 9868598, RCPT
//! to a mailbox made four (the domain, the mailbox twice, its usage).

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use postroom_core::Address;
use postroom_pipeline::{MxPipeline, NoFilter};
use postroom_smtp::service::{PeerContext, SmtpHandler};
use postroom_smtp::{RcptTarget, RcptVerdict};
use postroom_store::faulty::{FaultSwitch, FaultyMeta};
use postroom_store::Store;

async fn setup(dir: &std::path::Path) -> (Arc<MxPipeline>, FaultSwitch, postroom_store::AccountId) {
    let plain = Store::open(dir).unwrap();
    let meta = plain.meta_handle();
    let d = meta.add_domain("probe.test", "probe.test", None).await.unwrap();
    meta.add_account(d.id, "alice", "alice", None, None)
        .await
        .unwrap();
    let limited = meta.add_account(d.id, "bob", "bob", None, None).await.unwrap();
    meta.set_quota(limited.id, Some(1 << 20)).await.unwrap();
    let (counted, switch) = FaultyMeta::new(meta);
    let store = Store::with_backend(Arc::new(counted), Arc::clone(&plain.blobs), dir);
    let pipeline = Arc::new(common::test_pipeline(store, "mx.probe.test", Arc::new(NoFilter)));
    (pipeline, switch, limited.id)
}

async fn rcpt_calls(pipeline: &MxPipeline, switch: &FaultSwitch, rcpt: &str) -> u64 {
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let peer = PeerContext {
        ip,
        helo: Some("client.example".into()),
        tls: false,
        declared_size: None,
        auth: None,
    };
    let before = switch.calls();
    let target = RcptTarget::Mailbox(Address::parse(rcpt, true).unwrap());
    let verdict = pipeline.check_recipient(&peer, target).await;
    assert!(matches!(verdict, RcptVerdict::Accept(_)), "{rcpt} refused");
    switch.calls() - before
}

#[tokio::test]
async fn rcpt_to_a_mailbox_reads_the_domain_and_the_mailbox_once() {
    let dir = tempfile::tempdir().unwrap();
    let (pipeline, switch, _) = setup(dir.path()).await;
    // No quota: its usage is not read (nothing is refused for size).
    assert_eq!(rcpt_calls(&pipeline, &switch, "alice@probe.test").await, 2);
    // A quota: and the usage.
    assert_eq!(rcpt_calls(&pipeline, &switch, "bob@probe.test").await, 3);
}
