//! Group commit: one thread owns a write connection and commits every
//! delivery that arrived while the previous commit was running in a single
//! SQLite transaction, so concurrent sessions share one fsync.

use std::sync::{mpsc, Arc};

use crate::blob::BlobStore;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::oneshot;

use crate::roles::FolderTarget;
use crate::watch::{FolderWatch, Touched};
use crate::{Result, StoreError};

/// Most deliveries in one transaction.
const MAX_BATCH: usize = 512;

/// One accepted message: where it goes. Its blob is already durable.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub queue_id: String,
    pub blob_id: String,
    pub blob_size: u64,
    /// Unix seconds.
    pub received_at: i64,
    pub local: Vec<LocalDelivery>,
    pub outbound: Vec<OutboundItem>,
    /// Held queue rows this delivery finishes (`queue release`): removed
    /// in the same transaction that stores their copies, and only if still
    /// held, so a release run twice delivers once.
    pub released: Vec<crate::ids::OutboundId>,
}

#[derive(Debug, Clone)]
pub struct LocalDelivery {
    pub account_id: crate::ids::AccountId,
    /// Resolved in the commit: a role falls back to INBOX.
    pub folder: FolderTarget,
    /// Header lines written for this recipient only (Return-Path,
    /// Delivered-To, Received), CRLF-terminated.
    pub prefix: Vec<u8>,
    pub flags: i64,
    /// Space-separated IMAP keywords (APPEND may set them).
    pub keywords: String,
    /// INTERNALDATE when not the arrival time (APPEND with a date).
    pub internal_date: Option<i64>,
    /// A copy a submitting user's Sent folder gets, with the message's
    /// Message-ID: remembered so the client's own APPEND of the same
    /// message is not stored twice.
    pub sent_copy_of: Option<String>,
}

#[derive(Debug, Clone)]
pub struct OutboundItem {
    pub sender: String,
    pub recipient: String,
    pub prefix: Vec<u8>,
    /// `None`: queued for delivery. `Some`: held for the admin, with why
    /// and (for a local copy) the mailbox it is for.
    pub held: Option<crate::held::Hold>,
}

type Request = (Delivery, oneshot::Sender<Result<()>>);

pub(crate) struct Committer {
    tx: mpsc::Sender<Request>,
}

impl Committer {
    /// `touched` records the folders changed on `conn` (see watch.rs);
    /// they are published to `folders` after each commit.
    pub(crate) fn start(
        conn: Connection,
        touched: Touched,
        folders: Arc<FolderWatch>,
        blobs: Arc<dyn BlobStore>,
    ) -> Result<Committer> {
        let (tx, rx) = mpsc::channel::<Request>();
        let committed = Committed { touched, folders };
        std::thread::Builder::new()
            .name("postroom-commit".into())
            .spawn(move || run(conn, blobs, committed, rx))?;
        Ok(Committer { tx })
    }

    pub(crate) async fn commit(&self, delivery: Delivery) -> Result<()> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send((delivery, reply))
            .map_err(|_| StoreError::Unavailable)?;
        wait.await.map_err(|_| StoreError::Unavailable)?
    }
}

/// Where the folders a batch changed go once it has committed.
struct Committed {
    touched: Touched,
    folders: Arc<FolderWatch>,
}

fn run(mut conn: Connection, blobs: Arc<dyn BlobStore>, committed: Committed, rx: mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // Every blob of the batch was put before its request was sent:
        // one directory fsync makes all their names durable, before the
        // metadata that names them is committed.
        if let Err(e) = blobs.sync() {
            for (_, reply) in batch {
                let _ = reply.send(Err(StoreError::Io(std::io::Error::new(e.kind(), e.to_string()))));
            }
            continue;
        }
        let results = commit_batch(&mut conn, &batch);
        committed.folders.publish(&committed.touched);
        for ((_, reply), result) in batch.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

/// Applies each delivery in its own savepoint (one bad delivery does not
/// fail the others), then commits once.
fn commit_batch(conn: &mut Connection, batch: &[Request]) -> Vec<Result<()>> {
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return batch.iter().map(|_| Err(commit_failed(&e))).collect(),
    };
    let mut results: Vec<Result<()>> = Vec::with_capacity(batch.len());
    for (delivery, _) in batch {
        results.push(apply_one(&tx, delivery));
    }
    if let Err(e) = tx.commit() {
        return batch.iter().map(|_| Err(commit_failed(&e))).collect();
    }
    results
}

fn commit_failed(e: &rusqlite::Error) -> StoreError {
    StoreError::Invalid(format!("commit failed: {e}"))
}

fn apply_one(tx: &Transaction<'_>, d: &Delivery) -> Result<()> {
    tx.execute_batch("SAVEPOINT delivery")?;
    match apply(tx, d) {
        Ok(()) => {
            tx.execute_batch("RELEASE delivery")?;
            Ok(())
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO delivery; RELEASE delivery")?;
            Err(e)
        }
    }
}

/// The folder's id, its next UID and MODSEQ (taken), and its UIDVALIDITY.
type Slot = (i64, i64, i64, i64);

/// Takes the next UID of the folder `target` names for `account`. A role
/// is found by its special use (RFC 6154), the oldest such folder when
/// there are several, and falls back to INBOX when the account has none.
pub(crate) fn take_slot(
    tx: &Transaction<'_>,
    account: crate::ids::AccountId,
    target: &FolderTarget,
) -> Result<Slot> {
    let slot = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Slot> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    };
    let by_name = |name: &str| -> Result<Option<Slot>> {
        Ok(tx
            .prepare_cached(
                "UPDATE folders SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1
                 WHERE account_id = ?1 AND name = ?2
                 RETURNING id, uidnext - 1, highestmodseq, uidvalidity",
            )?
            .query_row(params![account, name], slot)
            .optional()?)
    };
    let found = match target {
        FolderTarget::Inbox => by_name("INBOX")?,
        FolderTarget::Named(name) => by_name(name)?,
        FolderTarget::Role(role) => {
            let found = tx
                .prepare_cached(
                    "UPDATE folders SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1
                     WHERE id = (SELECT id FROM folders WHERE account_id = ?1 AND special_use = ?2 COLLATE NOCASE
                                 ORDER BY id LIMIT 1)
                     RETURNING id, uidnext - 1, highestmodseq, uidvalidity",
                )?
                .query_row(params![account, role.attribute()], slot)
                .optional()?;
            match found {
                Some(s) => Some(s),
                None => by_name("INBOX")?,
            }
        }
    };
    found.ok_or_else(|| StoreError::Invalid(format!("account {account} has no {target}")))
}

fn apply(tx: &Transaction<'_>, d: &Delivery) -> Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages (folder_id, uid, modseq, flags, keywords, internal_date, size, pop3_uidl, blob_id, prefix, queue_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for local in &d.local {
        let row = take_slot(tx, local.account_id, &local.folder)?;
        let (folder_id, uid, modseq, uidvalidity) = row;
        let uidl = crate::mailbox::pop3_uidl(uidvalidity, uid);
        let size = local.prefix.len() as u64 + d.blob_size;
        insert.execute(params![
            folder_id,
            uid,
            modseq,
            local.flags,
            local.keywords,
            local.internal_date.unwrap_or(d.received_at),
            size as i64,
            uidl,
            d.blob_id,
            local.prefix,
            d.queue_id
        ])?;
        if let Some(message_id) = &local.sent_copy_of {
            tx.prepare_cached("DELETE FROM sent_copies WHERE created < ?1")?
                .execute([d.received_at - crate::SENT_COPY_WINDOW_SECS])?;
            tx.prepare_cached(
                "INSERT INTO sent_copies (folder_id, message_id, uid, created) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![folder_id, message_id, uid, d.received_at])?;
        }
    }
    let mut queue = tx.prepare_cached(
        "INSERT INTO outbound (queue_id, blob_id, prefix, sender, recipient, state, reason, next_attempt, created,
                               hold_reason, local_account, local_folder)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, ?11)",
    )?;
    for item in &d.outbound {
        let row = OutboundColumns::of(item);
        queue.execute(params![
            d.queue_id,
            d.blob_id,
            item.prefix,
            item.sender,
            item.recipient,
            row.state,
            row.detail,
            d.received_at,
            row.hold_reason,
            row.local_account,
            row.local_folder
        ])?;
    }
    let mut release = tx.prepare_cached("DELETE FROM outbound WHERE id = ?1 AND state = 'held'")?;
    for id in &d.released {
        if release.execute([id])? == 0 {
            return Err(StoreError::Invalid(format!("no held queue item {id}")));
        }
    }
    Ok(())
}

/// An [`OutboundItem`]'s held state as the `outbound` columns keep it (one
/// mapping for both back ends).
pub(crate) struct OutboundColumns<'a> {
    pub state: &'static str,
    pub detail: &'a str,
    pub hold_reason: &'static str,
    pub local_account: Option<i64>,
    pub local_folder: String,
}

impl<'a> OutboundColumns<'a> {
    pub fn of(item: &'a OutboundItem) -> Self {
        match &item.held {
            None => OutboundColumns {
                state: "queued",
                detail: "",
                hold_reason: "",
                local_account: None,
                local_folder: String::new(),
            },
            Some(h) => OutboundColumns {
                state: "held",
                detail: &h.detail,
                hold_reason: h.reason.code(),
                local_account: h.local.as_ref().map(|l| l.account_id.0),
                local_folder: h.local.as_ref().map(|l| l.folder.encode()).unwrap_or_default(),
            },
        }
    }
}
