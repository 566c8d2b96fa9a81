//! The content filter (`postroom_filter`, issue #10) as the pipeline's
//! [`Filter`]: the chain runs once per message, and its report becomes a
//! verdict per recipient through that recipient's thresholds and
//! whitelists.

use std::fmt::Write as _;
use std::sync::Arc;

use postroom_filter::{Action, Chain, Envelope, Forced, Recipient, Report, Scan, Thresholds};

use crate::filter::{
    verdict_for, Filter, FilterFuture, FilterInput, FilterOutcome, FilterRecipient, FilterReport, Verdict,
};

/// The symbols of a failed sender authentication: a message carrying one
/// is not whitelisted, since anyone can write a whitelisted address into
/// `MAIL FROM` or `From:` (issue #10). The sender checks' own list (SPF
/// fail and softfail, DKIM fail, DMARC fail at every policy), so the two
/// never drift apart.
pub const AUTH_FAIL_SYMBOLS: &[&str] = postroom_filter::sender::AUTH_FAILURES;

/// Header fields the filter writes; the same fields arriving with a
/// message are removed, so a sender cannot pass its own
/// `X-Spam-Status: No` to the recipient's rules.
const OWN_FIELDS: &[&str] = &[
    "x-spam-status",
    "x-spam-score",
    "x-spam-flag",
    "x-postroom-cleaned",
];

/// How many symbols the log line and a refusal's reason name (the highest
/// scores first): enough to see why, short enough for one line.
const TOP_SYMBOLS: usize = 5;

/// The policy of one recipient: its domain's thresholds, whether the
/// sender is on its domain's or mailbox's whitelist.
#[derive(Clone, Debug, PartialEq)]
pub struct RcptPolicy {
    pub thresholds: Thresholds,
    pub whitelisted: bool,
    /// Whether `{Cleaned}` may be added to the Subject for this recipient.
    pub cleaned_tag: bool,
}

/// Where the per-recipient policy comes from (the store's per-domain
/// settings and whitelists); without one, `[filter.policy]` applies to
/// everyone and nobody is whitelisted.
pub trait PolicySource: Send + Sync {
    /// `senders`: the envelope sender and the `From:` addresses, lower
    /// case (either may be whitelisted: a newsletter's envelope sender is
    /// often its provider's bounce address).
    fn policies<'a>(
        &'a self,
        senders: &'a [String],
        recipients: &'a [FilterRecipient],
        defaults: &'a Thresholds,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<RcptPolicy>> + Send + 'a>>;
}

/// The most `From:` addresses looked up (RFC 5322 allows a list; mail
/// has one).
const MAX_FROM: usize = 5;

/// The envelope sender and the `From:` addresses, lower case, once each.
fn senders(mail_from: Option<&str>, message: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = mail_from
        .filter(|s| !s.is_empty())
        .map(str::to_lowercase)
        .into_iter()
        .collect();
    let from = postroom_core::header::fields(message)
        .filter(|f| f.is("from"))
        .flat_map(|f| postroom_core::header::mailboxes(&f.unfolded()))
        .filter_map(|m| m.addr_spec())
        .take(MAX_FROM);
    for a in from {
        let a = a.to_lowercase();
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

pub struct ChainFilter {
    chain: Chain,
    defaults: Thresholds,
    policy: Option<Arc<dyn PolicySource>>,
    /// Built once: its table of header parsers is a `HashMap` that
    /// `MessageParser::default()` would fill again for every message.
    parser: mail_parser::MessageParser,
    /// `[filter.html] subject_tag` and a space, as the rewriter writes it,
    /// for taking it out again when no recipient's domain wants it.
    subject_tag: Vec<u8>,
    /// Our authserv-id (`[server] hostname`): an arriving
    /// `Authentication-Results` in its name is forged.
    authserv_id: Option<String>,
}

impl ChainFilter {
    pub fn new(chain: Chain, defaults: Thresholds, policy: Option<Arc<dyn PolicySource>>) -> ChainFilter {
        ChainFilter {
            chain,
            defaults,
            policy,
            parser: mail_parser::MessageParser::default(),
            subject_tag: b"{Cleaned} ".to_vec(),
            authserv_id: None,
        }
    }

    /// The Subject tag the rewriter adds (`[filter.html] subject_tag`).
    pub fn with_subject_tag(mut self, tag: &str) -> ChainFilter {
        self.subject_tag = format!("{tag} ").into_bytes();
        self
    }

    /// RFC 8601 5: `Authentication-Results` fields that arrive in our
    /// name are removed before the checks add ours.
    pub fn with_authserv_id(mut self, hostname: &str) -> ChainFilter {
        self.authserv_id = Some(hostname.trim_end_matches('.').to_ascii_lowercase());
        self
    }

    async fn run(&self, input: FilterInput<'_>) -> FilterOutcome {
        let n = input.recipients.len();
        let mut changed = strip_own_fields(input.body, self.authserv_id.as_deref());
        let policies = match &self.policy {
            Some(p) => {
                let senders = senders(input.mail_from, input.body);
                p.policies(&senders, input.recipients, &self.defaults).await
            }
            None => Vec::new(),
        };
        let policy_of = |i: usize| {
            policies.get(i).cloned().unwrap_or(RcptPolicy {
                thresholds: self.defaults.clone(),
                whitelisted: false,
                cleaned_tag: true,
            })
        };
        let envelope = Envelope {
            peer: input.peer,
            peer_rdns: None,
            helo: input.helo.to_string(),
            tls: input.tls,
            auth_user: input.auth_user.map(str::to_string),
            mail_from: input.mail_from.map(str::to_string),
            recipients: input
                .recipients
                .iter()
                .map(|r| Recipient {
                    address: r.address.clone(),
                    domain: r.domain.clone(),
                    account: r.account.map(|a| a.0),
                })
                .collect(),
            deadline: input.deadline,
        };
        let (report, rewritten) = {
            let fallback = mail_parser::Message::default();
            let parsed = self.parser.parse(&input.body[..]);
            let scan = Scan {
                envelope: &envelope,
                raw: &input.body[..],
                message: parsed.as_ref().unwrap_or(&fallback),
            };
            let report = self.chain.run(&scan).await;
            // A message that is refused or tempfailed is not rewritten.
            let rewritten = if report.forced.is_none() {
                self.chain.rewrite(&scan)
            } else {
                None
            };
            (report, rewritten)
        };
        let mut changes = Vec::new();
        if let Some(rw) = rewritten {
            let mut message = rw.message;
            if !(0..n).any(|i| policy_of(i).cleaned_tag) {
                untag_subject(&mut message, &self.subject_tag);
            }
            *input.body = message;
            changes = rw.changes;
            changed = true;
        }
        let tempfail = match &report.forced {
            Some(Forced::TempFail { reason, .. }) => Some(reason.clone()),
            _ => None,
        };
        let authenticated_failure = report
            .symbols()
            .any(|s| AUTH_FAIL_SYMBOLS.contains(&s.name.as_ref()));
        let why = reason(&report);
        let mut verdicts = Vec::with_capacity(n);
        let mut headers = Vec::with_capacity(n);
        let mut scores = Vec::with_capacity(n);
        let mut whitelisted = Vec::with_capacity(n);
        let mut thresholds = Vec::with_capacity(n);
        for i in 0..n {
            let p = policy_of(i);
            let wl = p.whitelisted && !authenticated_failure;
            // + 0.0: an empty sum is -0.0, which would print as "-0.0".
            let score = report.score(wl) + 0.0;
            let action = if input.auth_user.is_some() {
                // An authenticated user's own mail is not junked or held
                // for its score (a Junk verdict would drop it on the way
                // out: spam is never sent on); only what decides alone (a
                // virus, a blocklisted link) refuses it.
                match report.forced {
                    Some(Forced::Reject { .. }) => Action::Reject,
                    _ => Action::Deliver,
                }
            } else {
                p.thresholds.decide(&report, wl)
            };
            verdicts.push(verdict_for(action, &why));
            headers.push(rcpt_headers(&report, score, action, &p.thresholds));
            scores.push(score);
            whitelisted.push(wl);
            thresholds.push(p.thresholds);
        }
        FilterOutcome {
            verdicts,
            headers,
            tempfail,
            changed,
            report: Some(FilterReport {
                report,
                scores,
                whitelisted,
                thresholds,
                changes,
            }),
        }
    }
}

impl Filter for ChainFilter {
    fn check<'a>(&'a self, input: FilterInput<'a>) -> FilterFuture<'a> {
        Box::pin(self.run(input))
    }
}

/// A test hook, added to the chain only when the server runs with
/// `POSTROOM_TEST_FILTER_SCORES=1` in its environment: the message's
/// `X-Postroom-Test-Score` header becomes the symbol `TEST_SCORE` with
/// that score, so end-to-end tests reach each threshold exactly, whatever
/// the real checks score.
pub struct TestScore;

#[async_trait::async_trait]
impl postroom_filter::Check for TestScore {
    fn name(&self) -> &'static str {
        "test"
    }

    async fn check(&self, scan: &Scan<'_>, out: &mut postroom_filter::Findings) {
        let score = postroom_core::header::header_value(scan.raw, "x-postroom-test-score")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite());
        if let Some(score) = score {
            out.add(
                "TEST_SCORE",
                score.clamp(-1000.0, 1000.0),
                format!("X-Postroom-Test-Score: {score}"),
            );
        }
    }
}

/// The symbols with the highest scores, `NAME(score)`, highest first.
pub fn top_symbols(report: &Report) -> String {
    let mut all: Vec<_> = report.symbols().filter(|s| s.score != 0.0).collect();
    all.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()));
    let mut out = String::new();
    for s in all.into_iter().take(TOP_SYMBOLS) {
        if !out.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "{}({:.1})", s.name, s.score);
    }
    out
}

/// Why a message is refused or held, in the words the client and the
/// quarantine list show.
fn reason(report: &Report) -> String {
    match &report.forced {
        Some(Forced::Reject { reason, .. }) | Some(Forced::TempFail { reason, .. }) => reason.clone(),
        None => format!("spam score {:.1} ({})", report.score(false), top_symbols(report)),
    }
}

/// One recipient's header lines: what the checks asked for
/// (`Authentication-Results`), then SpamAssassin's `X-Spam-Status`
/// wording (`Yes, score=7.2 required=6.0 tests=A,B`) with
/// `X-Spam-Score` and, when it is spam, `X-Spam-Flag: YES`, which mail
/// clients' and Sieve rules already read.
fn rcpt_headers(report: &Report, score: f64, action: Action, t: &Thresholds) -> Vec<u8> {
    let mut out = String::new();
    for (name, value) in &report.headers {
        if let Some(line) = header_line(name, value) {
            out.push_str(&line);
        }
    }
    let spam = !matches!(action, Action::Deliver);
    let mut names: Vec<&str> = report
        .symbols()
        .filter(|s| s.score != 0.0)
        .map(|s| s.name.as_ref())
        .collect();
    names.sort_unstable();
    names.dedup();
    names.truncate(MAX_STORED_SYMBOLS);
    let tests = if names.is_empty() {
        "NONE".to_string()
    } else {
        names.join(",")
    };
    let status = format!(
        "{}, score={score:.1} required={:.1} tests={tests}",
        if spam { "Yes" } else { "No" },
        t.junk_at
    );
    out.push_str(&fold("X-Spam-Status", &status));
    let _ = write!(out, "X-Spam-Score: {score:.1}\r\n");
    if spam {
        out.push_str("X-Spam-Flag: YES\r\n");
    }
    out.into_bytes()
}

/// `Name: value` folded at commas and spaces to lines of about 78
/// characters (RFC 5322 2.1.1's recommended limit).
fn fold(name: &str, value: &str) -> String {
    let mut out = format!("{name}:");
    let mut line = out.len();
    for word in value.split(' ') {
        // Long test lists fold after their commas too.
        let mut first = true;
        for piece in word.split_inclusive(',') {
            let sep = if first { " " } else { "" };
            if line + sep.len() + piece.len() > 78 && line > name.len() + 1 {
                out.push_str("\r\n\t");
                line = 1;
            } else {
                out.push_str(sep);
                line += sep.len();
            }
            out.push_str(piece);
            line += piece.len();
            first = false;
        }
    }
    out.push_str("\r\n");
    out
}

/// A check's header as a field: the name must be a field name (RFC 5322
/// 3.6.8: printable ASCII without a colon), line breaks in the value
/// become folds, other control characters are replaced.
fn header_line(name: &str, value: &str) -> Option<String> {
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return None;
    }
    let lines: Vec<String> = value
        .split('\n')
        .map(|l| {
            l.trim_matches(|c: char| c == '\r' || c == ' ' || c == '\t')
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect()
        })
        .filter(|l: &String| !l.is_empty())
        .collect();
    Some(format!("{name}: {}\r\n", lines.join("\r\n\t")))
}

/// Removes the fields the filter writes itself from the message's header
/// section, and the `Authentication-Results` claiming our authserv-id
/// (RFC 8601 5); whether anything was removed.
fn strip_own_fields(body: &mut Vec<u8>, authserv_id: Option<&str>) -> bool {
    let base = body.as_ptr() as usize;
    let ours = |f: &postroom_core::header::Field<'_>| {
        let Some(id) = authserv_id else {
            return false;
        };
        if !f.is("authentication-results") {
            return false;
        }
        // RFC 8601 2.2: the value starts with the authserv-id, then `;`.
        let value = f.unfolded();
        let value = String::from_utf8_lossy(&value);
        let first = value.split(';').next().unwrap_or_default();
        first
            .split_whitespace()
            .next()
            .is_some_and(|v| v.eq_ignore_ascii_case(id))
    };
    let ranges: Vec<(usize, usize)> = postroom_core::header::fields(body)
        .filter(|f| OWN_FIELDS.iter().any(|n| f.is(n)) || ours(f))
        .map(|f| {
            let start = f.raw.as_ptr() as usize - base;
            (start, start + f.raw.len())
        })
        .collect();
    for (start, end) in ranges.iter().rev() {
        body.drain(*start..*end);
    }
    !ranges.is_empty()
}

/// Takes `{Cleaned}` out of the Subject when no recipient's domain wants
/// it (per-domain setting; the body is one for all recipients).
fn untag_subject(message: &mut Vec<u8>, tag: &[u8]) {
    if tag.trim_ascii().is_empty() {
        return;
    }
    let base = message.as_ptr() as usize;
    let found = postroom_core::header::fields(message)
        .find(|f| f.is("subject"))
        .and_then(|f| {
            let at = memchr::memmem::find(f.raw, tag)?;
            Some(f.raw.as_ptr() as usize - base + at)
        });
    if let Some(at) = found {
        message.drain(at..at + tag.len());
    }
}

/// The stored form of a message's filter report (`postroom explain`
/// reads it): every check with its symbols, what decided alone, and per
/// recipient the score, whether whitelisted, the thresholds and the
/// action.
pub struct ReportContext<'a> {
    pub queue_id: &'a str,
    pub at: i64,
    pub client: std::net::IpAddr,
    pub helo: &'a str,
    pub sender: &'a str,
    pub message_id: &'a str,
    pub recipients: &'a [String],
    pub verdicts: &'a [Verdict],
    /// The SMTP answer: `250`, `550 5.7.1 ...`, `451 4.7.1 ...`.
    pub reply: &'a str,
}

pub fn report_json(ctx: &ReportContext<'_>, r: &FilterReport) -> String {
    let recipients: Vec<serde_json::Value> = ctx
        .recipients
        .iter()
        .enumerate()
        .map(|(i, rcpt)| {
            let t = r.thresholds.get(i);
            serde_json::json!({
                "rcpt": rcpt,
                "score": r.scores.get(i).copied().unwrap_or(0.0),
                "whitelisted": r.whitelisted.get(i).copied().unwrap_or(false),
                "action": ctx.verdicts.get(i).map_or("deliver", Verdict::name),
                "junk_at": t.map(|t| t.junk_at),
                "quarantine_at": t.map(|t| t.quarantine_at),
                "high_at": t.map(|t| t.high_at),
            })
        })
        .collect();
    // Bounded: a check's detail quotes what matched (a URL, a file name),
    // which the sender chose.
    let checks: Vec<serde_json::Value> = r
        .report
        .checks
        .iter()
        .map(|c| {
            let symbols: Vec<serde_json::Value> = c
                .symbols
                .iter()
                .take(MAX_STORED_SYMBOLS)
                .map(|s| {
                    serde_json::json!({
                        "name": s.name,
                        "score": s.score,
                        "detail": bounded(&s.detail, MAX_DETAIL),
                    })
                })
                .collect();
            serde_json::json!({"check": c.check, "symbols": symbols})
        })
        .collect();
    serde_json::json!({
        "queue_id": ctx.queue_id,
        "at": ctx.at,
        "client": ctx.client.to_string(),
        "helo": ctx.helo,
        "from": ctx.sender,
        "message_id": ctx.message_id,
        "checks": checks,
        "forced": r.report.forced,
        "changes": r.changes,
        "recipients": recipients,
        "reply": ctx.reply,
    })
    .to_string()
}

/// The longest detail kept in a stored report, in bytes.
const MAX_DETAIL: usize = 500;
/// The most symbols of one check kept in a stored report or named in
/// `X-Spam-Status` (a check finding 100 links names a few of them).
const MAX_STORED_SYMBOLS: usize = 100;

/// `s` cut to at most `max` bytes, at a character boundary, marked `…`.
fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

/// What a verdict list says as one word per recipient, for the log.
pub fn actions(verdicts: &[Verdict]) -> String {
    verdicts.iter().map(Verdict::name).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use postroom_filter::{Check, Findings};

    use super::*;

    /// A check that reports fixed symbols.
    struct Fixed(Vec<(&'static str, f64)>, Option<Forced>, bool);

    #[async_trait::async_trait]
    impl Check for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        async fn check(&self, _: &Scan<'_>, out: &mut Findings) {
            for (name, score) in &self.0 {
                out.add(*name, *score, "test");
            }
            if let Some(f) = &self.1 {
                out.force(f.clone());
            }
            out.add_header("Authentication-Results", "mx.example; spf=pass");
        }
        fn whitelist_skips(&self) -> bool {
            self.2
        }
    }

    struct Whitelist(Vec<bool>);

    impl PolicySource for Whitelist {
        fn policies<'a>(
            &'a self,
            _: &'a [String],
            _: &'a [FilterRecipient],
            defaults: &'a Thresholds,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<RcptPolicy>> + Send + 'a>> {
            let v = self
                .0
                .iter()
                .map(|w| RcptPolicy {
                    thresholds: defaults.clone(),
                    whitelisted: *w,
                    cleaned_tag: true,
                })
                .collect();
            Box::pin(async move { v })
        }
    }

    fn filter(
        symbols: Vec<(&'static str, f64)>,
        forced: Option<Forced>,
        policy: Option<Vec<bool>>,
    ) -> ChainFilter {
        let chain = Chain::new(vec![Box::new(Fixed(symbols, forced, true))], BTreeMap::new());
        let policy = policy.map(|w| Arc::new(Whitelist(w)) as Arc<dyn PolicySource>);
        ChainFilter::new(chain, Thresholds::default(), policy)
    }

    fn rcpts(n: usize) -> Vec<FilterRecipient> {
        (0..n)
            .map(|i| FilterRecipient {
                address: format!("u{i}@x.example"),
                domain: "x.example".into(),
                mailbox: None,
                account: None,
            })
            .collect()
    }

    async fn run(f: &ChainFilter, n: usize, auth: Option<&str>) -> (FilterOutcome, Vec<u8>) {
        let mut body = b"X-Spam-Status: No\r\nSubject: hi\r\n\r\nbody\r\n".to_vec();
        let r = rcpts(n);
        let out = f
            .check(FilterInput {
                peer: "192.0.2.1".parse().unwrap(),
                helo: "c.example",
                tls: false,
                auth_user: auth,
                mail_from: Some("s@y.example"),
                recipients: &r,
                deadline: std::time::Instant::now() + Duration::from_secs(5),
                body: &mut body,
            })
            .await;
        (out, body)
    }

    #[tokio::test]
    async fn scores_become_verdicts_by_the_mailscanner_thresholds() {
        for (score, verdict) in [
            (0.0, "deliver"),
            (6.0, "junk"),
            (10.0, "quarantine"),
            (20.0, "reject"),
        ] {
            let (out, body) = run(&filter(vec![("TEST", score)], None, None), 2, None).await;
            assert_eq!(out.verdicts.len(), 2);
            assert!(
                out.verdicts.iter().all(|v| v.name() == verdict),
                "{score}: {:?}",
                out.verdicts
            );
            let h = String::from_utf8(out.headers[0].clone()).unwrap();
            assert!(
                h.starts_with("Authentication-Results: mx.example; spf=pass\r\n"),
                "{h}"
            );
            assert!(h.contains(&format!("X-Spam-Score: {score:.1}\r\n")), "{h}");
            assert_eq!(h.contains("X-Spam-Flag: YES"), score >= 6.0);
            // The sender's own X-Spam-Status is gone.
            assert!(out.changed);
            assert_eq!(body, b"Subject: hi\r\n\r\nbody\r\n");
        }
        let (out, _) = run(&filter(vec![("TEST", 7.0)], None, None), 1, None).await;
        let h = String::from_utf8(out.headers[0].clone()).unwrap();
        assert!(
            h.contains("X-Spam-Status: Yes, score=7.0 required=6.0 tests=TEST\r\n"),
            "{h}"
        );
    }

    #[tokio::test]
    async fn forced_findings_decide_alone() {
        let reject = Some(Forced::Reject {
            symbol: "PHISH".into(),
            reason: "a phishing link".into(),
        });
        let (out, _) = run(&filter(vec![], reject.clone(), Some(vec![true])), 1, None).await;
        assert_eq!(out.verdicts, [Verdict::Reject("a phishing link".into())]);
        let temp = Some(Forced::TempFail {
            symbol: "CLAMAV_TIMEOUT".into(),
            reason: "clamav did not answer".into(),
        });
        let (out, _) = run(&filter(vec![], temp, None), 1, None).await;
        assert_eq!(out.tempfail.as_deref(), Some("clamav did not answer"));
        // An authenticated user's mail is refused only for what decides
        // alone, never junked for its score.
        let (out, _) = run(&filter(vec![("TEST", 15.0)], None, None), 1, Some("u@x.example")).await;
        assert_eq!(out.verdicts, [Verdict::Deliver]);
        let (out, _) = run(&filter(vec![], reject, None), 1, Some("u@x.example")).await;
        assert!(matches!(out.verdicts[0], Verdict::Reject(_)));
    }

    #[tokio::test]
    async fn whitelists_are_per_recipient_and_fail_with_authentication() {
        let (out, _) = run(
            &filter(vec![("TEST", 12.0)], None, Some(vec![true, false])),
            2,
            None,
        )
        .await;
        assert_eq!(out.verdicts[0], Verdict::Deliver);
        assert!(matches!(out.verdicts[1], Verdict::Quarantine(_)));
        let r = out.report.unwrap();
        assert_eq!(r.scores, [0.0, 12.0]);
        assert_eq!(r.whitelisted, [true, false]);
        for failing in AUTH_FAIL_SYMBOLS {
            let (out, _) = run(
                &filter(vec![("TEST", 12.0), (failing, 0.0)], None, Some(vec![true])),
                1,
                None,
            )
            .await;
            assert!(matches!(out.verdicts[0], Verdict::Quarantine(_)), "{failing}");
        }
    }

    #[test]
    fn own_fields_are_removed_from_the_header_only() {
        let mut m =
            b"X-Spam-Status: No\r\nSubject: a\r\nx-spam-score :\r\n -5\r\n\r\nX-Spam-Status: body\r\n"
                .to_vec();
        assert!(strip_own_fields(&mut m, None));
        assert_eq!(m, b"Subject: a\r\n\r\nX-Spam-Status: body\r\n");
        assert!(!strip_own_fields(&mut m, None));
    }

    #[test]
    fn forged_results_in_our_name_and_a_forged_cleaned_list_are_removed() {
        let mut m = b"Authentication-Results: MX.Ours.example; spf=pass\r\n\
Authentication-Results: mx.other.example; dkim=pass\r\n\
Authentication-Results:\r\n mx.ours.example;\r\n dmarc=pass\r\n\
X-Postroom-Cleaned: nothing\r\nSubject: a\r\n\r\n"
            .to_vec();
        assert!(strip_own_fields(&mut m, Some("mx.ours.example")));
        assert_eq!(
            m,
            b"Authentication-Results: mx.other.example; dkim=pass\r\nSubject: a\r\n\r\n"
        );
    }

    #[test]
    fn status_folds_and_header_values_cannot_inject_fields() {
        let long = format!(
            "Yes, score=9.0 required=6.0 tests={}",
            ["SOME_LONG_SYMBOL"; 10].join(",")
        );
        let f = fold("X-Spam-Status", &long);
        assert!(f.lines().all(|l| l.len() <= 80), "{f}");
        assert!(f.ends_with("\r\n"));
        assert_eq!(
            f.replace("\r\n\t", "").trim_end(),
            format!("X-Spam-Status: {long}")
        );
        let h = header_line("Authentication-Results", "mx; spf=pass\r\nX-Evil: 1").unwrap();
        assert_eq!(h, "Authentication-Results: mx; spf=pass\r\n\tX-Evil: 1\r\n");
        assert!(header_line("Bad Name", "x").is_none());
    }

    #[test]
    fn whitelists_are_looked_up_by_envelope_sender_and_from() {
        let m = b"From: \"News\" <News@Letter.example>, b@x.example\r\nFrom: c@y.example\r\n\r\nFrom: body@z.example\r\n";
        assert_eq!(
            senders(Some("Bounce+1@Mailer.example"), m),
            [
                "bounce+1@mailer.example",
                "news@letter.example",
                "b@x.example",
                "c@y.example"
            ]
        );
        assert_eq!(senders(None, b"From: a@b.example\r\n\r\n"), ["a@b.example"]);
        assert_eq!(
            senders(Some("a@b.example"), b"From: A@b.example\r\n\r\n"),
            ["a@b.example"]
        );
    }

    #[test]
    fn stored_details_are_bounded() {
        assert_eq!(bounded("abc", 5), "abc");
        assert_eq!(bounded("ééé", 3), "é…");
        assert_eq!(
            bounded(&"x".repeat(600), MAX_DETAIL).len(),
            MAX_DETAIL + '…'.len_utf8()
        );
    }

    #[test]
    fn the_cleaned_tag_comes_out_of_the_subject() {
        let mut m = b"Subject: {Cleaned} hello\r\n\r\n{Cleaned} body".to_vec();
        untag_subject(&mut m, b"{Cleaned} ");
        assert_eq!(m, b"Subject: hello\r\n\r\n{Cleaned} body");
        // A provider's own tag comes out the same way.
        let mut m = b"Subject: [SAFE] hello\r\n\r\n".to_vec();
        untag_subject(&mut m, b"[SAFE] ");
        assert_eq!(m, b"Subject: hello\r\n\r\n");
    }
}
