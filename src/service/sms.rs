//! The SMS-payment flow: an inbound SMS becomes a saved-card charge, or a refusal, and always a
//! reply (rule 14 and rules 2, 3 and 8 in src/domain).

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::api_keys::ApiClient;
use super::payments::{Method, Origin, create_as};
use super::{ServiceError, Services};
use crate::domain::cards::CardRuleError;
use crate::domain::new_payment::PaymentDraft;
use crate::domain::payment::{PaymentEvent, PaymentStatus};
use crate::domain::sms::{Command, Reply, SmsState, decide, kind, local_day, parse};
use crate::domain::supplier::PaymentType;
use crate::store::{SmsClaim, SmsClaimResult, SmsJudgement, SmsMessageRecord, StatusChange};

/// A charge that has run this long without finishing belongs to a process that died.
const STALE_CHARGE: Duration = Duration::minutes(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    #[error("the phone must be in E.164 form, e.g. +79161234567")]
    InvalidPhone,
    #[error("message_id must be 1 to 128 printable ASCII characters")]
    InvalidMessageId,
    #[error("the text must be at most 1000 characters")]
    InvalidText,
    #[error("this phone is linked to another user")]
    PhoneTaken,
    #[error("this SMS is still being processed; deliver it again shortly")]
    InProgress,
}

/// `+` and 8 to 15 digits, the first not 0.
pub fn valid_phone(phone: &str) -> bool {
    let digits = phone.strip_prefix('+').unwrap_or("");
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// One inbound SMS as the gateway posts it.
#[derive(Debug, Clone, Copy)]
pub struct InboundSms<'a> {
    pub message_id: &'a str,
    pub from: &'a str,
    pub text: &'a str,
    pub received_at: OffsetDateTime,
}

/// What a payment SMS resolved to before the limits are looked at.
#[derive(Debug, Clone)]
struct Plan {
    user_id: String,
    supplier_id: String,
    card_id: Uuid,
    /// Today in the supplier's time zone.
    account_day: String,
    /// The sender, where the fiscal receipt goes (a Russian number; others have none).
    receipt_phone: Option<String>,
    /// The supplier and the card, named in the reply: a typo or a stranger shows at once.
    payee: String,
}

/// Answers one inbound SMS; a redelivered `message_id` gets the first reply and nothing else.
#[tracing::instrument(skip_all, fields(message_id = sms.message_id))]
pub async fn handle_inbound(
    services: &Services,
    gateway: &ApiClient,
    sms: &InboundSms<'_>,
) -> Result<String, ServiceError> {
    if sms.message_id.is_empty()
        || sms.message_id.len() > 128
        || !sms.message_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(SmsError::InvalidMessageId.into());
    }
    if !valid_phone(sms.from) {
        return Err(SmsError::InvalidPhone.into());
    }
    if sms.text.chars().count() > 1000 {
        return Err(SmsError::InvalidText.into());
    }
    let now = services.clock.now();
    let day = local_day(now, &services.settings.sms_time_zone());
    let command = parse(sms.text);
    let (refusal, plan) = match &command {
        Command::Pay { account, amount } => {
            match plan_payment(services, sms.from, account, *amount, now).await? {
                Ok(plan) => (None, Some(plan)),
                Err(reply) => (Some(reply), None),
            }
        }
        Command::Help | Command::Malformed => (None, None),
    };
    let payment_id = Uuid::now_v7();
    let claim = SmsClaim {
        message_id: sms.message_id,
        phone: sms.from,
        local_day: &day,
        account_day: plan.as_ref().map(|p| p.account_day.as_str()),
        command: &command,
        supplier_id: plan.as_ref().map(|p| p.supplier_id.as_str()),
        payment_id,
        payee: plan.as_ref().map(|p| p.payee.as_str()),
        received_at: sms.received_at,
        now,
    };
    let caps = services.settings.sms.phone_caps();
    let judge = |today| {
        let (counted_as, reply) = decide(&command, today, caps, refusal);
        SmsJudgement {
            counted_as,
            reply: reply.map(|reply| reply.text()),
        }
    };
    match services.store.claim_sms(&claim, judge).await? {
        SmsClaimResult::Seen(seen) => replay(services, *seen).await,
        SmsClaimResult::Answered(reply) => Ok(reply),
        SmsClaimResult::Accepted => {
            let (Command::Pay { account, amount }, Some(plan)) = (&command, plan) else {
                return Err(ServiceError::internal(
                    "an SMS was accepted without a payment plan",
                ));
            };
            charge(
                services,
                gateway,
                sms.message_id,
                &plan,
                account,
                *amount,
                payment_id,
            )
            .await
        }
    }
}

/// The reply a stored SMS already got; a charge still running is either alive (the gateway
/// retries) or dead, and then settled from its payment.
async fn replay(services: &Services, seen: SmsMessageRecord) -> Result<String, ServiceError> {
    if seen.state != SmsState::InProgress {
        return Ok(seen.reply);
    }
    if services.clock.now() - seen.updated_at < STALE_CHARGE {
        return Err(SmsError::InProgress.into());
    }
    let payment = match seen.payment_id {
        Some(id) => services.store.get_payment(id).await?,
        None => None,
    };
    if payment.is_some() {
        Ok(services
            .store
            .finish_sms_charge(&seen.message_id, OffsetDateTime::now_utc())
            .await?)
    } else {
        let reply = Reply::NotDone.text();
        services
            .store
            .conclude_sms(
                &seen.message_id,
                Some(kind::ABORTED),
                &reply,
                OffsetDateTime::now_utc(),
            )
            .await?;
        Ok(reply)
    }
}

/// The phone's user, the supplier the account belongs to (one this user has paid with full card
/// entry: rule 3), and a saved card of its payment type (rule 2). Each miss is a reply.
async fn plan_payment(
    services: &Services,
    phone: &str,
    account: &str,
    amount: oplata_providers::Amount,
    now: OffsetDateTime,
) -> Result<Result<Plan, Reply>, ServiceError> {
    let Some((user_id, linked_by)) = services.store.sms_phone_user(phone).await? else {
        return Ok(Err(Reply::PhoneNotLinked));
    };
    let matching: Vec<_> = services
        .suppliers
        .iter()
        .filter(|e| e.supplier.accepts_account(account))
        .collect();
    if matching.is_empty() {
        return Ok(Err(Reply::UnknownAccount));
    }
    let history = services
        .store
        .full_entry_accounts(linked_by, &user_id)
        .await?;
    // Only an account (supplier and number) this user has already paid with the card entered:
    // a typo, or a sender who is not the account's payer, pays nobody.
    let paid_before: Vec<_> = matching
        .iter()
        .filter(|e| {
            history
                .iter()
                .any(|(s, a)| *s == e.supplier.id && a == account)
        })
        .collect();
    let entry = match paid_before.as_slice() {
        [one] => **one,
        [] if matching
            .iter()
            .any(|e| history.iter().any(|(s, _)| *s == e.supplier.id)) =>
        {
            return Ok(Err(Reply::FirstPaymentToAccount));
        }
        [] => return Ok(Err(Reply::FirstPaymentToSupplier)),
        // Two suppliers take the same number and both were paid at it: ambiguous.
        _ => return Ok(Err(Reply::UnknownAccount)),
    };
    let supplier = &entry.supplier;
    if supplier.payment_type == PaymentType::Budget {
        return Ok(Err(Reply::PersonalDataRequired));
    }
    if amount > supplier.max_amount {
        return Ok(Err(Reply::AmountAboveLimit {
            max: supplier.max_amount,
        }));
    }
    let card = services
        .store
        .list_saved_cards(linked_by, &user_id)
        .await?
        .into_iter()
        .filter(|c| {
            c.payment_type == supplier.payment_type.as_str()
                && c.acquirer == supplier.acquirer.as_str()
        })
        .max_by_key(|c| c.last_used_at.unwrap_or(c.created_at));
    let Some(card) = card else {
        return Ok(Err(Reply::NoSavedCard));
    };
    Ok(Ok(Plan {
        user_id,
        supplier_id: supplier.id.clone(),
        card_id: card.id,
        account_day: local_day(now, &entry.time_zone),
        receipt_phone: Some(phone)
            .filter(|p| crate::domain::receipt::plausible_phone(p))
            .map(str::to_owned),
        payee: format!("{}, карта *{}", supplier.name, card.last4),
    }))
}

/// Runs the accepted charge and turns its outcome into the reply.
async fn charge(
    services: &Services,
    gateway: &ApiClient,
    message_id: &str,
    plan: &Plan,
    account: &str,
    amount: oplata_providers::Amount,
    payment_id: Uuid,
) -> Result<String, ServiceError> {
    let amount_text = amount.to_string();
    let draft = PaymentDraft {
        supplier_id: &plan.supplier_id,
        account_number: account,
        amount: &amount_text,
        currency: "RUB",
        description: "Оплата по SMS",
        user_id: Some(&plan.user_id),
        email: None,
        phone: plan.receipt_phone.as_deref(),
        return_url: None,
        payer: None,
    };
    let origin = Origin::Sms {
        client: gateway,
        message_id,
    };
    let actor = format!("sms:{message_id}");
    let outcome = create_as(
        services,
        &origin,
        &draft,
        Method::SavedCard {
            card_id: plan.card_id,
        },
        payment_id,
    )
    .await;
    let now = OffsetDateTime::now_utc();
    match outcome {
        Ok(payment) if Some(payment.status) == Some(PaymentStatus::RequiresAction) => {
            // Nobody is there to answer the issuer's challenge: the charge ends here.
            let change = StatusChange {
                event: PaymentEvent::Canceled,
                next_action: None,
                failure: Some((
                    "three_ds_required",
                    "the issuer demanded 3-D Secure, which an SMS payment cannot pass",
                )),
                actor: &actor,
                reason: &crate::domain::audit::AuditReason::ThreeDsWithoutCustomer,
                acquirer_operation_id: None,
            };
            services
                .store
                .transition_payment_from(&payment, &change)
                .await?;
            let reply = Reply::ThreeDsRequired.text();
            services
                .store
                .conclude_sms(message_id, None, &reply, now)
                .await?;
            Ok(reply)
        }
        Ok(_) => Ok(services.store.finish_sms_charge(message_id, now).await?),
        Err(error) => {
            let reply = match &error {
                ServiceError::Card(CardRuleError::SavedCardFirstPaymentToSupplier) => {
                    Reply::FirstPaymentToSupplier
                }
                ServiceError::Card(_) => Reply::NoSavedCard,
                _ => Reply::NotDone,
            };
            if !matches!(error, ServiceError::Card(_) | ServiceError::Rule(_)) {
                tracing::error!(%error, "SMS charge failed");
            }
            // The payment may exist (created, then its charge refused): it is final and not
            // charged; the SMS did not use up the account's day.
            if services
                .store
                .get_payment(payment_id)
                .await?
                .is_some_and(|p| Some(p.status).is_some_and(|s| !s.is_final()))
            {
                return Ok(services.store.finish_sms_charge(message_id, now).await?);
            }
            let reply = reply.text();
            services
                .store
                .conclude_sms(message_id, Some(kind::ABORTED), &reply, now)
                .await?;
            Ok(reply)
        }
    }
}

/// Links a phone to a portal user (`PUT /v1/users/{user_id}/sms-phone`).
pub async fn link_phone(
    services: &Services,
    client_id: Uuid,
    user_id: &str,
    phone: &str,
) -> Result<OffsetDateTime, ServiceError> {
    if !valid_phone(phone) {
        return Err(SmsError::InvalidPhone.into());
    }
    let at = OffsetDateTime::now_utc();
    if services
        .store
        .link_sms_phone(client_id, user_id, phone, at)
        .await?
    {
        Ok(at)
    } else {
        Err(SmsError::PhoneTaken.into())
    }
}

pub async fn unlink_phone(services: &Services, user_id: &str) -> Result<(), ServiceError> {
    if services.store.unlink_sms_phone(user_id).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::valid_phone;

    #[test]
    fn phones_are_e164() {
        assert!(valid_phone("+79161234567"));
        assert!(!valid_phone("79161234567"));
        assert!(!valid_phone("+0916123456"));
        assert!(!valid_phone("+7916"));
        assert!(!valid_phone("+7916123456789012"));
        assert!(!valid_phone("+7916-123-45-67"));
    }
}
