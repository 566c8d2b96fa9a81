//! The classifier's token counts on PostgreSQL: `crate::classifier` for
//! this back end.

use async_trait::async_trait;

use super::{pg_err, Postgres};
use crate::backend::ClassifierMeta;
use crate::classifier::{TokenCounts, TrainingBatch, TrainingModel, TrainingTotals, TOTALS_SQL};
use crate::Result;

fn totals(r: &tokio_postgres::Row) -> Result<TrainingTotals> {
    Ok(TrainingTotals {
        spam: r.try_get(0)?,
        ham: r.try_get(1)?,
        generation: r.try_get(2)?,
    })
}

#[async_trait]
impl ClassifierMeta for Postgres {
    async fn classifier_totals(&self) -> Result<TrainingTotals> {
        let c = self.client().await?;
        totals(&c.query_one(TOTALS_SQL, &[]).await?)
    }

    async fn classifier_model(&self) -> Result<TrainingModel> {
        let mut c = self.client().await?;
        // REPEATABLE READ: the totals and the tokens from one snapshot,
        // while other nodes train.
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg_err)?;
        let t = totals(&tx.query_one(TOTALS_SQL, &[]).await?)?;
        let rows = tx
            .query("SELECT token, spam, ham FROM classifier_tokens", &[])
            .await?;
        let mut tokens = Vec::with_capacity(rows.len());
        for r in &rows {
            tokens.push(TokenCounts {
                token: r.try_get(0)?,
                spam: r.try_get(1)?,
                ham: r.try_get(2)?,
            });
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(TrainingModel { totals: t, tokens })
    }

    async fn classifier_train(&self, batch: &TrainingBatch) -> Result<TrainingTotals> {
        let mut c = self.client().await?;
        let mut sorted = batch.tokens.clone();
        // Rows are locked in token order, so two nodes training at once
        // wait for each other instead of deadlocking.
        sorted.sort_unstable_by_key(|t| t.token);
        let ids: Vec<i64> = sorted.iter().map(|t| t.token).collect();
        let spam: Vec<i64> = sorted.iter().map(|t| t.spam).collect();
        let ham: Vec<i64> = sorted.iter().map(|t| t.ham).collect();
        let tx = c.transaction().await.map_err(pg_err)?;
        // One statement for the whole batch (a round trip per token would
        // make a 3,000-message training take minutes over a network).
        tx.execute(
            "INSERT INTO classifier_tokens (token, spam, ham)
             SELECT t, s, h FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(t, s, h) ORDER BY t
             ON CONFLICT (token) DO UPDATE
               SET spam = greatest(classifier_tokens.spam + EXCLUDED.spam, 0),
                   ham = greatest(classifier_tokens.ham + EXCLUDED.ham, 0)",
            &[&ids, &spam, &ham],
        )
        .await?;
        if sorted.iter().any(|t| t.spam < 0 || t.ham < 0) {
            // A count taken back below 0 (a new row from a negative
            // change) is 0, and a token no message counts is no row.
            tx.execute(
                "UPDATE classifier_tokens SET spam = greatest(spam, 0), ham = greatest(ham, 0)
                 WHERE token = ANY($1) AND (spam < 0 OR ham < 0)",
                &[&ids],
            )
            .await?;
            tx.execute(
                "DELETE FROM classifier_tokens WHERE token = ANY($1) AND spam = 0 AND ham = 0",
                &[&ids],
            )
            .await?;
        }
        let t = totals(
            &tx.query_one(
                "UPDATE classifier_totals SET spam = greatest(spam + $1, 0), ham = greatest(ham + $2, 0),
                 generation = generation + 1 WHERE id = 1 RETURNING spam, ham, generation",
                &[&batch.spam, &batch.ham],
            )
            .await?,
        )?;
        tx.commit().await.map_err(pg_err)?;
        Ok(t)
    }
}
