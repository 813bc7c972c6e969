//! The event store's errors. Each names what was wrong so that the API can map it to a stable
//! problem code without guessing.

use uuid::Uuid;

use crate::store::ExpectedVersion;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stream {stream_id}: expected {expected}, but the stream is at version {actual}")]
    WrongExpectedVersion {
        stream_id: Uuid,
        expected: ExpectedVersion,
        actual: u64,
    },

    #[error("stream {stream_id} is a {actual} stream, not a {expected} stream")]
    StreamTypeMismatch {
        stream_id: Uuid,
        expected: String,
        actual: String,
    },

    #[error("stream {stream_id} does not exist")]
    StreamNotFound { stream_id: Uuid },

    #[error("an append needs at least one event")]
    EmptyBatch,

    #[error("a batch may hold at most {limit} events, this one holds {count}")]
    BatchTooLarge { count: usize, limit: usize },

    #[error("the payload of {event_type} is {size} bytes; the limit is {limit}")]
    PayloadTooLarge {
        event_type: String,
        size: usize,
        limit: usize,
    },

    #[error("the payload of {event_type} must be a JSON object, not {found}")]
    PayloadNotObject {
        event_type: String,
        found: &'static str,
    },

    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error("invalid cursor {value:?}: expected TRANSACTION-POSITION, e.g. \"0-0\"")]
    InvalidCursor { value: String },

    #[error("an idempotent append needs a command id in its metadata")]
    MissingCommandId,

    #[error("command id {command_id} was already used for a different command")]
    CommandIdReused { command_id: Uuid },

    #[error("event at {position} ({event_type} v{schema_version}) cannot be read: {reason}")]
    Undecodable {
        position: i64,
        event_type: String,
        schema_version: u32,
        reason: String,
    },

    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether the caller may retry the same request after re-reading the stream.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::WrongExpectedVersion { .. })
    }
}
