//! The `caseledger` command line: `serve`, `migrate`, `bench append`.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use caseledger::db::{Database, DEFAULT_DATABASE_URL};
use caseledger::{bench, AppState};
use commands::EventStore;

#[derive(Debug, Parser)]
#[command(
    name = "caseledger",
    version,
    about = "Event-sourced backend for healthcare operations work"
)]
struct Cli {
    /// PostgreSQL database to use; created at start if it does not exist.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    database_url: String,

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
    },
    /// Create the database if missing and apply migrations, then exit.
    Migrate,
    /// Benchmarks, each against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
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
    let db = Database::from_url(&cli.database_url)?;
    match cli.command {
        Command::Migrate => {
            let pool = db.prepare(2).await?;
            tracing::info!(database = %db.display_url, "migrations applied");
            pool.close().await;
        }
        Command::Serve {
            listen,
            db_connections,
        } => {
            let pool = db.prepare(db_connections).await?;
            let store = EventStore::new(pool.clone());
            let wakeups = store.spawn_wakeups();
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("could not listen on {listen}"))?;
            tracing::info!(address = %listen, database = %db.display_url, "caseledger serving");
            caseledger::serve(listener, AppState { store }, shutdown_signal())
                .await
                .context("server failed")?;
            wakeups.abort();
            pool.close().await;
            tracing::info!("stopped");
        }
        Command::Bench(BenchCommand::Append {
            seconds,
            runs,
            writers,
            hot_events,
        }) => {
            bench::run(
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
