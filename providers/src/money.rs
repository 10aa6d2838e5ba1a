//! Amounts of money as integer minor units (kopecks).
//!
//! Every acquirer writes amounts as decimal text, each in its own way (`1000.00`, `10.000000`);
//! this type is the one exact value behind those texts. No floating point is involved anywhere.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

/// A positive amount of money in minor units (kopecks for RUB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

/// Why a text or number is not a valid amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("the amount must be a decimal number such as \"1234.56\"")]
    NotADecimal,
    #[error("the amount must be greater than zero")]
    NotPositive,
    #[error("the amount must have at most two decimal places")]
    TooManyDecimals,
    #[error("the amount is too large")]
    TooLarge,
}

impl Amount {
    /// The largest amount the service handles: keeps every sum of amounts far from overflow.
    pub const MAX_MINOR: i64 = 1_000_000_000_000;

    pub fn from_minor(minor: i64) -> Result<Self, AmountError> {
        if minor <= 0 {
            Err(AmountError::NotPositive)
        } else if minor > Self::MAX_MINOR {
            Err(AmountError::TooLarge)
        } else {
            Ok(Amount(minor))
        }
    }

    /// Parses the API's form: plain digits with an optional point and at most two decimals.
    /// Signs, exponents, spaces and commas are refused rather than guessed at.
    pub fn parse_api(text: &str) -> Result<Self, AmountError> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !digits_only(whole)
            || !digits_only(fraction)
            || (text.contains('.') && fraction.is_empty())
        {
            return Err(AmountError::NotADecimal);
        }
        if fraction.len() > 2 {
            return Err(AmountError::TooManyDecimals);
        }
        let value = Decimal::from_str(text).map_err(|_| AmountError::TooLarge)?;
        Self::from_decimal(value)
    }

    /// An exact decimal with at most two significant decimal places.
    pub fn from_decimal(value: Decimal) -> Result<Self, AmountError> {
        if value <= Decimal::ZERO {
            return Err(AmountError::NotPositive);
        }
        let normalized = value.normalize();
        if normalized.scale() > 2 {
            return Err(AmountError::TooManyDecimals);
        }
        let minor = normalized
            .checked_mul(Decimal::ONE_HUNDRED)
            .and_then(|m| i64::try_from(m).ok())
            .ok_or(AmountError::TooLarge)?;
        Self::from_minor(minor)
    }

    pub fn minor(self) -> i64 {
        self.0
    }

    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }

    /// The amount with exactly `places` decimals, as some protocols write it.
    pub fn format_with_places(self, places: u32) -> String {
        let mut value = self.to_decimal();
        value.rescale(places);
        value.to_string()
    }
}

/// Reads an amount exactly as an acquirer wrote it in a notification (`10.000000`, `1000.00`):
/// plain digits with at most one point, never signs or exponents. `field` names it in the error.
pub fn notified_amount(text: &str, field: &str) -> Result<Decimal, crate::CallbackError> {
    let plain = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().filter(|b| *b == b'.').count() <= 1;
    plain
        .then(|| text.parse::<Decimal>().ok())
        .flatten()
        .ok_or_else(|| crate::CallbackError::Malformed(format!("{field} is not a decimal amount")))
}

/// Two decimals with a point: `1234.50`.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn api_amounts_parse_to_exact_kopecks() {
        assert_eq!(Amount::parse_api("1234.56").map(Amount::minor), Ok(123_456));
        assert_eq!(Amount::parse_api("10").map(Amount::minor), Ok(1000));
        assert_eq!(Amount::parse_api("0.01").map(Amount::minor), Ok(1));
        assert_eq!(Amount::parse_api("7.5").map(Amount::minor), Ok(750));
    }

    #[test]
    fn api_amounts_refuse_zero_negative_and_odd_forms() {
        assert_eq!(Amount::parse_api("0"), Err(AmountError::NotPositive));
        assert_eq!(Amount::parse_api("0.00"), Err(AmountError::NotPositive));
        assert_eq!(
            Amount::parse_api("1.001"),
            Err(AmountError::TooManyDecimals)
        );
        for bad in [
            "-1", "+1", "1e3", " 1", "1,50", "", ".5", "5.", "1.2.3", "NaN",
        ] {
            assert_eq!(
                Amount::parse_api(bad),
                Err(AmountError::NotADecimal),
                "{bad}"
            );
        }
        assert_eq!(
            Amount::parse_api("99999999999999999999999"),
            Err(AmountError::TooLarge)
        );
    }

    #[test]
    fn protocol_texts_with_trailing_zeros_are_the_same_amount() {
        let received = Decimal::from_str("10.000000").unwrap_or_default();
        assert_eq!(Amount::from_decimal(received).map(Amount::minor), Ok(1000));
        assert_eq!(
            Amount::from_minor(1000).map(|a| a.format_with_places(6)),
            Ok("10.000000".to_owned())
        );
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(minor in 1i64..=Amount::MAX_MINOR) {
            let amount = Amount::from_minor(minor).unwrap_or(Amount(1));
            prop_assert_eq!(Amount::parse_api(&amount.to_string()), Ok(amount));
            prop_assert_eq!(Amount::from_decimal(amount.to_decimal()), Ok(amount));
        }
    }
}
