//! `/workflows` and `/runs`: register versioned workflow definitions, activate and deactivate a
//! key, start runs (idempotent by `Idempotency-Key`), follow them, and steer them: cancel, deliver
//! a signal, retry or skip a step that asks a person.
//!
//! Definitions and single runs are read from their streams (exact, and as of any time or
//! version for auditors); the lists and step-duration statistics come from the `workflows` read
//! model and take `min_cursor`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use commands::workflows::{NewRun, RunWritten, WorkflowError};
use domain::workflow::definition::Registered;
use domain::workflow::run::StepState;
use domain::workflow::{Definition, DefinitionError, WorkflowRun};
use eventstore::Metadata;
use projections::workflows::{self as model, DefinitionRow, RunFilter, RunPage, StepStats};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::as_of::{self, AsOf, AsOfQuery};
use crate::auth::Caller;
use crate::consistency::wait_for_cursor;
use crate::error::ApiError;
use crate::extract::{id_for_request, path_id, query, ApiJson};
use crate::permissions::{ADMINS, OPERATORS_AND_SYSTEM, READERS};
use crate::AppState;

use super::{routes, Routes};

pub fn routes() -> Routes {
    Routes::new()
        .route(ADMINS, routes!(register))
        .route(READERS, routes!(list))
        .route(READERS, routes!(show))
        .route(READERS, routes!(step_durations))
        .route(ADMINS, routes!(deactivate))
        .route(ADMINS, routes!(activate))
        .route(OPERATORS_AND_SYSTEM, routes!(start))
        .route(READERS, routes!(list_runs))
        .route(READERS, routes!(show_run))
        .route(OPERATORS_AND_SYSTEM, routes!(cancel))
        .route(OPERATORS_AND_SYSTEM, routes!(signal))
        .route(OPERATORS_AND_SYSTEM, routes!(retry_step))
        .route(OPERATORS_AND_SYSTEM, routes!(skip_step))
}

/// Namespace of run ids derived from an idempotency key (v5 of caller, workflow key and key).
const RUN_KEY_NAMESPACE: Uuid = Uuid::from_u128(0x51c8_0be2_6f3a_4d17_9a42_c6e0_7d1b_38f5);

/// Longest `reason` and signal name accepted.
const MAX_TEXT: usize = 500;

fn metadata(caller: &Caller) -> Metadata {
    Metadata::by(caller.actor())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WorkflowRegistered {
    key: String,
    /// The version this registration created (1 for a new key).
    version: u32,
    /// Whether new runs may start (a new key is active; a new version keeps the key's state).
    active: bool,
    /// Pass as `min_cursor` to see it in `GET /workflows`.
    cursor: Option<String>,
}

#[utoipa::path(post, path = "/workflows", tag = "workflows", security(("bearer" = [])), request_body(content = Object, description = "A definition: `{\"key\", \"name\", \"description\", \"input_schema\"?, \"steps\": [{\"id\", \"kind\", \"depends_on\", \"config\", \"when\"?, \"retry\"?, \"on_failure\"?, \"timeout_secs\"?}]}`; see docs/workflows.md"),
    responses((status = 201, description = "Registered as the key's next version", body = WorkflowRegistered),
        (status = 422, description = "The definition is refused: duplicate_step, unknown_dependency, workflow_cycle, unknown_step_kind, invalid_step_config, invalid_condition, invalid_retry_policy, invalid_fallback, invalid_input_schema, invalid_workflow_key, invalid_field; `pointer` names the place", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn register(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(definition): ApiJson<Definition>,
) -> Result<(StatusCode, Json<WorkflowRegistered>), ApiError> {
    let (definitions, cursor) = state
        .workflows
        .register(definition, &metadata(&caller))
        .await?;
    let version = definitions.latest().map_or(0, |r| r.version);
    Ok((
        StatusCode::CREATED,
        Json(WorkflowRegistered {
            key: definitions.key.unwrap_or_default(),
            version,
            active: definitions.active,
            cursor: cursor.map(|c| c.to_string()),
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WorkflowListQuery {
    /// Only active (`true`) or only deactivated (`false`) keys.
    active: Option<bool>,
    /// Wait until the read model includes this cursor.
    min_cursor: Option<String>,
}

#[utoipa::path(get, path = "/workflows", tag = "workflows", security(("bearer" = [])),
    params(WorkflowListQuery),
    responses((status = 200, description = "Every workflow key with its latest version, by key", body = Vec<DefinitionRow>),
        (status = 400, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<WorkflowListQuery>, QueryRejection>,
) -> Result<Json<Vec<DefinitionRow>>, ApiError> {
    let q = query(q)?;
    wait_for_cursor(&state, model::NAME, &headers, q.min_cursor.as_deref()).await?;
    Ok(Json(
        model::list_definitions(state.store.pool(), q.active).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct VersionQuery {
    /// A registered version (1, 2, ...); the latest when left out.
    version: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DefinitionView {
    key: String,
    version: u32,
    /// The key's latest version.
    latest_version: u32,
    /// Whether new runs may start.
    active: bool,
    registered_by: String,
    registered_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    definition: Definition,
}

#[utoipa::path(get, path = "/workflows/{key}", tag = "workflows", security(("bearer" = [])),
    params(("key" = String, Path), VersionQuery),
    responses((status = 200, description = "The latest version of the key's definition, or the one asked for", body = DefinitionView),
        (status = 400, body = crate::openapi::ProblemDoc),
        (status = 404, description = "workflow_not_found, workflow_version_not_found", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<VersionQuery>, QueryRejection>,
) -> Result<Json<DefinitionView>, ApiError> {
    let key = text_path(path)?;
    let q = query(q)?;
    let definitions = state.workflows.definition(&key).await?;
    let latest = definitions.latest().map_or(0, |r| r.version);
    let Registered {
        version,
        definition,
        registered_by,
        registered_at,
    } = definitions.version(q.version).cloned().ok_or_else(|| {
        WorkflowError::from(DefinitionError::VersionNotFound {
            key: key.clone(),
            version: q.version.unwrap_or_default(),
        })
    })?;
    Ok(Json(DefinitionView {
        key,
        version,
        latest_version: latest,
        active: definitions.active,
        registered_by,
        registered_at,
        definition,
    }))
}

#[utoipa::path(get, path = "/workflows/{key}/step-durations", tag = "workflows", security(("bearer" = [])),
    params(("key" = String, Path), VersionQuery),
    responses((status = 200, description = "Per step: successful attempts measured, median and mean duration in milliseconds, over the runs of one version (or all)", body = Vec<StepStats>),
        (status = 400, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn step_durations(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<VersionQuery>, QueryRejection>,
) -> Result<Json<Vec<StepStats>>, ApiError> {
    let key = text_path(path)?;
    let q = query(q)?;
    Ok(Json(
        model::step_duration_stats(state.store.pool(), &key, q.version).await?,
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WorkflowActivity {
    key: String,
    active: bool,
    cursor: Option<String>,
}

async fn set_active(
    state: &AppState,
    caller: &Caller,
    path: Result<Path<String>, PathRejection>,
    active: bool,
) -> Result<Json<WorkflowActivity>, ApiError> {
    let key = text_path(path)?;
    let (definitions, cursor) = state
        .workflows
        .set_active(&key, active, &metadata(caller))
        .await?;
    Ok(Json(WorkflowActivity {
        key,
        active: definitions.active,
        cursor: cursor.map(|c| c.to_string()),
    }))
}

#[utoipa::path(post, path = "/workflows/{key}/deactivate", tag = "workflows", security(("bearer" = [])),
    params(("key" = String, Path)),
    responses((status = 200, description = "No new runs start; running runs go on", body = WorkflowActivity),
        (status = 404, body = crate::openapi::ProblemDoc), (status = 409, description = "Already inactive", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn deactivate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<WorkflowActivity>, ApiError> {
    set_active(&state, &caller, path, false).await
}

#[utoipa::path(post, path = "/workflows/{key}/activate", tag = "workflows", security(("bearer" = [])),
    params(("key" = String, Path)),
    responses((status = 200, description = "New runs may start again", body = WorkflowActivity),
        (status = 404, body = crate::openapi::ProblemDoc), (status = 409, description = "Already active", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn activate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<WorkflowActivity>, ApiError> {
    set_active(&state, &caller, path, true).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartBody {
    /// The run's input, checked against the definition's `input_schema`; `{}` when left out.
    #[serde(default)]
    #[schema(value_type = Object)]
    input: Option<Value>,
    /// The business object the run is about (a renewal id, a referral number), to find runs by.
    business_key: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RunStarted {
    run_id: Uuid,
    /// The definition version the run keeps to its end.
    version: u32,
    /// Pass as `min_cursor` to see the run in `GET /runs`; absent on a replayed start.
    cursor: Option<String>,
}

#[utoipa::path(post, path = "/workflows/{key}/runs", tag = "workflows", security(("bearer" = [])), request_body = StartBody,
    params(("key" = String, Path), VersionQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 128 characters; a retry with the same key (and the same input) answers the first run with 200")),
    responses((status = 201, description = "Started", body = RunStarted),
        (status = 200, description = "A retry of a start already made with this Idempotency-Key", body = RunStarted),
        (status = 404, description = "workflow_not_found, workflow_version_not_found", body = crate::openapi::ProblemDoc),
        (status = 409, description = "workflow_inactive; run_exists (the Idempotency-Key was used with other input)", body = crate::openapi::ProblemDoc),
        (status = 422, description = "invalid_input: the input fails the input_schema; `problems` lists each with its pointer", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn start(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<VersionQuery>, QueryRejection>,
    ApiJson(body): ApiJson<StartBody>,
) -> Result<(StatusCode, Json<RunStarted>), ApiError> {
    let key = text_path(path)?;
    let q = query(q)?;
    if body
        .business_key
        .as_ref()
        .is_some_and(|b| b.trim().is_empty() || b.len() > MAX_TEXT)
    {
        return Err(ApiError::InvalidField {
            field: "business_key",
            reason: format!("give 1 to {MAX_TEXT} characters, or leave it out"),
        });
    }
    let run_id = id_for_request(
        &headers,
        &RUN_KEY_NAMESPACE,
        &format!("{}\n{key}", caller.username),
    )?;
    let written = state
        .workflows
        .start(
            NewRun {
                run_id,
                key,
                version: q.version,
                input: body.input.unwrap_or_else(|| serde_json::json!({})),
                business_key: body.business_key.map(|b| b.trim().to_owned()),
                by: caller.actor(),
            },
            &metadata(&caller),
        )
        .await?;
    let status = if written.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(RunStarted {
            run_id,
            version: written.state.version,
            cursor: written.cursor.map(|c| c.to_string()),
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunsQuery {
    /// Only runs of this workflow key.
    key: Option<String>,
    /// running, completed, failed or cancelled.
    status: Option<String>,
    business_key: Option<String>,
    /// Started at or after this RFC 3339 time.
    started_from: Option<DateTime<Utc>>,
    /// Started before this RFC 3339 time.
    started_to: Option<DateTime<Utc>>,
    /// 1 to 500 (default 50).
    limit: Option<i64>,
    offset: Option<i64>,
    /// Wait until the read model includes this cursor.
    min_cursor: Option<String>,
}

const RUN_STATUSES: [&str; 4] = ["running", "completed", "failed", "cancelled"];

#[utoipa::path(get, path = "/runs", tag = "workflows", security(("bearer" = [])),
    params(RunsQuery),
    responses((status = 200, description = "Runs, newest first, with progress (steps finished of total, steps running)", body = RunPage),
        (status = 400, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn list_runs(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<RunPage>, ApiError> {
    let q = query(q)?;
    if let Some(status) = q.status.as_deref() {
        if !RUN_STATUSES.contains(&status) {
            return Err(ApiError::BadQuery(format!(
                "status: {status:?} is not one of {}",
                RUN_STATUSES.join(", ")
            )));
        }
    }
    wait_for_cursor(&state, model::NAME, &headers, q.min_cursor.as_deref()).await?;
    let filter = RunFilter {
        key: q.key,
        status: q.status,
        business_key: q.business_key,
        started_from: q.started_from,
        started_to: q.started_to,
        limit: q.limit.unwrap_or(50),
        offset: q.offset.unwrap_or(0),
    };
    Ok(Json(model::list_runs(state.store.pool(), &filter).await?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RunView {
    run_id: Uuid,
    key: String,
    version: u32,
    name: String,
    /// running, completed, failed or cancelled.
    status: &'static str,
    business_key: Option<String>,
    #[schema(value_type = Object)]
    input: Value,
    /// The outputs of the run's last steps, by step id, once it completed.
    #[schema(value_type = Option<Object>)]
    output: Option<Value>,
    /// failed: which step failed and why; cancelled: the reason.
    error: Option<String>,
    started_by: String,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    cancelled_by: Option<String>,
    /// The run stream's version this view was rebuilt at.
    stream_version: u64,
    /// Every step of the run's definition version, in definition order.
    steps: Vec<StepView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct StepView {
    id: String,
    kind: String,
    depends_on: Vec<String>,
    /// `status` (pending, ready, running, waiting, succeeded, skipped, failed_over, needs_person,
    /// failed) with its details, `attempts` (number, idempotency key, start, end, error,
    /// interrupted), `output`, `error`, `ready_at`, `ended_at`, `incident_task`, `decided_by`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    state: StepState,
}

impl RunView {
    fn new(run: WorkflowRun, stream_version: u64) -> Self {
        let steps = run
            .steps
            .iter()
            .map(|def| StepView {
                id: def.id.clone(),
                kind: def.kind.clone(),
                depends_on: def.depends_on.clone(),
                state: run.step_states.get(&def.id).cloned().unwrap_or_default(),
            })
            .collect();
        RunView {
            run_id: run.run_id.unwrap_or_default(),
            status: run.status.as_str(),
            key: run.key,
            version: run.version,
            name: run.name,
            business_key: run.business_key,
            input: run.input,
            output: run.output,
            error: run.error,
            started_by: run.started_by,
            started_at: run.started_at,
            ended_at: run.ended_at,
            cancelled_by: run.cancelled_by,
            stream_version,
            steps,
        }
    }
}

#[utoipa::path(get, path = "/runs/{id}", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path), AsOfQuery),
    responses((status = 200, description = "The run from its events: each step's status, attempts, output or error and timings; now, or as of a time or stream version", body = RunView),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn show_run(
    State(state): State<AppState>,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<AsOfQuery>, QueryRejection>,
) -> Result<Json<RunView>, ApiError> {
    let run_id = path_id(path)?;
    let at = query(q)?.at()?;
    let (version, run) = match at {
        AsOf::Now => state.workflows.run(run_id).await?,
        AsOf::Version(v) => state.workflows.run_at(run_id, v).await?,
        AsOf::Time(_) => as_of::state::<WorkflowRun>(&state.store, run_id, at).await?,
    };
    Ok(Json(RunView::new(run, version)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RunChanged {
    run_id: Uuid,
    /// running, completed, failed or cancelled.
    status: &'static str,
    /// The run stream's version after the change.
    version: u64,
    /// Pass as `min_cursor` to read the change in `GET /runs`.
    cursor: Option<String>,
}

impl From<RunWritten> for RunChanged {
    fn from(w: RunWritten) -> Self {
        RunChanged {
            run_id: w.run_id,
            status: w.state.status.as_str(),
            version: w.version,
            cursor: w.cursor.map(|c| c.to_string()),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelRunBody {
    /// Why (1 to 500 characters); recorded with who cancelled.
    reason: String,
}

#[utoipa::path(post, path = "/runs/{id}/cancel", tag = "workflows", security(("bearer" = [])), request_body = CancelRunBody,
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Cancelled; tasks it created are withdrawn", body = RunChanged),
        (status = 404, body = crate::openapi::ProblemDoc), (status = 409, description = "run_finished", body = crate::openapi::ProblemDoc),
        (status = 422, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<CancelRunBody>,
) -> Result<Json<RunChanged>, ApiError> {
    let run_id = path_id(path)?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.len() > MAX_TEXT {
        return Err(ApiError::InvalidField {
            field: "reason",
            reason: format!("give 1 to {MAX_TEXT} characters"),
        });
    }
    let written = state
        .workflows
        .cancel(run_id, reason, &metadata(&caller))
        .await?;
    Ok(Json(written.into()))
}

#[utoipa::path(post, path = "/runs/{id}/signals/{name}", tag = "workflows", security(("bearer" = [])), request_body(content = Object, description = "Any JSON: the waiting step's output"),
    params(("id" = Uuid, Path), ("name" = String, Path)),
    responses((status = 200, description = "Delivered: the step waiting for it succeeded", body = RunChanged),
        (status = 404, body = crate::openapi::ProblemDoc),
        (status = 409, description = "not_waiting_for_signal, run_finished", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn signal(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<(Uuid, String)>, PathRejection>,
    ApiJson(payload): ApiJson<Value>,
) -> Result<Json<RunChanged>, ApiError> {
    let Path((run_id, name)) = path.map_err(|e| ApiError::BadPath(e.body_text()))?;
    let written = state
        .workflows
        .signal(run_id, &name, payload, &metadata(&caller))
        .await?;
    Ok(Json(written.into()))
}

async fn decide(
    state: &AppState,
    caller: &Caller,
    path: Result<Path<(Uuid, String)>, PathRejection>,
    retry: bool,
) -> Result<Json<RunChanged>, ApiError> {
    let Path((run_id, step)) = path.map_err(|e| ApiError::BadPath(e.body_text()))?;
    let written = state
        .workflows
        .decide_incident(run_id, &step, retry, &metadata(caller))
        .await?;
    Ok(Json(written.into()))
}

#[utoipa::path(post, path = "/runs/{id}/steps/{step}/retry", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("step" = String, Path)),
    responses((status = 200, description = "A new attempt of the failed step starts; the incident task is withdrawn", body = RunChanged),
        (status = 404, description = "run_not_found, step_not_found", body = crate::openapi::ProblemDoc),
        (status = 409, description = "step_not_failed, run_finished", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn retry_step(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<(Uuid, String)>, PathRejection>,
) -> Result<Json<RunChanged>, ApiError> {
    decide(&state, &caller, path, true).await
}

#[utoipa::path(post, path = "/runs/{id}/steps/{step}/skip", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("step" = String, Path)),
    responses((status = 200, description = "The failed step counts as skipped (output null) and the run goes on", body = RunChanged),
        (status = 404, description = "run_not_found, step_not_found", body = crate::openapi::ProblemDoc),
        (status = 409, description = "step_not_failed, run_finished", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn skip_step(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<(Uuid, String)>, PathRejection>,
) -> Result<Json<RunChanged>, ApiError> {
    decide(&state, &caller, path, false).await
}

/// A text path segment (a workflow key).
fn text_path(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::BadPath(e.body_text()))
}
