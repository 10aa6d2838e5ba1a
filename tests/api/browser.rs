//! Pages in headless Chromium, driven through chromedriver's WebDriver protocol. The refunds
//! desk: an operator signs in, finds a payment by account number, refunds part of it, sees the
//! new status; a second refund over the remainder shows the error. The public pay page: a person
//! mistypes the account number and sees the error beside the field, corrects it, pays in the
//! simulator and sees "Оплачено"; a budget payer mistypes the passport number, corrects it, is
//! carried to the acquirer's form by oplata's self-submitting page, passes 3-D Secure, sees
//! "Оплачено", and the acquirer holds the passport data. Needs `OPLATA_TEST_CHROMEDRIVER`
//! (Debian's chromium-driver); `scripts/test` skips these tests without it and says so, CI
//! installs Chromium and runs them.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Runs axe-core in the page (WCAG 2 A and AA rules, and best practices) and answers the serious
/// and critical violations, one line each with the elements concerned.
const AXE_RUN: &str = "const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ['violations']})
  .then(r => done(r.violations
    .filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' + v.nodes.map(n => n.target.join(' ')).join('; '))))
  .catch(e => done(['axe could not run: ' + e]));";

struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Browser {
    async fn start() -> Browser {
        let chromedriver = std::env::var("OPLATA_TEST_CHROMEDRIVER").unwrap_or_else(|_| {
            panic!("OPLATA_TEST_CHROMEDRIVER is not set: browser tests need Debian's chromium-driver (scripts/test skips them without it)")
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let http = oplata_providers::http_client(Duration::from_secs(60)).unwrap();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Debian's /usr/bin/chromium is a shell wrapper; started through it, the real browser
        // outlives the session. Start the binary itself.
        let chromium = std::env::var("OPLATA_TEST_CHROMIUM").unwrap_or_else(|_| {
            ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
                .into_iter()
                .find(|path| std::path::Path::new(path).exists())
                .unwrap_or("/usr/bin/chromium")
                .to_owned()
        });
        let profile = tempfile::tempdir().unwrap().keep();
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", format!("--user-data-dir={}", profile.display())]
        }}}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_owned();
        Browser {
            driver,
            base,
            session,
            http,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let request = self.http.request(method, url);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(answer["value"].get("error").is_none(), "{path}: {answer}");
        answer["value"].clone()
    }

    /// Runs axe-core (the npm package, `OPLATA_TEST_AXE` naming its `axe.min.js`; CI installs
    /// it) on the page as it is, and fails on any serious or critical violation.
    async fn check_accessibility(&self, name: &str) {
        let Ok(path) = std::env::var("OPLATA_TEST_AXE") else {
            eprintln!("{name}: accessibility NOT CHECKED (OPLATA_TEST_AXE is not set)");
            return;
        };
        let axe = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("OPLATA_TEST_AXE={path}: {e}"));
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": format!("{axe}\nreturn typeof axe;"), "args": []})),
        )
        .await;
        let found = self
            .call(
                reqwest::Method::POST,
                "/execute/async",
                Some(json!({"script": AXE_RUN, "args": []})),
            )
            .await;
        let serious: Vec<&str> = found
            .as_array()
            .unwrap_or_else(|| panic!("{name}: axe answered {found}"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            serious.is_empty(),
            "{name}: serious or critical accessibility violations:\n{}",
            serious.join("\n")
        );
    }

    /// Saves the page as a phone (390 px wide) and a desktop (1280 px) show it, into
    /// `target/screenshots/<name>-<width>.png`, for a person to look at; CI keeps the folder.
    /// Each page saved is checked for accessibility at both widths too.
    async fn screenshots(&self, name: &str) {
        use base64::Engine;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        for (width, height) in [(390, 844), (1280, 900)] {
            self.call(
                reqwest::Method::POST,
                "/window/rect",
                Some(json!({"width": width, "height": height})),
            )
            .await;
            let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(png.as_str().unwrap())
                .unwrap();
            std::fs::write(dir.join(format!("{name}-{width}.png")), bytes).unwrap();
            self.check_accessibility(&format!("{name} at {width} px"))
                .await;
        }
    }

    async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Finds an element, polling for up to 10 s: a search made while a click's navigation is
    /// still under way answers "no such element" instead of waiting for the new page.
    async fn find(&self, css: &str) -> String {
        let url = format!("{}/session/{}/element", self.base, self.session);
        let mut last = Value::Null;
        for _ in 0..100 {
            let answer: Value = self
                .http
                .post(&url)
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(element) = answer["value"][ELEMENT].as_str() {
                return element.to_owned();
            }
            last = answer;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} never appeared: {last}");
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn clear(&self, css: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/clear"),
            Some(json!({})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Clicks something that loads a new page and waits until the old page is gone (its
    /// `<body>` turns stale), so nothing is read from the page being left.
    async fn click_and_wait(&self, css: &str) {
        let old_body = self.find("body").await;
        self.click(css).await;
        let url = format!(
            "{}/session/{}/element/{old_body}/name",
            self.base, self.session
        );
        for _ in 0..100 {
            let answer: Value = self
                .http
                .get(&url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if answer["value"]["error"].as_str() == Some("stale element reference") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("clicking {css} did not load a new page");
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
    }

    /// An input's current value (what the person sees in it).
    async fn value(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/property/value"),
            None,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
    }
}

impl Browser {
    /// Ends the WebDriver session (Chromium exits with it), then chromedriver.
    async fn quit(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After `quit` this finds nothing to do; after a failed assertion it still stops the
        // driver (Chromium, started by it, is then left to its own shutdown).
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_finds_a_payment_by_account_and_refunds_part_of_it() {
    let browser = Browser::start().await;
    let app = spawn_app(Backend::Sqlite).await;
    oplata::service::operators::add(
        app.store.as_ref(),
        "olga",
        "Ольга Петрова",
        &secrecy::SecretString::from("correct horse battery"),
    )
    .await
    .unwrap();
    let (payment, _) = app.paid_demo_payment().await;

    browser.open(&app.url("/desk")).await;
    assert!(
        browser.url().await.ends_with("/desk/login"),
        "the desk needs a sign-in"
    );
    browser.screenshots("desk-login").await;
    browser.type_into("#login", "olga").await;
    browser
        .type_into("#password", "correct horse battery")
        .await;
    browser.click_and_wait("#sign-in").await;
    assert_eq!(browser.text("#operator").await, "Ольга Петрова");
    browser.type_into("#account", "1234567890").await;
    browser.click_and_wait("#find").await;
    browser.screenshots("desk-search").await;
    browser.click_and_wait("a.payment").await;
    assert_eq!(browser.text("#remaining").await, "1500.00 ₽");
    browser.type_into("#amount", "500").await;
    browser.type_into("#reason", "переплата").await;
    browser.click_and_wait("#refund").await;
    // A confirmation step: what goes back, to whom, what remains; nothing refunded yet.
    assert_eq!(browser.text("#confirm-amount").await, "500.00 ₽");
    assert_eq!(browser.text("#confirm-remaining").await, "1000.00 ₽");
    browser.screenshots("desk-refund-confirmation").await;
    assert!(
        app.store
            .list_refunds(payment["id"].as_str().unwrap().parse().unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    browser.click_and_wait("#confirm").await;

    assert_eq!(browser.text("#message").await, "Возврат выполнен.");
    assert_eq!(browser.text("#status").await, "возвращён частично");
    assert_eq!(browser.text("#remaining").await, "1000.00 ₽");
    browser.type_into("#amount", "1000.01").await;
    browser.type_into("#reason", "ещё раз").await;
    browser.click_and_wait("#refund").await;
    // Refused beside the amount, with what was typed kept.
    assert!(
        browser
            .text("#error-amount")
            .await
            .starts_with("Сумма возврата больше остатка платежа")
    );
    assert_eq!(browser.value("#amount").await, "1000.01");
    assert_eq!(browser.value("#reason").await, "ещё раз");
    browser.screenshots("desk-payment-refund-refused").await;
    // The acquirer's answer to the next refund cannot be read: the refund goes on the review
    // list, and the operator settles it from the payment's page with a note.
    app.sandbox
        .set_recurring_mode(oplata_providers::sandbox::ApiMode::Garbage);
    browser.clear("#amount").await;
    browser.type_into("#amount", "100").await;
    browser.click_and_wait("#refund").await;
    browser.click_and_wait("#confirm").await;
    app.sandbox
        .set_recurring_mode(oplata_providers::sandbox::ApiMode::Normal);
    assert!(
        browser
            .text("#message")
            .await
            .contains("ответ эквайера не прочитан"),
        "a refund whose answer was lost is not reported as done"
    );
    assert!(
        browser
            .text("section.review p.error")
            .await
            .starts_with("Возврат 100.00 ₽ на проверке")
    );
    browser.screenshots("desk-payment-refund-review").await;
    browser.open(&app.url("/desk/review")).await;
    assert!(
        browser
            .text("#refunds-in-review")
            .await
            .contains("100.00 ₽")
    );
    browser.screenshots("desk-review").await;
    browser.click_and_wait("#refunds-in-review a").await;
    browser.click("section.review input[value=happened]").await;
    browser
        .type_into(
            "section.review input[name=note]",
            "возврат виден в кабинете Robokassa",
        )
        .await;
    browser.click_and_wait("section.review button").await;
    assert_eq!(browser.text("#message").await, "Решение записано.");
    browser.open(&app.url("/desk/review")).await;
    assert_eq!(browser.text("#refunds-in-review").await, "Ничего нет.");
    assert!(
        browser
            .text("#settled")
            .await
            .contains(payment["id"].as_str().unwrap())
    );
    browser.screenshots("desk-review-settled").await;
    // A search that cannot be read says why beside the field.
    browser
        .open(&app.url("/desk?payment=0193a1b&from=31/12/2026"))
        .await;
    assert!(
        browser
            .text("#error-payment")
            .await
            .contains("первые 8 знаков")
    );
    browser.screenshots("desk-search-refused").await;
    assert_eq!(
        app.payment_record(payment["id"].as_str().unwrap())
            .await
            .status,
        "partially_refunded"
    );
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_pays_an_account_on_the_public_page_and_sees_it_paid() {
    let browser = Browser::start().await;
    let app = spawn_app(Backend::Sqlite).await;

    browser.open(&app.url("/pay")).await;
    browser.screenshots("pay-choice").await;
    // The first supplier in the list is the demo electricity supplier (10-digit accounts).
    browser.click_and_wait("#choose").await;
    browser.screenshots("pay-form").await;
    assert!(browser.text("h1").await.contains("Демо-Энергосбыт"));
    browser.type_into("#account_number", "12345").await;
    // As Russians write it: a no-break space between thousands, a decimal comma.
    browser.type_into("#amount", "1\u{a0}500,50").await;
    assert_eq!(
        browser.text("#receipt-note").await,
        "Кассовый чек придёт на этот адрес сразу после оплаты."
    );
    browser.type_into("#email", "anna@example.ru").await;
    browser.click_and_wait("#pay").await;
    assert_eq!(
        browser.text("#error-account_number").await,
        "Неверный номер лицевого счёта: проверьте его по квитанции."
    );
    browser.screenshots("pay-page-error").await;
    assert_eq!(app.store.count_payments().await.unwrap(), 0);

    browser.clear("#account_number").await;
    browser.type_into("#account_number", "1234567890").await;
    browser.click_and_wait("#pay").await;
    let acquirer_page = browser.url().await;
    assert!(acquirer_page.contains("/sandbox/robokassa/"));
    // The person leaves the acquirer's page unpaid and comes back to the result page: it says
    // so once it stops waiting, and leads back to the acquirer's page or to a new attempt.
    let id = param(&query_params(&acquirer_page), "Shp_payment");
    browser
        .open(&app.url(&format!("/pay/result/{id}?check=20")))
        .await;
    assert_eq!(browser.text("#status").await, "Оплата не завершена");
    browser.screenshots("result-unfinished").await;
    browser.click_and_wait("#resume").await;
    assert!(browser.url().await.contains("/sandbox/robokassa/"));
    assert_eq!(browser.text("#amount").await, "1500.50 ₽");
    // The acquirer's page shows the receipt oplata sent (54-FZ).
    assert!(
        browser
            .text("#receipt")
            .await
            .contains("Электроэнергия, лицевой счёт 1234567890"),
    );
    browser.click_and_wait("#pay").await;

    assert_eq!(browser.text("#status").await, "Оплачено");
    browser.screenshots("result-paid").await;
    assert_eq!(app.store.count_payments().await.unwrap(), 1);
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_payment_carries_passport_data_through_the_self_submitting_form_and_3ds() {
    let browser = Browser::start().await;
    let app = spawn_app(Backend::Sqlite).await;

    browser
        .open(&app.url("/pay?supplier=demo-kindergarten"))
        .await;
    browser.type_into("#account_number", "12345678").await;
    browser.type_into("#amount", "3200").await;
    browser.type_into("#email", "maria@example.ru").await;
    browser.type_into("#passport_series", "4510").await;
    browser.type_into("#passport_number", "98765").await;
    browser
        .type_into("#full_name", "Кузнецова Мария Петровна")
        .await;
    browser.click_and_wait("#pay").await;
    assert_eq!(
        browser.text("#error-passport_number").await,
        "Номер паспорта — 6 цифр."
    );
    browser.screenshots("pay-budget-error").await;
    // The field at fault has the focus; the person types the number again.
    browser.clear("#passport_number").await;
    browser.type_into("#passport_number", "987654").await;
    // oplata's continue page submits the acquirer's form by itself (its one inline script).
    browser.click_and_wait("#pay").await;
    browser.find("#pay-no-3ds").await;
    assert!(browser.url().await.contains("/sandbox/moneta/"));
    assert_eq!(browser.text("#amount").await, "3200.00 ₽");
    browser.click_and_wait("#pay").await;
    browser
        .type_into("#otp", oplata_providers::moneta::sandbox::DEMO_OTP)
        .await;
    browser.click_and_wait("#confirm").await;

    assert_eq!(browser.text("#status").await, "Оплачено");
    browser.screenshots("result-budget-paid").await;
    let payments = app
        .store
        .search_payments(&oplata::store::PaymentSearch {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, "succeeded");
    let operation = app
        .moneta
        .operation_by_transaction(&payments[0].acquirer_order_id)
        .unwrap();
    assert_eq!(operation.custom2, "4510 987654");
    assert_eq!(operation.custom3, "Кузнецова Мария Петровна");
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_netpay_payment_declined_is_tried_again_from_the_result_page_and_paid() {
    let browser = Browser::start().await;
    let app = spawn_app(Backend::Sqlite).await;

    browser.open(&app.url("/pay?supplier=demo-water")).await;
    browser.type_into("#account_number", "00123456").await;
    browser.type_into("#amount", "812,40").await;
    browser.type_into("#email", "pavel@example.ru").await;
    browser.click_and_wait("#pay").await;
    assert!(browser.url().await.contains("/sandbox/net_pay/"));
    browser.click_and_wait("#decline").await;
    // The notification may come a moment after the browser: the page waits for it.
    browser.find("h1[data-outcome=declined]").await;
    assert_eq!(browser.text("#status").await, "Платёж отклонён");
    browser.screenshots("result-declined").await;

    browser.click_and_wait("#retry").await;
    assert_eq!(browser.value("#account_number").await, "00123456");
    browser.type_into("#amount", "812,40").await;
    browser.type_into("#email", "pavel@example.ru").await;
    browser.click_and_wait("#pay").await;
    browser.click_and_wait("#pay").await;
    browser.find("h1[data-outcome=paid]").await;
    assert_eq!(browser.text("#amount").await, "812,40 ₽");
    browser.screenshots("result-netpay-paid").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_result_state_reads_right_at_both_widths() {
    use oplata::domain::audit::AuditReason;
    use oplata::domain::payment::PaymentEvent;
    use oplata::store::StatusChange;
    let browser = Browser::start().await;
    let app = spawn_app(Backend::Sqlite).await;

    let steps = |events: &'static [PaymentEvent], failure: Option<(&'static str, &'static str)>| {
        events.iter().map(move |&event| StatusChange {
            event,
            next_action: None,
            failure: (event == PaymentEvent::Failed).then_some(failure).flatten(),
            actor: "test",
            reason: &AuditReason::SettledFromReview,
            acquirer_operation_id: None,
        })
    };
    /// The outcome, the events that lead there, the failure they carry, the headline.
    type Case = (
        &'static str,
        &'static [PaymentEvent],
        Option<(&'static str, &'static str)>,
        &'static str,
    );
    let cases: [Case; 6] = [
        (
            "expired",
            &[PaymentEvent::Expired],
            None,
            "Время на оплату истекло",
        ),
        (
            "canceled",
            &[PaymentEvent::Canceled],
            None,
            "Платёж отменён",
        ),
        (
            "canceled_and_refunded",
            &[PaymentEvent::Failed],
            Some(("paid_without_three_ds", "not 3-D Secure authenticated")),
            "Платёж отменён",
        ),
        (
            "refunded",
            &[PaymentEvent::Succeeded, PaymentEvent::FullyRefunded],
            None,
            "Платёж возвращён",
        ),
        (
            "partly_refunded",
            &[PaymentEvent::Succeeded, PaymentEvent::PartiallyRefunded],
            None,
            "Оплачено",
        ),
        (
            "processing",
            &[PaymentEvent::Submitted],
            None,
            "Платёж обрабатывается",
        ),
    ];
    for (outcome, events, failure, headline) in cases {
        let answer: Value = app
            .http
            .post(app.url("/v1/public/payments"))
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(
                &json!({"supplier_id": "demo-electro", "account_number": "1234567890",
                          "amount": "2350.00", "email": "anna@example.ru"}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = answer["id"].as_str().unwrap_or_else(|| panic!("{answer}"));
        for change in steps(events, failure) {
            app.store
                .transition_payment(id.parse().unwrap(), &change)
                .await
                .unwrap();
        }
        // The last of the page's own reloads: what it says once it stops waiting.
        browser
            .open(&app.url(&format!("/pay/result/{id}?check=20")))
            .await;
        browser.find(&format!("h1[data-outcome={outcome}]")).await;
        assert_eq!(browser.text("#status").await, headline, "{outcome}");
        browser.screenshots(&format!("result-{outcome}")).await;
    }
    browser.quit().await;
}
