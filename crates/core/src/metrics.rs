//! The server's counters, shown at `/metrics` in Prometheus' text
//! exposition format 0.0.4.
//!
//! One process-wide registry, written where the events happen (the same
//! spots as the log lines for transactions, logins and deliveries, in the
//! I/O layers, never in the sans-IO protocol cores) and read by the HTTP
//! side. Written by hand rather than with `prometheus-client` (whose text
//! is OpenMetrics 1.0, not 0.0.4) or `metrics-exporter-prometheus` (a
//! dozen more crates for what is a map of counters and one histogram).
//!
//! Label values are `&'static str` on purpose: every series is known at
//! compile time, so no peer can grow the registry (no address, host or
//! reply text ever becomes a label).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type Labels = Vec<(&'static str, &'static str)>;

/// The metric families this module keeps: name, type, help.
const FAMILIES: &[(&str, &str, &str)] = &[
    (SMTP_TRANSACTIONS, "counter", "SMTP transactions (MX and submission) by verdict."),
    (LOGINS, "counter", "Logins by protocol and result."),
    (DELIVERIES, "counter", "Delivery results per recipient: delivered (local), sent, deferred, expired, bounced (expired ones too)."),
    (FILTER_ACTIONS, "counter", "Content filter actions per recipient (deliver, junk, quarantine, reject, discard), and per message a tempfail or a whole-message reject."),
    (STORE_COMMIT, "histogram", "Time to commit an accepted message durably (fsync included)."),
];

pub const SMTP_TRANSACTIONS: &str = "postroom_smtp_transactions_total";
pub const LOGINS: &str = "postroom_logins_total";
pub const DELIVERIES: &str = "postroom_deliveries_total";
pub const FILTER_ACTIONS: &str = "postroom_filter_actions_total";
pub const STORE_COMMIT: &str = "postroom_store_commit_seconds";

/// Commit times: an fsync on an SSD takes 0.1-10 ms, on a busy disk or
/// through PostgreSQL's network tens of ms; past 10 s a client's DATA
/// timeout is near.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    /// Per bucket (not cumulative); the last is +Inf.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

struct Registry {
    counters: Mutex<BTreeMap<(&'static str, Labels), u64>>,
    commit: Mutex<Histogram>,
    started: Instant,
}

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| Registry {
        counters: Mutex::new(BTreeMap::new()),
        commit: Mutex::new(Histogram::default()),
        started: Instant::now(),
    })
}

/// Starts the uptime clock (called at start; otherwise the first event
/// starts it).
pub fn start() {
    let _ = registry();
}

/// Adds one to a counter.
pub fn inc(name: &'static str, labels: &[(&'static str, &'static str)]) {
    let mut c = registry().counters.lock().unwrap_or_else(|e| e.into_inner());
    *c.entry((name, labels.to_vec())).or_insert(0) += 1;
}

/// One content-filter action (`deliver`, `junk`, `quarantine`, `reject`,
/// `discard`, `tempfail`).
pub fn filter_action(action: &'static str) {
    inc(FILTER_ACTIONS, &[("action", action)]);
}

/// One SMTP transaction's verdict (`accepted`, `rejected`).
pub fn smtp_transaction(verdict: &'static str) {
    inc(SMTP_TRANSACTIONS, &[("verdict", verdict)]);
}

/// One login attempt: `protocol` (imap, pop3, submission, http) and its
/// result (ok, failed, refused, unavailable).
pub fn login(protocol: &'static str, result: &'static str) {
    inc(LOGINS, &[("protocol", protocol), ("result", result)]);
}

/// One recipient's delivery result.
pub fn delivery(status: &'static str) {
    inc(DELIVERIES, &[("status", status)]);
}

/// One durable commit of an accepted message.
pub fn store_commit(took: Duration) {
    let secs = took.as_secs_f64();
    let mut h = registry().commit.lock().unwrap_or_else(|e| e.into_inner());
    let i = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
    h.counts[i] += 1;
    h.sum += secs;
    h.count += 1;
}

/// The value of one counter series (for tests).
pub fn counter(name: &'static str, labels: &[(&'static str, &'static str)]) -> u64 {
    let c = registry().counters.lock().unwrap_or_else(|e| e.into_inner());
    c.get(&(name, labels.to_vec())).copied().unwrap_or(0)
}

/// `# HELP` and `# TYPE` of a family.
pub fn write_family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape(help, false));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line, its label values escaped as 0.0.4 requires (`\\`,
/// `\"`, `\n`).
pub fn write_sample<V: std::fmt::Display>(out: &mut String, name: &str, labels: &[(&str, &str)], value: V) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v, true));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn escape(s: &str, quotes: bool) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '"' if quotes => o.push_str("\\\""),
            c => o.push(c),
        }
    }
    o
}

/// This module's families and the uptime, in the text format 0.0.4.
pub fn render(out: &mut String) {
    let r = registry();
    let counters = r.counters.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (name, kind, help) in FAMILIES {
        write_family(out, name, kind, help);
        if *name == STORE_COMMIT {
            let h = r.commit.lock().unwrap_or_else(|e| e.into_inner());
            let mut cumulative = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cumulative += h.counts[i];
                write_sample(
                    out,
                    &format!("{name}_bucket"),
                    &[("le", &b.to_string())],
                    cumulative,
                );
            }
            write_sample(out, &format!("{name}_bucket"), &[("le", "+Inf")], h.count);
            write_sample(out, &format!("{name}_sum"), &[], h.sum);
            write_sample(out, &format!("{name}_count"), &[], h.count);
            continue;
        }
        for ((n, labels), v) in &counters {
            if n == name {
                write_sample(out, n, labels, v);
            }
        }
    }
    write_family(
        out,
        "postroom_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    );
    write_sample(out, "postroom_uptime_seconds", &[], r.started.elapsed().as_secs());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_the_histogram_render_as_0_0_4() {
        login("imap", "failed");
        login("imap", "failed");
        store_commit(Duration::from_millis(3));
        store_commit(Duration::from_secs(60));
        let mut s = String::new();
        render(&mut s);
        assert!(s.contains("# TYPE postroom_logins_total counter\n"), "{s}");
        assert!(counter(LOGINS, &[("protocol", "imap"), ("result", "failed")]) >= 2);
        assert!(
            s.contains("postroom_logins_total{protocol=\"imap\",result=\"failed\"} "),
            "{s}"
        );
        // Cumulative buckets: 3 ms is under 0.005, 60 s only under +Inf.
        let bucket = |le: &str| -> u64 {
            let key = format!("postroom_store_commit_seconds_bucket{{le=\"{le}\"}} ");
            let line = s.lines().find(|l| l.starts_with(&key)).unwrap();
            line[key.len()..].parse().unwrap()
        };
        assert!(bucket("0.0025") < bucket("0.005"));
        assert!(bucket("10") < bucket("+Inf"));
        assert!(s.contains("# TYPE postroom_uptime_seconds gauge\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        write_sample(&mut s, "x", &[("a", "q\"\\\n")], 1);
        assert_eq!(s, "x{a=\"q\\\"\\\\\\n\"} 1\n");
    }
}
