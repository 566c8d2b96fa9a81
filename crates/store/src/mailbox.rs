//! Folders and messages as the CLI (and later IMAP and POP3) read them.

use rusqlite::{params, OptionalExtension};

use crate::ids::{AccountId, FolderId, ModSeq, Uid};
use crate::{Db, Result, Store, StoreError};

#[derive(Clone, Debug)]
pub struct FolderRow {
    pub id: FolderId,
    pub account_id: AccountId,
    pub name: String,
    pub special_use: Option<String>,
    pub uidvalidity: i64,
    pub uidnext: i64,
    pub highestmodseq: ModSeq,
}

#[derive(Clone, Debug)]
pub struct MessageRow {
    pub id: i64,
    pub folder_id: FolderId,
    pub uid: Uid,
    pub modseq: ModSeq,
    pub flags: i64,
    pub internal_date: i64,
    pub size: i64,
    pub pop3_uidl: String,
    pub blob_id: String,
    pub prefix: Vec<u8>,
    pub queue_id: Option<String>,
}

/// A message's POP3 UIDL: UIDVALIDITY and UID in hexadecimal, eight
/// digits each (Dovecot's default `%08Xv%08Xu`, so imported UIDLs and ours
/// look alike).
pub(crate) fn pop3_uidl(uidvalidity: i64, uid: i64) -> String {
    format!("{uidvalidity:08X}{uid:08X}")
}

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(0)?,
        folder_id: r.get(1)?,
        uid: r.get(2)?,
        modseq: r.get(3)?,
        flags: r.get(4)?,
        internal_date: r.get(5)?,
        size: r.get(6)?,
        pop3_uidl: r.get(7)?,
        blob_id: r.get(8)?,
        prefix: r.get(9)?,
        queue_id: r.get(10)?,
    })
}

impl Db {
    pub fn folders(&self, account_id: AccountId) -> Result<Vec<FolderRow>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT id, account_id, name, special_use, uidvalidity, uidnext, highestmodseq
                 FROM folders WHERE account_id = ?1 ORDER BY id",
            )?;
            let rows = st
                .query_map([account_id], |r| {
                    Ok(FolderRow {
                        id: r.get(0)?,
                        account_id: r.get(1)?,
                        name: r.get(2)?,
                        special_use: r.get(3)?,
                        uidvalidity: r.get(4)?,
                        uidnext: r.get(5)?,
                        highestmodseq: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    pub fn folder(&self, account_id: AccountId, name: &str) -> Result<Option<FolderRow>> {
        Ok(self.folders(account_id)?.into_iter().find(|f| f.name == name))
    }

    pub fn messages(&self, folder_id: FolderId) -> Result<Vec<MessageRow>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT id, folder_id, uid, modseq, flags, internal_date, size, pop3_uidl, blob_id, prefix, queue_id
                 FROM messages WHERE folder_id = ?1 ORDER BY uid",
            )?;
            let rows = st.query_map([folder_id], message_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    pub fn message(&self, folder_id: FolderId, uid: Uid) -> Result<Option<MessageRow>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT id, folder_id, uid, modseq, flags, internal_date, size, pop3_uidl, blob_id, prefix, queue_id
                 FROM messages WHERE folder_id = ?1 AND uid = ?2",
            )?
            .query_row(params![folder_id, uid], message_row)
            .optional()?)
        })
    }

    /// (uid, size, POP3 UIDL) of every message in a folder, by UID: a POP3
    /// maildrop, without the columns it does not need.
    pub fn maildrop(&self, folder_id: FolderId) -> Result<Vec<(Uid, i64, String)>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT uid, size, pop3_uidl FROM messages WHERE folder_id = ?1 ORDER BY uid",
            )?;
            let rows = st
                .query_map([folder_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    pub fn message_count(&self, account_id: AccountId) -> Result<i64> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM messages m JOIN folders f ON m.folder_id = f.id WHERE f.account_id = ?1",
                params![account_id],
                |r| r.get(0),
            )?)
        })
    }

    /// Bytes stored for an account (all folders): what quotas count. A
    /// running total kept by the schema's triggers (version 6), so a RCPT
    /// costs the same in an empty mailbox as in a full one.
    pub fn usage(&self, account_id: AccountId) -> Result<i64> {
        self.read(|c| {
            c.prepare_cached("SELECT used_bytes FROM accounts WHERE id = ?1")?
                .query_row([account_id], |r| r.get(0))
                .optional()
                // An account that is gone stores nothing.
                .map(|used| used.unwrap_or(0))
                .map_err(Into::into)
        })
    }
}

impl Store {
    /// The message as the mailbox owner sees it: its own header lines, then
    /// the shared body.
    pub fn message_bytes(&self, m: &MessageRow) -> Result<Vec<u8>> {
        let body = self.blobs.get(&m.blob_id).map_err(StoreError::Io)?;
        // APPENDed messages have no prefix: the body is the message.
        if m.prefix.is_empty() {
            return Ok(body);
        }
        let mut out = Vec::with_capacity(m.prefix.len() + body.len());
        out.extend_from_slice(&m.prefix);
        out.extend_from_slice(&body);
        Ok(out)
    }
}

impl Db {
    /// Removes messages from a folder in one transaction, committed when
    /// this returns: each leaves a tombstone with a new MODSEQ (for
    /// QRESYNC), and a body no longer referenced anywhere goes to the purge
    /// thread. Returns how many were removed, and the bodies no row refers
    /// to any more (ones already gone are
    /// skipped: another session may have removed them first).
    pub fn expunge(&self, folder_id: FolderId, uids: &[Uid]) -> Result<(usize, Vec<String>)> {
        if uids.is_empty() {
            return Ok((0, Vec::new()));
        }
        self.write(|tx| {
            let modseq: ModSeq = tx.query_row(
                "UPDATE folders SET highestmodseq = highestmodseq + 1 WHERE id = ?1 RETURNING highestmodseq",
                [folder_id],
                |r| r.get(0),
            )?;
            // One range DELETE per run of consecutive UIDs rather than one
            // statement per message: a POP3 QUIT or an IMAP EXPUNGE usually
            // removes long runs, and this halves the time the write lock is
            // held. A run of consecutive integers holds no UID that was not
            // asked for.
            let mut delete = tx.prepare_cached(
                "DELETE FROM messages WHERE folder_id = ?1 AND uid BETWEEN ?2 AND ?3 RETURNING uid, blob_id",
            )?;
            let mut tombstone = tx.prepare_cached(
                "INSERT OR REPLACE INTO expunged (folder_id, uid, modseq) VALUES (?1, ?2, ?3)",
            )?;
            let mut blobs = Vec::new();
            for (first, last) in uid_runs(uids) {
                let mut rows = delete.query(params![folder_id, first, last])?;
                while let Some(row) = rows.next()? {
                    let uid: Uid = row.get(0)?;
                    blobs.push(row.get::<_, String>(1)?);
                    tombstone.execute(params![folder_id, uid, modseq])?;
                }
            }
            let removed = blobs.len();
            Ok((removed, crate::blob::unreferenced(tx, blobs)?))
        })
    }
}

impl Store {
    /// Removes messages from a folder (see [`crate::backend::MailboxMeta::expunge`]);
    /// the bodies no row refers to any more go to the purge thread.
    pub async fn expunge(&self, folder_id: FolderId, uids: &[Uid]) -> Result<usize> {
        let (removed, blobs) = self.meta.expunge(folder_id, uids).await?;
        self.delete_blobs(blobs);
        Ok(removed)
    }
}

/// The runs of consecutive values in `uids`, as (first, last), ascending;
/// duplicates count once.
fn uid_runs(uids: &[Uid]) -> Vec<(Uid, Uid)> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<(Uid, Uid)> = Vec::new();
    for uid in sorted {
        match runs.last_mut() {
            Some((_, last)) if last.0.checked_add(1) == Some(uid.0) => *last = uid,
            _ => runs.push((uid, uid)),
        }
    }
    runs
}

impl Db {
    /// (HIGHESTMODSEQ, UIDNEXT) of a folder.
    pub fn folder_position(&self, folder_id: FolderId) -> Result<Option<(ModSeq, i64)>> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT highestmodseq, uidnext FROM folders WHERE id = ?1")?
                    .query_row([folder_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?,
            )
        })
    }

    /// A folder's whole message list with its UIDNEXT and HIGHESTMODSEQ,
    /// read in one transaction so they agree.
    pub fn folder_state(&self, folder_id: FolderId) -> Result<Option<crate::cache::FolderSnapshot>> {
        self.read(|c| {
            c.execute_batch("BEGIN")?;
            let r = (|| -> Result<Option<crate::cache::FolderSnapshot>> {
                let Some((uidvalidity, uidnext, highestmodseq)) = c
                    .prepare_cached("SELECT uidvalidity, uidnext, highestmodseq FROM folders WHERE id = ?1")?
                    .query_row([folder_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?
                else {
                    return Ok(None);
                };
                let msgs = crate::folders::read_meta(c, folder_id)?;
                Ok(Some(crate::cache::FolderSnapshot {
                    folder_id,
                    uidvalidity,
                    uidnext,
                    highestmodseq,
                    msgs: std::sync::Arc::new(msgs),
                    keywords: Default::default(),
                }))
            })();
            c.execute_batch("COMMIT")?;
            r
        })
    }

    /// (uid, blob id, prefix) of these messages (`uids` ascending), in one
    /// query: a range scan when they are dense, else one lookup each.
    pub fn message_sources(&self, folder_id: FolderId, uids: &[Uid]) -> Result<Vec<(Uid, String, Vec<u8>)>> {
        let (Some(&lo), Some(&hi)) = (uids.first(), uids.last()) else {
            return Ok(Vec::new());
        };
        self.read(|c| {
            let mut out = Vec::with_capacity(uids.len());
            let row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(Uid, String, Vec<u8>)> {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            };
            if u64::from(hi.0.saturating_sub(lo.0)) <= 4 * uids.len() as u64 {
                let mut st = c.prepare_cached(
                    "SELECT uid, blob_id, prefix FROM messages WHERE folder_id = ?1 AND uid BETWEEN ?2 AND ?3
                     ORDER BY uid",
                )?;
                let mut want = uids.iter().copied().peekable();
                for r in st.query_map(params![folder_id, lo, hi], row)? {
                    let r = r?;
                    while want.peek().is_some_and(|&u| u < r.0) {
                        want.next();
                    }
                    if want.peek() == Some(&r.0) {
                        out.push(r);
                    }
                }
            } else {
                let mut st = c.prepare_cached(
                    "SELECT uid, blob_id, prefix FROM messages WHERE folder_id = ?1 AND uid = ?2",
                )?;
                for &u in uids {
                    if let Some(r) = st.query_row(params![folder_id, u], row).optional()? {
                        out.push(r);
                    }
                }
            }
            Ok(out)
        })
    }
}

impl Store {
    /// The folder's message list, from the server-wide cache when it is
    /// current. `known`: (HIGHESTMODSEQ, UIDNEXT) just read from the folder
    /// row, which saves reading them again. `None`: no such folder.
    pub async fn folder_snapshot(
        &self,
        folder_id: FolderId,
        known: Option<(ModSeq, i64)>,
    ) -> Result<Option<std::sync::Arc<crate::cache::FolderSnapshot>>> {
        use std::sync::Arc;
        let cached = self.folder_cache.get(folder_id);
        let (hms, uidnext) = match known {
            Some(k) => k,
            None => {
                let Some(k) = self.meta.folder_position(folder_id).await? else {
                    self.folder_cache.forget(folder_id);
                    return Ok(None);
                };
                k
            }
        };
        if let Some(s) = &cached {
            if s.highestmodseq == hms && s.uidnext == uidnext {
                return Ok(cached);
            }
        }
        // One session builds, the others (all woken by the same change)
        // wait for it and share the result.
        let _building = self.folder_cache.building().await;
        let cached = match self.folder_cache.get(folder_id) {
            Some(s) if s.highestmodseq >= hms && s.uidnext >= uidnext => return Ok(Some(s)),
            c => c,
        };
        let fresh = match cached {
            // Behind: fold in what changed since (all of it bears a higher
            // MODSEQ, expunges included), read in one transaction.
            Some(s) if s.highestmodseq < hms => {
                match self.meta.folder_changes(folder_id, s.highestmodseq).await? {
                    None => None,
                    Some(ch) => Some(s.advanced(ch.uidnext, ch.highestmodseq, ch.changed, &ch.expunged)),
                }
            }
            _ => self.meta.folder_state(folder_id).await?,
        };
        let Some(fresh) = fresh else {
            self.folder_cache.forget(folder_id);
            return Ok(None);
        };
        let fresh = Arc::new(fresh);
        self.folder_cache.put(Arc::clone(&fresh));
        Ok(Some(fresh))
    }

    /// Folds flag changes this process has just committed (one transaction:
    /// all with the same new MODSEQ, `changed` by UID) into the cached
    /// snapshot, when that snapshot was current right before the change, so
    /// the sessions of the folder need not read the changes back. Returns
    /// (the snapshot before, the one after) when it did.
    pub async fn note_flag_changes(
        &self,
        folder_id: FolderId,
        changed: &[crate::folders::MessageMeta],
    ) -> Option<(
        std::sync::Arc<crate::cache::FolderSnapshot>,
        std::sync::Arc<crate::cache::FolderSnapshot>,
    )> {
        let m = changed.first()?.modseq;
        if changed.iter().any(|c| c.modseq != m) || !changed.windows(2).all(|w| w[0].uid < w[1].uid) {
            return None;
        }
        let _building = self.folder_cache.building().await;
        let old = self.folder_cache.get(folder_id)?;
        // The transaction took MODSEQ m = the folder's previous + 1: the
        // snapshot at m - 1 plus these rows is the folder at m.
        if old.highestmodseq.0 != m.0 - 1 {
            return None;
        }
        let new = std::sync::Arc::new(old.advanced(old.uidnext, m, changed.to_vec(), &[]));
        self.folder_cache.put(std::sync::Arc::clone(&new));
        Some((old, new))
    }

    /// The header blocks (per-delivery prefix, then the blob's header up to
    /// and including its blank line) of these messages, `uids` ascending;
    /// `None` for one that is gone. Reads only the beginning of each message
    /// file, and only for messages not in the server-wide cache.
    pub async fn header_blocks(
        &self,
        folder_id: FolderId,
        uids: &[Uid],
    ) -> Result<Vec<Option<std::sync::Arc<[u8]>>>> {
        let mut out = self.header_cache.get_many(folder_id, uids);
        let missing: Vec<Uid> = uids
            .iter()
            .zip(&out)
            .filter(|(_, h)| h.is_none())
            .map(|(&u, _)| u)
            .collect();
        if missing.is_empty() {
            return Ok(out);
        }
        let rows = self.meta.message_sources(folder_id, &missing).await?;
        let mut rows = rows.into_iter().peekable();
        for (i, &u) in uids.iter().enumerate() {
            if out[i].is_some() {
                continue;
            }
            while rows.peek().is_some_and(|r| r.0 < u) {
                rows.next();
            }
            let Some((_, blob_id, prefix)) = rows.next_if(|r| r.0 == u) else {
                continue;
            };
            let head = match self.head_of(&blob_id, prefix) {
                Ok(h) => h,
                // Removed by an expunge between the query and the read.
                Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let head: std::sync::Arc<[u8]> = head.into();
            self.header_cache.put(folder_id, u, std::sync::Arc::clone(&head));
            out[i] = Some(head);
        }
        Ok(out)
    }

    fn head_of(&self, blob_id: &str, mut prefix: Vec<u8>) -> Result<Vec<u8>> {
        use crate::cache::header_len;
        // The prefix is whole header lines; when it ends a line and holds
        // no blank line, the header ends where the blob's does.
        let body = if prefix.is_empty() || (prefix.ends_with(b"\n") && header_len(&prefix).is_none()) {
            self.blobs.get_head(blob_id)?
        } else {
            self.blobs.get(blob_id)?
        };
        prefix.extend_from_slice(&body);
        if let Some(n) = header_len(&prefix) {
            prefix.truncate(n);
        }
        prefix.shrink_to_fit();
        Ok(prefix)
    }
}
