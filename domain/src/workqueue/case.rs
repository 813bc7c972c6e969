//! Cases: a case number, a subject and its allegations, the tasks worked for it, and where it
//! has been. Routing a case to a queue and assigning it to a person are events on the case's
//! stream with a reason, so the routing history (which queues and people it passed through,
//! when and why) is read from the events rather than kept in a mutable column as seed 004's
//! `routing_history` was.
//!
//! The case number is the case's identity: its stream id is a UUID v5 of the number, so a
//! number is opened once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::values::{name_id, text, value_error, ValueError, MAX_REASON_CHARS};
use crate::Aggregate;

/// The longest subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 300;
/// The most allegations a case lists.
pub const MAX_ALLEGATIONS: usize = 50;
/// The most tasks one case links.
pub const MAX_TASKS: usize = 1_000;

/// A case number: 3 to 40 upper-case letters, digits and `-` (`CASE-2026-0042`). Input is
/// trimmed and upper-cased.
pub fn parse_number(value: &str) -> Result<String, ValueError> {
    let v = value.trim().to_uppercase();
    let ok = (3..=40).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(v)
    } else {
        Err(value_error(
            "number",
            "use 3 to 40 letters, digits or - (e.g. CASE-2026-0042)",
        ))
    }
}

/// A queue named by a case command, as looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRef {
    pub queue_id: Uuid,
    pub exists: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    #[default]
    Open,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CaseCommand {
    Open {
        number: String,
        subject: String,
        allegations: Vec<String>,
        /// The first queue, if routed on opening.
        queue: Option<QueueRef>,
    },
    Route {
        to: QueueRef,
        reason: String,
    },
    Assign {
        to: String,
        /// Whether `to` has an account (looked up outside).
        to_exists: bool,
        reason: String,
    },
    LinkTask {
        task_id: Uuid,
    },
    Close {
        resolution: String,
        /// Linked tasks not yet completed or cancelled (looked up outside).
        unfinished_tasks: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum CaseEvent {
    CaseOpened {
        number: String,
        subject: String,
        allegations: Vec<String>,
        at: DateTime<Utc>,
    },
    CaseRouted {
        from_queue: Option<Uuid>,
        to_queue: Uuid,
        reason: String,
        at: DateTime<Utc>,
    },
    CaseAssigned {
        from: Option<String>,
        to: String,
        reason: String,
        at: DateTime<Utc>,
    },
    CaseTaskLinked {
        task_id: Uuid,
        at: DateTime<Utc>,
    },
    CaseClosed {
        resolution: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    #[error("case {number} already exists")]
    NumberTaken { number: String },
    #[error("no such case")]
    NotFound,
    #[error("the case is closed")]
    Closed,
    #[error("queue {queue_id} does not exist")]
    UnknownQueue { queue_id: Uuid },
    #[error("user {username} does not exist")]
    UnknownUser { username: String },
    #[error("the case is already in queue {queue_id}")]
    AlreadyInQueue { queue_id: Uuid },
    #[error("the case is already assigned to {to}")]
    AlreadyAssigned { to: String },
    #[error("the case still has {unfinished} unfinished tasks")]
    UnfinishedTasks { unfinished: u32 },
    #[error("the case already links {MAX_TASKS} tasks")]
    TooManyTasks,
    #[error(transparent)]
    Invalid(#[from] ValueError),
}

impl crate::refusal::Refusal for CaseError {
    fn kind(&self) -> crate::refusal::ErrorKind {
        use crate::refusal::ErrorKind as K;
        use CaseError as C;
        match self {
            C::NotFound => K::NotFound,
            C::UnknownQueue { .. } | C::UnknownUser { .. } | C::Invalid(_) => K::Invalid,
            C::NumberTaken { .. }
            | C::Closed
            | C::AlreadyInQueue { .. }
            | C::AlreadyAssigned { .. }
            | C::UnfinishedTasks { .. }
            | C::TooManyTasks => K::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        use CaseError as C;
        match self {
            C::NumberTaken { .. } => "case_number_taken",
            C::NotFound => "case_not_found",
            C::Closed => "case_closed",
            C::UnknownQueue { .. } => "unknown_queue",
            C::UnknownUser { .. } => "unknown_user",
            C::AlreadyInQueue { .. } => "case_already_in_queue",
            C::AlreadyAssigned { .. } => "case_already_assigned",
            C::UnfinishedTasks { .. } => "case_has_unfinished_tasks",
            C::TooManyTasks => "case_too_many_tasks",
            C::Invalid(_) => "invalid_field",
        }
    }

    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        match self {
            CaseError::Invalid(v) => v.details(),
            _ => serde_json::Map::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Case {
    pub number: Option<String>,
    pub subject: String,
    pub status: CaseStatus,
    pub queue_id: Option<Uuid>,
    pub assignee: Option<String>,
    pub tasks: Vec<Uuid>,
}

impl Case {
    pub fn stream_id(number: &str) -> Uuid {
        name_id("case", &number.trim().to_uppercase())
    }

    pub fn exists(&self) -> bool {
        self.number.is_some()
    }

    pub fn is_open(&self) -> bool {
        self.exists() && self.status == CaseStatus::Open
    }

    fn open_or_refuse(&self) -> Result<(), CaseError> {
        if !self.exists() {
            return Err(CaseError::NotFound);
        }
        if self.status == CaseStatus::Closed {
            return Err(CaseError::Closed);
        }
        Ok(())
    }
}

impl Aggregate for Case {
    const STREAM_TYPE: &'static str = "case";
    type Command = CaseCommand;
    type Event = CaseEvent;
    type Error = CaseError;

    fn decide(
        &self,
        command: &CaseCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<CaseEvent>, CaseError> {
        match command {
            CaseCommand::Open {
                number,
                subject,
                allegations,
                queue,
            } => {
                let number = parse_number(number)?;
                if self.exists() {
                    return Err(CaseError::NumberTaken { number });
                }
                let subject = text("subject", subject, MAX_SUBJECT_CHARS)?;
                if allegations.len() > MAX_ALLEGATIONS {
                    return Err(
                        value_error("allegations", format!("at most {MAX_ALLEGATIONS}")).into(),
                    );
                }
                let allegations = allegations
                    .iter()
                    .map(|a| text("allegations", a, MAX_SUBJECT_CHARS))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut events = vec![CaseEvent::CaseOpened {
                    number,
                    subject,
                    allegations,
                    at: now,
                }];
                if let Some(q) = queue {
                    if !q.exists {
                        return Err(CaseError::UnknownQueue {
                            queue_id: q.queue_id,
                        });
                    }
                    events.push(CaseEvent::CaseRouted {
                        from_queue: None,
                        to_queue: q.queue_id,
                        reason: "opened in this queue".into(),
                        at: now,
                    });
                }
                Ok(events)
            }
            CaseCommand::Route { to, reason } => {
                self.open_or_refuse()?;
                if !to.exists {
                    return Err(CaseError::UnknownQueue {
                        queue_id: to.queue_id,
                    });
                }
                if self.queue_id == Some(to.queue_id) {
                    return Err(CaseError::AlreadyInQueue {
                        queue_id: to.queue_id,
                    });
                }
                let reason = text("reason", reason, MAX_REASON_CHARS)?;
                Ok(vec![CaseEvent::CaseRouted {
                    from_queue: self.queue_id,
                    to_queue: to.queue_id,
                    reason,
                    at: now,
                }])
            }
            CaseCommand::Assign {
                to,
                to_exists,
                reason,
            } => {
                self.open_or_refuse()?;
                if !to_exists {
                    return Err(CaseError::UnknownUser {
                        username: to.clone(),
                    });
                }
                if self.assignee.as_deref() == Some(to.as_str()) {
                    return Err(CaseError::AlreadyAssigned { to: to.clone() });
                }
                let reason = text("reason", reason, MAX_REASON_CHARS)?;
                Ok(vec![CaseEvent::CaseAssigned {
                    from: self.assignee.clone(),
                    to: to.clone(),
                    reason,
                    at: now,
                }])
            }
            CaseCommand::LinkTask { task_id } => {
                self.open_or_refuse()?;
                if self.tasks.contains(task_id) {
                    return Ok(Vec::new());
                }
                if self.tasks.len() >= MAX_TASKS {
                    return Err(CaseError::TooManyTasks);
                }
                Ok(vec![CaseEvent::CaseTaskLinked {
                    task_id: *task_id,
                    at: now,
                }])
            }
            CaseCommand::Close {
                resolution,
                unfinished_tasks,
            } => {
                self.open_or_refuse()?;
                if *unfinished_tasks > 0 {
                    return Err(CaseError::UnfinishedTasks {
                        unfinished: *unfinished_tasks,
                    });
                }
                let resolution = text("resolution", resolution, MAX_REASON_CHARS)?;
                Ok(vec![CaseEvent::CaseClosed {
                    resolution,
                    at: now,
                }])
            }
        }
    }

    fn evolve(mut self, event: &CaseEvent) -> Self {
        match event {
            CaseEvent::CaseOpened {
                number, subject, ..
            } => {
                self.number = Some(number.clone());
                self.subject = subject.clone();
                self.status = CaseStatus::Open;
            }
            CaseEvent::CaseRouted { to_queue, .. } => self.queue_id = Some(*to_queue),
            CaseEvent::CaseAssigned { to, .. } => self.assignee = Some(to.clone()),
            CaseEvent::CaseTaskLinked { task_id, .. } => self.tasks.push(*task_id),
            CaseEvent::CaseClosed { .. } => self.status = CaseStatus::Closed,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workqueue::queue::tests::t;

    fn opened() -> Case {
        let events = Case::default()
            .decide(
                &CaseCommand::Open {
                    number: "case-2026-0042".into(),
                    subject: "Lapsed DEA registration".into(),
                    allegations: vec!["prescribing while lapsed".into()],
                    queue: Some(QueueRef {
                        queue_id: Uuid::from_u128(1),
                        exists: true,
                    }),
                },
                t(0),
            )
            .expect("valid in this test");
        crate::fold(&events)
    }

    #[test]
    fn a_case_opened_in_a_queue_starts_its_routing_history_there() {
        let case = opened();
        assert_eq!(case.number.as_deref(), Some("CASE-2026-0042"));
        assert_eq!(case.queue_id, Some(Uuid::from_u128(1)));
    }

    #[test]
    fn routing_records_where_the_case_came_from_and_why() {
        let events = opened()
            .decide(
                &CaseCommand::Route {
                    to: QueueRef {
                        queue_id: Uuid::from_u128(2),
                        exists: true,
                    },
                    reason: "needs legal review".into(),
                },
                t(5),
            )
            .expect("valid in this test");
        assert!(matches!(
            &events[..],
            [CaseEvent::CaseRouted { from_queue: Some(f), reason, .. }]
                if *f == Uuid::from_u128(1) && reason == "needs legal review"
        ));
    }

    #[test]
    fn a_case_with_unfinished_tasks_cannot_be_closed() {
        assert_eq!(
            opened().decide(
                &CaseCommand::Close {
                    resolution: "done".into(),
                    unfinished_tasks: 2
                },
                t(9)
            ),
            Err(CaseError::UnfinishedTasks { unfinished: 2 })
        );
    }

    #[test]
    fn a_closed_case_takes_no_more_routing() {
        let closed = opened().evolve(&CaseEvent::CaseClosed {
            resolution: "unfounded".into(),
            at: t(9),
        });
        assert_eq!(
            closed.decide(
                &CaseCommand::Assign {
                    to: "alice".into(),
                    to_exists: true,
                    reason: "x".into()
                },
                t(10)
            ),
            Err(CaseError::Closed)
        );
    }
}
