//! Expiry notifications end to end: the daily check with an injected clock, delivery to a real
//! local webhook receiver with retries, and cancellation when a renewal moves the expiry.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use caseledger_tests::{spawn_app_with, Options, TestApp};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use commands::ManualClock;
use domain::credential::CredentialKind;
use domain::jurisdiction::Jurisdiction;
use domain::physician::PhysicianDetails;
use domain::renewal::{Origin, RenewalCommand};
use eventstore::Metadata;
use sqlx::PgPool;
use uuid::Uuid;

const SECRET: &str = "a-test-secret-of-some-length";

fn start() -> anyhow::Result<DateTime<Utc>> {
    Utc.with_ymd_and_hms(2027, 1, 4, 9, 0, 0)
        .single()
        .ok_or_else(|| anyhow::anyhow!("bad start date"))
}

/// A physician with one credential expiring on `expiry`, registered in process.
async fn credential(app: &TestApp, n: u32, expiry: NaiveDate) -> anyhow::Result<Uuid> {
    let npi = caseledger_tests::npi(n);
    let meta = Metadata::by("test");
    let tx = Jurisdiction::parse("TX")?;
    let physician = app
        .state
        .credentialing
        .register_physician(
            npi,
            PhysicianDetails {
                name: format!("Dr. Notified {n}"),
                email: format!("notified{n}@example.org"),
                specialty: "Cardiology".into(),
                states: vec![tx],
            },
            &meta,
        )
        .await?;
    let credential = app
        .state
        .credentialing
        .register_credential(
            physician.stream_id,
            CredentialKind::License,
            tx,
            format!("N-{n}"),
            expiry,
            &meta,
        )
        .await?;
    Ok(credential.stream_id)
}

fn check(app: &TestApp) -> commands::jobs::NotificationCheck {
    commands::jobs::NotificationCheck {
        deps: app.state.job_deps.clone(),
    }
}

fn dispatcher(app: &TestApp) -> commands::jobs::NotificationDispatch {
    commands::jobs::NotificationDispatch {
        deps: app.state.job_deps.clone(),
    }
}

async fn rows_for(
    app: &TestApp,
    credential: Uuid,
) -> anyhow::Result<Vec<projections::notifications::NotificationRow>> {
    let (mut rows, _) = projections::notifications::list(
        app.store.pool(),
        &projections::notifications::NotificationQuery {
            credential_id: Some(credential),
            limit: 100,
            ..Default::default()
        },
    )
    .await?;
    rows.sort_by_key(|r| std::cmp::Reverse(r.trigger_days));
    Ok(rows)
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn over_a_credentials_last_100_days_exactly_the_five_notifications_are_scheduled_once(
    pool: PgPool,
) -> anyhow::Result<()> {
    let clock = ManualClock::at(start()?);
    let app = spawn_app_with(
        pool,
        Options {
            clock: Some(Arc::new(clock.clone())),
            ..Options::default()
        },
    )
    .await?;
    let expiry = start()?.date_naive() + Duration::days(100);
    let watched = credential(&app, 1, expiry).await?;
    // Checks only start 25 days before this one expires (say, after downtime): only the most
    // urgent passed point is sent, not the 90- and 60-day ones.
    let late = credential(&app, 2, start()?.date_naive() + Duration::days(25)).await?;
    app.settle().await?;

    let check = check(&app);
    for day in 0..=100 {
        clock.set(start()? + Duration::days(day));
        let now = clock_now(&clock);
        if day % 10 == 0 {
            // Two checks at once schedule nothing twice.
            let (a, b) = tokio::join!(check.check(now), check.check(now));
            let (a, b) = (a?, b?);
            assert_eq!(a.failed + b.failed, 0, "{a:?} {b:?}");
        } else {
            let report = check.check(now).await?;
            assert_eq!(report.failed, 0, "{report:?}");
        }
    }
    app.settle().await?;
    let rows = rows_for(&app, watched).await?;
    let got: Vec<(i32, &str)> = rows
        .iter()
        .map(|r| (r.trigger_days, r.severity.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (90, "info"),
            (60, "info"),
            (30, "warning"),
            (7, "warning"),
            (1, "critical")
        ]
    );
    for row in &rows {
        assert_eq!(row.status, "pending");
        assert!(
            row.body.contains("Dr. Notified 1") && row.body.contains(&expiry.to_string()),
            "{}",
            row.body
        );
    }
    let late_points: Vec<i32> = rows_for(&app, late)
        .await?
        .iter()
        .map(|r| r.trigger_days)
        .collect();
    assert_eq!(late_points, vec![30, 7, 1]);
    Ok(())
}

fn clock_now(clock: &ManualClock) -> DateTime<Utc> {
    use commands::Clock;
    clock.now()
}

/// What the receiver saw.
#[derive(Debug, Clone)]
struct Seen {
    idempotency_key: String,
    signature_ok: bool,
}

/// A webhook receiver on a random local port that fails the first `failures` requests.
async fn receiver(failures: usize) -> anyhow::Result<(String, Arc<Mutex<Vec<Seen>>>)> {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let log = log.clone();
            async move {
                let signature = headers
                    .get(commands::notifications::SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                log.push(Seen {
                    idempotency_key: headers
                        .get(commands::notifications::IDEMPOTENCY_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    signature_ok: signature
                        == commands::notifications::signature(SECRET.as_bytes(), &body),
                });
                if log.len() <= failures {
                    (StatusCode::SERVICE_UNAVAILABLE, "try later")
                } else {
                    (StatusCode::OK, "ok")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, seen))
}

async fn app_with_receiver(
    pool: PgPool,
    clock: &ManualClock,
    url: &str,
) -> anyhow::Result<TestApp> {
    let channel = commands::notifications::channel_from_config(
        Some(url),
        Some(SECRET),
        std::time::Duration::from_secs(5),
    )?;
    spawn_app_with(
        pool,
        Options {
            clock: Some(Arc::new(clock.clone())),
            channel: Some(channel),
            ..Options::default()
        },
    )
    .await
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_receiver_that_fails_twice_gets_three_attempts_at_0_4_and_16_hours_and_the_last_delivers(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (url, seen) = receiver(2).await?;
    let clock = ManualClock::at(start()?);
    let app = app_with_receiver(pool, &clock, &url).await?;
    let credential = credential(&app, 3, start()?.date_naive() + Duration::days(20)).await?;
    app.settle().await?;
    check(&app).check(clock_now(&clock)).await?;
    app.settle().await?;
    let dispatch = dispatcher(&app);
    let t0 = start()?;
    let mut reports = Vec::new();
    for hours in [0, 3, 4, 10, 16, 20] {
        clock.set(t0 + Duration::hours(hours));
        reports.push((hours, dispatch.dispatch(clock_now(&clock)).await?));
        app.settle().await?;
    }
    let attempts_at: Vec<i64> = reports
        .iter()
        .filter(|(_, r)| r.delivered + r.failed_attempts > 0)
        .map(|(h, _)| *h)
        .collect();
    assert_eq!(attempts_at, vec![0, 4, 16], "{reports:?}");
    let rows = rows_for(&app, credential).await?;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!((row.status.as_str(), row.attempts), ("delivered", 3));
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.signature_ok), "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| s.idempotency_key == row.notification_id.to_string()),
        "{seen:?}"
    );
    let history =
        projections::notifications::attempts(app.store.pool(), row.notification_id).await?;
    let outcomes: Vec<(&str, DateTime<Utc>)> = history
        .iter()
        .map(|a| (a.outcome.as_str(), a.started_at))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("failed", t0),
            ("failed", t0 + Duration::hours(4)),
            ("delivered", t0 + Duration::hours(16))
        ]
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_receiver_that_always_fails_leaves_the_notification_failed_for_good_within_72_hours(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (url, seen) = receiver(usize::MAX).await?;
    let clock = ManualClock::at(start()?);
    let app = app_with_receiver(pool, &clock, &url).await?;
    let credential = credential(&app, 4, start()?.date_naive() + Duration::days(20)).await?;
    app.settle().await?;
    check(&app).check(clock_now(&clock)).await?;
    app.settle().await?;
    let dispatch = dispatcher(&app);
    for hours in [0, 4, 16, 40, 72, 100] {
        clock.set(start()? + Duration::hours(hours));
        dispatch.dispatch(clock_now(&clock)).await?;
        app.settle().await?;
    }
    let rows = rows_for(&app, credential).await?;
    let row = &rows[0];
    assert_eq!(
        (row.status.as_str(), row.attempts),
        ("failed", 3),
        "{row:?}"
    );
    assert_eq!(row.failed_at, Some(start()? + Duration::hours(16)));
    assert_eq!(seen.lock().unwrap_or_else(|p| p.into_inner()).len(), 3);

    // An admin can ask for one more attempt; it is made at the next dispatch.
    // (The test's first admin session has expired on the moved clock: log in afresh.)
    let admin = TestApp::client_with(&app.token_for("ops", domain::user::Role::Admin).await?)?;
    let retried = admin
        .post(app.url(&format!("/notifications/{}/retry", row.notification_id)))
        .send()
        .await?;
    assert_eq!(retried.status(), StatusCode::OK);
    app.settle().await?;
    let report = dispatch.dispatch(clock_now(&clock)).await?;
    assert_eq!(report.failed_attempts, 1, "{report:?}");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn approving_a_renewal_cancels_the_pending_notifications_for_the_old_expiry(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (url, seen) = receiver(0).await?;
    let clock = ManualClock::at(start()?);
    let app = app_with_receiver(pool, &clock, &url).await?;
    let expiry = start()?.date_naive() + Duration::days(20);
    let credential = credential(&app, 5, expiry).await?;
    app.settle().await?;
    check(&app).check(clock_now(&clock)).await?;

    // Renew it before the dispatcher runs.
    let meta = Metadata::by("test");
    let c = &app.state.credentialing;
    let renewal = Uuid::new_v4();
    c.initiate_renewal(credential, renewal, Origin::Manual, &meta)
        .await?;
    let (_, state) = c.renewals.load(renewal).await?;
    for item in state.open_required_items() {
        c.renewal_command(renewal, RenewalCommand::CompleteItem { item }, &meta)
            .await?;
    }
    for command in [
        RenewalCommand::File,
        RenewalCommand::BeginReview,
        RenewalCommand::Approve { new_expiry: None },
    ] {
        c.renewal_command(renewal, command, &meta).await?;
    }
    app.settle().await?;
    let report = dispatcher(&app).dispatch(clock_now(&clock)).await?;
    assert_eq!((report.cancelled, report.delivered), (1, 0), "{report:?}");
    app.settle().await?;
    let rows = rows_for(&app, credential).await?;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "cancelled");
    assert_eq!(rows[0].expiry, expiry);
    assert!(seen.lock().unwrap_or_else(|p| p.into_inner()).is_empty());

    // The next check notifies about the new expiry only when its own trigger point comes.
    let report = check(&app).check(clock_now(&clock)).await?;
    assert_eq!(report.scheduled, 0, "{report:?}");

    // Listed over HTTP with the delivery history.
    let body: serde_json::Value = app
        .client
        .get(app.url(&format!("/notifications/{}", rows[0].notification_id)))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(body["status"], "cancelled", "{body}");
    assert_eq!(body["attempts"], serde_json::json!([]));
    Ok(())
}

#[test]
fn a_webhook_that_is_not_http_or_has_no_secret_is_refused_at_start_up() -> anyhow::Result<()> {
    let bad = commands::notifications::channel_from_config(
        Some("ftp://example.org/hook"),
        Some(SECRET),
        std::time::Duration::from_secs(1),
    );
    assert!(bad.is_err_and(|e| e.to_string().contains("http")));
    let unsigned = commands::notifications::channel_from_config(
        Some("http://127.0.0.1:9/hook"),
        None,
        std::time::Duration::from_secs(1),
    );
    assert!(unsigned.is_err_and(|e| e.to_string().contains("CASELEDGER_WEBHOOK_SECRET")));
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_slow_or_unreachable_receiver_costs_a_failed_attempt_not_a_stalled_dispatcher(
    pool: PgPool,
) -> anyhow::Result<()> {
    // A receiver that accepts the connection and never answers, and a port nobody listens on.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let silent_url = format!("http://{}/hook", silent.local_addr()?);
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let nobody = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let nobody_url = format!("http://{}/hook", nobody.local_addr()?);
    drop(nobody);

    for (n, url, expected) in [
        (6, silent_url, "did not answer in time"),
        (7, nobody_url, "could not reach"),
    ] {
        let clock = ManualClock::at(start()?);
        let channel = commands::notifications::channel_from_config(
            Some(&url),
            Some(SECRET),
            std::time::Duration::from_millis(500),
        )?;
        let app = spawn_app_with(
            pool.clone(),
            Options {
                clock: Some(Arc::new(clock.clone())),
                channel: Some(channel),
                ..Options::default()
            },
        )
        .await?;
        let credential = credential(&app, n, start()?.date_naive() + Duration::days(20)).await?;
        app.settle().await?;
        check(&app).check(clock_now(&clock)).await?;
        app.settle().await?;
        let started = std::time::Instant::now();
        let report = dispatcher(&app).dispatch(clock_now(&clock)).await?;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the dispatcher stalled"
        );
        assert_eq!(report.failed_attempts, 1, "{report:?}");
        app.settle().await?;
        let rows = rows_for(&app, credential).await?;
        assert_eq!(rows[0].status, "pending", "retried later");
        let error = rows[0].last_error.clone().unwrap_or_default();
        assert!(error.contains(expected), "{error}");
    }
    held.abort();
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn two_dispatchers_at_once_deliver_a_notification_once(pool: PgPool) -> anyhow::Result<()> {
    let (url, seen) = receiver(0).await?;
    let clock = ManualClock::at(start()?);
    let app = app_with_receiver(pool, &clock, &url).await?;
    credential(&app, 8, start()?.date_naive() + Duration::days(5)).await?;
    app.settle().await?;
    check(&app).check(clock_now(&clock)).await?;
    app.settle().await?;
    // As if in two servers: separate command handlers (no shared in-process queue).
    let mut other = app.state.job_deps.clone();
    other.notifications = Arc::new(commands::notifications::Notifications::new(
        app.store.clone(),
        Arc::new(clock.clone()),
        app.state.job_deps.notifications.channel().clone(),
        api::config::DEFAULT_CONTACT.to_owned(),
    ));
    let one = dispatcher(&app);
    let two = commands::jobs::NotificationDispatch { deps: other };
    let now = clock_now(&clock);
    let (a, b) = tokio::join!(one.dispatch(now), two.dispatch(now));
    let (a, b) = (a?, b?);
    assert_eq!(a.delivered + b.delivered, 1, "{a:?} {b:?}");
    assert_eq!(seen.lock().unwrap_or_else(|p| p.into_inner()).len(), 1);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn retention_drops_old_notifications_from_the_read_model_by_severity_and_keeps_the_events(
    pool: PgPool,
) -> anyhow::Result<()> {
    let clock = ManualClock::at(start()?);
    let app = spawn_app_with(
        pool,
        Options {
            clock: Some(Arc::new(clock.clone())),
            ..Options::default()
        },
    )
    .await?;
    let info = credential(&app, 9, start()?.date_naive() + Duration::days(80)).await?;
    let warning = credential(&app, 10, start()?.date_naive() + Duration::days(20)).await?;
    app.settle().await?;
    check(&app).check(clock_now(&clock)).await?;
    app.settle().await?;
    let report = dispatcher(&app).dispatch(clock_now(&clock)).await?;
    assert_eq!(report.delivered, 2, "{report:?}");
    app.settle().await?;
    let info_id = rows_for(&app, info).await?[0].notification_id;

    // Four months on: past the 3 months of info, within the 6 of warning.
    clock.set(start()? + Duration::days(122));
    let run = app
        .state
        .jobs
        .run_now("notification-retention", "test")
        .await?;
    assert_eq!(
        run.result.as_ref().map(|r| r["archived"].clone()),
        Some(serde_json::json!(1)),
        "{run:?}"
    );
    app.settle().await?;
    assert!(rows_for(&app, info).await?.is_empty());
    assert_eq!(rows_for(&app, warning).await?.len(), 1);
    assert!(
        projections::notifications::attempts(app.store.pool(), info_id)
            .await?
            .is_empty()
    );
    let events = app.store.read_stream(info_id, 0).await?;
    assert_eq!(
        events.last().map(|e| e.event_type.as_str()),
        Some("NotificationArchived")
    );
    Ok(())
}
