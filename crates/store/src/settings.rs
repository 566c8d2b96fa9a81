//! Server-wide values that live in the store (shared by every node and by
//! the CLI): the SRS secrets.

use rusqlite::{params, OptionalExtension};

use crate::{Db, Result};

impl Db {
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT value FROM settings WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
    }

    /// The value of `key`, made with `make` and stored the first time.
    pub fn setting_or_init(&self, key: &str, make: impl FnOnce() -> String) -> Result<String> {
        self.write(|tx| {
            let existing: Option<String> = tx
                .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0))
                .optional()?;
            match existing {
                Some(v) => Ok(v),
                None => {
                    let v = make();
                    tx.execute(
                        "INSERT INTO settings (key, value) VALUES (?1, ?2)",
                        params![key, v],
                    )?;
                    Ok(v)
                }
            }
        })
    }
}
