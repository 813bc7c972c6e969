//! The read side of work queues: departments, queues (list, view with load and open tasks in
//! claim order, dashboard, SLA report), my tasks, a task with its history, a case with its
//! tasks and routing history, and task and case state as of a time or version (from the
//! events). The commands on the same resources are in `routes::work`.
//!
//! Some share their paths with commands (`GET /tasks` beside `POST /tasks`); each module mounts
//! its own handlers and axum joins the methods of a path.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use domain::workqueue::case::Case;
use domain::workqueue::task::{Task, TaskStatus};
use eventstore::StoreError;
use projections::workqueue::{
    self as model, CaseRow, DashboardRow, DepartmentRow, QueueRow, QueueView, RoutingRow,
    SlaReport, TaskHistoryRow, TaskRow,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::as_of;
use crate::auth::Caller;
use crate::consistency::{wait_for_cursor, ReadQuery};
use crate::error::ApiError;
use crate::extract::{path_id, query};
use crate::permissions::{Access, AUDITORS, READERS};
use crate::AppState;

use super::{routes, Routes};

/// The read-only routes whose paths no command shares.
/// Readers see queues, tasks and cases; anyone logged in sees the tasks they hold; state rebuilt
/// from the events is for auditors, as elsewhere.
pub fn routes() -> Routes {
    Routes::new()
        .route(READERS, routes!(list_departments))
        .route(READERS, routes!(list_queues))
        .route(READERS, routes!(dashboard))
        .route(READERS, routes!(show_queue))
        .route(READERS, routes!(sla_report))
        .route(READERS, routes!(list_tasks))
        .route(Access::AnyUser, routes!(my_tasks))
        .route(READERS, routes!(show_task))
        .route(AUDITORS, routes!(task_state))
        .route(READERS, routes!(list_cases))
        .route(READERS, routes!(show_case))
        .route(READERS, routes!(case_routing))
        .route(AUDITORS, routes!(case_state))
}

const PROJECTION: &str = model::NAME;

/// Default and largest page of a list (a queue's open tasks, task and case lists).
const DEFAULT_PER_PAGE: i64 = 50;
const MAX_PER_PAGE: i64 = 500;

fn queue_not_found(id: Uuid) -> ApiError {
    ApiError::NotFound {
        code: "queue_not_found",
        detail: format!("no queue {id}"),
    }
}

fn task_not_found(id: Uuid) -> ApiError {
    ApiError::NotFound {
        code: "task_not_found",
        detail: format!("no task {id}"),
    }
}

fn case_not_found(id: Uuid) -> ApiError {
    ApiError::NotFound {
        code: "case_not_found",
        detail: format!("no case {id}"),
    }
}

#[utoipa::path(get, path = "/departments", tag = "work queues", security(("bearer" = [])),
    params(ReadQuery),
    responses((status = 200, description = "Every department, depth first (parents before children, siblings by code), with its parent, depth, path of codes and number of queues", body = Vec<DepartmentRow>),
        (status = 400, body = crate::openapi::ProblemDoc)))]
pub async fn list_departments(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Vec<DepartmentRow>>, ApiError> {
    let q = query(q)?;
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    Ok(Json(model::departments(state.store.pool()).await?))
}

#[utoipa::path(get, path = "/queues", tag = "work queues", security(("bearer" = [])),
    params(ReadQuery),
    responses((status = 200, description = "Every queue by name: configuration, department, open and claimed tasks", body = Vec<QueueRow>),
        (status = 400, body = crate::openapi::ProblemDoc)))]
pub async fn list_queues(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Vec<QueueRow>>, ApiError> {
    let q = query(q)?;
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    Ok(Json(model::list_queues(state.store.pool()).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueViewQuery {
    /// Page of open tasks, from 1; default 1.
    page: Option<i64>,
    /// Open tasks per page, 1 to 500; default 50.
    per_page: Option<i64>,
    /// Wait until the read model includes this cursor.
    min_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueViewPage {
    #[serde(flatten)]
    view: QueueView,
    page: i64,
    per_page: i64,
}

#[utoipa::path(get, path = "/queues/{id}", tag = "work queues", security(("bearer" = [])),
    params(("id" = Uuid, Path), QueueViewQuery),
    responses((status = 200, description = "The queue, its tasks by status, escalated tasks, load against capacity (claimed tasks against per-user capacity × members with a grant in force now) and one page of open tasks in claim order (priority, then oldest)", body = QueueViewPage),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 404, body = crate::openapi::ProblemDoc),
        (status = 422, description = "page below 1 or per_page outside 1 to 500", body = crate::openapi::ProblemDoc)))]
pub async fn show_queue(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<QueueViewQuery>, QueryRejection>,
) -> Result<Json<QueueViewPage>, ApiError> {
    let id = path_id(path)?;
    let q = query(q)?;
    let page = q.page.unwrap_or(1);
    if page < 1 {
        return Err(ApiError::InvalidField {
            field: "page",
            reason: format!("{page} is not a page; pages start at 1"),
        });
    }
    let per_page = q.per_page.unwrap_or(DEFAULT_PER_PAGE);
    if !(1..=MAX_PER_PAGE).contains(&per_page) {
        return Err(ApiError::InvalidField {
            field: "per_page",
            reason: format!("give 1 to {MAX_PER_PAGE}"),
        });
    }
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    let offset = (page - 1).saturating_mul(per_page);
    let view = model::queue_view(state.store.pool(), id, state.clock.now(), per_page, offset)
        .await?
        .ok_or_else(|| queue_not_found(id))?;
    Ok(Json(QueueViewPage {
        view,
        page,
        per_page,
    }))
}

#[utoipa::path(get, path = "/queues/dashboard", tag = "work queues", security(("bearer" = [])),
    params(ReadQuery),
    responses((status = 200, description = "Per queue: open, claimed and escalated tasks, and the average age in hours of the unfinished ones now", body = Vec<DashboardRow>),
        (status = 400, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn dashboard(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Vec<DashboardRow>>, ApiError> {
    let q = query(q)?;
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    Ok(Json(
        model::dashboard(state.store.pool(), state.clock.now()).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SlaQuery {
    /// Start of the period, RFC 3339 (inclusive). Required.
    from: Option<String>,
    /// End of the period, RFC 3339 (exclusive), later than `from`. Required.
    to: Option<String>,
    /// Wait until the read model includes this cursor.
    min_cursor: Option<String>,
}

fn required_time(field: &str, value: Option<&str>) -> Result<DateTime<Utc>, ApiError> {
    let value =
        value.ok_or_else(|| ApiError::BadQuery(format!("{field}: required (an RFC 3339 time)")))?;
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::BadQuery(format!("{field}: {value:?} is not an RFC 3339 time")))
}

#[utoipa::path(get, path = "/queues/{id}/sla-report", tag = "work queues", security(("bearer" = [])),
    params(("id" = Uuid, Path), SlaQuery),
    responses((status = 200, description = "Over the tasks completed in [from, to): how many, how many by their due time (and the percentage), breaches (completed late, plus unfinished tasks past due at the end of the period or now, whichever is earlier), and time to claim and to complete in seconds (average and 90th percentile)", body = SlaReport),
        (status = 400, description = "from or to missing or not an RFC 3339 time", body = crate::openapi::ProblemDoc),
        (status = 404, body = crate::openapi::ProblemDoc),
        (status = 422, description = "to is not later than from", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn sla_report(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<SlaQuery>, QueryRejection>,
) -> Result<Json<SlaReport>, ApiError> {
    let id = path_id(path)?;
    let q = query(q)?;
    let from = required_time("from", q.from.as_deref())?;
    let to = required_time("to", q.to.as_deref())?;
    if to <= from {
        return Err(ApiError::InvalidField {
            field: "to",
            reason: format!(
                "must be later than from ({} is not after {})",
                to.to_rfc3339(),
                from.to_rfc3339()
            ),
        });
    }
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    let report = model::sla_report(state.store.pool(), id, from, to, state.clock.now())
        .await?
        .ok_or_else(|| queue_not_found(id))?;
    Ok(Json(report))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct MyTasksQuery {
    /// claimed (default: the tasks you hold), completed or cancelled (tasks you held when they
    /// were finished).
    status: Option<String>,
    /// 1 to 500; default 50.
    limit: Option<i64>,
    offset: Option<i64>,
    /// Wait until the read model includes this cursor.
    min_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TaskPage {
    tasks: Vec<TaskRow>,
    total: i64,
    limit: i64,
    offset: i64,
}

#[utoipa::path(get, path = "/tasks/mine", tag = "work queues", security(("bearer" = [])),
    params(MyTasksQuery),
    responses((status = 200, description = "The caller's tasks, most urgent first, then earliest due", body = TaskPage),
        (status = 400, body = crate::openapi::ProblemDoc),
        (status = 422, description = "Unknown status", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn my_tasks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    q: Result<Query<MyTasksQuery>, QueryRejection>,
) -> Result<Json<TaskPage>, ApiError> {
    let q = query(q)?;
    let status = match q.status.as_deref() {
        None => TaskStatus::Claimed,
        Some(s) => TaskStatus::parse(s)
            .filter(|s| *s != TaskStatus::Open)
            .ok_or_else(|| ApiError::InvalidField {
                field: "status",
                reason: "give claimed, completed or cancelled".into(),
            })?,
    };
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    let (limit, offset) = page(q.limit, q.offset);
    let (tasks, total) =
        model::my_tasks(state.store.pool(), &caller.username, status, limit, offset).await?;
    Ok(Json(TaskPage {
        tasks,
        total,
        limit,
        offset,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TasksQuery {
    queue_id: Option<Uuid>,
    /// open, claimed, completed or cancelled.
    status: Option<String>,
    /// Who holds the task (or held it when it was finished).
    claimant: Option<String>,
    case_id: Option<Uuid>,
    /// 1 to 500; default 50.
    limit: Option<i64>,
    offset: Option<i64>,
    /// Wait until the read model includes this cursor.
    min_cursor: Option<String>,
}

#[utoipa::path(get, path = "/tasks", tag = "work queues", security(("bearer" = [])),
    params(TasksQuery),
    responses((status = 200, description = "Tasks matching every filter given, newest first", body = TaskPage),
        (status = 400, body = crate::openapi::ProblemDoc),
        (status = 422, description = "Unknown status", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn list_tasks(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<TasksQuery>, QueryRejection>,
) -> Result<Json<TaskPage>, ApiError> {
    let q = query(q)?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            TaskStatus::parse(s).ok_or_else(|| ApiError::InvalidField {
                field: "status",
                reason: "give open, claimed, completed or cancelled".into(),
            })
        })
        .transpose()?;
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    let (limit, offset) = page(q.limit, q.offset);
    let filter = model::TaskFilter {
        queue_id: q.queue_id,
        status,
        claimant: q.claimant,
        case_id: q.case_id,
    };
    let (tasks, total) = model::tasks(state.store.pool(), &filter, limit, offset).await?;
    Ok(Json(TaskPage {
        tasks,
        total,
        limit,
        offset,
    }))
}

/// A page's limit (1 to [`MAX_PER_PAGE`], default [`DEFAULT_PER_PAGE`]) and offset (from 0).
fn page(limit: Option<i64>, offset: Option<i64>) -> (i64, i64) {
    (
        limit.unwrap_or(DEFAULT_PER_PAGE).clamp(1, MAX_PER_PAGE),
        offset.unwrap_or(0).max(0),
    )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CasesQuery {
    /// open or closed.
    status: Option<String>,
    /// The queue the case is routed to now.
    queue_id: Option<Uuid>,
    /// The user the case is assigned to now.
    assignee: Option<String>,
    /// 1 to 500; default 50.
    limit: Option<i64>,
    offset: Option<i64>,
    /// Wait until the read model includes this cursor.
    min_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CasePage {
    cases: Vec<CaseRow>,
    total: i64,
    limit: i64,
    offset: i64,
}

#[utoipa::path(get, path = "/cases", tag = "work queues", security(("bearer" = [])),
    params(CasesQuery),
    responses((status = 200, description = "Cases matching every filter given, most recently opened first", body = CasePage),
        (status = 400, body = crate::openapi::ProblemDoc),
        (status = 422, description = "Unknown status", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn list_cases(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<CasesQuery>, QueryRejection>,
) -> Result<Json<CasePage>, ApiError> {
    let q = query(q)?;
    if let Some(status) = q.status.as_deref() {
        if !matches!(status, "open" | "closed") {
            return Err(ApiError::InvalidField {
                field: "status",
                reason: "give open or closed".into(),
            });
        }
    }
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    let (limit, offset) = page(q.limit, q.offset);
    let filter = model::CaseFilter {
        status: q.status,
        queue_id: q.queue_id,
        assignee: q.assignee,
    };
    let (cases, total) = model::cases(state.store.pool(), &filter, limit, offset).await?;
    Ok(Json(CasePage {
        cases,
        total,
        limit,
        offset,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TaskDetail {
    #[serde(flatten)]
    task: TaskRow,
    /// Every event of the task, oldest first.
    history: Vec<TaskHistoryRow>,
}

#[utoipa::path(get, path = "/tasks/{id}", tag = "work queues", security(("bearer" = [])),
    params(("id" = Uuid, Path), ReadQuery),
    responses((status = 200, description = "The task and its history", body = TaskDetail),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn show_task(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<TaskDetail>, ApiError> {
    let id = path_id(path)?;
    let q = query(q)?;
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    let pool = state.store.pool();
    let task = model::task(pool, id)
        .await?
        .ok_or_else(|| task_not_found(id))?;
    Ok(Json(TaskDetail {
        task,
        history: model::task_history(pool, id).await?,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CaseDetail {
    #[serde(flatten)]
    case: CaseRow,
    /// The case's tasks, oldest first.
    tasks: Vec<TaskRow>,
}

#[utoipa::path(get, path = "/cases/{id}", tag = "work queues", security(("bearer" = [])),
    params(("id" = Uuid, Path), ReadQuery),
    responses((status = 200, description = "The case, where it is, who has it, and its tasks", body = CaseDetail),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn show_case(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<CaseDetail>, ApiError> {
    let id = path_id(path)?;
    let q = query(q)?;
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    let pool = state.store.pool();
    let case = model::case(pool, id)
        .await?
        .ok_or_else(|| case_not_found(id))?;
    Ok(Json(CaseDetail {
        case,
        tasks: model::case_tasks(pool, id).await?,
    }))
}

#[utoipa::path(get, path = "/cases/{id}/routing", tag = "work queues", security(("bearer" = [])),
    params(("id" = Uuid, Path), ReadQuery),
    responses((status = 200, description = "The case's routing history in order: routings to queues, assignments, and the claims, assignments, reassignments and completions of its tasks", body = Vec<RoutingRow>),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn case_routing(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Vec<RoutingRow>>, ApiError> {
    let id = path_id(path)?;
    let q = query(q)?;
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    let pool = state.store.pool();
    model::case(pool, id)
        .await?
        .ok_or_else(|| case_not_found(id))?;
    Ok(Json(model::case_routing(pool, id).await?))
}

/// `as_of::state`, with a stream that does not exist (or is not of this kind, or did not exist
/// yet) answered by `not_found`.
async fn state_or<A: domain::Aggregate>(
    state: &AppState,
    id: Uuid,
    at: as_of::AsOf,
    not_found: fn(Uuid) -> ApiError,
) -> Result<(u64, A), ApiError> {
    match as_of::state::<A>(&state.store, id, at).await {
        Err(ApiError::Store(StoreError::StreamNotFound { .. })) => Err(not_found(id)),
        other => other,
    }
}

/// A task as rebuilt from its events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TaskState {
    task_id: Uuid,
    queue_id: Uuid,
    title: String,
    /// open, claimed, completed or cancelled.
    status: String,
    /// 1 (lowest) to 5 (most urgent).
    priority: Option<i64>,
    groups: Vec<String>,
    case_id: Option<Uuid>,
    claimant: Option<String>,
    escalation_level: u32,
    created_at: Option<DateTime<Utc>>,
    due_at: Option<DateTime<Utc>>,
    /// The stream version this state is as of.
    version: u64,
}

#[utoipa::path(get, path = "/tasks/{id}/state", tag = "work queues", security(("bearer" = [])),
    params(("id" = Uuid, Path), crate::as_of::AsOfQuery),
    responses((status = 200, description = "The task now, or as of a time or version, from the events", body = TaskState),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn task_state(
    State(state): State<AppState>,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<as_of::AsOfQuery>, QueryRejection>,
) -> Result<Json<TaskState>, ApiError> {
    let id = path_id(path)?;
    let at = query(q)?.at()?;
    let (version, task) = state_or::<Task>(&state, id, at, task_not_found).await?;
    let queue_id = task.queue_id.ok_or_else(|| task_not_found(id))?;
    Ok(Json(TaskState {
        task_id: id,
        queue_id,
        title: task.title,
        status: task.status.as_str().to_owned(),
        priority: task.priority.map(i64::from),
        groups: task.groups.iter().map(|g| g.as_str().to_owned()).collect(),
        case_id: task.case_id,
        claimant: task.claimant,
        escalation_level: task.escalation_level,
        created_at: task.created_at,
        due_at: task.due_at,
        version,
    }))
}

/// A case as rebuilt from its events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CaseState {
    case_id: Uuid,
    number: String,
    subject: String,
    /// open or closed.
    #[schema(value_type = String)]
    status: domain::workqueue::case::CaseStatus,
    queue_id: Option<Uuid>,
    assignee: Option<String>,
    /// Linked tasks, in the order they were linked.
    tasks: Vec<Uuid>,
    /// The stream version this state is as of.
    version: u64,
}

#[utoipa::path(get, path = "/cases/{id}/state", tag = "work queues", security(("bearer" = [])),
    params(("id" = Uuid, Path), crate::as_of::AsOfQuery),
    responses((status = 200, description = "The case now, or as of a time or version, from the events", body = CaseState),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn case_state(
    State(state): State<AppState>,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<as_of::AsOfQuery>, QueryRejection>,
) -> Result<Json<CaseState>, ApiError> {
    let id = path_id(path)?;
    let at = query(q)?.at()?;
    let (version, case) = state_or::<Case>(&state, id, at, case_not_found).await?;
    let number = case.number.ok_or_else(|| case_not_found(id))?;
    Ok(Json(CaseState {
        case_id: id,
        number,
        subject: case.subject,
        status: case.status,
        queue_id: case.queue_id,
        assignee: case.assignee,
        tasks: case.tasks,
        version,
    }))
}
