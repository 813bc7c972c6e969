//! The port a notification leaves through: [`NotificationChannel`], what it carries
//! ([`Delivery`]), and the log sink, the development default. The signed webhook is the other
//! adapter ([`super::webhook`]).
//!
//! A channel only sends and says how it went; the notification service records every attempt
//! and its outcome as events.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use uuid::Uuid;

/// What a receiver gets: everything the notification says, from its own events.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub notification_id: Uuid,
    pub attempt: u32,
    pub severity: String,
    pub subject: String,
    pub body: String,
    pub physician_name: String,
    pub credential_kind: String,
    pub jurisdiction: String,
    pub expiry: chrono::NaiveDate,
    pub trigger_days: i32,
}

/// A send in progress: `Ok(detail)` when the receiver accepted it, `Err(reason)` otherwise.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

/// Where notifications go. A boxed future rather than an `async fn`, so that the service can
/// hold any channel as `Arc<dyn NotificationChannel>`.
pub trait NotificationChannel: Send + Sync + std::fmt::Debug {
    /// Shown to operators (`POST /notifications/test` answers with it).
    fn name(&self) -> &'static str;

    /// Sends one delivery. A failure is an answer, not an error: the caller records it as a
    /// failed attempt and retries later by the notification's policy.
    fn send<'a>(&'a self, delivery: &'a Delivery) -> SendFuture<'a>;
}

/// Writes each notification to the log (development).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogChannel;

impl NotificationChannel for LogChannel {
    fn name(&self) -> &'static str {
        "log"
    }

    fn send<'a>(&'a self, delivery: &'a Delivery) -> SendFuture<'a> {
        Box::pin(async move {
            tracing::info!(
                notification_id = %delivery.notification_id,
                severity = %delivery.severity,
                subject = %delivery.subject,
                "notification (log channel)"
            );
            Ok("written to the log".into())
        })
    }
}
