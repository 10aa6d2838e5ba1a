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
