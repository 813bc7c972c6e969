//! Routes, grouped by resource; each module exposes a `router()`.

pub mod admin;
pub mod auth;
pub mod credentials;
pub mod events;
pub mod health;
pub mod jobs;
pub mod notifications;
pub mod ops;
pub mod physicians;
pub mod practices;
pub mod renewals;
pub mod staff;
pub mod streams;
pub mod users;
pub mod work;
pub mod work_views;
