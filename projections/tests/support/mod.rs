//! Specifications for read models: given these typed domain events in the log, once the
//! projection has caught up through its runtime, then these rows.
//!
//! ```ignore
//! let pool = ReadModelSpec::new(pool, CredentialingModel)
//!     .given::<Renewal>(renewal_id, [initiated, started, filed])
//!     .await?
//!     .projected()
//!     .await?;
//! let (rows, _) = credentialing::list_renewals(&pool, &query).await?;
//! ```
//!
//! Events are encoded with `eventstore::codec` exactly as the command side stores them, and the
//! projection runs through `runtime::run`, as the server runs it, never by calling `apply`
//! directly. [`ReadModelSpec::projected`] also checks that the live rows equal a rebuild from
//! position zero, so every spec checks as well that the projection is deterministic.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use domain::Aggregate;
use eventstore::{codec, EventStore, ExpectedVersion, Metadata};
use projections::runtime::{self, RuntimeConfig};
use projections::{rebuild, wait, Projection};
use sqlx::PgPool;
use uuid::Uuid;

/// Long enough for a slow shared machine; a spec that waits this long has a stuck projection.
const CATCH_UP: Duration = Duration::from_secs(30);

/// One read model, a log being written for it, and (once projected) its rows.
pub struct ReadModelSpec {
    store: EventStore,
    projection: Arc<dyn Projection>,
}

impl ReadModelSpec {
    /// A spec of `projection` on a fresh database (a `#[sqlx::test]` pool, migrated).
    pub fn new(pool: PgPool, projection: impl Projection) -> Self {
        Self {
            store: EventStore::new(pool),
            projection: Arc::new(projection),
        }
    }

    /// Appends `events` to the stream `stream_id` of aggregate `A`, as `user:spec`.
    pub async fn given<A: Aggregate>(
        self,
        stream_id: Uuid,
        events: impl IntoIterator<Item = A::Event>,
    ) -> anyhow::Result<Self> {
        self.given_by::<A>("user:spec", stream_id, events).await
    }

    /// Appends `events` to the stream `stream_id` of aggregate `A`, issued by `actor`
    /// (`user:NAME`, `job:NAME`), which some models record.
    pub async fn given_by<A: Aggregate>(
        self,
        actor: &str,
        stream_id: Uuid,
        events: impl IntoIterator<Item = A::Event>,
    ) -> anyhow::Result<Self> {
        let encoded = events
            .into_iter()
            .map(|e| codec::encode::<A>(&e))
            .collect::<Result<Vec<_>, _>>()
            .context("encoding the given events")?;
        self.store
            .append(
                stream_id,
                A::STREAM_TYPE,
                ExpectedVersion::Any,
                &encoded,
                &Metadata::by(actor),
            )
            .await
            .with_context(|| format!("appending to {} {stream_id}", A::STREAM_TYPE))?;
        Ok(self)
    }

    /// Runs the projection until it has applied every given event, stops it, checks that its
    /// rows equal a rebuild from zero, and hands back the pool to query the rows with.
    pub async fn projected(self) -> anyhow::Result<PgPool> {
        let name = self.projection.name();
        let runner = tokio::spawn(runtime::run(
            self.store.clone(),
            self.projection.clone(),
            config(),
        ));
        let caught_up = wait::until_caught_up(&self.store, &[name], CATCH_UP).await;
        runner.abort();
        caught_up.with_context(|| format!("{name} did not catch up"))?;
        let report = rebuild::verify(&self.store, self.projection.as_ref(), 100, |_| {})
            .await
            .with_context(|| format!("verifying {name} against a rebuild"))?;
        anyhow::ensure!(
            report.equal,
            "{name}'s live rows differ from a rebuild: {report:?}"
        );
        Ok(self.store.pool().clone())
    }
}

fn config() -> RuntimeConfig {
    RuntimeConfig {
        page_size: 50,
        poll_interval: Duration::from_millis(20),
        standby_retry: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    }
}
