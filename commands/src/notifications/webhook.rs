//! The webhook adapter: JSON over HTTP POST, signed with HMAC-SHA256, carrying an idempotency
//! key; and the channel configuration (`CASELEDGER_WEBHOOK_URL` and its secret) that picks it.
//!
//! Every send is bounded by the configured timeout, so a slow or silent receiver costs one
//! failed attempt, never a stalled dispatcher.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::channel::{Delivery, LogChannel, NotificationChannel, SendFuture};

/// Header carrying `sha256=<hex HMAC-SHA256 of the body>` under the shared secret.
pub const SIGNATURE_HEADER: &str = "x-caseledger-signature";
/// The idempotency header: on webhooks it carries the notification id (the same on every
/// attempt, so receivers drop repeats); clients send it to the API on claim-next and task
/// creation.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Why a channel configuration is refused at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ChannelConfigError {
    #[error("CASELEDGER_WEBHOOK_URL {url:?} is not an http(s) URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("CASELEDGER_WEBHOOK_SECRET must be set (at least 16 characters) when CASELEDGER_WEBHOOK_URL is: deliveries are signed with it")]
    MissingSecret,
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

/// The webhook when `url` is given (with its secret), else the log sink.
pub fn channel_from_config(
    url: Option<&str>,
    secret: Option<&str>,
    timeout: Duration,
) -> Result<Arc<dyn NotificationChannel>, ChannelConfigError> {
    match url.filter(|u| !u.trim().is_empty()) {
        None => Ok(Arc::new(LogChannel)),
        Some(url) => Ok(Arc::new(Webhook::new(url, secret, timeout)?)),
    }
}

/// Posts deliveries to one URL.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: reqwest::Url,
    secret: Vec<u8>,
    client: reqwest::Client,
}

impl Webhook {
    /// A webhook to `url` (http or https, with a host), signing with `secret` (at least 16
    /// characters).
    pub fn new(
        url: &str,
        secret: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, ChannelConfigError> {
        let parsed = reqwest::Url::parse(url.trim()).map_err(|e| ChannelConfigError::BadUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ChannelConfigError::BadUrl {
                url: url.to_owned(),
                reason: "use http:// or https:// with a host".into(),
            });
        }
        let secret = secret
            .filter(|s| s.len() >= 16)
            .ok_or(ChannelConfigError::MissingSecret)?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ChannelConfigError::Client(e.to_string()))?;
        Ok(Webhook {
            url: parsed,
            secret: secret.as_bytes().to_vec(),
            client,
        })
    }

    async fn post(&self, delivery: &Delivery) -> Result<String, String> {
        let body = serde_json::to_vec(delivery).map_err(|e| e.to_string())?;
        let response = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_HEADER, delivery.notification_id.to_string())
            .header(SIGNATURE_HEADER, signature(&self.secret, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "the receiver did not answer in time".to_owned()
                } else {
                    format!("could not reach the receiver: {e}")
                }
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(format!("HTTP {}", status.as_u16()))
        } else {
            let text = response.text().await.unwrap_or_default();
            Err(format!(
                "HTTP {}: {}",
                status.as_u16(),
                text.chars().take(200).collect::<String>()
            ))
        }
    }
}

impl NotificationChannel for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(&'a self, delivery: &'a Delivery) -> SendFuture<'a> {
        Box::pin(self.post(delivery))
    }
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; the error case cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}
