//! `postroom backup DIR` and `postroom restore DIR` (issue #12): an online
//! copy of a running embedded installation, and putting one back into an
//! empty data folder with the server stopped. The work (snapshot, copies,
//! checksums, the manifest, deletions held off meanwhile) is
//! `postroom_store::backup`; this file refuses what it must, shows
//! progress as `migrate` does, and says what it did.
//!
//! On PostgreSQL the database is copied by `pg_dump` (custom format; it
//! reads in one snapshot of its own), run by `backup` while no body may be
//! deleted, and loaded by `pg_restore` into an empty database on restore:
//! the dump and the bodies then always match, which a dump taken by hand
//! beside a separate file copy does not promise.

use std::io::IsTerminal;
use std::path::Path;

use postroom_store::backup::{self, Manifest};
use postroom_store::SQLITE_FILE;

use super::migrate::Progress;
use super::status::{plural, size};
use super::{become_data_owner, store_place, wait, CmdResult, Context};
use crate::lock::{DataLock, Role};

/// Runs a PostgreSQL client tool (`pg_dump`, `pg_restore`) with the
/// configured database and password.
fn pg_tool(cfg: &postroom_config::Config, tool: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let url = cfg.store.database.as_deref().unwrap_or_default();
    // A password in the URL goes by the environment, not the command
    // line, which every local user can read in /proc.
    let secret = super::migrate::Secret::of(url);
    let mut cmd = std::process::Command::new(tool);
    cmd.args(args)
        .arg(format!("--dbname={}", secret.url_without_password(url)));
    if let Some(p) = &secret.password {
        cmd.env("PGPASSWORD", super::migrate::percent_decode(p));
    } else if let Some(file) = &cfg.store.password_file {
        // As the server reads it: the file's first line.
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        cmd.env("PGPASSWORD", text.lines().next().unwrap_or_default());
    }
    let out = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("{tool} is not installed: it comes with PostgreSQL's client package (postgresql-client)")
        }
        _ => format!("{tool}: {e}"),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{tool} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn counted(n: Option<u64>, one: &str, many: &str) -> String {
    match n {
        Some(n) => plural(n, one, many),
        None => format!("the {many}"),
    }
}

pub fn backup(ctx: &Context, target: &Path) -> CmdResult {
    let cfg = ctx.config()?;
    let dir = ctx.data_dir_for(&cfg);
    if cfg.store.database.is_some() {
        // Refuses a missing or empty database, and upgrades an older
        // schema as the server would, so the dump is of this version's.
        drop(ctx.store()?);
    } else if !dir.join(SQLITE_FILE).is_file() {
        return Err(ctx.no_store(&format!(
            "{} holds no Postroom store (no {SQLITE_FILE})",
            dir.display()
        )));
    }
    crate::lock::refuse_while_migrating(&dir)?;
    // As the server's user: the lock file it makes in the data folder must
    // stay readable by the server, whose deletions check it.
    become_data_owner(&dir)?;
    let blobs_dir = cfg.store.blobs.clone().unwrap_or_else(|| dir.join("blobs"));
    eprintln!("backing up {} into {}", dir.display(), target.display());
    let mut progress = Progress::new(std::io::stderr().is_terminal(), "bodies");
    let mut show = |stage: &str, done, total| progress.show(stage, done, total);
    let r = if cfg.store.database.is_some() {
        let mut dump = |file: &Path| {
            pg_tool(
                &cfg,
                "pg_dump",
                &["--format=custom".as_ref(), "--file".as_ref(), file.as_os_str()],
            )
            .map_err(postroom_store::StoreError::Backend)
        };
        backup::create_from_dump(
            &dir,
            &blobs_dir,
            target,
            postroom_store::schema::SCHEMA_VERSION,
            &mut dump,
            &mut show,
        )
    } else {
        backup::create(&dir, &blobs_dir, target, &mut show)
    };
    progress.finish();
    let m = r.map_err(|e| format!("backup of {} failed: {e}", dir.display()))?;
    println!(
        "Backed up {}, {} and {} ({}) from {} into {}.",
        counted(m.messages, "message", "messages"),
        counted(m.queued, "queued delivery", "queued deliveries"),
        plural(m.blobs.len() as u64, "message body", "message bodies"),
        size(m.blob_bytes()),
        dir.display(),
        target.display()
    );
    println!(
        "Snapshot taken {} (schema version {}); every file's SHA-256 is in {}.",
        when(m.created),
        m.schema_version,
        target.join(backup::MANIFEST_FILE).display()
    );
    if m.missing_blobs > 0 {
        eprintln!(
            "warning: {} the database names {} missing from {} already (not a fault of the backup; \
             those messages cannot be read, here or restored)",
            plural(m.missing_blobs, "body", "bodies"),
            if m.missing_blobs == 1 { "was" } else { "were" },
            blobs_dir.display()
        );
    }
    Ok(())
}

pub fn restore(ctx: &Context, from: &Path) -> CmdResult {
    let cfg = ctx.config()?;
    // Before anything is made: a backup that is incomplete or newer is
    // refused with the data folder untouched.
    let manifest = Manifest::read(from).map_err(|e| e.to_string())?;
    if manifest.schema_version > postroom_store::schema::SCHEMA_VERSION {
        return Err(format!(
            "{}: the backup has schema version {}, newer than this binary supports ({}): run a newer Postroom",
            from.display(),
            manifest.schema_version,
            postroom_store::schema::SCHEMA_VERSION
        ));
    }
    let dir = ctx.data_dir_for(&cfg);
    if !dir.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // The new folder's name must survive a power cut like its files.
        if let Some(parent) = dir.parent() {
            std::fs::File::open(parent)
                .and_then(|f| f.sync_all())
                .map_err(|e| format!("{}: {e}", parent.display()))?;
        }
    }
    become_data_owner(&dir)?;
    // Refuses while a server (or migrate) runs on the folder, and keeps
    // one from starting on a half-restored store.
    let _owner = DataLock::take(&dir, Role::Restore)?;
    let blobs_dir = cfg.store.blobs.clone().unwrap_or_else(|| dir.join("blobs"));
    if cfg.store.database.is_some() {
        // Only into a database without a Postroom store.
        match wait(postroom_store::Store::open_configured(&store_place(
            &cfg, &dir, false,
        ))) {
            Err(postroom_store::StoreError::NoStore(_)) => {}
            Ok(_) => {
                return Err(
                    "the PostgreSQL database ([store] database) already holds a Postroom store: \
                     restore needs an empty database"
                        .into(),
                )
            }
            Err(e) => return Err(format!("the PostgreSQL store: {e}")),
        }
    }
    eprintln!("restoring {} into {}", from.display(), dir.display());
    let mut progress = Progress::new(std::io::stderr().is_terminal(), "bodies");
    let mut load = |dump: &Path| {
        pg_tool(
            &cfg,
            "pg_restore",
            &[
                "--exit-on-error".as_ref(),
                "--single-transaction".as_ref(),
                "--no-owner".as_ref(),
                dump.as_os_str(),
            ],
        )
        .map_err(postroom_store::StoreError::Backend)
    };
    let load: Option<&mut backup::LoadDump<'_>> = match cfg.store.database {
        Some(_) => Some(&mut load),
        None => None,
    };
    let r = backup::restore(
        from,
        &dir,
        &blobs_dir,
        &[crate::lock::LOCK_FILE],
        load,
        &mut |stage, done, total| progress.show(stage, done, total),
    );
    progress.finish();
    let m = r.map_err(|e| format!("restore into {} refused: {e}", dir.display()))?;
    println!(
        "Restored {}, {} and {} ({}) into {}, all checksums verified.",
        counted(m.messages, "message", "messages"),
        counted(m.queued, "queued delivery", "queued deliveries"),
        plural(m.blobs.len() as u64, "message body", "message bodies"),
        size(m.blob_bytes()),
        dir.display()
    );
    println!(
        "The backup was taken {} by Postroom {} (schema version {}{}).",
        when(m.created),
        m.postroom,
        m.schema_version,
        if m.schema_version < postroom_store::schema::SCHEMA_VERSION {
            "; the server upgrades it when it starts"
        } else {
            ""
        }
    );
    if m.missing_blobs > 0 {
        eprintln!(
            "warning: {} the database names {} already missing when the backup was taken: \
             those messages cannot be read",
            plural(m.missing_blobs, "body", "bodies"),
            if m.missing_blobs == 1 { "was" } else { "were" }
        );
    }
    if let Some(user) = &cfg.server.run_as {
        root_owned_hint(&dir, user);
    }
    Ok(())
}

fn when(secs: u64) -> String {
    postroom_message::date::format_unix(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// Restored as root into a folder root owns: the server, running as
/// `user` (`server.run_as`), could not read it.
fn root_owned_hint(dir: &Path, user: &str) {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && std::fs::metadata(dir).map(|m| m.uid() == 0).unwrap_or(false) {
        println!(
            "The restored files belong to root: `chown -R {user}: {}` before starting the server.",
            dir.display()
        );
    }
}
