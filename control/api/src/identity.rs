//! Join tokens and the mesh CA (`weft token ...`, `weft ca ...`). Present only when the
//! server runs its CA (`weft serve --ca`); otherwise every route answers 404 saying so.
//! Creating a token is as powerful as holding the service's identity: this API belongs on
//! the operator's side (loopback by default), never on the listener sidecars reach.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use weft_ca::Identity;

use crate::error::ApiError;
use crate::types::{CaInfo, CreateToken, Revoked, RootRotated, TokenCreated, TokenList};

type IdentityState = Option<Arc<Identity>>;

/// Default token lifetime: one day, like the default SVID lifetime.
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The token and CA routes; `identity` is `None` when the CA is off.
pub fn identity_router(identity: Option<Arc<Identity>>) -> Router {
    Router::new()
        .route("/api/v1/tokens", post(create).get(list))
        .route("/api/v1/tokens/{id}", delete(revoke))
        .route("/api/v1/ca", get(show))
        .route("/api/v1/ca/rotate", post(rotate))
        .with_state(identity)
}

fn enabled(identity: &IdentityState) -> Result<&Identity, ApiError> {
    identity.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "the mesh CA is off: start the server with `weft serve --ca`",
        )
    })
}

fn failed(error: weft_ca::CaError) -> ApiError {
    match error {
        weft_ca::CaError::BadName { .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
        }
        weft_ca::CaError::Reserved { .. } | weft_ca::CaError::OutOfRange { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, format!("token request: {error}"))
        }
        weft_ca::CaError::Shared(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
        }
        weft_ca::CaError::Contended(_) => ApiError::new(StatusCode::CONFLICT, error.to_string()),
        error => {
            tracing::error!(%error, "identity store failure");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
        }
    }
}

async fn create(State(identity): State<IdentityState>, body: Bytes) -> Result<Response, ApiError> {
    let identity = enabled(&identity)?;
    let request: CreateToken = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("token request: {e} (expected {{\"service\", \"namespace\", \"ttlSeconds\"}})"),
        )
    })?;
    let ttl = request
        .ttl_seconds
        .map_or(DEFAULT_TOKEN_TTL, Duration::from_secs);
    if ttl.is_zero() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "token request: ttlSeconds must be positive",
        ));
    }
    // Checked here to name the request's field; the token store checks again.
    if ttl > weft_ca::MAX_TOKEN_TTL {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "token request: ttlSeconds {} is above the maximum of {} (30 days)",
                ttl.as_secs(),
                weft_ca::MAX_TOKEN_TTL.as_secs()
            ),
        ));
    }
    if request
        .namespace
        .eq_ignore_ascii_case(weft_ca::RESERVED_NAMESPACE)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "token request: namespace {:?} is reserved for the control plane's own identity",
                request.namespace
            ),
        ));
    }
    let (token, record) = identity
        .tokens
        .create(&request.namespace, &request.service, ttl)
        .map_err(failed)?;
    tracing::info!(id = %record.claims.id, namespace = %record.claims.namespace, service = %record.claims.service, exp = record.claims.exp, "join token created");
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            spiffe_id: identity
                .ca
                .spiffe_id(&record.claims.namespace, &record.claims.service),
            token,
            record,
        }),
    )
        .into_response())
}

async fn list(State(identity): State<IdentityState>) -> Result<Response, ApiError> {
    let identity = enabled(&identity)?;
    Ok(Json(TokenList {
        tokens: identity.tokens.list(),
    })
    .into_response())
}

async fn revoke(
    State(identity): State<IdentityState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let identity = enabled(&identity)?;
    if !identity.tokens.revoke(&id).map_err(failed)? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no token {id:?}"),
        ));
    }
    tracing::warn!(%id, "join token revoked");
    Ok(Json(Revoked { revoked: id }).into_response())
}

async fn show(State(identity): State<IdentityState>) -> Result<Response, ApiError> {
    let identity = enabled(&identity)?;
    let settings = identity.ca.settings();
    Ok(Json(CaInfo {
        trust_domain: settings.trust_domain.clone(),
        svid_ttl_seconds: settings.svid_ttl.as_secs(),
        signing_generation: identity.ca.signing_generation(),
        roots: identity.ca.roots(),
        trust_bundle: identity.ca.trust_bundle(),
    })
    .into_response())
}

async fn rotate(State(identity): State<IdentityState>) -> Result<Response, ApiError> {
    let identity = enabled(&identity)?;
    let root = identity.ca.rotate_root().map_err(failed)?;
    tracing::warn!(
        generation = root.generation,
        active_from_ms = root.active_from_ms,
        "mesh root rotation started"
    );
    Ok(Json(RootRotated { root }).into_response())
}
