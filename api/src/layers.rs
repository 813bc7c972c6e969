//! The tower layers around every route, and their settings.

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{BoxError, Router};
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::{ApiError, Problem};

/// Settings of the HTTP layers; part of [`crate::config::Config`].
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct HttpConfig {
    /// Seconds a request may take before it is answered with a timeout (streamed bodies may go
    /// on longer).
    #[arg(
        id = "request_timeout_secs",
        long = "request-timeout-secs",
        value_name = "SECONDS",
        env = "CASELEDGER_REQUEST_TIMEOUT_SECS",
        default_value = "30",
        value_parser = crate::config::parse_seconds
    )]
    pub timeout: Duration,
    /// Largest request body accepted, in bytes.
    #[arg(
        id = "body_limit_bytes",
        long = "body-limit-bytes",
        value_name = "BYTES",
        env = "CASELEDGER_BODY_LIMIT_BYTES",
        default_value_t = 1024 * 1024
    )]
    pub body_limit: usize,
    /// Browser origins allowed to call the API (comma-separated); none = same-origin only.
    #[arg(
        long,
        env = "CASELEDGER_CORS_ORIGINS",
        default_value = "",
        hide_default_value = true,
        value_parser = parse_origins
    )]
    pub cors_origins: Origins,
}

/// Browser origins allowed to call the API; none means same-origin only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origins(pub Vec<HeaderValue>);

/// Comma-separated origins; empty entries are ignored, so an empty value means none.
fn parse_origins(value: &str) -> Result<Origins, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            HeaderValue::from_str(o)
                .map_err(|_| format!("CORS origin {o:?} is not a valid header value"))
        })
        .collect::<Result<_, _>>()
        .map(Origins)
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            body_limit: 1024 * 1024,
            cors_origins: Origins::default(),
        }
    }
}

pub fn wrap(routes: Router, http: &HttpConfig) -> Router {
    let timeout = http.timeout;
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(http.cors_origins.0.clone()))
        .allow_methods(tower_http::cors::Any)
        .allow_headers(tower_http::cors::Any)
        .expose_headers([header::HeaderName::from_static("x-request-id")]);
    routes.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
            }))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(cors)
            .layer(axum::middleware::map_response(problem_for_bare_errors))
            .layer(HandleErrorLayer::new(move |error: BoxError| async move {
                if error.is::<tower::timeout::error::Elapsed>() {
                    ApiError::Timeout(timeout)
                } else {
                    ApiError::internal(error)
                }
            }))
            .layer(tower::timeout::TimeoutLayer::new(timeout))
            .layer(DefaultBodyLimit::max(http.body_limit)),
    )
}

/// Turns an error response that is not yet a problem document (axum's own rejections, a
/// layer's refusal) into one, so that clients meet one error format everywhere.
async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (code, title, detail) = match status {
        StatusCode::BAD_REQUEST => (
            "bad_request",
            "Bad request",
            "the request could not be read",
        ),
        StatusCode::UNAUTHORIZED => ("unauthorized", "Unauthorized", "authentication is required"),
        StatusCode::FORBIDDEN => ("forbidden", "Forbidden", "this role may not do that"),
        StatusCode::NOT_FOUND => ("not_found", "Not found", "no such resource"),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "Payload too large",
            "the request body is larger than allowed",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "Unsupported media type",
            "send the body as application/json",
        ),
        StatusCode::UNPROCESSABLE_ENTITY => (
            "invalid_body",
            "Invalid request",
            "the body does not have the expected shape",
        ),
        StatusCode::TOO_MANY_REQUESTS => (
            "rate_limited",
            "Too many requests",
            "slow down and retry later",
        ),
        s if s.is_server_error() => (
            "internal",
            "Internal error",
            "something went wrong on our side; it has been logged",
        ),
        _ => ("bad_request", "Bad request", "the request was refused"),
    };
    // Keep the original headers (Allow on a 405, say); replace the body and its type.
    let (mut parts, _) = response.into_parts();
    let (problem_parts, body) = Problem::new(status, code, title, detail)
        .into_response()
        .into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(problem_parts.headers);
    Response::from_parts(parts, body)
}
