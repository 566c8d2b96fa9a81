//! Finding the message bodies that no row refers to and that nothing will
//! ever delete: those the purge thread still held when the process died
//! (purge.rs waits 2 s before it deletes), and those put by a delivery or an
//! APPEND whose commit then failed. They cost space only; the sweep gets
//! it back.
//!
//! A body is put before the row that refers to it is committed, by this
//! process or by a CLI command working on the same data folder, so only
//! bodies older than any transaction can be are considered: ids begin with
//! their time, and the caller says how old is old enough.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postroom_core::QueueId;

use crate::{Result, Store};

/// Candidates checked per read of the database, so a large store does not
/// hold one read transaction (and the WAL) for the whole sweep.
const CHECK_CHUNK: usize = 1000;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Bodies old enough to be considered.
    pub examined: usize,
    /// Of those, the ones no message or queue entry referred to: deleted.
    pub deleted: usize,
}

impl Store {
    /// Deletes the bodies put more than `min_age` ago that no message and no
    /// queue entry refers to. Lists every body: the server runs it on a
    /// blocking thread.
    pub async fn sweep_unreferenced_bodies(&self, min_age: Duration) -> Result<SweepReport> {
        let before = SystemTime::now()
            .checked_sub(min_age)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        let bound = QueueId::time_prefix(before.as_micros() as u64);
        let candidates = self.blobs.ids_before(&bound)?;
        let mut report = SweepReport {
            examined: candidates.len(),
            deleted: 0,
        };
        for chunk in candidates.chunks(CHECK_CHUNK) {
            let unused = self.meta.unreferenced_blobs(chunk.to_vec()).await?;
            // No deletion while a backup runs (backup.rs): the next sweep
            // gets these.
            let Some(_gate) = crate::backup::DeletionGate::open(&self.data_dir) else {
                tracing::info!("a backup is running: the sweep deletes nothing this time");
                break;
            };
            for id in unused {
                match self.blobs.delete(&id) {
                    Ok(()) => report.deleted += 1,
                    // The purge thread got there first.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(blob = %id, error = %e, "could not delete an unreferenced message body")
                    }
                }
            }
        }
        Ok(report)
    }
}
