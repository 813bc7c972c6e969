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
//! - [`staffing`]: staff members and allocating work to them: ranking from the `staffing`
//!   read model (a suggestion only), the chosen staff member re-checked on the write side, the
//!   decision recorded on the work's allocation stream, releases.
//! - [`users`]: users and sessions: registration, login with lockout and rate limits, bearer
//!   tokens (stored hashed), password changes (Argon2id hashes kept beside the log).
//! - [`notifications`]: notifications and their delivery policy (claim an attempt, send,
//!   record the outcome), behind the [`notifications::NotificationChannel`] port with its log
//!   and signed-webhook adapters.
//! - [`workflows`]: versioned workflow definitions and their runs: the service (register,
//!   start with the input checked against a JSON Schema, cancel, signal, incident decisions),
//!   the step kinds (`human_task`, `http`, `wait`, `signal`) and the executor that drives runs
//!   from the write side's `wf_runnable` rows, shared by every server with `SKIP LOCKED`.
//! - [`jobs`]: the job runner every scheduled job uses (one run at a time across processes,
//!   a shared schedule, a record of runs) and the server's jobs: renewal scan and expiry,
//!   notification check, dispatch and retention, SLA escalation.
//!
//! - [`audit`]: the log's proof of itself: signed checkpoints of the hash chain (ed25519, the
//!   key outside the database) and the verification that recomputes the chain and checks them.
//!
//! Services that need a read model (the jobs' candidate lists) use `projections`' queries
//! only to suggest; every decision is taken from the write side.

pub mod audit;
pub mod clock;
pub mod credentialing;
pub mod error;
pub mod handler;
pub mod jobs;
pub mod notifications;
pub mod practices;
pub mod staffing;
pub mod unit_of_work;
pub mod users;
pub mod workflows;
pub mod workqueue;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{CommandError, RetryPolicy};
pub use handler::{CommandHandler, CommandOutcome};
pub use unit_of_work::{Committed, Decision, Staged, UnitOfWork};
