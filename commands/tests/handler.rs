//! Command handling: load, decide, append, retry; idempotent command ids; the state cache.

mod support;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use commands::{CommandError, CommandHandler, ManualClock, SystemClock};
use eventstore::{EventStore, ExpectedVersion, Metadata, StoreError};
use sqlx::PgPool;
use support::*;
use uuid::Uuid;

fn handler(pool: &PgPool) -> CommandHandler<Ticket> {
    CommandHandler::new(EventStore::new(pool.clone()), Arc::new(SystemClock))
}

fn open() -> TicketCommand {
    TicketCommand::Open {
        title: "Renew CA licence".into(),
    }
}

fn take(by: &str) -> TicketCommand {
    TicketCommand::Take { by: by.into() }
}

fn with_id(id: Uuid) -> Metadata {
    meta().with_command_id(id)
}

async fn stream_len(pool: &PgPool, id: Uuid) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id = $1")
            .bind(id)
            .fetch_one(pool)
            .await?,
    )
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_command_appends_its_events_and_returns_the_cursor_of_the_last(
    pool: PgPool,
) -> anyhow::Result<()> {
    let h = handler(&pool);
    let id = Uuid::new_v4();
    let opened = h.handle(id, &open(), &meta()).await?;
    assert_eq!(
        opened.events,
        [TicketEvent::Opened {
            title: "Renew CA licence".into()
        }]
    );
    assert_eq!(opened.version, 1);
    let head = h.store().head().await?;
    assert_eq!(opened.cursor, Some(head));
    assert!(!opened.replayed);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_aggregate_decides_with_the_injected_clock(pool: PgPool) -> anyhow::Result<()> {
    let at = Utc
        .with_ymd_and_hms(2030, 1, 2, 3, 4, 5)
        .single()
        .ok_or_else(|| anyhow::anyhow!("bad date"))?;
    let h = CommandHandler::<Ticket>::new(EventStore::new(pool), Arc::new(ManualClock::at(at)));
    let id = Uuid::new_v4();
    h.handle(id, &open(), &meta()).await?;
    let taken = h.handle(id, &take("bob"), &meta()).await?;
    assert_eq!(
        taken.events,
        [TicketEvent::Taken {
            by: "bob".into(),
            at
        }]
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_refused_command_names_why_and_appends_nothing(pool: PgPool) -> anyhow::Result<()> {
    let h = handler(&pool);
    let id = Uuid::new_v4();
    h.handle(id, &open(), &meta()).await?;
    h.handle(id, &take("alice"), &meta()).await?;
    let err = h.handle(id, &take("bob"), &meta()).await;
    assert!(
        matches!(&err, Err(CommandError::Rejected(TicketError::AlreadyHeld { by })) if by == "alice"),
        "{err:?}"
    );
    assert_eq!(
        err.err().map(|e| e.to_string()).as_deref(),
        Some("ticket is already held by alice")
    );
    assert_eq!(stream_len(&pool, id).await?, 2);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn resending_a_command_id_returns_the_first_result_and_appends_nothing(
    pool: PgPool,
) -> anyhow::Result<()> {
    let h = handler(&pool);
    let id = Uuid::new_v4();
    h.handle(id, &open(), &meta()).await?;
    let command_id = Uuid::new_v4();
    let first = h.handle(id, &take("alice"), &with_id(command_id)).await?;
    // Meanwhile the ticket is closed: deciding again would now refuse, but a resend must not decide again.
    h.handle(id, &TicketCommand::Close, &meta()).await?;
    let again = h.handle(id, &take("alice"), &with_id(command_id)).await?;
    assert!(again.replayed);
    assert_eq!(
        (again.events, again.version, again.cursor),
        (first.events, first.version, first.cursor)
    );
    assert_eq!(stream_len(&pool, id).await?, 3);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_command_that_decides_nothing_is_still_remembered_under_its_id(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = EventStore::new(pool.clone());
    let id = Uuid::new_v4();
    let command_id = Uuid::new_v4();
    let command = serde_json::json!({"type": "Noop"});
    let first = store
        .append_command(
            id,
            "ticket",
            ExpectedVersion::Any,
            &[],
            &with_id(command_id),
            &command,
        )
        .await?;
    assert_eq!(
        (
            first.appended.count(),
            first.replayed,
            first.appended.cursor
        ),
        (0, false, None)
    );
    let again = store
        .append_command(
            id,
            "ticket",
            ExpectedVersion::Any,
            &[event("Late", 1)],
            &with_id(command_id),
            &command,
        )
        .await?;
    assert!(again.replayed);
    assert_eq!(again.appended.count(), 0);
    assert_eq!(stream_len(&pool, id).await?, 0);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_command_id_reused_for_a_different_command_is_refused(
    pool: PgPool,
) -> anyhow::Result<()> {
    let h = handler(&pool);
    let id = Uuid::new_v4();
    h.handle(id, &open(), &meta()).await?;
    let command_id = Uuid::new_v4();
    h.handle(id, &take("alice"), &with_id(command_id)).await?;
    let err = h.handle(id, &take("mallory"), &with_id(command_id)).await;
    assert!(
        matches!(
            err,
            Err(CommandError::Store(StoreError::CommandIdReused { .. }))
        ),
        "{err:?}"
    );
    let elsewhere = Uuid::new_v4();
    h.handle(elsewhere, &open(), &meta()).await?;
    let err = h
        .handle(elsewhere, &take("alice"), &with_id(command_id))
        .await;
    assert!(
        matches!(
            err,
            Err(CommandError::Store(StoreError::CommandIdReused { .. }))
        ),
        "same command, other stream: {err:?}"
    );
    assert_eq!(stream_len(&pool, elsewhere).await?, 1);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn one_command_id_sent_twice_at_once_from_two_processes_appends_once(
    pool: PgPool,
) -> anyhow::Result<()> {
    // Two handlers stand for two server processes: no in-process queue between them.
    let (a, b) = (Arc::new(handler(&pool)), Arc::new(handler(&pool)));
    for _ in 0..10 {
        let id = Uuid::new_v4();
        a.handle(id, &open(), &meta()).await?;
        let command_id = Uuid::new_v4();
        let (cmd, md) = (take("alice"), with_id(command_id));
        let (ra, rb) = tokio::join!(a.handle(id, &cmd, &md), b.handle(id, &cmd, &md));
        let (ra, rb) = (ra?, rb?);
        assert_eq!(
            (&ra.events, ra.version, ra.cursor),
            (&rb.events, rb.version, rb.cursor)
        );
        assert!(
            ra.replayed != rb.replayed,
            "exactly one of them ran the command"
        );
        assert_eq!(stream_len(&pool, id).await?, 2);
    }
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn two_processes_racing_to_take_a_ticket_leave_exactly_one_holder(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (a, b) = (Arc::new(handler(&pool)), Arc::new(handler(&pool)));
    for _ in 0..10 {
        let id = Uuid::new_v4();
        a.handle(id, &open(), &meta()).await?;
        b.load(id).await?; // both processes have the open ticket cached
        let (alice, bob, md) = (take("alice"), take("bob"), meta());
        let (ra, rb) = tokio::join!(a.handle(id, &alice, &md), b.handle(id, &bob, &md));
        let winners = [ra.is_ok(), rb.is_ok()].iter().filter(|ok| **ok).count();
        assert_eq!(winners, 1, "{ra:?} / {rb:?}");
        let loser = if ra.is_ok() { rb.err() } else { ra.err() };
        assert!(
            matches!(
                loser,
                Some(CommandError::Rejected(TicketError::AlreadyHeld { .. }))
            ),
            "{loser:?}"
        );
        assert_eq!(stream_len(&pool, id).await?, 2);
    }
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_cached_state_catches_up_with_writes_from_another_process(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (a, b) = (handler(&pool), handler(&pool));
    let id = Uuid::new_v4();
    a.handle(id, &open(), &meta()).await?;
    assert_eq!(a.load(id).await?, (1, Ticket::Open));
    b.handle(id, &TicketCommand::Close, &meta()).await?;
    let err = a.handle(id, &take("alice"), &meta()).await;
    assert!(
        matches!(err, Err(CommandError::Rejected(TicketError::Closed))),
        "{err:?}"
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_stream_of_another_type_is_not_loaded_as_this_aggregate(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = EventStore::new(pool.clone());
    let id = Uuid::new_v4();
    store
        .append(
            id,
            "renewal",
            ExpectedVersion::NoStream,
            &[event("RenewalInitiated", 1)],
            &meta(),
        )
        .await?;
    let err = handler(&pool).handle(id, &open(), &meta()).await;
    assert!(
        matches!(
            err,
            Err(CommandError::Store(StoreError::StreamTypeMismatch { .. }))
        ),
        "{err:?}"
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_state_as_of_a_version_is_rebuilt_from_the_events_up_to_it(
    pool: PgPool,
) -> anyhow::Result<()> {
    let h = handler(&pool);
    let id = Uuid::new_v4();
    h.handle(id, &open(), &meta()).await?;
    h.handle(id, &take("alice"), &meta()).await?;
    h.handle(id, &TicketCommand::Close, &meta()).await?;
    assert_eq!(h.load_at_version(id, 1).await?, (1, Ticket::Open));
    assert!(matches!(
        h.load_at_version(id, 2).await?,
        (2, Ticket::Held { .. })
    ));
    assert_eq!(h.load(id).await?, (3, Ticket::Closed));
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn two_processes_hammering_one_stream_lose_no_command(pool: PgPool) -> anyhow::Result<()> {
    const PER_WRITER: usize = 25;
    let handlers = [Arc::new(handler(&pool)), Arc::new(handler(&pool))];
    let id = Uuid::new_v4();
    handlers[0].handle(id, &open(), &meta()).await?;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let h = handlers[w % 2].clone();
            tokio::spawn(async move {
                for n in 0..PER_WRITER {
                    h.handle(
                        id,
                        &TicketCommand::Note {
                            text: format!("{w}/{n}"),
                        },
                        &meta(),
                    )
                    .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    assert_eq!(stream_len(&pool, id).await?, 1 + 8 * PER_WRITER as i64);
    let conflicts: u64 = handlers.iter().map(|h| h.conflicts()).sum();
    assert!(
        conflicts < (8 * PER_WRITER / 4) as u64,
        "{conflicts} conflicts for {} commands",
        8 * PER_WRITER
    );
    Ok(())
}
