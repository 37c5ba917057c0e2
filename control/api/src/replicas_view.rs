//! `GET /api/v1/replicas`: the control-plane replicas registered in etcd (`weft serve
//! --store etcd`), as `weft status` lists them.

use crate::error::ApiError;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;
use std::sync::Arc;

/// Reads the registrations (a blocking etcd call: run off the async workers); `Err` when
/// etcd cannot be read.
pub type ReplicasView = Arc<dyn Fn() -> Result<Value, String> + Send + Sync>;

/// 200 with `[{id, api, xds, policyVersion, etcdRevision, streams, updatedUnixMs}]`; 503 when
/// etcd cannot be read; 404 for a server on the file store (one node, no replicas).
pub fn replicas_router(view: Option<ReplicasView>) -> Router {
    Router::new().route(
        "/api/v1/replicas",
        get(move || {
            let view = view.clone();
            async move {
                let Some(view) = view else {
                    return ApiError::new(
                        StatusCode::NOT_FOUND,
                        "no replicas: this server runs on its own store; start replicas with `weft serve --store etcd`",
                    )
                    .into_response();
                };
                match tokio::task::spawn_blocking(move || view()).await {
                    Ok(Ok(list)) => Json(list).into_response(),
                    Ok(Err(e)) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
                    Err(e) => ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("task failed: {e}"),
                    )
                    .into_response(),
                }
            }
        }),
    )
}
