//! Authentication, the HTTP side: the bearer token from the `Authorization` header, the
//! [`Caller`] a request acts for (an extension the permission guard inserts), and the session
//! as a login answers it.
//!
//! Everything that decides (registration, login with lockout and rate limits, sessions,
//! password hashing) is [`commands::users::Users`].

use axum::http::{header, HeaderMap};
use chrono::{DateTime, Utc};
use commands::users::{Identity, Users, UsersRefusal};
use commands::CommandError;
use domain::user::Role;
use serde::Serialize;
use uuid::Uuid;

use crate::error::ApiError;

/// The stream id of a user, which routes look users up by.
pub use commands::users::user_id;

/// The logged-in user a request acts for.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Caller {
    pub user_id: Uuid,
    pub username: String,
    pub email: String,
    #[schema(value_type = crate::openapi::RoleDoc)]
    pub role: Role,
    /// The session's token hash, so that logout can revoke exactly this session.
    #[serde(skip)]
    pub token_hash: Vec<u8>,
}

impl Caller {
    pub fn actor(&self) -> String {
        format!("user:{}", self.username)
    }
}

impl From<Identity> for Caller {
    fn from(i: Identity) -> Self {
        Caller {
            user_id: i.user_id,
            username: i.username,
            email: i.email,
            role: i.role,
            token_hash: i.token_hash,
        }
    }
}

/// A successful login.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Session {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub username: String,
    #[schema(value_type = crate::openapi::RoleDoc)]
    pub role: Role,
}

impl From<commands::users::Session> for Session {
    fn from(s: commands::users::Session) -> Self {
        Session {
            token: s.token,
            expires_at: s.expires_at,
            username: s.username,
            role: s.role,
        }
    }
}

/// The caller behind the request's bearer token; `None` when no token was sent. A malformed
/// header, or a token that is unknown, expired or revoked, or whose user is gone or
/// deactivated, is an error.
pub async fn authenticate(users: &Users, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthenticated)?;
    match users.authenticate(token).await {
        Ok(identity) => Ok(Some(identity.into())),
        // The same answer as a missing token: the client logs in again.
        Err(CommandError::Rejected(UsersRefusal::Unauthenticated)) => {
            Err(ApiError::Unauthenticated)
        }
        Err(e) => Err(e.into()),
    }
}
