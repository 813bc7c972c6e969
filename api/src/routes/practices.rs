//! `/practices`: create, update, deactivate practices and their locations; assign and unassign
//! physicians one by one or in bulk (a result per physician), transfer between practices; the
//! list, one practice with its physicians, physicians available to assign, and the reports
//! (specialty distribution, coverage by state, licence compliance by practice).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use commands::practices::Assigned;
use domain::practice::{
    Address, AssignmentOutcome, Practice, PracticeCommand, PracticeDetails, UnassignmentOutcome,
};
use eventstore::{Cursor, Metadata};
use projections::practices::{
    self as model, ComplianceGap, CoverageRow, LocationRow, MemberRow, PracticeRow, SpecialtyRow,
};
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
        .route(OPERATORS, routes!(create))
        .route(READERS, routes!(list))
        .route(READERS, routes!(available))
        .route(READERS, routes!(specialties))
        .route(READERS, routes!(coverage))
        .route(READERS, routes!(compliance))
        .route(READERS, routes!(show))
        .route(OPERATORS, routes!(update))
        .route(OPERATORS, routes!(deactivate))
        .route(OPERATORS, routes!(reactivate))
        .route(OPERATORS, routes!(add_location))
        .route(OPERATORS, routes!(remove_location))
        .route(OPERATORS, routes!(assign))
        .route(OPERATORS, routes!(unassign))
        .route(OPERATORS, routes!(transfer))
        .route(AUDITORS, routes!(state_as_of))
}

const PROJECTION: &str = "practices";

/// Largest bulk request.
const MAX_BULK: usize = 500;

async fn command(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    command: PracticeCommand,
) -> Result<Json<CommandDone>, ApiError> {
    let outcome = state
        .practices
        .command(id, command, &Metadata::by(caller.actor()))
        .await?;
    Ok(Json(CommandDone::new(id, outcome.version, outcome.cursor)))
}

#[utoipa::path(post, path = "/practices", tag = "practices", security(("bearer" = [])), request_body = crate::openapi::PracticeDetailsDoc,
    responses((status = 201, description = "Created", body = CommandDone),
        (status = 409, description = "The name is taken", body = crate::openapi::ProblemDoc),
        (status = 422, description = "Invalid NPI, EIN, phone, e-mail, address or kind", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(details): ApiJson<PracticeDetails>,
) -> Result<(StatusCode, Json<CommandDone>), ApiError> {
    let outcome = state
        .practices
        .create(details, &Metadata::by(caller.actor()))
        .await?;
    Ok((StatusCode::CREATED, Json(outcome.into())))
}

#[utoipa::path(put, path = "/practices/{id}", tag = "practices", security(("bearer" = [])), request_body = crate::openapi::PracticeDetailsDoc,
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Updated", body = CommandDone), (status = 404, body = crate::openapi::ProblemDoc),
        (status = 409, body = crate::openapi::ProblemDoc), (status = 422, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(details): ApiJson<PracticeDetails>,
) -> Result<Json<CommandDone>, ApiError> {
    command(
        &state,
        &caller,
        path_id(path)?,
        PracticeCommand::Update { details },
    )
    .await
}

#[utoipa::path(post, path = "/practices/{id}/deactivate", tag = "practices", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Deactivated", body = CommandDone), (status = 404, body = crate::openapi::ProblemDoc),
        (status = 409, description = "Physicians are still assigned, or already inactive", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn deactivate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<CommandDone>, ApiError> {
    command(&state, &caller, path_id(path)?, PracticeCommand::Deactivate).await
}

#[utoipa::path(post, path = "/practices/{id}/reactivate", tag = "practices", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Reactivated", body = CommandDone), (status = 404, body = crate::openapi::ProblemDoc), (status = 409, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn reactivate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<CommandDone>, ApiError> {
    command(&state, &caller, path_id(path)?, PracticeCommand::Reactivate).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewLocation {
    name: String,
    #[schema(value_type = crate::openapi::AddressDoc)]
    address: Address,
}

#[utoipa::path(post, path = "/practices/{id}/locations", tag = "practices", security(("bearer" = [])), request_body = NewLocation,
    params(("id" = Uuid, Path)),
    responses((status = 201, description = "Added; `id` is the location's id", body = CommandDone), (status = 404, body = crate::openapi::ProblemDoc),
        (status = 409, description = "A location of that name exists", body = crate::openapi::ProblemDoc), (status = 422, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn add_location(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<NewLocation>,
) -> Result<(StatusCode, Json<CommandDone>), ApiError> {
    let id = path_id(path)?;
    let location_id = Uuid::new_v4();
    let Json(done) = command(
        &state,
        &caller,
        id,
        PracticeCommand::AddLocation {
            location_id,
            name: body.name,
            address: body.address,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CommandDone {
            id: location_id,
            ..done
        }),
    ))
}

#[utoipa::path(post, path = "/practices/{id}/locations/{location_id}/remove", tag = "practices", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("location_id" = Uuid, Path)),
    responses((status = 200, description = "Removed", body = CommandDone), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn remove_location(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<(Uuid, Uuid)>, PathRejection>,
) -> Result<Json<CommandDone>, ApiError> {
    let Path((id, location_id)) = path.map_err(|e| ApiError::BadPath(e.body_text()))?;
    command(
        &state,
        &caller,
        id,
        PracticeCommand::RemoveLocation { location_id },
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct PhysicianIds {
    /// 1 to 500 physician ids.
    physician_ids: Vec<Uuid>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BulkResult {
    /// One entry per requested physician, in request order.
    #[schema(value_type = Vec<Object>)]
    results: Vec<serde_json::Value>,
    /// How many changed.
    changed: usize,
    /// Pass as `min_cursor` to read the change.
    cursor: Option<String>,
}

fn bulk_ids(body: &PhysicianIds) -> Result<Vec<Uuid>, ApiError> {
    if body.physician_ids.is_empty() || body.physician_ids.len() > MAX_BULK {
        return Err(ApiError::InvalidField {
            field: "physician_ids",
            reason: format!("give 1 to {MAX_BULK} physician ids"),
        });
    }
    let mut seen = std::collections::HashSet::new();
    Ok(body
        .physician_ids
        .iter()
        .copied()
        .filter(|id| seen.insert(*id))
        .collect())
}

fn bulk_response<O: Serialize>(
    results: Vec<Assigned<O>>,
    changed: impl Fn(&O) -> bool,
) -> Json<BulkResult> {
    let cursor: Option<Cursor> = results.iter().filter_map(|r| r.cursor).max();
    let count = results.iter().filter(|r| changed(&r.outcome)).count();
    Json(BulkResult {
        results: results
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(&r.outcome).unwrap_or_default();
                if let serde_json::Value::Object(map) = &mut v {
                    map.insert("physician_id".into(), serde_json::json!(r.physician_id));
                }
                v
            })
            .collect(),
        changed: count,
        cursor: cursor.map(|c| c.to_string()),
    })
}

#[utoipa::path(post, path = "/practices/{id}/physicians", tag = "practices", security(("bearer" = [])), request_body = PhysicianIds,
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "A result per physician: assigned, already_assigned_elsewhere (with practice_id), already_in_this_practice, inactive, unknown; the valid ones are applied", body = BulkResult),
        (status = 404, body = crate::openapi::ProblemDoc), (status = 409, description = "The practice is inactive", body = crate::openapi::ProblemDoc),
        (status = 422, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn assign(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<PhysicianIds>,
) -> Result<Json<BulkResult>, ApiError> {
    let id = path_id(path)?;
    let meta = Metadata::by(caller.actor());
    let mut results = Vec::new();
    for physician_id in bulk_ids(&body)? {
        results.push(state.practices.assign(id, physician_id, &meta).await?);
    }
    Ok(bulk_response(results, |o| {
        *o == AssignmentOutcome::Assigned
    }))
}

#[utoipa::path(post, path = "/practices/{id}/physicians/unassign", tag = "practices", security(("bearer" = [])), request_body = PhysicianIds,
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "A result per physician: unassigned, not_in_this_practice, unknown", body = BulkResult),
        (status = 404, body = crate::openapi::ProblemDoc), (status = 422, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn unassign(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<PhysicianIds>,
) -> Result<Json<BulkResult>, ApiError> {
    let id = path_id(path)?;
    let meta = Metadata::by(caller.actor());
    let mut results = Vec::new();
    for physician_id in bulk_ids(&body)? {
        results.push(state.practices.unassign(id, physician_id, &meta).await?);
    }
    Ok(bulk_response(results, |o| {
        *o == UnassignmentOutcome::Unassigned
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct TransferBody {
    to_practice_id: Uuid,
}

#[utoipa::path(post, path = "/practices/{id}/physicians/{physician_id}/transfer", tag = "practices", security(("bearer" = [])), request_body = TransferBody,
    params(("id" = Uuid, Path, description = "The practice the physician is in"), ("physician_id" = Uuid, Path)),
    responses((status = 200, description = "Moved in one transaction; `version` is the physician's practice-membership version", body = CommandDone),
        (status = 404, body = crate::openapi::ProblemDoc),
        (status = 409, description = "Not in this practice, target inactive, or the same practice", body = crate::openapi::ProblemDoc),
        (status = 422, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn transfer(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<(Uuid, Uuid)>, PathRejection>,
    ApiJson(body): ApiJson<TransferBody>,
) -> Result<Json<CommandDone>, ApiError> {
    let Path((from, physician_id)) = path.map_err(|e| ApiError::BadPath(e.body_text()))?;
    let written = state
        .practices
        .transfer(
            physician_id,
            from,
            body.to_practice_id,
            &Metadata::by(caller.actor()),
        )
        .await?;
    Ok(Json(CommandDone::new(
        physician_id,
        written.membership_version,
        written.cursor,
    )))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Part of the name, specialty or city.
    search: Option<String>,
    /// US state of the primary address.
    state: Option<String>,
    active: Option<bool>,
    /// 1 to 500; default 50.
    limit: Option<i64>,
    offset: Option<i64>,
    /// Wait until the read model includes this cursor.
    min_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PracticePage {
    practices: Vec<PracticeRow>,
    total: i64,
    limit: i64,
    offset: i64,
}

#[utoipa::path(get, path = "/practices", tag = "practices", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, description = "Practices by name, with physician counts", body = PracticePage), (status = 400, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<PracticePage>, ApiError> {
    let q = query(q)?;
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let offset = q.offset.unwrap_or(0).max(0);
    let (practices, total) = model::list(
        state.store.pool(),
        q.search.as_deref().filter(|s| !s.is_empty()),
        q.state.as_deref().map(str::to_ascii_uppercase).as_deref(),
        q.active,
        limit,
        offset,
    )
    .await?;
    Ok(Json(PracticePage {
        practices,
        total,
        limit,
        offset,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PracticeView {
    #[serde(flatten)]
    practice: PracticeRow,
    locations: Vec<LocationRow>,
    physicians: Vec<MemberRow>,
}

#[utoipa::path(get, path = "/practices/{id}", tag = "practices", security(("bearer" = [])),
    params(("id" = Uuid, Path), ReadQuery),
    responses((status = 200, description = "The practice, its locations and its physicians", body = PracticeView), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<PracticeView>, ApiError> {
    let id = path_id(path)?;
    let q = query(q)?;
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    let pool = state.store.pool();
    let practice = model::get(pool, id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            code: "practice_not_found",
            detail: format!("no practice {id}"),
        })?;
    Ok(Json(PracticeView {
        practice,
        locations: model::locations(pool, id).await?,
        physicians: model::members(pool, id).await?,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AvailableQuery {
    specialty: Option<String>,
    /// A US state the physician practises in.
    state: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
    min_cursor: Option<String>,
}

#[utoipa::path(get, path = "/practices/available-physicians", tag = "practices", security(("bearer" = [])),
    params(AvailableQuery),
    responses((status = 200, description = "Active physicians in no practice", body = Vec<MemberRow>)))]
pub(crate) async fn available(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<AvailableQuery>, QueryRejection>,
) -> Result<Json<Vec<MemberRow>>, ApiError> {
    let q = query(q)?;
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    Ok(Json(
        model::available(
            state.store.pool(),
            q.specialty.as_deref(),
            q.state.as_deref().map(str::to_ascii_uppercase).as_deref(),
            q.limit.unwrap_or(100),
            q.offset.unwrap_or(0),
        )
        .await?,
    ))
}

#[utoipa::path(get, path = "/practices/reports/specialties", tag = "practices", security(("bearer" = [])),
    responses((status = 200, description = "Physicians (all, assigned) and practices per specialty", body = Vec<SpecialtyRow>)))]
pub(crate) async fn specialties(
    State(state): State<AppState>,
) -> Result<Json<Vec<SpecialtyRow>>, ApiError> {
    Ok(Json(model::specialties(state.store.pool()).await?))
}

#[utoipa::path(get, path = "/practices/reports/coverage", tag = "practices", security(("bearer" = [])),
    responses((status = 200, description = "Per state: physicians practising, of them licensed today, practices with a site there", body = Vec<CoverageRow>)))]
pub(crate) async fn coverage(
    State(state): State<AppState>,
) -> Result<Json<Vec<CoverageRow>>, ApiError> {
    let today = state.clock.now().date_naive();
    Ok(Json(model::coverage(state.store.pool(), today).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ComplianceQuery {
    /// Only this practice.
    practice_id: Option<Uuid>,
}

#[utoipa::path(get, path = "/practices/reports/compliance", tag = "practices", security(("bearer" = [])),
    params(ComplianceQuery),
    responses((status = 200, description = "Physicians lacking a licence valid today in a state where their practice operates", body = Vec<ComplianceGap>)))]
pub(crate) async fn compliance(
    State(state): State<AppState>,
    q: Result<Query<ComplianceQuery>, QueryRejection>,
) -> Result<Json<Vec<ComplianceGap>>, ApiError> {
    let q = query(q)?;
    let today = state.clock.now().date_naive();
    Ok(Json(
        model::compliance(state.store.pool(), q.practice_id, today).await?,
    ))
}

/// A practice as rebuilt from its events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PracticeState {
    practice_id: Uuid,
    #[schema(value_type = Object)]
    details: PracticeDetails,
    active: bool,
    locations: Vec<Uuid>,
    physicians: Vec<Uuid>,
    /// The stream version this state is as of.
    version: u64,
}

#[utoipa::path(get, path = "/practices/{id}/state", tag = "practices", security(("bearer" = [])),
    params(("id" = Uuid, Path), crate::as_of::AsOfQuery),
    responses((status = 200, description = "The practice now, or as of a time or version, from the events", body = PracticeState),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn state_as_of(
    State(state): State<AppState>,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<as_of::AsOfQuery>, QueryRejection>,
) -> Result<Json<PracticeState>, ApiError> {
    let id = path_id(path)?;
    let at = query(q)?.at()?;
    let (version, p) = as_of::state::<Practice>(&state.store, id, at).await?;
    let details = p.details.ok_or(ApiError::NotFound {
        code: "practice_not_found",
        detail: format!("no practice {id}"),
    })?;
    Ok(Json(PracticeState {
        practice_id: id,
        details,
        active: p.active,
        locations: p.locations.keys().copied().collect(),
        physicians: p.physicians.iter().copied().collect(),
        version,
    }))
}
