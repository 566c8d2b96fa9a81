//! The web console and the HTTP API (`[http]`): server-rendered pages
//! (askama, no script) under `/`, JSON under `/api/v1/` described by the
//! OpenAPI document at `/api/openapi.json` (generated from the handlers by
//! utoipa).
//!
//! Every change goes to the same [`postroom_admin::AdminService`] function
//! the CLI calls, as `Actor::Api { login, ip }`, so it is checked by the
//! same rules and written to the same audit table. What the HTTP side adds
//! is who may ask: [`auth`] turns a session cookie into a [`Principal`]
//! (a provider admin: every domain; a domain admin: their own domain) and
//! checks the CSRF token of every change; the handlers check the
//! principal's scope before calling the service.
//!
//! Layout: `server` (listeners, TLS, limits), `session` (sans-IO
//! sessions), `auth` (login, principals, CSRF, security headers), `api`
//! (the JSON endpoints: extractors and scope in `api/mod.rs`, a file per
//! family: domains, mailboxes, aliases), `pages` (the console: shared
//! pieces in `pages/mod.rs`, then login, domains, mailboxes), `autoconfig`
//! (mail clients' autoconfiguration, without a session), templates in
//! `templates/`, the style sheet in `static/`.

mod api;
mod auth;
pub mod autoconfig;
mod metrics;
mod pages;
mod server;
pub mod session;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use postroom_admin::AdminService;
use postroom_directory::auth::Authenticator;

pub use auth::Principal;
pub use server::{serve, Listener};

/// What the HTTP side needs from the configuration (`[http]`).
#[derive(Clone, Debug)]
pub struct Settings {
    pub max_connections: usize,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub session_idle_secs: u64,
    pub session_max_secs: u64,
    /// Who may read `/metrics` without a session.
    pub metrics_networks: postroom_core::IpNetList,
}

impl Settings {
    pub fn from_config(c: &postroom_config::HttpConfig) -> Settings {
        Settings {
            max_connections: c.max_connections,
            max_body_bytes: c.max_body_bytes,
            request_timeout: Duration::from_secs(c.request_timeout_secs),
            session_idle_secs: c.session_idle_secs,
            session_max_secs: c.session_max_secs,
            // Checked by `Config::validate`; an unparsable list (never
            // after validation) lets no one in rather than everyone.
            metrics_networks: postroom_core::IpNetList::parse(&c.metrics_networks).unwrap_or_default(),
        }
    }
}

/// Shared by every request.
pub struct AppState {
    pub admin: AdminService,
    /// The mail protocols' authenticator: console logins share their
    /// failure throttle, so a password guesser gains nothing by moving
    /// from IMAP to the console.
    pub auth: Arc<Authenticator>,
    pub sessions: session::Sessions,
    pub settings: Settings,
    /// ACME HTTP-01 tokens, answered on every listener (port 80 is the
    /// console's redirect listener in production).
    pub acme: Option<Arc<postroom_net::acme::Challenges>>,
    /// Client autoconfiguration (`autoconfig`), answered on every
    /// listener, the port-80 redirect listener included.
    pub autoconfig: Option<Arc<autoconfig::Autoconfig>>,
    /// Connections open per protocol, for `/metrics` (the server's
    /// counters, the ones `postroom status` shows).
    pub connections: Option<Arc<dyn Fn() -> BTreeMap<String, u64> + Send + Sync>>,
}

pub type State = Arc<AppState>;

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The whole application: pages, API, the OpenAPI document, the limits
/// and the security headers.
pub fn app(state: State) -> Router {
    let limit = state.settings.max_body_bytes;
    let timeout = state.settings.request_timeout;
    Router::new()
        .merge(pages::routes())
        .nest("/api/v1", api::routes())
        .route("/api/openapi.json", axum::routing::get(api::openapi_json))
        .route("/metrics", axum::routing::get(metrics::metrics))
        .merge(acme_routes(state.acme.clone()))
        .merge(autoconfig::routes(state.autoconfig.clone()))
        .fallback(auth::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(move |req, next| {
            auth::limits_and_headers(req, next, timeout)
        }))
        .with_state(state)
}

/// `/.well-known/acme-challenge/TOKEN` (RFC 8555 8.3), answered from the
/// tokens the ACME task published; a 404 when there is none.
pub(crate) fn acme_routes<S: Clone + Send + Sync + 'static>(
    acme: Option<Arc<postroom_net::acme::Challenges>>,
) -> Router<S> {
    Router::new().route(
        "/.well-known/acme-challenge/{token}",
        axum::routing::get(move |req: axum::http::Request<axum::body::Body>| {
            let acme = acme.clone();
            async move {
                let (status, body) = match &acme {
                    Some(c) => postroom_net::acme::http01::answer(c, req.method(), req.uri().path()),
                    None => (axum::http::StatusCode::NOT_FOUND, "not found\n".to_string()),
                };
                (status, [(axum::http::header::CONTENT_TYPE, "text/plain")], body)
            }
        }),
    )
}

/// The OpenAPI document, for tests and `postroom` to print.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::document()
}
