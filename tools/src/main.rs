//! `caseledger-tools`: what developers run against Caseledger but production does not ship.
//!
//! - [`demo`]: `demo`, the seed's scale of credentialing data, through the real services.
//! - [`bench`]: `bench ...`, the benchmarks, each against a baseline measured in the same run.
//! - [`rng`]: the seeded generator behind demo and benchmark data.
//!
//! Both subcommands reach the database as `caseledger` does (`--database-url`,
//! `CASELEDGER_DATABASE_URL`, `DATABASE_URL`, the local default).

mod bench;
mod demo;
mod rng;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use api::config::Config;
use api::db::Database;
use api::AppState;
use eventstore::EventStore;

#[derive(Debug, Parser)]
#[command(
    name = "caseledger-tools",
    version,
    about = "Demo data and benchmarks for Caseledger (not part of the server)"
)]
struct Cli {
    /// PostgreSQL database to use; created if it does not exist. Without this flag:
    /// `CASELEDGER_DATABASE_URL`, then `DATABASE_URL`, then the local default. Benchmarks use
    /// databases of their own on the same server.
    #[arg(long, env = "CASELEDGER_DATABASE_URL", global = true)]
    database_url: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load demo data (the seed's scale: 220 physicians, 770 credentials), run the renewal
    /// scan, and print where to look.
    Demo {
        /// Random seed, so that two demo loads can be compared.
        #[arg(long, default_value_t = 2026)]
        seed: u64,
    },
    /// Benchmarks, each against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Rebuild rate against a hand-written replay loop, live lag, and memory. Uses (and
    /// recreates) the database `caseledger_bench_projections` on the same server.
    Projections {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 60)]
        lag_seconds: u64,
        #[arg(long, default_value_t = 500)]
        rate: u64,
        #[arg(long, default_value_t = api::REBUILD_PAGE_SIZE)]
        page_size: i64,
    },
    /// The renewal scan over many credentials against plain INSERTs of the same events. Uses
    /// (and recreates) the database `caseledger_bench_scan` on the same server.
    Scan {
        #[arg(long, default_value_t = 10_000)]
        credentials: usize,
        #[arg(long, default_value_t = 2_000)]
        due: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Ranking many staff for one piece of work: the pure ranking, the candidates query, the
    /// route's whole path, p50/p99. Uses (and recreates) the database
    /// `caseledger_bench_allocation` on the same server.
    Allocation {
        #[arg(long, default_value_t = 10_000)]
        staff: usize,
        /// Iterations per run of each database scenario (the pure ranking runs ten times as many).
        #[arg(long, default_value_t = 300)]
        iterations: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Candidates returned per ranking.
        #[arg(long, default_value_t = 5)]
        limit: usize,
    },
    /// Claim-next with concurrent claimers over many open tasks (claims/s, p50/p99) against a
    /// bare `FOR UPDATE SKIP LOCKED` claim loop on an equally indexed table. Uses (and
    /// recreates) the database `caseledger_bench_claim` on the same server.
    Claim {
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
        #[arg(long, default_value_t = 16)]
        claimers: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The workflow executor driving 5-step diamonds of `http` steps against a local receiver
    /// (runs/s, steps/s, dispatch latency p50/p99) against `pgbench` writing one row per step
    /// completion. Uses (and recreates) the database `caseledger_bench_workflows`.
    Workflows {
        #[arg(long, default_value_t = 16)]
        starters: usize,
        /// Attempts the executor runs at once (the server's CASELEDGER_WORKFLOW_CONCURRENCY).
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Sealing and verifying the log's hash chain (events/s) against PostgreSQL rendering the
    /// same records (`pgbench`). Uses (and recreates) the database `caseledger_bench_audit`.
    Audit {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Append throughput and latency against plain INSERTs, and whole commands. Uses (and
    /// recreates) the database `caseledger_bench` on the same server.
    Append {
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
        writers: Vec<usize>,
        #[arg(long, default_value_t = 10_000)]
        hot_events: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    api::init_logging();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("caseledger-tools: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let db = Database::from_cli(cli.database_url, None)?;
    match cli.command {
        Command::Demo { seed } => demo(&db, seed).await,
        Command::Bench(command) => bench(&db, command).await,
    }
}

async fn demo(db: &Database, seed: u64) -> anyhow::Result<()> {
    let pool = db.prepare(8).await?;
    let state = AppState::new(
        EventStore::new(pool.clone()),
        Arc::new(commands::SystemClock),
        &Config::default(),
    )?;
    let wakeups = state.store.spawn_wakeups();
    let projectors = state.projector.spawn();
    let result = demo::load(&state, seed).await;
    let stats =
        projections::credentialing::statistics(state.store.pool(), state.clock.now().date_naive())
            .await;
    for task in projectors {
        task.abort();
    }
    wakeups.abort();
    pool.close().await;
    let report = result?;
    println!(
        "demo data: {} physicians and {} credentials added ({} already there)",
        report.physicians_added, report.credentials_added, report.already_there
    );
    if let Some(scan) = &report.scan {
        println!("renewal scan: {scan}");
    }
    println!(
        "moved {} renewals along (items done, filed, reviewed, approved)",
        report.moved_along
    );
    if let Ok(stats) = stats {
        println!("dashboard: {}", serde_json::to_string(&stats)?);
    }
    println!(
        "\nStart the server (cargo run -p caseledger -- serve), log in as the admin, then look at:\n  \
         GET /renewals/statistics   the dashboard numbers\n  \
         GET /renewals?open=true    open renewals, most urgent first\n  \
         GET /physicians            physicians; GET /physicians/{{id}} for one's credentials\n  \
         GET /jobs                  the scheduler (renewal-scan, renewal-expiry)\n  \
         GET /docs                  every route"
    );
    Ok(())
}

async fn bench(db: &Database, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Projections {
            events,
            runs,
            lag_seconds,
            rate,
            page_size,
        } => {
            let opts = bench::projections::ProjectionsBench {
                events,
                runs: runs.max(1),
                lag_seconds,
                rate: rate.max(1),
                page_size,
            };
            bench::projections::run(db, &opts).await
        }
        BenchCommand::Audit { events, runs } => {
            let opts = bench::audit::AuditBench {
                events: events.max(1),
                runs: runs.max(1),
            };
            bench::audit::run(db, &opts).await
        }
        BenchCommand::Scan {
            credentials,
            due,
            runs,
        } => {
            let opts = bench::scan::ScanBench {
                credentials,
                due,
                runs: runs.max(1),
            };
            bench::scan::run(db, &opts).await
        }
        BenchCommand::Allocation {
            staff,
            iterations,
            runs,
            limit,
        } => {
            let opts = bench::allocation::AllocationBench {
                staff,
                iterations,
                runs: runs.max(1),
                limit: limit.clamp(1, 100),
            };
            bench::allocation::run(db, &opts).await
        }
        BenchCommand::Claim {
            tasks,
            claimers,
            seconds,
            runs,
        } => {
            let opts = bench::claim::ClaimBench {
                tasks,
                claimers: claimers.max(1),
                seconds,
                runs: runs.max(1),
            };
            bench::claim::run(db, &opts).await
        }
        BenchCommand::Workflows {
            starters,
            concurrency,
            seconds,
            runs,
        } => {
            let opts = bench::workflows::WorkflowsBench {
                starters: starters.max(1),
                seconds,
                runs: runs.max(1),
                concurrency: concurrency.max(1),
            };
            bench::workflows::run(db, &opts).await
        }
        BenchCommand::Append {
            seconds,
            runs,
            writers,
            hot_events,
        } => {
            let opts = bench::AppendBench {
                seconds,
                runs: runs.max(1),
                writers,
                hot_events,
            };
            bench::append::run(db, &opts).await
        }
    }
}
