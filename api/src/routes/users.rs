//! `/users`: administrators create users, change roles, unlock and deactivate accounts.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Json, Router};
use domain::user::{Role, UserCommand, Username};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", post(create))
        .route("/users/{username}/role", post(change_role))
        .route("/users/{username}/unlock", post(unlock))
        .route("/users/{username}/deactivate", post(deactivate))
}

#[derive(Debug, Deserialize)]
struct NewUser {
    username: String,
    email: String,
    role: Role,
    password: String,
}

#[derive(Debug, Serialize)]
struct Created {
    user_id: Uuid,
    username: String,
    role: Role,
}

async fn create(
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
    Username::parse(&name).map_err(ApiError::User)
}

#[derive(Debug, Deserialize)]
struct NewRole {
    role: Role,
}

async fn change_role(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<NewRole>,
) -> Result<StatusCode, ApiError> {
    let name = username(path)?;
    state
        .auth
        .command(
            &name,
            UserCommand::ChangeRole { role: body.role },
            &caller.actor(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unlock(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let name = username(path)?;
    state
        .auth
        .command(&name, UserCommand::Unlock, &caller.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn deactivate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let name = username(path)?;
    state
        .auth
        .command(&name, UserCommand::Deactivate, &caller.actor())
        .await?;
    state.auth.revoke(auth::user_id(&name), None).await?;
    Ok(StatusCode::NO_CONTENT)
}
