//! Practices and physician membership as specifications: given past events, when a command is
//! decided, then these events (or this error). See `DOMAIN.md`, "People and organisation".

use chrono::{DateTime, NaiveDate, Utc};
use domain::jurisdiction::Jurisdiction;
use domain::physician::Npi;
use domain::practice::{
    assignment_outcome, name_key, unassignment_outcome, Address, AssignmentOutcome, Ein,
    MembershipCommand, MembershipError, MembershipEvent, Phone, Practice, PracticeCommand,
    PracticeDetails, PracticeError, PracticeEvent, PracticeKind, PracticeMembership,
    UnassignmentOutcome, ZipCode,
};
use domain::testing::{Given, Spec};
use domain::Aggregate;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const PHYSICIAN: Uuid = Uuid::from_u128(0xD0);
const OTHER_PHYSICIAN: Uuid = Uuid::from_u128(0xD1);
const PRACTICE: Uuid = Uuid::from_u128(0xE0);
const OTHER_PRACTICE: Uuid = Uuid::from_u128(0xE1);
const LOCATION: Uuid = Uuid::from_u128(0x10);

fn now() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2026, 4, 15)
        .and_then(|d| d.and_hms_opt(12, 0, 0))
        .expect("a valid time")
        .and_utc()
}

fn address() -> Address {
    Address {
        street: "  100  Congress Ave ".into(),
        city: "Austin".into(),
        state: Jurisdiction::parse("tx").expect("a state"),
        zip: ZipCode::parse("78701").expect("a ZIP"),
    }
}

fn details() -> PracticeDetails {
    PracticeDetails {
        name: "  Austin   Family Clinic ".into(),
        kind: PracticeKind::Clinic,
        specialty: "Family Medicine".into(),
        address: address(),
        phone: Phone::parse("(512) 555-0100").expect("a phone number"),
        email: " Front.Desk@AustinFamily.example ".into(),
        npi: Npi::parse("1234567893").expect("an NPI"),
        ein: Ein::parse("123456789").expect("an EIN"),
    }
}

fn created() -> PracticeEvent {
    PracticeEvent::PracticeCreated {
        name: "Austin Family Clinic".into(),
        kind: PracticeKind::Clinic,
        specialty: "Family Medicine".into(),
        address: Address {
            street: "100 Congress Ave".into(),
            ..address()
        },
        phone: Phone::parse("5125550100").expect("a phone number"),
        email: "front.desk@austinfamily.example".into(),
        npi: Npi::parse("1234567893").expect("an NPI"),
        ein: Ein::parse("12-3456789").expect("an EIN"),
    }
}

fn assigned(physician_id: Uuid) -> PracticeEvent {
    PracticeEvent::PhysicianAssignedToPractice { physician_id }
}

fn given(events: &[PracticeEvent]) -> Given<Practice> {
    Practice::given(events.iter().cloned())
}

fn create(details: PracticeDetails) -> PracticeCommand {
    PracticeCommand::Create { details }
}

/// A create command as JSON, the way the API receives it, with one field replaced.
fn create_json(pointer: &str, value: &str) -> serde_json::Value {
    let mut json = serde_json::to_value(create(details())).expect("serialisable");
    *json
        .pointer_mut(&format!("/Create/details{pointer}"))
        .expect("the field exists") = serde_json::Value::String(value.to_owned());
    json
}

/// The message a create command with `value` at `pointer` is refused with when read.
fn refusal_reading(pointer: &str, value: &str) -> String {
    serde_json::from_value::<PracticeCommand>(create_json(pointer, value))
        .expect_err("the value is refused")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Creation and its checks
// ---------------------------------------------------------------------------------------------

#[test]
fn a_practice_is_created_active_with_its_details_normalised() {
    let then = given(&[]).when(create(details()), now()).then([created()]);
    let practice = then.into_state();
    assert!(practice.exists());
    assert!(practice.active);
    assert_eq!(practice.physician_count(), 0);
    assert!(practice.locations.is_empty());
    let d = practice.details.expect("details");
    assert_eq!(d.name, "Austin Family Clinic");
    assert_eq!(d.phone.as_str(), "5125550100");
    assert_eq!(d.ein.as_str(), "12-3456789");
}

#[test]
fn practice_creation_with_an_invalid_npi_is_refused_naming_the_npi() {
    for npi in ["1234567890", "123456789", "12345678a3", ""] {
        let error = Npi::parse(npi).expect_err("not an NPI");
        assert!(error.to_string().starts_with("npi "), "{error}");
        let read = refusal_reading("/npi", npi);
        assert!(read.starts_with("npi "), "{read}");
    }
}

#[test]
fn practice_creation_with_an_invalid_ein_is_refused_naming_the_ein() {
    for ein in [
        "12345678",
        "1234567890",
        "123-456789",
        "12-345678a",
        "AB-CDEFGHI",
        "",
    ] {
        let error = Ein::parse(ein).expect_err("not an EIN");
        assert_eq!(error.field, "ein");
        assert!(error.to_string().starts_with("ein "), "{error}");
        let read = refusal_reading("/ein", ein);
        assert!(read.starts_with("ein "), "{read}");
    }
}

#[test]
fn an_ein_is_accepted_with_or_without_its_dash_and_stored_with_it() {
    for ein in ["12-3456789", "123456789", " 12-3456789 "] {
        assert_eq!(
            Ein::parse(ein).map(|e| e.to_string()),
            Ok("12-3456789".into()),
            "{ein:?}"
        );
    }
}

#[test]
fn practice_creation_with_an_invalid_phone_is_refused_naming_the_phone() {
    for phone in [
        "555-0100",
        "512 555 01000",
        "25125550100",
        "+44 20 7946 0958",
        "512-555-0100 x12",
        "512/555/0100",
        "",
    ] {
        let error = Phone::parse(phone).expect_err("not a phone number");
        assert_eq!(error.field, "phone");
        assert!(error.to_string().starts_with("phone "), "{error}");
        let read = refusal_reading("/phone", phone);
        assert!(read.starts_with("phone "), "{read}");
    }
}

#[test]
fn a_phone_number_is_accepted_with_common_punctuation_and_stored_as_ten_digits() {
    for phone in [
        "(512) 555-0100",
        "512-555-0100",
        "512.555.0100",
        "512 555 0100",
        "5125550100",
        "+1 512 555 0100",
        "1-512-555-0100",
    ] {
        assert_eq!(
            Phone::parse(phone).map(|p| p.to_string()),
            Ok("5125550100".into()),
            "{phone:?}"
        );
    }
}

#[test]
fn practice_creation_with_an_invalid_email_is_refused_naming_the_email() {
    for email in [
        "",
        "front desk@clinic.example",
        "front.desk",
        "@clinic.example",
        "a@b",
    ] {
        let error = given(&[])
            .when(
                create(PracticeDetails {
                    email: email.into(),
                    ..details()
                }),
                now(),
            )
            .case("not an e-mail address")
            .then_refused();
        assert_eq!(
            error,
            PracticeError::InvalidField {
                field: "email",
                reason: "not an e-mail address"
            }
        );
        assert!(error.to_string().starts_with("email: "), "{error}");
    }
}

#[test]
fn practice_creation_with_an_invalid_zip_is_refused_naming_the_zip() {
    for zip in ["7870", "787011", "78701-12", "7870A", "78701 1234", ""] {
        let error = ZipCode::parse(zip).expect_err("not a ZIP code");
        assert_eq!(error.field, "zip");
        assert!(error.to_string().starts_with("zip "), "{error}");
        let read = refusal_reading("/address/zip", zip);
        assert!(read.starts_with("zip "), "{read}");
    }
    for (zip, stored) in [
        ("78701", "78701"),
        ("78701-1234", "78701-1234"),
        ("787011234", "78701-1234"),
    ] {
        assert_eq!(
            ZipCode::parse(zip).map(|z| z.to_string()),
            Ok(stored.into())
        );
    }
}

#[test]
fn practice_creation_with_an_empty_name_specialty_street_or_city_is_refused_naming_the_field() {
    let cases: [(&str, PracticeDetails); 4] = [
        (
            "name",
            PracticeDetails {
                name: "  ".into(),
                ..details()
            },
        ),
        (
            "specialty",
            PracticeDetails {
                specialty: "".into(),
                ..details()
            },
        ),
        (
            "address.street",
            PracticeDetails {
                address: Address {
                    street: " ".into(),
                    ..address()
                },
                ..details()
            },
        ),
        (
            "address.city",
            PracticeDetails {
                address: Address {
                    city: "x".repeat(101),
                    ..address()
                },
                ..details()
            },
        ),
    ];
    for (field, details) in cases {
        let error = given(&[]).when(create(details), now()).then_refused();
        assert!(
            matches!(error, PracticeError::InvalidField { field: f, .. } if f == field),
            "{field}: {error}"
        );
        assert!(
            error.to_string().starts_with(&format!("{field}: ")),
            "{error}"
        );
    }
}

#[test]
fn practice_creation_with_an_unknown_state_is_refused_naming_the_jurisdiction() {
    let read = refusal_reading("/address/state", "XX");
    assert!(read.starts_with("jurisdiction "), "{read}");
}

// ---------------------------------------------------------------------------------------------
// Name uniqueness
// ---------------------------------------------------------------------------------------------

#[test]
fn two_practices_with_one_name_in_any_spelling_share_a_stream_id() {
    let id = Practice::stream_id("Austin Family Clinic");
    for spelling in [
        "austin family clinic",
        "  AUSTIN   FAMILY\tCLINIC ",
        "Austin Family\nClinic",
    ] {
        assert_eq!(Practice::stream_id(spelling), id, "{spelling:?}");
    }
    assert_ne!(Practice::stream_id("Austin Family Clinic II"), id);
    assert_ne!(Practice::stream_id("AustinFamily Clinic"), id);
    assert_eq!(name_key(" Austin  Family Clinic"), "austin family clinic");
}

#[test]
fn creating_a_practice_whose_name_is_taken_is_refused() {
    // The second creation lands on the first practice's stream (same name key).
    given(&[created()])
        .when(
            create(PracticeDetails {
                name: "AUSTIN FAMILY CLINIC".into(),
                ..details()
            }),
            now(),
        )
        .then_err(PracticeError::NameTaken {
            name: "Austin Family Clinic".into(),
        });
}

#[test]
fn an_update_may_respell_the_name_but_not_rename_the_practice() {
    let practice = given(&[created()]);
    let respelled = practice
        .when(
            PracticeCommand::Update {
                details: PracticeDetails {
                    name: "AUSTIN FAMILY CLINIC".into(),
                    ..details()
                },
            },
            now(),
        )
        .case("only the spelling changes")
        .then_ok();
    assert!(matches!(
        respelled.events(),
        [PracticeEvent::PracticeUpdated { name, .. }] if name == "AUSTIN FAMILY CLINIC"
    ));
    let refusal = practice
        .when(
            PracticeCommand::Update {
                details: PracticeDetails {
                    name: "Round Rock Family Clinic".into(),
                    ..details()
                },
            },
            now(),
        )
        .then_err(PracticeError::Rename {
            current: "Austin Family Clinic".into(),
            requested: "Round Rock Family Clinic".into(),
        });
    assert!(refusal.to_string().starts_with("name: "));
}

#[test]
fn an_update_replaces_every_detail_but_the_name_and_refuses_no_change() {
    let practice = given(&[created()]);
    let new_details = PracticeDetails {
        kind: PracticeKind::Group,
        specialty: "Pediatrics".into(),
        phone: Phone::parse("512-555-0199").expect("a phone number"),
        ..details()
    };
    let updated = practice
        .when(
            PracticeCommand::Update {
                details: new_details,
            },
            now(),
        )
        .then_ok()
        .into_state()
        .details
        .expect("details");
    assert_eq!(updated.kind, PracticeKind::Group);
    assert_eq!(updated.specialty, "Pediatrics");
    assert_eq!(updated.phone.as_str(), "5125550199");
    practice
        .when(PracticeCommand::Update { details: details() }, now())
        .then_err(PracticeError::Unchanged);
}

#[test]
fn commands_on_a_practice_that_does_not_exist_find_nothing() {
    for command in [
        PracticeCommand::Update { details: details() },
        PracticeCommand::Deactivate,
        PracticeCommand::Reactivate,
        PracticeCommand::RemoveLocation {
            location_id: LOCATION,
        },
        PracticeCommand::AssignPhysician {
            physician_id: PHYSICIAN,
        },
    ] {
        given(&[])
            .when(command, now())
            .then_err(PracticeError::NotFound);
    }
}

// ---------------------------------------------------------------------------------------------
// Status and locations
// ---------------------------------------------------------------------------------------------

#[test]
fn a_practice_is_deactivated_only_once_no_physician_is_assigned_and_can_be_reactivated() {
    given(&[created(), assigned(PHYSICIAN), assigned(OTHER_PHYSICIAN)])
        .when(PracticeCommand::Deactivate, now())
        .then_err(PracticeError::PhysiciansStillAssigned { count: 2 });
    let practice = given(&[created()]);
    let inactive = practice
        .when(PracticeCommand::Deactivate, now())
        .then([PracticeEvent::PracticeDeactivated {}])
        .into_given();
    assert!(!inactive.state().active);
    inactive
        .when(PracticeCommand::Deactivate, now())
        .then_err(PracticeError::Inactive);
    inactive
        .when(PracticeCommand::Reactivate, now())
        .then([PracticeEvent::PracticeReactivated {}]);
    practice
        .when(PracticeCommand::Reactivate, now())
        .then_err(PracticeError::AlreadyActive);
}

#[test]
fn locations_are_added_by_id_with_a_name_unique_in_the_practice_and_removed_by_id() {
    let add = |location_id, name: &str| PracticeCommand::AddLocation {
        location_id,
        name: name.into(),
        address: address(),
    };
    let practice = given(&[created()])
        .when(add(LOCATION, " North  Office "), now())
        .then([PracticeEvent::PracticeLocationAdded {
            location_id: LOCATION,
            name: "North Office".into(),
            address: Address {
                street: "100 Congress Ave".into(),
                ..address()
            },
        }])
        .into_given();
    assert_eq!(practice.state().locations.len(), 1);
    practice
        .when(add(LOCATION, "South Office"), now())
        .then_err(PracticeError::LocationExists {
            location_id: LOCATION,
        });
    practice
        .when(add(Uuid::from_u128(0x11), "north office"), now())
        .then_err(PracticeError::LocationNameTaken {
            name: "north office".into(),
        });
    let error = practice
        .when(
            PracticeCommand::AddLocation {
                location_id: Uuid::from_u128(0x12),
                name: "South Office".into(),
                address: Address {
                    city: "".into(),
                    ..address()
                },
            },
            now(),
        )
        .case("no city")
        .then_refused();
    assert!(error.to_string().starts_with("location.address.city: "));

    let remove = PracticeCommand::RemoveLocation {
        location_id: LOCATION,
    };
    let removed = practice.when(remove.clone(), now()).then_ok();
    assert!(removed.state().locations.is_empty());
    removed
        .and_when(remove, now())
        .then_err(PracticeError::UnknownLocation {
            location_id: LOCATION,
        });
}

// ---------------------------------------------------------------------------------------------
// The practice's side of membership
// ---------------------------------------------------------------------------------------------

#[test]
fn an_active_practice_records_a_physician_assigned_to_it_once() {
    let assign = PracticeCommand::AssignPhysician {
        physician_id: PHYSICIAN,
    };
    let then = given(&[created()])
        .when(assign.clone(), now())
        .then([assigned(PHYSICIAN)]);
    assert!(then.state().physicians.contains(&PHYSICIAN));
    then.and_when(assign, now())
        .then_err(PracticeError::AlreadyAssigned {
            physician_id: PHYSICIAN,
        });
}

#[test]
fn an_inactive_practice_takes_no_physician() {
    given(&[created(), PracticeEvent::PracticeDeactivated {}])
        .when(
            PracticeCommand::AssignPhysician {
                physician_id: PHYSICIAN,
            },
            now(),
        )
        .then_err(PracticeError::Inactive);
}

#[test]
fn only_an_assigned_physician_can_be_unassigned() {
    let practice = given(&[created(), assigned(PHYSICIAN)]);
    let then = practice
        .when(
            PracticeCommand::UnassignPhysician {
                physician_id: PHYSICIAN,
            },
            now(),
        )
        .then([PracticeEvent::PhysicianUnassignedFromPractice {
            physician_id: PHYSICIAN,
        }]);
    assert_eq!(then.state().physician_count(), 0);
    practice
        .when(
            PracticeCommand::UnassignPhysician {
                physician_id: OTHER_PHYSICIAN,
            },
            now(),
        )
        .then_err(PracticeError::NotAssigned {
            physician_id: OTHER_PHYSICIAN,
        });
}

#[test]
fn practice_events_are_stored_under_their_own_type_names() {
    let json = serde_json::to_value(assigned(PHYSICIAN)).expect("serialisable");
    assert_eq!(
        json,
        serde_json::json!({
            "type": "PhysicianAssignedToPractice",
            "data": { "physician_id": PHYSICIAN },
        })
    );
    let json = serde_json::to_value(created()).expect("serialisable");
    assert_eq!(json["type"], "PracticeCreated");
    assert_eq!(json["data"]["phone"], "5125550100");
    assert_eq!(json["data"]["ein"], "12-3456789");
    assert_eq!(json["data"]["address"]["state"], "TX");
    assert_eq!(json["data"]["kind"], "clinic");
    let back: PracticeEvent = serde_json::from_value(json).expect("reads back");
    assert_eq!(back, created());
}

// ---------------------------------------------------------------------------------------------
// The physician's side: membership
// ---------------------------------------------------------------------------------------------

fn joined(practice_id: Uuid) -> MembershipEvent {
    MembershipEvent::PhysicianJoinedPractice { practice_id }
}

fn join(practice_id: Uuid) -> MembershipCommand {
    MembershipCommand::Join {
        practice_id,
        physician_exists: true,
        physician_active: true,
    }
}

fn member_of(practice_id: Uuid) -> Given<PracticeMembership> {
    PracticeMembership::given([joined(practice_id)])
}

fn in_no_practice() -> Given<PracticeMembership> {
    PracticeMembership::given([])
}

#[test]
fn a_physician_without_a_practice_joins_one() {
    let then = in_no_practice()
        .when(join(PRACTICE), now())
        .then([joined(PRACTICE)]);
    assert_eq!(then.state().practice_id, Some(PRACTICE));
}

#[test]
fn a_physician_in_a_practice_cannot_join_another_and_the_refusal_names_the_current_practice() {
    let error = member_of(PRACTICE)
        .when(join(OTHER_PRACTICE), now())
        .then_err(MembershipError::AlreadyInPractice {
            practice_id: PRACTICE,
        });
    assert!(error.to_string().contains(&PRACTICE.to_string()), "{error}");
    member_of(PRACTICE).when(join(PRACTICE), now()).then_err(
        MembershipError::AlreadyInThisPractice {
            practice_id: PRACTICE,
        },
    );
}

#[test]
fn an_unknown_or_inactive_physician_cannot_join_a_practice() {
    let unknown = MembershipCommand::Join {
        practice_id: PRACTICE,
        physician_exists: false,
        physician_active: false,
    };
    let inactive = MembershipCommand::Join {
        practice_id: PRACTICE,
        physician_exists: true,
        physician_active: false,
    };
    let membership = in_no_practice();
    membership
        .when(unknown, now())
        .then_err(MembershipError::UnknownPhysician);
    membership
        .when(inactive, now())
        .then_err(MembershipError::PhysicianInactive);
}

#[test]
fn a_transfer_is_one_command_that_leaves_the_old_practice_and_joins_the_new_one() {
    let then = member_of(PRACTICE)
        .when(
            MembershipCommand::Transfer {
                from: PRACTICE,
                to: OTHER_PRACTICE,
                physician_active: true,
            },
            now(),
        )
        .then([
            MembershipEvent::PhysicianLeftPractice {
                practice_id: PRACTICE,
            },
            joined(OTHER_PRACTICE),
        ]);
    assert_eq!(then.state().practice_id, Some(OTHER_PRACTICE));
}

#[test]
fn a_transfer_needs_the_current_practice_another_target_and_an_active_physician() {
    let transfer = |from, to, physician_active| MembershipCommand::Transfer {
        from,
        to,
        physician_active,
    };
    let third = Uuid::from_u128(0xE2);
    member_of(PRACTICE)
        .when(transfer(OTHER_PRACTICE, third, true), now())
        .then_err(MembershipError::NotInPractice {
            practice_id: OTHER_PRACTICE,
            current: Some(PRACTICE),
        });
    in_no_practice()
        .when(transfer(PRACTICE, third, true), now())
        .then_err(MembershipError::NotInPractice {
            practice_id: PRACTICE,
            current: None,
        });
    member_of(PRACTICE)
        .when(transfer(PRACTICE, PRACTICE, true), now())
        .then_err(MembershipError::SamePractice {
            practice_id: PRACTICE,
        });
    member_of(PRACTICE)
        .when(transfer(PRACTICE, third, false), now())
        .then_err(MembershipError::PhysicianInactive);
}

#[test]
fn a_physician_leaves_only_the_practice_they_are_in() {
    let leave = |practice_id| MembershipCommand::Leave { practice_id };
    let then = member_of(PRACTICE).when(leave(PRACTICE), now()).then([
        MembershipEvent::PhysicianLeftPractice {
            practice_id: PRACTICE,
        },
    ]);
    assert_eq!(then.state().practice_id, None);
    let error = member_of(PRACTICE)
        .when(leave(OTHER_PRACTICE), now())
        .then_err(MembershipError::NotInPractice {
            practice_id: OTHER_PRACTICE,
            current: Some(PRACTICE),
        });
    assert!(error.to_string().starts_with("practice_id: "), "{error}");
}

#[test]
fn a_membership_stream_is_keyed_by_the_physician_but_is_not_the_physician_s_stream() {
    assert_eq!(
        PracticeMembership::stream_id(PHYSICIAN),
        PracticeMembership::stream_id(PHYSICIAN)
    );
    assert_ne!(PracticeMembership::stream_id(PHYSICIAN), PHYSICIAN);
    assert_ne!(
        PracticeMembership::stream_id(PHYSICIAN),
        PracticeMembership::stream_id(OTHER_PHYSICIAN)
    );
    assert_eq!(PracticeMembership::STREAM_TYPE, "practice_membership");
}

#[test]
fn a_bulk_assignment_reports_each_physician_s_outcome() {
    let free = PracticeMembership::default();
    let here = member_of(PRACTICE).into_state();
    let elsewhere = member_of(OTHER_PRACTICE).into_state();
    let cases = [
        (&free, true, true, AssignmentOutcome::Assigned),
        (
            &elsewhere,
            true,
            true,
            AssignmentOutcome::AlreadyAssignedElsewhere {
                practice_id: OTHER_PRACTICE,
            },
        ),
        (&here, true, true, AssignmentOutcome::AlreadyInThisPractice),
        (&free, true, false, AssignmentOutcome::Inactive),
        (&free, false, false, AssignmentOutcome::Unknown),
    ];
    for (membership, exists, active, expected) in cases {
        assert_eq!(
            assignment_outcome(membership, PRACTICE, exists, active),
            expected,
            "{membership:?} exists={exists} active={active}"
        );
    }
    let json = serde_json::to_value(AssignmentOutcome::AlreadyAssignedElsewhere {
        practice_id: OTHER_PRACTICE,
    })
    .expect("serialisable");
    assert_eq!(
        json,
        serde_json::json!({ "outcome": "already_assigned_elsewhere", "practice_id": OTHER_PRACTICE })
    );
}

#[test]
fn a_bulk_unassignment_reports_each_physician_s_outcome() {
    assert_eq!(
        unassignment_outcome(member_of(PRACTICE).state(), PRACTICE, true),
        UnassignmentOutcome::Unassigned
    );
    assert_eq!(
        unassignment_outcome(member_of(OTHER_PRACTICE).state(), PRACTICE, true),
        UnassignmentOutcome::NotInThisPractice
    );
    assert_eq!(
        unassignment_outcome(&PracticeMembership::default(), PRACTICE, true),
        UnassignmentOutcome::NotInThisPractice
    );
    assert_eq!(
        unassignment_outcome(&PracticeMembership::default(), PRACTICE, false),
        UnassignmentOutcome::Unknown
    );
}

#[test]
fn a_join_is_accepted_exactly_when_the_bulk_outcome_is_assigned() {
    let memberships = [
        PracticeMembership::default(),
        member_of(PRACTICE).into_state(),
        member_of(OTHER_PRACTICE).into_state(),
    ];
    for membership in &memberships {
        for exists in [false, true] {
            for active in [false, true] {
                let outcome = assignment_outcome(membership, PRACTICE, exists, active);
                let decided = membership.decide(
                    &MembershipCommand::Join {
                        practice_id: PRACTICE,
                        physician_exists: exists,
                        physician_active: active,
                    },
                    now(),
                );
                assert_eq!(
                    decided.is_ok(),
                    outcome == AssignmentOutcome::Assigned,
                    "{membership:?} exists={exists} active={active}: {outcome:?} vs {decided:?}"
                );
            }
        }
    }
}
