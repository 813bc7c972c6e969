//! The one shape of a command that decides on several streams: load, decide, append every
//! touched stream in one transaction, and on a conflict start over, under [`RetryPolicy`].
//!
//! A unit of work loads its aggregates through their [`crate::CommandHandler`]s (so through
//! their state caches), decides with the pure domain, and stages each stream's new events at
//! the version it decided on. [`UnitOfWork::run`] appends them all with
//! [`EventStore::append_streams`]: all or nothing, each stream checked against its own
//! expected version. If any of them moved, nothing is written and the whole attempt runs again
//! on fresh state, so a decision never mixes a stale view of one stream with a fresh view of
//! another. Single-stream commands take [`crate::CommandHandler::handle`], the fast path with
//! the same policy and error.

use std::future::Future;

use domain::Aggregate;
use eventstore::codec::{self, CodecError};
use eventstore::cursor::Cursor;
use eventstore::event::{Metadata, NewEvent};
use eventstore::store::{Appended, EventStore, ExpectedVersion, StreamAppend};
use uuid::Uuid;

use crate::error::{CommandError, RetryPolicy};

/// The streams an attempt decided to write, each with the version it was decided on.
#[derive(Debug, Default)]
pub struct Staged {
    parts: Vec<(Uuid, &'static str, u64, Vec<NewEvent>)>,
}

impl Staged {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stages `events` decided by aggregate `A` on `stream_id` as it was at `version`. The
    /// first stream staged is the command's main stream: its version is the one reported.
    pub fn stream<A: Aggregate>(
        mut self,
        stream_id: Uuid,
        version: u64,
        events: &[A::Event],
    ) -> Result<Self, CodecError> {
        let encoded = events
            .iter()
            .map(codec::encode::<A>)
            .collect::<Result<Vec<_>, _>>()?;
        self.parts
            .push((stream_id, A::STREAM_TYPE, version, encoded));
        Ok(self)
    }
}

/// What one attempt of a unit of work decided.
#[derive(Debug)]
pub enum Decision<T> {
    /// Nothing to write: `T` is the answer as things stand.
    Answer(T),
    /// Append these streams together, then answer `T`.
    Write(Staged, T),
}

/// What a unit of work ended with.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed<T> {
    pub value: T,
    /// One entry per staged stream, in staging order; empty when nothing was written.
    pub appended: Vec<Appended>,
}

impl<T> Committed<T> {
    /// Read-order cursor of the last event written (any stream), for read-your-writes.
    pub fn cursor(&self) -> Option<Cursor> {
        self.appended.iter().filter_map(|a| a.cursor).max()
    }

    /// The first staged stream's version after the append, if anything was written.
    pub fn main_version(&self) -> Option<u64> {
        self.appended.first().map(|a| a.last_version)
    }
}

/// Runs units of work against one store under one retry policy; cheap to clone.
#[derive(Debug, Clone)]
pub struct UnitOfWork {
    store: EventStore,
    policy: RetryPolicy,
}

impl UnitOfWork {
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            policy: RetryPolicy::DEFAULT,
        }
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// Runs `attempt` (load, decide, stage) and appends what it staged in one transaction;
    /// when a staged stream moved meanwhile, runs it again, up to the policy's attempts. A
    /// refusal or a store failure ends it at once.
    pub async fn run<T, R, F, Fut>(
        &self,
        metadata: &Metadata,
        mut attempt: F,
    ) -> Result<Committed<T>, CommandError<R>>
    where
        R: std::error::Error + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Decision<T>, CommandError<R>>>,
    {
        for round in 1..=self.policy.max_attempts {
            let (staged, value) = match attempt().await? {
                Decision::Answer(value) => {
                    return Ok(Committed {
                        value,
                        appended: Vec::new(),
                    })
                }
                Decision::Write(staged, value) => (staged, value),
            };
            let appends: Vec<StreamAppend<'_>> = staged
                .parts
                .iter()
                .map(|(id, stream_type, version, events)| StreamAppend {
                    stream_id: *id,
                    stream_type,
                    expected: ExpectedVersion::Exact(*version),
                    events,
                })
                .collect();
            match self.store.append_streams(&appends, metadata, None).await {
                Ok(done) => {
                    return Ok(Committed {
                        value,
                        appended: done.appended,
                    })
                }
                Err(e) if e.is_conflict() => {
                    tracing::debug!(round, "a staged stream moved; deciding again");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(self.policy.exhausted())
    }
}
