//! `/auth`: log in, log out, who am I, change my password.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use crate::auth::{Caller, Session};
use crate::error::ApiError;
use crate::extract::{ApiJson, ClientAddr};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
        .route("/auth/password", post(change_password))
}

#[derive(Debug, Deserialize)]
struct Login {
    username: String,
    password: String,
    /// Keep the session for 7 days instead of 24 hours.
    #[serde(default)]
    remember_me: bool,
}

async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(body): ApiJson<Login>,
) -> Result<Json<Session>, ApiError> {
    Ok(Json(
        state
            .auth
            .login(&body.username, &body.password, body.remember_me, addr)
            .await?,
    ))
}

async fn logout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<StatusCode, ApiError> {
    state
        .auth
        .revoke(caller.user_id, Some(&caller.token_hash))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(Extension(caller): Extension<Caller>) -> Json<Caller> {
    Json(caller)
}

#[derive(Debug, Deserialize)]
struct ChangePassword {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    state
        .auth
        .change_password(&caller, &body.current_password, &body.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
