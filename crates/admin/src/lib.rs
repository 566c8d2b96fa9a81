//! The admin service: every change an administrator makes to domains,
//! mailboxes, aliases, DKIM keys and the queue, with the rules that keep the
//! directory sound (hosted names, alias domains, password policy, no
//! forwarding cycles, no alias hidden behind a mailbox). The CLI is a thin
//! shell over it; the HTTP API calls the same functions.
//!
//! Every change names its [`Actor`] and is recorded in the store's audit
//! table right after it commits (the storage traits have no transaction
//! that spans both; a crash between the two loses the audit row, never the
//! change).

mod alias;
mod customer;
mod domain;
mod error;
mod filter;
mod keys;
mod permissions;
mod provider;
mod queue;
mod tokens;
pub mod totp;
mod user;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

use postroom_core::{Address, Domain};
use postroom_directory::Directory;
use postroom_store::directory::{AccountRow, DomainRow};
use postroom_store::{AuditEntry, AuditQuery, AuditRow, Metadata, Store};

pub use alias::AliasInfo;
pub use customer::{parse_customer_name, CustomerChange, CustomerInfo, MAX_CUSTOMER_NAME};
pub use domain::{DomainChange, DomainInfo};
pub use error::AdminError;
pub use filter::{Quarantined, REPORT_DAYS};
pub use keys::txt_record;
pub use permissions::{Grantor, Permissions};
pub use provider::ProviderPermissions;
pub use tokens::{token_digest, MAX_TOKEN_DAYS, TOKEN_PREFIX};
pub use user::{NewPassword, Removal, UserInfo};

pub type Result<T> = std::result::Result<T, AdminError>;

/// Who makes a change, recorded with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// The `postroom` command, run by this local Unix user.
    Cli { unix_user: String },
    /// The HTTP API, logged in as `login`, from `ip`.
    Api { login: String, ip: IpAddr },
    /// The server itself (the deletion of removed mailboxes' mail).
    System,
}

impl Actor {
    fn who(&self) -> String {
        match self {
            Actor::Cli { unix_user } => format!("cli:{unix_user}"),
            Actor::Api { login, .. } => format!("api:{login}"),
            Actor::System => "system".into(),
        }
    }

    fn origin(&self) -> String {
        match self {
            Actor::Cli { .. } => "cli".into(),
            Actor::Api { ip, .. } => ip.to_string(),
            Actor::System => "server".into(),
        }
    }
}

/// The settings the rules depend on, from the configuration.
#[derive(Clone, Debug)]
pub struct Policy {
    /// `server.hostname`: a hosted domain may not be the server's own name.
    pub hostname: String,
    /// `auth.min_password_length`.
    pub min_password_length: usize,
    /// How long `user remove` keeps a mailbox's mail before deleting it.
    pub removal_grace_secs: i64,
}

/// A week: long enough to notice the wrong mailbox was removed (a
/// weekend and a working week's start), short enough that a removed
/// customer's mail does not linger.
pub const REMOVAL_GRACE_SECS: i64 = 7 * 24 * 3600;

/// How often a conditional write may find the directory changed before the
/// service gives up; each round re-runs the cycle check. Admin changes are
/// rare, so two in a row colliding five times means something is looping.
pub const MAX_ATTEMPTS: usize = 5;

/// At most this many audit rows per read (the console pages through them).
pub const MAX_AUDIT_ROWS: usize = 1000;

/// An audit row's detail is cut at this many bytes: a list's members are
/// worth recording, a 300 KB row per change is not.
pub const MAX_AUDIT_DETAIL: usize = 4096;

/// The most targets one alias may have (all in one row, comma-separated):
/// 10,000 addresses of about 30 bytes make a 300 KB row, read at every
/// RCPT to the alias; a list bigger than that wants a list manager.
pub const MAX_TARGETS: usize = 10_000;

/// The longest password or hash accepted, in bytes (as the CLI reads it
/// from standard input): argon2 hashes any length, and an API caller
/// should not make it hash megabytes.
pub const MAX_PASSWORD_BYTES: usize = 4096;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            hostname: "localhost".into(),
            min_password_length: 8,
            removal_grace_secs: REMOVAL_GRACE_SECS,
        }
    }
}

type Hook = Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

/// The admin operations over a store and its directory.
#[derive(Clone)]
pub struct AdminService {
    store: Store,
    dir: Directory,
    policy: Policy,
    /// Tests: runs between the cycle check and the conditional write, to
    /// make a concurrent change there.
    between_check_and_write: Option<Hook>,
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl AdminService {
    pub fn new(store: Store, dir: Directory, policy: Policy) -> AdminService {
        AdminService {
            store,
            dir,
            policy,
            between_check_and_write: None,
        }
    }

    /// A service whose directory is the store's own (no `server.postmaster`:
    /// the admin rules do not need it).
    pub fn for_store(store: Store, policy: Policy) -> AdminService {
        let dir = Directory::new(store.meta_handle(), None);
        AdminService::new(store, dir, policy)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn meta(&self) -> &dyn Metadata {
        self.store.meta()
    }

    #[cfg(test)]
    pub(crate) fn race_with(&mut self, hook: Hook) {
        self.between_check_and_write = Some(hook);
    }

    async fn before_write(&self) {
        if let Some(h) = &self.between_check_and_write {
            h().await;
        }
    }

    /// Records a change made by `actor`. The change has committed: a
    /// failure here is logged, not returned, so the caller does not redo
    /// what was done.
    async fn record(&self, actor: &Actor, operation: &str, object: &str, domain: &str, detail: String) {
        let mut detail = detail;
        if detail.len() > MAX_AUDIT_DETAIL {
            let mut cut = MAX_AUDIT_DETAIL;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
            detail.push('…');
        }
        let entry = AuditEntry {
            actor: actor.who(),
            origin: actor.origin(),
            operation: operation.into(),
            object: object.into(),
            domain: domain.into(),
            detail,
        };
        tracing::info!(target: "admin", who = %entry.actor, from = %entry.origin, operation, object,
            domain, detail = %entry.detail, "admin change");
        if let Err(e) = self.meta().record_audit(&entry).await {
            tracing::error!(error = %e, operation, object, "admin change made but not recorded in the audit table");
        }
    }

    /// Recorded changes, newest first (at most [`MAX_AUDIT_ROWS`]).
    pub async fn audit(
        &self,
        object: Option<&str>,
        domain: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRow>> {
        let domain = match domain {
            Some(d) => Some(parse_domain(d)?.canonical().to_string()),
            None => None,
        };
        let q = AuditQuery {
            object: object.map(String::from),
            domain,
            limit: limit.clamp(1, MAX_AUDIT_ROWS),
        };
        Ok(self.meta().audit_log(&q).await?)
    }

    /// A hosted domain's row (alias and gateway domains included).
    async fn hosted(&self, domain: &Domain) -> Result<DomainRow> {
        self.meta()
            .domain(domain.canonical())
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("domain {domain} is not hosted here")))
    }

    /// The domain an address's mailboxes and aliases live in: refused for
    /// an alias domain (they live in its target).
    async fn home_domain(&self, domain: &Domain) -> Result<DomainRow> {
        let d = self.hosted(domain).await?;
        if let Some(target) = d.alias_of {
            let t = self.meta().domain_by_id(target).await?.ok_or_else(|| {
                AdminError::Invalid(format!("{} is an alias of a missing domain", d.display))
            })?;
            return Err(AdminError::Invalid(format!(
                "{} is an alias of {}: use {} instead",
                d.display, t.display, t.display
            )));
        }
        Ok(d)
    }

    async fn find_account(&self, addr: &Address) -> Result<(DomainRow, AccountRow)> {
        let d = self.home_domain(addr.domain()).await?;
        let a = self
            .meta()
            .account(d.id, addr.local_canonical())
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no mailbox {addr}")))?;
        Ok((d, a))
    }
}

/// An address as an administrator typed it.
pub fn parse_address(s: &str) -> Result<Address> {
    Address::parse(s.trim(), true).map_err(|e| AdminError::Invalid(format!("`{s}` is not an address ({e})")))
}

pub fn parse_domain(s: &str) -> Result<Domain> {
    Domain::parse(s.trim()).map_err(|e| AdminError::Invalid(format!("`{s}`: {e}")))
}

/// `2G`, `500M`, `100K`, `1T` (powers of 1024) or bytes.
pub fn parse_size(s: &str) -> Result<i64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1i64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        Some('T') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| AdminError::Invalid(format!("`{s}` is not a size (e.g. 2G, 500M)")))
}

/// A quota as typed: a size, or `none` for no limit.
pub fn parse_quota(s: &str) -> Result<Option<i64>> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    parse_size(s).map(Some)
}

/// The targets of an alias, forward or recipient list: separated by commas
/// (spaces around them are ignored), each one address or a local part of
/// `domain`. A target with a space inside is refused, not split into
/// several local targets.
pub fn qualify_targets(list: &str, domain: &Domain) -> Result<Vec<String>> {
    if list.split(',').nth(MAX_TARGETS).is_some() {
        return Err(AdminError::Invalid(format!("more than {MAX_TARGETS} targets")));
    }
    list.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let full = if t.contains('@') {
                t.to_string()
            } else {
                format!("{t}@{}", domain.canonical())
            };
            Address::parse(&full, true)
                .map(|a| a.to_string())
                .map_err(|e| AdminError::Invalid(format!("target `{t}` is not an address ({e})")))
        })
        .collect()
}

/// Unix seconds as `2026-12-07 20:50:00 UTC`, for `user show` and the
/// audit listing.
pub fn format_utc(secs: i64) -> String {
    use chrono::{Datelike, Timelike};
    match chrono::DateTime::from_timestamp(secs, 0) {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        None => format!("@{secs}"),
    }
}
