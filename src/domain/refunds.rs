//! Refund rules (DESIGN rule 13), as plain functions.

use oplata_providers::Amount;
use time::{Duration, OffsetDateTime};

use super::payment::PaymentStatus;

/// How long a pending refund without the acquirer's answer is left to the request that sent it
/// before the reconciliation worker takes it up (that request died, or its answer was lost).
pub const ANSWER_GRACE: time::Duration = time::Duration::minutes(2);

/// Past this age, a refund the acquirer has no record of was never made: it fails and frees its
/// amount, and its reference is never sent again.
pub const REFUND_NEVER_HAPPENED_AFTER: time::Duration = time::Duration::minutes(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundStatus {
    Pending,
    AwaitingAcquirer,
    Succeeded,
    Failed,
}

impl RefundStatus {
    pub const ALL: [RefundStatus; 4] = [
        RefundStatus::Pending,
        RefundStatus::AwaitingAcquirer,
        RefundStatus::Succeeded,
        RefundStatus::Failed,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::AwaitingAcquirer => "awaiting_acquirer",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }

    /// Whether the refund holds part of the payment (a failed one frees it again).
    pub fn holds_amount(self) -> bool {
        match self {
            RefundStatus::Pending | RefundStatus::AwaitingAcquirer | RefundStatus::Succeeded => {
                true
            }
            RefundStatus::Failed => false,
        }
    }
}

impl TryFrom<String> for RefundStatus {
    type Error = super::payment::UnknownStatus;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        RefundStatus::parse(&text).ok_or(super::payment::UnknownStatus(text))
    }
}

impl std::fmt::Display for RefundStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the status's wire text, as the API and the database spell it.
impl PartialEq<&str> for RefundStatus {
    fn eq(&self, text: &&str) -> bool {
        self.as_str() == *text
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefundRuleError {
    #[error("only succeeded or partially refunded payments can be refunded")]
    PaymentNotRefundable,
    #[error("the refund exceeds what remains of the payment ({} left)", kopecks(*remaining_minor))]
    ExceedsRemaining { remaining_minor: i64 },
    #[error("the payment is older than refunds are allowed for")]
    TooOld,
    #[error("the operator's daily refund total would be exceeded ({} left today)", kopecks(*left_minor))]
    OperatorDailyLimit { left_minor: i64 },
    #[error("a refund needs a reason")]
    ReasonRequired,
}

/// Limits from configuration.
#[derive(Debug, Clone, Copy)]
pub struct RefundLimits {
    pub max_age: Duration,
    /// Per operator per day, in kopecks.
    pub operator_daily_minor: i64,
}

/// What is known when a refund is asked for, read under the payment's lock.
#[derive(Debug, Clone, Copy)]
pub struct RefundContext {
    pub payment_status: PaymentStatus,
    pub paid_minor: i64,
    pub paid_at: OffsetDateTime,
    /// Pending, awaiting and succeeded refunds of this payment.
    pub held_minor: i64,
    /// The operator's refunds today (not failed).
    pub operator_today_minor: i64,
}

/// Decides the refund's amount (the whole remainder when none is given) or why not.
pub fn check_refund(
    ctx: &RefundContext,
    requested: Option<Amount>,
    reason: &str,
    limits: &RefundLimits,
    now: OffsetDateTime,
) -> Result<Amount, RefundRuleError> {
    if reason.trim().is_empty() {
        return Err(RefundRuleError::ReasonRequired);
    }
    if !matches!(
        ctx.payment_status,
        PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded
    ) {
        return Err(RefundRuleError::PaymentNotRefundable);
    }
    if now - ctx.paid_at > limits.max_age {
        return Err(RefundRuleError::TooOld);
    }
    let remaining_minor = (ctx.paid_minor - ctx.held_minor).max(0);
    let exceeds = RefundRuleError::ExceedsRemaining { remaining_minor };
    let amount = match requested {
        Some(asked) if asked.minor() > remaining_minor => return Err(exceeds),
        Some(asked) => asked,
        None => Amount::from_minor(remaining_minor).map_err(|_| exceeds)?,
    };
    let left_minor = (limits.operator_daily_minor - ctx.operator_today_minor).max(0);
    if amount.minor() > left_minor {
        return Err(RefundRuleError::OperatorDailyLimit { left_minor });
    }
    Ok(amount)
}

fn kopecks(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

/// The payment's status once `succeeded_minor` of `paid_minor` has been refunded.
pub fn status_after_refunds(
    paid_minor: i64,
    succeeded_minor: i64,
) -> Option<super::payment::PaymentEvent> {
    use super::payment::PaymentEvent;
    match succeeded_minor {
        0 => None,
        s if s >= paid_minor => Some(PaymentEvent::FullyRefunded),
        _ => Some(PaymentEvent::PartiallyRefunded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(held: i64) -> RefundContext {
        RefundContext {
            payment_status: PaymentStatus::Succeeded,
            paid_minor: 10_000,
            paid_at: OffsetDateTime::now_utc(),
            held_minor: held,
            operator_today_minor: 0,
        }
    }

    const LIMITS: RefundLimits = RefundLimits {
        max_age: Duration::days(180),
        operator_daily_minor: 1_000_000,
    };

    fn amount(text: &str) -> Amount {
        Amount::parse_api(text).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn a_refund_never_exceeds_what_is_left() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            check_refund(&ctx(9_000), Some(amount("10.00")), "r", &LIMITS, now),
            Ok(amount("10.00"))
        );
        assert_eq!(
            check_refund(&ctx(9_000), Some(amount("10.01")), "r", &LIMITS, now),
            Err(RefundRuleError::ExceedsRemaining {
                remaining_minor: 1_000
            })
        );
        assert_eq!(
            check_refund(&ctx(2_500), None, "r", &LIMITS, now),
            Ok(amount("75.00")),
            "the whole remainder"
        );
        assert!(check_refund(&ctx(10_000), None, "r", &LIMITS, now).is_err());
    }

    #[test]
    fn only_paid_recent_payments_with_a_reason_within_the_operators_day() {
        let now = OffsetDateTime::now_utc();
        let failed = RefundContext {
            payment_status: PaymentStatus::Failed,
            ..ctx(0)
        };
        assert_eq!(
            check_refund(&failed, None, "r", &LIMITS, now),
            Err(RefundRuleError::PaymentNotRefundable)
        );
        let old = RefundContext {
            paid_at: now - Duration::days(181),
            ..ctx(0)
        };
        assert_eq!(
            check_refund(&old, None, "r", &LIMITS, now),
            Err(RefundRuleError::TooOld)
        );
        assert_eq!(
            check_refund(&ctx(0), None, " ", &LIMITS, now),
            Err(RefundRuleError::ReasonRequired)
        );
        let busy = RefundContext {
            operator_today_minor: 995_000,
            ..ctx(0)
        };
        assert_eq!(
            check_refund(&busy, Some(amount("60.00")), "r", &LIMITS, now),
            Err(RefundRuleError::OperatorDailyLimit { left_minor: 5_000 })
        );
    }

    #[test]
    fn the_payment_follows_its_refunds() {
        use crate::domain::payment::PaymentEvent;
        assert_eq!(status_after_refunds(10_000, 0), None);
        assert_eq!(
            status_after_refunds(10_000, 3_000),
            Some(PaymentEvent::PartiallyRefunded)
        );
        assert_eq!(
            status_after_refunds(10_000, 10_000),
            Some(PaymentEvent::FullyRefunded)
        );
    }
}
