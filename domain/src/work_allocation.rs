//! The allocation of one piece of work (a case, a task or a referral) to a staff member: the
//! event that records who got it and why (`DOMAIN.md`, "Assignments and allocation").
//!
//! One piece of work has one allocation stream: its id is a UUID v5 of the work's kind and id
//! ([`WorkAllocation::stream_id`]), so two allocations of the same work, however they race,
//! meet on one stream and the second is refused while the first is active. After a release the
//! work may be allocated again on the same stream; the history stays.
//!
//! [`WorkAllocationEvent::WorkAllocated`] carries the whole [`AllocationDecision`]: the work, the
//! weights, how many candidates were considered, the best candidates with every factor's value,
//! weight and contribution, and the staff member chosen. That is enough to explain the decision
//! later ([`explain`]) and to ask what other weights would have done with the same inputs
//! ([`replay`]), without looking anything up again.
//!
//! What the decision cannot answer: a candidate outside the recorded ranking (at most
//! [`MAX_RECORDED`]) is not in the replay, because recording every candidate's values would not
//! fit an event. A replay therefore re-ranks the recorded short list.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::allocation::{
    AllocationDecision, Factor, FactorScore, RankedCandidate, Weights, WorkItem, MAX_TRAVEL_KM,
};
use crate::staff::{normalise_label, MAX_ENTRIES, MAX_LABEL_CHARS};
use crate::Aggregate;

/// The most candidates an allocation records (and so the most a replay re-ranks). Each
/// recorded candidate costs about 700 bytes of event payload; 25 of them and the largest work
/// item stay well under the store's 64 KiB limit.
pub const MAX_RECORDED: usize = 25;

/// The longest release reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// What kind of work an allocation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkKind {
    Case,
    Task,
    Referral,
}

impl WorkKind {
    pub const ALL: [WorkKind; 3] = [WorkKind::Case, WorkKind::Task, WorkKind::Referral];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkKind::Case => "case",
            WorkKind::Task => "task",
            WorkKind::Referral => "referral",
        }
    }

    /// `case`, `task` or `referral`, exactly.
    pub fn parse(s: &str) -> Option<Self> {
        WorkKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for WorkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which piece of work: its kind and its id (the case's, task's or referral's own id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkRef {
    pub kind: WorkKind,
    pub id: Uuid,
}

impl fmt::Display for WorkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkAllocationCommand {
    /// Records the decision: the work goes to `decision.chosen`. Refused while the work is
    /// allocated and not released.
    Allocate {
        work: WorkRef,
        decision: AllocationDecision,
    },
    /// Ends the current allocation (done, reassigned, cancelled: `reason` says which). The
    /// work may then be allocated again.
    Release { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum WorkAllocationEvent {
    WorkAllocated {
        work: WorkRef,
        decision: AllocationDecision,
        at: DateTime<Utc>,
    },
    WorkAllocationReleased {
        /// Who had the work until now.
        staff_id: Uuid,
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkAllocationError {
    #[error("this work has never been allocated")]
    NotFound,
    #[error("this work is allocated to staff member {staff_id}; release it first")]
    AlreadyAllocated { staff_id: Uuid },
    #[error("this work is not allocated now (it was released)")]
    NotAllocated,
    #[error("this allocation stream belongs to {recorded}, not {requested}")]
    OtherWork {
        recorded: WorkRef,
        requested: WorkRef,
    },
    #[error("{field}: {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
}

impl crate::refusal::Refusal for WorkAllocationError {
    fn kind(&self) -> crate::refusal::ErrorKind {
        use crate::refusal::ErrorKind as K;
        match self {
            WorkAllocationError::NotFound => K::NotFound,
            WorkAllocationError::InvalidField { .. } => K::Invalid,
            WorkAllocationError::AlreadyAllocated { .. }
            | WorkAllocationError::NotAllocated
            | WorkAllocationError::OtherWork { .. } => K::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            WorkAllocationError::NotFound => "allocation_not_found",
            WorkAllocationError::AlreadyAllocated { .. } => "work_already_allocated",
            WorkAllocationError::NotAllocated => "work_not_allocated",
            WorkAllocationError::OtherWork { .. } => "stream_type_mismatch",
            WorkAllocationError::InvalidField { .. } => "invalid_field",
        }
    }

    /// The field at fault, or who holds the work.
    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        match self {
            WorkAllocationError::InvalidField { field, .. } => {
                crate::refusal::fields(serde_json::json!({ "field": field }))
            }
            WorkAllocationError::AlreadyAllocated { staff_id } => {
                crate::refusal::fields(serde_json::json!({ "staff_id": staff_id }))
            }
            _ => serde_json::Map::new(),
        }
    }
}

/// The allocation of one piece of work: the latest decision and whether it still stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkAllocation {
    /// `None` until first allocated.
    pub work: Option<WorkRef>,
    /// The latest decision (still standing when `active`).
    pub decision: Option<AllocationDecision>,
    /// True from an allocation to its release.
    pub active: bool,
    pub allocated_at: Option<DateTime<Utc>>,
    pub released_at: Option<DateTime<Utc>>,
    pub release_reason: Option<String>,
    /// How many times the work has been allocated (re-allocations after a release included).
    pub allocations: u32,
}

const WORK_ALLOCATION_NAMESPACE: Uuid = Uuid::from_u128(0x2f8a_61c3_97d0_4b5e_a1c4_08e7_5d39_b6f2);

impl WorkAllocation {
    /// The allocation stream of a piece of work: UUID v5 of `kind:id`.
    pub fn stream_id(work: WorkRef) -> Uuid {
        Uuid::new_v5(&WORK_ALLOCATION_NAMESPACE, work.to_string().as_bytes())
    }

    /// The staff member who has the work now.
    pub fn current_staff(&self) -> Option<Uuid> {
        self.decision
            .as_ref()
            .filter(|_| self.active)
            .map(|d| d.chosen)
    }
}

/// Checks what a decision carries before it is recorded: a bounded, normalised work item and a
/// consistent ranking that contains the chosen staff member.
pub fn check_decision(decision: &AllocationDecision) -> Result<(), WorkAllocationError> {
    let invalid = |field, reason| Err(WorkAllocationError::InvalidField { field, reason });
    let work = &decision.work;
    if work.required_skills.len() > MAX_ENTRIES {
        return invalid("work.required_skills", "list at most 100");
    }
    if work
        .required_skills
        .iter()
        .any(|s| s.is_empty() || s.chars().count() > MAX_LABEL_CHARS || normalise_label(s) != *s)
    {
        return invalid(
            "work.required_skills",
            "each skill has 1 to 64 characters, normalised (lower case, single spaces)",
        );
    }
    if work.kind.chars().count() > MAX_LABEL_CHARS || normalise_label(&work.kind) != work.kind {
        return invalid(
            "work.kind",
            "at most 64 characters, normalised (lower case, single spaces)",
        );
    }
    if decision.ranking.is_empty() {
        return invalid("ranking", "a decision ranks at least one candidate");
    }
    if decision.ranking.len() > MAX_RECORDED {
        return invalid("limit", "an allocation records at most 25 candidates");
    }
    if decision.considered < decision.ranking.len() {
        return invalid("considered", "at least as many as ranked");
    }
    if !decision
        .ranking
        .iter()
        .any(|r| r.staff_id == decision.chosen)
    {
        return invalid("staff_id", "the chosen staff member is not in the ranking");
    }
    let consistent = decision.ranking.iter().all(|r| {
        r.factors.iter().zip(Factor::ALL).all(|(s, f)| {
            s.factor == f
                && s.weight == decision.weights.get(f)
                && s.value.is_finite()
                && (0.0..=1.0).contains(&s.value)
        }) && r.total.is_finite()
    });
    if !consistent {
        return invalid(
            "ranking",
            "every factor value is within 0 to 1 and scored with the decision's weights",
        );
    }
    Ok(())
}

impl Aggregate for WorkAllocation {
    const STREAM_TYPE: &'static str = "work_allocation";
    type Command = WorkAllocationCommand;
    type Event = WorkAllocationEvent;
    type Error = WorkAllocationError;

    fn decide(
        &self,
        command: &WorkAllocationCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<WorkAllocationEvent>, WorkAllocationError> {
        match command {
            WorkAllocationCommand::Allocate { work, decision } => {
                if let Some(recorded) = self.work.filter(|w| w != work) {
                    return Err(WorkAllocationError::OtherWork {
                        recorded,
                        requested: *work,
                    });
                }
                if let Some(staff_id) = self.current_staff() {
                    return Err(WorkAllocationError::AlreadyAllocated { staff_id });
                }
                check_decision(decision)?;
                Ok(vec![WorkAllocationEvent::WorkAllocated {
                    work: *work,
                    decision: decision.clone(),
                    at: now,
                }])
            }
            WorkAllocationCommand::Release { reason } => {
                if self.work.is_none() {
                    return Err(WorkAllocationError::NotFound);
                }
                let Some(staff_id) = self.current_staff() else {
                    return Err(WorkAllocationError::NotAllocated);
                };
                let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
                if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
                    return Err(WorkAllocationError::InvalidField {
                        field: "reason",
                        reason: "give 1 to 500 characters",
                    });
                }
                Ok(vec![WorkAllocationEvent::WorkAllocationReleased {
                    staff_id,
                    reason,
                    at: now,
                }])
            }
        }
    }

    fn evolve(mut self, event: &WorkAllocationEvent) -> Self {
        match event {
            WorkAllocationEvent::WorkAllocated { work, decision, at } => {
                self.work = Some(*work);
                self.decision = Some(decision.clone());
                self.active = true;
                self.allocated_at = Some(*at);
                self.released_at = None;
                self.release_reason = None;
                self.allocations += 1;
            }
            WorkAllocationEvent::WorkAllocationReleased { reason, at, .. } => {
                self.active = false;
                self.released_at = Some(*at);
                self.release_reason = Some(reason.clone());
            }
        }
        self
    }
}

/// The recorded candidates re-scored with `weights` from their recorded factor values, best
/// first; equal totals by staff id, as [`crate::allocation::rank`] orders them. Pure: the
/// recorded decision is not changed, and nothing is looked up.
pub fn replay(decision: &AllocationDecision, weights: &Weights) -> Vec<RankedCandidate> {
    let mut ranking: Vec<RankedCandidate> = decision
        .ranking
        .iter()
        .map(|recorded| {
            let factors = recorded.factors.map(|s| {
                let weight = weights.get(s.factor);
                FactorScore {
                    factor: s.factor,
                    value: s.value,
                    weight,
                    contribution: f64::from(weight) * s.value,
                }
            });
            RankedCandidate {
                staff_id: recorded.staff_id,
                total: factors.iter().fold(0.0, |sum, s| sum + s.contribution),
                factors,
                distance_km: recorded.distance_km,
            }
        })
        .collect();
    ranking.sort_by(ranking_order);
    ranking
}

/// Where `staff_id` stands in `ranking` (1 is first).
pub fn position(ranking: &[RankedCandidate], staff_id: Uuid) -> Option<usize> {
    ranking
        .iter()
        .position(|r| r.staff_id == staff_id)
        .map(|i| i + 1)
}

/// One sentence saying what a factor's value means for this work, from the value alone (and
/// the distance for travel), so that a recorded decision can be explained as well as a fresh
/// ranking.
pub fn explain(factor: Factor, value: f64, distance_km: f64, work: &WorkItem) -> String {
    let yes = value >= 0.5;
    match factor {
        Factor::SkillMatch => {
            let required = work.required_skills.len();
            if required == 0 {
                "the work requires no particular skill".to_owned()
            } else {
                let held = (value * required as f64).round() as usize;
                format!("holds {held} of the {required} required skills")
            }
        }
        Factor::Availability if yes => format!("available for the whole slot, {}", work.slot),
        Factor::Availability => format!("not available for the whole slot, {}", work.slot),
        Factor::TravelDistance => format!(
            "{distance_km:.1} km from home to the work (scores 0 at {MAX_TRAVEL_KM:.0} km or more)"
        ),
        Factor::Workload if value <= 0.0 => "at or over capacity".to_owned(),
        Factor::Workload => format!("{:.0} % of capacity free", value * 100.0),
        Factor::Continuity if yes => "has served this client before".to_owned(),
        Factor::Continuity => "has not served this client before".to_owned(),
        Factor::Preference if yes => "prefers this kind of work or this client".to_owned(),
        Factor::Preference => "states no preference for this kind of work or client".to_owned(),
    }
}

/// Orders two candidates as a ranking does (best first).
pub fn ranking_order(a: &RankedCandidate, b: &RankedCandidate) -> Ordering {
    b.total
        .total_cmp(&a.total)
        .then_with(|| a.staff_id.cmp(&b.staff_id))
}
