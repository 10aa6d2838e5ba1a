//! The refunds desk over HTTP on both databases: nothing without signing in, a brake on guessed
//! passwords, CSRF on every form, a disabled operator's session ends.

use crate::helpers::*;

on_both_backends!(
    nothing_on_the_desk_is_shown_without_signing_in,
    guessing_passwords_is_stopped_after_five_failures,
    a_refund_form_without_the_sessions_csrf_token_is_refused,
    a_refund_form_sent_twice_refunds_once,
    a_refund_form_with_mistakes_says_each_beside_its_field_and_keeps_them,
    an_operator_settles_a_refund_on_the_review_list_from_the_payment_page,
    disabling_an_operator_ends_their_session,
    the_review_page_lists_refunds_waiting_for_the_acquirer,
    every_page_carries_the_security_headers_and_nothing_is_cached,
    concurrent_guesses_check_at_most_five_passwords_and_one_address_is_braked_too,
    an_enrolled_operator_signs_in_with_a_fresh_code_and_each_code_works_once,
    where_a_second_factor_is_required_an_operator_without_one_is_not_let_in,
    a_search_that_cannot_be_read_says_why_instead_of_listing_every_payment,
    the_desk_finds_payments_by_what_a_customer_tells_and_pages_through_them,
);

pub(crate) const PASSWORD: &str = "correct horse battery";

async fn with_operator(backend: Backend) -> TestApp {
    add_operator(spawn_app(backend).await).await
}

/// Adds the operator olga to `app`.
pub(crate) async fn add_operator(app: TestApp) -> TestApp {
    oplata::service::operators::add(
        app.store.as_ref(),
        "olga",
        "Ольга",
        &secrecy::SecretString::from(PASSWORD),
    )
    .await
    .unwrap();
    app
}

pub(crate) fn browser() -> reqwest::Client {
    // Building one client installs the TLS crypto provider every reqwest client here needs.
    let _ = oplata_providers::http_client(std::time::Duration::from_secs(10));
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn hidden_attempt(html: &str) -> String {
    html.split("name=\"attempt\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the refund form carries its attempt id")
        .to_owned()
}

fn hidden_csrf(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

/// Opens the sign-in form and returns its CSRF token (each form brings a new one).
async fn login_form_token(app: &TestApp, client: &reqwest::Client) -> String {
    let form = client
        .get(app.url("/desk/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    hidden_csrf(&form)
}

/// Signs in; returns the status of the answer to the sign-in form.
pub(crate) async fn sign_in(app: &TestApp, client: &reqwest::Client, password: &str) -> u16 {
    sign_in_with_code(app, client, password, "").await.0
}

/// Signs in with a second-factor code; returns the status and the page answered.
async fn sign_in_with_code(
    app: &TestApp,
    client: &reqwest::Client,
    password: &str,
    code: &str,
) -> (u16, String) {
    let csrf = login_form_token(app, client).await;
    let answer = client
        .post(app.url("/desk/login"))
        .form(&[
            ("login", "olga"),
            ("password", password),
            ("code", code),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// The code an authenticator app shows `seconds_ahead` from now for a base32 secret.
fn app_code(secret_base32: &str, seconds_ahead: u64) -> String {
    let generator = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(secret_base32).unwrap())
        .build()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    generator.generate(now + seconds_ahead).to_string()
}

async fn an_enrolled_operator_signs_in_with_a_fresh_code_and_each_code_works_once(
    backend: Backend,
) {
    use oplata::service::second_factor;
    use secrecy::ExposeSecret;
    let app = with_operator(backend).await;
    let enrolment = second_factor::begin(app.store.as_ref(), "olga")
        .await
        .unwrap();
    let secret = enrolment.secret_base32().expose_secret().to_owned();
    assert!(
        enrolment
            .url()
            .expose_secret()
            .starts_with("otpauth://totp/oplata:olga?")
    );
    let wrong = second_factor::finish(
        app.store.as_ref(),
        &app.services.vault,
        &enrolment,
        "000000",
        time::OffsetDateTime::now_utc(),
    )
    .await;
    assert!(wrong.is_err() || app_code(&secret, 0) == "000000");
    // The app's current code confirms the enrolment and is spent by it.
    let confirming = app_code(&secret, 0);
    second_factor::finish(
        app.store.as_ref(),
        &app.services.vault,
        &enrolment,
        &confirming,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let stored = app.store.find_operator("olga").await.unwrap().unwrap();
    let sealed = stored.totp_secret.clone().unwrap();
    assert!(
        !sealed.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the secret is stored sealed"
    );

    let client = browser();
    let (status, page) = sign_in_with_code(&app, &client, PASSWORD, "").await;
    assert_eq!(status, 401, "the password alone is not enough");
    assert!(page.contains("Неверный логин, пароль или код."), "{page}");
    assert_eq!(
        sign_in_with_code(&app, &client, PASSWORD, &confirming)
            .await
            .0,
        401,
        "the code that confirmed the enrolment is spent"
    );
    // The next step's code is within the allowed drift, and works once. (Five attempts fail in
    // this test, the brake's limit per login.)
    let next = app_code(&secret, 30);
    assert_eq!(
        sign_in_with_code(&app, &client, "wrong password!", &next)
            .await
            .0,
        401
    );
    assert_eq!(
        sign_in_with_code(&app, &client, PASSWORD, &next).await.0,
        303
    );
    assert_eq!(
        client.get(app.url("/desk")).send().await.unwrap().status(),
        200
    );
    let again = browser();
    assert_eq!(
        sign_in_with_code(&app, &again, PASSWORD, &next).await.0,
        401,
        "a code is accepted once"
    );

    // Key rotation re-seals the secret; afterwards the old key can go.
    let mut keys = oplata::config::Settings::default()
        .with_demo_defaults()
        .vault
        .keys;
    keys.insert("k2".into(), oplata::vault::Vault::generate_key());
    let rotated = oplata::vault::Vault::new("k2", &keys).unwrap();
    let first = second_factor::rotate_keys(app.store.as_ref(), &rotated)
        .await
        .unwrap();
    assert_eq!((first.resealed, first.skipped), (1, 0));
    let second = second_factor::rotate_keys(app.store.as_ref(), &rotated)
        .await
        .unwrap();
    assert_eq!((second.resealed, second.skipped), (0, 0));
    let operator = app.store.find_operator("olga").await.unwrap().unwrap();
    assert_eq!(operator.totp_key_id.as_deref(), Some("k2"));
    let only_new_key = oplata::vault::Vault::new(
        "k2",
        &keys.into_iter().filter(|(id, _)| id == "k2").collect(),
    )
    .unwrap();
    let spent = second_factor::verify(
        app.store.as_ref(),
        &only_new_key,
        &operator,
        &next,
        time::OffsetDateTime::now_utc(),
    )
    .await;
    assert!(
        matches!(spent, Ok(false)),
        "the new key opens the secret; the spent code stays spent: {spent:?}"
    );

    // A lost phone: the second factor is removed and the password alone works again (demo).
    assert!(
        second_factor::remove(app.store.as_ref(), "olga")
            .await
            .unwrap()
    );
    assert_eq!(sign_in(&app, &browser(), PASSWORD).await, 303);
}

async fn where_a_second_factor_is_required_an_operator_without_one_is_not_let_in(backend: Backend) {
    let app = add_operator(
        spawn_app_with(backend, |settings| {
            settings.desk.require_second_factor = Some(true);
        })
        .await,
    )
    .await;
    let client = browser();
    let (status, page) = sign_in_with_code(&app, &client, PASSWORD, "123456").await;
    assert_eq!(status, 403);
    assert!(page.contains("Для входа нужен второй фактор"), "{page}");
    assert_eq!(
        client.get(app.url("/desk")).send().await.unwrap().status(),
        303,
        "no session was made"
    );
    let (status, _) = sign_in_with_code(&app, &client, "wrong password!", "").await;
    assert_eq!(status, 401, "a wrong password is told as before");
}

async fn nothing_on_the_desk_is_shown_without_signing_in(backend: Backend) {
    let app = with_operator(backend).await;
    let stranger = browser();

    for path in [
        "/desk",
        "/desk/review",
        &format!("/desk/payments/{}", uuid::Uuid::now_v7()),
    ] {
        let answer = stranger.get(app.url(path)).send().await.unwrap();
        assert_eq!(answer.status(), 303, "{path}");
        assert_eq!(answer.headers()["location"], "/desk/login");
    }
    let forged = stranger
        .post(app.url("/desk/login"))
        .form(&[("login", "olga"), ("password", PASSWORD), ("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        403,
        "a sign-in without the form's token is refused"
    );
    assert_eq!(sign_in(&app, &stranger, PASSWORD).await, 303);
    let signed_in = stranger.get(app.url("/desk")).send().await.unwrap();
    assert_eq!(signed_in.status(), 200);
}

async fn guessing_passwords_is_stopped_after_five_failures(backend: Backend) {
    let app = with_operator(backend).await;
    let client = browser();

    for _ in 0..5 {
        assert_eq!(sign_in(&app, &client, "wrong password!").await, 401);
    }
    assert_eq!(
        sign_in(&app, &client, PASSWORD).await,
        429,
        "even the right password waits now"
    );
}

async fn a_refund_form_without_the_sessions_csrf_token_is_refused(backend: Backend) {
    let app = with_operator(backend).await;
    let client = browser();
    sign_in(&app, &client, PASSWORD).await;
    let (payment, _) = app.paid_demo_payment().await;
    let id = payment["id"].as_str().unwrap();

    let refused = client
        .post(app.url(&format!("/desk/payments/{id}/refunds")))
        .form(&[
            ("amount", "10.00"),
            ("reason", "r"),
            ("csrf", "not-the-token"),
        ])
        .send()
        .await
        .unwrap();
    let page = client
        .get(app.url(&format!("/desk/payments/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let accepted = client
        .post(app.url(&format!("/desk/payments/{id}/refunds")))
        .form(&[
            ("amount", "10.00"),
            ("reason", "r"),
            ("csrf", hidden_csrf(&page).as_str()),
            ("attempt", hidden_attempt(&page).as_str()),
            ("confirmed", "1"),
        ])
        .send()
        .await
        .unwrap();

    assert_eq!(refused.status(), 403);
    assert_eq!(accepted.status(), 303);
    let refunds = app.store.list_refunds(id.parse().unwrap()).await.unwrap();
    assert_eq!(refunds.len(), 1, "only the form with the token refunded");
    assert_eq!(refunds[0].operator, "olga");
}

async fn disabling_an_operator_ends_their_session(backend: Backend) {
    let app = with_operator(backend).await;
    let client = browser();
    sign_in(&app, &client, PASSWORD).await;
    assert_eq!(
        client.get(app.url("/desk")).send().await.unwrap().status(),
        200
    );

    assert!(
        app.store
            .disable_operator("olga", time::OffsetDateTime::now_utc())
            .await
            .unwrap()
    );

    assert_eq!(
        client.get(app.url("/desk")).send().await.unwrap().status(),
        303
    );
    assert_eq!(sign_in(&app, &client, PASSWORD).await, 401);
}

async fn the_review_page_lists_refunds_waiting_for_the_acquirer(backend: Backend) {
    let app = with_operator(backend).await;
    let client = browser();
    sign_in(&app, &client, PASSWORD).await;
    let mut water = demo_payment_body();
    water["supplier_id"] = "demo-water".into();
    water["account_number"] = "00123456".into();
    let payment = app.create_payment(&water).await;
    let id = payment["id"].as_str().unwrap();
    let order = app.payment_record(id).await.acquirer_order_id;
    app.http
        .post(payment["next_action"]["url"].as_str().unwrap())
        .form(&next_action_fields(&payment))
        .send()
        .await
        .unwrap();
    app.net_pay
        .decide(oplata::config::DEMO_NETPAY_AUTH, &order, true)
        .await
        .unwrap();
    let page = client
        .get(app.url(&format!("/desk/payments/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    client
        .post(app.url(&format!("/desk/payments/{id}/refunds")))
        .form(&[
            ("amount", "100.00"),
            ("reason", "переплата"),
            ("csrf", hidden_csrf(&page).as_str()),
            ("attempt", hidden_attempt(&page).as_str()),
            ("confirmed", "1"),
        ])
        .send()
        .await
        .unwrap();

    let review = client
        .get(app.url("/desk/review"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert!(review.contains(&format!("/desk/payments/{id}")), "{review}");
    assert!(review.contains("100.00 ₽"));
}

async fn payment_page(app: &TestApp, client: &reqwest::Client, id: &str) -> String {
    client
        .get(app.url(&format!("/desk/payments/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn a_refund_form_sent_twice_refunds_once(backend: Backend) {
    let app = with_operator(backend).await;
    let client = browser();
    sign_in(&app, &client, PASSWORD).await;
    let (payment, inv_id) = app.paid_demo_payment().await;
    let id = payment["id"].as_str().unwrap();
    let page = payment_page(&app, &client, id).await;
    let form = [
        ("amount", "10,00".to_owned()),
        ("reason", "двойной щелчок".to_owned()),
        ("csrf", hidden_csrf(&page)),
        ("attempt", hidden_attempt(&page)),
    ];
    // The form shows a confirmation first and refunds nothing.
    let shown = client
        .post(app.url(&format!("/desk/payments/{id}/refunds")))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), 200);
    let confirmation = shown.text().await.unwrap();
    assert!(
        confirmation.contains("Подтвердите возврат"),
        "{confirmation}"
    );
    assert!(
        confirmation.contains("<td id=\"confirm-amount\"><strong>10.00 ₽</strong></td>"),
        "{confirmation}"
    );
    assert!(
        confirmation.contains("<td id=\"confirm-remaining\">1490.00 ₽</td>"),
        "{confirmation}"
    );
    assert!(confirmation.contains("anna@example.ru") || confirmation.contains("Покупатель"));
    assert!(
        app.store
            .list_refunds(id.parse().unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(hidden_attempt(&confirmation), hidden_attempt(&page));
    let form = [
        ("amount", "10.00".to_owned()),
        ("reason", "двойной щелчок".to_owned()),
        ("csrf", hidden_csrf(&page)),
        ("attempt", hidden_attempt(&page)),
        ("confirmed", "1".to_owned()),
    ];

    let first = client
        .post(app.url(&format!("/desk/payments/{id}/refunds")))
        .form(&form)
        .send()
        .await
        .unwrap();
    let second = client
        .post(app.url(&format!("/desk/payments/{id}/refunds")))
        .form(&form)
        .send()
        .await
        .unwrap();

    assert_eq!(first.status(), 303);
    assert_eq!(
        second.status(),
        303,
        "the second post finds the first refund"
    );
    let refunds = app.store.list_refunds(id.parse().unwrap()).await.unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(app.sandbox.refunded(DEMO_LOGIN, &inv_id), 1_000);
    let next = payment_page(&app, &client, id).await;
    assert_ne!(
        hidden_attempt(&next),
        hidden_attempt(&page),
        "a new rendering is a new refund"
    );
}

async fn an_operator_settles_a_refund_on_the_review_list_from_the_payment_page(backend: Backend) {
    let app = with_operator(backend).await;
    let client = browser();
    sign_in(&app, &client, PASSWORD).await;
    let (payment, inv_id) = app.paid_demo_payment().await;
    let id = payment["id"].as_str().unwrap();
    app.sandbox
        .set_recurring_mode(oplata_providers::sandbox::ApiMode::Garbage);
    let page = payment_page(&app, &client, id).await;
    client
        .post(app.url(&format!("/desk/payments/{id}/refunds")))
        .form(&[
            ("amount", "10.00"),
            ("reason", "ответ потерян"),
            ("csrf", hidden_csrf(&page).as_str()),
            ("attempt", hidden_attempt(&page).as_str()),
            ("confirmed", "1"),
        ])
        .send()
        .await
        .unwrap();
    app.sandbox
        .set_recurring_mode(oplata_providers::sandbox::ApiMode::Normal);
    let review = client
        .get(app.url("/desk/review"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(review.contains("refunds-in-review"), "{review}");
    assert!(review.contains(&format!("/desk/payments/{id}")), "{review}");
    let refund = app.store.list_refunds(id.parse().unwrap()).await.unwrap()[0].clone();
    assert!(refund.review_reason.is_some(), "{refund:?}");
    let page = payment_page(&app, &client, id).await;
    assert!(
        page.contains(&format!("refund-review-{}", refund.id)),
        "{page}"
    );
    // The item says, in Russian, why it is there and what to do; so does the list.
    assert!(
        page.contains("ответил на возврат 10.00 ₽ нечитаемо"),
        "{page}"
    );
    assert!(
        page.contains("Найдите возврат в кабинете эквайера"),
        "{page}"
    );
    assert!(
        review.contains("ответил на возврат 10.00 ₽ нечитаемо"),
        "{review}"
    );
    // The timeline is Russian, with people and acquirers by name and times in Moscow time.
    assert!(
        page.contains("Оформлен возврат 10.00 ₽. Причина: ответ потерян"),
        "{page}"
    );
    assert!(
        page.contains("Эквайер прислал подписанное уведомление об оплате."),
        "{page}"
    );
    assert!(page.contains("оператор Ольга (olga)"), "{page}");
    assert!(page.contains("эквайер Robokassa"), "{page}");
    assert!(page.contains("клиент API «"), "{page}");
    assert!(page.contains("(МСК)"), "{page}");
    assert!(page.contains("Демо-Энергосбыт"), "{page}");
    assert!(
        !page.contains("client:") && !page.contains(" UTC"),
        "{page}"
    );
    let settle = |note: &'static str| {
        let (client, app, csrf) = (&client, &app, hidden_csrf(&page));
        async move {
            client
                .post(app.url(&format!("/desk/refunds/{}/review", refund.id)))
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("outcome", "happened"),
                    ("note", note),
                ])
                .send()
                .await
                .unwrap()
        }
    };

    let without_note = settle("  ").await;
    let settled = settle("в кабинете Robokassa возврат 10,00 ₽ есть").await;

    assert_eq!(without_note.status(), 422);
    assert_eq!(settled.status(), 303);
    let refund = app.store.get_refund(refund.id).await.unwrap().unwrap();
    assert_eq!(refund.status, "succeeded");
    assert_eq!(refund.resolved_by.as_deref(), Some("operator:olga"));
    assert_eq!(
        app.sandbox.refunded(DEMO_LOGIN, &inv_id),
        1_000,
        "paid back once"
    );
    let review = client
        .get(app.url("/desk/review"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !review.contains(&format!("refund-review-{}", refund.id)),
        "settled items leave the list"
    );
    let settled_lately = review
        .split("id=\"settled\"")
        .nth(1)
        .expect("a list of the items settled lately");
    assert!(
        settled_lately.contains(&format!("/desk/payments/{id}\"")),
        "a settled item can still be found: {review}"
    );
    let page = payment_page(&app, &client, id).await;
    assert!(
        page.contains("Проверка возврата закрыта (возврат был). Примечание: в кабинете Robokassa"),
        "the settlement and its note are on the timeline: {page}"
    );
}

async fn every_page_carries_the_security_headers_and_nothing_is_cached(backend: Backend) {
    let app = with_operator(backend).await;
    let operator = browser();
    assert_eq!(sign_in(&app, &operator, PASSWORD).await, 303);
    let payment = app.create_payment(&demo_payment_body()).await;
    let id = payment["id"].as_str().unwrap();

    for (who, path) in [
        (&operator, "/desk".to_owned()),
        (&operator, "/desk/review".to_owned()),
        (&operator, format!("/desk/payments/{id}")),
        (&operator, "/desk/login".to_owned()),
        (&app.http, "/pay".to_owned()),
        (&app.http, format!("/pay/result/{id}")),
        (&app.http, "/return/robokassa/fail?InvId=1".to_owned()),
    ] {
        let answer = who.get(app.url(&path)).send().await.unwrap();
        let headers = answer.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert!(header("cache-control").contains("no-store"), "{path}");
        if header("content-type").starts_with("text/html") {
            let policy = header("content-security-policy");
            assert!(
                policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"),
                "{path}: {policy}"
            );
        }
    }
    let api = app.get_payment(id, Some("user-42")).await;
    assert_eq!(api.headers()["cache-control"], "no-store");
}

async fn concurrent_guesses_check_at_most_five_passwords_and_one_address_is_braked_too(
    backend: Backend,
) {
    let app = with_operator(backend).await;
    let client = browser();
    let csrf = login_form_token(&app, &client).await;
    // 25 guesses at once, the right password the 9th: the brake reserves each attempt before
    // its password is checked, so at most five are checked and the right one is not let in.
    let guesses = (0..25).map(|i| {
        let password = if i == 8 {
            PASSWORD.to_owned()
        } else {
            format!("wrong guess {i}")
        };
        let (client, csrf, app) = (&client, &csrf, &app);
        async move {
            client
                .post(app.url("/desk/login"))
                .form(&[
                    ("login", "olga"),
                    ("password", password.as_str()),
                    ("csrf", csrf.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s != 429).count();
    assert!(checked <= 5, "{statuses:?}");
    assert!(!statuses.contains(&303) || checked <= 5, "{statuses:?}");
    let right_let_in = statuses[8] == 303;
    let wrong_checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        wrong_checked + usize::from(right_let_in) <= 5,
        "{statuses:?}"
    );

    // One address guessing at many logins is braked too (20 attempts per window), and an
    // oversized login is refused without being stored.
    let app = with_operator(backend).await;
    let long_login = "a".repeat(60_000);
    let mut statuses = Vec::new();
    for i in 0..22 {
        // Each answer brings a new form token.
        let csrf = login_form_token(&app, &client).await;
        let login = if i == 0 {
            long_login.clone()
        } else {
            format!("nobody{i}")
        };
        let status = client
            .post(app.url("/desk/login"))
            .form(&[
                ("login", login.as_str()),
                ("password", "x"),
                ("csrf", csrf.as_str()),
            ])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        statuses.push(status);
    }
    assert_eq!(statuses[0], 401, "an oversized login is simply wrong");
    assert!(statuses[1..21].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(statuses[21], 429, "{statuses:?}");
    let since = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    assert_eq!(
        app.store
            .login_failures_since(&long_login, since)
            .await
            .unwrap(),
        0
    );
}

async fn a_search_that_cannot_be_read_says_why_instead_of_listing_every_payment(backend: Backend) {
    let app = with_operator(backend).await;
    let payment = app.create_payment(&demo_payment_body()).await;
    let id = payment["id"].as_str().unwrap();
    let client = browser();
    assert_eq!(sign_in(&app, &client, PASSWORD).await, 303);
    let search = |query: String| {
        let client = client.clone();
        let url = app.url(&format!("/desk?{query}"));
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };

    let refused = search(format!("payment={}&from=31/12/2026", &id[..7])).await;
    assert!(refused.contains("Поиск не выполнен"), "{refused}");
    assert!(
        refused.contains("id=\"payment\" name=\"payment\"")
            && refused.contains("aria-describedby=\"error-payment\" autofocus"),
        "the first field at fault says so and takes the focus: {refused}"
    );
    assert!(refused.contains("id=\"error-from\""), "{refused}");
    assert!(
        !refused.contains(id),
        "nothing is listed for a search that could not be read"
    );

    let today = time::OffsetDateTime::now_utc().date();
    let russian = format!(
        "{:02}.{:02}.{}",
        today.day(),
        u8::from(today.month()),
        today.year()
    );
    let found = search(format!("from={russian}&to={russian}")).await;
    assert!(
        found.contains(id),
        "a day typed as Russians write it: {found}"
    );
    let found = search(format!("payment={id}")).await;
    assert!(found.contains(id), "{found}");
}

async fn the_desk_finds_payments_by_what_a_customer_tells_and_pages_through_them(backend: Backend) {
    let app = with_operator(backend).await;
    let mut body = demo_payment_body();
    body["email"] = "Maria.Sokolova@Example.RU".into();
    body["phone"] = "+79001234567".into();
    body["amount"] = "1234.50".into();
    let wanted = app.create_payment(&body).await;
    let wanted = wanted["id"].as_str().unwrap().to_owned();
    let other = app.create_payment(&demo_payment_body()).await;
    let other = other["id"].as_str().unwrap().to_owned();
    let client = browser();
    assert_eq!(sign_in(&app, &client, PASSWORD).await, 303);
    let search = |query: String| {
        let client = client.clone();
        let url = app.url(&format!("/desk?{query}"));
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };

    for query in [
        "email=maria.sokolova%40example.ru".to_owned(),
        "phone=8+(900)+123-45-67".to_owned(),
        "amount=1+234%2C50".to_owned(),
        format!("payment={}", &wanted[..13]),
    ] {
        let found = search(query.clone()).await;
        assert!(found.contains(&wanted), "{query}: {found}");
        assert!(!found.contains(&other), "{query}: {found}");
    }
    let refused = search("card=42&phone=12".into()).await;
    assert!(refused.contains("id=\"error-card\""), "{refused}");
    assert!(refused.contains("id=\"error-phone\""), "{refused}");

    // A hundred to a page, newest first; the link leads on to the rest, and a spoiled link says so.
    for _ in 0..100 {
        app.create_payment(&demo_payment_body()).await;
    }
    let first = search("account=1234567890".into()).await;
    assert_eq!(first.matches("class=\"payment\"").count(), 100);
    assert!(!first.contains(&wanted), "the oldest are on the next page");
    let next = first
        .split("id=\"next-page\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a link to the next page")
        // The templates write `&` in an attribute as a numeric reference.
        .replace("&#38;", "&");
    let second = client
        .get(app.url(&next))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(second.matches("class=\"payment\"").count(), 2, "{second}");
    assert!(
        second.contains(&wanted) && second.contains(&other),
        "{second}"
    );
    assert!(!second.contains("next-page"), "{second}");
    let spoiled = search("account=1234567890&after=yesterday".into()).await;
    assert!(
        spoiled.contains("Ссылка на следующую страницу испорчена"),
        "{spoiled}"
    );
}

async fn a_refund_form_with_mistakes_says_each_beside_its_field_and_keeps_them(backend: Backend) {
    let app = with_operator(backend).await;
    let client = browser();
    sign_in(&app, &client, PASSWORD).await;
    let (payment, _) = app.paid_demo_payment().await;
    let id = payment["id"].as_str().unwrap();
    let page = payment_page(&app, &client, id).await;
    let post = |amount: &'static str, reason: &'static str, attempt: String| {
        let form = [
            ("amount", amount.to_owned()),
            ("reason", reason.to_owned()),
            ("csrf", hidden_csrf(&page)),
            ("attempt", attempt),
        ];
        let request = client
            .post(app.url(&format!("/desk/payments/{id}/refunds")))
            .form(&form);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    let (status, both) = post("12,3,4", "  ", hidden_attempt(&page)).await;
    assert_eq!(status, 422);
    assert!(both.contains("id=\"error-amount\""), "{both}");
    assert!(both.contains("id=\"error-reason\""), "{both}");
    assert!(
        both.contains("value=\"12,3,4\" aria-invalid=\"true\""),
        "{both}"
    );
    assert_eq!(both.matches("autofocus").count(), 1, "{both}");
    assert_eq!(
        hidden_attempt(&both),
        hidden_attempt(&page),
        "the same refund"
    );

    let (status, over) = post("1 500,01", "переплата", hidden_attempt(&page)).await;
    assert_eq!(status, 422);
    assert!(over.contains("можно вернуть не больше 1500.00 ₽"), "{over}");
    assert!(over.contains("value=\"1 500,01\""), "{over}");
    assert!(over.contains("value=\"переплата\""), "{over}");

    let (status, stale) = post("10", "переплата", "not-an-id".into()).await;
    assert_eq!(status, 422);
    assert!(stale.contains("id=\"refund-error\""), "{stale}");
    assert!(stale.contains("value=\"переплата\""), "{stale}");

    // «Изменить» on the confirmation brings the form back as it was typed.
    let (status, confirmation) = post("", "переплата", hidden_attempt(&page)).await;
    assert_eq!(status, 200);
    assert!(
        confirmation.contains("1500.00 ₽</strong>"),
        "all that remains: {confirmation}"
    );
    let change = client
        .get(app.url(&format!(
            "/desk/payments/{id}?attempt={}&amount=&reason=%D0%BF%D0%B5%D1%80%D0%B5%D0%BF%D0%BB%D0%B0%D1%82%D0%B0",
            hidden_attempt(&page)
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(hidden_attempt(&change), hidden_attempt(&page));
    assert!(change.contains("value=\"переплата\""), "{change}");
    assert!(
        app.store
            .list_refunds(id.parse().unwrap())
            .await
            .unwrap()
            .is_empty(),
        "nothing refunded without the confirmation"
    );
}
