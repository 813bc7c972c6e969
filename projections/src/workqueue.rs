//! The work-queue read model: departments, queues and their grants, tasks with their history,
//! cases with their routing history, and the queries behind the work screens (queue list and
//! view, my tasks, the dashboard, the SLA report, case detail and routing, the department tree).
//!
//! Every time in these tables is the `at` the domain recorded in the event (the command's
//! clock), not the database's `recorded_at`, so SLA figures are measured on the times the
//! decisions were made with.
//!
//! The command side keeps its own `wq_*` tables in the `public` schema for claims under
//! concurrency; they are not read models and nothing here reads them.
//!
//! `case_routing` is the history of where a case went: its own routings and assignments, and
//! the claims, assignments, reassignments and completions of the tasks linked to it (from the
//! moment they are linked), one row each, numbered in log order per case.

use chrono::{DateTime, SecondsFormat, Utc};
use domain::workqueue::case::{Case, CaseEvent};
use domain::workqueue::department::{Department, DepartmentEvent};
use domain::workqueue::queue::{Queue, QueueConfig, QueueEvent};
use domain::workqueue::task::{Task, TaskEvent, TaskStatus};
use domain::workqueue::{GroupLabel, Priority};
use domain::Aggregate;
use eventstore::RecordedEvent;
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::projection::{decode, ApplyError, Projection};

#[derive(Debug, Clone, Copy, Default)]
pub struct WorkQueueModel;

/// The projection's name: its checkpoint, and what `min_cursor` waits for.
pub const NAME: &str = "workqueues";

const CREATE_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS departments (
    department_id uuid PRIMARY KEY,
    code          text NOT NULL,
    name          text NOT NULL,
    parent_id     uuid,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    version       bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS departments_by_parent ON departments (parent_id);
COMMENT ON TABLE departments IS 'One row per department; parent_id makes the hierarchy (no cycles: a parent exists before its children).';
COMMENT ON COLUMN departments.department_id IS 'The department stream id (UUID v5 of the code).';
COMMENT ON COLUMN departments.code IS 'Unique code, upper case (CRED-EAST).';
COMMENT ON COLUMN departments.name IS 'Current name.';
COMMENT ON COLUMN departments.parent_id IS 'The parent department; NULL for a top-level department.';
COMMENT ON COLUMN departments.created_at IS 'When the department was created.';
COMMENT ON COLUMN departments.updated_at IS 'When its latest event happened.';
COMMENT ON COLUMN departments.version IS 'Version of the department stream this row reflects.';

CREATE TABLE IF NOT EXISTS queues (
    queue_id                      uuid PRIMARY KEY,
    name                          text NOT NULL,
    department_id                 uuid NOT NULL,
    per_user_capacity             integer NOT NULL,
    total_capacity                integer,
    distribution                  text NOT NULL,
    sla_minutes                   jsonb NOT NULL,
    escalation_raise_priority_by  integer NOT NULL,
    escalation_repeat_minutes     integer NOT NULL,
    escalation_max_level          integer NOT NULL,
    groups                        text[] NOT NULL,
    created_at                    timestamptz NOT NULL,
    updated_at                    timestamptz NOT NULL,
    version                       bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS queues_by_department ON queues (department_id);
COMMENT ON TABLE queues IS 'One row per work queue: its configuration (capacity, SLA, escalation, distribution, candidate groups).';
COMMENT ON COLUMN queues.queue_id IS 'The queue stream id (UUID v5 of the normalised name).';
COMMENT ON COLUMN queues.name IS 'Queue name (unique, case and spacing aside).';
COMMENT ON COLUMN queues.department_id IS 'The department the queue belongs to (departments.department_id).';
COMMENT ON COLUMN queues.per_user_capacity IS 'The most tasks one user may hold claimed in this queue at once.';
COMMENT ON COLUMN queues.total_capacity IS 'The most unfinished (open or claimed) tasks the queue holds; NULL for no limit.';
COMMENT ON COLUMN queues.distribution IS 'pull (people claim), or a push strategy: round_robin, least_loaded, skill_based, priority_weighted.';
COMMENT ON COLUMN queues.sla_minutes IS 'Minutes from creation to due time per priority: {"1": 1440, ..., "5": 90} (5 most urgent).';
COMMENT ON COLUMN queues.escalation_raise_priority_by IS 'Escalation policy: priority steps added at each escalation level (never past 5).';
COMMENT ON COLUMN queues.escalation_repeat_minutes IS 'Escalation policy: minutes between levels once a task is overdue (level 1 at its due time).';
COMMENT ON COLUMN queues.escalation_max_level IS 'Escalation policy: the highest escalation level.';
COMMENT ON COLUMN queues.groups IS 'Candidate groups (skills) tasks of this queue may name, sorted.';
COMMENT ON COLUMN queues.created_at IS 'When the queue was created.';
COMMENT ON COLUMN queues.updated_at IS 'When its configuration last changed.';
COMMENT ON COLUMN queues.version IS 'Version of the queue stream this row reflects (grants count too).';

CREATE TABLE IF NOT EXISTS queue_grants (
    grant_id    uuid PRIMARY KEY,
    queue_id    uuid NOT NULL,
    username    text NOT NULL,
    role        text NOT NULL,
    skills      text[] NOT NULL,
    valid_from  timestamptz NOT NULL,
    valid_until timestamptz,
    granted_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_grants_by_queue ON queue_grants (queue_id, username);
CREATE INDEX IF NOT EXISTS queue_grants_by_user ON queue_grants (username);
COMMENT ON TABLE queue_grants IS 'Grants not revoked: who may work in which queue, in which role, with which skills, in which window. Expired grants stay (compare the window with the time you ask about); revoked ones are removed.';
COMMENT ON COLUMN queue_grants.grant_id IS 'The grant id.';
COMMENT ON COLUMN queue_grants.queue_id IS 'The queue (queues.queue_id).';
COMMENT ON COLUMN queue_grants.username IS 'The user granted.';
COMMENT ON COLUMN queue_grants.role IS 'member (claims and completes) or lead (also delegates and reassigns).';
COMMENT ON COLUMN queue_grants.skills IS 'Candidate groups the user works in this queue, sorted.';
COMMENT ON COLUMN queue_grants.valid_from IS 'Start of the window (inclusive).';
COMMENT ON COLUMN queue_grants.valid_until IS 'End of the window (exclusive); NULL until revoked.';
COMMENT ON COLUMN queue_grants.granted_at IS 'When the grant was given.';

CREATE TABLE IF NOT EXISTS tasks (
    task_id          uuid PRIMARY KEY,
    queue_id         uuid NOT NULL,
    title            text NOT NULL,
    priority         smallint NOT NULL,
    initial_priority smallint NOT NULL,
    groups           text[] NOT NULL,
    case_id          uuid,
    status           text NOT NULL,
    claimant         text,
    escalation_level integer NOT NULL,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL,
    due_at           timestamptz NOT NULL,
    first_claimed_at timestamptz,
    claimed_at       timestamptz,
    completed_at     timestamptz,
    cancelled_at     timestamptz,
    outcome          text,
    within_sla       boolean,
    updated_at       timestamptz NOT NULL,
    version          bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_claim_order ON tasks (queue_id, priority DESC, created_at, task_id) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS tasks_by_queue_status ON tasks (queue_id, status);
CREATE INDEX IF NOT EXISTS tasks_by_claimant ON tasks (claimant, status) WHERE claimant IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_by_completion ON tasks (queue_id, completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_by_case ON tasks (case_id) WHERE case_id IS NOT NULL;
-- GET /tasks: newest first, page by page.
CREATE INDEX IF NOT EXISTS tasks_by_creation ON tasks (created_at DESC, task_id);
COMMENT ON TABLE tasks IS 'One row per task: where it is, who holds it, its SLA times and outcome.';
COMMENT ON COLUMN tasks.task_id IS 'The task stream id.';
COMMENT ON COLUMN tasks.queue_id IS 'The queue the task is in (queues.queue_id).';
COMMENT ON COLUMN tasks.title IS 'What is to be done.';
COMMENT ON COLUMN tasks.priority IS 'Current priority, 1 (lowest) to 5 (most urgent); escalation raises it.';
COMMENT ON COLUMN tasks.initial_priority IS 'Priority the task was created with.';
COMMENT ON COLUMN tasks.groups IS 'Candidate groups: who may hold it needs one of them among their skills (empty: anyone in the queue).';
COMMENT ON COLUMN tasks.case_id IS 'The case the task belongs to, if any (cases.case_id).';
COMMENT ON COLUMN tasks.status IS 'open, claimed, completed or cancelled.';
COMMENT ON COLUMN tasks.claimant IS 'Username holding the task while claimed; for finished tasks, who held it last.';
COMMENT ON COLUMN tasks.escalation_level IS '0 until overdue; 1, 2, ... as the escalation policy steps up.';
COMMENT ON COLUMN tasks.payload IS 'The JSON object the task was created with.';
COMMENT ON COLUMN tasks.created_at IS 'When the task was created.';
COMMENT ON COLUMN tasks.due_at IS 'When it is due: creation plus the queue''s SLA for its initial priority.';
COMMENT ON COLUMN tasks.first_claimed_at IS 'When someone first held it (the first claim, push assignment or reassignment).';
COMMENT ON COLUMN tasks.claimed_at IS 'When the current (or last) holder got it; NULL while open.';
COMMENT ON COLUMN tasks.completed_at IS 'When it was completed.';
COMMENT ON COLUMN tasks.cancelled_at IS 'When it was cancelled.';
COMMENT ON COLUMN tasks.outcome IS 'The outcome label given on completion.';
COMMENT ON COLUMN tasks.within_sla IS 'On completion: completed by its due time. NULL until completed.';
COMMENT ON COLUMN tasks.updated_at IS 'When its latest event happened.';
COMMENT ON COLUMN tasks.version IS 'Version of the task stream this row reflects.';

CREATE TABLE IF NOT EXISTS task_history (
    task_id  uuid NOT NULL,
    version  bigint NOT NULL,
    at       timestamptz NOT NULL,
    kind     text NOT NULL,
    actor    text NOT NULL,
    username text,
    detail   text NOT NULL,
    data     jsonb NOT NULL,
    PRIMARY KEY (task_id, version)
);
COMMENT ON TABLE task_history IS 'One row per task event, for the task''s detail page.';
COMMENT ON COLUMN task_history.task_id IS 'The task (tasks.task_id).';
COMMENT ON COLUMN task_history.version IS 'The event''s version in the task stream (1 = created).';
COMMENT ON COLUMN task_history.at IS 'When it happened.';
COMMENT ON COLUMN task_history.kind IS 'created, claimed, assigned, unclaimed, reassigned, completed, cancelled, escalated or linked_to_case.';
COMMENT ON COLUMN task_history.actor IS 'Who issued the command (user:NAME, job:NAME).';
COMMENT ON COLUMN task_history.username IS 'The user it concerns: who claimed, released, completed or cancelled it, or who it was assigned or reassigned to.';
COMMENT ON COLUMN task_history.detail IS 'One sentence describing the event.';
COMMENT ON COLUMN task_history.data IS 'The event''s payload as stored.';

CREATE TABLE IF NOT EXISTS cases (
    case_id     uuid PRIMARY KEY,
    number      text NOT NULL,
    subject     text NOT NULL,
    allegations text[] NOT NULL,
    status      text NOT NULL,
    queue_id    uuid,
    assignee    text,
    opened_at   timestamptz NOT NULL,
    closed_at   timestamptz,
    resolution  text,
    task_count  integer NOT NULL,
    updated_at  timestamptz NOT NULL,
    version     bigint NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS cases_by_number ON cases (number);
-- GET /cases: most recently opened first, page by page.
CREATE INDEX IF NOT EXISTS cases_by_opening ON cases (opened_at DESC, case_id);
COMMENT ON TABLE cases IS 'One row per case: subject, where it is, who has it, how many tasks it links.';
COMMENT ON COLUMN cases.case_id IS 'The case stream id (UUID v5 of the case number).';
COMMENT ON COLUMN cases.number IS 'Case number, upper case (CASE-2026-0042).';
COMMENT ON COLUMN cases.subject IS 'What the case is about.';
COMMENT ON COLUMN cases.allegations IS 'The allegations, in the order given.';
COMMENT ON COLUMN cases.status IS 'open or closed.';
COMMENT ON COLUMN cases.queue_id IS 'The queue the case is routed to now; NULL if never routed.';
COMMENT ON COLUMN cases.assignee IS 'The user the case is assigned to now; NULL if never assigned.';
COMMENT ON COLUMN cases.opened_at IS 'When the case was opened.';
COMMENT ON COLUMN cases.closed_at IS 'When it was closed.';
COMMENT ON COLUMN cases.resolution IS 'How it was closed.';
COMMENT ON COLUMN cases.task_count IS 'Tasks linked to the case.';
COMMENT ON COLUMN cases.updated_at IS 'When its latest event happened.';
COMMENT ON COLUMN cases.version IS 'Version of the case stream this row reflects.';

CREATE TABLE IF NOT EXISTS case_routing (
    case_id       uuid NOT NULL,
    entry_no      integer NOT NULL,
    at            timestamptz NOT NULL,
    kind          text NOT NULL,
    queue_id      uuid,
    from_queue_id uuid,
    from_user     text,
    to_user       text,
    reason        text,
    task_id       uuid,
    actor         text NOT NULL,
    PRIMARY KEY (case_id, entry_no)
);
COMMENT ON TABLE case_routing IS 'A case''s routing history, in order: its routings to queues and assignments to people, and the claims, assignments, reassignments and completions of its tasks.';
COMMENT ON COLUMN case_routing.case_id IS 'The case (cases.case_id).';
COMMENT ON COLUMN case_routing.entry_no IS '1, 2, ... per case, in log order.';
COMMENT ON COLUMN case_routing.at IS 'When it happened.';
COMMENT ON COLUMN case_routing.kind IS 'routed, assigned (the case), task_claimed, task_assigned, task_reassigned or task_completed.';
COMMENT ON COLUMN case_routing.queue_id IS 'routed: the queue the case went to; assigned: the case''s queue then; task_*: the task''s queue.';
COMMENT ON COLUMN case_routing.from_queue_id IS 'routed: the queue the case came from (NULL for its first routing).';
COMMENT ON COLUMN case_routing.from_user IS 'assigned: the previous assignee; task_reassigned: the previous claimant; task_completed: who completed it.';
COMMENT ON COLUMN case_routing.to_user IS 'assigned: the new assignee; task_claimed: who claimed; task_assigned / task_reassigned: who got the task.';
COMMENT ON COLUMN case_routing.reason IS 'routed / assigned / task_reassigned: the reason given; task_assigned: why distribution chose the user; task_claimed: ''claim next'' when chosen by claim-next; task_completed: the outcome.';
COMMENT ON COLUMN case_routing.task_id IS 'task_*: the task (tasks.task_id).';
COMMENT ON COLUMN case_routing.actor IS 'Who issued the command (user:NAME, job:NAME).';
"#;

const EVENT_TYPES: &[&str] = &[
    "DepartmentCreated",
    "DepartmentRenamed",
    "QueueCreated",
    "QueueConfigured",
    "QueueAccessGranted",
    "QueueAccessRevoked",
    "TaskCreated",
    "TaskClaimed",
    "TaskAssigned",
    "TaskUnclaimed",
    "TaskReassigned",
    "TaskCompleted",
    "TaskCancelled",
    "TaskEscalated",
    "TaskLinkedToCase",
    "CaseOpened",
    "CaseRouted",
    "CaseAssigned",
    "CaseTaskLinked",
    "CaseClosed",
];

const TABLES: &[&str] = &[
    "departments",
    "queues",
    "queue_grants",
    "tasks",
    "task_history",
    "cases",
    "case_routing",
];

impl Projection for WorkQueueModel {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event_types(&self) -> &'static [&'static str] {
        EVENT_TYPES
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn create_sql(&self) -> &'static str {
        CREATE_SQL
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            for e in events {
                match e.stream_type.as_str() {
                    Department::STREAM_TYPE => {
                        apply_department(conn, e, &decode::<Department>(e)?).await?
                    }
                    Queue::STREAM_TYPE => apply_queue(conn, e, &decode::<Queue>(e)?).await?,
                    Task::STREAM_TYPE => apply_task(conn, e, &decode::<Task>(e)?).await?,
                    Case::STREAM_TYPE => apply_case(conn, e, &decode::<Case>(e)?).await?,
                    _ => {}
                }
            }
            Ok(())
        })
    }
}

fn version_of(e: &RecordedEvent) -> i64 {
    i64::try_from(e.version).unwrap_or(i64::MAX)
}

fn labels(groups: &[GroupLabel]) -> Vec<&str> {
    groups.iter().map(GroupLabel::as_str).collect()
}

fn priority(p: Priority) -> i16 {
    i16::from(p.get())
}

fn int(e: &RecordedEvent, what: &str, value: u32) -> Result<i32, ApplyError> {
    i32::try_from(value).map_err(|_| ApplyError::at(e, format!("{what} out of range")))
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn apply_department(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    event: &DepartmentEvent,
) -> Result<(), ApplyError> {
    match event {
        DepartmentEvent::DepartmentCreated {
            code,
            name,
            parent_id,
            at,
        } => {
            sqlx::query(
                "INSERT INTO departments (department_id, code, name, parent_id, created_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $5, $6) \
                 ON CONFLICT (department_id) DO UPDATE SET code = excluded.code, name = excluded.name, \
                   parent_id = excluded.parent_id, updated_at = excluded.updated_at, version = excluded.version",
            )
            .bind(e.stream_id)
            .bind(code)
            .bind(name)
            .bind(*parent_id)
            .bind(*at)
            .bind(version_of(e))
            .execute(&mut *conn)
            .await?;
        }
        DepartmentEvent::DepartmentRenamed { name, at } => {
            sqlx::query(
                "UPDATE departments SET name = $2, updated_at = $3, version = $4 WHERE department_id = $1",
            )
            .bind(e.stream_id)
            .bind(name)
            .bind(*at)
            .bind(version_of(e))
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// The configuration columns of `queues`, bound in this order after the queue id.
struct ConfigColumns<'a> {
    department_id: Uuid,
    per_user: i32,
    total: Option<i32>,
    distribution: &'static str,
    sla: serde_json::Value,
    raise_by: i32,
    repeat_minutes: i32,
    max_level: i32,
    groups: Vec<&'a str>,
}

fn config_columns<'a>(
    e: &RecordedEvent,
    config: &'a QueueConfig,
) -> Result<ConfigColumns<'a>, ApplyError> {
    let sla: serde_json::Map<String, serde_json::Value> = config
        .sla
        .due_minutes
        .iter()
        .map(|(p, minutes)| (p.to_string(), serde_json::Value::from(*minutes)))
        .collect();
    Ok(ConfigColumns {
        department_id: config.department_id,
        per_user: int(e, "capacity.per_user", config.capacity.per_user)?,
        total: config
            .capacity
            .total
            .map(|t| int(e, "capacity.total", t))
            .transpose()?,
        distribution: config.distribution.as_str(),
        sla: serde_json::Value::Object(sla),
        raise_by: i32::from(config.escalation.raise_priority_by),
        repeat_minutes: int(
            e,
            "escalation.repeat_every_minutes",
            config.escalation.repeat_every_minutes,
        )?,
        max_level: int(e, "escalation.max_level", config.escalation.max_level)?,
        groups: labels(&config.groups),
    })
}

async fn apply_queue(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    event: &QueueEvent,
) -> Result<(), ApplyError> {
    let version = version_of(e);
    match event {
        QueueEvent::QueueCreated { name, config, at } => {
            let c = config_columns(e, config)?;
            sqlx::query(
                "INSERT INTO queues (queue_id, name, department_id, per_user_capacity, total_capacity, \
                   distribution, sla_minutes, escalation_raise_priority_by, escalation_repeat_minutes, \
                   escalation_max_level, groups, created_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13) \
                 ON CONFLICT (queue_id) DO UPDATE SET name = excluded.name, department_id = excluded.department_id, \
                   per_user_capacity = excluded.per_user_capacity, total_capacity = excluded.total_capacity, \
                   distribution = excluded.distribution, sla_minutes = excluded.sla_minutes, \
                   escalation_raise_priority_by = excluded.escalation_raise_priority_by, \
                   escalation_repeat_minutes = excluded.escalation_repeat_minutes, \
                   escalation_max_level = excluded.escalation_max_level, groups = excluded.groups, \
                   updated_at = excluded.updated_at, version = excluded.version",
            )
            .bind(e.stream_id)
            .bind(name)
            .bind(c.department_id)
            .bind(c.per_user)
            .bind(c.total)
            .bind(c.distribution)
            .bind(&c.sla)
            .bind(c.raise_by)
            .bind(c.repeat_minutes)
            .bind(c.max_level)
            .bind(&c.groups)
            .bind(*at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
        QueueEvent::QueueConfigured { config, at } => {
            let c = config_columns(e, config)?;
            sqlx::query(
                "UPDATE queues SET department_id = $2, per_user_capacity = $3, total_capacity = $4, \
                   distribution = $5, sla_minutes = $6, escalation_raise_priority_by = $7, \
                   escalation_repeat_minutes = $8, escalation_max_level = $9, groups = $10, \
                   updated_at = $11, version = $12 \
                 WHERE queue_id = $1",
            )
            .bind(e.stream_id)
            .bind(c.department_id)
            .bind(c.per_user)
            .bind(c.total)
            .bind(c.distribution)
            .bind(&c.sla)
            .bind(c.raise_by)
            .bind(c.repeat_minutes)
            .bind(c.max_level)
            .bind(&c.groups)
            .bind(*at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
        QueueEvent::QueueAccessGranted { grant, at } => {
            sqlx::query(
                "INSERT INTO queue_grants (grant_id, queue_id, username, role, skills, valid_from, valid_until, granted_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (grant_id) DO UPDATE SET queue_id = excluded.queue_id, username = excluded.username, \
                   role = excluded.role, skills = excluded.skills, valid_from = excluded.valid_from, \
                   valid_until = excluded.valid_until, granted_at = excluded.granted_at",
            )
            .bind(grant.grant_id)
            .bind(e.stream_id)
            .bind(grant.username.as_str())
            .bind(grant.role.as_str())
            .bind(labels(&grant.skills))
            .bind(grant.valid_from)
            .bind(grant.valid_until)
            .bind(*at)
            .execute(&mut *conn)
            .await?;
            bump_queue_version(conn, e.stream_id, version).await?;
        }
        QueueEvent::QueueAccessRevoked { grant_id, .. } => {
            sqlx::query("DELETE FROM queue_grants WHERE grant_id = $1 AND queue_id = $2")
                .bind(*grant_id)
                .bind(e.stream_id)
                .execute(&mut *conn)
                .await?;
            bump_queue_version(conn, e.stream_id, version).await?;
        }
    }
    Ok(())
}

async fn bump_queue_version(
    conn: &mut PgConnection,
    queue_id: Uuid,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE queues SET version = $2 WHERE queue_id = $1")
        .bind(queue_id)
        .bind(version)
        .execute(conn)
        .await?;
    Ok(())
}

/// A `task_history` row.
struct HistoryEntry<'a> {
    kind: &'static str,
    at: DateTime<Utc>,
    username: Option<&'a str>,
    detail: String,
}

/// A `case_routing` row (the case, entry number and actor come from elsewhere).
#[derive(Default)]
struct RoutingEntry<'a> {
    kind: &'static str,
    queue_id: Option<Uuid>,
    from_queue_id: Option<Uuid>,
    from_user: Option<&'a str>,
    to_user: Option<&'a str>,
    reason: Option<&'a str>,
    task_id: Option<Uuid>,
}

async fn add_routing(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    case_id: Uuid,
    at: DateTime<Utc>,
    r: RoutingEntry<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO case_routing (case_id, entry_no, at, kind, queue_id, from_queue_id, from_user, \
           to_user, reason, task_id, actor) \
         SELECT $1, coalesce(max(entry_no), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
         FROM case_routing WHERE case_id = $1",
    )
    .bind(case_id)
    .bind(at)
    .bind(r.kind)
    .bind(r.queue_id)
    .bind(r.from_queue_id)
    .bind(r.from_user)
    .bind(r.to_user)
    .bind(r.reason)
    .bind(r.task_id)
    .bind(&e.metadata.actor)
    .execute(conn)
    .await?;
    Ok(())
}

/// A task now held by someone (claimed, assigned or reassigned): $2 the holder, $3 when, $4
/// the stream version. The first hold stays as `first_claimed_at`, for the time to claim.
const HOLD_TASK_SQL: &str = "UPDATE tasks SET status = 'claimed', claimant = $2, claimed_at = $3, \
       first_claimed_at = coalesce(first_claimed_at, $3), updated_at = $3, version = $4 \
     WHERE task_id = $1 RETURNING case_id, queue_id";

/// Runs `$sql` (an `UPDATE tasks ... WHERE task_id = $1 RETURNING case_id, queue_id`) with the
/// task id bound first and the `$arg`s after it; the task's case and queue, if it exists.
macro_rules! update_task {
    ($conn:expr, $e:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        sqlx::query_as::<_, (Option<Uuid>, Uuid)>($sql)
            .bind($e.stream_id)
            $(.bind($arg))*
            .fetch_optional(&mut *$conn)
            .await?
    };
}

async fn apply_task(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    event: &TaskEvent,
) -> Result<(), ApplyError> {
    let version = version_of(e);
    // What the task's case history gets, if the task belongs to a case.
    let mut routing: Option<(DateTime<Utc>, RoutingEntry<'_>)> = None;
    let (entry, located) = match event {
        TaskEvent::TaskCreated {
            queue_id,
            title,
            priority: p,
            groups,
            case_id,
            payload,
            due_at,
            at,
        } => {
            sqlx::query(
                "INSERT INTO tasks (task_id, queue_id, title, priority, initial_priority, groups, case_id, \
                   status, claimant, escalation_level, payload, created_at, due_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $4, $5, $6, 'open', NULL, 0, $7, $8, $9, $8, $10) \
                 ON CONFLICT (task_id) DO NOTHING",
            )
            .bind(e.stream_id)
            .bind(*queue_id)
            .bind(title)
            .bind(priority(*p))
            .bind(labels(groups))
            .bind(*case_id)
            .bind(payload)
            .bind(*at)
            .bind(*due_at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
            (
                HistoryEntry {
                    kind: "created",
                    at: *at,
                    username: None,
                    detail: format!("created with priority {p}, due {}", stamp(*due_at)),
                },
                None,
            )
        }
        TaskEvent::TaskClaimed { by, next, at } => {
            let located = update_task!(conn, e, HOLD_TASK_SQL, by, *at, version);
            routing = Some((
                *at,
                RoutingEntry {
                    kind: "task_claimed",
                    to_user: Some(by),
                    reason: next.then_some("claim next"),
                    ..RoutingEntry::default()
                },
            ));
            (
                HistoryEntry {
                    kind: "claimed",
                    at: *at,
                    username: Some(by),
                    detail: if *next {
                        format!("claimed by {by} (claim next)")
                    } else {
                        format!("claimed by {by}")
                    },
                },
                located,
            )
        }
        TaskEvent::TaskAssigned {
            to,
            explanation,
            at,
            ..
        } => {
            let located = update_task!(conn, e, HOLD_TASK_SQL, to, *at, version);
            routing = Some((
                *at,
                RoutingEntry {
                    kind: "task_assigned",
                    to_user: Some(to),
                    reason: Some(explanation),
                    ..RoutingEntry::default()
                },
            ));
            (
                HistoryEntry {
                    kind: "assigned",
                    at: *at,
                    username: Some(to),
                    detail: format!("assigned to {to}: {explanation}"),
                },
                located,
            )
        }
        TaskEvent::TaskUnclaimed { by, at } => {
            let located = update_task!(
                conn,
                e,
                "UPDATE tasks SET status = 'open', claimant = NULL, claimed_at = NULL, updated_at = $2, \
                   version = $3 \
                 WHERE task_id = $1 RETURNING case_id, queue_id",
                *at,
                version
            );
            (
                HistoryEntry {
                    kind: "unclaimed",
                    at: *at,
                    username: Some(by),
                    detail: format!("released by {by}"),
                },
                located,
            )
        }
        TaskEvent::TaskReassigned {
            from,
            to,
            by,
            reason,
            at,
        } => {
            let located = update_task!(conn, e, HOLD_TASK_SQL, to, *at, version);
            routing = Some((
                *at,
                RoutingEntry {
                    kind: "task_reassigned",
                    from_user: from.as_deref(),
                    to_user: Some(to),
                    reason: Some(reason),
                    ..RoutingEntry::default()
                },
            ));
            (
                HistoryEntry {
                    kind: "reassigned",
                    at: *at,
                    username: Some(to),
                    detail: format!(
                        "reassigned from {} to {to} by {by}: {reason}",
                        from.as_deref().unwrap_or("nobody")
                    ),
                },
                located,
            )
        }
        TaskEvent::TaskCompleted {
            by,
            outcome,
            note,
            within_sla,
            at,
        } => {
            let located = update_task!(
                conn,
                e,
                "UPDATE tasks SET status = 'completed', completed_at = $2, outcome = $3, within_sla = $4, \
                   updated_at = $2, version = $5 \
                 WHERE task_id = $1 RETURNING case_id, queue_id",
                *at,
                outcome,
                *within_sla,
                version
            );
            routing = Some((
                *at,
                RoutingEntry {
                    kind: "task_completed",
                    from_user: Some(by),
                    reason: Some(outcome),
                    ..RoutingEntry::default()
                },
            ));
            let sla = if *within_sla {
                "within SLA"
            } else {
                "after its due time"
            };
            let detail = match note {
                Some(n) => format!("completed by {by} {sla}: {outcome} ({n})"),
                None => format!("completed by {by} {sla}: {outcome}"),
            };
            (
                HistoryEntry {
                    kind: "completed",
                    at: *at,
                    username: Some(by),
                    detail,
                },
                located,
            )
        }
        TaskEvent::TaskCancelled { by, reason, at } => {
            let located = update_task!(
                conn,
                e,
                "UPDATE tasks SET status = 'cancelled', cancelled_at = $2, updated_at = $2, version = $3 \
                 WHERE task_id = $1 RETURNING case_id, queue_id",
                *at,
                version
            );
            (
                HistoryEntry {
                    kind: "cancelled",
                    at: *at,
                    username: Some(by),
                    detail: format!("cancelled by {by}: {reason}"),
                },
                located,
            )
        }
        TaskEvent::TaskEscalated {
            level,
            priority_from,
            priority_to,
            at,
            ..
        } => {
            let located = update_task!(
                conn,
                e,
                "UPDATE tasks SET escalation_level = $2, priority = $3, updated_at = $4, version = $5 \
                 WHERE task_id = $1 RETURNING case_id, queue_id",
                int(e, "level", *level)?,
                priority(*priority_to),
                *at,
                version
            );
            (
                HistoryEntry {
                    kind: "escalated",
                    at: *at,
                    username: None,
                    detail: format!(
                        "escalated to level {level}: priority {priority_from} to {priority_to}"
                    ),
                },
                located,
            )
        }
        TaskEvent::TaskLinkedToCase { case_id, at } => {
            let located = update_task!(
                conn,
                e,
                "UPDATE tasks SET case_id = $2, updated_at = $3, version = $4 \
                 WHERE task_id = $1 RETURNING case_id, queue_id",
                *case_id,
                *at,
                version
            );
            (
                HistoryEntry {
                    kind: "linked_to_case",
                    at: *at,
                    username: None,
                    detail: format!("linked to case {case_id}"),
                },
                located,
            )
        }
    };
    sqlx::query(
        "INSERT INTO task_history (task_id, version, at, kind, actor, username, detail, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (task_id, version) DO NOTHING",
    )
    .bind(e.stream_id)
    .bind(version)
    .bind(entry.at)
    .bind(entry.kind)
    .bind(&e.metadata.actor)
    .bind(entry.username)
    .bind(&entry.detail)
    .bind(&e.payload)
    .execute(&mut *conn)
    .await?;
    if let (Some((at, mut r)), Some((Some(case_id), queue_id))) = (routing, located) {
        r.queue_id = Some(queue_id);
        r.task_id = Some(e.stream_id);
        add_routing(conn, e, case_id, at, r).await?;
    }
    Ok(())
}

async fn apply_case(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    event: &CaseEvent,
) -> Result<(), ApplyError> {
    let version = version_of(e);
    match event {
        CaseEvent::CaseOpened {
            number,
            subject,
            allegations,
            at,
        } => {
            sqlx::query(
                "INSERT INTO cases (case_id, number, subject, allegations, status, queue_id, assignee, \
                   opened_at, task_count, updated_at, version) \
                 VALUES ($1, $2, $3, $4, 'open', NULL, NULL, $5, 0, $5, $6) \
                 ON CONFLICT (case_id) DO NOTHING",
            )
            .bind(e.stream_id)
            .bind(number)
            .bind(subject)
            .bind(allegations)
            .bind(*at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
        CaseEvent::CaseRouted {
            from_queue,
            to_queue,
            reason,
            at,
        } => {
            sqlx::query(
                "UPDATE cases SET queue_id = $2, updated_at = $3, version = $4 WHERE case_id = $1",
            )
            .bind(e.stream_id)
            .bind(*to_queue)
            .bind(*at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
            add_routing(
                conn,
                e,
                e.stream_id,
                *at,
                RoutingEntry {
                    kind: "routed",
                    queue_id: Some(*to_queue),
                    from_queue_id: *from_queue,
                    reason: Some(reason),
                    ..RoutingEntry::default()
                },
            )
            .await?;
        }
        CaseEvent::CaseAssigned {
            from,
            to,
            reason,
            at,
        } => {
            let queue_id: Option<Option<Uuid>> = sqlx::query_scalar(
                "UPDATE cases SET assignee = $2, updated_at = $3, version = $4 WHERE case_id = $1 \
                 RETURNING queue_id",
            )
            .bind(e.stream_id)
            .bind(to)
            .bind(*at)
            .bind(version)
            .fetch_optional(&mut *conn)
            .await?;
            add_routing(
                conn,
                e,
                e.stream_id,
                *at,
                RoutingEntry {
                    kind: "assigned",
                    queue_id: queue_id.flatten(),
                    from_user: from.as_deref(),
                    to_user: Some(to),
                    reason: Some(reason),
                    ..RoutingEntry::default()
                },
            )
            .await?;
        }
        CaseEvent::CaseTaskLinked { at, .. } => {
            sqlx::query(
                "UPDATE cases SET task_count = task_count + 1, updated_at = $2, version = $3 \
                 WHERE case_id = $1",
            )
            .bind(e.stream_id)
            .bind(*at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
        CaseEvent::CaseClosed { resolution, at } => {
            sqlx::query(
                "UPDATE cases SET status = 'closed', closed_at = $2, resolution = $3, updated_at = $2, \
                   version = $4 WHERE case_id = $1",
            )
            .bind(e.stream_id)
            .bind(*at)
            .bind(resolution)
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Queries. All read `read_models.*` explicitly: they run on ordinary pooled connections.

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
