//! A payment through NetPay, end to end over HTTP: the form post to the hosted page, the
//! notification (a GET whose token covers the query in order) and the browser's return.

use oplata_providers::net_pay::wire;
use serde_json::Value;

use crate::helpers::*;

on_both_backends!(
    a_customer_pays_through_the_netpay_page_and_the_payment_succeeds,
    a_netpay_decline_notification_fails_the_payment,
    the_same_netpay_notification_100_times_at_once_moves_the_payment_once,
    forged_or_changed_netpay_notifications_change_nothing,
    a_refund_done_in_the_netpay_cabinet_is_flagged_for_a_person,
    a_return_before_the_notification_shows_processing_until_it_arrives,
);

const API_KEY: &str = oplata::config::DEMO_NETPAY_API_KEY;
const AUTH: &str = oplata::config::DEMO_NETPAY_AUTH;

fn water_payment() -> Value {
    let mut body = demo_payment_body();
    body["supplier_id"] = "demo-water".into();
    body["account_number"] = "00123456".into();
    body
}

/// Posts the `next_action` form as the browser would; returns the NetPay order id.
async fn open_netpay_page(app: &TestApp, payment: &Value) -> String {
    assert_eq!(payment["next_action"]["type"], "form_post");
    let url = payment["next_action"]["url"].as_str().unwrap();
    let fields = next_action_fields(payment);
    assert_eq!(fields.len(), 3, "exactly data, auth and expire");
    let page = app.http.post(url).form(&fields).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("1500.00"));
    let order_id = app
        .payment_record(payment["id"].as_str().unwrap())
        .await
        .acquirer_order_id;
    assert!(app.net_pay.order(AUTH, &order_id).is_some());
    order_id
}

async fn press(app: &TestApp, order_id: &str, action: &str) -> String {
    let answer = app
        .http
        .post(app.url("/sandbox/net_pay/billingService/sandbox/decide"))
        .form(&[("auth", AUTH), ("order_id", order_id), ("action", action)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    answer.headers()["location"].to_str().unwrap().to_owned()
}

fn notification_query(
    order_id: &str,
    payment_id: &str,
    status: &str,
    kind: &str,
    amount: &str,
    key: &str,
) -> String {
    let token = wire::notification_token(
        key,
        &[order_id, payment_id, AUTH, status, kind, amount, "000"],
    );
    form_urlencoded::Serializer::new(String::new())
        .append_pair("orderID", order_id)
        .append_pair("orderNumber", payment_id)
        .append_pair("auth", AUTH)
        .append_pair("status", status)
        .append_pair("transactionType", kind)
        .append_pair("amount", amount)
        .append_pair("error", "000")
        .append_pair("token", &token)
        .finish()
}

async fn notify(app: &TestApp, query: &str) -> String {
    app.http
        .get(format!(
            "{}/callbacks/net_pay/notification?{query}",
            app.base
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn a_customer_pays_through_the_netpay_page_and_the_payment_succeeds(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&water_payment()).await;
    assert_eq!(payment["acquirer"], "net_pay");
    let order_id = open_netpay_page(&app, &payment).await;

    let back = press(&app, &order_id, "pay").await;
    let page = app.http.get(&back).send().await.unwrap();

    assert!(page.text().await.unwrap().contains("Оплачено"));
    let id = payment["id"].as_str().unwrap();
    assert_eq!(app.payment_record(id).await.status, "succeeded");
    let order = app.net_pay.order(AUTH, &order_id).unwrap();
    assert!(order.acknowledged);
    // The receipt travelled encrypted in `cashbox_data` and the cashbox accepted it.
    let fiscal = order.receipt.expect("cashbox_data was sent and accepted");
    assert_eq!(fiscal[0].name, "Водоснабжение, лицевой счёт 00123456");
    assert_eq!(fiscal[0].sum.to_string(), "1500.00");
}

async fn a_netpay_decline_notification_fails_the_payment(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&water_payment()).await;
    let order_id = open_netpay_page(&app, &payment).await;

    let back = press(&app, &order_id, "decline").await;
    let page = app.http.get(&back).send().await.unwrap();

    let page = page.text().await.unwrap();
    assert!(page.contains("data-outcome=\"declined\""), "{page}");
    let record = app.payment_record(payment["id"].as_str().unwrap()).await;
    assert_eq!(record.status, "failed");
    assert_eq!(record.failure_code.as_deref(), Some("refused"));
}

async fn the_same_netpay_notification_100_times_at_once_moves_the_payment_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&water_payment()).await;
    let id = payment["id"].as_str().unwrap().to_owned();
    let order_id = app.payment_record(&id).await.acquirer_order_id;
    let query = notification_query(&order_id, &id, "APPROVED", "Sale", "1500.00", API_KEY);

    let answers = futures::future::join_all((0..100).map(|_| notify(&app, &query))).await;

    for answer in &answers {
        assert!(answer.contains("<status>1</status>"), "{answer}");
        assert!(
            answer.contains(&format!("<orderId>{order_id}</orderId>")),
            "{answer}"
        );
    }
    assert_eq!(app.payment_record(&id).await.status, "succeeded");
    let trail = app.store.payment_audit(id.parse().unwrap()).await.unwrap();
    assert_eq!(
        trail.iter().filter(|a| a.to_status == "succeeded").count(),
        1
    );
}

async fn forged_or_changed_netpay_notifications_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&water_payment()).await;
    let id = payment["id"].as_str().unwrap().to_owned();
    let order_id = app.payment_record(&id).await.acquirer_order_id;

    let forged = notification_query(&order_id, &id, "APPROVED", "Sale", "1500.00", "wrong-key");
    let changed = notification_query(&order_id, &id, "APPROVED", "Sale", "1500.00", API_KEY)
        .replace("amount=1500.00", "amount=1.00");
    let cheap = notification_query(&order_id, &id, "APPROVED", "Sale", "1.00", API_KEY);
    let unknown = notification_query("424242", &id, "APPROVED", "Sale", "1500.00", API_KEY);
    let reordered = {
        let good = notification_query(&order_id, &id, "APPROVED", "Sale", "1500.00", API_KEY);
        let mut parts: Vec<&str> = good.split('&').collect();
        parts.swap(3, 4);
        parts.join("&")
    };

    for (case, query) in [
        ("forged", forged),
        ("changed amount", changed),
        ("unknown order", unknown),
        ("reordered", reordered),
    ] {
        let answer = notify(&app, &query).await;
        assert!(answer.contains("<status>0</status>"), "{case}: {answer}");
    }
    assert_eq!(app.payment_record(&id).await.status, "requires_action");

    // Validly signed with another amount: accepted, not paid, in front of a person.
    let answer = notify(&app, &cheap).await;
    assert!(answer.contains("<status>1</status>"), "{answer}");
    let record = app.payment_record(&id).await;
    assert_eq!(record.status, "requires_action");
    let reason = record.review_reason.unwrap_or_default();
    assert!(
        reason.contains("1.00 RUB paid") && reason.contains("1500.00"),
        "{reason}"
    );
}

async fn a_refund_done_in_the_netpay_cabinet_is_flagged_for_a_person(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&water_payment()).await;
    let order_id = open_netpay_page(&app, &payment).await;
    press(&app, &order_id, "pay").await;

    app.net_pay
        .refund_in_cabinet(
            AUTH,
            &order_id,
            oplata_providers::Amount::parse_api("1500.00").unwrap(),
        )
        .await
        .unwrap();

    let record = app.payment_record(payment["id"].as_str().unwrap()).await;
    assert_eq!(record.status, "succeeded");
    assert!(record.review_reason.unwrap().contains("refund of 1500.00"));
    assert!(app.net_pay.order(AUTH, &order_id).unwrap().acknowledged);
}

async fn a_return_before_the_notification_shows_processing_until_it_arrives(backend: Backend) {
    let app = spawn_app(backend).await;
    app.net_pay.set_drop_notifications(true);
    let payment = app.create_payment(&water_payment()).await;
    let id = payment["id"].as_str().unwrap().to_owned();
    let order_id = open_netpay_page(&app, &payment).await;

    let back = press(&app, &order_id, "pay").await;
    let early = app
        .http
        .get(&back)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(early.contains("data-outcome=\"checking\""), "{early}");
    assert!(early.contains("http-equiv=\"refresh\""), "{early}");
    assert_eq!(app.payment_record(&id).await.status, "requires_action");
    // The same return typed by someone else, without oplata's proof (or with another order's),
    // shows nothing of the payment.
    let proof = param(&query_params(&back), "proof");
    for forged in [
        back.split("&proof=").next().unwrap().to_owned(),
        back.replace(&proof, &"0".repeat(proof.len())),
    ] {
        let page = app
            .http
            .get(&forged)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("Вы вернулись со страницы оплаты"), "{page}");
        assert!(
            !page.contains("1500") && !page.contains("00123456"),
            "{page}"
        );
    }
    let answer = notify(
        &app,
        &notification_query(&order_id, &id, "APPROVED", "Sale", "1500.00", API_KEY),
    )
    .await;
    let late = app
        .http
        .get(&back)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert!(answer.contains("<status>1</status>"));
    assert!(late.contains("Оплачено"), "{late}");
    assert_eq!(app.payment_record(&id).await.status, "succeeded");
}
