//! `/api/v1/operators`, `/api/v1/whoami`, `/api/v1/audit`.

use super::authz::{may_grant, Principal, Role};
use super::operators::{OperatorError, OperatorRecord};
use super::{Access, AuditEntry};
use crate::routes::ApiError;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// `POST /api/v1/operators`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOperator {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// No expiry when absent.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// `201` to `POST /api/v1/operators`: the token, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorCreated {
    pub token: String,
    pub operator: OperatorRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorList {
    pub operators: Vec<OperatorRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami {
    pub name: String,
    pub role: Role,
    pub namespaces: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
}

pub(super) fn router(access: Arc<Access>) -> Router {
    Router::new()
        .route("/api/v1/operators", post(create).get(list))
        .route("/api/v1/operators/{name}", delete(revoke))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/audit", get(audit))
        .with_state(access)
}

fn failed(error: OperatorError) -> ApiError {
    let status = match &error {
        OperatorError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        OperatorError::Conflict(_) => StatusCode::CONFLICT,
        OperatorError::NotFound(_) => StatusCode::NOT_FOUND,
        OperatorError::Io { .. } => {
            tracing::error!(%error, "operator store failure");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    ApiError::new(status, error.to_string())
}

async fn create(
    State(access): State<Arc<Access>>,
    Extension(creator): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: CreateOperator = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("operator request: {e} (expected {{\"name\", \"role\", \"namespaces\", \"ttlSeconds\"}})"),
        )
    })?;
    if !may_grant(&creator, request.role) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} is a {} and may not create a {} (nobody grants more than they hold)",
                creator.id(),
                creator.role,
                request.role
            ),
        ));
    }
    let ttl = request.ttl_seconds.map(Duration::from_secs);
    let (token, operator) = access
        .operators
        .create(
            &request.name,
            request.role,
            request.namespaces,
            ttl,
            &creator.id(),
        )
        .map_err(failed)?;
    let created = OperatorCreated { token, operator };
    tracing::info!(name = %created.operator.name, role = %created.operator.role, by = %creator.id(), "operator created");
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list(State(access): State<Arc<Access>>) -> Json<OperatorList> {
    Json(OperatorList {
        operators: access.operators.list(),
    })
}

async fn revoke(
    State(access): State<Arc<Access>>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let target = access
        .operators
        .get(&name)
        .ok_or_else(|| failed(OperatorError::NotFound(name.clone())))?;
    if !may_grant(&by, target.role) && by.name != name {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} is a {} and may not revoke a {}",
                by.id(),
                by.role,
                target.role
            ),
        ));
    }
    let revoked = access.operators.revoke(&name).map_err(failed)?;
    tracing::warn!(%name, by = %by.id(), "operator revoked");
    Ok(Json(revoked).into_response())
}

async fn whoami(Extension(p): Extension<Principal>) -> Json<Whoami> {
    Json(Whoami {
        name: p.name,
        role: p.role,
        namespaces: p.namespaces,
    })
}

#[derive(Debug, Deserialize)]
struct AuditParams {
    /// Unix milliseconds.
    since: Option<u64>,
    principal: Option<String>,
}

async fn audit(
    State(access): State<Arc<Access>>,
    Query(p): Query<AuditParams>,
) -> Result<Json<AuditList>, ApiError> {
    let entries = crate::routes::blocking(move || {
        access
            .audit
            .query(p.since, p.principal.as_deref())
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("audit log: {e}"))
            })
    })
    .await?;
    Ok(Json(AuditList { entries }))
}
