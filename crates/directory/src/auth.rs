//! Logins, shared by IMAP, POP3 and SMTP AUTH: the full address (compared
//! case-insensitively) and the mailbox password.
//!
//! Hashing runs on one thread per core, so a thousand logins at once queue
//! instead of exhausting memory (19 MiB of argon2 state each). Failed
//! logins slow down per client (IPv4 address or IPv6 /64) and per (account,
//! client); past a limit a client is refused for a while. An account alone
//! (guessed at from everywhere) only gets a delay, never a lock, so nobody
//! can lock a mailbox out.
//!
//! Every attempt reserves its failure before the password is verified, in
//! the same critical section as the check (issue #8: with the count read
//! before and written after the verification, 50 connections × 3 LOGINs
//! had 75-79 passwords evaluated with `block_after = 30`); a login that
//! succeeds gives its reservation back. Attempts for one (account, client)
//! run one after another, delay included, and one client has one password
//! verified at a time, so a single address cannot occupy every hashing
//! thread. Failures are counted in a sliding window, so the count never
//! drops to zero at a window boundary.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postroom_core::{Address, ClientKey, Secret};
use postroom_store::{AccountId, Metadata};

use crate::password;

/// The numbers behind the slowdown (config `[auth]`).
#[derive(Clone, Debug)]
pub struct LoginPolicy {
    /// Failures within `window` before delays start.
    pub failures_before_delay: u32,
    pub window: Duration,
    /// The longest delay before an answer.
    pub max_delay: Duration,
    /// Failures from one client within `window` after which its attempts are
    /// refused without being checked.
    pub block_after: u32,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        LoginPolicy {
            failures_before_delay: 5,
            window: Duration::from_secs(300),
            max_delay: Duration::from_secs(15),
            block_after: 30,
        }
    }
}

/// Slices of the window: a failure is counted for at least `window` and
/// at most `window` plus one slice (330 s with the default 300 s), in 52
/// bytes per key, where a list of the failure times would take 16 bytes
/// per failure.
const SLICES: u64 = 10;
/// One more counter than slices: the oldest, partly outside the window,
/// still counts, so that nothing is forgotten early.
const COUNTERS: usize = SLICES as usize + 1;

/// A sliding-window failure count: counters per slice of the window, a
/// ring indexed by the slice number.
#[derive(Debug, Default)]
struct Window {
    counts: [u32; COUNTERS],
    /// The slice number of the newest counter.
    newest: u64,
}

impl Window {
    /// Failures in the slices from `slice - SLICES` to `slice`.
    fn current(&self, slice: u64) -> u32 {
        let mut sum = 0u32;
        for k in 0..COUNTERS as u64 {
            let Some(idx) = self.newest.checked_sub(k) else {
                break;
            };
            if idx + SLICES >= slice && idx <= slice {
                sum = sum.saturating_add(self.counts[(idx % COUNTERS as u64) as usize]);
            }
        }
        sum
    }

    fn add(&mut self, slice: u64) {
        if slice > self.newest {
            // Clear the counters the ring moves over.
            let steps = (slice - self.newest).min(COUNTERS as u64);
            for k in 1..=steps {
                self.counts[((self.newest + k) % COUNTERS as u64) as usize] = 0;
            }
            self.newest = slice;
        }
        // A slice older than the newest (the clock is monotonic, so only
        // when called with an older `now`) counts in the newest counter.
        let idx = (self.newest % COUNTERS as u64) as usize;
        self.counts[idx] = self.counts[idx].saturating_add(1);
    }

    /// Takes back one failure counted in `slice`, if it is still counted.
    fn remove(&mut self, slice: u64) {
        let slice = slice.min(self.newest);
        if slice + (COUNTERS as u64) <= self.newest {
            return;
        }
        let idx = (slice % COUNTERS as u64) as usize;
        self.counts[idx] = self.counts[idx].saturating_sub(1);
    }
}

/// Whether an attempt may go ahead, and after how long.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    Proceed(Duration),
    Refuse,
}

/// The failure an attempt counted in advance; given back with
/// [`FailureTracker::succeeded`] or [`FailureTracker::release`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    key: ClientKey,
    user: String,
    slice: u64,
}

/// Failure bookkeeping, sans-IO: the caller passes the time.
#[derive(Debug, Default)]
pub struct FailureTracker {
    /// The time slice numbers count from (the first call's `now`).
    epoch: Option<Instant>,
    per_client: HashMap<ClientKey, Window>,
    per_pair: HashMap<(String, ClientKey), Window>,
    per_account: HashMap<String, Window>,
}

/// Bounds the tracker's memory under a flood of distinct clients.
const MAX_TRACKED: usize = 100_000;

impl FailureTracker {
    fn slice(&mut self, p: &LoginPolicy, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        Self::slice_of(epoch, p, now)
    }

    fn slice_of(epoch: Instant, p: &LoginPolicy, now: Instant) -> u64 {
        let len = (p.window.as_nanos() / u128::from(SLICES)).max(1);
        u64::try_from(now.saturating_duration_since(epoch).as_nanos() / len).unwrap_or(u64::MAX)
    }

    /// Whether an attempt would go ahead now (counting nothing).
    pub fn gate(&self, p: &LoginPolicy, now: Instant, ip: IpAddr, user: &str) -> Gate {
        let slice = self.epoch.map_or(0, |e| Self::slice_of(e, p, now));
        let key = ClientKey::of(ip);
        let client = self.per_client.get(&key).map_or(0, |w| w.current(slice));
        if client >= p.block_after {
            return Gate::Refuse;
        }
        let pair = self
            .per_pair
            .get(&(user.to_string(), key))
            .map_or(0, |w| w.current(slice));
        let account = self.per_account.get(user).map_or(0, |w| w.current(slice));
        let steep = client.max(pair);
        let mut delay = Duration::ZERO;
        if steep >= p.failures_before_delay {
            let doublings = (steep - p.failures_before_delay).min(16);
            delay = Duration::from_secs(1u64 << doublings);
        }
        // From everywhere at once: a gentle, capped delay only.
        if account >= 2 * p.failures_before_delay {
            delay = delay.max(Duration::from_millis(
                500 * u64::from((account / p.failures_before_delay).min(10)),
            ));
        }
        Gate::Proceed(delay.min(p.max_delay))
    }

    /// Checks an attempt and, when it may go ahead, counts it as a failure
    /// at once, in one step: attempts in flight are counted, so no more
    /// than `block_after` passwords are ever checked for one client within
    /// the window. The reservation goes back when the login succeeds.
    pub fn attempt(
        &mut self,
        p: &LoginPolicy,
        now: Instant,
        ip: IpAddr,
        user: &str,
    ) -> Result<(Duration, Reservation), Refused> {
        let slice = self.slice(p, now);
        match self.gate(p, now, ip, user) {
            Gate::Refuse => Err(Refused),
            Gate::Proceed(delay) => {
                self.failed(p, now, ip, user);
                Ok((
                    delay,
                    Reservation {
                        key: ClientKey::of(ip),
                        user: user.to_string(),
                        slice,
                    },
                ))
            }
        }
    }

    /// Counts a failure (without a reservation).
    pub fn failed(&mut self, p: &LoginPolicy, now: Instant, ip: IpAddr, user: &str) {
        if self.per_client.len() + self.per_pair.len() + self.per_account.len() > MAX_TRACKED {
            self.prune(p, now);
        }
        let slice = self.slice(p, now);
        let key = ClientKey::of(ip);
        self.per_client.entry(key).or_default().add(slice);
        self.per_pair
            .entry((user.to_string(), key))
            .or_default()
            .add(slice);
        self.per_account.entry(user.to_string()).or_default().add(slice);
    }

    /// The attempt was not a failure after all (the password could not be
    /// checked): its reservation goes back.
    pub fn release(&mut self, r: &Reservation) {
        if let Some(w) = self.per_client.get_mut(&r.key) {
            w.remove(r.slice);
        }
        if let Some(w) = self.per_pair.get_mut(&(r.user.clone(), r.key)) {
            w.remove(r.slice);
        }
        if let Some(w) = self.per_account.get_mut(&r.user) {
            w.remove(r.slice);
        }
    }

    /// The login succeeded: its reservation goes back and the (account,
    /// client) starts afresh. The client's other failures stay.
    pub fn succeeded(&mut self, r: &Reservation) {
        self.release(r);
        self.per_pair.remove(&(r.user.clone(), r.key));
    }

    fn prune(&mut self, p: &LoginPolicy, now: Instant) {
        let slice = self.slice(p, now);
        self.per_client.retain(|_, w| w.current(slice) > 0);
        self.per_pair.retain(|_, w| w.current(slice) > 0);
        self.per_account.retain(|_, w| w.current(slice) > 0);
    }
}

/// The attempt is refused without being checked: too many failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// An async lock per key (a client, an (account, client) pair); a key's
/// entry goes away when nobody holds or waits for it.
struct KeyedLocks<K: Hash + Eq + Clone> {
    map: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

struct KeyGuard<'a, K: Hash + Eq + Clone> {
    locks: &'a KeyedLocks<K>,
    key: K,
    mutex: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<K: Hash + Eq + Clone> KeyedLocks<K> {
    fn new() -> Self {
        KeyedLocks {
            map: Mutex::new(HashMap::new()),
        }
    }

    async fn lock(&self, key: K) -> KeyGuard<'_, K> {
        let mutex = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            if map.len() >= LOCKS_SWEEP_AT {
                // Entries left by attempts dropped while waiting (their
                // connection went away), which no guard removed.
                map.retain(|_, m| Arc::strong_count(m) > 1);
            }
            Arc::clone(map.entry(key.clone()).or_default())
        };
        let guard = Arc::clone(&mutex).lock_owned().await;
        KeyGuard {
            locks: self,
            key,
            mutex,
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Entries in a lock map above which unused ones are swept out (a lock
/// entry is about 100 bytes; the tracker itself holds up to 100,000 keys).
const LOCKS_SWEEP_AT: usize = 10_000;

impl<K: Hash + Eq + Clone> Drop for KeyGuard<'_, K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map.lock().unwrap_or_else(|e| e.into_inner());
        // The map's reference and ours: nobody else holds or waits.
        if Arc::strong_count(&self.mutex) == 2 {
            map.remove(&self.key);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub account_id: AccountId,
    /// The canonical address.
    pub address: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong address or password, or a disabled account (the client is not
    /// told which).
    Failed,
    /// Too many failures from this client: try later.
    Refused,
    /// The password store could not be read.
    Unavailable,
}

impl LoginError {
    /// The `result` label of `postroom_logins_total`.
    pub fn metric(&self) -> &'static str {
        match self {
            LoginError::Failed => "failed",
            LoginError::Refused => "refused",
            LoginError::Unavailable => "unavailable",
        }
    }
}

/// Counts a login attempt's result for `/metrics` (each protocol's I/O
/// layer calls it where it logs the login).
pub fn count_login<T>(protocol: &'static str, r: &Result<T, LoginError>) {
    postroom_core::metrics::login(protocol, r.as_ref().map_or_else(LoginError::metric, |_| "ok"));
}

/// A hash to verify against when the account does not exist, so that the
/// answer takes as long as for a real account.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2Pc5h0Dga3xvBd0GZn0n8dIO1SquTo8b4ZqRNEaHGm4";

pub struct Authenticator {
    db: Arc<dyn Metadata>,
    default_domain: Option<String>,
    policy: LoginPolicy,
    hashers: HashPool,
    tracker: Mutex<FailureTracker>,
    /// One attempt at a time per (account, client), its delay included.
    pair_locks: KeyedLocks<(String, ClientKey)>,
    /// One password verification at a time per client.
    client_locks: KeyedLocks<ClientKey>,
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads (one per core) for password hashing. On tokio's
/// blocking pool each hash could land on a new thread, and every thread
/// kept its own 19 MiB argon2 allocation in its malloc arena: memory grew
/// with every login.
struct HashPool {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl HashPool {
    fn new(threads: usize) -> HashPool {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let _ = std::thread::Builder::new()
                .name(format!("postroom-hash-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
        }
        HashPool { jobs: tx }
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.send(job).ok()?;
        rx.await.ok()
    }
}

impl Authenticator {
    pub fn new(db: Arc<dyn Metadata>, default_domain: Option<String>, policy: LoginPolicy) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Authenticator {
            db,
            default_domain,
            policy,
            hashers: HashPool::new(cores),
            tracker: Mutex::new(FailureTracker::default()),
            pair_locks: KeyedLocks::new(),
            client_locks: KeyedLocks::new(),
        }
    }

    /// The canonical form a login name is tracked and looked up by.
    fn login_name(&self, user: &str) -> Option<Address> {
        let user = user.trim();
        let full = match (&self.default_domain, user.contains('@')) {
            (Some(d), false) => format!("{user}@{d}"),
            _ => user.to_string(),
        };
        Address::parse(&full, true).ok()
    }

    pub async fn login(
        &self,
        ip: IpAddr,
        user: &str,
        password: &Secret<String>,
    ) -> Result<Authenticated, LoginError> {
        let addr = self.login_name(user);
        let name = addr
            .as_ref()
            .map_or_else(|| user.to_lowercase(), Address::canonical);
        let (acct, stored) = self
            .throttled(ip, &name, password, || async {
                match &addr {
                    Some(a) => Ok(self
                        .find(a)
                        .await?
                        .map(|a| (a.password_hash.clone(), a.enabled, a))),
                    None => Ok(None),
                }
            })
            .await?;
        // For `user show`: when the mailbox was last used. A failure to
        // note it must not fail the login.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if let Err(e) = self.db.record_login(acct.id, now).await {
            tracing::warn!(error = %e, "could not note the login time");
        }
        if password::needs_rehash(&stored) {
            // Imported hashes become argon2 at the first successful login.
            let pw = password.clone();
            if let Some(new_hash) = self.hashers.run(move || password::hash(&pw)).await {
                if let Err(e) = self.db.set_password_hash(acct.id, &new_hash).await {
                    tracing::warn!(error = %e, "could not store the rehashed password");
                }
            }
        }
        Ok(Authenticated {
            account_id: acct.id,
            address: name,
        })
    }

    /// A login to something other than a mailbox (the web console's
    /// provider administrators), under the same failure throttle as the
    /// mail protocols: `name` is the canonical login, `find` reads the
    /// stored hash and whether the login is enabled. Returns what `find`
    /// found once the password matched.
    pub async fn login_other<T, F, Fut>(
        &self,
        ip: IpAddr,
        name: &str,
        password: &Secret<String>,
        find: F,
    ) -> Result<T, LoginError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = postroom_store::Result<Option<(Option<String>, bool, T)>>>,
    {
        self.throttled(ip, name, password, find).await.map(|(t, _)| t)
    }

    /// The throttle around one password check: the per-(account, client)
    /// order and delay, the per-client verification lock, the failure
    /// counted before the check. `find` is asked for the stored hash, the
    /// enabled flag and the row after the failure is reserved.
    async fn throttled<T, F, Fut>(
        &self,
        ip: IpAddr,
        name: &str,
        password: &Secret<String>,
        find: F,
    ) -> Result<(T, String), LoginError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = postroom_store::Result<Option<(Option<String>, bool, T)>>>,
    {
        let name = name.to_string();
        let key = ClientKey::of(ip);
        let refused = || {
            tracing::info!(target: "auth", client = %ip, user = %name, "login refused: too many failures from this client; password not checked");
            Err(LoginError::Refused)
        };
        let _pair = self.pair_locks.lock((name.clone(), key)).await;
        // The delay, waited out without holding the client's lock, so that
        // one account's failures do not hold up the client's other logins.
        let gate = self.tracker.lock().unwrap_or_else(|e| e.into_inner()).gate(
            &self.policy,
            Instant::now(),
            ip,
            &name,
        );
        match gate {
            Gate::Refuse => return refused(),
            Gate::Proceed(d) if !d.is_zero() => tokio::time::sleep(d).await,
            Gate::Proceed(_) => {}
        }
        // One verification at a time per client; checked again and counted
        // in one step before it, so every earlier attempt's outcome is
        // known and at most this one is in flight (a webmail logging in
        // for many users from one address is not refused for logins that
        // have not failed).
        let _client = self.client_locks.lock(key).await;
        let attempt = self.tracker.lock().unwrap_or_else(|e| e.into_inner()).attempt(
            &self.policy,
            Instant::now(),
            ip,
            &name,
        );
        let Ok((_, reservation)) = attempt else {
            return refused();
        };
        let release = |tracker: &Mutex<FailureTracker>| {
            tracker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(&reservation)
        };
        let found = match find().await {
            Ok(found) => found,
            Err(_) => {
                release(&self.tracker);
                return Err(LoginError::Unavailable);
            }
        };
        let stored = found
            .as_ref()
            .and_then(|(h, _, _)| h.clone())
            .unwrap_or_else(|| DUMMY_HASH.to_string());
        let pw = password.clone();
        let checked = stored.clone();
        let verified = self.hashers.run(move || password::verify(&checked, &pw)).await;
        let Some(ok) = verified else {
            // The hashing threads are gone: nothing was checked.
            release(&self.tracker);
            return Err(LoginError::Unavailable);
        };
        // Why, for the log only: the client hears the same answer for all
        // (telling them apart would tell an attacker which addresses exist).
        let why = match &found {
            None => "unknown user",
            Some((None, _, _)) => "no password set",
            Some(_) if !ok => "wrong password",
            Some((_, false, _)) => "disabled",
            Some(_) => "",
        };
        let usable = found.filter(|(h, enabled, _)| ok && *enabled && h.is_some());
        let Some((_, _, row)) = usable else {
            // The reservation stays: it was a failure.
            tracing::info!(target: "auth", client = %ip, user = %name, reason = why, "login failed");
            return Err(LoginError::Failed);
        };
        self.tracker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .succeeded(&reservation);
        Ok((row, stored))
    }

    async fn find(
        &self,
        addr: &Address,
    ) -> postroom_store::Result<Option<postroom_store::directory::AccountRow>> {
        let Some(d) = self.db.domain(addr.domain().canonical()).await? else {
            return Ok(None);
        };
        let d = match d.alias_of {
            Some(t) => match self.db.domain_by_id(t).await? {
                Some(t) => t,
                None => return Ok(None),
            },
            None => d,
        };
        self.db.account(d.id, addr.local_canonical()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_per_client_and_refuse_at_the_limit() {
        let p = LoginPolicy::default();
        let mut t = FailureTracker::default();
        let now = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(t.gate(&p, now, ip, "u@x"), Gate::Proceed(Duration::ZERO));
            t.failed(&p, now, ip, "u@x");
        }
        assert_eq!(t.gate(&p, now, ip, "u@x"), Gate::Proceed(Duration::from_secs(1)));
        t.failed(&p, now, ip, "other@x");
        assert_eq!(t.gate(&p, now, ip, "u@x"), Gate::Proceed(Duration::from_secs(2)));
        for _ in 0..30 {
            t.failed(&p, now, ip, "u@x");
        }
        assert_eq!(t.gate(&p, now, ip, "u@x"), Gate::Refuse);
        // Another client is not affected by this one's failures, beyond the
        // account's gentle delay.
        let other: IpAddr = "198.51.100.9".parse().unwrap();
        match t.gate(&p, now, other, "u@x") {
            Gate::Proceed(d) => assert!(d <= Duration::from_secs(5)),
            Gate::Refuse => panic!("an account was locked for everyone"),
        }
        // The window passes (and the slice the failures fell in: a failure
        // counts for the window plus at most a tenth of it).
        let later = now + p.window + p.window / 10 + Duration::from_secs(1);
        assert_eq!(t.gate(&p, later, ip, "u@x"), Gate::Proceed(Duration::ZERO));
    }

    #[test]
    fn attempts_in_flight_are_counted() {
        // Issue #8: the count was read before and written after the
        // verification, so attempts in flight all passed the check.
        let p = LoginPolicy::default();
        let mut t = FailureTracker::default();
        let now = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut reserved = Vec::new();
        for i in 0..150 {
            // Different accounts, as a spraying client would try.
            if let Ok((_, r)) = t.attempt(&p, now, ip, &format!("u{i}@x")) {
                reserved.push(r);
            }
        }
        assert_eq!(reserved.len(), p.block_after as usize);
        // A success gives its reservation back, the others stay failures.
        t.succeeded(&reserved[0]);
        assert!(t.attempt(&p, now, ip, "u0@x").is_ok());
        assert_eq!(t.attempt(&p, now, ip, "u0@x"), Err(Refused));
        // Another client is not refused.
        assert!(t.attempt(&p, now, "192.0.2.2".parse().unwrap(), "u0@x").is_ok());
    }

    #[test]
    fn the_window_slides() {
        // Issue #8: with a window starting at the first failure and reset
        // after 300 s, one failure then 29 just before the reset let a
        // client start again at zero at once.
        let p = LoginPolicy::default();
        let mut t = FailureTracker::default();
        let start = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(t.attempt(&p, start, ip, "u@x").is_ok());
        let late = start + p.window - Duration::from_secs(10);
        for _ in 1..p.block_after {
            t.failed(&p, late, ip, "u@x");
        }
        assert_eq!(t.gate(&p, late, ip, "u@x"), Gate::Refuse);
        // Past the first failure's window: one slot is free again, no more.
        let after = start + p.window + p.window / 10 + Duration::from_secs(1);
        assert!(t.attempt(&p, after, ip, "u@x").is_ok());
        assert_eq!(t.attempt(&p, after, ip, "u@x"), Err(Refused));
        // Still refused until the 29 leave the window too.
        assert_eq!(
            t.gate(&p, late + p.window - Duration::from_secs(1), ip, "u@x"),
            Gate::Refuse
        );
        let clear = after + p.window + p.window / 10;
        assert_eq!(t.gate(&p, clear, ip, "u@x"), Gate::Proceed(Duration::ZERO));
    }

    #[test]
    fn window_counts_exactly_what_is_in_it() {
        let mut w = Window::default();
        for s in 0..25u64 {
            w.add(s);
            // Slices s-10..=s: at most 11 failures.
            assert_eq!(w.current(s), (s + 1).min(11) as u32, "slice {s}");
        }
        w.remove(24);
        assert_eq!(w.current(24), 10);
        // A removal for a slice that left the ring changes nothing.
        w.remove(3);
        assert_eq!(w.current(24), 10);
        assert_eq!(w.current(24 + 11), 0);
    }

    async fn authenticator(policy: LoginPolicy) -> (tempfile::TempDir, Arc<Authenticator>) {
        let dir = tempfile::tempdir().unwrap();
        let store = postroom_store::Store::open(dir.path()).unwrap();
        let db = store.meta();
        let d = db.add_domain("probe.test", "probe.test", None).await.unwrap();
        let hash = password::hash(&Secret::new("right".into()));
        db.add_account(d.id, "alice", "alice", Some(&hash), None)
            .await
            .unwrap();
        (
            dir,
            Arc::new(Authenticator::new(store.meta_handle(), None, policy)),
        )
    }

    #[tokio::test]
    async fn a_successful_login_is_noted_and_a_failed_one_is_not() {
        let (_dir, auth) = authenticator(LoginPolicy::default()).await;
        let d = auth.db.domain("probe.test").await.unwrap().unwrap();
        let alice = || async { auth.db.account(d.id, "alice").await.unwrap().unwrap() };
        assert_eq!(alice().await.last_login, None);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(auth
            .login(ip, "alice@probe.test", &Secret::new("wrong".into()))
            .await
            .is_err());
        assert_eq!(alice().await.last_login, None);
        auth.login(ip, "alice@probe.test", &Secret::new("right".into()))
            .await
            .unwrap();
        assert!(alice().await.last_login.is_some_and(|t| t > 1_700_000_000));
    }

    /// The web console's logins (`login_other`) count in the same
    /// throttle: failures there block the client's mail logins, and the
    /// other way round, so a guesser gains nothing by switching doors.
    #[tokio::test]
    async fn other_logins_share_the_failure_throttle() {
        let policy = LoginPolicy {
            failures_before_delay: 1000,
            block_after: 3,
            ..LoginPolicy::default()
        };
        let (_dir, auth) = authenticator(policy).await;
        let hash = password::hash(&Secret::new("console".into()));
        let console = |pw: &'static str, ip: IpAddr| {
            let auth = Arc::clone(&auth);
            let hash = hash.clone();
            async move {
                auth.login_other(ip, "boss@provider.test", &Secret::new(pw.into()), || async move {
                    Ok(Some((Some(hash), true, "boss")))
                })
                .await
            }
        };
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(console("console", ip).await, Ok("boss"));
        for _ in 0..3 {
            assert_eq!(console("wrong", ip).await, Err(LoginError::Failed));
        }
        // The right mailbox password is not even checked now.
        assert_eq!(
            auth.login(ip, "alice@probe.test", &Secret::new("right".into()))
                .await,
            Err(LoginError::Refused)
        );
        assert_eq!(console("console", ip).await, Err(LoginError::Refused));
        // Mail login failures block console logins.
        let other: IpAddr = "198.51.100.4".parse().unwrap();
        for _ in 0..3 {
            assert!(auth
                .login(other, "alice@probe.test", &Secret::new("wrong".into()))
                .await
                .is_err());
        }
        assert_eq!(console("console", other).await, Err(LoginError::Refused));
        // A disabled login fails with the right password.
        let third: IpAddr = "203.0.113.5".parse().unwrap();
        let disabled = auth
            .login_other(
                third,
                "off@provider.test",
                &Secret::new("console".into()),
                || async { Ok(Some((Some(hash.clone()), false, ()))) },
            )
            .await;
        assert_eq!(disabled, Err(LoginError::Failed));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_right_logins_from_one_client_are_not_refused() {
        // A webmail logs in for many users from one address at once: only
        // one attempt per client is ever in flight, so logins that have not
        // failed never add up to block_after.
        let policy = LoginPolicy {
            block_after: 3,
            ..LoginPolicy::default()
        };
        let (_dir, auth) = authenticator(policy).await;
        let d = auth.db.domain("probe.test").await.unwrap().unwrap();
        let hash = password::hash(&Secret::new("right".into()));
        for i in 0..12 {
            auth.db
                .add_account(d.id, &format!("u{i}"), &format!("u{i}"), Some(&hash), None)
                .await
                .unwrap();
        }
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let auth = Arc::clone(&auth);
                tokio::spawn(async move {
                    auth.login(ip, &format!("u{i}@probe.test"), &Secret::new("right".into()))
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_wrong_logins_check_at_most_block_after_passwords() {
        let policy = LoginPolicy {
            failures_before_delay: 1000,
            window: Duration::from_secs(3600),
            max_delay: Duration::from_secs(1),
            block_after: 5,
        };
        let (_dir, auth) = authenticator(policy).await;
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut tasks = Vec::new();
        for i in 0..150 {
            let auth = Arc::clone(&auth);
            // Half against the one account, half spraying others.
            let user = if i % 2 == 0 {
                "alice@probe.test".to_string()
            } else {
                format!("u{i}@probe.test")
            };
            tasks.push(tokio::spawn(async move {
                auth.login(ip, &user, &Secret::new("wrong".into())).await
            }));
        }
        let mut failed = 0;
        let mut refused = 0;
        for t in tasks {
            match t.await.unwrap() {
                Err(LoginError::Failed) => failed += 1,
                Err(LoginError::Refused) => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((failed, refused), (5, 145));
        // The right password from this client is refused while it is blocked,
        // and nothing was verified for it.
        assert_eq!(
            auth.login(ip, "alice@probe.test", &Secret::new("right".into()))
                .await,
            Err(LoginError::Refused)
        );
        // The account is not locked: its owner elsewhere logs in.
        let home: IpAddr = "198.51.100.7".parse().unwrap();
        assert!(auth
            .login(home, "alice@probe.test", &Secret::new("right".into()))
            .await
            .is_ok());
        // The lock maps hold no entry once nobody waits.
        assert_eq!(auth.pair_locks.len(), 0);
        assert_eq!(auth.client_locks.len(), 0);
    }

    #[test]
    fn the_dummy_hash_is_valid() {
        assert!(!password::verify(DUMMY_HASH, &Secret::new("x".into())));
        assert!(DUMMY_HASH.starts_with("$argon2id$"));
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
