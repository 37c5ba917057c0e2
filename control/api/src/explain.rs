//! Explain tokens (`weft explain-token --to SERVICE --ttl 5m`): `POST
//! /api/v1/explain/{namespace}/{service}/tokens` mints a token the service's sidecars honour
//! until it expires (at most an hour), answering a request that carries it with their
//! decision trace (see `weft_filter_core::explain`).
//!
//! Who may: an editor of the service's namespace, or an admin (`Need::EditPathNamespace`).
//! A trace shows the policies deciding that service's traffic -- what an editor there can
//! already read and change -- so the right to see them follows the right to change them;
//! a viewer or a security-admin gets none. Every mint is in the audit log like any request.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use weft_filter_core::explain::{mint, MAX_TTL_SECS, TOKEN_HEADER};
use weft_state::ControlPlane;

use crate::error::ApiError;
use crate::types::{CreateExplainToken, ExplainToken};

/// The key of `(namespace, service)`'s tokens (hex); `None`: explain tokens are off.
pub type ExplainKeys = Arc<dyn Fn(&str, &str) -> Option<String> + Send + Sync>;

/// Default token lifetime: five minutes.
pub const DEFAULT_EXPLAIN_TTL_SECS: u64 = 300;

#[derive(Clone)]
struct ExplainState {
    plane: Arc<ControlPlane>,
    keys: Option<ExplainKeys>,
}

/// The explain-token route; `keys` is `None` when the server has no explain key.
pub fn explain_router(plane: Arc<ControlPlane>, keys: Option<ExplainKeys>) -> Router {
    Router::new()
        .route("/api/v1/explain/{namespace}/{service}/tokens", post(create))
        .with_state(ExplainState { plane, keys })
}

async fn create(
    State(state): State<ExplainState>,
    Path((namespace, service)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let keys = state.keys.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "explain tokens are off on this server",
        )
    })?;
    let request: CreateExplainToken = if body.is_empty() {
        CreateExplainToken { ttl_seconds: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("explain token request: {e} (expected {{\"ttlSeconds\"}})"),
            )
        })?
    };
    let ttl = request.ttl_seconds.unwrap_or(DEFAULT_EXPLAIN_TTL_SECS);
    if ttl == 0 || ttl > MAX_TTL_SECS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "explain token request: ttlSeconds {ttl} is not in 1..={MAX_TTL_SECS} (one hour)"
            ),
        ));
    }
    let declared = state
        .plane
        .snapshot()
        .documents
        .service(&namespace, &service)
        .is_some();
    if !declared {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no Service {namespace}/{service} is declared"),
        ));
    }
    let now = std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_secs());
    let expires = now.saturating_add(ttl);
    let token = keys(&namespace, &service)
        .and_then(|key| mint(&key, &namespace, &service, expires))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot derive the service's key",
            )
        })?;
    tracing::info!(%namespace, %service, ttl, "explain token minted");
    Ok((
        StatusCode::CREATED,
        Json(ExplainToken {
            token,
            namespace,
            service,
            header: TOKEN_HEADER.into(),
            expires_at_unix: expires,
        }),
    )
        .into_response())
}
