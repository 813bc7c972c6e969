//! `wait`: a durable timer. Config `{"seconds": n}` waits that long from the attempt's start;
//! `{"until_pointer": "/input/follow_up_at"}` waits until the RFC 3339 time found there (a time
//! already past succeeds at once; no time there fails the attempt). The timer is a row with its
//! due time on the write side, so it survives restarts.

use chrono::{DateTime, Duration, Utc};
use domain::workflow::WaitOn;
use futures_util::future::BoxFuture;
use serde_json::Value;

use super::{config_str, only_fields, AttemptContext, StepKind, StepOutcome};

/// The longest wait a definition may ask for.
const MAX_SECONDS: u64 = 366 * 86_400;

#[derive(Debug, Clone, Copy)]
pub struct Wait;

impl StepKind for Wait {
    fn name(&self) -> &'static str {
        "wait"
    }

    fn check(&self, config: &Value) -> Result<(), String> {
        only_fields(config, &["seconds", "until_pointer"])?;
        let seconds = config.get("seconds");
        let pointer = config_str(config, "until_pointer")?;
        match (seconds, pointer) {
            (Some(s), None) => match s.as_u64() {
                Some(n) if n <= MAX_SECONDS => Ok(()),
                _ => Err(format!(
                    "seconds must be a whole number from 0 to {MAX_SECONDS}"
                )),
            },
            (None, Some(p)) if p.starts_with("/input") || p.starts_with("/steps/") => Ok(()),
            (None, Some(p)) => Err(format!(
                "until_pointer {p:?} must start with /input or /steps/<id>/output"
            )),
            _ => Err("give exactly one of seconds or until_pointer".into()),
        }
    }

    fn start<'a>(&'a self, attempt: &'a AttemptContext) -> BoxFuture<'a, StepOutcome> {
        Box::pin(async move {
            let until = match until(attempt) {
                Ok(until) => until,
                Err(problem) => return StepOutcome::Failed(problem),
            };
            if until <= attempt.now {
                return StepOutcome::Succeeded(Value::Null);
            }
            StepOutcome::Wait {
                on: WaitOn::Timer { until },
                deadline: None,
            }
        })
    }
}

fn until(attempt: &AttemptContext) -> Result<DateTime<Utc>, String> {
    if let Some(seconds) = attempt.config.get("seconds").and_then(Value::as_u64) {
        let seconds = i64::try_from(seconds.min(MAX_SECONDS)).unwrap_or(0);
        return Ok(attempt.now + Duration::seconds(seconds));
    }
    let pointer = attempt
        .config
        .get("until_pointer")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let found = attempt.lookup(pointer);
    let text = found
        .as_str()
        .ok_or_else(|| format!("{pointer} holds no time (found {found})"))?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{pointer} holds {text:?}, not an RFC 3339 time: {e}"))
}
