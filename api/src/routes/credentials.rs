//! `/credentials`: register a physician's licence, DEA or CSR registration; correct its expiry;
//! revoke it; read it now or as of a time or version.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use chrono::NaiveDate;
use domain::credential::{Credential, CredentialCommand, CredentialKind};
use domain::jurisdiction::Jurisdiction;
use eventstore::Metadata;
use projections::credentialing::{self as model, CredentialRow};
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
        .route(READERS, routes!(show))
        .route(OPERATORS, routes!(correct_expiry))
        .route(OPERATORS, routes!(revoke))
        .route(AUDITORS, routes!(state_as_of))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewCredential {
    physician_id: Uuid,
    #[schema(value_type = String, example = "dea")]
    kind: CredentialKind,
    #[schema(value_type = String, example = "TX")]
    jurisdiction: Jurisdiction,
    number: String,
    /// Last valid day (YYYY-MM-DD).
    expiry: NaiveDate,
}

#[utoipa::path(post, path = "/credentials", tag = "credentials", security(("bearer" = [])), request_body = NewCredential,
    responses((status = 201, description = "Registered", body = CommandDone),
        (status = 409, description = "Already registered, or the physician is inactive", body = crate::openapi::ProblemDoc),
        (status = 422, description = "Unknown kind or jurisdiction, a date that is not a date, an unknown physician", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn register(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewCredential>,
) -> Result<(StatusCode, Json<CommandDone>), ApiError> {
    let outcome = state
        .credentialing
        .register_credential(
            body.physician_id,
            body.kind,
            body.jurisdiction,
            body.number,
            body.expiry,
            &Metadata::by(caller.actor()),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(outcome.into())))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewExpiry {
    /// The corrected expiry (YYYY-MM-DD).
    expiry: NaiveDate,
}

#[utoipa::path(post, path = "/credentials/{id}/expiry", tag = "credentials", security(("bearer" = [])), request_body = NewExpiry,
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Corrected", body = CommandDone), (status = 404, body = crate::openapi::ProblemDoc),
        (status = 409, body = crate::openapi::ProblemDoc), (status = 422, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn correct_expiry(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<NewExpiry>,
) -> Result<Json<CommandDone>, ApiError> {
    let id = path_id(path)?;
    command(
        &state,
        &caller,
        id,
        CredentialCommand::CorrectExpiry {
            expiry: body.expiry,
        },
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct Reason {
    reason: String,
}

#[utoipa::path(post, path = "/credentials/{id}/revoke", tag = "credentials", security(("bearer" = [])), request_body = Reason,
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Revoked", body = CommandDone), (status = 404, body = crate::openapi::ProblemDoc),
        (status = 409, description = "Already revoked, or a renewal is open", body = crate::openapi::ProblemDoc), (status = 422, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<Uuid>, PathRejection>,
    ApiJson(body): ApiJson<Reason>,
) -> Result<Json<CommandDone>, ApiError> {
    let id = path_id(path)?;
    command(
        &state,
        &caller,
        id,
        CredentialCommand::Revoke {
            reason: body.reason,
        },
    )
    .await
}

async fn command(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    command: CredentialCommand,
) -> Result<Json<CommandDone>, ApiError> {
    let outcome = state
        .credentialing
        .credential_command(id, command, &Metadata::by(caller.actor()))
        .await?;
    Ok(Json(CommandDone::new(id, outcome.version, outcome.cursor)))
}

#[utoipa::path(get, path = "/credentials/{id}", tag = "credentials", security(("bearer" = [])),
    params(("id" = Uuid, Path), ReadQuery),
    responses((status = 200, description = "The credential, days to expiry and open renewal", body = CredentialRow), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<CredentialRow>, ApiError> {
    let id = path_id(path)?;
    let q = query(q)?;
    wait_for_cursor(&state, "credentialing", &headers, q.min_cursor.as_deref()).await?;
    let today = state.clock.now().date_naive();
    model::credentials(state.store.pool(), None, Some(id), today)
        .await?
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound {
            code: "credential_not_found",
            detail: format!("no credential {id}"),
        })
}

/// A credential as rebuilt from its events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CredentialState {
    credential_id: Uuid,
    physician_id: Uuid,
    kind: String,
    jurisdiction: String,
    number: String,
    expiry: NaiveDate,
    revoked: bool,
    open_renewal_id: Option<Uuid>,
    /// The stream version this state is as of.
    version: u64,
}

#[utoipa::path(get, path = "/credentials/{id}/state", tag = "credentials", security(("bearer" = [])),
    params(("id" = Uuid, Path), crate::as_of::AsOfQuery),
    responses((status = 200, description = "The credential now, or as of a time or version, from the events", body = CredentialState),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn state_as_of(
    State(state): State<AppState>,
    path: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<as_of::AsOfQuery>, QueryRejection>,
) -> Result<Json<CredentialState>, ApiError> {
    let id = path_id(path)?;
    let at = query(q)?.at()?;
    let (version, c) = as_of::state::<Credential>(&state.store, id, at).await?;
    let not_found = || ApiError::NotFound {
        code: "credential_not_found",
        detail: format!("no credential {id}"),
    };
    let (Some(kind), Some(jurisdiction), Some(expiry)) = (c.kind, c.jurisdiction, c.expiry) else {
        return Err(not_found());
    };
    Ok(Json(CredentialState {
        credential_id: id,
        physician_id: c.physician_id,
        kind: kind.as_str().to_owned(),
        jurisdiction: jurisdiction.to_string(),
        number: c.number,
        expiry,
        revoked: c.revoked,
        open_renewal_id: c.open_renewal,
        version,
    }))
}
