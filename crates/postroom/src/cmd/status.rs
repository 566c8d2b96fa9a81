//! `postroom status`: whether the server runs (the data folder's lock),
//! what it says about itself over the control socket (version, uptime,
//! listeners, open connections, certificates), and what the store and
//! the folder say with or without it (the queue by state, held mail by
//! reason, disk use). Exit code 3 when the server is not running, as
//! `systemctl status` does.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use super::{wait, Context};
use crate::control::{self, Listener, Live};
use crate::lock::{self, Role};

/// The exit code when no server runs on the data folder (LSB's "program
/// is not running", which `systemctl status` also uses).
pub const NOT_RUNNING: u8 = 3;

/// The queue states always shown, even at zero.
const STATES: [&str; 3] = ["queued", "deferred", "held"];

#[derive(Serialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Count {
    count: u64,
    /// Age of the oldest item, in seconds.
    oldest_age_secs: Option<i64>,
}

impl Count {
    /// `n` more items, the oldest of them `age` seconds old.
    fn add(&mut self, n: u64, age: i64) {
        self.count = self.count.saturating_add(n);
        self.oldest_age_secs = Some(self.oldest_age_secs.map_or(age, |o| o.max(age)));
    }
}

#[derive(Serialize)]
struct CertificateOut {
    file: String,
    not_after: Option<i64>,
    /// Whole days until it expires (negative: expired).
    days_left: Option<i64>,
}

#[derive(Serialize)]
struct Report {
    running: bool,
    pid: Option<u32>,
    /// The running server's version, else this binary's.
    version: String,
    uptime_secs: Option<i64>,
    data_dir: String,
    listeners: Vec<Listener>,
    connections: BTreeMap<String, u64>,
    certificates: Vec<CertificateOut>,
    queue: BTreeMap<String, Count>,
    held: BTreeMap<String, Count>,
    disk_bytes: u64,
    /// Running, but it did not answer on the control socket.
    live_error: Option<String>,
    /// `postroom migrate` holds the data folder.
    migrating: bool,
}

pub fn status(ctx: &Context, json: bool) -> Result<ExitCode, String> {
    let cfg = ctx.config()?;
    let dir = ctx.data_dir_for(&cfg);
    let store = ctx.store()?;
    let now = now();
    let holder = lock::holder(&dir);
    let (live, live_error) = match holder {
        Some((_, Role::Server)) => match control::ask(&dir, control::Request::Status) {
            Ok(l) => (Some(l), None),
            Err(e) => (None, Some(e)),
        },
        _ => (None, None),
    };
    let summary = wait(store.meta().queue_summary()).map_err(|e| e.to_string())?;
    let mut queue: BTreeMap<String, Count> =
        STATES.iter().map(|s| (s.to_string(), Count::default())).collect();
    let mut held: BTreeMap<String, Count> = BTreeMap::new();
    for c in &summary {
        let age = (now - c.oldest_created).max(0);
        queue.entry(c.state.clone()).or_default().add(c.count, age);
        if let Some(why) = c.hold_reason {
            held.entry(why.code().to_string()).or_default().add(c.count, age);
        }
    }
    let running = matches!(holder, Some((_, Role::Server)));
    let report = Report {
        running,
        pid: live.as_ref().map(|l| l.pid).or(holder.and_then(|(pid, _)| pid)),
        version: live
            .as_ref()
            .map_or_else(|| env!("CARGO_PKG_VERSION").to_string(), |l| l.version.clone()),
        uptime_secs: live.as_ref().map(|l| (now - l.started).max(0)),
        data_dir: dir.display().to_string(),
        listeners: live.as_ref().map(|l| l.listeners.clone()).unwrap_or_default(),
        connections: live.as_ref().map(|l| l.connections.clone()).unwrap_or_default(),
        certificates: live.as_ref().map(|l| certificates(l, now)).unwrap_or_default(),
        queue,
        held,
        disk_bytes: disk_use(&dir),
        live_error,
        migrating: matches!(holder, Some((_, Role::Migrate))),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", human(&report));
    }
    match (&report.live_error, running) {
        (Some(e), _) => Err(format!("the server is running but did not answer: {e}")),
        (None, true) => Ok(ExitCode::SUCCESS),
        (None, false) => Ok(ExitCode::from(NOT_RUNNING)),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn certificates(live: &Live, now: i64) -> Vec<CertificateOut> {
    live.certificates
        .iter()
        .map(|c| CertificateOut {
            file: c.file.clone(),
            not_after: c.not_after,
            days_left: c.not_after.map(|t| (t - now).div_euclid(86_400)),
        })
        .collect()
}

/// The space the data folder takes on disk (allocated blocks, as `du`
/// counts), symbolic links not followed. Unreadable entries count 0.
fn disk_use(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&d) else {
            continue;
        };
        total = total.saturating_add(meta.blocks().saturating_mul(512));
        if !meta.is_dir() {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            todo.push(e.path());
        }
    }
    total
}

/// `1 item`, `2 items`.
pub(super) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Powers of 1024 with one decimal: `512 B`, `1.2 GiB`.
pub(super) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// Two units at most: `45s`, `5m 3s`, `3h 12m`, `2d 4h`.
fn age(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn counts(map: &BTreeMap<String, Count>) -> String {
    map.iter()
        .map(|(name, c)| match c.oldest_age_secs {
            Some(a) if c.count > 0 => format!("{} {name} (oldest {})", c.count, age(a)),
            _ => format!("{} {name}", c.count),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn human(r: &Report) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let pid = r.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    match (r.running, r.uptime_secs) {
        (true, Some(up)) => line(format!("Postroom {}: running{pid}, up {}", r.version, age(up))),
        (true, None) => line(format!("Postroom: running{pid}")),
        (false, _) if r.migrating => line(format!(
            "Postroom {}: not running (postroom migrate is running{pid})",
            r.version
        )),
        (false, _) => line(format!("Postroom {}: not running", r.version)),
    }
    line(format!(
        "data folder: {} ({} on disk)",
        r.data_dir,
        size(r.disk_bytes)
    ));
    if let Some(e) = &r.live_error {
        line(format!("live state: unavailable ({e})"));
    }
    if r.running && r.live_error.is_none() {
        line("listeners:".into());
        for l in &r.listeners {
            line(format!("  {:<12} {}", l.protocol, l.address));
        }
        let open: u64 = r.connections.values().sum();
        line(format!(
            "connections: {} ({})",
            open,
            r.connections
                .iter()
                .map(|(p, n)| format!("{n} {p}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        match r.certificates.is_empty() {
            true => line("certificates: none (no TLS)".into()),
            false => {
                line("certificates:".into());
                for c in &r.certificates {
                    let left = match c.days_left {
                        Some(d) if d < 0 => {
                            format!("EXPIRED {} ago", plural(d.unsigned_abs(), "day", "days"))
                        }
                        Some(d) => format!("{} left", plural(d as u64, "day", "days")),
                        None => "expiry unreadable".into(),
                    };
                    line(format!("  {}: {left}", c.file));
                }
            }
        }
    }
    line(format!("queue: {}", counts(&r.queue)));
    match r.held.is_empty() {
        true => line("held: none".into()),
        false => line(format!("held by reason: {}", counts(&r.held))),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_ages_and_plurals_read_as_people_write_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(1_288_490_189), "1.2 GiB");
        assert_eq!(size(5 * 1024 * 1024 * 1024 * 1024), "5.0 TiB");
        assert_eq!(size(u64::MAX), "16384.0 PiB");
        assert_eq!(age(0), "0s");
        assert_eq!(age(45), "45s");
        assert_eq!(age(303), "5m 3s");
        assert_eq!(age(3 * 3600 + 12 * 60 + 5), "3h 12m");
        assert_eq!(age(2 * 86_400 + 4 * 3600), "2d 4h");
        assert_eq!(age(-5), "0s");
        assert_eq!(plural(1, "day", "days"), "1 day");
        assert_eq!(plural(0, "day", "days"), "0 days");
        assert_eq!(plural(364, "day", "days"), "364 days");
    }

    #[test]
    fn counts_keep_the_oldest() {
        let mut c = Count::default();
        c.add(1, 5);
        c.add(1, 500);
        c.add(1, 50);
        assert_eq!(
            c,
            Count {
                count: 3,
                oldest_age_secs: Some(500)
            }
        );
        let map: BTreeMap<String, Count> =
            [("held".to_string(), c), ("queued".to_string(), Count::default())]
                .into_iter()
                .collect();
        assert_eq!(counts(&map), "3 held (oldest 8m 20s), 0 queued");
    }

    #[test]
    fn a_stopped_server_reads_not_running() {
        let r = Report {
            running: false,
            pid: None,
            version: "1.0.0".into(),
            uptime_secs: None,
            data_dir: "/var/lib/postroom".into(),
            listeners: vec![],
            connections: BTreeMap::new(),
            certificates: vec![],
            queue: STATES.iter().map(|s| (s.to_string(), Count::default())).collect(),
            held: BTreeMap::new(),
            disk_bytes: 3 * 1024 * 1024,
            live_error: None,
            migrating: false,
        };
        assert_eq!(
            human(&r),
            "Postroom 1.0.0: not running\n\
             data folder: /var/lib/postroom (3.0 MiB on disk)\n\
             queue: 0 deferred, 0 held, 0 queued\n\
             held: none\n"
        );
    }
}
