//! The projection engine's guarantees: exactly-once application across crashes and takeovers,
//! rebuilds under load, isolated failures, and what analysts may touch.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventstore::{Cursor, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent};
use futures_util::future::BoxFuture;
use projections::catalogue::StreamCatalogue;
use projections::checkpoint::{self, State};
use projections::rebuild::{self, RebuildError};
use projections::runtime::{self, RuntimeConfig};
use projections::{ApplyError, Projection};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use uuid::Uuid;

fn config() -> RuntimeConfig {
    RuntimeConfig {
        page_size: 50,
        poll_interval: Duration::from_millis(50),
        standby_retry: Duration::from_millis(100),
        max_backoff: Duration::from_millis(200),
    }
}

/// Appends `n` events spread over `streams` streams; returns the last cursor.
async fn append_spread(store: &EventStore, streams: &[Uuid], n: usize) -> anyhow::Result<Cursor> {
    let mut last = Cursor::START;
    for i in 0..n {
        let id = streams[i % streams.len()];
        let a = store
            .append(
                id,
                "test",
                ExpectedVersion::Any,
                &[NewEvent::new("Happened", json!({ "i": i }))],
                &Metadata::by("test"),
            )
            .await?;
        last = a.cursor.unwrap_or(last);
    }
    Ok(last)
}

async fn wait_for_checkpoint(pool: &PgPool, name: &str, target: Cursor) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let at = checkpoint::load_from(pool, name).await?;
        if at >= target {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{name} stuck at {at}, wanted {target}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the stream catalogue until it has applied `head`, then stops it.
async fn catalogue_caught_up(store: &EventStore, head: Cursor) -> anyhow::Result<()> {
    let runner = tokio::spawn(runtime::run(
        store.clone(),
        Arc::new(StreamCatalogue),
        config(),
    ));
    let reached = wait_for_checkpoint(store.pool(), "stream_catalogue", head).await;
    runner.abort();
    reached
}

/// The model equals a fresh rebuild, and no stream counted an event twice or missed one.
async fn assert_exactly_once(store: &EventStore) -> anyhow::Result<()> {
    let report = rebuild::verify(store, &StreamCatalogue, 100, |_| {}).await?;
    assert!(
        report.equal,
        "live model differs from a rebuild: {report:?}"
    );
    let off: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM read_models.stream_catalogue WHERE event_count <> version",
    )
    .fetch_one(store.pool())
    .await?;
    assert_eq!(off, 0, "some stream applied an event twice or missed one");
    let total: Option<i64> =
        sqlx::query_scalar("SELECT sum(event_count)::bigint FROM read_models.stream_catalogue")
            .fetch_one(store.pool())
            .await?;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(store.pool())
        .await?;
    assert_eq!(total.unwrap_or(0), events);
    Ok(())
}

/// The stream catalogue, but it stops dead in the middle of its `block_on`-th page, after
/// writing that page's rows and before the runtime can write the checkpoint.
struct Stalling {
    block_on: usize,
    pages: AtomicUsize,
    stalled: Arc<Notify>,
}

impl Projection for Stalling {
    fn name(&self) -> &'static str {
        StreamCatalogue.name()
    }
    fn event_types(&self) -> &'static [&'static str] {
        StreamCatalogue.event_types()
    }
    fn tables(&self) -> &'static [&'static str] {
        StreamCatalogue.tables()
    }
    fn create_sql(&self) -> &'static str {
        StreamCatalogue.create_sql()
    }
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            StreamCatalogue.apply(conn, events).await?;
            if self.pages.fetch_add(1, Ordering::SeqCst) + 1 == self.block_on {
                self.stalled.notify_one();
                std::future::pending::<()>().await;
            }
            Ok(())
        })
    }
}

fn stalling(block_on: usize) -> (Arc<Stalling>, Arc<Notify>) {
    let stalled = Arc::new(Notify::new());
    let p = Arc::new(Stalling {
        block_on,
        pages: AtomicUsize::new(0),
        stalled: stalled.clone(),
    });
    (p, stalled)
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_runner_killed_mid_page_resumes_without_applying_an_event_twice(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = EventStore::new(pool.clone());
    let streams: Vec<Uuid> = (0..7).map(|_| Uuid::new_v4()).collect();
    let head = append_spread(&store, &streams, 300).await?;

    let (projection, stalled) = stalling(3);
    let doomed = tokio::spawn(runtime::run(store.clone(), projection, config()));
    tokio::time::timeout(Duration::from_secs(30), stalled.notified()).await?;
    doomed.abort();
    let _ = doomed.await;

    let restarted = tokio::spawn(runtime::run(
        store.clone(),
        Arc::new(StreamCatalogue),
        config(),
    ));
    wait_for_checkpoint(&pool, "stream_catalogue", head).await?;
    assert_exactly_once(&store).await?;
    restarted.abort();
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_standby_takes_over_when_the_leading_process_dies(pool: PgPool) -> anyhow::Result<()> {
    let store = EventStore::new(pool.clone());
    let streams: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    append_spread(&store, &streams, 200).await?;

    let (projection, stalled) = stalling(2);
    let leader = tokio::spawn(runtime::run(store.clone(), projection, config()));
    tokio::time::timeout(Duration::from_secs(30), stalled.notified()).await?;
    // The standby starts while the leader holds the lock mid-page.
    let standby = tokio::spawn(runtime::run(
        store.clone(),
        Arc::new(StreamCatalogue),
        config(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = checkpoint::load_from(&pool, "stream_catalogue").await?;
    leader.abort();
    let _ = leader.await;

    // Writers go on meanwhile; the standby must pick up all of it.
    let head = append_spread(&store, &streams, 100).await?;
    wait_for_checkpoint(&pool, "stream_catalogue", head).await?;
    assert!(before < head);
    assert_exactly_once(&store).await?;
    standby.abort();
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_rebuild_under_live_appends_swaps_in_a_model_that_misses_nothing(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = EventStore::new(pool.clone());
    let streams: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
    append_spread(&store, &streams, 500).await?;
    let live = tokio::spawn(runtime::run(
        store.clone(),
        Arc::new(StreamCatalogue),
        config(),
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, streams, stop) = (store.clone(), streams.clone(), stop.clone());
        tokio::spawn(async move {
            let mut last = Cursor::START;
            while !stop.load(Ordering::SeqCst) {
                last = append_spread(&store, &streams, 10).await?;
            }
            anyhow::Ok(last)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = rebuild::rebuild(&store, &StreamCatalogue, 100, |_| {}).await?;
    assert!(report.events >= 500);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let head = writer.await??;

    wait_for_checkpoint(&pool, "stream_catalogue", head).await?;
    assert_exactly_once(&store).await?;
    let rebuilding: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT rebuild_started_at FROM projection_checkpoints WHERE name = 'stream_catalogue'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(rebuilding, None, "the swap clears the rebuild mark");
    live.abort();
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_second_rebuild_of_the_same_projection_is_refused(pool: PgPool) -> anyhow::Result<()> {
    let store = EventStore::new(pool.clone());
    let mut holder = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1, hashtext('stream_catalogue'))")
        .bind(checkpoint::REBUILD_LOCK)
        .execute(&mut *holder)
        .await?;
    let err = rebuild::rebuild(&store, &StreamCatalogue, 100, |_| {}).await;
    assert!(
        matches!(err, Err(RebuildError::AlreadyRunning { .. })),
        "{err:?}"
    );
    let live_tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rebuild_%'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(live_tables, 0, "a refused rebuild leaves nothing behind");
    Ok(())
}

/// Counts events per type into its own table, and fails on `Poison` while `broken` is set.
struct Fragile {
    broken: Arc<AtomicBool>,
}

impl Projection for Fragile {
    fn name(&self) -> &'static str {
        "fragile"
    }
    fn event_types(&self) -> &'static [&'static str] {
        &["Happened", "Poison"]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["fragile_counts"]
    }
    fn create_sql(&self) -> &'static str {
        "CREATE TABLE IF NOT EXISTS fragile_counts (event_type text PRIMARY KEY, n bigint NOT NULL)"
    }
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            for e in events {
                if e.event_type == "Poison" && self.broken.load(Ordering::SeqCst) {
                    return Err(ApplyError::Event {
                        position: e.cursor.position,
                        event_type: e.event_type.clone(),
                        reason: "poisoned".into(),
                    });
                }
                sqlx::query("INSERT INTO fragile_counts VALUES ($1, 1) ON CONFLICT (event_type) DO UPDATE SET n = fragile_counts.n + 1")
                    .bind(&e.event_type)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        })
    }
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_failing_projection_stops_alone_and_resumes_where_it_stopped_once_fixed(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = EventStore::new(pool.clone());
    let streams = [Uuid::new_v4(), Uuid::new_v4()];
    append_spread(&store, &streams, 20).await?;
    let poison = store
        .append(
            Uuid::new_v4(),
            "test",
            ExpectedVersion::NoStream,
            &[NewEvent::new("Poison", json!({}))],
            &Metadata::by("test"),
        )
        .await?;
    let poison_cursor = poison.cursor.ok_or_else(|| anyhow::anyhow!("no cursor"))?;
    let head = append_spread(&store, &streams, 20).await?;

    let broken = Arc::new(AtomicBool::new(true));
    let fragile = tokio::spawn(runtime::run(
        store.clone(),
        Arc::new(Fragile {
            broken: broken.clone(),
        }),
        config(),
    ));
    let catalogue = tokio::spawn(runtime::run(
        store.clone(),
        Arc::new(StreamCatalogue),
        config(),
    ));

    wait_for_checkpoint(&pool, "stream_catalogue", head).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let s = checkpoint::status(&pool, "fragile", head, 50).await?;
        if s.state == State::Failed {
            break s;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "fragile never reported failing: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.last_error_position, Some(poison_cursor.position));
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("poisoned")),
        "{status:?}"
    );
    assert!(
        status.checkpoint < poison_cursor,
        "the checkpoint stops before the bad event"
    );
    let before: i64 = sqlx::query_scalar(
        "SELECT n FROM read_models.fragile_counts WHERE event_type = 'Happened'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(before, 20, "everything before the bad event was applied");

    broken.store(false, Ordering::SeqCst);
    wait_for_checkpoint(&pool, "fragile", head).await?;
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT event_type, n FROM read_models.fragile_counts ORDER BY event_type")
            .fetch_all(&pool)
            .await?;
    assert_eq!(
        counts,
        [("Happened".to_owned(), 40), ("Poison".to_owned(), 1)]
    );
    let status = checkpoint::status(&pool, "fragile", head, 50).await?;
    assert_eq!((status.state, status.last_error), (State::Live, None));
    fragile.abort();
    catalogue.abort();
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn analysts_read_the_read_models_and_nothing_else(pool: PgPool) -> anyhow::Result<()> {
    let store = EventStore::new(pool.clone());
    let head = append_spread(&store, &[Uuid::new_v4()], 3).await?;
    catalogue_caught_up(&store, head).await?;

    let mut conn = pool.acquire().await?;
    sqlx::query("SET ROLE caseledger_analyst")
        .execute(&mut *conn)
        .await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM read_models.stream_catalogue")
        .fetch_one(&mut *conn)
        .await?;
    assert_eq!(rows, 1);
    for forbidden in [
        "SELECT count(*) FROM events",
        "INSERT INTO events (stream_id, stream_type, version, event_type, schema_version, payload, actor, correlation_id) \
         VALUES (gen_random_uuid(), 't', 1, 'X', 1, '{}', 'a', gen_random_uuid())",
        "DELETE FROM read_models.stream_catalogue",
        "SELECT count(*) FROM projection_checkpoints",
    ] {
        let err = sqlx::query(forbidden).execute(&mut *conn).await.expect_err(forbidden);
        let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{forbidden}: {err}");
    }
    sqlx::query("RESET ROLE").execute(&mut *conn).await?;
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn every_read_model_table_and_column_is_documented(pool: PgPool) -> anyhow::Result<()> {
    let store = EventStore::new(pool.clone());
    let head = append_spread(&store, &[Uuid::new_v4()], 1).await?;
    catalogue_caught_up(&store, head).await?;
    let undocumented: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname || coalesce('.' || a.attname, '') FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'read_models' \
         LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         WHERE c.relkind = 'r' AND (obj_description(c.oid, 'pg_class') IS NULL \
               OR (a.attname IS NOT NULL AND col_description(c.oid, a.attnum) IS NULL))",
    )
    .fetch_all(&pool)
    .await?;
    assert!(undocumented.is_empty(), "undocumented: {undocumented:?}");
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/read-models.md"
    ))?;
    for table in projections::all().iter().flat_map(|p| p.tables()) {
        assert!(
            docs.contains(&format!("`read_models.{table}`")),
            "docs/read-models.md does not list {table}"
        );
    }
    Ok(())
}
