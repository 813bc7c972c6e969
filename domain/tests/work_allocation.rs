//! The allocation of one piece of work as specifications: given these events, when this
//! command, then these events (or this refusal). See `DOMAIN.md`, "Assignments and allocation".

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use domain::allocation::{
    allocate, AllocationDecision, Candidate, Factor, Weights, WeightsInput, WorkItem,
};
use domain::staff::{GeoPoint, StaffPreferences, TimeSlot, Weekday};
use domain::testing::{Given, Spec};
use domain::work_allocation::{
    explain, position, replay, WorkAllocation, WorkAllocationCommand, WorkAllocationError,
    WorkAllocationEvent, WorkKind, WorkRef, MAX_RECORDED,
};
use uuid::Uuid;

const CLIENT: Uuid = Uuid::from_u128(0xC11E);
const NEAR: Uuid = Uuid::from_u128(0xA1);
const SKILLED: Uuid = Uuid::from_u128(0xB2);
const CASE: WorkRef = WorkRef {
    kind: WorkKind::Case,
    id: Uuid::from_u128(0xCA5E),
};

fn now() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2026, 4, 15)
        .and_then(|d| d.and_hms_opt(12, 0, 0))
        .expect("a valid time")
        .and_utc()
}

fn site() -> GeoPoint {
    GeoPoint::new(-33_868_800, 151_209_300).expect("a valid point")
}

fn work() -> WorkItem {
    WorkItem::new(
        ["wound care", "medication"],
        TimeSlot::new(Weekday::Monday, 540, 660).expect("a valid slot"),
        site(),
        CLIENT,
        "home visit",
    )
}

fn weights(w: [i64; 6]) -> Weights {
    let [skill_match, availability, travel_distance, workload, continuity, preference] = w;
    Weights::new(WeightsInput {
        skill_match,
        availability,
        travel_distance,
        workload,
        continuity,
        preference,
    })
    .expect("valid weights")
}

/// Two candidates: one on the spot with half the skills, one 25 km away with all of them.
fn candidates() -> Vec<Candidate> {
    let base = |staff_id, skills: &[&str], km_north: i32| Candidate {
        staff_id,
        skills: skills.iter().map(|s| (*s).to_owned()).collect(),
        availability: vec![TimeSlot::new(Weekday::Monday, 480, 720).expect("a valid slot")],
        // 0.225 degrees of latitude is 25 km.
        home: GeoPoint::new(site().lat_e6() + km_north * 9_000, site().lon_e6())
            .expect("a valid point"),
        current_workload: 0,
        max_workload: 4,
        past_clients: BTreeSet::new(),
        preferences: StaffPreferences::default(),
    };
    vec![
        base(NEAR, &["medication"], 0),
        base(SKILLED, &["wound care", "medication"], 25),
    ]
}

fn decision(chosen: Option<Uuid>) -> AllocationDecision {
    allocate(
        &work(),
        &candidates(),
        &weights([30, 25, 15, 15, 10, 5]),
        5,
        chosen,
    )
    .expect("allocated")
}

fn allocated(chosen: Option<Uuid>) -> WorkAllocationEvent {
    WorkAllocationEvent::WorkAllocated {
        work: CASE,
        decision: decision(chosen),
        at: now(),
    }
}

fn released(staff_id: Uuid) -> WorkAllocationEvent {
    WorkAllocationEvent::WorkAllocationReleased {
        staff_id,
        reason: "visit done".into(),
        at: now() + Duration::hours(3),
    }
}

fn given(events: &[WorkAllocationEvent]) -> Given<WorkAllocation> {
    WorkAllocation::given(events.iter().cloned())
}

fn allocate_command(chosen: Option<Uuid>) -> WorkAllocationCommand {
    WorkAllocationCommand::Allocate {
        work: CASE,
        decision: decision(chosen),
    }
}

fn release(reason: &str) -> WorkAllocationCommand {
    WorkAllocationCommand::Release {
        reason: reason.into(),
    }
}

#[test]
fn one_piece_of_work_has_one_allocation_stream() {
    let task = WorkRef {
        kind: WorkKind::Task,
        id: CASE.id,
    };
    assert_eq!(
        WorkAllocation::stream_id(CASE),
        WorkAllocation::stream_id(CASE)
    );
    assert_ne!(
        WorkAllocation::stream_id(CASE),
        WorkAllocation::stream_id(task),
        "a task and a case with the same id are different work"
    );
    assert_eq!(WorkKind::parse("referral"), Some(WorkKind::Referral));
    assert_eq!(WorkKind::parse("Case"), None);
}

#[test]
fn given_nothing_when_allocating_then_the_decision_is_recorded_with_its_inputs() {
    let then = given(&[])
        .when(allocate_command(None), now())
        .then([allocated(None)]);
    let [WorkAllocationEvent::WorkAllocated { decision, .. }] = then.events() else {
        panic!("not an allocation: {:?}", then.events());
    };
    // With skills weighted highest the fully skilled candidate wins despite the distance.
    assert_eq!(decision.chosen, SKILLED);
    assert_eq!(decision.weights, weights([30, 25, 15, 15, 10, 5]));
    assert_eq!(decision.considered, 2);
    let chosen = decision.chosen_score().expect("the chosen one is ranked");
    assert_eq!(chosen.factor(Factor::SkillMatch).value, 1.0);
    assert!((chosen.factor(Factor::TravelDistance).value - 0.5).abs() < 0.01);

    let state = then.state();
    assert!(state.active);
    assert_eq!(state.current_staff(), Some(SKILLED));
    assert_eq!(state.work, Some(CASE));
    assert_eq!(state.allocations, 1);
    assert_eq!(state.allocated_at, Some(now()));
}

#[test]
fn given_an_active_allocation_when_allocating_again_then_it_is_refused_naming_the_holder() {
    given(&[allocated(None)])
        .when(allocate_command(Some(NEAR)), now())
        .then_err(WorkAllocationError::AlreadyAllocated { staff_id: SKILLED });
}

#[test]
fn given_a_released_allocation_when_allocating_again_then_the_work_is_allocated_anew() {
    let released = given(&[allocated(None), released(SKILLED)]);
    let state = released.state();
    assert!(!state.active);
    assert_eq!(state.current_staff(), None);
    assert_eq!(state.release_reason.as_deref(), Some("visit done"));

    let then = released.when(allocate_command(Some(NEAR)), now()).then_ok();
    let state = then.state();
    assert_eq!(state.current_staff(), Some(NEAR));
    assert_eq!(state.allocations, 2);
    assert_eq!(state.released_at, None, "the new allocation stands");
}

#[test]
fn given_an_active_allocation_when_releasing_then_the_holder_and_the_reason_are_recorded() {
    given(&[allocated(None)])
        .when(release("  visit   done "), now() + Duration::hours(3))
        .then([released(SKILLED)]);
}

#[test]
fn releasing_work_never_allocated_already_released_or_without_a_reason_is_refused() {
    given(&[])
        .when(release("done"), now())
        .then_err(WorkAllocationError::NotFound);
    given(&[allocated(None), released(SKILLED)])
        .when(release("done"), now())
        .then_err(WorkAllocationError::NotAllocated);
    for reason in ["   ".to_owned(), "x".repeat(501)] {
        let refusal = given(&[allocated(None)])
            .when(release(&reason), now())
            .then_refused();
        assert!(
            matches!(
                refusal,
                WorkAllocationError::InvalidField {
                    field: "reason",
                    ..
                }
            ),
            "{refusal:?}"
        );
    }
}

#[test]
fn a_decision_that_does_not_hold_together_is_refused_naming_what_is_wrong() {
    let field_of = |decision: AllocationDecision| match given(&[])
        .when(
            WorkAllocationCommand::Allocate {
                work: CASE,
                decision,
            },
            now(),
        )
        .then_refused()
    {
        WorkAllocationError::InvalidField { field, .. } => field,
        other => panic!("refused for another reason: {other:?}"),
    };
    let mut outsider = decision(None);
    outsider.chosen = Uuid::from_u128(0xFFFF);
    assert_eq!(field_of(outsider), "staff_id");

    let mut empty = decision(None);
    empty.ranking.clear();
    assert_eq!(field_of(empty), "ranking");

    let mut too_long = decision(None);
    let one = too_long.ranking[0].clone();
    too_long.ranking = vec![one; MAX_RECORDED + 1];
    too_long.considered = MAX_RECORDED + 1;
    assert_eq!(field_of(too_long), "limit");

    let mut unnormalised = decision(None);
    unnormalised.work.kind = "Home Visit".into();
    assert_eq!(field_of(unnormalised), "work.kind");

    let mut reweighted = decision(None);
    reweighted.weights = weights([1, 1, 1, 1, 1, 1]);
    assert_eq!(field_of(reweighted), "ranking");
}

#[test]
fn an_allocation_stream_holds_one_piece_of_work() {
    let other = WorkRef {
        kind: WorkKind::Referral,
        id: Uuid::from_u128(0xBEEF),
    };
    let command = WorkAllocationCommand::Allocate {
        work: other,
        decision: decision(None),
    };
    given(&[allocated(None), released(SKILLED)])
        .when(command, now())
        .then_err(WorkAllocationError::OtherWork {
            recorded: CASE,
            requested: other,
        });
}

#[test]
fn replaying_a_recorded_decision_with_other_weights_re_ranks_its_recorded_values() {
    let recorded = decision(None);
    assert_eq!(recorded.chosen, SKILLED);
    // Travel only: the candidate on the spot comes first.
    let travel = replay(&recorded, &weights([0, 0, 100, 0, 0, 0]));
    assert_eq!(
        travel.iter().map(|r| r.staff_id).collect::<Vec<_>>(),
        [NEAR, SKILLED]
    );
    assert_eq!(position(&travel, SKILLED), Some(2));
    let near = &travel[0];
    assert_eq!(near.factor(Factor::TravelDistance).weight, 100);
    assert!((near.total - 100.0).abs() < 1e-9);
    for r in &travel {
        for f in Factor::ALL {
            let recorded_value = recorded
                .ranking
                .iter()
                .find(|c| c.staff_id == r.staff_id)
                .map(|c| c.factor(f).value);
            assert_eq!(
                Some(r.factor(f).value),
                recorded_value,
                "values are replayed"
            );
            assert_eq!(
                r.factor(f).contribution,
                f64::from(r.factor(f).weight) * r.factor(f).value
            );
        }
    }
    // The same weights give the recorded order back; the decision itself is untouched.
    let same = replay(&recorded, &recorded.weights);
    assert_eq!(
        same.iter().map(|r| r.staff_id).collect::<Vec<_>>(),
        recorded
            .ranking
            .iter()
            .map(|r| r.staff_id)
            .collect::<Vec<_>>()
    );
    assert_eq!(recorded, decision(None));
}

#[test]
fn every_factor_is_explained_in_words() {
    let recorded = decision(None);
    let chosen = recorded.chosen_score().expect("ranked");
    let said: Vec<String> = Factor::ALL
        .iter()
        .map(|f| {
            explain(
                *f,
                chosen.factor(*f).value,
                chosen.distance_km,
                &recorded.work,
            )
        })
        .collect();
    assert_eq!(said[0], "holds 2 of the 2 required skills");
    assert_eq!(said[1], "available for the whole slot, Monday 09:00-11:00");
    assert!(said[2].starts_with("25.0 km from home"), "{}", said[2]);
    assert_eq!(said[3], "100 % of capacity free");
    assert_eq!(said[4], "has not served this client before");
    assert_eq!(
        said[5],
        "states no preference for this kind of work or client"
    );
}

#[test]
fn allocation_events_read_back_as_written() {
    let event = allocated(None);
    let json = serde_json::to_value(&event).expect("serialisable");
    assert_eq!(json["type"], "WorkAllocated");
    assert_eq!(json["data"]["work"]["kind"], "case");
    let back: WorkAllocationEvent = serde_json::from_value(json).expect("reads back");
    let (
        WorkAllocationEvent::WorkAllocated { decision: a, .. },
        WorkAllocationEvent::WorkAllocated { decision: b, .. },
    ) = (&back, &event)
    else {
        panic!("not an allocation");
    };
    assert_eq!(a.chosen, b.chosen);
    assert_eq!(a.work, b.work);
}

#[test]
fn a_decision_recording_the_most_candidates_and_the_largest_work_fits_an_event() {
    let skills: Vec<String> = (0..100).map(|i| format!("{i:0>64}")).collect();
    let big_work = WorkItem::new(
        skills.iter(),
        TimeSlot::new(Weekday::Monday, 540, 660).expect("a valid slot"),
        site(),
        CLIENT,
        &"k".repeat(64),
    );
    let pool: Vec<Candidate> = (0..MAX_RECORDED as u128 + 10)
        .map(|i| Candidate {
            staff_id: Uuid::from_u128(i + 1),
            ..candidates()[0].clone()
        })
        .collect();
    let decision = allocate(
        &big_work,
        &pool,
        &weights([1_000_000; 6]),
        MAX_RECORDED,
        None,
    )
    .expect("allocated");
    let event = WorkAllocationEvent::WorkAllocated {
        work: CASE,
        decision,
        at: now(),
    };
    let bytes = serde_json::to_vec(&event).expect("serialisable").len();
    assert!(bytes < 48 * 1024, "{bytes} bytes");
}
