//! The content filter's administration (issue #10): a domain's
//! thresholds and `{Cleaned}`, whitelists, the quarantine (held mail
//! whose reason is `quarantine`) and the stored reports `postroom
//! explain` prints.

use postroom_core::Address;
use postroom_filter::{DomainPolicy, Thresholds};
use postroom_store::queue::OutboundRow;
use postroom_store::{FilterResultRow, HoldReason, WhitelistRow};

use crate::{now, Actor, AdminError, AdminService, Result};

/// Filter reports are kept this long (issue #10: any message handled in
/// the last 30 days can be explained).
pub const REPORT_DAYS: i64 = 30;

/// One quarantined message: its held rows (one per recipient).
#[derive(Clone, Debug)]
pub struct Quarantined {
    pub queue_id: String,
    pub rows: Vec<OutboundRow>,
}

impl AdminService {
    /// The primary name of a hosted domain (an alias domain's target).
    async fn primary_domain(&self, name: &str) -> Result<String> {
        let d = self.hosted_name(name)?;
        let Some(row) = self.meta().domain(d.canonical()).await? else {
            return Err(AdminError::NotFound(format!("domain {name} is not hosted here")));
        };
        match row.alias_of {
            Some(id) => match self.meta().domain_by_id(id).await? {
                Some(target) => Ok(target.name),
                None => Ok(row.name),
            },
            None => Ok(row.name),
        }
    }

    /// A domain's own filter settings (unset fields are the server's).
    pub async fn filter_policy(&self, domain: &str) -> Result<(String, DomainPolicy)> {
        let name = self.primary_domain(domain).await?;
        let policy = match self.meta().filter_domain_settings(&name).await? {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| AdminError::Invalid(format!("stored filter settings of {name}: {e}")))?,
            None => DomainPolicy::default(),
        };
        Ok((name, policy))
    }

    /// Sets a domain's filter settings: each `Some` field of `change`
    /// replaces the stored one; `reset` first goes back to the server's.
    /// Checked against the server's thresholds `defaults`.
    pub async fn filter_policy_set(
        &self,
        actor: &Actor,
        domain: &str,
        change: DomainPolicy,
        reset: bool,
        defaults: &Thresholds,
    ) -> Result<DomainPolicy> {
        let (name, mut policy) = self.filter_policy(domain).await?;
        if reset {
            policy = DomainPolicy::default();
        }
        if change.junk_at.is_some() {
            policy.junk_at = change.junk_at;
        }
        if change.quarantine_at.is_some() {
            policy.quarantine_at = change.quarantine_at;
        }
        if change.high_at.is_some() {
            policy.high_at = change.high_at;
        }
        if change.high_action.is_some() {
            policy.high_action = change.high_action;
        }
        if change.cleaned.is_some() {
            policy.cleaned = change.cleaned;
        }
        policy.validate(defaults).map_err(AdminError::Invalid)?;
        let json = serde_json::to_string(&policy).map_err(|e| AdminError::Invalid(e.to_string()))?;
        let stored = (policy != DomainPolicy::default()).then_some(json.as_str());
        self.meta().set_filter_domain_settings(&name, stored).await?;
        self.record(actor, "filter.policy", &name, &name, json.clone())
            .await;
        Ok(policy)
    }

    /// Whose whitelist: a hosted domain (an alias domain's target) or an
    /// existing mailbox, canonical; and its domain for the audit row.
    async fn whitelist_scope(&self, scope: &str) -> Result<(String, String)> {
        if scope.contains('@') {
            let a = Address::parse(scope.trim(), true)
                .map_err(|e| AdminError::Invalid(format!("`{scope}`: {e}")))?;
            // An alias domain's mailboxes are its target's.
            let primary = self.primary_domain(a.domain().canonical()).await?;
            let Some(d) = self.meta().domain(&primary).await? else {
                return Err(AdminError::NotFound(format!(
                    "domain of {scope} is not hosted here"
                )));
            };
            let Some(acct) = self.meta().account(d.id, a.local_canonical()).await? else {
                return Err(AdminError::NotFound(format!("no mailbox {scope}")));
            };
            Ok((format!("{}@{primary}", acct.local), primary))
        } else {
            let d = self.primary_domain(scope).await?;
            Ok((d.clone(), d))
        }
    }

    /// A sender (an address, or a domain for all its addresses), lower
    /// case, as the filter compares it with the envelope sender and the
    /// `From:` addresses.
    fn whitelist_sender(sender: &str) -> Result<String> {
        let s = sender.trim().to_lowercase();
        let ok = match s.rsplit_once('@') {
            Some((local, domain)) => !local.is_empty() && !domain.is_empty(),
            None => !s.is_empty(),
        };
        if !ok
            || s.len() > 254
            || s.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        {
            return Err(AdminError::Invalid(format!(
                "`{sender}` is neither an address nor a domain"
            )));
        }
        if !s.contains('@') {
            postroom_core::Domain::parse(&s).map_err(|e| AdminError::Invalid(format!("`{sender}`: {e}")))?;
        }
        Ok(s)
    }

    /// Mail from `sender` to `scope` (a domain or a mailbox) skips the spam
    /// score (never the virus scan, the phishing blocklist or the
    /// attachment rules; and not when its SPF, DKIM or DMARC fails).
    pub async fn whitelist_add(&self, actor: &Actor, scope: &str, sender: &str) -> Result<(String, String)> {
        let (scope, domain) = self.whitelist_scope(scope).await?;
        let sender = Self::whitelist_sender(sender)?;
        if !self.meta().whitelist_add(&scope, &sender).await? {
            return Err(AdminError::AlreadyExists(format!(
                "{sender} is on the whitelist of {scope} already"
            )));
        }
        self.record(actor, "whitelist.add", &scope, &domain, sender.clone())
            .await;
        Ok((scope, sender))
    }

    pub async fn whitelist_remove(&self, actor: &Actor, scope: &str, sender: &str) -> Result<()> {
        let (scope, domain) = self.whitelist_scope(scope).await?;
        let sender = Self::whitelist_sender(sender)?;
        if !self.meta().whitelist_remove(&scope, &sender).await? {
            return Err(AdminError::NotFound(format!(
                "{sender} is not on the whitelist of {scope}"
            )));
        }
        self.record(actor, "whitelist.remove", &scope, &domain, sender)
            .await;
        Ok(())
    }

    /// Every entry, or those of one domain (its mailboxes' included) or
    /// one mailbox.
    pub async fn whitelist_list(&self, scope: Option<&str>) -> Result<Vec<WhitelistRow>> {
        let Some(scope) = scope else {
            return Ok(self.meta().whitelist(None).await?);
        };
        let (scope, domain) = self.whitelist_scope(scope).await?;
        let all = self.meta().whitelist(None).await?;
        Ok(all
            .into_iter()
            .filter(|r| {
                r.scope == scope
                    || (scope == domain && r.scope.rsplit_once('@').is_some_and(|(_, d)| d == domain))
            })
            .collect())
    }

    /// Quarantined messages (held with the reason `quarantine`), oldest
    /// first; with `domain`, those for its recipients.
    pub async fn quarantine_list(&self, domain: Option<&str>) -> Result<Vec<Quarantined>> {
        let domain = match domain {
            Some(d) => Some(self.primary_domain(d).await?),
            None => None,
        };
        let mut out: Vec<Quarantined> = Vec::new();
        for row in self.meta().outbound().await? {
            if row.state != "held" || row.hold_reason != Some(HoldReason::Quarantine) {
                continue;
            }
            if let Some(d) = &domain {
                let rd = row.recipient.rsplit_once('@').map(|(_, d)| d.to_lowercase());
                if rd.as_deref() != Some(d.as_str()) {
                    continue;
                }
            }
            match out.iter_mut().find(|q| q.queue_id == row.queue_id) {
                Some(q) => q.rows.push(row),
                None => out.push(Quarantined {
                    queue_id: row.queue_id.clone(),
                    rows: vec![row],
                }),
            }
        }
        Ok(out)
    }

    /// One quarantined message: its rows, and the message as it was held
    /// (the first recipient's header lines, then the stored body).
    pub async fn quarantine_show(&self, id: &str) -> Result<(Quarantined, Vec<u8>)> {
        let q = self.quarantined(id).await?;
        let body = self
            .store
            .blobs
            .get(&q.rows[0].blob_id)
            .map_err(|e| AdminError::Storage(e.into()))?;
        let mut message = q.rows[0].prefix.clone();
        message.extend_from_slice(&body);
        Ok((q, message))
    }

    /// Delivers a quarantined message to the mailboxes it was for, as it
    /// was held (`queue release` of its rows).
    pub async fn quarantine_release(&self, actor: &Actor, id: &str) -> Result<usize> {
        let q = self.quarantined(id).await?;
        let mut n = 0;
        for row in &q.rows {
            n += self.queue_release(actor, &row.id.to_string()).await?;
        }
        Ok(n)
    }

    /// Deletes a quarantined message (no bounce).
    pub async fn quarantine_delete(&self, actor: &Actor, id: &str) -> Result<usize> {
        let q = self.quarantined(id).await?;
        let mut n = 0;
        for row in &q.rows {
            n += self.queue_delete(actor, &row.id.to_string()).await?;
        }
        Ok(n)
    }

    /// Deletes quarantined mail held longer than `max_age_secs`; how many
    /// rows.
    pub async fn quarantine_expire(&self, now: i64, max_age_secs: i64) -> Result<usize> {
        let mut n = 0;
        for q in self.quarantine_list(None).await? {
            for row in q.rows.iter().filter(|r| r.created < now - max_age_secs) {
                match self.store.delete_outbound(&row.id.to_string()).await {
                    Ok(k) => n += k,
                    // Released or deleted meanwhile.
                    Err(postroom_store::StoreError::Invalid(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                tracing::info!(target: "queue", queue_id = %row.queue_id, recipient = %row.recipient,
                    "quarantined mail expired and deleted");
            }
        }
        Ok(n)
    }

    /// The quarantined rows of a queue id (or one row id).
    async fn quarantined(&self, id: &str) -> Result<Quarantined> {
        let rows: Vec<OutboundRow> = self
            .meta()
            .outbound()
            .await?
            .into_iter()
            .filter(|r| {
                (r.queue_id == id || r.id.to_string() == id)
                    && r.state == "held"
                    && r.hold_reason == Some(HoldReason::Quarantine)
            })
            .collect();
        if rows.is_empty() {
            return Err(AdminError::NotFound(format!("no quarantined message {id}")));
        }
        Ok(Quarantined {
            queue_id: rows[0].queue_id.clone(),
            rows,
        })
    }

    /// The stored filter reports of a queue id or a Message-ID (with or
    /// without `<>`).
    pub async fn explain(&self, id: &str) -> Result<Vec<FilterResultRow>> {
        let id = id.trim().trim_start_matches('<').trim_end_matches('>');
        let rows = self.meta().filter_results(id).await?;
        if rows.is_empty() {
            return Err(AdminError::NotFound(format!(
                "no filter report for {id} (kept {REPORT_DAYS} days)"
            )));
        }
        Ok(rows)
    }

    /// Deletes the reports older than [`REPORT_DAYS`].
    pub async fn expire_filter_reports(&self) -> Result<usize> {
        Ok(self
            .meta()
            .expire_filter_results(now() - REPORT_DAYS * 86_400)
            .await?)
    }
}
