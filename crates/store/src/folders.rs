//! What IMAP does to folders and messages: create, rename, delete, flags,
//! copy, \Recent. Every change to a message takes a new MODSEQ from its
//! folder (RFC 7162), so other sessions can find what changed since.

use rusqlite::{params, OptionalExtension, Transaction};

use crate::backend::Appended;
use crate::ids::{AccountId, FolderId, ModSeq, Uid};
use crate::mailbox::FolderRow;
use crate::{Db, Result, Store, StoreError};

/// Folders per account. Every session lists them all (LIST, and a
/// client's sync walks each); mail clients' accounts have tens, heavy ones
/// a few hundred. Without a limit one account could create millions.
pub const MAX_FOLDERS: i64 = 1000;

/// Distinct keywords in a folder, as Dovecot limits them (100): every
/// session keeps and announces (`* FLAGS`) the folder's keywords, so
/// without a limit a client could make them megabytes for everyone.
pub const MAX_KEYWORDS: usize = 100;

/// Refuses a change that gives a folder keywords it does not have when
/// that takes it past [`MAX_KEYWORDS`] distinct ones (compared ASCII
/// case-insensitively, as flags are, RFC 9051 2.3.2). Keywords the folder
/// has already are always allowed, even where it has more (older data).
pub(crate) fn check_keywords(c: &rusqlite::Connection, folder_id: FolderId, adding: &str) -> Result<()> {
    if !adding.split(' ').any(|k| !k.is_empty()) {
        return Ok(());
    }
    let mut st =
        c.prepare_cached("SELECT DISTINCT keywords FROM messages WHERE folder_id = ?1 AND keywords != ''")?;
    let stored = st
        .query_map([folder_id], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    keywords_fit(adding, stored.iter().map(String::as_str))
}

/// The rule of [`check_keywords`], on the folder's distinct keyword lists
/// as stored (every back end reads them its own way).
pub(crate) fn keywords_fit<'a>(adding: &str, stored: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let mut adding: std::collections::HashSet<String> = adding
        .split(' ')
        .filter(|k| !k.is_empty())
        .map(|k| k.to_ascii_lowercase())
        .collect();
    if adding.is_empty() {
        return Ok(());
    }
    let mut present = std::collections::HashSet::new();
    for kw in stored {
        for k in kw.split(' ').filter(|k| !k.is_empty()) {
            let k = k.to_ascii_lowercase();
            adding.remove(&k);
            present.insert(k);
        }
    }
    if !adding.is_empty() && present.len() + adding.len() > MAX_KEYWORDS {
        return Err(StoreError::Limit("too many keywords in this mailbox"));
    }
    Ok(())
}

/// A new body's id: its time first (see blob.rs).
fn new_blob_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    postroom_core::QueueId::generate(now.as_micros() as u64).to_string()
}

/// The per-message state a selected IMAP mailbox keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageMeta {
    pub uid: Uid,
    pub flags: i64,
    pub keywords: String,
    pub modseq: ModSeq,
    pub size: i64,
    pub internal_date: i64,
}

/// How STORE changes flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagOp {
    Replace,
    Add,
    Remove,
}

fn folder_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FolderRow> {
    Ok(FolderRow {
        id: r.get(0)?,
        account_id: r.get(1)?,
        name: r.get(2)?,
        special_use: r.get(3)?,
        uidvalidity: r.get(4)?,
        uidnext: r.get(5)?,
        highestmodseq: r.get(6)?,
    })
}

const FOLDER_COLS: &str = "id, account_id, name, special_use, uidvalidity, uidnext, highestmodseq";

fn bump_modseq(tx: &Transaction<'_>, folder_id: FolderId) -> Result<ModSeq> {
    Ok(tx.query_row(
        "UPDATE folders SET highestmodseq = highestmodseq + 1 WHERE id = ?1 RETURNING highestmodseq",
        [folder_id],
        |r| r.get(0),
    )?)
}

pub(crate) fn merge_keywords(current: &str, given: &[String], op: FlagOp) -> String {
    let mut set: Vec<String> = match op {
        FlagOp::Replace => Vec::new(),
        _ => current
            .split(' ')
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect(),
    };
    for k in given {
        let present = set.iter().position(|x| x.eq_ignore_ascii_case(k));
        match (op, present) {
            (FlagOp::Remove, Some(i)) => {
                set.remove(i);
            }
            (FlagOp::Add | FlagOp::Replace, None) => set.push(k.clone()),
            _ => {}
        }
    }
    set.join(" ")
}

/// Every message's IMAP state in a folder, by UID.
pub(crate) fn read_meta(c: &rusqlite::Connection, folder_id: FolderId) -> Result<Vec<MessageMeta>> {
    let mut st = c.prepare_cached(
        "SELECT uid, flags, keywords, modseq, size, internal_date FROM messages WHERE folder_id = ?1 ORDER BY uid",
    )?;
    let mut rows = st.query([folder_id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        // Most messages have no keywords: read the text without allocating
        // for them.
        let keywords = match r.get_ref(2)? {
            rusqlite::types::ValueRef::Text(t) if !t.is_empty() => String::from_utf8_lossy(t).into_owned(),
            _ => String::new(),
        };
        out.push(MessageMeta {
            uid: r.get(0)?,
            flags: r.get(1)?,
            keywords,
            modseq: r.get(3)?,
            size: r.get(4)?,
            internal_date: r.get(5)?,
        });
    }
    Ok(out)
}

impl Db {
    pub fn folder_by_id(&self, id: FolderId) -> Result<Option<FolderRow>> {
        self.read(|c| {
            Ok(
                c.prepare_cached(&format!("SELECT {FOLDER_COLS} FROM folders WHERE id = ?1"))?
                    .query_row([id], folder_row)
                    .optional()?,
            )
        })
    }

    /// Folder names compare exactly, except INBOX, which is
    /// case-insensitive (RFC 3501 5.1).
    pub fn find_folder(&self, account_id: AccountId, name: &str) -> Result<Option<FolderRow>> {
        let name = if name.eq_ignore_ascii_case("INBOX") {
            "INBOX"
        } else {
            name
        };
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {FOLDER_COLS} FROM folders WHERE account_id = ?1 AND name = ?2"
            ))?
            .query_row(params![account_id, name], folder_row)
            .optional()?)
        })
    }

    pub fn create_folder(
        &self,
        account_id: AccountId,
        name: &str,
        special_use: Option<&str>,
    ) -> Result<FolderRow> {
        self.write(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM folders WHERE account_id = ?1 AND name = ?2)",
                params![account_id, name],
                |r| r.get(0),
            )?;
            if exists {
                return Err(StoreError::Invalid("mailbox exists already".into()));
            }
            let count: i64 = tx.query_row(
                "SELECT COUNT(*) FROM folders WHERE account_id = ?1",
                [account_id],
                |r| r.get(0),
            )?;
            if count >= MAX_FOLDERS {
                return Err(StoreError::Limit("too many mailboxes"));
            }
            tx.execute(
                "INSERT INTO folders (account_id, name, special_use, uidvalidity) VALUES (?1, ?2, ?3, 0)",
                params![account_id, name, special_use],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute("UPDATE folders SET uidvalidity = id WHERE id = ?1", [id])?;
            Ok(tx.query_row(
                &format!("SELECT {FOLDER_COLS} FROM folders WHERE id = ?1"),
                [id],
                folder_row,
            )?)
        })
    }

    /// Renames a folder and its children (`a` and `a/...`).
    pub fn rename_folder(&self, account_id: AccountId, from: &str, to: &str) -> Result<()> {
        self.write(|tx| {
            let taken: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM folders WHERE account_id = ?1 AND name = ?2)",
                params![account_id, to],
                |r| r.get(0),
            )?;
            if taken {
                return Err(StoreError::Invalid("target mailbox exists already".into()));
            }
            let n = tx.execute(
                "UPDATE folders SET name = ?3 WHERE account_id = ?1 AND name = ?2",
                params![account_id, from, to],
            )?;
            if n == 0 {
                return Err(StoreError::Invalid("no such mailbox".into()));
            }
            let prefix = format!("{from}/");
            let mut st = tx
                .prepare("SELECT id, name FROM folders WHERE account_id = ?1 AND substr(name, 1, ?3) = ?2")?;
            let children: Vec<(i64, String)> = st
                // substr() counts characters, not bytes: with the byte
                // length a name that is not ASCII matched no child.
                .query_map(params![account_id, prefix, prefix.chars().count() as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            for (id, name) in children {
                let Some(rest) = name.strip_prefix(&prefix) else {
                    continue;
                };
                let renamed = format!("{to}/{rest}");
                tx.execute("UPDATE folders SET name = ?2 WHERE id = ?1", params![id, renamed])?;
            }
            Ok(())
        })
    }

    pub fn set_subscribed(&self, account_id: AccountId, name: &str, subscribed: bool) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE folders SET subscribed = ?3 WHERE account_id = ?1 AND name = ?2",
                params![account_id, name, subscribed as i64],
            )? > 0)
        })
    }

    /// (name, special use, subscribed) of every folder, by name.
    pub fn folder_list(&self, account_id: AccountId) -> Result<Vec<(String, Option<String>, bool)>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT name, special_use, subscribed FROM folders WHERE account_id = ?1 ORDER BY name",
            )?;
            let rows = st
                .query_map([account_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// Every message's IMAP state, by UID.
    pub fn message_meta(&self, folder_id: FolderId) -> Result<Vec<MessageMeta>> {
        self.read(|c| read_meta(c, folder_id))
    }

    /// Messages of a folder expunged after `modseq` (QRESYNC VANISHED).
    pub fn expunged_since(&self, folder_id: FolderId, modseq: ModSeq) -> Result<Vec<Uid>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT uid FROM expunged WHERE folder_id = ?1 AND modseq > ?2 ORDER BY uid",
            )?;
            let rows = st
                .query_map(params![folder_id, modseq], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    /// Changes flags on `uids`; returns the messages whose flags changed,
    /// with their new state. With `unchanged_since` (CONDSTORE), a message
    /// modified after it is left alone and reported in the second list.
    pub fn store_flags(
        &self,
        folder_id: FolderId,
        uids: &[Uid],
        op: FlagOp,
        flags: i64,
        keywords: &[String],
        unchanged_since: Option<ModSeq>,
    ) -> Result<(Vec<MessageMeta>, Vec<Uid>)> {
        self.write(|tx| {
            if op != FlagOp::Remove {
                check_keywords(tx, folder_id, &keywords.join(" "))?;
            }
            let mut changed = Vec::new();
            let mut refused = Vec::new();
            let mut modseq = None;
            let mut get = tx.prepare_cached(
                "SELECT flags, keywords, modseq, size, internal_date FROM messages WHERE folder_id = ?1 AND uid = ?2",
            )?;
            let mut set = tx.prepare_cached(
                "UPDATE messages SET flags = ?3, keywords = ?4, modseq = ?5 WHERE folder_id = ?1 AND uid = ?2",
            )?;
            for &uid in uids {
                let Some((old_flags, old_kw, old_modseq, size, date)) = get
                    .query_row(params![folder_id, uid], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, ModSeq>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    })
                    .optional()?
                else {
                    continue;
                };
                if unchanged_since.is_some_and(|u| old_modseq > u) {
                    refused.push(uid);
                    continue;
                }
                let new_flags = match op {
                    FlagOp::Replace => flags,
                    FlagOp::Add => old_flags | flags,
                    FlagOp::Remove => old_flags & !flags,
                };
                let new_kw = merge_keywords(&old_kw, keywords, op);
                if new_flags == old_flags && new_kw == old_kw {
                    continue;
                }
                let m = match modseq {
                    Some(m) => m,
                    None => {
                        let m = bump_modseq(tx, folder_id)?;
                        modseq = Some(m);
                        m
                    }
                };
                set.execute(params![folder_id, uid, new_flags, new_kw, m])?;
                changed.push(MessageMeta {
                    uid,
                    flags: new_flags,
                    keywords: new_kw,
                    modseq: m,
                    size,
                    internal_date: date,
                });
            }
            Ok((changed, refused))
        })
    }

    /// See [`crate::backend::MailboxMeta::recent_mark`].
    pub fn recent_mark(&self, folder_id: FolderId) -> Result<i64> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT recent_uid FROM folders WHERE id = ?1", [folder_id], |r| {
                    r.get(0)
                })?,
            )
        })
    }

    /// Marks everything up to UIDNEXT as seen by a session and returns the
    /// previous mark: UIDs above it are \Recent for the caller alone.
    pub fn claim_recent(&self, folder_id: FolderId) -> Result<i64> {
        // Nothing new since the last claim (the common case): no write, so
        // no fsync on every SELECT.
        let (mark, uidnext): (i64, i64) = self.read(|c| {
            Ok(
                c.prepare_cached("SELECT recent_uid, uidnext FROM folders WHERE id = ?1")?
                    .query_row([folder_id], |r| Ok((r.get(0)?, r.get(1)?)))?,
            )
        })?;
        if mark >= uidnext - 1 {
            return Ok(mark);
        }
        self.write(|tx| {
            let previous: i64 =
                tx.query_row("SELECT recent_uid FROM folders WHERE id = ?1", [folder_id], |r| {
                    r.get(0)
                })?;
            tx.execute(
                "UPDATE folders SET recent_uid = uidnext - 1 WHERE id = ?1",
                [folder_id],
            )?;
            Ok(previous)
        })
    }
}

impl Db {
    /// Deletes a folder and its messages; returns the bodies no row refers
    /// to any more.
    pub fn delete_folder(&self, folder_id: FolderId) -> Result<Vec<String>> {
        let uids: Vec<Uid> = self.message_meta(folder_id)?.into_iter().map(|m| m.uid).collect();
        let (_, blobs) = self.expunge(folder_id, &uids)?;
        self.write(|tx| {
            tx.execute("DELETE FROM expunged WHERE folder_id = ?1", [folder_id])?;
            tx.execute("DELETE FROM folders WHERE id = ?1", [folder_id])?;
            Ok(())
        })?;
        Ok(blobs)
    }
}

impl Store {
    /// Deletes a folder and its messages (not INBOX).
    pub async fn delete_folder(&self, folder: &FolderRow) -> Result<()> {
        if folder.name == "INBOX" {
            return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
        }
        let blobs = self.meta.delete_folder(folder.id).await?;
        self.folder_cache.forget(folder.id);
        self.delete_blobs(blobs);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder's changes since a MODSEQ are found by index, not by
    /// reading every message of the folder (issue #9: a 100,000-message
    /// INBOX paid for that read after every APPEND).
    #[test]
    fn changes_since_a_modseq_are_read_by_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("postroom.sqlite")).unwrap();
        let plan = |sql: &str| -> String {
            db.read(|c| {
                let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let rows = st
                    .query_map(params![1, 5], |r| r.get::<_, String>(3))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows.join("; "))
            })
            .unwrap()
        };
        let p = plan(CHANGED_SINCE);
        assert!(p.contains("messages_modseq"), "{p}");
        let p = plan("SELECT uid FROM expunged WHERE folder_id = ?1 AND modseq > ?2 ORDER BY uid");
        assert!(p.contains("expunged_modseq"), "{p}");
    }

    #[test]
    fn keywords_merge() {
        let k = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(merge_keywords("a b", &k(&["c", "A"]), FlagOp::Add), "a b c");
        assert_eq!(merge_keywords("a b", &k(&["A"]), FlagOp::Remove), "b");
        assert_eq!(merge_keywords("a b", &k(&["x"]), FlagOp::Replace), "x");
    }
}

/// The messages of folder ?1 changed (or added) after MODSEQ ?2: by the
/// `messages_modseq` index (schema version 10), so the read costs what
/// changed, not what the folder holds.
const CHANGED_SINCE: &str = "SELECT uid, flags, keywords, modseq, size, internal_date FROM messages
     WHERE folder_id = ?1 AND modseq > ?2 ORDER BY uid";

/// What changed in a folder since a MODSEQ, read in one snapshot.
#[derive(Debug, Default)]
pub struct FolderChanges {
    pub highestmodseq: ModSeq,
    pub uidnext: i64,
    /// New or changed messages, by UID.
    pub changed: Vec<MessageMeta>,
    /// UIDs expunged since.
    pub expunged: Vec<Uid>,
}

impl Db {
    pub fn folder_changes(&self, folder_id: FolderId, since: ModSeq) -> Result<Option<FolderChanges>> {
        self.read(|c| {
            c.execute_batch("BEGIN")?;
            let r = (|| -> Result<Option<FolderChanges>> {
                let Some((highestmodseq, uidnext)) = c
                    .prepare_cached("SELECT highestmodseq, uidnext FROM folders WHERE id = ?1")?
                    .query_row([folder_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
                else {
                    return Ok(None);
                };
                let mut changes = FolderChanges {
                    highestmodseq,
                    uidnext,
                    ..Default::default()
                };
                if highestmodseq <= since {
                    return Ok(Some(changes));
                }
                let mut st = c.prepare_cached(CHANGED_SINCE)?;
                changes.changed = st
                    .query_map(params![folder_id, since], |r| {
                        Ok(MessageMeta {
                            uid: r.get(0)?,
                            flags: r.get(1)?,
                            keywords: r.get(2)?,
                            modseq: r.get(3)?,
                            size: r.get(4)?,
                            internal_date: r.get(5)?,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                let mut st = c.prepare_cached(
                    "SELECT uid FROM expunged WHERE folder_id = ?1 AND modseq > ?2 ORDER BY uid",
                )?;
                changes.expunged = st
                    .query_map(params![folder_id, since], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                Ok(Some(changes))
            })();
            c.execute_batch("COMMIT")?;
            r
        })
    }
}

impl Store {
    /// IMAP APPEND: stores a message in a folder, durably (body fsynced,
    /// metadata committed) before it returns its UID.
    pub async fn append(
        &self,
        folder: &FolderRow,
        message: &[u8],
        flags: i64,
        keywords: &str,
        internal_date: Option<i64>,
    ) -> Result<Uid> {
        if !keywords.is_empty() {
            // Before the body is written: a refused APPEND leaves nothing.
            self.meta.check_keywords(folder.id, keywords).await?;
        }
        let blob_id = new_blob_id();
        // Not fsynced here: the committer fsyncs the blob directory once
        // for every body its batch names, before the commit.
        self.blobs.put(&blob_id, message)?;
        self.insert_appended(
            folder,
            &blob_id,
            message.len() as i64,
            flags,
            keywords,
            internal_date,
        )
        .await
    }

    /// A body for APPEND that arrives in pieces, written to a spool file as
    /// they come (an IMAP literal of up to `max_append`, 50 MB, is not held
    /// in memory), the same spool SMTP DATA uses; then
    /// [`Store::append_upload`]. Dropped unfinished, it leaves nothing; a
    /// crash's leftovers are cleared as the server starts
    /// ([`BlobStore::clear_spools`](crate::BlobStore::clear_spools)).
    pub fn begin_upload(&self) -> Result<Upload> {
        Ok(Upload {
            file: self.blobs.spool()?,
            head: Vec::new(),
        })
    }

    /// [`Store::append`] of a body written with [`Store::begin_upload`].
    pub async fn append_upload(
        &self,
        folder: &FolderRow,
        upload: Upload,
        flags: i64,
        keywords: &str,
        internal_date: Option<i64>,
    ) -> Result<Uid> {
        if !keywords.is_empty() {
            self.meta.check_keywords(folder.id, keywords).await?;
        }
        // The id is taken now, not when the upload began: ids begin with
        // their time, and the sweep takes bodies by age.
        let blob_id = new_blob_id();
        let size = i64::try_from(upload.len()).unwrap_or(i64::MAX);
        self.blobs.put_spool(&blob_id, upload.file)?;
        self.insert_appended(folder, &blob_id, size, flags, keywords, internal_date)
            .await
    }

    async fn insert_appended(
        &self,
        folder: &FolderRow,
        blob_id: &str,
        size: i64,
        flags: i64,
        keywords: &str,
        internal_date: Option<i64>,
    ) -> Result<Uid> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.meta
            .insert_appended(Appended {
                folder: folder.id,
                blob_id,
                size,
                flags,
                keywords,
                internal_date: internal_date.unwrap_or(now.as_secs() as i64),
            })
            .await
    }
}

impl Db {
    /// See [`crate::backend::MailboxMeta::check_keywords`].
    pub fn check_keywords(&self, folder: FolderId, keywords: &str) -> Result<()> {
        self.read(|c| check_keywords(c, folder, keywords))
    }
}

/// How much of an upload's beginning is kept in memory: the header, for
/// what APPEND reads of it (Message-ID).
const UPLOAD_HEAD_KEPT: usize = 64 * 1024;

/// An APPEND body being written piece by piece (see
/// [`Store::begin_upload`]).
pub struct Upload {
    file: Box<dyn crate::TempFile>,
    head: Vec<u8>,
}

impl Upload {
    /// Octets written so far.
    pub fn len(&self) -> u64 {
        self.file.len()
    }

    pub fn is_empty(&self) -> bool {
        self.file.is_empty()
    }

    /// The first octets written (up to 64 KiB).
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.file.write_all(data)?;
        let keep = UPLOAD_HEAD_KEPT.saturating_sub(self.head.len()).min(data.len());
        self.head.extend_from_slice(&data[..keep]);
        Ok(())
    }
}
