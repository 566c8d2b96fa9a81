//! `postroom backup DIR` and `postroom restore DIR` (issue #12): an online
//! copy of a running embedded installation, and putting one back into an
//! empty data folder with the server stopped. The work (snapshot, copies,
//! checksums, the manifest, deletions held off meanwhile) is
//! `postroom_store::backup`; this file refuses what it must, shows
//! progress as `migrate` does, and says what it did.
//!
//! On PostgreSQL the database is the database server's to back up
//! (`pg_dump`, which takes its own consistent snapshot); both commands
//! refuse there and say so, rather than copy bodies that a separately
//! taken dump would not match.

use std::io::IsTerminal;
use std::path::Path;

use postroom_store::backup::{self, Manifest};
use postroom_store::SQLITE_FILE;

use super::migrate::Progress;
use super::status::{plural, size};
use super::{become_data_owner, CmdResult, Context};
use crate::lock::{DataLock, Role};

/// What both commands answer when the store is in PostgreSQL.
const POSTGRES_REFUSAL: &str = "the store is in PostgreSQL ([store] database): back up the database \
     with `pg_dump --format=custom --file=postroom.dump DBNAME` (and restore it with `pg_restore`), \
     and the bodies' folder with the file copy you trust, taken after the dump finishes; \
     `postroom backup` copies the embedded installation only";

pub fn backup(ctx: &Context, target: &Path) -> CmdResult {
    let cfg = ctx.config()?;
    if cfg.store.database.is_some() {
        return Err(POSTGRES_REFUSAL.into());
    }
    let dir = ctx.data_dir_for(&cfg);
    if !dir.join(SQLITE_FILE).is_file() {
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
    let r = backup::create(&dir, &blobs_dir, target, &mut |stage, done, total| {
        progress.show(stage, done, total)
    });
    progress.finish();
    let m = r.map_err(|e| format!("backup of {} failed: {e}", dir.display()))?;
    println!(
        "Backed up {}, {} and {} ({}) from {} into {}.",
        plural(m.messages, "message", "messages"),
        plural(m.queued, "queued delivery", "queued deliveries"),
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
    if cfg.store.database.is_some() {
        return Err(POSTGRES_REFUSAL.into());
    }
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
    eprintln!("restoring {} into {}", from.display(), dir.display());
    let mut progress = Progress::new(std::io::stderr().is_terminal(), "bodies");
    let r = backup::restore(
        from,
        &dir,
        &blobs_dir,
        &[crate::lock::LOCK_FILE],
        &mut |stage, done, total| progress.show(stage, done, total),
    );
    progress.finish();
    let m = r.map_err(|e| format!("restore into {} refused: {e}", dir.display()))?;
    println!(
        "Restored {}, {} and {} ({}) into {}, all checksums verified.",
        plural(m.messages, "message", "messages"),
        plural(m.queued, "queued delivery", "queued deliveries"),
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
    postroom_pipeline::headers::rfc5322_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
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
