use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use postroom_core::{ClientKey, IpNetList};

/// Counts open connections per client (an IPv4 address or an IPv6 /64) and
/// overall. Postfix's smtpd_client_connection_count_limit, for every
/// listener of one protocol.
#[derive(Debug)]
pub struct ConnectionLimiter {
    /// Atomics: `postroom reload` changes them while connections come and
    /// go (connections already open above a lowered limit stay open).
    per_client: AtomicUsize,
    total: AtomicUsize,
    exempt: IpNetList,
    state: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    per_client: HashMap<ClientKey, usize>,
    total: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum LimitExceeded {
    Client,
    Total,
}

/// Held for the life of a connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    key: Option<ClientKey>,
}

impl ConnectionLimiter {
    pub fn new(per_client: usize, total: usize, exempt: IpNetList) -> Arc<Self> {
        Arc::new(ConnectionLimiter {
            per_client: AtomicUsize::new(per_client),
            total: AtomicUsize::new(total),
            exempt,
            state: Mutex::new(Counts::default()),
        })
    }

    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, LimitExceeded> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.total >= self.total.load(Ordering::Relaxed) {
            return Err(LimitExceeded::Total);
        }
        let key = if self.exempt.contains(ip) {
            None
        } else {
            let key = ClientKey::of(ip);
            let n = s.per_client.entry(key).or_insert(0);
            if *n >= self.per_client.load(Ordering::Relaxed) {
                return Err(LimitExceeded::Client);
            }
            *n += 1;
            Some(key)
        };
        s.total += 1;
        Ok(ConnectionPermit {
            limiter: Arc::clone(self),
            key,
        })
    }
}

impl ConnectionLimiter {
    /// New limits for the connections that come next.
    pub fn set_limits(&self, per_client: usize, total: usize) {
        self.per_client.store(per_client, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    pub fn limits(&self) -> (usize, usize) {
        (
            self.per_client.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

impl ConnectionPermit {
    /// Moves the connection to another limiter's pool, if that has room
    /// for `ip`; the slot held so far is freed. A submission connection
    /// moves from the unauthenticated pool to the authenticated one after
    /// AUTH, so unauthenticated connections cannot take logged-in users'
    /// slots. Without room, the permit stays as it was.
    pub fn move_to(&mut self, to: &Arc<ConnectionLimiter>, ip: IpAddr) -> Result<(), LimitExceeded> {
        if Arc::ptr_eq(&self.limiter, to) {
            return Ok(());
        }
        *self = to.try_acquire(ip)?;
        Ok(())
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut s = self.limiter.state.lock().unwrap_or_else(|e| e.into_inner());
        s.total = s.total.saturating_sub(1);
        if let Some(key) = self.key {
            if let Some(n) = s.per_client.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    s.per_client.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permit_moves_to_another_pool() {
        let unauth = ConnectionLimiter::new(2, 100, IpNetList::default());
        let auth = ConnectionLimiter::new(1, 100, IpNetList::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut a = unauth.try_acquire(ip).unwrap();
        let mut b = unauth.try_acquire(ip).unwrap();
        assert_eq!(unauth.try_acquire(ip).unwrap_err(), LimitExceeded::Client);
        a.move_to(&auth, ip).unwrap();
        // The unauthenticated slot is free again.
        let _c = unauth.try_acquire(ip).unwrap();
        // No room in the authenticated pool: b keeps its slot.
        assert_eq!(b.move_to(&auth, ip).unwrap_err(), LimitExceeded::Client);
        assert_eq!(unauth.try_acquire(ip).unwrap_err(), LimitExceeded::Client);
        drop(a);
        b.move_to(&auth, ip).unwrap();
        assert!(unauth.try_acquire(ip).is_ok());
    }

    #[test]
    fn per_client_and_exempt() {
        let l = ConnectionLimiter::new(2, 100, IpNetList::parse(&["127.0.0.0/8"]).unwrap());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = l.try_acquire(ip).unwrap();
        let _b = l.try_acquire(ip).unwrap();
        assert_eq!(l.try_acquire(ip).unwrap_err(), LimitExceeded::Client);
        drop(a);
        assert!(l.try_acquire(ip).is_ok());
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..10).map(|_| l.try_acquire(local).unwrap()).collect();
        assert_eq!(held.len(), 10);
    }
}

/// Counts open sessions per logged-in account (IMAP and POP3 connections
/// per user), so one account cannot take every connection slot.
#[derive(Debug)]
pub struct AccountLimiter {
    max: usize,
    counts: Mutex<HashMap<i64, usize>>,
}

/// Held while a session is logged in; dropping it frees the slot.
#[derive(Debug)]
pub struct AccountPermit {
    limiter: Arc<AccountLimiter>,
    account: i64,
}

impl AccountLimiter {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(AccountLimiter {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    pub fn try_acquire(self: &Arc<Self>, account: i64) -> Option<AccountPermit> {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = c.entry(account).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AccountPermit {
            limiter: Arc::clone(self),
            account,
        })
    }
}

impl Drop for AccountPermit {
    fn drop(&mut self) {
        let mut c = self.limiter.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = c.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod account_tests {
    use super::*;

    #[test]
    fn per_account() {
        let l = AccountLimiter::new(2);
        let a = l.try_acquire(7).unwrap();
        let _b = l.try_acquire(7).unwrap();
        assert!(l.try_acquire(7).is_none());
        assert!(l.try_acquire(8).is_some());
        drop(a);
        assert!(l.try_acquire(7).is_some());
    }
}
