//! Practices and physician assignment end to end, over HTTP.

use caseledger_tests::{npi, spawn_app, TestApp};
use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

fn practice_body(name: &str, n: u32, state: &str) -> Value {
    json!({
        "name": name, "kind": "group", "specialty": "Family Medicine",
        "address": {"street": "1 Main St", "city": "Austin", "state": state, "zip": "78701"},
        "phone": "(512) 555-0100", "email": "front@example.org", "npi": npi(900 + n), "ein": "12-3456789"
    })
}

async fn json_of(response: reqwest::Response) -> anyhow::Result<(StatusCode, Value)> {
    let status = response.status();
    Ok((status, response.json().await?))
}

async fn create_practice(app: &TestApp, name: &str, n: u32, state: &str) -> anyhow::Result<Uuid> {
    let (status, body) = json_of(
        app.client
            .post(app.url("/practices"))
            .json(&practice_body(name, n, state))
            .send()
            .await?,
    )
    .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "{status}: {body}");
    Ok(body["id"].as_str().unwrap_or_default().parse()?)
}

async fn physician(app: &TestApp, n: u32) -> anyhow::Result<Uuid> {
    let (status, body) = json_of(
        app.client
            .post(app.url("/physicians"))
            .json(&json!({"npi": npi(n), "name": format!("Dr. Member {n:03}"), "email": format!("m{n}@example.org"),
                          "specialty": "Family Medicine", "states": ["TX"]}))
            .send()
            .await?,
    )
    .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "{status}: {body}");
    Ok(body["id"].as_str().unwrap_or_default().parse()?)
}

async fn assign(app: &TestApp, practice: Uuid, ids: &[Uuid]) -> anyhow::Result<Value> {
    let (status, body) = json_of(
        app.client
            .post(app.url(&format!("/practices/{practice}/physicians")))
            .json(&json!({"physician_ids": ids}))
            .send()
            .await?,
    )
    .await?;
    anyhow::ensure!(status == StatusCode::OK, "{status}: {body}");
    Ok(body)
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn bulk_assignment_applies_the_valid_physicians_and_reports_each_invalid_one(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let north = create_practice(&app, "North Clinic", 1, "TX").await?;
    let south = create_practice(&app, "South Clinic", 2, "TX").await?;
    let free = physician(&app, 1).await?;
    let taken = physician(&app, 2).await?;
    let inactive = physician(&app, 3).await?;
    let unknown = Uuid::new_v4();
    assign(&app, south, &[taken]).await?;
    let deactivated = app
        .client
        .post(app.url(&format!("/physicians/{inactive}/deactivate")))
        .send()
        .await?;
    assert_eq!(deactivated.status(), StatusCode::OK);

    let body = assign(&app, north, &[free, taken, inactive, unknown, free]).await?;
    assert_eq!(body["changed"], 1, "{body}");
    let outcomes: Vec<(String, String)> = body["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|x| {
                    (
                        x["physician_id"].as_str().unwrap_or("").to_owned(),
                        x["outcome"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        outcomes,
        vec![
            (free.to_string(), "assigned".to_owned()),
            (taken.to_string(), "already_assigned_elsewhere".to_owned()),
            (inactive.to_string(), "inactive".to_owned()),
            (unknown.to_string(), "unknown".to_owned()),
        ]
    );
    assert_eq!(body["results"][1]["practice_id"], json!(south));

    let cursor = body["cursor"].as_str().unwrap_or_default().to_owned();
    let view: Value = app
        .client
        .get(app.url(&format!("/practices/{north}")))
        .query(&[("min_cursor", cursor)])
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(view["physician_count"], 1, "{view}");
    assert_eq!(view["physicians"][0]["physician_id"], json!(free));

    // A transfer is one command: out of North, into South.
    let moved = app
        .client
        .post(app.url(&format!("/practices/{north}/physicians/{free}/transfer")))
        .json(&json!({"to_practice_id": south}))
        .send()
        .await?;
    assert_eq!(moved.status(), StatusCode::OK);
    app.settle().await?;
    let south_view: Value = app
        .client
        .get(app.url(&format!("/practices/{south}")))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(south_view["physician_count"], 2, "{south_view}");
    let available: Value = app
        .client
        .get(app.url("/practices/available-physicians"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(available.as_array().map(Vec::len), Some(0), "{available}");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn concurrent_bulk_assignments_never_put_a_physician_in_two_practices(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let a = create_practice(&app, "Alpha Group", 3, "TX").await?;
    let b = create_practice(&app, "Beta Group", 4, "TX").await?;
    let mut ids = Vec::new();
    for n in 10..22 {
        ids.push(physician(&app, n).await?);
    }
    let reversed: Vec<Uuid> = ids.iter().rev().copied().collect();
    let (first, second) = tokio::join!(assign(&app, a, &ids), assign(&app, b, &reversed));
    let (first, second) = (first?, second?);
    let changed = first["changed"].as_u64().unwrap_or(0) + second["changed"].as_u64().unwrap_or(0);
    assert_eq!(changed, ids.len() as u64, "{first} {second}");
    app.settle().await?;
    let members: i64 = sqlx::query_scalar("SELECT count(*) FROM read_models.practice_members")
        .fetch_one(app.store.pool())
        .await?;
    assert_eq!(members, ids.len() as i64);
    for id in &ids {
        let joined: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE stream_id = $1 AND event_type = 'PhysicianJoinedPractice'",
        )
        .bind(domain::practice::PracticeMembership::stream_id(*id))
        .fetch_one(app.store.pool())
        .await?;
        assert_eq!(joined, 1, "physician {id}");
    }
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn invalid_practices_are_refused_naming_the_field_and_append_nothing(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    create_practice(&app, "Central Health", 5, "TX").await?;
    let before = app.store.head().await?;
    let mut bad_npi = practice_body("Other", 6, "TX");
    bad_npi["npi"] = json!("1234567890");
    let mut bad_ein = practice_body("Other", 6, "TX");
    bad_ein["ein"] = json!("12-345");
    let cases = [
        (
            "npi",
            bad_npi,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "ein",
            bad_ein,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "Central Health",
            practice_body("  central   HEALTH ", 7, "TX"),
            StatusCode::CONFLICT,
            "practice_name_taken",
        ),
    ];
    for (named, body, status, code) in cases {
        let (got, problem) = json_of(
            app.client
                .post(app.url("/practices"))
                .json(&body)
                .send()
                .await?,
        )
        .await?;
        assert_eq!(
            (got, problem["code"].as_str()),
            (status, Some(code)),
            "{named}: {problem}"
        );
        assert!(
            problem["detail"].as_str().unwrap_or("").contains(named),
            "{named}: {problem}"
        );
    }
    let (status, problem) = json_of(
        app.client
            .post(app.url(&format!("/practices/{}/physicians", Uuid::new_v4())))
            .json(&json!({"physician_ids": []}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field"))
    );
    assert_eq!(app.store.head().await?, before, "nothing appended");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_compliance_report_lists_physicians_without_a_licence_where_their_practice_operates(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    let practice = create_practice(&app, "Two State Clinic", 8, "TX").await?;
    let added = app
        .client
        .post(app.url(&format!("/practices/{practice}/locations")))
        .json(&json!({"name": "Sacramento office",
                       "address": {"street": "2 K St", "city": "Sacramento", "state": "CA", "zip": "95814"}}))
        .send()
        .await?;
    assert_eq!(added.status(), StatusCode::CREATED);
    let doc = physician(&app, 30).await?;
    let licence = app
        .client
        .post(app.url("/credentials"))
        .json(
            &json!({"physician_id": doc, "kind": "license", "jurisdiction": "TX", "number": "TX-30",
                      "expiry": (Utc::now() + Duration::days(400)).date_naive()}),
        )
        .send()
        .await?;
    assert_eq!(licence.status(), StatusCode::CREATED);
    assign(&app, practice, &[doc]).await?;
    app.settle().await?;
    let gaps: Value = app
        .client
        .get(app.url("/practices/reports/compliance"))
        .query(&[("practice_id", practice.to_string())])
        .send()
        .await?
        .json()
        .await?;
    let rows: Vec<(String, String)> = gaps
        .as_array()
        .map(|g| {
            g.iter()
                .map(|r| {
                    (
                        r["state"].as_str().unwrap_or("").to_owned(),
                        r["problem"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        rows,
        vec![("CA".to_owned(), "no_license".to_owned())],
        "{gaps}"
    );
    let coverage: Value = app
        .client
        .get(app.url("/practices/reports/coverage"))
        .send()
        .await?
        .json()
        .await?;
    let tx = coverage
        .as_array()
        .and_then(|c| c.iter().find(|r| r["state"] == "TX"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (
            tx["physicians"].as_i64(),
            tx["licensed"].as_i64(),
            tx["practices"].as_i64()
        ),
        (Some(1), Some(1), Some(1)),
        "{coverage}"
    );
    let specialties: Value = app
        .client
        .get(app.url("/practices/reports/specialties"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        specialties[0]["specialty"], "Family Medicine",
        "{specialties}"
    );
    assert_eq!(specialties[0]["assigned"], 1, "{specialties}");
    Ok(())
}
