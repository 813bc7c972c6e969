//! Caseledger's application layer: every service that decides. The event store it appends to
//! is the `eventstore` crate.
//!
//! A tour:
//! - [`handler`]: [`CommandHandler`] drives a pure [`domain::Aggregate`]: load, decide with the
//!   injected [`clock`], append with the exact expected version, retry on conflict.
//! - [`error`]: [`CommandError`], the one error every service returns (generic over the
//!   domain's refusal), and [`RetryPolicy`], the one limit on deciding again after a conflict.
//! - [`unit_of_work`]: [`UnitOfWork`], the one shape of a command over several streams: load
//!   through the handlers' caches, decide, append every touched stream in one transaction,
//!   retry on conflict.
//! - [`credentialing`]: physicians, credentials and renewals, including the commands that
//!   append to a renewal and its credential in one transaction.
//! - [`practices`]: practices and physician assignment (membership and practice streams in
//!   one transaction; transfers across three streams).
//! - [`workqueue`]: departments, queues and grants, tasks (claim-next with `SKIP LOCKED` over
//!   the write side's `wq_*` tables, hand-offs, SLA escalation, push distribution) and cases.
//! - [`jobs`]: the job runner every scheduled job uses (one run at a time across processes,
//!   a shared schedule, a record of runs).

pub mod clock;
pub mod credentialing;
pub mod error;
pub mod handler;
pub mod jobs;
pub mod practices;
pub mod unit_of_work;
pub mod workqueue;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{CommandError, RetryPolicy};
pub use handler::{CommandHandler, CommandOutcome, HandleError};
pub use unit_of_work::{Committed, Decision, Staged, UnitOfWork};
