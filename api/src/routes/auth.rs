//! `/auth`: log in, log out, who am I, change my password.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;

use crate::auth::{Caller, Session};
use crate::error::ApiError;
use crate::extract::{ApiJson, ClientAddr};
use crate::permissions::Access;
use crate::AppState;

use super::{routes, Routes};

pub fn routes() -> Routes {
    Routes::new()
        .route(Access::Public, routes!(login))
        .route(Access::AnyUser, routes!(logout))
        .route(Access::AnyUser, routes!(me))
        .route(Access::AnyUser, routes!(change_password))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct Login {
    username: String,
    password: String,
    /// Keep the session for 7 days instead of 24 hours.
    #[serde(default)]
    remember_me: bool,
}

#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, description = "A new session", body = crate::auth::Session),
        (status = 401, description = "Wrong username or password, or a deactivated account (the same answer for all three)", body = crate::openapi::ProblemDoc),
        (status = 403, description = "Account locked", body = crate::openapi::ProblemDoc),
        (status = 429, description = "Too many attempts; see Retry-After", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(body): ApiJson<Login>,
) -> Result<Json<Session>, ApiError> {
    Ok(Json(
        state
            .auth
            .login(&body.username, &body.password, body.remember_me, addr)
            .await?
            .into(),
    ))
}

#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "This session is revoked"), (status = 401, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<StatusCode, ApiError> {
    state
        .auth
        .revoke(caller.user_id, Some(&caller.token_hash))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "The caller", body = crate::auth::Caller), (status = 401, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn me(Extension(caller): Extension<Caller>) -> Json<Caller> {
    Json(caller)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct ChangePassword {
    current_password: String,
    new_password: String,
}

#[utoipa::path(post, path = "/auth/password", tag = "auth", security(("bearer" = [])), request_body = ChangePassword,
    responses((status = 204, description = "Changed; other sessions are revoked"),
        (status = 401, description = "Wrong current password (counted towards the lockout, like a failed login)", body = crate::openapi::ProblemDoc),
        (status = 403, description = "Account locked", body = crate::openapi::ProblemDoc),
        (status = 422, description = "The new password breaks the rules", body = crate::openapi::ProblemDoc),
        (status = 429, description = "Too many password attempts; see Retry-After", body = crate::openapi::ProblemDoc)))]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ClientAddr(addr): ClientAddr,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    state
        .auth
        .change_password(
            &caller.username,
            &caller.token_hash,
            &body.current_password,
            &body.new_password,
            &caller.actor(),
            addr,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
