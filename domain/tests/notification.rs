//! Expiry notifications as specifications: given past events, when a scheduling or delivery
//! command is decided, then these events (or this refusal). The trigger points, severities and
//! message template, pure functions, are tested beside their definitions.

use chrono::{DateTime, NaiveDate, Utc};
use domain::credential::CredentialKind;
use domain::jurisdiction::Jurisdiction;
use domain::notification::{
    render, required_action, Notification, NotificationCommand, NotificationContent,
    NotificationError, NotificationEvent, NotificationStatus, Severity,
};
use domain::testing::Spec;
use uuid::Uuid;

const CREDENTIAL: Uuid = Uuid::from_u128(0xC0);
const PHYSICIAN: Uuid = Uuid::from_u128(0xD0);

/// `h` hours after a fixed moment.
fn at(h: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_800_000_000 + h * 3600, 0).expect("a valid time")
}

fn content() -> NotificationContent {
    NotificationContent {
        physician_name: "Dr. Ada Test".into(),
        credential_kind: CredentialKind::Dea,
        jurisdiction: Jurisdiction::parse("TX").expect("a US state code"),
        expiry: NaiveDate::from_ymd_opt(2027, 1, 31).expect("a valid date"),
        days_remaining: 30,
        required_action: required_action(30).into(),
        severity: Severity::for_trigger(30),
        contact: "Call the credentialing team at 555-0100.".into(),
    }
}

fn schedule() -> NotificationCommand {
    NotificationCommand::Schedule {
        credential_id: Some(CREDENTIAL),
        physician_id: Some(PHYSICIAN),
        trigger_days: 30,
        content: content(),
    }
}

fn scheduled() -> NotificationEvent {
    NotificationEvent::NotificationScheduled {
        credential_id: Some(CREDENTIAL),
        physician_id: Some(PHYSICIAN),
        trigger_days: 30,
        severity: Severity::Warning,
        content: content(),
        message: render(&content()),
        due_at: at(0),
    }
}

fn attempt_started(attempt: u32, h: i64) -> NotificationEvent {
    NotificationEvent::DeliveryAttemptStarted { attempt, at: at(h) }
}

#[test]
fn a_notification_is_scheduled_with_its_rendered_message_and_due_at_once() {
    Notification::given([])
        .when(schedule(), at(0))
        .then([scheduled()]);
}

#[test]
fn a_notification_is_scheduled_once() {
    Notification::given([scheduled()])
        .when(schedule(), at(1))
        .then_err(NotificationError::AlreadyScheduled);
}

#[test]
fn commands_on_a_notification_that_was_never_scheduled_find_nothing() {
    for command in [
        NotificationCommand::StartAttempt,
        NotificationCommand::Retry,
        NotificationCommand::Archive,
    ] {
        Notification::given([])
            .when(command, at(0))
            .then_err(NotificationError::NotFound);
    }
}

#[test]
fn a_due_notification_starts_its_first_attempt_and_records_the_delivery() {
    Notification::given([scheduled()])
        .when(NotificationCommand::StartAttempt, at(0))
        .then([attempt_started(1, 0)])
        .and_when(
            NotificationCommand::RecordDelivery {
                attempt: 1,
                detail: "250 OK".into(),
            },
            at(0),
        )
        .then([NotificationEvent::NotificationDelivered {
            attempt: 1,
            detail: "250 OK".into(),
            at: at(0),
        }]);
}

#[test]
fn only_the_attempt_in_progress_can_be_recorded() {
    Notification::given([scheduled(), attempt_started(1, 0)])
        .when(
            NotificationCommand::RecordDelivery {
                attempt: 2,
                detail: "250 OK".into(),
            },
            at(0),
        )
        .then_err(NotificationError::NotTheCurrentAttempt { attempt: 2 });
}

#[test]
fn a_failed_first_attempt_is_retried_four_hours_later_and_not_before() {
    let then = Notification::given([scheduled(), attempt_started(1, 0)])
        .when(
            NotificationCommand::RecordFailure {
                attempt: 1,
                error: "500".into(),
            },
            at(0),
        )
        .then([NotificationEvent::DeliveryAttemptFailed {
            attempt: 1,
            error: "500".into(),
            at: at(0),
            next_attempt_at: Some(at(4)),
        }]);
    let waiting = then.into_given();
    waiting
        .when(NotificationCommand::StartAttempt, at(3))
        .then_err(NotificationError::NotDue { due: at(4) });
    waiting
        .when(NotificationCommand::StartAttempt, at(4))
        .then([attempt_started(2, 4)]);
}

#[test]
fn a_pending_notification_can_be_cancelled_and_then_archived() {
    Notification::given([scheduled()])
        .when(
            NotificationCommand::Cancel {
                reason: "credential renewed".into(),
            },
            at(1),
        )
        .then([NotificationEvent::NotificationCancelled {
            reason: "credential renewed".into(),
            at: at(1),
        }])
        .and_when(NotificationCommand::Archive, at(2))
        .then([NotificationEvent::NotificationArchived { at: at(2) }]);
}

#[test]
fn a_pending_notification_is_still_active_and_cannot_be_archived_or_retried() {
    let pending = Notification::given([scheduled()]);
    pending
        .when(NotificationCommand::Archive, at(1))
        .then_err(NotificationError::StillActive {
            status: NotificationStatus::Pending,
        });
    pending
        .when(NotificationCommand::Retry, at(1))
        .then_err(NotificationError::NotFailed {
            status: NotificationStatus::Pending,
        });
}
