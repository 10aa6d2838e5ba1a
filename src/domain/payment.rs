//! The payment state machine: every status change goes through [`PaymentStatus::apply`].
//!
//! `created → requires_action → processing → succeeded | failed | canceled | expired`, and after
//! `succeeded`: `partially_refunded`, `refunded`. A final state never goes back; an event that
//! would move a payment backwards is refused, and one that repeats the current state changes
//! nothing (so a callback delivered twice moves the payment once).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Created,
    RequiresAction,
    Processing,
    Succeeded,
    Failed,
    Canceled,
    Expired,
    PartiallyRefunded,
    Refunded,
}

/// Something that happened to a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentEvent {
    /// The customer must visit the acquirer's page or a 3-D Secure page.
    ActionRequired,
    /// Sent to the acquirer; the outcome is not known yet.
    Submitted,
    Succeeded,
    Failed,
    Canceled,
    Expired,
    PartiallyRefunded,
    FullyRefunded,
}

/// What applying an event to a status means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Move to this status.
    To(PaymentStatus),
    /// The payment is already where the event would put it: nothing to do.
    AlreadyThere,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from:?} payment cannot take the event {event:?}")]
pub struct InvalidTransition {
    pub from: PaymentStatus,
    pub event: PaymentEvent,
}

impl PaymentStatus {
    /// The status as the desk shows it.
    pub fn russian(self) -> &'static str {
        match self {
            PaymentStatus::Created => "создан",
            PaymentStatus::RequiresAction => "ожидает клиента",
            PaymentStatus::Processing => "в обработке",
            PaymentStatus::Succeeded => "оплачен",
            PaymentStatus::Failed => "не прошёл",
            PaymentStatus::Canceled => "отменён",
            PaymentStatus::Expired => "истёк",
            PaymentStatus::PartiallyRefunded => "возвращён частично",
            PaymentStatus::Refunded => "возвращён",
        }
    }

    pub const ALL: [PaymentStatus; 9] = [
        PaymentStatus::Created,
        PaymentStatus::RequiresAction,
        PaymentStatus::Processing,
        PaymentStatus::Succeeded,
        PaymentStatus::Failed,
        PaymentStatus::Canceled,
        PaymentStatus::Expired,
        PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Created => "created",
            PaymentStatus::RequiresAction => "requires_action",
            PaymentStatus::Processing => "processing",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Canceled => "canceled",
            PaymentStatus::Expired => "expired",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// No money can move any more, except by refunds of a succeeded payment.
    pub fn is_final(self) -> bool {
        match self {
            PaymentStatus::Created | PaymentStatus::RequiresAction | PaymentStatus::Processing => {
                false
            }
            PaymentStatus::Succeeded
            | PaymentStatus::Failed
            | PaymentStatus::Canceled
            | PaymentStatus::Expired
            | PaymentStatus::PartiallyRefunded
            | PaymentStatus::Refunded => true,
        }
    }

    /// How far along the life cycle a status is; no transition lowers it.
    pub fn rank(self) -> u8 {
        match self {
            PaymentStatus::Created => 0,
            // The customer acting and the acquirer working alternate during 3-D Secure.
            PaymentStatus::RequiresAction | PaymentStatus::Processing => 1,
            PaymentStatus::Failed
            | PaymentStatus::Canceled
            | PaymentStatus::Expired
            | PaymentStatus::Succeeded => 2,
            PaymentStatus::PartiallyRefunded => 3,
            PaymentStatus::Refunded => 4,
        }
    }

    pub fn apply(self, event: PaymentEvent) -> Result<Transition, InvalidTransition> {
        use PaymentEvent as E;
        use PaymentStatus as S;
        let to = match (self, event) {
            // A saved-card charge already sent may meet the issuer's 3-D Secure challenge.
            (S::Created | S::Processing, E::ActionRequired) => S::RequiresAction,
            (S::Created | S::RequiresAction, E::Submitted) => S::Processing,
            (S::Created | S::RequiresAction | S::Processing, E::Succeeded) => S::Succeeded,
            (S::Created | S::RequiresAction | S::Processing, E::Failed) => S::Failed,
            (S::Created | S::RequiresAction | S::Processing, E::Canceled) => S::Canceled,
            (S::Created | S::RequiresAction | S::Processing, E::Expired) => S::Expired,
            (S::Succeeded | S::PartiallyRefunded, E::PartiallyRefunded) => S::PartiallyRefunded,
            (S::Succeeded | S::PartiallyRefunded, E::FullyRefunded) => S::Refunded,
            (S::RequiresAction, E::ActionRequired)
            | (S::Processing, E::Submitted)
            | (S::Succeeded | S::PartiallyRefunded | S::Refunded, E::Succeeded)
            | (S::Failed, E::Failed)
            | (S::Canceled, E::Canceled)
            | (S::Expired, E::Expired)
            | (S::Refunded, E::FullyRefunded) => return Ok(Transition::AlreadyThere),
            (
                S::Succeeded
                | S::Failed
                | S::Canceled
                | S::Expired
                | S::PartiallyRefunded
                | S::Refunded,
                E::ActionRequired,
            )
            | (
                S::Succeeded
                | S::Failed
                | S::Canceled
                | S::Expired
                | S::PartiallyRefunded
                | S::Refunded,
                E::Submitted,
            )
            | (S::Failed | S::Canceled | S::Expired, E::Succeeded)
            | (
                S::Succeeded | S::Canceled | S::Expired | S::PartiallyRefunded | S::Refunded,
                E::Failed,
            )
            | (
                S::Succeeded | S::Failed | S::Expired | S::PartiallyRefunded | S::Refunded,
                E::Canceled,
            )
            | (
                S::Succeeded | S::Failed | S::Canceled | S::PartiallyRefunded | S::Refunded,
                E::Expired,
            )
            | (
                S::Created
                | S::RequiresAction
                | S::Processing
                | S::Failed
                | S::Canceled
                | S::Expired
                | S::Refunded,
                E::PartiallyRefunded,
            )
            | (
                S::Created
                | S::RequiresAction
                | S::Processing
                | S::Failed
                | S::Canceled
                | S::Expired,
                E::FullyRefunded,
            ) => return Err(InvalidTransition { from: self, event }),
        };
        Ok(Transition::To(to))
    }
}

/// How long a customer has to act (pay on the acquirer's page, answer 3-D Secure) before the
/// payment is checked and, if nothing happened, expired.
pub const ACTION_WINDOW: time::Duration = time::Duration::minutes(30);

/// How long after a charge was sent "the acquirer has no such operation" may still mean "not
/// there yet". Past it, the charge never happened: the payment fails, and its order id is never
/// sent again (a late notification for it goes to a person).
pub const NEVER_HAPPENED_AFTER: time::Duration = time::Duration::minutes(15);

/// What a status query's "no such operation" means for a payment sent to the acquirer at
/// `submitted_at`.
pub fn absent_operation_verdict(
    submitted_at: time::OffsetDateTime,
    now: time::OffsetDateTime,
) -> AbsentOperation {
    if now >= submitted_at + NEVER_HAPPENED_AFTER {
        AbsentOperation::NeverHappened
    } else {
        AbsentOperation::AskAgainBy(submitted_at + NEVER_HAPPENED_AFTER)
    }
}

/// See [`absent_operation_verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbsentOperation {
    /// Settle it as never made.
    NeverHappened,
    /// Too early to tell: ask again, at this moment at the latest.
    AskAgainBy(time::OffsetDateTime),
}

/// When the reconciliation worker should first ask about a payment that entered `status`.
pub fn first_check_delay(status: PaymentStatus) -> Option<time::Duration> {
    match status {
        // The outcome of a call that went unanswered: ask soon.
        PaymentStatus::Processing => Some(time::Duration::seconds(20)),
        // The customer has this long to act; then ask, and expire what never happened.
        PaymentStatus::RequiresAction => Some(ACTION_WINDOW),
        PaymentStatus::Created => Some(time::Duration::minutes(2)),
        PaymentStatus::Succeeded
        | PaymentStatus::Failed
        | PaymentStatus::Canceled
        | PaymentStatus::Expired
        | PaymentStatus::PartiallyRefunded
        | PaymentStatus::Refunded => None,
    }
}

impl PaymentEvent {
    pub const ALL: [PaymentEvent; 8] = [
        PaymentEvent::ActionRequired,
        PaymentEvent::Submitted,
        PaymentEvent::Succeeded,
        PaymentEvent::Failed,
        PaymentEvent::Canceled,
        PaymentEvent::Expired,
        PaymentEvent::PartiallyRefunded,
        PaymentEvent::FullyRefunded,
    ];

    /// The outbox event type a transition caused by this event publishes.
    pub fn outbox_type(self) -> &'static str {
        match self {
            PaymentEvent::ActionRequired => "payment.requires_action",
            PaymentEvent::Submitted => "payment.processing",
            PaymentEvent::Succeeded => "payment.succeeded",
            PaymentEvent::Failed => "payment.failed",
            PaymentEvent::Canceled => "payment.canceled",
            PaymentEvent::Expired => "payment.expired",
            PaymentEvent::PartiallyRefunded => "payment.partially_refunded",
            PaymentEvent::FullyRefunded => "payment.refunded",
        }
    }
}

/// How a stored status is read back (the store's rows carry the enum, never the text).
impl TryFrom<String> for PaymentStatus {
    type Error = UnknownStatus;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        PaymentStatus::parse(&text).ok_or(UnknownStatus(text))
    }
}

impl std::fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the status's wire text (`status == "succeeded"`), as the API and the
/// database spell it.
impl PartialEq<&str> for PaymentStatus {
    fn eq(&self, text: &&str) -> bool {
        self.as_str() == *text
    }
}

/// How a payment is paid: card entry on the acquirer's page, or a saved card's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    NewCard,
    SavedCard,
}

impl PaymentMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::NewCard => "new_card",
            PaymentMethod::SavedCard => "saved_card",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [PaymentMethod::NewCard, PaymentMethod::SavedCard]
            .into_iter()
            .find(|method| method.as_str() == text)
    }
}

impl TryFrom<String> for PaymentMethod {
    type Error = UnknownStatus;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        PaymentMethod::parse(&text).ok_or(UnknownStatus(text))
    }
}

/// Compares with the method's wire text (`method == "saved_card"`).
impl PartialEq<&str> for PaymentMethod {
    fn eq(&self, text: &&str) -> bool {
        self.as_str() == *text
    }
}

/// A status text no state machine knows: the stored data is corrupt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hosted_payment_goes_created_requires_action_succeeded() {
        let status = PaymentStatus::Created;
        assert_eq!(
            status.apply(PaymentEvent::ActionRequired),
            Ok(Transition::To(PaymentStatus::RequiresAction))
        );
        assert_eq!(
            PaymentStatus::RequiresAction.apply(PaymentEvent::Succeeded),
            Ok(Transition::To(PaymentStatus::Succeeded))
        );
    }

    #[test]
    fn a_repeated_success_changes_nothing() {
        assert_eq!(
            PaymentStatus::Succeeded.apply(PaymentEvent::Succeeded),
            Ok(Transition::AlreadyThere)
        );
    }

    #[test]
    fn a_failed_payment_never_becomes_succeeded() {
        assert!(
            PaymentStatus::Failed
                .apply(PaymentEvent::Succeeded)
                .is_err()
        );
        assert!(
            PaymentStatus::Expired
                .apply(PaymentEvent::Succeeded)
                .is_err()
        );
    }

    #[test]
    fn only_succeeded_payments_can_be_refunded() {
        assert!(
            PaymentStatus::Processing
                .apply(PaymentEvent::FullyRefunded)
                .is_err()
        );
        assert_eq!(
            PaymentStatus::PartiallyRefunded.apply(PaymentEvent::FullyRefunded),
            Ok(Transition::To(PaymentStatus::Refunded))
        );
    }

    #[test]
    fn status_names_round_trip() {
        for status in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
        }
    }

    proptest! {
        #[test]
        fn no_sequence_of_events_leaves_a_final_state_or_moves_backwards(
            events in proptest::collection::vec(proptest::sample::select(PaymentEvent::ALL.to_vec()), 0..40)
        ) {
            let mut status = PaymentStatus::Created;
            for event in events {
                let before = status;
                if let Ok(Transition::To(next)) = status.apply(event) {
                    status = next;
                }
                prop_assert!(status.rank() >= before.rank(), "{before:?} -> {status:?}");
                if before.is_final() {
                    prop_assert!(status.is_final(), "{before:?} left the final states for {status:?}");
                    let refund_path = matches!(before, PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded);
                    prop_assert!(status == before || refund_path, "{before:?} -> {status:?}");
                }
            }
        }
    }
}
