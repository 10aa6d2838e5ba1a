//! Deletes personal data (rule 8) once its payment is final and the retention has passed.
//! The deletion is one idempotent UPDATE, so replicas running it at once do no harm.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use crate::service::Services;
use crate::store::{RetentionCutoffs, RetentionReport, StoreError};

/// One pass: returns how many payments' data was deleted.
pub async fn purge_due(services: &Services, now: OffsetDateTime) -> Result<u64, StoreError> {
    let retention = time::Duration::days(services.settings.personal_data.retention_days);
    services.store.purge_payer_data(now - retention, now).await
}

/// Most batches one pass deletes per table, so a pass ends even on a huge backlog (the next
/// pass goes on).
const MAX_RETENTION_BATCHES: usize = 200;

/// One retention pass: deletes, in batches, every row past its retention; returns the rows
/// deleted per table. Counted in `oplata_retention_deleted_total{table}`.
pub async fn retention_due(
    services: &Services,
    now: OffsetDateTime,
) -> Result<RetentionReport, StoreError> {
    let settings = &services.settings.retention;
    let cutoffs = RetentionCutoffs {
        now,
        public_attempts: now - time::Duration::days(settings.public_attempts_days),
        sms_messages: now - time::Duration::days(settings.sms_messages_days),
        login_failures: now - time::Duration::days(settings.login_failures_days),
        webhook_events: now - time::Duration::days(settings.webhook_events_days),
    };
    let mut total = RetentionReport::default();
    for _ in 0..MAX_RETENTION_BATCHES {
        let batch = services
            .store
            .purge_retained(&cutoffs, settings.batch)
            .await?;
        for (table, deleted) in batch.per_table() {
            metrics::counter!("oplata_retention_deleted_total", "table" => table)
                .increment(deleted);
        }
        total.idempotency_keys += batch.idempotency_keys;
        total.operator_sessions += batch.operator_sessions;
        total.public_attempts += batch.public_attempts;
        total.sms_messages += batch.sms_messages;
        total.login_failures += batch.login_failures;
        total.webhook_events += batch.webhook_events;
        let full = batch
            .per_table()
            .iter()
            .any(|(_, deleted)| i64::try_from(*deleted).unwrap_or(i64::MAX) >= settings.batch);
        if !full {
            break;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!("oplata_retention_last_pass_timestamp_seconds")
        .set(now.unix_timestamp() as f64);
    Ok(total)
}

pub async fn run(services: Arc<Services>, interval: Duration, shutdown: watch::Receiver<bool>) {
    super::every(interval, shutdown, || async {
        let now = OffsetDateTime::now_utc();
        match purge_due(&services, now).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "personal data purged"),
            Err(error) => tracing::error!(%error, "personal data purge failed"),
        }
        match retention_due(&services, now).await {
            Ok(report) if report.total() == 0 => {}
            Ok(report) => tracing::info!(?report, "rows past their retention deleted"),
            Err(error) => tracing::error!(%error, "retention pass failed"),
        }
    })
    .await;
}
