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
//! Password attempts (logins and password changes) are limited per account and per address in
//! bounded memory (`limits`), and every wrong one is an event that counts towards the lockout.
//! A login takes the same steps for an unknown name, a deactivated account and a wrong
//! password, and answers them alike ([`Users::login`]). Commands that could take away an admin
//! count the active admins on the write side (`user_roles`, kept in the append's transaction)
//! under one advisory lock, so the last active admin can be neither demoted nor deactivated.
//!
//! Every failure is a [`UsersError`], a [`CommandError`] whose refusal states its kind and stable code ([`Refusal`]); how
//! the bearer token travels (an HTTP header) is the API's business, not this module's.

use std::net::IpAddr;
use std::sync::Arc;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use blake2::{Blake2b512, Digest};
use chrono::{DateTime, Utc};
use domain::refusal::{ErrorKind, Refusal};
use domain::user::{
    keeps_an_active_admin, Account, Role, User, UserCommand, UserError, UserEvent, Username,
};
use domain::Aggregate;
use eventstore::codec;
use eventstore::{EventStore, ExpectedVersion, Metadata, StoreError};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{Clock, CommandError, CommandHandler, RetryPolicy};

mod limits;

use limits::Limits;

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
    /// Password attempts (logins and password changes) per account and per client address.
    limits: Arc<Limits>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

/// The hash a password is checked against when there is no account (or no credentials): made
/// with the parameters of [`hash_password`], so that checking it costs what checking a real
/// one does and an unknown name answers as slowly as a wrong password. It is no password's hash.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2VjLWZpeGVzLWR1bW15$9gVUbVTK0dm63tE6Ym5b8cmnU/3ifVSxwwTyFqPAZaE";

/// The hash to check a password against: the stored one, or [`DUMMY_HASH`] when there is none,
/// so that every login and password change pays for exactly one check.
fn hash_to_check(stored: Option<String>) -> String {
    stored.unwrap_or_else(|| DUMMY_HASH.to_owned())
}

/// The lock a failure put in place, if it did.
fn lock_of(events: &[UserEvent]) -> Option<DateTime<Utc>> {
    events.iter().find_map(|e| match e {
        UserEvent::AccountLocked { until } => Some(*until),
        _ => None,
    })
}

/// Serialises the commands that can take away an admin (role changes, deactivations and, for
/// symmetry, reactivations): a transaction-scoped advisory lock on this key, taken before the
/// active admins are counted, so two of them cannot both count the other as the one left.
fn admins_lock_key() -> i64 {
    let (high, _) = Uuid::new_v5(&USER_NAMESPACE, b"lock:active-admins").as_u64_pair();
    i64::from_ne_bytes(high.to_ne_bytes())
}

impl Users {
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            handler: Arc::new(CommandHandler::new(store, clock.clone())),
            clock,
            limits: Arc::new(Limits::new(
                LOGINS_PER_MINUTE_PER_ACCOUNT,
                LOGINS_PER_MINUTE_PER_ADDRESS,
            )),
        }
    }

    /// Replaces the password-attempt limits (attempts per minute per account, per client
    /// address).
    pub fn with_login_limits(mut self, per_account: u32, per_address: u32) -> Self {
        self.limits = Arc::new(Limits::new(per_account, per_address));
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

    /// Ends an account's lockout early; an account that is not locked is left as it is.
    pub async fn unlock(&self, username: &Username, actor: &str) -> Result<(), UsersError> {
        self.handler
            .handle(
                user_id(username),
                &UserCommand::Unlock,
                &Metadata::by(actor),
            )
            .await?;
        Ok(())
    }

    /// Gives the user another role; refused with [`UserError::LastAdmin`] when that would leave
    /// no active admin.
    pub async fn change_role(
        &self,
        username: &Username,
        role: Role,
        actor: &str,
    ) -> Result<(), UsersError> {
        self.change_access(username, &UserCommand::ChangeRole { role }, actor)
            .await
    }

    /// Deactivates the user and ends all their sessions; refused with
    /// [`UserError::LastAdmin`] when that would leave no active admin.
    pub async fn deactivate(&self, username: &Username, actor: &str) -> Result<(), UsersError> {
        self.change_access(username, &UserCommand::Deactivate, actor)
            .await?;
        self.revoke(user_id(username), None).await
    }

    /// Lets a deactivated user log in again, with the password they had. Their old sessions
    /// stay ended.
    pub async fn reactivate(&self, username: &Username, actor: &str) -> Result<(), UsersError> {
        self.change_access(username, &UserCommand::Reactivate, actor)
            .await
    }

    /// Decides a command that changes who may administer the system (a role change, a
    /// deactivation, a reactivation) and appends it with the user's row of `user_roles`, in one
    /// transaction that holds the admins' lock: the active admins are counted from that table,
    /// on the write side, after every earlier such command has committed. A conflict on the
    /// user's stream (a login failure recorded meanwhile, say) decides again.
    async fn change_access(
        &self,
        username: &Username,
        command: &UserCommand,
        actor: &str,
    ) -> Result<(), UsersError> {
        let id = user_id(username);
        let policy = RetryPolicy::DEFAULT;
        for _ in 0..policy.max_attempts {
            let (version, before) = self.handler.load(id).await?;
            let events = before.decide(command, self.clock.now())?;
            let after = events.iter().fold(before.clone(), |u, e| u.evolve(e));
            let (User::Registered(was), User::Registered(now)) = (&before, &after) else {
                return Err(UserError::NotFound.into());
            };
            let mut tx = self.store().pool().begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(admins_lock_key())
                .execute(&mut *tx)
                .await?;
            let active_admins: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM user_roles WHERE role = 'admin' AND active",
            )
            .fetch_one(&mut *tx)
            .await?;
            keeps_an_active_admin(was, now, u64::try_from(active_admins).unwrap_or(0))?;
            let encoded = events
                .iter()
                .map(codec::encode::<User>)
                .collect::<Result<Vec<_>, _>>()?;
            match self
                .store()
                .append_in(
                    &mut tx,
                    id,
                    User::STREAM_TYPE,
                    ExpectedVersion::Exact(version),
                    &encoded,
                    &Metadata::by(actor),
                )
                .await
            {
                Err(e) if e.is_conflict() => continue,
                other => other?,
            };
            write_roles(&mut tx, id, now).await?;
            tx.commit().await?;
            return Ok(());
        }
        Err(policy.exhausted())
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
    /// hash (and the user's row of `user_roles`), so that the log and the credentials never
    /// disagree.
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
        let after = events.iter().fold(user, |u, e| u.evolve(e));
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
        if let User::Registered(account) = &after {
            write_roles(&mut tx, id, account).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Checks the limits for a password attempt (a login or a password change).
    fn admit(&self, username: &str, address: Option<IpAddr>) -> Result<(), UsersError> {
        self.limits
            .admit(username, address)
            .map_err(|retry_after| UsersRefusal::RateLimited { retry_after }.into())
    }

    /// Logs in: rate limits, lockout, password check, and a new session.
    ///
    /// Every name that could be an account's takes the same steps whether the account exists,
    /// is deactivated, or the password is wrong: its stream and credentials are read, one
    /// password is checked (against [`DUMMY_HASH`] when there is no account), and a failure is
    /// committed ([`Users::failed_login`]). Only a locked account answers differently, and
    /// says so. A deactivated account answers exactly as a wrong password does, right password
    /// or not, so a login cannot tell that the password was right.
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
        let account = self.account(&name).await?;
        if let Some(until) = account
            .as_ref()
            .and_then(|a| a.locked_until.filter(|u| *u > now))
        {
            return Err(UsersError::from(UserError::Locked { until }));
        }
        let hash = hash_to_check(self.password_hash(&name).await?);
        let right = verify_password(password.to_owned(), hash).await?;
        let account = match account {
            Some(account) if right && account.active => account,
            account => return Err(self.failed_login(&name, account.is_some()).await),
        };
        match self
            .handler
            .handle(
                user_id(&name),
                &UserCommand::RecordLogin,
                &Metadata::by(format!("user:{name}", name = name.as_str())),
            )
            .await
        {
            // Deactivated since it was read: still the same answer as a wrong password.
            Err(CommandError::Rejected(UserError::Deactivated)) => {
                return Err(UsersRefusal::InvalidCredentials.into())
            }
            other => other?,
        };
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

    /// A login that failed after its password was checked, and the answer to give: the
    /// failure is recorded on the account's stream (each one, however many race), and the one
    /// that locks the account says so. For a name with no account there is nothing to record,
    /// but a transaction that commits all the same, so that the database work (a round trip
    /// and a commit that waits for the WAL) is of the same shape as an append's.
    async fn failed_login(&self, name: &Username, known: bool) -> UsersError {
        if !known {
            return match self.commit_nothing().await {
                Ok(()) => UsersRefusal::InvalidCredentials.into(),
                Err(e) => e,
            };
        }
        match self
            .handler
            .handle(
                user_id(name),
                &UserCommand::RecordFailedLogin,
                &Metadata::by("system:auth"),
            )
            .await
        {
            Ok(outcome) => match lock_of(&outcome.events) {
                Some(until) => UserError::Locked { until }.into(),
                None => UsersRefusal::InvalidCredentials.into(),
            },
            Err(e) => e.into(),
        }
    }

    /// A transaction that takes a transaction id and commits, writing nothing: the cost of an
    /// append's commit without an append.
    async fn commit_nothing(&self) -> Result<(), UsersError> {
        let mut tx = self.store().pool().begin().await?;
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
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
    ///
    /// The current password is a password attempt like a login's: it counts against the same
    /// rate limits, a locked account is refused before it is checked, and a wrong one is
    /// recorded (`PasswordChangeFailed`) and counts towards the lockout, so that a stolen
    /// session cannot be used to guess the password.
    pub async fn change_password(
        &self,
        username: &str,
        keep_session: &[u8],
        current: &str,
        new: &str,
        actor: &str,
        address: Option<IpAddr>,
    ) -> Result<(), UsersError> {
        self.admit(username, address)?;
        let name = Username::parse(username)?;
        let now = self.clock.now();
        let account = self
            .account(&name)
            .await?
            .ok_or(UsersRefusal::Unauthenticated)?;
        if let Some(until) = account.locked_until.filter(|u| *u > now) {
            return Err(UserError::Locked { until }.into());
        }
        let hash = hash_to_check(self.password_hash(&name).await?);
        if !verify_password(current.to_owned(), hash).await? {
            let outcome = self
                .handler
                .handle(
                    user_id(&name),
                    &UserCommand::RecordFailedPasswordChange,
                    &Metadata::by(actor),
                )
                .await?;
            return Err(match lock_of(&outcome.events) {
                Some(until) => UserError::Locked { until }.into(),
                None => UsersRefusal::InvalidCredentials.into(),
            });
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

/// Writes the user's role and whether they are active to `user_roles`, the write side's record
/// of who can administer, in the transaction that appends the event changing either.
async fn write_roles(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    account: &Account,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO user_roles (user_id, role, active) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET role = excluded.role, active = excluded.active",
    )
    .bind(id)
    .bind(account.role.as_str())
    .bind(account.active)
    .execute(tx)
    .await?;
    Ok(())
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
    fn the_dummy_hash_costs_what_a_real_hash_costs_to_check(
    ) -> Result<(), argon2::password_hash::Error> {
        let real = hash_password_blocking("Corr3ct-horse!")?;
        let real = PasswordHash::new(&real)?;
        let dummy = PasswordHash::new(DUMMY_HASH)?;
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(
            dummy.hash.map(|h| h.len()),
            real.hash.map(|h| h.len()),
            "the same output length"
        );
        Ok(())
    }

    #[test]
    fn a_name_without_credentials_is_checked_against_the_dummy_hash() {
        assert_eq!(hash_to_check(None), DUMMY_HASH);
        assert_eq!(hash_to_check(Some("stored".into())), "stored");
    }

    #[tokio::test]
    async fn no_password_opens_the_dummy_hash() -> Result<(), UsersError> {
        for password in ["", "not-a-real-password", "Corr3ct-horse!"] {
            assert!(!verify_password(password.into(), DUMMY_HASH.into()).await?);
        }
        Ok(())
    }

    #[test]
    fn a_rate_limited_login_says_when_to_retry() {
        let e = UsersRefusal::RateLimited { retry_after: 7 };
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.details().get("retry_after"), Some(&Value::from(7u64)));
    }
}
