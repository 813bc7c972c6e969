//! The one write path of a run: lock its `wf_runs` row, fold its stream, decide, append, and
//! bring its `wf_runnable` rows up to date, in the caller's transaction.
//!
//! The row lock makes commands on one run take turns (the executor reporting a result, a
//! person cancelling, a signal arriving), so none of them fails on a version conflict, and it
//! is what the executor's claim skips with `SKIP LOCKED`. Only the rows whose derivation
//! changed are written: a row that a finished task made due is left as it is until the run
//! itself moves that step on.

use chrono::{DateTime, Utc};
use domain::workflow::run::Runnable;
use domain::workflow::{RunCommand, RunError, RunEvent, WorkflowRun};
use domain::Aggregate;
use eventstore::codec;
use eventstore::cursor::Cursor;
use eventstore::event::Metadata;
use eventstore::store::{EventStore, ExpectedVersion};
use sqlx::PgConnection;
use uuid::Uuid;

use super::WorkflowError;

/// What a run command wrote.
#[derive(Debug, Clone)]
pub struct RunWritten {
    pub run_id: Uuid,
    /// The run stream's version after the command.
    pub version: u64,
    pub events: Vec<RunEvent>,
    pub cursor: Option<Cursor>,
    /// The run after the command.
    pub state: WorkflowRun,
    /// A repeated start (same run id, key and input) that changed nothing.
    pub replayed: bool,
}

/// A run's version and state from its stream.
pub async fn load(store: &EventStore, run_id: Uuid) -> Result<(u64, WorkflowRun), WorkflowError> {
    load_until(store, run_id, u64::MAX).await
}

/// A run as it was after `version`.
pub async fn load_until(
    store: &EventStore,
    run_id: Uuid,
    version: u64,
) -> Result<(u64, WorkflowRun), WorkflowError> {
    let recorded = store.read_stream_range(run_id, 0, version).await?;
    fold(&recorded)
}

fn fold(recorded: &[eventstore::RecordedEvent]) -> Result<(u64, WorkflowRun), WorkflowError> {
    let mut state = WorkflowRun::default();
    let mut version = 0;
    for event in recorded {
        if event.stream_type != WorkflowRun::STREAM_TYPE {
            return Err(RunError::NotFound.into());
        }
        state = state.evolve(&codec::decode::<WorkflowRun>(event)?);
        version = event.version;
    }
    Ok((version, state))
}

/// Locks the run's row and reads the run under the lock. `create`: make the row first (a
/// start); otherwise a run without a row does not exist.
pub async fn lock(
    store: &EventStore,
    conn: &mut PgConnection,
    run_id: Uuid,
    create: bool,
) -> Result<(u64, WorkflowRun), WorkflowError> {
    if create {
        sqlx::query(
            "INSERT INTO wf_runs (run_id, status, version) VALUES ($1, 'running', 0) \
             ON CONFLICT (run_id) DO NOTHING",
        )
        .bind(run_id)
        .execute(&mut *conn)
        .await?;
    }
    let locked: Option<i64> =
        sqlx::query_scalar("SELECT version FROM wf_runs WHERE run_id = $1 FOR UPDATE")
            .bind(run_id)
            .fetch_optional(&mut *conn)
            .await?;
    if locked.is_none() {
        return Err(RunError::NotFound.into());
    }
    let recorded = store.read_stream_in(conn, run_id).await?;
    fold(&recorded)
}

/// Locks the run, decides `command` at `now`, and writes the events and rows on `conn` (the
/// caller commits).
pub async fn decide_locked(
    store: &EventStore,
    conn: &mut PgConnection,
    run_id: Uuid,
    command: &RunCommand,
    metadata: &Metadata,
    now: DateTime<Utc>,
    create: bool,
) -> Result<RunWritten, WorkflowError> {
    let (version, state) = lock(store, conn, run_id, create).await?;
    if !create && !state.exists() {
        return Err(RunError::NotFound.into());
    }
    let events = state.decide(command, now)?;
    write(store, conn, run_id, version, state, events, metadata).await
}

/// Appends `events` decided on `state` at `version`, and updates the run's rows.
pub async fn write(
    store: &EventStore,
    conn: &mut PgConnection,
    run_id: Uuid,
    version: u64,
    state: WorkflowRun,
    events: Vec<RunEvent>,
    metadata: &Metadata,
) -> Result<RunWritten, WorkflowError> {
    if events.is_empty() {
        return Ok(RunWritten {
            run_id,
            version,
            events,
            cursor: None,
            state,
            replayed: false,
        });
    }
    let encoded = events
        .iter()
        .map(codec::encode::<WorkflowRun>)
        .collect::<Result<Vec<_>, _>>()?;
    let expected = if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version)
    };
    let appended = store
        .append_in(
            &mut *conn,
            run_id,
            WorkflowRun::STREAM_TYPE,
            expected,
            &encoded,
            metadata,
        )
        .await?;
    let before = state.runnable();
    let after_state = events.iter().fold(state, |s, e| s.evolve(e));
    sync_rows(conn, run_id, &before, &after_state.runnable()).await?;
    sqlx::query("UPDATE wf_runs SET status = $2, version = $3 WHERE run_id = $1")
        .bind(run_id)
        .bind(after_state.status.as_str())
        .bind(i64::try_from(appended.last_version).unwrap_or(i64::MAX))
        .execute(&mut *conn)
        .await?;
    Ok(RunWritten {
        run_id,
        version: appended.last_version,
        events,
        cursor: appended.cursor,
        state: after_state,
        replayed: false,
    })
}

/// Writes the rows whose derivation changed and deletes the ones that are gone.
async fn sync_rows(
    conn: &mut PgConnection,
    run_id: Uuid,
    before: &[Runnable],
    after: &[Runnable],
) -> Result<(), sqlx::Error> {
    for gone in before
        .iter()
        .filter(|b| !after.iter().any(|a| a.slot == b.slot))
    {
        sqlx::query("DELETE FROM wf_runnable WHERE run_id = $1 AND slot = $2")
            .bind(run_id)
            .bind(&gone.slot)
            .execute(&mut *conn)
            .await?;
    }
    for row in after.iter().filter(|a| !before.contains(a)) {
        let mut due_at = row.due_at;
        if let Some(task_id) = row.task_id {
            // The task may have finished before this wait was written (its command found no
            // row to wake). Its row lock orders the two: either it finished before this read,
            // or it waits for this transaction and then finds the row.
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM wq_tasks WHERE task_id = $1 FOR SHARE")
                    .bind(task_id)
                    .fetch_optional(&mut *conn)
                    .await?;
            if matches!(status.as_deref(), Some("completed" | "cancelled")) {
                due_at = Some(DateTime::<Utc>::UNIX_EPOCH);
            }
        }
        sqlx::query(
            "INSERT INTO wf_runnable (run_id, slot, due_at, running, task_id) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (run_id, slot) DO UPDATE SET due_at = $3, running = $4, task_id = $5",
        )
        .bind(run_id)
        .bind(&row.slot)
        .bind(due_at)
        .bind(row.running)
        .bind(row.task_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
