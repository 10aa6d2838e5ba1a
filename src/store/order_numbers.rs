//! Order numbers taken from PostgreSQL's sequence a block at a time.
//!
//! A hosted creation must know its order number before it writes (the acquirer's signed page
//! and the stored answer carry it), so on PostgreSQL it used to ask the sequence alone, one
//! round trip of three. A process now takes [`BLOCK`] numbers in one statement and hands them
//! out from memory. Every number still comes from the sequence, so numbers stay unique across
//! replicas and beside the step-by-step path's own `nextval`; what a process has not handed out
//! when it stops is skipped, as a rolled-back `nextval` is (gaps are fine for every acquirer).

use std::collections::VecDeque;
use std::sync::Mutex;

use super::StoreError;
use super::db::{Pool, query_as};

/// Numbers a process takes at once: a stopped process skips at most this many, a small share
/// of any acquirer's range (Robokassa's `InvId` goes to 2,147,483,647).
pub(crate) const BLOCK: i64 = 32;

#[derive(Debug, Default)]
pub(crate) struct OrderNumbers {
    /// Taken from the sequence and not yet handed out, lowest first.
    taken: Mutex<VecDeque<i64>>,
    /// Held while a block is being taken: creations that find the block used up at once wait
    /// for that one block instead of each taking one (numbers a process holds are skipped
    /// when it stops).
    taking: tokio::sync::Mutex<()>,
}

impl OrderNumbers {
    /// The next number: from the block in hand, or from a new block when it is used up.
    pub(crate) async fn next(&self, pool: &Pool) -> Result<i64, StoreError> {
        if let Some(number) = self.hand_out() {
            return Ok(number);
        }
        let _taking = self.taking.lock().await;
        if let Some(number) = self.hand_out() {
            return Ok(number);
        }
        let block: Vec<(i64,)> = query_as(
            "SELECT nextval('payment_order_numbers') FROM generate_series(1, $1) ORDER BY 1",
        )
        .bind(BLOCK)
        .fetch_all(pool)
        .await?;
        let mut taken = self.lock();
        taken.extend(block.into_iter().map(|(number,)| number));
        taken
            .pop_front()
            .ok_or_else(|| StoreError::Corrupt("the order number sequence gave nothing".into()))
    }

    fn hand_out(&self) -> Option<i64> {
        self.lock().pop_front()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<i64>> {
        // A panic while the lock was held cannot leave the numbers half-changed (each change
        // is one call on the deque), so a poisoned lock's numbers are still good.
        self.taken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
