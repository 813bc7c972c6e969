//! `caseledger audit ...`: the public key auditors trust, a checkpoint now, a verification of
//! the whole log with a progress bar, and an export a third party can verify offline.

use std::io::Write;

use anyhow::Context;
use caseledger::AppState;

use crate::AuditCommand;

pub async fn run(state: &AppState, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::PublicKey => println!("{}", state.audit.public_key()),
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
            let length = eventstore::seal::head(state.store.pool())
                .await?
                .map_or(0, |h| h.seq);
            writeln!(
                writer,
                "{}",
                serde_json::json!({"format": commands::audit::EXPORT_FORMAT, "chain_length": length})
            )?;
            let mut after = 0;
            while after < length {
                let page = eventstore::seal::export_page(state.store.pool(), after, 5_000).await?;
                let Some(last) = page.last().map(|l| l.seq) else {
                    break;
                };
                after = last;
                for line in page.iter().take_while(|l| l.seq <= length) {
                    serde_json::to_writer(&mut writer, line)?;
                    writer.write_all(b"\n")?;
                }
            }
            writer.flush()?;
            println!(
                "exported {length} sealed events to {}; verify with: python3 tools/audit/verify_export.py {} --public-key {}",
                out.display(),
                out.display(),
                state.audit.public_key()
            );
        }
    }
    Ok(())
}
