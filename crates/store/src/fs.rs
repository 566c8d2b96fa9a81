//! The file operations the store's durability depends on, behind a trait so
//! that a test can simulate a power cut: [`SimulatedFs`] forgets every write
//! that was not fsynced (file content) and every directory entry whose
//! directory was not fsynced, as a real disk may.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    /// Creates `path` for a file written piece by piece (a message body as
    /// it arrives). Dropped without [`TempFile::persist`], it is removed.
    fn create_temp(&self, path: &Path) -> io::Result<Box<dyn TempFile>>;
}

/// A file being written in pieces; it becomes a durable file under another
/// name with [`TempFile::persist`].
pub trait TempFile: Send {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()>;
    /// Bytes written so far.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Up to `max` bytes from the beginning: at least until `enough` says
    /// so of what was read, else all of them.
    fn read_head(&self, max: usize, enough: &dyn Fn(&[u8]) -> bool) -> io::Result<Vec<u8>>;
    /// Everything written.
    fn read_all(&self) -> io::Result<Vec<u8>>;
    /// Fsyncs the content, then renames the file to `path`, which must not
    /// exist; the name is durable after [`DurableFs::sync_dir`] of its
    /// directory (as with [`DurableFs::write_new`]).
    fn persist(self: Box<Self>, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default)]
pub struct RealFs;

impl DurableFs for RealFs {
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

    fn create_temp(&self, path: &Path) -> io::Result<Box<dyn TempFile>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Box::new(RealTempFile {
            file,
            path: Some(path.to_path_buf()),
            len: 0,
        }))
    }
}

/// A [`TempFile`] on disk; removed when dropped unless persisted.
struct RealTempFile {
    file: std::fs::File,
    /// `None` once persisted.
    path: Option<PathBuf>,
    len: u64,
}

impl TempFile for RealTempFile {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.len += data.len() as u64;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn read_head(&self, max: usize, enough: &dyn Fn(&[u8]) -> bool) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let end = self.len.min(max as u64) as usize;
        let mut buf = Vec::new();
        // Most headers fit in the first 4 KiB; grow by doubling after that.
        let mut want = 4096.min(end);
        loop {
            let from = buf.len();
            buf.resize(want, 0);
            self.file.read_exact_at(&mut buf[from..], from as u64)?;
            if want == end || enough(&buf) {
                return Ok(buf);
            }
            want = (want * 2).min(end);
        }
    }

    fn read_all(&self) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let len = usize::try_from(self.len).map_err(|_| io::Error::other("file too large"))?;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    fn persist(mut self: Box<Self>, path: &Path) -> io::Result<()> {
        self.file.sync_all()?;
        let Some(from) = self.path.as_ref() else {
            return Err(io::Error::other("already persisted"));
        };
        // rename(2) would replace an existing blob silently; a hard link
        // fails on one, as write_new's create_new does.
        std::fs::hard_link(from, path)?;
        // The link is the file now; the spool name goes (if removing it
        // fails, the spool cleanup at start-up gets it).
        let _ = std::fs::remove_file(from);
        self.path = None;
        Ok(())
    }
}

impl Drop for RealTempFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
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
    state: Arc<Mutex<SimState>>,
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
        lock_state(&self.state)
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

fn lock_state(state: &Mutex<SimState>) -> std::sync::MutexGuard<'_, SimState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimState {
    fn insert_new(&mut self, path: &Path, data: Vec<u8>, fsync: bool) -> io::Result<()> {
        if self.dead {
            return Err(io::Error::other("power is off"));
        }
        if self.files.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
        }
        if let Some(parent) = path.parent() {
            if !self.dirs.contains_key(parent) {
                return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
            }
        }
        self.files.insert(
            path.to_path_buf(),
            SimFile {
                data,
                content_durable: fsync,
                name_durable: false,
            },
        );
        Ok(())
    }
}

/// A [`TempFile`] of the simulation: its content lives in memory until it
/// is persisted (a power cut before that loses it, as it would on disk).
struct SimTempFile {
    state: Arc<Mutex<SimState>>,
    data: Vec<u8>,
}

impl TempFile for SimTempFile {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if lock_state(&self.state).dead {
            return Err(io::Error::other("power is off"));
        }
        self.data.extend_from_slice(data);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_head(&self, max: usize, _enough: &dyn Fn(&[u8]) -> bool) -> io::Result<Vec<u8>> {
        Ok(self.data[..self.data.len().min(max)].to_vec())
    }

    fn read_all(&self) -> io::Result<Vec<u8>> {
        Ok(self.data.clone())
    }

    fn persist(self: Box<Self>, path: &Path) -> io::Result<()> {
        let SimTempFile { state, data } = *self;
        let mut s = lock_state(&state);
        s.insert_new(path, data, true)
    }
}

impl DurableFs for SimulatedFs {
    fn write_new(&self, path: &Path, data: &[u8], fsync: bool) -> io::Result<()> {
        self.lock().insert_new(path, data.to_vec(), fsync)
    }

    fn create_temp(&self, path: &Path) -> io::Result<Box<dyn TempFile>> {
        let s = self.lock();
        if s.dead {
            return Err(io::Error::other("power is off"));
        }
        if let Some(parent) = path.parent() {
            if !s.dirs.contains_key(parent) {
                return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
            }
        }
        Ok(Box::new(SimTempFile {
            state: Arc::clone(&self.state),
            data: Vec::new(),
        }))
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

    #[test]
    fn a_temp_file_is_persisted_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let fs = RealFs;
        let mut t = fs.create_temp(&dir.path().join("t1")).unwrap();
        t.write_all(b"Subject: a\r\n\r\n").unwrap();
        t.write_all(&[b'x'; 10_000]).unwrap();
        assert_eq!(t.len(), 10_014);
        let head = t
            .read_head(1 << 20, &|b: &[u8]| b.windows(4).any(|w| w == b"\r\n\r\n"))
            .unwrap();
        assert!(head.starts_with(b"Subject: a\r\n\r\n") && head.len() < 10_014);
        assert_eq!(t.read_head(100, &|_: &[u8]| false).unwrap().len(), 100);
        assert_eq!(t.read_all().unwrap().len(), 10_014);
        t.persist(&dir.path().join("final")).unwrap();
        assert_eq!(fs.read(&dir.path().join("final")).unwrap().len(), 10_014);
        assert!(!dir.path().join("t1").exists());
        // Never over an existing file.
        let t = fs.create_temp(&dir.path().join("t2")).unwrap();
        assert!(t.persist(&dir.path().join("final")).is_err());
        // Dropped: gone.
        let mut t = fs.create_temp(&dir.path().join("t3")).unwrap();
        t.write_all(b"x").unwrap();
        drop(t);
        assert_eq!(fs.list_dir(dir.path()).unwrap(), ["final"]);
    }

    #[test]
    fn a_simulated_temp_file_is_durable_only_once_persisted() {
        let root = Path::new("/d");
        let fs = SimulatedFs::new_at(root);
        let mut t = fs.create_temp(&root.join("spool")).unwrap();
        t.write_all(b"body").unwrap();
        let mut lost = fs.create_temp(&root.join("spool2")).unwrap();
        lost.write_all(b"lost").unwrap();
        t.persist(&root.join("blob")).unwrap();
        fs.sync_dir(root).unwrap();
        fs.power_cut();
        assert_eq!(fs.read(&root.join("blob")).unwrap(), b"body");
        assert_eq!(fs.file_count(), 1);
    }
}
