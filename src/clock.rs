//! The service's one source of "now" for rules that count per day, so tests can move it.

use std::sync::RwLock;

use time::OffsetDateTime;

/// The wall clock, unless a test has set it.
#[derive(Debug, Default)]
pub struct Clock {
    fixed: RwLock<Option<OffsetDateTime>>,
}

impl Clock {
    pub fn now(&self) -> OffsetDateTime {
        let fixed = match self.fixed.read() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        };
        fixed.unwrap_or_else(OffsetDateTime::now_utc)
    }

    /// Stops the clock at `at` (`None`: back to the wall clock). For tests.
    pub fn set(&self, at: Option<OffsetDateTime>) {
        match self.fixed.write() {
            Ok(mut guard) => *guard = at,
            Err(poisoned) => *poisoned.into_inner() = at,
        }
    }
}
