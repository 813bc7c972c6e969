//! Checkpoints and status: all SQL on `projection_checkpoints`, and the advisory-lock keys that
//! decide who may write a projection.
//!
//! Three advisory locks per projection, keyed `(namespace, hashtext(name))`:
//! - [`RUNNER_LOCK`], held for the life of the connection that applies the projection live; the
//!   one process holding it is the writer, and when that connection dies the lock goes with it;
//! - [`SWAP_LOCK`], taken shared by every live batch and exclusively by a rebuild's swap or a
//!   verification's comparison, which therefore see the live model standing still;
//! - [`REBUILD_LOCK`], held by a running rebuild, so that two rebuilds of one projection refuse.

use chrono::{DateTime, Utc};
use eventstore::Cursor;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

pub const RUNNER_LOCK: i32 = 0x0CA5_E001;
pub const SWAP_LOCK: i32 = 0x0CA5_E002;
pub const REBUILD_LOCK: i32 = 0x0CA5_E003;

fn cursor_of(tx: i64, pos: i64) -> Cursor {
    Cursor::new(u64::try_from(tx).unwrap_or(0), pos)
}

fn tx_of(cursor: Cursor) -> i64 {
    i64::try_from(cursor.transaction_id).unwrap_or(i64::MAX)
}

/// Takes the projection's swap lock exclusively for the rest of the transaction: live pages
/// (which take it shared) wait, so the live model and its checkpoint stand still.
pub async fn hold_still(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(SWAP_LOCK)
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

/// Creates the projection's checkpoint row at the start of the log if it has none.
pub async fn ensure(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO public.projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

const LOAD_SQL: &str =
    "SELECT transaction_id::text::bigint, position FROM public.projection_checkpoints WHERE name = $1";

/// The last event the projection applied; `START` when it has not started.
pub async fn load(conn: &mut PgConnection, name: &str) -> Result<Cursor, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(LOAD_SQL)
        .bind(name)
        .fetch_optional(conn)
        .await?;
    Ok(row.map_or(Cursor::START, |(tx, pos)| cursor_of(tx, pos)))
}

/// [`load`] on any pooled connection.
pub async fn load_from(pool: &PgPool, name: &str) -> Result<Cursor, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(LOAD_SQL)
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(row.map_or(Cursor::START, |(tx, pos)| cursor_of(tx, pos)))
}

/// Locks the checkpoint row for this transaction and tells whether it is still at `from`.
pub async fn lock_at(
    conn: &mut PgConnection,
    name: &str,
    from: Cursor,
) -> Result<bool, sqlx::Error> {
    let at: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, position FROM public.projection_checkpoints WHERE name = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?;
    Ok(at.map(|(tx, pos)| cursor_of(tx, pos)) == Some(from))
}

/// Moves the checkpoint from `from` to `to`, only if it still is at `from`; clears any recorded
/// failure. False means someone else moved it (a rebuild swapped in a new model): the caller
/// must roll back and reload.
pub async fn advance(
    conn: &mut PgConnection,
    name: &str,
    from: Cursor,
    to: Cursor,
) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query(
        "UPDATE public.projection_checkpoints \
         SET transaction_id = $4::bigint::text::xid8, position = $5, updated_at = now(), \
             last_error = NULL, last_error_position = NULL, failing_since = NULL \
         WHERE name = $1 AND transaction_id = $2::bigint::text::xid8 AND position = $3",
    )
    .bind(name)
    .bind(tx_of(from))
    .bind(from.position)
    .bind(tx_of(to))
    .bind(to.position)
    .execute(conn)
    .await?;
    Ok(moved.rows_affected() == 1)
}

/// Sets the checkpoint unconditionally (a rebuild's swap).
pub async fn set(conn: &mut PgConnection, name: &str, to: Cursor) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO public.projection_checkpoints AS c (name, transaction_id, position) \
         VALUES ($1, $2::bigint::text::xid8, $3) \
         ON CONFLICT (name) DO UPDATE SET transaction_id = excluded.transaction_id, position = excluded.position, \
             updated_at = now(), last_error = NULL, last_error_position = NULL, failing_since = NULL, \
             rebuild_started_at = NULL",
    )
    .bind(name)
    .bind(tx_of(to))
    .bind(to.position)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that the projection is stuck on the event at `position`.
pub async fn record_failure(
    conn: &mut PgConnection,
    name: &str,
    error: &str,
    position: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE public.projection_checkpoints \
         SET last_error = $2, last_error_position = $3, failing_since = coalesce(failing_since, now()) \
         WHERE name = $1",
    )
    .bind(name)
    .bind(error)
    .bind(position)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks (or unmarks) a rebuild in progress, for status.
pub async fn mark_rebuilding(
    conn: &mut PgConnection,
    name: &str,
    rebuilding: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO public.projection_checkpoints AS c (name, rebuild_started_at) \
         VALUES ($1, CASE WHEN $2 THEN now() END) \
         ON CONFLICT (name) DO UPDATE SET rebuild_started_at = CASE WHEN $2 THEN now() END",
    )
    .bind(name)
    .bind(rebuilding)
    .execute(conn)
    .await?;
    Ok(())
}

/// What operators see of a projection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    pub checkpoint: Cursor,
    pub head: Cursor,
    /// Events in the log after the checkpoint.
    pub lag_events: i64,
    /// Age of the oldest event not yet applied; 0 when caught up.
    pub lag_seconds: f64,
    pub state: State,
    pub last_error: Option<String>,
    pub last_error_position: Option<i64>,
    pub failing_since: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// No process holds the runner lock: no server is running it.
    Stopped,
    /// Running, more than one page behind.
    CatchingUp,
    /// Running and at (or within a page of) the head.
    Live,
    /// Stuck on an event; retrying with backoff.
    Failed,
    /// A rebuild of it is running.
    Rebuilding,
}

#[derive(sqlx::FromRow)]
struct StatusRow {
    checkpoint_tx: Option<i64>,
    checkpoint_pos: Option<i64>,
    updated_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    last_error_position: Option<i64>,
    failing_since: Option<DateTime<Utc>>,
    lag_events: i64,
    lag_seconds: Option<f64>,
    running: bool,
    rebuilding: bool,
}

/// Status of the named projection, read from the database so that any process can answer.
pub async fn status(
    pool: &PgPool,
    name: &str,
    head: Cursor,
    page_size: i64,
) -> Result<ProjectionStatus, sqlx::Error> {
    // Advisory locks taken with two int4 keys show in pg_locks as (classid, objid) oids.
    let row: StatusRow = sqlx::query_as(
        "WITH c AS (SELECT * FROM public.projection_checkpoints WHERE name = $1), \
              k AS (SELECT (hashtext($1)::bigint & 4294967295)::oid AS objid) \
         SELECT (SELECT transaction_id::text::bigint FROM c) AS checkpoint_tx, (SELECT position FROM c) AS checkpoint_pos, \
                (SELECT updated_at FROM c) AS updated_at, (SELECT last_error FROM c) AS last_error, \
                (SELECT last_error_position FROM c) AS last_error_position, (SELECT failing_since FROM c) AS failing_since, \
                (SELECT count(*) FROM events e WHERE (e.transaction_id, e.position) > \
                    (coalesce((SELECT transaction_id FROM c), '0'), coalesce((SELECT position FROM c), 0))) AS lag_events, \
                (SELECT extract(epoch FROM now() - min(e.recorded_at))::float8 FROM events e WHERE (e.transaction_id, e.position) > \
                    (coalesce((SELECT transaction_id FROM c), '0'), coalesce((SELECT position FROM c), 0))) AS lag_seconds, \
                EXISTS (SELECT 1 FROM pg_locks l, k WHERE l.locktype = 'advisory' AND l.granted AND l.database = \
                    (SELECT oid FROM pg_database WHERE datname = current_database()) \
                    AND l.classid = $2::bigint::oid AND l.objid = k.objid AND l.objsubid = 2) AS running, \
                EXISTS (SELECT 1 FROM pg_locks l, k WHERE l.locktype = 'advisory' AND l.granted AND l.database = \
                    (SELECT oid FROM pg_database WHERE datname = current_database()) \
                    AND l.classid = $3::bigint::oid AND l.objid = k.objid AND l.objsubid = 2) AS rebuilding",
    )
    .bind(name)
    .bind(i64::from(RUNNER_LOCK))
    .bind(i64::from(REBUILD_LOCK))
    .fetch_one(pool)
    .await?;
    let state = if row.rebuilding {
        State::Rebuilding
    } else if row.last_error.is_some() {
        State::Failed
    } else if !row.running {
        State::Stopped
    } else if row.lag_events > page_size {
        State::CatchingUp
    } else {
        State::Live
    };
    Ok(ProjectionStatus {
        name: name.to_owned(),
        checkpoint: row
            .checkpoint_tx
            .zip(row.checkpoint_pos)
            .map_or(Cursor::START, |(tx, pos)| cursor_of(tx, pos)),
        head,
        lag_events: row.lag_events,
        lag_seconds: row.lag_seconds.unwrap_or(0.0).max(0.0),
        state,
        last_error: row.last_error,
        last_error_position: row.last_error_position,
        failing_since: row.failing_since,
        updated_at: row.updated_at,
    })
}
