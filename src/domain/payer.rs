//! The payer's personal data (rule 8): passport series and number and full name, required for
//! `budget` suppliers and refused for every other.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::supplier::PaymentType;

/// Passport data as the client wrote it.
#[derive(Clone, Copy)]
pub struct PayerDraft<'a> {
    pub passport_series: &'a str,
    pub passport_number: &'a str,
    pub full_name: &'a str,
}

impl fmt::Debug for PayerDraft<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PayerDraft(<personal data>)")
    }
}

/// Checked passport data. Its `Debug` shows nothing of it, so it cannot reach a log by accident;
/// the JSON form exists only to be sealed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayerIdentity {
    pub passport_series: String,
    pub passport_number: String,
    pub full_name: String,
}

impl fmt::Debug for PayerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PayerIdentity(<personal data>)")
    }
}

impl PayerIdentity {
    /// `"4510 123456"`, as Russian forms write a passport.
    pub fn passport(&self) -> String {
        format!("{} {}", self.passport_series, self.passport_number)
    }
}

/// Why personal data was refused. Messages never repeat the data itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayerError {
    #[error("this supplier requires the payer's passport data (series, number, full name)")]
    Required,
    #[error("personal data is accepted only for budget suppliers")]
    NotAllowed,
    #[error("the passport series must be 4 digits")]
    InvalidSeries,
    #[error("the passport number must be 6 digits")]
    InvalidNumber,
    #[error(
        "the full name must be 2 to 4 words of Russian letters (hyphens allowed), at most 150 characters"
    )]
    InvalidFullName,
    #[error("personal data needs a new card entered on the acquirer's page, not a saved card")]
    NeedsCardEntry,
}

impl PayerError {
    pub fn field(self) -> &'static str {
        match self {
            PayerError::Required | PayerError::NotAllowed | PayerError::NeedsCardEntry => "payer",
            PayerError::InvalidSeries => "payer.passport_series",
            PayerError::InvalidNumber => "payer.passport_number",
            PayerError::InvalidFullName => "payer.full_name",
        }
    }
}

fn digits(text: &str, count: usize) -> bool {
    text.len() == count && text.bytes().all(|b| b.is_ascii_digit())
}

fn russian_word(word: &str) -> bool {
    let parts_ok = word
        .split('-')
        .all(|part| !part.is_empty() && part.chars().all(|c| matches!(c, 'А'..='я' | 'Ё' | 'ё')));
    !word.is_empty() && parts_ok
}

/// Normalises spacing of the name and checks it (a passport series is written "45 10" too).
fn valid_identity(draft: &PayerDraft<'_>) -> Result<PayerIdentity, PayerError> {
    let (identity, problems) = read_identity(draft);
    match problems.into_iter().next() {
        Some(problem) => Err(problem),
        None => Ok(identity),
    }
}

/// Every field of the passport data that is wrong, in the form's order (none: it is valid).
pub fn identity_problems(draft: &PayerDraft<'_>) -> Vec<PayerError> {
    read_identity(draft).1
}

fn read_identity(draft: &PayerDraft<'_>) -> (PayerIdentity, Vec<PayerError>) {
    let mut problems = Vec::new();
    let series: String = draft
        .passport_series
        .chars()
        .filter(|c| *c != ' ')
        .collect();
    if !digits(&series, 4) {
        problems.push(PayerError::InvalidSeries);
    }
    let number = draft.passport_number.trim();
    if !digits(number, 6) {
        problems.push(PayerError::InvalidNumber);
    }
    let words: Vec<&str> = draft.full_name.split_whitespace().collect();
    let full_name = words.join(" ");
    if !(2..=4).contains(&words.len())
        || full_name.chars().count() > 150
        || !words.iter().all(|w| russian_word(w))
    {
        problems.push(PayerError::InvalidFullName);
    }
    let identity = PayerIdentity {
        passport_series: series,
        passport_number: number.to_owned(),
        full_name,
    };
    (identity, problems)
}

/// Rule 8: passport data is required for `budget` suppliers and refused for the rest.
pub fn check_payer(
    payment_type: PaymentType,
    draft: Option<&PayerDraft<'_>>,
) -> Result<Option<PayerIdentity>, PayerError> {
    match (payment_type, draft) {
        (PaymentType::Budget, None) => Err(PayerError::Required),
        (PaymentType::Budget, Some(draft)) => valid_identity(draft).map(Some),
        (_, Some(_)) => Err(PayerError::NotAllowed),
        (_, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> PayerDraft<'static> {
        PayerDraft {
            passport_series: "4510",
            passport_number: "123456",
            full_name: "Иванов Иван Иванович",
        }
    }

    #[test]
    fn budget_suppliers_require_it_and_others_refuse_it() {
        assert_eq!(
            check_payer(PaymentType::Budget, None),
            Err(PayerError::Required)
        );
        assert_eq!(
            check_payer(PaymentType::Utilities, Some(&draft())),
            Err(PayerError::NotAllowed)
        );
        assert_eq!(
            check_payer(PaymentType::Fines, Some(&draft())),
            Err(PayerError::NotAllowed)
        );
        assert_eq!(check_payer(PaymentType::Utilities, None), Ok(None));
        let identity = check_payer(PaymentType::Budget, Some(&draft()))
            .expect("valid")
            .expect("present");
        assert_eq!(identity.passport(), "4510 123456");
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (
                PayerDraft {
                    passport_series: "45a0",
                    ..draft()
                },
                "payer.passport_series",
            ),
            (
                PayerDraft {
                    passport_number: "12345",
                    ..draft()
                },
                "payer.passport_number",
            ),
            (
                PayerDraft {
                    full_name: "Иванов",
                    ..draft()
                },
                "payer.full_name",
            ),
            (
                PayerDraft {
                    full_name: "Ivanov Ivan",
                    ..draft()
                },
                "payer.full_name",
            ),
            (
                PayerDraft {
                    full_name: "Иванов <script>",
                    ..draft()
                },
                "payer.full_name",
            ),
        ];
        for (bad, field) in cases {
            let error = check_payer(PaymentType::Budget, Some(&bad)).expect_err("refused");
            assert_eq!(error.field(), field);
        }
    }

    #[test]
    fn spacing_is_normalised_and_hyphenated_names_pass() {
        let identity = check_payer(
            PaymentType::Budget,
            Some(&PayerDraft {
                passport_series: "45 10",
                passport_number: " 123456 ",
                full_name: "  Салтыкова-Щедрина   Анна ",
            }),
        )
        .expect("valid")
        .expect("present");
        assert_eq!(identity.passport_series, "4510");
        assert_eq!(identity.full_name, "Салтыкова-Щедрина Анна");
    }

    #[test]
    fn debug_prints_never_show_the_data() {
        let identity = check_payer(PaymentType::Budget, Some(&draft()))
            .expect("valid")
            .expect("present");
        let printed = format!("{identity:?} {:?}", draft());
        assert!(!printed.contains("123456") && !printed.contains("Иванов"));
    }
}
