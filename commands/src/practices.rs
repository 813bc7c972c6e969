//! Commands on practices, and assigning physicians to them.
//!
//! "A physician is in at most one practice at a time" is decided on the physician's
//! membership stream ([`PracticeMembership`]), and the practice's own list of physicians on the
//! practice's stream. An assignment appends to both in one transaction, each at the version it
//! was decided on (a transfer to three: the membership, the old practice and the new one), so
//! two requests racing to place one physician cannot both succeed: the loser decides again and
//! reports where the physician already is.

use std::sync::Arc;

use domain::physician::Physician;
use domain::practice::{
    assignment_outcome, unassignment_outcome, AssignmentOutcome, MembershipCommand,
    MembershipError, MembershipEvent, Practice, PracticeCommand, PracticeDetails, PracticeError,
    PracticeEvent, PracticeMembership, UnassignmentOutcome,
};
use domain::Aggregate;
use uuid::Uuid;

use crate::clock::Clock;
use crate::handler::{
    service_error_from_handle_error, CommandHandler, CommandOutcome, HandleError,
};
use eventstore::codec::{self, CodecError};
use eventstore::cursor::Cursor;
use eventstore::error::StoreError;
use eventstore::event::{Metadata, NewEvent};
use eventstore::store::{EventStore, ExpectedVersion, StreamAppend};

/// Why a practice command did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PracticeServiceError {
    #[error(transparent)]
    Practice(#[from] PracticeError),
    #[error(transparent)]
    Membership(#[from] MembershipError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("the practice kept changing under the command; gave up after {attempts} attempts")]
    TooManyConflicts { attempts: u32 },
}

service_error_from_handle_error!(PracticeServiceError, PracticeError, PracticeError::NotFound);
service_error_from_handle_error!(
    PracticeServiceError,
    MembershipError,
    MembershipError::UnknownPhysician
);

impl From<HandleError<domain::physician::PhysicianError>> for PracticeServiceError {
    fn from(e: HandleError<domain::physician::PhysicianError>) -> Self {
        match e {
            HandleError::Store(StoreError::StreamTypeMismatch { .. })
            | HandleError::Rejected(_) => MembershipError::UnknownPhysician.into(),
            HandleError::Store(s) => s.into(),
            HandleError::Codec(c) => c.into(),
            HandleError::TooManyConflicts { attempts, .. } => {
                PracticeServiceError::TooManyConflicts { attempts }
            }
        }
    }
}

/// Attempts of a multi-stream command before giving up on streams that keep moving. Generous:
/// bulk requests for one practice all write its stream.
const MAX_ATTEMPTS: u32 = 16;

/// One physician's result in an assignment, with the cursor when something was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Assigned<O> {
    pub physician_id: Uuid,
    pub outcome: O,
    pub cursor: Option<Cursor>,
}

/// What a multi-stream practice command wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The physician's membership stream version after the command.
    pub membership_version: u64,
    /// Read-order cursor of the last event written, for read-your-writes.
    pub cursor: Option<Cursor>,
}

/// Runs practice commands.
#[derive(Debug)]
pub struct Practices {
    store: EventStore,
    clock: Arc<dyn Clock>,
    pub practices: CommandHandler<Practice>,
    pub memberships: CommandHandler<PracticeMembership>,
    physicians: CommandHandler<Physician>,
}

impl Practices {
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            practices: CommandHandler::new(store.clone(), clock.clone()),
            memberships: CommandHandler::new(store.clone(), clock.clone()),
            physicians: CommandHandler::new(store.clone(), clock.clone()),
            store,
            clock,
        }
    }

    /// Creates a practice; its name decides its id, so a name is taken once.
    pub async fn create(
        &self,
        details: PracticeDetails,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<PracticeEvent>, PracticeServiceError> {
        let id = Practice::stream_id(&details.name);
        match self
            .practices
            .handle(id, &PracticeCommand::Create { details }, metadata)
            .await
        {
            Err(HandleError::Rejected(PracticeError::NameTaken { .. }))
            | Err(HandleError::Store(StoreError::StreamTypeMismatch { .. })) => {
                let (_, existing) = self.practices.load(id).await?;
                Err(PracticeError::NameTaken {
                    name: existing.details.map(|d| d.name).unwrap_or_default(),
                }
                .into())
            }
            other => Ok(other?),
        }
    }

    /// Update, deactivate, reactivate, add or remove a location.
    pub async fn command(
        &self,
        practice_id: Uuid,
        command: PracticeCommand,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<PracticeEvent>, PracticeServiceError> {
        Ok(self
            .practices
            .handle(practice_id, &command, metadata)
            .await?)
    }

    async fn standing(&self, physician_id: Uuid) -> Result<(bool, bool), PracticeServiceError> {
        match self.physicians.load(physician_id).await {
            Ok((version, p)) => Ok((version > 0 && p.exists(), p.active)),
            Err(HandleError::Store(StoreError::StreamTypeMismatch { .. })) => Ok((false, false)),
            Err(e) => Err(e.into()),
        }
    }

    /// Assigns one physician; the outcome says what happened (only `Assigned` writes).
    pub async fn assign(
        &self,
        practice_id: Uuid,
        physician_id: Uuid,
        metadata: &Metadata,
    ) -> Result<Assigned<AssignmentOutcome>, PracticeServiceError> {
        for _ in 0..MAX_ATTEMPTS {
            let (exists, active) = self.standing(physician_id).await?;
            let membership_id = PracticeMembership::stream_id(physician_id);
            let (mv, membership) = self.memberships.load(membership_id).await?;
            let outcome = assignment_outcome(&membership, practice_id, exists, active);
            if outcome != AssignmentOutcome::Assigned {
                return Ok(Assigned {
                    physician_id,
                    outcome,
                    cursor: None,
                });
            }
            let (pv, practice) = self.practices.load(practice_id).await?;
            let now = self.clock.now();
            let practice_events =
                practice.decide(&PracticeCommand::AssignPhysician { physician_id }, now)?;
            let membership_events = membership.decide(
                &MembershipCommand::Join {
                    practice_id,
                    physician_exists: exists,
                    physician_active: active,
                },
                now,
            )?;
            let parts = [
                encode_membership(membership_id, mv, &membership_events)?,
                encode_practice(practice_id, pv, &practice_events)?,
            ];
            if let Some(written) = self.append(&parts, metadata).await? {
                return Ok(Assigned {
                    physician_id,
                    outcome,
                    cursor: written.cursor,
                });
            }
        }
        Err(PracticeServiceError::TooManyConflicts {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Unassigns one physician; the outcome says what happened (only `Unassigned` writes).
    pub async fn unassign(
        &self,
        practice_id: Uuid,
        physician_id: Uuid,
        metadata: &Metadata,
    ) -> Result<Assigned<UnassignmentOutcome>, PracticeServiceError> {
        for _ in 0..MAX_ATTEMPTS {
            let (exists, _) = self.standing(physician_id).await?;
            let membership_id = PracticeMembership::stream_id(physician_id);
            let (mv, membership) = self.memberships.load(membership_id).await?;
            let outcome = unassignment_outcome(&membership, practice_id, exists);
            if outcome != UnassignmentOutcome::Unassigned {
                return Ok(Assigned {
                    physician_id,
                    outcome,
                    cursor: None,
                });
            }
            let (pv, practice) = self.practices.load(practice_id).await?;
            let now = self.clock.now();
            let practice_events =
                practice.decide(&PracticeCommand::UnassignPhysician { physician_id }, now)?;
            let membership_events =
                membership.decide(&MembershipCommand::Leave { practice_id }, now)?;
            let parts = [
                encode_membership(membership_id, mv, &membership_events)?,
                encode_practice(practice_id, pv, &practice_events)?,
            ];
            if let Some(written) = self.append(&parts, metadata).await? {
                return Ok(Assigned {
                    physician_id,
                    outcome,
                    cursor: written.cursor,
                });
            }
        }
        Err(PracticeServiceError::TooManyConflicts {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Moves a physician from one practice to another in one command: both practices and the
    /// membership change in one transaction, or nothing does.
    pub async fn transfer(
        &self,
        physician_id: Uuid,
        from: Uuid,
        to: Uuid,
        metadata: &Metadata,
    ) -> Result<Written, PracticeServiceError> {
        for _ in 0..MAX_ATTEMPTS {
            let (exists, active) = self.standing(physician_id).await?;
            if !exists {
                return Err(MembershipError::UnknownPhysician.into());
            }
            let membership_id = PracticeMembership::stream_id(physician_id);
            let (mv, membership) = self.memberships.load(membership_id).await?;
            let now = self.clock.now();
            let membership_events = membership.decide(
                &MembershipCommand::Transfer {
                    from,
                    to,
                    physician_active: active,
                },
                now,
            )?;
            let (fv, old) = self.practices.load(from).await?;
            let (tv, new) = self.practices.load(to).await?;
            let old_events =
                old.decide(&PracticeCommand::UnassignPhysician { physician_id }, now)?;
            let new_events = new.decide(&PracticeCommand::AssignPhysician { physician_id }, now)?;
            let parts = [
                encode_membership(membership_id, mv, &membership_events)?,
                encode_practice(from, fv, &old_events)?,
                encode_practice(to, tv, &new_events)?,
            ];
            if let Some(written) = self.append(&parts, metadata).await? {
                return Ok(written);
            }
        }
        Err(PracticeServiceError::TooManyConflicts {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// What was written, or `None` when a stream moved (decide again).
    async fn append(
        &self,
        parts: &[(Uuid, &'static str, u64, Vec<NewEvent>)],
        metadata: &Metadata,
    ) -> Result<Option<Written>, PracticeServiceError> {
        let appends: Vec<StreamAppend<'_>> = parts
            .iter()
            .map(|(id, stream_type, version, events)| StreamAppend {
                stream_id: *id,
                stream_type,
                expected: ExpectedVersion::Exact(*version),
                events,
            })
            .collect();
        match self.store.append_streams(&appends, metadata, None).await {
            Ok(done) => Ok(Some(Written {
                membership_version: done.appended.first().map_or(0, |a| a.last_version),
                cursor: done.appended.iter().filter_map(|a| a.cursor).max(),
            })),
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

fn encode_membership(
    id: Uuid,
    version: u64,
    events: &[MembershipEvent],
) -> Result<(Uuid, &'static str, u64, Vec<NewEvent>), CodecError> {
    Ok((
        id,
        PracticeMembership::STREAM_TYPE,
        version,
        events
            .iter()
            .map(codec::encode::<PracticeMembership>)
            .collect::<Result<_, _>>()?,
    ))
}

fn encode_practice(
    id: Uuid,
    version: u64,
    events: &[PracticeEvent],
) -> Result<(Uuid, &'static str, u64, Vec<NewEvent>), CodecError> {
    Ok((
        id,
        Practice::STREAM_TYPE,
        version,
        events
            .iter()
            .map(codec::encode::<Practice>)
            .collect::<Result<_, _>>()?,
    ))
}
