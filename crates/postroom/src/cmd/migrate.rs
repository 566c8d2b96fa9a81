//! `postroom migrate --to postgres://...`: copies the embedded
//! installation (the SQLite database in the data folder) into PostgreSQL
//! with `postroom_store::migrate::copy_sqlite_to`, which keeps every id
//! clients have seen, resumes an interrupted run and checks the result.
//! This file only refuses what it must, shows progress and prints.
//!
//! Everything that can be refused is refused before anything is written:
//! a running server (the data folder's owner lock), a newer data folder
//! (SQLite's schema version), an unreachable database or a wrong password
//! (the connection), a target with another installation's data (the
//! store's check before the first row).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use postroom_store::migrate::{copy_sqlite_to, MigrationReport};
use postroom_store::{BlobStore, Db, FsBlobStore, Postgres, RealFs};

use super::{become_data_owner, wait, CmdResult, Context};
use crate::lock::{DataLock, Role};

/// A test hook: set to a table's name, the command kills itself (SIGKILL,
/// as an operator's kill -9 or a power cut would end it) right after that
/// table is copied, so the end-to-end tests can resume a real interrupted
/// run without needing an installation big enough to catch mid-copy.
const KILL_AFTER_ENV: &str = "POSTROOM_TEST_MIGRATE_KILL_AFTER";

/// Without a terminal, a progress line every this many rows of a table
/// (and one when it is done): a log of a 10-million-message copy stays
/// about 1,000 lines.
const PLAIN_PROGRESS_EVERY: u64 = 10_000;

pub fn migrate(ctx: &Context, to: &str, password_file: Option<&Path>) -> CmdResult {
    let secret = Secret::of(to);
    // The password must never reach the screen, whatever an error quotes.
    let hide = |s: String| secret.scrub(s);
    let shown_url = secret.url_without_password(to);

    let cfg = ctx.config()?;
    if cfg.store.database.is_some() {
        return Err(
            "the configuration already keeps the store in PostgreSQL ([store] database): \
             migrate copies an embedded installation"
                .into(),
        );
    }
    let dir = ctx.data_dir_for(&cfg);
    let db_path = dir.join("postroom.sqlite");
    if !db_path.is_file() {
        return Err(format!(
            "{}: no embedded installation here (no postroom.sqlite)",
            dir.display()
        ));
    }
    // Absolute: the printed `password_file` line must name the file
    // wherever the server is started from.
    let password_file = password_file
        .map(|p| std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display())))
        .transpose()?;
    become_data_owner(&dir)?;
    let _owner = DataLock::take(&dir, Role::Migrate)?;

    // Opening upgrades an older data folder to this binary's schema (as
    // starting the server would) and refuses a newer one untouched.
    let sqlite = Db::open(&db_path).map_err(|e| format!("{}: {e}", dir.display()))?;
    let blobs_dir = cfg.store.blobs.clone().unwrap_or_else(|| dir.join("blobs"));
    let blobs: Arc<dyn BlobStore> = Arc::new(
        FsBlobStore::new(blobs_dir.clone(), Arc::new(RealFs))
            .map_err(|e| format!("{}: {e}", blobs_dir.display()))?,
    );
    let pg = wait(Postgres::connect(
        to,
        password_file.as_deref(),
        Arc::clone(&blobs),
    ))
    .map_err(|e| match e {
        postroom_store::StoreError::TooNew { found, supported } => hide(format!(
            "{shown_url}: the PostgreSQL database has schema version {found}, newer than this \
             binary supports ({supported}): run a newer Postroom"
        )),
        e => hide(format!("{shown_url}: {e}")),
    })?;

    eprintln!("copying {} to {shown_url}", db_path.display());
    let mut progress = Progress::new(std::io::stderr().is_terminal(), "rows");
    let kill_after = std::env::var(KILL_AFTER_ENV).ok();
    let report = wait(copy_sqlite_to(&sqlite, &pg, |table, done, total| {
        progress.show(table, done, total);
        if done == total && kill_after.as_deref() == Some(table) {
            progress.finish();
            // SAFETY: signalling ourselves; nothing runs after it.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }));
    progress.finish();
    let report = report.map_err(|e| hide(format!("{shown_url}: {e}")))?;
    let missing = missing_bodies(&sqlite, &*blobs, &blobs_dir)?;
    print_report(&report);
    match missing {
        0 => println!(
            "Checked: all {} bodies the rows refer to are in {}.",
            report.blobs,
            blobs_dir.display()
        ),
        n => eprintln!(
            "warning: {n} of the {} bodies the rows refer to are missing from {} (on both back ends: \
             those messages cannot be read; the copy itself is complete)",
            report.blobs,
            blobs_dir.display()
        ),
    }
    print_store_lines(&shown_url, password_file.as_deref(), secret.password.is_some());
    Ok(())
}

/// How many bodies the rows refer to are not in the blob folder. The copy
/// leaves the bodies where they are, so none goes missing by migrating;
/// one missing already is reported rather than found later by a client.
fn missing_bodies(sqlite: &Db, blobs: &dyn BlobStore, dir: &Path) -> Result<usize, String> {
    let referenced = postroom_store::migrate::blob_ids(sqlite).map_err(|e| e.to_string())?;
    // "~" sorts after every id (ids are alphanumeric): every stored body.
    let stored: std::collections::HashSet<String> = blobs
        .ids_before("~")
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .into_iter()
        .collect();
    Ok(referenced.iter().filter(|id| !stored.contains(*id)).count())
}

/// The progress display: on a terminal one line per table (or stage),
/// rewritten in place; otherwise plain lines. `backup` and `restore` show
/// theirs with it too.
pub(super) struct Progress {
    terminal: bool,
    /// What is counted: "rows", "bodies".
    unit: &'static str,
    /// The table whose line is open (terminal: not yet ended by a newline).
    open: Option<String>,
    last_plain: u64,
}

impl Progress {
    pub(super) fn new(terminal: bool, unit: &'static str) -> Progress {
        Progress {
            terminal,
            unit,
            open: None,
            last_plain: 0,
        }
    }

    pub(super) fn show(&mut self, table: &str, done: u64, total: u64) {
        let mut err = std::io::stderr().lock();
        if self.open.as_deref() != Some(table) {
            if self.terminal && self.open.is_some() {
                let _ = writeln!(err);
            }
            self.open = Some(table.to_string());
            self.last_plain = 0;
        }
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let line = format!("  {table:<18} {done:>10} / {total} {} ({pct}%)", self.unit);
        if self.terminal {
            // \x1b[K: clear what a longer earlier line left.
            let _ = write!(err, "\r{line}\x1b[K");
            if done >= total {
                let _ = writeln!(err);
                self.open = None;
            }
        } else if done >= total || done - self.last_plain >= PLAIN_PROGRESS_EVERY {
            let _ = writeln!(err, "{line}");
            self.last_plain = done;
            if done >= total {
                self.open = None;
            }
        }
        let _ = err.flush();
    }

    /// Ends an open terminal line (an error is about to be printed).
    pub(super) fn finish(&mut self) {
        if self.terminal && self.open.take().is_some() {
            eprintln!();
        }
    }
}

fn print_report(report: &MigrationReport) {
    println!("Checked: every table has as many rows in PostgreSQL as in SQLite:");
    for (table, rows) in &report.tables {
        println!("  {table:<18} {rows:>10}");
    }
    println!(
        "Checked: the rows refer to the same {} message bodies in both (they stay in the blobs folder).",
        report.blobs
    );
    println!("Rows copied by this run: {}.", report.copied);
    if !report.usage_corrected.is_empty() {
        println!(
            "The usage of {} mailbox(es) was recounted from their messages.",
            report.usage_corrected.len()
        );
    }
}

fn print_store_lines(url: &str, password_file: Option<&Path>, password_in_url: bool) {
    println!();
    println!("Now put this in the configuration file and start the server:");
    println!();
    println!("[store]");
    println!("database = \"{url}\"");
    match password_file {
        Some(p) => println!("password_file = \"{}\"", PathBuf::from(p).display()),
        None if password_in_url => {
            println!("# the password: in a file only the server's user can read, named here");
            println!("password_file = \"/etc/postroom/database-password\"");
        }
        None => {}
    }
}

/// The password a URL carries (`postgres://user:PASSWORD@host/db`), to
/// keep it out of everything printed.
pub(super) struct Secret {
    pub(super) password: Option<String>,
}

impl Secret {
    pub(super) fn of(url: &str) -> Secret {
        let password = userinfo(url)
            .and_then(|(_, info)| info.split_once(':'))
            .map(|(_, p)| p.to_string())
            .filter(|p| !p.is_empty());
        Secret { password }
    }

    /// The text with the password (as written, and percent-decoded)
    /// replaced.
    fn scrub(&self, mut s: String) -> String {
        if let Some(p) = &self.password {
            for form in [p.clone(), percent_decode(p)] {
                if !form.is_empty() {
                    s = s.replace(&form, "********");
                }
            }
        }
        s
    }

    pub(super) fn url_without_password(&self, url: &str) -> String {
        match (userinfo(url), &self.password) {
            (Some((start, info)), Some(_)) => {
                let user = info.split_once(':').map_or(info, |(u, _)| u);
                format!("{}{user}{}", &url[..start], &url[start + info.len()..])
            }
            _ => url.to_string(),
        }
    }
}

/// Where the user information of a URL starts, and the text of it
/// (between `://` and the last `@` before the path).
fn userinfo(url: &str) -> Option<(usize, &str)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    Some((start, &authority[..at]))
}

pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_kept_out_of_what_is_printed() {
        let url = "postgres://mail:s%40cret@db.example:5432/postroom?sslmode=disable";
        let s = Secret::of(url);
        assert_eq!(
            s.url_without_password(url),
            "postgres://mail@db.example:5432/postroom?sslmode=disable"
        );
        assert_eq!(
            s.scrub("failed for s%40cret and s@cret".into()),
            "failed for ******** and ********"
        );
        let plain = "postgres://mail@db.example/postroom";
        let s = Secret::of(plain);
        assert_eq!(s.password, None);
        assert_eq!(s.url_without_password(plain), plain);
        // An @ in the path or query is not the user information's end.
        assert_eq!(Secret::of("postgres://h/db?x=a:b@c").password, None);
    }

    #[test]
    fn progress_without_a_terminal_is_a_few_plain_lines() {
        let mut p = Progress::new(false, "rows");
        for done in (1000..=25_000).step_by(1000) {
            p.show("messages", done, 25_000);
        }
        assert_eq!((p.open.as_deref(), p.last_plain), (None, 25_000));
    }
}
