//! The embedded back end: the storage traits on [`Db`] (SQLite in the data
//! folder). A call runs on the calling thread: SQLite answers a lookup in
//! microseconds, less than handing the work to another thread would cost
//! (each RCPT makes several). The calls that read or write a whole folder
//! (a 100,000-message SELECT, an EXPUNGE) run in `block_in_place`, so the
//! runtime's other tasks move to another worker meanwhile. New message
//! rows (deliveries, APPEND, COPY) go to the group committer's thread.

use std::sync::Arc;

use async_trait::async_trait;

use crate::admin::{AuditEntry, AuditQuery, AuditRow};
use crate::backend::{
    AdminMeta, Appended, ClassifierMeta, ConsoleMeta, CustomerMeta, DeliveryMeta, DirectoryMeta, FilterMeta,
    MailboxMeta, Metadata, QueueMeta, Watch,
};
use crate::cache::FolderSnapshot;
use crate::classifier::{TrainingBatch, TrainingModel, TrainingTotals};
use crate::committer::{Delivery, Work};
use crate::console::{ApiTokenRow, NewApiToken, ProviderAdminRow};
use crate::customers::{CustomerCaps, CustomerRow, CustomerUsage};
use crate::directory::{AccountRow, AliasRow, DomainRow, ImportedAlias};
use crate::dkim::DkimKeyRow;
use crate::filter::{FilterResultRow, WhitelistRow};
use crate::folders::{FlagOp, FolderChanges, MessageMeta};
use crate::ids::{AccountId, DirectoryVersion, DomainId, FolderId, ModSeq, OutboundId, Uid};
use crate::mailbox::{FolderRow, MessageRow};
use crate::queue::OutboundRow;
use crate::{BlobStore, Db, ForeignChanges, Result};

/// Runs `f`, which may take a while, without holding up the runtime's
/// other tasks (on a multi-threaded runtime; elsewhere it just runs).
fn bulk<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

pub(crate) struct Sqlite {
    db: Db,
    blobs: Arc<dyn BlobStore>,
    foreign: std::sync::Mutex<ForeignChanges>,
}

impl Sqlite {
    pub(crate) fn new(db: Db, blobs: Arc<dyn BlobStore>) -> Sqlite {
        Sqlite {
            db,
            blobs,
            foreign: Default::default(),
        }
    }
}

impl Metadata for Sqlite {
    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

#[async_trait]
impl DirectoryMeta for Sqlite {
    async fn domain(&self, name: &str) -> Result<Option<DomainRow>> {
        self.db.domain(name)
    }
    async fn domain_by_id(&self, id: DomainId) -> Result<Option<DomainRow>> {
        self.db.domain_by_id(id)
    }
    async fn domains(&self) -> Result<Vec<DomainRow>> {
        self.db.domains()
    }
    async fn account(&self, domain: DomainId, local: &str) -> Result<Option<AccountRow>> {
        self.db.account(domain, local)
    }
    async fn account_by_id(&self, id: AccountId) -> Result<Option<AccountRow>> {
        self.db.account_by_id(id)
    }
    async fn accounts(&self, domain: Option<DomainId>) -> Result<Vec<AccountRow>> {
        self.db.accounts(domain)
    }
    async fn alias(&self, domain: DomainId, local: &str) -> Result<Option<AliasRow>> {
        self.db.alias(domain, local)
    }
    async fn aliases(&self, domain: Option<DomainId>) -> Result<Vec<AliasRow>> {
        self.db.aliases(domain)
    }
    async fn relay_host(&self, domain: &str) -> Result<Option<String>> {
        self.db.relay_host(domain)
    }
    async fn is_relay_recipient(&self, domain: DomainId, local: &str) -> Result<bool> {
        self.db.is_relay_recipient(domain, local)
    }
    async fn relay_recipients(&self, domain: DomainId) -> Result<Vec<String>> {
        self.db.relay_recipients(domain)
    }
    async fn cached_callout(&self, address: &str, max_age: i64) -> Result<Option<(bool, String)>> {
        self.db.cached_callout(address, max_age)
    }
    async fn remember_callout(&self, address: &str, accepted: bool, reply: &str) -> Result<()> {
        self.db.remember_callout(address, accepted, reply)
    }
    async fn set_password_hash(&self, id: AccountId, hash: &str) -> Result<()> {
        self.db.set_password_hash(id, hash)
    }
    async fn dkim_keys(&self, domain: DomainId) -> Result<Vec<DkimKeyRow>> {
        self.db.dkim_keys(domain)
    }
    async fn record_login(&self, id: AccountId, at: i64) -> Result<()> {
        self.db.record_login(id, at)
    }
}

#[async_trait]
impl AdminMeta for Sqlite {
    async fn add_domain(&self, name: &str, display: &str, alias_of: Option<&str>) -> Result<DomainRow> {
        self.db.add_domain(name, display, alias_of)
    }
    async fn update_domain(
        &self,
        id: DomainId,
        separator: Option<&str>,
        default_quota: Option<Option<i64>>,
    ) -> Result<()> {
        self.db.update_domain(id, separator, default_quota)
    }
    async fn add_account(
        &self,
        domain: DomainId,
        local: &str,
        display: &str,
        password_hash: Option<&str>,
        quota: Option<i64>,
    ) -> Result<AccountRow> {
        self.db.add_account(domain, local, display, password_hash, quota)
    }
    async fn set_enabled(&self, id: AccountId, enabled: bool) -> Result<()> {
        self.db.set_enabled(id, enabled)
    }
    async fn set_domain_admin(&self, id: AccountId, admin: bool) -> Result<()> {
        self.db.set_domain_admin(id, admin)
    }
    async fn set_quota(&self, id: AccountId, quota: Option<i64>) -> Result<()> {
        self.db.set_quota(id, quota)
    }
    async fn set_forwarding(&self, id: AccountId, targets: &[String], keep: bool) -> Result<()> {
        self.db.set_forwarding(id, targets, keep)
    }
    async fn set_sent_copy(&self, id: AccountId, on: bool) -> Result<()> {
        self.db.set_sent_copy(id, on)
    }
    async fn set_domain_relay(&self, id: DomainId, relay_to: Option<&str>, verify: bool) -> Result<()> {
        self.db.set_domain_relay(id, relay_to, verify)
    }
    async fn add_relay_recipients(&self, domain: DomainId, locals: &[String]) -> Result<usize> {
        self.db.add_relay_recipients(domain, locals)
    }
    async fn remove_relay_recipient(&self, domain: DomainId, local: &str) -> Result<bool> {
        self.db.remove_relay_recipient(domain, local)
    }
    async fn add_alias_targets(
        &self,
        domain: DomainId,
        local: &str,
        display: &str,
        targets: &[String],
    ) -> Result<AliasRow> {
        self.db.add_alias_targets(domain, local, display, targets)
    }
    async fn import_aliases(&self, domains: &[(String, String)], aliases: &[ImportedAlias]) -> Result<()> {
        bulk(|| self.db.import_aliases(domains, aliases))
    }
    async fn remove_alias(&self, domain: DomainId, local: &str) -> Result<()> {
        self.db.remove_alias(domain, local)
    }
    async fn add_dkim_key(
        &self,
        domain: DomainId,
        selector: &str,
        algorithm: &str,
        private_key: &[u8],
        public_key: &str,
    ) -> Result<()> {
        self.db
            .add_dkim_key(domain, selector, algorithm, private_key, public_key)
    }
    async fn message_count(&self, account: AccountId) -> Result<i64> {
        self.db.message_count(account)
    }
    async fn directory_version(&self) -> Result<DirectoryVersion> {
        self.db.directory_version()
    }
    async fn add_alias_targets_if(
        &self,
        domain: DomainId,
        local: &str,
        display: &str,
        targets: &[String],
        expected: DirectoryVersion,
    ) -> Result<AliasRow> {
        self.db
            .add_alias_targets_if(domain, local, display, targets, expected)
    }
    async fn set_forwarding_if(
        &self,
        id: AccountId,
        targets: &[String],
        keep: bool,
        expected: DirectoryVersion,
    ) -> Result<()> {
        self.db.set_forwarding_if(id, targets, keep, expected)
    }
    async fn remove_alias_targets(
        &self,
        domain: DomainId,
        local: &str,
        members: &[String],
    ) -> Result<Option<AliasRow>> {
        self.db.remove_alias_targets(domain, local, members)
    }
    async fn schedule_account_removal(&self, id: AccountId, delete_after: i64) -> Result<()> {
        self.db.schedule_account_removal(id, delete_after)
    }
    async fn accounts_due_for_removal(&self, now: i64) -> Result<Vec<AccountRow>> {
        self.db.accounts_due_for_removal(now)
    }
    async fn remove_account(&self, id: AccountId) -> Result<Vec<String>> {
        bulk(|| self.db.remove_account(id))
    }
    async fn rename_account(
        &self,
        id: AccountId,
        domain: DomainId,
        local: &str,
        display: &str,
    ) -> Result<()> {
        self.db.rename_account(id, domain, local, display)
    }
    async fn remove_domain(&self, id: DomainId) -> Result<()> {
        self.db.remove_domain(id)
    }
    async fn record_audit(&self, entry: &AuditEntry) -> Result<()> {
        self.db.record_audit(entry)
    }
    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        self.db.audit_log(query)
    }
}

#[async_trait]
impl MailboxMeta for Sqlite {
    async fn folders(&self, account: AccountId) -> Result<Vec<FolderRow>> {
        self.db.folders(account)
    }
    async fn folder_by_id(&self, id: FolderId) -> Result<Option<FolderRow>> {
        self.db.folder_by_id(id)
    }
    async fn find_folder(&self, account: AccountId, name: &str) -> Result<Option<FolderRow>> {
        self.db.find_folder(account, name)
    }
    async fn create_folder(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<&str>,
    ) -> Result<FolderRow> {
        self.db.create_folder(account, name, special_use)
    }
    async fn rename_folder(&self, account: AccountId, from: &str, to: &str) -> Result<()> {
        self.db.rename_folder(account, from, to)
    }
    async fn delete_folder(&self, folder: FolderId) -> Result<Vec<String>> {
        bulk(|| self.db.delete_folder(folder))
    }
    async fn set_subscribed(&self, account: AccountId, name: &str, subscribed: bool) -> Result<bool> {
        self.db.set_subscribed(account, name, subscribed)
    }
    async fn folder_list(&self, account: AccountId) -> Result<Vec<(String, Option<String>, bool)>> {
        self.db.folder_list(account)
    }
    async fn usage(&self, account: AccountId) -> Result<i64> {
        self.db.usage(account)
    }
    async fn messages(&self, folder: FolderId) -> Result<Vec<MessageRow>> {
        bulk(|| self.db.messages(folder))
    }
    async fn message(&self, folder: FolderId, uid: Uid) -> Result<Option<MessageRow>> {
        self.db.message(folder, uid)
    }
    async fn maildrop(&self, folder: FolderId) -> Result<Vec<(Uid, i64, String)>> {
        bulk(|| self.db.maildrop(folder))
    }
    async fn message_meta(&self, folder: FolderId) -> Result<Vec<MessageMeta>> {
        bulk(|| self.db.message_meta(folder))
    }
    async fn folder_state(&self, folder: FolderId) -> Result<Option<FolderSnapshot>> {
        bulk(|| self.db.folder_state(folder))
    }
    async fn folder_changes(&self, folder: FolderId, since: ModSeq) -> Result<Option<FolderChanges>> {
        bulk(|| self.db.folder_changes(folder, since))
    }
    async fn folder_position(&self, folder: FolderId) -> Result<Option<(ModSeq, i64)>> {
        self.db.folder_position(folder)
    }
    async fn expunged_since(&self, folder: FolderId, since: ModSeq) -> Result<Vec<Uid>> {
        self.db.expunged_since(folder, since)
    }
    async fn message_sources(&self, folder: FolderId, uids: &[Uid]) -> Result<Vec<(Uid, String, Vec<u8>)>> {
        bulk(|| self.db.message_sources(folder, uids))
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
        bulk(|| {
            self.db
                .store_flags(folder, uids, op, flags, keywords, unchanged_since)
        })
    }
    async fn copy_messages(
        &self,
        from: FolderId,
        uids: &[Uid],
        to: FolderId,
    ) -> Result<(i64, Vec<(Uid, Uid)>)> {
        self.db
            .commit(
                Work::Copy {
                    from,
                    uids: uids.to_vec(),
                    to,
                },
                &self.blobs,
            )
            .await?
            .copied()
    }
    async fn expunge(&self, folder: FolderId, uids: &[Uid]) -> Result<(usize, Vec<String>)> {
        bulk(|| self.db.expunge(folder, uids))
    }
    async fn claim_recent(&self, folder: FolderId) -> Result<i64> {
        self.db.claim_recent(folder)
    }
    async fn recent_mark(&self, folder: FolderId) -> Result<i64> {
        self.db.recent_mark(folder)
    }
    async fn check_keywords(&self, folder: FolderId, keywords: &str) -> Result<()> {
        self.db.check_keywords(folder, keywords)
    }
    async fn recent_sent_copy(&self, folder: FolderId, message_id: &str) -> Result<Option<Uid>> {
        self.db.recent_sent_copy(folder, message_id)
    }
    async fn insert_appended(&self, append: Appended<'_>) -> Result<Uid> {
        self.db
            .commit(Work::Append(append.into()), &self.blobs)
            .await?
            .appended()
    }
}

#[async_trait]
impl QueueMeta for Sqlite {
    async fn outbound(&self) -> Result<Vec<OutboundRow>> {
        self.db.outbound()
    }
    async fn queue_summary(&self) -> Result<Vec<crate::queue::QueueCount>> {
        self.db.queue_summary()
    }
    async fn held_between(&self, since: i64, until: i64) -> Result<Vec<OutboundRow>> {
        self.db.held_between(since, until)
    }
    async fn due_outbound(&self, now: i64, limit: usize) -> Result<Vec<OutboundRow>> {
        self.db.due_outbound(now, limit)
    }
    async fn next_outbound_attempt(&self) -> Result<Option<i64>> {
        self.db.next_outbound_attempt()
    }
    async fn mark_outbound_warned(&self, ids: &[OutboundId]) -> Result<()> {
        self.db.mark_outbound_warned(ids)
    }
    async fn defer_outbound(&self, id: OutboundId, reason: &str, next_attempt: i64) -> Result<()> {
        self.db.defer_outbound(id, reason, next_attempt)
    }
    async fn hold_sender(&self, sender: &str, reason: &str) -> Result<usize> {
        self.db.hold_sender(sender, reason)
    }
    async fn set_outbound_state(&self, queue_id_or_row: &str, state: &str, now: i64) -> Result<usize> {
        self.db.set_outbound_state(queue_id_or_row, state, now)
    }
    async fn finish_outbound(&self, ids: &[OutboundId]) -> Result<Vec<String>> {
        self.db.finish_outbound(ids)
    }
}

#[async_trait]
impl DeliveryMeta for Sqlite {
    async fn commit_delivery(&self, delivery: Delivery) -> Result<()> {
        self.db.commit_delivery(delivery, &self.blobs).await
    }
    async fn setting(&self, key: &str) -> Result<Option<String>> {
        self.db.setting(key)
    }
    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.db.set_setting(key, value)
    }
    async fn setting_or_init(&self, key: &str, init: String) -> Result<String> {
        self.db.setting_or_init(key, || init)
    }
    async fn unreferenced_blobs(&self, ids: Vec<String>) -> Result<Vec<String>> {
        bulk(|| self.db.read(|c| Ok(crate::blob::unreferenced(c, ids)?)))
    }
}

#[async_trait]
impl Watch for Sqlite {
    fn watch_folder(&self, folder: FolderId) -> tokio::sync::watch::Receiver<()> {
        self.db.watch_folder(folder)
    }
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.db.changes()
    }
    async fn look_for_foreign_changes(&self) -> Result<usize> {
        let mut state = self.foreign.lock().unwrap_or_else(|e| e.into_inner());
        self.db.look_for_foreign_changes(&mut state)
    }
}

#[async_trait]
impl ConsoleMeta for Sqlite {
    async fn add_provider_admin(&self, address: &str, display: &str, hash: &str) -> Result<ProviderAdminRow> {
        self.db.add_provider_admin(address, display, hash)
    }
    async fn provider_admin(&self, address: &str) -> Result<Option<ProviderAdminRow>> {
        self.db.provider_admin(address)
    }
    async fn provider_admins(&self) -> Result<Vec<ProviderAdminRow>> {
        self.db.provider_admins()
    }
    async fn set_provider_admin_password(&self, address: &str, hash: &str) -> Result<bool> {
        self.db.set_provider_admin_password(address, hash)
    }
    async fn remove_provider_admin(&self, address: &str) -> Result<bool> {
        self.db.remove_provider_admin(address)
    }
    async fn add_api_token(&self, token: &NewApiToken) -> Result<ApiTokenRow> {
        self.db.add_api_token(token)
    }
    async fn api_token(&self, digest: &str) -> Result<Option<ApiTokenRow>> {
        self.db.api_token(digest)
    }
    async fn api_tokens(&self, login: Option<&str>) -> Result<Vec<ApiTokenRow>> {
        self.db.api_tokens(login)
    }
    async fn remove_api_token(&self, id: i64) -> Result<bool> {
        self.db.remove_api_token(id)
    }
}

#[async_trait]
impl ClassifierMeta for Sqlite {
    async fn classifier_totals(&self) -> Result<TrainingTotals> {
        self.db.classifier_totals()
    }
    async fn classifier_model(&self) -> Result<TrainingModel> {
        bulk(|| self.db.classifier_model())
    }
    async fn classifier_train(&self, batch: &TrainingBatch) -> Result<TrainingTotals> {
        bulk(|| self.db.classifier_train(batch))
    }
}

#[async_trait]
impl FilterMeta for Sqlite {
    async fn filter_domain_settings(&self, domain: &str) -> Result<Option<String>> {
        self.db.filter_domain_settings(domain)
    }
    async fn set_filter_domain_settings(&self, domain: &str, settings: Option<&str>) -> Result<()> {
        self.db.set_filter_domain_settings(domain, settings)
    }
    async fn whitelist_add(&self, scope: &str, sender: &str) -> Result<bool> {
        self.db.whitelist_add(scope, sender)
    }
    async fn whitelist_remove(&self, scope: &str, sender: &str) -> Result<bool> {
        self.db.whitelist_remove(scope, sender)
    }
    async fn whitelist(&self, scope: Option<&str>) -> Result<Vec<WhitelistRow>> {
        self.db.whitelist(scope)
    }
    async fn whitelist_matches(&self, senders: &[String]) -> Result<Vec<WhitelistRow>> {
        self.db.whitelist_matches(senders)
    }
    async fn put_filter_results(&self, rows: &[FilterResultRow]) -> Result<()> {
        self.db.put_filter_results(rows)
    }
    async fn filter_results(&self, id: &str) -> Result<Vec<FilterResultRow>> {
        self.db.filter_results(id)
    }
    async fn expire_filter_results(&self, before: i64) -> Result<usize> {
        self.db.expire_filter_results(before)
    }
}

#[async_trait]
impl CustomerMeta for Sqlite {
    async fn add_customer(&self, name: &str, caps: &CustomerCaps) -> Result<CustomerRow> {
        self.db.add_customer(name, caps)
    }
    async fn customer(&self, name: &str) -> Result<Option<CustomerRow>> {
        self.db.customer(name)
    }
    async fn customers(&self) -> Result<Vec<CustomerRow>> {
        self.db.customers()
    }
    async fn set_customer_caps(&self, id: i64, caps: &CustomerCaps) -> Result<bool> {
        self.db.set_customer_caps(id, caps)
    }
    async fn remove_customer(&self, id: i64) -> Result<bool> {
        self.db.remove_customer(id)
    }
    async fn set_domain_customer(&self, domain: DomainId, customer: Option<i64>) -> Result<()> {
        self.db.set_domain_customer(domain, customer)
    }
    async fn domain_customer(&self, domain: DomainId) -> Result<Option<CustomerRow>> {
        self.db.domain_customer(domain)
    }
    async fn customer_domains(&self, customer: i64) -> Result<Vec<DomainId>> {
        self.db.customer_domains(customer)
    }
    async fn customer_usage(&self, customer: i64) -> Result<CustomerUsage> {
        self.db.customer_usage(customer)
    }
    async fn admin_permissions(&self, account: AccountId) -> Result<i64> {
        self.db.admin_permissions(account)
    }
    async fn set_admin_permissions(&self, account: AccountId, permissions: i64) -> Result<()> {
        self.db.set_admin_permissions(account, permissions)
    }
    async fn provider_permissions(&self, address: &str) -> Result<i64> {
        self.db.provider_permissions(address)
    }
    async fn set_provider_permissions(&self, address: &str, permissions: i64) -> Result<bool> {
        self.db.set_provider_permissions(address, permissions)
    }
}
