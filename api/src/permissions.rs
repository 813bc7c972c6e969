//! Who may call what, enforced by one middleware.
//!
//! Every route states its [`Access`] where it is declared (see [`crate::routes`]); the
//! declarations make up a [`Table`], which [`guard`] reads. A request is matched to its route
//! template (`/streams/{id}/events`), looked up in the table, and let through only if the
//! caller's role is allowed. A route cannot be declared without an access, and one missing from
//! the table all the same (mounted behind the declarations' back) is refused to everyone and
//! logged; the role-matrix test walks every entry with every role.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::user::Role;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, logged in or not.
    Public,
    /// Any logged-in user.
    AnyUser,
    /// Logged-in users with one of these roles.
    Roles(&'static [Role]),
}

use Role::{Admin, Auditor, Staff, System, Viewer};

/// Readers of operational data: everyone but automated jobs.
pub const READERS: Access = Access::Roles(&[Admin, Staff, Viewer, Auditor]);
/// Readers of the raw event log and of state rebuilt from it.
pub const AUDITORS: Access = Access::Roles(&[Admin, Auditor]);
pub const ADMINS: Access = Access::Roles(&[Admin]);
/// People who do the credentialing work.
pub const OPERATORS: Access = Access::Roles(&[Admin, Staff]);
/// Operators, and the automated callers that start work for them (the scheduler's renewal scan,
/// intake creating tasks).
pub const OPERATORS_AND_SYSTEM: Access = Access::Roles(&[Admin, Staff, System]);
/// Watchers of the running system: metrics and projection state.
pub const MONITORS: Access = Access::Roles(&[Admin, System]);
/// Operators of the scheduler and its jobs.
pub const JOB_OPERATORS: Access = Access::Roles(&[Admin, System]);
/// Readers of job status and history.
pub const JOB_READERS: Access = Access::Roles(&[Admin, System, Auditor]);

/// One route as the guard sees it: a method on a route template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub method: Method,
    /// As axum matches it: `/streams/{id}/events`.
    pub path: String,
    pub access: Access,
}

/// Every route of the API, with who may call it; built from the routes' declarations.
#[derive(Debug, Clone, Default)]
pub struct Table(Vec<Entry>);

impl Table {
    pub fn new(entries: Vec<Entry>) -> Self {
        Self(entries)
    }

    /// The entry for a method and route template. HEAD is answered by the GET handler (axum
    /// runs it and drops the body), so it has GET's access.
    pub fn access(&self, method: &Method, path: &str) -> Option<Access> {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.0
            .iter()
            .find(|e| e.method == method && e.path == path)
            .map(|e| e.access)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.0
    }
}

/// The middleware: authenticates the caller when a token is sent and checks the table.
pub async fn guard(
    State((state, table)): State<(AppState, Arc<Table>)>,
    mut request: Request,
    next: Next,
) -> Response {
    // Unmatched requests fall through to the 404/405 fallbacks.
    let Some(path) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(request).await;
    };
    let Some(access) = table.access(request.method(), &path) else {
        tracing::error!(method = %request.method(), %path, "route has no permission entry; refused");
        return ApiError::Forbidden.into_response();
    };
    if access == Access::Public {
        return next.run(request).await;
    }
    let caller = match crate::auth::authenticate(&state.auth, request.headers()).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let allowed = match (access, &caller) {
        (Access::Public, _) => true,
        (_, None) => return ApiError::Unauthenticated.into_response(),
        (Access::AnyUser, Some(_)) => true,
        (Access::Roles(roles), Some(c)) => roles.contains(&c.role),
    };
    if !allowed {
        return ApiError::Forbidden.into_response();
    }
    if let Some(caller) = caller {
        request.extensions_mut().insert::<Caller>(caller);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_has_the_access_of_get_and_nothing_else_does() {
        let table = Table::new(vec![Entry {
            method: Method::GET,
            path: "/events".to_owned(),
            access: AUDITORS,
        }]);
        assert_eq!(table.access(&Method::HEAD, "/events"), Some(AUDITORS));
        assert_eq!(table.access(&Method::POST, "/events"), None);
    }
}
