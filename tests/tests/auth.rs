//! Logging in and out, session expiry, lockout and unlock, rate limits, password changes, user
//! administration (the last active admin kept), and the role matrix over every route.

use std::sync::Arc;

use api::permissions::{Access, Entry};
use caseledger_tests::{spawn_app, spawn_app_with, Options, TestApp, PASSWORD};
use chrono::{Duration, TimeZone, Utc};
use commands::ManualClock;
use domain::user::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

async fn app_with_clock(pool: PgPool) -> anyhow::Result<(TestApp, ManualClock)> {
    let start = Utc
        .with_ymd_and_hms(2026, 11, 21, 9, 0, 0)
        .single()
        .ok_or_else(|| anyhow::anyhow!("date"))?;
    let clock = ManualClock::at(start);
    let options = Options {
        clock: Some(Arc::new(clock.clone())),
        // These tests make many attempts on purpose; the rate limit has a test of its own.
        login_limit: Some(100),
        ..Options::default()
    };
    Ok((spawn_app_with(pool, options).await?, clock))
}

async fn login_response(
    app: &TestApp,
    username: &str,
    password: &str,
    remember_me: bool,
) -> anyhow::Result<reqwest::Response> {
    Ok(app
        .anonymous
        .post(app.url("/auth/login"))
        .json(&json!({"username": username, "password": password, "remember_me": remember_me}))
        .send()
        .await?)
}

async fn me_status(app: &TestApp, token: &str) -> anyhow::Result<StatusCode> {
    Ok(TestApp::client_with(token)?
        .get(app.url("/auth/me"))
        .send()
        .await?
        .status())
}

async fn code_of(response: reqwest::Response) -> anyhow::Result<(StatusCode, String)> {
    let status = response.status();
    let body: Value = response.json().await?;
    Ok((status, body["code"].as_str().unwrap_or_default().to_owned()))
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_session_lasts_24_hours_or_7_days_with_remember_me(pool: PgPool) -> anyhow::Result<()> {
    let (app, clock) = app_with_clock(pool).await?;
    let short = app.token_for("carol", Role::Staff).await?;
    let long: String = login_response(&app, "carol", PASSWORD, true)
        .await?
        .json::<Value>()
        .await?["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(me_status(&app, &short).await?, StatusCode::OK);
    clock.advance(Duration::hours(23));
    assert_eq!(me_status(&app, &short).await?, StatusCode::OK);
    clock.advance(Duration::hours(2));
    assert_eq!(me_status(&app, &short).await?, StatusCode::UNAUTHORIZED);
    assert_eq!(me_status(&app, &long).await?, StatusCode::OK);
    clock.advance(Duration::days(6));
    assert_eq!(me_status(&app, &long).await?, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn logout_revokes_the_token_and_me_names_the_caller(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let token = app.token_for("dave", Role::Viewer).await?;
    let client = TestApp::client_with(&token)?;
    let me: Value = client.get(app.url("/auth/me")).send().await?.json().await?;
    assert_eq!(
        (me["username"].as_str(), me["role"].as_str()),
        (Some("dave"), Some("viewer"))
    );
    assert_eq!(
        client.post(app.url("/auth/logout")).send().await?.status(),
        StatusCode::NO_CONTENT
    );
    let (status, code) = code_of(client.get(app.url("/auth/me")).send().await?).await?;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let garbage = TestApp::client_with("not-a-token")?
        .get(app.url("/auth/me"))
        .send()
        .await?;
    assert_eq!(garbage.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(garbage.headers()["www-authenticate"], "Bearer");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn five_failed_logins_lock_the_account_for_15_minutes_and_an_admin_can_unlock(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (app, clock) = app_with_clock(pool).await?;
    app.token_for("erin", Role::Staff).await?;
    for _ in 0..4 {
        let (status, code) =
            code_of(login_response(&app, "erin", "Wr0ng-password", false).await?).await?;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNAUTHORIZED, "invalid_credentials")
        );
    }
    let (status, code) =
        code_of(login_response(&app, "erin", "Wr0ng-password", false).await?).await?;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "account_locked")
    );
    let (status, code) = code_of(login_response(&app, "erin", PASSWORD, false).await?).await?;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "account_locked"),
        "even the right password"
    );

    clock.advance(Duration::minutes(15));
    assert!(login_response(&app, "erin", PASSWORD, false)
        .await?
        .status()
        .is_success());

    // Locked again; this time an admin lets her back in at once.
    for _ in 0..5 {
        login_response(&app, "erin", "Wr0ng-password", false).await?;
    }
    assert_eq!(
        login_response(&app, "erin", PASSWORD, false)
            .await?
            .status(),
        StatusCode::FORBIDDEN
    );
    let unlocked = app
        .client
        .post(app.url("/users/erin/unlock"))
        .send()
        .await?;
    assert_eq!(unlocked.status(), StatusCode::NO_CONTENT);
    assert!(login_response(&app, "erin", PASSWORD, false)
        .await?
        .status()
        .is_success());

    // Every failure, lockout and unlock is on record, with who did it.
    let id = api::auth::user_id(&domain::user::Username::parse("erin")?);
    let history: Value = app
        .client
        .get(app.url(&format!("/streams/{id}/events")))
        .send()
        .await?
        .json()
        .await?;
    let types: Vec<&str> = history
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert_eq!(types.iter().filter(|t| **t == "LoginFailed").count(), 10);
    assert_eq!(types.iter().filter(|t| **t == "AccountLocked").count(), 2);
    let unlock = history
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["event_type"] == "AccountUnlocked");
    assert_eq!(
        unlock.map(|e| e["metadata"]["actor"].clone()),
        Some(json!("user:admin"))
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn login_attempts_are_rate_limited_per_account(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let mut last = None;
    for _ in 0..11 {
        last = Some(login_response(&app, "nobody", "Wr0ng-password", false).await?);
    }
    let response = last.ok_or_else(|| anyhow::anyhow!("no response"))?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(code_of(response).await?.1, "rate_limited");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn admins_create_users_change_roles_and_deactivate_them(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let create = |body: Value| app.client.post(app.url("/users")).json(&body).send();
    let frank = json!({"username": "frank", "email": "frank@example.org", "role": "viewer", "password": PASSWORD});
    assert_eq!(create(frank.clone()).await?.status(), StatusCode::CREATED);
    assert_eq!(
        code_of(create(frank).await?).await?,
        (StatusCode::CONFLICT, "user_exists".into())
    );
    let weak = json!({"username": "gina", "email": "g@example.org", "role": "viewer", "password": "password"});
    assert_eq!(
        code_of(create(weak).await?).await?,
        (StatusCode::UNPROCESSABLE_ENTITY, "weak_password".into())
    );
    let bad_name = json!({"username": "Gina Smith", "email": "g@example.org", "role": "viewer", "password": PASSWORD});
    assert_eq!(
        code_of(create(bad_name).await?).await?.1,
        "invalid_username"
    );
    let bad_role = json!({"username": "gina", "email": "g@example.org", "role": "emperor", "password": PASSWORD});
    assert_eq!(
        code_of(create(bad_role).await?).await?.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let token = app.login("frank", PASSWORD).await?;
    let frank = TestApp::client_with(&token)?;
    assert_eq!(
        frank.get(app.url("/events")).send().await?.status(),
        StatusCode::FORBIDDEN
    );
    let promote = app
        .client
        .post(app.url("/users/frank/role"))
        .json(&json!({"role": "auditor"}))
        .send()
        .await?;
    assert_eq!(promote.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        frank.get(app.url("/events")).send().await?.status(),
        StatusCode::OK,
        "the new role applies at once"
    );

    assert_eq!(
        app.client
            .post(app.url("/users/frank/deactivate"))
            .send()
            .await?
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        frank.get(app.url("/auth/me")).send().await?.status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, code) = code_of(login_response(&app, "frank", PASSWORD, false).await?).await?;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_credentials"),
        "a deactivated account answers as a wrong password does"
    );
    let missing = app
        .client
        .post(app.url("/users/ghost/unlock"))
        .send()
        .await?;
    assert_eq!(
        code_of(missing).await?,
        (StatusCode::NOT_FOUND, "user_not_found".into())
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_password_change_needs_the_current_password_and_the_rules(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let client = TestApp::client_with(&app.token_for("hana", Role::Staff).await?)?;
    let change = |current: &str, new: &str| {
        client
            .post(app.url("/auth/password"))
            .json(&json!({"current_password": current, "new_password": new}))
            .send()
    };
    assert_eq!(
        code_of(change("Wr0ng-password", "N3w-password!").await?)
            .await?
            .1,
        "invalid_credentials"
    );
    assert_eq!(
        code_of(change(PASSWORD, "short").await?).await?.1,
        "weak_password"
    );
    assert_eq!(
        change(PASSWORD, "N3w-password!").await?.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        login_response(&app, "hana", PASSWORD, false)
            .await?
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(login_response(&app, "hana", "N3w-password!", false)
        .await?
        .status()
        .is_success());
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn malformed_bodies_are_problem_documents(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let login = || app.anonymous.post(app.url("/auth/login"));
    let cases = [
        (
            login()
                .header("content-type", "application/json")
                .body("{not json"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            login().header("content-type", "text/plain").body("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            login().json(&json!({"username": 5})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            login().json(&json!({"username": "x", "password": "y".repeat(2 * 1024 * 1024)})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let response = request.send().await?;
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert_eq!(code_of(response).await?, (status, code.to_owned()));
    }
    Ok(())
}

/// A concrete path for a route template.
fn concrete(template: &str) -> String {
    template
        .replace("{id}", &uuid::Uuid::new_v4().to_string())
        .replace("{username}", "nobody")
        .replace("{name}", "nobody")
        .replace("{item}", "nobody")
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn every_route_allows_exactly_the_roles_in_the_permission_table(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let mut clients = vec![(None, app.anonymous.clone())];
    for role in Role::ALL {
        let token = app.token_for(&format!("matrix-{role}"), role).await?;
        clients.push((Some(role), TestApp::client_with(&token)?));
    }
    // Logout ends the session it is called with, so it goes last.
    let mut routes = api::routes::api().permissions.entries().to_vec();
    routes.sort_by_key(|entry| entry.path == "/auth/logout");
    for Entry {
        method,
        path: template,
        access,
    } in routes
    {
        for (role, client) in &clients {
            let url = app.url(&concrete(&template));
            let request = match method.as_str() {
                "GET" => client.get(&url),
                "POST" => client.post(&url).json(&json!({})),
                "PUT" => client.put(&url).json(&json!({})),
                other => anyhow::bail!("the matrix test does not know method {other}"),
            };
            let response = request.send().await?;
            let status = response.status();
            let allowed = match (access, role) {
                (Access::Public, _) => true,
                (_, None) => false,
                (Access::AnyUser, Some(_)) => true,
                (Access::Roles(roles), Some(r)) => roles.contains(r),
            };
            let who = role.map_or("anonymous".to_owned(), |r| r.to_string());
            let code = if status.is_success() {
                String::new()
            } else {
                code_of(response).await?.1
            };
            if allowed {
                // A 403 with another code is the resource's own refusal (a work queue's
                // `no_valid_grant`, say), not the permission table's.
                assert!(
                    status != StatusCode::UNAUTHORIZED
                        && (status != StatusCode::FORBIDDEN || code != "forbidden"),
                    "{method} {template} refused {who}: {status} {code}"
                );
                assert!(
                    code != "route_not_found" && code != "method_not_allowed",
                    "{method} {template} is in the table but not served"
                );
            } else {
                let expected = if role.is_none() {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::FORBIDDEN
                };
                assert_eq!(status, expected, "{method} {template} let {who} through");
                if role.is_some() {
                    assert_eq!(code, "forbidden", "{method} {template}: {who}");
                }
            }
        }
    }
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn auditors_see_a_user_as_of_a_version_or_a_time(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let auditor = TestApp::client_with(&app.token_for("ivan", Role::Auditor).await?)?;
    let before_ines = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.token_for("ines", Role::Viewer).await?;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let before_promotion = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let promote = app
        .client
        .post(app.url("/users/ines/role"))
        .json(&json!({"role": "staff"}))
        .send()
        .await?;
    assert_eq!(promote.status(), StatusCode::NO_CONTENT);

    let get = |query: Vec<(&'static str, String)>| {
        auditor.get(app.url("/users/ines")).query(&query).send()
    };
    let now: Value = get(vec![]).await?.json().await?;
    assert_eq!(
        (now["role"].as_str(), now["version"].as_u64()),
        (Some("staff"), Some(3))
    );
    assert!(now.get("password_hash").is_none());
    let first: Value = get(vec![("as_of_version", "1".into())])
        .await?
        .json()
        .await?;
    assert_eq!(
        (first["role"].as_str(), first["version"].as_u64()),
        (Some("viewer"), Some(1))
    );
    let then: Value = get(vec![("as_of", before_promotion.to_rfc3339())])
        .await?
        .json()
        .await?;
    assert_eq!(then["role"], "viewer");
    let (status, code) = code_of(get(vec![("as_of", before_ines.to_rfc3339())]).await?).await?;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "user_not_found")
    );
    let (status, code) = code_of(get(vec![("as_of_version", "zero".into())]).await?).await?;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "bad_query")
    );
    let staff = TestApp::client_with(&app.login("ines", PASSWORD).await?)?;
    assert_eq!(
        staff.get(app.url("/users/ines")).send().await?.status(),
        StatusCode::FORBIDDEN
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn password_hashes_never_enter_the_event_log(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool.clone()).await?;
    let client = TestApp::client_with(&app.token_for("jill", Role::Staff).await?)?;
    let changed = client
        .post(app.url("/auth/password"))
        .json(&json!({"current_password": PASSWORD, "new_password": "An0ther-one!"}))
        .send()
        .await?;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    let leaks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE payload::text LIKE '%argon2%'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(leaks, 0);
    let recorded: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE stream_type = 'user' AND event_type IN ('UserRegistered', 'PasswordChanged') ORDER BY position",
    )
    .fetch_all(&pool)
    .await?;
    assert!(
        recorded.contains(&"PasswordChanged".to_owned()),
        "the change itself is on record: {recorded:?}"
    );
    Ok(())
}

/// The types of the events on `username`'s stream, oldest first.
async fn event_types(app: &TestApp, username: &str) -> anyhow::Result<Vec<String>> {
    let id = api::auth::user_id(&domain::user::Username::parse(username)?);
    Ok(
        sqlx::query_scalar("SELECT event_type FROM events WHERE stream_id = $1 ORDER BY version")
            .bind(id)
            .fetch_all(app.store.pool())
            .await?,
    )
}

fn count(types: &[String], event_type: &str) -> usize {
    types.iter().filter(|t| *t == event_type).count()
}

/// Posts `body`; the status and the problem's code (empty for a success without a body).
async fn post(
    client: &reqwest::Client,
    url: String,
    body: Value,
) -> anyhow::Result<(StatusCode, String)> {
    let response = client.post(url).json(&body).send().await?;
    let status = response.status();
    let body: Value = serde_json::from_str(&response.text().await?).unwrap_or_default();
    Ok((status, body["code"].as_str().unwrap_or_default().to_owned()))
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_deactivated_account_answers_the_right_password_exactly_as_a_wrong_one(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (app, _clock) = app_with_clock(pool).await?;
    app.token_for("frank", Role::Staff).await?;
    let deactivated = app
        .client
        .post(app.url("/users/frank/deactivate"))
        .send()
        .await?;
    assert_eq!(deactivated.status(), StatusCode::NO_CONTENT);
    let answer = |username: &'static str, password: &'static str| {
        let app = &app;
        async move {
            let response = login_response(app, username, password, false).await?;
            let status = response.status();
            let www = response.headers().get("www-authenticate").cloned();
            let body: Value = response.json().await?;
            anyhow::Ok((status, www, body))
        }
    };
    let right = answer("frank", PASSWORD).await?;
    let wrong = answer("frank", "Wr0ng-password").await?;
    let unknown = answer("nobody", PASSWORD).await?;
    assert_eq!(right.0, StatusCode::UNAUTHORIZED);
    assert_eq!(right.2["code"], "invalid_credentials");
    assert_eq!(right, wrong, "right and wrong password");
    assert_eq!(right, unknown, "and a name nobody has");
    // Both were failed logins, recorded alike.
    let types = event_types(&app, "frank").await?;
    assert_eq!(count(&types, "LoginFailed"), 2, "{types:?}");
    assert_eq!(
        count(&types, "LoggedIn"),
        1,
        "only the login before deactivation"
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn an_admin_reactivates_a_deactivated_user_who_can_then_log_in_again(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let old_session = TestApp::client_with(&app.token_for("gwen", Role::Staff).await?)?;
    let url = |action: &str| app.url(&format!("/users/gwen/{action}"));
    assert_eq!(
        post(&app.client, url("reactivate"), json!({})).await?,
        (StatusCode::CONFLICT, "already_active".into())
    );
    assert_eq!(
        app.client.post(url("deactivate")).send().await?.status(),
        StatusCode::NO_CONTENT
    );
    assert!(app.login("gwen", PASSWORD).await.is_err());
    assert_eq!(
        app.client.post(url("reactivate")).send().await?.status(),
        StatusCode::NO_CONTENT
    );
    let token = app.login("gwen", PASSWORD).await?;
    assert_eq!(me_status(&app, &token).await?, StatusCode::OK);
    assert_eq!(
        old_session.get(app.url("/auth/me")).send().await?.status(),
        StatusCode::UNAUTHORIZED,
        "sessions ended by the deactivation stay ended"
    );
    let types = event_types(&app, "gwen").await?;
    assert_eq!(count(&types, "UserReactivated"), 1, "{types:?}");
    assert_eq!(
        post(&app.client, app.url("/users/ghost/reactivate"), json!({})).await?,
        (StatusCode::NOT_FOUND, "user_not_found".into())
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_last_active_admin_can_be_neither_demoted_nor_deactivated(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let last_admin = (StatusCode::CONFLICT, "last_admin".to_owned());
    let demote = || {
        post(
            &app.client,
            app.url("/users/admin/role"),
            json!({"role": "staff"}),
        )
    };
    let deactivate = || post(&app.client, app.url("/users/admin/deactivate"), json!({}));
    assert_eq!(demote().await?, last_admin, "demoting oneself");
    assert_eq!(deactivate().await?, last_admin, "deactivating oneself");

    // A second admin who is deactivated does not count.
    app.token_for("root", Role::Admin).await?;
    let root = |action: &str| app.url(&format!("/users/root/{action}"));
    assert_eq!(
        app.client.post(root("deactivate")).send().await?.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        demote().await?,
        last_admin,
        "with only a deactivated admin left"
    );
    assert_eq!(
        app.client.post(root("reactivate")).send().await?.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(demote().await?.0, StatusCode::NO_CONTENT, "root is left");
    let root_client = TestApp::client_with(&app.login("root", PASSWORD).await?)?;
    assert_eq!(
        post(&root_client, root("deactivate"), json!({})).await?,
        last_admin,
        "and root is now the last"
    );
    let types = event_types(&app, "admin").await?;
    assert_eq!(count(&types, "RoleChanged"), 1, "{types:?}");
    assert_eq!(count(&types, "UserDeactivated"), 0, "{types:?}");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_last_two_admins_stepping_down_at_once_leave_one_admin(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool.clone()).await?;
    let bob = TestApp::client_with(&app.token_for("bob", Role::Admin).await?)?;
    for round in 0..8 {
        let (by_admin, by_bob) = tokio::join!(
            post(
                &app.client,
                app.url("/users/admin/role"),
                json!({"role": "staff"})
            ),
            post(&bob, app.url("/users/bob/role"), json!({"role": "staff"})),
        );
        let mut answers = [by_admin?, by_bob?];
        answers.sort();
        assert_eq!(
            answers,
            [
                (StatusCode::NO_CONTENT, String::new()),
                (StatusCode::CONFLICT, "last_admin".into()),
            ],
            "round {round}"
        );
        let admins: Vec<String> = sqlx::query_scalar(
            "SELECT e.payload->>'username' FROM user_roles r \
             JOIN events e ON e.stream_id = r.user_id AND e.event_type = 'UserRegistered' \
             WHERE r.role = 'admin' AND r.active",
        )
        .fetch_all(&pool)
        .await?;
        assert_eq!(admins.len(), 1, "round {round}: {admins:?}");
        // The one left promotes the other back for the next round.
        let (survivor, demoted) = if admins[0] == "admin" {
            (&app.client, "bob")
        } else {
            (&bob, "admin")
        };
        let promoted = post(
            survivor,
            app.url(&format!("/users/{demoted}/role")),
            json!({"role": "admin"}),
        )
        .await?;
        assert_eq!(promoted.0, StatusCode::NO_CONTENT, "round {round}");
    }
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_wrong_current_password_is_recorded_and_counts_towards_the_lockout_with_failed_logins(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (app, _clock) = app_with_clock(pool).await?;
    let client = TestApp::client_with(&app.token_for("hana", Role::Staff).await?)?;
    let change = |current: &'static str| {
        post(
            &client,
            app.url("/auth/password"),
            json!({"current_password": current, "new_password": "N3w-password!"}),
        )
    };
    for _ in 0..2 {
        login_response(&app, "hana", "Wr0ng-password", false).await?;
    }
    for _ in 0..2 {
        assert_eq!(
            change("Wr0ng-password").await?,
            (StatusCode::UNAUTHORIZED, "invalid_credentials".into())
        );
    }
    assert_eq!(
        change("Wr0ng-password").await?,
        (StatusCode::FORBIDDEN, "account_locked".into()),
        "the fifth wrong password locks, whichever way it came"
    );
    assert_eq!(
        change(PASSWORD).await?,
        (StatusCode::FORBIDDEN, "account_locked".into()),
        "even the right current password"
    );
    assert_eq!(
        code_of(login_response(&app, "hana", PASSWORD, false).await?).await?,
        (StatusCode::FORBIDDEN, "account_locked".into())
    );
    let types = event_types(&app, "hana").await?;
    assert_eq!(count(&types, "LoginFailed"), 2, "{types:?}");
    assert_eq!(count(&types, "PasswordChangeFailed"), 3, "{types:?}");
    assert_eq!(count(&types, "AccountLocked"), 1, "{types:?}");
    assert_eq!(count(&types, "PasswordChanged"), 0, "{types:?}");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn password_changes_share_the_login_rate_limit(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    // Its login is one attempt on the account already.
    let client = TestApp::client_with(&app.token_for("ivy", Role::Staff).await?)?;
    let mut last = None;
    for _ in 0..10 {
        last = Some(
            client
                .post(app.url("/auth/password"))
                .json(
                    &json!({"current_password": "Wr0ng-password", "new_password": "N3w-password!"}),
                )
                .send()
                .await?,
        );
    }
    let response = last.ok_or_else(|| anyhow::anyhow!("no response"))?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(code_of(response).await?.1, "rate_limited");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn every_wrong_password_is_recorded_even_when_attempts_race_the_lockout(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (app, _clock) = app_with_clock(pool).await?;
    app.token_for("erin", Role::Staff).await?;
    let attempts = (0..12).map(|_| async {
        let response = login_response(&app, "erin", "Wr0ng-password", false).await?;
        code_of(response).await
    });
    let answers = futures_util::future::try_join_all(attempts).await?;
    let wrong = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::UNAUTHORIZED)
        .count();
    let types = event_types(&app, "erin").await?;
    // Each attempt was either checked and found wrong (401, or the 403 of the one that locked
    // the account) or refused unchecked by the lock already in place (403, nothing to record).
    assert_eq!(
        count(&types, "LoginFailed"),
        wrong + count(&types, "AccountLocked"),
        "answers {answers:?}, events {types:?}"
    );
    assert_eq!(count(&types, "AccountLocked"), 1, "{types:?}");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn unlocking_an_account_that_is_not_locked_records_nothing(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    app.token_for("jude", Role::Viewer).await?;
    let before = event_types(&app, "jude").await?;
    let unlocked = app
        .client
        .post(app.url("/users/jude/unlock"))
        .send()
        .await?;
    assert_eq!(unlocked.status(), StatusCode::NO_CONTENT);
    assert_eq!(event_types(&app, "jude").await?, before);
    Ok(())
}
