//! The console's pages: server-rendered (askama escapes every value), no
//! script, a form per change carrying the session's CSRF token. Each
//! change calls the same function as the API (`api::change_mailbox_as`
//! and the admin service), then redirects (POST-redirect-GET) with a
//! fixed notice code, so no text from the request is echoed into a page.

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use postroom_admin::AdminError;
use serde::Deserialize;

use crate::auth::{self, ApiError, NoPrincipal, Principal};
use crate::State;

mod customers;
mod domains;
mod login;
mod mailboxes;

use customers::*;
use domains::*;
pub(crate) use login::change_own_password;
use login::*;
use mailboxes::*;

pub(super) type S = axum::extract::State<State>;

pub(super) const CSS: &str = include_str!("../../static/console.css");

/// Mailboxes per page: a screenful.
pub(super) const PER_PAGE: usize = 50;

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
        .route("/customers", get(customers).post(customer_save))
        .route("/domains/{domain}/act-as", post(act_as_page))
        .route("/act-as/end", post(act_as_end_page))
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

pub(super) async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

pub(super) fn render<T: Template>(status: StatusCode, t: &T) -> Response {
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
pub(super) struct ErrorPage<'a> {
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
pub(super) fn refusal(p: &Principal, e: ApiError, back: &str) -> Response {
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
pub(super) struct PagePrincipal(Principal);

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
pub(super) fn check_csrf(p: &Principal, sent: &str) -> Result<(), Response> {
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
pub(super) fn notice(code: Option<&str>) -> String {
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
pub(super) struct NoticeQuery {
    done: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

pub(super) fn size(n: Option<i64>) -> String {
    match n {
        None => "none".into(),
        Some(b) if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}G", b >> 30),
        Some(b) if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}M", b >> 20),
        Some(b) if b >= 1 << 20 => format!("{:.1}M", b as f64 / f64::from(1 << 20)),
        Some(b) if b >= 1 << 10 => format!("{}K", b >> 10),
        Some(b) => format!("{b} bytes"),
    }
}

pub(super) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The domain named in a path, if this principal manages it (404 as for
/// a domain not hosted otherwise).
pub(super) async fn scoped(
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

pub(super) fn back_to(d: &str, done: &str) -> Response {
    Redirect::to(&format!("/domains/{}?done={done}", urlencode(d))).into_response()
}
