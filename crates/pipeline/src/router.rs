//! The router: accepted recipients and filter verdicts in, the rows of one
//! durable commit out. Pure.

use std::collections::HashSet;

use postroom_directory::Route;
use postroom_store::{FolderTarget, HeldLocal, Hold, HoldReason, LocalDelivery, OutboundItem, SpecialUse};

use crate::filter::Verdict;
use crate::headers::{delivery_prefix, received_line, ReceivedInfo, TraceHeaders};
use crate::policy::AcceptedRcpt;

#[derive(Debug, Default)]
pub struct Routed {
    pub local: Vec<LocalDelivery>,
    pub outbound: Vec<OutboundItem>,
    /// Mailboxes skipped because the message was already delivered to them
    /// (a `Delivered-To:` naming them: a forwarding loop).
    pub looped: Vec<String>,
    /// Which mailbox each local delivery reached and for which recipient,
    /// for the log: a list or catch-all names every mailbox it expanded to.
    pub reached: Vec<Reached>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reached {
    /// The recipient as given in RCPT TO.
    pub rcpt: String,
    /// The mailbox's address.
    pub mailbox: String,
    /// "INBOX", or "Junk" for filtered mail (its role; INBOX when the
    /// user has no such folder).
    pub folder: &'static str,
}

/// `sender` is the reverse-path ('' for `<>`); `forward_sender` the one
/// forwarded copies carry (SRS-rewritten), when it differs. `headers` are
/// the filter's lines for each recipient's copies (`X-Spam-*`,
/// `Authentication-Results`), after their `Received:`.
///
/// Spam never leaves by a forward (the seed's forwarding page: forwarded
/// spam gets this server listed): a `Junk`, `Quarantine` or `Discard`
/// verdict sends nothing to a forwarding target; quarantined copies are
/// held. A gateway domain's or a trusted network's relay is not a
/// forward: its final destination is the customer's own server, which
/// files tagged mail itself, so junk is relayed with its `X-Spam-*` lines.
pub fn route(
    recipients: &[AcceptedRcpt],
    verdicts: &[Verdict],
    headers: &[Vec<u8>],
    trace: &TraceHeaders,
    info: &ReceivedInfo<'_>,
    sender: &str,
    forward_sender: Option<&str>,
) -> Routed {
    let mut out = Routed::default();
    let mut accounts = HashSet::new();
    let mut remotes = HashSet::new();
    for (i, rcpt) in recipients.iter().enumerate() {
        let verdict = verdicts.get(i).cloned().unwrap_or(Verdict::Deliver);
        let extra: &[u8] = headers.get(i).map_or(&[], Vec::as_slice);
        let with_extra = |mut prefix: Vec<u8>| {
            prefix.extend_from_slice(extra);
            prefix
        };
        // RFC 6154: filtered mail goes to the folder whose special use is
        // \Junk, whatever the user named it (INBOX when there is none).
        let folder = match &verdict {
            Verdict::Reject(_) | Verdict::Discard => continue,
            Verdict::Junk => FolderTarget::Role(SpecialUse::Junk),
            _ => FolderTarget::Inbox,
        };
        for r in &rcpt.routes {
            match r {
                Route::Local {
                    account_id, address, ..
                } => {
                    if trace.delivered_to.iter().any(|d| d == address) {
                        out.looped.push(address.clone());
                        continue;
                    }
                    if let Verdict::Quarantine(reason) = &verdict {
                        // Held as the local copy it is: `queue release`
                        // puts it into this mailbox, never out by MX
                        // (where its Delivered-To would read as a loop).
                        out.outbound.push(OutboundItem {
                            sender: sender.to_string(),
                            recipient: address.clone(),
                            prefix: with_extra(delivery_prefix(info, sender, &rcpt.rcpt, address)),
                            held: Some(Hold {
                                reason: HoldReason::Quarantine,
                                detail: format!("quarantine: {reason}"),
                                local: Some(HeldLocal {
                                    account_id: *account_id,
                                    folder: FolderTarget::Inbox,
                                }),
                            }),
                        });
                        continue;
                    }
                    if accounts.insert(*account_id) {
                        out.reached.push(Reached {
                            rcpt: rcpt.rcpt.clone(),
                            mailbox: address.clone(),
                            folder: match folder {
                                FolderTarget::Role(SpecialUse::Junk) => "Junk",
                                _ => "INBOX",
                            },
                        });
                        out.local.push(LocalDelivery {
                            account_id: *account_id,
                            folder: folder.clone(),
                            prefix: with_extra(delivery_prefix(info, sender, &rcpt.rcpt, address)),
                            flags: 0,
                            keywords: String::new(),
                            internal_date: None,
                            sent_copy_of: None,
                        });
                    }
                }
                Route::Remote { address } => {
                    // Spam is never forwarded; quarantined mail is held.
                    if matches!(verdict, Verdict::Junk) && rcpt.forwarded {
                        continue;
                    }
                    if remotes.insert(address.to_lowercase()) {
                        let sender = match (rcpt.forwarded, forward_sender) {
                            (true, Some(rewritten)) => rewritten,
                            _ => sender,
                        };
                        out.outbound.push(OutboundItem {
                            sender: sender.to_string(),
                            recipient: address.clone(),
                            prefix: with_extra(received_line(info, &rcpt.rcpt)),
                            held: match &verdict {
                                Verdict::Quarantine(reason) => Some(Hold::remote(
                                    HoldReason::Quarantine,
                                    format!("quarantine: {reason}"),
                                )),
                                _ => None,
                            },
                        });
                    }
                }
                Route::Held { address, hold } => out.outbound.push(OutboundItem {
                    sender: sender.to_string(),
                    recipient: address.clone(),
                    prefix: with_extra(received_line(info, &rcpt.rcpt)),
                    held: Some(hold.clone()),
                }),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ReceivedInfo<'static> {
        ReceivedInfo {
            helo: "c.example",
            peer: Some("192.0.2.1".parse().unwrap()),
            hostname: "mx.example",
            protocol: "ESMTP",
            queue_id: "Q",
            date: "d",
        }
    }

    fn local(id: i64, a: &str) -> Route {
        Route::Local {
            account_id: postroom_store::AccountId(id),
            address: a.into(),
            enabled: true,
        }
    }

    #[test]
    fn one_copy_per_mailbox_and_loops_skipped() {
        let rcpts = vec![
            AcceptedRcpt {
                forwarded: false,
                rcpt: "a@x.example".into(),
                routes: vec![local(1, "a@x.example")],
            },
            AcceptedRcpt {
                forwarded: false,
                rcpt: "list@x.example".into(),
                routes: vec![
                    local(1, "a@x.example"),
                    local(2, "b@x.example"),
                    Route::Remote {
                        address: "o@out.example".into(),
                    },
                ],
            },
        ];
        let trace = TraceHeaders {
            received: 1,
            delivered_to: vec!["b@x.example".into()],
        };
        let r = route(
            &rcpts,
            &[Verdict::Deliver, Verdict::Deliver],
            &[],
            &trace,
            &info(),
            "s@y.example",
            None,
        );
        assert_eq!(r.local.len(), 1);
        assert_eq!(r.looped, ["b@x.example"]);
        assert_eq!(r.outbound.len(), 1);
        assert!(r.outbound[0].held.is_none());
    }

    #[test]
    fn verdicts_per_recipient() {
        let rcpts = vec![
            AcceptedRcpt {
                forwarded: false,
                rcpt: "a@x.example".into(),
                routes: vec![local(1, "a@x.example")],
            },
            AcceptedRcpt {
                forwarded: false,
                rcpt: "b@x.example".into(),
                routes: vec![local(2, "b@x.example")],
            },
            AcceptedRcpt {
                forwarded: false,
                rcpt: "c@x.example".into(),
                routes: vec![local(3, "c@x.example")],
            },
        ];
        let v = [
            Verdict::Junk,
            Verdict::Reject("spam".into()),
            Verdict::Quarantine("virus".into()),
        ];
        let r = route(&rcpts, &v, &[], &TraceHeaders::default(), &info(), "", None);
        assert_eq!(r.local.len(), 1);
        assert_eq!(r.local[0].folder, FolderTarget::Role(SpecialUse::Junk));
        assert_eq!(r.outbound.len(), 1);
        let held = r.outbound[0].held.as_ref().unwrap();
        assert_eq!(held.detail, "quarantine: virus");
        assert_eq!(held.reason, HoldReason::Quarantine);
        // A quarantined local copy is held for its mailbox, so its
        // release goes there and not out by MX.
        assert_eq!(
            held.local,
            Some(HeldLocal {
                account_id: postroom_store::AccountId(3),
                folder: FolderTarget::Inbox
            })
        );
    }

    #[test]
    fn spam_is_never_forwarded_but_relayed_tagged_and_discard_keeps_nothing() {
        let remote = |forwarded| AcceptedRcpt {
            forwarded,
            rcpt: "a@x.example".into(),
            routes: vec![Route::Remote {
                address: "o@out.example".into(),
            }],
        };
        let tag = vec![b"X-Spam-Flag: YES\r\n".to_vec()];
        let t = TraceHeaders::default();
        // A forward: junk, discard and reject send nothing; quarantine holds.
        for v in [Verdict::Junk, Verdict::Discard, Verdict::Reject("x".into())] {
            let r = route(
                &[remote(true)],
                std::slice::from_ref(&v),
                &tag,
                &t,
                &info(),
                "s@y",
                None,
            );
            assert!(r.outbound.is_empty() && r.local.is_empty(), "{v:?}");
        }
        let r = route(
            &[remote(true)],
            &[Verdict::Quarantine("q".into())],
            &tag,
            &t,
            &info(),
            "s@y",
            None,
        );
        assert_eq!(
            r.outbound[0].held.as_ref().unwrap().reason,
            HoldReason::Quarantine
        );
        // A gateway relay: junk goes to the customer's server, tagged.
        let r = route(&[remote(false)], &[Verdict::Junk], &tag, &t, &info(), "s@y", None);
        assert!(r.outbound[0].held.is_none());
        assert!(r.outbound[0].prefix.ends_with(b"X-Spam-Flag: YES\r\n"));
        // Discard: nothing for a mailbox either.
        let mailbox = AcceptedRcpt {
            forwarded: false,
            rcpt: "a@x.example".into(),
            routes: vec![local(1, "a@x.example")],
        };
        let r = route(
            std::slice::from_ref(&mailbox),
            &[Verdict::Discard],
            &tag,
            &t,
            &info(),
            "",
            None,
        );
        assert!(r.local.is_empty() && r.outbound.is_empty() && r.reached.is_empty());
        // Each copy carries its recipient's lines after its Received:.
        let r = route(&[mailbox], &[Verdict::Junk], &tag, &t, &info(), "", None);
        let p = String::from_utf8(r.local[0].prefix.clone()).unwrap();
        assert!(
            p.starts_with("Return-Path:") && p.ends_with("; d\r\nX-Spam-Flag: YES\r\n"),
            "{p}"
        );
    }
}
