//! Payments: creation with its order number, reads, the state machine applied under the row's
//! lock with its audit and outbox rows, and the reconciliation worker's schedule.

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::{Tx, query, query_as, query_as_per_backend};
use super::idempotency::{answer_key_and_commit, insert_key_in};
use super::journal::{AuditLine, audit_and_event_in};
use super::{
    AuditRecord, DecideFirstMove, KeyAnswer, NewPaymentRecord, PaymentRecord, PaymentSearch,
    StatusChange, Store, StoreError, StoredResponse, TransitionResult,
};
use crate::domain::payment::PaymentStatus;

/// The payment, locked until `conn` ends: the one lock every change to a payment and its
/// refunds takes first, so two of them never deadlock.
pub(super) async fn lock_payment_in(
    conn: &mut Tx,
    id: Uuid,
) -> Result<Option<PaymentRecord>, StoreError> {
    Ok(query_as(concat!(
        "SELECT ",
        payment_columns!(),
        " FROM payments WHERE id = $1",
        " FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The state machine applied inside a transaction someone else commits.
pub(super) async fn transition_in(
    conn: &mut Tx,
    id: Uuid,
    change: &StatusChange<'_>,
) -> Result<TransitionResult, StoreError> {
    transition_believed_in(conn, id, None, change).await
}

/// [`transition_in`] for a caller that holds the payment as it last read it. When the change
/// applies from the status it `believed`, the row is updated on the condition that it is still
/// there, in one statement, without reading it first: each statement is a round trip, and on
/// SQLite every round trip of a write is time the one writer connection is held. If the payment
/// has moved on meanwhile, nothing is written and it is read under its lock as usual.
pub(super) async fn transition_believed_in(
    conn: &mut Tx,
    id: Uuid,
    believed: Option<PaymentStatus>,
    change: &StatusChange<'_>,
) -> Result<TransitionResult, StoreError> {
    use crate::domain::payment::Transition;
    use crate::store::{StoreError, TransitionResult};
    let now = OffsetDateTime::now_utc();
    if let Some(from) = believed
        && let Ok(Transition::To(to)) = from.apply(change.event)
        && let Some(updated) = update_status_in(conn, id, Some(from), to, change, now).await?
    {
        return record_transition_in(conn, from, updated, change, now).await;
    }
    let current = lock_payment_in(conn, id)
        .await?
        .ok_or(StoreError::NotFound)?;
    let from = current.status;
    let to = match from.apply(change.event) {
        Ok(Transition::To(to)) => to,
        Ok(Transition::AlreadyThere) => return Ok(TransitionResult::AlreadyThere(current)),
        Err(refused) => return Ok(TransitionResult::Refused(current, refused)),
    };
    let updated = update_status_in(conn, id, None, to, change, now)
        .await?
        .ok_or(StoreError::NotFound)?;
    record_transition_in(conn, from, updated, change, now).await
}

/// Moves the payment to `to`; when `only_from` is given, only if it is still in that status
/// (`None` answered, nothing written, if it is not).
async fn update_status_in(
    conn: &mut Tx,
    id: Uuid,
    only_from: Option<PaymentStatus>,
    to: PaymentStatus,
    change: &StatusChange<'_>,
    now: OffsetDateTime,
) -> Result<Option<PaymentRecord>, StoreError> {
    use crate::domain::payment::{ACTION_WINDOW, first_check_delay};
    // The next action only makes sense while the customer still has to act.
    let next_action = if to == PaymentStatus::RequiresAction {
        change.next_action
    } else {
        None
    };
    let next_check_at = first_check_delay(to).map(|delay| now + delay);
    let action_deadline = (to == PaymentStatus::RequiresAction).then(|| now + ACTION_WINDOW);
    let (failure_code, failure_message) = change.failure.unzip();
    Ok(query_as(concat!(
        "UPDATE payments SET status = $2, next_action = $3, \
         failure_code = COALESCE($4, failure_code), failure_message = COALESCE($5, \
         failure_message), \
         acquirer_operation_id = COALESCE($7, acquirer_operation_id), \
         next_check_at = $8, check_attempts = 0, action_deadline = COALESCE($9, action_deadline), \
         submitted_at = CASE WHEN $2 = 'processing' THEN $6 ELSE submitted_at END, \
         updated_at = $6 WHERE id = $1 AND ($10 IS NULL OR status = $10) RETURNING ",
        payment_columns!()
    ))
    .bind(id)
    .bind(to.as_str())
    .bind(next_action)
    .bind(failure_code)
    .bind(failure_message)
    .bind(now)
    .bind(change.acquirer_operation_id)
    .bind(next_check_at)
    .bind(action_deadline)
    .bind(only_from.map(PaymentStatus::as_str))
    .fetch_optional(&mut *conn)
    .await?)
}

/// What every applied change writes beside the row: its audit line, its event, and the
/// channels' effects of a final status.
async fn record_transition_in(
    conn: &mut Tx,
    from: PaymentStatus,
    updated: PaymentRecord,
    change: &StatusChange<'_>,
    now: OffsetDateTime,
) -> Result<TransitionResult, StoreError> {
    let to = updated.status;
    let event_type = change.event.outbox_type();
    let payload = crate::events::payment(&updated, event_type, now)?;
    audit_and_event_in(
        conn,
        AuditLine {
            payment_id: updated.id,
            from: Some(from),
            to,
            actor: change.actor,
            reason: change.reason,
            at: now,
        },
        event_type,
        payload,
    )
    .await?;
    if to.is_final() {
        super::sms::channel_effects_in(conn, &updated, to, now).await?;
    }
    Ok(TransitionResult::Applied(updated))
}

/// Inserts a payment with its audit, outbox and personal-data rows, then makes the first move
/// `first` decides, in the same transaction.
pub(super) async fn create_payment_in(
    tx: &mut Tx,
    p: &NewPaymentRecord,
    actor: &str,
    first: DecideFirstMove<'_>,
) -> Result<PaymentRecord, StoreError> {
    // The order number is taken in the same round trip as the row: from a sequence on
    // PostgreSQL (nothing that concurrent creations queue behind; gaps are fine for every
    // acquirer), from a counter row per acquirer on SQLite, whose writers are serialised by
    // `BEGIN IMMEDIATE` anyway.
    let record: PaymentRecord = query_as_per_backend(
        concat!(
            "INSERT INTO payments (id, client_id, user_id, supplier_id, account_number, \
             amount_minor, currency, description, email, return_url, acquirer, acquirer_order_id, \
             status, created_at, updated_at, payment_method, saved_card_id, save_card, \
             next_check_at, phone) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             CAST(nextval('payment_order_numbers') AS TEXT), 'created', $12, $12, $13, $14, $15, \
             $16, $17) \
             RETURNING ",
            payment_columns!()
        ),
        concat!(
            "INSERT INTO acquirer_sequences (acquirer, last_value) VALUES ($11, 1) \
             ON CONFLICT (acquirer) DO UPDATE SET last_value = acquirer_sequences.last_value + 1; \
             INSERT INTO payments (id, client_id, user_id, supplier_id, account_number, \
             amount_minor, currency, description, email, return_url, acquirer, acquirer_order_id, \
             status, created_at, updated_at, payment_method, saved_card_id, save_card, \
             next_check_at, phone) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             (SELECT CAST(last_value AS TEXT) FROM acquirer_sequences WHERE acquirer = $11), \
             'created', $12, $12, $13, $14, $15, $16, $17) \
             RETURNING ",
            payment_columns!()
        ),
    )
    .bind(p.id)
    .bind(p.client_id)
    .bind(&p.user_id)
    .bind(&p.supplier_id)
    .bind(&p.account_number)
    .bind(p.amount_minor)
    .bind(&p.currency)
    .bind(&p.description)
    .bind(&p.email)
    .bind(&p.return_url)
    .bind(p.acquirer)
    .bind(p.created_at)
    .bind(p.payment_method)
    .bind(p.saved_card_id)
    .bind(p.save_card)
    // A payment that never leaves `created` (the process died) is checked too.
    .bind(
        crate::domain::payment::first_check_delay(crate::domain::payment::PaymentStatus::Created)
            .map(|delay| p.created_at + delay),
    )
    .bind(&p.phone)
    .fetch_one(&mut *tx)
    .await?;
    let payload = crate::events::payment(&record, "payment.created", p.created_at)?;
    audit_and_event_in(
        tx,
        AuditLine {
            payment_id: record.id,
            from: None,
            to: PaymentStatus::Created,
            actor,
            reason: &crate::domain::audit::AuditReason::PaymentCreated,
            at: p.created_at,
        },
        "payment.created",
        payload,
    )
    .await?;
    if let Some(payer) = &p.payer {
        query(
            "INSERT INTO payer_data (payment_id, key_id, ciphertext, continue_token_hash, \
             created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(record.id)
        .bind(&payer.key_id)
        .bind(&payer.ciphertext)
        .bind(&payer.continue_token_hash)
        .bind(p.created_at)
        .execute(&mut *tx)
        .await?;
    }
    let Some(first) = first(&record) else {
        return Ok(record);
    };
    // The row was just inserted by this transaction: nobody else can have moved it.
    match transition_believed_in(tx, record.id, Some(record.status), &first.change(actor)).await? {
        TransitionResult::Applied(moved)
        | TransitionResult::AlreadyThere(moved)
        | TransitionResult::Refused(moved, _) => Ok(moved),
    }
}

impl Store {
    /// Records that a `processing` payment was sent to the acquirer again now.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn mark_submitted(&self, payment_id: Uuid) -> Result<(), StoreError> {
        query("UPDATE payments SET submitted_at = $2 WHERE id = $1 AND status = 'processing'")
            .bind(payment_id)
            .bind(OffsetDateTime::now_utc())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Allocates the acquirer order number and inserts the payment as `created`, with its audit
    /// and outbox rows, and makes the first move `first` decides, in one transaction.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn create_payment(
        &self,
        p: &NewPaymentRecord,
        actor: &str,
        first: DecideFirstMove<'_>,
    ) -> Result<PaymentRecord, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        let record = create_payment_in(&mut tx, p, actor, first).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// [`Store::create_payment`] with its idempotency key claimed and answered in the same
    /// transaction: one commit for the whole request. `None`, with nothing written, when the key
    /// is known already (a retry, a reuse, an expired key) or `key.answer` gives up: the caller
    /// then takes the step-by-step path, which claims the key on its own.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn create_payment_answered(
        &self,
        p: &NewPaymentRecord,
        actor: &str,
        first: DecideFirstMove<'_>,
        key: &KeyAnswer<'_>,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        // A concurrent request with the same key waits here until this one commits, then
        // finds the answer.
        if !insert_key_in(&mut tx, &key.lease().claim_for(p.id)).await? {
            tx.rollback().await?;
            return Ok(None);
        }
        let record = create_payment_in(&mut tx, p, actor, first).await?;
        let Some(answer) = (key.answer)(&record) else {
            tx.rollback().await?;
            return Ok(None);
        };
        answer_key_and_commit(tx, key.client_id, key.key, &answer).await?;
        Ok(Some(record))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn get_payment(&self, id: Uuid) -> Result<Option<PaymentRecord>, StoreError> {
        Ok(query_as(concat!(
            "SELECT ",
            payment_columns!(),
            " FROM payments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn find_payment_by_order(
        &self,
        acquirer: &str,
        order_id: &str,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        Ok(query_as(concat!(
            "SELECT ",
            payment_columns!(),
            " FROM payments WHERE acquirer = $1 AND acquirer_order_id = $2"
        ))
        .bind(acquirer)
        .bind(order_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Applies an event through the state machine, under a lock on the payment row.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn transition_payment(
        &self,
        id: Uuid,
        change: &StatusChange<'_>,
    ) -> Result<TransitionResult, StoreError> {
        self.transition_alone(id, None, change).await
    }

    /// [`Store::transition_payment`] for a caller that holds `payment` as it last read it:
    /// one statement fewer while the payment is still as read (see `transition_believed_in`),
    /// the same result otherwise.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn transition_payment_from(
        &self,
        payment: &PaymentRecord,
        change: &StatusChange<'_>,
    ) -> Result<TransitionResult, StoreError> {
        self.transition_alone(payment.id, Some(payment.status), change)
            .await
    }

    /// A change in a transaction of its own.
    async fn transition_alone(
        &self,
        id: Uuid,
        believed: Option<PaymentStatus>,
        change: &StatusChange<'_>,
    ) -> Result<TransitionResult, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        let result = transition_believed_in(&mut tx, id, believed, change).await?;
        tx.commit().await?;
        Ok(result)
    }

    /// [`Store::transition_payment`] with the answer of the idempotency key that asked for it,
    /// in one transaction: the second and last commit of a saved-card charge (see
    /// [`Store::begin_saved_card_charge`]). When `answer` gives none the change still commits
    /// and the key stays with its holder; otherwise the answer kept is returned.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn transition_payment_answered(
        &self,
        payment: &PaymentRecord,
        change: &StatusChange<'_>,
        client_id: Uuid,
        key: &str,
        answer: &(dyn Fn(&PaymentRecord) -> Option<StoredResponse> + Send + Sync),
    ) -> Result<(TransitionResult, Option<StoredResponse>), StoreError> {
        let mut tx = self.pool.begin_write().await?;
        let result =
            transition_believed_in(&mut tx, payment.id, Some(payment.status), change).await?;
        let (TransitionResult::Applied(payment)
        | TransitionResult::AlreadyThere(payment)
        | TransitionResult::Refused(payment, _)) = &result;
        let answer = answer(payment);
        match &answer {
            Some(response) => answer_key_and_commit(tx, client_id, key, response).await?,
            None => tx.commit().await?,
        }
        Ok((result, answer))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn payment_audit(&self, payment_id: Uuid) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(query_as(
            "SELECT id, payment_id, from_status, to_status, actor, reason, detail, created_at \
             FROM payment_audit WHERE payment_id = $1 ORDER BY id",
        )
        .bind(payment_id)
        .fetch_all(&self.pool)
        .await?)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn count_payments(&self) -> Result<i64, StoreError> {
        let (count,): (i64,) = query_as("SELECT COUNT(*) FROM payments")
            .fetch_one(&self.pool)
            .await?;
        Ok(count)
    }

    /// Claims up to `limit` payments whose check is due, pushing their next check to
    /// `lease_until` so no other worker takes them meanwhile (`FOR UPDATE SKIP LOCKED` on
    /// PostgreSQL).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn claim_due_payments(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        let claimed: Vec<PaymentRecord> = query_as(concat!(
            "UPDATE payments SET next_check_at = $2 WHERE id IN (\
             SELECT id FROM payments WHERE next_check_at IS NOT NULL AND next_check_at <= $1 \
             AND status IN ('created', 'requires_action', 'processing') \
             ORDER BY next_check_at LIMIT $3",
            " FOR UPDATE SKIP LOCKED",
            ") RETURNING ",
            payment_columns!()
        ))
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// Sets when to ask again (`None`: stop asking) and counts the attempt.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn schedule_check(
        &self,
        payment_id: Uuid,
        next: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        query(
            "UPDATE payments SET next_check_at = $2, check_attempts = check_attempts + 1 WHERE \
               id = $1",
        )
        .bind(payment_id)
        .bind(next)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Payments matching the desk's search, newest first.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn search_payments(
        &self,
        q: &PaymentSearch,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        // Every field is a condition that holds when the field is not given (`$n IS NULL OR
        // …`), which no index can serve: SQLite then walks the newest-first index over every
        // payment (2.4 s for an order number at a million payments). So the most selective field
        // given also leads as a plain condition, which its index serves; the rest filter.
        macro_rules! search {
            ($leading:literal) => {
                concat!(
                    "SELECT ",
                    payment_columns!(),
                    " FROM payments WHERE ",
                    $leading,
                    " AND \
                     ($1 IS NULL OR account_number = $1) AND ($2 IS NULL OR id >= $2) AND \
                     ($3 IS NULL OR id <= $3) AND \
                     ($4 IS NULL OR acquirer_order_id = $4) AND ($5 IS NULL OR status = $5) AND \
                     ($6 IS NULL OR created_at >= $6) AND ($7 IS NULL OR created_at < $7) AND \
                     ($8 IS NULL OR lower(email) = $8) AND ($9 IS NULL OR phone = $9) AND \
                     ($10 IS NULL OR amount_minor = $10) AND \
                     ($11 IS NULL OR saved_card_id IN (SELECT id FROM saved_cards WHERE last4 = \
                     $11)) AND \
                     ($12 IS NULL OR created_at < $12 OR (created_at = $12 AND id < $13)) \
                     ORDER BY created_at DESC, id DESC LIMIT $14"
                )
            };
        }
        let sql = if q.id_range.is_some() {
            search!("id >= $2 AND id <= $3")
        } else if q.acquirer_order_id.is_some() {
            search!("acquirer_order_id = $4")
        } else if q.account_number.is_some() {
            search!("account_number = $1")
        } else if q.email.is_some() {
            search!("email IS NOT NULL AND lower(email) = $8")
        } else if q.phone.is_some() {
            search!("phone IS NOT NULL AND phone = $9")
        } else if q.card_last4.is_some() {
            search!(
                "saved_card_id IS NOT NULL AND saved_card_id IN (SELECT id FROM saved_cards \
                 WHERE last4 = $11)"
            )
        } else if q.amount_minor.is_some() {
            search!("amount_minor = $10")
        } else if q.from.is_some() && q.to.is_some() {
            search!("created_at >= $6 AND created_at < $7")
        } else if q.from.is_some() {
            search!("created_at >= $6")
        } else if q.to.is_some() {
            search!("created_at < $7")
        } else {
            // Newest first through the index on `created_at`, filtered by the status if any.
            search!("1 = 1")
        };
        Ok(query_as(sql)
            .bind(&q.account_number)
            .bind(q.id_range.map(|(first, _)| first))
            .bind(q.id_range.map(|(_, last)| last))
            .bind(&q.acquirer_order_id)
            .bind(&q.status)
            .bind(q.from)
            .bind(q.to)
            .bind(&q.email)
            .bind(&q.phone)
            .bind(q.amount_minor)
            .bind(&q.card_last4)
            .bind(q.before.map(|(at, _)| at))
            .bind(q.before.map(|(_, id)| id))
            .bind(q.limit)
            .fetch_all(&self.pool)
            .await?)
    }
}
