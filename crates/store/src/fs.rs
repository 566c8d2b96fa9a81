//! The file operations the store's durability depends on, behind a trait so
//! that a test can simulate a power cut: [`SimulatedFs`] forgets every write
//! that was not fsynced (file content) and every directory entry whose
//! directory was not fsynced, as a real disk may.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub trait DurableFs: Send + Sync {
    /// Creates `path` with `data`. With `fsync` the content is durable when
    /// this returns; the name is durable only after [`DurableFs::sync_dir`]
    /// of its directory.
    fn write_new(&self, path: &Path, data: &[u8], fsync: bool) -> io::Result<()>;
    /// Creates a directory (and missing parents); durable after `sync_dir` of
    /// each parent.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The beginning of a file: at least until `enough` says so of what
    /// was read, else all of it (IMAP reads only a message's header for
    /// header-only FETCH items and SEARCH keys).
    fn read_head(&self, path: &Path, enough: &dyn Fn(&[u8]) -> bool) -> io::Result<Vec<u8>> {
        let _ = enough;
        self.read(path)
    }
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries (files and directories) in `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `path` to be written in pieces (a body that arrives in
    /// pieces, an IMAP APPEND); `None` where pieces cannot go to a file as
    /// they come (the simulation): the caller collects them and uses
    /// [`DurableFs::write_new`].
    fn create_new(&self, path: &Path) -> io::Result<Option<std::fs::File>> {
        let _ = path;
        Ok(None)
    }
}

/// The real file system.
#[derive(Debug, Default)]
pub struct RealFs;

impl DurableFs for RealFs {
    fn create_new(&self, path: &Path) -> io::Result<Option<std::fs::File>> {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map(Some)
    }

    fn write_new(&self, path: &Path, data: &[u8], fsync: bool) -> io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        f.write_all(data)?;
        if fsync {
            f.sync_all()?;
        }
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_head(&self, path: &Path, enough: &dyn Fn(&[u8]) -> bool) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let mut f = std::fs::File::open(path)?;
        // Most headers fit in the first 4 KiB; grow by doubling after that.
        let mut buf = vec![0u8; 4096];
        let mut len = 0;
        loop {
            if len == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            let n = match f.read(&mut buf[len..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            len += n;
            if n == 0 || enough(&buf[..len]) {
                buf.truncate(len);
                return Ok(buf);
            }
        }
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    }
}

#[derive(Debug, Clone)]
struct SimFile {
    data: Vec<u8>,
    content_durable: bool,
    name_durable: bool,
}

/// An in-memory file system that models what survives a power cut.
/// Directories and files written through it that were not made durable
/// are gone after [`SimulatedFs::power_cut`].
#[derive(Debug, Default)]
pub struct SimulatedFs {
    state: Mutex<SimState>,
}

#[derive(Debug, Default)]
struct SimState {
    /// After the cut: the machine is off, nothing more gets written.
    dead: bool,
    files: BTreeMap<PathBuf, SimFile>,
    /// Directory -> whether its own entry (in its parent) is durable.
    dirs: BTreeMap<PathBuf, bool>,
}

impl SimulatedFs {
    /// An empty disk on which `root` and its ancestors exist durably (the
    /// data folder an administrator created).
    pub fn new_at(root: &Path) -> Self {
        let fs = Self::default();
        {
            let mut s = fs.lock();
            let mut cur = Some(root);
            while let Some(p) = cur {
                if p.as_os_str().is_empty() {
                    break;
                }
                s.dirs.insert(p.to_path_buf(), true);
                cur = p.parent();
            }
        }
        fs
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The power goes out: everything not made durable is gone.
    pub fn power_cut(&self) {
        let mut s = self.lock();
        // A directory survives only if its entry and all its ancestors'
        // entries that we created are durable.
        let dirs = s.dirs.clone();
        let dir_survives = |d: &Path| -> bool {
            let mut cur = Some(d);
            while let Some(p) = cur {
                if let Some(durable) = dirs.get(p) {
                    if !durable {
                        return false;
                    }
                }
                cur = p.parent();
            }
            true
        };
        s.dirs.retain(|d, _| dir_survives(d));
        s.files
            .retain(|p, f| f.name_durable && f.content_durable && p.parent().is_none_or(dir_survives));
    }

    /// Every later write fails, as on a machine that has lost power.
    pub fn fail_writes(&self) {
        self.lock().dead = true;
    }

    /// The reboot: writes work again.
    pub fn restore(&self) {
        self.lock().dead = false;
    }

    pub fn file_count(&self) -> usize {
        self.lock().files.len()
    }
}

impl DurableFs for SimulatedFs {
    fn write_new(&self, path: &Path, data: &[u8], fsync: bool) -> io::Result<()> {
        let mut s = self.lock();
        if s.dead {
            return Err(io::Error::other("power is off"));
        }
        if s.files.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
        }
        if let Some(parent) = path.parent() {
            if !s.dirs.contains_key(parent) {
                return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
            }
        }
        s.files.insert(
            path.to_path_buf(),
            SimFile {
                data: data.to_vec(),
                content_durable: fsync,
                name_durable: false,
            },
        );
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.dead {
            return Err(io::Error::other("power is off"));
        }
        let mut cur = Some(path);
        while let Some(p) = cur {
            if p.as_os_str().is_empty() || s.dirs.contains_key(p) {
                break;
            }
            s.dirs.insert(p.to_path_buf(), false);
            cur = p.parent();
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.dead {
            return Err(io::Error::other("power is off"));
        }
        for (p, f) in s.files.iter_mut() {
            if p.parent() == Some(dir) {
                f.name_durable = true;
            }
        }
        for (p, durable) in s.dirs.iter_mut() {
            if p.parent() == Some(dir) {
                *durable = true;
            }
        }
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.lock()
            .files
            .get(path)
            .map(|f| f.data.clone())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.lock()
            .files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        if !s.dirs.contains_key(dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        let files = s.files.keys();
        let dirs = s.dirs.keys();
        Ok(files
            .chain(dirs)
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_cut_keeps_only_durable_writes() {
        let root = Path::new("/d");
        let fs = SimulatedFs::new_at(root);
        fs.create_dir_all(&root.join("a")).unwrap();
        fs.sync_dir(root).unwrap();
        fs.write_new(&root.join("a/synced"), b"1", true).unwrap();
        fs.write_new(&root.join("a/unsynced-content"), b"2", false)
            .unwrap();
        fs.sync_dir(&root.join("a")).unwrap();
        fs.write_new(&root.join("a/unsynced-name"), b"3", true).unwrap();
        fs.create_dir_all(&root.join("b")).unwrap();
        fs.write_new(&root.join("b/in-unsynced-dir"), b"4", true).unwrap();
        fs.sync_dir(&root.join("b")).unwrap();
        fs.power_cut();
        assert_eq!(fs.read(&root.join("a/synced")).unwrap(), b"1");
        for gone in ["a/unsynced-content", "a/unsynced-name", "b/in-unsynced-dir"] {
            assert!(fs.read(&root.join(gone)).is_err(), "{gone}");
        }
    }
}
