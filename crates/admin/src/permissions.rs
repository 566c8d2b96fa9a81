//! Domain admins' permission flags (issue #11): a domain admin is a
//! mailbox with the admin flag (`user admin`); what it may do beyond its
//! domain's mailboxes and aliases is a set of flags the provider gives.
//! The rules, here so the CLI, API and console share them:
//! - nobody grants a permission they do not hold (a domain admin may make
//!   another admin of its own domain with at most its own flags);
//! - nobody changes their own role or flags (no self-raise);
//! - a domain admin reaches only its own domain (and its alias domains);
//! - the flags are read from the store at each use, never from a session.

use postroom_store::directory::DomainRow;
use postroom_store::AccountId;

use crate::{parse_address, Actor, AdminError, AdminService, Result};

/// A set of permission flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Permissions(pub i64);

impl Permissions {
    /// Its domain's quarantine: release and delete held mail.
    pub const QUARANTINE: Permissions = Permissions(1);
    /// Its domain's spam policy (thresholds, whitelists).
    pub const SPAM_POLICY: Permissions = Permissions(1 << 1);
    /// Forwarding mailboxes to addresses outside the customer's domains.
    pub const FORWARD_OUTSIDE: Permissions = Permissions(1 << 2);
    /// Mailboxes' quotas (within the customer's storage cap).
    pub const QUOTAS: Permissions = Permissions(1 << 3);
    /// A gateway domain's settings (next hop, recipients).
    pub const GATEWAY: Permissions = Permissions(1 << 4);

    /// Each flag with its name (as the CLI and API spell it).
    pub const NAMED: [(&'static str, Permissions); 5] = [
        ("quarantine", Permissions::QUARANTINE),
        ("spam-policy", Permissions::SPAM_POLICY),
        ("forward-outside", Permissions::FORWARD_OUTSIDE),
        ("quotas", Permissions::QUOTAS),
        ("gateway", Permissions::GATEWAY),
    ];

    const ALL: i64 = (1 << 5) - 1;

    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    /// A comma-separated list of names (`quotas,forward-outside`), `none`
    /// or empty for none, `all` for every flag.
    pub fn parse(list: &str) -> Result<Permissions> {
        let mut bits = 0;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let name = name.to_ascii_lowercase();
            if name == "none" {
                continue;
            }
            if name == "all" {
                bits |= Self::ALL;
                continue;
            }
            match Self::NAMED.iter().find(|(n, _)| *n == name) {
                Some((_, p)) => bits |= p.0,
                None => {
                    let known: Vec<&str> = Self::NAMED.iter().map(|(n, _)| *n).collect();
                    return Err(AdminError::Invalid(format!(
                        "`{name}` is not a permission ({})",
                        known.join(", ")
                    )));
                }
            }
        }
        Ok(Permissions(bits))
    }

    pub fn names(self) -> Vec<&'static str> {
        Self::NAMED
            .iter()
            .filter(|(_, p)| self.contains(*p))
            .map(|(n, _)| *n)
            .collect()
    }
}

impl std::fmt::Display for Permissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = self.names();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// Who gives a role: the provider (its staff, or the CLI on the server),
/// or a domain admin, named by its account, whose own role and flags
/// are read from the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grantor {
    Provider,
    DomainAdmin { account: AccountId },
}

impl AdminService {
    /// A mailbox's permission flags (none unless it is a domain admin).
    pub async fn admin_permissions(&self, address: &str) -> Result<Permissions> {
        let (_, a) = self.find_account(&parse_address(address)?).await?;
        if !a.domain_admin {
            return Ok(Permissions::default());
        }
        Ok(Permissions(self.meta().admin_permissions(a.id).await?))
    }

    /// The domain admin's own flags, read from the store now; refused
    /// when the account is no longer a domain admin.
    async fn grantor_row(&self, account: AccountId) -> Result<(DomainRow, Permissions)> {
        let a = self
            .meta()
            .account_by_id(account)
            .await?
            .filter(|a| a.domain_admin && a.enabled)
            .ok_or_else(|| AdminError::Forbidden("you are no longer a domain admin".into()))?;
        let d = self
            .meta()
            .domain_by_id(a.domain_id)
            .await?
            .ok_or_else(|| AdminError::Forbidden("your domain is gone".into()))?;
        Ok((d, Permissions(self.meta().admin_permissions(a.id).await?)))
    }

    /// Refuses unless the grantor holds `needed` (the provider holds
    /// every permission).
    pub async fn require_permission(&self, grantor: Grantor, needed: Permissions) -> Result<()> {
        let Grantor::DomainAdmin { account } = grantor else {
            return Ok(());
        };
        let (_, held) = self.grantor_row(account).await?;
        if held.contains(needed) {
            return Ok(());
        }
        Err(AdminError::Forbidden(format!(
            "you do not hold the {} permission: ask the provider",
            Permissions(needed.0 & !held.0)
        )))
    }

    /// Makes a mailbox a domain admin with these flags, changes its flags,
    /// or (`admin` false) ends its role. A domain admin may do this only
    /// in its own domain, never to itself, and only with flags it holds.
    pub async fn user_set_role(
        &self,
        actor: &Actor,
        grantor: Grantor,
        address: &str,
        admin: bool,
        permissions: Permissions,
    ) -> Result<Permissions> {
        let (d, a) = self.find_account(&parse_address(address)?).await?;
        if let Grantor::DomainAdmin { account } = grantor {
            let (own_domain, held) = self.grantor_row(account).await?;
            if own_domain.id != d.id {
                // As the API answers for a domain it does not manage.
                return Err(AdminError::NotFound(format!("no mailbox {address}")));
            }
            if account == a.id {
                return Err(AdminError::Forbidden(
                    "nobody changes their own role or permissions: ask the provider".into(),
                ));
            }
            if !held.contains(permissions) {
                return Err(AdminError::Forbidden(format!(
                    "you cannot grant a permission you do not hold ({})",
                    Permissions(permissions.0 & !held.0)
                )));
            }
            // Nor take away more than it could give back: a domain admin
            // changes only admins whose flags are within its own.
            let theirs = Permissions(self.meta().admin_permissions(a.id).await?);
            if a.domain_admin && !held.contains(theirs) {
                return Err(AdminError::Forbidden(
                    "this admin holds permissions you do not: ask the provider".into(),
                ));
            }
        }
        let permissions = if admin {
            permissions
        } else {
            Permissions::default()
        };
        self.meta().set_domain_admin(a.id, admin).await?;
        self.meta().set_admin_permissions(a.id, permissions.0).await?;
        let object = format!("{}@{}", a.display, d.display);
        let detail = if admin {
            format!("domain admin, permissions {permissions}")
        } else {
            "no longer a domain admin".into()
        };
        self.record(actor, "user.role", &object, &d.name, detail).await;
        Ok(permissions)
    }
}
