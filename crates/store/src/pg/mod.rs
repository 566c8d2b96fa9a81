//! The PostgreSQL back end: the storage traits ([`crate::backend`]) on a
//! PostgreSQL database, with the SQLite back end's semantics (the same
//! errors, UID/MODSEQ/UIDVALIDITY rules, tombstones, running totals).
//! Message bodies stay in the blob directory, as with SQLite.
//!
//! Concurrency: SQLite runs one writer at a time; here transactions run at
//! once (READ COMMITTED), so every write that reads before it writes first
//! locks the row it depends on (the folder for UIDs, MODSEQs and keywords,
//! the account for its folder names, the domain for its mailboxes), which
//! gives the same answers SQLite's single writer does.
//!
//! No driver type leaves this module: errors become
//! [`StoreError::Backend`], rows the structs of the traits.

mod classifier;
mod committer;
mod console;
mod customers;
mod directory;
mod filter;
mod mailbox;
mod migrate;
mod schema;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::backend::{DeliveryMeta, Metadata, QueueMeta, Watch};
use crate::committer::Delivery;
use crate::ids::{FolderId, OutboundId};
use crate::queue::OutboundRow;
use crate::watch::{FolderWatch, ForeignChanges};
use crate::{BlobStore, Result, StoreError};

type PgClient = deadpool_postgres::Object;

/// How long to wait for the database server to answer a connection: an
/// unreachable host (packets dropped) must give an error, not a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may go unanswered before it counts as dead.
const DEAD_PEER: Duration = Duration::from_secs(30);
/// How long a call waits for a pooled connection before it fails.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// Connections per process: IMAP sessions make short calls, and the
/// committer holds one; PostgreSQL's default `max_connections` is 100,
/// shared by every node.
const POOL_SIZE: usize = 16;

/// A driver error, as text: the driver's own `Display` says only "db
/// error" for the server's errors, so the server's message is added.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

pub(crate) fn pg_err(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(format!("postgresql: {}", describe(&e)))
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        pg_err(e)
    }
}

/// The SQLSTATE of a server error.
fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(|c| c.code())
}

/// A transaction that lost a deadlock or a serialization conflict
/// (another node's batch): it may simply be run again.
fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(sqlstate(e), Some("40P01" | "40001"))
}

/// Seconds since the epoch.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Where the database is: the URL's host, port and database name, never
/// its password (for errors and logs).
fn place(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

/// The connection settings: a URL `postgres://user[:password]@host:port/dbname`,
/// the password in it, else in `password_file` (its first line), else in
/// `PGPASSWORD`.
pub(crate) fn config_from(url: &str, password_file: Option<&Path>) -> Result<tokio_postgres::Config> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError::Invalid(
            "the PostgreSQL URL must look like postgres://user[:password]@host:port/dbname".into(),
        ));
    }
    let mut config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        StoreError::Invalid(format!("invalid PostgreSQL URL: {}", describe(&e)))
    })?;
    if config.get_user().is_none() {
        return Err(StoreError::Invalid("the PostgreSQL URL names no user".into()));
    }
    match (config.get_password().is_some(), password_file) {
        (true, Some(_)) => {
            return Err(StoreError::Invalid(
                "give the PostgreSQL password in the URL or in password_file, not both".into(),
            ))
        }
        (true, None) => {}
        (false, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                StoreError::Invalid(format!(
                    "cannot read the PostgreSQL password file {}: {e}",
                    path.display()
                ))
            })?;
            let password = text.lines().next().unwrap_or("");
            if password.is_empty() {
                return Err(StoreError::Invalid(format!(
                    "the PostgreSQL password file {} is empty",
                    path.display()
                )));
            }
            config.password(password);
        }
        (false, None) => {
            if let Some(p) = std::env::var_os("PGPASSWORD") {
                config.password(p.into_encoded_bytes());
            }
        }
    }
    config.connect_timeout(CONNECT_TIMEOUT);
    // A server that goes away mid-call (host down, network cut) must fail
    // the call, not hold it for TCP's default of about 15 minutes of
    // retransmissions: unacknowledged data or silent keepalives for
    // DEAD_PEER end the connection.
    config.tcp_user_timeout(DEAD_PEER);
    config.keepalives_idle(DEAD_PEER);
    // A `250` promises the message is on disk: every commit waits for its
    // WAL flush, whatever the server's default says.
    let options = match config.get_options() {
        Some(o) if !o.is_empty() => format!("{o} -c synchronous_commit=on"),
        _ => "-c synchronous_commit=on".to_string(),
    };
    config.options(options);
    config.application_name("postroom");
    Ok(config)
}

/// The PostgreSQL back end.
pub struct Postgres {
    pool: Pool,
    place: String,
    committer: committer::Committer,
    /// Bumped after every commit made through this handle.
    changed: tokio::sync::watch::Sender<u64>,
    folders: Arc<FolderWatch>,
    foreign: tokio::sync::Mutex<ForeignChanges>,
}

impl Postgres {
    /// Connects (see [`config_from`] for the URL and password), creates the
    /// schema in an empty database and checks the version of an existing
    /// one. `blobs` is where deliveries' bodies are: the committer syncs it
    /// before it commits the rows that name them.
    pub async fn connect(
        url: &str,
        password_file: Option<&Path>,
        blobs: Arc<dyn BlobStore>,
    ) -> Result<Postgres> {
        Postgres::open(url, password_file, blobs, true).await
    }

    /// [`Postgres::connect`]; with `create` false an empty database is
    /// refused ([`crate::StoreError::NoStore`]) instead of given the
    /// schema: only `serve` and `postroom init` make one.
    pub async fn open(
        url: &str,
        password_file: Option<&Path>,
        blobs: Arc<dyn BlobStore>,
        create: bool,
    ) -> Result<Postgres> {
        let config = config_from(url, password_file)?;
        let place = place(&config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT + Duration::from_secs(1)))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Invalid(format!("PostgreSQL pool: {e}")))?;
        let folders: Arc<FolderWatch> = Arc::default();
        let changed = tokio::sync::watch::Sender::new(0);
        let mut client = get(&pool, &place).await?;
        schema::ensure(&mut client, create).await?;
        drop(client);
        let committer = committer::Committer::start(pool.clone(), place.clone(), Arc::clone(&folders), blobs);
        Ok(Postgres {
            pool,
            place,
            committer,
            changed,
            folders,
            foreign: Default::default(),
        })
    }

    async fn client(&self) -> Result<PgClient> {
        get(&self.pool, &self.place).await
    }

    /// New message rows (a delivery, an APPEND, a COPY) through the group
    /// committer, which wakes the folders' IDLE sessions; then the queue.
    pub(super) async fn commit(&self, work: crate::committer::Work) -> Result<crate::committer::Done> {
        let done = self.committer.commit(work).await?;
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        Ok(done)
    }

    /// After a commit: wakes the sessions waiting on the folders it
    /// changed, and the queue.
    fn committed(&self, folders: &[FolderId]) {
        self.folders.wake_ids(folders.iter().map(|f| f.0));
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

async fn get(pool: &Pool, place: &str) -> Result<PgClient> {
    pool.get().await.map_err(|e| match e {
        PoolError::Backend(e) => {
            StoreError::Backend(format!("cannot use PostgreSQL at {place}: {}", describe(&e)))
        }
        PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => StoreError::Backend(format!(
            "no connection to PostgreSQL at {place} free within {} s ({POOL_SIZE} in use)",
            POOL_WAIT.as_secs()
        )),
        PoolError::Timeout(_) => StoreError::Backend(format!(
            "PostgreSQL at {place} did not answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
        e => StoreError::Backend(format!("PostgreSQL at {place}: {e}")),
    })
}

impl Metadata for Postgres {
    fn kind(&self) -> &'static str {
        "postgresql"
    }
}

fn outbound_row(r: &tokio_postgres::Row) -> Result<OutboundRow> {
    Ok(OutboundRow {
        id: OutboundId(r.try_get(0)?),
        queue_id: r.try_get(1)?,
        blob_id: r.try_get(2)?,
        prefix: r.try_get(3)?,
        sender: r.try_get(4)?,
        recipient: r.try_get(5)?,
        state: r.try_get(6)?,
        reason: r.try_get(7)?,
        attempts: r.try_get(8)?,
        next_attempt: r.try_get(9)?,
        created: r.try_get(10)?,
        warned: r.try_get(11)?,
        hold_reason: None,
        held_for: None,
    }
    .with_hold(
        &r.try_get::<_, String>(12)?,
        r.try_get(13)?,
        &r.try_get::<_, String>(14)?,
    ))
}

const OUTBOUND_COLS: &str = crate::queue::COLS;

/// Of these body ids, the ones no message and no queue row refers to
/// (`blob::unreferenced` for PostgreSQL), in the caller's transaction.
async fn unreferenced<C: tokio_postgres::GenericClient + Sync>(
    c: &C,
    mut ids: Vec<String>,
) -> Result<Vec<String>> {
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Ok(ids);
    }
    let rows = c
        .query(
            "SELECT b FROM unnest($1::text[]) AS b
             WHERE NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = b)
               AND NOT EXISTS (SELECT 1 FROM outbound WHERE blob_id = b)
             ORDER BY b COLLATE \"C\"",
            &[&ids],
        )
        .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

#[async_trait]
impl QueueMeta for Postgres {
    async fn outbound(&self) -> Result<Vec<OutboundRow>> {
        let c = self.client().await?;
        let rows = c
            .query(&format!("SELECT {OUTBOUND_COLS} FROM outbound ORDER BY id"), &[])
            .await?;
        rows.iter().map(outbound_row).collect()
    }

    async fn held_between(&self, since: i64, until: i64) -> Result<Vec<OutboundRow>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {OUTBOUND_COLS} FROM outbound WHERE state = 'held' AND created >= $1 AND created < $2 ORDER BY id"
                ),
                &[&since, &until],
            )
            .await?;
        rows.iter().map(outbound_row).collect()
    }

    async fn queue_summary(&self) -> Result<Vec<crate::queue::QueueCount>> {
        let c = self.client().await?;
        let rows = c.query(crate::queue::SUMMARY, &[]).await?;
        rows.iter()
            .map(|r| {
                Ok(crate::queue::QueueCount::new(
                    r.try_get(0)?,
                    r.try_get::<_, &str>(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                ))
            })
            .collect()
    }

    async fn due_outbound(&self, now: i64, limit: usize) -> Result<Vec<OutboundRow>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {OUTBOUND_COLS} FROM outbound WHERE state IN ('queued', 'deferred') AND next_attempt <= $1
                 ORDER BY next_attempt, id LIMIT $2"
            ))
            .await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = c.query(&st, &[&now, &limit]).await?;
        rows.iter().map(outbound_row).collect()
    }

    async fn next_outbound_attempt(&self) -> Result<Option<i64>> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT MIN(next_attempt) FROM outbound WHERE state IN ('queued', 'deferred')",
                &[],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn mark_outbound_warned(&self, ids: &[OutboundId]) -> Result<()> {
        let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
        let c = self.client().await?;
        c.execute("UPDATE outbound SET warned = TRUE WHERE id = ANY($1)", &[&ids])
            .await?;
        self.committed(&[]);
        Ok(())
    }

    async fn defer_outbound(&self, id: OutboundId, reason: &str, next_attempt: i64) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "UPDATE outbound SET state = 'deferred', reason = $2, attempts = attempts + 1, next_attempt = $3
             WHERE id = $1",
            &[&id.0, &reason, &next_attempt],
        )
        .await?;
        self.committed(&[]);
        Ok(())
    }

    async fn hold_sender(&self, sender: &str, reason: &str) -> Result<usize> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE outbound SET state = 'held', reason = $2, hold_reason = 'sender-over-limits'
                 WHERE sender = $1 AND state IN ('queued', 'deferred')",
                &[&sender, &reason],
            )
            .await?;
        self.committed(&[]);
        Ok(n as usize)
    }

    async fn set_outbound_state(&self, queue_id_or_row: &str, state: &str, now: i64) -> Result<usize> {
        let c = self.client().await?;
        let n = c
            .execute(
                &format!(
                    "UPDATE outbound SET state = $2, next_attempt = $3, {}
                     WHERE (queue_id = $1 OR CAST(id AS TEXT) = $1) AND state IN ('queued', 'deferred', 'held')
                       AND ($2 = 'held' OR local_account IS NULL)",
                    crate::queue::SET_HOLD_REASON.replace("?2", "$2")
                ),
                &[&queue_id_or_row, &state, &now],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::Invalid(format!(
                "no waiting queue item {queue_id_or_row}"
            )));
        }
        self.committed(&[]);
        Ok(n as usize)
    }

    async fn finish_outbound(&self, ids: &[OutboundId]) -> Result<Vec<String>> {
        let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let rows = tx
            .query(
                "DELETE FROM outbound WHERE id = ANY($1) RETURNING blob_id",
                &[&ids],
            )
            .await?;
        let blobs = rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<Vec<String>, _>>()?;
        let unused = unreferenced(&*tx, blobs).await?;
        tx.commit().await?;
        self.committed(&[]);
        Ok(unused)
    }
}

#[async_trait]
impl DeliveryMeta for Postgres {
    async fn commit_delivery(&self, delivery: Delivery) -> Result<()> {
        self.commit(crate::committer::Work::Deliver(delivery)).await?;
        Ok(())
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let c = self.client().await?;
        let row = c
            .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )
        .await?;
        self.committed(&[]);
        Ok(())
    }

    async fn setting_or_init(&self, key: &str, init: String) -> Result<String> {
        let c = self.client().await?;
        // Two nodes initialising at once: the first insert wins, and both
        // read what it stored.
        c.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&key, &init],
        )
        .await?;
        let row = c
            .query_one("SELECT value FROM settings WHERE key = $1", &[&key])
            .await?;
        self.committed(&[]);
        Ok(row.try_get(0)?)
    }

    async fn unreferenced_blobs(&self, ids: Vec<String>) -> Result<Vec<String>> {
        let c = self.client().await?;
        unreferenced(&**c, ids).await
    }
}

#[async_trait]
impl Watch for Postgres {
    fn watch_folder(&self, folder: FolderId) -> tokio::sync::watch::Receiver<()> {
        self.folders.subscribe(folder.0)
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    async fn look_for_foreign_changes(&self) -> Result<usize> {
        let mut state = self.foreign.lock().await;
        let watched = self.folders.watched();
        let mut now = HashMap::with_capacity(watched.len());
        if !watched.is_empty() {
            let c = self.client().await?;
            // One query for all of them: an array parameter has no limit
            // on its length worth worrying about (1 GB).
            let rows = c
                .query(
                    "SELECT id, highestmodseq, uidnext FROM folders WHERE id = ANY($1)",
                    &[&watched],
                )
                .await?;
            for r in rows {
                now.insert(r.try_get::<_, i64>(0)?, (r.try_get(1)?, r.try_get(2)?));
            }
        }
        Ok(state.update(&watched, now, &self.folders))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(r: Result<tokio_postgres::Config>) -> String {
        match r {
            Err(StoreError::Invalid(s)) => s,
            Err(e) => panic!("expected Invalid, got {e:?}"),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn the_url_gives_user_host_port_and_database() {
        let c = config_from("postgres://mail:secret@db.example:6543/postroom", None).unwrap();
        assert_eq!(c.get_user(), Some("mail"));
        assert_eq!(c.get_password(), Some(&b"secret"[..]));
        assert_eq!(place(&c), "db.example:6543/postroom");
        assert_eq!(c.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert!(c.get_options().unwrap_or("").contains("synchronous_commit=on"));
        // Whatever the URL asks for, commits wait for their flush.
        let c = config_from("postgres://mail@db/p?options=-c%20work_mem%3D8MB", None).unwrap();
        let options = c.get_options().unwrap_or("");
        assert!(options.contains("work_mem=8MB") && options.ends_with("synchronous_commit=on"));
    }

    #[test]
    fn the_password_may_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let c = config_from("postgres://mail@db/p", Some(&file)).unwrap();
        assert_eq!(c.get_password(), Some(&b"from-file"[..]));
        assert!(invalid(config_from("postgres://mail:x@db/p", Some(&file))).contains("not both"));
        std::fs::write(&file, "\n").unwrap();
        assert!(invalid(config_from("postgres://mail@db/p", Some(&file))).contains("is empty"));
        let missing = dir.path().join("missing");
        assert!(invalid(config_from("postgres://mail@db/p", Some(&missing))).contains("cannot read"));
    }

    /// A fresh database on the test cluster (`POSTROOM_TEST_POSTGRES`).
    async fn test_database(name: &str) -> Option<String> {
        let admin = std::env::var("POSTROOM_TEST_POSTGRES")
            .ok()
            .filter(|u| !u.is_empty())?;
        let (c, conn) = tokio_postgres::connect(&admin, NoTls).await.unwrap();
        tokio::spawn(conn);
        let name = format!("u_{name}_{}", std::process::id());
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let base = admin.split('?').next().unwrap_or(&admin);
        Some(format!("{}/{name}", &base[..base.rfind('/').unwrap()]))
    }

    // Single-threaded on purpose: the 20 sessions all hand over their
    // delivery before the committer task next runs, as they would while
    // it waited for the previous commit's flush.
    #[tokio::test]
    async fn concurrent_deliveries_share_one_transaction() {
        let Some(url) = test_database("group_commit").await else {
            eprintln!("POSTROOM_TEST_POSTGRES is not set: PostgreSQL not tested");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn BlobStore> =
            Arc::new(crate::FsBlobStore::new(dir.path().join("blobs"), Arc::new(crate::RealFs)).unwrap());
        let pg = Arc::new(Postgres::connect(&url, None, Arc::clone(&blobs)).await.unwrap());
        use crate::backend::AdminMeta;
        let d = pg.add_domain("example.com", "example.com", None).await.unwrap();
        let a = pg.add_account(d.id, "kent", "kent", None, None).await.unwrap();
        let mut sessions = Vec::new();
        for i in 0..20 {
            let id = format!("0000000000{i:02}AAAAAAAA");
            blobs.put(&id, b"Subject: x\r\n\r\n").unwrap();
            let delivery = Delivery {
                queue_id: id.clone(),
                blob_id: id,
                blob_size: 15,
                received_at: now(),
                local: vec![crate::LocalDelivery {
                    account_id: a.id,
                    folder: crate::FolderTarget::Inbox,
                    prefix: Vec::new(),
                    flags: 0,
                    keywords: String::new(),
                    internal_date: None,
                    sent_copy_of: None,
                }],
                outbound: Vec::new(),
                released: Vec::new(),
            };
            let pg = Arc::clone(&pg);
            sessions.push(tokio::spawn(async move { pg.commit_delivery(delivery).await }));
        }
        for s in sessions {
            s.await.unwrap().unwrap();
        }
        // 20 deliveries, one transaction: one WAL flush; and their
        // statements sent at once, not one savepoint after another.
        assert_eq!(pg.committer.batches(), 1);
        assert_eq!(pg.committer.slow_batches(), 0);
        use crate::backend::MailboxMeta;
        let inbox = pg.find_folder(a.id, "INBOX").await.unwrap().unwrap();
        assert_eq!(inbox.uidnext, 21);
    }

    fn inbox_delivery(id: &str, account: crate::ids::AccountId, folder: crate::FolderTarget) -> Delivery {
        Delivery {
            queue_id: id.into(),
            blob_id: id.into(),
            blob_size: 15,
            received_at: now(),
            local: vec![crate::LocalDelivery {
                account_id: account,
                folder,
                prefix: Vec::new(),
                flags: 0,
                keywords: String::new(),
                internal_date: None,
                sent_copy_of: None,
            }],
            outbound: Vec::new(),
            released: Vec::new(),
        }
    }

    // A bad delivery makes the pipelined attempt fail: the batch is run
    // again in savepoints, where it fails alone; the POP3 UIDL made in SQL
    // is the one `mailbox::pop3_uidl` makes, past 8 hex digits too.
    #[tokio::test]
    async fn a_bad_delivery_fails_alone_and_uidls_match() {
        let Some(url) = test_database("pipelined").await else {
            eprintln!("POSTROOM_TEST_POSTGRES is not set: PostgreSQL not tested");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn BlobStore> =
            Arc::new(crate::FsBlobStore::new(dir.path().join("blobs"), Arc::new(crate::RealFs)).unwrap());
        let pg = Arc::new(Postgres::connect(&url, None, Arc::clone(&blobs)).await.unwrap());
        use crate::backend::{AdminMeta, MailboxMeta};
        let d = pg.add_domain("example.com", "example.com", None).await.unwrap();
        let a = pg.add_account(d.id, "kent", "kent", None, None).await.unwrap();
        let inbox = pg.find_folder(a.id, "INBOX").await.unwrap().unwrap();
        let c = pg.client().await.unwrap();
        c.execute(
            "UPDATE folders SET uidvalidity = $1, uidnext = $2 WHERE id = $3",
            &[&0x1_2345_6789_i64, &0xABCD_EF01_i64, &inbox.id.0],
        )
        .await
        .unwrap();
        drop(c);
        let mut sessions = Vec::new();
        for (i, folder) in [
            crate::FolderTarget::Inbox,
            crate::FolderTarget::Named("Nowhere".into()),
            crate::FolderTarget::Inbox,
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("0000000000{i:02}BBBBBBBB");
            blobs.put(&id, b"Subject: x\r\n\r\n").unwrap();
            let pg = Arc::clone(&pg);
            let delivery = inbox_delivery(&id, a.id, folder);
            sessions.push(tokio::spawn(async move { pg.commit_delivery(delivery).await }));
        }
        let results: Vec<bool> = futures_util::future::join_all(sessions)
            .await
            .into_iter()
            .map(|r| r.unwrap().is_ok())
            .collect();
        assert_eq!(results, vec![true, false, true]);
        assert_eq!((pg.committer.batches(), pg.committer.slow_batches()), (1, 1));
        let rows = pg.messages(inbox.id).await.unwrap();
        let uidls: Vec<&str> = rows.iter().map(|r| r.pop3_uidl.as_str()).collect();
        assert_eq!(
            uidls,
            vec![
                crate::mailbox::pop3_uidl(0x1_2345_6789, 0xABCD_EF01),
                crate::mailbox::pop3_uidl(0x1_2345_6789, 0xABCD_EF02)
            ]
        );
        assert_eq!(uidls[0], "123456789ABCDEF01");
        // A good batch after it goes the fast way again.
        let id = "000000000099BBBBBBBB";
        blobs.put(id, b"Subject: x\r\n\r\n").unwrap();
        pg.commit_delivery(inbox_delivery(id, a.id, crate::FolderTarget::Inbox))
            .await
            .unwrap();
        assert_eq!((pg.committer.batches(), pg.committer.slow_batches()), (2, 1));
    }

    // APPEND and COPY share the delivery's commit (issue #9): sessions
    // appending, copying and delivering at once are one transaction.
    #[tokio::test]
    async fn appends_and_copies_share_the_deliveries_transaction() {
        let Some(url) = test_database("group_commit_imap").await else {
            eprintln!("POSTROOM_TEST_POSTGRES is not set: PostgreSQL not tested");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn BlobStore> =
            Arc::new(crate::FsBlobStore::new(dir.path().join("blobs"), Arc::new(crate::RealFs)).unwrap());
        let pg = Arc::new(Postgres::connect(&url, None, Arc::clone(&blobs)).await.unwrap());
        use crate::backend::{AdminMeta, Appended, MailboxMeta};
        let d = pg.add_domain("example.com", "example.com", None).await.unwrap();
        let a = pg.add_account(d.id, "kent", "kent", None, None).await.unwrap();
        let inbox = pg.find_folder(a.id, "INBOX").await.unwrap().unwrap();
        let archive = pg.find_folder(a.id, "Archive").await.unwrap().unwrap();
        blobs.put("000000000000AAAAAAAA", b"Subject: x\r\n\r\n").unwrap();
        let inbox_id = inbox.id;
        let append = move |id: &'static str| Appended {
            folder: inbox_id,
            blob_id: id,
            size: 15,
            flags: 0,
            keywords: "",
            internal_date: now(),
        };
        let first = pg.insert_appended(append("000000000000AAAAAAAA")).await.unwrap();
        let archive_id = archive.id;
        let before = pg.committer.batches();
        assert_eq!(before, 1, "the first APPEND went through the committer");
        let mut sessions = Vec::new();
        for i in 0..12 {
            let pg = Arc::clone(&pg);
            let id = format!("0000000001{i:02}AAAAAAAA");
            blobs.put(&id, b"Subject: x\r\n\r\n").unwrap();
            sessions.push(tokio::spawn(async move {
                match i % 3 {
                    0 => pg
                        .insert_appended(Appended {
                            blob_id: &id,
                            ..append("")
                        })
                        .await
                        .map(|_| ()),
                    1 => pg.copy_messages(inbox_id, &[first], archive_id).await.map(|_| ()),
                    _ => {
                        let delivery = Delivery {
                            queue_id: id.clone(),
                            blob_id: id,
                            blob_size: 15,
                            received_at: now(),
                            local: vec![crate::LocalDelivery {
                                account_id: a.id,
                                folder: crate::FolderTarget::Inbox,
                                prefix: Vec::new(),
                                flags: 0,
                                keywords: String::new(),
                                internal_date: None,
                                sent_copy_of: None,
                            }],
                            outbound: Vec::new(),
                            released: Vec::new(),
                        };
                        pg.commit_delivery(delivery).await
                    }
                }
            }));
        }
        for s in sessions {
            s.await.unwrap().unwrap();
        }
        assert_eq!(pg.committer.batches(), before + 1);
        // A batch with an APPEND or a COPY goes the savepoint way from the
        // start: no pipelined attempt failed.
        assert_eq!(pg.committer.slow_batches(), 0);
        assert_eq!(pg.find_folder(a.id, "INBOX").await.unwrap().unwrap().uidnext, 10);
        assert_eq!(pg.find_folder(a.id, "Archive").await.unwrap().unwrap().uidnext, 5);
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        assert!(invalid(config_from("mysql://a@b/c", None)).contains("postgres://"));
        assert!(invalid(config_from("postgres://db.example/p", None)).contains("no user"));
        assert!(invalid(config_from("postgres://a@b:notaport/c", None)).contains("invalid PostgreSQL URL"));
    }
}
