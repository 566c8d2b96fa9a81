//! Deleting message bodies that nothing refers to any more, off the request
//! path. Unlinking a file costs a file system more than writing one (ext4
//! frees its blocks and, mounted with `discard`, trims them), it contends
//! with the fsyncs of deliveries and commits, and an expunge releases a
//! whole mailbox's bodies at once. One background thread deletes them a
//! moment after the burst that released them, so that QUITs, EXPUNGEs and
//! deliveries running at the same time do not wait behind the unlinks.
//!
//! A body is queued only after the transaction that left it unreferenced has
//! committed; a body still queued when the process dies stays on disk
//! (space, never correctness: no row refers to it).
//!
//! While `postroom backup` runs, nothing is deleted (backup.rs: it copies
//! the bodies its snapshot names after taking it): the thread keeps what
//! it was given and looks again every [`PURGE_DELAY`]; what it still holds
//! when its process ends stays on disk for the sweep.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::blob::BlobStore;

/// How long a released body waits, so that the burst that released it ends
/// first. Every body queued meanwhile goes with it.
const PURGE_DELAY: Duration = Duration::from_secs(2);

struct Batch {
    blobs: Arc<dyn BlobStore>,
    ids: Vec<String>,
}

/// The purge thread of one store, started on first use. Dropping the last
/// handle deletes whatever is still queued before it returns, so a
/// short-lived process (a CLI command) leaves nothing behind (unless a
/// backup is running then).
pub(crate) struct BodyPurger {
    worker: Mutex<Option<(Sender<Batch>, JoinHandle<()>)>>,
    /// The data folder, whose `backup.lock` says whether a backup runs.
    data_dir: PathBuf,
}

impl BodyPurger {
    pub(crate) fn new(data_dir: &Path) -> BodyPurger {
        BodyPurger {
            worker: Mutex::new(None),
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub(crate) fn release(&self, blobs: Arc<dyn BlobStore>, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let mut worker = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = Batch { blobs, ids };
        if let Some((tx, _)) = worker.as_ref() {
            match tx.send(batch) {
                Ok(()) => return,
                Err(mpsc::SendError(b)) => batch = b, // the thread is gone: start another
            }
        }
        let (tx, rx) = mpsc::channel();
        let data_dir = self.data_dir.clone();
        let spawned = std::thread::Builder::new()
            .name("postroom-purge".into())
            .spawn(move || purge_loop(rx, &data_dir));
        match spawned {
            Ok(handle) => {
                // A fresh channel whose receiver is alive: this send succeeds.
                let _ = tx.send(batch);
                *worker = Some((tx, handle));
            }
            Err(e) => {
                tracing::warn!(error = %e, "no purge thread; deleting bodies in place");
                delete_unless_backup(&self.data_dir, vec![batch]);
            }
        }
    }
}

impl BodyPurger {
    /// Deletes whatever is queued now and stops the thread (a later
    /// release starts another).
    pub(crate) fn finish(&self) {
        let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((tx, handle)) = worker {
            drop(tx);
            let _ = handle.join();
        }
    }
}

impl Drop for BodyPurger {
    fn drop(&mut self) {
        self.finish();
    }
}

fn purge_loop(rx: Receiver<Batch>, data_dir: &Path) {
    let mut pending: Vec<Batch> = Vec::new();
    loop {
        if pending.is_empty() {
            match rx.recv() {
                Ok(first) => pending.push(first),
                Err(_) => return,
            }
        }
        let deadline = Instant::now() + PURGE_DELAY;
        let mut closing = false;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(b) => pending.push(b),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    closing = true;
                    break;
                }
            }
        }
        pending = delete_unless_backup(data_dir, pending);
        if closing {
            if !pending.is_empty() {
                let n: usize = pending.iter().map(|b| b.ids.len()).sum();
                tracing::info!(
                    bodies = n,
                    "a backup is running: unreferenced message bodies left for the sweep"
                );
            }
            return;
        }
    }
}

/// Deletes the batches unless a backup runs; returns what was kept.
fn delete_unless_backup(data_dir: &Path, pending: Vec<Batch>) -> Vec<Batch> {
    match crate::backup::DeletionGate::open(data_dir) {
        Some(_gate) => {
            pending.into_iter().for_each(delete);
            Vec::new()
        }
        None => pending,
    }
}

/// A leftover file costs space, not correctness: log and go on.
fn delete(batch: Batch) {
    for id in &batch.ids {
        if let Err(e) = batch.blobs.delete(id) {
            tracing::warn!(blob = %id, error = %e, "could not delete an unreferenced message body");
        }
    }
}
