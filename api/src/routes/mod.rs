//! Routes, grouped by resource; each module exposes a `router()`.

pub mod admin;
pub mod auth;
pub mod events;
pub mod health;
pub mod ops;
pub mod streams;
pub mod users;
