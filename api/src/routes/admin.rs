//! Operator routes: `GET /admin/projections` lists every projection's checkpoint, lag and state.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use projections::ProjectionStatus;

use crate::error::ApiError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/projections", get(projections_status))
}

#[utoipa::path(get, path = "/admin/projections", tag = "operations",
    security(("bearer" = [])),
    responses((status = 200, description = "Every projection's checkpoint, head, lag, state and last error", body = [crate::openapi::ProjectionStatusDoc]),
        (status = 401, body = crate::openapi::ProblemDoc), (status = 403, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn projections_status(
    State(state): State<AppState>,
) -> Result<Json<Vec<ProjectionStatus>>, ApiError> {
    Ok(Json(
        crate::projection_status(&state.store, &state.projector).await?,
    ))
}
