//! The listeners: plain HTTP (the trial's console, or production's
//! redirect to HTTPS) and HTTPS with the server's TLS acceptor (the same
//! certificates and SNI as the mail listeners). One task per connection,
//! a semaphore bounding connections, hyper's limits on the request head.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use postroom_net::tls::TlsSettings;
use postroom_net::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::State;

/// A bound socket and what it serves.
pub struct Listener {
    pub socket: TcpListener,
    /// HTTPS with the mail listeners' certificates (and their ACME
    /// TLS-ALPN-01 answers); plain HTTP without.
    pub tls: Option<TlsSettings>,
    /// Plain HTTP beside HTTPS: every request is redirected to https://.
    pub redirect_only: bool,
}

/// The connection a request came on, for the audit (`ip`) and the
/// cookies (`Secure` over TLS).
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub ip: IpAddr,
    pub tls: bool,
}

/// The request line and headers together: 16 KiB holds any browser's
/// (cookies included) several times; hyper answers 431 beyond it.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Browsers send 10 to 20 headers.
const MAX_HEADERS: usize = 64;
/// A request head must arrive within this (slowloris); also how long an
/// idle keep-alive connection waits for the next request.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed (after its request in flight) this long after it
/// opened: keep-alive saves handshakes, not a socket held for hours.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(600);
/// The TLS handshake, as the mail listeners allow it.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves every listener until `shutdown`; returns when they stopped
/// accepting (connections in flight finish on their own tasks).
pub async fn serve(state: State, listeners: Vec<Listener>, shutdown: Shutdown) {
    let app = crate::app(Arc::clone(&state));
    let slots = Arc::new(Semaphore::new(state.settings.max_connections));
    let mut tasks = Vec::new();
    for l in listeners {
        let app = if l.redirect_only {
            redirect_app(
                state.acme.clone(),
                state.autoconfig.clone(),
                state.settings.request_timeout,
            )
        } else {
            app.clone()
        };
        tasks.push(tokio::spawn(accept_loop(
            l,
            app,
            Arc::clone(&slots),
            shutdown.clone(),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn accept_loop(l: Listener, app: Router, slots: Arc<Semaphore>, mut shutdown: Shutdown) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.recv() => return,
            r = l.socket.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            // Full: closed at once; a browser tries again.
            tracing::warn!(client = %peer, "http: connection limit reached");
            drop(tcp);
            continue;
        };
        let app = app.clone();
        let tls = l.tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let ip = postroom_core::net::normalize_ip(peer.ip());
            match tls {
                Some(settings) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, settings.accept(tcp)).await {
                        Ok(Ok(Some(stream))) => {
                            connection(stream, app, ConnInfo { ip, tls: true }, shutdown).await
                        }
                        Ok(Ok(None)) => {
                            tracing::info!(target: "acme", client = %peer, "TLS-ALPN-01 validation answered")
                        }
                        _ => tracing::debug!(client = %peer, "http: TLS handshake failed"),
                    }
                }
                None => connection(tcp, app, ConnInfo { ip, tls: false }, shutdown).await,
            }
        });
    }
}

async fn connection<S>(stream: S, app: Router, info: ConnInfo, mut shutdown: Shutdown)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(info);
        let app = app.clone();
        async move { app.oneshot(req.map(Body::new)).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .max_headers(MAX_HEADERS);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let age = tokio::time::sleep(MAX_CONNECTION_AGE);
    tokio::pin!(age);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(client = %info.ip, error = %e, "http: connection ended");
                }
                return;
            }
            _ = &mut age, if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = shutdown.recv(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Production's port 80: everything moves to https:// on the same host
/// (308 keeps the method, RFC 9110 15.4.9).
/// ACME's HTTP-01 tokens are answered here too: the CA asks on port 80;
/// and the mail clients' autoconfiguration, with the security headers:
/// Thunderbird asks `http://autoconfig.DOMAIN/` first.
fn redirect_app(
    acme: Option<Arc<postroom_net::acme::Challenges>>,
    autoconfig: Option<Arc<crate::autoconfig::Autoconfig>>,
    timeout: Duration,
) -> Router {
    let autoconfig =
        crate::autoconfig::routes(autoconfig).layer(axum::middleware::from_fn(move |req, next| {
            crate::auth::limits_and_headers(req, next, timeout)
        }));
    crate::acme_routes(acme)
        .merge(autoconfig)
        .fallback(|req: Request<Body>| async move {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(host_without_port)
                .filter(|h| {
                    !h.is_empty()
                        && h.len() <= 255
                        && h.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c))
                });
            let Some(host) = host else {
                return Response::builder()
                    .status(StatusCode::BAD_REQUEST)
                    .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                    .body(Body::from("a Host header is required\n"))
                    .unwrap_or_default();
            };
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            Response::builder()
                .status(StatusCode::PERMANENT_REDIRECT)
                .header(header::LOCATION, format!("https://{host}{path}"))
                .body(Body::empty())
                .unwrap_or_default()
        })
}

/// `host`, `host:80`, `[::1]:80` → the host (for https://, port 443).
fn host_without_port(h: &str) -> &str {
    if let Some(end) = h.find(']') {
        return &h[..=end];
    }
    h.split(':').next().unwrap_or(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_hosts() {
        assert_eq!(host_without_port("mail.example.com"), "mail.example.com");
        assert_eq!(host_without_port("mail.example.com:80"), "mail.example.com");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
    }
}
