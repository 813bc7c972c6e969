//! A task in a work queue: `open → claimed → completed`, `claimed → open` (unclaim), `open |
//! claimed → cancelled`; overdue open or claimed tasks climb escalation levels 1, 2, … on top
//! of their status (an escalated task stays in its queue, still to be worked).
//!
//! Every fact from outside the task's own stream arrives in the command: the queue's
//! configuration, the claimant's standing in the queue (their grants in force at `now`), how
//! many tasks they hold there, whether a case is open. The command layer reads those under the
//! locks that keep them true until the events are written (see `commands::workqueue`).
//!
//! A refusal names what was wrong: who holds the task, what the capacity is, which state the
//! task is in and what it would have to be.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::distribution::AssignmentReason;
use super::queue::{EscalationPolicy, QueueConfig, Standing};
use super::values::{text, value_error, GroupLabel, Priority, ValueError, MAX_REASON_CHARS};
use crate::Aggregate;

/// The longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// The longest outcome label, in characters.
pub const MAX_OUTCOME_CHARS: usize = 80;
/// The longest completion note, in characters.
pub const MAX_NOTE_CHARS: usize = 2_000;
/// The largest payload, as serialized JSON.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    #[default]
    Open,
    Claimed,
    Completed,
    Cancelled,
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::Claimed => "claimed",
            TaskStatus::Completed => "completed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            TaskStatus::Open,
            TaskStatus::Claimed,
            TaskStatus::Completed,
            TaskStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }

    pub fn is_finished(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Cancelled)
    }
}

/// A user's load in the task's queue, read when deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Load {
    /// Tasks of the queue the user holds claimed now.
    pub claimed: u32,
    /// The queue's per-user capacity.
    pub capacity: u32,
}

/// The queue a task is created in, as looked up: `None` when no such queue exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueLookup {
    pub queue_id: Uuid,
    pub config: Option<QueueConfig>,
    /// Open and claimed tasks in the queue now (against `capacity.total`).
    pub unfinished: u32,
}

/// A case named by a command, as looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseLookup {
    pub case_id: Uuid,
    pub exists: bool,
    pub open: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskCommand {
    Create {
        queue: QueueLookup,
        title: String,
        priority: Priority,
        groups: Vec<GroupLabel>,
        case: Option<CaseLookup>,
        payload: Value,
    },
    /// `next`: chosen by claim-next rather than named by the user.
    Claim {
        user: String,
        standing: Standing,
        load: Load,
        next: bool,
    },
    /// Push distribution's choice.
    Assign {
        to: String,
        reason: AssignmentReason,
    },
    Unclaim {
        user: String,
    },
    /// Delegation or reassignment by an admin or a lead of the queue (`authorized`).
    Reassign {
        by: String,
        authorized: bool,
        to: String,
        to_standing: Standing,
        to_load: Load,
        reason: String,
    },
    Complete {
        user: String,
        outcome: String,
        note: Option<String>,
    },
    /// By an admin, a lead of the queue or the claimant (`authorized`, decided outside from
    /// the caller's role and grants).
    Cancel {
        by: String,
        authorized: bool,
        reason: String,
    },
    /// Raise the escalation level to what the policy says for `now`.
    Escalate {
        policy: EscalationPolicy,
    },
    LinkCase {
        case: CaseLookup,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum TaskEvent {
    TaskCreated {
        queue_id: Uuid,
        title: String,
        priority: Priority,
        groups: Vec<GroupLabel>,
        case_id: Option<Uuid>,
        payload: Value,
        due_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    TaskClaimed {
        by: String,
        /// Chosen by claim-next.
        next: bool,
        at: DateTime<Utc>,
    },
    TaskAssigned {
        to: String,
        reason: AssignmentReason,
        /// [`AssignmentReason::explain`], kept for readers of the raw log.
        explanation: String,
        at: DateTime<Utc>,
    },
    TaskUnclaimed {
        by: String,
        at: DateTime<Utc>,
    },
    TaskReassigned {
        from: Option<String>,
        to: String,
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
    TaskCompleted {
        by: String,
        outcome: String,
        note: Option<String>,
        /// Completed by its due time.
        within_sla: bool,
        at: DateTime<Utc>,
    },
    TaskCancelled {
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
    TaskEscalated {
        level: u32,
        priority_from: Priority,
        priority_to: Priority,
        due_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    TaskLinkedToCase {
        case_id: Uuid,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("no such task")]
    NotFound,
    #[error("task already exists")]
    AlreadyExists,
    #[error("queue {queue_id} does not exist")]
    UnknownQueue { queue_id: Uuid },
    #[error("candidate group {group:?} is not one of the queue's groups")]
    UnknownGroup { group: String },
    #[error("the queue is full: {unfinished} unfinished tasks of {total} allowed")]
    QueueFull { unfinished: u32, total: u32 },
    #[error("case {case_id} does not exist")]
    UnknownCase { case_id: Uuid },
    #[error("case {case_id} is closed")]
    CaseClosed { case_id: Uuid },
    #[error("the task already belongs to case {case_id}")]
    AlreadyLinked { case_id: Uuid },
    #[error("the task is already claimed by {by}")]
    AlreadyClaimed { by: String },
    #[error("the task is {status}; this needs it to be {}", allowed.join(" or "))]
    WrongState {
        status: TaskStatus,
        allowed: Vec<&'static str>,
    },
    #[error("{user} holds no grant in force for this task's queue")]
    NoValidGrant { user: String },
    #[error("{user} has none of the task's candidate groups ({})", groups.join(", "))]
    NotInCandidateGroups { user: String, groups: Vec<String> },
    #[error("{user} is at capacity in this queue: {claimed} of {capacity} tasks claimed")]
    OverCapacity {
        user: String,
        claimed: u32,
        capacity: u32,
    },
    #[error("only the claimant may do this; the task is claimed by {claimant}")]
    NotClaimant { claimant: String },
    #[error("only an admin or a lead of the task's queue may reassign it")]
    NotLeadOrAdmin,
    #[error("only an admin, a lead of the task's queue or its claimant may cancel it")]
    NotAllowedToCancel,
    #[error("{to} already holds the task")]
    AlreadyHolds { to: String },
    #[error(transparent)]
    Invalid(#[from] ValueError),
}

impl crate::refusal::Refusal for TaskError {
    fn kind(&self) -> crate::refusal::ErrorKind {
        use crate::refusal::ErrorKind as K;
        use TaskError as T;
        match self {
            T::NotFound => K::NotFound,
            T::UnknownQueue { .. }
            | T::UnknownGroup { .. }
            | T::UnknownCase { .. }
            | T::Invalid(_) => K::Invalid,
            T::NoValidGrant { .. }
            | T::NotInCandidateGroups { .. }
            | T::NotClaimant { .. }
            | T::NotLeadOrAdmin
            | T::NotAllowedToCancel => K::Forbidden,
            T::AlreadyExists
            | T::QueueFull { .. }
            | T::CaseClosed { .. }
            | T::AlreadyLinked { .. }
            | T::AlreadyClaimed { .. }
            | T::WrongState { .. }
            | T::OverCapacity { .. }
            | T::AlreadyHolds { .. } => K::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        use TaskError as T;
        match self {
            T::NotFound => "task_not_found",
            T::AlreadyExists => "task_exists",
            T::UnknownQueue { .. } => "unknown_queue",
            T::UnknownGroup { .. } => "unknown_group",
            T::QueueFull { .. } => "queue_full",
            T::UnknownCase { .. } => "unknown_case",
            T::CaseClosed { .. } => "case_closed",
            T::AlreadyLinked { .. } => "task_already_linked",
            T::AlreadyClaimed { .. } => "task_already_claimed",
            T::WrongState { .. } => "task_wrong_state",
            T::NoValidGrant { .. } => "no_valid_grant",
            T::NotInCandidateGroups { .. } => "not_in_candidate_groups",
            T::OverCapacity { .. } => "over_capacity",
            T::NotClaimant { .. } => "not_claimant",
            T::NotLeadOrAdmin => "not_lead_or_admin",
            T::NotAllowedToCancel => "not_allowed_to_cancel",
            T::AlreadyHolds { .. } => "already_holds_task",
            T::Invalid(_) => "invalid_field",
        }
    }

    /// Who holds the task, the state it is in and the states the command needed, the
    /// claimer's load against capacity, the field at fault.
    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        let value = match self {
            TaskError::AlreadyClaimed { by } => json!({ "claimed_by": by }),
            TaskError::NotClaimant { claimant } => json!({ "claimed_by": claimant }),
            TaskError::WrongState { status, allowed } => {
                json!({ "current_status": status, "allowed": allowed })
            }
            TaskError::OverCapacity {
                claimed, capacity, ..
            } => json!({ "claimed": claimed, "capacity": capacity }),
            TaskError::Invalid(v) => return v.details(),
            _ => return serde_json::Map::new(),
        };
        crate::refusal::fields(value)
    }
}

/// A task as its events left it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Task {
    /// `None` until created.
    pub queue_id: Option<Uuid>,
    pub title: String,
    pub status: TaskStatus,
    pub priority: Option<Priority>,
    pub groups: Vec<GroupLabel>,
    pub case_id: Option<Uuid>,
    pub claimant: Option<String>,
    pub escalation_level: u32,
    pub created_at: Option<DateTime<Utc>>,
    pub due_at: Option<DateTime<Utc>>,
}

impl Task {
    pub fn exists(&self) -> bool {
        self.queue_id.is_some()
    }

    fn wrong_state(&self, allowed: &[&'static str]) -> TaskError {
        TaskError::WrongState {
            status: self.status,
            allowed: allowed.to_vec(),
        }
    }

    /// Whether `user`, with `standing` and `load`, may hold this task (claim or be given it).
    fn may_hold(&self, user: &str, standing: &Standing, load: Load) -> Result<(), TaskError> {
        if !standing.member {
            return Err(TaskError::NoValidGrant {
                user: user.to_owned(),
            });
        }
        if !self.groups.is_empty() && !self.groups.iter().any(|g| standing.skills.contains(g)) {
            return Err(TaskError::NotInCandidateGroups {
                user: user.to_owned(),
                groups: self.groups.iter().map(|g| g.to_string()).collect(),
            });
        }
        if load.claimed >= load.capacity {
            return Err(TaskError::OverCapacity {
                user: user.to_owned(),
                claimed: load.claimed,
                capacity: load.capacity,
            });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        queue: &QueueLookup,
        title: &str,
        priority: Priority,
        groups: &[GroupLabel],
        case: Option<CaseLookup>,
        payload: &Value,
        now: DateTime<Utc>,
    ) -> Result<Vec<TaskEvent>, TaskError> {
        if self.exists() {
            return Err(TaskError::AlreadyExists);
        }
        let config = queue.config.as_ref().ok_or(TaskError::UnknownQueue {
            queue_id: queue.queue_id,
        })?;
        let title = text("title", title, MAX_TITLE_CHARS)?;
        if let Some(group) = config.unknown_group(groups) {
            return Err(TaskError::UnknownGroup {
                group: group.to_string(),
            });
        }
        if let Some(total) = config.capacity.total.filter(|t| queue.unfinished >= *t) {
            return Err(TaskError::QueueFull {
                unfinished: queue.unfinished,
                total,
            });
        }
        if let Some(case) = case {
            check_case(case)?;
        }
        if !payload.is_object() {
            return Err(value_error("payload", "must be a JSON object").into());
        }
        if payload.to_string().len() > MAX_PAYLOAD_BYTES {
            return Err(value_error("payload", "at most 16 KiB of JSON").into());
        }
        let mut groups = groups.to_vec();
        groups.sort();
        groups.dedup();
        Ok(vec![TaskEvent::TaskCreated {
            queue_id: queue.queue_id,
            title,
            priority,
            groups,
            case_id: case.map(|c| c.case_id),
            payload: payload.clone(),
            due_at: now + config.sla.due_in(priority),
            at: now,
        }])
    }
}

fn check_case(case: CaseLookup) -> Result<(), TaskError> {
    if !case.exists {
        return Err(TaskError::UnknownCase {
            case_id: case.case_id,
        });
    }
    if !case.open {
        return Err(TaskError::CaseClosed {
            case_id: case.case_id,
        });
    }
    Ok(())
}

impl Aggregate for Task {
    const STREAM_TYPE: &'static str = "task";
    type Command = TaskCommand;
    type Event = TaskEvent;
    type Error = TaskError;

    fn decide(
        &self,
        command: &TaskCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<TaskEvent>, TaskError> {
        if let TaskCommand::Create {
            queue,
            title,
            priority,
            groups,
            case,
            payload,
        } = command
        {
            return self.create(queue, title, *priority, groups, *case, payload, now);
        }
        if !self.exists() {
            return Err(TaskError::NotFound);
        }
        match command {
            TaskCommand::Create { .. } => Err(TaskError::AlreadyExists),
            TaskCommand::Claim {
                user,
                standing,
                load,
                next,
            } => {
                match (self.status, &self.claimant) {
                    (TaskStatus::Claimed, Some(by)) if by == user => return Ok(Vec::new()),
                    (TaskStatus::Claimed, Some(by)) => {
                        return Err(TaskError::AlreadyClaimed { by: by.clone() })
                    }
                    (TaskStatus::Open, _) => {}
                    _ => return Err(self.wrong_state(&["open"])),
                }
                self.may_hold(user, standing, *load)?;
                Ok(vec![TaskEvent::TaskClaimed {
                    by: user.clone(),
                    next: *next,
                    at: now,
                }])
            }
            TaskCommand::Assign { to, reason } => {
                if self.status != TaskStatus::Open {
                    return Err(self.wrong_state(&["open"]));
                }
                Ok(vec![TaskEvent::TaskAssigned {
                    to: to.clone(),
                    explanation: reason.explain(),
                    reason: reason.clone(),
                    at: now,
                }])
            }
            TaskCommand::Unclaim { user } => {
                let claimant = self.claimed_by()?;
                if claimant != user {
                    return Err(TaskError::NotClaimant {
                        claimant: claimant.to_owned(),
                    });
                }
                Ok(vec![TaskEvent::TaskUnclaimed {
                    by: user.clone(),
                    at: now,
                }])
            }
            TaskCommand::Reassign {
                by,
                authorized,
                to,
                to_standing,
                to_load,
                reason,
            } => {
                if self.status.is_finished() {
                    return Err(self.wrong_state(&["open", "claimed"]));
                }
                if !authorized {
                    return Err(TaskError::NotLeadOrAdmin);
                }
                let reason = text("reason", reason, MAX_REASON_CHARS)?;
                if self.claimant.as_deref() == Some(to.as_str()) {
                    return Err(TaskError::AlreadyHolds { to: to.clone() });
                }
                self.may_hold(to, to_standing, *to_load)?;
                Ok(vec![TaskEvent::TaskReassigned {
                    from: self.claimant.clone(),
                    to: to.clone(),
                    by: by.clone(),
                    reason,
                    at: now,
                }])
            }
            TaskCommand::Complete {
                user,
                outcome,
                note,
            } => {
                let claimant = self.claimed_by()?;
                if claimant != user {
                    return Err(TaskError::NotClaimant {
                        claimant: claimant.to_owned(),
                    });
                }
                let outcome = text("outcome", outcome, MAX_OUTCOME_CHARS)?;
                let note = note
                    .as_deref()
                    .map(|n| text("note", n, MAX_NOTE_CHARS))
                    .transpose()?;
                Ok(vec![TaskEvent::TaskCompleted {
                    by: user.clone(),
                    outcome,
                    note,
                    within_sla: self.due_at.is_none_or(|due| now <= due),
                    at: now,
                }])
            }
            TaskCommand::Cancel {
                by,
                authorized,
                reason,
            } => {
                if self.status.is_finished() {
                    return Err(self.wrong_state(&["open", "claimed"]));
                }
                if !authorized {
                    return Err(TaskError::NotAllowedToCancel);
                }
                let reason = text("reason", reason, MAX_REASON_CHARS)?;
                Ok(vec![TaskEvent::TaskCancelled {
                    by: by.clone(),
                    reason,
                    at: now,
                }])
            }
            TaskCommand::Escalate { policy } => {
                let (Some(due_at), Some(mut priority)) = (self.due_at, self.priority) else {
                    return Ok(Vec::new());
                };
                if self.status.is_finished() {
                    return Ok(Vec::new());
                }
                let reached = policy.level_at(due_at, now);
                Ok((self.escalation_level + 1..=reached)
                    .map(|level| {
                        let from = priority;
                        priority = priority.raised_by(policy.raise_priority_by);
                        TaskEvent::TaskEscalated {
                            level,
                            priority_from: from,
                            priority_to: priority,
                            due_at,
                            at: now,
                        }
                    })
                    .collect())
            }
            TaskCommand::LinkCase { case } => {
                if let Some(case_id) = self.case_id {
                    if case_id == case.case_id {
                        return Ok(Vec::new());
                    }
                    return Err(TaskError::AlreadyLinked { case_id });
                }
                if self.status.is_finished() {
                    return Err(self.wrong_state(&["open", "claimed"]));
                }
                check_case(*case)?;
                Ok(vec![TaskEvent::TaskLinkedToCase {
                    case_id: case.case_id,
                    at: now,
                }])
            }
        }
    }

    fn evolve(mut self, event: &TaskEvent) -> Self {
        match event {
            TaskEvent::TaskCreated {
                queue_id,
                title,
                priority,
                groups,
                case_id,
                due_at,
                at,
                ..
            } => {
                self.queue_id = Some(*queue_id);
                self.title = title.clone();
                self.priority = Some(*priority);
                self.groups = groups.clone();
                self.case_id = *case_id;
                self.due_at = Some(*due_at);
                self.created_at = Some(*at);
                self.status = TaskStatus::Open;
            }
            TaskEvent::TaskClaimed { by, .. } => {
                self.status = TaskStatus::Claimed;
                self.claimant = Some(by.clone());
            }
            TaskEvent::TaskAssigned { to, .. } | TaskEvent::TaskReassigned { to, .. } => {
                self.status = TaskStatus::Claimed;
                self.claimant = Some(to.clone());
            }
            TaskEvent::TaskUnclaimed { .. } => {
                self.status = TaskStatus::Open;
                self.claimant = None;
            }
            TaskEvent::TaskCompleted { .. } => self.status = TaskStatus::Completed,
            TaskEvent::TaskCancelled { .. } => self.status = TaskStatus::Cancelled,
            TaskEvent::TaskEscalated {
                level, priority_to, ..
            } => {
                self.escalation_level = *level;
                self.priority = Some(*priority_to);
            }
            TaskEvent::TaskLinkedToCase { case_id, .. } => self.case_id = Some(*case_id),
        }
        self
    }
}

impl Task {
    fn claimed_by(&self) -> Result<&str, TaskError> {
        match (self.status, &self.claimant) {
            (TaskStatus::Claimed, Some(c)) => Ok(c),
            _ => Err(self.wrong_state(&["claimed"])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workqueue::queue::tests::{config, t};
    use crate::workqueue::queue::Distribution;

    fn g(label: &str) -> GroupLabel {
        GroupLabel::parse(label).expect("valid in this test")
    }

    fn member(skills: &[&str]) -> Standing {
        Standing {
            member: true,
            lead: false,
            skills: skills.iter().map(|s| g(s)).collect(),
        }
    }

    fn room() -> Load {
        Load {
            claimed: 0,
            capacity: 2,
        }
    }

    fn create(groups: &[&str]) -> TaskCommand {
        TaskCommand::Create {
            queue: QueueLookup {
                queue_id: Uuid::from_u128(9),
                config: Some(config(Distribution::Pull)),
                unfinished: 0,
            },
            title: "Verify DEA registration".into(),
            priority: Priority::new(3).expect("valid in this test"),
            groups: groups.iter().map(|s| g(s)).collect(),
            case: None,
            payload: serde_json::json!({"npi": "1234567893"}),
        }
    }

    fn given(commands: &[(TaskCommand, i64)]) -> Task {
        commands.iter().fold(Task::default(), |task, (c, at)| {
            let events = task.decide(c, t(*at)).expect("given commands succeed");
            events.iter().fold(task, |s, e| s.evolve(e))
        })
    }

    fn claim(user: &str) -> TaskCommand {
        TaskCommand::Claim {
            user: user.into(),
            standing: member(&["dea"]),
            load: room(),
            next: false,
        }
    }

    #[test]
    fn a_new_task_is_due_by_its_queues_sla_for_its_priority() {
        let task = given(&[(create(&[]), 0)]);
        // Priority 3 in the standard policy: 360 minutes.
        assert_eq!(task.due_at, Some(t(360)));
        assert_eq!(task.status, TaskStatus::Open);
    }

    #[test]
    fn a_task_cannot_name_a_group_its_queue_does_not_declare() {
        assert_eq!(
            Task::default().decide(&create(&["surgery"]), t(0)),
            Err(TaskError::UnknownGroup {
                group: "surgery".into()
            })
        );
    }

    #[test]
    fn a_claimed_task_cannot_be_claimed_by_someone_else() {
        let task = given(&[(create(&[]), 0), (claim("alice"), 1)]);
        assert_eq!(
            task.decide(&claim("bob"), t(2)),
            Err(TaskError::AlreadyClaimed { by: "alice".into() })
        );
    }

    #[test]
    fn a_user_at_capacity_cannot_claim() {
        let task = given(&[(create(&[]), 0)]);
        let full = TaskCommand::Claim {
            user: "alice".into(),
            standing: member(&[]),
            load: Load {
                claimed: 2,
                capacity: 2,
            },
            next: true,
        };
        assert!(matches!(
            task.decide(&full, t(1)),
            Err(TaskError::OverCapacity {
                claimed: 2,
                capacity: 2,
                ..
            })
        ));
    }

    #[test]
    fn a_user_without_a_grant_in_force_cannot_claim() {
        let task = given(&[(create(&[]), 0)]);
        let outsider = TaskCommand::Claim {
            user: "mallory".into(),
            standing: Standing::default(),
            load: room(),
            next: false,
        };
        assert_eq!(
            task.decide(&outsider, t(1)),
            Err(TaskError::NoValidGrant {
                user: "mallory".into()
            })
        );
    }

    #[test]
    fn a_task_with_candidate_groups_goes_only_to_members_of_one_of_them() {
        let task = given(&[(create(&["billing"]), 0)]);
        assert!(matches!(
            task.decide(&claim("alice"), t(1)),
            Err(TaskError::NotInCandidateGroups { .. })
        ));
    }

    #[test]
    fn only_the_claimant_completes_and_the_outcome_records_the_sla() {
        let task = given(&[(create(&[]), 0), (claim("alice"), 1)]);
        let by_bob = TaskCommand::Complete {
            user: "bob".into(),
            outcome: "approved".into(),
            note: None,
        };
        assert_eq!(
            task.decide(&by_bob, t(2)),
            Err(TaskError::NotClaimant {
                claimant: "alice".into()
            })
        );
        let late = TaskCommand::Complete {
            user: "alice".into(),
            outcome: "approved".into(),
            note: None,
        };
        assert!(matches!(
            task.decide(&late, t(361)).expect("valid in this test")[..],
            [TaskEvent::TaskCompleted {
                within_sla: false,
                ..
            }]
        ));
    }

    #[test]
    fn reassignment_needs_a_lead_or_admin_and_a_reason() {
        let task = given(&[(create(&[]), 0), (claim("alice"), 1)]);
        let reassign = |authorized, reason: &str| TaskCommand::Reassign {
            by: "lee".into(),
            authorized,
            to: "bob".into(),
            to_standing: member(&[]),
            to_load: room(),
            reason: reason.into(),
        };
        assert_eq!(
            task.decide(&reassign(false, "leave"), t(2)),
            Err(TaskError::NotLeadOrAdmin)
        );
        assert!(task.decide(&reassign(true, "  "), t(2)).is_err());
        let events = task
            .decide(&reassign(true, "alice on leave"), t(2))
            .expect("valid in this test");
        assert!(matches!(
            &events[..],
            [TaskEvent::TaskReassigned { from: Some(f), to, .. }] if f == "alice" && to == "bob"
        ));
    }

    #[test]
    fn an_overdue_task_escalates_once_per_level_with_its_priority_raised() {
        let task = given(&[(create(&[]), 0)]);
        let escalate = TaskCommand::Escalate {
            policy: EscalationPolicy::standard(),
        };
        assert!(task
            .decide(&escalate, t(359))
            .expect("valid in this test")
            .is_empty());
        let task = given(&[(create(&[]), 0), (escalate.clone(), 360)]);
        assert_eq!(task.escalation_level, 1);
        assert_eq!(task.priority, Priority::new(4).ok());
        // Checked again within the same level: nothing.
        assert!(task
            .decide(&escalate, t(400))
            .expect("valid in this test")
            .is_empty());
        // Two levels later at once (the check did not run): one event per level.
        let events = task
            .decide(&escalate, t(360 + 125))
            .expect("valid in this test");
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn finished_tasks_do_not_escalate() {
        let task = given(&[
            (create(&[]), 0),
            (
                TaskCommand::Cancel {
                    by: "lee".into(),
                    authorized: true,
                    reason: "duplicate".into(),
                },
                1,
            ),
        ]);
        let escalate = TaskCommand::Escalate {
            policy: EscalationPolicy::standard(),
        };
        assert!(task
            .decide(&escalate, t(10_000))
            .expect("valid in this test")
            .is_empty());
    }
}
