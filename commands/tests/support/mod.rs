//! Fixtures shared by the command handler's integration tests: a tiny aggregate.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use domain::Aggregate;
use eventstore::{Metadata, NewEvent};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub fn meta() -> Metadata {
    Metadata::by("test:runner")
}

pub fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent::new(event_type, json!({ "n": n }))
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

impl domain::refusal::Refusal for TicketError {
    fn kind(&self) -> domain::refusal::ErrorKind {
        match self {
            TicketError::Missing => domain::refusal::ErrorKind::NotFound,
            _ => domain::refusal::ErrorKind::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        "ticket_refused"
    }
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
