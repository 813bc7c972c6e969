//! The renewal lifecycle as specifications: given past events, when a command is decided, then
//! these events (or this error). See `DOMAIN.md`, "Credentials and renewals".
//!
//! The property tests at the end drive random command sequences through `decide`/`evolve` and
//! check the invariants after every step.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use domain::credential::CredentialKind;
use domain::jurisdiction::{self, Jurisdiction};
use domain::renewal::{
    checklist_for, ChecklistItem, CredentialFacts, Origin, Renewal, RenewalCommand, RenewalError,
    RenewalEvent, RenewalStatus, DEA_FEE_CENTS,
};
use domain::testing::{Given, Spec};
use domain::{fold, Aggregate};
use uuid::Uuid;

use RenewalStatus::{
    Approved, Cancelled, Expired, Filed, InProgress, NotStarted, Rejected, UnderReview,
};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const CREDENTIAL: Uuid = Uuid::from_u128(0xC0);
const PHYSICIAN: Uuid = Uuid::from_u128(0xD0);

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid calendar date")
}

/// Noon UTC on `day`.
fn at(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(12, 0, 0).expect("a valid time").and_utc()
}

fn days(n: i64) -> Duration {
    Duration::days(n)
}

fn state(code: &str) -> Jurisdiction {
    Jurisdiction::parse(code).expect("a US state code")
}

/// The credential's expiry in most tests: its last valid day.
fn expiry() -> NaiveDate {
    date(2026, 6, 30)
}

/// When the renewal was initiated.
fn initiated_at() -> DateTime<Utc> {
    at(date(2026, 4, 1))
}

/// A day well inside the renewal's working period.
fn today() -> DateTime<Utc> {
    at(date(2026, 4, 15))
}

/// The first day after the credential's expiry.
fn after_expiry() -> DateTime<Utc> {
    at(date(2026, 7, 1))
}

fn facts(kind: CredentialKind, jurisdiction: &str, has_state_csr: bool) -> CredentialFacts {
    CredentialFacts {
        credential_id: CREDENTIAL,
        physician_id: PHYSICIAN,
        kind,
        jurisdiction: state(jurisdiction),
        expiry: expiry(),
        has_state_csr,
    }
}

fn licence() -> CredentialFacts {
    facts(CredentialKind::License, "TX", false)
}

fn initiated(facts: &CredentialFacts) -> RenewalEvent {
    RenewalEvent::RenewalInitiated {
        credential_id: facts.credential_id,
        physician_id: facts.physician_id,
        kind: facts.kind,
        jurisdiction: facts.jurisdiction,
        credential_expiry: facts.expiry,
        checklist: checklist_for(facts),
        origin: Origin::Manual,
        at: initiated_at(),
    }
}

fn given(events: &[RenewalEvent]) -> Renewal {
    fold(events)
}

fn completed(item: &str) -> RenewalEvent {
    RenewalEvent::ChecklistItemCompleted {
        item: item.to_owned(),
        at: today(),
    }
}

fn required_keys(facts: &CredentialFacts) -> Vec<String> {
    checklist_for(facts)
        .into_iter()
        .filter(|i| i.required)
        .map(|i| i.key)
        .collect()
}

fn all_required_completed(facts: &CredentialFacts) -> Vec<RenewalEvent> {
    required_keys(facts).iter().map(|k| completed(k)).collect()
}

/// A licence renewal's history that leaves it in `status` by the usual path. In progress and
/// rejected renewals have every required item done, so they could be filed.
fn history(status: RenewalStatus) -> Vec<RenewalEvent> {
    use RenewalEvent as E;
    let f = licence();
    let t = today();
    let mut events = vec![initiated(&f)];
    let in_progress = |events: &mut Vec<RenewalEvent>| {
        events.push(E::RenewalStarted { at: t });
        events.extend(all_required_completed(&f));
    };
    let under_review = |events: &mut Vec<RenewalEvent>| {
        in_progress(events);
        events.push(E::RenewalFiled { at: t });
        events.push(E::RenewalReviewStarted { at: t });
    };
    match status {
        NotStarted => {}
        InProgress => in_progress(&mut events),
        Filed => {
            in_progress(&mut events);
            events.push(E::RenewalFiled { at: t });
        }
        UnderReview => under_review(&mut events),
        Approved => {
            under_review(&mut events);
            events.push(E::RenewalApproved {
                new_expiry: date(2028, 6, 30),
                at: t,
            });
        }
        Rejected => {
            under_review(&mut events);
            events.push(E::RenewalRejected {
                reason: "missing CME certificate".into(),
                at: t,
            });
        }
        Expired => events.push(E::RenewalExpired { at: after_expiry() }),
        Cancelled => events.push(E::RenewalCancelled {
            reason: "physician left the practice".into(),
            at: t,
        }),
    }
    events
}

fn in_state(status: RenewalStatus) -> Renewal {
    let renewal = given(&history(status));
    assert_eq!(renewal.status, Some(status), "fixture for {status}");
    renewal
}

/// The past of a licence renewal now in `status`, to decide commands against.
fn past(status: RenewalStatus) -> Given<Renewal> {
    let past = Renewal::given(history(status));
    assert_eq!(past.state().status, Some(status), "fixture for {status}");
    past
}

fn reject() -> RenewalCommand {
    RenewalCommand::Reject {
        reason: "missing CME certificate".into(),
    }
}

fn cancel() -> RenewalCommand {
    RenewalCommand::Cancel {
        reason: "duplicate of another renewal".into(),
    }
}

fn complete(item: &str) -> RenewalCommand {
    RenewalCommand::CompleteItem {
        item: item.to_owned(),
    }
}

const OPEN_STATES: [RenewalStatus; 5] = [NotStarted, InProgress, Filed, UnderReview, Rejected];
const CLOSED_STATES: [RenewalStatus; 3] = [Approved, Expired, Cancelled];

/// The lifecycle of `DOMAIN.md`, written out independently of `allowed_next`.
fn lifecycle(from: RenewalStatus) -> Vec<RenewalStatus> {
    match from {
        NotStarted => vec![InProgress, Expired, Cancelled],
        InProgress => vec![Filed, Expired, Cancelled],
        Filed => vec![UnderReview, Expired, Cancelled],
        UnderReview => vec![Approved, Rejected, Expired, Cancelled],
        Rejected => vec![InProgress, Expired, Cancelled],
        Approved | Expired | Cancelled => vec![],
    }
}

/// "from <state> it may go to: <allowed>", as every refusal must say.
fn names_state_and_allowed(from: RenewalStatus) -> String {
    let allowed = lifecycle(from);
    let list = if allowed.is_empty() {
        "none (it is closed)".to_owned()
    } else {
        allowed
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("from {from} it may go to: {list}")
}

// ---------------------------------------------------------------------------------------------
// Initiation
// ---------------------------------------------------------------------------------------------

#[test]
fn initiating_a_renewal_records_its_credential_and_the_checklist_for_its_kind() {
    let f = facts(CredentialKind::Dea, "CA", true);
    let then = Renewal::given([])
        .when(
            RenewalCommand::Initiate {
                credential: f,
                origin: Origin::Scan,
            },
            initiated_at(),
        )
        .then([RenewalEvent::RenewalInitiated {
            credential_id: CREDENTIAL,
            physician_id: PHYSICIAN,
            kind: CredentialKind::Dea,
            jurisdiction: state("CA"),
            credential_expiry: expiry(),
            checklist: checklist_for(&f),
            origin: Origin::Scan,
            at: initiated_at(),
        }]);
    let renewal = then.state();
    assert_eq!(renewal.status, Some(NotStarted));
    assert_eq!(renewal.credential_id, CREDENTIAL);
    assert_eq!(renewal.physician_id, PHYSICIAN);
    assert_eq!(renewal.kind, Some(CredentialKind::Dea));
    assert_eq!(renewal.jurisdiction, Some(state("CA")));
    assert_eq!(renewal.credential_expiry, Some(expiry()));
    assert_eq!(renewal.origin, Some(Origin::Scan));
    assert_eq!(renewal.initiated_at, Some(initiated_at()));
    assert!(renewal.completed.is_empty());
}

#[test]
fn a_renewal_is_initiated_only_once_whatever_its_state() {
    for status in RenewalStatus::ALL {
        let command = RenewalCommand::Initiate {
            credential: licence(),
            origin: Origin::Manual,
        };
        past(status)
            .when(command, today())
            .case(format!("initiate on a {status} renewal"))
            .then_err(RenewalError::AlreadyInitiated);
    }
}

#[test]
fn a_renewal_that_was_never_initiated_is_not_found_by_any_other_command() {
    let commands = [
        RenewalCommand::Start,
        complete("submit"),
        RenewalCommand::File,
        RenewalCommand::BeginReview,
        RenewalCommand::Approve { new_expiry: None },
        reject(),
        RenewalCommand::Resubmit,
        RenewalCommand::Expire,
        cancel(),
    ];
    let never_initiated = Renewal::given([]);
    for command in commands {
        never_initiated
            .when(command, after_expiry())
            .then_err(RenewalError::NotFound);
    }
    assert_eq!(never_initiated.state().progress(), 0);
    assert_eq!(never_initiated.state().next_action(), None);
    assert_eq!(never_initiated.state().timeline(), None);
}

// ---------------------------------------------------------------------------------------------
// Allowed transitions
// ---------------------------------------------------------------------------------------------

#[test]
fn a_not_started_renewal_can_be_started() {
    let then = past(NotStarted)
        .when(RenewalCommand::Start, today())
        .then([RenewalEvent::RenewalStarted { at: today() }]);
    assert_eq!(then.state().status, Some(InProgress));
    assert_eq!(then.state().started_at, Some(today()));
}

#[test]
fn an_in_progress_renewal_can_be_filed_once_every_required_item_is_done() {
    let in_progress = past(InProgress);
    assert!(in_progress.state().open_required_items().is_empty());
    let then = in_progress
        .when(RenewalCommand::File, today())
        .then([RenewalEvent::RenewalFiled { at: today() }]);
    assert_eq!(then.state().status, Some(Filed));
    assert_eq!(then.state().filed_at, Some(today()));
}

#[test]
fn renewal_cannot_be_filed_while_required_items_are_open() {
    let f = licence();
    let open = vec![
        "gather_documents".to_owned(),
        "complete_application".to_owned(),
        "malpractice_insurance".to_owned(),
        "pay_fee".to_owned(),
        "submit".to_owned(),
    ];
    let refusal = Renewal::given([
        initiated(&f),
        RenewalEvent::RenewalStarted { at: today() },
        completed("review_requirements"),
        completed("complete_cme"),
    ])
    .when(RenewalCommand::File, today())
    .then_err(RenewalError::RequiredItemsOpen {
        items: open.clone(),
    });
    let message = refusal.to_string();
    assert!(
        message.contains(&open.join(", ")),
        "message lists the open items in checklist order: {message}"
    );
}

#[test]
fn renewal_cannot_be_filed_with_a_single_required_item_open() {
    let f = licence();
    let mut events = vec![initiated(&f), RenewalEvent::RenewalStarted { at: today() }];
    events.extend(
        required_keys(&f)
            .iter()
            .filter(|k| *k != "submit")
            .map(|k| completed(k)),
    );
    Renewal::given(events)
        .when(RenewalCommand::File, today())
        .then_err(RenewalError::RequiredItemsOpen {
            items: vec!["submit".into()],
        });
}

#[test]
fn optional_items_are_not_needed_to_file() {
    for f in [
        licence(),
        facts(CredentialKind::Csr, "WA", false),
        facts(CredentialKind::Dea, "TX", true),
        facts(CredentialKind::Dea, "TX", false),
    ] {
        let mut events = vec![initiated(&f), RenewalEvent::RenewalStarted { at: today() }];
        events.extend(all_required_completed(&f));
        let given = Renewal::given(events);
        let renewal = given.state();
        assert!(
            renewal
                .checklist
                .iter()
                .filter(|i| !i.required)
                .all(|i| !renewal.is_completed(&i.key)),
            "optional items are still open"
        );
        given
            .when(RenewalCommand::File, today())
            .case(format!("{:?}", f.kind))
            .then_ok();
    }
}

#[test]
fn a_filed_renewal_can_go_under_review() {
    let then = past(Filed)
        .when(RenewalCommand::BeginReview, today())
        .then([RenewalEvent::RenewalReviewStarted { at: today() }]);
    assert_eq!(then.state().status, Some(UnderReview));
    assert_eq!(then.state().review_started_at, Some(today()));
}

#[test]
fn a_renewal_under_review_can_be_approved() {
    let command = RenewalCommand::Approve {
        new_expiry: Some(date(2028, 7, 31)),
    };
    let then = past(UnderReview)
        .when(command, today())
        .then([RenewalEvent::RenewalApproved {
            new_expiry: date(2028, 7, 31),
            at: today(),
        }]);
    assert_eq!(then.state().status, Some(Approved));
    assert_eq!(then.state().approved_at, Some(today()));
    assert_eq!(then.state().new_expiry, Some(date(2028, 7, 31)));
}

#[test]
fn a_renewal_under_review_can_be_rejected_with_a_reason() {
    let command = RenewalCommand::Reject {
        reason: "  missing CME certificate \n".into(),
    };
    let then = past(UnderReview)
        .when(command, today())
        .case("the reason is trimmed")
        .then([RenewalEvent::RenewalRejected {
            reason: "missing CME certificate".into(),
            at: today(),
        }]);
    assert_eq!(then.state().status, Some(Rejected));
    assert_eq!(then.state().rejected_at, Some(today()));
    assert_eq!(
        then.state().rejection_reason.as_deref(),
        Some("missing CME certificate")
    );
}

#[test]
fn rejected_renewal_can_be_resubmitted() {
    let then = past(Rejected)
        .when(RenewalCommand::Resubmit, today())
        .then([RenewalEvent::RenewalResubmitted { at: today() }]);
    assert_eq!(then.state().status, Some(InProgress));
    assert_eq!(then.state().resubmissions, 1);
}

#[test]
fn starting_a_rejected_renewal_resubmits_it() {
    let then = past(Rejected)
        .when(RenewalCommand::Start, today())
        .then([RenewalEvent::RenewalResubmitted { at: today() }]);
    assert_eq!(then.state().status, Some(InProgress));
    assert_eq!(then.state().resubmissions, 1);
}

#[test]
fn a_resubmitted_renewal_keeps_its_completed_items_and_can_be_filed_and_rejected_again() {
    let mut renewal = past(Rejected);
    for round in 1..=3 {
        let resubmitted = renewal.when(RenewalCommand::Resubmit, today()).then_ok();
        assert_eq!(resubmitted.state().resubmissions, round);
        assert!(resubmitted.state().open_required_items().is_empty());
        renewal = resubmitted
            .and_when(RenewalCommand::File, today())
            .then_ok()
            .and_when(RenewalCommand::BeginReview, today())
            .then_ok()
            .and_when(reject(), today())
            .then_ok()
            .into_given();
    }
    let then = renewal
        .when(RenewalCommand::Start, today())
        .then_ok()
        .and_when(RenewalCommand::File, today())
        .then_ok()
        .and_when(RenewalCommand::BeginReview, today())
        .then_ok()
        .and_when(RenewalCommand::Approve { new_expiry: None }, today())
        .then_ok();
    assert_eq!(then.state().status, Some(Approved));
    assert_eq!(then.state().resubmissions, 4);
}

#[test]
fn every_open_renewal_expires_once_the_credential_expiry_has_passed() {
    for status in OPEN_STATES {
        let then = past(status)
            .when(RenewalCommand::Expire, after_expiry())
            .case(format!("a {status} renewal should expire"))
            .then([RenewalEvent::RenewalExpired { at: after_expiry() }]);
        assert_eq!(then.state().status, Some(Expired), "from {status}");
        assert_eq!(then.state().expired_at, Some(after_expiry()));
    }
}

#[test]
fn a_renewal_cannot_expire_until_the_day_after_the_expiry_date() {
    let last_valid_moment = expiry()
        .and_hms_opt(23, 59, 59)
        .expect("a valid time")
        .and_utc();
    let first_expired_moment = (expiry() + days(1))
        .and_hms_opt(0, 0, 0)
        .expect("a valid time")
        .and_utc();
    for status in OPEN_STATES {
        let renewal = past(status);
        for now in [today(), at(expiry()), last_valid_moment] {
            let refusal = renewal
                .when(RenewalCommand::Expire, now)
                .case(format!("a {status} renewal at {now}"))
                .then_err(RenewalError::NotYetExpired { expiry: expiry() });
            assert!(refusal.to_string().contains("2026-06-30"));
        }
        renewal
            .when(RenewalCommand::Expire, first_expired_moment)
            .case(format!(
                "a {status} renewal expires at {first_expired_moment}"
            ))
            .then_ok();
    }
}

#[test]
fn every_open_renewal_can_be_cancelled_with_a_reason() {
    for status in OPEN_STATES {
        let then = past(status)
            .when(cancel(), today())
            .case(format!("a {status} renewal should cancel"))
            .then([RenewalEvent::RenewalCancelled {
                reason: "duplicate of another renewal".into(),
                at: today(),
            }]);
        assert_eq!(then.state().status, Some(Cancelled), "from {status}");
        assert_eq!(then.state().cancelled_at, Some(today()));
        assert_eq!(
            then.state().cancel_reason.as_deref(),
            Some("duplicate of another renewal")
        );
    }
}

#[test]
fn rejection_and_cancellation_need_a_reason_of_1_to_1000_characters() {
    let too_long = "x".repeat(1001);
    let bad = ["", "   ", "\n\t", too_long.as_str()];
    for reason in bad {
        let reason = reason.to_owned();
        past(UnderReview)
            .when(
                RenewalCommand::Reject {
                    reason: reason.clone(),
                },
                today(),
            )
            .then_err(RenewalError::InvalidReason);
        past(InProgress)
            .when(RenewalCommand::Cancel { reason }, today())
            .then_err(RenewalError::InvalidReason);
    }
    // 1000 characters (not bytes) is the limit, after trimming.
    let longest = format!("  {}  ", "é".repeat(1000));
    past(UnderReview)
        .when(
            RenewalCommand::Reject {
                reason: longest.clone(),
            },
            today(),
        )
        .then_ok();
    past(InProgress)
        .when(RenewalCommand::Cancel { reason: longest }, today())
        .then_ok();
    assert!(RenewalError::InvalidReason.to_string().contains("reason"));
}

// ---------------------------------------------------------------------------------------------
// Refused transitions
// ---------------------------------------------------------------------------------------------

#[test]
fn allowed_next_is_exactly_the_documented_lifecycle() {
    for status in RenewalStatus::ALL {
        assert_eq!(
            status.allowed_next(),
            lifecycle(status).as_slice(),
            "{status}"
        );
        assert_eq!(status.is_open(), !lifecycle(status).is_empty(), "{status}");
    }
    assert_eq!(
        RenewalStatus::ALL
            .iter()
            .filter(|s| s.is_open())
            .copied()
            .collect::<Vec<_>>(),
        OPEN_STATES
    );
}

/// Every transition command, with the state it asks for.
fn transition_commands() -> Vec<(RenewalCommand, RenewalStatus)> {
    vec![
        (RenewalCommand::Start, InProgress),
        (RenewalCommand::File, Filed),
        (RenewalCommand::BeginReview, UnderReview),
        (RenewalCommand::Approve { new_expiry: None }, Approved),
        (reject(), Rejected),
        (RenewalCommand::Resubmit, InProgress),
        (RenewalCommand::Expire, Expired),
        (cancel(), Cancelled),
    ]
}

/// Which (state, command) pairs the lifecycle allows: every arrow of `DOMAIN.md`, plus `Start`
/// on a rejected renewal (which resubmits it). `Resubmit` is only for rejected renewals.
fn command_allowed(from: RenewalStatus, command: &RenewalCommand) -> bool {
    use RenewalCommand as C;
    match command {
        C::Resubmit => from == Rejected,
        C::Start => matches!(from, NotStarted | Rejected),
        C::File => from == InProgress,
        C::BeginReview => from == Filed,
        C::Approve { .. } | C::Reject { .. } => from == UnderReview,
        C::Expire | C::Cancel { .. } => from.is_open(),
        C::Initiate { .. } | C::CompleteItem { .. } => false,
    }
}

#[test]
fn every_state_and_transition_command_is_allowed_or_refused_naming_the_state_and_its_options() {
    let mut allowed = 0;
    let mut refused = 0;
    for from in RenewalStatus::ALL {
        let renewal = past(from);
        for (command, to) in transition_commands() {
            let is_allowed = command_allowed(from, &command);
            let expected_refusal = match command {
                RenewalCommand::Resubmit => RenewalError::NotRejected { status: from },
                _ => RenewalError::TransitionRefused { from, to },
            };
            // After the expiry date, so that `Expire` is decided on the state alone.
            let decided = renewal
                .when(command, after_expiry())
                .case(format!("on {from}"));
            if is_allowed {
                allowed += 1;
                assert!(
                    lifecycle(from).contains(&to),
                    "the test's table allows {from} → {to}"
                );
                let then = decided.then_ok();
                assert_eq!(then.state().status, Some(to), "on {from}");
                assert_eq!(
                    then.state(),
                    &fold::<Renewal>(then.history()),
                    "evolving the new events equals replaying the whole history"
                );
            } else {
                refused += 1;
                let message = decided.then_err(expected_refusal).to_string();
                assert!(
                    message.contains(&names_state_and_allowed(from)),
                    "on {from}: {message:?} should say {:?}",
                    names_state_and_allowed(from)
                );
            }
        }
    }
    assert_eq!((allowed, refused), (17, 47));
}

#[test]
fn a_refused_transition_says_where_the_renewal_is_and_where_it_may_go() {
    assert_eq!(
        past(NotStarted)
            .when(RenewalCommand::File, today())
            .then_refused()
            .to_string(),
        "a renewal cannot go from not_started to filed; from not_started it may go to: \
         in_progress, expired, cancelled"
    );
    assert_eq!(
        past(Approved)
            .when(cancel(), today())
            .then_refused()
            .to_string(),
        "a renewal cannot go from approved to cancelled; from approved it may go to: \
         none (it is closed)"
    );
}

#[test]
fn renewal_cannot_be_approved_or_rejected_before_review() {
    for from in [NotStarted, InProgress, Filed, Rejected] {
        past(from)
            .when(RenewalCommand::Approve { new_expiry: None }, today())
            .then_err(RenewalError::TransitionRefused { from, to: Approved });
        past(from)
            .when(reject(), today())
            .then_err(RenewalError::TransitionRefused { from, to: Rejected });
    }
}

#[test]
fn only_a_rejected_renewal_can_be_resubmitted() {
    for status in RenewalStatus::ALL.into_iter().filter(|s| *s != Rejected) {
        let message = past(status)
            .when(RenewalCommand::Resubmit, today())
            .then_err(RenewalError::NotRejected { status })
            .to_string();
        assert!(message.contains("only a rejected renewal can be resubmitted"));
        assert!(message.contains(&format!("it is {status}")), "{message}");
        assert!(
            message.contains(&names_state_and_allowed(status)),
            "{message}"
        );
    }
}

#[test]
fn a_refused_resubmission_of_a_not_started_renewal_does_not_contradict_itself() {
    // in_progress *is* allowed from not_started (by Start); the refusal must not claim otherwise.
    let message = past(NotStarted)
        .when(RenewalCommand::Resubmit, today())
        .then_refused()
        .to_string();
    assert!(
        !message.contains("cannot go from not_started to in_progress"),
        "{message}"
    );
}

#[test]
fn the_expiry_check_comes_after_the_state_check() {
    // A closed renewal is refused as closed, not as "not yet expired".
    for from in CLOSED_STATES {
        past(from)
            .when(RenewalCommand::Expire, today())
            .then_err(RenewalError::TransitionRefused { from, to: Expired });
    }
}

#[test]
fn a_closed_renewal_refuses_every_command() {
    let commands = [
        RenewalCommand::Initiate {
            credential: licence(),
            origin: Origin::Scan,
        },
        RenewalCommand::Start,
        complete("submit"),
        complete("background_check"),
        RenewalCommand::File,
        RenewalCommand::BeginReview,
        RenewalCommand::Approve { new_expiry: None },
        reject(),
        RenewalCommand::Resubmit,
        RenewalCommand::Expire,
        cancel(),
    ];
    for status in CLOSED_STATES {
        let renewal = past(status);
        for command in &commands {
            renewal
                .when(command.clone(), after_expiry())
                .case(format!("on a {status} renewal"))
                .then_refused();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checklists
// ---------------------------------------------------------------------------------------------

/// (key, required, days before expiry it is due, fee in cents)
type Expected = (&'static str, bool, Option<i64>, Option<i64>);

fn assert_checklist(checklist: &[ChecklistItem], expected: &[Expected]) {
    let actual: Vec<_> = checklist
        .iter()
        .map(|i| {
            (
                i.key.as_str(),
                i.required,
                i.due.map(|d| (expiry() - d).num_days()),
                i.fee_cents,
            )
        })
        .collect();
    assert_eq!(actual, expected);
    for item in checklist {
        assert!(!item.title.trim().is_empty(), "{} has a title", item.key);
    }
}

#[test]
fn licence_checklist_has_seven_required_items_and_an_optional_background_check() {
    assert_checklist(
        &checklist_for(&licence()),
        &[
            ("review_requirements", true, Some(75), None),
            ("gather_documents", true, Some(60), None),
            ("complete_cme", true, Some(60), None),
            ("complete_application", true, Some(30), None),
            ("malpractice_insurance", true, Some(30), None),
            ("pay_fee", true, Some(30), None),
            ("submit", true, Some(30), None),
            ("background_check", false, None, None),
        ],
    );
}

#[test]
fn dea_checklist_asks_to_verify_the_state_csr_when_the_physician_holds_one() {
    assert_checklist(
        &checklist_for(&facts(CredentialKind::Dea, "TX", true)),
        &[
            ("review_requirements", true, Some(75), None),
            ("gather_documents", true, Some(60), None),
            ("dea_form_224a", true, Some(30), None),
            ("state_license_active", true, Some(30), None),
            ("state_csr_current", true, Some(30), None),
            ("pay_fee", true, Some(30), Some(88_800)),
            ("submit_online", true, Some(30), None),
            ("submit", true, Some(30), None),
        ],
    );
}

#[test]
fn dea_checklist_has_no_state_csr_item_when_the_physician_holds_none() {
    assert_checklist(
        &checklist_for(&facts(CredentialKind::Dea, "WA", false)),
        &[
            ("review_requirements", true, Some(75), None),
            ("gather_documents", true, Some(60), None),
            ("dea_form_224a", true, Some(30), None),
            ("state_license_active", true, Some(30), None),
            ("pay_fee", true, Some(30), Some(88_800)),
            ("submit_online", true, Some(30), None),
            ("submit", true, Some(30), None),
        ],
    );
}

#[test]
fn csr_checklist_has_annual_mate_training_and_an_optional_prescribing_course() {
    assert_checklist(
        &checklist_for(&facts(CredentialKind::Csr, "NY", false)),
        &[
            ("review_requirements", true, Some(75), None),
            ("gather_documents", true, Some(60), None),
            ("state_application", true, Some(30), None),
            ("mate_training", true, Some(60), None),
            ("pay_fee", true, Some(30), None),
            ("sign_attestation", true, Some(30), None),
            ("submit", true, Some(30), None),
            ("prescribing_course", false, None, None),
        ],
    );
}

#[test]
fn the_dea_fee_is_888_dollars_and_the_only_known_fee() {
    assert_eq!(DEA_FEE_CENTS, 88_800);
    for kind in CredentialKind::ALL {
        for has_state_csr in [false, true] {
            for item in checklist_for(&facts(kind, "TX", has_state_csr)) {
                let expected =
                    (kind == CredentialKind::Dea && item.key == "pay_fee").then_some(DEA_FEE_CENTS);
                assert_eq!(item.fee_cents, expected, "{kind} {}", item.key);
            }
        }
    }
}

#[test]
fn holding_a_state_csr_only_changes_the_dea_checklist() {
    for kind in [CredentialKind::License, CredentialKind::Csr] {
        assert_eq!(
            checklist_for(&facts(kind, "TX", true)),
            checklist_for(&facts(kind, "TX", false)),
            "{kind}"
        );
    }
}

#[test]
fn checklist_keys_are_unique_and_due_dates_follow_the_expiry() {
    for kind in CredentialKind::ALL {
        for has_state_csr in [false, true] {
            let early = facts(kind, "FL", has_state_csr);
            let late = CredentialFacts {
                expiry: early.expiry + days(400),
                ..early
            };
            let (a, b) = (checklist_for(&early), checklist_for(&late));
            let mut keys: Vec<_> = a.iter().map(|i| i.key.as_str()).collect();
            keys.sort_unstable();
            keys.dedup();
            assert_eq!(keys.len(), a.len(), "{kind}: keys are unique");
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.key, y.key);
                assert_eq!(x.due.map(|d| d + days(400)), y.due, "{kind} {}", x.key);
                assert!(x.due.is_none_or(|d| d < early.expiry));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Completing checklist items
// ---------------------------------------------------------------------------------------------

#[test]
fn completing_an_item_on_a_not_started_renewal_also_starts_it() {
    let then = past(NotStarted)
        .when(complete("gather_documents"), today())
        .case("completing starts the renewal")
        .then([
            RenewalEvent::RenewalStarted { at: today() },
            RenewalEvent::ChecklistItemCompleted {
                item: "gather_documents".into(),
                at: today(),
            },
        ]);
    let renewal = then.state();
    assert_eq!(renewal.status, Some(InProgress));
    assert_eq!(renewal.started_at, Some(today()));
    assert_eq!(
        renewal.completed,
        [("gather_documents".to_owned(), today())]
    );
}

#[test]
fn completing_an_item_on_an_in_progress_renewal_only_completes_it() {
    Renewal::given([
        initiated(&licence()),
        RenewalEvent::RenewalStarted { at: today() },
    ])
    .when(complete("background_check"), today())
    .then([RenewalEvent::ChecklistItemCompleted {
        item: "background_check".into(),
        at: today(),
    }]);
}

#[test]
fn a_rejected_renewal_still_accepts_checklist_items_and_stays_rejected() {
    let then = past(Rejected)
        .when(complete("background_check"), today())
        .then_ok();
    assert_eq!(then.state().status, Some(Rejected));
    assert!(then.state().is_completed("background_check"));
}

#[test]
fn completing_an_unknown_item_is_refused() {
    let renewal = past(InProgress);
    for item in ["dea_form_224a", "SUBMIT", "", "submit "] {
        let refusal = renewal
            .when(complete(item), today())
            .case(format!("a licence has no item {item:?}"))
            .then_err(RenewalError::UnknownItem { item: item.into() });
        assert!(refusal.to_string().contains(&format!("{item:?}")));
    }
    // A not-started renewal is not started by an unknown item.
    past(NotStarted)
        .when(complete("nope"), today())
        .then_err(RenewalError::UnknownItem {
            item: "nope".into(),
        });
}

#[test]
fn an_unknown_item_is_named_in_the_error_but_cut_to_64_characters() {
    let long = "x".repeat(500);
    past(InProgress)
        .when(complete(&long), today())
        .then_err(RenewalError::UnknownItem {
            item: "x".repeat(64),
        });
}

#[test]
fn an_item_cannot_be_completed_twice() {
    let refusal = Renewal::given([
        initiated(&licence()),
        RenewalEvent::RenewalStarted { at: today() },
        completed("complete_cme"),
    ])
    .when(complete("complete_cme"), today())
    .then_err(RenewalError::ItemAlreadyComplete {
        item: "complete_cme".into(),
    });
    assert!(refusal.to_string().contains("complete_cme"));
}

#[test]
fn a_repeated_completion_event_is_recorded_once() {
    let renewal = given(&[
        initiated(&licence()),
        RenewalEvent::RenewalStarted { at: today() },
        completed("complete_cme"),
        RenewalEvent::ChecklistItemCompleted {
            item: "complete_cme".into(),
            at: today() + days(1),
        },
    ]);
    assert_eq!(renewal.completed, [("complete_cme".to_owned(), today())]);
}

#[test]
fn checklist_items_cannot_be_completed_once_filed_or_closed() {
    for status in [Filed, UnderReview, Approved, Expired, Cancelled] {
        let refusal = past(status)
            .when(complete("background_check"), today())
            .then_err(RenewalError::ChecklistClosed { status });
        assert!(refusal.to_string().contains(&format!("it is {status}")));
    }
}

// ---------------------------------------------------------------------------------------------
// Approval and the new expiry
// ---------------------------------------------------------------------------------------------

fn approved_by_default(kind: CredentialKind, jurisdiction: &str, expiry: NaiveDate) -> NaiveDate {
    let f = CredentialFacts {
        expiry,
        ..facts(kind, jurisdiction, false)
    };
    let mut events = vec![initiated(&f), RenewalEvent::RenewalStarted { at: today() }];
    events.extend(all_required_completed(&f));
    events.push(RenewalEvent::RenewalFiled { at: today() });
    events.push(RenewalEvent::RenewalReviewStarted { at: today() });
    let then = Renewal::given(events)
        .when(RenewalCommand::Approve { new_expiry: None }, today())
        .then_ok();
    match then.events() {
        [RenewalEvent::RenewalApproved { new_expiry, .. }] => *new_expiry,
        other => panic!("unexpected events {other:?}"),
    }
}

#[test]
fn approval_defaults_the_new_expiry_to_the_next_cycle() {
    let e = expiry();
    assert_eq!(
        approved_by_default(CredentialKind::Dea, "TX", e),
        date(2029, 6, 30),
        "DEA: 3 years"
    );
    assert_eq!(
        approved_by_default(CredentialKind::License, "TX", e),
        date(2028, 6, 30),
        "licence: 2 years"
    );
    for code in jurisdiction::ALL {
        let annual = jurisdiction::ANNUAL_CSR.contains(&code);
        let expected = if annual {
            date(2027, 6, 30)
        } else {
            date(2028, 6, 30)
        };
        assert_eq!(
            approved_by_default(CredentialKind::Csr, code, e),
            expected,
            "CSR in {code}"
        );
        // Licences and DEA registrations do not depend on the state.
        assert_eq!(
            approved_by_default(CredentialKind::License, code, e),
            date(2028, 6, 30)
        );
        assert_eq!(
            approved_by_default(CredentialKind::Dea, code, e),
            date(2029, 6, 30)
        );
    }
}

#[test]
fn annual_csr_states_are_the_ten_documented_ones() {
    let mut annual: Vec<_> = jurisdiction::ALL
        .into_iter()
        .filter(|c| state(c).csr_is_annual())
        .collect();
    annual.sort_unstable();
    assert_eq!(
        annual,
        ["CA", "FL", "GA", "IL", "MI", "NC", "NY", "OH", "PA", "TX"]
    );
}

#[test]
fn the_next_cycle_from_the_end_of_february_stays_in_february() {
    assert_eq!(
        approved_by_default(CredentialKind::Csr, "CA", date(2028, 2, 29)),
        date(2029, 2, 28)
    );
    assert_eq!(
        approved_by_default(CredentialKind::License, "WA", date(2028, 2, 29)),
        date(2030, 2, 28)
    );
}

#[test]
fn approval_refuses_a_new_expiry_that_is_not_after_the_current_one() {
    for new_expiry in [expiry(), expiry() - days(1), date(2020, 1, 1)] {
        let message = past(UnderReview)
            .when(
                RenewalCommand::Approve {
                    new_expiry: Some(new_expiry),
                },
                today(),
            )
            .then_err(RenewalError::NewExpiryNotLater {
                expiry: expiry(),
                new_expiry,
            })
            .to_string();
        assert!(message.contains(&new_expiry.to_string()) && message.contains("2026-06-30"));
    }
    past(UnderReview)
        .when(
            RenewalCommand::Approve {
                new_expiry: Some(expiry() + days(1)),
            },
            today(),
        )
        .then_ok();
}

// ---------------------------------------------------------------------------------------------
// Progress and next action
// ---------------------------------------------------------------------------------------------

#[test]
fn progress_per_state() {
    let expected = [
        (NotStarted, 0),
        (InProgress, 70),
        (Filed, 75),
        (UnderReview, 90),
        (Approved, 100),
        (Rejected, 70),
        (Expired, 0),
        (Cancelled, 0),
    ];
    for (status, progress) in expected {
        assert_eq!(in_state(status).progress(), progress, "{status}");
    }
}

#[test]
fn in_progress_counts_ten_plus_sixty_times_the_share_of_required_items_done() {
    let f = licence();
    let mut renewal = given(&[initiated(&f), RenewalEvent::RenewalStarted { at: today() }]);
    assert_eq!(renewal.progress(), 10);
    renewal = renewal.evolve(&completed("background_check"));
    assert_eq!(renewal.progress(), 10, "optional items do not count");
    let required = required_keys(&f);
    assert_eq!(required.len(), 7);
    let expected = [18, 27, 35, 44, 52, 61, 70];
    for (key, progress) in required.iter().zip(expected) {
        renewal = renewal.evolve(&completed(key));
        assert_eq!(renewal.progress(), progress, "after {key}");
        assert!(renewal.progress() < 75, "below filed");
    }
}

#[test]
fn a_rejected_renewal_counts_progress_like_an_in_progress_one() {
    let rejected = past(Rejected);
    let resubmitted = rejected.when(RenewalCommand::Resubmit, today()).then_ok();
    assert_eq!(rejected.state().progress(), resubmitted.state().progress());
}

#[test]
fn a_not_started_renewal_shows_no_progress_even_with_items_done() {
    // Only reachable through old events, but progress follows the status.
    let renewal = given(&[initiated(&licence()), completed("complete_cme")]);
    assert_eq!(renewal.status, Some(NotStarted));
    assert_eq!(renewal.progress(), 0);
}

#[test]
fn next_action_per_state() {
    let expected = [
        (NotStarted, Some("Begin renewal application")),
        (InProgress, Some("Complete renewal application")),
        (Filed, Some("Await state board review")),
        (UnderReview, Some("Respond to any board inquiries")),
        (Approved, None),
        (Rejected, Some("Review rejection and resubmit")),
        (
            Expired,
            Some("Credential has expired - immediate action required"),
        ),
        (Cancelled, None),
    ];
    for (status, action) in expected {
        assert_eq!(status.next_action(), action, "{status}");
        assert_eq!(in_state(status).next_action(), action, "{status}");
    }
}

// ---------------------------------------------------------------------------------------------
// Timeline
// ---------------------------------------------------------------------------------------------

#[test]
fn timeline_counts_back_from_the_expiry_and_estimates_review_a_week_after_filing() {
    let filed_late_at_night = date(2026, 5, 10)
        .and_hms_opt(23, 30, 0)
        .expect("a valid time")
        .and_utc();
    let mut events = history(InProgress);
    events.push(RenewalEvent::RenewalFiled {
        at: filed_late_at_night,
    });
    let timeline = given(&events).timeline().expect("an initiated renewal");
    assert_eq!(
        timeline.work_starts,
        Some(date(2026, 4, 1)),
        "90 days before"
    );
    assert_eq!(
        timeline.application_window_opens,
        Some(date(2026, 5, 1)),
        "60 days before"
    );
    assert_eq!(
        timeline.application_window_closes,
        Some(date(2026, 5, 31)),
        "30 days before"
    );
    assert_eq!(timeline.final_deadline, expiry());
    assert_eq!(timeline.initiated_at, initiated_at());
    assert_eq!(timeline.started_at, Some(today()));
    assert_eq!(timeline.filed_at, Some(filed_late_at_night));
    assert_eq!(
        timeline.estimated_review_complete,
        Some(date(2026, 5, 17)),
        "filed date + 7 days"
    );
    assert_eq!(timeline.review_started_at, None);
    assert_eq!(timeline.approved_at, None);
}

#[test]
fn timeline_has_no_review_estimate_before_filing() {
    for status in [NotStarted, Cancelled] {
        let timeline = in_state(status).timeline().expect("an initiated renewal");
        assert_eq!(timeline.filed_at, None);
        assert_eq!(timeline.estimated_review_complete, None);
    }
}

#[test]
fn timeline_records_when_each_step_happened() {
    let approved = in_state(Approved).timeline().expect("timeline");
    assert_eq!(approved.filed_at, Some(today()));
    assert_eq!(
        approved.estimated_review_complete,
        Some(today().date_naive() + days(7))
    );
    assert_eq!(approved.review_started_at, Some(today()));
    assert_eq!(approved.approved_at, Some(today()));
    let rejected = in_state(Rejected).timeline().expect("timeline");
    assert_eq!(rejected.rejected_at, Some(today()));
    assert_eq!(rejected.approved_at, None);
    let expired = in_state(Expired).timeline().expect("timeline");
    assert_eq!(expired.expired_at, Some(after_expiry()));
    let cancelled = in_state(Cancelled).timeline().expect("timeline");
    assert_eq!(cancelled.cancelled_at, Some(today()));
}

#[test]
fn a_refiled_renewal_estimates_review_from_the_latest_filing() {
    let refiled_at = today() + days(20);
    let refiled = past(Rejected)
        .when(RenewalCommand::Resubmit, refiled_at)
        .then_ok()
        .and_when(RenewalCommand::File, refiled_at)
        .then_ok();
    let timeline = refiled.state().timeline().expect("timeline");
    assert_eq!(timeline.filed_at, Some(refiled_at));
    assert_eq!(
        timeline.estimated_review_complete,
        Some(refiled_at.date_naive() + days(7))
    );
}

// ---------------------------------------------------------------------------------------------
// Statuses and stored events
// ---------------------------------------------------------------------------------------------

#[test]
fn statuses_have_stable_snake_case_names() {
    let names = [
        "not_started",
        "in_progress",
        "filed",
        "under_review",
        "approved",
        "rejected",
        "expired",
        "cancelled",
    ];
    for (status, name) in RenewalStatus::ALL.into_iter().zip(names) {
        assert_eq!(status.as_str(), name);
        assert_eq!(status.to_string(), name);
        assert_eq!(RenewalStatus::parse(name), Some(status));
        assert_eq!(
            serde_json::to_value(status).expect("serializes"),
            serde_json::json!(name)
        );
    }
    assert_eq!(RenewalStatus::parse("InProgress"), None);
}

#[test]
fn events_are_stored_as_type_and_data() {
    let event = RenewalEvent::RenewalRejected {
        reason: "missing CME certificate".into(),
        at: today(),
    };
    let json = serde_json::to_value(&event).expect("serializes");
    assert_eq!(json["type"], "RenewalRejected");
    assert_eq!(json["data"]["reason"], "missing CME certificate");
    for event in history(Approved) {
        let json = serde_json::to_string(&event).expect("serializes");
        let back: RenewalEvent = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, event);
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

mod properties {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;

    /// Keys some checklists have and others lack, and keys no checklist has.
    const OTHER_KEYS: [&str; 10] = [
        "complete_cme",
        "dea_form_224a",
        "state_csr_current",
        "mate_training",
        "background_check",
        "prescribing_course",
        "not_an_item",
        "",
        "SUBMIT",
        "pay_fee ",
    ];

    fn credential_facts() -> impl Strategy<Value = CredentialFacts> {
        (
            select(CredentialKind::ALL.to_vec()),
            select(jurisdiction::ALL.to_vec()),
            any::<bool>(),
            0i64..2000,
        )
            .prop_map(|(kind, code, has_state_csr, offset)| CredentialFacts {
                credential_id: CREDENTIAL,
                physician_id: PHYSICIAN,
                kind,
                jurisdiction: state(code),
                expiry: date(2025, 1, 1) + days(offset),
                has_state_csr,
            })
    }

    fn reason() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => Just("missing CME certificate".to_owned()),
            1 => Just(String::new()),
            1 => Just("   ".to_owned()),
            1 => Just("x".repeat(1001)),
            1 => "[ a-z]{0,12}",
        ]
    }

    /// An item key: mostly one of this renewal's checklist, sometimes any other.
    fn item_key(own: Vec<String>) -> impl Strategy<Value = String> {
        prop_oneof![
            5 => select(own),
            1 => select(OTHER_KEYS.to_vec()).prop_map(str::to_owned),
        ]
    }

    fn command(own_keys: Vec<String>) -> impl Strategy<Value = RenewalCommand> {
        use RenewalCommand as C;
        // Cancel and Expire close the renewal for good, so they are rare enough for most
        // sequences to reach review first.
        prop_oneof![
            6 => Just(C::Start),
            60 => item_key(own_keys).prop_map(|item| C::CompleteItem { item }),
            12 => Just(C::File),
            12 => Just(C::BeginReview),
            8 => prop::option::of(-400i64..1200).prop_map(|offset| C::Approve {
                // Around the expiries `credential_facts` produces: sometimes before, sometimes after.
                new_expiry: offset.map(|o| date(2026, 6, 1) + days(o)),
            }),
            10 => reason().prop_map(|reason| C::Reject { reason }),
            6 => Just(C::Resubmit),
            1 => Just(C::Expire),
            1 => reason().prop_map(|reason| C::Cancel { reason }),
            1 => credential_facts().prop_map(|credential| C::Initiate {
                credential,
                origin: Origin::Manual,
            }),
        ]
    }

    /// A credential, how many days before its expiry the renewal is initiated (negative: after),
    /// and commands, each with how far the clock moves (in hours) before it is decided.
    fn scenario() -> impl Strategy<Value = (CredentialFacts, i64, Vec<(RenewalCommand, i64)>)> {
        credential_facts().prop_flat_map(|facts| {
            let own_keys: Vec<String> = checklist_for(&facts).into_iter().map(|i| i.key).collect();
            (
                Just(facts),
                -10i64..150,
                prop::collection::vec((command(own_keys), 0i64..36), 10..150),
            )
        })
    }

    /// Every command kind, for checking that a closed renewal refuses them all.
    fn every_command(renewal: &Renewal) -> Vec<RenewalCommand> {
        let mut commands: Vec<RenewalCommand> =
            renewal.checklist.iter().map(|i| complete(&i.key)).collect();
        commands.extend([
            RenewalCommand::Start,
            RenewalCommand::File,
            RenewalCommand::BeginReview,
            RenewalCommand::Approve { new_expiry: None },
            RenewalCommand::Approve {
                new_expiry: Some(date(2100, 1, 1)),
            },
            reject(),
            RenewalCommand::Resubmit,
            RenewalCommand::Expire,
            cancel(),
            RenewalCommand::Initiate {
                credential: licence(),
                origin: Origin::Manual,
            },
        ]);
        commands
    }

    fn check_derived_views(renewal: &Renewal) {
        let status = renewal.status.expect("initiated");
        let progress = renewal.progress();
        match status {
            NotStarted | Expired | Cancelled => assert_eq!(progress, 0, "{status}"),
            InProgress | Rejected => {
                assert!((10..=70).contains(&progress), "{status}: {progress}");
                let required = renewal.checklist.iter().filter(|i| i.required).count();
                let done = required - renewal.open_required_items().len();
                assert_eq!(usize::from(progress), 10 + 60 * done / required);
            }
            Filed => assert_eq!(progress, 75),
            UnderReview => assert_eq!(progress, 90),
            Approved => assert_eq!(progress, 100),
        }
        assert_eq!(
            renewal.next_action().is_none(),
            matches!(status, Approved | Cancelled),
            "{status}"
        );
        assert_eq!(renewal.next_action(), status.next_action());
        // Completed items are checklist items, each once.
        for (i, (key, _)) in renewal.completed.iter().enumerate() {
            assert!(renewal.checklist.iter().any(|c| &c.key == key), "{key}");
            assert!(
                renewal.completed[..i].iter().all(|(k, _)| k != key),
                "{key} twice"
            );
        }
        let timeline = renewal.timeline().expect("an initiated renewal has one");
        assert_eq!(
            timeline.estimated_review_complete,
            renewal.filed_at.map(|t| t.date_naive() + days(7))
        );
        assert_eq!(
            timeline.final_deadline,
            renewal.credential_expiry.expect("expiry")
        );
    }

    /// The status a successful command must lead to.
    fn target(command: &RenewalCommand, from: RenewalStatus) -> RenewalStatus {
        use RenewalCommand as C;
        match command {
            C::Initiate { .. } => NotStarted,
            C::Start | C::Resubmit => InProgress,
            C::CompleteItem { .. } if from == NotStarted => InProgress,
            C::CompleteItem { .. } => from,
            C::File => Filed,
            C::BeginReview => UnderReview,
            C::Approve { .. } => Approved,
            C::Reject { .. } => Rejected,
            C::Expire => Expired,
            C::Cancel { .. } => Cancelled,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn every_command_sequence_keeps_the_renewal_invariants(
            (facts, lead_days, steps) in scenario(),
        ) {
            let mut now = at(facts.expiry) - days(lead_days);
            let mut accepted = Renewal::default()
                .decide(&RenewalCommand::Initiate { credential: facts, origin: Origin::Scan }, now)
                .expect("an empty renewal can be initiated");
            let mut renewal: Renewal = fold(&accepted);
            prop_assert_eq!(renewal.checklist.clone(), checklist_for(&facts));
            check_derived_views(&renewal);

            for (command, hours) in steps {
                now += Duration::hours(hours);
                let before = renewal.clone();
                let from = before.status.expect("initiated");
                let decided = renewal.decide(&command, now);
                // Deciding is a pure function of state, command and time.
                prop_assert_eq!(&decided, &renewal.decide(&command, now));
                match decided {
                    Ok(events) => {
                        // (d) a closed renewal accepts nothing.
                        prop_assert!(from.is_open(), "{:?} accepted on a {} renewal", command, from);
                        prop_assert!(!events.is_empty());
                        // (c) every status change is one the previous status allows.
                        let mut state = renewal.clone();
                        for event in &events {
                            let previous = state.status.expect("initiated");
                            state = state.evolve(event);
                            let next = state.status.expect("initiated");
                            if next != previous {
                                prop_assert!(
                                    previous.allowed_next().contains(&next),
                                    "{} → {} by {:?}", previous, next, event
                                );
                            }
                            // Stored events read back as written.
                            let json = serde_json::to_string(event).expect("serializes");
                            let back: RenewalEvent = serde_json::from_str(&json).expect("deserializes");
                            prop_assert_eq!(&back, event);
                        }
                        prop_assert_eq!(state.status, Some(target(&command, from)), "{:?}", command);
                        // (f) filing needs every required item done.
                        if state.status == Some(Filed) {
                            prop_assert!(state.open_required_items().is_empty());
                        }
                        if matches!(command, RenewalCommand::Expire) {
                            prop_assert!(now.date_naive() > facts.expiry);
                        }
                        accepted.extend(events);
                        renewal = state;
                    }
                    Err(error) => {
                        // (e) a refusal changes nothing.
                        prop_assert_eq!(&renewal, &before);
                        let message = error.to_string();
                        prop_assert!(!message.is_empty());
                        prop_assert_ne!(&error, &RenewalError::NotFound);
                        match &error {
                            RenewalError::TransitionRefused { from: f, to } => {
                                prop_assert_eq!(*f, from);
                                // Never "cannot go to X" where X is allowed.
                                prop_assert!(!from.allowed_next().contains(to), "{}", message);
                                prop_assert!(message.contains(&names_state_and_allowed(from)), "{}", message);
                            }
                            RenewalError::NotRejected { status } => {
                                prop_assert_eq!(*status, from);
                                prop_assert!(message.contains(&names_state_and_allowed(from)), "{}", message);
                            }
                            RenewalError::NotYetExpired { expiry } => {
                                prop_assert_eq!(*expiry, facts.expiry);
                                prop_assert!(now.date_naive() <= facts.expiry);
                            }
                            _ => {}
                        }
                    }
                }
                // (a) the state is explained by its events.
                prop_assert_eq!(&renewal, &fold::<Renewal>(&accepted));
                // (b) progress and next action follow the status.
                check_derived_views(&renewal);
                // (d) once closed, every command is refused, whenever it comes.
                if !renewal.status.expect("initiated").is_open() {
                    for command in every_command(&renewal) {
                        for later in [now, now + days(1000)] {
                            prop_assert!(
                                renewal.decide(&command, later).is_err(),
                                "{:?} accepted on a closed renewal", command
                            );
                        }
                    }
                }
            }
        }

        #[test]
        fn the_checklist_and_timeline_follow_the_credential_expiry(facts in credential_facts()) {
            let checklist = checklist_for(&facts);
            let required = checklist.iter().filter(|i| i.required).count();
            let expected_required = match facts.kind {
                CredentialKind::License => 7,
                CredentialKind::Dea if facts.has_state_csr => 8,
                CredentialKind::Dea => 7,
                CredentialKind::Csr => 7,
            };
            prop_assert_eq!(required, expected_required);
            for item in &checklist {
                if let Some(due) = item.due {
                    let before = (facts.expiry - due).num_days();
                    prop_assert!([30, 60, 75].contains(&before), "{} due {} days before", item.key, before);
                    prop_assert!(item.required);
                }
            }
            let renewal: Renewal = fold(&[initiated(&facts)]);
            let timeline = renewal.timeline().expect("timeline");
            prop_assert_eq!(timeline.work_starts, Some(facts.expiry - days(90)));
            prop_assert_eq!(timeline.application_window_opens, Some(facts.expiry - days(60)));
            prop_assert_eq!(timeline.application_window_closes, Some(facts.expiry - days(30)));
            prop_assert_eq!(timeline.final_deadline, facts.expiry);
        }
    }
}
