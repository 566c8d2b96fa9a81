//! The content filter's rows on PostgreSQL: `crate::filter` for this back
//! end.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{now, Postgres};
use crate::backend::FilterMeta;
use crate::filter::{FilterResultRow, WhitelistRow, MAX_MATCHES, RESULT_COLS, WHITELIST_COLS};
use crate::Result;

fn whitelist_row(r: &Row) -> Result<WhitelistRow> {
    Ok(WhitelistRow {
        id: r.try_get(0)?,
        scope: r.try_get(1)?,
        sender: r.try_get(2)?,
        created: r.try_get(3)?,
    })
}

fn result_row(r: &Row) -> Result<FilterResultRow> {
    Ok(FilterResultRow {
        queue_id: r.try_get(0)?,
        message_id: r.try_get(1)?,
        at: r.try_get(2)?,
        report: r.try_get(3)?,
    })
}

#[async_trait]
impl FilterMeta for Postgres {
    async fn filter_domain_settings(&self, domain: &str) -> Result<Option<String>> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT settings FROM filter_domains WHERE domain = $1",
            &[&domain],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?)
    }

    async fn set_filter_domain_settings(&self, domain: &str, settings: Option<&str>) -> Result<()> {
        let c = self.client().await?;
        match settings {
            Some(s) => {
                c.execute(
                    "INSERT INTO filter_domains (domain, settings) VALUES ($1, $2)
                     ON CONFLICT (domain) DO UPDATE SET settings = excluded.settings",
                    &[&domain, &s],
                )
                .await?
            }
            None => {
                c.execute("DELETE FROM filter_domains WHERE domain = $1", &[&domain])
                    .await?
            }
        };
        Ok(())
    }

    async fn whitelist_add(&self, scope: &str, sender: &str) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                "INSERT INTO filter_whitelist (scope, sender, created) VALUES ($1, $2, $3)
                 ON CONFLICT (scope, sender) DO NOTHING",
                &[&scope, &sender, &now()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn whitelist_remove(&self, scope: &str, sender: &str) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                "DELETE FROM filter_whitelist WHERE scope = $1 AND sender = $2",
                &[&scope, &sender],
            )
            .await?;
        Ok(n > 0)
    }

    async fn whitelist(&self, scope: Option<&str>) -> Result<Vec<WhitelistRow>> {
        let c = self.client().await?;
        c.query(
            &format!(
                "SELECT {WHITELIST_COLS} FROM filter_whitelist
                 WHERE $1::TEXT IS NULL OR scope = $1 ORDER BY scope, sender"
            ),
            &[&scope],
        )
        .await?
        .iter()
        .map(whitelist_row)
        .collect()
    }

    async fn whitelist_matches(&self, senders: &[String]) -> Result<Vec<WhitelistRow>> {
        let c = self.client().await?;
        // One round trip for the address and its domain.
        c.query(
            &format!(
                "SELECT {WHITELIST_COLS} FROM filter_whitelist WHERE sender = ANY($1)
                 LIMIT {}",
                MAX_MATCHES * senders.len().max(1)
            ),
            &[&senders],
        )
        .await?
        .iter()
        .map(whitelist_row)
        .collect()
    }

    async fn put_filter_results(&self, rows: &[FilterResultRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let c = self.client().await?;
        let queue_ids: Vec<&str> = rows.iter().map(|r| r.queue_id.as_str()).collect();
        let message_ids: Vec<&str> = rows.iter().map(|r| r.message_id.as_str()).collect();
        let ats: Vec<i64> = rows.iter().map(|r| r.at).collect();
        let reports: Vec<&str> = rows.iter().map(|r| r.report.as_str()).collect();
        // The batch in one statement (one round trip, one transaction).
        c.execute(
            "INSERT INTO filter_results (queue_id, message_id, at, report)
             SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[])
             ON CONFLICT (queue_id) DO UPDATE SET message_id = excluded.message_id,
                 at = excluded.at, report = excluded.report",
            &[&queue_ids, &message_ids, &ats, &reports],
        )
        .await?;
        Ok(())
    }

    async fn filter_results(&self, id: &str) -> Result<Vec<FilterResultRow>> {
        let c = self.client().await?;
        c.query(
            &format!(
                "SELECT {RESULT_COLS} FROM filter_results WHERE queue_id = $1 OR (message_id = $1 AND $1 <> '')
                 ORDER BY at, queue_id LIMIT 100"
            ),
            &[&id],
        )
        .await?
        .iter()
        .map(result_row)
        .collect()
    }

    async fn expire_filter_results(&self, before: i64) -> Result<usize> {
        let c = self.client().await?;
        Ok(c.execute("DELETE FROM filter_results WHERE at < $1", &[&before])
            .await? as usize)
    }
}
