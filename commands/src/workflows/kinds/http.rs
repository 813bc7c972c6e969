//! `http`: POSTs the step's input as JSON to a URL, signed like notification webhooks
//! (`X-Caseledger-Signature: sha256=<hex HMAC of the body>`), with the attempt's idempotency key
//! (`run:step:attempt`) in `Idempotency-Key` and the run and step in headers of their own, so a
//! receiver can de-duplicate per attempt or per step. A 2xx answer succeeds with its JSON body
//! as the output (null when empty, the text as a string when it is not JSON); any other status,
//! a timeout or a connection failure fails the attempt. Config `{"url": "https://..."}`; the
//! step's `timeout_secs` bounds the call (30 s by default).

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use super::{config_str, only_fields, AttemptContext, StepKind, StepOutcome};
use crate::notifications::webhook::{signature, IDEMPOTENCY_HEADER, SIGNATURE_HEADER};

/// What every http step of a server shares.
#[derive(Debug, Clone, Default)]
pub struct HttpSettings {
    /// Signs request bodies when set (the webhook secret unless configured apart).
    pub secret: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Http {
    settings: HttpSettings,
    client: reqwest::Client,
}

/// The call's limit when the step sets none.
const DEFAULT_TIMEOUT_SECS: u64 = 30;

impl Http {
    pub fn new(settings: HttpSettings) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Http { settings, client }
    }
}

fn url(config: &Value) -> Result<reqwest::Url, String> {
    let raw = config_str(config, "url")?.ok_or("url is required")?;
    let parsed = reqwest::Url::parse(raw.trim()).map_err(|e| format!("url {raw:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("url {raw:?}: use http:// or https:// with a host"));
    }
    Ok(parsed)
}

impl StepKind for Http {
    fn name(&self) -> &'static str {
        "http"
    }

    fn check(&self, config: &Value) -> Result<(), String> {
        only_fields(config, &["url"])?;
        url(config).map(|_| ())
    }

    fn lease(&self, timeout_secs: Option<u64>) -> Duration {
        // The call cannot outlive its timeout; the margin covers recording the result. A lease
        // that runs out while its executor still lives only costs a duplicate call the
        // receiver can de-duplicate by (run, step).
        Duration::from_secs(timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS) + 5)
    }

    fn start<'a>(&'a self, attempt: &'a AttemptContext) -> BoxFuture<'a, StepOutcome> {
        Box::pin(async move {
            match self.call(attempt).await {
                Ok(output) => StepOutcome::Succeeded(output),
                Err(error) => StepOutcome::Failed(error),
            }
        })
    }
}

impl Http {
    async fn call(&self, attempt: &AttemptContext) -> Result<Value, String> {
        let url = url(&attempt.config)?;
        let body = json!({
            "run_id": attempt.run_id,
            "workflow": attempt.key,
            "step": attempt.step,
            "attempt": attempt.attempt,
            "input": attempt.context.get("input"),
            "steps": attempt.context.get("steps"),
        });
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let timeout = Duration::from_secs(attempt.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS));
        let mut request = self
            .client
            .post(url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_HEADER, &attempt.idempotency_key)
            .header("X-Caseledger-Run", attempt.run_id.to_string())
            .header("X-Caseledger-Step", &attempt.step);
        if let Some(secret) = &self.settings.secret {
            request = request.header(SIGNATURE_HEADER, signature(secret, &body));
        }
        let response = request.body(body).send().await.map_err(|e| {
            if e.is_timeout() {
                format!("the receiver did not answer within {} s", timeout.as_secs())
            } else {
                format!("could not reach the receiver: {e}")
            }
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("HTTP {}: the body could not be read: {e}", status.as_u16()))?;
        if !status.is_success() {
            return Err(format!(
                "HTTP {}: {}",
                status.as_u16(),
                text.chars().take(200).collect::<String>()
            ));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}
