//! The auditor's view of the log: pages of the global log, one stream's history, a live
//! Server-Sent-Events feed resumable with `Last-Event-ID`, and an NDJSON export that streams in
//! constant memory.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use eventstore::{Cursor, EventFilter, FollowOptions, RecordedEvent, StoreError};

use crate::error::ApiError;
use crate::permissions::AUDITORS;
use crate::AppState;

use super::{routes, Routes};

pub fn routes() -> Routes {
    Routes::new()
        .route(AUDITORS, routes!(page))
        .route(AUDITORS, routes!(live))
        .route(AUDITORS, routes!(export))
        .route(AUDITORS, routes!(stream_history))
}

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1_000;
/// Events per query while exporting; bounds the server's memory whatever the log's size.
const EXPORT_PAGE: i64 = 1_000;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FeedQuery {
    after: Option<String>,
    limit: Option<String>,
    stream_type: Option<String>,
    event_type: Option<String>,
    actor: Option<String>,
    from: Option<String>,
    to: Option<String>,
    until: Option<String>,
}

fn bad(what: &str, value: &str, expected: &str) -> ApiError {
    ApiError::BadQuery(format!(
        "{what}: {:?} is not {expected}",
        value.chars().take(64).collect::<String>()
    ))
}

impl FeedQuery {
    fn after(&self) -> Result<Cursor, ApiError> {
        Ok(self
            .after
            .as_deref()
            .map(str::parse)
            .transpose()?
            .unwrap_or(Cursor::START))
    }

    fn limit(&self) -> Result<i64, ApiError> {
        match self.limit.as_deref() {
            None => Ok(DEFAULT_LIMIT),
            Some(l) => l
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| bad("limit", l, "a number from 1 to 1000")),
        }
    }

    fn filter(&self) -> Result<EventFilter, ApiError> {
        let time = |name: &str, v: &Option<String>| -> Result<Option<DateTime<Utc>>, ApiError> {
            v.as_deref()
                .map(|t| {
                    DateTime::parse_from_rfc3339(t)
                        .map(|d| d.with_timezone(&Utc))
                        .map_err(|_| bad(name, t, "an RFC 3339 time"))
                })
                .transpose()
        };
        Ok(EventFilter {
            stream_type: self.stream_type.clone(),
            event_type: self.event_type.clone(),
            actor: self.actor.clone(),
            from: time("from", &self.from)?,
            to: time("to", &self.to)?,
        })
    }
}

fn query(q: Result<Query<FeedQuery>, QueryRejection>) -> Result<FeedQuery, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::BadQuery(e.body_text()))
}

#[derive(Debug, Serialize)]
pub(crate) struct EventPage {
    events: Vec<RecordedEvent>,
    /// Pass as `after` for the next page; absent when this page reached the readable end.
    next: Option<Cursor>,
}

/// `GET /events`: a page of the global log in read order, optionally filtered.
#[utoipa::path(get, path = "/events", tag = "events", security(("bearer" = [])),
    params(FeedQuery),
    responses((status = 200, description = "A page of the log in read order", body = crate::openapi::EventPageDoc),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 401, body = crate::openapi::ProblemDoc), (status = 403, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn page(
    State(state): State<AppState>,
    q: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Json<EventPage>, ApiError> {
    let q = query(q)?;
    let (after, limit, filter) = (q.after()?, q.limit()?, q.filter()?);
    let events = state
        .store
        .read_filtered(after, None, &filter, limit)
        .await?;
    let next = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.cursor))
        .flatten();
    Ok(Json(EventPage { events, next }))
}

/// `GET /streams/{id}/events`: one stream's whole history, in stream order.
#[utoipa::path(get, path = "/streams/{id}/events", tag = "events", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Stream id")),
    responses((status = 200, description = "The stream's events in stream order", body = [crate::openapi::RecordedEventDoc]),
        (status = 400, body = crate::openapi::ProblemDoc), (status = 404, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn stream_history(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<RecordedEvent>>, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::BadPath(e.body_text()))?;
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::BadPath(format!("{id:?} is not a stream id")))?;
    Ok(Json(state.store.read_stream(id, 0).await?))
}

/// `GET /events/stream`: Server-Sent Events, from `after` (or the `Last-Event-ID` header a
/// reconnecting client sends) through the present and on, live. Each event's SSE id is its
/// cursor, so a client that reconnects resumes exactly where it stopped.
#[utoipa::path(get, path = "/events/stream", tag = "events", security(("bearer" = [])),
    params(FeedQuery, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this cursor")),
    responses((status = 200, description = "Server-Sent Events: each event's id is its cursor, its data the event as JSON", content_type = "text/event-stream", body = String),
        (status = 400, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn live(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let q = query(q)?;
    let resume = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("\u{fffd}").parse::<Cursor>());
    let after = match resume {
        Some(cursor) => cursor?,
        None => q.after()?,
    };
    let filter = q.filter()?;
    let mut shutting_down = state.shutting_down.subscribe();
    let events = state
        .store
        .follow(after, FollowOptions::default())
        // Ends the feed when the server shuts down; the client reconnects elsewhere with
        // Last-Event-ID.
        .take_until(async move {
            let _ = shutting_down.wait_for(|stopping| *stopping).await;
        });
    let stream = events
        .filter(move |e| {
            let keep = match e {
                Ok(e) => matches(&filter, e),
                Err(_) => true,
            };
            std::future::ready(keep)
        })
        // An error ends the feed; the client reconnects with Last-Event-ID and resumes.
        .take_while(|e| std::future::ready(e.is_ok()))
        .filter_map(|e| std::future::ready(e.ok()))
        .map(|e| {
            let data = serde_json::to_string(&e).unwrap_or_default();
            Ok(SseEvent::default().id(e.cursor.to_string()).data(data))
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn matches(filter: &EventFilter, e: &RecordedEvent) -> bool {
    filter
        .stream_type
        .as_ref()
        .is_none_or(|t| *t == e.stream_type)
        && filter
            .event_type
            .as_ref()
            .is_none_or(|t| *t == e.event_type)
        && filter.actor.as_ref().is_none_or(|a| *a == e.metadata.actor)
        && filter.from.is_none_or(|f| e.recorded_at >= f)
        && filter.to.is_none_or(|t| e.recorded_at < t)
}

/// `GET /events/export`: the log from `after` up to `until` (default: the head when the request
/// arrived) as newline-delimited JSON, streamed a page at a time.
#[utoipa::path(get, path = "/events/export", tag = "events", security(("bearer" = [])),
    params(FeedQuery),
    responses((status = 200, description = "One event as JSON per line, up to `until` (default: the head)", content_type = "application/x-ndjson", body = String),
        (status = 400, body = crate::openapi::ProblemDoc)))]
pub(crate) async fn export(
    State(state): State<AppState>,
    q: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let (after, filter) = (q.after()?, q.filter()?);
    let until = match q.until.as_deref() {
        Some(u) => u.parse::<Cursor>()?,
        None => state.store.head().await?,
    };
    let store = state.store.clone();
    let body = async_stream::stream! {
        let mut at = after;
        loop {
            let page = match store.read_filtered(at, Some(until), &filter, EXPORT_PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    // Headers are gone; all we can do is stop, and log why.
                    tracing::error!(%error, "export stopped");
                    yield Err::<Bytes, StoreError>(error);
                    break;
                }
            };
            let Some(last) = page.last().map(|e| e.cursor) else { break };
            at = last;
            let mut chunk = Vec::with_capacity(page.len() * 256);
            for e in &page {
                if serde_json::to_writer(&mut chunk, e).is_ok() {
                    chunk.push(b'\n');
                }
            }
            yield Ok(Bytes::from(chunk));
        }
    };
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}
