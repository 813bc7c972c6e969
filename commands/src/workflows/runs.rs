//! The one write path of a run: lock its `wf_runs` row, fold its stream, decide, append, and
//! bring its `wf_runnable` rows up to date, in the caller's transaction.
//!
//! The row lock makes commands on one run take turns (the executor reporting a result, a
//! person cancelling, a signal arriving), so none of them fails on a version conflict, and it
//! is what the executor's claim skips with `SKIP LOCKED`. Only the rows whose derivation
//! changed are written: a row that a finished task made due is left as it is until the run
//! itself moves that step on.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use domain::workflow::run::Runnable;
use domain::workflow::{RunError, RunEvent, WorkflowRun};
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

/// Runs as this process last committed them. Under the run's lock, the row's `version` says
/// whether the cached state is still the stream's (every write to a run stream goes through
/// [`write`], which sets it in the same transaction); when it is, the command skips reading
/// and folding the stream. Entries are added only after their transaction committed, so a
/// rolled-back write never leaves a state behind.
#[derive(Debug, Default)]
pub struct RunCache {
    runs: Mutex<HashMap<Uuid, (u64, WorkflowRun)>>,
}

/// Most runs cached; past it the cache starts over (runs in flight re-read their streams once).
const CACHE_LIMIT: usize = 10_000;

impl RunCache {
    fn get(&self, run_id: Uuid, version: u64) -> Option<WorkflowRun> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.get(&run_id)
            .filter(|(v, _)| *v == version)
            .map(|(_, run)| run.clone())
    }

    /// Records a committed state; a finished run is dropped, as nothing drives it any more.
    pub fn remember(&self, written: &RunWritten) {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if written.state.status.is_finished() {
            runs.remove(&written.run_id);
            return;
        }
        if runs.len() >= CACHE_LIMIT {
            runs.clear();
        }
        runs.insert(written.run_id, (written.version, written.state.clone()));
    }
}

/// Locks the run's row and reads the run under the lock (from `cache` when it holds the
/// locked version). `create`: make the row first (a start); otherwise a run without a row
/// does not exist.
pub async fn lock(
    store: &EventStore,
    conn: &mut PgConnection,
    run_id: Uuid,
    create: bool,
    cache: &RunCache,
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
    let Some(locked) = locked else {
        return Err(RunError::NotFound.into());
    };
    let locked = u64::try_from(locked).unwrap_or_default();
    if let Some(run) = cache.get(run_id, locked) {
        return Ok((locked, run));
    }
    let recorded = store.read_stream_in(conn, run_id).await?;
    fold(&recorded)
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

/// Writes the rows whose derivation changed and deletes the ones that are gone: one
/// statement each, whatever the number of rows.
async fn sync_rows(
    conn: &mut PgConnection,
    run_id: Uuid,
    before: &[Runnable],
    after: &[Runnable],
) -> Result<(), sqlx::Error> {
    let gone: Vec<&str> = before
        .iter()
        .filter(|b| !after.iter().any(|a| a.slot == b.slot))
        .map(|b| b.slot.as_str())
        .collect();
    if !gone.is_empty() {
        sqlx::query("DELETE FROM wf_runnable WHERE run_id = $1 AND slot = ANY($2)")
            .bind(run_id)
            .bind(&gone)
            .execute(&mut *conn)
            .await?;
    }
    let changed: Vec<&Runnable> = after.iter().filter(|a| !before.contains(a)).collect();
    if changed.is_empty() {
        return Ok(());
    }
    let mut due = Vec::with_capacity(changed.len());
    for row in &changed {
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
        due.push(due_at);
    }
    let slots: Vec<&str> = changed.iter().map(|r| r.slot.as_str()).collect();
    let running: Vec<bool> = changed.iter().map(|r| r.running).collect();
    let tasks: Vec<Option<Uuid>> = changed.iter().map(|r| r.task_id).collect();
    sqlx::query(
        "INSERT INTO wf_runnable (run_id, slot, due_at, running, task_id) \
         SELECT $1, * FROM unnest($2::text[], $3::timestamptz[], $4::boolean[], $5::uuid[]) \
         ON CONFLICT (run_id, slot) DO UPDATE \
         SET due_at = excluded.due_at, running = excluded.running, task_id = excluded.task_id",
    )
    .bind(run_id)
    .bind(&slots)
    .bind(&due)
    .bind(&running)
    .bind(&tasks)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
