//! Operator routes: `GET /admin/projections` lists every projection's checkpoint, lag and state.

use axum::extract::State;
use axum::Json;

use projections::ProjectionStatus;

use crate::error::ApiError;
use crate::permissions::MONITORS;
use crate::AppState;

use super::{routes, Routes};

pub fn routes() -> Routes {
    Routes::new().route(MONITORS, routes!(projections_status))
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
