//! `caseledger-tools bench projections`: how fast a read model rebuilds, how far live read models
//! trail the log, and how much memory a rebuild takes.
//!
//! - Rebuild rate: every read model is rebuilt from `events` events of mixed types. The ceiling,
//!   measured on the same events in the same run, is a hand-written loop that pages through the
//!   log in read order, fetching only the columns the catalogue needs, and upserts one row per
//!   stream and a checkpoint per page, in one transaction per page.
//! - Live lag: a writer appends at a steady rate while the projector runs; for each event, the
//!   time from its append returning to its projection's checkpoint passing it.
//! - Memory: the process's resident set size before and during the rebuild.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use eventstore::{Cursor, EventStore, ExpectedVersion, Metadata, NewEvent};
use projections::{checkpoint, rebuild, runtime, Projection, RuntimeConfig};

use super::{fresh_database, median, ms, percentile};
use api::db::Database;

/// Settings of one benchmark invocation.
#[derive(Debug, Clone)]
pub struct ProjectionsBench {
    pub events: u64,
    pub runs: usize,
    pub lag_seconds: u64,
    pub rate: u64,
    pub page_size: i64,
}

/// Resident set size of this process, in MiB (Linux; 0 elsewhere).
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Loads `n` events straight into the table, in chunks: 10 events per stream over four stream
/// types and four event types, each chunk its own transaction. (Appending them one command at a
/// time would only measure the append path again.)
async fn load_events(pool: &PgPool, n: u64) -> anyhow::Result<()> {
    const CHUNK: u64 = 100_000;
    let mut from = 0;
    while from < n {
        let to = (from + CHUNK).min(n);
        sqlx::query(
            "INSERT INTO events (stream_id, stream_type, version, event_type, schema_version, payload, actor, correlation_id) \
             SELECT md5('bench' || (g / 10)::text)::uuid, \
                    (ARRAY['renewal','task','physician','notification'])[(g / 10) % 4 + 1], \
                    g % 10 + 1, \
                    (ARRAY['Opened','Updated','Assigned','Closed'])[g % 4 + 1], 1, \
                    jsonb_build_object('n', g, 'note', 'benchmark event with a realistic small payload'), \
                    'bench', md5('c' || g::text)::uuid \
             FROM generate_series($1::bigint, $2::bigint - 1) g",
        )
        .bind(i64::try_from(from)?)
        .bind(i64::try_from(to)?)
        .execute(pool)
        .await
        .context("loading benchmark events")?;
        from = to;
    }
    sqlx::query("ANALYZE events").execute(pool).await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Slim {
    tx: i64,
    position: i64,
    stream_id: Uuid,
    stream_type: String,
    version: i64,
    recorded_at: DateTime<Utc>,
}

/// One stream's row of the ceiling's catalogue.
struct CatalogueRow {
    stream_type: String,
    version: i64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    count: i64,
}

/// The ceiling: the least code that builds the same catalogue from the same events.
async fn ceiling_rebuild(pool: &PgPool, page_size: i64) -> anyhow::Result<u64> {
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS bench_ceiling_catalogue; DROP TABLE IF EXISTS bench_ceiling_checkpoint; \
         CREATE TABLE bench_ceiling_catalogue (LIKE read_models.stream_catalogue INCLUDING ALL); \
         CREATE TABLE bench_ceiling_checkpoint (id int PRIMARY KEY, tx bigint, position bigint); \
         INSERT INTO bench_ceiling_checkpoint VALUES (1, 0, 0);",
    )
    .execute(pool)
    .await?;
    let mut conn = pool.acquire().await?;
    let (mut tx_at, mut pos_at, mut done) = (0i64, 0i64, 0u64);
    loop {
        let page: Vec<Slim> = sqlx::query_as(
            "SELECT transaction_id::text::bigint AS tx, position, stream_id, stream_type, version, recorded_at FROM events \
             WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2) \
               AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY transaction_id, position LIMIT $3",
        )
        .bind(tx_at)
        .bind(pos_at)
        .bind(page_size)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = page.last() else { break };
        (tx_at, pos_at) = (last.tx, last.position);
        done += page.len() as u64;
        let mut rows: HashMap<Uuid, CatalogueRow> = HashMap::new();
        for e in &page {
            rows.entry(e.stream_id)
                .and_modify(|r| {
                    r.version = r.version.max(e.version);
                    r.first = r.first.min(e.recorded_at);
                    r.last = r.last.max(e.recorded_at);
                    r.count += 1;
                })
                .or_insert_with(|| CatalogueRow {
                    stream_type: e.stream_type.clone(),
                    version: e.version,
                    first: e.recorded_at,
                    last: e.recorded_at,
                    count: 1,
                });
        }
        let mut cols = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for (id, r) in rows {
            cols.0.push(id);
            cols.1.push(r.stream_type);
            cols.2.push(r.version);
            cols.3.push(r.first);
            cols.4.push(r.last);
            cols.5.push(r.count);
        }
        let mut tx = conn.begin().await?;
        sqlx::query(
            "INSERT INTO bench_ceiling_catalogue AS c SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], \
             $4::timestamptz[], $5::timestamptz[], $6::bigint[]) ON CONFLICT (stream_id) DO UPDATE SET \
             version = greatest(c.version, excluded.version), first_event_at = least(c.first_event_at, excluded.first_event_at), \
             last_event_at = greatest(c.last_event_at, excluded.last_event_at), event_count = c.event_count + excluded.event_count",
        )
        .bind(&cols.0)
        .bind(&cols.1)
        .bind(&cols.2)
        .bind(&cols.3)
        .bind(&cols.4)
        .bind(&cols.5)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE bench_ceiling_checkpoint SET tx = $1, position = $2 WHERE id = 1")
            .bind(tx_at)
            .bind(pos_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(done)
}

pub async fn run(db: &Database, opts: &ProjectionsBench) -> anyhow::Result<()> {
    let pool = fresh_database(db, "caseledger_bench_projections").await?;
    let store = EventStore::new(pool.clone());
    let all = projections::all();
    println!(
        "caseledger bench projections: {} events, {} run(s), page size {}, live lag {} s at {} events/s\n",
        opts.events, opts.runs, opts.page_size, opts.lag_seconds, opts.rate
    );
    let t = Instant::now();
    load_events(&pool, opts.events).await?;
    println!(
        "loaded {} events in {:.1} s\n",
        opts.events,
        t.elapsed().as_secs_f64()
    );

    let rss_before = rss_mib();
    let mut rss_peak = rss_before;
    let (mut ours, mut ceiling, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..opts.runs {
        let t = Instant::now();
        let mut events = 0;
        for p in &all {
            let report = rebuild::rebuild(&store, p.as_ref(), opts.page_size, |_| {
                rss_peak = rss_peak.max(rss_mib());
            })
            .await?;
            events += report.events;
        }
        let rate = events as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let done = ceiling_rebuild(&pool, opts.page_size).await?;
        let ceiling_rate = done as f64 / t.elapsed().as_secs_f64();
        ours.push(rate);
        ceiling.push(ceiling_rate);
        ratios.push(rate / ceiling_rate.max(1e-9));
    }
    let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
    println!(
        "| rebuild of {} events | events/s (median) | per run |",
        opts.events
    );
    println!("| --- | ---: | --- |");
    let fmt = |xs: &[f64]| {
        xs.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "| caseledger projections rebuild ({}) | {:.0} | {} |",
        names.join(", "),
        median(ours.clone()),
        fmt(&ours)
    );
    println!(
        "| ceiling: hand-written page-and-upsert loop | {:.0} | {} |",
        median(ceiling.clone()),
        fmt(&ceiling)
    );
    let pct: Vec<String> = ratios
        .iter()
        .map(|r| format!("{:.0} %", r * 100.0))
        .collect();
    println!(
        "| ratio | {:.0} % | {} |",
        median(ratios.clone()) * 100.0,
        pct.join(", ")
    );
    println!("\nresident memory: {rss_before:.1} MiB before the rebuilds, {rss_peak:.1} MiB at most during them\n");

    live_lag(&store, opts).await?;
    pool.close().await;
    super::drop_database(db, "caseledger_bench_projections").await
}

/// Appends at `rate` events/s for `lag_seconds` while the projectors run; reports the lag from
/// each append's return to the stream catalogue's checkpoint passing its cursor.
async fn live_lag(store: &EventStore, opts: &ProjectionsBench) -> anyhow::Result<()> {
    let wakeups = store.spawn_wakeups();
    let config = RuntimeConfig::default();
    let catalogue: Arc<dyn Projection> = Arc::new(projections::catalogue::StreamCatalogue);
    let name = catalogue.name();
    let runner = tokio::spawn(runtime::run(store.clone(), catalogue, config));
    // Let it reach the head first.
    let head = store.head().await?;
    while checkpoint::load_from(store.pool(), name).await? < head {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let done = Arc::new(AtomicBool::new(false));
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<(Cursor, Instant)>();
    let writer = {
        let (store, done) = (store.clone(), done.clone());
        let total = opts.rate * opts.lag_seconds;
        let period = Duration::from_secs_f64(1.0 / opts.rate as f64);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let streams: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
            for i in 0..total {
                tick.tick().await;
                let id = streams[(i % 100) as usize];
                let a = store
                    .append(
                        id,
                        "renewal",
                        ExpectedVersion::Any,
                        &[NewEvent::new("Updated", json!({ "i": i }))],
                        &Metadata::by("bench"),
                    )
                    .await?;
                if let Some(c) = a.cursor {
                    let _ = sent_tx.send((c, Instant::now()));
                }
            }
            done.store(true, Ordering::SeqCst);
            anyhow::Ok(())
        })
    };

    // Poll the checkpoint every millisecond; an event is visible once the checkpoint passes it.
    let mut pending: std::collections::VecDeque<(Cursor, Instant)> = Default::default();
    let mut lags = Vec::new();
    let mut conn = store.pool().acquire().await?;
    loop {
        while let Ok(sent) = sent_rx.try_recv() {
            pending.push_back(sent);
        }
        let at = checkpoint::load(&mut conn, name).await?;
        let now = Instant::now();
        while pending.front().is_some_and(|(c, _)| *c <= at) {
            if let Some((_, sent)) = pending.pop_front() {
                lags.push(now.saturating_duration_since(sent));
            }
        }
        if done.load(Ordering::SeqCst) && pending.is_empty() && sent_rx.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    writer.await.context("writer panicked")??;
    runner.abort();
    wakeups.abort();
    lags.sort_unstable();
    println!(
        "| live lag, {} events at {} events/s | p50 ms | p99 ms | max ms |",
        lags.len(),
        opts.rate
    );
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| append returned → stream_catalogue checkpoint passed it | {:.1} | {:.1} | {:.1} |",
        ms(percentile(&lags, 0.5)),
        ms(percentile(&lags, 0.99)),
        ms(lags.last().copied().unwrap_or_default())
    );
    Ok(())
}
