//! Cases as specifications: given past events, when a case is opened, routed, assigned or
//! closed, then these events (or this refusal).

use chrono::{DateTime, Duration, Utc};
use domain::testing::{Given, Spec};
use domain::workqueue::case::{Case, CaseCommand, CaseError, CaseEvent, QueueRef};
use uuid::Uuid;

const INTAKE: Uuid = Uuid::from_u128(1);
const LEGAL: Uuid = Uuid::from_u128(2);

/// `minute` minutes after a fixed moment.
fn t(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time") + Duration::minutes(minute)
}

fn queue(queue_id: Uuid) -> QueueRef {
    QueueRef {
        queue_id,
        exists: true,
    }
}

fn open(number: &str) -> CaseCommand {
    CaseCommand::Open {
        number: number.into(),
        subject: "Lapsed DEA registration".into(),
        allegations: vec!["prescribing while lapsed".into()],
        queue: Some(queue(INTAKE)),
    }
}

fn opened() -> Vec<CaseEvent> {
    vec![
        CaseEvent::CaseOpened {
            number: "CASE-2026-0042".into(),
            subject: "Lapsed DEA registration".into(),
            allegations: vec!["prescribing while lapsed".into()],
            at: t(0),
        },
        CaseEvent::CaseRouted {
            from_queue: None,
            to_queue: INTAKE,
            reason: "opened in this queue".into(),
            at: t(0),
        },
    ]
}

fn an_open_case() -> Given<Case> {
    Case::given(opened())
}

#[test]
fn a_case_opened_in_a_queue_starts_its_routing_history_there() {
    let then = Case::given([])
        .when(open("case-2026-0042"), t(0))
        .then(opened());
    assert_eq!(then.state().number.as_deref(), Some("CASE-2026-0042"));
    assert_eq!(then.state().queue_id, Some(INTAKE));
}

#[test]
fn a_case_number_is_taken_once() {
    let refusal = an_open_case()
        .when(open("CASE-2026-0042"), t(1))
        .then_refused();
    assert!(
        matches!(refusal, CaseError::NumberTaken { .. }),
        "{refusal:?}"
    );
}

#[test]
fn routing_records_where_the_case_came_from_and_why() {
    an_open_case()
        .when(
            CaseCommand::Route {
                to: queue(LEGAL),
                reason: "needs legal review".into(),
            },
            t(5),
        )
        .then([CaseEvent::CaseRouted {
            from_queue: Some(INTAKE),
            to_queue: LEGAL,
            reason: "needs legal review".into(),
            at: t(5),
        }]);
}

#[test]
fn a_case_is_not_routed_to_the_queue_it_is_in() {
    an_open_case()
        .when(
            CaseCommand::Route {
                to: queue(INTAKE),
                reason: "again".into(),
            },
            t(5),
        )
        .then_err(CaseError::AlreadyInQueue { queue_id: INTAKE });
}

#[test]
fn a_case_is_assigned_only_to_a_user_who_exists() {
    an_open_case()
        .when(
            CaseCommand::Assign {
                to: "nobody".into(),
                to_exists: false,
                reason: "investigator".into(),
            },
            t(5),
        )
        .then_err(CaseError::UnknownUser {
            username: "nobody".into(),
        });
}

#[test]
fn a_case_with_unfinished_tasks_cannot_be_closed_and_a_closed_case_refuses_changes() {
    let case = an_open_case();
    case.when(
        CaseCommand::Close {
            resolution: "resolved".into(),
            unfinished_tasks: 2,
        },
        t(9),
    )
    .then_err(CaseError::UnfinishedTasks { unfinished: 2 });
    case.when(
        CaseCommand::Close {
            resolution: "resolved".into(),
            unfinished_tasks: 0,
        },
        t(10),
    )
    .then([CaseEvent::CaseClosed {
        resolution: "resolved".into(),
        at: t(10),
    }])
    .and_when(
        CaseCommand::Route {
            to: queue(LEGAL),
            reason: "late".into(),
        },
        t(11),
    )
    .then_err(CaseError::Closed);
}
