//! Users who log in: registration, roles, password changes, failed logins and lockout.
//!
//! Password hashes are not part of this aggregate: events are kept for ever and auditors read
//! them, so the hashes live in a credentials table beside the log, written in the same
//! transaction as the event that records the registration or the change. Plain-text passwords
//! are only checked against the rules by [`check_password_rules`]. Every failed login, failed
//! password change, lockout, unlock, role change, password change, deactivation and reactivation
//! is an event, so security is auditable.
//!
//! Whether a role change or a deactivation would leave nobody to administer the system depends on
//! the other accounts, which this aggregate does not see: [`keeps_an_active_admin`] decides it
//! from a count the application layer reads under a lock.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::Aggregate;

/// Failed logins in a row that lock an account.
pub const MAX_FAILED_LOGINS: u32 = 5;

/// How long a lockout lasts.
pub fn lockout_duration() -> Duration {
    Duration::minutes(15)
}

/// What a user may do; see `DOMAIN.md` ("People and organisation").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Operates physicians, documents, renewals, tasks and notifications.
    Staff,
    /// Reads only.
    Viewer,
    /// Automated jobs.
    System,
    /// Reads the event log and projections.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Staff,
        Role::Viewer,
        Role::System,
        Role::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Staff => "staff",
            Role::Viewer => "viewer",
            Role::System => "system",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UserError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UserError::UnknownRole {
                role: s.chars().take(32).collect(),
            })
    }
}

/// A login name: 3 to 64 characters of lowercase letters, digits, `.`, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Self, UserError> {
        let ok = (3..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
        if ok {
            Ok(Username(s.to_owned()))
        } else {
            Err(UserError::InvalidUsername {
                username: s.chars().take(64).collect(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = UserError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Username::parse(&s)
    }
}

impl From<Username> for String {
    fn from(u: Username) -> String {
        u.0
    }
}

/// The password rules: at least 8 characters (at most 128) with an upper-case letter, a
/// lower-case letter, a digit and a symbol.
pub fn check_password_rules(password: &str) -> Result<(), UserError> {
    let weak = |reason: &'static str| Err(UserError::WeakPassword { reason });
    let n = password.chars().count();
    if n < 8 {
        return weak("it must be at least 8 characters long");
    }
    if n > 128 {
        return weak("it must be at most 128 characters long");
    }
    if !password.chars().any(char::is_uppercase) {
        return weak("it needs an upper-case letter");
    }
    if !password.chars().any(char::is_lowercase) {
        return weak("it needs a lower-case letter");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        return weak("it needs a digit");
    }
    if password.chars().all(char::is_alphanumeric) {
        return weak("it needs a symbol");
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("username {username:?} is invalid: use 3 to 64 lowercase letters, digits, '.', '_' or '-', starting with a letter")]
    InvalidUsername { username: String },
    #[error("{role:?} is not a role (admin, staff, viewer, system, auditor)")]
    UnknownRole { role: String },
    #[error("the password is too weak: {reason}")]
    WeakPassword { reason: &'static str },
    #[error("a user with this username already exists")]
    AlreadyExists,
    #[error("no such user")]
    NotFound,
    #[error("the account is locked until {until}")]
    Locked { until: DateTime<Utc> },
    #[error("the account is deactivated")]
    Deactivated,
    #[error("the user already has role {role}")]
    SameRole { role: Role },
    #[error("the account is already active")]
    AlreadyActive,
    #[error("this is the last active admin: make another user admin first")]
    LastAdmin,
}

impl crate::refusal::Refusal for UserError {
    fn kind(&self) -> crate::refusal::ErrorKind {
        use crate::refusal::ErrorKind as K;
        match self {
            UserError::InvalidUsername { .. }
            | UserError::UnknownRole { .. }
            | UserError::WeakPassword { .. } => K::Invalid,
            UserError::AlreadyExists
            | UserError::SameRole { .. }
            | UserError::AlreadyActive
            | UserError::LastAdmin => K::Conflict,
            UserError::NotFound => K::NotFound,
            UserError::Locked { .. } | UserError::Deactivated => K::Forbidden,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            UserError::InvalidUsername { .. } => "invalid_username",
            UserError::UnknownRole { .. } => "unknown_role",
            UserError::WeakPassword { .. } => "weak_password",
            UserError::AlreadyExists => "user_exists",
            UserError::NotFound => "user_not_found",
            UserError::Locked { .. } => "account_locked",
            UserError::Deactivated => "account_deactivated",
            UserError::SameRole { .. } => "role_unchanged",
            UserError::AlreadyActive => "already_active",
            UserError::LastAdmin => "last_admin",
        }
    }
}

/// Everything known about a registered user.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub username: Username,
    pub email: String,
    pub role: Role,
    pub active: bool,
    /// Failed logins and failed password changes since the last successful login, lockout or
    /// unlock.
    pub failed_logins: u32,
    pub locked_until: Option<DateTime<Utc>>,
}

impl Account {
    pub fn is_locked(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }

    /// Whether this account can administer the system: an admin, and active.
    pub fn is_active_admin(&self) -> bool {
        self.active && self.role == Role::Admin
    }

    /// A wrong password (at login, or as the current password of a password change): the
    /// failure event `failed` makes of the new count, and the lock when that count reaches the
    /// limit. A failure that raced a lock into place is still recorded, and counts, but the lock
    /// that stands is not renewed.
    fn wrong_password(&self, now: DateTime<Utc>, failed: fn(u32) -> UserEvent) -> Vec<UserEvent> {
        let attempts = self.failed_logins + 1;
        let mut events = vec![failed(attempts)];
        if attempts >= MAX_FAILED_LOGINS && !self.is_locked(now) {
            events.push(UserEvent::AccountLocked {
                until: now + lockout_duration(),
            });
        }
        events
    }
}

/// Refuses a change that would leave no active admin: `before` and `after` are one account on
/// either side of the change, `active_admins` how many active admins there are now, `before`
/// included if it is one. Adding admins, and changes to other accounts, always pass.
pub fn keeps_an_active_admin(
    before: &Account,
    after: &Account,
    active_admins: u64,
) -> Result<(), UserError> {
    let removes_one = before.is_active_admin() && !after.is_active_admin();
    if removes_one && active_admins <= 1 {
        Err(UserError::LastAdmin)
    } else {
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum User {
    #[default]
    Missing,
    Registered(Account),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "data")]
pub enum UserCommand {
    Register {
        username: Username,
        email: String,
        role: Role,
    },
    /// A login with a wrong password (or for a deactivated account: see `commands::users`).
    RecordFailedLogin,
    /// A password change that gave a wrong current password.
    RecordFailedPasswordChange,
    /// A login with the right password.
    RecordLogin,
    Unlock,
    ChangeRole {
        role: Role,
    },
    /// The credentials were replaced (the hash itself is stored outside the log).
    ChangePassword,
    Deactivate,
    /// Lets a deactivated user log in again (with the password they had).
    Reactivate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum UserEvent {
    UserRegistered {
        username: Username,
        email: String,
        role: Role,
    },
    LoginFailed {
        attempts: u32,
    },
    AccountLocked {
        until: DateTime<Utc>,
    },
    LoggedIn {},
    AccountUnlocked {},
    RoleChanged {
        from: Role,
        to: Role,
    },
    PasswordChanged {},
    UserDeactivated {},
    /// The current password given to a password change was wrong; counted like a failed login.
    PasswordChangeFailed {
        attempts: u32,
    },
    UserReactivated {},
}

impl Aggregate for User {
    const STREAM_TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;

    fn decide(
        &self,
        command: &UserCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<UserEvent>, UserError> {
        use UserCommand as C;
        let account = match (self, command) {
            (
                User::Missing,
                C::Register {
                    username,
                    email,
                    role,
                },
            ) => {
                return Ok(vec![UserEvent::UserRegistered {
                    username: username.clone(),
                    email: email.clone(),
                    role: *role,
                }])
            }
            (User::Registered(_), C::Register { .. }) => return Err(UserError::AlreadyExists),
            (User::Missing, _) => return Err(UserError::NotFound),
            (User::Registered(account), _) => account,
        };
        match command {
            C::Register { .. } => Err(UserError::AlreadyExists),
            C::RecordFailedLogin => {
                Ok(account.wrong_password(now, |attempts| UserEvent::LoginFailed { attempts }))
            }
            C::RecordFailedPasswordChange => Ok(account
                .wrong_password(now, |attempts| UserEvent::PasswordChangeFailed { attempts })),
            C::RecordLogin => {
                if !account.active {
                    Err(UserError::Deactivated)
                } else if let Some(until) = account.locked_until.filter(|u| *u > now) {
                    Err(UserError::Locked { until })
                } else {
                    Ok(vec![UserEvent::LoggedIn {}])
                }
            }
            // Nothing to undo: an unlock of an open account would only clutter the record.
            C::Unlock if !account.is_locked(now) => Ok(vec![]),
            C::Unlock => Ok(vec![UserEvent::AccountUnlocked {}]),
            C::ChangeRole { role } if *role == account.role => {
                Err(UserError::SameRole { role: *role })
            }
            C::ChangeRole { role } => Ok(vec![UserEvent::RoleChanged {
                from: account.role,
                to: *role,
            }]),
            C::ChangePassword if !account.active => Err(UserError::Deactivated),
            C::ChangePassword => Ok(vec![UserEvent::PasswordChanged {}]),
            C::Deactivate if !account.active => Err(UserError::Deactivated),
            C::Deactivate => Ok(vec![UserEvent::UserDeactivated {}]),
            C::Reactivate if account.active => Err(UserError::AlreadyActive),
            C::Reactivate => Ok(vec![UserEvent::UserReactivated {}]),
        }
    }

    fn evolve(self, event: &UserEvent) -> Self {
        let mut account = match (self, event) {
            (
                _,
                UserEvent::UserRegistered {
                    username,
                    email,
                    role,
                },
            ) => {
                return User::Registered(Account {
                    username: username.clone(),
                    email: email.clone(),
                    role: *role,
                    active: true,
                    failed_logins: 0,
                    locked_until: None,
                })
            }
            (User::Missing, _) => return User::Missing,
            (User::Registered(account), _) => account,
        };
        match event {
            UserEvent::UserRegistered { .. } => {}
            UserEvent::LoginFailed { attempts } | UserEvent::PasswordChangeFailed { attempts } => {
                account.failed_logins = *attempts
            }
            UserEvent::AccountLocked { until } => {
                account.locked_until = Some(*until);
                account.failed_logins = 0;
            }
            UserEvent::LoggedIn {} => account.failed_logins = 0,
            UserEvent::AccountUnlocked {} => {
                account.locked_until = None;
                account.failed_logins = 0;
            }
            UserEvent::RoleChanged { to, .. } => account.role = *to,
            UserEvent::PasswordChanged {} => {}
            UserEvent::UserDeactivated {} => account.active = false,
            UserEvent::UserReactivated {} => account.active = true,
        }
        User::Registered(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fold;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::minutes(minute)
    }

    fn registered() -> User {
        fold::<User>(&[UserEvent::UserRegistered {
            username: Username::parse("alice").unwrap_or_else(|e| panic!("{e}")),
            email: "alice@example.org".into(),
            role: Role::Staff,
        }])
    }

    fn apply(user: User, command: UserCommand, now: DateTime<Utc>) -> Result<User, UserError> {
        let events = user.decide(&command, now)?;
        Ok(events.iter().fold(user, |u, e| u.evolve(e)))
    }

    #[test]
    fn the_fifth_failed_login_locks_the_account_for_fifteen_minutes() -> Result<(), UserError> {
        let mut user = registered();
        for n in 1..MAX_FAILED_LOGINS {
            let events = user.decide(&UserCommand::RecordFailedLogin, at(0))?;
            assert_eq!(events, [UserEvent::LoginFailed { attempts: n }]);
            user = apply(user, UserCommand::RecordFailedLogin, at(0))?;
        }
        let events = user.decide(&UserCommand::RecordFailedLogin, at(1))?;
        assert_eq!(events[1], UserEvent::AccountLocked { until: at(16) });
        user = apply(user, UserCommand::RecordFailedLogin, at(1))?;
        assert_eq!(
            user.decide(&UserCommand::RecordLogin, at(15)),
            Err(UserError::Locked { until: at(16) })
        );
        assert_eq!(
            user.decide(&UserCommand::RecordLogin, at(16)),
            Ok(vec![UserEvent::LoggedIn {}])
        );
        Ok(())
    }

    #[test]
    fn an_unlocked_account_can_log_in_at_once() -> Result<(), UserError> {
        let mut user = registered();
        for _ in 0..MAX_FAILED_LOGINS {
            user = apply(user, UserCommand::RecordFailedLogin, at(0))?;
        }
        user = apply(user, UserCommand::Unlock, at(1))?;
        assert!(user.decide(&UserCommand::RecordLogin, at(1)).is_ok());
        Ok(())
    }

    #[test]
    fn a_deactivated_user_cannot_log_in() -> Result<(), UserError> {
        let user = apply(registered(), UserCommand::Deactivate, at(0))?;
        assert_eq!(
            user.decide(&UserCommand::RecordLogin, at(0)),
            Err(UserError::Deactivated)
        );
        Ok(())
    }

    #[test]
    fn a_username_is_registered_once() {
        let cmd = UserCommand::Register {
            username: Username::parse("alice").unwrap_or_else(|e| panic!("{e}")),
            email: "a@example.org".into(),
            role: Role::Admin,
        };
        assert_eq!(
            registered().decide(&cmd, at(0)),
            Err(UserError::AlreadyExists)
        );
    }

    #[test]
    fn passwords_need_length_cases_digits_and_symbols() {
        assert!(check_password_rules("Str0ng!pass").is_ok());
        for weak in [
            "Sh0rt!",
            "alllower1!",
            "ALLUPPER1!",
            "NoDigits!!",
            "NoSymbol11",
        ] {
            assert!(check_password_rules(weak).is_err(), "{weak} was accepted");
        }
    }

    #[test]
    fn usernames_are_short_lowercase_identifiers() {
        assert!(Username::parse("alice.smith-2").is_ok());
        for bad in ["al", "Alice", "1alice", "al ice", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
