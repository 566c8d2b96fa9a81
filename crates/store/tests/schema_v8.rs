//! Schema version 8 (held deliveries): a v7 data folder's held rows get
//! the reason `other` and no mailbox (their release resolves the
//! recipient again); new held rows keep a typed reason and, for a local
//! copy, the mailbox and folder role.

use postroom_store::{HoldReason, Store};

#[tokio::test]
async fn upgrades_a_v7_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postroom.sqlite");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        postroom_store::schema::migrate_to(&mut conn, &path, 7).unwrap();
        conn.execute_batch(
            "INSERT INTO outbound (queue_id, blob_id, prefix, sender, recipient, state, reason, next_attempt, created)
                 VALUES ('q', 'b', x'', 's@x.example', 'r@y.example', 'held', 'quarantine: virus', 0, 0),
                        ('q', 'b', x'', 's@x.example', 'z@y.example', 'deferred', '451 later', 0, 0);",
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let rows = store.meta().outbound().await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].state.as_str(), rows[0].reason.as_str()),
        ("held", "quarantine: virus")
    );
    assert_eq!(
        (rows[0].hold_reason, rows[0].held_for.as_ref()),
        (Some(HoldReason::Other), None)
    );
    assert_eq!(
        (rows[1].hold_reason, rows[1].reason.as_str()),
        (None, "451 later")
    );
    // Queued again (not local): the reason goes with the hold.
    assert_eq!(
        store.meta().set_outbound_state("q", "queued", 1).await.unwrap(),
        2
    );
    assert!(store
        .meta()
        .outbound()
        .await
        .unwrap()
        .iter()
        .all(|r| r.hold_reason.is_none()));
}
