//! The Caseledger server and command-line binary.
//!
//! A tour:
//! - [`app`] builds the whole HTTP application from an [`AppState`]; tests drive it with `oneshot`
//!   or serve it on a random port.
//! - [`routes`]: one module per resource, each declaring its routes (path, OpenAPI, who may
//!   call them) in one `routes()`; [`routes::ALL`] lists them.
//! - [`error`]: [`error::ApiError`], the one mapping from failures to problem+json responses.
//! - [`db`]: connecting, creating the database if missing, migrating, and the clear message when
//!   no server answers.
//! - [`config`]: the server's configuration, one typed struct from flags and environment, which
//!   [`AppState::new`] is built from.
//! - [`auth`]: the HTTP side of authentication (the bearer token, the [`auth::Caller`]
//!   extension); users, sessions, notifications and the scheduled jobs are `commands`
//!   services that [`AppState`] holds.
//! - `main.rs`: the command line (`serve`, `migrate`, `users`, `projections`). Demo data and
//!   benchmarks are another binary, `caseledger-tools` (the `tools` crate).

pub mod as_of;
pub mod auth;
pub mod config;
pub mod consistency;
pub mod db;
pub mod error;
pub mod extract;
pub mod layers;
pub mod metrics;
pub mod openapi;
pub mod permissions;
pub mod routes;

use std::time::Duration;

use axum::Router;
use eventstore::EventStore;
use projections::{ProjectionStatus, Projector};

/// Events per transaction when rebuilding or verifying a read model: bigger than a live page,
/// since nobody waits for the first ones.
pub const REBUILD_PAGE_SIZE: i64 = 2_000;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: EventStore,
    /// The read models this server knows (and, under `serve`, runs).
    pub projector: Projector,
    /// Longest a query waits for its read model to reach a requested cursor.
    pub read_wait: Duration,
    /// Timeouts, limits and CORS.
    pub http: layers::HttpConfig,
    /// Users, logins and sessions.
    pub auth: commands::users::Users,
    /// Request counts and latencies, lag; served at `/metrics`.
    pub metrics: metrics::Metrics,
    /// The time as the domain sees it (the wall clock, or a test's).
    pub clock: std::sync::Arc<dyn commands::Clock>,
    /// Physicians, credentials and renewals.
    pub credentialing: std::sync::Arc<commands::credentialing::Credentialing>,
    /// Scheduled jobs; `caseledger serve` runs their scheduler.
    pub jobs: commands::jobs::JobRunner,
    /// Practices and physician assignment.
    pub practices: std::sync::Arc<commands::practices::Practices>,
    /// Departments, queues, grants, tasks and cases.
    pub work: std::sync::Arc<commands::workqueue::WorkQueues>,
    /// What the jobs work with (the notification service and its channel among it).
    pub job_deps: commands::jobs::JobDeps,
    /// Whether this process runs the job scheduler (shown at `GET /jobs`): `serve` starts it
    /// unless configured not to.
    pub scheduler_running: bool,
    /// Staff members and the allocation of work to them, ranking by the configured weights
    /// ([`config::Config::allocation_weights`]) unless a request gives its own.
    pub staffing: std::sync::Arc<commands::staffing::Staffing>,
    /// Workflow definitions and runs.
    pub workflows: std::sync::Arc<commands::workflows::Workflows>,
    /// Drives workflow runs; `serve` spawns it unless configured not to.
    pub executor: commands::workflows::Executor,
    /// Whether this process runs the workflow executor.
    pub executor_running: bool,
    /// Signed checkpoints of the log's hash chain and its verification; `serve` runs the
    /// sealer.
    pub audit: std::sync::Arc<commands::audit::Audit>,
    /// Set when the server begins to shut down, so that endless responses (the SSE feed) end
    /// and graceful shutdown can finish.
    pub shutting_down: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl AppState {
    /// State as `config` says, whose time (session expiry, lockouts, due dates) comes from
    /// `clock`. Notifications go where the configuration's webhook settings say.
    pub fn new(
        store: EventStore,
        clock: std::sync::Arc<dyn commands::Clock>,
        config: &config::Config,
    ) -> Result<Self, config::ConfigError> {
        Self::with_channel(store, clock, config, config.channel()?)
    }

    /// As [`AppState::new`], with notifications sent through `channel` instead (tests give a
    /// channel of their own).
    pub fn with_channel(
        store: EventStore,
        clock: std::sync::Arc<dyn commands::Clock>,
        config: &config::Config,
        channel: std::sync::Arc<dyn commands::notifications::NotificationChannel>,
    ) -> Result<Self, config::ConfigError> {
        let mut auth = commands::users::Users::new(store.clone(), clock.clone());
        if let Some(limit) = config.login_limit {
            auth = auth.with_login_limits(limit, limit);
        }
        let credentialing = std::sync::Arc::new(commands::credentialing::Credentialing::new(
            store.clone(),
            clock.clone(),
        ));
        let practices = std::sync::Arc::new(commands::practices::Practices::new(
            store.clone(),
            clock.clone(),
        ));
        let work = std::sync::Arc::new(commands::workqueue::WorkQueues::new(
            store.clone(),
            clock.clone(),
        ));
        let audit = std::sync::Arc::new(commands::audit::Audit::new(
            store.clone(),
            std::sync::Arc::new(config.audit_key()?),
            clock.clone(),
        ));
        let job_deps = commands::jobs::JobDeps {
            pool: store.pool().clone(),
            credentialing: credentialing.clone(),
            notifications: std::sync::Arc::new(commands::notifications::Notifications::new(
                store.clone(),
                clock.clone(),
                channel,
                config.notification_contact.clone(),
            )),
            work: work.clone(),
            audit: audit.clone(),
        };
        let jobs = commands::jobs::JobRunner::new(
            store.pool().clone(),
            clock.clone(),
            commands::jobs::all(&job_deps),
        )
        .with_intervals(config.job_intervals.0.clone())?;
        let staffing = std::sync::Arc::new(commands::staffing::Staffing::new(
            store.clone(),
            clock.clone(),
            config.allocation_weights,
        ));
        let workflows = std::sync::Arc::new(commands::workflows::Workflows::new(
            store.clone(),
            clock.clone(),
            commands::workflows::kinds::Kinds::standard(work.clone(), config.workflow_http()),
        ));
        let executor = commands::workflows::Executor::new(
            workflows.clone(),
            work.clone(),
            config.workflows.executor(),
        );
        let projector = Projector::new(
            store.clone(),
            projections::all(),
            projections::RuntimeConfig::default(),
        );
        Ok(Self {
            store,
            projector,
            read_wait: config.read_wait,
            http: config.http.clone(),
            auth,
            metrics: metrics::Metrics::default(),
            clock,
            credentialing,
            jobs,
            job_deps,
            practices,
            work,
            scheduler_running: !config.no_scheduler,
            staffing,
            workflows,
            executor,
            executor_running: !config.workflows.no_workflow_executor,
            audit,
            shutting_down: std::sync::Arc::new(tokio::sync::watch::Sender::new(false)),
        })
    }
}

/// Logs to standard error, filtered by `RUST_LOG` (default `info,sqlx=warn`): the set-up both
/// binaries (`caseledger`, `caseledger-tools`) start with.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Status of every projection, as operators see it (CLI and admin route).
pub async fn projection_status(
    store: &EventStore,
    projector: &Projector,
) -> Result<Vec<ProjectionStatus>, error::ApiError> {
    let head = store.head().await?;
    let mut out = Vec::new();
    for p in projector.projections() {
        out.push(
            projections::checkpoint::status(
                store.pool(),
                p.name(),
                head,
                projector.config().page_size,
            )
            .await
            .map_err(error::ApiError::internal)?,
        );
    }
    Ok(out)
}

/// The HTTP application, with its layers: request ids (`x-request-id`, generated when absent and
/// echoed back), a tracing span per request, a timeout, a body-size limit, CORS for the
/// configured origins, and problem+json for every error response, whoever produced it. The routes
/// are those of [`routes::ALL`], each let through by the permission table their declarations
/// built.
pub fn app(state: AppState) -> Router {
    let http = state.http.clone();
    let api = routes::api();
    let document = std::sync::Arc::new(openapi::document(api.openapi));
    let table = std::sync::Arc::new(api.permissions);
    let routes = api
        .router
        .layer(axum::Extension(document))
        .route_layer(axum::middleware::from_fn(extract::refuse_nul))
        .route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), table),
            permissions::guard,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .fallback(|| async { error::ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { error::ApiError::MethodNotAllowed })
        .with_state(state);
    layers::wrap(routes, &http)
}

/// Serves `app` on `listener` until `shutdown` completes; in-flight requests finish first, and
/// live feeds are told to end.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let signal = state.shutting_down.clone();
    let shutdown = async move {
        shutdown.await;
        signal.send_replace(true);
    };
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
