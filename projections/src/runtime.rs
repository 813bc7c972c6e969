//! Running projections live: one task per projection, in whichever process holds its runner lock.
//!
//! Each task takes a connection of its own and tries the projection's runner lock on it. The
//! winner catches up from its checkpoint page by page, then follows the log; every page is applied
//! in one transaction on that same connection, together with a compare-and-set of the checkpoint.
//! If the process or connection dies mid-page, PostgreSQL rolls the page back and releases the
//! lock in the same moment, and a standby in another process takes over from the checkpoint, so
//! no event is applied twice or skipped. Losers poll for the lock every `standby_retry`.

use std::sync::Arc;
use std::time::Duration;

use eventstore::{Cursor, EventStore, FollowOptions, RecordedEvent};
use futures_util::StreamExt;
use sqlx::{Connection, Executor, PgConnection};

use crate::checkpoint::{self, RUNNER_LOCK, SWAP_LOCK};
use crate::projection::{ApplyError, Projection};

/// The schema live read models are in.
pub const LIVE_SCHEMA: &str = "read_models";

/// How projections are run.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeConfig {
    /// Events per page, and so per transaction.
    pub page_size: i64,
    /// Longest wait for new events without a wake-up.
    pub poll_interval: Duration,
    /// How often a standby tries to take over.
    pub standby_retry: Duration,
    /// Longest pause between retries of a failing projection.
    pub max_backoff: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            page_size: 500,
            poll_interval: Duration::from_millis(250),
            standby_retry: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] eventstore::StoreError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("{error}")]
    Apply { error: ApplyError, position: i64 },
    #[error("the checkpoint moved under the runner (a rebuild swapped the model in)")]
    CheckpointMoved,
}

/// Applies `events` to `projection`'s tables in `schema`, in one transaction on `conn`; when
/// `checkpoint` is given, moves it from `.0` to `.1` in that transaction (refusing if it moved).
pub(crate) async fn apply_page(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    schema: &str,
    checkpoint: Option<(Cursor, Cursor)>,
    events: &[RecordedEvent],
) -> Result<(), RunError> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1, hashtext($2))")
        .bind(SWAP_LOCK)
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    if let Some((from, _)) = checkpoint {
        // Checked before applying, so that a runner whose model was swapped out by a rebuild
        // stops without touching the new tables; the row lock also fences any second writer.
        if !checkpoint::lock_at(&mut tx, projection.name(), from).await? {
            return Err(RunError::CheckpointMoved);
        }
    }
    set_search_path(&mut tx, schema).await?;
    if !events.is_empty() {
        projection.apply(&mut tx, events).await.map_err(|error| {
            let position = match &error {
                ApplyError::Event { position, .. } => *position,
                ApplyError::Sql(_) => events[0].cursor.position,
            };
            RunError::Apply { error, position }
        })?;
    }
    if let Some((from, to)) = checkpoint {
        if !checkpoint::advance(&mut tx, projection.name(), from, to).await? {
            return Err(RunError::CheckpointMoved);
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Points unqualified names at `schema` for the rest of the transaction.
pub(crate) async fn set_search_path(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<(), sqlx::Error> {
    debug_assert!(schema
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    sqlx::query(&format!("SET LOCAL search_path TO {schema}, public"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Advisory-lock key serialising read-model DDL across runners and processes.
const DDL_LOCK: i64 = 0x0CA5_E0DD;

/// Creates the projection's tables in `schema` if they are missing.
pub(crate) async fn create_tables(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    schema: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    // One projection's DDL at a time: runners starting together otherwise collide on the
    // catalogue rows the schema-wide GRANT rewrites ("tuple concurrently updated"), and the
    // loser's tables appear only after its retry backoff.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(DDL_LOCK)
        .execute(&mut *tx)
        .await?;
    set_search_path(&mut tx, schema).await?;
    tx.execute(projection.create_sql()).await?;
    // Tables made by a rebuild arrive from another schema, past the default privileges.
    sqlx::query(&format!(
        "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO caseledger_analyst"
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The projections of one server process.
#[derive(Clone)]
pub struct Projector {
    store: EventStore,
    projections: Vec<Arc<dyn Projection>>,
    config: RuntimeConfig,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.projections.iter().map(|p| p.name()).collect();
        f.debug_struct("Projector")
            .field("projections", &names)
            .field("config", &self.config)
            .finish()
    }
}

impl Projector {
    pub fn new(
        store: EventStore,
        projections: Vec<Arc<dyn Projection>>,
        config: RuntimeConfig,
    ) -> Self {
        Self {
            store,
            projections,
            config,
        }
    }

    pub fn projections(&self) -> &[Arc<dyn Projection>] {
        &self.projections
    }

    pub fn find(&self, name: &str) -> Option<Arc<dyn Projection>> {
        self.projections.iter().find(|p| p.name() == name).cloned()
    }

    /// Creates every projection's tables if missing, one after another. A server does this
    /// before it serves, so that queries never meet a read model whose tables its runner has
    /// not yet made (they are empty until the runner catches up, and `min_cursor` waits).
    pub async fn create_tables(&self) -> Result<(), sqlx::Error> {
        let mut conn = self.store.pool().acquire().await?;
        for projection in &self.projections {
            create_tables(&mut conn, projection.as_ref(), LIVE_SCHEMA).await?;
        }
        Ok(())
    }

    pub fn config(&self) -> RuntimeConfig {
        self.config
    }

    /// Starts one task per projection. Aborting a task is a safe way to stop it: its page rolls
    /// back and its lock is released with its connection.
    pub fn spawn(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.projections
            .iter()
            .map(|p| tokio::spawn(run(self.store.clone(), p.clone(), self.config)))
            .collect()
    }
}

/// Runs one projection forever: lead when the lock is free, stand by when it is not, back off
/// when it fails. Only this projection is affected by its failures.
pub async fn run(store: EventStore, projection: Arc<dyn Projection>, config: RuntimeConfig) {
    let name = projection.name();
    let mut backoff = Duration::from_secs(1);
    loop {
        match lead(&store, projection.as_ref(), config, &mut backoff).await {
            Ok(()) => tokio::time::sleep(config.standby_retry).await,
            Err(RunError::CheckpointMoved) => {
                tracing::info!(projection = name, "model swapped by a rebuild; reloading")
            }
            Err(error) => {
                tracing::error!(projection = name, %error, retry_in = ?backoff, "projection failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
    }
}

/// Leads while this process holds the runner lock. Returns `Ok` when another process leads.
async fn lead(
    store: &EventStore,
    projection: &dyn Projection,
    config: RuntimeConfig,
    backoff: &mut Duration,
) -> Result<(), RunError> {
    let name = projection.name();
    // A connection of its own, never returned to the pool: the lock and every page live and die with it.
    let mut conn = store.pool().acquire().await?.detach();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
        .bind(RUNNER_LOCK)
        .bind(name)
        .fetch_one(&mut conn)
        .await?;
    if !locked {
        return Ok(());
    }
    tracing::info!(projection = name, "leading");
    create_tables(&mut conn, projection, LIVE_SCHEMA).await?;
    checkpoint::ensure(&mut conn, name).await?;
    let mut cursor = checkpoint::load(&mut conn, name).await?;
    let options = FollowOptions {
        page_size: config.page_size,
        poll_interval: config.poll_interval,
    };
    let pages = store.follow_pages(cursor, options);
    let mut pages = std::pin::pin!(pages);
    while let Some(page) = pages.next().await {
        let page = page?;
        let Some(last) = page.last().map(|e| e.cursor) else {
            continue;
        };
        let wanted: Vec<RecordedEvent>;
        let events: &[RecordedEvent] = if projection.event_types().is_empty() {
            &page
        } else {
            wanted = page
                .iter()
                .filter(|e| projection.wants(&e.event_type))
                .cloned()
                .collect();
            &wanted
        };
        match apply_page(
            &mut conn,
            projection,
            LIVE_SCHEMA,
            Some((cursor, last)),
            events,
        )
        .await
        {
            Ok(()) => cursor = last,
            Err(RunError::Apply { error, position }) => {
                // Apply what comes before the bad event, one by one, so that the checkpoint
                // stops exactly on it and the report names it.
                let (_stopped_at, error, position) =
                    apply_singly(&mut conn, projection, cursor, events, error, position).await?;
                let message = error.to_string();
                checkpoint::record_failure(&mut conn, name, &message, position).await?;
                return Err(RunError::Apply { error, position });
            }
            Err(other) => return Err(other),
        }
        *backoff = Duration::from_secs(1);
        tracing::trace!(projection = name, %cursor, "page applied");
    }
    Ok(())
}

/// After a page failed: applies its events one per transaction up to the first that fails.
/// Returns the checkpoint reached and the failure.
async fn apply_singly(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    mut cursor: Cursor,
    events: &[RecordedEvent],
    page_error: ApplyError,
    page_position: i64,
) -> Result<(Cursor, ApplyError, i64), RunError> {
    if events.len() <= 1 {
        return Ok((cursor, page_error, page_position));
    }
    for event in events {
        match apply_page(
            conn,
            projection,
            LIVE_SCHEMA,
            Some((cursor, event.cursor)),
            std::slice::from_ref(event),
        )
        .await
        {
            Ok(()) => cursor = event.cursor,
            Err(RunError::Apply { error, position }) => return Ok((cursor, error, position)),
            Err(other) => return Err(other),
        }
    }
    // Each event alone went through (the page failed for a reason that passed); report the page's.
    Ok((cursor, page_error, page_position))
}
