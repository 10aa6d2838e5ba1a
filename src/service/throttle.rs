//! At most one acquirer status query per payment in an interval, for the browser returns: they
//! are open to anyone who knows an order number, and each may ask the acquirer. Per process:
//! with several replicas each keeps its own, which still bounds the queries per payment.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Past this many remembered payments, the ones outside the interval are forgotten.
const PRUNE_AT: usize = 10_000;

#[derive(Debug)]
pub struct QueryThrottle {
    every: Duration,
    last: Mutex<HashMap<Uuid, Instant>>,
}

impl QueryThrottle {
    pub fn new(every: Duration) -> Self {
        QueryThrottle {
            every,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a query about `payment` may go out now; if so, it is counted.
    pub fn allow(&self, payment: Uuid, now: Instant) -> bool {
        if self.every.is_zero() {
            return true;
        }
        let mut last = match self.last.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if last.len() >= PRUNE_AT {
            last.retain(|_, at| now.duration_since(*at) < self.every);
        }
        match last.get(&payment) {
            Some(at) if now.duration_since(*at) < self.every => false,
            _ => {
                last.insert(payment, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_query_per_payment_per_interval() {
        let throttle = QueryThrottle::new(Duration::from_secs(5));
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let start = Instant::now();
        assert!(throttle.allow(a, start));
        assert!(!throttle.allow(a, start + Duration::from_secs(4)));
        assert!(
            throttle.allow(b, start + Duration::from_secs(4)),
            "another payment"
        );
        assert!(throttle.allow(a, start + Duration::from_secs(5)));
    }

    #[test]
    fn a_zero_interval_allows_everything() {
        let throttle = QueryThrottle::new(Duration::ZERO);
        let a = Uuid::now_v7();
        assert!(throttle.allow(a, Instant::now()));
        assert!(throttle.allow(a, Instant::now()));
    }

    #[test]
    fn many_payments_do_not_grow_it_without_bound() {
        let throttle = QueryThrottle::new(Duration::from_secs(5));
        let start = Instant::now();
        for _ in 0..PRUNE_AT {
            throttle.allow(Uuid::now_v7(), start);
        }
        throttle.allow(Uuid::now_v7(), start + Duration::from_secs(6));
        assert_eq!(throttle.last.lock().map(|m| m.len()).unwrap_or(0), 1);
    }
}
