//! The delivery worker: takes due queue rows, groups them by message and
//! destination domain (at most 100 recipients a transaction, the seed's
//! default_destination_recipient_limit), delivers with a per-destination
//! connection limit, and marks each recipient delivered, deferred (with
//! backoff) or bounced (with a DSN to the sender — never for a bounce).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postroom_store::queue::OutboundRow;
use postroom_store::Store;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

use crate::client::{deliver, opportunistic_tls, RcptOutcome, Transaction};
use crate::dns::{MxResolver, Route};
use crate::dsn::{bounce, status_of, Failure};

/// Puts a generated message (a bounce) through the normal pipeline.
pub trait Injector: Send + Sync {
    fn inject(
        &self,
        recipient: String,
        message: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>>;
}

#[derive(Clone, Debug)]
pub struct QueueSettings {
    pub hostname: String,
    /// Remote delivery is held while the HELO name is not a public FQDN.
    pub helo_ok: bool,
    pub remote_port: u16,
    pub per_destination: usize,
    pub max_connections: usize,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Give up and bounce after this long.
    pub lifetime: Duration,
    pub timeout: Duration,
    pub opportunistic_tls: bool,
}

pub struct DeliveryQueue {
    store: Store,
    resolver: MxResolver,
    settings: QueueSettings,
    injector: Arc<dyn Injector>,
    tls: TlsConnector,
    in_flight: Mutex<HashSet<i64>>,
    domains: Mutex<HashMap<String, Arc<Semaphore>>>,
    global: Arc<Semaphore>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn domain_of(addr: &str) -> String {
    addr.rsplit_once('@')
        .map_or_else(String::new, |(_, d)| d.to_lowercase())
}

impl DeliveryQueue {
    pub fn new(
        store: Store,
        resolver: MxResolver,
        settings: QueueSettings,
        injector: Arc<dyn Injector>,
    ) -> Arc<Self> {
        let global = Arc::new(Semaphore::new(settings.max_connections.max(1)));
        Arc::new(DeliveryQueue {
            store,
            resolver,
            settings,
            injector,
            tls: opportunistic_tls(),
            in_flight: Mutex::new(HashSet::new()),
            domains: Mutex::new(HashMap::new()),
            global,
        })
    }

    /// Runs until `stop` completes.
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let mut changes = self.store.changes();
        tokio::pin!(stop);
        loop {
            self.start_due_jobs();
            let wait = match self.store.db.next_outbound_attempt() {
                // Short enough that rows added by another process (the CLI's
                // sendmail) are picked up soon without a notification.
                Ok(Some(t)) => Duration::from_secs((t - now()).clamp(1, 5) as u64),
                _ => Duration::from_secs(5),
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = changes.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn start_due_jobs(self: &Arc<Self>) {
        let rows = match self.store.db.due_outbound(now(), 2000) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "reading the queue failed");
                return;
            }
        };
        let mut jobs: HashMap<(String, String), Vec<OutboundRow>> = HashMap::new();
        {
            let mut busy = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            for r in rows {
                if busy.insert(r.id) {
                    jobs.entry((r.queue_id.clone(), domain_of(&r.recipient)))
                        .or_default()
                        .push(r);
                }
            }
        }
        for ((_, domain), rows) in jobs {
            for chunk in rows.chunks(100) {
                let me = Arc::clone(self);
                let chunk = chunk.to_vec();
                let domain = domain.clone();
                tokio::spawn(async move {
                    let ids: Vec<i64> = chunk.iter().map(|r| r.id).collect();
                    me.deliver_job(&domain, chunk).await;
                    let mut busy = me.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                    for id in ids {
                        busy.remove(&id);
                    }
                });
            }
        }
    }

    fn domain_slot(&self, domain: &str) -> Arc<Semaphore> {
        let mut d = self.domains.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            d.entry(domain.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_destination.max(1)))),
        )
    }

    async fn deliver_job(&self, domain: &str, rows: Vec<OutboundRow>) {
        if !self.settings.helo_ok {
            for r in &rows {
                self.defer(
                    r,
                    "held: server.hostname is not a fully qualified public name (remote delivery waits)",
                );
            }
            return;
        }
        let Some(first) = rows.first() else { return };
        let body = match self.store.blobs.get(&first.blob_id) {
            Ok(b) => b,
            Err(e) => {
                for r in &rows {
                    self.defer(r, &format!("message body unreadable: {e}"));
                }
                return;
            }
        };
        let mut message = first.prefix.clone();
        message.extend_from_slice(&body);
        let Ok(_global) = self.global.clone().acquire_owned().await else {
            return;
        };
        let slot = self.domain_slot(domain);
        let Ok(_slot) = slot.acquire_owned().await else {
            return;
        };
        let route = self.resolver.route(domain).await;
        let hosts = match route {
            Err(e) => {
                for r in &rows {
                    self.defer(r, &e.0);
                }
                return;
            }
            Ok(Route::NullMx) => {
                let f = "556 5.1.10 the domain accepts no mail (null MX, RFC 7505)";
                self.fail(&rows, &message, f, "5.1.10", None).await;
                return;
            }
            Ok(Route::NoSuchDomain) => {
                self.fail(
                    &rows,
                    &message,
                    "550 5.1.2 the recipient's domain does not exist",
                    "5.1.2",
                    None,
                )
                .await;
                return;
            }
            Ok(Route::Hosts(h)) => h,
        };
        let recipients: Vec<String> = rows.iter().map(|r| r.recipient.clone()).collect();
        let tx = Transaction {
            sender: &first.sender,
            recipients: &recipients,
            message: &message,
        };
        let tls = self.settings.opportunistic_tls.then_some(&self.tls);
        let mut last_error = String::from("no usable MX host");
        for (host, ips) in &hosts {
            for ip in ips {
                let addr = SocketAddr::new(*ip, self.settings.remote_port);
                match deliver(
                    addr,
                    &self.settings.hostname,
                    tls,
                    host,
                    self.settings.timeout,
                    &tx,
                )
                .await
                {
                    Ok(outcomes) => {
                        self.settle(&rows, &message, host, outcomes).await;
                        return;
                    }
                    Err(e) => {
                        tracing::info!(target: "queue", queue_id = %first.queue_id, relay = %host, addr = %addr, error = %e, "connection failed; trying the next MX");
                        last_error = format!("{host} [{ip}]: {e}");
                    }
                }
            }
        }
        for r in &rows {
            self.defer(r, &last_error);
        }
    }

    async fn settle(&self, rows: &[OutboundRow], message: &[u8], host: &str, outcomes: Vec<RcptOutcome>) {
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for (r, o) in rows.iter().zip(outcomes) {
            match o {
                RcptOutcome::Delivered(reply) => {
                    tracing::info!(target: "queue", queue_id = %r.queue_id, to = %r.recipient, relay = %host, status = "sent", reply = %reply, "delivery");
                    done.push(r.id);
                }
                RcptOutcome::Failed(reply) => {
                    failed.push((r.clone(), reply.to_string(), status_of(reply.code, &reply.text)))
                }
                RcptOutcome::Deferred(why) => self.defer(r, &format!("{host}: {why}")),
            }
        }
        if let Err(e) = self.store.finish_outbound(&done) {
            tracing::error!(error = %e, "could not mark deliveries done");
        }
        if !failed.is_empty() {
            let refs: Vec<(&OutboundRow, &str, &str)> = failed
                .iter()
                .map(|(r, d, s)| (r, d.as_str(), s.as_str()))
                .collect();
            self.bounce_rows(&refs, message, Some(host)).await;
        }
    }

    async fn fail(
        &self,
        rows: &[OutboundRow],
        message: &[u8],
        diagnostic: &str,
        status: &str,
        host: Option<&str>,
    ) {
        let refs: Vec<(&OutboundRow, &str, &str)> = rows.iter().map(|r| (r, diagnostic, status)).collect();
        self.bounce_rows(&refs, message, host).await;
    }

    /// Bounces to the sender (one DSN for the rows of one message), then
    /// forgets the rows. A bounce is never bounced (null sender).
    async fn bounce_rows(&self, rows: &[(&OutboundRow, &str, &str)], message: &[u8], host: Option<&str>) {
        let Some((first, _, _)) = rows.first() else { return };
        for (r, diag, _) in rows {
            tracing::info!(target: "queue", queue_id = %r.queue_id, to = %r.recipient, status = "bounced", reply = %diag, "delivery");
        }
        if !first.sender.is_empty() {
            let failures: Vec<Failure<'_>> = rows
                .iter()
                .map(|(r, d, s)| Failure {
                    recipient: &r.recipient,
                    diagnostic: d,
                    status: s,
                    remote_mta: host,
                })
                .collect();
            let dsn = bounce(
                &self.settings.hostname,
                &first.queue_id,
                &first.sender,
                message,
                &failures,
            );
            if let Err(e) = self.injector.inject(first.sender.clone(), dsn).await {
                // Keep the rows: the next attempt bounces again.
                tracing::error!(queue_id = %first.queue_id, error = %e, "could not queue the bounce");
                return;
            }
        }
        let ids: Vec<i64> = rows.iter().map(|(r, _, _)| r.id).collect();
        if let Err(e) = self.store.finish_outbound(&ids) {
            tracing::error!(error = %e, "could not mark bounced rows done");
        }
    }

    fn defer(&self, r: &OutboundRow, why: &str) {
        let age = now() - r.created;
        if age > self.settings.lifetime.as_secs() as i64 {
            // Handled as a permanent failure on the next pass.
            let _ = self
                .store
                .db
                .defer_outbound(r.id, &format!("expired: {why}"), i64::MAX / 2);
            tracing::info!(target: "queue", queue_id = %r.queue_id, to = %r.recipient, status = "expired", reason = %why, "delivery");
            return;
        }
        let exp = r.attempts.clamp(0, 16) as u32;
        let delay = self
            .settings
            .retry_min
            .saturating_mul(1 << exp)
            .min(self.settings.retry_max);
        let next = now() + delay.as_secs().max(1) as i64;
        tracing::info!(target: "queue", queue_id = %r.queue_id, to = %r.recipient, status = "deferred", reason = %why, retry_in = delay.as_secs(), "delivery");
        if let Err(e) = self.store.db.defer_outbound(r.id, why, next) {
            tracing::error!(error = %e, "could not defer");
        }
    }
}
