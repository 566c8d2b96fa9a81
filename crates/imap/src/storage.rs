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
//! Commands move here one family at a time; QUOTA (RFC 9208) is the first.
//! The others still call the store from the session directly.

use postroom_store::{AccountId, Store, StoreError};

/// A question for the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// GETQUOTA and GETQUOTAROOT: the account's storage quota, and
    /// whether the account has the folder `folder` (GETQUOTAROOT's
    /// mailbox, by its stored name).
    Quota {
        account_id: AccountId,
        folder: Option<String>,
    },
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
}

/// Carries a query out against the store, synchronously (the session's
/// other commands still run inside `block_in_place`; see crate::wait).
pub fn run(store: &Store, query: &Query) -> Result<Answer, StoreError> {
    crate::wait::wait(ask(store, query))
}

/// Carries a query out against the store.
pub async fn ask(store: &Store, query: &Query) -> Result<Answer, StoreError> {
    let meta = store.meta();
    match query {
        Query::Quota { account_id, folder } => {
            let folder_exists = match folder {
                Some(name) => meta.find_folder(*account_id, name).await?.is_some(),
                None => true,
            };
            // An account deleted meanwhile has no quota (and stores nothing).
            let quota = match meta.account_by_id(*account_id).await?.and_then(|a| a.quota) {
                Some(limit) => Some((meta.usage(*account_id).await?, limit)),
                None => None,
            };
            Ok(Answer::Quota { folder_exists, quota })
        }
    }
}
