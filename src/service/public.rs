//! Anonymous payments by account number: the public page and `POST /v1/public/payments`.

use uuid::Uuid;

use super::payments::{Method, Origin, create_or_resume};
use super::{ServiceError, Services};
use crate::domain::new_payment::PaymentDraft;
use crate::store::{ClaimedKey, PaymentRecord};

/// A new-card payment without a user; never saves the card. The abuse limits are checked and the
/// attempt recorded in the transaction that creates the payment.
pub async fn create(
    services: &Services,
    client_ip: &str,
    draft: &PaymentDraft<'_>,
    key: ClaimedKey,
) -> Result<PaymentRecord, ServiceError> {
    debug_assert!(draft.user_id.is_none());
    // Rule 6: without sign-in, only the suppliers open to anonymous payers.
    if services
        .suppliers
        .supplier(draft.supplier_id)
        .is_some_and(|s| !s.anonymous)
    {
        return Err(crate::domain::new_payment::PaymentRuleError::SupplierNotPublic.into());
    }
    let origin = Origin::Public {
        client_ip: client_ip.to_owned(),
        limits: services.settings.public_limits(),
    };
    create_or_resume(
        services,
        &origin,
        draft,
        Method::NewCard { save: false },
        key,
    )
    .await
}

/// The payment as the public result page shows it: anyone holding its id may see its status.
pub async fn get(services: &Services, id: Uuid) -> Result<PaymentRecord, ServiceError> {
    services
        .store
        .get_payment(id)
        .await?
        .filter(|p| p.client_id.is_none())
        .ok_or(ServiceError::NotFound)
}
