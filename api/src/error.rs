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
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("bad path: {0}")]
    BadPath(String),
    #[error("this route does not allow that method")]
    MethodNotAllowed,
    #[error("the request took longer than {0:?}")]
    Timeout(std::time::Duration),
    #[error("no projection is named {0:?}")]
    UnknownProjection(String),
    #[error("{projection} has not yet reached cursor {cursor}; retry shortly")]
    ReadModelBehind {
        projection: String,
        cursor: commands::Cursor,
    },
    #[error("cursor {cursor} is beyond the end of the log ({head})")]
    FutureCursor {
        cursor: commands::Cursor,
        head: commands::Cursor,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else that went wrong on our side; logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
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
            ApiError::BadQuery(_) => (StatusCode::BAD_REQUEST, "bad_query", "Bad request"),
            ApiError::BadPath(_) => (StatusCode::BAD_REQUEST, "bad_path", "Bad request"),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            ApiError::Timeout(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "Service unavailable",
            ),
            ApiError::UnknownProjection(_) => {
                (StatusCode::NOT_FOUND, "unknown_projection", "Not found")
            }
            ApiError::ReadModelBehind { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "read_model_behind",
                "Service unavailable",
            ),
            ApiError::FutureCursor { .. } => {
                (StatusCode::BAD_REQUEST, "cursor_in_future", "Bad request")
            }
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
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
        let detail = if status.is_server_error()
            && matches!(self, ApiError::Internal(_) | ApiError::Store(_))
        {
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

impl ApiError {
    pub fn internal(error: impl std::fmt::Display) -> Self {
        ApiError::Internal(error.to_string())
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
        let retry = matches!(
            self,
            ApiError::ReadModelBehind { .. } | ApiError::DatabaseUnavailable
        );
        let mut response = (status, axum::Json(problem)).into_response();
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}
