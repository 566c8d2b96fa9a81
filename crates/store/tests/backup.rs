//! Online backup and restore (backup.rs): a backup restores every message
//! with its bytes; no body is deleted while a backup runs; a damaged or
//! interrupted backup is refused.

mod common;
use common::wait;

use std::time::Duration;

use postroom_store::backup::{self, BackupHold, MANIFEST_FILE};
use postroom_store::Store;

fn no_progress() -> impl FnMut(&str, u64, u64) {
    |_, _, _| {}
}

#[test]
fn a_backup_restores_every_message_with_its_bytes() {
    let (dir, store, _a, inbox) = common::one_mailbox();
    let bodies: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("Subject: m{i}\r\n\r\nbody {i}\r\n").into_bytes())
        .collect();
    for b in &bodies {
        wait(store.append(&inbox, b, 0, "", None)).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("backup");
    let m = backup::create(dir.path(), &dir.path().join("blobs"), &target, &mut no_progress()).unwrap();
    assert_eq!((m.messages, m.blobs.len(), m.missing_blobs), (Some(5), 5, 0));
    assert!(target.join(MANIFEST_FILE).is_file());

    let restored = out.path().join("data");
    let r = backup::restore(
        &target,
        &restored,
        &restored.join("blobs"),
        &[],
        None,
        &mut no_progress(),
    )
    .unwrap();
    assert_eq!(r, m);
    let again = Store::open(&restored).unwrap();
    let db = again.sqlite().unwrap();
    let inbox2 = db.find_folder(inbox.account_id, "INBOX").unwrap().unwrap();
    let got: Vec<Vec<u8>> = db
        .messages(inbox2.id)
        .unwrap()
        .iter()
        .map(|row| again.message_bytes(row).unwrap())
        .collect();
    assert_eq!(got.len(), 5);
    for b in &bodies {
        assert!(
            got.iter().any(|g| g.ends_with(b)),
            "restored: {}",
            String::from_utf8_lossy(b)
        );
    }
}

#[test]
fn no_body_is_deleted_while_a_backup_runs() {
    let (dir, store, _a, inbox) = common::one_mailbox();
    let uid = wait(store.append(&inbox, b"Subject: x\r\n\r\nx\r\n", 0, "", None)).unwrap();
    let blob = store.sqlite().unwrap().messages(inbox.id).unwrap()[0]
        .blob_id
        .clone();
    let hold = BackupHold::take(dir.path()).unwrap();
    wait(store.expunge(inbox.id, &[uid])).unwrap();
    // The purge thread would delete it now; the backup holds the lock.
    store.finish_pending_deletions();
    assert!(store.blobs.get(&blob).is_ok(), "kept while the backup runs");
    let report = wait(store.sweep_unreferenced_bodies(Duration::ZERO)).unwrap();
    assert_eq!(report.deleted, 0);
    assert!(store.blobs.get(&blob).is_ok(), "the sweep waits too");
    drop(hold);
    let report = wait(store.sweep_unreferenced_bodies(Duration::ZERO)).unwrap();
    assert_eq!(report.deleted, 1, "deleted once the backup is over");
}

#[test]
fn a_damaged_or_interrupted_backup_is_refused_and_leaves_nothing() {
    let (dir, store, _a, inbox) = common::one_mailbox();
    wait(store.append(&inbox, b"Subject: x\r\n\r\nx\r\n", 0, "", None)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("backup");
    let m = backup::create(dir.path(), &dir.path().join("blobs"), &target, &mut no_progress()).unwrap();
    // A second backup into the same folder: refused.
    let e = backup::create(dir.path(), &dir.path().join("blobs"), &target, &mut no_progress()).unwrap_err();
    assert!(e.to_string().contains("is not empty"), "{e}");

    // One flipped byte in a body.
    let id = m.blobs.keys().next().unwrap();
    let path = target.join("blobs").join(&id[..6]).join(id);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let data = out.path().join("data");
    let e = backup::restore(&target, &data, &data.join("blobs"), &[], None, &mut no_progress()).unwrap_err();
    assert!(e.to_string().contains("damaged"), "{e}");
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        0,
        "nothing left behind"
    );

    // No manifest: an interrupted backup.
    std::fs::remove_file(target.join(MANIFEST_FILE)).unwrap();
    let e = backup::restore(&target, &data, &data.join("blobs"), &[], None, &mut no_progress()).unwrap_err();
    assert!(e.to_string().contains("not a complete backup"), "{e}");
}

#[test]
fn the_purge_thread_deletes_once_the_backup_is_over() {
    let (dir, store, _a, inbox) = common::one_mailbox();
    let uid = wait(store.append(&inbox, b"Subject: x\r\n\r\nx\r\n", 0, "", None)).unwrap();
    let blob = store.sqlite().unwrap().messages(inbox.id).unwrap()[0]
        .blob_id
        .clone();
    let hold = BackupHold::take(dir.path()).unwrap();
    wait(store.expunge(inbox.id, &[uid])).unwrap();
    // Past the purge thread's 2 s delay: it found the backup and kept it.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(store.blobs.get(&blob).is_ok(), "kept while the backup runs");
    drop(hold);
    // It looks again every 2 s; a generous bound for a loaded machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while store.blobs.get(&blob).is_ok() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(store.blobs.get(&blob).is_err(), "deleted after the backup");
}
