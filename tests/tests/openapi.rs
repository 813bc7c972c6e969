//! The OpenAPI document covers every route, its mirror schemas match the real JSON, and the
//! interactive reference needs nothing from the internet.

use std::collections::BTreeSet;

use caseledger_tests::spawn_app;
use eventstore::{ExpectedVersion, Metadata, NewEvent};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// Asset routes behind `/docs`, which are files rather than API operations.
fn is_asset(path: &str) -> bool {
    path.starts_with("/docs/")
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_openapi_document_describes_exactly_the_routes_in_the_permission_table(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let doc: Value = app
        .anonymous
        .get(app.url("/openapi.json"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .into_iter()
                .flatten()
                .map(move |(m, _)| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = api::routes::api()
        .permissions
        .entries()
        .iter()
        .filter(|e| !is_asset(&e.path))
        .map(|e| (e.method.to_string(), e.path.clone()))
        .collect();
    assert_eq!(documented, served);
    // Every operation documents its error shape or is public plain content.
    for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in ops.as_object().into_iter().flatten() {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
        }
    }
    Ok(())
}

fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][schema]["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect()
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_documented_shapes_match_what_the_server_sends(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let doc: Value = app
        .anonymous
        .get(app.url("/openapi.json"))
        .send()
        .await?
        .json()
        .await?;
    let id = Uuid::new_v4();
    let appended = app
        .store
        .append(
            id,
            "renewal",
            ExpectedVersion::NoStream,
            &[NewEvent::new("Happened", json!({}))],
            &Metadata::by("t"),
        )
        .await?;
    let cursor = appended.cursor.map(|c| c.to_string()).unwrap_or_default();

    let history: Value = app
        .client
        .get(app.url(&format!("/streams/{id}/events")))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(keys(&history[0]), properties(&doc, "RecordedEvent"));
    assert_eq!(keys(&history[0]["metadata"]), properties(&doc, "Metadata"));
    let page: Value = app
        .client
        .get(app.url("/events"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(keys(&page), properties(&doc, "EventPage"));
    let streams: Value = app
        .client
        .get(app.url("/streams"))
        .query(&[("min_cursor", cursor)])
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(keys(&streams), properties(&doc, "StreamPage"));
    assert_eq!(
        keys(&streams["streams"][0]),
        properties(&doc, "StreamEntry")
    );
    let status: Value = app
        .client
        .get(app.url("/admin/projections"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(keys(&status[0]), properties(&doc, "ProjectionStatus"));
    let problem: Value = app
        .client
        .get(app.url("/events"))
        .query(&[("after", "x")])
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(keys(&problem), properties(&doc, "Problem"));
    let me: Value = app
        .client
        .get(app.url("/auth/me"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(keys(&me), properties(&doc, "Caller"));
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_interactive_reference_is_served_without_the_internet(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let html = app
        .anonymous
        .get(app.url("/docs"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    assert!(html.contains("SwaggerUIBundle") && html.contains("/openapi.json"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page must load nothing from elsewhere"
    );
    for asset in ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"] {
        let response = app
            .anonymous
            .get(app.url(asset))
            .send()
            .await?
            .error_for_status()?;
        assert!(response.bytes().await?.len() > 10_000, "{asset}");
    }
    Ok(())
}
