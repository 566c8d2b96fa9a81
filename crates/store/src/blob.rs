//! Message bodies. One blob per accepted message, shared by all its local
//! recipients and queue entries; the per-delivery header lines live in the
//! metadata, not here.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::fs::{DurableFs, TempFile};

pub trait BlobStore: Send + Sync {
    /// Stores a blob: its content is durable when this returns, its name
    /// once [`BlobStore::sync`] has run. Concurrent deliveries put their
    /// blobs, then one `sync` (in the group commit) serves them all.
    fn put(&self, id: &str, data: &[u8]) -> io::Result<()>;
    /// Makes the names of every blob put so far durable.
    fn sync(&self) -> io::Result<()>;
    fn get(&self, id: &str) -> io::Result<Vec<u8>>;
    /// The blob's beginning, up to at least its header's blank line (all of
    /// it when it has none): what header-only reads need.
    fn get_head(&self, id: &str) -> io::Result<Vec<u8>> {
        self.get(id)
    }
    fn delete(&self, id: &str) -> io::Result<()>;
    /// The ids of the stored blobs that sort before `bound`. Ids begin with
    /// their time, so with a time prefix as the bound: the blobs put before
    /// that moment.
    fn ids_before(&self, bound: &str) -> io::Result<Vec<String>>;
    /// A file for a body that arrives in pieces (SMTP DATA), so that no
    /// message is held whole in memory. The default keeps it in memory:
    /// for test stores only.
    fn spool(&self) -> io::Result<Box<dyn TempFile>> {
        Ok(Box::<MemSpool>::default())
    }
    /// Stores a spooled body as blob `id`, with the guarantees of
    /// [`BlobStore::put`].
    fn put_spool(&self, id: &str, spool: Box<dyn TempFile>) -> io::Result<()> {
        self.put(id, &spool.read_all()?)
    }
    /// Removes the spool files a crash left behind; only at start-up, when
    /// no session is writing one. Returns how many.
    fn clear_spools(&self) -> io::Result<usize> {
        Ok(0)
    }
}

/// How much of a body a spool holds in memory before it goes to a file.
/// A spool file for every message is one more create and unlink in one
/// hot directory, and ext4 (without a journal) pays for skipping the
/// inodes the queue's deletions have just freed: with small bodies kept in
/// memory the relay benchmark (10,000 x 5 KB, queued and sent on at once)
/// took 10.5 to 17 s of server CPU instead of 19 to 25 s. A small body is
/// written once, as a blob; memory stays bounded at this much per
/// transaction.
pub const SPOOL_IN_MEMORY: usize = 128 * 1024;

/// [`FsBlobStore`]'s spool: in memory up to [`SPOOL_IN_MEMORY`], then a
/// spool file ([`DurableFs::create_temp`]) holding everything.
struct SpillSpool {
    fs: Arc<dyn DurableFs>,
    dir: PathBuf,
    name: String,
    memory: Vec<u8>,
    file: Option<Box<dyn TempFile>>,
}

impl TempFile for SpillSpool {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(file) = &mut self.file {
            return file.write_all(data);
        }
        if self.memory.len() + data.len() <= SPOOL_IN_MEMORY {
            self.memory.extend_from_slice(data);
            return Ok(());
        }
        self.fs.create_dir_all(&self.dir)?;
        let mut file = self.fs.create_temp(&self.dir.join(&self.name))?;
        file.write_all(&self.memory)?;
        file.write_all(data)?;
        self.memory = Vec::new();
        self.file = Some(file);
        Ok(())
    }
    fn len(&self) -> u64 {
        match &self.file {
            Some(file) => file.len(),
            None => self.memory.len() as u64,
        }
    }
    fn read_head(&self, max: usize, enough: &dyn Fn(&[u8]) -> bool) -> io::Result<Vec<u8>> {
        match &self.file {
            Some(file) => file.read_head(max, enough),
            None => Ok(self.memory[..self.memory.len().min(max)].to_vec()),
        }
    }
    fn read_all(&self) -> io::Result<Vec<u8>> {
        match &self.file {
            Some(file) => file.read_all(),
            None => Ok(self.memory.clone()),
        }
    }
    fn persist(self: Box<Self>, path: &Path) -> io::Result<()> {
        match self.file {
            Some(file) => file.persist(path),
            // As BlobStore::put: content fsynced, the name once the
            // directory is.
            None => self.fs.write_new(path, &self.memory, true),
        }
    }
}

/// The in-memory [`TempFile`] of [`BlobStore::spool`]'s default.
#[derive(Default)]
pub struct MemSpool(Vec<u8>);

impl TempFile for MemSpool {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_head(&self, max: usize, _enough: &dyn Fn(&[u8]) -> bool) -> io::Result<Vec<u8>> {
        Ok(self.0[..self.0.len().min(max)].to_vec())
    }
    fn read_all(&self) -> io::Result<Vec<u8>> {
        Ok(self.0.clone())
    }
    fn persist(self: Box<Self>, _path: &Path) -> io::Result<()> {
        Err(io::Error::other("an in-memory spool has no file"))
    }
}

/// Blobs as files under `blobs/<shard>/<id>`. The shard is the first six
/// characters of the id (ids begin with their time), so one directory holds
/// about 18 minutes of mail and concurrent deliveries fsync the same few
/// directories.
pub struct FsBlobStore {
    root: PathBuf,
    fs: Arc<dyn DurableFs>,
    /// Shards whose directory entry is known to be durable.
    durable_shards: Mutex<HashSet<String>>,
    /// Shards with blobs whose names are not yet durable.
    dirty: Mutex<HashSet<PathBuf>>,
}

/// A shard directory's name: the first characters of its blobs' ids.
pub(crate) const SHARD_CHARS: usize = 6;

/// Where bodies are written while they arrive: inside `blobs/` so that
/// the link into a shard stays on one file system. Its name is not
/// `SHARD_CHARS` long, so [`BlobStore::ids_before`] never lists it.
const SPOOL_DIR: &str = "spool";

/// Makes spool file names unique within the process (the process id
/// separates the server from `postroom sendmail`).
static SPOOL_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A spool file is named `<pid>-<seq>` by the process writing it: one of
/// another process that still runs may be in use (a process id reused
/// since only keeps a leftover until the next start).
fn spooled_by_another_live_process(name: &str) -> bool {
    let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()
}

pub(crate) fn valid_id(id: &str) -> bool {
    id.len() >= 8 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl FsBlobStore {
    pub fn new(root: PathBuf, fs: Arc<dyn DurableFs>) -> io::Result<Self> {
        fs.create_dir_all(&root)?;
        if let Some(parent) = root.parent() {
            fs.sync_dir(parent)?;
        }
        Ok(FsBlobStore {
            root,
            fs,
            durable_shards: Mutex::new(HashSet::new()),
            dirty: Mutex::new(HashSet::new()),
        })
    }

    fn path(&self, id: &str) -> io::Result<(PathBuf, PathBuf)> {
        if !valid_id(id) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad blob id"));
        }
        let shard = self.root.join(&id[..SHARD_CHARS]);
        Ok((shard.join(id), shard))
    }

    fn ensure_shard(&self, shard: &Path) -> io::Result<()> {
        let name = shard.to_string_lossy().into_owned();
        let mut known = self.durable_shards.lock().unwrap_or_else(|e| e.into_inner());
        if known.contains(&name) {
            return Ok(());
        }
        self.fs.create_dir_all(shard)?;
        self.fs.sync_dir(&self.root)?;
        known.insert(name);
        Ok(())
    }
}

impl BlobStore for FsBlobStore {
    fn put(&self, id: &str, data: &[u8]) -> io::Result<()> {
        let (path, shard) = self.path(id)?;
        self.ensure_shard(&shard)?;
        self.fs.write_new(&path, data, true)?;
        self.dirty.lock().unwrap_or_else(|e| e.into_inner()).insert(shard);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let dirs: Vec<PathBuf> = self
            .dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for (i, d) in dirs.iter().enumerate() {
            if let Err(e) = self.fs.sync_dir(d) {
                // Keep what was not synced for the next attempt.
                let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
                dirty.extend(dirs[i..].iter().cloned());
                return Err(e);
            }
        }
        Ok(())
    }

    fn get(&self, id: &str) -> io::Result<Vec<u8>> {
        let (path, _) = self.path(id)?;
        self.fs.read(&path)
    }

    fn get_head(&self, id: &str) -> io::Result<Vec<u8>> {
        let (path, _) = self.path(id)?;
        self.fs
            .read_head(&path, &|b: &[u8]| crate::cache::header_len(b).is_some())
    }

    fn delete(&self, id: &str) -> io::Result<()> {
        let (path, _) = self.path(id)?;
        self.fs.remove(&path)
    }

    fn spool(&self) -> io::Result<Box<dyn TempFile>> {
        let seq = SPOOL_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Box::new(SpillSpool {
            fs: Arc::clone(&self.fs),
            dir: self.root.join(SPOOL_DIR),
            name: format!("{}-{seq}", std::process::id()),
            memory: Vec::new(),
            file: None,
        }))
    }

    fn put_spool(&self, id: &str, spool: Box<dyn TempFile>) -> io::Result<()> {
        let (path, shard) = self.path(id)?;
        self.ensure_shard(&shard)?;
        spool.persist(&path)?;
        self.dirty.lock().unwrap_or_else(|e| e.into_inner()).insert(shard);
        Ok(())
    }

    fn clear_spools(&self) -> io::Result<usize> {
        let dir = self.root.join(SPOOL_DIR);
        let names = match self.fs.list_dir(&dir) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for name in &names {
            if spooled_by_another_live_process(name) {
                // A `postroom sendmail` (or a CLI import) still writing it.
                continue;
            }
            self.fs.remove(&dir.join(name))?;
            removed += 1;
        }
        Ok(removed)
    }

    fn ids_before(&self, bound: &str) -> io::Result<Vec<String>> {
        let shard_bound = bound.get(..SHARD_CHARS).unwrap_or(bound);
        let mut ids = Vec::new();
        for shard in self.fs.list_dir(&self.root)? {
            // A shard holds the ids that begin with its name.
            if shard.len() != SHARD_CHARS || shard.as_str() > shard_bound {
                continue;
            }
            let names = match self.fs.list_dir(&self.root.join(&shard)) {
                Ok(names) => names,
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => continue,
                Err(e) => return Err(e),
            };
            ids.extend(
                names
                    .into_iter()
                    .filter(|id| valid_id(id) && id.starts_with(&shard) && id.as_str() < bound),
            );
        }
        Ok(ids)
    }
}

/// Of these blob ids, the ones nothing refers to any more — no message, no
/// queue row. Called inside the transaction that deleted rows naming them,
/// and by the sweep (sweep.rs) for bodies found on disk.
pub(crate) fn unreferenced(tx: &rusqlite::Connection, mut ids: Vec<String>) -> rusqlite::Result<Vec<String>> {
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Ok(ids);
    }
    // outbound has no index on blob_id: for many bodies (an expunge), one
    // scan of the queue's bodies beats one scan per body; for a few, each
    // scan stops at its first match.
    let queued: Option<HashSet<String>> = if ids.len() > 8 {
        let mut st = tx.prepare_cached("SELECT DISTINCT blob_id FROM outbound")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Some(rows.collect::<rusqlite::Result<_>>()?)
    } else {
        None
    };
    let mut in_messages = tx.prepare_cached("SELECT EXISTS(SELECT 1 FROM messages WHERE blob_id = ?1)")?;
    let mut in_queue = tx.prepare_cached("SELECT EXISTS(SELECT 1 FROM outbound WHERE blob_id = ?1)")?;
    let mut unused = Vec::new();
    for b in ids {
        let used = match &queued {
            Some(q) => q.contains(&b),
            None => in_queue.query_row([&b], |r| r.get(0))?,
        } || in_messages.query_row([&b], |r| r.get(0))?;
        if !used {
            unused.push(b);
        }
    }
    Ok(unused)
}

impl crate::Store {
    /// Deletes bodies after the commit that left them unreferenced: queued
    /// for the purge thread (see purge.rs).
    pub(crate) fn delete_blobs(&self, ids: Vec<String>) {
        self.purger.release(self.blobs.clone(), ids);
    }
}
