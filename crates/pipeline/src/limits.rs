//! Abuse limits on submitted mail: per user and per domain, hourly caps on
//! messages and recipients (451 4.7.1 past them). A user who keeps going far
//! past a cap (a stolen password) has everything they send held in the
//! queue, and the admin is told once — so one account cannot put the
//! provider on blocklists. Counters are per process and sans-IO: the caller
//! passes the time.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug)]
pub struct LimitSettings {
    pub user_messages: u32,
    pub user_recipients: u32,
    pub domain_messages: u32,
    /// Refused attempts beyond this many caps' worth hold the user's mail.
    pub hold_after_caps: u32,
}

#[derive(Debug, Default)]
struct Counter {
    /// (time, messages, recipients)
    events: VecDeque<(Instant, u32, u32)>,
    refused: VecDeque<Instant>,
}

impl Counter {
    fn prune(&mut self, now: Instant) {
        while self
            .events
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) > WINDOW)
        {
            self.events.pop_front();
        }
        while self
            .refused
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            self.refused.pop_front();
        }
    }

    fn totals(&self) -> (u32, u32) {
        self.events
            .iter()
            .fold((0, 0), |(m, r), (_, dm, dr)| (m + dm, r + dr))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum LimitVerdict {
    Allow,
    /// 451 4.7.1 with this text.
    Refuse(String),
}

#[derive(Debug)]
pub struct SendLimits {
    settings: LimitSettings,
    users: Mutex<HashMap<String, Counter>>,
    domains: Mutex<HashMap<String, Counter>>,
    held: Mutex<HashMap<String, bool>>,
}

impl SendLimits {
    pub fn new(settings: LimitSettings) -> Self {
        SendLimits {
            settings,
            users: Mutex::new(HashMap::new()),
            domains: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// May `user` (of `domain`) send one more message to `recipients` more
    /// recipients now?
    pub fn check(&self, user: &str, domain: &str, recipients: u32, now: Instant) -> LimitVerdict {
        let s = &self.settings;
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let u = users.entry(user.to_string()).or_default();
        u.prune(now);
        let (um, ur) = u.totals();
        let mut domains = self.domains.lock().unwrap_or_else(|e| e.into_inner());
        let d = domains.entry(domain.to_string()).or_default();
        d.prune(now);
        let (dm, _) = d.totals();
        let why = if um >= s.user_messages {
            Some(format!(
                "{user} has sent {um} messages this hour (the limit is {})",
                s.user_messages
            ))
        } else if ur + recipients > s.user_recipients {
            Some(format!(
                "{user} has reached {} recipients this hour",
                s.user_recipients
            ))
        } else if dm >= s.domain_messages {
            Some(format!(
                "{domain} has sent {dm} messages this hour (the limit is {})",
                s.domain_messages
            ))
        } else {
            None
        };
        match why {
            None => LimitVerdict::Allow,
            Some(text) => {
                u.refused.push_back(now);
                LimitVerdict::Refuse(text)
            }
        }
    }

    /// Counts an accepted message.
    pub fn record(&self, user: &str, domain: &str, recipients: u32, now: Instant) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users
            .entry(user.to_string())
            .or_default()
            .events
            .push_back((now, 1, recipients));
        let mut domains = self.domains.lock().unwrap_or_else(|e| e.into_inner());
        domains
            .entry(domain.to_string())
            .or_default()
            .events
            .push_back((now, 1, recipients));
    }

    /// Whether the user's mail is to be held; `Some(true)` the first time it
    /// becomes so (tell the admin then).
    pub fn hold(&self, user: &str, now: Instant) -> Option<bool> {
        let threshold = (self.settings.user_messages.max(1) * self.settings.hold_after_caps.max(1)) as usize;
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let u = users.entry(user.to_string()).or_default();
        u.prune(now);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.get(user).copied().unwrap_or(false) {
            return Some(false);
        }
        if u.refused.len() >= threshold {
            held.insert(user.to_string(), true);
            return Some(true);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_refuse_then_hold() {
        let l = SendLimits::new(LimitSettings {
            user_messages: 2,
            user_recipients: 5,
            domain_messages: 100,
            hold_after_caps: 2,
        });
        let t = Instant::now();
        assert_eq!(l.check("u@x", "x", 1, t), LimitVerdict::Allow);
        l.record("u@x", "x", 1, t);
        l.record("u@x", "x", 1, t);
        assert!(matches!(l.check("u@x", "x", 1, t), LimitVerdict::Refuse(_)));
        assert_eq!(l.hold("u@x", t), None);
        for _ in 0..3 {
            let _ = l.check("u@x", "x", 1, t);
        }
        assert_eq!(l.hold("u@x", t), Some(true));
        assert_eq!(l.hold("u@x", t), Some(false));
        // Another user is not affected; an hour later the first may send.
        assert_eq!(l.check("v@x", "x", 5, t), LimitVerdict::Allow);
        assert!(matches!(l.check("v@x", "x", 6, t), LimitVerdict::Refuse(_)));
        assert_eq!(
            l.check("u@x", "x", 1, t + WINDOW + Duration::from_secs(1)),
            LimitVerdict::Allow
        );
    }
}
