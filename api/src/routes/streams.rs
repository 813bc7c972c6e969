//! `GET /streams`: the stream catalogue, filterable by type, paged by id, with read-your-writes.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use projections::catalogue::{self, StreamEntry};

use crate::consistency::wait_for_cursor;
use crate::error::ApiError;
use crate::permissions::READERS;
use crate::AppState;

use super::{routes, Routes};

pub fn routes() -> Routes {
    Routes::new().route(READERS, routes!(list))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only streams of this type.
    #[serde(rename = "type")]
    stream_type: Option<String>,
    /// Page after this stream id.
    after: Option<String>,
    limit: Option<String>,
    /// Wait until the catalogue includes this cursor (a command's `cursor`).
    min_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Page {
    streams: Vec<StreamEntry>,
    /// Pass as `after` for the next page; absent on the last page.
    next: Option<Uuid>,
}

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1_000;

#[utoipa::path(get, path = "/streams", tag = "read models", security(("bearer" = [])),
    params(ListQuery, ("X-Min-Cursor" = Option<String>, Header, description = "Wait until the catalogue has applied this cursor")),
    responses((status = 200, description = "A page of the stream catalogue", body = crate::openapi::StreamPageDoc),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 503, description = "The read model did not reach min_cursor in time; see Retry-After", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let after = q
        .after
        .as_deref()
        .map(|a| {
            a.parse::<Uuid>()
                .map_err(|_| ApiError::BadQuery(format!("after: {a:?} is not a stream id")))
        })
        .transpose()?;
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::BadQuery(format!(
                    "limit: {l:?} is not a number from 1 to {MAX_LIMIT}"
                ))
            })?,
    };
    wait_for_cursor(
        &state,
        "stream_catalogue",
        &headers,
        q.min_cursor.as_deref(),
    )
    .await?;
    let streams = catalogue::list(state.store.pool(), q.stream_type.as_deref(), after, limit)
        .await
        .map_err(ApiError::internal)?;
    let next = (streams.len() as i64 == limit)
        .then(|| streams.last().map(|s| s.stream_id))
        .flatten();
    Ok(Json(Page { streams, next }))
}
