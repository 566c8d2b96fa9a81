//! `/metrics`: Prometheus' text exposition format 0.0.4. The counters
//! come from `postroom_core::metrics` (incremented where the events
//! happen); connections and the queue are read at each scrape.

use axum::extract::{Request, State as AxState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use postroom_core::metrics::{write_family, write_sample};

use crate::auth::ApiPrincipal;
use crate::server::ConnInfo;
use crate::State;

/// The 0.0.4 text format's media type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(AxState(state): AxState<State>, req: Request) -> Response {
    let ip = req.extensions().get::<ConnInfo>().map(|c| c.ip);
    let allowed = ip.is_some_and(|ip| state.settings.metrics_networks.contains(ip));
    if !allowed {
        // Elsewhere only a provider admin (session or token) may read it.
        let (mut parts, _) = req.into_parts();
        let provider = matches!(
            <ApiPrincipal as axum::extract::FromRequestParts<State>>::from_request_parts(&mut parts, &state).await,
            Ok(ApiPrincipal(p)) if p.is_provider()
        );
        if !provider {
            return (
                StatusCode::FORBIDDEN,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "metrics are readable only from http.metrics_networks\n",
            )
                .into_response();
        }
    }
    let mut out = String::new();
    postroom_core::metrics::render(&mut out);
    if let Some(conns) = &state.connections {
        write_family(
            &mut out,
            "postroom_connections_open",
            "gauge",
            "Connections open per protocol.",
        );
        for (protocol, n) in conns() {
            write_sample(
                &mut out,
                "postroom_connections_open",
                &[("protocol", &protocol)],
                n,
            );
        }
    }
    match state.admin.store().meta().queue_summary().await {
        Ok(summary) => {
            let now = crate::now() as i64;
            let rows: Vec<(String, String, u64, i64)> = summary
                .into_iter()
                .map(|c| {
                    let reason = c.hold_reason.map(|r| r.to_string()).unwrap_or_default();
                    (c.state, reason, c.count, (now - c.oldest_created).max(0))
                })
                .collect();
            write_family(
                &mut out,
                "postroom_queue_messages",
                "gauge",
                "Outbound queue rows by state (held ones by reason).",
            );
            for (st, reason, count, _) in &rows {
                write_sample(
                    &mut out,
                    "postroom_queue_messages",
                    &[("state", st), ("reason", reason)],
                    count,
                );
            }
            write_family(
                &mut out,
                "postroom_queue_oldest_age_seconds",
                "gauge",
                "Age of the oldest outbound queue row by state (held ones by reason).",
            );
            for (st, reason, _, age) in &rows {
                write_sample(
                    &mut out,
                    "postroom_queue_oldest_age_seconds",
                    &[("state", st), ("reason", reason)],
                    age,
                );
            }
        }
        Err(e) => {
            // The other metrics are still worth having; the scrape says
            // the queue is unknown by leaving it out.
            tracing::warn!(error = %e, "metrics: reading the queue failed");
        }
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], out).into_response()
}
