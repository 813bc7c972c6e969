//! `audit-checkpoint` (hourly) signs the hash chain's head; `audit-verify` (daily) recomputes
//! the chain and checks every checkpoint ([`crate::audit`]). A verification that finds a problem
//! fails its run, with the first problem as the run's error: `/ready` and `/metrics` show it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Job, JobFailure, JobFuture};
use crate::audit::Audit;

pub const AUDIT_CHECKPOINT: &str = "audit-checkpoint";
pub const AUDIT_VERIFY: &str = "audit-verify";

#[derive(Debug, Clone)]
pub struct AuditCheckpoint {
    pub audit: Arc<Audit>,
}

impl Job for AuditCheckpoint {
    fn name(&self) -> &'static str {
        AUDIT_CHECKPOINT
    }

    fn description(&self) -> &'static str {
        "Signs the hash chain's head with the server's audit key and appends it as a checkpoint"
    }

    fn default_interval(&self) -> Duration {
        Duration::from_secs(3600)
    }

    fn run(&self, _now: DateTime<Utc>) -> JobFuture<'_> {
        Box::pin(async move {
            let checkpoint = self.audit.checkpoint().await.map_err(JobFailure::from)?;
            Ok(serde_json::json!({ "checkpoint": checkpoint }))
        })
    }
}

#[derive(Debug, Clone)]
pub struct AuditVerify {
    pub audit: Arc<Audit>,
}

impl Job for AuditVerify {
    fn name(&self) -> &'static str {
        AUDIT_VERIFY
    }

    fn description(&self) -> &'static str {
        "Recomputes the log's hash chain and checks every signed checkpoint"
    }

    fn default_interval(&self) -> Duration {
        Duration::from_secs(86_400)
    }

    fn run(&self, _now: DateTime<Utc>) -> JobFuture<'_> {
        Box::pin(async move {
            let report = self
                .audit
                .verify(1, |_, _| {})
                .await
                .map_err(JobFailure::from)?;
            match &report.first_problem {
                None => serde_json::to_value(&report).map_err(JobFailure::from),
                Some(problem) => Err(JobFailure(
                    serde_json::to_string(problem).unwrap_or_else(|e| e.to_string()),
                )),
            }
        })
    }
}
