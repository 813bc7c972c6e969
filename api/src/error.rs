//! Every error the API answers with, mapped to HTTP in one place.
//!
//! Responses are `application/problem+json` (RFC 9457) with a stable machine-readable `code`.
//! Internal details (database messages and the like) are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use commands::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no route for this path")]
    RouteNotFound,
    #[error("the database is unreachable")]
    DatabaseUnavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The problem document (RFC 9457), plus our stable `code`.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use StoreError as S;
        match self {
            ApiError::RouteNotFound => (StatusCode::NOT_FOUND, "route_not_found", "Not found"),
            ApiError::DatabaseUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "Service unavailable",
            ),
            ApiError::Store(e) => match e {
                S::WrongExpectedVersion { .. } => {
                    (StatusCode::CONFLICT, "wrong_expected_version", "Conflict")
                }
                S::StreamTypeMismatch { .. } => {
                    (StatusCode::CONFLICT, "stream_type_mismatch", "Conflict")
                }
                S::CommandIdReused { .. } => {
                    (StatusCode::CONFLICT, "command_id_reused", "Conflict")
                }
                S::StreamNotFound { .. } => {
                    (StatusCode::NOT_FOUND, "stream_not_found", "Not found")
                }
                S::EmptyBatch | S::MissingCommandId => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_batch",
                    "Invalid request",
                ),
                S::BatchTooLarge { .. } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "batch_too_large",
                    "Invalid request",
                ),
                S::PayloadTooLarge { .. } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "payload_too_large",
                    "Invalid request",
                ),
                S::PayloadNotObject { .. } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "payload_not_object",
                    "Invalid request",
                ),
                S::InvalidName { .. } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_name",
                    "Invalid request",
                ),
                S::InvalidCursor { .. } => {
                    (StatusCode::BAD_REQUEST, "invalid_cursor", "Bad request")
                }
                S::Undecodable { .. } | S::Database(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                ),
            },
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.parts();
        let detail = if status.is_server_error() && !matches!(self, ApiError::DatabaseUnavailable) {
            "something went wrong on our side; it has been logged".to_owned()
        } else {
            self.to_string()
        };
        Problem {
            kind: format!("https://caseledger.dev/problems/{code}"),
            title,
            status: status.as_u16(),
            detail,
            code,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        if problem.status >= 500 {
            tracing::error!(error = %self, code = problem.code, "request failed");
        }
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}
