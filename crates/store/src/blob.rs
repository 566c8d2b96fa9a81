//! Message bodies. One blob per accepted message, shared by all its local
//! recipients and queue entries; the per-delivery header lines live in the
//! metadata, not here.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::fs::DurableFs;

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
    /// Starts a blob that arrives in pieces: [`BlobWriter::write`] them,
    /// then [`BlobStore::finish`]. This store collects them in memory;
    /// `id` names the upload while it lasts.
    fn create(&self, id: &str) -> io::Result<BlobWriter> {
        let _ = id;
        Ok(BlobWriter::new(Sink::Memory(Vec::new())))
    }
    /// Stores the blob under `id` (a fresh one: see [`FsBlobStore`]'s
    /// uploads): its content is durable when this returns, its name once
    /// [`BlobStore::sync`] has run (as [`BlobStore::put`]).
    fn finish(&self, w: BlobWriter, id: &str) -> io::Result<()> {
        let mut w = w;
        match std::mem::replace(&mut w.sink, Sink::Done) {
            Sink::Memory(data) => self.put(id, &data),
            _ => Err(io::Error::other("blob writer of another store")),
        }
    }
    /// Deletes every upload left (see [`BlobStore::create`]); returns how
    /// many. Only when no upload can be under way: as the server starts.
    fn clear_uploads(&self) -> io::Result<usize> {
        Ok(0)
    }
}

/// How much of a blob's beginning a [`BlobWriter`] keeps in memory: the
/// header, for what APPEND reads of it (Message-ID).
const HEAD_KEPT: usize = 64 * 1024;

/// A blob being written piece by piece (see [`BlobStore::create`]).
/// Dropped before [`BlobStore::finish`], it leaves nothing behind.
pub struct BlobWriter {
    len: u64,
    head: Vec<u8>,
    sink: Sink,
}

enum Sink {
    Memory(Vec<u8>),
    /// The upload's file.
    File(std::fs::File, PathBuf),
    Done,
}

impl BlobWriter {
    fn new(sink: Sink) -> Self {
        BlobWriter {
            len: 0,
            head: Vec::new(),
            sink,
        }
    }

    /// Octets written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first octets written (up to 64 KiB).
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        use std::io::Write;
        match &mut self.sink {
            Sink::Memory(v) => v.extend_from_slice(data),
            Sink::File(f, _) => f.write_all(data)?,
            Sink::Done => return Err(io::Error::other("blob already finished")),
        }
        let keep = HEAD_KEPT.saturating_sub(self.head.len()).min(data.len());
        self.head.extend_from_slice(&data[..keep]);
        self.len += data.len() as u64;
        Ok(())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Sink::File(_, path) = &self.sink {
            // Not finished: the body of nothing (a failed or abandoned
            // APPEND). A crash before this is swept (sweep.rs).
            let _ = std::fs::remove_file(path);
        }
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
const SHARD_CHARS: usize = 6;

/// Where bodies that arrive in pieces are written until complete.
const UPLOADS: &str = "uploads";

fn valid_id(id: &str) -> bool {
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

    fn create(&self, id: &str) -> io::Result<BlobWriter> {
        if !valid_id(id) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad blob id"));
        }
        // Uploads are written under `uploads/` (7 characters: not a shard,
        // so the sweep of unreferenced bodies never takes one that is
        // still arriving, however long that lasts) and get their blob id
        // when they are complete.
        let dir = self.root.join(UPLOADS);
        self.ensure_shard(&dir)?;
        let path = dir.join(id);
        Ok(match self.fs.create_new(&path)? {
            Some(file) => BlobWriter::new(Sink::File(file, path)),
            None => BlobWriter::new(Sink::Memory(Vec::new())),
        })
    }

    fn finish(&self, w: BlobWriter, id: &str) -> io::Result<()> {
        let mut w = w;
        match std::mem::replace(&mut w.sink, Sink::Done) {
            Sink::Memory(data) => self.put(id, &data),
            Sink::File(file, upload) => {
                let r = (|| {
                    file.sync_all()?;
                    let (path, shard) = self.path(id)?;
                    self.ensure_shard(&shard)?;
                    std::fs::rename(&upload, &path)?;
                    self.dirty.lock().unwrap_or_else(|e| e.into_inner()).insert(shard);
                    Ok(())
                })();
                if r.is_err() {
                    let _ = std::fs::remove_file(&upload);
                }
                r
            }
            Sink::Done => Err(io::Error::other("blob already finished")),
        }
    }

    fn clear_uploads(&self) -> io::Result<usize> {
        let dir = self.root.join(UPLOADS);
        let names = match self.fs.list_dir(&dir) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        for name in &names {
            self.fs.remove(&dir.join(name))?;
        }
        Ok(names.len())
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
