//! `/v1/users/{user_id}/…`: saved cards, their audit trail, and password resets.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Authenticated;
use super::error::{ApiError, ErrorBody};
use crate::service::api_keys::Scope;
use crate::service::{Services, cards};
use crate::store::{CardEventRecord, SavedCardRecord};

/// A saved card as it may be shown: never the token.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardView {
    pub id: Uuid,
    pub brand: String,
    pub last4: String,
    /// Absent where the acquirer does not report it.
    pub exp_month: Option<i32>,
    pub exp_year: Option<i32>,
    /// The payment type the card may pay.
    pub payment_type: String,
    pub acquirer: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<time::OffsetDateTime>,
}

impl From<SavedCardRecord> for CardView {
    fn from(c: SavedCardRecord) -> Self {
        CardView {
            id: c.id,
            brand: c.brand,
            last4: c.last4,
            exp_month: c.exp_month,
            exp_year: c.exp_year,
            payment_type: c.payment_type.as_str().to_owned(),
            acquirer: c.acquirer.as_str().to_owned(),
            created_at: c.created_at,
            last_used_at: c.last_used_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardList {
    pub cards: Vec<CardView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardEventView {
    pub id: Uuid,
    /// `bound`, `used`, `deleted` or `revoked`.
    pub event: String,
    /// Who asked: `client:<id>`, `acquirer:<name>`…
    pub actor: String,
    pub payment_id: Option<Uuid>,
    pub detail: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: time::OffsetDateTime,
}

impl From<CardEventRecord> for CardEventView {
    fn from(e: CardEventRecord) -> Self {
        CardEventView {
            id: e.id,
            event: e.event,
            actor: e.actor,
            payment_id: e.payment_id,
            detail: e.detail,
            created_at: e.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardEvents {
    pub events: Vec<CardEventView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordResetAnswer {
    /// How many saved cards were revoked.
    pub revoked_cards: usize,
}

fn user(user_id: &str) -> Result<&str, ApiError> {
    // The same shape as a payment's user_id; anything else cannot own a card.
    if !user_id.is_empty() && user_id.len() <= 128 && user_id.bytes().all(|b| b.is_ascii_graphic())
    {
        Ok(user_id)
    } else {
        Err(ApiError::not_found())
    }
}

fn card_not_found() -> ApiError {
    crate::domain::cards::CardRuleError::CardNotFound.into()
}

/// The user's saved cards.
#[utoipa::path(get, path = "/v1/users/{user_id}/cards", tag = "cards",
    params(("user_id" = String, Path)),
    responses((status = 200, body = CardList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
    Path(user_id): Path<String>,
) -> Result<Json<CardList>, ApiError> {
    let client = auth.require(Scope::Portal)?;
    let cards = cards::list(&services, client.id, user(&user_id)?).await?;
    Ok(Json(CardList {
        cards: cards.into_iter().map(CardView::from).collect(),
    }))
}

/// Delete a saved card: its token is erased at once.
#[utoipa::path(delete, path = "/v1/users/{user_id}/cards/{card_id}", tag = "cards",
    params(("user_id" = String, Path), ("card_id" = Uuid, Path)),
    responses((status = 204), (status = 404, description = "card_not_found", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
    Path((user_id, card_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let client = auth.require(Scope::Portal)?;
    let card_id = Uuid::parse_str(&card_id).map_err(|_| card_not_found())?;
    let actor = format!("client:{}", client.id);
    match cards::delete(&services, &actor, client.id, user(&user_id)?, card_id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(crate::service::ServiceError::NotFound) => Err(card_not_found()),
        Err(other) => Err(other.into()),
    }
}

/// The user reset their password: every saved card is revoked before this answers.
#[utoipa::path(post, path = "/v1/users/{user_id}/password-reset", tag = "cards",
    params(("user_id" = String, Path)),
    responses((status = 200, body = PasswordResetAnswer)),
    security(("api_key" = [])))]
pub async fn password_reset(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
    Path(user_id): Path<String>,
) -> Result<Json<PasswordResetAnswer>, ApiError> {
    let client = auth.require(Scope::Portal)?;
    let actor = format!("client:{}", client.id);
    let revoked = cards::password_reset(&services, &actor, client.id, user(&user_id)?).await?;
    Ok(Json(PasswordResetAnswer {
        revoked_cards: revoked.len(),
    }))
}

/// The audit trail of a card: binding, each use, deletion or revocation.
#[utoipa::path(get, path = "/v1/users/{user_id}/cards/{card_id}/events", tag = "cards",
    params(("user_id" = String, Path), ("card_id" = Uuid, Path)),
    responses((status = 200, body = CardEvents), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn events(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
    Path((user_id, card_id)): Path<(String, String)>,
) -> Result<Json<CardEvents>, ApiError> {
    let client = auth.require(Scope::Portal)?;
    let card_id = Uuid::parse_str(&card_id).map_err(|_| card_not_found())?;
    match cards::events(&services, client.id, user(&user_id)?, card_id).await {
        Ok(events) => Ok(Json(CardEvents {
            events: events.into_iter().map(CardEventView::from).collect(),
        })),
        Err(crate::service::ServiceError::NotFound) => Err(card_not_found()),
        Err(other) => Err(other.into()),
    }
}
