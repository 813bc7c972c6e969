//! Authentication: password hashing, login with lockout and rate limits, bearer-token sessions.
//!
//! Users are event-sourced ([`domain::user::User`]); a user's stream id is derived from the
//! username (UUID v5), so registering a taken name is a conflict on the same stream and two
//! racing registrations cannot both succeed. Password hashes are kept out of the log, in
//! `credentials`, written in the same transaction as the event that records the change. Sessions are rows of `sessions` holding a hash of
//! the token; every request re-reads the user (through the command handler's cache), so role
//! changes and deactivations take effect at once.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use axum::http::{header, HeaderMap};
use blake2::{Blake2b512, Digest};
use chrono::{DateTime, Utc};
use commands::{Clock, CommandHandler, HandleError};
use domain::user::{Account, Role, User, UserCommand, UserError, UserEvent, Username};
use domain::Aggregate;
use eventstore::{codec, EventStore, ExpectedVersion, Metadata};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use uuid::Uuid;

use crate::error::ApiError;

/// Namespace of user stream ids (UUID v5 of the username).
const USER_NAMESPACE: Uuid = Uuid::from_u128(0x6361_7365_6c65_6467_6572_2d75_7365_7273);

/// The stream id of `username`'s user aggregate.
pub fn user_id(username: &Username) -> Uuid {
    Uuid::new_v5(&USER_NAMESPACE, username.as_str().as_bytes())
}

/// Session lifetimes.
pub fn session_lifetime(remember_me: bool) -> chrono::Duration {
    if remember_me {
        chrono::Duration::days(7)
    } else {
        chrono::Duration::hours(24)
    }
}

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

/// A successful login.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Session {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub username: String,
    #[schema(value_type = crate::openapi::RoleDoc)]
    pub role: Role,
}

/// Login attempts allowed per minute, per account and per client address.
const LOGINS_PER_MINUTE_PER_ACCOUNT: u32 = 10;
const LOGINS_PER_MINUTE_PER_ADDRESS: u32 = 30;

/// Everything authentication needs; cheap to clone.
#[derive(Clone)]
pub struct Auth {
    pub users: Arc<CommandHandler<User>>,
    pub clock: Arc<dyn Clock>,
    per_account: Arc<DefaultKeyedRateLimiter<String>>,
    per_address: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// A hash to verify against when the user does not exist, so that a login for an unknown
    /// name takes as long as one with a wrong password.
    dummy_hash: Arc<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl Auth {
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            users: Arc::new(CommandHandler::new(store, clock.clone())),
            clock,
            per_account: Arc::new(RateLimiter::keyed(per_minute(
                LOGINS_PER_MINUTE_PER_ACCOUNT,
            ))),
            per_address: Arc::new(RateLimiter::keyed(per_minute(
                LOGINS_PER_MINUTE_PER_ADDRESS,
            ))),
            dummy_hash: Arc::new(hash_password_blocking("not-a-real-password").unwrap_or_default()),
        }
    }

    /// Replaces the login rate limits (attempts per minute per account, per client address).
    pub fn with_login_limits(mut self, per_account: u32, per_address: u32) -> Self {
        self.per_account = Arc::new(RateLimiter::keyed(per_minute(per_account)));
        self.per_address = Arc::new(RateLimiter::keyed(per_minute(per_address)));
        self
    }

    fn store(&self) -> &EventStore {
        self.users.store()
    }

    /// The registered, active account behind `username`.
    async fn account(&self, username: &Username) -> Result<Option<Account>, ApiError> {
        match self
            .users
            .load(user_id(username))
            .await
            .map_err(handle_error)?
            .1
        {
            User::Registered(account) => Ok(Some(account)),
            User::Missing => Ok(None),
        }
    }

    /// Runs a user command as `actor`.
    pub async fn command(
        &self,
        username: &Username,
        command: UserCommand,
        actor: &str,
    ) -> Result<(), ApiError> {
        self.users
            .handle(user_id(username), &command, &Metadata::by(actor))
            .await
            .map(|_| ())
            .map_err(handle_error)
    }

    /// Creates a user (from the CLI, the first-start bootstrap, or an admin).
    pub async fn register(
        &self,
        username: &str,
        email: &str,
        role: Role,
        password: &str,
        actor: &str,
    ) -> Result<Uuid, ApiError> {
        let username = Username::parse(username).map_err(ApiError::User)?;
        if !email.contains('@') || email.len() > 254 {
            return Err(ApiError::BadBody(format!(
                "email: {email:?} is not an e-mail address"
            )));
        }
        domain::user::check_password_rules(password).map_err(ApiError::User)?;
        let password_hash = hash_password(password.to_owned()).await?;
        let command = UserCommand::Register {
            username: username.clone(),
            email: email.to_owned(),
            role,
        };
        match self
            .with_credentials(&username, command, actor, &password_hash)
            .await
        {
            // Another registration of this name got there first.
            Err(ApiError::Store(eventstore::StoreError::WrongExpectedVersion { .. })) => {
                return Err(ApiError::User(UserError::AlreadyExists))
            }
            other => other?,
        }
        Ok(user_id(&username))
    }

    /// The user's current password hash, if they have credentials.
    async fn password_hash(&self, username: &Username) -> Result<Option<String>, ApiError> {
        sqlx::query_scalar("SELECT password_hash FROM credentials WHERE user_id = $1")
            .bind(user_id(username))
            .fetch_optional(self.store().pool())
            .await
            .map_err(ApiError::db)
    }

    /// Decides `command` and appends its events in the same transaction as the new password
    /// hash, so that the log and the credentials never disagree.
    async fn with_credentials(
        &self,
        username: &Username,
        command: UserCommand,
        actor: &str,
        password_hash: &str,
    ) -> Result<(), ApiError> {
        let id = user_id(username);
        let (version, user) = self.users.load(id).await.map_err(handle_error)?;
        let events = user
            .decide(&command, self.clock.now())
            .map_err(ApiError::User)?;
        let events = events
            .iter()
            .map(codec::encode::<User>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::internal)?;
        let mut tx = self.store().pool().begin().await.map_err(ApiError::db)?;
        self.store()
            .append_in(
                &mut tx,
                id,
                User::STREAM_TYPE,
                ExpectedVersion::Exact(version),
                &events,
                &Metadata::by(actor),
            )
            .await?;
        sqlx::query(
            "INSERT INTO credentials (user_id, password_hash, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash, updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(password_hash)
        .bind(self.clock.now())
        .execute(&mut *tx)
        .await
        .map_err(ApiError::db)?;
        tx.commit().await.map_err(ApiError::db)
    }

    /// Checks the rate limits for a login attempt; `Err` carries the seconds to wait.
    fn admit(&self, username: &str, address: Option<IpAddr>) -> Result<(), ApiError> {
        let wait = |not_until: governor::NotUntil<governor::clock::QuantaInstant>| {
            let secs = not_until
                .wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ))
                .as_secs();
            ApiError::RateLimited {
                retry_after: secs.max(1),
            }
        };
        if let Some(address) = address {
            self.per_address.check_key(&address).map_err(wait)?;
        }
        self.per_account
            .check_key(&username.to_owned())
            .map_err(wait)?;
        Ok(())
    }

    /// Logs in: rate limits, lockout, password check, and a new session.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        remember_me: bool,
        address: Option<IpAddr>,
    ) -> Result<Session, ApiError> {
        self.admit(username, address)?;
        let Ok(name) = Username::parse(username) else {
            return Err(ApiError::InvalidCredentials);
        };
        let now = self.clock.now();
        let Some(account) = self.account(&name).await? else {
            let _ = verify_password(password.to_owned(), self.dummy_hash.as_str().to_owned()).await;
            return Err(ApiError::InvalidCredentials);
        };
        if let Some(until) = account.locked_until.filter(|u| *u > now) {
            return Err(ApiError::User(UserError::Locked { until }));
        }
        let hash = self
            .password_hash(&name)
            .await?
            .unwrap_or_else(|| self.dummy_hash.as_str().to_owned());
        if !verify_password(password.to_owned(), hash).await? {
            let outcome = self
                .users
                .handle(
                    user_id(&name),
                    &UserCommand::RecordFailedLogin,
                    &Metadata::by("system:auth"),
                )
                .await
                .map_err(handle_error)?;
            // The failure that locks the account says so.
            let locked = outcome.events.iter().find_map(|e| match e {
                UserEvent::AccountLocked { until } => Some(*until),
                _ => None,
            });
            return Err(match locked {
                Some(until) => ApiError::User(UserError::Locked { until }),
                None => ApiError::InvalidCredentials,
            });
        }
        self.command(
            &name,
            UserCommand::RecordLogin,
            &format!("user:{name}", name = name.as_str()),
        )
        .await?;
        let token = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let expires_at = now + session_lifetime(remember_me);
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash(&token))
            .bind(user_id(&name))
            .bind(now)
            .bind(expires_at)
            .execute(self.store().pool())
            .await
            .map_err(ApiError::db)?;
        Ok(Session {
            token,
            expires_at,
            username: name.as_str().to_owned(),
            role: account.role,
        })
    }

    /// The caller behind the request's bearer token; `None` when no token was sent. A token that
    /// is unknown, expired or revoked, or whose user is gone or deactivated, is an error.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthenticated)?;
        let hash = token_hash(token);
        let row: Option<(Uuid,)> = sqlx::query_as(
            "SELECT user_id FROM sessions WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(&hash)
        .bind(self.clock.now())
        .fetch_optional(self.store().pool())
        .await
        .map_err(ApiError::db)?;
        let (user_id,) = row.ok_or(ApiError::Unauthenticated)?;
        match self.users.load(user_id).await.map_err(handle_error)?.1 {
            User::Registered(account) if account.active => Ok(Some(Caller {
                user_id,
                username: account.username.as_str().to_owned(),
                email: account.email,
                role: account.role,
                token_hash: hash,
            })),
            _ => Err(ApiError::Unauthenticated),
        }
    }

    /// Revokes one session (logout) or all of a user's sessions.
    pub async fn revoke(&self, user: Uuid, only: Option<&[u8]>) -> Result<(), ApiError> {
        sqlx::query(
            "UPDATE sessions SET revoked_at = $3 WHERE user_id = $1 AND revoked_at IS NULL AND ($2::bytea IS NULL OR token_hash = $2)",
        )
        .bind(user)
        .bind(only)
        .bind(self.clock.now())
        .execute(self.store().pool())
        .await
        .map_err(ApiError::internal)?;
        Ok(())
    }

    /// Changes the caller's password after checking the current one.
    pub async fn change_password(
        &self,
        caller: &Caller,
        current: &str,
        new: &str,
    ) -> Result<(), ApiError> {
        let name = Username::parse(&caller.username).map_err(ApiError::User)?;
        let hash = self
            .password_hash(&name)
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        if !verify_password(current.to_owned(), hash).await? {
            return Err(ApiError::InvalidCredentials);
        }
        domain::user::check_password_rules(new).map_err(ApiError::User)?;
        let password_hash = hash_password(new.to_owned()).await?;
        self.with_credentials(
            &name,
            UserCommand::ChangePassword,
            &caller.actor(),
            &password_hash,
        )
        .await?;
        // Other sessions end with the old password.
        sqlx::query("UPDATE sessions SET revoked_at = $3 WHERE user_id = $1 AND revoked_at IS NULL AND token_hash <> $2")
            .bind(caller.user_id)
            .bind(&caller.token_hash)
            .bind(self.clock.now())
            .execute(self.store().pool())
            .await
            .map_err(ApiError::db)?;
        Ok(())
    }
}

fn token_hash(token: &str) -> Vec<u8> {
    Blake2b512::digest(token.as_bytes()).to_vec()
}

fn hash_password_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Argon2id with the crate's recommended parameters, off the async threads.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_password_blocking(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

async fn verify_password(password: String, hash: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(ApiError::internal)
}

/// User-command failures as API errors.
pub fn handle_error(e: HandleError<UserError>) -> ApiError {
    match e {
        HandleError::Rejected(e) => ApiError::User(e),
        HandleError::Store(e) => ApiError::Store(e),
        other => ApiError::internal(other),
    }
}
