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
//! Commands move here one family at a time: QUOTA (RFC 9208), STATUS,
//! LIST and LSUB so far. The others still call the store from the session
//! directly.

use std::sync::Arc;

use postroom_store::folders::MessageMeta;
use postroom_store::{Store, StoreError};

/// A question for the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// GETQUOTA and GETQUOTAROOT: the account's storage quota, and
    /// whether the account has the folder `folder` (GETQUOTAROOT's
    /// mailbox, by its stored name).
    Quota { account_id: i64, folder: Option<String> },
    /// LIST and LSUB: the account's folders.
    Folders { account_id: i64 },
    /// STATUS (and LIST-STATUS): these folders (stored names) as they are.
    Status { account_id: i64, names: Vec<String> },
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
    pub highestmodseq: i64,
    /// Messages above this UID are \Recent (no session has claimed them).
    pub recent_mark: i64,
    /// Its messages, shared with the server-wide folder cache.
    pub msgs: Arc<Vec<MessageMeta>>,
}

/// The store's answer to a [`Query`].
#[derive(Clone, Debug, PartialEq, Eq)]
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
}

/// Carries a query out against the store.
pub fn run(store: &Store, query: &Query) -> Result<Answer, StoreError> {
    match query {
        Query::Quota { account_id, folder } => {
            let folder_exists = match folder {
                Some(name) => store.db.find_folder(*account_id, name)?.is_some(),
                None => true,
            };
            // An account deleted meanwhile has no quota (and stores nothing).
            let quota = match store.db.account_by_id(*account_id)?.and_then(|a| a.quota) {
                Some(limit) => Some((store.db.usage(*account_id)?, limit)),
                None => None,
            };
            Ok(Answer::Quota { folder_exists, quota })
        }
        Query::Folders { account_id } => Ok(Answer::Folders(store.db.folder_list(*account_id)?)),
        Query::Status { account_id, names } => {
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                out.push(folder_status(store, *account_id, name)?);
            }
            Ok(Answer::Status(out))
        }
    }
}

fn folder_status(store: &Store, account_id: i64, name: &str) -> Result<Option<FolderStatus>, StoreError> {
    let Some(f) = store.db.find_folder(account_id, name)? else {
        return Ok(None);
    };
    // The message list from the server-wide cache, as of the row just read.
    let Some(snap) = store.folder_snapshot(f.id, Some((f.highestmodseq, f.uidnext)))? else {
        return Ok(None);
    };
    Ok(Some(FolderStatus {
        name: f.name,
        uidnext: f.uidnext,
        uidvalidity: f.uidvalidity,
        highestmodseq: f.highestmodseq,
        recent_mark: recent_mark(store, f.id)?,
        msgs: Arc::clone(&snap.msgs),
    }))
}

/// The highest UID of a folder that some session has claimed as \Recent:
/// the messages above it are \Recent (and STATUS counts them as RECENT).
pub(crate) fn recent_mark(store: &Store, folder_id: i64) -> Result<i64, StoreError> {
    store.db.read(|c| {
        Ok(
            c.query_row("SELECT recent_uid FROM folders WHERE id = ?1", [folder_id], |r| {
                r.get::<_, i64>(0)
            })?,
        )
    })
}
