//! Fixtures shared by the event store's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use eventstore::{Cursor, EventStore, FollowOptions, Metadata, NewEvent, RecordedEvent};
use futures_util::StreamExt;
use serde_json::json;

pub fn meta() -> Metadata {
    Metadata::by("test:runner")
}

pub fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent::new(event_type, json!({ "n": n }))
}

/// Follow settings that make a missing wake-up visible as latency, not as a hang.
pub fn fast_follow() -> FollowOptions {
    FollowOptions {
        page_size: 100,
        poll_interval: Duration::from_millis(50),
    }
}

/// Follows the log from `after` until `count` events arrived, or fails after `within`.
pub async fn follow_n(
    store: &EventStore,
    after: Cursor,
    count: usize,
    within: Duration,
) -> anyhow::Result<Vec<RecordedEvent>> {
    let stream = store.follow(after, fast_follow());
    let mut stream = std::pin::pin!(stream);
    let mut got = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + within;
    while got.len() < count {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(event)) => got.push(event?),
            Ok(None) => anyhow::bail!("follow stream ended after {} events", got.len()),
            Err(_) => anyhow::bail!(
                "only {} of {count} events arrived within {within:?}",
                got.len()
            ),
        }
    }
    Ok(got)
}

/// Asserts that following from `after` yields nothing more for a little while.
pub async fn assert_quiet(store: &EventStore, after: Cursor) -> anyhow::Result<()> {
    let stream = store.follow(after, fast_follow());
    let mut stream = std::pin::pin!(stream);
    match tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
        Err(_) => Ok(()),
        Ok(Some(event)) => anyhow::bail!("unexpected extra event: {:?}", event?),
        Ok(None) => anyhow::bail!("follow stream ended"),
    }
}
