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
}

#[derive(Clone, Debug)]
pub struct RelayPolicy {
    /// Networks that may relay without authentication (empty by default).
    pub trusted_networks: IpNetList,
    /// 554 as the seed's Postfix, or 550 as RFC 5321 lists for RCPT.
    pub relay_denied_code: u16,
    pub reject_disabled_accounts: bool,
}

impl RelayPolicy {
    pub fn decide(&self, peer: IpAddr, rcpt: String, lookup: Lookup) -> RcptVerdict<AcceptedRcpt> {
        match lookup {
            Lookup::NotHosted => {
                if self.trusted_networks.contains(peer) {
                    RcptVerdict::Accept(AcceptedRcpt {
                        routes: vec![Route::Remote {
                            address: rcpt.clone(),
                        }],
                        rcpt,
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
            Lookup::Loop(why) => RcptVerdict::Reject(Reply::new(554, "5.4.6", format!("<{rcpt}>: {why}"))),
            Lookup::Found(Resolution {
                routes,
                direct_account,
            }) => {
                let disabled = direct_account.as_ref().is_some_and(|a| !a.enabled);
                if disabled && self.reject_disabled_accounts {
                    return RcptVerdict::Reject(Reply::new(
                        550,
                        "5.2.1",
                        format!("<{rcpt}>: Mailbox disabled"),
                    ));
                }
                RcptVerdict::Accept(AcceptedRcpt { rcpt, routes })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(trusted: &[&str]) -> RelayPolicy {
        RelayPolicy {
            trusted_networks: IpNetList::parse(trusted).unwrap(),
            relay_denied_code: 554,
            reject_disabled_accounts: false,
        }
    }

    #[test]
    fn never_an_open_relay() {
        let v = policy(&[]).decide(
            "127.0.0.1".parse().unwrap(),
            "x@elsewhere.example".into(),
            Lookup::NotHosted,
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
        );
        assert!(matches!(v, RcptVerdict::Accept(_)));
    }
}
