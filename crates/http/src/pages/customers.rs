//! The customers page (provider staff only): every customer with its
//! usage against its caps and its domains; forms to add a customer, set
//! its caps and give it a domain. The admin service checks the caps.

use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::*;
use crate::auth::ApiError;

pub(super) struct CustomerLine {
    name: String,
    domains: String,
    mailboxes: String,
    aliases: String,
    storage: String,
    owns: String,
}

#[derive(Template)]
#[template(path = "customers.html")]
pub(super) struct CustomersPage {
    login: Option<String>,
    csrf: String,
    notice: String,
    customers: Vec<CustomerLine>,
}

fn of(used: i64, cap: Option<i64>) -> String {
    match cap {
        Some(c) => format!("{used} of {c}"),
        None => format!("{used}"),
    }
}

fn staff_only(p: &Principal) -> Result<(), Response> {
    if p.is_provider() {
        Ok(())
    } else {
        Err(refusal(
            p,
            ApiError::new(
                StatusCode::FORBIDDEN,
                "Only the provider's administrators manage customers.",
            ),
            "/domains",
        ))
    }
}

pub(super) async fn customers(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Query(q): Query<NoticeQuery>,
) -> Response {
    if let Err(r) = staff_only(&p) {
        return r;
    }
    let all = match state.admin.customers().await {
        Ok(c) => c,
        Err(e) => return refusal(&p, e.into(), "/domains"),
    };
    let customers = all
        .into_iter()
        .map(|c| CustomerLine {
            domains: of(c.usage.domains, c.row.caps.max_domains),
            mailboxes: of(c.usage.mailboxes, c.row.caps.max_mailboxes),
            aliases: of(c.usage.aliases, c.row.caps.max_aliases),
            storage: match c.row.caps.max_storage {
                Some(cap) => format!("{} of {}", size(Some(c.usage.storage)), size(Some(cap))),
                None => size(Some(c.usage.storage)),
            },
            owns: c.domains.join(", "),
            name: c.row.name,
        })
        .collect();
    render(
        StatusCode::OK,
        &CustomersPage {
            login: Some(p.login.clone()),
            csrf: p.csrf.clone(),
            notice: notice(q.done.as_deref()),
            customers,
        },
    )
}

#[derive(Deserialize)]
pub(super) struct CustomerForm {
    csrf: String,
    name: String,
    #[serde(default)]
    max_domains: String,
    #[serde(default)]
    max_mailboxes: String,
    #[serde(default)]
    max_aliases: String,
    /// A size (`50G`); empty or `none` for no cap.
    #[serde(default)]
    max_storage: String,
    /// A hosted domain to give to the customer; may be empty.
    #[serde(default)]
    add_domain: String,
}

/// An empty field or `none` is no cap.
fn cap(field: &str, v: &str) -> Result<Option<i64>, AdminError> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    v.parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .map(Some)
        .ok_or_else(|| AdminError::Invalid(format!("{field}: `{v}` is not a count")))
}

fn storage_cap(v: &str) -> Result<Option<i64>, AdminError> {
    if v.trim().is_empty() {
        return Ok(None);
    }
    postroom_admin::parse_quota(v)
}

/// Adds the customer when it is new, else sets its caps; then gives it
/// the domain, if one is named.
pub(super) async fn customer_save(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Form(f): Form<CustomerForm>,
) -> Response {
    if let Err(r) = check_csrf(&p, &f.csrf) {
        return r;
    }
    if let Err(r) = staff_only(&p) {
        return r;
    }
    let result = async {
        let caps = postroom_store::CustomerCaps {
            max_domains: cap("domains", &f.max_domains)?,
            max_mailboxes: cap("mailboxes", &f.max_mailboxes)?,
            max_aliases: cap("aliases", &f.max_aliases)?,
            max_storage: storage_cap(&f.max_storage)?,
        };
        let exists = match state.admin.customer_show(&f.name).await {
            Ok(_) => true,
            Err(AdminError::NotFound(_)) => false,
            Err(e) => return Err(e),
        };
        if !exists {
            state.admin.customer_add(&p.actor(), &f.name, caps).await?;
        }
        let change = postroom_admin::CustomerChange {
            max_domains: exists.then_some(caps.max_domains),
            max_mailboxes: exists.then_some(caps.max_mailboxes),
            max_aliases: exists.then_some(caps.max_aliases),
            max_storage: exists.then_some(caps.max_storage),
            add_domains: Some(f.add_domain.trim())
                .filter(|d| !d.is_empty())
                .map(String::from)
                .into_iter()
                .collect(),
            remove_domains: vec![],
        };
        state.admin.customer_set(&p.actor(), &f.name, change).await?;
        Ok(exists)
    }
    .await;
    match result {
        Ok(true) => Redirect::to("/customers?done=changed").into_response(),
        Ok(false) => Redirect::to("/customers?done=created").into_response(),
        Err(e) => refusal(&p, e.into(), "/customers"),
    }
}
