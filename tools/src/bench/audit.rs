//! `caseledger-tools bench audit`: sealing and verifying the log's hash chain over a log of
//! `events` events, against PostgreSQL rendering the same records (the least a verifier that
//! hashes what PostgreSQL renders must wait for).
//!
//! Each run loads the events (not timed; one INSERT ... SELECT per 100,000, payloads shaped like
//! a physician's registration), then times:
//! - sealing the whole log ([`eventstore::seal::Sealer::catch_up`]);
//! - `audit verify` of the whole log ([`commands::audit::Audit::verify`]): events/s;
//! - the floor, by `pgbench` in the same database: one transaction that renders every record in
//!   read order (`sum(length(record))`: PostgreSQL's work only, no transfer, no hashing).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{fresh_database, median};
use api::db::Database;
use commands::audit::{Audit, AuditKey};
use eventstore::EventStore;

const DATABASE: &str = "caseledger_bench_audit";

#[derive(Debug, Clone)]
pub struct AuditBench {
    pub events: u64,
    pub runs: usize,
}

struct RunResult {
    seal: Duration,
    verify: Duration,
    floor: Duration,
}

pub async fn run(db: &Database, opts: &AuditBench) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for run in 1..=opts.runs {
        let pool = fresh_database(db, DATABASE).await?;
        let result = one_run(db, &pool, opts).await;
        pool.close().await;
        let r = result?;
        let n = opts.events as f64;
        println!(
            "run {run}: seal {:.2} s ({:.0} events/s); verify {:.2} s ({:.0} events/s); floor {:.2} s ({:.0} events/s)",
            r.seal.as_secs_f64(),
            n / r.seal.as_secs_f64(),
            r.verify.as_secs_f64(),
            n / r.verify.as_secs_f64(),
            r.floor.as_secs_f64(),
            n / r.floor.as_secs_f64(),
        );
        results.push(r);
    }
    super::drop_database(db, DATABASE).await?;
    let n = opts.events as f64;
    let rate = |f: fn(&RunResult) -> Duration| {
        median(results.iter().map(|r| n / f(r).as_secs_f64()).collect())
    };
    let ratios: Vec<f64> = results
        .iter()
        .map(|r| r.floor.as_secs_f64() / r.verify.as_secs_f64())
        .collect();
    println!(
        "\nhash chain over {} events, median of {} runs:\n  \
         seal {:.0} events/s\n  \
         verify {:.0} events/s\n  \
         floor (PostgreSQL rendering the records, pgbench) {:.0} events/s; verify/floor {:.0} % (runs: {})",
        opts.events,
        opts.runs,
        rate(|r| r.seal),
        rate(|r| r.verify),
        rate(|r| r.floor),
        median(ratios.clone()) * 100.0,
        ratios
            .iter()
            .map(|r| format!("{:.0} %", r * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

async fn one_run(
    db: &Database,
    pool: &sqlx::PgPool,
    opts: &AuditBench,
) -> anyhow::Result<RunResult> {
    let mut loaded = 0;
    while loaded < opts.events {
        let chunk = (opts.events - loaded).min(100_000);
        sqlx::query(
            "INSERT INTO events (stream_id, stream_type, version, event_type, schema_version, payload, actor, correlation_id) \
             SELECT gen_random_uuid(), 'physician', 1, 'PhysicianRegistered', 1, \
                    jsonb_build_object('npi', (1000000000 + i)::text, 'name', 'Dr Example ' || i, \
                                       'email', 'dr' || i || '@example.org', 'specialty', 'cardiology', \
                                       'licensed_in', jsonb_build_array('CA', 'NV')), \
                    'bench', gen_random_uuid() \
             FROM generate_series(1, $1) AS i",
        )
        .bind(i64::try_from(chunk)?)
        .execute(pool)
        .await
        .context("loading events")?;
        loaded += chunk;
    }
    // The owner's statistics work, not the server's: as the admin, on the same database.
    let admin = sqlx::PgPool::connect_with(db.with_database(DATABASE).admin()?.clone()).await?;
    sqlx::query("VACUUM ANALYZE events").execute(&admin).await?;
    let audit = Audit::new(
        EventStore::new(pool.clone()),
        Arc::new(AuditKey::generate()),
        Arc::new(commands::SystemClock),
    );
    let started = Instant::now();
    let sealed = audit.sealer().catch_up().await?;
    let seal = started.elapsed();
    anyhow::ensure!(
        sealed == opts.events,
        "sealed {sealed} of {} events",
        opts.events
    );
    sqlx::query("VACUUM ANALYZE event_seals")
        .execute(&admin)
        .await?;
    admin.close().await;
    let started = Instant::now();
    let report = audit.verify(1, |_, _| {}).await?;
    let verify = started.elapsed();
    anyhow::ensure!(
        report.ok && report.events_checked == opts.events,
        "verification did not pass: {report:?}"
    );
    let floor = pgbench_floor(db).await?;
    Ok(RunResult {
        seal,
        verify,
        floor,
    })
}

/// One transaction rendering every record in read order, by pgbench: its latency.
async fn pgbench_floor(db: &Database) -> anyhow::Result<Duration> {
    let script = format!(
        "SELECT sum(length(r)) FROM (SELECT {} AS r FROM events e ORDER BY e.transaction_id, e.position) x;\n",
        eventstore::seal::RECORD_SQL
    );
    let args = ["-n".to_owned(), "-t".into(), "1".into()];
    // "latency average = 1234.567 ms"
    let ms = super::pgbench(db, DATABASE, &args, &script, "latency average = ").await?;
    Ok(Duration::from_secs_f64(ms / 1000.0))
}
