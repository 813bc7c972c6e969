//! A workflow run: one execution of one version of a definition, as an aggregate.
//!
//! Every transition is an event (step ready, attempt started, waiting, succeeded, failed,
//! skipped, failed over, incident opened and decided, run completed, failed or cancelled), so
//! the run's history is its audit trail and its state as of any time is a fold of a prefix.
//! The first event carries the steps the run executes: a run keeps its version whatever is
//! registered later.
//!
//! The run decides *what* happens next; the executor in the application layer decides *when*
//! (it claims the rows [`WorkflowRun::runnable`] derives) and does the I/O of each step kind,
//! reporting back with [`RunCommand::Succeed`], [`RunCommand::Fail`] or [`RunCommand::Wait`].
//! Attempts are numbered; a report about an attempt that is no longer current is refused, so a
//! slow executor whose lease ran out cannot overwrite the attempt that replaced it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::definition::{Definition, OnFailure, RetryPolicy, StepDef};
use crate::Aggregate;

mod messages;

pub use messages::{RunCommand, RunError, RunEvent, SkipReason};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    #[default]
    NotStarted,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::NotStarted => "not_started",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// What a waiting attempt waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "snake_case")]
pub enum WaitOn {
    /// A durable timer.
    Timer { until: DateTime<Utc> },
    /// `POST /runs/{id}/signals/{name}`.
    Signal { name: String },
    /// A person completing a work-queue task.
    Task { task_id: Uuid },
}

/// Where a step is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepStatus {
    /// Its dependencies have not all finished (or it is a fallback nobody needed).
    #[default]
    Pending,
    /// May start once `not_before` has passed.
    Ready {
        attempt: u32,
        not_before: DateTime<Utc>,
    },
    /// An executor holds the attempt until `lease_until`; after that it counts as interrupted.
    Running {
        attempt: u32,
        lease_until: DateTime<Utc>,
    },
    Waiting {
        attempt: u32,
        on: WaitOn,
        /// When the wait fails as timed out (from the step's `timeout_secs`).
        deadline: Option<DateTime<Utc>>,
    },
    Succeeded,
    Skipped,
    /// Failed; its fallback runs in its place.
    FailedOver {
        fallback: String,
    },
    /// Failed its last attempt; a person decides (retry, skip or cancel the run).
    NeedsPerson,
    Failed,
}

/// One attempt at a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    /// Sent to receivers, who de-duplicate on it (or on run and step, across attempts).
    pub idempotency_key: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// The lease ran out before a result came back.
    pub interrupted: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    #[serde(flatten)]
    pub status: StepStatus,
    pub attempts: Vec<Attempt>,
    pub output: Option<Value>,
    pub error: Option<String>,
    /// When it first became ready: dispatch latency and `max_elapsed_secs` count from here.
    pub ready_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The incident task that asks a person what to do, once created.
    pub incident_task: Option<Uuid>,
    /// Who retried or skipped it after an incident.
    pub decided_by: Option<String>,
}

/// The run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkflowRun {
    pub run_id: Option<Uuid>,
    pub key: String,
    pub version: u32,
    pub name: String,
    pub steps: Vec<StepDef>,
    pub input: Value,
    pub business_key: Option<String>,
    pub started_by: String,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub error: Option<String>,
    pub output: Option<Value>,
    pub cancelled_by: Option<String>,
    pub step_states: BTreeMap<String, StepState>,
    /// Tasks this run created that nobody needs any more (the run ended, an incident was
    /// decided, a wait timed out), to be cancelled; each leaves with [`RunEvent::TaskWithdrawn`].
    pub withdrawals: BTreeMap<Uuid, String>,
    /// Steps that run only in place of a failed step.
    fallbacks: BTreeSet<String>,
}

/// A row of work for the executor, derived from the state: what may be claimed, and from when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runnable {
    /// The step id, or `withdraw:<task id>` for a task to cancel.
    pub slot: String,
    /// Claimable from then on; `None`: only when something else (a task finishing) makes it due.
    pub due_at: Option<DateTime<Utc>>,
    /// An attempt holds it (counts against the per-run parallelism).
    pub running: bool,
    /// The task a waiting step waits for: finishing the task makes the row due.
    pub task_id: Option<Uuid>,
}

/// The events a decision makes, applied to a scratch state as they are made so that each
/// next decision sees the ones before.
struct Decision {
    state: WorkflowRun,
    events: Vec<RunEvent>,
}

impl Decision {
    fn push(&mut self, event: RunEvent) {
        self.state = std::mem::take(&mut self.state).evolve(&event);
        self.events.push(event);
    }
}

impl WorkflowRun {
    pub fn exists(&self) -> bool {
        self.run_id.is_some()
    }

    /// The steps that may start at `now` (ready, their backoff passed), in definition order.
    pub fn ready_now(&self, now: DateTime<Utc>) -> Vec<StepDef> {
        self.steps
            .iter()
            .filter(|def| {
                matches!(
                    self.status_of(&def.id),
                    Some(StepStatus::Ready { not_before, .. }) if *not_before <= now
                )
            })
            .cloned()
            .collect()
    }

    /// Attempts of this run holding an executor's lease now (what the per-run parallelism
    /// counts; waits for a person, a signal or a timer do not).
    pub fn attempts_running(&self) -> usize {
        self.step_states
            .values()
            .filter(|s| matches!(s.status, StepStatus::Running { .. }))
            .count()
    }

    pub fn step_def(&self, id: &str) -> Option<&StepDef> {
        self.steps.iter().find(|s| s.id == id)
    }

    fn status_of(&self, id: &str) -> Option<&StepStatus> {
        self.step_states.get(id).map(|s| &s.status)
    }

    /// Finished so that its dependents may start: succeeded, skipped, or failed over to a
    /// fallback that is itself finished so.
    pub fn satisfied(&self, id: &str) -> bool {
        self.satisfied_depth(id, 0)
    }

    fn satisfied_depth(&self, id: &str, depth: usize) -> bool {
        match self.status_of(id) {
            Some(StepStatus::Succeeded | StepStatus::Skipped) => true,
            Some(StepStatus::FailedOver { fallback }) if depth < self.steps.len() => {
                self.satisfied_depth(fallback, depth + 1)
            }
            _ => false,
        }
    }

    /// A step's output as its dependents see it (a failed-over step's is its fallback's).
    pub fn output_of(&self, id: &str) -> Value {
        let mut current = id;
        for _ in 0..=self.steps.len() {
            match self.step_states.get(current) {
                Some(StepState {
                    status: StepStatus::FailedOver { fallback },
                    ..
                }) => current = fallback,
                Some(state) => return state.output.clone().unwrap_or(Value::Null),
                None => return Value::Null,
            }
        }
        Value::Null
    }

    /// What conditions and step inputs see: `{"input": ..., "steps": {id: {"output": ...}}}`
    /// for the steps finished so far.
    pub fn context(&self) -> Value {
        let steps: Map<String, Value> = self
            .steps
            .iter()
            .filter(|s| self.satisfied(&s.id))
            .map(|s| (s.id.clone(), json!({ "output": self.output_of(&s.id) })))
            .collect();
        json!({ "input": self.input, "steps": steps })
    }

    /// The current attempt of a step, if it is running or waiting.
    pub fn current_attempt(&self, id: &str) -> Option<u32> {
        match self.status_of(id)? {
            StepStatus::Running { attempt, .. } | StepStatus::Waiting { attempt, .. } => {
                Some(*attempt)
            }
            _ => None,
        }
    }

    /// The executor's rows for this run (see [`Runnable`]).
    pub fn runnable(&self) -> Vec<Runnable> {
        let now_ish = self.started_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let mut rows: Vec<Runnable> = self
            .withdrawals
            .keys()
            .map(|task_id| Runnable {
                slot: format!("withdraw:{task_id}"),
                due_at: Some(now_ish),
                running: false,
                task_id: None,
            })
            .collect();
        if self.status != RunStatus::Running {
            return rows;
        }
        for (id, state) in &self.step_states {
            let row = |due_at, running, task_id| Runnable {
                slot: id.clone(),
                due_at,
                running,
                task_id,
            };
            match &state.status {
                StepStatus::Ready { not_before, .. } => {
                    rows.push(row(Some(*not_before), false, None))
                }
                StepStatus::Running { lease_until, .. } => {
                    rows.push(row(Some(*lease_until), true, None))
                }
                StepStatus::Waiting { on, deadline, .. } => match on {
                    WaitOn::Timer { until } => {
                        let due = deadline.map_or(*until, |d| d.min(*until));
                        rows.push(row(Some(due), false, None));
                    }
                    WaitOn::Task { task_id } => rows.push(row(*deadline, false, Some(*task_id))),
                    WaitOn::Signal { .. } => {
                        if deadline.is_some() {
                            rows.push(row(*deadline, false, None));
                        }
                    }
                },
                StepStatus::NeedsPerson if state.incident_task.is_none() => {
                    rows.push(row(Some(now_ish), false, None))
                }
                _ => {}
            }
        }
        rows
    }

    fn step_or_refuse(&self, step: &str) -> Result<&StepState, RunError> {
        self.step_states
            .get(step)
            .ok_or_else(|| RunError::UnknownStep(step.to_owned()))
    }

    fn running_or_refuse(&self) -> Result<(), RunError> {
        match self.status {
            RunStatus::NotStarted => Err(RunError::NotFound),
            RunStatus::Running => Ok(()),
            finished => Err(RunError::Finished(finished)),
        }
    }

    fn check_current(&self, step: &str, attempt: u32) -> Result<(), RunError> {
        self.step_or_refuse(step)?;
        if self.current_attempt(step) != Some(attempt) {
            return Err(RunError::StaleAttempt {
                step: step.to_owned(),
                attempt,
            });
        }
        Ok(())
    }
}

impl Decision {
    /// Starts every pending step whose dependencies are finished (or skips it when its `when`
    /// does not hold, which may free others), then completes the run when every step is done.
    fn advance(&mut self, now: DateTime<Utc>) {
        loop {
            if self.state.status != RunStatus::Running {
                return;
            }
            let next = self.state.steps.iter().find(|s| {
                !self.state.fallbacks.contains(&s.id)
                    && matches!(self.state.status_of(&s.id), Some(StepStatus::Pending))
                    && s.depends_on.iter().all(|d| self.state.satisfied(d))
            });
            let Some(step) = next else { break };
            let (id, when) = (step.id.clone(), step.when.clone());
            match when {
                Some(c) if !c.holds(&self.state.context()) => self.push(RunEvent::StepSkipped {
                    step: id,
                    reason: SkipReason::Condition,
                    at: now,
                }),
                _ => self.push(RunEvent::StepReady {
                    step: id,
                    attempt: 1,
                    not_before: now,
                    at: now,
                }),
            }
        }
        let done = self
            .state
            .steps
            .iter()
            .filter(|s| !self.state.fallbacks.contains(&s.id))
            .all(|s| self.state.satisfied(&s.id));
        if done {
            let output = self.state.context()["steps"].clone();
            self.push(RunEvent::RunCompleted { output, at: now });
        }
    }

    /// Records a failed attempt, then retries, or applies the step's `on_failure`.
    fn fail(
        &mut self,
        step: &str,
        attempt: u32,
        error: &str,
        interrupted: bool,
        jitter: f64,
        now: DateTime<Utc>,
    ) {
        self.push(RunEvent::AttemptFailed {
            step: step.to_owned(),
            attempt,
            error: error.to_owned(),
            interrupted,
            at: now,
        });
        let Some(def) = self.state.step_def(step).cloned() else {
            return;
        };
        let policy = def.retry.unwrap_or(RetryPolicy::NONE);
        let first_ready = self
            .state
            .step_states
            .get(step)
            .and_then(|s| s.ready_at)
            .unwrap_or(now);
        let not_before = now + policy.backoff(attempt + 1, jitter);
        let in_time = policy
            .max_elapsed_secs
            .is_none_or(|max| not_before - first_ready <= Duration::seconds(max as i64));
        if attempt < policy.max_attempts && in_time {
            self.push(RunEvent::StepReady {
                step: step.to_owned(),
                attempt: attempt + 1,
                not_before,
                at: now,
            });
            return;
        }
        match def.on_failure {
            OnFailure::FailRun => {
                self.push(RunEvent::StepFailed {
                    step: step.to_owned(),
                    error: error.to_owned(),
                    at: now,
                });
                self.push(RunEvent::RunFailed {
                    step: step.to_owned(),
                    error: error.to_owned(),
                    at: now,
                });
            }
            OnFailure::Skip => {
                self.push(RunEvent::StepSkipped {
                    step: step.to_owned(),
                    reason: SkipReason::Policy {
                        error: error.to_owned(),
                    },
                    at: now,
                });
                self.advance(now);
            }
            OnFailure::Fallback(fallback) => {
                self.push(RunEvent::StepFailedOver {
                    step: step.to_owned(),
                    fallback: fallback.clone(),
                    at: now,
                });
                self.push(RunEvent::StepReady {
                    step: fallback,
                    attempt: 1,
                    not_before: now,
                    at: now,
                });
            }
            OnFailure::AskPerson => self.push(RunEvent::IncidentOpened {
                step: step.to_owned(),
                error: error.to_owned(),
                at: now,
            }),
        }
    }

    /// After a fallback finished, the step it stands in for is done too: the run may go on.
    fn succeed(&mut self, step: &str, attempt: u32, output: Value, now: DateTime<Utc>) {
        self.push(RunEvent::AttemptSucceeded {
            step: step.to_owned(),
            attempt,
            output,
            at: now,
        });
        self.advance(now);
    }
}

impl Aggregate for WorkflowRun {
    const STREAM_TYPE: &'static str = "workflow_run";
    type Command = RunCommand;
    type Event = RunEvent;
    type Error = RunError;

    fn decide(&self, command: &RunCommand, now: DateTime<Utc>) -> Result<Vec<RunEvent>, RunError> {
        let mut d = Decision {
            state: self.clone(),
            events: Vec::new(),
        };
        match command {
            RunCommand::Start {
                run_id,
                version,
                definition,
                input,
                business_key,
                by,
            } => {
                if self.exists() {
                    return Err(RunError::AlreadyStarted);
                }
                d.push(RunEvent::RunStarted {
                    run_id: *run_id,
                    key: definition.key.clone(),
                    version: *version,
                    name: definition.name.clone(),
                    steps: definition.steps.clone(),
                    input: input.clone(),
                    business_key: business_key.clone(),
                    by: by.clone(),
                    at: now,
                });
                d.advance(now);
            }
            RunCommand::BeginAttempt { step, lease_until } => {
                self.running_or_refuse()?;
                let attempt = match self.step_or_refuse(step)?.status {
                    StepStatus::Ready {
                        attempt,
                        not_before,
                    } if not_before <= now => attempt,
                    _ => return Err(RunError::NotReady { step: step.clone() }),
                };
                let run_id = self.run_id.unwrap_or_default();
                d.push(RunEvent::AttemptStarted {
                    step: step.clone(),
                    attempt,
                    idempotency_key: format!("{run_id}:{step}:{attempt}"),
                    lease_until: *lease_until,
                    at: now,
                });
            }
            RunCommand::Interrupt {
                step,
                attempt,
                jitter,
            } => {
                self.running_or_refuse()?;
                match self.step_or_refuse(step)?.status {
                    StepStatus::Running {
                        attempt: current,
                        lease_until,
                    } if current == *attempt => {
                        if lease_until > now {
                            return Err(RunError::LeaseHeld {
                                step: step.clone(),
                                attempt: *attempt,
                            });
                        }
                    }
                    _ => {
                        return Err(RunError::StaleAttempt {
                            step: step.clone(),
                            attempt: *attempt,
                        })
                    }
                }
                d.fail(
                    step,
                    *attempt,
                    "the attempt was interrupted: its executor stopped before reporting a result",
                    true,
                    *jitter,
                    now,
                );
            }
            RunCommand::Wait {
                step,
                attempt,
                on,
                deadline,
            } => {
                self.running_or_refuse()?;
                self.check_current(step, *attempt)?;
                d.push(RunEvent::AttemptWaiting {
                    step: step.clone(),
                    attempt: *attempt,
                    on: on.clone(),
                    deadline: *deadline,
                    at: now,
                });
            }
            RunCommand::Succeed {
                step,
                attempt,
                output,
            } => {
                self.running_or_refuse()?;
                self.check_current(step, *attempt)?;
                d.succeed(step, *attempt, output.clone(), now);
            }
            RunCommand::Fail {
                step,
                attempt,
                error,
                jitter,
            } => {
                self.running_or_refuse()?;
                self.check_current(step, *attempt)?;
                d.fail(step, *attempt, error, false, *jitter, now);
            }
            RunCommand::Signal { name, payload, by } => {
                self.running_or_refuse()?;
                let waiting: Vec<(String, u32)> = self
                    .step_states
                    .iter()
                    .filter_map(|(id, s)| match &s.status {
                        StepStatus::Waiting {
                            attempt,
                            on: WaitOn::Signal { name: n },
                            ..
                        } if n == name => Some((id.clone(), *attempt)),
                        _ => None,
                    })
                    .collect();
                if waiting.is_empty() {
                    return Err(RunError::NotWaitingForSignal(name.clone()));
                }
                for (step, attempt) in waiting {
                    d.push(RunEvent::SignalReceived {
                        step: step.clone(),
                        name: name.clone(),
                        by: by.clone(),
                        at: now,
                    });
                    if d.state.status == RunStatus::Running {
                        d.succeed(&step, attempt, payload.clone(), now);
                    }
                }
            }
            RunCommand::IncidentTaskCreated { step, task_id } => {
                self.running_or_refuse()?;
                let state = self.step_or_refuse(step)?;
                if state.status != StepStatus::NeedsPerson || state.incident_task.is_some() {
                    return Ok(Vec::new());
                }
                d.push(RunEvent::IncidentTaskCreated {
                    step: step.clone(),
                    task_id: *task_id,
                    at: now,
                });
            }
            RunCommand::Retry { step, by } => {
                self.running_or_refuse()?;
                let state = self.step_or_refuse(step)?;
                if state.status != StepStatus::NeedsPerson {
                    return Err(RunError::StepNotFailed(step.clone()));
                }
                let next = state.attempts.last().map_or(1, |a| a.number + 1);
                d.push(RunEvent::StepRetried {
                    step: step.clone(),
                    by: by.clone(),
                    at: now,
                });
                d.push(RunEvent::StepReady {
                    step: step.clone(),
                    attempt: next,
                    not_before: now,
                    at: now,
                });
            }
            RunCommand::Skip { step, by } => {
                self.running_or_refuse()?;
                if self.step_or_refuse(step)?.status != StepStatus::NeedsPerson {
                    return Err(RunError::StepNotFailed(step.clone()));
                }
                d.push(RunEvent::StepSkipped {
                    step: step.clone(),
                    reason: SkipReason::Person { by: by.clone() },
                    at: now,
                });
                d.advance(now);
            }
            RunCommand::Cancel { by, reason } => {
                self.running_or_refuse()?;
                d.push(RunEvent::RunCancelled {
                    by: by.clone(),
                    reason: reason.clone(),
                    at: now,
                });
            }
            RunCommand::TaskWithdrawn { task_id } => {
                if !self.withdrawals.contains_key(task_id) {
                    return Err(RunError::UnknownTask(*task_id));
                }
                d.push(RunEvent::TaskWithdrawn {
                    task_id: *task_id,
                    at: now,
                });
            }
        }
        Ok(d.events)
    }

    fn evolve(mut self, event: &RunEvent) -> Self {
        match event {
            RunEvent::RunStarted {
                run_id,
                key,
                version,
                name,
                steps,
                input,
                business_key,
                by,
                at,
            } => {
                self.run_id = Some(*run_id);
                self.key = key.clone();
                self.version = *version;
                self.name = name.clone();
                self.steps = steps.clone();
                self.fallbacks = Definition::fallbacks(steps);
                self.input = input.clone();
                self.business_key = business_key.clone();
                self.started_by = by.clone();
                self.started_at = Some(*at);
                self.status = RunStatus::Running;
                self.step_states = steps
                    .iter()
                    .map(|s| (s.id.clone(), StepState::default()))
                    .collect();
            }
            RunEvent::StepReady {
                step,
                attempt,
                not_before,
                at,
            } => {
                let s = self.step_states.entry(step.clone()).or_default();
                s.status = StepStatus::Ready {
                    attempt: *attempt,
                    not_before: *not_before,
                };
                s.ready_at.get_or_insert(*at);
                s.error = None;
            }
            RunEvent::StepSkipped { step, reason, at } => {
                let s = self.step_states.entry(step.clone()).or_default();
                s.status = StepStatus::Skipped;
                s.ended_at = Some(*at);
                if let SkipReason::Person { by } = reason {
                    s.decided_by = Some(by.clone());
                    if let Some(task) = s.incident_task {
                        self.withdrawals.insert(task, step.clone());
                    }
                }
            }
            RunEvent::AttemptStarted {
                step,
                attempt,
                idempotency_key,
                lease_until,
                at,
            } => {
                let s = self.step_states.entry(step.clone()).or_default();
                s.status = StepStatus::Running {
                    attempt: *attempt,
                    lease_until: *lease_until,
                };
                s.attempts.push(Attempt {
                    number: *attempt,
                    idempotency_key: idempotency_key.clone(),
                    started_at: *at,
                    ended_at: None,
                    error: None,
                    interrupted: false,
                });
            }
            RunEvent::AttemptWaiting {
                step,
                attempt,
                on,
                deadline,
                ..
            } => {
                let s = self.step_states.entry(step.clone()).or_default();
                s.status = StepStatus::Waiting {
                    attempt: *attempt,
                    on: on.clone(),
                    deadline: *deadline,
                };
            }
            RunEvent::SignalReceived { .. } => {}
            RunEvent::AttemptSucceeded {
                step,
                attempt,
                output,
                at,
            } => {
                let s = self.step_states.entry(step.clone()).or_default();
                s.status = StepStatus::Succeeded;
                s.output = Some(output.clone());
                s.ended_at = Some(*at);
                if let Some(a) = s.attempts.iter_mut().find(|a| a.number == *attempt) {
                    a.ended_at = Some(*at);
                }
            }
            RunEvent::AttemptFailed {
                step,
                attempt,
                error,
                interrupted,
                at,
            } => {
                let s = self.step_states.entry(step.clone()).or_default();
                if let StepStatus::Waiting {
                    on: WaitOn::Task { task_id },
                    ..
                } = &s.status
                {
                    // Timed out or otherwise given up on: nobody needs the task any more.
                    self.withdrawals.insert(*task_id, step.clone());
                }
                s.error = Some(error.clone());
                s.status = StepStatus::Pending;
                if let Some(a) = s.attempts.iter_mut().find(|a| a.number == *attempt) {
                    a.ended_at = Some(*at);
                    a.error = Some(error.clone());
                    a.interrupted = *interrupted;
                }
            }
            RunEvent::StepFailedOver { step, fallback, at } => {
                let s = self.step_states.entry(step.clone()).or_default();
                s.status = StepStatus::FailedOver {
                    fallback: fallback.clone(),
                };
                s.ended_at = Some(*at);
            }
            RunEvent::IncidentOpened { step, error, .. } => {
                let s = self.step_states.entry(step.clone()).or_default();
                s.status = StepStatus::NeedsPerson;
                s.error = Some(error.clone());
                s.incident_task = None;
                s.decided_by = None;
            }
            RunEvent::IncidentTaskCreated { step, task_id, .. } => {
                self.step_states
                    .entry(step.clone())
                    .or_default()
                    .incident_task = Some(*task_id);
            }
            RunEvent::StepRetried { step, by, .. } => {
                let s = self.step_states.entry(step.clone()).or_default();
                s.decided_by = Some(by.clone());
                if let Some(task) = s.incident_task {
                    self.withdrawals.insert(task, step.clone());
                }
            }
            RunEvent::StepFailed { step, error, at } => {
                let s = self.step_states.entry(step.clone()).or_default();
                s.status = StepStatus::Failed;
                s.error = Some(error.clone());
                s.ended_at = Some(*at);
            }
            RunEvent::TaskWithdrawn { task_id, .. } => {
                self.withdrawals.remove(task_id);
            }
            RunEvent::RunCompleted { output, at } => {
                self.status = RunStatus::Completed;
                self.output = Some(output.clone());
                self.ended_at = Some(*at);
            }
            RunEvent::RunFailed { step, error, at } => {
                self.status = RunStatus::Failed;
                self.error = Some(format!("step {step:?} failed: {error}"));
                self.ended_at = Some(*at);
                self.withdraw_open_tasks();
            }
            RunEvent::RunCancelled { by, reason, at } => {
                self.status = RunStatus::Cancelled;
                self.cancelled_by = Some(by.clone());
                self.error = Some(reason.clone());
                self.ended_at = Some(*at);
                self.withdraw_open_tasks();
            }
        }
        self
    }
}

impl WorkflowRun {
    /// The run ended: the tasks it still waits on (human tasks, open incidents) are withdrawn.
    fn withdraw_open_tasks(&mut self) {
        for (id, s) in &self.step_states {
            if let StepStatus::Waiting {
                on: WaitOn::Task { task_id },
                ..
            } = &s.status
            {
                self.withdrawals.insert(*task_id, id.clone());
            }
            if let (StepStatus::NeedsPerson, Some(task)) = (&s.status, s.incident_task) {
                self.withdrawals.insert(task, id.clone());
            }
        }
    }
}
