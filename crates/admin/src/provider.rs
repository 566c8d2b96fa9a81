//! The provider's administrators: staff who log in to the web console and
//! manage every domain (`postroom admin add|list|remove`). They log in to
//! nothing else: IMAP, POP3 and SMTP know only mailboxes.

use postroom_store::directory::DomainRow;
use postroom_store::ProviderAdminRow;

use crate::{parse_address, parse_domain, Actor, AdminError, AdminService, NewPassword, Result};

impl AdminService {
    /// Adds a provider administrator with a typed password (checked
    /// against `auth.min_password_length` and hashed with argon2, as
    /// mailbox passwords are).
    pub async fn provider_admin_add(
        &self,
        actor: &Actor,
        address: &str,
        pw: NewPassword,
    ) -> Result<ProviderAdminRow> {
        if matches!(actor, Actor::Api { .. }) {
            // A provider admin is made on the server's own console (the
            // CLI), so that a stolen console session cannot make itself
            // a lasting account.
            return Err(AdminError::Forbidden(
                "provider admins are added with `postroom admin add` on the server".into(),
            ));
        }
        let addr = parse_address(address)?;
        let canonical = addr.canonical();
        if self.meta().provider_admin(&canonical).await?.is_some() {
            return Err(AdminError::AlreadyExists(format!(
                "provider admin {addr} exists already"
            )));
        }
        let hash = self.hash(pw).await?;
        let display = addr.to_string();
        let row = self
            .meta()
            .add_provider_admin(&canonical, &display, &hash)
            .await?;
        self.record(actor, "admin.add", &display, "", String::new()).await;
        Ok(row)
    }

    pub async fn provider_admins(&self) -> Result<Vec<ProviderAdminRow>> {
        Ok(self.meta().provider_admins().await?)
    }

    /// The provider admin with this login (any case), if there is one.
    pub async fn provider_admin(&self, address: &str) -> Result<Option<ProviderAdminRow>> {
        let Ok(addr) = parse_address(address) else {
            return Ok(None);
        };
        Ok(self.meta().provider_admin(&addr.canonical()).await?)
    }

    pub async fn provider_admin_passwd(&self, actor: &Actor, address: &str, pw: NewPassword) -> Result<()> {
        let addr = parse_address(address)?;
        let hash = self.hash(pw).await?;
        if !self
            .meta()
            .set_provider_admin_password(&addr.canonical(), &hash)
            .await?
        {
            return Err(AdminError::NotFound(format!("no provider admin {addr}")));
        }
        self.record(actor, "admin.passwd", &addr.to_string(), "", String::new())
            .await;
        Ok(())
    }

    pub async fn provider_admin_remove(&self, actor: &Actor, address: &str) -> Result<()> {
        let addr = parse_address(address)?;
        if !self.meta().remove_provider_admin(&addr.canonical()).await? {
            return Err(AdminError::NotFound(format!("no provider admin {addr}")));
        }
        self.record(actor, "admin.remove", &addr.to_string(), "", String::new())
            .await;
        Ok(())
    }
}

/// A provider admin's permissions beyond managing every domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProviderPermissions(pub i64);

impl ProviderPermissions {
    /// "Manage this domain": act in the console and API as the domain's
    /// admin would, within a domain admin's limits, every use audited.
    pub const MANAGE_DOMAINS: ProviderPermissions = ProviderPermissions(1);

    pub fn contains(self, other: ProviderPermissions) -> bool {
        self.0 & other.0 == other.0
    }
}

impl AdminService {
    pub async fn provider_permissions(&self, address: &str) -> Result<ProviderPermissions> {
        let addr = parse_address(address)?;
        Ok(ProviderPermissions(
            self.meta().provider_permissions(&addr.canonical()).await?,
        ))
    }

    /// Gives or takes "manage this domain". From the server's CLI only:
    /// a provider session may not give itself more.
    pub async fn provider_admin_set_manage_domains(
        &self,
        actor: &Actor,
        address: &str,
        on: bool,
    ) -> Result<()> {
        if matches!(actor, Actor::Api { .. }) {
            return Err(AdminError::Forbidden(
                "provider admins' permissions are set with `postroom admin set` on the server".into(),
            ));
        }
        let addr = parse_address(address)?;
        let mut p = self.meta().provider_permissions(&addr.canonical()).await?;
        if on {
            p |= ProviderPermissions::MANAGE_DOMAINS.0;
        } else {
            p &= !ProviderPermissions::MANAGE_DOMAINS.0;
        }
        if !self.meta().set_provider_permissions(&addr.canonical(), p).await? {
            return Err(AdminError::NotFound(format!("no provider admin {addr}")));
        }
        self.record(
            actor,
            "admin.set",
            &addr.to_string(),
            "",
            format!("manage-domains {on}"),
        )
        .await;
        Ok(())
    }

    /// A provider admin starts (or, `domain` None, ends) acting as a
    /// domain's admin: refused without the permission (read from the
    /// store now); every start and end is in the audit log with who,
    /// which domain, when and from where (the actor's address).
    pub async fn provider_act_as(
        &self,
        actor: &Actor,
        login: &str,
        domain: Option<&str>,
    ) -> Result<Option<DomainRow>> {
        let Some(domain) = domain else {
            self.record(actor, "domain.act-as.end", login, "", String::new())
                .await;
            return Ok(None);
        };
        let held = self.provider_permissions(login).await?;
        if self.provider_admin(login).await?.is_none() || !held.contains(ProviderPermissions::MANAGE_DOMAINS)
        {
            return Err(AdminError::Forbidden(
                "you do not hold the manage-domains permission: ask for `postroom admin set --manage-domains`"
                    .into(),
            ));
        }
        let d = self.home_domain(&parse_domain(domain)?).await?;
        self.record(
            actor,
            "domain.act-as",
            &d.display,
            &d.name,
            format!("{login} acts as the domain's admin"),
        )
        .await;
        Ok(Some(d))
    }
}
