//! Work queues end to end, over HTTP: an admin sets up a department, a queue and grants; tasks
//! are created, claimed next, delegated and completed; the SLA report reads the outcome. Bad
//! input is refused with a problem naming what was wrong, and appends nothing.

use std::sync::Arc;

use caseledger_tests::{spawn_app_with, Options, TestApp};
use chrono::{DateTime, Duration, Utc};
use commands::ManualClock;
use domain::user::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
    let response = request.send().await?;
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

async fn created(app: &TestApp, path: &str, body: Value) -> anyhow::Result<String> {
    let (status, body) = send(app.client.post(app.url(path)).json(&body)).await?;
    anyhow::ensure!(status == StatusCode::CREATED, "{path}: {status} {body}");
    Ok(body["id"]
        .as_str()
        .or(body["task_id"].as_str())
        .unwrap_or_default()
        .to_owned())
}

/// The department and a pull queue (2 tasks per person; priority 5 due in 60 minutes,
/// priority 3 in 120, priority 2 in 240).
async fn setup_queue(app: &TestApp) -> anyhow::Result<String> {
    let department = created(
        app,
        "/departments",
        json!({"code": "cred", "name": "Credentialing"}),
    )
    .await?;
    created(
        app,
        "/queues",
        json!({
            "name": "Licence review", "department_id": department,
            "capacity": {"per_user": 2},
            "sla_minutes": {"1": 480, "2": 240, "3": 120, "4": 90, "5": 60},
            "groups": ["dea", "license"]
        }),
    )
    .await
}

async fn grant(app: &TestApp, queue: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
    send(
        app.client
            .post(app.url(&format!("/queues/{queue}/grants")))
            .json(&body),
    )
    .await
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_task_is_claimed_next_delegated_completed_and_reported(
    pool: PgPool,
) -> anyhow::Result<()> {
    let clock = ManualClock::at(t0());
    let app = spawn_app_with(
        pool,
        Options {
            clock: Some(Arc::new(clock.clone())),
            ..Options::default()
        },
    )
    .await?;
    let queue = setup_queue(&app).await?;
    let lee = TestApp::client_with(&app.token_for("lee", Role::Staff).await?)?;
    let sam = TestApp::client_with(&app.token_for("sam", Role::Staff).await?)?;
    let pat = TestApp::client_with(&app.token_for("pat", Role::Staff).await?)?;
    for (user, role, skills) in [
        ("lee", "lead", json!(["dea", "license"])),
        ("sam", "member", json!(["dea"])),
        ("pat", "member", json!(["dea", "license"])),
    ] {
        let (status, body) = grant(
            &app,
            &queue,
            json!({"username": user, "role": role, "skills": skills}),
        )
        .await?;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    let task = |title: &str, priority: i64, groups: Value| {
        json!({"queue_id": queue, "title": title, "priority": priority, "groups": groups,
               "payload": {"npi": "1234567893"}})
    };
    // Stays open and becomes overdue: one of the report's breaches.
    created(&app, "/tasks", task("Routine DEA check", 2, json!(["dea"]))).await?;
    let urgent = created(&app, "/tasks", task("Urgent DEA lapse", 5, json!(["dea"]))).await?;
    let licence = created(
        &app,
        "/tasks",
        task("Licence verification", 3, json!(["license"])),
    )
    .await?;

    // sam claims next: the most urgent task he may work. A retry with the same key gets the
    // same task and writes nothing.
    clock.advance(Duration::minutes(10));
    let claim_next = |client: &reqwest::Client, key: &str| {
        client
            .post(app.url("/tasks/claim-next"))
            .header("idempotency-key", key)
    };
    let (status, first) = send(claim_next(&sam, "sam-1")).await?;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["task_id"], json!(urgent));
    assert_eq!(first["claimant"], json!("sam"));
    let head = app.store.head().await?;
    let (status, again) = send(claim_next(&sam, "sam-1")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (again["task_id"].clone(), again["replayed"].clone()),
        (json!(urgent), json!(true))
    );
    assert_eq!(
        app.store.head().await?,
        head,
        "a replayed claim writes nothing"
    );
    for field in ["version", "cursor", "status", "claimant"] {
        assert_eq!(
            again[field], first[field],
            "a replay answers as the claim did: {field}"
        );
    }

    // Someone else's claimed task cannot be claimed, and the refusal says who has it.
    let (status, problem) = send(pat.post(app.url(&format!("/tasks/{urgent}/claim")))).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["code"], "task_already_claimed");
    assert_eq!(problem["claimed_by"], "sam");

    // A member may not delegate; the lead may, with a reason.
    let delegate = json!({"to": "pat", "reason": "sam is out this afternoon"});
    let (status, problem) = send(
        sam.post(app.url(&format!("/tasks/{urgent}/reassign")))
            .json(&delegate),
    )
    .await?;
    assert_eq!(
        (status, problem["code"].clone()),
        (StatusCode::FORBIDDEN, json!("not_lead_or_admin"))
    );
    clock.advance(Duration::minutes(5));
    let (status, handed) = send(
        lee.post(app.url(&format!("/tasks/{urgent}/reassign")))
            .json(&delegate),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{handed}");
    assert_eq!(handed["claimant"], "pat");

    // sam's copy is stale now: his completion is refused, and so would be anyone's but pat's.
    let head = app.store.head().await?;
    let (status, problem) = send(
        sam.post(app.url(&format!("/tasks/{urgent}/complete")))
            .json(&json!({"outcome": "renewed", "expected_version": first["version"]})),
    )
    .await?;
    assert_eq!(
        (status, problem["code"].clone()),
        (StatusCode::CONFLICT, json!("stale_version"))
    );
    assert_eq!(problem["current_version"], handed["version"]);
    let (status, problem) = send(
        sam.post(app.url(&format!("/tasks/{urgent}/complete")))
            .json(&json!({"outcome": "renewed", "expected_version": handed["version"]})),
    )
    .await?;
    assert_eq!(
        (status, problem["code"].clone()),
        (StatusCode::FORBIDDEN, json!("not_claimant"))
    );
    assert_eq!(problem["claimed_by"], "pat");
    assert_eq!(app.store.head().await?, head, "refusals append nothing");

    // pat completes it within its hour.
    clock.advance(Duration::minutes(20));
    let (status, done) = send(
        pat.post(app.url(&format!("/tasks/{urgent}/complete")))
            .json(&json!({"outcome": "renewed", "note": "confirmed with the DEA", "expected_version": handed["version"]})),
    )
    .await?;
    assert_eq!(
        (status, done["status"].clone()),
        (StatusCode::OK, json!("completed")),
        "{done}"
    );

    // pat claims next: the licence check (priority 3) before the routine one (2); it is
    // completed late (due 120 minutes after creation).
    let (status, next) = send(claim_next(&pat, "pat-1")).await?;
    assert_eq!(
        (status, next["task_id"].clone()),
        (StatusCode::OK, json!(licence))
    );
    clock.advance(Duration::minutes(200));
    let (status, _) = send(
        pat.post(app.url(&format!("/tasks/{licence}/complete")))
            .json(&json!({"outcome": "verified", "expected_version": next["version"]})),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);

    // The SLA report: 2 completed, 1 within its SLA; the late one and the routine task (open
    // and overdue by now) are breaches. Claimed 10 and 35 minutes after creation; completed 35
    // and 235 minutes after.
    app.settle().await?;
    let (status, report) = send(app.client.get(app.url(&format!(
                "/queues/{queue}/sla-report?from={}&to={}",
                (t0() - Duration::hours(1))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    .replace('+', "%2B"),
                (t0() + Duration::days(1))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    .replace('+', "%2B"),
            ))))
    .await?;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["completed"], 2);
    assert_eq!(report["within_sla"], 1);
    assert_eq!(report["within_sla_pct"].as_f64(), Some(50.0));
    assert!(report["breaches"].as_i64() >= Some(1), "{report}");
    assert_eq!(
        report["time_to_claim_secs"]["avg"].as_f64(),
        Some(22.5 * 60.0),
        "{report}"
    );
    assert_eq!(
        report["time_to_complete_secs"]["avg"].as_f64(),
        Some(135.0 * 60.0),
        "{report}"
    );
    // A resent creation answers as the creation did (last, so that the report above does not
    // count the task).
    let create_once = || {
        app.client
            .post(app.url("/tasks"))
            .header("idempotency-key", "intake-77")
            .json(&task("Board certification", 1, json!([])))
    };
    let (status, made) = send(create_once()).await?;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    // The task moves on before the resend; the resend still answers as the creation did.
    let cancel = format!(
        "/tasks/{}/cancel",
        made["task_id"].as_str().unwrap_or_default()
    );
    let (status, cancelled) = send(
        app.client
            .post(app.url(&cancel))
            .json(&json!({"reason": "duplicate"})),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    let (status, resent) = send(create_once()).await?;
    assert_eq!(
        (status, resent["replayed"].clone()),
        (StatusCode::OK, json!(true))
    );
    for field in ["task_id", "version", "cursor", "status", "claimant"] {
        assert_eq!(resent[field], made[field], "a resent creation: {field}");
    }
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn bad_work_queue_input_is_refused_by_name_and_appends_nothing(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app_with(pool, Options::default()).await?;
    let queue = setup_queue(&app).await?;
    app.token_for("sam", Role::Staff).await?;
    let head = app.store.head().await?;

    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "/tasks",
            json!({"queue_id": queue, "title": "x", "priority": 9}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "/tasks",
            json!({"queue_id": uuid::Uuid::new_v4(), "title": "x", "priority": 3}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_queue",
        ),
        (
            "/tasks",
            json!({"queue_id": queue, "title": "x", "priority": 3, "groups": ["surgery"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_group",
        ),
        (
            "/tasks",
            json!({"queue_id": queue, "title": "x", "priority": 3, "payload": [1, 2]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
    ];
    for (path, body, expected_status, expected_code) in cases {
        let (status, problem) = send(app.client.post(app.url(path)).json(&body)).await?;
        assert_eq!(
            (status, problem["code"].as_str()),
            (expected_status, Some(expected_code)),
            "{body}: {problem}"
        );
    }
    let (_, problem) = send(
        app.client
            .post(app.url("/tasks"))
            .json(&json!({"queue_id": queue, "title": "x", "priority": 0})),
    )
    .await?;
    assert_eq!(problem["field"], "priority");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("1 (lowest) to 5"),
        "{problem}"
    );

    let window = json!({"username": "sam", "role": "member",
        "valid_from": "2030-01-02T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z"});
    let (status, problem) = grant(&app, &queue, window).await?;
    assert_eq!(
        (status, problem["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_grant_window")
        ),
        "{problem}"
    );
    let ancient =
        json!({"username": "sam", "role": "member", "valid_from": "-5000-01-01T00:00:00Z"});
    let (status, problem) = grant(&app, &queue, ancient).await?;
    assert_eq!(
        (status, problem["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("valid_from")),
        "{problem}"
    );
    let huge = json!({"name": "Huge", "department_id": uuid::Uuid::new_v4(),
        "capacity": {"per_user": 5, "total": 3_000_000_000_u64}});
    let (status, problem) = send(app.client.post(app.url("/queues")).json(&huge)).await?;
    assert_eq!(
        (status, problem["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("capacity.total")),
        "{problem}"
    );
    let (status, problem) = send(
        app.client
            .post(app.url("/tasks/claim-next"))
            .json(&json!({"queue_ids": []})),
    )
    .await?;
    assert_eq!(
        (status, problem["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("queue_ids")),
        "{problem}"
    );
    let (status, problem) = grant(
        &app,
        &queue,
        json!({"username": "nobody", "role": "member"}),
    )
    .await?;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_user"))
    );
    let (status, problem) = grant(&app, &queue, json!({"username": "sam", "role": "boss"})).await?;
    assert_eq!(
        (status, problem["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("role"))
    );
    let (status, problem) = send(app.client.post(app.url("/tasks/claim-next"))).await?;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("no_valid_grant"))
    );
    let (status, problem) = send(
        app.client
            .post(app.url(&format!("/tasks/{}/complete", uuid::Uuid::new_v4())))
            .json(&json!({"outcome": "done", "expected_version": 1})),
    )
    .await?;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("task_not_found"))
    );

    assert_eq!(app.store.head().await?, head, "nothing was appended");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_case_passes_through_queues_and_people_and_its_routing_history_says_so(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app_with(pool, Options::default()).await?;
    let intake = setup_queue(&app).await?;
    // The department setup_queue created (its id follows from its code).
    let department = domain::workqueue::department::Department::stream_id("CRED").to_string();
    let legal = created(
        &app,
        "/queues",
        json!({"name": "Legal review", "department_id": department, "capacity": {"per_user": 5}}),
    )
    .await?;
    let sam = TestApp::client_with(&app.token_for("sam", Role::Staff).await?)?;
    grant(
        &app,
        &intake,
        json!({"username": "sam", "role": "member", "skills": ["dea"]}),
    )
    .await?;

    let case = created(
        &app,
        "/cases",
        json!({"number": "case-2026-0042", "subject": "Lapsed DEA registration",
               "allegations": ["prescribing while lapsed"], "queue_id": intake}),
    )
    .await?;
    let (status, problem) = send(app.client.post(app.url("/cases")).json(&json!({
        "number": "CASE-2026-0042", "subject": "again"})))
    .await?;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("case_number_taken"))
    );

    // A task for the case, claimed and held: the case cannot close while it is unfinished.
    let task = created(
        &app,
        "/tasks",
        json!({"queue_id": intake, "title": "Check DEA status", "priority": 4, "groups": ["dea"], "case_id": case}),
    )
    .await?;
    let (status, claimed) = send(sam.post(app.url(&format!("/tasks/{task}/claim")))).await?;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    let (status, problem) = send(
        app.client
            .post(app.url(&format!("/cases/{case}/close")))
            .json(&json!({"resolution": "resolved"})),
    )
    .await?;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("case_has_unfinished_tasks"))
    );

    // Routed to legal and assigned to sam, each with a reason.
    let (status, _) = send(
        app.client
            .post(app.url(&format!("/cases/{case}/route")))
            .json(&json!({"queue_id": legal, "reason": "possible violation"})),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, problem) = send(
        app.client
            .post(app.url(&format!("/cases/{case}/assign")))
            .json(&json!({"to": "nobody", "reason": "x"})),
    )
    .await?;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_user"))
    );
    let (status, _) = send(
        app.client
            .post(app.url(&format!("/cases/{case}/assign")))
            .json(&json!({"to": "sam", "reason": "knows the physician"})),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);

    let (status, done) =
        send(sam.post(app.url(&format!("/tasks/{task}/complete"))).json(
            &json!({"outcome": "registration lapsed", "expected_version": claimed["version"]}),
        ))
        .await?;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (status, closed) = send(
        app.client
            .post(app.url(&format!("/cases/{case}/close")))
            .json(&json!({"resolution": "referred to the board"})),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{closed}");
    let cursor = closed["cursor"].as_str().unwrap_or_default().to_owned();

    let (status, history) = send(
        app.client
            .get(app.url(&format!("/cases/{case}/routing?min_cursor={cursor}"))),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{history}");
    let steps: Vec<(String, Option<String>, Option<String>)> = history
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r["kind"].as_str().unwrap_or_default().to_owned(),
                        r["queue_name"].as_str().map(str::to_owned),
                        r["to_user"].as_str().map(str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        steps,
        vec![
            ("routed".to_owned(), some("Licence review"), None),
            (
                "task_claimed".to_owned(),
                some("Licence review"),
                some("sam")
            ),
            ("routed".to_owned(), some("Legal review"), None),
            ("assigned".to_owned(), some("Legal review"), some("sam")),
            ("task_completed".to_owned(), some("Licence review"), None),
        ],
        "{history}"
    );
    assert_eq!(history[2]["reason"], "possible violation");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_transaction_postgres_aborts_for_a_concurrent_one_is_a_conflict_to_retry_not_a_500(
    pool: PgPool,
) -> anyhow::Result<()> {
    // A deadlock PostgreSQL broke, and a serialization failure: what a racing command can
    // meet, raised here with their own error codes.
    for code in ["40P01", "40001"] {
        let error = sqlx::query(&format!(
            "DO $$ BEGIN RAISE EXCEPTION 'aborted' USING ERRCODE = '{code}'; END $$"
        ))
        .execute(&pool)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("{code} was not raised"))?;
        let problem =
            api::error::ApiError::Store(eventstore::StoreError::Database(error)).problem();
        assert_eq!(
            (problem.status, problem.code),
            (409, "concurrency_conflict"),
            "{code}"
        );
    }
    Ok(())
}
