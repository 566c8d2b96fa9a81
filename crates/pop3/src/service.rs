//! The tokio glue around the POP3 [`Session`], and the store behind it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use postroom_directory::auth::{Authenticator, LoginError};
use postroom_net::limit::AccountLimiter;
use postroom_net::{MaybeTls, Shutdown};
use postroom_store::{AccountId, FolderId, Store, Uid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::session::{Action, LoginFailure, MaildropEntry, Session, SessionConfig};

/// Output is written once this much has gathered (and at every pause in
/// the client's commands).
const WRITE_AT_BYTES: usize = 64 * 1024;

/// How much a batch of pipelined retrievals may put in the output buffer
/// before it is written.
const RETRIEVE_BATCH_BYTES: usize = 256 * 1024;

/// What a POP3 listener needs from the rest of Postroom.
pub struct Pop3Service {
    pub store: Store,
    pub auth: Arc<Authenticator>,
    pub hostname: String,
    pub tls: Option<TlsAcceptor>,
    /// Networks where USER/PASS work without TLS (empty by default).
    pub plaintext_networks: postroom_core::IpNetList,
    /// RFC 1939 3: at least 10 minutes.
    pub idle_timeout: Duration,
    /// Sessions per account.
    pub per_account: Arc<AccountLimiter>,
}

impl Pop3Service {
    /// The INBOX and its messages; `None` when either cannot be read (an
    /// account always has an INBOX, so a missing one is a failure too).
    async fn maildrop(&self, account_id: AccountId) -> Option<(FolderId, Vec<MaildropEntry>)> {
        let failed = |e: &dyn std::fmt::Display| {
            tracing::error!(target: "pop3", account = %account_id, error = %e, "reading the maildrop failed");
        };
        let inbox = match self.store.meta().find_folder(account_id, "INBOX").await {
            Ok(Some(f)) => f,
            Ok(None) => {
                failed(&"the account has no INBOX");
                return None;
            }
            Err(e) => {
                failed(&e);
                return None;
            }
        };
        let rows = match self.store.meta().maildrop(inbox.id).await {
            Ok(rows) => rows,
            Err(e) => {
                failed(&e);
                return None;
            }
        };
        let entries = rows
            .into_iter()
            .map(|(uid, size, uidl)| MaildropEntry {
                uid: uid.as_i64(),
                size: size as u64,
                uidl,
            })
            .collect();
        Some((inbox.id, entries))
    }

    /// A message's bytes; `Ok(None)` when another session removed it.
    async fn message(&self, folder_id: FolderId, uid: i64) -> postroom_store::Result<Option<Vec<u8>>> {
        let Some(uid) = Uid::from_i64(uid) else {
            return Ok(None);
        };
        let Some(row) = self.store.meta().message(folder_id, uid).await? else {
            return Ok(None);
        };
        match self.store.message_bytes(&row) {
            Ok(b) => Ok(Some(b)),
            // Expunged by another session between the two reads.
            Err(postroom_store::StoreError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn serve(self: Arc<Self>, mut stream: MaybeTls, ip: IpAddr, mut shutdown: Shutdown) {
        let login_allowed = stream.is_tls() || self.plaintext_networks.contains(ip);
        let cfg = SessionConfig {
            hostname: self.hostname.clone(),
            starttls: self.tls.is_some() && !stream.is_tls(),
            login_allowed,
            ..SessionConfig::default()
        };
        let mut session = Session::new(cfg, stream.is_tls());
        let mut out = session.greeting();
        let mut account: Option<(AccountId, String)> = None;
        let mut _account_permit = None;
        let mut folder_id = FolderId(0);
        let mut buf = vec![0u8; 4096];
        // An action a batch of retrievals stopped at, handled next.
        let mut pending: Option<Action> = None;
        loop {
            while let Some(action) = pending.take().or_else(|| session.poll()) {
                match action {
                    Action::Send(bytes) => {
                        out.extend_from_slice(&bytes);
                        if out.len() > WRITE_AT_BYTES && write(&mut stream, &mut out).await.is_err() {
                            return;
                        }
                    }
                    Action::Delay(d) => {
                        if write(&mut stream, &mut out).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(d).await;
                    }
                    Action::Authenticate { user, password } => {
                        let login = self.auth.login(ip, &user, &password).await;
                        postroom_directory::auth::count_login("pop3", &login);
                        let result = match login {
                            Ok(a) => match self.per_account.try_acquire(a.account_id.get()) {
                                Some(permit) => {
                                    tracing::info!(target: "pop3", client = %ip, user = %a.address, "login");
                                    _account_permit = Some(permit);
                                    account = Some((a.account_id, a.address));
                                    Ok(())
                                }
                                None => Err(LoginFailure::TooManySessions),
                            },
                            Err(e) => {
                                tracing::info!(target: "pop3", client = %ip, user = %user, error = ?e, "login failed");
                                Err(match e {
                                    LoginError::Failed => LoginFailure::Failed,
                                    LoginError::Refused => LoginFailure::Refused,
                                    LoginError::Unavailable => LoginFailure::Unavailable,
                                })
                            }
                        };
                        session.login_result(result);
                    }
                    Action::LoadMaildrop => {
                        let loaded = match account.as_ref() {
                            Some((id, _)) => self.maildrop(*id).await,
                            None => None,
                        };
                        session.maildrop_loaded(loaded.map(|(f, entries)| {
                            folder_id = f;
                            entries
                        }));
                    }
                    Action::Retrieve { uid, .. } => {
                        if out.len() > WRITE_AT_BYTES && write(&mut stream, &mut out).await.is_err() {
                            return;
                        }
                        // All the RETR/TOP/DELE a client pipelined are
                        // answered in one go, up to a batch of output.
                        pending = {
                            let mut uid = uid;
                            'retrieve: loop {
                                match self.message(folder_id, uid).await {
                                    Ok(msg) => session.message(msg.as_deref()),
                                    Err(e) => {
                                        tracing::error!(target: "pop3", client = %ip, error = %e, "reading a message failed");
                                        session.message_unavailable();
                                    }
                                }
                                loop {
                                    match session.poll() {
                                        Some(Action::Send(bytes)) => out.extend_from_slice(&bytes),
                                        Some(Action::Retrieve { uid: next, .. })
                                            if out.len() < RETRIEVE_BATCH_BYTES =>
                                        {
                                            uid = next;
                                            break;
                                        }
                                        other => break 'retrieve other,
                                    }
                                }
                            }
                        };
                    }
                    Action::Commit { deleted } => {
                        // RFC 1939 6: the deletions are committed (one
                        // transaction) before +OK.
                        let deleted: Vec<Uid> = deleted.iter().filter_map(|&u| Uid::from_i64(u)).collect();
                        let ok = match self.store.expunge(folder_id, &deleted).await {
                            Ok(n) => {
                                tracing::info!(target: "pop3", client = %ip, deleted = n, "expunged at QUIT");
                                true
                            }
                            Err(e) => {
                                tracing::error!(target: "pop3", error = %e, "expunge failed");
                                false
                            }
                        };
                        session.committed(ok);
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
            }
            if write(&mut stream, &mut out).await.is_err() {
                return;
            }
            if buf.is_empty() {
                buf = vec![0u8; 4096];
            }
            let read = tokio::select! {
                r = tokio::time::timeout(self.idle_timeout, stream.read(&mut buf)) => r,
                _ = shutdown.recv(), if !shutdown.is_shutdown() => {
                    // Between commands nothing is in flight: say goodbye.
                    let _ = stream.write_all(b"-ERR Server shutting down\r\n").await;
                    return;
                }
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => session.receive(&buf[..n]),
                Err(_) => {
                    let bye = session.timed_out();
                    let _ = stream.write_all(&bye).await;
                    return;
                }
            }
        }
    }
}

async fn write(stream: &mut MaybeTls, out: &mut Vec<u8>) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let r = tokio::time::timeout(Duration::from_secs(600), stream.write_all(out)).await;
    out.clear();
    match r {
        Ok(r) => {
            r?;
            stream.flush().await
        }
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "write timeout")),
    }
}
