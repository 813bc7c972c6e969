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
    MembershipError, Practice, PracticeCommand, PracticeDetails, PracticeError, PracticeEvent,
    PracticeMembership, UnassignmentOutcome,
};
use domain::Aggregate;
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::CommandError;
use crate::handler::{CommandHandler, CommandOutcome};
use crate::unit_of_work::{Committed, Decision, Staged, UnitOfWork};
use domain::refusal::{ErrorKind, Refusal};
use eventstore::cursor::Cursor;
use eventstore::error::StoreError;
use eventstore::event::Metadata;
use eventstore::store::EventStore;

/// Which aggregate refused a practice command, and why.
#[derive(Debug, thiserror::Error)]
pub enum PracticeRefusal {
    #[error(transparent)]
    Practice(#[from] PracticeError),
    #[error(transparent)]
    Membership(#[from] MembershipError),
}

impl Refusal for PracticeRefusal {
    fn kind(&self) -> ErrorKind {
        match self {
            PracticeRefusal::Practice(e) => e.kind(),
            PracticeRefusal::Membership(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            PracticeRefusal::Practice(e) => e.code(),
            PracticeRefusal::Membership(e) => e.code(),
        }
    }

    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        match self {
            PracticeRefusal::Practice(e) => e.details(),
            PracticeRefusal::Membership(e) => e.details(),
        }
    }
}

/// Why a practice command did not happen.
pub type PracticeServiceError = CommandError<PracticeRefusal>;

impl From<PracticeError> for PracticeServiceError {
    fn from(e: PracticeError) -> Self {
        CommandError::Rejected(e.into())
    }
}

impl From<MembershipError> for PracticeServiceError {
    fn from(e: MembershipError) -> Self {
        CommandError::Rejected(e.into())
    }
}

impl From<CommandError<PracticeError>> for PracticeServiceError {
    fn from(e: CommandError<PracticeError>) -> Self {
        e.widen(PracticeError::NotFound)
    }
}

impl From<CommandError<MembershipError>> for PracticeServiceError {
    fn from(e: CommandError<MembershipError>) -> Self {
        e.widen(MembershipError::UnknownPhysician)
    }
}

/// A physician the practice service cannot read is, to it, an unknown physician.
impl From<CommandError<domain::physician::PhysicianError>> for PracticeServiceError {
    fn from(e: CommandError<domain::physician::PhysicianError>) -> Self {
        match e {
            CommandError::Store(StoreError::StreamTypeMismatch { .. })
            | CommandError::Rejected(_) => MembershipError::UnknownPhysician.into(),
            CommandError::Store(s) => s.into(),
            CommandError::Codec(c) => c.into(),
            CommandError::TooManyConflicts { attempts } => {
                CommandError::TooManyConflicts { attempts }
            }
        }
    }
}

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
    work: UnitOfWork,
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
            work: UnitOfWork::new(store),
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
            Err(CommandError::Rejected(PracticeError::NameTaken { .. }))
            | Err(CommandError::Store(StoreError::StreamTypeMismatch { .. })) => {
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
            Err(CommandError::Store(StoreError::StreamTypeMismatch { .. })) => Ok((false, false)),
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
        let done = self
            .work
            .run::<_, PracticeRefusal, _, _>(metadata, || async move {
                let (exists, active) = self.standing(physician_id).await?;
                let membership_id = PracticeMembership::stream_id(physician_id);
                let (mv, membership) = self.memberships.load(membership_id).await?;
                let outcome = assignment_outcome(&membership, practice_id, exists, active);
                if outcome != AssignmentOutcome::Assigned {
                    return Ok(Decision::Answer(outcome));
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
                let staged = Staged::new()
                    .stream::<PracticeMembership>(membership_id, mv, &membership_events)?
                    .stream::<Practice>(practice_id, pv, &practice_events)?;
                Ok(Decision::Write(staged, outcome))
            })
            .await?;
        Ok(Assigned {
            physician_id,
            cursor: done.cursor(),
            outcome: done.value,
        })
    }

    /// Unassigns one physician; the outcome says what happened (only `Unassigned` writes).
    pub async fn unassign(
        &self,
        practice_id: Uuid,
        physician_id: Uuid,
        metadata: &Metadata,
    ) -> Result<Assigned<UnassignmentOutcome>, PracticeServiceError> {
        let done = self
            .work
            .run::<_, PracticeRefusal, _, _>(metadata, || async move {
                let (exists, _) = self.standing(physician_id).await?;
                let membership_id = PracticeMembership::stream_id(physician_id);
                let (mv, membership) = self.memberships.load(membership_id).await?;
                let outcome = unassignment_outcome(&membership, practice_id, exists);
                if outcome != UnassignmentOutcome::Unassigned {
                    return Ok(Decision::Answer(outcome));
                }
                let (pv, practice) = self.practices.load(practice_id).await?;
                let now = self.clock.now();
                let practice_events =
                    practice.decide(&PracticeCommand::UnassignPhysician { physician_id }, now)?;
                let membership_events =
                    membership.decide(&MembershipCommand::Leave { practice_id }, now)?;
                let staged = Staged::new()
                    .stream::<PracticeMembership>(membership_id, mv, &membership_events)?
                    .stream::<Practice>(practice_id, pv, &practice_events)?;
                Ok(Decision::Write(staged, outcome))
            })
            .await?;
        Ok(Assigned {
            physician_id,
            cursor: done.cursor(),
            outcome: done.value,
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
        let done = self
            .work
            .run::<_, PracticeRefusal, _, _>(metadata, || async move {
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
                let new_events =
                    new.decide(&PracticeCommand::AssignPhysician { physician_id }, now)?;
                let staged = Staged::new()
                    .stream::<PracticeMembership>(membership_id, mv, &membership_events)?
                    .stream::<Practice>(from, fv, &old_events)?
                    .stream::<Practice>(to, tv, &new_events)?;
                Ok(Decision::Write(staged, ()))
            })
            .await?;
        Ok(written(&done))
    }
}

/// What a unit of work on a membership (staged first) wrote.
fn written<T>(done: &Committed<T>) -> Written {
    Written {
        membership_version: done.main_version().unwrap_or(0),
        cursor: done.cursor(),
    }
}
