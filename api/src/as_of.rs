//! Any aggregate's state as of a time or a version, rebuilt from its events: the auditors'
//! "what did the system know then". Each aggregate's read route takes `as_of` (RFC 3339) or
//! `as_of_version`; without either, the current state.

use chrono::{DateTime, Utc};
use domain::Aggregate;
use eventstore::{codec, EventStore, StoreError};
use uuid::Uuid;

use crate::error::ApiError;

/// The `as_of` / `as_of_version` query parameters.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOfQuery {
    /// An RFC 3339 time: the state after every event recorded at or before it.
    pub as_of: Option<String>,
    /// A stream version (1, 2, ...): the state after that event.
    pub as_of_version: Option<String>,
}

impl AsOfQuery {
    pub fn at(&self) -> Result<AsOf, ApiError> {
        AsOf::parse(self.as_of.as_deref(), self.as_of_version.as_deref())
    }
}

/// The point in a stream's history to rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    Now,
    /// After the event with this stream version.
    Version(u64),
    /// After every event recorded at or before this time.
    Time(DateTime<Utc>),
}

impl AsOf {
    /// From the `as_of` and `as_of_version` query parameters (at most one of them).
    pub fn parse(as_of: Option<&str>, as_of_version: Option<&str>) -> Result<Self, ApiError> {
        match (as_of, as_of_version) {
            (Some(_), Some(_)) => Err(ApiError::BadQuery(
                "give as_of or as_of_version, not both".into(),
            )),
            (Some(t), None) => DateTime::parse_from_rfc3339(t)
                .map(|t| AsOf::Time(t.with_timezone(&Utc)))
                .map_err(|_| ApiError::BadQuery(format!("as_of: {t:?} is not an RFC 3339 time"))),
            (None, Some(v)) => v
                .parse::<u64>()
                .ok()
                .filter(|v| *v > 0)
                .map(AsOf::Version)
                .ok_or_else(|| {
                    ApiError::BadQuery(format!("as_of_version: {v:?} is not a version (1, 2, ...)"))
                }),
            (None, None) => Ok(AsOf::Now),
        }
    }
}

/// The aggregate's version and state at `at`. `StreamNotFound` when the stream does not exist
/// (or did not exist yet at that time).
pub async fn state<A: Aggregate>(
    store: &EventStore,
    stream_id: Uuid,
    at: AsOf,
) -> Result<(u64, A), ApiError> {
    let events = store.read_stream(stream_id, 0).await?;
    let mut state = A::default();
    let mut version = 0;
    for recorded in &events {
        if recorded.stream_type != A::STREAM_TYPE {
            return Err(StoreError::StreamNotFound { stream_id }.into());
        }
        let included = match at {
            AsOf::Now => true,
            AsOf::Version(v) => recorded.version <= v,
            AsOf::Time(t) => recorded.recorded_at <= t,
        };
        if !included {
            break;
        }
        state = state.evolve(&codec::decode::<A>(recorded).map_err(ApiError::internal)?);
        version = recorded.version;
    }
    if version == 0 {
        return Err(StoreError::StreamNotFound { stream_id }.into());
    }
    Ok((version, state))
}
