//! Money as the API and the database see it: decimal text in, integer kopecks stored.

pub use oplata_providers::{Amount, AmountError};

/// The currencies the service accepts. Only roubles: every supplier bills in RUB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Currency {
    Rub,
}

impl Currency {
    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "RUB" => Some(Currency::Rub),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Currency::Rub => "RUB",
        }
    }
}

/// An amount as a person types it on the pay page, made into the API's form: «1 500,50» (a
/// space, no-break space or thin space between thousands, a comma or a point) is `1500.50`.
/// What is left is checked by the usual amount rules.
pub fn typed_amount(text: &str) -> String {
    text.trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '\u{2009}'))
        .map(|c| if c == ',' { '.' } else { c })
        .collect()
}

/// An amount in kopecks as a Russian reads it: «1 500,50 ₽», thousands apart by a no-break
/// space (so the figure never wraps) and a decimal comma.
pub fn rubles_ru(minor: i64) -> String {
    let sign = if minor < 0 { "−" } else { "" };
    let minor = minor.unsigned_abs();
    let rubles = (minor / 100).to_string();
    let mut grouped = String::with_capacity(rubles.len() + rubles.len() / 3);
    for (i, digit) in rubles.chars().enumerate() {
        if i > 0 && (rubles.len() - i).is_multiple_of(3) {
            grouped.push('\u{a0}');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped},{:02}\u{a0}₽", minor % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_shown_as_russians_read_them() {
        for (minor, shown) in [
            (0, "0,00 ₽"),
            (5, "0,05 ₽"),
            (150_050, "1 500,50 ₽"),
            (99_999_999, "999 999,99 ₽"),
            (12_345_678_900, "123 456 789,00 ₽"),
            (-150_050, "−1 500,50 ₽"),
        ] {
            assert_eq!(rubles_ru(minor).replace('\u{a0}', " "), shown, "{minor}");
        }
        assert!(
            !rubles_ru(150_050).contains(' '),
            "no breakable space inside a figure"
        );
    }

    #[test]
    fn amounts_are_read_as_russians_write_them() {
        for (typed, api) in [
            ("1 500,50", "1500.50"),
            ("1\u{a0}500,50", "1500.50"),
            ("1\u{202f}500.5", "1500.5"),
            (" 15000 ", "15000"),
            ("12,345,67", "12.345.67"),
        ] {
            assert_eq!(typed_amount(typed), api, "{typed:?}");
        }
        assert!(Amount::parse_api(&typed_amount("1 500,50")).is_ok());
        assert!(Amount::parse_api(&typed_amount("12,345,67")).is_err());
    }
}
