//! The administration commands. They open the store directly: a running
//! server sees their changes at once (it keeps no directory cache).

mod backup;
mod check;
mod config;
mod console;
mod directory;
mod dkim;
mod filter;
mod init;
mod mail;
mod migrate;
pub mod sendmail;
mod spam;
mod status;

use std::path::PathBuf;

use postroom_config::Config;
use postroom_core::Address;
use postroom_store::Store;

use crate::cli::{Cli, Command, ConfigCmd, TlsCmd};

pub type CmdResult = Result<(), String>;

/// Runs a command; its exit status (most commands: success or an error).
pub fn run(args: Cli) -> Result<std::process::ExitCode, String> {
    let ctx = Context {
        config_path: args.config.clone().or_else(installed_config),
        data_dir: args.data_dir.clone(),
        // Before anything switches to the data folder's owner.
        actor: cli_actor(),
    };
    match args.command {
        Command::Status { json } => status::status(&ctx, json),
        command => run_command(&ctx, command).map(|()| std::process::ExitCode::SUCCESS),
    }
}

fn run_command(ctx: &Context, command: Command) -> CmdResult {
    match command {
        // Has an exit status of its own: answered by `run`.
        Command::Status { json } => status::status(ctx, json).map(|_| ()),
        Command::Reload => reload(ctx),
        Command::Serve => {
            let cfg = ctx.config()?;
            let dir = ctx.data_dir_for(&cfg);
            crate::serve::run(cfg, dir, ctx.cli_flags(), ctx.config_path.clone())
        }
        Command::Init => init::init(ctx),
        Command::Config(ConfigCmd::Example) => {
            print!("{}", postroom_config::EXAMPLE);
            Ok(())
        }
        Command::Config(ConfigCmd::Check { file }) => {
            let path = file
                .or(ctx.config_path.clone())
                .ok_or("config check needs a FILE or --config")?;
            config::check(&path)
        }
        Command::Domain(c) => directory::domain(ctx, c),
        Command::User(c) => directory::user(ctx, c),
        Command::Admin(c) => console::admin(ctx, c),
        Command::ApiToken(c) => console::api_token(ctx, c),
        Command::Customer(c) => console::customer(ctx, c),
        Command::Alias(c) => directory::alias(ctx, c),
        Command::Import(c) => directory::import(ctx, c),
        Command::Mail(c) => mail::mail(ctx, c),
        Command::Queue(c) => mail::queue(ctx, c),
        Command::Sendmail { args } => sendmail::run(ctx, &args),
        Command::Dkim(c) => dkim::dkim(ctx, c),
        Command::Backup { dir } => backup::backup(ctx, &dir),
        Command::Restore { dir } => backup::restore(ctx, &dir),
        Command::Migrate { to, password_file } => migrate::migrate(ctx, &to, password_file.as_deref()),
        Command::Audit {
            object,
            domain,
            limit,
        } => directory::audit(ctx, object, domain, limit),
        Command::Srs(crate::cli::SrsCmd::Rotate) => {
            let store = ctx.store()?;
            let db = store.meta();
            if let Some(old) = wait(db.setting("srs_secret")).map_err(|e| e.to_string())? {
                wait(db.set_setting("srs_secret_old", &old)).map_err(|e| e.to_string())?;
            }
            let mut b = [0u8; 24];
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
            let new: String = b.iter().map(|x| format!("{x:02x}")).collect();
            wait(db.set_setting("srs_secret", &new)).map_err(|e| e.to_string())?;
            println!(
                "SRS secret rotated; bounces for mail forwarded under the previous one are still accepted"
            );
            Ok(())
        }
        Command::Spam(crate::cli::SpamCmd::Train { spam, ham }) => spam::train(ctx, &spam, &ham),
        Command::Spam(crate::cli::SpamCmd::Report { ham, files }) => spam::report(ctx, &files, ham),
        Command::Spam(crate::cli::SpamCmd::Stats { json }) => spam::stats(ctx, json),
        Command::Check(crate::cli::CheckCmd::Smtp { target }) => check::smtp(ctx, &target),
        Command::Filter(c) => filter::filter(ctx, c),
        Command::Whitelist(c) => filter::whitelist(ctx, c),
        Command::Quarantine(c) => filter::quarantine(ctx, c),
        Command::Explain { id, json } => filter::explain(ctx, &id, json),
        Command::Tls(TlsCmd::SelfSigned { host, dir }) => {
            postroom_core::Domain::parse(&host).map_err(|e| format!("`{host}`: {e}"))?;
            let cfg = ctx.config()?;
            let dir = match dir {
                Some(d) => d,
                None => {
                    // Into the data folder only when there is one: a
                    // mistyped --data-dir is not made here either.
                    let data = ctx.data_dir_for(&cfg);
                    if !data.is_dir() {
                        return Err(ctx.no_store(&format!("no data folder at {}", data.display())));
                    }
                    data.join("tls")
                }
            };
            let files = postroom_net::tls::self_signed(&host, &dir)?;
            println!("certificate: {}", files.cert.display());
            println!("key:         {}", files.key.display());
            println!("Use them in [tls] cert/key, or leave [tls] empty to use the one in the data folder.");
            Ok(())
        }
    }
}

/// Where the Debian package puts the configuration. When it is there, a
/// bare `postroom user add ...` reaches the installed server, as a bare
/// `postconf` reads /etc/postfix/main.cf.
pub const INSTALLED_CONFIG: &str = "/etc/postroom/postroom.toml";

fn installed_config() -> Option<PathBuf> {
    let path = PathBuf::from(INSTALLED_CONFIG);
    path.exists().then_some(path)
}

/// `postroom reload`: asks the server on this data folder over its control
/// socket, and prints what the reload did.
fn reload(ctx: &Context) -> CmdResult {
    let cfg = ctx.config()?;
    let dir = ctx.data_dir_for(&cfg);
    let r = crate::control::ask_reload(&dir)
        .map_err(|e| format!("no running server answered on {}: {e}", dir.display()))?;
    for a in &r.applied {
        println!("applied: {a}");
    }
    for k in &r.restart_needed {
        println!("needs a restart: {k}");
    }
    for e in &r.errors {
        println!("error: {e}");
    }
    if r.applied.is_empty() && r.restart_needed.is_empty() && r.errors.is_empty() {
        println!("nothing to reload");
    }
    match r.errors.len() {
        0 => Ok(()),
        n => Err(format!(
            "{n} setting{} could not be applied",
            if n == 1 { "" } else { "s" }
        )),
    }
}

pub struct Context {
    config_path: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    /// Who the admin changes are recorded as.
    pub actor: postroom_admin::Actor,
}

/// The Unix user running the command, by its real uid (not `$USER`, which
/// anyone can set); run through sudo, the invoking user too.
fn cli_actor() -> postroom_admin::Actor {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: passwd is plain data (integers and pointers); all zeroes is
    // a valid value, overwritten by getpwuid_r.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into `pwd` and `buf`, both ours and alive
    // for the call; `found` is null or points at `pwd`.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    let name = if rc == 0 && !found.is_null() && !pwd.pw_name.is_null() {
        // SAFETY: pw_name is a NUL-terminated string inside `buf`.
        unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned()
    } else {
        format!("uid {uid}")
    };
    let unix_user = match std::env::var("SUDO_USER") {
        Ok(by) if uid == 0 && !by.is_empty() => format!("{name} (sudo by {by})"),
        _ => name,
    };
    postroom_admin::Actor::Cli { unix_user }
}

impl Context {
    pub fn config(&self) -> Result<Config, String> {
        match &self.config_path {
            Some(p) => Config::load(p).map_err(|e| e.to_string()),
            None => Ok(Config::default()),
        }
    }

    /// The global flags a user must repeat to reach the same instance.
    pub fn cli_flags(&self) -> String {
        let mut s = String::new();
        if let Some(c) = &self.config_path {
            s.push_str(&format!(" --config {}", c.display()));
        }
        if let Some(d) = &self.data_dir {
            s.push_str(&format!(" --data-dir {}", d.display()));
        }
        s
    }

    pub fn data_dir_for(&self, cfg: &Config) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| cfg.data_dir())
    }

    /// The existing store: a command other than `serve` and `init` never
    /// makes one (issue #12: a mistyped `--data-dir` silently made a
    /// fresh, empty store, and the command "worked" on it).
    pub fn store(&self) -> Result<Store, String> {
        let cfg = self.config()?;
        let dir = self.data_dir_for(&cfg);
        if cfg.store.database.is_none() {
            crate::lock::refuse_while_migrating(&dir)?;
        }
        become_data_owner(&dir)?;
        // Admin changes and sendmail submissions go to the server's log
        // when it is the journal or a file (on stderr they would mix with
        // the command's own output).
        if cfg.log.output != "stderr" {
            if let Err(e) = crate::logging::init(&cfg.log) {
                eprintln!("postroom: warning: {e}");
            }
        }
        match wait(Store::open_configured(&store_place(&cfg, &dir, false))) {
            Err(postroom_store::StoreError::NoStore(what)) => Err(self.no_store(&what)),
            r => r.map_err(|e| store_error(&cfg, &dir, e)),
        }
    }

    /// What to say when there is no store: what is missing, and how to
    /// make one for this same instance.
    pub(super) fn no_store(&self, what: &str) -> String {
        let flags = self.cli_flags();
        format!("{what}: make one with `postroom{flags} init`, or start `postroom{flags} serve`")
    }

    /// The admin service on this instance's store, with the rules the
    /// configuration sets.
    pub fn admin(&self) -> Result<postroom_admin::AdminService, String> {
        let cfg = self.config()?;
        let policy = postroom_admin::Policy {
            hostname: cfg.server.hostname.clone(),
            min_password_length: cfg.auth.min_password_length,
            removal_grace_secs: postroom_admin::REMOVAL_GRACE_SECS,
        };
        Ok(postroom_admin::AdminService::for_store(self.store()?, policy))
    }
}

/// Where `[store]` says the store is; `create`: see
/// [`postroom_store::StorePlace::create`].
pub(super) fn store_place<'a>(
    cfg: &'a Config,
    data_dir: &'a std::path::Path,
    create: bool,
) -> postroom_store::StorePlace<'a> {
    postroom_store::StorePlace {
        data_dir,
        database: cfg.store.database.as_deref(),
        password_file: cfg.store.password_file.as_deref(),
        blobs: cfg.store.blobs.as_deref(),
        create,
    }
}

/// A store error that names where it looked.
fn store_error(cfg: &Config, data_dir: &std::path::Path, e: postroom_store::StoreError) -> String {
    match (&e, &cfg.store.database) {
        // Already names the folder.
        (postroom_store::StoreError::NoStore(_), None) => e.to_string(),
        (_, None) => format!("{}: {e}", data_dir.display()),
        (_, Some(_)) => format!("the PostgreSQL store: {e}"),
    }
}

/// Opens the store as `[store]` says, making it when there is none
/// (`serve`): the embedded database in `data_dir`, or PostgreSQL; errors
/// name where it looked.
pub async fn open_or_create_store(cfg: &Config, data_dir: &std::path::Path) -> Result<Store, String> {
    Store::open_configured(&store_place(cfg, data_dir, true))
        .await
        .map_err(|e| store_error(cfg, data_dir, e))
}

/// Runs a store call to completion. The commands are synchronous; the
/// store's interface is async (a PostgreSQL back end talks over a socket),
/// so they share one single-threaded runtime, made on first use.
pub fn wait<F: std::future::Future>(f: F) -> F::Output {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            // Only fails when the process cannot make an epoll instance
            // (out of file descriptors): nothing a command could go on with.
            #[allow(clippy::expect_used)]
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cannot start the runtime for store calls")
        })
        .block_on(f)
}

pub fn parse_address(s: &str) -> Result<Address, String> {
    Address::parse(s.trim(), true).map_err(|e| format!("`{s}`: {e}"))
}

/// Run as root against a data folder that belongs to the server's user, the
/// CLI becomes that user first, so the files it creates (SQLite's WAL) stay
/// readable by the server.
fn become_data_owner(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    if meta.uid() == 0 {
        return Ok(());
    }
    // SAFETY: plain syscalls; groups and gid before uid.
    let ok = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setgid(meta.gid()) == 0
            && libc::setuid(meta.uid()) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "cannot switch to the owner of {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ))
    }
}
