//! The OpenAPI document (`GET /openapi.json`), generated from the handlers' annotations, and the
//! interactive reference (`GET /docs`): Swagger UI, served from files embedded in the binary so
//! that it works with no internet.
//!
//! No path is listed here: the route modules collect their operations and schemas as they
//! declare their routes ([`crate::routes`]), and [`document`] adds the title and the bearer
//! scheme. `app()` builds the document once and hands it to `openapi_json` as an extension.
//!
//! Types from the inner crates (which stay free of HTTP concerns) are described here by mirror
//! schemas; a test checks each mirror against the real type's JSON.

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use uuid::Uuid;

use crate::permissions::Access;
use crate::routes::{routes, Routes};

/// The document's own parts; the paths and their schemas come from the routes (see [`document`]).
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Caseledger", description = "Event-sourced backend for healthcare operations work. Every error is an application/problem+json document with a stable `code`."),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The token from POST /auth/login"))
                    .build(),
            ),
        );
    }
}

/// The document served at `/openapi.json`: what the routes collected, with the info and the
/// security scheme.
pub fn document(collected: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    ApiDoc::openapi().merge_from(collected)
}

pub fn routes() -> Routes {
    Routes::new()
        .route(Access::Public, routes!(openapi_json))
        .route(Access::Public, routes!(docs))
        .asset(Access::Public, "/docs/swagger-ui-bundle.js", bundle)
        .asset(Access::Public, "/docs/swagger-ui.css", css)
}

#[utoipa::path(get, path = "/openapi.json", tag = "reference", responses((status = 200, description = "This document")))]
pub(crate) async fn openapi_json(
    Extension(document): Extension<Arc<utoipa::openapi::OpenApi>>,
) -> Json<utoipa::openapi::OpenApi> {
    Json(document.as_ref().clone())
}

#[utoipa::path(get, path = "/docs", tag = "reference", responses((status = 200, description = "Interactive reference (Swagger UI)", content_type = "text/html", body = String)))]
pub(crate) async fn docs() -> Html<&'static str> {
    Html(DOCS_HTML)
}

const DOCS_HTML: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Caseledger API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", persistAuthorization: true });
  </script>
</body>
</html>
"##;

fn asset(body: &'static [u8], content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    response
}

/// Swagger UI 5 (Apache-2.0, see assets/swagger-ui/LICENSE), from the npm package swagger-ui-dist.
async fn bundle() -> Response {
    asset(
        include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js"),
        "text/javascript; charset=utf-8",
    )
}

async fn css() -> Response {
    asset(
        include_bytes!("../assets/swagger-ui/swagger-ui.css"),
        "text/css; charset=utf-8",
    )
}

/// A user's role.
#[derive(Debug, ToSchema)]
#[schema(as = Role)]
#[allow(dead_code)]
#[serde(rename_all = "snake_case")]
pub enum RoleDoc {
    Admin,
    Staff,
    Viewer,
    System,
    Auditor,
}

/// An error (RFC 9457), with a stable machine-readable `code`.
/// A US address as the practice routes take it.
#[derive(Debug, ToSchema)]
#[schema(as = Address)]
#[allow(dead_code)]
pub struct AddressDoc {
    street: String,
    city: String,
    /// US state code.
    #[schema(example = "TX")]
    state: String,
    /// 12345 or 12345-6789.
    #[schema(example = "78701")]
    zip: String,
}

/// A practice's details (create and update).
#[derive(Debug, ToSchema)]
#[schema(as = PracticeDetails)]
#[allow(dead_code)]
pub struct PracticeDetailsDoc {
    /// Unique (case and spacing aside); cannot change except in spelling.
    name: String,
    /// solo, group, hospital or clinic.
    kind: String,
    specialty: String,
    address: AddressDoc,
    /// 10 US digits; punctuation and a leading 1 / +1 are accepted.
    #[schema(example = "(512) 555-0100")]
    phone: String,
    email: String,
    /// 10 digits with a valid check digit.
    #[schema(example = "1234567893")]
    npi: String,
    /// 9 digits, with or without the dash.
    #[schema(example = "12-3456789")]
    ein: String,
}

#[derive(Debug, ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)]
pub struct ProblemDoc {
    #[schema(
        rename = "type",
        example = "https://caseledger.dev/problems/invalid_cursor"
    )]
    kind: String,
    #[schema(example = "Bad request")]
    title: String,
    #[schema(example = 400)]
    status: u16,
    detail: String,
    #[schema(example = "invalid_cursor")]
    code: String,
}

/// Who did it and why.
#[derive(Debug, ToSchema)]
#[schema(as = Metadata)]
#[allow(dead_code)]
pub struct MetadataDoc {
    actor: String,
    command_id: Option<Uuid>,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
}

/// An event as stored (after upcasting). `cursor` is its place in the global read order,
/// written `TRANSACTION-POSITION`.
#[derive(Debug, ToSchema)]
#[schema(as = RecordedEvent)]
#[allow(dead_code)]
pub struct RecordedEventDoc {
    #[schema(example = "812-40")]
    cursor: String,
    stream_id: Uuid,
    stream_type: String,
    version: u64,
    event_type: String,
    schema_version: u32,
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    metadata: MetadataDoc,
    recorded_at: DateTime<Utc>,
}

#[derive(Debug, ToSchema)]
#[schema(as = EventPage)]
#[allow(dead_code)]
pub struct EventPageDoc {
    events: Vec<RecordedEventDoc>,
    /// Pass as `after` for the next page; absent when the page reached the readable end.
    next: Option<String>,
}

/// One stream in the catalogue.
#[derive(Debug, ToSchema)]
#[schema(as = StreamEntry)]
#[allow(dead_code)]
pub struct StreamEntryDoc {
    stream_id: Uuid,
    stream_type: String,
    version: i64,
    first_event_at: DateTime<Utc>,
    last_event_at: DateTime<Utc>,
    event_count: i64,
}

#[derive(Debug, ToSchema)]
#[schema(as = StreamPage)]
#[allow(dead_code)]
pub struct StreamPageDoc {
    streams: Vec<StreamEntryDoc>,
    next: Option<Uuid>,
}

/// A projection's state, as operators see it.
#[derive(Debug, ToSchema)]
#[schema(as = ProjectionStatus)]
#[allow(dead_code)]
pub struct ProjectionStatusDoc {
    name: String,
    checkpoint: String,
    head: String,
    lag_events: i64,
    lag_seconds: f64,
    /// stopped, catching_up, live, failed or rebuilding.
    state: String,
    last_error: Option<String>,
    last_error_position: Option<i64>,
    failing_since: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}
