//! `POST /api/v1/check` and `POST /api/v1/check/matrix`, merged into the API listener by
//! `weft serve` (both need the `viewer` role: they change nothing and reveal only what
//! `GET /api/v1/policies` already shows). Evaluated against the server's current snapshot;
//! the breaker's state comes from the telemetry the server holds.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use weft_state::ControlPlane;
use weft_telemetry_plane::Telemetry;

use crate::run::{BreakerView, Checker, EdgeObservation};
use crate::{Call, CheckError};

/// Every route as `(method, path, role)`.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("post", "/api/v1/check", "viewer"),
    ("post", "/api/v1/check/matrix", "viewer"),
];

/// Largest request body: a call is a few headers, a token and a body of at most
/// [`crate::MAX_BODY_TEXT`] (JSON-escaped, so room for escapes).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// How far back the breaker's state is read from telemetry.
pub const BREAKER_WINDOW_SECS: u64 = 30;

#[derive(Clone)]
struct AppState {
    plane: Arc<ControlPlane>,
    breakers: Option<Arc<dyn BreakerView>>,
}

/// The check routes over `plane`'s current snapshot.
pub fn router(plane: Arc<ControlPlane>, breakers: Option<Arc<dyn BreakerView>>) -> Router {
    Router::new()
        .route("/api/v1/check", post(check))
        .route("/api/v1/check/matrix", post(matrix))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(AppState { plane, breakers })
}

/// The breaker's state from the edges of the telemetry graph.
pub struct TelemetryBreakers(pub Arc<Telemetry>);

impl BreakerView for TelemetryBreakers {
    fn edge(&self, caller: &str, target: &str) -> Option<EdgeObservation> {
        // The graph names services without their namespace.
        let name = |key: &str| key.rsplit('/').next().unwrap_or(key).to_string();
        let (caller, target) = (name(caller), name(target));
        let graph = self.0.graph(BREAKER_WINDOW_SECS);
        let edges: Vec<_> = graph
            .edges
            .iter()
            .filter(|e| e.source == caller && e.destination == target)
            .collect();
        if edges.is_empty() {
            return None;
        }
        // The most severe phase any version's breaker reported.
        let phases: Vec<&'static str> = edges
            .iter()
            .filter_map(|e| e.breaker.as_ref().map(|b| b.state))
            .collect();
        let phase = ["open", "half-open", "closed"]
            .into_iter()
            .find(|p| phases.contains(p));
        Some(EdgeObservation {
            window_secs: BREAKER_WINDOW_SECS,
            requests: edges.iter().map(|e| e.requests).sum(),
            fail_fasts: edges.iter().map(|e| e.breaker_open).sum(),
            phase,
        })
    }
}

fn error(status: StatusCode, message: String, details: serde_json::Value) -> Response {
    (status, Json(json!({"error": message, "details": details}))).into_response()
}

fn refused(e: CheckError) -> Response {
    match e {
        CheckError::Invalid { field, reason } => error(
            StatusCode::BAD_REQUEST,
            format!("{field}: {reason}"),
            json!([{"document": "check request", "field": field, "reason": reason}]),
        ),
        CheckError::NotFound(message) => error(StatusCode::NOT_FOUND, message, json!([])),
        CheckError::Config(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message, json!([])),
    }
}

/// Malformed JSON or unknown fields 400, a body over [`MAX_BODY`] 413, not JSON 415.
fn bad_json(e: &JsonRejection) -> Response {
    let status = match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE => e.status(),
        _ => StatusCode::BAD_REQUEST,
    };
    error(
        status,
        format!("check request: {}", e.body_text()),
        json!([]),
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn check(State(state): State<AppState>, body: Result<Json<Call>, JsonRejection>) -> Response {
    let Json(call) = match body {
        Ok(body) => body,
        Err(e) => return bad_json(&e),
    };
    let snapshot = state.plane.snapshot();
    let breakers = state.breakers.clone();
    let answer =
        tokio_blocking(move || Checker::new(&snapshot).check(&call, now_ms(), breakers.as_deref()))
            .await;
    match answer {
        Ok(Ok(result)) => Json(result).into_response(),
        Ok(Err(e)) => refused(e),
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message, json!([])),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixRequest {
    #[serde(default = "get")]
    method: String,
    #[serde(default = "root")]
    path: String,
}

fn get() -> String {
    "GET".into()
}

fn root() -> String {
    "/".into()
}

async fn matrix(
    State(state): State<AppState>,
    body: Result<Json<MatrixRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return bad_json(&e),
    };
    let snapshot = state.plane.snapshot();
    let answer = tokio_blocking(move || {
        Checker::new(&snapshot).matrix(&request.method, &request.path, now_ms())
    })
    .await;
    match answer {
        Ok(Ok(matrix)) => Json(matrix).into_response(),
        Ok(Err(e)) => refused(e),
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message, json!([])),
    }
}

/// Runs the (CPU-bound) check off the async workers.
async fn tokio_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("the check failed: {e}"))
}
