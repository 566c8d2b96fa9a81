//! The JSON API under `/api/v1/`: domains, their mailboxes and aliases.
//! Each handler checks the principal's scope, then calls the admin
//! service function the CLI calls. A domain admin asking about another
//! domain's objects gets 404, as if they did not exist: the API does not
//! tell them which domains are hosted here.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use postroom_admin::{AdminError, AliasInfo, DomainChange, NewPassword, UserInfo};
use postroom_core::Secret;
use postroom_store::directory::DomainRow;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::{ApiError, ApiPrincipal, Principal};
use crate::session::{fingerprint, Role};
use crate::State;

type ApiResult<T> = Result<T, ApiError>;

// ---------------------------------------------------------------------
// Extractors whose refusals are JSON with a 4xx status.

/// A JSON body; unknown fields, malformed JSON, a wrong content type and
/// an oversized body are 4xx with a message, never 5xx.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(ApiError::new(e.status(), e.body_text())),
        }
    }
}

/// Path parameters, percent-decoded; a malformed one is 400.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, e.body_text())),
        }
    }
}

/// Query parameters; a malformed one is 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, e.body_text())),
        }
    }
}

// ---------------------------------------------------------------------
// Bodies and answers.

#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    /// The login address.
    login: String,
    /// `provider` or `domain-admin`.
    role: String,
    /// The domain a domain admin manages.
    domain: Option<String>,
    /// Send it as `X-CSRF-Token` with every change.
    csrf_token: String,
}

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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current: String,
    new: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    /// Domains: remove its mailboxes too. Mailboxes: delete the mail now
    /// rather than after 7 days.
    #[serde(default)]
    force: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Done {
    ok: bool,
}

fn done() -> Json<Done> {
    Json(Done { ok: true })
}

// ---------------------------------------------------------------------
// Scope.

/// The domain named in a path, if the principal manages it; otherwise
/// 404, the same answer as for a domain that is not hosted.
async fn scoped_domain(state: &State, p: &Principal, name: &str) -> ApiResult<DomainRow> {
    let missing = || ApiError::new(StatusCode::NOT_FOUND, format!("domain {name} is not hosted here"));
    let Ok(d) = postroom_admin::parse_domain(name) else {
        return Err(missing());
    };
    let row = state
        .admin
        .store()
        .meta()
        .domain(d.canonical())
        .await
        .map_err(AdminError::from)?
        .ok_or_else(missing)?;
    if !p.manages(&row) {
        return Err(missing());
    }
    Ok(row)
}

fn provider_only(p: &Principal) -> ApiResult<()> {
    if p.is_provider() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only the provider's administrators may do this",
        ))
    }
}

/// `local@domain` of a path's parts, refused (400) when the local part
/// holds an @ or is empty: `a@other.example@mine.example` would otherwise
/// name another domain's mailbox.
fn address_in(local: &str, d: &DomainRow) -> ApiResult<String> {
    if local.is_empty() || local.contains('@') || local.len() > 64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{local}` is not a local part"),
        ));
    }
    Ok(format!("{local}@{}", d.name))
}

fn domain_json(d: &DomainRow, all: &[DomainRow]) -> Domain {
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

fn mailbox_json(u: &UserInfo) -> Mailbox {
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

fn alias_json(a: &AliasInfo) -> Alias {
    Alias {
        address: a.address.clone(),
        members: a.row.targets.clone(),
    }
}

/// The most targets one request may name (the service's own limit).
fn members(list: &[String]) -> ApiResult<String> {
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

// ---------------------------------------------------------------------
// Handlers.

pub fn routes() -> Router<State> {
    Router::new()
        .route("/session", get(session))
        .route("/password", post(change_password))
        .route("/domains", get(list_domains).post(create_domain))
        .route(
            "/domains/{domain}",
            get(show_domain).patch(change_domain).delete(remove_domain),
        )
        .route(
            "/domains/{domain}/mailboxes",
            get(list_mailboxes).post(create_mailbox),
        )
        .route(
            "/domains/{domain}/mailboxes/{local}",
            get(show_mailbox).patch(change_mailbox).delete(remove_mailbox),
        )
        .route("/domains/{domain}/aliases", get(list_aliases).post(create_alias))
        .route(
            "/domains/{domain}/aliases/{local}",
            get(show_alias).delete(remove_alias),
        )
        .route("/domains/{domain}/aliases/{local}/members", post(add_members))
        .route(
            "/domains/{domain}/aliases/{local}/members/{member}",
            delete(remove_member),
        )
}

/// Who is logged in, and the CSRF token for changes.
#[utoipa::path(get, path = "/api/v1/session", responses((status = 200, body = SessionInfo), (status = 401)))]
async fn session(
    axum::extract::State(state): axum::extract::State<State>,
    ApiPrincipal(p): ApiPrincipal,
) -> ApiResult<Json<SessionInfo>> {
    let (role, domain) = match &p.role {
        Role::Provider => ("provider", None),
        Role::DomainAdmin { domain, .. } => (
            "domain-admin",
            state
                .admin
                .store()
                .meta()
                .domain_by_id(*domain)
                .await
                .map_err(AdminError::from)?
                .map(|d| d.name),
        ),
    };
    Ok(Json(SessionInfo {
        login: p.login,
        role: role.into(),
        domain,
        csrf_token: p.csrf,
    }))
}

/// Changes the logged-in administrator's own password; their other
/// sessions end.
#[utoipa::path(post, path = "/api/v1/password", request_body = PasswordChange,
    responses((status = 200, body = Done), (status = 403), (status = 422)))]
async fn change_password(
    axum::extract::State(state): axum::extract::State<State>,
    ApiPrincipal(p): ApiPrincipal,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<Json<Done>> {
    crate::pages::change_own_password(&state, &p, &body.current, &body.new).await?;
    Ok(done())
}

/// The domains the principal manages.
#[utoipa::path(get, path = "/api/v1/domains", responses((status = 200, body = [Domain])))]
async fn list_domains(
    axum::extract::State(state): axum::extract::State<State>,
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
async fn create_domain(
    axum::extract::State(state): axum::extract::State<State>,
    ApiPrincipal(p): ApiPrincipal,
    ApiJson(b): ApiJson<NewDomain>,
) -> ApiResult<(StatusCode, Json<Domain>)> {
    provider_only(&p)?;
    let row = state
        .admin
        .domain_add(
            &p.actor(),
            &b.name,
            b.alias_of.as_deref(),
            b.relay_to.as_deref(),
            b.verify,
        )
        .await?;
    let all = state.admin.domains().await?;
    Ok((StatusCode::CREATED, Json(domain_json(&row, &all))))
}

#[utoipa::path(get, path = "/api/v1/domains/{domain}", params(("domain" = String, Path)),
    responses((status = 200, body = DomainDetail), (status = 404)))]
async fn show_domain(
    axum::extract::State(state): axum::extract::State<State>,
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
async fn change_domain(
    axum::extract::State(state): axum::extract::State<State>,
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
async fn remove_domain(
    axum::extract::State(state): axum::extract::State<State>,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath(domain): ApiPath<String>,
    ApiQuery(q): ApiQuery<RemoveQuery>,
) -> ApiResult<Json<Done>> {
    let d = scoped_domain(&state, &p, &domain).await?;
    provider_only(&p)?;
    state.admin.domain_remove(&p.actor(), &d.name, q.force).await?;
    Ok(done())
}

/// A page of the domain's mailboxes, by address.
#[utoipa::path(get, path = "/api/v1/domains/{domain}/mailboxes", params(("domain" = String, Path), ListQuery),
    responses((status = 200, body = MailboxPage), (status = 404)))]
async fn list_mailboxes(
    axum::extract::State(state): axum::extract::State<State>,
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
async fn create_mailbox(
    axum::extract::State(state): axum::extract::State<State>,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath(domain): ApiPath<String>,
    ApiJson(b): ApiJson<NewMailbox>,
) -> ApiResult<(StatusCode, Json<Mailbox>)> {
    let d = scoped_domain(&state, &p, &domain).await?;
    let address = address_in(&b.local, &d)?;
    let quota = b.quota.as_deref().map(postroom_admin::parse_size).transpose()?;
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
async fn scoped_mailbox(
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
    if let Role::DomainAdmin { domain, .. } = p.role {
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
async fn show_mailbox(
    axum::extract::State(state): axum::extract::State<State>,
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
async fn change_mailbox(
    axum::extract::State(state): axum::extract::State<State>,
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

fn canonical(address: &str) -> String {
    postroom_admin::parse_address(address).map_or_else(|_| address.to_lowercase(), |a| a.canonical())
}

/// Removes a mailbox: disabled at once, its mail deleted after 7 days
/// (or now with `force`).
#[utoipa::path(delete, path = "/api/v1/domains/{domain}/mailboxes/{local}",
    params(("domain" = String, Path), ("local" = String, Path), RemoveQuery),
    responses((status = 200, body = Done), (status = 403), (status = 404)))]
async fn remove_mailbox(
    axum::extract::State(state): axum::extract::State<State>,
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

#[utoipa::path(get, path = "/api/v1/domains/{domain}/aliases", params(("domain" = String, Path)),
    responses((status = 200, body = [Alias]), (status = 404)))]
async fn list_aliases(
    axum::extract::State(state): axum::extract::State<State>,
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
async fn create_alias(
    axum::extract::State(state): axum::extract::State<State>,
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

async fn scoped_alias(
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
async fn show_alias(
    axum::extract::State(state): axum::extract::State<State>,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath((domain, local)): ApiPath<(String, String)>,
) -> ApiResult<Json<Alias>> {
    let (_, a) = scoped_alias(&state, &p, &domain, &local).await?;
    Ok(Json(alias_json(&a)))
}

#[utoipa::path(post, path = "/api/v1/domains/{domain}/aliases/{local}/members",
    params(("domain" = String, Path), ("local" = String, Path)), request_body = Members,
    responses((status = 200, body = Alias), (status = 404), (status = 422)))]
async fn add_members(
    axum::extract::State(state): axum::extract::State<State>,
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
async fn remove_member(
    axum::extract::State(state): axum::extract::State<State>,
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
async fn remove_alias(
    axum::extract::State(state): axum::extract::State<State>,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath((domain, local)): ApiPath<(String, String)>,
) -> ApiResult<Json<Done>> {
    let (_, a) = scoped_alias(&state, &p, &domain, &local).await?;
    state.admin.alias_remove(&p.actor(), &a.address).await?;
    Ok(done())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Postroom API",
        description = "Domains, mailboxes and aliases. Log in with the console's form (POST /login); \
        send the session cookie and, with every change, the X-CSRF-Token from GET /api/v1/session."
    ),
    paths(
        session,
        change_password,
        list_domains,
        create_domain,
        show_domain,
        change_domain,
        remove_domain,
        list_mailboxes,
        create_mailbox,
        show_mailbox,
        change_mailbox,
        remove_mailbox,
        list_aliases,
        create_alias,
        show_alias,
        add_members,
        remove_member,
        remove_alias
    ),
    components(schemas(
        SessionInfo,
        Domain,
        DomainDetail,
        NewDomain,
        DomainPatch,
        Mailbox,
        MailboxPage,
        NewMailbox,
        MailboxPatch,
        Alias,
        NewAlias,
        Members,
        PasswordChange,
        Done
    ))
)]
struct ApiDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub async fn openapi_json() -> Response {
    Json(document()).into_response()
}

/// The fingerprint a session keeps, for the own-password change.
pub(crate) fn new_fingerprint(hash: &str) -> String {
    fingerprint(hash)
}
