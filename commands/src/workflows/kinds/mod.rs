//! Step kinds: what a step *does*. Each kind is one module behind [`StepKind`]; a new kind is
//! one file here and one line in [`Kinds::standard`].
//!
//! A kind checks its `config` at registration, starts an attempt (returning a result at once,
//! or a wait), and, for waits that something else ends (a task finishing, a deadline passing),
//! checks on the attempt when the executor is told it is due.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::workflow::WaitOn;
use futures_util::future::BoxFuture;
use serde_json::Value;
use uuid::Uuid;

use crate::workqueue::WorkQueues;

pub mod http;
pub mod human_task;
pub mod signal;
pub mod wait;

/// What one attempt at a step knows about itself and its run.
#[derive(Debug, Clone)]
pub struct AttemptContext {
    pub run_id: Uuid,
    pub key: String,
    pub step: String,
    pub attempt: u32,
    /// `run:step:attempt`: sent to receivers, who may also de-duplicate on run and step.
    pub idempotency_key: String,
    pub config: Value,
    pub timeout_secs: Option<u64>,
    /// `{"input": ..., "steps": {id: {"output": ...}}}`: the run's input and the outputs of
    /// the steps finished so far.
    pub context: Value,
    pub now: DateTime<Utc>,
}

impl AttemptContext {
    /// The JSON value a pointer finds in the context (null when it finds nothing).
    pub fn lookup(&self, pointer: &str) -> Value {
        self.context
            .pointer(pointer)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// When a wait that began now times out, from the step's `timeout_secs`.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        self.timeout_secs
            .and_then(|s| i64::try_from(s).ok())
            .map(|s| self.now + chrono::Duration::seconds(s))
    }
}

/// How an attempt ended, or what it now waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    Succeeded(Value),
    Failed(String),
    Wait {
        on: WaitOn,
        deadline: Option<DateTime<Utc>>,
    },
}

/// One kind of step.
pub trait StepKind: Send + Sync + 'static {
    /// The `kind` definitions name it by.
    fn name(&self) -> &'static str;

    /// Checks a step's `config` at registration; the problem in words.
    fn check(&self, config: &Value) -> Result<(), String>;

    /// How long an attempt may hold its step before it counts as interrupted; longer than the
    /// attempt can take when its executor is alive.
    fn lease(&self, timeout_secs: Option<u64>) -> std::time::Duration {
        std::time::Duration::from_secs(timeout_secs.unwrap_or(30) + 30)
    }

    /// Starts an attempt.
    fn start<'a>(&'a self, attempt: &'a AttemptContext) -> BoxFuture<'a, StepOutcome>;

    /// A waiting attempt became due: its deadline passed, or the task it waits for finished.
    /// `None`: still waiting.
    fn check_wait<'a>(
        &'a self,
        attempt: &'a AttemptContext,
        on: &'a WaitOn,
        deadline: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, Option<StepOutcome>> {
        Box::pin(async move {
            match on {
                WaitOn::Timer { until } if *until <= attempt.now => {
                    Some(StepOutcome::Succeeded(Value::Null))
                }
                _ if deadline.is_some_and(|d| d <= attempt.now) => Some(StepOutcome::Failed(
                    "timed out: the step's timeout_secs passed while it waited".into(),
                )),
                _ => None,
            }
        })
    }
}

/// The kinds a server knows, by name.
#[derive(Clone, Default)]
pub struct Kinds {
    kinds: BTreeMap<&'static str, Arc<dyn StepKind>>,
}

impl std::fmt::Debug for Kinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

impl Kinds {
    /// Every kind Caseledger ships.
    pub fn standard(work: Arc<WorkQueues>, http: http::HttpSettings) -> Self {
        Self::default()
            .with(human_task::HumanTask::new(work))
            .with(http::Http::new(http))
            .with(wait::Wait)
            .with(signal::Signal)
    }

    pub fn with(mut self, kind: impl StepKind) -> Self {
        self.kinds.insert(kind.name(), Arc::new(kind));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn StepKind>> {
        self.kinds.get(name)
    }

    /// The known kinds' names, for error messages.
    pub fn names(&self) -> String {
        self.kinds.keys().copied().collect::<Vec<_>>().join(", ")
    }
}

/// A string member of a config object, if present and a string.
pub(crate) fn config_str<'a>(config: &'a Value, field: &str) -> Result<Option<&'a str>, String> {
    match config.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

/// The config must be an object with only these members.
pub(crate) fn only_fields(config: &Value, allowed: &[&str]) -> Result<(), String> {
    let members = match config {
        Value::Null => return Ok(()),
        Value::Object(m) => m,
        _ => return Err("config must be a JSON object".into()),
    };
    match members.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(format!(
            "unknown config field {unknown:?}; this kind takes {}",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}
