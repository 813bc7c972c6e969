//! Who may call what: one table for every route, enforced by one middleware.
//!
//! A request is matched to its route template (`/streams/{id}/events`), looked up here, and let
//! through only if the caller's role is allowed. A route missing from the table is refused to
//! everyone (and logged), so forgetting an entry fails closed; the role-matrix test walks every
//! entry with every role.

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
const READERS: &[Role] = &[Admin, Staff, Viewer, Auditor];
/// Readers of the raw event log.
const AUDITORS: &[Role] = &[Admin, Auditor];
const ADMINS: &[Role] = &[Admin];
/// People who do the credentialing work.
const OPERATORS: &[Role] = &[Admin, Staff];
/// Operators of the scheduler and its jobs.
const JOB_OPERATORS: &[Role] = &[Admin, System];
/// Readers of job status and history.
const JOB_READERS: &[Role] = &[Admin, System, Auditor];

/// Every route of the API, with who may call it.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/health", Access::Public),
    ("GET", "/ready", Access::Public),
    ("GET", "/openapi.json", Access::Public),
    ("GET", "/docs", Access::Public),
    ("GET", "/docs/swagger-ui-bundle.js", Access::Public),
    ("GET", "/docs/swagger-ui.css", Access::Public),
    ("GET", "/metrics", Access::Roles(&[Admin, System])),
    ("POST", "/auth/login", Access::Public),
    ("POST", "/auth/logout", Access::AnyUser),
    ("GET", "/auth/me", Access::AnyUser),
    ("POST", "/auth/password", Access::AnyUser),
    ("POST", "/users", Access::Roles(ADMINS)),
    ("GET", "/users/{username}", Access::Roles(AUDITORS)),
    ("POST", "/users/{username}/role", Access::Roles(ADMINS)),
    ("POST", "/users/{username}/unlock", Access::Roles(ADMINS)),
    (
        "POST",
        "/users/{username}/deactivate",
        Access::Roles(ADMINS),
    ),
    ("GET", "/events", Access::Roles(AUDITORS)),
    ("GET", "/events/stream", Access::Roles(AUDITORS)),
    ("GET", "/events/export", Access::Roles(AUDITORS)),
    ("GET", "/streams/{id}/events", Access::Roles(AUDITORS)),
    ("GET", "/streams", Access::Roles(READERS)),
    ("GET", "/admin/projections", Access::Roles(&[Admin, System])),
    ("POST", "/physicians", Access::Roles(OPERATORS)),
    ("GET", "/physicians", Access::Roles(READERS)),
    ("GET", "/physicians/{id}", Access::Roles(READERS)),
    ("PUT", "/physicians/{id}", Access::Roles(OPERATORS)),
    (
        "POST",
        "/physicians/{id}/deactivate",
        Access::Roles(OPERATORS),
    ),
    (
        "POST",
        "/physicians/{id}/reactivate",
        Access::Roles(OPERATORS),
    ),
    ("GET", "/physicians/{id}/state", Access::Roles(AUDITORS)),
    ("POST", "/credentials", Access::Roles(OPERATORS)),
    ("GET", "/credentials/{id}", Access::Roles(READERS)),
    ("POST", "/credentials/{id}/expiry", Access::Roles(OPERATORS)),
    ("POST", "/credentials/{id}/revoke", Access::Roles(OPERATORS)),
    ("GET", "/credentials/{id}/state", Access::Roles(AUDITORS)),
    ("POST", "/renewals", Access::Roles(OPERATORS)),
    ("GET", "/renewals", Access::Roles(READERS)),
    ("GET", "/renewals/statistics", Access::Roles(READERS)),
    (
        "POST",
        "/renewals/scan",
        Access::Roles(&[Admin, Staff, System]),
    ),
    ("GET", "/renewals/{id}", Access::Roles(READERS)),
    ("GET", "/renewals/{id}/timeline", Access::Roles(READERS)),
    ("GET", "/renewals/{id}/checklist", Access::Roles(READERS)),
    (
        "POST",
        "/renewals/{id}/checklist/{item}/complete",
        Access::Roles(OPERATORS),
    ),
    ("POST", "/renewals/{id}/status", Access::Roles(OPERATORS)),
    ("POST", "/renewals/{id}/cancel", Access::Roles(OPERATORS)),
    ("GET", "/renewals/{id}/state", Access::Roles(AUDITORS)),
    ("POST", "/staff", Access::Roles(OPERATORS)),
    ("GET", "/staff", Access::Roles(READERS)),
    ("GET", "/staff/{id}", Access::Roles(READERS)),
    ("PUT", "/staff/{id}", Access::Roles(OPERATORS)),
    ("PUT", "/staff/{id}/availability", Access::Roles(OPERATORS)),
    ("GET", "/staff/{id}/state", Access::Roles(AUDITORS)),
    ("POST", "/allocations", Access::Roles(OPERATORS)),
    ("POST", "/allocations/rank", Access::Roles(READERS)),
    ("GET", "/allocations/{kind}/{id}", Access::Roles(READERS)),
    (
        "POST",
        "/allocations/{kind}/{id}/release",
        Access::Roles(OPERATORS),
    ),
    (
        "POST",
        "/allocations/{kind}/{id}/replay",
        Access::Roles(READERS),
    ),
    ("GET", "/notifications", Access::Roles(READERS)),
    ("GET", "/notifications/outbox", Access::Roles(READERS)),
    ("POST", "/notifications/test", Access::Roles(ADMINS)),
    ("GET", "/notifications/{id}", Access::Roles(READERS)),
    ("POST", "/notifications/{id}/retry", Access::Roles(ADMINS)),
    ("POST", "/practices", Access::Roles(OPERATORS)),
    ("GET", "/practices", Access::Roles(READERS)),
    (
        "GET",
        "/practices/available-physicians",
        Access::Roles(READERS),
    ),
    (
        "GET",
        "/practices/reports/specialties",
        Access::Roles(READERS),
    ),
    ("GET", "/practices/reports/coverage", Access::Roles(READERS)),
    (
        "GET",
        "/practices/reports/compliance",
        Access::Roles(READERS),
    ),
    ("GET", "/practices/{id}", Access::Roles(READERS)),
    ("PUT", "/practices/{id}", Access::Roles(OPERATORS)),
    (
        "POST",
        "/practices/{id}/deactivate",
        Access::Roles(OPERATORS),
    ),
    (
        "POST",
        "/practices/{id}/reactivate",
        Access::Roles(OPERATORS),
    ),
    (
        "POST",
        "/practices/{id}/locations",
        Access::Roles(OPERATORS),
    ),
    (
        "POST",
        "/practices/{id}/locations/{location_id}/remove",
        Access::Roles(OPERATORS),
    ),
    (
        "POST",
        "/practices/{id}/physicians",
        Access::Roles(OPERATORS),
    ),
    (
        "POST",
        "/practices/{id}/physicians/unassign",
        Access::Roles(OPERATORS),
    ),
    (
        "POST",
        "/practices/{id}/physicians/{physician_id}/transfer",
        Access::Roles(OPERATORS),
    ),
    ("GET", "/practices/{id}/state", Access::Roles(AUDITORS)),
    ("GET", "/jobs", Access::Roles(JOB_READERS)),
    ("POST", "/jobs/{name}/run", Access::Roles(JOB_OPERATORS)),
    ("POST", "/jobs/{name}/pause", Access::Roles(ADMINS)),
    ("POST", "/jobs/{name}/resume", Access::Roles(ADMINS)),
    ("GET", "/jobs/{name}/runs", Access::Roles(JOB_READERS)),
    // Work queues: admins shape the organisation; operators work the tasks and cases (what a
    // task allows beyond that, the queue's grants decide); automated intake may create tasks.
    ("POST", "/departments", Access::Roles(ADMINS)),
    ("POST", "/queues", Access::Roles(ADMINS)),
    ("PUT", "/queues/{id}", Access::Roles(ADMINS)),
    ("POST", "/queues/{id}/grants", Access::Roles(ADMINS)),
    (
        "POST",
        "/queues/{id}/grants/{item}/revoke",
        Access::Roles(ADMINS),
    ),
    ("POST", "/tasks", Access::Roles(&[Admin, Staff, System])),
    ("POST", "/tasks/claim-next", Access::Roles(OPERATORS)),
    ("POST", "/tasks/{id}/claim", Access::Roles(OPERATORS)),
    ("POST", "/tasks/{id}/unclaim", Access::Roles(OPERATORS)),
    ("POST", "/tasks/{id}/reassign", Access::Roles(OPERATORS)),
    ("POST", "/tasks/{id}/complete", Access::Roles(OPERATORS)),
    ("POST", "/tasks/{id}/cancel", Access::Roles(OPERATORS)),
    ("POST", "/tasks/{id}/case", Access::Roles(OPERATORS)),
    ("POST", "/cases", Access::Roles(OPERATORS)),
    ("POST", "/cases/{id}/route", Access::Roles(OPERATORS)),
    ("POST", "/cases/{id}/assign", Access::Roles(OPERATORS)),
    ("POST", "/cases/{id}/close", Access::Roles(OPERATORS)),
    // Work queues, the read side: readers see queues, tasks and cases; anyone logged in sees
    // the tasks they hold; state rebuilt from the events is for auditors, as elsewhere.
    ("GET", "/departments", Access::Roles(READERS)),
    ("GET", "/queues", Access::Roles(READERS)),
    ("GET", "/queues/dashboard", Access::Roles(READERS)),
    ("GET", "/queues/{id}", Access::Roles(READERS)),
    ("GET", "/queues/{id}/sla-report", Access::Roles(READERS)),
    ("GET", "/tasks", Access::Roles(READERS)),
    ("GET", "/tasks/mine", Access::AnyUser),
    ("GET", "/tasks/{id}", Access::Roles(READERS)),
    ("GET", "/tasks/{id}/state", Access::Roles(AUDITORS)),
    ("GET", "/cases", Access::Roles(READERS)),
    ("GET", "/cases/{id}", Access::Roles(READERS)),
    ("GET", "/cases/{id}/routing", Access::Roles(READERS)),
    ("GET", "/cases/{id}/state", Access::Roles(AUDITORS)),
];

/// The entry for a method and route template.
pub fn access(method: &Method, path: &str) -> Option<Access> {
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, a)| *a)
}

/// The middleware: authenticates the caller when a token is sent and checks the table.
pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    // Unmatched requests fall through to the 404/405 fallbacks.
    let Some(path) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(request).await;
    };
    let Some(access) = access(request.method(), &path) else {
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
