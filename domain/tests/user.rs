//! User accounts as specifications: given past events, when a login or an account command is
//! decided, then these events (or this refusal). The password and username rules, pure
//! functions, are tested beside their definitions in `domain/src/user.rs`.

use chrono::{DateTime, Duration, Utc};
use domain::testing::Spec;
use domain::user::{
    keeps_an_active_admin, Account, Role, User, UserCommand, UserError, UserEvent, Username,
    MAX_FAILED_LOGINS,
};

/// `minute` minutes after the epoch.
fn at(minute: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + Duration::minutes(minute)
}

fn alice() -> Username {
    Username::parse("alice").expect("a valid username")
}

fn registered() -> UserEvent {
    UserEvent::UserRegistered {
        username: alice(),
        email: "alice@example.org".into(),
        role: Role::Staff,
    }
}

/// A registered user's past with `n` failed logins in a row.
fn failed_logins(n: u32) -> Vec<UserEvent> {
    let mut events = vec![registered()];
    events.extend((1..=n).map(|attempts| UserEvent::LoginFailed { attempts }));
    events
}

#[test]
fn a_user_is_registered_with_their_username_email_and_role() {
    let then = User::given([])
        .when(
            UserCommand::Register {
                username: alice(),
                email: "alice@example.org".into(),
                role: Role::Staff,
            },
            at(0),
        )
        .then([registered()]);
    let User::Registered(account) = then.state() else {
        panic!("not registered: {:?}", then.state());
    };
    assert_eq!(account.username, alice());
    assert_eq!(account.role, Role::Staff);
    assert!(account.active);
    assert_eq!(account.failed_logins, 0);
}

#[test]
fn a_username_is_registered_once() {
    User::given([registered()])
        .when(
            UserCommand::Register {
                username: alice(),
                email: "a@example.org".into(),
                role: Role::Admin,
            },
            at(0),
        )
        .then_err(UserError::AlreadyExists);
}

#[test]
fn commands_on_a_user_that_does_not_exist_find_nothing() {
    for command in [
        UserCommand::RecordFailedLogin,
        UserCommand::RecordLogin,
        UserCommand::Unlock,
        UserCommand::ChangeRole { role: Role::Admin },
        UserCommand::ChangePassword,
        UserCommand::Deactivate,
        UserCommand::RecordFailedPasswordChange,
        UserCommand::Reactivate,
    ] {
        User::given([])
            .when(command, at(0))
            .then_err(UserError::NotFound);
    }
}

#[test]
fn each_failed_login_below_the_limit_is_counted() {
    for n in 1..MAX_FAILED_LOGINS {
        User::given(failed_logins(n - 1))
            .when(UserCommand::RecordFailedLogin, at(0))
            .case(format!("failure {n}"))
            .then([UserEvent::LoginFailed { attempts: n }]);
    }
}

#[test]
fn the_last_allowed_failed_login_locks_the_account_for_fifteen_minutes() {
    User::given(failed_logins(MAX_FAILED_LOGINS - 1))
        .when(UserCommand::RecordFailedLogin, at(1))
        .then([
            UserEvent::LoginFailed {
                attempts: MAX_FAILED_LOGINS,
            },
            UserEvent::AccountLocked { until: at(16) },
        ]);
}

#[test]
fn a_locked_account_refuses_logins_until_the_lock_runs_out() {
    let mut past = failed_logins(MAX_FAILED_LOGINS);
    past.push(UserEvent::AccountLocked { until: at(16) });
    let locked = User::given(past);
    locked
        .when(UserCommand::RecordLogin, at(15))
        .then_err(UserError::Locked { until: at(16) });
    locked
        .when(UserCommand::RecordLogin, at(16))
        .then([UserEvent::LoggedIn {}]);
}

#[test]
fn an_unlocked_account_can_log_in_at_once() {
    let mut past = failed_logins(MAX_FAILED_LOGINS);
    past.push(UserEvent::AccountLocked { until: at(16) });
    User::given(past)
        .when(UserCommand::Unlock, at(1))
        .then_ok()
        .and_when(UserCommand::RecordLogin, at(1))
        .then([UserEvent::LoggedIn {}]);
}

#[test]
fn a_deactivated_user_cannot_log_in() {
    User::given([registered()])
        .when(UserCommand::Deactivate, at(0))
        .then([UserEvent::UserDeactivated {}])
        .and_when(UserCommand::RecordLogin, at(0))
        .then_err(UserError::Deactivated);
}

#[test]
fn a_role_change_records_both_roles_and_refuses_the_same_role() {
    let user = User::given([registered()]);
    user.when(UserCommand::ChangeRole { role: Role::Admin }, at(0))
        .then([UserEvent::RoleChanged {
            from: Role::Staff,
            to: Role::Admin,
        }]);
    user.when(UserCommand::ChangeRole { role: Role::Staff }, at(0))
        .then_err(UserError::SameRole { role: Role::Staff });
}

/// A registered user's past with `n` failed logins in a row and the lock they ended in.
fn locked_until(minute: i64) -> Vec<UserEvent> {
    let mut past = failed_logins(MAX_FAILED_LOGINS);
    past.push(UserEvent::AccountLocked { until: at(minute) });
    past
}

#[test]
fn unlocking_an_account_that_is_not_locked_records_nothing() {
    User::given([registered()])
        .when(UserCommand::Unlock, at(0))
        .case("never locked")
        .then([]);
    User::given(failed_logins(MAX_FAILED_LOGINS - 1))
        .when(UserCommand::Unlock, at(0))
        .case("failures below the limit")
        .then([]);
    User::given(locked_until(16))
        .when(UserCommand::Unlock, at(16))
        .case("a lock that has run out")
        .then([]);
}

#[test]
fn a_wrong_password_that_raced_the_lock_is_recorded_and_the_lock_stands_as_it_was() {
    User::given(locked_until(16))
        .when(UserCommand::RecordFailedLogin, at(1))
        .then([UserEvent::LoginFailed { attempts: 1 }]);
    let mut past = locked_until(16);
    past.extend((1..MAX_FAILED_LOGINS).map(|attempts| UserEvent::LoginFailed { attempts }));
    User::given(past)
        .when(UserCommand::RecordFailedLogin, at(2))
        .case("the limit reached again while locked")
        .then([UserEvent::LoginFailed {
            attempts: MAX_FAILED_LOGINS,
        }]);
}

#[test]
fn a_wrong_current_password_counts_like_a_failed_login_and_can_lock_the_account() {
    User::given([registered()])
        .when(UserCommand::RecordFailedPasswordChange, at(0))
        .then([UserEvent::PasswordChangeFailed { attempts: 1 }]);
    User::given(failed_logins(MAX_FAILED_LOGINS - 1))
        .when(UserCommand::RecordFailedPasswordChange, at(1))
        .then([
            UserEvent::PasswordChangeFailed {
                attempts: MAX_FAILED_LOGINS,
            },
            UserEvent::AccountLocked { until: at(16) },
        ])
        .and_when(UserCommand::RecordLogin, at(2))
        .then_err(UserError::Locked { until: at(16) });
}

#[test]
fn a_deactivated_user_can_be_reactivated_and_log_in_again() {
    User::given([registered(), UserEvent::UserDeactivated {}])
        .when(UserCommand::Reactivate, at(0))
        .then([UserEvent::UserReactivated {}])
        .and_when(UserCommand::RecordLogin, at(0))
        .then([UserEvent::LoggedIn {}]);
}

#[test]
fn reactivating_an_active_user_is_refused() {
    User::given([registered()])
        .when(UserCommand::Reactivate, at(0))
        .then_err(UserError::AlreadyActive);
}

fn account(role: Role, active: bool) -> Account {
    Account {
        username: alice(),
        email: "alice@example.org".into(),
        role,
        active,
        failed_logins: 0,
        locked_until: None,
    }
}

#[test]
fn the_last_active_admin_can_be_neither_demoted_nor_deactivated() {
    let admin = account(Role::Admin, true);
    for (change, after) in [
        ("demoted", account(Role::Staff, true)),
        ("deactivated", account(Role::Admin, false)),
    ] {
        assert_eq!(
            keeps_an_active_admin(&admin, &after, 1),
            Err(UserError::LastAdmin),
            "{change}"
        );
        assert_eq!(
            keeps_an_active_admin(&admin, &after, 2),
            Ok(()),
            "{change} with another admin left"
        );
    }
}

#[test]
fn changes_that_remove_no_active_admin_pass_whatever_the_count() {
    for (before, after) in [
        (account(Role::Staff, true), account(Role::Viewer, true)),
        (account(Role::Staff, true), account(Role::Admin, true)),
        (account(Role::Admin, false), account(Role::Staff, false)),
        (account(Role::Admin, false), account(Role::Admin, true)),
    ] {
        assert_eq!(
            keeps_an_active_admin(&before, &after, 0),
            Ok(()),
            "{before:?} to {after:?}"
        );
    }
}
