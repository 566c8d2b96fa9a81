//! The store's on-disk format is versioned: a binary refuses a data folder
//! written by a newer one, and reopening a current one changes nothing.

use postroom_store::schema::SCHEMA_VERSION;
use postroom_store::{Store, StoreError};

#[test]
fn refuses_a_newer_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let conn = rusqlite::Connection::open(dir.path().join("postroom.sqlite")).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    match Store::open(dir.path()) {
        Err(StoreError::TooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a data folder from the future"),
    }
}

#[test]
fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let d = store
        .sqlite()
        .unwrap()
        .add_domain("example.com", "example.com", None)
        .unwrap();
    let a = store
        .sqlite()
        .unwrap()
        .add_account(d.id, "u", "U", Some("{PLAIN}x"), Some(10))
        .unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.sqlite().unwrap().account(d.id, "u").unwrap().unwrap(), a);
    let folders: Vec<String> = store
        .sqlite()
        .unwrap()
        .folders(a.id)
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(folders, ["INBOX", "Sent", "Drafts", "Junk", "Trash", "Archive"]);
}

/// A data folder made by release 1 (schema v1, before IMAP) opens with its
/// mail intact, after a backup of the metadata.
#[test]
fn upgrades_a_v1_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postroom.sqlite");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        postroom_store::schema::migrate_to(&mut conn, &path, 1).unwrap();
        conn.execute_batch(
            "INSERT INTO domains (name, display, created) VALUES ('example.com', 'example.com', 0);
             INSERT INTO accounts (domain_id, local, display, created) VALUES (1, 'u', 'u', 0);
             INSERT INTO folders (account_id, name, uidvalidity, uidnext) VALUES (1, 'INBOX', 1, 2);
             INSERT INTO messages (folder_id, uid, modseq, internal_date, size, pop3_uidl, blob_id, prefix)
                 VALUES (1, 1, 1, 0, 10, '0000000100000001', 'BLOBID0001', x'');",
        )
        .unwrap();
        assert_eq!(postroom_store::schema::version(&conn).unwrap(), 1);
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store
            .sqlite()
            .unwrap()
            .read(postroom_store::schema::version)
            .unwrap(),
        SCHEMA_VERSION
    );
    let inbox = store
        .sqlite()
        .unwrap()
        .find_folder(postroom_store::AccountId(1), "inbox")
        .unwrap()
        .unwrap();
    assert_eq!(
        store.sqlite().unwrap().messages(inbox.id).unwrap()[0].pop3_uidl,
        "0000000100000001"
    );
    assert_eq!(store.sqlite().unwrap().claim_recent(inbox.id).unwrap(), 0);
    assert_eq!(store.sqlite().unwrap().claim_recent(inbox.id).unwrap(), 1);
    let backups: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("backup-v1"))
        .collect();
    assert_eq!(backups.len(), 1);
}

/// The server and the CLI may open a new data folder at the same moment:
/// the migrations must run once, whoever gets there first.
#[test]
fn concurrent_opens_migrate_once() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || Store::open(&p).map(|_| ()).map_err(|e| e.to_string()))
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), Ok(()));
        }
    }
}

/// A data folder made by the release before sending (schema v4) gains
/// forwarding, gateway and delay-warning columns with their defaults.
#[test]
fn upgrades_a_v4_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postroom.sqlite");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        postroom_store::schema::migrate_to(&mut conn, &path, 4).unwrap();
        conn.execute_batch(
            "INSERT INTO domains (name, display, created) VALUES ('example.com', 'example.com', 0);
             INSERT INTO accounts (domain_id, local, display, created) VALUES (1, 'u', 'u', 0);
             INSERT INTO outbound (queue_id, blob_id, prefix, sender, recipient, state, next_attempt, created)
                 VALUES ('Q1', 'B1', x'', 'u@example.com', 'x@example.net', 'deferred', 0, 0);
             INSERT INTO outbound (queue_id, blob_id, prefix, sender, recipient, state, reason, next_attempt, created)
                 VALUES ('Q2', 'B2', x'', 'u@example.com', 'y@example.net', 'deferred', 'expired: 451 later',
                         4611686018427387903, 0);",
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let d = store.sqlite().unwrap().domain("example.com").unwrap().unwrap();
    assert_eq!((d.relay_to, d.relay_verify), (None, false));
    let a = store.sqlite().unwrap().account(d.id, "u").unwrap().unwrap();
    assert!(a.forward_to.is_empty() && a.forward_keep && !a.sent_copy);
    let q = store.sqlite().unwrap().outbound().unwrap();
    assert_eq!((q.len(), q[0].warned), (2, false));
    // The v4 queue parked expired rows far in the future: now due, to bounce.
    assert_eq!(q[1].next_attempt, 0);
    store
        .sqlite()
        .unwrap()
        .set_domain_relay(d.id, Some("mx.customer.example:25"), false)
        .unwrap();
    assert_eq!(
        store
            .sqlite()
            .unwrap()
            .relay_host("example.com")
            .unwrap()
            .as_deref(),
        Some("mx.customer.example:25")
    );
}
