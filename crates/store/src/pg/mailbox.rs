//! Folders and messages on PostgreSQL: `crate::folders` and
//! `crate::mailbox` for this back end. Every write that takes a UID or a
//! MODSEQ, or checks keywords, first locks its folder's row, as SQLite's
//! single writer would have serialised it.

use async_trait::async_trait;
use tokio_postgres::{GenericClient, Row};

use super::{now, unreferenced, Postgres};
use crate::backend::{Appended, MailboxMeta};
use crate::cache::FolderSnapshot;
use crate::committer::Work;
use crate::folders::{keywords_fit, merge_keywords, FlagOp, FolderChanges, MessageMeta, MAX_FOLDERS};
use crate::ids::{AccountId, FolderId, ModSeq, Uid};
use crate::mailbox::{FolderRow, MessageRow};
use crate::{Result, StoreError, SENT_COPY_WINDOW_SECS};

const FOLDER_COLS: &str = "id, account_id, name, special_use, uidvalidity, uidnext, highestmodseq";
const MESSAGE_COLS: &str =
    "id, folder_id, uid, modseq, flags, internal_date, size, pop3_uidl, blob_id, prefix, queue_id";
const META_COLS: &str = "uid, flags, keywords, modseq, size, internal_date";

/// A stored UID; only a damaged database holds one out of range.
pub(super) fn uid(v: i64) -> Result<Uid> {
    Uid::from_i64(v).ok_or_else(|| StoreError::Backend(format!("postgresql: stored UID {v} is out of range")))
}

fn folder_row(r: &Row) -> Result<FolderRow> {
    Ok(FolderRow {
        id: FolderId(r.try_get(0)?),
        account_id: AccountId(r.try_get(1)?),
        name: r.try_get(2)?,
        special_use: r.try_get(3)?,
        uidvalidity: r.try_get(4)?,
        uidnext: r.try_get(5)?,
        highestmodseq: ModSeq(r.try_get(6)?),
    })
}

fn message_row(r: &Row) -> Result<MessageRow> {
    Ok(MessageRow {
        id: r.try_get(0)?,
        folder_id: FolderId(r.try_get(1)?),
        uid: uid(r.try_get(2)?)?,
        modseq: ModSeq(r.try_get(3)?),
        flags: r.try_get(4)?,
        internal_date: r.try_get(5)?,
        size: r.try_get(6)?,
        pop3_uidl: r.try_get(7)?,
        blob_id: r.try_get(8)?,
        prefix: r.try_get(9)?,
        queue_id: r.try_get(10)?,
    })
}

fn meta_row(r: &Row) -> Result<MessageMeta> {
    Ok(MessageMeta {
        uid: uid(r.try_get(0)?)?,
        flags: r.try_get(1)?,
        keywords: r.try_get(2)?,
        modseq: ModSeq(r.try_get(3)?),
        size: r.try_get(4)?,
        internal_date: r.try_get(5)?,
    })
}

fn uids_i64(uids: &[Uid]) -> Vec<i64> {
    uids.iter().map(|u| u.as_i64()).collect()
}

/// Locks a folder's row to the end of the transaction (its UIDNEXT,
/// MODSEQ and keywords are then this transaction's to change); `None` when
/// there is no such folder.
async fn lock_folder<C: GenericClient + Sync>(c: &C, folder: FolderId) -> Result<Option<(i64, i64, i64)>> {
    c.query_opt(
        "SELECT uidvalidity, uidnext, highestmodseq FROM folders WHERE id = $1 FOR NO KEY UPDATE",
        &[&folder.0],
    )
    .await?
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
    .transpose()
}

/// [`lock_folder`] for a transaction that adds or removes messages: their
/// trigger updates the account's running total, so the account's row is
/// locked first. Every such writer (and the committer) takes the account
/// before the folder: taken the other way round, an EXPUNGE in Junk and a
/// batch delivering to INBOX and then Junk of the same account deadlock.
pub(super) async fn lock_folder_and_account<C: GenericClient + Sync>(
    c: &C,
    folder: FolderId,
) -> Result<Option<(i64, i64, i64)>> {
    let Some(row) = c
        .query_opt("SELECT account_id FROM folders WHERE id = $1", &[&folder.0])
        .await?
    else {
        return Ok(None);
    };
    let account: i64 = row.try_get(0)?;
    c.execute(
        "SELECT 1 FROM accounts WHERE id = $1 FOR NO KEY UPDATE",
        &[&account],
    )
    .await?;
    lock_folder(c, folder).await
}

fn no_folder() -> StoreError {
    StoreError::Invalid("no such mailbox".into())
}

/// `folders::check_keywords` on PostgreSQL: the same rule
/// (`folders::keywords_fit`), the same error.
pub(super) async fn check_keywords<C: GenericClient + Sync>(
    c: &C,
    folder: FolderId,
    adding: &str,
) -> Result<()> {
    if !adding.split(' ').any(|k| !k.is_empty()) {
        return Ok(());
    }
    let rows = c
        .query(
            "SELECT DISTINCT keywords FROM messages WHERE folder_id = $1 AND keywords <> ''",
            &[&folder.0],
        )
        .await?;
    let stored = rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<Vec<&str>, _>>()?;
    keywords_fit(adding, stored)
}

/// Removes messages in the caller's transaction, leaving tombstones with
/// one new MODSEQ; returns (removed, their bodies).
async fn expunge_in<C: GenericClient + Sync>(
    tx: &C,
    folder: FolderId,
    uids: &[Uid],
) -> Result<(usize, Vec<String>)> {
    let Some(row) = tx
        .query_opt(
            "UPDATE folders SET highestmodseq = highestmodseq + 1 WHERE id = $1 RETURNING highestmodseq",
            &[&folder.0],
        )
        .await?
    else {
        return Ok((0, Vec::new()));
    };
    let modseq: i64 = row.try_get(0)?;
    let rows = tx
        .query(
            "WITH gone AS (DELETE FROM messages WHERE folder_id = $1 AND uid = ANY($2) RETURNING uid, blob_id),
                  stones AS (INSERT INTO expunged (folder_id, uid, modseq) SELECT $1, uid, $3 FROM gone
                             ON CONFLICT (folder_id, uid) DO UPDATE SET modseq = excluded.modseq)
             SELECT blob_id FROM gone",
            &[&folder.0, &uids_i64(uids), &modseq],
        )
        .await?;
    let blobs = rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<Vec<String>, _>>()?;
    Ok((blobs.len(), blobs))
}

#[async_trait]
impl MailboxMeta for Postgres {
    async fn folders(&self, account: AccountId) -> Result<Vec<FolderRow>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("SELECT {FOLDER_COLS} FROM folders WHERE account_id = $1 ORDER BY id"),
                &[&account.0],
            )
            .await?;
        rows.iter().map(folder_row).collect()
    }

    async fn folder_by_id(&self, id: FolderId) -> Result<Option<FolderRow>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!("SELECT {FOLDER_COLS} FROM folders WHERE id = $1"))
            .await?;
        c.query_opt(&st, &[&id.0])
            .await?
            .as_ref()
            .map(folder_row)
            .transpose()
    }

    async fn find_folder(&self, account: AccountId, name: &str) -> Result<Option<FolderRow>> {
        // RFC 3501 5.1: INBOX is case-insensitive, every other name exact.
        let name = if name.eq_ignore_ascii_case("INBOX") {
            "INBOX"
        } else {
            name
        };
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {FOLDER_COLS} FROM folders WHERE account_id = $1 AND name = $2"
            ))
            .await?;
        c.query_opt(&st, &[&account.0, &name])
            .await?
            .as_ref()
            .map(folder_row)
            .transpose()
    }

    async fn create_folder(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<&str>,
    ) -> Result<FolderRow> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // The account's row serialises its folder changes (the name check
        // and the count below).
        tx.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", &[&account.0])
            .await?;
        let exists: bool = tx
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM folders WHERE account_id = $1 AND name = $2)",
                &[&account.0, &name],
            )
            .await?
            .try_get(0)?;
        if exists {
            return Err(StoreError::Invalid("mailbox exists already".into()));
        }
        let count: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM folders WHERE account_id = $1",
                &[&account.0],
            )
            .await?
            .try_get(0)?;
        if count >= MAX_FOLDERS {
            return Err(StoreError::Limit("too many mailboxes"));
        }
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO folders (id, account_id, name, special_use, uidvalidity)
                     SELECT n, $1, $2, $3, n FROM (SELECT nextval(pg_get_serial_sequence('folders', 'id')) AS n) s
                     RETURNING {FOLDER_COLS}"
                ),
                &[&account.0, &name, &special_use],
            )
            .await?;
        let folder = folder_row(&row)?;
        tx.commit().await?;
        self.committed(&[folder.id]);
        Ok(folder)
    }

    async fn rename_folder(&self, account: AccountId, from: &str, to: &str) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", &[&account.0])
            .await?;
        let taken: bool = tx
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM folders WHERE account_id = $1 AND name = $2)",
                &[&account.0, &to],
            )
            .await?
            .try_get(0)?;
        if taken {
            return Err(StoreError::Invalid("target mailbox exists already".into()));
        }
        let renamed = tx
            .query(
                "UPDATE folders SET name = $3 WHERE account_id = $1 AND name = $2 RETURNING id",
                &[&account.0, &from, &to],
            )
            .await?;
        if renamed.is_empty() {
            return Err(StoreError::Invalid("no such mailbox".into()));
        }
        let mut changed = vec![FolderId(renamed[0].try_get(0)?)];
        let prefix = format!("{from}/");
        // left() counts characters, as the prefix is counted here.
        let children = tx
            .query(
                "SELECT id, name FROM folders WHERE account_id = $1 AND left(name, $3) = $2",
                &[&account.0, &prefix, &(prefix.chars().count() as i32)],
            )
            .await?;
        for r in children {
            let id: i64 = r.try_get(0)?;
            let name: String = r.try_get(1)?;
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let renamed = format!("{to}/{rest}");
            tx.execute("UPDATE folders SET name = $2 WHERE id = $1", &[&id, &renamed])
                .await?;
            changed.push(FolderId(id));
        }
        tx.commit().await?;
        self.committed(&changed);
        Ok(())
    }

    async fn delete_folder(&self, folder: FolderId) -> Result<Vec<String>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        if lock_folder_and_account(&*tx, folder).await?.is_none() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let uids: Vec<Uid> = tx
            .query("SELECT uid FROM messages WHERE folder_id = $1", &[&folder.0])
            .await?
            .iter()
            .map(|r| uid(r.try_get(0)?))
            .collect::<Result<_>>()?;
        let (_, blobs) = expunge_in(&*tx, folder, &uids).await?;
        tx.execute("DELETE FROM expunged WHERE folder_id = $1", &[&folder.0])
            .await?;
        tx.execute("DELETE FROM sent_copies WHERE folder_id = $1", &[&folder.0])
            .await?;
        tx.execute("DELETE FROM folders WHERE id = $1", &[&folder.0])
            .await?;
        let unused = unreferenced(&*tx, blobs).await?;
        tx.commit().await?;
        self.committed(&[folder]);
        Ok(unused)
    }

    async fn set_subscribed(&self, account: AccountId, name: &str, subscribed: bool) -> Result<bool> {
        let c = self.client().await?;
        let rows = c
            .query(
                "UPDATE folders SET subscribed = $3 WHERE account_id = $1 AND name = $2 RETURNING id",
                &[&account.0, &name, &subscribed],
            )
            .await?;
        let ids = rows
            .iter()
            .map(|r| Ok(FolderId(r.try_get(0)?)))
            .collect::<Result<Vec<_>>>()?;
        self.committed(&ids);
        Ok(!ids.is_empty())
    }

    async fn folder_list(&self, account: AccountId) -> Result<Vec<(String, Option<String>, bool)>> {
        let c = self.client().await?;
        // COLLATE "C": by bytes, as SQLite sorts text.
        let rows = c
            .query(
                "SELECT name, special_use, subscribed FROM folders WHERE account_id = $1 ORDER BY name COLLATE \"C\"",
                &[&account.0],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    async fn usage(&self, account: AccountId) -> Result<i64> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT used_bytes FROM accounts WHERE id = $1")
            .await?;
        // An account that is gone stores nothing.
        Ok(c.query_opt(&st, &[&account.0])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?
            .unwrap_or(0))
    }

    async fn messages(&self, folder: FolderId) -> Result<Vec<MessageRow>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("SELECT {MESSAGE_COLS} FROM messages WHERE folder_id = $1 ORDER BY uid"),
                &[&folder.0],
            )
            .await?;
        rows.iter().map(message_row).collect()
    }

    async fn message(&self, folder: FolderId, uid: Uid) -> Result<Option<MessageRow>> {
        let c = self.client().await?;
        // Prepared once per connection: IMAP SEARCH BODY and FETCH BODY[]
        // ask once per message, POP3 once per RETR. Unprepared, each call
        // was two round trips and a fresh plan: measured at 0236c2f, SEARCH
        // BODY over 10,000 messages cost PostgreSQL 0.85 s of CPU and ran
        // at 0.11x to 0.19x of the embedded back end.
        let st = c
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLS} FROM messages WHERE folder_id = $1 AND uid = $2"
            ))
            .await?;
        c.query_opt(&st, &[&folder.0, &uid.as_i64()])
            .await?
            .as_ref()
            .map(message_row)
            .transpose()
    }

    async fn maildrop(&self, folder: FolderId) -> Result<Vec<(Uid, i64, String)>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT uid, size, pop3_uidl FROM messages WHERE folder_id = $1 ORDER BY uid",
                &[&folder.0],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((uid(r.try_get(0)?)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    async fn message_meta(&self, folder: FolderId) -> Result<Vec<MessageMeta>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("SELECT {META_COLS} FROM messages WHERE folder_id = $1 ORDER BY uid"),
                &[&folder.0],
            )
            .await?;
        rows.iter().map(meta_row).collect()
    }

    async fn folder_state(&self, folder: FolderId) -> Result<Option<FolderSnapshot>> {
        let mut c = self.client().await?;
        // One snapshot for the folder row and its messages, so UIDNEXT
        // and HIGHESTMODSEQ agree with the list.
        let tx = read_snapshot(&mut c).await?;
        let Some(row) = tx
            .query_opt(
                "SELECT uidvalidity, uidnext, highestmodseq FROM folders WHERE id = $1",
                &[&folder.0],
            )
            .await?
        else {
            return Ok(None);
        };
        let rows = tx
            .query(
                &format!("SELECT {META_COLS} FROM messages WHERE folder_id = $1 ORDER BY uid"),
                &[&folder.0],
            )
            .await?;
        let msgs = rows.iter().map(meta_row).collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        Ok(Some(FolderSnapshot {
            folder_id: folder,
            uidvalidity: row.try_get(0)?,
            uidnext: row.try_get(1)?,
            highestmodseq: ModSeq(row.try_get(2)?),
            msgs: std::sync::Arc::new(msgs),
            keywords: Default::default(),
        }))
    }

    async fn folder_changes(&self, folder: FolderId, since: ModSeq) -> Result<Option<FolderChanges>> {
        let mut c = self.client().await?;
        let tx = read_snapshot(&mut c).await?;
        let Some(row) = tx
            .query_opt(
                "SELECT highestmodseq, uidnext FROM folders WHERE id = $1",
                &[&folder.0],
            )
            .await?
        else {
            return Ok(None);
        };
        let mut changes = FolderChanges {
            highestmodseq: ModSeq(row.try_get(0)?),
            uidnext: row.try_get(1)?,
            ..Default::default()
        };
        if changes.highestmodseq <= since {
            return Ok(Some(changes));
        }
        changes.changed = tx
            .query(
                &format!(
                    "SELECT {META_COLS} FROM messages WHERE folder_id = $1 AND modseq > $2 ORDER BY uid"
                ),
                &[&folder.0, &since.0],
            )
            .await?
            .iter()
            .map(meta_row)
            .collect::<Result<_>>()?;
        changes.expunged = tx
            .query(
                "SELECT uid FROM expunged WHERE folder_id = $1 AND modseq > $2 ORDER BY uid",
                &[&folder.0, &since.0],
            )
            .await?
            .iter()
            .map(|r| uid(r.try_get(0)?))
            .collect::<Result<_>>()?;
        tx.commit().await?;
        Ok(Some(changes))
    }

    async fn folder_position(&self, folder: FolderId) -> Result<Option<(ModSeq, i64)>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT highestmodseq, uidnext FROM folders WHERE id = $1")
            .await?;
        c.query_opt(&st, &[&folder.0])
            .await?
            .map(|r| Ok((ModSeq(r.try_get(0)?), r.try_get(1)?)))
            .transpose()
    }

    async fn expunged_since(&self, folder: FolderId, since: ModSeq) -> Result<Vec<Uid>> {
        let c = self.client().await?;
        c.query(
            "SELECT uid FROM expunged WHERE folder_id = $1 AND modseq > $2 ORDER BY uid",
            &[&folder.0, &since.0],
        )
        .await?
        .iter()
        .map(|r| uid(r.try_get(0)?))
        .collect()
    }

    async fn message_sources(&self, folder: FolderId, uids: &[Uid]) -> Result<Vec<(Uid, String, Vec<u8>)>> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT uid, blob_id, prefix FROM messages WHERE folder_id = $1 AND uid = ANY($2) ORDER BY uid",
            )
            .await?;
        c.query(&st, &[&folder.0, &uids_i64(uids)])
            .await?
            .iter()
            .map(|r| Ok((uid(r.try_get(0)?)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    async fn store_flags(
        &self,
        folder: FolderId,
        uids: &[Uid],
        op: FlagOp,
        flags: i64,
        keywords: &[String],
        unchanged_since: Option<ModSeq>,
    ) -> Result<(Vec<MessageMeta>, Vec<Uid>)> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let Some((_, _, highestmodseq)) = lock_folder(&*tx, folder).await? else {
            tx.commit().await?;
            return Ok((Vec::new(), Vec::new()));
        };
        if op != FlagOp::Remove {
            check_keywords(&*tx, folder, &keywords.join(" ")).await?;
        }
        let rows = tx
            .query(
                "SELECT uid, flags, keywords, modseq, size, internal_date FROM messages
                 WHERE folder_id = $1 AND uid = ANY($2)",
                &[&folder.0, &uids_i64(uids)],
            )
            .await?;
        let mut current = std::collections::HashMap::with_capacity(rows.len());
        for r in &rows {
            let m = meta_row(r)?;
            current.insert(m.uid, m);
        }
        // The transaction's one new MODSEQ, taken on the first change (the
        // folder is locked, so it is the row's value + 1).
        let modseq = ModSeq(highestmodseq + 1);
        let mut changed = Vec::new();
        let mut refused = Vec::new();
        for &u in uids {
            let Some(old) = current.get(&u) else {
                continue;
            };
            if unchanged_since.is_some_and(|s| old.modseq > s) {
                refused.push(u);
                continue;
            }
            let new_flags = match op {
                FlagOp::Replace => flags,
                FlagOp::Add => old.flags | flags,
                FlagOp::Remove => old.flags & !flags,
            };
            let new_kw = merge_keywords(&old.keywords, keywords, op);
            if new_flags == old.flags && new_kw == old.keywords {
                continue;
            }
            let (size, internal_date) = (old.size, old.internal_date);
            // A UID given twice changes once.
            current.remove(&u);
            changed.push(MessageMeta {
                uid: u,
                flags: new_flags,
                keywords: new_kw,
                modseq,
                size,
                internal_date,
            });
        }
        if !changed.is_empty() {
            tx.execute(
                "UPDATE folders SET highestmodseq = $2 WHERE id = $1",
                &[&folder.0, &modseq.0],
            )
            .await?;
            let u: Vec<i64> = changed.iter().map(|m| m.uid.as_i64()).collect();
            let f: Vec<i64> = changed.iter().map(|m| m.flags).collect();
            let k: Vec<&str> = changed.iter().map(|m| m.keywords.as_str()).collect();
            tx.execute(
                "UPDATE messages m SET flags = v.flags, keywords = v.keywords, modseq = $2
                 FROM unnest($3::bigint[], $4::bigint[], $5::text[]) AS v(uid, flags, keywords)
                 WHERE m.folder_id = $1 AND m.uid = v.uid",
                &[&folder.0, &modseq.0, &u, &f, &k],
            )
            .await?;
        }
        tx.commit().await?;
        if !changed.is_empty() {
            self.committed(&[folder]);
        }
        Ok((changed, refused))
    }

    async fn copy_messages(
        &self,
        from: FolderId,
        uids: &[Uid],
        to: FolderId,
    ) -> Result<(i64, Vec<(Uid, Uid)>)> {
        self.commit(Work::Copy {
            from,
            uids: uids.to_vec(),
            to,
        })
        .await?
        .copied()
    }

    async fn expunge(&self, folder: FolderId, uids: &[Uid]) -> Result<(usize, Vec<String>)> {
        if uids.is_empty() {
            return Ok((0, Vec::new()));
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        lock_folder_and_account(&*tx, folder).await?;
        let (removed, blobs) = expunge_in(&*tx, folder, uids).await?;
        let unused = unreferenced(&*tx, blobs).await?;
        tx.commit().await?;
        self.committed(&[folder]);
        Ok((removed, unused))
    }

    async fn recent_mark(&self, folder: FolderId) -> Result<i64> {
        let c = self.client().await?;
        Ok(
            c.query_opt("SELECT recent_uid FROM folders WHERE id = $1", &[&folder.0])
                .await?
                .ok_or_else(no_folder)?
                .try_get(0)?,
        )
    }

    async fn claim_recent(&self, folder: FolderId) -> Result<i64> {
        let c = self.client().await?;
        // Nothing new since the last claim (the common case): no write, so
        // no WAL flush on every SELECT.
        let row = c
            .query_opt(
                "SELECT recent_uid, uidnext FROM folders WHERE id = $1",
                &[&folder.0],
            )
            .await?
            .ok_or_else(no_folder)?;
        let (mark, uidnext): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        if mark >= uidnext - 1 {
            return Ok(mark);
        }
        // The old mark, read and replaced in one statement: the subquery
        // sees the row as it was before this UPDATE, which holds its lock.
        let row = c
            .query_one(
                "UPDATE folders f SET recent_uid = f.uidnext - 1
                 FROM (SELECT id, recent_uid FROM folders WHERE id = $1 FOR NO KEY UPDATE) old
                 WHERE f.id = old.id RETURNING old.recent_uid",
                &[&folder.0],
            )
            .await?;
        self.committed(&[folder]);
        Ok(row.try_get(0)?)
    }

    async fn check_keywords(&self, folder: FolderId, keywords: &str) -> Result<()> {
        let c = self.client().await?;
        check_keywords(&**c, folder, keywords).await
    }

    async fn recent_sent_copy(&self, folder: FolderId, message_id: &str) -> Result<Option<Uid>> {
        let c = self.client().await?;
        c.query_opt(
            "SELECT s.uid FROM sent_copies s JOIN messages m ON m.folder_id = s.folder_id AND m.uid = s.uid
             WHERE s.folder_id = $1 AND s.message_id = $2 AND s.created >= $3
             ORDER BY s.uid DESC LIMIT 1",
            &[&folder.0, &message_id, &(now() - SENT_COPY_WINDOW_SECS)],
        )
        .await?
        .map(|r| uid(r.try_get(0)?))
        .transpose()
    }

    async fn insert_appended(&self, a: Appended<'_>) -> Result<Uid> {
        self.commit(Work::Append(a.into())).await?.appended()
    }
}

/// A read-only transaction that sees one snapshot for all its statements
/// (a folder's row and its messages agree).
async fn read_snapshot(c: &mut super::PgClient) -> Result<deadpool_postgres::Transaction<'_>> {
    Ok(c.build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}
