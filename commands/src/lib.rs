//! Caseledger's write side: the PostgreSQL event store and generic command handling.
//!
//! A tour:
//! - [`store`]: [`EventStore`] appends batches with optimistic concurrency, reads a stream,
//!   reads the global log in pages and follows it live; every SQL statement on `events` is there.
//! - [`cursor`]: [`Cursor`], a reader's place in the global log, and why the read order is
//!   `(transaction_id, position)` rather than position alone.
//! - [`event`]: events as stored (JSON payloads with metadata) and the limits on them.
//! - [`upcast`]: schema evolution on read.
//! - [`wakeup`]: LISTEN/NOTIFY wake-ups for followers, with polling as the fallback.
//! - [`handler`]: [`CommandHandler`] drives a pure [`domain::Aggregate`]: load, decide with the
//!   injected [`clock`], append with the exact expected version, retry on conflict.
//! - [`codec`]: typed domain events to stored events and back.
//! - [`credentialing`]: physicians, credentials and renewals, including the commands that
//!   append to a renewal and its credential in one transaction.
//! - [`practices`]: practices and physician assignment (membership and practice streams in
//!   one transaction; transfers across three streams).
//! - [`workqueue`]: departments, queues and grants, tasks (claim-next with `SKIP LOCKED` over
//!   the write side's `wq_*` tables, hand-offs, SLA escalation, push distribution) and cases.
//! - [`jobs`]: the job runner every scheduled job uses (one run at a time across processes,
//!   a shared schedule, a record of runs).

pub mod clock;
pub mod codec;
pub mod credentialing;
pub mod cursor;
pub mod error;
pub mod event;
pub mod handler;
pub mod jobs;
pub mod practices;
pub mod store;
pub mod upcast;
pub mod wakeup;
pub mod workqueue;

pub use clock::{Clock, ManualClock, SystemClock};
pub use cursor::Cursor;
pub use error::StoreError;
pub use event::{Metadata, NewEvent, RecordedEvent};
pub use handler::{CommandHandler, CommandOutcome, HandleError};
pub use store::{
    Appended, EventFilter, EventStore, ExpectedVersion, FollowOptions, MultiAppended, StreamAppend,
};
pub use upcast::Upcasters;

/// The SQL migrations (from the workspace's `migrations/`), embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
