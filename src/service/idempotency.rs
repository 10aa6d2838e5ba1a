//! The life of an idempotency key around one request: claimed before it runs (with the lease
//! and lifetime every key gets), then completed with the answer, released after a refusal that
//! wrote nothing, or reopened after a failure so that a retry resumes what the request started.
//! The HTTP API, the pay page and the desk's refund form all end their keys here.

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::Services;
use crate::store::{IdempotencyClaim, StoreError, StoredResponse};

/// How a request that held a key ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It answered: later requests with the key get this answer again.
    Answered(StoredResponse),
    /// It was refused before it wrote anything (a rule, a limit): the key is free again, so
    /// the request may be corrected or sent again later.
    RefusedUnwritten,
    /// It failed (the database went away, a bug) and may have left its resource half made:
    /// the key stays bound to that resource and is given back at once, so that the retry
    /// resumes it. A stored failure would hide a payment from its client for good.
    Interrupted,
}

/// Claims `key` of `client_id` for one request.
pub async fn claim(
    services: &Services,
    client_id: Uuid,
    key: &str,
    fingerprint: &str,
) -> Result<IdempotencyClaim, StoreError> {
    let now = OffsetDateTime::now_utc();
    services
        .store
        .claim_idempotency_key(
            client_id,
            key,
            fingerprint,
            now,
            lease_until(services, now),
            expires_at(services, now),
        )
        .await
}

/// Until when a key claimed `now` is its request's. A request that has not answered within the
/// lease is presumed dead: its key may be retaken, and the taker resumes what it started.
pub fn lease_until(services: &Services, now: OffsetDateTime) -> OffsetDateTime {
    now + Duration::seconds(
        i64::try_from(services.settings.idempotency_lease_secs).unwrap_or(i64::MAX),
    )
}

/// When a key claimed `now` may be forgotten.
pub fn expires_at(services: &Services, now: OffsetDateTime) -> OffsetDateTime {
    now + Duration::hours(services.settings.idempotency_ttl_hours)
}

/// Ends the key as `ending` says. A failure to record it is logged, not returned: the request's
/// own answer stands, and an unrecorded key frees itself when its lease runs out.
pub async fn end(services: &Services, client_id: Uuid, key: &str, ending: Ending) {
    let recorded = match &ending {
        Ending::Answered(response) => {
            services
                .store
                .complete_idempotency_key(client_id, key, response)
                .await
        }
        Ending::RefusedUnwritten => services.store.release_idempotency_key(client_id, key).await,
        Ending::Interrupted => {
            services
                .store
                .reopen_idempotency_key(client_id, key, OffsetDateTime::now_utc())
                .await
        }
    };
    if let Err(error) = recorded {
        let error = crate::telemetry::Chain(&error);
        tracing::error!(%error, "could not record how an idempotent request ended");
    }
}
