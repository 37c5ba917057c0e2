//! Secrets never leave through the API: every JSON body any route answers (documents,
//! history, diffs, compiled and translated filter configurations, errors; routes merged in
//! later too) passes through [`weft_policy::secret::redact_json`] on its way out, so an HS256
//! secret or a telemetry key is shown as `<redacted sha256:HEX>`. A body left unchanged is
//! sent as it was.

use axum::body::{to_bytes, Body};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;

/// Larger JSON bodies are refused (500) rather than sent unredacted.
const MAX_JSON_BODY: usize = 64 * 1024 * 1024;

/// `router` with every JSON response redacted.
pub fn redacting(router: Router) -> Router {
    router.layer(axum::middleware::map_response(redact_response))
}

async fn redact_response(response: Response) -> Response {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_JSON_BODY).await else {
        return crate::error::ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "response too large to check for secrets",
        )
        .into_response();
    };
    let mut value = match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) => value,
        Err(_) => return Response::from_parts(parts, Body::from(bytes)),
    };
    if !weft_policy::secret::redact_json(&mut value) {
        return Response::from_parts(parts, Body::from(bytes));
    }
    match serde_json::to_vec(&value) {
        Ok(out) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(out))
        }
        Err(_) => crate::error::ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "response could not be redacted",
        )
        .into_response(),
    }
}
