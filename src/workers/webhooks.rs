//! Delivers outbox events to the billing system's endpoints: signed (Standard Webhooks), at least
//! once, in order per payment, retried with exponential backoff and jitter for the retry window
//! (24 hours at least), then dead-lettered where the desk and `/v1/webhooks/dead` show them.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::config::WebhookEndpoint;
use crate::service::Services;
use crate::store::{DueDelivery, StoreError, WebhookAttempt, first_row_id_at};

const LEASE: time::Duration = time::Duration::minutes(2);
const BATCH: i64 = 200;
/// A pass goes on claiming while batches come back full, up to this many: a backlog drains at
/// the endpoint's pace, not one batch per interval.
const MAX_BATCHES_PER_PASS: usize = 10;
/// How many claim-send-record loops a pass runs side by side per endpoint.
const LANES: usize = 2;
/// How many deliveries of a batch are on the wire at once (each to another payment).
const SENDS_AT_ONCE: usize = 16;
/// Every pass queues the events written since the last one; the pass at a process's start, and
/// one an hour after that, also match the whole outbox against its deliveries, for an endpoint
/// just configured.
const FULL_QUEUE_EVERY: Duration = Duration::from_secs(3600);

/// When this process last matched the whole outbox against its deliveries.
#[derive(Debug, Default)]
pub struct QueueState {
    last_full: std::sync::Mutex<Option<std::time::Instant>>,
}

impl QueueState {
    /// Whether this pass is one to match the whole outbox; records it when it is.
    fn full_pass_due(&self) -> bool {
        self.full_pass_due_at(std::time::Instant::now())
    }

    fn full_pass_due_at(&self, now: std::time::Instant) -> bool {
        let mut last = self
            .last_full
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let due = last.is_none_or(|at| now.duration_since(at) >= FULL_QUEUE_EVERY);
        if due {
            *last = Some(now);
        }
        due
    }
}

pub async fn run(services: Arc<Services>, interval: Duration, shutdown: watch::Receiver<bool>) {
    let Ok(http) =
        oplata_providers::http_client(Duration::from_secs(services.settings.webhooks.timeout_secs))
    else {
        tracing::error!("webhook delivery cannot build its HTTP client");
        return;
    };
    super::every(interval, shutdown, || async {
        match deliver_due(&services, &http, OffsetDateTime::now_utc()).await {
            Ok(0) => {}
            Ok(sent) => tracing::info!(sent, "webhook delivery pass"),
            Err(error) => tracing::error!(%error, "webhook delivery pass failed"),
        }
    })
    .await;
}

/// One pass over every endpoint; returns how many deliveries were attempted.
pub async fn deliver_due(
    services: &Services,
    http: &reqwest::Client,
    now: OffsetDateTime,
) -> Result<usize, StoreError> {
    let mut attempted = 0;
    let endpoints = &services.settings.webhooks.endpoints;
    let names: Vec<&str> = endpoints.iter().map(|e| e.name.as_str()).collect();
    services.store.queue_new_webhooks(&names).await?;
    if services.webhook_queue.full_pass_due() {
        let kept = services.settings.retention.webhook_events_days - 1;
        let since = first_row_id_at(now - time::Duration::days(kept));
        for name in &names {
            services.store.queue_all_webhooks(name, since).await?;
        }
    }
    for endpoint in endpoints {
        let (sent, full) = claim_and_deliver(services, http, endpoint, now).await?;
        attempted += sent;
        if !full {
            continue;
        }
        // A backlog: several claim-send-record loops side by side. A claimed event's lease
        // keeps it, and its payment's later events, out of the other loops' claims.
        let lanes = (0..LANES).map(|_| async {
            let mut attempted = 0;
            for _ in 0..MAX_BATCHES_PER_PASS / LANES {
                let (sent, full) = claim_and_deliver(services, http, endpoint, now).await?;
                attempted += sent;
                if !full {
                    break;
                }
            }
            Ok::<usize, StoreError>(attempted)
        });
        for lane in futures_util::future::join_all(lanes).await {
            attempted += lane?;
        }
    }
    Ok(attempted)
}

/// Claims one batch and delivers it; answers how many were attempted and whether the batch
/// was full (more may be due).
async fn claim_and_deliver(
    services: &Services,
    http: &reqwest::Client,
    endpoint: &WebhookEndpoint,
    now: OffsetDateTime,
) -> Result<(usize, bool), StoreError> {
    let due = services
        .store
        .claim_webhooks(&endpoint.name, now, now + LEASE, BATCH)
        .await?;
    let full = due.len() == usize::try_from(BATCH).unwrap_or(usize::MAX);
    Ok((
        deliver_batch(services, http, endpoint, due, now).await?,
        full,
    ))
}

async fn deliver_batch(
    services: &Services,
    http: &reqwest::Client,
    endpoint: &WebhookEndpoint,
    due: Vec<DueDelivery>,
    now: OffsetDateTime,
) -> Result<usize, StoreError> {
    // A batch holds at most the first undelivered event of each payment, so its events go out
    // side by side without breaking any payment's order.
    let sent: Vec<(DueDelivery, Result<(), String>)> = futures_util::stream::iter(due)
        .map(|delivery| async move {
            let outcome = send(http, endpoint, &delivery, now).await;
            (delivery, outcome)
        })
        .buffer_unordered(SENDS_AT_ONCE)
        .collect()
        .await;
    let settings = &services.settings.webhooks;
    let attempts: Vec<(uuid::Uuid, WebhookAttempt<'_>)> = sent
        .iter()
        .map(|(delivery, outcome)| {
            let attempt = match outcome {
                Ok(()) => WebhookAttempt::Delivered,
                Err(error)
                    if now - delivery.created_at
                        >= time::Duration::hours(settings.retry_window_hours) =>
                {
                    tracing::error!(event_id = %delivery.event_id, endpoint = %endpoint.name, %error, "webhook dead-lettered");
                    WebhookAttempt::Dead { error }
                }
                Err(error) => {
                    let wait = super::reconciliation::backoff(
                        u32::try_from(delivery.attempts).unwrap_or(u32::MAX),
                        Duration::from_secs(settings.max_backoff_secs),
                    );
                    tracing::warn!(event_id = %delivery.event_id, endpoint = %endpoint.name, %error, "webhook delivery failed; will retry");
                    WebhookAttempt::Retry {
                        at: now + wait,
                        error,
                    }
                }
            };
            (delivery.event_id, attempt)
        })
        .collect();
    services
        .store
        .record_webhook_attempts(&endpoint.name, &attempts, now)
        .await?;
    Ok(attempts.len())
}

/// The body every endpoint receives: the event's id, type and time, and its data.
fn body(delivery: &DueDelivery) -> String {
    let data: serde_json::Value =
        serde_json::from_str(&delivery.payload).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "id": delivery.event_id,
        "type": delivery.event_type,
        "created_at": delivery.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "data": data,
    })
    .to_string()
}

async fn send(
    http: &reqwest::Client,
    endpoint: &WebhookEndpoint,
    delivery: &DueDelivery,
    now: OffsetDateTime,
) -> Result<(), String> {
    let body = body(delivery);
    let id = delivery.event_id.to_string();
    let timestamp = now.unix_timestamp();
    let signature = crate::webhooks::sign(&endpoint.secrets, &id, timestamp, body.as_bytes())
        .map_err(|e| e.to_string())?;
    let response = http
        .post(endpoint.url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "timeout".to_owned()
            } else {
                "connection failed".to_owned()
            }
        })?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", response.status().as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_outbox_is_matched_at_the_first_pass_and_hourly() {
        let queue = QueueState::default();
        let start = std::time::Instant::now();
        let at = |seconds: u64| queue.full_pass_due_at(start + Duration::from_secs(seconds));
        assert!(at(0), "the first pass");
        assert!(!at(5));
        assert!(!at(3599));
        assert!(at(3600), "an hour after the last full pass");
        assert!(!at(3605));
        assert!(at(7200));
    }
}
