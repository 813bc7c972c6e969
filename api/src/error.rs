//! Every error the API answers with, mapped to HTTP in one place.
//!
//! Responses are `application/problem+json` (RFC 9457) with a stable machine-readable `code`.
//! Internal details (database messages and the like) are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use commands::credentialing::CredentialingError;
use commands::jobs::JobError;
use commands::notifications::NotificationsError;
use commands::practices::PracticeServiceError;
use commands::users::UsersError;
use commands::workqueue::WorkQueueError;
use domain::allocation::AllocationError;
use domain::credential::CredentialError;
use domain::physician::PhysicianError;
use domain::refusal::{ErrorKind, Refusal};
use domain::renewal::RenewalError;
use domain::staff::StaffError;
use domain::work_allocation::WorkAllocationError;
use eventstore::StoreError;

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
        cursor: eventstore::Cursor,
    },
    #[error("cursor {cursor} is beyond the end of the log ({head})")]
    FutureCursor {
        cursor: eventstore::Cursor,
        head: eventstore::Cursor,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Refused by the physician, credential or renewal aggregate.
    #[error(transparent)]
    Credentialing(CredentialingError),
    #[error(transparent)]
    Job(JobError),
    /// Refused by the practice or membership aggregate.
    #[error(transparent)]
    Practices(PracticeServiceError),
    /// Refused by a staff member's aggregate.
    #[error(transparent)]
    Staff(StaffError),
    /// Weights refused, or a ranking that cannot give what was asked.
    #[error(transparent)]
    Allocation(AllocationError),
    /// Refused by a piece of work's allocation.
    #[error(transparent)]
    WorkAllocation(WorkAllocationError),
    /// A request field names a staff member who is not registered.
    #[error("{field}: no staff member {staff_id}")]
    UnknownStaff {
        field: &'static str,
        staff_id: uuid::Uuid,
    },
    /// Refused by a department, queue, task or case, or by claim-next.
    #[error(transparent)]
    WorkQueue(WorkQueueError),
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
    /// Anything else that went wrong on our side; logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
    /// Refused by a service whose error states its own kind and code (users, notifications).
    #[error("{}", .0.detail)]
    Refused(Refused),
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
            ApiError::Credentialing(e) => credentialing_parts(e),
            ApiError::Practices(e) => practice_parts(e),
            ApiError::WorkQueue(e) => work_parts(e),
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
            ApiError::Staff(_)
            | ApiError::Allocation(_)
            | ApiError::WorkAllocation(_)
            | ApiError::UnknownStaff { .. } => staffing_parts(self),
            ApiError::NotFound { code, .. } => (StatusCode::NOT_FOUND, code, "Not found"),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code, "Conflict"),
            ApiError::InvalidField { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "Invalid request",
            ),
            ApiError::Refused(r) => {
                let (status, title) = kind_parts(r.kind);
                (status, r.code, title)
            }
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
                S::Database(e) if is_transient_conflict(e) => {
                    (StatusCode::CONFLICT, "concurrency_conflict", "Conflict")
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
            && matches!(
                self,
                ApiError::Internal(_)
                    | ApiError::Store(_)
                    | ApiError::Job(_)
                    | ApiError::Refused(_)
            ) {
            "something went wrong on our side; it has been logged".to_owned()
        } else {
            self.to_string()
        };
        let problem = Problem::new(status, code, title, detail);
        // Machine-readable details a client acts on.
        match self {
            ApiError::Credentialing(CredentialingError::Renewal(
                RenewalError::TransitionRefused { from, .. },
            )) => problem.with_extensions(serde_json::json!({
                "current_status": from,
                "allowed": from.allowed_next(),
            })),
            ApiError::Credentialing(CredentialingError::Renewal(
                RenewalError::RequiredItemsOpen { items },
            )) => problem.with_extensions(serde_json::json!({ "open_items": items })),
            ApiError::Credentialing(CredentialingError::Credential(
                CredentialError::RenewalAlreadyOpen { renewal_id }
                | CredentialError::RenewalStillOpen { renewal_id },
            )) => problem.with_extensions(serde_json::json!({ "renewal_id": renewal_id })),
            ApiError::Staff(_)
            | ApiError::Allocation(_)
            | ApiError::WorkAllocation(_)
            | ApiError::UnknownStaff { .. } => staffing_extensions(self, problem),
            ApiError::WorkQueue(e) => work_extensions(e, problem),
            ApiError::InvalidField { field, .. } => {
                problem.with_extensions(serde_json::json!({ "field": field }))
            }
            ApiError::Refused(r) => problem.with_extensions(&r.details),
            _ => problem,
        }
    }
}

fn credentialing_parts(e: &CredentialingError) -> (StatusCode, &'static str, &'static str) {
    const CONFLICT: (StatusCode, &str) = (StatusCode::CONFLICT, "Conflict");
    const INVALID: (StatusCode, &str) = (StatusCode::UNPROCESSABLE_ENTITY, "Invalid request");
    const MISSING: (StatusCode, &str) = (StatusCode::NOT_FOUND, "Not found");
    let ((status, title), code) = match e {
        CredentialingError::Physician(p) => match p {
            PhysicianError::NotFound => (MISSING, "physician_not_found"),
            PhysicianError::NpiTaken { .. } => (CONFLICT, "npi_taken"),
            PhysicianError::InvalidField { .. } => (INVALID, "invalid_field"),
            PhysicianError::AlreadyInactive | PhysicianError::AlreadyActive => {
                (CONFLICT, "physician_state")
            }
            PhysicianError::Unchanged => (CONFLICT, "unchanged"),
        },
        CredentialingError::Credential(c) => match c {
            CredentialError::NotFound => (MISSING, "credential_not_found"),
            CredentialError::AlreadyRegistered => (CONFLICT, "credential_exists"),
            CredentialError::UnknownPhysician => (INVALID, "unknown_physician"),
            CredentialError::PhysicianInactive => (CONFLICT, "physician_inactive"),
            CredentialError::InvalidNumber | CredentialError::MissingReason => {
                (INVALID, "invalid_field")
            }
            CredentialError::RenewalAlreadyOpen { .. } => (CONFLICT, "renewal_already_open"),
            CredentialError::Revoked => (CONFLICT, "credential_revoked"),
            CredentialError::AlreadyExpired { .. } => (CONFLICT, "credential_expired"),
            CredentialError::NotTheOpenRenewal { .. } => (CONFLICT, "not_the_open_renewal"),
            CredentialError::NewExpiryNotLater { .. } => (INVALID, "invalid_new_expiry"),
            CredentialError::SameExpiry { .. } => (CONFLICT, "unchanged"),
            CredentialError::RenewalStillOpen { .. } => (CONFLICT, "renewal_still_open"),
            CredentialError::ImplausibleDate { .. } => (INVALID, "invalid_date"),
        },
        CredentialingError::Renewal(r) => match r {
            RenewalError::NotFound => (MISSING, "renewal_not_found"),
            RenewalError::AlreadyInitiated => (CONFLICT, "renewal_exists"),
            RenewalError::TransitionRefused { .. } | RenewalError::NotRejected { .. } => {
                (CONFLICT, "transition_refused")
            }
            RenewalError::ChecklistClosed { .. } => (CONFLICT, "checklist_closed"),
            RenewalError::UnknownItem { .. } => (INVALID, "unknown_checklist_item"),
            RenewalError::ItemAlreadyComplete { .. } => (CONFLICT, "item_already_complete"),
            RenewalError::RequiredItemsOpen { .. } => (CONFLICT, "required_items_open"),
            RenewalError::NotYetExpired { .. } => (CONFLICT, "not_yet_expired"),
            RenewalError::NewExpiryNotLater { .. } => (INVALID, "invalid_new_expiry"),
            RenewalError::InvalidReason => (INVALID, "invalid_field"),
            RenewalError::ImplausibleNewExpiry { .. } => (INVALID, "invalid_date"),
        },
        CredentialingError::TooManyConflicts { .. } => (CONFLICT, "concurrency_conflict"),
        // Converted to `ApiError::Store` / `Internal` on the way in; kept total here.
        CredentialingError::Store(_) | CredentialingError::Codec(_) => (
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
            "internal",
        ),
    };
    (status, code, title)
}

impl From<CredentialingError> for ApiError {
    fn from(e: CredentialingError) -> Self {
        match e {
            CredentialingError::Store(s) => ApiError::Store(s),
            CredentialingError::Codec(c) => ApiError::internal(c),
            other => ApiError::Credentialing(other),
        }
    }
}

fn practice_parts(e: &PracticeServiceError) -> (StatusCode, &'static str, &'static str) {
    use domain::practice::{MembershipError as M, PracticeError as P};
    const CONFLICT: (StatusCode, &str) = (StatusCode::CONFLICT, "Conflict");
    const INVALID: (StatusCode, &str) = (StatusCode::UNPROCESSABLE_ENTITY, "Invalid request");
    const MISSING: (StatusCode, &str) = (StatusCode::NOT_FOUND, "Not found");
    let ((status, title), code) = match e {
        PracticeServiceError::Practice(p) => match p {
            P::NotFound => (MISSING, "practice_not_found"),
            P::NameTaken { .. } => (CONFLICT, "practice_name_taken"),
            P::InvalidField { .. } => (INVALID, "invalid_field"),
            P::Rename { .. } => (INVALID, "rename_not_allowed"),
            P::Unchanged => (CONFLICT, "unchanged"),
            P::Inactive => (CONFLICT, "practice_inactive"),
            P::AlreadyActive => (CONFLICT, "practice_state"),
            P::PhysiciansStillAssigned { .. } => (CONFLICT, "physicians_still_assigned"),
            P::LocationExists { .. } | P::LocationNameTaken { .. } => (CONFLICT, "location_exists"),
            P::UnknownLocation { .. } => (MISSING, "location_not_found"),
            P::AlreadyAssigned { .. } => (CONFLICT, "already_assigned"),
            P::NotAssigned { .. } => (CONFLICT, "not_assigned"),
        },
        PracticeServiceError::Membership(m) => match m {
            M::UnknownPhysician => (INVALID, "unknown_physician"),
            M::PhysicianInactive => (CONFLICT, "physician_inactive"),
            M::AlreadyInPractice { .. } => (CONFLICT, "already_assigned_elsewhere"),
            M::AlreadyInThisPractice { .. } => (CONFLICT, "already_in_this_practice"),
            M::NotInPractice { .. } => (CONFLICT, "not_in_this_practice"),
            M::SamePractice { .. } => (CONFLICT, "same_practice"),
        },
        PracticeServiceError::TooManyConflicts { .. } => (CONFLICT, "concurrency_conflict"),
        PracticeServiceError::Store(_) | PracticeServiceError::Codec(_) => (
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
            "internal",
        ),
    };
    (status, code, title)
}

fn work_parts(e: &WorkQueueError) -> (StatusCode, &'static str, &'static str) {
    use commands::workqueue::NothingToClaim as N;
    use domain::workqueue::case::CaseError as C;
    use domain::workqueue::department::DepartmentError as D;
    use domain::workqueue::queue::QueueError as Q;
    use domain::workqueue::task::TaskError as T;
    const CONFLICT: (StatusCode, &str) = (StatusCode::CONFLICT, "Conflict");
    const INVALID: (StatusCode, &str) = (StatusCode::UNPROCESSABLE_ENTITY, "Invalid request");
    const MISSING: (StatusCode, &str) = (StatusCode::NOT_FOUND, "Not found");
    const REFUSED: (StatusCode, &str) = (StatusCode::FORBIDDEN, "Forbidden");
    let ((status, title), code) = match e {
        WorkQueueError::Department(d) => match d {
            D::CodeTaken { .. } => (CONFLICT, "department_code_taken"),
            D::NotFound => (MISSING, "department_not_found"),
            D::UnknownParent { .. } => (INVALID, "unknown_department"),
            D::Invalid(_) => (INVALID, "invalid_field"),
        },
        WorkQueueError::Queue(q) => match q {
            Q::NameTaken { .. } => (CONFLICT, "queue_name_taken"),
            Q::NotFound => (MISSING, "queue_not_found"),
            Q::UnknownDepartment { .. } => (INVALID, "unknown_department"),
            Q::UnknownUser { .. } => (INVALID, "unknown_user"),
            Q::UnknownGroup { .. } => (INVALID, "unknown_group"),
            Q::GroupRemoved { .. } => (CONFLICT, "group_removed"),
            Q::WindowEndsBeforeStart { .. } | Q::WindowInPast { .. } => {
                (INVALID, "invalid_grant_window")
            }
            Q::GrantExists { .. } => (CONFLICT, "grant_exists"),
            Q::UnknownGrant { .. } => (MISSING, "grant_not_found"),
            Q::Invalid(_) => (INVALID, "invalid_field"),
        },
        WorkQueueError::Task(t) => match t {
            T::NotFound => (MISSING, "task_not_found"),
            T::AlreadyExists => (CONFLICT, "task_exists"),
            T::UnknownQueue { .. } => (INVALID, "unknown_queue"),
            T::UnknownGroup { .. } => (INVALID, "unknown_group"),
            T::QueueFull { .. } => (CONFLICT, "queue_full"),
            T::UnknownCase { .. } => (INVALID, "unknown_case"),
            T::CaseClosed { .. } => (CONFLICT, "case_closed"),
            T::AlreadyLinked { .. } => (CONFLICT, "task_already_linked"),
            T::AlreadyClaimed { .. } => (CONFLICT, "task_already_claimed"),
            T::WrongState { .. } => (CONFLICT, "task_wrong_state"),
            T::NoValidGrant { .. } => (REFUSED, "no_valid_grant"),
            T::NotInCandidateGroups { .. } => (REFUSED, "not_in_candidate_groups"),
            T::OverCapacity { .. } => (CONFLICT, "over_capacity"),
            T::NotClaimant { .. } => (REFUSED, "not_claimant"),
            T::NotLeadOrAdmin => (REFUSED, "not_lead_or_admin"),
            T::NotAllowedToCancel => (REFUSED, "not_allowed_to_cancel"),
            T::AlreadyHolds { .. } => (CONFLICT, "already_holds_task"),
            T::Invalid(_) => (INVALID, "invalid_field"),
        },
        WorkQueueError::Case(c) => match c {
            C::NumberTaken { .. } => (CONFLICT, "case_number_taken"),
            C::NotFound => (MISSING, "case_not_found"),
            C::Closed => (CONFLICT, "case_closed"),
            C::UnknownQueue { .. } => (INVALID, "unknown_queue"),
            C::UnknownUser { .. } => (INVALID, "unknown_user"),
            C::AlreadyInQueue { .. } => (CONFLICT, "case_already_in_queue"),
            C::AlreadyAssigned { .. } => (CONFLICT, "case_already_assigned"),
            C::UnfinishedTasks { .. } => (CONFLICT, "case_has_unfinished_tasks"),
            C::TooManyTasks => (CONFLICT, "case_too_many_tasks"),
            C::Invalid(_) => (INVALID, "invalid_field"),
        },
        WorkQueueError::StaleVersion { .. } => (CONFLICT, "stale_version"),
        WorkQueueError::NothingToClaim(n) => match n {
            N::NoGrants => (REFUSED, "no_valid_grant"),
            N::AtCapacity => (CONFLICT, "over_capacity"),
            N::NoOpenTask => (MISSING, "no_task_available"),
        },
        WorkQueueError::TooManyConflicts { .. } => (CONFLICT, "concurrency_conflict"),
        WorkQueueError::Store(_) | WorkQueueError::Codec(_) => (
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
            "internal",
        ),
    };
    (status, code, title)
}

/// Machine-readable details of a work-queue refusal: who holds the task, the state it is in
/// and the states the command needed, the capacity, the current version, the field.
fn work_extensions(e: &WorkQueueError, problem: Problem) -> Problem {
    use domain::workqueue::task::TaskError as T;
    let field = |f: &str| serde_json::json!({ "field": f });
    let extensions = match e {
        WorkQueueError::Task(T::AlreadyClaimed { by }) => serde_json::json!({ "claimed_by": by }),
        WorkQueueError::Task(T::NotClaimant { claimant }) => {
            serde_json::json!({ "claimed_by": claimant })
        }
        WorkQueueError::Task(T::WrongState { status, allowed }) => {
            serde_json::json!({ "current_status": status, "allowed": allowed })
        }
        WorkQueueError::Task(T::OverCapacity {
            claimed, capacity, ..
        }) => serde_json::json!({ "claimed": claimed, "capacity": capacity }),
        WorkQueueError::StaleVersion { expected, actual } => {
            serde_json::json!({ "expected_version": expected, "current_version": actual })
        }
        WorkQueueError::Task(T::Invalid(v)) => field(v.field),
        WorkQueueError::Queue(domain::workqueue::queue::QueueError::Invalid(v)) => field(v.field),
        WorkQueueError::Case(domain::workqueue::case::CaseError::Invalid(v)) => field(v.field),
        WorkQueueError::Department(domain::workqueue::department::DepartmentError::Invalid(v)) => {
            field(v.field)
        }
        _ => return problem,
    };
    problem.with_extensions(extensions)
}

impl From<WorkQueueError> for ApiError {
    fn from(e: WorkQueueError) -> Self {
        match e {
            WorkQueueError::Store(s) => ApiError::Store(s),
            WorkQueueError::Codec(c) => ApiError::internal(c),
            other => ApiError::WorkQueue(other),
        }
    }
}

impl From<PracticeServiceError> for ApiError {
    fn from(e: PracticeServiceError) -> Self {
        match e {
            PracticeServiceError::Store(s) => ApiError::Store(s),
            PracticeServiceError::Codec(c) => ApiError::internal(c),
            other => ApiError::Practices(other),
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

/// Whether a database error means "cannot reach the database" rather than a bug.
/// A transaction PostgreSQL aborted because of a concurrent one (a deadlock it broke, or a
/// serialization failure): nothing was written, and the same request may succeed when retried.
pub fn is_transient_conflict(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40P01" || c == "40001")
}

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
        let retry_after = match self {
            ApiError::ReadModelBehind { .. } | ApiError::DatabaseUnavailable => Some(1),
            ApiError::RateLimited { retry_after } => Some(retry_after),
            ApiError::Refused(ref r) => r.retry_after(),
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

/// Codes of the staff and allocation errors (stable, snake_case).
fn staffing_parts(e: &ApiError) -> (StatusCode, &'static str, &'static str) {
    const CONFLICT: (StatusCode, &str) = (StatusCode::CONFLICT, "Conflict");
    const INVALID: (StatusCode, &str) = (StatusCode::UNPROCESSABLE_ENTITY, "Invalid request");
    const MISSING: (StatusCode, &str) = (StatusCode::NOT_FOUND, "Not found");
    let ((status, title), code) = match e {
        ApiError::Staff(s) => match s {
            StaffError::NotFound => (MISSING, "staff_not_found"),
            StaffError::AlreadyRegistered => (CONFLICT, "staff_exists"),
            StaffError::InvalidField { .. } => (INVALID, "invalid_field"),
            StaffError::Unchanged => (CONFLICT, "unchanged"),
        },
        ApiError::Allocation(a) => match a {
            AllocationError::NegativeWeight { .. } => (INVALID, "negative_weight"),
            AllocationError::WeightTooLarge { .. } => (INVALID, "weight_too_large"),
            AllocationError::AllWeightsZero => (INVALID, "all_weights_zero"),
            AllocationError::NoCandidates => (CONFLICT, "no_candidates"),
            AllocationError::ChosenNotRanked { .. } => (INVALID, "staff_not_ranked"),
        },
        ApiError::WorkAllocation(w) => match w {
            WorkAllocationError::NotFound => (MISSING, "allocation_not_found"),
            WorkAllocationError::AlreadyAllocated { .. } => (CONFLICT, "work_already_allocated"),
            WorkAllocationError::NotAllocated => (CONFLICT, "work_not_allocated"),
            WorkAllocationError::OtherWork { .. } => (CONFLICT, "stream_type_mismatch"),
            WorkAllocationError::InvalidField { .. } => (INVALID, "invalid_field"),
        },
        ApiError::UnknownStaff { .. } => (INVALID, "unknown_staff"),
        _ => (
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
            "internal",
        ),
    };
    (status, code, title)
}

/// The field a staff or allocation refusal is about (`field`), and who holds allocated work
/// (`staff_id`), as extension members a client can act on.
fn staffing_extensions(e: &ApiError, problem: Problem) -> Problem {
    let field: Option<String> = match e {
        ApiError::Staff(StaffError::InvalidField { field, .. })
        | ApiError::WorkAllocation(WorkAllocationError::InvalidField { field, .. })
        | ApiError::UnknownStaff { field, .. } => Some((*field).to_owned()),
        ApiError::Allocation(
            AllocationError::NegativeWeight { factor, .. }
            | AllocationError::WeightTooLarge { factor, .. },
        ) => Some(format!("weights.{factor}")),
        ApiError::Allocation(AllocationError::AllWeightsZero) => Some("weights".to_owned()),
        ApiError::Allocation(AllocationError::ChosenNotRanked { .. }) => {
            Some("staff_id".to_owned())
        }
        _ => None,
    };
    let problem = match field {
        Some(field) => problem.with_extensions(serde_json::json!({ "field": field })),
        None => problem,
    };
    match e {
        ApiError::WorkAllocation(WorkAllocationError::AlreadyAllocated { staff_id }) => {
            problem.with_extensions(serde_json::json!({ "staff_id": staff_id }))
        }
        _ => problem,
    }
}

impl From<StaffError> for ApiError {
    fn from(e: StaffError) -> Self {
        ApiError::Staff(e)
    }
}

impl From<AllocationError> for ApiError {
    fn from(e: AllocationError) -> Self {
        ApiError::Allocation(e)
    }
}

impl From<WorkAllocationError> for ApiError {
    fn from(e: WorkAllocationError) -> Self {
        ApiError::WorkAllocation(e)
    }
}

/// A refused or failed command on a staff member or a work allocation. An id that belongs to
/// another kind of stream names no record of this kind.
macro_rules! from_staffing_handle_error {
    ($error:ty, $not_found:expr) => {
        impl From<commands::HandleError<$error>> for ApiError {
            fn from(e: commands::HandleError<$error>) -> Self {
                use commands::HandleError as H;
                match e {
                    H::Rejected(r) => r.into(),
                    H::Store(StoreError::StreamTypeMismatch { .. }) => $not_found.into(),
                    H::Store(s) => ApiError::Store(s),
                    H::Codec(c) => ApiError::internal(c),
                    H::TooManyConflicts { .. } => ApiError::Conflict {
                        code: "concurrency_conflict",
                        detail: "the record kept changing under the command; retry".to_owned(),
                    },
                }
            }
        }
    };
}

from_staffing_handle_error!(StaffError, StaffError::NotFound);
from_staffing_handle_error!(WorkAllocationError, WorkAllocationError::NotFound);

// Users and notifications: their error types state kind, code and details beside their
// definitions (`domain::refusal::Refusal`); here the kind becomes a status, once.

/// A refusal as the API answers it: the kind picks the status, the code and details are the
/// service's own.
#[derive(Debug)]
pub struct Refused {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub detail: String,
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl Refused {
    pub fn of(e: &impl Refusal) -> Self {
        Refused {
            kind: e.kind(),
            code: e.code(),
            detail: e.to_string(),
            details: e.details(),
        }
    }

    /// Seconds a rate-limited client should wait (the `Retry-After` header).
    fn retry_after(&self) -> Option<u64> {
        if self.kind != ErrorKind::RateLimited {
            return None;
        }
        self.details.get("retry_after").and_then(|v| v.as_u64())
    }
}

/// The status and title of each kind of refusal.
fn kind_parts(kind: ErrorKind) -> (StatusCode, &'static str) {
    match kind {
        ErrorKind::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid request"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "Not found"),
        ErrorKind::Conflict => (StatusCode::CONFLICT, "Conflict"),
        ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "Forbidden"),
        ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, "Unauthorized"),
        ErrorKind::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "Too many requests"),
        ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Service unavailable"),
        ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
    }
}

impl ApiError {
    /// Any refusal, by its kind and code; a fault of ours is logged and not shown.
    pub fn refused(e: &impl Refusal) -> Self {
        match e.kind() {
            ErrorKind::Internal => ApiError::internal(e),
            _ => ApiError::Refused(Refused::of(e)),
        }
    }
}

impl From<UsersError> for ApiError {
    fn from(e: UsersError) -> Self {
        match e {
            // The store's and the database's failures keep the one mapping every service uses.
            UsersError::Store(s) => ApiError::Store(s),
            UsersError::Database(d) => ApiError::db(d),
            other => ApiError::refused(&other),
        }
    }
}

impl From<NotificationsError> for ApiError {
    fn from(e: NotificationsError) -> Self {
        match e {
            NotificationsError::Store(s) => ApiError::Store(s),
            other => ApiError::refused(&other),
        }
    }
}

#[cfg(test)]
mod users_and_notifications_tests {
    use super::*;
    use commands::HandleError;
    use domain::notification::NotificationError;
    use domain::user::UserError;

    fn answer(e: ApiError) -> (u16, &'static str) {
        let problem = e.problem();
        (problem.status, problem.code)
    }

    #[test]
    fn users_and_notifications_commands_that_give_up_after_too_many_conflicts_are_409_concurrency_conflict(
    ) {
        let users = UsersError::from(HandleError::<UserError>::TooManyConflicts {
            stream_id: uuid::Uuid::nil(),
            attempts: 8,
        });
        let notifications =
            NotificationsError::from(HandleError::<NotificationError>::TooManyConflicts {
                stream_id: uuid::Uuid::nil(),
                attempts: 8,
            });
        assert_eq!(answer(users.into()), (409, "concurrency_conflict"));
        assert_eq!(answer(notifications.into()), (409, "concurrency_conflict"));
    }

    #[test]
    fn users_refusals_keep_the_statuses_and_codes_clients_know() {
        let until = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        for (e, expected) in [
            (UsersError::InvalidCredentials, (401, "invalid_credentials")),
            (UsersError::Unauthenticated, (401, "unauthenticated")),
            (
                UsersError::InvalidEmail { email: "x".into() },
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
        let response = ApiError::from(UsersError::RateLimited { retry_after: 12 }).into_response();
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
