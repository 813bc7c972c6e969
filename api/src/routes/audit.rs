//! The log's proof of itself, for auditors: `GET /audit/verify` recomputes the hash chain and
//! checks the signed checkpoints, `GET /audit/export` streams what was hashed for verification
//! elsewhere, `GET /audit/public-key` is the key checkpoints must be signed with.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use eventstore::Cursor;

use crate::error::ApiError;
use crate::permissions::{Access, AUDITORS};
use crate::AppState;

use super::{routes, Routes};

pub fn routes() -> Routes {
    Routes::new()
        .route(AUDITORS, routes!(verify))
        .route(AUDITORS, routes!(export))
        .route(Access::Public, routes!(public_key))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct VerifyQuery {
    /// Start at this event (a cursor such as `812-40`) instead of the start of the log,
    /// trusting the chain up to it.
    from: Option<String>,
}

/// `GET /audit/verify`: recomputes the chain and checks every checkpoint. Answers 200 whatever
/// it finds: `ok` says whether the log verified, `first_problem` what it found first.
#[utoipa::path(get, path = "/audit/verify", tag = "audit", security(("bearer" = [])),
    params(VerifyQuery),
    responses((status = 200, description = "What the verification found", body = Object),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 401, body = crate::openapi::ProblemDoc),
        (status = 403, body = crate::openapi::ProblemDoc), (status = 422, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    q: Result<Query<VerifyQuery>, QueryRejection>,
) -> Result<Json<commands::audit::VerifyReport>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    // What the sealer has not reached yet is sealed first, so that the report covers every
    // event written before the request.
    state.audit.sealer().catch_up().await?;
    let from = match q.from.as_deref() {
        None => 1,
        Some(text) => {
            let cursor: Cursor = text.parse()?;
            state
                .audit
                .seq_at(cursor)
                .await?
                .ok_or_else(|| ApiError::InvalidField {
                    field: "from",
                    reason: format!(
                        "no sealed event is at {cursor}: give the cursor of an event the chain reaches"
                    ),
                })?
        }
    };
    Ok(Json(state.audit.verify(from, |_, _| {}).await?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PublicKey {
    /// `ed25519`.
    algorithm: &'static str,
    /// The public key checkpoints are signed with, hex (32 bytes).
    public_key: String,
}

/// `GET /audit/public-key`: the key this server signs checkpoints with.
#[utoipa::path(get, path = "/audit/public-key", tag = "audit",
    responses((status = 200, description = "The checkpoint signing key's public half", body = PublicKey)))]
pub(crate) async fn public_key(State(state): State<AppState>) -> Json<PublicKey> {
    Json(PublicKey {
        algorithm: "ed25519",
        public_key: state.audit.public_key(),
    })
}

/// `GET /audit/export`: the sealed log as newline-delimited JSON, in chain order: a header line
/// (`format`, `chain_length`), then one line per event with its chain number (`seq`), its seal
/// (`hash`, hex) and the exact record hashed (`record`, a JSON text). docs/audit.md says how to
/// verify it; `tools/audit/verify_export.py` does.
#[utoipa::path(get, path = "/audit/export", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "The sealed log, one event per line", content_type = "application/x-ndjson", body = String),
        (status = 401, body = crate::openapi::ProblemDoc), (status = 403, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn export(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.audit.sealer().catch_up().await?;
    let body = futures_util::StreamExt::map(
        eventstore::seal::export(state.store.pool().clone()),
        |chunk| {
            chunk.map(Bytes::from).inspect_err(|error| {
                // Headers are gone; all we can do is stop, and log why.
                tracing::error!(%error, "audit export stopped");
            })
        },
    );
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}
