//! The bytes an account stores are a running total (schema version 6),
//! kept right by every path that adds or removes a message, and filled in
//! when an older data folder is upgraded.

mod common;
use common::wait;

use postroom_store::{AccountId, Store, Uid};

/// What the total must equal: the sum over the account's messages.
fn summed(store: &Store, account_id: AccountId) -> i64 {
    store
        .sqlite()
        .unwrap()
        .read(|c| {
            Ok(c.query_row(
                "SELECT COALESCE(SUM(m.size), 0) FROM messages m JOIN folders f ON m.folder_id = f.id
                 WHERE f.account_id = ?1",
                [account_id],
                |r| r.get(0),
            )?)
        })
        .unwrap()
}

#[test]
fn usage_follows_append_copy_expunge_and_folder_deletion() {
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
        .add_account(d.id, "u", "u", None, None)
        .unwrap();
    let b = store
        .sqlite()
        .unwrap()
        .add_account(d.id, "v", "v", None, None)
        .unwrap();
    let inbox = store
        .sqlite()
        .unwrap()
        .find_folder(a.id, "INBOX")
        .unwrap()
        .unwrap();
    let other = store
        .sqlite()
        .unwrap()
        .find_folder(b.id, "INBOX")
        .unwrap()
        .unwrap();
    assert_eq!(store.sqlite().unwrap().usage(a.id).unwrap(), 0);

    for i in 0..10 {
        let body = format!("Subject: {i}\r\n\r\n{}\r\n", "x".repeat(i * 100));
        wait(store.append(&inbox, body.as_bytes(), 0, "", None)).unwrap();
    }
    wait(store.append(&other, b"Subject: b\r\n\r\nb\r\n", 0, "", None)).unwrap();
    let after_append = store.sqlite().unwrap().usage(a.id).unwrap();
    assert!(after_append > 4500);
    assert_eq!(after_append, summed(&store, a.id));
    assert_eq!(store.sqlite().unwrap().usage(b.id).unwrap(), summed(&store, b.id));

    let archive = store
        .sqlite()
        .unwrap()
        .find_folder(a.id, "Archive")
        .unwrap()
        .unwrap();
    wait(
        store
            .meta()
            .copy_messages(inbox.id, &[1, 2, 3].map(Uid), archive.id),
    )
    .unwrap();
    assert_eq!(store.sqlite().unwrap().usage(a.id).unwrap(), summed(&store, a.id));
    assert!(store.sqlite().unwrap().usage(a.id).unwrap() > after_append);

    wait(store.expunge(inbox.id, &[1, 5, 6].map(Uid))).unwrap();
    assert_eq!(store.sqlite().unwrap().usage(a.id).unwrap(), summed(&store, a.id));

    let archive = store
        .sqlite()
        .unwrap()
        .find_folder(a.id, "Archive")
        .unwrap()
        .unwrap();
    wait(store.delete_folder(&archive)).unwrap();
    assert_eq!(store.sqlite().unwrap().usage(a.id).unwrap(), summed(&store, a.id));
    // The other account was never touched.
    assert_eq!(store.sqlite().unwrap().usage(b.id).unwrap(), summed(&store, b.id));
    assert!(store.sqlite().unwrap().usage(b.id).unwrap() > 0);

    // A reopened store reads the same total.
    let total = store.sqlite().unwrap().usage(a.id).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.sqlite().unwrap().usage(a.id).unwrap(), total);
}

/// A data folder of schema version 5 gets its totals computed once.
#[test]
fn upgrade_from_v5_fills_in_the_totals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postroom.sqlite");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        postroom_store::schema::migrate_to(&mut conn, &path, 5).unwrap();
        conn.execute_batch(
            "INSERT INTO domains (name, display, created) VALUES ('example.com', 'example.com', 0);
             INSERT INTO accounts (domain_id, local, display, created) VALUES (1, 'u', 'u', 0);
             INSERT INTO accounts (domain_id, local, display, created) VALUES (1, 'empty', 'empty', 0);
             INSERT INTO folders (account_id, name, uidvalidity, uidnext) VALUES (1, 'INBOX', 1, 3);
             INSERT INTO folders (account_id, name, uidvalidity, uidnext) VALUES (1, 'Sent', 2, 2);
             INSERT INTO messages (folder_id, uid, modseq, internal_date, size, pop3_uidl, blob_id, prefix)
                 VALUES (1, 1, 1, 0, 100, 'a', 'B1', x''), (1, 2, 2, 0, 250, 'b', 'B2', x''),
                        (2, 1, 1, 0, 7, 'c', 'B3', x'');",
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.sqlite().unwrap().usage(AccountId(1)).unwrap(), 357);
    assert_eq!(store.sqlite().unwrap().usage(AccountId(2)).unwrap(), 0);
    // An account that does not exist stores nothing.
    assert_eq!(store.sqlite().unwrap().usage(AccountId(999)).unwrap(), 0);
}
