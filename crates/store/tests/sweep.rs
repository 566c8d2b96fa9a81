//! The sweep deletes exactly the bodies that are old enough and that no
//! message and no queue entry refers to.

mod common;
use common::wait;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postroom_core::QueueId;
use postroom_store::{Delivery, OutboundItem, Store, SweepReport};

fn id_at(t: SystemTime) -> String {
    let micros = t.duration_since(UNIX_EPOCH).unwrap().as_micros() as u64;
    QueueId::generate(micros).to_string()
}

#[test]
fn sweep_deletes_only_old_unreferenced_bodies() {
    let (dir, store, _a, inbox) = common::one_mailbox();
    let body = b"Subject: kept\r\n\r\nbody\r\n";

    // Two stored messages and one queued message: referenced.
    wait(store.append(&inbox, body, 0, "", None)).unwrap();
    wait(store.append(&inbox, body, 0, "", None)).unwrap();
    let queued = id_at(SystemTime::now());
    store.blobs.put(&queued, body).unwrap();
    let delivery = Delivery {
        queue_id: queued.clone(),
        blob_id: queued.clone(),
        blob_size: body.len() as u64,
        received_at: 0,
        local: vec![],
        outbound: vec![OutboundItem {
            sender: "u@example.com".into(),
            recipient: "someone@remote.example".into(),
            prefix: vec![],
            held: Some(postroom_store::Hold::remote(
                postroom_store::HoldReason::Admin,
                "test",
            )),
        }],
        released: Vec::new(),
    };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(store.commit_delivery(delivery)).unwrap();

    // Left behind by a crash: an hour old, and a second old.
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let old_orphans: Vec<String> = (0..3).map(|_| id_at(hour_ago)).collect();
    for id in &old_orphans {
        store.blobs.put(id, body).unwrap();
    }
    let young_orphan = id_at(SystemTime::now());
    store.blobs.put(&young_orphan, body).unwrap();
    store.blobs.sync().unwrap();
    assert_eq!(common::count_files(&dir.path().join("blobs")), 7);

    // Only the old ones are considered, and all three are unreferenced.
    let report = wait(store.sweep_unreferenced_bodies(Duration::from_secs(600))).unwrap();
    assert_eq!(
        report,
        SweepReport {
            examined: 3,
            deleted: 3
        }
    );
    for id in &old_orphans {
        assert!(store.blobs.get(id).is_err(), "{id} deleted");
    }
    assert!(store.blobs.get(&young_orphan).is_ok(), "too young to be swept");

    // With no minimum age the young orphan goes too; referenced bodies stay.
    std::thread::sleep(Duration::from_millis(2));
    let report = wait(store.sweep_unreferenced_bodies(Duration::ZERO)).unwrap();
    assert_eq!(
        report,
        SweepReport {
            examined: 4,
            deleted: 1
        }
    );
    assert!(store.blobs.get(&queued).is_ok(), "a queued body stays");
    for m in store.sqlite().unwrap().messages(inbox.id).unwrap() {
        assert_eq!(store.message_bytes(&m).unwrap(), body, "a stored body stays");
    }
    drop(store);
    assert_eq!(common::count_files(&dir.path().join("blobs")), 3);
}

#[test]
fn sweep_of_an_empty_store_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let report = wait(store.sweep_unreferenced_bodies(Duration::ZERO)).unwrap();
    assert_eq!(report, SweepReport::default());
}
