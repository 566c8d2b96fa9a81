//! What the admin service needs beyond single-row changes: the directory
//! version that makes its cycle check safe without a transaction API,
//! mailbox and domain removal, renames, and the audit trail.

use rusqlite::{params, OptionalExtension};

use crate::directory::{
    account_row, alias_row, merge_alias_targets, now, AccountRow, AliasRow, ACCOUNT_COLS,
};
use crate::ids::{AccountId, DirectoryVersion, DomainId};
use crate::{Db, Result, Store, StoreError};

/// One admin change, as the service records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Who: `cli:<unix user>`, `api:<login>`.
    pub actor: String,
    /// From where: `cli`, or the API client's IP address.
    pub origin: String,
    /// What was done, e.g. `user.add`, `alias.members.remove`.
    pub operation: String,
    /// The address or domain changed (display form).
    pub object: String,
    /// The canonical domain of the object ('' for server-wide changes).
    pub domain: String,
    /// Anything else worth keeping (targets, quota); never a password.
    pub detail: String,
}

/// A recorded change with its time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    pub entry: AuditEntry,
}

/// Which audit rows to read back, newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub object: Option<String>,
    pub domain: Option<String>,
    /// At most this many rows (the service caps it).
    pub limit: usize,
}

fn version(c: &rusqlite::Connection) -> Result<DirectoryVersion> {
    Ok(
        c.prepare_cached("SELECT version FROM directory_version WHERE id = 1")?
            .query_row([], |r| r.get(0))?,
    )
}

/// Inside a write transaction: refuses when the directory moved since the
/// caller read `expected`.
fn expect_version(tx: &rusqlite::Connection, expected: DirectoryVersion) -> Result<()> {
    if version(tx)? != expected {
        return Err(StoreError::Conflict("the directory changed since it was checked"));
    }
    Ok(())
}

fn load_alias(c: &rusqlite::Connection, domain_id: DomainId, local: &str) -> Result<Option<AliasRow>> {
    Ok(c.query_row(
        "SELECT id, domain_id, local, display, targets FROM aliases WHERE domain_id = ?1 AND local = ?2",
        params![domain_id, local],
        alias_row,
    )
    .optional()?)
}

/// Deletes an account, its folders and messages; returns the bodies no row
/// refers to any more.
fn delete_account(tx: &rusqlite::Connection, id: AccountId) -> Result<Vec<String>> {
    let mut blobs = Vec::new();
    {
        let mut st = tx.prepare(
            "DELETE FROM messages WHERE folder_id IN (SELECT id FROM folders WHERE account_id = ?1)
             RETURNING blob_id",
        )?;
        let rows = st.query_map([id], |r| r.get::<_, String>(0))?;
        for b in rows {
            blobs.push(b?);
        }
    }
    tx.execute(
        "DELETE FROM expunged WHERE folder_id IN (SELECT id FROM folders WHERE account_id = ?1)",
        [id],
    )?;
    tx.execute(
        "DELETE FROM sent_copies WHERE folder_id IN (SELECT id FROM folders WHERE account_id = ?1)",
        [id],
    )?;
    tx.execute("DELETE FROM folders WHERE account_id = ?1", [id])?;
    if tx.execute("DELETE FROM accounts WHERE id = ?1", [id])? == 0 {
        return Err(StoreError::Invalid("no such mailbox".into()));
    }
    Ok(crate::blob::unreferenced(tx, blobs)?)
}

impl Db {
    pub fn directory_version(&self) -> Result<DirectoryVersion> {
        self.read(version)
    }

    /// [`Db::add_alias_targets`], only if the directory is still at
    /// `expected` ([`StoreError::Conflict`] otherwise).
    pub fn add_alias_targets_if(
        &self,
        domain_id: DomainId,
        local: &str,
        display: &str,
        targets: &[String],
        expected: DirectoryVersion,
    ) -> Result<AliasRow> {
        self.write(|tx| {
            expect_version(tx, expected)?;
            merge_alias_targets(tx, domain_id, local, display, targets)
        })
    }

    /// [`Db::set_forwarding`], only if the directory is still at `expected`.
    pub fn set_forwarding_if(
        &self,
        id: AccountId,
        targets: &[String],
        keep: bool,
        expected: DirectoryVersion,
    ) -> Result<()> {
        self.write(|tx| {
            expect_version(tx, expected)?;
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

    /// Removes members of an alias (compared without regard to ASCII
    /// case, as they are added); an alias left with none is removed.
    /// Returns the alias as it is now, or None when it was removed.
    pub fn remove_alias_targets(
        &self,
        domain_id: DomainId,
        local: &str,
        members: &[String],
    ) -> Result<Option<AliasRow>> {
        self.write(|tx| {
            let a = load_alias(tx, domain_id, local)?
                .ok_or_else(|| StoreError::Invalid("no such alias".into()))?;
            let left: Vec<String> = a
                .targets
                .iter()
                .filter(|t| !members.iter().any(|m| m.eq_ignore_ascii_case(t)))
                .cloned()
                .collect();
            if left.is_empty() {
                tx.execute("DELETE FROM aliases WHERE id = ?1", [a.id])?;
                return Ok(None);
            }
            tx.execute(
                "UPDATE aliases SET targets = ?1 WHERE id = ?2",
                params![left.join(","), a.id],
            )?;
            load_alias(tx, domain_id, local)
        })
    }

    /// Disables a mailbox and schedules the deletion of its mail.
    pub fn schedule_account_removal(&self, id: AccountId, delete_after: i64) -> Result<()> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE accounts SET enabled = 0, delete_after = ?1 WHERE id = ?2",
                params![delete_after, id],
            )?;
            if n == 0 {
                return Err(StoreError::Invalid("no such mailbox".into()));
            }
            Ok(())
        })
    }

    /// Mailboxes whose removal is due at `now`.
    pub fn accounts_due_for_removal(&self, now: i64) -> Result<Vec<AccountRow>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {ACCOUNT_COLS} FROM accounts WHERE delete_after IS NOT NULL AND delete_after <= ?1"
            ))?;
            let rows = st
                .query_map([now], account_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// Deletes a mailbox with its folders and mail at once.
    pub fn remove_account(&self, id: AccountId) -> Result<Vec<String>> {
        self.write(|tx| delete_account(tx, id))
    }

    /// Gives a mailbox a new address; its folders (their ids, hence
    /// UIDVALIDITY) and messages (UIDs) stay as they are.
    pub fn rename_account(
        &self,
        id: AccountId,
        domain_id: DomainId,
        local: &str,
        display: &str,
    ) -> Result<()> {
        self.write(|tx| {
            let taken: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM accounts WHERE domain_id = ?1 AND local = ?2)
                     OR EXISTS(SELECT 1 FROM aliases WHERE domain_id = ?1 AND local = ?2)",
                params![domain_id, local],
                |r| r.get(0),
            )?;
            if taken {
                return Err(StoreError::Invalid(format!("{display} exists already")));
            }
            let n = tx.execute(
                "UPDATE accounts SET domain_id = ?1, local = ?2, display = ?3 WHERE id = ?4",
                params![domain_id, local, display, id],
            )?;
            if n == 0 {
                return Err(StoreError::Invalid("no such mailbox".into()));
            }
            Ok(())
        })
    }

    /// Removes a domain with its aliases, gateway recipients and DKIM
    /// keys. Refused while it has mailboxes or alias domains (the caller
    /// removes those first).
    pub fn remove_domain(&self, id: DomainId) -> Result<()> {
        self.write(|tx| {
            let busy: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM accounts WHERE domain_id = ?1)
                     OR EXISTS(SELECT 1 FROM domains WHERE alias_of = ?1)",
                [id],
                |r| r.get(0),
            )?;
            if busy {
                return Err(StoreError::Invalid(
                    "the domain still has mailboxes or alias domains".into(),
                ));
            }
            tx.execute("DELETE FROM aliases WHERE domain_id = ?1", [id])?;
            tx.execute("DELETE FROM relay_recipients WHERE domain_id = ?1", [id])?;
            tx.execute("DELETE FROM dkim_keys WHERE domain_id = ?1", [id])?;
            if tx.execute("DELETE FROM domains WHERE id = ?1", [id])? == 0 {
                return Err(StoreError::Invalid("no such domain".into()));
            }
            Ok(())
        })
    }

    /// A successful login (any protocol).
    pub fn record_login(&self, id: AccountId, at: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE accounts SET last_login = ?1 WHERE id = ?2",
                params![at, id],
            )?;
            Ok(())
        })
    }

    pub fn record_audit(&self, e: &AuditEntry) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO audit (at, actor, origin, operation, object, domain, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    now(),
                    e.actor,
                    e.origin,
                    e.operation,
                    e.object,
                    e.domain,
                    e.detail
                ],
            )?;
            Ok(())
        })
    }

    /// Audit rows, newest first.
    pub fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT id, at, actor, origin, operation, object, domain, detail FROM audit
                 WHERE (?1 IS NULL OR object = ?1) AND (?2 IS NULL OR domain = ?2)
                 ORDER BY id DESC LIMIT ?3",
            )?;
            let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
            let rows = st
                .query_map(params![q.object, q.domain, limit], |r| {
                    Ok(AuditRow {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        entry: AuditEntry {
                            actor: r.get(2)?,
                            origin: r.get(3)?,
                            operation: r.get(4)?,
                            object: r.get(5)?,
                            domain: r.get(6)?,
                            detail: r.get(7)?,
                        },
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }
}

impl Store {
    /// Deletes a mailbox and its mail now; the bodies go to the purge
    /// thread.
    pub async fn remove_account(&self, id: AccountId) -> Result<()> {
        let blobs = self.meta.remove_account(id).await?;
        self.delete_blobs(blobs);
        Ok(())
    }
}
