//! The log's proof of itself, for auditors: signed checkpoints of the hash chain
//! ([`eventstore::seal`]) and the verification that recomputes the chain and checks them.
//!
//! A checkpoint is an event (`ChainCheckpointSigned` on the one `audit_chain` stream) recording
//! the chain's length, the cursor of its last event, its hash and the time, signed with the
//! server's ed25519 key. Someone who can rewrite the log and recompute every seal (the database
//! owner, say) still cannot sign: the key lives outside the database, in a file only the server
//! reads. So a verification that trusts the public key, not the database, finds the rewrite at
//! the first checkpoint after it.
//!
//! [`AuditKey::message`] is the exact byte string signed; `docs/audit.md` documents it for
//! third parties (`tools/audit/verify_export.py` verifies an export with it, stdlib only).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use eventstore::seal::{self, ChainBreak, Sealer};
use eventstore::{EventStore, ExpectedVersion, Metadata, NewEvent, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::Clock;

/// The event type of a signed checkpoint.
pub const CHECKPOINT_EVENT: &str = "ChainCheckpointSigned";
/// The stream type of the one stream checkpoints are appended to.
pub const CHAIN_STREAM_TYPE: &str = "audit_chain";
/// The one checkpoint stream: a fixed id, so every server appends to the same one.
pub const CHAIN_STREAM_ID: Uuid = Uuid::from_u128(0x0ca5_e1ed_6e00_4000_8000_00c4_a1ec_0001);
/// What a signature covers starts with this, so that a signature made for anything else (with
/// the same key) can never pass as a checkpoint's.
pub const MESSAGE_PREFIX: &str = "caseledger-chain-checkpoint/v1";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("could not read the audit signing key {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error(
        "the audit signing key in {path} is not 64 hexadecimal characters (a 32-byte ed25519 seed)"
    )]
    KeyFormat { path: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not encode a checkpoint: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The server's ed25519 signing key.
pub struct AuditKey {
    signing: SigningKey,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret half, even in a debug log.
        f.debug_struct("AuditKey")
            .field("public", &self.public_hex())
            .finish()
    }
}

impl AuditKey {
    /// The key in `path` (64 hex characters, the seed), made on first use: a fresh random key
    /// written with mode 0600 in a directory created if missing.
    pub fn load_or_create(path: &Path) -> Result<Self, AuditError> {
        let shown = path.display().to_string();
        let failed = |e: std::io::Error| AuditError::KeyFile {
            path: shown.clone(),
            reason: e.to_string(),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let seed: [u8; 32] = hex::decode(text.trim())
                    .ok()
                    .and_then(|bytes| bytes.try_into().ok())
                    .ok_or(AuditError::KeyFormat {
                        path: shown.clone(),
                    })?;
                Ok(Self::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(failed)?;
                }
                // Written aside, then linked into place: two servers starting together on a
                // fresh machine never read a half-written key, and the second keeps the first's.
                let aside = path.with_extension(format!("new-{}", Uuid::new_v4().simple()));
                write_private(
                    &aside,
                    &format!("{}\n", hex::encode(key.signing.to_bytes())),
                )
                .map_err(failed)?;
                let linked = std::fs::hard_link(&aside, path);
                let _ = std::fs::remove_file(&aside);
                match linked {
                    Ok(()) => {
                        tracing::info!(path = %shown, public_key = %key.public_hex(), "created the audit signing key");
                        Ok(key)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path)
                    }
                    Err(e) => Err(failed(e)),
                }
            }
            Err(e) => Err(failed(e)),
        }
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        use argon2::password_hash::rand_core::{OsRng, RngCore};
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// The public half, hex: what `caseledger audit public-key` prints and auditors trust.
    pub fn public_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().to_bytes())
    }

    /// The exact text a checkpoint's signature covers.
    pub fn message(checkpoint: &Checkpoint) -> String {
        format!(
            "{MESSAGE_PREFIX}\n{}\n{}\n{}\n{}\n{}",
            checkpoint.seq,
            checkpoint.transaction_id,
            checkpoint.position,
            checkpoint.chain_hash,
            checkpoint.signed_at
        )
    }

    fn sign(&self, checkpoint: &mut Checkpoint) {
        checkpoint.public_key = self.public_hex();
        checkpoint.signature = hex::encode(
            self.signing
                .sign(Self::message(checkpoint).as_bytes())
                .to_bytes(),
        );
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// A checkpoint's payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Events in the chain at the checkpoint (the last one's chain number).
    pub seq: u64,
    /// Read-order cursor of that last event.
    pub transaction_id: u64,
    pub position: i64,
    /// The chain's hash after it, hex.
    pub chain_hash: String,
    /// RFC 3339 in UTC with microseconds, as signed.
    pub signed_at: String,
    /// The signer's public key and the signature over [`AuditKey::message`], hex.
    pub public_key: String,
    pub signature: String,
}

/// Something a verification found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Finding {
    /// The log and its chain disagree.
    Chain(ChainBreak),
    /// A checkpoint does not hold.
    Checkpoint(CheckpointFinding),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointFinding {
    /// `checkpoint_signature` (the signature does not verify), `checkpoint_unknown_key` (signed,
    /// but not by a trusted key) or `checkpoint_hash` (the chain's hash at its seq differs
    /// from the signed one: the seals were recomputed over a rewritten log).
    pub kind: &'static str,
    /// The checkpoint event's position in the log.
    pub position: i64,
    /// The chain number it signs.
    pub seq: u64,
    pub detail: String,
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    /// Events recomputed against their seals.
    pub events_checked: u64,
    /// Signed checkpoints checked (signature, key and hash).
    pub checkpoints_checked: u64,
    /// The chain's length and hash where the verification ended.
    pub chain_length: u64,
    pub chain_hash: String,
    /// The public key trusted for checkpoints.
    pub public_key: String,
    /// The first problem, in log order; `None` when `ok`.
    pub first_problem: Option<Finding>,
    pub verified_at: DateTime<Utc>,
}

/// Signed checkpoints and verification.
#[derive(Debug, Clone)]
pub struct Audit {
    store: EventStore,
    sealer: Sealer,
    key: Arc<AuditKey>,
    clock: Arc<dyn Clock>,
}

impl Audit {
    pub fn new(store: EventStore, key: Arc<AuditKey>, clock: Arc<dyn Clock>) -> Self {
        Self {
            sealer: Sealer::new(store.clone()),
            store,
            key,
            clock,
        }
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    pub fn public_key(&self) -> String {
        self.key.public_hex()
    }

    /// The chain number of the event at `cursor`, if the chain reaches it.
    pub async fn seq_at(&self, cursor: eventstore::Cursor) -> Result<Option<u64>, AuditError> {
        let seq: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM event_seals WHERE position = $1 \
             AND transaction_id = $2::bigint::text::xid8",
        )
        .bind(cursor.position)
        .bind(i64::try_from(cursor.transaction_id).unwrap_or(i64::MAX))
        .fetch_optional(self.store.pool())
        .await?;
        Ok(seq.map(|s| u64::try_from(s).unwrap_or(0)))
    }

    /// Seals what is readable, then signs and appends a checkpoint of the chain's head, unless
    /// the last checkpoint already covers it (an idle log gets no new checkpoints).
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, AuditError> {
        self.sealer.catch_up().await?;
        let Some(head) = seal::head(self.store.pool()).await? else {
            return Ok(None);
        };
        let checkpoints = checkpoints(self.store.pool()).await?;
        if let Some((_, last)) = checkpoints.last() {
            // The last checkpoint is itself the newest sealed event: nothing else happened.
            if head.seq <= last.seq + 1 {
                return Ok(None);
            }
        }
        let mut checkpoint = Checkpoint {
            seq: head.seq,
            transaction_id: head.cursor.transaction_id,
            position: head.cursor.position,
            chain_hash: hex::encode(head.hash),
            signed_at: self
                .clock
                .now()
                .to_rfc3339_opts(SecondsFormat::Micros, true),
            ..Checkpoint::default()
        };
        self.key.sign(&mut checkpoint);
        let payload = serde_json::to_value(&checkpoint)?;
        // One stream; concurrent checkpoints (the job runs one at a time, but a manual run may
        // race a scheduled one in another server) each land at the next version.
        let version = self.store.stream_version(CHAIN_STREAM_ID).await?;
        let expected = if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        };
        self.store
            .append(
                CHAIN_STREAM_ID,
                CHAIN_STREAM_TYPE,
                expected,
                &[NewEvent::new(CHECKPOINT_EVENT, payload)],
                &Metadata::by("audit"),
            )
            .await?;
        Ok(Some(checkpoint))
    }

    /// Recomputes the chain from chain number `from_seq` (1: the start) and checks every signed
    /// checkpoint in that range against the trusted key and the recomputed hashes.
    pub async fn verify(
        &self,
        from_seq: u64,
        progress: impl FnMut(u64, u64),
    ) -> Result<VerifyReport, AuditError> {
        let pool = self.store.pool();
        let checkpoints: Vec<(i64, Checkpoint)> = checkpoints(pool)
            .await?
            .into_iter()
            .filter(|(_, c)| c.seq >= from_seq.max(1))
            .collect();
        let keep: BTreeSet<u64> = checkpoints.iter().map(|(_, c)| c.seq).collect();
        let walk = seal::walk(pool, from_seq, &keep, progress).await?;
        let trusted = self.key.public_hex();
        let mut checked = 0;
        let mut problem = walk.first_break.clone().map(Finding::Chain);
        for (position, checkpoint) in &checkpoints {
            // Past a chain break nothing more is known.
            if walk.first_break.is_some() && checkpoint.seq > walk.last_seq {
                break;
            }
            if let Some(finding) = check_checkpoint(*position, checkpoint, &trusted, &walk.kept) {
                // A forged checkpoint may sit before the first chain break: report the
                // earlier in log order.
                problem = match problem {
                    Some(Finding::Chain(b)) if b.seq <= checkpoint.seq => Some(Finding::Chain(b)),
                    _ => Some(Finding::Checkpoint(finding)),
                };
                break;
            }
            checked += 1;
        }
        Ok(VerifyReport {
            ok: problem.is_none(),
            events_checked: walk.checked,
            checkpoints_checked: checked,
            chain_length: walk.last_seq,
            chain_hash: hex::encode(walk.last_hash),
            public_key: trusted,
            first_problem: problem,
            verified_at: self.clock.now(),
        })
    }
}

fn check_checkpoint(
    position: i64,
    checkpoint: &Checkpoint,
    trusted: &str,
    kept: &std::collections::BTreeMap<u64, [u8; 32]>,
) -> Option<CheckpointFinding> {
    let finding = |kind, detail: String| CheckpointFinding {
        kind,
        position,
        seq: checkpoint.seq,
        detail,
    };
    let key: Option<VerifyingKey> = hex::decode(&checkpoint.public_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok());
    let signature: Option<Signature> = hex::decode(&checkpoint.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b));
    let valid = match (key, signature) {
        (Some(key), Some(signature)) => key
            .verify(AuditKey::message(checkpoint).as_bytes(), &signature)
            .is_ok(),
        _ => false,
    };
    if !valid {
        return Some(finding(
            "checkpoint_signature",
            format!(
                "the checkpoint at position {position} (chain length {}) has a signature that does not verify",
                checkpoint.seq
            ),
        ));
    }
    if checkpoint.public_key != trusted {
        return Some(finding(
            "checkpoint_unknown_key",
            format!(
                "the checkpoint at position {position} is signed by {}, not by the trusted key {trusted}",
                checkpoint.public_key
            ),
        ));
    }
    match kept.get(&checkpoint.seq) {
        Some(hash) if hex::encode(hash) == checkpoint.chain_hash => None,
        Some(hash) => Some(finding(
            "checkpoint_hash",
            format!(
                "the chain's hash at length {} is {}, but the checkpoint at position {position} signed {}: the log and its seals were rewritten before it",
                checkpoint.seq,
                hex::encode(hash),
                checkpoint.chain_hash
            ),
        )),
        None => Some(finding(
            "checkpoint_hash",
            format!(
                "the checkpoint at position {position} signs a chain of length {} that the log no longer reaches",
                checkpoint.seq
            ),
        )),
    }
}

/// Every checkpoint in the log with its position, oldest first. A payload that does not parse
/// is kept as an unsigned checkpoint, so that verification reports it instead of skipping it.
pub async fn checkpoints(pool: &PgPool) -> Result<Vec<(i64, Checkpoint)>, AuditError> {
    let rows: Vec<(i64, serde_json::Value)> = sqlx::query_as(
        "SELECT position, payload FROM events WHERE stream_id = $1 AND event_type = $2 ORDER BY version",
    )
    .bind(CHAIN_STREAM_ID)
    .bind(CHECKPOINT_EVENT)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(position, payload)| {
            (
                position,
                serde_json::from_value(payload).unwrap_or_default(),
            )
        })
        .collect())
}

/// The last automatic verification (a finished run of the `audit-verify` job).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastVerification {
    pub finished_at: DateTime<Utc>,
    /// The log verified: chain and checkpoints.
    pub ok: bool,
    /// What it found wrong (or why it could not run), when not `ok`.
    pub problem: Option<String>,
}

/// `None` before the first run.
pub async fn last_verification(pool: &PgPool) -> Result<Option<LastVerification>, sqlx::Error> {
    let row: Option<(Option<DateTime<Utc>>, String, Option<String>)> = sqlx::query_as(
        "SELECT finished_at, status, error FROM job_runs \
         WHERE job = $1 AND status IN ('succeeded', 'failed') ORDER BY started_at DESC LIMIT 1",
    )
    .bind(crate::jobs::AUDIT_VERIFY)
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(finished, status, error)| {
        finished.map(|finished_at| LastVerification {
            finished_at,
            ok: status == "succeeded",
            problem: error,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_made_on_first_use_gives_the_same_key_afterwards_even_when_made_by_many_at_once(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("caseledger-key-{}", Uuid::new_v4()));
        let path = dir.join("audit-signing.key");
        let keys: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| AuditKey::load_or_create(&path).map(|k| k.public_hex())))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(AuditError::KeyFormat {
                            path: "panicked".into(),
                        })
                    })
                })
                .collect::<Result<_, _>>()
        })?;
        assert!(keys.iter().all(|k| k == &keys[0]), "{keys:?}");
        assert_eq!(AuditKey::load_or_create(&path)?.public_hex(), keys[0]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn a_checkpoint_signed_by_the_key_verifies_and_a_changed_one_does_not() {
        let key = AuditKey::generate();
        let mut checkpoint = Checkpoint {
            seq: 3,
            transaction_id: 10,
            position: 3,
            chain_hash: hex::encode([7u8; 32]),
            signed_at: "2026-12-05T00:00:00.000000Z".into(),
            public_key: String::new(),
            signature: String::new(),
        };
        key.sign(&mut checkpoint);
        let kept = std::collections::BTreeMap::from([(3, [7u8; 32])]);
        assert_eq!(
            check_checkpoint(1, &checkpoint, &key.public_hex(), &kept),
            None
        );
        checkpoint.seq = 4;
        let finding = check_checkpoint(1, &checkpoint, &key.public_hex(), &kept);
        assert_eq!(finding.map(|f| f.kind), Some("checkpoint_signature"));
    }
}
