//! The fiscal receipt of a stored payment or refund, from its supplier's settings.

use oplata_providers::{Amount, Receipt};

use super::Services;
use crate::domain::receipt;
use crate::store::PaymentRecord;

/// The receipt for `amount` of `payment` (the whole payment, or a refund of part of it); `None`
/// when the supplier issues no receipts through the acquirer.
pub fn for_payment(
    services: &Services,
    payment: &PaymentRecord,
    amount: Amount,
) -> Option<Receipt> {
    let policy = services
        .suppliers
        .supplier(&payment.supplier_id)?
        .receipt
        .as_ref()?;
    let Some(contact) = receipt::contact(payment.email.as_deref(), payment.phone.as_deref()) else {
        // Made before the supplier's receipts were switched on: the acquirer's cashbox
        // settings decide, and a person can issue the receipt by hand.
        tracing::warn!(payment_id = %payment.id, "a payment of a supplier with receipts has no e-mail or phone");
        return None;
    };
    Some(policy.receipt(&payment.account_number, amount, contact))
}
