//! `caseledger-tools bench workflows`: the workflow executor driving 5-step diamonds of `http`
//! steps against a local receiver, against the least a durable executor can do.
//!
//! The database `caseledger_bench_workflows` is recreated; a receiver answering `{}` at once is
//! started on a local port; one definition is registered: `a`, then `b`, `c`, `d` (each
//! depending on `a`), then `e` (depending on all three). In each of `runs` runs, interleaved so
//! that both share the machine's conditions:
//!
//! - **baseline**: `pgbench` with `starters` clients for `seconds`, each transaction one
//!   `INSERT` of a step-completion row (run id, step, time) into a plain table: one durable row
//!   per step completion in its own transaction. Its transactions per second are steps/s.
//! - **engine**: `starters` tasks start `runs_per_sample` runs between them through
//!   [`Workflows::start`]; one executor (the server's defaults: 16 attempts at once, 4 per run)
//!   drives them; the run ends when the last run has completed. Runs/s and steps/s are over the
//!   wall time from the first start to the last completion. **Dispatch latency** is, per step
//!   with dependencies, the time from its last dependency's `AttemptSucceeded` to its own
//!   `AttemptStarted`, read from the events' own times.
//!
//! The summary gives medians over runs and the ratio engine steps/s / baseline steps/s.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
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
    /// Runs started per engine sample.
    pub runs_per_sample: usize,
    /// Concurrent starters (and pgbench clients).
    pub starters: usize,
    /// How long each baseline sample runs.
    pub seconds: f64,
    /// Samples; medians are taken over them.
    pub runs: usize,
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
    let executor = Executor::new(workflows.clone(), work, ExecutorSettings::default()).spawn();

    println!(
        "workflows: {} runs of a 5-step http diamond per sample, {} starters; baseline pgbench {} clients x {} s; {} runs",
        opts.runs_per_sample, opts.starters, opts.starters, opts.seconds, opts.runs
    );
    let mut baselines = Vec::new();
    let mut samples = Vec::new();
    for run in 1..=opts.runs {
        let baseline = pgbench(db, opts.starters, opts.seconds).await?;
        println!("  run {run}: baseline  {baseline:>8.0} steps/s");
        let sample = engine(&workflows, &pool, opts).await?;
        let mut sorted = sample.dispatch.clone();
        sorted.sort();
        println!(
            "  run {run}: engine    {:>8.0} steps/s  {:>6.1} runs/s  dispatch p50 {:>6.2} ms  p99 {:>6.2} ms  ({} runs in {:.2} s)  engine/baseline {:.1} %",
            sample.steps_per_sec(),
            sample.runs_per_sec(),
            ms(percentile(&sorted, 0.50)),
            ms(percentile(&sorted, 0.99)),
            sample.runs,
            sample.elapsed.as_secs_f64(),
            100.0 * sample.steps_per_sec() / baseline.max(1e-9)
        );
        baselines.push(baseline);
        samples.push(sample);
    }
    executor.abort();
    wakeups.abort();
    drop(receiver);

    let ratios: Vec<f64> = samples
        .iter()
        .zip(&baselines)
        .map(|(s, b)| 100.0 * s.steps_per_sec() / b.max(1e-9))
        .collect();
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
        "  baseline (one INSERT per step completion, own transaction)  {:>8.0} steps/s",
        median(baselines.clone())
    );
    println!(
        "  engine                                                      {:>8.0} steps/s  {:>6.1} runs/s  dispatch p50 {:.2} ms  p99 {:.2} ms",
        median(samples.iter().map(EngineSample::steps_per_sec).collect()),
        median(samples.iter().map(EngineSample::runs_per_sec).collect()),
        p(0.50),
        p(0.99)
    );
    println!(
        "  engine / baseline: {:.1} % (runs: {})",
        median(ratios.clone()),
        ratios
            .iter()
            .map(|r| format!("{r:.1} %"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    pool.close().await;
    drop_database(db, DATABASE).await
}

/// Starts `runs_per_sample` runs from `starters` tasks and waits for all of them to complete.
async fn engine(
    workflows: &Arc<Workflows>,
    pool: &PgPool,
    opts: &WorkflowsBench,
) -> anyhow::Result<EngineSample> {
    let ids: Arc<Vec<Uuid>> = Arc::new((0..opts.runs_per_sample).map(|_| Uuid::new_v4()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let mut starters = Vec::new();
    for _ in 0..opts.starters.max(1) {
        let (workflows, ids, next) = (workflows.clone(), ids.clone(), next.clone());
        starters.push(tokio::spawn(async move {
            let metadata = Metadata::by("bench");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(run_id) = ids.get(i) else {
                    return anyhow::Ok(());
                };
                workflows
                    .start(
                        NewRun {
                            run_id: *run_id,
                            key: "diamond".into(),
                            version: None,
                            input: json!({ "i": i }),
                            business_key: None,
                            by: "bench".into(),
                        },
                        &metadata,
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("starting a run: {e}"))?;
            }
        }));
    }
    for starter in starters {
        starter.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (ended, failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status <> 'running'), count(*) FILTER (WHERE status <> 'completed' AND status <> 'running') \
             FROM wf_runs WHERE run_id = ANY($1)",
        )
        .bind(ids.as_slice())
        .fetch_one(pool)
        .await?;
        anyhow::ensure!(failed == 0, "{failed} runs did not complete");
        if ended as usize == ids.len() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "runs did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = began.elapsed();
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
    let mut by_run: std::collections::HashMap<Uuid, Vec<(String, String, DateTime<Utc>)>> =
        std::collections::HashMap::new();
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
    let script = std::env::temp_dir().join(format!("caseledger-bench-{}.sql", Uuid::new_v4()));
    std::fs::write(&script, BASELINE_SCRIPT).context("writing the pgbench script")?;
    let options = &db.options;
    let mut command = std::process::Command::new("pgbench");
    command
        .args(["-n", "-M", "prepared", "-j", "2"])
        .args(["-c", &clients.to_string()])
        .args(["-T", &(seconds.ceil() as u64).max(1).to_string()])
        .arg("-f")
        .arg(&script)
        .env("PGHOST", options.get_host())
        .env("PGPORT", options.get_port().to_string())
        .env("PGUSER", options.get_username())
        .env("PGDATABASE", DATABASE);
    // pgbench blocks for its whole run; keep it off the runtime's workers.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await?
        .context("running pgbench (it ships with PostgreSQL)")?;
    let _ = std::fs::remove_file(&script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("tps = ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
        })
        .with_context(|| format!("no tps in pgbench's output: {stdout}"))
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
