//! The control plane's REST API: JSON over HTTP/1.1 under `/api/v1`, described by the OpenAPI
//! document served at `/openapi.json` (kept in `openapi.json` beside this crate's manifest;
//! tests check every route is in it and each body's schema has exactly the fields serde writes
//! for the shared [`types`], see `openapi_contract.rs`).
//!
//! Handlers translate HTTP to [`ControlPlane`] calls and [`StateError`](weft_state::StateError)s to status codes:
//! 413 too large, 422 invalid (with every field error), 404 not found, 409 conflict, 500
//! store failure. Bodies are read up to the policy size limit and refused beyond it.
#![forbid(unsafe_code)]

pub mod access;
mod error;
mod explain;
mod identity;
mod openapi_contract;
mod redact;
mod replicas_view;
mod routes;
pub mod tls;
pub mod types;
mod xds_view;

pub use explain::{explain_router, ExplainKeys, DEFAULT_EXPLAIN_TTL_SECS};
pub use identity::identity_router;
pub use redact::redacting;
pub use replicas_view::{replicas_router, ReplicasView};
pub use routes::{router, ROUTES};
pub use weft_xds::catch_panic::panic_message;
pub use xds_view::{xds_resources_router, xds_router, SidecarResourcesView, SidecarView};

use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use weft_state::ControlPlane;

/// `router` with every handler's panic turned into a 500 with the API's JSON error body
/// ([`weft_xds::catch_panic`]).
pub fn catch_panics(router: axum::Router) -> axum::Router {
    weft_xds::catch_panic::catch_panics_with(router, |message| {
        use axum::response::IntoResponse;
        error::ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, message).into_response()
    })
}

/// The OpenAPI 3 description of the API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Serves the API on `listener` until `shutdown` completes, then finishes in-flight requests.
/// A panicking handler answers 500 ([`catch_panics`]); the server keeps serving. Every JSON
/// answer has its secrets redacted ([`redacting`]).
pub async fn serve(
    listener: TcpListener,
    state: Arc<ControlPlane>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, catch_panics(redacting(router(state))))
        .with_graceful_shutdown(shutdown)
        .await
}

/// [`serve`] with more routes merged in (the telemetry views: `/api/v1/graph`,
/// `/api/v1/suggest/authz`, `/metrics`, `/ui`, listed in [`ROUTES`] and the OpenAPI document).
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<ControlPlane>,
    extra: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        catch_panics(redacting(router(state).merge(extra))),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Where the served API listens: TLS (the default), or plain HTTP (`--insecure-listen`,
/// loopback only).
pub enum ApiListener {
    Plain(TcpListener),
    Tls(tls::TlsListener),
}

/// [`serve_with`] behind operator access ([`access::protect`]): every route but `/healthz`
/// needs a credential, every change is audited.
pub async fn serve_protected(
    listener: ApiListener,
    state: Arc<ControlPlane>,
    extra: axum::Router,
    access: Arc<access::Access>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = catch_panics(redacting(access::protect(
        router(state).merge(extra),
        access,
    )))
    .into_make_service_with_connect_info::<access::Peer>();
    match listener {
        ApiListener::Plain(listener) => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        ApiListener::Tls(listener) => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}
