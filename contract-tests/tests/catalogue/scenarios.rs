//! The scenarios, written once against [`Harness`].

use oplata_providers::{
    Amount, CallbackError, CallbackEvent, Capabilities, NextAction, PaymentRequest, RawCallback,
    StartOutcome, StatusOutcome,
};

use crate::harness::{Harness, follow, open_page};

fn amount(text: &str) -> Amount {
    Amount::parse_api(text).unwrap()
}

/// Starts a payment for `order_id` and opens its page as the customer's browser would.
async fn open<H: Harness>(h: &H, order_id: &str, sum: Amount) {
    let success = h.shop_base().join("success").unwrap().to_string();
    let fail = h.shop_base().join("fail").unwrap().to_string();
    let request = PaymentRequest {
        payment_ref: "ref",
        order_id,
        amount: sum,
        description: "Электроэнергия",
        email: Some("ivan@example.ru"),
        success_url: &success,
        fail_url: &fail,
    };
    let (status, html) = open_page(h.adapter(), &request).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains(&sum.to_string()),
        "the page shows the amount: {html}"
    );
}

fn successes(h: &impl Harness) -> Vec<oplata_providers::VerifiedCallback> {
    h.shop()
        .received()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|v| v.event == CallbackEvent::PaymentSucceeded)
        .collect()
}

pub async fn payment_succeeds<H: Harness>(h: &H) {
    open(h, "501", amount("10.00")).await;

    h.decide("501", true).await;

    let paid = successes(h);
    assert_eq!(paid.len(), 1, "{:?}", h.shop().received());
    assert_eq!(paid[0].order_id, "501");
    assert_eq!(Amount::from_decimal(paid[0].amount), Ok(amount("10.00")));
    if h.adapter().capabilities().status_query {
        assert_eq!(
            h.adapter().payment_status("501").await.unwrap(),
            StatusOutcome::Succeeded {
                amount: amount("10.00")
            }
        );
    }
}

pub async fn payment_declined<H: Harness>(h: &H) {
    open(h, "502", amount("10.00")).await;

    h.decide("502", false).await;

    assert!(successes(h).is_empty());
    if h.adapter().capabilities().status_query {
        assert!(matches!(
            h.adapter().payment_status("502").await.unwrap(),
            StatusOutcome::Failed(_)
        ));
    } else {
        // Without a status query the decline can only be learnt from a notification.
        let failed = h
            .shop()
            .received()
            .into_iter()
            .filter_map(Result::ok)
            .any(|v| matches!(v.event, CallbackEvent::PaymentFailed(_)));
        assert!(failed, "{:?}", h.shop().received());
    }
}

pub async fn customer_abandons<H: Harness>(h: &H) {
    open(h, "503", amount("10.00")).await;

    assert!(
        h.shop().received().is_empty(),
        "nothing is reported for an abandoned page"
    );
}

pub async fn status_query_reports_an_abandoned_payment_as_pending<H: Harness>(h: &H) {
    open(h, "504", amount("10.00")).await;

    assert_eq!(
        h.adapter().payment_status("504").await.unwrap(),
        StatusOutcome::Pending
    );
    assert_eq!(
        h.adapter().payment_status("999504").await.unwrap(),
        StatusOutcome::Pending
    );
}

pub async fn status_query_resolves_a_payment_whose_notification_was_lost<H: Harness>(h: &H) {
    h.lose_notifications();
    open(h, "505", amount("99.99")).await;

    h.decide("505", true).await;

    assert!(h.shop().received().is_empty());
    assert_eq!(
        h.adapter().payment_status("505").await.unwrap(),
        StatusOutcome::Succeeded {
            amount: amount("99.99")
        }
    );
}

pub async fn notification_is_redelivered_until_the_shop_acknowledges_it<H: Harness>(h: &H) {
    h.shop()
        .refuse_first
        .store(2, std::sync::atomic::Ordering::SeqCst);
    open(h, "506", amount("10.00")).await;

    h.decide("506", true).await;

    assert_eq!(h.deliveries("506"), (3, true));
    assert_eq!(h.shop().received().len(), 3);
}

pub async fn a_tampered_payment_request_is_refused_by_the_acquirer<H: Harness>(h: &H) {
    let request = PaymentRequest {
        payment_ref: "ref",
        order_id: "507",
        amount: amount("10.00"),
        description: "x",
        email: None,
        success_url: "http://127.0.0.1:9/success",
        fail_url: "http://127.0.0.1:9/fail",
    };
    let StartOutcome::RequiresAction(action) = h.adapter().start_payment(&request).await else {
        panic!("expected a next action");
    };
    let tampered = match action {
        NextAction::Redirect { url } => NextAction::Redirect {
            url: url.replace("10.00", "1.00"),
        },
        NextAction::FormPost { url, mut fields } => {
            for (name, value) in &mut fields {
                if name == "data" {
                    // Flip one character of the first encrypted item.
                    let first = value.remove(0);
                    value.insert(0, if first == 'A' { 'B' } else { 'A' });
                }
            }
            NextAction::FormPost { url, fields }
        }
    };

    let (status, html) = follow(&tampered).await;

    assert_eq!(status, 400, "{html}");
    assert!(html.contains("id=\"error\""), "{html}");
}

fn with_param(raw: &RawCallback, name: &str, value: Option<&str>, duplicate: bool) -> RawCallback {
    let rewrite = |text: &[u8]| {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(text) {
            match (k == name, value) {
                (true, Some(new)) if !duplicate => {
                    out.append_pair(&k, new);
                }
                (true, None) => {}
                (true, Some(new)) => {
                    out.append_pair(&k, &v);
                    out.append_pair(&k, new);
                }
                (false, _) => {
                    out.append_pair(&k, &v);
                }
            }
        }
        out.finish()
    };
    RawCallback {
        query: rewrite(raw.query.as_bytes()),
        body: rewrite(&raw.body).into_bytes(),
    }
    .normalized(raw)
}

trait Normalized {
    fn normalized(self, original: &RawCallback) -> RawCallback;
}

impl Normalized for RawCallback {
    /// Keeps the notification where it was (query or body).
    fn normalized(self, original: &RawCallback) -> RawCallback {
        RawCallback {
            query: if original.query.is_empty() {
                String::new()
            } else {
                self.query
            },
            body: if original.body.is_empty() {
                Vec::new()
            } else {
                self.body
            },
        }
    }
}

pub async fn forged_changed_truncated_or_duplicated_notifications_are_refused<H: Harness>(h: &H) {
    let good = h.notification("601", amount("10.00"), h.secret());
    let verified = h.adapter().verify_callback(&good).unwrap();
    assert_eq!(verified.order_id, "601");
    assert_eq!(Amount::from_decimal(verified.amount), Ok(amount("10.00")));

    let forged = h.notification("601", amount("10.00"), "not-the-secret");
    let changed_amount = with_param(&good, H::AMOUNT_PARAM, Some("1.00"), false);
    let changed_order = with_param(&good, H::ORDER_PARAM, Some("602"), false);
    let truncated = with_param(&good, H::SIGNATURE_PARAM, None, false);
    let duplicated = with_param(&good, H::AMOUNT_PARAM, Some("1.00"), true);

    for (case, raw, expected) in [
        ("forged", forged, Some(CallbackError::BadSignature)),
        (
            "changed amount",
            changed_amount,
            Some(CallbackError::BadSignature),
        ),
        (
            "changed order",
            changed_order,
            Some(CallbackError::BadSignature),
        ),
        ("truncated", truncated, None),
        ("duplicated", duplicated, None),
    ] {
        match (h.adapter().verify_callback(&raw), expected) {
            (Err(error), Some(expected)) => assert_eq!(error, expected, "{case}"),
            (Err(CallbackError::Malformed(_)), None) => {}
            (other, _) => panic!("{case}: {other:?}"),
        }
    }
}

/// The skips a harness declares must be exactly the scenarios its capabilities rule out.
pub fn check_skips(capabilities: Capabilities, declared: &[&str]) {
    let mut expected = crate::scenarios_needing(capabilities);
    let mut declared = declared.to_vec();
    expected.sort_unstable();
    declared.sort_unstable();
    assert_eq!(declared, expected);
}
