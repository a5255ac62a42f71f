//! The admin listener: metrics, health, readiness, status and a small status page.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use titan_gate_core::Mode;

use crate::gate::{Gate, format_time_ms};

/// State shared by the admin handlers.
#[derive(Clone, Debug)]
pub struct AdminState {
    pub gate: Arc<Gate>,
    pub prometheus: PrometheusHandle,
}

/// Builds the admin router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(state)
}

async fn metrics(State(state): State<AdminState>) -> Response {
    crate::metrics::set_ready(state.gate.health.unready_reasons().is_empty());
    let body = state.prometheus.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let reasons = state.gate.health.unready_reasons();
    if reasons.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let body = format!(
            "not ready:\n{}\n",
            reasons.iter().map(|reason| format!("- {reason}")).collect::<Vec<_>>().join("\n")
        );
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn status(State(state): State<AdminState>) -> Json<serde_json::Value> {
    Json(state.gate.status())
}

async fn status_page(State(state): State<AdminState>) -> Html<String> {
    let gate = &state.gate;
    let halt = gate.state();
    let halted = halt.strictest_mode() != Mode::Running;
    let scoped_only = halt.global.mode == Mode::Running && halted;
    let headline =
        if scoped_only { format!("SCOPED HALT ({} scopes)", halt.scope_count()) } else { halt.global.mode.to_string() };
    let color = if halted { "#b00020" } else { "#1b5e20" };
    let unready = gate.health.unready_reasons();
    let readiness = if unready.is_empty() {
        "<p id=\"ready\">ready: connected to NATS, subscribed, forward stream found</p>".to_owned()
    } else {
        let mut items = String::new();
        for reason in &unready {
            let _ = write!(items, "<li>{}</li>", escape(reason));
        }
        format!(
            "<div id=\"ready\" style=\"background:#ff8f00;color:#000;padding:8px 24px\"><strong>NOT READY</strong><ul>{items}</ul></div>"
        )
    };

    let mut page = String::with_capacity(2048);
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\"><title>titan-gate {id}: {headline}</title>\
         <style>body{{font-family:sans-serif;margin:0}}header{{background:{color};color:#fff;padding:16px 24px}}main{{padding:16px 24px}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style></head><body>\
         <header id=\"state\" data-halted=\"{halted}\"><h1>titan-gate {id}: {headline}</h1></header>{readiness}<main><table>\
         <tr><th>mode</th><td>{mode}</td></tr><tr><th>reason</th><td>{reason}</td></tr><tr><th>operator</th><td>{operator}</td></tr>\
         <tr><th>since</th><td>{since}</td></tr><tr><th>epoch</th><td>{epoch}</td></tr></table><h2>Scoped halts</h2>",
        id = escape(&gate.settings.gate_id),
        mode = halt.global.mode,
        reason = escape(&halt.global.reason),
        operator = escape(halt.global.operator.as_deref().unwrap_or("")),
        since = format_time_ms(halt.global.since_ms),
        epoch = halt.epoch,
    );
    let scopes = halt.scopes();
    if scopes.is_empty() {
        page.push_str("<p>none</p>");
    } else {
        page.push_str("<table><tr><th>scope</th><th>mode</th><th>reason</th><th>operator</th><th>since</th></tr>");
        for (scope, entry) in scopes {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&scope.to_string()),
                entry.mode,
                escape(&entry.reason),
                escape(entry.operator.as_deref().unwrap_or("")),
                format_time_ms(entry.since_ms)
            );
        }
        page.push_str("</table>");
    }
    page.push_str("</main></body></html>");
    Html(page)
}

/// Escapes text for HTML element content.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}
