//! What every route shares, whatever it serves: parameters holding a NUL character are refused
//! before any handler sees them, and HEAD is answered as GET is.

use caseledger_tests::{spawn_app, TestApp};
use domain::user::Role;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_nul_in_a_text_filter_is_refused_with_422_naming_the_parameter(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool.clone()).await?;
    let events_before: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await?;
    for (path, parameter) in [
        ("/events?actor=user%00", "actor"),
        ("/events?stream_type=%00", "stream_type"),
        ("/events/export?event_type=Task%00Created", "event_type"),
        ("/tasks?claimant=ann%00", "claimant"),
        ("/cases?assignee=%00", "assignee"),
        ("/practices?search=a%00b", "search"),
        ("/practices/available-physicians?specialty=%00", "specialty"),
        ("/streams?type=user%00", "type"),
        ("/physicians?limit=5&search=%00", "search"),
        ("/workflows/key%00", "key"),
    ] {
        let response = app.client.get(app.url(path)).send().await?;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let problem: Value = response.json().await?;
        assert_eq!(problem["code"], "invalid_text", "{path}");
        assert_eq!(problem["parameter"], parameter, "{path}");
    }
    // Nothing was written, and the export without the NUL still streams to its end.
    let events_after: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await?;
    assert_eq!(events_after, events_before);
    let export = app
        .client
        .get(app.url("/events/export?event_type=UserRegistered"))
        .send()
        .await?;
    assert_eq!(export.status(), StatusCode::OK);
    assert!(export.text().await?.contains("UserRegistered"));
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_nul_is_refused_only_after_the_caller_is_let_in(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let anonymous = app
        .anonymous
        .get(app.url("/events?actor=%00"))
        .send()
        .await?;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let viewer = TestApp::client_with(&app.token_for("vera", Role::Viewer).await?)?;
    let refused = viewer.get(app.url("/events?actor=%00")).send().await?;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn head_is_answered_like_get_on_every_get_route(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let routes = api::routes::api().permissions.entries().to_vec();
    let gets = routes
        .iter()
        .filter(|entry| entry.method == reqwest::Method::GET);
    for entry in gets {
        let url = app.url(
            &entry
                .path
                .replace("{id}", &uuid::Uuid::new_v4().to_string())
                .replace("{username}", "nobody")
                .replace("{name}", "nobody")
                .replace("{item}", "nobody")
                .replace("{key}", "nobody")
                .replace("{kind}", "task")
                .replace("{step}", "nobody")
                .replace("{location_id}", &uuid::Uuid::new_v4().to_string())
                .replace("{physician_id}", &uuid::Uuid::new_v4().to_string()),
        );
        let get = app.client.get(&url).send().await?.status();
        let head = app.client.head(&url).send().await?;
        assert_eq!(head.status(), get, "HEAD {}", entry.path);
    }
    let health = app.anonymous.head(app.url("/health")).send().await?;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await?, "", "no body");
    let anonymous = app.anonymous.head(app.url("/events")).send().await?;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let viewer = TestApp::client_with(&app.token_for("vera", Role::Viewer).await?)?;
    assert_eq!(
        viewer.head(app.url("/events")).send().await?.status(),
        StatusCode::FORBIDDEN,
        "HEAD has GET's roles, no more"
    );
    let post_only = app.client.head(app.url("/auth/login")).send().await?;
    assert_eq!(post_only.status(), StatusCode::METHOD_NOT_ALLOWED);
    Ok(())
}
