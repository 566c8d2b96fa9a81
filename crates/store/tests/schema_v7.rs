//! Schema version 7 (the admin service): a v6 data folder gains the
//! directory version (kept by triggers), last login, pending removal and
//! the audit table.

use postroom_store::{AuditEntry, AuditQuery, Store};

#[tokio::test]
async fn upgrades_a_v6_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postroom.sqlite");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        postroom_store::schema::migrate_to(&mut conn, &path, 6).unwrap();
        conn.execute_batch(
            "INSERT INTO domains (name, display, created) VALUES ('example.com', 'example.com', 0);
             INSERT INTO accounts (domain_id, local, display, created) VALUES (1, 'u', 'u', 0);
             INSERT INTO aliases (domain_id, local, display, targets, created)
                 VALUES (1, 'team', 'team', 'u@example.com', 0);",
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let meta = store.meta();
    let d = meta.domain("example.com").await.unwrap().unwrap();
    let a = meta.account(d.id, "u").await.unwrap().unwrap();
    assert_eq!((a.last_login, a.delete_after), (None, None));
    assert_eq!(meta.aliases(None).await.unwrap().len(), 1);

    // Every change to where mail goes moves the version, whichever call
    // makes it; logins do not.
    let v0 = meta.directory_version().await.unwrap();
    meta.add_alias_targets(d.id, "team", "team", &["x@example.net".into()])
        .await
        .unwrap();
    let v1 = meta.directory_version().await.unwrap();
    assert!(v1 > v0);
    meta.set_forwarding(a.id, &["x@example.net".into()], true)
        .await
        .unwrap();
    let v2 = meta.directory_version().await.unwrap();
    assert!(v2 > v1);
    meta.remove_alias(d.id, "team").await.unwrap();
    let v3 = meta.directory_version().await.unwrap();
    assert!(v3 > v2);
    meta.record_login(a.id, 1_800_000_000).await.unwrap();
    assert_eq!(meta.directory_version().await.unwrap(), v3);
    assert_eq!(
        meta.account_by_id(a.id).await.unwrap().unwrap().last_login,
        Some(1_800_000_000)
    );

    meta.record_audit(&AuditEntry {
        actor: "cli:root".into(),
        origin: "cli".into(),
        operation: "user.add".into(),
        object: "u@example.com".into(),
        domain: "example.com".into(),
        detail: String::new(),
    })
    .await
    .unwrap();
    let rows = meta
        .audit_log(&AuditQuery {
            domain: Some("example.com".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].entry.actor, "cli:root");
}
