//! What the refunds desk reads: payment search, a payment's file (its audit trail and refunds,
//! and what is left to refund), single refunds, and the dead webhook deliveries.

use uuid::Uuid;

use super::{ServiceError, Services};
use crate::store::{
    AttentionCounts, AuditRecord, DeliveryRecord, PaymentRecord, PaymentSearch, RefundRecord,
};

/// A payment as the desk shows it.
#[derive(Debug, Clone)]
pub struct PaymentFile {
    pub payment: PaymentRecord,
    pub audit: Vec<AuditRecord>,
    pub refunds: Vec<RefundRecord>,
    /// What may still be refunded: the amount less every refund that holds part of it.
    pub refundable_minor: i64,
}

pub async fn search(
    services: &Services,
    search: &PaymentSearch,
) -> Result<Vec<PaymentRecord>, ServiceError> {
    Ok(services.store.search_payments(search).await?)
}

/// Any payment, whoever created it: the desk sees them all.
pub async fn payment(services: &Services, id: Uuid) -> Result<PaymentRecord, ServiceError> {
    services
        .store
        .get_payment(id)
        .await?
        .ok_or(ServiceError::NotFound)
}

pub async fn payment_file(services: &Services, id: Uuid) -> Result<PaymentFile, ServiceError> {
    let payment = payment(services, id).await?;
    let audit = services.store.payment_audit(id).await?;
    let refunds = services.store.list_refunds(id).await?;
    let held = held_minor(&refunds);
    Ok(PaymentFile {
        refundable_minor: payment.amount_minor - held,
        payment,
        audit,
        refunds,
    })
}

/// The sum of the refunds that hold part of a payment (a failed one frees its amount).
fn held_minor(refunds: &[RefundRecord]) -> i64 {
    refunds
        .iter()
        .filter(|refund| refund.status.holds_amount())
        .map(|refund| refund.amount_minor)
        .sum()
}

pub async fn refund(services: &Services, id: Uuid) -> Result<RefundRecord, ServiceError> {
    services
        .store
        .get_refund(id)
        .await?
        .ok_or(ServiceError::NotFound)
}

/// Refunds waiting to be done in an acquirer's cabinet, oldest first.
pub async fn refunds_awaiting(services: &Services) -> Result<Vec<RefundRecord>, ServiceError> {
    Ok(services.store.refunds_awaiting().await?)
}

/// Webhook deliveries that gave up.
pub async fn dead_webhooks(services: &Services) -> Result<Vec<DeliveryRecord>, ServiceError> {
    Ok(services.store.dead_webhooks().await?)
}

/// How many things wait for a person (the `/metrics` gauges).
pub async fn attention(services: &Services) -> Result<AttentionCounts, ServiceError> {
    Ok(services.store.attention_counts().await?)
}
