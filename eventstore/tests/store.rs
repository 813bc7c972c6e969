//! The event store's contract: expectations, atomic batches, bad input, immutability, upcasting.

mod support;

use eventstore::{Cursor, EventStore, ExpectedVersion, Metadata, NewEvent, StoreError, Upcasters};
use serde_json::{json, Value};
use sqlx::PgPool;
use support::*;
use uuid::Uuid;

async fn count_events(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?)
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_new_stream_starts_at_version_one_and_batches_are_consecutive(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = EventStore::new(pool);
    let id = Uuid::new_v4();
    let first = store
        .append(
            id,
            "test",
            ExpectedVersion::NoStream,
            &[event("A", 1)],
            &meta(),
        )
        .await?;
    assert_eq!((first.first_version, first.last_version), (1, 1));
    let batch = [event("B", 2), event("C", 3), event("D", 4)];
    let next = store
        .append(id, "test", ExpectedVersion::Exact(1), &batch, &meta())
        .await?;
    assert_eq!(
        (next.first_version, next.last_version, next.count()),
        (2, 4, 3)
    );

    let events = store.read_stream(id, 0).await?;
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    assert_eq!(next.cursor, events.last().map(|e| e.cursor));
    assert_eq!(
        store.read_stream(id, 2).await?.len(),
        2,
        "reading from a version skips what came before"
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_stale_expected_version_is_a_conflict_naming_expected_and_actual(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = EventStore::new(pool.clone());
    let id = Uuid::new_v4();
    store
        .append(
            id,
            "test",
            ExpectedVersion::NoStream,
            &[event("A", 1), event("B", 2)],
            &meta(),
        )
        .await?;

    let err = store
        .append(
            id,
            "test",
            ExpectedVersion::Exact(1),
            &[event("C", 3), event("D", 4)],
            &meta(),
        )
        .await
        .expect_err("a stale version must conflict");
    assert!(
        matches!(
            err,
            StoreError::WrongExpectedVersion {
                expected: ExpectedVersion::Exact(1),
                actual: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("stream {id}: expected version 1, but the stream is at version 2")
    );
    assert_eq!(
        count_events(&pool).await?,
        2,
        "nothing of the refused batch was written"
    );

    let err = store
        .append(
            id,
            "test",
            ExpectedVersion::NoStream,
            &[event("E", 5)],
            &meta(),
        )
        .await;
    assert!(
        matches!(err, Err(StoreError::WrongExpectedVersion { actual: 2, .. })),
        "{err:?}"
    );
    let err = store
        .append(
            Uuid::new_v4(),
            "test",
            ExpectedVersion::Exact(3),
            &[event("F", 6)],
            &meta(),
        )
        .await;
    assert!(
        matches!(err, Err(StoreError::WrongExpectedVersion { actual: 0, .. })),
        "an unknown stream is at version 0: {err:?}"
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn concurrent_appends_expecting_the_same_version_let_exactly_one_win(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = EventStore::new(pool.clone());
    let id = Uuid::new_v4();
    store
        .append(
            id,
            "test",
            ExpectedVersion::NoStream,
            &[event("A", 0)],
            &meta(),
        )
        .await?;
    let racers: Vec<_> = (0..4)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append(
                        id,
                        "test",
                        ExpectedVersion::Exact(1),
                        &[event("Race", n)],
                        &meta(),
                    )
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        match racer.await? {
            Ok(_) => won += 1,
            Err(StoreError::WrongExpectedVersion { actual: 2, .. }) => {}
            Err(other) => anyhow::bail!("unexpected error: {other}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(store.stream_version(id).await?, 2);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn appends_expecting_any_version_all_land_without_gaps(pool: PgPool) -> anyhow::Result<()> {
    let store = EventStore::new(pool);
    let id = Uuid::new_v4();
    let writers: Vec<_> = (0..8)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    store
                        .append(
                            id,
                            "test",
                            ExpectedVersion::Any,
                            &[event("Any", n * 100 + i)],
                            &meta(),
                        )
                        .await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    let versions: Vec<u64> = store
        .read_stream(id, 0)
        .await?
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, (1..=80).collect::<Vec<_>>());
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_stream_keeps_the_type_it_was_created_with(pool: PgPool) -> anyhow::Result<()> {
    let store = EventStore::new(pool);
    let id = Uuid::new_v4();
    store
        .append(
            id,
            "renewal",
            ExpectedVersion::NoStream,
            &[event("A", 1)],
            &meta(),
        )
        .await?;
    let err = store
        .append(id, "task", ExpectedVersion::Any, &[event("B", 2)], &meta())
        .await;
    assert!(
        matches!(&err, Err(StoreError::StreamTypeMismatch { expected, actual, .. }) if expected == "task" && actual == "renewal"),
        "{err:?}"
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn bad_input_is_refused_with_a_typed_error_and_writes_nothing(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = EventStore::new(pool.clone());
    let id = Uuid::new_v4();
    let huge = json!({ "blob": "x".repeat(eventstore::event::MAX_PAYLOAD_BYTES) });
    let cases: Vec<(&str, &str, Vec<NewEvent>, Metadata)> = vec![
        (
            "oversized payload",
            "test",
            vec![event("Ok", 1), NewEvent::new("Big", huge)],
            meta(),
        ),
        (
            "array payload",
            "test",
            vec![NewEvent::new("Arr", json!([1, 2]))],
            meta(),
        ),
        (
            "null payload",
            "test",
            vec![NewEvent::new("Null", Value::Null)],
            meta(),
        ),
        ("empty batch", "test", vec![], meta()),
        (
            "bad event type",
            "test",
            vec![event("has space", 1)],
            meta(),
        ),
        ("bad stream type", "", vec![event("A", 1)], meta()),
        ("blank actor", "test", vec![event("A", 1)], Metadata::by("")),
        (
            "schema version 0",
            "test",
            vec![event("A", 1).with_schema_version(0)],
            meta(),
        ),
        (
            "too many events",
            "test",
            (0..1_001).map(|n| event("A", n)).collect(),
            meta(),
        ),
    ];
    for (case, stream_type, events, metadata) in cases {
        let err = store
            .append(id, stream_type, ExpectedVersion::Any, &events, &metadata)
            .await;
        let err = err.err().unwrap_or_else(|| panic!("{case} was accepted"));
        assert!(
            !matches!(err, StoreError::Database(_)),
            "{case} reached the database: {err}"
        );
        assert!(!err.to_string().is_empty());
    }
    assert_eq!(count_events(&pool).await?, 0);
    assert!(matches!(
        store.read_stream(id, 0).await,
        Err(StoreError::StreamNotFound { .. })
    ));
    assert!(matches!(
        "12".parse::<Cursor>(),
        Err(StoreError::InvalidCursor { .. })
    ));
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_database_refuses_to_rewrite_history_whoever_asks(pool: PgPool) -> anyhow::Result<()> {
    let store = EventStore::new(pool.clone());
    store
        .append(
            Uuid::new_v4(),
            "test",
            ExpectedVersion::NoStream,
            &[event("A", 1)],
            &meta(),
        )
        .await?;
    let mut conn = pool.acquire().await?;
    for sql in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
        "DELETE FROM events WHERE false",
        "UPDATE command_log SET command = '{}'",
        "TRUNCATE command_log",
    ] {
        // Also with triggers "disabled" the way replication tools do it.
        for replica in [false, true] {
            let role = if replica { "replica" } else { "origin" };
            sqlx::query(&format!("SET session_replication_role = {role}"))
                .execute(&mut *conn)
                .await?;
            let err = sqlx::query(sql).execute(&mut *conn).await.expect_err(sql);
            let code = err
                .as_database_error()
                .and_then(|e| e.code())
                .map(|c| c.into_owned());
            assert_eq!(code.as_deref(), Some("42501"), "{sql} ({role}): {err}");
        }
    }
    sqlx::query("SET session_replication_role = origin")
        .execute(&mut *conn)
        .await?;
    assert_eq!(count_events(&pool).await?, 1);
    Ok(())
}

fn split_name(mut payload: Value) -> Result<Value, String> {
    let obj = payload.as_object_mut().ok_or("payload is not an object")?;
    let name = obj
        .remove("name")
        .and_then(|n| n.as_str().map(str::to_owned))
        .ok_or("no name")?;
    let (given, family) = name.split_once(' ').ok_or("name has no space")?;
    obj.insert("given_name".into(), json!(given));
    obj.insert("family_name".into(), json!(family));
    Ok(payload)
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn an_event_stored_as_v1_is_read_as_v2_and_stays_v1_on_disk(
    pool: PgPool,
) -> anyhow::Result<()> {
    let id = Uuid::new_v4();
    let old = NewEvent::new(
        "PhysicianRegistered",
        json!({"name": "Grace Hopper", "npi": "1234567893"}),
    );
    EventStore::new(pool.clone())
        .append(id, "physician", ExpectedVersion::NoStream, &[old], &meta())
        .await?;

    let store = EventStore::with_upcasters(
        pool.clone(),
        Upcasters::new().register("PhysicianRegistered", 1, split_name),
    );
    let expected = json!({"given_name": "Grace", "family_name": "Hopper", "npi": "1234567893"});
    let from_stream = store.read_stream(id, 0).await?;
    assert_eq!(
        (from_stream[0].schema_version, &from_stream[0].payload),
        (2, &expected)
    );
    let from_log = follow_n(&store, Cursor::START, 1, std::time::Duration::from_secs(30)).await?;
    assert_eq!(
        (from_log[0].schema_version, &from_log[0].payload),
        (2, &expected)
    );

    let (stored_version, stored): (i32, Value) =
        sqlx::query_as("SELECT schema_version, payload FROM events")
            .fetch_one(&pool)
            .await?;
    assert_eq!(
        (stored_version, stored),
        (1, json!({"name": "Grace Hopper", "npi": "1234567893"}))
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_head_is_the_cursor_of_the_last_committed_event(pool: PgPool) -> anyhow::Result<()> {
    let store = EventStore::new(pool);
    assert_eq!(store.head().await?, Cursor::START);
    store
        .append(
            Uuid::new_v4(),
            "test",
            ExpectedVersion::NoStream,
            &[event("A", 1)],
            &meta(),
        )
        .await?;
    let last = store
        .append(
            Uuid::new_v4(),
            "test",
            ExpectedVersion::NoStream,
            &[event("B", 1), event("C", 2)],
            &meta(),
        )
        .await?;
    assert_eq!(Some(store.head().await?), last.cursor);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn metadata_is_stored_with_every_event(pool: PgPool) -> anyhow::Result<()> {
    let store = EventStore::new(pool);
    let id = Uuid::new_v4();
    let metadata = Metadata {
        actor: "user:alice".into(),
        command_id: Some(Uuid::new_v4()),
        correlation_id: Uuid::new_v4(),
        causation_id: Some(Uuid::new_v4()),
    };
    store
        .append(
            id,
            "test",
            ExpectedVersion::NoStream,
            &[event("A", 1)],
            &metadata,
        )
        .await?;
    let events = store.read_stream(id, 0).await?;
    assert_eq!(events[0].metadata, metadata);
    assert_eq!(events[0].stream_type, "test");
    Ok(())
}
