//! Staffing and allocation: staff members' profiles and availability, and allocating work to
//! them by the six weighted factors ([`domain::allocation`]).
//!
//! Ranking reads the candidates from the `staffing` read model (through a
//! [`CandidateCache`]), which only *suggests*: a chosen staff member is checked again on the
//! write side, and the allocation is decided and appended on the work's allocation stream.

use std::sync::Arc;

use domain::allocation::{self, AllocationError, RankedCandidate, Weights, WorkItem};
use domain::refusal::{ErrorKind, Refusal};
use domain::staff::{StaffCommand, StaffError, StaffEvent, StaffMember};
use domain::work_allocation::{
    WorkAllocation, WorkAllocationCommand, WorkAllocationError, WorkAllocationEvent, WorkRef,
};
use eventstore::{EventStore, Metadata};
use projections::staffing::CandidateCache;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{Clock, CommandError, CommandHandler, CommandOutcome};

/// Why a staffing or allocation command was refused.
#[derive(Debug, thiserror::Error)]
pub enum StaffingRefusal {
    #[error(transparent)]
    Staff(#[from] StaffError),
    #[error(transparent)]
    Allocation(#[from] AllocationError),
    #[error(transparent)]
    WorkAllocation(#[from] WorkAllocationError),
    /// A request field names a staff member who is not registered.
    #[error("{field}: no staff member {staff_id}")]
    UnknownStaff { field: &'static str, staff_id: Uuid },
}

impl Refusal for StaffingRefusal {
    fn kind(&self) -> ErrorKind {
        match self {
            StaffingRefusal::Staff(e) => e.kind(),
            StaffingRefusal::Allocation(e) => e.kind(),
            StaffingRefusal::WorkAllocation(e) => e.kind(),
            StaffingRefusal::UnknownStaff { .. } => ErrorKind::Invalid,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            StaffingRefusal::Staff(e) => e.code(),
            StaffingRefusal::Allocation(e) => e.code(),
            StaffingRefusal::WorkAllocation(e) => e.code(),
            StaffingRefusal::UnknownStaff { .. } => "unknown_staff",
        }
    }

    fn details(&self) -> Map<String, Value> {
        match self {
            StaffingRefusal::Staff(e) => e.details(),
            StaffingRefusal::Allocation(e) => e.details(),
            StaffingRefusal::WorkAllocation(e) => e.details(),
            StaffingRefusal::UnknownStaff { field, .. } => {
                domain::refusal::fields(serde_json::json!({ "field": field }))
            }
        }
    }
}

/// What staffing commands return.
pub type StaffingError = CommandError<StaffingRefusal>;

/// A ranking: the best candidates and how many staff members were ranked.
pub type Ranked = (Vec<RankedCandidate>, usize);

/// Staff members and the allocation of work to them.
pub struct Staffing {
    store: EventStore,
    staff: CommandHandler<StaffMember>,
    allocations: CommandHandler<WorkAllocation>,
    candidates: CandidateCache,
    weights: Weights,
}

impl std::fmt::Debug for Staffing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staffing")
            .field("weights", &self.weights)
            .finish_non_exhaustive()
    }
}

impl Staffing {
    /// The service over `store`, deciding at `clock`'s time, ranking by `weights` unless a
    /// request gives its own.
    pub fn new(store: EventStore, clock: Arc<dyn Clock>, weights: Weights) -> Self {
        Staffing {
            staff: CommandHandler::new(store.clone(), clock.clone()),
            allocations: CommandHandler::new(store.clone(), clock),
            candidates: CandidateCache::default(),
            store,
            weights,
        }
    }

    /// The configured weights.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The candidate cache (its hit and miss counts).
    pub fn candidate_cache(&self) -> &CandidateCache {
        &self.candidates
    }

    /// A command on one staff member's stream (register, update, set availability).
    pub async fn command(
        &self,
        staff_id: Uuid,
        command: StaffCommand,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<StaffEvent>, StaffingError> {
        self.staff
            .handle(staff_id, &command, metadata)
            .await
            .map_err(|e| e.widen(StaffError::NotFound))
    }

    /// The best `limit` candidates for `work` by `weights`; appends nothing.
    pub async fn rank(
        &self,
        work: &WorkItem,
        weights: &Weights,
        limit: usize,
    ) -> Result<Ranked, StaffingError> {
        let candidates = self.candidates.candidates(self.store.pool()).await?;
        let ranking = allocation::rank(work, &candidates, weights, limit);
        Ok((ranking, candidates.len()))
    }

    /// Allocates the work to `chosen`, or to the best-ranked candidate, and records the
    /// decision. Returns the allocation as this command left it, its version and the outcome.
    pub async fn allocate(
        &self,
        work_ref: WorkRef,
        work: &WorkItem,
        weights: &Weights,
        limit: usize,
        chosen: Option<Uuid>,
        metadata: &Metadata,
    ) -> Result<(u64, WorkAllocation, CommandOutcome<WorkAllocationEvent>), StaffingError> {
        if let Some(staff_id) = chosen {
            let unknown = StaffingRefusal::UnknownStaff {
                field: "staff_id",
                staff_id,
            };
            let (version, staff) = match self.staff.load(staff_id).await {
                Err(CommandError::Store(eventstore::StoreError::StreamTypeMismatch { .. })) => {
                    return Err(CommandError::Rejected(unknown))
                }
                other => other.map_err(|e| e.widen(StaffError::NotFound))?,
            };
            if version == 0 || !staff.exists() {
                return Err(CommandError::Rejected(unknown));
            }
        }
        let stream = WorkAllocation::stream_id(work_ref);
        // Refuse early, before ranking, when the work is taken; the command decides again.
        let (_, current) = self.load_stream(stream).await?;
        if let Some(staff_id) = current.current_staff() {
            return Err(CommandError::Rejected(
                WorkAllocationError::AlreadyAllocated { staff_id }.into(),
            ));
        }
        let candidates = self.candidates.candidates(self.store.pool()).await?;
        let decision = allocation::allocate(work, &candidates, weights, limit, chosen)
            .map_err(|e| CommandError::Rejected(e.into()))?;
        let outcome = self
            .allocations
            .handle(
                stream,
                &WorkAllocationCommand::Allocate {
                    work: work_ref,
                    decision,
                },
                metadata,
            )
            .await
            .map_err(|e| e.widen(WorkAllocationError::NotFound))?;
        // The allocation as this command left it (not as a later command may have).
        let (version, allocation) = self
            .allocations
            .load_at_version(stream, outcome.version)
            .await
            .map_err(|e| e.widen(WorkAllocationError::NotFound))?;
        Ok((version, allocation, outcome))
    }

    /// Releases the work's allocation.
    pub async fn release(
        &self,
        work_ref: WorkRef,
        reason: String,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<WorkAllocationEvent>, StaffingError> {
        self.allocations
            .handle(
                WorkAllocation::stream_id(work_ref),
                &WorkAllocationCommand::Release { reason },
                metadata,
            )
            .await
            .map_err(|e| e.widen(WorkAllocationError::NotFound))
    }

    /// The work's allocation with a recorded decision, or `not_found`.
    pub async fn load_allocation(
        &self,
        work_ref: WorkRef,
    ) -> Result<(u64, WorkAllocation), StaffingError> {
        let (version, allocation) = self
            .load_stream(WorkAllocation::stream_id(work_ref))
            .await?;
        if version == 0 || allocation.decision.is_none() {
            return Err(CommandError::Rejected(WorkAllocationError::NotFound.into()));
        }
        Ok((version, allocation))
    }

    async fn load_stream(&self, stream: Uuid) -> Result<(u64, WorkAllocation), StaffingError> {
        self.allocations
            .load(stream)
            .await
            .map_err(|e| e.widen(WorkAllocationError::NotFound))
    }
}
