//! `/jobs`: the scheduler's status (each job's schedule, last run, next run), running a job now,
//! pausing and resuming it, and its recent runs.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use commands::jobs::{JobRun, JobStatus};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::query;
use crate::permissions::{ADMINS, JOB_OPERATORS, JOB_READERS};
use crate::AppState;

use super::{routes, Routes};

pub fn routes() -> Routes {
    Routes::new()
        .route(JOB_READERS, routes!(list))
        .route(JOB_OPERATORS, routes!(run))
        .route(ADMINS, routes!(pause))
        .route(ADMINS, routes!(resume))
        .route(JOB_READERS, routes!(runs))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct JobList {
    /// Whether this server process runs the scheduler.
    scheduler_running: bool,
    jobs: Vec<JobStatus>,
}

#[utoipa::path(get, path = "/jobs", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, description = "Every job: schedule, pause switch, running, last run and next run", body = JobList)))]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<JobList>, ApiError> {
    Ok(Json(JobList {
        scheduler_running: state.scheduler_running,
        jobs: state.jobs.status().await?,
    }))
}

/// Runs a job now (in a task of its own, so that a client hanging up does not cut the run
/// short) and waits for it for most of the request timeout.
pub async fn run_job(state: &AppState, name: &str, actor: &str) -> Result<JobRun, ApiError> {
    let jobs = state.jobs.clone();
    let (name, actor) = (name.to_owned(), actor.to_owned());
    let task = tokio::spawn(async move { jobs.run_now(&name, &actor).await });
    let wait = state.http.timeout.mul_f32(0.8);
    match tokio::time::timeout(wait, task).await {
        Ok(Ok(result)) => Ok(result?),
        Ok(Err(join)) => Err(ApiError::internal(join)),
        Err(_) => Err(ApiError::JobStillRunning),
    }
}

fn job_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(n)| n)
        .map_err(|e| ApiError::BadPath(e.body_text()))
}

#[utoipa::path(post, path = "/jobs/{name}/run", tag = "jobs", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, description = "The run, finished", body = JobRun),
        (status = 202, description = "Still running after most of the request timeout; see GET /jobs", body = crate::openapi::ProblemDoc),
        (status = 404, body = crate::openapi::ProblemDoc),
        (status = 409, description = "Running already", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<JobRun>, ApiError> {
    let name = job_name(path)?;
    Ok(Json(run_job(&state, &name, &caller.actor()).await?))
}

#[utoipa::path(post, path = "/jobs/{name}/pause", tag = "jobs", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 204, description = "Paused: the scheduler skips it"), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn pause(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    state.jobs.set_paused(&job_name(path)?, true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/jobs/{name}/resume", tag = "jobs", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 204, description = "Resumed"), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn resume(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    state.jobs.set_paused(&job_name(path)?, false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunsQuery {
    /// 1 to 500; default 20.
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/jobs/{name}/runs", tag = "jobs", security(("bearer" = [])),
    params(("name" = String, Path), RunsQuery),
    responses((status = 200, description = "The latest runs, newest first", body = Vec<JobRun>), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn runs(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<Vec<JobRun>>, ApiError> {
    let name = job_name(path)?;
    let q = query(q)?;
    Ok(Json(state.jobs.runs(&name, q.limit.unwrap_or(20)).await?))
}
