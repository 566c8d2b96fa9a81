//! DKIM signing keys, kept in the store (so every node of a cluster signs
//! with the same keys) and never printed.

use rusqlite::params;

use crate::ids::DomainId;
use crate::{Db, Result, StoreError};

#[derive(Clone)]
pub struct DkimKeyRow {
    pub id: i64,
    pub domain_id: DomainId,
    pub selector: String,
    /// `rsa-sha256` or `ed25519-sha256`.
    pub algorithm: String,
    pub private_key: postroom_core::Secret<Vec<u8>>,
    pub public_key: String,
}

impl std::fmt::Debug for DkimKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimKeyRow")
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Db {
    pub fn add_dkim_key(
        &self,
        domain_id: DomainId,
        selector: &str,
        algorithm: &str,
        private_key: &[u8],
        public_key: &str,
    ) -> Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.write(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM dkim_keys WHERE domain_id = ?1 AND selector = ?2)",
                params![domain_id, selector],
                |r| r.get(0),
            )?;
            if exists {
                return Err(StoreError::Invalid(format!("selector {selector} exists already")));
            }
            tx.execute(
                "INSERT INTO dkim_keys (domain_id, selector, algorithm, private_key, public_key, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![domain_id, selector, algorithm, private_key, public_key, now],
            )?;
            Ok(())
        })
    }

    /// The active keys of a domain, newest first.
    pub fn dkim_keys(&self, domain_id: DomainId) -> Result<Vec<DkimKeyRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, domain_id, selector, algorithm, private_key, public_key FROM dkim_keys
                 WHERE domain_id = ?1 AND active = 1 ORDER BY id DESC",
            )?;
            let rows = st
                .query_map([domain_id], |r| {
                    Ok(DkimKeyRow {
                        id: r.get(0)?,
                        domain_id: r.get(1)?,
                        selector: r.get(2)?,
                        algorithm: r.get(3)?,
                        private_key: postroom_core::Secret::new(r.get(4)?),
                        public_key: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }
}
