//! The workflow engine end to end, over HTTP against a real PostgreSQL, with the executor
//! running and `http` steps calling a real local receiver: definitions checked at registration,
//! runs driven through their DAG (parallel middle steps, skipped branches), each recovery
//! policy, human tasks completed through the work-queue routes, version pinning, bad input
//! refused with nothing appended, and two executors sharing runs without running an attempt
//! twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::Json;
use caseledger_tests::{spawn_app_with, Options, TestApp};
use domain::user::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

// ---------------------------------------------------------------------------------------------
// A local receiver for `http` steps.

/// One call the receiver answered.
#[derive(Debug, Clone)]
struct Hit {
    behaviour: String,
    run: String,
    step: String,
    idempotency_key: String,
    started: Instant,
    ended: Instant,
}

#[derive(Clone, Default)]
struct Calls {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Calls per (run, step), for `flaky`.
    seen: Arc<Mutex<HashMap<(String, String), u32>>>,
}

/// A receiver on a random local port. Its path says how it behaves: `ok` answers at once,
/// `slow` after 400 ms, `fail` always answers 500, `flaky` fails the first two calls of each
/// (run, step) and then answers. Answers echo the step and the run's input.
struct Receiver {
    base: String,
    calls: Calls,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(calls): State<Calls>,
    Path(behaviour): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (AxumStatus, Json<Value>) {
    let started = Instant::now();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (run, step) = (header("x-caseledger-run"), header("x-caseledger-step"));
    let n = {
        let mut seen = calls.seen.lock().unwrap_or_else(|e| e.into_inner());
        let n = seen.entry((run.clone(), step.clone())).or_default();
        *n += 1;
        *n
    };
    let status = match behaviour.as_str() {
        "slow" => {
            tokio::time::sleep(Duration::from_millis(400)).await;
            AxumStatus::OK
        }
        "fail" => AxumStatus::INTERNAL_SERVER_ERROR,
        "flaky" if n <= 2 => AxumStatus::SERVICE_UNAVAILABLE,
        _ => AxumStatus::OK,
    };
    calls
        .hits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Hit {
            behaviour,
            run,
            step: step.clone(),
            idempotency_key: header("idempotency-key"),
            started,
            ended: Instant::now(),
        });
    (
        status,
        Json(json!({"step": step, "input": body["input"], "call": n})),
    )
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let calls = Calls::default();
        let router = axum::Router::new()
            .route("/{behaviour}", axum::routing::post(receive))
            .with_state(calls.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Receiver { base, calls, task })
    }

    fn url(&self, behaviour: &str) -> String {
        format!("{}/{behaviour}", self.base)
    }

    fn hits(&self) -> Vec<Hit> {
        self.calls
            .hits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn hits_of(&self, step: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.step == step).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

async fn app(pool: PgPool) -> anyhow::Result<TestApp> {
    spawn_app_with(
        pool,
        Options {
            executor: true,
            ..Options::default()
        },
    )
    .await
}

async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
    let response = request.send().await?;
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

async fn register(app: &TestApp, definition: Value) -> anyhow::Result<(StatusCode, Value)> {
    send(app.client.post(app.url("/workflows")).json(&definition)).await
}

async fn registered(app: &TestApp, definition: Value) -> anyhow::Result<u64> {
    let (status, body) = register(app, definition).await?;
    anyhow::ensure!(status == StatusCode::CREATED, "{status} {body}");
    Ok(body["version"].as_u64().unwrap_or_default())
}

async fn start(app: &TestApp, key: &str, input: Value) -> anyhow::Result<String> {
    let (status, body) = send(
        app.client
            .post(app.url(&format!("/workflows/{key}/runs")))
            .json(&json!({ "input": input })),
    )
    .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "{status} {body}");
    Ok(body["run_id"].as_str().unwrap_or_default().to_owned())
}

async fn run(app: &TestApp, run_id: &str) -> anyhow::Result<Value> {
    let (status, body) = send(app.client.get(app.url(&format!("/runs/{run_id}")))).await?;
    anyhow::ensure!(status == StatusCode::OK, "{status} {body}");
    Ok(body)
}

/// The run once `done` holds for it, or an error with the run as last seen.
async fn run_until(
    app: &TestApp,
    run_id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = run(app, run_id).await?;
        if done(&body) {
            return Ok(body);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the run never got to {what}: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_ended(app: &TestApp, run_id: &str) -> anyhow::Result<Value> {
    run_until(app, run_id, "its end", |r| r["status"] != "running").await
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["id"] == id))
        .unwrap_or(&Value::Null)
}

fn http_step(id: &str, depends_on: &[&str], url: &str) -> Value {
    json!({"id": id, "kind": "http", "depends_on": depends_on, "config": {"url": url}})
}

/// Waits until the task is cancelled (the executor withdraws tasks after the run's command).
async fn task_cancelled(app: &TestApp, task_id: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, task) = send(app.client.get(app.url(&format!("/tasks/{task_id}")))).await?;
        if task["status"] == "cancelled" {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the task was never withdrawn: {task}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every event type the run's stream holds, in order.
async fn run_events(app: &TestApp, run_id: &str) -> anyhow::Result<Vec<String>> {
    let id = uuid::Uuid::parse_str(run_id)?;
    Ok(app
        .store
        .read_stream(id, 0)
        .await?
        .into_iter()
        .map(|e| e.event_type)
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Definitions.

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_definition_with_a_cycle_an_unknown_dependency_a_duplicate_id_or_a_bad_condition_is_refused_and_nothing_is_appended(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app(pool).await?;
    let url = "http://127.0.0.1:9/ok";
    let with_steps = |steps: Value| json!({"key": "intake", "name": "Intake", "steps": steps});
    let cases = [
        (
            "a cycle",
            with_steps(json!([
                http_step("a", &[], url),
                http_step("b", &["a", "d"], url),
                http_step("c", &["b"], url),
                http_step("d", &["c"], url),
            ])),
            "workflow_cycle",
            Some(("cycle", json!(["b", "d", "c"]))),
        ),
        (
            "an unknown dependency",
            with_steps(json!([
                http_step("a", &[], url),
                http_step("b", &["zz"], url)
            ])),
            "unknown_dependency",
            Some(("missing", json!("zz"))),
        ),
        (
            "a duplicate id",
            with_steps(json!([http_step("a", &[], url), http_step("a", &[], url)])),
            "duplicate_step",
            None,
        ),
        (
            "a condition on a step that is not an ancestor",
            with_steps(json!([
                http_step("a", &[], url),
                http_step("b", &[], url),
                {"id": "c", "kind": "http", "depends_on": ["a"], "config": {"url": url},
                 "when": {"pointer": "/steps/b/output/ok", "equals": true}},
            ])),
            "invalid_condition",
            None,
        ),
        (
            "an unknown kind",
            with_steps(json!([{"id": "a", "kind": "shell", "config": {}}])),
            "unknown_step_kind",
            None,
        ),
        (
            "a bad config for its kind",
            with_steps(json!([{"id": "a", "kind": "http", "config": {"url": "ftp://x"}}])),
            "invalid_step_config",
            None,
        ),
        (
            "no steps",
            with_steps(json!([])),
            "workflow_without_steps",
            None,
        ),
    ];
    for (what, definition, code, detail) in cases {
        let head = app.store.head().await?;
        let (status, body) = register(&app, definition).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
        assert_eq!(body["code"], code, "{what}: {body}");
        assert!(
            body["pointer"].is_string(),
            "{what} names its place: {body}"
        );
        if let Some((field, value)) = detail {
            assert_eq!(body[field], value, "{what}: {body}");
        }
        assert_eq!(app.store.head().await?, head, "{what}: nothing appended");
    }
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn registering_a_key_again_makes_its_next_version_and_a_deactivated_key_starts_no_runs(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app(pool).await?;
    let receiver = Receiver::start().await?;
    let v1 = json!({"key": "onboard", "name": "Onboard", "steps": [http_step("a", &[], &receiver.url("ok"))]});
    assert_eq!(registered(&app, v1.clone()).await?, 1);
    assert_eq!(registered(&app, v1).await?, 2);
    let (status, latest) = send(app.client.get(app.url("/workflows/onboard"))).await?;
    assert_eq!(status, StatusCode::OK, "{latest}");
    assert_eq!(
        (latest["version"].clone(), latest["latest_version"].clone()),
        (json!(2), json!(2))
    );
    let (status, first) = send(app.client.get(app.url("/workflows/onboard?version=1"))).await?;
    assert_eq!(
        (status, first["version"].clone()),
        (StatusCode::OK, json!(1))
    );
    let (status, missing) = send(app.client.get(app.url("/workflows/onboard?version=3"))).await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    assert_eq!(missing["code"], "workflow_version_not_found");

    let (status, body) = send(app.client.post(app.url("/workflows/onboard/deactivate"))).await?;
    assert_eq!(
        (status, body["active"].clone()),
        (StatusCode::OK, json!(false)),
        "{body}"
    );
    let head = app.store.head().await?;
    let (status, refused) = send(
        app.client
            .post(app.url("/workflows/onboard/runs"))
            .json(&json!({"input": {}})),
    )
    .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["code"], "workflow_inactive");
    assert_eq!(app.store.head().await?, head, "nothing appended");

    let (status, body) = send(app.client.post(app.url("/workflows/onboard/activate"))).await?;
    assert_eq!(
        (status, body["active"].clone()),
        (StatusCode::OK, json!(true)),
        "{body}"
    );
    let (status, list) = send(
        app.client
            .get(app.url("/workflows"))
            .query(&[("min_cursor", body["cursor"].as_str().unwrap_or_default())]),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list[0]["key"], "onboard");
    assert_eq!(
        (list[0]["latest_version"].clone(), list[0]["active"].clone()),
        (json!(2), json!(true))
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Runs.

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_two_middle_steps_of_a_diamond_run_at_the_same_time_and_the_last_sees_both_outputs(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app(pool).await?;
    let receiver = Receiver::start().await?;
    registered(
        &app,
        json!({"key": "diamond", "name": "Diamond", "steps": [
            http_step("fetch", &[], &receiver.url("ok")),
            http_step("verify_licence", &["fetch"], &receiver.url("slow")),
            http_step("verify_dea", &["fetch"], &receiver.url("slow")),
            http_step("decide", &["verify_licence", "verify_dea"], &receiver.url("ok")),
        ]}),
    )
    .await?;
    let run_id = start(&app, "diamond", json!({"npi": "1234567893"})).await?;
    let done = run_ended(&app, &run_id).await?;
    assert_eq!(done["status"], "completed", "{done:#}");

    let (licence, dea) = (
        receiver.hits_of("verify_licence"),
        receiver.hits_of("verify_dea"),
    );
    assert_eq!(
        (licence.len(), dea.len()),
        (1, 1),
        "each middle step ran once"
    );
    assert!(
        licence[0].started < dea[0].ended && dea[0].started < licence[0].ended,
        "the middle steps overlap in time"
    );
    let fetch = &receiver.hits_of("fetch")[0];
    let decide = &receiver.hits_of("decide")[0];
    assert!(fetch.ended <= licence[0].started && fetch.ended <= dea[0].started);
    assert!(decide.started >= licence[0].ended && decide.started >= dea[0].ended);
    assert_eq!(receiver.hits().len(), 4, "no step ran twice");
    for id in ["fetch", "verify_licence", "verify_dea", "decide"] {
        let s = step(&done, id);
        assert_eq!(s["status"], "succeeded", "{id}: {s}");
        assert_eq!(s["attempts"].as_array().map(Vec::len), Some(1), "{id}");
        assert_eq!(
            s["output"]["input"]["npi"], "1234567893",
            "{id} saw the input"
        );
    }
    assert_eq!(
        fetch.idempotency_key,
        format!("{run_id}:fetch:1"),
        "the receiver can de-duplicate by run, step and attempt"
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_step_whose_condition_does_not_hold_is_skipped_and_its_dependents_still_run(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app(pool).await?;
    let receiver = Receiver::start().await?;
    registered(
        &app,
        json!({"key": "route", "name": "Route", "steps": [
            http_step("classify", &[], &receiver.url("ok")),
            {"id": "out_of_state", "kind": "http", "depends_on": ["classify"],
             "config": {"url": receiver.url("ok")},
             "when": {"pointer": "/input/state", "not_equals": "CA"}},
            {"id": "in_state", "kind": "http", "depends_on": ["classify"],
             "config": {"url": receiver.url("ok")},
             "when": {"all": [{"pointer": "/input/state", "in": ["CA"]},
                              {"pointer": "/steps/classify/output/step", "equals": "classify"}]}},
            http_step("close", &["out_of_state", "in_state"], &receiver.url("ok")),
        ]}),
    )
    .await?;
    let run_id = start(&app, "route", json!({"state": "CA"})).await?;
    let done = run_ended(&app, &run_id).await?;
    assert_eq!(done["status"], "completed", "{done:#}");
    assert_eq!(step(&done, "out_of_state")["status"], "skipped");
    assert_eq!(step(&done, "in_state")["status"], "succeeded");
    assert_eq!(step(&done, "close")["status"], "succeeded");
    assert!(
        receiver.hits_of("out_of_state").is_empty(),
        "a skipped step is not called"
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_flaky_step_is_retried_with_backoff_and_a_failing_one_fails_the_run_by_default(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app(pool).await?;
    let receiver = Receiver::start().await?;
    registered(
        &app,
        json!({"key": "retrying", "name": "Retrying", "steps": [
            {"id": "flaky", "kind": "http", "config": {"url": receiver.url("flaky")},
             "retry": {"max_attempts": 3, "initial_backoff_ms": 200, "multiplier": 2.0}},
        ]}),
    )
    .await?;
    registered(
        &app,
        json!({"key": "failing", "name": "Failing", "steps": [
            {"id": "broken", "kind": "http", "config": {"url": receiver.url("fail")},
             "retry": {"max_attempts": 2, "initial_backoff_ms": 50}},
            http_step("after", &["broken"], &receiver.url("ok")),
        ]}),
    )
    .await?;
    let flaky = start(&app, "retrying", json!({})).await?;
    let failing = start(&app, "failing", json!({})).await?;

    let done = run_ended(&app, &flaky).await?;
    assert_eq!(done["status"], "completed", "{done:#}");
    let attempts = step(&done, "flaky")["attempts"].clone();
    assert_eq!(attempts.as_array().map(Vec::len), Some(3), "{attempts}");
    assert!(attempts[0]["error"]
        .as_str()
        .unwrap_or_default()
        .contains("HTTP 503"));
    let hits = receiver.hits_of("flaky");
    let keys: Vec<&str> = hits.iter().map(|h| h.idempotency_key.as_str()).collect();
    assert_eq!(
        keys,
        [1, 2, 3].map(|n| format!("{flaky}:flaky:{n}")),
        "each attempt has its own idempotency key"
    );
    // Equal jitter: at least half the exponential delay (200 ms, then 400 ms).
    assert!(hits[1].started.duration_since(hits[0].ended) >= Duration::from_millis(100));
    assert!(hits[2].started.duration_since(hits[1].ended) >= Duration::from_millis(200));

    let failed = run_ended(&app, &failing).await?;
    assert_eq!(failed["status"], "failed", "{failed:#}");
    assert_eq!(step(&failed, "broken")["status"], "failed");
    assert_eq!(
        step(&failed, "broken")["attempts"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("broken"),
        "{failed}"
    );
    assert_eq!(step(&failed, "after")["status"], "pending");
    assert!(receiver.hits_of("after").is_empty());
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_failed_step_set_to_skip_lets_the_run_go_on_and_one_with_a_fallback_runs_the_fallback(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app(pool).await?;
    let receiver = Receiver::start().await?;
    registered(
        &app,
        json!({"key": "lenient", "name": "Lenient", "steps": [
            {"id": "optional", "kind": "http", "config": {"url": receiver.url("fail")}, "on_failure": "skip"},
            {"id": "primary", "kind": "http", "config": {"url": receiver.url("fail")},
             "on_failure": {"fallback": "manual_lookup"}},
            http_step("manual_lookup", &[], &receiver.url("ok")),
            http_step("finish", &["optional", "primary"], &receiver.url("ok")),
        ]}),
    )
    .await?;
    let run_id = start(&app, "lenient", json!({})).await?;
    let done = run_ended(&app, &run_id).await?;
    assert_eq!(done["status"], "completed", "{done:#}");
    assert_eq!(step(&done, "optional")["status"], "skipped");
    assert_eq!(step(&done, "primary")["status"], "failed_over");
    assert_eq!(step(&done, "manual_lookup")["status"], "succeeded");
    assert_eq!(step(&done, "finish")["status"], "succeeded");
    assert_eq!(
        receiver.hits_of("manual_lookup").len(),
        1,
        "the fallback ran once"
    );
    let events = run_events(&app, &run_id).await?;
    assert!(events.iter().any(|e| e == "StepFailedOver"), "{events:?}");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_step_that_asks_a_person_opens_an_incident_task_and_their_retry_or_skip_moves_the_run_on(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app(pool).await?;
    let receiver = Receiver::start().await?;
    registered(
        &app,
        json!({"key": "escalating", "name": "Escalating", "steps": [
            {"id": "flaky", "kind": "http", "config": {"url": receiver.url("flaky")}, "on_failure": "ask_person"},
            {"id": "broken", "kind": "http", "depends_on": ["flaky"],
             "config": {"url": receiver.url("fail")}, "on_failure": "ask_person"},
        ]}),
    )
    .await?;
    let run_id = start(&app, "escalating", json!({})).await?;
    let needs = run_until(&app, &run_id, "an incident task", |r| {
        step(r, "flaky")["incident_task"].is_string()
    })
    .await?;
    assert_eq!(step(&needs, "flaky")["status"], "needs_person");
    let incident = step(&needs, "flaky")["incident_task"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    app.settle().await?;
    let (status, task) = send(app.client.get(app.url(&format!("/tasks/{incident}")))).await?;
    assert_eq!(status, StatusCode::OK, "{task}");
    assert_eq!(task["payload"]["workflow"]["step"], "flaky", "{task}");

    // Someone who is not failed cannot be retried; the retry of the failed one is recorded
    // with who decided. The flaky receiver fails twice, so it needs one more person's retry.
    let (status, refused) = send(
        app.client
            .post(app.url(&format!("/runs/{run_id}/steps/broken/retry"))),
    )
    .await?;
    assert_eq!(
        (status, refused["code"].clone()),
        (StatusCode::CONFLICT, json!("step_not_failed")),
        "{refused}"
    );
    for _ in 0..2 {
        let (status, body) = send(
            app.client
                .post(app.url(&format!("/runs/{run_id}/steps/flaky/retry"))),
        )
        .await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        run_until(&app, &run_id, "the retry's result", |r| {
            let s = step(r, "flaky");
            s["status"] == "succeeded"
                || s["incident_task"].is_string()
                    && s["status"] == "needs_person"
                    && s["attempts"].as_array().map(Vec::len) > Some(1)
        })
        .await?;
    }
    // The decided incident's task is withdrawn.
    task_cancelled(&app, &incident).await?;

    let waiting = run_until(&app, &run_id, "the second incident", |r| {
        step(r, "broken")["incident_task"].is_string()
    })
    .await?;
    assert_eq!(step(&waiting, "flaky")["status"], "succeeded");
    assert_eq!(step(&waiting, "flaky")["decided_by"], "user:admin");
    let (status, body) = send(
        app.client
            .post(app.url(&format!("/runs/{run_id}/steps/broken/skip"))),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let done = run_ended(&app, &run_id).await?;
    assert_eq!(done["status"], "completed", "{done:#}");
    assert_eq!(step(&done, "broken")["status"], "skipped");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_human_task_step_completed_through_the_queue_routes_moves_the_run_on(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app(pool).await?;
    let receiver = Receiver::start().await?;
    let (status, department) = send(
        app.client
            .post(app.url("/departments"))
            .json(&json!({"code": "cred", "name": "Credentialing"})),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{department}");
    let (status, queue) = send(app.client.post(app.url("/queues")).json(&json!({
        "name": "Licence review", "department_id": department["id"], "capacity": {"per_user": 5},
        "groups": ["license"]
    })))
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{queue}");
    let lee = TestApp::client_with(&app.token_for("lee", Role::Staff).await?)?;
    let (status, body) = send(
        app.client
            .post(app.url(&format!(
                "/queues/{}/grants",
                queue["id"].as_str().unwrap_or_default()
            )))
            .json(&json!({"username": "lee", "role": "member", "skills": ["license"]})),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    registered(
        &app,
        json!({"key": "review", "name": "Licence review", "steps": [
            http_step("lookup", &[], &receiver.url("ok")),
            {"id": "review", "kind": "human_task", "depends_on": ["lookup"],
             "config": {"queue": "Licence review", "title": "Review the licence", "priority": 4,
                        "groups": ["license"], "payload": {"npi": "/input/npi"}}},
            http_step("notify", &["review"], &receiver.url("ok")),
        ]}),
    )
    .await?;
    let run_id = start(&app, "review", json!({"npi": "1234567893"})).await?;
    let waiting = run_until(&app, &run_id, "its task", |r| {
        step(r, "review")["status"] == "waiting"
    })
    .await?;
    assert_eq!(waiting["status"], "running");

    let (status, claimed) = send(lee.post(app.url("/tasks/claim-next"))).await?;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    let task_id = claimed["task_id"].as_str().unwrap_or_default().to_owned();
    app.settle().await?;
    let (_, task) = send(app.client.get(app.url(&format!("/tasks/{task_id}")))).await?;
    assert_eq!(
        task["payload"]["npi"], "1234567893",
        "built from the run's input: {task}"
    );
    assert_eq!(task["priority"], 4, "{task}");
    assert!(
        receiver.hits_of("notify").is_empty(),
        "nothing moves before the task is done"
    );
    let (status, completed) = send(
        lee.post(app.url(&format!("/tasks/{task_id}/complete")))
            .json(
                &json!({"outcome": "approved", "note": "verified with the board",
                          "expected_version": claimed["version"]}),
            ),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{completed}");

    let done = run_ended(&app, &run_id).await?;
    assert_eq!(done["status"], "completed", "{done:#}");
    let review = step(&done, "review");
    assert_eq!(review["output"]["outcome"], "approved", "{review}");
    assert_eq!(receiver.hits_of("notify").len(), 1);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn cancelling_a_run_withdraws_its_open_task_and_a_finished_run_cannot_be_cancelled(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app(pool).await?;
    registered(
        &app,
        json!({"key": "approval", "name": "Approval", "steps": [
            {"id": "approve", "kind": "human_task",
             "config": {"queue": "Workflow interventions", "title": "Approve"}},
        ]}),
    )
    .await?;
    let run_id = start(&app, "approval", json!({})).await?;
    let waiting = run_until(&app, &run_id, "its task", |r| {
        step(r, "approve")["status"] == "waiting"
    })
    .await?;
    let (status, body) = send(
        app.client
            .post(app.url(&format!("/runs/{run_id}/cancel")))
            .json(&json!({"reason": "the physician left"})),
    )
    .await?;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("cancelled")),
        "{body}"
    );
    let task = step(&waiting, "approve")["on"]["task_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    task_cancelled(&app, &task).await?;
    let head = app.store.head().await?;
    let (status, refused) = send(
        app.client
            .post(app.url(&format!("/runs/{run_id}/cancel")))
            .json(&json!({"reason": "again"})),
    )
    .await?;
    assert_eq!(
        (status, refused["code"].clone()),
        (StatusCode::CONFLICT, json!("run_finished")),
        "{refused}"
    );
    assert_eq!(app.store.head().await?, head, "nothing appended");
    let ended = run(&app, &run_id).await?;
    assert_eq!(ended["cancelled_by"], "user:admin");
    assert_eq!(ended["error"], "the physician left");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_signal_step_waits_for_its_signal_and_signals_nobody_waits_for_are_refused(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app(pool).await?;
    registered(
        &app,
        json!({"key": "signed", "name": "Signed", "input_schema": {
                "type": "object", "required": ["npi"],
                "properties": {"npi": {"type": "string", "pattern": "^[0-9]{10}$"}}},
              "steps": [{"id": "signature", "kind": "signal", "config": {"name": "signed"}}]}),
    )
    .await?;

    // Bad input: each a clear problem, nothing appended.
    let head = app.store.head().await?;
    let (status, body) = send(
        app.client
            .post(app.url("/workflows/signed/runs"))
            .json(&json!({"input": {"npi": "12"}})),
    )
    .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        (body["code"].clone(), body["pointer"].clone()),
        (json!("invalid_input"), json!("/input/npi")),
        "{body}"
    );
    let (status, body) = send(
        app.client
            .post(app.url("/workflows/nope/runs"))
            .json(&json!({"input": {}})),
    )
    .await?;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("workflow_not_found")),
        "{body}"
    );
    let (status, body) = send(
        app.client
            .post(app.url("/workflows/signed/runs?version=7"))
            .json(&json!({"input": {"npi": "1234567893"}})),
    )
    .await?;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("workflow_version_not_found")),
        "{body}"
    );
    let (status, body) = send(
        app.client
            .post(app.url(&format!("/runs/{}/cancel", uuid::Uuid::new_v4())))
            .json(&json!({"reason": "x"})),
    )
    .await?;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("run_not_found")),
        "{body}"
    );
    assert_eq!(app.store.head().await?, head, "nothing appended");

    let run_id = start(&app, "signed", json!({"npi": "1234567893"})).await?;
    run_until(&app, &run_id, "waiting", |r| {
        step(r, "signature")["status"] == "waiting"
    })
    .await?;
    let head = app.store.head().await?;
    let (status, body) = send(
        app.client
            .post(app.url(&format!("/runs/{run_id}/signals/approved")))
            .json(&json!({"by": "board"})),
    )
    .await?;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::CONFLICT, json!("not_waiting_for_signal")),
        "{body}"
    );
    assert_eq!(app.store.head().await?, head, "nothing appended");
    let (status, body) = send(
        app.client
            .post(app.url(&format!("/runs/{run_id}/signals/signed")))
            .json(&json!({"signed_at": "2026-12-05"})),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let done = run_ended(&app, &run_id).await?;
    assert_eq!(done["status"], "completed", "{done:#}");
    assert_eq!(
        step(&done, "signature")["output"]["signed_at"],
        "2026-12-05"
    );

    // The auditor's view: the run as of its first event, still running.
    let (status, then) = send(
        app.client
            .get(app.url(&format!("/runs/{run_id}?as_of_version=1"))),
    )
    .await?;
    assert_eq!(
        (status, then["status"].clone()),
        (StatusCode::OK, json!("running")),
        "{then}"
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_wait_step_holds_the_run_until_its_timer_fires(pool: PgPool) -> anyhow::Result<()> {
    let app = app(pool).await?;
    let receiver = Receiver::start().await?;
    registered(
        &app,
        json!({"key": "cooling-off", "name": "Cooling off", "steps": [
            {"id": "pause", "kind": "wait", "config": {"seconds": 1}},
            {"id": "until", "kind": "wait", "depends_on": ["pause"],
             "config": {"until_pointer": "/input/not_before"}},
            http_step("after", &["until"], &receiver.url("ok")),
        ]}),
    )
    .await?;
    let run_id = start(
        &app,
        "cooling-off",
        json!({"not_before": "2020-01-01T00:00:00Z"}),
    )
    .await?;
    let waiting = run_until(&app, &run_id, "its timer", |r| {
        step(r, "pause")["status"] == "waiting"
    })
    .await?;
    assert_eq!(step(&waiting, "pause")["on"]["for"], "timer", "{waiting:#}");
    assert!(
        receiver.hits().is_empty(),
        "nothing after the timer runs before it fires"
    );
    let done = run_ended(&app, &run_id).await?;
    assert_eq!(done["status"], "completed", "{done:#}");
    let pause = step(&done, "pause");
    let started = chrono::DateTime::parse_from_rfc3339(
        pause["attempts"][0]["started_at"]
            .as_str()
            .unwrap_or_default(),
    )?;
    let ended =
        chrono::DateTime::parse_from_rfc3339(pause["ended_at"].as_str().unwrap_or_default())?;
    assert!(
        ended - started >= chrono::Duration::seconds(1),
        "the timer held the step a second: {pause}"
    );
    assert_eq!(
        step(&done, "until")["status"],
        "succeeded",
        "a time already past goes at once"
    );
    assert_eq!(receiver.hits_of("after").len(), 1);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_run_keeps_the_version_it_started_with_after_a_new_version_is_registered(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app(pool).await?;
    let receiver = Receiver::start().await?;
    let version = |steps: Value| json!({"key": "pinned", "name": "Pinned", "steps": steps});
    registered(
        &app,
        version(
            json!([{"id": "gate", "kind": "signal", "config": {"name": "go"}},
                       http_step("old_step", &["gate"], &receiver.url("ok"))]),
        ),
    )
    .await?;
    let run_id = start(&app, "pinned", json!({})).await?;
    run_until(&app, &run_id, "waiting", |r| {
        step(r, "gate")["status"] == "waiting"
    })
    .await?;
    registered(
        &app,
        version(
            json!([{"id": "gate", "kind": "signal", "config": {"name": "go"}},
                       http_step("new_step", &["gate"], &receiver.url("ok"))]),
        ),
    )
    .await?;
    let newer = start(&app, "pinned", json!({})).await?;
    let (status, body) = send(
        app.client
            .post(app.url(&format!("/runs/{run_id}/signals/go")))
            .json(&json!({})),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let done = run_ended(&app, &run_id).await?;
    assert_eq!(
        (done["version"].clone(), done["status"].clone()),
        (json!(1), json!("completed"))
    );
    assert_eq!(step(&done, "old_step")["status"], "succeeded");
    assert_eq!(receiver.hits_of("old_step").len(), 1);
    assert!(receiver.hits_of("new_step").is_empty());
    assert_eq!(run(&app, &newer).await?["version"], 2);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn concurrent_starts_with_one_idempotency_key_make_one_run(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app(pool).await?;
    registered(
        &app,
        json!({"key": "once", "name": "Once", "steps": [{"id": "gate", "kind": "signal", "config": {"name": "go"}}]}),
    )
    .await?;
    let starts = (0..8).map(|_| {
        send(
            app.client
                .post(app.url("/workflows/once/runs"))
                .header("Idempotency-Key", "intake-42")
                .json(&json!({"input": {"n": 42}, "business_key": "R-42"})),
        )
    });
    let answers = futures_util::future::join_all(starts).await;
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for answer in answers {
        let (status, body) = answer?;
        assert!(
            matches!(status, StatusCode::CREATED | StatusCode::OK),
            "{status} {body}"
        );
        created += usize::from(status == StatusCode::CREATED);
        ids.insert(body["run_id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!((ids.len(), created), (1, 1), "one run, started once");
    let (status, other) = send(
        app.client
            .post(app.url("/workflows/once/runs"))
            .header("Idempotency-Key", "intake-42")
            .json(&json!({"input": {"n": 43}})),
    )
    .await?;
    assert_eq!(
        (status, other["code"].clone()),
        (StatusCode::CONFLICT, json!("run_exists")),
        "{other}"
    );
    app.settle().await?;
    let (status, page) = send(app.client.get(app.url("/runs?business_key=R-42"))).await?;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 1, "{page}");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn two_servers_share_two_hundred_runs_and_no_attempt_runs_twice(
    pool: PgPool,
) -> anyhow::Result<()> {
    let first = app(pool.clone()).await?;
    let second = app(pool).await?;
    let receiver = Receiver::start().await?;
    registered(
        &first,
        json!({"key": "shared", "name": "Shared", "steps": [
            http_step("a", &[], &receiver.url("ok")),
            http_step("b", &["a"], &receiver.url("ok")),
            http_step("c", &["a"], &receiver.url("ok")),
        ]}),
    )
    .await?;
    let mut runs = Vec::new();
    for i in 0..200 {
        let on = if i % 2 == 0 { &first } else { &second };
        runs.push(start(on, "shared", json!({"i": i})).await?);
    }
    for run_id in &runs {
        let done = run_ended(&first, run_id).await?;
        assert_eq!(done["status"], "completed", "{done:#}");
    }
    let hits = receiver.hits();
    assert_eq!(hits.len(), 600, "three calls per run");
    let mut per_attempt: HashMap<String, usize> = HashMap::new();
    for hit in &hits {
        *per_attempt.entry(hit.idempotency_key.clone()).or_default() += 1;
    }
    assert!(
        per_attempt.values().all(|n| *n == 1),
        "no attempt ran twice: {:?}",
        per_attempt
            .iter()
            .filter(|(_, n)| **n > 1)
            .collect::<Vec<_>>()
    );
    let started: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE stream_type = 'workflow_run' AND event_type = 'AttemptStarted'",
    )
    .fetch_one(first.store.pool())
    .await?;
    assert_eq!(started, 600, "one attempt per step in the log");
    let behaviours: std::collections::BTreeSet<&str> =
        hits.iter().map(|h| h.behaviour.as_str()).collect();
    assert_eq!(behaviours.into_iter().collect::<Vec<_>>(), ["ok"]);
    assert!(hits.iter().all(|h| runs.contains(&h.run)));
    Ok(())
}
