//! `sla-escalation`: escalates overdue open or claimed tasks, one level at a time by their
//! queue's policy ([`crate::workqueue`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventstore::Metadata;

use super::{Job, JobFailure, JobFuture};
use crate::workqueue::WorkQueues;

pub const SLA_ESCALATION: &str = "sla-escalation";

/// Escalates overdue tasks. Two servers running it at once escalate each level once: every
/// task is decided under its row lock from its own events.
#[derive(Debug, Clone)]
pub struct SlaEscalation {
    pub work: Arc<WorkQueues>,
}

impl Job for SlaEscalation {
    fn name(&self) -> &'static str {
        SLA_ESCALATION
    }

    fn description(&self) -> &'static str {
        "Escalates overdue open or claimed tasks and raises their priority by the queue's policy"
    }

    fn default_interval(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn run(&self, now: DateTime<Utc>) -> JobFuture<'_> {
        Box::pin(async move {
            let metadata = Metadata::by(format!("job:{SLA_ESCALATION}"));
            let report = self
                .work
                .escalate_overdue(now, &metadata)
                .await
                .map_err(JobFailure::from)?;
            serde_json::to_value(report).map_err(JobFailure::from)
        })
    }
}
