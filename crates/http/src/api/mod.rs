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
use postroom_admin::AdminError;
use postroom_store::directory::DomainRow;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::{ApiError, ApiPrincipal, Principal};
use crate::session::{fingerprint, Role};
use crate::State;

mod aliases;
mod customers;
mod domains;
mod mailboxes;

pub(crate) use mailboxes::{change_mailbox_as, remove_mailbox_as};
// The handlers' generated `__path_*` descriptions, for the OpenAPI document.
use aliases::*;
use customers::*;
use domains::*;
use mailboxes::*;

type S = axum::extract::State<State>;

pub(super) type ApiResult<T> = Result<T, ApiError>;

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
    /// `provider`, `domain-admin`, or `acting-domain-admin` (provider
    /// staff managing one domain).
    role: String,
    /// The domain a domain admin manages.
    domain: Option<String>,
    /// Send it as `X-CSRF-Token` with every change.
    csrf_token: String,
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

pub(super) fn done() -> Json<Done> {
    Json(Done { ok: true })
}

// ---------------------------------------------------------------------
// Scope.

/// The domain named in a path, if the principal manages it; otherwise
/// 404, the same answer as for a domain that is not hosted.
pub(super) async fn scoped_domain(state: &State, p: &Principal, name: &str) -> ApiResult<DomainRow> {
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

pub(super) fn provider_only(p: &Principal) -> ApiResult<()> {
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
pub(super) fn address_in(local: &str, d: &DomainRow) -> ApiResult<String> {
    if local.is_empty() || local.contains('@') || local.len() > 64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{local}` is not a local part"),
        ));
    }
    Ok(format!("{local}@{}", d.name))
}

// ---------------------------------------------------------------------
// Handlers.

pub fn routes() -> Router<State> {
    Router::new()
        .route("/session", get(session))
        .route("/password", post(change_password))
        .route("/domains/{domain}/act-as", post(act_as))
        .route("/act-as/end", post(act_as_end))
        .route("/customers", get(list_customers).post(create_customer))
        .route(
            "/customers/{customer}",
            get(show_customer).patch(change_customer).delete(remove_customer),
        )
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
        .route(
            "/domains/{domain}/mailboxes/{local}/role",
            get(show_role).put(set_role),
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
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
) -> ApiResult<Json<SessionInfo>> {
    let (role, domain) = match &p.role {
        Role::Provider => ("provider", None),
        Role::DomainAdmin { domain, .. } | Role::Acting { domain } => (
            if matches!(p.role, Role::Acting { .. }) {
                "acting-domain-admin"
            } else {
                "domain-admin"
            },
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
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<Json<Done>> {
    if p.via_token {
        // A leaked token must not become the account itself.
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "log in to change your password: an API token may not",
        ));
    }
    crate::pages::change_own_password(&state, &p, &body.current, &body.new).await?;
    Ok(done())
}

/// "Manage this domain": a provider admin holding the manage-domains
/// permission turns this session into the domain's admin (audited). A
/// session only: a token keeps the role it was made for.
#[utoipa::path(post, path = "/api/v1/domains/{domain}/act-as", params(("domain" = String, Path)),
    responses((status = 200, body = SessionInfo), (status = 403), (status = 404)))]
async fn act_as(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath(domain): ApiPath<String>,
) -> ApiResult<Json<SessionInfo>> {
    if p.via_token || !p.is_provider() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only a provider admin's session may manage a domain as its admin",
        ));
    }
    let d = state
        .admin
        .provider_act_as(&p.actor(), &p.login, Some(&domain))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such domain"))?;
    state.sessions.set_role(&p.token, Role::Acting { domain: d.id });
    Ok(Json(SessionInfo {
        login: p.login,
        role: "acting-domain-admin".into(),
        domain: Some(d.name),
        csrf_token: p.csrf,
    }))
}

/// Ends "manage this domain": the session is the provider admin's again.
#[utoipa::path(post, path = "/api/v1/act-as/end", responses((status = 200, body = SessionInfo), (status = 403)))]
async fn act_as_end(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
) -> ApiResult<Json<SessionInfo>> {
    if !matches!(p.role, Role::Acting { .. }) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this session is not managing a domain",
        ));
    }
    state.admin.provider_act_as(&p.actor(), &p.login, None).await?;
    state.sessions.set_role(&p.token, Role::Provider);
    Ok(Json(SessionInfo {
        login: p.login,
        role: "provider".into(),
        domain: None,
        csrf_token: p.csrf,
    }))
}

pub(super) fn canonical(address: &str) -> String {
    postroom_admin::parse_address(address).map_or_else(|_| address.to_lowercase(), |a| a.canonical())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Postroom API",
        description = "Customers, domains, mailboxes and aliases. Send `Authorization: Bearer TOKEN` (postroom \
        api-token create), or log in with the console's form (POST /login) and send the session cookie and, \
        with every change, the X-CSRF-Token from GET /api/v1/session."
    ),
    paths(
        session,
        change_password,
        act_as,
        act_as_end,
        list_customers,
        create_customer,
        show_customer,
        change_customer,
        remove_customer,
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
        show_role,
        set_role,
        list_aliases,
        create_alias,
        show_alias,
        add_members,
        remove_member,
        remove_alias
    ),
    components(schemas(
        SessionInfo,
        Customer,
        Caps,
        Usage,
        NewCustomer,
        CustomerPatch,
        Domain,
        DomainDetail,
        NewDomain,
        DomainPatch,
        Mailbox,
        MailboxPage,
        NewMailbox,
        MailboxPatch,
        MailboxRole,
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
