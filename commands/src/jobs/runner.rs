//! The job runner shared by every scheduled job (renewal scan, renewal expiry, ...).
//!
//! A job is a name, a default interval and an async `run(now)`. The runner keeps each job's
//! schedule in the `jobs` table, so every server process sees the same schedule and pause
//! switch, and records every run in `job_runs`. One run of a job at a time across all processes:
//! a run holds a transaction-scoped advisory lock for its whole length (released by the
//! database if the process dies), and a scheduled run also claims its slot by moving
//! `next_run_at` forward under that lock, so two schedulers cannot both run the same slot.
//!
//! Time comes from the injected [`Clock`]: tests move it and call [`JobRunner::tick`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::clock::Clock;

/// Advisory-lock namespace of job runs.
const JOB_LOCK: i32 = 0x0CA5_E0B5;

pub type JobFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, JobFailure>> + Send + 'a>>;

/// Why a run failed; recorded on the run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct JobFailure(pub String);

impl JobFailure {
    pub fn from(error: impl std::fmt::Display) -> Self {
        JobFailure(error.to_string())
    }
}

/// A scheduled job.
pub trait Job: Send + Sync + 'static {
    /// Stable name: the key of its schedule and of `POST /jobs/{name}/run`.
    fn name(&self) -> &'static str;
    /// One line for operators.
    fn description(&self) -> &'static str;
    /// How often it runs unless configured otherwise.
    fn default_interval(&self) -> Duration;
    /// Does the work as of `now`; the returned JSON is the run's result.
    fn run(&self, now: DateTime<Utc>) -> JobFuture<'_>;
}

/// What went wrong with a request to the runner.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no job is named {0:?}")]
    UnknownJob(String),
    #[error("job {0} is running right now (here or in another server); try again when it ends")]
    AlreadyRunning(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// How a run came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Manual,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
        }
    }
}

/// One run, as recorded.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct JobRun {
    pub run_id: Uuid,
    pub job: String,
    pub trigger: String,
    pub requested_by: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// running, succeeded, failed or abandoned.
    pub status: String,
    pub result: Option<Value>,
    pub error: Option<String>,
}

/// A job as operators see it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStatus {
    pub name: String,
    pub description: String,
    pub interval_seconds: i64,
    pub paused: bool,
    /// Whether a run is in progress (in any process).
    pub running: bool,
    pub next_run_at: DateTime<Utc>,
    pub last_run: Option<JobRun>,
}

/// A job's schedule row with its latest run, if any.
#[derive(sqlx::FromRow)]
struct StatusRow {
    name: String,
    interval_seconds: i64,
    paused: bool,
    next_run_at: DateTime<Utc>,
    run_id: Option<Uuid>,
    trigger: Option<String>,
    requested_by: Option<String>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    status: Option<String>,
    result: Option<Value>,
    error: Option<String>,
}

impl StatusRow {
    fn last_run(&self) -> Option<JobRun> {
        Some(JobRun {
            run_id: self.run_id?,
            job: self.name.clone(),
            trigger: self.trigger.clone()?,
            requested_by: self.requested_by.clone()?,
            started_at: self.started_at?,
            finished_at: self.finished_at,
            status: self.status.clone()?,
            result: self.result.clone(),
            error: self.error.clone(),
        })
    }
}

/// Runs jobs on their schedules and on request; cheap to clone.
#[derive(Clone)]
pub struct JobRunner {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    jobs: Arc<Vec<Arc<dyn Job>>>,
    /// Configured intervals, by job name; the job's default otherwise.
    intervals: Arc<HashMap<String, Duration>>,
}

impl std::fmt::Debug for JobRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRunner")
            .field(
                "jobs",
                &self.jobs.iter().map(|j| j.name()).collect::<Vec<_>>(),
            )
            .field("intervals", &self.intervals)
            .finish_non_exhaustive()
    }
}

const RUN_COLUMNS: &str =
    "run_id, job, trigger, requested_by, started_at, finished_at, status, result, error";

impl JobRunner {
    pub fn new(pool: PgPool, clock: Arc<dyn Clock>, jobs: Vec<Arc<dyn Job>>) -> Self {
        Self {
            pool,
            clock,
            jobs: Arc::new(jobs),
            intervals: Arc::new(HashMap::new()),
        }
    }

    /// Overrides intervals by job name (from configuration). Unknown names are refused.
    pub fn with_intervals(
        mut self,
        intervals: HashMap<String, Duration>,
    ) -> Result<Self, JobError> {
        if let Some(unknown) = intervals.keys().find(|n| self.job(n).is_none()) {
            return Err(JobError::UnknownJob(unknown.clone()));
        }
        self.intervals = Arc::new(intervals);
        Ok(self)
    }

    pub fn jobs(&self) -> impl Iterator<Item = &Arc<dyn Job>> {
        self.jobs.iter()
    }

    fn job(&self, name: &str) -> Option<&Arc<dyn Job>> {
        self.jobs.iter().find(|j| j.name() == name)
    }

    fn interval(&self, job: &dyn Job) -> Duration {
        self.intervals
            .get(job.name())
            .copied()
            .unwrap_or_else(|| job.default_interval())
    }

    /// Makes sure every job has a schedule row, with the configured interval. A new job is due
    /// at once.
    pub async fn register(&self) -> Result<(), JobError> {
        for job in self.jobs.iter() {
            self.write_row(job.as_ref(), true).await?;
        }
        Ok(())
    }

    /// Gives `job` its schedule row, due now if new. With `configure`, an existing row takes
    /// the configured interval (server start); without, it is left as it is (a run that comes
    /// before the scheduler registered the jobs).
    async fn write_row(&self, job: &dyn Job, configure: bool) -> Result<(), JobError> {
        let seconds = i64::try_from(self.interval(job).as_secs().max(1)).unwrap_or(i64::MAX);
        let on_conflict = if configure {
            "DO UPDATE SET interval_seconds = excluded.interval_seconds"
        } else {
            "DO NOTHING"
        };
        sqlx::query(&format!(
            "INSERT INTO jobs (name, interval_seconds, next_run_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) {on_conflict}"
        ))
        .bind(job.name())
        .bind(seconds)
        .bind(self.clock.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Runs every unpaused job that is due now; returns the runs it made. A job whose lock is
    /// held elsewhere, or whose slot another process already claimed, is skipped.
    pub async fn tick(&self) -> Result<Vec<JobRun>, JobError> {
        let now = self.clock.now();
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM jobs WHERE NOT paused AND next_run_at <= $1 ORDER BY name",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut runs = Vec::new();
        for name in names {
            let Some(job) = self.job(&name).cloned() else {
                continue; // a job another version of the server knows
            };
            match self.run_locked(job, Trigger::Schedule, "scheduler").await {
                Ok(Some(run)) => runs.push(run),
                Ok(None) | Err(JobError::AlreadyRunning(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(runs)
    }

    /// Runs `name` now, whatever its schedule or pause switch says. `AlreadyRunning` when a run
    /// is in progress anywhere.
    pub async fn run_now(&self, name: &str, requested_by: &str) -> Result<JobRun, JobError> {
        let job = self
            .job(name)
            .cloned()
            .ok_or_else(|| JobError::UnknownJob(name.to_owned()))?;
        self.run_locked(job, Trigger::Manual, requested_by)
            .await?
            .ok_or_else(|| JobError::AlreadyRunning(name.to_owned()))
    }

    /// Takes the job's lock and runs it; `None` when a scheduled slot was already taken.
    async fn run_locked(
        &self,
        job: Arc<dyn Job>,
        trigger: Trigger,
        requested_by: &str,
    ) -> Result<Option<JobRun>, JobError> {
        let name = job.name();
        self.write_row(job.as_ref(), false).await?;
        let mut lock = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, hashtext($2))")
            .bind(JOB_LOCK)
            .bind(name)
            .fetch_one(&mut *lock)
            .await?;
        if !locked {
            return Err(JobError::AlreadyRunning(name.to_owned()));
        }
        let now = self.clock.now();
        if trigger == Trigger::Schedule {
            let interval = self.interval(job.as_ref());
            let next =
                now + chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::hours(1));
            // Claimed on the pool, not in the lock's transaction, so that the claim is visible
            // at once and survives whatever the run does.
            let claimed = sqlx::query(
                "UPDATE jobs SET next_run_at = $2 WHERE name = $1 AND NOT paused AND next_run_at <= $3",
            )
            .bind(name)
            .bind(next)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if claimed == 0 {
                return Ok(None);
            }
        }
        // We hold the lock, so a run still marked running was left by a process that died.
        sqlx::query(
            "UPDATE job_runs SET status = 'abandoned', finished_at = $2 \
             WHERE job = $1 AND status = 'running'",
        )
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let run_id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO job_runs (run_id, job, trigger, requested_by, started_at, status) \
             VALUES ($1, $2, $3, $4, $5, 'running')",
        )
        .bind(run_id)
        .bind(name)
        .bind(trigger.as_str())
        .bind(requested_by)
        .bind(now)
        .execute(&self.pool)
        .await?;
        tracing::info!(job = name, %run_id, trigger = trigger.as_str(), "job started");
        let outcome = job.run(now).await;
        let finished = self.clock.now();
        let (status, result, error) = match outcome {
            Ok(result) => ("succeeded", Some(result), None),
            Err(failure) => {
                tracing::warn!(job = name, %run_id, error = %failure, "job failed");
                ("failed", None, Some(failure.0))
            }
        };
        let run: JobRun = sqlx::query_as(&format!(
            "UPDATE job_runs SET status = $2, result = $3, error = $4, finished_at = $5 \
             WHERE run_id = $1 RETURNING {RUN_COLUMNS}"
        ))
        .bind(run_id)
        .bind(status)
        .bind(result)
        .bind(error)
        .bind(finished)
        .fetch_one(&self.pool)
        .await?;
        lock.rollback().await?;
        tracing::info!(job = name, %run_id, status, "job finished");
        Ok(Some(run))
    }

    /// Every job with its schedule and last run.
    pub async fn status(&self) -> Result<Vec<JobStatus>, JobError> {
        // Each job's row and its latest run, in one query.
        let rows: Vec<StatusRow> = sqlx::query_as(
            "SELECT j.name, j.interval_seconds, j.paused, j.next_run_at, \
                    r.run_id, r.trigger, r.requested_by, r.started_at, r.finished_at, \
                    r.status, r.result, r.error \
             FROM jobs j LEFT JOIN LATERAL ( \
                 SELECT * FROM job_runs WHERE job = j.name \
                 ORDER BY started_at DESC, run_id LIMIT 1) r ON true",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<JobStatus> = self
            .jobs
            .iter()
            .map(|job| {
                let name = job.name();
                let row = rows.iter().find(|r| r.name == name);
                let last_run = row.and_then(StatusRow::last_run);
                JobStatus {
                    name: name.to_owned(),
                    description: job.description().to_owned(),
                    // Not registered yet: what registering will make it.
                    interval_seconds: row.map_or_else(
                        || {
                            i64::try_from(self.interval(job.as_ref()).as_secs().max(1))
                                .unwrap_or(i64::MAX)
                        },
                        |r| r.interval_seconds,
                    ),
                    paused: row.is_some_and(|r| r.paused),
                    running: last_run.as_ref().is_some_and(|r| r.status == "running"),
                    next_run_at: row.map_or_else(|| self.clock.now(), |r| r.next_run_at),
                    last_run,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The latest runs of a job, newest first.
    pub async fn runs(&self, name: &str, limit: i64) -> Result<Vec<JobRun>, JobError> {
        if self.job(name).is_none() {
            return Err(JobError::UnknownJob(name.to_owned()));
        }
        Ok(sqlx::query_as(&format!(
            "SELECT {RUN_COLUMNS} FROM job_runs WHERE job = $1 \
             ORDER BY started_at DESC, run_id LIMIT $2"
        ))
        .bind(name)
        .bind(limit.clamp(1, 500))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Pauses or resumes the job's schedule.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<(), JobError> {
        if self.job(name).is_none() {
            return Err(JobError::UnknownJob(name.to_owned()));
        }
        sqlx::query("UPDATE jobs SET paused = $2 WHERE name = $1")
            .bind(name)
            .bind(paused)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Registers the jobs and ticks every `poll` until the task is aborted. A failing tick is
    /// logged and retried on the next one.
    pub fn spawn(&self, poll: Duration) -> tokio::task::JoinHandle<()> {
        let runner = self.clone();
        tokio::spawn(async move {
            loop {
                match runner.register().await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%error, "registering jobs failed; retrying");
                        tokio::time::sleep(poll).await;
                    }
                }
            }
            loop {
                if let Err(error) = runner.tick().await {
                    tracing::warn!(%error, "job scheduler tick failed");
                }
                tokio::time::sleep(poll).await;
            }
        })
    }
}
