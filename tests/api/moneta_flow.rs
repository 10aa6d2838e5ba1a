//! A payment through the Moneta-style acquirer, end to end over HTTP: the Assistant form, its
//! 3-D Secure code page, the Pay URL notification with its signed XML answer, the Check URL, and
//! rule 7 (no 3-D Secure, no payment).

use oplata_providers::moneta::sandbox::{ApiMode, DEMO_OTP};
use oplata_providers::moneta::wire;
use serde_json::Value;

use crate::helpers::*;

on_both_backends!(
    a_customer_pays_through_the_moneta_form_with_a_three_ds_code,
    a_wrong_three_ds_code_fails_the_payment,
    a_payment_without_three_ds_fails_and_its_money_goes_back,
    the_check_url_says_whether_the_order_may_be_paid,
    the_same_pay_notification_100_times_at_once_moves_the_payment_once,
    forged_or_changed_pay_notifications_change_nothing,
    a_notification_is_not_accepted_until_the_acquirer_can_be_asked,
    a_signed_notification_is_bound_to_its_own_paid_operation_and_currency,
);

const ACCOUNT: &str = oplata::config::DEMO_MONETA_ACCOUNT;
const CODE: &str = oplata::config::DEMO_MONETA_CODE;

fn fine_payment() -> Value {
    let mut body = demo_payment_body();
    body["supplier_id"] = "demo-gibdd".into();
    body["account_number"] = "18810177230000012345".into();
    body
}

/// Posts the form as the browser would; returns the simulator's operation id.
async fn open_form(app: &TestApp, payment: &Value) -> u64 {
    assert_eq!(payment["next_action"]["type"], "form_post");
    let url = payment["next_action"]["url"].as_str().unwrap();
    let fields = next_action_fields(payment);
    let page = app.http.post(url).form(&fields).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("1500.00"));
    let order_id = app
        .payment_record(payment["id"].as_str().unwrap())
        .await
        .acquirer_order_id;
    app.moneta.operation_by_transaction(&order_id).unwrap().id
}

async fn post_form(app: &TestApp, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/sandbox/moneta/{path}")))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// Presses "pay" and types `code` on the 3-D Secure page; returns where the browser is sent.
async fn pay_with_code(app: &TestApp, operation: u64, code: &str) -> String {
    let operation = operation.to_string();
    let three_ds = post_form(
        app,
        "assistant/decide",
        &[("operation", &operation), ("action", "pay")],
    )
    .await;
    assert!(
        three_ds
            .text()
            .await
            .unwrap()
            .contains("Введите одноразовый код")
    );
    let done = post_form(
        app,
        "assistant/3ds",
        &[("operation", &operation), ("code", code)],
    )
    .await;
    assert_eq!(done.status(), 303);
    done.headers()["location"].to_str().unwrap().to_owned()
}

fn pay_notification(
    order_id: &str,
    operation: &str,
    amount: &str,
    payment_id: &str,
    code: &str,
    command: Option<&str>,
) -> String {
    pay_notification_in(
        "RUB", order_id, operation, amount, payment_id, code, command,
    )
}

fn pay_notification_in(
    currency: &str,
    order_id: &str,
    operation: &str,
    amount: &str,
    payment_id: &str,
    code: &str,
    command: Option<&str>,
) -> String {
    let signature = wire::md5_hex(&[
        command.unwrap_or(""),
        ACCOUNT,
        order_id,
        operation,
        amount,
        currency,
        "",
        "1",
        code,
    ]);
    let mut form = form_urlencoded::Serializer::new(String::new());
    if let Some(command) = command {
        form.append_pair("MNT_COMMAND", command);
    }
    form.append_pair("MNT_ID", ACCOUNT)
        .append_pair("MNT_TRANSACTION_ID", order_id)
        .append_pair("MNT_OPERATION_ID", operation)
        .append_pair("MNT_AMOUNT", amount)
        .append_pair("MNT_CURRENCY_CODE", currency)
        .append_pair("MNT_SUBSCRIBER_ID", "")
        .append_pair("MNT_TEST_MODE", "1")
        .append_pair("MNT_SIGNATURE", &signature)
        .append_pair("MNT_CUSTOM1", payment_id)
        .finish()
}

async fn post_callback(app: &TestApp, path: &str, body: String) -> (u16, String) {
    let response = app
        .http
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn a_customer_pays_through_the_moneta_form_with_a_three_ds_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&fine_payment()).await;
    assert_eq!(payment["acquirer"], "moneta");
    let operation = open_form(&app, &payment).await;

    let back = pay_with_code(&app, operation, DEMO_OTP).await;
    let page = app
        .http
        .get(&back)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert!(page.contains("Оплачено"), "{page}");
    let record = app.payment_record(payment["id"].as_str().unwrap()).await;
    assert_eq!(record.status, "succeeded");
    assert_eq!(record.acquirer_operation_id, Some(operation.to_string()));
    let operation = app.moneta.operation(operation).unwrap();
    assert_eq!(
        operation.status,
        wire::OperationStatus::Succeed,
        "the signed answer was accepted"
    );
    // The Pay URL answer carried the receipt (INVENTORY, CUSTOMER), which the cashbox accepted.
    let fiscal = operation.receipt.expect("the answer carried the receipt");
    assert_eq!(fiscal[0].sum.to_string(), "1500.00");
    assert_eq!(operation.receipt_refusal, None);
}

async fn a_wrong_three_ds_code_fails_the_payment(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&fine_payment()).await;
    let operation = open_form(&app, &payment).await;

    let back = pay_with_code(&app, operation, "00000").await;
    let page = app
        .http
        .get(&back)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert!(page.contains("data-outcome=\"declined\""), "{page}");
    assert!(page.contains("Платёж отклонён"), "{page}");
    assert_eq!(
        app.payment_record(payment["id"].as_str().unwrap())
            .await
            .status,
        "failed"
    );
}

async fn a_payment_without_three_ds_fails_and_its_money_goes_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&fine_payment()).await;
    let operation = open_form(&app, &payment).await;

    let done = post_form(
        &app,
        "assistant/decide",
        &[("operation", &operation.to_string()), ("action", "no3ds")],
    )
    .await;

    assert_eq!(done.status(), 303);
    let back = done.headers()["location"].to_str().unwrap().to_owned();
    let page = app
        .http
        .get(&back)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let record = app.payment_record(payment["id"].as_str().unwrap()).await;
    assert_eq!(record.status, "failed");
    assert_eq!(
        record.failure_code.as_deref(),
        Some("paid_without_three_ds")
    );
    // The card was debited and refunded: the customer is not told that nothing was taken.
    assert!(
        page.contains("data-outcome=\"canceled_and_refunded\""),
        "{page}"
    );
    assert!(!page.contains("не списаны"), "{page}");
    assert!(page.contains("вернётся на карту"), "{page}");
    assert!(record.review_reason.unwrap().contains("refunded in full"));
    assert_eq!(app.moneta.operation(operation).unwrap().refunded, 150_000);
    // The desk lists the automatic refund with the others and says in Russian what happened.
    let app = crate::desk::add_operator(app).await;
    let desk = crate::desk::browser();
    crate::desk::sign_in(&app, &desk, crate::desk::PASSWORD).await;
    let page = desk
        .get(app.url(&format!(
            "/desk/payments/{}",
            payment["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("class=\"automatic-refund\""), "{page}");
    assert!(page.contains("выполнен (возврат эквайера"), "{page}");
    assert!(page.contains("1500.00 ₽"), "{page}");
    assert!(
        page.contains("платёж прошёл без 3-D Secure: он отменён, деньги возвращены полностью"),
        "{page}"
    );
}

async fn the_check_url_says_whether_the_order_may_be_paid(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&fine_payment()).await;
    let id = payment["id"].as_str().unwrap().to_owned();
    let order_id = app.payment_record(&id).await.acquirer_order_id;

    let (_, before) = post_callback(
        &app,
        "/callbacks/moneta/check",
        pay_notification(&order_id, "", "1500.00", &id, CODE, Some("CHECK")),
    )
    .await;
    let (_, wrong_amount) = post_callback(
        &app,
        "/callbacks/moneta/check",
        pay_notification(&order_id, "", "1.00", &id, CODE, Some("CHECK")),
    )
    .await;
    post_callback(
        &app,
        "/callbacks/moneta/pay",
        pay_notification(&order_id, "1", "1500.00", &id, CODE, None),
    )
    .await;

    assert_eq!(
        wire::read_mnt_response(&before, ACCOUNT, &order_id, CODE).as_deref(),
        Some("402"),
        "{before}"
    );
    assert_eq!(
        wire::read_mnt_response(&wrong_amount, ACCOUNT, &order_id, CODE).as_deref(),
        Some("500")
    );
    // §3.4: the Check answer names the order's own amount and description, even when it
    // refuses another amount.
    for answer in [&before, &wrong_amount] {
        let read = wire::read_mnt_answer(answer, ACCOUNT, &order_id, CODE).unwrap();
        assert_eq!(read.amount.as_deref(), Some("1500.00"), "{answer}");
        assert_eq!(
            read.description.as_deref(),
            Some("Электроэнергия, октябрь 2026")
        );
    }
    assert_eq!(
        app.payment_record(&id).await.status,
        "requires_action",
        "operation 1 is unknown to the acquirer"
    );
}

async fn the_same_pay_notification_100_times_at_once_moves_the_payment_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&fine_payment()).await;
    let id = payment["id"].as_str().unwrap().to_owned();
    let operation = open_form(&app, &payment).await;
    app.moneta.set_drop_notifications(true);
    pay_with_code(&app, operation, DEMO_OTP).await;
    let order_id = app.payment_record(&id).await.acquirer_order_id;
    let body = pay_notification(
        &order_id,
        &operation.to_string(),
        "1500.00",
        &id,
        CODE,
        None,
    );

    let answers = futures::future::join_all(
        (0..100).map(|_| post_callback(&app, "/callbacks/moneta/pay", body.clone())),
    )
    .await;

    for (status, answer) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(
            wire::read_mnt_response(answer, ACCOUNT, &order_id, CODE).as_deref(),
            Some("200"),
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

async fn forged_or_changed_pay_notifications_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&fine_payment()).await;
    let id = payment["id"].as_str().unwrap().to_owned();
    let operation = open_form(&app, &payment).await;
    app.moneta.set_drop_notifications(true);
    pay_with_code(&app, operation, DEMO_OTP).await;
    let order_id = app.payment_record(&id).await.acquirer_order_id;
    let op = operation.to_string();

    for (case, body) in [
        (
            "forged",
            pay_notification(&order_id, &op, "1500.00", &id, "not-the-code", None),
        ),
        (
            "changed amount",
            pay_notification(&order_id, &op, "1500.00", &id, CODE, None)
                .replace("MNT_AMOUNT=1500.00", "MNT_AMOUNT=1.00"),
        ),
        (
            "unknown order",
            pay_notification("777777", &op, "1500.00", &id, CODE, None),
        ),
    ] {
        let (status, answer) = post_callback(&app, "/callbacks/moneta/pay", body).await;
        assert_eq!((status, answer.as_str()), (400, "FAIL"), "{case}");
    }
    assert_eq!(app.payment_record(&id).await.status, "requires_action");

    // Validly signed with another amount: accepted, not paid, in front of a person.
    let (status, _) = post_callback(
        &app,
        "/callbacks/moneta/pay",
        pay_notification(&order_id, &op, "1.00", &id, CODE, None),
    )
    .await;
    assert_eq!(status, 200);
    let record = app.payment_record(&id).await;
    assert_eq!(record.status, "requires_action");
    let reason = record.review_reason.unwrap_or_default();
    assert!(
        reason.contains("1.00 RUB paid") && reason.contains("1500.00"),
        "{reason}"
    );
}

async fn a_notification_is_not_accepted_until_the_acquirer_can_be_asked(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&fine_payment()).await;
    let id = payment["id"].as_str().unwrap().to_owned();
    let operation = open_form(&app, &payment).await;
    app.moneta.set_drop_notifications(true);
    pay_with_code(&app, operation, DEMO_OTP).await;
    let order_id = app.payment_record(&id).await.acquirer_order_id;
    let body = pay_notification(
        &order_id,
        &operation.to_string(),
        "1500.00",
        &id,
        CODE,
        None,
    );

    app.moneta.set_api_mode(ApiMode::ServerError);
    let (status, _) = post_callback(&app, "/callbacks/moneta/pay", body.clone()).await;
    assert_eq!(status, 500, "the acquirer will deliver it again");
    assert_eq!(app.payment_record(&id).await.status, "requires_action");
    app.moneta.set_api_mode(ApiMode::Normal);
    let (status, _) = post_callback(&app, "/callbacks/moneta/pay", body).await;

    assert_eq!(status, 200);
    assert_eq!(app.payment_record(&id).await.status, "succeeded");
}

async fn a_signed_notification_is_bound_to_its_own_paid_operation_and_currency(backend: Backend) {
    let app = spawn_app(backend).await;
    app.moneta.set_drop_notifications(true);
    let unpaid = app.create_payment(&fine_payment()).await;
    let unpaid_id = unpaid["id"].as_str().unwrap().to_owned();
    let unpaid_operation = open_form(&app, &unpaid).await;
    let paid = app.create_payment(&fine_payment()).await;
    let paid_operation = open_form(&app, &paid).await;
    pay_with_code(&app, paid_operation, DEMO_OTP).await;
    let order_id = app.payment_record(&unpaid_id).await.acquirer_order_id;
    let notify = |currency: &'static str, operation: u64| {
        let (app, order_id, id) = (&app, order_id.clone(), unpaid_id.clone());
        async move {
            post_callback(
                app,
                "/callbacks/moneta/pay",
                pay_notification_in(
                    currency,
                    &order_id,
                    &operation.to_string(),
                    "1500.00",
                    &id,
                    CODE,
                    None,
                ),
            )
            .await
        }
    };

    let (another_order, _) = notify("RUB", paid_operation).await;
    let (in_progress, _) = notify("RUB", unpaid_operation).await;

    assert_eq!(
        another_order, 400,
        "another order's operation proves nothing"
    );
    assert_eq!(
        in_progress, 500,
        "not finished at the acquirer: delivered again later"
    );
    assert_eq!(
        app.payment_record(&unpaid_id).await.status,
        "requires_action"
    );
    assert!(
        app.moneta.refunds_of(unpaid_operation).is_empty(),
        "no refund of an operation that is not paid"
    );
    pay_with_code(&app, unpaid_operation, DEMO_OTP).await;
    let (dollars, _) = notify("USD", unpaid_operation).await;
    assert_eq!(dollars, 200, "validly signed: accepted so that it stops");
    let record = app.payment_record(&unpaid_id).await;
    assert_eq!(record.status, "requires_action", "not paid in roubles");
    assert!(
        record.review_reason.unwrap_or_default().contains("USD"),
        "in front of a person"
    );
    let (roubles, _) = notify("RUB", unpaid_operation).await;
    assert_eq!(roubles, 200);
    assert_eq!(app.payment_record(&unpaid_id).await.status, "succeeded");
}
