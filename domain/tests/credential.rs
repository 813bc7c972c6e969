//! Credentials (and their one open renewal) and physicians, as specifications: given past
//! events, when a command is decided, then these events (or this error).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use domain::credential::{
    Credential, CredentialCommand, CredentialError, CredentialEvent, CredentialKind,
    PhysicianStanding, RenewalOutcome,
};
use domain::jurisdiction::Jurisdiction;
use domain::physician::{
    Npi, Physician, PhysicianCommand, PhysicianDetails, PhysicianError, PhysicianEvent,
};
use domain::testing::{Given, Spec};
use uuid::Uuid;

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid calendar date")
}

/// Noon UTC on `day`.
fn at(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(12, 0, 0).expect("a valid time").and_utc()
}

fn state(code: &str) -> Jurisdiction {
    Jurisdiction::parse(code).expect("a US state code")
}

// ---------------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------------

const PHYSICIAN: Uuid = Uuid::from_u128(0xD0);
const RENEWAL: Uuid = Uuid::from_u128(0xA1);
const OTHER_RENEWAL: Uuid = Uuid::from_u128(0xA2);

/// The credential's expiry: its last valid day.
fn expiry() -> NaiveDate {
    date(2026, 6, 30)
}

fn today() -> DateTime<Utc> {
    at(date(2026, 4, 15))
}

fn active_physician() -> PhysicianStanding {
    PhysicianStanding {
        physician_id: PHYSICIAN,
        exists: true,
        active: true,
    }
}

fn register(physician: PhysicianStanding, number: &str) -> CredentialCommand {
    CredentialCommand::Register {
        physician,
        kind: CredentialKind::License,
        jurisdiction: state("TX"),
        number: number.to_owned(),
        expiry: expiry(),
    }
}

fn registered() -> CredentialEvent {
    CredentialEvent::CredentialRegistered {
        physician_id: PHYSICIAN,
        kind: CredentialKind::License,
        jurisdiction: state("TX"),
        number: "TX-12345".into(),
        expiry: expiry(),
    }
}

fn opened(renewal_id: Uuid) -> CredentialEvent {
    CredentialEvent::RenewalOpened { renewal_id }
}

fn revoked() -> CredentialEvent {
    CredentialEvent::CredentialRevoked {
        reason: "board action".into(),
        at: today(),
    }
}

fn given(events: &[CredentialEvent]) -> Given<Credential> {
    Credential::given(events.iter().cloned())
}

fn open_renewal(renewal_id: Uuid) -> CredentialCommand {
    CredentialCommand::OpenRenewal { renewal_id }
}

fn record(renewal_id: Uuid, new_expiry: NaiveDate) -> CredentialCommand {
    CredentialCommand::RecordRenewal {
        renewal_id,
        new_expiry,
    }
}

fn close(renewal_id: Uuid, outcome: RenewalOutcome) -> CredentialCommand {
    CredentialCommand::CloseRenewal {
        renewal_id,
        outcome,
    }
}

fn revoke(reason: &str) -> CredentialCommand {
    CredentialCommand::Revoke {
        reason: reason.into(),
    }
}

#[test]
fn a_credential_is_registered_for_an_active_physician_with_its_number_normalised() {
    let then = given(&[])
        .when(register(active_physician(), "  tx-12345 "), today())
        .then([registered()]);
    let credential = then.state();
    assert!(credential.registered);
    assert_eq!(credential.physician_id, PHYSICIAN);
    assert_eq!(credential.kind, Some(CredentialKind::License));
    assert_eq!(credential.jurisdiction, Some(state("TX")));
    assert_eq!(credential.number, "TX-12345");
    assert_eq!(credential.expiry, Some(expiry()));
    assert!(!credential.revoked);
    assert_eq!(credential.open_renewal, None);
}

#[test]
fn a_credential_cannot_be_registered_for_an_unknown_or_inactive_physician() {
    let unknown = PhysicianStanding {
        exists: false,
        active: false,
        ..active_physician()
    };
    let inactive = PhysicianStanding {
        active: false,
        ..active_physician()
    };
    given(&[])
        .when(register(unknown, "TX-1"), today())
        .then_err(CredentialError::UnknownPhysician);
    given(&[])
        .when(register(inactive, "TX-1"), today())
        .then_err(CredentialError::PhysicianInactive);
}

#[test]
fn a_credential_number_is_1_to_64_letters_digits_or_dashes() {
    let too_long = "A".repeat(65);
    for number in [
        "",
        "   ",
        "TX 123",
        "TX_123",
        "TX/123",
        "ÄB1",
        too_long.as_str(),
    ] {
        given(&[])
            .when(register(active_physician(), number), today())
            .then_err(CredentialError::InvalidNumber);
    }
    let longest = "A".repeat(64);
    for number in ["1", "BX1234563", "tx-0001", longest.as_str()] {
        given(&[])
            .when(register(active_physician(), number), today())
            .then_ok();
    }
}

#[test]
fn a_credential_is_registered_once() {
    given(&[registered()])
        .when(register(active_physician(), "TX-12345"), today())
        .then_err(CredentialError::AlreadyRegistered);
}

#[test]
fn commands_on_an_unregistered_credential_find_nothing() {
    let commands = [
        CredentialCommand::CorrectExpiry { expiry: expiry() },
        revoke("board action"),
        open_renewal(RENEWAL),
        close(RENEWAL, RenewalOutcome::Cancelled),
        record(RENEWAL, date(2028, 6, 30)),
    ];
    for command in commands {
        given(&[])
            .when(command, today())
            .then_err(CredentialError::NotFound);
    }
}

#[test]
fn the_stream_id_is_one_per_kind_state_and_number_whatever_its_case_or_spacing() {
    let id = Credential::stream_id(CredentialKind::Dea, state("CA"), "BX1234563");
    assert_eq!(
        Credential::stream_id(CredentialKind::Dea, state("ca"), " bx1234563 "),
        id
    );
    assert_ne!(
        Credential::stream_id(CredentialKind::Csr, state("CA"), "BX1234563"),
        id
    );
    assert_ne!(
        Credential::stream_id(CredentialKind::Dea, state("NV"), "BX1234563"),
        id
    );
    assert_ne!(
        Credential::stream_id(CredentialKind::Dea, state("CA"), "BX1234564"),
        id
    );
}

#[test]
fn a_credential_expires_the_day_after_its_expiry_date() {
    let given = given(&[registered()]);
    let credential = given.state();
    assert!(!credential.is_expired_on(expiry() - Duration::days(1)));
    assert!(!credential.is_expired_on(expiry()), "the last valid day");
    assert!(credential.is_expired_on(expiry() + Duration::days(1)));
    assert!(!Credential::default().is_expired_on(expiry()));
}

#[test]
fn a_renewal_can_be_opened_when_none_is_open() {
    let then = given(&[registered()])
        .when(open_renewal(RENEWAL), today())
        .then([opened(RENEWAL)]);
    assert_eq!(then.state().open_renewal, Some(RENEWAL));
}

#[test]
fn a_second_renewal_cannot_be_opened_while_one_is_open() {
    let credential = given(&[registered(), opened(RENEWAL)]);
    for renewal_id in [OTHER_RENEWAL, RENEWAL] {
        let refusal = credential
            .when(open_renewal(renewal_id), today())
            .case("the error names the renewal that is open")
            .then_err(CredentialError::RenewalAlreadyOpen {
                renewal_id: RENEWAL,
            });
        assert!(refusal.to_string().contains(&RENEWAL.to_string()));
    }
}

#[test]
fn a_renewal_can_be_opened_on_the_expiry_date_but_not_after_it() {
    let credential = given(&[registered()]);
    credential
        .when(open_renewal(RENEWAL), at(expiry()))
        .then_ok();
    let refusal = credential
        .when(open_renewal(RENEWAL), at(expiry() + Duration::days(1)))
        .then_err(CredentialError::AlreadyExpired { expiry: expiry() });
    assert!(refusal.to_string().contains("2026-06-30"));
}

#[test]
fn a_revoked_credential_cannot_open_a_renewal() {
    given(&[registered(), revoked()])
        .when(open_renewal(RENEWAL), today())
        .then_err(CredentialError::Revoked);
}

#[test]
fn only_the_open_renewal_can_be_closed() {
    let with_open = given(&[registered(), opened(RENEWAL)]);
    let without = given(&[registered()]);
    for credential in [&with_open, &without] {
        let refusal = credential
            .when(close(OTHER_RENEWAL, RenewalOutcome::Expired), today())
            .then_err(CredentialError::NotTheOpenRenewal {
                renewal_id: OTHER_RENEWAL,
            });
        assert!(refusal.to_string().contains(&OTHER_RENEWAL.to_string()));
    }
}

#[test]
fn closing_the_open_renewal_frees_the_slot_for_the_next_one() {
    for outcome in [
        RenewalOutcome::Approved,
        RenewalOutcome::Expired,
        RenewalOutcome::Cancelled,
    ] {
        let then = given(&[registered(), opened(RENEWAL)])
            .when(close(RENEWAL, outcome), today())
            .then([CredentialEvent::RenewalClosed {
                renewal_id: RENEWAL,
                outcome,
            }]);
        assert_eq!(then.state().open_renewal, None);
        assert_eq!(
            then.state().expiry,
            Some(expiry()),
            "closing keeps the expiry"
        );
        then.and_when(open_renewal(OTHER_RENEWAL), today())
            .then_ok();
    }
}

#[test]
fn only_the_open_renewal_can_record_a_renewal() {
    for credential in [
        given(&[registered(), opened(RENEWAL)]),
        given(&[registered()]),
    ] {
        credential
            .when(record(OTHER_RENEWAL, date(2028, 6, 30)), today())
            .then_err(CredentialError::NotTheOpenRenewal {
                renewal_id: OTHER_RENEWAL,
            });
    }
}

#[test]
fn recording_a_renewal_sets_the_new_expiry_and_frees_the_slot() {
    let then = given(&[registered(), opened(RENEWAL)])
        .when(record(RENEWAL, date(2028, 6, 30)), today())
        .then([
            CredentialEvent::CredentialRenewed {
                renewal_id: RENEWAL,
                previous_expiry: expiry(),
                expiry: date(2028, 6, 30),
            },
            CredentialEvent::RenewalClosed {
                renewal_id: RENEWAL,
                outcome: RenewalOutcome::Approved,
            },
        ]);
    assert_eq!(then.state().expiry, Some(date(2028, 6, 30)));
    assert_eq!(then.state().open_renewal, None);
    then.and_when(open_renewal(OTHER_RENEWAL), today())
        .then_ok();
}

#[test]
fn recording_a_renewal_refuses_a_new_expiry_that_is_not_after_the_current_one() {
    let credential = given(&[registered(), opened(RENEWAL)]);
    for new_expiry in [expiry(), expiry() - Duration::days(1)] {
        credential
            .when(record(RENEWAL, new_expiry), today())
            .then_err(CredentialError::NewExpiryNotLater {
                expiry: expiry(),
                new_expiry,
            });
    }
    credential
        .when(record(RENEWAL, expiry() + Duration::days(1)), today())
        .then_ok();
}

#[test]
fn a_credential_cannot_be_revoked_while_a_renewal_is_open() {
    let refusal = given(&[registered(), opened(RENEWAL)])
        .when(revoke("board action"), today())
        .then_err(CredentialError::RenewalStillOpen {
            renewal_id: RENEWAL,
        });
    assert!(refusal.to_string().contains(&RENEWAL.to_string()));
}

#[test]
fn a_credential_can_be_revoked_with_a_reason_once_no_renewal_is_open() {
    let credential = given(&[
        registered(),
        opened(RENEWAL),
        CredentialEvent::RenewalClosed {
            renewal_id: RENEWAL,
            outcome: RenewalOutcome::Cancelled,
        },
    ]);
    credential
        .when(revoke("  "), today())
        .then_err(CredentialError::MissingReason);
    let then = credential
        .when(revoke(" board action "), today())
        .then([revoked()]);
    assert!(then.state().revoked);
}

#[test]
fn a_revoked_credential_refuses_every_change() {
    let credential = given(&[registered(), revoked()]);
    let commands = [
        CredentialCommand::CorrectExpiry {
            expiry: date(2027, 1, 1),
        },
        revoke("again"),
        open_renewal(RENEWAL),
        record(RENEWAL, date(2028, 6, 30)),
    ];
    for command in commands {
        credential
            .when(command, today())
            .then_err(CredentialError::Revoked);
    }
    // Closing is still answered by whether the renewal is the open one (none is).
    credential
        .when(close(RENEWAL, RenewalOutcome::Cancelled), today())
        .then_err(CredentialError::NotTheOpenRenewal {
            renewal_id: RENEWAL,
        });
}

#[test]
fn a_wrongly_entered_expiry_can_be_corrected_but_not_to_the_same_date() {
    let credential = given(&[registered()]);
    credential
        .when(
            CredentialCommand::CorrectExpiry { expiry: expiry() },
            today(),
        )
        .then_err(CredentialError::SameExpiry { expiry: expiry() });
    let command = CredentialCommand::CorrectExpiry {
        expiry: date(2026, 5, 31),
    };
    let then =
        credential
            .when(command, today())
            .then([CredentialEvent::CredentialExpiryCorrected {
                previous_expiry: expiry(),
                expiry: date(2026, 5, 31),
            }]);
    assert_eq!(then.state().expiry, Some(date(2026, 5, 31)));
}

#[test]
fn a_closing_event_for_another_renewal_leaves_the_open_one_in_place() {
    let credential = given(&[
        registered(),
        opened(RENEWAL),
        CredentialEvent::RenewalClosed {
            renewal_id: OTHER_RENEWAL,
            outcome: RenewalOutcome::Cancelled,
        },
    ]);
    assert_eq!(credential.state().open_renewal, Some(RENEWAL));
}

#[test]
fn the_next_expiry_is_one_cycle_later() {
    let e = expiry();
    assert_eq!(
        CredentialKind::License.next_expiry(state("TX"), e),
        date(2028, 6, 30)
    );
    assert_eq!(
        CredentialKind::Dea.next_expiry(state("TX"), e),
        date(2029, 6, 30)
    );
    assert_eq!(
        CredentialKind::Csr.next_expiry(state("TX"), e),
        date(2027, 6, 30),
        "annual CSR state"
    );
    assert_eq!(
        CredentialKind::Csr.next_expiry(state("WA"), e),
        date(2028, 6, 30),
        "biennial CSR state"
    );
}

#[test]
fn credential_events_are_stored_as_type_and_data() {
    let json = serde_json::to_value(opened(RENEWAL)).expect("serializes");
    assert_eq!(json["type"], "RenewalOpened");
    assert_eq!(json["data"]["renewal_id"], RENEWAL.to_string());
    for event in [
        registered(),
        opened(RENEWAL),
        CredentialEvent::RenewalClosed {
            renewal_id: RENEWAL,
            outcome: RenewalOutcome::Expired,
        },
        revoked(),
    ] {
        let text = serde_json::to_string(&event).expect("serializes");
        let back: CredentialEvent = serde_json::from_str(&text).expect("deserializes");
        assert_eq!(back, event);
    }
}

// ---------------------------------------------------------------------------------------------
// Physicians
// ---------------------------------------------------------------------------------------------

fn npi() -> Npi {
    Npi::parse("1234567893").expect("the CMS example NPI")
}

fn details() -> PhysicianDetails {
    PhysicianDetails {
        name: "Dr. Ada Lovelace".into(),
        email: "ada@example.org".into(),
        specialty: "Cardiology".into(),
        states: vec![state("TX"), state("CA")],
    }
}

fn physician_registered() -> PhysicianEvent {
    PhysicianEvent::PhysicianRegistered {
        npi: npi(),
        name: "Dr. Ada Lovelace".into(),
        email: "ada@example.org".into(),
        specialty: "Cardiology".into(),
        states: vec![state("CA"), state("TX")],
    }
}

fn given_physician(events: &[PhysicianEvent]) -> Given<Physician> {
    Physician::given(events.iter().cloned())
}

fn register_physician(details: PhysicianDetails) -> PhysicianCommand {
    PhysicianCommand::Register {
        npi: npi(),
        details,
    }
}

#[test]
fn an_npi_with_a_valid_check_digit_is_accepted() {
    assert_eq!(npi().as_str(), "1234567893");
    assert_eq!(npi().to_string(), "1234567893");
    assert_eq!(Npi::check_digit("123456789"), Some(3));
}

#[test]
fn an_npi_with_any_other_check_digit_is_refused() {
    for last in (0..=9).filter(|d| *d != 3) {
        let value = format!("123456789{last}");
        let refused = Npi::parse(&value).expect_err("wrong check digit");
        assert_eq!(refused.value, value);
        assert_eq!(refused.reason, "the check digit does not match");
        assert!(refused.to_string().contains(&value));
    }
}

#[test]
fn an_npi_is_exactly_ten_digits() {
    for value in [
        "",
        "123456789",
        "12345678930",
        "12345678a3",
        " 1234567893",
        "1234567893 ",
        "１２３４５６７８９３",
    ] {
        let refused = Npi::parse(value).expect_err("not ten digits");
        assert_eq!(refused.reason, "an NPI is exactly 10 digits", "{value:?}");
    }
    assert_eq!(Npi::check_digit("12345678"), None);
    assert_eq!(Npi::check_digit("12345678a"), None);
}

#[test]
fn an_npi_is_checked_when_read_from_json() {
    let ok: Result<Npi, _> = serde_json::from_str("\"1234567893\"");
    assert_eq!(ok.ok(), Some(npi()));
    let bad: Result<Npi, _> = serde_json::from_str("\"1234567890\"");
    assert!(bad.is_err());
    assert_eq!(
        serde_json::to_string(&npi()).expect("serializes"),
        "\"1234567893\""
    );
}

#[test]
fn a_physician_is_registered_with_normalised_details_and_active() {
    let mut submitted = details();
    submitted.name = "  Dr. Ada Lovelace ".into();
    submitted.email = " Ada@Example.ORG ".into();
    submitted.specialty = " Cardiology ".into();
    submitted.states = vec![state("TX"), state("CA"), state("TX")];
    let then = given_physician(&[])
        .when(register_physician(submitted), today())
        .then([physician_registered()]);
    let physician = then.state();
    assert!(physician.exists());
    assert!(physician.active);
    assert_eq!(physician.npi, Some(npi()));
    assert_eq!(physician.states, [state("CA"), state("TX")]);
}

#[test]
fn an_npi_is_registered_once() {
    let refusal = given_physician(&[physician_registered()])
        .when(register_physician(details()), today())
        .then_err(PhysicianError::NpiTaken { npi: npi() });
    assert!(refusal.to_string().contains("1234567893"));
}

#[test]
fn the_physician_stream_id_follows_the_npi() {
    let other = Npi::parse("1245319599").expect("a valid NPI");
    assert_eq!(Physician::stream_id(&npi()), Physician::stream_id(&npi()));
    assert_ne!(Physician::stream_id(&npi()), Physician::stream_id(&other));
}

fn refused_field(details: PhysicianDetails) -> Option<&'static str> {
    let registering = given_physician(&[]).when(register_physician(details.clone()), today());
    let updating = given_physician(&[physician_registered()])
        .when(PhysicianCommand::Update { details }, today());
    match (registering.outcome(), updating.outcome()) {
        (
            Err(PhysicianError::InvalidField { field, .. }),
            Err(PhysicianError::InvalidField { field: same, .. }),
        ) if field == same => Some(*field),
        (Ok(_), Ok(_)) => None,
        other => panic!("register and update disagree: {other:?}"),
    }
}

#[test]
fn a_physician_needs_a_name_of_1_to_200_characters() {
    for name in ["".to_owned(), "   ".to_owned(), "é".repeat(201)] {
        assert_eq!(
            refused_field(PhysicianDetails { name, ..details() }),
            Some("name")
        );
    }
    assert_eq!(
        refused_field(PhysicianDetails {
            name: "é".repeat(200),
            ..details()
        }),
        None
    );
}

#[test]
fn a_physician_needs_an_email_address() {
    for email in [
        "",
        "ada",
        "ada@",
        "@example.org",
        "ada@example",
        "ada lovelace@example.org",
        "ada.example.org",
    ] {
        assert_eq!(
            refused_field(PhysicianDetails {
                email: email.into(),
                ..details()
            }),
            Some("email"),
            "{email:?}"
        );
    }
    let message = given_physician(&[])
        .when(
            register_physician(PhysicianDetails {
                email: "ada".into(),
                ..details()
            }),
            today(),
        )
        .then_refused()
        .to_string();
    assert_eq!(message, "email: not an e-mail address");
}

#[test]
fn a_physician_needs_a_specialty() {
    assert_eq!(
        refused_field(PhysicianDetails {
            specialty: " ".into(),
            ..details()
        }),
        Some("specialty")
    );
}

#[test]
fn commands_on_an_unregistered_physician_find_nothing() {
    for command in [
        PhysicianCommand::Update { details: details() },
        PhysicianCommand::Deactivate,
        PhysicianCommand::Reactivate,
    ] {
        given_physician(&[])
            .when(command, today())
            .then_err(PhysicianError::NotFound);
    }
}

#[test]
fn updating_a_physician_replaces_the_details() {
    let changed = PhysicianDetails {
        specialty: "Electrophysiology".into(),
        ..details()
    };
    let then = given_physician(&[physician_registered()])
        .when(PhysicianCommand::Update { details: changed }, today())
        .then([PhysicianEvent::PhysicianUpdated {
            name: "Dr. Ada Lovelace".into(),
            email: "ada@example.org".into(),
            specialty: "Electrophysiology".into(),
            states: vec![state("CA"), state("TX")],
        }]);
    let physician = then.state();
    assert_eq!(physician.specialty, "Electrophysiology");
    assert_eq!(physician.npi, Some(npi()), "the NPI never changes");
}

#[test]
fn updating_a_physician_with_the_same_details_is_refused() {
    let physician = given_physician(&[physician_registered()]);
    let same_after_normalising = PhysicianDetails {
        name: " Dr. Ada Lovelace".into(),
        email: "ADA@example.org ".into(),
        specialty: "Cardiology ".into(),
        states: vec![state("TX"), state("CA"), state("CA")],
    };
    for same in [details(), same_after_normalising] {
        physician
            .when(PhysicianCommand::Update { details: same }, today())
            .then_err(PhysicianError::Unchanged);
    }
}

#[test]
fn a_physician_cannot_be_deactivated_twice() {
    let inactive = given_physician(&[physician_registered()])
        .when(PhysicianCommand::Deactivate, today())
        .then([PhysicianEvent::PhysicianDeactivated {}])
        .into_given();
    assert!(!inactive.state().active);
    inactive
        .when(PhysicianCommand::Deactivate, today())
        .then_err(PhysicianError::AlreadyInactive);
}

#[test]
fn only_an_inactive_physician_can_be_reactivated() {
    given_physician(&[physician_registered()])
        .when(PhysicianCommand::Reactivate, today())
        .then_err(PhysicianError::AlreadyActive);
    let then = given_physician(&[
        physician_registered(),
        PhysicianEvent::PhysicianDeactivated {},
    ])
    .when(PhysicianCommand::Reactivate, today())
    .then([PhysicianEvent::PhysicianReactivated {}]);
    assert!(then.state().active);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_check_digit_completes_any_nine_digits_into_the_only_valid_npi(first_nine in "[0-9]{9}") {
            let check = Npi::check_digit(&first_nine).expect("nine digits have a check digit");
            for d in 0..=9u8 {
                let value = format!("{first_nine}{d}");
                prop_assert_eq!(Npi::parse(&value).is_ok(), d == check, "{}", value);
            }
        }
    }
}
