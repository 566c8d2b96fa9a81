//! Directory rows (domains, accounts, aliases, gateway recipients, the
//! callout cache, DKIM keys) on PostgreSQL: `crate::directory` and
//! `crate::dkim` for this back end.

use async_trait::async_trait;
use tokio_postgres::{GenericClient, Row};

use super::{now, Postgres};
use crate::admin::{AuditEntry, AuditQuery, AuditRow};
use crate::backend::{AdminMeta, DirectoryMeta};
use crate::directory::{split_list, AccountRow, AliasRow, DomainRow, ImportedAlias, DEFAULT_FOLDERS};
use crate::dkim::DkimKeyRow;
use crate::ids::{AccountId, AliasId, DirectoryVersion, DomainId};
use crate::{Result, StoreError};

const DOMAIN_COLS: &str =
    "id, name, display, alias_of, subaddress_separator, default_quota, relay_to, relay_verify";
const ACCOUNT_COLS: &str = "id, domain_id, local, display, password_hash, quota, enabled, domain_admin, \
                            forward_to, forward_keep, sent_copy, last_login, delete_after";
const ALIAS_COLS: &str = "id, domain_id, local, display, targets";

fn domain_row(r: &Row) -> Result<DomainRow> {
    Ok(DomainRow {
        id: DomainId(r.try_get(0)?),
        name: r.try_get(1)?,
        display: r.try_get(2)?,
        alias_of: r.try_get::<_, Option<i64>>(3)?.map(DomainId),
        subaddress_separator: r.try_get(4)?,
        default_quota: r.try_get(5)?,
        relay_to: r.try_get(6)?,
        relay_verify: r.try_get(7)?,
    })
}

fn account_row(r: &Row) -> Result<AccountRow> {
    Ok(AccountRow {
        id: AccountId(r.try_get(0)?),
        domain_id: DomainId(r.try_get(1)?),
        local: r.try_get(2)?,
        display: r.try_get(3)?,
        password_hash: r.try_get(4)?,
        quota: r.try_get(5)?,
        enabled: r.try_get(6)?,
        domain_admin: r.try_get(7)?,
        forward_to: split_list(r.try_get(8)?),
        forward_keep: r.try_get(9)?,
        sent_copy: r.try_get(10)?,
        last_login: r.try_get(11)?,
        delete_after: r.try_get(12)?,
    })
}

fn alias_row(r: &Row) -> Result<AliasRow> {
    Ok(AliasRow {
        id: AliasId(r.try_get(0)?),
        domain_id: DomainId(r.try_get(1)?),
        local: r.try_get(2)?,
        display: r.try_get(3)?,
        targets: split_list(r.try_get(4)?),
    })
}

async fn find_domain<C: GenericClient + Sync>(c: &C, name: &str) -> Result<Option<DomainRow>> {
    c.query_opt(
        &format!("SELECT {DOMAIN_COLS} FROM domains WHERE name = $1"),
        &[&name],
    )
    .await?
    .as_ref()
    .map(domain_row)
    .transpose()
}

/// Serialises the writes that check names before they insert domains
/// (SQLite has one writer; here `add_domain` and `import_aliases` would
/// otherwise both pass the check and one fail on the unique index).
async fn lock_domains<C: GenericClient + Sync>(c: &C) -> Result<()> {
    c.batch_execute("LOCK TABLE domains IN SHARE ROW EXCLUSIVE MODE")
        .await?;
    Ok(())
}

async fn insert_domain<C: GenericClient + Sync>(
    tx: &C,
    name: &str,
    display: &str,
    alias_of: Option<&str>,
) -> Result<DomainRow> {
    if find_domain(tx, name).await?.is_some() {
        return Err(StoreError::Invalid(format!("domain {display} exists already")));
    }
    let target = match alias_of {
        None => None,
        Some(t) => {
            let row = find_domain(tx, t)
                .await?
                .ok_or_else(|| StoreError::Invalid(format!("domain {t} does not exist")))?;
            if row.alias_of.is_some() {
                return Err(StoreError::Invalid(format!("{t} is itself an alias domain")));
            }
            Some(row.id.0)
        }
    };
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO domains (name, display, alias_of, created) VALUES ($1, $2, $3, $4) RETURNING {DOMAIN_COLS}"
            ),
            &[&name, &display, &target, &now()],
        )
        .await?;
    domain_row(&row)
}

async fn merge_alias_targets<C: GenericClient + Sync>(
    tx: &C,
    domain_id: DomainId,
    local: &str,
    display: &str,
    targets: &[String],
) -> Result<AliasRow> {
    let existing = tx
        .query_opt(
            &format!("SELECT {ALIAS_COLS} FROM aliases WHERE domain_id = $1 AND local = $2 FOR UPDATE"),
            &[&domain_id.0, &local],
        )
        .await?
        .as_ref()
        .map(alias_row)
        .transpose()?;
    let mut all = existing.as_ref().map(|a| a.targets.clone()).unwrap_or_default();
    for t in targets {
        if !all.iter().any(|x| x.eq_ignore_ascii_case(t)) {
            all.push(t.clone());
        }
    }
    let joined = all.join(",");
    let row = match existing {
        Some(a) => {
            tx.query_one(
                &format!("UPDATE aliases SET targets = $1 WHERE id = $2 RETURNING {ALIAS_COLS}"),
                &[&joined, &a.id.0],
            )
            .await?
        }
        None => {
            // Two admins adding the first target at once: the second adds
            // to the row the first made.
            tx.query_one(
                &format!(
                    "INSERT INTO aliases (domain_id, local, display, targets, created) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (domain_id, local) DO UPDATE SET targets = aliases.targets || ',' || excluded.targets
                     RETURNING {ALIAS_COLS}"
                ),
                &[&domain_id.0, &local, &display, &joined, &now()],
            )
            .await?
        }
    };
    alias_row(&row)
}

impl Postgres {
    /// One UPDATE of an account's column; "no such mailbox" when it is gone.
    async fn update_account(
        &self,
        id: AccountId,
        sql: &str,
        value: &(dyn tokio_postgres::types::ToSql + Sync),
    ) -> Result<()> {
        let c = self.client().await?;
        let n = c.execute(sql, &[value, &id.0]).await?;
        if n == 0 {
            return Err(StoreError::Invalid("no such mailbox".into()));
        }
        self.committed(&[]);
        Ok(())
    }
}

#[async_trait]
impl DirectoryMeta for Postgres {
    async fn domain(&self, name: &str) -> Result<Option<DomainRow>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!("SELECT {DOMAIN_COLS} FROM domains WHERE name = $1"))
            .await?;
        c.query_opt(&st, &[&name])
            .await?
            .as_ref()
            .map(domain_row)
            .transpose()
    }

    async fn domain_by_id(&self, id: DomainId) -> Result<Option<DomainRow>> {
        let c = self.client().await?;
        c.query_opt(
            &format!("SELECT {DOMAIN_COLS} FROM domains WHERE id = $1"),
            &[&id.0],
        )
        .await?
        .as_ref()
        .map(domain_row)
        .transpose()
    }

    async fn domains(&self) -> Result<Vec<DomainRow>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("SELECT {DOMAIN_COLS} FROM domains ORDER BY name COLLATE \"C\""),
                &[],
            )
            .await?;
        rows.iter().map(domain_row).collect()
    }

    async fn account(&self, domain: DomainId, local: &str) -> Result<Option<AccountRow>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {ACCOUNT_COLS} FROM accounts WHERE domain_id = $1 AND local = $2"
            ))
            .await?;
        c.query_opt(&st, &[&domain.0, &local])
            .await?
            .as_ref()
            .map(account_row)
            .transpose()
    }

    async fn account_by_id(&self, id: AccountId) -> Result<Option<AccountRow>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = $1"))
            .await?;
        c.query_opt(&st, &[&id.0])
            .await?
            .as_ref()
            .map(account_row)
            .transpose()
    }

    async fn accounts(&self, domain: Option<DomainId>) -> Result<Vec<AccountRow>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {ACCOUNT_COLS} FROM accounts WHERE $1::BIGINT IS NULL OR domain_id = $1 ORDER BY domain_id, id"
                ),
                &[&domain.map(|d| d.0)],
            )
            .await?;
        rows.iter().map(account_row).collect()
    }

    async fn alias(&self, domain: DomainId, local: &str) -> Result<Option<AliasRow>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {ALIAS_COLS} FROM aliases WHERE domain_id = $1 AND local = $2"
            ))
            .await?;
        c.query_opt(&st, &[&domain.0, &local])
            .await?
            .as_ref()
            .map(alias_row)
            .transpose()
    }

    async fn aliases(&self, domain: Option<DomainId>) -> Result<Vec<AliasRow>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {ALIAS_COLS} FROM aliases WHERE $1::BIGINT IS NULL OR domain_id = $1 ORDER BY domain_id, local COLLATE \"C\""
                ),
                &[&domain.map(|d| d.0)],
            )
            .await?;
        rows.iter().map(alias_row).collect()
    }

    async fn relay_host(&self, domain: &str) -> Result<Option<String>> {
        let c = self.client().await?;
        let Some(d) = find_domain(&**c, domain).await? else {
            return Ok(None);
        };
        if d.relay_to.is_some() {
            return Ok(d.relay_to);
        }
        match d.alias_of {
            Some(target) => Ok(c
                .query_opt("SELECT relay_to FROM domains WHERE id = $1", &[&target.0])
                .await?
                .map(|r| r.try_get::<_, Option<String>>(0))
                .transpose()?
                .flatten()),
            None => Ok(None),
        }
    }

    async fn is_relay_recipient(&self, domain: DomainId, local: &str) -> Result<bool> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT 1 FROM relay_recipients WHERE domain_id = $1 AND local = $2")
            .await?;
        Ok(c.query_opt(&st, &[&domain.0, &local]).await?.is_some())
    }

    async fn relay_recipients(&self, domain: DomainId) -> Result<Vec<String>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT local FROM relay_recipients WHERE domain_id = $1 ORDER BY local COLLATE \"C\"",
                &[&domain.0],
            )
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    async fn cached_callout(&self, address: &str, max_age: i64) -> Result<Option<(bool, String)>> {
        let c = self.client().await?;
        c.query_opt(
            "SELECT accepted, reply FROM callout_cache WHERE address = $1 AND checked >= $2",
            &[&address, &(now() - max_age)],
        )
        .await?
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
    }

    async fn remember_callout(&self, address: &str, accepted: bool, reply: &str) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO callout_cache (address, accepted, reply, checked) VALUES ($1, $2, $3, $4)
             ON CONFLICT (address) DO UPDATE SET accepted = excluded.accepted, reply = excluded.reply,
                 checked = excluded.checked",
            &[&address, &accepted, &reply, &now()],
        )
        .await?;
        self.committed(&[]);
        Ok(())
    }

    async fn set_password_hash(&self, id: AccountId, hash: &str) -> Result<()> {
        self.update_account(id, "UPDATE accounts SET password_hash = $1 WHERE id = $2", &hash)
            .await
    }

    async fn dkim_keys(&self, domain: DomainId) -> Result<Vec<DkimKeyRow>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id, domain_id, selector, algorithm, private_key, public_key FROM dkim_keys
                 WHERE domain_id = $1 AND active ORDER BY id DESC",
                &[&domain.0],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DkimKeyRow {
                    id: r.try_get(0)?,
                    domain_id: DomainId(r.try_get(1)?),
                    selector: r.try_get(2)?,
                    algorithm: r.try_get(3)?,
                    private_key: postroom_core::Secret::new(r.try_get(4)?),
                    public_key: r.try_get(5)?,
                })
            })
            .collect()
    }

    async fn record_login(&self, id: AccountId, at: i64) -> Result<()> {
        let c = self.client().await?;
        c.execute("UPDATE accounts SET last_login = $1 WHERE id = $2", &[&at, &id.0])
            .await?;
        Ok(())
    }
}

#[async_trait]
impl AdminMeta for Postgres {
    async fn add_domain(&self, name: &str, display: &str, alias_of: Option<&str>) -> Result<DomainRow> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        lock_domains(&*tx).await?;
        let row = insert_domain(&*tx, name, display, alias_of).await?;
        tx.commit().await?;
        self.committed(&[]);
        Ok(row)
    }

    async fn update_domain(
        &self,
        id: DomainId,
        separator: Option<&str>,
        default_quota: Option<Option<i64>>,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        if let Some(sep) = separator {
            tx.execute(
                "UPDATE domains SET subaddress_separator = $1 WHERE id = $2",
                &[&sep, &id.0],
            )
            .await?;
        }
        if let Some(q) = default_quota {
            tx.execute(
                "UPDATE domains SET default_quota = $1 WHERE id = $2",
                &[&q, &id.0],
            )
            .await?;
        }
        tx.commit().await?;
        self.committed(&[]);
        Ok(())
    }

    async fn add_account(
        &self,
        domain: DomainId,
        local: &str,
        display: &str,
        password_hash: Option<&str>,
        quota: Option<i64>,
    ) -> Result<AccountRow> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // The domain's row is locked: two `user add` of one name at once
        // get "exists already", not a unique-index error. (A domain that
        // does not exist fails on the foreign key below, as in SQLite.)
        tx.execute("SELECT 1 FROM domains WHERE id = $1 FOR UPDATE", &[&domain.0])
            .await?;
        let exists: bool = tx
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM accounts WHERE domain_id = $1 AND local = $2)",
                &[&domain.0, &local],
            )
            .await?
            .try_get(0)?;
        if exists {
            return Err(StoreError::Invalid(format!("mailbox {display} exists already")));
        }
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO accounts (domain_id, local, display, password_hash, quota, created)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ACCOUNT_COLS}"
                ),
                &[&domain.0, &local, &display, &password_hash, &quota, &now()],
            )
            .await?;
        let account = account_row(&row)?;
        for (name, special) in DEFAULT_FOLDERS {
            // The folder's id never repeats, so it is a UIDVALIDITY that
            // changes whenever a folder of the same name is re-made.
            tx.execute(
                "INSERT INTO folders (id, account_id, name, special_use, uidvalidity)
                 SELECT n, $1, $2, $3, n FROM (SELECT nextval(pg_get_serial_sequence('folders', 'id')) AS n) s",
                &[&account.id.0, &name, &special],
            )
            .await?;
        }
        tx.commit().await?;
        self.committed(&[]);
        Ok(account)
    }

    async fn set_enabled(&self, id: AccountId, enabled: bool) -> Result<()> {
        self.update_account(id, "UPDATE accounts SET enabled = $1 WHERE id = $2", &enabled)
            .await
    }

    async fn set_domain_admin(&self, id: AccountId, admin: bool) -> Result<()> {
        self.update_account(id, "UPDATE accounts SET domain_admin = $1 WHERE id = $2", &admin)
            .await
    }

    async fn set_quota(&self, id: AccountId, quota: Option<i64>) -> Result<()> {
        self.update_account(id, "UPDATE accounts SET quota = $1 WHERE id = $2", &quota)
            .await
    }

    async fn set_forwarding(&self, id: AccountId, targets: &[String], keep: bool) -> Result<()> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE accounts SET forward_to = $1, forward_keep = $2 WHERE id = $3",
                &[&targets.join(","), &keep, &id.0],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::Invalid("no such mailbox".into()));
        }
        self.committed(&[]);
        Ok(())
    }

    async fn set_sent_copy(&self, id: AccountId, on: bool) -> Result<()> {
        self.update_account(id, "UPDATE accounts SET sent_copy = $1 WHERE id = $2", &on)
            .await
    }

    async fn set_domain_relay(&self, id: DomainId, relay_to: Option<&str>, verify: bool) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "UPDATE domains SET relay_to = $1, relay_verify = $2 WHERE id = $3",
            &[&relay_to, &verify, &id.0],
        )
        .await?;
        self.committed(&[]);
        Ok(())
    }

    async fn add_relay_recipients(&self, domain: DomainId, locals: &[String]) -> Result<usize> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let mut n = 0;
        for l in locals {
            n += tx
                .execute(
                    "INSERT INTO relay_recipients (domain_id, local) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&domain.0, l],
                )
                .await? as usize;
        }
        tx.commit().await?;
        self.committed(&[]);
        Ok(n)
    }

    async fn remove_relay_recipient(&self, domain: DomainId, local: &str) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                "DELETE FROM relay_recipients WHERE domain_id = $1 AND local = $2",
                &[&domain.0, &local],
            )
            .await?;
        self.committed(&[]);
        Ok(n > 0)
    }

    async fn add_alias_targets(
        &self,
        domain: DomainId,
        local: &str,
        display: &str,
        targets: &[String],
    ) -> Result<AliasRow> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let row = merge_alias_targets(&*tx, domain, local, display, targets).await?;
        tx.commit().await?;
        self.committed(&[]);
        Ok(row)
    }

    async fn import_aliases(&self, domains: &[(String, String)], aliases: &[ImportedAlias]) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        lock_domains(&*tx).await?;
        for (name, display) in domains {
            insert_domain(&*tx, name, display, None).await?;
        }
        for a in aliases {
            let d = find_domain(&*tx, &a.domain)
                .await?
                .ok_or_else(|| StoreError::Invalid(format!("domain {} does not exist", a.domain)))?;
            merge_alias_targets(&*tx, d.id, &a.local, &a.display, &a.targets).await?;
        }
        tx.commit().await?;
        self.committed(&[]);
        Ok(())
    }

    async fn remove_alias(&self, domain: DomainId, local: &str) -> Result<()> {
        let c = self.client().await?;
        let n = c
            .execute(
                "DELETE FROM aliases WHERE domain_id = $1 AND local = $2",
                &[&domain.0, &local],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::Invalid("no such alias".into()));
        }
        self.committed(&[]);
        Ok(())
    }

    async fn add_dkim_key(
        &self,
        domain: DomainId,
        selector: &str,
        algorithm: &str,
        private_key: &[u8],
        public_key: &str,
    ) -> Result<()> {
        let c = self.client().await?;
        // The unique index decides between two adds at once.
        let n = c
            .execute(
                "INSERT INTO dkim_keys (domain_id, selector, algorithm, private_key, public_key, created)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (domain_id, selector) DO NOTHING",
                &[
                    &domain.0,
                    &selector,
                    &algorithm,
                    &private_key,
                    &public_key,
                    &now(),
                ],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::Invalid(format!("selector {selector} exists already")));
        }
        self.committed(&[]);
        Ok(())
    }

    async fn message_count(&self, account: AccountId) -> Result<i64> {
        let c = self.client().await?;
        Ok(c.query_one(
            "SELECT COUNT(*) FROM messages m JOIN folders f ON m.folder_id = f.id WHERE f.account_id = $1",
            &[&account.0],
        )
        .await?
        .try_get(0)?)
    }

    async fn directory_version(&self) -> Result<DirectoryVersion> {
        let c = self.client().await?;
        Ok(DirectoryVersion(
            c.query_one("SELECT version FROM directory_version WHERE id = 1", &[])
                .await?
                .try_get(0)?,
        ))
    }

    async fn add_alias_targets_if(
        &self,
        domain: DomainId,
        local: &str,
        display: &str,
        targets: &[String],
        expected: DirectoryVersion,
    ) -> Result<AliasRow> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        expect_version(&*tx, expected).await?;
        let row = merge_alias_targets(&*tx, domain, local, display, targets).await?;
        tx.commit().await?;
        self.committed(&[]);
        Ok(row)
    }

    async fn set_forwarding_if(
        &self,
        id: AccountId,
        targets: &[String],
        keep: bool,
        expected: DirectoryVersion,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        expect_version(&*tx, expected).await?;
        let n = tx
            .execute(
                "UPDATE accounts SET forward_to = $1, forward_keep = $2 WHERE id = $3",
                &[&targets.join(","), &keep, &id.0],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::Invalid("no such mailbox".into()));
        }
        tx.commit().await?;
        self.committed(&[]);
        Ok(())
    }

    async fn remove_alias_targets(
        &self,
        domain: DomainId,
        local: &str,
        members: &[String],
    ) -> Result<Option<AliasRow>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let a = tx
            .query_opt(
                &format!("SELECT {ALIAS_COLS} FROM aliases WHERE domain_id = $1 AND local = $2 FOR UPDATE"),
                &[&domain.0, &local],
            )
            .await?
            .as_ref()
            .map(alias_row)
            .transpose()?
            .ok_or_else(|| StoreError::Invalid("no such alias".into()))?;
        let left: Vec<String> = a
            .targets
            .iter()
            .filter(|t| !members.iter().any(|m| m.eq_ignore_ascii_case(t)))
            .cloned()
            .collect();
        let now = if left.is_empty() {
            tx.execute("DELETE FROM aliases WHERE id = $1", &[&a.id.0])
                .await?;
            None
        } else {
            let row = tx
                .query_one(
                    &format!("UPDATE aliases SET targets = $1 WHERE id = $2 RETURNING {ALIAS_COLS}"),
                    &[&left.join(","), &a.id.0],
                )
                .await?;
            Some(alias_row(&row)?)
        };
        tx.commit().await?;
        self.committed(&[]);
        Ok(now)
    }

    async fn schedule_account_removal(&self, id: AccountId, delete_after: i64) -> Result<()> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE accounts SET enabled = FALSE, delete_after = $1 WHERE id = $2",
                &[&delete_after, &id.0],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::Invalid("no such mailbox".into()));
        }
        self.committed(&[]);
        Ok(())
    }

    async fn accounts_due_for_removal(&self, now: i64) -> Result<Vec<AccountRow>> {
        let c = self.client().await?;
        c.query(
            &format!(
                "SELECT {ACCOUNT_COLS} FROM accounts WHERE delete_after IS NOT NULL AND delete_after <= $1"
            ),
            &[&now],
        )
        .await?
        .iter()
        .map(account_row)
        .collect()
    }

    async fn remove_account(&self, id: AccountId) -> Result<Vec<String>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let folders: Vec<i64> = tx
            .query(
                "SELECT id FROM folders WHERE account_id = $1 FOR UPDATE",
                &[&id.0],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        let blobs: Vec<String> = tx
            .query(
                "DELETE FROM messages WHERE folder_id = ANY($1) RETURNING blob_id",
                &[&folders],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        tx.execute("DELETE FROM expunged WHERE folder_id = ANY($1)", &[&folders])
            .await?;
        tx.execute("DELETE FROM sent_copies WHERE folder_id = ANY($1)", &[&folders])
            .await?;
        tx.execute("DELETE FROM folders WHERE account_id = $1", &[&id.0])
            .await?;
        if tx.execute("DELETE FROM accounts WHERE id = $1", &[&id.0]).await? == 0 {
            return Err(StoreError::Invalid("no such mailbox".into()));
        }
        let unused = super::unreferenced(&*tx, blobs).await?;
        tx.commit().await?;
        let ids: Vec<crate::FolderId> = folders.into_iter().map(crate::FolderId).collect();
        self.committed(&ids);
        Ok(unused)
    }

    async fn rename_account(
        &self,
        id: AccountId,
        domain: DomainId,
        local: &str,
        display: &str,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let taken: bool = tx
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM accounts WHERE domain_id = $1 AND local = $2)
                     OR EXISTS(SELECT 1 FROM aliases WHERE domain_id = $1 AND local = $2)",
                &[&domain.0, &local],
            )
            .await?
            .try_get(0)?;
        if taken {
            return Err(StoreError::Invalid(format!("{display} exists already")));
        }
        let n = tx
            .execute(
                "UPDATE accounts SET domain_id = $1, local = $2, display = $3 WHERE id = $4",
                &[&domain.0, &local, &display, &id.0],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::Invalid("no such mailbox".into()));
        }
        tx.commit().await?;
        self.committed(&[]);
        Ok(())
    }

    async fn remove_domain(&self, id: DomainId) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        lock_domains(&*tx).await?;
        let busy: bool = tx
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM accounts WHERE domain_id = $1)
                     OR EXISTS(SELECT 1 FROM domains WHERE alias_of = $1)",
                &[&id.0],
            )
            .await?
            .try_get(0)?;
        if busy {
            return Err(StoreError::Invalid(
                "the domain still has mailboxes or alias domains".into(),
            ));
        }
        tx.execute("DELETE FROM aliases WHERE domain_id = $1", &[&id.0])
            .await?;
        tx.execute("DELETE FROM relay_recipients WHERE domain_id = $1", &[&id.0])
            .await?;
        tx.execute("DELETE FROM dkim_keys WHERE domain_id = $1", &[&id.0])
            .await?;
        if tx.execute("DELETE FROM domains WHERE id = $1", &[&id.0]).await? == 0 {
            return Err(StoreError::Invalid("no such domain".into()));
        }
        tx.commit().await?;
        self.committed(&[]);
        Ok(())
    }

    async fn record_audit(&self, e: &AuditEntry) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO audit (at, actor, origin, operation, object, domain, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &now(),
                &e.actor,
                &e.origin,
                &e.operation,
                &e.object,
                &e.domain,
                &e.detail,
            ],
        )
        .await?;
        Ok(())
    }

    async fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let c = self.client().await?;
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        c.query(
            "SELECT id, at, actor, origin, operation, object, domain, detail FROM audit
             WHERE ($1::TEXT IS NULL OR object = $1) AND ($2::TEXT IS NULL OR domain = $2)
             ORDER BY id DESC LIMIT $3",
            &[&q.object, &q.domain, &limit],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(AuditRow {
                id: r.try_get(0)?,
                at: r.try_get(1)?,
                entry: AuditEntry {
                    actor: r.try_get(2)?,
                    origin: r.try_get(3)?,
                    operation: r.try_get(4)?,
                    object: r.try_get(5)?,
                    domain: r.try_get(6)?,
                    detail: r.try_get(7)?,
                },
            })
        })
        .collect()
    }
}

/// Inside a transaction: refuses when the directory moved since the caller
/// read `expected`. The row lock makes a concurrent change wait for this
/// transaction (or this one for it), so the check and the write are one.
async fn expect_version<C: GenericClient + Sync>(tx: &C, expected: DirectoryVersion) -> Result<()> {
    let now: i64 = tx
        .query_one(
            "SELECT version FROM directory_version WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await?
        .try_get(0)?;
    if now != expected.0 {
        return Err(StoreError::Conflict("the directory changed since it was checked"));
    }
    Ok(())
}
