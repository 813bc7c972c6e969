//! `caseledger serve`: check the configuration, prepare the database, build the state from the
//! configuration, start the background tasks (wake-ups, the log's sealer, projectors, scheduler, workflow executor), serve until
//! Ctrl-C or SIGTERM, then stop them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use caseledger::config::Config;
use caseledger::db::Database;
use caseledger::AppState;
use eventstore::EventStore;

/// How often the scheduler looks for due jobs.
const SCHEDULER_POLL: Duration = Duration::from_secs(5);

pub async fn run(db: &Database, config: &Config) -> anyhow::Result<()> {
    // Every problem is reported before the database is touched.
    config.validate()?;
    tracing::info!(
        weights = ?domain::allocation::WeightsInput::from(config.allocation_weights),
        "staff allocation weights"
    );
    let pool = db.prepare(config.db_connections).await?;
    let state = AppState::new(
        EventStore::new(pool.clone()),
        Arc::new(commands::SystemClock),
        config,
    )?;
    state
        .projector
        .create_tables()
        .await
        .context("creating the read-model tables")?;
    bootstrap_admin(&state, config).await?;
    let wakeups = state.store.spawn_wakeups();
    let sealer = state.audit.sealer().clone().spawn();
    let projectors = state.projector.spawn();
    let scheduler = state
        .scheduler_running
        .then(|| state.jobs.spawn(SCHEDULER_POLL));
    let executor = if state.executor_running {
        state
            .executor
            .prepare()
            .await
            .context("creating the workflow interventions queue")?;
        Some(state.executor.clone().spawn())
    } else {
        None
    };
    let listen = config.listen;
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
    // An aborted run's lock is released with its transaction; the run row stays "running" until
    // the job's next run marks it abandoned.
    if let Some(scheduler) = scheduler {
        scheduler.abort();
    }
    // An attempt cut off here keeps its lease; when it runs out, an executor (this one after a
    // restart, or another server's) records it as interrupted and retries it as the step allows.
    if let Some(executor) = executor {
        executor.abort();
    }
    // A sealing batch cut off here rolls back; the next sealer takes it again.
    sealer.abort();
    wakeups.abort();
    pool.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// On first start, creates the configured admin if no user has that name yet.
async fn bootstrap_admin(state: &AppState, config: &Config) -> anyhow::Result<()> {
    let Some(username) = &config.admin_username else {
        return Ok(());
    };
    // `Config::validate` refused a username without a password.
    let password = config
        .admin_password
        .as_deref()
        .context("CASELEDGER_ADMIN_USERNAME is set, so CASELEDGER_ADMIN_PASSWORD must be too")?;
    let email = config
        .admin_email
        .clone()
        .unwrap_or_else(|| format!("{username}@localhost"));
    match state
        .auth
        .register(
            username,
            &email,
            domain::user::Role::Admin,
            password,
            "bootstrap",
        )
        .await
    {
        Ok(_) => tracing::info!(%username, "created the first admin"),
        Err(commands::CommandError::Rejected(commands::users::UsersRefusal::User(
            domain::user::UserError::AlreadyExists,
        ))) => {}
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
