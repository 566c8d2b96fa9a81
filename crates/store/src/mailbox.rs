//! Folders and messages as the CLI (and later IMAP and POP3) read them.

use rusqlite::{params, OptionalExtension};

use crate::{Db, Result, Store, StoreError};

#[derive(Clone, Debug)]
pub struct FolderRow {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub special_use: Option<String>,
    pub uidvalidity: i64,
    pub uidnext: i64,
    pub highestmodseq: i64,
}

#[derive(Clone, Debug)]
pub struct MessageRow {
    pub id: i64,
    pub folder_id: i64,
    pub uid: i64,
    pub modseq: i64,
    pub flags: i64,
    pub internal_date: i64,
    pub size: i64,
    pub pop3_uidl: String,
    pub blob_id: String,
    pub prefix: Vec<u8>,
    pub queue_id: Option<String>,
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
    pub fn folders(&self, account_id: i64) -> Result<Vec<FolderRow>> {
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

    pub fn folder(&self, account_id: i64, name: &str) -> Result<Option<FolderRow>> {
        Ok(self.folders(account_id)?.into_iter().find(|f| f.name == name))
    }

    pub fn messages(&self, folder_id: i64) -> Result<Vec<MessageRow>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT id, folder_id, uid, modseq, flags, internal_date, size, pop3_uidl, blob_id, prefix, queue_id
                 FROM messages WHERE folder_id = ?1 ORDER BY uid",
            )?;
            let rows = st.query_map([folder_id], message_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    pub fn message(&self, folder_id: i64, uid: i64) -> Result<Option<MessageRow>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT id, folder_id, uid, modseq, flags, internal_date, size, pop3_uidl, blob_id, prefix, queue_id
                 FROM messages WHERE folder_id = ?1 AND uid = ?2",
            )?
            .query_row(params![folder_id, uid], message_row)
            .optional()?)
        })
    }

    pub fn message_count(&self, account_id: i64) -> Result<i64> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM messages m JOIN folders f ON m.folder_id = f.id WHERE f.account_id = ?1",
                params![account_id],
                |r| r.get(0),
            )?)
        })
    }

    /// Bytes stored for an account (all folders): what quotas count.
    pub fn usage(&self, account_id: i64) -> Result<i64> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT COALESCE(SUM(m.size), 0) FROM messages m JOIN folders f ON m.folder_id = f.id
                 WHERE f.account_id = ?1",
                params![account_id],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
        })
    }
}

impl Store {
    /// The message as the mailbox owner sees it: its own header lines, then
    /// the shared body.
    pub fn message_bytes(&self, m: &MessageRow) -> Result<Vec<u8>> {
        let body = self.blobs.get(&m.blob_id).map_err(StoreError::Io)?;
        let mut out = Vec::with_capacity(m.prefix.len() + body.len());
        out.extend_from_slice(&m.prefix);
        out.extend_from_slice(&body);
        Ok(out)
    }
}

impl Store {
    /// Removes messages from a folder: each leaves a tombstone with a new
    /// MODSEQ (for QRESYNC), and a body no longer referenced anywhere is
    /// deleted after the commit. Returns how many were removed (ones already
    /// gone are skipped: another session may have removed them first).
    pub fn expunge(&self, folder_id: i64, uids: &[i64]) -> Result<usize> {
        let (removed, blobs) = self.db.write(|tx| {
            let modseq: i64 = tx.query_row(
                "UPDATE folders SET highestmodseq = highestmodseq + 1 WHERE id = ?1 RETURNING highestmodseq",
                [folder_id],
                |r| r.get(0),
            )?;
            let mut removed = 0;
            let mut blobs = Vec::new();
            for uid in uids {
                let blob: Option<String> = tx
                    .query_row(
                        "DELETE FROM messages WHERE folder_id = ?1 AND uid = ?2 RETURNING blob_id",
                        params![folder_id, uid],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(b) = blob {
                    removed += 1;
                    tx.execute(
                        "INSERT OR REPLACE INTO expunged (folder_id, uid, modseq) VALUES (?1, ?2, ?3)",
                        params![folder_id, uid, modseq],
                    )?;
                    blobs.push(b);
                }
            }
            Ok((removed, crate::blob::unreferenced(tx, blobs)?))
        })?;
        self.delete_blobs(blobs);
        Ok(removed)
    }
}
