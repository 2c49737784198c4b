//! Webhook notifications: request created, request decided, grant expired.
//!
//! Each POST carries the JSON body and a `Vigil-Signature: t=<unix seconds>,v1=<hex>` header,
//! where `v1` is HMAC-SHA-256 of `"{t}.{body}"` under the webhook's secret. A receiver recomputes
//! it and rejects bodies whose `t` is too old, which stops replays. Failed deliveries (network
//! error or a non-2xx answer) are retried with doubling backoff; every attempt is reported to the
//! caller, which records it.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::Duration;
use vigil_core::{SecretRef, Timestamp};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Vigil-Signature";

/// Body format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Vigil's own JSON: `{"event": …, "request": {…}, "approve_url": …}`.
    #[default]
    Json,
    /// A Slack incoming-webhook payload (`{"text": …}`) with the approve link.
    Slack,
}

/// `[[webhooks]]` in the config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    /// HMAC key, as `env:NAME` or `file:PATH`.
    pub secret: SecretRef,
    #[serde(default)]
    pub format: Format,
    /// Events to send: `request_created`, `request_decided`, `request_expired`,
    /// `grant_expired` (default all).
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_attempts() -> u32 {
    5
}
fn default_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl WebhookConfig {
    pub fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }
}

/// Something to tell approvers about.
#[derive(Clone, Debug, Serialize)]
pub struct Notification {
    /// `request_created`, `request_decided`, `request_expired` or `grant_expired`.
    pub event: String,
    /// The subject: request (or grant) fields, free of secrets and statement literals.
    pub data: serde_json::Value,
    /// Where an approver acts (the API's request URL), if known.
    pub approve_url: Option<String>,
    /// A one-line summary for humans.
    pub summary: String,
}

/// One delivery attempt, for the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub webhook: String,
    pub event: String,
    pub attempt: u32,
    pub at: Timestamp,
    /// HTTP status, when the receiver answered.
    pub status: Option<u16>,
    pub delivered: bool,
    /// What went wrong (network error text, or the status).
    pub error: Option<String>,
}

/// The signature header value for `body` at time `t` (unix seconds).
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header as a receiver would: right MAC, and `t` within `tolerance` of now.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance: Duration,
) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now_unix - t).unsigned_abs() > tolerance.as_secs() {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}

/// The body for `hook`'s format.
pub fn body(format: Format, n: &Notification) -> Vec<u8> {
    let value = match format {
        Format::Json => serde_json::json!({
            "event": n.event,
            "data": n.data,
            "approve_url": n.approve_url,
            "summary": n.summary,
        }),
        Format::Slack => {
            let mut text = format!("*Vigil* {}", n.summary);
            if let Some(url) = &n.approve_url {
                text.push_str(&format!("\n<{url}|Review and approve>"));
            }
            serde_json::json!({ "text": text })
        }
    };
    serde_json::to_vec(&value).expect("JSON values serialize")
}

/// Delivers `n` to `hook`, retrying with doubling backoff, reporting every attempt. Returns
/// whether it was delivered.
pub async fn deliver(
    client: &reqwest::Client,
    hook: &WebhookConfig,
    secret: &[u8],
    n: &Notification,
    mut report: impl FnMut(Attempt),
) -> bool {
    let body = body(hook.format, n);
    let mut backoff = hook.initial_backoff;
    for attempt in 1..=hook.max_attempts.max(1) {
        let t = Timestamp::now().as_micros() / 1_000_000;
        let result = client
            .post(&hook.url)
            .timeout(hook.timeout)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, sign(secret, t, &body))
            .body(body.clone())
            .send()
            .await;
        let (status, error) = match result {
            Ok(resp) if resp.status().is_success() => (Some(resp.status().as_u16()), None),
            Ok(resp) => (
                Some(resp.status().as_u16()),
                Some(format!("HTTP {}", resp.status())),
            ),
            Err(e) => (None, Some(e.without_url().to_string())),
        };
        let delivered = error.is_none();
        report(Attempt {
            webhook: hook.name.clone(),
            event: n.event.clone(),
            attempt,
            at: Timestamp::now(),
            status,
            delivered,
            error,
        });
        if delivered {
            return true;
        }
        if attempt < hook.max_attempts {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(300));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    /// A received body and its signature header.
    type SignedBody = (String, Vec<u8>);

    #[test]
    fn signatures_verify_and_expire() {
        let s = sign(b"k", 1_000, b"{}");
        assert!(verify(b"k", &s, b"{}", 1_010, Duration::from_secs(300)));
        assert!(
            !verify(b"k", &s, b"{ }", 1_010, Duration::from_secs(300)),
            "body changed"
        );
        assert!(
            !verify(b"other", &s, b"{}", 1_010, Duration::from_secs(300)),
            "wrong key"
        );
        assert!(
            !verify(b"k", &s, b"{}", 2_000, Duration::from_secs(300)),
            "replayed late"
        );
    }

    #[tokio::test]
    async fn retries_until_delivered_and_reports_each_attempt() {
        let hits = Arc::new(AtomicU32::new(0));
        let seen: Arc<Mutex<Vec<SignedBody>>> = Arc::default();
        let (h, sn) = (hits.clone(), seen.clone());
        let app = axum::Router::new().route(
            "/hook",
            post(
                move |headers: HeaderMap, body: axum::body::Bytes| async move {
                    let n = h.fetch_add(1, Ordering::SeqCst);
                    let sig = headers[SIGNATURE_HEADER].to_str().unwrap().to_string();
                    sn.lock().unwrap().push((sig, body.to_vec()));
                    if n < 2 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::NO_CONTENT
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let hook = WebhookConfig {
            name: "ops".into(),
            url: format!("http://{addr}/hook"),
            secret: SecretRef::Env("UNUSED".into()),
            format: Format::Slack,
            events: vec![],
            max_attempts: 5,
            initial_backoff: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
        };
        let n = Notification {
            event: "request_created".into(),
            data: serde_json::json!({"id": "r1"}),
            approve_url: Some("http://vigil/api/v1/access-requests/r1".into()),
            summary: "etl asks for ehr".into(),
        };
        let mut attempts = Vec::new();
        assert!(
            deliver(&reqwest::Client::new(), &hook, b"s3cret", &n, |a| attempts
                .push(a))
            .await
        );
        assert_eq!(attempts.len(), 3);
        assert_eq!(attempts[0].status, Some(503));
        assert!(attempts[2].delivered);
        let seen = seen.lock().unwrap();
        let (sig, body) = &seen[2];
        let now = Timestamp::now().as_micros() / 1_000_000;
        assert!(verify(b"s3cret", sig, body, now, Duration::from_secs(60)));
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert!(v["text"].as_str().unwrap().contains("Review and approve"));
    }
}
