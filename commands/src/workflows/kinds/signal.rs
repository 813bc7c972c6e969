//! `signal`: waits until `POST /runs/{id}/signals/{name}` delivers a JSON payload, which
//! becomes the step's output. Config `{"name": "approval"}`. With `timeout_secs`, the wait
//! fails when that time passes with no signal.

use domain::workflow::WaitOn;
use futures_util::future::BoxFuture;
use serde_json::Value;

use super::{config_str, only_fields, AttemptContext, StepKind, StepOutcome};

#[derive(Debug, Clone, Copy)]
pub struct Signal;

impl StepKind for Signal {
    fn name(&self) -> &'static str {
        "signal"
    }

    fn check(&self, config: &Value) -> Result<(), String> {
        only_fields(config, &["name"])?;
        match config_str(config, "name")? {
            Some(name)
                if !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                Ok(())
            }
            _ => Err("name must be 1 to 64 letters, digits, '-' or '_'".into()),
        }
    }

    fn start<'a>(&'a self, attempt: &'a AttemptContext) -> BoxFuture<'a, StepOutcome> {
        Box::pin(async move {
            let name = config_str(&attempt.config, "name")
                .ok()
                .flatten()
                .unwrap_or_default()
                .to_owned();
            StepOutcome::Wait {
                on: WaitOn::Signal { name },
                deadline: attempt.deadline(),
            }
        })
    }
}
