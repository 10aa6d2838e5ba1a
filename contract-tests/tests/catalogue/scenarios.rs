//! The scenarios, written once against [`Harness`].

use oplata_providers::moneta::sandbox::{ApiMode, ChargeBehaviour};
use oplata_providers::{
    Amount, CallbackError, CallbackEvent, Capabilities, ChargeOutcome, NextAction, PaymentRequest,
    RawCallback, RecurringCharge, RefundOutcome, RefundRequest, StartOutcome, StatusOutcome,
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
        save_card: false,
        customer_ref: None,
        payer: None,
        receipt: None,
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
    // An order the acquirer never saw (the customer never came, or a charge never arrived) is
    // "not found", which past a deadline means it never happened: never "pending" for ever.
    assert_eq!(
        h.adapter().payment_status("999504").await.unwrap(),
        StatusOutcome::NotFound
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
        save_card: false,
        customer_ref: None,
        payer: None,
        receipt: None,
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
                if value == "10.00" {
                    // The amount travels in the clear: lower it.
                    *value = "1.00".into();
                } else if name == "data" {
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

/// Pays a new order with 3-D Secure and a request to save the card; returns the operation id
/// from the notification and the token from the operation's details.
async fn bind_card<H: Harness>(h: &H, order_id: &str) -> (String, secrecy::SecretString) {
    let success = h.shop_base().join("success").unwrap().to_string();
    let request = PaymentRequest {
        payment_ref: "ref",
        order_id,
        amount: amount("10.00"),
        description: "binding",
        email: None,
        success_url: &success,
        fail_url: &success,
        save_card: true,
        customer_ref: Some("user-42"),
        payer: None,
        receipt: None,
    };
    let (status, _) = open_page(h.adapter(), &request).await;
    assert_eq!(status, 200);
    h.decide(order_id, true).await;
    let operation_id = h
        .shop()
        .received()
        .into_iter()
        .filter_map(Result::ok)
        .find(|v| v.order_id == order_id)
        .map(|v| v.operation_id.unwrap_or(v.order_id))
        .expect("a notification for the binding payment");
    let details = h.adapter().operation_details(&operation_id).await.unwrap();
    assert_ne!(details.three_ds_passed, Some(false));
    assert!(details.masked_card.is_some_and(|c| c.contains("******")));
    (
        operation_id,
        details.token.expect("a binding payment yields a token"),
    )
}

fn charge<'a>(
    attempt: &'a str,
    token: &'a secrecy::SecretString,
    term_url: &'a str,
) -> RecurringCharge<'a> {
    RecurringCharge {
        attempt_id: attempt,
        payment_ref: "ref",
        order_id: attempt,
        amount: amount("25.50"),
        description: "Электроэнергия",
        token,
        three_ds_return_url: term_url,
        receipt: None,
    }
}

pub async fn a_saved_card_is_charged_without_the_customer<H: Harness>(h: &H) {
    let (_, token) = bind_card(h, "701").await;
    let before = h.charges_made();

    let outcome = h
        .adapter()
        .charge_saved_card(&charge("7011", &token, "http://127.0.0.1:9/3ds"))
        .await
        .unwrap();

    match outcome {
        ChargeOutcome::Succeeded { .. } => {}
        // Accepted now, settled by the notification and the status query.
        ChargeOutcome::Pending { operation_id } => {
            assert_eq!(
                h.adapter().payment_status(&operation_id).await.unwrap(),
                StatusOutcome::Succeeded {
                    amount: amount("25.50")
                }
            );
            wait_for_success(h, &operation_id).await;
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.charges_made(), before + 1);
}

pub async fn a_saved_card_charge_can_be_declined<H: Harness>(h: &H) {
    let (_, token) = bind_card(h, "702").await;
    h.set_next_charge(ChargeBehaviour::InsufficientFunds);
    let before = h.charges_made();

    let outcome = h
        .adapter()
        .charge_saved_card(&charge("7021", &token, "http://127.0.0.1:9/3ds"))
        .await
        .unwrap();

    assert!(matches!(outcome, ChargeOutcome::Declined(_)), "{outcome:?}");
    assert_eq!(h.charges_made(), before, "nothing was debited");
}

pub async fn a_saved_card_charge_meets_a_three_ds_challenge<H: Harness>(h: &H) {
    let (_, token) = bind_card(h, "703").await;
    h.set_next_charge(ChargeBehaviour::Challenge);
    let before = h.charges_made();

    let outcome = h
        .adapter()
        .charge_saved_card(&charge("7031", &token, "http://127.0.0.1:9/3ds"))
        .await
        .unwrap();
    let ChargeOutcome::RequiresAction {
        operation_id,
        action,
    } = outcome
    else {
        panic!("expected a challenge, got {outcome:?}");
    };
    // The browser posts PaReq, MD and TermUrl to the ACS, the customer types the code, and the
    // ACS posts PaRes back to TermUrl.
    let NextAction::FormPost { url, fields } = &action else {
        panic!("{action:?}")
    };
    assert!(
        fields
            .iter()
            .any(|(k, v)| k == "TermUrl" && v == "http://127.0.0.1:9/3ds")
    );
    let (status, _) = follow(&action).await;
    assert_eq!(status, 200);
    let md = fields
        .iter()
        .find(|(k, _)| k == "MD")
        .map(|(_, v)| v.clone())
        .unwrap();
    let back = crate::harness::http()
        .post(format!("{url}/submit"))
        .form(&[
            ("md", md.as_str()),
            ("term_url", "http://127.0.0.1:9/3ds"),
            ("code", oplata_providers::moneta::sandbox::DEMO_OTP),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pares = back
        .split("name=\"PaRes\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    assert_eq!(
        h.charges_made(),
        before,
        "nothing is charged before the challenge is answered"
    );

    let completed = h
        .adapter()
        .complete_three_ds(&operation_id, &pares)
        .await
        .unwrap();

    assert!(
        matches!(completed, ChargeOutcome::Succeeded { .. }),
        "{completed:?}"
    );
    assert_eq!(h.charges_made(), before + 1);
    let failed = h
        .adapter()
        .complete_three_ds(&operation_id, "pares-failed")
        .await
        .unwrap();
    assert!(
        matches!(failed, ChargeOutcome::Declined(_)),
        "a finished operation cannot be confirmed again: {failed:?}"
    );
}

pub async fn a_charge_retried_after_a_timeout_never_charges_twice<H: Harness>(h: &H) {
    let (_, token) = bind_card(h, "704").await;
    let before = h.charges_made();
    h.set_api_mode(ApiMode::DropAfterCharging);

    let first = h
        .adapter()
        .charge_saved_card(&charge("7041", &token, "http://127.0.0.1:9/3ds"))
        .await
        .unwrap();
    assert!(matches!(first, ChargeOutcome::Unknown { .. }), "{first:?}");
    h.set_api_mode(ApiMode::Normal);
    let retried = h
        .adapter()
        .charge_saved_card(&charge("7041", &token, "http://127.0.0.1:9/3ds"))
        .await
        .unwrap();

    assert!(
        matches!(
            retried,
            ChargeOutcome::Succeeded { .. } | ChargeOutcome::Pending { .. }
        ),
        "{retried:?}"
    );
    assert_eq!(h.charges_made(), before + 1, "one debit for two requests");
    // Slower than the adapter's 2 s timeout, a 5xx, or garbage: never a guess, neither a
    // charge reported as done nor a decline (the acquirer may have charged): unknown, for the
    // status query to settle.
    for mode in [
        ApiMode::Slow(std::time::Duration::from_secs(3)),
        ApiMode::ServerError,
        ApiMode::ServerErrorAfterActing,
        ApiMode::Garbage,
        ApiMode::DropAfterActing,
    ] {
        h.set_api_mode(mode);
        let outcome = h
            .adapter()
            .charge_saved_card(&charge("7042", &token, "http://127.0.0.1:9/3ds"))
            .await
            .unwrap();
        assert!(
            matches!(outcome, ChargeOutcome::Unknown { .. }),
            "{mode:?}: {outcome:?}"
        );
    }
}

pub async fn refunds_full_partial_repeated_and_over_the_remainder<H: Harness>(h: &H) {
    let (operation_id, _) = bind_card(h, "705").await;
    let refund = |amount: Option<&'static str>, reference: &'static str| {
        let operation_id = operation_id.clone();
        async move {
            h.adapter()
                .refund(&RefundRequest {
                    operation_id: &operation_id,
                    refund_ref: reference,
                    amount: amount.map(crate::scenarios::amount),
                    reason: "overpaid",
                    receipt: None,
                })
                .await
                .unwrap()
        }
    };

    assert!(matches!(
        refund(Some("3.00"), "r1").await,
        RefundOutcome::Succeeded { .. }
    ));
    assert!(
        matches!(
            refund(Some("3.00"), "r2").await,
            RefundOutcome::Succeeded { .. }
        ),
        "a second partial refund"
    );
    assert!(
        matches!(refund(Some("8.00"), "r3").await, RefundOutcome::Declined(_)),
        "over the remainder (4.00 left)"
    );
    assert!(
        matches!(refund(None, "r4").await, RefundOutcome::Succeeded { .. }),
        "the rest"
    );
    assert!(
        matches!(refund(Some("0.01"), "r5").await, RefundOutcome::Declined(_)),
        "nothing left"
    );
}

pub async fn a_refund_whose_answer_is_lost_or_unreadable_is_unknown_never_a_decline<H: Harness>(
    h: &H,
) {
    let (operation_id, _) = bind_card(h, "706").await;
    for (i, mode) in [
        ApiMode::Slow(std::time::Duration::from_secs(3)),
        ApiMode::ServerError,
        ApiMode::ServerErrorAfterActing,
        ApiMode::Garbage,
        ApiMode::DropAfterActing,
    ]
    .into_iter()
    .enumerate()
    {
        h.set_api_mode(mode);
        let reference = format!("lost-{i}");
        let outcome = h
            .adapter()
            .refund(&RefundRequest {
                operation_id: &operation_id,
                refund_ref: &reference,
                amount: Some(amount("0.50")),
                reason: "overpaid",
                receipt: None,
            })
            .await
            .unwrap();
        assert!(
            matches!(outcome, RefundOutcome::Unknown { .. }),
            "{mode:?}: the money may have gone back, so it is unknown: {outcome:?}"
        );
    }
    h.set_api_mode(ApiMode::Normal);
}

pub async fn a_card_without_three_ds_is_reported_as_such<H: Harness>(h: &H) {
    open(h, "706", amount("10.00")).await;

    h.pay_without_three_ds("706").await;

    let operation_id = h
        .shop()
        .received()
        .into_iter()
        .filter_map(Result::ok)
        .find_map(|v| v.operation_id)
        .expect("a notification with the operation");
    let details = h.adapter().operation_details(&operation_id).await.unwrap();
    assert_eq!(details.three_ds_passed, Some(false));
}

/// Waits (briefly) for the acquirer's notification that settles `order_id`.
async fn wait_for_success<H: Harness>(h: &H, order_id: &str) {
    for _ in 0..100 {
        if successes(h).iter().any(|v| v.order_id == order_id) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!(
        "no notification settled {order_id}: {:?}",
        h.shop().received()
    );
}

/// The skips a harness declares must be exactly the scenarios its capabilities rule out.
pub fn check_skips(capabilities: Capabilities, declared: &[&str]) {
    let mut expected = crate::scenarios_needing(capabilities);
    let mut declared = declared.to_vec();
    expected.sort_unstable();
    declared.sort_unstable();
    assert_eq!(declared, expected);
}

/// 54-FZ: the receipt reaches the acquirer's cashbox in the acquirer's own format and the
/// cashbox accepts it; where it travels with the payment request, one whose lines do not add
/// up to the amount is refused before the customer can pay.
pub async fn the_cashbox_gets_the_receipt_and_refuses_a_wrong_one<H: Harness>(h: &H) {
    let success = h.shop_base().join("success").unwrap().to_string();
    let right = crate::harness::receipt("15.00");
    let request = |order_id, receipt| PaymentRequest {
        payment_ref: "ref",
        order_id,
        amount: amount("15.00"),
        description: "Электроэнергия",
        email: Some("buyer@example.ru"),
        success_url: &success,
        fail_url: &success,
        save_card: false,
        customer_ref: None,
        payer: None,
        receipt,
    };
    let (status, html) = open_page(h.adapter(), &request("801", Some(&right))).await;
    assert_eq!(status, 200, "{html}");
    h.decide("801", true).await;
    let mut seen = None;
    for _ in 0..100 {
        seen = h.receipt_seen("801");
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let seen = seen.expect("the cashbox got the receipt");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].sum, amount("15.00"));
    assert_eq!(seen[0].name, "Электроэнергия, лицевой счёт 1234567890");

    if h.adapter().capabilities().receipts == oplata_providers::ReceiptChannel::WithPaymentRequest {
        assert!(
            html.contains("id=\"receipt\""),
            "the page shows the receipt: {html}"
        );
        let wrong = crate::harness::receipt("14.99");
        let (status, html) = open_page(h.adapter(), &request("802", Some(&wrong))).await;
        assert_eq!(status, 400, "{html}");
        assert!(html.contains("Чек отклонён"), "{html}");
    }
}
