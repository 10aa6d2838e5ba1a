//! Checking a request for a new payment against the supplier's rules, before anything is stored.

use url::Url;

use super::money::{Amount, AmountError, Currency};
use super::payer::{PayerDraft, PayerError, PayerIdentity, check_payer};
use super::supplier::Supplier;

/// A payment request as the client wrote it.
#[derive(Debug, Clone, Copy)]
pub struct PaymentDraft<'a> {
    pub supplier_id: &'a str,
    pub account_number: &'a str,
    pub amount: &'a str,
    pub currency: &'a str,
    pub description: &'a str,
    pub user_id: Option<&'a str>,
    pub email: Option<&'a str>,
    /// Where the receipt goes when there is no e-mail address: `+7XXXXXXXXXX`.
    pub phone: Option<&'a str>,
    pub return_url: Option<&'a str>,
    /// Passport data: required for budget suppliers, refused for the rest (rule 8).
    pub payer: Option<PayerDraft<'a>>,
}

/// A payment request that satisfies every rule.
#[derive(Debug, Clone)]
pub struct ValidPayment {
    pub supplier: Supplier,
    pub account_number: String,
    pub amount: Amount,
    pub currency: Currency,
    pub description: String,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub return_url: Option<Url>,
    pub payer: Option<PayerIdentity>,
}

/// Each broken rule, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentRuleError {
    #[error("no supplier with this id")]
    UnknownSupplier,
    #[error("the account number does not match the format of supplier {supplier_id}")]
    InvalidAccountNumber { supplier_id: String },
    #[error("{0}")]
    InvalidAmount(AmountError),
    #[error("the amount is above this supplier's limit of {max}")]
    AmountAboveLimit { max: Amount },
    #[error("only RUB is accepted")]
    UnsupportedCurrency,
    #[error("the description must be 1 to 250 characters without control characters")]
    InvalidDescription,
    #[error("the user id must be 1 to 128 printable characters without spaces")]
    InvalidUserId,
    #[error("the e-mail address is not valid")]
    InvalidEmail,
    #[error("the phone number must be +7 followed by 10 digits")]
    InvalidPhone,
    #[error(
        "this supplier issues a fiscal receipt for every payment: give the customer's email (or phone) to send it to"
    )]
    ReceiptContactRequired,
    #[error("the return URL must be an absolute http or https URL of at most 2048 characters")]
    InvalidReturnUrl,
    #[error("{0}")]
    Payer(PayerError),
    #[error("this supplier is paid only by signed-in users of the portal")]
    SupplierNotPublic,
}

impl PaymentRuleError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            PaymentRuleError::UnknownSupplier | PaymentRuleError::SupplierNotPublic => {
                "supplier_id"
            }
            PaymentRuleError::InvalidAccountNumber { .. } => "account_number",
            PaymentRuleError::InvalidAmount(_) | PaymentRuleError::AmountAboveLimit { .. } => {
                "amount"
            }
            PaymentRuleError::UnsupportedCurrency => "currency",
            PaymentRuleError::InvalidDescription => "description",
            PaymentRuleError::InvalidUserId => "user_id",
            PaymentRuleError::InvalidEmail | PaymentRuleError::ReceiptContactRequired => "email",
            PaymentRuleError::InvalidPhone => "phone",
            PaymentRuleError::InvalidReturnUrl => "return_url",
            PaymentRuleError::Payer(error) => error.field(),
        }
    }
}

fn printable_token(text: &str, max: usize) -> bool {
    !text.is_empty() && text.len() <= max && text.bytes().all(|b| b.is_ascii_graphic())
}

fn plausible_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    text.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Applies the rules in the order a person would fix them: who, which account, how much.
/// Every rule a form's draft breaks, not only the first, in the form's order: a page shows each
/// beside its field at once. Empty when [`validate`] would accept the fields a person types
/// (account, amount, contacts, passport data); [`validate`] still decides.
pub fn every_problem<'s>(
    draft: &PaymentDraft<'_>,
    find_supplier: impl Fn(&str) -> Option<&'s Supplier>,
) -> Vec<PaymentRuleError> {
    let Some(supplier) = find_supplier(draft.supplier_id) else {
        return vec![PaymentRuleError::UnknownSupplier];
    };
    let mut problems = Vec::new();
    if !supplier.accepts_account(draft.account_number) {
        problems.push(PaymentRuleError::InvalidAccountNumber {
            supplier_id: supplier.id.clone(),
        });
    }
    match Amount::parse_api(draft.amount) {
        Err(error) => problems.push(PaymentRuleError::InvalidAmount(error)),
        Ok(amount) if amount > supplier.max_amount => {
            problems.push(PaymentRuleError::AmountAboveLimit {
                max: supplier.max_amount,
            });
        }
        Ok(_) => {}
    }
    if draft.email.is_some_and(|email| !plausible_email(email)) {
        problems.push(PaymentRuleError::InvalidEmail);
    } else if supplier.receipt.is_some()
        && super::receipt::contact(draft.email, draft.phone).is_none()
    {
        problems.push(PaymentRuleError::ReceiptContactRequired);
    }
    if draft
        .phone
        .is_some_and(|phone| !super::receipt::plausible_phone(phone))
    {
        problems.push(PaymentRuleError::InvalidPhone);
    }
    match (supplier.payment_type, draft.payer.as_ref()) {
        (super::supplier::PaymentType::Budget, Some(payer)) => problems.extend(
            super::payer::identity_problems(payer)
                .into_iter()
                .map(PaymentRuleError::Payer),
        ),
        (payment_type, payer) => {
            if let Err(error) = check_payer(payment_type, payer) {
                problems.push(PaymentRuleError::Payer(error));
            }
        }
    }
    problems
}

pub fn validate<'s>(
    draft: &PaymentDraft<'_>,
    find_supplier: impl Fn(&str) -> Option<&'s Supplier>,
) -> Result<ValidPayment, PaymentRuleError> {
    let supplier = find_supplier(draft.supplier_id).ok_or(PaymentRuleError::UnknownSupplier)?;
    if !supplier.accepts_account(draft.account_number) {
        return Err(PaymentRuleError::InvalidAccountNumber {
            supplier_id: supplier.id.clone(),
        });
    }
    let amount = Amount::parse_api(draft.amount).map_err(PaymentRuleError::InvalidAmount)?;
    if amount > supplier.max_amount {
        return Err(PaymentRuleError::AmountAboveLimit {
            max: supplier.max_amount,
        });
    }
    let currency = Currency::parse(draft.currency).ok_or(PaymentRuleError::UnsupportedCurrency)?;
    let description_chars = draft.description.chars().count();
    if description_chars == 0
        || description_chars > 250
        || draft.description.chars().any(char::is_control)
        || draft.description.trim().is_empty()
    {
        return Err(PaymentRuleError::InvalidDescription);
    }
    if let Some(user_id) = draft.user_id
        && !printable_token(user_id, 128)
    {
        return Err(PaymentRuleError::InvalidUserId);
    }
    if let Some(email) = draft.email
        && !plausible_email(email)
    {
        return Err(PaymentRuleError::InvalidEmail);
    }
    if let Some(phone) = draft.phone
        && !super::receipt::plausible_phone(phone)
    {
        return Err(PaymentRuleError::InvalidPhone);
    }
    let return_url = draft
        .return_url
        .map(|text| {
            Url::parse(text)
                .ok()
                .filter(|url| {
                    text.len() <= 2048
                        && matches!(url.scheme(), "http" | "https")
                        && url.host().is_some()
                })
                .ok_or(PaymentRuleError::InvalidReturnUrl)
        })
        .transpose()?;
    let payer = check_payer(supplier.payment_type, draft.payer.as_ref())
        .map_err(PaymentRuleError::Payer)?;
    if supplier.receipt.is_some() && super::receipt::contact(draft.email, draft.phone).is_none() {
        return Err(PaymentRuleError::ReceiptContactRequired);
    }
    Ok(ValidPayment {
        supplier: supplier.clone(),
        account_number: draft.account_number.to_owned(),
        amount,
        currency,
        description: draft.description.to_owned(),
        user_id: draft.user_id.map(str::to_owned),
        email: draft.email.map(str::to_owned),
        phone: draft.phone.map(str::to_owned),
        return_url,
        payer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::supplier::PaymentType;
    use oplata_providers::AcquirerKind;

    fn supplier() -> Supplier {
        Supplier::new(
            "electro",
            "Энергосбыт",
            PaymentType::Utilities,
            r"\d{10}",
            "15000.00",
            AcquirerKind::Robokassa,
        )
        .expect("valid")
    }

    fn draft() -> PaymentDraft<'static> {
        PaymentDraft {
            supplier_id: "electro",
            account_number: "1234567890",
            amount: "1500.50",
            currency: "RUB",
            description: "Электроэнергия, октябрь",
            user_id: Some("user-1"),
            email: Some("ivan@example.ru"),
            phone: None,
            return_url: Some("https://portal.example.ru/paid"),
            payer: None,
        }
    }

    fn check(draft: PaymentDraft<'_>) -> Result<ValidPayment, PaymentRuleError> {
        let s = supplier();
        validate(&draft, |id| (id == s.id).then_some(&s)).map(|mut v| {
            v.supplier = supplier();
            v
        })
    }

    fn problems(draft: PaymentDraft<'_>) -> Vec<&'static str> {
        let s = supplier();
        every_problem(&draft, |id| (id == s.id).then_some(&s))
            .iter()
            .map(PaymentRuleError::field)
            .collect()
    }

    #[test]
    fn a_form_hears_of_every_broken_rule_at_once_and_validate_agrees_on_the_first() {
        let broken = PaymentDraft {
            account_number: "12345",
            amount: "0",
            email: Some("not an address"),
            ..draft()
        };
        assert_eq!(problems(broken), ["account_number", "amount", "email"]);
        assert_eq!(
            check(broken).expect_err("refused").field(),
            "account_number"
        );
        assert!(problems(draft()).is_empty());
        assert!(check(draft()).is_ok());
    }

    #[test]
    fn a_correct_draft_is_accepted_with_exact_kopecks() {
        let valid = check(draft()).expect("valid");
        assert_eq!(valid.amount.minor(), 150_050);
    }

    #[test]
    fn each_broken_rule_names_its_field() {
        let cases: Vec<(PaymentDraft<'_>, &str)> = vec![
            (
                PaymentDraft {
                    supplier_id: "nope",
                    ..draft()
                },
                "supplier_id",
            ),
            (
                PaymentDraft {
                    account_number: "12345",
                    ..draft()
                },
                "account_number",
            ),
            (
                PaymentDraft {
                    amount: "0",
                    ..draft()
                },
                "amount",
            ),
            (
                PaymentDraft {
                    amount: "1.234",
                    ..draft()
                },
                "amount",
            ),
            (
                PaymentDraft {
                    amount: "15000.01",
                    ..draft()
                },
                "amount",
            ),
            (
                PaymentDraft {
                    currency: "USD",
                    ..draft()
                },
                "currency",
            ),
            (
                PaymentDraft {
                    description: " ",
                    ..draft()
                },
                "description",
            ),
            (
                PaymentDraft {
                    user_id: Some("a b"),
                    ..draft()
                },
                "user_id",
            ),
            (
                PaymentDraft {
                    email: Some("not-an-email"),
                    ..draft()
                },
                "email",
            ),
            (
                PaymentDraft {
                    return_url: Some("javascript:alert(1)"),
                    ..draft()
                },
                "return_url",
            ),
        ];
        for (bad, field) in cases {
            let error = check(bad).expect_err("must be refused");
            assert_eq!(error.field(), field, "{error}");
        }
    }

    #[test]
    fn the_supplier_limit_itself_is_allowed() {
        assert!(
            check(PaymentDraft {
                amount: "15000.00",
                ..draft()
            })
            .is_ok()
        );
        assert_eq!(
            check(PaymentDraft {
                amount: "15000.01",
                ..draft()
            })
            .map(|v| v.amount),
            Err(PaymentRuleError::AmountAboveLimit {
                max: supplier().max_amount
            })
        );
    }
}
