//! Robokassa's adapter and simulator in the catalogue, plus Robokassa's published signature
//! example.

use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use oplata_providers::moneta::sandbox::ChargeBehaviour;
use oplata_providers::robokassa::sandbox::{RobokassaSandbox, SandboxMerchant};
use oplata_providers::robokassa::{Robokassa, RobokassaConfig, wire};
use oplata_providers::sandbox::ApiMode;
use oplata_providers::sandbox::DeliveryPolicy;
use oplata_providers::signing::HashAlgorithm;
use oplata_providers::{
    Acquirer, AcquirerKind, Amount, RawCallback, callback_accepted, callback_rejected,
};
use secrecy::SecretString;
use url::Url;

use crate::harness::{self, Harness, Shop};

const LOGIN: &str = "contract-shop";
const PASSWORD1: &str = "contract-password-1";
const PASSWORD2: &str = "contract-password-2";
const PASSWORD3: &str = "contract-password-3";

pub struct RobokassaHarness {
    adapter: Robokassa,
    sandbox: RobokassaSandbox,
    shop: Shop,
    shop_base: Url,
    sandbox_base: Url,
}

async fn result_url(
    State((shop, adapter)): State<(Shop, std::sync::Arc<Robokassa>)>,
    body: Bytes,
) -> (StatusCode, String) {
    let raw = RawCallback {
        query: String::new(),
        body: body.to_vec(),
    };
    let verified = adapter.verify_callback(&raw);
    let refuse = shop.record(verified.clone());
    match verified {
        _ if refuse => (StatusCode::INTERNAL_SERVER_ERROR, "busy".into()),
        Ok(_) => (
            StatusCode::OK,
            callback_accepted(AcquirerKind::Robokassa, &raw).body,
        ),
        Err(error) => (
            StatusCode::BAD_REQUEST,
            callback_rejected(AcquirerKind::Robokassa, &raw, &error).body,
        ),
    }
}

fn adapter(base_url: Url, password2: &str) -> Robokassa {
    Robokassa::new(
        RobokassaConfig {
            merchant_login: LOGIN.into(),
            password1: SecretString::from(PASSWORD1),
            password2: SecretString::from(password2),
            hash: HashAlgorithm::Sha256,
            test_mode: true,
            refund_base_url: base_url.clone(),
            base_url,
            password3: Some(SecretString::from(PASSWORD3)),
        },
        // Short, so that a dropped or slow answer becomes "unknown" quickly.
        oplata_providers::http_client(Duration::from_secs(2)).unwrap(),
    )
    .unwrap()
}

#[async_trait]
impl Harness for RobokassaHarness {
    const AMOUNT_PARAM: &'static str = "OutSum";
    const ORDER_PARAM: &'static str = "InvId";
    const SIGNATURE_PARAM: &'static str = "SignatureValue";

    async fn start() -> Self {
        let (shop_listener, shop_base) = harness::reserve().await;
        let sandbox = RobokassaSandbox::new(
            vec![SandboxMerchant {
                login: LOGIN.into(),
                password1: PASSWORD1.into(),
                password2: PASSWORD2.into(),
                password3: PASSWORD3.into(),
                hash: HashAlgorithm::Sha256,
                result_url: shop_base.join("result").unwrap(),
                success_url: shop_base.join("success").unwrap(),
                fail_url: shop_base.join("fail").unwrap(),
            }],
            DeliveryPolicy {
                retry_interval: Duration::from_millis(20),
                max_attempts: 5,
                browser_wait: Duration::from_secs(5),
            },
        );
        let sandbox_base = harness::serve(sandbox.router()).await;
        let shop = Shop::default();
        let verifier = std::sync::Arc::new(adapter(sandbox_base.clone(), PASSWORD2));
        let router = Router::new()
            .route("/result", post(result_url))
            .with_state((shop.clone(), verifier));
        tokio::spawn(async move { axum::serve(shop_listener, router).await });
        RobokassaHarness {
            adapter: adapter(sandbox_base.clone(), PASSWORD2),
            sandbox,
            shop,
            shop_base,
            sandbox_base,
        }
    }

    fn adapter(&self) -> &dyn Acquirer {
        &self.adapter
    }

    fn shop(&self) -> &Shop {
        &self.shop
    }

    async fn decide(&self, order_id: &str, pay: bool) {
        self.sandbox.decide(LOGIN, order_id, pay).await.unwrap();
    }

    fn lose_notifications(&self) {
        self.sandbox.set_drop_result_notifications(true);
    }

    fn notification(&self, order_id: &str, amount: Amount, secret: &str) -> RawCallback {
        let out_sum = amount.format_with_places(6);
        let shp = vec![("Shp_payment".to_owned(), "ref".to_owned())];
        let signature =
            wire::result_signature(HashAlgorithm::Sha256, &out_sum, order_id, secret, &shp);
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("OutSum", &out_sum)
            .append_pair("InvId", order_id)
            .append_pair("SignatureValue", &signature)
            .append_pair("Shp_payment", "ref")
            .finish();
        RawCallback {
            query: String::new(),
            body: body.into_bytes(),
        }
    }

    fn secret(&self) -> &str {
        PASSWORD2
    }

    fn deliveries(&self, order_id: &str) -> (u32, bool) {
        let invoice = self.sandbox.invoice(LOGIN, order_id).unwrap();
        (invoice.result_attempts, invoice.result_acknowledged)
    }

    fn shop_base(&self) -> &Url {
        &self.shop_base
    }

    fn set_next_charge(&self, behaviour: ChargeBehaviour) {
        match behaviour {
            ChargeBehaviour::Approve => {}
            ChargeBehaviour::InsufficientFunds => self.sandbox.decline_next_recurring(),
            ChargeBehaviour::Challenge => unreachable!("ruled out by capabilities"),
        }
    }

    fn set_api_mode(&self, mode: ApiMode) {
        self.sandbox.set_recurring_mode(mode);
    }

    fn charges_made(&self) -> u64 {
        u64::from(self.sandbox.charges_made())
    }
}

mod catalogue {
    crate::catalogue!(
        super::RobokassaHarness,
        run: [
            payment_succeeds,
            payment_declined,
            customer_abandons,
            status_query_reports_an_abandoned_payment_as_pending,
            status_query_resolves_a_payment_whose_notification_was_lost,
            notification_is_redelivered_until_the_shop_acknowledges_it,
            a_tampered_payment_request_is_refused_by_the_acquirer,
            forged_changed_truncated_or_duplicated_notifications_are_refused,
            a_saved_card_is_charged_without_the_customer,
            a_saved_card_charge_can_be_declined,
            a_charge_retried_after_a_timeout_never_charges_twice,
            refunds_full_partial_repeated_and_over_the_remainder,
            a_refund_whose_answer_is_lost_or_unreadable_is_unknown_never_a_decline,
        ],
        skip: [
            a_saved_card_charge_meets_a_three_ds_challenge = "Robokassa has no merchant-side 3-D Secure for recurring charges (capabilities.saved_card_challenge = false)",
            a_card_without_three_ds_is_reported_as_such = "Robokassa enforces 3-D Secure on its page (three_ds = EnforcedByContract)",
        ]
    );
}

/// Robokassa's published PHP demo (login `demo`, Password#1 `password_1`, sum `8.96`, InvId 0,
/// `Shp_item=1`) signs `md5("demo:8.96:0:password_1:Shp_item=1")`. The digests were computed
/// with coreutils' md5sum and sha256sum, independently of this code.
#[test]
fn payment_signature_matches_the_published_demo_formula() {
    let shp = [("Shp_item".to_owned(), "1".to_owned())];
    assert_eq!(
        wire::payment_signature(HashAlgorithm::Md5, "demo", "8.96", "0", "password_1", &shp),
        "f7738250525ae5245f71565f040ed4d9"
    );
    assert_eq!(
        wire::payment_signature(
            HashAlgorithm::Sha256,
            "demo",
            "8.96",
            "0",
            "password_1",
            &shp
        ),
        "9a1de6d02ae8fb3895dc740d4c55e078739b8df7e6cabd87d75bdd983fcab3ef"
    );
    assert!(
        wire::payment_signature(
            HashAlgorithm::Sha512,
            "demo",
            "8.96",
            "0",
            "password_1",
            &shp
        )
        .starts_with("1434caad162905fa16d6298503356cbfca5b91eb")
    );
}

#[test]
fn result_and_status_signatures_match_independent_digests() {
    assert_eq!(
        wire::result_signature(HashAlgorithm::Md5, "10.000000", "5", "password_2", &[]),
        "9f5380cc2e4c6a342d3fa711f5c100e0"
    );
    assert_eq!(
        wire::op_state_signature(HashAlgorithm::Md5, "demo", "5", "password_2"),
        "9d4c6ee522d007f6c3cac58596864105"
    );
}

#[tokio::test]
async fn status_query_with_wrong_credentials_or_no_acquirer_is_unknown_not_a_guess() {
    let h = RobokassaHarness::start().await;
    let wrong_password = adapter(h.adapter_base(), "wrong");
    let nobody_listening = adapter(Url::parse("http://127.0.0.1:9/").unwrap(), PASSWORD2);

    assert!(matches!(
        wrong_password.payment_status("1").await.unwrap(),
        oplata_providers::StatusOutcome::Unknown { .. }
    ));
    assert!(matches!(
        nobody_listening.payment_status("1").await.unwrap(),
        oplata_providers::StatusOutcome::Unknown { .. }
    ));
}

impl RobokassaHarness {
    fn adapter_base(&self) -> Url {
        self.sandbox_base.clone()
    }
}
