//! Customers and the domains they own on PostgreSQL: `crate::customers`
//! for this back end.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{now, Postgres};
use crate::backend::CustomerMeta;
use crate::customers::{usage_sql, CustomerCaps, CustomerRow, CustomerUsage, CUSTOMER_COLS};
use crate::ids::{AccountId, DomainId};
use crate::{Result, StoreError};

fn customer_row(r: &Row) -> Result<CustomerRow> {
    Ok(CustomerRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        caps: CustomerCaps {
            max_domains: r.try_get(2)?,
            max_mailboxes: r.try_get(3)?,
            max_aliases: r.try_get(4)?,
            max_storage: r.try_get(5)?,
        },
        created: r.try_get(6)?,
    })
}

#[async_trait]
impl CustomerMeta for Postgres {
    async fn add_customer(&self, name: &str, caps: &CustomerCaps) -> Result<CustomerRow> {
        let c = self.client().await?;
        // ON CONFLICT: two adds at once get "exists already", not a
        // unique-index error.
        let row = c
            .query_opt(
                &format!(
                    "INSERT INTO customers (name, max_domains, max_mailboxes, max_aliases, max_storage, created)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING
                     RETURNING {CUSTOMER_COLS}"
                ),
                &[
                    &name,
                    &caps.max_domains,
                    &caps.max_mailboxes,
                    &caps.max_aliases,
                    &caps.max_storage,
                    &now(),
                ],
            )
            .await?;
        match row {
            Some(r) => customer_row(&r),
            None => Err(StoreError::Invalid(format!("customer {name} exists already"))),
        }
    }

    async fn customer(&self, name: &str) -> Result<Option<CustomerRow>> {
        let c = self.client().await?;
        c.query_opt(
            &format!("SELECT {CUSTOMER_COLS} FROM customers WHERE name = $1"),
            &[&name],
        )
        .await?
        .as_ref()
        .map(customer_row)
        .transpose()
    }

    async fn customers(&self) -> Result<Vec<CustomerRow>> {
        let c = self.client().await?;
        c.query(
            &format!("SELECT {CUSTOMER_COLS} FROM customers ORDER BY name"),
            &[],
        )
        .await?
        .iter()
        .map(customer_row)
        .collect()
    }

    async fn set_customer_caps(&self, id: i64, caps: &CustomerCaps) -> Result<bool> {
        let c = self.client().await?;
        Ok(c.execute(
            "UPDATE customers SET max_domains = $1, max_mailboxes = $2, max_aliases = $3, max_storage = $4
             WHERE id = $5",
            &[
                &caps.max_domains,
                &caps.max_mailboxes,
                &caps.max_aliases,
                &caps.max_storage,
                &id,
            ],
        )
        .await?
            > 0)
    }

    async fn remove_customer(&self, id: i64) -> Result<bool> {
        let c = self.client().await?;
        // One statement: a domain given to the customer meanwhile keeps
        // the row (the NOT EXISTS is evaluated with the DELETE).
        let removed = c
            .execute(
                "DELETE FROM customers WHERE id = $1
                   AND NOT EXISTS (SELECT 1 FROM customer_domains WHERE customer_id = $1)",
                &[&id],
            )
            .await?;
        if removed > 0 {
            return Ok(true);
        }
        let owns = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM customer_domains WHERE customer_id = $1)",
                &[&id],
            )
            .await?
            .try_get::<_, bool>(0)?;
        if owns {
            return Err(StoreError::Conflict("the customer still owns domains"));
        }
        Ok(false)
    }

    async fn set_domain_customer(&self, domain: DomainId, customer: Option<i64>) -> Result<()> {
        let c = self.client().await?;
        match customer {
            Some(id) => {
                c.execute(
                    "INSERT INTO customer_domains (domain_id, customer_id) VALUES ($1, $2)
                     ON CONFLICT (domain_id) DO UPDATE SET customer_id = excluded.customer_id",
                    &[&domain.0, &id],
                )
                .await?
            }
            None => {
                c.execute("DELETE FROM customer_domains WHERE domain_id = $1", &[&domain.0])
                    .await?
            }
        };
        Ok(())
    }

    async fn domain_customer(&self, domain: DomainId) -> Result<Option<CustomerRow>> {
        let c = self.client().await?;
        c.query_opt(
            &format!(
                "SELECT {CUSTOMER_COLS} FROM customers
                  WHERE id = (SELECT customer_id FROM customer_domains WHERE domain_id = $1)"
            ),
            &[&domain.0],
        )
        .await?
        .as_ref()
        .map(customer_row)
        .transpose()
    }

    async fn customer_domains(&self, customer: i64) -> Result<Vec<DomainId>> {
        let c = self.client().await?;
        c.query(
            "SELECT c.domain_id FROM customer_domains c JOIN domains d ON d.id = c.domain_id
              WHERE c.customer_id = $1 ORDER BY d.name",
            &[&customer],
        )
        .await?
        .iter()
        .map(|r| Ok(DomainId(r.try_get(0)?)))
        .collect()
    }

    async fn customer_usage(&self, customer: i64) -> Result<CustomerUsage> {
        let c = self.client().await?;
        let r = c.query_one(&usage_sql("$1"), &[&customer]).await?;
        Ok(CustomerUsage {
            domains: r.try_get(0)?,
            mailboxes: r.try_get(1)?,
            aliases: r.try_get(2)?,
            storage: r.try_get(3)?,
            unlimited_mailboxes: r.try_get(4)?,
        })
    }

    async fn admin_permissions(&self, account: AccountId) -> Result<i64> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT permissions FROM domain_admin_permissions WHERE account_id = $1",
            &[&account.0],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0))
    }

    async fn set_admin_permissions(&self, account: AccountId, permissions: i64) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO domain_admin_permissions (account_id, permissions) VALUES ($1, $2)
             ON CONFLICT (account_id) DO UPDATE SET permissions = excluded.permissions",
            &[&account.0, &permissions],
        )
        .await?;
        Ok(())
    }

    async fn provider_permissions(&self, address: &str) -> Result<i64> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT permissions FROM provider_admin_permissions WHERE address = $1",
            &[&address],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0))
    }

    async fn set_provider_permissions(&self, address: &str, permissions: i64) -> Result<bool> {
        let c = self.client().await?;
        Ok(c.execute(
            "INSERT INTO provider_admin_permissions (address, permissions)
             SELECT address, $2 FROM provider_admins WHERE address = $1
             ON CONFLICT (address) DO UPDATE SET permissions = excluded.permissions",
            &[&address, &permissions],
        )
        .await?
            > 0)
    }
}
