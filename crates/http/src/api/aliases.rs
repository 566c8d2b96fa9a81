//! `/api/v1/domains/{domain}/aliases`: aliases and lists, their members.

use axum::http::StatusCode;
use axum::Json;
use postroom_admin::AliasInfo;
use postroom_store::directory::DomainRow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{address_in, canonical, done, scoped_domain, ApiJson, ApiPath, ApiResult, Done};
use crate::auth::{ApiError, ApiPrincipal, Principal};
use crate::State;

type S = axum::extract::State<State>;

#[derive(Serialize, ToSchema)]
pub struct Alias {
    /// `local@domain`, or `@domain` for the catch-all.
    address: String,
    members: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAlias {
    local: String,
    /// Addresses, or local parts of this domain.
    members: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Members {
    members: Vec<String>,
}

pub(super) fn alias_json(a: &AliasInfo) -> Alias {
    Alias {
        address: a.address.clone(),
        members: a.row.targets.clone(),
    }
}

/// The most targets one request may name (the service's own limit).
pub(super) fn members(list: &[String]) -> ApiResult<String> {
    if list.len() > postroom_admin::MAX_TARGETS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too many members",
        ));
    }
    if list.iter().any(|m| m.contains(',')) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "one address per member",
        ));
    }
    Ok(list.join(","))
}

#[utoipa::path(get, path = "/api/v1/domains/{domain}/aliases", params(("domain" = String, Path)),
    responses((status = 200, body = [Alias]), (status = 404)))]
pub(super) async fn list_aliases(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath(domain): ApiPath<String>,
) -> ApiResult<Json<Vec<Alias>>> {
    let d = scoped_domain(&state, &p, &domain).await?;
    let list = state.admin.aliases(Some(&d.name)).await?;
    Ok(Json(list.iter().map(alias_json).collect()))
}

/// Adds an alias or list (or members to an existing one).
#[utoipa::path(post, path = "/api/v1/domains/{domain}/aliases", params(("domain" = String, Path)), request_body = NewAlias,
    responses((status = 201, body = Alias), (status = 404), (status = 409), (status = 422)))]
pub(super) async fn create_alias(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath(domain): ApiPath<String>,
    ApiJson(b): ApiJson<NewAlias>,
) -> ApiResult<(StatusCode, Json<Alias>)> {
    let d = scoped_domain(&state, &p, &domain).await?;
    let address = address_in(&b.local, &d)?;
    let (a, _warning) = state
        .admin
        .alias_add(&p.actor(), &address, &members(&b.members)?)
        .await?;
    Ok((StatusCode::CREATED, Json(alias_json(&a))))
}

pub(super) async fn scoped_alias(
    state: &State,
    p: &Principal,
    domain: &str,
    local: &str,
) -> ApiResult<(DomainRow, AliasInfo)> {
    let d = scoped_domain(state, p, domain).await?;
    let address = address_in(local, &d)?;
    let wanted = canonical(&address);
    let found = state
        .admin
        .aliases(Some(&d.name))
        .await?
        .into_iter()
        .find(|a| canonical(&a.address) == wanted)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no alias {address}")))?;
    Ok((d, found))
}

#[utoipa::path(get, path = "/api/v1/domains/{domain}/aliases/{local}",
    params(("domain" = String, Path), ("local" = String, Path)),
    responses((status = 200, body = Alias), (status = 404)))]
pub(super) async fn show_alias(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath((domain, local)): ApiPath<(String, String)>,
) -> ApiResult<Json<Alias>> {
    let (_, a) = scoped_alias(&state, &p, &domain, &local).await?;
    Ok(Json(alias_json(&a)))
}

#[utoipa::path(post, path = "/api/v1/domains/{domain}/aliases/{local}/members",
    params(("domain" = String, Path), ("local" = String, Path)), request_body = Members,
    responses((status = 200, body = Alias), (status = 404), (status = 422)))]
pub(super) async fn add_members(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath((domain, local)): ApiPath<(String, String)>,
    ApiJson(b): ApiJson<Members>,
) -> ApiResult<Json<Alias>> {
    let (_, a) = scoped_alias(&state, &p, &domain, &local).await?;
    let a = state
        .admin
        .alias_members_add(&p.actor(), &a.address, &members(&b.members)?)
        .await?;
    Ok(Json(alias_json(&a)))
}

/// Removes one member; the last member gone, the alias goes.
#[utoipa::path(delete, path = "/api/v1/domains/{domain}/aliases/{local}/members/{member}",
    params(("domain" = String, Path), ("local" = String, Path), ("member" = String, Path)),
    responses((status = 200, body = Done), (status = 404), (status = 422)))]
pub(super) async fn remove_member(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath((domain, local, member)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<Done>> {
    let (_, a) = scoped_alias(&state, &p, &domain, &local).await?;
    state
        .admin
        .alias_members_remove(&p.actor(), &a.address, &members(&[member])?)
        .await?;
    Ok(done())
}

#[utoipa::path(delete, path = "/api/v1/domains/{domain}/aliases/{local}",
    params(("domain" = String, Path), ("local" = String, Path)),
    responses((status = 200, body = Done), (status = 404)))]
pub(super) async fn remove_alias(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath((domain, local)): ApiPath<(String, String)>,
) -> ApiResult<Json<Done>> {
    let (_, a) = scoped_alias(&state, &p, &domain, &local).await?;
    state.admin.alias_remove(&p.actor(), &a.address).await?;
    Ok(done())
}
