//! Workflows: versioned definitions of processes that mix automated and human steps, and
//! their runs.
//!
//! - [`definition`]: what a definition is (steps, `depends_on`, `when`, retry and failure
//!   policies), everything checked at registration that needs no knowledge of step kinds
//!   (duplicate ids, unknown dependencies, cycles, conditions on non-ancestors), the plan in
//!   topological groups, and [`definition::WorkflowDefinition`], a key's versions.
//! - [`condition`]: the small declarative `when` language.
//! - [`run`]: [`run::WorkflowRun`], one execution as an aggregate: which steps are ready,
//!   attempts and their leases, waits, retries with backoff, skip/fallback/ask-a-person, and the
//!   executor's rows derived from the state.
//!
//! Step kinds (what a step *does*) live in the application layer, which owns the I/O.

pub mod condition;
pub mod definition;
pub mod run;

pub use condition::Condition;
pub use definition::{
    Definition, DefinitionError, OnFailure, RetryPolicy, StepDef, WorkflowDefinition,
};
pub use run::{RunCommand, RunError, RunEvent, RunStatus, StepStatus, WaitOn, WorkflowRun};
