//! Staff allocation: ranking candidate staff for a piece of work by a weighted score of six
//! factors, and the record of a decision (`DOMAIN.md`, "Assignments and allocation"; seed 000,
//! "Staff Allocation & Matching System": six weighted factors, the top 5 by total score).
//!
//! Everything here is a pure function of its inputs: the caller looks up the work, the
//! candidates' facts (from [`crate::staff::StaffMember`] streams and projections of current
//! workload and past clients) and the configured [`Weights`], and [`rank`] returns the best
//! candidates with every factor's value and contribution, so a person sees why.
//!
//! Each factor is normalised to `[0, 1]` (1 is best):
//!
//! | factor | value |
//! | --- | --- |
//! | [`Factor::SkillMatch`] | share of the work's required skills the candidate holds; 1 when none are required |
//! | [`Factor::Availability`] | 1 if the candidate's availability covers the work's whole slot (slots may be joined end to end), else 0 |
//! | [`Factor::TravelDistance`] | `1 - d / MAX_TRAVEL_KM` for the haversine distance `d` from home to the work, 0 at or beyond [`MAX_TRAVEL_KM`] |
//! | [`Factor::Workload`] | `1 - current / max`, 0 at or over capacity |
//! | [`Factor::Continuity`] | 1 if the candidate served the work's client before, else 0 |
//! | [`Factor::Preference`] | 1 if the candidate prefers the work's kind or its client, else 0 |
//!
//! A factor's contribution is `weight × value` and the total is the sum of the six
//! contributions, in [`Factor::ALL`] order. Ranking is by total, highest first; equal totals
//! break by staff id, ascending, so the same inputs always give the same order whatever order
//! the candidates arrive in. Nobody is filtered out: an unavailable or fully loaded candidate
//! simply scores 0 on that factor. A caller that wants hard constraints filters first.
//!
//! Allocating work is an event of the work's own aggregate; it carries an
//! [`AllocationDecision`], which records the inputs and the ranking the choice was made from.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::staff::{
    haversine_km, normalise_label, GeoPoint, StaffMember, StaffPreferences, TimeSlot,
};

/// The distance at and beyond which travel scores 0, in kilometres. Fifty kilometres is about
/// an hour's drive outside a city: the far edge of a sensible home-visit round.
pub const MAX_TRAVEL_KM: f64 = 50.0;

/// How many candidates a ranking returns when the caller has no reason to ask for another
/// number (seed 000 returns the top 5).
pub const DEFAULT_LIMIT: usize = 5;

/// The largest weight accepted. Weights are relative: only their ratios matter, and
/// per-mille (0 to 1000) is the expected scale; the bound keeps totals far from overflow and
/// rounding trouble.
pub const MAX_WEIGHT: i64 = 1_000_000;

/// One of the six allocation factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Factor {
    SkillMatch,
    Availability,
    TravelDistance,
    Workload,
    Continuity,
    Preference,
}

impl Factor {
    /// Every factor, in the order scores list them and totals add them up.
    pub const ALL: [Factor; 6] = [
        Factor::SkillMatch,
        Factor::Availability,
        Factor::TravelDistance,
        Factor::Workload,
        Factor::Continuity,
        Factor::Preference,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Factor::SkillMatch => "skill_match",
            Factor::Availability => "availability",
            Factor::TravelDistance => "travel_distance",
            Factor::Workload => "workload",
            Factor::Continuity => "continuity",
            Factor::Preference => "preference",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Factor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Weights as configured, before they are checked. Signed so that a negative weight is refused
/// with a message naming it rather than failing to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsInput {
    pub skill_match: i64,
    pub availability: i64,
    pub travel_distance: i64,
    pub workload: i64,
    pub continuity: i64,
    pub preference: i64,
}

/// The six factor weights: integers from 0 to [`MAX_WEIGHT`], at least one above 0.
///
/// Integers rather than `f64`: configuration reads and writes them exactly, they compare and
/// hash, and "per-mille" is precise enough for anybody's intent. Serialised as a
/// [`WeightsInput`] object, checked again when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "WeightsInput", into = "WeightsInput")]
pub struct Weights([u32; 6]);

impl Weights {
    /// The weights used unless configuration says otherwise: skill match 30, availability 25,
    /// travel distance 15, workload 15, continuity 10, preference 5 (they add up to 100, so a
    /// total reads as a percentage). Skills and availability first: a candidate who cannot do
    /// the work, or is not there, is no candidate however close or free.
    pub const DEFAULT: Weights = Weights([30, 25, 15, 15, 10, 5]);

    /// Refused when a weight is negative or above [`MAX_WEIGHT`] (the error names it), or when
    /// all are 0 (nothing would rank).
    pub fn new(input: WeightsInput) -> Result<Self, AllocationError> {
        let raw = [
            input.skill_match,
            input.availability,
            input.travel_distance,
            input.workload,
            input.continuity,
            input.preference,
        ];
        let mut weights = [0u32; 6];
        for (factor, (&value, slot)) in Factor::ALL.iter().zip(raw.iter().zip(&mut weights)) {
            *slot = match u32::try_from(value) {
                Err(_) if value < 0 => {
                    return Err(AllocationError::NegativeWeight {
                        factor: *factor,
                        value,
                    })
                }
                Ok(v) if value <= MAX_WEIGHT => v,
                _ => {
                    return Err(AllocationError::WeightTooLarge {
                        factor: *factor,
                        value,
                    })
                }
            };
        }
        if weights.iter().all(|w| *w == 0) {
            return Err(AllocationError::AllWeightsZero);
        }
        Ok(Weights(weights))
    }

    pub fn get(&self, factor: Factor) -> u32 {
        self.0[factor.index()]
    }

    /// The highest total a candidate can reach (every factor 1).
    pub fn sum(&self) -> u64 {
        self.0.iter().map(|w| u64::from(*w)).sum()
    }
}

impl TryFrom<WeightsInput> for Weights {
    type Error = AllocationError;

    fn try_from(input: WeightsInput) -> Result<Self, Self::Error> {
        Weights::new(input)
    }
}

impl From<Weights> for WeightsInput {
    fn from(w: Weights) -> Self {
        let [skill_match, availability, travel_distance, workload, continuity, preference] =
            w.0.map(i64::from);
        WeightsInput {
            skill_match,
            availability,
            travel_distance,
            workload,
            continuity,
            preference,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("{factor}: a weight is 0 or more, not {value}")]
    NegativeWeight { factor: Factor, value: i64 },
    #[error("{factor}: a weight is at most {MAX_WEIGHT}, not {value}")]
    WeightTooLarge { factor: Factor, value: i64 },
    #[error("weights: at least one weight must be above 0")]
    AllWeightsZero,
    #[error("candidates: there is no candidate to allocate the work to")]
    NoCandidates,
    #[error("chosen: staff member {staff_id} is not among the {ranked} ranked candidates")]
    ChosenNotRanked { staff_id: Uuid, ranked: usize },
}

impl crate::refusal::Refusal for AllocationError {
    fn kind(&self) -> crate::refusal::ErrorKind {
        match self {
            AllocationError::NoCandidates => crate::refusal::ErrorKind::Conflict,
            _ => crate::refusal::ErrorKind::Invalid,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AllocationError::NegativeWeight { .. } => "negative_weight",
            AllocationError::WeightTooLarge { .. } => "weight_too_large",
            AllocationError::AllWeightsZero => "all_weights_zero",
            AllocationError::NoCandidates => "no_candidates",
            AllocationError::ChosenNotRanked { .. } => "staff_not_ranked",
        }
    }

    /// The request field at fault.
    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        let field = match self {
            AllocationError::NegativeWeight { factor, .. }
            | AllocationError::WeightTooLarge { factor, .. } => format!("weights.{factor}"),
            AllocationError::AllWeightsZero => "weights".to_owned(),
            AllocationError::ChosenNotRanked { .. } => "staff_id".to_owned(),
            AllocationError::NoCandidates => return serde_json::Map::new(),
        };
        crate::refusal::fields(serde_json::json!({ "field": field }))
    }
}

/// A piece of work to allocate.
///
/// Skills and kind are compared exactly with the candidates' (normalised) labels; build it with
/// [`WorkItem::new`] to normalise them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    pub required_skills: BTreeSet<String>,
    /// When the work happens (weekday and minutes, in the staff's local time).
    pub slot: TimeSlot,
    /// Where the work happens.
    pub location: GeoPoint,
    pub client_id: Uuid,
    /// What kind of work (a label such as `"home visit"`), matched against preferences.
    pub kind: String,
}

impl WorkItem {
    /// Normalises the skill labels and the kind ([`normalise_label`]); empty labels are dropped.
    pub fn new<S: AsRef<str>>(
        required_skills: impl IntoIterator<Item = S>,
        slot: TimeSlot,
        location: GeoPoint,
        client_id: Uuid,
        kind: &str,
    ) -> Self {
        WorkItem {
            required_skills: required_skills
                .into_iter()
                .map(|s| normalise_label(s.as_ref()))
                .filter(|s| !s.is_empty())
                .collect(),
            slot,
            location,
            client_id,
            kind: normalise_label(kind),
        }
    }
}

/// What the ranking knows about one candidate, looked up before ranking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub staff_id: Uuid,
    /// Normalised skill labels.
    pub skills: BTreeSet<String>,
    /// Weekly availability.
    pub availability: Vec<TimeSlot>,
    pub home: GeoPoint,
    /// Open pieces of work the candidate carries now.
    pub current_workload: u32,
    /// Capacity; 0 scores 0 on workload.
    pub max_workload: u32,
    /// Clients the candidate has served before.
    pub past_clients: BTreeSet<Uuid>,
    pub preferences: StaffPreferences,
}

impl Candidate {
    /// A registered staff member's facts, completed with the two that live outside its stream.
    /// `None` when the staff member is not registered.
    pub fn from_staff(
        staff_id: Uuid,
        staff: &StaffMember,
        current_workload: u32,
        past_clients: BTreeSet<Uuid>,
    ) -> Option<Self> {
        let profile = staff.profile.as_ref()?;
        Some(Candidate {
            staff_id,
            skills: profile.skills.clone(),
            availability: staff.availability.clone(),
            home: profile.home,
            current_workload,
            max_workload: profile.max_workload,
            past_clients,
            preferences: profile.preferences.clone(),
        })
    }
}

/// One factor of one candidate's score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FactorScore {
    pub factor: Factor,
    /// Normalised to `[0, 1]`; 1 is best.
    pub value: f64,
    pub weight: u32,
    /// `weight × value`.
    pub contribution: f64,
}

/// A candidate's score, factor by factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedCandidate {
    pub staff_id: Uuid,
    /// In [`Factor::ALL`] order.
    pub factors: [FactorScore; 6],
    /// The sum of the contributions, at most [`Weights::sum`].
    pub total: f64,
    /// The haversine distance from the candidate's home to the work, in km (what the travel
    /// factor was computed from).
    pub distance_km: f64,
}

impl RankedCandidate {
    pub fn factor(&self, factor: Factor) -> &FactorScore {
        &self.factors[factor.index()]
    }
}

/// What is computed once per ranking rather than once per candidate.
struct Prepared<'a> {
    work: &'a WorkItem,
    lat: f64,
    cos_lat: f64,
    lon: f64,
    weights: [u32; 6],
    /// The same weights as `f64`, converted once.
    weights_f64: [f64; 6],
}

impl<'a> Prepared<'a> {
    fn new(work: &'a WorkItem, weights: &Weights) -> Self {
        let (lat, lon) = work.location.radians();
        Prepared {
            work,
            lat,
            cos_lat: lat.cos(),
            lon,
            weights: weights.0,
            weights_f64: weights.0.map(f64::from),
        }
    }

    /// The six factor values and the distance. Allocates nothing.
    fn values(&self, c: &Candidate) -> ([f64; 6], f64) {
        let work = self.work;
        let skill_match = if work.required_skills.is_empty() {
            1.0
        } else {
            let held = work
                .required_skills
                .iter()
                .filter(|s| c.skills.contains(*s))
                .count();
            held as f64 / work.required_skills.len() as f64
        };
        let availability = indicator(covered(&c.availability, &work.slot));
        let (lat, lon) = c.home.radians();
        let distance_km = haversine_km(self.lat, self.cos_lat, self.lon, lat, lat.cos(), lon);
        let travel = (1.0 - distance_km / MAX_TRAVEL_KM).max(0.0);
        let workload = if c.current_workload >= c.max_workload {
            0.0
        } else {
            1.0 - f64::from(c.current_workload) / f64::from(c.max_workload)
        };
        let continuity = indicator(c.past_clients.contains(&work.client_id));
        let preference = indicator(
            c.preferences.work_kinds.contains(&work.kind)
                || c.preferences.clients.contains(&work.client_id),
        );
        (
            [
                skill_match,
                availability,
                travel,
                workload,
                continuity,
                preference,
            ],
            distance_km,
        )
    }

    fn total(&self, values: &[f64; 6]) -> f64 {
        values
            .iter()
            .zip(&self.weights_f64)
            .fold(0.0, |sum, (v, w)| sum + w * v)
    }

    fn score(&self, c: &Candidate) -> RankedCandidate {
        let (values, distance_km) = self.values(c);
        let factors = Factor::ALL.map(|factor| {
            let i = factor.index();
            FactorScore {
                factor,
                value: values[i],
                weight: self.weights[i],
                contribution: self.weights_f64[i] * values[i],
            }
        });
        RankedCandidate {
            staff_id: c.staff_id,
            factors,
            total: self.total(&values),
            distance_km,
        }
    }
}

fn indicator(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Whether `slots` together cover all of `work`: from the work's start, repeatedly step to the
/// end of a slot that contains the point reached, until the work's end is passed. Works on
/// unsorted, unmerged slots without allocating (the lists are short: at most a hundred).
fn covered(slots: &[TimeSlot], work: &TimeSlot) -> bool {
    let mut reached = work.start_minute();
    loop {
        let next = slots
            .iter()
            .filter(|s| {
                s.weekday() == work.weekday()
                    && s.start_minute() <= reached
                    && s.end_minute() > reached
            })
            .map(TimeSlot::end_minute)
            .max();
        match next {
            Some(end) if end >= work.end_minute() => return true,
            Some(end) => reached = end,
            None => return false,
        }
    }
}

/// One candidate's score for the work, without ranking.
pub fn score(work: &WorkItem, candidate: &Candidate, weights: &Weights) -> RankedCandidate {
    Prepared::new(work, weights).score(candidate)
}

/// The best `limit` candidates for the work, highest total first, equal totals by staff id
/// (ascending), and equal staff ids (which a caller should not send) by input order.
///
/// Cost: one pass computing each candidate's total into a single vector of `(total, index)`,
/// a partial selection of the best `limit`, and full scores only for those. No allocation per
/// candidate.
pub fn rank(
    work: &WorkItem,
    candidates: &[Candidate],
    weights: &Weights,
    limit: usize,
) -> Vec<RankedCandidate> {
    if limit == 0 || candidates.is_empty() {
        return Vec::new();
    }
    let prepared = Prepared::new(work, weights);
    let mut totals: Vec<(f64, usize)> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (prepared.total(&prepared.values(c).0), i))
        .collect();
    let order = |a: &(f64, usize), b: &(f64, usize)| -> Ordering {
        b.0.total_cmp(&a.0)
            .then_with(|| candidates[a.1].staff_id.cmp(&candidates[b.1].staff_id))
            .then(a.1.cmp(&b.1))
    };
    if limit < totals.len() {
        totals.select_nth_unstable_by(limit - 1, order);
        totals.truncate(limit);
    }
    totals.sort_unstable_by(order);
    totals
        .into_iter()
        .map(|(_, i)| prepared.score(&candidates[i]))
        .collect()
}

/// Why a piece of work went to whom: the work, the weights, how many candidates were
/// considered, the ranking (the best `limit`, each with its factor values and contributions)
/// and the staff member chosen. Serialisable so that the work's aggregate can store it in its
/// allocation event.
///
/// The scores are `f64`; read back from JSON they may differ from the computed ones in the last
/// bit (`serde_json` without `float_roundtrip`), which does not matter for an explanation.
/// Reading it back checks the weights, slot and location again with the rules of the day, so
/// tightening those rules needs an upcaster for stored decisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocationDecision {
    pub work: WorkItem,
    pub weights: Weights,
    /// How many candidates were ranked.
    pub considered: usize,
    pub ranking: Vec<RankedCandidate>,
    pub chosen: Uuid,
}

impl AllocationDecision {
    /// The chosen candidate's entry in the ranking.
    pub fn chosen_score(&self) -> Option<&RankedCandidate> {
        self.ranking.iter().find(|r| r.staff_id == self.chosen)
    }

    /// Whether somebody other than the top-ranked candidate was chosen (a person overrode the
    /// ranking).
    pub fn overrides_ranking(&self) -> bool {
        self.ranking.first().map(|r| r.staff_id) != Some(self.chosen)
    }
}

/// Ranks the candidates and records the choice: `chosen`, which must be among the best
/// `limit`, or else the top-ranked candidate. Refused when nobody is ranked.
pub fn allocate(
    work: &WorkItem,
    candidates: &[Candidate],
    weights: &Weights,
    limit: usize,
    chosen: Option<Uuid>,
) -> Result<AllocationDecision, AllocationError> {
    let ranking = rank(work, candidates, weights, limit);
    let chosen = match (chosen, ranking.first()) {
        (_, None) => return Err(AllocationError::NoCandidates),
        (Some(id), _) if !ranking.iter().any(|r| r.staff_id == id) => {
            return Err(AllocationError::ChosenNotRanked {
                staff_id: id,
                ranked: ranking.len(),
            })
        }
        (Some(id), _) => id,
        (None, Some(best)) => best.staff_id,
    };
    Ok(AllocationDecision {
        work: work.clone(),
        weights: *weights,
        considered: candidates.len(),
        ranking,
        chosen,
    })
}
