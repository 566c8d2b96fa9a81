//! Live reload (SIGHUP, `postroom reload`): the certificates are re-read,
//! the log file reopened, and the configuration file read again. What can
//! change on a running server changes (connection limits, the log level);
//! every other changed key is named as needing a restart, so nothing is
//! silently ignored. A file that does not parse changes nothing.

use std::path::PathBuf;
use std::sync::Arc;

use postroom_config::Config;
use postroom_net::limit::ConnectionLimiter;
use postroom_net::tls::TlsSettings;

use crate::control::ReloadReport;
use crate::logging::LogHandle;

/// The keys a running server takes over (their values are read at each
/// new connection or event).
const LIVE: &[&str] = &[
    "log.level",
    "smtp.max_connections",
    "smtp.max_connections_per_client",
    "submission.max_connections",
    "submission.max_connections_per_client",
    "submission.max_authenticated_connections",
    "submission.max_authenticated_connections_per_client",
    "imap.max_connections",
    "imap.max_connections_per_client",
    "pop3.max_connections",
    "pop3.max_connections_per_client",
];

/// The connection limiters, by protocol.
pub struct Limiters {
    pub smtp: Arc<ConnectionLimiter>,
    pub submission: Arc<ConnectionLimiter>,
    pub submission_authenticated: Option<Arc<ConnectionLimiter>>,
    pub imap: Arc<ConnectionLimiter>,
    pub pop3: Arc<ConnectionLimiter>,
}

pub struct Reloader {
    pub config_path: Option<PathBuf>,
    /// The file as the server started with it: a key is "changed" when it
    /// differs from this, so a restart-needing change is named at every
    /// reload until the restart.
    pub started: toml::Value,
    pub tls: Option<TlsSettings>,
    pub log: LogHandle,
    pub limiters: Limiters,
}

impl Reloader {
    pub fn reload(&self) -> ReloadReport {
        let mut report = ReloadReport::default();
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => report.applied.push("TLS certificates (re-read)".into()),
                Err(e) => report
                    .errors
                    .push(format!("TLS: {e}; the old certificates stay in use")),
            }
        }
        if let Some(f) = &self.log.file {
            match f.reopen() {
                Ok(()) => report.applied.push("log file (reopened)".into()),
                Err(e) => report
                    .errors
                    .push(format!("log file: {e}; writing to the old one")),
            }
        }
        let Some(path) = &self.config_path else {
            return report;
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                report.errors.push(format!("{}: {e}", path.display()));
                return report;
            }
        };
        let cfg = match Config::parse(&text) {
            Ok(c) => c,
            Err(e) => {
                report
                    .errors
                    .push(format!("{}: {e}; nothing changed", path.display()));
                return report;
            }
        };
        let value: toml::Value = match toml::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                report.errors.push(format!("{}: {e}", path.display()));
                return report;
            }
        };
        // Every live setting is set from the file, changed or not (a value
        // changed and changed back must come back too); only the changed
        // ones are reported.
        self.apply(&cfg, &mut report.errors);
        let mut changed = Vec::new();
        changed_keys(&self.started, &value, "", &mut changed);
        for key in changed {
            if LIVE.contains(&key.as_str()) {
                report.applied.push(key);
            } else {
                report.restart_needed.push(key);
            }
        }
        report
    }

    fn apply(&self, cfg: &Config, errors: &mut Vec<String>) {
        let l = &self.limiters;
        l.smtp
            .set_limits(cfg.smtp.max_connections_per_client, cfg.smtp.max_connections);
        l.submission.set_limits(
            cfg.submission.max_connections_per_client,
            cfg.submission.max_connections,
        );
        if let Some(auth) = &l.submission_authenticated {
            auth.set_limits(
                cfg.submission.max_authenticated_connections_per_client,
                cfg.submission.max_authenticated_connections,
            );
        }
        l.imap
            .set_limits(cfg.imap.max_connections_per_client, cfg.imap.max_connections);
        l.pop3
            .set_limits(cfg.pop3.max_connections_per_client, cfg.pop3.max_connections);
        if let Err(e) = self.log.set_level(&cfg.log.level) {
            errors.push(format!("log.level: {e}"));
        }
    }

    /// Runs a reload and writes what it did to the log.
    pub fn reload_and_log(&self, why: &str) -> ReloadReport {
        let r = self.reload();
        tracing::info!(
            trigger = why,
            applied = %r.applied.join(", "),
            restart_needed = %r.restart_needed.join(", "),
            errors = %r.errors.join("; "),
            "reload"
        );
        r
    }
}

/// The dotted keys whose values differ between two TOML documents (a key
/// in one only counts as changed).
fn changed_keys(old: &toml::Value, new: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match (old, new) {
        (toml::Value::Table(a), toml::Value::Table(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                // A table on one side only: its keys, one by one (a new
                // [log] section with a level is `log.level`, which is live).
                let empty = toml::Value::Table(Default::default());
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => changed_keys(x, y, &join(k), out),
                    (Some(x @ toml::Value::Table(_)), None) => changed_keys(x, &empty, &join(k), out),
                    (None, Some(y @ toml::Value::Table(_))) => changed_keys(&empty, y, &join(k), out),
                    _ => out.push(join(k)),
                }
            }
        }
        (a, b) if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(a: &str, b: &str) -> Vec<String> {
        let mut out = Vec::new();
        changed_keys(
            &toml::from_str(a).unwrap(),
            &toml::from_str(b).unwrap(),
            "",
            &mut out,
        );
        out
    }

    #[test]
    fn changed_keys_are_named_by_their_path() {
        assert!(keys("[smtp]\nmax_connections = 5\n", "[smtp]\nmax_connections = 5\n").is_empty());
        assert_eq!(
            keys("[smtp]\nmax_connections = 5\n", "[smtp]\nmax_connections = 6\n"),
            ["smtp.max_connections"]
        );
        assert_eq!(
            keys(
                "[smtp]\nlisten = [\"127.0.0.1:25\"]\n",
                "[smtp]\nlisten = [\"127.0.0.1:26\"]\n[log]\nlevel = \"debug\"\n"
            ),
            ["log.level", "smtp.listen"]
        );
    }
}
