//! Online backup and restore (issue #12): `postroom backup DIR` copies a
//! running server's database and bodies, `postroom restore DIR` puts them
//! into an empty data folder. This describes the embedded database; for
//! PostgreSQL see [`create_from_dump`].
//!
//! The database is copied with `VACUUM INTO`, which reads it in one read
//! transaction: a consistent snapshot taken beside the server's commits
//! (WAL readers never block the writer). The bodies are files the rows
//! name; they are copied after the snapshot, so none of those the snapshot
//! names may be deleted in between. Every deleter (the purge thread after
//! an expunge, a removed mailbox or a finished queue entry, and the sweep;
//! in the server and in CLI commands alike) goes through [`DeletionGate`]:
//! it deletes only while holding a shared `flock` on `DATA_DIR/backup.lock`,
//! which the backup holds exclusively from before its snapshot to after
//! its last copy. Deferring is chosen over copying the blob list first and
//! tolerating what vanished: a body deleted between the snapshot and its
//! copy would be a message in the restored store without its content, and
//! a deferred deletion costs only disk space until the backup ends (the
//! purge thread retries every 2 s; a process that ends meanwhile leaves
//! its bodies to the sweep).
//!
//! Why this order is enough: a body is deleted only after the commit that
//! left no row naming it, and no later commit can name it again (rows
//! are copied from rows, and its id is never reused). So a body deleted
//! before the backup took its lock is not named by the snapshot taken
//! after it; one released after that waits.
//!
//! The backup folder: `postroom.sqlite`, `blobs/<shard>/<id>` (as in the
//! data folder) and `postroom-backup.manifest`, written last (fsynced and
//! renamed into place), so a folder without it is an interrupted backup.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use crate::{schema, Result, StoreError, SQLITE_FILE};

/// The file every deleter of bodies holds shared, and a backup exclusive.
pub const BACKUP_LOCK_FILE: &str = "backup.lock";
/// The database of a PostgreSQL store in a backup: `pg_dump`'s custom
/// format, loaded again with `pg_restore`.
pub const PG_DUMP_FILE: &str = "postroom.pgdump";
/// Written last: its presence marks a complete backup.
pub const MANIFEST_FILE: &str = "postroom-backup.manifest";
/// Written while the manifest is being made, renamed to [`MANIFEST_FILE`].
const MANIFEST_TMP: &str = "postroom-backup.manifest.partial";
/// The manifest's own format version (its first line).
pub const FORMAT_VERSION: u32 = 1;
/// The first line of a manifest.
const MAGIC: &str = "postroom-backup";
/// The pieces a file is read in while copied and hashed: 256 KiB keeps a
/// copy's memory small whatever the message size.
const COPY_CHUNK: usize = 256 * 1024;
/// The longest manifest line read back (an id, a size and a hex digest
/// take about 110 bytes): a damaged manifest cannot make restore read a
/// gigabyte-long "line" into memory.
const MAX_MANIFEST_LINE: usize = 4096;

/// The right to delete bodies: held (shared) while deleting, absent while
/// a backup runs. Dropping it releases the lock.
pub struct DeletionGate {
    _file: Option<File>,
}

impl DeletionGate {
    /// Whether bodies may be deleted now: `Some` (keep it while deleting)
    /// unless a backup of `data_dir` is running.
    pub fn open(data_dir: &Path) -> Option<DeletionGate> {
        let path = data_dir.join(BACKUP_LOCK_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            // No backup ever ran here (it makes the file before it locks
            // it), or a store without a data folder (tests).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(DeletionGate { _file: None }),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot check for a running backup; deleting no bodies now");
                return None;
            }
        };
        // SAFETY: flock on a descriptor we own; released when it closes.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        if rc == 0 {
            Some(DeletionGate { _file: Some(file) })
        } else {
            None
        }
    }
}

/// Held by a backup: no body is deleted while it lives.
pub struct BackupHold {
    _file: File,
}

impl BackupHold {
    /// Takes the exclusive lock, waiting for deletions under way (a purge
    /// batch, a sweep chunk) and for another backup to end.
    pub fn take(data_dir: &Path) -> Result<BackupHold> {
        let path = data_dir.join(BACKUP_LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)?;
        // SAFETY: flock on a descriptor we own; blocks until it is ours.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(io::Error::last_os_error().into());
        }
        Ok(BackupHold { _file: file })
    }
}

/// One file in a backup, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// What a backup holds: its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub format: u32,
    /// The Postroom version that wrote it.
    pub postroom: String,
    pub schema_version: i64,
    /// Seconds since the epoch when the snapshot was taken.
    pub created: u64,
    /// [`SQLITE_FILE`], or [`PG_DUMP_FILE`] for a PostgreSQL store.
    pub database_file: String,
    /// Rows in the snapshot; unknown (`None`) in a `pg_dump`.
    pub messages: Option<u64>,
    pub queued: Option<u64>,
    /// Bodies the rows named that were not in the data folder when the
    /// backup ran (missing there already; restored without them).
    pub missing_blobs: u64,
    pub database: FileEntry,
    /// Per body id.
    pub blobs: BTreeMap<String, FileEntry>,
}

impl Manifest {
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.values().map(|e| e.size).sum()
    }

    fn render(&self) -> String {
        let mut s = format!("{MAGIC} {}\n", self.format);
        s.push_str(&format!("postroom {}\n", self.postroom));
        s.push_str(&format!("schema-version {}\n", self.schema_version));
        s.push_str(&format!("created {}\n", self.created));
        let count = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
        s.push_str(&format!("messages {}\n", count(self.messages)));
        s.push_str(&format!("queued {}\n", count(self.queued)));
        s.push_str(&format!("missing-blobs {}\n", self.missing_blobs));
        s.push_str(&format!("blob-count {}\n", self.blobs.len()));
        s.push_str(&format!("blob-bytes {}\n", self.blob_bytes()));
        s.push_str(&format!(
            "database {} {} {}\n",
            self.database_file, self.database.size, self.database.sha256
        ));
        for (id, e) in &self.blobs {
            s.push_str(&format!("blob {id} {} {}\n", e.size, e.sha256));
        }
        s.push_str("end\n");
        s
    }

    fn parse(text: &str) -> std::result::Result<Manifest, String> {
        let mut lines = text.lines();
        let first = lines.next().unwrap_or_default();
        let format = first
            .strip_prefix(MAGIC)
            .map(str::trim)
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or("not a Postroom backup manifest")?;
        if format > FORMAT_VERSION {
            return Err(format!(
                "backup format {format} is newer than this binary reads ({FORMAT_VERSION}): run a newer Postroom"
            ));
        }
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        let mut database = None;
        let mut database_file = String::new();
        let mut blobs = BTreeMap::new();
        let mut ended = false;
        let entry = |size: Option<&str>, sum: Option<&str>| -> Option<FileEntry> {
            let size = size?.parse().ok()?;
            let sum = sum?;
            (sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit())).then(|| FileEntry {
                size,
                sha256: sum.to_ascii_lowercase(),
            })
        };
        for line in lines {
            if ended {
                return Err("text after the manifest's end".into());
            }
            if line.len() > MAX_MANIFEST_LINE {
                return Err("a manifest line is too long".into());
            }
            let mut w = line.split(' ');
            match w.next() {
                Some("end") => ended = true,
                Some("database") => {
                    match w.next() {
                        Some(f @ (SQLITE_FILE | PG_DUMP_FILE)) => database_file = f.to_string(),
                        _ => return Err("the manifest names another database file".into()),
                    }
                    database = Some(entry(w.next(), w.next()).ok_or("a bad database line")?);
                }
                Some("blob") => {
                    let id = w
                        .next()
                        .filter(|id| crate::blob::valid_id(id))
                        .ok_or("a bad blob id")?;
                    let e = entry(w.next(), w.next()).ok_or_else(|| format!("a bad line for blob {id}"))?;
                    blobs.insert(id.to_string(), e);
                }
                Some(key) => {
                    fields.insert(key, line[key.len()..].trim());
                }
                None => {}
            }
        }
        if !ended {
            return Err("the manifest is cut short".into());
        }
        let num = |k: &str| -> std::result::Result<u64, String> {
            fields
                .get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("the manifest has no valid `{k}`"))
        };
        let count = |k: &str| -> std::result::Result<Option<u64>, String> {
            if fields.get(k) == Some(&"-") {
                Ok(None)
            } else {
                num(k).map(Some)
            }
        };
        let m = Manifest {
            format,
            postroom: fields.get("postroom").unwrap_or(&"").to_string(),
            schema_version: num("schema-version")? as i64,
            created: num("created")?,
            database_file,
            messages: count("messages")?,
            queued: count("queued")?,
            missing_blobs: num("missing-blobs")?,
            database: database.ok_or("the manifest names no database")?,
            blobs,
        };
        if num("blob-count")? != m.blobs.len() as u64 || num("blob-bytes")? != m.blob_bytes() {
            return Err("the manifest's totals do not match its list of bodies".into());
        }
        Ok(m)
    }

    /// Reads the manifest of the backup in `dir`; a folder without one is
    /// an interrupted backup.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Invalid(format!(
                    "{}: not a complete backup (no {MANIFEST_FILE}: the backup was interrupted, or this is not a backup folder)",
                    dir.display()
                )))
            }
            Err(e) => return Err(StoreError::Invalid(format!("{}: {e}", path.display()))),
        };
        Manifest::parse(&text).map_err(|e| StoreError::Invalid(format!("{}: {e}", path.display())))
    }
}

/// Loads a backup's `pg_dump` into the configured, empty database.
pub type LoadDump<'a> = dyn FnMut(&Path) -> Result<()> + 'a;

/// The stage a progress callback is told about, with done and total.
pub const STAGE_BODIES: &str = "copying";

/// `dir` must be missing or an empty folder; made (or left) private.
fn prepare_empty_dir(dir: &Path, allowed: &[&str]) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let name = e?.file_name();
                if !allowed.iter().any(|a| name == *a) {
                    return Err(StoreError::Invalid(format!(
                        "{} is not empty (it holds {}): name a new or empty folder",
                        dir.display(),
                        name.to_string_lossy()
                    )));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        Err(e) => return Err(StoreError::Invalid(format!("{}: {e}", dir.display()))),
    }
    // Mail, password hashes and keys: the owner alone may read them.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Copies `from` to a new file `to` (0600), fsyncing it; returns its size
/// and SHA-256.
fn copy_hashed(from: &Path, to: &Path) -> io::Result<FileEntry> {
    let mut src = File::open(from)?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut size = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        size += n as u64;
    }
    dst.sync_all()?;
    Ok(FileEntry {
        size,
        sha256: hex(&hasher.finalize()),
    })
}

/// The SHA-256 of a file, read in pieces.
fn hash_file(path: &Path) -> io::Result<FileEntry> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut size = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(FileEntry {
        size,
        sha256: hex(&hasher.finalize()),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a body lives under a `blobs` folder (as [`crate::FsBlobStore`]
/// keeps it).
fn blob_path(blobs: &Path, id: &str) -> Option<(PathBuf, PathBuf)> {
    if !crate::blob::valid_id(id) {
        return None;
    }
    let shard = blobs.join(&id[..crate::blob::SHARD_CHARS]);
    Some((shard.join(id), shard))
}

/// Copies the bodies `ids` (sorted, so each shard's come together) from
/// `from` to `to`, fsyncing files and folders; returns what was copied
/// and how many were missing from `from`.
fn copy_blobs(
    ids: &[String],
    from: &Path,
    to: &Path,
    expect: Option<&BTreeMap<String, FileEntry>>,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<(BTreeMap<String, FileEntry>, u64)> {
    std::fs::create_dir_all(to)?;
    let mut copied = BTreeMap::new();
    let mut missing = 0u64;
    let mut open_shard: Option<PathBuf> = None;
    let total = ids.len() as u64;
    progress(STAGE_BODIES, 0, total);
    for (i, id) in ids.iter().enumerate() {
        let ((src, _), (dst, shard)) = match (blob_path(from, id), blob_path(to, id)) {
            (Some(s), Some(d)) => (s, d),
            _ => return Err(StoreError::Invalid(format!("a bad body id: {id}"))),
        };
        if open_shard.as_ref() != Some(&shard) {
            if let Some(done) = open_shard.take() {
                sync_dir(&done)?;
            }
            std::fs::create_dir_all(&shard)?;
            open_shard = Some(shard);
        }
        match copy_hashed(&src, &dst) {
            Ok(e) => {
                if let Some(want) = expect.and_then(|m| m.get(id)) {
                    if *want != e {
                        return Err(StoreError::Invalid(format!(
                            "body {id} is damaged in the backup: its checksum or size differs from the manifest's"
                        )));
                    }
                }
                copied.insert(id.clone(), e);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && expect.is_none() => {
                tracing::warn!(blob = %id, "a body the database names is missing from the data folder; backed up without it");
                missing += 1;
            }
            Err(e) => return Err(StoreError::Invalid(format!("body {id}: {e}"))),
        }
        progress(STAGE_BODIES, i as u64 + 1, total);
    }
    if let Some(done) = open_shard {
        sync_dir(&done)?;
    }
    sync_dir(to)?;
    Ok((copied, missing))
}

/// Makes a backup of the embedded installation in `data_dir` (bodies in
/// `blobs_dir`) into `target`, which must be missing or empty. Runs beside
/// a running server.
pub fn create(
    data_dir: &Path,
    blobs_dir: &Path,
    target: &Path,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Manifest> {
    let live = data_dir.join(SQLITE_FILE);
    if !live.is_file() {
        return Err(StoreError::NoStore(format!(
            "{} holds no Postroom store (no {SQLITE_FILE})",
            data_dir.display()
        )));
    }
    prepare_empty_dir(target, &[])?;
    let _hold = BackupHold::take(data_dir)?;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let snapshot = target.join(SQLITE_FILE);
    {
        // Read-write without create: a read-only connection could not
        // open a WAL database whose -shm it may not write.
        let conn = Connection::open_with_flags(
            &live,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let found = schema::version(&conn)?;
        if found > schema::SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found,
                supported: schema::SCHEMA_VERSION,
            });
        }
        conn.execute("VACUUM INTO ?1", [snapshot.to_string_lossy()])?;
    }
    File::open(&snapshot)?.sync_all()?;
    std::fs::set_permissions(&snapshot, std::fs::Permissions::from_mode(0o600))?;
    let (schema_version, messages, queued, ids) = read_snapshot(&snapshot)?;
    let database = hash_file(&snapshot)?;
    let snapshot = Snapshot {
        created,
        database_file: SQLITE_FILE,
        database,
        schema_version,
        messages: Some(messages),
        queued: Some(queued),
    };
    finish(blobs_dir, target, snapshot, &ids, progress)
}

/// What a backup took of the database.
struct Snapshot {
    created: u64,
    database_file: &'static str,
    database: FileEntry,
    schema_version: i64,
    messages: Option<u64>,
    queued: Option<u64>,
}

/// Copies the bodies `ids` and writes the manifest, last. The caller
/// still holds the [`BackupHold`].
fn finish(
    blobs_dir: &Path,
    target: &Path,
    snap: Snapshot,
    ids: &[String],
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Manifest> {
    let (blobs, missing_blobs) = copy_blobs(ids, blobs_dir, &target.join("blobs"), None, progress)?;
    let manifest = Manifest {
        format: FORMAT_VERSION,
        postroom: env!("CARGO_PKG_VERSION").to_string(),
        schema_version: snap.schema_version,
        created: snap.created,
        database_file: snap.database_file.to_string(),
        messages: snap.messages,
        queued: snap.queued,
        missing_blobs,
        database: snap.database,
        blobs,
    };
    let tmp = target.join(MANIFEST_TMP);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(manifest.render().as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, target.join(MANIFEST_FILE))?;
    sync_dir(target)?;
    Ok(manifest)
}

/// A backup of a store whose database is in PostgreSQL: `dump` writes the
/// database to the path it is given (the CLI runs `pg_dump`, which reads
/// it in one snapshot of its own) while no body is deleted; then every
/// body in the folder is copied. A body the dump names was put before the
/// dump's snapshot and cannot have been deleted since, so it is there;
/// bodies delivered after the dump are copied too, and are harmless.
pub fn create_from_dump(
    data_dir: &Path,
    blobs_dir: &Path,
    target: &Path,
    schema_version: i64,
    dump: &mut dyn FnMut(&Path) -> Result<()>,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Manifest> {
    prepare_empty_dir(target, &[])?;
    let _hold = BackupHold::take(data_dir)?;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let file = target.join(PG_DUMP_FILE);
    dump(&file)?;
    File::open(&file)?.sync_all()?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
    let ids = list_bodies(blobs_dir)?;
    let snapshot = Snapshot {
        created,
        database_file: PG_DUMP_FILE,
        database: hash_file(&file)?,
        schema_version,
        messages: None,
        queued: None,
    };
    finish(blobs_dir, target, snapshot, &ids, progress)
}

/// Every body in a `blobs` folder, sorted (spool files are not bodies).
fn list_bodies(blobs_dir: &Path) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let shards = match std::fs::read_dir(blobs_dir) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(e.into()),
    };
    for shard in shards {
        let shard = shard?;
        let name = shard.file_name().to_string_lossy().into_owned();
        if name.len() != crate::blob::SHARD_CHARS || !shard.file_type()?.is_dir() {
            continue;
        }
        for e in std::fs::read_dir(shard.path())? {
            let id = e?.file_name().to_string_lossy().into_owned();
            if crate::blob::valid_id(&id) && id.starts_with(&name) {
                ids.push(id);
            }
        }
    }
    ids.sort();
    Ok(ids)
}

/// The schema version, row counts and body ids of a database snapshot.
fn read_snapshot(path: &Path) -> Result<(i64, u64, u64, Vec<String>)> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let version = schema::version(&conn)?;
    let messages: i64 = conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
    let queued: i64 = conn.query_row("SELECT count(*) FROM outbound", [], |r| r.get(0))?;
    let mut st =
        conn.prepare("SELECT blob_id FROM messages UNION SELECT blob_id FROM outbound ORDER BY 1")?;
    let ids = st
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok((version, messages as u64, queued as u64, ids))
}

/// Checks the backup in `from` (complete, not newer than this binary, every
/// checksum) and copies it into `data_dir` (bodies into `blobs_dir`), both
/// missing or empty (`data_dir` may hold only `allowed`, e.g. the lock the
/// caller holds). The server must be stopped: the caller holds the data
/// folder's lock. On failure what was restored is removed again.
///
/// `load` is `Some` when the store is configured in PostgreSQL: it loads
/// the backup's `pg_dump` (the CLI runs `pg_restore` into the empty
/// database), after every checksum has been verified and the bodies are
/// in place. A backup of the other kind of store is refused.
pub fn restore(
    from: &Path,
    data_dir: &Path,
    blobs_dir: &Path,
    allowed: &[&str],
    load: Option<&mut LoadDump<'_>>,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Manifest> {
    let manifest = Manifest::read(from)?;
    match (manifest.database_file.as_str(), load.is_some()) {
        (PG_DUMP_FILE, false) => {
            return Err(StoreError::Invalid(format!(
            "{}: a backup of a PostgreSQL store: restore it with [store] database naming an empty database",
            from.display()
        )))
        }
        (SQLITE_FILE, true) => {
            return Err(StoreError::Invalid(format!(
            "{}: a backup of an embedded store: restore it without [store] database, then `postroom migrate`",
            from.display()
        )))
        }
        _ => {}
    }
    if manifest.schema_version > schema::SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found: manifest.schema_version,
            supported: schema::SCHEMA_VERSION,
        });
    }
    prepare_empty_dir(data_dir, allowed)?;
    let blobs_existed = blobs_dir.exists();
    if blobs_existed && std::fs::read_dir(blobs_dir)?.next().is_some() {
        return Err(StoreError::Invalid(format!(
            "{} is not empty: restore needs an empty folder for the bodies",
            blobs_dir.display()
        )));
    }
    let r = match load {
        None => restore_files(from, data_dir, blobs_dir, &manifest, progress),
        Some(load) => restore_dump(from, blobs_dir, &manifest, load, progress),
    };
    if r.is_err() {
        // The folders were empty: leave them so, and the restore can run
        // again once the backup is mended. A bodies' folder that was
        // there (`[store] blobs`, perhaps a mount point) stays, emptied.
        if blobs_existed {
            if let Ok(entries) = std::fs::read_dir(blobs_dir) {
                for e in entries.flatten() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(blobs_dir);
        }
        let _ = std::fs::remove_file(data_dir.join(SQLITE_FILE));
        let _ = std::fs::remove_file(data_dir.join(format!("{SQLITE_FILE}.partial")));
    }
    r.map(|()| manifest)
}

/// A PostgreSQL store's backup: the dump's checksum, the bodies, then the
/// dump loaded.
fn restore_dump(
    from: &Path,
    blobs_dir: &Path,
    manifest: &Manifest,
    load: &mut dyn FnMut(&Path) -> Result<()>,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<()> {
    let dump = from.join(PG_DUMP_FILE);
    let found = hash_file(&dump).map_err(|e| StoreError::Invalid(format!("{}: {e}", dump.display())))?;
    if found != manifest.database {
        return Err(StoreError::Invalid(format!(
            "{}: the database dump is damaged: its checksum or size differs from the manifest's",
            from.display()
        )));
    }
    let ids: Vec<String> = manifest.blobs.keys().cloned().collect();
    copy_blobs(
        &ids,
        &from.join("blobs"),
        blobs_dir,
        Some(&manifest.blobs),
        progress,
    )?;
    if let Some(parent) = blobs_dir.parent() {
        sync_dir(parent)?;
    }
    load(&dump)
}

fn restore_files(
    from: &Path,
    data_dir: &Path,
    blobs_dir: &Path,
    manifest: &Manifest,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<()> {
    // The database under a temporary name until every body is in place,
    // so an interrupted restore leaves no store that looks whole.
    let partial = data_dir.join(format!("{SQLITE_FILE}.partial"));
    let db = copy_hashed(&from.join(SQLITE_FILE), &partial)
        .map_err(|e| StoreError::Invalid(format!("{}: {e}", from.join(SQLITE_FILE).display())))?;
    if db != manifest.database {
        return Err(StoreError::Invalid(format!(
            "{}: the database is damaged: its checksum or size differs from the manifest's",
            from.display()
        )));
    }
    let ids: Vec<String> = manifest.blobs.keys().cloned().collect();
    copy_blobs(
        &ids,
        &from.join("blobs"),
        blobs_dir,
        Some(&manifest.blobs),
        progress,
    )?;
    if let Some(parent) = blobs_dir.parent() {
        sync_dir(parent)?;
    }
    std::fs::rename(&partial, data_dir.join(SQLITE_FILE))?;
    sync_dir(data_dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let e = |c: char| FileEntry {
            size: 12,
            sha256: std::iter::repeat_n(c, 64).collect(),
        };
        Manifest {
            format: FORMAT_VERSION,
            postroom: "0.1.0".into(),
            schema_version: 9,
            created: 1_800_000_000,
            database_file: SQLITE_FILE.into(),
            messages: Some(3),
            queued: Some(1),
            missing_blobs: 0,
            database: e('a'),
            blobs: [
                ("20261208ab1".to_string(), e('b')),
                ("20261208ab2".to_string(), e('c')),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn a_manifest_reads_back_as_written() {
        let m = sample();
        assert_eq!(Manifest::parse(&m.render()), Ok(m));
    }

    #[test]
    fn a_dump_manifest_reads_back_with_unknown_counts() {
        let m = Manifest {
            database_file: PG_DUMP_FILE.into(),
            messages: None,
            queued: None,
            ..sample()
        };
        assert!(m.render().contains("messages -\n"));
        assert_eq!(Manifest::parse(&m.render()), Ok(m));
    }

    #[test]
    fn a_cut_or_altered_manifest_is_refused() {
        let text = sample().render();
        // Cut anywhere before its end line: refused, never half-read.
        for cut in [0, 10, text.len() / 2, text.len() - 4] {
            assert!(Manifest::parse(&text[..cut]).is_err(), "cut at {cut}");
        }
        // A body left out of the list: the totals no longer match.
        let dropped: String = text
            .lines()
            .filter(|l| !l.contains("ab2"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(Manifest::parse(&dropped).unwrap_err().contains("totals"));
        let newer = text.replacen("postroom-backup 1", "postroom-backup 99", 1);
        assert!(Manifest::parse(&newer).unwrap_err().contains("newer"));
        let bad_id = text.replace("20261208ab1", "../../etc/x");
        assert!(Manifest::parse(&bad_id).is_err());
    }

    #[test]
    fn deletions_wait_while_a_backup_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        assert!(DeletionGate::open(dir.path()).is_some());
        let hold = BackupHold::take(dir.path()).unwrap();
        assert!(DeletionGate::open(dir.path()).is_none());
        drop(hold);
        let gate = DeletionGate::open(dir.path());
        assert!(gate.is_some());
        // Deleters share the lock with each other.
        assert!(DeletionGate::open(dir.path()).is_some());
    }

    #[test]
    fn a_target_that_is_not_empty_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), b"x").unwrap();
        let e = prepare_empty_dir(dir.path(), &[]).unwrap_err().to_string();
        assert!(e.contains("is not empty"), "{e}");
        let fresh = dir.path().join("new");
        prepare_empty_dir(&fresh, &[]).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
