use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use postroom_core::{ClientKey, IpNetList};

/// Counts open connections per client (an IPv4 address or an IPv6 /64) and
/// overall. Postfix's smtpd_client_connection_count_limit, for every
/// listener of one protocol.
#[derive(Debug)]
pub struct ConnectionLimiter {
    per_client: usize,
    total: usize,
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
            per_client,
            total,
            exempt,
            state: Mutex::new(Counts::default()),
        })
    }

    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, LimitExceeded> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.total >= self.total {
            return Err(LimitExceeded::Total);
        }
        let key = if self.exempt.contains(ip) {
            None
        } else {
            let key = ClientKey::of(ip);
            let n = s.per_client.entry(key).or_insert(0);
            if *n >= self.per_client {
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
