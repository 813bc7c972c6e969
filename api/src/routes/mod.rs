//! Routes, grouped by resource. Each module declares all of its routes in one `routes()`
//! function, and a route is declared once: its path and method live in the handler's
//! `#[utoipa::path]` attribute, and `routes()` mounts the handler with who may call it:
//!
//! ```text
//! pub fn routes() -> Routes {
//!     Routes::new()
//!         .route(OPERATORS, routes!(register)) // #[utoipa::path(post, path = "/physicians", ..)]
//!         .route(READERS, routes!(list)) //       #[utoipa::path(get, path = "/physicians", ..)]
//!         .route(READERS, routes!(show)) //       #[utoipa::path(get, path = "/physicians/{id}", ..)]
//! }
//! ```
//!
//! [`routes!`] comes from utoipa-axum, the crate made for this (0.2, the line for utoipa 5 and
//! axum 0.8): it reads the path, the methods and the OpenAPI operation of each handler from its
//! annotation and builds the axum method router from the same, so the mounted route and its
//! documentation cannot diverge, and it collects the schemas the operation uses. It fits as it is
//! but for two sharp edges, which [`Routes`] turns into construction-time panics (any test that
//! builds the app hits them): handlers of different paths in one `routes!` would each be mounted
//! at every path, and two types documented under one schema name would silently replace one
//! another.
//!
//! [`Routes`] wraps utoipa-axum's router so that nothing is mounted without a
//! [`crate::permissions::Access`]: [`Routes::route`] and [`Routes::asset`] are the only ways in
//! and both take one (a compile error otherwise), and each records its (method, path, access) in
//! the permission table the guard reads. Its fields are private to `declare`, so a resource module
//! cannot reach past it; and the guard still refuses a matched route missing from the table.
//!
//! [`app`](crate::app) mounts exactly the modules in [`ALL`], and the OpenAPI document is what
//! they collected ([`crate::openapi`]). A new resource needs two registrations: its `pub mod` line
//! below and its `routes` function in [`ALL`].

pub mod admin;
pub mod allocations;
pub mod audit;
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
pub mod workflows;

mod declare;

use axum::Router;
use utoipa::openapi::OpenApi;

pub use declare::Routes;
pub use utoipa_axum::routes;

use crate::permissions::Table;
use crate::AppState;

/// Every resource's routes: what `app()` serves, documents and guards, and nothing else.
pub const ALL: &[fn() -> Routes] = &[
    health::routes,
    ops::routes,
    crate::openapi::routes,
    auth::routes,
    users::routes,
    events::routes,
    audit::routes,
    streams::routes,
    admin::routes,
    physicians::routes,
    credentials::routes,
    renewals::routes,
    staff::routes,
    allocations::routes,
    notifications::routes,
    practices::routes,
    jobs::routes,
    work::routes,
    work_views::routes,
    workflows::routes,
];

/// The whole API, built from [`ALL`]: the router, what it documents, and who may call what.
pub struct Api {
    pub router: Router<AppState>,
    /// The paths and the schemas they use, without the document's info (see
    /// [`crate::openapi::document`]).
    pub openapi: OpenApi,
    pub permissions: Table,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

pub fn api() -> Api {
    let all = ALL
        .iter()
        .fold(Routes::new(), |all, routes| all.merge(routes()));
    let (router, table) = all.into_parts();
    let (router, openapi) = router.split_for_parts();
    Api {
        router,
        openapi,
        permissions: Table::new(table),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_api_declares_each_method_and_path_once() {
        let api = api();
        let entries = api.permissions.entries();
        let distinct: BTreeSet<_> = entries
            .iter()
            .map(|e| (e.method.as_str(), &e.path))
            .collect();
        assert_eq!(distinct.len(), entries.len());
        assert!(api.openapi.paths.paths.len() > 1);
    }
}
