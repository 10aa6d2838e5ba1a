//! The SMS-payment flow through the real service: the grammar, every daily limit (with the day
//! boundary under a stopped clock), redelivery, rule 3, password resets, 3-D Secure, unknown
//! outcomes answered later through the outbox, and 20 SMS at once from one phone.

use oplata::domain::sms::{MAX_REPLY_CHARS, Reply};
use oplata::service::api_keys::Scope;
use oplata_providers::Amount;
use oplata_providers::moneta::sandbox::{ApiMode, ChargeBehaviour};
use serde_json::{Value, json};
use time::macros::datetime;

use crate::helpers::*;
use crate::saved_cards::{bind_card, card_app, code};

on_both_backends!(
    every_grammar_case_gets_its_own_reply_and_help_comes_once_a_day,
    three_malformed_sms_block_the_phone_until_midnight_in_moscow,
    a_payment_sms_charges_the_saved_card_once_per_account_and_day,
    a_redelivered_sms_gets_the_same_reply_and_never_a_second_charge,
    an_sms_can_never_be_the_first_payment_to_a_supplier,
    an_sms_after_a_password_reset_is_refused,
    a_challenge_fails_the_sms_charge_with_a_reply,
    an_unknown_outcome_answers_processing_and_the_result_follows_through_the_outbox,
    twenty_sms_at_once_from_one_phone_hold_every_limit,
    phones_are_linked_by_the_portal_and_bad_requests_are_refused,
    a_charge_left_running_by_a_dead_process_is_settled_on_redelivery,
    the_account_limit_follows_the_suppliers_day_and_the_phone_limits_the_sms_day,
    one_phone_pays_at_most_its_daily_count_and_amount,
);

const PHONE: &str = "+79161234567";
/// The test supplier "heat" (named after its id) and the simulator's MIR card.
const PAYEE: &str = "heat, карта *4242";

/// An app with Moneta suppliers, a gateway key, and alice's phone linked.
async fn sms_app(backend: Backend) -> (TestApp, String) {
    let app = card_app(backend).await;
    let gateway = app.key_with_scope(Scope::Sms).await;
    link(&app, "alice", PHONE).await;
    (app, gateway)
}

async fn link(app: &TestApp, user: &str, phone: &str) -> (u16, Value) {
    let response = app
        .http
        .put(app.url(&format!("/v1/users/{user}/sms-phone")))
        .bearer_auth(&app.portal_key)
        .json(&json!({ "phone": phone }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn send(app: &TestApp, key: &str, message_id: &str, from: &str, text: &str) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/v1/sms/inbound"))
        .bearer_auth(key)
        .json(&json!({
            "message_id": message_id, "from": from, "text": text,
            "received_at": "2026-11-22T10:00:00Z"
        }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Sends one SMS from alice's phone and returns the reply text; panics unless 200.
async fn sms(app: &TestApp, key: &str, text: &str) -> String {
    let (status, answer) = send(app, key, &uuid::Uuid::new_v4().to_string(), PHONE, text).await;
    assert_eq!(status, 200, "{answer}");
    let reply = answer["reply"].as_str().unwrap().to_owned();
    assert!(reply.chars().count() <= MAX_REPLY_CHARS, "{reply}");
    assert_eq!(answer["encoding"], "UCS-2");
    reply
}

fn amount(text: &str) -> Amount {
    Amount::parse_api(text).unwrap()
}

fn paid(value: &str, account: &str) -> String {
    Reply::Succeeded {
        amount: amount(value),
        account: account.into(),
        payee: Some(PAYEE.into()),
    }
    .text()
}

async fn payments_of(app: &TestApp, user: &str) -> Vec<oplata::store::PaymentRecord> {
    let search = oplata::store::PaymentSearch {
        limit: 1000,
        ..Default::default()
    };
    app.store
        .search_payments(&search)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.user_id.as_deref() == Some(user))
        .collect()
}

async fn every_grammar_case_gets_its_own_reply_and_help_comes_once_a_day(backend: Backend) {
    let (app, key) = sms_app(backend).await;
    bind_card(&app, "heat", "alice").await;

    assert_eq!(sms(&app, &key, "?").await, Reply::Help.text());
    assert_eq!(sms(&app, &key, " ? ").await, Reply::HelpAlreadySent.text());
    assert_eq!(
        sms(&app, &key, "ОПЛАТА 12345678").await,
        Reply::Malformed.text()
    );
    assert_eq!(
        sms(&app, &key, "pay 12345678 10,505").await,
        Reply::Malformed.text()
    );
    // Unparseable amounts and unknown words were two of three: the next good SMS still works.
    assert_eq!(
        sms(&app, &key, "оплата 12345678 100,50").await,
        paid("100.50", "12345678")
    );
    assert_eq!(
        sms(&app, &key, "ОПЛАТА 12AB 10").await,
        Reply::UnknownAccount.text()
    );
    assert_eq!(
        sms(&app, &key, "PAY 12345678 100000.01").await,
        Reply::AmountAboveLimit {
            max: amount("100000.00")
        }
        .text()
    );
    assert_eq!(
        sms(&app, &key, "PAY 12345678 5.00").await,
        Reply::AccountAlreadyPaidToday.text()
    );
}

async fn three_malformed_sms_block_the_phone_until_midnight_in_moscow(backend: Backend) {
    let (app, key) = sms_app(backend).await;
    // 23:59:30 in Moscow (UTC+3).
    app.services
        .clock
        .set(Some(datetime!(2026-11-22 20:59:30 UTC)));

    assert_eq!(sms(&app, &key, "привет").await, Reply::Malformed.text());
    assert_eq!(sms(&app, &key, "ОПЛАТА").await, Reply::Malformed.text());
    assert_eq!(
        sms(&app, &key, "1500").await,
        Reply::MalformedNowBlocked.text()
    );
    assert_eq!(sms(&app, &key, "?").await, Reply::Blocked.text());
    app.services
        .clock
        .set(Some(datetime!(2026-11-22 20:59:59 UTC)));
    assert_eq!(sms(&app, &key, "?").await, Reply::Blocked.text());

    // Midnight in Moscow: a new day, nothing blocked, help available again.
    app.services
        .clock
        .set(Some(datetime!(2026-11-22 21:00:00 UTC)));
    assert_eq!(sms(&app, &key, "?").await, Reply::Help.text());
}

async fn a_payment_sms_charges_the_saved_card_once_per_account_and_day(backend: Backend) {
    let (app, key) = sms_app(backend).await;
    let card = bind_card(&app, "heat", "alice").await;
    let before = app.moneta.charges_made();
    app.services
        .clock
        .set(Some(datetime!(2026-11-22 12:00 UTC)));

    assert_eq!(
        sms(&app, &key, "ОПЛАТА 12345678 1500,50").await,
        paid("1500.50", "12345678")
    );
    assert_eq!(app.moneta.charges_made(), before + 1);
    let charged = payments_of(&app, "alice")
        .await
        .into_iter()
        .find(|p| p.payment_method == "saved_card")
        .expect("the SMS made a saved-card payment");
    assert_eq!(charged.status, "succeeded");
    assert_eq!(charged.amount_minor, 150_050);
    assert_eq!(charged.saved_card_id, Some(card));

    assert_eq!(
        sms(&app, &key, "ОПЛАТА 12345678 10").await,
        Reply::AccountAlreadyPaidToday.text()
    );
    // Another account of the same supplier is paid by SMS only once it was paid with the card
    // entered (a typo pays nobody); then it is another account, with its own daily limit.
    assert_eq!(
        sms(&app, &key, "ОПЛАТА 87654321 10").await,
        Reply::FirstPaymentToAccount.text()
    );
    pay_with_card_entry(&app, "heat", "alice", "87654321").await;
    assert_eq!(
        sms(&app, &key, "ОПЛАТА 87654321 10").await,
        paid("10.00", "87654321")
    );
    app.services
        .clock
        .set(Some(datetime!(2026-11-23 12:00 UTC)));
    assert_eq!(
        sms(&app, &key, "ОПЛАТА 12345678 10").await,
        paid("10.00", "12345678")
    );
    // Three SMS charges and the card-entry payment of the second account.
    assert_eq!(app.moneta.charges_made(), before + 4);
}

async fn a_redelivered_sms_gets_the_same_reply_and_never_a_second_charge(backend: Backend) {
    let (app, key) = sms_app(backend).await;
    bind_card(&app, "heat", "alice").await;
    let before = app.moneta.charges_made();

    let (_, first) = send(&app, &key, "msg-1", PHONE, "ОПЛАТА 12345678 100").await;
    let (status, again) = send(&app, &key, "msg-1", PHONE, "ОПЛАТА 12345678 100").await;

    assert_eq!(status, 200);
    assert_eq!(first["reply"], paid("100.00", "12345678"));
    assert_eq!(again, first);
    assert_eq!(app.moneta.charges_made(), before + 1);
    // A redelivered malformed SMS does not count twice either.
    for _ in 0..3 {
        let (_, answer) = send(&app, &key, "msg-2", PHONE, "что-то").await;
        assert_eq!(answer["reply"], Reply::Malformed.text());
    }
    assert_eq!(sms(&app, &key, "?").await, Reply::Help.text());
}

async fn an_sms_can_never_be_the_first_payment_to_a_supplier(backend: Backend) {
    let (app, key) = sms_app(backend).await;
    bind_card(&app, "heat", "alice").await;
    let before = app.moneta.charges_made();

    // demo-electro takes 10-digit accounts; alice has never paid it with a card entered.
    assert_eq!(
        sms(&app, &key, "ОПЛАТА 1234567890 100").await,
        Reply::FirstPaymentToSupplier.text()
    );
    // The fines supplier: no earlier payment there either (and no fines card).
    link(&app, "bob", "+79160000001").await;
    let (_, answer) = send(&app, &key, "bob-1", "+79160000001", "ОПЛАТА 12345678 10").await;
    assert_eq!(answer["reply"], Reply::FirstPaymentToSupplier.text());
    assert_eq!(app.moneta.charges_made(), before);
}

async fn an_sms_after_a_password_reset_is_refused(backend: Backend) {
    let (app, key) = sms_app(backend).await;
    bind_card(&app, "heat", "alice").await;
    let reset = app
        .http
        .post(app.url("/v1/users/alice/password-reset"))
        .bearer_auth(&app.portal_key)
        .send()
        .await
        .unwrap();
    assert!(reset.status().is_success());
    let before = app.moneta.charges_made();

    assert_eq!(
        sms(&app, &key, "ОПЛАТА 12345678 100").await,
        Reply::NoSavedCard.text()
    );
    assert_eq!(app.moneta.charges_made(), before);
    // The refusal did not use up the account's day: a card bound again pays.
    bind_card(&app, "heat", "alice").await;
    assert_eq!(
        sms(&app, &key, "ОПЛАТА 12345678 100").await,
        paid("100.00", "12345678")
    );
}

async fn a_challenge_fails_the_sms_charge_with_a_reply(backend: Backend) {
    let (app, key) = sms_app(backend).await;
    bind_card(&app, "heat", "alice").await;
    app.moneta.set_next_charge(ChargeBehaviour::Challenge);

    assert_eq!(
        sms(&app, &key, "ОПЛАТА 12345678 100").await,
        Reply::ThreeDsRequired.text()
    );
    let charge = payments_of(&app, "alice")
        .await
        .into_iter()
        .find(|p| p.payment_method == "saved_card")
        .unwrap();
    assert_eq!(charge.status, "canceled");
    assert_eq!(charge.failure_code.as_deref(), Some("three_ds_required"));

    pay_with_card_entry(&app, "heat", "alice", "87654321").await;
    app.moneta
        .set_next_charge(ChargeBehaviour::InsufficientFunds);
    assert_eq!(
        sms(&app, &key, "ОПЛАТА 87654321 100").await,
        Reply::Failed {
            amount: amount("100")
        }
        .text()
    );
}

async fn an_unknown_outcome_answers_processing_and_the_result_follows_through_the_outbox(
    backend: Backend,
) {
    let (app, key) = sms_app(backend).await;
    bind_card(&app, "heat", "alice").await;
    app.moneta.set_api_mode(ApiMode::DropAfterCharging);

    let (_, answer) = send(&app, &key, "lost-1", PHONE, "ОПЛАТА 12345678 250").await;
    assert_eq!(answer["reply"], Reply::Processing.text());
    app.moneta.set_api_mode(ApiMode::Normal);
    let charge = payments_of(&app, "alice")
        .await
        .into_iter()
        .find(|p| p.payment_method == "saved_card")
        .unwrap();
    assert_eq!(charge.status, "processing");
    assert!(
        app.store
            .outbox_for(charge.id)
            .await
            .unwrap()
            .iter()
            .all(|e| e.event_type != "sms.reply")
    );

    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
    oplata::workers::reconciliation::reconcile_due(
        &app.services,
        later,
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap();

    let events = app.store.outbox_for(charge.id).await.unwrap();
    let replies: Vec<Value> = events
        .iter()
        .filter(|e| e.event_type == "sms.reply")
        .map(|e| serde_json::from_str(&e.payload).unwrap())
        .collect();
    assert_eq!(replies.len(), 1, "{events:?}");
    assert_eq!(replies[0]["to"], PHONE);
    assert_eq!(replies[0]["message_id"], "lost-1");
    assert_eq!(replies[0]["text"], paid("250.00", "12345678"));
    // The redelivery of the SMS still gets what was answered then.
    let (_, again) = send(&app, &key, "lost-1", PHONE, "ОПЛАТА 12345678 250").await;
    assert_eq!(again["reply"], Reply::Processing.text());
}

async fn twenty_sms_at_once_from_one_phone_hold_every_limit(backend: Backend) {
    let (app, key) = sms_app(backend).await;
    bind_card(&app, "heat", "alice").await;
    let before = app.moneta.charges_made();

    let many = |text: &'static str| {
        let app = &app;
        let key = &key;
        futures::future::join_all((0..20).map(move |_| async move {
            let (status, answer) =
                send(app, key, &uuid::Uuid::new_v4().to_string(), PHONE, text).await;
            assert_eq!(status, 200, "{answer}");
            answer["reply"].as_str().unwrap().to_owned()
        }))
    };
    let payments = many("ОПЛАТА 12345678 100").await;
    let helps = many("?").await;
    let malformed = many("ой").await;

    let count =
        |replies: &[String], reply: Reply| replies.iter().filter(|r| **r == reply.text()).count();
    assert_eq!(
        count(
            &payments,
            Reply::Succeeded {
                amount: amount("100"),
                account: "12345678".into(),
                payee: Some(PAYEE.into()),
            }
        ),
        1,
        "{payments:?}"
    );
    assert_eq!(
        count(&payments, Reply::AccountAlreadyPaidToday),
        19,
        "{payments:?}"
    );
    assert_eq!(app.moneta.charges_made(), before + 1);
    assert_eq!(count(&helps, Reply::Help), 1, "{helps:?}");
    assert_eq!(count(&helps, Reply::HelpAlreadySent), 19);
    assert_eq!(count(&malformed, Reply::Malformed), 2, "{malformed:?}");
    assert_eq!(count(&malformed, Reply::MalformedNowBlocked), 1);
    assert_eq!(count(&malformed, Reply::Blocked), 17);
}

async fn phones_are_linked_by_the_portal_and_bad_requests_are_refused(backend: Backend) {
    let (app, key) = sms_app(backend).await;

    let (status, answer) = send(&app, &key, "x-1", "+79990000000", "?").await;
    assert_eq!(status, 200);
    assert_eq!(answer["reply"], Reply::Help.text(), "help needs no link");
    let (_, answer) = send(&app, &key, "x-2", "+79990000000", "ОПЛАТА 12345678 10").await;
    assert_eq!(answer["reply"], Reply::PhoneNotLinked.text());

    let (status, answer) = link(&app, "bob", PHONE).await;
    assert_eq!((status, code(&answer)), (409, "phone_already_linked"));
    let (status, answer) = link(&app, "bob", "89161234567").await;
    assert_eq!((status, code(&answer)), (422, "invalid_phone"));
    let (status, answer) = send(&app, &key, "x-3", "8916", "?").await;
    assert_eq!((status, code(&answer)), (422, "invalid_phone"));
    let (status, answer) = send(&app, &key, "", PHONE, "?").await;
    assert_eq!((status, code(&answer)), (422, "invalid_message_id"));
    let (status, answer) = send(&app, &app.portal_key, "x-4", PHONE, "?").await;
    assert_eq!((status, code(&answer)), (403, "forbidden_scope"));
    let (status, answer) = send(&app, &key, "x-5", PHONE, &"я".repeat(1001)).await;
    assert_eq!((status, code(&answer)), (422, "invalid_sms_text"));

    let unlink = app
        .http
        .delete(app.url("/v1/users/alice/sms-phone"))
        .bearer_auth(&app.portal_key)
        .send()
        .await
        .unwrap();
    assert_eq!(unlink.status(), 204);
    let (_, answer) = send(&app, &key, "x-6", PHONE, "ОПЛАТА 12345678 10").await;
    assert_eq!(answer["reply"], Reply::PhoneNotLinked.text());
    // Free now: bob may take it.
    let (status, _) = link(&app, "bob", PHONE).await;
    assert_eq!(status, 200);
}

async fn a_charge_left_running_by_a_dead_process_is_settled_on_redelivery(backend: Backend) {
    let (app, key) = sms_app(backend).await;
    bind_card(&app, "heat", "alice").await;
    let now = time::OffsetDateTime::now_utc();
    app.services.clock.set(Some(now));
    // Accepted, then the process died before the charge started.
    let command = oplata::domain::sms::parse("ОПЛАТА 12345678 100");
    let day = oplata::domain::sms::local_day(now, &app.services.settings.sms_time_zone());
    let claim = oplata::store::SmsClaim {
        message_id: "dead-1",
        phone: PHONE,
        local_day: &day,
        account_day: None,
        command: &command,
        supplier_id: Some("heat"),
        payment_id: uuid::Uuid::now_v7(),
        payee: Some(PAYEE),
        received_at: now,
        now,
    };
    assert!(matches!(
        app.store
            .claim_sms(&claim, |_| oplata::store::SmsJudgement {
                counted_as: oplata::domain::sms::kind::PAYMENT,
                reply: None,
            })
            .await
            .unwrap(),
        oplata::store::SmsClaimResult::Accepted
    ));

    let (status, answer) = send(&app, &key, "dead-1", PHONE, "ОПЛАТА 12345678 100").await;
    assert_eq!((status, code(&answer)), (409, "sms_in_progress"));
    app.services
        .clock
        .set(Some(now + time::Duration::minutes(3)));
    let (status, answer) = send(&app, &key, "dead-1", PHONE, "ОПЛАТА 12345678 100").await;
    assert_eq!(status, 200);
    assert_eq!(answer["reply"], Reply::NotDone.text());
    // Nothing was charged, so the account's day is not used up.
    assert_eq!(
        sms(&app, &key, "ОПЛАТА 12345678 100").await,
        paid("100.00", "12345678")
    );
}

async fn the_account_limit_follows_the_suppliers_day_and_the_phone_limits_the_sms_day(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |settings| {
        crate::saved_cards::with_card_suppliers(settings);
        for supplier in &mut settings.suppliers {
            if supplier.id == "heat" {
                supplier.time_zone = Some("Asia/Yekaterinburg".into());
            }
        }
    })
    .await;
    let key = app
        .key_with_scope(oplata::service::api_keys::Scope::Sms)
        .await;
    link(&app, "alice", PHONE).await;
    bind_card(&app, "heat", "alice").await;

    // 23:30 in Yekaterinburg (UTC+5), 21:30 in Moscow.
    app.services
        .clock
        .set(Some(datetime!(2026-11-22 18:30 UTC)));
    assert_eq!(sms(&app, &key, "?").await, Reply::Help.text());
    assert_eq!(
        sms(&app, &key, "ОПЛАТА 12345678 100").await,
        paid("100.00", "12345678")
    );
    assert_eq!(
        sms(&app, &key, "ОПЛАТА 12345678 100").await,
        Reply::AccountAlreadyPaidToday.text()
    );

    // 00:30 in Yekaterinburg: a new day for the supplier, the same day in Moscow for the phone.
    app.services
        .clock
        .set(Some(datetime!(2026-11-22 19:30 UTC)));
    assert_eq!(
        sms(&app, &key, "ОПЛАТА 12345678 100").await,
        paid("100.00", "12345678")
    );
    assert_eq!(sms(&app, &key, "?").await, Reply::HelpAlreadySent.text());
}

/// A payment of `account` with the card entered on the acquirer's form (no card saved).
async fn pay_with_card_entry(app: &TestApp, supplier: &str, user: &str, account: &str) {
    let mut body = crate::saved_cards::payment(supplier, user);
    body["account_number"] = account.into();
    let (status, created) = crate::saved_cards::post(app, &body).await;
    assert_eq!(status, 201, "{created}");
    crate::saved_cards::pay_on_form(app, &created, "pay").await;
}

async fn one_phone_pays_at_most_its_daily_count_and_amount(backend: Backend) {
    // Heat takes up to 100,000.00 a payment; the phone, 2 payments and 1,000.00 a day.
    let app = spawn_app_with(backend, |settings| {
        crate::saved_cards::with_card_suppliers(settings);
        settings.sms.payments_per_phone_per_day = 2;
        settings.sms.amount_per_phone_per_day = "1000.00".into();
    })
    .await;
    let key = app.key_with_scope(Scope::Sms).await;
    link(&app, "alice", PHONE).await;
    bind_card(&app, "heat", "alice").await;
    for account in ["87654321", "11112222"] {
        pay_with_card_entry(&app, "heat", "alice", account).await;
    }
    let before = app.moneta.charges_made();

    assert_eq!(
        sms(&app, &key, "ОПЛАТА 12345678 1000,01").await,
        Reply::PhoneAmountReached {
            max: amount("1000.00")
        }
        .text(),
        "one SMS of 1,000.01 is above the phone's day"
    );
    assert_eq!(
        sms(&app, &key, "ОПЛАТА 12345678 600").await,
        paid("600.00", "12345678")
    );
    assert_eq!(
        sms(&app, &key, "ОПЛАТА 87654321 400,01").await,
        Reply::PhoneAmountReached {
            max: amount("1000.00")
        }
        .text()
    );
    assert_eq!(
        sms(&app, &key, "ОПЛАТА 87654321 400").await,
        paid("400.00", "87654321")
    );
    assert_eq!(
        sms(&app, &key, "ОПЛАТА 11112222 1").await,
        Reply::PhoneCountReached.text()
    );
    assert_eq!(app.moneta.charges_made(), before + 2);
}
