//! Commands on physicians, credentials and renewals, including the ones that change two
//! streams at once.
//!
//! Initiating, approving, expiring and cancelling a renewal change both the renewal's stream
//! and its credential's (the credential's one "open renewal" slot, and on approval its
//! expiry). Both aggregates decide, and both streams' events are appended in **one
//! transaction**, each at the version it was decided on. We chose the transaction over a
//! process manager because the credential's side is not a follow-up but the very decision that
//! keeps renewals unique: there is no moment at which a renewal exists that its credential does
//! not know about, and nothing to lose between two steps. Racing initiations conflict on the
//! credential's version; the loser decides again and is refused with the open renewal's id.

use std::sync::Arc;

use chrono::NaiveDate;
use domain::credential::{
    Credential, CredentialCommand, CredentialError, CredentialEvent, CredentialKind,
    PhysicianStanding, RenewalOutcome,
};
use domain::jurisdiction::Jurisdiction;
use domain::physician::{Npi, Physician, PhysicianCommand, PhysicianDetails, PhysicianError};
use domain::renewal::{
    CredentialFacts, Origin, Renewal, RenewalCommand, RenewalError, RenewalEvent,
};
use domain::Aggregate;
use uuid::Uuid;

use crate::clock::Clock;
use crate::handler::{service_error_from_handle_error, CommandHandler, CommandOutcome};
use eventstore::codec::{self, CodecError};
use eventstore::cursor::Cursor;
use eventstore::error::StoreError;
use eventstore::event::Metadata;
use eventstore::store::{EventStore, ExpectedVersion, StreamAppend};

/// Why a credentialing command did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CredentialingError {
    #[error(transparent)]
    Physician(#[from] PhysicianError),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Renewal(#[from] RenewalError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("the streams kept changing under the command; gave up after {attempts} attempts")]
    TooManyConflicts { attempts: u32 },
}

service_error_from_handle_error!(CredentialingError, PhysicianError, PhysicianError::NotFound);
service_error_from_handle_error!(
    CredentialingError,
    CredentialError,
    CredentialError::NotFound
);
service_error_from_handle_error!(CredentialingError, RenewalError, RenewalError::NotFound);

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

/// Attempts of a two-stream command before giving up on streams that keep moving.
const MAX_ATTEMPTS: u32 = 8;

/// Runs credentialing commands; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Credentialing {
    store: EventStore,
    clock: Arc<dyn Clock>,
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

    /// Opens renewal `renewal_id` for a credential. Refused with `RenewalAlreadyOpen` when the
    /// credential has an open renewal, also when several initiations race. Sending the same
    /// `renewal_id` for the same credential again returns the first result (`replayed`).
    /// `has_state_csr`: whether the physician holds a CSR in the credential's jurisdiction.
    pub async fn initiate_renewal(
        &self,
        credential_id: Uuid,
        renewal_id: Uuid,
        origin: Origin,
        has_state_csr: bool,
        metadata: &Metadata,
    ) -> Result<RenewalOutcomeRecord, CredentialingError> {
        for _ in 0..MAX_ATTEMPTS {
            let (renewal_version, renewal) = self.renewals.load(renewal_id).await?;
            if renewal_version > 0 {
                if renewal.credential_id == credential_id {
                    return Ok(RenewalOutcomeRecord {
                        renewal_id,
                        events: Vec::new(),
                        version: renewal_version,
                        cursor: None,
                        replayed: true,
                    });
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
            if let Some(done) = self
                .append_pair(
                    renewal_id,
                    0,
                    &renewal_events,
                    credential_id,
                    credential_version,
                    &credential_events,
                    metadata,
                )
                .await?
            {
                return Ok(done);
            }
        }
        Err(CredentialingError::TooManyConflicts {
            attempts: MAX_ATTEMPTS,
        })
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
        for _ in 0..MAX_ATTEMPTS {
            let (renewal_version, renewal) = self.renewals.load(renewal_id).await?;
            let now = self.clock.now();
            let renewal_events = renewal.decide(&command, now)?;
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
            if let Some(done) = self
                .append_pair(
                    renewal_id,
                    renewal_version,
                    &renewal_events,
                    credential_id,
                    credential_version,
                    &credential_events,
                    metadata,
                )
                .await?
            {
                return Ok(done);
            }
        }
        Err(CredentialingError::TooManyConflicts {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Appends a renewal's and its credential's events in one transaction. `None` when either
    /// stream moved since it was read (decide again).
    #[allow(clippy::too_many_arguments)]
    async fn append_pair(
        &self,
        renewal_id: Uuid,
        renewal_version: u64,
        renewal_events: &[RenewalEvent],
        credential_id: Uuid,
        credential_version: u64,
        credential_events: &[CredentialEvent],
        metadata: &Metadata,
    ) -> Result<Option<RenewalOutcomeRecord>, CredentialingError> {
        let renewal_new = renewal_events
            .iter()
            .map(codec::encode::<Renewal>)
            .collect::<Result<Vec<_>, _>>()?;
        let credential_new = credential_events
            .iter()
            .map(codec::encode::<Credential>)
            .collect::<Result<Vec<_>, _>>()?;
        let parts = [
            StreamAppend {
                stream_id: renewal_id,
                stream_type: Renewal::STREAM_TYPE,
                expected: ExpectedVersion::Exact(renewal_version),
                events: &renewal_new,
            },
            StreamAppend {
                stream_id: credential_id,
                stream_type: Credential::STREAM_TYPE,
                expected: ExpectedVersion::Exact(credential_version),
                events: &credential_new,
            },
        ];
        match self.store.append_streams(&parts, metadata, None).await {
            Ok(done) => {
                let cursor = done.appended.iter().filter_map(|a| a.cursor).max();
                let version = done
                    .appended
                    .first()
                    .map_or(renewal_version, |a| a.last_version);
                Ok(Some(RenewalOutcomeRecord {
                    renewal_id,
                    events: renewal_events.to_vec(),
                    version,
                    cursor,
                    replayed: false,
                }))
            }
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
