//! The notification jobs: `notification-check` (daily) schedules the notification of the most
//! urgent passed trigger point of every credential expiring within 90 days;
//! `notification-dispatch` (every 5 minutes) delivers due ones by the notification service's
//! policy ([`crate::notifications::Notifications::deliver`]), records attempts cut short by a
//! dead process, and cancels pending ones whose expiry changed; `notification-retention`
//! (weekly) archives old ones, which drops them from the read model.

use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::credential::CredentialKind;
use domain::notification::{
    self, Notification, NotificationCommand, NotificationContent, NotificationError, TRIGGER_POINTS,
};
use eventstore::Metadata;
use futures_util::StreamExt;
use serde::Serialize;

use super::{Job, JobDeps, JobFailure, JobFuture, JobItemFailure, MAX_LISTED_FAILURES};
use crate::notifications::{NotificationRefusal, Sent};
use crate::CommandError;

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
                contact: self.deps.notifications.contact().to_owned(),
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
                .command(id, &command, &metadata)
                .await
            {
                Ok(_) => report.scheduled += 1,
                Err(CommandError::Rejected(NotificationRefusal::Notification(
                    NotificationError::AlreadyScheduled | NotificationError::Archived,
                ))) => report.already_notified += 1,
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

/// Delivers pending notifications that are due (every attempt and outcome an event), and
/// cancels pending ones whose expiry has changed.
#[derive(Debug, Clone)]
pub struct NotificationDispatch {
    pub deps: JobDeps,
}

impl NotificationDispatch {
    pub async fn dispatch(&self, now: DateTime<Utc>) -> Result<DispatchReport, sqlx::Error> {
        let pool = &self.deps.pool;
        let notifications = &self.deps.notifications;
        let metadata = Metadata::by(format!("job:{NOTIFICATION_DISPATCH}"));
        let mut report = DispatchReport::default();
        for (id, reason) in projections::notifications::stale(pool).await? {
            if notifications
                .command(id, &NotificationCommand::Cancel { reason }, &metadata)
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
                        return notifications
                            .record_interrupted(id, &metadata)
                            .await
                            .map(|sent| (sent, true));
                    }
                    notifications
                        .deliver(id, &metadata)
                        .await
                        .map(|sent| (sent, false))
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
                    .command(id, &NotificationCommand::Archive, &metadata)
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
