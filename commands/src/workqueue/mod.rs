//! Commands on departments, queues, tasks and cases.
//!
//! **Why tasks do not go through [`CommandHandler`].** A claim has to answer questions no single
//! stream can: which open task comes next among all of a user's queues, skipping the ones other
//! claimers are taking at this instant; which grants the user holds in force now; how many tasks
//! they hold. Those answers come from the `wq_*` tables (see the migrations), which every queue
//! and task command writes in the same transaction as its events; the per-user loads in
//! `wq_loads` are kept by a trigger on `wq_tasks`, so that claim-next reads a counter instead of
//! counting the user's claimed tasks on every call. Each command therefore runs as one
//! transaction:
//!
//! 1. take the locks that keep its look-ups true: the task's row (`FOR UPDATE`; claim-next
//!    instead picks with `FOR UPDATE SKIP LOCKED`, so claimers never wait on each other's rows),
//!    the user whose load or grants decide it (a transaction-scoped advisory lock per username,
//!    which grants, revocations, claims and assignments of that user all take), and for push
//!    distribution and total capacity, the queue's row;
//! 2. read the look-ups and the stream on that same connection (claim-next reads the picked
//!    task's events in the pick's own statement), and decide with the pure domain;
//! 3. append at the version read (nobody else can have moved it: every writer holds the row) and
//!    update the `wq_*` rows; commit.
//!
//! Lock order, which is what keeps this free of deadlocks: queue row, then task row, then user
//! locks in advisory-key order, then (through the trigger on `wq_tasks`) the `wq_loads` rows,
//! in username order when a hand-off moves a task between two users. Claim-next takes a user
//! lock and then rows it never waits for, but for the claimer's own `wq_loads` row, which only
//! transactions holding that user's lock or handing a task off from them write.
//!
//! Departments have no such look-ups and use [`CommandHandler`]. Case commands take a lock on
//! the case that task creation and linking for the case take too, so that closing a case
//! counts unfinished tasks nobody can add to meanwhile.
//!
//! The service is one [`WorkQueues`], its commands split by concern: `departments`,
//! `queues` (and grants), `tasks` (creation, push distribution, the commands on one task),
//! `claim` (claim-next), `escalation` (SLA), `cases`, and `shared` (loading, appending on a
//! transaction, the `wq_*` rows and locks). Every command fails with [`WorkQueueError`], the
//! crate's one [`CommandError`], and retries under the one [`RetryPolicy`].

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use domain::user::Username;
use domain::workqueue::case::{Case, CaseCommand, CaseError, CaseEvent, QueueRef};
use domain::workqueue::department::{
    Department, DepartmentCommand, DepartmentError, DepartmentEvent, ParentLookup,
};
use domain::workqueue::distribution::{self, Candidate, Choice, NoChoice};
use domain::workqueue::queue::{
    EscalationPolicy, Queue, QueueCommand, QueueConfig, QueueError, QueueEvent, QueueRole, Standing,
};
use domain::workqueue::task::{
    CaseLookup, Load, QueueLookup, Task, TaskCommand, TaskError, TaskEvent, TaskStatus,
};
use domain::workqueue::{GroupLabel, Priority};
use domain::Aggregate;
use serde_json::Value;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::{CommandError, RetryPolicy};
use crate::handler::{CommandHandler, CommandOutcome};
use domain::refusal::{ErrorKind, Refusal};
use eventstore::codec;
use eventstore::cursor::Cursor;
use eventstore::error::StoreError;
use eventstore::event::{Metadata, RecordedEvent};
use eventstore::store::{to_u64, EventStore, ExpectedVersion};

mod cases;
mod claim;
mod departments;
mod escalation;
mod queues;
mod shared;
mod tasks;

use shared::*;

/// Which aggregate refused a work-queue command, or what else said no.
#[derive(Debug, thiserror::Error)]
pub enum WorkQueueRefusal {
    #[error(transparent)]
    Department(#[from] DepartmentError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Case(#[from] CaseError),
    /// The client decided on a version of the task that is no longer current.
    #[error("the task is at version {actual}, not {expected}: it changed since it was read")]
    StaleVersion { expected: u64, actual: u64 },
    /// Claim-next found nothing to give.
    #[error("{0}")]
    NothingToClaim(NothingToClaim),
}

impl Refusal for WorkQueueRefusal {
    fn kind(&self) -> ErrorKind {
        match self {
            WorkQueueRefusal::Department(e) => e.kind(),
            WorkQueueRefusal::Queue(e) => e.kind(),
            WorkQueueRefusal::Task(e) => e.kind(),
            WorkQueueRefusal::Case(e) => e.kind(),
            WorkQueueRefusal::StaleVersion { .. } => ErrorKind::Conflict,
            WorkQueueRefusal::NothingToClaim(n) => n.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            WorkQueueRefusal::Department(e) => e.code(),
            WorkQueueRefusal::Queue(e) => e.code(),
            WorkQueueRefusal::Task(e) => e.code(),
            WorkQueueRefusal::Case(e) => e.code(),
            WorkQueueRefusal::StaleVersion { .. } => "stale_version",
            WorkQueueRefusal::NothingToClaim(n) => n.code(),
        }
    }

    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        match self {
            WorkQueueRefusal::Department(e) => e.details(),
            WorkQueueRefusal::Queue(e) => e.details(),
            WorkQueueRefusal::Task(e) => e.details(),
            WorkQueueRefusal::Case(e) => e.details(),
            WorkQueueRefusal::StaleVersion { expected, actual } => domain::refusal::fields(
                serde_json::json!({ "expected_version": expected, "current_version": actual }),
            ),
            WorkQueueRefusal::NothingToClaim(_) => serde_json::Map::new(),
        }
    }
}

/// Why a work-queue command did not happen.
pub type WorkQueueError = CommandError<WorkQueueRefusal>;

impl From<DepartmentError> for WorkQueueError {
    fn from(e: DepartmentError) -> Self {
        CommandError::Rejected(e.into())
    }
}

impl From<QueueError> for WorkQueueError {
    fn from(e: QueueError) -> Self {
        CommandError::Rejected(e.into())
    }
}

impl From<TaskError> for WorkQueueError {
    fn from(e: TaskError) -> Self {
        CommandError::Rejected(e.into())
    }
}

impl From<CaseError> for WorkQueueError {
    fn from(e: CaseError) -> Self {
        CommandError::Rejected(e.into())
    }
}

impl From<NothingToClaim> for WorkQueueError {
    fn from(e: NothingToClaim) -> Self {
        CommandError::Rejected(WorkQueueRefusal::NothingToClaim(e))
    }
}

impl From<CommandError<DepartmentError>> for WorkQueueError {
    fn from(e: CommandError<DepartmentError>) -> Self {
        e.widen(DepartmentError::NotFound)
    }
}

/// Why claim-next gave nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NothingToClaim {
    #[error("you hold no grant in force for any queue")]
    NoGrants,
    #[error("you are at capacity in every queue you hold a grant for")]
    AtCapacity,
    #[error("no open task you may claim is waiting")]
    NoOpenTask,
}

impl Refusal for NothingToClaim {
    fn kind(&self) -> ErrorKind {
        match self {
            NothingToClaim::NoGrants => ErrorKind::Forbidden,
            NothingToClaim::AtCapacity => ErrorKind::Conflict,
            NothingToClaim::NoOpenTask => ErrorKind::NotFound,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            NothingToClaim::NoGrants => "no_valid_grant",
            NothingToClaim::AtCapacity => "over_capacity",
            NothingToClaim::NoOpenTask => "no_task_available",
        }
    }
}

/// What a task command wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskWritten {
    pub task_id: Uuid,
    /// The task stream's version after the command.
    pub version: u64,
    pub events: Vec<TaskEvent>,
    /// Read-order cursor of the last event written; `None` if nothing was.
    pub cursor: Option<Cursor>,
    /// A resend (same idempotency key) of a command that already ran.
    pub replayed: bool,
}

/// What a queue command wrote.
pub type QueueWritten = CommandOutcome<QueueEvent>;

/// A task to create.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub task_id: Uuid,
    pub queue_id: Uuid,
    pub title: String,
    pub priority: Priority,
    pub groups: Vec<GroupLabel>,
    pub case_id: Option<Uuid>,
    pub payload: Value,
}

/// Who asks for a hand-off, and with what authority.
#[derive(Debug, Clone)]
pub struct Reassignment {
    pub by: String,
    /// The caller is an admin (leads are found from their grants).
    pub by_admin: bool,
    pub to: String,
    pub reason: String,
}

/// What the SLA check did in one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EscalationReport {
    /// Tasks looked at.
    pub checked: u64,
    /// `TaskEscalated` events written.
    pub escalations: u64,
    /// Tasks whose escalation failed (logged; tried again next run).
    pub failed: u64,
}

/// Runs work-queue commands.
#[derive(Debug)]
pub struct WorkQueues {
    store: EventStore,
    clock: Arc<dyn Clock>,
    pub departments: CommandHandler<Department>,
    /// Loads queues outside transactions (configuration for task creation and the SLA check).
    pub queues: CommandHandler<Queue>,
}

/// A transaction's connection.
type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

impl WorkQueues {
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            departments: CommandHandler::new(store.clone(), clock.clone()),
            queues: CommandHandler::new(store.clone(), clock.clone()),
            store,
            clock,
        }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }
}
