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

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postroom_core::QueueId;

use crate::{Result, Store};

/// The length of an id's time part (see `QueueId::generate`).
const ID_TIME_CHARS: usize = 12;
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
    /// queue entry refers to. Blocking: a whole listing of the bodies.
    pub fn sweep_unreferenced_bodies(&self, min_age: Duration) -> Result<SweepReport> {
        let before = SystemTime::now()
            .checked_sub(min_age)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        let bound = QueueId::generate(before.as_micros() as u64).to_string();
        let bound = bound.get(..ID_TIME_CHARS).unwrap_or(&bound);
        let candidates = self.blobs.ids_before(bound)?;
        let mut report = SweepReport {
            examined: candidates.len(),
            deleted: 0,
        };
        if candidates.is_empty() {
            return Ok(report);
        }
        // The queue is short-lived and small next to the mailboxes (and has
        // no index on its bodies): one scan.
        let queued: HashSet<String> = self.db.read(|c| {
            let mut st = c.prepare("SELECT DISTINCT blob_id FROM outbound")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        for chunk in candidates.chunks(CHECK_CHUNK) {
            let unused: Vec<&String> = self.db.read(|c| {
                let mut in_messages =
                    c.prepare_cached("SELECT EXISTS(SELECT 1 FROM messages WHERE blob_id = ?1)")?;
                let mut unused = Vec::new();
                for id in chunk.iter().filter(|id| !queued.contains(*id)) {
                    if !in_messages.query_row([id], |r| r.get::<_, bool>(0))? {
                        unused.push(id);
                    }
                }
                Ok(unused)
            })?;
            for id in unused {
                match self.blobs.delete(id) {
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
