//! Routes and handlers.

use crate::access::Principal;
use crate::error::{blocking, ApiError};
use crate::types;
use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use weft_compile::SidecarId;
use weft_policy::{DocKey, Kind};
use weft_state::ControlPlane;

/// Every route as `(method, path)`, in OpenAPI path syntax; the router is built from the
/// same paths and a test holds `openapi.json` to this list.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/openapi.json"),
    ("get", "/api/v1/status"),
    ("post", "/api/v1/apply"),
    ("post", "/api/v1/validate"),
    ("post", "/api/v1/diff"),
    ("get", "/api/v1/policies"),
    ("get", "/api/v1/policies/{kind}/{namespace}/{name}"),
    ("delete", "/api/v1/policies/{kind}/{namespace}/{name}"),
    ("get", "/api/v1/history"),
    ("get", "/api/v1/history/{version}"),
    ("post", "/api/v1/rollback/{version}"),
    ("get", "/api/v1/sidecars"),
    (
        "get",
        "/api/v1/sidecars/{namespace}/{service}/{version}/config",
    ),
    // Telemetry views (weft-telemetry-plane's `api_router`, merged by `serve_with`).
    ("get", "/api/v1/graph"),
    ("get", "/api/v1/suggest/authz"),
    ("get", "/metrics"),
    ("get", "/ui"),
    // Join tokens and the mesh CA (`identity_router`, merged by `weft serve`).
    ("post", "/api/v1/tokens"),
    ("get", "/api/v1/tokens"),
    ("delete", "/api/v1/tokens/{id}"),
    ("get", "/api/v1/ca"),
    ("post", "/api/v1/ca/rotate"),
    // The xDS server's sidecar view (`xds_router`, merged by `weft serve`).
    ("get", "/api/v1/xds/sidecars"),
    // What one group is served, from the xDS translation (`xds_resources_router`).
    (
        "get",
        "/api/v1/xds/sidecars/{namespace}/{service}/{version}/resources",
    ),
    // Rollouts (`weft_rollout::routes::router`, merged by `weft serve`; roles listed there).
    ("get", "/api/v1/rollouts"),
    ("get", "/api/v1/rollouts/{namespace}/{name}"),
    ("get", "/api/v1/rollouts/{namespace}/{name}/events"),
    ("post", "/api/v1/rollouts/{namespace}/{name}/promote"),
    ("post", "/api/v1/rollouts/{namespace}/{name}/abort"),
    ("post", "/api/v1/rollouts/{namespace}/{name}/pause"),
    ("post", "/api/v1/rollouts/{namespace}/{name}/resume"),
    // The replicas registered in etcd (`replicas_router`, merged by `weft serve`).
    ("get", "/api/v1/replicas"),
    // Explain tokens (`explain_router`, merged by `weft serve`).
    ("post", "/api/v1/explain/{namespace}/{service}/tokens"),
    // `weft check` (`weft_check::routes::router`, merged by `weft serve`).
    ("post", "/api/v1/check"),
    ("post", "/api/v1/check/matrix"),
    // Operators and the audit log (`access::protect`, merged by `weft serve`).
    ("post", "/api/v1/operators"),
    ("get", "/api/v1/operators"),
    ("delete", "/api/v1/operators/{name}"),
    ("get", "/api/v1/whoami"),
    ("post", "/api/v1/whoami/certificate"),
    ("get", "/api/v1/audit"),
];

type AppState = Arc<ControlPlane>;

pub fn router(state: AppState) -> Router {
    let body_limit = state.limits().max_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/api/v1/status", get(status))
        .route("/api/v1/apply", post(apply))
        .route("/api/v1/validate", post(validate))
        .route("/api/v1/diff", post(diff))
        .route("/api/v1/policies", get(list))
        .route(
            "/api/v1/policies/{kind}/{namespace}/{name}",
            get(get_one).delete(delete),
        )
        .route("/api/v1/history", get(history))
        .route("/api/v1/history/{version}", get(history_one))
        .route("/api/v1/rollback/{version}", post(rollback))
        .route("/api/v1/sidecars", get(sidecars))
        .route(
            "/api/v1/sidecars/{namespace}/{service}/{version}/config",
            get(sidecar_config),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

type ApiResult = Result<Response, ApiError>;

/// 200 `ok`; 503 naming the reason while the store (etcd) has been unreachable longer than
/// its bound: the replica keeps serving its last snapshot, but a load balancer or
/// orchestrator should prefer another one.
async fn healthz(State(state): State<AppState>) -> Response {
    match state.health() {
        Ok(()) => Json(types::Health {
            status: "ok".into(),
        })
        .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(types::Health {
                status: format!("unavailable: {reason}"),
            }),
        )
            .into_response(),
    }
}

/// Reads the body up to the policy size limit; a larger one is a 413 with the JSON error.
async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.limits().max_bytes;
    to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChangeParams {
    #[serde(default)]
    dry_run: bool,
    author: Option<String>,
    expect_version: Option<u64>,
}

/// What the caller says about itself: `x-weft-author` header, else `?author=`.
fn claimed_author(headers: &HeaderMap, params: &ChangeParams) -> Option<String> {
    headers
        .get("x-weft-author")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| params.author.clone())
        .map(|a| a.trim().chars().take(100).collect::<String>())
        .filter(|a| !a.is_empty())
}

/// History's author: the authenticated principal (`operator:alice`), with what the caller
/// claimed only as a comment beside it (`operator:alice (says: Bob)`). Without
/// authentication (the bare router, as in-process tests use it): the claim, else
/// `anonymous`.
fn author(principal: Option<&Principal>, headers: &HeaderMap, params: &ChangeParams) -> String {
    let claimed = claimed_author(headers, params);
    match (principal, claimed) {
        (Some(p), Some(c)) if c != p.name && c != p.id() => format!("{} (says: {c})", p.id()),
        (Some(p), _) => p.id(),
        (None, c) => c.unwrap_or_else(|| "anonymous".to_string()),
    }
}

/// The namespaces check of an authenticated caller (none for the bare router).
fn guard(principal: Option<Principal>) -> impl Fn(&[DocKey]) -> Result<(), String> + Sync {
    move |keys| principal.as_ref().map_or(Ok(()), |p| p.may_edit(keys))
}

type Caller = Option<Extension<Principal>>;

fn json_ok(value: impl serde::Serialize) -> ApiResult {
    Ok(Json(value).into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::OPENAPI).into_response()
}

async fn status(State(state): State<AppState>) -> ApiResult {
    let snap = state.snapshot();
    json_ok(types::Status {
        server: "weft".into(),
        server_version: env!("CARGO_PKG_VERSION").into(),
        policy_version: snap.version,
        documents: snap.documents.len(),
        sidecars: snap.compiled.len(),
    })
}

async fn apply(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<ChangeParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let body = read_body(&state, body).await?;
    let principal = caller.map(|Extension(p)| p);
    let who = author(principal.as_ref(), &headers, &p);
    let st = state.clone();
    let log_who = who.clone();
    let guard = guard(principal);
    let out = blocking(move || st.apply_guarded(&body, &who, p.dry_run, p.expect_version, &guard))
        .await?;
    if out.created {
        tracing::info!(version = out.version, author = %log_who, documents = ?out.documents, "applied");
    }
    json_ok(out)
}

async fn validate(State(state): State<AppState>, body: Body) -> ApiResult {
    let body = read_body(&state, body).await?;
    let st = state.clone();
    let docs = blocking(move || st.validate(&body)).await?;
    let keys: Vec<String> = docs.iter().map(|d| d.key().to_string()).collect();
    json_ok(types::Validated {
        valid: true,
        documents: keys,
    })
}

async fn diff(State(state): State<AppState>, body: Body) -> ApiResult {
    let body = read_body(&state, body).await?;
    let st = state.clone();
    json_ok(blocking(move || st.diff(&body)).await?)
}

#[derive(Debug, Deserialize)]
struct ListParams {
    kind: Option<String>,
    namespace: Option<String>,
}

fn kind(name: &str) -> Result<Kind, ApiError> {
    Kind::parse(name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("unknown kind {name:?}")))
}

async fn list(State(state): State<AppState>, Query(p): Query<ListParams>) -> ApiResult {
    let kind = p.kind.as_deref().map(kind).transpose()?;
    json_ok(state.list(kind, p.namespace.as_deref()))
}

fn doc_key((k, namespace, name): (String, String, String)) -> Result<DocKey, ApiError> {
    Ok(DocKey {
        kind: kind(&k)?,
        namespace,
        name,
    })
}

async fn get_one(
    State(state): State<AppState>,
    Path(path): Path<(String, String, String)>,
) -> ApiResult {
    json_ok(state.get(&doc_key(path)?)?)
}

async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<(String, String, String)>,
    Query(p): Query<ChangeParams>,
    headers: HeaderMap,
) -> ApiResult {
    let key = doc_key(path)?;
    let principal = caller.map(|Extension(p)| p);
    let who = author(principal.as_ref(), &headers, &p);
    let st = state.clone();
    let log_who = who.clone();
    let guard = guard(principal);
    let out = blocking(move || st.delete_guarded(&key, &who, p.dry_run, &guard)).await?;
    if out.created {
        tracing::info!(version = out.version, author = %log_who, "deleted");
    }
    json_ok(out)
}

async fn history(State(state): State<AppState>) -> ApiResult {
    let st = state.clone();
    json_ok(blocking(move || st.history()).await?)
}

async fn history_one(State(state): State<AppState>, Path(version): Path<u64>) -> ApiResult {
    let st = state.clone();
    json_ok(blocking(move || st.record(version)).await?)
}

async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<u64>,
    Query(p): Query<ChangeParams>,
    headers: HeaderMap,
) -> ApiResult {
    let principal = caller.map(|Extension(p)| p);
    let who = author(principal.as_ref(), &headers, &p);
    let st = state.clone();
    let log_who = who.clone();
    let guard = guard(principal);
    let out = blocking(move || st.rollback_guarded(version, &who, p.dry_run, &guard)).await?;
    if out.created {
        tracing::info!(version = out.version, to = version, author = %log_who, "rolled back");
    }
    json_ok(out)
}

async fn sidecars(State(state): State<AppState>) -> ApiResult {
    let snap = state.snapshot();
    json_ok(types::Sidecars {
        version: snap.version,
        sidecars: snap.compiled.keys().cloned().collect(),
    })
}

async fn sidecar_config(
    State(state): State<AppState>,
    Path((namespace, service, version)): Path<(String, String, String)>,
) -> ApiResult {
    let snap = state.snapshot();
    let id = SidecarId {
        namespace,
        service,
        version,
    };
    let filters = snap
        .compiled
        .get(&id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("sidecar {id} not found")))?;
    let value: Value = json!({"version": snap.version, "sidecar": id, "filters": filters});
    json_ok(value)
}
