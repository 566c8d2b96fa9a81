//! `/api/v1/customers` (provider admins only): customers (tenants), their
//! caps and usage, and the domains they own. The caps are checked by the
//! admin service on every addition, whoever asks for it.

use axum::http::StatusCode;
use axum::Json;
use postroom_admin::{CustomerChange, CustomerInfo};
use postroom_store::CustomerCaps;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::{done, provider_only, ApiJson, ApiPath, ApiResult, Done};
use crate::auth::ApiPrincipal;
use crate::State;

type S = axum::extract::State<State>;

/// Caps; `null` is no cap. Storage is in bytes: the most the customer's
/// mailboxes' quotas may add up to.
#[derive(Serialize, ToSchema)]
pub struct Caps {
    max_domains: Option<i64>,
    max_mailboxes: Option<i64>,
    max_aliases: Option<i64>,
    max_storage: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Usage {
    domains: i64,
    mailboxes: i64,
    aliases: i64,
    /// Bytes of quota given to the mailboxes.
    storage: i64,
    /// Mailboxes with no quota at all.
    unlimited_mailboxes: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Customer {
    name: String,
    caps: Caps,
    usage: Usage,
    /// The domains it owns.
    domains: Vec<String>,
    /// Unix seconds.
    created: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    name: String,
    /// Caps; absent or `null` is no cap.
    #[serde(default)]
    max_domains: Option<i64>,
    #[serde(default)]
    max_mailboxes: Option<i64>,
    #[serde(default)]
    max_aliases: Option<i64>,
    /// Bytes.
    #[serde(default)]
    max_storage: Option<i64>,
}

/// A field given (`null` lifts the cap) or not given (unchanged).
fn given<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerPatch {
    /// A number, or `null` to lift the cap; absent leaves it.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<i64>)]
    max_domains: Option<Option<i64>>,
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<i64>)]
    max_mailboxes: Option<Option<i64>>,
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<i64>)]
    max_aliases: Option<Option<i64>>,
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<i64>)]
    max_storage: Option<Option<i64>>,
    /// Hosted domains to give to the customer (checked against its caps).
    #[serde(default)]
    add_domains: Vec<String>,
    /// Domains to take from it.
    #[serde(default)]
    remove_domains: Vec<String>,
}

/// The most domains one PATCH gives or takes: a customer's move is a
/// handful; a list of thousands is a migration, for the CLI.
const MAX_DOMAINS_PER_PATCH: usize = 100;

fn customer_json(c: CustomerInfo) -> Customer {
    let caps = c.row.caps;
    Customer {
        name: c.row.name,
        caps: Caps {
            max_domains: caps.max_domains,
            max_mailboxes: caps.max_mailboxes,
            max_aliases: caps.max_aliases,
            max_storage: caps.max_storage,
        },
        usage: Usage {
            domains: c.usage.domains,
            mailboxes: c.usage.mailboxes,
            aliases: c.usage.aliases,
            storage: c.usage.storage,
            unlimited_mailboxes: c.usage.unlimited_mailboxes,
        },
        domains: c.domains,
        created: c.row.created,
    }
}

/// Every customer with its usage.
#[utoipa::path(get, path = "/api/v1/customers", responses((status = 200, body = [Customer]), (status = 403)))]
pub(super) async fn list_customers(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
) -> ApiResult<Json<Vec<Customer>>> {
    provider_only(&p)?;
    let all = state.admin.customers().await?;
    Ok(Json(all.into_iter().map(customer_json).collect()))
}

#[utoipa::path(post, path = "/api/v1/customers", request_body = NewCustomer,
    responses((status = 201, body = Customer), (status = 403), (status = 409), (status = 422)))]
pub(super) async fn create_customer(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiJson(b): ApiJson<NewCustomer>,
) -> ApiResult<(StatusCode, Json<Customer>)> {
    provider_only(&p)?;
    let caps = CustomerCaps {
        max_domains: b.max_domains,
        max_mailboxes: b.max_mailboxes,
        max_aliases: b.max_aliases,
        max_storage: b.max_storage,
    };
    let c = state.admin.customer_add(&p.actor(), &b.name, caps).await?;
    Ok((StatusCode::CREATED, Json(customer_json(c))))
}

#[utoipa::path(get, path = "/api/v1/customers/{customer}", params(("customer" = String, Path)),
    responses((status = 200, body = Customer), (status = 403), (status = 404)))]
pub(super) async fn show_customer(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Customer>> {
    provider_only(&p)?;
    Ok(Json(customer_json(state.admin.customer_show(&name).await?)))
}

/// Changes caps, gives or takes domains.
#[utoipa::path(patch, path = "/api/v1/customers/{customer}", params(("customer" = String, Path)),
    request_body = CustomerPatch,
    responses((status = 200, body = Customer), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub(super) async fn change_customer(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath(name): ApiPath<String>,
    ApiJson(b): ApiJson<CustomerPatch>,
) -> ApiResult<Json<Customer>> {
    provider_only(&p)?;
    if b.add_domains.len() + b.remove_domains.len() > MAX_DOMAINS_PER_PATCH {
        return Err(crate::auth::ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("at most {MAX_DOMAINS_PER_PATCH} domains per change"),
        ));
    }
    let change = CustomerChange {
        max_domains: b.max_domains,
        max_mailboxes: b.max_mailboxes,
        max_aliases: b.max_aliases,
        max_storage: b.max_storage,
        add_domains: b.add_domains,
        remove_domains: b.remove_domains,
    };
    let c = state.admin.customer_set(&p.actor(), &name, change).await?;
    Ok(Json(customer_json(c)))
}

/// Removes a customer; refused (409) while it owns domains.
#[utoipa::path(delete, path = "/api/v1/customers/{customer}", params(("customer" = String, Path)),
    responses((status = 200, body = Done), (status = 403), (status = 404), (status = 409)))]
pub(super) async fn remove_customer(
    axum::extract::State(state): S,
    ApiPrincipal(p): ApiPrincipal,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Done>> {
    provider_only(&p)?;
    state.admin.customer_remove(&p.actor(), &name).await?;
    Ok(done())
}
