//! Fixtures shared by the event store's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use commands::{Cursor, EventStore, FollowOptions, Metadata, NewEvent, RecordedEvent};
use domain::Aggregate;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
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

/// A work item that one person at a time may hold: enough of a decision to test the handler.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Ticket {
    #[default]
    Missing,
    Open,
    Held {
        by: String,
        since: DateTime<Utc>,
    },
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "data")]
pub enum TicketCommand {
    Open { title: String },
    Take { by: String },
    Note { text: String },
    Close,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum TicketEvent {
    Opened { title: String },
    Taken { by: String, at: DateTime<Utc> },
    Noted { text: String },
    Closed {},
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TicketError {
    #[error("ticket is already open")]
    AlreadyOpen,
    #[error("ticket does not exist")]
    Missing,
    #[error("ticket is already held by {by}")]
    AlreadyHeld { by: String },
    #[error("ticket is closed")]
    Closed,
}

impl Aggregate for Ticket {
    const STREAM_TYPE: &'static str = "ticket";
    type Command = TicketCommand;
    type Event = TicketEvent;
    type Error = TicketError;

    fn decide(
        &self,
        command: &TicketCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<TicketEvent>, TicketError> {
        match (self, command) {
            (Ticket::Missing, TicketCommand::Open { title }) => Ok(vec![TicketEvent::Opened {
                title: title.clone(),
            }]),
            (_, TicketCommand::Open { .. }) => Err(TicketError::AlreadyOpen),
            (Ticket::Missing, _) => Err(TicketError::Missing),
            (Ticket::Closed, _) => Err(TicketError::Closed),
            (Ticket::Open, TicketCommand::Take { by }) => Ok(vec![TicketEvent::Taken {
                by: by.clone(),
                at: now,
            }]),
            (Ticket::Held { by, .. }, TicketCommand::Take { .. }) => {
                Err(TicketError::AlreadyHeld { by: by.clone() })
            }
            (_, TicketCommand::Note { text }) => {
                Ok(vec![TicketEvent::Noted { text: text.clone() }])
            }
            (_, TicketCommand::Close) => Ok(vec![TicketEvent::Closed {}]),
        }
    }

    fn evolve(self, event: &TicketEvent) -> Self {
        match event {
            TicketEvent::Opened { .. } => Ticket::Open,
            TicketEvent::Taken { by, at } => Ticket::Held {
                by: by.clone(),
                since: *at,
            },
            TicketEvent::Noted { .. } => self,
            TicketEvent::Closed {} => Ticket::Closed,
        }
    }
}
