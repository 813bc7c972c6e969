//! The PostgreSQL event store: append with optimistic concurrency, read a stream, read and follow
//! the global log, record commands for idempotency. All SQL on the `events` and `command_log`
//! tables lives here.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_core::Stream;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::cursor::Cursor;
use crate::error::StoreError;
use crate::event::{validate_name, Metadata, NewEvent, RecordedEvent, MAX_BATCH_EVENTS};
use crate::upcast::Upcasters;
use crate::wakeup::Wakeup;

/// What an append expects of the stream it writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be at exactly this version (0 = no stream).
    Exact(u64),
    /// Whatever the version is; the events go after it.
    Any,
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
            ExpectedVersion::Any => f.write_str("any version"),
        }
    }
}

/// The result of an append (or of the first execution of a resent command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub stream_id: Uuid,
    /// Version of the first event written; `last_version + 1` when nothing was written.
    pub first_version: u64,
    /// The stream's version after the append.
    pub last_version: u64,
    /// Read-order cursor of the last event written; `None` when nothing was written.
    pub cursor: Option<Cursor>,
}

impl Appended {
    pub fn count(&self) -> u64 {
        (self.last_version + 1).saturating_sub(self.first_version)
    }
}

/// A command's first result, as recorded in the command log.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRecord {
    pub command_id: Uuid,
    pub stream_type: String,
    pub command: Value,
    pub appended: Appended,
}

/// How an idempotent append ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandAppended {
    pub appended: Appended,
    /// True when the command id had already run: nothing was appended now, and `appended` is
    /// the first execution's result.
    pub replayed: bool,
}

/// One stream's share of [`EventStore::append_streams`].
#[derive(Debug, Clone, Copy)]
pub struct StreamAppend<'a> {
    pub stream_id: Uuid,
    pub stream_type: &'a str,
    pub expected: ExpectedVersion,
    pub events: &'a [NewEvent],
}

/// How a multi-stream append ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiAppended {
    /// One entry per part, in order; empty when replayed.
    pub appended: Vec<Appended>,
    /// The first part's first result when the command id had already run.
    pub replayed: Option<Appended>,
}

/// Which events an auditor's read keeps; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    pub stream_type: Option<String>,
    pub event_type: Option<String>,
    pub actor: Option<String>,
    /// Recorded at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before this time.
    pub to: Option<DateTime<Utc>>,
}

/// Paging and wake-up settings for [`EventStore::follow`].
#[derive(Debug, Clone, Copy)]
pub struct FollowOptions {
    /// Events fetched per query while catching up.
    pub page_size: i64,
    /// Longest wait for a wake-up before looking anyway: the bound on latency when a
    /// notification is lost or the blocking transaction was not an append.
    pub poll_interval: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        Self {
            page_size: 500,
            poll_interval: Duration::from_millis(250),
        }
    }
}

/// Advisory-lock namespace of [`EventStore::lock_stream`].
const STREAM_QUEUE_LOCK: i32 = 0x0CA5_E000;

/// Held while a writer has its turn on a stream; see [`EventStore::lock_stream`].
#[derive(Debug)]
pub struct StreamLock {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    /// One of the few pool connections stream locks may hold; see `EventStore::lock_slots`.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl StreamLock {
    /// Lets the next writer in. (Dropping it also does, once the connection is reused.)
    pub async fn release(self) {
        if let Err(error) = self.tx.rollback().await {
            tracing::debug!(%error, "releasing a stream lock failed; the connection will be reset");
        }
    }
}

/// Handle to the event store; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventStore {
    pool: PgPool,
    /// Applied to every event read, so callers only see current schema versions.
    upcasters: Arc<Upcasters>,
    /// Wakes followers after appends.
    wakeup: Wakeup,
    /// Stream locks each hold a pooled connection while the command they guard needs others
    /// to load and append; capping them at half the pool keeps the rest free, so many
    /// contended streams at once queue here instead of starving the pool.
    lock_slots: Arc<tokio::sync::Semaphore>,
}

/// Columns of an event row, in the order `EventRow` decodes them. Note that the output column
/// `transaction_id` is a bigint: `ORDER BY` must name `events.transaction_id` to sort by the
/// indexed xid8 column (sorting by the alias would sort every candidate row, page after page).
const EVENT_COLUMNS: &str = "position, transaction_id::text::bigint AS transaction_id, stream_id, stream_type, \
     version, event_type, schema_version, payload, actor, command_id, correlation_id, causation_id, recorded_at";

#[derive(sqlx::FromRow)]
struct EventRow {
    position: i64,
    transaction_id: i64,
    stream_id: Uuid,
    stream_type: String,
    version: i64,
    event_type: String,
    schema_version: i32,
    payload: Value,
    actor: String,
    command_id: Option<Uuid>,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    recorded_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct CommandRow {
    command_id: Uuid,
    stream_id: Uuid,
    stream_type: String,
    command: Value,
    first_version: i64,
    last_version: i64,
    last_transaction_id: Option<i64>,
    last_position: Option<i64>,
}

/// One statement, so an append is one round trip and atomic. The expectation is checked by the
/// database's own indexes: the new versions must be free (the unique key on (stream_id, version)
/// refuses them otherwise, also against a concurrent writer) and, for a stream expected at
/// version N > 0, event N must exist with this stream type. An append to a new stream is thereby
/// as cheap as a plain INSERT. $3 is the version expected (0 = no stream).
const APPEND_SQL: &str = r#"
INSERT INTO events (stream_id, stream_type, version, event_type, schema_version, payload,
                    actor, command_id, correlation_id, causation_id)
SELECT $1, $2, $3 + e.n, e.event_type, e.schema_version, e.payload::jsonb, $7, $8, $9, $10
FROM unnest($4::text[], $5::int[], $6::text[]) WITH ORDINALITY AS e(event_type, schema_version, payload, n)
WHERE $3 = 0 OR EXISTS (SELECT FROM events WHERE stream_id = $1 AND version = $3 AND stream_type = $2)
RETURNING transaction_id::text::bigint, position
"#;

/// [`APPEND_SQL`] plus the command log row, in the same statement. Returns the batch's last
/// cursor and whether the command was recorded (it is whenever the expectation held, also for a
/// command that decided on no events).
const APPEND_COMMAND_SQL: &str = r#"
WITH ins AS (
    INSERT INTO events (stream_id, stream_type, version, event_type, schema_version, payload,
                        actor, command_id, correlation_id, causation_id)
    SELECT $1, $2, $3 + e.n, e.event_type, e.schema_version, e.payload::jsonb, $7, $8, $9, $10
    FROM unnest($4::text[], $5::int[], $6::text[]) WITH ORDINALITY AS e(event_type, schema_version, payload, n)
    WHERE $3 = 0 OR EXISTS (SELECT FROM events WHERE stream_id = $1 AND version = $3 AND stream_type = $2)
    RETURNING transaction_id, position
), last AS (
    -- One transaction id for the whole batch; within it, read order is position order.
    SELECT max(transaction_id::text::bigint) AS transaction_id, max(position) AS position, count(*) AS n FROM ins
), logged AS (
    INSERT INTO command_log (command_id, stream_id, stream_type, command, first_version, last_version,
                             last_transaction_id, last_position)
    SELECT $8, $1, $2, $11, $3 + 1, $3 + cardinality($4::text[]), last.transaction_id::text::xid8, last.position
    FROM last
    WHERE last.n = cardinality($4::text[])
      AND ($3 = 0 OR EXISTS (SELECT FROM events WHERE stream_id = $1 AND version = $3 AND stream_type = $2))
    RETURNING 1
)
SELECT last.transaction_id, last.position, EXISTS (SELECT FROM logged) AS logged FROM last
"#;

/// Which constraint an insert tripped over, if it was a unique violation we expect.
enum Collision {
    StreamVersion,
    CommandId,
}

fn collision(error: &sqlx::Error) -> Option<Collision> {
    let db = error.as_database_error()?;
    match db.constraint() {
        Some("events_stream_version_key") => Some(Collision::StreamVersion),
        Some("command_log_pkey") => Some(Collision::CommandId),
        _ => None,
    }
}

/// A stored (non-negative) bigint as `u64`.
pub fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl EventStore {
    pub fn new(pool: PgPool) -> Self {
        Self::with_upcasters(pool, Upcasters::default())
    }

    pub fn with_upcasters(pool: PgPool, upcasters: Upcasters) -> Self {
        Self {
            lock_slots: Arc::new(tokio::sync::Semaphore::new(
                (pool.options().get_max_connections() as usize / 2).max(1),
            )),
            upcasters: Arc::new(upcasters),
            wakeup: Wakeup::default(),
            pool,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn wakeup(&self) -> &Wakeup {
        &self.wakeup
    }

    /// Runs LISTEN/NOTIFY for cross-process wake-ups until the returned task is aborted.
    pub fn spawn_wakeups(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.wakeup.clone().run(self.pool.clone()))
    }

    /// Appends a batch to one stream if the stream is as expected. All or nothing.
    pub async fn append(
        &self,
        stream_id: Uuid,
        stream_type: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
        metadata: &Metadata,
    ) -> Result<Appended, StoreError> {
        let payloads = validate_batch(stream_type, events, metadata, false)?;
        loop {
            match self
                .try_append(
                    &self.pool,
                    stream_id,
                    stream_type,
                    expected,
                    events,
                    &payloads,
                    metadata,
                    None,
                )
                .await
            {
                Err(e)
                    if expected == ExpectedVersion::Any
                        && matches!(collision_of(&e), Some(Collision::StreamVersion)) =>
                {
                    continue
                }
                other => {
                    return self
                        .finish_append(stream_id, stream_type, expected, other)
                        .await
                }
            }
        }
    }

    /// Appends inside a transaction (or on a connection) the caller holds, e.g. to write
    /// events together with other rows. The caller commits; local followers are woken now and
    /// poll until the commit is visible.
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        stream_id: Uuid,
        stream_type: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
        metadata: &Metadata,
    ) -> Result<Appended, StoreError> {
        let payloads = validate_batch(stream_type, events, metadata, false)?;
        let result = self
            .try_append(
                &mut *conn,
                stream_id,
                stream_type,
                expected,
                events,
                &payloads,
                metadata,
                None,
            )
            .await;
        match result {
            // The caller's transaction is aborted; the refusal is read from a fresh connection.
            Err(e) if matches!(collision_of(&e), Some(Collision::StreamVersion)) => {
                Err(self.refusal(stream_id, stream_type, expected).await)
            }
            other => other,
        }
    }

    /// Appends to several streams in one transaction: all of them or none. Each part states
    /// its own expected version; any mismatch refuses the whole batch with that stream's
    /// conflict. With `command`, the command is recorded under `metadata.command_id` together
    /// with the first part, and a resend of it returns the first result (`replayed`).
    pub async fn append_streams(
        &self,
        parts: &[StreamAppend<'_>],
        metadata: &Metadata,
        command: Option<&Value>,
    ) -> Result<MultiAppended, StoreError> {
        let payloads = parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                validate_batch(
                    p.stream_type,
                    p.events,
                    metadata,
                    i == 0 && command.is_some(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut tx = self.pool.begin().await?;
        let mut appended = Vec::with_capacity(parts.len());
        let mut failure = None;
        for (i, (part, payloads)) in parts.iter().zip(&payloads).enumerate() {
            let result = self
                .try_append_described(
                    &mut *tx,
                    part.stream_id,
                    part.stream_type,
                    part.expected,
                    part.events,
                    payloads,
                    metadata,
                    if i == 0 { command } else { None },
                    false,
                )
                .await;
            match result {
                Ok(a) => appended.push(a),
                Err(e) => {
                    failure = Some((part, e));
                    break;
                }
            }
        }
        let Some((part, error)) = failure else {
            tx.commit().await?;
            return Ok(MultiAppended {
                appended,
                replayed: None,
            });
        };
        drop(tx);
        if let (Some(command), Some(command_id), Some(first)) =
            (command, metadata.command_id, parts.first())
        {
            if let Some(done) = self
                .replay_command(command_id, first.stream_id, command)
                .await?
            {
                return Ok(MultiAppended {
                    appended: Vec::new(),
                    replayed: Some(done.appended),
                });
            }
        }
        // The transaction is gone: now say what the stream holds.
        if error.is_conflict() || collision_of(&error).is_some() {
            return Err(self
                .refusal(part.stream_id, part.stream_type, part.expected)
                .await);
        }
        Err(error)
    }

    /// Appends the events a command decided, recording the command under its id in the same
    /// statement. If the id already ran, appends nothing and returns the first result; if it
    /// ran as a different command (or on another stream), refuses.
    pub async fn append_command(
        &self,
        stream_id: Uuid,
        stream_type: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
        metadata: &Metadata,
        command: &Value,
    ) -> Result<CommandAppended, StoreError> {
        let payloads = validate_batch(stream_type, events, metadata, true)?;
        let command_id = metadata.command_id.ok_or(StoreError::MissingCommandId)?;
        loop {
            let result = self
                .try_append(
                    &self.pool,
                    stream_id,
                    stream_type,
                    expected,
                    events,
                    &payloads,
                    metadata,
                    Some(command),
                )
                .await;
            let collided = collision_of_result(&result);
            let lost_race =
                collided.is_some() || result.as_ref().is_err_and(StoreError::is_conflict);
            if !lost_race {
                return result.map(|appended| CommandAppended {
                    appended,
                    replayed: false,
                });
            }
            // Either a resend of this very command got there first (then its result is the
            // answer), or the stream moved on (then it is a conflict like any other).
            if let Some(done) = self.replay_command(command_id, stream_id, command).await? {
                return Ok(done);
            }
            match collided {
                // The command id's owner rolled back after all: try again.
                Some(Collision::CommandId) => continue,
                Some(Collision::StreamVersion) if expected == ExpectedVersion::Any => continue,
                _ => {
                    return self
                        .finish_append(stream_id, stream_type, expected, result)
                        .await
                        .map(|appended| CommandAppended {
                            appended,
                            replayed: false,
                        })
                }
            }
        }
    }

    /// The first result of `command_id` if it already ran as this same command on this stream;
    /// `CommandIdReused` if it ran as something else; `None` if it never ran.
    pub async fn replay_command(
        &self,
        command_id: Uuid,
        stream_id: Uuid,
        command: &Value,
    ) -> Result<Option<CommandAppended>, StoreError> {
        match self.lookup_command(command_id).await? {
            None => Ok(None),
            Some(record)
                if record.appended.stream_id == stream_id && &record.command == command =>
            {
                Ok(Some(CommandAppended {
                    appended: record.appended,
                    replayed: true,
                }))
            }
            Some(_) => Err(StoreError::CommandIdReused { command_id }),
        }
    }

    /// What the command log holds for `command_id`.
    pub async fn lookup_command(
        &self,
        command_id: Uuid,
    ) -> Result<Option<CommandRecord>, StoreError> {
        let row: Option<CommandRow> = sqlx::query_as(
            "SELECT command_id, stream_id, stream_type, command, first_version, last_version, \
                    last_transaction_id::text::bigint AS last_transaction_id, last_position \
             FROM command_log WHERE command_id = $1",
        )
        .bind(command_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| CommandRecord {
            command_id: r.command_id,
            stream_type: r.stream_type,
            command: r.command,
            appended: Appended {
                stream_id: r.stream_id,
                first_version: to_u64(r.first_version),
                last_version: to_u64(r.last_version),
                cursor: r
                    .last_transaction_id
                    .zip(r.last_position)
                    .map(|(tx, pos)| Cursor::new(to_u64(tx), pos)),
            },
        }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn try_append<'e>(
        &self,
        executor: impl PgExecutor<'e>,
        stream_id: Uuid,
        stream_type: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
        payloads: &[String],
        metadata: &Metadata,
        command: Option<&Value>,
    ) -> Result<Appended, StoreError> {
        self.try_append_described(
            executor,
            stream_id,
            stream_type,
            expected,
            events,
            payloads,
            metadata,
            command,
            true,
        )
        .await
    }

    /// `describe_refusal`: whether a refused append reads the stream (on another pooled
    /// connection) to say what it found. A caller holding a transaction says no, and asks after
    /// releasing it: waiting for a second connection while holding one can starve a small pool.
    #[allow(clippy::too_many_arguments)]
    async fn try_append_described<'e>(
        &self,
        executor: impl PgExecutor<'e>,
        stream_id: Uuid,
        stream_type: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
        payloads: &[String],
        metadata: &Metadata,
        command: Option<&Value>,
        describe_refusal: bool,
    ) -> Result<Appended, StoreError> {
        let at = match expected {
            ExpectedVersion::NoStream => 0,
            ExpectedVersion::Exact(v) => v,
            // Appends after whatever is there now; a concurrent writer makes this collide and
            // the caller try again.
            ExpectedVersion::Any => self.stream_version(stream_id).await?,
        };
        let at_sql = i64::try_from(at).unwrap_or(i64::MAX);
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let versions: Vec<i32> = events.iter().map(|e| e.schema_version as i32).collect();
        // Both statements take the same eleven leading parameters.
        macro_rules! bound {
            ($query:expr) => {
                $query
                    .bind(stream_id)
                    .bind(stream_type)
                    .bind(at_sql)
                    .bind(&types)
                    .bind(&versions)
                    .bind(payloads)
                    .bind(&metadata.actor)
                    .bind(metadata.command_id)
                    .bind(metadata.correlation_id)
                    .bind(metadata.causation_id)
            };
        }
        let (last, accepted): (Option<(i64, i64)>, bool) = match command {
            None => {
                let rows: Vec<(i64, i64)> = bound!(sqlx::query_as(APPEND_SQL))
                    .fetch_all(executor)
                    .await?;
                (rows.iter().copied().max_by_key(|r| r.1), !rows.is_empty())
            }
            Some(command) => {
                let (tx, pos, logged): (Option<i64>, Option<i64>, bool) =
                    bound!(sqlx::query_as(APPEND_COMMAND_SQL))
                        .bind(command)
                        .fetch_one(executor)
                        .await?;
                (tx.zip(pos), logged)
            }
        };
        if !accepted {
            if !describe_refusal {
                return Err(StoreError::WrongExpectedVersion {
                    stream_id,
                    expected,
                    actual: 0,
                });
            }
            return Err(self.refusal(stream_id, stream_type, expected).await);
        }
        self.wakeup.appended_here();
        Ok(Appended {
            stream_id,
            first_version: at + 1,
            last_version: at + events.len() as u64,
            cursor: last.map(|(tx, pos)| Cursor::new(to_u64(tx), pos)),
        })
    }

    /// Why an append with `expected` was not accepted, from the stream as it is now.
    async fn refusal(
        &self,
        stream_id: Uuid,
        stream_type: &str,
        expected: ExpectedVersion,
    ) -> StoreError {
        let head: Result<Option<(i64, String)>, sqlx::Error> =
            sqlx::query_as("SELECT version, stream_type FROM events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1")
                .bind(stream_id)
                .fetch_optional(&self.pool)
                .await;
        match head {
            Err(e) => e.into(),
            Ok(Some((_, actual))) if actual != stream_type => StoreError::StreamTypeMismatch {
                stream_id,
                expected: stream_type.to_owned(),
                actual,
            },
            Ok(head) => StoreError::WrongExpectedVersion {
                stream_id,
                expected,
                actual: head.map_or(0, |(v, _)| to_u64(v)),
            },
        }
    }

    /// Turns a lost race on (stream_id, version) into the conflict error, with the version the
    /// stream actually reached.
    async fn finish_append(
        &self,
        stream_id: Uuid,
        stream_type: &str,
        expected: ExpectedVersion,
        result: Result<Appended, StoreError>,
    ) -> Result<Appended, StoreError> {
        match result {
            Err(e) if matches!(collision_of(&e), Some(Collision::StreamVersion)) => {
                Err(self.refusal(stream_id, stream_type, expected).await)
            }
            other => other,
        }
    }

    /// Takes the per-stream queue lock (a transaction-scoped advisory lock on a pooled
    /// connection), waiting for whoever holds it. Appends do not need it for correctness; the
    /// command handler uses it to make writers in several processes take turns on a hot stream.
    pub async fn lock_stream(&self, stream_id: Uuid) -> Result<StreamLock, StoreError> {
        // Acquiring fails only on a closed semaphore, and this one is never closed.
        let slot = self
            .lock_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
            .bind(STREAM_QUEUE_LOCK)
            .bind(stream_id)
            .execute(&mut *tx)
            .await?;
        Ok(StreamLock { tx, _slot: slot })
    }

    /// The stream's current version; 0 when it does not exist.
    /// [`stream_version`](Self::stream_version) on the given connection, for a decision
    /// inside a transaction holding the lock that keeps the stream still.
    pub async fn stream_version_in<'e>(
        &self,
        conn: impl PgExecutor<'e>,
        stream_id: Uuid,
    ) -> Result<u64, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM events WHERE stream_id = $1")
                .bind(stream_id)
                .fetch_one(conn)
                .await?;
        Ok(v.map(to_u64).unwrap_or(0))
    }

    pub async fn stream_version(&self, stream_id: Uuid) -> Result<u64, StoreError> {
        self.stream_version_in(&self.pool, stream_id).await
    }

    /// One stream's events after `after_version`, in stream order. `StreamNotFound` when the
    /// stream has no events at all.
    pub async fn read_stream(
        &self,
        stream_id: Uuid,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self
            .read_stream_range(stream_id, after_version, u64::MAX)
            .await?;
        if events.is_empty() && (after_version == 0 || self.stream_version(stream_id).await? == 0) {
            return Err(StoreError::StreamNotFound { stream_id });
        }
        Ok(events)
    }

    /// Events of one stream with `after_version < version <= up_to_version`; empty for an
    /// unknown stream (for loading aggregates, where a new stream is normal).
    pub async fn read_stream_range(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2 AND version <= $3 ORDER BY version"
        ))
        .bind(stream_id)
        .bind(i64::try_from(after_version).unwrap_or(i64::MAX))
        .bind(i64::try_from(up_to_version).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|row| self.decode(row)).collect()
    }

    /// A subquery yielding the events of the stream `stream_id_sql` names (an expression of the
    /// enclosing statement), in stream order, with the columns [`decode_row`](Self::decode_row)
    /// reads: for a statement that finds a stream and reads its events in one round trip, as
    /// `CROSS JOIN LATERAL ({subquery}) ev`. The enclosing statement's own output columns must
    /// not reuse the event columns' names.
    pub fn stream_events_subquery(stream_id_sql: &str) -> String {
        format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = {stream_id_sql} ORDER BY version"
        )
    }

    /// Decodes (and upcasts) an event from a row that carries the columns of
    /// [`stream_events_subquery`](Self::stream_events_subquery), among others.
    pub fn decode_row(&self, row: &sqlx::postgres::PgRow) -> Result<RecordedEvent, StoreError> {
        let row = <EventRow as sqlx::FromRow<'_, sqlx::postgres::PgRow>>::from_row(row)?;
        self.decode(row)
    }

    /// One stream's events, read on the caller's connection: for commands that decide inside a
    /// transaction holding the lock that keeps the stream still (no second pooled connection is
    /// needed while the first is held).
    pub async fn read_stream_in(
        &self,
        conn: &mut PgConnection,
        stream_id: Uuid,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(&Self::stream_events_subquery("$1"))
            .bind(stream_id)
            .fetch_all(&mut *conn)
            .await?;
        rows.into_iter().map(|row| self.decode(row)).collect()
    }

    /// Up to `limit` events of the global log after `after`, in read order.
    ///
    /// Only events of transactions older than every transaction still running are returned:
    /// below that horizon nothing can be inserted any more, so a cursor taken from the last
    /// event returned is final, and no later read can find an event before it.
    pub async fn read_all(
        &self,
        after: Cursor,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_range(after, None, limit).await
    }

    /// [`read_all`](Self::read_all), stopping at `up_to` (inclusive) when given: for readers that
    /// must reach one exact point of the log, such as a verification against a checkpoint.
    pub async fn read_range(
        &self,
        after: Cursor,
        up_to: Option<Cursor>,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let up_to = up_to.unwrap_or(Cursor::new(i64::MAX as u64, i64::MAX));
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2) \
               AND (transaction_id, position) <= ($3::bigint::text::xid8, $4) \
               AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY events.transaction_id, events.position LIMIT $5"
        ))
        .bind(i64::try_from(after.transaction_id).unwrap_or(i64::MAX))
        .bind(after.position)
        .bind(i64::try_from(up_to.transaction_id).unwrap_or(i64::MAX))
        .bind(up_to.position)
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|row| self.decode(row)).collect()
    }

    /// [`read_range`](Self::read_range) keeping only events that match `filter`: the auditors' view.
    ///
    /// Kept apart from [`read_range`](Self::read_range), the projections' hot path, so that the
    /// filters' extra predicates never touch that plan.
    pub async fn read_filtered(
        &self,
        after: Cursor,
        up_to: Option<Cursor>,
        filter: &EventFilter,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let up_to = up_to.unwrap_or(Cursor::new(i64::MAX as u64, i64::MAX));
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2) \
               AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
               AND ($3::text IS NULL OR stream_type = $3) \
               AND ($4::text IS NULL OR event_type = $4) \
               AND ($5::text IS NULL OR actor = $5) \
               AND ($6::timestamptz IS NULL OR recorded_at >= $6) \
               AND ($7::timestamptz IS NULL OR recorded_at < $7) \
               AND (transaction_id, position) <= ($9::bigint::text::xid8, $10) \
             ORDER BY events.transaction_id, events.position LIMIT $8"
        ))
        .bind(i64::try_from(after.transaction_id).unwrap_or(i64::MAX))
        .bind(after.position)
        .bind(filter.stream_type.as_deref())
        .bind(filter.event_type.as_deref())
        .bind(filter.actor.as_deref())
        .bind(filter.from)
        .bind(filter.to)
        .bind(limit.clamp(1, 10_000))
        .bind(i64::try_from(up_to.transaction_id).unwrap_or(i64::MAX))
        .bind(up_to.position)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|row| self.decode(row)).collect()
    }

    /// The cursor of the last committed event in read order (`START` for an empty log). Readers
    /// reach it once every older transaction has finished.
    pub async fn head(&self) -> Result<Cursor, StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id::text::bigint, position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|(tx, pos)| Cursor::new(to_u64(tx), pos))
            .unwrap_or(Cursor::START))
    }

    /// Every event after `after`, in read order: first what is already there, page by page,
    /// then live as appends commit. Never ends by itself; drop it to stop. Each event is
    /// yielded once; an error ends the stream (resume from the last cursor seen).
    pub fn follow(
        &self,
        after: Cursor,
        options: FollowOptions,
    ) -> impl Stream<Item = Result<RecordedEvent, StoreError>> + Send + 'static {
        let pages = self.follow_pages(after, options);
        async_stream::try_stream! {
            let mut pages = std::pin::pin!(pages);
            while let Some(page) = futures_util::StreamExt::next(&mut pages).await {
                for event in page? {
                    yield event;
                }
            }
        }
    }

    /// [`follow`](Self::follow) in pages: each item holds up to `page_size` events, never zero.
    /// Projections apply a page per transaction.
    pub fn follow_pages(
        &self,
        after: Cursor,
        options: FollowOptions,
    ) -> impl Stream<Item = Result<Vec<RecordedEvent>, StoreError>> + Send + 'static {
        let store = self.clone();
        async_stream::try_stream! {
            let mut after = after;
            let mut woken = store.wakeup.subscribe();
            loop {
                // Mark the wake-up state seen *before* reading, so that an append landing
                // between the read and the wait still wakes us.
                woken.borrow_and_update();
                let page = store.read_all(after, options.page_size).await?;
                let full = page.len() as i64 >= options.page_size;
                if let Some(last) = page.last() {
                    after = last.cursor;
                    yield page;
                }
                if !full {
                    // Timeout or wake-up alike: look again. A closed channel cannot happen while
                    // `store` holds the sender, but polling covers it regardless.
                    let _ = tokio::time::timeout(options.poll_interval, woken.changed()).await;
                }
            }
        }
    }

    fn decode(&self, row: EventRow) -> Result<RecordedEvent, StoreError> {
        let stored_version = u32::try_from(row.schema_version).unwrap_or(0);
        let (schema_version, payload) = self
            .upcasters
            .upcast(&row.event_type, stored_version, row.payload)
            .map_err(|reason| StoreError::Undecodable {
                position: row.position,
                event_type: row.event_type.clone(),
                schema_version: stored_version,
                reason,
            })?;
        Ok(RecordedEvent {
            cursor: Cursor::new(to_u64(row.transaction_id), row.position),
            stream_id: row.stream_id,
            stream_type: row.stream_type,
            version: to_u64(row.version),
            event_type: row.event_type,
            schema_version,
            payload,
            metadata: Metadata {
                actor: row.actor,
                command_id: row.command_id,
                correlation_id: row.correlation_id,
                causation_id: row.causation_id,
            },
            recorded_at: row.recorded_at,
        })
    }
}

fn collision_of(error: &StoreError) -> Option<Collision> {
    match error {
        StoreError::Database(e) => collision(e),
        _ => None,
    }
}

fn collision_of_result<T>(result: &Result<T, StoreError>) -> Option<Collision> {
    result.as_ref().err().and_then(collision_of)
}

/// Checks a batch before it goes near the database; returns the payloads as JSON text.
fn validate_batch(
    stream_type: &str,
    events: &[NewEvent],
    metadata: &Metadata,
    command: bool,
) -> Result<Vec<String>, StoreError> {
    validate_name("stream type", stream_type)?;
    if events.is_empty() && !command {
        return Err(StoreError::EmptyBatch);
    }
    if events.len() > MAX_BATCH_EVENTS {
        return Err(StoreError::BatchTooLarge {
            count: events.len(),
            limit: MAX_BATCH_EVENTS,
        });
    }
    metadata.validate()?;
    events.iter().map(NewEvent::validate).collect()
}
