//! `caseledger projections ...`: each read model's status as a table or JSON, and rebuilding or
//! verifying one with a progress bar.

use anyhow::Context;
use caseledger::AppState;

use crate::ProjectionsCommand;

pub async fn run(state: &AppState, command: ProjectionsCommand) -> anyhow::Result<()> {
    let find = |name: &str| {
        state.projector.find(name).with_context(|| {
            let known: Vec<&str> = state
                .projector
                .projections()
                .iter()
                .map(|p| p.name())
                .collect();
            format!(
                "no projection is named {name:?}; known: {}",
                known.join(", ")
            )
        })
    };
    let page_size = caseledger::REBUILD_PAGE_SIZE;
    match command {
        ProjectionsCommand::Status { json } => {
            let status = caseledger::projection_status(&state.store, &state.projector).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!(
                    "{:<20} {:<12} {:>14} {:>12} {:>10}  last error",
                    "projection", "state", "checkpoint", "lag events", "lag s"
                );
                for s in status {
                    let state = serde_json::to_value(s.state)?;
                    println!(
                        "{:<20} {:<12} {:>14} {:>12} {:>10.1}  {}",
                        s.name,
                        state.as_str().unwrap_or("?"),
                        s.checkpoint.to_string(),
                        s.lag_events,
                        s.lag_seconds,
                        s.last_error
                            .map(|e| format!(
                                "{e} (at position {})",
                                s.last_error_position.unwrap_or(0)
                            ))
                            .unwrap_or_default()
                    );
                }
            }
        }
        ProjectionsCommand::Rebuild { name } => {
            let projection = find(&name)?;
            let bar = progress_bar();
            let report =
                projections::rebuild::rebuild(&state.store, projection.as_ref(), page_size, |p| {
                    bar.set_length(p.events_total);
                    bar.set_position(p.events_done);
                })
                .await?;
            bar.finish_and_clear();
            println!(
                "rebuilt {}: {} events in {:.1} s, checkpoint {}",
                report.projection, report.events, report.seconds, report.checkpoint
            );
        }
        ProjectionsCommand::Verify { name } => {
            let projection = find(&name)?;
            let bar = progress_bar();
            let report =
                projections::rebuild::verify(&state.store, projection.as_ref(), page_size, |p| {
                    bar.set_length(p.events_total);
                    bar.set_position(p.events_done);
                })
                .await?;
            bar.finish_and_clear();
            for t in &report.tables {
                let verdict = if t.only_live.is_empty() && t.only_rebuilt.is_empty() {
                    "equal"
                } else {
                    "DIFFERENT"
                };
                println!(
                    "{}: {verdict} (live {} rows, rebuilt {} rows)",
                    t.table, t.live_rows, t.rebuilt_rows
                );
                for row in &t.only_live {
                    println!("  only live:    {row}");
                }
                for row in &t.only_rebuilt {
                    println!("  only rebuilt: {row}");
                }
            }
            if !report.equal {
                anyhow::bail!(
                    "{} differs from a rebuild at checkpoint {}",
                    report.projection,
                    report.checkpoint
                );
            }
            println!(
                "{} equals a rebuild at checkpoint {}",
                report.projection, report.checkpoint
            );
        }
    }
    Ok(())
}

pub(crate) fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} events  {per_sec}  eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
