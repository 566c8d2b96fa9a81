//! The server's statistical classifier: one model in memory, shared by the
//! filter's check and the trainers (IMAP moves into and out of Junk, the
//! report address), loaded from the store at start and reloaded when the
//! store's training moved on (other nodes on the same PostgreSQL database,
//! `postroom spam train`), every `[filter.classifier] reload_secs`.

use std::sync::Arc;
use std::time::Duration;

use postroom_config::Config;
use postroom_filter::classifier::Classifier;
use postroom_store::Store;

/// The classifier `[filter]` asks for, loaded, with its reload task
/// running; `None` when the filter or the classifier is off.
pub async fn start(cfg: &Config, store: &Store) -> Option<Arc<Classifier>> {
    let c = &cfg.filter.classifier;
    if !cfg.filter.enabled || !c.enabled {
        return None;
    }
    let classifier = Arc::new(Classifier::new(c, store.meta_handle()));
    match classifier.load().await {
        Ok(()) => {
            let (spam, ham, tokens) = classifier.stats();
            tracing::info!(spam, ham, tokens, "classifier loaded");
        }
        // Scored as BAYES_UNAVAILABLE (0) until a reload succeeds.
        Err(e) => tracing::warn!(error = %e, "the classifier's training could not be read"),
    }
    let every = Duration::from_secs(c.reload_secs.max(1));
    tokio::spawn(reload(Arc::clone(&classifier), every));
    Some(classifier)
}

async fn reload(classifier: Arc<Classifier>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match classifier.reload_if_changed().await {
            Ok(true) => {
                let (spam, ham, tokens) = classifier.stats();
                tracing::info!(spam, ham, tokens, "classifier reloaded: training from elsewhere");
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "reloading the classifier failed; the last model stays"),
        }
    }
}

/// Trains on what IMAP users move into (spam) and out of (ham) Junk.
struct Trainer(Arc<Classifier>);

impl postroom_imap::storage::JunkTrainer for Trainer {
    fn train(&self, messages: Vec<Vec<u8>>, spam: bool) {
        let classifier = Arc::clone(&self.0);
        tokio::spawn(async move {
            let n = messages.len();
            let kind = if spam { "spam" } else { "ham" };
            match classifier.train_raw(&messages, spam).await {
                Ok(r) => tracing::info!(target: "imap", messages = n, kind, spam_total = r.totals.spam,
                    ham_total = r.totals.ham, "classifier trained from a Junk move"),
                Err(e) => tracing::warn!(target: "imap", messages = n, kind, error = %e,
                    "classifier not trained from a Junk move: storage failed"),
            }
        });
    }
}

/// The IMAP hook, when `train_on_move` is on.
pub fn junk_trainer(
    cfg: &Config,
    classifier: Option<&Arc<Classifier>>,
) -> Option<Arc<dyn postroom_imap::storage::JunkTrainer>> {
    let c = classifier?;
    if !cfg.filter.classifier.train_on_move {
        return None;
    }
    Some(Arc::new(Trainer(Arc::clone(c))))
}

/// The report address's trainer (`[filter.classifier] report_address`).
struct Reports {
    address: String,
    classifier: Arc<Classifier>,
}

#[async_trait::async_trait]
impl postroom_pipeline::spam_report::SpamReports for Reports {
    fn address(&self) -> &str {
        &self.address
    }
    async fn train(&self, messages: Vec<Vec<u8>>) -> Result<usize, String> {
        let r = self
            .classifier
            .train_raw(&messages, true)
            .await
            .map_err(|e| e.to_string())?;
        Ok(r.trained)
    }
}

/// The report address's hook, when one is configured.
pub fn spam_reports(
    cfg: &Config,
    classifier: Option<&Arc<Classifier>>,
) -> Option<Arc<dyn postroom_pipeline::spam_report::SpamReports>> {
    let c = classifier?;
    let a = cfg.filter.classifier.report_address.trim();
    // Checked by the configuration's validation.
    let address = postroom_core::Address::parse(a, true).ok()?.to_string();
    Some(Arc::new(Reports {
        address,
        classifier: Arc::clone(c),
    }))
}
