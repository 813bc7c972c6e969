//! Events as the store sees them: untyped JSON with their metadata.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::cursor::Cursor;
use crate::error::StoreError;

/// Largest payload accepted for one event, in bytes of compact JSON. Events are facts, not
/// documents: anything bigger belongs in a blob store with the event carrying a reference.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Most events one append may carry; keeps a single statement (and its lock time) bounded.
pub const MAX_BATCH_EVENTS: usize = 1_000;

/// Longest stream type, event type or actor name.
pub const MAX_NAME_LEN: usize = 100;

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Past-tense name of what happened (`RenewalFiled`), the key upcasters and readers use.
    pub event_type: String,
    /// Shape version of `payload`, so that old shapes can be upcast on read.
    pub schema_version: u32,
    /// The event's data; always a JSON object so that fields can be added later.
    pub payload: Value,
}

impl NewEvent {
    pub fn new(event_type: impl Into<String>, payload: Value) -> Self {
        Self {
            event_type: event_type.into(),
            schema_version: 1,
            payload,
        }
    }

    pub fn with_schema_version(mut self, schema_version: u32) -> Self {
        self.schema_version = schema_version;
        self
    }

    /// Checks everything that can be checked without the database; returns the payload as
    /// compact JSON, the form it is sent in (so it is serialised once).
    pub(crate) fn validate(&self) -> Result<String, StoreError> {
        validate_name("event type", &self.event_type)?;
        if self.schema_version == 0 || self.schema_version > i32::MAX as u32 {
            return Err(StoreError::InvalidName {
                what: "schema version",
                value: self.schema_version.to_string(),
                reason: "must be between 1 and 2147483647",
            });
        }
        let found = match &self.payload {
            Value::Object(_) => None,
            Value::Null => Some("null"),
            Value::Bool(_) => Some("a boolean"),
            Value::Number(_) => Some("a number"),
            Value::String(_) => Some("a string"),
            Value::Array(_) => Some("an array"),
        };
        if let Some(found) = found {
            return Err(StoreError::PayloadNotObject {
                event_type: self.event_type.clone(),
                found,
            });
        }
        // A `Value` always serialises; an error here would be a serde_json bug.
        let json = serde_json::to_string(&self.payload).unwrap_or_default();
        if json.len() > MAX_PAYLOAD_BYTES {
            return Err(StoreError::PayloadTooLarge {
                event_type: self.event_type.clone(),
                size: json.len(),
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        // PostgreSQL's jsonb cannot hold the NUL character; refuse it here, with a clear error,
        // instead of failing inside the insert.
        if json.contains("\\u0000") {
            return Err(StoreError::PayloadNotObject {
                event_type: self.event_type.clone(),
                found: "an object with a NUL character (\\u0000) in a string",
            });
        }
        Ok(json)
    }
}

/// Who did it and why: stored with every event so that an auditor can answer for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The user or job that issued the command (`user:alice`, `job:renewal-scan`).
    pub actor: String,
    /// The command that produced the event; the key of idempotent retries.
    pub command_id: Option<Uuid>,
    /// Shared by everything that one outside request set in motion.
    pub correlation_id: Uuid,
    /// The command or event that directly caused this one, when there is one.
    pub causation_id: Option<Uuid>,
}

impl Metadata {
    /// Metadata for a new, uncorrelated action by `actor`.
    pub fn by(actor: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            command_id: None,
            correlation_id: Uuid::new_v4(),
            causation_id: None,
        }
    }

    pub fn with_command_id(mut self, command_id: Uuid) -> Self {
        self.command_id = Some(command_id);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.actor.trim().is_empty()
            || self.actor.len() > MAX_NAME_LEN
            || self.actor.chars().any(char::is_control)
        {
            return Err(StoreError::InvalidName {
                what: "actor",
                value: self.actor.chars().take(MAX_NAME_LEN).collect(),
                reason: "must be 1 to 100 printable characters",
            });
        }
        Ok(())
    }
}

/// An event as stored, after upcasting to the current schema version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Where it stands in the global read order.
    pub cursor: Cursor,
    pub stream_id: Uuid,
    pub stream_type: String,
    /// 1 for a stream's first event, then consecutive.
    pub version: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: Value,
    pub metadata: Metadata,
    /// When the database recorded it (the appending transaction's start).
    pub recorded_at: DateTime<Utc>,
}

/// Stream and event type names: short identifiers that stay readable in SQL and URLs.
pub(crate) fn validate_name(what: &'static str, value: &str) -> Result<(), StoreError> {
    let reason = if value.is_empty() {
        Some("must not be empty")
    } else if value.len() > MAX_NAME_LEN {
        Some("must be at most 100 characters")
    } else if !value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
    {
        Some("must start with a letter")
    } else if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
    {
        Some("may hold only letters, digits, '_', '.' and '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidName {
            what,
            value: value.chars().take(MAX_NAME_LEN).collect(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_must_be_objects() {
        for payload in [json!(null), json!(1), json!("x"), json!([1]), json!(true)] {
            let err = NewEvent::new("Happened", payload).validate();
            assert!(
                matches!(err, Err(StoreError::PayloadNotObject { .. })),
                "{err:?}"
            );
        }
        assert!(NewEvent::new("Happened", json!({})).validate().is_ok());
    }

    #[test]
    fn oversized_payloads_are_refused() {
        let big = "x".repeat(MAX_PAYLOAD_BYTES);
        let err = NewEvent::new("Happened", json!({ "note": big })).validate();
        assert!(
            matches!(err, Err(StoreError::PayloadTooLarge { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn event_types_must_be_identifiers() {
        for bad in ["", "1st", "has space", "semi;colon", &"x".repeat(101)] {
            assert!(
                validate_name("event type", bad).is_err(),
                "{bad:?} was accepted"
            );
        }
        assert!(validate_name("event type", "RenewalFiled").is_ok());
    }

    #[test]
    fn blank_actors_are_refused() {
        assert!(Metadata::by(" ").validate().is_err());
        assert!(Metadata::by("user:alice").validate().is_ok());
    }
}
