//! The API's error answer and the blocking-call helper every route module shares.

use crate::types;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use weft_policy::FieldError;
use weft_state::StateError;

/// `{"error": "...", "details": [{document, field, reason}]}` with a fitting status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    details: Vec<FieldError>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            details: Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(types::ErrorBody {
                error: self.message,
                details: self.details,
            }),
        )
            .into_response()
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        let message = e.to_string();
        match e {
            StateError::TooLarge { .. } => Self::new(StatusCode::PAYLOAD_TOO_LARGE, message),
            StateError::Invalid(details) => Self {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message,
                details,
            },
            StateError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, message),
            StateError::Conflict(_) => Self::new(StatusCode::CONFLICT, message),
            StateError::Forbidden(_) => Self::new(StatusCode::FORBIDDEN, message),
            StateError::Store(
                weft_store::StoreError::Unavailable(_) | weft_store::StoreError::Unconfirmed(_),
            ) => {
                tracing::warn!(error = %message, "change refused: the store is unreachable");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
            }
            StateError::Store(_) => {
                tracing::error!(error = %message, "store failure");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
            }
        }
    }
}

/// Runs a blocking call (store appends `fsync`, audit log reads) off the async workers.
pub(crate) async fn blocking<T: Send + 'static, E: Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    ApiError: From<E>,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("task failed: {e}"),
            )
        })?
        .map_err(ApiError::from)
}
