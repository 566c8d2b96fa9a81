//! The MX listener's handler: policy at RCPT, then filter, router and one
//! durable commit at the end of data.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use postroom_core::{Address, QueueId};
use postroom_directory::{Directory, Lookup};
use postroom_smtp::service::{PeerContext, SmtpHandler};
use postroom_smtp::{DeliveryOutcome, Envelope, RcptTarget, RcptVerdict, Reply};
use postroom_store::{Delivery, Store};

use crate::filter::{Filter, FilterInput, Verdict};
use crate::headers::{rfc5322_date, trace_headers, ReceivedInfo};
use crate::policy::{AcceptedRcpt, QuotaState, RelayPolicy};
use crate::router::route;

pub struct MxPipeline {
    pub hostname: String,
    pub max_received_headers: usize,
    pub policy: RelayPolicy,
    pub directory: Directory,
    pub store: Store,
    pub filter: Arc<dyn Filter>,
}

fn temp_failure(what: &str) -> Reply {
    Reply::new(451, "4.3.0", format!("Temporary {what} failure, try again later"))
}

impl MxPipeline {
    fn lookup(&self, peer: &PeerContext, target: RcptTarget) -> RcptVerdict<AcceptedRcpt> {
        let result = match &target {
            RcptTarget::Postmaster => self.directory.resolve_postmaster().map(|r| {
                RcptVerdict::Accept(AcceptedRcpt {
                    rcpt: "Postmaster".into(),
                    routes: r.routes,
                })
            }),
            RcptTarget::Mailbox(addr) => self.directory.resolve(addr).and_then(|l| {
                let quota = match &l {
                    Lookup::Found(r) => match &r.direct_account {
                        Some(a) => Some((
                            QuotaState {
                                used: self.store.db.usage(a.id)?,
                                limit: a.quota,
                            },
                            peer.declared_size,
                        )),
                        None => None,
                    },
                    _ => None,
                };
                Ok(self.policy.decide(peer.ip, addr.to_string(), l, quota))
            }),
        };
        result.unwrap_or_else(|e| {
            tracing::error!(error = %e, "recipient lookup failed");
            RcptVerdict::Reject(temp_failure("lookup"))
        })
    }

    async fn accept(&self, peer: &PeerContext, env: Envelope<AcceptedRcpt>) -> Result<String, Reply> {
        let trace = trace_headers(&env.body);
        if trace.received > self.max_received_headers {
            return Err(Reply::new(
                554,
                "5.4.6",
                "Too many Received: headers: mail forwarding loop",
            ));
        }
        let sender = env.mail_from.as_ref().map(Address::to_string).unwrap_or_default();
        let rcpts: Vec<AcceptedRcpt> = env.recipients.into_iter().map(|(_, r)| r).collect();
        let rcpt_names: Vec<String> = rcpts.iter().map(|r| r.rcpt.clone()).collect();
        let mut body = env.body;
        let verdicts = self
            .filter
            .check(FilterInput {
                peer: peer.ip,
                helo: &env.helo,
                mail_from: env.mail_from.as_ref().map(|_| sender.as_str()),
                recipients: &rcpt_names,
                body: &mut body,
            })
            .await;
        if !verdicts.is_empty() && verdicts.iter().all(|v| matches!(v, Verdict::Reject(_))) {
            let why = match &verdicts[0] {
                Verdict::Reject(why) => why.clone(),
                _ => String::new(),
            };
            return Err(Reply::new(550, "5.7.1", format!("Message refused: {why}")));
        }
        let now = SystemTime::now();
        let micros = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let queue_id = QueueId::generate(micros);
        let date = rfc5322_date(now);
        // RFC 3848 and RFC 6531 3.7.3 protocol names.
        let protocol = match (env.smtputf8, env.esmtp, peer.tls) {
            (true, _, true) => "UTF8SMTPS",
            (true, _, false) => "UTF8SMTP",
            (false, true, true) => "ESMTPS",
            (false, true, false) => "ESMTP",
            (false, false, _) => "SMTP",
        };
        let info = ReceivedInfo {
            helo: &env.helo,
            peer: peer.ip,
            hostname: &self.hostname,
            protocol,
            queue_id: queue_id.as_str(),
            date: &date,
        };
        let routed = route(&rcpts, &verdicts, &trace, &info, &sender);
        if routed.local.is_empty() && routed.outbound.is_empty() {
            return Err(Reply::new(
                554,
                "5.4.6",
                format!("Mail loop: already delivered to {}", routed.looped.join(", ")),
            ));
        }
        for looped in &routed.looped {
            tracing::warn!(queue_id = %queue_id, mailbox = %looped, "skipped: Delivered-To loop");
        }
        let size = body.len();
        let blobs = Arc::clone(&self.store.blobs);
        let blob_id = queue_id.to_string();
        let put = tokio::task::spawn_blocking(move || blobs.put(&blob_id, &body)).await;
        match put {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(queue_id = %queue_id, error = %e, "writing the message failed");
                return Err(temp_failure("storage"));
            }
            Err(e) => {
                tracing::error!(queue_id = %queue_id, error = %e, "writing the message failed");
                return Err(temp_failure("storage"));
            }
        }
        let (local, queued) = (routed.local.len(), routed.outbound.len());
        let delivery = Delivery {
            queue_id: queue_id.to_string(),
            blob_id: queue_id.to_string(),
            blob_size: size as u64,
            received_at: micros as i64 / 1_000_000,
            local: routed.local,
            outbound: routed.outbound,
        };
        if let Err(e) = self.store.db.commit_delivery(delivery).await {
            tracing::error!(queue_id = %queue_id, error = %e, "committing the delivery failed");
            return Err(temp_failure("storage"));
        }
        tracing::info!(
            target: "smtp",
            queue_id = %queue_id,
            client = %peer.ip,
            helo = %env.helo,
            from = %sender,
            to = %rcpt_names.join(","),
            size,
            tls = peer.tls,
            local,
            queued,
            verdict = "accepted",
            "transaction"
        );
        Ok(queue_id.to_string())
    }
}

impl SmtpHandler for MxPipeline {
    type Recipient = AcceptedRcpt;

    async fn check_recipient(&self, peer: &PeerContext, target: RcptTarget) -> RcptVerdict<AcceptedRcpt> {
        self.lookup(peer, target)
    }

    async fn deliver(&self, peer: &PeerContext, envelope: Envelope<AcceptedRcpt>) -> DeliveryOutcome {
        let sender = envelope
            .mail_from
            .as_ref()
            .map(Address::to_string)
            .unwrap_or_default();
        let rcpts: Vec<String> = envelope.recipients.iter().map(|(_, r)| r.rcpt.clone()).collect();
        let size = envelope.body.len();
        match self.accept(peer, envelope).await {
            Ok(queue_id) => DeliveryOutcome::Accepted { queue_id },
            Err(reply) => {
                tracing::info!(
                    target: "smtp",
                    client = %peer.ip,
                    helo = peer.helo.as_deref().unwrap_or(""),
                    from = %sender,
                    to = %rcpts.join(","),
                    size,
                    verdict = "rejected",
                    reply = %reply.summary(),
                    "transaction"
                );
                DeliveryOutcome::Rejected(reply)
            }
        }
    }
}
