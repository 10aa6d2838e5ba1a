//! Anonymous payments: the public API and page without a key, their validation, the abuse
//! limits under concurrency, and the passport data of budget payments (rule 8).

use oplata::domain::payment::PaymentEvent;
use oplata::store::StatusChange;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

on_both_backends!(
    an_anonymous_payment_needs_no_key_and_is_paid_in_the_simulator,
    save_card_and_user_id_are_refused_and_nothing_is_stored,
    each_bad_field_is_named_in_the_answer,
    fifty_concurrent_attempts_for_one_account_let_exactly_twenty_through,
    declines_from_one_address_make_it_wait,
    one_address_creates_at_most_its_hourly_number_of_payments,
    budget_payments_carry_sealed_passport_data_that_is_purged_later,
    the_pay_page_checks_its_csrf_token_and_shows_errors_beside_fields,
    passport_data_in_robokassa_custom_parameters_is_signed_and_verified_both_ways,
    the_result_page_tells_each_state_and_the_way_on,
);

fn anonymous(account: &str) -> Value {
    json!({"supplier_id": "demo-electro", "account_number": account, "amount": "1500.00", "email": "anna@example.ru"})
}

async fn post_public(
    app: &TestApp,
    body: &Value,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url("/v1/public/payments"))
        .header("idempotency-key", Uuid::new_v4().to_string())
        .json(body);
    if let Some(ip) = forwarded_for {
        request = request.header("x-real-ip", ip);
    }
    request.send().await.unwrap()
}

async fn created(app: &TestApp, body: &Value) -> Value {
    let response = post_public(app, body, None).await;
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{answer}");
    answer
}

fn code(answer: &Value) -> (&str, &str) {
    (
        answer["error"]["code"].as_str().unwrap_or_default(),
        answer["error"]["param"].as_str().unwrap_or_default(),
    )
}

async fn an_anonymous_payment_needs_no_key_and_is_paid_in_the_simulator(backend: Backend) {
    let app = spawn_app(backend).await;

    let mut body = anonymous("1234567890");
    body["email"] = "payer@example.ru".into();
    let payment = created(&app, &body).await;
    assert_eq!(payment["status"], "requires_action");
    assert!(payment.get("user_id").is_none());
    assert_eq!(payment["save_card"], false);
    let early: Value = app
        .http
        .get(app.url(&format!(
            "/v1/public/payments/{}",
            payment["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(early["next_action"].is_null(), "{early}");
    assert_eq!(early["status"], "requires_action");
    assert!(early.get("email").is_none(), "{early}");
    let url = payment["next_action"]["url"].as_str().unwrap();
    app.http.get(url).send().await.unwrap();
    let inv_id = param(&query_params(url), "InvId");
    app.sandbox.decide(DEMO_LOGIN, &inv_id, true).await.unwrap();

    let status: Value = app
        .http
        .get(app.url(&format!(
            "/v1/public/payments/{}",
            payment["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "succeeded");

    assert!(
        status.get("email").is_none(),
        "the status is public, the address is not: {status}"
    );
    let page = app
        .http
        .get(app.url(&format!("/pay/result/{}", payment["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Оплачено"), "{page}");
    // A portal payment is not readable through the public endpoints.
    let portal = app.create_payment(&demo_payment_body()).await;
    let hidden = app
        .http
        .get(app.url(&format!(
            "/v1/public/payments/{}",
            portal["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 404);
}

async fn save_card_and_user_id_are_refused_and_nothing_is_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    for (field, value) in [
        ("save_card", json!(true)),
        ("user_id", json!("user-42")),
        // The acquirer's page would show it under the supplier's name: a phishing kit.
        ("description", json!("Срочно! Долг будет передан приставам")),
    ] {
        let mut body = anonymous("1234567890");
        body[field] = value;
        let response = post_public(&app, &body, None).await;
        assert_eq!(response.status(), 422);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(code(&answer), ("not_allowed_for_anonymous", field));
    }
    // After paying, the customer goes back to oplata itself, never to a site the caller chose.
    let mut elsewhere = anonymous("1234567890");
    elsewhere["return_url"] = "https://evil.example/thanks".into();
    let refused = post_public(&app, &elsewhere, None).await;
    assert_eq!(refused.status(), 422);
    let answer: Value = refused.json().await.unwrap();
    assert_eq!(code(&answer), ("invalid_return_url", "return_url"));
    assert_eq!(app.store.count_payments().await.unwrap(), 0);
    let mut home = anonymous("1234567890");
    home["return_url"] = app.url("/pay").into();
    let payment = created(&app, &home).await;
    assert_eq!(
        payment["description"],
        "Демо-Энергосбыт: оплата по лицевому счёту 1234567890"
    );
    let no_key = app
        .http
        .post(app.url("/v1/public/payments"))
        .json(&anonymous("1234567890"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 400, "an Idempotency-Key is required");
    assert_eq!(app.store.count_payments().await.unwrap(), 1);
}

async fn each_bad_field_is_named_in_the_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        (
            json!({"supplier_id": "demo-electro", "account_number": "12", "amount": "10"}),
            ("invalid_account_number", "account_number"),
        ),
        (
            json!({"supplier_id": "demo-electro", "account_number": "1234567890", "amount": "10.001"}),
            ("invalid_amount", "amount"),
        ),
        (
            json!({"supplier_id": "demo-electro", "account_number": "1234567890", "amount": "0"}),
            ("invalid_amount", "amount"),
        ),
        (
            json!({"supplier_id": "nope", "account_number": "1234567890", "amount": "10"}),
            ("unknown_supplier", "supplier_id"),
        ),
        (
            json!({"supplier_id": "demo-electro", "account_number": "1234567890", "amount": "10", "email": "x"}),
            ("invalid_email", "email"),
        ),
        (
            json!({"supplier_id": "demo-electro", "account_number": "1234567890", "amount": 10}),
            ("invalid_field_type", "amount"),
        ),
        // Rule 6: fines are paid only by signed-in users (the seed offers ЖКХ without sign-in).
        (
            json!({"supplier_id": "demo-gibdd", "account_number": "18810177230000012345",
                   "amount": "500.00", "email": "a@b.ru"}),
            ("supplier_not_public", "supplier_id"),
        ),
    ];
    for (body, expected) in cases {
        let response = post_public(&app, &body, None).await;
        let answer: Value = response.json().await.unwrap();
        assert_eq!(code(&answer), expected, "{body}");
    }
    assert_eq!(app.store.count_payments().await.unwrap(), 0);
    let choice = app
        .http
        .get(app.url("/pay"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        choice.contains("demo-electro") && choice.contains("demo-water"),
        "{choice}"
    );
    assert!(!choice.contains("demo-gibdd"), "{choice}");
    let fines = app
        .http
        .get(app.url("/pay?supplier=demo-gibdd"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(fines.contains("выберите получателя"), "{fines}");
}

async fn fifty_concurrent_attempts_for_one_account_let_exactly_twenty_through(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = anonymous("1234567890");
    let answers = futures::future::join_all((0..50).map(|_| async {
        let response = post_public(&app, &body, None).await;
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        (response.status().as_u16(), retry_after)
    }))
    .await;

    let accepted = answers.iter().filter(|(s, _)| *s == 201).count();
    let limited: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(accepted, 20, "{answers:?}");
    assert_eq!(limited.len(), 30, "{answers:?}");
    assert!(
        limited
            .iter()
            .all(|(_, wait)| wait.is_some_and(|w| (3500..=3600).contains(&w)))
    );
    assert_eq!(app.store.count_payments().await.unwrap(), 20);
    // Another account is not affected.
    created(&app, &anonymous("1234567891")).await;
}

async fn declines_from_one_address_make_it_wait(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.public.declines_per_ip_per_10_minutes = 3;
        settings.public.client_ip_header = Some("X-Real-IP".into());
    })
    .await;
    for n in 0..3 {
        let response = post_public(
            &app,
            &anonymous(&format!("123456789{n}")),
            Some("203.0.113.7"),
        )
        .await;
        let payment: Value = response.json().await.unwrap();
        let declined = StatusChange {
            event: PaymentEvent::Failed,
            next_action: None,
            failure: Some(("declined", "the issuer declined")),
            actor: "test",
            reason: &oplata::domain::audit::AuditReason::NotificationFailed,
            acquirer_operation_id: None,
        };
        app.store
            .transition_payment(payment["id"].as_str().unwrap().parse().unwrap(), &declined)
            .await
            .unwrap();
    }

    let response = post_public(&app, &anonymous("1234567899"), Some("203.0.113.7")).await;
    assert_eq!(response.status(), 429);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((500..=600).contains(&wait), "{wait}");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(code(&answer).0, "rate_limited");
    // Another address pays on; the page says it in Russian.
    let other = post_public(&app, &anonymous("1234567899"), Some("203.0.113.8")).await;
    assert_eq!(other.status(), 201);
    assert_eq!(app.store.count_payments().await.unwrap(), 4);
}

async fn budget_payments_carry_sealed_passport_data_that_is_purged_later(backend: Backend) {
    let app = spawn_app(backend).await;
    let passport = json!({"passport_series": "4510", "passport_number": "987654", "full_name": "Кузнецова Мария Петровна"});
    let budget = json!({"supplier_id": "demo-kindergarten", "account_number": "12345678", "amount": "3200.00", "email": "maria@example.ru"});

    let missing = post_public(&app, &budget, None).await;
    assert_eq!(
        code(&missing.json().await.unwrap()),
        ("personal_data_required", "payer")
    );
    let mut elsewhere = anonymous("1234567890");
    elsewhere["payer"] = passport.clone();
    let refused = post_public(&app, &elsewhere, None).await;
    assert_eq!(
        code(&refused.json().await.unwrap()),
        ("personal_data_not_allowed", "payer")
    );
    let mut bad = budget.clone();
    bad["payer"] = json!({"passport_series": "45", "passport_number": "987654", "full_name": "Кузнецова Мария"});
    let invalid = post_public(&app, &bad, None).await;
    assert_eq!(
        code(&invalid.json().await.unwrap()),
        ("invalid_personal_data", "payer.passport_series")
    );
    // Sent as JSON numbers, the passport is still never echoed (nor kept with the answer).
    let mut as_numbers = budget.clone();
    as_numbers["payer"] =
        json!({"passport_series": 4510, "passport_number": 987654, "full_name": "Кузнецова Мария"});
    let key = Uuid::new_v4().to_string();
    for _ in 0..2 {
        let answer = app
            .http
            .post(app.url("/v1/public/payments"))
            .header("idempotency-key", &key)
            .json(&as_numbers)
            .send()
            .await
            .unwrap();
        let text = answer.text().await.unwrap();
        assert!(text.contains("invalid_field_type"), "{text}");
        assert!(!text.contains("4510") && !text.contains("987654"), "{text}");
    }
    assert_eq!(app.store.count_payments().await.unwrap(), 0);

    let mut good = budget.clone();
    good["payer"] = passport.clone();
    let response = post_public(&app, &good, None).await;
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("987654") && !text.contains("Кузнецова"),
        "{text}"
    );
    let payment: Value = serde_json::from_str(&text).unwrap();
    let id: Uuid = payment["id"].as_str().unwrap().parse().unwrap();
    let continue_url = payment["next_action"]["url"].as_str().unwrap().to_owned();
    assert!(continue_url.contains(&format!("/pay/{id}/continue?token=")));
    // Only the creator's answer holds the unlocking link: the stored payment does not, and a
    // desk key reading the payment gets the address without its token.
    let stored = app.payment_record(&id.to_string()).await;
    assert!(
        !stored
            .next_action
            .clone()
            .unwrap_or_default()
            .contains("token="),
        "{:?}",
        stored.next_action
    );
    let desk = app
        .key_with_scope(oplata::service::api_keys::Scope::Desk)
        .await;
    let read: Value = app
        .http
        .get(app.url(&format!("/v1/payments/{id}")))
        .bearer_auth(&desk)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seen = read["next_action"]["url"].as_str().unwrap_or_default();
    assert!(seen.is_empty() || !seen.contains("token="), "{read}");

    let wrong = app
        .http
        .get(app.url(&format!("/pay/{id}/continue?token=guess")))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
    let form = app.http.get(&continue_url).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert_eq!(form.headers()["cache-control"], "no-store");
    let form = form.text().await.unwrap();
    assert!(
        form.contains("name=\"MNT_CUSTOM2\" value=\"4510 987654\""),
        "{form}"
    );
    assert!(form.contains("name=\"MNT_CUSTOM3\" value=\"Кузнецова Мария Петровна\""));

    let row = app.store.payer_data(id).await.unwrap().unwrap();
    let sealed = row.ciphertext.clone().unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("987654"));
    assert!(!format!("{row:?}").contains("987654"));
    let record = app.payment_record(payment["id"].as_str().unwrap()).await;
    assert!(!format!("{record:?}").contains("987654"));
    // The whole passport and the name: a bare "987654" also turns up as a timestamp fraction.
    let logs = captured_logs();
    assert!(
        !logs.contains("4510 987654") && !logs.contains("Кузнецова Мария Петровна"),
        "never logged"
    );

    // Not yet final: nothing is purged, however late.
    let far = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    assert_eq!(
        oplata::workers::purge::purge_due(&app.services, far)
            .await
            .unwrap(),
        0
    );
    let declined = StatusChange {
        event: PaymentEvent::Failed,
        next_action: None,
        failure: Some(("declined", "the issuer declined")),
        actor: "test",
        reason: &oplata::domain::audit::AuditReason::NotificationFailed,
        acquirer_operation_id: None,
    };
    app.store.transition_payment(id, &declined).await.unwrap();
    let soon = time::OffsetDateTime::now_utc() + time::Duration::days(29);
    assert_eq!(
        oplata::workers::purge::purge_due(&app.services, soon)
            .await
            .unwrap(),
        0
    );
    let after = time::OffsetDateTime::now_utc() + time::Duration::days(31);
    assert_eq!(
        oplata::workers::purge::purge_due(&app.services, after)
            .await
            .unwrap(),
        1
    );
    let purged = app.store.payer_data(id).await.unwrap().unwrap();
    assert!(purged.ciphertext.is_none() && purged.key_id.is_none() && purged.purged_at.is_some());
    assert_eq!(
        app.http.get(&continue_url).send().await.unwrap().status(),
        404
    );
}

async fn the_pay_page_checks_its_csrf_token_and_shows_errors_beside_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let choice = app.http.get(app.url("/pay")).send().await.unwrap();
    assert!(
        choice.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let choice = choice.text().await.unwrap();
    assert!(choice.contains("Демо-Энергосбыт") && !choice.contains("<script"));

    let electro = app
        .http
        .get(app.url("/pay?supplier=demo-electro"))
        .send()
        .await
        .unwrap();
    let cookie = electro.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let token = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let page = electro.text().await.unwrap();
    assert!(
        !page.contains("passport_series"),
        "no passport fields outside budget suppliers"
    );
    let kindergarten = app
        .http
        .get(app.url("/pay?supplier=demo-kindergarten"))
        .send()
        .await
        .unwrap();
    assert!(
        kindergarten
            .text()
            .await
            .unwrap()
            .contains("id=\"passport_series\"")
    );

    let attempt = |page: &str| {
        let needle = "name=\"attempt\" value=\"";
        let at = page.find(needle).unwrap() + needle.len();
        page[at..at + 36].to_owned()
    };
    let first_attempt = attempt(&page);
    let submit = |csrf: String, cookie: Option<String>, account: &'static str, attempt: String| {
        let app = &app;
        async move {
            let mut request = app.http.post(app.url("/pay")).form(&[
                ("csrf", csrf.as_str()),
                ("attempt", attempt.as_str()),
                ("supplier_id", "demo-electro"),
                ("account_number", account),
                ("amount", "1500,50"),
                ("email", "anna@example.ru"),
            ]);
            if let Some(cookie) = cookie {
                request = request.header("cookie", format!("oplata_pay_csrf={cookie}"));
            }
            request.send().await.unwrap()
        }
    };
    let forged = submit(token.clone(), None, "1234567890", first_attempt.clone()).await;
    assert_eq!(forged.status(), 403);
    let mismatched = submit(
        "other".into(),
        Some(token.clone()),
        "1234567890",
        first_attempt.clone(),
    )
    .await;
    assert_eq!(mismatched.status(), 403);
    assert_eq!(app.store.count_payments().await.unwrap(), 0);

    let bad = submit(
        token.clone(),
        Some(token.clone()),
        "12-<b>",
        first_attempt.clone(),
    )
    .await;
    assert_eq!(bad.status(), 422);
    let page = bad.text().await.unwrap();
    assert!(page.contains("id=\"error-account_number\""), "{page}");
    // The field at fault is marked for assistive technology and takes the focus.
    assert!(
        page.contains("aria-invalid=\"true\" aria-describedby=\"error-account_number\" autofocus"),
        "{page}"
    );
    assert!(
        page.contains("value=\"12-&#60;b&#62;\"") && !page.contains("12-<b>"),
        "what was typed comes back, escaped: {page}"
    );
    let second_attempt = attempt(&page);
    assert_ne!(
        second_attempt, first_attempt,
        "a refused form gets a new attempt"
    );
    // Every mistake at once, each beside its field; the first takes the focus.
    let several = app
        .http
        .post(app.url("/pay"))
        .header("cookie", format!("oplata_pay_csrf={token}"))
        .form(&[
            ("csrf", token.as_str()),
            ("attempt", second_attempt.as_str()),
            ("supplier_id", "demo-electro"),
            ("account_number", "12"),
            ("amount", "сто"),
            ("email", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(several.status(), 422);
    let several = several.text().await.unwrap();
    for field in ["account_number", "amount", "email"] {
        assert!(
            several.contains(&format!("id=\"error-{field}\"")),
            "{field}: {several}"
        );
    }
    assert_eq!(several.matches("autofocus").count(), 1, "{several}");
    assert!(several.contains("value=\"сто\""), "{several}");
    assert_eq!(app.store.count_payments().await.unwrap(), 0);

    let good = submit(
        token.clone(),
        Some(token.clone()),
        "1234567890",
        second_attempt.clone(),
    )
    .await;
    assert_eq!(good.status(), 303);
    let location = good.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("/sandbox/robokassa/"), "{location}");
    assert!(location.contains("OutSum=1500.50"));
    // A double click sends the same form twice: the same payment, not a second one.
    let again = submit(token.clone(), Some(token), "1234567890", second_attempt).await;
    assert_eq!(again.status(), 303);
    assert_eq!(again.headers()["location"].to_str().unwrap(), location);
    assert_eq!(app.store.count_payments().await.unwrap(), 1);
}

async fn passport_data_in_robokassa_custom_parameters_is_signed_and_verified_both_ways(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |settings| {
        let mut suppliers = oplata::config::Settings::default()
            .with_demo_defaults()
            .suppliers;
        let mut school = suppliers[0].clone();
        school.id = "school".into();
        school.payment_type = oplata::domain::supplier::PaymentType::Budget;
        school.anonymous = Some(true);
        suppliers.push(school);
        settings.suppliers = suppliers;
    })
    .await;
    let body = json!({
        "supplier_id": "school", "account_number": "1234567890", "amount": "700.00",
        "email": "anna@example.ru",
        "payer": {"passport_series": "4510", "passport_number": "987654", "full_name": "Ёлкина Анна-Мария Сергеевна"}
    });
    let payment = created(&app, &body).await;
    let continue_url = payment["next_action"]["url"].as_str().unwrap();
    let go = app.http.get(continue_url).send().await.unwrap();
    assert_eq!(go.status(), 303);
    let url = go.headers()["location"].to_str().unwrap().to_owned();
    let params = query_params(&url);
    assert_eq!(param(&params, "Shp_passport"), "4510 987654");
    assert_eq!(param(&params, "Shp_payer"), "Ёлкина Анна-Мария Сергеевна");

    // The simulator checks the signature over the Cyrillic custom parameters, then notifies with
    // them; oplata checks its signature in turn.
    let page = app.http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200, "{}", page.text().await.unwrap());
    app.sandbox
        .decide(DEMO_LOGIN, &param(&params, "InvId"), true)
        .await
        .unwrap();
    assert_eq!(
        app.payment_record(payment["id"].as_str().unwrap())
            .await
            .status,
        "succeeded"
    );
}

async fn one_address_creates_at_most_its_hourly_number_of_payments(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.public.creations_per_ip_per_hour = 3;
        settings.public.client_ip_header = Some("X-Real-IP".into());
    })
    .await;
    // Concurrently, to different accounts: the address is locked, so exactly three pass.
    let answers = futures::future::join_all((0..8).map(|n| {
        let app = &app;
        async move {
            post_public(
                app,
                &anonymous(&format!("12345678{n:02}")),
                Some("203.0.113.9"),
            )
            .await
            .status()
            .as_u16()
        }
    }))
    .await;
    assert_eq!(
        answers.iter().filter(|s| **s == 201).count(),
        3,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|s| **s == 429).count(),
        5,
        "{answers:?}"
    );
    let other = post_public(&app, &anonymous("1234567800"), Some("203.0.113.10")).await;
    assert_eq!(other.status(), 201, "another address is not affected");
    assert_eq!(app.store.count_payments().await.unwrap(), 4);
}

async fn result_page(app: &TestApp, id: &str, query: &str) -> String {
    result_page_in(&app.http, app, id, query).await
}

async fn result_page_in(client: &reqwest::Client, app: &TestApp, id: &str, query: &str) -> String {
    let response = client
        .get(app.url(&format!("/pay/result/{id}{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

fn outcome(page: &str) -> &str {
    let start = page.find("data-outcome=\"").expect("an outcome") + "data-outcome=\"".len();
    &page[start..start + page[start..].find('"').unwrap()]
}

fn hidden<'a>(page: &'a str, name: &str) -> &'a str {
    let needle = format!("name=\"{name}\" value=\"");
    let at = page.find(&needle).unwrap() + needle.len();
    &page[at..at + page[at..].find('"').unwrap()]
}

async fn the_result_page_tells_each_state_and_the_way_on(backend: Backend) {
    let app = spawn_app(backend).await;
    // A person's browser: it keeps its cookies and does not follow the way to the acquirer.
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = browser
        .get(app.url("/pay?supplier=demo-electro"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sent = browser
        .post(app.url("/pay"))
        .form(&[
            ("csrf", hidden(&form, "csrf")),
            ("attempt", hidden(&form, "attempt")),
            ("supplier_id", "demo-electro"),
            ("account_number", "1234567890"),
            ("amount", "1 500,00"),
            ("email", "anna@example.ru"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 303);
    let acquirer_page = sent.headers()["location"].to_str().unwrap().to_owned();
    let id = param(&query_params(&acquirer_page), "Shp_payment");
    let id = id.as_str();
    let order = app.payment_record(id).await.acquirer_order_id;

    // Just back from the acquirer: the page waits for the acquirer's word, a bounded while.
    let first = result_page(&app, id, "").await;
    assert_eq!(outcome(&first), "checking", "{first}");
    assert!(
        first.contains(&format!("url=/pay/result/{id}?check=1")),
        "{first}"
    );
    let unreadable = result_page(&app, id, "?check=many").await;
    assert_eq!(outcome(&unreadable), "checking");

    // Nothing heard after the last reload: not finished, with the way back to the acquirer's
    // page (for the browser that made the payment only) and a new attempt.
    let left = result_page_in(&browser, &app, id, "?check=20").await;
    assert_eq!(outcome(&left), "unfinished", "{left}");
    assert!(!left.contains("http-equiv=\"refresh\""), "{left}");
    assert!(left.contains("Оплатить можно до"), "{left}");
    let resume = {
        let needle = "id=\"resume\" href=\"";
        let at = left.find(needle).expect("a way back") + needle.len();
        left[at..at + left[at..].find('"').unwrap()].replace("&#38;", "&")
    };
    let back = browser.get(app.url(&resume)).send().await.unwrap();
    assert_eq!(back.status(), 303);
    assert_eq!(back.headers()["location"], acquirer_page.as_str());
    let forged = browser
        .get(app.url(&format!("/pay/{id}/continue?token={}", "0".repeat(64))))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 404);
    let someone_else = result_page(&app, id, "?check=20").await;
    assert_eq!(outcome(&someone_else), "unfinished");
    assert!(!someone_else.contains("id=\"resume\""), "{someone_else}");
    assert!(!someone_else.contains("anna"), "{someone_else}");
    assert!(
        left.contains("href=\"/pay?supplier=demo-electro&#38;account=1234567890\""),
        "{left}"
    );
    // Who is paid, how much, when (in the supplier's zone) and the number support will ask for.
    assert!(left.contains("Демо-Энергосбыт"), "{left}");
    assert!(left.contains("1\u{a0}500,00\u{a0}₽"), "{left}");
    assert!(left.contains("(МСК)"), "{left}");
    assert!(
        left.contains(&format!("<dd id=\"number\">{order}</dd>")),
        "{left}"
    );
    assert!(
        !left.contains("id=\"receipt\""),
        "no receipt before payment: {left}"
    );
    let again = app
        .http
        .get(app.url("/pay?supplier=demo-electro&account=1234567890"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        again.contains("value=\"1234567890\""),
        "the new attempt is filled in"
    );

    // Paid: the receipt's address, recognisable but not readable by whoever has the link.
    app.http.get(&acquirer_page).send().await.unwrap();
    app.sandbox.decide(DEMO_LOGIN, &order, true).await.unwrap();
    let paid = result_page(&app, id, "").await;
    assert_eq!(outcome(&paid), "paid", "{paid}");
    assert!(paid.contains("отправлен на a***@example.ru"), "{paid}");
    assert!(!paid.contains("anna@example.ru"), "{paid}");
    assert!(!paid.contains("id=\"retry\""), "{paid}");
    assert!(!paid.contains("http-equiv=\"refresh\""), "{paid}");
    let late = browser.get(app.url(&resume)).send().await.unwrap();
    assert_eq!(
        late.status(),
        404,
        "a paid payment has no way back to the acquirer"
    );

    // Declined and expired: nothing taken, a new attempt offered, no way back to the old page.
    for (event, expected) in [
        (PaymentEvent::Failed, "declined"),
        (PaymentEvent::Expired, "expired"),
    ] {
        let other = created(&app, &anonymous("1234567890")).await;
        let other_id = other["id"].as_str().unwrap();
        let change = StatusChange {
            event,
            next_action: None,
            failure: (event == PaymentEvent::Failed).then_some(("declined", "the issuer declined")),
            actor: "test",
            reason: &oplata::domain::audit::AuditReason::SettledFromReview,
            acquirer_operation_id: None,
        };
        app.store
            .transition_payment(other_id.parse().unwrap(), &change)
            .await
            .unwrap();
        let page = result_page(&app, other_id, "").await;
        assert_eq!(outcome(&page), expected, "{page}");
        assert!(page.contains("не списаны"), "{page}");
        assert!(page.contains("id=\"retry\""), "{page}");
        assert!(!page.contains("id=\"resume\""), "{page}");
    }
}
