//! What the session asks of the store, and what it gets back, as values.
//!
//! The sans-IO way (as `crates/pop3` does it): a command that needs the
//! store makes the session emit [`crate::session::Action::Query`] and wait;
//! the glue carries the [`Query`] out ([`Glue::ask`]) and hands the [`Answer`]
//! back with [`crate::session::Session::answered`]. The session's part is
//! then pure (it formats what it is given), so it can be driven and fuzzed
//! without a database, and the store call can become asynchronous in the
//! glue alone.
//!
//! Every command that needs the store goes this way: QUOTA (RFC 9208),
//! the mailbox commands, APPEND, and the selected state's (FETCH, STORE,
//! SEARCH, COPY, MOVE, EXPUNGE, CLOSE, NOOP, IDLE), which ask several
//! questions in turn where they need them (the refresh before the command,
//! then e.g. header blocks, \Seen, whole messages a few at a time). An
//! APPEND literal arriving in pieces is written by the glue too
//! ([`UploadStep`], [`Glue`]). The server-wide caches stay in the
//! [`Store`]: an answer carries their snapshots and header blocks
//! (shared, not copied).

use std::sync::Arc;

use postroom_store::cache::FolderSnapshot;
use postroom_store::folders::{FlagOp, MessageMeta, Upload};
use postroom_store::{AccountId, FolderId, ModSeq, Store, StoreError, Uid};

/// A question for the store.
#[derive(Debug)]
pub enum Query {
    /// GETQUOTA and GETQUOTAROOT: the account's storage quota, and
    /// whether the account has the folder `folder` (GETQUOTAROOT's
    /// mailbox, by its stored name).
    Quota {
        account_id: AccountId,
        folder: Option<String>,
    },
    /// LIST and LSUB: the account's folders.
    Folders { account_id: AccountId },
    /// STATUS (and LIST-STATUS): these folders (stored names) as they are.
    Status {
        account_id: AccountId,
        names: Vec<String>,
    },
    /// CREATE: the folder, and its missing superiors (RFC 9051 6.3.4).
    Create { account_id: AccountId, name: String },
    /// DELETE: a folder without inferiors (RFC 9051 6.3.5: refusing one
    /// with inferiors is allowed).
    Delete { account_id: AccountId, name: String },
    /// RENAME (RFC 9051 6.3.6): a folder and its inferiors; INBOX's
    /// messages move to the new folder and INBOX stays, empty.
    Rename {
        account_id: AccountId,
        from: String,
        to: String,
    },
    /// SUBSCRIBE (`on`) and UNSUBSCRIBE.
    Subscribe {
        account_id: AccountId,
        name: String,
        on: bool,
    },
    /// SELECT or EXAMINE (`read_only`) by an IMAP4rev1 or IMAP4rev2
    /// (`rev2`) session: the folder, which of its messages are \Recent to
    /// the session (`recent_above`), and with QRESYNC the client's
    /// (UIDVALIDITY, MODSEQ) to answer VANISHED (EARLIER) from.
    Select {
        account_id: AccountId,
        name: String,
        read_only: bool,
        rev2: bool,
        qresync: Option<(i64, ModSeq)>,
    },
    /// APPEND (RFC 9051 6.3.12): the message into the folder `name`, with
    /// these flags (system-flag bits, keywords separated by spaces) and
    /// internal date, unless the account's quota would be exceeded. A
    /// message the server already saved there at submission (the \Sent
    /// copy, found by Message-ID) is not stored twice.
    Append {
        account_id: AccountId,
        name: String,
        flags: i64,
        keywords: String,
        date: Option<i64>,
        message: Message,
    },
    /// The refresh before a selected-state command, and IDLE's look
    /// (RFC 9051 7.5.1): the folder as it is now. When it has messages
    /// at or above `uidnext` (the session's), which of them are \Recent
    /// to the session too (see `recent_above`).
    Refresh {
        folder_id: FolderId,
        uidnext: i64,
        read_only: bool,
        rev2: bool,
    },
    /// COPY and MOVE's target (by its stored name): its id.
    FindFolder { account_id: AccountId, name: String },
    /// The header blocks of these messages (`uids` ascending), mostly
    /// from the server-wide header cache: one question for a FETCH or
    /// SEARCH of headers over the whole mailbox, not one per message.
    Headers { folder_id: FolderId, uids: Vec<Uid> },
    /// These whole messages (FETCH of bodies, SEARCH BODY/TEXT), a few at
    /// a time (see `crate::session::BODIES_PER_QUERY`). The answer may
    /// hold fewer (the first ones) when a read failed after the first.
    Messages { folder_id: FolderId, uids: Vec<Uid> },
    /// STORE, and FETCH's implicit \Seen: flags of these messages, one
    /// transaction. The answer carries the server-wide snapshots before
    /// and after when the change was folded into the cache.
    StoreFlags {
        folder_id: FolderId,
        uids: Vec<Uid>,
        op: FlagOp,
        flags: i64,
        keywords: Vec<String>,
        unchanged_since: Option<ModSeq>,
    },
    /// COPY (and MOVE's first half, RFC 6851 3.3).
    Copy {
        from: FolderId,
        uids: Vec<Uid>,
        to: FolderId,
    },
    /// EXPUNGE, CLOSE, MOVE's second half.
    Expunge { folder_id: FolderId, uids: Vec<Uid> },
}

/// An APPEND's message: in memory, or written to a file as it arrived
/// (`Store::begin_upload`).
pub enum Message {
    Bytes(Vec<u8>),
    Upload(Upload),
    /// What the session knows of a literal the glue wrote to a file as it
    /// arrived ([`UploadStep`]): its length. [`Glue::ask`] puts the file
    /// in its place.
    Streamed(u64),
}

impl Message {
    /// Its length, and its first octets (all of a small one): enough for
    /// the header.
    pub fn len_and_head(&self) -> (u64, &[u8]) {
        match self {
            Message::Bytes(d) => (d.len() as u64, &d[..]),
            Message::Upload(w) => (w.len(), w.head()),
            Message::Streamed(len) => (*len, &[]),
        }
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (len, _) = self.len_and_head();
        let kind = match self {
            Message::Bytes(_) => "Bytes",
            Message::Upload(_) => "Upload",
            Message::Streamed(_) => "Streamed",
        };
        write!(f, "{kind}({len} octets)")
    }
}

/// How an APPEND went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    NoSuchFolder,
    OverQuota,
    /// Stored (or found stored already): the folder and the message's UID.
    Stored {
        folder_id: FolderId,
        uidvalidity: i64,
        uid: Uid,
    },
}

/// A folder SELECT or EXAMINE opened.
#[derive(Debug)]
pub struct Opened {
    /// The stored name.
    pub name: String,
    /// Its messages, from the server-wide cache.
    pub snap: Arc<FolderSnapshot>,
    /// Messages above this UID are \Recent to the session.
    pub recent_above: i64,
    /// QRESYNC whose UIDVALIDITY matched: the client's MODSEQ, and the
    /// UIDs expunged since.
    pub qresync: Option<(ModSeq, Vec<Uid>)>,
}

/// How a CREATE, DELETE, RENAME or (UN)SUBSCRIBE went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Done; the folder's id (DELETE: the one deleted).
    Done(Option<FolderId>),
    /// CREATE's folder, or RENAME's target, exists already.
    AlreadyExists,
    NoSuchFolder,
    /// DELETE of a folder with inferiors.
    HasChildren,
}

/// A folder as LIST sees it: its stored name, its special use, whether it
/// is subscribed.
pub type FolderEntry = (String, Option<String>, bool);

/// What STATUS reports of a folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderStatus {
    /// The stored name.
    pub name: String,
    pub uidnext: i64,
    pub uidvalidity: i64,
    pub highestmodseq: ModSeq,
    /// Messages above this UID are \Recent (no session has claimed them).
    pub recent_mark: i64,
    /// Its messages, shared with the server-wide folder cache.
    pub msgs: Arc<Vec<MessageMeta>>,
}

/// The store's answer to a [`Query`].
#[derive(Debug)]
pub enum Answer {
    Quota {
        /// The asked-for folder exists (`true` when none was asked for).
        folder_exists: bool,
        /// (octets used, the limit in octets); `None` without a quota.
        quota: Option<(i64, i64)>,
    },
    Folders(Vec<FolderEntry>),
    /// One per name asked, in order: `None` for a folder there is not.
    Status(Vec<Option<FolderStatus>>),
    Changed(Change),
    /// `None`: no such folder.
    Selected(Option<Opened>),
    Appended(Appended),
    /// The folder now, and the UID above which its new messages are
    /// \Recent to the session (`i64::MAX` when none are new); `None`:
    /// the folder was deleted.
    Refreshed(Option<(Arc<FolderSnapshot>, i64)>),
    /// `None`: no such folder.
    Folder(Option<FolderId>),
    /// Header blocks or whole messages, one per UID asked, in order;
    /// `None` for one expunged meanwhile.
    Blocks(Vec<Option<Arc<[u8]>>>),
    FlagsStored(FlagsStored),
    /// The target's UIDVALIDITY and the (source, new) UID pairs
    /// (UIDPLUS, RFC 4315 3).
    Copied {
        uidvalidity: i64,
        pairs: Vec<(Uid, Uid)>,
    },
    Expunged,
}

/// How a STORE (or FETCH's \Seen) went.
#[derive(Debug)]
pub struct FlagsStored {
    /// The messages changed, with their new state, by UID.
    pub changed: Vec<MessageMeta>,
    /// Left alone: changed after UNCHANGEDSINCE (RFC 7162 3.1.3).
    pub refused: Vec<Uid>,
    /// The server-wide snapshot right before the change and the one with
    /// it folded in, when the cache took it (`Store::note_flag_changes`):
    /// a session whose list is the first adopts the second instead of
    /// copying its list to change it.
    pub snapshots: Option<(Arc<FolderSnapshot>, Arc<FolderSnapshot>)>,
}

/// An APPEND literal arriving in pieces: the session says what came, the
/// glue writes it to a spool file (`Store::begin_upload`), so a message of
/// up to APPENDLIMIT octets is never held in memory.
#[derive(Debug)]
pub enum UploadStep {
    Begin,
    Chunk(Vec<u8>),
    /// What was uploaded belongs to no APPEND (the command failed to
    /// parse, or another command came).
    Discard,
}

/// What the glue keeps for a session besides its connection: the store,
/// and the APPEND literal being written as it arrives. The tokio glue
/// (`crate::service`) and the tests carry a session's actions out through
/// it, so they do it the same way.
pub struct Glue {
    store: Store,
    /// `Err`: writing failed (logged then); the APPEND answers
    /// `NO [UNAVAILABLE]`.
    upload: Option<Result<Upload, ()>>,
    trainer: Option<Arc<dyn JunkTrainer>>,
}

/// The content filter's classifier, taught by the user's own sorting: a
/// message copied or moved into a `\Junk` folder is spam, one taken out
/// of it into another folder is ham. Handed the messages as stored (full
/// headers); it trains in the background and logs a failure, since the
/// COPY or MOVE itself has succeeded.
pub trait JunkTrainer: Send + Sync {
    fn train(&self, messages: Vec<Vec<u8>>, spam: bool);
}

/// Messages read for training per COPY/MOVE: a user emptying a Junk
/// folder of 100,000 messages teaches the classifier the first 500 (its
/// batch), not a day of reads.
pub const TRAIN_PER_COPY: usize = 500;

impl Glue {
    pub fn new(store: Store) -> Self {
        Glue {
            store,
            upload: None,
            trainer: None,
        }
    }

    /// With a trainer for moves into and out of `\Junk`.
    pub fn with_trainer(mut self, trainer: Option<Arc<dyn JunkTrainer>>) -> Self {
        self.trainer = trainer;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Carries out an [`UploadStep`]. The writes go to the page cache
    /// (the spool file is fsynced once, when APPEND stores it), pieces of
    /// at most the framer's 64 KB chunk: short enough to do in place on
    /// the async worker.
    pub fn upload(&mut self, step: UploadStep) {
        match step {
            UploadStep::Begin => {
                self.upload = Some(self.store.begin_upload().map_err(|e| {
                    tracing::error!(error = %e, "APPEND upload failed");
                }));
            }
            UploadStep::Chunk(bytes) => {
                if let Some(Ok(w)) = &mut self.upload {
                    if let Err(e) = w.write(&bytes) {
                        tracing::error!(error = %e, "APPEND upload failed");
                        self.upload = Some(Err(()));
                    }
                }
            }
            UploadStep::Discard => self.upload = None,
        }
    }

    /// Carries a query out against the store; a streamed APPEND takes the
    /// upload (a failed one is the store's failure).
    pub async fn ask(&mut self, query: Query) -> Result<Answer, StoreError> {
        let query = match query {
            Query::Append {
                account_id,
                name,
                flags,
                keywords,
                date,
                message: Message::Streamed(_),
            } => match self.upload.take() {
                Some(Ok(w)) => Query::Append {
                    account_id,
                    name,
                    flags,
                    keywords,
                    date,
                    message: Message::Upload(w),
                },
                _ => return Err(StoreError::Unavailable),
            },
            q => q,
        };
        let copy = match (&query, &self.trainer) {
            (Query::Copy { from, to, .. }, Some(t)) => Some((*from, *to, Arc::clone(t))),
            _ => None,
        };
        let answer = ask(&self.store, query).await?;
        if let (Some((from, to, trainer)), Answer::Copied { pairs, .. }) = (copy, &answer) {
            let uids: Vec<Uid> = pairs.iter().map(|p| p.1).take(TRAIN_PER_COPY).collect();
            tokio::spawn(train_copied(self.store.clone(), from, to, uids, trainer));
        }
        Ok(answer)
    }
}

/// After a COPY or MOVE (a MOVE is a copy, then an expunge): when exactly
/// one side is a `\Junk` folder, the copies (read from the target, which
/// the expunge does not touch) train the classifier.
async fn train_copied(
    store: Store,
    from: FolderId,
    to: FolderId,
    uids: Vec<Uid>,
    trainer: Arc<dyn JunkTrainer>,
) {
    let junk = |f: &Option<postroom_store::mailbox::FolderRow>| {
        f.as_ref()
            .and_then(|f| f.special_use.as_deref())
            .is_some_and(|u| u.eq_ignore_ascii_case(postroom_store::SpecialUse::Junk.attribute()))
    };
    let (src, dst) = match (
        store.meta().folder_by_id(from).await,
        store.meta().folder_by_id(to).await,
    ) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(target: "imap", error = %e, "not trained: the folders could not be read");
            return;
        }
    };
    let trash = dst
        .as_ref()
        .and_then(|f| f.special_use.as_deref())
        .is_some_and(|u| u.eq_ignore_ascii_case(postroom_store::SpecialUse::Trash.attribute()));
    let spam = match (junk(&src), junk(&dst)) {
        (false, true) => true,
        // Out of Junk into the Trash is how spam is deleted, not a
        // rescued message.
        (true, false) if !trash => false,
        _ => return,
    };
    let mut rows = Vec::with_capacity(uids.len());
    for uid in uids {
        match store.meta().message(to, uid).await {
            Ok(Some(row)) => rows.push(row),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(target: "imap", error = %e, "not trained: the messages could not be read");
                return;
            }
        }
    }
    let reader = store.clone();
    let read = tokio::task::spawn_blocking(move || {
        rows.iter()
            .filter_map(|r| reader.message_bytes(r).ok())
            .collect::<Vec<_>>()
    })
    .await;
    match read {
        Ok(messages) if !messages.is_empty() => trainer.train(messages, spam),
        Ok(_) => {}
        Err(e) => tracing::warn!(target: "imap", error = %e, "not trained: the messages could not be read"),
    }
}

/// Carries a query out against the store.
pub async fn ask(store: &Store, query: Query) -> Result<Answer, StoreError> {
    match query {
        Query::Quota { account_id, folder } => {
            let folder_exists = match folder {
                Some(name) => store.meta().find_folder(account_id, &name).await?.is_some(),
                None => true,
            };
            // An account deleted meanwhile has no quota (and stores nothing).
            let quota = match store
                .meta()
                .account_by_id(account_id)
                .await?
                .and_then(|a| a.quota)
            {
                Some(limit) => Some((store.meta().usage(account_id).await?, limit)),
                None => None,
            };
            Ok(Answer::Quota { folder_exists, quota })
        }
        Query::Folders { account_id } => Ok(Answer::Folders(store.meta().folder_list(account_id).await?)),
        Query::Status { account_id, names } => {
            let mut out = Vec::with_capacity(names.len());
            for name in &names {
                out.push(folder_status(store, account_id, name).await?);
            }
            Ok(Answer::Status(out))
        }
        Query::Create { account_id, name } => create(store, account_id, &name).await.map(Answer::Changed),
        Query::Delete { account_id, name } => delete(store, account_id, &name).await.map(Answer::Changed),
        Query::Rename { account_id, from, to } => {
            rename(store, account_id, &from, &to).await.map(Answer::Changed)
        }
        Query::Select {
            account_id,
            name,
            read_only,
            rev2,
            qresync,
        } => select(store, account_id, &name, read_only, rev2, qresync)
            .await
            .map(Answer::Selected),
        Query::Subscribe { account_id, name, on } => {
            // Unsubscribing a name that is not a folder (any more) succeeds.
            Ok(Answer::Changed(
                if store.meta().set_subscribed(account_id, &name, on).await? || !on {
                    Change::Done(None)
                } else {
                    Change::NoSuchFolder
                },
            ))
        }
        Query::Append {
            account_id,
            name,
            flags,
            keywords,
            date,
            message,
        } => append(store, account_id, &name, flags, &keywords, date, message)
            .await
            .map(Answer::Appended),
        Query::Refresh {
            folder_id,
            uidnext,
            read_only,
            rev2,
        } => {
            let Some(snap) = store.folder_snapshot(folder_id, None).await? else {
                return Ok(Answer::Refreshed(None));
            };
            let mark = if snap.uidnext > uidnext {
                recent_above(store, folder_id, read_only, rev2).await?
            } else {
                i64::MAX
            };
            Ok(Answer::Refreshed(Some((snap, mark))))
        }
        Query::FindFolder { account_id, name } => Ok(Answer::Folder(
            store.meta().find_folder(account_id, &name).await?.map(|f| f.id),
        )),
        Query::Headers { folder_id, uids } => {
            Ok(Answer::Blocks(store.header_blocks(folder_id, &uids).await?))
        }
        Query::Messages { folder_id, uids } => {
            // A failed read ends the answer short: the messages before it
            // are answered, and the session's next question starts at the
            // one that failed (and fails, unless it was a passing fault).
            let mut rows = Vec::with_capacity(uids.len());
            let mut failed = None;
            for uid in uids {
                match store.meta().message(folder_id, uid).await {
                    Ok(row) => rows.push(row),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            // The files are read off the async workers (up to
            // BODY_OCTETS_PER_QUERY, 4 MiB, from a disk that may be cold).
            let reader = store.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut out: Vec<Option<Arc<[u8]>>> = Vec::with_capacity(rows.len());
                for row in rows {
                    match row.map(|r| reader.message_bytes(&r)).transpose() {
                        Ok(m) => out.push(m.map(Arc::from)),
                        Err(e) => return (out, Some(e)),
                    }
                }
                (out, None)
            })
            .await;
            let (out, read_failed) = match read {
                Ok(r) => r,
                Err(e) => return Err(StoreError::Io(std::io::Error::other(e))),
            };
            if let Some(e) = read_failed.or(failed) {
                if out.is_empty() {
                    return Err(e);
                }
            }
            Ok(Answer::Blocks(out))
        }
        Query::StoreFlags {
            folder_id,
            uids,
            op,
            flags,
            keywords,
            unchanged_since,
        } => {
            let (changed, refused) = store
                .meta()
                .store_flags(folder_id, &uids, op, flags, &keywords, unchanged_since)
                .await?;
            let snapshots = store.note_flag_changes(folder_id, &changed).await;
            Ok(Answer::FlagsStored(FlagsStored {
                changed,
                refused,
                snapshots,
            }))
        }
        Query::Copy { from, uids, to } => {
            let (uidvalidity, pairs) = store.meta().copy_messages(from, &uids, to).await?;
            Ok(Answer::Copied { uidvalidity, pairs })
        }
        Query::Expunge { folder_id, uids } => {
            store.expunge(folder_id, &uids).await?;
            Ok(Answer::Expunged)
        }
    }
}

async fn select(
    store: &Store,
    account_id: AccountId,
    name: &str,
    read_only: bool,
    rev2: bool,
    qresync: Option<(i64, ModSeq)>,
) -> Result<Option<Opened>, StoreError> {
    let Some(f) = store.meta().find_folder(account_id, name).await? else {
        return Ok(None);
    };
    let recent_above = recent_above(store, f.id, read_only, rev2).await?;
    // The message list from the server-wide cache: no message rows are
    // read when the folder has not changed since it was last built.
    let Some(snap) = store
        .folder_snapshot(f.id, Some((f.highestmodseq, f.uidnext)))
        .await?
    else {
        return Ok(None);
    };
    let qresync = match qresync {
        Some((uidvalidity, since)) if uidvalidity == f.uidvalidity => {
            Some((since, store.meta().expunged_since(f.id, since).await?))
        }
        _ => None,
    };
    Ok(Some(Opened {
        name: f.name,
        snap,
        recent_above,
        qresync,
    }))
}

/// The UID above which a folder's messages are \Recent to a session
/// (RFC 3501 2.3.2): the first IMAP4rev1 session to see new messages
/// claims them (`claim_recent`); a read-only one (EXAMINE) shows them as
/// \Recent without claiming, so the next session still sees them so
/// (RFC 3501 6.3.2); an IMAP4rev2 session has no \Recent (RFC 9051
/// appendix E) and leaves them to the IMAP4rev1 clients that do.
pub(crate) async fn recent_above(
    store: &Store,
    folder_id: FolderId,
    read_only: bool,
    rev2: bool,
) -> Result<i64, StoreError> {
    if rev2 {
        Ok(i64::MAX)
    } else if read_only {
        recent_mark(store, folder_id).await
    } else {
        store.meta().claim_recent(folder_id).await
    }
}

async fn append(
    store: &Store,
    account_id: AccountId,
    name: &str,
    flags: i64,
    keywords: &str,
    date: Option<i64>,
    message: Message,
) -> Result<Appended, StoreError> {
    let Some(f) = store.meta().find_folder(account_id, name).await? else {
        return Ok(Appended::NoSuchFolder);
    };
    let stored = |uid| Appended::Stored {
        folder_id: f.id,
        uidvalidity: f.uidvalidity,
        uid,
    };
    let (len, head) = message.len_and_head();
    // The server saved this message at submission already; the client's
    // copy would be a duplicate (the "move a copy to Sent" done
    // once). Its UID is the APPENDUID (RFC 4315 3).
    if f.special_use.as_deref() == Some(postroom_store::SpecialUse::Sent.attribute()) {
        if let Some(message_id) = postroom_message::header::header_value(head, "message-id") {
            if let Some(uid) = store.meta().recent_sent_copy(f.id, &message_id).await? {
                return Ok(stored(uid));
            }
        }
    }
    if let Some(quota) = store
        .meta()
        .account_by_id(account_id)
        .await?
        .and_then(|a| a.quota)
    {
        let used = store.meta().usage(account_id).await?;
        if used.saturating_add(i64::try_from(len).unwrap_or(i64::MAX)) > quota {
            return Ok(Appended::OverQuota);
        }
    }
    let uid = match message {
        Message::Bytes(data) => store.append(&f, &data, flags, keywords, date).await?,
        Message::Upload(w) => store.append_upload(&f, w, flags, keywords, date).await?,
        // A streamed literal without its file (`Glue::ask` puts it in):
        // the upload was lost, the store is what failed.
        Message::Streamed(_) => return Err(StoreError::Unavailable),
    };
    Ok(stored(uid))
}

async fn create(store: &Store, account_id: AccountId, name: &str) -> Result<Change, StoreError> {
    if store.meta().find_folder(account_id, name).await?.is_some() {
        return Ok(Change::AlreadyExists);
    }
    let parts: Vec<&str> = name.split('/').collect();
    for i in 1..parts.len() {
        let parent = parts[..i].join("/");
        if store.meta().find_folder(account_id, &parent).await?.is_none() {
            store.meta().create_folder(account_id, &parent, None).await?;
        }
    }
    let f = store.meta().create_folder(account_id, name, None).await?;
    Ok(Change::Done(Some(f.id)))
}

async fn delete(store: &Store, account_id: AccountId, name: &str) -> Result<Change, StoreError> {
    let Some(f) = store.meta().find_folder(account_id, name).await? else {
        return Ok(Change::NoSuchFolder);
    };
    let inferiors = format!("{name}/");
    if store
        .meta()
        .folder_list(account_id)
        .await?
        .iter()
        .any(|(n, _, _)| n.starts_with(&inferiors))
    {
        return Ok(Change::HasChildren);
    }
    store.delete_folder(&f).await?;
    Ok(Change::Done(Some(f.id)))
}

async fn rename(store: &Store, account_id: AccountId, from: &str, to: &str) -> Result<Change, StoreError> {
    if store.meta().find_folder(account_id, to).await?.is_some() {
        return Ok(Change::AlreadyExists);
    }
    let Some(src) = store.meta().find_folder(account_id, from).await? else {
        return Ok(Change::NoSuchFolder);
    };
    if from != "INBOX" {
        store.meta().rename_folder(account_id, from, to).await?;
        return Ok(Change::Done(Some(src.id)));
    }
    let dst = store.meta().create_folder(account_id, to, None).await?;
    let uids: Vec<Uid> = store
        .meta()
        .message_meta(src.id)
        .await?
        .into_iter()
        .map(|m| m.uid)
        .collect();
    store.meta().copy_messages(src.id, &uids, dst.id).await?;
    store.expunge(src.id, &uids).await?;
    Ok(Change::Done(Some(dst.id)))
}

async fn folder_status(
    store: &Store,
    account_id: AccountId,
    name: &str,
) -> Result<Option<FolderStatus>, StoreError> {
    let Some(f) = store.meta().find_folder(account_id, name).await? else {
        return Ok(None);
    };
    // The message list from the server-wide cache, as of the row just read.
    let Some(snap) = store
        .folder_snapshot(f.id, Some((f.highestmodseq, f.uidnext)))
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(FolderStatus {
        name: f.name,
        uidnext: f.uidnext,
        uidvalidity: f.uidvalidity,
        highestmodseq: f.highestmodseq,
        recent_mark: recent_mark(store, f.id).await?,
        msgs: Arc::clone(&snap.msgs),
    }))
}

/// The highest UID of a folder that some session has claimed as \Recent:
/// the messages above it are \Recent (and STATUS counts them as RECENT).
pub(crate) async fn recent_mark(store: &Store, folder_id: FolderId) -> Result<i64, StoreError> {
    store.meta().recent_mark(folder_id).await
}
