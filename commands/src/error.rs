//! The one error every command service returns, and the one retry policy they all follow.
//!
//! [`CommandError<R>`] is generic over the domain's refusal `R`: one aggregate's error, or for a
//! service whose commands span several aggregates, an enum of their errors. Besides a refusal a
//! command can only fail in the store, in the codec, or by losing the expected-version race
//! [`RetryPolicy::max_attempts`] times in a row; those three mean the same thing whichever
//! service produced them, so they are written once here, and [`Refusal`] says what kind of
//! failure each is (too many conflicts is always `Conflict`/`concurrency_conflict`).

use domain::refusal::{ErrorKind, Refusal};
use eventstore::codec::CodecError;
use eventstore::error::StoreError;
use serde_json::{Map, Value};

/// Why a command did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<R: std::error::Error + 'static> {
    /// The domain refused the command.
    #[error(transparent)]
    Rejected(R),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Another writer moved a stream the command decided on, [`RetryPolicy::max_attempts`]
    /// times running.
    #[error("the record kept changing under the command; gave up after {attempts} attempts")]
    TooManyConflicts { attempts: u32 },
}

impl<R: std::error::Error + 'static> From<sqlx::Error> for CommandError<R> {
    fn from(e: sqlx::Error) -> Self {
        CommandError::Store(e.into())
    }
}

impl<R: std::error::Error + 'static> CommandError<R> {
    /// The same failure as seen by a service whose refusals are `S` (a wider enum, or `R`
    /// itself). A stream of another type under the id names no record of this kind, so it
    /// becomes the refusal `not_found`.
    pub fn widen<S: std::error::Error + From<R> + 'static>(self, not_found: R) -> CommandError<S> {
        match self {
            CommandError::Store(StoreError::StreamTypeMismatch { .. }) => {
                CommandError::Rejected(not_found.into())
            }
            other => other.map_rejected(S::from),
        }
    }

    /// The same failure with its refusal turned into another (a service's wider refusal);
    /// the store's, the codec's and the conflicts' failures stay as they are.
    pub fn map_rejected<S: std::error::Error + 'static>(
        self,
        f: impl FnOnce(R) -> S,
    ) -> CommandError<S> {
        match self {
            CommandError::Rejected(r) => CommandError::Rejected(f(r)),
            CommandError::Store(s) => CommandError::Store(s),
            CommandError::Codec(c) => CommandError::Codec(c),
            CommandError::TooManyConflicts { attempts } => {
                CommandError::TooManyConflicts { attempts }
            }
        }
    }

    /// The domain's refusal, if that is what this is.
    pub fn rejection(&self) -> Option<&R> {
        match self {
            CommandError::Rejected(r) => Some(r),
            _ => None,
        }
    }
}

impl<R: Refusal + 'static> Refusal for CommandError<R> {
    fn kind(&self) -> ErrorKind {
        match self {
            CommandError::Rejected(r) => r.kind(),
            CommandError::Store(s) => store_refusal(s).0,
            CommandError::Codec(_) => ErrorKind::Internal,
            CommandError::TooManyConflicts { .. } => ErrorKind::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            CommandError::Rejected(r) => r.code(),
            CommandError::Store(s) => store_refusal(s).1,
            CommandError::Codec(_) => "internal",
            CommandError::TooManyConflicts { .. } => "concurrency_conflict",
        }
    }

    fn details(&self) -> Map<String, Value> {
        match self {
            CommandError::Rejected(r) => r.details(),
            _ => Map::new(),
        }
    }
}

/// The kind and stable code of an event-store failure.
pub fn store_refusal(e: &StoreError) -> (ErrorKind, &'static str) {
    use ErrorKind as K;
    use StoreError as S;
    match e {
        S::WrongExpectedVersion { .. } => (K::Conflict, "wrong_expected_version"),
        S::StreamTypeMismatch { .. } => (K::Conflict, "stream_type_mismatch"),
        S::CommandIdReused { .. } => (K::Conflict, "command_id_reused"),
        S::StreamNotFound { .. } => (K::NotFound, "stream_not_found"),
        S::EmptyBatch | S::MissingCommandId => (K::Invalid, "invalid_batch"),
        S::BatchTooLarge { .. } => (K::Invalid, "batch_too_large"),
        S::PayloadTooLarge { .. } => (K::Invalid, "payload_too_large"),
        S::PayloadNotObject { .. } => (K::Invalid, "payload_not_object"),
        S::InvalidName { .. } => (K::Invalid, "invalid_name"),
        // A cursor is the one malformed input the HTTP layer answers with 400, not 422; it
        // checks for this variant itself.
        S::InvalidCursor { .. } => (K::Invalid, "invalid_cursor"),
        S::Database(e) if is_unavailable(e) => (K::Unavailable, "database_unavailable"),
        S::Database(e) if is_transient_conflict(e) => (K::Conflict, "concurrency_conflict"),
        S::Undecodable { .. } | S::Database(_) => (K::Internal, "internal"),
    }
}

/// Whether a database error means "cannot reach the database" rather than a bug.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolClosed
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::WorkerCrashed
    )
}

/// A transaction PostgreSQL aborted because of a concurrent one (a deadlock it broke, or a
/// serialization failure): nothing was written, and the same request may succeed when retried.
pub fn is_transient_conflict(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40P01" || c == "40001")
}

/// How often a command decides again after losing the expected-version race, for every
/// service: single-stream commands, units of work over several streams, and work queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// Sixteen attempts. Generous on purpose: a process that has not lost a race yet appends
    /// without the stream's database lock, so under load a locked writer can lose a few rounds
    /// to it, and bulk requests for one practice all write that practice's stream. (The old
    /// two-stream credentialing limit of 8 was never the one tests or benchmarks pushed
    /// against; 16 is what the single-stream handler and the practices already used.)
    pub const DEFAULT: RetryPolicy = RetryPolicy { max_attempts: 16 };

    /// The error for a command that used up its attempts.
    pub fn exhausted<R: std::error::Error + 'static>(&self) -> CommandError<R> {
        CommandError::TooManyConflicts {
            attempts: self.max_attempts,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::DEFAULT
    }
}
