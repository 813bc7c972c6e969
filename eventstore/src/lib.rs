//! Caseledger's event store: the one table every change is appended to, and everything that
//! reads it. It decides nothing; `commands` decides and `projections` reads through it.
//!
//! A tour:
//! - [`store`]: [`EventStore`] appends batches with optimistic concurrency, reads a stream,
//!   reads the global log in pages and follows it live; every SQL statement on `events` is there,
//!   as are idempotency records (the command log) and per-stream advisory locks.
//! - [`cursor`]: [`Cursor`], a reader's place in the global log, and why the read order is
//!   `(transaction_id, position)` rather than position alone.
//! - [`event`]: events as stored (JSON payloads with metadata) and the limits on them.
//! - [`seal`]: the hash chain over the log: the sealer that follows the readable head, the
//!   walk that recomputes it, and the export of what was hashed.
//! - [`upcast`]: schema evolution on read.
//! - [`wakeup`]: LISTEN/NOTIFY wake-ups for followers, with polling as the fallback.
//! - [`codec`]: typed domain events to stored events and back.
//! - [`error`]: [`StoreError`], each variant naming what was wrong.
//! - [`MIGRATOR`]: the workspace's SQL migrations, embedded.

pub mod codec;
pub mod cursor;
pub mod error;
pub mod event;
pub mod seal;
pub mod store;
pub mod upcast;
pub mod wakeup;

pub use codec::CodecError;
pub use cursor::Cursor;
pub use error::StoreError;
pub use event::{Metadata, NewEvent, RecordedEvent};
pub use store::{
    Appended, EventFilter, EventStore, ExpectedVersion, FollowOptions, MultiAppended, StreamAppend,
};
pub use upcast::Upcasters;

/// The SQL migrations (from the workspace's `migrations/`), embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
