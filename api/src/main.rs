//! The `caseledger` command line: `serve`, `migrate`, `users create`, `users reactivate`,
//! `projections ...`, `audit ...`.
//!
//! [`Cli`] is the whole grammar; [`run`] resolves the database and hands each subcommand to a
//! function of its own (the longer ones in `cli/`). Demo data and benchmarks are not here: they
//! are the `caseledger-tools` binary.

mod cli;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use caseledger::config::Config;
use caseledger::db::Database;
use caseledger::AppState;
use eventstore::EventStore;

#[derive(Debug, Parser)]
#[command(
    name = "caseledger",
    version,
    about = "Event-sourced backend for healthcare operations work"
)]
struct Cli {
    /// The admin (bootstrap) URL: creates the database and roles if missing and applies
    /// migrations. Without this flag: `CASELEDGER_DATABASE_URL`, then `DATABASE_URL`, then the
    /// local default (none when only --app-database-url is given).
    #[arg(long, env = "CASELEDGER_DATABASE_URL", global = true)]
    database_url: Option<String>,

    /// What the server connects as: role `caseledger_app`, which can append to the log but not
    /// rewrite it. Defaults to the admin URL with that user and no password.
    #[arg(
        long,
        env = "CASELEDGER_APP_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    app_database_url: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the database if missing, apply migrations, and serve the HTTP API.
    Serve(Box<Config>),
    /// With the admin URL: create the database and roles if missing, apply migrations and
    /// grant the server's role what it needs, then exit.
    Migrate,
    /// Manage users (the first admin, typically).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Inspect, rebuild and verify read models.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// The log's hash chain: verify it, sign a checkpoint, export it, show the public key.
    Audit {
        /// The checkpoint signing key (as `serve` uses it).
        #[arg(
            long,
            env = "CASELEDGER_AUDIT_KEY_FILE",
            default_value = caseledger::config::DEFAULT_AUDIT_KEY_FILE
        )]
        key_file: std::path::PathBuf,
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain and check every signed checkpoint against this server's key;
    /// names the first event that does not match and exits non-zero.
    Verify {
        /// Start at this event's cursor (e.g. `812-40`), trusting the chain before it.
        #[arg(long)]
        from: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the public half of the checkpoint signing key (hex), for auditors to trust.
    PublicKey,
    /// Sign and append a checkpoint of the chain's head now.
    Checkpoint,
    /// Write the sealed log as NDJSON to a file, for verification elsewhere (docs/audit.md).
    Export {
        #[arg(long)]
        out: std::path::PathBuf,
    },
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
    /// Let a deactivated user log in again, with the password they had (say, an admin who was
    /// deactivated by mistake).
    Reactivate {
        #[arg(long)]
        username: String,
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

#[tokio::main]
async fn main() -> ExitCode {
    caseledger::init_logging();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("caseledger: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let db = Database::from_cli(cli.database_url, cli.app_database_url)?;
    match cli.command {
        Command::Serve(config) => cli::serve::run(&db, &config).await,
        Command::Migrate => migrate(&db).await,
        Command::Users(UsersCommand::Create {
            username,
            email,
            role,
            password,
        }) => create_user(&db, &username, &email, role, &password).await,
        Command::Users(UsersCommand::Reactivate { username }) => {
            reactivate_user(&db, &username).await
        }
        Command::Projections(command) => projections(&db, command).await,
        Command::Audit { key_file, command } => cli::audit::run(&db, key_file, command).await,
    }
}

async fn migrate(db: &Database) -> anyhow::Result<()> {
    let pool = db.prepare(2).await?;
    tracing::info!(database = %db.display_url, "migrations applied");
    pool.close().await;
    Ok(())
}

/// The state a one-off command works with: the defaults, the wall clock.
fn one_off_state(pool: &sqlx::PgPool) -> anyhow::Result<AppState> {
    Ok(AppState::new(
        EventStore::new(pool.clone()),
        Arc::new(commands::SystemClock),
        &Config::default(),
    )?)
}

async fn create_user(
    db: &Database,
    username: &str,
    email: &str,
    role: domain::user::Role,
    password: &str,
) -> anyhow::Result<()> {
    let pool = db.prepare(2).await?;
    let result = match one_off_state(&pool) {
        Ok(state) => state
            .auth
            .register(username, email, role, password, "cli")
            .await
            .map_err(|e| anyhow::anyhow!("{e}")),
        Err(e) => Err(e),
    };
    pool.close().await;
    result?;
    println!("created {role} {username}");
    Ok(())
}

async fn reactivate_user(db: &Database, username: &str) -> anyhow::Result<()> {
    let name = domain::user::Username::parse(username)?;
    let pool = db.prepare(2).await?;
    let result = match one_off_state(&pool) {
        Ok(state) => state
            .auth
            .reactivate(&name, "cli")
            .await
            .map_err(|e| anyhow::anyhow!("{e}")),
        Err(e) => Err(e),
    };
    pool.close().await;
    result?;
    println!("reactivated {username}");
    Ok(())
}

async fn projections(db: &Database, command: ProjectionsCommand) -> anyhow::Result<()> {
    let pool = db.prepare(4).await?;
    let result = match one_off_state(&pool) {
        Ok(state) => cli::projections::run(&state, command).await,
        Err(e) => Err(e),
    };
    pool.close().await;
    result
}
