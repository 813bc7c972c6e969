//! Operations routes: readiness for orchestrators, metrics for Prometheus.

use std::time::Duration;

use caseledger_tests::{spawn_app, spawn_app_with, Options};
use serde_json::Value;
use sqlx::PgPool;

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn ready_once_the_database_is_migrated_and_projections_keep_up(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool.clone()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = app.anonymous.get(app.url("/ready")).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if status == 200 {
            assert_eq!(body["ready"], true);
            assert_eq!(
                (body["database"].as_bool(), body["migrations"].as_bool()),
                (Some(true), Some(true))
            );
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "never ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A server whose projections do not run is alive but not ready.
    let idle = spawn_app_with(
        pool,
        Options {
            projectors: false,
            ..Options::default()
        },
    )
    .await?;
    drop(app);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let response = idle.anonymous.get(idle.url("/ready")).send().await?;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await?;
    let every_projection: Vec<&str> = projections::all().iter().map(|p| p.name()).collect();
    assert_eq!(
        body["lagging_projections"],
        serde_json::json!(every_projection)
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn metrics_count_requests_by_route_and_status_and_show_projection_lag(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    for _ in 0..3 {
        app.client.get(app.url("/streams")).send().await?;
    }
    app.client
        .get(app.url("/events"))
        .query(&[("after", "bad")])
        .send()
        .await?;
    app.anonymous.get(app.url("/events")).send().await?;

    let anonymous = app.anonymous.get(app.url("/metrics")).send().await?;
    assert_eq!(anonymous.status(), 401);
    let response = app.client.get(app.url("/metrics")).send().await?;
    assert_eq!(response.status(), 200);
    let text = response.text().await?;
    for expected in [
        r#"caseledger_http_requests_total{method="GET",route="/streams",status="200"} 3"#,
        r#"caseledger_http_requests_total{method="GET",route="/events",status="400"} 1"#,
        r#"caseledger_http_requests_total{method="GET",route="/events",status="401"} 1"#,
        r#"caseledger_http_request_duration_seconds_count{method="GET",route="/streams"} 3"#,
        r#"caseledger_projection_lag_events{projection="stream_catalogue"}"#,
        "caseledger_command_conflicts_total",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    Ok(())
}
