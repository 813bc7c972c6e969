//! The scheduled jobs this server runs, on the shared runner in `commands::jobs`.
//!
//! - `renewal-scan` (every 6 hours): opens a renewal for every credential expiring within 90
//!   days that has none open; reports opened, skipped and failed, and keeps going past failures.
//! - `renewal-expiry` (every hour): moves open renewals whose credential has expired to
//!   `expired`.
//! - `notification-check` (daily): schedules expiry notifications; `notification-dispatch`
//!   (every 5 minutes): sends them, retries with backoff, cancels ones whose expiry changed;
//!   `notification-retention` (weekly): drops old ones from the read model.
//!
//! - `sla-escalation` (every minute): escalates overdue open or claimed tasks, one level at a
//!   time by their queue's policy (`commands::workqueue`).
//!
//! The renewal jobs find their candidates in the read model (which may lag) and leave every decision to
//! the aggregates, so a stale candidate list can cost a skipped credential until the next run,
//! never a duplicate renewal or a wrong expiry.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use commands::credentialing::{Credentialing, CredentialingRefusal};
use commands::jobs::{Job, JobFailure, JobFuture};
use commands::{CommandError, CommandHandler, HandleError};
use domain::credential::{CredentialError, CredentialKind};
use domain::notification::{
    self, Notification, NotificationCommand, NotificationContent, NotificationError,
    NotificationEvent, TRIGGER_POINTS,
};
use domain::renewal::{Origin, RenewalCommand, RenewalError};
use eventstore::Metadata;
use futures_util::StreamExt;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::notify::{Channel, Delivery};

pub const RENEWAL_SCAN: &str = "renewal-scan";
pub const RENEWAL_EXPIRY: &str = "renewal-expiry";

/// How far ahead the scan looks.
pub const SCAN_HORIZON_DAYS: i64 = 90;

/// Initiations in flight at once during a scan: enough to overlap round trips, few enough to
/// leave the pool to the API.
pub const SCAN_CONCURRENCY: usize = 4;

/// Failures listed in a run's result (the count covers all of them).
const MAX_LISTED_FAILURES: usize = 20;

/// What a scan did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    /// Credentials expiring within the horizon that the scan looked at.
    pub considered: u64,
    pub opened: u64,
    /// Already had an open renewal, physician inactive, or expired or revoked meanwhile.
    pub skipped: u64,
    pub failed: u64,
    /// The first failures, with the credential and the error.
    pub failures: Vec<JobItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobItemFailure {
    pub id: Uuid,
    pub error: String,
}

/// What an expiry run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExpiryReport {
    pub considered: u64,
    pub expired: u64,
    /// Closed or not yet expired by the time the aggregate decided.
    pub skipped: u64,
    pub failed: u64,
    pub failures: Vec<JobItemFailure>,
}

enum ItemResult {
    Done,
    Skipped,
    Failed(JobItemFailure),
}

/// Opens renewals for credentials nearing expiry.
#[derive(Debug, Clone)]
pub struct RenewalScan {
    pub credentialing: Arc<Credentialing>,
    pub pool: PgPool,
}

impl RenewalScan {
    /// Runs the scan as of `now`.
    pub async fn scan(&self, now: DateTime<Utc>) -> Result<ScanReport, sqlx::Error> {
        let today = now.date_naive();
        let until = today + chrono::Duration::days(SCAN_HORIZON_DAYS);
        let candidates =
            projections::credentialing::scan_candidates(&self.pool, today, until).await?;
        let correlation = Uuid::new_v4();
        let mut report = ScanReport {
            considered: candidates.len() as u64,
            ..ScanReport::default()
        };
        let results = futures_util::stream::iter(candidates)
            .map(|c| async move {
                if c.open_renewal_id.is_some() || !c.physician_active {
                    return ItemResult::Skipped;
                }
                let metadata = Metadata {
                    correlation_id: correlation,
                    ..Metadata::by(format!("job:{RENEWAL_SCAN}"))
                };
                match self
                    .credentialing
                    .initiate_renewal(c.credential_id, Uuid::new_v4(), Origin::Scan, &metadata)
                    .await
                {
                    Ok(_) => ItemResult::Done,
                    Err(CommandError::Rejected(CredentialingRefusal::Credential(
                        CredentialError::RenewalAlreadyOpen { .. }
                        | CredentialError::AlreadyExpired { .. }
                        | CredentialError::Revoked,
                    ))) => ItemResult::Skipped,
                    Err(e) => ItemResult::Failed(JobItemFailure {
                        id: c.credential_id,
                        error: e.to_string(),
                    }),
                }
            })
            .buffer_unordered(SCAN_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        for result in results {
            match result {
                ItemResult::Done => report.opened += 1,
                ItemResult::Skipped => report.skipped += 1,
                ItemResult::Failed(f) => {
                    report.failed += 1;
                    tracing::warn!(credential_id = %f.id, error = %f.error, "renewal scan: initiation failed");
                    if report.failures.len() < MAX_LISTED_FAILURES {
                        report.failures.push(f);
                    }
                }
            }
        }
        Ok(report)
    }
}

impl Job for RenewalScan {
    fn name(&self) -> &'static str {
        RENEWAL_SCAN
    }

    fn description(&self) -> &'static str {
        "Opens a renewal for every credential expiring within 90 days that has none open"
    }

    fn default_interval(&self) -> Duration {
        Duration::from_secs(6 * 3600)
    }

    fn run(&self, now: DateTime<Utc>) -> JobFuture<'_> {
        Box::pin(async move {
            let report = self.scan(now).await.map_err(JobFailure::from)?;
            serde_json::to_value(report).map_err(JobFailure::from)
        })
    }
}

/// Expires open renewals whose credential expired first.
#[derive(Debug, Clone)]
pub struct RenewalExpiry {
    pub credentialing: Arc<Credentialing>,
    pub pool: PgPool,
}

impl RenewalExpiry {
    pub async fn expire(&self, now: DateTime<Utc>) -> Result<ExpiryReport, sqlx::Error> {
        let ids =
            projections::credentialing::open_renewals_past_deadline(&self.pool, now.date_naive())
                .await?;
        let mut report = ExpiryReport {
            considered: ids.len() as u64,
            ..ExpiryReport::default()
        };
        let metadata = Metadata::by(format!("job:{RENEWAL_EXPIRY}"));
        for id in ids {
            match self
                .credentialing
                .renewal_command(id, RenewalCommand::Expire, &metadata)
                .await
            {
                Ok(_) => report.expired += 1,
                Err(CommandError::Rejected(CredentialingRefusal::Renewal(
                    RenewalError::TransitionRefused { .. } | RenewalError::NotYetExpired { .. },
                ))) => report.skipped += 1,
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(renewal_id = %id, error = %e, "renewal expiry failed");
                    if report.failures.len() < MAX_LISTED_FAILURES {
                        report.failures.push(JobItemFailure {
                            id,
                            error: e.to_string(),
                        });
                    }
                }
            }
        }
        Ok(report)
    }
}

impl Job for RenewalExpiry {
    fn name(&self) -> &'static str {
        RENEWAL_EXPIRY
    }

    fn description(&self) -> &'static str {
        "Moves open renewals whose credential has expired to expired"
    }

    fn default_interval(&self) -> Duration {
        Duration::from_secs(3600)
    }

    fn run(&self, now: DateTime<Utc>) -> JobFuture<'_> {
        Box::pin(async move {
            let report = self.expire(now).await.map_err(JobFailure::from)?;
            serde_json::to_value(report).map_err(JobFailure::from)
        })
    }
}

/// What the jobs work with.
#[derive(Debug, Clone)]
pub struct JobDeps {
    pub pool: PgPool,
    pub credentialing: Arc<Credentialing>,
    pub notifications: Arc<CommandHandler<Notification>>,
    pub channel: Arc<Channel>,
    /// The contact line every notification ends with.
    pub contact: String,
    /// Work queues, for the SLA check.
    pub work: Arc<commands::workqueue::WorkQueues>,
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
    ]
}

pub const SLA_ESCALATION: &str = "sla-escalation";

/// Escalates overdue tasks. Two servers running it at once escalate each level once: every
/// task is decided under its row lock from its own events.
#[derive(Debug, Clone)]
pub struct SlaEscalation {
    pub work: Arc<commands::workqueue::WorkQueues>,
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

pub const NOTIFICATION_CHECK: &str = "notification-check";
pub const NOTIFICATION_DISPATCH: &str = "notification-dispatch";
pub const NOTIFICATION_RETENTION: &str = "notification-retention";

/// Notifications sent per dispatcher run; the rest wait for the next run.
const DISPATCH_BATCH: i64 = 500;
/// Deliveries in flight at once.
const DISPATCH_CONCURRENCY: usize = 4;
/// An attempt still "in flight" this long after it started was cut short (its process died).
fn attempt_timeout() -> chrono::Duration {
    chrono::Duration::minutes(10)
}

/// What a notification check did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Credentials expiring within 90 days that were looked at.
    pub considered: u64,
    pub scheduled: u64,
    /// The due trigger point was already notified.
    pub already_notified: u64,
    pub failed: u64,
    pub failures: Vec<JobItemFailure>,
}

/// The daily expiry check: schedules the notification of the most urgent passed trigger point
/// of every credential expiring within 90 days, once per (credential, expiry, trigger point).
#[derive(Debug, Clone)]
pub struct NotificationCheck {
    pub deps: JobDeps,
}

impl NotificationCheck {
    pub async fn check(&self, now: DateTime<Utc>) -> Result<CheckReport, sqlx::Error> {
        let today = now.date_naive();
        let until = today + chrono::Duration::days(i64::from(TRIGGER_POINTS[0]));
        let credentials =
            projections::notifications::expiring(&self.deps.pool, today, until).await?;
        let mut report = CheckReport {
            considered: credentials.len() as u64,
            ..CheckReport::default()
        };
        let metadata = Metadata::by(format!("job:{NOTIFICATION_CHECK}"));
        for c in credentials {
            let Some(trigger) = notification::due_trigger(c.expiry, today) else {
                continue;
            };
            let (Some(kind), Ok(jurisdiction)) = (
                CredentialKind::parse(&c.kind),
                domain::jurisdiction::Jurisdiction::parse(&c.jurisdiction),
            ) else {
                continue;
            };
            let severity = notification::Severity::for_trigger(trigger);
            let content = NotificationContent {
                physician_name: c.physician_name.clone(),
                credential_kind: kind,
                jurisdiction,
                expiry: c.expiry,
                days_remaining: (c.expiry - today).num_days(),
                required_action: notification::required_action(trigger).to_owned(),
                severity,
                contact: self.deps.contact.clone(),
            };
            let id = Notification::stream_id(c.credential_id, c.expiry, trigger);
            let command = NotificationCommand::Schedule {
                credential_id: Some(c.credential_id),
                physician_id: Some(c.physician_id),
                trigger_days: trigger,
                content,
            };
            match self
                .deps
                .notifications
                .handle(id, &command, &metadata)
                .await
            {
                Ok(_) => report.scheduled += 1,
                Err(HandleError::Rejected(
                    NotificationError::AlreadyScheduled | NotificationError::Archived,
                )) => report.already_notified += 1,
                Err(e) => {
                    report.failed += 1;
                    if report.failures.len() < MAX_LISTED_FAILURES {
                        report.failures.push(JobItemFailure {
                            id: c.credential_id,
                            error: e.to_string(),
                        });
                    }
                }
            }
        }
        Ok(report)
    }
}

impl Job for NotificationCheck {
    fn name(&self) -> &'static str {
        NOTIFICATION_CHECK
    }

    fn description(&self) -> &'static str {
        "Schedules expiry notifications at 90, 60, 30, 7 and 1 days before each credential's expiry"
    }

    fn default_interval(&self) -> Duration {
        Duration::from_secs(24 * 3600)
    }

    fn run(&self, now: DateTime<Utc>) -> JobFuture<'_> {
        Box::pin(async move {
            let report = self.check(now).await.map_err(JobFailure::from)?;
            serde_json::to_value(report).map_err(JobFailure::from)
        })
    }
}

/// What a dispatcher run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DispatchReport {
    pub delivered: u64,
    /// Attempts that failed (the notification is retried later or has failed for good).
    pub failed_attempts: u64,
    /// Pending notifications cancelled because their credential's expiry changed.
    pub cancelled: u64,
    /// Attempts found cut short by a dead process and recorded as failed.
    pub interrupted: u64,
    /// Due in the read model but no longer due by the time the aggregate decided.
    pub skipped: u64,
}

pub(crate) enum Sent {
    Delivered,
    Failed,
    Skipped,
}

/// Sends pending notifications that are due, records every attempt and outcome, and cancels
/// pending ones whose expiry has changed.
#[derive(Debug, Clone)]
pub struct NotificationDispatch {
    pub deps: JobDeps,
}

impl NotificationDispatch {
    pub async fn dispatch(&self, now: DateTime<Utc>) -> Result<DispatchReport, sqlx::Error> {
        let pool = &self.deps.pool;
        let handler = &self.deps.notifications;
        let metadata = Metadata::by(format!("job:{NOTIFICATION_DISPATCH}"));
        let mut report = DispatchReport::default();
        for (id, reason) in projections::notifications::stale(pool).await? {
            if handler
                .handle(id, &NotificationCommand::Cancel { reason }, &metadata)
                .await
                .is_ok()
            {
                report.cancelled += 1;
            }
        }
        let due =
            projections::notifications::due(pool, now, now - attempt_timeout(), DISPATCH_BATCH)
                .await?;
        let results = futures_util::stream::iter(due)
            .map(|(id, status)| {
                let metadata = metadata.clone();
                async move {
                    if status == "sending" {
                        // Cut short by a process that died mid-attempt: record it as failed.
                        let (_, state) = handler.load(id).await.map_err(|e| e.to_string())?;
                        let failure = NotificationCommand::RecordFailure {
                            attempt: state.attempts,
                            error: "the attempt was interrupted".into(),
                        };
                        return Ok::<_, String>(
                            match handler.handle(id, &failure, &metadata).await {
                                Ok(_) => (Sent::Failed, true),
                                Err(_) => (Sent::Skipped, false),
                            },
                        );
                    }
                    self.send_one(id, &metadata).await.map(|s| (s, false))
                }
            })
            .buffer_unordered(DISPATCH_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        for result in results {
            match result {
                Ok((Sent::Delivered, _)) => report.delivered += 1,
                Ok((Sent::Failed, true)) => report.interrupted += 1,
                Ok((Sent::Failed, false)) => report.failed_attempts += 1,
                Ok((Sent::Skipped, _)) => report.skipped += 1,
                Err(error) => {
                    tracing::warn!(%error, "dispatching a notification failed");
                    report.skipped += 1;
                }
            }
        }
        Ok(report)
    }

    /// Claims the next attempt (an event), sends, and records the outcome (another event).
    pub(crate) async fn send_one(&self, id: Uuid, metadata: &Metadata) -> Result<Sent, String> {
        let handler = &self.deps.notifications;
        let claimed = match handler
            .handle(id, &NotificationCommand::StartAttempt, metadata)
            .await
        {
            Ok(outcome) => outcome,
            // Not pending or not due any more (another dispatcher, or a stale read model).
            Err(HandleError::Rejected(_)) => return Ok(Sent::Skipped),
            Err(e) => return Err(e.to_string()),
        };
        let Some(NotificationEvent::DeliveryAttemptStarted { attempt, .. }) =
            claimed.events.first().cloned()
        else {
            return Ok(Sent::Skipped);
        };
        // Everything the delivery says is in the notification's own events.
        let (_, state) = handler.load(id).await.map_err(|e| e.to_string())?;
        let (Some(content), Some(message)) = (state.content, state.message) else {
            return Err(format!("notification {id} has no content"));
        };
        let delivery = Delivery {
            notification_id: id,
            attempt,
            severity: content.severity.as_str().to_owned(),
            subject: message.subject,
            body: message.body,
            physician_name: content.physician_name,
            credential_kind: content.credential_kind.as_str().to_owned(),
            jurisdiction: content.jurisdiction.to_string(),
            expiry: content.expiry,
            trigger_days: i32::try_from(state.trigger_days).unwrap_or(0),
        };
        let (command, sent) = match self.deps.channel.send(&delivery).await {
            Ok(detail) => (
                NotificationCommand::RecordDelivery { attempt, detail },
                Sent::Delivered,
            ),
            Err(error) => (
                NotificationCommand::RecordFailure { attempt, error },
                Sent::Failed,
            ),
        };
        handler
            .handle(id, &command, metadata)
            .await
            .map_err(|e| e.to_string())?;
        Ok(sent)
    }
}

impl Job for NotificationDispatch {
    fn name(&self) -> &'static str {
        NOTIFICATION_DISPATCH
    }

    fn description(&self) -> &'static str {
        "Sends due notifications through the configured channel, retrying failures with backoff"
    }

    fn default_interval(&self) -> Duration {
        Duration::from_secs(300)
    }

    fn run(&self, now: DateTime<Utc>) -> JobFuture<'_> {
        Box::pin(async move {
            let report = self.dispatch(now).await.map_err(JobFailure::from)?;
            serde_json::to_value(report).map_err(JobFailure::from)
        })
    }
}

/// Drops finished notifications past their retention from the read model (by an event, so a
/// rebuild agrees); the events themselves stay.
#[derive(Debug, Clone)]
pub struct NotificationRetention {
    pub deps: JobDeps,
}

impl Job for NotificationRetention {
    fn name(&self) -> &'static str {
        NOTIFICATION_RETENTION
    }

    fn description(&self) -> &'static str {
        "Archives notifications past retention (info 3 months, warning 6, critical 12, failed 30 days)"
    }

    fn default_interval(&self) -> Duration {
        Duration::from_secs(7 * 24 * 3600)
    }

    fn run(&self, now: DateTime<Utc>) -> JobFuture<'_> {
        Box::pin(async move {
            let ids = projections::notifications::past_retention(&self.deps.pool, now, 10_000)
                .await
                .map_err(JobFailure::from)?;
            let metadata = Metadata::by(format!("job:{NOTIFICATION_RETENTION}"));
            let mut archived = 0u64;
            for id in ids {
                if self
                    .deps
                    .notifications
                    .handle(id, &NotificationCommand::Archive, &metadata)
                    .await
                    .is_ok()
                {
                    archived += 1;
                }
            }
            Ok(serde_json::json!({ "archived": archived }))
        })
    }
}
