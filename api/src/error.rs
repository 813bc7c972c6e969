//! Every error the API answers with, mapped to HTTP in one place.
//!
//! Responses are `application/problem+json` (RFC 9457) with a stable machine-readable `code`.
//! Internal details (database messages and the like) are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use commands::jobs::JobError;
use commands::CommandError;
use domain::allocation::AllocationError;
use domain::refusal::{ErrorKind, Refusal};
use domain::staff::StaffError;
use domain::work_allocation::WorkAllocationError;
use eventstore::StoreError;

pub use commands::error::{is_transient_conflict, is_unavailable};

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
    #[error("your role may not do this")]
    Forbidden,
    #[error("this route does not allow that method")]
    MethodNotAllowed,
    #[error("the request took longer than {0:?}")]
    Timeout(std::time::Duration),
    #[error("no projection is named {0:?}")]
    UnknownProjection(String),
    #[error("{projection} has not yet reached cursor {cursor}; retry shortly")]
    ReadModelBehind {
        projection: String,
        cursor: eventstore::Cursor,
    },
    #[error("cursor {cursor} is beyond the end of the log ({head})")]
    FutureCursor {
        cursor: eventstore::Cursor,
        head: eventstore::Cursor,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Job(JobError),
    /// Any refusal that declares its kind and code: a domain error, or a command service's
    /// [`CommandError`] (too many conflicts included). Captured when it is converted, so one
    /// variant serves every service.
    #[error("{message}")]
    Refused {
        kind: ErrorKind,
        code: &'static str,
        message: String,
        details: serde_json::Map<String, serde_json::Value>,
    },
    #[error("the job is still running; follow it at GET /jobs")]
    JobStillRunning,
    /// A resource the read model does not know (yet).
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String },
    /// Refused because of the resource's current state.
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// A field that is present but not acceptable.
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// A query or path parameter holding text that cannot be stored or compared (a NUL).
    #[error("{parameter}: text may not contain a NUL character")]
    InvalidText { parameter: String },
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
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
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
            ApiError::Job(e) => match e {
                JobError::UnknownJob(_) => (StatusCode::NOT_FOUND, "unknown_job", "Not found"),
                JobError::AlreadyRunning(_) => (StatusCode::CONFLICT, "job_running", "Conflict"),
                JobError::Database(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                ),
            },
            ApiError::JobStillRunning => (StatusCode::ACCEPTED, "job_still_running", "Accepted"),
            ApiError::Refused { kind, code, .. } => kind_parts(*kind, code),
            ApiError::NotFound { code, .. } => (StatusCode::NOT_FOUND, code, "Not found"),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code, "Conflict"),
            ApiError::InvalidField { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "Invalid request",
            ),
            ApiError::InvalidText { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_text",
                "Invalid request",
            ),
            // The one malformed input the store names that is answered 400, like any other
            // bad query parameter.
            ApiError::Store(S::InvalidCursor { .. }) => {
                (StatusCode::BAD_REQUEST, "invalid_cursor", "Bad request")
            }
            ApiError::Store(e) => {
                let (kind, code) = commands::error::store_refusal(e);
                kind_parts(kind, code)
            }
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.parts();
        let detail = if status.is_server_error()
            && matches!(
                self,
                ApiError::Internal(_)
                    | ApiError::Store(_)
                    | ApiError::Job(_)
                    | ApiError::Refused { .. }
            ) {
            "something went wrong on our side; it has been logged".to_owned()
        } else {
            self.to_string()
        };
        let problem = Problem::new(status, code, title, detail);
        // Machine-readable details a client acts on.
        match self {
            ApiError::Refused { details, .. } => problem.with_extensions(details),
            ApiError::InvalidField { field, .. } => {
                problem.with_extensions(serde_json::json!({ "field": field }))
            }
            ApiError::InvalidText { parameter } => {
                problem.with_extensions(serde_json::json!({ "parameter": parameter }))
            }
            _ => problem,
        }
    }

    /// Any refusal, answered by its kind, code and details.
    pub fn refused(e: &dyn Refusal) -> Self {
        ApiError::Refused {
            kind: e.kind(),
            code: e.code(),
            message: e.to_string(),
            details: e.details(),
        }
    }
}

/// The one mapping from a kind of failure to a status and the problem's title.
pub fn kind_parts(kind: ErrorKind, code: &'static str) -> (StatusCode, &'static str, &'static str) {
    let (status, title) = match kind {
        ErrorKind::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid request"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "Not found"),
        ErrorKind::Conflict => (StatusCode::CONFLICT, "Conflict"),
        ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "Forbidden"),
        ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, "Unauthorized"),
        ErrorKind::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "Too many requests"),
        ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Service unavailable"),
        ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
    };
    (status, code, title)
}

/// Every command service's failure, whatever its refusal: store failures keep their own
/// variant (their detail is logged, not shown), everything else is answered by its kind.
impl<R: Refusal + 'static> From<CommandError<R>> for ApiError {
    fn from(e: CommandError<R>) -> Self {
        match e {
            CommandError::Store(s) => ApiError::Store(s),
            CommandError::Codec(c) => ApiError::internal(c),
            other => ApiError::refused(&other),
        }
    }
}

impl From<StaffError> for ApiError {
    fn from(e: StaffError) -> Self {
        ApiError::refused(&e)
    }
}

impl From<AllocationError> for ApiError {
    fn from(e: AllocationError) -> Self {
        ApiError::refused(&e)
    }
}

impl From<WorkAllocationError> for ApiError {
    fn from(e: WorkAllocationError) -> Self {
        ApiError::refused(&e)
    }
}

/// A read-model query's failure: see [`ApiError::db`].
impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::db(e)
    }
}

impl From<commands::audit::AuditError> for ApiError {
    fn from(e: commands::audit::AuditError) -> Self {
        use commands::audit::AuditError;
        match e {
            AuditError::Store(s) => ApiError::Store(s),
            AuditError::Database(d) => ApiError::db(d),
            other => ApiError::internal(other),
        }
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Database(d) => ApiError::db(d),
            other => ApiError::Job(other),
        }
    }
}

impl ApiError {
    /// A database failure: 503 when the database cannot be reached, 500 otherwise.
    pub fn db(e: sqlx::Error) -> Self {
        // Before a projection has run for the first time its tables do not exist yet (a fresh
        // database, a server just started): "not ready, retry", not a server error.
        let undefined_table = e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| c == "42P01");
        if is_unavailable(&e) || undefined_table {
            if undefined_table {
                tracing::warn!(error = %e, "a read model has no tables yet");
            }
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
        // Whatever says "try later" (a read model behind, the database away) says when.
        let retry_after = match self {
            ApiError::Refused {
                kind: ErrorKind::RateLimited,
                ref details,
                ..
            } => details.get("retry_after").and_then(|v| v.as_u64()),
            ApiError::ReadModelBehind { .. } => Some(1),
            _ if problem.status == StatusCode::SERVICE_UNAVAILABLE.as_u16() => Some(1),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(e: impl Into<ApiError>) -> (u16, &'static str) {
        let problem = e.into().problem();
        (problem.status, problem.code)
    }

    fn conflicts<R: std::error::Error + 'static>() -> CommandError<R> {
        commands::RetryPolicy::DEFAULT.exhausted()
    }

    #[test]
    fn every_service_answers_too_many_conflicts_with_409_concurrency_conflict() {
        use commands::credentialing::CredentialingRefusal;
        use commands::practices::PracticeRefusal;
        use commands::workqueue::WorkQueueRefusal;
        let answers = [
            ("credentialing", answer(conflicts::<CredentialingRefusal>())),
            ("practices", answer(conflicts::<PracticeRefusal>())),
            ("work queues", answer(conflicts::<WorkQueueRefusal>())),
            (
                "staffing and allocations",
                answer(conflicts::<commands::staffing::StaffingRefusal>()),
            ),
            (
                "users",
                answer(conflicts::<commands::users::UsersRefusal>()),
            ),
            (
                "notifications",
                answer(conflicts::<commands::notifications::NotificationRefusal>()),
            ),
        ];
        for (service, got) in answers {
            assert_eq!(got, (409, "concurrency_conflict"), "{service}");
        }
    }

    #[test]
    fn a_refusal_keeps_its_code_and_details_through_the_service_error() {
        let e: CommandError<commands::workqueue::WorkQueueRefusal> =
            domain::workqueue::task::TaskError::AlreadyClaimed { by: "ann".into() }.into();
        let problem = ApiError::from(e).problem();
        assert_eq!(
            (problem.status, problem.code),
            (409, "task_already_claimed")
        );
        assert_eq!(problem.extensions.get("claimed_by"), Some(&"ann".into()));
    }

    #[test]
    fn a_store_failure_inside_a_command_is_answered_as_the_store_failure() {
        let e: CommandError<StaffError> = StoreError::CommandIdReused {
            command_id: uuid::Uuid::nil(),
        }
        .into();
        assert_eq!(answer(e), (409, "command_id_reused"));
    }
}

#[cfg(test)]
mod users_and_notifications_tests {
    use super::*;
    use commands::notifications::NotificationsError;
    use commands::users::{UsersError, UsersRefusal};
    use domain::notification::NotificationError;
    use domain::user::UserError;

    fn answer(e: ApiError) -> (u16, &'static str) {
        let problem = e.problem();
        (problem.status, problem.code)
    }

    #[test]
    fn users_refusals_keep_the_statuses_and_codes_clients_know() {
        let until = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        for (e, expected) in [
            (
                UsersError::from(UsersRefusal::InvalidCredentials),
                (401, "invalid_credentials"),
            ),
            (
                UsersRefusal::Unauthenticated.into(),
                (401, "unauthenticated"),
            ),
            (
                UsersRefusal::InvalidEmail { email: "x".into() }.into(),
                (422, "invalid_body"),
            ),
            (UserError::Locked { until }.into(), (403, "account_locked")),
            (UserError::Deactivated.into(), (403, "account_deactivated")),
            (UserError::AlreadyExists.into(), (409, "user_exists")),
            (UserError::NotFound.into(), (404, "user_not_found")),
            (
                UserError::WeakPassword { reason: "short" }.into(),
                (422, "weak_password"),
            ),
        ] {
            assert_eq!(answer(ApiError::from(e)), expected);
        }
    }

    #[test]
    fn a_rate_limited_login_answers_429_with_retry_after() {
        let response = ApiError::from(UsersError::from(UsersRefusal::RateLimited {
            retry_after: 12,
        }))
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("12")
        );
    }

    #[test]
    fn notification_refusals_keep_the_statuses_and_codes_clients_know() {
        assert_eq!(
            answer(NotificationsError::from(NotificationError::NotFound).into()),
            (404, "notification_not_found")
        );
        assert_eq!(
            answer(NotificationsError::from(NotificationError::Archived).into()),
            (409, "notification_state")
        );
    }
}
