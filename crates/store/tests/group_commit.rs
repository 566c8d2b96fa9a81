//! APPEND and COPY go through the group committer, as deliveries do
//! (issue #9: messages are inserted in one place): they share its
//! transactions and fsyncs, and an APPEND's body is durable before its row
//! commits although `Store::append` no longer fsyncs on its own.

mod common;

use std::sync::Arc;

use common::wait;
use postroom_store::{BlobStore, Delivery, FsBlobStore, LocalDelivery, SimulatedFs, Store, Uid};

#[test]
fn appends_and_copies_are_committed_by_the_group_committer() {
    let (_dir, store, account, inbox) = common::one_mailbox();
    let db = store.sqlite().unwrap().clone();
    assert_eq!(db.commit_batches(), 0);
    let uid = wait(store.append(&inbox, b"Subject: a\r\n\r\nx", 0, "", None)).unwrap();
    assert_eq!(db.commit_batches(), 1, "APPEND is a group commit");
    let archive = store
        .sqlite()
        .unwrap()
        .find_folder(account.id, "Archive")
        .unwrap()
        .unwrap();
    let (_, pairs) = wait(store.meta().copy_messages(inbox.id, &[uid], archive.id)).unwrap();
    assert_eq!(pairs, vec![(uid, Uid(1))]);
    assert_eq!(db.commit_batches(), 2, "COPY is a group commit");
    let id = "0000000001AAAAAAAA".to_string();
    store.blobs.put(&id, b"Subject: d\r\n\r\ny").unwrap();
    wait(store.commit_delivery(Delivery {
        queue_id: id.clone(),
        blob_id: id,
        blob_size: 15,
        received_at: 1_700_000_000,
        local: vec![LocalDelivery {
            account_id: account.id,
            folder: postroom_store::FolderTarget::Inbox,
            prefix: Vec::new(),
            flags: 0,
            keywords: String::new(),
            internal_date: None,
            sent_copy_of: None,
        }],
        outbound: Vec::new(),
        released: Vec::new(),
    }))
    .unwrap();
    assert_eq!(db.commit_batches(), 3);
    // A refused one is answered by the committer too, and leaves no row.
    assert!(wait(
        store
            .meta()
            .copy_messages(inbox.id, &[uid], postroom_store::FolderId(9999))
    )
    .is_err());
    assert_eq!(store.sqlite().unwrap().message_meta(inbox.id).unwrap().len(), 2);
}

#[test]
fn an_acknowledged_append_survives_a_power_cut() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let fs = Arc::new(SimulatedFs::new_at(&data));
    let open = || {
        let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobStore::new(data.join("blobs"), fs.clone()).unwrap());
        Store::open_with_blobs(&data, blobs).unwrap()
    };
    let store = open();
    let d = wait(store.meta().add_domain("example.com", "example.com", None)).unwrap();
    let a = wait(store.meta().add_account(d.id, "u", "u", None, None)).unwrap();
    let inbox = wait(store.meta().find_folder(a.id, "INBOX")).unwrap().unwrap();
    let body = b"Subject: kept\r\n\r\nacknowledged";
    let uid = wait(store.append(&inbox, body, 0, "", None)).unwrap();
    fs.power_cut();
    fs.fail_writes();
    drop(store);
    fs.restore();
    let store = open();
    let row = wait(store.meta().message(inbox.id, uid)).unwrap().unwrap();
    assert_eq!(store.message_bytes(&row).unwrap(), body);
}
