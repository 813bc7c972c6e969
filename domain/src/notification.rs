//! Expiry notifications: which trigger point is due, what the message says, and the delivery
//! lifecycle with its retries.
//!
//! ```text
//! pending ──attempt──▶ sending ──▶ delivered
//!    ▲                    └──────▶ pending (retry after backoff) | failed (for good)
//!    └── manual retry ── failed          pending ──▶ cancelled (the expiry it was about changed)
//! ```
//!
//! A notification's stream id is derived from (credential, expiry date, trigger point)
//! ([`Notification::stream_id`]): scheduling it twice, however the checks race, collides on the
//! stream and produces one notification. Every attempt and its outcome is an event.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::credential::CredentialKind;
use crate::jurisdiction::Jurisdiction;
use crate::Aggregate;

/// Days before expiry at which a notification is due, least urgent first.
pub const TRIGGER_POINTS: [u32; 5] = [90, 60, 30, 7, 1];

/// Attempts a notification gets before it fails for good (a manual retry grants one more).
pub const MAX_ATTEMPTS: u32 = 3;

/// Wait after the n-th failed attempt before the next one: 4 hours, then 12 (seed 003).
pub fn backoff_after(failed_attempt: u32) -> Duration {
    match failed_attempt {
        1 => Duration::hours(4),
        _ => Duration::hours(12),
    }
}

/// A notification still undelivered this long after its first attempt fails for good.
pub fn give_up_after() -> Duration {
    Duration::hours(72)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|s| s.as_str() == value)
    }

    /// Info at 90 and 60 days, warning at 30 and 7, critical at 1.
    pub fn for_trigger(days: u32) -> Self {
        match days {
            0..=1 => Severity::Critical,
            2..=30 => Severity::Warning,
            _ => Severity::Info,
        }
    }
}

/// What the recipient should do at each trigger point (seed 003).
pub fn required_action(days: u32) -> &'static str {
    match days {
        0..=1 => "Immediate intervention needed",
        2..=7 => "Expedite pending applications",
        8..=30 => "Submit renewal applications",
        31..=60 => "Complete CME or training requirements",
        _ => "Begin gathering renewal requirements",
    }
}

/// The trigger point to notify on `today` for a credential expiring on `expiry`: the most
/// urgent one that has passed, so that after downtime one current notification goes out instead
/// of a burst of stale ones. `None` before the first point and after the expiry date.
pub fn due_trigger(expiry: NaiveDate, today: NaiveDate) -> Option<u32> {
    let remaining = (expiry - today).num_days();
    if remaining < 0 {
        return None;
    }
    TRIGGER_POINTS
        .iter()
        .rev()
        .copied()
        .find(|t| remaining <= i64::from(*t))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationStatus {
    Pending,
    Sending,
    Delivered,
    Failed,
    Cancelled,
}

impl NotificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Pending => "pending",
            NotificationStatus::Sending => "sending",
            NotificationStatus::Delivered => "delivered",
            NotificationStatus::Failed => "failed",
            NotificationStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        use NotificationStatus::*;
        [Pending, Sending, Delivered, Failed, Cancelled]
            .into_iter()
            .find(|s| s.as_str() == value)
    }
}

impl std::fmt::Display for NotificationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The message's facts, looked up before scheduling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationContent {
    pub physician_name: String,
    pub credential_kind: CredentialKind,
    pub jurisdiction: Jurisdiction,
    pub expiry: NaiveDate,
    pub days_remaining: i64,
    pub required_action: String,
    pub severity: Severity,
    pub contact: String,
}

/// The message as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub subject: String,
    pub body: String,
}

/// The message template (seed 003); `{name}` placeholders are filled by [`render`].
pub const TEMPLATE: &str =
    "{urgency}: Your {credential} in {state} expires in {days} days on {expiry}.\n\
Physician: {physician}.\n\
Action required: {action}.\n\
{contact}";

const SUBJECT: &str = "{urgency}: {credential} ({state}) for {physician} expires {expiry}";

fn credential_label(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::License => "medical license",
        CredentialKind::Dea => "DEA registration",
        CredentialKind::Csr => "controlled substance registration (CSR)",
    }
}

/// Fills the template.
pub fn render(content: &NotificationContent) -> Message {
    let urgency = match content.severity {
        Severity::Info => "Reminder",
        Severity::Warning => "Action needed",
        Severity::Critical => "URGENT",
    };
    let fill = |template: &str| {
        template
            .replace("{urgency}", urgency)
            .replace("{credential}", credential_label(content.credential_kind))
            .replace("{state}", content.jurisdiction.as_str())
            .replace("{days}", &content.days_remaining.to_string())
            .replace("{expiry}", &content.expiry.to_string())
            .replace("{physician}", &content.physician_name)
            .replace("{action}", &content.required_action)
            .replace("{contact}", &content.contact)
    };
    Message {
        subject: fill(SUBJECT),
        body: fill(TEMPLATE),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationCommand {
    /// Schedules the notification for a credential's trigger point (`trigger_days` 0 for a
    /// test notification).
    Schedule {
        credential_id: Option<Uuid>,
        physician_id: Option<Uuid>,
        trigger_days: u32,
        content: NotificationContent,
    },
    /// Claims the next delivery attempt; refused unless pending and due.
    StartAttempt,
    RecordDelivery {
        attempt: u32,
        detail: String,
    },
    RecordFailure {
        attempt: u32,
        error: String,
    },
    /// A pending notification whose expiry changed (renewed) or whose credential was revoked.
    Cancel {
        reason: String,
    },
    /// An operator asks for one more attempt of a failed notification.
    Retry,
    /// Drops it from the read model (retention); the events stay.
    Archive,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum NotificationEvent {
    NotificationScheduled {
        credential_id: Option<Uuid>,
        physician_id: Option<Uuid>,
        trigger_days: u32,
        severity: Severity,
        content: NotificationContent,
        message: Message,
        due_at: DateTime<Utc>,
    },
    DeliveryAttemptStarted {
        attempt: u32,
        at: DateTime<Utc>,
    },
    NotificationDelivered {
        attempt: u32,
        detail: String,
        at: DateTime<Utc>,
    },
    DeliveryAttemptFailed {
        attempt: u32,
        error: String,
        at: DateTime<Utc>,
        /// When the next attempt is due; `None` when this was the last.
        next_attempt_at: Option<DateTime<Utc>>,
    },
    NotificationFailed {
        reason: String,
        at: DateTime<Utc>,
    },
    NotificationCancelled {
        reason: String,
        at: DateTime<Utc>,
    },
    NotificationRetryRequested {
        at: DateTime<Utc>,
    },
    NotificationArchived {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("no notification with this id")]
    NotFound,
    #[error("this notification is already scheduled")]
    AlreadyScheduled,
    #[error("the notification is {status}; only a pending notification can {action}")]
    NotPending {
        status: NotificationStatus,
        action: &'static str,
    },
    #[error("the next attempt is not due until {due}")]
    NotDue { due: DateTime<Utc> },
    #[error("attempt {attempt} is not the attempt in progress")]
    NotTheCurrentAttempt { attempt: u32 },
    #[error("only a failed notification can be retried; it is {status}")]
    NotFailed { status: NotificationStatus },
    #[error("only a delivered, failed or cancelled notification can be archived; it is {status}")]
    StillActive { status: NotificationStatus },
    #[error("the notification is already archived")]
    Archived,
}

impl crate::refusal::Refusal for NotificationError {
    fn kind(&self) -> crate::refusal::ErrorKind {
        match self {
            NotificationError::NotFound => crate::refusal::ErrorKind::NotFound,
            _ => crate::refusal::ErrorKind::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            NotificationError::NotFound => "notification_not_found",
            _ => "notification_state",
        }
    }
}

/// A notification's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notification {
    pub status: Option<NotificationStatus>,
    pub trigger_days: u32,
    pub credential_id: Option<Uuid>,
    /// The facts the message was made from (severity and expiry among them), so that a
    /// delivery carries them without looking anything up.
    pub content: Option<NotificationContent>,
    pub message: Option<Message>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed (3, plus one per manual retry).
    pub allowed_attempts: u32,
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// Start of the 72-hour window (the first attempt, or the latest manual retry).
    pub window_start: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub archived: bool,
}

/// Namespace of notification stream ids.
const NOTIFICATION_NAMESPACE: Uuid = Uuid::from_u128(0x51e7_a0c4_2b9d_4f16_8a3e_c07d_95b2_e418);

impl Notification {
    /// One notification per credential, expiry date and trigger point.
    pub fn stream_id(credential_id: Uuid, expiry: NaiveDate, trigger_days: u32) -> Uuid {
        let key = format!("{credential_id}:{expiry}:{trigger_days}");
        Uuid::new_v5(&NOTIFICATION_NAMESPACE, key.as_bytes())
    }

    fn pending(&self, action: &'static str) -> Result<(), NotificationError> {
        match self.status {
            None => Err(NotificationError::NotFound),
            Some(NotificationStatus::Pending) => Ok(()),
            Some(status) => Err(NotificationError::NotPending { status, action }),
        }
    }
}

impl Aggregate for Notification {
    const STREAM_TYPE: &'static str = "notification";
    type Command = NotificationCommand;
    type Event = NotificationEvent;
    type Error = NotificationError;

    fn decide(
        &self,
        command: &NotificationCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<NotificationEvent>, NotificationError> {
        use NotificationCommand as C;
        use NotificationError as Err_;
        use NotificationEvent as E;
        if self.archived {
            return Err(Err_::Archived);
        }
        match command {
            C::Schedule {
                credential_id,
                physician_id,
                trigger_days,
                content,
            } => {
                if self.status.is_some() {
                    return Err(Err_::AlreadyScheduled);
                }
                Ok(vec![E::NotificationScheduled {
                    credential_id: *credential_id,
                    physician_id: *physician_id,
                    trigger_days: *trigger_days,
                    severity: content.severity,
                    message: render(content),
                    content: content.clone(),
                    due_at: now,
                }])
            }
            C::StartAttempt => {
                self.pending("be attempted")?;
                if let Some(due) = self.next_attempt_at.filter(|due| *due > now) {
                    return Err(Err_::NotDue { due });
                }
                Ok(vec![E::DeliveryAttemptStarted {
                    attempt: self.attempts + 1,
                    at: now,
                }])
            }
            C::RecordDelivery { attempt, detail } => {
                self.current_attempt(*attempt)?;
                Ok(vec![E::NotificationDelivered {
                    attempt: *attempt,
                    detail: detail.chars().take(500).collect(),
                    at: now,
                }])
            }
            C::RecordFailure { attempt, error } => {
                self.current_attempt(*attempt)?;
                let error: String = error.chars().take(500).collect();
                let window_start = self.window_start.unwrap_or(now);
                let next = now + backoff_after(*attempt);
                let out_of_attempts = self.attempts >= self.allowed_attempts;
                let out_of_time = next >= window_start + give_up_after();
                let mut events = vec![E::DeliveryAttemptFailed {
                    attempt: *attempt,
                    error,
                    at: now,
                    next_attempt_at: (!out_of_attempts && !out_of_time).then_some(next),
                }];
                if out_of_attempts || out_of_time {
                    events.push(E::NotificationFailed {
                        reason: if out_of_attempts {
                            format!("{} attempts failed", self.attempts)
                        } else {
                            "not delivered within 72 hours of the first attempt".to_owned()
                        },
                        at: now,
                    });
                }
                Ok(events)
            }
            C::Cancel { reason } => {
                self.pending("be cancelled")?;
                Ok(vec![E::NotificationCancelled {
                    reason: reason.chars().take(500).collect(),
                    at: now,
                }])
            }
            C::Retry => match self.status {
                None => Err(Err_::NotFound),
                Some(NotificationStatus::Failed) => {
                    Ok(vec![E::NotificationRetryRequested { at: now }])
                }
                Some(status) => Err(Err_::NotFailed { status }),
            },
            C::Archive => match self.status {
                None => Err(Err_::NotFound),
                Some(
                    NotificationStatus::Delivered
                    | NotificationStatus::Failed
                    | NotificationStatus::Cancelled,
                ) => Ok(vec![E::NotificationArchived { at: now }]),
                Some(status) => Err(Err_::StillActive { status }),
            },
        }
    }

    fn evolve(mut self, event: &NotificationEvent) -> Self {
        use NotificationEvent as E;
        use NotificationStatus as S;
        match event {
            E::NotificationScheduled {
                credential_id,
                trigger_days,
                content,
                message,
                due_at,
                ..
            } => {
                self.status = Some(S::Pending);
                self.trigger_days = *trigger_days;
                self.credential_id = *credential_id;
                self.content = Some(content.clone());
                self.message = Some(message.clone());
                self.allowed_attempts = MAX_ATTEMPTS;
                self.next_attempt_at = Some(*due_at);
            }
            E::DeliveryAttemptStarted { attempt, at } => {
                self.status = Some(S::Sending);
                self.attempts = *attempt;
                self.first_attempt_at.get_or_insert(*at);
                self.window_start.get_or_insert(*at);
                self.next_attempt_at = None;
            }
            E::NotificationDelivered { .. } => self.status = Some(S::Delivered),
            E::DeliveryAttemptFailed {
                next_attempt_at, ..
            } => {
                self.status = Some(S::Pending);
                self.next_attempt_at = *next_attempt_at;
            }
            E::NotificationFailed { .. } => {
                self.status = Some(S::Failed);
                self.next_attempt_at = None;
            }
            E::NotificationCancelled { .. } => {
                self.status = Some(S::Cancelled);
                self.next_attempt_at = None;
            }
            E::NotificationRetryRequested { at } => {
                self.status = Some(S::Pending);
                self.allowed_attempts = self.attempts + 1;
                self.window_start = Some(*at);
                self.next_attempt_at = Some(*at);
            }
            E::NotificationArchived { .. } => self.archived = true,
        }
        self
    }
}

impl Notification {
    fn current_attempt(&self, attempt: u32) -> Result<(), NotificationError> {
        match self.status {
            None => Err(NotificationError::NotFound),
            Some(NotificationStatus::Sending) if self.attempts == attempt => Ok(()),
            Some(_) => Err(NotificationError::NotTheCurrentAttempt { attempt }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fold;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + h * 3600, 0).unwrap_or_default()
    }

    fn content() -> NotificationContent {
        NotificationContent {
            physician_name: "Dr. Ada Test".into(),
            credential_kind: CredentialKind::Dea,
            jurisdiction: Jurisdiction::parse("TX").unwrap_or_else(|_| unreachable!()),
            expiry: NaiveDate::from_ymd_opt(2027, 1, 31).unwrap_or_default(),
            days_remaining: 30,
            required_action: required_action(30).into(),
            severity: Severity::for_trigger(30),
            contact: "Call the credentialing team at 555-0100.".into(),
        }
    }

    fn step(
        state: Notification,
        command: NotificationCommand,
        now: DateTime<Utc>,
    ) -> (Notification, Vec<NotificationEvent>) {
        let events = state
            .decide(&command, now)
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
        (events.iter().fold(state, |s, e| s.evolve(e)), events)
    }

    #[test]
    fn the_most_urgent_passed_trigger_point_is_due_and_none_after_expiry() {
        let expiry = NaiveDate::from_ymd_opt(2027, 6, 30).unwrap_or_default();
        let on = |days_before: i64| due_trigger(expiry, expiry - Duration::days(days_before));
        assert_eq!(on(120), None);
        assert_eq!(on(90), Some(90));
        assert_eq!(on(61), Some(90));
        assert_eq!(on(60), Some(60));
        assert_eq!(on(25), Some(30));
        assert_eq!(on(7), Some(7));
        assert_eq!(on(1), Some(1));
        assert_eq!(on(0), Some(1));
        assert_eq!(on(-1), None);
    }

    #[test]
    fn severities_follow_the_trigger_points() {
        let got: Vec<Severity> = TRIGGER_POINTS
            .iter()
            .map(|t| Severity::for_trigger(*t))
            .collect();
        use Severity::*;
        assert_eq!(got, vec![Info, Info, Warning, Warning, Critical]);
    }

    #[test]
    fn the_message_names_the_physician_credential_state_date_days_action_and_contact() {
        let m = render(&content());
        for part in [
            "Dr. Ada Test",
            "DEA registration",
            "TX",
            "2027-01-31",
            "30 days",
            "Submit renewal applications",
            "555-0100",
            "Action needed",
        ] {
            assert!(
                m.body.contains(part) || m.subject.contains(part),
                "{part} missing: {m:?}"
            );
        }
    }

    #[test]
    fn a_notification_that_always_fails_is_retried_after_4_then_12_hours_and_then_fails() {
        let schedule = NotificationCommand::Schedule {
            credential_id: None,
            physician_id: None,
            trigger_days: 30,
            content: content(),
        };
        let (s, _) = step(fold::<Notification>([]), schedule, at(0));
        let (s, _) = step(s, NotificationCommand::StartAttempt, at(0));
        let (s, e) = step(
            s,
            NotificationCommand::RecordFailure {
                attempt: 1,
                error: "500".into(),
            },
            at(0),
        );
        assert!(
            matches!(e[0], NotificationEvent::DeliveryAttemptFailed { next_attempt_at: Some(t), .. } if t == at(4))
        );
        assert_eq!(
            s.decide(&NotificationCommand::StartAttempt, at(3)),
            Err(NotificationError::NotDue { due: at(4) })
        );
        let (s, _) = step(s, NotificationCommand::StartAttempt, at(4));
        let (s, e) = step(
            s,
            NotificationCommand::RecordFailure {
                attempt: 2,
                error: "500".into(),
            },
            at(4),
        );
        assert!(
            matches!(e[0], NotificationEvent::DeliveryAttemptFailed { next_attempt_at: Some(t), .. } if t == at(16))
        );
        let (s, _) = step(s, NotificationCommand::StartAttempt, at(16));
        let (s, e) = step(
            s,
            NotificationCommand::RecordFailure {
                attempt: 3,
                error: "500".into(),
            },
            at(16),
        );
        assert!(matches!(
            e.last(),
            Some(NotificationEvent::NotificationFailed { .. })
        ));
        assert_eq!(s.status, Some(NotificationStatus::Failed));
        // A manual retry grants one more attempt.
        let (s, _) = step(s, NotificationCommand::Retry, at(20));
        let (s, _) = step(s, NotificationCommand::StartAttempt, at(20));
        let (s, _) = step(
            s,
            NotificationCommand::RecordDelivery {
                attempt: 4,
                detail: "200".into(),
            },
            at(20),
        );
        assert_eq!(s.status, Some(NotificationStatus::Delivered));
    }

    #[test]
    fn only_the_attempt_in_progress_can_be_recorded_and_only_pending_ones_cancelled() {
        let schedule = NotificationCommand::Schedule {
            credential_id: None,
            physician_id: None,
            trigger_days: 30,
            content: content(),
        };
        let (s, _) = step(fold::<Notification>([]), schedule.clone(), at(0));
        assert_eq!(
            s.decide(&schedule, at(0)),
            Err(NotificationError::AlreadyScheduled)
        );
        assert!(s
            .decide(
                &NotificationCommand::RecordDelivery {
                    attempt: 1,
                    detail: String::new()
                },
                at(0)
            )
            .is_err());
        let (s, _) = step(s, NotificationCommand::StartAttempt, at(0));
        assert!(
            s.decide(&NotificationCommand::StartAttempt, at(0)).is_err(),
            "no second claim"
        );
        assert!(s
            .decide(
                &NotificationCommand::Cancel {
                    reason: "renewed".into()
                },
                at(0)
            )
            .is_err());
        let (s, _) = step(
            s,
            NotificationCommand::RecordDelivery {
                attempt: 1,
                detail: "200".into(),
            },
            at(0),
        );
        assert!(s.decide(&NotificationCommand::Retry, at(1)).is_err());
        let (s, _) = step(s, NotificationCommand::Archive, at(1));
        assert_eq!(
            s.decide(&NotificationCommand::Archive, at(1)),
            Err(NotificationError::Archived)
        );
    }
}
