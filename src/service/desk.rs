//! What the refunds desk reads: payment search, a payment's file (its audit trail and refunds,
//! and what is left to refund), single refunds, and the dead webhook deliveries.

use std::collections::HashMap;

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
    /// Who each actor of the audit trail and each refund's operator is, in words.
    pub actors: HashMap<String, String>,
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
    let refund_operators: Vec<String> = refunds
        .iter()
        .map(|r| format!("operator:{}", r.operator))
        .collect();
    let actors = actor_names(
        services,
        audit
            .iter()
            .map(|a| a.actor.as_str())
            .chain(refund_operators.iter().map(String::as_str)),
    )
    .await?;
    Ok(PaymentFile {
        refundable_minor: payment.amount_minor - held,
        payment,
        audit,
        refunds,
        actors,
    })
}

/// Who an audit trail's actors are, as an operator reads them: API clients and operators by
/// name, acquirers and workers in words. An actor not known any more keeps its raw form.
pub async fn actor_names<'a>(
    services: &Services,
    actors: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, String>, ServiceError> {
    let mut names = HashMap::new();
    let mut clients: Option<HashMap<Uuid, String>> = None;
    for actor in actors {
        if names.contains_key(actor) {
            continue;
        }
        let (kind, who) = actor.split_once(':').unwrap_or((actor, ""));
        let name = match kind {
            "client" => match Uuid::parse_str(who) {
                Ok(id) if id.is_nil() => Some("покупатель без входа (страница оплаты)".to_owned()),
                Ok(id) => {
                    if clients.is_none() {
                        clients = Some(
                            services
                                .store
                                .list_api_clients()
                                .await?
                                .into_iter()
                                .map(|c| (c.id, c.name))
                                .collect(),
                        );
                    }
                    clients
                        .as_ref()
                        .and_then(|known| known.get(&id))
                        .map(|name| format!("клиент API «{name}»"))
                }
                Err(_) => None,
            },
            "operator" => services
                .store
                .find_operator(who)
                .await?
                .map(|o| format!("оператор {} ({})", o.name, o.login)),
            "acquirer" => oplata_providers::AcquirerKind::parse(who)
                .map(|kind| format!("эквайер {}", kind.display_name())),
            "sms" => Some("SMS-платёж".to_owned()),
            "worker" if who == "reconciliation" => {
                Some("сверка с эквайером (автоматически)".to_owned())
            }
            "worker" => Some(format!("фоновая задача ({who})")),
            _ => None,
        };
        names.insert(actor.to_owned(), name.unwrap_or_else(|| actor.to_owned()));
    }
    Ok(names)
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
