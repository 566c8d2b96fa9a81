//! Schema version 10: a folder's changes since a MODSEQ are read by index
//! (`messages_modseq`, `expunged_modseq`), so keeping a 100,000-message
//! folder's snapshot current costs what changed. A v9 data folder (the
//! console's version 9 came first, on main) gets the indexes and keeps its
//! rows.

use postroom_store::{Store, Uid};

#[tokio::test]
async fn upgrades_a_v9_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postroom.sqlite");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        postroom_store::schema::migrate_to(&mut conn, &path, 9).unwrap();
        // Version 9 is the console's: its tables, not yet the indexes.
        let (tables, indexes): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('provider_admins', 'api_tokens')),
                        (SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN ('messages_modseq', 'expunged_modseq'))",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((tables, indexes), (2, 0));
        conn.execute_batch(
            "INSERT INTO domains (id, name, display, created) VALUES (1, 'example.com', 'example.com', 0);
             INSERT INTO accounts (id, domain_id, local, display, password_hash, created)
                 VALUES (1, 1, 'u', 'u', 'x', 0);
             INSERT INTO folders (id, account_id, name, uidvalidity, uidnext, highestmodseq)
                 VALUES (1, 1, 'INBOX', 1, 3, 3);
             INSERT INTO messages (folder_id, uid, modseq, internal_date, size, pop3_uidl, blob_id, prefix)
                 VALUES (1, 1, 1, 0, 10, 'a', 'b1', x''), (1, 2, 3, 0, 10, 'b', 'b2', x'');",
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let changes = store
        .meta()
        .folder_changes(postroom_store::FolderId(1), postroom_store::ModSeq(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        changes.changed.iter().map(|m| m.uid).collect::<Vec<_>>(),
        [Uid(2)]
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let indexes: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN ('messages_modseq', 'expunged_modseq')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 2);
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, postroom_store::schema::SCHEMA_VERSION);
}
