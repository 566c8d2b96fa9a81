//! Domains: add, change, show, remove; gateway recipients.

use postroom_core::Domain;
use postroom_store::directory::{AliasRow, DomainRow};

use crate::customer::Adding;
use crate::{parse_address, parse_domain, qualify_targets, Actor, AdminError, AdminService, Result};

/// What `domain set` changes; `None` leaves a setting as it is.
#[derive(Clone, Debug, Default)]
pub struct DomainChange {
    /// One character, or empty to turn subaddressing off.
    pub separator: Option<String>,
    /// `Some(None)` removes the default quota.
    pub default_quota: Option<Option<i64>>,
    /// `Some(None)` makes a gateway domain a local one again.
    pub relay_to: Option<Option<String>>,
    pub verify: Option<bool>,
}

/// `domain show`.
#[derive(Clone, Debug)]
pub struct DomainInfo {
    pub row: DomainRow,
    /// The domain this one is an alias of.
    pub alias_of: Option<DomainRow>,
    /// Domains that are aliases of this one.
    pub alias_domains: Vec<DomainRow>,
    pub mailboxes: usize,
    pub aliases: Vec<AliasRow>,
    /// Queue items to or from the domain (and its alias domains).
    pub queued: usize,
    /// Gateway recipients (local parts).
    pub relay_recipients: Vec<String>,
}

/// `host:port` (or `[ip]:port`, or a host alone for port 25), as the
/// queue will read it.
fn check_next_hop(hop: &str) -> Result<String> {
    match postroom_core::net::split_host_port(hop) {
        Some(_) if !hop.contains(char::is_whitespace) => Ok(hop.to_string()),
        _ => Err(AdminError::Invalid(format!(
            "`{hop}` is not HOST:PORT (e.g. mail.customer.example:25)"
        ))),
    }
}

impl AdminService {
    /// A name `domain add` (and `import virtual`) may host: the one check,
    /// `Domain::parse_hosted`, against this server's host name.
    pub fn hosted_name(&self, name: &str) -> Result<Domain> {
        Domain::parse_hosted(name.trim(), &self.policy.hostname)
            .map_err(|e| AdminError::Invalid(format!("`{name}` {e}")))
    }

    pub async fn domains(&self) -> Result<Vec<DomainRow>> {
        Ok(self.meta().domains().await?)
    }

    /// Adds a local domain, an alias of one (`alias_of`), or a gateway
    /// domain relayed to `relay_to`.
    pub async fn domain_add(
        &self,
        actor: &Actor,
        name: &str,
        alias_of: Option<&str>,
        relay_to: Option<&str>,
        verify: bool,
    ) -> Result<DomainRow> {
        self.domain_add_for(actor, name, alias_of, relay_to, verify, None)
            .await
    }

    /// `domain_add` for a customer (`--customer`), checked against its
    /// domains cap. An alias domain always belongs to its target's
    /// customer (and counts against that customer's cap).
    pub async fn domain_add_for(
        &self,
        actor: &Actor,
        name: &str,
        alias_of: Option<&str>,
        relay_to: Option<&str>,
        verify: bool,
        customer: Option<&str>,
    ) -> Result<DomainRow> {
        let d = self.hosted_name(name)?;
        let target = alias_of.map(parse_domain).transpose()?;
        if target.is_some() && relay_to.is_some() {
            return Err(AdminError::Invalid(
                "an alias domain follows its target: give --alias-of or --relay-to, not both".into(),
            ));
        }
        if verify && relay_to.is_none() {
            return Err(AdminError::Invalid(
                "--verify needs a gateway domain (--relay-to HOST:PORT)".into(),
            ));
        }
        let hop = relay_to.map(check_next_hop).transpose()?;
        if self.meta().domain(d.canonical()).await?.is_some() {
            return Err(AdminError::AlreadyExists(format!("domain {d} exists already")));
        }
        let mut owner = match customer {
            Some(c) => Some(self.customer_show(c).await?.row),
            None => None,
        };
        if let Some(t) = &target {
            let row = self.hosted(t).await?;
            if row.alias_of.is_some() {
                return Err(AdminError::Invalid(format!("{t} is itself an alias domain")));
            }
            let target_owner = self.meta().domain_customer(row.id).await?;
            match (&owner, &target_owner) {
                (Some(o), Some(t)) if o.id != t.id => {
                    return Err(AdminError::Conflict(format!(
                        "{} belongs to customer {}: its alias domains do too",
                        row.display, t.name
                    )))
                }
                (Some(o), None) => {
                    return Err(AdminError::Conflict(format!(
                        "{} belongs to no customer: give it to {} first",
                        row.display, o.name
                    )))
                }
                _ => owner = target_owner,
            }
        }
        if let Some(o) = &owner {
            self.check_caps(
                o,
                Adding {
                    domains: 1,
                    ..Adding::default()
                },
            )
            .await?;
        }
        let row = self
            .meta()
            .add_domain(d.canonical(), d.display(), target.as_ref().map(Domain::canonical))
            .await?;
        if let Some(o) = &owner {
            self.meta().set_domain_customer(row.id, Some(o.id)).await?;
        }
        if let Some(hop) = &hop {
            self.meta().set_domain_relay(row.id, Some(hop), verify).await?;
        }
        let mut detail = match (&target, &hop) {
            (Some(t), _) => format!("alias of {t}"),
            (None, Some(h)) => format!("gateway to {h}{}", if verify { ", verify" } else { "" }),
            (None, None) => String::new(),
        };
        if let Some(o) = &owner {
            if !detail.is_empty() {
                detail.push_str(", ");
            }
            detail.push_str(&format!("customer {}", o.name));
        }
        self.record(actor, "domain.add", d.display(), d.canonical(), detail)
            .await;
        Ok(self.meta().domain_by_id(row.id).await?.unwrap_or(row))
    }

    pub async fn domain_set(&self, actor: &Actor, name: &str, change: DomainChange) -> Result<DomainRow> {
        let d = self.home_domain(&parse_domain(name)?).await?;
        if let Some(sep) = &change.separator {
            if sep.chars().count() > 1 || sep.contains(['@', ' ', '"', ',']) {
                return Err(AdminError::Invalid(
                    "the separator is one character (or empty)".into(),
                ));
            }
        }
        let relay = match (&change.relay_to, change.verify) {
            (None, None) => None,
            (relay_to, verify) => {
                let hop = match relay_to {
                    Some(Some(h)) => Some(check_next_hop(h)?),
                    Some(None) => None,
                    None => d.relay_to.clone(),
                };
                let verify = verify.unwrap_or(d.relay_verify && hop.is_some());
                if hop.is_none() && verify {
                    return Err(AdminError::Invalid(
                        "--verify needs a gateway domain (--relay-to HOST:PORT)".into(),
                    ));
                }
                Some((hop, verify))
            }
        };
        self.meta()
            .update_domain(d.id, change.separator.as_deref(), change.default_quota)
            .await?;
        if let Some((hop, verify)) = &relay {
            self.meta()
                .set_domain_relay(d.id, hop.as_deref(), *verify)
                .await?;
        }
        let mut detail = Vec::new();
        if let Some(s) = &change.separator {
            detail.push(format!("separator '{s}'"));
        }
        if let Some(q) = change.default_quota {
            detail.push(format!(
                "default quota {}",
                q.map_or("none".into(), |q| q.to_string())
            ));
        }
        if let Some((hop, verify)) = &relay {
            detail.push(format!(
                "relay {} verify {verify}",
                hop.as_deref().unwrap_or("none")
            ));
        }
        self.record(actor, "domain.set", &d.display, &d.name, detail.join(", "))
            .await;
        Ok(self.meta().domain_by_id(d.id).await?.unwrap_or(d))
    }

    pub async fn domain_show(&self, name: &str) -> Result<DomainInfo> {
        let row = self.hosted(&parse_domain(name)?).await?;
        let all = self.meta().domains().await?;
        let alias_of = row.alias_of.and_then(|t| all.iter().find(|d| d.id == t).cloned());
        let alias_domains: Vec<DomainRow> = all
            .iter()
            .filter(|d| d.alias_of == Some(row.id))
            .cloned()
            .collect();
        let mailboxes = self.meta().accounts(Some(row.id)).await?.len();
        let aliases = self.meta().aliases(Some(row.id)).await?;
        let mut names: Vec<&str> = vec![row.name.as_str()];
        names.extend(alias_domains.iter().map(|d| d.name.as_str()));
        let queued = self.queued_for(&names).await?;
        let relay_recipients = self.meta().relay_recipients(row.id).await?;
        Ok(DomainInfo {
            row,
            alias_of,
            alias_domains,
            mailboxes,
            aliases,
            queued,
            relay_recipients,
        })
    }

    /// Queue items whose recipient or sender is in one of `domains`
    /// (canonical names).
    async fn queued_for(&self, domains: &[&str]) -> Result<usize> {
        let in_domain = |addr: &str| {
            addr.rsplit_once('@')
                .is_some_and(|(_, d)| domains.iter().any(|x| x.eq_ignore_ascii_case(d)))
        };
        Ok(self
            .meta()
            .outbound()
            .await?
            .iter()
            .filter(|q| in_domain(&q.recipient) || in_domain(&q.sender))
            .count())
    }

    /// Removes a domain with its aliases, gateway recipients and DKIM keys.
    /// Refused while mail is queued to or from it, or while it has
    /// mailboxes or alias domains, unless `force`: then its mailboxes (and
    /// their mail) and alias domains go too; queued mail stays queued.
    pub async fn domain_remove(&self, actor: &Actor, name: &str, force: bool) -> Result<DomainInfo> {
        let info = self.domain_show(name).await?;
        let d = &info.row;
        if !force {
            if info.queued > 0 {
                return Err(AdminError::Conflict(format!(
                    "{} has {} queued messages (postroom queue list); wait, delete them, or use --force",
                    d.display, info.queued
                )));
            }
            if info.mailboxes > 0 {
                return Err(AdminError::Conflict(format!(
                    "{} has {} mailboxes; remove them first, or use --force to delete them and their mail",
                    d.display, info.mailboxes
                )));
            }
            if !info.alias_domains.is_empty() {
                let names: Vec<&str> = info.alias_domains.iter().map(|d| d.display.as_str()).collect();
                return Err(AdminError::Conflict(format!(
                    "{} has alias domains ({}); remove them first, or use --force",
                    d.display,
                    names.join(", ")
                )));
            }
        }
        for a in self.meta().accounts(Some(d.id)).await? {
            self.store.remove_account(a.id).await?;
            self.record(
                actor,
                "user.remove",
                &format!("{}@{}", a.display, d.display),
                &d.name,
                "with its domain, mail deleted now".into(),
            )
            .await;
        }
        for alias in &info.alias_domains {
            self.meta().remove_domain(alias.id).await?;
            self.record(
                actor,
                "domain.remove",
                &alias.display,
                &alias.name,
                format!("alias of {}", d.display),
            )
            .await;
        }
        self.meta().remove_domain(d.id).await?;
        let detail = if force {
            format!("forced: {} mailboxes, {} queued", info.mailboxes, info.queued)
        } else {
            String::new()
        };
        self.record(actor, "domain.remove", &d.display, &d.name, detail)
            .await;
        Ok(info)
    }

    /// Gateway recipients: adds and removes local parts (`sales,info` or
    /// full addresses in the domain); returns the list and the removals
    /// that were not listed.
    pub async fn relay_recipients(
        &self,
        actor: &Actor,
        name: &str,
        add: Option<&str>,
        remove: Option<&str>,
    ) -> Result<(DomainRow, Vec<String>, Vec<String>)> {
        let d = self.home_domain(&parse_domain(name)?).await?;
        let mut not_listed = Vec::new();
        if let Some(list) = add {
            let locals = self.relay_locals(list, &d)?;
            self.meta().add_relay_recipients(d.id, &locals).await?;
            self.record(
                actor,
                "domain.recipients.add",
                &d.display,
                &d.name,
                locals.join(","),
            )
            .await;
        }
        if let Some(list) = remove {
            let locals = self.relay_locals(list, &d)?;
            for l in &locals {
                if !self.meta().remove_relay_recipient(d.id, l).await? {
                    not_listed.push(l.clone());
                }
            }
            self.record(
                actor,
                "domain.recipients.remove",
                &d.display,
                &d.name,
                locals.join(","),
            )
            .await;
        }
        let list = self.meta().relay_recipients(d.id).await?;
        Ok((d, list, not_listed))
    }

    /// Canonical local parts from `sales,info` or `sales@domain,...`.
    fn relay_locals(&self, list: &str, d: &DomainRow) -> Result<Vec<String>> {
        let domain = parse_domain(&d.name)?;
        qualify_targets(list, &domain)?
            .iter()
            .map(|t| {
                let a = parse_address(t)?;
                if a.domain().canonical() != d.name {
                    return Err(AdminError::Invalid(format!("{t} is not in {}", d.display)));
                }
                Ok(a.local_canonical().to_string())
            })
            .collect()
    }
}
