//! The rollouts' REST API, merged into the API listener by `weft serve`. Beside each route,
//! the role it needs once the API authenticates callers (slice A's roles): reading is
//! `viewer`; promote/abort/pause/resume change the target service's traffic, so they need
//! `editor` of the rollout's namespace (the same role as `weft apply` of a Rollout there).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::machine::Command;
use crate::runtime::{now_ms, Rollouts, RuntimeError};

/// Every route as `(method, path, role)`.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/api/v1/rollouts", "viewer"),
    ("get", "/api/v1/rollouts/{namespace}/{name}", "viewer"),
    (
        "get",
        "/api/v1/rollouts/{namespace}/{name}/events",
        "viewer",
    ),
    (
        "post",
        "/api/v1/rollouts/{namespace}/{name}/promote",
        "editor:{namespace}",
    ),
    (
        "post",
        "/api/v1/rollouts/{namespace}/{name}/abort",
        "editor:{namespace}",
    ),
    (
        "post",
        "/api/v1/rollouts/{namespace}/{name}/pause",
        "editor:{namespace}",
    ),
    (
        "post",
        "/api/v1/rollouts/{namespace}/{name}/resume",
        "editor:{namespace}",
    ),
];

/// Most events one request returns.
const MAX_EVENTS_PER_REQUEST: usize = 1_000;

pub fn router(rollouts: Arc<Rollouts>) -> Router {
    let mut router = Router::new()
        // viewer
        .route("/api/v1/rollouts", get(list))
        // viewer
        .route("/api/v1/rollouts/{namespace}/{name}", get(one))
        // viewer
        .route("/api/v1/rollouts/{namespace}/{name}/events", get(events));
    // editor of {namespace}: each changes the target service's traffic.
    for (verb, cmd) in [
        ("promote", Command::Promote),
        ("abort", Command::Abort),
        ("pause", Command::Pause),
        ("resume", Command::Resume),
    ] {
        router = router.route(
            &format!("/api/v1/rollouts/{{namespace}}/{{name}}/{verb}"),
            post(move |s, p| command(s, p, cmd)),
        );
    }
    router.with_state(rollouts)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": message.into(), "details": []})),
    )
        .into_response()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn list(State(rollouts): State<Arc<Rollouts>>) -> Response {
    match blocking(move || rollouts.statuses(now_ms())).await {
        Ok(list) => Json(json!({"rollouts": list})).into_response(),
        Err(r) => r,
    }
}

async fn one(
    State(rollouts): State<Arc<Rollouts>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let id = format!("{namespace}/{name}");
    let found = blocking(move || {
        rollouts
            .statuses(now_ms())
            .into_iter()
            .find(|s| s.namespace == namespace && s.name == name)
    })
    .await;
    match found {
        Ok(Some(status)) => Json(status).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no rollout {id}")),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    limit: Option<usize>,
}

async fn events(
    State(rollouts): State<Arc<Rollouts>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(q): Query<EventsQuery>,
) -> Response {
    let id = format!("{namespace}/{name}");
    let limit = q.limit.unwrap_or(100).min(MAX_EVENTS_PER_REQUEST);
    Json(json!({"events": rollouts.events.list(Some(&id), limit)})).into_response()
}

async fn command(
    State(rollouts): State<Arc<Rollouts>>,
    Path((namespace, name)): Path<(String, String)>,
    command: Command,
) -> Response {
    let id = format!("{namespace}/{name}");
    match blocking(move || rollouts.command(&id, command, now_ms())).await {
        Ok(Ok(status)) => Json(status).into_response(),
        Ok(Err(e @ RuntimeError::NotFound(_))) => error(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(r) => r,
    }
}
