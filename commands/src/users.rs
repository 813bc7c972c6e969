//! Users and sessions: registration, login with lockout and rate limits, bearer-token sessions,
//! password changes.
//!
//! Users are event-sourced ([`domain::user::User`]); a user's stream id is derived from the
//! username (UUID v5, [`user_id`]), so registering a taken name is a conflict on the same stream
//! and two racing registrations cannot both succeed. Password hashes (Argon2id) are kept out of
//! the log, in `credentials`, written in the same transaction as the event that records the
//! change. Sessions are rows of `sessions` holding a BLAKE2b hash of the token, never the token;
//! every authentication re-reads the user (through the command handler's cache), so role changes
//! and deactivations take effect at once.
//!
//! Every failure is a [`UsersError`], a [`CommandError`] whose refusal states its kind and stable code ([`Refusal`]); how
//! the bearer token travels (an HTTP header) is the API's business, not this module's.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use blake2::{Blake2b512, Digest};
use chrono::{DateTime, Utc};
use domain::refusal::{ErrorKind, Refusal};
use domain::user::{Account, Role, User, UserCommand, UserError, UserEvent, Username};
use domain::Aggregate;
use eventstore::codec;
use eventstore::{EventStore, ExpectedVersion, Metadata, StoreError};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{Clock, CommandError, CommandHandler};

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

/// Login attempts allowed per minute, per account and per client address.
const LOGINS_PER_MINUTE_PER_ACCOUNT: u32 = 10;
const LOGINS_PER_MINUTE_PER_ADDRESS: u32 = 30;

/// Why a users command was refused. The store's failures, the codec's and too many
/// conflicts are [`CommandError`]'s, as for every service: a users command fails with a
/// [`UsersError`].
#[derive(Debug, thiserror::Error)]
pub enum UsersRefusal {
    /// The user aggregate refused, or the username, role or password breaks a rule.
    #[error(transparent)]
    User(#[from] UserError),
    #[error("email: {email:?} is not an e-mail address")]
    InvalidEmail { email: String },
    /// Unknown user or wrong password: deliberately the same answer for both.
    #[error("wrong username or password")]
    InvalidCredentials,
    /// The session is unknown, expired or revoked, or its user is gone or deactivated.
    #[error("log in first: the session is unknown, expired or revoked")]
    Unauthenticated,
    #[error("too many attempts; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// Hashing or verifying a password failed (or its worker thread died).
    #[error("password hashing: {0}")]
    Hashing(String),
}

/// Why a users command failed.
pub type UsersError = CommandError<UsersRefusal>;

impl From<UsersRefusal> for UsersError {
    fn from(r: UsersRefusal) -> Self {
        CommandError::Rejected(r)
    }
}

impl From<UserError> for UsersError {
    fn from(e: UserError) -> Self {
        CommandError::Rejected(e.into())
    }
}

impl From<CommandError<UserError>> for UsersError {
    fn from(e: CommandError<UserError>) -> Self {
        e.map_rejected(UsersRefusal::User)
    }
}

impl Refusal for UsersRefusal {
    fn kind(&self) -> ErrorKind {
        match self {
            UsersRefusal::User(e) => e.kind(),
            UsersRefusal::InvalidEmail { .. } => ErrorKind::Invalid,
            UsersRefusal::InvalidCredentials | UsersRefusal::Unauthenticated => {
                ErrorKind::Unauthenticated
            }
            UsersRefusal::RateLimited { .. } => ErrorKind::RateLimited,
            UsersRefusal::Hashing(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            UsersRefusal::User(e) => e.code(),
            UsersRefusal::InvalidEmail { .. } => "invalid_body",
            UsersRefusal::InvalidCredentials => "invalid_credentials",
            UsersRefusal::Unauthenticated => "unauthenticated",
            UsersRefusal::RateLimited { .. } => "rate_limited",
            UsersRefusal::Hashing(_) => "internal",
        }
    }

    fn details(&self) -> Map<String, Value> {
        let mut details = Map::new();
        if let UsersRefusal::RateLimited { retry_after } = self {
            details.insert("retry_after".into(), Value::from(*retry_after));
        }
        details
    }
}

/// The user behind a valid session.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub user_id: Uuid,
    pub username: String,
    pub email: String,
    pub role: Role,
    /// The session's token hash, so that logout can revoke exactly this session.
    pub token_hash: Vec<u8>,
}

/// A successful login.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The bearer token; only its hash is stored.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub username: String,
    pub role: Role,
}

/// Users, logins and sessions; cheap to clone.
#[derive(Clone)]
pub struct Users {
    handler: Arc<CommandHandler<User>>,
    clock: Arc<dyn Clock>,
    per_account: Arc<DefaultKeyedRateLimiter<String>>,
    per_address: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// A hash to verify against when the user does not exist, so that a login for an unknown
    /// name takes as long as one with a wrong password.
    dummy_hash: Arc<String>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl Users {
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            handler: Arc::new(CommandHandler::new(store, clock.clone())),
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

    /// The command handler of user streams (its state cache serves every authentication).
    pub fn handler(&self) -> &CommandHandler<User> {
        &self.handler
    }

    fn store(&self) -> &EventStore {
        self.handler.store()
    }

    /// The registered account behind `username`.
    async fn account(&self, username: &Username) -> Result<Option<Account>, UsersError> {
        match self.handler.load(user_id(username)).await?.1 {
            User::Registered(account) => Ok(Some(account)),
            User::Missing => Ok(None),
        }
    }

    /// Runs a user command (change role, unlock, deactivate, ...) as `actor`.
    pub async fn command(
        &self,
        username: &Username,
        command: UserCommand,
        actor: &str,
    ) -> Result<(), UsersError> {
        self.handler
            .handle(user_id(username), &command, &Metadata::by(actor))
            .await?;
        Ok(())
    }

    /// Deactivates the user and ends all their sessions.
    pub async fn deactivate(&self, username: &Username, actor: &str) -> Result<(), UsersError> {
        self.command(username, UserCommand::Deactivate, actor)
            .await?;
        self.revoke(user_id(username), None).await
    }

    /// Creates a user (from the CLI, the first-start bootstrap, or an admin).
    pub async fn register(
        &self,
        username: &str,
        email: &str,
        role: Role,
        password: &str,
        actor: &str,
    ) -> Result<Uuid, UsersError> {
        let username = Username::parse(username)?;
        if !email.contains('@') || email.len() > 254 {
            return Err(UsersRefusal::InvalidEmail {
                email: email.to_owned(),
            }
            .into());
        }
        domain::user::check_password_rules(password)?;
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
            Err(CommandError::Store(StoreError::WrongExpectedVersion { .. })) => {
                return Err(UserError::AlreadyExists.into())
            }
            other => other?,
        }
        Ok(user_id(&username))
    }

    /// The user's current password hash, if they have credentials.
    async fn password_hash(&self, username: &Username) -> Result<Option<String>, UsersError> {
        Ok(
            sqlx::query_scalar("SELECT password_hash FROM credentials WHERE user_id = $1")
                .bind(user_id(username))
                .fetch_optional(self.store().pool())
                .await?,
        )
    }

    /// Decides `command` and appends its events in the same transaction as the new password
    /// hash, so that the log and the credentials never disagree.
    async fn with_credentials(
        &self,
        username: &Username,
        command: UserCommand,
        actor: &str,
        password_hash: &str,
    ) -> Result<(), UsersError> {
        let id = user_id(username);
        let (version, user) = self.handler.load(id).await?;
        let events = user.decide(&command, self.clock.now())?;
        let events = events
            .iter()
            .map(codec::encode::<User>)
            .collect::<Result<Vec<_>, _>>()?;
        let mut tx = self.store().pool().begin().await?;
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
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Checks the rate limits for a login attempt.
    fn admit(&self, username: &str, address: Option<IpAddr>) -> Result<(), UsersError> {
        let wait = |not_until: governor::NotUntil<governor::clock::QuantaInstant>| {
            let secs = not_until
                .wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ))
                .as_secs();
            UsersRefusal::RateLimited {
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
    ) -> Result<Session, UsersError> {
        self.admit(username, address)?;
        let Ok(name) = Username::parse(username) else {
            return Err(UsersRefusal::InvalidCredentials.into());
        };
        let now = self.clock.now();
        let Some(account) = self.account(&name).await? else {
            let _ = verify_password(password.to_owned(), self.dummy_hash.as_str().to_owned()).await;
            return Err(UsersRefusal::InvalidCredentials.into());
        };
        if let Some(until) = account.locked_until.filter(|u| *u > now) {
            return Err(UsersError::from(UserError::Locked { until }));
        }
        let hash = self
            .password_hash(&name)
            .await?
            .unwrap_or_else(|| self.dummy_hash.as_str().to_owned());
        if !verify_password(password.to_owned(), hash).await? {
            let outcome = self
                .handler
                .handle(
                    user_id(&name),
                    &UserCommand::RecordFailedLogin,
                    &Metadata::by("system:auth"),
                )
                .await?;
            // The failure that locks the account says so.
            let locked = outcome.events.iter().find_map(|e| match e {
                UserEvent::AccountLocked { until } => Some(*until),
                _ => None,
            });
            return Err(match locked {
                Some(until) => UsersError::from(UserError::Locked { until }),
                None => UsersRefusal::InvalidCredentials.into(),
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
            .await?;
        Ok(Session {
            token,
            expires_at,
            username: name.as_str().to_owned(),
            role: account.role,
        })
    }

    /// The user behind a bearer token. A token that is unknown, expired or revoked, or whose
    /// user is gone or deactivated, is [`UsersRefusal::Unauthenticated`].
    pub async fn authenticate(&self, token: &str) -> Result<Identity, UsersError> {
        let hash = token_hash(token);
        let row: Option<(Uuid,)> = sqlx::query_as(
            "SELECT user_id FROM sessions WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(&hash)
        .bind(self.clock.now())
        .fetch_optional(self.store().pool())
        .await?;
        let (user_id,) = row.ok_or(UsersRefusal::Unauthenticated)?;
        match self.handler.load(user_id).await?.1 {
            User::Registered(account) if account.active => Ok(Identity {
                user_id,
                username: account.username.as_str().to_owned(),
                email: account.email,
                role: account.role,
                token_hash: hash,
            }),
            _ => Err(UsersRefusal::Unauthenticated.into()),
        }
    }

    /// Revokes one session (logout) or all of a user's sessions.
    pub async fn revoke(&self, user: Uuid, only: Option<&[u8]>) -> Result<(), UsersError> {
        sqlx::query(
            "UPDATE sessions SET revoked_at = $3 WHERE user_id = $1 AND revoked_at IS NULL AND ($2::bytea IS NULL OR token_hash = $2)",
        )
        .bind(user)
        .bind(only)
        .bind(self.clock.now())
        .execute(self.store().pool())
        .await?;
        Ok(())
    }

    /// Changes `username`'s password after checking the current one; every session of theirs
    /// but `keep_session` (a token hash) ends.
    pub async fn change_password(
        &self,
        username: &str,
        keep_session: &[u8],
        current: &str,
        new: &str,
        actor: &str,
    ) -> Result<(), UsersError> {
        let name = Username::parse(username)?;
        let hash = self
            .password_hash(&name)
            .await?
            .ok_or(UsersRefusal::Unauthenticated)?;
        if !verify_password(current.to_owned(), hash).await? {
            return Err(UsersRefusal::InvalidCredentials.into());
        }
        domain::user::check_password_rules(new)?;
        let password_hash = hash_password(new.to_owned()).await?;
        self.with_credentials(&name, UserCommand::ChangePassword, actor, &password_hash)
            .await?;
        // Other sessions end with the old password.
        sqlx::query("UPDATE sessions SET revoked_at = $3 WHERE user_id = $1 AND revoked_at IS NULL AND token_hash <> $2")
            .bind(user_id(&name))
            .bind(keep_session)
            .bind(self.clock.now())
            .execute(self.store().pool())
            .await?;
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
pub async fn hash_password(password: String) -> Result<String, UsersError> {
    tokio::task::spawn_blocking(move || hash_password_blocking(&password))
        .await
        .map_err(|e| UsersRefusal::Hashing(e.to_string()))?
        .map_err(|e| UsersRefusal::Hashing(e.to_string()).into())
}

async fn verify_password(password: String, hash: String) -> Result<bool, UsersError> {
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
    .map_err(|e| UsersRefusal::Hashing(e.to_string()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_command_that_gives_up_after_too_many_conflicts_is_a_concurrency_conflict() {
        let e = UsersError::from(CommandError::<UserError>::TooManyConflicts { attempts: 8 });
        assert_eq!(
            (e.kind(), e.code()),
            (ErrorKind::Conflict, "concurrency_conflict")
        );
    }

    #[test]
    fn a_rate_limited_login_says_when_to_retry() {
        let e = UsersRefusal::RateLimited { retry_after: 7 };
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.details().get("retry_after"), Some(&Value::from(7u64)));
    }
}
