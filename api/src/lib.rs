//! The Caseledger server and command-line binary.
//!
//! A tour:
//! - [`app`] builds the whole HTTP application from an [`AppState`]; tests drive it with `oneshot`
//!   or serve it on a random port.
//! - [`routes`]: one module per resource, each with a `router()`.
//! - [`error`]: [`error::ApiError`], the one mapping from failures to problem+json responses.
//! - [`db`]: connecting, creating the database if missing, migrating, and the clear message when
//!   no server answers.
//! - [`bench`]: `caseledger bench append`, the event store's benchmark.
//! - `main.rs`: the command line (`serve`, `migrate`, `bench`).

pub mod bench;
pub mod db;
pub mod error;
pub mod routes;

use axum::Router;
use commands::EventStore;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: EventStore,
}

/// The HTTP application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(routes::health::router())
        .fallback(|| async { error::ApiError::RouteNotFound })
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` completes; in-flight requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
