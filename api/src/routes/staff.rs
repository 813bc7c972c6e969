//! `/staff`: staff profiles and weekly availability, the people work is allocated to
//! ([`super::allocations`] ranks and allocates). The handlers extract the request and call
//! [`commands::staffing::Staffing`], where the `StaffMember` aggregate decides; the list and
//! detail come from the `staffing` read model.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use domain::staff::{
    GeoPoint, StaffCommand, StaffError, StaffMember, StaffPreferences, StaffProfile, TimeSlot,
    Weekday,
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
    pub(super) fn to_domain(
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

    pub(super) fn of(p: GeoPoint) -> Self {
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
    pub(super) fn to_domain(self) -> Result<TimeSlot, StaffError> {
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

    pub(super) fn of(s: &TimeSlot) -> Self {
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
        .staffing
        .command(id, StaffCommand::Register { profile }, &metadata)
        .await?;
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
        .staffing
        .command(id, command, &Metadata::by(caller.actor()))
        .await?;
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
