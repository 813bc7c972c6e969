//! Scheduled jobs: the runner every job uses, and the jobs of the server.
//!
//! - The runner (one run of a job at a time across processes, a shared schedule and pause
//!   switch, a record of runs): [`JobRunner`], [`Job`], [`JobRun`], [`JobStatus`].
//! - [`renewals`]: `renewal-scan` (every 6 hours) opens a renewal for every credential expiring
//!   within 90 days that has none open; `renewal-expiry` (every hour) moves open renewals whose
//!   credential has expired to `expired`.
//! - [`notifications`]: `notification-check` (daily) schedules expiry notifications;
//!   `notification-dispatch` (every 5 minutes) delivers them by the notification service's
//!   policy; `notification-retention` (weekly) drops old ones from the read model.
//! - [`audit`]: `audit-checkpoint` (hourly) signs the hash chain's head; `audit-verify` (daily)
//!   recomputes the chain and checks the checkpoints.
//! - [`sla`]: `sla-escalation` (every minute) escalates overdue open or claimed tasks, one level
//!   at a time by their queue's policy ([`crate::workqueue`]).
//!
//! Jobs find their candidates in read models (which may lag) and leave every decision to the
//! aggregates, so a stale candidate list can cost a skipped item until the next run, never a
//! duplicate or a wrong transition.

pub mod audit;
pub mod notifications;
pub mod renewals;
mod runner;
pub mod sla;

use std::sync::Arc;

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

pub use audit::{AuditCheckpoint, AuditVerify, AUDIT_CHECKPOINT, AUDIT_VERIFY};
pub use notifications::{
    CheckReport, DispatchReport, NotificationCheck, NotificationDispatch, NotificationRetention,
    NOTIFICATION_CHECK, NOTIFICATION_DISPATCH, NOTIFICATION_RETENTION,
};
pub use renewals::{
    ExpiryReport, RenewalExpiry, RenewalScan, ScanReport, RENEWAL_EXPIRY, RENEWAL_SCAN,
    SCAN_CONCURRENCY, SCAN_HORIZON_DAYS,
};
pub use runner::*;
pub use sla::{SlaEscalation, SLA_ESCALATION};

use crate::audit::Audit;
use crate::credentialing::Credentialing;
use crate::notifications::Notifications;
use crate::workqueue::WorkQueues;

/// Failures listed in a run's result (the count covers all of them).
const MAX_LISTED_FAILURES: usize = 20;

/// One item a run could not handle, with the error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobItemFailure {
    pub id: Uuid,
    pub error: String,
}

/// What the jobs work with.
#[derive(Debug, Clone)]
pub struct JobDeps {
    /// For the read-model queries that suggest candidates.
    pub pool: PgPool,
    pub credentialing: Arc<Credentialing>,
    /// Notifications with their channel and contact line.
    pub notifications: Arc<Notifications>,
    /// Work queues, for the SLA check.
    pub work: Arc<WorkQueues>,
    /// Checkpoints and verification of the log's hash chain.
    pub audit: Arc<Audit>,
}

/// Every job of the server.
pub fn all(deps: &JobDeps) -> Vec<Arc<dyn Job>> {
    vec![
        Arc::new(RenewalScan {
            credentialing: deps.credentialing.clone(),
            pool: deps.pool.clone(),
        }),
        Arc::new(RenewalExpiry {
            credentialing: deps.credentialing.clone(),
            pool: deps.pool.clone(),
        }),
        Arc::new(NotificationCheck { deps: deps.clone() }),
        Arc::new(NotificationDispatch { deps: deps.clone() }),
        Arc::new(NotificationRetention { deps: deps.clone() }),
        Arc::new(SlaEscalation {
            work: deps.work.clone(),
        }),
        Arc::new(AuditCheckpoint {
            audit: deps.audit.clone(),
        }),
        Arc::new(AuditVerify {
            audit: deps.audit.clone(),
        }),
    ]
}
