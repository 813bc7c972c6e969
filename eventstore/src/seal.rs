//! The hash chain over the log: every event sealed, in read order, with a SHA-256 over its
//! content and the previous event's seal, so that rewriting, inserting or removing an event is
//! found by recomputing the chain.
//!
//! Where the order is final. Positions are handed out at insert time but transactions commit out
//! of order, so the chain cannot be computed by the writers without making every append wait for
//! the previous one. Instead the [`Sealer`] follows the log like a projection: it seals only the
//! readable prefix (below the oldest running transaction, where nothing can be inserted any
//! more), in batches, one sealer at a time across servers (an advisory lock; the others skip the
//! round). Appends never wait for it; the seal lags the log by one batch, or by at most a few
//! hundred milliseconds when the log grows slowly: rounds that find less than a batch are spaced
//! out so that events gather, and seal transactions do not wait for their WAL flush (seals are
//! derived, and recomputed after a crash), so that sealing does not take the writers' rate.
//!
//! What is hashed. [`RECORD_SQL`]: the event's position, stream, version, type, schema version,
//! payload, metadata and recorded time as one JSON object rendered by PostgreSQL. `jsonb`'s text
//! form is deterministic (keys ordered by length then bytes, fixed spacing, numbers as stored),
//! so the same row always gives the same bytes, and an export can carry exactly the bytes that
//! were hashed. A seal is `SHA-256(previous seal || record)`, the first one's previous seal
//! being 32 zero bytes ([`GENESIS`]).
//!
//! What differs. Each seal also keeps a two-byte fingerprint per field ([`FIELDS`]), so that a
//! verification that finds a rewritten event can say which fields were changed, not only that
//! the hash differs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::{Cursor, EventStore, StoreError};

/// The previous seal of the first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// The event's content as sealed, from a row of `events e`. Timestamps are rendered in UTC
/// explicitly, as `to_json` would use the session's time zone.
pub const RECORD_SQL: &str = "jsonb_build_object(\
    'position', e.position, 'stream_id', e.stream_id, 'stream_type', e.stream_type, \
    'version', e.version, 'event_type', e.event_type, 'schema_version', e.schema_version, \
    'payload', e.payload, 'actor', e.actor, 'command_id', e.command_id, \
    'correlation_id', e.correlation_id, 'causation_id', e.causation_id, \
    'recorded_at', to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))::text";

/// The fields of a record, in fingerprint order.
pub const FIELDS: [&str; 12] = [
    "position",
    "stream_id",
    "stream_type",
    "version",
    "event_type",
    "schema_version",
    "payload",
    "actor",
    "command_id",
    "correlation_id",
    "causation_id",
    "recorded_at",
];

/// Longest [`Sealer::catch_up`] waits for the readable horizon to pass the head.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(10);

/// Advisory-lock key: one sealer at a time across processes.
const SEAL_LOCK: i64 = 0x0CA5_E5EA;

/// The seal of `record` after `previous`.
pub fn link(previous: &[u8; 32], record: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(record.as_bytes());
    hasher.finalize().into()
}

/// Two bytes of SHA-256 per field of `record`, in [`FIELDS`] order; a record that is not a
/// JSON object fingerprints as if every field were missing.
pub fn fingerprint(record: &str) -> Vec<u8> {
    let fields: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(record).unwrap_or_default();
    FIELDS
        .iter()
        .flat_map(|name| {
            let text = fields.get(*name).map(|v| v.to_string()).unwrap_or_default();
            let digest = Sha256::digest(text.as_bytes());
            [digest[0], digest[1]]
        })
        .collect()
}

/// The fields whose fingerprints differ.
pub fn differing_fields(record: &str, sealed: &[u8]) -> Vec<&'static str> {
    let now = fingerprint(record);
    FIELDS
        .iter()
        .enumerate()
        .filter(|(i, _)| now.get(2 * i..2 * i + 2) != sealed.get(2 * i..2 * i + 2))
        .map(|(_, name)| *name)
        .collect()
}

/// The last seal: how far the chain reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealHead {
    /// Events sealed so far; the last one's number in the chain.
    pub seq: u64,
    pub cursor: Cursor,
    pub hash: [u8; 32],
}

/// The chain's head, `None` before the first seal.
pub async fn head(pool: &PgPool) -> Result<Option<SealHead>, StoreError> {
    let row: Option<(i64, i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, transaction_id::text::bigint, position, hash FROM event_seals \
         ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(seq, tx, position, hash)| SealHead {
        seq: crate::store::to_u64(seq),
        cursor: Cursor::new(crate::store::to_u64(tx), position),
        hash: to_hash(&hash),
    }))
}

fn to_hash(bytes: &[u8]) -> [u8; 32] {
    let mut hash = [0; 32];
    if bytes.len() == 32 {
        hash.copy_from_slice(bytes);
    }
    hash
}

/// Seals the log in the background, as far as it is readable.
#[derive(Debug, Clone)]
pub struct Sealer {
    store: EventStore,
    /// Events sealed per transaction.
    batch: i64,
    /// How long it waits for a wake-up before looking again.
    poll: Duration,
    /// The least time between two rounds that found less than a batch: a round per append
    /// would cost the writers a transaction each, so the sealer lets events gather instead.
    gather: Duration,
}

impl Sealer {
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            batch: 2_000,
            poll: Duration::from_secs(1),
            gather: Duration::from_millis(200),
        }
    }

    /// Seals up to one batch of events past the chain's head, in one transaction. Returns how
    /// many; 0 when there is nothing to seal, or when another process is sealing right now and
    /// `wait` is false (the background loop skips the round; a caller that needs the chain at
    /// the head waits its turn).
    pub async fn seal_once(&self, wait: bool) -> Result<u64, StoreError> {
        let mut tx = self.store.pool().begin().await?;
        // Seals are derived from the log: a crash that loses the last ones loses nothing the
        // next sealer does not recompute, so the sealer does not wait for its own WAL flush
        // (which would compete with the appends' flushes).
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        if wait {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(SEAL_LOCK)
                .execute(&mut *tx)
                .await?;
        } else {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(SEAL_LOCK)
                .fetch_one(&mut *tx)
                .await?;
            if !locked {
                return Ok(0);
            }
        }
        let last: Option<(i64, i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, transaction_id::text::bigint, position, hash FROM event_seals \
             ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let (mut seq, after, mut previous) = match last {
            Some((seq, tx_id, position, hash)) => (
                seq,
                Cursor::new(crate::store::to_u64(tx_id), position),
                to_hash(&hash),
            ),
            None => (0, Cursor::START, GENESIS),
        };
        let rows = sqlx::query(&format!(
            "SELECT e.position, e.transaction_id::text::bigint AS tx, {RECORD_SQL} AS record \
             FROM events e \
             WHERE (e.transaction_id, e.position) > ($1::bigint::text::xid8, $2) \
               AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY e.transaction_id, e.position LIMIT $3"
        ))
        .bind(i64::try_from(after.transaction_id).unwrap_or(i64::MAX))
        .bind(after.position)
        .bind(self.batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut seqs = Vec::with_capacity(rows.len());
        let mut positions = Vec::with_capacity(rows.len());
        let mut transactions = Vec::with_capacity(rows.len());
        let mut hashes = Vec::with_capacity(rows.len());
        let mut fingerprints = Vec::with_capacity(rows.len());
        for row in &rows {
            let record: String = row.try_get("record")?;
            previous = link(&previous, &record);
            seq += 1;
            seqs.push(seq);
            positions.push(row.try_get::<i64, _>("position")?);
            transactions.push(row.try_get::<i64, _>("tx")?);
            hashes.push(previous.to_vec());
            fingerprints.push(fingerprint(&record));
        }
        sqlx::query(
            "INSERT INTO event_seals (seq, position, transaction_id, hash, fields) \
             SELECT s, p, t::text::xid8, h, f \
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bytea[]) \
                  AS x(s, p, t, h, f)",
        )
        .bind(&seqs)
        .bind(&positions)
        .bind(&transactions)
        .bind(&hashes)
        .bind(&fingerprints)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    /// Seals up to the log's head as of the call: for verification, export and checkpoints,
    /// which want the chain to cover everything written before they were asked. The readable
    /// horizon is the whole PostgreSQL server's oldest running transaction, so a long one
    /// elsewhere can hold it back: this waits for it up to [`CATCH_UP_WAIT`], then returns
    /// with what could be sealed (callers report the chain's length, so nothing is claimed).
    pub async fn catch_up(&self) -> Result<u64, StoreError> {
        let target = self.store.head().await?;
        let deadline = std::time::Instant::now() + CATCH_UP_WAIT;
        let mut total = 0;
        loop {
            let sealed = self.seal_once(true).await?;
            total += sealed;
            if sealed >= u64::try_from(self.batch).unwrap_or(0) {
                continue;
            }
            let reached = head(self.store.pool())
                .await?
                .map_or(Cursor::START, |h| h.cursor);
            if reached >= target || std::time::Instant::now() >= deadline {
                return Ok(total);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Seals as the log grows, until dropped. Errors (a lost connection) are logged and retried.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut woken = self.store.wakeup().subscribe();
            loop {
                woken.borrow_and_update();
                match self.seal_once(false).await {
                    Ok(n) if n >= u64::try_from(self.batch).unwrap_or(0) => continue,
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "sealing the log failed; will retry"),
                }
                tokio::time::sleep(self.gather).await;
                let _ = tokio::time::timeout(self.poll, woken.changed()).await;
            }
        })
    }
}

/// The first place where the log and its chain disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// The chain number the event should have (the seal count before it, plus one).
    pub seq: u64,
    /// The event's position in the log (for a missing event: the seal's).
    pub position: i64,
    /// The event's stream, when the event is there.
    pub stream_id: Option<Uuid>,
    /// `content_changed`, `seal_mismatch`, `not_sealed` or `event_missing`.
    pub kind: &'static str,
    /// The fields that were changed, for `content_changed`.
    pub fields: Vec<&'static str>,
    /// One sentence for people.
    pub detail: String,
}

/// What a walk over the chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainWalk {
    /// Events checked against their seals.
    pub checked: u64,
    /// The chain's hash after the last event checked.
    pub last_hash: [u8; 32],
    pub last_seq: u64,
    /// The chain hash at each seq in `keep`, for comparing with signed checkpoints.
    pub kept: BTreeMap<u64, [u8; 32]>,
    pub first_break: Option<ChainBreak>,
}

/// Recomputes the chain from `from_seq` (1 for the start) to the head: every event in read order
/// must have the next seal, and every seal its event with the content it sealed. Calls
/// `progress(checked, total)` after each page. Stops at the first break.
pub async fn walk(
    pool: &PgPool,
    from_seq: u64,
    keep: &std::collections::BTreeSet<u64>,
    mut progress: impl FnMut(u64, u64),
) -> Result<ChainWalk, StoreError> {
    let Some(head) = head(pool).await? else {
        return Ok(ChainWalk {
            checked: 0,
            last_hash: GENESIS,
            last_seq: 0,
            kept: BTreeMap::new(),
            first_break: None,
        });
    };
    let from_seq = from_seq.max(1);
    // Where to start: after the seal before `from_seq`, trusting that seal's hash as the link.
    let start: Option<(i64, i64, Vec<u8>)> = if from_seq > 1 {
        sqlx::query_as(
            "SELECT transaction_id::text::bigint, position, hash FROM event_seals WHERE seq = $1",
        )
        .bind(i64::try_from(from_seq - 1).unwrap_or(i64::MAX))
        .fetch_optional(pool)
        .await?
    } else {
        None
    };
    let mut expected = if start.is_some() { from_seq } else { 1 };
    let (mut after, mut previous) = match start {
        Some((tx, position, hash)) => (
            Cursor::new(crate::store::to_u64(tx), position),
            to_hash(&hash),
        ),
        None => (Cursor::START, GENESIS),
    };
    let total = head.seq.saturating_sub(expected - 1);
    let mut walk = ChainWalk {
        checked: 0,
        last_hash: previous,
        last_seq: expected - 1,
        kept: BTreeMap::new(),
        first_break: None,
    };
    let sql = format!(
        "SELECT e.position, e.transaction_id::text::bigint AS tx, e.stream_id, {RECORD_SQL} AS record, \
                s.seq, s.hash, s.fields \
         FROM events e LEFT JOIN event_seals s ON s.position = e.position \
         WHERE (e.transaction_id, e.position) > ($1::bigint::text::xid8, $2) \
           AND (e.transaction_id, e.position) <= ($3::bigint::text::xid8, $4) \
         ORDER BY e.transaction_id, e.position LIMIT 10000"
    );
    loop {
        let rows = sqlx::query(&sql)
            .bind(i64::try_from(after.transaction_id).unwrap_or(i64::MAX))
            .bind(after.position)
            .bind(i64::try_from(head.cursor.transaction_id).unwrap_or(i64::MAX))
            .bind(head.cursor.position)
            .fetch_all(pool)
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let position: i64 = row.try_get("position")?;
            let stream_id: Uuid = row.try_get("stream_id")?;
            let record: String = row.try_get("record")?;
            let seq: Option<i64> = row.try_get("seq")?;
            let broken = |kind, fields: Vec<&'static str>, detail: String| ChainBreak {
                seq: expected,
                position,
                stream_id: Some(stream_id),
                kind,
                fields,
                detail,
            };
            let Some(seq) = seq.map(crate::store::to_u64) else {
                walk.first_break = Some(broken(
                    "not_sealed",
                    vec![],
                    format!(
                        "event at position {position} has no seal, though the chain reaches past it: it was inserted after sealing"
                    ),
                ));
                return Ok(walk);
            };
            if seq != expected {
                // The event here is the next one: the missing event's stream is not known.
                walk.first_break = Some(ChainBreak {
                    seq: expected,
                    position,
                    stream_id: None,
                    kind: "event_missing",
                    fields: vec![],
                    detail: format!(
                        "the event sealed as number {expected} is gone: the next event in the log is sealed as number {seq}"
                    ),
                });
                return Ok(walk);
            }
            let sealed = to_hash(&row.try_get::<Vec<u8>, _>("hash")?);
            let now = link(&previous, &record);
            if now != sealed {
                let fields = differing_fields(&record, &row.try_get::<Vec<u8>, _>("fields")?);
                walk.first_break = Some(if fields.is_empty() {
                    broken(
                        "seal_mismatch",
                        fields,
                        format!(
                            "event at position {position} does not hash to its seal, though its fields match their fingerprints: the seal or an earlier link was rewritten"
                        ),
                    )
                } else {
                    let detail = format!(
                        "event at position {position} was changed after sealing: {}",
                        fields.join(", ")
                    );
                    broken("content_changed", fields, detail)
                });
                return Ok(walk);
            }
            previous = now;
            if keep.contains(&seq) {
                walk.kept.insert(seq, now);
            }
            walk.checked += 1;
            walk.last_seq = seq;
            walk.last_hash = now;
            expected += 1;
            after = Cursor::new(crate::store::to_u64(row.try_get::<i64, _>("tx")?), position);
        }
        progress(walk.checked, total);
    }
    if walk.last_seq < head.seq {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM event_seals WHERE seq = $1")
                .bind(i64::try_from(expected).unwrap_or(i64::MAX))
                .fetch_optional(pool)
                .await?;
        walk.first_break = Some(ChainBreak {
            seq: expected,
            position: position.unwrap_or(0),
            stream_id: None,
            kind: "event_missing",
            fields: vec![],
            detail: format!(
                "the event sealed as number {expected} is gone from the log (the chain reaches {})",
                head.seq
            ),
        });
    }
    Ok(walk)
}

/// The `format` of an export's header line.
pub const EXPORT_FORMAT: &str = "caseledger-audit-export/1";

/// Seals per query while exporting; bounds memory whatever the log's size.
const EXPORT_PAGE: i64 = 2_000;

/// The sealed log as newline-delimited JSON, in chunks: a header line (`format`,
/// `chain_length`), then one line per event up to the chain's head when called. The route and
/// the command line both write this; `docs/audit.md` documents it.
pub fn export(
    pool: PgPool,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, StoreError>> + Send + 'static {
    async_stream::try_stream! {
        let length = head(&pool).await?.map_or(0, |h| h.seq);
        let header = serde_json::json!({"format": EXPORT_FORMAT, "chain_length": length});
        yield format!("{header}\n").into_bytes();
        let mut after = 0;
        while after < length {
            // Never past the head read above, so that the header's length is the export's.
            let limit = EXPORT_PAGE.min(i64::try_from(length - after).unwrap_or(EXPORT_PAGE));
            let (last, chunk) = export_page(&pool, after, limit).await?;
            if last <= after {
                break;
            }
            after = last;
            yield chunk;
        }
    }
}

/// Up to `limit` export lines after chain number `after_seq`, as NDJSON, with the last number.
async fn export_page(
    pool: &PgPool,
    after_seq: u64,
    limit: i64,
) -> Result<(u64, Vec<u8>), StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT s.seq, s.hash, {RECORD_SQL} AS record \
         FROM event_seals s JOIN events e ON e.position = s.position \
         WHERE s.seq > $1 ORDER BY s.seq LIMIT $2"
    ))
    .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut last = after_seq;
    let mut chunk = Vec::with_capacity(rows.len() * 512);
    for row in &rows {
        last = crate::store::to_u64(row.try_get("seq")?);
        let line = serde_json::json!({
            "seq": last,
            "hash": hex::encode(row.try_get::<Vec<u8>, _>("hash")?),
            "record": row.try_get::<String, _>("record")?,
        });
        chunk.extend_from_slice(line.to_string().as_bytes());
        chunk.push(b'\n');
    }
    Ok((last, chunk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_field_is_named_by_its_fingerprint() {
        let before = r#"{"actor": "alice", "payload": {"name": "Ada"}, "version": 1}"#;
        let after = r#"{"actor": "alice", "payload": {"name": "Eve"}, "version": 1}"#;
        assert_eq!(
            differing_fields(after, &fingerprint(before)),
            vec!["payload"]
        );
        assert!(differing_fields(before, &fingerprint(before)).is_empty());
    }

    #[test]
    fn each_link_depends_on_the_one_before() {
        let first = link(&GENESIS, "a");
        assert_ne!(link(&first, "b"), link(&GENESIS, "b"));
    }
}
