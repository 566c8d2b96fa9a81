//! The console's pages: server-rendered (askama escapes every value), no
//! script, a form per change carrying the session's CSRF token. Each
//! change calls the same function as the API (`api::change_mailbox_as`
//! and the admin service), then redirects (POST-redirect-GET) with a
//! fixed notice code, so no text from the request is echoed into a page.

use askama::Template;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use postroom_admin::{AdminError, NewPassword};
use postroom_core::Secret;
use postroom_directory::auth::LoginError;
use serde::Deserialize;

use crate::auth::{self, ApiError, NoPrincipal, Principal};
use crate::session::Role;
use crate::State;

type S = axum::extract::State<State>;

const CSS: &str = include_str!("../static/console.css");

/// Mailboxes per page: a screenful.
const PER_PAGE: usize = 50;

pub fn routes() -> Router<State> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/domains") }))
        .route("/static/console.css", get(css))
        // Browsers ask for it on every site; no icon, and no 404 in their
        // consoles.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/login", get(login_form).post(login_submit))
        .route("/logout", post(logout))
        .route("/password", get(password_form).post(password_submit))
        .route("/domains", get(domains).post(domain_create))
        .route("/domains/{domain}", get(domain_page))
        .route("/domains/{domain}/mailboxes", post(mailbox_create))
        .route(
            "/domains/{domain}/mailboxes/{local}/{action}",
            post(mailbox_action),
        )
        .route("/domains/{domain}/aliases", post(alias_create))
        .route("/domains/{domain}/aliases/{local}/remove", post(alias_remove))
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

fn render<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "http: template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be made").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    login: Option<String>,
    csrf: String,
    notice: String,
    status: String,
    message: &'a str,
    back: &'a str,
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    render(
        status,
        &ErrorPage {
            login: None,
            csrf: String::new(),
            notice: String::new(),
            status: status.to_string(),
            message,
            back: "/",
        },
    )
}

/// An admin service refusal as a page, with its status.
fn refusal(p: &Principal, e: ApiError, back: &str) -> Response {
    render(
        e.status,
        &ErrorPage {
            login: Some(p.login.clone()),
            csrf: p.csrf.clone(),
            notice: String::new(),
            status: e.status.to_string(),
            message: &e.message,
            back,
        },
    )
}

/// A page's principal: logged out goes to the login form.
struct PagePrincipal(Principal);

impl FromRequestParts<State> for PagePrincipal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Response> {
        match auth::principal(state, parts).await {
            Ok(p) => Ok(PagePrincipal(p)),
            Err(NoPrincipal::LoggedOut) => Err(Redirect::to("/login").into_response()),
            Err(NoPrincipal::Unavailable) => Err(error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The store is unavailable: try again in a moment.",
            )),
        }
    }
}

/// A form's CSRF field, checked before anything else is looked at.
fn check_csrf(p: &Principal, sent: &str) -> Result<(), Response> {
    if p.csrf_ok(Some(sent)) {
        Ok(())
    } else {
        Err(refusal(
            p,
            ApiError::new(
                StatusCode::FORBIDDEN,
                "This form has expired: reload the page and try again.",
            ),
            "/",
        ))
    }
}

/// Fixed notices, chosen by code: nothing the request says is shown.
fn notice(code: Option<&str>) -> String {
    match code {
        Some("created") => "Created.",
        Some("changed") => "Saved.",
        Some("removed") => "Removed.",
        Some("password") => "Password changed. Your other sessions have ended.",
        _ => "",
    }
    .to_string()
}

#[derive(Deserialize)]
struct NoticeQuery {
    done: Option<String>,
}

// ---------------------------------------------------------------------
// Login and logout.

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    login: Option<String>,
    csrf: String,
    notice: String,
    login_token: String,
    error: String,
    typed: String,
}

fn login_page(status: StatusCode, tls: bool, error: &str, typed: &str) -> Response {
    let token = crate::session::random_token();
    let mut resp = render(
        status,
        &LoginPage {
            login: None,
            csrf: String::new(),
            notice: String::new(),
            login_token: token.clone(),
            error: error.into(),
            typed: typed.into(),
        },
    );
    resp.headers_mut()
        .append(header::SET_COOKIE, auth::login_cookie(&token, tls));
    resp
}

async fn login_form(parts: Parts) -> Response {
    login_page(StatusCode::OK, auth::conn_info(&parts).tls, "", "")
}

#[derive(Deserialize)]
struct LoginForm {
    login_token: String,
    login: String,
    password: String,
}

async fn login_submit(axum::extract::State(state): S, parts: Parts, Form(f): Form<LoginForm>) -> Response {
    let info = auth::conn_info(&parts);
    if !auth::login_token_ok(&parts.headers, &f.login_token) {
        return login_page(
            StatusCode::FORBIDDEN,
            info.tls,
            "The login form expired or came from another site: try again.",
            "",
        );
    }
    if f.login.len() > 320 || f.password.len() > postroom_admin::MAX_PASSWORD_BYTES {
        return login_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            info.tls,
            "Wrong address or password.",
            "",
        );
    }
    // An earlier session in this browser ends (no fixation of an old id).
    if let Some(old) = auth::session_token(&parts.headers) {
        state.sessions.remove(old);
    }
    match auth::login(&state, info.ip, &f.login, &Secret::new(f.password)).await {
        Ok((token, _)) => {
            let mut resp = Redirect::to("/domains").into_response();
            let h = resp.headers_mut();
            h.append(header::SET_COOKIE, auth::session_cookie(Some(&token), info.tls));
            resp
        }
        Err(LoginError::Failed) => login_page(
            StatusCode::UNAUTHORIZED,
            info.tls,
            "Wrong address or password.",
            &f.login,
        ),
        Err(LoginError::Refused) => login_page(
            StatusCode::TOO_MANY_REQUESTS,
            info.tls,
            "Too many failed logins from your address: try again later.",
            &f.login,
        ),
        Err(LoginError::Unavailable) => login_page(
            StatusCode::SERVICE_UNAVAILABLE,
            info.tls,
            "The server cannot check passwords right now: try again in a moment.",
            &f.login,
        ),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check_csrf(&p, &f.csrf) {
        return r;
    }
    state.sessions.remove(&p.token);
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, auth::session_cookie(None, p.tls));
    resp
}

// ---------------------------------------------------------------------
// The own password.

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    login: Option<String>,
    csrf: String,
    notice: String,
}

async fn password_form(PagePrincipal(p): PagePrincipal, Query(q): Query<NoticeQuery>) -> Response {
    render(
        StatusCode::OK,
        &PasswordPage {
            login: Some(p.login.clone()),
            csrf: p.csrf.clone(),
            notice: notice(q.done.as_deref()),
        },
    )
}

#[derive(Deserialize)]
struct PasswordForm {
    csrf: String,
    current: String,
    new: String,
}

async fn password_submit(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Form(f): Form<PasswordForm>,
) -> Response {
    if let Err(r) = check_csrf(&p, &f.csrf) {
        return r;
    }
    match change_own_password(&state, &p, &f.current, &f.new).await {
        Ok(()) => Redirect::to("/password?done=password").into_response(),
        Err(e) => refusal(&p, e, "/password"),
    }
}

/// The logged-in administrator's password: the current one is checked
/// (under the login throttle), the new one set through the admin service;
/// this session stays, the login's others end.
pub(crate) async fn change_own_password(
    state: &State,
    p: &Principal,
    current: &str,
    new: &str,
) -> Result<(), ApiError> {
    if current.len() > postroom_admin::MAX_PASSWORD_BYTES {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the current password is wrong",
        ));
    }
    match auth::login(state, p.ip, &p.login, &Secret::new(current.to_string())).await {
        Ok((t, _)) => state.sessions.remove(&t),
        Err(LoginError::Unavailable) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is unavailable",
            ))
        }
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the current password is wrong",
            ))
        }
    }
    let pw = NewPassword::Plain(Secret::new(new.to_string()));
    let hash = match &p.role {
        Role::Provider => {
            state
                .admin
                .provider_admin_passwd(&p.actor(), &p.login, pw)
                .await?;
            state
                .admin
                .provider_admin(&p.login)
                .await?
                .map(|a| a.password_hash)
        }
        Role::DomainAdmin { account, .. } => {
            state.admin.user_passwd(&p.actor(), &p.login, pw).await?;
            state
                .admin
                .store()
                .meta()
                .account_by_id(*account)
                .await
                .map_err(AdminError::from)?
                .and_then(|a| a.password_hash)
        }
    };
    let fp = crate::api::new_fingerprint(&hash.unwrap_or_default());
    state.sessions.password_changed(&p.token, &p.login, fp);
    Ok(())
}

// ---------------------------------------------------------------------
// Domains.

struct DomainLine {
    name: String,
    display: String,
    kind: String,
    quota: String,
}

#[derive(Template)]
#[template(path = "domains.html")]
struct DomainsPage {
    login: Option<String>,
    csrf: String,
    notice: String,
    provider: bool,
    domains: Vec<DomainLine>,
}

fn size(n: Option<i64>) -> String {
    match n {
        None => "none".into(),
        Some(b) if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}G", b >> 30),
        Some(b) if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}M", b >> 20),
        Some(b) if b >= 1 << 20 => format!("{:.1}M", b as f64 / f64::from(1 << 20)),
        Some(b) if b >= 1 << 10 => format!("{}K", b >> 10),
        Some(b) => format!("{b} bytes"),
    }
}

async fn domains(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let all = match state.admin.domains().await {
        Ok(d) => d,
        Err(e) => return refusal(&p, e.into(), "/"),
    };
    let lines = all
        .iter()
        .filter(|d| p.manages(d))
        .map(|d| DomainLine {
            name: d.name.clone(),
            display: d.display.clone(),
            kind: match (&d.alias_of, &d.relay_to) {
                (Some(t), _) => format!(
                    "alias of {}",
                    all.iter()
                        .find(|x| x.id == *t)
                        .map_or("?", |x| x.display.as_str())
                ),
                (None, Some(r)) => format!("gateway to {r}"),
                (None, None) => "mailboxes".into(),
            },
            quota: size(d.default_quota),
        })
        .collect();
    render(
        StatusCode::OK,
        &DomainsPage {
            login: Some(p.login.clone()),
            csrf: p.csrf.clone(),
            notice: notice(q.done.as_deref()),
            provider: p.is_provider(),
            domains: lines,
        },
    )
}

#[derive(Deserialize)]
struct DomainForm {
    csrf: String,
    name: String,
}

async fn domain_create(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Form(f): Form<DomainForm>,
) -> Response {
    if let Err(r) = check_csrf(&p, &f.csrf) {
        return r;
    }
    if !p.is_provider() {
        return refusal(
            &p,
            ApiError::new(
                StatusCode::FORBIDDEN,
                "Only the provider's administrators add domains.",
            ),
            "/domains",
        );
    }
    match state
        .admin
        .domain_add(&p.actor(), &f.name, None, None, false)
        .await
    {
        Ok(d) => Redirect::to(&format!("/domains/{}?done=created", urlencode(&d.name))).into_response(),
        Err(e) => refusal(&p, e.into(), "/domains"),
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct MailboxLine {
    address: String,
    local: String,
    used: String,
    quota: String,
    state: String,
    enabled: bool,
    admin: bool,
}

struct AliasLine {
    address: String,
    local: String,
    members: String,
}

#[derive(Template)]
#[template(path = "domain.html")]
struct DomainPage {
    login: Option<String>,
    csrf: String,
    notice: String,
    domain: String,
    name: String,
    q: String,
    total: usize,
    page: usize,
    pages: usize,
    prev: Option<usize>,
    next: Option<usize>,
    mailboxes: Vec<MailboxLine>,
    aliases: Vec<AliasLine>,
}

#[derive(Deserialize)]
struct DomainQuery {
    #[serde(default)]
    q: String,
    page: Option<usize>,
    done: Option<String>,
}

/// The domain named in a path, if this principal manages it (404 as for
/// a domain not hosted otherwise).
async fn scoped(
    state: &State,
    p: &Principal,
    name: &str,
) -> Result<postroom_store::directory::DomainRow, Response> {
    let missing = || {
        refusal(
            p,
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("Domain {name} is not hosted here."),
            ),
            "/domains",
        )
    };
    let Ok(d) = postroom_admin::parse_domain(name) else {
        return Err(missing());
    };
    match state.admin.store().meta().domain(d.canonical()).await {
        Ok(Some(row)) if p.manages(&row) => Ok(row),
        Ok(_) => Err(missing()),
        Err(e) => Err(refusal(p, AdminError::from(e).into(), "/domains")),
    }
}

async fn domain_page(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Path(name): Path<String>,
    Query(q): Query<DomainQuery>,
) -> Response {
    let d = match scoped(&state, &p, &name).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let search: String = q.q.chars().take(100).collect();
    let page = q.page.unwrap_or(1).max(1);
    let (total, rows) = match state
        .admin
        .users_page(&d.name, &search, (page - 1).saturating_mul(PER_PAGE), PER_PAGE)
        .await
    {
        Ok(x) => x,
        Err(e) => return refusal(&p, e.into(), "/domains"),
    };
    let aliases = match state.admin.aliases(Some(&d.name)).await {
        Ok(a) => a,
        Err(e) => return refusal(&p, e.into(), "/domains"),
    };
    let pages = total.div_ceil(PER_PAGE).max(1);
    let mailboxes = rows
        .iter()
        .map(|u| MailboxLine {
            address: u.address.clone(),
            local: u.account.display.clone(),
            used: size(Some(u.usage)),
            quota: size(u.account.quota),
            state: if u.account.delete_after.is_some() {
                "removed".into()
            } else if u.account.enabled {
                "active".into()
            } else {
                "disabled".into()
            },
            enabled: u.account.enabled,
            admin: u.account.domain_admin,
        })
        .collect();
    let aliases = aliases
        .iter()
        .map(|a| AliasLine {
            address: a.address.clone(),
            local: a.row.display.clone(),
            members: a.row.targets.join(", "),
        })
        .collect();
    render(
        StatusCode::OK,
        &DomainPage {
            login: Some(p.login.clone()),
            csrf: p.csrf.clone(),
            notice: notice(q.done.as_deref()),
            domain: d.display.clone(),
            name: d.name.clone(),
            q: search,
            total,
            page,
            pages,
            prev: (page > 1).then(|| page - 1),
            next: (page < pages).then(|| page + 1),
            mailboxes,
            aliases,
        },
    )
}

fn back_to(d: &str, done: &str) -> Response {
    Redirect::to(&format!("/domains/{}?done={done}", urlencode(d))).into_response()
}

#[derive(Deserialize)]
struct MailboxForm {
    csrf: String,
    local: String,
    password: String,
    #[serde(default)]
    quota: String,
}

fn local_ok(local: &str) -> bool {
    !local.is_empty() && !local.contains('@') && local.len() <= 64
}

async fn mailbox_create(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Path(name): Path<String>,
    Form(f): Form<MailboxForm>,
) -> Response {
    if let Err(r) = check_csrf(&p, &f.csrf) {
        return r;
    }
    let d = match scoped(&state, &p, &name).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let back = format!("/domains/{}", urlencode(&d.name));
    let local = f.local.trim();
    if !local_ok(local) {
        return refusal(
            &p,
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Give the name before the @ only.",
            ),
            &back,
        );
    }
    let quota = match f.quota.trim() {
        "" => None,
        q => match postroom_admin::parse_size(q) {
            Ok(q) => Some(q),
            Err(e) => return refusal(&p, e.into(), &back),
        },
    };
    let address = format!("{local}@{}", d.name);
    match state
        .admin
        .user_add(
            &p.actor(),
            &address,
            NewPassword::Plain(Secret::new(f.password)),
            quota,
            false,
        )
        .await
    {
        Ok(_) => back_to(&d.name, "created"),
        Err(e) => refusal(&p, e.into(), &back),
    }
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: String,
    #[serde(default)]
    password: String,
}

async fn mailbox_action(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Path((name, local, action)): Path<(String, String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Err(r) = check_csrf(&p, &f.csrf) {
        return r;
    }
    let d = match scoped(&state, &p, &name).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let back = format!("/domains/{}", urlencode(&d.name));
    if !local_ok(&local) {
        return refusal(
            &p,
            ApiError::new(StatusCode::NOT_FOUND, "No such mailbox."),
            &back,
        );
    }
    let u = match state.admin.user_show(&format!("{local}@{}", d.name)).await {
        Ok(u) if p.is_provider() || u.account.domain_id == d.id => u,
        Ok(_) => {
            return refusal(
                &p,
                ApiError::new(StatusCode::NOT_FOUND, "No such mailbox."),
                &back,
            )
        }
        Err(e) => return refusal(&p, e.into(), &back),
    };
    let r = match action.as_str() {
        "disable" => crate::api::change_mailbox_as(&state, &p, &u, None, None, Some(false)).await,
        "enable" => crate::api::change_mailbox_as(&state, &p, &u, None, None, Some(true)).await,
        "password" => crate::api::change_mailbox_as(&state, &p, &u, None, Some(f.password), None).await,
        "remove" => crate::api::remove_mailbox_as(&state, &p, &u, false).await,
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "No such action.")),
    };
    match r {
        Ok(()) if action == "remove" => back_to(&d.name, "removed"),
        Ok(()) => back_to(&d.name, "changed"),
        Err(e) => refusal(&p, e, &back),
    }
}

#[derive(Deserialize)]
struct AliasForm {
    csrf: String,
    local: String,
    members: String,
}

async fn alias_create(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Path(name): Path<String>,
    Form(f): Form<AliasForm>,
) -> Response {
    if let Err(r) = check_csrf(&p, &f.csrf) {
        return r;
    }
    let d = match scoped(&state, &p, &name).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let back = format!("/domains/{}", urlencode(&d.name));
    let local = f.local.trim();
    if !local_ok(local) {
        return refusal(
            &p,
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Give the name before the @ only.",
            ),
            &back,
        );
    }
    match state
        .admin
        .alias_add(&p.actor(), &format!("{local}@{}", d.name), &f.members)
        .await
    {
        Ok(_) => back_to(&d.name, "created"),
        Err(e) => refusal(&p, e.into(), &back),
    }
}

async fn alias_remove(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Path((name, local)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check_csrf(&p, &f.csrf) {
        return r;
    }
    let d = match scoped(&state, &p, &name).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let back = format!("/domains/{}", urlencode(&d.name));
    if !local_ok(&local) {
        return refusal(&p, ApiError::new(StatusCode::NOT_FOUND, "No such alias."), &back);
    }
    match state
        .admin
        .alias_remove(&p.actor(), &format!("{local}@{}", d.name))
        .await
    {
        Ok(()) => back_to(&d.name, "removed"),
        Err(e) => refusal(&p, e.into(), &back),
    }
}
