//! Extractors whose rejections are problem documents, the caller's address, and the one check
//! of text parameters every route gets ([`refuse_nul`]).

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `axum::Json`, with malformed JSON (400), a wrong content type (415), an oversized body (413)
/// and a body of the wrong shape (422) answered as problem documents.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(match &rejection {
                JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
                JsonRejection::JsonSyntaxError(_) => ApiError::MalformedJson(rejection.body_text()),
                JsonRejection::JsonDataError(_) => ApiError::BadBody(rejection.body_text()),
                JsonRejection::BytesRejection(_) => ApiError::PayloadTooLarge,
                _ => ApiError::MalformedJson(rejection.body_text()),
            }),
        }
    }
}

/// The client's IP address, when the server knows it (not under `oneshot`).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}

/// Answers 422 `invalid_text`, naming the parameter, when a query or path parameter holds a NUL
/// character, before any handler runs. PostgreSQL cannot store or compare a NUL in text, so such
/// a value handed to a query fails there as a server error (or, in a streamed export, cuts the
/// stream); no value with one is meaningful anywhere in the API. Mounted as a route layer inside
/// the permission guard, so the caller's access is checked first.
pub async fn refuse_nul(request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    if let Some(parameter) = nul_parameter(&mut parts).await {
        return ApiError::InvalidText { parameter }.into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// The first query or path parameter (by name) whose name or decoded value has a NUL.
async fn nul_parameter(parts: &mut Parts) -> Option<String> {
    let named = |name: &str| name.replace('\0', "\\0");
    // A query that does not decode is left to the handler's own extractor to refuse.
    if let Ok(axum::extract::Query(pairs)) =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
    {
        if let Some((name, _)) = pairs
            .iter()
            .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Some(named(name));
        }
    }
    let params = RawPathParams::from_request_parts(parts, &()).await.ok()?;
    let found = params
        .iter()
        .find(|(_, value)| value.contains('\0'))
        .map(|(name, _)| named(name));
    found
}

/// A UUID path segment, with a 400 naming it when it is not one.
pub fn path_id(
    path: Result<axum::extract::Path<uuid::Uuid>, axum::extract::rejection::PathRejection>,
) -> Result<uuid::Uuid, ApiError> {
    path.map(|axum::extract::Path(id)| id)
        .map_err(|e| ApiError::BadPath(e.body_text()))
}

/// A query string, with a 400 naming the parameter when it does not parse.
pub fn query<T>(
    query: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    query
        .map(|axum::extract::Query(q)| q)
        .map_err(|e| ApiError::BadQuery(e.body_text()))
}

/// What a command answers: the stream it changed, its version, and the cursor to pass as
/// `min_cursor` to read your own write.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CommandDone {
    pub id: uuid::Uuid,
    pub version: u64,
    /// Read-order cursor of the last event written; absent when nothing was written.
    pub cursor: Option<String>,
}

impl<E> From<commands::CommandOutcome<E>> for CommandDone {
    fn from(outcome: commands::CommandOutcome<E>) -> Self {
        CommandDone::new(outcome.stream_id, outcome.version, outcome.cursor)
    }
}

impl CommandDone {
    pub fn new(id: uuid::Uuid, version: u64, cursor: Option<eventstore::Cursor>) -> Self {
        Self {
            id,
            version,
            cursor: cursor.map(|c| c.to_string()),
        }
    }
}

/// The longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

/// The request's `Idempotency-Key` header, if any: 1 to 128 visible ASCII characters. A
/// command that takes one derives its new stream's id from it (and the caller), so a retry
/// lands on what the first request created.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(commands::notifications::IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_CHARS)
        .ok_or(ApiError::InvalidField {
            field: "idempotency-key",
            reason: format!("give 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters"),
        })?;
    Ok(Some(key.to_owned()))
}

/// The id of what a creating request makes: with an `Idempotency-Key`, the same id for every
/// retry by the same `scope` (the caller, and whatever else the key is unique within), so a
/// retry lands on what the first request created; without one, a fresh id.
pub fn id_for_request(
    headers: &axum::http::HeaderMap,
    namespace: &uuid::Uuid,
    scope: &str,
) -> Result<uuid::Uuid, ApiError> {
    Ok(match idempotency_key(headers)? {
        Some(key) => uuid::Uuid::new_v5(namespace, format!("{scope}\n{key}").as_bytes()),
        None => uuid::Uuid::new_v4(),
    })
}
