//! The auditor's feed over HTTP: pages, one stream's history, the live SSE feed with resume,
//! the NDJSON export, and problem+json for every error.

use std::collections::HashSet;
use std::time::Duration;

use caseledger_tests::{spawn_app, spawn_app_with, Options, TestApp};
use eventstore::{Cursor, ExpectedVersion, Metadata, NewEvent};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

async fn append(
    app: &TestApp,
    stream: Uuid,
    stream_type: &str,
    event_type: &str,
    actor: &str,
) -> anyhow::Result<Cursor> {
    let a = app
        .store
        .append(
            stream,
            stream_type,
            ExpectedVersion::Any,
            &[NewEvent::new(event_type, json!({"by": actor}))],
            &Metadata::by(actor),
        )
        .await?;
    a.cursor.ok_or_else(|| anyhow::anyhow!("no cursor"))
}

async fn get_json(app: &TestApp, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
    Ok(app
        .client
        .get(app.url(path))
        .query(query)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_log_is_paged_in_read_order_and_filtered(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    // The log already holds the test admin's events; read what comes after them.
    let start = app.store.head().await?;
    let (renewal, task) = (Uuid::new_v4(), Uuid::new_v4());
    let mut cursors = Vec::new();
    for i in 0..5 {
        cursors.push(
            append(
                &app,
                renewal,
                "renewal",
                "RenewalUpdated",
                if i % 2 == 0 { "user:alice" } else { "user:bob" },
            )
            .await?,
        );
    }
    cursors.push(append(&app, task, "task", "TaskOpened", "job:sla").await?);

    // Pages of two, following `next`. A page stops at what is safely readable now: while a
    // writing transaction elsewhere on the server is open, later events wait for it, so a
    // short page means "come back", not "that was all".
    let mut seen = Vec::new();
    let mut after = start.to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < cursors.len() {
        let page = get_json(&app, "/events", &[("after", &after), ("limit", "2")]).await?;
        for e in page["events"].as_array().into_iter().flatten() {
            seen.push(e["cursor"].as_str().unwrap_or_default().to_owned());
            after = seen.last().cloned().unwrap_or_default();
        }
        if page["next"].is_null() {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "only {seen:?} became readable"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let expected: Vec<String> = cursors.iter().map(Cursor::to_string).collect();
    assert_eq!(seen, expected);

    let by_type = get_json(&app, "/events", &[("stream_type", "task")]).await?;
    assert_eq!(by_type["events"].as_array().map(Vec::len), Some(1));
    let by_actor = get_json(&app, "/events", &[("actor", "user:alice")]).await?;
    assert_eq!(by_actor["events"].as_array().map(Vec::len), Some(3));
    let by_event = get_json(
        &app,
        "/events",
        &[("event_type", "RenewalUpdated"), ("actor", "user:bob")],
    )
    .await?;
    assert_eq!(by_event["events"].as_array().map(Vec::len), Some(2));
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let none = get_json(&app, "/events", &[("from", &future)]).await?;
    assert_eq!(none["events"].as_array().map(Vec::len), Some(0));
    let first = &by_type["events"][0];
    assert_eq!(first["metadata"]["actor"], "job:sla");
    assert_eq!(first["stream_id"], json!(task));
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn one_streams_history_is_served_in_stream_order(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let id = Uuid::new_v4();
    for _ in 0..3 {
        append(&app, id, "renewal", "RenewalUpdated", "user:alice").await?;
    }
    let history = get_json(&app, &format!("/streams/{id}/events"), &[]).await?;
    let versions: Vec<u64> = history
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["version"].as_u64())
        .collect();
    assert_eq!(versions, [1, 2, 3]);

    let missing = app
        .client
        .get(app.url(&format!("/streams/{}/events", Uuid::new_v4())))
        .send()
        .await?;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await?["code"], "stream_not_found");
    let bad = app
        .client
        .get(app.url("/streams/not-a-uuid/events"))
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await?["code"], "bad_path");
    Ok(())
}

/// Reads SSE events from `response` until `want` arrived; returns (id, data) pairs.
async fn read_sse(
    response: &mut reqwest::Response,
    want: usize,
) -> anyhow::Result<Vec<(String, Value)>> {
    let mut buffer = String::new();
    let mut out = Vec::new();
    while out.len() < want {
        let chunk = tokio::time::timeout(Duration::from_secs(30), response.chunk())
            .await
            .map_err(|_| anyhow::anyhow!("feed stalled after {} events", out.len()))??
            .ok_or_else(|| anyhow::anyhow!("feed ended after {} events", out.len()))?;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut data = None;
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str::<Value>(v.trim())?);
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id, data));
                if out.len() == want {
                    break;
                }
            }
        }
    }
    Ok(out)
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_live_feed_resumes_from_last_event_id_without_loss_or_duplication(
    pool: PgPool,
) -> anyhow::Result<()> {
    const TOTAL: usize = 300;
    let app = spawn_app(pool).await?;
    let start = app.store.head().await?;
    let writer = {
        let store = app.store.clone();
        tokio::spawn(async move {
            let streams: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();
            let mut cursors = Vec::new();
            for i in 0..TOTAL {
                let a = store
                    .append(
                        streams[i % 10],
                        "renewal",
                        ExpectedVersion::Any,
                        &[NewEvent::new("Tick", json!({"i": i}))],
                        &Metadata::by("w"),
                    )
                    .await?;
                cursors.extend(a.cursor.map(|c| c.to_string()));
                if i % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            anyhow::Ok(cursors)
        })
    };

    let mut first = app
        .client
        .get(app.url("/events/stream"))
        .query(&[("after", start.to_string())])
        .send()
        .await?;
    assert_eq!(first.headers()["content-type"], "text/event-stream");
    let part1 = read_sse(&mut first, 100).await?;
    drop(first); // the client goes away mid-stream...
    let last_id = part1.last().map(|(id, _)| id.clone()).unwrap_or_default();
    // ...and comes back with the id of the last event it saw.
    let mut second = app
        .client
        .get(app.url("/events/stream"))
        .header("Last-Event-ID", &last_id)
        .send()
        .await?;
    let part2 = read_sse(&mut second, TOTAL - 100).await?;

    let written = writer.await??;
    let received: Vec<String> = part1
        .iter()
        .chain(part2.iter())
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(received, written, "every event once, in read order");
    let distinct: HashSet<&String> = received.iter().collect();
    assert_eq!(distinct.len(), TOTAL);
    assert_eq!(part2[0].1["cursor"], json!(part2[0].0));
    Ok(())
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn exporting_100k_events_streams_without_holding_the_log_in_memory(
    pool: PgPool,
) -> anyhow::Result<()> {
    const EVENTS: i64 = 100_000;
    // About 1 KiB per event: 100 MiB of NDJSON, far more than the allowance below.
    sqlx::query(
        "INSERT INTO events (stream_id, stream_type, version, event_type, schema_version, payload, actor, correlation_id) \
         SELECT md5((g / 10)::text)::uuid, 'renewal', g % 10 + 1, 'Tick', 1, jsonb_build_object('i', g, 'pad', repeat('x', 1000)), 'loader', gen_random_uuid() \
         FROM generate_series(0, $1 - 1) g",
    )
    .bind(EVENTS)
    .execute(&pool)
    .await?;
    // The sealer would hash the same 100 MiB meanwhile, in this process: measure the export alone.
    let app = spawn_app_with(
        pool,
        Options {
            sealer: false,
            ..Options::default()
        },
    )
    .await?;
    let before = rss_mib();
    let mut response = app
        .client
        .get(app.url("/events/export"))
        .query(&[("stream_type", "renewal")])
        .send()
        .await?;
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let (mut lines, mut bytes, mut peak) = (0usize, 0usize, before);
    let mut tail = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
        tail = chunk.to_vec();
        peak = peak.max(rss_mib());
    }
    assert_eq!(lines, EVENTS as usize);
    assert!(bytes > 100_000_000, "exported {bytes} bytes");
    assert!(
        peak - before < 40.0,
        "memory grew by {:.1} MiB while exporting {bytes} bytes",
        peak - before
    );
    let last_line = String::from_utf8_lossy(&tail);
    let last: Value =
        serde_json::from_str(last_line.trim_end().rsplit('\n').next().unwrap_or_default())?;
    assert_eq!(last["version"], 10);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn every_error_is_a_problem_document_with_a_stable_code(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool.clone()).await?;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (app.client.get(app.url("/nope")), 404, "route_not_found"),
        (
            app.client.post(app.url("/health")),
            405,
            "method_not_allowed",
        ),
        (
            app.client.delete(app.url("/events")),
            405,
            "method_not_allowed",
        ),
        (
            app.client.get(app.url("/events")).query(&[("after", "x")]),
            400,
            "invalid_cursor",
        ),
        (
            app.client
                .get(app.url("/events"))
                .query(&[("limit", "100000")]),
            400,
            "bad_query",
        ),
        (
            app.client
                .get(app.url("/events"))
                .query(&[("from", "yesterday")]),
            400,
            "bad_query",
        ),
        (
            app.client
                .get(app.url("/events/stream"))
                .header("Last-Event-ID", "garbage"),
            400,
            "invalid_cursor",
        ),
        (
            app.client
                .get(app.url("/events/export"))
                .query(&[("until", "1-")]),
            400,
            "invalid_cursor",
        ),
    ];
    for (request, status, code) in cases {
        let response = request.send().await?;
        let url = response.url().to_string();
        assert_eq!(response.status().as_u16(), status, "{url}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{url}"
        );
        assert!(response.headers().contains_key("x-request-id"), "{url}");
        let body: Value = response.json().await?;
        assert_eq!(
            (body["status"].as_u64(), body["code"].as_str()),
            (Some(u64::from(status)), Some(code)),
            "{url}"
        );
    }

    // A handler that outlives the request timeout is answered, not left hanging: here a query
    // waits for a read model that is not running.
    let impatient = spawn_app_with(
        pool,
        Options {
            projectors: false,
            request_timeout: Duration::from_millis(200),
            read_wait: Duration::from_secs(30),
            ..Options::default()
        },
    )
    .await?;
    let cursor = append(&impatient, Uuid::new_v4(), "renewal", "Tick", "w").await?;
    let response = impatient
        .client
        .get(impatient.url("/streams"))
        .query(&[("min_cursor", cursor.to_string())])
        .send()
        .await?;
    assert_eq!(response.status(), 503);
    assert_eq!(response.json::<Value>().await?["code"], "timeout");
    Ok(())
}
