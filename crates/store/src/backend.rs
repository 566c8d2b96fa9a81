//! The storage interface: what each caller needs of the metadata, as async
//! traits, each defined by its callers. A back end implements them all
//! ([`Metadata`]); the embedded SQLite database ([`crate::Db`]) is one,
//! PostgreSQL the other, and [`crate::faulty::FaultyMeta`] wraps either to
//! make calls fail on demand in tests.
//!
//! No SQL and no driver type crosses this line: rows are plain structs with
//! typed ids ([`crate::ids`]), errors are [`StoreError`]s. Message bodies
//! are not here: they stay in the [`crate::BlobStore`] on every back end,
//! and [`crate::Store`] combines the two (a body is fsynced before the row
//! that refers to it commits; a body whose last row is gone is purged after).

use async_trait::async_trait;

use crate::admin::{AuditEntry, AuditQuery, AuditRow};
use crate::cache::FolderSnapshot;
use crate::classifier::{TrainingBatch, TrainingModel, TrainingTotals};
use crate::committer::Delivery;
use crate::console::{ApiTokenRow, NewApiToken, ProviderAdminRow};
use crate::customers::{CustomerCaps, CustomerRow, CustomerUsage};
use crate::directory::{AccountRow, AliasRow, DomainRow, ImportedAlias};
use crate::dkim::DkimKeyRow;
use crate::filter::{FilterResultRow, WhitelistRow};
use crate::folders::{FlagOp, FolderChanges, MessageMeta};
use crate::ids::{AccountId, DirectoryVersion, DomainId, FolderId, ModSeq, OutboundId, Uid};
use crate::mailbox::{FolderRow, MessageRow};
use crate::queue::OutboundRow;
use crate::Result;

/// What address resolution, logins and the relay policy read on every
/// RCPT and every login: lookups, and the two writes a session makes
/// (a password rehash, a callout result).
#[async_trait]
pub trait DirectoryMeta: Send + Sync {
    async fn domain(&self, name: &str) -> Result<Option<DomainRow>>;
    async fn domain_by_id(&self, id: DomainId) -> Result<Option<DomainRow>>;
    async fn domains(&self) -> Result<Vec<DomainRow>>;
    async fn account(&self, domain: DomainId, local: &str) -> Result<Option<AccountRow>>;
    async fn account_by_id(&self, id: AccountId) -> Result<Option<AccountRow>>;
    /// Every account, or a domain's.
    async fn accounts(&self, domain: Option<DomainId>) -> Result<Vec<AccountRow>>;
    async fn alias(&self, domain: DomainId, local: &str) -> Result<Option<AliasRow>>;
    async fn aliases(&self, domain: Option<DomainId>) -> Result<Vec<AliasRow>>;
    /// Gateway mode: the host a domain's mail is relayed to.
    async fn relay_host(&self, domain: &str) -> Result<Option<String>>;
    async fn is_relay_recipient(&self, domain: DomainId, local: &str) -> Result<bool>;
    async fn relay_recipients(&self, domain: DomainId) -> Result<Vec<String>>;
    /// A callout's answer no older than `max_age` seconds.
    async fn cached_callout(&self, address: &str, max_age: i64) -> Result<Option<(bool, String)>>;
    async fn remember_callout(&self, address: &str, accepted: bool, reply: &str) -> Result<()>;
    /// A login rehashes a password stored with older parameters.
    async fn set_password_hash(&self, id: AccountId, hash: &str) -> Result<()>;
    /// A domain's active DKIM keys, newest first.
    async fn dkim_keys(&self, domain: DomainId) -> Result<Vec<DkimKeyRow>>;
    /// A successful login (unix seconds), for `user show`.
    async fn record_login(&self, id: AccountId, at: i64) -> Result<()>;
}

/// What the admin service changes (the CLI today, the HTTP API next).
#[async_trait]
pub trait AdminMeta: Send + Sync {
    async fn add_domain(&self, name: &str, display: &str, alias_of: Option<&str>) -> Result<DomainRow>;
    async fn update_domain(
        &self,
        id: DomainId,
        separator: Option<&str>,
        default_quota: Option<Option<i64>>,
    ) -> Result<()>;
    async fn add_account(
        &self,
        domain: DomainId,
        local: &str,
        display: &str,
        password_hash: Option<&str>,
        quota: Option<i64>,
    ) -> Result<AccountRow>;
    async fn set_enabled(&self, id: AccountId, enabled: bool) -> Result<()>;
    async fn set_domain_admin(&self, id: AccountId, admin: bool) -> Result<()>;
    async fn set_quota(&self, id: AccountId, quota: Option<i64>) -> Result<()>;
    async fn set_forwarding(&self, id: AccountId, targets: &[String], keep: bool) -> Result<()>;
    async fn set_sent_copy(&self, id: AccountId, on: bool) -> Result<()>;
    async fn set_domain_relay(&self, id: DomainId, relay_to: Option<&str>, verify: bool) -> Result<()>;
    async fn add_relay_recipients(&self, domain: DomainId, locals: &[String]) -> Result<usize>;
    async fn remove_relay_recipient(&self, domain: DomainId, local: &str) -> Result<bool>;
    async fn add_alias_targets(
        &self,
        domain: DomainId,
        local: &str,
        display: &str,
        targets: &[String],
    ) -> Result<AliasRow>;
    /// `import virtual`: all of it in one transaction, or none.
    async fn import_aliases(&self, domains: &[(String, String)], aliases: &[ImportedAlias]) -> Result<()>;
    async fn remove_alias(&self, domain: DomainId, local: &str) -> Result<()>;
    async fn add_dkim_key(
        &self,
        domain: DomainId,
        selector: &str,
        algorithm: &str,
        private_key: &[u8],
        public_key: &str,
    ) -> Result<()>;
    /// Messages stored for an account, all folders.
    async fn message_count(&self, account: AccountId) -> Result<i64>;

    /// The directory's version (see [`DirectoryVersion`]): read before a
    /// check, passed to the conditional write after it.
    async fn directory_version(&self) -> Result<DirectoryVersion>;
    /// `add_alias_targets` if the directory is still at `expected`, in the
    /// same transaction; [`crate::StoreError::Conflict`] otherwise.
    async fn add_alias_targets_if(
        &self,
        domain: DomainId,
        local: &str,
        display: &str,
        targets: &[String],
        expected: DirectoryVersion,
    ) -> Result<AliasRow>;
    /// `set_forwarding` if the directory is still at `expected`.
    async fn set_forwarding_if(
        &self,
        id: AccountId,
        targets: &[String],
        keep: bool,
        expected: DirectoryVersion,
    ) -> Result<()>;
    /// Removes members of an alias (ASCII case aside); one left with none
    /// is removed (None).
    async fn remove_alias_targets(
        &self,
        domain: DomainId,
        local: &str,
        members: &[String],
    ) -> Result<Option<AliasRow>>;
    /// `user remove`: disables the mailbox at once; its mail is deleted
    /// after `delete_after` (unix seconds).
    async fn schedule_account_removal(&self, id: AccountId, delete_after: i64) -> Result<()>;
    async fn accounts_due_for_removal(&self, now: i64) -> Result<Vec<AccountRow>>;
    /// Deletes a mailbox, its folders and messages; returns the bodies no
    /// row refers to any more.
    async fn remove_account(&self, id: AccountId) -> Result<Vec<String>>;
    /// A new address for a mailbox, keeping its folders (UIDVALIDITY) and
    /// UIDs; refused when the address is a mailbox or alias already.
    async fn rename_account(&self, id: AccountId, domain: DomainId, local: &str, display: &str)
        -> Result<()>;
    /// Removes a domain with its aliases, gateway recipients and DKIM keys;
    /// refused while it has mailboxes or alias domains.
    async fn remove_domain(&self, id: DomainId) -> Result<()>;
    async fn record_audit(&self, entry: &AuditEntry) -> Result<()>;
    /// Audit rows, newest first.
    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditRow>>;
}

/// What IMAP and POP3 need of a mailbox.
#[async_trait]
pub trait MailboxMeta: Send + Sync {
    async fn folders(&self, account: AccountId) -> Result<Vec<FolderRow>>;
    async fn folder_by_id(&self, id: FolderId) -> Result<Option<FolderRow>>;
    /// By name; INBOX compares case-insensitively (RFC 3501 5.1).
    async fn find_folder(&self, account: AccountId, name: &str) -> Result<Option<FolderRow>>;
    async fn create_folder(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<&str>,
    ) -> Result<FolderRow>;
    /// Renames a folder and its children (`a` and `a/...`).
    async fn rename_folder(&self, account: AccountId, from: &str, to: &str) -> Result<()>;
    /// Deletes a folder and its messages; returns the bodies no row refers
    /// to any more.
    async fn delete_folder(&self, folder: FolderId) -> Result<Vec<String>>;
    async fn set_subscribed(&self, account: AccountId, name: &str, subscribed: bool) -> Result<bool>;
    /// (name, special use, subscribed) of every folder, by name.
    async fn folder_list(&self, account: AccountId) -> Result<Vec<(String, Option<String>, bool)>>;
    /// Bytes stored for an account: what quotas count (a running total).
    async fn usage(&self, account: AccountId) -> Result<i64>;

    async fn messages(&self, folder: FolderId) -> Result<Vec<MessageRow>>;
    async fn message(&self, folder: FolderId, uid: Uid) -> Result<Option<MessageRow>>;
    /// (uid, size, POP3 UIDL) of every message, by UID.
    async fn maildrop(&self, folder: FolderId) -> Result<Vec<(Uid, i64, String)>>;
    /// Every message's IMAP state, by UID.
    async fn message_meta(&self, folder: FolderId) -> Result<Vec<MessageMeta>>;
    /// The whole message list with UIDNEXT and HIGHESTMODSEQ, read at one
    /// moment so they agree.
    async fn folder_state(&self, folder: FolderId) -> Result<Option<FolderSnapshot>>;
    /// What changed since a MODSEQ, read at one moment.
    async fn folder_changes(&self, folder: FolderId, since: ModSeq) -> Result<Option<FolderChanges>>;
    /// (HIGHESTMODSEQ, UIDNEXT) of a folder.
    async fn folder_position(&self, folder: FolderId) -> Result<Option<(ModSeq, i64)>>;
    /// Messages expunged after `since` (QRESYNC VANISHED).
    async fn expunged_since(&self, folder: FolderId, since: ModSeq) -> Result<Vec<Uid>>;
    /// (uid, blob id, prefix) of these messages (`uids` ascending).
    async fn message_sources(&self, folder: FolderId, uids: &[Uid]) -> Result<Vec<(Uid, String, Vec<u8>)>>;

    /// Changes flags; returns the messages changed with their new state,
    /// and (CONDSTORE `UNCHANGEDSINCE`) those left alone because they
    /// changed after it.
    async fn store_flags(
        &self,
        folder: FolderId,
        uids: &[Uid],
        op: FlagOp,
        flags: i64,
        keywords: &[String],
        unchanged_since: Option<ModSeq>,
    ) -> Result<(Vec<MessageMeta>, Vec<Uid>)>;
    /// Copies messages (sharing bodies) through the delivery commit;
    /// returns the target's UIDVALIDITY and (source, new) UID pairs
    /// (UIDPLUS) once committed.
    async fn copy_messages(
        &self,
        from: FolderId,
        uids: &[Uid],
        to: FolderId,
    ) -> Result<(i64, Vec<(Uid, Uid)>)>;
    /// Removes messages, leaving tombstones with a new MODSEQ; returns how
    /// many were removed and the bodies no row refers to any more.
    async fn expunge(&self, folder: FolderId, uids: &[Uid]) -> Result<(usize, Vec<String>)>;
    /// Marks everything below UIDNEXT as seen by a session; returns the
    /// previous mark (UIDs above it are \Recent for the caller alone).
    async fn claim_recent(&self, folder: FolderId) -> Result<i64>;
    /// The mark [`MailboxMeta::claim_recent`] last left, without moving it
    /// (STATUS RECENT).
    async fn recent_mark(&self, folder: FolderId) -> Result<i64>;
    /// Refuses keywords that would take a folder past its limit.
    async fn check_keywords(&self, folder: FolderId, keywords: &str) -> Result<()>;
    /// The UID of a copy saved to a Sent folder recently with this
    /// Message-ID (so a client's own APPEND of it is not stored twice).
    async fn recent_sent_copy(&self, folder: FolderId, message_id: &str) -> Result<Option<Uid>>;
    /// Inserts an APPENDed message through the delivery commit, which
    /// fsyncs the blob directory first (the body's content is durable
    /// already); returns its UID once committed.
    async fn insert_appended(&self, append: Appended<'_>) -> Result<Uid>;
}

/// One APPEND, its body put in the blob store.
#[derive(Debug, Clone, Copy)]
pub struct Appended<'a> {
    pub folder: FolderId,
    pub blob_id: &'a str,
    pub size: i64,
    pub flags: i64,
    pub keywords: &'a str,
    /// Unix seconds.
    pub internal_date: i64,
}

/// What the outbound queue needs.
#[async_trait]
pub trait QueueMeta: Send + Sync {
    /// Every row, oldest first.
    async fn outbound(&self) -> Result<Vec<OutboundRow>>;
    /// Rows per state and hold reason, with the oldest's age
    /// (`postroom status`), counted by the database.
    async fn queue_summary(&self) -> Result<Vec<crate::queue::QueueCount>>;
    /// Held rows created in `[since, until)`, oldest first (the daily
    /// report of held mail).
    async fn held_between(&self, since: i64, until: i64) -> Result<Vec<OutboundRow>>;
    async fn due_outbound(&self, now: i64, limit: usize) -> Result<Vec<OutboundRow>>;
    async fn next_outbound_attempt(&self) -> Result<Option<i64>>;
    async fn mark_outbound_warned(&self, ids: &[OutboundId]) -> Result<()>;
    async fn defer_outbound(&self, id: OutboundId, reason: &str, next_attempt: i64) -> Result<()>;
    /// Holds every waiting item of a sender; returns how many.
    async fn hold_sender(&self, sender: &str, reason: &str) -> Result<usize>;
    /// `held` / `queued` (release) / `deferred` with now (retry).
    async fn set_outbound_state(&self, queue_id_or_row: &str, state: &str, now: i64) -> Result<usize>;
    /// Removes finished rows; returns the bodies no row refers to any more.
    async fn finish_outbound(&self, ids: &[OutboundId]) -> Result<Vec<String>>;
}

/// The delivery commit, shared by concurrent deliveries (group commit),
/// and the server-wide settings kept with the data.
#[async_trait]
pub trait DeliveryMeta: Send + Sync {
    /// Commits a delivery whose body is durable; returns after the commit
    /// is on disk.
    async fn commit_delivery(&self, delivery: Delivery) -> Result<()>;
    async fn setting(&self, key: &str) -> Result<Option<String>>;
    async fn set_setting(&self, key: &str, value: &str) -> Result<()>;
    /// The value of `key`; `init` is stored and returned the first time.
    async fn setting_or_init(&self, key: &str, init: String) -> Result<String>;
    /// Of these body ids, the ones no message and no queue row refers to.
    async fn unreferenced_blobs(&self, ids: Vec<String>) -> Result<Vec<String>>;
}

/// Change notifications: IMAP IDLE and the queue wait on these.
#[async_trait]
pub trait Watch: Send + Sync {
    /// Wakes after each commit that changed the folder.
    fn watch_folder(&self, folder: FolderId) -> tokio::sync::watch::Receiver<()>;
    /// Sees a new value after each commit made through this handle.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Looks for changes other processes (or nodes) made to watched
    /// folders and wakes their waiters; returns how many folders moved.
    /// The server calls it once a second.
    async fn look_for_foreign_changes(&self) -> Result<usize>;
}

/// What the web console and `postroom admin` need: the provider's
/// administrators. Addresses are canonical (`Address::to_string`).
#[async_trait]
pub trait ConsoleMeta: Send + Sync {
    /// Refused with `StoreError::Invalid("... exists already")` when the
    /// address is one already.
    async fn add_provider_admin(&self, address: &str, display: &str, hash: &str) -> Result<ProviderAdminRow>;
    async fn provider_admin(&self, address: &str) -> Result<Option<ProviderAdminRow>>;
    async fn provider_admins(&self) -> Result<Vec<ProviderAdminRow>>;
    /// False when there is no such admin.
    async fn set_provider_admin_password(&self, address: &str, hash: &str) -> Result<bool>;
    /// False when there is no such admin.
    async fn remove_provider_admin(&self, address: &str) -> Result<bool>;
    async fn add_api_token(&self, token: &NewApiToken) -> Result<ApiTokenRow>;
    /// The token with this digest (expired ones too: the caller decides).
    async fn api_token(&self, digest: &str) -> Result<Option<ApiTokenRow>>;
    /// Every token, or a login's, by id.
    async fn api_tokens(&self, login: Option<&str>) -> Result<Vec<ApiTokenRow>>;
    /// False when there is no such token.
    async fn remove_api_token(&self, id: i64) -> Result<bool>;
}

/// What the content filter keeps (`crate::filter`): per-domain settings,
/// whitelists, and each message's report. Domains and mailboxes are named
/// by their canonical names.
#[async_trait]
pub trait FilterMeta: Send + Sync {
    /// The domain's filter settings (JSON), if it has its own.
    async fn filter_domain_settings(&self, domain: &str) -> Result<Option<String>>;
    /// Sets them; `None` goes back to the server's.
    async fn set_filter_domain_settings(&self, domain: &str, settings: Option<&str>) -> Result<()>;
    /// False when the entry was there already.
    async fn whitelist_add(&self, scope: &str, sender: &str) -> Result<bool>;
    /// False when there was no such entry.
    async fn whitelist_remove(&self, scope: &str, sender: &str) -> Result<bool>;
    /// Every entry, or one scope's, by scope and sender.
    async fn whitelist(&self, scope: Option<&str>) -> Result<Vec<WhitelistRow>>;
    /// The entries naming any of these senders (an address and its
    /// domain), at most `filter::MAX_MATCHES` each: one look-up per
    /// message.
    async fn whitelist_matches(&self, senders: &[String]) -> Result<Vec<WhitelistRow>>;
    /// Stores reports (a batch, in one transaction); a queue id stored
    /// again is replaced.
    async fn put_filter_results(&self, rows: &[FilterResultRow]) -> Result<()>;
    /// The reports of a queue id or a Message-ID (without `<>`), oldest
    /// first, at most 100.
    async fn filter_results(&self, id: &str) -> Result<Vec<FilterResultRow>>;
    /// Deletes the reports from before `before` (unix seconds); how many.
    async fn expire_filter_results(&self, before: i64) -> Result<usize>;
}

/// What the content filter's statistical classifier keeps
/// (`postroom_filter::classifier`): token counts and totals. The server
/// holds the model in memory and reloads it when the generation moved
/// (another node's training); `postroom spam` and the training hooks
/// (IMAP moves to and from Junk, the report address) write batches.
#[async_trait]
pub trait ClassifierMeta: Send + Sync {
    async fn classifier_totals(&self) -> Result<TrainingTotals>;
    /// Every token with its counts, and the totals, read together.
    async fn classifier_model(&self) -> Result<TrainingModel>;
    /// Adds a batch in one transaction; returns the totals after it.
    async fn classifier_train(&self, batch: &TrainingBatch) -> Result<TrainingTotals>;
}

/// Customers (tenants) and the domains they own, and domain admins'
/// permission flags (`crate::customers`).
#[async_trait]
pub trait CustomerMeta: Send + Sync {
    /// Refused with `StoreError::Invalid("... exists already")` when the
    /// name is taken.
    async fn add_customer(&self, name: &str, caps: &CustomerCaps) -> Result<CustomerRow>;
    async fn customer(&self, name: &str) -> Result<Option<CustomerRow>>;
    /// Every customer, by name.
    async fn customers(&self) -> Result<Vec<CustomerRow>>;
    /// False when there is no such customer.
    async fn set_customer_caps(&self, id: i64, caps: &CustomerCaps) -> Result<bool>;
    /// Refused with `StoreError::Conflict` while it owns a domain; false
    /// when there is no such customer.
    async fn remove_customer(&self, id: i64) -> Result<bool>;
    /// Gives a domain to a customer, or (`None`) takes it from its owner.
    /// A removed domain leaves its customer by itself.
    async fn set_domain_customer(&self, domain: DomainId, customer: Option<i64>) -> Result<()>;
    async fn domain_customer(&self, domain: DomainId) -> Result<Option<CustomerRow>>;
    /// The domains a customer owns, by name.
    async fn customer_domains(&self, customer: i64) -> Result<Vec<DomainId>>;
    async fn customer_usage(&self, customer: i64) -> Result<CustomerUsage>;
    /// A domain admin's permission flags (a bit set the admin service
    /// defines); 0 when none were given.
    async fn admin_permissions(&self, account: AccountId) -> Result<i64>;
    async fn set_admin_permissions(&self, account: AccountId, permissions: i64) -> Result<()>;
    /// A provider admin's permission flags (canonical address); 0 when
    /// none were given. Gone with the admin.
    async fn provider_permissions(&self, address: &str) -> Result<i64>;
    /// False when there is no such provider admin.
    async fn set_provider_permissions(&self, address: &str, permissions: i64) -> Result<bool>;
}

/// A whole back end.
pub trait Metadata:
    DirectoryMeta
    + AdminMeta
    + MailboxMeta
    + QueueMeta
    + DeliveryMeta
    + Watch
    + ConsoleMeta
    + FilterMeta
    + ClassifierMeta
    + CustomerMeta
{
    /// A short name for logs and `status`: `sqlite` or `postgresql`.
    fn kind(&self) -> &'static str;
}
