//! Bodies that arrive in pieces (IMAP APPEND): written to the spool
//! (`blobs/spool/`, as SMTP DATA) as they come, stored under a fresh blob
//! id when complete, deleted when abandoned, and cleared at start after a
//! crash.

mod common;
use common::wait;

use postroom_store::Store;

fn uploads(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("blobs/spool")).map_or(0, |d| d.count())
}

#[test]
fn uploads_are_stored_dropped_and_cleared() {
    let (dir, store, _a, inbox) = common::one_mailbox();
    let body: Vec<u8> = b"Subject: up\r\n\r\n"
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'x', 200_000))
        .collect();

    let mut w = store.begin_upload().unwrap();
    for piece in body.chunks(3000) {
        w.write(piece).unwrap();
    }
    assert_eq!(w.len() as usize, body.len());
    assert!(w.head().starts_with(b"Subject: up"));
    assert_eq!(uploads(dir.path()), 1);
    let uid = wait(store.append_upload(&inbox, w, 0, "", None)).unwrap();
    assert_eq!(uploads(dir.path()), 0);
    let row = store.sqlite().unwrap().message(inbox.id, uid).unwrap().unwrap();
    assert_eq!(store.message_bytes(&row).unwrap(), body);

    // Abandoned (the connection went away): nothing left.
    let mut w = store.begin_upload().unwrap();
    w.write(b"partial").unwrap();
    drop(w);
    assert_eq!(uploads(dir.path()), 0);

    // Cut short by a crash (no drop): cleared when the server starts. (A
    // body past SPOOL_IN_MEMORY: a smaller one never had a file.)
    let mut w = store.begin_upload().unwrap();
    w.write(&body).unwrap();
    std::mem::forget(w);
    assert_eq!(uploads(dir.path()), 1);
    assert_eq!(store.blobs.clear_spools().unwrap(), 1);
    assert_eq!(uploads(dir.path()), 0);
}

/// At start the server clears the spool, but not what another running
/// process (`postroom sendmail`) is writing there.
#[test]
fn clearing_the_spool_spares_other_live_processes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let spool = dir.path().join("blobs/spool");
    std::fs::create_dir_all(&spool).unwrap();
    // Process 1 always runs; 4,000,000,000 never does (above pid_max).
    std::fs::write(spool.join("1-0"), b"in use").unwrap();
    std::fs::write(spool.join("4000000000-0"), b"left by a crash").unwrap();
    assert_eq!(store.blobs.clear_spools().unwrap(), 1);
    assert!(spool.join("1-0").exists());
    assert!(!spool.join("4000000000-0").exists());
}
