//! `postroom serve`: binds the listeners, drops privileges, opens the store
//! and runs until SIGTERM or SIGINT (then stops accepting, lets sessions
//! finish what is in flight, and exits).

use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use postroom_config::Config;
use postroom_core::net::normalize_ip;
use postroom_core::{Address, IpNetList};
use postroom_directory::auth::{Authenticator, LoginPolicy};
use postroom_directory::Directory;
use postroom_imap::service::ImapService;
use postroom_net::acme::{self, AcmeSettings, ChallengeKind};
use postroom_net::limit::{AccountLimiter, LimitExceeded};
use postroom_net::proxy::{read_header, ProxyHeader};
use postroom_net::shutdown::ShutdownTrigger;
use postroom_net::tls::{CertFiles, TlsSettings};
use postroom_net::{ConnectionLimiter, ConnectionPermit, MaybeTls, Shutdown};
use postroom_pipeline::limits::{LimitSettings, SendLimits};
use postroom_pipeline::{ChainFilter, Filter, MxPipeline, NoFilter, RelayPolicy};
use postroom_pop3::service::Pop3Service;
use postroom_queue::dns::MxResolver;
use postroom_queue::{DeliveryQueue, Injector, QueueSettings};
use postroom_smtp::service::{serve_connection, ConnectionSettings};
use postroom_smtp::{Reply, SessionConfig};
use postroom_store::faulty::{FaultSwitch, FaultyMeta};
use postroom_store::Store;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How long shutdown waits for sessions to finish their transactions.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How often changes made by other processes to the folders IMAP sessions
/// wait on are looked for: IDLE reports them within this time (RFC 9051
/// leaves it to the server; a second is what clients are used to).
const FOREIGN_CHANGES_EVERY: Duration = Duration::from_secs(1);

/// Bodies left behind by a crash or a failed commit are found by a sweep
/// (see postroom_store's sweep.rs): the first a while after start, when any
/// transaction a previous process or a CLI command had open is long over,
/// then daily.
const BODY_SWEEP_FIRST: Duration = Duration::from_secs(10 * 60);
const BODY_SWEEP_EVERY: Duration = Duration::from_secs(24 * 3600);
/// Far beyond the time any transaction takes (SQLite's busy timeout is
/// 10 s), so a body whose row is about to be committed is never taken.
const BODY_SWEEP_MIN_AGE: Duration = Duration::from_secs(10 * 60);
/// `user remove` keeps a mailbox's mail for a grace period (7 days,
/// `postroom_admin::REMOVAL_GRACE_SECS`); the server deletes it when it
/// starts and then hourly, so at most an hour late.
const REMOVED_MAILBOX_PURGE_EVERY: Duration = Duration::from_secs(3600);

pub fn run(
    cfg: Config,
    data_dir: PathBuf,
    cli_flags: String,
    config_path: Option<PathBuf>,
) -> Result<(), String> {
    // A SIGHUP (`systemctl reload`, logrotate) before the handler is in
    // place must neither end the server (the default action) nor be lost:
    // blocked, it waits until Signals::install unblocks it. Threads made
    // from here on inherit the mask; the handler runs on this one.
    sighup_mask(libc::SIG_BLOCK);
    let log = crate::logging::init(&cfg.log)?;
    // The file as it is now: a reload names what changed since.
    let started_config = match &config_path {
        Some(p) => std::fs::read_to_string(p)
            .ok()
            .and_then(|t| toml::from_str::<toml::Value>(&t).ok())
            .unwrap_or_else(|| toml::Value::Table(Default::default())),
        None => toml::Value::Table(Default::default()),
    };
    pin_mmap_threshold();
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    // Bind first: low ports need root, which is dropped right after.
    let bind = |key: &str, list: &[String]| -> Result<Vec<StdListener>, String> {
        list.iter()
            .map(|addr| {
                let sa: SocketAddr = addr.parse().map_err(|_| format!("{key}: bad address {addr}"))?;
                let l = StdListener::bind(sa).map_err(|e| format!("cannot listen on {sa} ({key}): {e}"))?;
                l.set_nonblocking(true).map_err(|e| e.to_string())?;
                Ok(l)
            })
            .collect()
    };
    let sockets = Sockets {
        smtp: bind("smtp.listen", &cfg.smtp.listen)?,
        submission: bind("submission.listen", &cfg.submission.listen)?,
        submissions: bind("submission.tls_listen", &cfg.submission.tls_listen)?,
        pop3: bind("pop3.listen", &cfg.pop3.listen)?,
        pop3s: bind("pop3.tls_listen", &cfg.pop3.tls_listen)?,
        imap: bind("imap.listen", &cfg.imap.listen)?,
        imaps: bind("imap.tls_listen", &cfg.imap.tls_listen)?,
        // Only ACME's own extra listeners: by default the console's plain
        // ones ([http] listen, port 80 in production) answer HTTP-01.
        acme_http: if cfg.acme.enabled && cfg.acme.challenge == "http-01" {
            bind("acme.http_listen", &cfg.acme.http_listen)?
        } else {
            Vec::new()
        },
        http: bind("http.listen", &cfg.http.listen)?,
        https: bind("http.tls_listen", &cfg.http.tls_listen)?,
    };
    raise_open_files_limit();
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    make_private(&data_dir)?;
    if let Some(user) = &cfg.server.run_as {
        drop_privileges(user, &data_dir)?;
    }
    // Held until the server exits: `postroom migrate` must not copy a
    // database that is still changing (made after dropping root, so the
    // file belongs to the user the folder was handed to).
    let _owner = crate::lock::DataLock::take(&data_dir, crate::lock::Role::Server)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let store = runtime.block_on(crate::cmd::open_or_create_store(&cfg, &data_dir))?;
    // Bodies that were arriving when the server last stopped (SMTP DATA,
    // IMAP APPEND): no session writes one yet, and none was acknowledged.
    match store.blobs.clear_spools() {
        Ok(0) => {}
        Ok(n) => tracing::info!(files = n, "removed unfinished message spool files"),
        Err(e) => tracing::warn!(error = %e, "removing unfinished message spool files failed"),
    }
    let (store, faults) = with_fault_hook(store, &data_dir);
    if let Some((switch, path)) = faults {
        runtime.spawn(follow_fault_file(switch, path));
    }
    let stopping = store.clone();
    let reload = ReloadInputs {
        config_path,
        started: started_config,
        log,
    };
    let served = runtime.block_on(serve(cfg, data_dir, store, sockets, cli_flags, reload));
    // The sessions and tasks are gone with the runtime; a thread may still
    // hold the store (the queue's finisher), so its purge queue is
    // finished here rather than when the last handle drops, which a
    // process exit does not wait for.
    drop(runtime);
    stopping.finish_pending_deletions();
    served
}

/// A data folder (or the database in it) that others may read is made
/// private to the server's user, and the log says so: it holds password
/// hashes, DKIM keys and every message.
fn make_private(data_dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [
        (data_dir.to_path_buf(), 0o700),
        (data_dir.join("postroom.sqlite"), 0o600),
    ] {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let found = meta.permissions().mode() & 0o777;
        if found & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
                format!(
                    "{}: readable by others, and cannot be made private: {e}",
                    path.display()
                )
            })?;
            tracing::warn!(
                path = %path.display(),
                was = format!("{found:o}"),
                now = format!("{mode:o}"),
                "was readable by other users: made private to the server's user"
            );
        }
    }
    Ok(())
}

/// The environment variable naming a file that, while it exists, makes
/// every storage call fail: the end-to-end tests check each protocol's
/// answer to a storage failure (`451 4.3.0`, `NO [UNAVAILABLE]`,
/// `-ERR [SYS/TEMP]`) against the real server this way.
const FAULT_FILE_ENV: &str = "POSTROOM_TEST_STORE_FAULTS";

/// The store behind a fault switch when [`FAULT_FILE_ENV`] is set.
fn with_fault_hook(store: Store, data_dir: &Path) -> (Store, Option<(FaultSwitch, PathBuf)>) {
    let Some(path) = std::env::var_os(FAULT_FILE_ENV) else {
        return (store, None);
    };
    tracing::warn!(file = ?path, "{FAULT_FILE_ENV} is set: storage fails while that file exists (a test hook)");
    let (faulty, switch) = FaultyMeta::new(store.meta_handle());
    let store = Store::with_backend(Arc::new(faulty), Arc::clone(&store.blobs), data_dir);
    (store, Some((switch, PathBuf::from(path))))
}

async fn follow_fault_file(switch: FaultSwitch, path: PathBuf) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        switch.set(path.exists());
    }
}

/// The bound listening sockets, by protocol.
struct Sockets {
    smtp: Vec<StdListener>,
    submission: Vec<StdListener>,
    submissions: Vec<StdListener>,
    pop3: Vec<StdListener>,
    pop3s: Vec<StdListener>,
    imap: Vec<StdListener>,
    imaps: Vec<StdListener>,
    /// ACME HTTP-01 tokens (port 80), when `[acme]` asks for them.
    acme_http: Vec<StdListener>,
    http: Vec<StdListener>,
    https: Vec<StdListener>,
}

/// What a connection is handed to once accepted.
#[derive(Clone)]
enum Protocol {
    Smtp {
        session: Arc<SessionConfig>,
        settings: Arc<ConnectionSettings>,
        pipeline: Arc<MxPipeline>,
    },
    Pop3(Arc<Pop3Service>),
    Imap(Arc<ImapService>),
}

impl Protocol {
    fn name(&self) -> &'static str {
        match self {
            Protocol::Smtp { .. } => "smtp",
            Protocol::Pop3(_) => "pop3",
            Protocol::Imap(_) => "imap",
        }
    }

    /// The protocol's way of saying "too many connections".
    fn refusal(&self, hostname: &str, ip: IpAddr, limit: LimitExceeded) -> Vec<u8> {
        match (self, limit) {
            (Protocol::Smtp { .. }, LimitExceeded::Client) => Reply::new(
                421,
                "4.7.0",
                format!("{hostname} Error: too many connections from {ip}"),
            )
            .to_bytes(),
            (Protocol::Smtp { .. }, LimitExceeded::Total) => Reply::new(
                421,
                "4.3.2",
                format!("{hostname} Error: too many connections, try again later"),
            )
            .to_bytes(),
            (Protocol::Pop3(_), _) => b"-ERR [SYS/TEMP] Too many connections, try again later\r\n".to_vec(),
            (Protocol::Imap(_), _) => {
                b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n".to_vec()
            }
        }
    }

    /// Serves the connection, holding its slot in the limiter (`permit`)
    /// until it ends; SMTP may move the slot to another pool after AUTH.
    async fn serve(self, stream: MaybeTls, ip: IpAddr, shutdown: Shutdown, permit: ConnectionPermit) {
        match self {
            Protocol::Smtp {
                session,
                settings,
                pipeline,
            } => serve_connection(stream, ip, session, settings, pipeline, shutdown, Some(permit)).await,
            Protocol::Pop3(service) => {
                let _permit = permit;
                service.serve(stream, ip, shutdown).await
            }
            Protocol::Imap(service) => {
                let _permit = permit;
                service.serve(stream, ip, shutdown).await
            }
        }
    }
}

/// The content filter `[filter]` describes, or none with `enabled =
/// false`; a configuration error (an unreadable blocklist, a bad clamd
/// address) stops the start with its message.
fn content_filter(
    cfg: &Config,
    store: &Store,
    dns: Option<&MxResolver>,
    classifier: Option<Arc<postroom_filter::classifier::Classifier>>,
) -> Result<Arc<dyn Filter>, String> {
    if !cfg.filter.enabled {
        return Ok(Arc::new(NoFilter));
    }
    // The listeners' own addresses: a HELO literal naming one is forged
    // (0.0.0.0 and :: name every address, so none in particular).
    let addresses = cfg
        .smtp
        .listen
        .iter()
        .filter_map(|a| a.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
        .collect();
    let deps = postroom_filter::Deps {
        hostname: cfg.server.hostname.clone(),
        addresses,
        // The [dns] resolver the gateway callout uses: one resolver, one
        // cache, the same settings.
        dns: dns.and_then(|r| r.resolver().cloned()),
        trusted_networks: postroom_core::IpNetList::parse(&cfg.smtp.trusted_networks)?,
        classifier,
        offline: false,
    };
    let mut chain = postroom_filter::chain(&cfg.filter, &deps).map_err(|e| format!("[filter]: {e}"))?;
    if std::env::var_os("POSTROOM_TEST_FILTER_SCORES").is_some() {
        chain = chain.with_check(Box::new(postroom_pipeline::content::TestScore));
    }
    let policy = postroom_pipeline::filter_store::StorePolicy::new(store.clone(), true);
    Ok(Arc::new(
        ChainFilter::new(
            chain,
            postroom_filter::Thresholds::from(&cfg.filter.policy),
            Some(Arc::new(policy)),
        )
        .with_subject_tag(&cfg.filter.html.subject_tag)
        .with_authserv_id(&cfg.server.hostname),
    ))
}

async fn serve(
    cfg: Config,
    data_dir: PathBuf,
    store: Store,
    sockets: Sockets,
    cli_flags: String,
    reload: ReloadInputs,
) -> Result<(), String> {
    // Before any listener accepts: a client can connect from then on, and
    // a SIGHUP without a handler would end the process.
    let signals = Signals::install();
    // The runtime polls this future on the thread that blocked SIGHUP.
    sighup_mask(libc::SIG_UNBLOCK);
    let tls = tls_settings(&cfg, &data_dir)?;
    let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
    let postmaster = match &cfg.server.postmaster {
        Some(p) => Some(Address::parse(p, true).map_err(|e| format!("server.postmaster: {e}"))?),
        None => None,
    };
    let smtp = &cfg.smtp;
    let a = &cfg.auth;
    let auth = Arc::new(Authenticator::new(
        store.meta_handle(),
        a.default_domain.clone(),
        LoginPolicy {
            failures_before_delay: a.failures_before_delay,
            window: Duration::from_secs(a.failure_window_secs),
            max_delay: Duration::from_secs(a.max_delay_secs),
            block_after: a.block_after,
        },
    ));
    // One pipeline for the MX and submission: authenticated sessions may
    // relay and are held to their own sender addresses.
    let sub = &cfg.submission;
    let sender_dns = if cfg.dns.enabled {
        Some(Arc::new(MxResolver::new(
            true,
            &cfg.dns.resolvers,
            Duration::from_secs(cfg.dns.timeout_secs),
        )?))
    } else {
        None
    };
    let classifier = crate::classifier::start(&cfg, &store).await;
    let filter = content_filter(&cfg, &store, sender_dns.as_deref(), classifier.clone())?;
    let filter_results = cfg
        .filter
        .enabled
        .then(|| postroom_pipeline::filter_store::ResultWriter::start(store.clone()));
    let pipeline = Arc::new(MxPipeline {
        sender_dns,
        limits: Some(Arc::new(SendLimits::new(LimitSettings {
            user_messages: sub.max_messages_per_user_per_hour,
            user_recipients: sub.max_recipients_per_user_per_hour,
            domain_messages: sub.max_messages_per_domain_per_hour,
            hold_after_caps: sub.hold_after_caps,
        }))),
        auth: Some(Arc::clone(&auth)),
        expose_client_ip: cfg.submission.expose_client_ip,
        hostname: cfg.server.hostname.clone(),
        max_received_headers: smtp.max_received_headers,
        policy: RelayPolicy {
            trusted_networks: IpNetList::parse(&smtp.trusted_networks)?,
            relay_denied_code: smtp.relay_denied_code,
            reject_disabled_accounts: smtp.reject_disabled_accounts,
            quota_code: smtp.quota_exceeded_code,
        },
        directory: Directory::new(store.meta_handle(), postmaster.clone()),
        store: store.clone(),
        filter,
        filter_time: postroom_pipeline::filter_deadline(Duration::from_secs(smtp.data_timeout_secs)),
        results: filter_results,
        memory: postroom_pipeline::MemoryBudget::new(smtp.max_in_memory_bytes),
        spam_reports: crate::classifier::spam_reports(&cfg, classifier.as_ref()),
    });
    let smtp_session = SessionConfig {
        hostname: cfg.server.hostname.clone(),
        max_message_size: smtp.max_message_size,
        max_recipients: smtp.max_recipients,
        max_line_length: smtp.max_line_length,
        soft_error_limit: smtp.soft_error_limit,
        hard_error_limit: smtp.hard_error_limit,
        error_sleep: Duration::from_millis(smtp.error_sleep_ms),
        strict_line_endings: smtp.strict_line_endings,
        starttls: tls.is_some(),
        auth: true,
        submission: false,
    };
    let smtp_settings = ConnectionSettings {
        idle_timeout: Duration::from_secs(smtp.idle_timeout_secs),
        command_timeout: Duration::from_secs(smtp.command_timeout_secs),
        data_timeout: Duration::from_secs(smtp.data_timeout_secs),
        session_timeout: Duration::from_secs(smtp.session_timeout_secs),
        authenticated_limiter: None,
        tls: acceptor.clone(),
        plaintext_auth: IpNetList::parse(&a.plaintext_networks)?,
    };
    // Submission has connection limits of its own (issue #8: with one
    // limiter for ports 25, 587 and 465, 1,000 idle MX connections made
    // submission refuse every user), and a logged-in connection moves to
    // a pool of its own.
    let exempt = IpNetList::parse(&smtp.connection_limit_exempt)?;
    let submission_limiter = ConnectionLimiter::new(
        sub.max_connections_per_client,
        sub.max_connections,
        exempt.clone(),
    );
    let submission_authenticated = ConnectionLimiter::new(
        sub.max_authenticated_connections_per_client,
        sub.max_authenticated_connections,
        exempt,
    );
    let submission_settings = Arc::new(ConnectionSettings {
        authenticated_limiter: Some(Arc::clone(&submission_authenticated)),
        ..smtp_settings.clone()
    });
    let smtp_settings = Arc::new(smtp_settings);
    let smtp_protocol = Protocol::Smtp {
        session: Arc::new(smtp_session.clone()),
        settings: Arc::clone(&smtp_settings),
        pipeline: Arc::clone(&pipeline),
    };
    let submission_protocol = Protocol::Smtp {
        session: Arc::new(SessionConfig {
            max_recipients: cfg.submission.max_recipients,
            submission: true,
            ..smtp_session
        }),
        settings: submission_settings,
        pipeline: Arc::clone(&pipeline),
    };
    let q = &cfg.queue;
    let resolver = MxResolver::new(
        cfg.dns.enabled,
        &cfg.dns.resolvers,
        Duration::from_secs(cfg.dns.timeout_secs),
    )?;
    let helo_ok = postroom_core::Domain::parse(&cfg.server.hostname).is_ok_and(|d| d.is_fully_qualified());
    let delivery = DeliveryQueue::new(
        store.clone(),
        resolver,
        QueueSettings {
            hostname: cfg.server.hostname.clone(),
            helo_ok,
            remote_port: q.remote_port,
            per_destination: q.per_destination_concurrency,
            max_connections: q.max_outbound_connections,
            retry_min: Duration::from_secs(q.retry_min_secs),
            retry_max: Duration::from_secs(q.retry_max_secs.max(q.retry_min_secs)),
            lifetime: Duration::from_secs(q.lifetime_secs),
            timeout: Duration::from_secs(q.timeout_secs),
            opportunistic_tls: q.opportunistic_tls,
            delay_warning: (q.delay_warning_secs > 0).then(|| Duration::from_secs(q.delay_warning_secs)),
            idle_timeout: Duration::from_secs(q.connection_idle_secs),
        },
        Arc::new(PipelineInjector(Arc::clone(&pipeline))),
    );
    let held_reporter = crate::held_report::Reporter {
        store: store.clone(),
        pipeline,
        hostname: cfg.server.hostname.clone(),
        postmaster,
        cli: format!("postroom{cli_flags}"),
        every: Duration::from_secs(cfg.queue.held_report_secs),
    };
    let plaintext_networks = IpNetList::parse(&a.plaintext_networks)?;
    let pop3_protocol = Protocol::Pop3(Arc::new(Pop3Service {
        store: store.clone(),
        auth: Arc::clone(&auth),
        hostname: cfg.server.hostname.clone(),
        tls: acceptor.clone(),
        plaintext_networks: plaintext_networks.clone(),
        idle_timeout: Duration::from_secs(cfg.pop3.idle_timeout_secs),
        per_account: AccountLimiter::new(cfg.pop3.max_connections_per_user),
    }));

    let imap_protocol = Protocol::Imap(Arc::new(ImapService {
        store: store.clone(),
        auth: Arc::clone(&auth),
        hostname: cfg.server.hostname.clone(),
        tls: acceptor.clone(),
        plaintext_networks: plaintext_networks.clone(),
        idle_timeout: Duration::from_secs(cfg.imap.idle_timeout_secs),
        max_append: cfg.imap.max_append,
        per_account: AccountLimiter::new(cfg.imap.max_connections_per_user),
        trainer: crate::classifier::junk_trainer(&cfg, classifier.as_ref()),
    }));
    // Each protocol has its own exemptions: an address exempt on the MX
    // (a relay, a benchmark) is not thereby exempt on IMAP or POP3.
    let imap_limiter = ConnectionLimiter::new(
        cfg.imap.max_connections_per_client,
        cfg.imap.max_connections,
        IpNetList::parse(&cfg.imap.connection_limit_exempt)?,
    );

    let (trigger, shutdown) = Shutdown::new();
    // Every connection task holds a clone; when all are dropped, they are done.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let smtp_limiter = ConnectionLimiter::new(
        smtp.max_connections_per_client,
        smtp.max_connections,
        IpNetList::parse(&smtp.connection_limit_exempt)?,
    );
    let pop3_limiter = ConnectionLimiter::new(
        cfg.pop3.max_connections_per_client,
        cfg.pop3.max_connections,
        IpNetList::parse(&cfg.pop3.connection_limit_exempt)?,
    );
    let reloader = Arc::new(crate::reload::Reloader {
        config_path: reload.config_path,
        started: reload.started,
        tls: tls.clone(),
        log: reload.log,
        limiters: crate::reload::Limiters {
            smtp: Arc::clone(&smtp_limiter),
            submission: Arc::clone(&submission_limiter),
            submission_authenticated: Some(submission_authenticated),
            imap: Arc::clone(&imap_limiter),
            pop3: Arc::clone(&pop3_limiter),
        },
    });
    // (banner name, sockets, protocol, PROXY header, implicit TLS, limiter)
    let groups = [
        (
            "smtp",
            sockets.smtp,
            smtp_protocol,
            smtp.proxy_protocol,
            None,
            smtp_limiter,
        ),
        (
            "submission",
            sockets.submission,
            submission_protocol.clone(),
            cfg.submission.proxy_protocol,
            None,
            Arc::clone(&submission_limiter),
        ),
        (
            "submissions",
            sockets.submissions,
            submission_protocol,
            cfg.submission.proxy_protocol,
            tls.clone(),
            submission_limiter,
        ),
        (
            "pop3",
            sockets.pop3,
            pop3_protocol.clone(),
            cfg.pop3.proxy_protocol,
            None,
            Arc::clone(&pop3_limiter),
        ),
        (
            "pop3s",
            sockets.pop3s,
            pop3_protocol,
            cfg.pop3.proxy_protocol,
            tls.clone(),
            pop3_limiter,
        ),
        (
            "imap",
            sockets.imap,
            imap_protocol.clone(),
            cfg.imap.proxy_protocol,
            None,
            Arc::clone(&imap_limiter),
        ),
        (
            "imaps",
            sockets.imaps,
            imap_protocol,
            cfg.imap.proxy_protocol,
            tls.clone(),
            imap_limiter,
        ),
    ];
    let mut bound: Vec<(&'static str, SocketAddr)> = Vec::new();
    let connections = Arc::new(crate::control::Connections::default());
    // /metrics' uptime counts from here.
    postroom_core::metrics::start();
    for (name, socks, protocol, proxy, implicit_tls, limiter) in groups {
        // Implicit-TLS listeners (their names end in 's') need a certificate.
        if name.ends_with('s') && implicit_tls.is_none() {
            if !socks.is_empty() {
                tracing::warn!(
                    listener = name,
                    "no TLS certificate (tls.self_signed = false): not listening"
                );
            }
            continue;
        }
        for l in socks {
            let listener = TcpListener::from_std(l).map_err(|e| e.to_string())?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            bound.push((name, addr));
            let acceptor = Acceptor {
                listener,
                proxy_protocol: proxy,
                implicit_tls: implicit_tls.clone(),
                limiter: Arc::clone(&limiter),
                protocol: protocol.clone(),
                shutdown: shutdown.clone(),
                done: done_tx.clone(),
                hostname: cfg.server.hostname.clone(),
                name,
                connections: Arc::clone(&connections),
            };
            tokio::spawn(acceptor.run());
        }
    }
    let console_hint = start_console(
        &cfg,
        &store,
        &auth,
        tls.clone(),
        sockets.http,
        sockets.https,
        &shutdown,
        &mut bound,
        Arc::clone(&connections),
    )
    .await?;
    let mut queue_stop = shutdown.clone();
    let queue_task = tokio::spawn(delivery.run(async move { queue_stop.recv().await }));
    tokio::spawn(sweep_bodies_periodically(store.clone()));
    tokio::spawn(purge_removed_mailboxes(postroom_admin::AdminService::for_store(
        store.clone(),
        postroom_admin::Policy {
            hostname: cfg.server.hostname.clone(),
            min_password_length: cfg.auth.min_password_length,
            removal_grace_secs: postroom_admin::REMOVAL_GRACE_SECS,
        },
    )));
    tokio::spawn(expire_filtered(
        postroom_admin::AdminService::for_store(
            store.clone(),
            postroom_admin::Policy {
                hostname: cfg.server.hostname.clone(),
                min_password_length: cfg.auth.min_password_length,
                removal_grace_secs: postroom_admin::REMOVAL_GRACE_SECS,
            },
        ),
        cfg.filter.quarantine_days,
    ));
    tokio::spawn(look_for_foreign_changes(store.clone()));
    if let Some(tls) = &tls {
        start_acme(&cfg, &data_dir, tls, sockets.acme_http, &shutdown)?;
    }
    tokio::spawn(held_reporter.run());
    drop(done_tx);
    let control = start_control_socket(&data_dir, &bound, connections, tls.clone(), Arc::clone(&reloader));
    print_banner(&cfg, &data_dir, &bound, &cli_flags, console_hint);
    crate::notify::ready(&format!("{} listeners", bound.len()));

    wait_for_signal(signals, reloader).await;
    crate::notify::stopping();
    if let Some(c) = control {
        c.abort();
        let _ = std::fs::remove_file(data_dir.join(crate::control::SOCKET_FILE));
    }
    tracing::info!("shutting down: no new connections, finishing transactions in flight");
    trigger_and_wait(trigger, &mut done_rx).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), queue_task).await;
    Ok(())
}

/// Answers `postroom status` on `DATA_DIR/control.sock` (see control.rs).
/// A socket that cannot be made (a data folder path longer than the 107
/// bytes a Unix socket address holds) costs `status` its live part, not
/// the server its start: logged, and the server runs without it.
fn start_control_socket(
    data_dir: &Path,
    bound: &[(&'static str, SocketAddr)],
    connections: Arc<crate::control::Connections>,
    tls: Option<TlsSettings>,
    reloader: Arc<crate::reload::Reloader>,
) -> Option<tokio::task::JoinHandle<()>> {
    use crate::control::{Certificate, Listener, Live};
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let listeners: Vec<Listener> = bound
        .iter()
        .map(|(name, addr)| Listener {
            protocol: name.to_string(),
            address: addr.to_string(),
        })
        .collect();
    let live = move || Live {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        started,
        listeners: listeners.clone(),
        connections: connections.snapshot(),
        // Read at each request: a SIGHUP may have loaded new ones.
        certificates: tls
            .as_ref()
            .map(TlsSettings::expiries)
            .unwrap_or_default()
            .into_iter()
            .map(|(file, not_after)| Certificate {
                file: file.display().to_string(),
                not_after,
            })
            .collect(),
    };
    match crate::control::bind(data_dir) {
        Ok((listener, _)) => {
            let handlers = crate::control::Handlers {
                live: Box::new(live),
                reload: Box::new(move || reloader.reload_and_log("postroom reload")),
            };
            Some(tokio::spawn(crate::control::serve(listener, Arc::new(handlers))))
        }
        Err(e) => {
            tracing::warn!(error = %e, "no control socket: `postroom status` will not see this server's live state");
            None
        }
    }
}

/// The web console and API (`[http]`): HTTPS on `tls_listen` with the mail
/// listeners' certificates; the plain listeners serve the console when
/// there is no HTTPS listener (the trial, on loopback), else redirect to
/// it. Returns whether a first provider admin is still to be added.
#[allow(clippy::too_many_arguments)]
async fn start_console(
    cfg: &Config,
    store: &Store,
    auth: &Arc<Authenticator>,
    tls_settings: Option<TlsSettings>,
    plain: Vec<StdListener>,
    tls: Vec<StdListener>,
    shutdown: &Shutdown,
    bound: &mut Vec<(&'static str, SocketAddr)>,
    connections: Arc<crate::control::Connections>,
) -> Result<bool, String> {
    let admin = postroom_admin::AdminService::for_store(
        store.clone(),
        postroom_admin::Policy {
            hostname: cfg.server.hostname.clone(),
            min_password_length: cfg.auth.min_password_length,
            removal_grace_secs: postroom_admin::REMOVAL_GRACE_SECS,
        },
    );
    let no_admin = match admin.provider_admins().await {
        Ok(list) => list.is_empty(),
        Err(_) => false,
    };
    let settings = postroom_http::Settings::from_config(&cfg.http);
    let state = Arc::new(postroom_http::AppState {
        admin,
        auth: Arc::clone(auth),
        sessions: postroom_http::session::Sessions::new(
            settings.session_idle_secs,
            settings.session_max_secs,
        ),
        settings,
        acme: tls_settings
            .as_ref()
            .filter(|_| cfg.acme.enabled)
            .map(|t| Arc::clone(&t.challenges)),
        autoconfig: Some(Arc::new(postroom_http::autoconfig::Autoconfig {
            endpoints: postroom_http::autoconfig::Endpoints::from_config(cfg),
            store: store.clone(),
        })),
        connections: Some(Arc::new(move || connections.snapshot())),
    });
    let https_on = !tls.is_empty() && tls_settings.is_some();
    if !tls.is_empty() && tls_settings.is_none() {
        tracing::warn!("no TLS certificate (tls.self_signed = false): the console's HTTPS listeners are off");
    }
    let mut listeners = Vec::new();
    let mut add = |socks: Vec<StdListener>,
                   name: &'static str,
                   tls: Option<TlsSettings>,
                   redirect_only: bool|
     -> Result<(), String> {
        for l in socks {
            let socket = TcpListener::from_std(l).map_err(|e| e.to_string())?;
            bound.push((name, socket.local_addr().map_err(|e| e.to_string())?));
            listeners.push(postroom_http::Listener {
                socket,
                tls: tls.clone(),
                redirect_only,
            });
        }
        Ok(())
    };
    add(plain, "http", None, https_on)?;
    if https_on {
        add(tls, "https", tls_settings.clone(), false)?;
    }
    tokio::spawn(postroom_http::serve(state, listeners, shutdown.clone()));
    Ok(no_admin)
}

/// Wakes IDLE sessions for changes other processes made to their folders
/// (in-process commits wake them at once; see postroom_store's watch.rs).
async fn look_for_foreign_changes(store: Store) {
    let mut tick = tokio::time::interval(FOREIGN_CHANGES_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let meta = store.meta_handle();
        // On a blocking thread: the embedded back end reads synchronously.
        let looked = tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(meta.look_for_foreign_changes())
        })
        .await;
        match looked {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "looking for changes to watched folders failed"),
            Err(e) => tracing::warn!(error = %e, "looking for changes to watched folders failed"),
        }
    }
}

async fn sweep_bodies_periodically(store: Store) {
    tokio::time::sleep(BODY_SWEEP_FIRST).await;
    loop {
        let sweeper = store.clone();
        let started = std::time::Instant::now();
        // On a blocking thread: it lists every body file.
        let swept = tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(sweeper.sweep_unreferenced_bodies(BODY_SWEEP_MIN_AGE))
        });
        match swept.await {
            Ok(Ok(r)) => tracing::info!(
                examined = r.examined,
                deleted = r.deleted,
                ms = started.elapsed().as_millis() as u64,
                "swept unreferenced message bodies"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "sweeping unreferenced message bodies failed"),
            Err(e) => tracing::warn!(error = %e, "sweeping unreferenced message bodies failed"),
        }
        tokio::time::sleep(BODY_SWEEP_EVERY).await;
    }
}

async fn purge_removed_mailboxes(admin: postroom_admin::AdminService) {
    let mut tick = tokio::time::interval(REMOVED_MAILBOX_PURGE_EVERY);
    loop {
        tick.tick().await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        match admin.purge_removed(now).await {
            Ok(gone) => {
                for address in gone {
                    tracing::info!(%address, "removed mailbox: grace period over, its mail deleted");
                }
            }
            Err(e) => tracing::warn!(error = %e, "deleting removed mailboxes failed"),
        }
    }
}

/// Quarantined mail past `[filter] quarantine_days` and filter reports
/// past 30 days are deleted, at start and hourly.
async fn expire_filtered(admin: postroom_admin::AdminService, quarantine_days: u64) {
    let mut tick = tokio::time::interval(REMOVED_MAILBOX_PURGE_EVERY);
    let max_age = i64::try_from(quarantine_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    loop {
        tick.tick().await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if let Err(e) = admin.quarantine_expire(now, max_age).await {
            tracing::warn!(error = %e, "deleting expired quarantined mail failed");
        }
        match admin.expire_filter_reports().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(reports = n, "filter reports past 30 days deleted"),
            Err(e) => tracing::warn!(error = %e, "deleting old filter reports failed"),
        }
    }
}

/// Bounces go through the same pipeline as received mail.
struct PipelineInjector(Arc<MxPipeline>);

impl Injector for PipelineInjector {
    fn inject(
        &self,
        recipient: String,
        message: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + '_>> {
        Box::pin(async move { self.0.inject(&recipient, message).await })
    }
}

async fn trigger_and_wait(trigger: ShutdownTrigger, done: &mut mpsc::Receiver<()>) {
    trigger.trigger();
    if tokio::time::timeout(SHUTDOWN_GRACE, done.recv()).await.is_err() {
        tracing::warn!("sessions still open after {}s; exiting", SHUTDOWN_GRACE.as_secs());
    }
}

/// One listening socket: accepts, reads a PROXY header when configured,
/// applies the connection limits, runs the implicit-TLS handshake, and hands
/// the connection to its protocol.
struct Acceptor {
    listener: TcpListener,
    proxy_protocol: bool,
    implicit_tls: Option<TlsSettings>,
    limiter: Arc<ConnectionLimiter>,
    protocol: Protocol,
    shutdown: Shutdown,
    done: mpsc::Sender<()>,
    hostname: String,
    /// The listener's name (smtp, imaps, ...), for the connection count.
    name: &'static str,
    connections: Arc<crate::control::Connections>,
}

impl Acceptor {
    async fn run(mut self) {
        loop {
            let accepted = tokio::select! {
                r = self.listener.accept() => r,
                _ = self.shutdown.recv() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let limiter = Arc::clone(&self.limiter);
            let protocol = self.protocol.clone();
            let shutdown = self.shutdown.clone();
            let done = self.done.clone();
            let proxy = self.proxy_protocol;
            let implicit_tls = self.implicit_tls.clone();
            let hostname = self.hostname.clone();
            // Counted from accept to close, TLS handshake included.
            let counted = self.connections.open(self.name);
            tokio::spawn(async move {
                let _done = done;
                let _counted = counted;
                let mut tcp = tcp;
                let mut ip = normalize_ip(peer.ip());
                if proxy {
                    let header = tokio::time::timeout(Duration::from_secs(10), read_header(&mut tcp)).await;
                    match header {
                        Ok(Ok(ProxyHeader::Client(real))) => ip = normalize_ip(real.ip()),
                        Ok(Ok(ProxyHeader::Local)) => {}
                        _ => {
                            tracing::info!(client = %ip, "bad or missing PROXY header");
                            return;
                        }
                    }
                }
                let mut stream = MaybeTls::Plain(tcp);
                let permit = match limiter.try_acquire(ip) {
                    Ok(p) => p,
                    Err(limit) => {
                        tracing::info!(target: "net", protocol = protocol.name(), client = %ip, ?limit,
                            "connection refused: too many connections");
                        if implicit_tls.is_none() {
                            let _ = stream.write_all(&protocol.refusal(&hostname, ip, limit)).await;
                        }
                        return;
                    }
                };
                if let Some(tls) = implicit_tls {
                    match tokio::time::timeout(Duration::from_secs(60), stream.upgrade_implicit(&tls)).await {
                        Ok(Ok(true)) => {}
                        Ok(Ok(false)) => {
                            tracing::info!(target: "acme", client = %ip, "TLS-ALPN-01 validation answered");
                            return;
                        }
                        _ => {
                            tracing::debug!(client = %ip, "TLS handshake failed");
                            return;
                        }
                    }
                }
                protocol.serve(stream, ip, shutdown, permit).await;
            });
        }
    }
}

/// The signals the server acts on, taken before it says it is ready: a
/// SIGHUP (`systemctl reload`) that came before the handler would end the
/// process, as SIGHUP does by default.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

/// Blocks or unblocks SIGHUP for the calling thread.
fn sighup_mask(how: libc::c_int) {
    // SAFETY: the set is initialised by sigemptyset before use; the calls
    // only change this thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

impl Signals {
    fn install() -> Option<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Some(Signals {
            term: signal(SignalKind::terminate()).ok()?,
            int: signal(SignalKind::interrupt()).ok()?,
            hup: signal(SignalKind::hangup()).ok()?,
        })
    }
}

/// What `serve` needs to reload: the configuration file, as it was at
/// start, and the running log.
struct ReloadInputs {
    config_path: Option<PathBuf>,
    started: toml::Value,
    log: crate::logging::LogHandle,
}

/// Runs until SIGTERM or SIGINT; SIGHUP reloads (reload.rs).
async fn wait_for_signal(signals: Option<Signals>, reloader: Arc<crate::reload::Reloader>) {
    let Some(Signals {
        mut term,
        mut int,
        mut hup,
    }) = signals
    else {
        // Without signal handlers the only way out is being killed.
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                crate::notify::reloading();
                let r = Arc::clone(&reloader);
                let _ = tokio::task::spawn_blocking(move || r.reload_and_log("SIGHUP")).await;
                crate::notify::ready("reloaded");
            }
        }
    }
}

fn acme_settings(cfg: &Config, data_dir: &std::path::Path) -> AcmeSettings {
    AcmeSettings {
        directory: cfg.acme.directory.clone(),
        contact: cfg.acme.contact.clone(),
        names: cfg.acme.names_or(&cfg.server.hostname),
        challenge: match cfg.acme.challenge.as_str() {
            "tls-alpn-01" => ChallengeKind::TlsAlpn01,
            _ => ChallengeKind::Http01,
        },
        renew_before: Duration::from_secs(u64::from(cfg.acme.renew_before_days) * 86400),
        directory_ca: cfg.acme.directory_ca.clone(),
        state_dir: data_dir.join("acme"),
    }
}

/// With `[acme] enabled`: the HTTP-01 responder on its sockets, and the
/// task that gets and renews the certificate.
fn start_acme(
    cfg: &Config,
    data_dir: &std::path::Path,
    tls: &TlsSettings,
    http_sockets: Vec<StdListener>,
    shutdown: &Shutdown,
) -> Result<(), String> {
    if !cfg.acme.enabled {
        return Ok(());
    }
    for l in http_sockets {
        let listener = TcpListener::from_std(l).map_err(|e| e.to_string())?;
        tokio::spawn(acme::http01::serve(
            listener,
            Arc::clone(&tls.challenges),
            shutdown.clone(),
        ));
    }
    tokio::spawn(acme::maintain(
        acme_settings(cfg, data_dir),
        tls.clone(),
        shutdown.clone(),
    ));
    Ok(())
}

/// The configured certificates, or a self-signed one for the host name
/// (made once, kept in DATA_DIR/tls), or none when that is turned off.
fn tls_settings(cfg: &Config, data_dir: &std::path::Path) -> Result<Option<TlsSettings>, String> {
    let mut files: Vec<CertFiles> = cfg
        .tls
        .pairs()
        .into_iter()
        .map(|p| CertFiles {
            cert: p.cert,
            key: p.key,
        })
        .collect();
    if cfg.acme.enabled {
        // The certificate ACME made last time goes first; until there is
        // one, the self-signed one below stands in (whatever
        // tls.self_signed says) so the TLS listeners are up to answer
        // TLS-ALPN-01 and to take the certificate when it arrives.
        let acme = acme_settings(cfg, data_dir).files();
        if acme.cert.exists() && acme.key.exists() {
            files.insert(0, acme);
        }
    }
    if files.is_empty() {
        if !cfg.tls.self_signed && !cfg.acme.enabled {
            return Ok(None);
        }
        let made = postroom_net::tls::self_signed(&cfg.server.hostname, &data_dir.join("tls"))?;
        tracing::warn!(
            cert = %made.cert.display(),
            "no TLS certificate configured: using a self-signed one (clients will warn)"
        );
        files.push(made);
    }
    TlsSettings::load(files).map(Some)
}

fn print_banner(
    cfg: &Config,
    data_dir: &std::path::Path,
    bound: &[(&str, SocketAddr)],
    cfg_flag: &str,
    no_provider_admin: bool,
) {
    let list = |name: &str| -> String {
        let v: Vec<String> = bound
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, a)| a.to_string())
            .collect();
        if v.is_empty() {
            "(off)".to_string()
        } else {
            v.join(", ")
        }
    };
    let smtp = bound
        .iter()
        .find(|(n, _)| *n == "smtp")
        .map(|(_, a)| a.to_string());
    println!(
        "Postroom {} is running as {}",
        env!("CARGO_PKG_VERSION"),
        cfg.server.hostname
    );
    println!("  SMTP (MX, inbound mail):  {}", list("smtp"));
    println!("  Submission (STARTTLS):    {}", list("submission"));
    println!("  Submission (TLS):         {}", list("submissions"));
    println!("  POP3 (STLS):              {}", list("pop3"));
    println!("  POP3S (implicit TLS):     {}", list("pop3s"));
    println!("  IMAP (STARTTLS):          {}", list("imap"));
    println!("  IMAPS (implicit TLS):     {}", list("imaps"));
    let console = bound
        .iter()
        .find(|(n, _)| *n == "https")
        .map(|(_, a)| format!("https://{a}/"))
        .or_else(|| {
            bound
                .iter()
                .find(|(n, _)| *n == "http")
                .map(|(_, a)| format!("http://{a}/"))
        });
    println!(
        "  Web console and API:      {}",
        console.as_deref().unwrap_or("(off)")
    );
    println!("  data folder:              {}", data_dir.display());
    println!();
    println!("Next steps (in another terminal):");
    println!("  postroom{cfg_flag} domain add example.com");
    println!("  echo 'a-password' | postroom{cfg_flag} user add you@example.com --password-stdin");
    println!(
        "  swaks --server {} --to you@example.com   # deliver a test message",
        smtp.as_deref().unwrap_or("127.0.0.1:10025")
    );
    println!("  postroom{cfg_flag} mail list you@example.com");
    println!("Mail clients log in with the full address and its password, over TLS (IMAPS, POP3S) or after STARTTLS.");
    if let Some(url) = &console {
        // No password is made up and printed here: it would stay in
        // terminal scroll-back and logs. The command reads one from stdin.
        if no_provider_admin {
            println!("Console: {url} — add its first administrator (a password on standard input):");
            println!(
                "  echo 'a-long-secret' | postroom{cfg_flag} admin add you@example.com --password-stdin"
            );
        } else {
            println!(
                "Console: {url} — log in with a provider admin's address and password (postroom admin list)."
            );
        }
    }
    println!("Stop with Ctrl-C (graceful).");
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// Every login allocates and frees 19 MiB of argon2 state. glibc raises its
/// mmap threshold after such frees, so later ones come from the heap and
/// stay there: memory grew by megabytes per login. A fixed threshold keeps
/// large allocations in mmap, returned to the system when freed.
fn pin_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Many idle IMAP connections need many descriptors: take the hard limit.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid, owned struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// As root with `server.run_as` set: hand the data folder to that user and
/// become it. Anyone else: nothing to drop.
fn drop_privileges(user: &str, data_dir: &std::path::Path) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let name = std::ffi::CString::new(user).map_err(|_| "server.run_as: bad user name".to_string())?;
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy
    // what we need at once, before any other call that could overwrite it.
    let (uid, gid) = unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return Err(format!(
                "server.run_as: user `{user}` does not exist (create it: useradd --system {user})"
            ));
        }
        ((*pw).pw_uid, (*pw).pw_gid)
    };
    chown_tree(data_dir, uid, gid)?;
    // SAFETY: plain syscalls; order matters (groups, gid, then uid).
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
            return Err(format!(
                "cannot switch to user `{user}`: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    tracing::info!(user, "dropped root privileges");
    Ok(())
}

fn chown_tree(path: &std::path::Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| format!("{}: {e}", path.display()))?;
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_symlink() {
                continue;
            }
            chown_tree(&p, uid, gid)?;
        }
    }
    Ok(())
}
