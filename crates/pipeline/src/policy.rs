//! RCPT-time policy: who may send to which address. Pure: the directory
//! lookup is done by the caller and passed in.

use std::net::IpAddr;

use postroom_core::IpNetList;
use postroom_directory::{Lookup, Resolution, Route};
use postroom_smtp::{RcptVerdict, Reply};

/// A recipient the session accepted, with where it goes.
#[derive(Clone, Debug)]
pub struct AcceptedRcpt {
    /// The RCPT address as the client wrote it.
    pub rcpt: String,
    pub routes: Vec<Route>,
    /// A hosted address whose outside targets are forwards (their envelope
    /// sender is rewritten with SRS), rather than a relay.
    pub forwarded: bool,
}

#[derive(Clone, Debug)]
pub struct RelayPolicy {
    /// Networks that may relay without authentication (empty by default).
    pub trusted_networks: IpNetList,
    /// 554 as the seed's Postfix, or 550 as RFC 5321 lists for RCPT.
    pub relay_denied_code: u16,
    pub reject_disabled_accounts: bool,
    /// The reply code for a full mailbox at RCPT: 452 (4.2.2, try later,
    /// the default) or 552 (5.2.2).
    pub quota_code: u16,
}

/// A mailbox's quota state at RCPT time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaState {
    pub used: i64,
    pub limit: Option<i64>,
}

impl QuotaState {
    /// At or over quota, or over it with the declared size.
    pub fn refuses(&self, declared: Option<u64>) -> bool {
        match self.limit {
            None => false,
            Some(limit) => {
                self.used >= limit || self.used.saturating_add(declared.unwrap_or(0) as i64) > limit
            }
        }
    }
}

impl RelayPolicy {
    /// `quota`: the directly named mailbox's quota state, with the SIZE the
    /// client declared. Only a mailbox named directly is refused for its
    /// quota; list members are never refused for one full mailbox, and a
    /// mailbox that fills up after RCPT still gets the message.
    pub fn decide(
        &self,
        peer: IpAddr,
        rcpt: String,
        lookup: Lookup,
        quota: Option<(QuotaState, Option<u64>)>,
        authenticated: bool,
    ) -> RcptVerdict<AcceptedRcpt> {
        match lookup {
            Lookup::NotHosted => {
                // Relay only for authenticated users and trusted networks.
                if authenticated || self.trusted_networks.contains(peer) {
                    RcptVerdict::Accept(AcceptedRcpt {
                        routes: vec![Route::Remote {
                            address: rcpt.clone(),
                        }],
                        rcpt,
                        forwarded: false,
                    })
                } else {
                    // Never an open relay.
                    RcptVerdict::Reject(Reply::new(
                        self.relay_denied_code,
                        "5.7.1",
                        format!("<{rcpt}>: Relay access denied"),
                    ))
                }
            }
            Lookup::Unknown => RcptVerdict::Reject(Reply::new(
                550,
                "5.1.1",
                format!("<{rcpt}>: Recipient address rejected: User unknown"),
            )),
            // Nothing in the expansion can take the mail (missing alias
            // targets, postmaster@ with nobody behind it): accepting it would
            // only hold it in the queue for ever.
            Lookup::Unresolvable(why) => RcptVerdict::Reject(Reply::new(
                550,
                "5.1.1",
                format!("<{rcpt}>: Recipient address rejected: {why}"),
            )),
            Lookup::Loop(why) => RcptVerdict::Reject(Reply::new(554, "5.4.6", format!("<{rcpt}>: {why}"))),
            // The pipeline asks the customer's server first; reaching here
            // means it could not.
            Lookup::Callout { .. } => RcptVerdict::Reject(Reply::new(
                451,
                "4.4.3",
                format!("<{rcpt}>: Recipient verification unavailable, try again later"),
            )),
            Lookup::Found(Resolution {
                routes,
                direct_account,
                gateway,
            }) => {
                // `user remove`: the mailbox is going (its mail is deleted
                // after the grace period), so it takes nothing new,
                // whatever reject_disabled_accounts says.
                if direct_account.as_ref().is_some_and(|a| a.delete_after.is_some()) {
                    return RcptVerdict::Reject(Reply::new(
                        550,
                        "5.1.1",
                        format!("<{rcpt}>: Recipient address rejected: mailbox removed"),
                    ));
                }
                let disabled = direct_account.as_ref().is_some_and(|a| !a.enabled);
                if disabled && self.reject_disabled_accounts {
                    return RcptVerdict::Reject(Reply::new(
                        550,
                        "5.2.1",
                        format!("<{rcpt}>: Mailbox disabled"),
                    ));
                }
                if let Some((q, declared)) = quota {
                    if q.refuses(declared) {
                        let (code, enhanced) = if self.quota_code == 552 {
                            (552, "5.2.2")
                        } else {
                            (452, "4.2.2")
                        };
                        return RcptVerdict::Reject(Reply::new(
                            code,
                            enhanced,
                            format!("<{rcpt}>: Mailbox is full"),
                        ));
                    }
                }
                RcptVerdict::Accept(AcceptedRcpt {
                    rcpt,
                    routes,
                    // A gateway domain's mail is relayed as it came: the
                    // customer's server is its destination, not a forward.
                    forwarded: !gateway,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_at_rcpt() {
        let q = QuotaState {
            used: 900,
            limit: Some(1000),
        };
        assert!(!q.refuses(None));
        assert!(!q.refuses(Some(100)));
        assert!(q.refuses(Some(101)));
        assert!(QuotaState {
            used: 1000,
            limit: Some(1000)
        }
        .refuses(None));
        assert!(!QuotaState {
            used: 10_000,
            limit: None
        }
        .refuses(Some(1)));
    }

    fn policy(trusted: &[&str]) -> RelayPolicy {
        RelayPolicy {
            trusted_networks: IpNetList::parse(trusted).unwrap(),
            relay_denied_code: 554,
            reject_disabled_accounts: false,
            quota_code: 452,
        }
    }

    #[test]
    fn never_an_open_relay() {
        let v = policy(&[]).decide(
            "127.0.0.1".parse().unwrap(),
            "x@elsewhere.example".into(),
            Lookup::NotHosted,
            None,
            false,
        );
        match v {
            RcptVerdict::Reject(r) => assert_eq!(
                r.summary(),
                "554 5.7.1 <x@elsewhere.example>: Relay access denied"
            ),
            _ => panic!("relayed"),
        }
        let v = policy(&["192.168.1.0/24"]).decide(
            "::ffff:192.168.1.9".parse().unwrap(),
            "x@elsewhere.example".into(),
            Lookup::NotHosted,
            None,
            false,
        );
        assert!(matches!(v, RcptVerdict::Accept(_)));
        let v = policy(&[]).decide(
            "192.0.2.7".parse().unwrap(),
            "x@elsewhere.example".into(),
            Lookup::NotHosted,
            None,
            true,
        );
        assert!(
            matches!(v, RcptVerdict::Accept(_)),
            "an authenticated user relays"
        );
    }

    #[test]
    fn a_removed_mailbox_takes_no_new_mail() {
        let account = postroom_store::directory::AccountRow {
            id: postroom_store::AccountId(1),
            domain_id: postroom_store::DomainId(1),
            local: "kent".into(),
            display: "kent".into(),
            password_hash: None,
            quota: None,
            enabled: false,
            domain_admin: false,
            forward_to: vec![],
            forward_keep: true,
            sent_copy: false,
            last_login: None,
            delete_after: None,
        };
        let found = |account: postroom_store::directory::AccountRow| {
            Lookup::Found(postroom_directory::Resolution {
                routes: vec![postroom_directory::Route::Local {
                    account_id: account.id,
                    address: "kent@abc.example".into(),
                    enabled: account.enabled,
                }],
                direct_account: Some(account),
                gateway: false,
            })
        };
        // Disabled: accepted by default (it keeps its mail and receives).
        let v = policy(&[]).decide(
            "192.0.2.7".parse().unwrap(),
            "kent@abc.example".into(),
            found(account.clone()),
            None,
            false,
        );
        assert!(matches!(v, RcptVerdict::Accept(_)));
        let removed = postroom_store::directory::AccountRow {
            delete_after: Some(1),
            ..account
        };
        let v = policy(&[]).decide(
            "192.0.2.7".parse().unwrap(),
            "kent@abc.example".into(),
            found(removed),
            None,
            false,
        );
        match v {
            RcptVerdict::Reject(r) => assert_eq!(
                r.summary(),
                "550 5.1.1 <kent@abc.example>: Recipient address rejected: mailbox removed"
            ),
            _ => panic!("a removed mailbox accepted mail"),
        }
    }

    #[test]
    fn unresolvable_expansions_are_refused_at_rcpt() {
        let v = policy(&[]).decide(
            "192.0.2.7".parse().unwrap(),
            "postmaster@abc.example".into(),
            Lookup::Unresolvable("the domain has no admin and server.postmaster is not set".into()),
            None,
            false,
        );
        match v {
            RcptVerdict::Reject(r) => assert_eq!(
                r.summary(),
                "550 5.1.1 <postmaster@abc.example>: Recipient address rejected: the domain has no admin \
                 and server.postmaster is not set"
            ),
            _ => panic!("accepted an unresolvable recipient"),
        }
    }
}
