//! The connected sidecars as the xDS server sees them (`GET /api/v1/xds/sidecars`: the same
//! JSON as the xDS listener's `GET /v1/sidecars`), on the REST listener, so `weft status`
//! and `weft apply` read it over plain HTTP even when the xDS listener speaks TLS. The view
//! is a function handed in by `weft serve`, so this crate needs no xDS dependency.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use crate::error::ApiError;

/// Produces the sidecar view: `{"revision", "sidecars", "refused"}`.
pub type SidecarView = Arc<dyn Fn() -> Value + Send + Sync>;

/// `GET /api/v1/xds/sidecars`; `view` is `None` when the server runs no xDS listener (the
/// route then answers 404 saying so).
pub fn xds_router(view: Option<SidecarView>) -> Router {
    Router::new().route(
        "/api/v1/xds/sidecars",
        get(move || {
            let view = view.clone();
            async move {
                match view {
                    Some(view) => Json(view()).into_response(),
                    None => ApiError::new(
                        StatusCode::NOT_FOUND,
                        "xDS is off: start the server with `weft serve --xds-listen ADDR`",
                    )
                    .into_response(),
                }
            }
        }),
    )
}

/// Produces what one sidecar group is served (`namespace`, `service`, `version`): the
/// translation's view of it (`{"revision", "group", "filters": [{name, module, failure,
/// configuration}]}`), `None` when no policy version compiles that group.
pub type SidecarResourcesView = Arc<dyn Fn(&str, &str, &str) -> Option<Value> + Send + Sync>;

/// `GET /api/v1/xds/sidecars/{namespace}/{service}/{version}/resources`: the ECDS filter
/// entries a sidecar of that group receives, made by the same translation the xDS server
/// publishes (`weft-translate`). 404 when xDS is off or the group is unknown.
pub fn xds_resources_router(view: Option<SidecarResourcesView>) -> Router {
    Router::new().route(
        "/api/v1/xds/sidecars/{namespace}/{service}/{version}/resources",
        get(
            move |Path((namespace, service, version)): Path<(String, String, String)>| {
                let view = view.clone();
                async move {
                    let Some(view) = view else {
                        return ApiError::new(
                            StatusCode::NOT_FOUND,
                            "xDS is off: start the server with `weft serve --xds-listen ADDR`",
                        )
                        .into_response();
                    };
                    match view(&namespace, &service, &version) {
                        Some(body) => Json(body).into_response(),
                        None => ApiError::new(
                            StatusCode::NOT_FOUND,
                            format!("sidecar group {namespace}/{service}/{version} not found"),
                        )
                        .into_response(),
                    }
                }
            },
        ),
    )
}
