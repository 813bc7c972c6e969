//! Every read model as specifications: given these domain events in the log, once the model
//! has caught up, then its queries answer these rows. One spec at least per model of
//! `projections::all()`; each also checks that the live rows equal a rebuild (see `support`).

mod support;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use domain::credential::{Credential, CredentialEvent, CredentialKind};
use domain::jurisdiction::Jurisdiction;
use domain::notification::{
    render, Notification, NotificationContent, NotificationEvent, Severity,
};
use domain::physician::{Npi, Physician, PhysicianEvent};
use domain::practice::{Address, Ein, Phone, Practice, PracticeEvent, PracticeKind, ZipCode};
use domain::renewal::{checklist_for, CredentialFacts, Origin, Renewal, RenewalEvent};
use domain::staff::{GeoPoint, StaffEvent, StaffMember, StaffPreferences};
use domain::workflow::definition::{
    Definition, DefinitionEvent, OnFailure, StepDef, WorkflowDefinition,
};
use domain::workflow::run::{RunEvent, WaitOn, WorkflowRun};
use domain::workqueue::department::{Department, DepartmentEvent};
use projections::catalogue::{self, StreamCatalogue};
use projections::credentialing::{self, CredentialingModel, RenewalQuery};
use projections::notifications::{self, NotificationQuery, NotificationsModel};
use projections::practices::{self, PracticesModel};
use projections::staffing::{self, StaffingModel};
use projections::workflows::{self, RunFilter, StepStats, WorkflowsModel};
use projections::workqueue::{self, WorkQueueModel};
use sqlx::PgPool;
use support::ReadModelSpec;
use uuid::Uuid;

const PHYSICIAN: Uuid = Uuid::from_u128(0xD0);
const CREDENTIAL: Uuid = Uuid::from_u128(0xC0);
const RENEWAL: Uuid = Uuid::from_u128(0xE0);

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid calendar date")
}

/// Noon UTC on the day.
fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0)
        .single()
        .expect("a valid time")
}

fn texas() -> Jurisdiction {
    Jurisdiction::parse("TX").expect("a US state code")
}

fn physician_registered() -> PhysicianEvent {
    PhysicianEvent::PhysicianRegistered {
        npi: Npi::parse("1234567893").expect("an NPI with a valid check digit"),
        name: "Dr. Ada Okafor".into(),
        email: "ada.okafor@example.org".into(),
        specialty: "Cardiology".into(),
        states: vec![texas()],
    }
}

fn licence_registered() -> CredentialEvent {
    CredentialEvent::CredentialRegistered {
        physician_id: PHYSICIAN,
        kind: CredentialKind::License,
        jurisdiction: texas(),
        number: "TX-40411".into(),
        expiry: date(2026, 6, 30),
    }
}

fn licence_facts() -> CredentialFacts {
    CredentialFacts {
        credential_id: CREDENTIAL,
        physician_id: PHYSICIAN,
        kind: CredentialKind::License,
        jurisdiction: texas(),
        expiry: date(2026, 6, 30),
        has_state_csr: false,
    }
}

/// A licence renewal initiated, started, with every required item done, and filed.
fn filed_renewal() -> Vec<RenewalEvent> {
    let facts = licence_facts();
    let checklist = checklist_for(&facts);
    let mut events = vec![
        RenewalEvent::RenewalInitiated {
            credential_id: facts.credential_id,
            physician_id: facts.physician_id,
            kind: facts.kind,
            jurisdiction: facts.jurisdiction,
            credential_expiry: facts.expiry,
            checklist: checklist.clone(),
            origin: Origin::Manual,
            at: at(2026, 4, 1),
        },
        RenewalEvent::RenewalStarted { at: at(2026, 4, 2) },
    ];
    events.extend(
        checklist
            .into_iter()
            .filter(|item| item.required)
            .map(|item| RenewalEvent::ChecklistItemCompleted {
                item: item.key,
                at: at(2026, 4, 3),
            }),
    );
    events.push(RenewalEvent::RenewalFiled { at: at(2026, 4, 4) });
    events
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_filed_renewal_shows_as_filed_in_the_renewal_list(pool: PgPool) -> anyhow::Result<()> {
    let pool = ReadModelSpec::new(pool, CredentialingModel)
        .given::<Physician>(PHYSICIAN, [physician_registered()])
        .await?
        .given::<Credential>(
            CREDENTIAL,
            [
                licence_registered(),
                CredentialEvent::RenewalOpened {
                    renewal_id: RENEWAL,
                },
            ],
        )
        .await?
        .given::<Renewal>(RENEWAL, filed_renewal())
        .await?
        .projected()
        .await?;

    let query = RenewalQuery {
        limit: 10,
        ..RenewalQuery::default()
    };
    let (rows, total) = credentialing::list_renewals(&pool, &query).await?;
    assert_eq!(total, 1);
    let row = &rows[0];
    assert_eq!(row.renewal_id, RENEWAL);
    assert_eq!(row.status, "filed");
    assert_eq!(row.physician_name.as_deref(), Some("Dr. Ada Okafor"));
    assert_eq!(row.credential_number.as_deref(), Some("TX-40411"));
    assert_eq!(row.kind, "license");
    assert_eq!(row.jurisdiction, "TX");
    assert_eq!(row.credential_expiry, date(2026, 6, 30));
    assert_eq!(row.origin, "manual");
    assert_eq!(row.initiated_at, at(2026, 4, 1));
    let credentials =
        credentialing::credentials(&pool, Some(PHYSICIAN), None, date(2026, 4, 15)).await?;
    assert_eq!(credentials.len(), 1, "{credentials:?}");
    let credential = &credentials[0];
    assert_eq!(credential.number, "TX-40411");
    assert_eq!(credential.days_to_expiry, 76);
    assert_eq!(credential.open_renewal_id, Some(RENEWAL));
    assert_eq!(credential.open_renewal_status.as_deref(), Some("filed"));
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_scheduled_notification_waits_in_the_outbox_with_its_rendered_message(
    pool: PgPool,
) -> anyhow::Result<()> {
    let notification = Uuid::from_u128(0xA0);
    let content = NotificationContent {
        physician_name: "Dr. Ada Okafor".into(),
        credential_kind: CredentialKind::License,
        jurisdiction: texas(),
        expiry: date(2026, 6, 30),
        days_remaining: 30,
        required_action: "File the renewal".into(),
        severity: Severity::Warning,
        contact: "credentialing@example.org".into(),
    };
    let message = render(&content);
    let scheduled = NotificationEvent::NotificationScheduled {
        credential_id: Some(CREDENTIAL),
        physician_id: Some(PHYSICIAN),
        trigger_days: 30,
        severity: Severity::Warning,
        content,
        message: message.clone(),
        due_at: at(2026, 5, 31),
    };
    let pool = ReadModelSpec::new(pool, NotificationsModel)
        .given_by::<Notification>("job:notifications", notification, [scheduled])
        .await?
        .projected()
        .await?;

    let outbox = NotificationQuery {
        outbox: true,
        limit: 10,
        ..NotificationQuery::default()
    };
    let (rows, total) = notifications::list(&pool, &outbox).await?;
    assert_eq!(total, 1);
    let row = &rows[0];
    assert_eq!(row.notification_id, notification);
    assert_eq!(row.status, "pending");
    assert_eq!(row.severity, "warning");
    assert_eq!(row.trigger_days, 30);
    assert_eq!(row.physician_name, "Dr. Ada Okafor");
    assert_eq!(row.subject, message.subject);
    assert_eq!(row.body, message.body);
    assert_eq!(row.attempts, 0);
    assert!(notifications::attempts(&pool, notification)
        .await?
        .is_empty());
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_created_practice_is_listed_active_with_its_address_and_no_physicians(
    pool: PgPool,
) -> anyhow::Result<()> {
    let practice = Uuid::from_u128(0xB0);
    let created = PracticeEvent::PracticeCreated {
        name: "Lakeside Cardiology".into(),
        kind: PracticeKind::Group,
        specialty: "Cardiology".into(),
        address: Address {
            street: "1 Lake Road".into(),
            city: "Austin".into(),
            state: texas(),
            zip: ZipCode::parse("78701").expect("a ZIP code"),
        },
        phone: Phone::parse("512-555-0100").expect("a phone number"),
        email: "office@lakeside.example.org".into(),
        npi: Npi::parse("1234567893").expect("an NPI with a valid check digit"),
        ein: Ein::parse("12-3456789").expect("an EIN"),
    };
    let pool = ReadModelSpec::new(pool, PracticesModel)
        .given::<Practice>(practice, [created])
        .await?
        .projected()
        .await?;

    let (rows, total) = practices::list(&pool, Some("lakeside"), None, Some(true), 10, 0).await?;
    assert_eq!(total, 1);
    let row = &rows[0];
    assert_eq!(row.practice_id, practice);
    assert_eq!(row.name, "Lakeside Cardiology");
    assert_eq!(row.city, "Austin");
    assert_eq!(row.state, "TX");
    assert_eq!(row.zip, "78701");
    assert_eq!(row.ein, "12-3456789");
    assert!(row.active);
    assert_eq!(row.physician_count, 0);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_registered_staff_member_is_listed_with_their_skills_and_no_workload(
    pool: PgPool,
) -> anyhow::Result<()> {
    let staff = Uuid::from_u128(0xF0);
    let registered = StaffEvent::StaffMemberRegistered {
        name: "Grace Mbeki".into(),
        skills: ["phlebotomy".to_owned(), "wound care".to_owned()].into(),
        home: GeoPoint::new(30_267_200, -97_743_100).expect("a point on Earth"),
        max_workload: 5,
        preferences: StaffPreferences::default(),
    };
    let pool = ReadModelSpec::new(pool, StaffingModel)
        .given::<StaffMember>(staff, [registered])
        .await?
        .projected()
        .await?;

    let (rows, total) = staffing::list_staff(&pool, Some("wound"), 10, 0).await?;
    assert_eq!(total, 1, "found by a skill");
    let row = &rows[0];
    assert_eq!(row.staff_id, staff);
    assert_eq!(row.name, "Grace Mbeki");
    assert_eq!(row.skills, ["phlebotomy", "wound care"]);
    assert_eq!(
        (row.home_lat_e6, row.home_lon_e6),
        (30_267_200, -97_743_100)
    );
    assert_eq!(row.max_workload, 5);
    assert_eq!(row.current_workload, 0);
    assert!(row.availability.is_empty());
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_department_created_under_another_appears_below_it_in_the_department_tree(
    pool: PgPool,
) -> anyhow::Result<()> {
    let parent = Uuid::from_u128(0x10);
    let child = Uuid::from_u128(0x11);
    let pool = ReadModelSpec::new(pool, WorkQueueModel)
        .given::<Department>(
            parent,
            [DepartmentEvent::DepartmentCreated {
                code: "CARD".into(),
                name: "Cardiology".into(),
                parent_id: None,
                at: at(2026, 4, 1),
            }],
        )
        .await?
        .given::<Department>(
            child,
            [
                DepartmentEvent::DepartmentCreated {
                    code: "ECHO".into(),
                    name: "Echo lab".into(),
                    parent_id: Some(parent),
                    at: at(2026, 4, 2),
                },
                DepartmentEvent::DepartmentRenamed {
                    name: "Echocardiography".into(),
                    at: at(2026, 4, 3),
                },
            ],
        )
        .await?
        .projected()
        .await?;

    let tree = workqueue::departments(&pool).await?;
    let summary: Vec<_> = tree
        .iter()
        .map(|d| {
            (
                d.department_id,
                d.name.as_str(),
                d.parent_id,
                d.depth,
                d.path.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (parent, "Cardiology", None, 0, vec!["CARD".to_owned()]),
            (
                child,
                "Echocardiography",
                Some(parent),
                1,
                vec!["CARD".to_owned(), "ECHO".to_owned()]
            ),
        ]
    );
    assert_eq!(tree[1].created_at, at(2026, 4, 2));
    assert_eq!(tree[1].updated_at, at(2026, 4, 3));
    assert_eq!(tree[1].version, 2);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn every_stream_written_is_in_the_catalogue_with_its_type_and_event_count(
    pool: PgPool,
) -> anyhow::Result<()> {
    let pool = ReadModelSpec::new(pool, StreamCatalogue)
        .given::<Physician>(PHYSICIAN, [physician_registered()])
        .await?
        .given::<Renewal>(RENEWAL, filed_renewal())
        .await?
        .projected()
        .await?;

    let entries = catalogue::list(&pool, None, None, 10).await?;
    let summary: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e.stream_id,
                e.stream_type.as_str(),
                e.version,
                e.event_count,
            )
        })
        .collect();
    let renewal_events = i64::try_from(filed_renewal().len())?;
    assert_eq!(
        summary,
        [
            (PHYSICIAN, "physician", 1, 1),
            (RENEWAL, "renewal", renewal_events, renewal_events),
        ]
    );
    Ok(())
}

/// A step of kind `http` after `depends_on`, with no condition or policy.
fn step(id: &str, depends_on: &[&str]) -> StepDef {
    StepDef {
        id: id.into(),
        kind: "http".into(),
        depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
        config: serde_json::json!({ "url": "https://example.org/hook" }),
        when: None,
        retry: None,
        on_failure: OnFailure::default(),
        timeout_secs: None,
    }
}

fn definition(key: &str, name: &str, steps: &[&str]) -> Definition {
    Definition {
        key: key.into(),
        name: name.into(),
        description: format!("{name}, as a workflow"),
        input_schema: None,
        steps: steps
            .iter()
            .enumerate()
            .map(|(i, id)| step(id, if i == 0 { &[] } else { &steps[i - 1..i] }))
            .collect(),
    }
}

fn registered(version: u32, definition: Definition, when: DateTime<Utc>) -> DefinitionEvent {
    DefinitionEvent::WorkflowVersionRegistered {
        version,
        definition,
        by: "user:ada".into(),
        at: when,
    }
}

/// `when` plus `ms` milliseconds.
fn plus_ms(when: DateTime<Utc>, ms: i64) -> DateTime<Utc> {
    when + chrono::Duration::milliseconds(ms)
}

/// A run of `definition` started at `when`, with its first step made ready, as the aggregate
/// decides it.
fn run_started(
    run_id: Uuid,
    version: u32,
    definition: &Definition,
    business_key: Option<&str>,
    when: DateTime<Utc>,
) -> Vec<RunEvent> {
    vec![
        RunEvent::RunStarted {
            run_id,
            key: definition.key.clone(),
            version,
            name: definition.name.clone(),
            steps: definition.steps.clone(),
            input: serde_json::json!({ "order": 42 }),
            business_key: business_key.map(str::to_owned),
            by: "user:ada".into(),
            at: when,
        },
        RunEvent::StepReady {
            step: definition.steps[0].id.clone(),
            attempt: 1,
            not_before: when,
            at: when,
        },
    ]
}

/// Attempt `attempt` of `step` started at `from` and succeeded `ms` later.
fn attempt_succeeded(step: &str, attempt: u32, from: DateTime<Utc>, ms: i64) -> [RunEvent; 2] {
    [
        RunEvent::AttemptStarted {
            step: step.into(),
            attempt,
            idempotency_key: format!("run:{step}:{attempt}"),
            lease_until: plus_ms(from, 60_000),
            at: from,
        },
        RunEvent::AttemptSucceeded {
            step: step.into(),
            attempt,
            output: serde_json::json!({ "ok": true }),
            at: plus_ms(from, ms),
        },
    ]
}

/// Every row of `workflow_step_durations`, by run, step and attempt.
async fn step_durations(
    pool: &PgPool,
) -> anyhow::Result<
    Vec<(
        Uuid,
        String,
        i32,
        String,
        i32,
        DateTime<Utc>,
        DateTime<Utc>,
        i64,
    )>,
> {
    Ok(sqlx::query_as(
        "SELECT run_id, key, version, step, attempt, started_at, ended_at, duration_ms \
         FROM read_models.workflow_step_durations ORDER BY run_id, step, attempt",
    )
    .fetch_all(pool)
    .await?)
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_second_version_of_a_workflow_becomes_its_latest(pool: PgPool) -> anyhow::Result<()> {
    let stream = Uuid::from_u128(0x1F0);
    let pool = ReadModelSpec::new(pool, WorkflowsModel)
        .given::<WorkflowDefinition>(
            stream,
            [
                registered(
                    1,
                    definition("onboarding", "Onboarding", &["check"]),
                    at(2026, 5, 1),
                ),
                registered(
                    2,
                    definition(
                        "onboarding",
                        "Onboarding v2",
                        &["check", "notify", "archive"],
                    ),
                    at(2026, 5, 3),
                ),
            ],
        )
        .await?
        .projected()
        .await?;

    let rows = workflows::list_definitions(&pool, None).await?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row.key, "onboarding");
    assert_eq!(row.definition_id, stream);
    assert_eq!(row.name, "Onboarding v2");
    assert_eq!(row.description, "Onboarding v2, as a workflow");
    assert_eq!((row.latest_version, row.versions), (2, 2));
    assert_eq!(row.steps, 3);
    assert!(row.active);
    assert_eq!(row.registered_at, at(2026, 5, 1));
    assert_eq!(row.updated_at, at(2026, 5, 3));
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_deactivated_workflow_is_listed_inactive_until_activated_again(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (intake, billing) = (Uuid::from_u128(0x1F1), Uuid::from_u128(0x1F2));
    let pool = ReadModelSpec::new(pool, WorkflowsModel)
        .given::<WorkflowDefinition>(
            intake,
            [
                registered(
                    1,
                    definition("intake", "Intake", &["check"]),
                    at(2026, 5, 1),
                ),
                DefinitionEvent::WorkflowDeactivated {
                    by: "user:ada".into(),
                    at: at(2026, 5, 2),
                },
                // A new version keeps the key deactivated.
                registered(
                    2,
                    definition("intake", "Intake", &["check"]),
                    at(2026, 5, 3),
                ),
            ],
        )
        .await?
        .given::<WorkflowDefinition>(
            billing,
            [
                registered(
                    1,
                    definition("billing", "Billing", &["bill"]),
                    at(2026, 5, 1),
                ),
                DefinitionEvent::WorkflowDeactivated {
                    by: "user:ada".into(),
                    at: at(2026, 5, 2),
                },
                DefinitionEvent::WorkflowActivated {
                    by: "user:ada".into(),
                    at: at(2026, 5, 4),
                },
            ],
        )
        .await?
        .projected()
        .await?;

    let summary = |rows: Vec<workflows::DefinitionRow>| -> Vec<(String, bool, i32, DateTime<Utc>)> {
        rows.into_iter()
            .map(|r| (r.key, r.active, r.versions, r.updated_at))
            .collect()
    };
    assert_eq!(
        summary(workflows::list_definitions(&pool, None).await?),
        [
            ("billing".to_owned(), true, 1, at(2026, 5, 4)),
            ("intake".to_owned(), false, 2, at(2026, 5, 3)),
        ]
    );
    assert_eq!(
        summary(workflows::list_definitions(&pool, Some(false)).await?),
        [("intake".to_owned(), false, 2, at(2026, 5, 3))]
    );
    assert_eq!(
        summary(workflows::list_definitions(&pool, Some(true)).await?),
        [("billing".to_owned(), true, 1, at(2026, 5, 4))]
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_run_whose_step_succeeded_is_completed_with_the_attempt_s_duration(
    pool: PgPool,
) -> anyhow::Result<()> {
    let run = Uuid::from_u128(0x2F0);
    let def = definition("onboarding", "Onboarding", &["check"]);
    let started = at(2026, 5, 5);
    let mut events = run_started(run, 1, &def, Some("ORDER-42"), started);
    events.extend(attempt_succeeded("check", 1, plus_ms(started, 250), 1_500));
    events.push(RunEvent::RunCompleted {
        output: serde_json::json!({ "check": { "output": { "ok": true } } }),
        at: plus_ms(started, 1_750),
    });
    let pool = ReadModelSpec::new(pool, WorkflowsModel)
        .given::<WorkflowRun>(run, events)
        .await?
        .projected()
        .await?;

    let page = workflows::list_runs(
        &pool,
        &RunFilter {
            limit: 10,
            ..RunFilter::default()
        },
    )
    .await?;
    assert_eq!((page.total, page.limit, page.offset), (1, 10, 0));
    let row = &page.items[0];
    assert_eq!(row.run_id, run);
    assert_eq!((row.key.as_str(), row.version), ("onboarding", 1));
    assert_eq!(row.name, "Onboarding");
    assert_eq!(row.status, "completed");
    assert_eq!(row.business_key.as_deref(), Some("ORDER-42"));
    assert_eq!(row.started_by, "user:ada");
    assert_eq!(row.started_at, started);
    assert_eq!(row.ended_at, Some(plus_ms(started, 1_750)));
    assert_eq!(
        (row.error.as_deref(), row.cancelled_by.as_deref()),
        (None, None)
    );
    assert_eq!(
        (row.steps_total, row.steps_finished, row.steps_running),
        (1, 1, 0)
    );
    assert_eq!(
        step_durations(&pool).await?,
        [(
            run,
            "onboarding".to_owned(),
            1,
            "check".to_owned(),
            1,
            plus_ms(started, 250),
            plus_ms(started, 1_750),
            1_500
        )]
    );
    assert_eq!(
        workflows::step_duration_stats(&pool, "onboarding", None).await?,
        [StepStats {
            step: "check".into(),
            samples: 1,
            p50_ms: 1_500.0,
            mean_ms: 1_500.0,
        }]
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_retried_step_measures_only_its_successful_attempt_and_the_next_step_counts_running(
    pool: PgPool,
) -> anyhow::Result<()> {
    let run = Uuid::from_u128(0x2F1);
    let def = definition("onboarding", "Onboarding", &["check", "notify"]);
    let t = at(2026, 5, 6);
    let mut events = run_started(run, 1, &def, None, t);
    events.extend([
        RunEvent::AttemptStarted {
            step: "check".into(),
            attempt: 1,
            idempotency_key: "run:check:1".into(),
            lease_until: plus_ms(t, 60_000),
            at: t,
        },
        RunEvent::AttemptFailed {
            step: "check".into(),
            attempt: 1,
            error: "HTTP 503".into(),
            interrupted: false,
            at: plus_ms(t, 400),
        },
        RunEvent::StepReady {
            step: "check".into(),
            attempt: 2,
            not_before: plus_ms(t, 1_400),
            at: plus_ms(t, 400),
        },
    ]);
    events.extend(attempt_succeeded("check", 2, plus_ms(t, 1_500), 700));
    events.push(RunEvent::StepReady {
        step: "notify".into(),
        attempt: 1,
        not_before: plus_ms(t, 2_200),
        at: plus_ms(t, 2_200),
    });
    events.push(RunEvent::AttemptStarted {
        step: "notify".into(),
        attempt: 1,
        idempotency_key: "run:notify:1".into(),
        lease_until: plus_ms(t, 62_300),
        at: plus_ms(t, 2_300),
    });
    let pool = ReadModelSpec::new(pool, WorkflowsModel)
        .given::<WorkflowRun>(run, events)
        .await?
        .projected()
        .await?;

    let page = workflows::list_runs(
        &pool,
        &RunFilter {
            limit: 10,
            ..RunFilter::default()
        },
    )
    .await?;
    let row = &page.items[0];
    assert_eq!((row.status.as_str(), row.ended_at), ("running", None));
    assert_eq!(
        (row.steps_total, row.steps_finished, row.steps_running),
        (2, 1, 1)
    );
    let durations = step_durations(&pool).await?;
    let measured: Vec<_> = durations
        .iter()
        .map(|d| (d.3.as_str(), d.4, d.5, d.7))
        .collect();
    assert_eq!(measured, [("check", 2, plus_ms(t, 1_500), 700)]);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_cancelled_run_ends_with_its_reason_and_nothing_running(
    pool: PgPool,
) -> anyhow::Result<()> {
    let run = Uuid::from_u128(0x2F2);
    let def = definition("intake", "Intake", &["review", "notify"]);
    let t = at(2026, 5, 7);
    let mut events = run_started(run, 1, &def, Some("CASE-7"), t);
    events.extend([
        RunEvent::AttemptStarted {
            step: "review".into(),
            attempt: 1,
            idempotency_key: "run:review:1".into(),
            lease_until: plus_ms(t, 60_000),
            at: t,
        },
        RunEvent::AttemptWaiting {
            step: "review".into(),
            attempt: 1,
            on: WaitOn::Task {
                task_id: Uuid::from_u128(0x3F0),
            },
            deadline: None,
            at: plus_ms(t, 100),
        },
        RunEvent::RunCancelled {
            by: "user:grace".into(),
            reason: "duplicate intake".into(),
            at: at(2026, 5, 8),
        },
    ]);
    let pool = ReadModelSpec::new(pool, WorkflowsModel)
        .given::<WorkflowRun>(run, events)
        .await?
        .projected()
        .await?;

    let page = workflows::list_runs(
        &pool,
        &RunFilter {
            status: Some("cancelled".into()),
            limit: 10,
            ..RunFilter::default()
        },
    )
    .await?;
    assert_eq!(page.total, 1);
    let row = &page.items[0];
    assert_eq!(row.run_id, run);
    assert_eq!(row.status, "cancelled");
    assert_eq!(row.ended_at, Some(at(2026, 5, 8)));
    assert_eq!(row.error.as_deref(), Some("duplicate intake"));
    assert_eq!(row.cancelled_by.as_deref(), Some("user:grace"));
    assert_eq!(
        (row.steps_total, row.steps_finished, row.steps_running),
        (2, 0, 0)
    );
    assert!(step_durations(&pool).await?.is_empty());
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn runs_are_listed_newest_first_by_filter_and_step_durations_summed_up_per_version(
    pool: PgPool,
) -> anyhow::Result<()> {
    let def = definition("onboarding", "Onboarding", &["check"]);
    let other = definition("billing", "Billing", &["bill"]);
    let (a, b, c, d) = (
        Uuid::from_u128(0x2A),
        Uuid::from_u128(0x2B),
        Uuid::from_u128(0x2C),
        Uuid::from_u128(0x2D),
    );
    // Completed runs of onboarding taking 1000 ms (version 1), 3000 and 8000 ms (version 2).
    let completed = |run: Uuid, version: u32, day: u32, ms: i64| {
        let mut events = run_started(run, version, &def, Some("ORDER-1"), at(2026, 6, day));
        events.extend(attempt_succeeded("check", 1, at(2026, 6, day), ms));
        events.push(RunEvent::RunCompleted {
            output: serde_json::json!({}),
            at: plus_ms(at(2026, 6, day), ms),
        });
        events
    };
    let mut failed = run_started(d, 1, &other, Some("ORDER-1"), at(2026, 6, 4));
    failed.extend([
        RunEvent::AttemptStarted {
            step: "bill".into(),
            attempt: 1,
            idempotency_key: "run:bill:1".into(),
            lease_until: at(2026, 6, 5),
            at: at(2026, 6, 4),
        },
        RunEvent::AttemptFailed {
            step: "bill".into(),
            attempt: 1,
            error: "card declined".into(),
            interrupted: false,
            at: at(2026, 6, 4),
        },
        RunEvent::StepFailed {
            step: "bill".into(),
            error: "card declined".into(),
            at: at(2026, 6, 4),
        },
        RunEvent::RunFailed {
            step: "bill".into(),
            error: "card declined".into(),
            at: at(2026, 6, 4),
        },
    ]);
    let pool = ReadModelSpec::new(pool, WorkflowsModel)
        .given::<WorkflowRun>(a, completed(a, 1, 1, 1_000))
        .await?
        .given::<WorkflowRun>(b, completed(b, 2, 2, 3_000))
        .await?
        .given::<WorkflowRun>(c, completed(c, 2, 3, 8_000))
        .await?
        .given::<WorkflowRun>(d, failed)
        .await?
        .projected()
        .await?;

    let ids = |filter: RunFilter| {
        let pool = pool.clone();
        async move {
            let page = workflows::list_runs(&pool, &filter).await?;
            let ids: Vec<Uuid> = page.items.iter().map(|r| r.run_id).collect();
            anyhow::Ok((ids, page.total))
        }
    };
    let all = RunFilter {
        limit: 10,
        ..RunFilter::default()
    };
    assert_eq!(ids(all.clone()).await?, (vec![d, c, b, a], 4));
    assert_eq!(
        ids(RunFilter {
            limit: 2,
            offset: 1,
            ..all.clone()
        })
        .await?,
        (vec![c, b], 4)
    );
    assert_eq!(
        ids(RunFilter {
            key: Some("onboarding".into()),
            started_from: Some(at(2026, 6, 2)),
            started_to: Some(at(2026, 6, 3)),
            ..all.clone()
        })
        .await?,
        (vec![b], 1)
    );
    assert_eq!(
        ids(RunFilter {
            business_key: Some("ORDER-1".into()),
            status: Some("failed".into()),
            ..all.clone()
        })
        .await?,
        (vec![d], 1)
    );
    let page = workflows::list_runs(&pool, &all).await?;
    let failed = &page.items[0];
    assert_eq!(
        failed.error.as_deref(),
        Some("step \"bill\" failed: card declined")
    );
    assert_eq!((failed.steps_finished, failed.steps_running), (1, 0));

    let stats = |version| workflows::step_duration_stats(&pool, "onboarding", version);
    let check = |samples, p50_ms, mean_ms| {
        vec![StepStats {
            step: "check".into(),
            samples,
            p50_ms,
            mean_ms,
        }]
    };
    assert_eq!(stats(None).await?, check(3, 3_000.0, 4_000.0));
    assert_eq!(stats(Some(2)).await?, check(2, 5_500.0, 5_500.0));
    assert_eq!(stats(Some(1)).await?, check(1, 1_000.0, 1_000.0));
    assert!(workflows::step_duration_stats(&pool, "billing", None)
        .await?
        .is_empty());
    Ok(())
}
