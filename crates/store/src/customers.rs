//! Customers (tenants, issue #11): a customer owns domains and has caps
//! set by the provider on how many domains, mailboxes and aliases it may
//! have and on its total storage (the sum of its mailboxes' quotas). The
//! store keeps the caps and counts what a customer uses; the admin service
//! (crates/admin) compares the two before every change that adds to them.

use rusqlite::{params, OptionalExtension};

use crate::directory::now;
use crate::ids::{AccountId, DomainId};
use crate::{Db, Result, StoreError};

/// The caps of a customer; `None` is no cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CustomerCaps {
    pub max_domains: Option<i64>,
    pub max_mailboxes: Option<i64>,
    pub max_aliases: Option<i64>,
    /// Bytes: the most the customer's mailboxes' quotas may add up to.
    pub max_storage: Option<i64>,
}

/// A customer, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerRow {
    pub id: i64,
    /// The key: lower case, as `postroom customer` names it.
    pub name: String,
    pub caps: CustomerCaps,
    /// Unix seconds.
    pub created: i64,
}

/// What a customer uses, counted over the domains it owns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CustomerUsage {
    pub domains: i64,
    pub mailboxes: i64,
    pub aliases: i64,
    /// The sum of the mailboxes' quotas (a mailbox without its own takes
    /// its domain's default), in bytes.
    pub storage: i64,
    /// Mailboxes with no quota at all (neither their own nor a domain
    /// default): unlimited, so over any storage cap.
    pub unlimited_mailboxes: i64,
}

pub(crate) const CUSTOMER_COLS: &str =
    "id, name, max_domains, max_mailboxes, max_aliases, max_storage, created";

fn customer_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CustomerRow> {
    Ok(CustomerRow {
        id: r.get(0)?,
        name: r.get(1)?,
        caps: CustomerCaps {
            max_domains: r.get(2)?,
            max_mailboxes: r.get(3)?,
            max_aliases: r.get(4)?,
            max_storage: r.get(5)?,
        },
        created: r.get(6)?,
    })
}

/// One query for all four counts, the same text on both back ends (only
/// the placeholder differs): `?1`/`$1` is the customer's id. The sum is
/// cast because PostgreSQL sums BIGINTs as NUMERIC.
pub(crate) fn usage_sql(placeholder: &str) -> String {
    format!(
        "SELECT
           (SELECT count(*) FROM customer_domains WHERE customer_id = {p}),
           (SELECT count(*) FROM accounts a JOIN customer_domains c ON c.domain_id = a.domain_id
             WHERE c.customer_id = {p}),
           (SELECT count(*) FROM aliases a JOIN customer_domains c ON c.domain_id = a.domain_id
             WHERE c.customer_id = {p}),
           (SELECT CAST(COALESCE(SUM(COALESCE(a.quota, d.default_quota)), 0) AS BIGINT)
              FROM accounts a JOIN domains d ON d.id = a.domain_id
              JOIN customer_domains c ON c.domain_id = a.domain_id WHERE c.customer_id = {p}),
           (SELECT count(*) FROM accounts a JOIN domains d ON d.id = a.domain_id
              JOIN customer_domains c ON c.domain_id = a.domain_id
             WHERE c.customer_id = {p} AND a.quota IS NULL AND d.default_quota IS NULL)",
        p = placeholder
    )
}

impl Db {
    pub fn add_customer(&self, name: &str, caps: &CustomerCaps) -> Result<CustomerRow> {
        self.write(|tx| {
            let exists: Option<i64> = tx
                .query_row("SELECT id FROM customers WHERE name = ?1", [name], |r| r.get(0))
                .optional()?;
            if exists.is_some() {
                return Err(StoreError::Invalid(format!("customer {name} exists already")));
            }
            tx.execute(
                "INSERT INTO customers (name, max_domains, max_mailboxes, max_aliases, max_storage, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    name,
                    caps.max_domains,
                    caps.max_mailboxes,
                    caps.max_aliases,
                    caps.max_storage,
                    now()
                ],
            )?;
            let id = tx.last_insert_rowid();
            Ok(tx.query_row(
                &format!("SELECT {CUSTOMER_COLS} FROM customers WHERE id = ?1"),
                [id],
                customer_row,
            )?)
        })
    }

    pub fn customer(&self, name: &str) -> Result<Option<CustomerRow>> {
        self.read(|c| {
            Ok(c.query_row(
                &format!("SELECT {CUSTOMER_COLS} FROM customers WHERE name = ?1"),
                [name],
                customer_row,
            )
            .optional()?)
        })
    }

    pub fn customers(&self) -> Result<Vec<CustomerRow>> {
        self.read(|c| {
            let mut st = c.prepare(&format!("SELECT {CUSTOMER_COLS} FROM customers ORDER BY name"))?;
            let rows = st
                .query_map([], customer_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    pub fn set_customer_caps(&self, id: i64, caps: &CustomerCaps) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE customers SET max_domains = ?1, max_mailboxes = ?2, max_aliases = ?3, max_storage = ?4
                 WHERE id = ?5",
                params![
                    caps.max_domains,
                    caps.max_mailboxes,
                    caps.max_aliases,
                    caps.max_storage,
                    id
                ],
            )? > 0)
        })
    }

    /// Refused while the customer owns a domain.
    pub fn remove_customer(&self, id: i64) -> Result<bool> {
        self.write(|tx| {
            let owned: i64 = tx.query_row(
                "SELECT count(*) FROM customer_domains WHERE customer_id = ?1",
                [id],
                |r| r.get(0),
            )?;
            if owned > 0 {
                return Err(StoreError::Conflict("the customer still owns domains"));
            }
            Ok(tx.execute("DELETE FROM customers WHERE id = ?1", [id])? > 0)
        })
    }

    /// Gives a domain to a customer (`Some`), or takes it from its
    /// customer (`None`).
    pub fn set_domain_customer(&self, domain: DomainId, customer: Option<i64>) -> Result<()> {
        self.write(|tx| {
            match customer {
                Some(c) => tx.execute(
                    "INSERT INTO customer_domains (domain_id, customer_id) VALUES (?1, ?2)
                     ON CONFLICT (domain_id) DO UPDATE SET customer_id = excluded.customer_id",
                    params![domain.0, c],
                )?,
                None => tx.execute("DELETE FROM customer_domains WHERE domain_id = ?1", [domain.0])?,
            };
            Ok(())
        })
    }

    pub fn domain_customer(&self, domain: DomainId) -> Result<Option<CustomerRow>> {
        self.read(|c| {
            Ok(c.query_row(
                &format!(
                    "SELECT {} FROM customers WHERE id = (SELECT customer_id FROM customer_domains WHERE domain_id = ?1)",
                    CUSTOMER_COLS
                ),
                [domain.0],
                customer_row,
            )
            .optional()?)
        })
    }

    pub fn customer_domains(&self, customer: i64) -> Result<Vec<DomainId>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT c.domain_id FROM customer_domains c JOIN domains d ON d.id = c.domain_id
                 WHERE c.customer_id = ?1 ORDER BY d.name",
            )?;
            let rows = st
                .query_map([customer], |r| r.get(0).map(DomainId))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    pub fn customer_usage(&self, customer: i64) -> Result<CustomerUsage> {
        self.read(|c| {
            Ok(c.query_row(&usage_sql("?1"), [customer], |r| {
                Ok(CustomerUsage {
                    domains: r.get(0)?,
                    mailboxes: r.get(1)?,
                    aliases: r.get(2)?,
                    storage: r.get(3)?,
                    unlimited_mailboxes: r.get(4)?,
                })
            })?)
        })
    }

    pub fn admin_permissions(&self, account: AccountId) -> Result<i64> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT permissions FROM domain_admin_permissions WHERE account_id = ?1",
                [account.0],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
        })
    }

    pub fn set_admin_permissions(&self, account: AccountId, permissions: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO domain_admin_permissions (account_id, permissions) VALUES (?1, ?2)
                 ON CONFLICT (account_id) DO UPDATE SET permissions = excluded.permissions",
                params![account.0, permissions],
            )?;
            Ok(())
        })
    }

    pub fn provider_permissions(&self, address: &str) -> Result<i64> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT permissions FROM provider_admin_permissions WHERE address = ?1",
                [address],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
        })
    }

    pub fn set_provider_permissions(&self, address: &str, permissions: i64) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                "INSERT INTO provider_admin_permissions (address, permissions)
                 SELECT address, ?2 FROM provider_admins WHERE address = ?1
                 ON CONFLICT (address) DO UPDATE SET permissions = excluded.permissions",
                params![address, permissions],
            )? > 0)
        })
    }
}
