//! What a run is told and what it records: its commands, its events, and why it refuses.
//! The state they act on and the decisions are in the parent module.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{RunStatus, WaitOn};
use crate::refusal::{fields, ErrorKind, Refusal};
use crate::workflow::definition::{Definition, StepDef};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// Its `when` did not hold.
    Condition,
    /// It failed and its policy is `skip`.
    Policy { error: String },
    /// A person chose to skip it after an incident.
    Person { by: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RunCommand {
    Start {
        run_id: Uuid,
        version: u32,
        definition: Definition,
        input: Value,
        business_key: Option<String>,
        by: String,
    },
    /// An executor starts the ready step's attempt and holds it until `lease_until`.
    BeginAttempt {
        step: String,
        lease_until: DateTime<Utc>,
    },
    /// The attempt's lease ran out with no result: the executor that held it is gone.
    Interrupt {
        step: String,
        attempt: u32,
        /// 0 to 1, for the retry backoff's jitter (randomness is the caller's).
        jitter: f64,
    },
    Wait {
        step: String,
        attempt: u32,
        on: WaitOn,
        deadline: Option<DateTime<Utc>>,
    },
    Succeed {
        step: String,
        attempt: u32,
        output: Value,
    },
    Fail {
        step: String,
        attempt: u32,
        error: String,
        jitter: f64,
    },
    Signal {
        name: String,
        payload: Value,
        by: String,
    },
    IncidentTaskCreated {
        step: String,
        task_id: Uuid,
    },
    Retry {
        step: String,
        by: String,
    },
    Skip {
        step: String,
        by: String,
    },
    Cancel {
        by: String,
        reason: String,
    },
    TaskWithdrawn {
        task_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum RunEvent {
    RunStarted {
        run_id: Uuid,
        key: String,
        version: u32,
        name: String,
        steps: Vec<StepDef>,
        input: Value,
        business_key: Option<String>,
        by: String,
        at: DateTime<Utc>,
    },
    StepReady {
        step: String,
        attempt: u32,
        not_before: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    StepSkipped {
        step: String,
        #[serde(flatten)]
        reason: SkipReason,
        at: DateTime<Utc>,
    },
    AttemptStarted {
        step: String,
        attempt: u32,
        idempotency_key: String,
        lease_until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    AttemptWaiting {
        step: String,
        attempt: u32,
        on: WaitOn,
        deadline: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    SignalReceived {
        step: String,
        name: String,
        by: String,
        at: DateTime<Utc>,
    },
    AttemptSucceeded {
        step: String,
        attempt: u32,
        output: Value,
        at: DateTime<Utc>,
    },
    AttemptFailed {
        step: String,
        attempt: u32,
        error: String,
        interrupted: bool,
        at: DateTime<Utc>,
    },
    StepFailedOver {
        step: String,
        fallback: String,
        at: DateTime<Utc>,
    },
    IncidentOpened {
        step: String,
        error: String,
        at: DateTime<Utc>,
    },
    IncidentTaskCreated {
        step: String,
        task_id: Uuid,
        at: DateTime<Utc>,
    },
    StepRetried {
        step: String,
        by: String,
        at: DateTime<Utc>,
    },
    StepFailed {
        step: String,
        error: String,
        at: DateTime<Utc>,
    },
    TaskWithdrawn {
        task_id: Uuid,
        at: DateTime<Utc>,
    },
    RunCompleted {
        output: Value,
        at: DateTime<Utc>,
    },
    RunFailed {
        step: String,
        error: String,
        at: DateTime<Utc>,
    },
    RunCancelled {
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    #[error("no such workflow run")]
    NotFound,
    #[error("this run id is already taken by another run")]
    AlreadyStarted,
    #[error("the run has already {}", .0.as_str())]
    Finished(RunStatus),
    #[error("the run has no step {0:?}")]
    UnknownStep(String),
    #[error("step {step:?} is not ready to start")]
    NotReady { step: String },
    #[error("attempt {attempt} of step {step:?} is not the current attempt")]
    StaleAttempt { step: String, attempt: u32 },
    #[error("attempt {attempt} of step {step:?} still holds its lease")]
    LeaseHeld { step: String, attempt: u32 },
    #[error("the run is not waiting for the signal {0:?}")]
    NotWaitingForSignal(String),
    #[error("step {0:?} is not failed and waiting for a person's decision")]
    StepNotFailed(String),
    #[error("the run did not create task {0}, or it was already withdrawn")]
    UnknownTask(Uuid),
}

impl Refusal for RunError {
    fn kind(&self) -> ErrorKind {
        match self {
            RunError::NotFound | RunError::UnknownStep(_) | RunError::UnknownTask(_) => {
                ErrorKind::NotFound
            }
            _ => ErrorKind::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            RunError::NotFound => "run_not_found",
            RunError::AlreadyStarted => "run_exists",
            RunError::Finished(_) => "run_finished",
            RunError::UnknownStep(_) => "step_not_found",
            RunError::NotReady { .. } => "step_not_ready",
            RunError::StaleAttempt { .. } => "stale_attempt",
            RunError::LeaseHeld { .. } => "attempt_lease_held",
            RunError::NotWaitingForSignal(_) => "not_waiting_for_signal",
            RunError::StepNotFailed(_) => "step_not_failed",
            RunError::UnknownTask(_) => "task_not_found",
        }
    }

    fn details(&self) -> Map<String, Value> {
        fields(match self {
            RunError::Finished(status) => json!({ "status": status }),
            RunError::UnknownStep(step)
            | RunError::NotReady { step }
            | RunError::StepNotFailed(step) => json!({ "step": step }),
            RunError::StaleAttempt { step, attempt } | RunError::LeaseHeld { step, attempt } => {
                json!({ "step": step, "attempt": attempt })
            }
            RunError::NotWaitingForSignal(name) => json!({ "signal": name }),
            _ => Value::Null,
        })
    }
}
