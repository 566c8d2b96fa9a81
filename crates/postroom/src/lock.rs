//! The data folder's owner lock: `serve`, `migrate` and `restore` hold an exclusive
//! `flock` on `DATA_DIR/postroom.pid` for as long as they run, with their
//! pid and role written in it, so `migrate` never copies a database a
//! server is still writing (and no server starts on a folder being
//! migrated). The kernel drops the lock when the process ends, however it
//! ends: a crash or SIGKILL leaves no stale lock to clear by hand.
//!
//! (`postroom.lock` beside it is the store's own, held only while a schema
//! is created or upgraded.)

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;

pub const LOCK_FILE: &str = "postroom.pid";

/// Who holds the lock, as written in the file: "PID ROLE".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Migrate,
    /// `postroom restore`: no server may start on a half-restored folder.
    Restore,
}

impl Role {
    fn word(self) -> &'static str {
        match self {
            Role::Server => "serve",
            Role::Migrate => "migrate",
            Role::Restore => "restore",
        }
    }
}

/// Held while the process owns the data folder.
pub struct DataLock {
    _file: File,
}

impl DataLock {
    /// Takes the lock without waiting; refused, naming the holder, when
    /// another process has it.
    pub fn take(dir: &Path, role: Role) -> Result<DataLock, String> {
        let path = dir.join(LOCK_FILE);
        // Not truncated on open: the holder's pid must stay readable to
        // the process that is refused.
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(format!("cannot lock {}: {err}", path.display()));
            }
            return Err(refusal(dir, &mut f));
        }
        let me = format!("{} {}\n", std::process::id(), role.word());
        f.set_len(0)
            .and_then(|()| f.rewind())
            .and_then(|()| f.write_all(me.as_bytes()))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(DataLock { _file: f })
    }
}

/// For the other commands, which run beside a server (they take no lock):
/// refused while `postroom migrate` holds the folder, whose copy would
/// miss a change made to rows it has already copied.
pub fn refuse_while_migrating(dir: &Path) -> Result<(), String> {
    let path = dir.join(LOCK_FILE);
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        // No file: neither a server nor a migration ever ran here.
        Err(_) => return Ok(()),
    };
    // SAFETY: flock on a descriptor we own; a shared lock is refused while
    // anyone holds the exclusive one, and is released when `f` closes.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(());
    }
    match refusal(dir, &mut f) {
        m if m.starts_with("postroom migrate") || m.starts_with("postroom restore") => Err(m),
        // A server: the commands work beside it.
        _ => Ok(()),
    }
}

/// Who holds the data folder's lock (`postroom status`): `None` when
/// nobody does, else the holder's pid (when written yet) and role.
pub fn holder(dir: &Path) -> Option<(Option<u32>, Role)> {
    let mut f = std::fs::File::open(dir.join(LOCK_FILE)).ok()?;
    // SAFETY: flock on a descriptor we own; released when `f` closes.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc == 0 {
        return None;
    }
    let mut text = String::new();
    // 64 bytes: a pid and a word (as `refusal` reads it).
    let _ = (&mut f).take(64).read_to_string(&mut text);
    let mut words = text.split_whitespace();
    let pid = words.next().and_then(|p| p.parse().ok());
    let role = match words.next() {
        Some("migrate") => Role::Migrate,
        Some("restore") => Role::Restore,
        _ => Role::Server,
    };
    Some((pid, role))
}

/// The message for a refused lock: who holds it (the file may still be
/// empty if the holder took it a moment ago).
fn refusal(dir: &Path, f: &mut File) -> String {
    let mut text = String::new();
    // 64 bytes: a pid and a word; a larger file is not ours to read.
    let _ = f.take(64).read_to_string(&mut text);
    let mut words = text.split_whitespace();
    let pid = words
        .next()
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or("unknown");
    match words.next() {
        Some("migrate") => format!(
            "postroom migrate is running on {} (pid {pid}): wait for it to finish",
            dir.display()
        ),
        Some("restore") => format!(
            "postroom restore is running on {} (pid {pid}): wait for it to finish",
            dir.display()
        ),
        _ => format!(
            "a server is running on {} (pid {pid}): stop it first",
            dir.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataLock::take(dir.path(), Role::Server).unwrap();
        // A second open file description: flock treats it as another owner.
        let e = DataLock::take(dir.path(), Role::Migrate).err().unwrap();
        assert_eq!(
            e,
            format!(
                "a server is running on {} (pid {}): stop it first",
                dir.path().display(),
                std::process::id()
            )
        );
        drop(held);
        let m = DataLock::take(dir.path(), Role::Migrate).unwrap();
        let e = DataLock::take(dir.path(), Role::Server).err().unwrap();
        assert!(e.starts_with("postroom migrate is running on"), "{e}");
        assert!(refuse_while_migrating(dir.path()).is_err());
        drop(m);
        assert_eq!(refuse_while_migrating(dir.path()), Ok(()));
        assert_eq!(holder(dir.path()), None);
        let _server = DataLock::take(dir.path(), Role::Server).unwrap();
        assert_eq!(refuse_while_migrating(dir.path()), Ok(()));
        assert_eq!(holder(dir.path()), Some((Some(std::process::id()), Role::Server)));
    }

    #[test]
    fn a_restore_keeps_servers_and_commands_off_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let r = DataLock::take(dir.path(), Role::Restore).unwrap();
        let e = DataLock::take(dir.path(), Role::Server).err().unwrap();
        assert!(e.starts_with("postroom restore is running on"), "{e}");
        assert!(refuse_while_migrating(dir.path()).is_err());
        assert_eq!(
            holder(dir.path()),
            Some((Some(std::process::id()), Role::Restore))
        );
        drop(r);
    }
}
