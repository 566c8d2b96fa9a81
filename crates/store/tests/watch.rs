//! A folder's watchers are woken by every change an IMAP session must
//! report — APPEND, delivery, flag change, COPY, expunge, deletion — and
//! only by changes to their own folder.

mod common;
use common::wait;

use postroom_store::folders::FlagOp;
use postroom_store::{Delivery, LocalDelivery, Store, Uid};
use tokio::sync::watch::Receiver;

fn message(i: i64) -> Vec<u8> {
    format!("Subject: message {i}\r\n\r\nbody {i}\r\n").into_bytes()
}

/// Whether `rx` saw a change since the last call, which it marks seen.
fn woken(rx: &mut Receiver<()>) -> bool {
    let changed = rx.has_changed().unwrap();
    rx.mark_unchanged();
    changed
}

#[test]
fn each_change_wakes_the_watchers_of_its_folder_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let domain = store
        .sqlite()
        .unwrap()
        .add_domain("example.com", "example.com", None)
        .unwrap();
    let a = store
        .sqlite()
        .unwrap()
        .add_account(domain.id, "a", "a", None, None)
        .unwrap();
    let b = store
        .sqlite()
        .unwrap()
        .add_account(domain.id, "b", "b", None, None)
        .unwrap();
    let inbox_a = store
        .sqlite()
        .unwrap()
        .find_folder(a.id, "INBOX")
        .unwrap()
        .unwrap();
    let inbox_b = store
        .sqlite()
        .unwrap()
        .find_folder(b.id, "INBOX")
        .unwrap()
        .unwrap();
    let work = store.sqlite().unwrap().create_folder(a.id, "Work", None).unwrap();

    let mut watch_a = store.watch_folder(inbox_a.id);
    let mut watch_a2 = store.watch_folder(inbox_a.id);
    let mut watch_b = store.watch_folder(inbox_b.id);
    let mut watch_work = store.watch_folder(work.id);
    assert!(!woken(&mut watch_a));

    // APPEND.
    wait(store.append(&inbox_a, &message(1), 0, "", None)).unwrap();
    assert!(
        woken(&mut watch_a) && woken(&mut watch_a2),
        "every watcher of the folder"
    );
    assert!(
        !woken(&mut watch_b) && !woken(&mut watch_work),
        "no other folder's"
    );

    // A delivery through the group committer.
    let blob_id = postroom_core::QueueId::generate(1).to_string();
    store.blobs.put(&blob_id, &message(2)).unwrap();
    let delivery = Delivery {
        queue_id: blob_id.clone(),
        blob_id,
        blob_size: message(2).len() as u64,
        received_at: 0,
        local: vec![LocalDelivery {
            account_id: b.id,
            folder: postroom_store::FolderTarget::Inbox,
            prefix: Vec::new(),
            flags: 0,
            keywords: String::new(),
            internal_date: None,
            sent_copy_of: None,
        }],
        outbound: vec![],
        released: Vec::new(),
    };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(store.commit_delivery(delivery)).unwrap();
    assert!(woken(&mut watch_b));
    assert!(!woken(&mut watch_a));

    // A flag change.
    store
        .sqlite()
        .unwrap()
        .store_flags(inbox_a.id, &[Uid(1)], FlagOp::Add, 1, &[], None)
        .unwrap();
    assert!(woken(&mut watch_a));

    // COPY wakes the target.
    wait(store.meta().copy_messages(inbox_a.id, &[Uid(1)], work.id)).unwrap();
    assert!(woken(&mut watch_work));

    // Expunge.
    wait(store.expunge(inbox_a.id, &[Uid(1)])).unwrap();
    assert!(woken(&mut watch_a));
    assert!(!woken(&mut watch_b));

    // Deleting the folder: its sessions must learn it is gone.
    wait(store.delete_folder(&work)).unwrap();
    assert!(woken(&mut watch_work));
    assert!(!woken(&mut watch_a));

    // A failed write publishes nothing it did not change.
    assert!(store
        .sqlite()
        .unwrap()
        .create_folder(a.id, "INBOX", None)
        .is_err());
    assert!(!woken(&mut watch_a) && !woken(&mut watch_b));
}

#[test]
fn changes_made_by_another_process_are_found_by_looking() {
    let dir = tempfile::tempdir().unwrap();
    // Two opens of one data folder: two processes as far as hooks go.
    let server = Store::open(dir.path()).unwrap();
    let cli = Store::open(dir.path()).unwrap();
    let domain = cli
        .sqlite()
        .unwrap()
        .add_domain("example.com", "example.com", None)
        .unwrap();
    let a = cli
        .sqlite()
        .unwrap()
        .add_account(domain.id, "a", "a", None, None)
        .unwrap();
    let b = cli
        .sqlite()
        .unwrap()
        .add_account(domain.id, "b", "b", None, None)
        .unwrap();
    let inbox_a = cli.sqlite().unwrap().find_folder(a.id, "INBOX").unwrap().unwrap();
    let inbox_b = cli.sqlite().unwrap().find_folder(b.id, "INBOX").unwrap().unwrap();
    let work = cli.sqlite().unwrap().create_folder(a.id, "Work", None).unwrap();

    let mut state = postroom_store::ForeignChanges::default();
    let mut watch_a = server.watch_folder(inbox_a.id);
    let mut watch_b = server.watch_folder(inbox_b.id);
    let mut watch_work = server.watch_folder(work.id);
    // The first look wakes every newly watched folder once.
    assert_eq!(
        server
            .sqlite()
            .unwrap()
            .look_for_foreign_changes(&mut state)
            .unwrap(),
        3
    );
    assert!(woken(&mut watch_a) && woken(&mut watch_b) && woken(&mut watch_work));
    assert_eq!(
        server
            .sqlite()
            .unwrap()
            .look_for_foreign_changes(&mut state)
            .unwrap(),
        0
    );

    wait(cli.append(&inbox_a, &message(1), 0, "", None)).unwrap();
    assert!(!woken(&mut watch_a), "no hook crosses processes");
    assert_eq!(
        server
            .sqlite()
            .unwrap()
            .look_for_foreign_changes(&mut state)
            .unwrap(),
        1
    );
    assert!(woken(&mut watch_a));
    assert!(!woken(&mut watch_b) && !woken(&mut watch_work));

    cli.sqlite()
        .unwrap()
        .store_flags(inbox_a.id, &[Uid(1)], FlagOp::Add, 1, &[], None)
        .unwrap();
    server
        .sqlite()
        .unwrap()
        .look_for_foreign_changes(&mut state)
        .unwrap();
    assert!(woken(&mut watch_a));

    wait(cli.delete_folder(&work)).unwrap();
    server
        .sqlite()
        .unwrap()
        .look_for_foreign_changes(&mut state)
        .unwrap();
    assert!(woken(&mut watch_work), "a deleted folder wakes its sessions");

    // Folders nobody waits on any more are not looked at.
    drop(watch_b);
    wait(cli.append(&inbox_b, &message(2), 0, "", None)).unwrap();
    assert_eq!(
        server
            .sqlite()
            .unwrap()
            .look_for_foreign_changes(&mut state)
            .unwrap(),
        1,
        "only Work, still gone"
    );
}
