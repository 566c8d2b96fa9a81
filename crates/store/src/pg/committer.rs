//! Group commit on PostgreSQL (`crate::committer` for this back end): one
//! task takes every delivery waiting, up to [`MAX_BATCH`], and commits them
//! in one transaction, so concurrent SMTP sessions share one WAL flush
//! (`synchronous_commit = on`, set on every connection) instead of paying
//! one each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::{describe, get, retryable};
use crate::blob::BlobStore;
use crate::committer::{AppendRow, Delivery, Done, NewMessage, OutboundColumns, Work};
use crate::ids::{AccountId, FolderId, Uid};
use crate::roles::FolderTarget;
use crate::watch::FolderWatch;
use crate::{Result, StoreError};

/// Most deliveries in one transaction (as the SQLite committer).
const MAX_BATCH: usize = 512;

/// Times a batch that lost a deadlock to another node's is run again.
const RETRIES: usize = 3;

type Request = (Work, oneshot::Sender<Result<Done>>);

pub(super) struct Committer {
    tx: mpsc::UnboundedSender<Request>,
    /// Transactions committed so far (tests count them).
    batches: Arc<AtomicU64>,
    /// Batches run again delivery by delivery, in savepoints, after their
    /// pipelined attempt failed (tests count them).
    slow: Arc<AtomicU64>,
}

impl Committer {
    /// Starts the committer task (it ends when the last handle is dropped).
    pub(super) fn start(
        pool: Pool,
        place: String,
        folders: Arc<FolderWatch>,
        blobs: Arc<dyn BlobStore>,
    ) -> Committer {
        let (tx, rx) = mpsc::unbounded_channel();
        let batches = Arc::new(AtomicU64::new(0));
        let slow = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(
            pool,
            place,
            folders,
            blobs,
            rx,
            Arc::clone(&batches),
            Arc::clone(&slow),
        ));
        Committer { tx, batches, slow }
    }

    /// Transactions committed so far.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Fast-path batches (deliveries only, see [`try_batch`]) whose
    /// pipelined attempt failed and that were run again in savepoints.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fn slow_batches(&self) -> u64 {
        self.slow.load(Ordering::Relaxed)
    }

    /// Commits new message rows (a delivery, an APPEND, a COPY) with the
    /// others waiting; returns once the transaction is flushed.
    pub(super) async fn commit(&self, work: Work) -> Result<Done> {
        let (reply, wait) = oneshot::channel();
        self.tx.send((work, reply)).map_err(|_| StoreError::Unavailable)?;
        wait.await.map_err(|_| StoreError::Unavailable)?
    }
}

async fn run(
    pool: Pool,
    place: String,
    folders: Arc<FolderWatch>,
    blobs: Arc<dyn BlobStore>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    batches: Arc<AtomicU64>,
    slow: Arc<AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // Every blob of the batch was put before its request was sent:
        // one directory fsync makes all their names durable, before the
        // rows that name them are committed.
        // A COPY shares bodies that are durable already.
        let synced = if batch.iter().any(|(w, _)| w.has_new_body()) {
            let blobs = Arc::clone(&blobs);
            match tokio::task::spawn_blocking(move || blobs.sync()).await {
                Ok(r) => r,
                Err(e) => Err(std::io::Error::other(e.to_string())),
            }
        } else {
            Ok(())
        };
        if let Err(e) = synced {
            for (_, reply) in batch {
                let _ = reply.send(Err(StoreError::Io(std::io::Error::new(e.kind(), e.to_string()))));
            }
            continue;
        }
        let work: Vec<&Work> = batch.iter().map(|(w, _)| w).collect();
        let (results, touched) = commit_batch(&pool, &place, &work, &slow).await;
        batches.fetch_add(1, Ordering::Relaxed);
        folders.wake_ids(touched.iter().map(|f| f.0));
        for ((_, reply), result) in batch.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

/// Commits the batch, again when it lost a deadlock; returns each
/// delivery's result and the folders the commit changed.
async fn commit_batch(
    pool: &Pool,
    place: &str,
    batch: &[&Work],
    slow: &AtomicU64,
) -> (Vec<Result<Done>>, Vec<FolderId>) {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_batch(pool, place, batch, slow).await {
            Ok(done) => return done,
            Err(Failed::Retry(_)) if attempt < RETRIES => continue,
            Err(Failed::Retry(e)) | Err(Failed::Other(e)) => {
                let msg = e.to_string();
                return (
                    batch
                        .iter()
                        .map(|_| Err(StoreError::Backend(format!("commit failed: {msg}"))))
                        .collect(),
                    Vec::new(),
                );
            }
        }
    }
}

enum Failed {
    Retry(StoreError),
    Other(StoreError),
}

fn failed(e: tokio_postgres::Error) -> Failed {
    if retryable(&e) {
        Failed::Retry(StoreError::Backend(describe(&e)))
    } else {
        Failed::Other(StoreError::Backend(describe(&e)))
    }
}

/// One transaction for the batch. First every delivery's statements go out
/// at once ([`pipelined`]): 3 round trips for the batch (BEGIN, the
/// statements, COMMIT) instead of 5 per delivery. Profiled at 9868598 with
/// 20 SMTP sessions, the savepoint path below made 5 sequential round trips
/// per delivery in the one committer task (SAVEPOINT, lock, UID, INSERT,
/// RELEASE), so a batch of 20 waited for 100 of them before its WAL flush.
/// Only when that fails (a mailbox or folder removed since RCPT, a
/// released row gone) is the batch run again with each delivery in its own
/// savepoint, so one bad delivery fails alone, as before. A batch with an
/// APPEND or a COPY (their keyword checks and COPY's read of the source
/// rows need answers before the inserts), or with a delivery that is not
/// [`pipelinable`], takes the savepoint path straight away.
async fn try_batch(
    pool: &Pool,
    place: &str,
    batch: &[&Work],
    slow: &AtomicU64,
) -> std::result::Result<(Vec<Result<Done>>, Vec<FolderId>), Failed> {
    let mut client = get(pool, place).await.map_err(Failed::Other)?;
    if let Some(deliveries) = fast_path(batch) {
        let tx = client.transaction().await.map_err(failed)?;
        match pipelined(&tx, &deliveries).await {
            Ok(touched) => {
                // OK/250 only after this COMMIT, as on the savepoint path.
                tx.commit().await.map_err(failed)?;
                return Ok((batch.iter().map(|_| Ok(Done::Delivered)).collect(), touched));
            }
            Err(ApplyError::Db(e)) if retryable(&e) => return Err(failed(e)),
            // Found out again, delivery by delivery, below.
            Err(_) => tx.rollback().await.map_err(failed)?,
        }
        slow.fetch_add(1, Ordering::Relaxed);
    }
    let mut tx = client.transaction().await.map_err(failed)?;
    let mut results = Vec::with_capacity(batch.len());
    let mut touched = Vec::new();
    for work in batch {
        let sp = tx.savepoint("delivery").await.map_err(failed)?;
        let mut folders = Vec::new();
        let done = match work {
            Work::Deliver(d) => apply(&sp, d, &mut folders).await.map(|()| Done::Delivered),
            Work::Append(a) => append(&sp, a, &mut folders).await.map(Done::Appended),
            Work::Copy { from, uids, to } => copy(&sp, *from, uids, *to, &mut folders)
                .await
                .map(|(v, pairs)| Done::Copied(v, pairs)),
        };
        match done {
            Ok(done) => {
                sp.commit().await.map_err(failed)?;
                touched.extend(folders);
                results.push(Ok(done));
            }
            Err(ApplyError::Db(e)) if retryable(&e) => return Err(failed(e)),
            Err(e) => {
                sp.rollback().await.map_err(failed)?;
                results.push(Err(e.into()));
            }
        }
    }
    tx.commit().await.map_err(failed)?;
    Ok((results, touched))
}

enum ApplyError {
    Db(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for ApplyError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApplyError::Db(e)
    }
}

impl From<ApplyError> for StoreError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Db(e) => super::pg_err(e),
            ApplyError::Store(e) => e,
        }
    }
}

/// Where a new row goes (as the SQLite committer's `Place`).
enum Place<'a> {
    Account(AccountId, &'a FolderTarget),
    Folder(FolderId),
}

/// Takes the next UID of the folder `place` names (as the SQLite
/// committer's `take_slot`): a role by its special use (RFC 6154), the
/// oldest such folder, else INBOX. The account's row is locked first, as
/// every writer of messages takes them (see
/// `mailbox::lock_folder_and_account`): the row's trigger changes the
/// account's running total. The row: id, UID, MODSEQ, UIDVALIDITY.
async fn take_slot(
    tx: &deadpool_postgres::Transaction<'_>,
    place: &Place<'_>,
) -> std::result::Result<tokio_postgres::Row, ApplyError> {
    let (account, target) = match place {
        Place::Account(account, target) => (*account, *target),
        Place::Folder(id) => {
            let lock = tx
                .prepare_cached(
                    "SELECT 1 FROM accounts WHERE id = (SELECT account_id FROM folders WHERE id = $1)
                     FOR NO KEY UPDATE",
                )
                .await?;
            tx.execute(&lock, &[&id.0]).await?;
            let next = tx
                .prepare_cached(
                    "UPDATE folders SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1
                     WHERE id = $1
                     RETURNING id, uidnext - 1, highestmodseq, uidvalidity",
                )
                .await?;
            return tx
                .query_opt(&next, &[&id.0])
                .await?
                .ok_or_else(|| ApplyError::Store(crate::committer::no_folder()));
        }
    };
    let lock_account = tx
        .prepare_cached("SELECT 1 FROM accounts WHERE id = $1 FOR NO KEY UPDATE")
        .await?;
    tx.execute(&lock_account, &[&account.0]).await?;
    let by_name = tx
        .prepare_cached(
            "UPDATE folders SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1
             WHERE account_id = $1 AND name = $2
             RETURNING id, uidnext - 1, highestmodseq, uidvalidity",
        )
        .await?;
    let found = match target {
        FolderTarget::Inbox => tx.query_opt(&by_name, &[&account.0, &"INBOX"]).await?,
        FolderTarget::Named(name) => tx.query_opt(&by_name, &[&account.0, name]).await?,
        FolderTarget::Role(role) => {
            let by_role = tx
                .prepare_cached(
                    "UPDATE folders SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1
                     WHERE id = (SELECT id FROM folders WHERE account_id = $1 AND lower(special_use) = lower($2)
                                 ORDER BY id LIMIT 1)
                     RETURNING id, uidnext - 1, highestmodseq, uidvalidity",
                )
                .await?;
            match tx.query_opt(&by_role, &[&account.0, &role.attribute()]).await? {
                Some(row) => Some(row),
                None => tx.query_opt(&by_name, &[&account.0, &"INBOX"]).await?,
            }
        }
    };
    found.ok_or_else(|| ApplyError::Store(StoreError::Invalid(format!("account {account} has no {target}"))))
}

/// The one place a message row is inserted on PostgreSQL (SQLite's is
/// `committer::insert_message`, with the same rules): the folder's next
/// UID and a new MODSEQ, the POP3 UIDL from them, the row, whose trigger
/// adds its size to the account's `used_bytes`. The folder is recorded in
/// `touched`, whose IDLE sessions wake once the batch commits.
async fn insert_message(
    tx: &deadpool_postgres::Transaction<'_>,
    place: &Place<'_>,
    m: &NewMessage<'_>,
    touched: &mut Vec<FolderId>,
) -> std::result::Result<(FolderId, Uid), ApplyError> {
    let row = take_slot(tx, place).await?;
    let folder_id: i64 = row.try_get(0)?;
    let uid: i64 = row.try_get(1)?;
    let modseq: i64 = row.try_get(2)?;
    let uidvalidity: i64 = row.try_get(3)?;
    let new_uid = Uid::from_i64(uid).ok_or(ApplyError::Store(StoreError::Limit(
        "no UIDs left in this mailbox",
    )))?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO messages (folder_id, uid, modseq, flags, keywords, internal_date, size, pop3_uidl, blob_id, prefix, queue_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .await?;
    tx.execute(
        &insert,
        &[
            &folder_id,
            &uid,
            &modseq,
            &m.flags,
            &m.keywords,
            &m.internal_date,
            &m.size,
            &crate::mailbox::pop3_uidl(uidvalidity, uid),
            &m.blob_id,
            &m.prefix,
            &m.queue_id,
        ],
    )
    .await?;
    touched.push(FolderId(folder_id));
    Ok((FolderId(folder_id), new_uid))
}

async fn apply(
    tx: &deadpool_postgres::Transaction<'_>,
    d: &Delivery,
    touched: &mut Vec<FolderId>,
) -> std::result::Result<(), ApplyError> {
    for local in &d.local {
        let size = i64::try_from(local.prefix.len() as u64 + d.blob_size).unwrap_or(i64::MAX);
        let (folder_id, uid) = insert_message(
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
            touched,
        )
        .await?;
        if let Some(message_id) = &local.sent_copy_of {
            tx.execute(
                "DELETE FROM sent_copies WHERE created < $1",
                &[&(d.received_at - crate::SENT_COPY_WINDOW_SECS)],
            )
            .await?;
            tx.execute(
                "INSERT INTO sent_copies (folder_id, message_id, uid, created) VALUES ($1, $2, $3, $4)",
                &[&folder_id.0, message_id, &uid.as_i64(), &d.received_at],
            )
            .await?;
        }
    }
    if !d.outbound.is_empty() {
        let queue = tx
            .prepare_cached(
                "INSERT INTO outbound (queue_id, blob_id, prefix, sender, recipient, state, reason, next_attempt, created,
                                       hold_reason, local_account, local_folder)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11)",
            )
            .await?;
        for item in &d.outbound {
            let row = OutboundColumns::of(item);
            tx.execute(
                &queue,
                &[
                    &d.queue_id,
                    &d.blob_id,
                    &item.prefix,
                    &item.sender,
                    &item.recipient,
                    &row.state,
                    &row.detail,
                    &d.received_at,
                    &row.hold_reason,
                    &row.local_account,
                    &row.local_folder,
                ],
            )
            .await?;
        }
    }
    for id in &d.released {
        let n = tx
            .execute("DELETE FROM outbound WHERE id = $1 AND state = 'held'", &[&id.0])
            .await?;
        if n == 0 {
            return Err(ApplyError::Store(StoreError::Invalid(format!(
                "no held queue item {id}"
            ))));
        }
    }
    Ok(())
}

/// APPEND: one row in a folder named by id.
async fn append(
    tx: &deadpool_postgres::Transaction<'_>,
    a: &AppendRow,
    touched: &mut Vec<FolderId>,
) -> std::result::Result<Uid, ApplyError> {
    // The folder locked first, so the keyword check and the insert see no
    // other writer's keywords in between (as mailbox.rs's writers do);
    // checked again here: another session may have added keywords since
    // the check before the body was written.
    if super::mailbox::lock_folder_and_account(&**tx, a.folder)
        .await
        .map_err(ApplyError::Store)?
        .is_none()
    {
        return Err(ApplyError::Store(crate::committer::no_folder()));
    }
    super::mailbox::check_keywords(&**tx, a.folder, &a.keywords)
        .await
        .map_err(ApplyError::Store)?;
    let (_, uid) = insert_message(
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
        touched,
    )
    .await?;
    Ok(uid)
}

/// COPY (and MOVE's copy): new rows sharing the bodies, in the order the
/// UIDs were asked (the UIDPLUS pairs follow it); UIDs that are gone are
/// skipped. Returns the target's UIDVALIDITY and the pairs.
async fn copy(
    tx: &deadpool_postgres::Transaction<'_>,
    from: FolderId,
    uids: &[Uid],
    to: FolderId,
    touched: &mut Vec<FolderId>,
) -> std::result::Result<(i64, Vec<(Uid, Uid)>), ApplyError> {
    // The target locked first (see `append`).
    let Some((uidvalidity, _, _)) = super::mailbox::lock_folder_and_account(&**tx, to)
        .await
        .map_err(ApplyError::Store)?
    else {
        return Err(ApplyError::Store(crate::committer::no_folder()));
    };
    let asked: Vec<i64> = uids.iter().map(|u| u.as_i64()).collect();
    let rows = tx
        .query(
            "SELECT uid, flags, keywords, internal_date, size, blob_id, prefix FROM messages
             WHERE folder_id = $1 AND uid = ANY($2)",
            &[&from.0, &asked],
        )
        .await?;
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    let mut copied_keywords = String::new();
    for r in &rows {
        let u: i64 = r.try_get(0)?;
        let kw: &str = r.try_get(2)?;
        if !kw.is_empty() {
            copied_keywords.push(' ');
            copied_keywords.push_str(kw);
        }
        found.insert(u, r);
    }
    super::mailbox::check_keywords(&**tx, to, &copied_keywords)
        .await
        .map_err(ApplyError::Store)?;
    let mut pairs = Vec::with_capacity(found.len());
    for &u in uids {
        let Some(r) = found.get(&u.as_i64()) else {
            continue;
        };
        let (_, new_uid) = insert_message(
            tx,
            &Place::Folder(to),
            &NewMessage {
                flags: r.try_get(1)?,
                keywords: r.try_get(2)?,
                internal_date: r.try_get(3)?,
                size: r.try_get(4)?,
                blob_id: r.try_get(5)?,
                prefix: r.try_get(6)?,
                queue_id: None,
            },
            touched,
        )
        .await?;
        pairs.push((u, new_uid));
    }
    Ok((uidvalidity, pairs))
}

/// A delivery whose every statement can go out without waiting for
/// another's answer: everything but a Sent copy (its bookkeeping needs the
/// UID first; submissions with `sent_copy` are few).
fn pipelinable(d: &Delivery) -> bool {
    d.local.iter().all(|l| l.sent_copy_of.is_none())
}

/// The batch's deliveries when every work item is a [`pipelinable`]
/// delivery (the fast path); `None` as soon as one is not.
fn fast_path<'a>(batch: &[&'a Work]) -> Option<Vec<&'a Delivery>> {
    batch
        .iter()
        .map(|w| match w {
            Work::Deliver(d) if pipelinable(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// One statement per local copy: locks the account (before its folder, as
/// every writer of messages does, see mailbox::lock_folder_and_account),
/// takes the next UID and MODSEQ of the folder the target names (as
/// [`take_slot`]: `$3` a special use, its oldest folder, else the folder
/// named `$2`; `$3` empty for INBOX and a named folder) and inserts the row
/// with its POP3 UIDL (`crate::mailbox::pop3_uidl`: each number in at least
/// 8 upper-case hex digits). No row back: the account or the folder is gone.
const INSERT_LOCAL: &str = "
WITH acct AS (SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE),
slot AS (
    UPDATE folders SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1
    WHERE id = COALESCE(
        (SELECT f.id FROM folders f JOIN acct ON f.account_id = acct.id
         WHERE $3 <> '' AND lower(f.special_use) = lower($3) ORDER BY f.id LIMIT 1),
        (SELECT f.id FROM folders f JOIN acct ON f.account_id = acct.id WHERE f.name = $2))
    RETURNING id, uidnext - 1 AS uid, highestmodseq, uidvalidity)
INSERT INTO messages (folder_id, uid, modseq, flags, keywords, internal_date, size, pop3_uidl, blob_id, prefix, queue_id)
SELECT id, uid, highestmodseq, $4, $5, $6, $7,
       lpad(upper(to_hex(uidvalidity)), greatest(8, length(to_hex(uidvalidity))), '0')
           || lpad(upper(to_hex(uid)), greatest(8, length(to_hex(uid))), '0'),
       $8, $9, $10
FROM slot
RETURNING folder_id";

const INSERT_OUTBOUND: &str =
    "INSERT INTO outbound (queue_id, blob_id, prefix, sender, recipient, state, reason, next_attempt, created,
                           hold_reason, local_account, local_folder)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11)";

const RELEASE_HELD: &str = "DELETE FROM outbound WHERE id = $1 AND state = 'held'";

/// What one pipelined statement returned: the folder a local copy went
/// to, or the rows a release removed. (Not `crate::committer::Done`, the
/// answer to a whole work item.)
enum Answer {
    Local(Option<FolderId>),
    Queued,
    Released(u64),
}

/// One statement of a pipelined batch, under way.
type Call<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::result::Result<Answer, tokio_postgres::Error>> + Send + 'a>,
>;

/// Every statement of the batch sent at once on one connection
/// (tokio-postgres pipelines the queries issued concurrently on a client:
/// they run one after the other on the server, in the order sent, with
/// one round trip for all). An error, or a delivery that found nothing to
/// write, fails the whole attempt.
async fn pipelined(
    tx: &deadpool_postgres::Transaction<'_>,
    batch: &[&Delivery],
) -> std::result::Result<Vec<FolderId>, ApplyError> {
    let local = tx.prepare_cached(INSERT_LOCAL).await?;
    let queue = tx.prepare_cached(INSERT_OUTBOUND).await?;
    let release = tx.prepare_cached(RELEASE_HELD).await?;
    // Owned parameters first: the futures below borrow them.
    struct LocalArgs<'a> {
        account: i64,
        name: &'a str,
        role: &'static str,
        internal_date: i64,
        size: i64,
    }
    let locals: Vec<(&Delivery, &crate::committer::LocalDelivery, LocalArgs<'_>)> = batch
        .iter()
        .flat_map(|d| d.local.iter().map(move |l| (*d, l)))
        .map(|(d, l)| {
            let (name, role) = match &l.folder {
                FolderTarget::Inbox => ("INBOX", ""),
                FolderTarget::Named(n) => (n.as_str(), ""),
                FolderTarget::Role(r) => ("INBOX", r.attribute()),
            };
            let size = i64::try_from(l.prefix.len() as u64 + d.blob_size).unwrap_or(i64::MAX);
            let args = LocalArgs {
                account: l.account_id.0,
                name,
                role,
                internal_date: l.internal_date.unwrap_or(d.received_at),
                size,
            };
            (d, l, args)
        })
        .collect();
    let outbound: Vec<(&Delivery, &crate::committer::OutboundItem, OutboundColumns)> = batch
        .iter()
        .flat_map(|d| d.outbound.iter().map(move |o| (*d, o, OutboundColumns::of(o))))
        .collect();
    let mut calls: Vec<Call<'_>> = Vec::new();
    for (d, l, a) in &locals {
        let local = &local;
        calls.push(Box::pin(async move {
            let row = tx
                .query_opt(
                    local,
                    &[
                        &a.account,
                        &a.name,
                        &a.role,
                        &l.flags,
                        &l.keywords,
                        &a.internal_date,
                        &a.size,
                        &d.blob_id,
                        &l.prefix,
                        &d.queue_id,
                    ],
                )
                .await?;
            Ok(Answer::Local(match row {
                Some(r) => Some(FolderId(r.try_get(0)?)),
                None => None,
            }))
        }));
    }
    for (d, item, row) in &outbound {
        let queue = &queue;
        calls.push(Box::pin(async move {
            tx.execute(
                queue,
                &[
                    &d.queue_id,
                    &d.blob_id,
                    &item.prefix,
                    &item.sender,
                    &item.recipient,
                    &row.state,
                    &row.detail,
                    &d.received_at,
                    &row.hold_reason,
                    &row.local_account,
                    &row.local_folder,
                ],
            )
            .await?;
            Ok(Answer::Queued)
        }));
    }
    for d in batch {
        for id in &d.released {
            let release = &release;
            calls.push(Box::pin(async move {
                Ok(Answer::Released(tx.execute(release, &[&id.0]).await?))
            }));
        }
    }
    // join_all, not try_join_all: every statement must have had its answer
    // before the transaction is used again (rolled back or committed).
    let done = futures_util::future::join_all(calls).await;
    let mut touched = Vec::new();
    for r in done {
        match r? {
            Answer::Local(Some(f)) => touched.push(f),
            Answer::Local(None) => {
                return Err(ApplyError::Store(StoreError::Invalid(
                    "no mailbox or folder for a copy".into(),
                )))
            }
            Answer::Queued => {}
            Answer::Released(0) => {
                return Err(ApplyError::Store(StoreError::Invalid(
                    "no held queue item".into(),
                )))
            }
            Answer::Released(_) => {}
        }
    }
    Ok(touched)
}
