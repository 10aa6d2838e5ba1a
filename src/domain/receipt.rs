//! The fiscal receipt (54-FZ) a supplier hands the customer: when one is needed, where it goes,
//! and what its lines say.

use oplata_providers::Amount;
use oplata_providers::receipt::{
    Receipt, ReceiptContact, ReceiptItem, SettlementMethod, SubjectKind, TaxSystem, Vat,
};

/// A supplier's fiscal settings: every payment and refund of its bills carries a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptPolicy {
    pub tax_system: TaxSystem,
    pub vat: Vat,
    /// The line's name; `{account}` stands for the account number.
    pub item_name: String,
    pub method: SettlementMethod,
    pub subject: SubjectKind,
    pub seller_inn: String,
    pub payment_address: String,
}

/// Why a supplier's fiscal settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptPolicyError {
    #[error("receipt.inn must be 10 or 12 digits")]
    BadInn,
    #[error("receipt.item_name must be 1 to 128 characters")]
    BadItemName,
    #[error("receipt.payment_address must not be empty")]
    NoPaymentAddress,
}

impl ReceiptPolicy {
    pub fn check(&self) -> Result<(), ReceiptPolicyError> {
        let inn = &self.seller_inn;
        if !matches!(inn.len(), 10 | 12) || !inn.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ReceiptPolicyError::BadInn);
        }
        let chars = self.item_name.chars().count();
        if self.item_name.trim().is_empty() || chars > 128 {
            return Err(ReceiptPolicyError::BadItemName);
        }
        if self.payment_address.trim().is_empty() {
            return Err(ReceiptPolicyError::NoPaymentAddress);
        }
        Ok(())
    }

    /// The receipt of a payment (or of a refund: the same line, for the sum given back).
    pub fn receipt(
        &self,
        account_number: &str,
        amount: Amount,
        contact: ReceiptContact,
    ) -> Receipt {
        Receipt {
            tax_system: self.tax_system,
            contact,
            items: vec![ReceiptItem {
                name: self.item_name.replace("{account}", account_number),
                quantity: 1,
                price: amount,
                vat: self.vat,
                method: self.method,
                subject: self.subject,
            }],
            seller_inn: self.seller_inn.clone(),
            payment_address: self.payment_address.clone(),
        }
    }
}

/// Where the receipt goes: the e-mail address when there is one, else the phone.
pub fn contact(email: Option<&str>, phone: Option<&str>) -> Option<ReceiptContact> {
    match (
        email.filter(|e| !e.is_empty()),
        phone.filter(|p| !p.is_empty()),
    ) {
        (Some(email), _) => Some(ReceiptContact::Email(email.to_owned())),
        (None, Some(phone)) => Some(ReceiptContact::Phone(phone.to_owned())),
        (None, None) => None,
    }
}

/// A Russian mobile number as cashboxes take it: `+7` and ten digits.
pub fn plausible_phone(text: &str) -> bool {
    text.len() == 12 && text.starts_with("+7") && text[2..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReceiptPolicy {
        ReceiptPolicy {
            tax_system: TaxSystem::Osn,
            vat: Vat::Vat20,
            item_name: "Электроэнергия, л/с {account}".into(),
            method: SettlementMethod::FullPayment,
            subject: SubjectKind::Service,
            seller_inn: "7701234567".into(),
            payment_address: "pay.example.ru".into(),
        }
    }

    #[test]
    fn the_line_names_the_account_and_carries_the_whole_amount() {
        let amount = Amount::parse_api("1500.50").expect("an amount");
        let receipt =
            policy().receipt("1234567890", amount, ReceiptContact::Email("a@b.ru".into()));
        assert_eq!(receipt.items[0].name, "Электроэнергия, л/с 1234567890");
        assert_eq!(receipt.total(), Some(amount));
    }

    #[test]
    fn the_email_is_preferred_and_a_receipt_needs_one_address() {
        assert_eq!(
            contact(Some("a@b.ru"), Some("+79001234567")),
            Some(ReceiptContact::Email("a@b.ru".into()))
        );
        assert_eq!(
            contact(None, Some("+79001234567")),
            Some(ReceiptContact::Phone("+79001234567".into()))
        );
        assert_eq!(contact(Some(""), None), None);
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(policy().check(), Ok(()));
        let mut bad = policy();
        bad.seller_inn = "77012345".into();
        assert_eq!(bad.check(), Err(ReceiptPolicyError::BadInn));
        let mut bad = policy();
        bad.item_name = " ".into();
        assert_eq!(bad.check(), Err(ReceiptPolicyError::BadItemName));
    }

    #[test]
    fn phones_are_plus_seven_and_ten_ascii_digits() {
        assert!(plausible_phone("+79001234567"));
        for bad in [
            "89001234567",
            "+7900123456",
            "+7900123456７",
            "+19001234567",
        ] {
            assert!(!plausible_phone(bad), "{bad}");
        }
    }
}
