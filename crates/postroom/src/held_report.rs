//! The held-mail report (issue #12: mail was held silently). Once every
//! `queue.held_report_secs` (a day by default) the server sends each
//! hosted domain's admins a list of what was held for their domain since
//! the last report: when, sender, recipient, reason, queue id and the
//! command that releases it. Nothing is sent when nothing was held.
//!
//! The report goes through the pipeline like a bounce
//! (`MxPipeline::submit_local`, sender `<>`), so it reaches the admins'
//! mailboxes by the normal delivery commit. It is addressed to the admin
//! mailboxes themselves, never to postmaster@: for a domain without an
//! admin that address is exactly what gets held, and the report would be
//! held in turn, every day. Such a domain's report goes to
//! `server.postmaster` when it is set, and is otherwise only logged (each
//! item on a line of its own), so that it is never held.
//!
//! The window is kept in the store (`held_report_since`), so a restart
//! neither repeats a report nor skips one, and a report whose delivery
//! failed is sent again at the next run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use postroom_core::Address;
use postroom_pipeline::MxPipeline;
use postroom_store::queue::OutboundRow;
use postroom_store::Store;

/// Where the start of the next report's window is kept.
const SINCE_KEY: &str = "held_report_since";

/// Items listed in one report; more are counted, not listed (a flood of
/// held mail must not make a message of megabytes).
const MAX_ITEMS: usize = 500;
/// The reason's words are cut here: a line of a report stays far below
/// RFC 5322's 998 octets (2.1.1).
const MAX_REASON_CHARS: usize = 200;

/// One report: what was held for one hosted domain (or for none).
#[derive(Debug, Clone)]
pub struct Report {
    /// The hosted domain the items are for (its main name); `None`: no
    /// hosted domain (a bare `postmaster` recipient, an outside sender's
    /// mail to outside addresses).
    pub domain: Option<String>,
    /// The domain's admin mailboxes.
    pub admins: Vec<String>,
    pub items: Vec<OutboundRow>,
}

/// The domain part of a stored address, canonical.
fn domain_of(address: &str) -> Option<String> {
    Address::parse(address, true)
        .ok()
        .map(|a| a.domain().canonical().to_string())
}

/// Groups held rows by the hosted domain they concern: the recipient's
/// when it is hosted, else the sender's (a sender over the caps), else
/// none. `hosted` maps a domain name (alias domains included) to its
/// main name.
pub fn group(
    rows: &[OutboundRow],
    hosted: &BTreeMap<String, String>,
) -> BTreeMap<Option<String>, Vec<OutboundRow>> {
    let mut out: BTreeMap<Option<String>, Vec<OutboundRow>> = BTreeMap::new();
    for r in rows {
        if r.hold_reason.is_none() {
            continue;
        }
        let main = |a: &str| domain_of(a).and_then(|d| hosted.get(&d).cloned());
        let domain = main(&r.recipient).or_else(|| main(&r.sender));
        out.entry(domain).or_default().push(r.clone());
    }
    out
}

/// The reports for `[since, until)`, with each domain's admins.
async fn collect(store: &Store, since: i64, until: i64) -> Result<Vec<Report>, String> {
    let meta = store.meta();
    let rows = meta.held_between(since, until).await.map_err(|e| e.to_string())?;
    let mut hosted = BTreeMap::new();
    for r in &rows {
        for name in [domain_of(&r.recipient), domain_of(&r.sender)]
            .into_iter()
            .flatten()
        {
            if hosted.contains_key(&name) {
                continue;
            }
            let Some(d) = meta.domain(&name).await.map_err(|e| e.to_string())? else {
                continue;
            };
            let main = match d.alias_of {
                Some(id) => meta.domain_by_id(id).await.map_err(|e| e.to_string())?,
                None => Some(d),
            };
            if let Some(m) = main {
                hosted.insert(name, m.name);
            }
        }
    }
    let mut reports = Vec::new();
    for (domain, items) in group(&rows, &hosted) {
        let mut admins = Vec::new();
        if let Some(name) = &domain {
            if let Some(d) = meta.domain(name).await.map_err(|e| e.to_string())? {
                for a in meta.accounts(Some(d.id)).await.map_err(|e| e.to_string())? {
                    // A removed mailbox (waiting for its mail to be
                    // deleted) takes no new mail.
                    if a.domain_admin && a.delete_after.is_none() {
                        admins.push(format!("{}@{}", a.local, d.name));
                    }
                }
            }
        }
        reports.push(Report {
            domain,
            admins,
            items,
        });
    }
    Ok(reports)
}

fn date(secs: i64) -> String {
    postroom_message::date::format_unix(secs)
}

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The report as a message (RFC 5322, RFC 3834 `Auto-Submitted`).
/// `cli` is the start of the admin's command line (`postroom --config
/// FILE`), so the release command can be pasted as it is.
pub fn message(hostname: &str, cli: &str, report: &Report, to: &[String], since: i64, until: i64) -> Vec<u8> {
    let n = report.items.len();
    let what = if n == 1 {
        "1 delivery".to_string()
    } else {
        format!("{n} deliveries")
    };
    let scope = report.domain.as_deref().unwrap_or("no hosted domain");
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
    ));
    m.push_str(&format!("To: {}\r\n", to.join(", ")));
    m.push_str(&format!("Subject: Held mail for {scope}: {what}\r\n"));
    m.push_str(&format!("Date: {}\r\n", date(until)));
    m.push_str(&format!(
        "Message-ID: <held-report.{until}.{}@{hostname}>\r\n",
        report.domain.as_deref().unwrap_or("server")
    ));
    m.push_str("Auto-Submitted: auto-generated\r\n");
    m.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    m.push_str(&format!(
        "{what} for {scope} {} held between {} and {}.\r\n\
         Held mail waits for an administrator: it is not delivered, and not\r\n\
         bounced, until it is released or deleted.\r\n\r\n",
        if n == 1 { "was" } else { "were" },
        date(since),
        date(until)
    ));
    for r in report.items.iter().take(MAX_ITEMS) {
        let sender = if r.sender.is_empty() {
            "<>"
        } else {
            r.sender.as_str()
        };
        let why = r.hold_reason.map(|h| h.code()).unwrap_or("other");
        m.push_str(&format!("When:      {}\r\n", date(r.created)));
        m.push_str(&format!("Sender:    {sender}\r\n"));
        m.push_str(&format!("Recipient: {}\r\n", r.recipient));
        m.push_str(&format!(
            "Reason:    {why}: {}\r\n",
            cut(&r.reason, MAX_REASON_CHARS)
        ));
        m.push_str(&format!("Queue id:  {} (item {})\r\n", r.queue_id, r.id));
        m.push_str(&format!("Release:   {cli} queue release {}\r\n\r\n", r.id));
    }
    if n > MAX_ITEMS {
        m.push_str(&format!(
            "... and {} more: {cli} queue list --held\r\n\r\n",
            n - MAX_ITEMS
        ));
    }
    m.push_str(&format!(
        "To look at one: {cli} queue show ID; to drop one without a bounce:\r\n{cli} queue delete ID.\r\n"
    ));
    m.into_bytes()
}

/// What the server needs to send reports.
pub struct Reporter {
    pub store: Store,
    pub pipeline: Arc<MxPipeline>,
    pub hostname: String,
    /// `server.postmaster`: where a domain without admins gets its report.
    pub postmaster: Option<Address>,
    /// `postroom` and the global flags the server was started with.
    pub cli: String,
    pub every: Duration,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Reporter {
    /// Sends a report per domain for what was held since the last run.
    /// The window moves on only when every report was delivered (or
    /// logged): a failed one is sent again next time.
    async fn run_once(&self, since: i64, until: i64) -> Result<(), String> {
        let reports = collect(&self.store, since, until).await?;
        if reports.is_empty() {
            tracing::info!("held mail report: nothing was held since the last report");
        }
        let mut failed = None;
        for r in &reports {
            let scope = r.domain.as_deref().unwrap_or("-");
            let to: Vec<String> = match (&r.admins[..], &self.postmaster) {
                ([], Some(pm)) => vec![pm.to_string()],
                ([], None) => {
                    for item in &r.items {
                        tracing::warn!(
                            domain = scope,
                            queue_id = %item.queue_id,
                            item = %item.id,
                            sender = %item.sender,
                            recipient = %item.recipient,
                            reason = item.hold_reason.map(|h| h.code()).unwrap_or("other"),
                            "held mail report: the domain has no admin and server.postmaster is not set: logged only"
                        );
                    }
                    continue;
                }
                (admins, _) => admins.to_vec(),
            };
            let msg = message(&self.hostname, &self.cli, r, &to, since, until);
            match self.pipeline.submit_local(None, &to, msg).await {
                Ok(queue_id) => tracing::info!(
                    domain = scope,
                    items = r.items.len(),
                    to = %to.join(","),
                    %queue_id,
                    "held mail report sent"
                ),
                Err(e) => {
                    tracing::warn!(domain = scope, to = %to.join(","), error = %e, "held mail report not delivered; tried again next time");
                    failed = Some(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => self
                .store
                .meta()
                .set_setting(SINCE_KEY, &until.to_string())
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Runs for as long as the server does. The schedule follows the
    /// stored window, so a server restarted more often than the interval
    /// still reports.
    pub async fn run(self) {
        let meta = self.store.meta_handle();
        let since = match meta.setting_or_init(SINCE_KEY, now().to_string()).await {
            Ok(s) => s.parse::<i64>().unwrap_or_else(|_| now()),
            Err(e) => {
                tracing::warn!(error = %e, "held mail report: cannot read its window; starting now");
                now()
            }
        };
        let every = self.every.as_secs().max(1) as i64;
        let mut since = since;
        loop {
            let due = since.saturating_add(every);
            let wait = (due - now()).max(0) as u64;
            tokio::time::sleep(Duration::from_secs(wait)).await;
            let until = now();
            match self.run_once(since, until).await {
                Ok(()) => since = until,
                Err(e) => {
                    tracing::warn!(error = %e, "held mail report failed; tried again at the next interval");
                    // Tried again one interval later, with the window
                    // still open at `since`.
                    tokio::time::sleep(self.every).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postroom_store::{HoldReason, OutboundId};

    fn row(id: i64, sender: &str, recipient: &str, created: i64, held: Option<HoldReason>) -> OutboundRow {
        OutboundRow {
            id: OutboundId(id),
            queue_id: format!("Q{id}"),
            blob_id: String::new(),
            prefix: Vec::new(),
            sender: sender.into(),
            recipient: recipient.into(),
            state: if held.is_some() { "held" } else { "queued" }.into(),
            reason: "the member does not exist".into(),
            attempts: 0,
            next_attempt: 0,
            created,
            warned: false,
            hold_reason: held,
            held_for: None,
        }
    }

    #[test]
    fn held_rows_are_grouped_by_the_hosted_domain() {
        let hosted: BTreeMap<String, String> = [
            ("abc.com".to_string(), "abc.com".to_string()),
            ("abc.net".to_string(), "abc.com".to_string()),
            ("other.org".to_string(), "other.org".to_string()),
        ]
        .into_iter()
        .collect();
        let u = Some(HoldReason::UnknownMember);
        let rows = vec![
            row(1, "a@remote.example", "carol@abc.com", 100, u),
            row(2, "a@remote.example", "dave@abc.net", 150, u),
            // Not held: not reported.
            row(3, "a@remote.example", "x@abc.com", 120, None),
            // A sender over the caps: the sender's domain.
            row(
                6,
                "bob@other.org",
                "x@far.example",
                110,
                Some(HoldReason::SenderOverLimits),
            ),
            // No hosted domain at all.
            row(7, "", "postmaster", 130, Some(HoldReason::NoPostmaster)),
        ];
        let g = group(&rows, &hosted);
        let ids =
            |k: Option<&str>| -> Vec<i64> { g[&k.map(str::to_string)].iter().map(|r| r.id.0).collect() };
        assert_eq!(g.len(), 3);
        assert_eq!(ids(Some("abc.com")), vec![1, 2]);
        assert_eq!(ids(Some("other.org")), vec![6]);
        assert_eq!(ids(None), vec![7]);
        assert!(group(&rows[2..3], &hosted).is_empty());
    }

    #[test]
    fn the_message_lists_each_item_with_its_release_command() {
        let r = Report {
            domain: Some("abc.com".into()),
            admins: vec!["kent@abc.com".into()],
            items: vec![
                row(
                    12,
                    "a@remote.example",
                    "carol@abc.com",
                    86_400,
                    Some(HoldReason::UnknownMember),
                ),
                row(
                    13,
                    "",
                    "dave@abc.com",
                    86_401,
                    Some(HoldReason::UndeliverableBounce),
                ),
            ],
        };
        let m = String::from_utf8(message(
            "mx.example",
            "postroom --config /etc/p.toml",
            &r,
            &r.admins,
            0,
            2 * 86_400,
        ))
        .unwrap();
        assert!(m.contains("To: kent@abc.com\r\n"), "{m}");
        assert!(m.contains("Subject: Held mail for abc.com: 2 deliveries\r\n"));
        assert!(m.contains("Auto-Submitted: auto-generated\r\n"));
        assert!(
            m.contains("When:      Fri, 02 Jan 1970 00:00:00 +0000\r\n"),
            "{m}"
        );
        assert!(m.contains("Sender:    a@remote.example\r\nRecipient: carol@abc.com\r\n"));
        assert!(m.contains("Reason:    unknown-member: the member does not exist\r\n"));
        assert!(m.contains(
            "Queue id:  Q12 (item 12)\r\nRelease:   postroom --config /etc/p.toml queue release 12\r\n"
        ));
        assert!(m.contains("Sender:    <>\r\n"));
        assert!(m.lines().all(|l| l.len() < 998));
        let one = Report {
            items: r.items[..1].to_vec(),
            ..r.clone()
        };
        let m = String::from_utf8(message("mx.example", "postroom", &one, &one.admins, 0, 1)).unwrap();
        assert!(m.contains("Subject: Held mail for abc.com: 1 delivery\r\n"));
        assert!(m.contains("1 delivery for abc.com was held between"));
    }

    #[test]
    fn a_flood_is_counted_not_listed_and_long_reasons_are_cut() {
        let mut items: Vec<OutboundRow> = (0..(MAX_ITEMS as i64 + 7))
            .map(|i| row(i, "a@b.example", "c@abc.com", 1, Some(HoldReason::UnknownMember)))
            .collect();
        items[0].reason = "x".repeat(10_000);
        let r = Report {
            domain: Some("abc.com".into()),
            admins: vec![],
            items,
        };
        let m = String::from_utf8(message(
            "mx.example",
            "postroom",
            &r,
            &["pm@x.example".into()],
            0,
            2,
        ))
        .unwrap();
        assert!(m.contains("... and 7 more: postroom queue list --held\r\n"));
        assert_eq!(m.matches("Release:").count(), MAX_ITEMS);
        assert!(m.lines().all(|l| l.len() < 998));
    }
}
