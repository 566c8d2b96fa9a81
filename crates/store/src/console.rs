//! What the web console needs of the store beyond the admin service's
//! tables: the provider's own administrators (staff who manage every
//! domain; a domain's admins are mailboxes with the admin flag and need no
//! table of their own) and API tokens.

use rusqlite::{params, OptionalExtension};

use crate::directory::now;
use crate::{Db, Result, StoreError};

/// A provider administrator: logs in to the console (never to IMAP, POP3
/// or SMTP) and may manage every domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderAdminRow {
    pub id: i64,
    /// Canonical address (`postroom_core::Address::to_string`), the key.
    pub address: String,
    /// As it was typed, for display.
    pub display: String,
    /// argon2 (`$argon2id$...`), as mailbox passwords.
    pub password_hash: String,
    /// Unix seconds.
    pub created: i64,
}

/// An API token, as stored: its digest only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTokenRow {
    pub id: i64,
    /// SHA-256 of the token, hex.
    pub digest: String,
    /// The canonical address the token acts as.
    pub login: String,
    /// Only reads (GET) are allowed.
    pub read_only: bool,
    /// Networks the token may be used from, comma-separated; empty for
    /// anywhere.
    pub allow_from: String,
    /// Unix seconds.
    pub expires: i64,
    pub created: i64,
}

/// What `add_api_token` stores.
#[derive(Clone, Debug)]
pub struct NewApiToken {
    pub digest: String,
    pub login: String,
    pub read_only: bool,
    pub allow_from: String,
    pub expires: i64,
}

pub(crate) const API_TOKEN_COLS: &str = "id, digest, login, read_only, allow_from, expires, created";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiTokenRow> {
    Ok(ApiTokenRow {
        id: r.get(0)?,
        digest: r.get(1)?,
        login: r.get(2)?,
        read_only: r.get(3)?,
        allow_from: r.get(4)?,
        expires: r.get(5)?,
        created: r.get(6)?,
    })
}

pub(crate) const PROVIDER_ADMIN_COLS: &str = "id, address, display, password_hash, created";

fn admin_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProviderAdminRow> {
    Ok(ProviderAdminRow {
        id: r.get(0)?,
        address: r.get(1)?,
        display: r.get(2)?,
        password_hash: r.get(3)?,
        created: r.get(4)?,
    })
}

impl Db {
    pub fn add_provider_admin(&self, address: &str, display: &str, hash: &str) -> Result<ProviderAdminRow> {
        self.write(|tx| {
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT id FROM provider_admins WHERE address = ?1",
                    [address],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_some() {
                return Err(StoreError::Invalid(format!("provider admin {display} exists already")));
            }
            tx.execute(
                "INSERT INTO provider_admins (address, display, password_hash, created) VALUES (?1, ?2, ?3, ?4)",
                params![address, display, hash, now()],
            )?;
            let id = tx.last_insert_rowid();
            Ok(tx.query_row(
                &format!("SELECT {PROVIDER_ADMIN_COLS} FROM provider_admins WHERE id = ?1"),
                [id],
                admin_row,
            )?)
        })
    }

    pub fn provider_admin(&self, address: &str) -> Result<Option<ProviderAdminRow>> {
        self.read(|c| {
            Ok(c.query_row(
                &format!("SELECT {PROVIDER_ADMIN_COLS} FROM provider_admins WHERE address = ?1"),
                [address],
                admin_row,
            )
            .optional()?)
        })
    }

    pub fn provider_admins(&self) -> Result<Vec<ProviderAdminRow>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {PROVIDER_ADMIN_COLS} FROM provider_admins ORDER BY address"
            ))?;
            let rows = st
                .query_map([], admin_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    pub fn set_provider_admin_password(&self, address: &str, hash: &str) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE provider_admins SET password_hash = ?1 WHERE address = ?2",
                params![hash, address],
            )? > 0)
        })
    }

    pub fn remove_provider_admin(&self, address: &str) -> Result<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM provider_admins WHERE address = ?1", [address])? > 0))
    }

    pub fn add_api_token(&self, t: &NewApiToken) -> Result<ApiTokenRow> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO api_tokens (digest, login, read_only, allow_from, expires, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![t.digest, t.login, t.read_only, t.allow_from, t.expires, now()],
            )?;
            let id = tx.last_insert_rowid();
            Ok(tx.query_row(
                &format!("SELECT {API_TOKEN_COLS} FROM api_tokens WHERE id = ?1"),
                [id],
                token_row,
            )?)
        })
    }

    pub fn api_token(&self, digest: &str) -> Result<Option<ApiTokenRow>> {
        self.read(|c| {
            Ok(c.query_row(
                &format!("SELECT {API_TOKEN_COLS} FROM api_tokens WHERE digest = ?1"),
                [digest],
                token_row,
            )
            .optional()?)
        })
    }

    pub fn api_tokens(&self, login: Option<&str>) -> Result<Vec<ApiTokenRow>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {API_TOKEN_COLS} FROM api_tokens WHERE (?1 IS NULL OR login = ?1) ORDER BY id"
            ))?;
            let rows = st
                .query_map([login], token_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    pub fn remove_api_token(&self, id: i64) -> Result<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM api_tokens WHERE id = ?1", [id])? > 0))
    }
}
