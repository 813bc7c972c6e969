//! `/users`: administrators create users, change roles, unlock, deactivate and reactivate
//! accounts.

use axum::extract::rejection::PathRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use domain::user::{Role, User, Username};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::permissions::{ADMINS, AUDITORS};
use crate::AppState;

use super::{routes, Routes};

pub fn routes() -> Routes {
    Routes::new()
        .route(ADMINS, routes!(create))
        .route(AUDITORS, routes!(show))
        .route(ADMINS, routes!(change_role))
        .route(ADMINS, routes!(unlock))
        .route(ADMINS, routes!(deactivate))
        .route(ADMINS, routes!(reactivate))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewUser {
    username: String,
    email: String,
    #[schema(value_type = crate::openapi::RoleDoc)]
    role: Role,
    password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Created {
    user_id: Uuid,
    username: String,
    #[schema(value_type = crate::openapi::RoleDoc)]
    role: Role,
}

#[utoipa::path(post, path = "/users", tag = "users", security(("bearer" = [])), request_body = NewUser,
    responses((status = 201, description = "Created", body = Created),
        (status = 409, description = "Username taken", body = crate::openapi::ProblemDoc),
        (status = 422, description = "Invalid username, e-mail, role or weak password", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let user_id = state
        .auth
        .register(
            &body.username,
            &body.email,
            body.role,
            &body.password,
            &caller.actor(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            user_id,
            username: body.username,
            role: body.role,
        }),
    ))
}

fn username(path: Result<Path<String>, PathRejection>) -> Result<Username, ApiError> {
    let Path(name) = path.map_err(|e| ApiError::BadPath(e.body_text()))?;
    Username::parse(&name).map_err(|e| ApiError::refused(&e))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewRole {
    #[schema(value_type = crate::openapi::RoleDoc)]
    role: Role,
}

#[utoipa::path(post, path = "/users/{username}/role", tag = "users", security(("bearer" = [])), request_body = NewRole,
    params(("username" = String, Path)),
    responses((status = 204, description = "Changed"), (status = 404, body = crate::openapi::ProblemDoc),
        (status = 409, description = "The same role (`role_unchanged`), or the last active admin (`last_admin`)", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn change_role(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<NewRole>,
) -> Result<StatusCode, ApiError> {
    let name = username(path)?;
    state
        .auth
        .change_role(&name, body.role, &caller.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/users/{username}/unlock", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 204, description = "Unlocked (nothing happens to an account that is not locked)"), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn unlock(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let name = username(path)?;
    state.auth.unlock(&name, &caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/users/{username}/deactivate", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 204, description = "Deactivated; sessions revoked"), (status = 404, body = crate::openapi::ProblemDoc),
        (status = 409, description = "The last active admin (`last_admin`)", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn deactivate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let name = username(path)?;
    state.auth.deactivate(&name, &caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/users/{username}/reactivate", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 204, description = "Reactivated: the user may log in again with their password"),
        (status = 404, body = crate::openapi::ProblemDoc),
        (status = 409, description = "The account is active (`already_active`)", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn reactivate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let name = username(path)?;
    state.auth.reactivate(&name, &caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user as auditors see it: never the password hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct UserView {
    user_id: Uuid,
    username: String,
    email: String,
    #[schema(value_type = crate::openapi::RoleDoc)]
    role: Role,
    active: bool,
    failed_logins: u32,
    locked_until: Option<DateTime<Utc>>,
    /// The stream version this state is as of.
    version: u64,
}

/// `GET /users/{username}`, optionally `?as_of=TIME` or `?as_of_version=N`.
#[utoipa::path(get, path = "/users/{username}", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path), crate::as_of::AsOfQuery),
    responses((status = 200, description = "The user now, or as of a time or version", body = UserView),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<crate::as_of::AsOfQuery>, QueryRejection>,
) -> Result<Json<UserView>, ApiError> {
    let name = username(path)?;
    let Query(q) = query.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let at = q.at()?;
    let id = auth::user_id(&name);
    let (version, user) = crate::as_of::state::<User>(&state.store, id, at)
        .await
        .map_err(|e| match e {
            ApiError::Store(eventstore::StoreError::StreamNotFound { .. }) => {
                ApiError::refused(&domain::user::UserError::NotFound)
            }
            other => other,
        })?;
    let User::Registered(account) = user else {
        return Err(ApiError::refused(&domain::user::UserError::NotFound));
    };
    Ok(Json(UserView {
        user_id: id,
        username: account.username.as_str().to_owned(),
        email: account.email,
        role: account.role,
        active: account.active,
        failed_logins: account.failed_logins,
        locked_until: account.locked_until,
        version,
    }))
}
