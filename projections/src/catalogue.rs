//! The stream catalogue: one row per stream (its type, version, first and last event time, event
//! count). Operators use it to find streams; the projection engine's tests use it because a
//! double-applied event shows up in its counts.

use chrono::{DateTime, Utc};
use eventstore::RecordedEvent;
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::projection::{ApplyError, Projection};

#[derive(Debug, Clone, Copy, Default)]
pub struct StreamCatalogue;

const CREATE_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS stream_catalogue (
    stream_id      uuid PRIMARY KEY,
    stream_type    text NOT NULL,
    version        bigint NOT NULL,
    first_event_at timestamptz NOT NULL,
    last_event_at  timestamptz NOT NULL,
    event_count    bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS stream_catalogue_by_type ON stream_catalogue (stream_type, stream_id);
COMMENT ON TABLE stream_catalogue IS 'One row per event stream (aggregate instance): its type, version and activity.';
COMMENT ON COLUMN stream_catalogue.stream_id IS 'The stream (aggregate instance) id.';
COMMENT ON COLUMN stream_catalogue.stream_type IS 'Kind of aggregate: renewal, task, physician, ...';
COMMENT ON COLUMN stream_catalogue.version IS 'Version of the stream''s latest event (1 = one event).';
COMMENT ON COLUMN stream_catalogue.first_event_at IS 'When the stream''s first event was recorded.';
COMMENT ON COLUMN stream_catalogue.last_event_at IS 'When the stream''s latest event was recorded.';
COMMENT ON COLUMN stream_catalogue.event_count IS 'Number of events applied to this row; equals version unless events were missed or repeated.';
"#;

/// One page's effect on one stream, merged in memory so each stream costs one row write.
struct Delta {
    stream_type: String,
    version: i64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    count: i64,
}

impl Projection for StreamCatalogue {
    fn name(&self) -> &'static str {
        "stream_catalogue"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &[]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["stream_catalogue"]
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
            let mut deltas: std::collections::HashMap<Uuid, Delta> =
                std::collections::HashMap::new();
            for e in events {
                let version = i64::try_from(e.version)
                    .map_err(|_| ApplyError::at(e, "version out of range"))?;
                deltas
                    .entry(e.stream_id)
                    .and_modify(|d| {
                        d.version = d.version.max(version);
                        d.last = d.last.max(e.recorded_at);
                        d.first = d.first.min(e.recorded_at);
                        d.count += 1;
                    })
                    .or_insert_with(|| Delta {
                        stream_type: e.stream_type.clone(),
                        version,
                        first: e.recorded_at,
                        last: e.recorded_at,
                        count: 1,
                    });
            }
            let mut ids = Vec::with_capacity(deltas.len());
            let mut types = Vec::with_capacity(deltas.len());
            let mut versions = Vec::with_capacity(deltas.len());
            let mut firsts = Vec::with_capacity(deltas.len());
            let mut lasts = Vec::with_capacity(deltas.len());
            let mut counts = Vec::with_capacity(deltas.len());
            for (id, d) in deltas {
                ids.push(id);
                types.push(d.stream_type);
                versions.push(d.version);
                firsts.push(d.first);
                lasts.push(d.last);
                counts.push(d.count);
            }
            // One statement per page, whatever its size.
            sqlx::query(
                "INSERT INTO stream_catalogue AS c (stream_id, stream_type, version, first_event_at, last_event_at, event_count) \
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[], $6::bigint[]) \
                 ON CONFLICT (stream_id) DO UPDATE SET \
                   version = greatest(c.version, excluded.version), \
                   first_event_at = least(c.first_event_at, excluded.first_event_at), \
                   last_event_at = greatest(c.last_event_at, excluded.last_event_at), \
                   event_count = c.event_count + excluded.event_count",
            )
            .bind(&ids)
            .bind(&types)
            .bind(&versions)
            .bind(&firsts)
            .bind(&lasts)
            .bind(&counts)
            .execute(&mut *conn)
            .await?;
            Ok(())
        })
    }
}

/// A row of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct StreamEntry {
    pub stream_id: Uuid,
    pub stream_type: String,
    pub version: i64,
    pub first_event_at: DateTime<Utc>,
    pub last_event_at: DateTime<Utc>,
    pub event_count: i64,
}

/// Streams of one type (or all), ordered by id, after `after_id`, at most `limit`.
pub async fn list(
    pool: &PgPool,
    stream_type: Option<&str>,
    after_id: Option<Uuid>,
    limit: i64,
) -> Result<Vec<StreamEntry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT stream_id, stream_type, version, first_event_at, last_event_at, event_count \
         FROM read_models.stream_catalogue \
         WHERE ($1::text IS NULL OR stream_type = $1) AND ($2::uuid IS NULL OR stream_id > $2) \
         ORDER BY stream_id LIMIT $3",
    )
    .bind(stream_type)
    .bind(after_id)
    .bind(limit.clamp(1, 1_000))
    .fetch_all(pool)
    .await
}
