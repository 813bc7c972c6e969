//! Between typed domain events and stored (type, version, payload) triples.
//!
//! Domain events are adjacently tagged serde enums: serialising one gives
//! `{"type": "RenewalFiled", "data": {...}}`; the tag is stored as the event type and the
//! content as the payload.

use domain::Aggregate;
use serde_json::{Map, Value};

use crate::event::{NewEvent, RecordedEvent};

/// Why a domain event could not be turned into a stored one or back.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("event does not serialise as {{\"type\": ..., \"data\": {{...}}}}: {0}")]
    Shape(String),
    #[error("stored {event_type} does not match the current event shape: {source}")]
    Mismatch {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

pub fn encode<A: Aggregate>(event: &A::Event) -> Result<NewEvent, CodecError> {
    let value = serde_json::to_value(event).map_err(|e| CodecError::Shape(e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(CodecError::Shape("not an object".into()));
    };
    let Some(Value::String(event_type)) = obj.remove("type") else {
        return Err(CodecError::Shape("no string \"type\" tag".into()));
    };
    let payload = match obj.remove("data") {
        Some(data @ Value::Object(_)) => data,
        None => Value::Object(Map::new()),
        Some(_) => {
            return Err(CodecError::Shape(
                "\"data\" is not an object (use struct variants)".into(),
            ))
        }
    };
    let schema_version = A::event_schema_version(&event_type);
    Ok(NewEvent::new(event_type, payload).with_schema_version(schema_version))
}

pub fn decode<A: Aggregate>(event: &RecordedEvent) -> Result<A::Event, CodecError> {
    let mut obj = Map::with_capacity(2);
    obj.insert("type".into(), Value::String(event.event_type.clone()));
    obj.insert("data".into(), event.payload.clone());
    serde_json::from_value(Value::Object(obj)).map_err(|source| CodecError::Mismatch {
        event_type: event.event_type.clone(),
        source,
    })
}
