//! `caseledger audit ...`: the public key auditors trust, a checkpoint now, a verification of
//! the whole log with a progress bar, and an export a third party can verify offline.

use std::io::Write;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use caseledger::config::Config;
use caseledger::db::Database;
use caseledger::AppState;
use eventstore::EventStore;

use crate::AuditCommand;

pub async fn run(db: &Database, key_file: PathBuf, command: AuditCommand) -> anyhow::Result<()> {
    // `public-key` needs no database: it reads (or makes) the key only.
    if matches!(command, AuditCommand::PublicKey) {
        let key = commands::audit::AuditKey::load_or_create(&key_file)?;
        println!("{}", key.public_hex());
        return Ok(());
    }
    let pool = db.prepare(4).await?;
    let config = Config {
        audit_key_file: Some(key_file),
        ..Config::default()
    };
    let result = match AppState::new(
        EventStore::new(pool.clone()),
        Arc::new(commands::SystemClock),
        &config,
    ) {
        Ok(state) => with_state(&state, command).await,
        Err(e) => Err(e.into()),
    };
    pool.close().await;
    result
}

async fn with_state(state: &AppState, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        // Answered above, without a database.
        AuditCommand::PublicKey => {}
        AuditCommand::Checkpoint => match state.audit.checkpoint().await? {
            Some(c) => println!(
                "signed the chain at length {} (hash {}, cursor {}-{})",
                c.seq, c.chain_hash, c.transaction_id, c.position
            ),
            None => println!("nothing new since the last checkpoint"),
        },
        AuditCommand::Verify { from, json } => {
            // What the sealer has not reached yet is sealed first, so that a verification
            // right after writes covers them.
            state.audit.sealer().catch_up().await?;
            let from = match from {
                None => 1,
                Some(text) => {
                    let cursor: eventstore::Cursor = text
                        .parse()
                        .map_err(|e| anyhow::anyhow!("--from {text:?}: {e}"))?;
                    state
                        .audit
                        .seq_at(cursor)
                        .await?
                        .with_context(|| format!("--from: no sealed event is at {cursor}"))?
                }
            };
            let bar = super::projections::progress_bar();
            let report = state
                .audit
                .verify(from, |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                })
                .await?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{} events and {} signed checkpoints checked; chain length {}, hash {}",
                    report.events_checked,
                    report.checkpoints_checked,
                    report.chain_length,
                    report.chain_hash
                );
            }
            if let Some(problem) = &report.first_problem {
                anyhow::bail!(
                    "the log does not verify: {}",
                    serde_json::to_string(problem)?
                );
            }
            if !json {
                println!("the log verifies against public key {}", report.public_key);
            }
        }
        AuditCommand::Export { out } => {
            state.audit.sealer().catch_up().await?;
            let file = std::fs::File::create(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            let mut chunks = std::pin::pin!(eventstore::seal::export(state.store.pool().clone()));
            while let Some(chunk) = futures_util::StreamExt::next(&mut chunks).await {
                writer.write_all(&chunk?)?;
            }
            writer.flush()?;
            println!(
                "exported the sealed log to {}; verify with: python3 tools/audit/verify_export.py {} --public-key {}",
                out.display(),
                out.display(),
                state.audit.public_key()
            );
        }
    }
    Ok(())
}
