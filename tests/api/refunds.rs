//! Refunds (rule 13) through the real service on both databases: concurrency, failures that
//! free the amount, full/partial/repeated refunds, NetPay's cabinet refunds, and the desk scope.

use oplata_providers::moneta::sandbox::DEMO_OTP;
use serde_json::{Value, json};

use crate::helpers::*;

on_both_backends!(
    fifty_concurrent_refunds_of_30_against_100_accept_exactly_3,
    a_failed_refund_frees_its_amount,
    partial_then_full_refunds_move_the_payment_and_nothing_more_can_be_refunded,
    a_netpay_refund_waits_for_the_cabinet_and_its_notification_settles_it,
    refunds_need_the_desk_scope_a_paid_payment_and_a_reason,
    an_operator_cannot_refund_more_than_the_daily_limit,
    a_robokassa_payment_is_refunded_through_the_refund_api,
    a_refund_still_processing_is_settled_by_the_refund_status_query,
);

/// A Moneta payment of `amount`, paid with 3-D Secure; returns its id and operation id.
async fn paid_fine(app: &TestApp, amount: &str) -> (String, u64) {
    let mut body = demo_payment_body();
    body["supplier_id"] = "demo-gibdd".into();
    body["account_number"] = "18810177230000012345".into();
    body["amount"] = amount.into();
    let payment = app.create_payment(&body).await;
    let fields = next_action_fields(&payment);
    app.http
        .post(payment["next_action"]["url"].as_str().unwrap())
        .form(&fields)
        .send()
        .await
        .unwrap();
    let id = payment["id"].as_str().unwrap().to_owned();
    let order = app.payment_record(&id).await.acquirer_order_id;
    let operation = app.moneta.operation_by_transaction(&order).unwrap().id;
    let form = |path: &str| format!("{}/sandbox/moneta/{path}", app.base);
    let op = operation.to_string();
    app.http
        .post(form("assistant/decide"))
        .form(&[("operation", op.as_str()), ("action", "pay")])
        .send()
        .await
        .unwrap();
    app.http
        .post(form("assistant/3ds"))
        .form(&[("operation", op.as_str()), ("code", DEMO_OTP)])
        .send()
        .await
        .unwrap();
    assert_eq!(app.payment_record(&id).await.status, "succeeded");
    (id, operation)
}

async fn refund(app: &TestApp, key: &str, payment_id: &str, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.url(&format!("/v1/payments/{payment_id}/refunds")))
        .bearer_auth(key)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or_default()
}

async fn fifty_concurrent_refunds_of_30_against_100_accept_exactly_3(backend: Backend) {
    let app = spawn_app(backend).await;
    let desk = app.desk_key_for("olga").await;
    let (payment, operation) = paid_fine(&app, "100.00").await;

    let answers = futures::future::join_all((0..50).map(|_| {
        refund(
            &app,
            &desk,
            &payment,
            json!({"amount": "30.00", "reason": "overpaid", "operator": "olga"}),
        )
    }))
    .await;

    let accepted: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    let refused = answers
        .iter()
        .filter(|(s, b)| *s == 422 && code(b) == "refund_exceeds_remaining")
        .count();
    assert_eq!(accepted.len(), 3, "{answers:?}");
    assert_eq!(refused, 47);
    assert!(accepted.iter().all(|r| r["status"] == "succeeded"));
    let at_acquirer = app.moneta.refunds_of(operation);
    assert_eq!(
        at_acquirer.len(),
        3,
        "the acquirer saw exactly three refunds"
    );
    assert_eq!(
        at_acquirer.iter().map(|r| r.amount.minor()).sum::<i64>(),
        9_000
    );
    assert_eq!(
        app.payment_record(&payment).await.status,
        "partially_refunded"
    );
}

async fn a_failed_refund_frees_its_amount(backend: Backend) {
    let app = spawn_app(backend).await;
    let desk = app.desk_key_for("olga").await;
    let (payment, _) = paid_fine(&app, "100.00").await;
    app.moneta.refuse_next_refund();

    let (status, failed) = refund(
        &app,
        &desk,
        &payment,
        json!({"reason": "duplicate", "operator": "olga"}),
    )
    .await;
    assert_eq!(status, 201, "{failed}");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["amount"], "100.00");
    let (status, again) = refund(
        &app,
        &desk,
        &payment,
        json!({"reason": "duplicate", "operator": "olga"}),
    )
    .await;

    assert_eq!(status, 201, "{again}");
    assert_eq!(again["status"], "succeeded");
    assert_eq!(app.payment_record(&payment).await.status, "refunded");
    let events: Vec<String> = app
        .store
        .outbox_for(payment.parse().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(
        events.contains(&"refund.failed".to_owned())
            && events.contains(&"refund.succeeded".to_owned()),
        "{events:?}"
    );
}

async fn partial_then_full_refunds_move_the_payment_and_nothing_more_can_be_refunded(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let desk = app.desk_key_for("olga").await;
    let (payment, _) = paid_fine(&app, "100.00").await;

    let (_, first) = refund(
        &app,
        &desk,
        &payment,
        json!({"amount": "40.00", "reason": "partial", "operator": "olga"}),
    )
    .await;
    assert_eq!(
        app.payment_record(&payment).await.status,
        "partially_refunded"
    );
    let (_, rest) = refund(
        &app,
        &desk,
        &payment,
        json!({"reason": "the rest", "operator": "olga"}),
    )
    .await;
    let (status, more) = refund(
        &app,
        &desk,
        &payment,
        json!({"amount": "0.01", "reason": "more", "operator": "olga"}),
    )
    .await;

    assert_eq!(rest["amount"], "60.00");
    assert_eq!(app.payment_record(&payment).await.status, "refunded");
    assert_eq!((status, code(&more)), (422, "payment_not_refundable"));
    let listed: Value = app
        .http
        .get(app.url(&format!("/v1/payments/{payment}/refunds")))
        .bearer_auth(&desk)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["refunds"].as_array().unwrap().len(), 2);
    let one: Value = app
        .http
        .get(app.url(&format!("/v1/refunds/{}", first["id"].as_str().unwrap())))
        .bearer_auth(&desk)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["reason"], "partial");
    assert_eq!(one["operator"], "olga");
}

async fn a_netpay_refund_waits_for_the_cabinet_and_its_notification_settles_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let desk = app.desk_key_for("olga").await;
    let mut body = demo_payment_body();
    body["supplier_id"] = "demo-water".into();
    body["account_number"] = "00123456".into();
    let payment = app.create_payment(&body).await;
    let fields = next_action_fields(&payment);
    app.http
        .post(payment["next_action"]["url"].as_str().unwrap())
        .form(&fields)
        .send()
        .await
        .unwrap();
    let id = payment["id"].as_str().unwrap().to_owned();
    let order = app.payment_record(&id).await.acquirer_order_id;
    app.net_pay
        .decide(oplata::config::DEMO_NETPAY_AUTH, &order, true)
        .await
        .unwrap();

    let (status, waiting) = refund(
        &app,
        &desk,
        &id,
        json!({"amount": "500.00", "reason": "overpaid", "operator": "olga"}),
    )
    .await;
    assert_eq!(status, 201, "{waiting}");
    assert_eq!(waiting["status"], "awaiting_acquirer");
    app.net_pay
        .refund_in_cabinet(
            oplata::config::DEMO_NETPAY_AUTH,
            &order,
            oplata_providers::Amount::parse_api("500.00").unwrap(),
        )
        .await
        .unwrap();

    let settled = app
        .store
        .get_refund(waiting["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(settled.status, "succeeded");
    let record = app.payment_record(&id).await;
    assert_eq!(record.status, "partially_refunded");
    assert!(
        record.review_reason.is_none(),
        "an expected refund needs no person"
    );
}

async fn refunds_need_the_desk_scope_a_paid_payment_and_a_reason(backend: Backend) {
    let app = spawn_app(backend).await;
    let desk = app.desk_key_for("olga").await;
    let (paid, _) = paid_fine(&app, "100.00").await;
    let unpaid = app.create_payment(&demo_payment_body()).await;
    let unpaid = unpaid["id"].as_str().unwrap();

    let (status, answer) = refund(
        &app,
        &app.portal_key,
        &paid,
        json!({"reason": "r", "operator": "olga"}),
    )
    .await;
    assert_eq!((status, code(&answer)), (403, "forbidden_scope"));
    let (status, answer) = refund(
        &app,
        &desk,
        unpaid,
        json!({"reason": "r", "operator": "olga"}),
    )
    .await;
    assert_eq!((status, code(&answer)), (422, "payment_not_refundable"));
    let (status, answer) = refund(&app, &desk, &paid, json!({"operator": "olga"})).await;
    assert_eq!((status, code(&answer)), (400, "missing_field"));
    let (status, answer) = refund(
        &app,
        &desk,
        &paid,
        json!({"reason": "  ", "operator": "olga"}),
    )
    .await;
    assert_eq!((status, code(&answer)), (422, "refund_reason_required"));
    let (status, answer) = refund(
        &app,
        &desk,
        &paid,
        json!({"amount": "1.001", "reason": "r", "operator": "olga"}),
    )
    .await;
    assert_eq!((status, code(&answer)), (422, "invalid_amount"));
    let (status, answer) = refund(
        &app,
        &desk,
        &uuid::Uuid::now_v7().to_string(),
        json!({"reason": "r", "operator": "olga"}),
    )
    .await;
    assert_eq!((status, code(&answer)), (404, "not_found"));
    assert_eq!(
        app.payment_record(&paid).await.status,
        "succeeded",
        "nothing was refunded"
    );
    let desk_reads: Value = app
        .http
        .get(app.url(&format!("/v1/payments/{paid}")))
        .bearer_auth(&desk)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        desk_reads["status"], "succeeded",
        "the desk may read any payment"
    );
}

async fn an_operator_cannot_refund_more_than_the_daily_limit(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.refunds.operator_daily_limit = "50.00".into()).await;
    let desk = app.desk_key_for("olga").await;
    let (payment, _) = paid_fine(&app, "100.00").await;

    let (first, _) = refund(
        &app,
        &desk,
        &payment,
        json!({"amount": "30.00", "reason": "r", "operator": "olga"}),
    )
    .await;
    let (status, over) = refund(
        &app,
        &desk,
        &payment,
        json!({"amount": "30.00", "reason": "r", "operator": "olga"}),
    )
    .await;
    // Writing another operator's name does not escape the limit: the key's holder is the
    // operator. Another operator's own key refunds on.
    let (claimed, claimed_answer) = refund(
        &app,
        &desk,
        &payment,
        json!({"amount": "30.00", "reason": "r", "operator": "ivan"}),
    )
    .await;
    let ivan = app.desk_key_for("ivan").await;
    let (other, _) = refund(
        &app,
        &ivan,
        &payment,
        json!({"amount": "30.00", "reason": "r"}),
    )
    .await;

    assert_eq!(first, 201);
    assert_eq!(
        (status, code(&over)),
        (422, "operator_daily_limit_exceeded")
    );
    assert_eq!((claimed, code(&claimed_answer)), (403, "operator_mismatch"));
    assert_eq!(other, 201, "the limit is per operator");
}

async fn a_robokassa_payment_is_refunded_through_the_refund_api(backend: Backend) {
    let app = spawn_app(backend).await;
    let desk = app.desk_key_for("olga").await;
    let (payment, inv_id) = app.paid_demo_payment().await;
    let id = payment["id"].as_str().unwrap().to_owned();

    let (status, partial) = refund(
        &app,
        &desk,
        &id,
        json!({"amount": "500.00", "reason": "overpaid", "operator": "olga"}),
    )
    .await;
    let (_, over) = refund(
        &app,
        &desk,
        &id,
        json!({"amount": "1000.01", "reason": "too much", "operator": "olga"}),
    )
    .await;

    assert_eq!(status, 201, "{partial}");
    assert_eq!(partial["status"], "succeeded");
    assert_eq!(code(&over), "refund_exceeds_remaining");
    assert_eq!(
        app.sandbox.refunded(DEMO_LOGIN, &inv_id),
        50_000,
        "Robokassa refunded exactly 500.00"
    );
    assert_eq!(app.payment_record(&id).await.status, "partially_refunded");
}

async fn a_refund_still_processing_is_settled_by_the_refund_status_query(backend: Backend) {
    let app = spawn_app(backend).await;
    let desk = app.desk_key_for("olga").await;
    let (payment, _) = app.paid_demo_payment().await;
    let id = payment["id"].as_str().unwrap().to_owned();
    app.sandbox.hold_refunds(true);
    let reconcile = |minutes: i64| {
        let services = app.services.clone();
        async move {
            let at = time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
            oplata::workers::reconciliation::reconcile_refunds(
                &services,
                at,
                std::time::Duration::from_secs(60),
            )
            .await
            .unwrap()
        }
    };

    let (_, pending) = refund(
        &app,
        &desk,
        &id,
        json!({"amount": "500.00", "reason": "overpaid", "operator": "olga"}),
    )
    .await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(reconcile(1).await, 1, "asked, still processing");
    app.sandbox.finish_refunds();
    reconcile(10).await;

    let settled = app
        .store
        .get_refund(pending["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(settled.status, "succeeded");
    assert_eq!(app.payment_record(&id).await.status, "partially_refunded");
    assert_eq!(
        reconcile(100).await,
        0,
        "a settled refund is not asked about again"
    );
}
