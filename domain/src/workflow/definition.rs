//! Workflow definitions: the steps of a process, their dependencies and policies, checked once
//! at registration; and the [`WorkflowDefinition`] aggregate that keeps a key's versions.
//!
//! A key's stream holds every version ever registered; registering the same key again appends
//! the next version, and runs keep the version they started with (the run's first event
//! carries the steps it runs). A key can be deactivated (no new runs) and activated again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::condition::{Condition, Source};
use crate::refusal::{fields, ErrorKind, Refusal};
use crate::Aggregate;

/// A definition as registered: what `POST /workflows` carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    pub key: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON Schema a run's input must satisfy (checked by the application layer, which owns a
    /// validator); `None` accepts any input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    pub steps: Vec<StepDef>,
}

/// One step of a definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDef {
    pub id: String,
    /// `human_task`, `http`, `wait`, `signal`: what the step does; its `config` is the kind's.
    pub kind: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub config: Value,
    /// Runs the step only if this holds once its dependencies are done; otherwise it is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default)]
    pub on_failure: OnFailure,
    /// How long one attempt may take (an HTTP call) or wait (a task, a signal) before it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// How often a failed step is tried again, and how long to wait in between.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt; each later wait is `multiplier` times the one before.
    #[serde(default = "RetryPolicy::default_initial")]
    pub initial_backoff_ms: u64,
    #[serde(default = "RetryPolicy::default_multiplier")]
    pub multiplier: f64,
    #[serde(default = "RetryPolicy::default_max_backoff")]
    pub max_backoff_ms: u64,
    /// No attempt starts later than this after the step first became ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_elapsed_secs: Option<u64>,
}

impl RetryPolicy {
    /// One attempt, no retry: what a step without a policy gets.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        initial_backoff_ms: 1_000,
        multiplier: 2.0,
        max_backoff_ms: 300_000,
        max_elapsed_secs: None,
    };

    fn default_initial() -> u64 {
        1_000
    }
    fn default_multiplier() -> f64 {
        2.0
    }
    fn default_max_backoff() -> u64 {
        300_000
    }

    /// The wait before attempt `next` (2 for the first retry), with "equal jitter": half the
    /// exponential delay, plus `jitter` (0 to 1) times the other half, so that runs failing
    /// together do not retry together.
    pub fn backoff(&self, next: u32, jitter: f64) -> chrono::Duration {
        let exponent = i32::try_from(next.saturating_sub(2)).unwrap_or(i32::MAX);
        let raw = self.initial_backoff_ms as f64 * self.multiplier.powi(exponent);
        let capped = raw.min(self.max_backoff_ms as f64).max(0.0);
        let jitter = jitter.clamp(0.0, 1.0);
        let ms = capped / 2.0 + capped / 2.0 * jitter;
        chrono::Duration::milliseconds(ms as i64)
    }

    fn check(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.max_attempts) {
            return Err("max_attempts must be 1 to 100".into());
        }
        if !(1.0..=10.0).contains(&self.multiplier) {
            return Err("multiplier must be 1 to 10".into());
        }
        if self.initial_backoff_ms > self.max_backoff_ms {
            return Err("initial_backoff_ms must not exceed max_backoff_ms".into());
        }
        if self.max_backoff_ms > 86_400_000 {
            return Err("max_backoff_ms must be at most a day (86400000)".into());
        }
        Ok(())
    }
}

/// What happens when a step has failed its last attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The run fails.
    #[default]
    FailRun,
    /// The run goes on as if the step had succeeded, with a null output.
    Skip,
    /// The named step runs in its place; its result is the step's result.
    Fallback(String),
    /// An incident task asks a person to retry, skip or abort.
    AskPerson,
}

/// Longest key, step id and name accepted.
const MAX_ID: usize = 64;
const MAX_STEPS: usize = 200;

/// Why a definition (or a request about one) was refused. Nothing is appended on a refusal.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DefinitionError {
    #[error("key {0:?} must be 1 to 64 characters of lowercase letters, digits, '-' and '_'")]
    InvalidKey(String),
    #[error("{field}: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("a workflow needs at least one step (and at most {MAX_STEPS})")]
    NoSteps,
    #[error("step id {0:?} is used more than once")]
    DuplicateStep(String),
    #[error("step {step:?} depends on {missing:?}, which is not a step of this workflow")]
    UnknownDependency { step: String, missing: String },
    #[error("the steps depend on each other in a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("step {step:?} has kind {kind:?}; known kinds are {known}")]
    UnknownKind {
        step: String,
        kind: String,
        known: String,
    },
    #[error("step {step:?}: bad config for its kind: {problem}")]
    BadConfig { step: String, problem: String },
    #[error("step {step:?}: bad condition: {problem}")]
    BadCondition { step: String, problem: String },
    #[error("step {step:?}: bad retry policy: {problem}")]
    BadRetry { step: String, problem: String },
    #[error("step {step:?}: bad fallback: {problem}")]
    BadFallback { step: String, problem: String },
    #[error("input_schema is not a usable JSON Schema: {0}")]
    BadInputSchema(String),
    #[error("no workflow has the key {0:?}")]
    NotFound(String),
    #[error("workflow {key:?} has no version {version}")]
    VersionNotFound { key: String, version: u32 },
    #[error("workflow {0:?} is deactivated; activate it to start runs")]
    Inactive(String),
}

impl DefinitionError {
    /// The JSON pointer into the registration request that names the fault, where there is one.
    fn pointer(&self, steps: &[StepDef]) -> Option<String> {
        let index = |id: &str| steps.iter().position(|s| s.id == id);
        match self {
            DefinitionError::InvalidKey(_) => Some("/key".into()),
            DefinitionError::InvalidField { field, .. } => Some(format!("/{field}")),
            DefinitionError::NoSteps => Some("/steps".into()),
            DefinitionError::DuplicateStep(id) => {
                let second = steps.iter().enumerate().filter(|(_, s)| s.id == *id).nth(1);
                second.map(|(i, _)| format!("/steps/{i}/id"))
            }
            DefinitionError::UnknownDependency { step, missing } => index(step).map(|i| {
                let j = steps[i]
                    .depends_on
                    .iter()
                    .position(|d| d == missing)
                    .unwrap_or(0);
                format!("/steps/{i}/depends_on/{j}")
            }),
            DefinitionError::Cycle(cycle) => cycle
                .first()
                .and_then(|s| index(s))
                .map(|i| format!("/steps/{i}/depends_on")),
            DefinitionError::UnknownKind { step, .. } => {
                index(step).map(|i| format!("/steps/{i}/kind"))
            }
            DefinitionError::BadConfig { step, .. } => {
                index(step).map(|i| format!("/steps/{i}/config"))
            }
            DefinitionError::BadCondition { step, .. } => {
                index(step).map(|i| format!("/steps/{i}/when"))
            }
            DefinitionError::BadRetry { step, .. } => {
                index(step).map(|i| format!("/steps/{i}/retry"))
            }
            DefinitionError::BadFallback { step, .. } => {
                index(step).map(|i| format!("/steps/{i}/on_failure"))
            }
            DefinitionError::BadInputSchema(_) => Some("/input_schema".into()),
            _ => None,
        }
    }

    /// The refusal with the pointer to its field in `definition`, for the registration answer.
    pub fn located(self, definition: &Definition) -> Located {
        let pointer = self.pointer(&definition.steps);
        Located {
            error: self,
            pointer,
        }
    }
}

impl Refusal for DefinitionError {
    fn kind(&self) -> ErrorKind {
        match self {
            DefinitionError::NotFound(_) | DefinitionError::VersionNotFound { .. } => {
                ErrorKind::NotFound
            }
            DefinitionError::Inactive(_) => ErrorKind::Conflict,
            _ => ErrorKind::Invalid,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            DefinitionError::InvalidKey(_) => "invalid_workflow_key",
            DefinitionError::InvalidField { .. } => "invalid_field",
            DefinitionError::NoSteps => "workflow_without_steps",
            DefinitionError::DuplicateStep(_) => "duplicate_step",
            DefinitionError::UnknownDependency { .. } => "unknown_dependency",
            DefinitionError::Cycle(_) => "workflow_cycle",
            DefinitionError::UnknownKind { .. } => "unknown_step_kind",
            DefinitionError::BadConfig { .. } => "invalid_step_config",
            DefinitionError::BadCondition { .. } => "invalid_condition",
            DefinitionError::BadRetry { .. } => "invalid_retry_policy",
            DefinitionError::BadFallback { .. } => "invalid_fallback",
            DefinitionError::BadInputSchema(_) => "invalid_input_schema",
            DefinitionError::NotFound(_) => "workflow_not_found",
            DefinitionError::VersionNotFound { .. } => "workflow_version_not_found",
            DefinitionError::Inactive(_) => "workflow_inactive",
        }
    }

    fn details(&self) -> Map<String, Value> {
        fields(match self {
            DefinitionError::DuplicateStep(step) => json!({ "step": step }),
            DefinitionError::UnknownDependency { step, missing } => {
                json!({ "step": step, "missing": missing })
            }
            DefinitionError::Cycle(cycle) => json!({ "cycle": cycle }),
            DefinitionError::UnknownKind { step, kind, .. } => {
                json!({ "step": step, "kind": kind })
            }
            DefinitionError::BadConfig { step, .. }
            | DefinitionError::BadCondition { step, .. }
            | DefinitionError::BadRetry { step, .. }
            | DefinitionError::BadFallback { step, .. } => json!({ "step": step }),
            DefinitionError::VersionNotFound { key, version } => {
                json!({ "key": key, "version": version })
            }
            _ => Value::Null,
        })
    }
}

/// A [`DefinitionError`] with the JSON pointer to the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct Located {
    pub error: DefinitionError,
    pub pointer: Option<String>,
}

impl Refusal for Located {
    fn kind(&self) -> ErrorKind {
        self.error.kind()
    }
    fn code(&self) -> &'static str {
        self.error.code()
    }
    fn details(&self) -> Map<String, Value> {
        let mut details = self.error.details();
        if let Some(pointer) = &self.pointer {
            details.insert("pointer".into(), Value::String(pointer.clone()));
        }
        details
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Definition {
    /// Checks everything about a definition that needs no knowledge of step kinds: ids,
    /// dependencies (unknown ones, cycles), conditions (only on ancestors' outputs), retry and
    /// fallback policies. The application layer checks each step's kind and config.
    pub fn check(&self) -> Result<(), DefinitionError> {
        if !valid_id(&self.key) {
            return Err(DefinitionError::InvalidKey(self.key.clone()));
        }
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(DefinitionError::InvalidField {
                field: "name".into(),
                reason: "must be 1 to 200 characters".into(),
            });
        }
        if self.description.chars().count() > 2_000 {
            return Err(DefinitionError::InvalidField {
                field: "description".into(),
                reason: "must be at most 2000 characters".into(),
            });
        }
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return Err(DefinitionError::NoSteps);
        }
        let mut seen = BTreeSet::new();
        for step in &self.steps {
            if !valid_id(&step.id) {
                return Err(DefinitionError::InvalidField {
                    field: format!(
                        "steps/{}/id",
                        self.steps.iter().position(|s| s.id == step.id).unwrap_or(0)
                    ),
                    reason: format!("step id {:?} must be 1 to 64 characters of lowercase letters, digits, '-' and '_'", step.id),
                });
            }
            if !seen.insert(step.id.as_str()) {
                return Err(DefinitionError::DuplicateStep(step.id.clone()));
            }
        }
        for step in &self.steps {
            if let Some(missing) = step.depends_on.iter().find(|d| !seen.contains(d.as_str())) {
                return Err(DefinitionError::UnknownDependency {
                    step: step.id.clone(),
                    missing: missing.clone(),
                });
            }
        }
        if let Some(cycle) = self.cycle() {
            return Err(DefinitionError::Cycle(cycle));
        }
        for step in &self.steps {
            self.check_policies(step)?;
        }
        Ok(())
    }

    fn check_policies(&self, step: &StepDef) -> Result<(), DefinitionError> {
        if let Some(when) = &step.when {
            let bad = |problem: String| DefinitionError::BadCondition {
                step: step.id.clone(),
                problem,
            };
            when.check().map_err(bad)?;
            let ancestors = self.ancestors(&step.id);
            for test in when.tests() {
                if let Some(Source::Step(other)) = test.source() {
                    if !ancestors.contains(other) {
                        return Err(bad(format!(
                            "it reads the output of {other:?}, which is not a step this one depends on (directly or through others)"
                        )));
                    }
                }
            }
        }
        if let Some(retry) = &step.retry {
            retry.check().map_err(|problem| DefinitionError::BadRetry {
                step: step.id.clone(),
                problem,
            })?;
        }
        if step.timeout_secs.is_some_and(|t| t == 0 || t > 30 * 86_400) {
            return Err(DefinitionError::InvalidField {
                field: format!(
                    "steps/{}/timeout_secs",
                    self.steps.iter().position(|s| s.id == step.id).unwrap_or(0)
                ),
                reason: "must be 1 second to 30 days".into(),
            });
        }
        if let OnFailure::Fallback(target) = &step.on_failure {
            let bad = |problem: String| DefinitionError::BadFallback {
                step: step.id.clone(),
                problem,
            };
            let Some(fallback) = self.steps.iter().find(|s| s.id == *target) else {
                return Err(bad(format!("{target:?} is not a step of this workflow")));
            };
            if fallback.id == step.id {
                return Err(bad("a step cannot be its own fallback".into()));
            }
            if !fallback.depends_on.is_empty() || fallback.when.is_some() {
                return Err(bad(format!(
                    "fallback step {target:?} must have no depends_on and no when: it runs in the failed step's place"
                )));
            }
            if let Some(dependent) = self.steps.iter().find(|s| s.depends_on.contains(target)) {
                return Err(bad(format!(
                    "fallback step {target:?} cannot be a dependency (of {:?}); depend on {:?} instead",
                    dependent.id, step.id
                )));
            }
        }
        Ok(())
    }

    /// Steps that only run in place of a failed step (named by some step's `fallback`).
    pub fn fallbacks(steps: &[StepDef]) -> BTreeSet<String> {
        steps
            .iter()
            .filter_map(|s| match &s.on_failure {
                OnFailure::Fallback(target) => Some(target.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every step `id` depends on, directly or through others.
    pub fn ancestors(&self, id: &str) -> BTreeSet<&str> {
        let by_id: HashMap<&str, &StepDef> =
            self.steps.iter().map(|s| (s.id.as_str(), s)).collect();
        let mut found = BTreeSet::new();
        let mut todo: Vec<&str> = by_id
            .get(id)
            .map(|s| s.depends_on.iter().map(String::as_str).collect())
            .unwrap_or_default();
        while let Some(next) = todo.pop() {
            if found.insert(next) {
                if let Some(s) = by_id.get(next) {
                    todo.extend(s.depends_on.iter().map(String::as_str));
                }
            }
        }
        found
    }

    /// One cycle among the dependencies, in order (each step depends on the next, and the last
    /// on the first), if there is any.
    pub fn cycle(&self) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        let index: HashMap<&str, usize> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let mut marks = vec![Mark::New; self.steps.len()];
        for root in 0..self.steps.len() {
            if marks[root] != Mark::New {
                continue;
            }
            // Depth-first, with an explicit stack of (step, next dependency to look at).
            let mut path: Vec<(usize, usize)> = vec![(root, 0)];
            marks[root] = Mark::Open;
            while let Some(&mut (node, ref mut next)) = path.last_mut() {
                let deps = &self.steps[node].depends_on;
                if *next >= deps.len() {
                    marks[node] = Mark::Done;
                    path.pop();
                    continue;
                }
                let dep = index.get(deps[*next].as_str()).copied();
                *next += 1;
                let Some(dep) = dep else { continue };
                match marks[dep] {
                    Mark::Done => {}
                    Mark::New => {
                        marks[dep] = Mark::Open;
                        path.push((dep, 0));
                    }
                    Mark::Open => {
                        let start = path.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                        return Some(
                            path[start..]
                                .iter()
                                .map(|(n, _)| self.steps[*n].id.clone())
                                .collect(),
                        );
                    }
                }
            }
        }
        None
    }

    /// The plan: steps in topological groups; the steps of a group depend only on earlier
    /// groups, so they may run in parallel. Fallback-only steps are left out.
    pub fn plan(&self) -> Vec<Vec<String>> {
        let fallbacks = Self::fallbacks(&self.steps);
        let mut level: BTreeMap<&str, usize> = BTreeMap::new();
        let mut remaining: Vec<&StepDef> = self
            .steps
            .iter()
            .filter(|s| !fallbacks.contains(&s.id))
            .collect();
        while !remaining.is_empty() {
            let before = remaining.len();
            remaining.retain(|s| {
                let deps: Option<Vec<usize>> = s
                    .depends_on
                    .iter()
                    .map(|d| level.get(d.as_str()).copied())
                    .collect();
                match deps {
                    Some(deps) => {
                        level.insert(&s.id, deps.into_iter().max().map_or(0, |m| m + 1));
                        false
                    }
                    None => true,
                }
            });
            if remaining.len() == before {
                break; // a cycle: refused at registration, so never here
            }
        }
        let groups = level.values().max().map_or(0, |m| m + 1);
        let mut plan = vec![Vec::new(); groups];
        for step in &self.steps {
            if let Some(l) = level.get(step.id.as_str()) {
                plan[*l].push(step.id.clone());
            }
        }
        plan
    }
}

/// A key's registered versions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkflowDefinition {
    pub key: Option<String>,
    /// Every version, oldest first: version `n` is `versions[n - 1]`.
    pub versions: Vec<Registered>,
    pub active: bool,
}

/// One registered version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub version: u32,
    pub definition: Definition,
    pub registered_by: String,
    pub registered_at: DateTime<Utc>,
}

impl WorkflowDefinition {
    pub fn exists(&self) -> bool {
        self.key.is_some()
    }

    pub fn latest(&self) -> Option<&Registered> {
        self.versions.last()
    }

    /// Version `n`, or the latest for `None`.
    pub fn version(&self, n: Option<u32>) -> Option<&Registered> {
        match n {
            None => self.latest(),
            Some(n) => n
                .checked_sub(1)
                .and_then(|i| self.versions.get(usize::try_from(i).ok()?)),
        }
    }

    /// The version a new run starts on: `n`, or the latest; refused if the key is inactive.
    pub fn for_new_run(&self, key: &str, n: Option<u32>) -> Result<&Registered, DefinitionError> {
        if !self.exists() {
            return Err(DefinitionError::NotFound(key.to_owned()));
        }
        if !self.active {
            return Err(DefinitionError::Inactive(key.to_owned()));
        }
        self.version(n)
            .ok_or_else(|| DefinitionError::VersionNotFound {
                key: key.to_owned(),
                version: n.unwrap_or(0),
            })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DefinitionCommand {
    /// Registers `definition` as the key's next version (checked kinds and config first).
    Register {
        definition: Definition,
        by: String,
    },
    Deactivate {
        key: String,
        by: String,
    },
    Activate {
        key: String,
        by: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum DefinitionEvent {
    WorkflowVersionRegistered {
        version: u32,
        definition: Definition,
        by: String,
        at: DateTime<Utc>,
    },
    WorkflowDeactivated {
        by: String,
        at: DateTime<Utc>,
    },
    WorkflowActivated {
        by: String,
        at: DateTime<Utc>,
    },
}

impl Aggregate for WorkflowDefinition {
    const STREAM_TYPE: &'static str = "workflow";
    type Command = DefinitionCommand;
    type Event = DefinitionEvent;
    type Error = Located;

    fn decide(
        &self,
        command: &DefinitionCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<DefinitionEvent>, Located> {
        match command {
            DefinitionCommand::Register { definition, by } => {
                definition.check().map_err(|e| e.located(definition))?;
                let next = u32::try_from(self.versions.len()).unwrap_or(u32::MAX - 1) + 1;
                Ok(vec![DefinitionEvent::WorkflowVersionRegistered {
                    version: next,
                    definition: definition.clone(),
                    by: by.clone(),
                    at: now,
                }])
            }
            DefinitionCommand::Deactivate { key, by } | DefinitionCommand::Activate { key, by } => {
                if !self.exists() {
                    return Err(Located {
                        error: DefinitionError::NotFound(key.clone()),
                        pointer: None,
                    });
                }
                let activate = matches!(command, DefinitionCommand::Activate { .. });
                if self.active == activate {
                    return Ok(Vec::new());
                }
                Ok(vec![if activate {
                    DefinitionEvent::WorkflowActivated {
                        by: by.clone(),
                        at: now,
                    }
                } else {
                    DefinitionEvent::WorkflowDeactivated {
                        by: by.clone(),
                        at: now,
                    }
                }])
            }
        }
    }

    fn evolve(mut self, event: &DefinitionEvent) -> Self {
        match event {
            DefinitionEvent::WorkflowVersionRegistered {
                version,
                definition,
                by,
                at,
            } => {
                // The first version makes the key active; later ones keep what operators chose.
                if self.key.is_none() {
                    self.active = true;
                }
                self.key = Some(definition.key.clone());
                self.versions.push(Registered {
                    version: *version,
                    definition: definition.clone(),
                    registered_by: by.clone(),
                    registered_at: *at,
                });
            }
            DefinitionEvent::WorkflowDeactivated { .. } => self.active = false,
            DefinitionEvent::WorkflowActivated { .. } => self.active = true,
        }
        self
    }
}
