//! Logins, shared by IMAP, POP3 and SMTP AUTH: the full address (compared
//! case-insensitively) and the mailbox password.
//!
//! Hashing runs on one thread per core, so a thousand logins at once queue
//! instead of exhausting memory (19 MiB of argon2 state each). Failed
//! logins slow down per client (IPv4 address or IPv6 /64) and per (account,
//! client); past a limit a client is refused for a while. An account alone
//! (guessed at from everywhere) only gets a delay, never a lock, so nobody
//! can lock a mailbox out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postroom_core::{Address, ClientKey, Secret};
use postroom_store::Db;

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

#[derive(Debug, Default)]
struct Window {
    count: u32,
    started: Option<Instant>,
}

impl Window {
    fn current(&self, now: Instant, window: Duration) -> u32 {
        match self.started {
            Some(t) if now.duration_since(t) < window => self.count,
            _ => 0,
        }
    }

    fn add(&mut self, now: Instant, window: Duration) {
        if self.current(now, window) == 0 {
            self.started = Some(now);
            self.count = 0;
        }
        self.count += 1;
    }
}

/// Whether an attempt may go ahead, and after how long.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    Proceed(Duration),
    Refuse,
}

/// Failure bookkeeping, sans-IO: the caller passes the time.
#[derive(Debug, Default)]
pub struct FailureTracker {
    per_client: HashMap<ClientKey, Window>,
    per_pair: HashMap<(String, ClientKey), Window>,
    per_account: HashMap<String, Window>,
}

/// Bounds the tracker's memory under a flood of distinct clients.
const MAX_TRACKED: usize = 100_000;

impl FailureTracker {
    pub fn gate(&self, p: &LoginPolicy, now: Instant, ip: IpAddr, user: &str) -> Gate {
        let key = ClientKey::of(ip);
        let client = self.per_client.get(&key).map_or(0, |w| w.current(now, p.window));
        if client >= p.block_after {
            return Gate::Refuse;
        }
        let pair = self
            .per_pair
            .get(&(user.to_string(), key))
            .map_or(0, |w| w.current(now, p.window));
        let account = self.per_account.get(user).map_or(0, |w| w.current(now, p.window));
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

    pub fn failed(&mut self, p: &LoginPolicy, now: Instant, ip: IpAddr, user: &str) {
        if self.per_client.len() + self.per_pair.len() + self.per_account.len() > MAX_TRACKED {
            self.prune(p, now);
        }
        let key = ClientKey::of(ip);
        self.per_client.entry(key).or_default().add(now, p.window);
        self.per_pair
            .entry((user.to_string(), key))
            .or_default()
            .add(now, p.window);
        self.per_account
            .entry(user.to_string())
            .or_default()
            .add(now, p.window);
    }

    pub fn succeeded(&mut self, ip: IpAddr, user: &str) {
        self.per_pair.remove(&(user.to_string(), ClientKey::of(ip)));
    }

    fn prune(&mut self, p: &LoginPolicy, now: Instant) {
        self.per_client.retain(|_, w| w.current(now, p.window) > 0);
        self.per_pair.retain(|_, w| w.current(now, p.window) > 0);
        self.per_account.retain(|_, w| w.current(now, p.window) > 0);
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub account_id: i64,
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

/// A hash to verify against when the account does not exist, so that the
/// answer takes as long as for a real account.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2Pc5h0Dga3xvBd0GZn0n8dIO1SquTo8b4ZqRNEaHGm4";

pub struct Authenticator {
    db: Db,
    default_domain: Option<String>,
    policy: LoginPolicy,
    hashers: HashPool,
    tracker: Mutex<FailureTracker>,
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
    pub fn new(db: Db, default_domain: Option<String>, policy: LoginPolicy) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Authenticator {
            db,
            default_domain,
            policy,
            hashers: HashPool::new(cores),
            tracker: Mutex::new(FailureTracker::default()),
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
        let gate = {
            let t = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
            t.gate(&self.policy, Instant::now(), ip, &name)
        };
        match gate {
            Gate::Refuse => return Err(LoginError::Refused),
            Gate::Proceed(d) if !d.is_zero() => tokio::time::sleep(d).await,
            Gate::Proceed(_) => {}
        }
        let account = match &addr {
            Some(a) => self.find(a).map_err(|_| LoginError::Unavailable)?,
            None => None,
        };
        let stored = account
            .as_ref()
            .and_then(|a| a.password_hash.clone())
            .unwrap_or_else(|| DUMMY_HASH.to_string());
        let pw = password.clone();
        let checked = stored.clone();
        let ok = self
            .hashers
            .run(move || password::verify(&checked, &pw))
            .await
            .unwrap_or(false);
        let usable = account.filter(|a| ok && a.enabled && a.password_hash.is_some());
        let Some(acct) = usable else {
            let mut t = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
            t.failed(&self.policy, Instant::now(), ip, &name);
            return Err(LoginError::Failed);
        };
        self.tracker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .succeeded(ip, &name);
        if password::needs_rehash(&stored) {
            // Imported hashes become argon2 at the first successful login.
            let pw = password.clone();
            if let Some(new_hash) = self.hashers.run(move || password::hash(&pw)).await {
                if let Err(e) = self.db.set_password_hash(acct.id, &new_hash) {
                    tracing::warn!(error = %e, "could not store the rehashed password");
                }
            }
        }
        Ok(Authenticated {
            account_id: acct.id,
            address: name,
        })
    }

    fn find(&self, addr: &Address) -> postroom_store::Result<Option<postroom_store::directory::AccountRow>> {
        let Some(d) = self.db.domain(addr.domain().canonical())? else {
            return Ok(None);
        };
        let d = match d.alias_of {
            Some(t) => match self.db.domain_by_id(t)? {
                Some(t) => t,
                None => return Ok(None),
            },
            None => d,
        };
        self.db.account(d.id, addr.local_canonical())
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
        // The window passes.
        let later = now + p.window + Duration::from_secs(1);
        assert_eq!(t.gate(&p, later, ip, "u@x"), Gate::Proceed(Duration::ZERO));
    }

    #[test]
    fn the_dummy_hash_is_valid() {
        assert!(!password::verify(DUMMY_HASH, &Secret::new("x".into())));
        assert!(DUMMY_HASH.starts_with("$argon2id$"));
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
