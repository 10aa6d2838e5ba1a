//! The events oplata publishes through its outbox: what billing's webhook receives about
//! payments, refunds and cards, and the late SMS replies the SMS gateway sends. These are wire
//! formats other teams depend on; the store writes them in the same transaction as the change
//! they describe, but they are shaped here.

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::{PaymentRecord, RefundRecord, SavedCardRecord};

/// A record that cannot be described (an amount or a time out of range): the data is corrupt.
#[derive(Debug, thiserror::Error)]
#[error("the event cannot be written: {0}")]
pub struct Unwritable(String);

#[derive(Serialize)]
struct PaymentEventBody<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    payment_id: Uuid,
    status: &'a str,
    amount: String,
    currency: &'a str,
    supplier_id: &'a str,
    account_number: &'a str,
    acquirer: &'a str,
    acquirer_order_id: &'a str,
    occurred_at: String,
}

#[derive(Serialize)]
struct RefundEventBody<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    refund_id: Uuid,
    payment_id: Uuid,
    amount: String,
    status: &'a str,
    operator: &'a str,
    occurred_at: String,
}

#[derive(Serialize)]
struct CardEventBody<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    card_id: Uuid,
    user_id: &'a str,
    payment_type: &'a str,
    acquirer: &'a str,
    brand: &'a str,
    last4: &'a str,
    occurred_at: String,
}

#[derive(Serialize)]
struct SmsReplyBody<'a> {
    #[serde(rename = "type")]
    event_type: &'static str,
    message_id: &'a str,
    to: &'a str,
    text: &'a str,
    payment_id: Uuid,
    occurred_at: String,
}

/// The billing system's view of a payment.
pub fn payment(
    payment: &PaymentRecord,
    event_type: &str,
    at: OffsetDateTime,
) -> Result<String, Unwritable> {
    to_json(&PaymentEventBody {
        event_type,
        payment_id: payment.id,
        status: payment.status.as_str(),
        amount: amount(payment.amount_minor)?,
        currency: &payment.currency,
        supplier_id: &payment.supplier_id,
        account_number: &payment.account_number,
        acquirer: payment.acquirer.as_str(),
        acquirer_order_id: &payment.acquirer_order_id,
        occurred_at: timestamp(at)?,
    })
}

pub fn refund(
    refund: &RefundRecord,
    event_type: &str,
    at: OffsetDateTime,
) -> Result<String, Unwritable> {
    to_json(&RefundEventBody {
        event_type,
        refund_id: refund.id,
        payment_id: refund.payment_id,
        amount: amount(refund.amount_minor)?,
        status: refund.status.as_str(),
        operator: &refund.operator,
        occurred_at: timestamp(at)?,
    })
}

/// A card saved, deleted or revoked (never its token).
pub fn card(
    card: &SavedCardRecord,
    event_type: &str,
    at: OffsetDateTime,
) -> Result<String, Unwritable> {
    to_json(&CardEventBody {
        event_type,
        card_id: card.id,
        user_id: &card.user_id,
        payment_type: card.payment_type.as_str(),
        acquirer: card.acquirer.as_str(),
        brand: &card.brand,
        last4: &card.last4,
        occurred_at: timestamp(at)?,
    })
}

/// The reply to an SMS that was answered "processing", sent when its payment settles.
pub fn sms_reply(
    message_id: &str,
    to: &str,
    text: &str,
    payment_id: Uuid,
    at: OffsetDateTime,
) -> Result<String, Unwritable> {
    to_json(&SmsReplyBody {
        event_type: "sms.reply",
        message_id,
        to,
        text,
        payment_id,
        occurred_at: timestamp(at)?,
    })
}

fn amount(minor: i64) -> Result<String, Unwritable> {
    oplata_providers::Amount::from_minor(minor)
        .map(|amount| amount.to_string())
        .map_err(|e| Unwritable(e.to_string()))
}

fn timestamp(at: OffsetDateTime) -> Result<String, Unwritable> {
    at.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| Unwritable(e.to_string()))
}

fn to_json(body: &impl Serialize) -> Result<String, Unwritable> {
    serde_json::to_string(body).map_err(|e| Unwritable(e.to_string()))
}
