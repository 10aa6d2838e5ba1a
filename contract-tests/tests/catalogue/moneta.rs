//! The Moneta-style adapter and simulator in the catalogue.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use oplata_providers::moneta::sandbox::{
    ApiMode, ChargeBehaviour, DEMO_OTP, FormStep, MonetaSandbox, SandboxAccount,
};
use oplata_providers::moneta::{Moneta, MonetaConfig, wire};
use oplata_providers::sandbox::DeliveryPolicy;
use oplata_providers::{Acquirer, Amount, AnswerVerdict, RawCallback, signed_callback_answer};
use secrecy::SecretString;
use url::Url;

use crate::harness::{self, Harness, Shop};

const ACCOUNT: &str = "54600817";
const CODE: &str = "contract-integrity-code";

pub struct MonetaHarness {
    adapter: Moneta,
    sandbox: MonetaSandbox,
    shop: Shop,
    shop_base: Url,
    sandbox_base: Url,
}

async fn pay_url(
    State((shop, adapter)): State<(Shop, Arc<Moneta>)>,
    body: Bytes,
) -> (StatusCode, String) {
    let raw = RawCallback {
        query: String::new(),
        body: body.to_vec(),
    };
    let verified = adapter.verify_callback(&raw);
    let refuse = shop.record(verified.clone());
    let answer = match &verified {
        _ if refuse => return (StatusCode::INTERNAL_SERVER_ERROR, "FAIL".into()),
        // The shop returns the receipt for the sum paid, as oplata does.
        Ok(verified) => {
            let receipt = harness::receipt(&verified.amount.round_dp(2).to_string());
            signed_callback_answer(
                adapter.as_ref(),
                &raw,
                AnswerVerdict::Accepted {
                    receipt: Some(&receipt),
                },
            )
        }
        Err(error) => {
            signed_callback_answer(adapter.as_ref(), &raw, AnswerVerdict::Rejected(error))
        }
    };
    (StatusCode::from_u16(answer.status).unwrap(), answer.body)
}

fn adapter(base_url: Url) -> Moneta {
    Moneta::new(
        MonetaConfig {
            account_id: ACCOUNT.into(),
            integrity_code: SecretString::from(CODE),
            api_username: "contract".into(),
            api_password: SecretString::from("contract-api-password"),
            payment_password: SecretString::from("contract-payment-password"),
            base_url,
            test_mode: true,
        },
        // Short, so that a dropped answer becomes "unknown" quickly.
        oplata_providers::http_client(Duration::from_secs(2)).unwrap(),
    )
    .unwrap()
}

impl MonetaHarness {
    fn operation(&self, order_id: &str) -> u64 {
        self.sandbox
            .operation_by_transaction(order_id)
            .expect("the form was opened")
            .id
    }
}

#[async_trait]
impl Harness for MonetaHarness {
    const AMOUNT_PARAM: &'static str = "MNT_AMOUNT";
    const ORDER_PARAM: &'static str = "MNT_TRANSACTION_ID";
    const SIGNATURE_PARAM: &'static str = "MNT_SIGNATURE";

    async fn start() -> Self {
        let (shop_listener, shop_base) = harness::reserve().await;
        let (sandbox_listener, sandbox_base) = harness::reserve().await;
        let sandbox = MonetaSandbox::new(
            vec![SandboxAccount {
                account_id: ACCOUNT.into(),
                integrity_code: CODE.into(),
                api_username: "contract".into(),
                api_password: "contract-api-password".into(),
                payment_password: "contract-payment-password".into(),
                pay_url: shop_base.join("pay").unwrap(),
                check_url: None,
            }],
            DeliveryPolicy {
                retry_interval: Duration::from_millis(20),
                max_attempts: 5,
                browser_wait: Duration::from_secs(5),
            },
            &sandbox_base,
        );
        let router = sandbox.router();
        tokio::spawn(async move { axum::serve(sandbox_listener, router).await });
        let shop = Shop::default();
        let verifier = Arc::new(adapter(sandbox_base.clone()));
        let router = Router::new()
            .route("/pay", post(pay_url))
            .with_state((shop.clone(), verifier));
        tokio::spawn(async move { axum::serve(shop_listener, router).await });
        MonetaHarness {
            adapter: adapter(sandbox_base.clone()),
            sandbox_base,
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
        let id = self.operation(order_id);
        if pay {
            assert_eq!(
                self.sandbox.decide(id, "pay").await.unwrap(),
                FormStep::ThreeDs(id)
            );
            self.sandbox.submit_otp(id, DEMO_OTP).await.unwrap();
        } else {
            self.sandbox.decide(id, "decline").await.unwrap();
        }
    }

    async fn pay_without_three_ds(&self, order_id: &str) {
        self.sandbox
            .decide(self.operation(order_id), "no3ds")
            .await
            .unwrap();
    }

    fn set_next_charge(&self, behaviour: ChargeBehaviour) {
        self.sandbox.set_next_charge(behaviour);
    }

    fn set_api_mode(&self, mode: ApiMode) {
        self.sandbox.set_api_mode(mode);
    }

    fn charges_made(&self) -> u64 {
        self.sandbox.charges_made()
    }

    fn lose_notifications(&self) {
        self.sandbox.set_drop_notifications(true);
    }

    fn notification(&self, order_id: &str, amount: Amount, secret: &str) -> RawCallback {
        let amount = amount.to_string();
        let signature = wire::md5_hex(&[
            "", ACCOUNT, order_id, "9999", &amount, "RUB", "", "1", secret,
        ]);
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("MNT_ID", ACCOUNT)
            .append_pair("MNT_TRANSACTION_ID", order_id)
            .append_pair("MNT_OPERATION_ID", "9999")
            .append_pair("MNT_AMOUNT", &amount)
            .append_pair("MNT_CURRENCY_CODE", "RUB")
            .append_pair("MNT_SUBSCRIBER_ID", "")
            .append_pair("MNT_TEST_MODE", "1")
            .append_pair("MNT_SIGNATURE", &signature)
            .finish();
        RawCallback {
            query: String::new(),
            body: body.into_bytes(),
        }
    }

    fn secret(&self) -> &str {
        CODE
    }

    fn deliveries(&self, order_id: &str) -> (u32, bool) {
        let op = self.sandbox.operation_by_transaction(order_id).unwrap();
        (
            op.notification_attempts,
            op.status == wire::OperationStatus::Succeed,
        )
    }

    fn shop_base(&self) -> &Url {
        &self.shop_base
    }

    fn receipt_seen(&self, order_id: &str) -> Option<Vec<oplata_providers::receipt::ReadItem>> {
        self.sandbox.operation_by_transaction(order_id)?.receipt
    }
}

mod catalogue {
    crate::catalogue!(
        super::MonetaHarness,
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
            a_saved_card_charge_meets_a_three_ds_challenge,
            a_charge_retried_after_a_timeout_never_charges_twice,
            refunds_full_partial_repeated_and_over_the_remainder,
            a_refund_whose_answer_is_lost_or_unreadable_is_unknown_never_a_decline,
            a_card_without_three_ds_is_reported_as_such,
            the_cashbox_gets_the_receipt_and_refuses_a_wrong_one,
        ],
        skip: []
    );
}

/// The simulator refuses what the real MerchantAPI refuses (PROTOCOLS.md §3.7), so a wrong shape
/// in the adapter cannot pass the contract tests: a `Client` fault for each.
#[tokio::test]
async fn merchant_api_requests_of_another_shape_are_refused_with_a_client_fault() {
    let h = MonetaHarness::start().await;
    let http = oplata_providers::http_client(Duration::from_secs(5)).unwrap();
    let services = h.sandbox_base.join("services").unwrap();
    let call = |method: &'static str, body: serde_json::Value| {
        let (http, services) = (http.clone(), services.clone());
        async move {
            let envelope = wire::envelope("contract", "contract-api-password", method, body);
            let answer: serde_json::Value = http
                .post(services)
                .json(&envelope)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer
                .pointer("/Envelope/Body/fault/faultcode")
                .and_then(|c| c.as_str())
                .map(str::to_owned)
        }
    };

    for (case, method, body) in [
        (
            "an operation id wrapped in an object",
            "GetOperationDetailsById",
            serde_json::json!({"operationId": "9000001"}),
        ),
        (
            "a filter by MNT_TRANSACTION_ID",
            "FindOperationsList",
            serde_json::json!({"filter": {"MNT_TRANSACTION_ID": "1"}}),
        ),
        (
            "no accountId",
            "FindOperationsListByCTID",
            serde_json::json!({"clientTransaction": "1"}),
        ),
        (
            "accountId as text",
            "FindOperationsListByCTID",
            serde_json::json!({"accountId": ACCOUNT, "clientTransaction": "1"}),
        ),
    ] {
        assert_eq!(
            call(method, body).await.as_deref(),
            Some("Client"),
            "{case}"
        );
    }
    let account: u64 = ACCOUNT.parse().unwrap();
    assert_eq!(
        call(
            "FindOperationsListByCTID",
            serde_json::json!({"accountId": account, "clientTransaction": "1"})
        )
        .await,
        None,
        "the documented shape is answered"
    );
}

/// Moneta's documentation works the answer signature through with
/// `md5("200" + "54600817" + "FF790ABCD" + "QWERTY")`; the digest is coreutils' md5sum of it.
#[test]
fn the_answer_signature_matches_the_documented_worked_example() {
    let answer = wire::mnt_response("200", "54600817", "FF790ABCD", "QWERTY");
    assert!(
        answer
            .body
            .contains("<MNT_SIGNATURE>29807c8e5d82198b5c4360e6ec711cce</MNT_SIGNATURE>"),
        "{}",
        answer.body
    );
}

/// §3.4 and §3.9 from the acquirer's side: a Check answer that does not name the order's amount
/// and description stops the payment, and a Pay answer whose receipt does not add up is no
/// answer at all (the operation stays "notification not sent" and the notification comes again).
#[tokio::test]
async fn a_check_answer_without_amount_stops_the_payment_and_a_wrong_receipt_is_no_answer() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let (shop_listener, shop_base) = harness::reserve().await;
    let (sandbox_listener, sandbox_base) = harness::reserve().await;
    let sandbox = MonetaSandbox::new(
        vec![SandboxAccount {
            account_id: ACCOUNT.into(),
            integrity_code: CODE.into(),
            api_username: "contract".into(),
            api_password: "contract-api-password".into(),
            payment_password: "contract-payment-password".into(),
            pay_url: shop_base.join("pay").unwrap(),
            check_url: Some(shop_base.join("check").unwrap()),
        }],
        DeliveryPolicy {
            retry_interval: Duration::from_millis(20),
            max_attempts: 3,
            browser_wait: Duration::from_secs(2),
        },
        &sandbox_base,
    );
    let router = sandbox.router();
    tokio::spawn(async move { axum::serve(sandbox_listener, router).await });
    let names_amount = Arc::new(AtomicBool::new(false));
    let answer = |command: &'static str| {
        let names_amount = names_amount.clone();
        move |body: Bytes| async move {
            let raw = RawCallback {
                query: String::new(),
                body: body.to_vec(),
            };
            let notice = wire::PayNotice::parse(&raw).unwrap();
            let extras = if command == "check" {
                wire::MntExtras {
                    amount: names_amount
                        .load(Ordering::SeqCst)
                        .then(|| notice.amount.clone()),
                    description: Some("Штраф".into()),
                    attributes: Vec::new(),
                }
            } else {
                // A receipt for 1.00 against a 15.00 payment.
                let wrong = harness::receipt("1.00");
                wire::MntExtras {
                    attributes: vec![
                        ("INVENTORY".into(), wrong.moneta_inventory()),
                        ("CUSTOMER".into(), "buyer@example.ru".into()),
                    ],
                    ..wire::MntExtras::default()
                }
            };
            let code = if command == "check" { "402" } else { "200" };
            wire::mnt_response_with(code, ACCOUNT, &notice.transaction_id, CODE, &extras).body
        }
    };
    let shop = Router::new()
        .route("/check", post(answer("check")))
        .route("/pay", post(answer("pay")));
    tokio::spawn(async move { axum::serve(shop_listener, shop).await });
    let success = shop_base.join("success").unwrap().to_string();
    let request = oplata_providers::PaymentRequest {
        payment_ref: "ref",
        order_id: "951",
        amount: Amount::parse_api("15.00").unwrap(),
        description: "Штраф",
        email: None,
        success_url: &success,
        fail_url: &success,
        save_card: false,
        customer_ref: None,
        payer: None,
        receipt: None,
    };
    let (status, _) = harness::open_page(&adapter(sandbox_base.clone()), &request).await;
    assert_eq!(status, 200);
    let operation = sandbox.operation_by_transaction("951").unwrap().id;

    let stopped = sandbox.decide(operation, "no3ds").await;
    names_amount.store(true, Ordering::SeqCst);
    let paid = sandbox.decide(operation, "no3ds").await;

    assert!(
        matches!(&stopped, Err(message) if message.contains("MNT_AMOUNT")),
        "{stopped:?}"
    );
    assert!(paid.is_ok(), "{paid:?}");
    let operation = sandbox.operation(operation).unwrap();
    assert_eq!(operation.status, wire::OperationStatus::TakenInNotSent);
    assert!(
        operation
            .receipt_refusal
            .as_deref()
            .is_some_and(|why| why.contains("не равна сумме платежа")),
        "{:?}",
        operation.receipt_refusal
    );
    assert!(operation.receipt.is_none());
}
