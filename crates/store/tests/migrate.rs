//! `migrate::copy_sqlite_to`: an embedded installation copied into
//! PostgreSQL keeps what clients have seen (UIDVALIDITY, UIDs, MODSEQs,
//! UIDLs, tombstones, the queue), resumes after an interruption, and is
//! checked at the end. Needs `POSTROOM_TEST_POSTGRES` (a URL; see
//! `scripts/pg-test-cluster`); without it the tests say so and pass.

use postroom_store::folders::FlagOp;
use postroom_store::migrate::copy_sqlite_to;
use postroom_store::{
    AccountId, Delivery, LocalDelivery, Metadata, ModSeq, OutboundItem, Postgres, Store, StoreError, Uid,
};

fn pg_url() -> Option<String> {
    std::env::var("POSTROOM_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// A fresh database; its URL.
async fn fresh_database(test: &str) -> Option<(String, String)> {
    let admin = pg_url()?;
    let name = format!("m_{test}_{}", std::process::id());
    let c = connect(&admin).await;
    // Two statements: neither may run in a transaction block.
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
    c.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let base = admin.split('?').next().unwrap();
    let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
    Some((admin, url))
}

async fn drop_database(admin: &str, url: &str) {
    let name = url.rsplit('/').next().unwrap();
    let _ = connect(admin)
        .await
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}

fn new_id() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    postroom_core::QueueId::generate(micros).to_string()
}

fn local(account: AccountId, folder: &str, sent_copy_of: Option<&str>) -> LocalDelivery {
    LocalDelivery {
        account_id: account,
        folder: postroom_store::FolderTarget::Named(folder.into()),
        prefix: b"Delivered-To: x\r\n".to_vec(),
        flags: 0,
        keywords: String::new(),
        internal_date: None,
        sent_copy_of: sent_copy_of.map(String::from),
    }
}

async fn deliver(store: &Store, body: &[u8], local: Vec<LocalDelivery>, remote: &[&str]) {
    let id = new_id();
    store.blobs.put(&id, body).unwrap();
    let d = Delivery {
        queue_id: id.clone(),
        blob_id: id,
        blob_size: body.len() as u64,
        received_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        local,
        outbound: remote
            .iter()
            .map(|r| OutboundItem {
                sender: "kent@example.com".into(),
                recipient: r.to_string(),
                prefix: Vec::new(),
                held: None,
            })
            .collect(),
        released: Vec::new(),
    };
    store.commit_delivery(d).await.unwrap();
}

/// An embedded installation with a bit of everything.
async fn populate(store: &Store) -> AccountId {
    let m = store.meta();
    let d = m.add_domain("example.com", "Example.com", None).await.unwrap();
    m.add_domain("example.net", "example.net", Some("example.com"))
        .await
        .unwrap();
    let gw = m
        .add_domain("customer.example", "customer.example", None)
        .await
        .unwrap();
    m.set_domain_relay(gw.id, Some("mx.customer.example:25"), true)
        .await
        .unwrap();
    m.add_relay_recipients(gw.id, &["sales".into()]).await.unwrap();
    m.remember_callout("x@customer.example", true, "250 ok")
        .await
        .unwrap();
    let kent = m
        .add_account(d.id, "kent", "Kent", Some("hash"), Some(1 << 30))
        .await
        .unwrap();
    let amy = m.add_account(d.id, "amy", "amy", None, None).await.unwrap();
    m.set_forwarding(amy.id, &["far@elsewhere.example".into()], true)
        .await
        .unwrap();
    m.add_alias_targets(
        d.id,
        "team",
        "Team",
        &["kent@example.com".into(), "amy@example.com".into()],
    )
    .await
    .unwrap();
    m.add_dkim_key(d.id, "s1", "ed25519-sha256", b"\x00\x01secret", "pub")
        .await
        .unwrap();
    m.set_setting("srs-secret", "abc").await.unwrap();
    // A folder made and deleted leaves a gap in the ids: UIDVALIDITYs
    // must not close it up.
    let gone = m.create_folder(kent.id, "Gone", None).await.unwrap();
    store.delete_folder(&gone).await.unwrap();
    let work = m.create_folder(kent.id, "Work", None).await.unwrap();
    for i in 0..25 {
        deliver(
            store,
            format!("Subject: {i}\r\n\r\nbody\r\n").as_bytes(),
            vec![local(kent.id, "INBOX", None)],
            &[],
        )
        .await;
    }
    deliver(
        store,
        b"Subject: both\r\n\r\n",
        vec![local(kent.id, "INBOX", None), local(amy.id, "INBOX", None)],
        &["far@elsewhere.example", "other@elsewhere.example"],
    )
    .await;
    deliver(
        store,
        b"Message-ID: <s@example.com>\r\n\r\n",
        vec![local(kent.id, "Sent", Some("<s@example.com>"))],
        &[],
    )
    .await;
    // A quarantined copy held for kent's Junk: its reason and mailbox
    // (schema version 8) go across too.
    let held = new_id();
    store.blobs.put(&held, b"Subject: held\r\n\r\n").unwrap();
    store
        .commit_delivery(Delivery {
            queue_id: held.clone(),
            blob_id: held,
            blob_size: 17,
            received_at: 1_700_000_000,
            local: vec![],
            outbound: vec![OutboundItem {
                sender: "x@elsewhere.example".into(),
                recipient: "kent@example.com".into(),
                prefix: b"Delivered-To: kent@example.com\r\n".to_vec(),
                held: Some(postroom_store::Hold {
                    reason: postroom_store::HoldReason::Quarantine,
                    detail: "quarantine: test".into(),
                    local: Some(postroom_store::HeldLocal {
                        account_id: kent.id,
                        folder: postroom_store::FolderTarget::Role(postroom_store::SpecialUse::Junk),
                    }),
                }),
            }],
            released: Vec::new(),
        })
        .await
        .unwrap();
    let inbox = m.find_folder(kent.id, "INBOX").await.unwrap().unwrap();
    m.store_flags(
        inbox.id,
        &[Uid(2), Uid(3)],
        FlagOp::Add,
        1,
        &["$Label1".into()],
        None,
    )
    .await
    .unwrap();
    m.copy_messages(inbox.id, &[Uid(4), Uid(5)], work.id)
        .await
        .unwrap();
    store.expunge(inbox.id, &[Uid(1), Uid(5), Uid(6)]).await.unwrap();
    let work_row = m.folder_by_id(work.id).await.unwrap().unwrap();
    store
        .append(
            &work_row,
            b"Subject: appended\r\n\r\n",
            4,
            "",
            Some(1_600_000_000),
        )
        .await
        .unwrap();
    m.claim_recent(inbox.id).await.unwrap();
    let q = m.outbound().await.unwrap();
    m.defer_outbound(q[0].id, "451 try later", 4_000_000_000)
        .await
        .unwrap();
    kent.id
}

/// What a client can see of a mailbox, on either back end.
async fn mailbox_view(m: &dyn Metadata, account: AccountId) -> Vec<String> {
    let mut out = Vec::new();
    for f in m.folders(account).await.unwrap() {
        out.push(format!("{f:?}"));
        for meta in m.message_meta(f.id).await.unwrap() {
            out.push(format!("{meta:?}"));
        }
        out.push(format!("{:?}", m.maildrop(f.id).await.unwrap()));
        out.push(format!("{:?}", m.expunged_since(f.id, ModSeq(0)).await.unwrap()));
        for msg in m.messages(f.id).await.unwrap() {
            out.push(format!("{} {} {:?}", msg.blob_id, msg.pop3_uidl, msg.queue_id));
        }
    }
    out.push(format!("usage {}", m.usage(account).await.unwrap()));
    out.push(format!("{:?}", m.folder_list(account).await.unwrap()));
    out
}

async fn everything(m: &dyn Metadata, account: AccountId) -> Vec<String> {
    let mut out = mailbox_view(m, account).await;
    out.push(format!("{:?}", m.domains().await.unwrap()));
    out.push(format!("{:?}", m.accounts(None).await.unwrap()));
    out.push(format!("{:?}", m.aliases(None).await.unwrap()));
    out.push(format!("{:?}", m.outbound().await.unwrap()));
    let d = m.domain("example.com").await.unwrap().unwrap();
    out.push(format!(
        "{:?}",
        m.dkim_keys(d.id)
            .await
            .unwrap()
            .iter()
            .map(|k| (&k.selector, k.private_key.expose()))
            .collect::<Vec<_>>()
    ));
    let gw = m.domain("customer.example").await.unwrap().unwrap();
    out.push(format!("{:?}", m.relay_recipients(gw.id).await.unwrap()));
    out.push(format!(
        "{:?}",
        m.cached_callout("x@customer.example", 3600).await.unwrap()
    ));
    out.push(format!("{:?}", m.setting("srs-secret").await.unwrap()));
    let sent = m.find_folder(account, "Sent").await.unwrap().unwrap();
    out.push(format!(
        "{:?}",
        m.recent_sent_copy(sent.id, "<s@example.com>").await.unwrap()
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_installation_moves_to_postgres_unchanged() {
    let Some((admin, url)) = fresh_database("whole").await else {
        eprintln!("POSTROOM_TEST_POSTGRES is not set: PostgreSQL not tested");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sqlite = Store::open(&data).unwrap();
    let kent = populate(&sqlite).await;
    let before = everything(sqlite.meta(), kent).await;

    let pg_store = Store::open_postgres(&url, None, &data).await.unwrap();
    let pg = Postgres::connect(&url, None, sqlite.blobs.clone()).await.unwrap();
    let mut seen = Vec::new();
    let report = copy_sqlite_to(sqlite.sqlite().unwrap(), &pg, |t, done, total| {
        seen.push((t.to_string(), done, total))
    })
    .await
    .unwrap();
    assert!(seen.contains(&("messages".to_string(), 28, 28)), "{seen:?}");
    assert_eq!(report.usage_corrected, Vec::<i64>::new());
    let messages = report.tables.iter().find(|t| t.0 == "messages").unwrap().1;
    assert_eq!(messages, 28);
    assert_eq!(report.copied, report.tables.iter().map(|t| t.1).sum::<u64>());

    let after = everything(pg_store.meta(), kent).await;
    assert_eq!(before, after);
    // The bodies are the same files.
    let inbox = pg_store.meta().find_folder(kent, "INBOX").await.unwrap().unwrap();
    let row = pg_store.meta().message(inbox.id, Uid(2)).await.unwrap().unwrap();
    assert_eq!(
        pg_store.message_bytes(&row).unwrap(),
        b"Delivered-To: x\r\nSubject: 1\r\n\r\nbody\r\n"
    );

    // New rows continue after the copied ids: a new folder's UIDVALIDITY
    // is new, the next message takes the next UID.
    let max_validity = pg_store
        .meta()
        .folders(kent)
        .await
        .unwrap()
        .iter()
        .map(|f| f.uidvalidity)
        .max()
        .unwrap();
    let new = pg_store.meta().create_folder(kent, "New", None).await.unwrap();
    assert!(new.uidvalidity > max_validity);
    let uid = pg_store
        .append(&inbox, b"Subject: after\r\n\r\n", 0, "", None)
        .await
        .unwrap();
    assert_eq!(uid.as_i64(), inbox.uidnext);
    let d = pg_store
        .meta()
        .add_domain("new.example", "new.example", None)
        .await
        .unwrap();
    assert!(pg_store
        .meta()
        .domains()
        .await
        .unwrap()
        .iter()
        .all(|o| o.id <= d.id));

    // A second run finds the target in use.
    match copy_sqlite_to(sqlite.sqlite().unwrap(), &pg, |_, _, _| {}).await {
        Err(StoreError::Invalid(s)) => assert!(s.contains("already holds data"), "{s}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop((pg, pg_store));
    drop_database(&admin, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_migration_resumes() {
    let Some((admin, url)) = fresh_database("resume").await else {
        eprintln!("POSTROOM_TEST_POSTGRES is not set: PostgreSQL not tested");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sqlite = Store::open(&data).unwrap();
    let kent = populate(&sqlite).await;
    let before = everything(sqlite.meta(), kent).await;
    let pg = Postgres::connect(&url, None, sqlite.blobs.clone()).await.unwrap();
    let full = copy_sqlite_to(sqlite.sqlite().unwrap(), &pg, |_, _, _| {})
        .await
        .unwrap();

    // Undo the end of the copy as an interruption would have left it: the
    // last messages, the tables after them, and the mark of a run in
    // progress.
    let c = connect(&url).await;
    c.batch_execute(
        "INSERT INTO settings (key, value) VALUES ('migration:from-sqlite', 'in progress');
         DELETE FROM messages WHERE id > (SELECT MAX(id) - 7 FROM messages);
         DELETE FROM expunged; DELETE FROM outbound; DELETE FROM dkim_keys; DELETE FROM relay_recipients;
         DELETE FROM callout_cache; DELETE FROM sent_copies; DELETE FROM settings WHERE key = 'srs-secret';",
    )
    .await
    .unwrap();
    let resumed = copy_sqlite_to(sqlite.sqlite().unwrap(), &pg, |_, _, _| {})
        .await
        .unwrap();
    assert_eq!(resumed.tables, full.tables);
    // Only what was missing was copied again.
    assert!(resumed.copied < full.copied, "{resumed:?} {full:?}");
    let pg_store = Store::open_postgres(&url, None, &data).await.unwrap();
    assert_eq!(everything(pg_store.meta(), kent).await, before);
    assert_eq!(
        pg_store.meta().setting("migration:from-sqlite").await.unwrap(),
        None
    );
    drop((pg, pg_store));
    drop_database(&admin, &url).await;
}

/// The upgrade path of issue #9: a data folder of the last release
/// (schema 6) with mail in it opens with this binary (upgraded to 7) and
/// then moves to PostgreSQL with nothing lost. Without
/// `POSTROOM_TEST_POSTGRES` only the first half runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_folder_of_the_last_release_upgrades_then_moves_to_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let path = data.join("postroom.sqlite");
    let bodies = [
        (new_id(), "Subject: one\r\n\r\n1\r\n"),
        (new_id(), "Subject: two\r\n\r\n2\r\n"),
        (new_id(), "Subject: four\r\n\r\n4\r\n"),
    ];
    let [b1, b2, b4] = [0, 1, 2].map(|i| bodies[i].0.clone());
    let [s1, s2, s4] = [0, 1, 2].map(|i| bodies[i].1.len());
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        postroom_store::schema::migrate_to(&mut conn, &path, 6).unwrap();
        // As release 6 left it: UIDs 1, 2, 4 (3 expunged, its tombstone
        // kept for QRESYNC), flags and a keyword, a POP3 UIDL per message,
        // an outbound item waiting to be retried.
        conn.execute_batch(&format!(
            "INSERT INTO domains (name, display, created) VALUES ('example.com', 'example.com', 100);
             INSERT INTO accounts (domain_id, local, display, password_hash, created)
                 VALUES (1, 'u', 'U', '{{PLAIN}}pw', 100);
             INSERT INTO aliases (domain_id, local, display, targets, created)
                 VALUES (1, 'team', 'team', 'u@example.com,far@elsewhere.example', 100);
             INSERT INTO folders (account_id, name, special_use, uidvalidity, uidnext, highestmodseq, recent_uid)
                 VALUES (1, 'INBOX', NULL, 1, 5, 9, 4);
             INSERT INTO folders (account_id, name, special_use, uidvalidity, uidnext, highestmodseq)
                 VALUES (1, 'Sent', '\\Sent', 2, 1, 1);
             INSERT INTO messages (folder_id, uid, modseq, flags, keywords, internal_date, size, pop3_uidl, blob_id, prefix, queue_id)
                 VALUES (1, 1, 2, 1, '', 1000, {s1}, 'uidl-1', '{b1}', X'', '{b1}'),
                        (1, 2, 8, 3, '$Label1', 1001, {s2}, 'uidl-2', '{b2}', X'', '{b2}'),
                        (1, 4, 6, 0, '', 1002, {s4}, 'uidl-4', '{b4}', X'', '{b4}');
             INSERT INTO expunged (folder_id, uid, modseq) VALUES (1, 3, 9);
             INSERT INTO outbound (queue_id, blob_id, prefix, sender, recipient, state, reason, attempts, next_attempt, created)
                 VALUES ('{b2}', '{b2}', X'', 'u@example.com', 'far@elsewhere.example', 'deferred', '451 later', 2, 4000000000, 1001);
             INSERT INTO settings (key, value) VALUES ('srs-secret', 'abc');"
        ))
        .unwrap();
    }
    let sqlite = Store::open(&data).unwrap();
    for (id, body) in &bodies {
        sqlite.blobs.put(id, body.as_bytes()).unwrap();
    }
    let m = sqlite.meta();
    let d = m.domain("example.com").await.unwrap().unwrap();
    let u = m.account(d.id, "u").await.unwrap().unwrap();
    let inbox = m.find_folder(u.id, "INBOX").await.unwrap().unwrap();
    let uids: Vec<(i64, i64)> = m
        .message_meta(inbox.id)
        .await
        .unwrap()
        .iter()
        .map(|x| (x.uid.as_i64(), x.modseq.0))
        .collect();
    assert_eq!(uids, [(1, 2), (2, 8), (4, 6)]);
    assert_eq!(
        (inbox.uidvalidity, inbox.uidnext, inbox.highestmodseq.0),
        (1, 5, 9)
    );
    let mut before = mailbox_view(m, u.id).await;
    before.push(format!("{:?}", m.outbound().await.unwrap()));
    before.push(format!("{:?}", m.aliases(None).await.unwrap()));
    before.push(format!("{:?}", m.accounts(None).await.unwrap()));
    before.push(format!("{:?}", m.setting("srs-secret").await.unwrap()));

    let Some((admin, url)) = fresh_database("v6").await else {
        eprintln!("POSTROOM_TEST_POSTGRES is not set: the move to PostgreSQL not tested");
        return;
    };
    let pg = Postgres::connect(&url, None, sqlite.blobs.clone()).await.unwrap();
    let report = copy_sqlite_to(sqlite.sqlite().unwrap(), &pg, |_, _, _| {})
        .await
        .unwrap();
    assert_eq!(report.blobs, 3);
    assert_eq!(report.usage_corrected, Vec::<i64>::new());
    let pg_store = Store::open_postgres(&url, None, &data).await.unwrap();
    let p = pg_store.meta();
    let mut after = mailbox_view(p, u.id).await;
    after.push(format!("{:?}", p.outbound().await.unwrap()));
    after.push(format!("{:?}", p.aliases(None).await.unwrap()));
    after.push(format!("{:?}", p.accounts(None).await.unwrap()));
    after.push(format!("{:?}", p.setting("srs-secret").await.unwrap()));
    assert_eq!(before, after);
    for (uid, (_, body)) in [1, 2, 4].into_iter().zip(&bodies) {
        let row = p.message(inbox.id, Uid(uid)).await.unwrap().unwrap();
        assert_eq!(pg_store.message_bytes(&row).unwrap(), body.as_bytes());
    }
    // The next message takes UID 5, as it would have in SQLite.
    let uid = pg_store
        .append(&inbox, b"Subject: new\r\n\r\n", 0, "", None)
        .await
        .unwrap();
    assert_eq!(uid.as_i64(), 5);
    drop((pg, pg_store));
    drop_database(&admin, &url).await;
}

/// A partial copy is resumed only from the installation it came from: a
/// run from another data folder (or from this one changed since) into
/// it is refused before it writes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_copy_of_another_installation_is_refused() {
    let Some((admin, url)) = fresh_database("other").await else {
        eprintln!("POSTROOM_TEST_POSTGRES is not set: PostgreSQL not tested");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(&dir.path().join("a")).unwrap();
    populate(&first).await;
    let pg = Postgres::connect(&url, None, first.blobs.clone()).await.unwrap();
    copy_sqlite_to(first.sqlite().unwrap(), &pg, |_, _, _| {})
        .await
        .unwrap();
    // As an interrupted run leaves it: marked, the later tables missing.
    let c = connect(&url).await;
    c.batch_execute(
        "INSERT INTO settings (key, value) VALUES ('migration:from-sqlite', 'in progress');
         DELETE FROM expunged; DELETE FROM outbound; DELETE FROM dkim_keys; DELETE FROM relay_recipients;
         DELETE FROM callout_cache; DELETE FROM sent_copies; DELETE FROM audit;",
    )
    .await
    .unwrap();
    let snapshot = "SELECT (SELECT COUNT(*) FROM domains) + (SELECT COUNT(*) FROM messages)
                        + (SELECT COUNT(*) FROM outbound) + (SELECT COUNT(*) FROM settings)";
    let before: i64 = c.query_one(snapshot, &[]).await.unwrap().get(0);

    // Another installation, made the same way (the same names and counts,
    // other bodies).
    let second = Store::open(&dir.path().join("b")).unwrap();
    populate(&second).await;
    match copy_sqlite_to(second.sqlite().unwrap(), &pg, |_, _, _| {}).await {
        Err(StoreError::Invalid(s)) => assert!(s.contains("does not match this data folder"), "{s}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let after: i64 = c.query_one(snapshot, &[]).await.unwrap().get(0);
    assert_eq!(before, after);
    // The installation it came from resumes.
    copy_sqlite_to(first.sqlite().unwrap(), &pg, |_, _, _| {})
        .await
        .unwrap();
    drop(pg);
    drop_database(&admin, &url).await;
}

/// A database that holds another application's tables is not a target:
/// neither migrate nor the server puts Postroom's schema beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_other_tables_is_refused_untouched() {
    let Some((admin, url)) = fresh_database("foreign").await else {
        eprintln!("POSTROOM_TEST_POSTGRES is not set: PostgreSQL not tested");
        return;
    };
    let c = connect(&url).await;
    c.batch_execute("CREATE TABLE invoices (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data")).unwrap();
    match Postgres::connect(&url, None, store.blobs.clone()).await {
        Err(StoreError::Invalid(s)) => assert!(s.contains("not Postroom's"), "{s}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a foreign database was taken"),
    }
    let tables: Vec<String> = c
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables, ["invoices"]);
    drop_database(&admin, &url).await;
}
