//! `/staff` and `/allocations`: staff profiles and availability, and allocating work (a case, a
//! task or a referral) to staff by the six weighted factors of `DOMAIN.md` ("Assignments and
//! allocation"), with every factor's value, weight and contribution shown.
//!
//! - Ranking (`POST /allocations/rank`) reads the candidates from the `staffing` read model
//!   (through [`AppState::candidates`], which reuses the list while the model is unchanged) and
//!   ranks them with [`domain::allocation::rank`]; it appends nothing.
//! - Allocating (`POST /allocations`) ranks the same way and records the decision (its inputs:
//!   the work, the weights, each ranked candidate's factor values, the choice) as a
//!   `WorkAllocated` event on the work's allocation stream.
//! - A recorded decision is explained from the event alone (`GET /allocations/{kind}/{id}`) and
//!   replayed with other weights from its recorded values (`POST .../replay`, nothing appended).
//!
//! Weights come from configuration ([`AppState::allocation_weights`], set from
//! `CASELEDGER_ALLOCATION_WEIGHTS`, see [`parse_weights`]); a request may override some or all
//! of them for a what-if.

use std::collections::{BTreeSet, HashMap};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use domain::allocation::{
    self, AllocationDecision, AllocationError, Factor, RankedCandidate, Weights, WeightsInput,
    WorkItem,
};
use domain::staff::{
    normalise_label, GeoPoint, StaffCommand, StaffError, StaffMember, StaffPreferences,
    StaffProfile, TimeSlot, Weekday, MAX_ENTRIES, MAX_LABEL_CHARS,
};
use domain::work_allocation::{
    self as work_allocation, WorkAllocation, WorkAllocationCommand, WorkAllocationError, WorkKind,
    WorkRef, MAX_RECORDED,
};
use eventstore::Metadata;
use projections::staffing::{self as model, AllocationRow, AvailabilitySlot, StaffRow};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::as_of;
use crate::auth::Caller;
use crate::consistency::{wait_for_cursor, ReadQuery};
use crate::error::ApiError;
use crate::extract::{path_id, query, ApiJson, CommandDone};
use crate::permissions::{AUDITORS, OPERATORS, READERS};
use crate::AppState;

use super::{routes, Routes};

pub fn routes() -> Routes {
    Routes::new()
        .route(OPERATORS, routes!(register))
        .route(READERS, routes!(list))
        .route(READERS, routes!(show))
        .route(OPERATORS, routes!(update))
        .route(OPERATORS, routes!(set_availability))
        .route(AUDITORS, routes!(state_as_of))
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

// ---------------------------------------------------------------------------------------------
// Configuration

/// The weights configured by `CASELEDGER_ALLOCATION_WEIGHTS`: `NAME=WEIGHT` pairs separated by
/// commas, names from [`Factor::as_str`] (`skill_match`, `availability`, `travel_distance`,
/// `workload`, `continuity`, `preference`), weights whole numbers from 0 to 1,000,000. A factor
/// not named keeps its default ([`Weights::DEFAULT`]); an empty string means all defaults.
/// Refused, naming the culprit: an unknown or repeated name, a weight that is not a whole
/// number, negative or too large, and weights that come out all zero.
pub fn parse_weights(spec: &str) -> Result<Weights, String> {
    let mut input = WeightsInput::from(Weights::DEFAULT);
    let mut seen: BTreeSet<Factor> = BTreeSet::new();
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not NAME=WEIGHT"))?;
        let name = name.trim();
        let factor = Factor::ALL
            .into_iter()
            .find(|f| f.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "{name:?} is not a factor (use {})",
                    Factor::ALL.map(Factor::as_str).join(", ")
                )
            })?;
        if !seen.insert(factor) {
            return Err(format!("{name} is given twice"));
        }
        let value: i64 = value
            .trim()
            .parse()
            .map_err(|_| format!("{name}: {:?} is not a whole number", value.trim()))?;
        *weight_slot(&mut input, factor) = value;
    }
    Weights::new(input).map_err(|e| e.to_string())
}

fn weight_slot(input: &mut WeightsInput, factor: Factor) -> &mut i64 {
    match factor {
        Factor::SkillMatch => &mut input.skill_match,
        Factor::Availability => &mut input.availability,
        Factor::TravelDistance => &mut input.travel_distance,
        Factor::Workload => &mut input.workload,
        Factor::Continuity => &mut input.continuity,
        Factor::Preference => &mut input.preference,
    }
}

// ---------------------------------------------------------------------------------------------
// Request shapes

/// A point in micro-degrees (1e-6 degree): `-33868800` is 33.8688° south.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct Location {
    #[schema(example = -33_868_800)]
    lat_e6: i64,
    #[schema(example = 151_209_300)]
    lon_e6: i64,
}

impl Location {
    fn to_domain(
        self,
        lat_field: &'static str,
        lon_field: &'static str,
    ) -> Result<GeoPoint, ApiError> {
        let narrow = |v: i64| i32::try_from(v).unwrap_or(i32::MAX);
        GeoPoint::new(narrow(self.lat_e6), narrow(self.lon_e6)).map_err(|e| match e {
            StaffError::InvalidField {
                field: "lat_e6",
                reason,
            } => StaffError::InvalidField {
                field: lat_field,
                reason,
            }
            .into(),
            StaffError::InvalidField { reason, .. } => StaffError::InvalidField {
                field: lon_field,
                reason,
            }
            .into(),
            other => other.into(),
        })
    }

    fn of(p: GeoPoint) -> Self {
        Location {
            lat_e6: i64::from(p.lat_e6()),
            lon_e6: i64::from(p.lon_e6()),
        }
    }
}

/// A stretch of one weekday in minutes after local midnight, end exclusive: Monday 09:00-11:00
/// is `{"weekday": "monday", "start_minute": 540, "end_minute": 660}`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct Slot {
    /// monday ... sunday.
    #[schema(value_type = String, example = "monday")]
    weekday: Weekday,
    #[schema(example = 540)]
    start_minute: i64,
    /// 1440 (midnight) at the latest.
    #[schema(example = 660)]
    end_minute: i64,
}

impl Slot {
    fn to_domain(self) -> Result<TimeSlot, StaffError> {
        let minute = |v: i64, field| {
            u16::try_from(v).map_err(|_| StaffError::InvalidField {
                field,
                reason: "minutes are 0 to 1440",
            })
        };
        TimeSlot::new(
            self.weekday,
            minute(self.start_minute, "start_minute")?,
            minute(self.end_minute, "end_minute")?,
        )
    }

    fn of(s: &TimeSlot) -> Self {
        Slot {
            weekday: s.weekday(),
            start_minute: i64::from(s.start_minute()),
            end_minute: i64::from(s.end_minute()),
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct Preferences {
    /// Kinds of work preferred (labels such as `home visit`).
    #[serde(default)]
    work_kinds: Vec<String>,
    /// Clients the staff member asked to work with.
    #[serde(default)]
    clients: Vec<Uuid>,
}

/// A staff member's profile.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct Profile {
    #[schema(example = "Ada Lovelace")]
    name: String,
    /// Skill labels; compared case- and space-insensitively.
    #[schema(example = json!(["wound care", "medication"]))]
    skills: Vec<String>,
    /// Where the staff member travels from.
    home: Location,
    /// How many open pieces of work they can carry at once: 1 to 1000.
    #[schema(example = 4)]
    max_workload: i64,
    #[serde(default)]
    preferences: Preferences,
}

impl Profile {
    fn into_domain(self) -> Result<StaffProfile, ApiError> {
        Ok(StaffProfile {
            name: self.name,
            skills: self.skills.into_iter().collect(),
            home: self.home.to_domain("home.lat_e6", "home.lon_e6")?,
            max_workload: u32::try_from(self.max_workload).map_err(|_| {
                StaffError::InvalidField {
                    field: "max_workload",
                    reason: "give 1 to 1000",
                }
            })?,
            preferences: StaffPreferences {
                work_kinds: self.preferences.work_kinds.into_iter().collect(),
                clients: self.preferences.clients.into_iter().collect(),
            },
        })
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewStaff {
    /// Optional: choose the id, so that a retried request returns the same staff member.
    staff_id: Option<Uuid>,
    #[serde(flatten)]
    profile: Profile,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct Availability {
    /// The whole weekly availability (replaces the current one); overlapping and touching
    /// slots are merged. An empty list means never available. At most 100 slots.
    slots: Vec<Slot>,
}

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

#[utoipa::path(post, path = "/staff", tag = "staff", security(("bearer" = [])), request_body = NewStaff,
    responses((status = 201, description = "Registered", body = CommandDone),
        (status = 200, description = "This staff_id was already registered by this same request: the same staff member", body = CommandDone),
        (status = 409, description = "The staff_id is taken (staff_exists), or was used for a different request (command_id_reused)", body = crate::openapi::ProblemDoc),
        (status = 422, description = "Invalid name, skill, home, capacity or preference; `field` names it", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn register(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewStaff>,
) -> Result<(StatusCode, Json<CommandDone>), ApiError> {
    let profile = body.profile.into_domain()?;
    let id = body.staff_id.unwrap_or_else(Uuid::new_v4);
    let mut metadata = Metadata::by(caller.actor());
    if body.staff_id.is_some() {
        // A resend of the same registration returns the first result.
        metadata = metadata.with_command_id(Uuid::new_v5(&id, b"register staff member"));
    }
    let outcome = state
        .staff
        .handle(id, &StaffCommand::Register { profile }, &metadata)
        .await
        .map_err(refused(StaffError::NotFound))?;
    let status = if outcome.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(CommandDone::new(id, outcome.version, outcome.cursor)),
    ))
}

#[utoipa::path(put, path = "/staff/{id}", tag = "staff", security(("bearer" = [])), request_body = Profile,
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Profile replaced", body = CommandDone),
        (status = 404, body = crate::openapi::ProblemDoc), (status = 409, description = "Nothing changed", body = crate::openapi::ProblemDoc),
        (status = 422, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<Profile>,
) -> Result<Json<CommandDone>, ApiError> {
    let id = path_id(path)?;
    let profile = body.into_domain()?;
    staff_command(&state, &caller, id, StaffCommand::UpdateProfile { profile }).await
}

#[utoipa::path(put, path = "/staff/{id}/availability", tag = "staff", security(("bearer" = [])), request_body = Availability,
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Weekly availability replaced (merged)", body = CommandDone),
        (status = 404, body = crate::openapi::ProblemDoc), (status = 409, description = "Nothing changed", body = crate::openapi::ProblemDoc),
        (status = 422, description = "A slot that does not start before it ends or ends after midnight, or more than 100", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn set_availability(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<Availability>,
) -> Result<Json<CommandDone>, ApiError> {
    let id = path_id(path)?;
    let slots = body
        .slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.to_domain().map_err(|e| ApiError::InvalidField {
                field: "slots",
                reason: format!("slot {i}: {e}"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    staff_command(&state, &caller, id, StaffCommand::SetAvailability { slots }).await
}

async fn staff_command(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    command: StaffCommand,
) -> Result<Json<CommandDone>, ApiError> {
    let outcome = state
        .staff
        .handle(id, &command, &Metadata::by(caller.actor()))
        .await
        .map_err(refused(StaffError::NotFound))?;
    Ok(Json(CommandDone::new(id, outcome.version, outcome.cursor)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Part of the name or of a skill.
    search: Option<String>,
    /// 1 to 500; default 50.
    limit: Option<i64>,
    offset: Option<i64>,
    /// Wait until the read model includes this cursor (a command's `cursor`).
    min_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct StaffPage {
    staff: Vec<StaffRow>,
    total: i64,
    limit: i64,
    offset: i64,
}

#[utoipa::path(get, path = "/staff", tag = "staff", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, description = "A page of staff members by name, each with their current workload", body = StaffPage),
        (status = 400, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<StaffPage>, ApiError> {
    let q = query(q)?;
    let limit = match q.limit {
        None => 50,
        Some(l @ 1..=500) => l,
        Some(l) => return Err(ApiError::BadQuery(format!("limit: {l} is not 1 to 500"))),
    };
    let offset = match q.offset {
        None => 0,
        Some(o) if o >= 0 => o,
        Some(o) => return Err(ApiError::BadQuery(format!("offset: {o} is negative"))),
    };
    wait_for_cursor(&state, model::NAME, &headers, q.min_cursor.as_deref()).await?;
    let (staff, total) = model::list_staff(
        state.store.pool(),
        q.search.as_deref().filter(|s| !s.is_empty()),
        limit,
        offset,
    )
    .await?;
    Ok(Json(StaffPage {
        staff,
        total,
        limit,
        offset,
    }))
}

/// A staff member, their current workload against their capacity, and the work they hold.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct StaffDetail {
    #[serde(flatten)]
    staff: StaffRow,
    /// max_workload − current_workload; negative when over capacity.
    free_capacity: i64,
    /// current_workload ÷ max_workload, as a percentage.
    workload_percent: f64,
    /// The allocations the staff member holds now, oldest first.
    active_allocations: Vec<AllocationRow>,
}

#[utoipa::path(get, path = "/staff/{id}", tag = "staff", security(("bearer" = [])),
    params(("id" = Uuid, Path), ReadQuery),
    responses((status = 200, description = "The profile, availability, current workload and the work held", body = StaffDetail),
        (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<StaffDetail>, ApiError> {
    let id = path_id(path)?;
    let q = query(q)?;
    wait_for_cursor(&state, model::NAME, &headers, q.min_cursor.as_deref()).await?;
    let pool = state.store.pool();
    let staff = model::staff_member(pool, id)
        .await?
        .ok_or(ApiError::from(StaffError::NotFound))?;
    let active_allocations = model::active_allocations(pool, id).await?;
    let max = i64::from(staff.max_workload);
    Ok(Json(StaffDetail {
        free_capacity: max - staff.current_workload,
        workload_percent: if max > 0 {
            (staff.current_workload as f64 / max as f64 * 1000.0).round() / 10.0
        } else {
            0.0
        },
        active_allocations,
        staff,
    }))
}

/// A staff member as rebuilt from their events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct StaffState {
    staff_id: Uuid,
    name: String,
    skills: Vec<String>,
    home: Location,
    max_workload: u32,
    preferences: Preferences,
    availability: Vec<AvailabilitySlot>,
    /// The stream version this state is as of.
    version: u64,
}

#[utoipa::path(get, path = "/staff/{id}/state", tag = "staff", security(("bearer" = [])),
    params(("id" = Uuid, Path), crate::as_of::AsOfQuery),
    responses((status = 200, description = "The staff member now, or as of a time or version, from the events", body = StaffState),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn state_as_of(
    State(state): State<AppState>,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<as_of::AsOfQuery>, QueryRejection>,
) -> Result<Json<StaffState>, ApiError> {
    let id = path_id(path)?;
    let at = query(q)?.at()?;
    let (version, s) = as_of::state::<StaffMember>(&state.store, id, at).await?;
    let profile = s.profile.ok_or(ApiError::from(StaffError::NotFound))?;
    Ok(Json(StaffState {
        staff_id: id,
        name: profile.name,
        skills: profile.skills.into_iter().collect(),
        home: Location::of(profile.home),
        max_workload: profile.max_workload,
        preferences: Preferences {
            work_kinds: profile.preferences.work_kinds.into_iter().collect(),
            clients: profile.preferences.clients.into_iter().collect(),
        },
        availability: s
            .availability
            .iter()
            .map(|t| AvailabilitySlot {
                weekday: serde_json::to_value(t.weekday())
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                start_minute: t.start_minute(),
                end_minute: t.end_minute(),
            })
            .collect(),
        version,
    }))
}

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
        &state.allocation_weights,
        "configured",
    )?;
    let limit = limit(body.limit, allocation::DEFAULT_LIMIT, RANK_LIMIT_MAX)?;
    let work = body.work.to_domain()?;
    wait_for_cursor(&state, model::NAME, &headers, q.min_cursor.as_deref()).await?;
    let candidates = state.candidates.candidates(state.store.pool()).await?;
    let ranking = allocation::rank(&work, &candidates, &weights, limit);
    let names = names_of(&state, &ranking).await?;
    Ok(Json(Ranking {
        weights: WeightsView::from(&weights),
        weights_source: source,
        max_total: weights.sum(),
        considered: candidates.len(),
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
        &state.allocation_weights,
        "configured",
    )?;
    let limit = limit(body.limit, ALLOCATE_LIMIT_DEFAULT, MAX_RECORDED)?;
    let work = body.work.to_domain()?;
    let work_ref = WorkRef {
        kind: body.work_kind,
        id: body.work_id,
    };
    if let Some(staff_id) = body.staff_id {
        let (version, staff) = state.staff.load(staff_id).await.map_err(|e| match e {
            commands::CommandError::Store(eventstore::StoreError::StreamTypeMismatch {
                ..
            }) => ApiError::UnknownStaff {
                field: "staff_id",
                staff_id,
            },
            other => other.into(),
        })?;
        if version == 0 || !staff.exists() {
            return Err(ApiError::UnknownStaff {
                field: "staff_id",
                staff_id,
            });
        }
    }
    let stream = WorkAllocation::stream_id(work_ref);
    // Refuse early, before ranking, when the work is taken; the command decides again.
    let (_, current) = state
        .allocations
        .load(stream)
        .await
        .map_err(refused(WorkAllocationError::NotFound))?;
    if let Some(staff_id) = current.current_staff() {
        return Err(WorkAllocationError::AlreadyAllocated { staff_id }.into());
    }
    wait_for_cursor(&state, model::NAME, &headers, q.min_cursor.as_deref()).await?;
    let candidates = state.candidates.candidates(state.store.pool()).await?;
    let decision = allocation::allocate(&work, &candidates, &weights, limit, body.staff_id)?;
    let outcome = state
        .allocations
        .handle(
            stream,
            &WorkAllocationCommand::Allocate {
                work: work_ref,
                decision,
            },
            &Metadata::by(caller.actor()),
        )
        .await
        .map_err(refused(WorkAllocationError::NotFound))?;
    // The allocation as this command left it (not as a later command may have).
    let (version, allocation) = state
        .allocations
        .load_at_version(stream, outcome.version)
        .await
        .map_err(refused(WorkAllocationError::NotFound))?;
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

async fn load_allocation(
    state: &AppState,
    work: WorkRef,
) -> Result<(u64, WorkAllocation), ApiError> {
    let (version, allocation) = state
        .allocations
        .load(WorkAllocation::stream_id(work))
        .await
        .map_err(refused(WorkAllocationError::NotFound))?;
    if version == 0 || allocation.decision.is_none() {
        return Err(WorkAllocationError::NotFound.into());
    }
    Ok((version, allocation))
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
    let (version, allocation) = load_allocation(&state, work).await?;
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
        .allocations
        .handle(
            stream,
            &WorkAllocationCommand::Release {
                reason: body.reason,
            },
            &Metadata::by(caller.actor()),
        )
        .await
        .map_err(refused(WorkAllocationError::NotFound))?;
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
    let (_, allocation) = load_allocation(&state, work).await?;
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

/// A staff or allocation command's failure as an answer; an id that belongs to another kind of
/// stream names no record of this kind (`not_found`).
fn refused<R: domain::refusal::Refusal + Send + Sync + 'static>(
    not_found: R,
) -> impl FnOnce(commands::CommandError<R>) -> ApiError {
    move |e| e.widen::<R>(not_found).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_weights_override_the_defaults_factor_by_factor() {
        assert_eq!(parse_weights(""), Ok(Weights::DEFAULT));
        let w = parse_weights(" travel_distance = 50 , preference=0").expect("valid");
        assert_eq!(w.get(Factor::TravelDistance), 50);
        assert_eq!(w.get(Factor::Preference), 0);
        assert_eq!(
            w.get(Factor::SkillMatch),
            Weights::DEFAULT.get(Factor::SkillMatch)
        );
    }

    #[test]
    fn bad_configured_weights_are_refused_naming_the_culprit() {
        for (spec, says) in [
            ("skill_match=-1", "skill_match"),
            ("skills=3", "\"skills\" is not a factor"),
            ("workload", "is not NAME=WEIGHT"),
            ("workload=lots", "workload"),
            ("workload=1,workload=2", "workload is given twice"),
            ("availability=2000000", "availability"),
            (
                "skill_match=0,availability=0,travel_distance=0,workload=0,continuity=0,preference=0",
                "at least one weight",
            ),
        ] {
            let error = parse_weights(spec).expect_err(spec);
            assert!(error.contains(says), "{spec}: {error}");
        }
    }
}
