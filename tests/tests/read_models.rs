//! Read models over HTTP: read-your-writes, its failure modes, and projection status.

use std::time::Duration;

use caseledger_tests::{spawn_app, spawn_app_with, Options};
use eventstore::{Cursor, ExpectedVersion, Metadata, NewEvent};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

async fn append(app: &caseledger_tests::TestApp, stream: Uuid) -> anyhow::Result<Cursor> {
    let appended = app
        .store
        .append(
            stream,
            "renewal",
            ExpectedVersion::Any,
            &[NewEvent::new("Happened", json!({}))],
            &Metadata::by("test"),
        )
        .await?;
    appended.cursor.ok_or_else(|| anyhow::anyhow!("no cursor"))
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_query_carrying_a_writes_cursor_sees_that_write(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    for round in 0..20 {
        let stream = Uuid::new_v4();
        let cursor = append(&app, stream).await?;
        // Alternately as a parameter and as a header.
        let request = app
            .client
            .get(app.url("/streams"))
            .query(&[("type", "renewal"), ("limit", "1000")]);
        let request = if round % 2 == 0 {
            request.query(&[("min_cursor", cursor.to_string())])
        } else {
            request.header("X-Min-Cursor", cursor.to_string())
        };
        let page: Value = request.send().await?.error_for_status()?.json().await?;
        let ids: Vec<&str> = page["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["stream_id"].as_str())
            .collect();
        assert!(
            ids.contains(&stream.to_string().as_str()),
            "round {round}: {page}"
        );
    }
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_read_model_that_cannot_catch_up_in_time_answers_503_with_retry_after(
    pool: PgPool,
) -> anyhow::Result<()> {
    let options = Options {
        projectors: false,
        read_wait: Duration::from_millis(200),
        ..Options::default()
    };
    let app = spawn_app_with(pool, options).await?;
    let cursor = append(&app, Uuid::new_v4()).await?;
    let response = app
        .client
        .get(app.url("/streams"))
        .query(&[("min_cursor", cursor.to_string())])
        .send()
        .await?;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await?;
    assert_eq!(body["code"], "read_model_behind");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn malformed_or_future_cursors_and_bad_paging_are_refused(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let head = append(&app, Uuid::new_v4()).await?;
    let future = Cursor::new(head.transaction_id + 1_000, head.position + 1_000).to_string();
    for (query, code) in [
        (vec![("min_cursor", "abc")], "invalid_cursor"),
        (vec![("min_cursor", "12-")], "invalid_cursor"),
        (vec![("min_cursor", future.as_str())], "cursor_in_future"),
        (vec![("limit", "0")], "bad_query"),
        (vec![("limit", "lots")], "bad_query"),
        (vec![("after", "not-a-uuid")], "bad_query"),
    ] {
        let response = app
            .client
            .get(app.url("/streams"))
            .query(&query)
            .send()
            .await?;
        assert_eq!(response.status(), 400, "{query:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: Value = response.json().await?;
        assert_eq!(body["code"], code, "{query:?}: {body}");
    }
    let response = app
        .client
        .get(app.url("/streams"))
        .header("X-Min-Cursor", "nope")
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn streams_are_listed_by_type_in_pages(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let mut last = Cursor::START;
    for _ in 0..5 {
        last = append(&app, Uuid::new_v4()).await?;
    }
    app.store
        .append(
            Uuid::new_v4(),
            "task",
            ExpectedVersion::NoStream,
            &[NewEvent::new("Opened", json!({}))],
            &Metadata::by("test"),
        )
        .await?;
    let first: Value = app
        .client
        .get(app.url("/streams"))
        .query(&[
            ("type", "renewal"),
            ("limit", "3"),
            ("min_cursor", &last.to_string()),
        ])
        .send()
        .await?
        .json()
        .await?;
    let next = first["next"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no next page: {first}"))?;
    let second: Value = app
        .client
        .get(app.url("/streams"))
        .query(&[("type", "renewal"), ("limit", "3"), ("after", next)])
        .send()
        .await?
        .json()
        .await?;
    let count = |v: &Value| v["streams"].as_array().map_or(0, Vec::len);
    assert_eq!((count(&first), count(&second)), (3, 2));
    assert!(second["next"].is_null());
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn operators_see_each_projection_with_its_lag_and_state(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let cursor = append(&app, Uuid::new_v4()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status: Value = app
            .client
            .get(app.url("/admin/projections"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let catalogue = status
            .as_array()
            .and_then(|all| all.iter().find(|p| p["name"] == "stream_catalogue"))
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("stream_catalogue missing: {status}"))?;
        if catalogue["state"] == "live" && catalogue["checkpoint"] == json!(cursor.to_string()) {
            assert_eq!(catalogue["lag_events"], 0);
            assert_eq!(catalogue["head"], json!(cursor.to_string()));
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "never live: {catalogue}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
