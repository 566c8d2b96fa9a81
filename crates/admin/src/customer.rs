//! Customers (tenants, issue #11): a customer owns domains and has caps set
//! by the provider on its domains, mailboxes, aliases and total storage
//! (the sum of its mailboxes' quotas). Every change that adds to what a
//! customer uses is checked here, against the caps and usage read from the
//! store at the time of the change, never against what a session or token
//! says: the CLI, the API and the console all come through these checks.
//!
//! The check and the write are two steps (the storage traits have no
//! transaction spanning them), so two changes racing for a customer's last
//! mailbox can both pass: a cap can be passed by the number of changes made
//! at the same instant, which for a provider's customers, each with a few
//! admins, is one or two. Caps are a commercial limit, not a safety one.

use postroom_store::directory::DomainRow;
use postroom_store::{CustomerCaps, CustomerRow, CustomerUsage};

use crate::{parse_domain, Actor, AdminError, AdminService, Result};

/// The longest customer name: a short handle (a customer number or
/// name), shown in lists and audit rows.
pub const MAX_CUSTOMER_NAME: usize = 64;

/// What `customer set` changes; `None` leaves a cap as it is, `Some(None)`
/// lifts it.
#[derive(Clone, Debug, Default)]
pub struct CustomerChange {
    pub max_domains: Option<Option<i64>>,
    pub max_mailboxes: Option<Option<i64>>,
    pub max_aliases: Option<Option<i64>>,
    pub max_storage: Option<Option<i64>>,
    /// Domains given to the customer (each checked against the caps).
    pub add_domains: Vec<String>,
    /// Domains taken from it.
    pub remove_domains: Vec<String>,
}

/// `customer show`: the row, its domains (display names) and its usage.
#[derive(Clone, Debug)]
pub struct CustomerInfo {
    pub row: CustomerRow,
    pub domains: Vec<String>,
    pub usage: CustomerUsage,
}

/// What a change would add to a customer.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Adding {
    pub domains: i64,
    pub mailboxes: i64,
    pub aliases: i64,
    /// Bytes of quota added (may be negative: a quota lowered).
    pub storage: i64,
    /// The change adds a mailbox with no quota at all.
    pub unlimited: bool,
}

/// A customer name as typed: letters, digits, `-`, `_` and `.`, compared
/// in lower case.
pub fn parse_customer_name(s: &str) -> Result<String> {
    let n = s.trim().to_ascii_lowercase();
    if n.is_empty()
        || n.len() > MAX_CUSTOMER_NAME
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(AdminError::Invalid(format!(
            "`{s}` is not a customer name (1 to {MAX_CUSTOMER_NAME} letters, digits, `-`, `_` or `.`)"
        )));
    }
    Ok(n)
}

fn check_cap_value(name: &str, v: Option<i64>) -> Result<Option<i64>> {
    match v {
        Some(n) if n < 0 => Err(AdminError::Invalid(format!("the {name} cap cannot be negative"))),
        v => Ok(v),
    }
}

fn fmt_cap(v: Option<i64>) -> String {
    v.map_or("none".into(), |n| n.to_string())
}

fn caps_detail(c: &CustomerCaps) -> String {
    format!(
        "domains {}, mailboxes {}, aliases {}, storage {}",
        fmt_cap(c.max_domains),
        fmt_cap(c.max_mailboxes),
        fmt_cap(c.max_aliases),
        fmt_cap(c.max_storage)
    )
}

impl AdminService {
    pub async fn customer_add(&self, actor: &Actor, name: &str, caps: CustomerCaps) -> Result<CustomerInfo> {
        let name = parse_customer_name(name)?;
        let caps = CustomerCaps {
            max_domains: check_cap_value("domains", caps.max_domains)?,
            max_mailboxes: check_cap_value("mailboxes", caps.max_mailboxes)?,
            max_aliases: check_cap_value("aliases", caps.max_aliases)?,
            max_storage: check_cap_value("storage", caps.max_storage)?,
        };
        if self.meta().customer(&name).await?.is_some() {
            return Err(AdminError::AlreadyExists(format!(
                "customer {name} exists already"
            )));
        }
        let row = self.meta().add_customer(&name, &caps).await?;
        self.record(actor, "customer.add", &name, "", caps_detail(&caps))
            .await;
        self.customer_info(row).await
    }

    pub async fn customers(&self) -> Result<Vec<CustomerInfo>> {
        let mut out = Vec::new();
        for row in self.meta().customers().await? {
            out.push(self.customer_info(row).await?);
        }
        Ok(out)
    }

    pub async fn customer_show(&self, name: &str) -> Result<CustomerInfo> {
        let row = self.customer_row(name).await?;
        self.customer_info(row).await
    }

    /// The customer that owns a domain (an alias domain's is its
    /// target's owner, as it is assigned with it).
    pub async fn domain_owner(&self, domain: &str) -> Result<Option<CustomerRow>> {
        let d = self.hosted(&parse_domain(domain)?).await?;
        Ok(self.meta().domain_customer(d.id).await?)
    }

    /// Changes caps (lowering one below what is used is allowed: nothing
    /// is taken away, but nothing more may be added) and gives or takes
    /// domains, each given domain checked against the caps.
    pub async fn customer_set(
        &self,
        actor: &Actor,
        name: &str,
        change: CustomerChange,
    ) -> Result<CustomerInfo> {
        let row = self.customer_row(name).await?;
        let mut caps = row.caps;
        let mut detail = Vec::new();
        for (label, new, field) in [
            ("domains", change.max_domains, &mut caps.max_domains),
            ("mailboxes", change.max_mailboxes, &mut caps.max_mailboxes),
            ("aliases", change.max_aliases, &mut caps.max_aliases),
            ("storage", change.max_storage, &mut caps.max_storage),
        ] {
            if let Some(v) = new {
                *field = check_cap_value(label, v)?;
                detail.push(format!("{label} {}", fmt_cap(v)));
            }
        }
        // Every domain is looked up before anything changes.
        let mut add = Vec::new();
        for d in &change.add_domains {
            let d = self.hosted(&parse_domain(d)?).await?;
            if d.alias_of.is_some() {
                return Err(AdminError::Invalid(format!(
                    "{} is an alias domain: it belongs to its target's customer",
                    d.display
                )));
            }
            add.push(d);
        }
        let mut remove = Vec::new();
        for d in &change.remove_domains {
            let d = self.hosted(&parse_domain(d)?).await?;
            match self.meta().domain_customer(d.id).await? {
                Some(c) if c.id == row.id => remove.push(d),
                _ => {
                    return Err(AdminError::NotFound(format!(
                        "{} is not a domain of customer {}",
                        d.display, row.name
                    )))
                }
            }
        }
        if caps != row.caps {
            self.meta().set_customer_caps(row.id, &caps).await?;
        }
        let with_caps = CustomerRow { caps, ..row.clone() };
        for d in &add {
            if let Some(owner) = self.meta().domain_customer(d.id).await? {
                if owner.id == row.id {
                    continue;
                }
                return Err(AdminError::Conflict(format!(
                    "{} belongs to customer {}: take it from them first",
                    d.display, owner.name
                )));
            }
            let adding = self.domain_usage(d).await?;
            self.check_caps(&with_caps, adding).await?;
            for a in self.alias_domains_of(d).await? {
                self.meta().set_domain_customer(a.id, Some(row.id)).await?;
            }
            self.meta().set_domain_customer(d.id, Some(row.id)).await?;
            detail.push(format!("+{}", d.name));
        }
        for d in &remove {
            for a in self.alias_domains_of(d).await? {
                self.meta().set_domain_customer(a.id, None).await?;
            }
            self.meta().set_domain_customer(d.id, None).await?;
            detail.push(format!("-{}", d.name));
        }
        self.record(actor, "customer.set", &row.name, "", detail.join(", "))
            .await;
        self.customer_show(&row.name).await
    }

    /// Refused while the customer owns a domain: its domains are given to
    /// another customer, or removed, first.
    pub async fn customer_remove(&self, actor: &Actor, name: &str) -> Result<()> {
        let row = self.customer_row(name).await?;
        if !self.meta().customer_domains(row.id).await?.is_empty() {
            return Err(AdminError::Conflict(format!(
                "customer {} still owns domains: remove them or give them to another customer first",
                row.name
            )));
        }
        self.meta().remove_customer(row.id).await?;
        self.record(actor, "customer.remove", &row.name, "", String::new())
            .await;
        Ok(())
    }

    async fn customer_row(&self, name: &str) -> Result<CustomerRow> {
        let name = parse_customer_name(name)?;
        self.meta()
            .customer(&name)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no customer {name}")))
    }

    async fn customer_info(&self, row: CustomerRow) -> Result<CustomerInfo> {
        let mut domains = Vec::new();
        for id in self.meta().customer_domains(row.id).await? {
            if let Some(d) = self.meta().domain_by_id(id).await? {
                domains.push(d.display);
            }
        }
        let usage = self.meta().customer_usage(row.id).await?;
        Ok(CustomerInfo { row, domains, usage })
    }

    async fn alias_domains_of(&self, d: &DomainRow) -> Result<Vec<DomainRow>> {
        Ok(self
            .meta()
            .domains()
            .await?
            .into_iter()
            .filter(|a| a.alias_of == Some(d.id))
            .collect())
    }

    /// What a domain (with its alias domains) brings to a customer.
    async fn domain_usage(&self, d: &DomainRow) -> Result<Adding> {
        let accounts = self.meta().accounts(Some(d.id)).await?;
        let aliases = self.meta().aliases(Some(d.id)).await?;
        let mut storage = 0i64;
        let mut unlimited = false;
        for a in &accounts {
            match a.quota.or(d.default_quota) {
                Some(q) => storage = storage.saturating_add(q),
                None => unlimited = true,
            }
        }
        Ok(Adding {
            domains: 1 + self.alias_domains_of(d).await?.len() as i64,
            mailboxes: accounts.len() as i64,
            aliases: aliases.len() as i64,
            storage,
            unlimited,
        })
    }

    /// Refuses a change to a domain's contents that would take its
    /// customer over a cap; a domain with no customer has none.
    pub(crate) async fn check_domain_caps(&self, d: &DomainRow, adding: Adding) -> Result<()> {
        match self.meta().domain_customer(d.id).await? {
            Some(c) => self.check_caps(&c, adding).await,
            None => Ok(()),
        }
    }

    /// The one place caps are compared with usage. Only what a change adds
    /// is checked: a customer already over a lowered cap may still remove
    /// or shrink.
    pub(crate) async fn check_caps(&self, c: &CustomerRow, adding: Adding) -> Result<()> {
        let used = self.meta().customer_usage(c.id).await?;
        let over = |what: &str, cap: i64, used: i64| {
            AdminError::CapReached(format!(
                "customer {}'s {what} cap is reached ({used} of {cap}): ask the provider to raise it",
                c.name
            ))
        };
        let caps = &c.caps;
        if let Some(cap) = caps.max_domains {
            if adding.domains > 0 && used.domains.saturating_add(adding.domains) > cap {
                return Err(over("domains", cap, used.domains));
            }
        }
        if let Some(cap) = caps.max_mailboxes {
            if adding.mailboxes > 0 && used.mailboxes.saturating_add(adding.mailboxes) > cap {
                return Err(over("mailboxes", cap, used.mailboxes));
            }
        }
        if let Some(cap) = caps.max_aliases {
            if adding.aliases > 0 && used.aliases.saturating_add(adding.aliases) > cap {
                return Err(over("aliases", cap, used.aliases));
            }
        }
        if let Some(cap) = caps.max_storage {
            if adding.unlimited {
                return Err(AdminError::CapReached(format!(
                    "customer {} has a storage cap ({cap} bytes): a mailbox needs a quota (its own or the domain's default)",
                    c.name
                )));
            }
            if adding.storage > 0 && used.storage.saturating_add(adding.storage) > cap {
                return Err(AdminError::CapReached(format!(
                    "customer {}'s storage cap is reached: {} of {cap} bytes are given as quotas, {} more asked: ask the provider to raise it",
                    c.name, used.storage, adding.storage
                )));
            }
        }
        Ok(())
    }
}
