//! The service layer: carries a request through the domain rules, the store and the acquirers.
//! It knows nothing of HTTP; handlers call it and map its errors in one place.

pub mod api_keys;
pub mod callbacks;
pub mod cards;
pub mod desk;
pub mod idempotency;
pub mod operators;
pub mod payer;
pub mod payments;
pub mod public;
pub mod receipts;
pub mod refunds;
pub mod review;
pub mod second_factor;
pub mod sms;
pub mod suppliers;
pub mod throttle;

use std::sync::Arc;

use crate::config::Settings;
use crate::store::Store;
use suppliers::SupplierDirectory;

/// Everything a request needs, shared by all handlers and workers.
#[derive(Debug)]
pub struct Services {
    pub store: Arc<Store>,
    pub suppliers: SupplierDirectory,
    pub settings: Arc<Settings>,
    /// How browsers and acquirers reach this service.
    pub public_base_url: url::Url,
    pub vault: crate::vault::Vault,
    /// "Now" for the rules that count per day (the SMS limits).
    pub clock: crate::clock::Clock,
    /// Bounds the status queries that browser returns cause.
    pub return_throttle: throttle::QueryThrottle,
    /// The reverse proxies whose forwarding header names the client.
    pub trusted_proxies: crate::http::client_address::TrustedProxies,
    /// When the webhook worker last queued the whole outbox.
    pub webhook_queue: crate::workers::webhooks::QueueState,
}

impl Services {
    /// The address the customer's browser returns to from an acquirer that takes one per payment.
    pub fn return_url(
        &self,
        kind: oplata_providers::AcquirerKind,
        outcome: &str,
        order_id: &str,
    ) -> String {
        let mut url = self.public_base_url.clone();
        url.set_path(&format!("/return/{kind}/{outcome}"));
        url.query_pairs_mut()
            .clear()
            .append_pair("order", order_id)
            .append_pair("proof", &self.return_proof(kind, order_id));
        url.to_string()
    }

    /// The proof a return address carries that oplata itself made it for this order: without
    /// it, a return reveals nothing and asks the acquirer nothing.
    pub fn return_proof(&self, kind: oplata_providers::AcquirerKind, order_id: &str) -> String {
        hex::encode(
            &self
                .vault
                .tag(Self::return_message(kind, order_id).as_bytes())[..16],
        )
    }

    pub fn return_proof_matches(
        &self,
        kind: oplata_providers::AcquirerKind,
        order_id: &str,
        proof: &str,
    ) -> bool {
        hex::decode(proof).is_ok_and(|tag| {
            self.vault
                .tag_matches(Self::return_message(kind, order_id).as_bytes(), &tag)
        })
    }

    fn return_message(kind: oplata_providers::AcquirerKind, order_id: &str) -> String {
        format!("oplata-return-v1\0{kind}\0{order_id}")
    }

    /// The supplier a stored payment names; configuration that lost it is an internal error.
    pub fn supplier_of(
        &self,
        supplier_id: &str,
    ) -> Result<&suppliers::SupplierEntry, ServiceError> {
        self.suppliers
            .get(supplier_id)
            .ok_or_else(|| ServiceError::internal(format!("supplier {supplier_id} vanished")))
    }

    /// Where the acquirer sends the browser back after paying and after giving up.
    pub fn browser_returns(
        &self,
        kind: oplata_providers::AcquirerKind,
        order_id: &str,
    ) -> (String, String) {
        (
            self.return_url(kind, "success", order_id),
            self.return_url(kind, "fail", order_id),
        )
    }

    /// Where the browser fetches the acquirer's form of a payment that carries personal data,
    /// without the token that unlocks it: this is what is stored and what any later reader
    /// sees. Only the creator's own answer carries the token ([`Services::reveal_continue_links`]).
    pub fn continue_url(&self, payment_id: uuid::Uuid) -> String {
        let mut url = self.public_base_url.clone();
        url.set_path(&format!("/pay/{payment_id}/continue"));
        url.set_query(None);
        url.to_string()
    }

    /// The continue link with its token, for the payment's creator only.
    pub fn continue_link(&self, payment_id: uuid::Uuid) -> String {
        use secrecy::ExposeSecret;
        let mut url = self.public_base_url.clone();
        url.set_path(&format!("/pay/{payment_id}/continue"));
        url.query_pairs_mut()
            .clear()
            .append_pair("token", self.continue_token(payment_id).expose_secret());
        url.to_string()
    }

    /// The token that unlocks a payment's continue page: derived under the vault's key, never
    /// stored (only its hash is), so no row holds a usable link.
    pub fn continue_token(&self, payment_id: uuid::Uuid) -> secrecy::SecretString {
        secrecy::SecretString::from(hex::encode(
            self.vault
                .tag(format!("oplata-continue-v1\0{payment_id}").as_bytes()),
        ))
    }

    /// Puts the token into every continue link of an answer that goes to the payment's
    /// creator (its first answer, or its idempotent replay), never into what is stored.
    pub fn reveal_continue_links(&self, body: &str) -> String {
        use secrecy::ExposeSecret;
        const END: &str = "/continue\"";
        let mut out = String::with_capacity(body.len() + 80);
        let mut rest = body;
        while let Some(at) = rest.find(END) {
            let (before, after) = rest.split_at(at);
            out.push_str(before);
            out.push_str("/continue");
            // `…/pay/<payment id>/continue"`: the 36 characters before are the id.
            let id = before.len().checked_sub(36).and_then(|start| {
                let tail = before.get(start..)?;
                before
                    .get(..start)
                    .is_some_and(|head| head.ends_with("/pay/"))
                    .then(|| uuid::Uuid::parse_str(tail).ok())
                    .flatten()
            });
            if let Some(id) = id {
                out.push_str("?token=");
                out.push_str(self.continue_token(id).expose_secret());
            }
            out.push('"');
            rest = &after[END.len()..];
        }
        out.push_str(rest);
        out
    }

    /// Where an issuer's 3-D Secure page posts its answer for a saved-card charge (`TermUrl`).
    /// Whether the database answers (readiness).
    pub async fn database_ready(&self) -> Result<(), crate::store::StoreError> {
        self.store.ping().await
    }

    /// `postgres` or `sqlite`.
    pub fn database_backend(&self) -> &'static str {
        self.store.backend()
    }

    pub fn three_ds_return_url(&self, payment_id: uuid::Uuid) -> String {
        let mut url = self.public_base_url.clone();
        url.set_path(&format!("/3ds/{payment_id}/complete"));
        url.set_query(None);
        url.to_string()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Rule(#[from] crate::domain::new_payment::PaymentRuleError),
    #[error(transparent)]
    Card(#[from] crate::domain::cards::CardRuleError),
    #[error(transparent)]
    Refund(#[from] crate::domain::refunds::RefundRuleError),
    #[error(transparent)]
    Operator(#[from] operators::OperatorError),
    #[error(transparent)]
    Limited(#[from] crate::domain::public_limits::Limited),
    #[error(transparent)]
    Sms(#[from] sms::SmsError),
    #[error("not found")]
    NotFound,
    #[error("not on the review list")]
    NotInReview,
    #[error("the item cannot be settled that way")]
    InvalidResolution,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Something that cannot happen with consistent data and a working acquirer client; the
    /// cause is kept for the log line, never shown to the caller.
    #[error("internal error: {what}")]
    Internal {
        what: String,
        #[source]
        cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl ServiceError {
    pub fn internal(what: impl Into<String>) -> Self {
        ServiceError::Internal {
            what: what.into(),
            cause: None,
        }
    }

    /// An internal failure in `what`, caused by `cause`.
    pub fn internal_from(
        what: impl Into<String>,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        ServiceError::Internal {
            what: what.into(),
            cause: Some(cause.into()),
        }
    }
}
