//! Credentials and renewals end to end: over HTTP against a real PostgreSQL.

use std::sync::Arc;

use caseledger_tests::{npi, spawn_app, spawn_app_with, Options, TestApp};
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use commands::ManualClock;
use domain::user::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

async fn created(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "expected 201, got {status}: {body}"
    );
    Ok(body)
}

fn id_of(body: &Value) -> anyhow::Result<Uuid> {
    Ok(body["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no id in {body}"))?
        .parse()?)
}

async fn register_physician(
    client: &reqwest::Client,
    app: &TestApp,
    n: u32,
) -> anyhow::Result<Uuid> {
    let body = created(
        client
            .post(app.url("/physicians"))
            .json(&json!({
                "npi": npi(n), "name": format!("Dr. Test {n}"), "email": format!("doc{n}@example.org"),
                "specialty": "Family Medicine", "states": ["TX"]
            }))
            .send()
            .await?,
    )
    .await?;
    id_of(&body)
}

async fn register_credential(
    client: &reqwest::Client,
    app: &TestApp,
    physician_id: Uuid,
    kind: &str,
    number: &str,
    expiry: NaiveDate,
) -> anyhow::Result<Uuid> {
    let body = created(
        client
            .post(app.url("/credentials"))
            .json(&json!({
                "physician_id": physician_id, "kind": kind, "jurisdiction": "TX",
                "number": number, "expiry": expiry
            }))
            .send()
            .await?,
    )
    .await?;
    id_of(&body)
}

async fn problem(response: reqwest::Response) -> anyhow::Result<(StatusCode, Value)> {
    let status = response.status();
    Ok((status, response.json().await?))
}

/// Events of one stream, as the auditors' route shows them.
async fn history(app: &TestApp, stream: Uuid) -> anyhow::Result<Vec<Value>> {
    let body: Value = app
        .client
        .get(app.url(&format!("/streams/{stream}/events")))
        .send()
        .await?
        .json()
        .await?;
    body.as_array()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("not a list of events: {body}"))
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_dea_renewal_walks_from_initiation_to_approval_with_an_audit_trail(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let staff = TestApp::client_with(&app.token_for("sam", Role::Staff).await?)?;
    let physician = register_physician(&staff, &app, 1).await?;
    // A CSR in the same state puts "verify state CSR" on the DEA checklist.
    register_credential(
        &staff,
        &app,
        physician,
        "csr",
        "CSR-1",
        today() + Duration::days(300),
    )
    .await?;
    let expiry = today() + Duration::days(45);
    let dea = register_credential(&staff, &app, physician, "dea", "BT1234563", expiry).await?;
    // Whether the physician holds that CSR is read from the read model.
    app.settle().await?;

    // Initiate, reading our own write through the read model.
    let opened = created(
        staff
            .post(app.url("/renewals"))
            .json(&json!({"credential_id": dea}))
            .send()
            .await?,
    )
    .await?;
    let renewal = id_of(&opened)?;
    let cursor = opened["cursor"].as_str().unwrap_or_default().to_owned();
    let checklist: Value = staff
        .get(app.url(&format!("/renewals/{renewal}/checklist")))
        .query(&[("min_cursor", &cursor)])
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(checklist["status"], "not_started");
    let items: Vec<(String, bool)> = checklist["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i["key"].as_str().unwrap_or("").to_owned(),
                        i["required"] == true,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        items.iter().any(|(k, _)| k == "state_csr_current"),
        "{items:?}"
    );
    assert!(items.iter().any(|(k, _)| k == "dea_form_224a"), "{items:?}");

    // Filing with items open is refused, naming them, and appends nothing.
    let early = staff
        .post(app.url(&format!("/renewals/{renewal}/status")))
        .json(&json!({"status": "filed"}))
        .send()
        .await?;
    let (status, body) = problem(early).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "transition_refused", "{body}");
    assert_eq!(body["current_status"], "not_started");

    for (key, required) in &items {
        if !required {
            continue;
        }
        let done = staff
            .post(app.url(&format!("/renewals/{renewal}/checklist/{key}/complete")))
            .send()
            .await?;
        assert_eq!(done.status(), StatusCode::OK, "completing {key}");
    }
    for step in ["filed", "under_review"] {
        let moved = staff
            .post(app.url(&format!("/renewals/{renewal}/status")))
            .json(&json!({"status": step}))
            .send()
            .await?;
        assert_eq!(moved.status(), StatusCode::OK, "moving to {step}");
    }
    let new_expiry = expiry + Duration::days(3 * 365);
    let approved: Value = staff
        .post(app.url(&format!("/renewals/{renewal}/status")))
        .json(&json!({"status": "approved", "new_expiry": new_expiry}))
        .send()
        .await?
        .json()
        .await?;
    let cursor = approved["cursor"].as_str().unwrap_or_default().to_owned();

    // The credential carries the new expiry and has no open renewal.
    let credential: Value = staff
        .get(app.url(&format!("/credentials/{dea}")))
        .query(&[("min_cursor", &cursor)])
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(credential["expiry"], json!(new_expiry));
    assert_eq!(credential["open_renewal_id"], Value::Null);

    let detail: Value = staff
        .get(app.url(&format!("/renewals/{renewal}")))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(detail["status"], "approved");
    assert_eq!(detail["progress"], 100);
    assert_eq!(detail["next_action"], Value::Null);
    assert!(detail["timeline"]["filed_at"].is_string(), "{detail}");

    let stats: Value = staff
        .get(app.url("/renewals/statistics"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(stats["by_status"]["approved"], 1, "{stats}");
    assert_eq!(stats["open"], 0, "{stats}");

    // The audit trail: every step of the renewal by the staff member, and the credential's
    // renewal recorded in the same transaction as the approval.
    let events = history(&app, renewal).await?;
    let types: Vec<&str> = events
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert_eq!(types.first(), Some(&"RenewalInitiated"));
    assert_eq!(types.last(), Some(&"RenewalApproved"));
    assert!(
        events.iter().all(|e| e["metadata"]["actor"] == "user:sam"),
        "{events:?}"
    );
    let credential_events = history(&app, dea).await?;
    let renewed = credential_events
        .iter()
        .find(|e| e["event_type"] == "CredentialRenewed")
        .ok_or_else(|| anyhow::anyhow!("no CredentialRenewed in {credential_events:?}"))?;
    let approval = events.last().cloned().unwrap_or_default();
    assert_eq!(renewed["payload"]["expiry"], json!(new_expiry));
    // A cursor is "transaction-position": both events were written by one transaction.
    let transaction = |e: &Value| {
        e["cursor"]
            .as_str()
            .and_then(|c| c.split('-').next())
            .map(str::to_owned)
    };
    assert!(transaction(renewed).is_some());
    assert_eq!(
        transaction(renewed),
        transaction(&approval),
        "one transaction"
    );

    // Auditors see the renewal as it was before it was filed.
    let auditor = TestApp::client_with(&app.token_for("ada", Role::Auditor).await?)?;
    let filed_version = types.iter().position(|t| *t == "RenewalFiled").unwrap_or(0);
    let before: Value = auditor
        .get(app.url(&format!("/renewals/{renewal}/state")))
        .query(&[("as_of_version", filed_version.to_string())])
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(before["status"], "in_progress", "{before}");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn eight_concurrent_initiations_for_one_credential_open_exactly_one_renewal(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let physician = register_physician(&app.client, &app, 2).await?;
    let credential = register_credential(
        &app.client,
        &app,
        physician,
        "license",
        "L-2",
        today() + Duration::days(60),
    )
    .await?;
    let requests = (0..8).map(|_| {
        app.client
            .post(app.url("/renewals"))
            .json(&json!({"credential_id": credential}))
            .send()
    });
    let responses = futures_util::future::join_all(requests).await;
    let mut opened = Vec::new();
    let mut refused = 0;
    for response in responses {
        let (status, body) = problem(response?).await?;
        match status {
            StatusCode::CREATED => opened.push(id_of(&body)?),
            StatusCode::CONFLICT => {
                assert_eq!(body["code"], "renewal_already_open", "{body}");
                refused += 1;
            }
            other => anyhow::bail!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((opened.len(), refused), (1, 7));
    let opened_events = history(&app, credential)
        .await?
        .into_iter()
        .filter(|e| e["event_type"] == "RenewalOpened")
        .count();
    assert_eq!(opened_events, 1);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn resending_an_initiation_with_its_renewal_id_returns_the_same_renewal(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let physician = register_physician(&app.client, &app, 3).await?;
    let credential = register_credential(
        &app.client,
        &app,
        physician,
        "csr",
        "C-3",
        today() + Duration::days(60),
    )
    .await?;
    let renewal_id = Uuid::new_v4();
    let body = json!({"credential_id": credential, "renewal_id": renewal_id});
    let first = app
        .client
        .post(app.url("/renewals"))
        .json(&body)
        .send()
        .await?;
    assert_eq!(first.status(), StatusCode::CREATED);
    let again = app
        .client
        .post(app.url("/renewals"))
        .json(&body)
        .send()
        .await?;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(id_of(&again.json().await?)?, renewal_id);
    assert_eq!(history(&app, renewal_id).await?.len(), 1);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn two_concurrent_scans_open_one_renewal_per_due_credential(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let physician = register_physician(&app.client, &app, 4).await?;
    let mut due = Vec::new();
    for i in 0..12 {
        due.push(
            register_credential(
                &app.client,
                &app,
                physician,
                "license",
                &format!("D-{i}"),
                today() + Duration::days(10 + i),
            )
            .await?,
        );
    }
    // Not due: too far out, or already expired.
    register_credential(
        &app.client,
        &app,
        physician,
        "license",
        "FAR",
        today() + Duration::days(200),
    )
    .await?;
    register_credential(
        &app.client,
        &app,
        physician,
        "license",
        "PAST",
        today() - Duration::days(3),
    )
    .await?;
    app.settle().await?;

    // The aggregates alone keep renewals unique: two scans running at once, bypassing the
    // runner's one-run-at-a-time lock.
    let scan = commands::jobs::RenewalScan {
        credentialing: app.state.credentialing.clone(),
        pool: app.store.pool().clone(),
    };
    let now = Utc::now();
    let (a, b) = tokio::join!(scan.scan(now), scan.scan(now));
    let (a, b) = (a?, b?);
    assert_eq!(a.opened + b.opened, 12, "{a:?} {b:?}");
    assert_eq!(a.failed + b.failed, 0, "{a:?} {b:?}");
    for credential in &due {
        let opened = history(&app, *credential)
            .await?
            .into_iter()
            .filter(|e| e["event_type"] == "RenewalOpened")
            .count();
        assert_eq!(opened, 1, "credential {credential}");
    }

    // A later run, through the runner and over HTTP, finds nothing left to open.
    app.settle().await?;
    let run: Value = app
        .client
        .post(app.url("/renewals/scan"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["result"]["opened"], 0, "{run}");
    assert_eq!(run["result"]["skipped"], 12, "{run}");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn bad_input_is_refused_naming_what_was_wrong_and_appends_nothing(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let physician = register_physician(&app.client, &app, 5).await?;
    let credential = register_credential(
        &app.client,
        &app,
        physician,
        "dea",
        "B-5",
        today() + Duration::days(60),
    )
    .await?;
    let renewal = id_of(
        &created(
            app.client
                .post(app.url("/renewals"))
                .json(&json!({"credential_id": credential}))
                .send()
                .await?,
        )
        .await?,
    )?;
    let before = app.store.head().await?;

    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            "npi",
            app.client.post(app.url("/physicians")).json(&json!({
                "npi": "1234567890", "name": "X", "email": "x@example.org", "specialty": "S", "states": ["TX"]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "kind",
            app.client.post(app.url("/credentials")).json(&json!({
                "physician_id": physician, "kind": "passport", "jurisdiction": "TX", "number": "N", "expiry": "2027-01-01"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "jurisdiction",
            app.client.post(app.url("/credentials")).json(&json!({
                "physician_id": physician, "kind": "license", "jurisdiction": "XX", "number": "N", "expiry": "2027-01-01"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "expiry",
            app.client.post(app.url("/credentials")).json(&json!({
                "physician_id": physician, "kind": "license", "jurisdiction": "TX", "number": "N", "expiry": "next spring"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "name",
            app.client.post(app.url("/physicians")).json(&json!({
                "npi": npi(50), "name": "A\u{0}B", "email": "x@example.org", "specialty": "S", "states": ["TX"]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "expiry",
            app.client.post(app.url("/credentials")).json(&json!({
                "physician_id": physician, "kind": "license", "jurisdiction": "TX", "number": "N", "expiry": "-5000-01-01"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_date",
        ),
        (
            "credential",
            app.client.post(app.url("/renewals")).json(&json!({"credential_id": physician})),
            StatusCode::NOT_FOUND,
            "credential_not_found",
        ),
        (
            "physician_id",
            app.client.post(app.url("/credentials")).json(&json!({
                "physician_id": Uuid::new_v4(), "kind": "license", "jurisdiction": "TX", "number": "N", "expiry": "2027-01-01"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_physician",
        ),
        (
            "item",
            app.client.post(app.url(&format!("/renewals/{renewal}/checklist/fly_to_the_moon/complete"))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_checklist_item",
        ),
        (
            "not_started",
            app.client.post(app.url(&format!("/renewals/{renewal}/status"))).json(&json!({"status": "approved"})),
            StatusCode::CONFLICT,
            "transition_refused",
        ),
        (
            "status",
            app.client.post(app.url(&format!("/renewals/{renewal}/status"))).json(&json!({"status": "done"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "renewal",
            app.client.post(app.url(&format!("/renewals/{}/status", Uuid::new_v4()))).json(&json!({"status": "filed"})),
            StatusCode::NOT_FOUND,
            "renewal_not_found",
        ),
    ];
    for (named, request, status, code) in cases {
        let (got, body) = problem(request.send().await?).await?;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{named}: {body}"
        );
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(named), "{named} not named in {detail:?}");
    }
    assert_eq!(app.store.head().await?, before, "nothing was appended");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_expiry_job_expires_open_renewals_once_their_credential_has_expired(
    pool: PgPool,
) -> anyhow::Result<()> {
    let start = Utc
        .with_ymd_and_hms(2027, 3, 1, 9, 0, 0)
        .single()
        .ok_or_else(|| anyhow::anyhow!("date"))?;
    let clock = ManualClock::at(start);
    let app = spawn_app_with(
        pool,
        Options {
            clock: Some(Arc::new(clock.clone())),
            ..Options::default()
        },
    )
    .await?;
    let physician = register_physician(&app.client, &app, 6).await?;
    let expiry = start.date_naive() + Duration::days(10);
    let credential =
        register_credential(&app.client, &app, physician, "license", "E-6", expiry).await?;
    let renewal = id_of(
        &created(
            app.client
                .post(app.url("/renewals"))
                .json(&json!({"credential_id": credential}))
                .send()
                .await?,
        )
        .await?,
    )?;
    app.settle().await?;
    app.state.jobs.register().await?;

    // On the expiry date the credential is still valid: nothing expires.
    clock.set(start + Duration::days(10));
    let run = app.state.jobs.run_now("renewal-expiry", "test").await?;
    assert_eq!(
        run.result.as_ref().map(|r| r["expired"].clone()),
        Some(json!(0))
    );

    clock.set(start + Duration::days(11));
    let run = app.state.jobs.run_now("renewal-expiry", "test").await?;
    assert_eq!(run.status, "succeeded");
    assert_eq!(
        run.result.as_ref().map(|r| r["expired"].clone()),
        Some(json!(1)),
        "{run:?}"
    );
    app.settle().await?;
    let row = projections::credentialing::renewal(app.store.pool(), renewal)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    assert_eq!(row.status, "expired");
    assert_eq!(
        row.next_action.as_deref(),
        Some("Credential has expired - immediate action required")
    );
    // The credential's slot is free again, but an expired credential cannot open a renewal.
    let again = app
        .state
        .credentialing
        .initiate_renewal(
            credential,
            Uuid::new_v4(),
            domain::renewal::Origin::Manual,
            &eventstore::Metadata::by("test"),
        )
        .await;
    assert!(
        matches!(
            again,
            Err(commands::CommandError::Rejected(
                commands::credentialing::CredentialingRefusal::Credential(
                    domain::credential::CredentialError::AlreadyExpired { .. }
                )
            ))
        ),
        "{again:?}"
    );
    // Running it again expires nothing twice.
    let run = app.state.jobs.run_now("renewal-expiry", "test").await?;
    assert_eq!(
        run.result.as_ref().map(|r| r["expired"].clone()),
        Some(json!(0))
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_scheduler_runs_due_jobs_once_per_slot_and_skips_paused_ones(
    pool: PgPool,
) -> anyhow::Result<()> {
    let start = Utc
        .with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
        .single()
        .ok_or_else(|| anyhow::anyhow!("date"))?;
    let clock = ManualClock::at(start);
    let app = spawn_app_with(
        pool,
        Options {
            clock: Some(Arc::new(clock.clone())),
            ..Options::default()
        },
    )
    .await?;
    let jobs = &app.state.jobs;
    jobs.register().await?;
    // Both are due at once on a new database; two schedulers ticking together run each once.
    let other = jobs.clone();
    let (a, b) = tokio::join!(jobs.tick(), other.tick());
    let mut ran: Vec<String> = a?.into_iter().chain(b?).map(|r| r.job).collect();
    ran.sort();
    assert_eq!(
        ran,
        vec![
            "audit-checkpoint",
            "audit-verify",
            "notification-check",
            "notification-dispatch",
            "notification-retention",
            "renewal-expiry",
            "renewal-scan",
            "sla-escalation"
        ]
    );
    assert!(jobs.tick().await?.is_empty(), "nothing is due again yet");

    // An hour later only the hourly and five-minute jobs are due; a paused scan is skipped
    // when due.
    clock.advance(Duration::hours(1));
    let mut ran: Vec<String> = jobs.tick().await?.into_iter().map(|r| r.job).collect();
    ran.sort();
    assert_eq!(
        ran,
        vec![
            "audit-checkpoint",
            "notification-dispatch",
            "renewal-expiry",
            "sla-escalation"
        ]
    );
    let paused = app
        .client
        .post(app.url("/jobs/renewal-scan/pause"))
        .send()
        .await?;
    assert_eq!(paused.status(), StatusCode::NO_CONTENT);
    clock.advance(Duration::hours(6));
    let mut ran: Vec<String> = jobs.tick().await?.into_iter().map(|r| r.job).collect();
    ran.sort();
    assert_eq!(
        ran,
        vec![
            "audit-checkpoint",
            "notification-dispatch",
            "renewal-expiry",
            "sla-escalation"
        ]
    );

    let status: Value = app
        .client
        .get(app.url("/jobs"))
        .send()
        .await?
        .json()
        .await?;
    let scan = status["jobs"]
        .as_array()
        .and_then(|j| j.iter().find(|j| j["name"] == "renewal-scan"))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no renewal-scan in {status}"))?;
    assert_eq!(scan["paused"], true);
    assert_eq!(scan["last_run"]["status"], "succeeded");
    assert_eq!(scan["last_run"]["trigger"], "schedule");

    // Run now works while paused; an unknown job is a 404.
    let run = app
        .client
        .post(app.url("/jobs/renewal-scan/run"))
        .send()
        .await?;
    assert_eq!(run.status(), StatusCode::OK);
    let (status, body) = problem(app.client.post(app.url("/jobs/nope/run")).send().await?).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_job"))
    );
    let runs: Value = app
        .client
        .get(app.url("/jobs/renewal-scan/runs"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(runs.as_array().map(Vec::len), Some(2));
    Ok(())
}
