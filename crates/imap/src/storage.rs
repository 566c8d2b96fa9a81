//! What the session asks of the store, and what it gets back, as values.
//!
//! The sans-IO way (as `crates/pop3` does it): a command that needs the
//! store makes the session emit [`crate::session::Action::Query`] and wait;
//! the glue carries the [`Query`] out ([`run`]) and hands the [`Answer`]
//! back with [`crate::session::Session::answered`]. The session's part is
//! then pure (it formats what it is given), so it can be driven and fuzzed
//! without a database, and the store call can become asynchronous in the
//! glue alone.
//!
//! Commands move here one family at a time: QUOTA (RFC 9208), the
//! mailbox commands (SELECT, EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE,
//! UNSUBSCRIBE, LIST, LSUB, STATUS) and APPEND so far. The selected
//! state's commands (FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE, the
//! refresh before them, IDLE) and the writing of an APPEND literal as it
//! arrives still call the store from the session directly.

use std::sync::Arc;

use postroom_store::cache::FolderSnapshot;
use postroom_store::folders::{MessageMeta, Upload};
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
}

/// An APPEND's message: in memory, or written to a file as it arrived
/// (`Store::begin_upload`).
pub enum Message {
    Bytes(Vec<u8>),
    Upload(Upload),
}

impl Message {
    /// Its length, and its first octets (all of a small one): enough for
    /// the header.
    pub fn len_and_head(&self) -> (u64, &[u8]) {
        match self {
            Message::Bytes(d) => (d.len() as u64, &d[..]),
            Message::Upload(w) => (w.len(), w.head()),
        }
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (len, _) = self.len_and_head();
        let kind = match self {
            Message::Bytes(_) => "Bytes",
            Message::Upload(_) => "Upload",
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
}

/// Carries a query out against the store, synchronously (the session's
/// selected-state commands still run inside `block_in_place`; see
/// crate::wait). It takes the query: an APPEND's upload is used up.
pub fn run(store: &Store, query: Query) -> Result<Answer, StoreError> {
    crate::wait::wait(ask(store, query))
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
        if let Some(message_id) = postroom_core::header::header_value(head, "message-id") {
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
