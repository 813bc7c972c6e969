//! `/notifications`: the notifications list, the outbox, one notification with its delivery
//! history, manual retry of a failed one, and a test notification through the live channel.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use chrono::NaiveDate;
use domain::notification::{self, Severity};
use eventstore::Metadata;
use projections::notifications::{self as model, AttemptRow, NotificationQuery, NotificationRow};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::consistency::{wait_for_cursor, ReadQuery};
use crate::error::ApiError;
use crate::extract::{path_id, query, CommandDone};
use crate::permissions::{ADMINS, READERS};
use crate::AppState;

use super::{routes, Routes};

pub fn routes() -> Routes {
    Routes::new()
        .route(READERS, routes!(list))
        .route(READERS, routes!(outbox))
        .route(ADMINS, routes!(send_test))
        .route(READERS, routes!(show))
        .route(ADMINS, routes!(retry))
}

const PROJECTION: &str = "notifications";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// pending, sending, delivered, failed or cancelled.
    status: Option<String>,
    /// info, warning or critical.
    severity: Option<String>,
    physician_id: Option<Uuid>,
    credential_id: Option<Uuid>,
    /// Scheduled on or after this date (YYYY-MM-DD).
    from: Option<NaiveDate>,
    /// Scheduled before this date.
    to: Option<NaiveDate>,
    /// 1 to 500; default 50.
    limit: Option<i64>,
    offset: Option<i64>,
    /// Wait until the read model includes this cursor.
    min_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct NotificationPage {
    notifications: Vec<NotificationRow>,
    total: i64,
    limit: i64,
    offset: i64,
}

async fn page(
    state: &AppState,
    headers: &HeaderMap,
    q: ListQuery,
    outbox: bool,
) -> Result<Json<NotificationPage>, ApiError> {
    if let Some(s) = q.status.as_deref() {
        if notification::NotificationStatus::parse(s).is_none() {
            return Err(ApiError::BadQuery(format!(
                "status: {:?} is not pending, sending, delivered, failed or cancelled",
                s.chars().take(32).collect::<String>()
            )));
        }
    }
    if let Some(s) = q.severity.as_deref() {
        if Severity::parse(s).is_none() {
            return Err(ApiError::BadQuery(format!(
                "severity: {:?} is not info, warning or critical",
                s.chars().take(32).collect::<String>()
            )));
        }
    }
    wait_for_cursor(state, PROJECTION, headers, q.min_cursor.as_deref()).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let offset = q.offset.unwrap_or(0).max(0);
    let (notifications, total) = model::list(
        state.store.pool(),
        &NotificationQuery {
            status: q.status,
            severity: q.severity,
            physician_id: q.physician_id,
            credential_id: q.credential_id,
            from: q.from,
            to: q.to,
            outbox,
            limit,
            offset,
        },
    )
    .await?;
    Ok(Json(NotificationPage {
        notifications,
        total,
        limit,
        offset,
    }))
}

#[utoipa::path(get, path = "/notifications", tag = "notifications", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, description = "Notifications, newest first", body = NotificationPage), (status = 400, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<NotificationPage>, ApiError> {
    page(&state, &headers, query(q)?, false).await
}

#[utoipa::path(get, path = "/notifications/outbox", tag = "notifications", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, description = "Pending notifications by next attempt time", body = NotificationPage), (status = 400, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn outbox(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<NotificationPage>, ApiError> {
    page(&state, &headers, query(q)?, true).await
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct NotificationDetail {
    #[serde(flatten)]
    notification: NotificationRow,
    /// Every delivery attempt and how it ended.
    attempts: Vec<AttemptRow>,
}

#[utoipa::path(get, path = "/notifications/{id}", tag = "notifications", security(("bearer" = [])),
    params(("id" = Uuid, Path), ReadQuery),
    responses((status = 200, description = "The notification and its delivery history", body = NotificationDetail), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<NotificationDetail>, ApiError> {
    let id = path_id(path)?;
    let q = query(q)?;
    wait_for_cursor(&state, PROJECTION, &headers, q.min_cursor.as_deref()).await?;
    let pool = state.store.pool();
    let notification = model::get(pool, id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            code: "notification_not_found",
            detail: format!("no notification {id}"),
        })?;
    let attempts = model::attempts(pool, id).await?;
    Ok(Json(NotificationDetail {
        notification,
        attempts,
    }))
}

#[utoipa::path(post, path = "/notifications/{id}/retry", tag = "notifications", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Pending again, with one more attempt", body = CommandDone),
        (status = 404, body = crate::openapi::ProblemDoc), (status = 409, description = "Not failed", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<CommandDone>, ApiError> {
    let id = path_id(path)?;
    let outcome = state
        .job_deps
        .notifications
        .retry(id, &Metadata::by(caller.actor()))
        .await?;
    Ok(Json(CommandDone::new(id, outcome.version, outcome.cursor)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TestSent {
    notification_id: Uuid,
    channel: &'static str,
    /// The attempt's outcome: delivered, or the error.
    delivered: bool,
    detail: Option<String>,
}

#[utoipa::path(post, path = "/notifications/test", tag = "notifications", security(("bearer" = [])),
    responses((status = 201, description = "A test notification was scheduled and sent once through the configured channel", body = TestSent)))]
pub(crate) async fn send_test(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<(StatusCode, Json<TestSent>), ApiError> {
    let sent = state
        .job_deps
        .notifications
        .send_test(&Metadata::by(caller.actor()))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TestSent {
            notification_id: sent.notification_id,
            channel: sent.channel,
            delivered: sent.delivered,
            detail: (!sent.delivered)
                .then(|| "the channel refused it; see GET /notifications/{id}".to_owned()),
        }),
    ))
}
