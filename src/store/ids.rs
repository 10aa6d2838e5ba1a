//! Row ids: UUIDv7, so that ids sort by the time they were made.

use time::OffsetDateTime;
use uuid::Uuid;

pub(crate) fn new_row_id() -> Uuid {
    Uuid::now_v7()
}

/// The smallest UUIDv7 made at `at` or later: every row id made before `at` sorts below it, so
/// "made before" is a range of the primary key (both databases compare ids byte by byte).
pub fn first_row_id_at(at: OffsetDateTime) -> Uuid {
    let millis = u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_before_a_moment_sort_below_its_first_id_and_later_ones_above() {
        let moment = OffsetDateTime::now_utc();
        let before = new_row_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let bound = first_row_id_at(OffsetDateTime::now_utc());
        std::thread::sleep(std::time::Duration::from_millis(2));
        let after = new_row_id();
        assert!(before < bound, "{before} < {bound}");
        assert!(bound < after, "{bound} < {after}");
        assert!(first_row_id_at(moment) <= before);
        assert_eq!(
            first_row_id_at(OffsetDateTime::UNIX_EPOCH - time::Duration::days(1)),
            Uuid::nil()
        );
    }
}
