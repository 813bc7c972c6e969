//! `GET /health` and the API's answer to unknown routes, over HTTP.

use caseledger_tests::spawn_app;
use eventstore::{ExpectedVersion, Metadata, NewEvent};
use serde_json::{json, Value};
use sqlx::PgPool;

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn health_reports_a_reachable_database_and_the_head_cursor(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    // Health is public: no token needed. The log already holds the test admin's events.
    let before: Value = app
        .anonymous
        .get(app.url("/health"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let head = app.store.head().await?.to_string();
    assert_eq!(
        before,
        json!({"status": "ok", "database": "reachable", "head": head})
    );

    let appended = app
        .store
        .append(
            uuid::Uuid::new_v4(),
            "test",
            ExpectedVersion::NoStream,
            &[NewEvent::new("Happened", json!({}))],
            &Metadata::by("test"),
        )
        .await?;
    let after: Value = app
        .client
        .get(app.url("/health"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(after["head"], json!(appended.cursor.map(|c| c.to_string())));
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn health_answers_503_problem_json_when_the_database_is_gone(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    app.store.pool().close().await;
    let response = app.client.get(app.url("/health")).send().await?;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await?;
    assert_eq!(body["code"], "database_unavailable");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn unknown_routes_answer_with_a_problem_document(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let response = app.client.get(app.url("/no/such/route")).send().await?;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await?;
    assert_eq!(
        (body["status"].as_u64(), body["code"].as_str()),
        (Some(404), Some("route_not_found"))
    );
    Ok(())
}
