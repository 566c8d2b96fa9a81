//! Mailboxes: add, show, change, forward, rename, remove.

use postroom_core::Secret;
use postroom_directory::{password, Origin};
use postroom_store::directory::{AccountRow, DomainRow};
use postroom_store::StoreError;

use crate::customer::Adding;
use crate::{
    now, parse_address, parse_domain, qualify_targets, Actor, AdminError, AdminService, Result, MAX_ATTEMPTS,
};

/// A mailbox's new password: typed (checked against
/// `auth.min_password_length`, then hashed) or an imported hash. There is
/// no "none": a mailbox without a password can never log in.
pub enum NewPassword {
    Plain(Secret<String>),
    Hash(String),
}

/// `user show` and `user list`.
#[derive(Clone, Debug)]
pub struct UserInfo {
    /// `local@domain` in display form.
    pub address: String,
    pub account: AccountRow,
    /// Bytes stored.
    pub usage: i64,
    pub messages: i64,
}

/// What `user remove` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// The mailbox and its mail are gone.
    Now,
    /// Disabled; its mail is deleted after this time (unix seconds).
    Scheduled(i64),
}

impl AdminService {
    pub(crate) async fn hash(&self, pw: NewPassword) -> Result<String> {
        let len = match &pw {
            NewPassword::Hash(h) => h.len(),
            NewPassword::Plain(p) => p.expose().len(),
        };
        if len > crate::MAX_PASSWORD_BYTES {
            return Err(AdminError::Invalid(format!(
                "the password is longer than {} bytes",
                crate::MAX_PASSWORD_BYTES
            )));
        }
        match pw {
            NewPassword::Hash(h) => {
                if !password::is_supported(&h) {
                    return Err(AdminError::Invalid(
                        "unsupported hash: use {SHA512-CRYPT}, {SHA256-CRYPT}, {BLF-CRYPT}, {PLAIN} or $argon2id$"
                            .into(),
                    ));
                }
                Ok(h)
            }
            NewPassword::Plain(pw) => {
                password::check_new(pw.expose(), self.policy.min_password_length)
                    .map_err(AdminError::Invalid)?;
                // argon2 takes a good part of a second by design: off the
                // async threads.
                tokio::task::spawn_blocking(move || password::hash(&pw))
                    .await
                    .map_err(|e| AdminError::Storage(StoreError::Io(std::io::Error::other(e))))
            }
        }
    }

    pub async fn user_add(
        &self,
        actor: &Actor,
        address: &str,
        pw: NewPassword,
        quota: Option<i64>,
        domain_admin: bool,
    ) -> Result<UserInfo> {
        let addr = parse_address(address)?;
        let d = self.home_domain(addr.domain()).await?;
        if d.relay_to.is_some() {
            return Err(AdminError::Invalid(format!(
                "{} is a gateway domain: its mail is relayed to {}, it has no mailboxes here",
                d.display,
                d.relay_to.as_deref().unwrap_or("")
            )));
        }
        let local = addr.local_canonical();
        if self.meta().account(d.id, local).await?.is_some() {
            return Err(AdminError::AlreadyExists(format!(
                "mailbox {addr} exists already"
            )));
        }
        if self.meta().alias(d.id, local).await?.is_some() {
            return Err(AdminError::Conflict(format!(
                "{addr} is an alias: remove it first (postroom alias remove {addr})"
            )));
        }
        let quota = quota.or(d.default_quota);
        // Before the (slow) hash: a refused mailbox costs no argon2 run.
        self.check_domain_caps(
            &d,
            Adding {
                mailboxes: 1,
                storage: quota.unwrap_or(0),
                unlimited: quota.is_none(),
                ..Adding::default()
            },
        )
        .await?;
        let hash = self.hash(pw).await?;
        let a = self
            .meta()
            .add_account(d.id, local, addr.local_display(), Some(&hash), quota)
            .await?;
        if domain_admin {
            self.meta().set_domain_admin(a.id, true).await?;
        }
        let object = format!("{}@{}", a.display, d.display);
        let detail = format!(
            "quota {}{}",
            quota.map_or("none".into(), |q| q.to_string()),
            if domain_admin { ", domain admin" } else { "" }
        );
        self.record(actor, "user.add", &object, &d.name, detail).await;
        self.user_show(&object).await
    }

    pub async fn user_show(&self, address: &str) -> Result<UserInfo> {
        let (d, a) = self.find_account(&parse_address(address)?).await?;
        self.info(&d, a).await
    }

    async fn info(&self, d: &DomainRow, account: AccountRow) -> Result<UserInfo> {
        Ok(UserInfo {
            address: format!("{}@{}", account.display, d.display),
            usage: self.meta().usage(account.id).await?,
            messages: self.meta().message_count(account.id).await?,
            account,
        })
    }

    /// Every mailbox, or a domain's.
    pub async fn users(&self, domain: Option<&str>) -> Result<Vec<UserInfo>> {
        let filter = match domain {
            Some(d) => Some(self.hosted(&parse_domain(d)?).await?.id),
            None => None,
        };
        let domains = self.meta().domains().await?;
        let mut out = Vec::new();
        for a in self.meta().accounts(filter).await? {
            let Some(d) = domains.iter().find(|d| d.id == a.domain_id) else {
                continue;
            };
            out.push(self.info(d, a).await?);
        }
        Ok(out)
    }

    /// One page of a domain's mailboxes, by address, those whose address
    /// contains `search` (any case) only: (how many match, the page).
    /// Usage is read for the page's rows only, so a domain of 10,000
    /// mailboxes costs one list query and `limit` usage reads.
    pub async fn users_page(
        &self,
        domain: &str,
        search: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<UserInfo>)> {
        let d = self.home_domain(&parse_domain(domain)?).await?;
        let needle = search.trim().to_lowercase();
        let mut rows: Vec<AccountRow> = self
            .meta()
            .accounts(Some(d.id))
            .await?
            .into_iter()
            .filter(|a| {
                needle.is_empty() || a.local.contains(&needle) || a.display.to_lowercase().contains(&needle)
            })
            .collect();
        rows.sort_by(|a, b| a.local.cmp(&b.local));
        let total = rows.len();
        let mut out = Vec::new();
        for a in rows.into_iter().skip(offset).take(limit) {
            out.push(self.info(&d, a).await?);
        }
        Ok((total, out))
    }

    pub async fn user_passwd(&self, actor: &Actor, address: &str, pw: NewPassword) -> Result<()> {
        let (d, a) = self.find_account(&parse_address(address)?).await?;
        let hash = self.hash(pw).await?;
        self.meta().set_password_hash(a.id, &hash).await?;
        self.record(
            actor,
            "user.passwd",
            &format!("{}@{}", a.display, d.display),
            &d.name,
            String::new(),
        )
        .await;
        Ok(())
    }

    pub async fn user_set_enabled(&self, actor: &Actor, address: &str, enabled: bool) -> Result<()> {
        let (d, a) = self.find_account(&parse_address(address)?).await?;
        if enabled && a.delete_after.is_some() {
            return Err(AdminError::Conflict(format!(
                "{}@{} was removed (postroom user remove); its mail is being deleted",
                a.display, d.display
            )));
        }
        self.meta().set_enabled(a.id, enabled).await?;
        let op = if enabled { "user.enable" } else { "user.disable" };
        self.record(
            actor,
            op,
            &format!("{}@{}", a.display, d.display),
            &d.name,
            String::new(),
        )
        .await;
        Ok(())
    }

    pub async fn user_set_admin(&self, actor: &Actor, address: &str, admin: bool) -> Result<()> {
        let (d, a) = self.find_account(&parse_address(address)?).await?;
        self.meta().set_domain_admin(a.id, admin).await?;
        if !admin {
            // Given again later, the role starts with no permissions.
            self.meta().set_admin_permissions(a.id, 0).await?;
        }
        self.record(
            actor,
            "user.admin",
            &format!("{}@{}", a.display, d.display),
            &d.name,
            admin.to_string(),
        )
        .await;
        Ok(())
    }

    pub async fn user_set_sent_copy(&self, actor: &Actor, address: &str, on: bool) -> Result<()> {
        let (d, a) = self.find_account(&parse_address(address)?).await?;
        self.meta().set_sent_copy(a.id, on).await?;
        self.record(
            actor,
            "user.sent-copy",
            &format!("{}@{}", a.display, d.display),
            &d.name,
            on.to_string(),
        )
        .await;
        Ok(())
    }

    /// `user set --quota`: bytes, or None for the domain's default.
    pub async fn user_set_quota(&self, actor: &Actor, address: &str, quota: Option<i64>) -> Result<UserInfo> {
        let (d, a) = self.find_account(&parse_address(address)?).await?;
        let before = a.quota.or(d.default_quota);
        let after = quota.or(d.default_quota);
        self.check_domain_caps(
            &d,
            Adding {
                storage: after.unwrap_or(0) - before.unwrap_or(0),
                unlimited: after.is_none() && before.is_some(),
                ..Adding::default()
            },
        )
        .await?;
        self.meta().set_quota(a.id, quota).await?;
        let object = format!("{}@{}", a.display, d.display);
        self.record(
            actor,
            "user.set",
            &object,
            &d.name,
            format!("quota {}", quota.map_or("none".into(), |q| q.to_string())),
        )
        .await;
        self.user_show(&object).await
    }

    /// Forwarding: every delivery goes to `targets` too (an empty list
    /// turns it off); `keep` keeps a copy in the mailbox. Refused when the
    /// targets lead back to the mailbox, through forwarding or aliases.
    pub async fn user_forward(
        &self,
        actor: &Actor,
        address: &str,
        targets: &str,
        keep: bool,
    ) -> Result<Vec<String>> {
        let addr = parse_address(address)?;
        let (d, a) = self.find_account(&addr).await?;
        let targets = qualify_targets(targets, addr.domain())?;
        for attempt in 0..MAX_ATTEMPTS {
            // The version first, then the check: a change after this read
            // makes the write below fail, and the check runs again.
            let version = self.meta().directory_version().await?;
            if !targets.is_empty() {
                if let Some(why) = self
                    .dir
                    .check_targets(Origin::Forward { account: &a }, &targets)
                    .await?
                {
                    return Err(AdminError::Invalid(format!("refused: {why}")));
                }
            }
            self.before_write().await;
            match self.meta().set_forwarding_if(a.id, &targets, keep, version).await {
                Err(StoreError::Conflict(_)) => {
                    tracing::info!(
                        attempt,
                        "the directory changed during the forwarding check; checking again"
                    );
                    continue;
                }
                r => r?,
            }
            let detail = if targets.is_empty() {
                "off".to_string()
            } else {
                format!("{}{}", targets.join(","), if keep { "" } else { " (no copy)" })
            };
            self.record(
                actor,
                "user.forward",
                &format!("{}@{}", a.display, d.display),
                &d.name,
                detail,
            )
            .await;
            return Ok(targets);
        }
        Err(AdminError::Conflict(
            "the directory kept changing during the cycle check; try again".into(),
        ))
    }

    /// `user remove`: disables the mailbox at once (no login, no new mail)
    /// and deletes its mail after the grace period, or at once with `now`.
    pub async fn user_remove(&self, actor: &Actor, address: &str, now_: bool) -> Result<Removal> {
        let (d, a) = self.find_account(&parse_address(address)?).await?;
        let object = format!("{}@{}", a.display, d.display);
        if now_ {
            self.store.remove_account(a.id).await?;
            self.record(actor, "user.remove", &object, &d.name, "mail deleted now".into())
                .await;
            return Ok(Removal::Now);
        }
        let at = now().saturating_add(self.policy.removal_grace_secs);
        let at = a.delete_after.map_or(at, |t| t.min(at));
        self.meta().schedule_account_removal(a.id, at).await?;
        self.record(
            actor,
            "user.remove",
            &object,
            &d.name,
            format!("disabled; mail deleted after {at}"),
        )
        .await;
        Ok(Removal::Scheduled(at))
    }

    /// Deletes the mailboxes whose grace period after `user remove` ended
    /// by `at`; returns their addresses. The server runs it when it starts
    /// and every hour.
    pub async fn purge_removed(&self, at: i64) -> Result<Vec<String>> {
        let mut gone = Vec::new();
        for a in self.meta().accounts_due_for_removal(at).await? {
            let d = self.meta().domain_by_id(a.domain_id).await?;
            let (name, object) = match &d {
                Some(d) => (d.name.clone(), format!("{}@{}", a.display, d.display)),
                None => (String::new(), a.display.clone()),
            };
            self.store.remove_account(a.id).await?;
            self.record(
                &Actor::System,
                "user.purge",
                &object,
                &name,
                "grace period over: mail deleted".into(),
            )
            .await;
            gone.push(object);
        }
        Ok(gone)
    }

    /// Gives a mailbox a new address, in its domain or another hosted one.
    /// Its folders, their UIDVALIDITY and its messages' UIDs stay, so mail
    /// clients keep their caches; the old address stops existing.
    pub async fn user_rename(&self, actor: &Actor, old: &str, new: &str) -> Result<UserInfo> {
        let (od, a) = self.find_account(&parse_address(old)?).await?;
        let to = parse_address(new)?;
        let nd = self.home_domain(to.domain()).await?;
        if nd.relay_to.is_some() {
            return Err(AdminError::Invalid(format!(
                "{} is a gateway domain: it has no mailboxes here",
                nd.display
            )));
        }
        let local = to.local_canonical();
        if self.meta().account(nd.id, local).await?.is_some() {
            return Err(AdminError::AlreadyExists(format!("mailbox {to} exists already")));
        }
        if self.meta().alias(nd.id, local).await?.is_some() {
            return Err(AdminError::Conflict(format!("{to} is an alias: remove it first")));
        }
        self.meta()
            .rename_account(a.id, nd.id, local, to.local_display())
            .await?;
        // At its new address a forwarding mailbox may close a loop: an
        // alias or forwarding that led to the (then missing) new address
        // now reaches it. The check sees the mailbox where it now is; a
        // loop puts it back (meanwhile, resolution gives each mailbox one
        // copy, so no mail loops).
        if !a.forward_to.is_empty() {
            let moved = self
                .meta()
                .account_by_id(a.id)
                .await?
                .ok_or_else(|| AdminError::NotFound(format!("no mailbox {old}")))?;
            if let Some(why) = self
                .dir
                .check_targets(Origin::Forward { account: &moved }, &moved.forward_to)
                .await?
            {
                self.meta()
                    .rename_account(a.id, od.id, &a.local, &a.display)
                    .await?;
                return Err(AdminError::Invalid(format!("refused: {why}")));
            }
        }
        let object = format!("{}@{}", to.local_display(), nd.display);
        self.record(
            actor,
            "user.rename",
            &object,
            &nd.name,
            format!("from {}@{}", a.display, od.display),
        )
        .await;
        self.user_show(&object).await
    }
}
