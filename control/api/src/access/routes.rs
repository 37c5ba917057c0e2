//! `/api/v1/operators`, `/api/v1/whoami`, `/api/v1/whoami/certificate`, `/api/v1/audit`.

use super::authz::{may_grant, Principal, Role};
use super::operators::{OperatorError, OperatorRecord};
use super::{Access, AuditEntry};
use crate::error::ApiError;
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
    /// Also issue a client certificate from the operator CA (needs `weft serve --ca`).
    #[serde(default)]
    pub certificate: bool,
}

/// `201` to `POST /api/v1/operators`: the token, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorCreated {
    pub token: String,
    pub operator: OperatorRecord,
    /// With `certificate`: the PEM certificate
    /// (`spiffe://<td>/ns/weft-system/operator/<name>`), its PKCS#8 key and the SPIFFE id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
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

/// `201` to `POST /api/v1/whoami/certificate`: a new client certificate for the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateIssued {
    /// `spiffe://<td>/ns/weft-system/operator/<name>`.
    pub spiffe_id: String,
    pub cert_pem: String,
    /// PKCS#8 PEM, shown this once.
    pub key_pem: String,
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
        .route("/api/v1/whoami/certificate", post(renew_certificate))
        .route("/api/v1/audit", get(audit))
        .with_state(access)
}

/// Why a client certificate cannot be issued by a server without `--ca`.
const NO_OPERATOR_CA: &str =
    "client certificates need the operator CA: start the server with `weft serve --ca`";

fn failed(error: OperatorError) -> ApiError {
    let status = match &error {
        OperatorError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        OperatorError::Conflict(_) => StatusCode::CONFLICT,
        OperatorError::NotFound(_) => StatusCode::NOT_FOUND,
        OperatorError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
    if request.certificate && access.operator_ca.is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, NO_OPERATOR_CA));
    }
    let ttl = request.ttl_seconds.map(Duration::from_secs);
    let (token, operator) = access
        .operators
        .create(
            &request.name,
            request.role,
            request.namespaces,
            ttl,
            request.certificate,
            &creator.id(),
        )
        .map_err(failed)?;
    let mut created = OperatorCreated {
        token,
        operator,
        cert_pem: None,
        key_pem: None,
        spiffe_id: None,
    };
    if let (true, Some(ca)) = (request.certificate, &access.operator_ca) {
        let cert = issue(ca, &request.name)?;
        created.spiffe_id = Some(cert.spiffe_id);
        created.cert_pem = Some(cert.cert_chain_pem);
        created.key_pem = Some(cert.key_pem);
    }
    tracing::info!(name = %created.operator.name, role = %created.operator.role, by = %creator.id(), "operator created");
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// A client certificate for operator `name` from the operator CA.
fn issue(ca: &weft_ca::Ca, name: &str) -> Result<weft_ca::Svid, ApiError> {
    ca.issue_operator(name).map_err(|e| {
        tracing::error!(error = %e, "operator certificate");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("operator certificate: {e}"),
        )
    })
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
    // Revoking only takes power away: a security-admin revokes anyone but an admin.
    let allowed = by.role == Role::Admin
        || (by.role == Role::SecurityAdmin && target.role != Role::Admin)
        || by.name == name;
    if !allowed {
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

/// A fresh client certificate for the caller's own operator, authenticated by its token or
/// its current certificate: how an operator renews before its certificate's 7 days run out.
/// Only an operator created with a certificate gets one (a token-only operator is not given
/// a second credential this way); a revoked or expired operator never gets here.
async fn renew_certificate(
    State(access): State<Arc<Access>>,
    Extension(me): Extension<Principal>,
) -> Result<Response, ApiError> {
    let Some(ca) = &access.operator_ca else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, NO_OPERATOR_CA));
    };
    let record = access
        .operators
        .get(&me.name)
        .ok_or_else(|| failed(OperatorError::NotFound(me.name.clone())))?;
    if !record.certificate {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "operator {:?} was created without a client certificate: an admin creates a new operator with one (`weft operator create --cert-out DIR`)",
                me.name
            ),
        ));
    }
    let cert = issue(ca, &me.name)?;
    tracing::info!(name = %me.name, "operator certificate renewed");
    let issued = CertificateIssued {
        spiffe_id: cert.spiffe_id,
        cert_pem: cert.cert_chain_pem,
        key_pem: cert.key_pem,
    };
    Ok((StatusCode::CREATED, Json(issued)).into_response())
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
    let entries = crate::error::blocking(move || {
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
