//! The filter's state in the store: each recipient's policy (its domain's
//! thresholds, whitelists) read per message, and each message's report
//! written for `postroom explain`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postroom_filter::{DomainPolicy, Thresholds};
use postroom_store::{FilterResultRow, Store};

use crate::content::{PolicySource, RcptPolicy};
use crate::filter::FilterRecipient;

/// How long a domain's settings are reused before they are read again: a
/// change by `postroom filter policy` (another process) shows within this
/// time, and a busy domain costs one read per 10 s instead of one per
/// message.
const DOMAIN_TTL: Duration = Duration::from_secs(10);

/// The most domains cached; past it the cache starts over (a server hosts
/// thousands of domains, and this is a few hundred bytes each).
const MAX_CACHED: usize = 10_000;

/// The per-recipient policy from the store.
pub struct StorePolicy {
    store: Store,
    /// Whether `{Cleaned}` is added by default (`[filter.html]`).
    cleaned_default: bool,
    domains: Mutex<HashMap<String, (Instant, Option<DomainPolicy>)>>,
}

impl StorePolicy {
    pub fn new(store: Store, cleaned_default: bool) -> StorePolicy {
        StorePolicy {
            store,
            cleaned_default,
            domains: Mutex::new(HashMap::new()),
        }
    }

    async fn domain(&self, domain: &str) -> Option<DomainPolicy> {
        let now = Instant::now();
        if let Some((at, p)) = self.lock().get(domain) {
            if now.duration_since(*at) < DOMAIN_TTL {
                return p.clone();
            }
        }
        let read = match self.store.meta().filter_domain_settings(domain).await {
            Ok(Some(json)) => match serde_json::from_str::<DomainPolicy>(&json) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!(domain, error = %e, "unreadable filter settings: the server's apply");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                // Not cached: the next message reads again.
                tracing::error!(domain, error = %e, "reading the domain's filter settings failed");
                return None;
            }
        };
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(domain.to_string(), (now, read.clone()));
        read
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<DomainPolicy>)>> {
        self.domains.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PolicySource for StorePolicy {
    fn policies<'a>(
        &'a self,
        senders: &'a [String],
        recipients: &'a [FilterRecipient],
        defaults: &'a Thresholds,
    ) -> Pin<Box<dyn Future<Output = Vec<RcptPolicy>> + Send + 'a>> {
        Box::pin(async move {
            // Each address and its domain, in one look-up; `<>` matches
            // nothing.
            let mut keys: Vec<String> = Vec::with_capacity(senders.len() * 2);
            for s in senders {
                for k in [Some(s.as_str()), s.rsplit_once('@').map(|(_, d)| d)]
                    .into_iter()
                    .flatten()
                {
                    if !k.is_empty() && !keys.iter().any(|x| x == k) {
                        keys.push(k.to_string());
                    }
                }
            }
            let entries = if keys.is_empty() {
                Vec::new()
            } else {
                match self.store.meta().whitelist_matches(&keys).await {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(error = %e, "reading the whitelists failed: nobody is whitelisted");
                        Vec::new()
                    }
                }
            };
            let mut out = Vec::with_capacity(recipients.len());
            for r in recipients {
                let domain = self.domain(&r.domain).await.unwrap_or_default();
                let whitelisted = entries
                    .iter()
                    .any(|e| e.scope == r.domain || r.mailbox.as_deref() == Some(e.scope.as_str()));
                out.push(RcptPolicy {
                    thresholds: domain.thresholds(defaults),
                    whitelisted,
                    cleaned_tag: domain.cleaned.unwrap_or(self.cleaned_default),
                });
            }
            out
        })
    }
}

/// Writes filter reports in batches: a report is diagnostics, not mail,
/// so it does not wait in the delivery's commit (an extra fsync per
/// message on SQLite); whatever arrived while the last batch was written
/// goes in the next, in one transaction. A crash may lose the last
/// moment's reports, never mail.
#[derive(Clone)]
pub struct ResultWriter {
    tx: tokio::sync::mpsc::Sender<FilterResultRow>,
}

/// Reports waiting at most; past it a report is dropped (and logged)
/// rather than holding memory while the store is down.
const QUEUE: usize = 10_000;
/// Reports per transaction at most.
const BATCH: usize = 500;

impl ResultWriter {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store) -> ResultWriter {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<FilterResultRow>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                if let Err(e) = store.meta().put_filter_results(&batch).await {
                    tracing::error!(error = %e, reports = batch.len(), "storing filter reports failed");
                }
                batch.clear();
            }
        });
        ResultWriter { tx }
    }

    pub fn send(&self, row: FilterResultRow) {
        if self.tx.try_send(row).is_err() {
            tracing::warn!("filter report dropped: the writer is behind");
        }
    }
}
