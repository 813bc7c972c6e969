//! Caseledger's read side: the projector runtime and the read models it maintains.
//!
//! A tour:
//! - [`projection`]: the [`Projection`] trait: a name, the event types it wants, the tables it
//!   owns, and `apply`, which writes a page of events inside the runtime's transaction.
//! - [`runtime`]: [`Projector`] runs every projection live, one process at a time per projection
//!   (a session advisory lock on the connection that writes), pages and checkpoint in one
//!   transaction, failures isolated and retried with backoff.
//! - [`checkpoint`]: all SQL on `projection_checkpoints`, the lock keys, and status.
//! - [`rebuild`]: replay from zero into fresh tables and swap them in atomically; verify a live
//!   model against a scratch rebuild, row by row.
//! - [`wait`]: read-your-writes, waiting until a projection has passed a cursor.
//! - [`catalogue`]: the stream catalogue read model.
//! - [`credentialing`]: physicians, credentials and renewals, with the dashboard's queries.
//! - [`notifications`]: expiry notifications, the outbox and each delivery attempt.
//! - [`staffing`]: staff members, allocations of work to them, workloads and ranking candidates.
//! - [`practices`]: practices, locations, members, and the practice reports.
//! - [`workqueue`]: departments, queues and grants, tasks with their history, cases with their
//!   routing history; queue views, my tasks, the dashboard and the SLA report. Split by concern:
//!   its tables (`schema`), the event-to-row logic (`apply`), the queries and rows (`queries`).
//! - [`workflows`]: workflow keys with their latest version, runs with their status and progress
//!   (each run's steps followed), and successful step attempts' durations with per-step stats.
//!
//! Each read model has specifications in `tests/read_models.rs`: typed domain events appended
//! to a fresh database, the model run through its runtime, then its queries' rows asserted
//! (the harness is `tests/support`).
//!
//! Read models live in the `read_models` schema, which the `caseledger_analyst` role may read.

pub mod catalogue;
pub mod checkpoint;
pub mod credentialing;
pub mod notifications;
pub mod practices;
pub mod projection;
pub mod rebuild;
pub mod runtime;
pub mod staffing;
pub mod wait;
pub mod workflows;
pub mod workqueue;

use std::sync::Arc;

pub use checkpoint::{ProjectionStatus, State};
pub use projection::{ApplyError, Projection};
pub use runtime::{Projector, RuntimeConfig};

/// Every read model the server maintains.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(catalogue::StreamCatalogue),
        Arc::new(credentialing::CredentialingModel),
        Arc::new(notifications::NotificationsModel),
        Arc::new(staffing::StaffingModel),
        Arc::new(practices::PracticesModel),
        Arc::new(workqueue::WorkQueueModel),
        Arc::new(workflows::WorkflowsModel),
    ]
}
