//! Expunge removes exactly the UIDs asked for — runs, gaps, duplicates and
//! UIDs already gone alike — leaves one tombstone per removed message at one
//! new MODSEQ, and deletes the bodies nothing refers to any more.

mod common;
use common::wait;

use postroom_store::{Store, Uid};

fn message(i: i64) -> Vec<u8> {
    format!("From: a{i}@example.com\r\nSubject: message {i}\r\n\r\nbody {i}\r\n").into_bytes()
}

#[test]
fn expunge_removes_exactly_the_given_uids() {
    let (dir, store, _a, inbox) = common::one_mailbox();
    for i in 1..=20 {
        wait(store.append(&inbox, &message(i), 0, "", None)).unwrap();
    }
    let uids = |store: &Store| -> Vec<u32> {
        store
            .sqlite()
            .unwrap()
            .message_meta(inbox.id)
            .unwrap()
            .iter()
            .map(|m| m.uid.get())
            .collect()
    };
    assert_eq!(uids(&store), (1..=20).collect::<Vec<_>>());
    let before = store
        .sqlite()
        .unwrap()
        .folder_state(inbox.id)
        .unwrap()
        .unwrap()
        .highestmodseq;

    // Unsorted, with a duplicate, two runs, a single and a UID that never existed.
    let removed = wait(store.expunge(inbox.id, &[9, 3, 4, 5, 4, 12, 10, 11, 99].map(Uid))).unwrap();
    assert_eq!(removed, 7);
    let expect: Vec<u32> = (1..=20)
        .filter(|u| ![3, 4, 5, 9, 10, 11, 12].contains(u))
        .collect();
    assert_eq!(uids(&store), expect);
    let tombstones = store.sqlite().unwrap().expunged_since(inbox.id, before).unwrap();
    assert_eq!(tombstones, [3, 4, 5, 9, 10, 11, 12].map(Uid));

    // Removed already (by another session): skipped, not counted.
    let removed = wait(store.expunge(inbox.id, &[3, 4, 13].map(Uid))).unwrap();
    assert_eq!(removed, 1);
    assert_eq!(uids(&store).len(), 12);

    // The bodies of the removed messages go once the store is closed at the
    // latest (the purge thread finishes its queue); the others stay.
    drop(store);
    let bodies = common::count_files(&dir.path().join("blobs"));
    assert_eq!(bodies, 12, "one body per message left");
}
