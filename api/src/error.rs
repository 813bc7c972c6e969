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
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body does not have the expected shape: {0}")]
    BadBody(String),
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    #[error("the request body is larger than allowed")]
    PayloadTooLarge,
    #[error("log in first: send Authorization: Bearer <token> (from POST /auth/login)")]
    Unauthenticated,
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("your role may not do this")]
    Forbidden,
    #[error("too many attempts; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error(transparent)]
    User(#[from] domain::user::UserError),
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

/// The problem document (RFC 9457), plus our stable `code`. Every error response of the API is
/// rendered from one of these, here.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    /// Extension members (RFC 9457 section 3.2), e.g. the checks of a failed readiness probe.
    #[serde(flatten, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            kind: format!("https://caseledger.dev/problems/{code}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            code,
            extensions: serde_json::Map::new(),
        }
    }

    /// Adds the fields of `value` (an object) as extension members.
    pub fn with_extensions(mut self, value: impl Serialize) -> Self {
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(value) {
            self.extensions.extend(fields);
        }
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
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
            ApiError::MalformedJson(_) => {
                (StatusCode::BAD_REQUEST, "malformed_json", "Bad request")
            }
            ApiError::BadBody(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "Invalid request",
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            ApiError::Unauthenticated => {
                (StatusCode::UNAUTHORIZED, "unauthenticated", "Unauthorized")
            }
            ApiError::InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Unauthorized",
            ),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests",
            ),
            ApiError::User(e) => {
                use domain::user::UserError as U;
                match e {
                    U::InvalidUsername { .. } => (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_username",
                        "Invalid request",
                    ),
                    U::UnknownRole { .. } => (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "unknown_role",
                        "Invalid request",
                    ),
                    U::WeakPassword { .. } => (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "weak_password",
                        "Invalid request",
                    ),
                    U::AlreadyExists => (StatusCode::CONFLICT, "user_exists", "Conflict"),
                    U::NotFound => (StatusCode::NOT_FOUND, "user_not_found", "Not found"),
                    U::Locked { .. } => (StatusCode::FORBIDDEN, "account_locked", "Forbidden"),
                    U::Deactivated => (StatusCode::FORBIDDEN, "account_deactivated", "Forbidden"),
                    U::SameRole { .. } => (StatusCode::CONFLICT, "role_unchanged", "Conflict"),
                }
            }
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
                S::Database(e) if is_unavailable(e) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "Service unavailable",
                ),
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
        Problem::new(status, code, title, detail)
    }
}

/// Whether a database error means "cannot reach the database" rather than a bug.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolClosed
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::WorkerCrashed
    )
}

impl ApiError {
    /// A database failure: 503 when the database cannot be reached, 500 otherwise.
    pub fn db(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            ApiError::DatabaseUnavailable
        } else {
            ApiError::internal(e)
        }
    }

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
        let unauthorized = problem.status == StatusCode::UNAUTHORIZED.as_u16();
        let retry_after = match self {
            ApiError::ReadModelBehind { .. } | ApiError::DatabaseUnavailable => Some(1),
            ApiError::RateLimited { retry_after } => Some(retry_after),
            _ => None,
        };
        let mut response = problem.into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
