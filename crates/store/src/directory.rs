//! Directory rows: domains, accounts, aliases. Names are stored canonical
//! (the caller canonicalises through `postroom_core::Address`), with the
//! display form beside them.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::ids::{AccountId, AliasId, DomainId};
use crate::roles::SpecialUse;
use crate::{Db, Result, StoreError};

/// The folders every new mailbox gets, with their RFC 6154 special use.
/// Deliveries name roles (`crate::roles`), never these names.
pub const DEFAULT_FOLDERS: [(&str, Option<&str>); 6] = [
    ("INBOX", None),
    ("Sent", Some(SpecialUse::Sent.attribute())),
    ("Drafts", Some(SpecialUse::Drafts.attribute())),
    ("Junk", Some(SpecialUse::Junk.attribute())),
    ("Trash", Some(SpecialUse::Trash.attribute())),
    ("Archive", Some(SpecialUse::Archive.attribute())),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainRow {
    pub id: DomainId,
    pub name: String,
    pub display: String,
    pub alias_of: Option<DomainId>,
    pub subaddress_separator: String,
    pub default_quota: Option<i64>,
    /// Gateway mode: the customer's own server (`host:port`) this domain's
    /// mail is relayed to, by its A/AAAA records, never by MX.
    pub relay_to: Option<String>,
    /// Gateway mode: recipients not in the list are checked by a callout
    /// to `relay_to` (cached) instead of refused.
    pub relay_verify: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRow {
    pub id: AccountId,
    pub domain_id: DomainId,
    pub local: String,
    pub display: String,
    pub password_hash: Option<String>,
    pub quota: Option<i64>,
    pub enabled: bool,
    pub domain_admin: bool,
    /// Outside (or other) addresses every delivery is forwarded to.
    pub forward_to: Vec<String>,
    /// With `forward_to`: keep a copy in the mailbox too.
    pub forward_keep: bool,
    /// Submitted mail is also saved in the account's Sent folder.
    pub sent_copy: bool,
    /// The last successful login (unix seconds), by any protocol.
    pub last_login: Option<i64>,
    /// `user remove`: disabled, and its mail is deleted after this time
    /// (unix seconds).
    pub delete_after: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasRow {
    pub id: AliasId,
    pub domain_id: DomainId,
    /// Canonical local part; empty for the catch-all.
    pub local: String,
    pub display: String,
    pub targets: Vec<String>,
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

const DOMAIN_COLS: &str =
    "id, name, display, alias_of, subaddress_separator, default_quota, relay_to, relay_verify";
pub(crate) const ACCOUNT_COLS: &str = "id, domain_id, local, display, password_hash, quota, enabled, \
                            domain_admin, forward_to, forward_keep, sent_copy, last_login, delete_after";

fn domain_row(r: &Row<'_>) -> rusqlite::Result<DomainRow> {
    Ok(DomainRow {
        id: r.get(0)?,
        name: r.get(1)?,
        display: r.get(2)?,
        alias_of: r.get(3)?,
        subaddress_separator: r.get(4)?,
        default_quota: r.get(5)?,
        relay_to: r.get(6)?,
        relay_verify: r.get::<_, i64>(7)? != 0,
    })
}

pub(crate) fn account_row(r: &Row<'_>) -> rusqlite::Result<AccountRow> {
    Ok(AccountRow {
        id: r.get(0)?,
        domain_id: r.get(1)?,
        local: r.get(2)?,
        display: r.get(3)?,
        password_hash: r.get(4)?,
        quota: r.get(5)?,
        enabled: r.get::<_, i64>(6)? != 0,
        domain_admin: r.get::<_, i64>(7)? != 0,
        forward_to: split_list(&r.get::<_, String>(8)?),
        forward_keep: r.get::<_, i64>(9)? != 0,
        sent_copy: r.get::<_, i64>(10)? != 0,
        last_login: r.get(11)?,
        delete_after: r.get(12)?,
    })
}

pub(crate) fn split_list(s: &str) -> Vec<String> {
    s.split(',').filter(|t| !t.is_empty()).map(String::from).collect()
}

pub(crate) fn alias_row(r: &Row<'_>) -> rusqlite::Result<AliasRow> {
    Ok(AliasRow {
        id: r.get(0)?,
        domain_id: r.get(1)?,
        local: r.get(2)?,
        display: r.get(3)?,
        targets: split_list(&r.get::<_, String>(4)?),
    })
}

// The lookups on every RCPT use cached statements.
fn find_domain(c: &Connection, name: &str) -> Result<Option<DomainRow>> {
    Ok(
        c.prepare_cached(&format!("SELECT {DOMAIN_COLS} FROM domains WHERE name = ?1"))?
            .query_row([name], domain_row)
            .optional()?,
    )
}

/// An alias `import virtual` adds to (or creates in) its domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedAlias {
    /// Canonical domain name.
    pub domain: String,
    /// Canonical local part; empty for the catch-all.
    pub local: String,
    pub display: String,
    pub targets: Vec<String>,
}

fn insert_domain(tx: &Connection, name: &str, display: &str, alias_of: Option<&str>) -> Result<DomainRow> {
    if find_domain(tx, name)?.is_some() {
        return Err(StoreError::Invalid(format!("domain {display} exists already")));
    }
    let target = match alias_of {
        None => None,
        Some(t) => {
            let row = find_domain(tx, t)?
                .ok_or_else(|| StoreError::Invalid(format!("domain {t} does not exist")))?;
            if row.alias_of.is_some() {
                return Err(StoreError::Invalid(format!("{t} is itself an alias domain")));
            }
            Some(row.id)
        }
    };
    tx.execute(
        "INSERT INTO domains (name, display, alias_of, created) VALUES (?1, ?2, ?3, ?4)",
        params![name, display, target, now()],
    )?;
    find_domain(tx, name)?.ok_or_else(|| StoreError::Invalid("domain vanished".into()))
}

pub(crate) fn merge_alias_targets(
    tx: &Connection,
    domain_id: DomainId,
    local: &str,
    display: &str,
    targets: &[String],
) -> Result<AliasRow> {
    let existing = tx
        .query_row(
            "SELECT id, domain_id, local, display, targets FROM aliases WHERE domain_id = ?1 AND local = ?2",
            params![domain_id, local],
            alias_row,
        )
        .optional()?;
    let mut all = existing.as_ref().map(|a| a.targets.clone()).unwrap_or_default();
    for t in targets {
        if !all.iter().any(|x| x.eq_ignore_ascii_case(t)) {
            all.push(t.clone());
        }
    }
    let joined = all.join(",");
    match existing {
        Some(a) => {
            tx.execute(
                "UPDATE aliases SET targets = ?1 WHERE id = ?2",
                params![joined, a.id],
            )?;
        }
        None => {
            tx.execute(
                "INSERT INTO aliases (domain_id, local, display, targets, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![domain_id, local, display, joined, now()],
            )?;
        }
    }
    Ok(tx.query_row(
        "SELECT id, domain_id, local, display, targets FROM aliases WHERE domain_id = ?1 AND local = ?2",
        params![domain_id, local],
        alias_row,
    )?)
}

impl Db {
    pub fn add_domain(&self, name: &str, display: &str, alias_of: Option<&str>) -> Result<DomainRow> {
        self.write(|tx| insert_domain(tx, name, display, alias_of))
    }

    /// Changes a domain's subaddress separator ('' turns subaddressing off)
    /// and default quota (`Some(None)` removes it).
    pub fn update_domain(
        &self,
        id: DomainId,
        separator: Option<&str>,
        default_quota: Option<Option<i64>>,
    ) -> Result<()> {
        self.write(|tx| {
            if let Some(sep) = separator {
                tx.execute(
                    "UPDATE domains SET subaddress_separator = ?1 WHERE id = ?2",
                    params![sep, id],
                )?;
            }
            if let Some(q) = default_quota {
                tx.execute(
                    "UPDATE domains SET default_quota = ?1 WHERE id = ?2",
                    params![q, id],
                )?;
            }
            Ok(())
        })
    }

    pub fn domain(&self, name: &str) -> Result<Option<DomainRow>> {
        self.read(|c| find_domain(c, name))
    }

    pub fn domain_by_id(&self, id: DomainId) -> Result<Option<DomainRow>> {
        self.read(|c| {
            Ok(c.query_row(
                &format!("SELECT {DOMAIN_COLS} FROM domains WHERE id = ?1"),
                [id],
                domain_row,
            )
            .optional()?)
        })
    }

    pub fn domains(&self) -> Result<Vec<DomainRow>> {
        self.read(|c| {
            let mut st = c.prepare(&format!("SELECT {DOMAIN_COLS} FROM domains ORDER BY name"))?;
            let rows = st
                .query_map([], domain_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// Creates a mailbox with its default folders.
    pub fn add_account(
        &self,
        domain_id: DomainId,
        local: &str,
        display: &str,
        password_hash: Option<&str>,
        quota: Option<i64>,
    ) -> Result<AccountRow> {
        self.write(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM accounts WHERE domain_id = ?1 AND local = ?2)",
                params![domain_id, local],
                |r| r.get(0),
            )?;
            if exists {
                return Err(StoreError::Invalid(format!("mailbox {display} exists already")));
            }
            tx.execute(
                "INSERT INTO accounts (domain_id, local, display, password_hash, quota, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![domain_id, local, display, password_hash, quota, now()],
            )?;
            let id = tx.last_insert_rowid();
            for (name, special) in DEFAULT_FOLDERS {
                tx.execute(
                    "INSERT INTO folders (account_id, name, special_use, uidvalidity) VALUES (?1, ?2, ?3, 0)",
                    params![id, name, special],
                )?;
                // The folder's row id never repeats, so it is a UIDVALIDITY
                // that changes whenever a folder of the same name is re-made.
                tx.execute(
                    "UPDATE folders SET uidvalidity = id WHERE id = ?1",
                    [tx.last_insert_rowid()],
                )?;
            }
            Ok(tx.query_row(
                &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?1"),
                [id],
                account_row,
            )?)
        })
    }

    pub fn account(&self, domain_id: DomainId, local: &str) -> Result<Option<AccountRow>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLS} FROM accounts WHERE domain_id = ?1 AND local = ?2"
            ))?
            .query_row(params![domain_id, local], account_row)
            .optional()?)
        })
    }

    pub fn account_by_id(&self, id: AccountId) -> Result<Option<AccountRow>> {
        self.read(|c| {
            Ok(c.query_row(
                &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?1"),
                [id],
                account_row,
            )
            .optional()?)
        })
    }

    /// Accounts of one domain, or of all, oldest first.
    pub fn accounts(&self, domain_id: Option<DomainId>) -> Result<Vec<AccountRow>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {ACCOUNT_COLS} FROM accounts WHERE ?1 IS NULL OR domain_id = ?1 ORDER BY domain_id, id"
            ))?;
            let rows = st.query_map([domain_id], account_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn update_account(&self, id: AccountId, sql: &str, value: rusqlite::types::Value) -> Result<()> {
        self.write(|tx| {
            let n = tx.execute(sql, params![value, id])?;
            if n == 0 {
                return Err(StoreError::Invalid("no such mailbox".into()));
            }
            Ok(())
        })
    }

    pub fn set_password_hash(&self, id: AccountId, hash: &str) -> Result<()> {
        self.update_account(
            id,
            "UPDATE accounts SET password_hash = ?1 WHERE id = ?2",
            hash.to_string().into(),
        )
    }

    pub fn set_enabled(&self, id: AccountId, enabled: bool) -> Result<()> {
        self.update_account(
            id,
            "UPDATE accounts SET enabled = ?1 WHERE id = ?2",
            (enabled as i64).into(),
        )
    }

    pub fn set_domain_admin(&self, id: AccountId, admin: bool) -> Result<()> {
        self.update_account(
            id,
            "UPDATE accounts SET domain_admin = ?1 WHERE id = ?2",
            (admin as i64).into(),
        )
    }

    pub fn set_quota(&self, id: AccountId, quota: Option<i64>) -> Result<()> {
        let v = quota.map_or(rusqlite::types::Value::Null, Into::into);
        self.update_account(id, "UPDATE accounts SET quota = ?1 WHERE id = ?2", v)
    }

    /// Forwarding of a mailbox: every delivery goes to `targets` too (none
    /// turns it off); `keep` keeps a copy in the mailbox.
    pub fn set_forwarding(&self, id: AccountId, targets: &[String], keep: bool) -> Result<()> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE accounts SET forward_to = ?1, forward_keep = ?2 WHERE id = ?3",
                params![targets.join(","), keep as i64, id],
            )?;
            if n == 0 {
                return Err(StoreError::Invalid("no such mailbox".into()));
            }
            Ok(())
        })
    }

    pub fn set_sent_copy(&self, id: AccountId, on: bool) -> Result<()> {
        self.update_account(
            id,
            "UPDATE accounts SET sent_copy = ?1 WHERE id = ?2",
            (on as i64).into(),
        )
    }

    /// Gateway mode: relay this domain's mail to `host:port` (None: host
    /// it here again); `verify` checks unknown recipients by callout.
    pub fn set_domain_relay(&self, id: DomainId, relay_to: Option<&str>, verify: bool) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE domains SET relay_to = ?1, relay_verify = ?2 WHERE id = ?3",
                params![relay_to, verify as i64, id],
            )?;
            Ok(())
        })
    }

    /// The `host:port` a gateway domain's mail goes to (following domain
    /// aliases), or None for a domain delivered here or not hosted.
    pub fn relay_host(&self, domain: &str) -> Result<Option<String>> {
        self.read(|c| {
            let Some(d) = find_domain(c, domain)? else {
                return Ok(None);
            };
            if d.relay_to.is_some() {
                return Ok(d.relay_to);
            }
            match d.alias_of {
                Some(target) => Ok(c
                    .prepare_cached("SELECT relay_to FROM domains WHERE id = ?1")?
                    .query_row([target], |r| r.get::<_, Option<String>>(0))
                    .optional()?
                    .flatten()),
                None => Ok(None),
            }
        })
    }

    pub fn add_relay_recipients(&self, domain_id: DomainId, locals: &[String]) -> Result<usize> {
        self.write(|tx| {
            let mut n = 0;
            for l in locals {
                n += tx.execute(
                    "INSERT OR IGNORE INTO relay_recipients (domain_id, local) VALUES (?1, ?2)",
                    params![domain_id, l],
                )?;
            }
            Ok(n)
        })
    }

    pub fn remove_relay_recipient(&self, domain_id: DomainId, local: &str) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM relay_recipients WHERE domain_id = ?1 AND local = ?2",
                params![domain_id, local],
            )? > 0)
        })
    }

    pub fn is_relay_recipient(&self, domain_id: DomainId, local: &str) -> Result<bool> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT 1 FROM relay_recipients WHERE domain_id = ?1 AND local = ?2")?
                    .query_row(params![domain_id, local], |_| Ok(()))
                    .optional()?
                    .is_some(),
            )
        })
    }

    pub fn relay_recipients(&self, domain_id: DomainId) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st =
                c.prepare("SELECT local FROM relay_recipients WHERE domain_id = ?1 ORDER BY local")?;
            let rows = st
                .query_map([domain_id], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(rows)
        })
    }

    /// A callout answer younger than `max_age` seconds: (accepted, reply).
    pub fn cached_callout(&self, address: &str, max_age: i64) -> Result<Option<(bool, String)>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT accepted, reply FROM callout_cache WHERE address = ?1 AND checked >= ?2",
            )?
            .query_row(params![address, now() - max_age], |r| {
                Ok((r.get::<_, i64>(0)? != 0, r.get(1)?))
            })
            .optional()?)
        })
    }

    pub fn remember_callout(&self, address: &str, accepted: bool, reply: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO callout_cache (address, accepted, reply, checked) VALUES (?1, ?2, ?3, ?4)",
                params![address, accepted as i64, reply, now()],
            )?;
            Ok(())
        })
    }

    /// Adds targets to an alias, creating it if needed.
    pub fn add_alias_targets(
        &self,
        domain_id: DomainId,
        local: &str,
        display: &str,
        targets: &[String],
    ) -> Result<AliasRow> {
        self.write(|tx| merge_alias_targets(tx, domain_id, local, display, targets))
    }

    /// `import virtual`: new domains and alias targets, all in one
    /// transaction, so a failure anywhere leaves nothing imported. Aliases
    /// name their domain (canonical), which may be one of `domains`.
    pub fn import_aliases(&self, domains: &[(String, String)], aliases: &[ImportedAlias]) -> Result<()> {
        self.write(|tx| {
            for (name, display) in domains {
                insert_domain(tx, name, display, None)?;
            }
            for a in aliases {
                let d = find_domain(tx, &a.domain)?
                    .ok_or_else(|| StoreError::Invalid(format!("domain {} does not exist", a.domain)))?;
                merge_alias_targets(tx, d.id, &a.local, &a.display, &a.targets)?;
            }
            Ok(())
        })
    }

    pub fn alias(&self, domain_id: DomainId, local: &str) -> Result<Option<AliasRow>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT id, domain_id, local, display, targets FROM aliases WHERE domain_id = ?1 AND local = ?2",
            )?
            .query_row(params![domain_id, local], alias_row)
            .optional()?)
        })
    }

    pub fn aliases(&self, domain_id: Option<DomainId>) -> Result<Vec<AliasRow>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT id, domain_id, local, display, targets FROM aliases
                 WHERE ?1 IS NULL OR domain_id = ?1 ORDER BY domain_id, local",
            )?;
            let rows = st
                .query_map([domain_id], alias_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    pub fn remove_alias(&self, domain_id: DomainId, local: &str) -> Result<()> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM aliases WHERE domain_id = ?1 AND local = ?2",
                params![domain_id, local],
            )?;
            if n == 0 {
                return Err(StoreError::Invalid("no such alias".into()));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn alias(domain: &str, local: &str, targets: &[&str]) -> ImportedAlias {
        ImportedAlias {
            domain: domain.into(),
            local: local.into(),
            display: local.into(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn an_import_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let db = store.sqlite().unwrap();
        db.add_domain("abc.com", "abc.com", None).unwrap();
        // The second alias names a domain that does not exist: the new
        // domain and the first alias must not stay behind.
        let r = db.import_aliases(
            &[("new.example".into(), "new.example".into())],
            &[
                alias("abc.com", "dev", &["kent@abc.com"]),
                alias("missing.example", "x", &["kent@abc.com"]),
            ],
        );
        assert!(r.is_err());
        assert!(db.aliases(None).unwrap().is_empty());
        assert!(db.domain("new.example").unwrap().is_none());
        db.import_aliases(
            &[("new.example".into(), "new.example".into())],
            &[
                alias("abc.com", "dev", &["kent@abc.com"]),
                alias("new.example", "", &["kent@abc.com"]),
                alias("abc.com", "dev", &["dbrooks@abc.com", "KENT@abc.com"]),
            ],
        )
        .unwrap();
        let abc = db.domain("abc.com").unwrap().unwrap();
        assert_eq!(
            db.alias(abc.id, "dev").unwrap().unwrap().targets,
            ["kent@abc.com", "dbrooks@abc.com"]
        );
        assert_eq!(db.aliases(None).unwrap().len(), 2);
    }
}
