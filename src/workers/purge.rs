//! Deletes personal data (rule 8) once its payment is final and the retention has passed.
//! The deletion is one idempotent UPDATE, so replicas running it at once do no harm.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use crate::service::Services;
use crate::store::StoreError;

/// One pass: returns how many payments' data was deleted.
pub async fn purge_due(services: &Services, now: OffsetDateTime) -> Result<u64, StoreError> {
    let retention = time::Duration::days(services.settings.personal_data.retention_days);
    services.store.purge_payer_data(now - retention, now).await
}

pub async fn run(services: Arc<Services>, interval: Duration, shutdown: watch::Receiver<bool>) {
    super::every(interval, shutdown, || async {
        match purge_due(&services, OffsetDateTime::now_utc()).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "personal data purged"),
            Err(error) => tracing::error!(%error, "personal data purge failed"),
        }
    })
    .await;
}
