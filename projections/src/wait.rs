//! Read-your-writes: a command's response carries the cursor of its last event; a query that
//! sends it back waits here until the read model has passed it, instead of answering stale.

use std::time::Duration;

use eventstore::{Cursor, EventStore};

use crate::checkpoint;

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("cursor {cursor} is beyond the end of the log ({head})")]
    FutureCursor { cursor: Cursor, head: Cursor },
    #[error("{projection} has not reached {cursor} within {waited:?}")]
    TimedOut {
        projection: String,
        cursor: Cursor,
        waited: Duration,
    },
    #[error(transparent)]
    Store(#[from] eventstore::StoreError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// How often the checkpoint is looked at while waiting. The projection may run in another
/// process, so the database is the one place to look.
const POLL: Duration = Duration::from_millis(10);

/// Returns once `projection` has applied everything up to `cursor`, or fails after `timeout`.
pub async fn until_applied(
    store: &EventStore,
    projection: &str,
    cursor: Cursor,
    timeout: Duration,
) -> Result<(), WaitError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut checked_head = false;
    loop {
        if checkpoint::load_from(store.pool(), projection).await? >= cursor {
            return Ok(());
        }
        if !checked_head {
            // A cursor no event has reached would make every wait time out: say so at once.
            let head = store.head().await?;
            if cursor > head {
                return Err(WaitError::FutureCursor { cursor, head });
            }
            checked_head = true;
        }
        if tokio::time::Instant::now() + POLL > deadline {
            return Err(WaitError::TimedOut {
                projection: projection.to_owned(),
                cursor,
                waited: timeout,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Returns once each of `projections` has applied everything written before the call, or fails
/// after `timeout` (each): for tools and tests that have just written and want to read.
pub async fn until_caught_up(
    store: &EventStore,
    projections: &[&str],
    timeout: Duration,
) -> Result<(), WaitError> {
    let head = store.head().await?;
    for projection in projections {
        until_applied(store, projection, head, timeout).await?;
    }
    Ok(())
}
