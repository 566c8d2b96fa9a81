//! The back-end suite: every check is written once against a `Store` (and
//! its `&dyn Metadata`) and run on every back end: SQLite always,
//! PostgreSQL when `POSTROOM_TEST_POSTGRES` holds a URL (start a cluster
//! with `scripts/pg-test-cluster`). Each PostgreSQL test makes a database
//! of its own, so the tests run in parallel.

use std::sync::atomic::{AtomicUsize, Ordering};

use postroom_store::directory::ImportedAlias;
use postroom_store::folders::{FlagOp, MAX_FOLDERS, MAX_KEYWORDS};
use postroom_store::schema::SCHEMA_VERSION;
use postroom_store::{
    AccountId, CustomerCaps, CustomerUsage, Delivery, DomainId, FolderId, FolderTarget, HeldLocal, Hold,
    HoldReason, LocalDelivery, Metadata, ModSeq, OutboundItem, SpecialUse, Store, StoreError, Uid,
};

const SEEN: i64 = 1;
const FLAGGED: i64 = 2;

// ---------------------------------------------------------------------
// Fixtures

/// The URL of the test cluster, when there is one.
fn pg_url() -> Option<String> {
    std::env::var("POSTROOM_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
}

/// `url` with its database replaced.
fn with_database(url: &str, db: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let cut = base.rfind('/').expect("a URL with a database");
    format!("{}/{db}", &base[..cut])
}

/// A fresh database on the test cluster, dropped with the fixture.
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl PgDatabase {
    async fn create(test: &str) -> Option<PgDatabase> {
        let admin_url = pg_url()?;
        let name = format!(
            "t_{}_{}_{}",
            test,
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let c = connect(&admin_url).await;
        c.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let url = with_database(&admin_url, &name);
        Some(PgDatabase { admin_url, name, url })
    }

    async fn drop_database(&self) {
        let c = connect(&self.admin_url).await;
        let _ = c
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .await;
    }
}

/// A plain driver connection, for what the tests do behind the store's back.
async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

struct Fixture {
    store: Store,
    dir: tempfile::TempDir,
    pg: Option<PgDatabase>,
}

impl Fixture {
    fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("data")).unwrap();
        Fixture { store, dir, pg: None }
    }

    async fn postgres(test: &str) -> Option<Fixture> {
        let pg = PgDatabase::create(test).await?;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_postgres(&pg.url, None, &dir.path().join("data"))
            .await
            .unwrap();
        Some(Fixture {
            store,
            dir,
            pg: Some(pg),
        })
    }

    /// A second handle on the same data, as another process (or node)
    /// would have.
    async fn reopen(&self) -> Store {
        let data = self.dir.path().join("data");
        match &self.pg {
            None => Store::open(&data).unwrap(),
            Some(pg) => Store::open_postgres(&pg.url, None, &data).await.unwrap(),
        }
    }

    async fn finish(self) {
        if let Some(pg) = &self.pg {
            drop(self.store);
            pg.drop_database().await;
        }
    }
}

/// Each check, once per back end (a module each, so a failure names it).
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let f = super::Fixture::sqlite();
                    assert_eq!(f.store.meta().kind(), "sqlite");
                    super::$name(&f).await;
                    f.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(f) = super::Fixture::postgres(stringify!($name)).await else {
                        eprintln!("POSTROOM_TEST_POSTGRES is not set: PostgreSQL not tested");
                        return;
                    };
                    assert_eq!(f.store.meta().kind(), "postgresql");
                    super::$name(&f).await;
                    f.finish().await;
                }
            )*
        }
    };
}

suite!(
    directory_rows_and_their_errors,
    aliases_relays_callouts_and_keys,
    folders_create_rename_delete,
    folder_limit,
    keyword_limit,
    messages_flags_copy_expunge,
    usage_is_a_running_total,
    deliveries_local_and_outbound,
    concurrent_deliveries_share_commits,
    deliveries_and_expunges_of_one_account_at_once,
    queue_operations,
    settings_and_unreferenced_blobs,
    watchers_wake_on_changes,
    sent_copies_and_recent,
    deliveries_by_role,
    held_deliveries_and_their_release,
    queue_summary_counts_by_state_and_reason,
    schema_too_new,
    admin_life_cycle_and_audit,
    provider_admins,
    customers_caps_and_usage,
    appends_and_copies_count_as_deliveries_do,
    concurrent_appends_copies_and_deliveries,
    classifier_training_counts,
    filter_settings_whitelists_and_reports,
);

/// The content filter's rows (issue #10): a domain's settings, whitelists
/// looked up by sender, reports by queue id or Message-ID, and their
/// expiry.
async fn filter_settings_whitelists_and_reports(f: &Fixture) {
    use postroom_store::FilterResultRow;
    let m = meta(f);
    assert_eq!(m.filter_domain_settings("x.example").await.unwrap(), None);
    m.set_filter_domain_settings("x.example", Some(r#"{"junk_at":4.0}"#))
        .await
        .unwrap();
    m.set_filter_domain_settings("x.example", Some(r#"{"junk_at":5.0}"#))
        .await
        .unwrap();
    assert_eq!(
        m.filter_domain_settings("x.example").await.unwrap().as_deref(),
        Some(r#"{"junk_at":5.0}"#)
    );
    m.set_filter_domain_settings("x.example", None).await.unwrap();
    assert_eq!(m.filter_domain_settings("x.example").await.unwrap(), None);

    assert!(m.whitelist_add("x.example", "friend.example").await.unwrap());
    assert!(!m.whitelist_add("x.example", "friend.example").await.unwrap());
    assert!(m.whitelist_add("u@x.example", "a@friend.example").await.unwrap());
    assert!(m.whitelist_add("y.example", "b@other.example").await.unwrap());
    let all = m.whitelist(None).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|r| (r.scope.as_str(), r.sender.as_str()))
            .collect::<Vec<_>>(),
        [
            ("u@x.example", "a@friend.example"),
            ("x.example", "friend.example"),
            ("y.example", "b@other.example")
        ]
    );
    assert_eq!(m.whitelist(Some("y.example")).await.unwrap().len(), 1);
    let mut hits: Vec<String> = m
        .whitelist_matches(&["a@friend.example".into(), "friend.example".into()])
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.scope)
        .collect();
    hits.sort();
    assert_eq!(hits, ["u@x.example", "x.example"]);
    assert!(m
        .whitelist_matches(&["c@nobody.example".into()])
        .await
        .unwrap()
        .is_empty());
    assert!(m.whitelist_remove("x.example", "friend.example").await.unwrap());
    assert!(!m.whitelist_remove("x.example", "friend.example").await.unwrap());

    let row = |q: &str, mid: &str, at: i64| FilterResultRow {
        queue_id: q.into(),
        message_id: mid.into(),
        at,
        report: format!(r#"{{"q":"{q}"}}"#),
    };
    m.put_filter_results(&[row("Q1", "m1@x", 100), row("Q2", "m1@x", 200), row("Q3", "", 300)])
        .await
        .unwrap();
    m.put_filter_results(&[]).await.unwrap();
    assert_eq!(m.filter_results("Q3").await.unwrap(), [row("Q3", "", 300)]);
    let by_mid = m.filter_results("m1@x").await.unwrap();
    assert_eq!(
        by_mid.iter().map(|r| r.queue_id.as_str()).collect::<Vec<_>>(),
        ["Q1", "Q2"]
    );
    assert!(m.filter_results("").await.unwrap().is_empty());
    assert_eq!(m.expire_filter_results(250).await.unwrap(), 2);
    assert!(m.filter_results("m1@x").await.unwrap().is_empty());
    assert_eq!(m.filter_results("Q3").await.unwrap().len(), 1);
}

/// The classifier's training: batches add (and take back) counts in one
/// transaction, never below 0; every batch moves the generation other
/// nodes reload on; the model reads tokens and totals together; tokens
/// are whole 64-bit hashes, negative ones included.
async fn classifier_training_counts(f: &Fixture) {
    use postroom_store::{TokenCounts, TrainingBatch, TrainingTotals};
    let m = meta(f);
    let start = m.classifier_totals().await.unwrap();
    assert_eq!((start.spam, start.ham), (0, 0));
    assert!(m.classifier_model().await.unwrap().tokens.is_empty());
    let tok = |token, spam, ham| TokenCounts { token, spam, ham };
    let t1 = m
        .classifier_train(&TrainingBatch {
            spam: 2,
            ham: 1,
            tokens: vec![tok(i64::MIN, 2, 0), tok(-7, 1, 1), tok(i64::MAX, 0, 1)],
        })
        .await
        .unwrap();
    assert_eq!((t1.spam, t1.ham), (2, 1));
    assert!(t1.generation > start.generation);
    let t2 = m
        .classifier_train(&TrainingBatch {
            spam: 0,
            ham: 1,
            tokens: vec![tok(-7, 0, 1), tok(42, 0, 1)],
        })
        .await
        .unwrap();
    assert!(t2.generation > t1.generation);
    let mut model = m.classifier_model().await.unwrap();
    model.tokens.sort_by_key(|t| t.token);
    assert_eq!(model.totals, t2);
    assert_eq!(
        model.tokens,
        vec![
            tok(i64::MIN, 2, 0),
            tok(-7, 1, 2),
            tok(42, 0, 1),
            tok(i64::MAX, 0, 1)
        ]
    );
    // Taking back more than was trained stops at 0; a token no message
    // counts any more is gone, and a new token's negative change is 0.
    let t3 = m
        .classifier_train(&TrainingBatch {
            spam: -5,
            ham: 0,
            tokens: vec![tok(i64::MIN, -3, 0), tok(-7, -1, 0), tok(99, -1, 0)],
        })
        .await
        .unwrap();
    assert_eq!((t3.spam, t3.ham), (0, 2));
    let mut model = m.classifier_model().await.unwrap();
    model.tokens.sort_by_key(|t| t.token);
    assert_eq!(
        model.tokens,
        vec![tok(-7, 0, 2), tok(42, 0, 1), tok(i64::MAX, 0, 1)]
    );
    assert_eq!(m.classifier_totals().await.unwrap(), TrainingTotals { ..t3 });
    // A large batch is one call.
    let many: Vec<_> = (0..20_000).map(|i| tok(i * 7919, 1, 0)).collect();
    m.classifier_train(&TrainingBatch {
        spam: 1,
        ham: 0,
        tokens: many,
    })
    .await
    .unwrap();
    assert_eq!(m.classifier_model().await.unwrap().tokens.len(), 20_003);
}

/// `postroom status`: per state and hold reason, how many and the oldest,
/// counted by the database; and the held rows of a time window.
async fn queue_summary_counts_by_state_and_reason(f: &Fixture) {
    let m = meta(f);
    assert_eq!(m.queue_summary().await.unwrap(), vec![]);
    let mut first = delivery(
        &f.store,
        b"Subject: 1

",
        vec![],
        vec![
            outbound("a@remote.example", None),
            outbound("gone@example.com", Some("alias target does not exist")),
        ],
    );
    first.received_at = 1_000;
    let mut second = delivery(
        &f.store,
        b"Subject: 2

",
        vec![],
        vec![
            outbound("b@remote.example", None),
            outbound("gone2@example.com", Some("alias target does not exist")),
            OutboundItem {
                held: Some(Hold::remote(HoldReason::NoPostmaster, "no admin")),
                ..outbound("postmaster@example.com", None)
            },
        ],
    );
    second.received_at = 2_000;
    f.store.commit_delivery(first).await.unwrap();
    f.store.commit_delivery(second).await.unwrap();
    let count =
        |state: &str, why: Option<HoldReason>, count: u64, oldest: i64| postroom_store::queue::QueueCount {
            state: state.into(),
            hold_reason: why,
            count,
            oldest_created: oldest,
        };
    // The held ones of a window (the daily report).
    let held = |since, until| async move {
        m.held_between(since, until)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.recipient)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        held(0, 3_000).await,
        ["gone@example.com", "gone2@example.com", "postmaster@example.com"]
    );
    assert_eq!(
        held(1_001, 3_000).await,
        ["gone2@example.com", "postmaster@example.com"]
    );
    assert_eq!(held(1_000, 2_000).await, ["gone@example.com"]);
    assert!(held(3_000, 4_000).await.is_empty());
    let mut got = m.queue_summary().await.unwrap();
    got.sort_by_key(|c| (c.state.clone(), c.hold_reason.map(|h| h.code())));
    assert_eq!(
        got,
        vec![
            count("held", Some(HoldReason::NoPostmaster), 1, 2_000),
            count("held", Some(HoldReason::UnknownMember), 2, 1_000),
            count("queued", None, 2, 1_000),
        ]
    );
}

/// Schema version 12: customers, the domains they own and what they use
/// of their caps (the admin service compares the two).
async fn customers_caps_and_usage(f: &Fixture) {
    let m = meta(f);
    assert!(m.customers().await.unwrap().is_empty());
    let caps = CustomerCaps {
        max_domains: Some(2),
        max_mailboxes: Some(3),
        max_aliases: None,
        max_storage: Some(10 << 30),
    };
    let acme = m.add_customer("acme", &caps).await.unwrap();
    assert_eq!((acme.name.as_str(), acme.caps), ("acme", caps));
    assert!(invalid(m.add_customer("acme", &CustomerCaps::default()).await).contains("exists already"));
    let other = m.add_customer("other", &CustomerCaps::default()).await.unwrap();
    let names: Vec<String> = m.customers().await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["acme", "other"]);
    assert_eq!(m.customer("nobody").await.unwrap(), None);
    assert_eq!(m.customer_usage(acme.id).await.unwrap(), CustomerUsage::default());

    // Two domains of acme's: one with a default quota, one without.
    let (a, _) = mailbox(f, "a.example", "one").await;
    let (b, _) = mailbox(f, "b.example", "two").await;
    let (c, three) = mailbox(f, "c.example", "three").await;
    m.update_domain(a, None, Some(Some(1000))).await.unwrap();
    m.add_account(a, "big", "big", Some("h"), Some(5000))
        .await
        .unwrap();
    m.add_alias_targets(a, "sales", "sales", &["one@a.example".to_string()])
        .await
        .unwrap();
    m.set_domain_customer(a, Some(acme.id)).await.unwrap();
    m.set_domain_customer(b, Some(acme.id)).await.unwrap();
    m.set_domain_customer(c, Some(other.id)).await.unwrap();
    assert_eq!(
        m.domain_customer(a).await.unwrap().map(|c| c.name),
        Some("acme".into())
    );
    assert_eq!(m.customer_domains(acme.id).await.unwrap(), vec![a, b]);
    assert_eq!(
        m.customer_usage(acme.id).await.unwrap(),
        CustomerUsage {
            domains: 2,
            mailboxes: 3,
            aliases: 1,
            // one@a: the default (1000); big@a: its own (5000); two@b: none.
            storage: 6000,
            unlimited_mailboxes: 1,
        }
    );
    assert_eq!(m.customer_usage(other.id).await.unwrap().mailboxes, 1);

    // A domain changes hands; one is given up.
    m.set_domain_customer(b, Some(other.id)).await.unwrap();
    assert_eq!(m.customer_domains(acme.id).await.unwrap(), vec![a]);
    m.set_domain_customer(b, None).await.unwrap();
    assert_eq!(m.domain_customer(b).await.unwrap(), None);
    assert_eq!(m.customer_domains(other.id).await.unwrap(), vec![c]);

    let lower = CustomerCaps {
        max_mailboxes: Some(1),
        ..caps
    };
    assert!(m.set_customer_caps(acme.id, &lower).await.unwrap());
    assert_eq!(m.customer("acme").await.unwrap().map(|c| c.caps), Some(lower));
    assert!(!m.set_customer_caps(9999, &lower).await.unwrap());

    // A domain admin's permission flags: none until given; gone with the
    // mailbox.
    let (_, admin) = mailbox(f, "a.example", "admin").await;
    assert_eq!(m.admin_permissions(admin).await.unwrap(), 0);
    m.set_admin_permissions(admin, 0b1010).await.unwrap();
    m.set_admin_permissions(admin, 0b0110).await.unwrap();
    assert_eq!(m.admin_permissions(admin).await.unwrap(), 0b0110);
    m.remove_account(admin).await.unwrap();
    assert_eq!(m.admin_permissions(admin).await.unwrap(), 0);

    // A provider admin's flags: none until given, only for an admin that
    // exists, gone with the admin.
    assert!(!m
        .set_provider_permissions("staff@provider.example", 1)
        .await
        .unwrap());
    m.add_provider_admin("staff@provider.example", "staff@provider.example", "$x")
        .await
        .unwrap();
    assert_eq!(m.provider_permissions("staff@provider.example").await.unwrap(), 0);
    assert!(m
        .set_provider_permissions("staff@provider.example", 1)
        .await
        .unwrap());
    assert!(m
        .set_provider_permissions("staff@provider.example", 3)
        .await
        .unwrap());
    assert_eq!(m.provider_permissions("staff@provider.example").await.unwrap(), 3);
    m.remove_provider_admin("staff@provider.example").await.unwrap();
    assert_eq!(m.provider_permissions("staff@provider.example").await.unwrap(), 0);

    // A customer that owns a domain stays; a removed domain leaves it.
    assert!(matches!(
        m.remove_customer(other.id).await,
        Err(StoreError::Conflict(_))
    ));
    m.remove_account(three).await.unwrap();
    m.remove_domain(c).await.unwrap();
    assert!(m.customer_domains(other.id).await.unwrap().is_empty());
    assert!(m.remove_customer(other.id).await.unwrap());
    assert!(!m.remove_customer(other.id).await.unwrap());
}

/// Schema version 9: the provider's administrators (the web console).
async fn provider_admins(f: &Fixture) {
    let m = meta(f);
    assert!(m.provider_admins().await.unwrap().is_empty());
    assert_eq!(m.provider_admin("boss@provider.example").await.unwrap(), None);
    let a = m
        .add_provider_admin("boss@provider.example", "Boss@Provider.example", "$argon2id$one")
        .await
        .unwrap();
    assert_eq!(
        (a.address.as_str(), a.display.as_str(), a.password_hash.as_str()),
        ("boss@provider.example", "Boss@Provider.example", "$argon2id$one")
    );
    assert!(invalid(
        m.add_provider_admin("boss@provider.example", "boss@provider.example", "$x")
            .await
    )
    .contains("exists already"));
    m.add_provider_admin("aide@provider.example", "aide@provider.example", "$argon2id$two")
        .await
        .unwrap();
    let all: Vec<String> = m
        .provider_admins()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.address)
        .collect();
    assert_eq!(all, ["aide@provider.example", "boss@provider.example"]);
    assert!(m
        .set_provider_admin_password("boss@provider.example", "$argon2id$new")
        .await
        .unwrap());
    assert!(!m
        .set_provider_admin_password("nobody@provider.example", "$x")
        .await
        .unwrap());
    // Another handle (another process, another node) sees the change.
    let other = f.reopen().await;
    let seen = other
        .meta()
        .provider_admin("boss@provider.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.password_hash, "$argon2id$new");
    assert!(m.remove_provider_admin("boss@provider.example").await.unwrap());
    assert!(!m.remove_provider_admin("boss@provider.example").await.unwrap());
    assert_eq!(
        other
            .meta()
            .provider_admin("boss@provider.example")
            .await
            .unwrap(),
        None
    );
}

/// Schema version 7: the directory version that makes the admin service's
/// checks safe, mailbox and domain removal, renames, logins, the audit.
async fn admin_life_cycle_and_audit(f: &Fixture) {
    let m = meta(f);
    let (d, kent) = mailbox(f, "abc.example", "kent").await;
    let (_, bob) = mailbox(f, "abc.example", "bob").await;
    // A change to where mail goes moves the version; a login does not.
    let v0 = m.directory_version().await.unwrap();
    m.record_login(kent, 1_700_000_000).await.unwrap();
    assert_eq!(m.directory_version().await.unwrap(), v0);
    assert_eq!(
        m.account_by_id(kent).await.unwrap().unwrap().last_login,
        Some(1_700_000_000)
    );
    m.add_alias_targets_if(d, "team", "team", &["kent@abc.example".into()], v0)
        .await
        .unwrap();
    let v1 = m.directory_version().await.unwrap();
    assert_ne!(v1, v0);
    // A write expecting the old version is refused.
    assert!(matches!(
        m.set_forwarding_if(kent, &["x@elsewhere.example".into()], true, v0)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(m
        .account_by_id(kent)
        .await
        .unwrap()
        .unwrap()
        .forward_to
        .is_empty());
    m.set_forwarding_if(kent, &["x@elsewhere.example".into()], true, v1)
        .await
        .unwrap();
    // Members out; the last one out removes the alias.
    m.add_alias_targets(d, "team", "team", &["bob@abc.example".into()])
        .await
        .unwrap();
    let left = m
        .remove_alias_targets(d, "team", &["KENT@abc.example".into()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.targets, ["bob@abc.example"]);
    assert!(m
        .remove_alias_targets(d, "team", &["bob@abc.example".into()])
        .await
        .unwrap()
        .is_none());
    assert!(m.alias(d, "team").await.unwrap().is_none());
    // A rename keeps the folders (UIDVALIDITY) and refuses a taken name.
    let inbox = m.find_folder(bob, "INBOX").await.unwrap().unwrap();
    append(f, inbox.id, b"Subject: a\r\n\r\nbody\r\n").await;
    assert!(invalid(m.rename_account(bob, d, "kent", "kent@abc.example").await).contains("exists already"));
    m.rename_account(bob, d, "robert", "robert").await.unwrap();
    let renamed = m.account(d, "robert").await.unwrap().unwrap();
    assert_eq!(renamed.id, bob);
    assert_eq!(
        m.find_folder(bob, "INBOX").await.unwrap().unwrap().uidvalidity,
        inbox.uidvalidity
    );
    // Removal: scheduled (disabled at once), then done with its mail.
    m.schedule_account_removal(bob, 100).await.unwrap();
    assert!(!m.account_by_id(bob).await.unwrap().unwrap().enabled);
    assert!(m.accounts_due_for_removal(99).await.unwrap().is_empty());
    assert_eq!(m.accounts_due_for_removal(100).await.unwrap()[0].id, bob);
    let freed = m.remove_account(bob).await.unwrap();
    assert_eq!(freed.len(), 1, "the removed mailbox's one body is unreferenced");
    assert!(m.account_by_id(bob).await.unwrap().is_none());
    assert!(m.find_folder(bob, "INBOX").await.unwrap().is_none());
    // A domain with mailboxes stays; without, it goes.
    assert!(invalid(m.remove_domain(d).await).contains("mailboxes"));
    m.remove_account(kent).await.unwrap();
    m.remove_domain(d).await.unwrap();
    assert!(m.domain("abc.example").await.unwrap().is_none());
    // The audit trail, newest first, filtered.
    for (op, object) in [
        ("user.add", "a@x.example"),
        ("user.remove", "a@x.example"),
        ("domain.add", "y.example"),
    ] {
        m.record_audit(&postroom_store::AuditEntry {
            actor: "cli:root".into(),
            origin: "cli".into(),
            operation: op.into(),
            object: object.into(),
            domain: object.rsplit('@').next().unwrap_or("").into(),
            detail: String::new(),
        })
        .await
        .unwrap();
    }
    let all = m
        .audit_log(&postroom_store::AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|r| r.entry.operation.as_str()).collect::<Vec<_>>(),
        ["domain.add", "user.remove", "user.add"]
    );
    let one = m
        .audit_log(&postroom_store::AuditQuery {
            object: Some("a@x.example".into()),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].entry.operation, "user.remove");
}

fn invalid<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Err(StoreError::Invalid(s)) => s,
        other => panic!("expected StoreError::Invalid, got {other:?}"),
    }
}

fn meta(f: &Fixture) -> &dyn Metadata {
    f.store.meta()
}

async fn mailbox(f: &Fixture, domain: &str, local: &str) -> (DomainId, AccountId) {
    let m = meta(f);
    let d = match m.domain(domain).await.unwrap() {
        Some(d) => d,
        None => m.add_domain(domain, domain, None).await.unwrap(),
    };
    let a = m
        .add_account(d.id, local, local, Some("hash"), None)
        .await
        .unwrap();
    (d.id, a.id)
}

async fn folder(f: &Fixture, account: AccountId, name: &str) -> FolderId {
    meta(f).find_folder(account, name).await.unwrap().unwrap().id
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn new_id() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    postroom_core::QueueId::generate(micros).to_string()
}

fn local(account: AccountId, folder: &str) -> LocalDelivery {
    LocalDelivery {
        account_id: account,
        folder: FolderTarget::Named(folder.into()),
        prefix: b"Delivered-To: someone\r\n".to_vec(),
        flags: 0,
        keywords: String::new(),
        internal_date: None,
        sent_copy_of: None,
    }
}

fn outbound(recipient: &str, held: Option<&str>) -> OutboundItem {
    OutboundItem {
        sender: "sender@example.com".into(),
        recipient: recipient.into(),
        prefix: b"Received: by test\r\n".to_vec(),
        held: held.map(|h| postroom_store::Hold::remote(postroom_store::HoldReason::UnknownMember, h)),
    }
}

/// A delivery of a new body (put in the store's blobs first, as the
/// pipeline does).
fn delivery(store: &Store, body: &[u8], local: Vec<LocalDelivery>, outbound: Vec<OutboundItem>) -> Delivery {
    let id = new_id();
    store.blobs.put(&id, body).unwrap();
    Delivery {
        queue_id: id.clone(),
        blob_id: id,
        blob_size: body.len() as u64,
        received_at: now(),
        local,
        outbound,
        released: Vec::new(),
    }
}

async fn append(f: &Fixture, folder: FolderId, body: &[u8]) -> Uid {
    let row = meta(f).folder_by_id(folder).await.unwrap().unwrap();
    f.store
        .append(&row, body, 0, "", Some(1_700_000_000))
        .await
        .unwrap()
}

// ---------------------------------------------------------------------
// Checks

async fn directory_rows_and_their_errors(f: &Fixture) {
    let m = meta(f);
    let d = m.add_domain("example.com", "Example.com", None).await.unwrap();
    assert_eq!(
        (d.name.as_str(), d.display.as_str()),
        ("example.com", "Example.com")
    );
    assert_eq!(d.subaddress_separator, "+");
    assert_eq!(
        (d.alias_of, d.default_quota, d.relay_to.clone(), d.relay_verify),
        (None, None, None, false)
    );
    assert_eq!(
        invalid(m.add_domain("example.com", "example.com", None).await),
        "domain example.com exists already"
    );
    assert_eq!(
        invalid(
            m.add_domain("x.example", "x.example", Some("missing.example"))
                .await
        ),
        "domain missing.example does not exist"
    );
    let alias = m
        .add_domain("example.net", "example.net", Some("example.com"))
        .await
        .unwrap();
    assert_eq!(alias.alias_of, Some(d.id));
    assert_eq!(
        invalid(
            m.add_domain("example.org", "example.org", Some("example.net"))
                .await
        ),
        "example.net is itself an alias domain"
    );
    assert_eq!(m.domain_by_id(alias.id).await.unwrap(), Some(alias.clone()));
    let names: Vec<String> = m.domains().await.unwrap().into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["example.com", "example.net"]);
    assert!(m.domain("nothing.example").await.unwrap().is_none());

    m.update_domain(d.id, Some("-"), Some(Some(1000))).await.unwrap();
    let d2 = m.domain("example.com").await.unwrap().unwrap();
    assert_eq!(
        (d2.subaddress_separator.as_str(), d2.default_quota),
        ("-", Some(1000))
    );
    m.update_domain(d.id, None, Some(None)).await.unwrap();
    assert_eq!(
        m.domain("example.com").await.unwrap().unwrap().default_quota,
        None
    );

    let a = m
        .add_account(d.id, "kent", "Kent", Some("h1"), Some(5000))
        .await
        .unwrap();
    assert_eq!((a.local.as_str(), a.display.as_str()), ("kent", "Kent"));
    assert_eq!((a.password_hash.as_deref(), a.quota), (Some("h1"), Some(5000)));
    assert!(a.enabled && !a.domain_admin && a.forward_to.is_empty() && a.forward_keep && !a.sent_copy);
    assert_eq!(
        invalid(m.add_account(d.id, "kent", "KENT", None, None).await),
        "mailbox KENT exists already"
    );
    // Every new mailbox gets the default folders, each its own UIDVALIDITY.
    let folders = m.folders(a.id).await.unwrap();
    let names: Vec<(&str, Option<&str>)> = folders
        .iter()
        .map(|f| (f.name.as_str(), f.special_use.as_deref()))
        .collect();
    assert_eq!(names, postroom_store::directory::DEFAULT_FOLDERS);
    for f in &folders {
        assert_eq!(
            (f.uidvalidity, f.uidnext, f.highestmodseq),
            (f.id.get(), 1, ModSeq(1))
        );
    }

    m.set_password_hash(a.id, "h2").await.unwrap();
    m.set_enabled(a.id, false).await.unwrap();
    m.set_domain_admin(a.id, true).await.unwrap();
    m.set_quota(a.id, None).await.unwrap();
    m.set_forwarding(
        a.id,
        &["x@elsewhere.example".into(), "y@elsewhere.example".into()],
        false,
    )
    .await
    .unwrap();
    m.set_sent_copy(a.id, true).await.unwrap();
    let a2 = m.account(d.id, "kent").await.unwrap().unwrap();
    assert_eq!(a2.password_hash.as_deref(), Some("h2"));
    assert!(!a2.enabled && a2.domain_admin && a2.quota.is_none() && !a2.forward_keep && a2.sent_copy);
    assert_eq!(a2.forward_to, ["x@elsewhere.example", "y@elsewhere.example"]);
    assert_eq!(m.account_by_id(a.id).await.unwrap(), Some(a2));

    let gone = AccountId(a.id.get() + 1000);
    assert_eq!(invalid(m.set_password_hash(gone, "h").await), "no such mailbox");
    assert_eq!(invalid(m.set_enabled(gone, true).await), "no such mailbox");
    assert_eq!(invalid(m.set_domain_admin(gone, true).await), "no such mailbox");
    assert_eq!(invalid(m.set_quota(gone, Some(1)).await), "no such mailbox");
    assert_eq!(
        invalid(m.set_forwarding(gone, &[], true).await),
        "no such mailbox"
    );
    assert_eq!(invalid(m.set_sent_copy(gone, true).await), "no such mailbox");
    assert!(m.account_by_id(gone).await.unwrap().is_none());

    let other = m
        .add_domain("other.example", "other.example", None)
        .await
        .unwrap();
    m.add_account(other.id, "zed", "zed", None, None).await.unwrap();
    m.add_account(d.id, "amy", "amy", None, None).await.unwrap();
    let all: Vec<String> = m
        .accounts(None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.local)
        .collect();
    assert_eq!(all, ["kent", "amy", "zed"]);
    let of_d: Vec<String> = m
        .accounts(Some(d.id))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.local)
        .collect();
    assert_eq!(of_d, ["kent", "amy"]);
    assert_eq!(m.message_count(a.id).await.unwrap(), 0);
}

async fn aliases_relays_callouts_and_keys(f: &Fixture) {
    let m = meta(f);
    let d = m.add_domain("abc.com", "abc.com", None).await.unwrap();
    let al = m
        .add_alias_targets(d.id, "dev", "Dev", &["kent@abc.com".into()])
        .await
        .unwrap();
    assert_eq!((al.local.as_str(), al.display.as_str()), ("dev", "Dev"));
    // Targets merge, compared case-insensitively.
    let al = m
        .add_alias_targets(d.id, "dev", "Dev", &["KENT@abc.com".into(), "amy@abc.com".into()])
        .await
        .unwrap();
    assert_eq!(al.targets, ["kent@abc.com", "amy@abc.com"]);
    assert_eq!(m.alias(d.id, "dev").await.unwrap(), Some(al.clone()));
    assert_eq!(invalid(m.remove_alias(d.id, "nobody").await), "no such alias");

    // An import is all or nothing.
    let imported = |domain: &str, local: &str, t: &str| ImportedAlias {
        domain: domain.into(),
        local: local.into(),
        display: local.into(),
        targets: vec![t.into()],
    };
    let r = m
        .import_aliases(
            &[("new.example".into(), "new.example".into())],
            &[
                imported("abc.com", "ops", "kent@abc.com"),
                imported("missing.example", "x", "kent@abc.com"),
            ],
        )
        .await;
    assert_eq!(invalid(r), "domain missing.example does not exist");
    assert!(m.domain("new.example").await.unwrap().is_none());
    assert!(m.alias(d.id, "ops").await.unwrap().is_none());
    let r = m
        .import_aliases(&[("abc.com".into(), "abc.com".into())], &[])
        .await;
    assert_eq!(invalid(r), "domain abc.com exists already");
    m.import_aliases(
        &[("new.example".into(), "new.example".into())],
        &[
            imported("abc.com", "ops", "kent@abc.com"),
            imported("new.example", "", "kent@abc.com"),
        ],
    )
    .await
    .unwrap();
    let new = m.domain("new.example").await.unwrap().unwrap();
    assert_eq!(
        m.alias(new.id, "").await.unwrap().unwrap().targets,
        ["kent@abc.com"]
    );
    let locals: Vec<String> = m
        .aliases(None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.local)
        .collect();
    assert_eq!(locals, ["dev", "ops", ""]);
    assert_eq!(m.aliases(Some(d.id)).await.unwrap().len(), 2);
    m.remove_alias(d.id, "ops").await.unwrap();
    assert!(m.alias(d.id, "ops").await.unwrap().is_none());

    // Gateway domains, followed through a domain alias.
    let gw = m
        .add_domain("customer.example", "customer.example", None)
        .await
        .unwrap();
    m.add_domain("customer.net", "customer.net", Some("customer.example"))
        .await
        .unwrap();
    m.set_domain_relay(gw.id, Some("mail.customer.example:25"), true)
        .await
        .unwrap();
    let gwr = m.domain("customer.example").await.unwrap().unwrap();
    assert_eq!(
        (gwr.relay_to.as_deref(), gwr.relay_verify),
        (Some("mail.customer.example:25"), true)
    );
    assert_eq!(
        m.relay_host("customer.net").await.unwrap().as_deref(),
        Some("mail.customer.example:25")
    );
    assert_eq!(m.relay_host("abc.com").await.unwrap(), None);
    assert_eq!(m.relay_host("unknown.example").await.unwrap(), None);
    let n = m
        .add_relay_recipients(gw.id, &["sales".into(), "info".into(), "sales".into()])
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(m.add_relay_recipients(gw.id, &["info".into()]).await.unwrap(), 0);
    assert!(m.is_relay_recipient(gw.id, "info").await.unwrap());
    assert!(!m.is_relay_recipient(gw.id, "other").await.unwrap());
    assert_eq!(m.relay_recipients(gw.id).await.unwrap(), ["info", "sales"]);
    assert!(m.remove_relay_recipient(gw.id, "info").await.unwrap());
    assert!(!m.remove_relay_recipient(gw.id, "info").await.unwrap());

    assert_eq!(m.cached_callout("a@customer.example", 3600).await.unwrap(), None);
    m.remember_callout("a@customer.example", false, "550 no")
        .await
        .unwrap();
    m.remember_callout("a@customer.example", true, "250 ok")
        .await
        .unwrap();
    assert_eq!(
        m.cached_callout("a@customer.example", 3600).await.unwrap(),
        Some((true, "250 ok".into()))
    );
    // Older than the age asked for: not an answer.
    assert_eq!(m.cached_callout("a@customer.example", -10).await.unwrap(), None);

    m.add_dkim_key(d.id, "s1", "rsa-sha256", b"private-1", "pub1")
        .await
        .unwrap();
    m.add_dkim_key(d.id, "s2", "ed25519-sha256", b"private-2", "pub2")
        .await
        .unwrap();
    assert_eq!(
        invalid(m.add_dkim_key(d.id, "s1", "rsa-sha256", b"x", "y").await),
        "selector s1 exists already"
    );
    let keys = m.dkim_keys(d.id).await.unwrap();
    let sel: Vec<(&str, &str)> = keys
        .iter()
        .map(|k| (k.selector.as_str(), k.algorithm.as_str()))
        .collect();
    assert_eq!(sel, [("s2", "ed25519-sha256"), ("s1", "rsa-sha256")]);
    assert_eq!(keys[0].public_key, "pub2");
    assert!(m.dkim_keys(gw.id).await.unwrap().is_empty());
}

async fn folders_create_rename_delete(f: &Fixture) {
    let m = meta(f);
    let (_, a) = mailbox(f, "example.com", "kent").await;
    let work = m.create_folder(a, "Work", None).await.unwrap();
    assert_eq!((work.uidvalidity, work.uidnext), (work.id.get(), 1));
    assert_eq!(
        invalid(m.create_folder(a, "Work", None).await),
        "mailbox exists already"
    );
    m.create_folder(a, "Work/2024", None).await.unwrap();
    m.create_folder(a, "Work/2024/Q1", None).await.unwrap();
    m.create_folder(a, "Workshop", None).await.unwrap();
    m.create_folder(a, "Ünïcode", None).await.unwrap();
    m.create_folder(a, "Ünïcode/child", None).await.unwrap();
    let special = m.create_folder(a, "Spam", Some("\\Junk")).await.unwrap();
    assert_eq!(special.special_use.as_deref(), Some("\\Junk"));

    // INBOX is case-insensitive, every other name exact.
    assert_eq!(folder(f, a, "inbox").await, folder(f, a, "INBOX").await);
    assert!(m.find_folder(a, "work").await.unwrap().is_none());

    let msg = append(f, work.id, b"Subject: kept\r\n\r\nbody\r\n").await;
    m.rename_folder(a, "Work", "Jobs").await.unwrap();
    let list: Vec<String> = m.folder_list(a).await.unwrap().into_iter().map(|l| l.0).collect();
    assert_eq!(
        list,
        [
            "Archive",
            "Drafts",
            "INBOX",
            "Jobs",
            "Jobs/2024",
            "Jobs/2024/Q1",
            "Junk",
            "Sent",
            "Spam",
            "Trash",
            "Workshop",
            "Ünïcode",
            "Ünïcode/child"
        ]
    );
    // A rename keeps the folder (its id, UIDVALIDITY and messages).
    let jobs = m.find_folder(a, "Jobs").await.unwrap().unwrap();
    assert_eq!((jobs.id, jobs.uidvalidity), (work.id, work.uidvalidity));
    assert!(m.message(jobs.id, msg).await.unwrap().is_some());
    assert_eq!(
        invalid(m.rename_folder(a, "Jobs", "Spam").await),
        "target mailbox exists already"
    );
    assert_eq!(
        invalid(m.rename_folder(a, "Nothing", "Else").await),
        "no such mailbox"
    );
    // Children follow a name that is not ASCII too (RFC 9051 6.3.6).
    m.rename_folder(a, "Ünïcode", "Ümlaut").await.unwrap();
    assert!(m.find_folder(a, "Ümlaut/child").await.unwrap().is_some());
    assert!(m.find_folder(a, "Ünïcode/child").await.unwrap().is_none());
    m.rename_folder(a, "Ümlaut", "Ünïcode").await.unwrap();

    assert!(m.set_subscribed(a, "Jobs", false).await.unwrap());
    assert!(!m.set_subscribed(a, "Nothing", false).await.unwrap());
    let jobs_entry = m
        .folder_list(a)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.0 == "Jobs")
        .unwrap();
    assert!(!jobs_entry.2);

    // Deleting a folder deletes its messages; its name can be made again,
    // with a new UIDVALIDITY.
    let before = m.usage(a).await.unwrap();
    assert!(before > 0);
    f.store.delete_folder(&jobs).await.unwrap();
    assert!(m.folder_by_id(jobs.id).await.unwrap().is_none());
    assert_eq!(m.usage(a).await.unwrap(), 0);
    assert!(m.expunged_since(jobs.id, ModSeq(0)).await.unwrap().is_empty());
    let again = m.create_folder(a, "Jobs", None).await.unwrap();
    assert!(again.uidvalidity > jobs.uidvalidity);
    let inbox = m.find_folder(a, "INBOX").await.unwrap().unwrap();
    assert_eq!(
        invalid(f.store.delete_folder(&inbox).await),
        "INBOX cannot be deleted"
    );
    assert!(m
        .delete_folder(FolderId(jobs.id.get() + 100_000))
        .await
        .unwrap()
        .is_empty());
}

async fn folder_limit(f: &Fixture) {
    let m = meta(f);
    let (_, a) = mailbox(f, "example.com", "kent").await;
    let have = m.folders(a).await.unwrap().len() as i64;
    for i in have..MAX_FOLDERS {
        m.create_folder(a, &format!("f{i}"), None).await.unwrap();
    }
    match m.create_folder(a, "one-too-many", None).await {
        Err(StoreError::Limit(s)) => assert_eq!(s, "too many mailboxes"),
        other => panic!("expected the folder limit, got {other:?}"),
    }
    // Another account has its own limit.
    let (_, b) = mailbox(f, "example.com", "amy").await;
    m.create_folder(b, "fine", None).await.unwrap();
}

async fn keyword_limit(f: &Fixture) {
    let m = meta(f);
    let (_, a) = mailbox(f, "example.com", "kent").await;
    let inbox = folder(f, a, "INBOX").await;
    let u1 = append(f, inbox, b"Subject: 1\r\n\r\n").await;
    let u2 = append(f, inbox, b"Subject: 2\r\n\r\n").await;
    let many: Vec<String> = (0..MAX_KEYWORDS).map(|i| format!("k{i}")).collect();
    m.store_flags(inbox, &[u1], FlagOp::Add, 0, &many, None)
        .await
        .unwrap();
    // The folder's own keywords stay allowed (compared case-insensitively)...
    m.store_flags(inbox, &[u2], FlagOp::Add, 0, &["K1".into()], None)
        .await
        .unwrap();
    // ...a new one is refused, by STORE, APPEND and COPY alike.
    let refused = |r: Result<(), StoreError>| match r {
        Err(StoreError::Limit(s)) => assert_eq!(s, "too many keywords in this mailbox"),
        other => panic!("expected the keyword limit, got {other:?}"),
    };
    refused(
        m.store_flags(inbox, &[u2], FlagOp::Add, 0, &["new".into()], None)
            .await
            .map(|_| ()),
    );
    refused(m.check_keywords(inbox, "new").await);
    let row = m.folder_by_id(inbox).await.unwrap().unwrap();
    refused(
        f.store
            .append(&row, b"Subject: 3\r\n\r\n", 0, "new", None)
            .await
            .map(|_| ()),
    );
    let other = folder(f, a, "Archive").await;
    let u = append(f, other, b"Subject: x\r\n\r\n").await;
    m.store_flags(other, &[u], FlagOp::Add, 0, &["fresh".into()], None)
        .await
        .unwrap();
    refused(m.copy_messages(other, &[u], inbox).await.map(|_| ()));
    // Removing is always allowed.
    m.store_flags(inbox, &[u1], FlagOp::Remove, 0, &["k5".into()], None)
        .await
        .unwrap();
    assert_eq!(m.message_meta(inbox).await.unwrap().len(), 2);
}

async fn messages_flags_copy_expunge(f: &Fixture) {
    let m = meta(f);
    let (_, a) = mailbox(f, "example.com", "kent").await;
    let inbox = folder(f, a, "INBOX").await;
    let archive = folder(f, a, "Archive").await;
    let uidvalidity = m.folder_by_id(inbox).await.unwrap().unwrap().uidvalidity;
    let body = |i: usize| format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes();
    let mut uids = Vec::new();
    for i in 0..5 {
        uids.push(append(f, inbox, &body(i)).await);
    }
    assert_eq!(uids, [Uid(1), Uid(2), Uid(3), Uid(4), Uid(5)]);
    // Each APPEND takes the next UID and MODSEQ.
    let pos = m.folder_position(inbox).await.unwrap().unwrap();
    assert_eq!(pos, (ModSeq(6), 6));
    let metas = m.message_meta(inbox).await.unwrap();
    assert_eq!(
        metas.iter().map(|m| m.modseq.get()).collect::<Vec<_>>(),
        [2, 3, 4, 5, 6]
    );
    assert_eq!(metas[0].internal_date, 1_700_000_000);
    assert_eq!(metas[0].size, body(0).len() as i64);
    // POP3 UIDLs: UIDVALIDITY and UID in hexadecimal.
    let drop = m.maildrop(inbox).await.unwrap();
    assert_eq!(drop[2].0, Uid(3));
    assert_eq!(drop[2].2, format!("{uidvalidity:08X}{:08X}", 3));
    let row = m.message(inbox, Uid(3)).await.unwrap().unwrap();
    assert_eq!(f.store.message_bytes(&row).unwrap(), body(2));
    assert!(row.prefix.is_empty() && row.queue_id.is_none());
    assert!(m.message(inbox, Uid(99)).await.unwrap().is_none());
    assert_eq!(m.messages(inbox).await.unwrap().len(), 5);

    // Flags: one new MODSEQ per STORE, only for messages that change.
    let (changed, refused) = m
        .store_flags(
            inbox,
            &[Uid(1), Uid(2), Uid(9)],
            FlagOp::Add,
            SEEN,
            &["$Work".into()],
            None,
        )
        .await
        .unwrap();
    assert!(refused.is_empty());
    assert_eq!(
        changed.iter().map(|c| (c.uid, c.modseq)).collect::<Vec<_>>(),
        [(Uid(1), ModSeq(7)), (Uid(2), ModSeq(7))]
    );
    assert_eq!((changed[0].flags, changed[0].keywords.as_str()), (SEEN, "$Work"));
    let (changed, _) = m
        .store_flags(
            inbox,
            &[Uid(1), Uid(3)],
            FlagOp::Add,
            SEEN,
            &["$work".into()],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        changed.iter().map(|c| (c.uid, c.modseq)).collect::<Vec<_>>(),
        [(Uid(3), ModSeq(8))]
    );
    // Nothing changes: no new MODSEQ.
    let (changed, _) = m
        .store_flags(inbox, &[Uid(1)], FlagOp::Add, SEEN, &[], None)
        .await
        .unwrap();
    assert!(changed.is_empty());
    assert_eq!(m.folder_position(inbox).await.unwrap().unwrap().0, ModSeq(8));
    let (changed, _) = m
        .store_flags(
            inbox,
            &[Uid(1)],
            FlagOp::Replace,
            FLAGGED,
            &["a".into(), "b".into()],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (changed[0].flags, changed[0].keywords.as_str(), changed[0].modseq),
        (FLAGGED, "a b", ModSeq(9))
    );
    let (changed, _) = m
        .store_flags(inbox, &[Uid(1)], FlagOp::Remove, FLAGGED, &["A".into()], None)
        .await
        .unwrap();
    assert_eq!((changed[0].flags, changed[0].keywords.as_str()), (0, "b"));
    // CONDSTORE UNCHANGEDSINCE: messages changed after it are left alone.
    let (changed, refused) = m
        .store_flags(
            inbox,
            &[Uid(1), Uid(4)],
            FlagOp::Add,
            FLAGGED,
            &[],
            Some(ModSeq(6)),
        )
        .await
        .unwrap();
    assert_eq!(refused, [Uid(1)]);
    assert_eq!(changed.iter().map(|c| c.uid).collect::<Vec<_>>(), [Uid(4)]);
    let hms = m.folder_position(inbox).await.unwrap().unwrap().0;
    assert_eq!(hms, ModSeq(11));

    // COPY: new UIDs in the target, the same bodies, the target's UIDL.
    let arch_validity = m.folder_by_id(archive).await.unwrap().unwrap().uidvalidity;
    let (v, pairs) = m
        .copy_messages(inbox, &[Uid(4), Uid(2), Uid(77)], archive)
        .await
        .unwrap();
    assert_eq!(v, arch_validity);
    assert_eq!(pairs, [(Uid(4), Uid(1)), (Uid(2), Uid(2))]);
    let copied = m.message(archive, Uid(2)).await.unwrap().unwrap();
    let orig = m.message(inbox, Uid(2)).await.unwrap().unwrap();
    assert_eq!(copied.blob_id, orig.blob_id);
    assert_eq!(copied.pop3_uidl, format!("{arch_validity:08X}{:08X}", 2));
    let copied_meta = m.message_meta(archive).await.unwrap();
    assert_eq!(
        (copied_meta[1].flags, copied_meta[1].keywords.as_str()),
        (SEEN, "$Work")
    );
    assert_eq!(m.folder_position(archive).await.unwrap().unwrap(), (ModSeq(3), 3));
    assert_eq!(m.message_count(a).await.unwrap(), 7);

    // Sources for headers, in UID order, missing ones skipped.
    let src = m
        .message_sources(inbox, &[Uid(2), Uid(3), Uid(50)])
        .await
        .unwrap();
    assert_eq!(src.iter().map(|s| s.0).collect::<Vec<_>>(), [Uid(2), Uid(3)]);

    // EXPUNGE: tombstones with one new MODSEQ; a shared body is kept.
    let snapshot = m.folder_state(inbox).await.unwrap().unwrap();
    assert_eq!(
        (snapshot.uidnext, snapshot.highestmodseq, snapshot.msgs.len()),
        (6, ModSeq(11), 5)
    );
    let (removed, unused) = m.expunge(inbox, &[Uid(2), Uid(3), Uid(42)]).await.unwrap();
    assert_eq!(removed, 2);
    // UID 2's body is still in Archive; UID 3's is free.
    assert_eq!(unused, [orig_blob(f, &src, Uid(3))]);
    assert_eq!(
        m.expunged_since(inbox, ModSeq(11)).await.unwrap(),
        [Uid(2), Uid(3)]
    );
    assert!(m.expunged_since(inbox, ModSeq(12)).await.unwrap().is_empty());
    let ch = m.folder_changes(inbox, ModSeq(9)).await.unwrap().unwrap();
    assert_eq!((ch.highestmodseq, ch.uidnext), (ModSeq(12), 6));
    assert_eq!(
        ch.changed.iter().map(|c| c.uid).collect::<Vec<_>>(),
        [Uid(1), Uid(4)]
    );
    assert_eq!(ch.expunged, [Uid(2), Uid(3)]);
    let ch = m.folder_changes(inbox, ModSeq(12)).await.unwrap().unwrap();
    assert!(ch.changed.is_empty() && ch.expunged.is_empty());
    assert!(m
        .folder_changes(FolderId(inbox.get() + 100_000), ModSeq(0))
        .await
        .unwrap()
        .is_none());
    assert!(m
        .folder_state(FolderId(inbox.get() + 100_000))
        .await
        .unwrap()
        .is_none());
    assert_eq!(m.expunge(inbox, &[]).await.unwrap(), (0, vec![]));
    // A UID is never reused.
    assert_eq!(append(f, inbox, b"Subject: later\r\n\r\n").await, Uid(6));
}

fn orig_blob(_f: &Fixture, src: &[(Uid, String, Vec<u8>)], uid: Uid) -> String {
    src.iter().find(|s| s.0 == uid).unwrap().1.clone()
}

async fn usage_is_a_running_total(f: &Fixture) {
    let m = meta(f);
    let (_, a) = mailbox(f, "example.com", "kent").await;
    let (_, b) = mailbox(f, "example.com", "amy").await;
    let inbox = folder(f, a, "INBOX").await;
    let archive = folder(f, a, "Archive").await;
    assert_eq!(m.usage(a).await.unwrap(), 0);
    append(f, inbox, &[b'x'; 100]).await;
    append(f, inbox, &[b'y'; 50]).await;
    assert_eq!(m.usage(a).await.unwrap(), 150);
    m.copy_messages(inbox, &[Uid(1)], archive).await.unwrap();
    assert_eq!(m.usage(a).await.unwrap(), 250);
    // A delivery counts its own header lines too.
    let d = delivery(
        &f.store,
        &[b'z'; 1000],
        vec![local(a, "INBOX"), local(b, "INBOX")],
        vec![],
    );
    let prefix = d.local[0].prefix.len() as i64;
    f.store.commit_delivery(d).await.unwrap();
    assert_eq!(m.usage(a).await.unwrap(), 1250 + prefix);
    assert_eq!(m.usage(b).await.unwrap(), 1000 + prefix);
    f.store.expunge(inbox, &[Uid(1)]).await.unwrap();
    assert_eq!(m.usage(a).await.unwrap(), 1150 + prefix);
    let arch = m.folder_by_id(archive).await.unwrap().unwrap();
    f.store.delete_folder(&arch).await.unwrap();
    assert_eq!(m.usage(a).await.unwrap(), 1050 + prefix);
    assert_eq!(m.usage(AccountId(a.get() + 1000)).await.unwrap(), 0);
}

async fn deliveries_local_and_outbound(f: &Fixture) {
    let m = meta(f);
    let (_, a) = mailbox(f, "example.com", "kent").await;
    let inbox = folder(f, a, "INBOX").await;
    let uidvalidity = m.folder_by_id(inbox).await.unwrap().unwrap().uidvalidity;
    let mut flagged = local(a, "Junk");
    flagged.flags = SEEN;
    flagged.keywords = "$Junk".into();
    flagged.internal_date = Some(1234);
    let d = delivery(
        &f.store,
        b"Subject: hi\r\n\r\nhello\r\n",
        vec![local(a, "INBOX"), flagged],
        vec![
            outbound("far@remote.example", None),
            outbound("held@remote.example", Some("no route")),
        ],
    );
    let (queue_id, blob_id, at) = (d.queue_id.clone(), d.blob_id.clone(), d.received_at);
    f.store.commit_delivery(d).await.unwrap();
    let row = m.message(inbox, Uid(1)).await.unwrap().unwrap();
    assert_eq!(row.queue_id.as_deref(), Some(queue_id.as_str()));
    assert_eq!(
        (row.blob_id.as_str(), row.internal_date, row.modseq),
        (blob_id.as_str(), at, ModSeq(2))
    );
    assert_eq!(row.pop3_uidl, format!("{uidvalidity:08X}{:08X}", 1));
    assert_eq!(
        f.store.message_bytes(&row).unwrap(),
        b"Delivered-To: someone\r\nSubject: hi\r\n\r\nhello\r\n"
    );
    let junk = folder(f, a, "Junk").await;
    let jm = &m.message_meta(junk).await.unwrap()[0];
    assert_eq!(
        (jm.flags, jm.keywords.as_str(), jm.internal_date),
        (SEEN, "$Junk", 1234)
    );
    let q = m.outbound().await.unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(
        (q[0].recipient.as_str(), q[0].state.as_str(), q[0].reason.as_str()),
        ("far@remote.example", "queued", "")
    );
    assert_eq!((q[1].state.as_str(), q[1].reason.as_str()), ("held", "no route"));
    assert_eq!(
        (q[0].queue_id.as_str(), q[0].blob_id.as_str()),
        (queue_id.as_str(), blob_id.as_str())
    );
    assert_eq!(
        (q[0].next_attempt, q[0].created, q[0].attempts, q[0].warned),
        (at, at, 0, false)
    );
    assert_eq!(q[0].prefix, b"Received: by test\r\n");

    // A delivery to a folder that does not exist fails alone.
    let bad = delivery(&f.store, b"x", vec![local(a, "Nowhere")], vec![]);
    let good = delivery(&f.store, b"y", vec![local(a, "INBOX")], vec![]);
    let (r1, r2) = tokio::join!(f.store.commit_delivery(bad), f.store.commit_delivery(good));
    assert_eq!(invalid(r1), format!("account {a} has no folder Nowhere"));
    r2.unwrap();
    assert_eq!(m.folder_position(inbox).await.unwrap().unwrap(), (ModSeq(3), 3));
}

/// A copy for a role (RFC 6154 special use) lands in the folder that has
/// it, whatever its name; with no such folder, in INBOX; never a failure.
async fn deliveries_by_role(f: &Fixture) {
    let m = meta(f);
    let (_, a) = mailbox(f, "example.com", "kent").await;
    let inbox = folder(f, a, "INBOX").await;
    let to = |target: FolderTarget| LocalDelivery {
        folder: target,
        ..local(a, "INBOX")
    };
    let junk = FolderTarget::Role(SpecialUse::Junk);
    let count = |id| async move { m.message_meta(id).await.unwrap().len() };

    f.store
        .commit_delivery(delivery(
            &f.store,
            b"Subject: 1\r\n\r\n",
            vec![to(junk.clone())],
            vec![],
        ))
        .await
        .unwrap();
    let junk_id = folder(f, a, "Junk").await;
    assert_eq!(count(junk_id).await, 1);

    // Renamed: the role goes with the folder.
    m.rename_folder(a, "Junk", "Spam").await.unwrap();
    f.store
        .commit_delivery(delivery(
            &f.store,
            b"Subject: 2\r\n\r\n",
            vec![to(junk.clone())],
            vec![],
        ))
        .await
        .unwrap();
    let spam = m.find_folder(a, "Spam").await.unwrap().unwrap();
    assert_eq!(spam.special_use.as_deref(), Some("\\Junk"));
    assert_eq!(count(spam.id).await, 2);
    assert_eq!(count(inbox).await, 0);
    // A folder that is only called Junk is not the role.
    m.create_folder(a, "Junk", None).await.unwrap();
    f.store
        .commit_delivery(delivery(
            &f.store,
            b"Subject: 3\r\n\r\n",
            vec![to(junk.clone())],
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!(count(spam.id).await, 3);

    // Deleted: INBOX instead, and the commit succeeds.
    f.store.delete_folder(&spam).await.unwrap();
    f.store
        .commit_delivery(delivery(
            &f.store,
            b"Subject: 4\r\n\r\n",
            vec![to(junk.clone()), to(FolderTarget::Role(SpecialUse::Archive))],
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!(count(inbox).await, 1);
    assert_eq!(count(folder(f, a, "Archive").await).await, 1);
    let sent = m.find_folder(a, "Sent").await.unwrap().unwrap();
    f.store
        .commit_delivery(delivery(
            &f.store,
            b"Subject: 5\r\n\r\n",
            vec![to(FolderTarget::Role(SpecialUse::Sent))],
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!(count(sent.id).await, 1);
}

/// A held item keeps its typed reason and, for a local copy, the mailbox
/// and role it was for; releasing it is a delivery commit that removes the
/// row in the same transaction, once.
async fn held_deliveries_and_their_release(f: &Fixture) {
    let m = meta(f);
    let (_, a) = mailbox(f, "example.com", "kent").await;
    let quarantined = OutboundItem {
        held: Some(Hold {
            reason: HoldReason::Quarantine,
            detail: "quarantine: test".into(),
            local: Some(HeldLocal {
                account_id: a,
                folder: FolderTarget::Role(SpecialUse::Junk),
            }),
        }),
        prefix: b"Delivered-To: kent@example.com\r\n".to_vec(),
        ..outbound("kent@example.com", None)
    };
    let d = delivery(
        &f.store,
        b"Subject: held\r\n\r\n",
        vec![],
        vec![
            quarantined,
            outbound("gone@example.com", Some("alias target does not exist")),
        ],
    );
    let (queue_id, blob_id) = (d.queue_id.clone(), d.blob_id.clone());
    f.store.commit_delivery(d).await.unwrap();
    let rows = m.outbound().await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (
            rows[0].state.as_str(),
            rows[0].reason.as_str(),
            rows[0].hold_reason
        ),
        ("held", "quarantine: test", Some(HoldReason::Quarantine))
    );
    assert_eq!(
        rows[0].held_for,
        Some(HeldLocal {
            account_id: a,
            folder: FolderTarget::Role(SpecialUse::Junk)
        })
    );
    assert_eq!(
        (rows[1].hold_reason, rows[1].held_for.as_ref()),
        (Some(HoldReason::UnknownMember), None)
    );
    // Not due, and a held local copy is never put in the queue for MX.
    assert!(m.due_outbound(i64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(m.set_outbound_state(&queue_id, "queued", now()).await.unwrap(), 1);
    let rows = m.outbound().await.unwrap();
    assert_eq!(
        (rows[0].state.as_str(), rows[1].state.as_str()),
        ("held", "queued")
    );
    assert_eq!(
        (rows[1].hold_reason, rows[1].reason.as_str()),
        (None, "alias target does not exist")
    );
    // `queue hold` marks the reason admin; a held row keeps its own.
    m.set_outbound_state(&queue_id, "held", now()).await.unwrap();
    let rows = m.outbound().await.unwrap();
    assert_eq!(
        (rows[0].hold_reason, rows[1].hold_reason),
        (Some(HoldReason::Quarantine), Some(HoldReason::Admin))
    );

    // Released into the mailbox: the Junk role, the same body, the row gone.
    let release = |id| Delivery {
        queue_id: queue_id.clone(),
        blob_id: blob_id.clone(),
        blob_size: 17,
        received_at: now(),
        local: vec![LocalDelivery {
            folder: FolderTarget::Role(SpecialUse::Junk),
            prefix: rows[0].prefix.clone(),
            ..local(a, "INBOX")
        }],
        outbound: vec![],
        released: vec![id],
    };
    f.store.commit_delivery(release(rows[0].id)).await.unwrap();
    let junk = folder(f, a, "Junk").await;
    let msgs = m.messages(junk).await.unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].blob_id, blob_id);
    assert_eq!(
        f.store.message_bytes(&msgs[0]).unwrap(),
        b"Delivered-To: kent@example.com\r\nSubject: held\r\n\r\n"
    );
    assert_eq!(m.outbound().await.unwrap().len(), 1);
    // Twice: refused, and nothing stored the second time.
    assert_eq!(
        invalid(f.store.commit_delivery(release(rows[0].id)).await),
        format!("no held queue item {}", rows[0].id)
    );
    assert_eq!(m.messages(junk).await.unwrap().len(), 1);
}

async fn concurrent_deliveries_share_commits(f: &Fixture) {
    let m = meta(f);
    let (_, a) = mailbox(f, "example.com", "kent").await;
    let inbox = folder(f, a, "INBOX").await;
    // 20 sessions at once, as the MX takes them: every one committed,
    // each with its own UID and MODSEQ.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = f.store.clone();
        tasks.push(tokio::spawn(async move {
            let d = delivery(
                &store,
                format!("Subject: {i}\r\n\r\n").as_bytes(),
                vec![local(a, "INBOX")],
                vec![],
            );
            store.commit_delivery(d).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let metas = m.message_meta(inbox).await.unwrap();
    let uids: Vec<u32> = metas.iter().map(|m| m.uid.get()).collect();
    assert_eq!(uids, (1..=20).collect::<Vec<_>>());
    let mut modseqs: Vec<i64> = metas.iter().map(|m| m.modseq.get()).collect();
    modseqs.sort_unstable();
    modseqs.dedup();
    assert_eq!(modseqs.len(), 20);
    assert_eq!(m.folder_position(inbox).await.unwrap().unwrap(), (ModSeq(21), 21));
}

async fn deliveries_and_expunges_of_one_account_at_once(f: &Fixture) {
    let m = meta(f);
    let (_, a) = mailbox(f, "example.com", "kent").await;
    let junk = folder(f, a, "Junk").await;
    // A delivery to INBOX and Junk while the user empties Junk: on
    // PostgreSQL both take the account's row (its running total) and the
    // folders' rows; taken in different orders they deadlocked and one
    // failed.
    const ROUNDS: usize = 40;
    let store = f.store.clone();
    let deliveries = tokio::spawn(async move {
        for i in 0..ROUNDS {
            let d = delivery(
                &store,
                format!("Subject: {i}\r\n\r\n").as_bytes(),
                vec![local(a, "INBOX"), local(a, "Junk")],
                vec![],
            );
            store.commit_delivery(d).await.unwrap();
        }
    });
    let store = f.store.clone();
    let expunges = tokio::spawn(async move {
        for _ in 0..ROUNDS {
            let uids: Vec<Uid> = store
                .meta()
                .message_meta(junk)
                .await
                .unwrap()
                .iter()
                .map(|m| m.uid)
                .collect();
            store.expunge(junk, &uids).await.unwrap();
            let row = store.meta().folder_by_id(junk).await.unwrap().unwrap();
            store
                .append(&row, b"Subject: appended\r\n\r\n", 0, "", None)
                .await
                .unwrap();
        }
    });
    deliveries.await.unwrap();
    expunges.await.unwrap();
    let inbox = folder(f, a, "INBOX").await;
    assert_eq!(m.message_meta(inbox).await.unwrap().len(), ROUNDS);
    let mut total = 0;
    for id in [inbox, junk] {
        total += m
            .message_meta(id)
            .await
            .unwrap()
            .iter()
            .map(|m| m.size)
            .sum::<i64>();
    }
    assert_eq!(m.usage(a).await.unwrap(), total);
}

async fn queue_operations(f: &Fixture) {
    let m = meta(f);
    let d1 = delivery(
        &f.store,
        b"one",
        vec![],
        vec![outbound("a@r.example", None), outbound("b@r.example", None)],
    );
    let d2 = delivery(&f.store, b"two", vec![], vec![outbound("c@r.example", None)]);
    let (q1, blob1, blob2) = (d1.queue_id.clone(), d1.blob_id.clone(), d2.blob_id.clone());
    f.store.commit_delivery(d1).await.unwrap();
    f.store.commit_delivery(d2).await.unwrap();
    let rows = m.outbound().await.unwrap();
    let ids: Vec<_> = rows.iter().map(|r| r.id).collect();
    assert_eq!(rows.len(), 3);
    // The two deliveries may fall in different seconds.
    let t = rows.iter().map(|r| r.next_attempt).max().unwrap();
    assert_eq!(m.due_outbound(t, 10).await.unwrap().len(), 3);
    assert_eq!(m.due_outbound(t, 2).await.unwrap().len(), 2);
    assert!(m.due_outbound(t - 1000, 10).await.unwrap().is_empty());
    assert_eq!(
        m.next_outbound_attempt().await.unwrap(),
        Some(rows[0].next_attempt)
    );

    m.defer_outbound(ids[0], "451 later", t + 600).await.unwrap();
    let r = &m.outbound().await.unwrap()[0];
    assert_eq!(
        (r.state.as_str(), r.reason.as_str(), r.attempts, r.next_attempt),
        ("deferred", "451 later", 1, t + 600)
    );
    let due: Vec<_> = m
        .due_outbound(t, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(due, [ids[1], ids[2]]);
    // Due first by time, then by id.
    let due: Vec<_> = m
        .due_outbound(t + 600, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(due, [ids[1], ids[2], ids[0]]);
    m.mark_outbound_warned(&[ids[0]]).await.unwrap();
    assert!(m.outbound().await.unwrap()[0].warned);

    assert_eq!(m.hold_sender("sender@example.com", "abuse").await.unwrap(), 3);
    assert_eq!(m.next_outbound_attempt().await.unwrap(), None);
    assert!(m.due_outbound(i64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(m.set_outbound_state(&q1, "queued", t + 5).await.unwrap(), 2);
    assert_eq!(
        m.set_outbound_state(&ids[2].to_string(), "deferred", t + 7)
            .await
            .unwrap(),
        1
    );
    assert_eq!(m.next_outbound_attempt().await.unwrap(), Some(t + 5));
    assert_eq!(
        invalid(m.set_outbound_state("NOSUCHID", "queued", t).await),
        "no waiting queue item NOSUCHID"
    );

    // Finishing frees a body only when its last row goes.
    assert!(m.finish_outbound(&[ids[0]]).await.unwrap().is_empty());
    assert_eq!(m.finish_outbound(&[ids[1], ids[2]]).await.unwrap(), {
        let mut v = vec![blob1, blob2];
        v.sort();
        v
    });
    assert!(m.outbound().await.unwrap().is_empty());
    assert_eq!(
        invalid(f.store.delete_outbound("gone").await),
        "no queue item gone"
    );
}

async fn settings_and_unreferenced_blobs(f: &Fixture) {
    let m = meta(f);
    assert_eq!(m.setting("srs").await.unwrap(), None);
    m.set_setting("srs", "one").await.unwrap();
    m.set_setting("srs", "two").await.unwrap();
    assert_eq!(m.setting("srs").await.unwrap().as_deref(), Some("two"));
    assert_eq!(m.setting_or_init("srs", "three".into()).await.unwrap(), "two");
    assert_eq!(m.setting_or_init("other", "four".into()).await.unwrap(), "four");
    assert_eq!(m.setting_or_init("other", "five".into()).await.unwrap(), "four");

    let (_, a) = mailbox(f, "example.com", "kent").await;
    let in_mailbox = delivery(&f.store, b"m", vec![local(a, "INBOX")], vec![]);
    let in_queue = delivery(&f.store, b"q", vec![], vec![outbound("x@r.example", None)]);
    let (b1, b2) = (in_mailbox.blob_id.clone(), in_queue.blob_id.clone());
    f.store.commit_delivery(in_mailbox).await.unwrap();
    f.store.commit_delivery(in_queue).await.unwrap();
    let unused = m
        .unreferenced_blobs(vec![
            "zz-orphan".into(),
            b2.clone(),
            b1.clone(),
            "aa-orphan".into(),
            "zz-orphan".into(),
        ])
        .await
        .unwrap();
    assert_eq!(unused, ["aa-orphan", "zz-orphan"]);
    assert!(m.unreferenced_blobs(vec![]).await.unwrap().is_empty());
}

async fn watchers_wake_on_changes(f: &Fixture) {
    let m = meta(f);
    let (_, a) = mailbox(f, "example.com", "kent").await;
    let inbox = folder(f, a, "INBOX").await;
    let archive = folder(f, a, "Archive").await;
    let mut w_inbox = m.watch_folder(inbox);
    let mut w_archive = m.watch_folder(archive);
    let mut changes = m.changes();
    w_inbox.mark_unchanged();
    w_archive.mark_unchanged();
    changes.mark_unchanged();

    // This process's commits wake the folder's waiters at once, nobody else's.
    f.store
        .commit_delivery(delivery(&f.store, b"x", vec![local(a, "INBOX")], vec![]))
        .await
        .unwrap();
    assert!(w_inbox.has_changed().unwrap());
    assert!(!w_archive.has_changed().unwrap());
    assert!(changes.has_changed().unwrap());
    w_inbox.mark_unchanged();
    changes.mark_unchanged();
    m.store_flags(inbox, &[Uid(1)], FlagOp::Add, SEEN, &[], None)
        .await
        .unwrap();
    assert!(w_inbox.has_changed().unwrap());
    assert!(changes.has_changed().unwrap());
    w_inbox.mark_unchanged();
    m.copy_messages(inbox, &[Uid(1)], archive).await.unwrap();
    assert!(w_archive.has_changed().unwrap());
    w_archive.mark_unchanged();
    m.expunge(inbox, &[Uid(1)]).await.unwrap();
    assert!(w_inbox.has_changed().unwrap());
    assert!(!w_archive.has_changed().unwrap());
    w_inbox.mark_unchanged();

    // Another process's changes are found by looking (the first look
    // wakes every watched folder: it has nothing to compare with).
    m.look_for_foreign_changes().await.unwrap();
    w_inbox.mark_unchanged();
    w_archive.mark_unchanged();
    assert_eq!(m.look_for_foreign_changes().await.unwrap(), 0);
    let other = f.reopen().await;
    other
        .commit_delivery(delivery(&other, b"y", vec![local(a, "Archive")], vec![]))
        .await
        .unwrap();
    assert!(!w_archive.has_changed().unwrap());
    assert_eq!(m.look_for_foreign_changes().await.unwrap(), 1);
    assert!(w_archive.has_changed().unwrap());
    assert!(!w_inbox.has_changed().unwrap());
    // A deleted folder wakes its waiters too.
    w_archive.mark_unchanged();
    let arch = other.meta().folder_by_id(archive).await.unwrap().unwrap();
    other.delete_folder(&arch).await.unwrap();
    assert_eq!(m.look_for_foreign_changes().await.unwrap(), 1);
    assert!(w_archive.has_changed().unwrap());
}

async fn sent_copies_and_recent(f: &Fixture) {
    let m = meta(f);
    let (_, a) = mailbox(f, "example.com", "kent").await;
    let sent = folder(f, a, "Sent").await;
    let mut copy = local(a, "Sent");
    copy.sent_copy_of = Some("<id-1@example.com>".into());
    f.store
        .commit_delivery(delivery(
            &f.store,
            b"Message-ID: <id-1@example.com>\r\n\r\n",
            vec![copy],
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!(
        m.recent_sent_copy(sent, "<id-1@example.com>").await.unwrap(),
        Some(Uid(1))
    );
    assert_eq!(
        m.recent_sent_copy(sent, "<other@example.com>").await.unwrap(),
        None
    );
    // Expunged: no longer an answer.
    m.expunge(sent, &[Uid(1)]).await.unwrap();
    assert_eq!(
        m.recent_sent_copy(sent, "<id-1@example.com>").await.unwrap(),
        None
    );

    // \Recent: each claim returns the previous mark.
    let inbox = folder(f, a, "INBOX").await;
    assert_eq!(m.claim_recent(inbox).await.unwrap(), 0);
    append(f, inbox, b"a").await;
    append(f, inbox, b"b").await;
    assert_eq!(m.claim_recent(inbox).await.unwrap(), 0);
    assert_eq!(m.claim_recent(inbox).await.unwrap(), 2);
    append(f, inbox, b"c").await;
    assert_eq!(m.claim_recent(inbox).await.unwrap(), 2);
    assert_eq!(m.claim_recent(inbox).await.unwrap(), 3);
}

/// What a folder and its account show: (UIDNEXT, HIGHESTMODSEQ) of the
/// folder, the \Recent mark, the account's messages and bytes (quota).
async fn counters(f: &Fixture, account: AccountId, folder: FolderId) -> (i64, i64, i64, i64, i64) {
    let m = meta(f);
    let (modseq, uidnext) = m.folder_position(folder).await.unwrap().unwrap();
    (
        uidnext,
        modseq.get(),
        m.recent_mark(folder).await.unwrap(),
        m.message_count(account).await.unwrap(),
        m.usage(account).await.unwrap(),
    )
}

/// Messages come in one way (issue #9): an APPEND and a COPY move UIDNEXT,
/// HIGHESTMODSEQ, the message count and the quota's running total exactly
/// as a delivery of the same message does, leave the new message \Recent,
/// and wake the folder's IDLE sessions. Two mailboxes get the same
/// messages, one by delivery, the other by APPEND and COPY, and must agree
/// at every step.
async fn appends_and_copies_count_as_deliveries_do(f: &Fixture) {
    let m = meta(f);
    let (_, by_delivery) = mailbox(f, "example.com", "kent").await;
    let (_, by_imap) = mailbox(f, "example.com", "amy").await;
    let d_inbox = folder(f, by_delivery, "INBOX").await;
    let i_inbox = folder(f, by_imap, "INBOX").await;
    let d_archive = folder(f, by_delivery, "Archive").await;
    let i_archive = folder(f, by_imap, "Archive").await;
    let mut watch_inbox = m.watch_folder(i_inbox);
    let mut watch_archive = m.watch_folder(i_archive);
    watch_inbox.mark_unchanged();
    watch_archive.mark_unchanged();
    // A delivery of a message with no header lines of its own is the same
    // row as an APPEND of it.
    let bare = |account| LocalDelivery {
        prefix: Vec::new(),
        ..local(account, "INBOX")
    };
    let bodies: [&[u8]; 3] = [b"Subject: one\r\n\r\nx", b"Subject: two\r\n\r\nyy", &[b'z'; 700]];
    for body in bodies {
        f.store
            .commit_delivery(delivery(&f.store, body, vec![bare(by_delivery)], vec![]))
            .await
            .unwrap();
        let uid = append(f, i_inbox, body).await;
        assert!(watch_inbox.has_changed().unwrap(), "an APPEND wakes IDLE");
        watch_inbox.mark_unchanged();
        assert_eq!(
            counters(f, by_imap, i_inbox).await,
            counters(f, by_delivery, d_inbox).await
        );
        assert_eq!(
            m.folder_position(i_inbox).await.unwrap().unwrap().1,
            uid.as_i64() + 1
        );
    }
    let total: i64 = bodies.iter().map(|b| b.len() as i64).sum();
    assert_eq!(counters(f, by_imap, i_inbox).await, (4, 4, 0, 3, total));
    // \Recent: both have three new messages for the first session.
    assert_eq!(m.claim_recent(i_inbox).await.unwrap(), 0);
    assert_eq!(m.claim_recent(d_inbox).await.unwrap(), 0);

    // COPY of two into Archive, against deliveries of the same two there.
    for body in &bodies[1..] {
        let mut to_archive = bare(by_delivery);
        to_archive.folder = FolderTarget::Named("Archive".into());
        f.store
            .commit_delivery(delivery(&f.store, body, vec![to_archive], vec![]))
            .await
            .unwrap();
    }
    let (uidvalidity, pairs) = m
        .copy_messages(i_inbox, &[Uid(2), Uid(3)], i_archive)
        .await
        .unwrap();
    assert_eq!(uidvalidity, i_archive.get());
    assert_eq!(pairs, vec![(Uid(2), Uid(1)), (Uid(3), Uid(2))]);
    assert!(watch_archive.has_changed().unwrap(), "a COPY wakes IDLE");
    assert_eq!(
        counters(f, by_imap, i_archive).await,
        counters(f, by_delivery, d_archive).await
    );
    let copied = (bodies[1].len() + bodies[2].len()) as i64;
    assert_eq!(
        counters(f, by_imap, i_archive).await,
        (3, 3, 0, 5, total + copied)
    );
    assert_eq!(
        m.usage(by_imap).await.unwrap(),
        m.usage(by_delivery).await.unwrap()
    );
    // Every row as its twin: sizes, dates aside, UIDLs from UIDVALIDITY and UID.
    let rows = |folder| async move {
        m.message_meta(folder)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.uid, r.modseq, r.size, r.flags))
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(i_archive).await, rows(d_archive).await);
    assert_eq!(rows(i_inbox).await, rows(d_inbox).await);
    let uidls = m.maildrop(i_archive).await.unwrap();
    assert_eq!(uidls.len(), 2);
    assert_ne!(uidls[0].2, uidls[1].2);

    // A refused COPY or APPEND changes nothing.
    let before = counters(f, by_imap, i_archive).await;
    let gone = FolderId(i_archive.get() + 1000);
    assert!(m.copy_messages(i_inbox, &[Uid(1)], gone).await.is_err());
    let missing = postroom_store::mailbox::FolderRow {
        id: gone,
        ..m.folder_by_id(i_archive).await.unwrap().unwrap()
    };
    assert!(f.store.append(&missing, b"x", 0, "", None).await.is_err());
    // A UID that is not there is skipped: nothing copied, nothing taken.
    let (_, none) = m.copy_messages(i_inbox, &[Uid(99)], i_archive).await.unwrap();
    assert!(none.is_empty());
    assert_eq!(counters(f, by_imap, i_archive).await, before);
}

/// APPENDs and COPYs from many sessions at once, mixed with deliveries
/// into the same folder: every one committed, each with its own UID and
/// MODSEQ, and the counters add up.
async fn concurrent_appends_copies_and_deliveries(f: &Fixture) {
    let m = meta(f);
    let (_, a) = mailbox(f, "example.com", "kent").await;
    let inbox = folder(f, a, "INBOX").await;
    let archive = folder(f, a, "Archive").await;
    let first = append(f, archive, b"Subject: template\r\n\r\nbody").await;
    let inbox_row = m.folder_by_id(inbox).await.unwrap().unwrap();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let store = f.store.clone();
        let row = inbox_row.clone();
        tasks.push(tokio::spawn(async move {
            match i % 3 {
                0 => store
                    .commit_delivery(delivery(
                        &store,
                        b"Subject: d\r\n\r\nbody",
                        vec![local(a, "INBOX")],
                        vec![],
                    ))
                    .await
                    .map(|_| 1),
                1 => store
                    .append(&row, b"Subject: a\r\n\r\nbody", 0, "", None)
                    .await
                    .map(|_| 1),
                _ => store
                    .meta()
                    .copy_messages(archive, &[first], inbox)
                    .await
                    .map(|(_, pairs)| pairs.len()),
            }
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await.unwrap().unwrap();
    }
    assert_eq!(stored, 30);
    let metas = m.message_meta(inbox).await.unwrap();
    let uids: Vec<u32> = metas.iter().map(|m| m.uid.get()).collect();
    assert_eq!(uids, (1..=30).collect::<Vec<_>>());
    let mut modseqs: Vec<i64> = metas.iter().map(|m| m.modseq.get()).collect();
    modseqs.sort_unstable();
    modseqs.dedup();
    assert_eq!(modseqs.len(), 30);
    assert_eq!(m.folder_position(inbox).await.unwrap().unwrap(), (ModSeq(31), 31));
    let template = b"Subject: template\r\n\r\nbody".len() as i64;
    let bytes: i64 = metas.iter().map(|r| r.size).sum::<i64>() + template;
    assert_eq!(m.usage(a).await.unwrap(), bytes);
    assert_eq!(m.message_count(a).await.unwrap(), 31);
}

async fn schema_too_new(f: &Fixture) {
    let data = f.dir.path().join("data");
    match &f.pg {
        None => {
            drop(f.store.clone());
            let conn = rusqlite::Connection::open(data.join("postroom.sqlite")).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        Some(pg) => {
            let c = connect(&pg.url).await;
            c.execute("UPDATE schema_version SET version = $1", &[&(SCHEMA_VERSION + 1)])
                .await
                .unwrap();
        }
    }
    let r = match &f.pg {
        None => Store::open(&data).map(|_| ()),
        Some(pg) => Store::open_postgres(&pg.url, None, &data).await.map(|_| ()),
    };
    match r {
        Err(StoreError::TooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION))
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
}

// ---------------------------------------------------------------------
// PostgreSQL only: connections.

/// The error a failed open gives, which must be a `Backend` one.
fn backend_error(r: Result<Store, StoreError>) -> String {
    match r {
        Err(StoreError::Backend(s)) => s,
        Err(e) => panic!("expected StoreError::Backend, got {e:?}"),
        Ok(_) => panic!("expected an error"),
    }
}

#[tokio::test]
async fn postgres_refused_connection_is_a_clear_error() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://postroom:pw@127.0.0.1:{port}/postroom");
    let e = backend_error(Store::open_postgres(&url, None, dir.path()).await);
    assert!(e.contains(&format!("127.0.0.1:{port}/postroom")), "{e}");
    assert!(!e.contains("pw"), "the password must not be shown: {e}");
}

#[tokio::test]
async fn postgres_silent_server_times_out() {
    // A server that accepts and never answers: the open must end with an
    // error (the connect timeout), not hang.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://postroom:pw@127.0.0.1:{port}/postroom");
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        Store::open_postgres(&url, None, dir.path()),
    )
    .await
    .expect("the open must not hang");
    backend_error(r);
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wrong_password_and_password_sources() {
    let Some(pg) = PgDatabase::create("passwords").await else {
        eprintln!("POSTROOM_TEST_POSTGRES is not set: PostgreSQL not tested");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config: tokio_postgres::Config = pg.url.parse().unwrap();
    let password = String::from_utf8(config.get_password().unwrap().to_vec()).unwrap();
    let without = pg.url.replacen(&format!(":{password}@"), "@", 1);
    assert_ne!(without, pg.url);
    let wrong = pg.url.replacen(&format!(":{password}@"), ":wrong@", 1);
    let e = backend_error(Store::open_postgres(&wrong, None, dir.path()).await);
    assert!(e.contains("password authentication failed"), "{e}");
    // From a file.
    let file = dir.path().join("pgpass");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let store = Store::open_postgres(&without, Some(&file), &dir.path().join("a"))
        .await
        .unwrap();
    assert!(store.meta().domains().await.unwrap().is_empty());
    drop(store);
    // From PGPASSWORD. (Only this test opens a URL without a password
    // and no file, so setting it here changes no other test.)
    std::env::set_var("PGPASSWORD", &password);
    let store = Store::open_postgres(&without, None, &dir.path().join("b"))
        .await
        .unwrap();
    assert!(store.meta().domains().await.unwrap().is_empty());
    drop(store);
    pg.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fresh_database_opened_at_once() {
    let Some(pg) = PgDatabase::create("at_once").await else {
        eprintln!("POSTROOM_TEST_POSTGRES is not set: PostgreSQL not tested");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Four processes start on an empty database at the same moment: one
    // creates the schema, the others wait for it and use it.
    let mut opens = Vec::new();
    for i in 0..4 {
        let url = pg.url.clone();
        let data = dir.path().join(format!("d{i}"));
        opens.push(tokio::spawn(async move {
            Store::open_postgres(&url, None, &data).await
        }));
    }
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.unwrap().unwrap());
    }
    stores[0]
        .meta()
        .add_domain("example.com", "example.com", None)
        .await
        .unwrap();
    assert!(stores[3].meta().domain("example.com").await.unwrap().is_some());
    let c = connect(&pg.url).await;
    let n: i64 = c
        .query_one("SELECT COUNT(*) FROM schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    drop(stores);
    pg.drop_database().await;
}

#[test]
fn the_test_url_helper_replaces_the_database() {
    assert_eq!(
        with_database("postgres://u:p@h:1/postroom", "t_1"),
        "postgres://u:p@h:1/t_1"
    );
}

/// A PostgreSQL database at schema version 7 (the first released) is
/// brought to the current version on open, step by step: at 8 its held
/// rows become reason `other`, with no mailbox recorded (their release
/// resolves the recipient again); 9 adds the console's tables, 10 the
/// MODSEQ indexes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upgrades_a_v7_database() {
    let Some(pg) = PgDatabase::create("v7").await else {
        eprintln!("POSTROOM_TEST_POSTGRES is not set: PostgreSQL not tested");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Version 7 as it was: today's schema without what version 8 added.
    drop(
        Store::open_postgres(&pg.url, None, &dir.path().join("d"))
            .await
            .unwrap(),
    );
    let c = connect(&pg.url).await;
    c.batch_execute(
        "ALTER TABLE outbound DROP COLUMN hold_reason, DROP COLUMN local_account, DROP COLUMN local_folder;
         DROP TABLE customer_domains; DROP TABLE customers; DROP TABLE domain_admin_permissions; DROP TABLE provider_admin_permissions;
         DROP TABLE provider_admins;
         DROP TABLE api_tokens;
         DROP TABLE filter_domains, filter_whitelist, filter_results;
         DROP INDEX messages_modseq; DROP INDEX expunged_modseq;
         DROP TABLE classifier_tokens; DROP TABLE classifier_totals;
         UPDATE schema_version SET version = 7;
         INSERT INTO outbound (queue_id, blob_id, prefix, sender, recipient, state, reason, next_attempt, created)
             VALUES ('q', 'b', '', 's@x.example', 'r@y.example', 'held', 'alias target does not exist', 0, 0),
                    ('q', 'b', '', 's@x.example', 'z@y.example', 'queued', '', 0, 0);",
    )
    .await
    .unwrap();
    let store = Store::open_postgres(&pg.url, None, &dir.path().join("d"))
        .await
        .unwrap();
    let rows = store.meta().outbound().await.unwrap();
    assert_eq!(
        (
            rows[0].hold_reason,
            rows[0].held_for.as_ref(),
            rows[0].reason.as_str()
        ),
        (Some(HoldReason::Other), None, "alias target does not exist")
    );
    assert_eq!(rows[1].hold_reason, None);
    // Version 9's tables are there too.
    assert!(store.meta().provider_admins().await.unwrap().is_empty());
    assert!(store.meta().api_tokens(None).await.unwrap().is_empty());
    assert!(store.meta().customers().await.unwrap().is_empty());
    let v: i64 = c
        .query_one("SELECT max(version) FROM schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, SCHEMA_VERSION);
    // Version 10: a folder's changes since a MODSEQ by index.
    let indexes: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE indexname IN ('messages_modseq', 'expunged_modseq')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexes, 2);
    drop(store);
    pg.drop_database().await;
}

/// A PostgreSQL database at schema version 9 (the console's tables, as
/// main released it) gets version 10's MODSEQ indexes, version 11's
/// filter tables and version 12's classifier tables on open and keeps its
/// rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upgrades_a_v9_database() {
    let Some(pg) = PgDatabase::create("v9").await else {
        eprintln!("POSTROOM_TEST_POSTGRES is not set: PostgreSQL not tested");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    drop(
        Store::open_postgres(&pg.url, None, &dir.path().join("d"))
            .await
            .unwrap(),
    );
    let c = connect(&pg.url).await;
    c.batch_execute(
        "DROP INDEX messages_modseq; DROP INDEX expunged_modseq;
         DROP TABLE filter_domains, filter_whitelist, filter_results;
         DROP TABLE classifier_tokens; DROP TABLE classifier_totals;
         DROP TABLE customer_domains; DROP TABLE customers; DROP TABLE domain_admin_permissions; DROP TABLE provider_admin_permissions;
         UPDATE schema_version SET version = 9;
         INSERT INTO provider_admins (address, display, password_hash, created)
             VALUES ('ops@example.com', 'ops@example.com', 'x', 0);",
    )
    .await
    .unwrap();
    let store = Store::open_postgres(&pg.url, None, &dir.path().join("d"))
        .await
        .unwrap();
    assert_eq!(store.meta().provider_admins().await.unwrap().len(), 1);
    let (v, indexes): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT max(version) FROM schema_version),
                        (SELECT count(*) FROM pg_indexes WHERE indexname IN ('messages_modseq', 'expunged_modseq'))",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((v, indexes), (SCHEMA_VERSION, 2));
    assert_eq!(SCHEMA_VERSION, 13);
    // Version 11's tables came with the upgrade.
    store
        .meta()
        .whitelist_add("x.example", "y.example")
        .await
        .unwrap();
    assert_eq!(store.meta().whitelist(None).await.unwrap().len(), 1);
    // Version 12: the classifier's tables, its totals row made.
    assert_eq!(store.meta().classifier_totals().await.unwrap().spam, 0);
    drop(store);
    pg.drop_database().await;
}

// ---------------------------------------------------------------------
// Opening without creating (issue #12: a mistyped --data-dir made a fresh,
// empty store).

fn no_store(r: Result<Store, StoreError>) -> String {
    match r {
        Err(StoreError::NoStore(s)) => s,
        Err(e) => panic!("expected StoreError::NoStore, got {e:?}"),
        Ok(_) => panic!("expected NoStore, got a store"),
    }
}

async fn open_place(
    data_dir: &std::path::Path,
    database: Option<&str>,
    create: bool,
) -> Result<Store, StoreError> {
    Store::open_configured(&postroom_store::StorePlace {
        data_dir,
        database,
        password_file: None,
        blobs: None,
        create,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_without_create_makes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo");
    // A missing folder: named, and not made.
    let e = no_store(open_place(&typo, None, false).await);
    assert!(e.contains(&typo.display().to_string()), "{e}");
    assert!(!typo.exists());
    // A folder without a database: named, and left empty.
    std::fs::create_dir(&typo).unwrap();
    let e = no_store(open_place(&typo, None, false).await);
    assert!(e.contains("no postroom.sqlite"), "{e}");
    assert_eq!(std::fs::read_dir(&typo).unwrap().count(), 0);
    // Created on request, then opened as it is.
    let made = open_place(&typo, None, true).await.unwrap();
    made.meta()
        .add_domain("example.com", "example.com", None)
        .await
        .unwrap();
    drop(made);
    let again = open_place(&typo, None, false).await.unwrap();
    assert!(again.meta().domain("example.com").await.unwrap().is_some());

    // PostgreSQL: an empty database is refused and stays empty.
    let Some(pg) = PgDatabase::create("no_create").await else {
        eprintln!("POSTROOM_TEST_POSTGRES is not set: PostgreSQL not tested");
        return;
    };
    let data = dir.path().join("pgdata");
    std::fs::create_dir(&data).unwrap();
    no_store(open_place(&data, Some(&pg.url), false).await);
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        0,
        "no blobs folder either"
    );
    let c = connect(&pg.url).await;
    let tables: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "nothing is made in the database");
    let made = open_place(&data, Some(&pg.url), true).await.unwrap();
    drop(made);
    open_place(&data, Some(&pg.url), false).await.unwrap();
    drop(c);
    pg.drop_database().await;
}
