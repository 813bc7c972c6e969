//! The work-queue read side over HTTP: the queue view, the dashboard, the SLA report, my tasks,
//! task and case detail, a case's routing history, state as of a version or time, and the
//! refusals (unknown ids, bad parameters). Events are written straight to the store, each with
//! the time it says it happened, so every figure below follows from the scenario by hand.

use std::collections::BTreeMap;
use std::sync::Arc;

use caseledger_tests::{spawn_app_with, Options, TestApp};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use commands::ManualClock;
use domain::user::{Role, Username};
use domain::workqueue::case::{Case, CaseEvent};
use domain::workqueue::department::{Department, DepartmentEvent};
use domain::workqueue::distribution::AssignmentReason;
use domain::workqueue::queue::{
    Capacity, Distribution, EscalationPolicy, Grant, Queue, QueueConfig, QueueEvent, QueueRole,
    SlaPolicy,
};
use domain::workqueue::task::{Task, TaskEvent};
use domain::workqueue::{GroupLabel, Priority};
use domain::Aggregate;
use eventstore::{codec, Cursor, ExpectedVersion, Metadata};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// Monday 2 March 2026, 08:00 UTC: the scenario's hour zero.
fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T08:00:00Z")
        .expect("a valid time in this test")
        .with_timezone(&Utc)
}

fn at(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

fn p(n: i64) -> Priority {
    Priority::new(n).expect("a valid priority in this test")
}

fn groups(labels: &[&str]) -> Vec<GroupLabel> {
    labels
        .iter()
        .map(|g| GroupLabel::parse(g).expect("a valid group in this test"))
        .collect()
}

/// Appends `events` to stream `id` of `A`'s type, by `user:tester`.
async fn emit<A: Aggregate>(
    app: &TestApp,
    id: Uuid,
    events: &[A::Event],
) -> anyhow::Result<Cursor> {
    let new = events
        .iter()
        .map(codec::encode::<A>)
        .collect::<Result<Vec<_>, _>>()?;
    let appended = app
        .store
        .append(
            id,
            A::STREAM_TYPE,
            ExpectedVersion::Any,
            &new,
            &Metadata::by("user:tester"),
        )
        .await?;
    appended
        .cursor
        .ok_or_else(|| anyhow::anyhow!("nothing appended"))
}

async fn get(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
) -> anyhow::Result<(StatusCode, Value)> {
    let response = client.get(app.url(path)).send().await?;
    let status = response.status();
    Ok((status, response.json().await?))
}

/// GETs `path` as the admin, expecting 200.
async fn ok(app: &TestApp, path: &str) -> anyhow::Result<Value> {
    let (status, body) = get(app, &app.client, path).await?;
    anyhow::ensure!(status == StatusCode::OK, "GET {path}: {status} {body}");
    Ok(body)
}

/// GETs `path` as the admin, expecting a problem with this status and code.
async fn refused(
    app: &TestApp,
    path: &str,
    status: StatusCode,
    code: &str,
) -> anyhow::Result<Value> {
    let (got, body) = get(app, &app.client, path).await?;
    assert_eq!(
        (got, body["code"].as_str()),
        (status, Some(code)),
        "GET {path}: {body}"
    );
    Ok(body)
}

fn config(department_id: Uuid) -> QueueConfig {
    QueueConfig {
        department_id,
        capacity: Capacity {
            per_user: 2,
            total: None,
        },
        // Priority 1: 1440 minutes, 2: 720, 3: 360, 4: 180, 5: 90.
        sla: SlaPolicy::standard(),
        escalation: EscalationPolicy::standard(),
        distribution: Distribution::Pull,
        groups: groups(&["dea", "license"]),
    }
}

fn grant(user: &str, from: i64, until: Option<i64>) -> QueueEvent {
    QueueEvent::QueueAccessGranted {
        grant: Grant {
            grant_id: Uuid::new_v4(),
            username: Username::parse(user).expect("a valid username in this test"),
            role: QueueRole::Member,
            skills: groups(&["dea"]),
            valid_from: at(from),
            valid_until: until.map(at),
        },
        at: at(from),
    }
}

/// A task created at `minutes` with priority `priority`, due by the standard SLA.
fn created(
    queue_id: Uuid,
    title: &str,
    priority: i64,
    minutes: i64,
    case_id: Option<Uuid>,
) -> TaskEvent {
    TaskEvent::TaskCreated {
        queue_id,
        title: title.into(),
        priority: p(priority),
        groups: groups(&["dea"]),
        case_id,
        payload: json!({"title": title}),
        due_at: at(minutes) + SlaPolicy::standard().due_in(p(priority)),
        at: at(minutes),
    }
}

fn claimed(by: &str, minutes: i64) -> TaskEvent {
    TaskEvent::TaskClaimed {
        by: by.into(),
        next: false,
        at: at(minutes),
    }
}

fn completed(by: &str, minutes: i64, within_sla: bool) -> TaskEvent {
    TaskEvent::TaskCompleted {
        by: by.into(),
        outcome: "verified".into(),
        note: None,
        within_sla,
        at: at(minutes),
    }
}

fn escalated(level: u32, from: i64, to: i64, due_minutes: i64, minutes: i64) -> TaskEvent {
    TaskEvent::TaskEscalated {
        level,
        priority_from: p(from),
        priority_to: p(to),
        due_at: at(due_minutes),
        at: at(minutes),
    }
}

/// `percentile_cont(0.9)` over four sorted values, as PostgreSQL computes it.
fn p90_of_four(sorted: [f64; 4]) -> f64 {
    let position: f64 = 0.9 * 3.0;
    let lower = position.floor();
    let i = lower as usize;
    sorted[i] + (position - lower) * (sorted[i + 1] - sorted[i])
}

fn close(actual: &Value, expected: f64) -> bool {
    actual.as_f64().is_some_and(|v| (v - expected).abs() < 1e-9)
}

struct Scenario {
    licensing: Uuid,
    billing: Uuid,
    cred: Uuid,
    east: Uuid,
    tasks: BTreeMap<&'static str, Uuid>,
}

/// Now is hour 10. Queue Licensing (per-user capacity 2; alice, bob in force, carol's grant
/// ended at hour 5) holds:
///
/// | task | created | priority | due | what happened |
/// | --- | --- | --- | --- | --- |
/// | T1 | 0:00 | 3 | 6:00 | alice claims 0:10, completes 1:00 (on time) |
/// | T2 | 0:00 | 3 | 6:00 | alice claims 0:30, completes 7:00 (late) |
/// | T3 | 1:00 | 5 | 2:30 | pushed to bob 1:20, completed 2:00 (on time) |
/// | T4 | 2:00 | 4 | 5:00 | bob claims 2:40, releases 3:00; alice claims 3:10, completes 4:00 |
/// | T5 | 0:30 | 1 | 24:30 | open |
/// | T6 | 3:00 | 3 | 9:00 | open, escalated at 9:00 to level 1, priority 4 |
/// | T7 | 5:00 | 4 | 8:00 | alice claims 6:00; escalated at 8:00 and 9:00 (priority 5) |
/// | T8 | 1:00 | 2 | 13:00 | cancelled 2:00 |
/// | T9 | 4:00 | 2 | 16:00 | open |
/// | T10 | 2:00 | 2 | 14:00 | open |
///
/// Queue Billing has no tasks.
async fn scenario(app: &TestApp) -> anyhow::Result<Scenario> {
    let cred = Department::stream_id("CRED");
    let east = Department::stream_id("CRED-EAST");
    emit::<Department>(
        app,
        cred,
        &[DepartmentEvent::DepartmentCreated {
            code: "CRED".into(),
            name: "Credentialing".into(),
            parent_id: None,
            at: at(-600),
        }],
    )
    .await?;
    emit::<Department>(
        app,
        east,
        &[
            DepartmentEvent::DepartmentCreated {
                code: "CRED-EAST".into(),
                name: "Credentialing East".into(),
                parent_id: Some(cred),
                at: at(-590),
            },
            DepartmentEvent::DepartmentRenamed {
                name: "Credentialing, East".into(),
                at: at(-580),
            },
        ],
    )
    .await?;
    let licensing = Queue::stream_id("Licensing");
    emit::<Queue>(
        app,
        licensing,
        &[
            QueueEvent::QueueCreated {
                name: "Licensing".into(),
                config: config(east),
                at: at(-500),
            },
            grant("alice", -480, None),
            grant("bob", -480, Some(720)),
            grant("carol", -480, Some(300)),
        ],
    )
    .await?;
    let billing = Queue::stream_id("Billing");
    emit::<Queue>(
        app,
        billing,
        &[QueueEvent::QueueCreated {
            name: "Billing".into(),
            config: config(cred),
            at: at(-400),
        }],
    )
    .await?;

    let mut tasks = BTreeMap::new();
    let q = licensing;
    let stories: Vec<(&'static str, Vec<TaskEvent>)> = vec![
        (
            "T1",
            vec![
                created(q, "T1", 3, 0, None),
                claimed("alice", 10),
                completed("alice", 60, true),
            ],
        ),
        (
            "T2",
            vec![
                created(q, "T2", 3, 0, None),
                claimed("alice", 30),
                completed("alice", 420, false),
            ],
        ),
        (
            "T3",
            vec![
                created(q, "T3", 5, 60, None),
                TaskEvent::TaskAssigned {
                    to: "bob".into(),
                    reason: AssignmentReason::LeastLoaded {
                        claimed: 0,
                        capacity: 2,
                    },
                    explanation: "least loaded: 0 of 2 tasks claimed".into(),
                    at: at(80),
                },
                completed("bob", 120, true),
            ],
        ),
        (
            "T4",
            vec![
                created(q, "T4", 4, 120, None),
                claimed("bob", 160),
                TaskEvent::TaskUnclaimed {
                    by: "bob".into(),
                    at: at(180),
                },
                claimed("alice", 190),
                completed("alice", 240, true),
            ],
        ),
        ("T5", vec![created(q, "T5", 1, 30, None)]),
        (
            "T6",
            vec![created(q, "T6", 3, 180, None), escalated(1, 3, 4, 540, 540)],
        ),
        (
            "T7",
            vec![
                created(q, "T7", 4, 300, None),
                claimed("alice", 360),
                escalated(1, 4, 5, 480, 480),
                escalated(2, 5, 5, 480, 540),
            ],
        ),
        (
            "T8",
            vec![
                created(q, "T8", 2, 60, None),
                TaskEvent::TaskCancelled {
                    by: "lee".into(),
                    reason: "duplicate".into(),
                    at: at(120),
                },
            ],
        ),
        ("T9", vec![created(q, "T9", 2, 240, None)]),
        ("T10", vec![created(q, "T10", 2, 120, None)]),
    ];
    for (name, events) in stories {
        let id = Uuid::new_v4();
        emit::<Task>(app, id, &events).await?;
        tasks.insert(name, id);
    }
    app.settle().await?;
    Ok(Scenario {
        licensing,
        billing,
        cred,
        east,
        tasks,
    })
}

async fn app_at_hour_ten(pool: PgPool) -> anyhow::Result<TestApp> {
    let clock = ManualClock::at(at(600));
    spawn_app_with(
        pool,
        Options {
            clock: Some(Arc::new(clock)),
            ..Options::default()
        },
    )
    .await
}

async fn rebuild_equals_live(app: &TestApp) -> anyhow::Result<()> {
    let report = projections::rebuild::verify(
        &app.store,
        &projections::workqueue::WorkQueueModel,
        500,
        |_| {},
    )
    .await?;
    assert!(report.equal, "{report:?}");
    Ok(())
}

fn ids(tasks: &Value) -> Vec<String> {
    tasks
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["task_id"].as_str().map(str::to_owned))
        .collect()
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_queue_view_counts_tasks_measures_load_and_lists_open_tasks_in_claim_order(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app_at_hour_ten(pool).await?;
    let s = scenario(&app).await?;
    let t = |name: &str| s.tasks[name].to_string();

    let view = ok(&app, &format!("/queues/{}", s.licensing)).await?;
    assert_eq!(view["queue"]["name"], "Licensing");
    assert_eq!(view["queue"]["department_name"], "Credentialing, East");
    assert_eq!(
        view["queue"]["sla_minutes"],
        json!({"1": 1440, "2": 720, "3": 360, "4": 180, "5": 90})
    );
    assert_eq!(
        view["counts"],
        json!({"open": 4, "claimed": 1, "completed": 4, "cancelled": 1})
    );
    // T6 (open) and T7 (claimed) are escalated.
    assert_eq!(view["escalated"], 2);
    // alice and bob hold grants in force at hour 10; carol's ended at hour 5.
    assert_eq!(
        view["load"],
        json!({"claimed": 1, "members": 2, "per_user_capacity": 2, "capacity": 4, "utilisation_pct": 25.0})
    );
    // Priority first (T6 escalated to 4), then the oldest (T10 before T9), then T5.
    assert_eq!(
        ids(&view["open_tasks"]),
        [t("T6"), t("T10"), t("T9"), t("T5")]
    );
    assert_eq!(
        (
            view["open_total"].as_i64(),
            view["page"].as_i64(),
            view["per_page"].as_i64()
        ),
        (Some(4), Some(1), Some(50))
    );
    assert_eq!(view["open_tasks"][0]["priority"], 4);
    assert_eq!(view["open_tasks"][0]["initial_priority"], 3);
    assert_eq!(view["open_tasks"][0]["escalation_level"], 1);

    let second = ok(&app, &format!("/queues/{}?page=2&per_page=3", s.licensing)).await?;
    assert_eq!(ids(&second["open_tasks"]), [t("T5")]);
    assert_eq!(
        (second["open_total"].as_i64(), second["page"].as_i64()),
        (Some(4), Some(2))
    );

    let queues = ok(&app, "/queues").await?;
    let names: Vec<&str> = queues
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(names, ["Billing", "Licensing"]);
    assert_eq!(
        (
            queues[1]["open_tasks"].as_i64(),
            queues[1]["claimed_tasks"].as_i64()
        ),
        (Some(4), Some(1))
    );

    let departments = ok(&app, "/departments").await?;
    assert_eq!(
        departments
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| (
                d["code"].clone(),
                d["depth"].clone(),
                d["parent_id"].clone(),
                d["queue_count"].clone()
            ))
            .collect::<Vec<_>>(),
        [
            (json!("CRED"), json!(0), Value::Null, json!(1)),
            (json!("CRED-EAST"), json!(1), json!(s.cred), json!(1)),
        ]
    );
    assert_eq!(departments[1]["path"], json!(["CRED", "CRED-EAST"]));
    assert_eq!(departments[1]["department_id"], json!(s.east));

    // A task with its history.
    let t4 = ok(&app, &format!("/tasks/{}", t("T4"))).await?;
    assert_eq!(
        (t4["status"].as_str(), t4["claimant"].as_str()),
        (Some("completed"), Some("alice"))
    );
    assert_eq!(t4["first_claimed_at"], json!(at(160)));
    assert_eq!(t4["claimed_at"], json!(at(190)));
    assert_eq!(t4["within_sla"], true);
    let kinds: Vec<&str> = t4["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["created", "claimed", "unclaimed", "claimed", "completed"]
    );
    assert_eq!(t4["history"][2]["username"], "bob");
    assert_eq!(t4["history"][2]["actor"], "user:tester");

    rebuild_equals_live(&app).await
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_dashboard_shows_each_queues_open_claimed_escalated_and_average_age(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app_at_hour_ten(pool).await?;
    let s = scenario(&app).await?;
    let dashboard = ok(&app, "/queues/dashboard").await?;
    assert_eq!(
        dashboard[0],
        json!({"queue_id": s.billing, "name": "Billing", "department_id": s.cred,
               "open": 0, "claimed": 0, "escalated": 0, "avg_age_hours": null})
    );
    let licensing = &dashboard[1];
    assert_eq!(licensing["queue_id"], json!(s.licensing));
    assert_eq!(
        (
            licensing["open"].as_i64(),
            licensing["claimed"].as_i64(),
            licensing["escalated"].as_i64()
        ),
        (Some(4), Some(1), Some(2))
    );
    // Unfinished at hour 10: T5 (9.5 h old), T6 (7), T7 (5), T9 (6), T10 (8).
    assert!(
        close(&licensing["avg_age_hours"], 35.5 / 5.0),
        "{licensing}"
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_sla_report_counts_compliance_breaches_and_times_over_the_period(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app_at_hour_ten(pool).await?;
    let s = scenario(&app).await?;
    let day = format!(
        "/queues/{}/sla-report?from={}&to={}",
        s.licensing, "2026-03-02T08:00:00Z", "2026-03-03T08:00:00Z"
    );
    let report = ok(&app, &day).await?;
    let keys: Vec<&str> = report
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .collect();
    let mut expected_keys = vec![
        "queue_id",
        "from",
        "to",
        "completed",
        "within_sla",
        "within_sla_pct",
        "breaches",
        "time_to_claim_secs",
        "time_to_complete_secs",
    ];
    expected_keys.sort_unstable();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, expected_keys);
    assert_eq!(report["queue_id"], json!(s.licensing));
    assert_eq!(
        (report["from"].clone(), report["to"].clone()),
        (json!(at(0)), json!(at(1440)))
    );
    // T1, T2, T3, T4 completed in the day; T2 late.
    assert_eq!(
        (report["completed"].as_i64(), report["within_sla"].as_i64()),
        (Some(4), Some(3))
    );
    assert!(close(&report["within_sla_pct"], 75.0), "{report}");
    // T2 late, and T6 and T7 unfinished and past due now (hour 10, before the day ends).
    assert_eq!(report["breaches"], 3);
    // Created to first held: T1 600 s, T2 1800, T3 1200, T4 2400 (its first claim, by bob).
    let claim = &report["time_to_claim_secs"];
    assert!(close(&claim["avg"], 1500.0), "{claim}");
    assert!(
        close(&claim["p90"], p90_of_four([600.0, 1200.0, 1800.0, 2400.0])),
        "{claim}"
    );
    assert!(close(&claim["p90"], 2220.0), "{claim}");
    // Created to completed: T1 3600 s, T2 25200, T3 3600, T4 7200.
    let complete = &report["time_to_complete_secs"];
    assert!(close(&complete["avg"], 9900.0), "{complete}");
    assert!(
        close(
            &complete["p90"],
            p90_of_four([3600.0, 3600.0, 7200.0, 25200.0])
        ),
        "{complete}"
    );
    assert!(
        (complete["p90"].as_f64().unwrap_or_default() - 19800.0).abs() < 1e-6,
        "{complete}"
    );

    // The first two and a half hours: T1 and T3 completed, both on time; at 2:30 nothing was
    // past due yet.
    let morning = ok(
        &app,
        &format!(
            "/queues/{}/sla-report?from=2026-03-02T08:00:00Z&to=2026-03-02T10:30:00Z",
            s.licensing
        ),
    )
    .await?;
    assert_eq!(
        (
            morning["completed"].as_i64(),
            morning["within_sla"].as_i64(),
            morning["breaches"].as_i64()
        ),
        (Some(2), Some(2), Some(0))
    );
    assert!(close(&morning["within_sla_pct"], 100.0));
    assert!(
        close(&morning["time_to_claim_secs"]["avg"], 900.0),
        "{morning}"
    );

    // A period with nothing in it.
    let before = ok(
        &app,
        &format!(
            "/queues/{}/sla-report?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z",
            s.licensing
        ),
    )
    .await?;
    assert_eq!(
        before,
        json!({"queue_id": s.licensing, "from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z",
               "completed": 0, "within_sla": 0, "within_sla_pct": null, "breaches": 0,
               "time_to_claim_secs": {"avg": null, "p90": null},
               "time_to_complete_secs": {"avg": null, "p90": null}})
    );

    // Refusals: the period backwards or empty, a missing or malformed bound, an unknown queue.
    let backwards = refused(
        &app,
        &format!(
            "/queues/{}/sla-report?from=2026-03-03T00:00:00Z&to=2026-03-02T00:00:00Z",
            s.licensing
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await?;
    assert!(
        backwards["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("to:")),
        "{backwards}"
    );
    refused(
        &app,
        &format!(
            "/queues/{}/sla-report?from=2026-03-02T00:00:00Z&to=2026-03-02T00:00:00Z",
            s.licensing
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await?;
    let missing = refused(
        &app,
        &format!(
            "/queues/{}/sla-report?from=2026-03-02T00:00:00Z",
            s.licensing
        ),
        StatusCode::BAD_REQUEST,
        "bad_query",
    )
    .await?;
    assert!(
        missing["detail"]
            .as_str()
            .is_some_and(|d| d.contains("to: required")),
        "{missing}"
    );
    refused(
        &app,
        &format!(
            "/queues/{}/sla-report?from=yesterday&to=2026-03-02T00:00:00Z",
            s.licensing
        ),
        StatusCode::BAD_REQUEST,
        "bad_query",
    )
    .await?;
    refused(
        &app,
        &format!(
            "/queues/{}/sla-report?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z",
            Uuid::new_v4()
        ),
        StatusCode::NOT_FOUND,
        "queue_not_found",
    )
    .await?;
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn my_tasks_are_the_callers_by_status_most_urgent_first(pool: PgPool) -> anyhow::Result<()> {
    let app = app_at_hour_ten(pool).await?;
    let s = scenario(&app).await?;
    let alice = TestApp::client_with(&app.token_for("alice", Role::Staff).await?)?;
    let bob = TestApp::client_with(&app.token_for("bob", Role::Viewer).await?)?;
    let t = |name: &str| s.tasks[name].to_string();

    let (status, mine) = get(&app, &alice, "/tasks/mine").await?;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(ids(&mine["tasks"]), [t("T7")]);
    assert_eq!(
        (
            mine["total"].as_i64(),
            mine["limit"].as_i64(),
            mine["offset"].as_i64()
        ),
        (Some(1), Some(50), Some(0))
    );
    let (_, done) = get(&app, &alice, "/tasks/mine?status=completed").await?;
    // T4 (priority 4) first; T1 and T2 (priority 3, both due at 6:00) after it, by id.
    let mut done = ids(&done["tasks"]);
    assert_eq!(done.len(), 3, "{done:?}");
    assert_eq!(done.remove(0), t("T4"));
    done.sort();
    let mut rest = vec![t("T1"), t("T2")];
    rest.sort();
    assert_eq!(done, rest);
    let (_, bobs) = get(&app, &bob, "/tasks/mine").await?;
    assert_eq!(bobs["total"], 0);
    let (_, bobs) = get(&app, &bob, "/tasks/mine?status=completed").await?;
    assert_eq!(ids(&bobs["tasks"]), [t("T3")]);

    let (status, bad) = get(&app, &alice, "/tasks/mine?status=open").await?;
    assert_eq!(
        (status, bad["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field"))
    );
    let (status, bad) = get(&app, &alice, "/tasks/mine?limit=many").await?;
    assert_eq!(
        (status, bad["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_query"))
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_cases_routing_history_shows_the_queues_and_people_it_passed_through(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app_at_hour_ten(pool).await?;
    let dept = Department::stream_id("LEGAL");
    emit::<Department>(
        &app,
        dept,
        &[DepartmentEvent::DepartmentCreated {
            code: "LEGAL".into(),
            name: "Legal".into(),
            parent_id: None,
            at: at(0),
        }],
    )
    .await?;
    let intake = Queue::stream_id("Intake");
    let legal = Queue::stream_id("Legal review");
    for (id, name) in [(intake, "Intake"), (legal, "Legal review")] {
        emit::<Queue>(
            &app,
            id,
            &[QueueEvent::QueueCreated {
                name: name.into(),
                config: config(dept),
                at: at(0),
            }],
        )
        .await?;
    }
    let case = Case::stream_id("CASE-2026-0042");
    let (ta, tb, tc) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    emit::<Case>(
        &app,
        case,
        &[
            CaseEvent::CaseOpened {
                number: "CASE-2026-0042".into(),
                subject: "Lapsed DEA registration".into(),
                allegations: vec!["prescribing while lapsed".into()],
                at: at(1),
            },
            CaseEvent::CaseRouted {
                from_queue: None,
                to_queue: intake,
                reason: "opened in this queue".into(),
                at: at(1),
            },
        ],
    )
    .await?;
    emit::<Task>(
        &app,
        ta,
        &[created(intake, "Check the registration", 3, 2, Some(case))],
    )
    .await?;
    emit::<Case>(
        &app,
        case,
        &[CaseEvent::CaseTaskLinked {
            task_id: ta,
            at: at(2),
        }],
    )
    .await?;
    emit::<Task>(
        &app,
        ta,
        &[TaskEvent::TaskClaimed {
            by: "alice".into(),
            next: true,
            at: at(3),
        }],
    )
    .await?;
    emit::<Case>(
        &app,
        case,
        &[CaseEvent::CaseAssigned {
            from: None,
            to: "alice".into(),
            reason: "intake lead".into(),
            at: at(4),
        }],
    )
    .await?;
    app.settle().await?;
    let before_legal = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    emit::<Task>(
        &app,
        ta,
        &[
            TaskEvent::TaskReassigned {
                from: Some("alice".into()),
                to: "bob".into(),
                by: "lee".into(),
                reason: "alice on leave".into(),
                at: at(5),
            },
            completed("bob", 6, true),
        ],
    )
    .await?;
    emit::<Case>(
        &app,
        case,
        &[CaseEvent::CaseRouted {
            from_queue: Some(intake),
            to_queue: legal,
            reason: "needs legal review".into(),
            at: at(7),
        }],
    )
    .await?;
    emit::<Task>(&app, tb, &[created(legal, "Review the file", 4, 8, None)]).await?;
    emit::<Task>(
        &app,
        tb,
        &[TaskEvent::TaskLinkedToCase {
            case_id: case,
            at: at(9),
        }],
    )
    .await?;
    emit::<Case>(
        &app,
        case,
        &[CaseEvent::CaseTaskLinked {
            task_id: tb,
            at: at(9),
        }],
    )
    .await?;
    emit::<Task>(
        &app,
        tb,
        &[TaskEvent::TaskAssigned {
            to: "carol".into(),
            reason: AssignmentReason::RoundRobin { after: None },
            explanation: "round robin: first member with room".into(),
            at: at(10),
        }],
    )
    .await?;
    emit::<Case>(
        &app,
        case,
        &[CaseEvent::CaseAssigned {
            from: Some("alice".into()),
            to: "carol".into(),
            reason: "legal owns it now".into(),
            at: at(11),
        }],
    )
    .await?;
    // A task of no case leaves no trace in the case's history.
    emit::<Task>(
        &app,
        tc,
        &[
            created(legal, "Unrelated", 2, 12, None),
            claimed("dave", 13),
        ],
    )
    .await?;
    app.settle().await?;

    let routing = ok(&app, &format!("/cases/{case}/routing")).await?;
    let steps: Vec<Value> = routing
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            json!([
                r["entry_no"],
                r["kind"],
                r["queue_name"],
                r["from_queue_id"],
                r["from_user"],
                r["to_user"],
                r["reason"],
                r["task_id"]
            ])
        })
        .collect();
    let (intake_name, legal_name) = ("Intake", "Legal review");
    assert_eq!(
        steps,
        [
            json!([
                1,
                "routed",
                intake_name,
                null,
                null,
                null,
                "opened in this queue",
                null
            ]),
            json!([
                2,
                "task_claimed",
                intake_name,
                null,
                null,
                "alice",
                "claim next",
                ta
            ]),
            json!([
                3,
                "assigned",
                intake_name,
                null,
                null,
                "alice",
                "intake lead",
                null
            ]),
            json!([
                4,
                "task_reassigned",
                intake_name,
                null,
                "alice",
                "bob",
                "alice on leave",
                ta
            ]),
            json!([
                5,
                "task_completed",
                intake_name,
                null,
                "bob",
                null,
                "verified",
                ta
            ]),
            json!([
                6,
                "routed",
                legal_name,
                intake,
                null,
                null,
                "needs legal review",
                null
            ]),
            json!([
                7,
                "task_assigned",
                legal_name,
                null,
                null,
                "carol",
                "round robin: first member with room",
                tb
            ]),
            json!([
                8,
                "assigned",
                legal_name,
                null,
                "alice",
                "carol",
                "legal owns it now",
                null
            ]),
        ]
    );
    assert_eq!(routing[0]["at"], json!(at(1)));
    assert_eq!(routing[7]["actor"], "user:tester");

    let detail = ok(&app, &format!("/cases/{case}")).await?;
    assert_eq!(
        (
            detail["number"].as_str(),
            detail["status"].as_str(),
            detail["queue_name"].as_str(),
            detail["assignee"].as_str()
        ),
        (
            Some("CASE-2026-0042"),
            Some("open"),
            Some(legal_name),
            Some("carol")
        )
    );
    assert_eq!(detail["task_count"], 2);
    let mut case_tasks = ids(&detail["tasks"]);
    case_tasks.sort();
    let mut expected = vec![ta.to_string(), tb.to_string()];
    expected.sort();
    assert_eq!(case_tasks, expected);

    // As of a version, as of a time, and now.
    let v4 = ok(&app, &format!("/cases/{case}/state?as_of_version=4")).await?;
    assert_eq!(
        v4,
        json!({"case_id": case, "number": "CASE-2026-0042", "subject": "Lapsed DEA registration",
               "status": "open", "queue_id": intake, "assignee": "alice", "tasks": [ta], "version": 4})
    );
    let then = ok(
        &app,
        &format!(
            "/cases/{case}/state?as_of={}",
            before_legal.to_rfc3339_opts(SecondsFormat::Micros, true)
        ),
    )
    .await?;
    assert_eq!(
        (then["version"].as_u64(), then["queue_id"].clone()),
        (Some(4), json!(intake))
    );
    let now = ok(&app, &format!("/cases/{case}/state")).await?;
    assert_eq!(
        (
            now["version"].as_u64(),
            now["queue_id"].clone(),
            now["assignee"].as_str(),
            now["tasks"].clone()
        ),
        (Some(7), json!(legal), Some("carol"), json!([ta, tb]))
    );
    let task_then = ok(&app, &format!("/tasks/{ta}/state?as_of_version=2")).await?;
    assert_eq!(
        (
            task_then["status"].as_str(),
            task_then["claimant"].as_str(),
            task_then["version"].as_u64(),
            task_then["case_id"].clone()
        ),
        (Some("claimed"), Some("alice"), Some(2), json!(case))
    );
    let task_now = ok(&app, &format!("/tasks/{ta}/state")).await?;
    assert_eq!(
        (task_now["status"].as_str(), task_now["claimant"].as_str()),
        (Some("completed"), Some("bob"))
    );
    assert_eq!(task_now["due_at"], json!(at(2 + 360)));

    // Before it existed, of another kind, unknown, or asked badly.
    refused(
        &app,
        &format!("/tasks/{ta}/state?as_of=2000-01-01T00:00:00Z"),
        StatusCode::NOT_FOUND,
        "task_not_found",
    )
    .await?;
    refused(
        &app,
        &format!("/cases/{ta}/state"),
        StatusCode::NOT_FOUND,
        "case_not_found",
    )
    .await?;
    refused(
        &app,
        &format!("/tasks/{case}/state"),
        StatusCode::NOT_FOUND,
        "task_not_found",
    )
    .await?;
    refused(
        &app,
        &format!("/tasks/{ta}/state?as_of_version=zero"),
        StatusCode::BAD_REQUEST,
        "bad_query",
    )
    .await?;
    refused(
        &app,
        &format!("/tasks/{ta}/state?as_of_version=1&as_of=2026-03-02T08:00:00Z"),
        StatusCode::BAD_REQUEST,
        "bad_query",
    )
    .await?;

    rebuild_equals_live(&app).await
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn unknown_ids_are_404_and_bad_parameters_400_or_422(pool: PgPool) -> anyhow::Result<()> {
    let app = app_at_hour_ten(pool).await?;
    let s = scenario(&app).await?;
    let nobody = Uuid::new_v4();
    refused(
        &app,
        &format!("/queues/{nobody}"),
        StatusCode::NOT_FOUND,
        "queue_not_found",
    )
    .await?;
    refused(
        &app,
        &format!("/tasks/{nobody}"),
        StatusCode::NOT_FOUND,
        "task_not_found",
    )
    .await?;
    refused(
        &app,
        &format!("/tasks/{nobody}/state"),
        StatusCode::NOT_FOUND,
        "task_not_found",
    )
    .await?;
    refused(
        &app,
        &format!("/cases/{nobody}"),
        StatusCode::NOT_FOUND,
        "case_not_found",
    )
    .await?;
    refused(
        &app,
        &format!("/cases/{nobody}/routing"),
        StatusCode::NOT_FOUND,
        "case_not_found",
    )
    .await?;
    refused(
        &app,
        &format!("/cases/{nobody}/state"),
        StatusCode::NOT_FOUND,
        "case_not_found",
    )
    .await?;
    // A queue's id is not a task's or a case's.
    refused(
        &app,
        &format!("/tasks/{}", s.licensing),
        StatusCode::NOT_FOUND,
        "task_not_found",
    )
    .await?;
    refused(
        &app,
        "/tasks/not-a-uuid",
        StatusCode::BAD_REQUEST,
        "bad_path",
    )
    .await?;
    refused(
        &app,
        "/queues/not-a-uuid",
        StatusCode::BAD_REQUEST,
        "bad_path",
    )
    .await?;
    refused(
        &app,
        "/cases/not-a-uuid/routing",
        StatusCode::BAD_REQUEST,
        "bad_path",
    )
    .await?;
    let queue = s.licensing;
    refused(
        &app,
        &format!("/queues/{queue}?page=0"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await?;
    refused(
        &app,
        &format!("/queues/{queue}?per_page=501"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await?;
    refused(
        &app,
        &format!("/queues/{queue}?page=two"),
        StatusCode::BAD_REQUEST,
        "bad_query",
    )
    .await?;
    let far = ok(
        &app,
        &format!("/queues/{queue}?page=9223372036854775807&per_page=500"),
    )
    .await?;
    assert_eq!(far["open_tasks"], json!([]));
    refused(
        &app,
        "/queues/dashboard?min_cursor=nonsense",
        StatusCode::BAD_REQUEST,
        "invalid_cursor",
    )
    .await?;
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_task_list_narrows_by_queue_status_claimant_and_case_newest_first(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app_at_hour_ten(pool).await?;
    let s = scenario(&app).await?;
    let t = |name: &str| s.tasks[name].to_string();
    let licensing = s.licensing;

    let open = ok(&app, &format!("/tasks?queue_id={licensing}&status=open")).await?;
    // Created at 4:00, 3:00, 2:00 and 0:30.
    assert_eq!(ids(&open["tasks"]), [t("T9"), t("T6"), t("T10"), t("T5")]);
    assert_eq!(open["total"], 4);

    let alices = ok(&app, "/tasks?claimant=alice&status=completed").await?;
    let mut got = ids(&alices["tasks"]);
    got.sort();
    let mut want = vec![t("T1"), t("T2"), t("T4")];
    want.sort();
    assert_eq!(got, want);

    let first_page = ok(&app, &format!("/tasks?queue_id={licensing}&limit=3")).await?;
    assert_eq!(
        (
            first_page["total"].as_i64(),
            first_page["limit"].as_i64(),
            first_page["offset"].as_i64()
        ),
        (Some(10), Some(3), Some(0))
    );
    assert_eq!(ids(&first_page["tasks"]), [t("T7"), t("T9"), t("T6")]);
    let last_page = ok(
        &app,
        &format!("/tasks?queue_id={licensing}&limit=3&offset=9"),
    )
    .await?;
    assert_eq!(ids(&last_page["tasks"]).len(), 1);
    assert_eq!(ok(&app, "/tasks?status=claimed").await?["total"], 1);
    assert_eq!(
        ok(&app, &format!("/tasks?queue_id={}", s.billing)).await?["total"],
        0
    );
    assert_eq!(
        ok(&app, &format!("/tasks?case_id={}", Uuid::new_v4())).await?["total"],
        0
    );

    refused(
        &app,
        "/tasks?status=lost",
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await?;
    refused(
        &app,
        "/tasks?queue_id=licensing",
        StatusCode::BAD_REQUEST,
        "bad_query",
    )
    .await?;
    refused(
        &app,
        "/tasks?limit=many",
        StatusCode::BAD_REQUEST,
        "bad_query",
    )
    .await?;
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_case_list_narrows_by_status_queue_and_assignee_newest_first(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = app_at_hour_ten(pool).await?;
    let intake = Queue::stream_id("Intake");
    let opened = |number: &str, minutes: i64| CaseEvent::CaseOpened {
        number: number.into(),
        subject: "Lapsed registration".into(),
        allegations: Vec::new(),
        at: at(minutes),
    };
    let (first, second, third) = (
        Case::stream_id("CASE-2026-0001"),
        Case::stream_id("CASE-2026-0002"),
        Case::stream_id("CASE-2026-0003"),
    );
    emit::<Case>(&app, first, &[opened("CASE-2026-0001", 1)]).await?;
    emit::<Case>(
        &app,
        second,
        &[
            opened("CASE-2026-0002", 2),
            CaseEvent::CaseRouted {
                from_queue: None,
                to_queue: intake,
                reason: "new".into(),
                at: at(3),
            },
            CaseEvent::CaseAssigned {
                from: None,
                to: "alice".into(),
                reason: "on duty".into(),
                at: at(4),
            },
        ],
    )
    .await?;
    emit::<Case>(
        &app,
        third,
        &[
            opened("CASE-2026-0003", 5),
            CaseEvent::CaseClosed {
                resolution: "withdrawn".into(),
                at: at(6),
            },
        ],
    )
    .await?;
    app.settle().await?;
    let numbers = |page: &Value| -> Vec<String> {
        page["cases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["number"].as_str().map(str::to_owned))
            .collect()
    };

    let all = ok(&app, "/cases").await?;
    assert_eq!(
        numbers(&all),
        ["CASE-2026-0003", "CASE-2026-0002", "CASE-2026-0001"]
    );
    assert_eq!(all["total"], 3);
    let open = ok(&app, "/cases?status=open").await?;
    assert_eq!(numbers(&open), ["CASE-2026-0002", "CASE-2026-0001"]);
    assert_eq!(
        numbers(&ok(&app, &format!("/cases?queue_id={intake}&assignee=alice")).await?),
        ["CASE-2026-0002"]
    );
    assert_eq!(ok(&app, "/cases?assignee=bob").await?["total"], 0);
    let second_page = ok(&app, "/cases?limit=1&offset=1").await?;
    assert_eq!(
        (numbers(&second_page), second_page["total"].as_i64()),
        (vec!["CASE-2026-0002".to_owned()], Some(3))
    );
    refused(
        &app,
        "/cases?status=pending",
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await?;
    Ok(())
}
