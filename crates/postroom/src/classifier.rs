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
