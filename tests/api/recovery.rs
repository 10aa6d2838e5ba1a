//! Exactly-once across crashes and lost answers, on both databases: a request retried after its
//! process died resumes what the first attempt started (never a second payment, order id or
//! refund), answers that never came are asked for again, and every money state has an exit
//! (settled by the acquirer's records, declared never to have happened past a deadline, or
//! handed to a person who settles it on the review list).
//!
//! A crash is reproduced exactly as a killed process leaves the database: the key still in
//! progress with its lease run out, and the rows as far as the last committed recovery point.

use oplata_providers::moneta::sandbox::ApiMode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::saved_cards::{bind_card, card_app, code, post, saved_card_payment};

on_both_backends!(
    a_charge_in_two_commits_replays_its_answer_and_refuses_its_key_for_another_request,
    a_charge_whose_process_died_after_the_debit_is_resumed_not_charged_twice,
    a_charge_that_never_reached_the_acquirer_is_sent_once_more_under_the_same_order,
    a_charge_the_acquirer_never_received_fails_after_the_deadline,
    a_charge_that_cannot_be_asked_about_for_an_hour_goes_to_a_person,
    a_payment_whose_process_died_before_the_acquirer_page_is_resumed_not_duplicated,
    an_unreadable_recurring_answer_is_unknown_and_never_shown_to_the_client,
    a_refund_whose_answer_was_lost_is_found_by_its_reference_on_retry,
    a_refund_the_acquirer_never_received_fails_after_the_deadline_and_frees_its_amount,
    a_refund_that_cannot_be_looked_up_goes_to_a_person_who_settles_it,
    a_payment_in_review_is_settled_by_an_operator_with_a_note,
    every_simulator_behaviour_is_reachable_over_http,
);

async fn post_with_key(app: &TestApp, key: &str, body: &Value) -> (u16, Value) {
    let response = app
        .post_payment(Some(&app.portal_key), Some(key), &body.to_string())
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn payments_of_user(app: &TestApp, user: &str) -> usize {
    app.store
        .search_payments(&oplata::store::PaymentSearch {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.user_id.as_deref() == Some(user))
        .count()
}

/// A saved-card charge under a fresh key takes two commits, the key answered in the second:
/// the answer is there for a retry at once, and the key is bound to that request.
async fn a_charge_in_two_commits_replays_its_answer_and_refuses_its_key_for_another_request(
    backend: Backend,
) {
    let app = card_app(backend).await;
    let card = bind_card(&app, "heat", "alice").await;
    let before = app.moneta.charges_made();
    let key = Uuid::new_v4().to_string();
    let body = saved_card_payment("heat", "alice", card);

    let (status, first) = post_with_key(&app, &key, &body).await;
    let replay = app
        .post_payment(Some(&app.portal_key), Some(&key), &body.to_string())
        .await;
    let mut other = body.clone();
    other["amount"] = "1600.00".into();
    let (reused, refusal) = post_with_key(&app, &key, &other).await;

    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), first);
    assert_eq!(reused, 422, "{refusal}");
    assert_eq!(code(&refusal), "idempotency_key_reused");
    assert_eq!(app.moneta.charges_made(), before + 1, "one debit");
    assert_eq!(payments_of_user(&app, "alice").await, 2);
}

async fn a_charge_whose_process_died_after_the_debit_is_resumed_not_charged_twice(
    backend: Backend,
) {
    let app = card_app(backend).await;
    let card = bind_card(&app, "heat", "alice").await;
    let before = app.moneta.charges_made();
    let key = Uuid::new_v4().to_string();
    app.moneta.set_api_mode(ApiMode::DropAfterCharging);
    let (_, first) = post_with_key(&app, &key, &saved_card_payment("heat", "alice", card)).await;
    app.forget_answer_as_if_the_process_died(&key).await;
    app.moneta.set_api_mode(ApiMode::Normal);

    let (status, retried) =
        post_with_key(&app, &key, &saved_card_payment("heat", "alice", card)).await;

    assert_eq!(status, 201, "{retried}");
    assert_eq!(retried["id"], first["id"], "the same payment, resumed");
    assert_eq!(retried["status"], "succeeded", "{retried}");
    assert_eq!(app.moneta.charges_made(), before + 1, "one debit");
    assert_eq!(
        payments_of_user(&app, "alice").await,
        2,
        "the binding payment and one charge"
    );
}

async fn a_charge_that_never_reached_the_acquirer_is_sent_once_more_under_the_same_order(
    backend: Backend,
) {
    let app = card_app(backend).await;
    let card = bind_card(&app, "heat", "alice").await;
    let before = app.moneta.charges_made();
    let key = Uuid::new_v4().to_string();
    app.moneta.set_api_mode(ApiMode::ServerError);
    let (_, first) = post_with_key(&app, &key, &saved_card_payment("heat", "alice", card)).await;
    assert_eq!(first["status"], "processing", "{first}");
    let order = app
        .payment_record(first["id"].as_str().unwrap())
        .await
        .acquirer_order_id;
    app.forget_answer_as_if_the_process_died(&key).await;
    app.moneta.set_api_mode(ApiMode::Normal);

    let (status, retried) =
        post_with_key(&app, &key, &saved_card_payment("heat", "alice", card)).await;

    assert_eq!(status, 201, "{retried}");
    assert_eq!(retried["id"], first["id"]);
    assert_eq!(retried["status"], "succeeded", "{retried}");
    assert_eq!(app.moneta.charges_made(), before + 1);
    assert_eq!(
        app.moneta.operation_by_transaction(&order).unwrap().amount,
        oplata_providers::Amount::parse_api("1500.00").unwrap(),
        "charged under the first attempt's order id"
    );
}

async fn a_charge_the_acquirer_never_received_fails_after_the_deadline(backend: Backend) {
    let app = card_app(backend).await;
    let card = bind_card(&app, "heat", "alice").await;
    let before = app.moneta.charges_made();
    app.moneta.set_api_mode(ApiMode::ServerError);
    let key = Uuid::new_v4().to_string();
    let (_, charge) = post_with_key(&app, &key, &saved_card_payment("heat", "alice", card)).await;
    app.moneta.set_api_mode(ApiMode::Normal);
    let id = charge["id"].as_str().unwrap();

    app.reconcile_at(5).await;
    assert_eq!(
        app.payment_record(id).await.status,
        "processing",
        "too early to say it never happened"
    );
    app.reconcile_at(16).await;

    let settled = app.payment_record(id).await;
    assert_eq!(settled.status, "failed");
    assert_eq!(
        settled.failure_code.as_deref(),
        Some("not_received_by_acquirer")
    );
    assert_eq!(app.moneta.charges_made(), before, "nothing was debited");
}

async fn a_charge_that_cannot_be_asked_about_for_an_hour_goes_to_a_person(backend: Backend) {
    let app = card_app(backend).await;
    let card = bind_card(&app, "heat", "alice").await;
    app.moneta.set_api_mode(ApiMode::ServerError);
    let (_, charge) = post(&app, &saved_card_payment("heat", "alice", card)).await;
    let id = charge["id"].as_str().unwrap();

    app.reconcile_at(30).await;
    assert!(app.payment_record(id).await.review_reason.is_none());
    app.reconcile_at(61).await;

    let record = app.payment_record(id).await;
    assert_eq!(record.status, "processing");
    assert!(
        record
            .review_reason
            .as_deref()
            .unwrap_or_default()
            .contains("an hour"),
        "{record:?}"
    );
    assert!(
        record.next_check_at.is_some(),
        "and it is still asked about"
    );
}

async fn a_payment_whose_process_died_before_the_acquirer_page_is_resumed_not_duplicated(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let key = Uuid::new_v4().to_string();
    let (_, first) = post_with_key(&app, &key, &demo_payment_body()).await;
    let id = first["id"].as_str().unwrap();
    // The process died after the payment's transaction and before it was sent to the page (a
    // state left by an acquirer whose page must be asked for over the network, or by an earlier
    // version: the demo acquirers build the page in the creating transaction).
    app.execute_sql(format!(
        "UPDATE payments SET status = 'created', next_action = NULL WHERE acquirer_order_id = '{}'",
        app.payment_record(id).await.acquirer_order_id
    ))
    .await;
    app.forget_answer_as_if_the_process_died(&key).await;
    let count = app.store.count_payments().await.unwrap();

    let (status, retried) = post_with_key(&app, &key, &demo_payment_body()).await;

    assert_eq!(status, 201, "{retried}");
    assert_eq!(retried["id"], first["id"]);
    assert_eq!(retried["status"], "requires_action");
    assert_eq!(
        retried["next_action"], first["next_action"],
        "the same order"
    );
    assert_eq!(app.store.count_payments().await.unwrap(), count);
    let (again, replayed) = post_with_key(&app, &key, &demo_payment_body()).await;
    assert_eq!(again, 201);
    assert_eq!(
        replayed["id"], first["id"],
        "the answer is kept from now on"
    );
}

async fn an_unreadable_recurring_answer_is_unknown_and_never_shown_to_the_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut binding = demo_payment_body();
    binding["save_card"] = true.into();
    let created = app.create_payment(&binding).await;
    let url = created["next_action"]["url"].as_str().unwrap().to_owned();
    app.http.get(&url).send().await.unwrap();
    let inv_id = param(&query_params(&url), "InvId");
    app.sandbox.decide(DEMO_LOGIN, &inv_id, true).await.unwrap();
    let cards: Value = app
        .http
        .get(app.url("/v1/users/user-42/cards"))
        .bearer_auth(&app.portal_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let card: Uuid = cards["cards"][0]["id"].as_str().unwrap().parse().unwrap();
    let before = app.sandbox.charges_made();
    app.sandbox.set_drop_result_notifications(true);
    app.sandbox
        .set_recurring_mode(oplata_providers::sandbox::ApiMode::Garbage);

    let mut charge = demo_payment_body();
    charge["payment_method"] = json!({"type": "saved_card", "card_id": card});
    let key = Uuid::new_v4().to_string();
    let (status, answer) = post_with_key(&app, &key, &charge).await;

    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        answer["status"], "processing",
        "an HTML page is no decline: {answer}"
    );
    assert!(
        !answer
            .to_string()
            .contains("Service Temporarily Unavailable"),
        "no raw acquirer body in an answer: {answer}"
    );
    app.sandbox
        .set_recurring_mode(oplata_providers::sandbox::ApiMode::Normal);
    app.reconcile_at(1).await;
    assert_eq!(
        app.payment_record(answer["id"].as_str().unwrap())
            .await
            .status,
        "succeeded",
        "the status query found the charge the acquirer made"
    );
    assert_eq!(app.sandbox.charges_made(), before + 1, "one debit");
}

async fn desk_post(app: &TestApp, desk: &str, path: &str, body: Value, key: &str) -> (u16, Value) {
    let response = app
        .http
        .post(app.url(path))
        .bearer_auth(desk)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// A Moneta saved-card charge of 1500.00 that succeeded: its payment id and operation id.
async fn paid_charge(app: &TestApp) -> (String, u64) {
    let card = bind_card(app, "heat", "alice").await;
    let (_, charged) = post_with_key(
        app,
        &Uuid::new_v4().to_string(),
        &saved_card_payment("heat", "alice", card),
    )
    .await;
    assert_eq!(charged["status"], "succeeded", "{charged}");
    let id = charged["id"].as_str().unwrap().to_owned();
    let operation = app
        .payment_record(&id)
        .await
        .acquirer_operation_id
        .unwrap()
        .parse()
        .unwrap();
    (id, operation)
}

fn refund_body(amount: &str) -> Value {
    json!({"amount": amount, "reason": "overpaid", "operator": "olga"})
}

async fn a_refund_whose_answer_was_lost_is_found_by_its_reference_on_retry(backend: Backend) {
    let app = card_app(backend).await;
    let desk = app.desk_key_for("olga").await;
    let (id, operation) = paid_charge(&app).await;
    let path = format!("/v1/payments/{id}/refunds");
    let key = Uuid::new_v4().to_string();
    app.moneta.set_api_mode(ApiMode::Garbage);
    let (status, first) = desk_post(&app, &desk, &path, refund_body("500.00"), &key).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "pending", "{first}");
    app.forget_answer_as_if_the_process_died(&key).await;
    app.moneta.set_api_mode(ApiMode::Normal);

    let (status, retried) = desk_post(&app, &desk, &path, refund_body("500.00"), &key).await;

    assert_eq!(status, 201, "{retried}");
    assert_eq!(retried["id"], first["id"], "the same refund, resumed");
    assert_eq!(retried["status"], "succeeded", "{retried}");
    assert_eq!(app.moneta.refunds_of(operation).len(), 1, "one refund");
    assert_eq!(app.payment_record(&id).await.status, "partially_refunded");
}

async fn a_refund_the_acquirer_never_received_fails_after_the_deadline_and_frees_its_amount(
    backend: Backend,
) {
    let app = card_app(backend).await;
    let desk = app.desk_key_for("olga").await;
    let (id, operation) = paid_charge(&app).await;
    let path = format!("/v1/payments/{id}/refunds");
    app.moneta.set_api_mode(ApiMode::ServerError);
    let (_, lost) = desk_post(
        &app,
        &desk,
        &path,
        refund_body("1500.00"),
        &Uuid::new_v4().to_string(),
    )
    .await;
    assert_eq!(lost["status"], "pending", "{lost}");
    app.moneta.set_api_mode(ApiMode::Normal);

    app.reconcile_at(5).await;
    let refund_id: Uuid = lost["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        app.store
            .get_refund(refund_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        "pending",
        "too early to say it never happened"
    );
    app.reconcile_at(16).await;

    let settled = app.store.get_refund(refund_id).await.unwrap().unwrap();
    assert_eq!(settled.status, "failed");
    assert_eq!(settled.failure_code.as_deref(), Some("refund_not_received"));
    assert!(app.moneta.refunds_of(operation).is_empty());
    let (status, again) = desk_post(
        &app,
        &desk,
        &path,
        refund_body("1500.00"),
        &Uuid::new_v4().to_string(),
    )
    .await;
    assert_eq!(status, 201, "the amount is free again: {again}");
    assert_eq!(again["status"], "succeeded");
}

async fn a_refund_that_cannot_be_looked_up_goes_to_a_person_who_settles_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let desk = app.desk_key_for("olga").await;
    let (payment, inv_id) = app.paid_demo_payment().await;
    let id = payment["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/payments/{id}/refunds");
    let key = Uuid::new_v4().to_string();
    let (_, first) = desk_post(&app, &desk, &path, refund_body("500.00"), &key).await;
    // The process died after Robokassa refunded and before the answer was recorded.
    app.execute_sql(format!(
        "UPDATE refunds SET status = 'pending', acquirer_refund_id = NULL WHERE payment_id IN \
         (SELECT id FROM payments WHERE acquirer_order_id = '{inv_id}' AND acquirer = 'robokassa')"
    ))
    .await;
    app.execute_sql(format!(
        "UPDATE payments SET status = 'succeeded' WHERE acquirer_order_id = '{inv_id}' AND acquirer = 'robokassa'"
    ))
    .await;
    app.forget_answer_as_if_the_process_died(&key).await;

    let (status, retried) = desk_post(&app, &desk, &path, refund_body("500.00"), &key).await;

    assert_eq!(status, 201, "{retried}");
    assert_eq!(retried["id"], first["id"]);
    assert_eq!(retried["status"], "pending");
    assert!(
        retried["review_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("cabinet"),
        "{retried}"
    );
    assert_eq!(
        app.sandbox.refunded(DEMO_LOGIN, &inv_id),
        50_000,
        "never sent a second time"
    );
    let listed: Value = app
        .http
        .get(app.url("/v1/review"))
        .bearer_auth(&desk)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["refunds"][0]["id"], first["id"], "{listed}");
    let refund_id = first["id"].as_str().unwrap();
    let resolve = |outcome: &'static str| {
        let (app, desk) = (&app, &desk);
        async move {
            desk_post(
                app,
                desk,
                &format!("/v1/refunds/{refund_id}/review"),
                json!({"outcome": outcome, "note": "seen in the cabinet: refunded 12.12", "operator": "olga"}),
                "unused",
            )
            .await
        }
    };
    let (status, refused) = resolve("acknowledged").await;
    assert_eq!(status, 422);
    assert_eq!(code(&refused), "invalid_resolution");

    let (status, settled) = resolve("happened").await;

    assert_eq!(status, 200, "{settled}");
    assert_eq!(settled["status"], "succeeded");
    assert_eq!(settled["resolved_by"], "operator:olga");
    assert_eq!(app.payment_record(&id).await.status, "partially_refunded");
    let (status, twice) = resolve("never_happened").await;
    assert_eq!(status, 409);
    assert_eq!(code(&twice), "not_in_review");
    let audit = app.store.payment_audit(id.parse().unwrap()).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.actor == "operator:olga" && a.reason.contains("seen in the cabinet")),
        "the audit trail keeps who settled it and why"
    );
}

async fn a_payment_in_review_is_settled_by_an_operator_with_a_note(backend: Backend) {
    let app = spawn_app(backend).await;
    let desk = app.desk_key_for("olga").await;
    let mut water = demo_payment_body();
    water["supplier_id"] = "demo-water".into();
    water["account_number"] = "00123456".into();
    let netpay = app.create_payment(&water).await;
    let id = netpay["id"].as_str().unwrap();
    app.reconcile_at(31).await;
    assert!(app.payment_record(id).await.review_reason.is_some());
    let resolve = |outcome: &'static str, note: &'static str| {
        let (app, desk) = (&app, &desk);
        async move {
            desk_post(
                app,
                desk,
                &format!("/v1/payments/{id}/review"),
                json!({"outcome": outcome, "note": note, "operator": "olga"}),
                "unused",
            )
            .await
        }
    };
    let (status, no_note) = resolve("never_happened", " ").await;
    assert_eq!(status, 422, "{no_note}");

    let (status, settled) = resolve("never_happened", "no such order in NetPay's cabinet").await;

    assert_eq!(status, 200, "{settled}");
    assert_eq!(settled["status"], "failed");
    assert_eq!(settled["failure"]["code"], "settled_by_operator");
    let record = app.payment_record(id).await;
    assert!(record.review_reason.is_none(), "off the list");
    let listed: Value = app
        .http
        .get(app.url("/v1/review"))
        .bearer_auth(&desk)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["payments"], json!([]));
    let (status, again) = resolve("happened", "changed my mind").await;
    assert_eq!(status, 409, "{again}");
}

async fn control(app: &TestApp, acquirer: &str, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.url(&format!("/sandbox/{acquirer}/control")))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn every_simulator_behaviour_is_reachable_over_http(backend: Backend) {
    let app = card_app(backend).await;
    let card = bind_card(&app, "heat", "alice").await;

    assert_eq!(
        control(&app, "moneta", json!({"next_charge": "decline"}))
            .await
            .0,
        204
    );
    let (_, declined) = post(&app, &saved_card_payment("heat", "alice", card)).await;
    assert_eq!(declined["status"], "failed", "{declined}");
    control(&app, "moneta", json!({"next_charge": "challenge"})).await;
    let (_, challenged) = post(&app, &saved_card_payment("heat", "alice", card)).await;
    assert_eq!(challenged["status"], "requires_action", "{challenged}");
    control(&app, "moneta", json!({"api": {"mode": "act_then_drop"}})).await;
    let (_, dropped) = post(&app, &saved_card_payment("heat", "alice", card)).await;
    assert_eq!(dropped["status"], "processing", "{dropped}");
    control(&app, "moneta", json!({"api": {"mode": "normal"}})).await;

    let ledger: Value = app
        .http
        .get(app.url("/sandbox/moneta/ledger"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order = app
        .payment_record(dropped["id"].as_str().unwrap())
        .await
        .acquirer_order_id;
    assert!(
        ledger["operations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["transaction_id"] == order.as_str() && o["status"] == "SUCCEED"),
        "the acquirer's books show the charge whose answer was dropped: {ledger}"
    );
    let (status, refused) = control(&app, "robokassa", json!({"next_charge": "challenge"})).await;
    assert_eq!(status, 422, "{refused}");
    let (status, _) = control(&app, "net_pay", json!({"notifications": false})).await;
    assert_eq!(status, 204);
    let (status, malformed) = control(&app, "moneta", json!({"api": "sometimes"})).await;
    assert_eq!(status, 422, "{malformed}");
}
