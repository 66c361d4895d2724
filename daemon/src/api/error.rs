//! The API's one error shape: `{"code": "...", "message": "..."}` with a matching status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A request the extractors refused: 413 for a body over the limit, 415 for a missing
    /// JSON content type, 400 otherwise.
    pub fn rejected(status: StatusCode, message: String) -> Self {
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "bad_request",
        };
        let status = if status.is_client_error() && status != StatusCode::UNPROCESSABLE_ENTITY {
            status
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::new(status, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self)).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::internal(e.to_string())
    }
}

impl From<crate::service::StartError> for ApiError {
    fn from(e: crate::service::StartError) -> Self {
        use crate::service::StartError as E;
        match &e {
            E::NoWorkflows | E::Plan(_) => ApiError::bad_request(e.to_string()),
            E::UnknownWorkflow { .. } => ApiError::not_found(e.to_string()),
            E::Store(_) => ApiError::internal(e.to_string()),
            E::NoConfiguration { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_configuration",
                e.to_string(),
            ),
            E::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                e.to_string(),
            ),
        }
    }
}
