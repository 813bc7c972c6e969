//! Work-queue commands: `/departments`, `/queues` (configuration and role grants), `/tasks`
//! (create, claim next, claim, unclaim, reassign, complete, cancel, link to a case) and `/cases`
//! (open, route, assign, close). The queries on the same resources are in
//! [`super::work_views`].
//!
//! Completion and unclaim take the `expected_version` the client saw, so a client holding a
//! stale copy cannot complete a task that was reassigned meanwhile. Claim-next takes an
//! `Idempotency-Key` header: a retry with the same key returns the task the first request got.
//! Task creation takes one too: the task's id is derived from it, so a retried creation finds
//! the task it made.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use commands::workqueue::{NewTask, Reassignment, TaskWritten};
use domain::user::{Role, Username};
use domain::workqueue::queue::{
    Capacity, Distribution, EscalationPolicy, QueueConfig, QueueRole, SlaPolicy,
};
use domain::workqueue::task::TaskStatus;
use domain::workqueue::values::parse_groups;
use domain::workqueue::{Priority, ValueError};
use eventstore::Metadata;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{user_id, Caller};
use crate::error::ApiError;
use crate::extract::{id_for_request, idempotency_key, path_id, ApiJson, CommandDone};
use crate::permissions::{ADMINS, OPERATORS, OPERATORS_AND_SYSTEM};
use crate::AppState;

use super::{routes, Routes};

/// Admins shape the organisation; operators work the tasks and cases (what a task allows beyond
/// that, the queue's grants decide); automated intake may create tasks.
pub fn routes() -> Routes {
    Routes::new()
        .route(ADMINS, routes!(create_department))
        .route(ADMINS, routes!(create_queue))
        .route(ADMINS, routes!(configure_queue))
        .route(ADMINS, routes!(grant))
        .route(ADMINS, routes!(revoke))
        .route(OPERATORS_AND_SYSTEM, routes!(create_task))
        .route(OPERATORS, routes!(claim_next))
        .route(OPERATORS, routes!(claim))
        .route(OPERATORS, routes!(unclaim))
        .route(OPERATORS, routes!(reassign))
        .route(OPERATORS, routes!(complete))
        .route(OPERATORS, routes!(cancel))
        .route(OPERATORS, routes!(link_case))
        .route(OPERATORS, routes!(open_case))
        .route(OPERATORS, routes!(route_case))
        .route(OPERATORS, routes!(assign_case))
        .route(OPERATORS, routes!(close_case))
}

fn invalid(e: ValueError) -> ApiError {
    ApiError::InvalidField {
        field: e.field,
        reason: e.reason,
    }
}

async fn user_exists(state: &AppState, username: &Username) -> Result<bool, ApiError> {
    Ok(state.store.stream_version(user_id(username)).await? > 0)
}

fn parse_username(field: &'static str, value: &str) -> Result<Username, ApiError> {
    Username::parse(value).map_err(|_| ApiError::InvalidField {
        field,
        reason: format!(
            "{:?} is not a username",
            value.chars().take(64).collect::<String>()
        ),
    })
}

/// A JSON body that may be left out entirely (then every field takes its default).
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::BadBody(e.to_string()),
        _ => ApiError::MalformedJson(e.to_string()),
    })
}

fn metadata(caller: &Caller) -> Metadata {
    Metadata::by(caller.actor())
}

// ---------------------------------------------------------------------------------------------
// Departments
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDepartment {
    /// 2 to 20 letters, digits, `_` or `-`; unique.
    pub code: String,
    pub name: String,
    /// The parent department, which must exist.
    pub parent_id: Option<Uuid>,
}

#[utoipa::path(post, path = "/departments", tag = "work queues", security(("bearer" = [])),
    request_body = NewDepartment,
    responses((status = 201, description = "Created", body = CommandDone),
        (status = 409, description = "department_code_taken", body = crate::openapi::ProblemDoc),
        (status = 422, description = "invalid_field, unknown_department", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn create_department(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewDepartment>,
) -> Result<(StatusCode, Json<CommandDone>), ApiError> {
    let outcome = state
        .work
        .create_department(&body.code, &body.name, body.parent_id, &metadata(&caller))
        .await?;
    Ok((StatusCode::CREATED, Json(outcome.into())))
}

// ---------------------------------------------------------------------------------------------
// Queues
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapacityBody {
    /// The most tasks one user may hold claimed in the queue (1 to 1000).
    pub per_user: u32,
    /// The most unfinished tasks the queue holds; absent for no limit.
    pub total: Option<u32>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationBody {
    /// Priority steps added per level (0 to 4).
    pub raise_priority_by: u8,
    /// Minutes between levels once overdue.
    pub repeat_every_minutes: u32,
    /// The last level (1 to 10).
    pub max_level: u32,
}

/// A queue's configuration.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueBody {
    /// Unique; ignored when reconfiguring.
    pub name: Option<String>,
    pub department_id: Uuid,
    pub capacity: CapacityBody,
    /// Minutes from creation to due, for each priority "1" to "5"; absent for the standard
    /// policy (1440, 720, 360, 180, 90).
    #[schema(value_type = Option<Object>)]
    pub sla_minutes: Option<std::collections::BTreeMap<String, u32>>,
    /// Absent for the standard policy (raise by 1 every 60 minutes, 3 levels).
    pub escalation: Option<EscalationBody>,
    /// pull (default), round_robin, least_loaded, skill_based or priority_weighted.
    pub distribution: Option<String>,
    /// The candidate groups tasks and grants in this queue may name.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl QueueBody {
    fn config(&self) -> Result<QueueConfig, ApiError> {
        let sla = match &self.sla_minutes {
            None => SlaPolicy::standard(),
            Some(map) => SlaPolicy {
                due_minutes: map
                    .iter()
                    .map(|(k, v)| {
                        let p = k
                            .parse::<i64>()
                            .ok()
                            .and_then(|p| Priority::new(p).ok())
                            .ok_or_else(|| ApiError::InvalidField {
                                field: "sla_minutes",
                                reason: format!("{k:?} is not a priority; use \"1\" to \"5\""),
                            })?;
                        Ok((p, *v))
                    })
                    .collect::<Result<_, ApiError>>()?,
            },
        };
        let escalation = match &self.escalation {
            None => EscalationPolicy::standard(),
            Some(e) => EscalationPolicy {
                raise_priority_by: e.raise_priority_by,
                repeat_every_minutes: e.repeat_every_minutes,
                max_level: e.max_level,
            },
        };
        let distribution = match &self.distribution {
            None => Distribution::Pull,
            Some(d) => Distribution::parse(d).map_err(invalid)?,
        };
        Ok(QueueConfig {
            department_id: self.department_id,
            capacity: Capacity {
                per_user: self.capacity.per_user,
                total: self.capacity.total,
            },
            sla,
            escalation,
            distribution,
            groups: parse_groups("groups", &self.groups).map_err(invalid)?,
        })
    }
}

#[utoipa::path(post, path = "/queues", tag = "work queues", security(("bearer" = [])),
    request_body = QueueBody,
    responses((status = 201, description = "Created", body = CommandDone),
        (status = 409, description = "queue_name_taken", body = crate::openapi::ProblemDoc),
        (status = 422, description = "invalid_field, unknown_department", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn create_queue(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<QueueBody>,
) -> Result<(StatusCode, Json<CommandDone>), ApiError> {
    let name = body.name.clone().ok_or(ApiError::InvalidField {
        field: "name",
        reason: "a new queue needs a name".into(),
    })?;
    let outcome = state
        .work
        .create_queue(&name, body.config()?, &metadata(&caller))
        .await?;
    Ok((StatusCode::CREATED, Json(outcome.into())))
}

#[utoipa::path(put, path = "/queues/{id}", tag = "work queues", security(("bearer" = [])),
    request_body = QueueBody, params(("id" = Uuid, Path)),
    responses((status = 200, description = "Configured", body = CommandDone),
        (status = 404, description = "queue_not_found", body = crate::openapi::ProblemDoc),
        (status = 409, description = "group_removed", body = crate::openapi::ProblemDoc),
        (status = 422, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn configure_queue(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<QueueBody>,
) -> Result<Json<CommandDone>, ApiError> {
    let queue_id = path_id(path)?;
    let outcome = state
        .work
        .configure_queue(queue_id, body.config()?, &metadata(&caller))
        .await?;
    Ok(Json(outcome.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    pub username: String,
    /// member (claims and completes) or lead (also reassigns).
    pub role: String,
    /// The queue's candidate groups this user works.
    #[serde(default)]
    pub skills: Vec<String>,
    /// Absent: from now.
    pub valid_from: Option<DateTime<Utc>>,
    /// Absent: until revoked. A temporary grant ends here by itself.
    pub valid_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GrantDone {
    pub grant_id: Uuid,
    pub queue_id: Uuid,
    pub version: u64,
    pub cursor: Option<String>,
}

#[utoipa::path(post, path = "/queues/{id}/grants", tag = "work queues", security(("bearer" = [])),
    request_body = GrantBody, params(("id" = Uuid, Path)),
    responses((status = 201, description = "Granted", body = GrantDone),
        (status = 404, description = "queue_not_found", body = crate::openapi::ProblemDoc),
        (status = 422, description = "invalid_grant_window, unknown_group, unknown_user, invalid_field", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn grant(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<GrantBody>,
) -> Result<(StatusCode, Json<GrantDone>), ApiError> {
    let queue_id = path_id(path)?;
    let username = parse_username("username", &body.username)?;
    let role = QueueRole::parse(&body.role).map_err(invalid)?;
    let skills = parse_groups("skills", &body.skills).map_err(invalid)?;
    let exists = user_exists(&state, &username).await?;
    let grant_id = Uuid::new_v4();
    let outcome = state
        .work
        .grant(
            queue_id,
            grant_id,
            username,
            exists,
            role,
            skills,
            body.valid_from,
            body.valid_until,
            &metadata(&caller),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(GrantDone {
            grant_id,
            queue_id,
            version: outcome.version,
            cursor: outcome.cursor.map(|c| c.to_string()),
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    pub reason: String,
}

#[utoipa::path(post, path = "/queues/{id}/grants/{item}/revoke", tag = "work queues", security(("bearer" = [])),
    request_body = ReasonBody, params(("id" = Uuid, Path), ("item" = Uuid, Path, description = "The grant id")),
    responses((status = 200, description = "Revoked", body = CommandDone),
        (status = 404, description = "queue_not_found, grant_not_found", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<(Uuid, Uuid)>, PathRejection>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Json<CommandDone>, ApiError> {
    let Path((queue_id, grant_id)) = path.map_err(|e| ApiError::BadPath(e.body_text()))?;
    let outcome = state
        .work
        .revoke(queue_id, grant_id, &body.reason, &metadata(&caller))
        .await?;
    Ok(Json(outcome.into()))
}

// ---------------------------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTaskBody {
    pub queue_id: Uuid,
    pub title: String,
    /// 1 (lowest) to 5 (most urgent).
    pub priority: i64,
    /// Candidate groups (of the queue's); absent or empty: anyone in the queue.
    #[serde(default)]
    pub groups: Vec<String>,
    pub case_id: Option<Uuid>,
    /// Any JSON object (at most 16 KiB).
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
}

/// What a task command did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskDone {
    pub task_id: Uuid,
    /// The task's version now: send it back as `expected_version`.
    pub version: u64,
    /// Read-order cursor of the last event written, for `min_cursor`.
    pub cursor: Option<String>,
    /// open, claimed, completed or cancelled, after the command.
    pub status: Option<String>,
    /// Who holds the task after the command (a push queue's choice, a claim, a hand-off).
    pub claimant: Option<String>,
    /// Why push distribution chose the claimant.
    pub assignment_reason: Option<String>,
    /// The same request (idempotency key) was answered before; nothing new was written.
    pub replayed: bool,
}

impl From<TaskWritten> for TaskDone {
    fn from(w: TaskWritten) -> Self {
        use domain::workqueue::task::TaskEvent as E;
        let mut status = None;
        let mut claimant = None;
        let mut assignment_reason = None;
        for e in &w.events {
            match e {
                E::TaskCreated { .. } => status = Some(TaskStatus::Open),
                E::TaskClaimed { by: who, .. } | E::TaskReassigned { to: who, .. } => {
                    status = Some(TaskStatus::Claimed);
                    claimant = Some(who.clone());
                }
                E::TaskAssigned {
                    to, explanation, ..
                } => {
                    status = Some(TaskStatus::Claimed);
                    claimant = Some(to.clone());
                    assignment_reason = Some(explanation.clone());
                }
                E::TaskUnclaimed { .. } => status = Some(TaskStatus::Open),
                E::TaskCompleted { .. } => status = Some(TaskStatus::Completed),
                E::TaskCancelled { .. } => status = Some(TaskStatus::Cancelled),
                E::TaskEscalated { .. } | E::TaskLinkedToCase { .. } => {}
            }
        }
        TaskDone {
            task_id: w.task_id,
            version: w.version,
            cursor: w.cursor.map(|c| c.to_string()),
            status: status.map(|s| s.as_str().to_owned()),
            claimant,
            assignment_reason,
            replayed: w.replayed,
        }
    }
}

/// Namespace of task ids derived from an idempotency key (with the caller's username).
const TASK_KEY_NAMESPACE: Uuid = Uuid::from_u128(0x2b7f_61d0_93ce_4a58_8e14_7c5a_d3f0_b692);

#[utoipa::path(post, path = "/tasks", tag = "work queues", security(("bearer" = [])),
    request_body = NewTaskBody,
    params(("idempotency-key" = Option<String>, Header, description = "Makes a retried creation return the task it made")),
    responses((status = 201, description = "Created (and, in a push queue, assigned)", body = TaskDone),
        (status = 200, description = "A retry with the same idempotency key: the task it made", body = TaskDone),
        (status = 409, description = "queue_full, case_closed", body = crate::openapi::ProblemDoc),
        (status = 422, description = "invalid_field (priority out of range, ...), unknown_queue, unknown_group, unknown_case", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn create_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewTaskBody>,
) -> Result<(StatusCode, Json<TaskDone>), ApiError> {
    let priority = Priority::new(body.priority).map_err(invalid)?;
    let groups = parse_groups("groups", &body.groups).map_err(invalid)?;
    let task_id = id_for_request(&headers, &TASK_KEY_NAMESPACE, &caller.username)?;
    let written = state
        .work
        .create_task(
            NewTask {
                task_id,
                queue_id: body.queue_id,
                title: body.title,
                priority,
                groups,
                case_id: body.case_id,
                payload: body.payload.unwrap_or_else(|| serde_json::json!({})),
            },
            &metadata(&caller),
        )
        .await?;
    let status = if written.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(written.into())))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimNextBody {
    /// Only these queues (default: every queue the caller holds a grant for).
    pub queue_ids: Option<Vec<Uuid>>,
}

#[utoipa::path(post, path = "/tasks/claim-next", tag = "work queues", security(("bearer" = [])),
    request_body = ClaimNextBody,
    params(("idempotency-key" = Option<String>, Header, description = "A retry with the same key returns the same task")),
    responses((status = 200, description = "The task claimed", body = TaskDone),
        (status = 403, description = "no_valid_grant", body = crate::openapi::ProblemDoc),
        (status = 404, description = "no_task_available", body = crate::openapi::ProblemDoc),
        (status = 409, description = "over_capacity", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn claim_next(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<TaskDone>, ApiError> {
    let key = idempotency_key(&headers)?;
    let body: ClaimNextBody = optional_json(&body)?;
    if body.queue_ids.as_ref().is_some_and(Vec::is_empty) {
        return Err(ApiError::InvalidField {
            field: "queue_ids",
            reason: "name at least one queue, or leave it out for all of yours".into(),
        });
    }
    let written = state
        .work
        .claim_next(
            &caller.username,
            body.queue_ids.as_deref(),
            key.as_deref(),
            &metadata(&caller),
        )
        .await?;
    Ok(Json(written.into()))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionBody {
    /// The task version the client saw; refused with stale_version if it moved on.
    pub expected_version: Option<u64>,
}

#[utoipa::path(post, path = "/tasks/{id}/claim", tag = "work queues", security(("bearer" = [])),
    request_body = VersionBody, params(("id" = Uuid, Path)),
    responses((status = 200, description = "Claimed", body = TaskDone),
        (status = 403, description = "no_valid_grant, not_in_candidate_groups", body = crate::openapi::ProblemDoc),
        (status = 404, description = "task_not_found", body = crate::openapi::ProblemDoc),
        (status = 409, description = "task_already_claimed (with claimed_by), over_capacity, task_wrong_state, stale_version", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn claim(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    body: axum::body::Bytes,
) -> Result<Json<TaskDone>, ApiError> {
    let task_id = path_id(path)?;
    let body: VersionBody = optional_json(&body)?;
    let written = state
        .work
        .claim(
            task_id,
            &caller.username,
            body.expected_version,
            &metadata(&caller),
        )
        .await?;
    Ok(Json(written.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnclaimBody {
    /// The task version the client saw.
    pub expected_version: u64,
}

#[utoipa::path(post, path = "/tasks/{id}/unclaim", tag = "work queues", security(("bearer" = [])),
    request_body = UnclaimBody, params(("id" = Uuid, Path)),
    responses((status = 200, description = "Back in the queue", body = TaskDone),
        (status = 403, description = "not_claimant", body = crate::openapi::ProblemDoc),
        (status = 404, description = "task_not_found", body = crate::openapi::ProblemDoc),
        (status = 409, description = "stale_version, task_wrong_state", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn unclaim(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<UnclaimBody>,
) -> Result<Json<TaskDone>, ApiError> {
    let task_id = path_id(path)?;
    let written = state
        .work
        .unclaim(
            task_id,
            &caller.username,
            Some(body.expected_version),
            &metadata(&caller),
        )
        .await?;
    Ok(Json(written.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReassignBody {
    /// The username who gets the task.
    pub to: String,
    pub reason: String,
    pub expected_version: Option<u64>,
}

#[utoipa::path(post, path = "/tasks/{id}/reassign", tag = "work queues", security(("bearer" = [])),
    request_body = ReassignBody, params(("id" = Uuid, Path)),
    responses((status = 200, description = "Delegated or reassigned", body = TaskDone),
        (status = 403, description = "not_lead_or_admin; no_valid_grant or not_in_candidate_groups for the new holder", body = crate::openapi::ProblemDoc),
        (status = 404, description = "task_not_found", body = crate::openapi::ProblemDoc),
        (status = 409, description = "over_capacity, already_holds_task, task_wrong_state, stale_version", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn reassign(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<ReassignBody>,
) -> Result<Json<TaskDone>, ApiError> {
    let task_id = path_id(path)?;
    let to = parse_username("to", &body.to)?;
    let request = Reassignment {
        by: caller.username.clone(),
        by_admin: caller.role == Role::Admin,
        to: to.as_str().to_owned(),
        reason: body.reason,
    };
    let written = state
        .work
        .reassign(task_id, &request, body.expected_version, &metadata(&caller))
        .await?;
    Ok(Json(written.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    /// What came of it (`approved`, `escalated to legal`, ...).
    pub outcome: String,
    pub note: Option<String>,
    /// The task version the client saw.
    pub expected_version: u64,
}

#[utoipa::path(post, path = "/tasks/{id}/complete", tag = "work queues", security(("bearer" = [])),
    request_body = CompleteBody, params(("id" = Uuid, Path)),
    responses((status = 200, description = "Completed", body = TaskDone),
        (status = 403, description = "not_claimant", body = crate::openapi::ProblemDoc),
        (status = 404, description = "task_not_found", body = crate::openapi::ProblemDoc),
        (status = 409, description = "stale_version, task_wrong_state", body = crate::openapi::ProblemDoc),
        (status = 422, description = "invalid_field", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn complete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<CompleteBody>,
) -> Result<Json<TaskDone>, ApiError> {
    let task_id = path_id(path)?;
    let written = state
        .work
        .complete(
            task_id,
            &caller.username,
            &body.outcome,
            body.note.as_deref(),
            Some(body.expected_version),
            &metadata(&caller),
        )
        .await?;
    Ok(Json(written.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    pub reason: String,
    pub expected_version: Option<u64>,
}

#[utoipa::path(post, path = "/tasks/{id}/cancel", tag = "work queues", security(("bearer" = [])),
    request_body = CancelBody, params(("id" = Uuid, Path)),
    responses((status = 200, description = "Cancelled", body = TaskDone),
        (status = 403, description = "not_allowed_to_cancel: only an admin, a lead of the queue or the claimant", body = crate::openapi::ProblemDoc),
        (status = 404, description = "task_not_found", body = crate::openapi::ProblemDoc),
        (status = 409, description = "task_wrong_state, stale_version", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<CancelBody>,
) -> Result<Json<TaskDone>, ApiError> {
    let task_id = path_id(path)?;
    let written = state
        .work
        .cancel(
            task_id,
            &caller.username,
            caller.role == Role::Admin,
            &body.reason,
            body.expected_version,
            &metadata(&caller),
        )
        .await?;
    Ok(Json(written.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkCaseBody {
    pub case_id: Uuid,
}

#[utoipa::path(post, path = "/tasks/{id}/case", tag = "work queues", security(("bearer" = [])),
    request_body = LinkCaseBody, params(("id" = Uuid, Path)),
    responses((status = 200, description = "Linked (task and case, one transaction)", body = TaskDone),
        (status = 404, description = "task_not_found", body = crate::openapi::ProblemDoc),
        (status = 409, description = "task_already_linked, case_closed", body = crate::openapi::ProblemDoc),
        (status = 422, description = "unknown_case", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn link_case(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<LinkCaseBody>,
) -> Result<Json<TaskDone>, ApiError> {
    let task_id = path_id(path)?;
    let written = state
        .work
        .link_task_to_case(task_id, body.case_id, &metadata(&caller))
        .await?;
    Ok(Json(written.into()))
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCaseBody {
    /// The case number (unique), e.g. CASE-2026-0042.
    pub number: String,
    pub subject: String,
    #[serde(default)]
    pub allegations: Vec<String>,
    /// The queue it starts in.
    pub queue_id: Option<Uuid>,
}

#[utoipa::path(post, path = "/cases", tag = "work queues", security(("bearer" = [])),
    request_body = NewCaseBody,
    responses((status = 201, description = "Opened", body = CommandDone),
        (status = 409, description = "case_number_taken", body = crate::openapi::ProblemDoc),
        (status = 422, description = "invalid_field, unknown_queue", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn open_case(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewCaseBody>,
) -> Result<(StatusCode, Json<CommandDone>), ApiError> {
    let outcome = state
        .work
        .open_case(
            &body.number,
            &body.subject,
            body.allegations,
            body.queue_id,
            &metadata(&caller),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(outcome.into())))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteCaseBody {
    pub queue_id: Uuid,
    pub reason: String,
}

#[utoipa::path(post, path = "/cases/{id}/route", tag = "work queues", security(("bearer" = [])),
    request_body = RouteCaseBody, params(("id" = Uuid, Path)),
    responses((status = 200, description = "Routed", body = CommandDone),
        (status = 404, description = "case_not_found", body = crate::openapi::ProblemDoc),
        (status = 409, description = "case_closed, case_already_in_queue", body = crate::openapi::ProblemDoc),
        (status = 422, description = "unknown_queue, invalid_field", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn route_case(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<RouteCaseBody>,
) -> Result<Json<CommandDone>, ApiError> {
    let case_id = path_id(path)?;
    let outcome = state
        .work
        .route_case(case_id, body.queue_id, &body.reason, &metadata(&caller))
        .await?;
    Ok(Json(outcome.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignCaseBody {
    pub to: String,
    pub reason: String,
}

#[utoipa::path(post, path = "/cases/{id}/assign", tag = "work queues", security(("bearer" = [])),
    request_body = AssignCaseBody, params(("id" = Uuid, Path)),
    responses((status = 200, description = "Assigned", body = CommandDone),
        (status = 404, description = "case_not_found", body = crate::openapi::ProblemDoc),
        (status = 409, description = "case_closed, case_already_assigned", body = crate::openapi::ProblemDoc),
        (status = 422, description = "unknown_user, invalid_field", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn assign_case(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<AssignCaseBody>,
) -> Result<Json<CommandDone>, ApiError> {
    let case_id = path_id(path)?;
    let to = parse_username("to", &body.to)?;
    let exists = user_exists(&state, &to).await?;
    let outcome = state
        .work
        .assign_case(
            case_id,
            to.as_str(),
            exists,
            &body.reason,
            &metadata(&caller),
        )
        .await?;
    Ok(Json(outcome.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseCaseBody {
    pub resolution: String,
}

#[utoipa::path(post, path = "/cases/{id}/close", tag = "work queues", security(("bearer" = [])),
    request_body = CloseCaseBody, params(("id" = Uuid, Path)),
    responses((status = 200, description = "Closed", body = CommandDone),
        (status = 404, description = "case_not_found", body = crate::openapi::ProblemDoc),
        (status = 409, description = "case_has_unfinished_tasks, case_closed", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn close_case(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<CloseCaseBody>,
) -> Result<Json<CommandDone>, ApiError> {
    let case_id = path_id(path)?;
    let outcome = state
        .work
        .close_case(case_id, &body.resolution, &metadata(&caller))
        .await?;
    Ok(Json(outcome.into()))
}
