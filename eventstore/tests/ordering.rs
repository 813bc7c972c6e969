//! The global log's read order never skips an event, whatever order transactions commit in.
//! Each anomaly is reproduced deterministically with transactions the test holds open.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use eventstore::{Cursor, EventStore, ExpectedVersion, RecordedEvent};
use futures_util::StreamExt;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use support::*;
use uuid::Uuid;

/// A pool of the test's own. The harness's pools draw on 20 connections shared by every test
/// running at once; these tests hold transactions open on purpose and must never wait for one.
async fn own_pool(connect_options: PgConnectOptions, size: u32) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(120))
        .connect_with(connect_options)
        .await?)
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn an_event_committed_after_a_higher_position_is_still_read_once(
    _: PgPoolOptions,
    connect_options: PgConnectOptions,
) -> anyhow::Result<()> {
    let pool = own_pool(connect_options, 5).await?;
    let store = EventStore::new(pool.clone());
    let (stream_a, stream_b) = (Uuid::new_v4(), Uuid::new_v4());

    // A takes the lower position, B the higher one.
    let mut a = pool.begin().await?;
    let mut b = pool.begin().await?;
    let in_a = store
        .append_in(
            &mut a,
            stream_a,
            "test",
            ExpectedVersion::NoStream,
            &[event("A", 1)],
            &meta(),
        )
        .await?;
    let in_b = store
        .append_in(
            &mut b,
            stream_b,
            "test",
            ExpectedVersion::NoStream,
            &[event("B", 1)],
            &meta(),
        )
        .await?;
    let (pos_a, pos_b) = (
        in_a.cursor.map(|c| c.position),
        in_b.cursor.map(|c| c.position),
    );
    assert!(
        pos_a < pos_b,
        "A must hold the lower position: {pos_a:?} vs {pos_b:?}"
    );

    // B commits first; a reader reading now must not move past A's place.
    b.commit().await?;
    let seen_early = store.read_all(Cursor::START, 100).await?;
    assert!(
        seen_early.is_empty(),
        "B was handed out while A, before it, was still open: {seen_early:?}"
    );
    let reader_at = seen_early.last().map_or(Cursor::START, |e| e.cursor);

    a.commit().await?;
    let got = follow_n(&store, reader_at, 2, Duration::from_secs(90)).await?;
    let types: Vec<&str> = got.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["A", "B"]);
    assert_quiet(&store, got[1].cursor).await
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_rolled_back_append_leaves_a_hole_the_reader_passes(
    _: PgPoolOptions,
    connect_options: PgConnectOptions,
) -> anyhow::Result<()> {
    let pool = own_pool(connect_options, 5).await?;
    let store = EventStore::new(pool.clone());

    let mut doomed = pool.begin().await?;
    let hole = store
        .append_in(
            &mut doomed,
            Uuid::new_v4(),
            "test",
            ExpectedVersion::NoStream,
            &[event("Doomed", 1)],
            &meta(),
        )
        .await?;
    let after_hole = store
        .append(
            Uuid::new_v4(),
            "test",
            ExpectedVersion::NoStream,
            &[event("Kept", 1)],
            &meta(),
        )
        .await?;
    doomed.rollback().await?;
    assert!(hole.cursor.map(|c| c.position) < after_hole.cursor.map(|c| c.position));

    let got = follow_n(&store, Cursor::START, 1, Duration::from_secs(90)).await?;
    assert_eq!(got[0].event_type, "Kept");

    // And the reader keeps going past it.
    store
        .append(
            Uuid::new_v4(),
            "test",
            ExpectedVersion::NoStream,
            &[event("Later", 1)],
            &meta(),
        )
        .await?;
    let more = follow_n(&store, got[0].cursor, 1, Duration::from_secs(90)).await?;
    assert_eq!(more[0].event_type, "Later");
    assert_quiet(&store, more[0].cursor).await
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_long_open_transaction_delays_but_never_loses_events(
    _: PgPoolOptions,
    connect_options: PgConnectOptions,
) -> anyhow::Result<()> {
    let pool = own_pool(connect_options, 5).await?;
    let store = EventStore::new(pool.clone());

    // Any writing transaction holds an id; this one writes nothing to the log and stays open.
    let mut long = pool.begin().await?;
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *long)
        .await?;

    store
        .append(
            Uuid::new_v4(),
            "test",
            ExpectedVersion::NoStream,
            &[event("Meanwhile", 1)],
            &meta(),
        )
        .await?;
    assert!(
        store.read_all(Cursor::START, 10).await?.is_empty(),
        "read past a transaction that is still open"
    );

    let follower = {
        let store = store.clone();
        tokio::spawn(
            async move { follow_n(&store, Cursor::START, 1, Duration::from_secs(90)).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !follower.is_finished(),
        "the follower got the event while the older transaction was open"
    );

    long.commit().await?;
    let got = follower.await??;
    assert_eq!(got[0].event_type, "Meanwhile");
    assert_quiet(&store, got[0].cursor).await
}

const WRITERS: usize = 16;
const EVENTS_PER_WRITER: usize = 2_000;

/// A cheap source of scattered choices without a random-number dependency.
fn coin(n: u8) -> u8 {
    Uuid::new_v4().as_bytes()[0] % n
}

async fn write_many(store: EventStore, pool: PgPool, writer: usize) -> anyhow::Result<Vec<i64>> {
    let own = Uuid::new_v4();
    let shared = Uuid::from_u128(0x5eed);
    let mut positions = Vec::with_capacity(EVENTS_PER_WRITER);
    let mut version = 0;
    for n in 0..EVENTS_PER_WRITER {
        let e = event(&format!("W{writer}"), n as u64);
        let appended = match coin(8) {
            // Some appends race on one shared stream.
            0 => {
                store
                    .append(shared, "shared", ExpectedVersion::Any, &[e], &meta())
                    .await?
            }
            // Some hold their transaction open a moment before committing, so that commits
            // land out of position order.
            1 => {
                let mut tx = pool.begin().await?;
                let a = store
                    .append_in(
                        &mut tx,
                        own,
                        "own",
                        ExpectedVersion::Exact(version),
                        &[e],
                        &meta(),
                    )
                    .await?;
                tokio::time::sleep(Duration::from_micros(u64::from(coin(200)) * 10)).await;
                tx.commit().await?;
                version += 1;
                a
            }
            _ => {
                let a = store
                    .append(own, "own", ExpectedVersion::Exact(version), &[e], &meta())
                    .await?;
                version += 1;
                a
            }
        };
        positions.extend(appended.cursor.map(|c| c.position));
    }
    Ok(positions)
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_follower_sees_every_event_of_sixteen_concurrent_writers_exactly_once(
    _: PgPoolOptions,
    connect_options: PgConnectOptions,
) -> anyhow::Result<()> {
    let pool = own_pool(connect_options, WRITERS as u32 + 4).await?;
    let store = EventStore::new(pool.clone());
    let total = WRITERS * EVENTS_PER_WRITER;

    let follower = {
        let store = store.clone();
        tokio::spawn(async move {
            let stream = store.follow(Cursor::START, fast_follow());
            let mut stream = std::pin::pin!(stream);
            let mut seen: Vec<RecordedEvent> = Vec::with_capacity(total);
            while seen.len() < total {
                match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
                    Ok(Some(e)) => seen.push(e?),
                    _ => anyhow::bail!("follower stalled after {} of {total} events", seen.len()),
                }
            }
            anyhow::Ok(seen)
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(write_many(store.clone(), pool.clone(), w)))
        .collect();
    let mut committed = HashSet::with_capacity(total);
    for w in writers {
        committed.extend(w.await??);
    }
    let followed = follower.await??;

    let followed_positions: Vec<i64> = followed.iter().map(|e| e.cursor.position).collect();
    let distinct: HashSet<i64> = followed_positions.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        followed.len(),
        "the follower saw an event twice"
    );
    assert_eq!(
        distinct, committed,
        "the follower's events differ from the committed ones"
    );
    assert!(
        followed.windows(2).all(|w| w[0].cursor < w[1].cursor),
        "cursors went backwards"
    );

    // A fresh re-read in pages gives the same events in the same order.
    let mut reread = Vec::with_capacity(total);
    let mut after = Cursor::START;
    loop {
        let page = store.read_all(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = last.cursor;
        reread.extend(page.iter().map(|e| e.cursor.position));
    }
    assert_eq!(reread, followed_positions);
    assert_quiet(&store, after).await
}
