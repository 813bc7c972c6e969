//! The workflows read model: each workflow key with its latest registered version, each run
//! with its status and progress, and the duration of every successful step attempt (for
//! progress estimates and analytics), with the queries behind the workflow screens.
//!
//! Every time in these tables is the `at` the domain recorded in the event (the command's
//! clock), not the database's `recorded_at`, so durations measure what the engine decided on.
//!
//! A run's row is keyed by its stream id, which is the run id. Its progress counts come from
//! `workflow_run_steps`, one row per step of the run that follows the step through its events
//! (as the aggregate does) and keeps when its current attempt started; a successful attempt's
//! duration is measured from there. The command side's `public.wf_*` tables are the executor's
//! write-side look-ups, not read models; nothing here reads them.

use chrono::{DateTime, Utc};
use domain::workflow::definition::{DefinitionEvent, WorkflowDefinition};
use domain::workflow::run::{RunEvent, WorkflowRun};
use domain::Aggregate;
use eventstore::RecordedEvent;
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::projection::{decode, ApplyError, Projection};

#[derive(Debug, Clone, Copy, Default)]
pub struct WorkflowsModel;

/// The projection's name: its checkpoint, and what `min_cursor` waits for.
pub const NAME: &str = "workflows";

const CREATE_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS workflow_definitions (
    key            text PRIMARY KEY,
    definition_id  uuid NOT NULL,
    name           text NOT NULL,
    description    text NOT NULL,
    latest_version integer NOT NULL,
    versions       integer NOT NULL,
    active         boolean NOT NULL,
    steps          integer NOT NULL,
    registered_at  timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS workflow_definitions_by_stream ON workflow_definitions (definition_id);
COMMENT ON TABLE workflow_definitions IS 'One row per workflow key: its latest registered version, how many versions it has, and whether new runs may start.';
COMMENT ON COLUMN workflow_definitions.key IS 'The workflow key (lowercase letters, digits, - and _).';
COMMENT ON COLUMN workflow_definitions.definition_id IS 'The key''s workflow stream id, which holds every version.';
COMMENT ON COLUMN workflow_definitions.name IS 'Name of the latest version.';
COMMENT ON COLUMN workflow_definitions.description IS 'Description of the latest version (empty if none).';
COMMENT ON COLUMN workflow_definitions.latest_version IS 'Number of the latest version (1, 2, ...): what a run started without a version runs.';
COMMENT ON COLUMN workflow_definitions.versions IS 'Versions registered.';
COMMENT ON COLUMN workflow_definitions.active IS 'False while deactivated: no new runs start (runs under way go on).';
COMMENT ON COLUMN workflow_definitions.steps IS 'Steps of the latest version, fallback-only steps included.';
COMMENT ON COLUMN workflow_definitions.registered_at IS 'When the first version was registered.';
COMMENT ON COLUMN workflow_definitions.updated_at IS 'When the latest definition event (registration, deactivation, activation) happened.';

CREATE TABLE IF NOT EXISTS workflow_runs (
    run_id         uuid PRIMARY KEY,
    key            text NOT NULL,
    version        integer NOT NULL,
    name           text NOT NULL,
    status         text NOT NULL,
    business_key   text,
    started_by     text NOT NULL,
    started_at     timestamptz NOT NULL,
    ended_at       timestamptz,
    error          text,
    cancelled_by   text,
    steps_total    integer NOT NULL,
    steps_finished integer NOT NULL,
    steps_running  integer NOT NULL
);
-- GET runs: newest first, page by page, unfiltered or filtered by key, status or business key.
CREATE INDEX IF NOT EXISTS workflow_runs_by_start ON workflow_runs (started_at DESC, run_id);
CREATE INDEX IF NOT EXISTS workflow_runs_by_key ON workflow_runs (key, started_at DESC, run_id);
CREATE INDEX IF NOT EXISTS workflow_runs_by_status ON workflow_runs (status, started_at DESC, run_id);
CREATE INDEX IF NOT EXISTS workflow_runs_by_business_key ON workflow_runs (business_key) WHERE business_key IS NOT NULL;
COMMENT ON TABLE workflow_runs IS 'One row per workflow run: which version it runs, where it stands, and how far it has come.';
COMMENT ON COLUMN workflow_runs.run_id IS 'The run id (its workflow_run stream id).';
COMMENT ON COLUMN workflow_runs.key IS 'The workflow key (workflow_definitions.key).';
COMMENT ON COLUMN workflow_runs.version IS 'The version of the definition the run executes, fixed at its start.';
COMMENT ON COLUMN workflow_runs.name IS 'The name of that version.';
COMMENT ON COLUMN workflow_runs.status IS 'running, completed, failed or cancelled.';
COMMENT ON COLUMN workflow_runs.business_key IS 'The caller''s key for what the run is about (an order number, a case number), if given.';
COMMENT ON COLUMN workflow_runs.started_by IS 'Who started the run.';
COMMENT ON COLUMN workflow_runs.started_at IS 'When the run started.';
COMMENT ON COLUMN workflow_runs.ended_at IS 'When it completed, failed or was cancelled; NULL while running.';
COMMENT ON COLUMN workflow_runs.error IS 'failed: which step failed and why (step "x" failed: ...); cancelled: the reason given. NULL otherwise.';
COMMENT ON COLUMN workflow_runs.cancelled_by IS 'cancelled: who cancelled the run.';
COMMENT ON COLUMN workflow_runs.steps_total IS 'Steps in the run''s version of the definition, fallback-only steps included (those stay unfinished unless a failure needs them).';
COMMENT ON COLUMN workflow_runs.steps_finished IS 'Steps succeeded, skipped, failed over to their fallback, or failed.';
COMMENT ON COLUMN workflow_runs.steps_running IS 'Steps with an attempt running or waiting (a timer, a signal, a task); 0 once the run has ended.';

CREATE TABLE IF NOT EXISTS workflow_run_steps (
    run_id             uuid NOT NULL,
    step               text NOT NULL,
    position           integer NOT NULL,
    kind               text NOT NULL,
    status             text NOT NULL,
    attempt            integer NOT NULL,
    attempt_started_at timestamptz,
    ended_at           timestamptz,
    PRIMARY KEY (run_id, step)
);
COMMENT ON TABLE workflow_run_steps IS 'One row per step of each run: where the step stands and when its current attempt started (workflow_runs counts these; durations are measured from them).';
COMMENT ON COLUMN workflow_run_steps.run_id IS 'The run (workflow_runs.run_id).';
COMMENT ON COLUMN workflow_run_steps.step IS 'The step id.';
COMMENT ON COLUMN workflow_run_steps.position IS 'The step''s place in the definition, 1, 2, ...';
COMMENT ON COLUMN workflow_run_steps.kind IS 'What the step does: human_task, http, wait, signal.';
COMMENT ON COLUMN workflow_run_steps.status IS 'pending, ready, running, waiting, succeeded, skipped, failed_over, needs_person or failed; as the run left it once the run has ended.';
COMMENT ON COLUMN workflow_run_steps.attempt IS 'The current (or last) attempt number; 0 before the step was first ready.';
COMMENT ON COLUMN workflow_run_steps.attempt_started_at IS 'When that attempt started; NULL before the first attempt started.';
COMMENT ON COLUMN workflow_run_steps.ended_at IS 'When the step succeeded, was skipped, failed over or failed.';

CREATE TABLE IF NOT EXISTS workflow_step_durations (
    run_id      uuid NOT NULL,
    key         text NOT NULL,
    version     integer NOT NULL,
    step        text NOT NULL,
    attempt     integer NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz NOT NULL,
    duration_ms bigint NOT NULL,
    PRIMARY KEY (run_id, step, attempt)
);
CREATE INDEX IF NOT EXISTS workflow_step_durations_by_step ON workflow_step_durations (key, version, step);
COMMENT ON TABLE workflow_step_durations IS 'One row per successful step attempt: how long it took from its start to its success (waits included), for progress estimates and analytics.';
COMMENT ON COLUMN workflow_step_durations.run_id IS 'The run (workflow_runs.run_id).';
COMMENT ON COLUMN workflow_step_durations.key IS 'The run''s workflow key.';
COMMENT ON COLUMN workflow_step_durations.version IS 'The run''s version of the definition.';
COMMENT ON COLUMN workflow_step_durations.step IS 'The step id.';
COMMENT ON COLUMN workflow_step_durations.attempt IS 'The attempt that succeeded (1 = the first; failed attempts before it have no row).';
COMMENT ON COLUMN workflow_step_durations.started_at IS 'When the attempt started.';
COMMENT ON COLUMN workflow_step_durations.ended_at IS 'When it succeeded.';
COMMENT ON COLUMN workflow_step_durations.duration_ms IS 'ended_at - started_at in whole milliseconds (rounded down).';
"#;

const EVENT_TYPES: &[&str] = &[
    "WorkflowVersionRegistered",
    "WorkflowDeactivated",
    "WorkflowActivated",
    "RunStarted",
    "StepReady",
    "StepSkipped",
    "AttemptStarted",
    "AttemptWaiting",
    "AttemptSucceeded",
    "AttemptFailed",
    "StepFailedOver",
    "IncidentOpened",
    "StepFailed",
    "RunCompleted",
    "RunFailed",
    "RunCancelled",
];

const TABLES: &[&str] = &[
    "workflow_definitions",
    "workflow_runs",
    "workflow_run_steps",
    "workflow_step_durations",
];

impl Projection for WorkflowsModel {
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
                    WorkflowDefinition::STREAM_TYPE => {
                        apply_definition(conn, e, &decode::<WorkflowDefinition>(e)?).await?
                    }
                    WorkflowRun::STREAM_TYPE => {
                        apply_run(conn, e, &decode::<WorkflowRun>(e)?).await?
                    }
                    _ => {}
                }
            }
            Ok(())
        })
    }
}

fn int(n: impl TryInto<i32>) -> i32 {
    n.try_into().unwrap_or(i32::MAX)
}

async fn apply_definition(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    event: &DefinitionEvent,
) -> Result<(), ApplyError> {
    match event {
        DefinitionEvent::WorkflowVersionRegistered {
            version,
            definition,
            at,
            ..
        } => {
            // The first version makes the key active; later ones keep what operators chose.
            sqlx::query(
                "INSERT INTO workflow_definitions (key, definition_id, name, description, latest_version, \
                   versions, active, steps, registered_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 1, true, $6, $7, $7) \
                 ON CONFLICT (key) DO UPDATE SET name = excluded.name, description = excluded.description, \
                   latest_version = excluded.latest_version, versions = workflow_definitions.versions + 1, \
                   steps = excluded.steps, updated_at = excluded.updated_at",
            )
            .bind(&definition.key)
            .bind(e.stream_id)
            .bind(&definition.name)
            .bind(&definition.description)
            .bind(int(*version))
            .bind(int(definition.steps.len()))
            .bind(*at)
            .execute(&mut *conn)
            .await?;
        }
        DefinitionEvent::WorkflowDeactivated { at, .. }
        | DefinitionEvent::WorkflowActivated { at, .. } => {
            sqlx::query(
                "UPDATE workflow_definitions SET active = $2, updated_at = $3 WHERE definition_id = $1",
            )
            .bind(e.stream_id)
            .bind(matches!(event, DefinitionEvent::WorkflowActivated { .. }))
            .bind(*at)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Where a step goes with an event about it, and whether the event ends it (sets `ended_at`).
fn step_change(event: &RunEvent) -> Option<(&str, &'static str, Option<DateTime<Utc>>)> {
    use RunEvent as E;
    Some(match event {
        E::StepReady { step, .. } => (step, "ready", None),
        E::StepSkipped { step, at, .. } => (step, "skipped", Some(*at)),
        E::AttemptStarted { step, .. } => (step, "running", None),
        E::AttemptWaiting { step, .. } => (step, "waiting", None),
        E::AttemptSucceeded { step, at, .. } => (step, "succeeded", Some(*at)),
        // As the aggregate has it: pending until a retry makes it ready or a policy decides.
        E::AttemptFailed { step, .. } => (step, "pending", None),
        E::StepFailedOver { step, at, .. } => (step, "failed_over", Some(*at)),
        E::IncidentOpened { step, .. } => (step, "needs_person", None),
        E::StepFailed { step, at, .. } => (step, "failed", Some(*at)),
        _ => return None,
    })
}

async fn apply_run(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    event: &RunEvent,
) -> Result<(), ApplyError> {
    use RunEvent as E;
    let run_id = e.stream_id;
    match event {
        E::RunStarted {
            key,
            version,
            name,
            steps,
            business_key,
            by,
            at,
            ..
        } => {
            sqlx::query(
                "INSERT INTO workflow_runs (run_id, key, version, name, status, business_key, started_by, \
                   started_at, ended_at, error, cancelled_by, steps_total, steps_finished, steps_running) \
                 VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, NULL, NULL, NULL, $8, 0, 0)",
            )
            .bind(run_id)
            .bind(key)
            .bind(int(*version))
            .bind(name)
            .bind(business_key.as_deref())
            .bind(by)
            .bind(*at)
            .bind(int(steps.len()))
            .execute(&mut *conn)
            .await?;
            let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
            let kinds: Vec<&str> = steps.iter().map(|s| s.kind.as_str()).collect();
            sqlx::query(
                "INSERT INTO workflow_run_steps (run_id, step, position, kind, status, attempt, \
                   attempt_started_at, ended_at) \
                 SELECT $1, s.step, s.position::integer, s.kind, 'pending', 0, NULL, NULL \
                 FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS s(step, kind, position) \
                 ON CONFLICT (run_id, step) DO NOTHING",
            )
            .bind(run_id)
            .bind(&ids)
            .bind(&kinds)
            .execute(&mut *conn)
            .await?;
        }
        E::RunCompleted { at, .. } => end_run(conn, run_id, "completed", *at, None, None).await?,
        E::RunFailed { step, error, at } => {
            // Worded as the aggregate words it.
            let error = format!("step {step:?} failed: {error}");
            end_run(conn, run_id, "failed", *at, Some(&error), None).await?;
        }
        E::RunCancelled { by, reason, at } => {
            end_run(conn, run_id, "cancelled", *at, Some(reason), Some(by)).await?;
        }
        event => {
            let Some((step, status, ended_at)) = step_change(event) else {
                return Ok(());
            };
            if let E::AttemptSucceeded { attempt, at, .. } = event {
                // Measured from the start of the same attempt, if it was seen starting.
                sqlx::query(
                    "INSERT INTO workflow_step_durations (run_id, key, version, step, attempt, started_at, \
                       ended_at, duration_ms) \
                     SELECT s.run_id, r.key, r.version, s.step, s.attempt, s.attempt_started_at, $4, \
                       floor(extract(epoch FROM $4 - s.attempt_started_at) * 1000)::bigint \
                     FROM workflow_run_steps s JOIN workflow_runs r ON r.run_id = s.run_id \
                     WHERE s.run_id = $1 AND s.step = $2 AND s.attempt = $3 \
                       AND s.attempt_started_at IS NOT NULL \
                     ON CONFLICT (run_id, step, attempt) DO NOTHING",
                )
                .bind(run_id)
                .bind(step)
                .bind(int(*attempt))
                .bind(*at)
                .execute(&mut *conn)
                .await?;
            }
            let (attempt, attempt_started_at) = match event {
                E::StepReady { attempt, .. } => (Some(int(*attempt)), None),
                E::AttemptStarted { attempt, at, .. } => (Some(int(*attempt)), Some(*at)),
                _ => (None, None),
            };
            sqlx::query(
                "UPDATE workflow_run_steps SET status = $3, attempt = coalesce($4, attempt), \
                   attempt_started_at = coalesce($5, attempt_started_at), \
                   ended_at = coalesce($6, ended_at) \
                 WHERE run_id = $1 AND step = $2",
            )
            .bind(run_id)
            .bind(step)
            .bind(status)
            .bind(attempt)
            .bind(attempt_started_at)
            .bind(ended_at)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE workflow_runs r SET \
                   steps_finished = (SELECT count(*) FROM workflow_run_steps s WHERE s.run_id = r.run_id \
                     AND s.status IN ('succeeded', 'skipped', 'failed_over', 'failed')), \
                   steps_running = CASE WHEN r.status = 'running' THEN \
                     (SELECT count(*) FROM workflow_run_steps s WHERE s.run_id = r.run_id \
                       AND s.status IN ('running', 'waiting')) ELSE 0 END \
                 WHERE r.run_id = $1",
            )
            .bind(run_id)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

async fn end_run(
    conn: &mut PgConnection,
    run_id: Uuid,
    status: &str,
    at: DateTime<Utc>,
    error: Option<&str>,
    cancelled_by: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE workflow_runs SET status = $2, ended_at = $3, error = $4, cancelled_by = $5, \
           steps_running = 0 WHERE run_id = $1",
    )
    .bind(run_id)
    .bind(status)
    .bind(at)
    .bind(error)
    .bind(cancelled_by)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Queries (on `read_models.*`).

/// A workflow key with its latest version.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DefinitionRow {
    pub key: String,
    /// The key's workflow stream id.
    pub definition_id: Uuid,
    /// Name and description of the latest version.
    pub name: String,
    pub description: String,
    pub latest_version: i32,
    /// Versions registered.
    pub versions: i32,
    /// False while deactivated: no new runs start.
    pub active: bool,
    /// Steps of the latest version.
    pub steps: i32,
    /// When the first version was registered.
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Every workflow key (or only the active, or only the inactive ones), by key.
pub async fn list_definitions(
    pool: &PgPool,
    active: Option<bool>,
) -> Result<Vec<DefinitionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT key, definition_id, name, description, latest_version, versions, active, steps, \
           registered_at, updated_at \
         FROM read_models.workflow_definitions WHERE ($1::boolean IS NULL OR active = $1) ORDER BY key",
    )
    .bind(active)
    .fetch_all(pool)
    .await
}

/// A run as listed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct RunRow {
    pub run_id: Uuid,
    pub key: String,
    /// The version of the definition it runs.
    pub version: i32,
    /// That version's name.
    pub name: String,
    /// running, completed, failed or cancelled.
    pub status: String,
    pub business_key: Option<String>,
    pub started_by: String,
    pub started_at: DateTime<Utc>,
    /// When it completed, failed or was cancelled.
    pub ended_at: Option<DateTime<Utc>>,
    /// failed: which step failed and why; cancelled: the reason given.
    pub error: Option<String>,
    /// cancelled: who cancelled it.
    pub cancelled_by: Option<String>,
    /// Steps in its version of the definition (fallback-only steps included).
    pub steps_total: i32,
    /// Steps succeeded, skipped, failed over or failed.
    pub steps_finished: i32,
    /// Steps with an attempt running or waiting; 0 once the run has ended.
    pub steps_running: i32,
}

/// What a run list is narrowed to, and its page; every filter left out matches everything.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub key: Option<String>,
    /// running, completed, failed or cancelled.
    pub status: Option<String>,
    pub business_key: Option<String>,
    /// Started at or after this time.
    pub started_from: Option<DateTime<Utc>>,
    /// Started before this time.
    pub started_to: Option<DateTime<Utc>>,
    /// 1 to 500 (clamped).
    pub limit: i64,
    /// 0 or more (clamped).
    pub offset: i64,
}

/// One page of runs, the total matching, and the page's limit and offset as applied.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunPage {
    pub items: Vec<RunRow>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// Runs matching `filter`, newest first (then by run id); one page, and the total.
pub async fn list_runs(pool: &PgPool, filter: &RunFilter) -> Result<RunPage, sqlx::Error> {
    const MATCHES: &str = "($1::text IS NULL OR key = $1) AND ($2::text IS NULL OR status = $2) \
         AND ($3::text IS NULL OR business_key = $3) \
         AND ($4::timestamptz IS NULL OR started_at >= $4) AND ($5::timestamptz IS NULL OR started_at < $5)";
    let limit = filter.limit.clamp(1, 500);
    let offset = filter.offset.max(0);
    let items = sqlx::query_as(&format!(
        "SELECT run_id, key, version, name, status, business_key, started_by, started_at, ended_at, \
           error, cancelled_by, steps_total, steps_finished, steps_running \
         FROM read_models.workflow_runs WHERE {MATCHES} \
         ORDER BY started_at DESC, run_id LIMIT $6 OFFSET $7"
    ))
    .bind(filter.key.as_deref())
    .bind(filter.status.as_deref())
    .bind(filter.business_key.as_deref())
    .bind(filter.started_from)
    .bind(filter.started_to)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM read_models.workflow_runs WHERE {MATCHES}"
    ))
    .bind(filter.key.as_deref())
    .bind(filter.status.as_deref())
    .bind(filter.business_key.as_deref())
    .bind(filter.started_from)
    .bind(filter.started_to)
    .fetch_one(pool)
    .await?;
    Ok(RunPage {
        items,
        total,
        limit,
        offset,
    })
}

/// How long a step's successful attempts took.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct StepStats {
    pub step: String,
    /// Successful attempts measured.
    pub samples: i64,
    /// Median duration in milliseconds (`percentile_cont(0.5)`: interpolated between the two
    /// middle values when the count is even).
    pub p50_ms: f64,
    /// Mean duration in milliseconds.
    pub mean_ms: f64,
}

/// Duration statistics per step of workflow `key`, over the runs of `version` (or of every
/// version), by step id. Steps never measured are left out.
pub async fn step_duration_stats(
    pool: &PgPool,
    key: &str,
    version: Option<u32>,
) -> Result<Vec<StepStats>, sqlx::Error> {
    sqlx::query_as(
        "SELECT step, count(*) AS samples, \
           percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms)::float8 AS p50_ms, \
           avg(duration_ms)::float8 AS mean_ms \
         FROM read_models.workflow_step_durations \
         WHERE key = $1 AND ($2::bigint IS NULL OR version = $2) \
         GROUP BY step ORDER BY step",
    )
    .bind(key)
    .bind(version.map(i64::from))
    .fetch_all(pool)
    .await
}
