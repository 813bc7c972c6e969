//! Read-your-writes for queries: a query may carry the cursor a command returned, as the
//! `min_cursor` parameter or the `X-Min-Cursor` header, and is answered only once the read model
//! has applied it; after a timeout it gets 503 with Retry-After instead of stale data.

use std::time::Duration;

use axum::http::HeaderMap;
use eventstore::Cursor;
use projections::wait::{self, WaitError};

use crate::error::ApiError;
use crate::AppState;

pub const MIN_CURSOR_HEADER: &str = "x-min-cursor";

/// Longest a query waits for its read model to catch up.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The query parameter of a read that wants to see a write: the cursor the command answered.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// Wait until the read model includes this cursor (a command's `cursor`).
    pub min_cursor: Option<String>,
}

pub async fn wait_for_cursor(
    state: &AppState,
    projection: &str,
    headers: &HeaderMap,
    param: Option<&str>,
) -> Result<(), ApiError> {
    let header = headers
        .get(MIN_CURSOR_HEADER)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let Some(raw) = param.or(header) else {
        return Ok(());
    };
    let cursor: Cursor = raw.parse()?;
    match wait::until_applied(&state.store, projection, cursor, state.read_wait).await {
        Ok(()) => Ok(()),
        Err(WaitError::TimedOut { .. }) => Err(ApiError::ReadModelBehind {
            projection: projection.to_owned(),
            cursor,
        }),
        Err(WaitError::FutureCursor { cursor, head }) => {
            Err(ApiError::FutureCursor { cursor, head })
        }
        Err(other) => Err(ApiError::internal(other)),
    }
}
