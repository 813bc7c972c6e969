//! What the server's own database role may do to the log: append and read, nothing else.
//! The append-only triggers are not the defence here: a table's owner can disable or drop them,
//! so the server's role must not own the log (see migrations/20261205000010_least_privilege.sql).

use caseledger_tests::as_app_role;
use eventstore::{EventStore, ExpectedVersion, Metadata, NewEvent};
use serde_json::json;
use sqlx::PgPool;

/// The SQLSTATE PostgreSQL answers `statement` with, or `None` when it succeeded.
async fn refusal(pool: &PgPool, statement: &str) -> anyhow::Result<Option<String>> {
    // Each statement in its own transaction, rolled back, so that one that wrongly succeeds
    // cannot change what the next one meets.
    let mut tx = pool.begin().await?;
    let outcome = sqlx::query(statement).execute(&mut *tx).await;
    tx.rollback().await?;
    Ok(match outcome {
        Ok(_) => None,
        Err(e) => Some(
            e.as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.into_owned())
                .unwrap_or_else(|| e.to_string()),
        ),
    })
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_servers_role_can_append_and_read_but_cannot_rewrite_the_log(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = as_app_role(&pool).await?;
    let whoami: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&app)
        .await?;
    assert_eq!(whoami, "caseledger_app");
    let store = EventStore::new(app.clone());
    store
        .append(
            uuid::Uuid::new_v4(),
            "test",
            ExpectedVersion::NoStream,
            &[NewEvent::new("Happened", json!({"n": 1}))],
            &Metadata::by("test"),
        )
        .await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app)
        .await?;
    assert_eq!(count, 1);

    // 42501 insufficient_privilege; 42883 would mean a missing function, 42P01 a missing table:
    // anything but a privilege refusal would be a test that cannot fail.
    for statement in [
        "ALTER TABLE events DISABLE TRIGGER ALL",
        "ALTER TABLE events DISABLE TRIGGER events_append_only",
        "DROP TRIGGER events_append_only ON events",
        "DROP TABLE events",
        "ALTER TABLE events OWNER TO caseledger_app",
        "ALTER TABLE events ADD COLUMN forged text",
        "UPDATE events SET payload = '{\"n\": 2}'",
        "DELETE FROM events",
        "TRUNCATE events",
        "UPDATE command_log SET command = '{}'",
        "DELETE FROM command_log",
        "DROP FUNCTION refuse_history_rewrite() CASCADE",
        "SELECT caseledger_secure()",
        "SET session_replication_role = replica",
        "GRANT caseledger_owner TO caseledger_app",
    ] {
        assert_eq!(
            refusal(&app, statement).await?.as_deref(),
            Some("42501"),
            "{statement} must be refused for lack of privilege"
        );
    }
    let still: serde_json::Value = sqlx::query_scalar("SELECT payload FROM events")
        .fetch_one(&app)
        .await?;
    assert_eq!(still, json!({"n": 1}));
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_log_belongs_to_an_owner_role_nobody_logs_in_as(pool: PgPool) -> anyhow::Result<()> {
    let owners: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_userbyid(c.relowner)::text FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await?;
    assert!(owners.iter().any(|(table, _)| table == "events"));
    for (table, owner) in &owners {
        assert_eq!(owner, "caseledger_owner", "{table} is owned by {owner}");
    }
    let can_login: bool =
        sqlx::query_scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'caseledger_owner'")
            .fetch_one(&pool)
            .await?;
    assert!(!can_login);
    Ok(())
}
