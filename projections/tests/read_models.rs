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
use domain::workqueue::department::{Department, DepartmentEvent};
use projections::catalogue::{self, StreamCatalogue};
use projections::credentialing::{self, CredentialingModel, RenewalQuery};
use projections::notifications::{self, NotificationQuery, NotificationsModel};
use projections::practices::{self, PracticesModel};
use projections::staffing::{self, StaffingModel};
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
