//! Saved cards: the acquirer's token sealed by the vault, its audit trail and outbox rows, the
//! charge that takes a card under a lock a revocation waits for, and key rotation.

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::{Tx, query, query_as};
use super::idempotency::insert_key_in;
use super::journal::outbox_in;
use super::payments::create_payment_in;
use super::{
    CardEnding, CardEventRecord, KeyLease, NewPaymentRecord, NewSavedCard, PaymentRecord,
    SavedCardRecord, StatusChange, Store, StoreError, TransitionResult, new_row_id,
};

/// One row of a card's audit trail.
pub(super) struct CardEvent<'a> {
    pub card_id: Uuid,
    pub user_id: &'a str,
    pub event: &'a str,
    pub actor: &'a str,
    pub payment_id: Option<Uuid>,
    pub detail: &'a str,
    pub at: OffsetDateTime,
}

pub(super) async fn card_event_in(conn: &mut Tx, e: CardEvent<'_>) -> Result<(), StoreError> {
    query(
        "INSERT INTO card_events (id, card_id, user_id, event, actor, payment_id, detail, \
         created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_row_id())
    .bind(e.card_id)
    .bind(e.user_id)
    .bind(e.event)
    .bind(e.actor)
    .bind(e.payment_id)
    .bind(e.detail)
    .bind(e.at)
    .execute_with_next(conn)
    .await?;
    Ok(())
}

pub(super) async fn card_outbox_in(
    conn: &mut Tx,
    card: &SavedCardRecord,
    event_type: &str,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let payload = crate::events::card(card, event_type, at)?;
    outbox_in(conn, card.id, event_type, payload, at).await?;
    Ok(())
}

/// [`Store::saved_card_for_payment`]'s row.
#[derive(sqlx::FromRow)]
struct CardAndEarlierEntry {
    #[sqlx(flatten)]
    card: SavedCardRecord,
    earlier_full_entry: bool,
}

impl Store {
    /// Stores a bound card with its `bound` event and outbox row; a second call for the same
    /// binding payment returns the first card, and `None` once that card has ended (the
    /// binding payment no longer asks for a card: an ended card never comes back).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn insert_saved_card(
        &self,
        card: &NewSavedCard,
        actor: &str,
    ) -> Result<Option<SavedCardRecord>, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        // The binding payment's row is the lock `end_cards` takes too, before the card's.
        let wanted: Option<(bool,)> = query_as(concat!(
            "SELECT save_card FROM payments WHERE id = $1",
            " FOR UPDATE"
        ))
        .bind(card.binding_payment_id)
        .fetch_optional(&mut tx)
        .await?;
        if wanted != Some((true,)) {
            return Ok(None);
        }
        let inserted = query(
            "INSERT INTO saved_cards (id, user_id, payment_type, acquirer, binding_payment_id, \
             key_id, \
             token_ciphertext, brand, last4, exp_month, exp_year, status, created_at, client_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'active', $12, $13) \
             ON CONFLICT (binding_payment_id) DO NOTHING",
        )
        .bind(card.id)
        .bind(&card.user_id)
        .bind(card.payment_type)
        .bind(card.acquirer)
        .bind(card.binding_payment_id)
        .bind(&card.key_id)
        .bind(&card.token_ciphertext)
        .bind(&card.brand)
        .bind(&card.last4)
        .bind(card.exp_month)
        .bind(card.exp_year)
        .bind(card.created_at)
        .bind(card.client_id)
        .execute(&mut tx)
        .await?;
        let stored: SavedCardRecord = query_as(concat!(
            "SELECT ",
            card_columns!(),
            " FROM saved_cards WHERE binding_payment_id = $1"
        ))
        .bind(card.binding_payment_id)
        .fetch_one(&mut tx)
        .await?;
        if inserted.rows_affected() == 1 {
            card_event_in(
                &mut tx,
                CardEvent {
                    card_id: stored.id,
                    user_id: &stored.user_id,
                    event: "bound",
                    actor,
                    payment_id: Some(card.binding_payment_id),
                    detail: "card saved after a payment with full card entry and 3-D Secure",
                    at: card.created_at,
                },
            )
            .await?;
            card_outbox_in(&mut tx, &stored, "card.saved", card.created_at).await?;
        }
        tx.commit().await?;
        Ok(Some(stored))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn get_saved_card(&self, id: Uuid) -> Result<Option<SavedCardRecord>, StoreError> {
        Ok(query_as(concat!(
            "SELECT ",
            card_columns!(),
            " FROM saved_cards WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A card a payment names, with whether `user_id` has a succeeded (possibly since
    /// refunded) full-card-entry payment to `supplier_id` (rule 3), in one read.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn saved_card_for_payment(
        &self,
        card_id: Uuid,
        user_id: &str,
        supplier_id: &str,
    ) -> Result<Option<(SavedCardRecord, bool)>, StoreError> {
        let found: Option<CardAndEarlierEntry> = query_as(concat!(
            "SELECT ",
            card_columns!(),
            ", EXISTS (SELECT 1 FROM payments WHERE user_id = $2 AND supplier_id = $3 \
             AND payment_method = 'new_card' AND status IN ('succeeded', 'partially_refunded', \
             'refunded')) AS earlier_full_entry FROM saved_cards WHERE id = $1"
        ))
        .bind(card_id)
        .bind(user_id)
        .bind(supplier_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.map(|row| (row.card, row.earlier_full_entry)))
    }

    /// The active cards of a user of `client_id` (`None`: of that user id at any client).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_saved_cards(
        &self,
        client_id: Option<Uuid>,
        user_id: &str,
    ) -> Result<Vec<SavedCardRecord>, StoreError> {
        Ok(query_as(concat!(
            "SELECT ",
            card_columns!(),
            " FROM saved_cards WHERE user_id = $1 AND status = 'active' AND ($2 IS NULL OR \
             client_id = $2) \
             ORDER BY created_at, id"
        ))
        .bind(user_id)
        .bind(client_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Takes the card for a charge in one transaction: checks it is still active (under a lock
    /// that a revocation must wait for), moves the payment to `processing`, records the use.
    /// `None` when the card is no longer active: nothing was written.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn start_saved_card_charge(
        &self,
        payment_id: Uuid,
        card_id: Uuid,
        actor: &str,
    ) -> Result<Option<SavedCardRecord>, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        let Some((_, card)) =
            start_saved_card_charge_in(&mut tx, payment_id, card_id, actor).await?
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        tx.commit().await?;
        Ok(Some(card))
    }

    /// A saved-card charge's first commit: its idempotency key claimed with a lease, the payment
    /// created and started as [`Store::start_saved_card_charge`] starts it, in one transaction.
    /// `None`, with nothing written, when the key is known already or the card is not active:
    /// the step-by-step path then answers the retry or the refusal. A request that dies after
    /// this commit leaves a `processing` payment under its key, which the retry resumes.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn begin_saved_card_charge(
        &self,
        p: &NewPaymentRecord,
        card_id: Uuid,
        actor: &str,
        key: &KeyLease<'_>,
    ) -> Result<Option<(PaymentRecord, SavedCardRecord)>, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        if !insert_key_in(&mut tx, &key.claim_for(p.id)).await? {
            tx.rollback().await?;
            return Ok(None);
        }
        create_payment_in(&mut tx, p, actor, &|_| None).await?;
        let started = start_saved_card_charge_in(&mut tx, p.id, card_id, actor).await?;
        if started.is_some() {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(started)
    }

    /// Ends active cards of a user (all of them, or one), deleting their ciphertexts, with
    /// events and outbox rows, in one transaction. Returns the ids ended.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn end_cards(
        &self,
        client_id: Uuid,
        user_id: &str,
        only: Option<Uuid>,
        ending: CardEnding,
        actor: &str,
    ) -> Result<Vec<Uuid>, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        // The binding payments' rows first, in the order `insert_saved_card` takes them.
        let binding: Vec<(Uuid,)> = query_as(concat!(
            "SELECT id FROM payments WHERE id IN (SELECT binding_payment_id FROM saved_cards \
             WHERE user_id = $1 AND status = 'active' AND ($2 IS NULL OR id = $2) \
             AND client_id = $3) ORDER BY id",
            " FOR UPDATE"
        ))
        .bind(user_id)
        .bind(only)
        .bind(client_id)
        .fetch_all(&mut tx)
        .await?;
        // Then the cards: a charge holding one finishes before we go on, so the time recorded
        // below is after every use that won the race.
        query(concat!(
            "SELECT id FROM saved_cards WHERE user_id = $1 AND status = 'active' AND ($2 IS NULL \
             OR id = $2) \
             AND client_id = $3",
            " FOR UPDATE"
        ))
        .bind(user_id)
        .bind(only)
        .bind(client_id)
        .execute(&mut tx)
        .await?;
        // No handle survives (for Robokassa the binding payment's invoice is the token): the
        // binding payment stops asking for a card and the tombstone stops naming it.
        for (payment_id,) in &binding {
            query("UPDATE payments SET save_card = $2 WHERE id = $1")
                .bind(payment_id)
                .bind(false)
                .execute(&mut tx)
                .await?;
        }
        let now = OffsetDateTime::now_utc();
        let ended: Vec<SavedCardRecord> = query_as(concat!(
            "UPDATE saved_cards SET status = $3, key_id = NULL, token_ciphertext = NULL, \
             binding_payment_id = NULL, ended_at = $4 \
             WHERE user_id = $1 AND status = 'active' AND ($2 IS NULL OR id = $2) AND client_id = \
             $5 RETURNING ",
            card_columns!()
        ))
        .bind(user_id)
        .bind(only)
        .bind(ending.status())
        .bind(now)
        .bind(client_id)
        .fetch_all(&mut tx)
        .await?;
        let detail = match ending {
            CardEnding::Deleted => "deleted by its owner; the token was erased",
            CardEnding::Revoked => "revoked by a password reset; the token was erased",
        };
        for card in &ended {
            query(
                "UPDATE card_events SET payment_id = NULL WHERE card_id = $1 AND event = 'bound'",
            )
            .bind(card.id)
            .execute(&mut tx)
            .await?;
            card_event_in(
                &mut tx,
                CardEvent {
                    card_id: card.id,
                    user_id: &card.user_id,
                    event: ending.status(),
                    actor,
                    payment_id: None,
                    detail,
                    at: now,
                },
            )
            .await?;
            card_outbox_in(&mut tx, card, ending.event_type(), now).await?;
        }
        tx.commit().await?;
        Ok(ended.into_iter().map(|c| c.id).collect())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn card_events(&self, card_id: Uuid) -> Result<Vec<CardEventRecord>, StoreError> {
        Ok(query_as(
            "SELECT id, card_id, user_id, event, actor, payment_id, detail, created_at \
             FROM card_events WHERE card_id = $1 ORDER BY id",
        )
        .bind(card_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Active cards sealed under another key than `active_key`.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn cards_to_reseal(
        &self,
        active_key: &str,
    ) -> Result<Vec<SavedCardRecord>, StoreError> {
        Ok(query_as(concat!(
            "SELECT ",
            card_columns!(),
            " FROM saved_cards WHERE status = 'active' AND key_id <> $1 ORDER BY id"
        ))
        .bind(active_key)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Replaces a card's ciphertext if it is still active and still under `old_key`.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn reseal_card(
        &self,
        card_id: Uuid,
        old_key: &str,
        new_key: &str,
        ciphertext: &[u8],
    ) -> Result<bool, StoreError> {
        let done = query(
            "UPDATE saved_cards SET key_id = $3, token_ciphertext = $4 \
             WHERE id = $1 AND key_id = $2 AND status = 'active'",
        )
        .bind(card_id)
        .bind(old_key)
        .bind(new_key)
        .bind(ciphertext)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Takes an active card under a lock and moves its payment to `processing`, marking the card
/// used; answers both, or `None` when the card is no longer active or the payment cannot start
/// (the caller then rolls back what this wrote).
async fn start_saved_card_charge_in(
    tx: &mut Tx,
    payment_id: Uuid,
    card_id: Uuid,
    actor: &str,
) -> Result<Option<(PaymentRecord, SavedCardRecord)>, StoreError> {
    use crate::domain::payment::{PaymentEvent, PaymentStatus};
    let change = StatusChange {
        event: PaymentEvent::Submitted,
        next_action: None,
        failure: None,
        actor,
        reason: &crate::domain::audit::AuditReason::SavedCardChargeSent,
        acquirer_operation_id: None,
    };
    // A charge starts from `created`; a payment anywhere else is read and refused as usual.
    let started = super::payments::transition_believed_in(
        tx,
        payment_id,
        Some(PaymentStatus::Created),
        &change,
    )
    .await?;
    let payment = match started {
        TransitionResult::Applied(payment) => payment,
        TransitionResult::AlreadyThere(_) | TransitionResult::Refused(..) => {
            return Ok(None);
        }
    };
    let now = OffsetDateTime::now_utc();
    // The card is taken, and its row locked, after the payment's writes, so that the charges
    // of one card (a customer's bills paid at once) queue behind each other for two statements,
    // not for the whole transaction. The lock makes a revocation wait for this commit, and this
    // statement wait for a revocation under way and then find the card ended: after a reset
    // commits, no charge can take the card. The card is not read before: an ended one answers
    // no row here, and everything written so far is rolled back.
    let card: Option<SavedCardRecord> = query_as(concat!(
        "UPDATE saved_cards SET last_used_at = $2 WHERE id = $1 AND status = 'active' \
         RETURNING ",
        card_columns!()
    ))
    .bind(card_id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(card) = card else {
        return Ok(None);
    };
    card_event_in(
        tx,
        CardEvent {
            card_id: card.id,
            user_id: &card.user_id,
            event: "used",
            actor,
            payment_id: Some(payment_id),
            detail: "recurring charge started",
            at: now,
        },
    )
    .await?;
    Ok(Some((payment, card)))
}
