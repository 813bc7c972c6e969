//! `GET /health`: is the server up, can it reach the database, and where is the log's head.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use eventstore::Cursor;

use crate::error::ApiError;
use crate::permissions::Access;
use crate::AppState;

use super::{routes, Routes};

pub fn routes() -> Routes {
    Routes::new().route(Access::Public, routes!(health))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    status: &'static str,
    database: &'static str,
    /// Cursor of the last committed event, `"0-0"` for an empty log.
    #[schema(value_type = String, example = "812-40")]
    head: Cursor,
}

#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Alive, with the log's head", body = Health), (status = 503, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn health(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let head = state.store.head().await.map_err(|e| {
        tracing::warn!(error = %e, "health check could not reach the database");
        ApiError::DatabaseUnavailable
    })?;
    Ok(Json(Health {
        status: "ok",
        database: "reachable",
        head,
    }))
}
