//! Commands on physicians, credentials and renewals, including the ones that change two
//! streams at once.
//!
//! Initiating, approving, expiring and cancelling a renewal change both the renewal's stream
//! and its credential's (the credential's one "open renewal" slot, and on approval its
//! expiry). Both aggregates decide, and both streams' events are appended in **one
//! transaction** by a [`UnitOfWork`], each at the version it was decided on. We chose the
//! transaction over a process manager because the credential's side is not a follow-up but the
//! very decision that keeps renewals unique: there is no moment at which a renewal exists that
//! its credential does not know about, and nothing to lose between two steps. Racing
//! initiations conflict on the credential's version; the loser decides again and is refused
//! with the open renewal's id.
//!
//! **Whether a physician holds a state CSR** (a DEA renewal's checklist then asks to verify
//! it) is decided on the write side, never from a read model that may not have caught up. A
//! credential's stream id derives from its kind, jurisdiction and *number*, which a DEA
//! renewal does not know, so the write side keeps a small lookup, `credential_holders`
//! (physician, kind, jurisdiction, credential id), written by [`Credentialing::register_credential`]
//! *before* it appends the registration. A row is only a candidate: the renewal loads each
//! candidate's stream and counts it only if it is registered to this physician as a CSR in
//! this jurisdiction and not revoked. So a row whose append then failed is harmless, and a
//! registration that succeeded always has its row, whenever a renewal is initiated after it.

use std::sync::Arc;

use chrono::NaiveDate;
use domain::credential::{
    Credential, CredentialCommand, CredentialError, CredentialEvent, CredentialKind,
    PhysicianStanding, RenewalOutcome,
};
use domain::jurisdiction::Jurisdiction;
use domain::physician::{Npi, Physician, PhysicianCommand, PhysicianDetails, PhysicianError};
use domain::refusal::{ErrorKind, Refusal};
use domain::renewal::{
    CredentialFacts, Origin, Renewal, RenewalCommand, RenewalError, RenewalEvent,
};
use domain::Aggregate;
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::CommandError;
use crate::handler::{CommandHandler, CommandOutcome};
use crate::unit_of_work::{Decision, Staged, UnitOfWork};
use eventstore::cursor::Cursor;
use eventstore::event::Metadata;
use eventstore::store::EventStore;

/// Which aggregate refused a credentialing command, and why.
#[derive(Debug, thiserror::Error)]
pub enum CredentialingRefusal {
    #[error(transparent)]
    Physician(#[from] PhysicianError),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Renewal(#[from] RenewalError),
}

impl Refusal for CredentialingRefusal {
    fn kind(&self) -> ErrorKind {
        match self {
            CredentialingRefusal::Physician(e) => e.kind(),
            CredentialingRefusal::Credential(e) => e.kind(),
            CredentialingRefusal::Renewal(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            CredentialingRefusal::Physician(e) => e.code(),
            CredentialingRefusal::Credential(e) => e.code(),
            CredentialingRefusal::Renewal(e) => e.code(),
        }
    }

    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        match self {
            CredentialingRefusal::Physician(e) => e.details(),
            CredentialingRefusal::Credential(e) => e.details(),
            CredentialingRefusal::Renewal(e) => e.details(),
        }
    }
}

/// Why a credentialing command did not happen.
pub type CredentialingError = CommandError<CredentialingRefusal>;

impl From<PhysicianError> for CredentialingError {
    fn from(e: PhysicianError) -> Self {
        CommandError::Rejected(e.into())
    }
}

impl From<CredentialError> for CredentialingError {
    fn from(e: CredentialError) -> Self {
        CommandError::Rejected(e.into())
    }
}

impl From<RenewalError> for CredentialingError {
    fn from(e: RenewalError) -> Self {
        CommandError::Rejected(e.into())
    }
}

impl From<CommandError<PhysicianError>> for CredentialingError {
    fn from(e: CommandError<PhysicianError>) -> Self {
        e.widen(PhysicianError::NotFound)
    }
}

impl From<CommandError<CredentialError>> for CredentialingError {
    fn from(e: CommandError<CredentialError>) -> Self {
        e.widen(CredentialError::NotFound)
    }
}

impl From<CommandError<RenewalError>> for CredentialingError {
    fn from(e: CommandError<RenewalError>) -> Self {
        e.widen(RenewalError::NotFound)
    }
}

/// What a renewal command did.
#[derive(Debug, Clone, PartialEq)]
pub struct RenewalOutcomeRecord {
    pub renewal_id: Uuid,
    pub events: Vec<RenewalEvent>,
    /// The renewal's version after the command.
    pub version: u64,
    /// Read-order cursor of the last event written (either stream), for read-your-writes.
    pub cursor: Option<Cursor>,
    /// True when nothing new happened because this exact request had already run.
    pub replayed: bool,
}

/// Runs credentialing commands; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Credentialing {
    store: EventStore,
    clock: Arc<dyn Clock>,
    work: UnitOfWork,
    pub physicians: CommandHandler<Physician>,
    pub credentials: CommandHandler<Credential>,
    pub renewals: CommandHandler<Renewal>,
}

impl Credentialing {
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            physicians: CommandHandler::new(store.clone(), clock.clone()),
            credentials: CommandHandler::new(store.clone(), clock.clone()),
            renewals: CommandHandler::new(store.clone(), clock.clone()),
            work: UnitOfWork::new(store.clone()),
            store,
            clock,
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Registers a physician; the NPI decides the id, so an NPI is registered once.
    pub async fn register_physician(
        &self,
        npi: Npi,
        details: PhysicianDetails,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<domain::physician::PhysicianEvent>, CredentialingError> {
        let id = Physician::stream_id(&npi);
        Ok(self
            .physicians
            .handle(id, &PhysicianCommand::Register { npi, details }, metadata)
            .await?)
    }

    /// Updates, deactivates or reactivates a physician.
    pub async fn physician_command(
        &self,
        physician_id: Uuid,
        command: PhysicianCommand,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<domain::physician::PhysicianEvent>, CredentialingError> {
        Ok(self
            .physicians
            .handle(physician_id, &command, metadata)
            .await?)
    }

    /// Registers a credential for an existing, active physician. Kind, jurisdiction and number
    /// decide the id, so a credential is registered once.
    pub async fn register_credential(
        &self,
        physician_id: Uuid,
        kind: CredentialKind,
        jurisdiction: Jurisdiction,
        number: String,
        expiry: NaiveDate,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<CredentialEvent>, CredentialingError> {
        let (version, physician) = self.physicians.load(physician_id).await?;
        let standing = PhysicianStanding {
            physician_id,
            exists: version > 0 && physician.exists(),
            active: physician.active,
        };
        let id = Credential::stream_id(kind, jurisdiction, &number);
        // Before the append, so that no registered credential lacks its row (see the module
        // documentation); a row whose append fails is checked against the stream and ignored.
        sqlx::query(
            "INSERT INTO credential_holders (physician_id, kind, jurisdiction, credential_id) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(physician_id)
        .bind(kind.as_str())
        .bind(jurisdiction.as_str())
        .bind(id)
        .execute(self.store.pool())
        .await?;
        let command = CredentialCommand::Register {
            physician: standing,
            kind,
            jurisdiction,
            number,
            expiry,
        };
        Ok(self.credentials.handle(id, &command, metadata).await?)
    }

    /// Corrects an expiry or revokes a credential.
    pub async fn credential_command(
        &self,
        credential_id: Uuid,
        command: CredentialCommand,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<CredentialEvent>, CredentialingError> {
        Ok(self
            .credentials
            .handle(credential_id, &command, metadata)
            .await?)
    }

    /// Whether the physician holds a registered, unrevoked CSR in `jurisdiction`, by the write
    /// side: the lookup's candidates, each checked against its own stream.
    pub async fn holds_state_csr(
        &self,
        physician_id: Uuid,
        jurisdiction: Jurisdiction,
    ) -> Result<bool, CredentialingError> {
        let candidates: Vec<Uuid> = sqlx::query_scalar(
            "SELECT credential_id FROM credential_holders \
             WHERE physician_id = $1 AND kind = $2 AND jurisdiction = $3",
        )
        .bind(physician_id)
        .bind(CredentialKind::Csr.as_str())
        .bind(jurisdiction.as_str())
        .fetch_all(self.store.pool())
        .await?;
        for id in candidates {
            let (_, csr) = self.credentials.load(id).await?;
            if csr.registered
                && csr.physician_id == physician_id
                && csr.kind == Some(CredentialKind::Csr)
                && csr.jurisdiction == Some(jurisdiction)
                && !csr.revoked
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Opens renewal `renewal_id` for a credential. Refused with `RenewalAlreadyOpen` when the
    /// credential has an open renewal, also when several initiations race. Sending the same
    /// `renewal_id` for the same credential again returns the first result (`replayed`).
    /// Whether the physician holds a state CSR is looked up on the write side
    /// ([`Credentialing::holds_state_csr`]), so a CSR registered just before counts.
    pub async fn initiate_renewal(
        &self,
        credential_id: Uuid,
        renewal_id: Uuid,
        origin: Origin,
        metadata: &Metadata,
    ) -> Result<RenewalOutcomeRecord, CredentialingError> {
        let done = self
            .work
            .run::<_, CredentialingRefusal, _, _>(metadata, || async move {
                let (renewal_version, renewal) = self.renewals.load(renewal_id).await?;
                if renewal_version > 0 {
                    if renewal.credential_id == credential_id {
                        return Ok(Decision::Answer((renewal_version, Vec::new())));
                    }
                    return Err(RenewalError::AlreadyInitiated.into());
                }
                let (credential_version, credential) = self.credentials.load(credential_id).await?;
                let now = self.clock.now();
                let credential_events =
                    credential.decide(&CredentialCommand::OpenRenewal { renewal_id }, now)?;
                let (Some(kind), Some(jurisdiction), Some(expiry)) =
                    (credential.kind, credential.jurisdiction, credential.expiry)
                else {
                    return Err(CredentialError::NotFound.into());
                };
                let has_state_csr = self
                    .holds_state_csr(credential.physician_id, jurisdiction)
                    .await?;
                let facts = CredentialFacts {
                    credential_id,
                    physician_id: credential.physician_id,
                    kind,
                    jurisdiction,
                    expiry,
                    has_state_csr,
                };
                let renewal_events = renewal.decide(
                    &RenewalCommand::Initiate {
                        credential: facts,
                        origin,
                    },
                    now,
                )?;
                let staged = Staged::new()
                    .stream::<Renewal>(renewal_id, 0, &renewal_events)?
                    .stream::<Credential>(credential_id, credential_version, &credential_events)?;
                Ok(Decision::Write(staged, (0, renewal_events)))
            })
            .await?;
        Ok(record(renewal_id, done))
    }

    /// Any command on an initiated renewal. Approval, expiry and cancellation also close the
    /// credential's open renewal (approval records the new expiry), in the same transaction.
    pub async fn renewal_command(
        &self,
        renewal_id: Uuid,
        command: RenewalCommand,
        metadata: &Metadata,
    ) -> Result<RenewalOutcomeRecord, CredentialingError> {
        let two_streams = matches!(
            command,
            RenewalCommand::Approve { .. } | RenewalCommand::Expire | RenewalCommand::Cancel { .. }
        );
        if !two_streams {
            let outcome = self.renewals.handle(renewal_id, &command, metadata).await?;
            return Ok(RenewalOutcomeRecord {
                renewal_id,
                events: outcome.events,
                version: outcome.version,
                cursor: outcome.cursor,
                replayed: outcome.replayed,
            });
        }
        let command = &command;
        let done = self
            .work
            .run::<_, CredentialingRefusal, _, _>(metadata, || async move {
                let (renewal_version, renewal) = self.renewals.load(renewal_id).await?;
                let now = self.clock.now();
                let renewal_events = renewal.decide(command, now)?;
                let credential_id = renewal.credential_id;
                let (credential_version, credential) = self.credentials.load(credential_id).await?;
                let credential_command = match renewal_events.last() {
                    Some(RenewalEvent::RenewalApproved { new_expiry, .. }) => {
                        CredentialCommand::RecordRenewal {
                            renewal_id,
                            new_expiry: *new_expiry,
                        }
                    }
                    Some(RenewalEvent::RenewalExpired { .. }) => CredentialCommand::CloseRenewal {
                        renewal_id,
                        outcome: RenewalOutcome::Expired,
                    },
                    _ => CredentialCommand::CloseRenewal {
                        renewal_id,
                        outcome: RenewalOutcome::Cancelled,
                    },
                };
                let credential_events = credential.decide(&credential_command, now)?;
                let staged = Staged::new()
                    .stream::<Renewal>(renewal_id, renewal_version, &renewal_events)?
                    .stream::<Credential>(credential_id, credential_version, &credential_events)?;
                Ok(Decision::Write(staged, (renewal_version, renewal_events)))
            })
            .await?;
        Ok(record(renewal_id, done))
    }
}

/// The renewal's side of a two-stream unit of work: `(version decided on, events)`.
fn record(
    renewal_id: Uuid,
    done: crate::unit_of_work::Committed<(u64, Vec<RenewalEvent>)>,
) -> RenewalOutcomeRecord {
    let written = !done.appended.is_empty();
    let cursor = done.cursor();
    let version = done.main_version();
    let (decided_on, events) = done.value;
    if !written {
        // Only an answer without a write: a resend of an initiation that already ran.
        return RenewalOutcomeRecord {
            renewal_id,
            events,
            version: decided_on,
            cursor: None,
            replayed: true,
        };
    }
    RenewalOutcomeRecord {
        renewal_id,
        events,
        version: version.unwrap_or(decided_on),
        cursor,
        replayed: false,
    }
}
