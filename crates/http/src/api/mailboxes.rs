//! `/api/v1/domains/{domain}/mailboxes`: a page of them, add, show,
//! change (quota, password, enabled), remove.

use axum::http::StatusCode;
use axum::Json;
use postroom_admin::{NewPassword, Permissions, UserInfo};
use postroom_core::Secret;
use postroom_store::directory::DomainRow;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    address_in, canonical, done, scoped_domain, ApiJson, ApiPath, ApiQuery, ApiResult, Done, RemoveQuery,
};
use crate::auth::{ApiError, ApiPrincipal, Principal};
use crate::session::Role;
use crate::State;

type S = axum::extract::State<State>;

#[derive(Serialize, ToSchema)]
pub struct Mailbox {
    address: String,
    quota: Option<i64>,
    /// Bytes stored.
    usage: i64,
    messages: i64,
    enabled: bool,
    domain_admin: bool,
    forward_to: Vec<String>,
    /// Unix seconds.
    last_login: Option<i64>,
    /// Removed: its mail is deleted after this time (unix seconds).
    delete_after: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct MailboxPage {
    /// Mailboxes matching the search.
    total: usize,
    page: usize,
    per_page: usize,
    mailboxes: Vec<Mailbox>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only addresses containing this (any case).
    #[serde(default)]
    q: String,
    /// From 1.
    page: Option<usize>,
    /// At most 500; 50 when not given.
    per_page: Option<usize>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMailbox {
    /// The local part (before the @).
    local: String,
    #[schema(value_type = String)]
    password: String,
    /// A size (`2G`, `500M`); the domain's default when not given.
    quota: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailboxPatch {
    /// A size, or `none` for the domain's default.
    quota: Option<String>,
    password: Option<String>,
    enabled: Option<bool>,
}

pub(super) fn mailbox_json(u: &UserInfo) -> Mailbox {
    Mailbox {
        address: u.address.clone(),
        quota: u.account.quota,
        usage: u.usage,
        messages: u.messages,
        enabled: u.account.enabled,
        domain_admin: u.account.domain_admin,
        forward_to: u.account.forward_to.clone(),
        last_login: u.account.last_login,
        delete_after: u.account.delete_after,
    }
}

/// A page of the domain's mailboxes, by address.
#[utoipa::path(get, path = "/api/v1/domains/{domain}/mailboxes", params(("domain" = String, Path), ListQuery),
    responses((status = 200, body = MailboxPage), (status = 404)))]
pub(super) async fn list_mailboxes(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath(domain): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<MailboxPage>> {
    let d = scoped_domain(&state, &p, &domain).await?;
    let per_page = q.per_page.unwrap_or(50).clamp(1, 500);
    let page = q.page.unwrap_or(1).max(1);
    let offset = (page - 1).saturating_mul(per_page);
    let (total, rows) = state.admin.users_page(&d.name, &q.q, offset, per_page).await?;
    Ok(Json(MailboxPage {
        total,
        page,
        per_page,
        mailboxes: rows.iter().map(mailbox_json).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/domains/{domain}/mailboxes", params(("domain" = String, Path)), request_body = NewMailbox,
    responses((status = 201, body = Mailbox), (status = 404), (status = 409), (status = 422)))]
pub(super) async fn create_mailbox(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath(domain): ApiPath<String>,
    ApiJson(b): ApiJson<NewMailbox>,
) -> ApiResult<(StatusCode, Json<Mailbox>)> {
    let d = scoped_domain(&state, &p, &domain).await?;
    let address = address_in(&b.local, &d)?;
    let quota = b.quota.as_deref().map(postroom_admin::parse_size).transpose()?;
    if quota.is_some() {
        state
            .admin
            .require_permission(p.grantor(), Permissions::QUOTAS)
            .await?;
    }
    let u = state
        .admin
        .user_add(
            &p.actor(),
            &address,
            NewPassword::Plain(Secret::new(b.password)),
            quota,
            false,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(mailbox_json(&u))))
}

/// The mailbox, if the principal manages its domain.
pub(super) async fn scoped_mailbox(
    state: &State,
    p: &Principal,
    domain: &str,
    local: &str,
) -> ApiResult<(DomainRow, UserInfo)> {
    let d = scoped_domain(state, p, domain).await?;
    let address = address_in(local, &d)?;
    let u = state.admin.user_show(&address).await?;
    // The row the service found must be in a domain this principal
    // manages (it is the path's domain: belt and braces).
    if let Role::DomainAdmin { domain, .. } | Role::Acting { domain } = p.role {
        if u.account.domain_id != domain {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no mailbox {address}"),
            ));
        }
    }
    Ok((d, u))
}

#[utoipa::path(get, path = "/api/v1/domains/{domain}/mailboxes/{local}",
    params(("domain" = String, Path), ("local" = String, Path)),
    responses((status = 200, body = Mailbox), (status = 404)))]
pub(super) async fn show_mailbox(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath((domain, local)): ApiPath<(String, String)>,
) -> ApiResult<Json<Mailbox>> {
    let (_, u) = scoped_mailbox(&state, &p, &domain, &local).await?;
    Ok(Json(mailbox_json(&u)))
}

/// Sets a mailbox's quota, password or state. A domain admin may not
/// change their own quota (nobody raises their own limits).
#[utoipa::path(patch, path = "/api/v1/domains/{domain}/mailboxes/{local}",
    params(("domain" = String, Path), ("local" = String, Path)), request_body = MailboxPatch,
    responses((status = 200, body = Mailbox), (status = 403), (status = 404), (status = 422)))]
pub(super) async fn change_mailbox(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath((domain, local)): ApiPath<(String, String)>,
    ApiJson(b): ApiJson<MailboxPatch>,
) -> ApiResult<Json<Mailbox>> {
    let (_, u) = scoped_mailbox(&state, &p, &domain, &local).await?;
    let quota = b.quota.as_deref().map(postroom_admin::parse_quota).transpose()?;
    change_mailbox_as(&state, &p, &u, quota, b.password, b.enabled).await?;
    Ok(Json(mailbox_json(&state.admin.user_show(&u.address).await?)))
}

/// The one place a mailbox changes through the HTTP side (API and pages).
pub(crate) async fn change_mailbox_as(
    state: &State,
    p: &Principal,
    u: &UserInfo,
    quota: Option<Option<i64>>,
    password: Option<String>,
    enabled: Option<bool>,
) -> ApiResult<()> {
    let own = matches!(p.role, Role::DomainAdmin { account, .. } if account == u.account.id);
    if own && quota.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "you may not change your own quota",
        ));
    }
    if own && enabled == Some(false) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "you may not disable your own mailbox",
        ));
    }
    let actor = p.actor();
    if let Some(q) = quota {
        state
            .admin
            .require_permission(p.grantor(), Permissions::QUOTAS)
            .await?;
        state.admin.user_set_quota(&actor, &u.address, q).await?;
    }
    if let Some(pw) = password {
        if own {
            // Through the own-password path, so this session survives.
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "change your own password with POST /api/v1/password",
            ));
        }
        state
            .admin
            .user_passwd(&actor, &u.address, NewPassword::Plain(Secret::new(pw)))
            .await?;
        state.sessions.end_all(&canonical(&u.address));
    }
    if let Some(e) = enabled {
        state.admin.user_set_enabled(&actor, &u.address, e).await?;
    }
    Ok(())
}

/// Removes a mailbox: disabled at once, its mail deleted after 7 days
/// (or now with `force`).
#[utoipa::path(delete, path = "/api/v1/domains/{domain}/mailboxes/{local}",
    params(("domain" = String, Path), ("local" = String, Path), RemoveQuery),
    responses((status = 200, body = Done), (status = 403), (status = 404)))]
pub(super) async fn remove_mailbox(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath((domain, local)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<RemoveQuery>,
) -> ApiResult<Json<Done>> {
    let (_, u) = scoped_mailbox(&state, &p, &domain, &local).await?;
    remove_mailbox_as(&state, &p, &u, q.force).await?;
    Ok(done())
}

pub(crate) async fn remove_mailbox_as(
    state: &State,
    p: &Principal,
    u: &UserInfo,
    now: bool,
) -> ApiResult<()> {
    if matches!(p.role, Role::DomainAdmin { account, .. } if account == u.account.id) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "you may not remove your own mailbox",
        ));
    }
    state.admin.user_remove(&p.actor(), &u.address, now).await?;
    state.sessions.end_all(&canonical(&u.address));
    Ok(())
}

/// A mailbox's role: domain admin or not, and its permission flags.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailboxRole {
    domain_admin: bool,
    /// Flag names: quarantine, spam-policy, forward-outside, quotas,
    /// gateway.
    #[serde(default)]
    permissions: Vec<String>,
}

/// The most flag names one request may carry (there are five).
const MAX_PERMISSION_NAMES: usize = 16;

#[utoipa::path(get, path = "/api/v1/domains/{domain}/mailboxes/{local}/role",
    params(("domain" = String, Path), ("local" = String, Path)),
    responses((status = 200, body = MailboxRole), (status = 404)))]
pub(super) async fn show_role(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath((domain, local)): ApiPath<(String, String)>,
) -> ApiResult<Json<MailboxRole>> {
    let (_, u) = scoped_mailbox(&state, &p, &domain, &local).await?;
    let perms = state.admin.admin_permissions(&u.address).await?;
    Ok(Json(MailboxRole {
        domain_admin: u.account.domain_admin,
        permissions: perms.names().into_iter().map(String::from).collect(),
    }))
}

/// Makes a mailbox a domain admin with these permissions, or not. A
/// domain admin may grant only permissions it holds, never to itself.
#[utoipa::path(put, path = "/api/v1/domains/{domain}/mailboxes/{local}/role",
    params(("domain" = String, Path), ("local" = String, Path)), request_body = MailboxRole,
    responses((status = 200, body = MailboxRole), (status = 403), (status = 404), (status = 422)))]
pub(super) async fn set_role(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath((domain, local)): ApiPath<(String, String)>,
    ApiJson(b): ApiJson<MailboxRole>,
) -> ApiResult<Json<MailboxRole>> {
    let (_, u) = scoped_mailbox(&state, &p, &domain, &local).await?;
    if b.permissions.len() > MAX_PERMISSION_NAMES {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too many permissions",
        ));
    }
    let perms = Permissions::parse(&b.permissions.join(","))?;
    let set = state
        .admin
        .user_set_role(&p.actor(), p.grantor(), &u.address, b.domain_admin, perms)
        .await?;
    if !b.domain_admin {
        // Their console sessions end with the role.
        state.sessions.end_all(&canonical(&u.address));
    }
    Ok(Json(MailboxRole {
        domain_admin: b.domain_admin,
        permissions: set.names().into_iter().map(String::from).collect(),
    }))
}
