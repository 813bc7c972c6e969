//! `/physicians`: register, update, deactivate; the list; a physician with their credentials.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use domain::jurisdiction::Jurisdiction;
use domain::physician::{Npi, Physician, PhysicianCommand, PhysicianDetails};
use eventstore::Metadata;
use projections::credentialing::{self as model, CredentialRow, PhysicianRow};
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
        .route(OPERATORS, routes!(deactivate))
        .route(OPERATORS, routes!(reactivate))
        .route(AUDITORS, routes!(state_as_of))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewPhysician {
    /// 10 digits with a valid check digit.
    #[schema(value_type = String, example = "1234567893")]
    npi: Npi,
    #[serde(flatten)]
    details: Details,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct Details {
    name: String,
    email: String,
    specialty: String,
    /// US states of practice (two-letter codes).
    #[schema(value_type = Vec<String>, example = json!(["TX", "CA"]))]
    states: Vec<Jurisdiction>,
}

impl From<Details> for PhysicianDetails {
    fn from(d: Details) -> Self {
        PhysicianDetails {
            name: d.name,
            email: d.email,
            specialty: d.specialty,
            states: d.states,
        }
    }
}

#[utoipa::path(post, path = "/physicians", tag = "physicians", security(("bearer" = [])), request_body = NewPhysician,
    responses((status = 201, description = "Registered", body = CommandDone),
        (status = 409, description = "NPI already registered", body = crate::openapi::ProblemDoc),
        (status = 422, description = "Invalid NPI, name, e-mail, specialty or state", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn register(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewPhysician>,
) -> Result<(StatusCode, Json<CommandDone>), ApiError> {
    let outcome = state
        .credentialing
        .register_physician(body.npi, body.details.into(), &Metadata::by(caller.actor()))
        .await?;
    Ok((StatusCode::CREATED, Json(outcome.into())))
}

#[utoipa::path(put, path = "/physicians/{id}", tag = "physicians", security(("bearer" = [])), request_body = Details,
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Updated", body = CommandDone),
        (status = 404, body = crate::openapi::ProblemDoc), (status = 409, description = "Nothing changed", body = crate::openapi::ProblemDoc),
        (status = 422, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<Details>,
) -> Result<Json<CommandDone>, ApiError> {
    let id = path_id(path)?;
    command(
        &state,
        &caller,
        id,
        PhysicianCommand::Update {
            details: body.into(),
        },
    )
    .await
}

#[utoipa::path(post, path = "/physicians/{id}/deactivate", tag = "physicians", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Deactivated", body = CommandDone), (status = 404, body = crate::openapi::ProblemDoc), (status = 409, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn deactivate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<CommandDone>, ApiError> {
    command(
        &state,
        &caller,
        path_id(path)?,
        PhysicianCommand::Deactivate,
    )
    .await
}

#[utoipa::path(post, path = "/physicians/{id}/reactivate", tag = "physicians", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Reactivated", body = CommandDone), (status = 404, body = crate::openapi::ProblemDoc), (status = 409, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn reactivate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<CommandDone>, ApiError> {
    command(
        &state,
        &caller,
        path_id(path)?,
        PhysicianCommand::Reactivate,
    )
    .await
}

async fn command(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    command: PhysicianCommand,
) -> Result<Json<CommandDone>, ApiError> {
    let outcome = state
        .credentialing
        .physician_command(id, command, &Metadata::by(caller.actor()))
        .await?;
    Ok(Json(CommandDone::new(id, outcome.version, outcome.cursor)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Part of the name, NPI or specialty.
    search: Option<String>,
    active: Option<bool>,
    /// 1 to 500; default 50.
    limit: Option<i64>,
    offset: Option<i64>,
    /// Wait until the read model includes this cursor (a command's `cursor`).
    min_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PhysicianPage {
    physicians: Vec<PhysicianRow>,
    total: i64,
    limit: i64,
    offset: i64,
}

#[utoipa::path(get, path = "/physicians", tag = "physicians", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, description = "A page of physicians, by name", body = PhysicianPage), (status = 400, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<PhysicianPage>, ApiError> {
    let q = query(q)?;
    wait_for_cursor(&state, "credentialing", &headers, q.min_cursor.as_deref()).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let offset = q.offset.unwrap_or(0).max(0);
    let (physicians, total) = model::list_physicians(
        state.store.pool(),
        q.search.as_deref().filter(|s| !s.is_empty()),
        q.active,
        limit,
        offset,
    )
    .await?;
    Ok(Json(PhysicianPage {
        physicians,
        total,
        limit,
        offset,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PhysicianOverview {
    physician: PhysicianRow,
    /// Each credential with days to expiry (as of today) and its open renewal.
    credentials: Vec<CredentialRow>,
}

#[utoipa::path(get, path = "/physicians/{id}", tag = "physicians", security(("bearer" = [])),
    params(("id" = Uuid, Path), ReadQuery),
    responses((status = 200, description = "The physician and their credentials", body = PhysicianOverview), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<PhysicianOverview>, ApiError> {
    let id = path_id(path)?;
    let q = query(q)?;
    wait_for_cursor(&state, "credentialing", &headers, q.min_cursor.as_deref()).await?;
    let pool = state.store.pool();
    let physician = model::physician(pool, id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            code: "physician_not_found",
            detail: format!("no physician {id}"),
        })?;
    let today = state.clock.now().date_naive();
    let credentials = model::credentials(pool, Some(id), None, today).await?;
    Ok(Json(PhysicianOverview {
        physician,
        credentials,
    }))
}

/// A physician as rebuilt from their events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PhysicianState {
    physician_id: Uuid,
    npi: String,
    name: String,
    email: String,
    specialty: String,
    states: Vec<String>,
    active: bool,
    /// The stream version this state is as of.
    version: u64,
}

#[utoipa::path(get, path = "/physicians/{id}/state", tag = "physicians", security(("bearer" = [])),
    params(("id" = Uuid, Path), crate::as_of::AsOfQuery),
    responses((status = 200, description = "The physician now, or as of a time or version, from the events", body = PhysicianState),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn state_as_of(
    State(state): State<AppState>,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<as_of::AsOfQuery>, QueryRejection>,
) -> Result<Json<PhysicianState>, ApiError> {
    let id = path_id(path)?;
    let at = query(q)?.at()?;
    let (version, p) = as_of::state::<Physician>(&state.store, id, at).await?;
    let npi = p.npi.ok_or(ApiError::NotFound {
        code: "physician_not_found",
        detail: format!("no physician {id}"),
    })?;
    Ok(Json(PhysicianState {
        physician_id: id,
        npi: npi.to_string(),
        name: p.name,
        email: p.email,
        specialty: p.specialty,
        states: p.states.iter().map(|s| s.to_string()).collect(),
        active: p.active,
        version,
    }))
}
