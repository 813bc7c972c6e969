//! `caseledger-tools bench append`: the event store's append benchmark.
//!
//! Every figure is measured against a baseline taken in the same run, because this kind of
//! machine is shared and noisy: the ceiling is plain single-row INSERTs into a table with the
//! same columns and indexes as `events`, over the same number of connections. One-event appends
//! are also measured with the log's sealer running beside them, as it does in every server. Each scenario runs
//! for a fixed time per run; the report gives the median over runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use commands::{CommandHandler, SystemClock};
use domain::Aggregate;
use eventstore::{EventStore, ExpectedVersion, Metadata, NewEvent, StoreError};

use super::{fresh_database, median, ms, percentile};
use api::db::Database;

/// Settings of one benchmark invocation.
#[derive(Debug, Clone)]
pub struct AppendBench {
    /// How long each scenario runs per run and writer count.
    pub seconds: f64,
    /// Runs; medians are taken over them.
    pub runs: usize,
    /// Concurrent writer counts to measure.
    pub writers: Vec<usize>,
    /// Length the hot aggregate's stream grows to.
    pub hot_events: u64,
}

/// Latencies and counts of one scenario run.
#[derive(Debug, Clone, Default)]
struct Sample {
    events: u64,
    attempts: u64,
    conflicts: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Sample {
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }
    fn conflict_rate(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.conflicts as f64 / self.attempts as f64
        }
    }
}

/// What one writer's operation reports: events written, attempts made, conflicts met.
type OpResult = anyhow::Result<(u64, u64, u64)>;

/// Runs `op` from `writers` concurrent tasks for `seconds`, timing each call.
async fn measure<F, Fut>(writers: usize, seconds: f64, op: F) -> anyhow::Result<Sample>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = OpResult> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Sample::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                let (events, attempts, conflicts) = op(w).await?;
                s.latencies.push(t.elapsed());
                s.events += events;
                s.attempts += attempts;
                s.conflicts += conflicts;
            }
            anyhow::Ok(s)
        }));
    }
    let mut total = Sample::default();
    for task in tasks {
        let s = task.await.context("benchmark writer panicked")??;
        total.events += s.events;
        total.attempts += s.attempts;
        total.conflicts += s.conflicts;
        total.latencies.extend(s.latencies);
    }
    total.elapsed = start.elapsed();
    total.latencies.sort_unstable();
    Ok(total)
}

fn bench_metadata() -> Metadata {
    Metadata::by("bench")
}

fn payload() -> serde_json::Value {
    json!({"credential_id": Uuid::nil(), "note": "benchmark event with a realistic small payload", "days": 90})
}

/// A counter: the smallest aggregate with a real decision (it refuses to overflow).
#[derive(Debug, Clone, Default)]
pub struct Counter {
    total: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", content = "data")]
pub enum CounterCommand {
    Add { amount: i64 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum CounterEvent {
    Added { amount: i64, total: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    #[error("adding {amount} to {total} overflows")]
    Overflow { amount: i64, total: i64 },
}

impl domain::refusal::Refusal for CounterError {
    fn kind(&self) -> domain::refusal::ErrorKind {
        domain::refusal::ErrorKind::Conflict
    }

    fn code(&self) -> &'static str {
        "counter_overflow"
    }
}

impl Aggregate for Counter {
    const STREAM_TYPE: &'static str = "bench_counter";
    type Command = CounterCommand;
    type Event = CounterEvent;
    type Error = CounterError;

    fn decide(
        &self,
        command: &CounterCommand,
        _now: DateTime<Utc>,
    ) -> Result<Vec<CounterEvent>, CounterError> {
        let CounterCommand::Add { amount } = *command;
        let total = self
            .total
            .checked_add(amount)
            .ok_or(CounterError::Overflow {
                amount,
                total: self.total,
            })?;
        Ok(vec![CounterEvent::Added { amount, total }])
    }

    fn evolve(self, event: &CounterEvent) -> Self {
        let CounterEvent::Added { total, .. } = *event;
        Counter { total }
    }
}

const CEILING_INSERT: &str = "INSERT INTO bench_ceiling (stream_id, stream_type, version, event_type, schema_version, payload, \
     actor, command_id, correlation_id, causation_id) VALUES ($1, 'bench', 1, 'Happened', 1, $2, 'bench', NULL, $3, NULL)";

async fn append_one(store: EventStore, batch: usize) -> OpResult {
    let events: Vec<NewEvent> = (0..batch)
        .map(|_| NewEvent::new("Happened", payload()))
        .collect();
    store
        .append(
            Uuid::new_v4(),
            "bench",
            ExpectedVersion::NoStream,
            &events,
            &bench_metadata(),
        )
        .await?;
    Ok((batch as u64, 1, 0))
}

async fn append_contended(store: EventStore, stream: Uuid) -> OpResult {
    let events = [NewEvent::new("Happened", payload())];
    let mut attempts = 0;
    loop {
        attempts += 1;
        let version = store.stream_version(stream).await?;
        match store
            .append(
                stream,
                "bench",
                ExpectedVersion::Exact(version),
                &events,
                &bench_metadata(),
            )
            .await
        {
            Ok(_) => return Ok((1, attempts, attempts - 1)),
            Err(StoreError::WrongExpectedVersion { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

async fn command_on(handler: Arc<CommandHandler<Counter>>, stream: Uuid) -> OpResult {
    let before = handler.conflicts();
    handler
        .handle(
            stream,
            &CounterCommand::Add { amount: 1 },
            &bench_metadata(),
        )
        .await?;
    let conflicts = handler.conflicts() - before;
    Ok((1, 1 + conflicts, conflicts))
}

/// Medians over runs of one scenario at one writer count.
fn summarize(name: &str, writers: usize, samples: &[Sample]) -> String {
    let rate = median(samples.iter().map(Sample::events_per_sec).collect());
    let p50 = median(samples.iter().map(|s| ms(s.percentile(0.5))).collect());
    let p99 = median(samples.iter().map(|s| ms(s.percentile(0.99))).collect());
    let conflicts = median(samples.iter().map(Sample::conflict_rate).collect());
    format!(
        "| {name} | {writers} | {rate:.0} | {p50:.2} | {p99:.2} | {:.1} % |",
        conflicts * 100.0
    )
}

pub async fn run(db: &Database, opts: &AppendBench) -> anyhow::Result<()> {
    let pool = fresh_database(db, "caseledger_bench").await?;
    sqlx::query("CREATE TABLE bench_ceiling (LIKE events INCLUDING ALL)")
        .execute(&pool)
        .await
        .context("creating the ceiling table")?;
    let store = EventStore::new(pool.clone());
    println!(
        "caseledger bench append: {} run(s) x {:.1} s per scenario, writers {:?}\n",
        opts.runs, opts.seconds, opts.writers
    );

    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for &writers in &opts.writers {
        let mut ceiling = Vec::new();
        let mut single = Vec::new();
        let mut batch = Vec::new();
        let mut one_stream = Vec::new();
        let mut sealed = Vec::new();
        let mut run_ratios = Vec::new();
        for _ in 0..opts.runs {
            // Ceiling and appends back to back in each run, so both see the same machine.
            let p = pool.clone();
            let c = measure(writers, opts.seconds, move |_| {
                let p = p.clone();
                async move {
                    sqlx::query(CEILING_INSERT)
                        .bind(Uuid::new_v4())
                        .bind(payload())
                        .bind(Uuid::new_v4())
                        .execute(&p)
                        .await?;
                    Ok((1, 1, 0))
                }
            })
            .await?;
            let s = store.clone();
            let a = measure(writers, opts.seconds, move |_| append_one(s.clone(), 1)).await?;
            run_ratios.push(a.events_per_sec() / c.events_per_sec().max(1e-9));
            ceiling.push(c);
            single.push(a);
            // The same with the log's sealer hashing behind the head, as in every server: the
            // chain must not cost the writers their rate.
            let sealer = eventstore::seal::Sealer::new(store.clone()).spawn();
            let s = store.clone();
            let with_sealer =
                measure(writers, opts.seconds, move |_| append_one(s.clone(), 1)).await;
            sealer.abort();
            sealed.push(with_sealer?);
            let s = store.clone();
            batch.push(measure(writers, opts.seconds, move |_| append_one(s.clone(), 10)).await?);
            let s = store.clone();
            let stream = Uuid::new_v4();
            one_stream.push(
                measure(writers, opts.seconds, move |_| {
                    append_contended(s.clone(), stream)
                })
                .await?,
            );
        }
        let ratio = median(run_ratios.clone());
        ratios.push((writers, ratio, run_ratios));
        rows.push(summarize("ceiling: plain INSERT, 1 row", writers, &ceiling));
        rows.push(summarize("append 1 event, new stream", writers, &single));
        rows.push(summarize(
            "append 1 event, new stream, sealer running",
            writers,
            &sealed,
        ));
        rows.push(summarize(
            "append 10-event batch, new stream",
            writers,
            &batch,
        ));
        rows.push(summarize(
            "append 1 event, one shared stream",
            writers,
            &one_stream,
        ));
    }

    println!("| scenario | writers | events/s | p50 ms | p99 ms | conflicts |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for row in &rows {
        println!("{row}");
    }
    println!("\n| writers | one-event appends / ceiling (median) | per run |");
    println!("| ---: | ---: | --- |");
    for (writers, ratio, runs) in &ratios {
        let per_run: Vec<String> = runs.iter().map(|r| format!("{:.0} %", r * 100.0)).collect();
        println!(
            "| {writers} | {:.0} % | {} |",
            ratio * 100.0,
            per_run.join(", ")
        );
    }

    commands_bench(&store, opts).await?;
    pool.close().await;
    super::drop_database(db, "caseledger_bench").await
}

/// Whole commands (load, decide, append) at the largest writer count.
async fn commands_bench(store: &EventStore, opts: &AppendBench) -> anyhow::Result<()> {
    let writers = opts.writers.iter().copied().max().unwrap_or(16);
    println!("\nWhole commands (load, decide, append), {writers} writers:\n");
    println!("| scenario | commands/s | p50 ms | p99 ms | conflicts |");
    println!("| --- | ---: | ---: | ---: | ---: |");

    let mut distinct = Vec::new();
    for _ in 0..opts.runs {
        let handler = Arc::new(CommandHandler::<Counter>::new(
            store.clone(),
            Arc::new(SystemClock),
        ));
        let streams: Arc<Vec<Uuid>> = Arc::new((0..writers).map(|_| Uuid::new_v4()).collect());
        distinct.push(
            measure(writers, opts.seconds, move |w| {
                command_on(handler.clone(), streams[w])
            })
            .await?,
        );
    }
    let line = summarize("distinct aggregates, one per writer", writers, &distinct);
    println!("{}", drop_writers_column(&line));

    for processes in [1usize, 2] {
        let mut samples = Vec::new();
        let mut growth = Vec::new();
        for _ in 0..opts.runs {
            let (sample, first, last) =
                hot_aggregate(store, writers, processes, opts.hot_events).await?;
            samples.push(sample);
            growth.push((first, last));
        }
        let label = if processes == 1 {
            format!(
                "one hot aggregate to {} events, one process",
                opts.hot_events
            )
        } else {
            format!(
                "one hot aggregate to {} events, {processes} processes",
                opts.hot_events
            )
        };
        println!(
            "{}",
            drop_writers_column(&summarize(&label, writers, &samples))
        );
        let first = median(growth.iter().map(|g| g.0).collect());
        let last = median(growth.iter().map(|g| g.1).collect());
        println!(
            "|   ↳ first 1,000 commands {first:.0}/s, last 1,000 commands {last:.0}/s (last/first {:.2}) | | | | |",
            last / first.max(1e-9)
        );
    }
    Ok(())
}

fn drop_writers_column(row: &str) -> String {
    let mut cells: Vec<&str> = row.split('|').collect();
    if cells.len() > 3 {
        cells.remove(2);
    }
    cells.join("|")
}

/// Grows one stream to `events` events from `writers` writers spread over `processes`
/// independent handlers (each as a separate server process would have). Returns the sample and
/// the command rate over the first and last 1,000 commands.
async fn hot_aggregate(
    store: &EventStore,
    writers: usize,
    processes: usize,
    events: u64,
) -> anyhow::Result<(Sample, f64, f64)> {
    let stream = Uuid::new_v4();
    let handlers: Vec<Arc<CommandHandler<Counter>>> = (0..processes)
        .map(|_| Arc::new(CommandHandler::new(store.clone(), Arc::new(SystemClock))))
        .collect();
    let issued = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let handler = handlers[w % processes].clone();
        let issued = issued.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            let mut latencies = Vec::new();
            while issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < events {
                let t = Instant::now();
                let outcome = handler
                    .handle(
                        stream,
                        &CounterCommand::Add { amount: 1 },
                        &bench_metadata(),
                    )
                    .await?;
                latencies.push(t.elapsed());
                done.push((outcome.version, start.elapsed()));
            }
            anyhow::Ok((done, latencies))
        }));
    }
    let mut finished = Vec::new();
    let mut sample = Sample::default();
    for task in tasks {
        let (done, latencies) = task.await.context("hot-aggregate writer panicked")??;
        finished.extend(done);
        sample.latencies.extend(latencies);
    }
    sample.elapsed = start.elapsed();
    sample.latencies.sort_unstable();
    sample.events = finished.len() as u64;
    sample.conflicts = handlers.iter().map(|h| h.conflicts()).sum();
    sample.attempts = sample.events + sample.conflicts;
    finished.sort_unstable();
    let window = 1_000.min(finished.len() / 2).max(1);
    let rate = |slice: &[(u64, Duration)]| {
        let span = slice
            .last()
            .map(|l| l.1)
            .unwrap_or_default()
            .saturating_sub(slice.first().map(|f| f.1).unwrap_or_default());
        slice.len() as f64 / span.as_secs_f64().max(1e-9)
    };
    let first = rate(&finished[..window.min(finished.len())]);
    let last = rate(&finished[finished.len().saturating_sub(window)..]);
    Ok((sample, first, last))
}
