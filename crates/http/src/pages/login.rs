//! Logging in and out, and the own password.

use askama::Template;
use axum::extract::Query;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use postroom_admin::{AdminError, NewPassword};
use postroom_core::Secret;
use postroom_directory::auth::LoginError;
use serde::Deserialize;

use super::*;
use crate::auth::{self, ApiError, Principal};
use crate::session::Role;
use crate::State;

#[derive(Template)]
#[template(path = "login.html")]
pub(super) struct LoginPage {
    login: Option<String>,
    csrf: String,
    notice: String,
    login_token: String,
    error: String,
    typed: String,
}

pub(super) fn login_page(status: StatusCode, tls: bool, error: &str, typed: &str) -> Response {
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

pub(super) async fn login_form(parts: Parts) -> Response {
    login_page(StatusCode::OK, auth::conn_info(&parts).tls, "", "")
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    login_token: String,
    login: String,
    password: String,
}

pub(super) async fn login_submit(
    axum::extract::State(state): S,
    parts: Parts,
    Form(f): Form<LoginForm>,
) -> Response {
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

pub(super) async fn logout(
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

#[derive(Template)]
#[template(path = "password.html")]
pub(super) struct PasswordPage {
    login: Option<String>,
    csrf: String,
    notice: String,
}

pub(super) async fn password_form(PagePrincipal(p): PagePrincipal, Query(q): Query<NoticeQuery>) -> Response {
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
pub(super) struct PasswordForm {
    csrf: String,
    current: String,
    new: String,
}

pub(super) async fn password_submit(
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
    match auth::check_password(state, p.ip, &p.login, &Secret::new(current.to_string())).await {
        Ok(_) => {}
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
        Role::Provider | Role::Acting { .. } => {
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
