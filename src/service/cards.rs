//! Saved cards: keeping a token after a binding payment, listing, deleting, revoking on password
//! reset, the audit trail, and key rotation.

use oplata_providers::{Acquirer, OperationDetails};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ServiceError, Services};
use crate::domain::cards::{card_display, may_keep_token};
use crate::store::{
    CardEnding, CardEventRecord, NewSavedCard, PaymentRecord, SavedCardRecord, Store, StoreError,
};
use crate::vault::{Sealed, Vault, card_binding};

/// After a binding payment succeeded: keeps the acquirer's token, sealed, if 3-D Secure passed
/// (rule 7) and the payment asked for it. Returns the card, or why not.
#[tracing::instrument(skip_all, fields(payment_id = %payment.id))]
pub async fn keep_token(
    services: &Services,
    adapter: &dyn Acquirer,
    payment: &PaymentRecord,
    details: &OperationDetails,
    actor: &str,
) -> Result<Option<SavedCardRecord>, ServiceError> {
    let Some(user_id) = payment.user_id.as_deref().filter(|_| payment.save_card) else {
        return Ok(None);
    };
    if !may_keep_token(adapter.capabilities().three_ds, details.three_ds_passed) {
        tracing::warn!("no 3-D Secure on the binding payment: the token is not kept");
        return Ok(None);
    }
    let (Some(token), Some(display)) = (
        details.token.as_ref(),
        card_display(
            details.masked_card.as_deref().unwrap_or_default(),
            details.card_expiry.as_deref(),
        ),
    ) else {
        tracing::warn!("the acquirer returned no token or no readable card: nothing to keep");
        return Ok(None);
    };
    let supplier = &services.supplier_of(&payment.supplier_id)?.supplier;
    let card_id = Uuid::now_v7();
    let sealed = services.vault.seal(token, &card_binding(user_id, card_id));
    let card = NewSavedCard {
        id: card_id,
        client_id: payment.client_id,
        user_id: user_id.to_owned(),
        payment_type: supplier.payment_type,
        acquirer: payment.acquirer,
        binding_payment_id: payment.id,
        key_id: sealed.key_id,
        token_ciphertext: sealed.bytes,
        brand: display.brand.to_owned(),
        last4: display.last4,
        exp_month: display.expiry.map(|(month, _)| i32::from(month)),
        exp_year: display.expiry.map(|(_, year)| i32::from(year)),
        created_at: OffsetDateTime::now_utc(),
    };
    let Some(stored) = services.store.insert_saved_card(&card, actor).await? else {
        tracing::info!("the card bound by this payment was deleted or revoked: not saved again");
        return Ok(None);
    };
    tracing::info!(card_id = %stored.id, "card saved");
    Ok(Some(stored))
}

/// The token of an active card, opened for one charge.
pub fn open_token(
    vault: &Vault,
    card: &SavedCardRecord,
) -> Result<secrecy::SecretString, ServiceError> {
    let (Some(key_id), Some(bytes)) = (&card.key_id, &card.token_ciphertext) else {
        return Err(ServiceError::NotFound);
    };
    let sealed = Sealed {
        key_id: key_id.clone(),
        bytes: bytes.clone(),
    };
    vault
        .open(&sealed, &card_binding(&card.user_id, card.id))
        .map_err(|e| ServiceError::internal(format!("card {}: {e}", card.id)))
}

/// A user's active cards; a user is one of the calling client's users, as with payments.
pub async fn list(
    services: &Services,
    client_id: Uuid,
    user_id: &str,
) -> Result<Vec<SavedCardRecord>, ServiceError> {
    Ok(services
        .store
        .list_saved_cards(Some(client_id), user_id)
        .await?)
}

/// Whether a card belongs to this client's user: another client's card is "not found".
pub fn owned_by(card: &SavedCardRecord, client_id: Option<Uuid>, user_id: &str) -> bool {
    card.user_id == user_id && card.client_id.is_some() && card.client_id == client_id
}

/// Rule 5: the owner deletes a card; its token is erased at once.
pub async fn delete(
    services: &Services,
    actor: &str,
    client_id: Uuid,
    user_id: &str,
    card_id: Uuid,
) -> Result<(), ServiceError> {
    let ended = services
        .store
        .end_cards(
            client_id,
            user_id,
            Some(card_id),
            CardEnding::Deleted,
            actor,
        )
        .await?;
    if ended.is_empty() {
        return Err(ServiceError::NotFound);
    }
    tracing::info!(%card_id, "card deleted");
    Ok(())
}

/// Rule 4: a password reset revokes every saved card of the user, in one transaction, before
/// it is acknowledged. None of oplata's acquirers can unbind a token through a public API, so
/// erasing oplata's copy is what stops every future charge.
pub async fn password_reset(
    services: &Services,
    actor: &str,
    client_id: Uuid,
    user_id: &str,
) -> Result<Vec<Uuid>, ServiceError> {
    let revoked = services
        .store
        .end_cards(client_id, user_id, None, CardEnding::Revoked, actor)
        .await?;
    tracing::info!(revoked = revoked.len(), "password reset: cards revoked");
    Ok(revoked)
}

/// The audit trail of one of the user's cards (also after it was deleted or revoked).
pub async fn events(
    services: &Services,
    client_id: Uuid,
    user_id: &str,
    card_id: Uuid,
) -> Result<Vec<CardEventRecord>, ServiceError> {
    match services.store.get_saved_card(card_id).await? {
        Some(card) if owned_by(&card, Some(client_id), user_id) => {
            Ok(services.store.card_events(card_id).await?)
        }
        _ => Err(ServiceError::NotFound),
    }
}

/// What `oplata keys rotate` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    pub resealed: usize,
    /// Cards that changed meanwhile (deleted, revoked, or re-sealed by another run).
    pub skipped: usize,
}

/// Re-seals every active token under the active key. Old keys must stay configured until this
/// has finished; it can be run again safely.
pub async fn rotate_keys(store: &Store, vault: &Vault) -> Result<Rotation, RotationError> {
    let mut rotation = Rotation::default();
    for card in store.cards_to_reseal(vault.active_key_id()).await? {
        let (Some(old_key), Some(bytes)) = (&card.key_id, &card.token_ciphertext) else {
            rotation.skipped += 1;
            continue;
        };
        let resealed = vault
            .reseal(old_key, bytes, &card_binding(&card.user_id, card.id))
            .map_err(|e| RotationError::Vault(card.id, e))?;
        if store
            .reseal_card(card.id, old_key, &resealed.key_id, &resealed.bytes)
            .await?
        {
            rotation.resealed += 1;
        } else {
            rotation.skipped += 1;
        }
    }
    Ok(rotation)
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("card {0}: {1}")]
    Vault(Uuid, crate::vault::VaultError),
    #[error("operator {0}'s second factor: {1}")]
    Operator(Uuid, crate::vault::VaultError),
}
