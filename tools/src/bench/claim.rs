//! `caseledger-tools bench claim`: claim-next under many concurrent claimers, against a bare
//! `FOR UPDATE SKIP LOCKED` loop.
//!
//! The database `caseledger_bench_claim` is recreated and filled through the ordinary commands:
//! one department, one pull queue (per-user capacity at the maximum, 1,000), `claimers` users
//! with a grant per run (each run claims with fresh users, so that nobody reaches the capacity
//! across runs), and `tasks` open tasks created with `create_task` by a few concurrent creators
//! (not measured). Then, in each of `runs` runs, interleaved so that both share the machine's
//! conditions:
//!
//! - **ceiling**: `claimers` loops over a plain table with the same columns and indexes as
//!   `wq_tasks` (`LIKE wq_tasks INCLUDING ALL`, so also the claim-order partial index) and a
//!   copy of its open rows, each doing `BEGIN; SELECT task_id ... ORDER BY priority DESC,
//!   created_at, task_id LIMIT 1 FOR UPDATE SKIP LOCKED; UPDATE ... SET status = 'claimed';
//!   COMMIT`. Its rows are reopened before every run.
//! - **claim-next**: `claimers` loops calling [`WorkQueues::claim_next`], each as its own user:
//!   the user lock, the grants and load look-up, the pick, the task's events, the decision, the
//!   append, the `wq_tasks` row, in one transaction.
//!
//! Each loop runs for `seconds`; every call's latency is recorded. Both scenarios use the same
//! pool of `claimers` connections, and the tables each writes are vacuumed right before its
//! turn (the ceiling's table; `wq_tasks`, `wq_loads` and `events` for claim-next), so both
//! start without dead index entries at the head of the claim order, and neither pays for the
//! previous runs' garbage on a server running without autovacuum. The summary gives medians
//! over runs and the ratio claim-next / ceiling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use commands::workqueue::{NewTask, NothingToClaim, WorkQueueRefusal, WorkQueues};
use commands::CommandError;
use commands::SystemClock;
use domain::user::Username;
use domain::workqueue::queue::{
    Capacity, Distribution, EscalationPolicy, QueueConfig, QueueRole, SlaPolicy, MAX_PER_USER,
};
use domain::workqueue::Priority;
use eventstore::{EventStore, Metadata};

use super::{fresh_database, median, ms, percentile};
use crate::rng::Rng;
use api::db::Database;

const DATABASE: &str = "caseledger_bench_claim";

/// Task creations in flight while seeding (not measured).
const SEED_CONCURRENCY: usize = 8;

/// The ceiling's table: `wq_tasks`'s columns and indexes (the claim-order partial index among
/// them), no foreign key, no events; a copy of the seeded rows.
const CEILING_SETUP: &str = "CREATE TABLE bench_claim_ceiling (LIKE wq_tasks INCLUDING ALL); \
     INSERT INTO bench_claim_ceiling SELECT * FROM wq_tasks;";

/// Before each ceiling run: every row open again (then vacuumed, so that no dead index entries
/// are left over).
const CEILING_REOPEN: &str = "UPDATE bench_claim_ceiling SET status = 'open', claimant = NULL, \
     version = 1 WHERE status <> 'open'";

/// The ceiling's pick: claim-next's order on one queue.
const CEILING_PICK: &str = "SELECT task_id FROM bench_claim_ceiling \
     WHERE status = 'open' AND queue_id = $1 \
     ORDER BY priority DESC, created_at, task_id LIMIT 1 FOR UPDATE SKIP LOCKED";

const CEILING_CLAIM: &str = "UPDATE bench_claim_ceiling SET status = 'claimed', claimant = $2, \
     version = version + 1 WHERE task_id = $1";

/// Settings of one benchmark invocation.
#[derive(Debug, Clone)]
pub struct ClaimBench {
    /// Open tasks seeded before the first run (claimed ones are gone for later runs).
    pub tasks: usize,
    /// Concurrent claimers, each with a connection of its own.
    pub claimers: usize,
    /// How long each scenario runs per run.
    pub seconds: f64,
    /// Runs; medians are taken over them.
    pub runs: usize,
}

/// Claims and latencies of one scenario run.
#[derive(Debug, Clone, Default)]
struct Sample {
    claims: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Sample {
    fn per_sec(&self) -> f64 {
        self.claims as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn p50(&self) -> f64 {
        ms(percentile(&self.latencies, 0.50))
    }
    fn p99(&self) -> f64 {
        ms(percentile(&self.latencies, 0.99))
    }
    fn line(&self) -> String {
        format!(
            "{:>7.0} claims/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} claims)",
            self.per_sec(),
            self.p50(),
            self.p99(),
            self.claims
        )
    }
}

/// Runs `op(claimer)` from `claimers` concurrent tasks for `seconds`, timing each call; every
/// call claims one task (or fails the run).
async fn measure<F, Fut>(claimers: usize, seconds: f64, op: F) -> anyhow::Result<Sample>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::with_capacity(claimers);
    for c in 0..claimers {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Sample::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                op(c).await?;
                s.latencies.push(t.elapsed());
                s.claims += 1;
            }
            anyhow::Ok(s)
        }));
    }
    let mut total = Sample::default();
    let mut failure = None;
    for task in tasks {
        match task.await.context("a claimer panicked") {
            Ok(Ok(s)) => {
                total.claims += s.claims;
                total.latencies.extend(s.latencies);
            }
            Ok(Err(e)) | Err(e) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    total.elapsed = start.elapsed();
    total.latencies.sort_unstable();
    Ok(total)
}

pub async fn run(db: &Database, opts: &ClaimBench) -> anyhow::Result<()> {
    anyhow::ensure!(opts.claimers > 0, "--claimers must be at least 1");
    anyhow::ensure!(opts.seconds > 0.0, "--seconds must be positive");
    let setup = fresh_database(db, DATABASE).await?;
    let bench = db.with_database(DATABASE);
    // One pool for both scenarios: a connection per claimer.
    let pool = bench
        .connect(u32::try_from(opts.claimers).unwrap_or(u32::MAX))
        .await?;
    let result = bench_in(&setup, &pool, opts).await;
    pool.close().await;
    setup.close().await;
    super::drop_database(db, DATABASE).await?;
    result
}

async fn bench_in(setup: &PgPool, pool: &PgPool, opts: &ClaimBench) -> anyhow::Result<()> {
    let work = Arc::new(WorkQueues::new(
        EventStore::new(setup.clone()),
        Arc::new(SystemClock),
    ));
    let (queue_id, users) = seed(&work, opts).await?;

    sqlx::raw_sql(CEILING_SETUP)
        .execute(setup)
        .await
        .context("creating the ceiling's table")?;

    let claiming = Arc::new(WorkQueues::new(
        EventStore::new(pool.clone()),
        Arc::new(SystemClock),
    ));
    let mut ceilings = Vec::new();
    let mut claims = Vec::new();
    for run in 0..opts.runs {
        sqlx::raw_sql(CEILING_REOPEN)
            .execute(setup)
            .await
            .context("reopening the ceiling's rows")?;
        sqlx::raw_sql("VACUUM (ANALYZE) bench_claim_ceiling")
            .execute(setup)
            .await
            .context("vacuuming the ceiling's table")?;
        let ceiling = ceiling_run(pool, queue_id, opts).await?;

        sqlx::raw_sql("VACUUM (ANALYZE) wq_tasks, wq_loads, events")
            .execute(setup)
            .await
            .context("vacuuming the tables claim-next writes")?;
        let run_users = Arc::new(users[run].clone());
        let work = claiming.clone();
        let claim = measure(opts.claimers, opts.seconds, move |c| {
            let work = work.clone();
            let users = run_users.clone();
            async move {
                let meta = Metadata::by(format!("user:{}", users[c]));
                match work.claim_next(&users[c], None, None, &meta).await {
                    Ok(_) => Ok(()),
                    Err(CommandError::Rejected(WorkQueueRefusal::NothingToClaim(
                        NothingToClaim::NoOpenTask,
                    ))) => {
                        anyhow::bail!("claim-next ran out of open tasks: raise --tasks")
                    }
                    Err(CommandError::Rejected(WorkQueueRefusal::NothingToClaim(
                        NothingToClaim::AtCapacity,
                    ))) => {
                        anyhow::bail!(
                            "a claimer reached the per-user capacity of {MAX_PER_USER}: \
                             lower --seconds"
                        )
                    }
                    Err(e) => Err(anyhow::Error::from(e).context("claim-next failed")),
                }
            }
        })
        .await?;
        println!(
            "run {}:\n  ceiling (bare SKIP LOCKED)  {}\n  claim-next                  {}\n  \
             claim-next / ceiling {:.1} %",
            run + 1,
            ceiling.line(),
            claim.line(),
            100.0 * claim.per_sec() / ceiling.per_sec().max(1e-9)
        );
        ceilings.push(ceiling);
        claims.push(claim);
    }

    let rate = |xs: &[Sample]| median(xs.iter().map(Sample::per_sec).collect());
    let p50 = |xs: &[Sample]| median(xs.iter().map(Sample::p50).collect());
    let p99 = |xs: &[Sample]| median(xs.iter().map(Sample::p99).collect());
    let ratios: Vec<f64> = claims
        .iter()
        .zip(&ceilings)
        .map(|(c, b)| c.per_sec() / b.per_sec().max(1e-9))
        .collect();
    println!(
        "\nclaim-next, {} claimers over {} open tasks, {} s per scenario, median of {} runs:\n  \
         ceiling (bare SKIP LOCKED)  {:>7.0} claims/s  p50 {:>6.2} ms  p99 {:>6.2} ms\n  \
         claim-next                  {:>7.0} claims/s  p50 {:>6.2} ms  p99 {:>6.2} ms\n  \
         claim-next / ceiling {:.1} % (runs: {})",
        opts.claimers,
        opts.tasks,
        opts.seconds,
        opts.runs,
        rate(&ceilings),
        p50(&ceilings),
        p99(&ceilings),
        rate(&claims),
        p50(&claims),
        p99(&claims),
        median(ratios.clone()) * 100.0,
        ratios
            .iter()
            .map(|r| format!("{:.1} %", r * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The department, the queue, a user with a grant per claimer and run, and the open tasks, all
/// through the ordinary commands. Returns the queue and the users of each run.
async fn seed(
    work: &Arc<WorkQueues>,
    opts: &ClaimBench,
) -> anyhow::Result<(Uuid, Vec<Vec<String>>)> {
    let admin = Metadata::by("bench");
    let department_id = work
        .create_department("BENCH", "Benchmark", None, &admin)
        .await?
        .stream_id;
    let config = QueueConfig {
        department_id,
        capacity: Capacity {
            per_user: MAX_PER_USER,
            total: None,
        },
        sla: SlaPolicy::standard(),
        escalation: EscalationPolicy::standard(),
        distribution: Distribution::Pull,
        groups: Vec::new(),
    };
    let queue_id = work
        .create_queue("claim-bench", config, &admin)
        .await?
        .stream_id;
    let mut users = Vec::with_capacity(opts.runs);
    for run in 0..opts.runs {
        let mut these = Vec::with_capacity(opts.claimers);
        for c in 0..opts.claimers {
            let name = format!("claimer-{}-{:02}", run + 1, c + 1);
            work.grant(
                queue_id,
                Uuid::new_v4(),
                Username::parse(&name)?,
                true,
                QueueRole::Member,
                Vec::new(),
                None,
                None,
                &admin,
            )
            .await?;
            these.push(name);
        }
        users.push(these);
    }

    let mut rng = Rng(2026);
    let priorities: Vec<i64> = (0..opts.tasks).map(|_| 1 + rng.below(5) as i64).collect();
    let started = Instant::now();
    let results = futures_util::stream::iter(priorities)
        .map(|priority| {
            let admin = admin.clone();
            async move {
                work.create_task(
                    NewTask {
                        task_id: Uuid::new_v4(),
                        queue_id,
                        title: "Verify licence".into(),
                        priority: Priority::new(priority)?,
                        groups: Vec::new(),
                        case_id: None,
                        payload: json!({"physician": "Bench Physician", "state": "TX"}),
                    },
                    &admin,
                )
                .await
                .map(|_| ())
                .context("creating a task")
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    for r in results {
        r?;
    }
    let took = started.elapsed();
    println!(
        "seeded {} open tasks through create_task ({} at a time) in {:.1} s ({:.0}/s); not part of \
         the measurement",
        opts.tasks,
        SEED_CONCURRENCY,
        took.as_secs_f64(),
        opts.tasks as f64 / took.as_secs_f64().max(1e-9)
    );
    Ok((queue_id, users))
}

/// The bare claim: pick the next open row skipping locked ones, mark it claimed, commit.
async fn ceiling_run(pool: &PgPool, queue_id: Uuid, opts: &ClaimBench) -> anyhow::Result<Sample> {
    let pool = pool.clone();
    measure(opts.claimers, opts.seconds, move |c| {
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await?;
            let picked: Option<Uuid> = sqlx::query_scalar(CEILING_PICK)
                .bind(queue_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(task_id) = picked else {
                anyhow::bail!("the ceiling ran out of open rows: raise --tasks");
            };
            sqlx::query(CEILING_CLAIM)
                .bind(task_id)
                .bind(format!("ceiling-{c:02}"))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            anyhow::Ok(())
        }
    })
    .await
}
