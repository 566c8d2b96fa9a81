//! What the content filter keeps (issue #10): each domain's filter
//! settings (thresholds, `{Cleaned}`), the whitelists of domains and
//! mailboxes, and each message's filter report for `postroom explain`.
//!
//! Domains and mailboxes are named by their canonical names, not by id,
//! so removing a domain is never refused for its filter rows (the
//! directory tables refer to each other by id with foreign keys).

use rusqlite::{params, OptionalExtension};

use crate::directory::now;
use crate::{Db, Result};

/// One whitelist entry: mail from `sender` (an address `a@b.example`, or
/// a whole domain `b.example`) to `scope` (a hosted domain, or one
/// mailbox's address) skips the spam score.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhitelistRow {
    pub id: i64,
    /// A canonical domain name, or a mailbox's canonical address.
    pub scope: String,
    /// Lower case: an address, or a domain.
    pub sender: String,
    /// Unix seconds.
    pub created: i64,
}

/// One message's filter report, kept 30 days.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterResultRow {
    pub queue_id: String,
    /// Without the angle brackets; empty when the message had none.
    pub message_id: String,
    /// Unix seconds.
    pub at: i64,
    /// The report as JSON (the pipeline writes it, `explain` reads it).
    pub report: String,
}

/// The longest whitelist a lookup returns: a sender matches a handful of
/// entries; a lookup never reads an unbounded list on the message path.
pub const MAX_MATCHES: usize = 1000;

pub(crate) const WHITELIST_COLS: &str = "id, scope, sender, created";
pub(crate) const RESULT_COLS: &str = "queue_id, message_id, at, report";

fn whitelist_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WhitelistRow> {
    Ok(WhitelistRow {
        id: r.get(0)?,
        scope: r.get(1)?,
        sender: r.get(2)?,
        created: r.get(3)?,
    })
}

fn result_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FilterResultRow> {
    Ok(FilterResultRow {
        queue_id: r.get(0)?,
        message_id: r.get(1)?,
        at: r.get(2)?,
        report: r.get(3)?,
    })
}

impl Db {
    pub fn filter_domain_settings(&self, domain: &str) -> Result<Option<String>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT settings FROM filter_domains WHERE domain = ?1",
                [domain],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    pub fn set_filter_domain_settings(&self, domain: &str, settings: Option<&str>) -> Result<()> {
        self.write(|tx| {
            match settings {
                Some(s) => tx.execute(
                    "INSERT INTO filter_domains (domain, settings) VALUES (?1, ?2)
                     ON CONFLICT (domain) DO UPDATE SET settings = excluded.settings",
                    params![domain, s],
                )?,
                None => tx.execute("DELETE FROM filter_domains WHERE domain = ?1", [domain])?,
            };
            Ok(())
        })
    }

    pub fn whitelist_add(&self, scope: &str, sender: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "INSERT INTO filter_whitelist (scope, sender, created) VALUES (?1, ?2, ?3)
                 ON CONFLICT (scope, sender) DO NOTHING",
                params![scope, sender, now()],
            )?;
            Ok(n > 0)
        })
    }

    pub fn whitelist_remove(&self, scope: &str, sender: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM filter_whitelist WHERE scope = ?1 AND sender = ?2",
                params![scope, sender],
            )?;
            Ok(n > 0)
        })
    }

    pub fn whitelist(&self, scope: Option<&str>) -> Result<Vec<WhitelistRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {WHITELIST_COLS} FROM filter_whitelist
                 WHERE ?1 IS NULL OR scope = ?1 ORDER BY scope, sender"
            ))?;
            let rows = st.query_map([scope], whitelist_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub fn whitelist_matches(&self, senders: &[String]) -> Result<Vec<WhitelistRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {WHITELIST_COLS} FROM filter_whitelist WHERE sender = ?1 LIMIT {MAX_MATCHES}"
            ))?;
            let mut out = Vec::new();
            for s in senders {
                for row in st.query_map([s], whitelist_row)? {
                    out.push(row?);
                }
            }
            Ok(out)
        })
    }

    pub fn put_filter_results(&self, rows: &[FilterResultRow]) -> Result<()> {
        self.write(|tx| {
            let mut st = tx.prepare_cached(
                "INSERT INTO filter_results (queue_id, message_id, at, report) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (queue_id) DO UPDATE SET message_id = excluded.message_id,
                     at = excluded.at, report = excluded.report",
            )?;
            for r in rows {
                st.execute(params![r.queue_id, r.message_id, r.at, r.report])?;
            }
            Ok(())
        })
    }

    pub fn filter_results(&self, id: &str) -> Result<Vec<FilterResultRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {RESULT_COLS} FROM filter_results WHERE queue_id = ?1 OR (message_id = ?1 AND ?1 <> '')
                 ORDER BY at, queue_id LIMIT 100"
            ))?;
            let rows = st.query_map([id], result_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub fn expire_filter_results(&self, before: i64) -> Result<usize> {
        self.write(|tx| Ok(tx.execute("DELETE FROM filter_results WHERE at < ?1", [before])?))
    }
}
