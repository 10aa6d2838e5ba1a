//! The Robokassa adapter against its simulator over real HTTP on 127.0.0.1, and against the
//! signature formulas of Robokassa's published examples.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use oplata_providers::robokassa::sandbox::{DeliveryPolicy, RobokassaSandbox, SandboxMerchant};
use oplata_providers::robokassa::{Robokassa, RobokassaConfig, wire};
use oplata_providers::signing::HashAlgorithm;
use oplata_providers::{
    Acquirer, Amount, CallbackError, CallbackEvent, DeclineCode, NextAction, PaymentRequest,
    RawCallback, StartOutcome, StatusOutcome, VerifiedCallback,
};
use secrecy::SecretString;
use url::Url;

const LOGIN: &str = "contract-shop";
const PASSWORD1: &str = "contract-password-1";
const PASSWORD2: &str = "contract-password-2";

/// The shop side of the test: verifies each ResultURL with the adapter and answers `OK{InvId}`,
/// after refusing the first `refuse_first` deliveries.
#[derive(Clone)]
struct Shop {
    adapter: Arc<Robokassa>,
    received: Arc<Mutex<Vec<Result<VerifiedCallback, CallbackError>>>>,
    refuse_first: Arc<AtomicU32>,
}

async fn result_url(State(shop): State<Shop>, body: Bytes) -> (axum::http::StatusCode, String) {
    let raw = RawCallback {
        query: String::new(),
        body: body.to_vec(),
    };
    let verified = shop.adapter.verify_callback(&raw);
    shop.received.lock().unwrap().push(verified.clone());
    if shop.refuse_first.load(Ordering::SeqCst) > 0 {
        shop.refuse_first.fetch_sub(1, Ordering::SeqCst);
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "busy".into());
    }
    match verified {
        Ok(v) => (axum::http::StatusCode::OK, format!("OK{}", v.order_id)),
        Err(e) => (axum::http::StatusCode::BAD_REQUEST, e.to_string()),
    }
}

struct Harness {
    adapter: Arc<Robokassa>,
    sandbox_base: Url,
    sandbox: RobokassaSandbox,
    shop: Shop,
    http: reqwest::Client,
}

async fn serve(router: Router) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Url::parse(&format!("http://{address}/")).unwrap()
}

async fn harness(hash: HashAlgorithm) -> Harness {
    // The shop must exist before the sandbox knows its ResultURL, and the adapter needs the
    // sandbox's address: bind the shop first, with the adapter filled in afterwards.
    let shop_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop_address = shop_listener.local_addr().unwrap();
    let shop_base = Url::parse(&format!("http://{shop_address}/")).unwrap();
    let sandbox = RobokassaSandbox::new(
        vec![SandboxMerchant {
            login: LOGIN.into(),
            password1: PASSWORD1.into(),
            password2: PASSWORD2.into(),
            hash,
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
    let sandbox_base = serve(sandbox.router()).await;
    let http = oplata_providers::http_client(Duration::from_secs(5)).unwrap();
    let adapter = Arc::new(
        Robokassa::new(
            RobokassaConfig {
                merchant_login: LOGIN.into(),
                password1: SecretString::from(PASSWORD1),
                password2: SecretString::from(PASSWORD2),
                hash,
                test_mode: true,
                base_url: sandbox_base.clone(),
            },
            http.clone(),
        )
        .unwrap(),
    );
    let shop = Shop {
        adapter: adapter.clone(),
        received: Arc::default(),
        refuse_first: Arc::default(),
    };
    let router = Router::new()
        .route("/result", post(result_url))
        .with_state(shop.clone());
    tokio::spawn(async move { axum::serve(shop_listener, router).await });
    Harness {
        adapter,
        sandbox_base,
        sandbox,
        shop,
        http,
    }
}

impl Harness {
    /// Starts a payment and opens its page as the customer's browser would; returns the InvId.
    async fn open_page(&self, order_id: &str, amount: &str) -> String {
        let outcome = self
            .adapter
            .start_payment(&PaymentRequest {
                payment_ref: "01a2f3c4-0000-7000-8000-000000000001",
                order_id,
                amount: Amount::parse_api(amount).unwrap(),
                description: "Электроэнергия",
                email: None,
            })
            .await;
        let StartOutcome::RequiresAction(NextAction::Redirect { url }) = outcome else {
            panic!("expected a redirect, got {outcome:?}");
        };
        let page = self.http.get(&url).send().await.unwrap();
        assert_eq!(page.status(), 200, "{}", page.text().await.unwrap());
        order_id.to_owned()
    }
}

#[tokio::test]
async fn payment_succeeds_notification_verifies_and_status_query_agrees() {
    for hash in [
        HashAlgorithm::Md5,
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha512,
    ] {
        let h = harness(hash).await;
        let inv = h.open_page("101", "10.00").await;

        let redirect = h.sandbox.decide(LOGIN, &inv, true).await.unwrap();

        assert!(redirect.path().ends_with("/success"));
        let received = h.shop.received.lock().unwrap().clone();
        assert_eq!(received.len(), 1, "{hash:?}");
        let notice = received[0].clone().unwrap();
        assert_eq!(notice.event, CallbackEvent::PaymentSucceeded);
        assert_eq!(
            notice.amount_text, "10.000000",
            "Robokassa's six decimals reach the verifier"
        );
        assert_eq!(Amount::from_decimal(notice.amount).unwrap().minor(), 1000);
        assert_eq!(
            h.adapter.payment_status(&inv).await.unwrap(),
            StatusOutcome::Succeeded {
                amount: Amount::from_minor(1000).unwrap()
            }
        );
    }
}

#[tokio::test]
async fn payment_declined_reports_failed_and_sends_no_notification() {
    let h = harness(HashAlgorithm::Md5).await;
    let inv = h.open_page("102", "10.00").await;

    let redirect = h.sandbox.decide(LOGIN, &inv, false).await.unwrap();

    assert!(redirect.path().ends_with("/fail"));
    assert!(h.shop.received.lock().unwrap().is_empty());
    match h.adapter.payment_status(&inv).await.unwrap() {
        StatusOutcome::Failed(decline) => assert_eq!(decline.code, DeclineCode::CanceledByCustomer),
        other => panic!("expected failed, got {other:?}"),
    }
}

#[tokio::test]
async fn customer_who_abandons_or_never_opens_the_page_leaves_the_payment_pending() {
    let h = harness(HashAlgorithm::Md5).await;
    let inv = h.open_page("103", "10.00").await;

    assert_eq!(
        h.adapter.payment_status(&inv).await.unwrap(),
        StatusOutcome::Pending
    );
    assert_eq!(
        h.adapter.payment_status("104").await.unwrap(),
        StatusOutcome::Pending
    );
}

#[tokio::test]
async fn status_query_resolves_a_payment_whose_notification_was_lost() {
    let h = harness(HashAlgorithm::Md5).await;
    h.sandbox.set_drop_result_notifications(true);
    let inv = h.open_page("105", "99.99").await;

    h.sandbox.decide(LOGIN, &inv, true).await.unwrap();

    assert!(h.shop.received.lock().unwrap().is_empty());
    assert_eq!(
        h.adapter.payment_status(&inv).await.unwrap(),
        StatusOutcome::Succeeded {
            amount: Amount::from_minor(9999).unwrap()
        }
    );
}

#[tokio::test]
async fn notification_is_redelivered_until_the_shop_answers_ok() {
    let h = harness(HashAlgorithm::Md5).await;
    h.shop.refuse_first.store(2, Ordering::SeqCst);
    let inv = h.open_page("106", "10.00").await;

    h.sandbox.decide(LOGIN, &inv, true).await.unwrap();

    let invoice = h.sandbox.invoice(LOGIN, &inv).unwrap();
    assert_eq!(invoice.result_attempts, 3);
    assert!(invoice.result_acknowledged);
}

#[tokio::test]
async fn a_tampered_payment_link_is_refused_by_the_acquirer_page() {
    let h = harness(HashAlgorithm::Md5).await;
    let outcome = h
        .adapter
        .start_payment(&PaymentRequest {
            payment_ref: "ref",
            order_id: "107",
            amount: Amount::parse_api("10.00").unwrap(),
            description: "x",
            email: None,
        })
        .await;
    let StartOutcome::RequiresAction(NextAction::Redirect { url }) = outcome else {
        panic!("{outcome:?}");
    };
    let tampered = url.replace("OutSum=10.00", "OutSum=1.00");

    let page = h.http.get(&tampered).send().await.unwrap();

    assert_eq!(page.status(), 400);
    assert!(page.text().await.unwrap().contains("Неверная подпись"));
    assert_eq!(h.sandbox.invoice_count(), 0);
}

#[tokio::test]
async fn forged_or_mangled_notifications_are_rejected_by_the_adapter() {
    let h = harness(HashAlgorithm::Md5).await;
    let good = wire::result_signature(HashAlgorithm::Md5, "10.000000", "5", PASSWORD2, &[]);
    let cases = [
        (
            format!("OutSum=10.000000&InvId=5&SignatureValue={good}"),
            None,
        ),
        (
            format!("OutSum=11.000000&InvId=5&SignatureValue={good}"),
            Some(CallbackError::BadSignature),
        ),
        (
            format!("OutSum=10.000000&InvId=6&SignatureValue={good}"),
            Some(CallbackError::BadSignature),
        ),
        (
            format!("OutSum=10.00&InvId=5&SignatureValue={good}"),
            Some(CallbackError::BadSignature),
        ),
        (
            format!("OutSum=10.000000&InvId=5&SignatureValue={good}&Shp_x=1"),
            Some(CallbackError::BadSignature),
        ),
    ];
    for (body, expected) in cases {
        let verdict = h.adapter.verify_callback(&RawCallback {
            query: String::new(),
            body: body.clone().into_bytes(),
        });
        match expected {
            None => assert!(verdict.is_ok(), "{body}"),
            Some(error) => assert_eq!(verdict.unwrap_err(), error, "{body}"),
        }
    }
    let duplicated = format!("OutSum=10.000000&OutSum=10.000000&InvId=5&SignatureValue={good}");
    assert!(matches!(
        h.adapter.verify_callback(&RawCallback {
            query: String::new(),
            body: duplicated.into_bytes()
        }),
        Err(CallbackError::Malformed(_))
    ));
}

#[tokio::test]
async fn status_query_with_wrong_credentials_or_no_acquirer_is_unknown_not_a_guess() {
    let h = harness(HashAlgorithm::Md5).await;
    let inv = h.open_page("108", "10.00").await;
    h.sandbox.decide(LOGIN, &inv, true).await.unwrap();
    let wrong_password = Robokassa::new(
        RobokassaConfig {
            merchant_login: LOGIN.into(),
            password1: SecretString::from(PASSWORD1),
            password2: SecretString::from("wrong"),
            hash: HashAlgorithm::Md5,
            test_mode: true,
            base_url: h.sandbox_base.clone(),
        },
        h.http.clone(),
    )
    .unwrap();
    let nobody_listening = Robokassa::new(
        RobokassaConfig {
            merchant_login: LOGIN.into(),
            password1: SecretString::from(PASSWORD1),
            password2: SecretString::from(PASSWORD2),
            hash: HashAlgorithm::Md5,
            test_mode: true,
            base_url: Url::parse("http://127.0.0.1:9/").unwrap(),
        },
        h.http.clone(),
    )
    .unwrap();

    assert!(matches!(
        wrong_password.payment_status(&inv).await.unwrap(),
        StatusOutcome::Unknown { .. }
    ));
    assert!(matches!(
        nobody_listening.payment_status(&inv).await.unwrap(),
        StatusOutcome::Unknown { .. }
    ));
}

/// Robokassa's published PHP demo (login `demo`, Password#1 `password_1`, sum `8.96`, InvId 0,
/// `Shp_item=1`) signs `md5("demo:8.96:0:password_1:Shp_item=1")`. The digests below were
/// computed with coreutils' md5sum/sha256sum, independently of this code.
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
