//! Work queues: departments, queues with their grants, tasks and cases (`DOMAIN.md`, "Work
//! queues and tasks"; seed 004).
//!
//! A tour:
//! - [`values`]: the small validated values every part shares: [`Priority`] (1 to 5, 5 most
//!   urgent), group labels, reasons, and the UUID v5 namespaces that make names unique.
//! - [`department`]: the department hierarchy (a parent must exist when a child is created, so
//!   the hierarchy can have no cycle).
//! - [`queue`]: a queue's configuration (department, capacity, SLA per priority, escalation
//!   policy, distribution, candidate groups) and the role grants of users to it, each with a
//!   validity window; "who may work here now" is a question to the queue's own state.
//! - [`distribution`]: the pure push strategies (round robin, least loaded, skill based,
//!   priority weighted) choosing an assignee among candidates, with the reason recorded.
//! - [`task`]: the task lifecycle (open, claimed, completed, cancelled; escalation levels on
//!   top), deciding claims, hand-offs, completion and escalation from look-ups made outside.
//! - [`case`]: cases grouping tasks, routed through queues and people; the routing history is
//!   their events.

pub mod case;
pub mod department;
pub mod distribution;
pub mod queue;
pub mod task;
pub mod values;

pub use values::{GroupLabel, Priority, ValueError};
