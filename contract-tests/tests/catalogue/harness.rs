//! What a scenario needs from an acquirer's simulator, and the shop endpoint that receives its
//! notifications and verifies them with the adapter.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use oplata_providers::{
    Acquirer, Amount, CallbackError, NextAction, PaymentRequest, RawCallback, StartOutcome,
    VerifiedCallback,
};
use url::Url;

#[async_trait]
pub trait Harness: Send + Sync + Sized {
    async fn start() -> Self;
    fn adapter(&self) -> &dyn Acquirer;
    fn shop(&self) -> &Shop;
    /// The customer presses "pay" (`true`) or "decline" on the simulator's page.
    async fn decide(&self, order_id: &str, pay: bool);
    /// The simulator stops delivering notifications (they get lost).
    fn lose_notifications(&self);
    /// A notification for `order_id` as the acquirer would send it, signed with `secret`
    /// (the right one or not), for `amount` written as the protocol writes it.
    fn notification(&self, order_id: &str, amount: Amount, secret: &str) -> RawCallback;
    /// The merchant secret that signs notifications.
    fn secret(&self) -> &str;
    /// Notification deliveries the simulator attempted for an order, and whether one was
    /// acknowledged.
    fn deliveries(&self, order_id: &str) -> (u32, bool);
    /// Where the shop listens (its success and fail pages hang below it).
    fn shop_base(&self) -> &Url;
    /// Switches of simulators that support saved cards; others never get these calls, because
    /// the scenarios that need them are skipped by capability.
    async fn pay_without_three_ds(&self, order_id: &str) {
        unreachable!("{order_id}: only for adapters that report 3-D Secure per payment")
    }
    fn set_next_charge(&self, behaviour: oplata_providers::moneta::sandbox::ChargeBehaviour) {
        unreachable!("{behaviour:?}: only for adapters with saved cards")
    }
    fn set_api_mode(&self, mode: oplata_providers::moneta::sandbox::ApiMode) {
        unreachable!("{mode:?}: only for adapters with saved cards")
    }
    fn charges_made(&self) -> u64 {
        unreachable!("only for adapters with saved cards")
    }
    /// The fiscal receipt the simulator's cashbox accepted for an order, if any.
    fn receipt_seen(&self, order_id: &str) -> Option<Vec<oplata_providers::receipt::ReadItem>>;
    /// The names of the protocol's amount, order and signature parameters.
    const AMOUNT_PARAM: &'static str;
    const ORDER_PARAM: &'static str;
    const SIGNATURE_PARAM: &'static str;
}

/// The shop's notification endpoint: records each notification as the adapter verified it and
/// answers the way the protocol wants.
#[derive(Clone, Default)]
pub struct Shop {
    pub received: Arc<Mutex<Vec<Result<VerifiedCallback, CallbackError>>>>,
    /// Answer this many deliveries with an error before accepting.
    pub refuse_first: Arc<AtomicU32>,
}

impl Shop {
    pub fn received(&self) -> Vec<Result<VerifiedCallback, CallbackError>> {
        self.received.lock().unwrap().clone()
    }

    /// Records a verified notification; says whether this delivery should be refused.
    pub fn record(&self, verified: Result<VerifiedCallback, CallbackError>) -> bool {
        self.received.lock().unwrap().push(verified);
        self.refuse_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

pub fn http() -> reqwest::Client {
    oplata_providers::http_client(Duration::from_secs(10)).unwrap()
}

pub async fn serve(router: axum::Router) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Url::parse(&format!("http://{address}/")).unwrap()
}

/// Binds a listener now (its address is needed to configure the simulator) and serves later.
pub async fn reserve() -> (tokio::net::TcpListener, Url) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    (listener, Url::parse(&format!("http://{address}/")).unwrap())
}

/// Starts a payment and does what the customer's browser does with `next_action`: returns the
/// page's status code and HTML.
pub async fn open_page(adapter: &dyn Acquirer, request: &PaymentRequest<'_>) -> (u16, String) {
    let outcome = adapter.start_payment(request).await;
    let StartOutcome::RequiresAction(action) = outcome else {
        panic!("expected the customer to be sent somewhere, got {outcome:?}");
    };
    follow(&action).await
}

pub async fn follow(action: &NextAction) -> (u16, String) {
    let response = match action {
        NextAction::Redirect { url } => http().get(url).send().await.unwrap(),
        NextAction::FormPost { url, fields } => http().post(url).form(fields).send().await.unwrap(),
    };
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A utility's receipt of one line for `total`, sent to an e-mail address.
pub fn receipt(total: &str) -> oplata_providers::Receipt {
    use oplata_providers::receipt::{
        ReceiptContact, ReceiptItem, SettlementMethod, SubjectKind, TaxSystem, Vat,
    };
    oplata_providers::Receipt {
        tax_system: TaxSystem::Osn,
        contact: ReceiptContact::Email("buyer@example.ru".into()),
        items: vec![ReceiptItem {
            name: "Электроэнергия, лицевой счёт 1234567890".into(),
            quantity: 1,
            price: Amount::parse_api(total).unwrap(),
            vat: Vat::None,
            method: SettlementMethod::FullPayment,
            subject: SubjectKind::Service,
        }],
        seller_inn: "7700000000".into(),
        payment_address: "pay.example.ru".into(),
    }
}
