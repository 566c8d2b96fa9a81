//! API tokens (`postroom api-token create|list|revoke`): a random secret
//! sent as `Authorization: Bearer`, acting as a provider admin or a
//! domain admin, with an expiry, optionally read-only and limited to some
//! networks. Only its SHA-256 is stored (256 random bits need no slow
//! hash: there is nothing to guess), and it is shown once. The mail
//! protocols never look at this table, so a token is never a password.

use base64::Engine;
use postroom_core::IpNetList;
use postroom_store::{ApiTokenRow, NewApiToken};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{now, parse_address, Actor, AdminError, AdminService, Result};

/// Tokens start with this, so a leaked one is easy to recognise (secret
/// scanners, logs).
pub const TOKEN_PREFIX: &str = "prt_";

/// The longest a token may live: a year. A token that outlives the person
/// who made it is a door nobody remembers.
pub const MAX_TOKEN_DAYS: i64 = 366;

/// The digest a token is stored and looked up by.
pub fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl AdminService {
    /// Makes a token for `login` (a provider admin, or a mailbox with the
    /// admin flag): returns its row and the token itself, which is not
    /// stored and cannot be shown again.
    pub async fn api_token_create(
        &self,
        actor: &Actor,
        login: &str,
        read_only: bool,
        days: i64,
        allow_from: &[String],
    ) -> Result<(ApiTokenRow, String)> {
        if matches!(actor, Actor::Api { .. }) {
            return Err(AdminError::Forbidden(
                "API tokens are made with `postroom api-token create` on the server".into(),
            ));
        }
        if !(1..=MAX_TOKEN_DAYS).contains(&days) {
            return Err(AdminError::Invalid(format!(
                "a token lives 1 to {MAX_TOKEN_DAYS} days"
            )));
        }
        IpNetList::parse(allow_from).map_err(|e| AdminError::Invalid(format!("--allow-from: {e}")))?;
        let addr = parse_address(login)?;
        let canonical = addr.canonical();
        if self.meta().provider_admin(&canonical).await?.is_none() {
            let (_, a) = self.find_account(&addr).await.map_err(|_| {
                AdminError::Invalid(format!("{addr} is neither a provider admin nor a domain admin"))
            })?;
            if !a.domain_admin {
                return Err(AdminError::Invalid(format!(
                    "{addr} is not a domain admin (postroom user admin {addr})"
                )));
            }
        }
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let row = self
            .meta()
            .add_api_token(&NewApiToken {
                digest: token_digest(&token),
                login: canonical.clone(),
                read_only,
                allow_from: allow_from.join(","),
                expires: now().saturating_add(days * 86_400),
            })
            .await?;
        let detail = format!(
            "id {}, {}, expires {}{}",
            row.id,
            if read_only { "read-only" } else { "read-write" },
            crate::format_utc(row.expires),
            if allow_from.is_empty() {
                String::new()
            } else {
                format!(", from {}", allow_from.join(","))
            }
        );
        self.record(
            actor,
            "token.create",
            &canonical,
            addr.domain().canonical(),
            detail,
        )
        .await;
        Ok((row, token))
    }

    /// Every token, or a login's.
    pub async fn api_tokens(&self, login: Option<&str>) -> Result<Vec<ApiTokenRow>> {
        let login = login.map(parse_address).transpose()?.map(|a| a.canonical());
        Ok(self.meta().api_tokens(login.as_deref()).await?)
    }

    pub async fn api_token_revoke(&self, actor: &Actor, id: i64) -> Result<()> {
        let row = self
            .meta()
            .api_tokens(None)
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| AdminError::NotFound(format!("no API token {id}")))?;
        self.meta().remove_api_token(id).await?;
        let domain = row.login.rsplit('@').next().unwrap_or("").to_string();
        self.record(actor, "token.revoke", &row.login, &domain, format!("id {id}"))
            .await;
        Ok(())
    }

    /// The live token with this secret, if any (not expired; whether it
    /// may be used from the client's address is the caller's check).
    pub async fn api_token_check(&self, token: &str) -> Result<Option<ApiTokenRow>> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 100 {
            return Ok(None);
        }
        Ok(self
            .meta()
            .api_token(&token_digest(token))
            .await?
            .filter(|t| t.expires > now()))
    }
}
