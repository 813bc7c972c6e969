//! Generic command handling: load, decide, append, and on a conflict, load and decide again.
//!
//! The handler keeps the last state it saw of each stream (a bounded cache). Because events are
//! immutable, a cached `(version, state)` is a correct prefix of the stream forever; a load reads
//! only the events after it, so a hot aggregate costs the same at event 10 and at event 10,000,
//! whoever else writes to it. Commands on one stream queue behind each other inside this process,
//! so local writers do not waste work on conflicts. Writers in other processes are caught by the
//! expected-version check; after such a conflict the stream counts as contended for a while, and
//! commands on it first take a per-stream advisory lock in PostgreSQL, so that processes sharing
//! a hot stream take turns instead of colliding. Uncontended streams never pay for that lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::Aggregate;
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::{CommandError, RetryPolicy};
use eventstore::codec::{self, CodecError};
use eventstore::cursor::Cursor;
use eventstore::error::StoreError;
use eventstore::event::Metadata;
use eventstore::store::{Appended, EventStore, ExpectedVersion};

/// What a command did.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutcome<E> {
    pub stream_id: Uuid,
    /// The events the command appended (or, on a resend, appended the first time).
    pub events: Vec<E>,
    /// The stream's version after the command.
    pub version: u64,
    /// Read-order cursor of the last event, for read-your-writes; `None` if nothing happened.
    pub cursor: Option<Cursor>,
    /// True when this was a resend of a command id that had already run.
    pub replayed: bool,
}

/// Bounded map of the last state seen per stream.
struct StateCache<A> {
    entries: HashMap<Uuid, (u64, A)>,
    capacity: usize,
}

impl<A: Clone> StateCache<A> {
    fn get(&self, id: &Uuid) -> Option<(u64, A)> {
        self.entries.get(id).cloned()
    }

    fn put(&mut self, id: Uuid, version: u64, state: A) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&id) {
            // Any victim will do: a miss only costs one full load of that stream.
            if let Some(victim) = self.entries.keys().next().copied() {
                self.entries.remove(&victim);
            }
        }
        match self.entries.get(&id) {
            // Never replace a newer state with an older one.
            Some((known, _)) if *known >= version => {}
            _ => {
                self.entries.insert(id, (version, state));
            }
        }
    }
}

/// One async mutex per stream that currently has a command in flight.
#[derive(Default)]
struct StreamLocks {
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

struct StreamGuard<'a> {
    locks: &'a StreamLocks,
    stream_id: Uuid,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl StreamLocks {
    async fn lock(&self, stream_id: Uuid) -> StreamGuard<'_> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(stream_id).or_default().clone()
        };
        StreamGuard {
            locks: self,
            stream_id,
            guard: Some(lock.lock_owned().await),
        }
    }
}

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.locks.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map's own reference left: nobody holds or waits for it.
        if locks
            .get(&self.stream_id)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.stream_id);
        }
    }
}

/// Runs commands for one aggregate type.
pub struct CommandHandler<A: Aggregate> {
    store: EventStore,
    /// Gives `decide` its `now`.
    clock: Arc<dyn Clock>,
    cache: Mutex<StateCache<A>>,
    locks: StreamLocks,
    /// When to give up on a stream that keeps moving.
    policy: RetryPolicy,
    /// Expected-version conflicts seen so far, for metrics and benchmarks.
    conflicts: AtomicU64,
    /// Streams on which this handler lost a race to another process, and when. Commands on
    /// them queue on a per-stream database lock for a while, so that hot streams shared by
    /// several processes are written in turn instead of by trial and error.
    contended: Mutex<HashMap<Uuid, Instant>>,
}

impl<A: Aggregate> std::fmt::Debug for CommandHandler<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandHandler")
            .field("stream_type", &A::STREAM_TYPE)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// States cached per handler; a miss only costs a full read of that stream.
const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// How long a stream counts as contended after a lost race.
const CONTENDED_FOR: Duration = Duration::from_secs(10);

impl<A: Aggregate> CommandHandler<A> {
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            cache: Mutex::new(StateCache {
                entries: HashMap::new(),
                capacity: DEFAULT_CACHE_CAPACITY,
            }),
            locks: StreamLocks::default(),
            policy: RetryPolicy::DEFAULT,
            conflicts: AtomicU64::new(0),
            contended: Mutex::new(HashMap::new()),
        }
    }

    /// How many appends lost a race on the expected version and were decided again.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The aggregate's current version and state, from the cache plus any newer events.
    pub async fn load(&self, stream_id: Uuid) -> Result<(u64, A), CommandError<A::Error>> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&stream_id);
        let (mut version, mut state) = cached.unwrap_or_default();
        let newer = self
            .store
            .read_stream_range(stream_id, version, u64::MAX)
            .await?;
        if newer.is_empty() {
            return Ok((version, state));
        }
        for recorded in &newer {
            if recorded.stream_type != A::STREAM_TYPE {
                return Err(StoreError::StreamTypeMismatch {
                    stream_id,
                    expected: A::STREAM_TYPE.to_owned(),
                    actual: recorded.stream_type.clone(),
                }
                .into());
            }
            state = state.evolve(&codec::decode::<A>(recorded)?);
            version = recorded.version;
        }
        self.remember(stream_id, version, &state);
        Ok((version, state))
    }

    /// The aggregate as it was after `version` (auditors' "as of").
    pub async fn load_at_version(
        &self,
        stream_id: Uuid,
        version: u64,
    ) -> Result<(u64, A), CommandError<A::Error>> {
        let events = self.store.read_stream_range(stream_id, 0, version).await?;
        let mut state = A::default();
        let mut reached = 0;
        for recorded in &events {
            state = state.evolve(&codec::decode::<A>(recorded)?);
            reached = recorded.version;
        }
        Ok((reached, state))
    }

    fn remember(&self, stream_id: Uuid, version: u64, state: &A) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(stream_id, version, state.clone());
    }

    /// Decides `command` against stream `stream_id` and appends the result.
    ///
    /// With a command id in `metadata`, a resend returns the first result and appends nothing,
    /// also when the two arrive at once; the same id with a different command is refused.
    pub async fn handle(
        &self,
        stream_id: Uuid,
        command: &A::Command,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        let recorded_command = match metadata.command_id {
            Some(_) => {
                Some(serde_json::to_value(command).map_err(|e| CodecError::Shape(e.to_string()))?)
            }
            None => None,
        };
        if let (Some(id), Some(json)) = (metadata.command_id, &recorded_command) {
            if let Some(done) = self.store.replay_command(id, stream_id, json).await? {
                return self.replayed(done.appended).await;
            }
        }

        let _queue = self.locks.lock(stream_id).await;
        for attempt in 1..=self.policy.max_attempts {
            // Once another process has beaten us to this stream, queue behind it in the
            // database instead of racing it again.
            let db_queue = if attempt > 1 || self.recently_contended(stream_id) {
                Some(self.store.lock_stream(stream_id).await?)
            } else {
                None
            };
            let result = self
                .attempt(stream_id, command, metadata, recorded_command.as_ref())
                .await;
            if let Some(lock) = db_queue {
                lock.release().await;
            }
            match result {
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) => {
                    self.conflicts.fetch_add(1, Ordering::Relaxed);
                    self.mark_contended(stream_id);
                    tracing::debug!(%stream_id, attempt, "conflict; deciding again");
                }
                Err(e) => return Err(e),
            }
        }
        tracing::debug!(%stream_id, "the stream kept moving; giving up");
        Err(self.policy.exhausted())
    }

    /// One load-decide-append round. `Ok(None)` means another writer got there first.
    async fn attempt(
        &self,
        stream_id: Uuid,
        command: &A::Command,
        metadata: &Metadata,
        recorded_command: Option<&serde_json::Value>,
    ) -> Result<Option<CommandOutcome<A::Event>>, CommandError<A::Error>> {
        let (version, state) = self.load(stream_id).await?;
        let events = match state.decide(command, self.clock.now()) {
            Ok(events) => events,
            Err(refusal) => {
                // A resend of this command may have run between our first look in the
                // command log and our load; then the state we refused on is its result.
                if let (Some(id), Some(json)) = (metadata.command_id, recorded_command) {
                    if let Some(done) = self.store.replay_command(id, stream_id, json).await? {
                        return self.replayed(done.appended).await.map(Some);
                    }
                }
                return Err(CommandError::Rejected(refusal));
            }
        };
        if events.is_empty() && recorded_command.is_none() {
            return Ok(Some(CommandOutcome {
                stream_id,
                events,
                version,
                cursor: None,
                replayed: false,
            }));
        }
        let new_events = events
            .iter()
            .map(codec::encode::<A>)
            .collect::<Result<Vec<_>, _>>()?;
        let expected = ExpectedVersion::Exact(version);
        let result = match recorded_command {
            Some(json) => self
                .store
                .append_command(
                    stream_id,
                    A::STREAM_TYPE,
                    expected,
                    &new_events,
                    metadata,
                    json,
                )
                .await
                .map(|c| (c.appended, c.replayed)),
            None => self
                .store
                .append(stream_id, A::STREAM_TYPE, expected, &new_events, metadata)
                .await
                .map(|a| (a, false)),
        };
        match result {
            Ok((appended, false)) => {
                let state = events.iter().fold(state, |s, e| s.evolve(e));
                self.remember(stream_id, appended.last_version, &state);
                Ok(Some(CommandOutcome {
                    stream_id,
                    events,
                    version: appended.last_version,
                    cursor: appended.cursor,
                    replayed: false,
                }))
            }
            Ok((appended, true)) => self.replayed(appended).await.map(Some),
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn recently_contended(&self, stream_id: Uuid) -> bool {
        let contended = self.contended.lock().unwrap_or_else(|p| p.into_inner());
        contended
            .get(&stream_id)
            .is_some_and(|since| since.elapsed() < CONTENDED_FOR)
    }

    fn mark_contended(&self, stream_id: Uuid) {
        let mut contended = self.contended.lock().unwrap_or_else(|p| p.into_inner());
        if contended.len() >= DEFAULT_CACHE_CAPACITY {
            contended.retain(|_, since| since.elapsed() < CONTENDED_FOR);
        }
        contended.insert(stream_id, Instant::now());
    }

    async fn replayed(
        &self,
        appended: Appended,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        let recorded = self
            .store
            .read_stream_range(
                appended.stream_id,
                appended.first_version.saturating_sub(1),
                appended.last_version,
            )
            .await?;
        let events = recorded
            .iter()
            .map(codec::decode::<A>)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CommandOutcome {
            stream_id: appended.stream_id,
            events,
            version: appended.last_version,
            cursor: appended.cursor,
            replayed: true,
        })
    }
}
