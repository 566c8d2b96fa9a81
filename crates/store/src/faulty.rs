//! A back end that fails on demand, for tests: it wraps a real one and,
//! while its switch is on, answers every call with an I/O error, as a
//! database that went away would. The protocols' answers to a storage
//! failure (`451 4.3.0`, `NO [UNAVAILABLE]`, `-ERR [SYS/TEMP]`) are tested
//! with it, as [`crate::SimulatedFs`] tests the blob store's durability.
//! It also counts the calls made through it: on PostgreSQL each is a round
//! trip, so tests hold the hot paths (RCPT) to their number of calls.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use crate::admin::{AuditEntry, AuditQuery, AuditRow};
use crate::backend::{
    AdminMeta, Appended, ClassifierMeta, ConsoleMeta, CustomerMeta, DeliveryMeta, DirectoryMeta, FilterMeta,
    MailboxMeta, Metadata, QueueMeta, Watch,
};
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
use crate::{Result, StoreError};

/// Turns the faults of a [`FaultyMeta`] on and off.
#[derive(Clone, Default)]
pub struct FaultSwitch(Arc<AtomicBool>, Arc<AtomicU64>);

impl FaultSwitch {
    /// From now on every call fails (`true`) or passes through (`false`).
    pub fn set(&self, failing: bool) {
        self.0.store(failing, Ordering::SeqCst);
    }

    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Calls made through the back end so far (failed ones included).
    pub fn calls(&self) -> u64 {
        self.1.load(Ordering::SeqCst)
    }
}

pub struct FaultyMeta {
    inner: Arc<dyn Metadata>,
    switch: FaultSwitch,
}

impl FaultyMeta {
    pub fn new(inner: Arc<dyn Metadata>) -> (FaultyMeta, FaultSwitch) {
        let switch = FaultSwitch::default();
        (
            FaultyMeta {
                inner,
                switch: switch.clone(),
            },
            switch,
        )
    }

    fn check(&self) -> Result<()> {
        self.switch.1.fetch_add(1, Ordering::SeqCst);
        if self.switch.is_on() {
            return Err(StoreError::Io(std::io::Error::other("injected storage fault")));
        }
        Ok(())
    }
}

impl Metadata for FaultyMeta {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

#[async_trait]
impl DirectoryMeta for FaultyMeta {
    async fn domain(&self, name: &str) -> Result<Option<DomainRow>> {
        self.check()?;
        self.inner.domain(name).await
    }
    async fn domain_by_id(&self, id: DomainId) -> Result<Option<DomainRow>> {
        self.check()?;
        self.inner.domain_by_id(id).await
    }
    async fn domains(&self) -> Result<Vec<DomainRow>> {
        self.check()?;
        self.inner.domains().await
    }
    async fn account(&self, domain: DomainId, local: &str) -> Result<Option<AccountRow>> {
        self.check()?;
        self.inner.account(domain, local).await
    }
    async fn account_by_id(&self, id: AccountId) -> Result<Option<AccountRow>> {
        self.check()?;
        self.inner.account_by_id(id).await
    }
    async fn accounts(&self, domain: Option<DomainId>) -> Result<Vec<AccountRow>> {
        self.check()?;
        self.inner.accounts(domain).await
    }
    async fn alias(&self, domain: DomainId, local: &str) -> Result<Option<AliasRow>> {
        self.check()?;
        self.inner.alias(domain, local).await
    }
    async fn aliases(&self, domain: Option<DomainId>) -> Result<Vec<AliasRow>> {
        self.check()?;
        self.inner.aliases(domain).await
    }
    async fn relay_host(&self, domain: &str) -> Result<Option<String>> {
        self.check()?;
        self.inner.relay_host(domain).await
    }
    async fn is_relay_recipient(&self, domain: DomainId, local: &str) -> Result<bool> {
        self.check()?;
        self.inner.is_relay_recipient(domain, local).await
    }
    async fn relay_recipients(&self, domain: DomainId) -> Result<Vec<String>> {
        self.check()?;
        self.inner.relay_recipients(domain).await
    }
    async fn cached_callout(&self, address: &str, max_age: i64) -> Result<Option<(bool, String)>> {
        self.check()?;
        self.inner.cached_callout(address, max_age).await
    }
    async fn remember_callout(&self, address: &str, accepted: bool, reply: &str) -> Result<()> {
        self.check()?;
        self.inner.remember_callout(address, accepted, reply).await
    }
    async fn set_password_hash(&self, id: AccountId, hash: &str) -> Result<()> {
        self.check()?;
        self.inner.set_password_hash(id, hash).await
    }
    async fn dkim_keys(&self, domain: DomainId) -> Result<Vec<DkimKeyRow>> {
        self.check()?;
        self.inner.dkim_keys(domain).await
    }
    async fn record_login(&self, id: AccountId, at: i64) -> Result<()> {
        self.check()?;
        self.inner.record_login(id, at).await
    }
}

#[async_trait]
impl AdminMeta for FaultyMeta {
    async fn add_domain(&self, name: &str, display: &str, alias_of: Option<&str>) -> Result<DomainRow> {
        self.check()?;
        self.inner.add_domain(name, display, alias_of).await
    }
    async fn update_domain(
        &self,
        id: DomainId,
        separator: Option<&str>,
        default_quota: Option<Option<i64>>,
    ) -> Result<()> {
        self.check()?;
        self.inner.update_domain(id, separator, default_quota).await
    }
    async fn add_account(
        &self,
        domain: DomainId,
        local: &str,
        display: &str,
        password_hash: Option<&str>,
        quota: Option<i64>,
    ) -> Result<AccountRow> {
        self.check()?;
        self.inner
            .add_account(domain, local, display, password_hash, quota)
            .await
    }
    async fn set_enabled(&self, id: AccountId, enabled: bool) -> Result<()> {
        self.check()?;
        self.inner.set_enabled(id, enabled).await
    }
    async fn set_domain_admin(&self, id: AccountId, admin: bool) -> Result<()> {
        self.check()?;
        self.inner.set_domain_admin(id, admin).await
    }
    async fn set_quota(&self, id: AccountId, quota: Option<i64>) -> Result<()> {
        self.check()?;
        self.inner.set_quota(id, quota).await
    }
    async fn set_forwarding(&self, id: AccountId, targets: &[String], keep: bool) -> Result<()> {
        self.check()?;
        self.inner.set_forwarding(id, targets, keep).await
    }
    async fn set_sent_copy(&self, id: AccountId, on: bool) -> Result<()> {
        self.check()?;
        self.inner.set_sent_copy(id, on).await
    }
    async fn set_domain_relay(&self, id: DomainId, relay_to: Option<&str>, verify: bool) -> Result<()> {
        self.check()?;
        self.inner.set_domain_relay(id, relay_to, verify).await
    }
    async fn add_relay_recipients(&self, domain: DomainId, locals: &[String]) -> Result<usize> {
        self.check()?;
        self.inner.add_relay_recipients(domain, locals).await
    }
    async fn remove_relay_recipient(&self, domain: DomainId, local: &str) -> Result<bool> {
        self.check()?;
        self.inner.remove_relay_recipient(domain, local).await
    }
    async fn add_alias_targets(
        &self,
        domain: DomainId,
        local: &str,
        display: &str,
        targets: &[String],
    ) -> Result<AliasRow> {
        self.check()?;
        self.inner
            .add_alias_targets(domain, local, display, targets)
            .await
    }
    async fn import_aliases(&self, domains: &[(String, String)], aliases: &[ImportedAlias]) -> Result<()> {
        self.check()?;
        self.inner.import_aliases(domains, aliases).await
    }
    async fn remove_alias(&self, domain: DomainId, local: &str) -> Result<()> {
        self.check()?;
        self.inner.remove_alias(domain, local).await
    }
    async fn add_dkim_key(
        &self,
        domain: DomainId,
        selector: &str,
        algorithm: &str,
        private_key: &[u8],
        public_key: &str,
    ) -> Result<()> {
        self.check()?;
        self.inner
            .add_dkim_key(domain, selector, algorithm, private_key, public_key)
            .await
    }
    async fn message_count(&self, account: AccountId) -> Result<i64> {
        self.check()?;
        self.inner.message_count(account).await
    }
    async fn directory_version(&self) -> Result<DirectoryVersion> {
        self.check()?;
        self.inner.directory_version().await
    }
    async fn add_alias_targets_if(
        &self,
        domain: DomainId,
        local: &str,
        display: &str,
        targets: &[String],
        expected: DirectoryVersion,
    ) -> Result<AliasRow> {
        self.check()?;
        self.inner
            .add_alias_targets_if(domain, local, display, targets, expected)
            .await
    }
    async fn set_forwarding_if(
        &self,
        id: AccountId,
        targets: &[String],
        keep: bool,
        expected: DirectoryVersion,
    ) -> Result<()> {
        self.check()?;
        self.inner.set_forwarding_if(id, targets, keep, expected).await
    }
    async fn remove_alias_targets(
        &self,
        domain: DomainId,
        local: &str,
        members: &[String],
    ) -> Result<Option<AliasRow>> {
        self.check()?;
        self.inner.remove_alias_targets(domain, local, members).await
    }
    async fn schedule_account_removal(&self, id: AccountId, delete_after: i64) -> Result<()> {
        self.check()?;
        self.inner.schedule_account_removal(id, delete_after).await
    }
    async fn accounts_due_for_removal(&self, now: i64) -> Result<Vec<AccountRow>> {
        self.check()?;
        self.inner.accounts_due_for_removal(now).await
    }
    async fn remove_account(&self, id: AccountId) -> Result<Vec<String>> {
        self.check()?;
        self.inner.remove_account(id).await
    }
    async fn rename_account(
        &self,
        id: AccountId,
        domain: DomainId,
        local: &str,
        display: &str,
    ) -> Result<()> {
        self.check()?;
        self.inner.rename_account(id, domain, local, display).await
    }
    async fn remove_domain(&self, id: DomainId) -> Result<()> {
        self.check()?;
        self.inner.remove_domain(id).await
    }
    async fn record_audit(&self, entry: &AuditEntry) -> Result<()> {
        self.check()?;
        self.inner.record_audit(entry).await
    }
    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        self.check()?;
        self.inner.audit_log(query).await
    }
}

#[async_trait]
impl MailboxMeta for FaultyMeta {
    async fn folders(&self, account: AccountId) -> Result<Vec<FolderRow>> {
        self.check()?;
        self.inner.folders(account).await
    }
    async fn folder_by_id(&self, id: FolderId) -> Result<Option<FolderRow>> {
        self.check()?;
        self.inner.folder_by_id(id).await
    }
    async fn find_folder(&self, account: AccountId, name: &str) -> Result<Option<FolderRow>> {
        self.check()?;
        self.inner.find_folder(account, name).await
    }
    async fn create_folder(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<&str>,
    ) -> Result<FolderRow> {
        self.check()?;
        self.inner.create_folder(account, name, special_use).await
    }
    async fn rename_folder(&self, account: AccountId, from: &str, to: &str) -> Result<()> {
        self.check()?;
        self.inner.rename_folder(account, from, to).await
    }
    async fn delete_folder(&self, folder: FolderId) -> Result<Vec<String>> {
        self.check()?;
        self.inner.delete_folder(folder).await
    }
    async fn set_subscribed(&self, account: AccountId, name: &str, subscribed: bool) -> Result<bool> {
        self.check()?;
        self.inner.set_subscribed(account, name, subscribed).await
    }
    async fn folder_list(&self, account: AccountId) -> Result<Vec<(String, Option<String>, bool)>> {
        self.check()?;
        self.inner.folder_list(account).await
    }
    async fn usage(&self, account: AccountId) -> Result<i64> {
        self.check()?;
        self.inner.usage(account).await
    }
    async fn messages(&self, folder: FolderId) -> Result<Vec<MessageRow>> {
        self.check()?;
        self.inner.messages(folder).await
    }
    async fn message(&self, folder: FolderId, uid: Uid) -> Result<Option<MessageRow>> {
        self.check()?;
        self.inner.message(folder, uid).await
    }
    async fn maildrop(&self, folder: FolderId) -> Result<Vec<(Uid, i64, String)>> {
        self.check()?;
        self.inner.maildrop(folder).await
    }
    async fn message_meta(&self, folder: FolderId) -> Result<Vec<MessageMeta>> {
        self.check()?;
        self.inner.message_meta(folder).await
    }
    async fn folder_state(&self, folder: FolderId) -> Result<Option<FolderSnapshot>> {
        self.check()?;
        self.inner.folder_state(folder).await
    }
    async fn folder_changes(&self, folder: FolderId, since: ModSeq) -> Result<Option<FolderChanges>> {
        self.check()?;
        self.inner.folder_changes(folder, since).await
    }
    async fn folder_position(&self, folder: FolderId) -> Result<Option<(ModSeq, i64)>> {
        self.check()?;
        self.inner.folder_position(folder).await
    }
    async fn expunged_since(&self, folder: FolderId, since: ModSeq) -> Result<Vec<Uid>> {
        self.check()?;
        self.inner.expunged_since(folder, since).await
    }
    async fn message_sources(&self, folder: FolderId, uids: &[Uid]) -> Result<Vec<(Uid, String, Vec<u8>)>> {
        self.check()?;
        self.inner.message_sources(folder, uids).await
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
        self.check()?;
        self.inner
            .store_flags(folder, uids, op, flags, keywords, unchanged_since)
            .await
    }
    async fn copy_messages(
        &self,
        from: FolderId,
        uids: &[Uid],
        to: FolderId,
    ) -> Result<(i64, Vec<(Uid, Uid)>)> {
        self.check()?;
        self.inner.copy_messages(from, uids, to).await
    }
    async fn expunge(&self, folder: FolderId, uids: &[Uid]) -> Result<(usize, Vec<String>)> {
        self.check()?;
        self.inner.expunge(folder, uids).await
    }
    async fn claim_recent(&self, folder: FolderId) -> Result<i64> {
        self.check()?;
        self.inner.claim_recent(folder).await
    }
    async fn recent_mark(&self, folder: FolderId) -> Result<i64> {
        self.check()?;
        self.inner.recent_mark(folder).await
    }
    async fn check_keywords(&self, folder: FolderId, keywords: &str) -> Result<()> {
        self.check()?;
        self.inner.check_keywords(folder, keywords).await
    }
    async fn recent_sent_copy(&self, folder: FolderId, message_id: &str) -> Result<Option<Uid>> {
        self.check()?;
        self.inner.recent_sent_copy(folder, message_id).await
    }
    async fn insert_appended(&self, append: Appended<'_>) -> Result<Uid> {
        self.check()?;
        self.inner.insert_appended(append).await
    }
}

#[async_trait]
impl QueueMeta for FaultyMeta {
    async fn outbound(&self) -> Result<Vec<OutboundRow>> {
        self.check()?;
        self.inner.outbound().await
    }
    async fn queue_summary(&self) -> Result<Vec<crate::queue::QueueCount>> {
        self.check()?;
        self.inner.queue_summary().await
    }
    async fn held_between(&self, since: i64, until: i64) -> Result<Vec<OutboundRow>> {
        self.check()?;
        self.inner.held_between(since, until).await
    }
    async fn due_outbound(&self, now: i64, limit: usize) -> Result<Vec<OutboundRow>> {
        self.check()?;
        self.inner.due_outbound(now, limit).await
    }
    async fn next_outbound_attempt(&self) -> Result<Option<i64>> {
        self.check()?;
        self.inner.next_outbound_attempt().await
    }
    async fn mark_outbound_warned(&self, ids: &[OutboundId]) -> Result<()> {
        self.check()?;
        self.inner.mark_outbound_warned(ids).await
    }
    async fn defer_outbound(&self, id: OutboundId, reason: &str, next_attempt: i64) -> Result<()> {
        self.check()?;
        self.inner.defer_outbound(id, reason, next_attempt).await
    }
    async fn hold_sender(&self, sender: &str, reason: &str) -> Result<usize> {
        self.check()?;
        self.inner.hold_sender(sender, reason).await
    }
    async fn set_outbound_state(&self, queue_id_or_row: &str, state: &str, now: i64) -> Result<usize> {
        self.check()?;
        self.inner.set_outbound_state(queue_id_or_row, state, now).await
    }
    async fn finish_outbound(&self, ids: &[OutboundId]) -> Result<Vec<String>> {
        self.check()?;
        self.inner.finish_outbound(ids).await
    }
}

#[async_trait]
impl DeliveryMeta for FaultyMeta {
    async fn commit_delivery(&self, delivery: Delivery) -> Result<()> {
        self.check()?;
        self.inner.commit_delivery(delivery).await
    }
    async fn setting(&self, key: &str) -> Result<Option<String>> {
        self.check()?;
        self.inner.setting(key).await
    }
    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.check()?;
        self.inner.set_setting(key, value).await
    }
    async fn setting_or_init(&self, key: &str, init: String) -> Result<String> {
        self.check()?;
        self.inner.setting_or_init(key, init).await
    }
    async fn unreferenced_blobs(&self, ids: Vec<String>) -> Result<Vec<String>> {
        self.check()?;
        self.inner.unreferenced_blobs(ids).await
    }
}

#[async_trait]
impl Watch for FaultyMeta {
    fn watch_folder(&self, folder: FolderId) -> tokio::sync::watch::Receiver<()> {
        self.inner.watch_folder(folder)
    }
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes()
    }
    async fn look_for_foreign_changes(&self) -> Result<usize> {
        self.check()?;
        self.inner.look_for_foreign_changes().await
    }
}

#[async_trait]
impl ConsoleMeta for FaultyMeta {
    async fn add_provider_admin(&self, address: &str, display: &str, hash: &str) -> Result<ProviderAdminRow> {
        self.check()?;
        self.inner.add_provider_admin(address, display, hash).await
    }
    async fn provider_admin(&self, address: &str) -> Result<Option<ProviderAdminRow>> {
        self.check()?;
        self.inner.provider_admin(address).await
    }
    async fn provider_admins(&self) -> Result<Vec<ProviderAdminRow>> {
        self.check()?;
        self.inner.provider_admins().await
    }
    async fn set_provider_admin_password(&self, address: &str, hash: &str) -> Result<bool> {
        self.check()?;
        self.inner.set_provider_admin_password(address, hash).await
    }
    async fn remove_provider_admin(&self, address: &str) -> Result<bool> {
        self.check()?;
        self.inner.remove_provider_admin(address).await
    }
    async fn add_api_token(&self, token: &NewApiToken) -> Result<ApiTokenRow> {
        self.check()?;
        self.inner.add_api_token(token).await
    }
    async fn api_token(&self, digest: &str) -> Result<Option<ApiTokenRow>> {
        self.check()?;
        self.inner.api_token(digest).await
    }
    async fn api_tokens(&self, login: Option<&str>) -> Result<Vec<ApiTokenRow>> {
        self.check()?;
        self.inner.api_tokens(login).await
    }
    async fn remove_api_token(&self, id: i64) -> Result<bool> {
        self.check()?;
        self.inner.remove_api_token(id).await
    }
}

#[async_trait]
impl ClassifierMeta for FaultyMeta {
    async fn classifier_totals(&self) -> Result<TrainingTotals> {
        self.check()?;
        self.inner.classifier_totals().await
    }
    async fn classifier_model(&self) -> Result<TrainingModel> {
        self.check()?;
        self.inner.classifier_model().await
    }
    async fn classifier_train(&self, batch: &TrainingBatch) -> Result<TrainingTotals> {
        self.check()?;
        self.inner.classifier_train(batch).await
    }
}

#[async_trait]
impl FilterMeta for FaultyMeta {
    async fn filter_domain_settings(&self, domain: &str) -> Result<Option<String>> {
        self.check()?;
        self.inner.filter_domain_settings(domain).await
    }
    async fn set_filter_domain_settings(&self, domain: &str, settings: Option<&str>) -> Result<()> {
        self.check()?;
        self.inner.set_filter_domain_settings(domain, settings).await
    }
    async fn whitelist_add(&self, scope: &str, sender: &str) -> Result<bool> {
        self.check()?;
        self.inner.whitelist_add(scope, sender).await
    }
    async fn whitelist_remove(&self, scope: &str, sender: &str) -> Result<bool> {
        self.check()?;
        self.inner.whitelist_remove(scope, sender).await
    }
    async fn whitelist(&self, scope: Option<&str>) -> Result<Vec<WhitelistRow>> {
        self.check()?;
        self.inner.whitelist(scope).await
    }
    async fn whitelist_matches(&self, senders: &[String]) -> Result<Vec<WhitelistRow>> {
        self.check()?;
        self.inner.whitelist_matches(senders).await
    }
    async fn put_filter_results(&self, rows: &[FilterResultRow]) -> Result<()> {
        self.check()?;
        self.inner.put_filter_results(rows).await
    }
    async fn filter_results(&self, id: &str) -> Result<Vec<FilterResultRow>> {
        self.check()?;
        self.inner.filter_results(id).await
    }
    async fn expire_filter_results(&self, before: i64) -> Result<usize> {
        self.check()?;
        self.inner.expire_filter_results(before).await
    }
}

#[async_trait]
impl CustomerMeta for FaultyMeta {
    async fn add_customer(&self, name: &str, caps: &CustomerCaps) -> Result<CustomerRow> {
        self.check()?;
        self.inner.add_customer(name, caps).await
    }
    async fn customer(&self, name: &str) -> Result<Option<CustomerRow>> {
        self.check()?;
        self.inner.customer(name).await
    }
    async fn customers(&self) -> Result<Vec<CustomerRow>> {
        self.check()?;
        self.inner.customers().await
    }
    async fn set_customer_caps(&self, id: i64, caps: &CustomerCaps) -> Result<bool> {
        self.check()?;
        self.inner.set_customer_caps(id, caps).await
    }
    async fn remove_customer(&self, id: i64) -> Result<bool> {
        self.check()?;
        self.inner.remove_customer(id).await
    }
    async fn set_domain_customer(&self, domain: DomainId, customer: Option<i64>) -> Result<()> {
        self.check()?;
        self.inner.set_domain_customer(domain, customer).await
    }
    async fn domain_customer(&self, domain: DomainId) -> Result<Option<CustomerRow>> {
        self.check()?;
        self.inner.domain_customer(domain).await
    }
    async fn customer_domains(&self, customer: i64) -> Result<Vec<DomainId>> {
        self.check()?;
        self.inner.customer_domains(customer).await
    }
    async fn customer_usage(&self, customer: i64) -> Result<CustomerUsage> {
        self.check()?;
        self.inner.customer_usage(customer).await
    }
    async fn admin_permissions(&self, account: AccountId) -> Result<i64> {
        self.check()?;
        self.inner.admin_permissions(account).await
    }
    async fn set_admin_permissions(&self, account: AccountId, permissions: i64) -> Result<()> {
        self.check()?;
        self.inner.set_admin_permissions(account, permissions).await
    }
    async fn provider_permissions(&self, address: &str) -> Result<i64> {
        self.check()?;
        self.inner.provider_permissions(address).await
    }
    async fn set_provider_permissions(&self, address: &str, permissions: i64) -> Result<bool> {
        self.check()?;
        self.inner.set_provider_permissions(address, permissions).await
    }
}
