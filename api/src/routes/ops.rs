//! Operations: `GET /ready` for orchestrators and `GET /metrics` for Prometheus.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::error::{ApiError, Problem};
use crate::permissions::{Access, MONITORS};
use crate::AppState;

use super::{routes, Routes};

pub fn routes() -> Routes {
    Routes::new()
        .route(Access::Public, routes!(ready))
        .route(MONITORS, routes!(metrics))
}

/// Most events a projection may trail the log by while the server calls itself ready.
pub const READY_MAX_LAG_EVENTS: i64 = 1_000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Readiness {
    ready: bool,
    database: bool,
    migrations: bool,
    /// Projections more than the threshold behind, failed or not running.
    lagging_projections: Vec<String>,
    /// The last automatic verification of the log (the daily `audit-verify` job); `null`
    /// before the first.
    #[schema(value_type = Option<Object>)]
    last_audit_verification: Option<commands::audit::LastVerification>,
}

#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "Ready for traffic", body = Readiness), (status = 503, description = "A check failed (problem document with the checks)", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let pool = state.store.pool();
    let database = sqlx::query("SELECT 1").execute(pool).await.is_ok();
    let applied: Vec<i64> = if database {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let migrations = eventstore::MIGRATOR
        .iter()
        .all(|m| applied.contains(&m.version));
    let lagging_projections: Vec<String> =
        match crate::projection_status(&state.store, &state.projector).await {
            Ok(all) => all
                .into_iter()
                .filter(|s| {
                    s.lag_events > READY_MAX_LAG_EVENTS
                        || matches!(
                            s.state,
                            projections::State::Failed | projections::State::Stopped
                        )
                })
                .map(|s| s.name)
                .collect(),
            Err(_) => state
                .projector
                .projections()
                .iter()
                .map(|p| p.name().to_owned())
                .collect(),
        };
    // Shown, not a condition of readiness: a log that fails verification is a matter for
    // auditors, and the server serves it the same either way.
    let last_audit_verification = commands::audit::last_verification(pool)
        .await
        .ok()
        .flatten();
    let readiness = Readiness {
        ready: database && migrations && lagging_projections.is_empty(),
        database,
        migrations,
        lagging_projections,
        last_audit_verification,
    };
    if readiness.ready {
        return Json(readiness).into_response();
    }
    // Not ready is an error like any other: a problem document, with the checks as extensions.
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        "Service unavailable",
        "a readiness check failed; see the fields below",
    )
    .with_extensions(&readiness)
    .into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "operations", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text exposition", content_type = "application/openmetrics-text", body = String),
        (status = 401, body = crate::openapi::ProblemDoc), (status = 403, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let body = crate::metrics::render(&state).await?;
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}
