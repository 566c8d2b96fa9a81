//! The domains list and a domain's page (its mailboxes, paged and
//! searched, and its aliases).

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::*;
use crate::auth::ApiError;

pub(super) struct DomainLine {
    name: String,
    display: String,
    kind: String,
    quota: String,
}

#[derive(Template)]
#[template(path = "domains.html")]
pub(super) struct DomainsPage {
    login: Option<String>,
    csrf: String,
    notice: String,
    provider: bool,
    domains: Vec<DomainLine>,
}

pub(super) async fn domains(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let all = match state.admin.domains().await {
        Ok(d) => d,
        Err(e) => return refusal(&p, e.into(), "/"),
    };
    let lines = all
        .iter()
        .filter(|d| p.manages(d))
        .map(|d| DomainLine {
            name: d.name.clone(),
            display: d.display.clone(),
            kind: match (&d.alias_of, &d.relay_to) {
                (Some(t), _) => format!(
                    "alias of {}",
                    all.iter()
                        .find(|x| x.id == *t)
                        .map_or("?", |x| x.display.as_str())
                ),
                (None, Some(r)) => format!("gateway to {r}"),
                (None, None) => "mailboxes".into(),
            },
            quota: size(d.default_quota),
        })
        .collect();
    render(
        StatusCode::OK,
        &DomainsPage {
            login: Some(p.login.clone()),
            csrf: p.csrf.clone(),
            notice: notice(q.done.as_deref()),
            provider: p.is_provider(),
            domains: lines,
        },
    )
}

#[derive(Deserialize)]
pub(super) struct DomainForm {
    csrf: String,
    name: String,
}

pub(super) async fn domain_create(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Form(f): Form<DomainForm>,
) -> Response {
    if let Err(r) = check_csrf(&p, &f.csrf) {
        return r;
    }
    if !p.is_provider() {
        return refusal(
            &p,
            ApiError::new(
                StatusCode::FORBIDDEN,
                "Only the provider's administrators add domains.",
            ),
            "/domains",
        );
    }
    match state
        .admin
        .domain_add(&p.actor(), &f.name, None, None, false)
        .await
    {
        Ok(d) => Redirect::to(&format!("/domains/{}?done=created", urlencode(&d.name))).into_response(),
        Err(e) => refusal(&p, e.into(), "/domains"),
    }
}

pub(super) struct MailboxLine {
    address: String,
    local: String,
    used: String,
    quota: String,
    state: String,
    enabled: bool,
    admin: bool,
}

pub(super) struct AliasLine {
    address: String,
    local: String,
    members: String,
}

#[derive(Template)]
#[template(path = "domain.html")]
pub(super) struct DomainPage {
    login: Option<String>,
    csrf: String,
    notice: String,
    domain: String,
    name: String,
    q: String,
    total: usize,
    page: usize,
    pages: usize,
    prev: Option<usize>,
    next: Option<usize>,
    mailboxes: Vec<MailboxLine>,
    aliases: Vec<AliasLine>,
    /// Provider staff may start "manage this domain" (the service checks
    /// the permission when they do).
    provider: bool,
    /// This session is provider staff managing the domain.
    acting: bool,
}

#[derive(Deserialize)]
pub(super) struct DomainQuery {
    #[serde(default)]
    q: String,
    page: Option<usize>,
    done: Option<String>,
}

pub(super) async fn domain_page(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Path(name): Path<String>,
    Query(q): Query<DomainQuery>,
) -> Response {
    let d = match scoped(&state, &p, &name).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let search: String = q.q.chars().take(100).collect();
    let page = q.page.unwrap_or(1).max(1);
    let (total, rows) = match state
        .admin
        .users_page(&d.name, &search, (page - 1).saturating_mul(PER_PAGE), PER_PAGE)
        .await
    {
        Ok(x) => x,
        Err(e) => return refusal(&p, e.into(), "/domains"),
    };
    let aliases = match state.admin.aliases(Some(&d.name)).await {
        Ok(a) => a,
        Err(e) => return refusal(&p, e.into(), "/domains"),
    };
    let pages = total.div_ceil(PER_PAGE).max(1);
    let mailboxes = rows
        .iter()
        .map(|u| MailboxLine {
            address: u.address.clone(),
            local: u.account.display.clone(),
            used: size(Some(u.usage)),
            quota: size(u.account.quota),
            state: if u.account.delete_after.is_some() {
                "removed".into()
            } else if u.account.enabled {
                "active".into()
            } else {
                "disabled".into()
            },
            enabled: u.account.enabled,
            admin: u.account.domain_admin,
        })
        .collect();
    let aliases = aliases
        .iter()
        .map(|a| AliasLine {
            address: a.address.clone(),
            local: a.row.display.clone(),
            members: a.row.targets.join(", "),
        })
        .collect();
    render(
        StatusCode::OK,
        &DomainPage {
            login: Some(p.login.clone()),
            csrf: p.csrf.clone(),
            notice: notice(q.done.as_deref()),
            domain: d.display.clone(),
            name: d.name.clone(),
            q: search,
            total,
            page,
            pages,
            prev: (page > 1).then(|| page - 1),
            next: (page < pages).then(|| page + 1),
            mailboxes,
            aliases,
            provider: p.is_provider(),
            acting: matches!(p.role, crate::session::Role::Acting { .. }),
        },
    )
}

/// "Manage this domain" from the console: the same service call as the
/// API's, then the domain's page in the domain admin's scope.
pub(super) async fn act_as_page(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Path(domain): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check_csrf(&p, &f.csrf) {
        return r;
    }
    if !p.is_provider() {
        return refusal(
            &p,
            ApiError::new(
                StatusCode::FORBIDDEN,
                "Only provider staff manage a domain as its admin.",
            ),
            "/domains",
        );
    }
    match state
        .admin
        .provider_act_as(&p.actor(), &p.login, Some(&domain))
        .await
    {
        Ok(Some(d)) => {
            state
                .sessions
                .set_role(&p.token, crate::session::Role::Acting { domain: d.id });
            Redirect::to(&format!("/domains/{}", urlencode(&d.name))).into_response()
        }
        Ok(None) => Redirect::to("/domains").into_response(),
        Err(e) => refusal(&p, e.into(), "/domains"),
    }
}

pub(super) async fn act_as_end_page(
    axum::extract::State(state): S,
    PagePrincipal(p): PagePrincipal,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check_csrf(&p, &f.csrf) {
        return r;
    }
    if matches!(p.role, crate::session::Role::Acting { .. }) {
        if let Err(e) = state.admin.provider_act_as(&p.actor(), &p.login, None).await {
            return refusal(&p, e.into(), "/domains");
        }
        state.sessions.set_role(&p.token, crate::session::Role::Provider);
    }
    Redirect::to("/domains").into_response()
}
