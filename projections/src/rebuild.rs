//! Rebuilding a read model from position zero without stopping queries, and verifying a live
//! model against a scratch rebuild.
//!
//! A rebuild replays the whole log into the projection's tables created afresh in a scratch
//! schema while queries keep reading the live ones. Then, in one transaction holding the
//! projection's swap lock exclusively (live pages wait for it), it applies the last few events,
//! drops the live tables, moves the new ones into `read_models` and sets the checkpoint. Queries
//! see the old model or the new one, never a mix. The live runner finds its checkpoint moved,
//! rolls back its page and carries on from the new checkpoint.

use std::time::Instant;

use eventstore::{Cursor, EventStore, RecordedEvent};
use serde::Serialize;
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};

use crate::checkpoint::{self, REBUILD_LOCK};
use crate::projection::Projection;
use crate::runtime::{apply_page, create_tables, set_search_path, RunError, LIVE_SCHEMA};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("a rebuild or verification of {name} is already running")]
    AlreadyRunning { name: String },
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Store(#[from] eventstore::StoreError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// Where a rebuild stands, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub events_done: u64,
    /// Events in the log when the rebuild started (more may arrive).
    pub events_total: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub projection: String,
    pub events: u64,
    pub checkpoint: Cursor,
    pub seconds: f64,
}

/// Differences between the live model and a rebuild, per table.
#[derive(Debug, Clone, Serialize)]
pub struct TableDiff {
    pub table: String,
    pub live_rows: i64,
    pub rebuilt_rows: i64,
    /// Rows of the live table that the rebuild does not have (up to 20), as JSON.
    pub only_live: Vec<Value>,
    /// Rows of the rebuild that the live table does not have (up to 20), as JSON.
    pub only_rebuilt: Vec<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub projection: String,
    /// The live checkpoint both models were compared at.
    pub checkpoint: Cursor,
    pub equal: bool,
    pub tables: Vec<TableDiff>,
}

fn wanted(projection: &dyn Projection, page: Vec<RecordedEvent>) -> Vec<RecordedEvent> {
    if projection.event_types().is_empty() {
        page
    } else {
        page.into_iter()
            .filter(|e| projection.wants(&e.event_type))
            .collect()
    }
}

/// A connection holding the projection's rebuild lock, and a fresh scratch schema.
async fn begin_scratch(
    store: &EventStore,
    projection: &dyn Projection,
    prefix: &str,
) -> Result<(PgConnection, String), RebuildError> {
    let name = projection.name();
    let mut conn = store.pool().acquire().await?.detach();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
        .bind(REBUILD_LOCK)
        .bind(name)
        .fetch_one(&mut conn)
        .await?;
    if !locked {
        return Err(RebuildError::AlreadyRunning {
            name: name.to_owned(),
        });
    }
    let schema = format!("{prefix}_{name}");
    conn.execute(
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}").as_str(),
    )
    .await?;
    create_tables(&mut conn, projection, &schema).await?;
    Ok((conn, schema))
}

/// Replays into `schema` from `cursor` up to `up_to` (or the readable end), a page per
/// transaction. Returns the cursor reached and the events read.
async fn replay(
    store: &EventStore,
    conn: &mut PgConnection,
    projection: &dyn Projection,
    schema: &str,
    (mut cursor, up_to): (Cursor, Option<Cursor>),
    page_size: i64,
    progress: &mut dyn FnMut(u64),
) -> Result<(Cursor, u64), RebuildError> {
    let mut done = 0u64;
    loop {
        let page = store.read_range(cursor, up_to, page_size).await?;
        let Some(last) = page.last().map(|e| e.cursor) else {
            return Ok((cursor, done));
        };
        done += page.len() as u64;
        apply_page(conn, projection, schema, None, &wanted(projection, page)).await?;
        cursor = last;
        progress(done);
    }
}

/// Applies events after `cursor` (up to `up_to`) inside the caller's transaction.
async fn catch_up_in_tx(
    store: &EventStore,
    tx: &mut PgConnection,
    projection: &dyn Projection,
    mut cursor: Cursor,
    up_to: Option<Cursor>,
    page_size: i64,
) -> Result<(Cursor, u64), RebuildError> {
    let mut done = 0;
    loop {
        let page = store.read_range(cursor, up_to, page_size).await?;
        let Some(last) = page.last().map(|e| e.cursor) else {
            return Ok((cursor, done));
        };
        done += page.len() as u64;
        let events = wanted(projection, page);
        if !events.is_empty() {
            projection
                .apply(tx, &events)
                .await
                .map_err(|error| RunError::Apply {
                    position: last.position,
                    error,
                })?;
        }
        cursor = last;
    }
}

async fn count_events(store: &EventStore) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(store.pool())
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Rebuilds `projection` from position zero and swaps the result in.
pub async fn rebuild(
    store: &EventStore,
    projection: &dyn Projection,
    page_size: i64,
    mut on_progress: impl FnMut(Progress),
) -> Result<RebuildReport, RebuildError> {
    let started = Instant::now();
    let name = projection.name();
    let (mut conn, scratch) = begin_scratch(store, projection, "rebuild").await?;
    checkpoint::mark_rebuilding(&mut conn, name, true).await?;
    let result = async {
        let total = count_events(store).await?;
        let mut report = |done| on_progress(Progress { events_done: done, events_total: total.max(done) });
        let (cursor, done) = replay(store, &mut conn, projection, &scratch, (Cursor::START, None), page_size, &mut report).await?;

        let mut tx = conn.begin().await?;
        checkpoint::hold_still(&mut tx, name).await?;
        set_search_path(&mut tx, &scratch).await?;
        let (cursor, more) = catch_up_in_tx(store, &mut tx, projection, cursor, None, page_size).await?;
        for table in projection.tables() {
            tx.execute(
                format!("DROP TABLE IF EXISTS {LIVE_SCHEMA}.{table} CASCADE; ALTER TABLE {scratch}.{table} SET SCHEMA {LIVE_SCHEMA}")
                    .as_str(),
            )
            .await?;
        }
        checkpoint::set(&mut tx, name, cursor).await?;
        tx.execute(format!("DROP SCHEMA {scratch} CASCADE").as_str()).await?;
        tx.commit().await?;
        Ok::<_, RebuildError>(RebuildReport {
            projection: name.to_owned(),
            events: done + more,
            checkpoint: cursor,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
    .await;
    if result.is_err() {
        let _ = conn
            .execute(format!("DROP SCHEMA IF EXISTS {scratch} CASCADE").as_str())
            .await;
        let _ = checkpoint::mark_rebuilding(&mut conn, name, false).await;
    }
    let _ = conn.close().await;
    result
}

/// Rebuilds `projection` into scratch tables up to the live checkpoint and compares them with
/// the live tables, row by row. Changes nothing.
pub async fn verify(
    store: &EventStore,
    projection: &dyn Projection,
    page_size: i64,
    mut on_progress: impl FnMut(Progress),
) -> Result<VerifyReport, RebuildError> {
    let name = projection.name();
    let (mut conn, scratch) = begin_scratch(store, projection, "verify").await?;
    let result = async {
        let live_then = checkpoint::load_from(store.pool(), name).await?;
        let total = count_events(store).await?;
        let mut report = |done| on_progress(Progress { events_done: done, events_total: total.max(done) });
        let (cursor, _) = replay(store, &mut conn, projection, &scratch, (Cursor::START, Some(live_then)), page_size, &mut report).await?;

        // Hold the live model still while the rebuild catches up to its exact checkpoint.
        let mut tx = conn.begin().await?;
        checkpoint::hold_still(&mut tx, name).await?;
        let live_now = checkpoint::load(&mut tx, name).await?;
        set_search_path(&mut tx, &scratch).await?;
        catch_up_in_tx(store, &mut tx, projection, cursor, Some(live_now), page_size).await?;
        let mut tables = Vec::new();
        for table in projection.tables() {
            let live = format!("{LIVE_SCHEMA}.{table}");
            let rebuilt = format!("{scratch}.{table}");
            let diff = |a: &str, b: &str| format!("SELECT row_to_json(d) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}) d LIMIT 20");
            let count = |t: &str| format!("SELECT count(*) FROM {t}");
            tables.push(TableDiff {
                table: (*table).to_owned(),
                live_rows: sqlx::query_scalar(&count(&live)).fetch_one(&mut *tx).await?,
                rebuilt_rows: sqlx::query_scalar(&count(&rebuilt)).fetch_one(&mut *tx).await?,
                only_live: sqlx::query_scalar(&diff(&live, &rebuilt)).fetch_all(&mut *tx).await?,
                only_rebuilt: sqlx::query_scalar(&diff(&rebuilt, &live)).fetch_all(&mut *tx).await?,
            });
        }
        tx.rollback().await?;
        let equal = tables.iter().all(|t| t.only_live.is_empty() && t.only_rebuilt.is_empty() && t.live_rows == t.rebuilt_rows);
        Ok::<_, RebuildError>(VerifyReport {
            projection: name.to_owned(),
            checkpoint: live_now,
            equal,
            tables,
        })
    }
    .await;
    let _ = conn
        .execute(format!("DROP SCHEMA IF EXISTS {scratch} CASCADE").as_str())
        .await;
    let _ = conn.close().await;
    result
}
