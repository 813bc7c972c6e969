//! Work-queue tasks as specifications: given past events, when a claim or hand-off is decided,
//! then these events (or this refusal). Creation (which needs a queue's configuration) and the
//! SLA and escalation rules are tested beside their definitions in `domain/src/workqueue`.

use chrono::{DateTime, Duration, Utc};
use domain::testing::{Given, Spec};
use domain::workqueue::queue::Standing;
use domain::workqueue::task::{Load, Task, TaskCommand, TaskError, TaskEvent};
use domain::workqueue::{GroupLabel, Priority};
use uuid::Uuid;

const QUEUE: Uuid = Uuid::from_u128(9);

/// `minute` minutes after a fixed moment.
fn t(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time") + Duration::minutes(minute)
}

fn label(s: &str) -> GroupLabel {
    GroupLabel::parse(s).expect("a valid group label")
}

fn created(groups: &[&str]) -> TaskEvent {
    TaskEvent::TaskCreated {
        queue_id: QUEUE,
        title: "Verify DEA registration".into(),
        priority: Priority::new(3).expect("a valid priority"),
        groups: groups.iter().map(|g| label(g)).collect(),
        case_id: None,
        payload: serde_json::json!({"npi": "1234567893"}),
        due_at: t(360),
        at: t(0),
    }
}

fn an_open_task() -> Given<Task> {
    Task::given([created(&[])])
}

fn claimed_by(user: &str) -> TaskEvent {
    TaskEvent::TaskClaimed {
        by: user.into(),
        next: false,
        at: t(1),
    }
}

fn member(skills: &[&str]) -> Standing {
    Standing {
        member: true,
        lead: false,
        skills: skills.iter().map(|s| label(s)).collect(),
    }
}

fn room() -> Load {
    Load {
        claimed: 0,
        capacity: 2,
    }
}

fn claim(user: &str) -> TaskCommand {
    TaskCommand::Claim {
        user: user.into(),
        standing: member(&["dea"]),
        load: room(),
        next: false,
    }
}

#[test]
fn a_member_of_the_queue_claims_an_open_task() {
    an_open_task()
        .when(claim("alice"), t(1))
        .then([claimed_by("alice")]);
}

#[test]
fn a_claimed_task_cannot_be_claimed_by_someone_else() {
    Task::given([created(&[]), claimed_by("alice")])
        .when(claim("bob"), t(2))
        .then_err(TaskError::AlreadyClaimed { by: "alice".into() });
}

#[test]
fn a_user_without_a_grant_in_force_cannot_claim() {
    an_open_task()
        .when(
            TaskCommand::Claim {
                user: "mallory".into(),
                standing: Standing::default(),
                load: room(),
                next: false,
            },
            t(1),
        )
        .then_err(TaskError::NoValidGrant {
            user: "mallory".into(),
        });
}

#[test]
fn a_user_at_capacity_cannot_claim() {
    let refusal = an_open_task()
        .when(
            TaskCommand::Claim {
                user: "alice".into(),
                standing: member(&[]),
                load: Load {
                    claimed: 2,
                    capacity: 2,
                },
                next: true,
            },
            t(1),
        )
        .then_refused();
    assert!(
        matches!(
            refusal,
            TaskError::OverCapacity {
                claimed: 2,
                capacity: 2,
                ..
            }
        ),
        "{refusal:?}"
    );
}

#[test]
fn a_task_with_candidate_groups_goes_only_to_members_of_one_of_them() {
    let refusal = Task::given([created(&["billing"])])
        .when(claim("alice"), t(1))
        .then_refused();
    assert!(
        matches!(refusal, TaskError::NotInCandidateGroups { .. }),
        "{refusal:?}"
    );
}

#[test]
fn only_the_claimant_completes_a_task() {
    Task::given([created(&[]), claimed_by("alice")])
        .when(
            TaskCommand::Complete {
                user: "bob".into(),
                outcome: "approved".into(),
                note: None,
            },
            t(2),
        )
        .then_err(TaskError::NotClaimant {
            claimant: "alice".into(),
        });
}

#[test]
fn the_claimant_can_hand_a_task_back_and_another_member_can_then_claim_it() {
    Task::given([created(&[]), claimed_by("alice")])
        .when(
            TaskCommand::Unclaim {
                user: "alice".into(),
            },
            t(2),
        )
        .then([TaskEvent::TaskUnclaimed {
            by: "alice".into(),
            at: t(2),
        }])
        .and_when(claim("bob"), t(3))
        .then([TaskEvent::TaskClaimed {
            by: "bob".into(),
            next: false,
            at: t(3),
        }]);
}
