//! What kind of "no" an error is, declared beside the error's definition.
//!
//! Every refusal (a domain error, and the application layer's errors that wrap them) states its
//! [`ErrorKind`] and a stable machine-readable code. The HTTP layer maps a kind to a status in
//! one place, so the same failure gets the same answer whichever service produced it, and a new
//! error cannot be forgotten in some central table: it does not compile until it says what it is.

use serde_json::{Map, Value};

/// The kinds of failure a client can act on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or breaks a rule about its own content (HTTP 422).
    Invalid,
    /// It names a record that does not exist (HTTP 404).
    NotFound,
    /// The record's current state refuses it, or another writer got there first (HTTP 409).
    Conflict,
    /// The caller is known but may not do this (HTTP 403).
    Forbidden,
    /// The caller is not (or no longer) known: a bad password, an expired session (HTTP 401).
    Unauthenticated,
    /// Too many attempts in too short a time; try again later (HTTP 429).
    RateLimited,
    /// A dependency is away; the same request may succeed later (HTTP 503).
    Unavailable,
    /// A fault of ours, not of the request (HTTP 500); the detail is logged, not shown.
    Internal,
}

/// An error that says what kind of failure it is and which stable code names it.
pub trait Refusal: std::error::Error {
    fn kind(&self) -> ErrorKind;

    /// Stable, machine-readable, `snake_case`: clients branch on it, so never rename one.
    fn code(&self) -> &'static str;

    /// Facts a client acts on (who holds the task, the current version, ...), added to the
    /// problem document beside `code`. None by default.
    fn details(&self) -> Map<String, Value> {
        Map::new()
    }
}

/// The members of a JSON object, for [`Refusal::details`]; anything else gives none.
pub fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(members) => members,
        _ => Map::new(),
    }
}
