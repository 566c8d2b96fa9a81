//! Which folders a commit changed, for the IMAP sessions waiting on them in
//! IDLE. Every change a session must report (a new message, a flag change,
//! an expunge, the folder's deletion) updates the folder's row (its
//! HIGHESTMODSEQ or UIDNEXT, or deletes it), so an update hook on the
//! `folders` table of each connection records the folder ids, and the ids
//! are published once that connection's transaction has committed. A
//! session is woken by its own folder's changes only: with one process-wide
//! signal, each delivery woke every IDLE session of the server (1,000 of
//! them cost 57% of a core at 17 commits a second; bench/RESULTS.md).
//!
//! Changes made by another process (the CLI's `sendmail`, a command) fire
//! no hook here: [`ForeignChanges`] reads the watched folders' rows once a
//! second, in one query for all of them, and publishes what moved — one
//! look per second for the server, not one per IDLE session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::watch;

/// The folders with waiting sessions, each with the signal they wait on.
#[derive(Default)]
pub struct FolderWatch {
    inner: Mutex<Watched>,
}

#[derive(Default)]
struct Watched {
    folders: HashMap<i64, watch::Sender<()>>,
    /// When the map reaches this size, folders nobody waits on any more
    /// are forgotten (a map of every folder ever selected would only grow).
    prune_at: usize,
}

/// Folder ids a connection's current transaction has changed.
pub(crate) type Touched = Arc<Mutex<Vec<i64>>>;

impl FolderWatch {
    /// A receiver that sees a change after each commit that changed the
    /// folder: at once for this process's commits, at the next look
    /// ([`ForeignChanges`]) for another process's.
    pub fn subscribe(&self, folder_id: i64) -> watch::Receiver<()> {
        let mut w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = w.folders.get(&folder_id) {
            return tx.subscribe();
        }
        if w.folders.len() >= w.prune_at {
            w.folders.retain(|_, tx| tx.receiver_count() > 0);
            w.prune_at = (w.folders.len() * 2).max(64);
        }
        let (tx, rx) = watch::channel(());
        w.folders.insert(folder_id, tx);
        rx
    }

    /// The folders someone waits on now.
    pub(crate) fn watched(&self) -> Vec<i64> {
        let w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        w.folders
            .iter()
            .filter(|(_, tx)| tx.receiver_count() > 0)
            .map(|(id, _)| *id)
            .collect()
    }

    fn wake(&self, ids: &[i64]) {
        let w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            if let Some(tx) = w.folders.get(id) {
                tx.send_replace(());
            }
        }
    }

    /// Wakes the sessions waiting on these folders (a back end that knows
    /// what each transaction changed). Call after the commit.
    pub(crate) fn wake_ids(&self, ids: impl IntoIterator<Item = i64>) {
        let mut ids: Vec<i64> = ids.into_iter().collect();
        if ids.is_empty() {
            return;
        }
        ids.sort_unstable();
        ids.dedup();
        self.wake(&ids);
    }

    /// Wakes the sessions waiting on the folders `touched` records, and
    /// empties it. Call after the transaction committed: a woken session
    /// must find the change.
    pub(crate) fn publish(&self, touched: &Touched) {
        let mut ids = std::mem::take(&mut *touched.lock().unwrap_or_else(|e| e.into_inner()));
        if ids.is_empty() {
            return;
        }
        ids.sort_unstable();
        ids.dedup();
        self.wake(&ids);
    }
}

/// What the watched folders' rows said at the last look (see the module
/// comment).
#[derive(Default)]
pub struct ForeignChanges {
    /// Folder id -> (HIGHESTMODSEQ, UIDNEXT).
    seen: HashMap<i64, (i64, i64)>,
}

/// Ids per query: below SQLite's limit on bound parameters.
const POLL_CHUNK: usize = 500;

impl ForeignChanges {
    /// Reads the rows of the folders someone waits on and wakes the
    /// waiters of each folder that changed or is gone. A folder seen for
    /// the first time wakes its waiters too: a change made between their
    /// own read and this first look would otherwise go unnoticed.
    pub(crate) fn look(&mut self, conn: &Connection, watch: &FolderWatch) -> rusqlite::Result<usize> {
        let watched = watch.watched();
        let mut now = HashMap::with_capacity(watched.len());
        for chunk in watched.chunks(POLL_CHUNK) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut st = conn.prepare(&format!(
                "SELECT id, highestmodseq, uidnext FROM folders WHERE id IN ({marks})"
            ))?;
            let rows = st.query_map(rusqlite::params_from_iter(chunk), |r| {
                Ok((r.get::<_, i64>(0)?, (r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
            })?;
            for row in rows {
                let (id, state) = row?;
                now.insert(id, state);
            }
        }
        Ok(self.update(&watched, now, watch))
    }

    /// Given the rows just read (folder id -> (HIGHESTMODSEQ, UIDNEXT)) of
    /// the `watched` folders, wakes the waiters of each that moved or is
    /// gone (or is seen for the first time); returns how many. Every back
    /// end reads the rows its own way and decides here.
    pub(crate) fn update(
        &mut self,
        watched: &[i64],
        now: HashMap<i64, (i64, i64)>,
        watch: &FolderWatch,
    ) -> usize {
        let moved: Vec<i64> = watched
            .iter()
            .copied()
            .filter(|id| !now.contains_key(id) || self.seen.get(id) != now.get(id))
            .collect();
        watch.wake(&moved);
        self.seen = now;
        moved.len()
    }
}

/// Records in `touched` the folders that statements on `conn` change.
/// Changes later rolled back are recorded too: a session woken for nothing
/// finds nothing new, which is harmless.
pub(crate) fn record_folder_changes(conn: &Connection) -> Touched {
    let touched = Touched::default();
    let sink = Arc::clone(&touched);
    conn.update_hook(Some(
        move |_: rusqlite::hooks::Action, _: &str, table: &str, rowid: i64| {
            if table == "folders" {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(rowid);
            }
        },
    ));
    touched
}
