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

/// Claim-next's pick: see [`WorkQueues::claim_next`]. $1 the user, $2 now, $3 the queues to
/// limit the pick to (or NULL). One row per event of the picked task (one with NULL event
/// columns if it has none, which only a damaged store can show), none if nothing was picked.
static CLAIM_NEXT_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH eligible AS ( \
             SELECT g.queue_id, \
                    coalesce(array_agg(DISTINCT s) FILTER (WHERE s IS NOT NULL), '{{}}') AS skills, \
                    q.per_user_capacity AS capacity, coalesce(l.claimed, 0)::bigint AS claimed \
             FROM wq_grants g JOIN wq_queues q USING (queue_id) \
             LEFT JOIN wq_loads l ON l.username = $1 AND l.queue_id = g.queue_id \
             LEFT JOIN LATERAL unnest(g.skills) s ON true \
             WHERE g.username = $1 AND g.valid_from <= $2 AND (g.valid_until IS NULL OR g.valid_until > $2) \
               AND ($3::uuid[] IS NULL OR g.queue_id = ANY($3)) \
             GROUP BY g.queue_id, q.per_user_capacity, l.claimed \
         ), picked AS ( \
             SELECT t.task_id, t.version, e.skills, e.capacity, e.claimed \
             FROM eligible e CROSS JOIN LATERAL ( \
                 SELECT w.task_id, w.version, w.priority, w.created_at FROM wq_tasks w \
                 WHERE w.status = 'open' AND w.queue_id = e.queue_id \
                   AND (cardinality(w.group_keys) = 0 \
                        OR w.group_keys && (SELECT array_agg(e.queue_id::text || ':' || x) FROM unnest(e.skills) x)) \
                 ORDER BY w.priority DESC, w.created_at, w.task_id \
                 LIMIT 1 FOR UPDATE SKIP LOCKED \
             ) t \
             WHERE e.claimed < e.capacity \
             ORDER BY t.priority DESC, t.created_at, t.task_id \
             LIMIT 1 \
         ), taken AS ( \
             UPDATE wq_tasks w SET status = 'claimed', claimant = $1, version = w.version + 1 \
             FROM picked p WHERE w.task_id = p.task_id RETURNING w.task_id \
         ) \
         SELECT p.task_id AS picked_task_id, p.version AS picked_version, p.skills AS picked_skills, \
                p.capacity AS picked_capacity, p.claimed AS picked_claimed, ev.* \
         FROM picked p JOIN taken USING (task_id) \
         LEFT JOIN LATERAL ({}) ev ON true \
         ORDER BY ev.version",
        EventStore::stream_events_subquery("p.task_id")
    )
});

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

/// The most tasks one SLA run looks at, so a backlog is worked off over several runs.
const ESCALATION_BATCH: i64 = 1_000;

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

    // -----------------------------------------------------------------------------------------
    // Departments
    // -----------------------------------------------------------------------------------------

    pub async fn create_department(
        &self,
        code: &str,
        name: &str,
        parent_id: Option<Uuid>,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<DepartmentEvent>, WorkQueueError> {
        let code =
            domain::workqueue::department::parse_code(code).map_err(DepartmentError::from)?;
        let parent = match parent_id {
            Some(id) => Some(ParentLookup {
                id,
                exists: self.exists(&self.departments, id).await?,
            }),
            None => None,
        };
        let command = DepartmentCommand::Create {
            code: code.clone(),
            name: name.to_owned(),
            parent,
        };
        Ok(self
            .departments
            .handle(Department::stream_id(&code), &command, metadata)
            .await?)
    }

    /// `id`'s aggregate as `handler`'s cache has it, or `None` when no stream of this kind has
    /// that id.
    async fn load_existing<A: Aggregate>(
        &self,
        handler: &CommandHandler<A>,
        id: Uuid,
    ) -> Result<Option<A>, WorkQueueError> {
        Ok(self
            .load_versioned(handler, id)
            .await?
            .map(|(_, state)| state))
    }

    /// [`load_existing`](Self::load_existing) with the version it was read at.
    async fn load_versioned<A: Aggregate>(
        &self,
        handler: &CommandHandler<A>,
        id: Uuid,
    ) -> Result<Option<(u64, A)>, WorkQueueError> {
        match handler.load(id).await {
            Ok((version, state)) => Ok((version > 0).then_some((version, state))),
            Err(CommandError::Store(StoreError::StreamTypeMismatch { .. })) => Ok(None),
            Err(CommandError::Store(e)) => Err(e.into()),
            Err(CommandError::Codec(e)) => Err(e.into()),
            // A load neither decides nor retries.
            Err(CommandError::Rejected(_) | CommandError::TooManyConflicts { .. }) => Ok(None),
        }
    }

    async fn exists<A: Aggregate>(
        &self,
        handler: &CommandHandler<A>,
        id: Uuid,
    ) -> Result<bool, WorkQueueError> {
        Ok(self.load_existing(handler, id).await?.is_some())
    }

    // -----------------------------------------------------------------------------------------
    // Queues and grants
    // -----------------------------------------------------------------------------------------

    /// Creates a queue; its name decides its id.
    pub async fn create_queue(
        &self,
        name: &str,
        config: QueueConfig,
        metadata: &Metadata,
    ) -> Result<QueueWritten, WorkQueueError> {
        let department_exists = self.exists(&self.departments, config.department_id).await?;
        let command = QueueCommand::Create {
            name: name.to_owned(),
            config,
            department_exists,
        };
        self.queue_command(Queue::stream_id(name), &command, None, metadata)
            .await
    }

    pub async fn configure_queue(
        &self,
        queue_id: Uuid,
        config: QueueConfig,
        metadata: &Metadata,
    ) -> Result<QueueWritten, WorkQueueError> {
        let department_exists = self.exists(&self.departments, config.department_id).await?;
        let command = QueueCommand::Configure {
            config,
            department_exists,
        };
        self.queue_command(queue_id, &command, None, metadata).await
    }

    /// Grants `username` a role in a queue. `user_exists` is the caller's look-up.
    #[allow(clippy::too_many_arguments)]
    pub async fn grant(
        &self,
        queue_id: Uuid,
        grant_id: Uuid,
        username: Username,
        user_exists: bool,
        role: QueueRole,
        skills: Vec<GroupLabel>,
        valid_from: Option<DateTime<Utc>>,
        valid_until: Option<DateTime<Utc>>,
        metadata: &Metadata,
    ) -> Result<QueueWritten, WorkQueueError> {
        let user = username.as_str().to_owned();
        let command = QueueCommand::Grant {
            grant_id,
            username,
            user_exists,
            role,
            skills,
            valid_from,
            valid_until,
        };
        self.queue_command(queue_id, &command, Some(&user), metadata)
            .await
    }

    pub async fn revoke(
        &self,
        queue_id: Uuid,
        grant_id: Uuid,
        reason: &str,
        metadata: &Metadata,
    ) -> Result<QueueWritten, WorkQueueError> {
        let holder: Option<String> = sqlx::query_scalar(
            "SELECT username FROM wq_grants WHERE grant_id = $1 AND queue_id = $2",
        )
        .bind(grant_id)
        .bind(queue_id)
        .fetch_optional(self.store.pool())
        .await?;
        let command = QueueCommand::Revoke {
            grant_id,
            reason: reason.to_owned(),
        };
        self.queue_command(queue_id, &command, holder.as_deref(), metadata)
            .await
    }

    /// One queue command: queue stream locked, decided, appended, mirrored. A grant or
    /// revocation also holds the user's lock, so that it orders against that user's claims.
    async fn queue_command(
        &self,
        queue_id: Uuid,
        command: &QueueCommand,
        user: Option<&str>,
        metadata: &Metadata,
    ) -> Result<QueueWritten, WorkQueueError> {
        let mut tx = self.store.pool().begin().await?;
        lock_key(&mut tx, "queue", &queue_id.to_string()).await?;
        if let Some(user) = user {
            lock_user(&mut tx, user).await?;
        }
        let (version, queue) = self.load_in::<Queue>(&mut tx, queue_id).await?;
        if version > 0 && !queue.exists() {
            return Err(QueueError::NotFound.into());
        }
        let now = self.clock.now();
        let events = queue.decide(command, now)?;
        let (version, cursor) = self
            .append_in::<Queue>(&mut tx, queue_id, version, &events, metadata)
            .await?;
        let policy_before = queue.config.as_ref().map(|c| c.escalation);
        for event in &events {
            mirror_queue_event(&mut tx, queue_id, event).await?;
            if let QueueEvent::QueueConfigured { config, .. } = event {
                if policy_before.is_some_and(|p| p != config.escalation) {
                    // Each unfinished task's next escalation was scheduled under the old
                    // policy. Before its due time nothing changes; after it, the SLA check
                    // looks at the task on its next run and, deciding under the new policy,
                    // escalates it or schedules the next look. Rows that keep their value are
                    // left alone (and unlocked, so claimers do not skip them meanwhile).
                    sqlx::query(
                        "UPDATE wq_tasks SET next_escalation_at = greatest(due_at, $2) \
                         WHERE queue_id = $1 AND status IN ('open', 'claimed') \
                           AND next_escalation_at IS DISTINCT FROM greatest(due_at, $2)",
                    )
                    .bind(queue_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(CommandOutcome {
            stream_id: queue_id,
            events,
            version,
            cursor,
            replayed: false,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Tasks
    // -----------------------------------------------------------------------------------------

    /// Creates a task; in a push queue it is assigned at once by the queue's strategy. A resend
    /// (same task id, as derived from an idempotency key) returns the task as it is.
    pub async fn create_task(
        &self,
        new: NewTask,
        metadata: &Metadata,
    ) -> Result<TaskWritten, WorkQueueError> {
        let (mut tx, config, last_assigned) = self.begin_creation(&new).await?;
        let recorded = self.store.read_stream_in(&mut tx, new.task_id).await?;
        let (task_version, existing) = fold::<Task>(&recorded)?;
        if task_version > 0 {
            // A resend of a creation that already happened (or an id of something else): the
            // answer is what the creation wrote, the events of the stream's first transaction.
            if existing.exists() && existing.queue_id == Some(new.queue_id) {
                let first_tx = recorded.first().map(|e| e.cursor.transaction_id);
                let created: Vec<&RecordedEvent> = recorded
                    .iter()
                    .take_while(|e| Some(e.cursor.transaction_id) == first_tx)
                    .collect();
                return Ok(TaskWritten {
                    task_id: new.task_id,
                    version: created.last().map_or(task_version, |e| e.version),
                    events: created
                        .iter()
                        .map(|e| codec::decode::<Task>(e))
                        .collect::<Result<_, _>>()?,
                    cursor: created.last().map(|e| e.cursor),
                    replayed: true,
                });
            }
            return Err(TaskError::AlreadyExists.into());
        }
        // Counted under the queue's row lock, which every creation in a queue with a total
        // holds exclusively.
        let unfinished = match config.as_ref().and_then(|c| c.capacity.total) {
            Some(_) => count(
                sqlx::query_scalar(
                    "SELECT count(*) FROM wq_tasks WHERE queue_id = $1 AND status IN ('open', 'claimed')",
                )
                .bind(new.queue_id)
                .fetch_one(&mut *tx)
                .await?,
            ),
            None => 0,
        };
        let now = self.clock.now();
        let case = match new.case_id {
            Some(case_id) => {
                lock_key(&mut tx, "case", &case_id.to_string()).await?;
                let (case_version, case) = self.load_in::<Case>(&mut tx, case_id).await?;
                Some((case_version, case_id, case))
            }
            None => None,
        };
        let command = TaskCommand::Create {
            queue: QueueLookup {
                queue_id: new.queue_id,
                config: config.clone(),
                unfinished,
            },
            title: new.title,
            priority: new.priority,
            groups: new.groups,
            case: case.as_ref().map(|(v, id, c)| CaseLookup {
                case_id: *id,
                exists: *v > 0 && c.exists(),
                open: c.is_open(),
            }),
            payload: new.payload,
        };
        let mut events = Task::default().decide(&command, now)?;
        let mut task = domain::fold::<Task>(&events);
        let config = config.ok_or(TaskError::UnknownQueue {
            queue_id: new.queue_id,
        })?;

        // Push distribution, under the queue's row lock (taken above).
        let mut assigned_to = None;
        if config.distribution.is_push() {
            if let Some(choice) = self
                .choose_assignee(
                    &mut tx,
                    new.queue_id,
                    &config,
                    &task,
                    last_assigned.as_deref(),
                    now,
                )
                .await?
            {
                let assign = TaskCommand::Assign {
                    to: choice.username.clone(),
                    reason: choice.reason,
                };
                let more = task.decide(&assign, now)?;
                task = more.iter().fold(task, |t, e| t.evolve(e));
                events.extend(more);
                assigned_to = Some(choice.username);
            }
        }

        let (version, cursor) = self
            .append_in::<Task>(&mut tx, new.task_id, 0, &events, metadata)
            .await?;
        if let Some((case_version, case_id, case)) = case {
            let linked = case.decide(
                &CaseCommand::LinkTask {
                    task_id: new.task_id,
                },
                now,
            )?;
            self.append_in::<Case>(&mut tx, case_id, case_version, &linked, metadata)
                .await?;
        }
        put_task_row(
            &mut tx,
            new.task_id,
            &task,
            version,
            Some(next_escalation(&task, &config.escalation)),
        )
        .await?;
        if let Some(to) = &assigned_to {
            sqlx::query("UPDATE wq_queues SET last_assigned = $2 WHERE queue_id = $1")
                .bind(new.queue_id)
                .bind(to)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(TaskWritten {
            task_id: new.task_id,
            version,
            events,
            cursor,
            replayed: false,
        })
    }

    /// Begins a task creation's transaction: the task id's lock (two retries of one creation,
    /// one idempotency key, meet there; the second finds the task the first made), then the
    /// queue's row, and the queue's configuration as of that lock. The row is held shared, so
    /// creations in one queue run side by side while a reconfiguration waits for them (and
    /// they for it); a queue that pushes tasks or limits its total holds it exclusively, since
    /// each creation moves its round-robin place or counts its unfinished tasks. If the queue's
    /// stream moved on between the configuration's read and the lock, a reconfiguration (or a
    /// grant) came in between: read it again and start over.
    async fn begin_creation(
        &self,
        new: &NewTask,
    ) -> Result<(Tx, Option<QueueConfig>, Option<String>), WorkQueueError> {
        for _ in 0..RetryPolicy::DEFAULT.max_attempts {
            let read = self.load_versioned(&self.queues, new.queue_id).await?;
            let mut tx = self.store.pool().begin().await?;
            lock_key(&mut tx, "task", &new.task_id.to_string()).await?;
            let Some((queue_version, config)) =
                read.and_then(|(v, queue)| queue.config.map(|c| (v, c)))
            else {
                return Ok((tx, None, None));
            };
            let exclusive = config.distribution.is_push() || config.capacity.total.is_some();
            let last_assigned: Option<Option<String>> = sqlx::query_scalar(if exclusive {
                "SELECT last_assigned FROM wq_queues WHERE queue_id = $1 FOR NO KEY UPDATE"
            } else {
                "SELECT last_assigned FROM wq_queues WHERE queue_id = $1 FOR SHARE"
            })
            .bind(new.queue_id)
            .fetch_optional(&mut *tx)
            .await?;
            // A reconfiguration writes the row, so under its lock the stream holds still as far
            // as the configuration goes; a grant in between also moves the version, and costs
            // one more round.
            if self.store.stream_version_in(&mut *tx, new.queue_id).await? == queue_version {
                return Ok((tx, Some(config), last_assigned.flatten()));
            }
        }
        Err(RetryPolicy::DEFAULT.exhausted())
    }

    /// Push distribution's candidates (members with a grant in force, each locked so their
    /// load holds until commit) and the strategy's choice; `None` when nobody may take it.
    async fn choose_assignee(
        &self,
        tx: &mut Tx,
        queue_id: Uuid,
        config: &QueueConfig,
        task: &Task,
        last_assigned: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Choice>, WorkQueueError> {
        let members: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT username FROM wq_grants WHERE queue_id = $1 AND valid_from <= $2 \
             AND (valid_until IS NULL OR valid_until > $2)",
        )
        .bind(queue_id)
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
        // Every member's lock, in one statement and in key order (the order any two
        // transactions taking several user locks agree on), so that their loads hold.
        let mut keys: Vec<i64> = members.iter().map(|m| advisory_key("user", m)).collect();
        keys.sort_unstable();
        keys.dedup();
        sqlx::query("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k")
            .bind(&keys)
            .execute(&mut **tx)
            .await?;
        // Then, in one query, their grants in force and their loads.
        let rows: Vec<(String, String, Vec<String>, i64, i64)> = sqlx::query_as(
            "SELECT g.username, g.role, g.skills, coalesce(l.claimed, 0)::bigint, coalesce(l.weight, 0)::bigint \
             FROM wq_grants g \
             LEFT JOIN wq_loads l ON l.username = g.username AND l.queue_id = g.queue_id \
             WHERE g.queue_id = $1 AND g.valid_from <= $2 AND (g.valid_until IS NULL OR g.valid_until > $2) \
             ORDER BY g.username",
        )
        .bind(queue_id)
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
        let mut grants: BTreeMap<String, (Vec<GrantRow>, u32, u32)> = BTreeMap::new();
        for (username, role, skills, claimed, weight) in rows {
            let entry = grants
                .entry(username)
                .or_insert_with(|| (Vec::new(), count(claimed), count(weight)));
            entry.0.push(grant_row(&role, &skills));
        }
        let candidates: Vec<Candidate> = grants
            .into_iter()
            .map(|(username, (held, claimed, weighted_load))| Candidate {
                username,
                skills: Standing::from_grants(held).skills,
                claimed,
                weighted_load,
            })
            .collect();
        match distribution::choose(
            config.distribution,
            config.capacity.per_user,
            &task.groups,
            &candidates,
            last_assigned,
        ) {
            Ok(choice) => Ok(Some(choice)),
            Err(NoChoice::NotPush | NoChoice::NoMembers | NoChoice::NobodyEligible) => Ok(None),
        }
    }

    /// Claims the next task for `user`: the highest priority, then oldest, open task in the
    /// queues (all of theirs, or those in `only`) where they hold a grant in force, have room
    /// under the capacity, and share a candidate group with the task (if it names any).
    ///
    /// With an idempotency key, a retry returns the task the first request claimed.
    pub async fn claim_next(
        &self,
        user: &str,
        only: Option<&[Uuid]>,
        idempotency_key: Option<&str>,
        metadata: &Metadata,
    ) -> Result<TaskWritten, WorkQueueError> {
        let mut tx = begin_as_user(self.store.pool(), user).await?;
        // After the lock: a grant that ended while this waited no longer counts.
        let now = self.clock.now();
        // Under the user's lock, so that a retry racing its first request waits for it and
        // then finds its answer.
        if let Some(key) = idempotency_key {
            if let Some(done) = claimed_with_key(&mut tx, user, key).await? {
                return self.replay_of(&mut tx, done).await;
            }
        }

        // One statement: the user's queues (grants in force now, with room under the
        // capacity), and in each, the first open task in claim order they may take, walking
        // that queue's claim-order index; rows other claimers hold right now are skipped, not
        // waited for. The best of those heads wins, its row is marked claimed, and its events
        // come back with it, a row each. (With several queues, each queue's head stays locked
        // until this commits, so others take the next one there meanwhile.)
        let rows = sqlx::query(&CLAIM_NEXT_SQL)
            .bind(user)
            .bind(now)
            .bind(only.map(<[Uuid]>::to_vec))
            .fetch_all(&mut *tx)
            .await?;
        let Some(first) = rows.first() else {
            return Err(WorkQueueError::from(
                self.why_nothing(&mut tx, user, now, only).await?,
            ));
        };
        let task_id: Uuid = first.try_get("picked_task_id")?;
        let row_version: i64 = first.try_get("picked_version")?;
        let skills: Vec<String> = first.try_get("picked_skills")?;
        let capacity: i32 = first.try_get("picked_capacity")?;
        let claimed: i64 = first.try_get("picked_claimed")?;
        let load = Load {
            claimed: count(claimed),
            capacity: u32::try_from(capacity).unwrap_or(0),
        };
        let standing = Standing {
            member: true,
            lead: false,
            skills: skills
                .iter()
                .filter_map(|s| GroupLabel::parse(s).ok())
                .collect(),
        };
        let mut recorded = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<Option<i64>, _>("position")?.is_some() {
                recorded.push(self.store.decode_row(row)?);
            }
        }
        let (mut version, mut task) = fold::<Task>(&recorded)?;
        if version != to_u64(row_version) {
            // The events were read as of the statement's start; the row was locked later, and
            // a change committed in between (an escalation, say) is in the row but not in what
            // was read. Under the row's lock now, the stream holds still: read it again.
            (version, task) = self.load_in::<Task>(&mut tx, task_id).await?;
        }
        check_row_version(task_id, to_u64(row_version), version)?;
        let command = TaskCommand::Claim {
            user: user.to_owned(),
            standing,
            load,
            next: true,
        };
        let events = task.decide(&command, now)?;
        if events.len() != 1 {
            // The row said open; the stream disagrees. The row's update is rolled back.
            return Err(StoreError::WrongExpectedVersion {
                stream_id: task_id,
                expected: ExpectedVersion::Exact(version),
                actual: version,
            }
            .into());
        }
        // The row already says what the claim does (the pick's UPDATE, one round trip saved);
        // this transaction commits both or neither.
        let (version, cursor) = self
            .append_in::<Task>(&mut tx, task_id, version, &events, metadata)
            .await?;
        if let (Some(key), Some(c)) = (idempotency_key, cursor) {
            let inserted = sqlx::query(
                "INSERT INTO wq_claim_keys (username, idempotency_key, task_id, version, transaction_id, position, claimed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(user)
            .bind(key)
            .bind(task_id)
            .bind(to_i64(version))
            .bind(to_i64(c.transaction_id))
            .bind(c.position)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                // Cannot happen under the user's lock; refuse rather than claim twice.
                return Err(CommandError::TooManyConflicts { attempts: 1 });
            }
        }
        tx.commit().await?;
        Ok(TaskWritten {
            task_id,
            version,
            events,
            cursor,
            replayed: false,
        })
    }

    /// A claim-next answered before (same idempotency key): the same answer, with the claim's
    /// event as it was recorded, whatever happened to the task since.
    async fn replay_of(
        &self,
        conn: &mut PgConnection,
        mut done: TaskWritten,
    ) -> Result<TaskWritten, WorkQueueError> {
        let recorded = self.store.read_stream_in(conn, done.task_id).await?;
        done.events = recorded
            .iter()
            .filter(|e| e.version == done.version)
            .map(codec::decode::<Task>)
            .collect::<Result<_, _>>()?;
        Ok(done)
    }

    /// Why claim-next found nothing: no grant in force, no room, or no task (the rare path,
    /// so it may cost a second query).
    async fn why_nothing(
        &self,
        tx: &mut PgConnection,
        user: &str,
        now: DateTime<Utc>,
        only: Option<&[Uuid]>,
    ) -> Result<NothingToClaim, sqlx::Error> {
        let (grants, with_room): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE coalesce(l.claimed, 0) < q.per_user_capacity) \
             FROM (SELECT DISTINCT queue_id FROM wq_grants \
                   WHERE username = $1 AND valid_from <= $2 AND (valid_until IS NULL OR valid_until > $2) \
                     AND ($3::uuid[] IS NULL OR queue_id = ANY($3))) g \
             JOIN wq_queues q USING (queue_id) \
             LEFT JOIN wq_loads l ON l.username = $1 AND l.queue_id = g.queue_id",
        )
        .bind(user)
        .bind(now)
        .bind(only.map(<[Uuid]>::to_vec))
        .fetch_one(tx)
        .await?;
        Ok(if grants == 0 {
            NothingToClaim::NoGrants
        } else if with_room == 0 {
            NothingToClaim::AtCapacity
        } else {
            NothingToClaim::NoOpenTask
        })
    }

    /// Claims a given task.
    pub async fn claim(
        &self,
        task_id: Uuid,
        user: &str,
        expected: Option<u64>,
        metadata: &Metadata,
    ) -> Result<TaskWritten, WorkQueueError> {
        self.task_command(task_id, expected, metadata, TaskRequest::Claim { user })
            .await
    }

    pub async fn unclaim(
        &self,
        task_id: Uuid,
        user: &str,
        expected: Option<u64>,
        metadata: &Metadata,
    ) -> Result<TaskWritten, WorkQueueError> {
        let command = TaskCommand::Unclaim {
            user: user.to_owned(),
        };
        self.task_command(task_id, expected, metadata, TaskRequest::Ready(command))
            .await
    }

    pub async fn complete(
        &self,
        task_id: Uuid,
        user: &str,
        outcome: &str,
        note: Option<&str>,
        expected: Option<u64>,
        metadata: &Metadata,
    ) -> Result<TaskWritten, WorkQueueError> {
        let command = TaskCommand::Complete {
            user: user.to_owned(),
            outcome: outcome.to_owned(),
            note: note.map(str::to_owned),
        };
        self.task_command(task_id, expected, metadata, TaskRequest::Ready(command))
            .await
    }

    /// Cancels a task: `by` must be an admin (`by_admin`), a lead of its queue or its claimant.
    pub async fn cancel(
        &self,
        task_id: Uuid,
        by: &str,
        by_admin: bool,
        reason: &str,
        expected: Option<u64>,
        metadata: &Metadata,
    ) -> Result<TaskWritten, WorkQueueError> {
        let request = TaskRequest::Cancel {
            by,
            by_admin,
            reason,
        };
        self.task_command(task_id, expected, metadata, request)
            .await
    }

    /// Delegates or reassigns a task to `to` (an admin, or a lead of the task's queue).
    pub async fn reassign(
        &self,
        task_id: Uuid,
        request: &Reassignment,
        expected: Option<u64>,
        metadata: &Metadata,
    ) -> Result<TaskWritten, WorkQueueError> {
        self.task_command(task_id, expected, metadata, TaskRequest::Reassign(request))
            .await
    }

    /// Links an existing task to a case (both streams in one transaction).
    pub async fn link_task_to_case(
        &self,
        task_id: Uuid,
        case_id: Uuid,
        metadata: &Metadata,
    ) -> Result<TaskWritten, WorkQueueError> {
        let mut tx = self.store.pool().begin().await?;
        let Some((_, version, task)) = self.locked_task(&mut tx, task_id).await? else {
            return Err(TaskError::NotFound.into());
        };
        lock_key(&mut tx, "case", &case_id.to_string()).await?;
        let (case_version, case) = self.load_in::<Case>(&mut tx, case_id).await?;
        let lookup = CaseLookup {
            case_id,
            exists: case_version > 0 && case.exists(),
            open: case.is_open(),
        };
        let now = self.clock.now();
        let events = task.decide(&TaskCommand::LinkCase { case: lookup }, now)?;
        if events.is_empty() {
            return Ok(TaskWritten {
                task_id,
                version,
                events,
                cursor: None,
                replayed: false,
            });
        }
        let case_events = case.decide(&CaseCommand::LinkTask { task_id }, now)?;
        let task = events.iter().fold(task, |t, e| t.evolve(e));
        let (version, cursor) = self
            .append_in::<Task>(&mut tx, task_id, version, &events, metadata)
            .await?;
        let (_, case_cursor) = self
            .append_in::<Case>(&mut tx, case_id, case_version, &case_events, metadata)
            .await?;
        put_task_row(&mut tx, task_id, &task, version, None).await?;
        tx.commit().await?;
        Ok(TaskWritten {
            task_id,
            version,
            events,
            cursor: case_cursor.or(cursor),
            replayed: false,
        })
    }

    /// One command on an existing task, under its row lock: `expected` (the version the client
    /// saw) must still be current; `build` makes the command from look-ups on the transaction.
    async fn task_command(
        &self,
        task_id: Uuid,
        expected: Option<u64>,
        metadata: &Metadata,
        request: TaskRequest<'_>,
    ) -> Result<TaskWritten, WorkQueueError> {
        let mut tx = self.store.pool().begin().await?;
        let Some((queue_id, version, task)) = self.locked_task(&mut tx, task_id).await? else {
            return Err(TaskError::NotFound.into());
        };
        if let Some(expected) = expected.filter(|e| *e != version) {
            return Err(CommandError::Rejected(WorkQueueRefusal::StaleVersion {
                expected,
                actual: version,
            }));
        }
        let now = self.clock.now();
        let command = request.into_command(&mut tx, queue_id, &task, now).await?;
        let events = task.decide(&command, now)?;
        if events.is_empty() {
            return Ok(TaskWritten {
                task_id,
                version,
                events,
                cursor: None,
                replayed: false,
            });
        }
        let task = events.iter().fold(task, |t, e| t.evolve(e));
        let (version, cursor) = self
            .append_in::<Task>(&mut tx, task_id, version, &events, metadata)
            .await?;
        let next = task.status.is_finished().then_some(None);
        put_task_row(&mut tx, task_id, &task, version, next).await?;
        tx.commit().await?;
        Ok(TaskWritten {
            task_id,
            version,
            events,
            cursor,
            replayed: false,
        })
    }

    // -----------------------------------------------------------------------------------------
    // SLA
    // -----------------------------------------------------------------------------------------

    /// Escalates every open or claimed task whose next escalation time has come: one
    /// `TaskEscalated` per level reached, priority raised by its queue's policy. Safe to run
    /// from several servers at once: each task is decided under its row lock from its own
    /// events, and a level already recorded is not recorded again.
    pub async fn escalate_overdue(
        &self,
        now: DateTime<Utc>,
        metadata: &Metadata,
    ) -> Result<EscalationReport, WorkQueueError> {
        let due: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT task_id, queue_id FROM wq_tasks WHERE next_escalation_at <= $1 \
             ORDER BY next_escalation_at LIMIT $2",
        )
        .bind(now)
        .bind(ESCALATION_BATCH)
        .fetch_all(self.store.pool())
        .await?;
        let mut report = EscalationReport::default();
        // Each queue's policy and the queue stream's version it was read at; each task checks
        // the version again under its row lock.
        let mut policies: BTreeMap<Uuid, (u64, EscalationPolicy)> = BTreeMap::new();
        for (task_id, queue_id) in due {
            report.checked += 1;
            let known = match policies.get(&queue_id) {
                Some(known) => *known,
                None => self
                    .load_versioned(&self.queues, queue_id)
                    .await?
                    .map_or((0, EscalationPolicy::standard()), |(v, queue)| {
                        (v, escalation_policy(&queue))
                    }),
            };
            match self
                .escalate_one(task_id, queue_id, known, now, metadata)
                .await
            {
                Ok((n, current)) => {
                    report.escalations += n;
                    policies.insert(queue_id, current);
                }
                Err(error) => {
                    report.failed += 1;
                    tracing::warn!(%task_id, %error, "escalating a task failed");
                }
            }
        }
        Ok(report)
    }

    /// Escalates one task under its row lock; returns the events written and the queue's
    /// policy as it was used, with the queue stream's version.
    async fn escalate_one(
        &self,
        task_id: Uuid,
        queue_id: Uuid,
        known: (u64, EscalationPolicy),
        now: DateTime<Utc>,
        metadata: &Metadata,
    ) -> Result<(u64, (u64, EscalationPolicy)), WorkQueueError> {
        let mut tx = self.store.pool().begin().await?;
        let Some((_, version, task)) = self.locked_task(&mut tx, task_id).await? else {
            return Ok((0, known));
        };
        // A reconfiguration reschedules the queue's tasks under their row locks, so once this
        // row is held, a policy newer than the one known is already in the stream: use it, or
        // this would schedule the next look by the old policy after the reschedule.
        let current = match self.store.stream_version_in(&mut *tx, queue_id).await? {
            v if v == known.0 => known,
            _ => {
                let (v, queue) = self.load_in::<Queue>(&mut tx, queue_id).await?;
                (v, escalation_policy(&queue))
            }
        };
        let policy = current.1;
        let events = task.decide(&TaskCommand::Escalate { policy }, now)?;
        let task = events.iter().fold(task, |t, e| t.evolve(e));
        let written = events.len() as u64;
        let version = if events.is_empty() {
            version
        } else {
            self.append_in::<Task>(&mut tx, task_id, version, &events, metadata)
                .await?
                .0
        };
        // Also with nothing new (a second server got here first), the next look is moved on.
        put_task_row(
            &mut tx,
            task_id,
            &task,
            version,
            Some(next_escalation(&task, &policy)),
        )
        .await?;
        tx.commit().await?;
        Ok((written, current))
    }

    // -----------------------------------------------------------------------------------------
    // Cases
    // -----------------------------------------------------------------------------------------

    pub async fn open_case(
        &self,
        number: &str,
        subject: &str,
        allegations: Vec<String>,
        queue_id: Option<Uuid>,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<CaseEvent>, WorkQueueError> {
        let number = domain::workqueue::case::parse_number(number).map_err(CaseError::from)?;
        let queue = match queue_id {
            Some(id) => Some(QueueRef {
                queue_id: id,
                exists: self.exists(&self.queues, id).await?,
            }),
            None => None,
        };
        let command = CaseCommand::Open {
            number: number.clone(),
            subject: subject.to_owned(),
            allegations,
            queue,
        };
        self.case_command(Case::stream_id(&number), command, metadata)
            .await
    }

    pub async fn route_case(
        &self,
        case_id: Uuid,
        queue_id: Uuid,
        reason: &str,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<CaseEvent>, WorkQueueError> {
        let to = QueueRef {
            queue_id,
            exists: self.exists(&self.queues, queue_id).await?,
        };
        let command = CaseCommand::Route {
            to,
            reason: reason.to_owned(),
        };
        self.case_command(case_id, command, metadata).await
    }

    /// Assigns a case to a person; `to_exists` is the caller's look-up of the account.
    pub async fn assign_case(
        &self,
        case_id: Uuid,
        to: &str,
        to_exists: bool,
        reason: &str,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<CaseEvent>, WorkQueueError> {
        let command = CaseCommand::Assign {
            to: to.to_owned(),
            to_exists,
            reason: reason.to_owned(),
        };
        self.case_command(case_id, command, metadata).await
    }

    pub async fn close_case(
        &self,
        case_id: Uuid,
        resolution: &str,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<CaseEvent>, WorkQueueError> {
        // Counted under the case's lock (in case_command), which task creation and linking
        // for the case take too.
        let command = CaseCommand::Close {
            resolution: resolution.to_owned(),
            unfinished_tasks: 0,
        };
        self.case_command(case_id, command, metadata).await
    }

    /// One case command under the case's lock, which every command writing the case stream
    /// takes (task creation and linking too): they queue instead of failing on each other's
    /// versions, and a close counts the unfinished tasks no link can add to meanwhile.
    async fn case_command(
        &self,
        case_id: Uuid,
        command: CaseCommand,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<CaseEvent>, WorkQueueError> {
        let mut tx = self.store.pool().begin().await?;
        lock_key(&mut tx, "case", &case_id.to_string()).await?;
        let command = match command {
            CaseCommand::Close { resolution, .. } => CaseCommand::Close {
                resolution,
                unfinished_tasks: count(
                    sqlx::query_scalar(
                        "SELECT count(*) FROM wq_tasks WHERE case_id = $1 AND status IN ('open', 'claimed')",
                    )
                    .bind(case_id)
                    .fetch_one(&mut *tx)
                    .await?,
                ),
            },
            other => other,
        };
        let (version, case) = self.load_in::<Case>(&mut tx, case_id).await?;
        if version > 0 && !case.exists() {
            return Err(CaseError::NotFound.into());
        }
        let events = case.decide(&command, self.clock.now())?;
        let (version, cursor) = self
            .append_in::<Case>(&mut tx, case_id, version, &events, metadata)
            .await?;
        tx.commit().await?;
        Ok(CommandOutcome {
            stream_id: case_id,
            events,
            version,
            cursor,
            replayed: false,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Streams on a transaction
    // -----------------------------------------------------------------------------------------

    /// Loads an aggregate on the transaction. A stream of another type reads as absent (its
    /// version is still returned, so that an append to it fails).
    async fn load_in<A: Aggregate>(
        &self,
        conn: &mut PgConnection,
        stream_id: Uuid,
    ) -> Result<(u64, A), WorkQueueError> {
        let recorded = self.store.read_stream_in(conn, stream_id).await?;
        fold(&recorded)
    }

    /// Locks a task's row and reads its stream under that lock: its queue, version and state,
    /// or `None` for no task.
    async fn locked_task(
        &self,
        conn: &mut PgConnection,
        task_id: Uuid,
    ) -> Result<Option<(Uuid, u64, Task)>, WorkQueueError> {
        let Some((queue_id, row_version)) = lock_task(conn, task_id).await? else {
            return Ok(None);
        };
        let (version, task) = self.load_in::<Task>(conn, task_id).await?;
        check_row_version(task_id, row_version, version)?;
        Ok(Some((queue_id, version, task)))
    }

    /// Appends `events` at `version` on the transaction; returns the new version and cursor.
    async fn append_in<A: Aggregate>(
        &self,
        conn: &mut PgConnection,
        stream_id: Uuid,
        version: u64,
        events: &[A::Event],
        metadata: &Metadata,
    ) -> Result<(u64, Option<Cursor>), WorkQueueError> {
        if events.is_empty() {
            return Ok((version, None));
        }
        let encoded = events
            .iter()
            .map(codec::encode::<A>)
            .collect::<Result<Vec<_>, _>>()?;
        let expected = if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        };
        let appended = self
            .store
            .append_in(
                conn,
                stream_id,
                A::STREAM_TYPE,
                expected,
                &encoded,
                metadata,
            )
            .await?;
        Ok((appended.last_version, appended.cursor))
    }
}

/// A task command, or what is needed to make it from look-ups under the task's lock.
enum TaskRequest<'a> {
    Ready(TaskCommand),
    Claim {
        user: &'a str,
    },
    Reassign(&'a Reassignment),
    Cancel {
        by: &'a str,
        by_admin: bool,
        reason: &'a str,
    },
}

impl TaskRequest<'_> {
    async fn into_command(
        self,
        tx: &mut PgConnection,
        queue_id: Uuid,
        task: &Task,
        now: DateTime<Utc>,
    ) -> Result<TaskCommand, WorkQueueError> {
        Ok(match self {
            TaskRequest::Ready(command) => command,
            TaskRequest::Cancel {
                by,
                by_admin,
                reason,
            } => {
                let authorized = by_admin
                    || task.claimant.as_deref() == Some(by)
                    || standing_in(tx, queue_id, by, now).await?.lead;
                TaskCommand::Cancel {
                    by: by.to_owned(),
                    authorized,
                    reason: reason.to_owned(),
                }
            }
            TaskRequest::Claim { user } => {
                lock_user(tx, user).await?;
                let standing = standing_in(tx, queue_id, user, now).await?;
                let capacity = per_user_capacity(tx, queue_id).await?;
                let (claimed, _) = load_in_queue(tx, queue_id, user).await?;
                TaskCommand::Claim {
                    user: user.to_owned(),
                    standing,
                    load: Load { claimed, capacity },
                    next: false,
                }
            }
            TaskRequest::Reassign(request) => {
                let by = standing_in(tx, queue_id, &request.by, now).await?;
                lock_user(tx, &request.to).await?;
                let to_standing = standing_in(tx, queue_id, &request.to, now).await?;
                let capacity = per_user_capacity(tx, queue_id).await?;
                let (claimed, _) = load_in_queue(tx, queue_id, &request.to).await?;
                TaskCommand::Reassign {
                    by: request.by.clone(),
                    authorized: request.by_admin || by.lead,
                    to: request.to.clone(),
                    to_standing,
                    to_load: Load { claimed, capacity },
                    reason: request.reason.clone(),
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The wq_* tables
// ---------------------------------------------------------------------------------------------

/// A transaction-scoped advisory lock on `(kind, key)`.
async fn lock_key(conn: &mut PgConnection, kind: &str, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(advisory_key(kind, key))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Namespace of the advisory-lock keys of work-queue commands.
const LOCK_NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_2a9e_71b4_4d38_9c26_e8a1_0b7d_3f54);

/// The 64-bit advisory-lock key of `(kind, key)`: computed here rather than by PostgreSQL, so
/// that a transaction can begin with the lock in its `BEGIN` round trip (see
/// [`begin_as_user`]).
fn advisory_key(kind: &str, key: &str) -> i64 {
    let id = Uuid::new_v5(&LOCK_NAMESPACE, format!("{kind}:{key}").as_bytes());
    let (high, _) = id.as_u64_pair();
    i64::from_ne_bytes(high.to_ne_bytes())
}

/// Begins a transaction holding `user`'s lock, in one round trip: the key is a number, so it
/// can go into the `BEGIN` statement itself without any quoting.
async fn begin_as_user(pool: &sqlx::PgPool, user: &str) -> Result<Tx, sqlx::Error> {
    let key = advisory_key("user", user);
    pool.begin_with(format!("BEGIN; SELECT pg_advisory_xact_lock({key})"))
        .await
}

/// The claim an idempotency key already made, if any.
async fn claimed_with_key(
    conn: &mut PgConnection,
    user: &str,
    key: &str,
) -> Result<Option<TaskWritten>, sqlx::Error> {
    let row: Option<(Uuid, i64, i64, i64)> = sqlx::query_as(
        "SELECT task_id, version, transaction_id, position FROM wq_claim_keys \
         WHERE username = $1 AND idempotency_key = $2",
    )
    .bind(user)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(task_id, version, tx, position)| TaskWritten {
        task_id,
        version: to_u64(version),
        events: Vec::new(),
        cursor: Some(Cursor::new(to_u64(tx), position)),
        replayed: true,
    }))
}

/// The lock every command that changes what a user holds, or may hold, takes.
async fn lock_user(conn: &mut PgConnection, user: &str) -> Result<(), sqlx::Error> {
    lock_key(conn, "user", user).await
}

/// Locks a task's row; its queue and the version the row reflects, or `None` for no task.
async fn lock_task(
    conn: &mut PgConnection,
    task_id: Uuid,
) -> Result<Option<(Uuid, u64)>, sqlx::Error> {
    let row: Option<(Uuid, i64)> =
        sqlx::query_as("SELECT queue_id, version FROM wq_tasks WHERE task_id = $1 FOR UPDATE")
            .bind(task_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(q, v)| (q, to_u64(v))))
}

/// An aggregate's version and state from its recorded events (a stream of another type folds to
/// the empty state, which refuses whatever it is asked).
fn fold<A: Aggregate>(recorded: &[RecordedEvent]) -> Result<(u64, A), WorkQueueError> {
    let version = recorded.last().map_or(0, |e| e.version);
    if recorded
        .first()
        .is_some_and(|e| e.stream_type != A::STREAM_TYPE)
    {
        return Ok((version, A::default()));
    }
    let mut state = A::default();
    for event in recorded {
        state = state.evolve(&codec::decode::<A>(event)?);
    }
    Ok((version, state))
}

/// The row and the stream must agree; they are written together, so a difference means
/// something wrote the stream around this module.
fn check_row_version(task_id: Uuid, row: u64, stream: u64) -> Result<(), WorkQueueError> {
    if row == stream {
        return Ok(());
    }
    Err(StoreError::WrongExpectedVersion {
        stream_id: task_id,
        expected: ExpectedVersion::Exact(row),
        actual: stream,
    }
    .into())
}

/// `user`'s standing in a queue at `now`, from their grants in force.
async fn standing_in(
    conn: &mut PgConnection,
    queue_id: Uuid,
    user: &str,
    now: DateTime<Utc>,
) -> Result<Standing, sqlx::Error> {
    let grants: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT role, skills FROM wq_grants WHERE queue_id = $1 AND username = $2 \
         AND valid_from <= $3 AND (valid_until IS NULL OR valid_until > $3)",
    )
    .bind(queue_id)
    .bind(user)
    .bind(now)
    .fetch_all(conn)
    .await?;
    Ok(Standing::from_grants(
        grants.iter().map(|(role, skills)| grant_row(role, skills)),
    ))
}

/// A grant's role and skills, as [`Standing::from_grants`] takes them.
type GrantRow = (QueueRole, Vec<GroupLabel>);

/// A `wq_grants` row's role and skills, as the domain has them.
fn grant_row(role: &str, skills: &[String]) -> GrantRow {
    (
        QueueRole::parse(role).unwrap_or(QueueRole::Member),
        skills
            .iter()
            .filter_map(|s| GroupLabel::parse(s).ok())
            .collect(),
    )
}

/// How many of a queue's tasks `user` holds, and the sum of their priorities.
async fn load_in_queue(
    conn: &mut PgConnection,
    queue_id: Uuid,
    user: &str,
) -> Result<(u32, u32), sqlx::Error> {
    let load: Option<(i32, i32)> = sqlx::query_as(
        "SELECT claimed, weight FROM wq_loads WHERE username = $1 AND queue_id = $2",
    )
    .bind(user)
    .bind(queue_id)
    .fetch_optional(conn)
    .await?;
    let (n, weight) = load.unwrap_or((0, 0));
    Ok((count(i64::from(n)), count(i64::from(weight))))
}

async fn per_user_capacity(conn: &mut PgConnection, queue_id: Uuid) -> Result<u32, sqlx::Error> {
    let capacity: Option<i32> =
        sqlx::query_scalar("SELECT per_user_capacity FROM wq_queues WHERE queue_id = $1")
            .bind(queue_id)
            .fetch_optional(conn)
            .await?;
    Ok(capacity.and_then(|c| u32::try_from(c).ok()).unwrap_or(0))
}

/// A queue's escalation policy (the standard one for a queue without a configuration).
fn escalation_policy(queue: &Queue) -> EscalationPolicy {
    queue
        .config
        .as_ref()
        .map_or_else(EscalationPolicy::standard, |c| c.escalation)
}

/// When the SLA check should next look at `task`: `None` once finished or at the last level.
fn next_escalation(task: &Task, policy: &EscalationPolicy) -> Option<DateTime<Utc>> {
    if task.status.is_finished() || task.escalation_level >= policy.max_level {
        return None;
    }
    let due = task.due_at?;
    Some(
        due + chrono::Duration::minutes(
            i64::from(policy.repeat_every_minutes) * i64::from(task.escalation_level),
        ),
    )
}

/// Writes a task's row from its state. `next`: `Some(x)` sets the next escalation time, `None`
/// leaves it as it is.
async fn put_task_row(
    conn: &mut PgConnection,
    task_id: Uuid,
    task: &Task,
    version: u64,
    next: Option<Option<DateTime<Utc>>>,
) -> Result<(), WorkQueueError> {
    let queue_id = task.queue_id.ok_or(TaskError::NotFound)?;
    let group_keys: Vec<String> = task
        .groups
        .iter()
        .map(|g| format!("{queue_id}:{g}"))
        .collect();
    sqlx::query(
        "INSERT INTO wq_tasks (task_id, queue_id, case_id, status, priority, created_at, due_at, claimant, \
                               escalation_level, next_escalation_at, group_keys, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (task_id) DO UPDATE SET case_id = $3, status = $4, priority = $5, claimant = $8, \
             escalation_level = $9, \
             next_escalation_at = CASE WHEN $13 THEN $10 ELSE wq_tasks.next_escalation_at END, \
             version = $12",
    )
    .bind(task_id)
    .bind(queue_id)
    .bind(task.case_id)
    .bind(task.status.as_str())
    .bind(i16::from(task.priority.map_or(1, Priority::get)))
    .bind(task.created_at)
    .bind(task.due_at)
    .bind(task.claimant.as_deref().filter(|_| task.status == TaskStatus::Claimed))
    .bind(i32::try_from(task.escalation_level).unwrap_or(i32::MAX))
    .bind(next.flatten())
    .bind(&group_keys)
    .bind(to_i64(version))
    .bind(next.is_some())
    .execute(conn)
    .await?;
    Ok(())
}

/// Mirrors a queue event into `wq_queues` / `wq_grants`.
async fn mirror_queue_event(
    conn: &mut PgConnection,
    queue_id: Uuid,
    event: &QueueEvent,
) -> Result<(), sqlx::Error> {
    match event {
        QueueEvent::QueueCreated { config, .. } | QueueEvent::QueueConfigured { config, .. } => {
            sqlx::query(
                "INSERT INTO wq_queues (queue_id, per_user_capacity, total_capacity, distribution) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (queue_id) DO UPDATE \
                 SET per_user_capacity = $2, total_capacity = $3, distribution = $4",
            )
            .bind(queue_id)
            .bind(i32::try_from(config.capacity.per_user).unwrap_or(i32::MAX))
            .bind(config.capacity.total.map(|t| i32::try_from(t).unwrap_or(i32::MAX)))
            .bind(config.distribution.as_str())
            .execute(conn)
            .await?;
        }
        QueueEvent::QueueAccessGranted { grant, .. } => {
            sqlx::query(
                "INSERT INTO wq_grants (grant_id, queue_id, username, role, skills, valid_from, valid_until) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(grant.grant_id)
            .bind(queue_id)
            .bind(grant.username.as_str())
            .bind(grant.role.as_str())
            .bind(
                grant
                    .skills
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect::<Vec<_>>(),
            )
            .bind(grant.valid_from)
            .bind(grant.valid_until)
            .execute(conn)
            .await?;
        }
        QueueEvent::QueueAccessRevoked { grant_id, .. } => {
            sqlx::query("DELETE FROM wq_grants WHERE grant_id = $1")
                .bind(grant_id)
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
