//! Suppliers: who is paid, under which payment type, with what account-number format and limit.

use oplata_providers::{AcquirerKind, Amount};
use regex::Regex;

/// The family of payments a saved card is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentType {
    /// ЖКХ: electricity, water, heating.
    Utilities,
    /// Штрафы ГИБДД.
    Fines,
    /// Бюджетные организации.
    Budget,
}

/// How a stored payment type is read back.
impl TryFrom<String> for PaymentType {
    type Error = crate::domain::payment::UnknownStatus;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        PaymentType::parse(&text).ok_or(crate::domain::payment::UnknownStatus(text))
    }
}

/// Compares with the type's wire text (`payment_type == "utilities"`).
impl PartialEq<&str> for PaymentType {
    fn eq(&self, text: &&str) -> bool {
        self.as_str() == *text
    }
}

impl PaymentType {
    pub fn parse(text: &str) -> Option<Self> {
        [
            PaymentType::Utilities,
            PaymentType::Fines,
            PaymentType::Budget,
        ]
        .into_iter()
        .find(|t| t.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentType::Utilities => "utilities",
            PaymentType::Fines => "fines",
            PaymentType::Budget => "budget",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Supplier {
    pub id: String,
    pub name: String,
    pub payment_type: PaymentType,
    /// Matches a whole account number (anchored when built).
    pub account_pattern: Regex,
    pub max_amount: Amount,
    pub acquirer: AcquirerKind,
    /// Fiscal settings: when set, every payment carries a receipt (54-FZ).
    pub receipt: Option<super::receipt::ReceiptPolicy>,
    /// Payable without sign-in (rule 6: by default only housing and utilities).
    pub anonymous: bool,
}

/// Why a supplier definition is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SupplierError {
    #[error("supplier id {0:?} must be 1-64 characters of a-z, 0-9, '-' or '_'")]
    BadId(String),
    #[error("supplier {id}: account_pattern is not a valid regular expression: {reason}")]
    BadPattern { id: String, reason: String },
    #[error("supplier {id}: max_amount {value:?} is not a positive amount with at most 2 decimals")]
    BadMaxAmount { id: String, value: String },
}

impl Supplier {
    pub fn new(
        id: &str,
        name: &str,
        payment_type: PaymentType,
        account_pattern: &str,
        max_amount: &str,
        acquirer: AcquirerKind,
    ) -> Result<Self, SupplierError> {
        let id_ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(SupplierError::BadId(id.to_owned()));
        }
        // Anchor the whole pattern so "\d{10}" cannot match inside a longer string.
        let account_pattern = Regex::new(&format!("^(?:{account_pattern})$")).map_err(|e| {
            SupplierError::BadPattern {
                id: id.to_owned(),
                reason: e.to_string(),
            }
        })?;
        let max_amount =
            Amount::parse_api(max_amount).map_err(|_| SupplierError::BadMaxAmount {
                id: id.to_owned(),
                value: max_amount.to_owned(),
            })?;
        Ok(Supplier {
            id: id.to_owned(),
            name: name.to_owned(),
            payment_type,
            account_pattern,
            max_amount,
            acquirer,
            receipt: None,
            anonymous: payment_type == PaymentType::Utilities,
        })
    }

    /// The supplier issues receipts with these settings.
    pub fn with_receipt(mut self, policy: super::receipt::ReceiptPolicy) -> Self {
        self.receipt = Some(policy);
        self
    }

    /// Account numbers are ASCII: a configured `\d` would otherwise take full-width or
    /// Arabic-Indic digits, which no billing system can match to an account.
    pub fn accepts_account(&self, account_number: &str) -> bool {
        account_number.is_ascii() && self.account_pattern.is_match(account_number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn electro() -> Supplier {
        Supplier::new(
            "electro",
            "Энергосбыт",
            PaymentType::Utilities,
            r"\d{10}",
            "15000.00",
            AcquirerKind::Robokassa,
        )
        .expect("valid supplier")
    }

    #[test]
    fn only_ascii_digits_make_an_account_number() {
        let supplier = electro();
        assert!(supplier.accepts_account("1234567890"));
        for unicode in ["１２３４５６７８９０", "١٢٣٤٥٦٧٨٩٠", "12345６7890"] {
            assert!(!supplier.accepts_account(unicode), "{unicode}");
        }
    }

    #[test]
    fn account_pattern_must_match_the_whole_number() {
        let supplier = electro();
        assert!(supplier.accepts_account("1234567890"));
        assert!(!supplier.accepts_account("12345678901"));
        assert!(!supplier.accepts_account("x1234567890"));
        assert!(!supplier.accepts_account(""));
    }

    #[test]
    fn bad_definitions_are_refused() {
        let bad_id = Supplier::new(
            "Bad Id",
            "x",
            PaymentType::Fines,
            ".*",
            "1",
            AcquirerKind::Robokassa,
        );
        assert!(matches!(bad_id, Err(SupplierError::BadId(_))));
        let bad_pattern = Supplier::new(
            "x",
            "x",
            PaymentType::Fines,
            "(",
            "1",
            AcquirerKind::Robokassa,
        );
        assert!(matches!(bad_pattern, Err(SupplierError::BadPattern { .. })));
        let bad_max = Supplier::new(
            "x",
            "x",
            PaymentType::Fines,
            ".*",
            "0",
            AcquirerKind::Robokassa,
        );
        assert!(matches!(bad_max, Err(SupplierError::BadMaxAmount { .. })));
    }
}
