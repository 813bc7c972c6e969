//! The credentialing read model: physicians, credentials and renewals, and the queries the
//! dashboard, the renewal screens and the renewal jobs run on them.
//!
//! Renewal rows are kept by the domain's own rules: each event is folded into a
//! [`domain::renewal::Renewal`] rebuilt from the row, and progress, next action and the open
//! flag are written from it, so the read model cannot compute them differently from the
//! aggregate. Days to expiry depend on "today" and are computed when queried, never stored.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use domain::credential::{Credential, CredentialEvent, CredentialKind};
use domain::jurisdiction::Jurisdiction;
use domain::physician::{Physician, PhysicianEvent};
use domain::renewal::{ChecklistItem, Origin, Renewal, RenewalEvent, RenewalStatus};
use domain::Aggregate;
use eventstore::RecordedEvent;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::projection::{decode, like_pattern, ApplyError, Projection};

#[derive(Debug, Clone, Copy, Default)]
pub struct CredentialingModel;

const CREATE_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS physicians (
    physician_id  uuid PRIMARY KEY,
    npi           text NOT NULL,
    name          text NOT NULL,
    email         text NOT NULL,
    specialty     text NOT NULL,
    states        text[] NOT NULL,
    active        boolean NOT NULL,
    registered_at timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS physicians_by_npi ON physicians (npi);
COMMENT ON TABLE physicians IS 'One row per physician: identity, specialty, states of practice, active flag.';
COMMENT ON COLUMN physicians.physician_id IS 'The physician stream id (UUID v5 of the NPI).';
COMMENT ON COLUMN physicians.npi IS 'National Provider Identifier (10 digits, check digit verified).';
COMMENT ON COLUMN physicians.name IS 'Full name.';
COMMENT ON COLUMN physicians.email IS 'Contact e-mail, lower-cased.';
COMMENT ON COLUMN physicians.specialty IS 'Medical specialty.';
COMMENT ON COLUMN physicians.states IS 'US states of practice (two-letter codes), sorted.';
COMMENT ON COLUMN physicians.active IS 'False once deactivated.';
COMMENT ON COLUMN physicians.registered_at IS 'When the physician was registered.';
COMMENT ON COLUMN physicians.updated_at IS 'When the latest physician event was recorded.';

CREATE TABLE IF NOT EXISTS credentials (
    credential_id   uuid PRIMARY KEY,
    physician_id    uuid NOT NULL,
    kind            text NOT NULL,
    jurisdiction    text NOT NULL,
    number          text NOT NULL,
    expiry          date NOT NULL,
    revoked         boolean NOT NULL,
    open_renewal_id uuid,
    registered_at   timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS credentials_by_expiry ON credentials (expiry) WHERE NOT revoked;
CREATE INDEX IF NOT EXISTS credentials_by_physician ON credentials (physician_id);
COMMENT ON TABLE credentials IS 'One row per credential (license, DEA, CSR): expiry and open renewal.';
COMMENT ON COLUMN credentials.credential_id IS 'The credential stream id.';
COMMENT ON COLUMN credentials.physician_id IS 'The physician who holds it.';
COMMENT ON COLUMN credentials.kind IS 'license, dea or csr.';
COMMENT ON COLUMN credentials.jurisdiction IS 'US state (two-letter code).';
COMMENT ON COLUMN credentials.number IS 'Licence or registration number, upper-cased.';
COMMENT ON COLUMN credentials.expiry IS 'Last day the credential is valid.';
COMMENT ON COLUMN credentials.revoked IS 'True once revoked.';
COMMENT ON COLUMN credentials.open_renewal_id IS 'The renewal currently open for it (at most one), if any.';
COMMENT ON COLUMN credentials.registered_at IS 'When the credential was registered.';
COMMENT ON COLUMN credentials.updated_at IS 'When the latest credential event was recorded.';

CREATE TABLE IF NOT EXISTS renewals (
    renewal_id        uuid PRIMARY KEY,
    credential_id     uuid NOT NULL,
    physician_id      uuid NOT NULL,
    kind              text NOT NULL,
    jurisdiction      text NOT NULL,
    credential_expiry date NOT NULL,
    status            text NOT NULL,
    is_open           boolean NOT NULL,
    progress          smallint NOT NULL,
    next_action       text,
    checklist         jsonb NOT NULL,
    origin            text NOT NULL,
    initiated_by      text NOT NULL,
    initiated_at      timestamptz NOT NULL,
    started_at        timestamptz,
    filed_at          timestamptz,
    review_started_at timestamptz,
    approved_at       timestamptz,
    rejected_at       timestamptz,
    expired_at        timestamptz,
    cancelled_at      timestamptz,
    rejection_reason  text,
    cancel_reason     text,
    new_expiry        date,
    resubmissions     integer NOT NULL,
    version           bigint NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS renewals_by_expiry ON renewals (credential_expiry, renewal_id);
CREATE INDEX IF NOT EXISTS renewals_open ON renewals (credential_expiry) WHERE is_open;
CREATE INDEX IF NOT EXISTS renewals_by_physician ON renewals (physician_id);
COMMENT ON TABLE renewals IS 'One row per renewal: status, progress, next action, checklist and timeline dates.';
COMMENT ON COLUMN renewals.renewal_id IS 'The renewal stream id.';
COMMENT ON COLUMN renewals.credential_id IS 'The credential being renewed.';
COMMENT ON COLUMN renewals.physician_id IS 'The physician holding the credential.';
COMMENT ON COLUMN renewals.kind IS 'Credential kind: license, dea or csr.';
COMMENT ON COLUMN renewals.jurisdiction IS 'Credential jurisdiction (US state).';
COMMENT ON COLUMN renewals.credential_expiry IS 'The credential''s expiry when the renewal was opened: the final deadline.';
COMMENT ON COLUMN renewals.status IS 'not_started, in_progress, filed, under_review, approved, rejected, expired or cancelled.';
COMMENT ON COLUMN renewals.is_open IS 'True while the renewal occupies its credential''s one open slot (not approved, expired or cancelled).';
COMMENT ON COLUMN renewals.progress IS 'Percent complete, by the domain''s rule for the status and checklist.';
COMMENT ON COLUMN renewals.next_action IS 'What to do next; null when nothing is left to do.';
COMMENT ON COLUMN renewals.checklist IS 'Items: key, title, required, due, fee_cents, completed_at, completed_by.';
COMMENT ON COLUMN renewals.origin IS 'manual or scan (opened by the automatic scan).';
COMMENT ON COLUMN renewals.initiated_by IS 'Actor who opened it.';
COMMENT ON COLUMN renewals.initiated_at IS 'When it was opened.';
COMMENT ON COLUMN renewals.started_at IS 'When work started (application date).';
COMMENT ON COLUMN renewals.filed_at IS 'When the application was filed with the board.';
COMMENT ON COLUMN renewals.review_started_at IS 'When the board review began.';
COMMENT ON COLUMN renewals.approved_at IS 'When it was approved.';
COMMENT ON COLUMN renewals.rejected_at IS 'When it was last rejected.';
COMMENT ON COLUMN renewals.expired_at IS 'When it was marked expired.';
COMMENT ON COLUMN renewals.cancelled_at IS 'When it was cancelled.';
COMMENT ON COLUMN renewals.rejection_reason IS 'The board''s reason for the last rejection.';
COMMENT ON COLUMN renewals.cancel_reason IS 'Why it was cancelled.';
COMMENT ON COLUMN renewals.new_expiry IS 'The credential''s new expiry recorded by the approval.';
COMMENT ON COLUMN renewals.resubmissions IS 'How often it was resubmitted after a rejection.';
COMMENT ON COLUMN renewals.version IS 'Version of the renewal stream this row reflects.';
COMMENT ON COLUMN renewals.updated_at IS 'When the latest renewal event was recorded.';
"#;

const EVENT_TYPES: &[&str] = &[
    "PhysicianRegistered",
    "PhysicianUpdated",
    "PhysicianDeactivated",
    "PhysicianReactivated",
    "CredentialRegistered",
    "CredentialExpiryCorrected",
    "CredentialRevoked",
    "RenewalOpened",
    "RenewalClosed",
    "CredentialRenewed",
    "RenewalInitiated",
    "RenewalStarted",
    "ChecklistItemCompleted",
    "RenewalFiled",
    "RenewalReviewStarted",
    "RenewalApproved",
    "RenewalRejected",
    "RenewalResubmitted",
    "RenewalExpired",
    "RenewalCancelled",
];

/// A checklist item as the read model shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistEntry {
    pub key: String,
    pub title: String,
    pub required: bool,
    pub due: Option<NaiveDate>,
    pub fee_cents: Option<i64>,
    pub completed_at: Option<DateTime<Utc>>,
    pub completed_by: Option<String>,
}

/// A row of `renewals`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct RenewalRow {
    pub renewal_id: Uuid,
    pub credential_id: Uuid,
    pub physician_id: Uuid,
    pub kind: String,
    pub jurisdiction: String,
    pub credential_expiry: NaiveDate,
    pub status: String,
    pub is_open: bool,
    pub progress: i16,
    pub next_action: Option<String>,
    #[sqlx(json)]
    pub checklist: Vec<ChecklistEntry>,
    pub origin: String,
    pub initiated_by: String,
    pub initiated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub filed_at: Option<DateTime<Utc>>,
    pub review_started_at: Option<DateTime<Utc>>,
    pub approved_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub expired_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub rejection_reason: Option<String>,
    pub cancel_reason: Option<String>,
    pub new_expiry: Option<NaiveDate>,
    pub resubmissions: i32,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

const RENEWAL_COLUMNS: &str = "renewal_id, credential_id, physician_id, kind, jurisdiction, \
    credential_expiry, status, is_open, progress, next_action, checklist, origin, initiated_by, \
    initiated_at, started_at, filed_at, review_started_at, approved_at, rejected_at, expired_at, \
    cancelled_at, rejection_reason, cancel_reason, new_expiry, resubmissions, version, updated_at";

impl RenewalRow {
    /// The aggregate this row reflects, for the domain's progress, next action and timeline.
    pub fn to_domain(&self) -> Renewal {
        Renewal {
            status: RenewalStatus::parse(&self.status),
            credential_id: self.credential_id,
            physician_id: self.physician_id,
            kind: CredentialKind::parse(&self.kind),
            jurisdiction: Jurisdiction::parse(&self.jurisdiction).ok(),
            credential_expiry: Some(self.credential_expiry),
            checklist: self
                .checklist
                .iter()
                .map(|c| ChecklistItem {
                    key: c.key.clone(),
                    title: c.title.clone(),
                    required: c.required,
                    due: c.due,
                    fee_cents: c.fee_cents,
                })
                .collect(),
            completed: self
                .checklist
                .iter()
                .filter_map(|c| c.completed_at.map(|at| (c.key.clone(), at)))
                .collect(),
            origin: Origin::parse(&self.origin),
            initiated_at: Some(self.initiated_at),
            started_at: self.started_at,
            filed_at: self.filed_at,
            review_started_at: self.review_started_at,
            approved_at: self.approved_at,
            rejected_at: self.rejected_at,
            expired_at: self.expired_at,
            cancelled_at: self.cancelled_at,
            rejection_reason: self.rejection_reason.clone(),
            cancel_reason: self.cancel_reason.clone(),
            new_expiry: self.new_expiry,
            resubmissions: u32::try_from(self.resubmissions).unwrap_or(0),
        }
    }

    /// The row after `event`, folded by the domain's `evolve`.
    fn evolve(
        previous: Option<RenewalRow>,
        renewal_id: Uuid,
        event: &RenewalEvent,
        recorded: &RecordedEvent,
    ) -> Option<RenewalRow> {
        let state = previous
            .as_ref()
            .map(RenewalRow::to_domain)
            .unwrap_or_default();
        let mut checklist = previous
            .as_ref()
            .map(|r| r.checklist.clone())
            .unwrap_or_default();
        let state = state.evolve(event);
        let (status, kind, jurisdiction, expiry, origin, initiated_at) = (
            state.status?,
            state.kind?,
            state.jurisdiction?,
            state.credential_expiry?,
            state.origin?,
            state.initiated_at?,
        );
        match event {
            RenewalEvent::RenewalInitiated {
                checklist: items, ..
            } => {
                checklist = items
                    .iter()
                    .map(|i| ChecklistEntry {
                        key: i.key.clone(),
                        title: i.title.clone(),
                        required: i.required,
                        due: i.due,
                        fee_cents: i.fee_cents,
                        completed_at: None,
                        completed_by: None,
                    })
                    .collect();
            }
            RenewalEvent::ChecklistItemCompleted { item, at } => {
                if let Some(entry) = checklist
                    .iter_mut()
                    .find(|c| &c.key == item && c.completed_at.is_none())
                {
                    entry.completed_at = Some(*at);
                    entry.completed_by = Some(recorded.metadata.actor.clone());
                }
            }
            _ => {}
        }
        Some(RenewalRow {
            renewal_id,
            credential_id: state.credential_id,
            physician_id: state.physician_id,
            kind: kind.as_str().to_owned(),
            jurisdiction: jurisdiction.to_string(),
            credential_expiry: expiry,
            status: status.as_str().to_owned(),
            is_open: status.is_open(),
            progress: i16::from(state.progress()),
            next_action: state.next_action().map(str::to_owned),
            checklist,
            origin: origin.as_str().to_owned(),
            initiated_by: previous.as_ref().map_or_else(
                || recorded.metadata.actor.clone(),
                |r| r.initiated_by.clone(),
            ),
            initiated_at,
            started_at: state.started_at,
            filed_at: state.filed_at,
            review_started_at: state.review_started_at,
            approved_at: state.approved_at,
            rejected_at: state.rejected_at,
            expired_at: state.expired_at,
            cancelled_at: state.cancelled_at,
            rejection_reason: state.rejection_reason,
            cancel_reason: state.cancel_reason,
            new_expiry: state.new_expiry,
            resubmissions: i32::try_from(state.resubmissions).unwrap_or(i32::MAX),
            version: i64::try_from(recorded.version).unwrap_or(i64::MAX),
            updated_at: recorded.recorded_at,
        })
    }
}

impl Projection for CredentialingModel {
    fn name(&self) -> &'static str {
        "credentialing"
    }

    fn event_types(&self) -> &'static [&'static str] {
        EVENT_TYPES
    }

    fn tables(&self) -> &'static [&'static str] {
        &["physicians", "credentials", "renewals"]
    }

    fn create_sql(&self) -> &'static str {
        CREATE_SQL
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            // Renewal rows touched by this page, loaded once, folded in memory, written once.
            let renewal_ids: Vec<Uuid> = events
                .iter()
                .filter(|e| e.stream_type == Renewal::STREAM_TYPE)
                .map(|e| e.stream_id)
                .collect();
            // Every row loaded belongs to a renewal with an event in this page, so every entry
            // is written back at the end.
            let mut renewals: HashMap<Uuid, RenewalRow> = HashMap::new();
            if !renewal_ids.is_empty() {
                let rows: Vec<RenewalRow> = sqlx::query_as(&format!(
                    "SELECT {RENEWAL_COLUMNS} FROM renewals WHERE renewal_id = ANY($1)"
                ))
                .bind(&renewal_ids)
                .fetch_all(&mut *conn)
                .await?;
                renewals.extend(rows.into_iter().map(|row| (row.renewal_id, row)));
            }
            for e in events {
                match e.stream_type.as_str() {
                    Renewal::STREAM_TYPE => {
                        let event = decode::<Renewal>(e)?;
                        let previous = renewals.remove(&e.stream_id);
                        let next = RenewalRow::evolve(previous, e.stream_id, &event, e)
                            .ok_or_else(|| {
                                ApplyError::at(e, "renewal event before its initiation")
                            })?;
                        renewals.insert(e.stream_id, next);
                    }
                    Physician::STREAM_TYPE => {
                        let event = decode::<Physician>(e)?;
                        apply_physician(conn, e, &event).await?;
                    }
                    Credential::STREAM_TYPE => {
                        let event = decode::<Credential>(e)?;
                        apply_credential(conn, e, &event).await?;
                    }
                    _ => {}
                }
            }
            for row in renewals.values() {
                upsert_renewal(conn, row).await?;
            }
            Ok(())
        })
    }
}

async fn apply_physician(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    event: &PhysicianEvent,
) -> Result<(), sqlx::Error> {
    match event {
        PhysicianEvent::PhysicianRegistered {
            npi,
            name,
            email,
            specialty,
            states,
        } => {
            let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
            sqlx::query(
                "INSERT INTO physicians (physician_id, npi, name, email, specialty, states, active, registered_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, true, $7, $7)",
            )
            .bind(e.stream_id)
            .bind(npi.as_str())
            .bind(name)
            .bind(email)
            .bind(specialty)
            .bind(&states)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        PhysicianEvent::PhysicianUpdated {
            name,
            email,
            specialty,
            states,
        } => {
            let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
            sqlx::query(
                "UPDATE physicians SET name = $2, email = $3, specialty = $4, states = $5, updated_at = $6 \
                 WHERE physician_id = $1",
            )
            .bind(e.stream_id)
            .bind(name)
            .bind(email)
            .bind(specialty)
            .bind(&states)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        PhysicianEvent::PhysicianDeactivated {} | PhysicianEvent::PhysicianReactivated {} => {
            let active = matches!(event, PhysicianEvent::PhysicianReactivated {});
            sqlx::query(
                "UPDATE physicians SET active = $2, updated_at = $3 WHERE physician_id = $1",
            )
            .bind(e.stream_id)
            .bind(active)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

async fn apply_credential(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    event: &CredentialEvent,
) -> Result<(), sqlx::Error> {
    use CredentialEvent as E;
    let query = match event {
        E::CredentialRegistered {
            physician_id,
            kind,
            jurisdiction,
            number,
            expiry,
        } => sqlx::query(
            "INSERT INTO credentials (credential_id, physician_id, kind, jurisdiction, number, expiry, revoked, registered_at, updated_at) \
             VALUES ($1, $3, $4, $5, $6, $7, false, $2, $2)",
        )
        .bind(e.stream_id)
        .bind(e.recorded_at)
        .bind(*physician_id)
        .bind(kind.as_str())
        .bind(jurisdiction.to_string())
        .bind(number)
        .bind(*expiry),
        E::CredentialExpiryCorrected { expiry, .. } | E::CredentialRenewed { expiry, .. } => {
            sqlx::query(
                "UPDATE credentials SET expiry = $3, updated_at = $2 WHERE credential_id = $1",
            )
            .bind(e.stream_id)
            .bind(e.recorded_at)
            .bind(*expiry)
        }
        E::CredentialRevoked { .. } => sqlx::query(
            "UPDATE credentials SET revoked = true, updated_at = $2 WHERE credential_id = $1",
        )
        .bind(e.stream_id)
        .bind(e.recorded_at),
        E::RenewalOpened { renewal_id } => sqlx::query(
            "UPDATE credentials SET open_renewal_id = $3, updated_at = $2 WHERE credential_id = $1",
        )
        .bind(e.stream_id)
        .bind(e.recorded_at)
        .bind(*renewal_id),
        E::RenewalClosed { renewal_id, .. } => sqlx::query(
            "UPDATE credentials SET open_renewal_id = NULL, updated_at = $2 \
             WHERE credential_id = $1 AND open_renewal_id = $3",
        )
        .bind(e.stream_id)
        .bind(e.recorded_at)
        .bind(*renewal_id),
    };
    query.execute(&mut *conn).await?;
    Ok(())
}

async fn upsert_renewal(conn: &mut PgConnection, r: &RenewalRow) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO renewals ({RENEWAL_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27) \
         ON CONFLICT (renewal_id) DO UPDATE SET \
           credential_expiry = excluded.credential_expiry, status = excluded.status, \
           is_open = excluded.is_open, progress = excluded.progress, \
           next_action = excluded.next_action, checklist = excluded.checklist, \
           started_at = excluded.started_at, filed_at = excluded.filed_at, \
           review_started_at = excluded.review_started_at, approved_at = excluded.approved_at, \
           rejected_at = excluded.rejected_at, expired_at = excluded.expired_at, \
           cancelled_at = excluded.cancelled_at, rejection_reason = excluded.rejection_reason, \
           cancel_reason = excluded.cancel_reason, new_expiry = excluded.new_expiry, \
           resubmissions = excluded.resubmissions, version = excluded.version, \
           updated_at = excluded.updated_at"
    ))
    .bind(r.renewal_id)
    .bind(r.credential_id)
    .bind(r.physician_id)
    .bind(&r.kind)
    .bind(&r.jurisdiction)
    .bind(r.credential_expiry)
    .bind(&r.status)
    .bind(r.is_open)
    .bind(r.progress)
    .bind(&r.next_action)
    .bind(sqlx::types::Json(&r.checklist))
    .bind(&r.origin)
    .bind(&r.initiated_by)
    .bind(r.initiated_at)
    .bind(r.started_at)
    .bind(r.filed_at)
    .bind(r.review_started_at)
    .bind(r.approved_at)
    .bind(r.rejected_at)
    .bind(r.expired_at)
    .bind(r.cancelled_at)
    .bind(&r.rejection_reason)
    .bind(&r.cancel_reason)
    .bind(r.new_expiry)
    .bind(r.resubmissions)
    .bind(r.version)
    .bind(r.updated_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Queries. All read `read_models.*` explicitly: they run on ordinary pooled connections.

/// Filters, sort and page of the renewals list.
#[derive(Debug, Clone, Default)]
pub struct RenewalQuery {
    pub status: Option<RenewalStatus>,
    /// Only open (or only closed) renewals.
    pub open: Option<bool>,
    pub kind: Option<CredentialKind>,
    pub jurisdiction: Option<Jurisdiction>,
    pub physician_id: Option<Uuid>,
    /// Final deadline (credential expiry) on or before this date.
    pub due_by: Option<NaiveDate>,
    pub sort: RenewalSort,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
}

/// What the renewals list is ordered by (then by id, so pages are stable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RenewalSort {
    /// The credential's expiry: the most urgent first.
    #[default]
    Deadline,
    InitiatedAt,
    Progress,
    Status,
}

/// A renewals-list row: the renewal with its physician's name and the credential's number.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct RenewalListRow {
    pub renewal_id: Uuid,
    pub credential_id: Uuid,
    pub physician_id: Uuid,
    pub physician_name: Option<String>,
    pub credential_number: Option<String>,
    pub kind: String,
    pub jurisdiction: String,
    pub credential_expiry: NaiveDate,
    pub status: String,
    pub progress: i16,
    pub next_action: Option<String>,
    pub origin: String,
    pub initiated_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One page of renewals and the total matching.
pub async fn list_renewals(
    pool: &PgPool,
    q: &RenewalQuery,
) -> Result<(Vec<RenewalListRow>, i64), sqlx::Error> {
    let order = match q.sort {
        RenewalSort::Deadline => "r.credential_expiry",
        RenewalSort::InitiatedAt => "r.initiated_at",
        RenewalSort::Progress => "r.progress",
        RenewalSort::Status => "r.status",
    };
    let direction = if q.descending { "DESC" } else { "ASC" };
    let filter = "($1::text IS NULL OR r.status = $1) \
         AND ($2::boolean IS NULL OR r.is_open = $2) \
         AND ($3::text IS NULL OR r.kind = $3) \
         AND ($4::text IS NULL OR r.jurisdiction = $4) \
         AND ($5::uuid IS NULL OR r.physician_id = $5) \
         AND ($6::date IS NULL OR r.credential_expiry <= $6)";
    let rows: Vec<RenewalListRow> = sqlx::query_as(&format!(
        "SELECT r.renewal_id, r.credential_id, r.physician_id, p.name AS physician_name, \
                c.number AS credential_number, r.kind, r.jurisdiction, r.credential_expiry, \
                r.status, r.progress, r.next_action, r.origin, r.initiated_at, r.updated_at \
         FROM read_models.renewals r \
         LEFT JOIN read_models.physicians p ON p.physician_id = r.physician_id \
         LEFT JOIN read_models.credentials c ON c.credential_id = r.credential_id \
         WHERE {filter} ORDER BY {order} {direction}, r.renewal_id {direction} LIMIT $7 OFFSET $8"
    ))
    .bind(q.status.map(|s| s.as_str()))
    .bind(q.open)
    .bind(q.kind.map(|k| k.as_str()))
    .bind(q.jurisdiction.map(|j| j.to_string()))
    .bind(q.physician_id)
    .bind(q.due_by)
    .bind(q.limit.clamp(1, 500))
    .bind(q.offset.max(0))
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM read_models.renewals r WHERE {filter}"
    ))
    .bind(q.status.map(|s| s.as_str()))
    .bind(q.open)
    .bind(q.kind.map(|k| k.as_str()))
    .bind(q.jurisdiction.map(|j| j.to_string()))
    .bind(q.physician_id)
    .bind(q.due_by)
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

/// One renewal's row.
pub async fn renewal(pool: &PgPool, renewal_id: Uuid) -> Result<Option<RenewalRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {RENEWAL_COLUMNS} FROM read_models.renewals WHERE renewal_id = $1"
    ))
    .bind(renewal_id)
    .fetch_optional(pool)
    .await
}

/// The dashboard's numbers as of `today`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenewalStatistics {
    pub today: NaiveDate,
    /// Renewals per status (every status present, zero included).
    pub by_status: std::collections::BTreeMap<String, i64>,
    /// Open renewals per credential kind.
    pub open_by_kind: std::collections::BTreeMap<String, i64>,
    pub open: i64,
    /// Open renewals not yet filed although the application window has closed (less than 30
    /// days to the deadline).
    pub overdue: i64,
    /// Credentials (not revoked) expiring from today to today + 30 / 60 / 90 days.
    pub expiring_within_30_days: i64,
    pub expiring_within_60_days: i64,
    pub expiring_within_90_days: i64,
    /// Credentials (not revoked) whose expiry has passed.
    pub expired_credentials: i64,
    /// Credentials expiring within 90 days with no open renewal.
    pub expiring_without_renewal: i64,
}

pub async fn statistics(pool: &PgPool, today: NaiveDate) -> Result<RenewalStatistics, sqlx::Error> {
    let mut by_status: std::collections::BTreeMap<String, i64> = RenewalStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM read_models.renewals GROUP BY status")
            .fetch_all(pool)
            .await?;
    by_status.extend(rows);
    let mut open_by_kind: std::collections::BTreeMap<String, i64> = CredentialKind::ALL
        .iter()
        .map(|k| (k.as_str().to_owned(), 0))
        .collect();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, count(*) FROM read_models.renewals WHERE is_open GROUP BY kind",
    )
    .fetch_all(pool)
    .await?;
    open_by_kind.extend(rows);
    let (open, overdue): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status IN ('not_started', 'in_progress', 'rejected') \
                                           AND credential_expiry < $1::date + 30) \
         FROM read_models.renewals WHERE is_open",
    )
    .bind(today)
    .fetch_one(pool)
    .await?;
    let (d30, d60, d90, expired, uncovered): (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE expiry BETWEEN $1 AND $1::date + 30), \
                count(*) FILTER (WHERE expiry BETWEEN $1 AND $1::date + 60), \
                count(*) FILTER (WHERE expiry BETWEEN $1 AND $1::date + 90), \
                count(*) FILTER (WHERE expiry < $1), \
                count(*) FILTER (WHERE expiry BETWEEN $1 AND $1::date + 90 AND open_renewal_id IS NULL) \
         FROM read_models.credentials WHERE NOT revoked",
    )
    .bind(today)
    .fetch_one(pool)
    .await?;
    Ok(RenewalStatistics {
        today,
        by_status,
        open_by_kind,
        open,
        overdue,
        expiring_within_30_days: d30,
        expiring_within_60_days: d60,
        expiring_within_90_days: d90,
        expired_credentials: expired,
        expiring_without_renewal: uncovered,
    })
}

/// A row of `physicians`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct PhysicianRow {
    pub physician_id: Uuid,
    pub npi: String,
    pub name: String,
    pub email: String,
    pub specialty: String,
    pub states: Vec<String>,
    pub active: bool,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const PHYSICIAN_COLUMNS: &str =
    "physician_id, npi, name, email, specialty, states, active, registered_at, updated_at";

pub async fn physician(
    pool: &PgPool,
    physician_id: Uuid,
) -> Result<Option<PhysicianRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {PHYSICIAN_COLUMNS} FROM read_models.physicians WHERE physician_id = $1"
    ))
    .bind(physician_id)
    .fetch_optional(pool)
    .await
}

/// Physicians by name (optionally matching `search` in name, NPI or specialty), one page.
pub async fn list_physicians(
    pool: &PgPool,
    search: Option<&str>,
    active: Option<bool>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<PhysicianRow>, i64), sqlx::Error> {
    let pattern = search.map(like_pattern);
    let filter = "($1::text IS NULL OR name ILIKE $1 ESCAPE '\\' OR npi LIKE $1 ESCAPE '\\' \
                  OR specialty ILIKE $1 ESCAPE '\\') \
                  AND ($2::boolean IS NULL OR active = $2)";
    let rows = sqlx::query_as(&format!(
        "SELECT {PHYSICIAN_COLUMNS} FROM read_models.physicians WHERE {filter} \
         ORDER BY name, physician_id LIMIT $3 OFFSET $4"
    ))
    .bind(&pattern)
    .bind(active)
    .bind(limit.clamp(1, 500))
    .bind(offset.max(0))
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM read_models.physicians WHERE {filter}"
    ))
    .bind(&pattern)
    .bind(active)
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

/// A credential with its open renewal, as the physician overview shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct CredentialRow {
    pub credential_id: Uuid,
    pub physician_id: Uuid,
    pub kind: String,
    pub jurisdiction: String,
    pub number: String,
    pub expiry: NaiveDate,
    pub revoked: bool,
    /// Negative once expired.
    pub days_to_expiry: i32,
    pub open_renewal_id: Option<Uuid>,
    pub open_renewal_status: Option<String>,
    pub open_renewal_progress: Option<i16>,
}

/// Credentials with days to expiry as of `today`, for one physician or one credential.
pub async fn credentials(
    pool: &PgPool,
    physician_id: Option<Uuid>,
    credential_id: Option<Uuid>,
    today: NaiveDate,
) -> Result<Vec<CredentialRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.credential_id, c.physician_id, c.kind, c.jurisdiction, c.number, c.expiry, \
                c.revoked, (c.expiry - $3::date) AS days_to_expiry, c.open_renewal_id, \
                r.status AS open_renewal_status, r.progress AS open_renewal_progress \
         FROM read_models.credentials c \
         LEFT JOIN read_models.renewals r ON r.renewal_id = c.open_renewal_id \
         WHERE ($1::uuid IS NULL OR c.physician_id = $1) \
           AND ($2::uuid IS NULL OR c.credential_id = $2) \
         ORDER BY c.expiry, c.credential_id",
    )
    .bind(physician_id)
    .bind(credential_id)
    .bind(today)
    .fetch_all(pool)
    .await
}

/// A credential the renewal scan considers.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ScanCandidate {
    pub credential_id: Uuid,
    pub expiry: NaiveDate,
    pub open_renewal_id: Option<Uuid>,
    pub physician_active: bool,
}

/// Credentials (not revoked) expiring from `today` to `until`, with what the scan needs.
pub async fn scan_candidates(
    pool: &PgPool,
    today: NaiveDate,
    until: NaiveDate,
) -> Result<Vec<ScanCandidate>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.credential_id, c.expiry, c.open_renewal_id, \
                coalesce(p.active, false) AS physician_active \
         FROM read_models.credentials c \
         LEFT JOIN read_models.physicians p ON p.physician_id = c.physician_id \
         WHERE NOT c.revoked AND c.expiry BETWEEN $1 AND $2 \
         ORDER BY c.expiry, c.credential_id",
    )
    .bind(today)
    .bind(until)
    .fetch_all(pool)
    .await
}

/// Open renewals whose deadline (the credential's expiry) is before `today`.
pub async fn open_renewals_past_deadline(
    pool: &PgPool,
    today: NaiveDate,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT renewal_id FROM read_models.renewals WHERE is_open AND credential_expiry < $1 \
         ORDER BY credential_expiry, renewal_id",
    )
    .bind(today)
    .fetch_all(pool)
    .await
}
