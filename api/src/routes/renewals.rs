//! `/renewals`: the credentialing team's renewal work. Initiate, move through the lifecycle,
//! complete checklist items, cancel (in place of delete), run the scan now; the list, detail,
//! timeline, checklist and dashboard statistics; a renewal's state as of a time or version.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use chrono::NaiveDate;
use commands::jobs::JobRun;
use domain::credential::CredentialKind;
use domain::jurisdiction::Jurisdiction;
use domain::renewal::{Origin, Renewal, RenewalCommand, RenewalStatus, Timeline};
use eventstore::Metadata;
use projections::credentialing::{
    self as model, ChecklistEntry, RenewalListRow, RenewalQuery, RenewalRow, RenewalSort,
    RenewalStatistics,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::as_of;
use crate::auth::Caller;
use crate::consistency::{wait_for_cursor, ReadQuery};
use crate::error::ApiError;
use crate::extract::{path_id, query, ApiJson, CommandDone};
use crate::permissions::{AUDITORS, OPERATORS, OPERATORS_AND_SYSTEM, READERS};
use crate::AppState;

use super::{routes, Routes};

pub fn routes() -> Routes {
    Routes::new()
        .route(OPERATORS, routes!(initiate))
        .route(READERS, routes!(list))
        .route(READERS, routes!(statistics))
        .route(OPERATORS_AND_SYSTEM, routes!(scan))
        .route(READERS, routes!(show))
        .route(READERS, routes!(timeline))
        .route(READERS, routes!(checklist))
        .route(OPERATORS, routes!(complete_item))
        .route(OPERATORS, routes!(change_status))
        .route(OPERATORS, routes!(cancel))
        .route(AUDITORS, routes!(state_as_of))
}

const PROJECTION: &str = "credentialing";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewRenewal {
    credential_id: Uuid,
    /// Optional: choose the id, so that a retried request returns the same renewal.
    renewal_id: Option<Uuid>,
}

#[utoipa::path(post, path = "/renewals", tag = "renewals", security(("bearer" = [])), request_body = NewRenewal,
    responses((status = 201, description = "Opened", body = CommandDone),
        (status = 200, description = "This renewal_id was already opened for this credential: the same renewal", body = CommandDone),
        (status = 404, description = "No such credential", body = crate::openapi::ProblemDoc),
        (status = 409, description = "A renewal is already open (see renewal_id), or the credential expired or was revoked", body = crate::openapi::ProblemDoc),
        (status = 422, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn initiate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewRenewal>,
) -> Result<(StatusCode, Json<CommandDone>), ApiError> {
    let renewal_id = body.renewal_id.unwrap_or_else(Uuid::new_v4);
    let outcome = state
        .credentialing
        .initiate_renewal(
            body.credential_id,
            renewal_id,
            Origin::Manual,
            &Metadata::by(caller.actor()),
        )
        .await?;
    let status = if outcome.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(CommandDone::new(
            renewal_id,
            outcome.version,
            outcome.cursor,
        )),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct StatusChange {
    /// in_progress (start, or resubmit after a rejection), filed, under_review, approved,
    /// rejected, expired or cancelled.
    status: String,
    /// Required for rejected and cancelled.
    reason: Option<String>,
    /// For approved: the credential's new expiry; default: the next cycle.
    new_expiry: Option<NaiveDate>,
}

#[utoipa::path(post, path = "/renewals/{id}/status", tag = "renewals", security(("bearer" = [])), request_body = StatusChange,
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Moved", body = CommandDone),
        (status = 404, body = crate::openapi::ProblemDoc),
        (status = 409, description = "Not allowed from the current state (current_status and allowed are in the problem), or required checklist items are open", body = crate::openapi::ProblemDoc),
        (status = 422, description = "Unknown status, missing reason, new expiry not later", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn change_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<StatusChange>,
) -> Result<Json<CommandDone>, ApiError> {
    let id = path_id(path)?;
    let target = RenewalStatus::parse(&body.status).ok_or_else(|| ApiError::InvalidField {
        field: "status",
        reason: format!(
            "{:?} is not a renewal status (not_started, in_progress, filed, under_review, approved, rejected, expired, cancelled)",
            body.status.chars().take(32).collect::<String>()
        ),
    })?;
    let reason = body.reason.unwrap_or_default();
    let command = match target {
        RenewalStatus::NotStarted => {
            return Err(ApiError::InvalidField {
                field: "status",
                reason: "a renewal never returns to not_started".into(),
            })
        }
        RenewalStatus::InProgress => RenewalCommand::Start,
        RenewalStatus::Filed => RenewalCommand::File,
        RenewalStatus::UnderReview => RenewalCommand::BeginReview,
        RenewalStatus::Approved => RenewalCommand::Approve {
            new_expiry: body.new_expiry,
        },
        RenewalStatus::Rejected => RenewalCommand::Reject { reason },
        RenewalStatus::Expired => RenewalCommand::Expire,
        RenewalStatus::Cancelled => RenewalCommand::Cancel { reason },
    };
    command_response(&state, &caller, id, command).await
}

// Documented under its own name: the work queues' `CancelBody` is another shape.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = CancelRenewal)]
pub(crate) struct CancelBody {
    reason: String,
}

#[utoipa::path(post, path = "/renewals/{id}/cancel", tag = "renewals", security(("bearer" = [])), request_body = CancelBody,
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Cancelled; the credential may get a new renewal", body = CommandDone),
        (status = 404, body = crate::openapi::ProblemDoc), (status = 409, body = crate::openapi::ProblemDoc), (status = 422, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<CancelBody>,
) -> Result<Json<CommandDone>, ApiError> {
    let id = path_id(path)?;
    command_response(
        &state,
        &caller,
        id,
        RenewalCommand::Cancel {
            reason: body.reason,
        },
    )
    .await
}

#[utoipa::path(post, path = "/renewals/{id}/checklist/{item}/complete", tag = "renewals", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("item" = String, Path, description = "The item's key, e.g. pay_fee")),
    responses((status = 200, description = "Completed (a not-started renewal is started too)", body = CommandDone),
        (status = 404, body = crate::openapi::ProblemDoc), (status = 409, description = "Already complete, or the renewal is past the checklist stage", body = crate::openapi::ProblemDoc),
        (status = 422, description = "No such item", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn complete_item(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<(Uuid, String)>, PathRejection>,
) -> Result<Json<CommandDone>, ApiError> {
    let Path((id, item)) = path.map_err(|e| ApiError::BadPath(e.body_text()))?;
    command_response(&state, &caller, id, RenewalCommand::CompleteItem { item }).await
}

async fn command_response(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    command: RenewalCommand,
) -> Result<Json<CommandDone>, ApiError> {
    let outcome = state
        .credentialing
        .renewal_command(id, command, &Metadata::by(caller.actor()))
        .await?;
    Ok(Json(CommandDone::new(id, outcome.version, outcome.cursor)))
}

#[utoipa::path(post, path = "/renewals/scan", tag = "renewals", security(("bearer" = [])),
    responses((status = 200, description = "The scan ran; its run record with opened, skipped and failed counts", body = JobRun),
        (status = 409, description = "A scan is running already (here or in another server)", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn scan(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<JobRun>, ApiError> {
    Ok(Json(
        crate::routes::jobs::run_job(&state, commands::jobs::RENEWAL_SCAN, &caller.actor()).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// not_started, in_progress, filed, under_review, approved, rejected, expired, cancelled.
    status: Option<String>,
    /// true: only open renewals; false: only closed ones.
    open: Option<bool>,
    /// license, dea or csr.
    kind: Option<String>,
    /// US state code.
    jurisdiction: Option<String>,
    physician_id: Option<Uuid>,
    /// Only renewals whose deadline (the credential's expiry) is within this many days.
    due_within_days: Option<i64>,
    /// deadline (default), initiated_at, progress or status.
    sort: Option<String>,
    /// asc (default) or desc.
    order: Option<String>,
    /// 1 to 500; default 50.
    limit: Option<i64>,
    offset: Option<i64>,
    /// Wait until the read model includes this cursor (a command's `cursor`).
    min_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RenewalPage {
    renewals: Vec<RenewalListRow>,
    total: i64,
    limit: i64,
    offset: i64,
}

fn bad(field: &str, value: &str, expected: &str) -> ApiError {
    ApiError::BadQuery(format!(
        "{field}: {:?} is not {expected}",
        value.chars().take(32).collect::<String>()
    ))
}

#[utoipa::path(get, path = "/renewals", tag = "renewals", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, description = "A page of renewals, most urgent first by default", body = RenewalPage), (status = 400, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<RenewalPage>, ApiError> {
    let q = query(q)?;
    let status = q
        .status
        .as_deref()
        .map(|s| RenewalStatus::parse(s).ok_or_else(|| bad("status", s, "a renewal status")))
        .transpose()?;
    let kind = q
        .kind
        .as_deref()
        .map(|k| CredentialKind::parse(k).ok_or_else(|| bad("kind", k, "license, dea or csr")))
        .transpose()?;
    let jurisdiction = q
        .jurisdiction
        .as_deref()
        .map(|j| Jurisdiction::parse(j).map_err(|_| bad("jurisdiction", j, "a US state code")))
        .transpose()?;
    let sort = match q.sort.as_deref() {
        None | Some("deadline") => RenewalSort::Deadline,
        Some("initiated_at") => RenewalSort::InitiatedAt,
        Some("progress") => RenewalSort::Progress,
        Some("status") => RenewalSort::Status,
        Some(other) => {
            return Err(bad(
                "sort",
                other,
                "deadline, initiated_at, progress or status",
            ))
        }
    };
    let descending = match q.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(bad("order", other, "asc or desc")),
    };
    let today = state.clock.now().date_naive();
    let due_by = match q.due_within_days {
        None => None,
        Some(days @ 0..=3650) => Some(today + chrono::Duration::days(days)),
        Some(days) => return Err(bad("due_within_days", &days.to_string(), "0 to 3650")),
    };
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let offset = q.offset.unwrap_or(0).max(0);
    let (renewals, total) = model::list_renewals(
        state.store.pool(),
        &RenewalQuery {
            status,
            open: q.open,
            kind,
            jurisdiction,
            physician_id: q.physician_id,
            due_by,
            sort,
            descending,
            limit,
            offset,
        },
    )
    .await?;
    Ok(Json(RenewalPage {
        renewals,
        total,
        limit,
        offset,
    }))
}

#[utoipa::path(get, path = "/renewals/statistics", tag = "renewals", security(("bearer" = [])),
    params(ReadQuery),
    responses((status = 200, description = "Counts for the dashboard, as of today", body = RenewalStatistics)))]
pub(crate) async fn statistics(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<RenewalStatistics>, ApiError> {
    let q = query(q)?;
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    let today = state.clock.now().date_naive();
    Ok(Json(model::statistics(state.store.pool(), today).await?))
}

async fn row(
    state: &AppState,
    headers: &HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<RenewalRow, ApiError> {
    let id = path_id(path)?;
    let q = query(q)?;
    wait_for_cursor(state, PROJECTION, headers, q.min_cursor.as_deref()).await?;
    model::renewal(state.store.pool(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            code: "renewal_not_found",
            detail: format!("no renewal {id}"),
        })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RenewalDetail {
    #[serde(flatten)]
    renewal: RenewalRow,
    /// Key dates: work starts, application window, final deadline, filed, estimated review, ...
    #[schema(value_type = Object)]
    timeline: Option<Timeline>,
    /// Days from today to the deadline; negative once past.
    days_to_deadline: i64,
}

#[utoipa::path(get, path = "/renewals/{id}", tag = "renewals", security(("bearer" = [])),
    params(("id" = Uuid, Path), ReadQuery),
    responses((status = 200, description = "Status, progress, next action, checklist with due dates, timeline", body = RenewalDetail), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<RenewalDetail>, ApiError> {
    let renewal = row(&state, &headers, path, q).await?;
    let today = state.clock.now().date_naive();
    Ok(Json(RenewalDetail {
        timeline: renewal.to_domain().timeline(),
        days_to_deadline: (renewal.credential_expiry - today).num_days(),
        renewal,
    }))
}

#[utoipa::path(get, path = "/renewals/{id}/timeline", tag = "renewals", security(("bearer" = [])),
    params(("id" = Uuid, Path), ReadQuery),
    responses((status = 200, description = "The renewal's key dates", body = Object), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn timeline(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Timeline>, ApiError> {
    let renewal = row(&state, &headers, path, q).await?;
    renewal
        .to_domain()
        .timeline()
        .map(Json)
        .ok_or_else(|| ApiError::internal("renewal row without a timeline"))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ChecklistView {
    renewal_id: Uuid,
    status: String,
    progress: i16,
    items: Vec<ChecklistEntry>,
}

#[utoipa::path(get, path = "/renewals/{id}/checklist", tag = "renewals", security(("bearer" = [])),
    params(("id" = Uuid, Path), ReadQuery),
    responses((status = 200, description = "Checklist items with due dates and who completed them when", body = ChecklistView), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn checklist(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<ChecklistView>, ApiError> {
    let renewal = row(&state, &headers, path, q).await?;
    Ok(Json(ChecklistView {
        renewal_id: renewal.renewal_id,
        status: renewal.status,
        progress: renewal.progress,
        items: renewal.checklist,
    }))
}

/// A renewal as rebuilt from its events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RenewalState {
    renewal_id: Uuid,
    credential_id: Uuid,
    status: String,
    progress: u8,
    next_action: Option<String>,
    /// Required items still open.
    open_items: Vec<String>,
    /// Completed item keys.
    completed_items: Vec<String>,
    #[schema(value_type = Object)]
    timeline: Option<Timeline>,
    /// The stream version this state is as of.
    version: u64,
}

#[utoipa::path(get, path = "/renewals/{id}/state", tag = "renewals", security(("bearer" = [])),
    params(("id" = Uuid, Path), crate::as_of::AsOfQuery),
    responses((status = 200, description = "The renewal now, or as of a time or version, from the events", body = RenewalState),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn state_as_of(
    State(state): State<AppState>,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<as_of::AsOfQuery>, QueryRejection>,
) -> Result<Json<RenewalState>, ApiError> {
    let id = path_id(path)?;
    let at = query(q)?.at()?;
    let (version, r) = as_of::state::<Renewal>(&state.store, id, at).await?;
    let status = r.status.ok_or(ApiError::NotFound {
        code: "renewal_not_found",
        detail: format!("no renewal {id}"),
    })?;
    Ok(Json(RenewalState {
        renewal_id: id,
        credential_id: r.credential_id,
        status: status.as_str().to_owned(),
        progress: r.progress(),
        next_action: r.next_action().map(str::to_owned),
        open_items: r.open_required_items(),
        completed_items: r.completed.iter().map(|(k, _)| k.clone()).collect(),
        timeline: r.timeline(),
        version,
    }))
}
