//! The store: metadata (domains, accounts, aliases, folders, messages, the
//! outbound queue) in SQLite or PostgreSQL ([`Metadata`]), message bodies
//! in a [`BlobStore`].
//!
//! Durability: a delivery is acknowledged only after its blob is fsynced (file
//! and directory, through [`DurableFs`]) and its metadata committed by the
//! [`committer`] (SQLite WAL with `synchronous=FULL`). Concurrent deliveries
//! share one SQLite commit (group commit), and so do IMAP APPEND and COPY:
//! every message row is inserted there.

pub mod admin;
pub mod backend;
pub mod backup;
pub mod blob;
pub mod cache;
pub mod classifier;
pub mod committer;
pub mod console;
pub mod customers;
pub mod db;
pub mod directory;
pub mod dkim;
pub mod faulty;
pub mod filter;
pub mod folders;
pub mod fs;
pub mod held;
pub mod ids;
pub mod mailbox;
pub mod migrate;
mod pg;
mod purge;
pub mod queue;
pub mod roles;
pub mod schema;
pub mod sent;
pub mod settings;
mod sqlite;
mod sweep;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use admin::{AuditEntry, AuditQuery, AuditRow};
pub use backend::{
    AdminMeta, Appended, CustomerMeta, DeliveryMeta, DirectoryMeta, FilterMeta, MailboxMeta, Metadata,
    QueueMeta, Watch,
};
pub use blob::{BlobStore, FsBlobStore, MemSpool};
pub use classifier::{TokenCounts, TrainingBatch, TrainingModel, TrainingTotals};
pub use committer::{Delivery, LocalDelivery, OutboundItem};
pub use console::{ApiTokenRow, NewApiToken, ProviderAdminRow};
pub use customers::{CustomerCaps, CustomerRow, CustomerUsage};
pub use db::Db;
pub use filter::{FilterResultRow, WhitelistRow};
pub use fs::{DurableFs, RealFs, SimulatedFs, TempFile};
pub use held::{HeldLocal, Hold, HoldReason};
pub use ids::{AccountId, AliasId, DirectoryVersion, DomainId, FolderId, ModSeq, OutboundId, Uid};
pub use pg::Postgres;
pub use roles::{FolderTarget, SpecialUse};
pub use sent::SENT_COPY_WINDOW_SECS;
pub use sweep::SweepReport;
pub use watch::ForeignChanges;

#[derive(Debug)]
pub enum StoreError {
    Db(rusqlite::Error),
    Io(std::io::Error),
    /// A request the data does not allow (duplicate, missing, cycle...).
    Invalid(String),
    /// The data folder was written by a newer Postroom.
    TooNew {
        found: i64,
        supported: i64,
    },
    /// The committer is gone (shutting down).
    Unavailable,
    /// A per-account or per-folder limit would be exceeded (IMAP answers
    /// `NO [LIMIT]`, RFC 9051 7.1).
    Limit(&'static str),
    /// A conditional write found the data changed since the caller read
    /// it ([`DirectoryVersion`]); the caller checks again and retries.
    Conflict(&'static str),
    /// The database server failed or could not be reached (PostgreSQL:
    /// connection refused, wrong password, a server error), in words.
    Backend(String),
    /// There is no store where one was to be opened (a missing data
    /// folder, one without a database, an empty PostgreSQL database) and
    /// the caller may not create one: only `serve` and `postroom init` do
    /// (issue #12: a mistyped `--data-dir` made a fresh, empty store).
    NoStore(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Db(e) => write!(f, "database: {e}"),
            StoreError::Io(e) => write!(f, "i/o: {e}"),
            StoreError::Invalid(s) => f.write_str(s),
            StoreError::TooNew { found, supported } => write!(
                f,
                "the data folder has schema version {found}, newer than this binary supports ({supported}): \
                 run a newer Postroom"
            ),
            StoreError::Unavailable => f.write_str("store is shutting down"),
            StoreError::Limit(s) => f.write_str(s),
            StoreError::Conflict(s) => f.write_str(s),
            StoreError::Backend(s) => f.write_str(s),
            StoreError::NoStore(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e)
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e)
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Message bodies as files under `dir`, written through `fs`.
fn file_blobs(dir: PathBuf, fs: Arc<dyn DurableFs>) -> Result<Arc<dyn BlobStore>> {
    Ok(Arc::new(FsBlobStore::new(dir, fs)?))
}

/// Creates the data folder when missing.
fn create_data_dir(data_dir: &Path) -> Result<()> {
    if !data_dir.exists() {
        std::fs::create_dir_all(data_dir)?;
        // Mail and keys: the owner alone may read them.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Where a store's parts are (the `[store]` configuration).
#[derive(Clone, Copy, Debug)]
pub struct StorePlace<'a> {
    pub data_dir: &'a Path,
    /// A `postgres://` URL; `None`: the embedded database in `data_dir`.
    pub database: Option<&'a str>,
    pub password_file: Option<&'a Path>,
    /// The bodies' folder; `None`: `data_dir/blobs`.
    pub blobs: Option<&'a Path>,
    /// `true` (serve, init): a missing data folder is made (0700) and so
    /// is the schema of a new database. `false` (every other command):
    /// refused with [`StoreError::NoStore`] instead.
    pub create: bool,
}

/// The embedded database's file in the data folder.
pub const SQLITE_FILE: &str = "postroom.sqlite";

/// Everything the server and the CLI need from the data folder: the
/// metadata back end ([`Metadata`]) and the message bodies ([`BlobStore`]),
/// with the server-wide read caches in front of them.
#[derive(Clone)]
pub struct Store {
    meta: Arc<dyn Metadata>,
    /// The embedded database when that is the back end: the SQLite-only
    /// maintenance paths (schema tests) reach it here.
    sqlite: Option<Db>,
    pub blobs: Arc<dyn BlobStore>,
    data_dir: PathBuf,
    /// Server-wide read caches for IMAP and POP3 (see cache.rs).
    pub(crate) folder_cache: Arc<cache::FolderCache>,
    pub(crate) header_cache: Arc<cache::HeaderCache>,
    purger: Arc<purge::BodyPurger>,
}

impl Store {
    /// Opens (creating and migrating) the store in `data_dir` on the real
    /// file system.
    pub fn open(data_dir: &Path) -> Result<Store> {
        Store::open_with(data_dir, Arc::new(RealFs))
    }

    /// Opens the store with blob files written through `fs` (tests pass a
    /// [`SimulatedFs`] to simulate power cuts).
    pub fn open_with(data_dir: &Path, fs: Arc<dyn DurableFs>) -> Result<Store> {
        create_data_dir(data_dir)?;
        Store::open_with_blobs(data_dir, file_blobs(data_dir.join("blobs"), fs)?)
    }

    /// Opens the embedded database in `data_dir` with bodies kept in
    /// `blobs` (tests pass one that cheats on fsync, to show the power-cut
    /// test would catch it).
    pub fn open_with_blobs(data_dir: &Path, blobs: Arc<dyn BlobStore>) -> Result<Store> {
        let db = Db::open(&data_dir.join(SQLITE_FILE))?;
        let meta = Arc::new(sqlite::Sqlite::new(db.clone(), Arc::clone(&blobs)));
        let mut store = Store::with_backend(meta, blobs, data_dir);
        store.sqlite = Some(db);
        Ok(store)
    }

    /// Opens a store whose metadata is in PostgreSQL (`url` is
    /// `postgres://user[:password]@host:port/dbname`; the password, when
    /// not in the URL, comes from `password_file` or `PGPASSWORD`) and
    /// whose message bodies are in `data_dir/blobs`, as with SQLite. The
    /// schema is created in an empty database.
    pub async fn open_postgres(url: &str, password_file: Option<&Path>, data_dir: &Path) -> Result<Store> {
        Store::open_postgres_with(url, password_file, data_dir, Arc::new(RealFs)).await
    }

    /// [`Store::open_postgres`] with blob files written through `fs`.
    pub async fn open_postgres_with(
        url: &str,
        password_file: Option<&Path>,
        data_dir: &Path,
        fs: Arc<dyn DurableFs>,
    ) -> Result<Store> {
        create_data_dir(data_dir)?;
        let blobs = file_blobs(data_dir.join("blobs"), fs)?;
        Store::open_postgres_with_blobs(url, password_file, data_dir, blobs).await
    }

    /// [`Store::open_postgres`] with bodies kept in `blobs` (as
    /// [`Store::open_with_blobs`] for the embedded database).
    pub async fn open_postgres_with_blobs(
        url: &str,
        password_file: Option<&Path>,
        data_dir: &Path,
        blobs: Arc<dyn BlobStore>,
    ) -> Result<Store> {
        let meta = Arc::new(Postgres::connect(url, password_file, Arc::clone(&blobs)).await?);
        Ok(Store::with_backend(meta, blobs, data_dir))
    }

    /// Whether a store exists as `place` describes, without creating or
    /// changing anything: `Err(NoStore)` names what is missing.
    fn check_exists(place: &StorePlace<'_>) -> Result<()> {
        if !place.data_dir.is_dir() {
            return Err(StoreError::NoStore(format!(
                "no data folder at {}",
                place.data_dir.display()
            )));
        }
        if place.database.is_none() && !place.data_dir.join(SQLITE_FILE).is_file() {
            return Err(StoreError::NoStore(format!(
                "{} holds no Postroom store (no {SQLITE_FILE})",
                place.data_dir.display()
            )));
        }
        Ok(())
    }

    /// Opens the store as configured: the embedded database in `data_dir`
    /// unless `database` names a PostgreSQL URL; bodies in `blobs`
    /// (default `data_dir/blobs`) either way.
    ///
    /// Without `place.create`, nothing is made: a missing data folder, a
    /// folder without the embedded database, or a PostgreSQL database
    /// without Postroom's schema is [`StoreError::NoStore`].
    pub async fn open_configured(place: &StorePlace<'_>) -> Result<Store> {
        if place.create {
            create_data_dir(place.data_dir)?;
        } else {
            Store::check_exists(place)?;
        }
        let blobs_dir = place
            .blobs
            .map_or_else(|| place.data_dir.join("blobs"), Path::to_path_buf);
        let blobs_existed = blobs_dir.exists();
        let blobs = file_blobs(blobs_dir.clone(), Arc::new(RealFs))?;
        match place.database {
            None => Store::open_with_blobs(place.data_dir, blobs),
            Some(url) => {
                match Postgres::open(url, place.password_file, Arc::clone(&blobs), place.create).await {
                    Ok(meta) => Ok(Store::with_backend(Arc::new(meta), blobs, place.data_dir)),
                    Err(e) => {
                        // The bodies' folder was made for nothing: a
                        // refused open leaves the folder as it found it.
                        if !blobs_existed {
                            let _ = std::fs::remove_dir_all(&blobs_dir);
                        }
                        Err(e)
                    }
                }
            }
        }
    }

    /// A store on any back end (tests wrap one in
    /// [`faulty::FaultyMeta`]).
    pub fn with_backend(meta: Arc<dyn Metadata>, blobs: Arc<dyn BlobStore>, data_dir: &Path) -> Store {
        Store {
            meta,
            sqlite: None,
            blobs,
            data_dir: data_dir.to_path_buf(),
            folder_cache: Arc::new(cache::FolderCache::new(cache::FOLDER_CACHE_MESSAGES)),
            header_cache: Arc::new(cache::HeaderCache::new(cache::HEADER_CACHE_BYTES)),
            purger: Arc::new(purge::BodyPurger::new(data_dir)),
        }
    }

    /// The metadata back end, for the calls the store has no combined
    /// operation for (lookups, folder and directory changes).
    pub fn meta(&self) -> &dyn Metadata {
        &*self.meta
    }

    /// The back end as a shareable handle.
    pub fn meta_handle(&self) -> Arc<dyn Metadata> {
        Arc::clone(&self.meta)
    }

    /// The embedded database, when that is the back end (SQLite-only
    /// maintenance and tests).
    pub fn sqlite(&self) -> Option<&Db> {
        self.sqlite.as_ref()
    }

    /// Commits a delivery whose blob was put in this store's blobs.
    /// Each held item it records gets one log line with its reason: mail
    /// is never held silently (issue #12).
    pub async fn commit_delivery(&self, delivery: Delivery) -> Result<()> {
        let held: Vec<(String, crate::held::Hold)> = delivery
            .outbound
            .iter()
            .filter_map(|o| o.held.clone().map(|h| (o.recipient.clone(), h)))
            .collect();
        let queue_id = delivery.queue_id.clone();
        let started = std::time::Instant::now();
        self.meta.commit_delivery(delivery).await?;
        postroom_core::metrics::store_commit(started.elapsed());
        for (recipient, hold) in held {
            tracing::warn!(
                target: "queue",
                queue_id = %queue_id,
                recipient = %recipient,
                reason = hold.reason.code(),
                detail = %hold.detail,
                local = hold.local.is_some(),
                "held for the administrator ('postroom queue release' or 'queue delete')"
            );
        }
        Ok(())
    }

    /// See [`Watch::watch_folder`].
    pub fn watch_folder(&self, folder_id: FolderId) -> tokio::sync::watch::Receiver<()> {
        self.meta.watch_folder(folder_id)
    }

    /// See [`Watch::changes`].
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.meta.changes()
    }

    /// Deletes the bodies released and still waiting for the purge thread
    /// (see purge.rs), now: the server calls it as it stops, whatever other
    /// handles on the store a thread still holds.
    pub fn finish_pending_deletions(&self) {
        self.purger.finish();
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}
