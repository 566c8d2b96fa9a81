//! The forms of a domain's page: add a mailbox, disable, enable, reset its
//! password or remove it; add or remove an alias.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use postroom_admin::NewPassword;
use postroom_core::Secret;
use serde::Deserialize;

use super::*;
use crate::auth::ApiError;

#[derive(Deserialize)]
pub(super) struct MailboxForm {
    csrf: String,
    local: String,
    password: String,
    #[serde(default)]
    quota: String,
}

pub(super) fn local_ok(local: &str) -> bool {
    !local.is_empty() && !local.contains('@') && local.len() <= 64
}

/// What creating a mailbox and an alias start with: the CSRF token, the
/// domain in the principal's scope, and a local part alone (no `@`).
/// Returns the domain, the page to go back to, and the local part.
async fn new_address(
    state: &State,
    p: &Principal,
    name: &str,
    csrf: &str,
    local: &str,
) -> Result<(postroom_store::directory::DomainRow, String, String), Response> {
    check_csrf(p, csrf)?;
    let d = scoped(state, p, name).await?;
    let back = format!("/domains/{}", urlencode(&d.name));
    let local = local.trim();
    if !local_ok(local) {
        return Err(refusal(
            p,
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Give the name before the @ only.",
            ),
            &back,
        ));
    }
    Ok((d, back, local.to_string()))
}

pub(super) async fn mailbox_create(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Path(name): Path<String>,
    Form(f): Form<MailboxForm>,
) -> Response {
    let (d, back, local) = match new_address(&state, &p, &name, &f.csrf, &f.local).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let local = local.as_str();
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
pub(super) struct ActionForm {
    csrf: String,
    #[serde(default)]
    password: String,
}

pub(super) async fn mailbox_action(
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
pub(super) struct AliasForm {
    csrf: String,
    local: String,
    members: String,
}

pub(super) async fn alias_create(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Path(name): Path<String>,
    Form(f): Form<AliasForm>,
) -> Response {
    let (d, back, local) = match new_address(&state, &p, &name, &f.csrf, &f.local).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let local = local.as_str();
    match state
        .admin
        .alias_add(&p.actor(), &format!("{local}@{}", d.name), &f.members)
        .await
    {
        Ok(_) => back_to(&d.name, "created"),
        Err(e) => refusal(&p, e.into(), &back),
    }
}

pub(super) async fn alias_remove(
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
