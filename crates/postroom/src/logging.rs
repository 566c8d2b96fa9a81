//! Where the log goes and how it looks (`[log]`): text lines or JSON
//! objects, on stderr, in systemd's journal, or appended to a file that
//! SIGHUP reopens (logrotate moves the file, then signals).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use postroom_config::LogConfig;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// A log file that can be reopened under the same name.
#[derive(Clone)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl LogFile {
    fn open(path: PathBuf) -> io::Result<LogFile> {
        let file = Self::append(&path)?;
        Ok(LogFile {
            path,
            file: Arc::new(Mutex::new(file)),
        })
    }

    fn append(path: &std::path::Path) -> io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        // 0640 at most: lines name addresses and client IPs.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
    }

    /// After logrotate: later lines go to a new file of the same name.
    pub fn reopen(&self) -> io::Result<()> {
        let fresh = Self::append(&self.path)?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }
}

/// One event's bytes, written to the file in one call when dropped, so
/// lines from different threads never interleave.
pub struct LineWriter {
    file: Arc<Mutex<File>>,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
            let _ = f.write_all(&self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            file: Arc::clone(&self.file),
            buf: Vec::with_capacity(256),
        }
    }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

fn fmt_layer<W>(writer: W, json: bool, ansi: bool) -> BoxedLayer
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(writer)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed()
    }
}

/// The running log: the file SIGHUP reopens (when the log goes to one)
/// and the level `postroom reload` changes.
#[derive(Clone)]
pub struct LogHandle {
    pub file: Option<LogFile>,
    level: Option<reload::Handle<EnvFilter, Registry>>,
}

impl LogHandle {
    /// A new level for every later event; `RUST_LOG`, when set, still wins.
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        if std::env::var_os("RUST_LOG").is_some() {
            return Err("RUST_LOG is set and overrides log.level".into());
        }
        let handle = self.level.as_ref().ok_or("logging was not started")?;
        handle.reload(EnvFilter::new(level)).map_err(|e| e.to_string())
    }
}

/// Starts logging as `[log]` says. `RUST_LOG` overrides the level.
pub fn init(cfg: &LogConfig) -> Result<LogHandle, String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let (filter, level) = reload::Layer::new(filter);
    let json = cfg.format == "json";
    let mut file = None;
    let mut journal_missing = None;
    let layer: BoxedLayer = match cfg.output.as_str() {
        "stderr" => fmt_layer(
            io::stderr,
            json,
            !json && std::io::IsTerminal::is_terminal(&io::stderr()),
        ),
        "journal" => match tracing_journald::layer() {
            Ok(j) => j.with_syslog_identifier("postroom".into()).boxed(),
            Err(e) => {
                journal_missing = Some(e);
                fmt_layer(io::stderr, json, false)
            }
        },
        path => {
            let f = LogFile::open(PathBuf::from(path)).map_err(|e| format!("log.output {path}: {e}"))?;
            file = Some(f.clone());
            fmt_layer(f, json, false)
        }
    };
    let started = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .is_ok();
    if let Some(e) = journal_missing {
        tracing::warn!(error = %e, "log.output = journal, but the journal cannot be reached: logging to stderr");
    }
    Ok(LogHandle {
        file,
        level: started.then_some(level),
    })
}
