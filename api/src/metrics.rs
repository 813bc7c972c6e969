//! Prometheus metrics: requests by route and status with latency histograms, and the event
//! store's and projections' figures, rendered in the text exposition format at `GET /metrics`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route template (`/streams/{id}/events`), never the raw path, so that ids do not
    /// explode the number of series.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabels {
    projection: String,
}

/// The server's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    conflicts: Counter,
    lag_events: Family<ProjectionLabels, Gauge>,
    lag_seconds: Family<ProjectionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// The last automatic verification of the log's hash chain: when (Unix seconds, 0 before
    /// the first) and whether it passed (1) or found a problem (0).
    audit_verified_at: Gauge,
    audit_verified_ok: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("caseledger");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let conflicts = Counter::default();
        let lag_events = Family::<ProjectionLabels, Gauge>::default();
        let lag_seconds =
            Family::<ProjectionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            latency.clone(),
        );
        registry.register(
            "command_conflicts",
            "Commands decided again after losing a race on a stream",
            conflicts.clone(),
        );
        registry.register(
            "projection_lag_events",
            "Events in the log a projection has not applied yet",
            lag_events.clone(),
        );
        registry.register(
            "projection_lag_seconds",
            "Age of the oldest event a projection has not applied",
            lag_seconds.clone(),
        );
        let audit_verified_at = Gauge::default();
        let audit_verified_ok = Gauge::default();
        registry.register(
            "audit_last_verification_timestamp_seconds",
            "When the last automatic verification of the log's hash chain finished (0: never)",
            audit_verified_at.clone(),
        );
        registry.register(
            "audit_last_verification_ok",
            "1 when the last verification of the log's hash chain passed, 0 when it found a problem",
            audit_verified_ok.clone(),
        );
        Self {
            audit_verified_at,
            audit_verified_ok,
            registry: Arc::new(registry),
            requests,
            latency,
            conflicts,
            lag_events,
            lag_seconds,
        }
    }
}

/// Middleware: counts and times every routed request.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let m = &state.metrics;
    m.latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// The exposition text, with the figures that are read at scrape time brought up to date.
pub async fn render(state: &AppState) -> Result<String, crate::error::ApiError> {
    let m = &state.metrics;
    // Conflicts are counted by the command handlers; the counter follows their total.
    let total = state.auth.handler().conflicts();
    let seen = m.conflicts.get();
    if total > seen {
        m.conflicts.inc_by(total - seen);
    }
    for status in crate::projection_status(&state.store, &state.projector).await? {
        let labels = ProjectionLabels {
            projection: status.name.clone(),
        };
        m.lag_events.get_or_create(&labels).set(status.lag_events);
        m.lag_seconds.get_or_create(&labels).set(status.lag_seconds);
    }
    if let Some(last) = commands::audit::last_verification(state.store.pool()).await? {
        m.audit_verified_at.set(last.finished_at.timestamp());
        m.audit_verified_ok.set(i64::from(last.ok));
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &m.registry)
        .map_err(crate::error::ApiError::internal)?;
    Ok(out)
}
