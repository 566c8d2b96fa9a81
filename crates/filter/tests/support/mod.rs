//! Real servers for the crate tests: a dnsmasq answering on 127.0.0.1 and
//! a clamd with a signature database the test writes. Each is skipped
//! (the test returns early, saying so) only when the program is not
//! installed; `scripts/test-all` installs both.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push("/usr/sbin".into());
    dirs.push("/sbin".into());
    for name in names {
        for d in &dirs {
            let p = d.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A port free on 127.0.0.1 for both UDP and TCP at the time of asking.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn wait_for(what: &str, child: &mut Child, mut ready: impl FnMut() -> bool) {
    // Generous: the machine is shared by several builds. Readiness is
    // polled, so a fast start costs nothing.
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if ready() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not start in 30 s");
}

pub struct Dnsmasq {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl Dnsmasq {
    /// dnsmasq with `config` (dnsmasq.conf lines) as its only data; `None`
    /// when dnsmasq is not installed.
    pub fn start(config: &str) -> Option<Dnsmasq> {
        let Some(bin) = which(&["dnsmasq"]) else {
            eprintln!("skipped: dnsmasq is not installed");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("postroom-dnsmasq")
            .tempdir()
            .unwrap();
        let conf = dir.path().join("dnsmasq.conf");
        std::fs::write(&conf, config).unwrap();
        let port = free_port();
        let mut child = Command::new(bin)
            .args([
                "--no-daemon",
                "--keep-in-foreground",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--pid-file=",
                &format!("--conf-file={}", conf.display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("dnsmasq", &mut child, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Some(Dnsmasq {
            child,
            _dir: dir,
            port,
        })
    }

    pub fn resolver(&self) -> TokioResolver {
        resolver(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(5),
        )
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A resolver asking only `server`, as `[dns] resolvers` builds it.
pub fn resolver(server: SocketAddr, timeout: Duration) -> TokioResolver {
    let mut opts = ResolverOpts::default();
    opts.timeout = timeout;
    opts.attempts = 1;
    opts.cache_size = 0;
    opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let cfg =
        ResolverConfig::from_name_servers(vec![NameServerConfig::new(server.ip(), true, vec![udp, tcp])]);
    TokioResolver::builder_with_config(cfg, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .unwrap()
}

/// EICAR's test file (68 bytes), which every scanner reports.
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn pong<S: std::io::Read + std::io::Write>(mut s: S) -> bool {
    let mut reply = Vec::new();
    s.write_all(b"zPING\0").is_ok() && s.read_to_end(&mut reply).is_ok() && reply.starts_with(b"PONG")
}

pub struct Clamd {
    child: Child,
    dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub address: SocketAddr,
}

impl Clamd {
    /// clamd in the foreground with a throw-away configuration and one
    /// signature, EICAR's MD5 (no download); `None` when clamd is not
    /// installed. `stream_max` is clamd's StreamMaxLength.
    pub fn start(stream_max: &str) -> Option<Clamd> {
        let Some(bin) = which(&["clamd"]) else {
            eprintln!("skipped: clamd is not installed (Debian's clamav-daemon)");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("postroom-clamd")
            .tempdir()
            .unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        std::fs::write(
            db.join("postroom-test.hdb"),
            "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n",
        )
        .unwrap();
        let socket = dir.path().join("clamd.sock");
        let port = free_port();
        let conf = dir.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nLocalSocket {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\n\
                 DatabaseDirectory {}\nLogFile {}\nStreamMaxLength {stream_max}\n\
                 TemporaryDirectory {}\n",
                socket.display(),
                db.display(),
                dir.path().join("clamd.log").display(),
                dir.path().display()
            ),
        )
        .unwrap();
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        // Ready when both sockets answer PING: the unix socket's file
        // exists from bind(), before clamd listens on it.
        wait_for("clamd", &mut child, || {
            let unix = std::os::unix::net::UnixStream::connect(&socket).is_ok_and(pong);
            unix && TcpStream::connect(address).is_ok_and(pong)
        });
        Some(Clamd {
            child,
            dir,
            socket,
            address,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}
