//! `/api/v1/domains`: list, add, show, change, remove.

use axum::http::StatusCode;
use axum::Json;
use postroom_admin::DomainChange;
use postroom_store::directory::DomainRow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{done, provider_only, scoped_domain, ApiJson, ApiPath, ApiQuery, ApiResult, Done, RemoveQuery};
use crate::auth::ApiPrincipal;
use crate::State;

type S = axum::extract::State<State>;

#[derive(Serialize, ToSchema)]
pub struct Domain {
    name: String,
    display: String,
    /// The domain this one is an alias of.
    alias_of: Option<String>,
    subaddress_separator: String,
    default_quota: Option<i64>,
    /// Gateway domains: the customer's server (`host:port`).
    relay_to: Option<String>,
    relay_verify: bool,
}

#[derive(Serialize, ToSchema)]
pub struct DomainDetail {
    #[serde(flatten)]
    domain: Domain,
    mailboxes: usize,
    aliases: usize,
    alias_domains: Vec<String>,
    queued: usize,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomain {
    name: String,
    /// Makes it an alias of this hosted domain.
    alias_of: Option<String>,
    /// Makes it a gateway domain relayed to this `host:port`.
    relay_to: Option<String>,
    #[serde(default)]
    verify: bool,
    /// The customer that owns it (checked against its domains cap).
    customer: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainPatch {
    /// One character, or "" to turn subaddressing off.
    subaddress_separator: Option<String>,
    /// A size (`2G`, `500M`) or `none`.
    default_quota: Option<String>,
    /// `host:port`, or `none` to make a gateway domain local again.
    relay_to: Option<String>,
    verify: Option<bool>,
}

pub(super) fn domain_json(d: &DomainRow, all: &[DomainRow]) -> Domain {
    Domain {
        name: d.name.clone(),
        display: d.display.clone(),
        alias_of: d
            .alias_of
            .and_then(|t| all.iter().find(|x| x.id == t))
            .map(|t| t.name.clone()),
        subaddress_separator: d.subaddress_separator.clone(),
        default_quota: d.default_quota,
        relay_to: d.relay_to.clone(),
        relay_verify: d.relay_verify,
    }
}

/// The domains the principal manages.
#[utoipa::path(get, path = "/api/v1/domains", responses((status = 200, body = [Domain])))]
pub(super) async fn list_domains(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
) -> ApiResult<Json<Vec<Domain>>> {
    let all = state.admin.domains().await?;
    Ok(Json(
        all.iter()
            .filter(|d| p.manages(d))
            .map(|d| domain_json(d, &all))
            .collect(),
    ))
}

/// Adds a domain (provider admins only).
#[utoipa::path(post, path = "/api/v1/domains", request_body = NewDomain,
    responses((status = 201, body = Domain), (status = 403), (status = 409), (status = 422)))]
pub(super) async fn create_domain(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiJson(b): ApiJson<NewDomain>,
) -> ApiResult<(StatusCode, Json<Domain>)> {
    provider_only(&p)?;
    let row = state
        .admin
        .domain_add_for(
            &p.actor(),
            &b.name,
            b.alias_of.as_deref(),
            b.relay_to.as_deref(),
            b.verify,
            b.customer.as_deref(),
        )
        .await?;
    let all = state.admin.domains().await?;
    Ok((StatusCode::CREATED, Json(domain_json(&row, &all))))
}

#[utoipa::path(get, path = "/api/v1/domains/{domain}", params(("domain" = String, Path)),
    responses((status = 200, body = DomainDetail), (status = 404)))]
pub(super) async fn show_domain(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath(domain): ApiPath<String>,
) -> ApiResult<Json<DomainDetail>> {
    let d = scoped_domain(&state, &p, &domain).await?;
    let info = state.admin.domain_show(&d.name).await?;
    let all = state.admin.domains().await?;
    Ok(Json(DomainDetail {
        domain: domain_json(&info.row, &all),
        mailboxes: info.mailboxes,
        aliases: info.aliases.len(),
        alias_domains: info.alias_domains.iter().map(|a| a.name.clone()).collect(),
        queued: info.queued,
    }))
}

/// Changes a domain's settings (provider admins only).
#[utoipa::path(patch, path = "/api/v1/domains/{domain}", params(("domain" = String, Path)), request_body = DomainPatch,
    responses((status = 200, body = Domain), (status = 403), (status = 404), (status = 422)))]
pub(super) async fn change_domain(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath(domain): ApiPath<String>,
    ApiJson(b): ApiJson<DomainPatch>,
) -> ApiResult<Json<Domain>> {
    let d = scoped_domain(&state, &p, &domain).await?;
    provider_only(&p)?;
    let change = DomainChange {
        separator: b.subaddress_separator,
        default_quota: b
            .default_quota
            .as_deref()
            .map(postroom_admin::parse_quota)
            .transpose()?,
        relay_to: b.relay_to.map(|r| {
            if r.trim().eq_ignore_ascii_case("none") {
                None
            } else {
                Some(r)
            }
        }),
        verify: b.verify,
    };
    let row = state.admin.domain_set(&p.actor(), &d.name, change).await?;
    let all = state.admin.domains().await?;
    Ok(Json(domain_json(&row, &all)))
}

/// Removes a domain (provider admins only); refused while it has
/// mailboxes or queued mail unless `force`.
#[utoipa::path(delete, path = "/api/v1/domains/{domain}", params(("domain" = String, Path), RemoveQuery),
    responses((status = 200, body = Done), (status = 403), (status = 404), (status = 409)))]
pub(super) async fn remove_domain(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath(domain): ApiPath<String>,
    ApiQuery(q): ApiQuery<RemoveQuery>,
) -> ApiResult<Json<Done>> {
    let d = scoped_domain(&state, &p, &domain).await?;
    provider_only(&p)?;
    state.admin.domain_remove(&p.actor(), &d.name, q.force).await?;
    Ok(done())
}
