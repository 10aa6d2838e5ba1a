//! The review list: payments and refunds whose outcome oplata could not learn by itself, and a
//! person's settlement of each ("the acquirer did it", "it never happened"), recorded in the
//! audit trail with the operator and a note.

use uuid::Uuid;

use super::{ServiceError, Services, refunds};
use crate::domain::payment::PaymentEvent;
use crate::store::{PaymentRecord, RefundRecord, SettledReview};

/// What a person found out at the acquirer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The acquirer did it: the payment was paid, the refund was paid back.
    Happened,
    /// It never happened: the payment fails, the refund fails and frees its amount.
    NeverHappened,
    /// Nothing to change in oplata's books (the facts were checked): the item leaves the list.
    Acknowledged,
}

/// How many settled items the list shows after the open ones.
const SETTLED_SHOWN: i64 = 20;

/// Everything on the review list, oldest first, and the items settled most lately.
#[derive(Debug)]
pub struct ReviewList {
    pub payments: Vec<PaymentRecord>,
    pub refunds: Vec<RefundRecord>,
    pub settled: Vec<SettledReview>,
}

pub async fn list(services: &Services) -> Result<ReviewList, ServiceError> {
    Ok(ReviewList {
        payments: services.store.payments_for_review().await?,
        refunds: services.store.refunds_for_review().await?,
        settled: services.store.settled_reviews(SETTLED_SHOWN).await?,
    })
}

/// Settles a payment on the review list.
#[tracing::instrument(skip_all, fields(payment_id = %payment_id))]
pub async fn resolve_payment(
    services: &Services,
    payment_id: Uuid,
    resolution: Resolution,
    operator: &str,
    note: &str,
) -> Result<PaymentRecord, ServiceError> {
    let event = match resolution {
        Resolution::Happened => Some(PaymentEvent::Succeeded),
        Resolution::NeverHappened => Some(PaymentEvent::Failed),
        Resolution::Acknowledged => None,
    };
    services
        .store
        .resolve_payment_review(payment_id, event, &format!("operator:{operator}"), note)
        .await?
        .ok_or(ServiceError::NotInReview)
}

/// Settles a refund on the review list; a refund is either paid back or not, so it cannot
/// merely be acknowledged.
#[tracing::instrument(skip_all, fields(refund_id = %refund_id))]
pub async fn resolve_refund(
    services: &Services,
    refund_id: Uuid,
    resolution: Resolution,
    operator: &str,
    note: &str,
) -> Result<RefundRecord, ServiceError> {
    let happened = match resolution {
        Resolution::Happened => true,
        Resolution::NeverHappened => false,
        Resolution::Acknowledged => return Err(ServiceError::InvalidResolution),
    };
    refunds::resolve_review(services, refund_id, happened, operator, note).await
}
