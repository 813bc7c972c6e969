//! The executor: drives runs inside `caseledger serve`, shared by every server process.
//!
//! Each loop turn claims one due row of `wf_runnable` with `FOR UPDATE OF wf_runs SKIP LOCKED`
//! (so two executors never pick the same run at once, and a run busy with a command is passed
//! over) and acts on it under the run's lock:
//! - a ready step: append `AttemptStarted` with a lease, commit, then run the kind outside the
//!   transaction and report its result as a run command. Two servers never start the same
//!   attempt: the start is decided under the row lock at the stream's exact version.
//! - a running step whose lease ran out: its executor died mid-attempt; the attempt fails as
//!   interrupted and the step's retry policy decides whether a new attempt (with a new
//!   idempotency key) starts. A step that succeeded never runs again: its success is an event.
//! - a timer that fired, a task that finished, a deadline that passed: the kind checks the wait.
//! - an incident that needs its task, a task to withdraw: the work-queue command, then an event.
//!
//! Work done outside the run's transaction (a task to create or cancel, a wait to check) first
//! pushes its row's due time forward by [`CHECK_LEASE`], so another executor does not repeat it
//! meanwhile, and finishes with a run command that rewrites the row; if this process dies in
//! between, the row comes due again and the work is repeated, idempotently.
//!
//! The executor sleeps until an append anywhere wakes it (the store's wake-ups) or its poll
//! interval passes, so a step whose dependencies just finished starts within milliseconds.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::workflow::{RunCommand, RunError, RunEvent, StepDef, StepStatus, WorkflowRun};
use domain::workqueue::department::{Department, DepartmentError};
use domain::workqueue::queue::{
    Capacity, Distribution, EscalationPolicy, Queue, QueueConfig, QueueError, SlaPolicy,
};
use domain::Aggregate;
use eventstore::event::Metadata;
use serde_json::json;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::kinds::{AttemptContext, StepOutcome};
use super::{runs, WorkflowError, WorkflowRefusal, Workflows};
use crate::error::CommandError;
use crate::workqueue::{NewTask, WorkQueueError, WorkQueueRefusal, WorkQueues};

/// Claim loops per executor: a claim is a few round trips, so one loop would leave the slots
/// idle while it waits on the database.
const CLAIM_LOOPS: usize = 4;

/// The lease of an attempt of a kind this server does not know (it fails at once).
const UNKNOWN_KIND_LEASE: Duration = Duration::from_secs(60);

/// How long the first claim loop lets wake-ups gather before it looks again.
const WAKE_DEBOUNCE: Duration = Duration::from_millis(2);

/// How long a claim of work done outside the run's transaction keeps others off it.
const CHECK_LEASE: Duration = Duration::from_secs(30);

/// The executor's limits.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    /// Attempts this server runs at once.
    pub concurrency: usize,
    /// Attempts one run may have running at once, across servers.
    pub run_parallelism: usize,
    /// Longest sleep between looks at the table when nothing wakes the executor.
    pub poll_interval: Duration,
    /// The work queue (by name) incident tasks go to.
    pub interventions_queue: String,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            run_parallelism: 4,
            poll_interval: Duration::from_millis(500),
            interventions_queue: "Workflow interventions".into(),
        }
    }
}

/// Drives runs; cheap to clone.
#[derive(Clone)]
pub struct Executor {
    workflows: Arc<Workflows>,
    work: Arc<WorkQueues>,
    settings: ExecutorSettings,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What a claim found to do once the run's transaction is committed.
enum Work {
    /// Run the kind for this attempt.
    Attempt(Box<AttemptContext>, String),
    /// Check on a waiting attempt.
    CheckWait(
        Box<AttemptContext>,
        String,
        domain::workflow::WaitOn,
        Option<DateTime<Utc>>,
    ),
    /// Create the incident task of a step that needs a person.
    Incident { run: Box<WorkflowRun>, step: String },
    /// Cancel a task nobody needs any more.
    Withdraw { run_id: Uuid, task_id: Uuid },
    /// Decided within the claim; nothing left.
    Done,
}

impl Executor {
    pub fn new(
        workflows: Arc<Workflows>,
        work: Arc<WorkQueues>,
        settings: ExecutorSettings,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        Self {
            workflows,
            work,
            settings,
            slots,
        }
    }

    /// Makes sure the interventions queue exists, in a department of its own, so that the
    /// first incident on a fresh install has somewhere to go. Racing servers are fine: the
    /// loser is refused as a name already taken, which is what it wanted.
    pub async fn prepare(&self) -> Result<(), WorkQueueError> {
        let metadata = Metadata::by("workflow:executor");
        let department_id = Department::stream_id(INTERVENTIONS_DEPARTMENT);
        match self
            .work
            .create_department(
                INTERVENTIONS_DEPARTMENT,
                "Workflow operations",
                None,
                &metadata,
            )
            .await
        {
            Ok(_)
            | Err(CommandError::Rejected(WorkQueueRefusal::Department(
                DepartmentError::CodeTaken { .. },
            ))) => {}
            Err(e) => return Err(e),
        }
        let config = QueueConfig {
            department_id,
            capacity: Capacity {
                per_user: 100,
                total: None,
            },
            sla: SlaPolicy::standard(),
            escalation: EscalationPolicy::standard(),
            distribution: Distribution::Pull,
            groups: Vec::new(),
        };
        match self
            .work
            .create_queue(&self.settings.interventions_queue, config, &metadata)
            .await
        {
            Ok(_)
            | Err(CommandError::Rejected(WorkQueueRefusal::Queue(QueueError::NameTaken {
                ..
            }))) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs until the task is aborted: [`CLAIM_LOOPS`] claim loops sharing this executor's
    /// attempt slots.
    ///
    /// Only the first loop answers the store's wake-ups (every append in this process, most of
    /// them the executor's own reports, which start what they made ready themselves); a loop
    /// that finds work wakes one idle sibling, so the loops fan out only while there is a
    /// backlog. A fruitless look is one cheap statement, not a transaction.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let loops = CLAIM_LOOPS.min(self.settings.concurrency.max(1));
            let idle = Arc::new(Notify::new());
            let mut set = tokio::task::JoinSet::new();
            for n in 0..loops {
                set.spawn(self.clone().claim_loop(n == 0, idle.clone()));
            }
            // Aborting this task drops the set, which aborts the loops.
            while set.join_next().await.is_some() {}
        })
    }

    async fn claim_loop(self, first: bool, idle: Arc<Notify>) {
        let mut woken = self.workflows.store().wakeup().subscribe();
        loop {
            woken.borrow_and_update();
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                return;
            };
            match self.claim().await {
                Ok(Some(work)) => {
                    idle.notify_one();
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.perform(work).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    let poll = self.settings.poll_interval;
                    if first {
                        if tokio::time::timeout(poll, woken.changed()).await.is_ok() {
                            // Let the wake-ups of a burst of appends arrive as one.
                            tokio::time::sleep(WAKE_DEBOUNCE).await;
                        }
                    } else {
                        let _ = tokio::time::timeout(poll, idle.notified()).await;
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::warn!(error = %e, "workflow executor: claim failed; trying again");
                    tokio::time::sleep(self.settings.poll_interval).await;
                }
            }
        }
    }

    /// Works through every row due now, one after another, and returns how many it handled:
    /// for tests and tools that drive the executor by hand.
    pub async fn drain(&self) -> Result<usize, WorkflowError> {
        let mut handled = 0;
        while let Some(work) = self.claim().await? {
            self.perform(work).await;
            handled += 1;
        }
        Ok(handled)
    }

    /// Claims one due row and decides what to do with it under the run's lock.
    async fn claim(&self) -> Result<Option<Work>, WorkflowError> {
        let store = self.workflows.store();
        let now = self.workflows.clock().now();
        // Most looks find nothing: ask without a transaction first.
        let due: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM wf_runnable WHERE due_at <= $1 LIMIT 1")
                .bind(now)
                .fetch_optional(store.pool())
                .await?;
        if due.is_none() {
            return Ok(None);
        }
        let mut tx = store.pool().begin().await?;
        let row: Option<(Uuid, String)> = sqlx::query_as(
            "SELECT r.run_id, r.slot FROM wf_runnable r JOIN wf_runs w ON w.run_id = r.run_id \
             WHERE r.due_at <= $1 \
               AND (r.running OR (SELECT count(*) FROM wf_runnable x \
                                  WHERE x.run_id = r.run_id AND x.running) < $2) \
             ORDER BY r.due_at LIMIT 1 FOR UPDATE OF w SKIP LOCKED",
        )
        .bind(now)
        .bind(i64::try_from(self.settings.run_parallelism).unwrap_or(i64::MAX))
        .fetch_optional(&mut *tx)
        .await?;
        let Some((run_id, slot)) = row else {
            return Ok(None);
        };
        let (version, run) =
            runs::lock(store, &mut tx, run_id, false, self.workflows.cache()).await?;
        let metadata = Metadata::by(format!("workflow:{}", run.key));
        let until = now + chrono::Duration::from_std(CHECK_LEASE).unwrap_or_default();
        if let Some(task) = slot.strip_prefix("withdraw:") {
            let task_id = Uuid::parse_str(task).unwrap_or_default();
            postpone(&mut tx, run_id, &slot, until).await?;
            tx.commit().await?;
            return Ok(Some(Work::Withdraw { run_id, task_id }));
        }
        let Some(def) = run.step_def(&slot).cloned() else {
            // A row for a step the run does not have: not derived from these events; drop it.
            sqlx::query("DELETE FROM wf_runnable WHERE run_id = $1 AND slot = $2")
                .bind(run_id)
                .bind(&slot)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(Some(Work::Done));
        };
        let status = run
            .step_states
            .get(&slot)
            .map(|s| s.status.clone())
            .unwrap_or_default();
        let context = |attempt: u32, run: &WorkflowRun| attempt_context(run, &def, attempt, now);
        let mut committed = None;
        let work = match status {
            // The row was read before the run's last command committed (the lock waits, the
            // row does not): the run has moved on, and its rows say when to look again.
            StepStatus::Ready { not_before, .. } if not_before > now => Work::Done,
            StepStatus::Running { lease_until, .. } if lease_until > now => Work::Done,
            StepStatus::Ready { .. } => {
                let (events, attempt) = self.begin(&run, &def, now)?;
                committed = Some(
                    runs::write(store, &mut tx, run_id, version, run, events, &metadata).await?,
                );
                Work::Attempt(attempt, def.kind.clone())
            }
            StepStatus::Running { attempt, .. } => {
                let command = RunCommand::Interrupt {
                    step: slot.clone(),
                    attempt,
                    jitter: jitter(),
                };
                let events = run.decide(&command, now)?;
                tracing::info!(%run_id, step = %slot, attempt, "workflow attempt interrupted: its lease ran out");
                committed = Some(
                    runs::write(store, &mut tx, run_id, version, run, events, &metadata).await?,
                );
                Work::Done
            }
            StepStatus::Waiting {
                attempt,
                on,
                deadline,
            } => {
                postpone(&mut tx, run_id, &slot, until).await?;
                Work::CheckWait(context(attempt, &run), def.kind.clone(), on, deadline)
            }
            StepStatus::NeedsPerson => {
                postpone(&mut tx, run_id, &slot, until).await?;
                Work::Incident {
                    run: Box::new(run),
                    step: slot.clone(),
                }
            }
            _ => {
                sqlx::query("DELETE FROM wf_runnable WHERE run_id = $1 AND slot = $2")
                    .bind(run_id)
                    .bind(&slot)
                    .execute(&mut *tx)
                    .await?;
                Work::Done
            }
        };
        tx.commit().await?;
        if let Some(written) = &committed {
            self.workflows.cache().remember(written);
        }
        Ok(Some(work))
    }

    async fn perform(&self, work: Work) {
        let result = match work {
            Work::Attempt(attempt, kind) => self.attempt(&attempt, &kind).await,
            Work::CheckWait(attempt, kind, on, deadline) => {
                self.check_wait(&attempt, &kind, &on, deadline).await
            }
            Work::Incident { run, step } => self.open_incident(&run, &step).await,
            Work::Withdraw { run_id, task_id } => self.withdraw(run_id, task_id).await,
            Work::Done => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "workflow executor: could not record a step's result; its row comes due again");
        }
    }

    async fn attempt(&self, attempt: &AttemptContext, kind: &str) -> Result<(), WorkflowError> {
        let outcome = match self.workflows.kinds().get(kind) {
            Some(kind) => kind.start(attempt).await,
            None => StepOutcome::Failed(format!("this server knows no step kind {kind:?}")),
        };
        self.report(attempt, outcome).await
    }

    async fn check_wait(
        &self,
        attempt: &AttemptContext,
        kind: &str,
        on: &domain::workflow::WaitOn,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<(), WorkflowError> {
        let checked = match self.workflows.kinds().get(kind) {
            Some(k) => k.check_wait(attempt, on, deadline).await,
            None => None,
        };
        match checked {
            Some(outcome) => self.report(attempt, outcome).await,
            None => {
                // Still waiting: the row goes back to the deadline (or to waiting for its task).
                let due = match on {
                    domain::workflow::WaitOn::Timer { until } => Some(*until),
                    _ => deadline,
                };
                sqlx::query("UPDATE wf_runnable SET due_at = $3 WHERE run_id = $1 AND slot = $2")
                    .bind(attempt.run_id)
                    .bind(&attempt.step)
                    .bind(due)
                    .execute(self.workflows.store().pool())
                    .await?;
                Ok(())
            }
        }
    }

    /// Decides the start of `def`'s next attempt on `run`, leased for as long as its kind says:
    /// the events, and what the attempt works with.
    fn begin(
        &self,
        run: &WorkflowRun,
        def: &StepDef,
        now: DateTime<Utc>,
    ) -> Result<(Vec<RunEvent>, Box<AttemptContext>), RunError> {
        let lease = self
            .workflows
            .kinds()
            .get(&def.kind)
            .map_or(UNKNOWN_KIND_LEASE, |k| k.lease(def.timeout_secs));
        let lease_until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let command = RunCommand::BeginAttempt {
            step: def.id.clone(),
            lease_until,
        };
        let events = run.decide(&command, now)?;
        let number = events
            .iter()
            .find_map(|e| match e {
                RunEvent::AttemptStarted { attempt, .. } => Some(*attempt),
                _ => None,
            })
            .unwrap_or(1);
        // Starting an attempt changes no output: the run's context is the same before and after.
        Ok((events, attempt_context(run, def, number, now)))
    }

    /// Records an attempt's outcome. A report the run no longer wants (the run ended, or the
    /// attempt was replaced after its lease ran out) is dropped.
    ///
    /// In the same transaction, the steps the outcome made ready start at once while this
    /// server has free slots and the run is under its parallelism: their `AttemptStarted`
    /// events go with the outcome's, and their attempts run here. This spares each such step a
    /// claim transaction and the wait for one; the rest are claimed as usual.
    async fn report(
        &self,
        attempt: &AttemptContext,
        outcome: StepOutcome,
    ) -> Result<(), WorkflowError> {
        let (step, n) = (attempt.step.clone(), attempt.attempt);
        let command = match outcome {
            StepOutcome::Succeeded(output) => RunCommand::Succeed {
                step,
                attempt: n,
                output,
            },
            StepOutcome::Failed(error) => RunCommand::Fail {
                step,
                attempt: n,
                error,
                jitter: jitter(),
            },
            StepOutcome::Wait { on, deadline } => RunCommand::Wait {
                step,
                attempt: n,
                on,
                deadline,
            },
        };
        let metadata = Metadata::by(format!("workflow:{}", attempt.key));
        let store = self.workflows.store();
        let now = self.workflows.clock().now();
        let mut tx = store.pool().begin().await?;
        let (version, run) = runs::lock(
            store,
            &mut tx,
            attempt.run_id,
            false,
            self.workflows.cache(),
        )
        .await?;
        let mut events = match run.decide(&command, now) {
            Ok(events) => events,
            Err(e) => return ignore_stale::<()>(Err(WorkflowError::from(e))),
        };
        let mut state = events.iter().fold(run.clone(), |s, e| s.evolve(e));
        let mut begun = Vec::new();
        for def in state.ready_now(now) {
            if state.attempts_running() >= self.settings.run_parallelism {
                break;
            }
            if self.workflows.kinds().get(&def.kind).is_none() {
                continue;
            }
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                break;
            };
            let (started, context) = self.begin(&state, &def, now)?;
            state = started.iter().fold(state, |s, e| s.evolve(e));
            events.extend(started);
            begun.push((context, def.kind, permit));
        }
        let written = runs::write(
            store,
            &mut tx,
            attempt.run_id,
            version,
            run,
            events,
            &metadata,
        )
        .await?;
        tx.commit().await?;
        self.workflows.cache().remember(&written);
        for (context, kind, permit) in begun {
            tokio::spawn(self.clone().attempt_owned(context, kind, permit));
        }
        Ok(())
    }

    /// An attempt begun by a report, run with the slot it took; boxed, because running it
    /// reports again (and may begin more).
    fn attempt_owned(
        self,
        context: Box<AttemptContext>,
        kind: String,
        permit: OwnedSemaphorePermit,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Err(e) = self.attempt(&context, &kind).await {
                tracing::warn!(error = %e, "workflow executor: could not record a step's result; its row comes due again");
            }
            drop(permit);
        })
    }

    async fn open_incident(&self, run: &WorkflowRun, step: &str) -> Result<(), WorkflowError> {
        let run_id = run.run_id.unwrap_or_default();
        let state = run.step_states.get(step);
        let attempts = state.map_or(0, |s| s.attempts.len());
        let task_id = Uuid::new_v5(
            &INCIDENT_NAMESPACE,
            format!("{run_id}\n{step}\n{attempts}").as_bytes(),
        );
        let error = state.and_then(|s| s.error.clone()).unwrap_or_default();
        let metadata = Metadata::by(format!("workflow:{}", run.key));
        let new = NewTask {
            task_id,
            queue_id: Queue::stream_id(&self.settings.interventions_queue),
            title: format!("Workflow {} needs a decision on step {step}", run.key),
            priority: domain::workqueue::Priority::HIGHEST,
            groups: Vec::new(),
            case_id: None,
            payload: json!({
                "workflow": {"run_id": run_id, "key": run.key, "step": step},
                "error": error,
                "decide": {
                    "retry": format!("POST /runs/{run_id}/steps/{step}/retry"),
                    "skip": format!("POST /runs/{run_id}/steps/{step}/skip"),
                    "abort": format!("POST /runs/{run_id}/cancel"),
                },
            }),
        };
        if let Err(e) = self.work.create_task(new, &metadata).await {
            // The incident stays visible on the run; its row comes due again.
            tracing::warn!(%run_id, step, error = %e, queue = %self.settings.interventions_queue,
                "could not create a workflow incident task");
            return Ok(());
        }
        let command = RunCommand::IncidentTaskCreated {
            step: step.to_owned(),
            task_id,
        };
        ignore_stale(
            self.workflows
                .run_command(run_id, &command, &metadata, false)
                .await,
        )
    }

    async fn withdraw(&self, run_id: Uuid, task_id: Uuid) -> Result<(), WorkflowError> {
        let metadata = Metadata::by("workflow:executor");
        match self
            .work
            .cancel(
                task_id,
                "workflow",
                true,
                "the workflow no longer needs this task",
                None,
                &metadata,
            )
            .await
        {
            Ok(_) | Err(CommandError::Rejected(_)) => {}
            Err(e) => {
                tracing::warn!(%task_id, error = %e, "could not withdraw a workflow task");
                return Ok(());
            }
        }
        ignore_stale(
            self.workflows
                .run_command(
                    run_id,
                    &RunCommand::TaskWithdrawn { task_id },
                    &metadata,
                    false,
                )
                .await,
        )
    }
}

/// The department the interventions queue is created in when it does not exist.
const INTERVENTIONS_DEPARTMENT: &str = "WORKFLOW-OPS";

/// Namespace of incident task ids (v5 of run, step and attempt count).
const INCIDENT_NAMESPACE: Uuid = Uuid::from_u128(0x3ae9_5c07_d1b4_4f26_8e0d_71c2_9b5f_a640);

/// A report the run refused because it moved on is not an error of the executor's.
fn ignore_stale<T>(result: Result<T, WorkflowError>) -> Result<(), WorkflowError> {
    match result {
        Ok(_) => Ok(()),
        Err(CommandError::Rejected(WorkflowRefusal::Run(
            e @ (RunError::StaleAttempt { .. }
            | RunError::Finished(_)
            | RunError::NotReady { .. }
            | RunError::UnknownTask(_)),
        ))) => {
            tracing::debug!(error = %e, "a workflow report the run no longer wants");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// 0 to 1, for retry backoff jitter.
fn jitter() -> f64 {
    (Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

/// Pushes a row's due time forward while its work runs outside the run's transaction, so
/// another executor does not repeat that work meanwhile.
async fn postpone(
    tx: &mut sqlx::PgConnection,
    run_id: Uuid,
    slot: &str,
    until: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE wf_runnable SET due_at = $3 WHERE run_id = $1 AND slot = $2")
        .bind(run_id)
        .bind(slot)
        .bind(until)
        .execute(tx)
        .await?;
    Ok(())
}

/// What an attempt of `def` (number `attempt`) gets to work with, from the run's state.
fn attempt_context(
    run: &WorkflowRun,
    def: &StepDef,
    attempt: u32,
    now: DateTime<Utc>,
) -> Box<AttemptContext> {
    let run_id = run.run_id.unwrap_or_default();
    Box::new(AttemptContext {
        run_id,
        key: run.key.clone(),
        step: def.id.clone(),
        attempt,
        idempotency_key: format!("{run_id}:{}:{attempt}", def.id),
        config: def.config.clone(),
        timeout_secs: def.timeout_secs,
        context: run.context(),
        now,
    })
}
