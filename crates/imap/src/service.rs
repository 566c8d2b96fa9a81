//! The tokio glue around the IMAP [`Session`]. The session is sans-IO:
//! its questions to the store ([`crate::storage::Query`]) are asked here,
//! asynchronously, through a [`Glue`] that also writes APPEND literals to
//! a spool file as they arrive. Logins wait on the authenticator; IDLE
//! wakes on the store's change notices and at least once a second.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use postroom_directory::auth::{Authenticator, LoginError};
use postroom_net::limit::AccountLimiter;
use postroom_net::{MaybeTls, Shutdown};
use postroom_store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::session::{Action, LoginFailure, Session, SessionConfig};
use crate::storage::Glue;

pub struct ImapService {
    pub store: Store,
    pub auth: Arc<Authenticator>,
    pub hostname: String,
    pub tls: Option<TlsAcceptor>,
    pub plaintext_networks: postroom_core::IpNetList,
    /// RFC 9051 5.4: at least 30 minutes.
    pub idle_timeout: Duration,
    pub max_append: u32,
    /// Sessions per account.
    pub per_account: Arc<AccountLimiter>,
    /// Trains the classifier on moves into and out of `\\Junk`.
    pub trainer: Option<Arc<dyn crate::storage::JunkTrainer>>,
}

/// Read buffer while a command is arriving; released between commands so
/// idle connections hold little memory.
const READ_BUF: usize = 16 * 1024;

/// Responses held before they are written: 1 MiB, so a FETCH of many
/// bodies (read [`crate::session::BODIES_PER_QUERY`] at a time) does not
/// gather the whole mailbox in memory first.
const WRITE_AHEAD: usize = 1 << 20;

impl ImapService {
    pub async fn serve(self: Arc<Self>, mut stream: MaybeTls, ip: IpAddr, mut shutdown: Shutdown) {
        let login_allowed = stream.is_tls() || self.plaintext_networks.contains(ip);
        let cfg = SessionConfig {
            hostname: self.hostname.clone(),
            starttls: self.tls.is_some() && !stream.is_tls(),
            login_allowed,
            max_append: self.max_append,
            max_errors: 50,
        };
        let mut session = Session::new(cfg, stream.is_tls());
        let mut glue = Glue::new(self.store.clone()).with_trainer(self.trainer.clone());
        let mut out = session.greeting();
        let mut buf: Vec<u8> = Vec::new();
        // The selected folder's changes, for IDLE.
        let mut watched: Option<(postroom_store::FolderId, tokio::sync::watch::Receiver<()>)> = None;
        let mut _account_permit = None;
        loop {
            let mut progressed = false;
            while let Some(action) = session.poll() {
                progressed = true;
                match action {
                    Action::Send(bytes) => out.extend_from_slice(&bytes),
                    Action::Idle => {}
                    Action::Upload(step) => glue.upload(step),
                    Action::Query(q) => session.answered(glue.ask(q).await),
                    Action::Authenticate { user, password } => {
                        let login = self.auth.login(ip, &user, &password).await;
                        postroom_directory::auth::count_login("imap", &login);
                        let result = match login {
                            Ok(a) => match self.per_account.try_acquire(a.account_id.get()) {
                                Some(permit) => {
                                    tracing::info!(target: "imap", client = %ip, user = %a.address, "login");
                                    _account_permit = Some(permit);
                                    Ok((a.account_id, a.address))
                                }
                                None => {
                                    tracing::info!(target: "imap", client = %ip, user = %a.address, "login refused: too many sessions");
                                    Err(LoginFailure::TooManySessions)
                                }
                            },
                            Err(e) => {
                                tracing::info!(target: "imap", client = %ip, user = %user, error = ?e, "login failed");
                                Err(match e {
                                    LoginError::Failed => LoginFailure::Failed,
                                    LoginError::Refused => LoginFailure::Refused,
                                    LoginError::Unavailable => LoginFailure::Unavailable,
                                })
                            }
                        };
                        session.login_result(result);
                    }
                    Action::StartTls => {
                        if write(&mut stream, &mut out).await.is_err() {
                            return;
                        }
                        let Some(acceptor) = self.tls.as_ref() else {
                            return;
                        };
                        match tokio::time::timeout(Duration::from_secs(60), stream.upgrade(acceptor)).await {
                            Ok(Ok(())) => session.tls_established(),
                            _ => return,
                        }
                    }
                    Action::Close => {
                        let _ = write(&mut stream, &mut out).await;
                        let _ = stream.shutdown().await;
                        return;
                    }
                }
                if out.len() >= WRITE_AHEAD {
                    // A FETCH of many bodies answers a few at a time: out
                    // with them before the next are read.
                    if write(&mut stream, &mut out).await.is_err() {
                        return;
                    }
                }
            }
            if write(&mut stream, &mut out).await.is_err() {
                return;
            }
            if progressed {
                continue;
            }
            if buf.capacity() == 0 {
                buf = vec![0u8; READ_BUF];
            }
            let folder = session.selected_folder();
            if watched.as_ref().map(|(id, _)| *id) != folder {
                watched = folder.map(|id| {
                    let mut rx = self.store.watch_folder(id);
                    // The session read the folder (SELECT) before this
                    // subscription: a change committed in between signalled
                    // nobody. One look when IDLE starts catches it.
                    rx.mark_changed();
                    (id, rx)
                });
            }
            // Woken by any change to the folder, this process's or (looked
            // for once a second by the server) another's.
            let idling = session.is_idling();
            let read = tokio::select! {
                r = tokio::time::timeout(self.idle_timeout, stream.read(&mut buf)) => Some(r),
                _ = folder_changed(&mut watched), if idling => None,
                _ = shutdown.recv(), if !shutdown.is_shutdown() => {
                    let bye = session.shutting_down();
                    let _ = stream.write_all(&bye).await;
                    return;
                }
            };
            match read {
                // A look at the folder's changes: the session asks for
                // them (`Action::Query`), answered at the top of the loop.
                None => session.idle_check(),
                Some(Ok(Ok(0))) | Some(Ok(Err(_))) => return,
                Some(Ok(Ok(n))) => {
                    session.receive(&buf[..n]);
                    if n < buf.len() {
                        // Nothing more waiting: give the buffer back.
                        buf = Vec::new();
                    }
                }
                Some(Err(_)) => {
                    let bye = session.timed_out();
                    let _ = stream.write_all(&bye).await;
                    return;
                }
            }
        }
    }
}

/// Resolves when the watched folder has changed since this was last
/// called; never when no folder is selected.
async fn folder_changed(watched: &mut Option<(postroom_store::FolderId, tokio::sync::watch::Receiver<()>)>) {
    match watched {
        Some((_, rx)) => {
            if rx.changed().await.is_err() {
                // The signal is kept while anyone holds a receiver: cannot
                // happen, but must not spin.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

async fn write(stream: &mut MaybeTls, out: &mut Vec<u8>) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let r = tokio::time::timeout(Duration::from_secs(600), stream.write_all(out)).await;
    *out = Vec::new();
    match r {
        Ok(r) => {
            r?;
            stream.flush().await
        }
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "write timeout")),
    }
}
