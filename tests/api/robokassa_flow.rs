//! A card payment through Robokassa, end to end over HTTP: the service, the simulator's pages,
//! the ResultURL notification and the browser's return.

use oplata_providers::robokassa::wire;
use oplata_providers::signing::HashAlgorithm;

use crate::helpers::*;

on_both_backends!(
    a_customer_pays_through_the_hosted_page_and_the_payment_succeeds,
    a_declined_payment_ends_failed_after_the_status_query,
    the_same_notification_delivered_100_times_at_once_moves_the_payment_once,
    forged_changed_or_unknown_notifications_change_nothing,
    the_browser_return_alone_never_marks_a_payment_paid,
    the_customer_is_sent_back_to_the_portal_with_the_payment_id,
    a_return_before_the_late_notification_settles_the_payment_once,
    repeated_returns_ask_the_acquirer_at_most_once_per_interval,
);

/// Opens the payment page as a browser would and returns the simulator's invoice number.
async fn open_payment_page(app: &TestApp, payment: &serde_json::Value) -> String {
    let url = payment["next_action"]["url"].as_str().unwrap();
    let page = app.http.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("1500.00"), "{html}");
    param(&query_params(url), "InvId")
}

async fn press(app: &TestApp, inv_id: &str, action: &str) -> String {
    let answer = app
        .http
        .post(app.url("/sandbox/robokassa/Merchant/Decide"))
        .form(&[
            ("login", DEMO_LOGIN),
            ("inv_id", inv_id),
            ("action", action),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    answer.headers()["location"].to_str().unwrap().to_owned()
}

fn signed_result(
    inv_id: &str,
    out_sum: &str,
    payment_id: &str,
    password2: &str,
) -> Vec<(&'static str, String)> {
    let shp = vec![("Shp_payment".to_owned(), payment_id.to_owned())];
    let signature = wire::result_signature(HashAlgorithm::Md5, out_sum, inv_id, password2, &shp);
    vec![
        ("OutSum", out_sum.to_owned()),
        ("InvId", inv_id.to_owned()),
        ("SignatureValue", signature),
        ("Shp_payment", payment_id.to_owned()),
    ]
}

/// A ResultURL validly signed with Password#2 over these `Shp_` parameters, whatever they are.
fn signed_with_shp(inv_id: &str, out_sum: &str, shp: &[(&str, &str)]) -> Vec<(String, String)> {
    let shp: Vec<(String, String)> = shp
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let signature =
        wire::result_signature(HashAlgorithm::Md5, out_sum, inv_id, DEMO_PASSWORD2, &shp);
    let mut form = vec![
        ("OutSum".to_owned(), out_sum.to_owned()),
        ("InvId".to_owned(), inv_id.to_owned()),
        ("SignatureValue".to_owned(), signature),
    ];
    form.extend(shp);
    form
}

async fn a_customer_pays_through_the_hosted_page_and_the_payment_succeeds(backend: Backend) {
    let app = spawn_app(backend).await;

    let payment = app.create_payment(&demo_payment_body()).await;
    assert_eq!(payment["status"], "requires_action");
    assert_eq!(payment["amount"], "1500.00");
    assert_eq!(payment["acquirer"], "robokassa");
    let url = payment["next_action"]["url"].as_str().unwrap();
    assert_eq!(payment["next_action"]["type"], "redirect");
    let params = query_params(url);
    // The demo supplier issues receipts: the URL-encoded `Receipt` is signed between InvId and
    // the password, and says what the customer bought, for the whole amount.
    let receipt = param(&params, "Receipt");
    assert_eq!(
        wire::decode_receipt(&receipt),
        "{\"sno\":\"osn\",\"items\":[{\"name\":\"Электроэнергия, лицевой счёт 1234567890\",\"quantity\":1,\"sum\":1500.00,\"tax\":\"none\",\"payment_method\":\"full_payment\",\"payment_object\":\"service\"}]}"
    );
    assert!(
        receipt.contains('+') && !receipt.contains(' '),
        "form-encoded: {receipt}"
    );
    let shp = format!("Shp_payment={}", payment["id"].as_str().unwrap());
    let expected_signature = HashAlgorithm::Md5.hex_digest(
        format!(
            "{DEMO_LOGIN}:1500.00:{}:{receipt}:{DEMO_PASSWORD1}:{shp}",
            param(&params, "InvId")
        )
        .as_bytes(),
    );
    assert_eq!(param(&params, "SignatureValue"), expected_signature);

    let inv_id = open_payment_page(&app, &payment).await;
    let success = press(&app, &inv_id, "pay").await;
    let result_page = app.http.get(&success).send().await.unwrap();

    assert_eq!(result_page.status(), 200);
    assert!(result_page.text().await.unwrap().contains("Оплачено"));
    let fiscal = app
        .sandbox
        .invoice(DEMO_LOGIN, &inv_id)
        .and_then(|invoice| invoice.receipt)
        .expect("the cashbox accepted the receipt");
    assert_eq!(fiscal.len(), 1);
    assert_eq!(fiscal[0].sum.to_string(), "1500.00");
    let id = payment["id"].as_str().unwrap();
    let read: serde_json::Value = app
        .get_payment(id, Some("user-42"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "succeeded");
    assert!(read["next_action"].is_null());
    let invoice = app.sandbox.invoice(DEMO_LOGIN, &inv_id).unwrap();
    assert!(
        invoice.result_acknowledged,
        "ResultURL was answered OK{{InvId}}"
    );
    let trail: Vec<String> = app
        .store
        .payment_audit(id.parse().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.to_status)
        .collect();
    assert_eq!(trail, ["created", "requires_action", "succeeded"]);
    let events: Vec<String> = app
        .store
        .outbox_for(id.parse().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        events,
        [
            "payment.created",
            "payment.requires_action",
            "payment.succeeded"
        ]
    );
}

async fn a_declined_payment_ends_failed_after_the_status_query(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&demo_payment_body()).await;
    let inv_id = open_payment_page(&app, &payment).await;

    let fail = press(&app, &inv_id, "decline").await;
    assert!(fail.contains("/return/robokassa/fail"), "{fail}");
    let page = app.http.get(&fail).send().await.unwrap();

    // Robokassa's FailURL carries no signature: anyone can type it with any InvId, so it shows
    // nothing of the payment and asks Robokassa nothing. The status query of reconciliation
    // finds the decline.
    let text = page.text().await.unwrap();
    assert!(text.contains("Вы вернулись со страницы оплаты"), "{text}");
    assert!(
        !text.contains("1500") && !text.contains("1234567890"),
        "{text}"
    );
    let id = payment["id"].as_str().unwrap();
    assert_eq!(app.payment_record(id).await.status, "requires_action");
    // Once the customer's time on the page is over (`ACTION_WINDOW`), the status query runs.
    app.reconcile_at(31).await;
    let read: serde_json::Value = app
        .get_payment(id, Some("user-42"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "failed");
    assert_eq!(read["failure"]["code"], "canceled_by_customer");
}

async fn the_same_notification_delivered_100_times_at_once_moves_the_payment_once(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&demo_payment_body()).await;
    let id = payment["id"].as_str().unwrap().to_owned();
    let inv_id = param(
        &query_params(payment["next_action"]["url"].as_str().unwrap()),
        "InvId",
    );
    let form = signed_result(&inv_id, "1500.000000", &id, DEMO_PASSWORD2);

    let answers = futures::future::join_all((0..100).map(|_| app.post_result(&form))).await;

    for (status, body) in &answers {
        assert_eq!(
            (*status, body.as_str()),
            (200, format!("OK{inv_id}").as_str())
        );
    }
    assert_eq!(app.payment_record(&id).await.status, "succeeded");
    let trail = app.store.payment_audit(id.parse().unwrap()).await.unwrap();
    assert_eq!(
        trail.iter().filter(|a| a.to_status == "succeeded").count(),
        1
    );
    let events = app.store.outbox_for(id.parse().unwrap()).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type == "payment.succeeded")
            .count(),
        1
    );
}

async fn forged_changed_or_unknown_notifications_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&demo_payment_body()).await;
    let id = payment["id"].as_str().unwrap().to_owned();
    let inv_id = param(
        &query_params(payment["next_action"]["url"].as_str().unwrap()),
        "InvId",
    );
    let audit_before = app
        .store
        .payment_audit(id.parse().unwrap())
        .await
        .unwrap()
        .len();

    let forged = signed_result(&inv_id, "1500.000000", &id, "not-the-password");
    let changed_amount = signed_result(&inv_id, "1.000000", &id, DEMO_PASSWORD2);
    let unknown_order = signed_result("999999", "1500.000000", &id, DEMO_PASSWORD2);
    let other_payment = signed_result(
        &inv_id,
        "1500.000000",
        &uuid::Uuid::now_v7().to_string(),
        DEMO_PASSWORD2,
    );
    let mut duplicated = signed_result(&inv_id, "1500.000000", &id, DEMO_PASSWORD2);
    duplicated.push(("OutSum", "1.000000".to_owned()));
    let mut truncated = signed_result(&inv_id, "1500.000000", &id, DEMO_PASSWORD2);
    truncated.retain(|(k, _)| *k != "SignatureValue");

    for (case, form) in [
        ("forged signature", forged),
        ("unknown InvId", unknown_order),
        ("another payment's reference", other_payment),
        ("duplicated OutSum", duplicated),
        ("missing signature", truncated),
    ] {
        let (status, body) = app.post_result(&form).await;
        assert_eq!(status, 400, "{case}: {body}");
        assert!(!body.starts_with("OK"), "{case}: {body}");
    }
    // Validly signed, but oplata's own parameters did not come back exactly as it sent them.
    for (case, shp) in [
        ("without Shp_payment", vec![]),
        ("Shp_payment renamed", vec![("Shp_Payment", id.as_str())]),
        (
            "an extra Shp_",
            vec![("Shp_payment", id.as_str()), ("Shp_x", "1")],
        ),
        (
            "passport fields on a utility payment",
            vec![
                ("Shp_payment", id.as_str()),
                ("Shp_passport", "4510 987654"),
                ("Shp_payer", "Иванов Иван"),
            ],
        ),
    ] {
        let form = signed_with_shp(&inv_id, "1500.000000", &shp);
        let form: Vec<(&str, String)> = form.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let (status, body) = app.post_result(&form).await;
        assert_eq!(status, 400, "{case}: {body}");
    }
    assert_eq!(app.payment_record(&id).await.status, "requires_action");
    let audit_after = app
        .store
        .payment_audit(id.parse().unwrap())
        .await
        .unwrap()
        .len();
    assert_eq!(audit_before, audit_after);

    // Validly signed with another amount: Robokassa took that money. Accepted (so it stops
    // re-sending), not paid, and in front of a person with both amounts.
    let (status, body) = app.post_result(&changed_amount).await;
    assert_eq!((status, body), (200, format!("OK{inv_id}")));
    let record = app.payment_record(&id).await;
    assert_eq!(record.status, "requires_action");
    let reason = record.review_reason.unwrap_or_default();
    assert!(
        reason.contains("1.000000") && reason.contains("1500.00"),
        "{reason}"
    );
}

async fn the_browser_return_alone_never_marks_a_payment_paid(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&demo_payment_body()).await;
    let id = payment["id"].as_str().unwrap().to_owned();
    let inv_id = open_payment_page(&app, &payment).await;

    // A hand-made SuccessURL (even a correctly signed one) while the invoice is still unpaid.
    let signature = wire::success_signature(
        HashAlgorithm::Md5,
        "1500.000000",
        &inv_id,
        DEMO_PASSWORD1,
        &[],
    );
    let page = app
        .http
        .get(app.url("/return/robokassa/success"))
        .query(&[
            ("OutSum", "1500.000000"),
            ("InvId", inv_id.as_str()),
            ("SignatureValue", signature.as_str()),
        ])
        .send()
        .await
        .unwrap();

    assert!(
        page.text()
            .await
            .unwrap()
            .contains("data-outcome=\"checking\"")
    );
    assert_eq!(app.payment_record(&id).await.status, "requires_action");
}

async fn the_customer_is_sent_back_to_the_portal_with_the_payment_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = demo_payment_body();
    body["return_url"] = "https://portal.example.ru/payments/done?from=oplata".into();
    let payment = app.create_payment(&body).await;
    let inv_id = open_payment_page(&app, &payment).await;

    let success = press(&app, &inv_id, "pay").await;
    let back = app.http.get(&success).send().await.unwrap();

    assert_eq!(back.status(), 303);
    let location = back.headers()["location"].to_str().unwrap();
    let id = payment["id"].as_str().unwrap();
    assert_eq!(
        location,
        format!("https://portal.example.ru/payments/done?from=oplata&payment_id={id}")
    );
}

async fn a_return_before_the_late_notification_settles_the_payment_once(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sandbox.set_drop_result_notifications(true);
    let payment = app.create_payment(&demo_payment_body()).await;
    let id = payment["id"].as_str().unwrap().to_owned();
    let inv_id = open_payment_page(&app, &payment).await;

    // The browser comes back first: the status query finds the invoice paid.
    let success = press(&app, &inv_id, "pay").await;
    app.http.get(&success).send().await.unwrap();
    assert_eq!(app.payment_record(&id).await.status, "succeeded");
    // Then the notification arrives after all.
    let (status, body) = app
        .post_result(&signed_result(&inv_id, "1500.000000", &id, DEMO_PASSWORD2))
        .await;

    assert_eq!((status, body), (200, format!("OK{inv_id}")));
    let trail = app.store.payment_audit(id.parse().unwrap()).await.unwrap();
    assert_eq!(
        trail.iter().filter(|a| a.to_status == "succeeded").count(),
        1
    );
}

async fn repeated_returns_ask_the_acquirer_at_most_once_per_interval(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.public.return_query_interval_ms = 60_000;
    })
    .await;
    let payment = app.create_payment(&demo_payment_body()).await;
    let id = payment["id"].as_str().unwrap().to_owned();
    let inv_id = open_payment_page(&app, &payment).await;
    // A SuccessURL return signed as Robokassa signs it (Password#1): proof enough to ask.
    let shp = [("Shp_payment".to_owned(), id.clone())];
    let signature = wire::success_signature(
        HashAlgorithm::Md5,
        "1500.000000",
        &inv_id,
        DEMO_PASSWORD1,
        &shp,
    );
    let back = || async {
        app.http
            .get(app.url("/return/robokassa/success"))
            .query(&[
                ("OutSum", "1500.000000"),
                ("InvId", inv_id.as_str()),
                ("SignatureValue", signature.as_str()),
                ("Shp_payment", id.as_str()),
            ])
            .send()
            .await
            .unwrap()
            .status()
    };

    // The first return asks Robokassa (still unpaid); the payment is then paid without a
    // ResultURL reaching oplata. A return within the interval does not ask again.
    assert_eq!(back().await, 200);
    app.sandbox.set_drop_result_notifications(true);
    app.sandbox.decide(DEMO_LOGIN, &inv_id, true).await.unwrap();
    assert_eq!(back().await, 200);
    assert_eq!(app.payment_record(&id).await.status, "requires_action");

    // Asked directly, Robokassa reports the payment paid: only the throttle kept it unasked.
    let fresh = oplata::service::payments::refresh_from_acquirer(
        &app.services,
        app.payment_record(&id).await,
        "test",
    )
    .await
    .unwrap();
    assert_eq!(fresh.status, "succeeded");
}
