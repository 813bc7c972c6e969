//! The work-queue queries and the rows they return. All read `read_models.*` explicitly: they
//! run on ordinary pooled connections.

use chrono::{DateTime, Utc};
use domain::workqueue::task::TaskStatus;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// A department with its place in the hierarchy.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DepartmentRow {
    pub department_id: Uuid,
    pub code: String,
    pub name: String,
    /// `None` for a top-level department.
    pub parent_id: Option<Uuid>,
    /// 0 for a top-level department, 1 for its children, ...
    pub depth: i32,
    /// The codes from the top-level department down to this one.
    pub path: Vec<String>,
    /// Queues belonging directly to this department.
    pub queue_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// Every department, as a tree walked depth first (parents before their children, siblings by
/// code), each with its parent, depth and path of codes.
pub async fn departments(pool: &PgPool) -> Result<Vec<DepartmentRow>, sqlx::Error> {
    sqlx::query_as(
        "WITH RECURSIVE tree AS ( \
           SELECT d.department_id, ARRAY[d.code] AS path, 0 AS depth FROM read_models.departments d \
           WHERE d.parent_id IS NULL OR NOT EXISTS \
             (SELECT 1 FROM read_models.departments p WHERE p.department_id = d.parent_id) \
           UNION ALL \
           SELECT c.department_id, t.path || c.code, t.depth + 1 \
           FROM read_models.departments c JOIN tree t ON c.parent_id = t.department_id \
         ) \
         SELECT d.department_id, d.code, d.name, d.parent_id, t.depth, t.path, \
           (SELECT count(*) FROM read_models.queues q WHERE q.department_id = d.department_id) AS queue_count, \
           d.created_at, d.updated_at, d.version \
         FROM tree t JOIN read_models.departments d ON d.department_id = t.department_id \
         ORDER BY t.path",
    )
    .fetch_all(pool)
    .await
}

/// A queue's configuration with its department's name and its current open and claimed tasks.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct QueueRow {
    pub queue_id: Uuid,
    pub name: String,
    pub department_id: Uuid,
    pub department_name: Option<String>,
    /// The most tasks one user may hold claimed here.
    pub per_user_capacity: i32,
    /// The most unfinished tasks the queue holds; `None` for no limit.
    pub total_capacity: Option<i32>,
    /// pull, round_robin, least_loaded, skill_based or priority_weighted.
    pub distribution: String,
    /// Minutes to the due time per priority: `{"1": 1440, ..., "5": 90}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub sla_minutes: serde_json::Value,
    pub escalation_raise_priority_by: i32,
    pub escalation_repeat_minutes: i32,
    pub escalation_max_level: i32,
    /// Candidate groups tasks here may name.
    pub groups: Vec<String>,
    pub open_tasks: i64,
    pub claimed_tasks: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

const QUEUE_SELECT: &str = "SELECT q.queue_id, q.name, q.department_id, d.name AS department_name, \
    q.per_user_capacity, q.total_capacity, q.distribution, q.sla_minutes, \
    q.escalation_raise_priority_by, q.escalation_repeat_minutes, q.escalation_max_level, q.groups, \
    (SELECT count(*) FROM read_models.tasks t WHERE t.queue_id = q.queue_id AND t.status = 'open') AS open_tasks, \
    (SELECT count(*) FROM read_models.tasks t WHERE t.queue_id = q.queue_id AND t.status = 'claimed') AS claimed_tasks, \
    q.created_at, q.updated_at, q.version \
    FROM read_models.queues q LEFT JOIN read_models.departments d ON d.department_id = q.department_id";

/// Every queue by name, with its open and claimed task counts.
pub async fn list_queues(pool: &PgPool) -> Result<Vec<QueueRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{QUEUE_SELECT} ORDER BY lower(q.name), q.queue_id"
    ))
    .fetch_all(pool)
    .await
}

/// One queue.
pub async fn queue(pool: &PgPool, queue_id: Uuid) -> Result<Option<QueueRow>, sqlx::Error> {
    sqlx::query_as(&format!("{QUEUE_SELECT} WHERE q.queue_id = $1"))
        .bind(queue_id)
        .fetch_optional(pool)
        .await
}

/// A task as the read model holds it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TaskRow {
    pub task_id: Uuid,
    pub queue_id: Uuid,
    pub title: String,
    /// 1 (lowest) to 5 (most urgent), escalation included.
    pub priority: i16,
    pub initial_priority: i16,
    pub groups: Vec<String>,
    pub case_id: Option<Uuid>,
    /// open, claimed, completed or cancelled.
    pub status: String,
    /// Who holds it (claimed), or held it last (finished).
    pub claimant: Option<String>,
    pub escalation_level: i32,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub first_claimed_at: Option<DateTime<Utc>>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub within_sla: Option<bool>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

const TASK_COLUMNS: &str =
    "task_id, queue_id, title, priority, initial_priority, groups, case_id, \
    status, claimant, escalation_level, payload, created_at, due_at, first_claimed_at, claimed_at, \
    completed_at, cancelled_at, outcome, within_sla, updated_at, version";

/// Tasks by status in one queue.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub open: i64,
    pub claimed: i64,
    pub completed: i64,
    pub cancelled: i64,
}

/// A queue's load against its capacity at one moment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QueueLoad {
    /// Tasks claimed now.
    pub claimed: i64,
    /// Users with a grant in force now.
    pub members: i64,
    pub per_user_capacity: i32,
    /// `per_user_capacity` × `members`.
    pub capacity: i64,
    /// `claimed` as a percentage of `capacity`; `None` when nobody may work here.
    pub utilisation_pct: Option<f64>,
}

/// A queue with its counts, load and one page of its open tasks in claim order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueView {
    pub queue: QueueRow,
    pub counts: StatusCounts,
    /// Unfinished (open or claimed) tasks with an escalation level above 0.
    pub escalated: i64,
    pub load: QueueLoad,
    /// Open tasks, highest priority first, then oldest, then by id (the order claim-next
    /// serves them in).
    pub open_tasks: Vec<TaskRow>,
    /// All open tasks (every page).
    pub open_total: i64,
}

/// A queue's view at `now`, with `limit` open tasks after skipping `offset`; `None` if no such
/// queue.
pub async fn queue_view(
    pool: &PgPool,
    queue_id: Uuid,
    now: DateTime<Utc>,
    limit: i64,
    offset: i64,
) -> Result<Option<QueueView>, sqlx::Error> {
    let Some(queue) = queue(pool, queue_id).await? else {
        return Ok(None);
    };
    // Open and claimed are counted by the queue's row already.
    let (open, claimed) = (queue.open_tasks, queue.claimed_tasks);
    let (completed, cancelled, escalated, members): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'completed'), \
           count(*) FILTER (WHERE status = 'cancelled'), \
           count(*) FILTER (WHERE status IN ('open', 'claimed') AND escalation_level > 0), \
           (SELECT count(DISTINCT username) FROM read_models.queue_grants \
             WHERE queue_id = $1 AND valid_from <= $2 AND (valid_until IS NULL OR $2 < valid_until)) \
         FROM read_models.tasks WHERE queue_id = $1",
    )
    .bind(queue_id)
    .bind(now)
    .fetch_one(pool)
    .await?;
    let open_tasks = sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM read_models.tasks WHERE queue_id = $1 AND status = 'open' \
         ORDER BY priority DESC, created_at, task_id LIMIT $2 OFFSET $3"
    ))
    .bind(queue_id)
    .bind(limit.clamp(1, 500))
    .bind(offset.max(0))
    .fetch_all(pool)
    .await?;
    let capacity = i64::from(queue.per_user_capacity).saturating_mul(members);
    let load = QueueLoad {
        claimed,
        members,
        per_user_capacity: queue.per_user_capacity,
        capacity,
        utilisation_pct: (capacity > 0).then(|| claimed as f64 * 100.0 / capacity as f64),
    };
    Ok(Some(QueueView {
        queue,
        counts: StatusCounts {
            open,
            claimed,
            completed,
            cancelled,
        },
        escalated,
        load,
        open_tasks,
        open_total: open,
    }))
}

/// One task.
pub async fn task(pool: &PgPool, task_id: Uuid) -> Result<Option<TaskRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM read_models.tasks WHERE task_id = $1"
    ))
    .bind(task_id)
    .fetch_optional(pool)
    .await
}

/// One event in a task's history.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TaskHistoryRow {
    /// The event's version in the task stream.
    pub version: i64,
    pub at: DateTime<Utc>,
    /// created, claimed, assigned, unclaimed, reassigned, completed, cancelled, escalated or
    /// linked_to_case.
    pub kind: String,
    /// Who issued the command (`user:NAME`, `job:NAME`).
    pub actor: String,
    /// The user it concerns, if any.
    pub username: Option<String>,
    pub detail: String,
    /// The event's payload.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
}

/// A task's history, oldest first.
pub async fn task_history(
    pool: &PgPool,
    task_id: Uuid,
) -> Result<Vec<TaskHistoryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT version, at, kind, actor, username, detail, data FROM read_models.task_history \
         WHERE task_id = $1 ORDER BY version",
    )
    .bind(task_id)
    .fetch_all(pool)
    .await
}

/// The tasks `username` holds (`status` `claimed`, the default) or held when they were finished
/// (`completed`, `cancelled`): most urgent first, then earliest due; one page, and the total.
pub async fn my_tasks(
    pool: &PgPool,
    username: &str,
    status: TaskStatus,
    limit: i64,
    offset: i64,
) -> Result<(Vec<TaskRow>, i64), sqlx::Error> {
    let rows = sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM read_models.tasks WHERE claimant = $1 AND status = $2 \
         ORDER BY priority DESC, due_at, created_at, task_id LIMIT $3 OFFSET $4"
    ))
    .bind(username)
    .bind(status.as_str())
    .bind(limit.clamp(1, 500))
    .bind(offset.max(0))
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar(
        "SELECT count(*) FROM read_models.tasks WHERE claimant = $1 AND status = $2",
    )
    .bind(username)
    .bind(status.as_str())
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

/// One queue on the dashboard.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DashboardRow {
    pub queue_id: Uuid,
    pub name: String,
    pub department_id: Uuid,
    pub open: i64,
    pub claimed: i64,
    /// Unfinished tasks with an escalation level above 0.
    pub escalated: i64,
    /// Average age, in hours, of the unfinished (open or claimed) tasks at the time asked
    /// about; `None` when there are none.
    pub avg_age_hours: Option<f64>,
}

/// Per queue (by name): open, claimed and escalated tasks, and the average age of the
/// unfinished ones at `now`.
pub async fn dashboard(
    pool: &PgPool,
    now: DateTime<Utc>,
) -> Result<Vec<DashboardRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT q.queue_id, q.name, q.department_id, \
           count(t.task_id) FILTER (WHERE t.status = 'open') AS open, \
           count(t.task_id) FILTER (WHERE t.status = 'claimed') AS claimed, \
           count(t.task_id) FILTER (WHERE t.escalation_level > 0) AS escalated, \
           (avg(extract(epoch FROM $1 - t.created_at)) / 3600)::float8 AS avg_age_hours \
         FROM read_models.queues q \
         LEFT JOIN read_models.tasks t ON t.queue_id = q.queue_id AND t.status IN ('open', 'claimed') \
         GROUP BY q.queue_id ORDER BY lower(q.name), q.queue_id",
    )
    .bind(now)
    .fetch_all(pool)
    .await
}

/// Average and 90th percentile of a duration, in seconds; `None` with no tasks.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DurationStats {
    pub avg: Option<f64>,
    /// `percentile_cont(0.9)`: interpolated between the two nearest values.
    pub p90: Option<f64>,
}

/// SLA compliance of one queue over a period.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlaReport {
    pub queue_id: Uuid,
    /// Start of the period (inclusive).
    pub from: DateTime<Utc>,
    /// End of the period (exclusive).
    pub to: DateTime<Utc>,
    /// Tasks completed in the period.
    pub completed: i64,
    /// Of them, completed by their due time.
    pub within_sla: i64,
    /// `within_sla` as a percentage of `completed`; `None` when nothing was completed.
    pub within_sla_pct: Option<f64>,
    /// Tasks completed late in the period, plus tasks unfinished and past due at the end of the
    /// period (or now, if the period has not ended).
    pub breaches: i64,
    /// From creation to the first claim (or push assignment), over the tasks completed in the
    /// period.
    pub time_to_claim_secs: DurationStats,
    /// From creation to completion, over the tasks completed in the period.
    pub time_to_complete_secs: DurationStats,
}

/// The SLA report of `queue_id` over `[from, to)`, counting unfinished overdue tasks as of
/// `to` or `now`, whichever is earlier. `None` if no such queue.
pub async fn sla_report(
    pool: &PgPool,
    queue_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<SlaReport>, sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM read_models.queues WHERE queue_id = $1)")
            .bind(queue_id)
            .fetch_one(pool)
            .await?;
    if !exists {
        return Ok(None);
    }
    #[allow(clippy::type_complexity)]
    let (completed, within_sla, claim_avg, claim_p90, complete_avg, complete_p90): (
        i64,
        i64,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
    ) = sqlx::query_as(
        "WITH done AS ( \
           SELECT within_sla, \
             extract(epoch FROM first_claimed_at - created_at)::float8 AS to_claim, \
             extract(epoch FROM completed_at - created_at)::float8 AS to_complete \
           FROM read_models.tasks \
           WHERE queue_id = $1 AND completed_at >= $2 AND completed_at < $3) \
         SELECT count(*), count(*) FILTER (WHERE within_sla), \
           avg(to_claim), percentile_cont(0.9) WITHIN GROUP (ORDER BY to_claim), \
           avg(to_complete), percentile_cont(0.9) WITHIN GROUP (ORDER BY to_complete) \
         FROM done",
    )
    .bind(queue_id)
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?;
    let cutoff = to.min(now);
    let breaches: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM read_models.tasks WHERE queue_id = $1 AND ( \
           (completed_at >= $2 AND completed_at < $3 AND NOT within_sla) \
           OR (created_at < $4 AND due_at < $4 \
               AND (completed_at IS NULL OR completed_at >= $4) \
               AND (cancelled_at IS NULL OR cancelled_at >= $4)))",
    )
    .bind(queue_id)
    .bind(from)
    .bind(to)
    .bind(cutoff)
    .fetch_one(pool)
    .await?;
    Ok(Some(SlaReport {
        queue_id,
        from,
        to,
        completed,
        within_sla,
        within_sla_pct: (completed > 0).then(|| within_sla as f64 * 100.0 / completed as f64),
        breaches,
        time_to_claim_secs: DurationStats {
            avg: claim_avg,
            p90: claim_p90,
        },
        time_to_complete_secs: DurationStats {
            avg: complete_avg,
            p90: complete_p90,
        },
    }))
}

/// A case as the read model holds it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct CaseRow {
    pub case_id: Uuid,
    pub number: String,
    pub subject: String,
    pub allegations: Vec<String>,
    /// open or closed.
    pub status: String,
    /// The queue it is routed to now.
    pub queue_id: Option<Uuid>,
    pub queue_name: Option<String>,
    /// The user it is assigned to now.
    pub assignee: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub resolution: Option<String>,
    /// Tasks linked to the case.
    pub task_count: i32,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// A [`CaseRow`]'s columns, the case's queue named; `c` is the case.
const CASE_SELECT: &str =
    "SELECT c.case_id, c.number, c.subject, c.allegations, c.status, c.queue_id, \
    q.name AS queue_name, c.assignee, c.opened_at, c.closed_at, c.resolution, c.task_count, \
    c.updated_at, c.version \
    FROM read_models.cases c LEFT JOIN read_models.queues q ON q.queue_id = c.queue_id";

/// One case.
pub async fn case(pool: &PgPool, case_id: Uuid) -> Result<Option<CaseRow>, sqlx::Error> {
    sqlx::query_as(&format!("{CASE_SELECT} WHERE c.case_id = $1"))
        .bind(case_id)
        .fetch_optional(pool)
        .await
}

/// The tasks of a case, oldest first.
pub async fn case_tasks(pool: &PgPool, case_id: Uuid) -> Result<Vec<TaskRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM read_models.tasks WHERE case_id = $1 ORDER BY created_at, task_id"
    ))
    .bind(case_id)
    .fetch_all(pool)
    .await
}

/// What a task list is narrowed to; every field left out matches everything.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub queue_id: Option<Uuid>,
    pub status: Option<TaskStatus>,
    pub claimant: Option<String>,
    pub case_id: Option<Uuid>,
}

/// Tasks matching `filter`, newest first; one page, and the total.
pub async fn tasks(
    pool: &PgPool,
    filter: &TaskFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<TaskRow>, i64), sqlx::Error> {
    const MATCHES: &str =
        "($1::uuid IS NULL OR queue_id = $1) AND ($2::text IS NULL OR status = $2) \
         AND ($3::text IS NULL OR claimant = $3) AND ($4::uuid IS NULL OR case_id = $4)";
    let rows = sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM read_models.tasks WHERE {MATCHES} \
         ORDER BY created_at DESC, task_id LIMIT $5 OFFSET $6"
    ))
    .bind(filter.queue_id)
    .bind(filter.status.map(TaskStatus::as_str))
    .bind(filter.claimant.as_deref())
    .bind(filter.case_id)
    .bind(limit.clamp(1, 500))
    .bind(offset.max(0))
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM read_models.tasks WHERE {MATCHES}"
    ))
    .bind(filter.queue_id)
    .bind(filter.status.map(TaskStatus::as_str))
    .bind(filter.claimant.as_deref())
    .bind(filter.case_id)
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

/// What a case list is narrowed to; every field left out matches everything.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    /// open or closed.
    pub status: Option<String>,
    pub queue_id: Option<Uuid>,
    pub assignee: Option<String>,
}

/// Cases matching `filter`, most recently opened first; one page, and the total.
pub async fn cases(
    pool: &PgPool,
    filter: &CaseFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<CaseRow>, i64), sqlx::Error> {
    const MATCHES: &str =
        "($1::text IS NULL OR c.status = $1) AND ($2::uuid IS NULL OR c.queue_id = $2) \
         AND ($3::text IS NULL OR c.assignee = $3)";
    let rows = sqlx::query_as(&format!(
        "{CASE_SELECT} WHERE {MATCHES} ORDER BY c.opened_at DESC, c.case_id LIMIT $4 OFFSET $5"
    ))
    .bind(filter.status.as_deref())
    .bind(filter.queue_id)
    .bind(filter.assignee.as_deref())
    .bind(limit.clamp(1, 500))
    .bind(offset.max(0))
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM read_models.cases c WHERE {MATCHES}"
    ))
    .bind(filter.status.as_deref())
    .bind(filter.queue_id)
    .bind(filter.assignee.as_deref())
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

/// One entry of a case's routing history (see the `case_routing` table's comments for what
/// each field holds per kind).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct RoutingRow {
    /// 1, 2, ... in log order.
    pub entry_no: i32,
    pub at: DateTime<Utc>,
    /// routed, assigned, task_claimed, task_assigned, task_reassigned or task_completed.
    pub kind: String,
    /// routed: the queue the case went to; assigned: the case's queue then; task_*: the task's
    /// queue.
    pub queue_id: Option<Uuid>,
    pub queue_name: Option<String>,
    /// routed: the queue it came from.
    pub from_queue_id: Option<Uuid>,
    /// assigned: the previous assignee; task_reassigned: the previous claimant;
    /// task_completed: who completed it.
    pub from_user: Option<String>,
    /// assigned: the new assignee; task_claimed / task_assigned / task_reassigned: who got the
    /// task.
    pub to_user: Option<String>,
    /// The reason given; the distribution's explanation; `claim next`; or the outcome.
    pub reason: Option<String>,
    pub task_id: Option<Uuid>,
    /// Who issued the command.
    pub actor: String,
}

/// A case's routing history, in order.
pub async fn case_routing(pool: &PgPool, case_id: Uuid) -> Result<Vec<RoutingRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.entry_no, r.at, r.kind, r.queue_id, q.name AS queue_name, r.from_queue_id, \
           r.from_user, r.to_user, r.reason, r.task_id, r.actor \
         FROM read_models.case_routing r LEFT JOIN read_models.queues q ON q.queue_id = r.queue_id \
         WHERE r.case_id = $1 ORDER BY r.entry_no",
    )
    .bind(case_id)
    .fetch_all(pool)
    .await
}
