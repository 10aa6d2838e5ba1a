//! Creating payments, reading them back, and asking the acquirer when the outcome is not known.

use oplata_providers::{
    Acquirer, AcquirerKind, Amount, ChargeOutcome, NextAction, Payer, PaymentRequest, RawCallback,
    RecurringCharge, StartOutcome, StatusOutcome,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::api_keys::ApiClient;
use super::{ServiceError, Services, cards, payer};
use crate::domain::cards::{
    CardFacts, CardRuleError, CardStatus, check_card_saving, check_saved_card_payment,
};
use crate::domain::new_payment::{PaymentDraft, PaymentRuleError, validate};
use crate::domain::payer::PayerError;
use crate::domain::payment::{PaymentEvent, PaymentMethod, PaymentStatus};
use crate::domain::public_limits::{self, PublicLimits};
use crate::store::{
    ClaimedKey, FirstMove, KeyAnswer, KeyLease, NewPaymentRecord, PaymentRecord, PublicAttempt,
    SavedCardRecord, StatusChange, StoredResponse, TransitionResult,
};

/// How long after a saved-card charge was sent a resumed request may send it again when the
/// acquirer has no such operation. Well inside [`crate::domain::payment::NEVER_HAPPENED_AFTER`],
/// after which the reconciliation worker settles such a charge as never made.
const CHARGE_RESEND_WINDOW: time::Duration = time::Duration::minutes(5);

/// How the customer pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Card entry on the acquirer's page; `save` asks to keep the card.
    NewCard {
        save: bool,
    },
    SavedCard {
        card_id: Uuid,
    },
}

/// Who asks for a payment.
#[derive(Debug, Clone)]
pub enum Origin<'a> {
    /// The portal's backend with its API key.
    Api(&'a ApiClient),
    /// Anyone, through the public page or API; the abuse limits apply.
    Public {
        client_ip: String,
        limits: PublicLimits,
    },
    /// The SMS gateway, for one inbound SMS.
    Sms {
        client: &'a ApiClient,
        message_id: &'a str,
    },
}

impl Origin<'_> {
    fn client_id(&self) -> Option<Uuid> {
        match self {
            Origin::Api(client) | Origin::Sms { client, .. } => Some(client.id),
            Origin::Public { .. } => None,
        }
    }

    fn actor(&self) -> String {
        match self {
            Origin::Api(client) => format!("client:{}", client.id),
            Origin::Public { .. } => "public".to_owned(),
            Origin::Sms { message_id, .. } => format!("sms:{message_id}"),
        }
    }
}

/// Validates, records the payment, then asks the acquirer: where the customer must go (new
/// card), or to charge the saved card. No database transaction is open while the acquirer is
/// asked.
pub async fn create(
    services: &Services,
    client: &ApiClient,
    draft: &PaymentDraft<'_>,
    method: Method,
    key: ClaimedKey,
) -> Result<PaymentRecord, ServiceError> {
    create_or_resume(services, &Origin::Api(client), draft, method, key).await
}

/// Creates the payment an idempotency key stands for, under the id the key's claim chose; when
/// the key's first holder died, resumes the payment it left instead of making a second one.
pub async fn create_or_resume(
    services: &Services,
    origin: &Origin<'_>,
    draft: &PaymentDraft<'_>,
    method: Method,
    key: ClaimedKey,
) -> Result<PaymentRecord, ServiceError> {
    if key.resumed
        && let Some(existing) = services.store.get_payment(key.resource_id).await?
    {
        return resume(services, existing, &origin.actor()).await;
    }
    create_as(services, origin, draft, method, key.resource_id).await
}

/// Takes up a payment whose request died, from its last recovery point: a payment still
/// `created` never reached the acquirer and is started now; a saved-card charge `processing`
/// may have reached it, so the acquirer is asked first and the charge is sent again (with the
/// same order id, which the acquirer de-duplicates) only when it has no such operation and the
/// charge is recent enough that nobody has declared it "never happened". Anything else is
/// answered as it stands.
#[tracing::instrument(skip_all, fields(payment_id = %payment.id))]
pub async fn resume(
    services: &Services,
    payment: PaymentRecord,
    actor: &str,
) -> Result<PaymentRecord, ServiceError> {
    let status = payment.status;
    tracing::info!(
        status = status.as_str(),
        "resuming a payment whose request died"
    );
    let entry = services.supplier_of(&payment.supplier_id)?;
    let adapter = entry.acquirer.as_ref();
    match (status, payment.saved_card_id) {
        (PaymentStatus::Created, Some(card_id)) => {
            charge_saved_card(services, adapter, payment, card_id, actor).await
        }
        (PaymentStatus::Created, None) => {
            if services.store.payer_data(payment.id).await?.is_some() {
                return send_to_continue_page(services, &payment, actor).await;
            }
            start_hosted_payment(services, adapter, payment, actor).await
        }
        (PaymentStatus::Processing, Some(card_id)) if adapter.capabilities().status_query => {
            let outcome = adapter
                .payment_status(&payment.acquirer_order_id)
                .await
                .unwrap_or_else(|error| StatusOutcome::Unknown {
                    reason: error.to_string(),
                });
            let submitted = payment.submitted_at.unwrap_or(payment.updated_at);
            if outcome == StatusOutcome::NotFound
                && OffsetDateTime::now_utc() < submitted + CHARGE_RESEND_WINDOW
            {
                resend_saved_card_charge(services, adapter, payment, card_id, actor).await
            } else {
                record_status_answer(services, payment, &outcome, actor).await
            }
        }
        _ => Ok(payment),
    }
}

/// A payment checked and ready to be written, and how it goes on once it is.
struct Prepared<'s> {
    new: NewPaymentRecord,
    entry: &'s super::suppliers::SupplierEntry,
    card: Option<Uuid>,
    continue_token: Option<secrecy::SecretString>,
}

impl Prepared<'_> {
    /// The payment's first move decided in its creating transaction: a hosted page the
    /// adapter builds itself. Anything that calls the acquirer (a saved-card charge) keeps its
    /// recovery point between creation and the call.
    fn first_move(&self, services: &Services, record: &PaymentRecord) -> Option<FirstMove> {
        if self.card.is_some() || self.continue_token.is_some() {
            return None;
        }
        let adapter = self.entry.acquirer.as_ref();
        let parts = StartParts::of(services, adapter, record).ok()?;
        let outcome = adapter.start_locally(&parts.request(record, None))?;
        first_move_of(&outcome).ok()
    }
}

/// Checks a payment request by the rules and makes the row it will be.
async fn prepare<'s>(
    services: &'s Services,
    origin: &Origin<'_>,
    draft: &PaymentDraft<'_>,
    method: Method,
    payment_id: Uuid,
) -> Result<Prepared<'s>, ServiceError> {
    let valid = validate(draft, |id| services.suppliers.supplier(id))?;
    let entry = services.supplier_of(&valid.supplier.id)?;
    let card = match method {
        Method::NewCard { save: false } => None,
        Method::NewCard { save: true } => {
            check_card_saving(
                valid.user_id.as_deref(),
                entry.acquirer.capabilities().saved_cards,
            )?;
            None
        }
        Method::SavedCard { card_id } => {
            let user_id = valid
                .user_id
                .as_deref()
                .ok_or(CardRuleError::SavedCardNeedsUser)?;
            let found = services
                .store
                .saved_card_for_payment(card_id, user_id, &valid.supplier.id)
                .await?;
            // A card is its client's user's, as payments are: another portal's card is not
            // found. The SMS flow picks the card itself from the linking portal's cards.
            let found = found.filter(|(c, _)| match origin {
                Origin::Api(client) => super::cards::owned_by(c, Some(client.id), user_id),
                Origin::Sms { .. } => true,
                Origin::Public { .. } => false,
            });
            let facts = found.as_ref().map(|(c, _)| CardFacts {
                owner: &c.user_id,
                status: c.status,
                payment_type: c.payment_type,
                acquirer: c.acquirer,
            });
            // Without a card the rule refuses before it asks about earlier payments.
            let earlier = found.as_ref().is_some_and(|(_, earlier)| *earlier);
            check_saved_card_payment(facts, user_id, &valid.supplier, earlier)?;
            Some(card_id)
        }
    };
    // Personal data goes with a card entry on the acquirer's page only: a saved-card charge has
    // no form to carry it.
    if valid.payer.is_some() && card.is_some() {
        return Err(PaymentRuleError::Payer(PayerError::NeedsCardEntry).into());
    }
    let created_at = OffsetDateTime::now_utc();
    let (payer, continue_token) = match &valid.payer {
        Some(identity) => {
            let token = services.continue_token(payment_id);
            let sealed = payer::seal(&services.vault, payment_id, identity, &token)?;
            (Some(sealed), Some(token))
        }
        None => (None, None),
    };
    let new = NewPaymentRecord {
        id: payment_id,
        client_id: origin.client_id(),
        user_id: valid.user_id.clone(),
        supplier_id: valid.supplier.id.clone(),
        account_number: valid.account_number.clone(),
        amount_minor: valid.amount.minor(),
        currency: valid.currency.as_str().to_owned(),
        description: valid.description.clone(),
        email: valid.email.clone(),
        phone: valid.phone.clone(),
        return_url: valid.return_url.as_ref().map(|u| u.to_string()),
        acquirer: entry.acquirer.kind(),
        payment_method: if card.is_some() {
            PaymentMethod::SavedCard
        } else {
            PaymentMethod::NewCard
        },
        saved_card_id: card,
        save_card: method == Method::NewCard { save: true },
        created_at,
        payer,
    };
    Ok(Prepared {
        new,
        entry,
        card,
        continue_token,
    })
}

/// Creates a portal's hosted payment with its idempotency key's answer in one transaction
/// (see [`crate::store::Store::create_payment_answered`]). `None`, with nothing written, when the
/// request needs the step-by-step path: a saved card, passport data, a key already known, an
/// adapter that must be asked over the network.
#[tracing::instrument(skip_all, fields(supplier_id = draft.supplier_id))]
pub async fn create_answered(
    services: &Services,
    client: &ApiClient,
    draft: &PaymentDraft<'_>,
    method: Method,
    key: &KeyAnswer<'_>,
) -> Result<Option<PaymentRecord>, ServiceError> {
    if !matches!(method, Method::NewCard { .. }) || draft.payer.is_some() {
        return Ok(None);
    }
    let origin = Origin::Api(client);
    let prepared = prepare(services, &origin, draft, method, Uuid::now_v7()).await?;
    let first_move = |record: &PaymentRecord| prepared.first_move(services, record);
    // A payment the transaction could not send on (its page needs a call) is not answered
    // there: the step-by-step path creates it and asks the acquirer.
    let answer = |record: &PaymentRecord| {
        if record.status == PaymentStatus::Created {
            return None;
        }
        (key.answer)(record)
    };
    let key = KeyAnswer {
        answer: &answer,
        ..*key
    };
    let created = services
        .store
        .create_payment_answered(&prepared.new, &origin.actor(), &first_move, &key)
        .await?;
    if let Some(created) = &created {
        count_created(created, "one");
    }
    Ok(created)
}

/// `commits`: "one" where the request was one transaction, "steps" where it took several.
fn count_created(created: &PaymentRecord, commits: &'static str) {
    tracing::info!(payment_id = %created.id, order_id = %created.acquirer_order_id, commits, "payment created");
    metrics::counter!("oplata_payments_created_total", "acquirer" => created.acquirer.as_str(), "method" => created.payment_method.as_str(), "commits" => commits)
        .increment(1);
}

/// [`create`] for any origin, under an id the caller chose (the SMS flow records it first).
#[tracing::instrument(skip_all, fields(actor = %origin.actor(), supplier_id = draft.supplier_id))]
pub async fn create_as(
    services: &Services,
    origin: &Origin<'_>,
    draft: &PaymentDraft<'_>,
    method: Method,
    payment_id: Uuid,
) -> Result<PaymentRecord, ServiceError> {
    let prepared = prepare(services, origin, draft, method, payment_id).await?;
    let Prepared {
        new,
        entry,
        card,
        continue_token,
    } = &prepared;
    let actor = origin.actor();
    let first_move = |record: &PaymentRecord| prepared.first_move(services, record);
    let created = match origin {
        Origin::Public { client_ip, limits } => {
            let attempt = PublicAttempt {
                client_ip: client_ip.clone(),
                limits: *limits,
            };
            let limits = *limits;
            services
                .store
                .create_public_payment(
                    new,
                    &actor,
                    &attempt,
                    |recent| {
                        public_limits::check(
                            &limits,
                            recent.account_attempts,
                            recent.ip_declines,
                            recent.ip_creations,
                            new.created_at,
                        )
                    },
                    &first_move,
                )
                .await??
        }
        Origin::Api(_) | Origin::Sms { .. } => {
            services
                .store
                .create_payment(new, &actor, &first_move)
                .await?
        }
    };
    count_created(&created, "steps");
    match (*card, continue_token) {
        (None, Some(_)) => send_to_continue_page(services, &created, &actor).await,
        // Started in the creating transaction.
        (None, None) if created.status != PaymentStatus::Created => Ok(created),
        (None, None) => {
            start_hosted_payment(services, entry.acquirer.as_ref(), created, &actor).await
        }
        (Some(card_id), _) => {
            charge_saved_card(services, entry.acquirer.as_ref(), created, card_id, &actor).await
        }
    }
}

/// The acquirer's form would carry the passport data; it is built only when the browser comes
/// for it, so no stored answer or response holds the data.
async fn send_to_continue_page(
    services: &Services,
    payment: &PaymentRecord,
    actor: &str,
) -> Result<PaymentRecord, ServiceError> {
    let next_action = serde_json::to_string(&NextAction::Redirect {
        url: services.continue_url(payment.id),
    })
    .map_err(|e| ServiceError::internal_from("the continue page action", e))?;
    let change = StatusChange {
        event: PaymentEvent::ActionRequired,
        next_action: Some(&next_action),
        failure: None,
        actor,
        reason: &crate::domain::audit::AuditReason::ContinuedThroughOplata,
        acquirer_operation_id: None,
    };
    settle(services, payment, &change).await
}

/// Where the customer must go now, while the payment waits for them.
pub fn next_action(payment: &PaymentRecord) -> Option<NextAction> {
    if Some(payment.status) != Some(PaymentStatus::RequiresAction) {
        return None;
    }
    serde_json::from_str(payment.next_action.as_deref()?).ok()
}

/// The acquirer's page again for the browser that created the payment (the holder of its
/// continue token), only while the customer still has to act. A payment carrying personal data
/// has its form built on this visit from the sealed data; another gets its stored next step.
pub async fn continue_to_acquirer(
    services: &Services,
    payment_id: Uuid,
    token: &str,
) -> Result<NextAction, ServiceError> {
    let payment = services
        .store
        .get_payment(payment_id)
        .await?
        .ok_or(ServiceError::NotFound)?;
    if Some(payment.status) != Some(PaymentStatus::RequiresAction) {
        return Err(ServiceError::NotFound);
    }
    let Some(row) = services.store.payer_data(payment_id).await? else {
        // A payment without personal data: its stored next step is the acquirer's page itself,
        // handed to the holder of the token (the browser that created it) and nobody else.
        use secrecy::ExposeSecret;
        let expected = services.continue_token(payment_id);
        let holder = bool::from(subtle::ConstantTimeEq::ct_eq(
            token.as_bytes(),
            expected.expose_secret().as_bytes(),
        ));
        return next_action(&payment)
            .filter(|action| {
                holder
                    && !matches!(action, NextAction::Redirect { url } if *url == services.continue_url(payment_id))
            })
            .ok_or(ServiceError::NotFound);
    };
    if !payer::token_matches(token, &row.continue_token_hash) {
        return Err(ServiceError::NotFound);
    }
    let identity = payer::open(&services.vault, &row)?;
    let entry = services.supplier_of(&payment.supplier_id)?;
    let passport = identity.passport();
    let payer = Payer {
        passport: &passport,
        full_name: &identity.full_name,
    };
    match start_on_acquirer(services, entry.acquirer.as_ref(), &payment, Some(payer)).await? {
        StartOutcome::RequiresAction(action) => Ok(action),
        StartOutcome::Declined(decline) => Err(ServiceError::internal(format!(
            "the acquirer refused to start payment {payment_id}: {}",
            decline.message
        ))),
        StartOutcome::NotSent { reason } => Err(ServiceError::internal(format!(
            "the acquirer could not be reached for payment {payment_id}: {reason}"
        ))),
    }
}

/// What a payment request is made of besides the stored payment.
struct StartParts {
    amount: Amount,
    payment_ref: String,
    success_url: String,
    fail_url: String,
    receipt: Option<oplata_providers::Receipt>,
}

impl StartParts {
    fn of(
        services: &Services,
        adapter: &dyn Acquirer,
        payment: &PaymentRecord,
    ) -> Result<Self, ServiceError> {
        let amount = Amount::from_minor(payment.amount_minor)
            .map_err(|e| ServiceError::internal_from("the payment amount", e))?;
        let (success_url, fail_url) =
            services.browser_returns(adapter.kind(), &payment.acquirer_order_id);
        Ok(StartParts {
            amount,
            payment_ref: payment.id.to_string(),
            success_url,
            fail_url,
            receipt: super::receipts::for_payment(services, payment, amount),
        })
    }

    fn request<'a>(
        &'a self,
        payment: &'a PaymentRecord,
        payer: Option<Payer<'a>>,
    ) -> PaymentRequest<'a> {
        PaymentRequest {
            payment_ref: &self.payment_ref,
            order_id: &payment.acquirer_order_id,
            amount: self.amount,
            description: &payment.description,
            email: payment.email.as_deref(),
            success_url: &self.success_url,
            fail_url: &self.fail_url,
            save_card: payment.save_card,
            customer_ref: payment.user_id.as_deref(),
            payer,
            receipt: self.receipt.as_ref(),
        }
    }
}

/// Asks the acquirer where the customer enters the card for a stored payment.
async fn start_on_acquirer(
    services: &Services,
    adapter: &dyn Acquirer,
    payment: &PaymentRecord,
    payer: Option<Payer<'_>>,
) -> Result<StartOutcome, ServiceError> {
    let parts = StartParts::of(services, adapter, payment)?;
    Ok(adapter.start_payment(&parts.request(payment, payer)).await)
}

/// The move a start's outcome makes: to the acquirer's page, or failed.
fn first_move_of(outcome: &StartOutcome) -> Result<FirstMove, ServiceError> {
    Ok(match outcome {
        StartOutcome::RequiresAction(next_action) => FirstMove {
            event: PaymentEvent::ActionRequired,
            next_action: Some(
                serde_json::to_string(next_action)
                    .map_err(|e| ServiceError::internal_from("the next action", e))?,
            ),
            failure: None,
            reason: &crate::domain::audit::AuditReason::SentToAcquirerPage,
        },
        StartOutcome::Declined(decline) => FirstMove {
            event: PaymentEvent::Failed,
            next_action: None,
            failure: Some((decline.code.as_str().to_owned(), decline.message.clone())),
            reason: &crate::domain::audit::AuditReason::AcquirerRefused,
        },
        StartOutcome::NotSent { reason } => FirstMove {
            event: PaymentEvent::Failed,
            next_action: None,
            failure: Some((
                "acquirer_unavailable".to_owned(),
                format!("the acquirer could not be reached: {reason}"),
            )),
            reason: &crate::domain::audit::AuditReason::NotStarted,
        },
    })
}

async fn start_hosted_payment(
    services: &Services,
    adapter: &dyn Acquirer,
    created: PaymentRecord,
    actor: &str,
) -> Result<PaymentRecord, ServiceError> {
    let outcome = start_on_acquirer(services, adapter, &created, None).await?;
    let first = first_move_of(&outcome)?;
    settle(services, &created, &first.change(actor)).await
}

/// Applies `change` to the payment as the caller last read it.
async fn settle(
    services: &Services,
    payment: &PaymentRecord,
    change: &StatusChange<'_>,
) -> Result<PaymentRecord, ServiceError> {
    Ok(settled(
        services
            .store
            .transition_payment_from(payment, change)
            .await?,
    ))
}

/// The payment after a change, whether it applied or had nothing left to change.
fn settled(result: TransitionResult) -> PaymentRecord {
    match result {
        TransitionResult::Applied(p) | TransitionResult::AlreadyThere(p) => p,
        TransitionResult::Refused(p, refused) => {
            tracing::warn!(payment_id = %p.id, %refused, "outcome arrived for a payment already settled");
            p
        }
    }
}

/// How a charge's outcome is recorded: alone, or with the answer of the idempotency key whose
/// request made the charge (one commit for both).
#[derive(Clone, Copy)]
enum Recording<'k> {
    Alone,
    Answering {
        client_id: Uuid,
        key: &'k str,
        answer: &'k (dyn Fn(&PaymentRecord) -> Option<StoredResponse> + Send + Sync),
    },
}

/// What [`charge_saved_card_keyed`] did.
#[derive(Debug)]
pub enum KeyedCharge {
    /// Nothing was written: the key is known already, the request breaks a rule, or the card
    /// is gone; the step-by-step path takes the request and answers it.
    NotTaken,
    /// The charge ran; `answer` is what its key was answered with in the same commit (when
    /// none, the caller still holds the key and must end it).
    Charged {
        payment: Box<PaymentRecord>,
        answer: Option<StoredResponse>,
    },
}

/// A portal's saved-card charge in two commits: the key claimed with a lease, the payment
/// created and moved to `processing` with the card locked (the recovery point before the call);
/// then, after the acquirer's answer, the outcome recorded with the key's answer. An `Err` comes
/// only once the first commit is made: the caller holds the key and ends it.
#[tracing::instrument(skip_all, fields(supplier_id = draft.supplier_id))]
pub async fn charge_saved_card_keyed(
    services: &Services,
    client: &ApiClient,
    draft: &PaymentDraft<'_>,
    method: Method,
    key: &KeyLease<'_>,
    answer: &(dyn Fn(&PaymentRecord) -> Option<StoredResponse> + Send + Sync),
) -> Result<KeyedCharge, ServiceError> {
    if !matches!(method, Method::SavedCard { .. }) || draft.payer.is_some() {
        return Ok(KeyedCharge::NotTaken);
    }
    let origin = Origin::Api(client);
    let Ok(prepared) = prepare(services, &origin, draft, method, Uuid::now_v7()).await else {
        return Ok(KeyedCharge::NotTaken);
    };
    let Some(card_id) = prepared.card else {
        return Ok(KeyedCharge::NotTaken);
    };
    let actor = origin.actor();
    let Ok(Some((created, card))) = services
        .store
        .begin_saved_card_charge(&prepared.new, card_id, &actor, key)
        .await
    else {
        // Nothing was written (a refusal, a known key, or a failure the step-by-step path
        // will meet and answer the same way).
        return Ok(KeyedCharge::NotTaken);
    };
    count_created(&created, "two");
    let recording = Recording::Answering {
        client_id: key.client_id,
        key: key.key,
        answer,
    };
    let adapter = prepared.entry.acquirer.as_ref();
    let (payment, answer) =
        send_charge(services, adapter, created, &card, &actor, recording).await?;
    Ok(KeyedCharge::Charged {
        payment: Box::new(payment),
        answer,
    })
}

/// Charges a saved card: takes the card under a lock (a password reset either waits for this or
/// wins, and then the card is gone), opens the token, and calls the acquirer with the order id
/// as the attempt id, so a retry cannot debit twice.
async fn charge_saved_card(
    services: &Services,
    adapter: &dyn Acquirer,
    created: PaymentRecord,
    card_id: Uuid,
    actor: &str,
) -> Result<PaymentRecord, ServiceError> {
    let Some(card) = services
        .store
        .start_saved_card_charge(created.id, card_id, actor)
        .await?
    else {
        // Revoked or deleted between the checks and now: the charge never starts.
        let change = StatusChange {
            event: PaymentEvent::Canceled,
            next_action: None,
            failure: Some((
                "card_not_found",
                "the card was deleted or revoked before the charge started",
            )),
            actor,
            reason: &crate::domain::audit::AuditReason::SavedCardInactive,
            acquirer_operation_id: None,
        };
        settle(services, &created, &change).await?;
        return Err(CardRuleError::CardNotFound.into());
    };
    send_charge(services, adapter, created, &card, actor, Recording::Alone)
        .await
        .map(|(payment, _)| payment)
}

/// Sends a charge already recorded as `processing` again, after its first request died: the
/// same order id, so the acquirer cannot debit twice. A card ended meanwhile is not used: the
/// payment stays with the reconciliation worker.
async fn resend_saved_card_charge(
    services: &Services,
    adapter: &dyn Acquirer,
    payment: PaymentRecord,
    card_id: Uuid,
    actor: &str,
) -> Result<PaymentRecord, ServiceError> {
    match services.store.get_saved_card(card_id).await? {
        Some(card) if card.status == CardStatus::Active => {
            services.store.mark_submitted(payment.id).await?;
            send_charge(services, adapter, payment, &card, actor, Recording::Alone)
                .await
                .map(|(payment, _)| payment)
        }
        _ => Ok(payment),
    }
}

/// Opens the card's token and asks the acquirer to charge it; answers the payment and the key's
/// answer when the outcome was recorded with one.
async fn send_charge(
    services: &Services,
    adapter: &dyn Acquirer,
    created: PaymentRecord,
    card: &SavedCardRecord,
    actor: &str,
    recording: Recording<'_>,
) -> Result<(PaymentRecord, Option<StoredResponse>), ServiceError> {
    let card_id = card.id;
    let token = match cards::open_token(&services.vault, card) {
        Ok(token) => token,
        Err(error) => {
            // A ciphertext that does not open (tampered, moved from another row, key missing)
            // is never sent anywhere: the payment fails and a person is told.
            let change = StatusChange {
                event: PaymentEvent::Failed,
                next_action: None,
                failure: Some((
                    "card_unusable",
                    "the saved card could not be used; nothing was charged",
                )),
                actor,
                reason: &crate::domain::audit::AuditReason::TokenUnopenable,
                acquirer_operation_id: None,
            };
            settle(services, &created, &change).await?;
            services
                .store
                .flag_payment_for_review(
                    created.id,
                    actor,
                    &crate::domain::audit::ReviewReason::TokenUnopenable { card_id },
                )
                .await?;
            return Err(error);
        }
    };
    let amount = Amount::from_minor(created.amount_minor)
        .map_err(|e| ServiceError::internal_from("the payment amount", e))?;
    let term_url = services.three_ds_return_url(created.id);
    let payment_ref = created.id.to_string();
    let receipt = super::receipts::for_payment(services, &created, amount);
    let outcome = adapter
        .charge_saved_card(&RecurringCharge {
            attempt_id: &created.acquirer_order_id,
            payment_ref: &payment_ref,
            order_id: &created.acquirer_order_id,
            amount,
            description: &created.description,
            token: &token,
            three_ds_return_url: &term_url,
            receipt: receipt.as_ref(),
        })
        .await
        .map_err(|e| ServiceError::internal_from("the start of the payment at the acquirer", e))?;
    record_charge_outcome(services, created, &outcome, actor, recording).await
}

async fn record_charge_outcome(
    services: &Services,
    payment: PaymentRecord,
    outcome: &ChargeOutcome,
    actor: &str,
    recording: Recording<'_>,
) -> Result<(PaymentRecord, Option<StoredResponse>), ServiceError> {
    let next_action_json;
    let not_sent;
    let change = match outcome {
        ChargeOutcome::Succeeded { operation_id } => StatusChange {
            event: PaymentEvent::Succeeded,
            next_action: None,
            failure: None,
            actor,
            reason: &crate::domain::audit::AuditReason::SavedCardCharged,
            acquirer_operation_id: Some(operation_id),
        },
        ChargeOutcome::RequiresAction {
            operation_id,
            action,
        } => {
            next_action_json = serde_json::to_string(action)
                .map_err(|e| ServiceError::internal_from("the next action", e))?;
            StatusChange {
                event: PaymentEvent::ActionRequired,
                next_action: Some(&next_action_json),
                failure: None,
                actor,
                reason: &crate::domain::audit::AuditReason::IssuerDemandsThreeDs,
                acquirer_operation_id: Some(operation_id),
            }
        }
        ChargeOutcome::Declined(decline) => StatusChange {
            event: PaymentEvent::Failed,
            next_action: None,
            failure: Some((decline.code.as_str(), &decline.message)),
            actor,
            reason: &crate::domain::audit::AuditReason::ChargeDeclined,
            acquirer_operation_id: None,
        },
        ChargeOutcome::NotSent { reason } => {
            not_sent = format!("the acquirer could not be reached: {reason}");
            StatusChange {
                event: PaymentEvent::Failed,
                next_action: None,
                failure: Some(("acquirer_unavailable", &not_sent)),
                actor,
                reason: &crate::domain::audit::AuditReason::ChargeNotSent,
                acquirer_operation_id: None,
            }
        }
        // Accepted; the notification (or the reconciliation worker) settles it.
        ChargeOutcome::Pending { operation_id } => {
            tracing::info!(payment_id = %payment.id, %operation_id, "charge accepted; the result comes later");
            let payment = services
                .store
                .get_payment(payment.id)
                .await?
                .ok_or(ServiceError::NotFound)?;
            return Ok((payment, None));
        }
        // Sent, no answer: stays `processing`; the reconciliation worker asks the acquirer.
        ChargeOutcome::Unknown { reason } => {
            tracing::warn!(payment_id = %payment.id, %reason, "charge outcome unknown: left to reconciliation");
            let payment = services
                .store
                .get_payment(payment.id)
                .await?
                .ok_or(ServiceError::NotFound)?;
            return Ok((payment, None));
        }
    };
    match recording {
        Recording::Alone => Ok((settle(services, &payment, &change).await?, None)),
        Recording::Answering {
            client_id,
            key,
            answer,
        } => {
            let (result, answer) = services
                .store
                .transition_payment_answered(&payment, &change, client_id, key, answer)
                .await?;
            Ok((settled(result), answer))
        }
    }
}

/// The issuer's 3-D Secure page sent the customer back with its answer (`PaRes`, `MD`).
#[tracing::instrument(skip_all, fields(payment_id = %payment_id))]
pub async fn complete_three_ds(
    services: &Services,
    payment_id: Uuid,
    operation_id: &str,
    answer: &str,
) -> Result<PaymentRecord, ServiceError> {
    let payment = services
        .store
        .get_payment(payment_id)
        .await?
        .ok_or(ServiceError::NotFound)?;
    if payment.acquirer_operation_id.as_deref() != Some(operation_id) {
        return Err(ServiceError::NotFound);
    }
    let entry = services.supplier_of(&payment.supplier_id)?;
    let actor = "customer:3ds";
    let submitted = StatusChange {
        event: PaymentEvent::Submitted,
        next_action: None,
        failure: None,
        actor,
        reason: &crate::domain::audit::AuditReason::ThreeDsAnswerReceived,
        acquirer_operation_id: None,
    };
    let payment = match services
        .store
        .transition_payment_from(&payment, &submitted)
        .await?
    {
        TransitionResult::Applied(p) => p,
        // A second post of the same answer, or a payment no longer waiting: show where it is.
        TransitionResult::AlreadyThere(p) | TransitionResult::Refused(p, _) => return Ok(p),
    };
    let outcome = entry
        .acquirer
        .complete_three_ds(operation_id, answer)
        .await
        .map_err(|e| ServiceError::internal_from("the 3-D Secure completion at the acquirer", e))?;
    let outcome = match outcome {
        // Completion carries no new challenge; treat one as an unreadable answer.
        ChargeOutcome::RequiresAction { .. } => ChargeOutcome::Unknown {
            reason: "a second challenge".into(),
        },
        other => other,
    };
    record_charge_outcome(services, payment, &outcome, actor, Recording::Alone)
        .await
        .map(|(payment, _)| payment)
}

/// A payment as its creator may see it: another client's (or another user's) payment does not
/// exist as far as the caller can tell.
pub async fn get_for_client(
    services: &Services,
    client: &ApiClient,
    id: Uuid,
    user_id: Option<&str>,
) -> Result<PaymentRecord, ServiceError> {
    let payment = services
        .store
        .get_payment(id)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let same_client = payment.client_id == Some(client.id);
    let same_user = match (&payment.user_id, user_id) {
        (Some(owner), Some(asker)) => owner == asker,
        (Some(_), None) => false,
        (None, _) => true,
    };
    if same_client && same_user {
        Ok(payment)
    } else {
        Err(ServiceError::NotFound)
    }
}

/// Asks the acquirer what happened to a payment that is not final yet and records the answer.
/// A pending or unreadable answer changes nothing: the payment waits for the callback (or the
/// reconciliation worker).
#[tracing::instrument(skip_all, fields(payment_id = %payment.id))]
pub async fn refresh_from_acquirer(
    services: &Services,
    payment: PaymentRecord,
    actor: &str,
) -> Result<PaymentRecord, ServiceError> {
    let status = payment.status;
    if status.is_final() {
        return Ok(payment);
    }
    let Some(entry) = services.suppliers.get(&payment.supplier_id) else {
        return Ok(payment);
    };
    if !entry.acquirer.capabilities().status_query {
        return Ok(payment);
    }
    let outcome = match entry
        .acquirer
        .payment_status(&payment.acquirer_order_id)
        .await
    {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::warn!(%error, "status query not possible");
            return Ok(payment);
        }
    };
    record_status_answer(services, payment, &outcome, actor).await
}

/// Records what a status query answered about a payment that is not final: a final answer
/// moves it, a paid amount that differs goes to a person, anything else changes nothing.
async fn record_status_answer(
    services: &Services,
    payment: PaymentRecord,
    outcome: &StatusOutcome,
    actor: &str,
) -> Result<PaymentRecord, ServiceError> {
    let change = match read_status(outcome, payment.amount_minor, actor) {
        StatusReading::Final(change) => change,
        StatusReading::AmountMismatch(reason) => {
            tracing::error!(reason = %reason.english(), "amount mismatch in status query");
            services
                .store
                .flag_payment_for_review(payment.id, actor, &reason)
                .await?;
            return Ok(payment);
        }
        StatusReading::NotFinal => {
            if let StatusOutcome::Unknown { reason } = outcome {
                tracing::warn!(%reason, "status query gave no answer");
            }
            return Ok(payment);
        }
    };
    match services
        .store
        .transition_payment_from(&payment, &change)
        .await?
    {
        TransitionResult::Applied(p)
        | TransitionResult::AlreadyThere(p)
        | TransitionResult::Refused(p, _) => Ok(p),
    }
}

/// What a status query's answer means for a payment.
#[derive(Debug)]
pub enum StatusReading<'a> {
    /// Final: record this change.
    Final(StatusChange<'a>),
    /// Paid, but another amount than the payment's: a person must look.
    AmountMismatch(crate::domain::audit::ReviewReason),
    /// Pending, or no readable answer.
    NotFinal,
}

/// Reads a status query's answer for a payment of `paid_minor`; the browser return and the
/// reconciliation worker both decide through this.
pub fn read_status<'a>(
    outcome: &'a StatusOutcome,
    paid_minor: i64,
    actor: &'a str,
) -> StatusReading<'a> {
    match outcome {
        StatusOutcome::Succeeded { amount } if amount.minor() == paid_minor => {
            StatusReading::Final(StatusChange {
                event: PaymentEvent::Succeeded,
                next_action: None,
                failure: None,
                actor,
                reason: &crate::domain::audit::AuditReason::StatusQueryPaid,
                acquirer_operation_id: None,
            })
        }
        StatusOutcome::Succeeded { amount } => {
            let expected = Amount::from_minor(paid_minor)
                .map(|a| a.to_string())
                .unwrap_or_default();
            StatusReading::AmountMismatch(crate::domain::audit::ReviewReason::OtherAmount {
                detail: format!(
                    "the acquirer reports {amount} paid, the payment is for {expected}"
                ),
                reported: amount.to_string(),
                expected,
            })
        }
        StatusOutcome::Failed(decline) => StatusReading::Final(StatusChange {
            event: PaymentEvent::Failed,
            next_action: None,
            failure: Some((decline.code.as_str(), &decline.message)),
            actor,
            reason: &crate::domain::audit::AuditReason::StatusQueryFailed,
            acquirer_operation_id: None,
        }),
        StatusOutcome::Pending | StatusOutcome::NotFound | StatusOutcome::Unknown { .. } => {
            StatusReading::NotFinal
        }
    }
}

/// The customer's browser came back from the acquirer. The return itself proves nothing, so the
/// acquirer is asked; the answer decides.
/// What a browser return may be shown.
#[derive(Debug)]
pub enum BrowserReturn {
    /// The return proved it came from oplata's own address or the acquirer's signed one: the
    /// payment, refreshed from the acquirer.
    Proven(Box<PaymentRecord>),
    /// Anyone could have typed it: nothing about the payment, only where to send the browser
    /// (the portal's address, without the payment's id).
    Unproven { return_url: Option<String> },
}

pub async fn handle_browser_return(
    services: &Services,
    kind: AcquirerKind,
    raw: &RawCallback,
) -> Result<BrowserReturn, ServiceError> {
    let order_id = kind
        .protocol()
        .return_order_id(raw)
        .ok_or(ServiceError::NotFound)?;
    let payment = services
        .store
        .find_payment_by_order(kind.as_str(), &order_id)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let proof = raw
        .params()
        .into_iter()
        .find(|(name, _)| name == "proof")
        .map(|(_, value)| value);
    let proven = proof.is_some_and(|proof| services.return_proof_matches(kind, &order_id, &proof))
        || services
            .supplier_of(&payment.supplier_id)
            .is_ok_and(|entry| entry.acquirer.return_is_signed(raw));
    if !proven {
        return Ok(BrowserReturn::Unproven {
            return_url: payment.return_url,
        });
    }
    if !services
        .return_throttle
        .allow(payment.id, std::time::Instant::now())
    {
        // Asked a moment ago: the record is as fresh as a new answer would make it.
        return Ok(BrowserReturn::Proven(Box::new(payment)));
    }
    refresh_from_acquirer(services, payment, &format!("browser-return:{kind}"))
        .await
        .map(|payment| BrowserReturn::Proven(Box::new(payment)))
}
