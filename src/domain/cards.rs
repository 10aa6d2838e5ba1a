//! The rules of saved cards (DESIGN rules 2, 3, 6, 7), as plain functions.

use oplata_providers::{AcquirerKind, ThreeDsAssurance};

use super::supplier::{PaymentType, Supplier};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardStatus {
    Active,
    Deleted,
    Revoked,
}

impl CardStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CardStatus::Active => "active",
            CardStatus::Deleted => "deleted",
            CardStatus::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(CardStatus::Active),
            "deleted" => Some(CardStatus::Deleted),
            "revoked" => Some(CardStatus::Revoked),
            _ => None,
        }
    }
}

/// How a stored card status is read back.
impl TryFrom<String> for CardStatus {
    type Error = super::payment::UnknownStatus;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        CardStatus::parse(&text).ok_or(super::payment::UnknownStatus(text))
    }
}

/// Compares with the status's wire text, as the API and the database spell it.
impl PartialEq<&str> for CardStatus {
    fn eq(&self, text: &&str) -> bool {
        self.as_str() == *text
    }
}

/// What the rules need to know of a saved card.
#[derive(Debug, Clone, Copy)]
pub struct CardFacts<'a> {
    pub owner: &'a str,
    pub status: CardStatus,
    pub payment_type: PaymentType,
    pub acquirer: AcquirerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CardRuleError {
    /// Not the caller's, deleted, revoked, or no such card: all look the same.
    #[error("no such card")]
    CardNotFound,
    #[error("this card was saved for another payment type; bind a card for this one")]
    CardNotValidForPaymentType,
    #[error("this card was saved with another acquirer than this supplier's")]
    CardNotValidForSupplier,
    #[error("a saved card can pay a supplier only after a payment to it with full card entry")]
    SavedCardFirstPaymentToSupplier,
    #[error("saving a card needs a registered user (user_id)")]
    SaveCardNeedsUser,
    #[error("this supplier's acquirer cannot save cards")]
    CardSavingNotSupported,
    #[error("a saved-card payment needs the paying user's user_id")]
    SavedCardNeedsUser,
}

/// Rules 2 and 3 for paying `supplier` with a saved card.
pub fn check_saved_card_payment(
    card: Option<CardFacts<'_>>,
    user_id: &str,
    supplier: &Supplier,
    has_earlier_full_entry_payment: bool,
) -> Result<(), CardRuleError> {
    let card = card
        .filter(|c| c.owner == user_id && c.status == CardStatus::Active)
        .ok_or(CardRuleError::CardNotFound)?;
    if card.payment_type != supplier.payment_type {
        return Err(CardRuleError::CardNotValidForPaymentType);
    }
    if card.acquirer != supplier.acquirer {
        return Err(CardRuleError::CardNotValidForSupplier);
    }
    if !has_earlier_full_entry_payment {
        return Err(CardRuleError::SavedCardFirstPaymentToSupplier);
    }
    Ok(())
}

/// Rule 6: binding is for registered users, where the acquirer can do it.
pub fn check_card_saving(
    user_id: Option<&str>,
    acquirer_can_save: bool,
) -> Result<(), CardRuleError> {
    if user_id.is_none() {
        return Err(CardRuleError::SaveCardNeedsUser);
    }
    if !acquirer_can_save {
        return Err(CardRuleError::CardSavingNotSupported);
    }
    Ok(())
}

/// Rule 7: a token is kept only from a payment that passed 3-D Secure.
pub fn may_keep_token(assurance: ThreeDsAssurance, reported_passed: Option<bool>) -> bool {
    match assurance {
        ThreeDsAssurance::EnforcedByContract => reported_passed != Some(false),
        ThreeDsAssurance::ReportedPerPayment => reported_passed == Some(true),
    }
}

/// What may be shown of a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardDisplay {
    pub brand: &'static str,
    pub last4: String,
    pub expiry: Option<(u8, u16)>,
}

/// Reads a masked number (`220220******4242`) and, when the acquirer gives one, an expiry
/// (`MM/YYYY` or `MM/YY`); `None` when the number is not in that shape.
pub fn card_display(masked: &str, expiry: Option<&str>) -> Option<CardDisplay> {
    let digits_at_end: String = masked
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    if digits_at_end.len() < 4 {
        return None;
    }
    let last4: String = digits_at_end
        .chars()
        .take(4)
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    let expiry = match expiry {
        None => None,
        Some(text) => {
            let (month, year) = text.split_once('/')?;
            let exp_month: u8 = month.parse().ok().filter(|m| (1..=12).contains(m))?;
            let exp_year: u16 = match year.len() {
                2 => 2000 + year.parse::<u16>().ok()?,
                4 => year.parse().ok()?,
                _ => return None,
            };
            Some((exp_month, exp_year))
        }
    };
    let brand = match masked.get(..4).and_then(|p| p.parse::<u16>().ok()) {
        Some(2200..=2204) => "MIR",
        Some(2221..=2720) | Some(5100..=5599) => "MASTERCARD",
        Some(4000..=4999) => "VISA",
        _ => "UNKNOWN",
    };
    Some(CardDisplay {
        brand,
        last4,
        expiry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supplier(payment_type: PaymentType) -> Supplier {
        Supplier::new("s", "S", payment_type, ".*", "1000", AcquirerKind::Moneta).expect("valid")
    }

    fn card(owner: &str) -> CardFacts<'_> {
        CardFacts {
            owner,
            status: CardStatus::Active,
            payment_type: PaymentType::Utilities,
            acquirer: AcquirerKind::Moneta,
        }
    }

    #[test]
    fn a_utilities_card_is_refused_for_fines() {
        assert_eq!(
            check_saved_card_payment(Some(card("u")), "u", &supplier(PaymentType::Fines), true),
            Err(CardRuleError::CardNotValidForPaymentType)
        );
    }

    #[test]
    fn a_saved_card_is_refused_for_a_new_supplier_and_accepted_after_a_full_entry_payment() {
        let s = supplier(PaymentType::Utilities);
        assert_eq!(
            check_saved_card_payment(Some(card("u")), "u", &s, false),
            Err(CardRuleError::SavedCardFirstPaymentToSupplier)
        );
        assert_eq!(
            check_saved_card_payment(Some(card("u")), "u", &s, true),
            Ok(())
        );
    }

    #[test]
    fn someone_elses_or_a_revoked_card_does_not_exist() {
        let s = supplier(PaymentType::Utilities);
        let revoked = CardFacts {
            status: CardStatus::Revoked,
            ..card("u")
        };
        assert_eq!(
            check_saved_card_payment(Some(card("other")), "u", &s, true),
            Err(CardRuleError::CardNotFound)
        );
        assert_eq!(
            check_saved_card_payment(Some(revoked), "u", &s, true),
            Err(CardRuleError::CardNotFound)
        );
        assert_eq!(
            check_saved_card_payment(None, "u", &s, true),
            Err(CardRuleError::CardNotFound)
        );
    }

    #[test]
    fn tokens_are_kept_only_with_three_ds() {
        assert!(may_keep_token(
            ThreeDsAssurance::ReportedPerPayment,
            Some(true)
        ));
        assert!(!may_keep_token(
            ThreeDsAssurance::ReportedPerPayment,
            Some(false)
        ));
        assert!(!may_keep_token(ThreeDsAssurance::ReportedPerPayment, None));
        assert!(may_keep_token(ThreeDsAssurance::EnforcedByContract, None));
    }

    #[test]
    fn saving_needs_a_user_and_a_capable_acquirer() {
        assert_eq!(
            check_card_saving(None, true),
            Err(CardRuleError::SaveCardNeedsUser)
        );
        assert_eq!(
            check_card_saving(Some("u"), false),
            Err(CardRuleError::CardSavingNotSupported)
        );
        assert_eq!(check_card_saving(Some("u"), true), Ok(()));
    }

    #[test]
    fn masked_numbers_and_expiries_are_read() {
        let mir = card_display("220220******4242", Some("12/2030"));
        assert_eq!(
            mir,
            Some(CardDisplay {
                brand: "MIR",
                last4: "4242".into(),
                expiry: Some((12, 2030))
            })
        );
        let visa = card_display("411111******1111", Some("01/27")).map(|c| (c.brand, c.expiry));
        assert_eq!(visa, Some(("VISA", Some((1, 2027)))));
        assert_eq!(
            card_display("553691******0002", None).map(|c| c.expiry),
            Some(None)
        );
        assert_eq!(card_display("****", Some("12/2030")), None);
        assert_eq!(card_display("220220******4242", Some("13/2030")), None);
    }
}
