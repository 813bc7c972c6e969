//! The log proves itself: a hash chain sealed behind the head, signed checkpoints, and
//! verification that names the first event that does not match, here and offline.

use std::time::Duration;

use caseledger_tests::{spawn_app, TestApp};
use eventstore::seal::Sealer;
use eventstore::{EventStore, ExpectedVersion, Metadata, NewEvent};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// Appends `n` events to streams of their own; returns their stream ids.
async fn write(app: &TestApp, n: usize) -> anyhow::Result<Vec<Uuid>> {
    let mut streams = Vec::new();
    for i in 0..n {
        let id = Uuid::new_v4();
        app.store
            .append(
                id,
                "physician",
                ExpectedVersion::NoStream,
                &[NewEvent::new(
                    "PhysicianRegistered",
                    json!({"name": format!("Dr {i}"), "score": 1.5}),
                )],
                &Metadata::by("test"),
            )
            .await?;
        streams.push(id);
    }
    Ok(streams)
}

async fn verify(app: &TestApp) -> anyhow::Result<Value> {
    let response = app.client.get(app.url("/audit/verify")).send().await?;
    anyhow::ensure!(
        response.status() == 200,
        "verify answered {}",
        response.status()
    );
    Ok(response.json().await?)
}

/// What verification found first, asserting that it found something.
async fn first_problem(app: &TestApp) -> anyhow::Result<Value> {
    let report = verify(app).await?;
    anyhow::ensure!(report["ok"] == false, "the log verified: {report}");
    Ok(report["first_problem"].clone())
}

/// Rewrites history as the database owner can: with the append-only trigger out of the way.
async fn as_owner(owner: &PgPool, statement: &str) -> anyhow::Result<()> {
    let mut tx = owner.begin().await?;
    for sql in [
        "ALTER TABLE events DISABLE TRIGGER events_append_only",
        "ALTER TABLE event_seals DISABLE TRIGGER event_seals_append_only",
        statement,
        "ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only",
        "ALTER TABLE event_seals ENABLE ALWAYS TRIGGER event_seals_append_only",
    ] {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn an_untouched_log_verifies_with_its_signed_checkpoints(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    write(&app, 30).await?;
    assert!(app.state.audit.checkpoint().await?.is_some());
    write(&app, 5).await?;
    let second = app.state.audit.checkpoint().await?;
    assert!(second.is_some());
    // Nothing new since: no third checkpoint.
    assert!(app.state.audit.checkpoint().await?.is_none());
    let report = verify(&app).await?;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checkpoints_checked"], 2, "{report}");
    assert!(report["events_checked"].as_u64() >= Some(36), "{report}");
    assert_eq!(report["public_key"], app.state.audit.public_key());
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn an_event_rewritten_by_the_owner_is_named_by_verify(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool.clone()).await?;
    let streams = write(&app, 20).await?;
    app.state.audit.checkpoint().await?;
    let forged = streams[7];
    as_owner(
        &pool,
        &format!(
            "UPDATE events SET payload = jsonb_set(payload, '{{name}}', '\"Dr Forged\"') WHERE stream_id = '{forged}'"
        ),
    )
    .await?;
    let problem = &first_problem(&app).await?;
    assert_eq!(problem["kind"], "content_changed", "{problem}");
    assert_eq!(problem["fields"], json!(["payload"]));
    assert_eq!(problem["stream_id"], json!(forged));
    let position: i64 = sqlx::query_scalar("SELECT position FROM events WHERE stream_id = $1")
        .bind(forged)
        .fetch_one(&pool)
        .await?;
    assert_eq!(problem["position"], position);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_rewrite_with_recomputed_seals_is_caught_by_the_signed_checkpoint(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool.clone()).await?;
    let streams = write(&app, 20).await?;
    app.state.audit.checkpoint().await?;
    // The owner rewrites an event, drops every seal from it on and seals the log again: the
    // chain is consistent, but it no longer has the hash the server signed.
    let forged = streams[3];
    as_owner(
        &pool,
        &format!("UPDATE events SET actor = 'someone-else' WHERE stream_id = '{forged}'"),
    )
    .await?;
    as_owner(
        &pool,
        &format!(
            "DELETE FROM event_seals WHERE seq >= (SELECT s.seq FROM event_seals s \
             JOIN events e USING (position) WHERE e.stream_id = '{forged}')"
        ),
    )
    .await?;
    Sealer::new(EventStore::new(pool.clone()))
        .catch_up()
        .await?;
    let problem = first_problem(&app).await?;
    assert_eq!(problem["kind"], "checkpoint_hash", "{problem}");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_checkpoint_with_a_forged_signature_is_detected(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    write(&app, 5).await?;
    let mut real = app
        .state
        .audit
        .checkpoint()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no checkpoint"))?;
    // Anyone who can append (the server's own role) can append a checkpoint-shaped event; only
    // the key holder can sign one. This one claims the real key with someone else's signature.
    real.signed_at = "2030-01-01T00:00:00.000000Z".into();
    app.store
        .append(
            commands::audit::CHAIN_STREAM_ID,
            commands::audit::CHAIN_STREAM_TYPE,
            ExpectedVersion::Exact(1),
            &[NewEvent::new(
                commands::audit::CHECKPOINT_EVENT,
                serde_json::to_value(&real)?,
            )],
            &Metadata::by("intruder"),
        )
        .await?;
    app.state.audit.sealer().catch_up().await?;
    let problem = first_problem(&app).await?;
    assert_eq!(problem["kind"], "checkpoint_signature", "{problem}");
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_log_is_sealed_in_the_background_behind_the_head(pool: PgPool) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    write(&app, 12).await?;
    let written = app.store.head().await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let head = eventstore::seal::head(app.store.pool()).await?;
        if head.as_ref().map(|h| h.cursor) == Some(written) {
            let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
                .fetch_one(app.store.pool())
                .await?;
            assert_eq!(head.map(|h| h.seq), u64::try_from(events).ok());
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "sealer never reached the head: {head:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn an_export_is_verified_by_the_independent_script_and_a_changed_one_is_not(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool).await?;
    write(&app, 25).await?;
    app.state.audit.checkpoint().await?;
    let export = app
        .client
        .get(app.url("/audit/export"))
        .send()
        .await?
        .text()
        .await?;
    let dir = std::env::temp_dir().join(format!("caseledger-audit-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tools/audit/verify_export.py"
    );
    let trusted = app.state.audit.public_key();
    let run = |text: &str, name: &str, key: &str| -> anyhow::Result<std::process::Output> {
        let file = dir.join(name);
        std::fs::write(&file, text)?;
        Ok(std::process::Command::new("python3")
            .arg(script)
            .arg(&file)
            .args(["--public-key", key])
            .output()?)
    };
    let good = run(&export, "good.ndjson", &trusted)?;
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&good.stderr)
    );
    // The test's admin and its login are in the log too.
    assert!(stdout.starts_with("OK: "), "{stdout}");
    assert!(stdout.contains(" events, 1 signed checkpoints"), "{stdout}");

    let changed = export.replacen("Dr 4", "Dr X", 1);
    assert_ne!(changed, export);
    let bad = run(&changed, "changed.ndjson", &trusted)?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).contains("does not hash to its seal"));

    let other_key = commands::audit::AuditKey::generate().public_hex();
    let wrong_key = run(&export, "good.ndjson", &other_key)?;
    assert!(!wrong_key.status.success());
    assert!(String::from_utf8_lossy(&wrong_key.stdout).contains("not the trusted key"));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn ready_and_metrics_show_the_last_automatic_verification(
    pool: PgPool,
) -> anyhow::Result<()> {
    let app = spawn_app(pool.clone()).await?;
    let streams = write(&app, 5).await?;
    app.state.audit.checkpoint().await?;
    let ready: Value = app
        .client
        .get(app.url("/ready"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ready["last_audit_verification"], Value::Null);
    app.state.jobs.run_now("audit-verify", "test").await?;
    let ready: Value = app
        .client
        .get(app.url("/ready"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ready["last_audit_verification"]["ok"], true, "{ready}");

    as_owner(
        &pool,
        &format!(
            "UPDATE events SET event_type = 'Forged' WHERE stream_id = '{}'",
            streams[0]
        ),
    )
    .await?;
    app.state.jobs.run_now("audit-verify", "test").await?;
    let ready: Value = app
        .client
        .get(app.url("/ready"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ready["last_audit_verification"]["ok"], false, "{ready}");
    assert!(ready["last_audit_verification"]["problem"]
        .as_str()
        .is_some_and(|p| p.contains("event_type")));
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("caseledger_audit_last_verification_ok 0"),
        "{metrics}"
    );
    Ok(())
}
