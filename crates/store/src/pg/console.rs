//! The provider's administrators and API tokens on PostgreSQL: `crate::console` for this
//! back end.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{now, Postgres};
use crate::backend::ConsoleMeta;
use crate::console::{ApiTokenRow, NewApiToken, ProviderAdminRow, API_TOKEN_COLS, PROVIDER_ADMIN_COLS};
use crate::{Result, StoreError};

fn admin_row(r: &Row) -> Result<ProviderAdminRow> {
    Ok(ProviderAdminRow {
        id: r.try_get(0)?,
        address: r.try_get(1)?,
        display: r.try_get(2)?,
        password_hash: r.try_get(3)?,
        created: r.try_get(4)?,
    })
}

fn token_row(r: &Row) -> Result<ApiTokenRow> {
    Ok(ApiTokenRow {
        id: r.try_get(0)?,
        digest: r.try_get(1)?,
        login: r.try_get(2)?,
        read_only: r.try_get(3)?,
        allow_from: r.try_get(4)?,
        expires: r.try_get(5)?,
        created: r.try_get(6)?,
    })
}

#[async_trait]
impl ConsoleMeta for Postgres {
    async fn add_provider_admin(&self, address: &str, display: &str, hash: &str) -> Result<ProviderAdminRow> {
        let c = self.client().await?;
        // ON CONFLICT: two adds at once get "exists already", not a
        // unique-index error.
        let row = c
            .query_opt(
                &format!(
                    "INSERT INTO provider_admins (address, display, password_hash, created)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (address) DO NOTHING
                     RETURNING {PROVIDER_ADMIN_COLS}"
                ),
                &[&address, &display, &hash, &now()],
            )
            .await?;
        match row {
            Some(r) => admin_row(&r),
            None => Err(StoreError::Invalid(format!(
                "provider admin {display} exists already"
            ))),
        }
    }

    async fn provider_admin(&self, address: &str) -> Result<Option<ProviderAdminRow>> {
        let c = self.client().await?;
        c.query_opt(
            &format!("SELECT {PROVIDER_ADMIN_COLS} FROM provider_admins WHERE address = $1"),
            &[&address],
        )
        .await?
        .as_ref()
        .map(admin_row)
        .transpose()
    }

    async fn provider_admins(&self) -> Result<Vec<ProviderAdminRow>> {
        let c = self.client().await?;
        c.query(
            &format!("SELECT {PROVIDER_ADMIN_COLS} FROM provider_admins ORDER BY address"),
            &[],
        )
        .await?
        .iter()
        .map(admin_row)
        .collect()
    }

    async fn set_provider_admin_password(&self, address: &str, hash: &str) -> Result<bool> {
        let c = self.client().await?;
        Ok(c.execute(
            "UPDATE provider_admins SET password_hash = $1 WHERE address = $2",
            &[&hash, &address],
        )
        .await?
            > 0)
    }

    async fn remove_provider_admin(&self, address: &str) -> Result<bool> {
        let c = self.client().await?;
        Ok(
            c.execute("DELETE FROM provider_admins WHERE address = $1", &[&address])
                .await?
                > 0,
        )
    }

    async fn add_api_token(&self, t: &NewApiToken) -> Result<ApiTokenRow> {
        let c = self.client().await?;
        let r = c
            .query_one(
                &format!(
                    "INSERT INTO api_tokens (digest, login, read_only, allow_from, expires, created)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {API_TOKEN_COLS}"
                ),
                &[
                    &t.digest,
                    &t.login,
                    &t.read_only,
                    &t.allow_from,
                    &t.expires,
                    &now(),
                ],
            )
            .await?;
        token_row(&r)
    }

    async fn api_token(&self, digest: &str) -> Result<Option<ApiTokenRow>> {
        let c = self.client().await?;
        c.query_opt(
            &format!("SELECT {API_TOKEN_COLS} FROM api_tokens WHERE digest = $1"),
            &[&digest],
        )
        .await?
        .as_ref()
        .map(token_row)
        .transpose()
    }

    async fn api_tokens(&self, login: Option<&str>) -> Result<Vec<ApiTokenRow>> {
        let c = self.client().await?;
        c.query(
            &format!(
                "SELECT {API_TOKEN_COLS} FROM api_tokens WHERE ($1::TEXT IS NULL OR login = $1) ORDER BY id"
            ),
            &[&login],
        )
        .await?
        .iter()
        .map(token_row)
        .collect()
    }

    async fn remove_api_token(&self, id: i64) -> Result<bool> {
        let c = self.client().await?;
        Ok(c.execute("DELETE FROM api_tokens WHERE id = $1", &[&id]).await? > 0)
    }
}
