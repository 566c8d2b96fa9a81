//! The statistical classifier's training (`postroom_filter::classifier`):
//! per token, how many spam and ham messages it was seen in, and the
//! number of messages trained of each. Tokens are stored as 64-bit hashes
//! (the filter's tokenizer makes them), so a row is three integers
//! whatever the word; one row per token keeps a whole model, 500,000
//! tokens after the SpamAssassin corpus, in about 20 MB.
//!
//! Training is a [`TrainingBatch`] of count changes applied in one
//! transaction, so a `postroom spam train` of thousands of messages is a
//! few commits, and an interrupted batch leaves no half-counted message.
//! Every batch moves the totals' `generation`: a server compares it with
//! the one it loaded to see another node's training (PostgreSQL).

use rusqlite::params;

use crate::{Db, Result};

/// The messages trained, and a number that every training batch moves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrainingTotals {
    pub spam: i64,
    pub ham: i64,
    pub generation: i64,
}

/// A token's counts: in how many spam and ham messages it was seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenCounts {
    pub token: i64,
    pub spam: i64,
    pub ham: i64,
}

/// Changes to add (negative to take back a training): message totals and
/// per-token counts. A count never goes below 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrainingBatch {
    pub spam: i64,
    pub ham: i64,
    /// One entry per token (the caller sums duplicates).
    pub tokens: Vec<TokenCounts>,
}

/// The whole model, as a server loads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrainingModel {
    pub totals: TrainingTotals,
    pub tokens: Vec<TokenCounts>,
}

pub(crate) const TOTALS_SQL: &str = "SELECT spam, ham, generation FROM classifier_totals WHERE id = 1";

impl Db {
    pub fn classifier_totals(&self) -> Result<TrainingTotals> {
        self.read(|c| {
            Ok(c.query_row(TOTALS_SQL, [], |r| {
                Ok(TrainingTotals {
                    spam: r.get(0)?,
                    ham: r.get(1)?,
                    generation: r.get(2)?,
                })
            })?)
        })
    }

    pub fn classifier_model(&self) -> Result<TrainingModel> {
        self.read(|c| {
            // One read transaction, so totals and tokens agree.
            let totals = c.query_row(TOTALS_SQL, [], |r| {
                Ok(TrainingTotals {
                    spam: r.get(0)?,
                    ham: r.get(1)?,
                    generation: r.get(2)?,
                })
            })?;
            let mut st = c.prepare("SELECT token, spam, ham FROM classifier_tokens")?;
            let tokens = st
                .query_map([], |r| {
                    Ok(TokenCounts {
                        token: r.get(0)?,
                        spam: r.get(1)?,
                        ham: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(TrainingModel { totals, tokens })
        })
    }

    pub fn classifier_train(&self, batch: &TrainingBatch) -> Result<TrainingTotals> {
        self.write(|tx| {
            {
                let mut up = tx.prepare_cached(
                    "INSERT INTO classifier_tokens (token, spam, ham) VALUES (?1, max(?2, 0), max(?3, 0))
                     ON CONFLICT(token) DO UPDATE SET spam = max(spam + ?2, 0), ham = max(ham + ?3, 0)",
                )?;
                for t in &batch.tokens {
                    up.execute(params![t.token, t.spam, t.ham])?;
                }
            }
            // A token no message counts any more costs a row for nothing.
            if batch.tokens.iter().any(|t| t.spam < 0 || t.ham < 0) {
                tx.execute("DELETE FROM classifier_tokens WHERE spam = 0 AND ham = 0", [])?;
            }
            tx.execute(
                "UPDATE classifier_totals SET spam = max(spam + ?1, 0), ham = max(ham + ?2, 0),
                 generation = generation + 1 WHERE id = 1",
                params![batch.spam, batch.ham],
            )?;
            Ok(tx.query_row(TOTALS_SQL, [], |r| {
                Ok(TrainingTotals {
                    spam: r.get(0)?,
                    ham: r.get(1)?,
                    generation: r.get(2)?,
                })
            })?)
        })
    }
}
