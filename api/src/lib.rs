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
//! - [`rng`]: the seeded generator behind demo and benchmark data.
//! - [`notify`]: notification channels (signed webhook, log).
//! - [`demo`]: `caseledger demo`, the seed's scale of credentialing data.
//! - [`jobs`]: the scheduled jobs (renewal scan, renewal expiry) on the shared job runner.
//! - [`bench`]: `caseledger bench ...`, the benchmarks.
//! - `main.rs`: the command line (`serve`, `migrate`, `bench`).

pub mod as_of;
pub mod auth;
pub mod bench;
pub mod consistency;
pub mod db;
pub mod demo;
pub mod error;
pub mod extract;
pub mod jobs;
pub mod layers;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod permissions;
pub mod rng;
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
    pub auth: auth::Auth,
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
    /// What the jobs work with (the notification channel among it).
    pub job_deps: jobs::JobDeps,
    /// Whether this process runs the job scheduler (shown at `GET /jobs`).
    pub scheduler_running: bool,
    /// Staff members' profiles and availability.
    pub staff: std::sync::Arc<commands::CommandHandler<domain::staff::StaffMember>>,
    /// Allocations of pieces of work to staff members.
    pub allocations:
        std::sync::Arc<commands::CommandHandler<domain::work_allocation::WorkAllocation>>,
    /// The allocation weights ranking uses unless a request gives its own
    /// (`CASELEDGER_ALLOCATION_WEIGHTS` under `serve`; [`domain::allocation::Weights::DEFAULT`]
    /// otherwise).
    pub allocation_weights: domain::allocation::Weights,
    /// The staff members ranking reads, kept while the staffing read model does not change.
    pub candidates: std::sync::Arc<projections::staffing::CandidateCache>,
    /// Set when the server begins to shut down, so that endless responses (the SSE feed) end
    /// and graceful shutdown can finish.
    pub shutting_down: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl AppState {
    /// State with the wall clock.
    pub fn new(store: EventStore) -> Self {
        Self::with_clock(store, std::sync::Arc::new(commands::SystemClock))
    }

    /// State whose time (session expiry, lockouts) comes from `clock`.
    pub fn with_clock(store: EventStore, clock: std::sync::Arc<dyn commands::Clock>) -> Self {
        let auth = auth::Auth::new(store.clone(), clock.clone());
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
        let job_deps = jobs::JobDeps {
            pool: store.pool().clone(),
            credentialing: credentialing.clone(),
            notifications: std::sync::Arc::new(commands::CommandHandler::new(
                store.clone(),
                clock.clone(),
            )),
            channel: std::sync::Arc::new(notify::Channel::Log),
            contact: DEFAULT_CONTACT.to_owned(),
            work: work.clone(),
        };
        let jobs = commands::jobs::JobRunner::new(
            store.pool().clone(),
            clock.clone(),
            jobs::all(&job_deps),
        );
        let staff =
            std::sync::Arc::new(commands::CommandHandler::new(store.clone(), clock.clone()));
        let allocations =
            std::sync::Arc::new(commands::CommandHandler::new(store.clone(), clock.clone()));
        let projector = Projector::new(
            store.clone(),
            projections::all(),
            projections::RuntimeConfig::default(),
        );
        Self {
            store,
            projector,
            read_wait: consistency::WAIT_TIMEOUT,
            http: layers::HttpConfig::default(),
            auth,
            metrics: metrics::Metrics::default(),
            clock,
            credentialing,
            jobs,
            job_deps,
            practices,
            work,
            scheduler_running: false,
            staff,
            allocations,
            allocation_weights: domain::allocation::Weights::DEFAULT,
            candidates: std::sync::Arc::default(),
            shutting_down: std::sync::Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }
}

/// The contact line of notifications unless configured.
pub const DEFAULT_CONTACT: &str = "Contact the credentialing team for assistance.";

impl AppState {
    /// The same state with notifications sent through `channel`, ending with `contact`.
    pub fn with_notifications(mut self, channel: notify::Channel, contact: String) -> Self {
        self.job_deps.channel = std::sync::Arc::new(channel);
        self.job_deps.contact = contact;
        self.jobs = commands::jobs::JobRunner::new(
            self.store.pool().clone(),
            self.clock.clone(),
            jobs::all(&self.job_deps),
        );
        self
    }
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
