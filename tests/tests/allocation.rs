//! Staff and allocation end to end: over HTTP against a real PostgreSQL.
//!
//! The fixed scenario: work on Monday 09:00-11:00 at one site, needing wound care and
//! medication, a home visit for client C. Four staff members, with the default weights
//! (skill match 30, availability 25, travel distance 15, workload 15, continuity 10,
//! preference 5):
//!
//! | | skills | available | km | load | prefers | total |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | Ben | 1/2 | yes | 0 | 0/4 | home visits | 15 + 25 + 15 + 15 + 0 + 5 = 75 |
//! | Ada | 2/2 | yes | 40 | 0/4 | - | 30 + 25 + 3 + 15 + 0 + 0 = 73 |
//! | Cal | 2/2 | Tuesdays only | 0 | 0/4 | client C | 30 + 0 + 15 + 15 + 0 + 5 = 65 |
//! | Dee | 0/2 | yes | 0 | 0/2 | home visits | 0 + 25 + 15 + 15 + 0 + 5 = 60 |
//!
//! Doubling the skill weight to 60 puts the fully skilled first: Ada 103, Cal 95, Ben 90, Dee 60.

use caseledger_tests::{spawn_app, TestApp};
use domain::staff::EARTH_RADIUS_KM;
use domain::user::Role;
use eventstore::Cursor;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

const SITE: (i64, i64) = (-33_868_800, 151_209_300);
const CLIENT: Uuid = Uuid::from_u128(0xC11E);

/// Micro-degrees of latitude for `km` due north (the haversine distance along a meridian).
fn north(km: f64) -> i64 {
    ((km / EARTH_RADIUS_KM).to_degrees() * 1e6).round() as i64
}

fn work() -> Value {
    json!({
        "required_skills": [" Wound  Care", "MEDICATION"],
        "slot": {"weekday": "monday", "start_minute": 540, "end_minute": 660},
        "location": {"lat_e6": SITE.0, "lon_e6": SITE.1},
        "client_id": CLIENT,
        "kind": "Home Visit",
    })
}

fn monday_morning() -> Value {
    json!([{"weekday": "monday", "start_minute": 480, "end_minute": 720}])
}

struct Staff {
    ada: Uuid,
    ben: Uuid,
    cal: Uuid,
    dee: Uuid,
    /// The cursor of the last write, for `min_cursor`.
    cursor: String,
}

async fn json_of(response: reqwest::Response) -> anyhow::Result<(StatusCode, Value)> {
    let status = response.status();
    let body = response.json().await?;
    Ok((status, body))
}

/// Registers a staff member and sets their availability; the cursor of the last write.
async fn register(
    app: &TestApp,
    name: &str,
    skills: &[&str],
    km_north: f64,
    max_workload: u32,
    preferences: Value,
    slots: Value,
) -> anyhow::Result<(Uuid, String)> {
    let (status, body) = json_of(
        app.client
            .post(app.url("/staff"))
            .json(&json!({
                "name": name, "skills": skills, "max_workload": max_workload,
                "home": {"lat_e6": SITE.0 + north(km_north), "lon_e6": SITE.1},
                "preferences": preferences,
            }))
            .send()
            .await?,
    )
    .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "{status}: {body}");
    let id: Uuid = body["id"].as_str().unwrap_or_default().parse()?;
    let (status, body) = json_of(
        app.client
            .put(app.url(&format!("/staff/{id}/availability")))
            .json(&json!({ "slots": slots }))
            .send()
            .await?,
    )
    .await?;
    anyhow::ensure!(status == StatusCode::OK, "{status}: {body}");
    Ok((id, body["cursor"].as_str().unwrap_or_default().to_owned()))
}

async fn scenario(app: &TestApp) -> anyhow::Result<Staff> {
    let (ada, _) = register(
        app,
        "Ada",
        &["wound care", "medication", "dementia care"],
        40.0,
        4,
        json!({}),
        monday_morning(),
    )
    .await?;
    let (ben, _) = register(
        app,
        "Ben",
        &["Medication"],
        0.0,
        4,
        json!({"work_kinds": ["home visit"]}),
        monday_morning(),
    )
    .await?;
    let (cal, _) = register(
        app,
        "Cal",
        &["wound care", "medication"],
        0.0,
        4,
        json!({"clients": [CLIENT]}),
        json!([{"weekday": "tuesday", "start_minute": 480, "end_minute": 720}]),
    )
    .await?;
    let (dee, cursor) = register(
        app,
        "Dee",
        &[],
        0.0,
        2,
        json!({"work_kinds": ["home visit", "transport"]}),
        monday_morning(),
    )
    .await?;
    Ok(Staff {
        ada,
        ben,
        cal,
        dee,
        cursor,
    })
}

async fn rank(app: &TestApp, cursor: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
    json_of(
        app.client
            .post(app.url("/allocations/rank"))
            .query(&[("min_cursor", cursor)])
            .json(&body)
            .send()
            .await?,
    )
    .await
}

fn order(candidates: &Value) -> Vec<Uuid> {
    candidates
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["staff_id"].as_str().and_then(|s| s.parse().ok()))
        .collect()
}

fn totals(candidates: &Value) -> Vec<f64> {
    candidates
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["total"].as_f64())
        .collect()
}

fn assert_totals(actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() < 0.01, "{actual:?} != {expected:?}");
    }
}

async fn head(app: &TestApp) -> anyhow::Result<Cursor> {
    Ok(app.store.head().await?)
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_fixed_scenario_ranks_as_expected_with_every_factor_explained(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let s = scenario(&app).await?;
    let before = head(&app).await?;
    let (status, ranking) = rank(&app, &s.cursor, json!({"work": work()})).await?;
    assert_eq!(status, StatusCode::OK, "{ranking}");
    assert_eq!(order(&ranking["candidates"]), [s.ben, s.ada, s.cal, s.dee]);
    assert_totals(&totals(&ranking["candidates"]), &[75.0, 73.0, 65.0, 60.0]);
    assert_eq!(ranking["considered"], 4);
    assert_eq!(ranking["max_total"], 100);
    assert_eq!(ranking["weights_source"], "configured");
    assert_eq!(
        ranking["weights"],
        json!({"skill_match": 30, "availability": 25, "travel_distance": 15, "workload": 15,
               "continuity": 10, "preference": 5})
    );

    // Ben's score, factor by factor: value, weight, contribution and what it means.
    let ben = &ranking["candidates"][0];
    assert_eq!(ben["rank"], 1);
    assert_eq!(ben["name"], "Ben");
    let expected = [
        (
            "skill_match",
            0.5,
            30,
            15.0,
            "holds 1 of the 2 required skills",
        ),
        (
            "availability",
            1.0,
            25,
            25.0,
            "available for the whole slot, Monday 09:00-11:00",
        ),
        (
            "travel_distance",
            1.0,
            15,
            15.0,
            "0.0 km from home to the work (scores 0 at 50 km or more)",
        ),
        ("workload", 1.0, 15, 15.0, "100 % of capacity free"),
        (
            "continuity",
            0.0,
            10,
            0.0,
            "has not served this client before",
        ),
        (
            "preference",
            1.0,
            5,
            5.0,
            "prefers this kind of work or this client",
        ),
    ];
    let factors = ben["factors"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("no factors: {ben}"))?;
    assert_eq!(factors.len(), 6);
    for (f, (name, value, weight, contribution, explanation)) in factors.iter().zip(expected) {
        assert_eq!(f["factor"], name);
        assert!(
            (f["value"].as_f64().unwrap_or(-1.0) - value).abs() < 1e-6,
            "{f}"
        );
        assert_eq!(f["weight"], weight);
        assert!(
            (f["contribution"].as_f64().unwrap_or(-1.0) - contribution).abs() < 1e-6,
            "{f}"
        );
        assert_eq!(f["explanation"], explanation);
    }
    // Ada's travel: 40 km of the 50 km range.
    let ada = &ranking["candidates"][1];
    assert!((ada["distance_km"].as_f64().unwrap_or(0.0) - 40.0).abs() < 0.01);
    assert!((ada["factors"][2]["value"].as_f64().unwrap_or(0.0) - 0.2).abs() < 1e-3);
    // Cal is not there on Mondays.
    assert_eq!(
        ranking["candidates"][2]["factors"][1]["explanation"],
        "not available for the whole slot, Monday 09:00-11:00"
    );
    // The limit caps the list.
    let (_, top2) = rank(&app, &s.cursor, json!({"work": work(), "limit": 2})).await?;
    assert_eq!(order(&top2["candidates"]), [s.ben, s.ada]);
    assert_eq!(head(&app).await?, before, "ranking appends nothing");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn changing_one_weight_changes_the_order_as_it_should(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let s = scenario(&app).await?;
    // Skills count double: the fully skilled come first, the one who is there on Monday first
    // of them.
    let (status, skills) = rank(
        &app,
        &s.cursor,
        json!({"work": work(), "weights": {"skill_match": 60}}),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{skills}");
    assert_eq!(skills["weights_source"], "request");
    assert_eq!(skills["weights"]["skill_match"], 60);
    assert_eq!(
        skills["weights"]["availability"], 25,
        "others as configured"
    );
    assert_eq!(order(&skills["candidates"]), [s.ada, s.cal, s.ben, s.dee]);
    assert_totals(&totals(&skills["candidates"]), &[103.0, 95.0, 90.0, 60.0]);

    // Travel not counted: Ada's 40 km no longer costs her, and she leads.
    let (_, no_travel) = rank(
        &app,
        &s.cursor,
        json!({"work": work(), "weights": {"travel_distance": 0}}),
    )
    .await?;
    assert_eq!(
        order(&no_travel["candidates"]),
        [s.ada, s.ben, s.cal, s.dee]
    );
    assert_totals(&totals(&no_travel["candidates"]), &[70.0, 60.0, 50.0, 45.0]);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn negative_or_all_zero_weights_are_refused_naming_the_field_and_nothing_is_appended(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let s = scenario(&app).await?;
    let before = head(&app).await?;
    let zero = json!({"skill_match": 0, "availability": 0, "travel_distance": 0,
                      "workload": 0, "continuity": 0, "preference": 0});
    for (weights, code, field) in [
        (
            json!({"travel_distance": -5}),
            "negative_weight",
            "weights.travel_distance",
        ),
        (zero, "all_weights_zero", "weights"),
        (
            json!({"workload": 2_000_000}),
            "weight_too_large",
            "weights.workload",
        ),
    ] {
        let (status, problem) =
            rank(&app, &s.cursor, json!({"work": work(), "weights": weights})).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["code"], code);
        assert_eq!(problem["field"], field);

        let (status, problem) = json_of(
            app.client
                .post(app.url("/allocations"))
                .json(
                    &json!({"work_kind": "case", "work_id": Uuid::new_v4(), "work": work(),
                              "weights": weights}),
                )
                .send()
                .await?,
        )
        .await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["code"], code);
        assert_eq!(problem["field"], field);
    }
    // A misspelt factor is named too.
    let (status, problem) = rank(
        &app,
        &s.cursor,
        json!({"work": work(), "weights": {"skills": 3}}),
    )
    .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("skills"),
        "{problem}"
    );
    // Bad work: an inverted slot, a location off the globe, a limit out of range.
    for (change, field) in [
        (
            json!({"slot": {"weekday": "monday", "start_minute": 700, "end_minute": 600}}),
            "work.slot.start_minute",
        ),
        (
            json!({"location": {"lat_e6": 91_000_000, "lon_e6": 0}}),
            "work.location.lat_e6",
        ),
    ] {
        let mut w = work();
        if let (Some(w), Some(change)) = (w.as_object_mut(), change.as_object()) {
            w.extend(change.clone());
        }
        let (status, problem) = rank(&app, &s.cursor, json!({"work": w})).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["field"], field, "{problem}");
    }
    let (status, problem) = rank(&app, &s.cursor, json!({"work": work(), "limit": 0})).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["code"], "invalid_field");
    assert_eq!(head(&app).await?, before, "nothing appended");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn an_allocation_is_recorded_explained_and_replayable_with_other_weights(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let s = scenario(&app).await?;
    let case = Uuid::new_v4();
    let (status, allocated) = json_of(
        app.client
            .post(app.url("/allocations"))
            .query(&[("min_cursor", &s.cursor)])
            .json(&json!({"work_kind": "case", "work_id": case, "work": work()}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{allocated}");
    assert_eq!(allocated["staff_id"], json!(s.ben));
    assert_eq!(allocated["staff_name"], "Ben");
    assert_eq!(allocated["active"], true);
    assert_eq!(allocated["chosen_rank"], 1);
    assert_eq!(allocated["overrides_ranking"], false);
    assert_eq!(allocated["considered"], 4);
    assert_eq!(order(&allocated["ranking"]), [s.ben, s.ada, s.cal, s.dee]);
    let cursor = allocated["cursor"].as_str().unwrap_or_default().to_owned();

    // The recorded decision, explained from the event.
    let (status, shown) = json_of(
        app.client
            .get(app.url(&format!("/allocations/case/{case}")))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["staff_id"], json!(s.ben));
    assert_eq!(shown["weights"], allocated["weights"]);
    assert_eq!(shown["work"]["kind"], "home visit");
    assert_eq!(
        shown["work"]["required_skills"],
        json!(["medication", "wound care"])
    );
    assert_totals(&totals(&shown["ranking"]), &[75.0, 73.0, 65.0, 60.0]);
    assert_eq!(
        shown["ranking"][0]["factors"][0]["explanation"],
        "holds 1 of the 2 required skills"
    );
    // In the event log, with its inputs.
    let history: Value = app
        .client
        .get(app.url(&format!(
            "/streams/{}/events",
            shown["allocation_id"].as_str().unwrap_or_default()
        )))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(history[0]["event_type"], "WorkAllocated");
    assert_eq!(
        history[0]["payload"]["decision"]["weights"]["skill_match"],
        30
    );
    assert_eq!(history[0]["payload"]["decision"]["chosen"], json!(s.ben));

    // Ben's workload, read through the read model.
    let (status, ben) = json_of(
        app.client
            .get(app.url(&format!("/staff/{}", s.ben)))
            .query(&[("min_cursor", &cursor)])
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{ben}");
    assert_eq!(ben["current_workload"], 1);
    assert_eq!(ben["max_workload"], 4);
    assert_eq!(ben["free_capacity"], 3);
    assert_eq!(ben["active_allocations"][0]["work_id"], json!(case));
    assert_eq!(
        ben["active_allocations"][0]["decision"]["factors"][0]["contribution"],
        15.0
    );
    let row = projections::staffing::allocation(app.store.pool(), "case", case)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no allocation row"))?;
    assert!(row.active);
    assert_eq!(row.staff_id, s.ben);
    assert_eq!(row.client_id, CLIENT);
    assert_eq!(row.decision["weights"]["travel_distance"], 15);

    // Replayed with other weights: pure, from the recorded values.
    let before = head(&app).await?;
    let (status, replayed) = json_of(
        app.client
            .post(app.url(&format!("/allocations/case/{case}/replay")))
            .json(&json!({"weights": {"skill_match": 60}}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{replayed}");
    assert_eq!(replayed["recorded_weights"]["skill_match"], 30);
    assert_eq!(replayed["weights"]["skill_match"], 60);
    assert_eq!(
        replayed["weights"]["travel_distance"], 15,
        "recorded weights kept"
    );
    assert_eq!(replayed["chosen"], json!(s.ben));
    assert_eq!(replayed["chosen_rank_recorded"], 1);
    assert_eq!(replayed["chosen_rank_now"], 3);
    assert_eq!(replayed["top_now"], json!(s.ada));
    assert_eq!(replayed["would_change"], true);
    assert_eq!(order(&replayed["ranking"]), [s.ada, s.cal, s.ben, s.dee]);
    assert_totals(&totals(&replayed["ranking"]), &[103.0, 95.0, 90.0, 60.0]);
    // With no weights, the recorded ones: the same order as recorded.
    let (_, same) = json_of(
        app.client
            .post(app.url(&format!("/allocations/case/{case}/replay")))
            .json(&json!({}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(same["would_change"], false);
    let (status, problem) = json_of(
        app.client
            .post(app.url(&format!("/allocations/case/{case}/replay")))
            .json(&json!({"weights": {"continuity": -1}}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["field"], "weights.continuity");
    assert_eq!(head(&app).await?, before, "replaying appends nothing");
    let (_, again) = json_of(
        app.client
            .get(app.url(&format!("/allocations/case/{case}")))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(
        again["weights"]["skill_match"], 30,
        "the record is unchanged"
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn allocating_allocated_work_is_a_conflict_until_it_is_released(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let s = scenario(&app).await?;
    let case = Uuid::new_v4();
    let body = json!({"work_kind": "case", "work_id": case, "work": work()});
    let first = app
        .client
        .post(app.url("/allocations"))
        .query(&[("min_cursor", &s.cursor)])
        .json(&body)
        .send()
        .await?;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await?;
    // The next ranking sees Ben's new workload (the candidates are not served stale).
    let (_, ranking) = rank(
        &app,
        first["cursor"].as_str().unwrap_or_default(),
        json!({"work": work()}),
    )
    .await?;
    let ben = ranking["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["staff_id"] == json!(s.ben))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ben["factors"][3]["value"], 0.75, "{ben}");
    assert_eq!(ben["factors"][3]["explanation"], "75 % of capacity free");
    assert_eq!(
        ben["factors"][4]["value"], 1.0,
        "Ben has now served client C"
    );
    let before = head(&app).await?;
    let (status, problem) = json_of(
        app.client
            .post(app.url("/allocations"))
            .json(
                &json!({"work_kind": "case", "work_id": case, "work": work(),
                          "staff_id": s.ada}),
            )
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "work_already_allocated");
    assert_eq!(problem["staff_id"], json!(s.ben));
    assert_eq!(head(&app).await?, before, "nothing appended");
    // The same id as a task is other work.
    let as_task = app
        .client
        .post(app.url("/allocations"))
        .json(&json!({"work_kind": "task", "work_id": case, "work": work()}))
        .send()
        .await?;
    assert_eq!(as_task.status(), StatusCode::CREATED);

    // Released, it may be allocated again; a person may choose someone from the ranking.
    let (status, released) = json_of(
        app.client
            .post(app.url(&format!("/allocations/case/{case}/release")))
            .json(&json!({"reason": "visit rescheduled"}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{released}");
    let (status, problem) = json_of(
        app.client
            .post(app.url(&format!("/allocations/case/{case}/release")))
            .json(&json!({"reason": "again"}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["code"], "work_not_allocated");
    let (status, again) = json_of(
        app.client
            .post(app.url("/allocations"))
            .query(&[(
                "min_cursor",
                released["cursor"].as_str().unwrap_or_default(),
            )])
            .json(
                &json!({"work_kind": "case", "work_id": case, "work": work(),
                          "staff_id": s.cal}),
            )
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["staff_id"], json!(s.cal));
    assert_eq!(again["overrides_ranking"], true);
    assert_eq!(again["allocations"], 2);
    // Ben served client C before (the released allocation), which now counts as continuity.
    assert_eq!(again["ranking"][0]["staff_id"], json!(s.ben));
    assert_eq!(
        again["ranking"][0]["factors"][4]["explanation"],
        "has served this client before"
    );
    // Ben's workload is back to the task only; Cal holds the case.
    let (_, ben) = json_of(
        app.client
            .get(app.url(&format!("/staff/{}", s.ben)))
            .query(&[("min_cursor", again["cursor"].as_str().unwrap_or_default())])
            .send()
            .await?,
    )
    .await?;
    assert_eq!(ben["current_workload"], 1);
    assert_eq!(ben["active_allocations"][0]["work_kind"], "task");

    // The read model equals a rebuild from the log.
    let report = projections::rebuild::verify(
        &app.store,
        &projections::staffing::StaffingModel,
        500,
        |_| {},
    )
    .await?;
    assert!(report.equal, "{report:?}");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn unknown_staff_or_work_is_refused_and_bad_profiles_name_the_field(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let s = scenario(&app).await?;
    let before = head(&app).await?;
    let stranger = Uuid::new_v4();
    let (status, problem) = json_of(
        app.client
            .post(app.url("/allocations"))
            .query(&[("min_cursor", &s.cursor)])
            .json(
                &json!({"work_kind": "referral", "work_id": Uuid::new_v4(), "work": work(),
                          "staff_id": stranger}),
            )
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["code"], "unknown_staff");
    assert_eq!(problem["field"], "staff_id");
    // A registered staff member outside the recorded ranking (limit 1: only Ben).
    let (status, problem) = json_of(
        app.client
            .post(app.url("/allocations"))
            .query(&[("min_cursor", &s.cursor)])
            .json(
                &json!({"work_kind": "referral", "work_id": Uuid::new_v4(), "work": work(),
                          "staff_id": s.dee, "limit": 1}),
            )
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["code"], "staff_not_ranked");

    for (path, code) in [
        (format!("/staff/{stranger}"), "staff_not_found"),
        (
            format!("/allocations/case/{stranger}"),
            "allocation_not_found",
        ),
    ] {
        let (status, problem) = json_of(app.client.get(app.url(&path)).send().await?).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {problem}");
        assert_eq!(problem["code"], code);
    }
    let (status, problem) = json_of(
        app.client
            .get(app.url(&format!("/allocations/widget/{stranger}")))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["code"], "bad_path");
    let (status, problem) = json_of(
        app.client
            .post(app.url(&format!("/allocations/case/{stranger}/replay")))
            .json(&json!({}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["code"], "allocation_not_found");
    let (status, problem) = json_of(
        app.client
            .put(app.url(&format!("/staff/{stranger}/availability")))
            .json(&json!({"slots": monday_morning()}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["code"], "staff_not_found");

    // Bad profiles and slots name the field.
    let profile = |change: Value| {
        let mut p = json!({"name": "Eve", "skills": ["respite"], "max_workload": 3,
                           "home": {"lat_e6": SITE.0, "lon_e6": SITE.1}});
        if let (Some(p), Some(change)) = (p.as_object_mut(), change.as_object()) {
            p.extend(change.clone());
        }
        p
    };
    for (change, field) in [
        (json!({"max_workload": -1}), "max_workload"),
        (json!({"max_workload": 0}), "max_workload"),
        (json!({"name": "  "}), "name"),
        (json!({"skills": [""]}), "skills"),
        (
            json!({"home": {"lat_e6": 0, "lon_e6": 181_000_000}}),
            "home.lon_e6",
        ),
    ] {
        let (status, problem) = json_of(
            app.client
                .post(app.url("/staff"))
                .json(&profile(change.clone()))
                .send()
                .await?,
        )
        .await?;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{change}: {problem}"
        );
        assert_eq!(problem["field"], field, "{change}: {problem}");
    }
    let (status, problem) = json_of(
        app.client
            .put(app.url(&format!("/staff/{}/availability", s.ada)))
            .json(
                &json!({"slots": [{"weekday": "monday", "start_minute": 600, "end_minute": 1500}]}),
            )
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("end_minute"),
        "{problem}"
    );
    assert_eq!(head(&app).await?, before, "nothing appended");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn staff_profiles_are_listed_updated_and_seen_as_of_a_version(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let s = scenario(&app).await?;
    let (status, page) = json_of(
        app.client
            .get(app.url("/staff"))
            .query(&[("min_cursor", s.cursor.as_str()), ("limit", "2")])
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 4);
    let names: Vec<&str> = page["staff"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["Ada", "Ben"]);
    assert_eq!(page["staff"][1]["skills"], json!(["medication"]));
    assert_eq!(
        page["staff"][1]["availability"],
        json!([{"weekday": "monday", "start_minute": 480, "end_minute": 720}])
    );
    let (_, found) = json_of(
        app.client
            .get(app.url("/staff"))
            .query(&[("search", "dementia")])
            .send()
            .await?,
    )
    .await?;
    assert_eq!(found["total"], 1);
    assert_eq!(found["staff"][0]["staff_id"], json!(s.ada));

    // A retried registration with a chosen id returns the same staff member.
    let eve = Uuid::new_v4();
    let new = json!({"staff_id": eve, "name": "Eve", "skills": ["respite"], "max_workload": 3,
                     "home": {"lat_e6": SITE.0, "lon_e6": SITE.1}});
    let first = app.client.post(app.url("/staff")).json(&new).send().await?;
    assert_eq!(first.status(), StatusCode::CREATED);
    let retry = app.client.post(app.url("/staff")).json(&new).send().await?;
    assert_eq!(retry.status(), StatusCode::OK);

    // An update replaces the profile; the same again is refused.
    let profile = json!({"name": "Ada King", "skills": ["wound care"], "max_workload": 6,
                         "home": {"lat_e6": SITE.0, "lon_e6": SITE.1}});
    let (status, updated) = json_of(
        app.client
            .put(app.url(&format!("/staff/{}", s.ada)))
            .json(&profile)
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let (status, problem) = json_of(
        app.client
            .put(app.url(&format!("/staff/{}", s.ada)))
            .json(&profile)
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["code"], "unchanged");
    let (_, ada) = json_of(
        app.client
            .get(app.url(&format!("/staff/{}", s.ada)))
            .query(&[("min_cursor", updated["cursor"].as_str().unwrap_or_default())])
            .send()
            .await?,
    )
    .await?;
    assert_eq!(ada["name"], "Ada King");
    assert_eq!(ada["max_workload"], 6);
    assert_eq!(ada["current_workload"], 0);

    // Auditors see the staff member as of a version; viewers may not.
    let auditor = TestApp::client_with(&app.token_for("ivy", Role::Auditor).await?)?;
    let (status, first) = json_of(
        auditor
            .get(app.url(&format!("/staff/{}/state", s.ada)))
            .query(&[("as_of_version", "1")])
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["name"], "Ada");
    assert_eq!(first["availability"], json!([]));
    assert_eq!(first["version"], 1);
    let (_, now) = json_of(
        auditor
            .get(app.url(&format!("/staff/{}/state", s.ada)))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(now["name"], "Ada King");
    assert_eq!(now["version"], 3);
    assert_eq!(now["availability"][0]["weekday"], "monday");

    let viewer = TestApp::client_with(&app.token_for("val", Role::Viewer).await?)?;
    let rank = viewer
        .post(app.url("/allocations/rank"))
        .json(&json!({"work": work()}))
        .send()
        .await?;
    assert_eq!(
        rank.status(),
        StatusCode::OK,
        "viewers may rank (nothing is recorded)"
    );
    let allocate = viewer
        .post(app.url("/allocations"))
        .json(&json!({"work_kind": "case", "work_id": Uuid::new_v4(), "work": work()}))
        .send()
        .await?;
    assert_eq!(allocate.status(), StatusCode::FORBIDDEN);
    let state = viewer
        .get(app.url(&format!("/staff/{}/state", s.ada)))
        .send()
        .await?;
    assert_eq!(state.status(), StatusCode::FORBIDDEN);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn before_the_projectors_run_the_read_model_is_empty_not_missing(
    pool: PgPool,
) -> anyhow::Result<()> {
    // The server creates every read-model table before it serves, so a query that comes
    // before the projectors have run finds nothing instead of failing.
    let options = caseledger_tests::Options {
        projectors: false,
        ..caseledger_tests::Options::default()
    };
    let app = caseledger_tests::spawn_app_with(pool, options).await?;
    let response = app
        .client
        .post(app.url("/allocations/rank"))
        .json(&json!({"work": work()}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await?;
    assert_eq!(body["considered"], 0, "{body}");
    let response = app
        .client
        .get(app.url(&format!("/staff/{}", Uuid::new_v4())))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn no_staff_or_allocation_route_answers_a_server_error_to_bad_input(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let s = scenario(&app).await?;
    let id = s.ada;
    let case = Uuid::new_v4();
    let routes = [
        ("POST", "/staff".to_owned()),
        ("GET", "/staff?limit=-3".to_owned()),
        ("GET", "/staff?offset=x".to_owned()),
        ("PUT", format!("/staff/{id}")),
        ("PUT", format!("/staff/{id}/availability")),
        ("PUT", "/staff/not-a-uuid/availability".to_owned()),
        ("GET", format!("/staff/{id}/state?as_of=yesterday")),
        ("POST", "/allocations/rank".to_owned()),
        ("POST", "/allocations".to_owned()),
        ("GET", format!("/allocations/case/{case}")),
        ("GET", "/allocations/case/nope".to_owned()),
        ("POST", format!("/allocations/task/{case}/release")),
        ("POST", format!("/allocations/referral/{case}/replay")),
    ];
    let bodies = [
        None,
        Some(json!({})),
        Some(json!([])),
        Some(json!({"work": 5, "weights": "heavy", "slots": {}})),
        Some(json!({"name": "X", "skills": ["a"], "max_workload": 1e30,
                    "home": {"lat_e6": 1e30, "lon_e6": -1}, "reason": ""})),
        Some(json!({"work_kind": "case", "work_id": case, "limit": 99,
                    "work": {"slot": {"weekday": "someday", "start_minute": 0, "end_minute": 1},
                             "location": {"lat_e6": 0, "lon_e6": 0}, "client_id": case}})),
        Some(json!({"work": {"required_skills": ["x".repeat(100)],
                             "slot": {"weekday": "monday", "start_minute": -1, "end_minute": 70_000},
                             "location": {"lat_e6": 0, "lon_e6": 0}, "client_id": case},
                    "weights": {"skill_match": i64::MAX}})),
    ];
    for (method, path) in &routes {
        for body in &bodies {
            let request = match *method {
                "GET" => app.client.get(app.url(path)),
                "PUT" => app.client.put(app.url(path)),
                _ => app.client.post(app.url(path)),
            };
            let request = match body {
                Some(b) => request.json(b),
                None => request,
            };
            let response = request.send().await?;
            let status = response.status();
            let text = response.text().await?;
            assert!(
                !status.is_server_error(),
                "{method} {path} with {body:?}: {status} {text}"
            );
        }
    }
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn racing_allocations_of_one_piece_of_work_allocate_it_once(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let s = scenario(&app).await?;
    let referral = Uuid::new_v4();
    let staff = [s.ada, s.ben, s.cal, s.dee];
    let requests = (0..8).map(|i| {
        app.client
            .post(app.url("/allocations"))
            .query(&[("min_cursor", &s.cursor)])
            .json(
                &json!({"work_kind": "referral", "work_id": referral, "work": work(),
                          "staff_id": staff[i % 4]}),
            )
            .send()
    });
    let mut created = 0;
    for response in futures_util::future::join_all(requests).await {
        let (status, body) = json_of(response?).await?;
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => assert_eq!(body["code"], "work_already_allocated", "{body}"),
            other => anyhow::bail!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created, 1);
    let (_, shown) = json_of(
        app.client
            .get(app.url(&format!("/allocations/referral/{referral}")))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(shown["version"], 1, "one WorkAllocated event: {shown}");
    Ok(())
}
