//! Work queues as specifications: given past events, when a queue is created or access to it
//! granted or revoked, then these events (or this refusal). Standing, distribution and the SLA
//! arithmetic are tested beside their definitions in `domain/src/workqueue`.

use chrono::{DateTime, Duration, Utc};
use domain::testing::{Given, Spec};
use domain::user::Username;
use domain::workqueue::queue::{
    Capacity, Distribution, EscalationPolicy, Grant, Queue, QueueCommand, QueueConfig, QueueError,
    QueueEvent, QueueRole, SlaPolicy,
};
use domain::workqueue::GroupLabel;
use uuid::Uuid;

const DEPARTMENT: Uuid = Uuid::from_u128(7);
const GRANT: Uuid = Uuid::from_u128(100);

/// `minute` minutes after a fixed moment.
fn t(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time") + Duration::minutes(minute)
}

fn labels(names: &[&str]) -> Vec<GroupLabel> {
    names
        .iter()
        .map(|g| GroupLabel::parse(g).expect("a valid group label"))
        .collect()
}

fn alice() -> Username {
    Username::parse("alice").expect("a valid username")
}

fn config() -> QueueConfig {
    QueueConfig {
        department_id: DEPARTMENT,
        capacity: Capacity {
            per_user: 2,
            total: None,
        },
        sla: SlaPolicy::standard(),
        escalation: EscalationPolicy::standard(),
        distribution: Distribution::Pull,
        groups: labels(&["billing", "dea", "license"]),
    }
}

fn created() -> QueueEvent {
    QueueEvent::QueueCreated {
        name: "Licensing".into(),
        config: config(),
        at: t(0),
    }
}

fn a_queue() -> Given<Queue> {
    Queue::given([created()])
}

fn grant(skills: &[&str], valid_until: Option<DateTime<Utc>>) -> QueueCommand {
    QueueCommand::Grant {
        grant_id: GRANT,
        username: alice(),
        user_exists: true,
        role: QueueRole::Member,
        skills: labels(skills),
        valid_from: None,
        valid_until,
    }
}

#[test]
fn a_queue_is_created_in_a_department_that_exists() {
    Queue::given([])
        .when(
            QueueCommand::Create {
                name: "Licensing".into(),
                config: config(),
                department_exists: true,
            },
            t(0),
        )
        .then([created()]);
}

#[test]
fn a_queue_cannot_be_created_in_a_department_that_does_not_exist() {
    Queue::given([])
        .when(
            QueueCommand::Create {
                name: "Licensing".into(),
                config: config(),
                department_exists: false,
            },
            t(0),
        )
        .then_err(QueueError::UnknownDepartment {
            department_id: DEPARTMENT,
        });
}

#[test]
fn a_grant_without_a_start_is_in_force_from_now() {
    a_queue()
        .when(grant(&["dea"], None), t(5))
        .then([QueueEvent::QueueAccessGranted {
            grant: Grant {
                grant_id: GRANT,
                username: alice(),
                role: QueueRole::Member,
                skills: labels(&["dea"]),
                valid_from: t(5),
                valid_until: None,
            },
            at: t(5),
        }]);
}

#[test]
fn a_grant_names_only_the_queue_s_groups() {
    a_queue()
        .when(grant(&["surgery"], None), t(5))
        .then_err(QueueError::UnknownGroup {
            group: "surgery".into(),
        });
}

#[test]
fn a_grant_from_now_whose_window_ends_earlier_is_refused_naming_both_ends() {
    a_queue()
        .when(grant(&["dea"], Some(t(4))), t(5))
        .then_err(QueueError::WindowEndsBeforeStart {
            valid_from: t(5),
            valid_until: t(4),
        });
}

#[test]
fn a_grant_is_given_once_and_only_a_known_grant_is_revoked() {
    let granted = a_queue().when(grant(&["dea"], None), t(5)).then_ok();
    granted
        .clone()
        .and_when(grant(&["dea"], None), t(6))
        .then_err(QueueError::GrantExists { grant_id: GRANT });
    a_queue()
        .when(
            QueueCommand::Revoke {
                grant_id: GRANT,
                reason: "left the team".into(),
            },
            t(6),
        )
        .then_err(QueueError::UnknownGrant { grant_id: GRANT });
}
