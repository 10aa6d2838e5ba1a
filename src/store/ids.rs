//! Row ids: UUIDv7, so that ids sort by the time they were made.

use uuid::Uuid;

pub(crate) fn new_row_id() -> Uuid {
    Uuid::now_v7()
}
