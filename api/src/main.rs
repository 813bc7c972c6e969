//! The `caseledger` command line: `serve`, `migrate`, `bench append`.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use caseledger::db::{Database, DEFAULT_DATABASE_URL};
use caseledger::{bench, AppState};
use eventstore::EventStore;

#[derive(Debug, Parser)]
#[command(
    name = "caseledger",
    version,
    about = "Event-sourced backend for healthcare operations work"
)]
struct Cli {
    /// PostgreSQL database to use; created at start if it does not exist. Without this flag:
    /// `CASELEDGER_DATABASE_URL`, then `DATABASE_URL`, then the local default.
    #[arg(long, env = "CASELEDGER_DATABASE_URL", global = true)]
    database_url: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the database if missing, apply migrations, and serve the HTTP API.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "CASELEDGER_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Most database connections the server holds.
        #[arg(long, env = "CASELEDGER_DB_CONNECTIONS", default_value_t = 20)]
        db_connections: u32,
        /// Browser origins allowed to call the API (comma-separated); none = same-origin only.
        #[arg(long, env = "CASELEDGER_CORS_ORIGINS", value_delimiter = ',')]
        cors_origins: Vec<String>,
        /// Seconds a request may take before it is answered with a timeout.
        #[arg(long, env = "CASELEDGER_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
        request_timeout_secs: u64,
        /// Largest request body accepted, in bytes.
        #[arg(long, env = "CASELEDGER_BODY_LIMIT_BYTES", default_value_t = 1024 * 1024)]
        body_limit_bytes: usize,
        /// Job intervals overriding the defaults, as NAME=SECONDS pairs (comma-separated), e.g.
        /// `renewal-scan=21600,renewal-expiry=3600`.
        #[arg(long, env = "CASELEDGER_JOB_INTERVALS", value_delimiter = ',')]
        job_intervals: Vec<String>,
        /// Webhook that receives notifications (http or https); without it they go to the log.
        #[arg(long, env = "CASELEDGER_WEBHOOK_URL")]
        webhook_url: Option<String>,
        /// Shared secret for the webhook's HMAC-SHA256 signature (16+ characters).
        #[arg(long, env = "CASELEDGER_WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: Option<String>,
        /// Seconds a webhook receiver may take to answer before the attempt counts as failed.
        #[arg(long, env = "CASELEDGER_WEBHOOK_TIMEOUT_SECS", default_value_t = 10)]
        webhook_timeout_secs: u64,
        /// The contact line at the end of every notification.
        #[arg(long, env = "CASELEDGER_NOTIFICATION_CONTACT", default_value = caseledger::DEFAULT_CONTACT)]
        notification_contact: String,
        /// Do not run the job scheduler in this process (jobs still run on request).
        #[arg(long, env = "CASELEDGER_NO_SCHEDULER")]
        no_scheduler: bool,
        /// Staff allocation weights overriding the defaults, as FACTOR=WEIGHT pairs
        /// (comma-separated), e.g. `skill_match=30,availability=20,travel_distance=0`; factors:
        /// skill_match, availability, travel_distance, workload, continuity, preference.
        #[arg(long, env = "CASELEDGER_ALLOCATION_WEIGHTS")]
        allocation_weights: Option<String>,
    },
    /// Load demo data (the seed's scale: 220 physicians, 770 credentials), run the renewal
    /// scan, and print where to look.
    Demo {
        /// Random seed, so that two demo loads can be compared.
        #[arg(long, default_value_t = 2026)]
        seed: u64,
    },
    /// Create the database if missing and apply migrations, then exit.
    Migrate,
    /// Manage users (the first admin, typically).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Inspect, rebuild and verify read models.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Benchmarks, each against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create a user. The password comes from CASELEDGER_PASSWORD (so that it stays out of the
    /// shell history) or --password.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
        /// admin, staff, viewer, system or auditor.
        #[arg(long)]
        role: domain::user::Role,
        #[arg(long, env = "CASELEDGER_PASSWORD", hide_env_values = true)]
        password: String,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Each projection's checkpoint, the head, lag, state and last error.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replay from position zero into fresh tables, then swap them in; queries keep reading
    /// the old tables until the swap.
    Rebuild { name: String },
    /// Rebuild into scratch tables and compare them with the live ones, row by row. Exits
    /// non-zero when they differ.
    Verify { name: String },
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
        #[arg(long, default_value_t = caseledger::REBUILD_PAGE_SIZE)]
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("caseledger: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // `cargo test`'s harness needs DATABASE_URL to name a database that always exists (it
    // creates one per test there), so under cargo the server's own database comes from
    // CASELEDGER_DATABASE_URL (see .cargo/config.toml); deployments just set DATABASE_URL.
    let url = cli
        .database_url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let db = Database::from_url(&url)?;
    match cli.command {
        Command::Migrate => {
            let pool = db.prepare(2).await?;
            tracing::info!(database = %db.display_url, "migrations applied");
            pool.close().await;
        }
        Command::Serve {
            listen,
            db_connections,
            cors_origins,
            request_timeout_secs,
            body_limit_bytes,
            job_intervals,
            no_scheduler,
            allocation_weights,
            webhook_url,
            webhook_secret,
            webhook_timeout_secs,
            notification_contact,
        } => {
            let intervals = parse_job_intervals(&job_intervals)?;
            let allocation_weights = caseledger::routes::staff::parse_weights(
                allocation_weights.as_deref().unwrap_or(""),
            )
            .map_err(|e| anyhow::anyhow!("CASELEDGER_ALLOCATION_WEIGHTS: {e}"))?;
            let channel = commands::notifications::channel_from_config(
                webhook_url.as_deref(),
                webhook_secret.as_deref(),
                std::time::Duration::from_secs(webhook_timeout_secs.max(1)),
            )?;
            let cors_origins = cors_origins
                .iter()
                .filter(|o| !o.is_empty())
                .map(|o| {
                    axum::http::HeaderValue::from_str(o)
                        .with_context(|| format!("CORS origin {o:?} is not a valid header value"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let pool = db.prepare(db_connections).await?;
            let mut state = AppState::new(EventStore::new(pool.clone()))
                .with_notifications(channel, notification_contact);
            state.http = caseledger::layers::HttpConfig {
                timeout: std::time::Duration::from_secs(request_timeout_secs.max(1)),
                body_limit: body_limit_bytes,
                cors_origins,
            };
            state.allocation_weights = allocation_weights;
            tracing::info!(
                weights = ?domain::allocation::WeightsInput::from(allocation_weights),
                "staff allocation weights"
            );
            state
                .projector
                .create_tables()
                .await
                .context("creating the read-model tables")?;
            bootstrap_admin(&state).await?;
            let wakeups = state.store.spawn_wakeups();
            let projectors = state.projector.spawn();
            state.jobs = state
                .jobs
                .clone()
                .with_intervals(intervals)
                .map_err(|e| anyhow::anyhow!("CASELEDGER_JOB_INTERVALS: {e}"))?;
            let scheduler = if no_scheduler {
                None
            } else {
                state.scheduler_running = true;
                Some(state.jobs.spawn(SCHEDULER_POLL))
            };
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("could not listen on {listen}"))?;
            tracing::info!(address = %listen, database = %db.display_url, "caseledger serving");
            caseledger::serve(listener, state, shutdown_signal())
                .await
                .context("server failed")?;
            // Aborting a projector is safe: its open page rolls back with its connection.
            for task in projectors {
                task.abort();
            }
            // An aborted run's lock is released with its transaction; the run row stays
            // "running" until the job's next run marks it abandoned.
            if let Some(scheduler) = scheduler {
                scheduler.abort();
            }
            wakeups.abort();
            pool.close().await;
            tracing::info!("stopped");
        }
        Command::Users(UsersCommand::Create {
            username,
            email,
            role,
            password,
        }) => {
            let pool = db.prepare(2).await?;
            let state = AppState::new(EventStore::new(pool.clone()));
            let result = state
                .auth
                .register(&username, &email, role, &password, "cli")
                .await;
            pool.close().await;
            result.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created {role} {username}");
        }
        Command::Demo { seed } => {
            let pool = db.prepare(8).await?;
            let state = AppState::new(EventStore::new(pool.clone()));
            let wakeups = state.store.spawn_wakeups();
            let projectors = state.projector.spawn();
            let result = caseledger::demo::load(&state, seed).await;
            let stats = projections::credentialing::statistics(
                state.store.pool(),
                state.clock.now().date_naive(),
            )
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
        }
        Command::Projections(command) => {
            let pool = db.prepare(4).await?;
            let state = AppState::new(EventStore::new(pool.clone()));
            let result = projections_command(&state, command).await;
            pool.close().await;
            result?;
        }
        Command::Bench(BenchCommand::Projections {
            events,
            runs,
            lag_seconds,
            rate,
            page_size,
        }) => {
            let opts = bench::projections::ProjectionsBench {
                events,
                runs: runs.max(1),
                lag_seconds,
                rate: rate.max(1),
                page_size,
            };
            bench::projections::run(&db, &opts).await?;
        }
        Command::Bench(BenchCommand::Scan {
            credentials,
            due,
            runs,
        }) => {
            let opts = bench::scan::ScanBench {
                credentials,
                due,
                runs: runs.max(1),
            };
            bench::scan::run(&db, &opts).await?;
        }
        Command::Bench(BenchCommand::Allocation {
            staff,
            iterations,
            runs,
            limit,
        }) => {
            let opts = bench::allocation::AllocationBench {
                staff,
                iterations,
                runs: runs.max(1),
                limit: limit.clamp(1, 100),
            };
            bench::allocation::run(&db, &opts).await?;
        }
        Command::Bench(BenchCommand::Claim {
            tasks,
            claimers,
            seconds,
            runs,
        }) => {
            let opts = bench::claim::ClaimBench {
                tasks,
                claimers: claimers.max(1),
                seconds,
                runs: runs.max(1),
            };
            bench::claim::run(&db, &opts).await?;
        }
        Command::Bench(BenchCommand::Append {
            seconds,
            runs,
            writers,
            hot_events,
        }) => {
            bench::append::run(
                &db,
                &bench::AppendBench {
                    seconds,
                    runs: runs.max(1),
                    writers,
                    hot_events,
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// How often the scheduler looks for due jobs.
const SCHEDULER_POLL: std::time::Duration = std::time::Duration::from_secs(5);

fn parse_job_intervals(
    pairs: &[String],
) -> anyhow::Result<std::collections::HashMap<String, std::time::Duration>> {
    let mut out = std::collections::HashMap::new();
    for pair in pairs.iter().filter(|p| !p.trim().is_empty()) {
        let (name, seconds) = pair
            .split_once('=')
            .with_context(|| format!("CASELEDGER_JOB_INTERVALS: {pair:?} is not NAME=SECONDS"))?;
        let seconds: u64 = seconds
            .trim()
            .parse()
            .ok()
            .filter(|s| (1..=366 * 24 * 3600).contains(s))
            .with_context(|| {
                format!("CASELEDGER_JOB_INTERVALS: {seconds:?} is not a number of seconds from 1 to a year")
            })?;
        out.insert(
            name.trim().to_owned(),
            std::time::Duration::from_secs(seconds),
        );
    }
    Ok(out)
}

async fn projections_command(state: &AppState, command: ProjectionsCommand) -> anyhow::Result<()> {
    let find = |name: &str| {
        state.projector.find(name).with_context(|| {
            let known: Vec<&str> = state
                .projector
                .projections()
                .iter()
                .map(|p| p.name())
                .collect();
            format!(
                "no projection is named {name:?}; known: {}",
                known.join(", ")
            )
        })
    };
    let page_size = caseledger::REBUILD_PAGE_SIZE;
    match command {
        ProjectionsCommand::Status { json } => {
            let status = caseledger::projection_status(&state.store, &state.projector).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!(
                    "{:<20} {:<12} {:>14} {:>12} {:>10}  last error",
                    "projection", "state", "checkpoint", "lag events", "lag s"
                );
                for s in status {
                    let state = serde_json::to_value(s.state)?;
                    println!(
                        "{:<20} {:<12} {:>14} {:>12} {:>10.1}  {}",
                        s.name,
                        state.as_str().unwrap_or("?"),
                        s.checkpoint.to_string(),
                        s.lag_events,
                        s.lag_seconds,
                        s.last_error
                            .map(|e| format!(
                                "{e} (at position {})",
                                s.last_error_position.unwrap_or(0)
                            ))
                            .unwrap_or_default()
                    );
                }
            }
        }
        ProjectionsCommand::Rebuild { name } => {
            let projection = find(&name)?;
            let bar = progress_bar();
            let report =
                projections::rebuild::rebuild(&state.store, projection.as_ref(), page_size, |p| {
                    bar.set_length(p.events_total);
                    bar.set_position(p.events_done);
                })
                .await?;
            bar.finish_and_clear();
            println!(
                "rebuilt {}: {} events in {:.1} s, checkpoint {}",
                report.projection, report.events, report.seconds, report.checkpoint
            );
        }
        ProjectionsCommand::Verify { name } => {
            let projection = find(&name)?;
            let bar = progress_bar();
            let report =
                projections::rebuild::verify(&state.store, projection.as_ref(), page_size, |p| {
                    bar.set_length(p.events_total);
                    bar.set_position(p.events_done);
                })
                .await?;
            bar.finish_and_clear();
            for t in &report.tables {
                let verdict = if t.only_live.is_empty() && t.only_rebuilt.is_empty() {
                    "equal"
                } else {
                    "DIFFERENT"
                };
                println!(
                    "{}: {verdict} (live {} rows, rebuilt {} rows)",
                    t.table, t.live_rows, t.rebuilt_rows
                );
                for row in &t.only_live {
                    println!("  only live:    {row}");
                }
                for row in &t.only_rebuilt {
                    println!("  only rebuilt: {row}");
                }
            }
            if !report.equal {
                anyhow::bail!(
                    "{} differs from a rebuild at checkpoint {}",
                    report.projection,
                    report.checkpoint
                );
            }
            println!(
                "{} equals a rebuild at checkpoint {}",
                report.projection, report.checkpoint
            );
        }
    }
    Ok(())
}

fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} events  {per_sec}  eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// On first start, creates the admin named by CASELEDGER_ADMIN_USERNAME (with
/// CASELEDGER_ADMIN_EMAIL and CASELEDGER_ADMIN_PASSWORD) if it does not exist yet.
async fn bootstrap_admin(state: &AppState) -> anyhow::Result<()> {
    let Ok(username) = std::env::var("CASELEDGER_ADMIN_USERNAME") else {
        return Ok(());
    };
    let password = std::env::var("CASELEDGER_ADMIN_PASSWORD")
        .context("CASELEDGER_ADMIN_USERNAME is set, so CASELEDGER_ADMIN_PASSWORD must be too")?;
    let email =
        std::env::var("CASELEDGER_ADMIN_EMAIL").unwrap_or_else(|_| format!("{username}@localhost"));
    match state
        .auth
        .register(
            &username,
            &email,
            domain::user::Role::Admin,
            &password,
            "bootstrap",
        )
        .await
    {
        Ok(_) => tracing::info!(%username, "created the first admin"),
        Err(commands::users::UsersError::User(domain::user::UserError::AlreadyExists)) => {}
        Err(e) => anyhow::bail!("could not create the admin {username:?}: {e}"),
    }
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
