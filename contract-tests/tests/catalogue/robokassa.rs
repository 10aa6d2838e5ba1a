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

    fn receipt_seen(&self, order_id: &str) -> Option<Vec<oplata_providers::receipt::ReadItem>> {
        self.sandbox.invoice(LOGIN, order_id)?.receipt
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
            the_cashbox_gets_the_receipt_and_refuses_a_wrong_one,
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

/// The page URL of a payment request signed over `signed` optional parameters, carrying `sent`.
fn page_url(
    h: &RobokassaHarness,
    inv_id: &str,
    signed: &wire::SignedExtras<'_>,
    sent: &[(&str, &str)],
) -> String {
    let signature = wire::payment_signature_with(
        HashAlgorithm::Sha256,
        LOGIN,
        "15.00",
        inv_id,
        signed,
        PASSWORD1,
        &[],
    );
    let mut url = h.sandbox_base.join("Merchant/Index.aspx").unwrap();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("MerchantLogin", LOGIN)
            .append_pair("OutSum", "15.00")
            .append_pair("InvId", inv_id)
            .append_pair("SignatureValue", &signature);
        for (name, value) in sent {
            query.append_pair(name, value);
        }
    }
    url.to_string()
}

async fn page(url: &str) -> (u16, String) {
    let response = harness::http().get(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// §2.2.1: `OutSumCurrency`, `UserIp`, `Receipt` and `StepByStep` are part of the signature.
/// The simulator takes correctly signed requests that carry them and refuses any of them added
/// (or changed) after signing, as Robokassa does.
#[tokio::test]
async fn every_optional_signed_parameter_is_in_the_signature_and_none_can_be_added_later() {
    let h = RobokassaHarness::start().await;
    let receipt = wire::encode_receipt(&harness::receipt("15.00"));
    let all = wire::SignedExtras {
        out_sum_currency: None,
        user_ip: Some("203.0.113.7"),
        receipt: Some(&receipt),
        step_by_step: true,
    };
    let sent = [
        ("UserIp", "203.0.113.7"),
        ("Receipt", receipt.as_str()),
        ("StepByStep", "true"),
    ];
    let (status, html) = page(&page_url(&h, "901", &all, &sent)).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("id=\"receipt\""), "{html}");
    assert!(
        h.sandbox.invoice(LOGIN, "901").unwrap().hold,
        "StepByStep holds"
    );

    let unsigned = wire::SignedExtras::default();
    for (case, signed, sent) in [
        (
            "Receipt added after signing",
            &unsigned,
            vec![("Receipt", receipt.as_str())],
        ),
        (
            "UserIp added after signing",
            &unsigned,
            vec![("UserIp", "203.0.113.7")],
        ),
        (
            "StepByStep added after signing",
            &unsigned,
            vec![("StepByStep", "true")],
        ),
        (
            "OutSumCurrency added after signing",
            &unsigned,
            vec![("OutSumCurrency", "USD")],
        ),
        (
            "UserIp changed after signing",
            &wire::SignedExtras {
                user_ip: Some("203.0.113.7"),
                ..wire::SignedExtras::default()
            },
            vec![("UserIp", "198.51.100.1")],
        ),
    ] {
        let (status, html) = page(&page_url(&h, "902", signed, &sent)).await;
        assert_eq!(status, 400, "{case}: {html}");
        assert!(html.contains("Неверная подпись"), "{case}: {html}");
    }
    // Signed correctly, the currency is checked for what it says, not refused as a forgery.
    let usd = wire::SignedExtras {
        out_sum_currency: Some("USD"),
        ..wire::SignedExtras::default()
    };
    let (status, html) = page(&page_url(&h, "903", &usd, &[("OutSumCurrency", "USD")])).await;
    assert_eq!(status, 400);
    assert!(html.contains("только в рублях"), "{html}");
    assert!(h.sandbox.invoice(LOGIN, "902").is_none() && h.sandbox.invoice(LOGIN, "903").is_none());
}

/// The Refund API takes the refund's receipt lines (`InvoiceItems`) and checks that they add up
/// to the sum given back.
#[tokio::test]
async fn a_refund_carries_its_receipt_lines_and_lines_for_another_sum_are_refused() {
    let h = RobokassaHarness::start().await;
    let success = h.shop_base.join("success").unwrap().to_string();
    let paid = harness::receipt("15.00");
    let request = oplata_providers::PaymentRequest {
        payment_ref: "ref",
        order_id: "904",
        amount: Amount::parse_api("15.00").unwrap(),
        description: "Электроэнергия",
        email: None,
        success_url: &success,
        fail_url: &success,
        save_card: false,
        customer_ref: None,
        payer: None,
        receipt: Some(&paid),
    };
    let (status, _) = harness::open_page(&h.adapter, &request).await;
    assert_eq!(status, 200);
    h.decide("904", true).await;
    let refund = |reference: &'static str, receipt: oplata_providers::Receipt| {
        let adapter = &h.adapter;
        async move {
            adapter
                .refund(&oplata_providers::RefundRequest {
                    operation_id: "904",
                    refund_ref: reference,
                    amount: Some(Amount::parse_api("5.00").unwrap()),
                    reason: "overpaid",
                    receipt: Some(&receipt),
                })
                .await
                .unwrap()
        }
    };

    let wrong = refund("r1", harness::receipt("4.00")).await;
    let right = refund("r2", harness::receipt("5.00")).await;

    assert!(
        matches!(&wrong, oplata_providers::RefundOutcome::Declined(d) if d.acquirer_code == "InvalidInvoiceItems"),
        "{wrong:?}"
    );
    assert!(
        matches!(right, oplata_providers::RefundOutcome::Succeeded { .. }),
        "{right:?}"
    );
    assert_eq!(
        h.sandbox.refunded(LOGIN, "904"),
        500,
        "only the right one refunded"
    );
    let ledger = h.sandbox.ledger();
    assert_eq!(
        ledger["refunds"][0]["receipt"][0]["sum"], "5.00",
        "{ledger}"
    );
}

/// A validly signed ResultURL is accepted only with oplata's own `Shp_` parameters, exactly as
/// it sends them: `Shp_payment` always, the passport pair together or not at all, nothing else.
#[test]
fn a_notification_must_echo_exactly_oplatas_own_parameters() {
    let adapter = adapter(Url::parse("http://127.0.0.1:9/").unwrap(), PASSWORD2);
    let notify = |shp: &[(&str, &str)]| {
        let shp: Vec<(String, String)> = shp
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let signature =
            wire::result_signature(HashAlgorithm::Sha256, "15.000000", "77", PASSWORD2, &shp);
        let mut body = form_urlencoded::Serializer::new(String::new());
        body.append_pair("OutSum", "15.000000")
            .append_pair("InvId", "77")
            .append_pair("SignatureValue", &signature);
        for (k, v) in &shp {
            body.append_pair(k, v);
        }
        adapter.verify_callback(&RawCallback {
            query: String::new(),
            body: body.finish().into_bytes(),
        })
    };

    let plain = notify(&[("Shp_payment", "p-1")]).unwrap();
    let budget = notify(&[
        ("Shp_payment", "p-1"),
        ("Shp_passport", "4510 987654"),
        ("Shp_payer", "Иванов Иван"),
    ])
    .unwrap();

    assert_eq!(plain.personal_data_echoed, Some(false));
    assert_eq!(budget.personal_data_echoed, Some(true));
    for shp in [
        vec![],
        vec![("Shp_Payment", "p-1")],
        vec![("Shp_payment", "")],
        vec![("Shp_payment", "p-1"), ("Shp_extra", "1")],
        vec![("Shp_payment", "p-1"), ("Shp_passport", "4510 987654")],
    ] {
        assert!(
            matches!(
                notify(&shp),
                Err(oplata_providers::CallbackError::Malformed(_))
            ),
            "{shp:?}"
        );
    }
}
