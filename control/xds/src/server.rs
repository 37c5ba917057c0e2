//! The listener: the ADS service (both variants, [`crate::ads_server`]; each stream's task
//! is `stream.rs`) and the HTTP handler that serves wasm modules, on one listener.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::ads_server::AdsServer;
use crate::state::XdsState;

/// Serves ADS, `GET /wasm/<module>.wasm` (the modules sidecars fetch) and, in plaintext mode
/// only, `GET /v1/sidecars` (the inventory; `weft status` reads it from the REST API) on
/// `listener` until `shutdown` resolves. Plain HTTP/1.1 is accepted for the GETs; ADS is
/// HTTP/2. Shutdown is graceful: it waits for open ADS
/// streams, which sidecars keep open, so callers that want to stop at once drop the future.
pub async fn serve(
    listener: TcpListener,
    state: Arc<XdsState>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_with(listener, state, axum::Router::new(), shutdown).await
}

/// [`serve`] with more HTTP routes on the same listener (telemetry ingest: sidecars reach
/// the control plane through their `weft_xds` cluster only).
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<XdsState>,
    extra: axum::Router,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_with_tls(listener, state, extra, None, shutdown).await
}

/// [`serve_with`], speaking TLS with `tls` when given (the CA is on: tokens and SVID keys
/// must not cross the network in clear; see [`crate::tls`]); its certificate is renewed
/// while the server runs.
pub async fn serve_with_tls(
    listener: TcpListener,
    state: Arc<XdsState>,
    extra: axum::Router,
    tls: Option<Arc<crate::tls::XdsTls>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let ads = AdsServer::new(Arc::clone(&state), 16 * 1024 * 1024);
    if !state.settings().mesh_warmup.is_zero() {
        let warming = Arc::clone(&state);
        let warmup = state.settings().mesh_warmup;
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            warming.end_mesh_warmup();
        });
    }
    if state.identity().is_some() {
        tokio::spawn(renew_certificates(Arc::clone(&state)));
    }
    let modules = Arc::clone(&state);
    let mut router = tonic::service::Routes::new(ads).into_axum_router().route(
        "/wasm/{file}",
        axum::routing::get(move |path: axum::extract::Path<String>| {
            let state = Arc::clone(&modules);
            async move { wasm_module(&state, &path.0) }
        }),
    );
    // With the CA on, this listener is the one every workload can reach (its sidecar's
    // `weft_xds` cluster): it serves no inventory to a caller that proved nothing. The same
    // view is on the REST API (`/api/v1/xds/sidecars`, operator side, loopback by default).
    if tls.is_none() {
        let inventory = Arc::clone(&state);
        router = router.route(
            "/v1/sidecars",
            axum::routing::get(move || {
                let state = Arc::clone(&inventory);
                async move { axum::Json(sidecars_json(&state)) }
            }),
        );
    } else {
        // Said plainly (an unknown path gets tonic's gRPC `UNIMPLEMENTED` with HTTP 200).
        router = router.route(
            "/v1/sidecars",
            axum::routing::get(|| async {
                (
                    axum::http::StatusCode::NOT_FOUND,
                    "not served on the TLS xDS listener: ask the REST API (`weft status`, \
                     GET /api/v1/xds/sidecars)\n",
                )
            }),
        );
    }
    let router = crate::catch_panic::catch_panics(router.merge(extra));
    let server = tonic::transport::Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .max_concurrent_streams(state.limits().max_streams_per_connection)
        .add_routes(tonic::service::Routes::from(router));
    match tls {
        Some(tls) => {
            tls.spawn_renewal();
            server
                .serve_with_incoming_shutdown(tls.incoming(listener), shutdown)
                .await
        }
        None => {
            server
                .serve_with_incoming_shutdown(
                    // tonic applies its TCP_NODELAY default only to listeners it binds itself
                    // (see `XdsTls::incoming`).
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    shutdown,
                )
                .await
        }
    }
}

/// What `GET /v1/sidecars` answers (and the REST API's `GET /api/v1/xds/sidecars`): the
/// published revision, every sidecar's status and the refused streams.
pub fn sidecars_json(state: &XdsState) -> serde_json::Value {
    serde_json::json!({
        "revision": state.revision(),
        "sidecars": state.sidecars(),
        "refused": state.refusals(),
        "modules": state.served_modules(),
        "module_reload": state.module_reload(),
    })
}

/// Renews SVIDs at half their lifetime and follows root rotations, on a tick a twentieth of
/// the SVID lifetime (0.2 s to 30 s), for as long as the state lives.
async fn renew_certificates(state: Arc<XdsState>) {
    let Some(authority) = state.identity() else {
        return;
    };
    let tick = (authority.ca.settings().svid_ttl / 20).clamp(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(30),
    );
    drop(authority);
    let weak = Arc::downgrade(&state);
    drop(state);
    loop {
        tokio::time::sleep(tick).await;
        match weak.upgrade() {
            Some(state) => state.refresh_identities(),
            None => return,
        }
    }
}

fn wasm_module(state: &XdsState, file: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let module = file
        .strip_suffix(".wasm")
        .and_then(|name| state.module(name));
    match module {
        Some(module) => (
            [(axum::http::header::CONTENT_TYPE, "application/wasm")],
            module.bytes.as_ref().clone(),
        )
            .into_response(),
        None => (axum::http::StatusCode::NOT_FOUND, "no such module\n").into_response(),
    }
}
