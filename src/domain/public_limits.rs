//! Abuse limits of the anonymous pay page: attempts per account number, declines per client IP.
//!
//! Sliding windows over recorded attempts, so the limits hold across restarts and replicas and
//! the `Retry-After` is the moment the oldest counted event leaves its window.

use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicLimits {
    pub attempts_per_account: usize,
    pub account_window: Duration,
    pub declines_per_ip: usize,
    pub ip_window: Duration,
    /// Anonymous payments one address may create in `creations_window`, whatever their fate.
    pub creations_per_ip: usize,
    pub creations_window: Duration,
}

impl Default for PublicLimits {
    fn default() -> Self {
        PublicLimits {
            attempts_per_account: 20,
            account_window: Duration::hours(1),
            declines_per_ip: 10,
            ip_window: Duration::minutes(10),
            creations_per_ip: 60,
            creations_window: Duration::hours(1),
        }
    }
}

/// Which limit refused, and when a new attempt can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    #[error("too many payment attempts for this account number; retry in {retry_after_secs} s")]
    AccountAttempts { retry_after_secs: u64 },
    #[error("too many declined payments from this address; retry in {retry_after_secs} s")]
    IpDeclines { retry_after_secs: u64 },
    #[error("too many payments from this address; retry in {retry_after_secs} s")]
    IpCreations { retry_after_secs: u64 },
}

impl Limited {
    pub fn retry_after_secs(self) -> u64 {
        match self {
            Limited::AccountAttempts { retry_after_secs }
            | Limited::IpDeclines { retry_after_secs }
            | Limited::IpCreations { retry_after_secs } => retry_after_secs,
        }
    }
}

/// When the window drops back below `max` events: the moment the event that must leave does.
/// `times` are the events inside the window, in any order.
fn wait_for_room(
    times: &[OffsetDateTime],
    max: usize,
    window: Duration,
    now: OffsetDateTime,
) -> Option<u64> {
    if times.len() < max {
        return None;
    }
    let mut sorted = times.to_vec();
    sorted.sort();
    // With n events and room for max-1 more after one leaves, the (n - max)th oldest must go.
    let leaving = sorted[times.len() - max];
    let wait = (leaving + window - now).whole_seconds().max(1);
    Some(u64::try_from(wait).unwrap_or(1))
}

/// Decides on one attempt given the account's attempts and the IP's declines inside their
/// windows.
/// The recent public attempts around a new one, as the limits judge them.
#[derive(Debug, Clone, Copy)]
pub struct Recent<'a> {
    /// Attempts on the same account within the account window.
    pub account_attempts: &'a [OffsetDateTime],
    /// Declines of the same address within the address window.
    pub ip_declines: &'a [OffsetDateTime],
    /// Creations from the same address within the creations window.
    pub ip_creations: &'a [OffsetDateTime],
}

pub fn check(
    limits: &PublicLimits,
    account_attempts: &[OffsetDateTime],
    ip_declines: &[OffsetDateTime],
    ip_creations: &[OffsetDateTime],
    now: OffsetDateTime,
) -> Result<(), Limited> {
    if let Some(retry_after_secs) = wait_for_room(
        ip_creations,
        limits.creations_per_ip,
        limits.creations_window,
        now,
    ) {
        return Err(Limited::IpCreations { retry_after_secs });
    }
    if let Some(retry_after_secs) =
        wait_for_room(ip_declines, limits.declines_per_ip, limits.ip_window, now)
    {
        return Err(Limited::IpDeclines { retry_after_secs });
    }
    if let Some(retry_after_secs) = wait_for_room(
        account_attempts,
        limits.attempts_per_account,
        limits.account_window,
        now,
    ) {
        return Err(Limited::AccountAttempts { retry_after_secs });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-22 12:00 UTC);

    fn minutes_ago(list: &[i64]) -> Vec<OffsetDateTime> {
        list.iter().map(|m| NOW - Duration::minutes(*m)).collect()
    }

    #[test]
    fn below_the_limits_attempts_pass() {
        let limits = PublicLimits::default();
        let attempts = minutes_ago(&[1; 19]);
        let declines = minutes_ago(&[1; 9]);
        assert_eq!(check(&limits, &attempts, &declines, &[], NOW), Ok(()));
    }

    #[test]
    fn the_twenty_first_attempt_waits_until_the_oldest_leaves_the_hour() {
        let limits = PublicLimits::default();
        let mut ages: Vec<i64> = vec![50];
        ages.extend([5; 19]);
        assert_eq!(
            check(&limits, &minutes_ago(&ages), &[], &[], NOW),
            Err(Limited::AccountAttempts {
                retry_after_secs: 600
            })
        );
    }

    #[test]
    fn ten_declines_block_the_address_before_the_account_is_looked_at() {
        let limits = PublicLimits::default();
        // Twelve declines: the third oldest must leave before there is room again.
        let declines = minutes_ago(&[9, 8, 7, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(
            check(&limits, &minutes_ago(&[1; 30]), &declines, &[], NOW),
            Err(Limited::IpDeclines {
                retry_after_secs: 180
            })
        );
    }

    #[test]
    fn one_address_creates_at_most_its_hourly_number() {
        let limits = PublicLimits {
            creations_per_ip: 3,
            ..PublicLimits::default()
        };
        assert_eq!(
            check(&limits, &[], &[], &minutes_ago(&[50, 5]), NOW),
            Ok(())
        );
        assert_eq!(
            check(&limits, &[], &[], &minutes_ago(&[50, 5, 1]), NOW),
            Err(Limited::IpCreations {
                retry_after_secs: 600
            })
        );
    }
}
