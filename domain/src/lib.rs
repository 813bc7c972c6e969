//! Caseledger's domain: what may happen, decided without I/O.
//!
//! A tour:
//! - [`Aggregate`] is the shape every aggregate takes: `decide` turns a command and the current
//!   state into new events (or refuses), `evolve` folds one event into the state. Both are pure and
//!   synchronous; time arrives as the `now` argument and look-ups arrive inside the command, so the
//!   same inputs always give the same answer and tests need no database.
//! - [`user`]: people who log in: roles, password rules, failed logins and lockout.
//! - [`contact`]: checks shared by everything that carries contact details.
//! - [`physician`]: physicians and their NPI; [`credential`]: licences, DEA and CSR
//!   registrations and their one open renewal; [`renewal`]: the renewal lifecycle, checklists,
//!   progress and timeline; [`jurisdiction`]: US state codes and their renewal cycles.
//! - [`notification`]: expiry notifications: trigger points, severities, the message template,
//!   delivery attempts with backoff and the 72-hour limit.
//! - [`practice`]: practices (name unique through the stream id), their locations, and physician
//!   assignment, decided on the practice's stream and on the physician's
//!   [`practice::PracticeMembership`] stream ("at most one practice at a time").
//! - [`staff`]: staff members who can be allocated work (skills, home, weekly availability,
//!   capacity, preferences); [`allocation`]: the pure six-factor ranking of candidates for a
//!   piece of work, and the decision record an allocation event carries;
//!   [`work_allocation`]: one piece of work's allocation stream (allocate, release, allocate
//!   again), and replaying a recorded decision with other weights.
//! - [`workqueue`]: departments, queues with their role grants, tasks (claim, hand-off,
//!   completion, SLA escalation), push distribution strategies, and cases with their routing.
//! - [`workflow`]: versioned workflow definitions (steps, dependencies, conditions, retry and
//!   failure policies, checked at registration) and runs as aggregates: what is ready, attempts
//!   with leases, waits, retries, fallbacks and incidents.
//! - [`refusal`]: [`refusal::Refusal`], how every error declares its kind and stable code beside
//!   its definition.
//! - `testing` (hidden, for tests): `Renewal::given(events).when(command, now).then(events)` or
//!   `.then_err(refusal)`, the one shape every aggregate's specifications are written in.
//! - The event store that keeps these events is the `eventstore` crate, the services that drive
//!   these functions live in `commands`, and the read models built from the events in `projections`.
//!
//! Events are serde enums, adjacently tagged (`#[serde(tag = "type", content = "data")]`) with
//! struct variants: the tag becomes the stored event type and the content the stored JSON object.

pub mod allocation;
pub mod contact;
pub mod credential;
pub mod jurisdiction;
pub mod notification;
pub mod physician;
pub mod practice;
pub mod refusal;
pub mod renewal;
pub mod staff;
#[doc(hidden)]
pub mod testing;
pub mod user;
pub mod work_allocation;
pub mod workflow;
pub mod workqueue;

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Serialize};

/// An event-sourced aggregate: its state is the fold of its own events, and it alone decides
/// which new events a command produces.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// The stream type its streams are stored under (`renewal`, `task`, ...). Stable forever:
    /// stored events carry it.
    const STREAM_TYPE: &'static str;

    /// What a caller asks for. Serializable so that the command log can tell a resent command
    /// from a different command that reuses an id.
    type Command: Serialize + Send + Sync + 'static;

    /// What happened, in the past tense. Adjacently tagged serde enum with struct variants.
    type Event: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// Why a command was refused; each variant names what was wrong, and what kind of "no" it
    /// is ([`refusal::Refusal`]), so that every caller answers it the same way.
    type Error: refusal::Refusal + Send + Sync + 'static;

    /// Decides a command against the current state at time `now`.
    fn decide(
        &self,
        command: &Self::Command,
        now: DateTime<Utc>,
    ) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one event into the state. Must accept every event `decide` ever produced, including
    /// old ones (after upcasting), so it never fails.
    fn evolve(self, event: &Self::Event) -> Self;

    /// The schema version new events of `event_type` are written with. Bump it (and register an
    /// upcaster for the old version) when an event's shape changes.
    fn event_schema_version(event_type: &str) -> u32 {
        let _ = event_type;
        1
    }
}

/// Folds a history into a state, from the default (empty) state.
pub fn fold<'a, A: Aggregate>(events: impl IntoIterator<Item = &'a A::Event>) -> A {
    events
        .into_iter()
        .fold(A::default(), |state, event| state.evolve(event))
}
