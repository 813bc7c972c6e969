//! Notifications and their delivery policy.
//!
//! - [`Notifications`] decides every notification command (schedule, retry, cancel, archive) and
//!   delivers one notification: it claims the next attempt (an event), sends through the
//!   channel, and records the outcome (another event). Retries, backoff and giving up are the
//!   aggregate's rules ([`domain::notification`]); the scheduled jobs that drive them are in
//!   [`crate::jobs::notifications`].
//! - [`channel`]: the [`NotificationChannel`] port, the [`Delivery`] it carries, the log sink.
//! - [`webhook`]: the signed-webhook adapter and the channel configuration.
//!
//! Every failure is a [`NotificationsError`], a [`CommandError`] whose refusal states its kind and
//! stable code ([`Refusal`]).

pub mod channel;
pub mod webhook;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::notification::{
    Notification, NotificationCommand, NotificationContent, NotificationError, NotificationEvent,
    Severity,
};
use domain::refusal::{ErrorKind, Refusal};
use eventstore::{EventStore, Metadata};
use uuid::Uuid;

pub use channel::{Delivery, LogChannel, NotificationChannel};
pub use webhook::{
    channel_from_config, signature, ChannelConfigError, Webhook, IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
};

use crate::{Clock, CommandError, CommandHandler, CommandOutcome};

/// Why a notification command was refused. The store's failures, the codec's and too many
/// conflicts are [`CommandError`]'s, as for every service.
#[derive(Debug, thiserror::Error)]
pub enum NotificationRefusal {
    /// The notification's state refuses the command.
    #[error(transparent)]
    Notification(#[from] NotificationError),
    /// Something that cannot happen did (a claimed notification without content).
    #[error("notification invariant broken: {0}")]
    Invariant(String),
}

/// Why a notification command failed.
pub type NotificationsError = CommandError<NotificationRefusal>;

impl From<NotificationError> for NotificationsError {
    fn from(e: NotificationError) -> Self {
        CommandError::Rejected(e.into())
    }
}

impl From<CommandError<NotificationError>> for NotificationsError {
    fn from(e: CommandError<NotificationError>) -> Self {
        e.map_rejected(NotificationRefusal::Notification)
    }
}

impl Refusal for NotificationRefusal {
    fn kind(&self) -> ErrorKind {
        match self {
            NotificationRefusal::Notification(e) => e.kind(),
            NotificationRefusal::Invariant(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            NotificationRefusal::Notification(e) => e.code(),
            NotificationRefusal::Invariant(_) => "internal",
        }
    }
}

/// How one delivery went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    /// The attempt failed; the notification is retried later or has failed for good.
    Failed,
    /// Not pending or not due any more (another dispatcher got there, or a stale read model).
    Skipped,
}

/// A test notification's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestSent {
    pub notification_id: Uuid,
    /// The channel it went through.
    pub channel: &'static str,
    pub delivered: bool,
}

/// Notifications, the channel they leave through, and the contact line they end with.
#[derive(Debug, Clone)]
pub struct Notifications {
    handler: Arc<CommandHandler<Notification>>,
    channel: Arc<dyn NotificationChannel>,
    contact: String,
    clock: Arc<dyn Clock>,
}

impl Notifications {
    pub fn new(
        store: EventStore,
        clock: Arc<dyn Clock>,
        channel: Arc<dyn NotificationChannel>,
        contact: String,
    ) -> Self {
        Self {
            handler: Arc::new(CommandHandler::new(store, clock.clone())),
            channel,
            contact,
            clock,
        }
    }

    /// The command handler of notification streams.
    pub fn handler(&self) -> &CommandHandler<Notification> {
        &self.handler
    }

    pub fn channel(&self) -> &Arc<dyn NotificationChannel> {
        &self.channel
    }

    /// The contact line every notification ends with.
    pub fn contact(&self) -> &str {
        &self.contact
    }

    /// Runs one notification command.
    pub async fn command(
        &self,
        id: Uuid,
        command: &NotificationCommand,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<NotificationEvent>, NotificationsError> {
        Ok(self.handler.handle(id, command, metadata).await?)
    }

    /// Makes a failed notification pending again, with one more attempt.
    pub async fn retry(
        &self,
        id: Uuid,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<NotificationEvent>, NotificationsError> {
        self.command(id, &NotificationCommand::Retry, metadata)
            .await
    }

    /// Schedules a test notification (about no credential) and sends it once, now.
    pub async fn send_test(&self, metadata: &Metadata) -> Result<TestSent, NotificationsError> {
        let now: DateTime<Utc> = self.clock.now();
        let id = Uuid::new_v4();
        let content = NotificationContent {
            physician_name: "Test Physician".into(),
            credential_kind: domain::credential::CredentialKind::License,
            jurisdiction: domain::jurisdiction::Jurisdiction::parse("TX").map_err(|e| {
                CommandError::Rejected(NotificationRefusal::Invariant(e.to_string()))
            })?,
            expiry: now.date_naive(),
            days_remaining: 0,
            required_action: "None: this is a test of the notification channel".into(),
            severity: Severity::Info,
            contact: self.contact.clone(),
        };
        self.command(
            id,
            &NotificationCommand::Schedule {
                credential_id: None,
                physician_id: None,
                trigger_days: 0,
                content,
            },
            metadata,
        )
        .await?;
        let sent = self.deliver(id, metadata).await?;
        Ok(TestSent {
            notification_id: id,
            channel: self.channel.name(),
            delivered: sent == Sent::Delivered,
        })
    }

    /// Records an attempt that a process which died mid-send left "in flight" as failed.
    pub async fn record_interrupted(
        &self,
        id: Uuid,
        metadata: &Metadata,
    ) -> Result<Sent, NotificationsError> {
        let (_, state) = self.handler.load(id).await?;
        let failure = NotificationCommand::RecordFailure {
            attempt: state.attempts,
            error: "the attempt was interrupted".into(),
        };
        Ok(match self.handler.handle(id, &failure, metadata).await {
            Ok(_) => Sent::Failed,
            Err(_) => Sent::Skipped,
        })
    }

    /// The delivery policy for one notification: claims the next attempt (an event), sends,
    /// and records the outcome (another event). Two dispatchers racing for the same attempt
    /// cannot both claim it, so a receiver gets each attempt once.
    pub async fn deliver(&self, id: Uuid, metadata: &Metadata) -> Result<Sent, NotificationsError> {
        let claimed = match self
            .handler
            .handle(id, &NotificationCommand::StartAttempt, metadata)
            .await
        {
            Ok(outcome) => outcome,
            Err(CommandError::Rejected(_)) => return Ok(Sent::Skipped),
            Err(e) => return Err(e.into()),
        };
        let Some(NotificationEvent::DeliveryAttemptStarted { attempt, .. }) =
            claimed.events.first().cloned()
        else {
            return Ok(Sent::Skipped);
        };
        // Everything the delivery says is in the notification's own events.
        let (_, state) = self.handler.load(id).await?;
        let (Some(content), Some(message)) = (state.content, state.message) else {
            return Err(CommandError::Rejected(NotificationRefusal::Invariant(
                format!("notification {id} has no content"),
            )));
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
        let (command, sent) = match self.channel.send(&delivery).await {
            Ok(detail) => (
                NotificationCommand::RecordDelivery { attempt, detail },
                Sent::Delivered,
            ),
            Err(error) => (
                NotificationCommand::RecordFailure { attempt, error },
                Sent::Failed,
            ),
        };
        self.handler.handle(id, &command, metadata).await?;
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notifications_command_that_gives_up_after_too_many_conflicts_is_a_concurrency_conflict() {
        let e = NotificationsError::from(CommandError::<NotificationError>::TooManyConflicts {
            attempts: 8,
        });
        assert_eq!(
            (e.kind(), e.code()),
            (ErrorKind::Conflict, "concurrency_conflict")
        );
    }

    #[test]
    fn a_refusal_other_than_not_found_is_about_the_notifications_state() {
        let missing = NotificationsError::from(NotificationError::NotFound);
        let archived = NotificationsError::from(NotificationError::Archived);
        assert_eq!(missing.code(), "notification_not_found");
        assert_eq!(
            (archived.kind(), archived.code()),
            (ErrorKind::Conflict, "notification_state")
        );
    }
}
