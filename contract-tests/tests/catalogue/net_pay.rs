//! NetPay's adapter and simulator in the catalogue, plus encryption and token vectors.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use oplata_providers::net_pay::sandbox::{NetPaySandbox, SandboxMerchant};
use oplata_providers::net_pay::{NetPay, NetPayConfig, wire};
use oplata_providers::sandbox::DeliveryPolicy;
use oplata_providers::{
    Acquirer, AcquirerKind, Amount, RawCallback, callback_accepted, callback_rejected,
};
use secrecy::SecretString;
use url::Url;

use crate::harness::{self, Harness, Shop};

const API_KEY: &str = "contract-netpay-key";
const AUTH: &str = "77";

pub struct NetPayHarness {
    adapter: NetPay,
    sandbox: NetPaySandbox,
    shop: Shop,
    shop_base: Url,
}

async fn notification(
    State((shop, adapter)): State<(Shop, Arc<NetPay>)>,
    RawQuery(query): RawQuery,
) -> String {
    let raw = RawCallback {
        query: query.unwrap_or_default(),
        body: Vec::new(),
    };
    let verified = adapter.verify_callback(&raw);
    let refuse = shop.record(verified.clone());
    match verified {
        _ if refuse => "<notification><status>0</status></notification>".into(),
        Ok(_) => callback_accepted(AcquirerKind::NetPay, &raw).body,
        Err(error) => callback_rejected(AcquirerKind::NetPay, &raw, &error).body,
    }
}

fn adapter(base_url: Url, notification_url: Url) -> NetPay {
    NetPay::new(NetPayConfig {
        api_key: SecretString::from(API_KEY),
        auth: AUTH.into(),
        base_url,
        test_mode: true,
        notification_url: Some(notification_url),
        link_lifetime: Duration::from_secs(3600),
    })
    .unwrap()
}

#[async_trait]
impl Harness for NetPayHarness {
    const AMOUNT_PARAM: &'static str = "amount";
    const ORDER_PARAM: &'static str = "orderID";
    const SIGNATURE_PARAM: &'static str = "token";

    async fn start() -> Self {
        let (shop_listener, shop_base) = harness::reserve().await;
        let sandbox = NetPaySandbox::new(
            vec![SandboxMerchant {
                api_key: API_KEY.into(),
                auth: AUTH.into(),
                notification_url: None,
            }],
            DeliveryPolicy {
                retry_interval: Duration::from_millis(20),
                max_attempts: 5,
                browser_wait: Duration::from_secs(5),
            },
        );
        let sandbox_base = harness::serve(sandbox.router()).await;
        let notify = shop_base.join("notification").unwrap();
        let shop = Shop::default();
        let verifier = Arc::new(adapter(sandbox_base.clone(), notify.clone()));
        let router = Router::new()
            .route("/notification", get(notification))
            .with_state((shop.clone(), verifier));
        tokio::spawn(async move { axum::serve(shop_listener, router).await });
        NetPayHarness {
            adapter: adapter(sandbox_base, notify),
            sandbox,
            shop,
            shop_base,
        }
    }

    fn adapter(&self) -> &dyn Acquirer {
        &self.adapter
    }

    fn shop(&self) -> &Shop {
        &self.shop
    }

    async fn decide(&self, order_id: &str, pay: bool) {
        self.sandbox.decide(AUTH, order_id, pay).await.unwrap();
    }

    fn lose_notifications(&self) {
        self.sandbox.set_drop_notifications(true);
    }

    fn notification(&self, order_id: &str, amount: Amount, secret: &str) -> RawCallback {
        let amount = amount.to_string();
        let values = [
            order_id,
            "ref",
            AUTH,
            "APPROVED",
            "Sale",
            amount.as_str(),
            "000",
        ];
        let token = wire::notification_token(secret, &values);
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("orderID", order_id)
            .append_pair("orderNumber", "ref")
            .append_pair("auth", AUTH)
            .append_pair("status", "APPROVED")
            .append_pair("transactionType", "Sale")
            .append_pair("amount", &amount)
            .append_pair("error", "000")
            .append_pair("token", &token)
            .finish();
        RawCallback {
            query,
            body: Vec::new(),
        }
    }

    fn secret(&self) -> &str {
        API_KEY
    }

    fn deliveries(&self, order_id: &str) -> (u32, bool) {
        let order = self.sandbox.order(AUTH, order_id).unwrap();
        (order.notification_attempts, order.acknowledged)
    }

    fn shop_base(&self) -> &Url {
        &self.shop_base
    }

    fn receipt_seen(&self, order_id: &str) -> Option<Vec<oplata_providers::receipt::ReadItem>> {
        self.sandbox.order(AUTH, order_id)?.receipt
    }
}

mod catalogue {
    crate::catalogue!(
        super::NetPayHarness,
        run: [
            payment_succeeds,
            payment_declined,
            customer_abandons,
            notification_is_redelivered_until_the_shop_acknowledges_it,
            a_tampered_payment_request_is_refused_by_the_acquirer,
            forged_changed_truncated_or_duplicated_notifications_are_refused,
            the_cashbox_gets_the_receipt_and_refuses_a_wrong_one,
        ],
        skip: [
            status_query_reports_an_abandoned_payment_as_pending = "NetPay has no status query (capabilities.status_query = false)",
            status_query_resolves_a_payment_whose_notification_was_lost = "NetPay has no status query (capabilities.status_query = false)",
            a_saved_card_is_charged_without_the_customer = "NetPay's recurring protocol is not public (capabilities.saved_cards = false)",
            a_saved_card_charge_can_be_declined = "NetPay's recurring protocol is not public (capabilities.saved_cards = false)",
            a_saved_card_charge_meets_a_three_ds_challenge = "NetPay has no saved-card charges at all (capabilities.saved_card_challenge = false)",
            a_charge_retried_after_a_timeout_never_charges_twice = "NetPay's recurring protocol is not public (capabilities.saved_cards = false)",
            refunds_full_partial_repeated_and_over_the_remainder = "NetPay has no refund API: refunds are done in its cabinet (capabilities.refunds = false)",
            a_refund_whose_answer_is_lost_or_unreadable_is_unknown_never_a_decline = "NetPay has no refund API: refunds are done in its cabinet (capabilities.refunds = false)",
            a_card_without_three_ds_is_reported_as_such = "NetPay enforces 3-D Secure on its page (three_ds = EnforcedByContract)",
        ]
    );
}

/// The encryption vectors were produced with OpenSSL, independently of this code:
/// `printf 'amount=10.00' | openssl enc -aes-128-ecb -K <hex of the derived key> | base64`,
/// and the key derivation with `md5sum`/`base64` as in the vendor's plugin.
#[test]
fn encryption_and_token_match_independent_tools() {
    let key = wire::derive_key("demo-key", "2024-05-01V12:00:00");
    assert_eq!(std::str::from_utf8(&key).unwrap(), KEY_FROM_COREUTILS);
    assert_eq!(
        wire::encrypt_item(&key, "amount=10.00"),
        CIPHERTEXT_FROM_OPENSSL
    );
    assert_eq!(
        wire::notification_token(
            "demo-key",
            &["7", "", "1", "APPROVED", "Sale", "10.00", "000"]
        ),
        TOKEN_FROM_COREUTILS
    );
}

const KEY_FROM_COREUTILS: &str = "2dBaIxlllY6QGKoY";
const CIPHERTEXT_FROM_OPENSSL: &str = "0iXwYWUjG0cT3UIfmxvGZg==";
const TOKEN_FROM_COREUTILS: &str = "0423cefcc02c69f40be7f0d67925aa98";
