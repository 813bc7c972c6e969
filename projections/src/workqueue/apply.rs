//! How each department, queue, task and case event changes the work-queue rows. Runs inside the
//! runtime's transaction with unqualified table names; every time written is the event's `at`.

use chrono::{DateTime, SecondsFormat, Utc};
use domain::workqueue::case::CaseEvent;
use domain::workqueue::department::DepartmentEvent;
use domain::workqueue::queue::{QueueConfig, QueueEvent};
use domain::workqueue::task::TaskEvent;
use domain::workqueue::{GroupLabel, Priority};
use eventstore::RecordedEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projection::ApplyError;

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

pub(super) async fn apply_department(
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

pub(super) async fn apply_queue(
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

pub(super) async fn apply_task(
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

pub(super) async fn apply_case(
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
