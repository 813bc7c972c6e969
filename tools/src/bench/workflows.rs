//! `caseledger-tools bench workflows`: the workflow executor driving 5-step diamonds of `http`
//! steps against a local receiver, against the least a durable executor can do.
//!
//! The database `caseledger_bench_workflows` is recreated; a receiver answering `{}` at once is
//! started on a local port; one definition is registered: `a`, then `b`, `c`, `d` (each
//! depending on `a`), then `e` (depending on all three). In each of `runs` runs, interleaved so
//! that both share the machine's conditions:
//!
//! - **baselines**: `pgbench` for `seconds`, each transaction one `INSERT` of a step-completion
//!   row (run id, step, time) into a plain table: one durable row per step completion in its
//!   own transaction. Once with one client (the "bare loop") and once with `starters`
//!   clients (the engine's concurrency, so PostgreSQL's group commit helps it as it helps the
//!   engine). Their transactions per second are steps/s.
//! - **engine**: `starters` closed loops for `seconds`, each starting a run through
//!   [`Workflows::start`] and waiting for it to complete before starting the next; one executor
//!   (`concurrency` attempts at once, 16 by default as in the server; 4 per run) drives them. Runs/s and steps/s
//!   are completed runs (times 5) over the wall time. **Dispatch latency** is, per step
//!   with dependencies, the time from its last dependency's `AttemptSucceeded` to its own
//!   `AttemptStarted`, read from the events' own times.
//!
//! The summary gives medians over runs and the ratio engine steps/s / baseline steps/s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::oneshot;
use uuid::Uuid;

use api::db::Database;
use commands::workflows::kinds::http::HttpSettings;
use commands::workflows::kinds::Kinds;
use commands::workflows::{Executor, ExecutorSettings, NewRun, Workflows};
use commands::workqueue::WorkQueues;
use commands::SystemClock;
use domain::workflow::Definition;
use eventstore::{EventStore, Metadata};

use super::{drop_database, fresh_database, median, ms, percentile};

const DATABASE: &str = "caseledger_bench_workflows";

/// Steps of the diamond: (id, dependencies).
const DIAMOND: [(&str, &[&str]); 5] = [
    ("a", &[]),
    ("b", &["a"]),
    ("c", &["a"]),
    ("d", &["a"]),
    ("e", &["b", "c", "d"]),
];

/// The baseline's one statement per transaction.
const BASELINE_SCRIPT: &str =
    "INSERT INTO bench_step_done (run_id, step, done_at) VALUES (gen_random_uuid(), 'b', now());\n";

/// Settings of one benchmark invocation.
#[derive(Debug, Clone)]
pub struct WorkflowsBench {
    /// Concurrent starters (and pgbench clients).
    pub starters: usize,
    /// How long each baseline and engine sample runs.
    pub seconds: f64,
    /// Samples; medians are taken over them.
    pub runs: usize,
    /// Attempts the executor runs at once (`CASELEDGER_WORKFLOW_CONCURRENCY`).
    pub concurrency: usize,
}

/// One engine sample.
#[derive(Debug, Clone)]
struct EngineSample {
    runs: usize,
    elapsed: Duration,
    dispatch: Vec<Duration>,
}

impl EngineSample {
    fn runs_per_sec(&self) -> f64 {
        self.runs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn steps_per_sec(&self) -> f64 {
        self.runs_per_sec() * DIAMOND.len() as f64
    }
}

pub async fn run(db: &Database, opts: &WorkflowsBench) -> anyhow::Result<()> {
    let pool = fresh_database(db, DATABASE).await?;
    sqlx::query(
        "CREATE TABLE bench_step_done (id bigserial PRIMARY KEY, run_id uuid NOT NULL, \
         step text NOT NULL, done_at timestamptz NOT NULL)",
    )
    .execute(&pool)
    .await
    .context("creating the baseline's table")?;
    let receiver = Receiver::start().await?;
    let store = EventStore::new(pool.clone());
    let clock: Arc<dyn commands::Clock> = Arc::new(SystemClock);
    let work = Arc::new(WorkQueues::new(store.clone(), clock.clone()));
    let workflows = Arc::new(Workflows::new(
        store.clone(),
        clock,
        Kinds::standard(work.clone(), HttpSettings::default()),
    ));
    let definition: Definition = serde_json::from_value(json!({
        "key": "diamond", "name": "Diamond of http steps",
        "steps": DIAMOND.iter().map(|(id, deps)| json!({
            "id": id, "kind": "http", "depends_on": deps, "config": {"url": receiver.url}
        })).collect::<Vec<_>>()
    }))?;
    workflows
        .register(definition, &Metadata::by("bench"))
        .await
        .map_err(|e| anyhow::anyhow!("registering the diamond: {e}"))?;
    let wakeups = store.spawn_wakeups();
    let settings = ExecutorSettings {
        concurrency: opts.concurrency,
        ..ExecutorSettings::default()
    };
    let executor = Executor::new(workflows.clone(), work, settings).spawn();

    println!(
        "workflows: 5-step http diamonds, {} closed-loop starters x {} s, executor concurrency {}; baseline pgbench {} clients x {} s; {} runs",
        opts.starters, opts.seconds, opts.concurrency, opts.starters, opts.seconds, opts.runs
    );
    let mut loops = Vec::new();
    let mut baselines = Vec::new();
    let mut samples = Vec::new();
    for run in 1..=opts.runs {
        let one = pgbench(db, 1, opts.seconds).await?;
        println!("  run {run}: baseline, 1 client    {one:>8.0} steps/s");
        let baseline = pgbench(db, opts.starters, opts.seconds).await?;
        println!(
            "  run {run}: baseline, {} clients   {baseline:>8.0} steps/s",
            opts.starters
        );
        let sample = engine(&workflows, &pool, opts).await?;
        let mut sorted = sample.dispatch.clone();
        sorted.sort();
        println!(
            "  run {run}: engine              {:>8.0} steps/s  {:>6.1} runs/s  dispatch p50 {:>6.2} ms  p99 {:>6.2} ms  ({} runs in {:.2} s)  engine/baseline {:.1} % and {:.1} %",
            sample.steps_per_sec(),
            sample.runs_per_sec(),
            ms(percentile(&sorted, 0.50)),
            ms(percentile(&sorted, 0.99)),
            sample.runs,
            sample.elapsed.as_secs_f64(),
            100.0 * sample.steps_per_sec() / one.max(1e-9),
            100.0 * sample.steps_per_sec() / baseline.max(1e-9)
        );
        loops.push(one);
        baselines.push(baseline);
        samples.push(sample);
    }
    executor.abort();
    wakeups.abort();
    drop(receiver);

    let ratio = |floor: &[f64]| -> Vec<f64> {
        samples
            .iter()
            .zip(floor)
            .map(|(s, b)| 100.0 * s.steps_per_sec() / b.max(1e-9))
            .collect()
    };
    let (ratios_one, ratios) = (ratio(&loops), ratio(&baselines));
    let listed = |rs: &[f64]| {
        rs.iter()
            .map(|r| format!("{r:.1} %"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let p = |q: f64| {
        median(
            samples
                .iter()
                .map(|s| {
                    let mut sorted = s.dispatch.clone();
                    sorted.sort();
                    ms(percentile(&sorted, q))
                })
                .collect(),
        )
    };
    println!("summary (medians of {} runs):", opts.runs);
    println!(
        "  baseline, 1 client (one INSERT per step completion, own transaction)  {:>8.0} steps/s",
        median(loops.clone())
    );
    println!(
        "  baseline, {:>2} clients                                                {:>8.0} steps/s",
        opts.starters,
        median(baselines.clone())
    );
    println!(
        "  engine                                                                {:>8.0} steps/s  {:>6.1} runs/s  dispatch p50 {:.2} ms  p99 {:.2} ms",
        median(samples.iter().map(EngineSample::steps_per_sec).collect()),
        median(samples.iter().map(EngineSample::runs_per_sec).collect()),
        p(0.50),
        p(0.99)
    );
    println!(
        "  engine / baseline, 1 client: {:.1} % (runs: {})",
        median(ratios_one.clone()),
        listed(&ratios_one)
    );
    println!(
        "  engine / baseline, {} clients: {:.1} % (runs: {})",
        opts.starters,
        median(ratios.clone()),
        listed(&ratios)
    );
    pool.close().await;
    drop_database(db, DATABASE).await
}

/// `starters` closed loops for `seconds`: each starts a run, waits for it to complete, and
/// starts the next. One watcher polls the write side's `wf_runs` for the runs in flight and
/// tells their starters (polling from every starter would load the database it measures).
async fn engine(
    workflows: &Arc<Workflows>,
    pool: &PgPool,
    opts: &WorkflowsBench,
) -> anyhow::Result<EngineSample> {
    type Waiters = Arc<Mutex<HashMap<Uuid, oneshot::Sender<String>>>>;
    let waiters: Waiters = Arc::default();
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (pool, waiters, watching) = (pool.clone(), waiters.clone(), watching.clone());
        tokio::spawn(async move {
            while watching.load(Ordering::Relaxed) {
                let ids: Vec<Uuid> = waiters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .keys()
                    .copied()
                    .collect();
                if !ids.is_empty() {
                    let ended: Vec<(Uuid, String)> = sqlx::query_as(
                        "SELECT run_id, status FROM wf_runs WHERE run_id = ANY($1) AND status <> 'running'",
                    )
                    .bind(&ids)
                    .fetch_all(&pool)
                    .await?;
                    let mut waiters = waiters.lock().unwrap_or_else(|e| e.into_inner());
                    for (run_id, status) in ended {
                        if let Some(tx) = waiters.remove(&run_id) {
                            let _ = tx.send(status);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            anyhow::Ok(())
        })
    };
    let began = Instant::now();
    let until = began + Duration::from_secs_f64(opts.seconds);
    let mut starters = Vec::new();
    for starter in 0..opts.starters.max(1) {
        let (workflows, waiters) = (workflows.clone(), waiters.clone());
        starters.push(tokio::spawn(async move {
            let metadata = Metadata::by("bench");
            let mut finished = Vec::new();
            let mut i = 0;
            while Instant::now() < until {
                let run_id = Uuid::new_v4();
                let (tx, rx) = oneshot::channel();
                waiters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(run_id, tx);
                workflows
                    .start(
                        NewRun {
                            run_id,
                            key: "diamond".into(),
                            version: None,
                            input: json!({ "starter": starter, "i": i }),
                            business_key: None,
                            by: "bench".into(),
                        },
                        &metadata,
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("starting a run: {e}"))?;
                let status = tokio::time::timeout(Duration::from_secs(120), rx)
                    .await
                    .context("a run did not end within 2 minutes")??;
                anyhow::ensure!(status == "completed", "run {run_id} ended {status}");
                finished.push(run_id);
                i += 1;
            }
            anyhow::Ok(finished)
        }));
    }
    let mut ids = Vec::new();
    for starter in starters {
        ids.extend(starter.await??);
    }
    let elapsed = began.elapsed();
    watching.store(false, Ordering::Relaxed);
    watcher.await??;
    Ok(EngineSample {
        runs: ids.len(),
        elapsed,
        dispatch: dispatch_latencies(pool, &ids).await?,
    })
}

/// Per step with dependencies: its first attempt's start minus its last dependency's success.
async fn dispatch_latencies(pool: &PgPool, ids: &[Uuid]) -> anyhow::Result<Vec<Duration>> {
    let rows: Vec<(Uuid, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT stream_id, event_type, payload->>'step', (payload->>'at')::timestamptz FROM events \
         WHERE stream_id = ANY($1) AND event_type IN ('AttemptStarted', 'AttemptSucceeded') \
           AND (payload->>'attempt')::int = 1",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let mut by_run: HashMap<Uuid, Vec<(String, String, DateTime<Utc>)>> = HashMap::new();
    for (run, kind, step, at) in rows {
        by_run.entry(run).or_default().push((kind, step, at));
    }
    let mut out = Vec::new();
    for events in by_run.values() {
        let at = |kind: &str, step: &str| {
            events
                .iter()
                .find(|(k, s, _)| k == kind && s == step)
                .map(|(_, _, at)| *at)
        };
        for (step, deps) in DIAMOND.iter().filter(|(_, deps)| !deps.is_empty()) {
            let ready = deps
                .iter()
                .map(|d| at("AttemptSucceeded", d))
                .collect::<Option<Vec<_>>>()
                .and_then(|times| times.into_iter().max());
            if let (Some(ready), Some(started)) = (ready, at("AttemptStarted", step)) {
                out.push((started - ready).to_std().unwrap_or_default());
            }
        }
    }
    Ok(out)
}

/// Transactions per second of `pgbench` running the baseline script.
async fn pgbench(db: &Database, clients: usize, seconds: f64) -> anyhow::Result<f64> {
    let args = [
        "-n".to_owned(),
        "-M".into(),
        "prepared".into(),
        "-j".into(),
        "2".into(),
        "-c".into(),
        clients.to_string(),
        "-T".into(),
        (seconds.ceil() as u64).max(1).to_string(),
    ];
    super::pgbench(db, DATABASE, &args, BASELINE_SCRIPT, "tps = ").await
}

/// A local receiver answering every POST with `{}` at once.
struct Receiver {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/", listener.local_addr()?);
        let router =
            axum::Router::new().route("/", axum::routing::post(|| async { axum::Json(json!({})) }));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Receiver { url, task })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
