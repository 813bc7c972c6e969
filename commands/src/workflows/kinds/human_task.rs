//! `human_task`: a person does the step through the work queues. Starting an attempt creates a
//! task in the named queue (its id derived from run, step and attempt, so a repeated start
//! makes no second task); the attempt waits until the task is completed (output: the task's
//! outcome, note, who and when) or cancelled (a failed attempt). Completing or cancelling the
//! task makes the waiting step due in the task command's own transaction, so a completed queue
//! task moves the run on even if the server stops right after.
//!
//! Config: `{"queue": "<queue name>"}` or `{"queue_id": "<uuid>"}`, `"title"`, optional
//! `"priority"` (1 lowest to 5 most urgent, default 3), `"groups"` (candidate groups the queue
//! declares) and `"payload"`: an object whose values are JSON pointers into the run's context
//! (`/input/...`, `/steps/<id>/output/...`), each replaced by what it finds.

use std::sync::Arc;

use domain::workflow::WaitOn;
use domain::workqueue::queue::Queue;
use domain::workqueue::task::{Task, TaskEvent};
use domain::workqueue::{GroupLabel, Priority};
use eventstore::codec;
use eventstore::event::Metadata;
use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{config_str, only_fields, AttemptContext, StepKind, StepOutcome};
use crate::workqueue::{NewTask, WorkQueues};

/// Namespace of the ids of tasks that workflow steps create.
const TASK_NAMESPACE: Uuid = Uuid::from_u128(0x6c1e_0a52_8f3b_4d7e_9a21_5b04_c7d9_e318);

/// The task a step's attempt creates (and, on a repeated start, finds).
pub fn task_id(run_id: Uuid, step: &str, attempt: u32) -> Uuid {
    Uuid::new_v5(
        &TASK_NAMESPACE,
        format!("{run_id}\n{step}\n{attempt}").as_bytes(),
    )
}

#[derive(Debug)]
pub struct HumanTask {
    work: Arc<WorkQueues>,
}

impl HumanTask {
    pub fn new(work: Arc<WorkQueues>) -> Self {
        HumanTask { work }
    }
}

/// The queue a config names.
fn queue_id(config: &Value) -> Result<Uuid, String> {
    match (
        config_str(config, "queue")?,
        config_str(config, "queue_id")?,
    ) {
        (Some(name), None) if !name.trim().is_empty() => Ok(Queue::stream_id(name)),
        (None, Some(id)) => Uuid::parse_str(id).map_err(|e| format!("queue_id {id:?}: {e}")),
        _ => Err("give exactly one of queue (its name) or queue_id".into()),
    }
}

fn priority(config: &Value) -> Result<Priority, String> {
    match config.get("priority") {
        None | Some(Value::Null) => Priority::new(3).map_err(|e| e.to_string()),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| "priority must be a number from 1 to 5".to_owned())
            .and_then(|n| Priority::new(n).map_err(|e| e.to_string())),
    }
}

fn groups(config: &Value) -> Result<Vec<GroupLabel>, String> {
    match config.get("groups") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|g| {
                g.as_str()
                    .ok_or_else(|| "groups must be strings".to_owned())
                    .and_then(|s| GroupLabel::parse(s).map_err(|e| e.to_string()))
            })
            .collect(),
        Some(_) => Err("groups must be an array of strings".into()),
    }
}

fn payload_map(config: &Value) -> Result<Map<String, Value>, String> {
    match config.get("payload") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => {
            for (k, v) in m {
                match v.as_str() {
                    Some(p) if p.starts_with("/input") || p.starts_with("/steps/") => {}
                    _ => {
                        return Err(format!(
                            "payload.{k} must be a JSON pointer starting with /input or /steps/<id>/output"
                        ))
                    }
                }
            }
            Ok(m.clone())
        }
        Some(_) => Err("payload must be an object of JSON pointers".into()),
    }
}

impl StepKind for HumanTask {
    fn name(&self) -> &'static str {
        "human_task"
    }

    fn check(&self, config: &Value) -> Result<(), String> {
        only_fields(
            config,
            &[
                "queue", "queue_id", "title", "priority", "groups", "payload",
            ],
        )?;
        queue_id(config)?;
        match config_str(config, "title")? {
            Some(t) if !t.trim().is_empty() && t.chars().count() <= 200 => {}
            _ => return Err("title is required (1 to 200 characters)".into()),
        }
        priority(config)?;
        groups(config)?;
        payload_map(config)?;
        Ok(())
    }

    fn start<'a>(&'a self, attempt: &'a AttemptContext) -> BoxFuture<'a, StepOutcome> {
        Box::pin(async move {
            match self.create(attempt).await {
                Ok(task_id) => StepOutcome::Wait {
                    on: WaitOn::Task { task_id },
                    deadline: attempt.deadline(),
                },
                Err(problem) => StepOutcome::Failed(problem),
            }
        })
    }

    fn check_wait<'a>(
        &'a self,
        attempt: &'a AttemptContext,
        on: &'a WaitOn,
        deadline: Option<chrono::DateTime<chrono::Utc>>,
    ) -> BoxFuture<'a, Option<StepOutcome>> {
        Box::pin(async move {
            let WaitOn::Task { task_id } = on else {
                return None;
            };
            match self.finished(*task_id).await {
                Ok(Some(outcome)) => Some(outcome),
                Ok(None) if deadline.is_some_and(|d| d <= attempt.now) => {
                    Some(StepOutcome::Failed(
                        "timed out: nobody completed the task within the step's timeout_secs"
                            .into(),
                    ))
                }
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(%task_id, error = %e, "could not read a workflow step's task");
                    None
                }
            }
        })
    }
}

impl HumanTask {
    async fn create(&self, attempt: &AttemptContext) -> Result<Uuid, String> {
        let config = &attempt.config;
        let mut payload = Map::new();
        for (k, pointer) in payload_map(config)? {
            payload.insert(k, attempt.lookup(pointer.as_str().unwrap_or_default()));
        }
        payload.insert(
            "workflow".into(),
            json!({
                "run_id": attempt.run_id,
                "key": attempt.key,
                "step": attempt.step,
                "attempt": attempt.attempt,
            }),
        );
        let task_id = task_id(attempt.run_id, &attempt.step, attempt.attempt);
        let new = NewTask {
            task_id,
            queue_id: queue_id(config)?,
            title: config_str(config, "title")?.unwrap_or_default().to_owned(),
            priority: priority(config)?,
            groups: groups(config)?,
            case_id: None,
            payload: Value::Object(payload),
        };
        let metadata = Metadata::by(format!("workflow:{}", attempt.key));
        self.work
            .create_task(new, &metadata)
            .await
            .map(|_| task_id)
            .map_err(|e| format!("could not create the task: {e}"))
    }

    /// How the task ended, if it has.
    async fn finished(&self, task_id: Uuid) -> Result<Option<StepOutcome>, String> {
        let events = self
            .work
            .store()
            .read_stream(task_id, 0)
            .await
            .map_err(|e| e.to_string())?;
        for recorded in events.iter().rev() {
            match codec::decode::<Task>(recorded).map_err(|e| e.to_string())? {
                TaskEvent::TaskCompleted {
                    by,
                    outcome,
                    note,
                    at,
                    ..
                } => {
                    return Ok(Some(StepOutcome::Succeeded(json!({
                        "task_id": task_id,
                        "outcome": outcome,
                        "note": note,
                        "completed_by": by,
                        "completed_at": at,
                    }))))
                }
                TaskEvent::TaskCancelled { by, reason, .. } => {
                    return Ok(Some(StepOutcome::Failed(format!(
                        "the task was cancelled by {by}: {reason}"
                    ))))
                }
                _ => {}
            }
        }
        Ok(None)
    }
}
