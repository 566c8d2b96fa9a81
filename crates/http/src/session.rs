//! Console sessions, kept on the server: the browser holds only a random
//! id. Sans-IO: every call takes the time, so the lifetimes are tested
//! without waiting.
//!
//! Sessions live in this process's memory. A restart logs everybody out
//! and several nodes each have their own (a load balancer must keep a
//! browser on one node); moving them into the store is a trait addition
//! when scale-out needs it. What must hold across nodes holds already:
//! each request re-reads the login's row, and a session whose password
//! fingerprint no longer matches ends (a password change made on any
//! node, or with the CLI, ends the other sessions everywhere).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use postroom_store::DomainId;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Who a session belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A provider administrator: every domain.
    Provider,
    /// A mailbox with the admin flag: its own domain (and that domain's
    /// alias domains).
    DomainAdmin {
        domain: DomainId,
        account: postroom_store::AccountId,
    },
    /// A provider administrator acting as this domain's admin ("manage
    /// this domain"): the domain's scope, audited when it starts and ends.
    Acting { domain: DomainId },
}

#[derive(Clone, Debug)]
pub struct Session {
    /// The canonical login address.
    pub login: String,
    pub role: Role,
    /// Sent with every change (form field or `X-CSRF-Token`); apart from
    /// the session id, so a page that shows it does not reveal the
    /// session cookie.
    pub csrf: String,
    /// A digest of the password hash at login: when the stored hash
    /// changes, the session ends.
    pub fingerprint: String,
    pub created: u64,
    pub last_seen: u64,
}

/// The most sessions at once (about 300 bytes each: 3 MB), and per login;
/// a login's oldest session goes first.
const MAX_SESSIONS: usize = 10_000;
const MAX_PER_LOGIN: usize = 20;

pub struct Sessions {
    idle: u64,
    max_age: u64,
    /// By the SHA-256 of the cookie's value: a memory dump holds no usable
    /// cookie.
    map: Mutex<HashMap<String, Session>>,
}

/// 256 random bits, URL-safe base64 (43 characters).
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn key(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What ends a session when the stored password hash changes.
pub fn fingerprint(password_hash: &str) -> String {
    hex(&Sha256::digest(password_hash.as_bytes())[..16])
}

/// Compares two secrets in time that depends only on their lengths.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sessions {
    pub fn new(idle_secs: u64, max_secs: u64) -> Sessions {
        Sessions {
            idle: idle_secs,
            max_age: max_secs,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn alive(&self, s: &Session, now: u64) -> bool {
        now.saturating_sub(s.last_seen) < self.idle && now.saturating_sub(s.created) < self.max_age
    }

    /// A new session; returns the cookie's value.
    pub fn create(&self, login: &str, role: Role, fingerprint: String, now: u64) -> (String, Session) {
        let token = random_token();
        let session = Session {
            login: login.to_string(),
            role,
            csrf: random_token(),
            fingerprint,
            created: now,
            last_seen: now,
        };
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| self.alive(s, now));
        }
        let mut mine: Vec<(String, u64)> = map
            .iter()
            .filter(|(_, s)| s.login == login)
            .map(|(k, s)| (k.clone(), s.last_seen))
            .collect();
        if mine.len() >= MAX_PER_LOGIN {
            mine.sort_by_key(|(_, t)| *t);
            for (k, _) in mine.iter().take(mine.len() + 1 - MAX_PER_LOGIN) {
                map.remove(k);
            }
        }
        if map.len() >= MAX_SESSIONS {
            // Full of live sessions: the least recently used one goes.
            if let Some(k) = map
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
            {
                map.remove(&k);
            }
        }
        map.insert(key(&token), session.clone());
        (token, session)
    }

    /// The live session with this cookie value, its idle time restarted.
    pub fn get(&self, token: &str, now: u64) -> Option<Session> {
        let k = key(token);
        let mut map = self.lock();
        let s = map.get_mut(&k)?;
        if !self.alive(s, now) {
            map.remove(&k);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    pub fn remove(&self, token: &str) {
        self.lock().remove(&key(token));
    }

    /// After a password change made in this session: it stays (with the
    /// new fingerprint), the login's other sessions end.
    pub fn password_changed(&self, token: &str, login: &str, fingerprint: String) {
        let keep = key(token);
        let mut map = self.lock();
        map.retain(|k, s| *k == keep || s.login != login);
        if let Some(s) = map.get_mut(&keep) {
            s.fingerprint = fingerprint;
        }
    }

    /// Changes a live session's role (a provider admin starting or ending
    /// "manage this domain"); the CSRF token and lifetimes stay.
    pub fn set_role(&self, token: &str, role: Role) -> bool {
        match self.lock().get_mut(&key(token)) {
            Some(s) => {
                s.role = role;
                true
            }
            None => false,
        }
    }

    /// Ends every session of a login (its password was changed by
    /// someone else, or it was removed).
    pub fn end_all(&self, login: &str) {
        self.lock().retain(|_, s| s.login != login);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(1800, 12 * 3600)
    }

    #[test]
    fn idle_and_absolute_lifetimes() {
        let s = sessions();
        let (t, _) = s.create("a@x.example", Role::Provider, "f".into(), 1000);
        assert!(s.get(&t, 1000 + 1799).is_some());
        // Used within the idle time: still alive.
        assert!(s.get(&t, 1000 + 1799 + 1799).is_some());
        // Idle for 30 minutes: gone, and stays gone.
        assert!(s.get(&t, 1000 + 1799 + 1799 + 1800).is_none());
        assert!(s.get(&t, 1000 + 1799 + 1799 + 1801).is_none());
        // Busy all day: ends 12 hours after its login.
        let (t, _) = s.create("a@x.example", Role::Provider, "f".into(), 0);
        let mut now = 0;
        while now < 12 * 3600 - 600 {
            now += 600;
            assert!(s.get(&t, now).is_some(), "at {now}");
        }
        assert!(s.get(&t, 12 * 3600).is_none());
    }

    #[test]
    fn tokens_are_random_and_only_the_exact_one_works() {
        let s = sessions();
        let (t1, a) = s.create("a@x.example", Role::Provider, "f".into(), 0);
        let (t2, b) = s.create("a@x.example", Role::Provider, "f".into(), 0);
        assert_ne!(t1, t2);
        assert_ne!(a.csrf, b.csrf);
        assert_ne!(a.csrf, t1);
        assert_eq!(t1.len(), 43);
        assert!(s.get(&t1[..42], 0).is_none());
        assert!(s.get(&a.csrf, 0).is_none());
        s.remove(&t1);
        assert!(s.get(&t1, 0).is_none());
        assert!(s.get(&t2, 0).is_some());
    }

    #[test]
    fn a_password_change_ends_the_other_sessions() {
        let s = sessions();
        let (mine, _) = s.create("a@x.example", Role::Provider, "old".into(), 0);
        let (other, _) = s.create("a@x.example", Role::Provider, "old".into(), 0);
        let (someone, _) = s.create("b@x.example", Role::Provider, "old".into(), 0);
        s.password_changed(&mine, "a@x.example", "new".into());
        assert_eq!(s.get(&mine, 1).map(|x| x.fingerprint), Some("new".into()));
        assert!(s.get(&other, 1).is_none());
        assert!(s.get(&someone, 1).is_some());
        s.end_all("b@x.example");
        assert!(s.get(&someone, 1).is_none());
    }

    #[test]
    fn sessions_per_login_are_bounded() {
        let s = sessions();
        let first = s.create("a@x.example", Role::Provider, "f".into(), 0).0;
        for i in 1..=MAX_PER_LOGIN as u64 {
            s.create("a@x.example", Role::Provider, "f".into(), i);
        }
        assert_eq!(s.len(), MAX_PER_LOGIN);
        assert!(s.get(&first, 30).is_none());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }
}
