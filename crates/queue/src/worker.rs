//! The delivery worker: takes due queue rows, groups them by message and
//! destination domain (at most 100 recipients a transaction, the seed's
//! default_destination_recipient_limit), and hands the groups ("jobs") to
//! the destination's connections.
//!
//! Each destination domain has at most `per_destination` connections (and
//! all destinations together at most `max_connections`). A connection task
//! delivers one job after another over the same SMTP session, and stays
//! open up to `idle_timeout` for more mail to that destination before it
//! says QUIT: several messages to one place cost one TCP (and TLS)
//! handshake, as Postfix's connection cache does.
//!
//! Each recipient ends delivered (row removed only after the remote's
//! final 250), deferred (with backoff, and one delay warning to the sender
//! after `delay_warning`) or bounced (with a DSN to the sender — never for
//! a bounce). A row being handled is "in flight" and not taken again until
//! its outcome is committed, so a recipient the remote accepted is never
//! sent to twice by this process.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postroom_store::queue::OutboundRow;
use postroom_store::{OutboundId, Store};
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsConnector;

use crate::client::{connect, opportunistic_tls, RcptOutcome, Session, Transaction, TxError};
use crate::dns::{split_host_port, MxResolver, Route};
use crate::dsn::{bounce, delayed, status_of, Failure};
use crate::sevenbit;

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
    /// Send one "delayed" DSN to the sender of a recipient still waiting
    /// after this long (None: never).
    pub delay_warning: Option<Duration>,
    /// How long an SMTP connection waits, idle, for more mail to its
    /// destination before QUIT.
    pub idle_timeout: Duration,
}

/// Recipients per transaction (the seed's
/// default_destination_recipient_limit; RFC 5321 4.5.3.1.8 requires
/// servers to take at least 100).
const RECIPIENTS_PER_TRANSACTION: usize = 100;

/// How long a connection task trusts the route it looked up.
const ROUTE_TTL: Duration = Duration::from_secs(60);

/// One message's recipients in one destination domain.
struct Job {
    rows: Vec<OutboundRow>,
}

#[derive(Default)]
struct Destination {
    pending: VecDeque<Job>,
    /// Connection tasks running for this destination (connected, connecting
    /// or idle).
    workers: usize,
    /// Of these, the ones waiting for a job.
    idle: usize,
    wake: Arc<Notify>,
}

pub struct DeliveryQueue {
    store: Store,
    resolver: MxResolver,
    settings: QueueSettings,
    injector: Arc<dyn Injector>,
    tls: TlsConnector,
    /// An async lock: the due rows are read while it is held (see
    /// `start_due_jobs`).
    in_flight: Arc<tokio::sync::Mutex<HashSet<OutboundId>>>,
    destinations: Mutex<HashMap<String, Destination>>,
    global: Arc<Semaphore>,
    /// Delivered row ids go to the finisher thread, which removes them in
    /// batches (one SQLite commit, one fsync for many deliveries) and only
    /// then lets them out of `in_flight`.
    finished: Mutex<mpsc::Sender<Vec<OutboundId>>>,
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

/// Where a destination's mail goes.
enum Hop {
    Hosts(Vec<(String, Vec<IpAddr>)>, u16),
    /// Bounce everything: (diagnostic, status).
    Refuse(&'static str, &'static str),
    /// Try later.
    Later(String),
}

/// What one job produced, settled together at its end.
#[derive(Default)]
struct Settlement {
    deferred: Vec<(OutboundRow, String, Option<String>)>,
    failed: Vec<(OutboundRow, String, String, Option<String>)>,
}

impl DeliveryQueue {
    pub fn new(
        store: Store,
        resolver: MxResolver,
        settings: QueueSettings,
        injector: Arc<dyn Injector>,
    ) -> Arc<Self> {
        let global = Arc::new(Semaphore::new(settings.max_connections.max(1)));
        let in_flight = Arc::new(tokio::sync::Mutex::new(HashSet::new()));
        let (tx, rx) = mpsc::channel::<Vec<OutboundId>>();
        // A thread, not a task: the commit waits for an fsync. It drives
        // the store's async calls on the runtime's handle (without one,
        // `finish` commits inline).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = store.clone();
            let in_flight = Arc::clone(&in_flight);
            let spawned = std::thread::Builder::new()
                .name("queue-finisher".into())
                .spawn(move || finisher(&runtime, &store, &in_flight, &rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start the queue finisher thread");
            }
        }
        Arc::new(DeliveryQueue {
            store,
            resolver,
            settings,
            injector,
            tls: opportunistic_tls(),
            in_flight,
            destinations: Mutex::new(HashMap::new()),
            global,
            finished: Mutex::new(tx),
        })
    }

    /// Runs until `stop` completes.
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let mut changes = self.store.changes();
        tokio::pin!(stop);
        loop {
            self.start_due_jobs().await;
            let wait = match self.store.meta().next_outbound_attempt().await {
                // Short enough that rows added by another process (the CLI's
                // sendmail) are picked up soon without a notification.
                Ok(Some(t)) => Duration::from_secs((t - now()).clamp(1, 5) as u64),
                _ => Duration::from_secs(5),
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = changes.changed() => {
                    // Every commit (each received message, each batch of
                    // deliveries) notifies: gather a few before scanning.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn start_due_jobs(self: &Arc<Self>) {
        // (queue id, domain) in the order the rows came (oldest first).
        let mut order: Vec<(String, String)> = Vec::new();
        let mut groups: HashMap<(String, String), Vec<OutboundRow>> = HashMap::new();
        {
            // The rows are read with in_flight locked: the finisher releases
            // an id only after its removal is committed, so a row is either
            // still in flight here or already gone from what this read
            // sees. Reading first and locking after could take back a row
            // delivered in between, and send it again.
            let mut busy = self.in_flight.lock().await;
            let rows = match self.store.meta().due_outbound(now(), 2000).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "reading the queue failed");
                    return;
                }
            };
            for r in rows {
                if busy.insert(r.id) {
                    let key = (r.queue_id.clone(), domain_of(&r.recipient));
                    let g = groups.entry(key.clone()).or_default();
                    if g.is_empty() {
                        order.push(key);
                    }
                    g.push(r);
                }
            }
        }
        if order.is_empty() {
            return;
        }
        let mut spawn = Vec::new();
        {
            let mut dests = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
            for key in order {
                let Some(mut rows) = groups.remove(&key) else {
                    continue;
                };
                let d = dests.entry(key.1.clone()).or_default();
                while !rows.is_empty() {
                    let rest = rows.split_off(rows.len().min(RECIPIENTS_PER_TRANSACTION));
                    d.pending.push_back(Job { rows });
                    rows = rest;
                    d.wake.notify_one();
                }
                // More connections while jobs outnumber idle ones, up to
                // the destination's limit.
                while d.workers < self.settings.per_destination.max(1) && d.pending.len() > d.idle {
                    d.workers += 1;
                    d.idle += 1; // counted idle until it takes a job
                    spawn.push(key.1.clone());
                }
            }
        }
        for domain in spawn {
            let me = Arc::clone(self);
            tokio::spawn(async move { me.connection_task(domain).await });
        }
    }

    /// The next job for `domain`; `idle` says whether this task is counted
    /// idle (it stops being when it gets a job).
    fn take(&self, domain: &str, idle: &mut bool) -> Option<Job> {
        let mut dests = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        let d = dests.get_mut(domain)?;
        let job = d.pending.pop_front()?;
        if *idle {
            d.idle = d.idle.saturating_sub(1);
            *idle = false;
        }
        Some(job)
    }

    /// Counts this task idle; the handle wakes it when a job comes.
    fn idle_wait(&self, domain: &str, idle: &mut bool) -> Option<Arc<Notify>> {
        let mut dests = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        let d = dests.get_mut(domain)?;
        if !*idle {
            d.idle += 1;
            *idle = true;
        }
        Some(Arc::clone(&d.wake))
    }

    /// The next job, or None after retiring this task (atomically, so no
    /// job is left behind without a task to take it).
    fn take_or_retire(&self, domain: &str, idle: &mut bool) -> Option<Job> {
        let mut dests = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        let d = dests.get_mut(domain)?;
        if let Some(job) = d.pending.pop_front() {
            if *idle {
                d.idle = d.idle.saturating_sub(1);
                *idle = false;
            }
            return Some(job);
        }
        d.workers = d.workers.saturating_sub(1);
        if *idle {
            d.idle = d.idle.saturating_sub(1);
        }
        if d.workers == 0 {
            dests.remove(domain);
        }
        None
    }

    /// Every job waiting for `domain` (its hosts are unreachable).
    fn take_pending(&self, domain: &str) -> Vec<Job> {
        let mut dests = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        dests
            .get_mut(domain)
            .map(|d| d.pending.drain(..).collect())
            .unwrap_or_default()
    }

    /// One connection (at a time) to `domain`'s next hop: delivers jobs
    /// one after another over the same session, and waits up to
    /// `idle_timeout` for more before QUIT.
    async fn connection_task(self: Arc<Self>, domain: String) {
        // Bounds the connections of all destinations together.
        let permit = self.global.clone().acquire_owned().await;
        let mut session: Option<Session> = None;
        let mut route: Option<(Instant, Hop)> = None;
        let mut idle = true; // counted idle when spawned
        loop {
            let job = match self.take(&domain, &mut idle) {
                Some(j) => j,
                None => {
                    let Some(wake) = self.idle_wait(&domain, &mut idle) else {
                        break;
                    };
                    if tokio::time::timeout(self.settings.idle_timeout, wake.notified())
                        .await
                        .is_ok()
                    {
                        continue;
                    }
                    match self.take_or_retire(&domain, &mut idle) {
                        Some(j) => j,
                        None => break,
                    }
                }
            };
            if permit.is_err() {
                // The semaphore is closed only at shutdown.
                self.release(&job.rows).await;
                continue;
            }
            if let Some(why) = self.deliver_job(&domain, job, &mut session, &mut route).await {
                // Every host of this destination failed: what waits for it
                // would fail the same way now (Postfix's "dead
                // destination"): defer it all at once.
                for job in self.take_pending(&domain) {
                    let mut s = Settlement::default();
                    for r in &job.rows {
                        s.deferred.push((r.clone(), why.clone(), None));
                    }
                    let message = self.message_of(&job.rows).unwrap_or_default();
                    self.settle(s, &message).await;
                }
                route = None;
            }
        }
        if let Some(s) = session.take() {
            s.quit().await;
        }
        drop(permit);
    }

    /// Lets rows be taken again once their outcome is committed.
    /// Delivered rows are released by the finisher instead.
    async fn release(&self, rows: &[OutboundRow]) {
        let mut busy = self.in_flight.lock().await;
        for r in rows {
            busy.remove(&r.id);
        }
    }

    fn message_of(&self, rows: &[OutboundRow]) -> Result<Vec<u8>, String> {
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let body = self.store.blobs.get(&first.blob_id).map_err(|e| e.to_string())?;
        let mut message = first.prefix.clone();
        message.extend_from_slice(&body);
        Ok(message)
    }

    /// Where `domain`'s mail goes: a gateway domain's `relay_to` host (its
    /// A/AAAA records, no MX lookup, on its own port), else its MX hosts
    /// (RFC 5321 5.1) on `remote_port`.
    async fn hop(&self, domain: &str) -> Hop {
        let relay = match self.store.meta().relay_host(domain).await {
            Ok(r) => r,
            Err(e) => return Hop::Later(format!("reading the domain's relay host failed: {e}")),
        };
        if let Some(next_hop) = relay {
            let Some((host, port)) = split_host_port(&next_hop) else {
                return Hop::Later(format!("relay host `{next_hop}` is not host:port"));
            };
            return match self.resolver.host_addrs(&host).await {
                Ok(ips) => Hop::Hosts(vec![(host, ips)], port),
                Err(e) => Hop::Later(e.0),
            };
        }
        match self.resolver.route(domain).await {
            Err(e) => Hop::Later(e.0),
            Ok(Route::NullMx) => Hop::Refuse(
                "556 5.1.10 the domain accepts no mail (null MX, RFC 7505)",
                "5.1.10",
            ),
            Ok(Route::NoSuchDomain) => {
                Hop::Refuse("550 5.1.2 the recipient's domain does not exist", "5.1.2")
            }
            Ok(Route::Hosts(h)) => Hop::Hosts(h, self.settings.remote_port),
        }
    }

    /// Opens a session to the first host that answers.
    async fn open(
        &self,
        hosts: &[(String, Vec<IpAddr>)],
        port: u16,
        queue_id: &str,
    ) -> Result<Session, String> {
        let tls = self.settings.opportunistic_tls.then_some(&self.tls);
        let mut last_error = String::from("no usable MX host");
        for (host, ips) in hosts {
            for ip in ips {
                let addr = SocketAddr::new(*ip, port);
                match connect(addr, &self.settings.hostname, tls, host, self.settings.timeout).await {
                    Ok(s) => return Ok(s),
                    Err(e) => {
                        tracing::info!(target: "queue", queue_id = %queue_id, relay = %host, addr = %addr, error = %e, "connection failed; trying the next host");
                        last_error = format!("{host} [{ip}]: {e}");
                    }
                }
            }
        }
        Err(last_error)
    }

    /// Delivers one job over `session` (opened or reopened as needed).
    /// Returns Some(reason) when the destination cannot be reached now (no
    /// route, or no host answered): what else waits for it is deferred too.
    async fn deliver_job(
        &self,
        domain: &str,
        job: Job,
        session: &mut Option<Session>,
        route: &mut Option<(Instant, Hop)>,
    ) -> Option<String> {
        let rows = job.rows;
        let mut settlement = Settlement::default();
        let first = rows.first().cloned()?;
        if !self.settings.helo_ok {
            for r in &rows {
                settlement.deferred.push((
                    r.clone(),
                    "held: server.hostname is not a fully qualified public name (remote delivery waits)"
                        .into(),
                    None,
                ));
            }
            self.settle(settlement, b"").await;
            return None;
        }
        let message = match self.message_of(&rows) {
            Ok(m) => m,
            Err(e) => {
                for r in &rows {
                    settlement
                        .deferred
                        .push((r.clone(), format!("message body unreadable: {e}"), None));
                }
                self.settle(settlement, b"").await;
                return None;
            }
        };
        if route.as_ref().is_none_or(|(at, _)| at.elapsed() > ROUTE_TTL) {
            *route = Some((Instant::now(), self.hop(domain).await));
        }
        let (hosts, port) = match route.as_ref().map(|(_, h)| h) {
            Some(Hop::Hosts(h, p)) => (h.clone(), *p),
            Some(Hop::Refuse(diag, status)) => {
                for r in &rows {
                    settlement
                        .failed
                        .push((r.clone(), diag.to_string(), status.to_string(), None));
                }
                self.settle(settlement, &message).await;
                return None;
            }
            Some(Hop::Later(why)) => {
                let why = why.clone();
                *route = None;
                for r in &rows {
                    settlement.deferred.push((r.clone(), why.clone(), None));
                }
                self.settle(settlement, &message).await;
                // The same lookup would fail for what waits here too.
                return Some(why);
            }
            None => return None,
        };
        // RFC 6531 3.2: UTF-8 addresses, or UTF-8 in the header section,
        // make an internationalized message that needs SMTPUTF8 at the
        // other end.
        let utf8_addresses = !first.sender.is_ascii() || rows.iter().any(|r| !r.recipient.is_ascii());
        let utf8_headers = sevenbit::headers_need_smtputf8(&message);
        let eight_bit = sevenbit::is_8bit(&message);
        let mut converted: Option<Vec<u8>> = None;
        let mut remaining: Vec<OutboundRow> = rows;
        let mut retried = false;
        let mut unreachable = None;
        while !remaining.is_empty() {
            let fresh = session.as_ref().is_none_or(|s| !s.reusable());
            if fresh {
                if let Some(old) = session.take() {
                    drop(old);
                }
                match self.open(&hosts, port, &first.queue_id).await {
                    Ok(s) => *session = Some(s),
                    Err(e) => {
                        for r in remaining.drain(..) {
                            settlement.deferred.push((r, e.clone(), None));
                        }
                        unreachable = Some(e);
                        break;
                    }
                }
            }
            let Some(s) = session.as_mut() else { break };
            let host = s.host.clone();
            if (utf8_addresses || utf8_headers) && !s.ext.smtputf8 {
                // RFC 6531 3.2 (and RFC 3463 X.6.7 / X.6.9): without
                // SMTPUTF8 the message cannot go there; bounce rather than
                // send it mangled.
                let (diag, status) = if utf8_addresses {
                    ("553 5.6.7 the receiving server does not support SMTPUTF8, which these addresses need", "5.6.7")
                } else {
                    ("554 5.6.9 the receiving server does not support SMTPUTF8, which this message's UTF-8 header fields need", "5.6.9")
                };
                for r in remaining.drain(..) {
                    settlement
                        .failed
                        .push((r, diag.to_string(), status.to_string(), Some(host.clone())));
                }
                break;
            }
            // RFC 6152 3: 8-bit data only to a server that offers 8BITMIME;
            // for any other, 7-bit MIME encodings. (Submitted mail that gets
            // DKIM-signed was converted before signing: see
            // pipeline::mx, so this changes no signed content.)
            let wire: Cow<'_, [u8]> = if eight_bit && !s.ext.eightbitmime {
                Cow::Borrowed(
                    converted
                        .get_or_insert_with(|| sevenbit::to_7bit(&message))
                        .as_slice(),
                )
            } else {
                Cow::Borrowed(message.as_slice())
            };
            let recipients: Vec<String> = remaining.iter().map(|r| r.recipient.clone()).collect();
            let tx = Transaction {
                sender: &first.sender,
                recipients: &recipients,
                message: &wire,
                smtputf8: utf8_addresses || utf8_headers,
            };
            match s.transaction(&tx).await {
                Ok(outcomes) => {
                    let mut delivered = Vec::new();
                    let mut too_many = Vec::new();
                    for (r, o) in remaining.drain(..).zip(outcomes) {
                        match o {
                            RcptOutcome::Delivered(reply) => {
                                tracing::info!(target: "queue", queue_id = %r.queue_id, to = %r.recipient, relay = %host, addr = %s.addr, tls = s.tls, status = "sent", reply = %reply, "delivery");
                                postroom_core::metrics::delivery("sent");
                                delivered.push(r.id);
                            }
                            RcptOutcome::Failed(reply) => {
                                let status = status_of(reply.code, &reply.text);
                                settlement
                                    .failed
                                    .push((r, reply.to_string(), status, Some(host.clone())));
                            }
                            RcptOutcome::Deferred(why) => {
                                settlement.deferred.push((r, why, Some(host.clone())))
                            }
                            RcptOutcome::TooMany(reply) => too_many.push((r, reply)),
                        }
                    }
                    let progressed = !delivered.is_empty();
                    // Marked done only now, after the final 250.
                    self.finish(delivered).await;
                    if progressed && !too_many.is_empty() {
                        // RFC 5321 4.5.3.1.10: the server took as many
                        // recipients as it could; the rest go in the next
                        // transaction at once, not after a backoff.
                        tracing::info!(target: "queue", queue_id = %first.queue_id, relay = %host, recipients = too_many.len(), "452: the remaining recipients go in another transaction");
                        remaining = too_many.into_iter().map(|(r, _)| r).collect();
                        continue;
                    }
                    for (r, reply) in too_many {
                        settlement
                            .deferred
                            .push((r, reply.to_string(), Some(host.clone())));
                    }
                }
                Err(TxError::Retry(e)) => {
                    *session = None;
                    if !fresh && !retried {
                        // A kept connection the server had closed meanwhile:
                        // nothing was decided; once more on a new one.
                        retried = true;
                        continue;
                    }
                    for r in remaining.drain(..) {
                        settlement
                            .deferred
                            .push((r, format!("{host}: {e}"), Some(host.clone())));
                    }
                }
                Err(TxError::Unknown(e)) => {
                    *session = None;
                    for r in remaining.drain(..) {
                        settlement.deferred.push((
                            r,
                            format!("{host}: connection lost after the message was sent: {e}"),
                            Some(host.clone()),
                        ));
                    }
                }
            }
        }
        self.settle(settlement, &message).await;
        unreachable
    }

    /// Hands delivered rows to the finisher thread.
    async fn finish(&self, ids: Vec<OutboundId>) {
        if ids.is_empty() {
            return;
        }
        // They leave in_flight only once the finisher committed them.
        let sent = self.finished.lock().unwrap_or_else(|e| e.into_inner()).send(ids);
        if let Err(mpsc::SendError(ids)) = sent {
            // No finisher thread: commit here.
            match self.store.finish_outbound(&ids).await {
                Ok(()) => {
                    let mut busy = self.in_flight.lock().await;
                    for id in &ids {
                        busy.remove(id);
                    }
                }
                // Kept in flight: never sent again by this process.
                Err(e) => tracing::error!(error = %e, "could not mark deliveries done"),
            }
        }
    }

    /// Commits a job's deferrals and failures: deferred rows past the
    /// lifetime bounce (RFC 5321 4.5.4.1), others get their next attempt
    /// and, once, a delay warning; failed rows bounce.
    async fn settle(&self, s: Settlement, message: &[u8]) {
        let Settlement { deferred, mut failed } = s;
        let handled: Vec<OutboundRow> = deferred
            .iter()
            .map(|(r, _, _)| r.clone())
            .chain(failed.iter().map(|(r, _, _, _)| r.clone()))
            .collect();
        let mut warn: Vec<(OutboundRow, String, Option<String>)> = Vec::new();
        for (r, why, host) in deferred {
            let age = now() - r.created;
            if age > self.settings.lifetime.as_secs() as i64 {
                tracing::info!(target: "queue", queue_id = %r.queue_id, to = %r.recipient, status = "expired", reason = %why, "delivery");
                postroom_core::metrics::delivery("expired");
                let diag = format!(
                    "delivery time expired after {} days; the last attempt said: {why}",
                    self.settings.lifetime.as_secs() / 86400
                );
                // RFC 3463 X.4.7: delivery time expired.
                failed.push((r, diag, "4.4.7".into(), host));
                continue;
            }
            let exp = r.attempts.clamp(0, 16) as u32;
            let delay = self
                .settings
                .retry_min
                .saturating_mul(1 << exp)
                .min(self.settings.retry_max);
            let next = now() + delay.as_secs().max(1) as i64;
            tracing::info!(target: "queue", queue_id = %r.queue_id, to = %r.recipient, relay = host.as_deref().unwrap_or("-"), status = "deferred", reason = %why, retry_in = delay.as_secs(), "delivery");
            postroom_core::metrics::delivery("deferred");
            if let Err(e) = self.store.meta().defer_outbound(r.id, &why, next).await {
                tracing::error!(error = %e, "could not defer");
                continue;
            }
            let due = self
                .settings
                .delay_warning
                .is_some_and(|w| age >= w.as_secs() as i64);
            if due && !r.warned && !r.sender.is_empty() {
                warn.push((r, why, host));
            }
        }
        if !warn.is_empty() {
            self.warn(&warn, message).await;
        }
        if !failed.is_empty() {
            self.bounce_rows(&failed, message).await;
        }
        self.release(&handled).await;
    }

    /// One delay warning for these rows of one message (RFC 3464
    /// `Action: delayed`), recorded so it is sent once.
    async fn warn(&self, rows: &[(OutboundRow, String, Option<String>)], message: &[u8]) {
        let Some((first, _, _)) = rows.first() else { return };
        let statuses: Vec<String> = rows
            .iter()
            .map(|(_, why, _)| {
                // The remote's reply when there was one (`host: 451 4.x.x`).
                let reply = why.rsplit_once(": ").map_or(why.as_str(), |(_, r)| r);
                let code = reply.get(..3).and_then(|c| c.parse::<u16>().ok()).unwrap_or(400);
                let st = status_of(code, reply.get(4..).unwrap_or(""));
                if st.starts_with('4') {
                    st
                } else {
                    "4.0.0".into()
                }
            })
            .collect();
        let waiting: Vec<Failure<'_>> = rows
            .iter()
            .zip(&statuses)
            .map(|((r, why, host), st)| Failure {
                recipient: &r.recipient,
                diagnostic: why,
                status: st,
                remote_mta: host.as_deref(),
            })
            .collect();
        let until = UNIX_EPOCH + Duration::from_secs(first.created.max(0) as u64) + self.settings.lifetime;
        let dsn = delayed(
            &self.settings.hostname,
            &first.queue_id,
            &first.sender,
            message,
            &waiting,
            until,
        );
        match self.injector.inject(first.sender.clone(), dsn).await {
            Ok(id) => {
                for (r, _, _) in rows {
                    tracing::info!(target: "queue", queue_id = %r.queue_id, to = %r.recipient, status = "delayed", warning = %id, "delay warning sent");
                }
                let ids: Vec<OutboundId> = rows.iter().map(|(r, _, _)| r.id).collect();
                if let Err(e) = self.store.meta().mark_outbound_warned(&ids).await {
                    tracing::error!(error = %e, "could not record the delay warning");
                }
            }
            Err(e) => {
                tracing::error!(queue_id = %first.queue_id, error = %e, "could not queue the delay warning")
            }
        }
    }

    /// Bounces to the sender (one DSN for the rows of one message), then
    /// forgets the rows. A bounce is never bounced (null sender).
    async fn bounce_rows(&self, rows: &[(OutboundRow, String, String, Option<String>)], message: &[u8]) {
        let Some((first, _, _, _)) = rows.first() else {
            return;
        };
        for (r, diag, _, host) in rows {
            tracing::info!(target: "queue", queue_id = %r.queue_id, to = %r.recipient, relay = host.as_deref().unwrap_or("-"), status = "bounced", reply = %diag, "delivery");
            postroom_core::metrics::delivery("bounced");
        }
        if !first.sender.is_empty() {
            let failures: Vec<Failure<'_>> = rows
                .iter()
                .map(|(r, d, s, h)| Failure {
                    recipient: &r.recipient,
                    diagnostic: d,
                    status: s,
                    remote_mta: h.as_deref(),
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
        let ids: Vec<OutboundId> = rows.iter().map(|(r, _, _, _)| r.id).collect();
        if let Err(e) = self.store.finish_outbound(&ids).await {
            tracing::error!(error = %e, "could not mark bounced rows done");
        }
    }
}

/// The finisher thread: removes delivered rows in batches — whatever
/// arrived while the previous commit waited for its fsync — and only then
/// lets their ids out of `in_flight`. A row whose removal failed stays in
/// flight (never sent again by this process) and is tried again.
fn finisher(
    runtime: &tokio::runtime::Handle,
    store: &Store,
    in_flight: &tokio::sync::Mutex<HashSet<OutboundId>>,
    rx: &mpsc::Receiver<Vec<OutboundId>>,
) {
    let mut carry: Vec<OutboundId> = Vec::new();
    loop {
        let first = if carry.is_empty() {
            match rx.recv() {
                Ok(ids) => ids,
                Err(_) => return,
            }
        } else {
            std::thread::sleep(Duration::from_millis(200));
            Vec::new()
        };
        let mut batch = std::mem::take(&mut carry);
        batch.extend(first);
        while let Ok(more) = rx.try_recv() {
            batch.extend(more);
        }
        match runtime.block_on(store.finish_outbound(&batch)) {
            Ok(()) => {
                // A thread outside the runtime: it may block on the lock.
                let mut busy = in_flight.blocking_lock();
                for id in &batch {
                    busy.remove(id);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, rows = batch.len(), "could not mark deliveries done; trying again");
                carry = batch;
            }
        }
    }
}
