//! The trainable statistical classifier over words, word pairs, link hosts
//! and selected headers ([`tokens`]): Bayes with Robinson's token
//! probabilities and chi-square combining ([`model`]). Chosen over logistic
//! regression on hashed features because it trains incrementally, one
//! message at a time, from counts any node can add to in the store, and
//! reached the goal on the SpamAssassin corpus (bench/RESULTS.md).
//!
//! The server holds one [`Classifier`]: the model in memory (a check reads
//! it without I/O), the store behind it. Training (`postroom spam`, IMAP
//! moves into and out of Junk, the report address) writes a batch through
//! the store first and changes the memory only once it is committed, so a
//! storage failure while training is an error and changes nothing. Other
//! nodes' training is seen by [`Classifier::reload_if_changed`], which the
//! server calls every `reload_secs`: the totals' generation moved, the
//! model is read again. A model that could never be read scores nothing
//! (`BAYES_UNAVAILABLE`, 0); one below `min_spam`/`min_ham` does not vote
//! (`BAYES_UNTRAINED`, 0).

pub mod model;
pub mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use postroom_config::FilterClassifierConfig;
use postroom_store::backend::ClassifierMeta;
use postroom_store::{StoreError, TokenCounts, TrainingBatch, TrainingTotals};

use crate::build::Deps;
use crate::check::{Check, Findings, Scan};
pub use model::{Judgement, Model};
pub use tokens::{tokens, Tokens};

/// The symbols, by the message's spam probability: (lowest probability,
/// name, default score). As SpamAssassin's BAYES_* rules, but scored so
/// that the classifier alone files a sure spam (0.99 and up) in Junk
/// (6.0), never quarantines or rejects: that takes a second opinion.
pub const BANDS: &[(f64, &str, f64)] = &[
    (0.999, "BAYES_999", 8.0),
    (0.99, "BAYES_99", 6.5),
    (0.95, "BAYES_95", 4.5),
    (0.80, "BAYES_80", 3.0),
    (0.60, "BAYES_60", 1.5),
    (0.40, "BAYES_50", 0.0),
    (0.05, "BAYES_20", -0.5),
    (0.01, "BAYES_05", -1.0),
    (0.0, "BAYES_00", -1.5),
];

/// Below `min_spam`/`min_ham`: no vote, named in the report.
pub const UNTRAINED: &str = "BAYES_UNTRAINED";
/// The model could not be read from the store: no vote.
pub const UNAVAILABLE: &str = "BAYES_UNAVAILABLE";

/// The band a probability falls in.
pub fn band(probability: f64) -> (&'static str, f64) {
    for &(low, name, score) in BANDS {
        if probability >= low {
            return (name, score);
        }
    }
    ("BAYES_00", -1.5)
}

/// Messages read per store batch while training: each is one transaction,
/// so an interrupted `postroom spam train` loses at most this many, and the
/// batch's token list stays a few megabytes.
pub const TRAIN_BATCH: usize = 500;

/// What the classifier says of one message.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Unavailable(String),
    Untrained { spam: u64, ham: u64 },
    Judged(Judgement),
}

struct State {
    model: Model,
    /// The store's generation the model matches; `None` before the first
    /// successful load.
    generation: Option<i64>,
    load_error: Option<String>,
}

/// The model in memory with the store behind it.
pub struct Classifier {
    min_spam: u64,
    min_ham: u64,
    store: Option<Arc<dyn ClassifierMeta>>,
    state: RwLock<State>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.read();
        f.debug_struct("Classifier")
            .field("spam", &s.model.spam)
            .field("ham", &s.model.ham)
            .field("tokens", &s.model.tokens.len())
            .finish()
    }
}

impl Classifier {
    /// A classifier over `store`; empty until [`Classifier::load`].
    pub fn new(config: &FilterClassifierConfig, store: Arc<dyn ClassifierMeta>) -> Classifier {
        Classifier {
            store: Some(store),
            ..Classifier::in_memory(config)
        }
    }

    /// A classifier with no store (benchmarks, tests): training changes the
    /// memory only.
    pub fn in_memory(config: &FilterClassifierConfig) -> Classifier {
        Classifier {
            min_spam: config.min_spam as u64,
            min_ham: config.min_ham as u64,
            store: None,
            state: RwLock::new(State {
                model: Model::default(),
                generation: None,
                load_error: None,
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the whole model from the store. On failure the model in
    /// memory stays (a reload that fails keeps the last good model); one
    /// that was never loaded scores nothing.
    pub async fn load(&self) -> Result<(), StoreError> {
        let Some(store) = &self.store else { return Ok(()) };
        match store.classifier_model().await {
            Ok(m) => {
                let mut model = Model {
                    spam: m.totals.spam.max(0) as u64,
                    ham: m.totals.ham.max(0) as u64,
                    tokens: model::TokenMap::with_capacity_and_hasher(m.tokens.len(), Default::default()),
                };
                for t in m.tokens {
                    model.add(t.token as u64, t.spam, t.ham);
                }
                let mut s = self.write();
                s.model = model;
                s.generation = Some(m.totals.generation);
                s.load_error = None;
                Ok(())
            }
            Err(e) => {
                let mut s = self.write();
                if s.generation.is_none() {
                    s.load_error = Some(e.to_string());
                }
                Err(e)
            }
        }
    }

    /// Reloads when the store's training moved on since the model was
    /// read (another node, `postroom spam`); returns whether it did.
    pub async fn reload_if_changed(&self) -> Result<bool, StoreError> {
        let Some(store) = &self.store else {
            return Ok(false);
        };
        let totals = match store.classifier_totals().await {
            Ok(t) => t,
            Err(e) => {
                let mut s = self.write();
                if s.generation.is_none() {
                    s.load_error = Some(e.to_string());
                }
                return Err(e);
            }
        };
        if self.read().generation == Some(totals.generation) {
            return Ok(false);
        }
        self.load().await?;
        Ok(true)
    }

    /// The counts in memory: (spam messages, ham messages, tokens).
    pub fn stats(&self) -> (u64, u64, usize) {
        let s = self.read();
        (s.model.spam, s.model.ham, s.model.tokens.len())
    }

    /// Judges a parsed message.
    pub fn classify(&self, message: &mail_parser::Message<'_>) -> Verdict {
        let tokens = tokens(message);
        self.classify_tokens(tokens.as_slice())
    }

    pub fn classify_tokens(&self, tokens: &[u64]) -> Verdict {
        let s = self.read();
        if s.generation.is_none() {
            if let Some(e) = &s.load_error {
                return Verdict::Unavailable(e.clone());
            }
        }
        if s.model.spam < self.min_spam || s.model.ham < self.min_ham {
            return Verdict::Untrained {
                spam: s.model.spam,
                ham: s.model.ham,
            };
        }
        Verdict::Judged(s.model.judge(tokens))
    }

    /// Trains on raw messages (each RFC 5322, full headers) as spam or
    /// ham, [`TRAIN_BATCH`] a transaction; returns the totals after. An
    /// unparsable message is skipped (counted in `skipped`).
    pub async fn train_raw(&self, messages: &[Vec<u8>], spam: bool) -> Result<Trained, StoreError> {
        let mut out = Trained::default();
        for chunk in messages.chunks(TRAIN_BATCH) {
            let mut lists = Vec::with_capacity(chunk.len());
            for raw in chunk {
                match mail_parser::MessageParser::default().parse(without_mbox_line(raw)) {
                    Some(m) => lists.push(tokens(&m)),
                    None => out.skipped += 1,
                }
            }
            let totals = self.train_tokens(&lists, spam).await?;
            out.trained += lists.len();
            out.totals = totals;
        }
        Ok(out)
    }

    /// Trains on tokenized messages in one batch.
    pub async fn train_tokens(&self, messages: &[Tokens], spam: bool) -> Result<TrainingTotals, StoreError> {
        let mut counts: HashMap<u64, i64, std::hash::BuildHasherDefault<model::Identity>> =
            HashMap::with_capacity_and_hasher(messages.len() * 300, Default::default());
        for m in messages {
            for &t in m.as_slice() {
                *counts.entry(t).or_default() += 1;
            }
        }
        let n = messages.len() as i64;
        let batch = TrainingBatch {
            spam: if spam { n } else { 0 },
            ham: if spam { 0 } else { n },
            tokens: counts
                .iter()
                .map(|(&t, &c)| TokenCounts {
                    token: t as i64,
                    spam: if spam { c } else { 0 },
                    ham: if spam { 0 } else { c },
                })
                .collect(),
        };
        let totals = match &self.store {
            Some(store) => Some(store.classifier_train(&batch).await?),
            None => None,
        };
        let mut s = self.write();
        for t in &batch.tokens {
            s.model.add(t.token as u64, t.spam, t.ham);
        }
        if spam {
            s.model.spam += n as u64;
        } else {
            s.model.ham += n as u64;
        }
        match totals {
            Some(totals) => {
                // Our batch moved the generation by one: when nothing else
                // trained meanwhile the memory matches the store and needs
                // no reload; otherwise the next look reloads.
                if s.generation.map(|g| g + 1) == Some(totals.generation) {
                    s.generation = Some(totals.generation);
                }
                Ok(totals)
            }
            None => Ok(TrainingTotals {
                spam: s.model.spam as i64,
                ham: s.model.ham as i64,
                generation: 0,
            }),
        }
    }
}

/// A message saved from an mbox starts with its `From ` separator line
/// (the SpamAssassin corpus' files do), which is no header field: read
/// as one it would hide every real field after it.
pub fn without_mbox_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        match raw.iter().position(|&b| b == b'\n') {
            Some(i) => &raw[i + 1..],
            None => &[],
        }
    } else {
        raw
    }
}

/// What a training run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trained {
    pub trained: usize,
    pub skipped: usize,
    pub totals: TrainingTotals,
}

/// The classifier's check.
pub struct ClassifierCheck {
    classifier: Arc<Classifier>,
}

impl ClassifierCheck {
    pub fn new(classifier: Arc<Classifier>) -> ClassifierCheck {
        ClassifierCheck { classifier }
    }
}

#[async_trait]
impl Check for ClassifierCheck {
    fn name(&self) -> &'static str {
        "classifier"
    }

    async fn check(&self, scan: &Scan<'_>, out: &mut Findings) {
        match self.classifier.classify(scan.message) {
            Verdict::Unavailable(e) => {
                out.add(UNAVAILABLE, 0.0, format!("the training could not be read: {e}"))
            }
            Verdict::Untrained { spam, ham } => out.add(
                UNTRAINED,
                0.0,
                format!(
                    "trained on {spam} spam and {ham} ham; votes from {} and {}",
                    self.classifier.min_spam, self.classifier.min_ham
                ),
            ),
            Verdict::Judged(j) => {
                let (name, score) = band(j.probability);
                out.add(
                    name,
                    score,
                    format!("spam probability {:.4} from {} tokens", j.probability, j.clues),
                );
            }
        }
    }
}

/// The checks `[filter.classifier]` asks for: the classifier's, when it is
/// enabled and the server handed one over ([`Deps::classifier`]).
pub fn checks(config: &FilterClassifierConfig, deps: &Deps) -> Result<Vec<Box<dyn Check>>, String> {
    match &deps.classifier {
        Some(c) if config.enabled => Ok(vec![Box::new(ClassifierCheck::new(Arc::clone(c)))]),
        _ => Ok(Vec::new()),
    }
}
