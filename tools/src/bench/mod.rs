//! `caseledger-tools bench ...`: benchmarks, each against a baseline measured in the same run.
//!
//! This kind of machine is shared and noisy, so every figure comes with a baseline taken in the
//! same run on the same data, and each scenario reports the median of several runs.
//! - [`append`]: the event store's appends and whole commands against plain INSERTs.
//! - [`projections`]: rebuild rate against a hand-written replay loop, live lag, memory.
//! - [`scan`]: the renewal scan against plain INSERTs of the events it writes.
//! - [`allocation`]: ranking 10,000 staff for one piece of work, pure and through the read
//!   model and the route, against the candidates query alone.
//! - [`claim`]: claim-next with concurrent claimers against a bare `FOR UPDATE SKIP LOCKED`
//!   claim loop on an equally indexed table.
//! - [`audit`]: sealing and verifying the log's hash chain against PostgreSQL rendering the
//!   same records (`pgbench`).
//! - [`workflows`]: the workflow executor driving 5-step diamonds of `http` steps (runs/s,
//!   steps/s, dispatch latency) against one durable row per step completion (`pgbench`).

pub mod allocation;
pub mod append;
pub mod audit;
pub mod claim;
pub mod projections;
pub mod scan;
pub mod workflows;

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;

use api::db::Database;

pub use append::AppendBench;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Drops and recreates the benchmark database `name` on the configured server, migrated.
async fn fresh_database(db: &Database, name: &str) -> anyhow::Result<PgPool> {
    drop_database(db, name).await?;
    let bench = db.with_database(name);
    let pool = bench.prepare(24).await?;
    // The baselines make their own tables beside Caseledger's, as the server's role (so that
    // both sides pay the same); in this throwaway database that role may create them.
    let admin = PgPool::connect_with(bench.admin()?.clone())
        .await
        .context("connecting as the admin")?;
    sqlx::query(&format!(
        "GRANT CREATE ON SCHEMA public TO {}",
        api::db::APP_ROLE
    ))
    .execute(&admin)
    .await
    .context("letting the benchmark create its baseline tables")?;
    admin.close().await;
    Ok(pool)
}

/// Runs `pgbench` with `args` and `script` against `database` on the configured server, as the
/// admin; returns the figure its output gives after `label` (e.g. `"tps = "`). Blocks a thread
/// of its own for the whole run, off the runtime's workers.
async fn pgbench(
    db: &Database,
    database: &str,
    args: &[String],
    script: &str,
    label: &'static str,
) -> anyhow::Result<f64> {
    let file = std::env::temp_dir().join(format!("caseledger-bench-{}.sql", uuid::Uuid::new_v4()));
    std::fs::write(&file, script).context("writing the pgbench script")?;
    let options = db.admin()?;
    let mut command = std::process::Command::new("pgbench");
    command
        .args(args)
        .arg("-f")
        .arg(&file)
        .env("PGHOST", options.get_host())
        .env("PGPORT", options.get_port().to_string())
        .env("PGUSER", options.get_username())
        .env("PGDATABASE", database);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await?
        .context("running pgbench (it ships with PostgreSQL)");
    let _ = std::fs::remove_file(&file);
    let output = output?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix(label)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
        })
        .with_context(|| format!("no {label:?} in pgbench's output: {stdout}"))
}

/// Drops a benchmark database, so that millions of rows do not linger (and keep autovacuum busy)
/// after the run.
async fn drop_database(db: &Database, name: &str) -> anyhow::Result<()> {
    let admin = db.admin()?.clone().database("postgres");
    let pool = PgPool::connect_with(admin)
        .await
        .context("connecting to the postgres database")?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&pool)
        .await
        .with_context(|| format!("dropping the benchmark database {name}"))?;
    pool.close().await;
    Ok(())
}
