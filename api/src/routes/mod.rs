//! Routes, grouped by resource; each module exposes a `router()`.

pub mod health;
