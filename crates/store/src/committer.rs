//! Group commit: one thread owns a write connection and commits every
//! delivery that arrived while the previous commit was running in a single
//! SQLite transaction, so concurrent sessions share one fsync.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use crate::blob::BlobStore;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::oneshot;

use crate::ids::{AccountId, FolderId, Uid};
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

/// What the committer stores: every way a message row comes to be (an SMTP
/// delivery, the Sent copy and `queue release` are `Deliver`; IMAP APPEND;
/// IMAP COPY and MOVE, whose expunge follows in its own transaction). All
/// of them share the group commit's fsyncs and its durability: the caller's
/// answer (`250`, `OK [APPENDUID]`, `OK [COPYUID]`) waits for the commit.
#[derive(Debug)]
pub(crate) enum Work {
    Deliver(Delivery),
    Append(AppendRow),
    Copy {
        from: FolderId,
        uids: Vec<Uid>,
        to: FolderId,
    },
}

impl Work {
    /// Whether it names a body written since the last commit, so the blob
    /// directory must be fsynced before it commits (a COPY shares bodies
    /// that are durable already).
    pub(crate) fn has_new_body(&self) -> bool {
        !matches!(self, Work::Copy { .. })
    }
}

/// An APPEND, owned (see [`crate::backend::Appended`]): its body is in the
/// blob store, not yet known to be durable.
#[derive(Debug, Clone)]
pub(crate) struct AppendRow {
    pub folder: FolderId,
    pub blob_id: String,
    pub size: i64,
    pub flags: i64,
    pub keywords: String,
    pub internal_date: i64,
}

impl From<crate::backend::Appended<'_>> for AppendRow {
    fn from(a: crate::backend::Appended<'_>) -> Self {
        AppendRow {
            folder: a.folder,
            blob_id: a.blob_id.to_string(),
            size: a.size,
            flags: a.flags,
            keywords: a.keywords.to_string(),
            internal_date: a.internal_date,
        }
    }
}

/// What a committed [`Work`] gave.
#[derive(Debug)]
pub(crate) enum Done {
    Delivered,
    /// The new message's UID (UIDPLUS `APPENDUID`).
    Appended(Uid),
    /// The target's UIDVALIDITY and (source, new) UID pairs (`COPYUID`).
    Copied(i64, Vec<(Uid, Uid)>),
}

impl Done {
    pub(crate) fn appended(self) -> Result<Uid> {
        match self {
            Done::Appended(uid) => Ok(uid),
            other => Err(StoreError::Invalid(format!(
                "committer answered {other:?} to an APPEND"
            ))),
        }
    }

    pub(crate) fn copied(self) -> Result<(i64, Vec<(Uid, Uid)>)> {
        match self {
            Done::Copied(uidvalidity, pairs) => Ok((uidvalidity, pairs)),
            other => Err(StoreError::Invalid(format!(
                "committer answered {other:?} to a COPY"
            ))),
        }
    }
}

/// One message row as every way in stores it (see [`insert_message`]).
pub(crate) struct NewMessage<'a> {
    pub flags: i64,
    pub keywords: &'a str,
    /// Unix seconds.
    pub internal_date: i64,
    /// Exact: prefix + body.
    pub size: i64,
    pub blob_id: &'a str,
    pub prefix: &'a [u8],
    /// The SMTP transaction it came in (deliveries only).
    pub queue_id: Option<&'a str>,
}

/// Where a new row goes: an account's folder by role or name (resolved in
/// the commit, see [`take_slot`]), or one folder by id (APPEND, COPY).
pub(crate) enum Place<'a> {
    Account(AccountId, &'a FolderTarget),
    Folder(FolderId),
}

/// Where a row went.
pub(crate) struct Inserted {
    pub folder: FolderId,
    pub uid: Uid,
}

type Request = (Work, oneshot::Sender<Result<Done>>);

pub(crate) struct Committer {
    tx: mpsc::Sender<Request>,
    /// Transactions committed so far (tests count them).
    batches: Arc<AtomicU64>,
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
        let batches = Arc::new(AtomicU64::new(0));
        let committed = Committed {
            touched,
            folders,
            batches: Arc::clone(&batches),
        };
        std::thread::Builder::new()
            .name("postroom-commit".into())
            .spawn(move || run(conn, blobs, committed, rx))?;
        Ok(Committer { tx, batches })
    }

    pub(crate) async fn commit(&self, work: Work) -> Result<Done> {
        let (reply, wait) = oneshot::channel();
        self.tx.send((work, reply)).map_err(|_| StoreError::Unavailable)?;
        wait.await.map_err(|_| StoreError::Unavailable)?
    }

    /// Transactions committed so far.
    pub(crate) fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
}

/// Where the folders a batch changed go once it has committed.
struct Committed {
    touched: Touched,
    folders: Arc<FolderWatch>,
    batches: Arc<AtomicU64>,
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
        if batch.iter().any(|(w, _)| w.has_new_body()) {
            if let Err(e) = blobs.sync() {
                for (_, reply) in batch {
                    let _ = reply.send(Err(StoreError::Io(std::io::Error::new(e.kind(), e.to_string()))));
                }
                continue;
            }
        }
        let results = commit_batch(&mut conn, &batch);
        committed.batches.fetch_add(1, Ordering::Relaxed);
        committed.folders.publish(&committed.touched);
        for ((_, reply), result) in batch.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

/// Applies each request in its own savepoint (one bad request does not
/// fail the others), then commits once.
fn commit_batch(conn: &mut Connection, batch: &[Request]) -> Vec<Result<Done>> {
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return batch.iter().map(|_| Err(commit_failed(&e))).collect(),
    };
    let mut results: Vec<Result<Done>> = Vec::with_capacity(batch.len());
    for (work, _) in batch {
        results.push(apply_one(&tx, work));
    }
    if let Err(e) = tx.commit() {
        return batch.iter().map(|_| Err(commit_failed(&e))).collect();
    }
    results
}

fn commit_failed(e: &rusqlite::Error) -> StoreError {
    StoreError::Invalid(format!("commit failed: {e}"))
}

fn apply_one(tx: &Transaction<'_>, work: &Work) -> Result<Done> {
    tx.execute_batch("SAVEPOINT delivery")?;
    let done = match work {
        Work::Deliver(d) => apply(tx, d).map(|()| Done::Delivered),
        Work::Append(a) => append(tx, a).map(Done::Appended),
        Work::Copy { from, uids, to } => copy(tx, *from, uids, *to).map(|(v, pairs)| Done::Copied(v, pairs)),
    };
    match done {
        Ok(done) => {
            tx.execute_batch("RELEASE delivery")?;
            Ok(done)
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO delivery; RELEASE delivery")?;
            Err(e)
        }
    }
}

/// The folder's id, its next UID and MODSEQ (taken), and its UIDVALIDITY.
type Slot = (i64, i64, i64, i64);

/// Takes the next UID and a new MODSEQ of the folder `place` names: a
/// folder by id, or an account's by name or role. A role is found by its
/// special use (RFC 6154), the oldest such folder when there are several,
/// and falls back to INBOX when the account has none.
fn take_slot(tx: &Transaction<'_>, place: &Place<'_>) -> Result<Slot> {
    let slot = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Slot> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    };
    let (account, target) = match place {
        Place::Account(account, target) => (*account, *target),
        Place::Folder(id) => {
            return tx
                .prepare_cached(
                    "UPDATE folders SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1
                     WHERE id = ?1
                     RETURNING id, uidnext - 1, highestmodseq, uidvalidity",
                )?
                .query_row([id], slot)
                .optional()?
                .ok_or_else(no_folder);
        }
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

pub(crate) fn no_folder() -> StoreError {
    StoreError::Invalid("no such mailbox".into())
}

/// The one place a message row is inserted on SQLite (PostgreSQL's is
/// `pg::committer::insert_message`): it takes the folder's next UID and a
/// new MODSEQ (so UIDNEXT and HIGHESTMODSEQ move together), derives the
/// POP3 UIDL from them, and inserts the row, whose trigger adds its size to
/// the account's running total (`used_bytes`, what quotas read). A new UID
/// is above every session's \Recent mark (`folders.recent_uid`), so it is
/// \Recent to the next session that claims it; the update hook records the
/// folder, whose IDLE sessions wake once the batch commits.
pub(crate) fn insert_message(
    tx: &Transaction<'_>,
    place: &Place<'_>,
    m: &NewMessage<'_>,
) -> Result<Inserted> {
    let (folder_id, uid, modseq, uidvalidity) = take_slot(tx, place)?;
    let uid = Uid::from_i64(uid).ok_or(StoreError::Limit("no UIDs left in this mailbox"))?;
    tx.prepare_cached(
        "INSERT INTO messages (folder_id, uid, modseq, flags, keywords, internal_date, size, pop3_uidl, blob_id, prefix, queue_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        folder_id,
        uid,
        modseq,
        m.flags,
        m.keywords,
        m.internal_date,
        m.size,
        crate::mailbox::pop3_uidl(uidvalidity, uid.as_i64()),
        m.blob_id,
        m.prefix,
        m.queue_id
    ])?;
    Ok(Inserted {
        folder: FolderId(folder_id),
        uid,
    })
}

fn apply(tx: &Transaction<'_>, d: &Delivery) -> Result<()> {
    for local in &d.local {
        let size = i64::try_from(local.prefix.len() as u64 + d.blob_size).unwrap_or(i64::MAX);
        let row = insert_message(
            tx,
            &Place::Account(local.account_id, &local.folder),
            &NewMessage {
                flags: local.flags,
                keywords: &local.keywords,
                internal_date: local.internal_date.unwrap_or(d.received_at),
                size,
                blob_id: &d.blob_id,
                prefix: &local.prefix,
                queue_id: Some(&d.queue_id),
            },
        )?;
        if let Some(message_id) = &local.sent_copy_of {
            tx.prepare_cached("DELETE FROM sent_copies WHERE created < ?1")?
                .execute([d.received_at - crate::SENT_COPY_WINDOW_SECS])?;
            tx.prepare_cached(
                "INSERT INTO sent_copies (folder_id, message_id, uid, created) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![row.folder, message_id, row.uid, d.received_at])?;
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

/// APPEND: one row in a folder named by id.
fn append(tx: &Transaction<'_>, a: &AppendRow) -> Result<Uid> {
    // Again in the transaction: another session may have added keywords
    // since the check before the body was written.
    crate::folders::check_keywords(tx, a.folder, &a.keywords)?;
    let row = insert_message(
        tx,
        &Place::Folder(a.folder),
        &NewMessage {
            flags: a.flags,
            keywords: &a.keywords,
            internal_date: a.internal_date,
            size: a.size,
            blob_id: &a.blob_id,
            prefix: b"",
            queue_id: None,
        },
    )?;
    Ok(row.uid)
}

/// COPY (and MOVE's copy): new rows sharing the bodies, in the order the
/// UIDs were asked (the UIDPLUS pairs follow it); UIDs that are gone are
/// skipped. Returns the target's UIDVALIDITY and the pairs.
fn copy(tx: &Transaction<'_>, from: FolderId, uids: &[Uid], to: FolderId) -> Result<(i64, Vec<(Uid, Uid)>)> {
    let uidvalidity: i64 = tx
        .prepare_cached("SELECT uidvalidity FROM folders WHERE id = ?1")?
        .query_row([to], |r| r.get(0))
        .optional()?
        .ok_or_else(no_folder)?;
    type Source = (i64, String, i64, i64, String, Vec<u8>);
    let mut get = tx.prepare_cached(
        "SELECT flags, keywords, internal_date, size, blob_id, prefix FROM messages WHERE folder_id = ?1 AND uid = ?2",
    )?;
    let mut rows: Vec<(Uid, Source)> = Vec::with_capacity(uids.len());
    let mut copied_keywords = String::new();
    for &uid in uids {
        let Some(row) = get
            .query_row(params![from, uid], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })
            .optional()?
        else {
            continue;
        };
        let row: Source = row;
        if !row.1.is_empty() {
            copied_keywords.push(' ');
            copied_keywords.push_str(&row.1);
        }
        rows.push((uid, row));
    }
    crate::folders::check_keywords(tx, to, &copied_keywords)?;
    let mut pairs = Vec::with_capacity(rows.len());
    for (uid, (flags, keywords, internal_date, size, blob_id, prefix)) in &rows {
        let row = insert_message(
            tx,
            &Place::Folder(to),
            &NewMessage {
                flags: *flags,
                keywords,
                internal_date: *internal_date,
                size: *size,
                blob_id,
                prefix,
                queue_id: None,
            },
        )?;
        pairs.push((*uid, row.uid));
    }
    Ok((uidvalidity, pairs))
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
