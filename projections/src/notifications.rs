//! The notifications read model: every notification with its status and next attempt (the
//! outbox is its pending rows), and one row per delivery attempt; plus the queries the
//! notification jobs and routes run.
//!
//! Retention (DOMAIN.md: info 3 months, warning 6, critical 12, failed delivery logs 30 days)
//! is applied by events (`NotificationArchived`), never by deleting rows behind the projection's
//! back, so a rebuild still equals the live model.

use chrono::{DateTime, NaiveDate, Utc};
use domain::notification::{Notification, NotificationEvent};
use eventstore::RecordedEvent;
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::projection::{decode, ApplyError, Projection};

#[derive(Debug, Clone, Copy, Default)]
pub struct NotificationsModel;

const CREATE_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS notifications (
    notification_id  uuid PRIMARY KEY,
    credential_id    uuid,
    physician_id     uuid,
    physician_name   text NOT NULL,
    credential_kind  text NOT NULL,
    jurisdiction     text NOT NULL,
    expiry           date NOT NULL,
    trigger_days     integer NOT NULL,
    severity         text NOT NULL,
    status           text NOT NULL,
    subject          text NOT NULL,
    body             text NOT NULL,
    attempts         integer NOT NULL,
    scheduled_at     timestamptz NOT NULL,
    next_attempt_at  timestamptz,
    first_attempt_at timestamptz,
    delivered_at     timestamptz,
    failed_at        timestamptz,
    cancelled_at     timestamptz,
    last_error       text,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_outbox ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS notifications_by_credential ON notifications (credential_id);
COMMENT ON TABLE notifications IS 'One row per expiry notification: content, status and delivery progress. Pending rows are the outbox.';
COMMENT ON COLUMN notifications.notification_id IS 'The notification stream id (UUID v5 of credential, expiry and trigger point).';
COMMENT ON COLUMN notifications.credential_id IS 'The credential it is about; null for a test notification.';
COMMENT ON COLUMN notifications.physician_id IS 'The physician it is about; null for a test notification.';
COMMENT ON COLUMN notifications.physician_name IS 'Physician name as written in the message.';
COMMENT ON COLUMN notifications.credential_kind IS 'license, dea or csr.';
COMMENT ON COLUMN notifications.jurisdiction IS 'US state of the credential.';
COMMENT ON COLUMN notifications.expiry IS 'The expiry date the notification is about.';
COMMENT ON COLUMN notifications.trigger_days IS 'Trigger point: 90, 60, 30, 7 or 1 days before expiry (0 for a test).';
COMMENT ON COLUMN notifications.severity IS 'info, warning or critical.';
COMMENT ON COLUMN notifications.status IS 'pending, sending, delivered, failed (for good) or cancelled.';
COMMENT ON COLUMN notifications.subject IS 'Rendered subject line.';
COMMENT ON COLUMN notifications.body IS 'Rendered message.';
COMMENT ON COLUMN notifications.attempts IS 'Delivery attempts started.';
COMMENT ON COLUMN notifications.scheduled_at IS 'When the daily check scheduled it.';
COMMENT ON COLUMN notifications.next_attempt_at IS 'When the dispatcher next tries it; null unless pending.';
COMMENT ON COLUMN notifications.first_attempt_at IS 'When delivery was first attempted.';
COMMENT ON COLUMN notifications.delivered_at IS 'When a receiver accepted it.';
COMMENT ON COLUMN notifications.failed_at IS 'When it failed for good.';
COMMENT ON COLUMN notifications.cancelled_at IS 'When it was cancelled (its expiry changed).';
COMMENT ON COLUMN notifications.last_error IS 'The latest failed attempt''s error, or why it was cancelled or failed.';
COMMENT ON COLUMN notifications.updated_at IS 'When the latest notification event was recorded.';

CREATE TABLE IF NOT EXISTS notification_attempts (
    notification_id uuid NOT NULL,
    attempt         integer NOT NULL,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    outcome         text NOT NULL,
    detail          text,
    PRIMARY KEY (notification_id, attempt)
);
COMMENT ON TABLE notification_attempts IS 'One row per delivery attempt: when, and how it ended (the delivery history).';
COMMENT ON COLUMN notification_attempts.notification_id IS 'The notification.';
COMMENT ON COLUMN notification_attempts.attempt IS 'Attempt number, from 1.';
COMMENT ON COLUMN notification_attempts.started_at IS 'When the dispatcher started it.';
COMMENT ON COLUMN notification_attempts.finished_at IS 'When its outcome was recorded.';
COMMENT ON COLUMN notification_attempts.outcome IS 'in_flight, delivered or failed.';
COMMENT ON COLUMN notification_attempts.detail IS 'The receiver''s answer or the error.';
"#;

const EVENT_TYPES: &[&str] = &[
    "NotificationScheduled",
    "DeliveryAttemptStarted",
    "NotificationDelivered",
    "DeliveryAttemptFailed",
    "NotificationFailed",
    "NotificationCancelled",
    "NotificationRetryRequested",
    "NotificationArchived",
];

impl Projection for NotificationsModel {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn event_types(&self) -> &'static [&'static str] {
        EVENT_TYPES
    }

    fn tables(&self) -> &'static [&'static str] {
        &["notifications", "notification_attempts"]
    }

    fn create_sql(&self) -> &'static str {
        CREATE_SQL
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            for e in events {
                let event = decode::<Notification>(e)?;
                apply_one(conn, e, &event).await?;
            }
            Ok(())
        })
    }
}

async fn apply_one(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    event: &NotificationEvent,
) -> Result<(), sqlx::Error> {
    use NotificationEvent as E;
    let id = e.stream_id;
    let at = e.recorded_at;
    match event {
        E::NotificationScheduled {
            credential_id,
            physician_id,
            trigger_days,
            severity,
            content,
            message,
            due_at,
        } => {
            sqlx::query(
                "INSERT INTO notifications (notification_id, credential_id, physician_id, physician_name, \
                   credential_kind, jurisdiction, expiry, trigger_days, severity, status, subject, body, \
                   attempts, scheduled_at, next_attempt_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, 0, $12, $12, $13)",
            )
            .bind(id)
            .bind(*credential_id)
            .bind(*physician_id)
            .bind(&content.physician_name)
            .bind(content.credential_kind.as_str())
            .bind(content.jurisdiction.as_str())
            .bind(content.expiry)
            .bind(i32::try_from(*trigger_days).unwrap_or(i32::MAX))
            .bind(severity.as_str())
            .bind(&message.subject)
            .bind(&message.body)
            .bind(*due_at)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        E::DeliveryAttemptStarted { attempt, at: when } => {
            let attempt = i32::try_from(*attempt).unwrap_or(i32::MAX);
            sqlx::query(
                "UPDATE notifications SET status = 'sending', attempts = $2, next_attempt_at = NULL, \
                   first_attempt_at = coalesce(first_attempt_at, $3), updated_at = $4 \
                 WHERE notification_id = $1",
            )
            .bind(id)
            .bind(attempt)
            .bind(*when)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO notification_attempts (notification_id, attempt, started_at, outcome) \
                 VALUES ($1, $2, $3, 'in_flight')",
            )
            .bind(id)
            .bind(attempt)
            .bind(*when)
            .execute(&mut *conn)
            .await?;
        }
        E::NotificationDelivered {
            attempt,
            detail,
            at: when,
        } => {
            sqlx::query(
                "UPDATE notifications SET status = 'delivered', delivered_at = $2, updated_at = $3 \
                 WHERE notification_id = $1",
            )
            .bind(id)
            .bind(*when)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            finish_attempt(conn, id, *attempt, *when, "delivered", detail).await?;
        }
        E::DeliveryAttemptFailed {
            attempt,
            error,
            at: when,
            next_attempt_at,
        } => {
            sqlx::query(
                "UPDATE notifications SET status = 'pending', next_attempt_at = $2, last_error = $3, updated_at = $4 \
                 WHERE notification_id = $1",
            )
            .bind(id)
            .bind(*next_attempt_at)
            .bind(error)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            finish_attempt(conn, id, *attempt, *when, "failed", error).await?;
        }
        E::NotificationFailed { reason, at: when } => {
            sqlx::query(
                "UPDATE notifications SET status = 'failed', failed_at = $2, next_attempt_at = NULL, \
                   last_error = coalesce(last_error || '; ', '') || $3, updated_at = $4 \
                 WHERE notification_id = $1",
            )
            .bind(id)
            .bind(*when)
            .bind(reason)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        E::NotificationCancelled { reason, at: when } => {
            sqlx::query(
                "UPDATE notifications SET status = 'cancelled', cancelled_at = $2, next_attempt_at = NULL, \
                   last_error = $3, updated_at = $4 WHERE notification_id = $1",
            )
            .bind(id)
            .bind(*when)
            .bind(reason)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        E::NotificationRetryRequested { at: when } => {
            sqlx::query(
                "UPDATE notifications SET status = 'pending', next_attempt_at = $2, failed_at = NULL, updated_at = $3 \
                 WHERE notification_id = $1",
            )
            .bind(id)
            .bind(*when)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        E::NotificationArchived { .. } => {
            sqlx::query("DELETE FROM notification_attempts WHERE notification_id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM notifications WHERE notification_id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

async fn finish_attempt(
    conn: &mut PgConnection,
    id: Uuid,
    attempt: u32,
    when: DateTime<Utc>,
    outcome: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE notification_attempts SET finished_at = $3, outcome = $4, detail = $5 \
         WHERE notification_id = $1 AND attempt = $2",
    )
    .bind(id)
    .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
    .bind(when)
    .bind(outcome)
    .bind(detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Queries (on `read_models.*`).

/// A row of `notifications`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct NotificationRow {
    pub notification_id: Uuid,
    pub credential_id: Option<Uuid>,
    pub physician_id: Option<Uuid>,
    pub physician_name: String,
    pub credential_kind: String,
    pub jurisdiction: String,
    pub expiry: NaiveDate,
    pub trigger_days: i32,
    pub severity: String,
    pub status: String,
    pub subject: String,
    pub body: String,
    pub attempts: i32,
    pub scheduled_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "notification_id, credential_id, physician_id, physician_name, credential_kind, \
    jurisdiction, expiry, trigger_days, severity, status, subject, body, attempts, scheduled_at, \
    next_attempt_at, first_attempt_at, delivered_at, failed_at, cancelled_at, last_error, updated_at";

/// Filters of the notifications list.
#[derive(Debug, Clone, Default)]
pub struct NotificationQuery {
    pub status: Option<String>,
    pub severity: Option<String>,
    pub physician_id: Option<Uuid>,
    pub credential_id: Option<Uuid>,
    /// Scheduled on or after this date.
    pub from: Option<NaiveDate>,
    /// Scheduled before this date.
    pub to: Option<NaiveDate>,
    /// Only pending ones, ordered by next attempt (the outbox).
    pub outbox: bool,
    pub limit: i64,
    pub offset: i64,
}

pub async fn list(
    pool: &PgPool,
    q: &NotificationQuery,
) -> Result<(Vec<NotificationRow>, i64), sqlx::Error> {
    let filter = "($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR severity = $2) \
        AND ($3::uuid IS NULL OR physician_id = $3) AND ($4::uuid IS NULL OR credential_id = $4) \
        AND ($5::date IS NULL OR scheduled_at >= $5::date) AND ($6::date IS NULL OR scheduled_at < $6::date) \
        AND (NOT $7 OR status = 'pending')";
    let order = if q.outbox {
        "next_attempt_at, notification_id"
    } else {
        "scheduled_at DESC, notification_id"
    };
    let rows = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM read_models.notifications WHERE {filter} ORDER BY {order} LIMIT $8 OFFSET $9"
    ))
    .bind(&q.status)
    .bind(&q.severity)
    .bind(q.physician_id)
    .bind(q.credential_id)
    .bind(q.from)
    .bind(q.to)
    .bind(q.outbox)
    .bind(q.limit.clamp(1, 500))
    .bind(q.offset.max(0))
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM read_models.notifications WHERE {filter}"
    ))
    .bind(&q.status)
    .bind(&q.severity)
    .bind(q.physician_id)
    .bind(q.credential_id)
    .bind(q.from)
    .bind(q.to)
    .bind(q.outbox)
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<NotificationRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM read_models.notifications WHERE notification_id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// One delivery attempt.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AttemptRow {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub detail: Option<String>,
}

pub async fn attempts(pool: &PgPool, id: Uuid) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT attempt, started_at, finished_at, outcome, detail \
         FROM read_models.notification_attempts WHERE notification_id = $1 ORDER BY attempt",
    )
    .bind(id)
    .fetch_all(pool)
    .await
}

/// Pending notifications due by `now`, and ones stuck in `sending` since before `stuck_before`
/// (the process sending them died).
pub async fn due(
    pool: &PgPool,
    now: DateTime<Utc>,
    stuck_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT n.notification_id, n.status FROM read_models.notifications n \
         WHERE (n.status = 'pending' AND n.next_attempt_at <= $1) \
            OR (n.status = 'sending' AND EXISTS (SELECT 1 FROM read_models.notification_attempts a \
                 WHERE a.notification_id = n.notification_id AND a.outcome = 'in_flight' AND a.started_at < $2)) \
         ORDER BY n.next_attempt_at NULLS FIRST, n.notification_id LIMIT $3",
    )
    .bind(now)
    .bind(stuck_before)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Pending notifications whose credential now has another expiry (renewed or corrected) or
/// was revoked.
pub async fn stale(pool: &PgPool) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT n.notification_id, CASE WHEN c.revoked THEN 'the credential was revoked' \
                ELSE 'the credential''s expiry changed to ' || c.expiry::text END \
         FROM read_models.notifications n JOIN read_models.credentials c ON c.credential_id = n.credential_id \
         WHERE n.status = 'pending' AND (c.expiry <> n.expiry OR c.revoked) \
         ORDER BY n.notification_id",
    )
    .fetch_all(pool)
    .await
}

/// What the daily check needs per credential.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ExpiringCredential {
    pub credential_id: Uuid,
    pub physician_id: Uuid,
    pub physician_name: String,
    pub kind: String,
    pub jurisdiction: String,
    pub expiry: NaiveDate,
}

/// Credentials (not revoked, physician active) expiring from `today` to `until`.
pub async fn expiring(
    pool: &PgPool,
    today: NaiveDate,
    until: NaiveDate,
) -> Result<Vec<ExpiringCredential>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.credential_id, c.physician_id, p.name AS physician_name, c.kind, c.jurisdiction, c.expiry \
         FROM read_models.credentials c JOIN read_models.physicians p ON p.physician_id = c.physician_id \
         WHERE NOT c.revoked AND p.active AND c.expiry BETWEEN $1 AND $2 \
         ORDER BY c.expiry, c.credential_id",
    )
    .bind(today)
    .bind(until)
    .fetch_all(pool)
    .await
}

/// Finished notifications past their retention (info 3 months, warning 6, critical 12, from when
/// they were scheduled), and failed ones whose delivery log is older than 30 days.
pub async fn past_retention(
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT notification_id FROM read_models.notifications \
         WHERE status IN ('delivered', 'failed', 'cancelled') AND ( \
               (severity = 'info' AND scheduled_at < $1 - interval '3 months') \
            OR (severity = 'warning' AND scheduled_at < $1 - interval '6 months') \
            OR (severity = 'critical' AND scheduled_at < $1 - interval '1 year') \
            OR (status = 'failed' AND failed_at < $1 - interval '30 days')) \
         ORDER BY notification_id LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await
}
