//! The provider's administrators: staff who log in to the web console and
//! manage every domain (`postroom admin add|list|remove`). They log in to
//! nothing else: IMAP, POP3 and SMTP know only mailboxes.

use postroom_store::ProviderAdminRow;

use crate::{parse_address, Actor, AdminError, AdminService, NewPassword, Result};

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
