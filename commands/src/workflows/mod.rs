//! Workflows: registering versioned definitions, starting and steering runs, and the executor
//! that drives them.
//!
//! - this module: [`Workflows`], the service (register, activate and deactivate a key, start a
//!   run with its input checked against the definition's JSON Schema, cancel, signal, and a
//!   person's retry or skip after an incident) and its one error, [`WorkflowError`].
//! - [`runs`]: every command on a run takes one path: lock the run's `wf_runs` row, fold the
//!   stream, decide, append, and bring the run's `wf_runnable` rows up to date, all in one
//!   transaction. Commands on a run take turns; the executor's claim skips a busy run.
//! - [`executor`]: claims due rows with `FOR UPDATE SKIP LOCKED` (several servers share the
//!   work), starts attempts under a lease, runs the step kinds, reports results, and recovers
//!   attempts whose lease ran out (their executor died) as interrupted.
//! - [`kinds`]: what steps do, one module per kind behind [`kinds::StepKind`].
//!
//! A completed work-queue task moves its run on through [`task_finished`], which the task
//! commands call in their own transaction.

use std::sync::Arc;

use domain::refusal::{fields, ErrorKind, Refusal};
use domain::workflow::definition::{DefinitionCommand, Located};
use domain::workflow::{
    Definition, DefinitionError, RunCommand, RunError, WorkflowDefinition, WorkflowRun,
};
use domain::Aggregate;
use eventstore::event::Metadata;
use eventstore::store::EventStore;
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::CommandError;
use crate::handler::CommandHandler;

pub mod executor;
pub mod kinds;
pub mod runs;

pub use executor::{Executor, ExecutorSettings};
pub use runs::{RunCache, RunWritten};

/// Namespace of definition stream ids (v5 of the key).
const DEFINITION_NAMESPACE: Uuid = Uuid::from_u128(0x9d4f_37a1_1c2e_4b85_a6f0_2e71_d83c_5a19);

/// Why a workflow request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkflowRefusal {
    #[error(transparent)]
    Definition(#[from] Located),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("the input does not match the workflow's input_schema: {}", .0.iter().map(|p| format!("{} {}", p.pointer, p.message)).collect::<Vec<_>>().join("; "))]
    InvalidInput(Vec<InputProblem>),
}

/// One way a run's input breaks the definition's schema.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InputProblem {
    /// JSON pointer into the request body (`/input/...`).
    pub pointer: String,
    pub message: String,
}

impl From<DefinitionError> for WorkflowRefusal {
    fn from(error: DefinitionError) -> Self {
        WorkflowRefusal::Definition(Located {
            error,
            pointer: None,
        })
    }
}

impl Refusal for WorkflowRefusal {
    fn kind(&self) -> ErrorKind {
        match self {
            WorkflowRefusal::Definition(e) => e.kind(),
            WorkflowRefusal::Run(e) => e.kind(),
            WorkflowRefusal::InvalidInput(_) => ErrorKind::Invalid,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            WorkflowRefusal::Definition(e) => e.code(),
            WorkflowRefusal::Run(e) => e.code(),
            WorkflowRefusal::InvalidInput(_) => "invalid_input",
        }
    }

    fn details(&self) -> serde_json::Map<String, Value> {
        match self {
            WorkflowRefusal::Definition(e) => e.details(),
            WorkflowRefusal::Run(e) => e.details(),
            WorkflowRefusal::InvalidInput(problems) => fields(json!({
                "pointer": problems.first().map(|p| p.pointer.clone()),
                "problems": problems,
            })),
        }
    }
}

/// Why a workflow command did not happen.
pub type WorkflowError = CommandError<WorkflowRefusal>;

impl From<RunError> for WorkflowError {
    fn from(e: RunError) -> Self {
        CommandError::Rejected(e.into())
    }
}

impl From<DefinitionError> for WorkflowError {
    fn from(e: DefinitionError) -> Self {
        CommandError::Rejected(e.into())
    }
}

/// A run to start.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub run_id: Uuid,
    pub key: String,
    /// `None`: the latest version.
    pub version: Option<u32>,
    pub input: Value,
    pub business_key: Option<String>,
    pub by: String,
}

/// Registers definitions and steers runs.
pub struct Workflows {
    store: EventStore,
    clock: Arc<dyn Clock>,
    definitions: CommandHandler<WorkflowDefinition>,
    kinds: kinds::Kinds,
    /// Runs as this process last wrote them, so that the executor's many small commands on a
    /// run skip re-reading its stream.
    cache: runs::RunCache,
}

impl std::fmt::Debug for Workflows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workflows")
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

impl Workflows {
    pub fn new(store: EventStore, clock: Arc<dyn Clock>, kinds: kinds::Kinds) -> Self {
        Self {
            definitions: CommandHandler::new(store.clone(), clock.clone()),
            store,
            clock,
            kinds,
            cache: runs::RunCache::default(),
        }
    }

    pub(crate) fn cache(&self) -> &runs::RunCache {
        &self.cache
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn kinds(&self) -> &kinds::Kinds {
        &self.kinds
    }

    /// The stream of a key's definitions.
    pub fn definition_stream(key: &str) -> Uuid {
        Uuid::new_v5(&DEFINITION_NAMESPACE, key.as_bytes())
    }

    /// Registers `definition` as its key's next version, after checking each step's kind and
    /// config and the input schema. Answers the key's versions (the new one last).
    pub async fn register(
        &self,
        definition: Definition,
        metadata: &Metadata,
    ) -> Result<(WorkflowDefinition, Option<eventstore::Cursor>), WorkflowError> {
        let located = |e: DefinitionError| -> WorkflowError {
            CommandError::Rejected(e.located(&definition).into())
        };
        for step in &definition.steps {
            let Some(kind) = self.kinds.get(&step.kind) else {
                return Err(located(DefinitionError::UnknownKind {
                    step: step.id.clone(),
                    kind: step.kind.clone(),
                    known: self.kinds.names(),
                }));
            };
            kind.check(&step.config).map_err(|problem| {
                located(DefinitionError::BadConfig {
                    step: step.id.clone(),
                    problem,
                })
            })?;
        }
        if let Some(schema) = &definition.input_schema {
            jsonschema::validator_for(schema)
                .map_err(|e| located(DefinitionError::BadInputSchema(e.to_string())))?;
        }
        let key = definition.key.clone();
        let command = DefinitionCommand::Register {
            definition,
            by: metadata.actor.clone(),
        };
        self.definition_command(&key, &command, metadata).await
    }

    /// Allows (`true`) or stops (`false`) new runs of a key; running runs go on.
    pub async fn set_active(
        &self,
        key: &str,
        active: bool,
        metadata: &Metadata,
    ) -> Result<(WorkflowDefinition, Option<eventstore::Cursor>), WorkflowError> {
        let (key, by) = (key.to_owned(), metadata.actor.clone());
        let command = if active {
            DefinitionCommand::Activate {
                key: key.clone(),
                by,
            }
        } else {
            DefinitionCommand::Deactivate {
                key: key.clone(),
                by,
            }
        };
        self.definition_command(&key, &command, metadata).await
    }

    /// Handles a command on a key's definitions and answers the key's versions as the command
    /// left them (folded once, at the version it wrote).
    async fn definition_command(
        &self,
        key: &str,
        command: &DefinitionCommand,
        metadata: &Metadata,
    ) -> Result<(WorkflowDefinition, Option<eventstore::Cursor>), WorkflowError> {
        let stream = Self::definition_stream(key);
        let outcome = self
            .definitions
            .handle(stream, command, metadata)
            .await
            .map_err(|e| e.map_rejected(WorkflowRefusal::from))?;
        let (_, state) = self
            .definitions
            .load_at_version(stream, outcome.version)
            .await
            .map_err(|e| e.map_rejected(WorkflowRefusal::from))?;
        Ok((state, outcome.cursor))
    }

    /// A key's versions, from its stream; refused when the key has none.
    pub async fn definition(&self, key: &str) -> Result<WorkflowDefinition, WorkflowError> {
        let (_, state) = self
            .definitions
            .load(Self::definition_stream(key))
            .await
            .map_err(|e| e.map_rejected(WorkflowRefusal::from))?;
        if !state.exists() {
            return Err(DefinitionError::NotFound(key.to_owned()).into());
        }
        Ok(state)
    }

    /// Starts a run of a key's latest active version (or `version`). The run's id is the
    /// caller's (derived from an idempotency key for safe retries): starting an id that
    /// already ran the same key with the same input answers that run, `replayed`.
    pub async fn start(
        &self,
        new: NewRun,
        metadata: &Metadata,
    ) -> Result<RunWritten, WorkflowError> {
        let definitions = self.definition(&new.key).await?;
        let registered = definitions.for_new_run(&new.key, new.version)?;
        if let Some(schema) = &registered.definition.input_schema {
            check_input(schema, &new.input)?;
        }
        let command = RunCommand::Start {
            run_id: new.run_id,
            version: registered.version,
            definition: registered.definition.clone(),
            input: new.input.clone(),
            business_key: new.business_key.clone(),
            by: new.by.clone(),
        };
        match self.run_command(new.run_id, &command, metadata, true).await {
            Err(CommandError::Rejected(WorkflowRefusal::Run(RunError::AlreadyStarted))) => {
                let (version, run) = self.run(new.run_id).await?;
                if run.key == new.key && run.input == new.input {
                    return Ok(RunWritten {
                        run_id: new.run_id,
                        version,
                        events: Vec::new(),
                        cursor: None,
                        state: run,
                        replayed: true,
                    });
                }
                Err(RunError::AlreadyStarted.into())
            }
            other => other,
        }
    }

    /// A run's state and version, from its stream (exact: no read model involved).
    pub async fn run(&self, run_id: Uuid) -> Result<(u64, WorkflowRun), WorkflowError> {
        let (version, run) = runs::load(&self.store, run_id).await?;
        if !run.exists() {
            return Err(RunError::NotFound.into());
        }
        Ok((version, run))
    }

    /// A run as it was after `version` (auditors' "as of").
    pub async fn run_at(
        &self,
        run_id: Uuid,
        version: u64,
    ) -> Result<(u64, WorkflowRun), WorkflowError> {
        let (reached, run) = runs::load_until(&self.store, run_id, version).await?;
        if !run.exists() {
            return Err(RunError::NotFound.into());
        }
        Ok((reached, run))
    }

    pub async fn cancel(
        &self,
        run_id: Uuid,
        reason: &str,
        metadata: &Metadata,
    ) -> Result<RunWritten, WorkflowError> {
        let command = RunCommand::Cancel {
            by: metadata.actor.clone(),
            reason: reason.to_owned(),
        };
        self.run_command(run_id, &command, metadata, false).await
    }

    pub async fn signal(
        &self,
        run_id: Uuid,
        name: &str,
        payload: Value,
        metadata: &Metadata,
    ) -> Result<RunWritten, WorkflowError> {
        let command = RunCommand::Signal {
            name: name.to_owned(),
            payload,
            by: metadata.actor.clone(),
        };
        self.run_command(run_id, &command, metadata, false).await
    }

    /// A person's decision on a step that needs one: try it again, or skip it.
    pub async fn decide_incident(
        &self,
        run_id: Uuid,
        step: &str,
        retry: bool,
        metadata: &Metadata,
    ) -> Result<RunWritten, WorkflowError> {
        let (step, by) = (step.to_owned(), metadata.actor.clone());
        let command = if retry {
            RunCommand::Retry { step, by }
        } else {
            RunCommand::Skip { step, by }
        };
        self.run_command(run_id, &command, metadata, false).await
    }

    /// Decides `command` on a run and writes the result (see [`runs`]).
    pub async fn run_command(
        &self,
        run_id: Uuid,
        command: &RunCommand,
        metadata: &Metadata,
        create: bool,
    ) -> Result<RunWritten, WorkflowError> {
        let mut tx = self.store.pool().begin().await?;
        let (version, state) =
            runs::lock(&self.store, &mut tx, run_id, create, &self.cache).await?;
        if !create && !state.exists() {
            return Err(RunError::NotFound.into());
        }
        let events = state.decide(command, self.clock.now())?;
        let written = runs::write(
            &self.store,
            &mut tx,
            run_id,
            version,
            state,
            events,
            metadata,
        )
        .await?;
        tx.commit().await?;
        self.cache.remember(&written);
        Ok(written)
    }
}

/// Checks a run's input against a definition's schema; every problem, with its pointer.
fn check_input(schema: &Value, input: &Value) -> Result<(), WorkflowError> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| DefinitionError::BadInputSchema(e.to_string()))?;
    let problems: Vec<InputProblem> = validator
        .iter_errors(input)
        .take(20)
        .map(|e| InputProblem {
            pointer: format!("/input{}", e.instance_path()),
            message: e.to_string(),
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CommandError::Rejected(WorkflowRefusal::InvalidInput(
            problems,
        )))
    }
}

/// A work-queue task finished (completed or cancelled): the workflow step waiting for it, if
/// any, becomes due now. Called in the task command's transaction, so the run cannot miss it.
pub async fn task_finished(conn: &mut PgConnection, task_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE wf_runnable SET due_at = 'epoch' WHERE task_id = $1")
        .bind(task_id)
        .execute(conn)
        .await?;
    Ok(())
}
