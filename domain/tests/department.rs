//! Departments as specifications: given past events, when a department command is decided,
//! then these events (or this refusal).

use chrono::{DateTime, Utc};
use domain::testing::Spec;
use domain::workqueue::department::{
    Department, DepartmentCommand, DepartmentError, DepartmentEvent, ParentLookup,
};
use uuid::Uuid;

const PARENT: Uuid = Uuid::from_u128(0xDE);

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time")
}

fn create(parent: Option<ParentLookup>) -> DepartmentCommand {
    DepartmentCommand::Create {
        code: " cred-east ".into(),
        name: "Credentialing East".into(),
        parent,
    }
}

fn created(parent_id: Option<Uuid>) -> DepartmentEvent {
    DepartmentEvent::DepartmentCreated {
        code: "CRED-EAST".into(),
        name: "Credentialing East".into(),
        parent_id,
        at: now(),
    }
}

#[test]
fn a_department_is_created_with_its_code_trimmed_and_upper_cased() {
    let then = Department::given([])
        .when(create(None), now())
        .then([created(None)]);
    assert_eq!(then.state().code.as_deref(), Some("CRED-EAST"));
}

#[test]
fn a_department_can_hang_under_a_parent_that_exists() {
    Department::given([])
        .when(
            create(Some(ParentLookup {
                id: PARENT,
                exists: true,
            })),
            now(),
        )
        .then([created(Some(PARENT))]);
}

#[test]
fn a_department_cannot_hang_under_a_parent_that_does_not_exist() {
    Department::given([])
        .when(
            create(Some(ParentLookup {
                id: PARENT,
                exists: false,
            })),
            now(),
        )
        .then_err(DepartmentError::UnknownParent { parent_id: PARENT });
}

#[test]
fn a_code_is_taken_once() {
    let refusal = Department::given([created(None)])
        .when(create(None), now())
        .then_refused();
    assert!(
        matches!(refusal, DepartmentError::CodeTaken { .. }),
        "{refusal:?}"
    );
}

#[test]
fn a_department_that_does_not_exist_cannot_be_renamed() {
    Department::given([])
        .when(
            DepartmentCommand::Rename {
                name: "Credentialing West".into(),
            },
            now(),
        )
        .then_err(DepartmentError::NotFound);
}

#[test]
fn a_department_is_renamed() {
    Department::given([created(None)])
        .when(
            DepartmentCommand::Rename {
                name: "Credentialing West".into(),
            },
            now(),
        )
        .then([DepartmentEvent::DepartmentRenamed {
            name: "Credentialing West".into(),
            at: now(),
        }]);
}
