//! The admin listener: metrics, health, readiness, status and a small status page.

mod page;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::gate::Gate;
use crate::keys::now_ms;

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
    Html(page::render(&state.gate.status(), now_ms()))
}
