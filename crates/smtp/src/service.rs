//! The tokio glue around [`Session`]: reads from the connection, feeds the
//! session, performs its actions, writes its replies. Everything the glue
//! decides (timeouts, TLS, shutdown) is here; everything SMTP is in the core.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use postroom_net::{ConnectionLimiter, ConnectionPermit, MaybeTls, Shutdown};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::command::RcptTarget;
use crate::reply::Reply;
use crate::session::{Action, AuthFailure, DeliveryOutcome, Envelope, RcptVerdict, Session, SessionConfig};

/// What the session knows about its peer, passed to every handler call.
#[derive(Clone, Debug)]
pub struct PeerContext {
    pub ip: IpAddr,
    /// The user authenticated with SMTP AUTH.
    pub auth: Option<String>,
    pub helo: Option<String>,
    pub tls: bool,
    /// SIZE declared on MAIL FROM, during RCPT checks.
    pub declared_size: Option<u64>,
}

/// Where a message body goes while it arrives (a file in the store), so
/// that no connection holds a whole message in memory.
pub trait BodySpool: Send + 'static {
    /// Appends a piece of the body. Called on tokio's blocking pool.
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()>;
}

/// The policy and delivery side of an SMTP listener (the pipeline).
pub trait SmtpHandler: Send + Sync + 'static {
    type Recipient: Send + 'static;
    type Spool: BodySpool;

    /// A new, empty spool for one message body. Called on tokio's
    /// blocking pool; dropping the spool discards it.
    fn open_spool(&self) -> std::io::Result<Self::Spool>;

    fn check_recipient(
        &self,
        peer: &PeerContext,
        target: RcptTarget,
    ) -> impl Future<Output = RcptVerdict<Self::Recipient>> + Send;

    /// Stores the message whose body is in `body` (`envelope.size` bytes).
    fn deliver(
        &self,
        peer: &PeerContext,
        envelope: Envelope<Self::Recipient>,
        body: Self::Spool,
    ) -> impl Future<Output = DeliveryOutcome> + Send;

    /// Checks a login (SMTP AUTH); the identity on success.
    fn authenticate(
        &self,
        peer: &PeerContext,
        user: String,
        password: postroom_core::Secret<String>,
    ) -> impl Future<Output = Result<String, AuthFailure>> + Send;

    /// May the authenticated `peer.auth` send as this envelope sender?
    fn check_sender(
        &self,
        peer: &PeerContext,
        sender: Option<postroom_core::Address>,
    ) -> impl Future<Output = Result<(), Reply>> + Send;
}

#[derive(Clone)]
pub struct ConnectionSettings {
    /// RFC 5321 4.5.3.2 suggests 5 minutes; the seed (Postfix
    /// smtpd_timeout = 180s) uses 180 s, which is the default.
    pub idle_timeout: Duration,
    /// A command line must be complete this long after its first byte
    /// (180 s, as Postfix's smtpd_timeout): the idle timeout alone let a
    /// client dripping a byte every 20 s hold a connection for 420 s
    /// without completing a command (issue #8).
    pub command_timeout: Duration,
    /// A message's content (DATA to the final dot, or all its BDAT chunks)
    /// must arrive within this (900 s: 45 MB at 0.5 Mbit/s takes 720 s).
    pub data_timeout: Duration,
    /// The whole connection, the time spent receiving message content not
    /// counted (1800 s).
    pub session_timeout: Duration,
    /// Where an authenticated connection's slot moves (submission: its
    /// own pool, see [`postroom_net::ConnectionPermit::move_to`]).
    pub authenticated_limiter: Option<Arc<ConnectionLimiter>>,
    pub tls: Option<TlsAcceptor>,
    /// Networks whose clients may AUTH without TLS.
    pub plaintext_auth: postroom_core::IpNetList,
}

/// Serves one connection to the end. `permit` is the connection's slot in
/// its listener's limiter, moved to `settings.authenticated_limiter` after
/// AUTH.
pub async fn serve_connection<H: SmtpHandler>(
    mut stream: MaybeTls,
    peer_ip: IpAddr,
    cfg: Arc<SessionConfig>,
    settings: Arc<ConnectionSettings>,
    handler: Arc<H>,
    mut shutdown: Shutdown,
    mut permit: Option<ConnectionPermit>,
) {
    let mut clock = Deadlines::new(Instant::now());
    let mut session: Session<H::Recipient> = Session::new(cfg, peer_ip, stream.is_tls());
    session.allow_plaintext_auth(settings.plaintext_auth.contains(peer_ip));
    let mut ctx = PeerContext {
        ip: peer_ip,
        auth: None,
        helo: None,
        tls: stream.is_tls(),
        declared_size: None,
    };
    let mut out = session.greeting().to_bytes();
    let mut buf = vec![0u8; 8192];
    // The body being received: `None` until its first chunk, `Err` after
    // a write failed (the rest of the body is read and dropped, and the
    // message answered with 451 4.3.0).
    let mut spool: Option<std::io::Result<H::Spool>> = None;
    loop {
        while let Some(action) = session.poll() {
            match action {
                Action::BodyStart => spool = None,
                Action::BodyChunk(chunk) => {
                    spool = match spool.take() {
                        // Failed before: the rest of this body is dropped.
                        Some(Err(e)) => Some(Err(e)),
                        open => {
                            let written = spool_write(&handler, open.and_then(Result::ok), chunk).await;
                            if let Err(e) = &written {
                                tracing::error!(target: "smtp", client = %peer_ip, error = %e,
                                    "writing the message body failed");
                            }
                            Some(written)
                        }
                    };
                }
                Action::Send(reply) => reply.write_to(&mut out),
                Action::Delay(d) => {
                    if flush(&mut stream, &mut out).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(d).await;
                }
                Action::Refused { command, reply } => {
                    tracing::info!(
                        target: "smtp",
                        client = %peer_ip,
                        helo = session.helo_name().unwrap_or(""),
                        from = %session.sender(),
                        command = %command,
                        reply = %reply.summary(),
                        "NOQUEUE: reject"
                    );
                }
                Action::CheckRecipient(target) => {
                    ctx.helo = session.helo_name().map(str::to_string);
                    ctx.declared_size = session.declared_size();
                    let verdict = handler.check_recipient(&ctx, target).await;
                    session.recipient_verdict(verdict);
                }
                Action::Authenticate { user, password } => {
                    let result = handler.authenticate(&ctx, user, password).await;
                    if let Ok(identity) = &result {
                        ctx.auth = Some(identity.clone());
                        if let (Some(p), Some(pool)) = (permit.as_mut(), &settings.authenticated_limiter) {
                            if let Err(limit) = p.move_to(pool, peer_ip) {
                                // The login stands; the connection keeps
                                // its unauthenticated slot.
                                tracing::info!(target: "smtp", client = %peer_ip, ?limit,
                                    "authenticated pool full; connection stays in the unauthenticated one");
                            }
                        }
                    }
                    session.auth_result(result);
                }
                Action::CheckSender(sender) => {
                    let verdict = handler.check_sender(&ctx, sender).await;
                    session.sender_verdict(verdict);
                }
                Action::Deliver(envelope) => {
                    ctx.helo = session.helo_name().map(str::to_string);
                    let body = match spool.take() {
                        Some(body) => body,
                        // An empty body: no chunk came.
                        None => spool_write(&handler, None, Vec::new()).await,
                    };
                    let outcome = match body {
                        Ok(body) => handler.deliver(&ctx, *envelope, body).await,
                        // RFC 5321 4.2.2: 451, local error in processing.
                        Err(_) => DeliveryOutcome::Rejected(Reply::new(
                            451,
                            "4.3.0",
                            "Temporary storage failure, try again later",
                        )),
                    };
                    session.delivery_outcome(outcome);
                }
                Action::StartTls => {
                    if flush(&mut stream, &mut out).await.is_err() {
                        return;
                    }
                    let Some(acceptor) = settings.tls.as_ref() else {
                        return;
                    };
                    let handshake = tokio::time::timeout(settings.idle_timeout, stream.upgrade(acceptor));
                    match handshake.await {
                        Ok(Ok(())) => {
                            session.tls_established();
                            ctx.tls = true;
                        }
                        // The peer may reconnect and go on in plaintext;
                        // nothing is remembered against it.
                        _ => {
                            tracing::info!(target: "smtp", client = %peer_ip, "TLS handshake failed");
                            return;
                        }
                    }
                }
                Action::Close => {
                    let _ = flush(&mut stream, &mut out).await;
                    let _ = stream.shutdown().await;
                    return;
                }
            }
        }
        if !session.body_open() {
            // Refused, too big, reset: the spool file goes.
            spool = None;
        }
        if flush(&mut stream, &mut out).await.is_err() {
            return;
        }
        if shutdown.is_shutdown() && !session.in_transaction() {
            let _ = write_reply(&mut stream, session.shutting_down()).await;
            return;
        }
        let (deadline, which) = clock.next(&session, &settings, Instant::now());
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, stream.read(&mut buf)) => r,
            _ = shutdown.recv(), if !shutdown.is_shutdown() => continue,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => session.receive(&buf[..n]),
            Err(_) => {
                // RFC 5321 4.5.3.2: the server may close after a timeout,
                // with 421 (4.4.2: connection dropped, RFC 3463).
                tracing::info!(target: "smtp", client = %peer_ip, timeout = which, "timeout: connection closed");
                let _ = write_reply(&mut stream, session.timed_out()).await;
                return;
            }
        }
    }
}

/// The clocks of one connection (see [`ConnectionSettings`]).
struct Deadlines {
    started: Instant,
    /// When the command line now arriving began.
    command: Option<Instant>,
    /// When the message content now arriving began.
    body: Option<Instant>,
    /// Time spent receiving message content, which the session deadline
    /// does not count (each message has the data deadline).
    body_time: Duration,
}

impl Deadlines {
    fn new(now: Instant) -> Self {
        Deadlines {
            started: now,
            command: None,
            body: None,
            body_time: Duration::ZERO,
        }
    }

    /// When the next read times out, and which limit that is (for the log).
    fn next<R>(
        &mut self,
        session: &Session<R>,
        s: &ConnectionSettings,
        now: Instant,
    ) -> (Instant, &'static str) {
        if session.body_open() {
            self.body.get_or_insert(now);
        } else if let Some(began) = self.body.take() {
            self.body_time += now.saturating_duration_since(began);
        }
        if session.mid_command() {
            self.command.get_or_insert(now);
        } else {
            self.command = None;
        }
        let mut next = (now + s.idle_timeout, "idle");
        let mut earlier = |at: Instant, which: &'static str| {
            if at < next.0 {
                next = (at, which);
            }
        };
        if let Some(began) = self.command {
            earlier(began + s.command_timeout, "command");
        }
        match self.body {
            Some(began) => earlier(began + s.data_timeout, "data"),
            None => earlier(self.started + self.body_time + s.session_timeout, "session"),
        }
        next
    }
}

/// Appends a piece of the body to the spool (opening one first when
/// `None`), on the blocking pool: a 64 KiB write to the page cache is
/// quick, but a slow disk must not stall the runtime's threads.
async fn spool_write<H: SmtpHandler>(
    handler: &Arc<H>,
    spool: Option<H::Spool>,
    chunk: Vec<u8>,
) -> std::io::Result<H::Spool> {
    let handler = Arc::clone(handler);
    let written = tokio::task::spawn_blocking(move || {
        let mut s = match spool {
            Some(s) => s,
            None => handler.open_spool()?,
        };
        s.write(&chunk)?;
        Ok(s)
    })
    .await;
    written.unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

async fn flush(stream: &mut MaybeTls, out: &mut Vec<u8>) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let r = tokio::time::timeout(Duration::from_secs(180), stream.write_all(out)).await;
    out.clear();
    match r {
        Ok(r) => {
            r?;
            stream.flush().await
        }
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "write timeout")),
    }
}

/// Writes a reply to a peer that is about to be dropped (limits, timeouts).
pub async fn write_reply(stream: &mut MaybeTls, reply: Reply) -> std::io::Result<()> {
    let mut out = reply.to_bytes();
    flush(stream, &mut out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ConnectionSettings {
        ConnectionSettings {
            idle_timeout: Duration::from_secs(180),
            command_timeout: Duration::from_secs(10),
            data_timeout: Duration::from_secs(100),
            session_timeout: Duration::from_secs(50),
            authenticated_limiter: None,
            tls: None,
            plaintext_auth: Default::default(),
        }
    }

    fn drain(s: &mut Session<()>) {
        while let Some(a) = s.poll() {
            match a {
                Action::CheckRecipient(_) => s.recipient_verdict(RcptVerdict::Accept(())),
                Action::CheckSender(_) => s.sender_verdict(Ok(())),
                Action::Deliver(_) => s.delivery_outcome(DeliveryOutcome::Accepted { queue_id: "Q".into() }),
                _ => {}
            }
        }
    }

    #[test]
    fn the_nearest_deadline_wins_and_content_time_is_not_counted() {
        let s = settings();
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let mut session: Session<()> = Session::new(
            Arc::new(SessionConfig::default()),
            "192.0.2.1".parse().unwrap(),
            false,
        );
        let mut clock = Deadlines::new(t0);
        assert_eq!(clock.next(&session, &s, at(0)), (at(50), "session"));
        // A command line begun at 1 s must end by 11 s, however it drips.
        session.receive(b"EH");
        drain(&mut session);
        assert_eq!(clock.next(&session, &s, at(1)), (at(11), "command"));
        session.receive(b"L");
        drain(&mut session);
        assert_eq!(clock.next(&session, &s, at(5)), (at(11), "command"));
        session.receive(b"O c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n");
        drain(&mut session);
        // Content from 6 s: the data deadline, and no session deadline.
        assert!(session.reading_body());
        assert_eq!(clock.next(&session, &s, at(6)), (at(106), "data"));
        assert_eq!(clock.next(&session, &s, at(40)), (at(106), "data"));
        // The content took 60 s; the session deadline moves by as much.
        session.receive(b"x\r\n.\r\n");
        drain(&mut session);
        assert_eq!(clock.next(&session, &s, at(66)), (at(110), "session"));
        // Near the end of the session, the idle timeout is not what ends it.
        assert_eq!(clock.next(&session, &s, at(100)), (at(110), "session"));
    }
}
