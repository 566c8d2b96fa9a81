//! Who is asking: the login (provider admins and domain admins, under the
//! mail protocols' failure throttle), the session cookie, the CSRF token
//! of every change, and the headers and limits every response gets.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use postroom_admin::{Actor, AdminError, Grantor};
use postroom_core::{Address, Secret};
use postroom_directory::auth::LoginError;
use postroom_store::directory::DomainRow;

use crate::server::ConnInfo;
use crate::session::{fingerprint, same_secret, Role, Session};
use crate::{now, State};

/// The session cookie. `HttpOnly` (no script reads it), `SameSite=Strict`
/// (no other site's page sends it), `Path=/`, and `Secure` over TLS.
pub const SESSION_COOKIE: &str = "postroom_session";
/// The login form's token (double-submit: the form field must equal this
/// cookie), so another site cannot log a browser in as someone else
/// (login CSRF): its form has no way to know or set the cookie.
pub const LOGIN_COOKIE: &str = "postroom_login";
/// The API's CSRF header.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A logged-in administrator, from a live session whose login still has
/// the same password and rights.
#[derive(Clone, Debug)]
pub struct Principal {
    pub login: String,
    pub role: Role,
    pub csrf: String,
    pub ip: std::net::IpAddr,
    pub tls: bool,
    /// The session cookie's value (to end or renew this session); empty
    /// for an API token.
    pub(crate) token: String,
    /// An API token that may only read.
    pub read_only: bool,
    /// Came with an API token rather than a session.
    pub via_token: bool,
}

impl Principal {
    /// How the admin service records this principal's changes.
    pub fn actor(&self) -> Actor {
        Actor::Api {
            login: self.login.clone(),
            ip: self.ip,
        }
    }

    /// Who this principal is when it gives a role or needs a
    /// permission: the admin service reads a domain admin's flags from
    /// the store, never from the session.
    pub fn grantor(&self) -> Grantor {
        match &self.role {
            // Staff acting for a domain hold the provider's permissions;
            // `manages` keeps them to the domain.
            Role::Provider | Role::Acting { .. } => Grantor::Provider,
            Role::DomainAdmin { account, .. } => Grantor::DomainAdmin { account: *account },
        }
    }

    pub fn is_provider(&self) -> bool {
        self.role == Role::Provider
    }

    /// Whether this principal manages the domain: a provider admin every
    /// one, a domain admin their own and its alias domains.
    pub fn manages(&self, d: &DomainRow) -> bool {
        match &self.role {
            Role::Provider => true,
            Role::DomainAdmin { domain, .. } | Role::Acting { domain } => {
                d.id == *domain || d.alias_of == Some(*domain)
            }
        }
    }

    /// The CSRF token sent with a change, compared in constant time.
    pub fn csrf_ok(&self, sent: Option<&str>) -> bool {
        sent.is_some_and(|s| same_secret(s, &self.csrf))
    }
}

/// A refusal, as JSON (`{"error": "..."}`) for the API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = match &e {
            AdminError::Storage(inner) => {
                tracing::error!(error = %inner, "http: storage failed");
                // The driver's words stay in the log.
                "the store is unavailable: try again later".to_string()
            }
            e => e.to_string(),
        };
        ApiError { status, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// Why a request has no principal.
pub enum NoPrincipal {
    /// No cookie, or a session that ended (401).
    LoggedOut,
    /// The store could not be read (503).
    Unavailable,
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(crate) fn conn_info(parts: &Parts) -> ConnInfo {
    parts.extensions.get::<ConnInfo>().copied().unwrap_or(ConnInfo {
        ip: std::net::IpAddr::from([127, 0, 0, 1]),
        tls: false,
    })
}

/// The principal of a request's session cookie, checked against the store:
/// the login must still exist with the same password (a password changed
/// anywhere ends the session) and, for a domain admin, still be enabled
/// and an admin.
pub async fn principal(state: &State, parts: &Parts) -> Result<Principal, NoPrincipal> {
    let info = conn_info(parts);
    let token = cookie(&parts.headers, SESSION_COOKIE).ok_or(NoPrincipal::LoggedOut)?;
    let session = state.sessions.get(token, now()).ok_or(NoPrincipal::LoggedOut)?;
    let current = match &session.role {
        Role::Provider => state
            .admin
            .provider_admin(&session.login)
            .await
            .map_err(|_| NoPrincipal::Unavailable)?
            .map(|a| fingerprint(&a.password_hash)),
        Role::Acting { .. } => {
            // The permission is read again on every request: taken away,
            // the session ends.
            let may = state
                .admin
                .provider_permissions(&session.login)
                .await
                .map_err(|_| NoPrincipal::Unavailable)?
                .contains(postroom_admin::ProviderPermissions::MANAGE_DOMAINS);
            state
                .admin
                .provider_admin(&session.login)
                .await
                .map_err(|_| NoPrincipal::Unavailable)?
                .filter(|_| may)
                .map(|a| fingerprint(&a.password_hash))
        }
        Role::DomainAdmin { account, domain } => state
            .admin
            .store()
            .meta()
            .account_by_id(*account)
            .await
            .map_err(|_| NoPrincipal::Unavailable)?
            // Renamed into another domain, the session's scope is stale.
            .filter(|a| a.enabled && a.domain_admin && a.domain_id == *domain)
            .and_then(|a| a.password_hash)
            .map(|h| fingerprint(&h)),
    };
    if current.as_deref() != Some(session.fingerprint.as_str()) {
        state.sessions.remove(token);
        return Err(NoPrincipal::LoggedOut);
    }
    Ok(Principal {
        login: session.login,
        role: session.role,
        csrf: session.csrf,
        ip: info.ip,
        tls: info.tls,
        token: token.to_string(),
        read_only: false,
        via_token: false,
    })
}

/// The API's principal: an `Authorization: Bearer` token (a browser never
/// sends one by itself, so no CSRF token is needed), or a session and, for
/// every change, its CSRF token in `X-CSRF-Token`.
pub struct ApiPrincipal(pub Principal);

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<State> for ApiPrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, ApiError> {
        if let Some(token) = bearer(&parts.headers) {
            let p = token_principal(state, parts, token).await?;
            if p.read_only && !is_safe(&parts.method) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "this API token may only read",
                ));
            }
            return Ok(ApiPrincipal(p));
        }
        let p = match principal(state, parts).await {
            Ok(p) => p,
            Err(NoPrincipal::LoggedOut) => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "log in first (POST /login)",
                ))
            }
            Err(NoPrincipal::Unavailable) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store is unavailable: try again later",
                ))
            }
        };
        if !is_safe(&parts.method) {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !p.csrf_ok(sent) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "missing or wrong X-CSRF-Token (GET /api/v1/session gives it)",
                ));
            }
        }
        Ok(ApiPrincipal(p))
    }
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A console login as stored: its role, its password hash, and whether it
/// may log in now (a mailbox must be enabled and an admin).
struct Login {
    role: Role,
    hash: Option<String>,
    usable: bool,
}

/// Provider admins first, then mailboxes (following an alias domain).
async fn find_login(state: &State, addr: &Address) -> postroom_store::Result<Option<Login>> {
    let meta = state.admin.store().meta();
    if let Some(a) = meta.provider_admin(&addr.canonical()).await? {
        return Ok(Some(Login {
            role: Role::Provider,
            hash: Some(a.password_hash),
            usable: true,
        }));
    }
    let Some(mut d) = meta.domain(addr.domain().canonical()).await? else {
        return Ok(None);
    };
    if let Some(target) = d.alias_of {
        match meta.domain_by_id(target).await? {
            Some(t) => d = t,
            None => return Ok(None),
        }
    }
    let Some(a) = meta.account(d.id, addr.local_canonical()).await? else {
        return Ok(None);
    };
    Ok(Some(Login {
        role: Role::DomainAdmin {
            domain: d.id,
            account: a.id,
        },
        hash: a.password_hash,
        // A mailbox that is no admin fails as a wrong password would: the
        // console does not tell who has a mailbox.
        usable: a.enabled && a.domain_admin,
    }))
}

/// Checks a login and password, then opens a session. Returns the cookie
/// value.
pub async fn login(
    state: &State,
    ip: std::net::IpAddr,
    login: &str,
    password: &Secret<String>,
) -> Result<(String, Session), LoginError> {
    let (name, role, hash) = check_password(state, ip, login, password).await?;
    tracing::info!(target: "auth", client = %ip, user = %name, "console login");
    Ok(state.sessions.create(&name, role, fingerprint(&hash), now()))
}

/// Checks a login and password (provider admins first, then mailboxes
/// with the admin flag), under the mail protocols' throttle: the
/// canonical login, its role and its stored hash.
pub async fn check_password(
    state: &State,
    ip: std::net::IpAddr,
    login: &str,
    password: &Secret<String>,
) -> Result<(String, Role, String), LoginError> {
    let addr = Address::parse(login.trim(), true).ok();
    let name = addr
        .as_ref()
        .map_or_else(|| login.trim().to_lowercase(), Address::canonical);
    let found = state
        .auth
        .login_other(ip, &name, password, || async {
            let Some(addr) = &addr else { return Ok(None) };
            Ok(find_login(state, addr).await?.map(|l| {
                let hash = l.hash.clone().unwrap_or_default();
                (l.hash, l.usable, (l.role, hash))
            }))
        })
        .await;
    postroom_directory::auth::count_login("http", &found);
    let (role, hash) = found?;
    Ok((name, role, hash))
}

/// The principal of an `Authorization: Bearer` token: live, used from an
/// allowed network, and acting as a login that may still log in.
async fn token_principal(state: &State, parts: &Parts, token: &str) -> Result<Principal, ApiError> {
    let info = conn_info(parts);
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the API token is unknown, revoked or expired",
        )
    };
    let row = state.admin.api_token_check(token).await?.ok_or_else(refused)?;
    if !row.allow_from.is_empty() {
        let nets: Vec<&str> = row.allow_from.split(',').collect();
        let allowed = postroom_core::IpNetList::parse(&nets).is_ok_and(|n| n.contains(info.ip));
        if !allowed {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the API token is not for this address",
            ));
        }
    }
    let addr = Address::parse(&row.login, true).map_err(|_| refused())?;
    let login = find_login(state, &addr)
        .await
        .map_err(AdminError::from)?
        .filter(|l| l.usable)
        .ok_or_else(refused)?;
    Ok(Principal {
        login: row.login,
        role: login.role,
        csrf: String::new(),
        ip: info.ip,
        tls: info.tls,
        token: String::new(),
        read_only: row.read_only,
        via_token: true,
    })
}

/// `Set-Cookie` for a session (or, with `None`, its removal).
pub fn session_cookie(token: Option<&str>, tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    let v = match token {
        Some(t) => format!("{SESSION_COOKIE}={t}; HttpOnly; SameSite=Strict; Path=/{secure}"),
        None => format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

/// `Set-Cookie` for the login form's token (an hour to fill the form).
pub fn login_cookie(token: &str, tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/login; Max-Age=3600{secure}"
    ))
    .unwrap_or(HeaderValue::from_static(""))
}

pub fn login_token_ok(headers: &HeaderMap, sent: &str) -> bool {
    cookie(headers, LOGIN_COOKIE).is_some_and(|c| !c.is_empty() && same_secret(c, sent))
}

pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE)
}

/// The content security policy: our own files only, no inline script or
/// style, never in a frame (clickjacking), forms only to ourselves.
const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; \
     form-action 'self'; base-uri 'none'; object-src 'none'";

/// Every response: the security headers, `no-store` (pages show
/// mailboxes and tokens), and the request's time limit (408 past it).
pub async fn limits_and_headers(req: Request, next: Next, timeout: Duration) -> Response {
    let tls = req.extensions().get::<ConnInfo>().is_some_and(|c| c.tls);
    let is_static = req.uri().path().starts_with("/static/");
    let mut resp = match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(StatusCode::REQUEST_TIMEOUT, "the request took too long").into_response(),
    };
    // A body over the limit is refused by the extractor with its own
    // words; give it ours.
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && !resp.headers().contains_key(header::CONTENT_TYPE) {
        resp = ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large").into_response();
    }
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if tls {
        // A year: the console is never served over plain HTTP beside TLS.
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
}

/// Unknown paths: JSON under /api/, a page elsewhere.
pub async fn not_found(req: Request<Body>) -> Response {
    if req.uri().path().starts_with("/api/") {
        ApiError::new(StatusCode::NOT_FOUND, "no such endpoint").into_response()
    } else {
        crate::pages::error_page(StatusCode::NOT_FOUND, "There is no such page.")
    }
}
