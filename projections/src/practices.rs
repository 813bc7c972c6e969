//! The practices read model: practices, their locations and their physicians, with the
//! reports the practice screens run (available physicians, specialty distribution, coverage by
//! state, licence compliance by practice). Physician and credential facts come from the
//! credentialing read model, joined at query time.

use chrono::{DateTime, NaiveDate, Utc};
use domain::practice::{Practice, PracticeEvent};
use eventstore::RecordedEvent;
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::projection::{decode, like_pattern, ApplyError, Projection};

#[derive(Debug, Clone, Copy, Default)]
pub struct PracticesModel;

const CREATE_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS practices (
    practice_id  uuid PRIMARY KEY,
    name         text NOT NULL,
    kind         text NOT NULL,
    specialty    text NOT NULL,
    street       text NOT NULL,
    city         text NOT NULL,
    state        text NOT NULL,
    zip          text NOT NULL,
    phone        text NOT NULL,
    email        text NOT NULL,
    npi          text NOT NULL,
    ein          text NOT NULL,
    active       boolean NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS practices_by_name ON practices (lower(name), practice_id);
COMMENT ON TABLE practices IS 'One row per practice: details, primary address, active flag.';
COMMENT ON COLUMN practices.practice_id IS 'The practice stream id (UUID v5 of the normalised name).';
COMMENT ON COLUMN practices.name IS 'Practice name (unique, case and spacing aside).';
COMMENT ON COLUMN practices.kind IS 'solo, group, hospital or clinic.';
COMMENT ON COLUMN practices.specialty IS 'Primary specialty.';
COMMENT ON COLUMN practices.street IS 'Primary address: street.';
COMMENT ON COLUMN practices.city IS 'Primary address: city.';
COMMENT ON COLUMN practices.state IS 'Primary address: US state code.';
COMMENT ON COLUMN practices.zip IS 'Primary address: ZIP or ZIP+4.';
COMMENT ON COLUMN practices.phone IS 'Phone, 10 digits.';
COMMENT ON COLUMN practices.email IS 'Contact e-mail, lower-cased.';
COMMENT ON COLUMN practices.npi IS 'Organisational NPI (check digit verified).';
COMMENT ON COLUMN practices.ein IS 'Tax id, NN-NNNNNNN.';
COMMENT ON COLUMN practices.active IS 'False once deactivated.';
COMMENT ON COLUMN practices.created_at IS 'When the practice was created.';
COMMENT ON COLUMN practices.updated_at IS 'When the latest practice event was recorded.';

CREATE TABLE IF NOT EXISTS practice_locations (
    practice_id uuid NOT NULL,
    location_id uuid NOT NULL,
    name        text NOT NULL,
    street      text NOT NULL,
    city        text NOT NULL,
    state       text NOT NULL,
    zip         text NOT NULL,
    PRIMARY KEY (practice_id, location_id)
);
COMMENT ON TABLE practice_locations IS 'Further locations of practices (the primary address is on practices).';
COMMENT ON COLUMN practice_locations.practice_id IS 'The practice.';
COMMENT ON COLUMN practice_locations.location_id IS 'The location id, chosen when it was added.';
COMMENT ON COLUMN practice_locations.name IS 'Location name, unique within the practice.';
COMMENT ON COLUMN practice_locations.street IS 'Street.';
COMMENT ON COLUMN practice_locations.city IS 'City.';
COMMENT ON COLUMN practice_locations.state IS 'US state code.';
COMMENT ON COLUMN practice_locations.zip IS 'ZIP or ZIP+4.';

CREATE TABLE IF NOT EXISTS practice_members (
    physician_id uuid PRIMARY KEY,
    practice_id  uuid NOT NULL,
    since        timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS practice_members_by_practice ON practice_members (practice_id);
COMMENT ON TABLE practice_members IS 'Which practice each assigned physician is in (at most one).';
COMMENT ON COLUMN practice_members.physician_id IS 'The physician.';
COMMENT ON COLUMN practice_members.practice_id IS 'Their practice.';
COMMENT ON COLUMN practice_members.since IS 'When they were assigned.';
"#;

const EVENT_TYPES: &[&str] = &[
    "PracticeCreated",
    "PracticeUpdated",
    "PracticeDeactivated",
    "PracticeReactivated",
    "PracticeLocationAdded",
    "PracticeLocationRemoved",
    "PhysicianAssignedToPractice",
    "PhysicianUnassignedFromPractice",
];

impl Projection for PracticesModel {
    fn name(&self) -> &'static str {
        "practices"
    }

    fn event_types(&self) -> &'static [&'static str] {
        EVENT_TYPES
    }

    fn tables(&self) -> &'static [&'static str] {
        &["practices", "practice_locations", "practice_members"]
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
            for e in events {
                let event = decode::<Practice>(e)?;
                apply_one(conn, e, &event).await?;
            }
            Ok(())
        })
    }
}

async fn apply_one(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    event: &PracticeEvent,
) -> Result<(), sqlx::Error> {
    use PracticeEvent as E;
    let id = e.stream_id;
    let at = e.recorded_at;
    match event {
        E::PracticeCreated {
            name,
            kind,
            specialty,
            address,
            phone,
            email,
            npi,
            ein,
        }
        | E::PracticeUpdated {
            name,
            kind,
            specialty,
            address,
            phone,
            email,
            npi,
            ein,
        } => {
            sqlx::query(
                "INSERT INTO practices (practice_id, name, kind, specialty, street, city, state, zip, phone, email, npi, ein, active, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, true, $13, $13) \
                 ON CONFLICT (practice_id) DO UPDATE SET name = excluded.name, kind = excluded.kind, \
                   specialty = excluded.specialty, street = excluded.street, city = excluded.city, \
                   state = excluded.state, zip = excluded.zip, phone = excluded.phone, \
                   email = excluded.email, npi = excluded.npi, ein = excluded.ein, updated_at = excluded.updated_at",
            )
            .bind(id)
            .bind(name)
            .bind(kind.as_str())
            .bind(specialty)
            .bind(&address.street)
            .bind(&address.city)
            .bind(address.state.as_str())
            .bind(address.zip.as_str())
            .bind(phone.as_str())
            .bind(email)
            .bind(npi.as_str())
            .bind(ein.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        E::PracticeDeactivated {} | E::PracticeReactivated {} => {
            sqlx::query("UPDATE practices SET active = $2, updated_at = $3 WHERE practice_id = $1")
                .bind(id)
                .bind(matches!(event, E::PracticeReactivated {}))
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        E::PracticeLocationAdded {
            location_id,
            name,
            address,
        } => {
            sqlx::query(
                "INSERT INTO practice_locations (practice_id, location_id, name, street, city, state, zip) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(*location_id)
            .bind(name)
            .bind(&address.street)
            .bind(&address.city)
            .bind(address.state.as_str())
            .bind(address.zip.as_str())
            .execute(&mut *conn)
            .await?;
        }
        E::PracticeLocationRemoved { location_id } => {
            sqlx::query(
                "DELETE FROM practice_locations WHERE practice_id = $1 AND location_id = $2",
            )
            .bind(id)
            .bind(*location_id)
            .execute(&mut *conn)
            .await?;
        }
        E::PhysicianAssignedToPractice { physician_id } => {
            sqlx::query(
                "INSERT INTO practice_members (physician_id, practice_id, since) VALUES ($1, $2, $3) \
                 ON CONFLICT (physician_id) DO UPDATE SET practice_id = excluded.practice_id, since = excluded.since",
            )
            .bind(*physician_id)
            .bind(id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        E::PhysicianUnassignedFromPractice { physician_id } => {
            sqlx::query(
                "DELETE FROM practice_members WHERE physician_id = $1 AND practice_id = $2",
            )
            .bind(*physician_id)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Queries (on `read_models.*`).

/// A practice as listed, with its physician count.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct PracticeRow {
    pub practice_id: Uuid,
    pub name: String,
    pub kind: String,
    pub specialty: String,
    pub street: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub phone: String,
    pub email: String,
    pub npi: String,
    pub ein: String,
    pub active: bool,
    pub physician_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const PRACTICE_SELECT: &str = "SELECT p.practice_id, p.name, p.kind, p.specialty, p.street, p.city, p.state, \
    p.zip, p.phone, p.email, p.npi, p.ein, p.active, \
    (SELECT count(*) FROM read_models.practice_members m WHERE m.practice_id = p.practice_id) AS physician_count, \
    p.created_at, p.updated_at FROM read_models.practices p";

/// Practices by name, filtered, one page, and the total.
pub async fn list(
    pool: &PgPool,
    search: Option<&str>,
    state: Option<&str>,
    active: Option<bool>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<PracticeRow>, i64), sqlx::Error> {
    let pattern = search.map(like_pattern);
    let filter = "($1::text IS NULL OR p.name ILIKE $1 ESCAPE '\\' OR p.specialty ILIKE $1 ESCAPE '\\' OR p.city ILIKE $1 ESCAPE '\\') \
                  AND ($2::text IS NULL OR p.state = $2) AND ($3::boolean IS NULL OR p.active = $3)";
    let rows = sqlx::query_as(&format!(
        "{PRACTICE_SELECT} WHERE {filter} ORDER BY lower(p.name), p.practice_id LIMIT $4 OFFSET $5"
    ))
    .bind(&pattern)
    .bind(state)
    .bind(active)
    .bind(limit.clamp(1, 500))
    .bind(offset.max(0))
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM read_models.practices p WHERE {filter}"
    ))
    .bind(&pattern)
    .bind(state)
    .bind(active)
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<PracticeRow>, sqlx::Error> {
    sqlx::query_as(&format!("{PRACTICE_SELECT} WHERE p.practice_id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// A further location.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct LocationRow {
    pub location_id: Uuid,
    pub name: String,
    pub street: String,
    pub city: String,
    pub state: String,
    pub zip: String,
}

pub async fn locations(pool: &PgPool, id: Uuid) -> Result<Vec<LocationRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT location_id, name, street, city, state, zip FROM read_models.practice_locations \
         WHERE practice_id = $1 ORDER BY name, location_id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
}

/// A physician as the practice screens show one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct MemberRow {
    pub physician_id: Uuid,
    pub name: String,
    pub npi: String,
    pub specialty: String,
    pub states: Vec<String>,
    pub active: bool,
    /// When they joined the practice; absent for physicians available to assign.
    pub since: Option<DateTime<Utc>>,
}

/// The physicians of a practice, by name.
pub async fn members(pool: &PgPool, id: Uuid) -> Result<Vec<MemberRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT ph.physician_id, ph.name, ph.npi, ph.specialty, ph.states, ph.active, m.since \
         FROM read_models.practice_members m JOIN read_models.physicians ph ON ph.physician_id = m.physician_id \
         WHERE m.practice_id = $1 ORDER BY ph.name, ph.physician_id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
}

/// Active physicians in no practice, optionally by specialty or state of practice.
pub async fn available(
    pool: &PgPool,
    specialty: Option<&str>,
    state: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<MemberRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT ph.physician_id, ph.name, ph.npi, ph.specialty, ph.states, ph.active, NULL::timestamptz AS since \
         FROM read_models.physicians ph \
         WHERE ph.active AND NOT EXISTS (SELECT 1 FROM read_models.practice_members m WHERE m.physician_id = ph.physician_id) \
           AND ($1::text IS NULL OR ph.specialty = $1) AND ($2::text IS NULL OR $2 = ANY (ph.states)) \
         ORDER BY ph.name, ph.physician_id LIMIT $3 OFFSET $4",
    )
    .bind(specialty)
    .bind(state)
    .bind(limit.clamp(1, 500))
    .bind(offset.max(0))
    .fetch_all(pool)
    .await
}

/// Physicians per specialty.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct SpecialtyRow {
    pub specialty: String,
    /// Active physicians.
    pub physicians: i64,
    /// Of them, assigned to a practice.
    pub assigned: i64,
    /// Active practices with this primary specialty.
    pub practices: i64,
}

pub async fn specialties(pool: &PgPool) -> Result<Vec<SpecialtyRow>, sqlx::Error> {
    sqlx::query_as(
        "WITH s AS (SELECT specialty FROM read_models.physicians WHERE active \
                    UNION SELECT specialty FROM read_models.practices WHERE active) \
         SELECT s.specialty, \
           (SELECT count(*) FROM read_models.physicians ph WHERE ph.active AND ph.specialty = s.specialty) AS physicians, \
           (SELECT count(*) FROM read_models.physicians ph JOIN read_models.practice_members m ON m.physician_id = ph.physician_id \
             WHERE ph.active AND ph.specialty = s.specialty) AS assigned, \
           (SELECT count(*) FROM read_models.practices p WHERE p.active AND p.specialty = s.specialty) AS practices \
         FROM s ORDER BY physicians DESC, s.specialty",
    )
    .fetch_all(pool)
    .await
}

/// Coverage of one state.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct CoverageRow {
    pub state: String,
    /// Active physicians practising there.
    pub physicians: i64,
    /// Of them, with a licence there valid today.
    pub licensed: i64,
    /// Active practices with an address (primary or further location) there.
    pub practices: i64,
}

pub async fn coverage(pool: &PgPool, today: NaiveDate) -> Result<Vec<CoverageRow>, sqlx::Error> {
    sqlx::query_as(
        "WITH ps AS (SELECT DISTINCT ph.physician_id, unnest(ph.states) AS state FROM read_models.physicians ph WHERE ph.active), \
              sites AS (SELECT p.practice_id, p.state FROM read_models.practices p WHERE p.active \
                        UNION SELECT l.practice_id, l.state FROM read_models.practice_locations l \
                              JOIN read_models.practices p ON p.practice_id = l.practice_id WHERE p.active), \
              states AS (SELECT state FROM ps UNION SELECT state FROM sites) \
         SELECT s.state, \
           (SELECT count(*) FROM ps WHERE ps.state = s.state) AS physicians, \
           (SELECT count(*) FROM ps WHERE ps.state = s.state AND EXISTS ( \
              SELECT 1 FROM read_models.credentials c WHERE c.physician_id = ps.physician_id AND c.kind = 'license' \
                AND c.jurisdiction = s.state AND NOT c.revoked AND c.expiry >= $1)) AS licensed, \
           (SELECT count(DISTINCT practice_id) FROM sites WHERE sites.state = s.state) AS practices \
         FROM states s ORDER BY s.state",
    )
    .bind(today)
    .fetch_all(pool)
    .await
}

/// A physician of a practice without a valid licence in a state where the practice operates.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ComplianceGap {
    pub practice_id: Uuid,
    pub practice_name: String,
    pub physician_id: Uuid,
    pub physician_name: String,
    pub state: String,
    /// `no_license` or `license_expired` (or revoked).
    pub problem: String,
}

/// Every gap, for one practice or all, as of `today`.
pub async fn compliance(
    pool: &PgPool,
    practice_id: Option<Uuid>,
    today: NaiveDate,
) -> Result<Vec<ComplianceGap>, sqlx::Error> {
    sqlx::query_as(
        "WITH sites AS (SELECT p.practice_id, p.state FROM read_models.practices p \
                        UNION SELECT l.practice_id, l.state FROM read_models.practice_locations l) \
         SELECT p.practice_id, p.name AS practice_name, ph.physician_id, ph.name AS physician_name, s.state, \
                CASE WHEN EXISTS (SELECT 1 FROM read_models.credentials c WHERE c.physician_id = ph.physician_id \
                                    AND c.kind = 'license' AND c.jurisdiction = s.state) \
                     THEN 'license_expired' ELSE 'no_license' END AS problem \
         FROM read_models.practice_members m \
         JOIN read_models.practices p ON p.practice_id = m.practice_id \
         JOIN read_models.physicians ph ON ph.physician_id = m.physician_id \
         JOIN sites s ON s.practice_id = p.practice_id \
         WHERE ($1::uuid IS NULL OR p.practice_id = $1) AND p.active \
           AND NOT EXISTS (SELECT 1 FROM read_models.credentials c WHERE c.physician_id = ph.physician_id \
                             AND c.kind = 'license' AND c.jurisdiction = s.state AND NOT c.revoked AND c.expiry >= $2) \
         ORDER BY p.name, ph.name, s.state",
    )
    .bind(practice_id)
    .bind(today)
    .fetch_all(pool)
    .await
}
