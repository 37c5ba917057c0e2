//! Operator access: every request of the served API goes through `check` (a middleware on
//! the whole router): `Host` against the API's names (421), a credential from the
//! `Authorization: Bearer` header or an operator client certificate (401), a JSON or YAML
//! body type on POST (415), the route's role (403, [`authz::authorize`]); editors' documents
//! are checked again under the state's writer lock. Every non-GET call is audited.
//! No cookie is ever read and no CORS header is ever sent.

pub mod audit;
pub mod authz;
pub mod operators;
mod routes;

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

pub use crate::tls::Peer;
pub use audit::{AuditEntry, AuditLog};
pub use authz::{Principal, Role};
pub use operators::{OperatorRecord, Operators};
pub use routes::{
    AuditList, CertificateIssued, CreateOperator, OperatorCreated, OperatorList, Whoami,
};

use crate::error::ApiError;

/// The access state of a served API.
pub struct Access {
    pub operators: Operators,
    pub audit: AuditLog,
    /// The names clients may put in `Host` (lower case, no port).
    pub hosts: Vec<String>,
    /// The operator CA (`<data-dir>/operator-ca`), with `--ca`: client certificates.
    pub operator_ca: Option<Arc<weft_ca::Ca>>,
}

/// `router` plus the operator and audit routes, every route behind `check`.
pub fn protect(router: Router, access: Arc<Access>) -> Router {
    router
        .merge(routes::router(Arc::clone(&access)))
        .layer(axum::middleware::from_fn_with_state(access, check))
}

/// The body types a POST may carry (what a browser form or a `fetch` without a preflight
/// cannot send).
const BODY_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/x-yaml",
    "text/yaml",
];

/// The largest answer the audit reads its version from; larger ones are logged without it.
const AUDIT_BODY_LIMIT: usize = 4 * 1024 * 1024;

async fn check(State(access): State<Arc<Access>>, mut request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let need = template
        .as_deref()
        .and_then(|t| authz::need(method.as_str(), t));
    if need == Some(authz::Need::Open) {
        return next.run(request).await;
    }
    let peer = peer_of(&request);
    let audited = method != Method::GET && method != Method::HEAD;
    let route = format!(
        "{method} {}",
        template.as_deref().unwrap_or(request.uri().path())
    );
    let mut entry = AuditEntry {
        time_unix_ms: operators::now_ms(),
        principal: "anonymous".into(),
        source: peer
            .as_ref()
            .map_or_else(String::new, |p| p.addr.to_string()),
        route,
        status: 0,
        outcome: String::new(),
        version: None,
        reason: None,
        id: None,
    };
    let namespace = template
        .as_deref()
        .and_then(|t| authz::path_namespace(t, request.uri().path()))
        .map(str::to_string);
    let principal = match decide(&access, &request, peer.as_ref(), need, namespace.as_deref()) {
        Ok(principal) => principal,
        Err((status, principal, reason)) => {
            if let Some(p) = principal {
                entry.principal = p.id();
            }
            let response = refusal(status, &reason, request.uri().path());
            if audited {
                entry.status = status.as_u16();
                entry.outcome = "refused".into();
                entry.reason = Some(reason);
                record(&access, &entry);
            }
            return response;
        }
    };
    entry.principal = principal.id();
    if audited {
        // Written before the call runs: a change the log cannot record is not made (D111).
        entry.id = Some(call_id());
        let started = AuditEntry {
            outcome: audit::STARTED.into(),
            ..entry.clone()
        };
        if let Err(error) = access.audit.append(&started) {
            tracing::error!(%error, route = %entry.route, principal = %entry.principal, "cannot write the audit log: the call is refused");
            let reason = format!(
                "the audit log cannot be written ({error}); nothing was changed: retry when it can"
            );
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                &reason,
                request.uri().path(),
            );
        }
    }
    request.extensions_mut().insert(principal);
    let response = next.run(request).await;
    if !audited {
        return response;
    }
    let (parts, body) = response.into_parts();
    // The resulting version is read from answers of a known, bounded size; a larger or
    // streamed answer passes through untouched (logged without a version).
    let small = axum::body::HttpBody::size_hint(&body)
        .exact()
        .is_some_and(|n| n <= AUDIT_BODY_LIMIT as u64);
    let (body, value) = if small {
        match to_bytes(body, AUDIT_BODY_LIMIT).await {
            Ok(bytes) => {
                let value = serde_json::from_slice(&bytes).unwrap_or_default();
                (Body::from(bytes), value)
            }
            Err(_) => (Body::empty(), serde_json::Value::Null),
        }
    } else {
        (body, serde_json::Value::Null)
    };
    entry.status = parts.status.as_u16();
    if parts.status.is_success() {
        entry.outcome = "allowed".into();
        entry.version = value.get("version").and_then(serde_json::Value::as_u64);
    } else {
        entry.outcome = if parts.status == StatusCode::FORBIDDEN {
            "refused".into()
        } else {
            "failed".into()
        };
        entry.reason = value
            .get("error")
            .and_then(serde_json::Value::as_str)
            .map(|e| e.chars().take(1000).collect());
    }
    record(&access, &entry);
    Response::from_parts(parts, body)
}

type Refusal = (StatusCode, Option<Principal>, String);

/// Host, credential, body type, role: the first that fails decides the status.
fn decide(
    access: &Access,
    request: &Request,
    peer: Option<&Peer>,
    need: Option<authz::Need>,
    namespace: Option<&str>,
) -> Result<Principal, Refusal> {
    check_host(&access.hosts, request.headers())
        .map_err(|reason| (StatusCode::MISDIRECTED_REQUEST, None, reason))?;
    let principal = authenticate(access, request.headers(), peer)
        .map_err(|reason| (StatusCode::UNAUTHORIZED, None, reason))?;
    if request.method() == Method::POST {
        check_body_type(request.headers()).map_err(|reason| {
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Some(principal.clone()),
                reason,
            )
        })?;
    }
    authz::authorize(Some(&principal), need, namespace).map_err(|denied| match denied {
        authz::Denied::Unauthenticated => (
            StatusCode::UNAUTHORIZED,
            None,
            "no valid credential".to_string(),
        ),
        authz::Denied::Forbidden(reason) => {
            (StatusCode::FORBIDDEN, Some(principal.clone()), reason)
        }
    })?;
    Ok(principal)
}

fn peer_of(request: &Request) -> Option<Peer> {
    request
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.clone())
}

/// The `Host` header's name (without port, lower case) must be one of `hosts`: a page on
/// another origin that resolves its own name to this address (DNS rebinding) is refused.
fn check_host(hosts: &[String], headers: &HeaderMap) -> Result<(), String> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or("a Host header is required")?;
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    let name = name.to_ascii_lowercase();
    if hosts.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "Host {:?} is not one of this API's names ({}); start weft serve with --api-name to add one",
            host.chars().take(100).collect::<String>(),
            hosts.join(", ")
        ))
    }
}

/// `Authorization: Bearer <token>` (never a cookie), else the operator client certificate.
fn authenticate(
    access: &Access,
    headers: &HeaderMap,
    peer: Option<&Peer>,
) -> Result<Principal, String> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    if let Some(value) = values.next() {
        if values.next().is_some() {
            return Err("more than one Authorization header".into());
        }
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .ok_or("Authorization must be `Bearer <token>`")?;
        return access
            .operators
            .authenticate(token.trim())
            .ok_or_else(|| "unknown, expired or revoked token".to_string());
    }
    if let Some(name) = peer.and_then(|p| p.operator.as_deref()) {
        return access.operators.by_name(name).ok_or_else(|| {
            format!("operator {name:?} of the client certificate is revoked, expired or unknown")
        });
    }
    Err(
        "no credential: send `Authorization: Bearer <token>` or an operator client certificate"
            .into(),
    )
}

fn check_body_type(headers: &HeaderMap) -> Result<(), String> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if BODY_TYPES.contains(&essence.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "Content-Type {:?} is not accepted: send one of {}",
            value.chars().take(100).collect::<String>(),
            BODY_TYPES.join(", ")
        ))
    }
}

fn refusal(status: StatusCode, reason: &str, path: &str) -> Response {
    let mut response = if status == StatusCode::UNAUTHORIZED && path == "/ui" {
        // The UI's page: a login form (the token is kept in sessionStorage, sent as a header).
        (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            LOGIN_PAGE,
        )
            .into_response()
    } else {
        ApiError::new(status, reason).into_response()
    };
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"weft\""),
        );
    }
    response
}

/// A call's audit id: 64 random bits in hex, unique across replicas in practice.
fn call_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // No system randomness: the time and a process counter still tell calls apart on
        // this replica.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes = (operators::now_ms() ^ n.rotate_left(40)).to_be_bytes();
    }
    operators::hex(&bytes)
}

fn record(access: &Access, entry: &AuditEntry) {
    if let Err(error) = access.audit.append(entry) {
        tracing::error!(%error, route = %entry.route, principal = %entry.principal, "cannot write the audit log");
    }
}

/// `/ui` without a credential: a form that keeps the token in sessionStorage and loads the
/// UI with it in the Authorization header.
const LOGIN_PAGE: &str = include_str!("login.html");

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn host_must_be_one_of_the_api_names() {
        let hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
        for ok in ["localhost:7070", "127.0.0.1", "[::1]:7070", "LOCALHOST"] {
            assert_eq!(
                check_host(&hosts, &headers(&[("host", ok)])),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            "evil.example:7070",
            "localhost.evil",
            "127.0.0.1.nip.io",
            "[::2]",
        ] {
            assert!(
                check_host(&hosts, &headers(&[("host", bad)])).is_err(),
                "{bad}"
            );
        }
        assert!(check_host(&hosts, &headers(&[])).is_err());
    }

    #[test]
    fn only_json_and_yaml_bodies_are_accepted() {
        for ok in [
            "application/json",
            "application/yaml; charset=utf-8",
            "text/yaml",
            "application/x-yaml",
        ] {
            assert_eq!(
                check_body_type(&headers(&[("content-type", ok)])),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "",
        ] {
            assert!(
                check_body_type(&headers(&[("content-type", bad)])).is_err(),
                "{bad}"
            );
        }
    }
}
