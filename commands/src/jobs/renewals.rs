//! The renewal jobs: `renewal-scan` opens a renewal for every credential expiring within 90
//! days that has none open, reporting opened, skipped and failed and keeping going past
//! failures; `renewal-expiry` moves open renewals whose credential has expired to `expired`.
//!
//! Both find their candidates in the credentialing read model (which may lag) and leave every
//! decision to the aggregates, so a stale candidate list can cost a skipped credential until the
//! next run, never a duplicate renewal or a wrong expiry.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::credential::CredentialError;
use domain::renewal::{Origin, RenewalCommand, RenewalError};
use eventstore::Metadata;
use futures_util::StreamExt;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Job, JobFailure, JobFuture, JobItemFailure, MAX_LISTED_FAILURES};
use crate::credentialing::{Credentialing, CredentialingRefusal};
use crate::CommandError;

pub const RENEWAL_SCAN: &str = "renewal-scan";
pub const RENEWAL_EXPIRY: &str = "renewal-expiry";

/// How far ahead the scan looks.
pub const SCAN_HORIZON_DAYS: i64 = 90;

/// Initiations in flight at once during a scan: enough to overlap round trips, few enough to
/// leave the pool to the API.
pub const SCAN_CONCURRENCY: usize = 4;

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
