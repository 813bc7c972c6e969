//! What a projection is: a name, the events it wants, the tables it owns, and how a page of
//! events changes them.

use eventstore::RecordedEvent;
use futures_util::future::BoxFuture;
use sqlx::PgConnection;

/// Why a projection could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("event at position {position} ({event_type}) cannot be applied: {reason}")]
    Event {
        position: i64,
        event_type: String,
        reason: String,
    },
}

impl ApplyError {
    /// The event `e` cannot be applied, and why.
    pub fn at(e: &RecordedEvent, reason: impl ToString) -> Self {
        ApplyError::Event {
            position: e.cursor.position,
            event_type: e.event_type.clone(),
            reason: reason.to_string(),
        }
    }
}

/// `e` as an event of aggregate `A`; one that does not decode is an [`ApplyError`] naming it.
pub fn decode<A: domain::Aggregate>(e: &RecordedEvent) -> Result<A::Event, ApplyError> {
    eventstore::codec::decode::<A>(e).map_err(|reason| ApplyError::at(e, reason))
}

/// `%term%` for `LIKE ... ESCAPE '\'`: the term's own wildcards match literally, and NUL
/// (which PostgreSQL text cannot hold) is dropped.
pub fn like_pattern(term: &str) -> String {
    let escaped: String = term
        .chars()
        .filter(|c| *c != '\0')
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%{escaped}%")
}

/// A read model built from the log.
///
/// The runtime calls [`apply`](Projection::apply) inside a transaction whose `search_path` is
/// the schema being written (`read_models` when live, a scratch schema during a rebuild), so
/// projections use unqualified table names and never know which one they are writing.
/// The runtime writes the checkpoint in the same transaction.
pub trait Projection: Send + Sync + 'static {
    /// Stable name: the key of its checkpoint and of `caseledger projections rebuild NAME`.
    fn name(&self) -> &'static str;

    /// Event types it applies; empty means every event. Pages passed to `apply` hold only these.
    fn event_types(&self) -> &'static [&'static str];

    /// The tables it owns, unqualified. A rebuild swaps exactly these.
    fn tables(&self) -> &'static [&'static str];

    /// DDL creating its tables, indexes and comments with unqualified names, idempotent
    /// (`IF NOT EXISTS`), run with `search_path` set to the target schema.
    fn create_sql(&self) -> &'static str;

    /// Applies a page of events, in log order, to its tables. Must be deterministic: a rebuild
    /// from position zero has to produce the same rows as the live run.
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ApplyError>>;

    /// Whether this projection wants `event_type`.
    fn wants(&self, event_type: &str) -> bool {
        let types = self.event_types();
        types.is_empty() || types.contains(&event_type)
    }
}
