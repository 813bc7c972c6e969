//! Specifications for aggregates: given these past events, when this command is decided at this
//! time, then these new events, or this refusal.
//!
//! Every aggregate's tests read the same way:
//!
//! ```
//! # use chrono::{TimeZone, Utc};
//! # use domain::renewal::{Renewal, RenewalCommand, RenewalError};
//! use domain::testing::Spec;
//!
//! let now = Utc.with_ymd_and_hms(2026, 4, 15, 12, 0, 0).single().expect("a valid time");
//! Renewal::given([])
//!     .when(RenewalCommand::Start, now)
//!     .then_err(RenewalError::NotFound);
//! ```
//!
//! [`When::then`] returns the state after the new events, so a spec can go on to assert what
//! the state now says, or decide the next command on it with [`Then::and_when`].
//!
//! Failures panic with the command that was decided, at the caller's line: this module is for
//! tests only, which is why it is hidden from the documentation.

use std::fmt::Debug;

use chrono::{DateTime, Utc};

use crate::{fold, Aggregate};

/// Starts a specification of aggregate `A` from its past events.
pub trait Spec: Aggregate {
    /// The aggregate as these events (oldest first) leave it; `[]` for a stream that does not
    /// exist yet.
    fn given(events: impl IntoIterator<Item = Self::Event>) -> Given<Self> {
        let history: Vec<Self::Event> = events.into_iter().collect();
        let state = fold(&history);
        Given { history, state }
    }
}

impl<A: Aggregate> Spec for A {}

/// An aggregate's past: its events and the state they fold into.
#[derive(Debug, Clone)]
pub struct Given<A: Aggregate> {
    history: Vec<A::Event>,
    state: A,
}

impl<A: Aggregate> Given<A> {
    /// The state the given events fold into, for assertions about it before any command.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// The state the given events fold into, owned.
    pub fn into_state(self) -> A {
        self.state
    }

    /// Decides `command` at `now` against the given state. Takes `&self`, so one past can face
    /// many commands.
    pub fn when(&self, command: A::Command, now: DateTime<Utc>) -> When<A> {
        let outcome = self.state.decide(&command, now);
        When {
            history: self.history.clone(),
            before: self.state.clone(),
            command,
            outcome,
            context: String::new(),
        }
    }
}

/// A command decided: what `decide` answered, waiting for the expectation.
#[derive(Debug)]
pub struct When<A: Aggregate> {
    history: Vec<A::Event>,
    before: A,
    command: A::Command,
    outcome: Result<Vec<A::Event>, A::Error>,
    /// Which case of a table this is, for the failure message.
    context: String,
}

impl<A> When<A>
where
    A: Aggregate,
    A::Command: Debug,
    A::Event: PartialEq + Debug,
    A::Error: PartialEq + Debug,
{
    /// Names the case (`"from filed"`) in failure messages, for specs that loop over a table.
    pub fn case(mut self, context: impl std::fmt::Display) -> Self {
        self.context = format!(" ({context})");
        self
    }

    /// Expects exactly these new events, in this order; returns the state after them.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> Then<A> {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match &self.outcome {
            Ok(events) => assert_eq!(
                events, &expected,
                "{:?}{} decided other events than expected",
                self.command, self.context
            ),
            Err(error) => panic!(
                "{:?}{} was refused ({error:?}), expected {expected:?}",
                self.command, self.context
            ),
        }
        self.accepted()
    }

    /// Expects the command to be accepted, whatever events it gives; returns the state after
    /// them (and the events, through [`Then::events`]).
    #[track_caller]
    pub fn then_ok(self) -> Then<A> {
        if let Err(error) = &self.outcome {
            panic!("{:?}{} was refused: {error:?}", self.command, self.context);
        }
        self.accepted()
    }

    /// Expects exactly this refusal; returns it, for assertions about its message.
    #[track_caller]
    pub fn then_err(self, expected: A::Error) -> A::Error {
        match self.outcome {
            Err(error) => {
                assert_eq!(
                    error, expected,
                    "{:?}{} was refused for another reason than expected",
                    self.command, self.context
                );
                error
            }
            Ok(events) => panic!(
                "{:?}{} was accepted with {events:?}, expected the refusal {expected:?}",
                self.command, self.context
            ),
        }
    }

    /// Expects a refusal, whichever; returns it.
    #[track_caller]
    pub fn then_refused(self) -> A::Error {
        match self.outcome {
            Err(error) => error,
            Ok(events) => panic!(
                "{:?}{} was accepted with {events:?}, expected a refusal",
                self.command, self.context
            ),
        }
    }

    /// What `decide` answered, for specs that branch on it (property tests, tables of cases).
    pub fn outcome(&self) -> &Result<Vec<A::Event>, A::Error> {
        &self.outcome
    }

    fn accepted(self) -> Then<A> {
        let events = self.outcome.unwrap_or_default();
        let state = events
            .iter()
            .fold(self.before, |state, event| state.evolve(event));
        let mut history = self.history;
        history.extend(events.iter().cloned());
        Then {
            history,
            events,
            state,
        }
    }
}

/// An accepted command: the events it gave and the state after them.
#[derive(Debug, Clone)]
pub struct Then<A: Aggregate> {
    history: Vec<A::Event>,
    events: Vec<A::Event>,
    state: A,
}

impl<A: Aggregate> Then<A> {
    /// The state after the new events.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// The new events the command gave.
    pub fn events(&self) -> &[A::Event] {
        &self.events
    }

    /// The whole history now: the given events, then the new ones.
    pub fn history(&self) -> &[A::Event] {
        &self.history
    }

    /// The state after the new events, owned.
    pub fn into_state(self) -> A {
        self.state
    }

    /// Continues the story: decides the next command on the state after the new events.
    pub fn and_when(self, command: A::Command, now: DateTime<Utc>) -> When<A> {
        Given {
            history: self.history,
            state: self.state,
        }
        .when(command, now)
    }

    /// The story so far as a past to decide other commands against.
    pub fn into_given(self) -> Given<A> {
        Given {
            history: self.history,
            state: self.state,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::renewal::{Renewal, RenewalCommand, RenewalError, RenewalEvent};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 4, 15, 12, 0, 0)
            .single()
            .expect("a valid time")
    }

    #[test]
    #[should_panic(expected = "was refused")]
    fn expecting_events_from_a_refused_command_fails_the_spec() {
        Renewal::given([])
            .when(RenewalCommand::Start, now())
            .then([RenewalEvent::RenewalStarted { at: now() }]);
    }

    #[test]
    #[should_panic(expected = "another reason")]
    fn expecting_the_wrong_refusal_fails_the_spec() {
        Renewal::given([])
            .when(RenewalCommand::Start, now())
            .then_err(RenewalError::AlreadyInitiated);
    }

    #[test]
    fn the_expected_refusal_passes_the_spec_and_is_handed_back() {
        let refusal = Renewal::given([])
            .when(RenewalCommand::Start, now())
            .then_err(RenewalError::NotFound);
        assert_eq!(refusal, RenewalError::NotFound);
    }
}
