//! The MX listener's handler: policy at RCPT, then filter, router and one
//! durable commit at the end of data.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use postroom_core::Secret;
use postroom_core::{Address, QueueId};
use postroom_directory::auth::{Authenticator, LoginError};
use postroom_directory::{Directory, Lookup, Route};
use postroom_smtp::service::{BodySpool, PeerContext, SmtpHandler};
use postroom_smtp::{AuthFailure, DeliveryOutcome, Envelope, RcptTarget, RcptVerdict, Reply};
use postroom_store::{
    AccountId, Delivery, FolderTarget, Hold, HoldReason, LocalDelivery, SpecialUse, Store, TempFile,
};

use crate::filter::{Filter, FilterInput, FilterRecipient, Verdict};
use crate::headers::{trace_headers, ReceivedInfo};
use crate::limits::{LimitVerdict, SendLimits};
use crate::policy::{AcceptedRcpt, QuotaState, RelayPolicy};
use crate::router::route;

pub struct MxPipeline {
    /// DNS for checks on senders (null MX); `None`: no such checks.
    pub sender_dns: Option<Arc<postroom_queue::dns::MxResolver>>,
    /// Hourly caps on what authenticated users send.
    pub limits: Option<Arc<SendLimits>>,
    /// Checks SMTP AUTH logins (the same accounts as IMAP and POP3).
    pub auth: Option<Arc<Authenticator>>,
    /// Write the client's IP into the Received: header of authenticated
    /// submissions (off by default: it tells the world where users are).
    pub expose_client_ip: bool,
    pub hostname: String,
    pub max_received_headers: usize,
    pub policy: RelayPolicy,
    pub directory: Directory,
    pub store: Store,
    pub filter: Arc<dyn Filter>,
    /// How long the filter may take once the message is in (see
    /// [`filter_deadline`]).
    pub filter_time: std::time::Duration,
    /// Where each filtered message's report goes (`postroom explain`);
    /// `None`: not kept.
    pub results: Option<crate::filter_store::ResultWriter>,
    /// The cap on message bytes held whole in memory at once (see
    /// [`MemoryBudget`]).
    pub memory: Arc<MemoryBudget>,
    /// The spam report address and the classifier it trains
    /// (`crate::spam_report`); `None`: no such address.
    pub spam_reports: Option<Arc<dyn crate::spam_report::SpamReports>>,
}

/// A message body as it arrives: a spool file in the blob store
/// ([`postroom_store::BlobStore::spool`]), which becomes the blob itself.
pub struct MessageSpool(Box<dyn TempFile>);

impl BodySpool for MessageSpool {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes)
    }
}

/// The global cap on message bytes that are held whole in memory: bodies
/// are spooled to disk as they arrive, but DKIM signing and 8-bit to
/// 7-bit conversion of submitted mail, and a filter that reads the body,
/// need all of it. Each such message takes its size from this budget
/// first and waits while the budget is spent, so 40 concurrent 45 MB
/// submissions cannot take 1.8 GB (issue #8).
pub struct MemoryBudget {
    bytes: tokio::sync::Semaphore,
    cap: u32,
}

impl MemoryBudget {
    /// A budget of `cap` bytes (at most 4 GiB - 1: a semaphore counts in
    /// u32 here).
    pub fn new(cap: u64) -> Arc<Self> {
        let cap = u32::try_from(cap).unwrap_or(u32::MAX).max(1);
        Arc::new(MemoryBudget {
            bytes: tokio::sync::Semaphore::new(cap as usize),
            cap,
        })
    }

    /// Waits until `size` bytes (or the whole budget, for a message larger
    /// than it) are free, and holds them until the permit is dropped.
    pub async fn take(&self, size: u64) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let n = u32::try_from(size).unwrap_or(u32::MAX).clamp(1, self.cap);
        self.bytes.acquire_many(n).await.ok()
    }
}

/// How much of a spooled message is read for its header section when the
/// rest is not needed: the loop checks count `Received:` lines (100 of
/// them are about 20 KB), and a header section larger than this is not
/// mail (Postfix's header_size_limit is 100 KiB).
const MAX_HEAD: usize = 256 * 1024;

/// The store's bit for `\Seen` (the IMAP crate's `format::SEEN`).
const SEEN: i64 = 1;

/// The keys could not be read: the message is refused for now rather
/// than sent unsigned (its domain's DMARC policy may reject it then).
fn signing_failed(e: postroom_store::StoreError) -> Reply {
    tracing::error!(error = %e, "reading the DKIM keys failed");
    temp_failure("signing")
}

fn temp_failure(what: &str) -> Reply {
    Reply::new(451, "4.3.0", format!("Temporary {what} failure, try again later"))
}

impl MxPipeline {
    async fn lookup(&self, peer: &PeerContext, target: RcptTarget) -> RcptVerdict<AcceptedRcpt> {
        let addr = match target {
            RcptTarget::Postmaster => {
                return match self.directory.resolve_postmaster().await {
                    Ok(r) => RcptVerdict::Accept(AcceptedRcpt {
                        rcpt: "Postmaster".into(),
                        routes: r.routes,
                        forwarded: true,
                    }),
                    Err(e) => {
                        tracing::error!(error = %e, "recipient lookup failed");
                        RcptVerdict::Reject(temp_failure("lookup"))
                    }
                };
            }
            RcptTarget::Mailbox(addr) if self.is_srs_bounce(&addr) => return self.srs_bounce(&addr).await,
            // A logged-in user's spam report: no mailbox, nothing
            // routed; `accept` trains on it (crate::spam_report).
            RcptTarget::Mailbox(addr)
                if peer.auth.is_some()
                    && crate::spam_report::is_report_address(self.spam_reports.as_deref(), &addr) =>
            {
                return RcptVerdict::Accept(AcceptedRcpt {
                    rcpt: addr.to_string(),
                    routes: Vec::new(),
                    forwarded: false,
                });
            }
            RcptTarget::Mailbox(addr) => addr,
        };
        let lookup = match self.directory.resolve(&addr).await {
            Ok(Lookup::Callout { relay_to }) => match self.verify_gateway_recipient(&addr, &relay_to).await {
                Ok(l) => Ok(l),
                Err(reply) => return RcptVerdict::Reject(reply),
            },
            other => other,
        };
        let failed = |e: postroom_store::StoreError| {
            tracing::error!(error = %e, "recipient lookup failed");
            RcptVerdict::Reject(temp_failure("lookup"))
        };
        let l = match lookup {
            Ok(l) => l,
            Err(e) => return failed(e),
        };
        // Only a mailbox with a limit has its usage read: without one
        // nothing is refused for size (`QuotaState::refuses`), and the read
        // is a round trip on PostgreSQL, one of three per RCPT.
        let quota = match &l {
            Lookup::Found(r) => match r.direct_account.as_ref().filter(|a| a.quota.is_some()) {
                Some(a) => match self.store.meta().usage(a.id).await {
                    Ok(used) => Some((QuotaState { used, limit: a.quota }, peer.declared_size)),
                    Err(e) => return failed(e),
                },
                None => None,
            },
            _ => None,
        };
        self.policy
            .decide(peer.ip, addr.to_string(), l, quota, peer.auth.is_some())
    }

    async fn accept(
        &self,
        peer: &PeerContext,
        env: Envelope<AcceptedRcpt>,
        spool: MessageSpool,
        filtered: bool,
    ) -> Result<String, Reply> {
        let submitted = env.auth.is_some() || peer.auth.is_some();
        // Submitted mail is changed before it is stored (Message-ID, Date,
        // DKIM, 7-bit), and a filter may read and rewrite it: those read
        // the whole message, within the memory budget. Other mail is only
        // looked at in its header section, and the spool file becomes the
        // blob as it is.
        let filtered = filtered && self.filter.reads_body();
        let whole = submitted || filtered;
        let _budget = if whole {
            // The message and one changed copy of it (with Message-ID and
            // Date prepended, converted to 7 bit, or signed) are held at
            // once, never more.
            Some(self.memory.take(env.size.saturating_mul(2)).await)
        } else {
            None
        };
        let read = tokio::task::spawn_blocking(move || {
            let read = if whole {
                spool.0.read_all()
            } else {
                spool
                    .0
                    .read_head(MAX_HEAD, &|b: &[u8]| postroom_message::header_len(b).is_some())
            };
            read.map(|body| (spool, body))
        })
        .await;
        let (spool, mut body) = match read {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading the spooled message failed");
                return Err(temp_failure("storage"));
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the spooled message failed");
                return Err(temp_failure("storage"));
            }
        };
        // `body` is the whole message when `whole`, else its header section.
        let trace = trace_headers(&body);
        if trace.received > self.max_received_headers {
            return Err(Reply::new(
                554,
                "5.4.6",
                "Too many Received: headers: mail forwarding loop",
            ));
        }
        let sender = env.mail_from.as_ref().map(Address::to_string).unwrap_or_default();
        if let Some(user) = &env.auth {
            self.check_header_senders(user, &body).await?;
            self.check_limits(user, env.recipients.len() as u32).await?;
        }
        let hold_reason = match env.auth.as_deref() {
            Some(user) => self.held_sender(user).await,
            None => None,
        };
        let rcpts: Vec<AcceptedRcpt> = env.recipients.into_iter().map(|(_, r)| r).collect();
        if let Some(reports) = &self.spam_reports {
            if let Some(answer) =
                crate::spam_report::take_report(reports.as_ref(), env.auth.as_deref(), &rcpts, &body).await
            {
                return answer;
            }
        }
        let rcpt_names: Vec<String> = rcpts.iter().map(|r| r.rcpt.clone()).collect();
        let filter_rcpts: Vec<FilterRecipient> = rcpts.iter().map(filter_recipient).collect();
        let started = Instant::now();
        let outcome = if filtered || !self.filter.reads_body() {
            self.filter
                .check(FilterInput {
                    peer: peer.ip,
                    helo: &env.helo,
                    tls: peer.tls,
                    auth_user: env.auth.as_deref(),
                    mail_from: env.mail_from.as_ref().map(|_| sender.as_str()),
                    recipients: &filter_rcpts,
                    deadline: started + self.filter_time,
                    body: &mut body,
                })
                .await
        } else {
            // Mail this server made itself (a bounce, the held-mail
            // report) is not scored: a report listing spam would be spam.
            crate::filter::FilterOutcome {
                verdicts: vec![Verdict::Deliver; rcpts.len()],
                headers: vec![Vec::new(); rcpts.len()],
                ..Default::default()
            }
        };
        let filter_note = outcome.report.as_ref().map(|r| {
            (
                r.scores.iter().copied().fold(f64::NAN, f64::max),
                crate::content::top_symbols(&r.report),
            )
        });
        let actions = crate::content::actions(&outcome.verdicts);
        // The queue id is taken before the verdict, so a refused or
        // tempfailed message has one too: its report is kept under it
        // and the refusal names it (`postroom explain ID`).
        let now = SystemTime::now();
        let micros = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let queue_id = QueueId::generate(micros);
        let message_id = match (&self.results, &outcome.report) {
            (Some(_), Some(_)) => postroom_message::header::header_value(&body, "message-id")
                .map(|m| m.trim().trim_start_matches('<').trim_end_matches('>').to_string())
                .unwrap_or_default(),
            _ => String::new(),
        };
        let keep_report = |verdicts: &[Verdict], reply: &str| {
            if let (Some(writer), Some(r)) = (&self.results, &outcome.report) {
                let at = (micros / 1_000_000) as i64;
                let ctx = crate::content::ReportContext {
                    queue_id: queue_id.as_str(),
                    at,
                    client: peer.ip,
                    helo: &env.helo,
                    sender: &sender,
                    message_id: &message_id,
                    recipients: &rcpt_names,
                    verdicts,
                    reply,
                };
                let report = crate::content::report_json(&ctx, r);
                writer.send(postroom_store::FilterResultRow {
                    queue_id: queue_id.to_string(),
                    message_id: message_id.clone(),
                    at,
                    report,
                });
            }
        };
        // A refusal at SMTP time: its report kept for `explain`, its log
        // line, its count.
        let refuse = |reply: Reply, verdicts: &[Verdict], action: &'static str| {
            keep_report(verdicts, &reply.summary());
            self.log_filtered(
                peer,
                &queue_id,
                &env.helo,
                &sender,
                &rcpt_names,
                env.size,
                &filter_note,
                &actions,
                action,
            );
            postroom_core::metrics::filter_action(action);
            reply
        };
        if let Some(why) = &outcome.tempfail {
            let reply = Reply::new(
                451,
                "4.7.1",
                format!("Message not accepted for now: {why}; try again later [{queue_id}]"),
            );
            return Err(refuse(reply, &outcome.verdicts, "tempfail"));
        }
        let verdicts = &outcome.verdicts;
        if !verdicts.is_empty() && verdicts.iter().all(|v| matches!(v, Verdict::Reject(_))) {
            let why = match &verdicts[0] {
                Verdict::Reject(why) => why.clone(),
                _ => String::new(),
            };
            let reply = Reply::new(550, "5.7.1", format!("Message refused: {why} [{queue_id}]"));
            return Err(refuse(reply, verdicts, "reject"));
        }
        if outcome.report.is_some() {
            for v in verdicts {
                postroom_core::metrics::filter_action(v.name());
            }
        }
        let rcpt_headers = &outcome.headers;
        let body_changed = outcome.changed;
        let date = postroom_message::date::format(now);
        // RFC 3848 and RFC 6531 3.7.3 protocol names.
        let protocol = match (env.smtputf8, env.esmtp, peer.tls, env.auth.is_some()) {
            (true, _, true, true) => "UTF8SMTPSA",
            (true, _, true, false) => "UTF8SMTPS",
            (true, _, false, true) => "UTF8SMTPA",
            (true, _, false, false) => "UTF8SMTP",
            (false, true, true, true) => "ESMTPSA",
            (false, true, true, false) => "ESMTPS",
            (false, true, false, true) => "ESMTPA",
            (false, true, false, false) => "ESMTP",
            (false, false, _, _) => "SMTP",
        };
        if submitted {
            // RFC 6409 8.3, 8.4: a submission server adds what is missing.
            let mut fixes = Vec::new();
            if !postroom_message::header::has(&body, "message-id") {
                fixes.extend_from_slice(format!("Message-ID: <{queue_id}@{}>\r\n", self.hostname).as_bytes());
            }
            if !postroom_message::header::has(&body, "date") {
                fixes.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
            }
            if !fixes.is_empty() {
                fixes.extend_from_slice(&body);
                body = fixes;
            }
            // Sign last, over the message as it leaves. 8-bit content is
            // made 7-bit (quoted-printable / base64) before it is signed,
            // as RFC 6376 5.3 advises: the queue must convert it for any
            // server without 8BITMIME (RFC 6152), and converting signed
            // content afterwards would break the signature. Converted here,
            // the queue finds nothing to change. Mail that is not signed
            // (no key for its From: domain) stays as it came.
            let mut signed = if postroom_queue::sevenbit::is_8bit(&body) {
                let converted = postroom_queue::sevenbit::to_7bit(&body);
                let signatures = crate::dkim::sign(&self.directory, &converted)
                    .await
                    .map_err(signing_failed)?;
                if !signatures.is_empty() {
                    body = converted;
                }
                signatures
            } else {
                crate::dkim::sign(&self.directory, &body)
                    .await
                    .map_err(signing_failed)?
            };
            if !signed.is_empty() {
                signed.extend_from_slice(&body);
                body = signed;
            }
        }
        let info = ReceivedInfo {
            helo: &env.helo,
            peer: if env.auth.is_some() && !self.expose_client_ip {
                None
            } else {
                Some(peer.ip)
            },
            hostname: &self.hostname,
            protocol,
            queue_id: queue_id.as_str(),
            date: &date,
        };
        let forward_sender = self.forward_sender(&sender, &rcpts).await;
        let routed = route(
            &rcpts,
            verdicts,
            rcpt_headers,
            &trace,
            &info,
            &sender,
            forward_sender.as_deref(),
        );
        let mut routed = routed;
        if let Some(user) = &env.auth {
            if let Some(copy) = self.sent_copy(user, &body, &rcpt_names).await {
                routed.local.push(copy);
                routed.reached.push(crate::router::Reached {
                    rcpt: user.clone(),
                    mailbox: user.clone(),
                    folder: "Sent",
                });
            }
        }
        if let Some(reason) = &hold_reason {
            for item in routed.outbound.iter_mut() {
                item.held
                    .get_or_insert_with(|| Hold::remote(HoldReason::SenderOverLimits, reason.clone()));
            }
        }
        if routed.local.is_empty() && routed.outbound.is_empty() && routed.looped.is_empty() {
            // Every recipient's verdict was to drop it (discard, or a
            // refusal beside a discard): accepted, and nothing is kept.
            keep_report(verdicts, "250 discarded");
            self.log_filtered(
                peer,
                &queue_id,
                &env.helo,
                &sender,
                &rcpt_names,
                env.size,
                &filter_note,
                &actions,
                "discarded",
            );
            drop(spool);
            postroom_core::metrics::smtp_transaction("accepted");
            return Ok(queue_id.to_string());
        }
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
        let size = if whole { body.len() as u64 } else { env.size };
        let blobs = Arc::clone(&self.store.blobs);
        let blob_id = queue_id.to_string();
        let rewritten = submitted || body_changed;
        let put = tokio::task::spawn_blocking(move || {
            if rewritten {
                // Changed in memory: written anew; the spool file goes.
                drop(spool);
                blobs.put(&blob_id, &body)
            } else {
                // Fsynced and linked into place: written once.
                blobs.put_spool(&blob_id, spool.0)
            }
        })
        .await;
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
        let routed_reached = std::mem::take(&mut routed.reached);
        let delivery = Delivery {
            queue_id: queue_id.to_string(),
            blob_id: queue_id.to_string(),
            blob_size: size,
            received_at: micros as i64 / 1_000_000,
            local: routed.local,
            outbound: routed.outbound,
            released: Vec::new(),
        };
        if let Err(e) = self.store.commit_delivery(delivery).await {
            tracing::error!(queue_id = %queue_id, error = %e, "committing the delivery failed");
            return Err(temp_failure("storage"));
        }
        keep_report(verdicts, &format!("250 queued as {queue_id}"));
        // One line per mailbox reached (issue #12: "what happened to this
        // message?" for a list or catch-all names every mailbox).
        for r in &routed_reached {
            tracing::info!(
                target: "delivery",
                queue_id = %queue_id,
                rcpt = %r.rcpt,
                mailbox = %r.mailbox,
                folder = r.folder,
                status = "delivered",
                "local delivery"
            );
            postroom_core::metrics::delivery("delivered");
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
            score = filter_note.as_ref().map(|n| n.0),
            action = filter_note.as_ref().map(|_| actions.as_str()),
            symbols = filter_note.as_ref().map(|n| n.1.as_str()),
            "transaction"
        );
        postroom_core::metrics::smtp_transaction("accepted");
        if let (Some(limits), Some(user)) = (&self.limits, &env.auth) {
            limits.record(
                user,
                user.rsplit_once('@').map_or("", |(_, d)| d),
                rcpt_names.len() as u32,
                Instant::now(),
            );
        }
        Ok(queue_id.to_string())
    }

    /// The transaction line of a message the filter refused, tempfailed
    /// or dropped whole.
    #[allow(clippy::too_many_arguments)]
    fn log_filtered(
        &self,
        peer: &PeerContext,
        queue_id: &QueueId,
        helo: &str,
        sender: &str,
        rcpts: &[String],
        size: u64,
        note: &Option<(f64, String)>,
        actions: &str,
        verdict: &'static str,
    ) {
        tracing::info!(
            target: "smtp",
            queue_id = %queue_id,
            client = %peer.ip,
            helo = %helo,
            from = %sender,
            to = %rcpts.join(","),
            size,
            tls = peer.tls,
            verdict,
            score = note.as_ref().map(|n| n.0),
            action = actions,
            symbols = note.as_ref().map(|n| n.1.as_str()),
            "transaction"
        );
    }

    /// 451 4.7.1 past a user's or a domain's hourly cap.
    async fn check_limits(&self, user: &str, recipients: u32) -> Result<(), Reply> {
        let Some(limits) = &self.limits else {
            return Ok(());
        };
        let domain = user.rsplit_once('@').map_or("", |(_, d)| d);
        match limits.check(user, domain, recipients, Instant::now()) {
            LimitVerdict::Allow => Ok(()),
            LimitVerdict::Refuse(why) => {
                tracing::warn!(target: "smtp", user, reason = %why, "sending limit reached");
                // Far past it: hold what the account queued, and what it sends.
                let _ = self.held_sender(user).await;
                Err(Reply::new(
                    451,
                    "4.7.1",
                    format!("Sending limit reached: {why}; try again later"),
                ))
            }
        }
    }

    /// Why this user's outbound mail is held, if it is (far past the caps:
    /// a stolen password is the usual cause). The admin is told once.
    async fn held_sender(&self, user: &str) -> Option<String> {
        let first = self.limits.as_ref()?.hold(user, Instant::now())?;
        let reason =
            format!("held: {user} went far past the sending limits (release with 'postroom queue release')");
        if first {
            // What it queued before is held too.
            if let Err(e) = self.store.meta().hold_sender(user, &reason).await {
                tracing::error!(error = %e, "could not hold queued mail");
            }
            tracing::error!(
                target: "smtp",
                user,
                "far past the sending limits: outbound mail of this user is held ('postroom queue list'); \
                 check the account (a stolen password?) and release or delete it"
            );
        }
        Some(reason)
    }
}

/// The filter's view of an accepted recipient: its domain, and the
/// mailbox it reaches (the first local one, for an alias of several).
fn filter_recipient(r: &AcceptedRcpt) -> FilterRecipient {
    let local = r.routes.iter().find_map(|route| match route {
        postroom_directory::Route::Local {
            account_id, address, ..
        } => Some((*account_id, address.clone())),
        _ => None,
    });
    let domain_of = |a: &str| {
        a.rsplit_once('@')
            .map(|(_, d)| d.to_lowercase())
            .unwrap_or_default()
    };
    FilterRecipient {
        address: r.rcpt.clone(),
        domain: match &local {
            Some((_, mailbox)) => domain_of(mailbox),
            None => domain_of(&r.rcpt),
        },
        mailbox: local.as_ref().map(|(_, m)| m.clone()),
        account: local.map(|(a, _)| a),
    }
}

/// How long the filter may take for one message. The client is waiting
/// for its reply after the final dot, and RFC 5321 4.5.3.2.6 lets it wait
/// 10 minutes; our own `smtp.data_timeout_secs` (900 s by default) is how
/// long we give a client for the content itself. A tenth of the data
/// timeout, at most 60 s and at least 5 s: 60 s by default, far inside
/// the client's 10 minutes with the commit still to come, yet 10 times
/// a slow DNS answer (5 s, `dns.timeout_secs`) or clamd on a 50 MB
/// message; a test server with a 30 s data timeout gets 5 s.
pub fn filter_deadline(data_timeout: std::time::Duration) -> std::time::Duration {
    (data_timeout / 10).clamp(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(60),
    )
}

impl MxPipeline {
    fn today() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
            / 86_400
    }

    /// The SRS secrets, current first (made on first use, kept in the store).
    async fn srs_secrets(&self) -> Vec<String> {
        let db = self.store.meta();
        let fresh: String = {
            use rand::RngCore;
            let mut b = [0u8; 24];
            rand::thread_rng().fill_bytes(&mut b);
            b.iter().map(|x| format!("{x:02x}")).collect()
        };
        let current = match db.setting_or_init("srs_secret", fresh).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "could not read the SRS secret");
                String::new()
            }
        };
        let mut v = vec![current];
        if let Ok(Some(old)) = db.setting("srs_secret_old").await {
            v.push(old);
        }
        v.retain(|s| !s.is_empty());
        v
    }

    /// A bounce addressed to one of our SRS addresses.
    fn is_srs_bounce(&self, addr: &Address) -> bool {
        let l = addr.local_canonical();
        (l.starts_with("srs0=") || l.starts_with("srs1="))
            && addr.domain().canonical() == self.hostname.to_lowercase()
    }

    /// Checks the hash and age of an SRS address and sends the bounce back
    /// to where the forwarded mail came from; a forged one is refused like
    /// any relay attempt.
    async fn srs_bounce(&self, addr: &Address) -> RcptVerdict<AcceptedRcpt> {
        match crate::srs::reverse(addr.local_display(), &self.srs_secrets().await, Self::today()) {
            Ok(original) => RcptVerdict::Accept(AcceptedRcpt {
                rcpt: addr.to_string(),
                routes: vec![postroom_directory::Route::Remote { address: original }],
                forwarded: false,
            }),
            Err(e) => {
                tracing::info!(target: "smtp", rcpt = %addr, error = ?e, "refused SRS address");
                RcptVerdict::Reject(Reply::new(
                    self.policy.relay_denied_code,
                    "5.7.1",
                    format!("<{addr}>: Relay access denied"),
                ))
            }
        }
    }

    /// The envelope sender of forwarded copies: SRS-rewritten unless the
    /// sender is ours (or null).
    async fn forward_sender(&self, sender: &str, rcpts: &[AcceptedRcpt]) -> Option<String> {
        let forwards = rcpts.iter().any(|r| {
            r.forwarded
                && r.routes
                    .iter()
                    .any(|x| matches!(x, postroom_directory::Route::Remote { .. }))
        });
        if !forwards || sender.is_empty() {
            return None;
        }
        let local = match Address::parse(sender, true) {
            Ok(a) => matches!(
                self.directory.hosted_domain(a.domain().canonical()).await,
                Ok(Some(_))
            ),
            Err(_) => false,
        };
        if local {
            return None;
        }
        let secret = self.srs_secrets().await.into_iter().next()?;
        Some(crate::srs::forward(
            sender,
            &secret,
            &self.hostname,
            Self::today(),
        ))
    }

    /// Whether the account may send as `addr`; a storage failure is a
    /// temporary refusal, never a "no".
    async fn may_send_as(&self, account: AccountId, addr: &Address) -> Result<bool, Reply> {
        self.directory.may_send_as(account, addr).await.map_err(|e| {
            tracing::error!(error = %e, "sender check failed");
            temp_failure("lookup")
        })
    }

    /// The account behind an authenticated identity (its canonical address).
    async fn account_of(&self, identity: &str) -> Option<AccountId> {
        let addr = Address::parse(identity, true).ok()?;
        let d = self
            .directory
            .hosted_domain(addr.domain().canonical())
            .await
            .ok()??;
        Some(
            self.store
                .meta()
                .account(d.id, addr.local_canonical())
                .await
                .ok()??
                .id,
        )
    }

    /// The copy for the sender's Sent folder, when the account asks for one
    /// (`postroom user sent-copy`), already \Seen. Recipients that neither
    /// To: nor Cc: names were Bcc recipients: the copy lists them in a
    /// `Bcc:` field of its own (RFC 5322 3.6.3), as a mail client's copy
    /// does, so the sender can see who got it.
    async fn sent_copy(&self, user: &str, body: &[u8], recipients: &[String]) -> Option<LocalDelivery> {
        let account = self.account_of(user).await?;
        if !self.store.meta().account_by_id(account).await.ok()??.sent_copy {
            return None;
        }
        // The addresses To: and Cc: name, as tokens: `bob@x` is not named by
        // `jimbob@x`.
        let visible: std::collections::HashSet<String> = ["to", "cc"]
            .iter()
            .filter_map(|h| postroom_message::header::header_value(body, h))
            .flat_map(|v| {
                v.split([',', ';', '<', '>', ' ', '\t', '"', '(', ')'])
                    .filter(|t| t.contains('@'))
                    .map(str::to_lowercase)
                    .collect::<Vec<_>>()
            })
            .collect();
        let bcc: Vec<&str> = recipients
            .iter()
            .filter(|r| !visible.contains(&r.to_lowercase()))
            .map(String::as_str)
            .collect();
        let prefix = if bcc.is_empty() {
            Vec::new()
        } else {
            format!("Bcc: {}\r\n", bcc.join(", ")).into_bytes()
        };
        Some(LocalDelivery {
            account_id: account,
            // Resolved in the commit: the folder whose special use is
            // \Sent, INBOX when the user has none (roles::FolderTarget).
            folder: FolderTarget::Role(SpecialUse::Sent),
            prefix,
            flags: SEEN,
            keywords: String::new(),
            internal_date: None,
            sent_copy_of: postroom_message::header::header_value(body, "message-id"),
        })
    }

    /// RFC 6409 8.1-style check: every address in From: (and Sender:) must
    /// be one the user may send as. The fields are found by the one header
    /// reader (`postroom_core::header`) and their addresses read by its
    /// address-list parser, both of which the IMAP ENVELOPE uses too, so the
    /// address checked here is the one a recipient's client is shown.
    async fn check_header_senders(&self, user: &str, body: &[u8]) -> Result<(), Reply> {
        let Some(account) = self.account_of(user).await else {
            return Err(Reply::new(
                550,
                "5.7.1",
                "Sender address not owned by the authenticated user",
            ));
        };
        let mut addresses = Vec::new();
        for name in ["From", "Sender"] {
            let found: Vec<_> = postroom_message::header::fields(body)
                .filter(|f| f.is(name))
                .collect();
            // RFC 5322 3.6: exactly one From: and at most one Sender:. With
            // two, this check and the recipient's client could each read a
            // different one (issue #8: `From: bob` then `From: alice`).
            // No From: at all is let through as before (RFC 6409 8 lets
            // the MSA leave it; nobody is named).
            if found.len() > 1 {
                return Err(Reply::new(
                    550,
                    "5.7.1",
                    format!("Message refused: more than one {name}: header field (RFC 5322 3.6)"),
                ));
            }
            for field in found {
                for m in postroom_message::header::mailboxes(&field.unfolded()) {
                    // Echoed in the reply: printable only, and short (the
                    // longest address is 254 octets, RFC 5321 4.5.3.1.3).
                    let shown: String = format!(
                        "{}@{}",
                        String::from_utf8_lossy(&m.local),
                        String::from_utf8_lossy(&m.domain)
                    )
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(254)
                    .collect();
                    addresses.push((m.addr_spec(), shown));
                }
            }
        }
        for (spec, shown) in addresses {
            let owned = match spec.and_then(|a| Address::parse(&a, true).ok()) {
                Some(parsed) => self.may_send_as(account, &parsed).await?,
                None => false,
            };
            if !owned {
                return Err(Reply::new(
                    550,
                    "5.7.1",
                    format!("From: <{shown}> is not an address of the authenticated user"),
                ));
            }
        }
        Ok(())
    }
}

impl MxPipeline {
    /// Puts a message Postroom generated (a bounce) through the same
    /// pipeline as received mail, from the null sender.
    ///
    /// A bounce to a hosted address that nothing delivers to (an alias of
    /// missing targets, postmaster@ with nobody behind it) is held for the
    /// administrator: RCPT refuses such an address to strangers, but a
    /// refused bounce would stay in the queue and be generated again at
    /// every pass.
    pub async fn inject(&self, recipient: &str, message: Vec<u8>) -> Result<String, String> {
        self.submit(None, &[recipient.to_string()], message, true).await
    }

    /// Mail from this machine (a bounce, `postroom sendmail`): the same
    /// pipeline as received mail, allowed to relay like an authenticated
    /// user. Fails whole if any recipient is refused.
    pub async fn submit_local(
        &self,
        sender: Option<Address>,
        recipients: &[String],
        message: Vec<u8>,
    ) -> Result<String, String> {
        self.submit(sender, recipients, message, false).await
    }

    async fn submit(
        &self,
        sender: Option<Address>,
        recipients: &[String],
        message: Vec<u8>,
        hold_unresolvable: bool,
    ) -> Result<String, String> {
        let ctx = PeerContext {
            ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            auth: Some("MAILER-DAEMON".into()),
            helo: Some(self.hostname.clone()),
            tls: false,
            declared_size: None,
        };
        let mut accepted = Vec::new();
        for r in recipients {
            let rcpt = Address::parse(r, true).map_err(|e| format!("<{r}>: {e}"))?;
            if hold_unresolvable {
                if let Ok(Lookup::Unresolvable(why)) = self.directory.resolve(&rcpt).await {
                    let held = AcceptedRcpt {
                        rcpt: rcpt.to_string(),
                        routes: vec![Route::Held {
                            address: rcpt.canonical(),
                            hold: Hold::remote(
                                HoldReason::UndeliverableBounce,
                                format!("a bounce to an address nothing delivers to: {why}"),
                            ),
                        }],
                        forwarded: false,
                    };
                    accepted.push((RcptTarget::Mailbox(rcpt), held));
                    continue;
                }
            }
            match self.lookup(&ctx, RcptTarget::Mailbox(rcpt.clone())).await {
                RcptVerdict::Accept(a) => accepted.push((RcptTarget::Mailbox(rcpt), a)),
                RcptVerdict::Reject(reply) => return Err(reply.summary()),
            }
        }
        if accepted.is_empty() {
            return Err("no recipients".into());
        }
        let smtputf8 =
            sender.as_ref().is_some_and(|s| !s.is_ascii()) || recipients.iter().any(|r| !r.is_ascii());
        let has_8bit = message.iter().any(|b| *b >= 0x80);
        let size = message.len() as u64;
        let blobs = Arc::clone(&self.store.blobs);
        let spool = tokio::task::spawn_blocking(move || {
            let mut spool = blobs.spool()?;
            spool.write_all(&message)?;
            Ok::<_, std::io::Error>(MessageSpool(spool))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("spooling the message: {e}"))?;
        let envelope = Envelope {
            helo: self.hostname.clone(),
            esmtp: true,
            tls: false,
            peer: ctx.ip,
            mail_from: sender,
            recipients: accepted,
            body_type: postroom_smtp::BodyType::EightBitMime,
            smtputf8,
            chunking: false,
            has_8bit,
            size,
            bare_line_ends: 0,
            auth: None,
        };
        self.accept(&ctx, envelope, spool, false)
            .await
            .map_err(|r| r.summary())
    }
}

impl SmtpHandler for MxPipeline {
    type Recipient = AcceptedRcpt;
    type Spool = MessageSpool;

    fn open_spool(&self) -> std::io::Result<MessageSpool> {
        self.store.blobs.spool().map(MessageSpool)
    }

    async fn authenticate(
        &self,
        peer: &PeerContext,
        user: String,
        password: Secret<String>,
    ) -> Result<String, AuthFailure> {
        let Some(auth) = &self.auth else {
            return Err(AuthFailure::Unavailable);
        };
        let login = auth.login(peer.ip, &user, &password).await;
        postroom_directory::auth::count_login("submission", &login);
        match login {
            Ok(a) => {
                tracing::info!(target: "smtp", client = %peer.ip, user = %a.address, "AUTH login");
                Ok(a.address)
            }
            Err(e) => {
                tracing::info!(target: "smtp", client = %peer.ip, user = %user, error = ?e, "AUTH failed");
                Err(match e {
                    LoginError::Failed => AuthFailure::Failed,
                    LoginError::Refused | LoginError::Unavailable => AuthFailure::Unavailable,
                })
            }
        }
    }

    async fn check_sender(&self, peer: &PeerContext, sender: Option<Address>) -> Result<(), Reply> {
        if let Some(user) = &peer.auth {
            self.check_limits(user, 0).await?;
        } else if let (Some(dns), Some(from)) = (&self.sender_dns, &sender) {
            // RFC 7505 4.2: a domain with a null MX sends no mail either.
            let hosted = matches!(
                self.directory.hosted_domain(from.domain().canonical()).await,
                Ok(Some(_))
            );
            if !hosted {
                if let Ok(true) = dns.is_null_mx(from.domain().canonical()).await {
                    return Err(Reply::new(
                        550,
                        "5.7.27",
                        format!("<{from}>: Sender address rejected: its domain accepts no mail (null MX)"),
                    ));
                }
            }
            return Ok(());
        }
        let (Some(user), Some(sender)) = (&peer.auth, sender) else {
            // <> is allowed after AUTH (read receipts, RFC 6409 6.1).
            return Ok(());
        };
        let owned = match self.account_of(user).await {
            Some(acct) => self.may_send_as(acct, &sender).await?,
            None => false,
        };
        if owned {
            Ok(())
        } else {
            Err(Reply::new(
                553,
                "5.7.1",
                format!("<{sender}>: Sender address not owned by user {user}"),
            ))
        }
    }

    async fn check_recipient(&self, peer: &PeerContext, target: RcptTarget) -> RcptVerdict<AcceptedRcpt> {
        self.lookup(peer, target).await
    }

    async fn deliver(
        &self,
        peer: &PeerContext,
        envelope: Envelope<AcceptedRcpt>,
        body: MessageSpool,
    ) -> DeliveryOutcome {
        let sender = envelope
            .mail_from
            .as_ref()
            .map(Address::to_string)
            .unwrap_or_default();
        let rcpts: Vec<String> = envelope.recipients.iter().map(|(_, r)| r.rcpt.clone()).collect();
        let size = envelope.size;
        match self.accept(peer, envelope, body, true).await {
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
                postroom_core::metrics::smtp_transaction("rejected");
                DeliveryOutcome::Rejected(reply)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryBudget;

    #[tokio::test]
    async fn the_memory_budget_makes_whole_messages_wait_their_turn() {
        let budget = MemoryBudget::new(100);
        let a = budget.take(60).await;
        assert!(a.is_some());
        // 60 + 60 > 100: the second waits until the first is done.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), budget.take(60)).await;
        assert!(waiting.is_err());
        drop(a);
        assert!(budget.take(60).await.is_some());
        // Larger than the whole budget: takes all of it, never waits forever.
        let all = budget.take(10_000).await;
        assert!(all.is_some());
        assert!(budget.bytes.try_acquire().is_err());
    }
}
