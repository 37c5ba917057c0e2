//! HTTP: batch ingest (on the xDS listener, where sidecars' `weft_xds` cluster points) and
//! the views (on the REST API listener): `/api/v1/graph`, `/api/v1/suggest/authz`,
//! `/metrics`, `/ui`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use weft_filter_core::telemetry::SIGNATURE_HEADER;

use crate::{now_ms, suggest::suggest_authz, IngestError, Telemetry, MAX_WINDOW_SECS};

/// The page: hand-written HTML, JS and SVG, compiled into the binary.
pub const UI_HTML: &str = include_str!("ui.html");

/// Largest batch accepted (a full batch of the filter's defaults is far smaller).
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// `POST /v1/telemetry`: 204 accepted, 401 bad or missing signature, 400 malformed.
pub fn ingest_router(telemetry: Arc<Telemetry>) -> Router {
    Router::new()
        .route("/v1/telemetry", post(ingest))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .with_state(telemetry)
}

async fn ingest(
    State(telemetry): State<Arc<Telemetry>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    match telemetry.ingest(&body, signature) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => {
            tracing::warn!(%error, "telemetry batch refused");
            let status = match error {
                IngestError::Malformed(_) => StatusCode::BAD_REQUEST,
                IngestError::Unsigned | IngestError::BadSignature(_) => StatusCode::UNAUTHORIZED,
            };
            (status, Json(json!({"error": error.to_string()}))).into_response()
        }
    }
}

/// `/metrics` alone, for the unauthenticated `--metrics-listen` listener (Prometheus).
pub fn metrics_router(telemetry: Arc<Telemetry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(telemetry)
}

/// The views, to merge into the REST API's router.
pub fn api_router(telemetry: Arc<Telemetry>) -> Router {
    Router::new()
        .route("/api/v1/graph", get(graph))
        .route("/api/v1/suggest/authz", get(suggest))
        .route("/metrics", get(metrics))
        .route("/ui", get(ui))
        .with_state(telemetry)
}

#[derive(Deserialize)]
struct WindowParams {
    window: Option<String>,
}

/// `30s`, `5m`, `1h` or plain seconds; at most [`MAX_WINDOW_SECS`].
pub fn parse_window(text: Option<&str>) -> Result<u64, String> {
    let Some(text) = text else { return Ok(300) };
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("window {text:?}: expected e.g. 30s, 5m, 1h"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("window {text:?}: unit must be s, m or h")),
    };
    // Saturating: `4611686018427387905m` is refused, never wrapped into a 60 s window.
    let secs = n.saturating_mul(scale);
    if secs == 0 || secs > MAX_WINDOW_SECS {
        return Err(format!(
            "window {text:?}: must be between 1s and {MAX_WINDOW_SECS}s"
        ));
    }
    Ok(secs)
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}

async fn graph(State(telemetry): State<Arc<Telemetry>>, Query(p): Query<WindowParams>) -> Response {
    let window = match parse_window(p.window.as_deref()) {
        Ok(window) => window,
        Err(message) => return bad_request(message),
    };
    // The layout and the rollout badges take locks and some work: off the async threads.
    let value = tokio::task::spawn_blocking(move || {
        let graph = telemetry.graph(window);
        let mut value = serde_json::to_value(&graph).unwrap_or_default();
        value["sidecars"] = telemetry.xds_sidecars();
        value
    })
    .await;
    match value {
        Ok(value) => Json(value).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": error.to_string()})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SuggestParams {
    service: Option<String>,
    namespace: Option<String>,
    window: Option<String>,
    #[serde(default)]
    dry_run: bool,
    format: Option<String>,
}

async fn suggest(
    State(telemetry): State<Arc<Telemetry>>,
    Query(p): Query<SuggestParams>,
) -> Response {
    let Some(service) = p.service.filter(|s| !s.is_empty()) else {
        return bad_request("query parameter `service` is required".into());
    };
    let window = match parse_window(p.window.as_deref()) {
        Ok(window) => window,
        Err(message) => return bad_request(message),
    };
    let namespace = p.namespace.unwrap_or_else(|| "default".into());
    let suggestion = suggest_authz(&telemetry, &namespace, &service, window, p.dry_run);
    if p.format.as_deref() == Some("yaml") {
        return (
            [(header::CONTENT_TYPE, "application/yaml")],
            suggestion.yaml,
        )
            .into_response();
    }
    Json(suggestion).into_response()
}

async fn metrics(State(telemetry): State<Arc<Telemetry>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::prometheus::render(&telemetry, now_ms()),
    )
        .into_response()
}

async fn ui() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        UI_HTML,
    )
        .into_response()
}
