//! `caseledger-tools bench scan`: the renewal scan over many credentials, some of them due.
//!
//! Each run loads `credentials` credentials (one physician per ten), `due` of them expiring
//! within the scan's 90 days and the rest later, lets the read model catch up, and times:
//! - the scan that opens a renewal for every due credential (wall time, renewals per second);
//! - the same scan again, which finds every due credential covered and opens nothing;
//! - the ceiling, in the same database: plain INSERTs of the same two events per renewal (the
//!   renewal's first event and the credential's), one transaction each, at the scan's
//!   concurrency; no reads, no decisions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use futures_util::StreamExt;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use commands::credentialing::Credentialing;
use commands::SystemClock;
use domain::credential::CredentialKind;
use domain::jurisdiction::Jurisdiction;
use domain::physician::{Npi, PhysicianDetails};
use eventstore::{EventStore, Metadata};

use super::{fresh_database, median};
use api::db::Database;
use commands::jobs::RenewalScan;

const DATABASE: &str = "caseledger_bench_scan";

/// Commands in flight while loading the data (not measured).
const LOAD_CONCURRENCY: usize = 8;

/// Settings of one benchmark invocation.
#[derive(Debug, Clone)]
pub struct ScanBench {
    pub credentials: usize,
    pub due: usize,
    pub runs: usize,
}

struct RunResult {
    scan: Duration,
    opened: u64,
    rescan: Duration,
    ceiling: Duration,
}

pub async fn run(db: &Database, opts: &ScanBench) -> anyhow::Result<()> {
    anyhow::ensure!(
        opts.due <= opts.credentials,
        "--due must not exceed --credentials"
    );
    let mut results = Vec::new();
    for run in 1..=opts.runs {
        let pool = fresh_database(db, DATABASE).await?;
        let result = one_run(&pool, opts).await;
        pool.close().await;
        let r = result?;
        println!(
            "run {run}: scan {:.2} s, {} opened ({:.0}/s); rescan {:.2} s; ceiling {:.2} s ({:.0}/s)",
            r.scan.as_secs_f64(),
            r.opened,
            r.opened as f64 / r.scan.as_secs_f64(),
            r.rescan.as_secs_f64(),
            r.ceiling.as_secs_f64(),
            opts.due as f64 / r.ceiling.as_secs_f64(),
        );
        results.push(r);
    }
    super::drop_database(db, DATABASE).await?;
    let scan = median(results.iter().map(|r| r.scan.as_secs_f64()).collect());
    let rate = median(
        results
            .iter()
            .map(|r| r.opened as f64 / r.scan.as_secs_f64())
            .collect(),
    );
    let rescan = median(results.iter().map(|r| r.rescan.as_secs_f64()).collect());
    let ceiling = median(
        results
            .iter()
            .map(|r| opts.due as f64 / r.ceiling.as_secs_f64())
            .collect(),
    );
    let ratios: Vec<f64> = results
        .iter()
        .map(|r| {
            (r.opened as f64 / r.scan.as_secs_f64()) / (opts.due as f64 / r.ceiling.as_secs_f64())
        })
        .collect();
    println!(
        "\nscan over {} credentials ({} due), median of {} runs:\n  \
         wall time {:.2} s, {:.0} renewals opened/s\n  \
         rescan (nothing to open) {:.2} s\n  \
         ceiling (plain INSERTs of the same events) {:.0}/s; scan/ceiling {:.0} % (runs: {})",
        opts.credentials,
        opts.due,
        opts.runs,
        scan,
        rate,
        rescan,
        ceiling,
        median(ratios.clone()) * 100.0,
        ratios
            .iter()
            .map(|r| format!("{:.0} %", r * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

async fn one_run(pool: &PgPool, opts: &ScanBench) -> anyhow::Result<RunResult> {
    let store = EventStore::new(pool.clone());
    let credentialing = Arc::new(Credentialing::new(store.clone(), Arc::new(SystemClock)));
    load(&credentialing, opts).await?;
    let projector = projections::Projector::new(
        store.clone(),
        projections::all(),
        projections::RuntimeConfig::default(),
    );
    let wakeups = store.spawn_wakeups();
    let tasks = projector.spawn();
    let caught_up =
        || projections::wait::until_caught_up(&store, &["credentialing"], Duration::from_secs(600));
    caught_up()
        .await
        .context("the read model did not catch up")?;

    let scan = RenewalScan {
        credentialing: credentialing.clone(),
        pool: pool.clone(),
    };
    let started = Instant::now();
    let report = scan.scan(Utc::now()).await?;
    let scan_time = started.elapsed();
    anyhow::ensure!(
        report.opened as usize == opts.due && report.failed == 0,
        "the scan opened {} of {} due ({} failed)",
        report.opened,
        opts.due,
        report.failed
    );
    caught_up()
        .await
        .context("the read model did not catch up")?;
    let started = Instant::now();
    let again = scan.scan(Utc::now()).await?;
    let rescan = started.elapsed();
    anyhow::ensure!(again.opened == 0, "the rescan opened {}", again.opened);
    for task in tasks {
        task.abort();
    }
    wakeups.abort();

    let ceiling = ceiling(pool, opts.due).await?;
    Ok(RunResult {
        scan: scan_time,
        opened: report.opened,
        rescan,
        ceiling,
    })
}

/// Physicians and credentials through the ordinary commands (not measured).
async fn load(credentialing: &Arc<Credentialing>, opts: &ScanBench) -> anyhow::Result<()> {
    let meta = Metadata::by("bench");
    let today = Utc::now().date_naive();
    let tx = Jurisdiction::parse("TX")?;
    let physicians = opts.credentials.div_ceil(10);
    let ids: Vec<Uuid> = futures_util::stream::iter(0..physicians)
        .map(|i| {
            let meta = meta.clone();
            async move {
                let nine = format!("{:09}", 100_000_000 + i);
                let npi = Npi::with_check_digit(&nine)
                    .ok_or_else(|| anyhow::anyhow!("{nine} are not nine digits"))?;
                let details = PhysicianDetails {
                    name: format!("Bench Physician {i}"),
                    email: format!("bench{i}@example.org"),
                    specialty: "Family Medicine".into(),
                    states: vec![tx],
                };
                let outcome = credentialing
                    .register_physician(npi, details, &meta)
                    .await?;
                anyhow::Ok(outcome.stream_id)
            }
        })
        .buffer_unordered(LOAD_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let results = futures_util::stream::iter(0..opts.credentials)
        .map(|i| {
            let meta = meta.clone();
            let physician = ids[i / 10];
            async move {
                // Due ones spread over the next 90 days; the others from 120 days to 3 years.
                let days = if i < opts.due {
                    1 + (i as i64 % 89)
                } else {
                    120 + (i as i64 % 900)
                };
                credentialing
                    .register_credential(
                        physician,
                        CredentialKind::License,
                        tx,
                        format!("BENCH-{i}"),
                        today + chrono::Duration::days(days),
                        &meta,
                    )
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(LOAD_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    for r in results {
        r.context("loading a credential")?;
    }
    Ok(())
}

/// The same two events per renewal as plain INSERTs, one transaction per renewal, at the
/// scan's concurrency.
async fn ceiling(pool: &PgPool, n: usize) -> anyhow::Result<Duration> {
    let payload = json!({"credential_id": Uuid::nil(), "physician_id": Uuid::nil(), "kind": "license",
        "jurisdiction": "TX", "credential_expiry": "2027-01-01", "origin": "scan", "at": Utc::now(),
        "checklist": (0..8).map(|i| json!({"key": format!("item_{i}"), "title": "A checklist item of typical length",
            "required": true, "due": "2026-12-01", "fee_cents": null})).collect::<Vec<_>>()});
    let started = Instant::now();
    let results = futures_util::stream::iter(0..n)
        .map(|_| {
            let payload = payload.clone();
            async move {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "INSERT INTO events (stream_id, stream_type, version, event_type, schema_version, payload, actor, correlation_id) \
                     VALUES ($1, 'ceiling_renewal', 1, 'RenewalInitiated', 1, $2, 'bench', $3), \
                            ($4, 'ceiling_credential', 1, 'RenewalOpened', 1, $5, 'bench', $3)",
                )
                .bind(Uuid::new_v4())
                .bind(&payload)
                .bind(Uuid::new_v4())
                .bind(Uuid::new_v4())
                .bind(json!({"renewal_id": Uuid::new_v4()}))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(commands::jobs::SCAN_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let elapsed = started.elapsed();
    for r in results {
        r?;
    }
    Ok(elapsed)
}
