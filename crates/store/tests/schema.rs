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
    let d = store.db.add_domain("example.com", "example.com", None).unwrap();
    let a = store
        .db
        .add_account(d.id, "u", "U", Some("{PLAIN}x"), Some(10))
        .unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.db.account(d.id, "u").unwrap().unwrap(), a);
    let folders: Vec<String> = store
        .db
        .folders(a.id)
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(folders, ["INBOX", "Sent", "Drafts", "Junk", "Trash", "Archive"]);
}
