//! The outbound queue: one row per remote recipient of an accepted message,
//! durable from the `250` on. The delivery worker (crates/queue) takes due
//! rows, and marks each sent, deferred (with the next attempt) or bounced.

use rusqlite::{params, OptionalExtension};

use crate::held::{HeldLocal, HoldReason};
use crate::ids::OutboundId;
use crate::roles::FolderTarget;

/// `set_outbound_state`'s `hold_reason` (the new state is parameter 2 on
/// both back ends): `queue hold` marks a row `admin` unless it is held
/// already, for a reason of its own; any other state clears it.
pub(crate) const SET_HOLD_REASON: &str =
    "hold_reason = CASE WHEN state = 'held' AND ?2 = 'held' THEN hold_reason
                          WHEN ?2 = 'held' THEN 'admin' ELSE '' END";
use crate::{Db, Result, Store, StoreError};

#[derive(Clone, Debug)]
pub struct OutboundRow {
    pub id: OutboundId,
    pub queue_id: String,
    pub blob_id: String,
    pub prefix: Vec<u8>,
    pub sender: String,
    pub recipient: String,
    pub state: String,
    pub reason: String,
    pub attempts: i64,
    pub next_attempt: i64,
    pub created: i64,
    /// A delay warning (RFC 3464 `delayed`) went to the sender already.
    pub warned: bool,
    /// Why it is held (`state = 'held'`); `None` otherwise.
    pub hold_reason: Option<HoldReason>,
    /// A held local copy: the mailbox it is for.
    pub held_for: Option<HeldLocal>,
}

/// The queue at a glance (`postroom status`): the rows of one state (and,
/// held, one reason), how many and the oldest one's `created`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueCount {
    pub state: String,
    /// Held rows: why.
    pub hold_reason: Option<HoldReason>,
    pub count: u64,
    pub oldest_created: i64,
}

/// One query on both back ends: counted in the database, no row read (a
/// queue of 100,000 rows with their trace prefixes is megabytes).
pub(crate) const SUMMARY: &str =
    "SELECT state, hold_reason, COUNT(*), MIN(created) FROM outbound GROUP BY state, hold_reason ORDER BY state, hold_reason";

impl QueueCount {
    pub(crate) fn new(state: String, code: &str, count: i64, oldest_created: i64) -> QueueCount {
        let hold_reason = (state == "held").then(|| HoldReason::from_code(code));
        QueueCount {
            state,
            hold_reason,
            count: count.max(0) as u64,
            oldest_created,
        }
    }
}

impl OutboundRow {
    /// Fills in the held columns as both back ends store them.
    pub(crate) fn with_hold(mut self, code: &str, account: Option<i64>, folder: &str) -> Self {
        if self.state == "held" {
            self.hold_reason = Some(HoldReason::from_code(code));
            self.held_for = account.map(|a| HeldLocal {
                account_id: crate::ids::AccountId(a),
                folder: FolderTarget::decode(folder),
            });
        }
        self
    }
}

pub(crate) const COLS: &str = "id, queue_id, blob_id, prefix, sender, recipient, state, reason, attempts, next_attempt, created, warned, hold_reason, local_account, local_folder";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboundRow> {
    Ok(OutboundRow {
        id: r.get(0)?,
        queue_id: r.get(1)?,
        blob_id: r.get(2)?,
        prefix: r.get(3)?,
        sender: r.get(4)?,
        recipient: r.get(5)?,
        state: r.get(6)?,
        reason: r.get(7)?,
        attempts: r.get(8)?,
        next_attempt: r.get(9)?,
        created: r.get(10)?,
        warned: r.get::<_, i64>(11)? != 0,
        hold_reason: None,
        held_for: None,
    }
    .with_hold(&r.get::<_, String>(12)?, r.get(13)?, &r.get::<_, String>(14)?))
}

impl Db {
    pub fn outbound(&self) -> Result<Vec<OutboundRow>> {
        self.read(|c| {
            let mut st = c.prepare(&format!("SELECT {COLS} FROM outbound ORDER BY id"))?;
            let rows = st.query_map([], row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// Held rows created in `[since, until)`, oldest first.
    pub fn held_between(&self, since: i64, until: i64) -> Result<Vec<OutboundRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLS} FROM outbound WHERE state = 'held' AND created >= ?1 AND created < ?2 ORDER BY id"
            ))?;
            let rows = st
                .query_map(params![since, until], row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// See [`QueueCount`].
    pub fn queue_summary(&self) -> Result<Vec<QueueCount>> {
        self.read(|c| {
            let mut st = c.prepare_cached(SUMMARY)?;
            let rows = st
                .query_map([], |r| {
                    Ok(QueueCount::new(
                        r.get(0)?,
                        &r.get::<_, String>(1)?,
                        r.get(2)?,
                        r.get(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// Rows due for an attempt (queued or deferred, next attempt passed).
    pub fn due_outbound(&self, now: i64, limit: usize) -> Result<Vec<OutboundRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLS} FROM outbound WHERE state IN ('queued', 'deferred') AND next_attempt <= ?1
                 ORDER BY next_attempt, id LIMIT ?2"
            ))?;
            let rows = st
                .query_map(params![now, limit as i64], row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// The earliest next attempt of a waiting row, to sleep until then.
    pub fn next_outbound_attempt(&self) -> Result<Option<i64>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT MIN(next_attempt) FROM outbound WHERE state IN ('queued', 'deferred')",
                [],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
        })
    }

    /// Records that the delay warning for these rows was sent.
    pub fn mark_outbound_warned(&self, ids: &[OutboundId]) -> Result<()> {
        self.write(|tx| {
            let mut st = tx.prepare_cached("UPDATE outbound SET warned = 1 WHERE id = ?1")?;
            for id in ids {
                st.execute([id])?;
            }
            Ok(())
        })
    }

    pub fn defer_outbound(&self, id: OutboundId, reason: &str, next_attempt: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE outbound SET state = 'deferred', reason = ?2, attempts = attempts + 1, next_attempt = ?3
                 WHERE id = ?1",
                params![id, reason, next_attempt],
            )?;
            Ok(())
        })
    }

    /// Holds every waiting item sent by `sender` (a suspected abuser).
    pub fn hold_sender(&self, sender: &str, reason: &str) -> Result<usize> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE outbound SET state = 'held', reason = ?2, hold_reason = 'sender-over-limits'
                 WHERE sender = ?1 AND state IN ('queued', 'deferred')",
                params![sender, reason],
            )?)
        })
    }

    /// `held` / `queued` (release) / `deferred` with now (retry). A held
    /// local copy is never queued: it is released into its mailbox
    /// (`Delivery::released`).
    pub fn set_outbound_state(&self, queue_id_or_row: &str, state: &str, now: i64) -> Result<usize> {
        self.write(|tx| {
            let n = tx.execute(
                &format!(
                    "UPDATE outbound SET state = ?2, next_attempt = ?3, {SET_HOLD_REASON}
                 WHERE (queue_id = ?1 OR CAST(id AS TEXT) = ?1) AND state IN ('queued', 'deferred', 'held')
                   AND (?2 = 'held' OR local_account IS NULL)"
                ),
                params![queue_id_or_row, state, now],
            )?;
            if n == 0 {
                return Err(StoreError::Invalid(format!(
                    "no waiting queue item {queue_id_or_row}"
                )));
            }
            Ok(n)
        })
    }
}

impl Db {
    /// Removes finished rows; returns the bodies nothing refers to any more.
    pub fn finish_outbound(&self, ids: &[OutboundId]) -> Result<Vec<String>> {
        self.write(|tx| {
            let mut blobs = Vec::new();
            for id in ids {
                let blob: Option<String> = tx
                    .query_row(
                        "DELETE FROM outbound WHERE id = ?1 RETURNING blob_id",
                        [id],
                        |r| r.get(0),
                    )
                    .optional()?;
                blobs.extend(blob);
            }
            Ok(crate::blob::unreferenced(tx, blobs)?)
        })
    }
}

impl Store {
    /// Removes finished rows (delivered, or bounced with the bounce queued)
    /// and frees bodies nothing refers to any more.
    pub async fn finish_outbound(&self, ids: &[OutboundId]) -> Result<()> {
        let blobs = self.meta.finish_outbound(ids).await?;
        self.delete_blobs(blobs);
        Ok(())
    }

    /// `postroom queue delete`: drops waiting items without a bounce.
    pub async fn delete_outbound(&self, queue_id_or_row: &str) -> Result<usize> {
        let ids: Vec<OutboundId> = self
            .meta
            .outbound()
            .await?
            .into_iter()
            .filter(|r| r.queue_id == queue_id_or_row || r.id.to_string() == queue_id_or_row)
            .map(|r| r.id)
            .collect();
        if ids.is_empty() {
            return Err(StoreError::Invalid(format!("no queue item {queue_id_or_row}")));
        }
        self.finish_outbound(&ids).await?;
        Ok(ids.len())
    }
}
