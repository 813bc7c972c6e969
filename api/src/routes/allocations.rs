//! `/allocations`: allocating work (a case, a task or a referral) to staff by the six weighted
//! factors of [docs/domain.md](../../../docs/domain.md) ("Staff allocation"), with every
//! factor's value, weight and contribution shown.
//!
//! The handlers extract the request, call [`commands::staffing::Staffing`] (which decides)
//! and map its answers to views.
//!
//! - Ranking (`POST /allocations/rank`) is [`commands::staffing::Staffing::rank`]: the
//!   candidates from the `staffing` read model ranked with [`domain::allocation::rank`]; it
//!   appends nothing.
//! - Allocating (`POST /allocations`) is [`commands::staffing::Staffing::allocate`]: it
//!   re-checks a chosen staff member on the write side, ranks the same way and records the
//!   decision (its inputs: the work, the weights, each ranked candidate's factor values, the
//!   choice) as a `WorkAllocated` event on the work's allocation stream.
//! - A recorded decision is explained from the event alone (`GET /allocations/{kind}/{id}`) and
//!   replayed with other weights from its recorded values (`POST .../replay`, nothing appended).
//!
//! Weights come from configuration ([`commands::staffing::Staffing::weights`], set from
//! `CASELEDGER_ALLOCATION_WEIGHTS`, see [`crate::config::parse_weights`]); a request may
//! override some or all of them for a what-if.

use std::collections::HashMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use domain::allocation::{
    self, AllocationDecision, AllocationError, Factor, RankedCandidate, Weights, WeightsInput,
    WorkItem,
};
use domain::staff::{normalise_label, StaffError, MAX_ENTRIES, MAX_LABEL_CHARS};
use domain::work_allocation::{
    self as work_allocation, WorkAllocation, WorkAllocationError, WorkKind, WorkRef, MAX_RECORDED,
};
use eventstore::Metadata;
use projections::staffing::{self as model};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::consistency::{wait_for_cursor, ReadQuery};
use crate::error::ApiError;
use crate::extract::{query, ApiJson, CommandDone};
use crate::permissions::{OPERATORS, READERS};
use crate::AppState;

use super::staff::{Location, Slot};
use super::{routes, Routes};
use crate::config::weight_slot;

pub fn routes() -> Routes {
    Routes::new()
        .route(OPERATORS, routes!(allocate))
        .route(READERS, routes!(rank))
        .route(READERS, routes!(show_allocation))
        .route(OPERATORS, routes!(release))
        .route(READERS, routes!(replay))
}

/// The most candidates a ranking returns (by default [`allocation::DEFAULT_LIMIT`], 5).
const RANK_LIMIT_MAX: usize = 100;
/// How many candidates an allocation ranks and records by default (at most [`MAX_RECORDED`]).
const ALLOCATE_LIMIT_DEFAULT: usize = 10;

/// The piece of work to rank candidates for.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct Work {
    /// Skills the work needs (labels); none means any candidate matches fully.
    #[serde(default)]
    #[schema(example = json!(["wound care"]))]
    required_skills: Vec<String>,
    /// When the work happens, in the staff's local time.
    slot: Slot,
    /// Where the work happens.
    location: Location,
    /// The client the work is for (continuity and preferred clients are judged by it).
    client_id: Uuid,
    /// A label for the kind of work (matched against preferred kinds), e.g. `home visit`.
    #[serde(default)]
    #[schema(example = "home visit")]
    kind: String,
}

impl Work {
    fn to_domain(&self) -> Result<WorkItem, ApiError> {
        let invalid = |field, reason| WorkAllocationError::InvalidField { field, reason };
        if self.required_skills.len() > MAX_ENTRIES {
            return Err(invalid("work.required_skills", "list at most 100").into());
        }
        for skill in &self.required_skills {
            let label = normalise_label(skill);
            if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
                return Err(
                    invalid("work.required_skills", "each skill has 1 to 64 characters").into(),
                );
            }
        }
        if normalise_label(&self.kind).chars().count() > MAX_LABEL_CHARS {
            return Err(invalid("work.kind", "at most 64 characters").into());
        }
        let slot = self.slot.to_domain().map_err(|e| match e {
            StaffError::InvalidField { field, reason } => invalid(
                if field == "end_minute" {
                    "work.slot.end_minute"
                } else {
                    "work.slot.start_minute"
                },
                reason,
            ),
            _ => invalid("work.slot", "not a valid slot"),
        })?;
        let location = self
            .location
            .to_domain("work.location.lat_e6", "work.location.lon_e6")?;
        Ok(WorkItem::new(
            &self.required_skills,
            slot,
            location,
            self.client_id,
            &self.kind,
        ))
    }

    fn of(w: &WorkItem) -> Self {
        Work {
            required_skills: w.required_skills.iter().cloned().collect(),
            slot: Slot::of(&w.slot),
            location: Location::of(w.location),
            client_id: w.client_id,
            kind: w.kind.clone(),
        }
    }
}

/// Weights for this request only: a factor left out keeps its base weight (the configured
/// weights when ranking or allocating, the recorded ones when replaying). Whole numbers from 0
/// to 1,000,000; not all zero. Only their ratios matter.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WeightsOverride {
    skill_match: Option<i64>,
    availability: Option<i64>,
    travel_distance: Option<i64>,
    workload: Option<i64>,
    continuity: Option<i64>,
    preference: Option<i64>,
}

impl WeightsOverride {
    fn over(&self, base: &Weights) -> Result<Weights, AllocationError> {
        let mut input = WeightsInput::from(*base);
        for (factor, value) in [
            (Factor::SkillMatch, self.skill_match),
            (Factor::Availability, self.availability),
            (Factor::TravelDistance, self.travel_distance),
            (Factor::Workload, self.workload),
            (Factor::Continuity, self.continuity),
            (Factor::Preference, self.preference),
        ] {
            if let Some(v) = value {
                *weight_slot(&mut input, factor) = v;
            }
        }
        Weights::new(input)
    }
}

/// Base weights overridden by a request's, and where they came from.
fn resolve(
    requested: Option<&WeightsOverride>,
    base: &Weights,
    base_name: &'static str,
) -> Result<(Weights, &'static str), ApiError> {
    match requested {
        None => Ok((*base, base_name)),
        Some(o) => Ok((o.over(base)?, "request")),
    }
}

fn limit(value: Option<i64>, default: usize, max: usize) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(v) => usize::try_from(v)
            .ok()
            .filter(|v| (1..=max).contains(v))
            .ok_or_else(|| ApiError::InvalidField {
                field: "limit",
                reason: format!("give 1 to {max}, not {v}"),
            }),
    }
}

fn work_kind(raw: &str) -> Result<WorkKind, ApiError> {
    WorkKind::parse(raw).ok_or_else(|| {
        ApiError::BadPath(format!(
            "kind: {:?} is not case, task or referral",
            raw.chars().take(32).collect::<String>()
        ))
    })
}

fn allocation_path(path: Result<Path<(String, Uuid)>, PathRejection>) -> Result<WorkRef, ApiError> {
    let Path((kind, id)) = path.map_err(|e| ApiError::BadPath(e.body_text()))?;
    Ok(WorkRef {
        kind: work_kind(&kind)?,
        id,
    })
}

// ---------------------------------------------------------------------------------------------
// Response shapes

/// The six weights.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct WeightsView {
    skill_match: u32,
    availability: u32,
    travel_distance: u32,
    workload: u32,
    continuity: u32,
    preference: u32,
}

impl From<&Weights> for WeightsView {
    fn from(w: &Weights) -> Self {
        WeightsView {
            skill_match: w.get(Factor::SkillMatch),
            availability: w.get(Factor::Availability),
            travel_distance: w.get(Factor::TravelDistance),
            workload: w.get(Factor::Workload),
            continuity: w.get(Factor::Continuity),
            preference: w.get(Factor::Preference),
        }
    }
}

/// One factor of a candidate's score.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct FactorView {
    /// skill_match, availability, travel_distance, workload, continuity or preference.
    #[schema(example = "skill_match")]
    factor: &'static str,
    /// 0 to 1; 1 is best.
    value: f64,
    weight: u32,
    /// weight × value.
    contribution: f64,
    /// What the value means, in words.
    #[schema(example = "holds 2 of the 2 required skills")]
    explanation: String,
}

/// A ranked candidate with every factor explained.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct CandidateView {
    /// 1 is best.
    rank: usize,
    staff_id: Uuid,
    /// From the read model; absent if the staff member is not (yet) in it.
    name: Option<String>,
    /// The sum of the contributions.
    total: f64,
    /// total ÷ the sum of the weights, as a percentage.
    score_percent: f64,
    /// From home to the work, in km.
    distance_km: f64,
    /// In the order skill_match, availability, travel_distance, workload, continuity,
    /// preference.
    factors: Vec<FactorView>,
}

fn candidate_views(
    ranking: &[RankedCandidate],
    work: &WorkItem,
    weights: &Weights,
    names: &HashMap<Uuid, String>,
) -> Vec<CandidateView> {
    let max = weights.sum().max(1) as f64;
    ranking
        .iter()
        .enumerate()
        .map(|(i, r)| CandidateView {
            rank: i + 1,
            staff_id: r.staff_id,
            name: names.get(&r.staff_id).cloned(),
            total: r.total,
            score_percent: (r.total / max * 1000.0).round() / 10.0,
            distance_km: (r.distance_km * 1000.0).round() / 1000.0,
            factors: r
                .factors
                .iter()
                .map(|s| FactorView {
                    factor: s.factor.as_str(),
                    value: s.value,
                    weight: s.weight,
                    contribution: s.contribution,
                    explanation: work_allocation::explain(s.factor, s.value, r.distance_km, work),
                })
                .collect(),
        })
        .collect()
}

async fn names_of(
    state: &AppState,
    ranking: &[RankedCandidate],
) -> Result<HashMap<Uuid, String>, ApiError> {
    let ids: Vec<Uuid> = ranking.iter().map(|r| r.staff_id).collect();
    model::names(state.store.pool(), &ids)
        .await
        .map_err(ApiError::db)
}

// ---------------------------------------------------------------------------------------------
// Staff

// ---------------------------------------------------------------------------------------------
// Ranking and allocation

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct RankRequest {
    work: Work,
    /// Optional what-if weights over the configured ones.
    weights: Option<WeightsOverride>,
    /// How many candidates to return: 1 to 100; default 5.
    limit: Option<i64>,
}

/// The best candidates for a piece of work.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Ranking {
    /// The weights used.
    weights: WeightsView,
    /// `configured`, or `request` when the request overrode some.
    weights_source: &'static str,
    /// The highest total possible (the sum of the weights).
    max_total: u64,
    /// How many staff members were ranked.
    considered: usize,
    candidates: Vec<CandidateView>,
}

#[utoipa::path(post, path = "/allocations/rank", tag = "allocations", security(("bearer" = [])), request_body = RankRequest,
    params(ReadQuery),
    responses((status = 200, description = "The top candidates, best first, with each factor's value, weight, contribution and explanation; nothing is recorded", body = Ranking),
        (status = 422, description = "Negative, oversized or all-zero weights (negative_weight, weight_too_large, all_weights_zero), an invalid slot, location or limit; `field` names it", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn rank(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ReadQuery>, QueryRejection>,
    ApiJson(body): ApiJson<RankRequest>,
) -> Result<Json<Ranking>, ApiError> {
    let q = query(q)?;
    let (weights, source) = resolve(
        body.weights.as_ref(),
        state.staffing.weights(),
        "configured",
    )?;
    let limit = limit(body.limit, allocation::DEFAULT_LIMIT, RANK_LIMIT_MAX)?;
    let work = body.work.to_domain()?;
    wait_for_cursor(&state, model::NAME, &headers, q.min_cursor.as_deref()).await?;
    let (ranking, considered) = state.staffing.rank(&work, &weights, limit).await?;
    let names = names_of(&state, &ranking).await?;
    Ok(Json(Ranking {
        weights: WeightsView::from(&weights),
        weights_source: source,
        max_total: weights.sum(),
        considered,
        candidates: candidate_views(&ranking, &work, &weights, &names),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct AllocateRequest {
    /// case, task or referral.
    #[schema(value_type = String, example = "case")]
    work_kind: WorkKind,
    /// The case's, task's or referral's id.
    work_id: Uuid,
    work: Work,
    /// Optional weights over the configured ones (recorded with the decision).
    weights: Option<WeightsOverride>,
    /// How many candidates to rank and record: 1 to 25; default 10. A chosen staff member must
    /// be among them.
    limit: Option<i64>,
    /// Allocate to this staff member instead of the best-ranked one (a person overriding the
    /// ranking); must be among the ranked candidates.
    staff_id: Option<Uuid>,
}

/// A recorded allocation decision, explained.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AllocationView {
    /// case, task or referral.
    work_kind: &'static str,
    work_id: Uuid,
    /// The allocation stream (UUID v5 of work kind and id).
    allocation_id: Uuid,
    /// The staff member the work went to.
    staff_id: Uuid,
    staff_name: Option<String>,
    /// False once released.
    active: bool,
    allocated_at: Option<DateTime<Utc>>,
    released_at: Option<DateTime<Utc>>,
    release_reason: Option<String>,
    /// How many times this work has been allocated (1, or more after releases).
    allocations: u32,
    /// True when somebody other than the best-ranked candidate was chosen.
    overrides_ranking: bool,
    /// The chosen staff member's place in the recorded ranking.
    chosen_rank: Option<usize>,
    work: Work,
    weights: WeightsView,
    max_total: u64,
    /// How many staff members were ranked.
    considered: usize,
    /// The recorded ranking (the best `limit` candidates), each factor explained.
    ranking: Vec<CandidateView>,
    /// The allocation stream's version.
    version: u64,
    /// For `min_cursor` on reads (present on the response of a write).
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
}

fn allocation_view(
    work: WorkRef,
    version: u64,
    state: &WorkAllocation,
    names: &HashMap<Uuid, String>,
    cursor: Option<eventstore::Cursor>,
) -> Result<AllocationView, ApiError> {
    let decision: &AllocationDecision = state
        .decision
        .as_ref()
        .ok_or(ApiError::from(WorkAllocationError::NotFound))?;
    Ok(AllocationView {
        work_kind: work.kind.as_str(),
        work_id: work.id,
        allocation_id: WorkAllocation::stream_id(work),
        staff_id: decision.chosen,
        staff_name: names.get(&decision.chosen).cloned(),
        active: state.active,
        allocated_at: state.allocated_at,
        released_at: state.released_at,
        release_reason: state.release_reason.clone(),
        allocations: state.allocations,
        overrides_ranking: decision.overrides_ranking(),
        chosen_rank: work_allocation::position(&decision.ranking, decision.chosen),
        work: Work::of(&decision.work),
        weights: WeightsView::from(&decision.weights),
        max_total: decision.weights.sum(),
        considered: decision.considered,
        ranking: candidate_views(&decision.ranking, &decision.work, &decision.weights, names),
        version,
        cursor: cursor.map(|c| c.to_string()),
    })
}

#[utoipa::path(post, path = "/allocations", tag = "allocations", security(("bearer" = [])), request_body = AllocateRequest,
    params(ReadQuery),
    responses((status = 201, description = "Allocated: the recorded decision, explained", body = AllocationView),
        (status = 409, description = "The work is allocated already and not released (work_already_allocated, with staff_id), or there is no staff member to allocate to (no_candidates)", body = crate::openapi::ProblemDoc),
        (status = 422, description = "Invalid weights, work or limit; a staff_id that is not registered (unknown_staff) or not among the ranked candidates (staff_not_ranked); `field` names it", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn allocate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    q: Result<Query<ReadQuery>, QueryRejection>,
    ApiJson(body): ApiJson<AllocateRequest>,
) -> Result<(StatusCode, Json<AllocationView>), ApiError> {
    let q = query(q)?;
    let (weights, _) = resolve(
        body.weights.as_ref(),
        state.staffing.weights(),
        "configured",
    )?;
    let limit = limit(body.limit, ALLOCATE_LIMIT_DEFAULT, MAX_RECORDED)?;
    let work = body.work.to_domain()?;
    let work_ref = WorkRef {
        kind: body.work_kind,
        id: body.work_id,
    };
    wait_for_cursor(&state, model::NAME, &headers, q.min_cursor.as_deref()).await?;
    let (version, allocation, outcome) = state
        .staffing
        .allocate(
            work_ref,
            &work,
            &weights,
            limit,
            body.staff_id,
            &Metadata::by(caller.actor()),
        )
        .await?;
    let names = match &allocation.decision {
        Some(d) => names_of(&state, &d.ranking).await?,
        None => HashMap::new(),
    };
    Ok((
        StatusCode::CREATED,
        Json(allocation_view(
            work_ref,
            version,
            &allocation,
            &names,
            outcome.cursor,
        )?),
    ))
}

#[utoipa::path(get, path = "/allocations/{kind}/{id}", tag = "allocations", security(("bearer" = [])),
    params(("kind" = String, Path, description = "case, task or referral"), ("id" = Uuid, Path, description = "The work's id")),
    responses((status = 200, description = "The latest recorded decision for this work, explained from its event: weights, every ranked candidate's factor values and contributions, who was chosen, whether it still stands", body = AllocationView),
        (status = 400, description = "Unknown kind", body = crate::openapi::ProblemDoc),
        (status = 404, description = "Never allocated", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn show_allocation(
    State(state): State<AppState>,
    path: Result<Path<(String, Uuid)>, PathRejection>,
) -> Result<Json<AllocationView>, ApiError> {
    let work = allocation_path(path)?;
    let (version, allocation) = state.staffing.load_allocation(work).await?;
    let names = match &allocation.decision {
        Some(d) => names_of(&state, &d.ranking).await?,
        None => HashMap::new(),
    };
    Ok(Json(allocation_view(
        work,
        version,
        &allocation,
        &names,
        None,
    )?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct ReleaseRequest {
    /// Why (done, reassigned, cancelled, ...): 1 to 500 characters.
    reason: String,
}

#[utoipa::path(post, path = "/allocations/{kind}/{id}/release", tag = "allocations", security(("bearer" = [])), request_body = ReleaseRequest,
    params(("kind" = String, Path, description = "case, task or referral"), ("id" = Uuid, Path, description = "The work's id")),
    responses((status = 200, description = "Released; the work may be allocated again. `id` is the allocation stream", body = CommandDone),
        (status = 400, description = "Unknown kind", body = crate::openapi::ProblemDoc),
        (status = 404, description = "Never allocated", body = crate::openapi::ProblemDoc),
        (status = 409, description = "Not allocated now (work_not_allocated)", body = crate::openapi::ProblemDoc),
        (status = 422, description = "Missing reason", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn release(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<(String, Uuid)>, PathRejection>,
    ApiJson(body): ApiJson<ReleaseRequest>,
) -> Result<Json<CommandDone>, ApiError> {
    let work = allocation_path(path)?;
    let stream = WorkAllocation::stream_id(work);
    let outcome = state
        .staffing
        .release(work, body.reason, &Metadata::by(caller.actor()))
        .await?;
    Ok(Json(CommandDone::new(
        stream,
        outcome.version,
        outcome.cursor,
    )))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct ReplayRequest {
    /// Other weights; a factor left out keeps its recorded weight.
    #[serde(default)]
    weights: Option<WeightsOverride>,
}

/// A recorded decision re-ranked with other weights, from its recorded factor values.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ReplayView {
    work_kind: &'static str,
    work_id: Uuid,
    /// The weights the decision was made with.
    recorded_weights: WeightsView,
    /// The weights of this replay.
    weights: WeightsView,
    max_total: u64,
    /// Who got the work.
    chosen: Uuid,
    /// The chosen staff member's place in the recorded ranking and in this one.
    chosen_rank_recorded: Option<usize>,
    chosen_rank_now: Option<usize>,
    /// The best candidate with these weights.
    top_now: Option<Uuid>,
    /// True when these weights would have put somebody else first.
    would_change: bool,
    /// How many staff members the decision ranked; only the recorded ones are re-ranked.
    considered: usize,
    /// The recorded candidates re-ranked, each factor explained.
    ranking: Vec<CandidateView>,
}

#[utoipa::path(post, path = "/allocations/{kind}/{id}/replay", tag = "allocations", security(("bearer" = [])), request_body = ReplayRequest,
    params(("kind" = String, Path, description = "case, task or referral"), ("id" = Uuid, Path, description = "The work's id")),
    responses((status = 200, description = "The latest recorded decision's candidates re-ranked with the given weights from their recorded factor values; nothing is recorded", body = ReplayView),
        (status = 400, description = "Unknown kind", body = crate::openapi::ProblemDoc),
        (status = 404, description = "Never allocated", body = crate::openapi::ProblemDoc),
        (status = 422, description = "Negative, oversized or all-zero weights; `field` names it", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn replay(
    State(state): State<AppState>,
    path: Result<Path<(String, Uuid)>, PathRejection>,
    ApiJson(body): ApiJson<ReplayRequest>,
) -> Result<Json<ReplayView>, ApiError> {
    let work = allocation_path(path)?;
    let (_, allocation) = state.staffing.load_allocation(work).await?;
    let decision = allocation
        .decision
        .as_ref()
        .ok_or(ApiError::from(WorkAllocationError::NotFound))?;
    let (weights, _) = resolve(body.weights.as_ref(), &decision.weights, "recorded")?;
    let ranking = work_allocation::replay(decision, &weights);
    let names = names_of(&state, &ranking).await?;
    let top_now = ranking.first().map(|r| r.staff_id);
    Ok(Json(ReplayView {
        work_kind: work.kind.as_str(),
        work_id: work.id,
        recorded_weights: WeightsView::from(&decision.weights),
        weights: WeightsView::from(&weights),
        max_total: weights.sum(),
        chosen: decision.chosen,
        chosen_rank_recorded: work_allocation::position(&decision.ranking, decision.chosen),
        chosen_rank_now: work_allocation::position(&ranking, decision.chosen),
        top_now,
        would_change: top_now != Some(decision.chosen),
        considered: decision.considered,
        ranking: candidate_views(&ranking, &decision.work, &weights, &names),
    }))
}
