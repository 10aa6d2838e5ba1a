//! Payments: creation with its order number, reads, the state machine applied under the row's
//! lock with its audit and outbox rows, and the reconciliation worker's schedule.

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::{Tx, query, query_as, query_as_per_backend};
use super::idempotency::answer_key_and_commit;
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

/// The change [`update_status_in`] makes, as `$1`…`$10` (see [`bind_status_update`]); a
/// macro so that statements can be built around it with `concat!`.
macro_rules! status_update {
    () => {
        "UPDATE payments SET status = $2, next_action = $3, \
         failure_code = COALESCE($4, failure_code), failure_message = COALESCE($5, \
         failure_message), \
         acquirer_operation_id = COALESCE($7, acquirer_operation_id), \
         next_check_at = $8, check_attempts = 0, action_deadline = COALESCE($9, action_deadline), \
         submitted_at = CASE WHEN $2 = 'processing' THEN $6 ELSE submitted_at END, \
         updated_at = $6 WHERE id = $1 AND ($10 IS NULL OR status = $10)"
    };
}

/// What a change to `to` sets from itself rather than keeps: one computation for the
/// `UPDATE` ([`bind_status_update`]) and the row written whole ([`moved_record`]).
struct SetByChange<'a> {
    /// The next action only makes sense while the customer still has to act.
    next_action: Option<&'a str>,
    next_check_at: Option<OffsetDateTime>,
    /// `None` keeps the one the payment has.
    action_deadline: Option<OffsetDateTime>,
}

impl<'a> SetByChange<'a> {
    fn of(to: PaymentStatus, change: &StatusChange<'a>, now: OffsetDateTime) -> Self {
        use crate::domain::payment::{ACTION_WINDOW, first_check_delay};
        let requires_action = to == PaymentStatus::RequiresAction;
        SetByChange {
            next_action: change.next_action.filter(|_| requires_action),
            next_check_at: first_check_delay(to).map(|delay| now + delay),
            action_deadline: requires_action.then(|| now + ACTION_WINDOW),
        }
    }
}

/// Binds [`status_update`]'s ten arguments: the payment `id` moved to `to` by `change` at
/// `now`, only from `only_from` when given.
fn bind_status_update<'q, O: super::db::Row>(
    statement: super::db::QueryAs<'q, O>,
    id: Uuid,
    only_from: Option<PaymentStatus>,
    to: PaymentStatus,
    change: &StatusChange<'q>,
    now: OffsetDateTime,
) -> super::db::QueryAs<'q, O> {
    let SetByChange {
        next_action,
        next_check_at,
        action_deadline,
    } = SetByChange::of(to, change, now);
    let (failure_code, failure_message) = change.failure.unzip();
    statement
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
    let statement = query_as(concat!(status_update!(), " RETURNING ", payment_columns!()));
    Ok(
        bind_status_update(statement, id, only_from, to, change, now)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// A change to a payment whose status is still the one `believed` holds, with its audit line,
/// its event and a public payment's decline, as one PostgreSQL statement and so one commit
/// without `BEGIN` and `COMMIT`: what the transaction of [`transition_believed_in`] does, in
/// one round trip instead of five. The event is written before the row is read back, which is
/// sound because it carries only what never changes after creation and the status it moves to.
/// `None`, with nothing written, when the payment is no longer in that status or an SMS
/// belongs to it: an SMS reply is worded from rows this statement could not see were it
/// written concurrently, so that payment takes the transaction, which reads them after its
/// lock.
async fn transition_in_one_statement(
    pool: &super::db::Pool,
    believed: &PaymentRecord,
    to: PaymentStatus,
    change: &StatusChange<'_>,
    now: OffsetDateTime,
) -> Result<Option<PaymentRecord>, StoreError> {
    let from = believed.status;
    let event_type = change.event.outbox_type();
    let payload = crate::events::payment(
        &PaymentRecord {
            status: to,
            ..believed.clone()
        },
        event_type,
        now,
    )?;
    let line = AuditLine {
        payment_id: believed.id,
        from: Some(from),
        to,
        actor: change.actor,
        reason: change.reason,
        at: now,
    };
    let declined = to == PaymentStatus::Failed && believed.client_id.is_none();
    let statement = query_as(concat!(
        "WITH moved AS (",
        status_update!(),
        " AND NOT EXISTS (SELECT 1 FROM sms_messages WHERE payment_id = $1) RETURNING ",
        payment_columns!(),
        "), audit AS (INSERT INTO payment_audit (id, payment_id, from_status, to_status, actor, \
         reason, detail, created_at) SELECT $11, $12, $13, $14, $15, $16, $17, $18 FROM moved), \
         event AS (INSERT INTO outbox (id, aggregate_id, event_type, payload, created_at, \
         awaiting_queue) SELECT $19, $12, $20, $21, $18, true FROM moved), \
         declined AS (UPDATE public_attempts SET declined_at = $18 \
         WHERE $22 AND payment_id IN (SELECT id FROM moved)) \
         SELECT ",
        payment_columns!(),
        " FROM moved"
    ));
    let statement = bind_status_update(statement, believed.id, Some(from), to, change, now);
    Ok(line
        .bind(statement)
        .bind(super::new_row_id())
        .bind(event_type)
        .bind(payload)
        .bind(declined)
        .fetch_optional(pool)
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

/// The payment [`status_update`] makes of `record` (the same columns, the same rules), for a
/// statement that writes the row as it will be instead of changing it: the creation in one
/// statement. A test holds the two together.
fn moved_record(
    record: &PaymentRecord,
    to: PaymentStatus,
    change: &StatusChange<'_>,
    now: OffsetDateTime,
) -> PaymentRecord {
    let set = SetByChange::of(to, change, now);
    PaymentRecord {
        status: to,
        next_action: set.next_action.map(str::to_owned),
        failure_code: change
            .failure
            .map(|(code, _)| code.to_owned())
            .or_else(|| record.failure_code.clone()),
        failure_message: change
            .failure
            .map(|(_, message)| message.to_owned())
            .or_else(|| record.failure_message.clone()),
        acquirer_operation_id: change
            .acquirer_operation_id
            .map(str::to_owned)
            .or_else(|| record.acquirer_operation_id.clone()),
        next_check_at: set.next_check_at,
        check_attempts: 0,
        action_deadline: set.action_deadline.or(record.action_deadline),
        submitted_at: if to == PaymentStatus::Processing {
            Some(now)
        } else {
            record.submitted_at
        },
        updated_at: now,
        ..record.clone()
    }
}

/// `at` as PostgreSQL keeps it (whole microseconds), so that a row written from Rust's values
/// reads back equal to them.
fn stored_precision(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at)
}

/// A hosted payment's creation decided before anything is written: the row as its first move
/// leaves it (with the order number taken), its key's answer, and the two audit lines and two
/// events the transaction path writes. `None` when the request needs that path: no first move,
/// one that ends the payment (its channels' effects are the transaction's), personal data, or
/// no answer.
struct PlannedCreation<'a> {
    created: PaymentRecord,
    moved: PaymentRecord,
    answer: StoredResponse,
    created_line: AuditLine<'a>,
    moved_line: AuditLine<'a>,
    moved_event: &'static str,
}

impl<'a> PlannedCreation<'a> {
    fn plan(
        p: &NewPaymentRecord,
        order_number: i64,
        actor: &'a str,
        first: DecideFirstMove<'_>,
        key: &KeyAnswer<'_>,
    ) -> Option<Self> {
        use crate::domain::payment::{Transition, first_check_delay};
        if p.payer.is_some() {
            return None;
        }
        let created_at = stored_precision(p.created_at);
        let created = PaymentRecord {
            id: p.id,
            client_id: p.client_id,
            user_id: p.user_id.clone(),
            supplier_id: p.supplier_id.clone(),
            account_number: p.account_number.clone(),
            amount_minor: p.amount_minor,
            currency: p.currency.clone(),
            description: p.description.clone(),
            email: p.email.clone(),
            phone: p.phone.clone(),
            return_url: p.return_url.clone(),
            acquirer: p.acquirer,
            acquirer_order_id: order_number.to_string(),
            status: PaymentStatus::Created,
            next_action: None,
            failure_code: None,
            failure_message: None,
            review_reason: None,
            review_detail: None,
            acquirer_operation_id: None,
            payment_method: p.payment_method,
            saved_card_id: p.saved_card_id,
            save_card: p.save_card,
            next_check_at: first_check_delay(PaymentStatus::Created)
                .map(|delay| created_at + delay),
            check_attempts: 0,
            action_deadline: None,
            submitted_at: None,
            created_at,
            updated_at: created_at,
        };
        let first = first(&created)?;
        let change = first.change(actor);
        let Ok(Transition::To(to)) = created.status.apply(change.event) else {
            return None;
        };
        if to.is_final() {
            return None;
        }
        let now = stored_precision(OffsetDateTime::now_utc());
        let moved = moved_record(&created, to, &change, now);
        let answer = (key.answer)(&moved)?;
        Some(PlannedCreation {
            created_line: AuditLine {
                payment_id: p.id,
                from: None,
                to: PaymentStatus::Created,
                actor,
                reason: &crate::domain::audit::AuditReason::PaymentCreated,
                at: created_at,
            },
            moved_line: AuditLine {
                payment_id: p.id,
                from: Some(PaymentStatus::Created),
                to,
                actor,
                reason: first.reason,
                at: now,
            },
            moved_event: change.event.outbox_type(),
            created,
            moved,
            answer,
        })
    }

    /// The two events' payloads: the creation's, then the first move's.
    fn payloads(&self) -> Result<(String, String), StoreError> {
        Ok((
            crate::events::payment(&self.created, "payment.created", self.created.created_at)?,
            crate::events::payment(&self.moved, self.moved_event, self.moved.updated_at)?,
        ))
    }
}

/// Binds a payment's 29 columns, in the order of `payment_columns!`, as the next arguments of
/// `statement`: a row written whole, as [`PlannedCreation`] decided it.
fn bind_payment_row<'q, S: super::db::Bind<'q>>(statement: S, row: &'q PaymentRecord) -> S {
    statement
        .bind(row.id)
        .bind(row.client_id)
        .bind(&row.user_id)
        .bind(&row.supplier_id)
        .bind(&row.account_number)
        .bind(row.amount_minor)
        .bind(&row.currency)
        .bind(&row.description)
        .bind(&row.email)
        .bind(&row.phone)
        .bind(&row.return_url)
        .bind(row.acquirer)
        .bind(&row.acquirer_order_id)
        .bind(row.status)
        .bind(&row.next_action)
        .bind(&row.failure_code)
        .bind(&row.failure_message)
        .bind(&row.review_reason)
        .bind(&row.review_detail)
        .bind(&row.acquirer_operation_id)
        .bind(row.payment_method)
        .bind(row.saved_card_id)
        .bind(row.save_card)
        .bind(row.next_check_at)
        .bind(row.check_attempts)
        .bind(row.action_deadline)
        .bind(row.submitted_at)
        .bind(row.created_at)
        .bind(row.updated_at)
}

/// A hosted payment created, sent to its page and its key answered as one PostgreSQL statement
/// (one commit, no `BEGIN` or `COMMIT`): the order number is taken first (from the block in
/// hand, [`super::order_numbers`]: no round trip for most creations), then the row is
/// written as the first move leaves it with everything [`PlannedCreation`] holds. `None`, with
/// nothing written (an order number may be skipped: gaps are fine), when the key is known
/// already or the request needs the transaction path.
async fn create_answered_in_one_statement(
    pool: &super::db::Pool,
    order_numbers: &super::order_numbers::OrderNumbers,
    p: &NewPaymentRecord,
    actor: &str,
    first: DecideFirstMove<'_>,
    key: &KeyAnswer<'_>,
) -> Result<Option<PaymentRecord>, StoreError> {
    if p.payer.is_some() {
        return Ok(None);
    }
    let order_number = order_numbers.next(pool).await?;
    let Some(plan) = PlannedCreation::plan(p, order_number, actor, first, key) else {
        return Ok(None);
    };
    let (created_payload, moved_payload) = plan.payloads()?;
    let moved = &plan.moved;
    let answer = &plan.answer;
    // A key already known (a retry, a reuse, an expired key) inserts nothing, and so nothing
    // else is inserted: every other row is selected from the claim's.
    let statement = query_as::<(Uuid,)>(concat!(
        "WITH claim AS (INSERT INTO idempotency_keys (client_id, idem_key, fingerprint, state, \
         created_at, locked_until, expires_at, resource_id, response_status, response_body) \
         VALUES ($1, $2, $3, 'done', $4, $4, $5, $6, $7, $8) \
         ON CONFLICT (client_id, idem_key) DO NOTHING RETURNING resource_id), \
         payment AS (INSERT INTO payments (",
        payment_columns!(),
        ") SELECT $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, \
         $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, $37 \
         FROM claim RETURNING id), \
         audit AS (INSERT INTO payment_audit (id, payment_id, from_status, to_status, actor, \
         reason, detail, created_at) \
         SELECT $38, $39, $40, $41, $42, $43, $44, $45 FROM payment \
         UNION ALL SELECT $46, $47, $48, $49, $50, $51, $52, $53 FROM payment), \
         event AS (INSERT INTO outbox (id, aggregate_id, event_type, payload, created_at, \
         awaiting_queue) \
         SELECT $54, $6, 'payment.created', $55, $36, true FROM payment \
         UNION ALL SELECT $56, $6, $57, $58, $37, true FROM payment) \
         SELECT id FROM payment"
    ))
    .bind(key.client_id)
    .bind(key.key)
    .bind(key.fingerprint)
    .bind(key.now)
    .bind(key.expires_at)
    .bind(p.id)
    .bind(i32::from(answer.status))
    .bind(&answer.body);
    let statement = bind_payment_row(statement, moved);
    let statement = plan.moved_line.bind(plan.created_line.bind(statement));
    let inserted = statement
        .bind(super::new_row_id())
        .bind(created_payload)
        .bind(super::new_row_id())
        .bind(plan.moved_event)
        .bind(moved_payload)
        .fetch_optional(pool)
        .await?;
    Ok(inserted.map(|_| plan.moved))
}

/// [`create_answered_in_one_statement`] for SQLite, in two round trips on the writer: `BEGIN
/// IMMEDIATE` with the acquirer's counter taken, then every row and `COMMIT` in one string.
/// Every row but the key's is written only when the row before it is there, so a key already
/// known writes nothing but the counter (a skipped order number: gaps are fine), and the last
/// event's count says whether the payment was created.
async fn create_answered_in_two_round_trips(
    pool: &super::db::Pool,
    p: &NewPaymentRecord,
    actor: &str,
    first: DecideFirstMove<'_>,
    key: &KeyAnswer<'_>,
) -> Result<Option<PaymentRecord>, StoreError> {
    if p.payer.is_some() {
        return Ok(None);
    }
    let mut tx = pool.begin_write().await?;
    let (order_number,): (i64,) = query_as(
        "INSERT INTO acquirer_sequences (acquirer, last_value) VALUES ($1, 1) \
         ON CONFLICT (acquirer) DO UPDATE SET last_value = acquirer_sequences.last_value + 1 \
         RETURNING last_value",
    )
    .bind(p.acquirer)
    .fetch_one(&mut tx)
    .await?;
    let Some(plan) = PlannedCreation::plan(p, order_number, actor, first, key) else {
        tx.rollback().await?;
        return Ok(None);
    };
    let (created_payload, moved_payload) = plan.payloads()?;
    let moved = &plan.moved;
    query(
        "INSERT INTO idempotency_keys (client_id, idem_key, fingerprint, state, created_at, \
         locked_until, expires_at, resource_id, response_status, response_body) \
         VALUES ($1, $2, $3, 'done', $4, $4, $5, $6, $7, $8) \
         ON CONFLICT (client_id, idem_key) DO NOTHING",
    )
    .bind(key.client_id)
    .bind(key.key)
    .bind(key.fingerprint)
    .bind(key.now)
    .bind(key.expires_at)
    .bind(p.id)
    .bind(i32::from(plan.answer.status))
    .bind(&plan.answer.body)
    .execute_with_next(&mut tx)
    .await?;
    // The key's row names this payment only if this request inserted it.
    let payment = query(concat!(
        "INSERT INTO payments (",
        payment_columns!(),
        ") SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29 \
         WHERE EXISTS (SELECT 1 FROM idempotency_keys \
         WHERE client_id = $30 AND idem_key = $31 AND resource_id = $1)"
    ));
    bind_payment_row(payment, moved)
        .bind(key.client_id)
        .bind(key.key)
        .execute_with_next(&mut tx)
        .await?;
    for line in [&plan.created_line, &plan.moved_line] {
        line.bind(query(
            "INSERT INTO payment_audit (id, payment_id, from_status, to_status, actor, reason, \
             detail, created_at) SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
             WHERE EXISTS (SELECT 1 FROM payments WHERE id = $2)",
        ))
        .execute_with_next(&mut tx)
        .await?;
    }
    let event = |event_type: &'static str, payload: String, at: OffsetDateTime| {
        query(
            "INSERT INTO outbox (id, aggregate_id, event_type, payload, created_at, \
             awaiting_queue) SELECT $1, $2, $3, $4, $5, true \
             WHERE EXISTS (SELECT 1 FROM payments WHERE id = $2)",
        )
        .bind(super::new_row_id())
        .bind(p.id)
        .bind(event_type)
        .bind(payload)
        .bind(at)
    };
    event("payment.created", created_payload, plan.created.created_at)
        .execute_with_next(&mut tx)
        .await?;
    let last = event(plan.moved_event, moved_payload, moved.updated_at)
        .execute_and_commit(tx)
        .await?;
    Ok((last.rows_affected() == 1).then_some(plan.moved))
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
    /// commit: one for the whole request (on PostgreSQL one statement, on SQLite two round
    /// trips on the writer; see [`PlannedCreation`]). `None`, with nothing written but perhaps
    /// a skipped order number, when the key is known already (a retry, a reuse, an expired key)
    /// or the request needs the step-by-step path (`first` or `key.answer` gives up, a first
    /// move that ends the payment, personal data): that path claims the key on its own.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn create_payment_answered(
        &self,
        p: &NewPaymentRecord,
        actor: &str,
        first: DecideFirstMove<'_>,
        key: &KeyAnswer<'_>,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        if self.pool.backend() == "postgres" {
            create_answered_in_one_statement(&self.pool, &self.order_numbers, p, actor, first, key)
                .await
        } else {
            create_answered_in_two_round_trips(&self.pool, p, actor, first, key).await
        }
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
    /// fewer round trips while the payment is still as read (on PostgreSQL one statement, see
    /// `transition_in_one_statement`; on SQLite one statement fewer, see
    /// `transition_believed_in`), the same result otherwise.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn transition_payment_from(
        &self,
        payment: &PaymentRecord,
        change: &StatusChange<'_>,
    ) -> Result<TransitionResult, StoreError> {
        use crate::domain::payment::Transition;
        if self.pool.backend() == "postgres"
            && let Ok(Transition::To(to)) = payment.status.apply(change.event)
        {
            let now = OffsetDateTime::now_utc();
            if let Some(updated) =
                transition_in_one_statement(&self.pool, payment, to, change, now).await?
            {
                return Ok(TransitionResult::Applied(updated));
            }
        }
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
