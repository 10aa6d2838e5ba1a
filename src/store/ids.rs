//! Row ids: UUIDv7, so that ids sort by the time they were made and a time bounds a range of ids.

use time::OffsetDateTime;
use uuid::Uuid;

pub(crate) fn new_row_id() -> Uuid {
    Uuid::now_v7()
}

/// The smallest UUIDv7 of the millisecond `at`: every row id made at or after `at` is at least
/// this (a lower bound for range scans over time-ordered ids).
pub(crate) fn first_id_at(at: OffsetDateTime) -> Uuid {
    let millis = u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_id_of_a_moment_bounds_every_id_made_from_then_on() {
        let now = OffsetDateTime::now_utc();
        let made = new_row_id();
        assert!(first_id_at(now - time::Duration::milliseconds(1)) <= made);
        assert!(first_id_at(now + time::Duration::seconds(1)) > made);
        assert_eq!(first_id_at(now).get_version_num(), 7);
    }
}
