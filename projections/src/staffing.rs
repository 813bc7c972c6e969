//! The staffing read model: staff members and the allocations of work to them, and the queries
//! behind the staff screens and the allocation ranking.
//!
//! `work_allocations` keeps one row per allocation, released ones included: a piece of work
//! allocated, released and allocated again has two rows, the latest active. A staff member's
//! current workload is the count of their active rows; the clients they have served are the
//! clients of all their rows (an allocation that was released still counts as having served the
//! client: the release does not say whether the work was done).
//!
//! Ranking reads every staff member as a candidate ([`candidates`]). That read is most of a
//! ranking's cost, so [`CandidateCache`] keeps the latest list and reuses it while the model's
//! [`Generation`] (the count of staffing events applied, kept in `staffing_generation`) stays
//! the same.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use domain::allocation::Candidate;
use domain::staff::{GeoPoint, StaffEvent, StaffMember, StaffPreferences, TimeSlot};
use domain::work_allocation::{WorkAllocation, WorkAllocationEvent};
use domain::Aggregate;
use eventstore::RecordedEvent;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::projection::{decode, like_pattern, ApplyError, Projection};

#[derive(Debug, Clone, Copy, Default)]
pub struct StaffingModel;

/// The projection's name: its checkpoint, and what `min_cursor` waits for.
pub const NAME: &str = "staffing";

const CREATE_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS staff_members (
    staff_id             uuid PRIMARY KEY,
    name                 text NOT NULL,
    skills               text[] NOT NULL,
    home_lat_e6          integer NOT NULL,
    home_lon_e6          integer NOT NULL,
    max_workload         integer NOT NULL,
    availability         jsonb NOT NULL,
    preferred_work_kinds text[] NOT NULL,
    preferred_clients    uuid[] NOT NULL,
    registered_at        timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    version              bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS staff_members_by_name ON staff_members (name, staff_id);
COMMENT ON TABLE staff_members IS 'One row per staff member who can be allocated work: profile, home, capacity, weekly availability, preferences.';
COMMENT ON COLUMN staff_members.staff_id IS 'The staff member stream id.';
COMMENT ON COLUMN staff_members.name IS 'Full name.';
COMMENT ON COLUMN staff_members.skills IS 'Skill labels, normalised (lower case, single spaces), sorted.';
COMMENT ON COLUMN staff_members.home_lat_e6 IS 'Home latitude in micro-degrees (1e-6 degree).';
COMMENT ON COLUMN staff_members.home_lon_e6 IS 'Home longitude in micro-degrees (1e-6 degree).';
COMMENT ON COLUMN staff_members.max_workload IS 'How many open pieces of work the staff member can carry at once (1 to 1000).';
COMMENT ON COLUMN staff_members.availability IS 'Weekly availability, merged and sorted: [{weekday, start_minute, end_minute}], minutes after local midnight, end exclusive.';
COMMENT ON COLUMN staff_members.preferred_work_kinds IS 'Kinds of work the staff member prefers (normalised labels).';
COMMENT ON COLUMN staff_members.preferred_clients IS 'Clients the staff member asked to work with.';
COMMENT ON COLUMN staff_members.registered_at IS 'When the staff member was registered.';
COMMENT ON COLUMN staff_members.updated_at IS 'When the latest staff member event was recorded.';
COMMENT ON COLUMN staff_members.version IS 'Version of the staff member stream this row reflects.';

CREATE TABLE IF NOT EXISTS work_allocations (
    allocation_id  uuid NOT NULL,
    allocation_no  integer NOT NULL,
    work_kind      text NOT NULL,
    work_id        uuid NOT NULL,
    staff_id       uuid NOT NULL,
    client_id      uuid NOT NULL,
    active         boolean NOT NULL,
    allocated_at   timestamptz NOT NULL,
    allocated_by   text NOT NULL,
    released_at    timestamptz,
    release_reason text,
    decision       jsonb NOT NULL,
    PRIMARY KEY (allocation_id, allocation_no)
);
CREATE INDEX IF NOT EXISTS work_allocations_by_work ON work_allocations (work_kind, work_id);
CREATE INDEX IF NOT EXISTS work_allocations_by_staff ON work_allocations (staff_id, client_id);
COMMENT ON TABLE work_allocations IS 'One row per allocation of a piece of work to a staff member, released ones included; the latest row of a piece of work is the current one.';
COMMENT ON COLUMN work_allocations.allocation_id IS 'The work allocation stream id (UUID v5 of work kind and id).';
COMMENT ON COLUMN work_allocations.allocation_no IS '1 for the work''s first allocation, 2 for the allocation after its first release, ...';
COMMENT ON COLUMN work_allocations.work_kind IS 'case, task or referral.';
COMMENT ON COLUMN work_allocations.work_id IS 'The case''s, task''s or referral''s id.';
COMMENT ON COLUMN work_allocations.staff_id IS 'The staff member the work went to.';
COMMENT ON COLUMN work_allocations.client_id IS 'The client the work is for (what continuity is judged by).';
COMMENT ON COLUMN work_allocations.active IS 'True until the allocation is released; active rows are the staff member''s current workload.';
COMMENT ON COLUMN work_allocations.allocated_at IS 'When the work was allocated.';
COMMENT ON COLUMN work_allocations.allocated_by IS 'Actor who allocated it.';
COMMENT ON COLUMN work_allocations.released_at IS 'When the allocation was released, if it was.';
COMMENT ON COLUMN work_allocations.release_reason IS 'Why it was released.';
COMMENT ON COLUMN work_allocations.decision IS 'Summary of the decision: weights, candidates considered and ranked, whether the ranking was overridden, and the chosen staff member''s total, distance and factor values, weights and contributions. The full ranking is in the WorkAllocated event.';

CREATE TABLE IF NOT EXISTS staffing_generation (
    id     smallint PRIMARY KEY CHECK (id = 1),
    events bigint NOT NULL
);
INSERT INTO staffing_generation (id, events) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
COMMENT ON TABLE staffing_generation IS 'One row: how many staffing events the model has applied. The same number means the same staff_members and work_allocations, so ranking reuses its candidate list while it stays.';
COMMENT ON COLUMN staffing_generation.id IS 'Always 1.';
COMMENT ON COLUMN staffing_generation.events IS 'Staff member and work allocation events applied so far, in log order (the same in a rebuild).';
"#;

const EVENT_TYPES: &[&str] = &[
    "StaffMemberRegistered",
    "StaffMemberProfileUpdated",
    "StaffMemberAvailabilitySet",
    "WorkAllocated",
    "WorkAllocationReleased",
];

impl Projection for StaffingModel {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event_types(&self) -> &'static [&'static str] {
        EVENT_TYPES
    }

    fn tables(&self) -> &'static [&'static str] {
        &["staff_members", "work_allocations", "staffing_generation"]
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
            let mut applied: i64 = 0;
            for e in events {
                match e.stream_type.as_str() {
                    StaffMember::STREAM_TYPE => {
                        let event = decode::<StaffMember>(e)?;
                        apply_staff(conn, e, &event).await?;
                        applied += 1;
                    }
                    WorkAllocation::STREAM_TYPE => {
                        let event = decode::<WorkAllocation>(e)?;
                        apply_allocation(conn, e, &event).await?;
                        applied += 1;
                    }
                    _ => {}
                }
            }
            if applied > 0 {
                sqlx::query("UPDATE staffing_generation SET events = events + $1 WHERE id = 1")
                    .bind(applied)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        })
    }
}

async fn apply_staff(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    event: &StaffEvent,
) -> Result<(), ApplyError> {
    let version = i64::try_from(e.version).unwrap_or(i64::MAX);
    match event {
        StaffEvent::StaffMemberRegistered {
            name,
            skills,
            home,
            max_workload,
            preferences,
        }
        | StaffEvent::StaffMemberProfileUpdated {
            name,
            skills,
            home,
            max_workload,
            preferences,
        } => {
            let skills: Vec<&str> = skills.iter().map(String::as_str).collect();
            let kinds: Vec<&str> = preferences.work_kinds.iter().map(String::as_str).collect();
            let clients: Vec<Uuid> = preferences.clients.iter().copied().collect();
            let max_workload = i32::try_from(*max_workload)
                .map_err(|_| ApplyError::at(e, "max_workload out of range"))?;
            // A profile update of a staff member the model does not know is a gap in the log;
            // inserting keeps the row complete either way (availability starts empty).
            sqlx::query(
                "INSERT INTO staff_members (staff_id, name, skills, home_lat_e6, home_lon_e6, \
                     max_workload, availability, preferred_work_kinds, preferred_clients, \
                     registered_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, '[]'::jsonb, $7, $8, $9, $9, $10) \
                 ON CONFLICT (staff_id) DO UPDATE SET name = excluded.name, skills = excluded.skills, \
                     home_lat_e6 = excluded.home_lat_e6, home_lon_e6 = excluded.home_lon_e6, \
                     max_workload = excluded.max_workload, \
                     preferred_work_kinds = excluded.preferred_work_kinds, \
                     preferred_clients = excluded.preferred_clients, \
                     updated_at = excluded.updated_at, version = excluded.version",
            )
            .bind(e.stream_id)
            .bind(name)
            .bind(&skills)
            .bind(home.lat_e6())
            .bind(home.lon_e6())
            .bind(max_workload)
            .bind(&kinds)
            .bind(&clients)
            .bind(e.recorded_at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
        StaffEvent::StaffMemberAvailabilitySet { slots } => {
            sqlx::query(
                "UPDATE staff_members SET availability = $2, updated_at = $3, version = $4 \
                 WHERE staff_id = $1",
            )
            .bind(e.stream_id)
            .bind(sqlx::types::Json(slots))
            .bind(e.recorded_at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

async fn apply_allocation(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    event: &WorkAllocationEvent,
) -> Result<(), ApplyError> {
    match event {
        WorkAllocationEvent::WorkAllocated { work, decision, at } => {
            let chosen = decision.chosen_score().ok_or_else(|| {
                ApplyError::at(e, "the chosen staff member is not in the ranking")
            })?;
            let summary = serde_json::json!({
                "weights": decision.weights,
                "max_total": decision.weights.sum(),
                "considered": decision.considered,
                "ranked": decision.ranking.len(),
                "overrides_ranking": decision.overrides_ranking(),
                "total": chosen.total,
                "distance_km": chosen.distance_km,
                "factors": chosen.factors,
            });
            sqlx::query(
                "INSERT INTO work_allocations (allocation_id, allocation_no, work_kind, work_id, \
                     staff_id, client_id, active, allocated_at, allocated_by, decision) \
                 SELECT $1, coalesce(max(allocation_no), 0) + 1, $2, $3, $4, $5, true, $6, $7, $8 \
                 FROM work_allocations WHERE allocation_id = $1",
            )
            .bind(e.stream_id)
            .bind(work.kind.as_str())
            .bind(work.id)
            .bind(decision.chosen)
            .bind(decision.work.client_id)
            .bind(*at)
            .bind(&e.metadata.actor)
            .bind(summary)
            .execute(&mut *conn)
            .await?;
        }
        WorkAllocationEvent::WorkAllocationReleased { reason, at, .. } => {
            sqlx::query(
                "UPDATE work_allocations SET active = false, released_at = $2, release_reason = $3 \
                 WHERE allocation_id = $1 AND active",
            )
            .bind(e.stream_id)
            .bind(*at)
            .bind(reason)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Queries. All read `read_models.*` explicitly: they run on ordinary pooled connections.

/// One weekly availability slot as the read model shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailabilitySlot {
    /// monday ... sunday.
    pub weekday: String,
    /// Minutes after local midnight.
    pub start_minute: u16,
    /// Minutes after local midnight, exclusive (1440 at most).
    pub end_minute: u16,
}

/// A staff member with their current workload.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct StaffRow {
    pub staff_id: Uuid,
    pub name: String,
    pub skills: Vec<String>,
    /// Home latitude in micro-degrees.
    pub home_lat_e6: i32,
    /// Home longitude in micro-degrees.
    pub home_lon_e6: i32,
    pub max_workload: i32,
    /// Active allocations now.
    pub current_workload: i64,
    #[sqlx(json)]
    pub availability: Vec<AvailabilitySlot>,
    pub preferred_work_kinds: Vec<String>,
    pub preferred_clients: Vec<Uuid>,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

const STAFF_SELECT: &str = "SELECT s.staff_id, s.name, s.skills, s.home_lat_e6, s.home_lon_e6, \
        s.max_workload, \
        (SELECT count(*) FROM read_models.work_allocations a \
         WHERE a.staff_id = s.staff_id AND a.active) AS current_workload, \
        s.availability, s.preferred_work_kinds, s.preferred_clients, s.registered_at, \
        s.updated_at, s.version \
     FROM read_models.staff_members s";

/// Staff members by name (optionally matching `search` in the name or a skill), one page, and
/// the total matching.
pub async fn list_staff(
    pool: &PgPool,
    search: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<StaffRow>, i64), sqlx::Error> {
    let pattern = search.map(like_pattern);
    let filter = "($1::text IS NULL OR s.name ILIKE $1 ESCAPE '\\' \
                  OR EXISTS (SELECT 1 FROM unnest(s.skills) k WHERE k ILIKE $1 ESCAPE '\\'))";
    let rows = sqlx::query_as(&format!(
        "{STAFF_SELECT} WHERE {filter} ORDER BY s.name, s.staff_id LIMIT $2 OFFSET $3"
    ))
    .bind(&pattern)
    .bind(limit.clamp(1, 500))
    .bind(offset.max(0))
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM read_models.staff_members s WHERE {filter}"
    ))
    .bind(&pattern)
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

/// One staff member with their current workload.
pub async fn staff_member(pool: &PgPool, staff_id: Uuid) -> Result<Option<StaffRow>, sqlx::Error> {
    sqlx::query_as(&format!("{STAFF_SELECT} WHERE s.staff_id = $1"))
        .bind(staff_id)
        .fetch_optional(pool)
        .await
}

/// A row of `work_allocations`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AllocationRow {
    pub allocation_id: Uuid,
    pub allocation_no: i32,
    pub work_kind: String,
    pub work_id: Uuid,
    pub staff_id: Uuid,
    pub client_id: Uuid,
    pub active: bool,
    pub allocated_at: DateTime<Utc>,
    pub allocated_by: String,
    pub released_at: Option<DateTime<Utc>>,
    pub release_reason: Option<String>,
    /// Weights, considered, ranked, overrides_ranking, and the chosen staff member's total,
    /// max_total, distance_km and factors (factor, value, weight, contribution).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub decision: serde_json::Value,
}

const ALLOCATION_COLUMNS: &str = "allocation_id, allocation_no, work_kind, work_id, staff_id, \
    client_id, active, allocated_at, allocated_by, released_at, release_reason, decision";

/// The latest allocation of a piece of work (active or released), if it was ever allocated.
pub async fn allocation(
    pool: &PgPool,
    work_kind: &str,
    work_id: Uuid,
) -> Result<Option<AllocationRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ALLOCATION_COLUMNS} FROM read_models.work_allocations \
         WHERE work_kind = $1 AND work_id = $2 ORDER BY allocation_no DESC LIMIT 1"
    ))
    .bind(work_kind)
    .bind(work_id)
    .fetch_optional(pool)
    .await
}

/// A staff member's active allocations, oldest first.
pub async fn active_allocations(
    pool: &PgPool,
    staff_id: Uuid,
) -> Result<Vec<AllocationRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ALLOCATION_COLUMNS} FROM read_models.work_allocations \
         WHERE staff_id = $1 AND active ORDER BY allocated_at, allocation_id"
    ))
    .bind(staff_id)
    .fetch_all(pool)
    .await
}

#[derive(sqlx::FromRow)]
struct CandidateRow {
    staff_id: Uuid,
    skills: Vec<String>,
    home_lat_e6: i32,
    home_lon_e6: i32,
    max_workload: i32,
    availability: sqlx::types::Json<Vec<TimeSlot>>,
    preferred_work_kinds: Vec<String>,
    preferred_clients: Vec<Uuid>,
}

fn corrupt(staff_id: Uuid, what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("staff member {staff_id}: {what}").into())
}

/// What the allocations say about one staff member.
#[derive(Default)]
struct History {
    active: u32,
    clients: BTreeSet<Uuid>,
}

impl CandidateRow {
    fn into_candidate(self, history: Option<History>) -> Result<Candidate, sqlx::Error> {
        let home = GeoPoint::new(self.home_lat_e6, self.home_lon_e6)
            .map_err(|e| corrupt(self.staff_id, &e.to_string()))?;
        let history = history.unwrap_or_default();
        Ok(Candidate {
            staff_id: self.staff_id,
            skills: self.skills.into_iter().collect(),
            availability: self.availability.0,
            home,
            current_workload: history.active,
            max_workload: u32::try_from(self.max_workload)
                .map_err(|_| corrupt(self.staff_id, "negative max_workload"))?,
            past_clients: history.clients,
            preferences: StaffPreferences {
                work_kinds: self.preferred_work_kinds.into_iter().collect(),
                clients: self.preferred_clients.into_iter().collect(),
            },
        })
    }
}

/// The staffing model's generation: how many staffing events it has applied. Equal
/// generations mean equal tables (the log only grows, and is read in one fixed order, also by a
/// rebuild), so a candidate list read at one generation can be reused while it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(pub i64);

const GENERATION_SQL: &str = "SELECT events FROM read_models.staffing_generation WHERE id = 1";

/// The read model's current [`Generation`] (one row by primary key).
pub async fn generation(pool: &PgPool) -> Result<Generation, sqlx::Error> {
    let events: i64 = sqlx::query_scalar(GENERATION_SQL).fetch_one(pool).await?;
    Ok(Generation(events))
}

/// Every staff member as a ranking candidate: profile, availability, current workload (active
/// allocations) and past clients (the clients of all their allocations, released ones
/// included), with the generation they were read at, all in one snapshot. The allocations
/// are grouped here rather than in SQL: per-staff arrays cost PostgreSQL more than sending
/// the narrow rows.
pub async fn candidates(pool: &PgPool) -> Result<(Generation, Vec<Candidate>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let events: i64 = sqlx::query_scalar(GENERATION_SQL)
        .fetch_one(&mut *tx)
        .await?;
    let rows: Vec<CandidateRow> = sqlx::query_as(
        "SELECT staff_id, skills, home_lat_e6, home_lon_e6, max_workload, availability, \
                preferred_work_kinds, preferred_clients \
         FROM read_models.staff_members",
    )
    .fetch_all(&mut *tx)
    .await?;
    let allocations: Vec<(Uuid, Uuid, bool)> =
        sqlx::query_as("SELECT staff_id, client_id, active FROM read_models.work_allocations")
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    let mut histories: HashMap<Uuid, History> = HashMap::with_capacity(rows.len());
    for (staff_id, client_id, active) in allocations {
        let history = histories.entry(staff_id).or_default();
        history.active += u32::from(active);
        history.clients.insert(client_id);
    }
    let candidates = rows
        .into_iter()
        .map(|row| {
            let history = histories.remove(&row.staff_id);
            row.into_candidate(history)
        })
        .collect::<Result<_, _>>()?;
    Ok((Generation(events), candidates))
}

/// The latest candidate list, reused while the read model's [`Generation`] stays the same, so
/// that ranking costs one small query instead of reading every staff member each time
/// (`BENCHMARKS.md`, "Staff allocation"). Correct across processes: every use compares the
/// generation in the database.
#[derive(Debug, Default)]
pub struct CandidateCache {
    latest: std::sync::Mutex<Option<(Generation, std::sync::Arc<Vec<Candidate>>)>>,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

impl CandidateCache {
    /// Every staff member as a candidate, as the read model holds them now.
    pub async fn candidates(
        &self,
        pool: &PgPool,
    ) -> Result<std::sync::Arc<Vec<Candidate>>, sqlx::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = generation(pool).await?;
        let cached = self
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(at, _)| *at == now)
            .map(|(_, list)| list.clone());
        if let Some(list) = cached {
            self.hits.fetch_add(1, Relaxed);
            return Ok(list);
        }
        self.misses.fetch_add(1, Relaxed);
        let (at, list) = candidates(pool).await?;
        let list = std::sync::Arc::new(list);
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some((at, list.clone()));
        Ok(list)
    }

    /// Uses answered from the cache, and uses that read the candidates.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }
}

/// The names of the staff members among `ids` that the read model knows.
pub async fn names(pool: &PgPool, ids: &[Uuid]) -> Result<HashMap<Uuid, String>, sqlx::Error> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT staff_id, name FROM read_models.staff_members WHERE staff_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}
