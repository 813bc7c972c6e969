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
