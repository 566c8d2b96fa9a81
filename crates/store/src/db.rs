use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::committer::{Committer, Delivery, Done, Work};
use crate::watch::{record_folder_changes, FolderWatch, ForeignChanges, Touched};
use crate::{schema, Result, StoreError};

/// The metadata database: a pool of connections for reads and short writes
/// (the CLI, the console), and the group committer for deliveries. The CLI
/// and a running server use it at once: WAL mode, busy timeouts, no caches.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DbInner>,
}

struct DbInner {
    path: PathBuf,
    /// Each connection with the folders its current transaction changed.
    pool: Mutex<Vec<(Connection, Touched)>>,
    committer: OnceLock<Committer>,
    /// Bumped after every commit made through this handle, so the queue
    /// looks for new work at once.
    changed: tokio::sync::watch::Sender<u64>,
    /// Per folder, for IMAP IDLE (see watch.rs).
    folders: Arc<FolderWatch>,
}

/// Every connection: WAL with `synchronous=FULL` (a commit is on disk when
/// it returns, which `NORMAL` does not promise in WAL mode).
pub(crate) fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        // The server and the CLI may open a new or old data folder at the
        // same moment: creating it, switching it to WAL and migrating happen
        // under one exclusive lock (flock on a file beside the database).
        let lock = MigrationLock::take(&path.with_extension("lock"))?;
        let mut conn = connect(path)?;
        schema::migrate(&mut conn, path)?;
        drop(lock);
        let touched = record_folder_changes(&conn);
        Ok(Db {
            inner: Arc::new(DbInner {
                path: path.to_path_buf(),
                pool: Mutex::new(vec![(conn, touched)]),
                committer: OnceLock::new(),
                changed: tokio::sync::watch::Sender::new(0),
                folders: Arc::default(),
            }),
        })
    }

    fn take(&self) -> Result<(Connection, Touched)> {
        let pooled = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(c) => Ok(c),
            None => {
                let conn = connect(&self.inner.path)?;
                let touched = record_folder_changes(&conn);
                Ok((conn, touched))
            }
        }
    }

    /// Returns a connection whose work is over (committed, or rolled back
    /// when it failed): the sessions waiting on the folders it changed can
    /// look now.
    fn give_back(&self, conn: Connection, touched: Touched) {
        self.inner.folders.publish(&touched);
        let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < 16 {
            pool.push((conn, touched));
        }
    }

    /// Runs `f` on a pooled connection (reads).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let (conn, touched) = self.take()?;
        let r = f(&conn);
        self.give_back(conn, touched);
        r
    }

    /// Runs `f` in an immediate (write-locked) transaction and commits.
    pub fn write<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        let (mut conn, touched) = self.take()?;
        let r = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let v = f(&tx)?;
            tx.commit()?;
            Ok(v)
        })();
        self.give_back(conn, touched);
        if r.is_ok() {
            self.notify();
        }
        r
    }

    /// Changes to one folder (see watch.rs).
    pub fn watch_folder(&self, folder_id: crate::FolderId) -> tokio::sync::watch::Receiver<()> {
        self.inner.folders.subscribe(folder_id.0)
    }

    /// Looks for changes other processes made to watched folders and wakes
    /// their waiters; returns how many folders moved. The server calls this
    /// once a second (see watch.rs).
    pub fn look_for_foreign_changes(&self, state: &mut ForeignChanges) -> Result<usize> {
        self.read(|c| Ok(state.look(c, &self.inner.folders)?))
    }

    fn notify(&self) {
        self.inner.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that sees a new value after each commit in this process.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// The group committer, started on first use with the blob store whose
    /// directory it fsyncs before each commit.
    fn committer(&self, blobs: &Arc<dyn crate::BlobStore>) -> Result<&Committer> {
        if let Some(c) = self.inner.committer.get() {
            return Ok(c);
        }
        let conn = connect(&self.inner.path)?;
        let touched = record_folder_changes(&conn);
        let folders = Arc::clone(&self.inner.folders);
        let c = Committer::start(conn, touched, folders, Arc::clone(blobs))?;
        let _ = self.inner.committer.set(c);
        self.inner.committer.get().ok_or(StoreError::Unavailable)
    }

    /// Commits new message rows (a delivery, an APPEND, a COPY) through the
    /// group committer: they share their fsyncs (the blob directory's and
    /// SQLite's) with concurrent ones. A new body must have been put in
    /// `blobs`.
    pub(crate) async fn commit(&self, work: Work, blobs: &Arc<dyn crate::BlobStore>) -> Result<Done> {
        let r = self.committer(blobs)?.commit(work).await;
        if r.is_ok() {
            self.notify();
        }
        r
    }

    /// Commits a delivery's metadata (see [`Db::commit`]).
    pub async fn commit_delivery(&self, delivery: Delivery, blobs: &Arc<dyn crate::BlobStore>) -> Result<()> {
        self.commit(Work::Deliver(delivery), blobs).await.map(|_| ())
    }

    /// Transactions the group committer has committed (0 before its first).
    pub fn commit_batches(&self) -> u64 {
        self.inner.committer.get().map_or(0, Committer::batches)
    }
}

/// An exclusive `flock` held while the database is set up.
struct MigrationLock(std::fs::File);

impl MigrationLock {
    fn take(path: &Path) -> Result<MigrationLock> {
        use std::os::unix::io::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(MigrationLock(f))
    }
}

impl Drop for MigrationLock {
    fn drop(&mut self) {
        use std::os::unix::io::AsRawFd;
        // SAFETY: unlocking our own descriptor (closing it would too).
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}
