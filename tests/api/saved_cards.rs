//! Saved cards through the real service: binding with 3-D Secure, rules 2 and 3, deletion,
//! password reset racing with charges, challenges, lost answers, key rotation, and the token
//! never leaving the vault.

use oplata::config::{AcquirerSettings, Settings, SupplierSettings};
use oplata::domain::supplier::PaymentType;
use oplata::service::cards;
use oplata_providers::moneta::MonetaSettings;
use oplata_providers::moneta::sandbox::{ApiMode, ChargeBehaviour, DEMO_OTP};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

on_both_backends!(
    a_binding_payment_saves_a_card_that_then_pays_without_card_entry,
    a_utilities_card_is_refused_for_fines_and_binding_again_makes_a_second_token,
    a_saved_card_is_refused_for_a_new_supplier_until_a_full_entry_payment_there,
    a_password_reset_revokes_every_card_even_while_20_charges_race_with_it,
    deleting_a_card_erases_its_token_and_leaves_a_tombstone,
    a_ciphertext_moved_to_another_users_row_does_not_open,
    a_card_without_three_ds_is_never_stored,
    cards_cannot_be_saved_where_the_acquirer_cannot_or_without_a_user,
    a_challenged_charge_requires_action_then_completes_through_the_term_url,
    a_charge_whose_answer_was_lost_is_reconciled_without_a_second_charge,
    abandoned_payments_expire_and_unresolvable_ones_go_to_review,
    rotating_keys_reseals_every_live_token,
    the_token_never_appears_in_a_log_a_response_an_error_or_a_debug_print,
    a_robokassa_card_is_bound_on_the_page_and_charged_by_recurring,
    another_portal_client_cannot_see_charge_or_delete_a_users_cards,
    a_deleted_robokassa_card_keeps_no_handle_and_a_replayed_notification_does_not_revive_it,
);

fn moneta(id: &str, payment_type: PaymentType) -> SupplierSettings {
    SupplierSettings {
        receipt: None,
        anonymous: None,
        time_zone: None,
        id: id.into(),
        name: id.into(),
        payment_type,
        account_pattern: r"[0-9]{8}".into(),
        max_amount: "100000.00".into(),
        acquirer: AcquirerSettings::Moneta(MonetaSettings {
            account_id: oplata::config::DEMO_MONETA_ACCOUNT.into(),
            integrity_code: SecretString::from(oplata::config::DEMO_MONETA_CODE),
            api_username: oplata::config::DEMO_MONETA_API_USER.into(),
            api_password: SecretString::from(oplata::config::DEMO_MONETA_API_PASSWORD),
            payment_password: SecretString::from(oplata::config::DEMO_MONETA_PAYMENT_PASSWORD),
            test_mode: true,
            base_url: None,
        }),
    }
}

pub(crate) fn with_card_suppliers(settings: &mut Settings) {
    let mut demo = Settings::default().with_demo_defaults().suppliers;
    demo.push(moneta("heat", PaymentType::Utilities));
    demo.push(moneta("heat2", PaymentType::Utilities));
    demo.push(moneta("fines", PaymentType::Fines));
    settings.suppliers = demo;
    settings.acquirer_timeout_secs = 2;
}

pub(crate) async fn card_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, with_card_suppliers).await
}

pub(crate) fn payment(supplier: &str, user: &str) -> Value {
    json!({
        "supplier_id": supplier, "account_number": "12345678", "amount": "1500.00", "currency": "RUB",
        "description": "Отопление", "user_id": user, "email": "alice@example.ru"
    })
}

pub(crate) fn saved_card_payment(supplier: &str, user: &str, card: Uuid) -> Value {
    let mut body = payment(supplier, user);
    body["payment_method"] = json!({"type": "saved_card", "card_id": card});
    body
}

pub(crate) async fn post(app: &TestApp, body: &Value) -> (u16, Value) {
    let response = app
        .post_payment(
            Some(&app.portal_key),
            Some(&Uuid::new_v4().to_string()),
            &body.to_string(),
        )
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Pays a new-card Moneta payment on the form with the 3-D Secure code.
pub(crate) async fn pay_on_form(app: &TestApp, payment: &Value, action: &str) {
    let fields = next_action_fields(payment);
    let url = payment["next_action"]["url"].as_str().unwrap();
    assert_eq!(
        app.http
            .post(url)
            .form(&fields)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let order = app
        .payment_record(payment["id"].as_str().unwrap())
        .await
        .acquirer_order_id;
    let operation = app
        .moneta
        .operation_by_transaction(&order)
        .unwrap()
        .id
        .to_string();
    let form = |path: &str| format!("{}/sandbox/moneta/{path}", app.base);
    app.http
        .post(form("assistant/decide"))
        .form(&[("operation", operation.as_str()), ("action", action)])
        .send()
        .await
        .unwrap();
    if action == "pay" {
        app.http
            .post(form("assistant/3ds"))
            .form(&[("operation", operation.as_str()), ("code", DEMO_OTP)])
            .send()
            .await
            .unwrap();
    }
}

/// A new-card payment with `save_card`, paid with 3-D Secure; returns the saved card's id.
pub(crate) async fn bind_card(app: &TestApp, supplier: &str, user: &str) -> Uuid {
    let before = list_cards(app, user).await.len();
    let mut body = payment(supplier, user);
    body["save_card"] = true.into();
    let (status, created) = post(app, &body).await;
    assert_eq!(status, 201, "{created}");
    pay_on_form(app, &created, "pay").await;
    assert_eq!(
        app.payment_record(created["id"].as_str().unwrap())
            .await
            .status,
        "succeeded"
    );
    let cards = list_cards(app, user).await;
    assert_eq!(cards.len(), before + 1, "{cards:?}");
    cards.last().unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub(crate) async fn list_cards(app: &TestApp, user: &str) -> Vec<Value> {
    let answer: Value = app
        .http
        .get(app.url(&format!("/v1/users/{user}/cards")))
        .bearer_auth(&app.portal_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["cards"].as_array().unwrap().clone()
}

async fn card_events(app: &TestApp, user: &str, card: Uuid) -> Vec<String> {
    let answer: Value = app
        .http
        .get(app.url(&format!("/v1/users/{user}/cards/{card}/events")))
        .bearer_auth(&app.portal_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

pub(crate) fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or_default()
}

async fn a_binding_payment_saves_a_card_that_then_pays_without_card_entry(backend: Backend) {
    let app = card_app(backend).await;

    let card = bind_card(&app, "heat", "alice").await;
    let (status, charged) = post(&app, &saved_card_payment("heat", "alice", card)).await;

    assert_eq!(status, 201, "{charged}");
    assert_eq!(charged["status"], "succeeded");
    assert_eq!(charged["payment_method"], "saved_card");
    let listed = list_cards(&app, "alice").await;
    assert_eq!(listed[0]["brand"], "MIR");
    assert_eq!(listed[0]["last4"], "4242");
    assert_eq!(listed[0]["payment_type"], "utilities");
    assert!(listed[0]["last_used_at"].is_string());
    assert_eq!(card_events(&app, "alice", card).await, ["bound", "used"]);
    assert!(
        list_cards(&app, "bob").await.is_empty(),
        "cards belong to their user"
    );
    // The desk finds the charge by the card's last four digits (a new card's payment has none).
    let by_card = app
        .store
        .search_payments(&oplata::store::PaymentSearch {
            card_last4: Some("4242".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_card.iter().map(|p| p.id.to_string()).collect::<Vec<_>>(),
        [charged["id"].as_str().unwrap()]
    );
}

async fn a_utilities_card_is_refused_for_fines_and_binding_again_makes_a_second_token(
    backend: Backend,
) {
    let app = card_app(backend).await;
    let utilities = bind_card(&app, "heat", "alice").await;

    let (status, refused) = post(&app, &saved_card_payment("fines", "alice", utilities)).await;
    assert_eq!(
        (status, code(&refused)),
        (422, "card_not_valid_for_payment_type")
    );
    let fines = bind_card(&app, "fines", "alice").await;
    let (status, paid) = post(&app, &saved_card_payment("fines", "alice", fines)).await;

    assert_eq!(status, 201, "{paid}");
    assert_eq!(paid["status"], "succeeded");
    assert_ne!(utilities, fines);
    let first = app.store.get_saved_card(utilities).await.unwrap().unwrap();
    let second = app.store.get_saved_card(fines).await.unwrap().unwrap();
    assert_ne!(
        first.token_ciphertext, second.token_ciphertext,
        "two separate tokens"
    );
    assert_eq!(list_cards(&app, "alice").await.len(), 2);
}

async fn a_saved_card_is_refused_for_a_new_supplier_until_a_full_entry_payment_there(
    backend: Backend,
) {
    let app = card_app(backend).await;
    let card = bind_card(&app, "heat", "alice").await;

    let (status, refused) = post(&app, &saved_card_payment("heat2", "alice", card)).await;
    assert_eq!(
        (status, code(&refused)),
        (422, "saved_card_first_payment_to_supplier")
    );
    // A full entry there that did not succeed is not one.
    let (_, declined) = post(&app, &payment("heat2", "alice")).await;
    pay_on_form(&app, &declined, "decline").await;
    let (status, refused) = post(&app, &saved_card_payment("heat2", "alice", card)).await;
    assert_eq!(
        (status, code(&refused)),
        (422, "saved_card_first_payment_to_supplier")
    );
    let (_, full_entry) = post(&app, &payment("heat2", "alice")).await;
    pay_on_form(&app, &full_entry, "pay").await;
    let (status, paid) = post(&app, &saved_card_payment("heat2", "alice", card)).await;

    assert_eq!(status, 201, "{paid}");
    assert_eq!(paid["status"], "succeeded");
    let (status, other_user) = post(&app, &saved_card_payment("heat", "bob", card)).await;
    assert_eq!((status, code(&other_user)), (404, "card_not_found"));
}

async fn a_password_reset_revokes_every_card_even_while_20_charges_race_with_it(backend: Backend) {
    let app = card_app(backend).await;
    let heat = bind_card(&app, "heat", "alice").await;
    let fines = bind_card(&app, "fines", "alice").await;
    let charges_before = app.moneta.charges_made();

    let charges = futures::future::join_all((0..20).map(|i| {
        let card = if i % 2 == 0 { heat } else { fines };
        let supplier = if i % 2 == 0 { "heat" } else { "fines" };
        let app = &app;
        async move { post(app, &saved_card_payment(supplier, "alice", card)).await }
    }));
    let reset = async {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let answer = app
            .http
            .post(app.url("/v1/users/alice/password-reset"))
            .bearer_auth(&app.portal_key)
            .send()
            .await
            .unwrap();
        let answered_at = time::OffsetDateTime::now_utc();
        (
            answer.status().as_u16(),
            answer.json::<Value>().await.unwrap(),
            answered_at,
        )
    };
    let (charges, (reset_status, reset_answer, answered_at)) = tokio::join!(charges, reset);

    assert_eq!(reset_status, 200);
    assert_eq!(reset_answer["revoked_cards"], 2);
    assert!(list_cards(&app, "alice").await.is_empty());
    let mut succeeded = 0;
    for (status, answer) in &charges {
        match status {
            201 => {
                assert_eq!(answer["status"], "succeeded", "{answer}");
                succeeded += 1;
            }
            404 => assert_eq!(code(answer), "card_not_found"),
            other => panic!("{other}: {answer}"),
        }
    }
    eprintln!(
        "race: {succeeded} charges won, {} lost to the reset",
        charges.len() as u64 - succeeded
    );
    assert_eq!(
        app.moneta.charges_made(),
        charges_before + succeeded,
        "every debit is a charge that was answered"
    );
    for card in [heat, fines] {
        let stored = app.store.get_saved_card(card).await.unwrap().unwrap();
        assert_eq!(stored.status, "revoked");
        assert!(
            stored.token_ciphertext.is_none() && stored.key_id.is_none(),
            "the ciphertext is gone"
        );
        let events = app.store.card_events(card).await.unwrap();
        let revoked_at = events
            .iter()
            .find(|e| e.event == "revoked")
            .unwrap()
            .created_at;
        assert!(revoked_at <= answered_at);
        for used in events.iter().filter(|e| e.event == "used") {
            assert!(
                used.created_at <= revoked_at,
                "no charge started after the revocation"
            );
        }
    }
    let (status, after) = post(&app, &saved_card_payment("heat", "alice", heat)).await;
    assert_eq!((status, code(&after)), (404, "card_not_found"));
}

async fn deleting_a_card_erases_its_token_and_leaves_a_tombstone(backend: Backend) {
    let app = card_app(backend).await;
    let card = bind_card(&app, "heat", "alice").await;
    let delete = |user: &'static str| {
        let url = app.url(&format!("/v1/users/{user}/cards/{card}"));
        let http = app.http.clone();
        let key = app.portal_key.clone();
        async move {
            http.delete(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    assert_eq!(delete("bob").await, 404, "only the owner can delete");
    assert_eq!(delete("alice").await, 204);
    assert_eq!(delete("alice").await, 404);

    assert!(list_cards(&app, "alice").await.is_empty());
    let stored = app.store.get_saved_card(card).await.unwrap().unwrap();
    assert_eq!(stored.status, "deleted");
    assert!(stored.token_ciphertext.is_none());
    assert_eq!(card_events(&app, "alice", card).await, ["bound", "deleted"]);
    let (status, refused) = post(&app, &saved_card_payment("heat", "alice", card)).await;
    assert_eq!((status, code(&refused)), (404, "card_not_found"));
    let outbox: Vec<String> = app
        .store
        .outbox_for(card)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(outbox, ["card.saved", "card.deleted"]);
}

async fn a_ciphertext_moved_to_another_users_row_does_not_open(backend: Backend) {
    let app = card_app(backend).await;
    let alices = bind_card(&app, "heat", "alice").await;
    let bobs = bind_card(&app, "heat", "bob").await;
    let charges_before = app.moneta.charges_made();

    app.execute_with_ids(
        "UPDATE saved_cards SET token_ciphertext = (SELECT token_ciphertext FROM saved_cards WHERE id = $1) WHERE id = $2",
        alices,
        bobs,
    )
    .await;
    let body = saved_card_payment("heat", "bob", bobs).to_string();
    let first = app
        .post_payment(Some(&app.portal_key), Some("moved"), &body)
        .await;
    let (status, answer) = (first.status().as_u16(), first.text().await.unwrap());
    let retried = app
        .post_payment(Some(&app.portal_key), Some("moved"), &body)
        .await;

    assert_eq!(status, 500);
    assert!(answer.contains("internal_error"), "{answer}");
    // A 5xx is not kept: the retry resumes the payment the key made, and shows where it ended.
    assert_eq!(retried.status(), 201);
    let retried: serde_json::Value = retried.json().await.unwrap();
    assert_eq!(retried["status"], "failed", "{retried}");
    assert_eq!(retried["failure"]["code"], "card_unusable");
    assert_eq!(
        app.moneta.charges_made(),
        charges_before,
        "nothing was sent to the acquirer"
    );
    assert!(
        app.store
            .payments_for_review()
            .await
            .unwrap()
            .iter()
            .any(|p| p.saved_card_id == Some(bobs) && p.status == "failed")
    );
}

async fn a_card_without_three_ds_is_never_stored(backend: Backend) {
    let app = card_app(backend).await;
    let mut body = payment("heat", "alice");
    body["save_card"] = true.into();
    let (_, created) = post(&app, &body).await;

    pay_on_form(&app, &created, "no3ds").await;

    let record = app.payment_record(created["id"].as_str().unwrap()).await;
    assert_eq!(record.status, "failed");
    assert_eq!(
        record.failure_code.as_deref(),
        Some("paid_without_three_ds")
    );
    assert!(list_cards(&app, "alice").await.is_empty());
}

async fn cards_cannot_be_saved_where_the_acquirer_cannot_or_without_a_user(backend: Backend) {
    let app = card_app(backend).await;
    let mut netpay = payment("demo-water", "alice");
    netpay["account_number"] = "00123456".into();
    netpay["save_card"] = true.into();
    let mut anonymous = payment("heat", "alice");
    anonymous.as_object_mut().unwrap().remove("user_id");
    anonymous["save_card"] = true.into();
    let mut both = saved_card_payment("heat", "alice", Uuid::now_v7());
    both["save_card"] = true.into();

    let (status, refused) = post(&app, &netpay).await;
    assert_eq!((status, code(&refused)), (422, "card_saving_not_supported"));
    let (status, refused) = post(&app, &anonymous).await;
    assert_eq!((status, code(&refused)), (422, "save_card_requires_user"));
    let (status, refused) = post(&app, &both).await;
    assert_eq!((status, code(&refused)), (422, "invalid_payment_method"));

    assert_eq!(
        app.store.count_payments().await.unwrap(),
        0,
        "refused before anything was stored or sent"
    );
    assert_eq!(app.net_pay.order_count(), 0);
}

async fn a_challenged_charge_requires_action_then_completes_through_the_term_url(backend: Backend) {
    let app = card_app(backend).await;
    let card = bind_card(&app, "heat", "alice").await;
    app.moneta.set_next_charge(ChargeBehaviour::Challenge);

    let (status, challenged) = post(&app, &saved_card_payment("heat", "alice", card)).await;

    assert_eq!(status, 201, "{challenged}");
    assert_eq!(challenged["status"], "requires_action");
    let action = &challenged["next_action"];
    assert_eq!(action["type"], "form_post");
    let id = challenged["id"].as_str().unwrap();
    assert_eq!(
        action["fields"]["TermUrl"],
        format!("{}/3ds/{id}/complete", app.base)
    );
    // The browser: post to the ACS, type the code, the ACS answers through an auto-submitted form.
    let acs = action["url"].as_str().unwrap();
    let md = action["fields"]["MD"].as_str().unwrap();
    let fields: Vec<(String, String)> = action["fields"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        app.http
            .post(acs)
            .form(&fields)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let back = app
        .http
        .post(format!("{acs}/submit"))
        .form(&[
            ("md", md),
            ("term_url", action["fields"]["TermUrl"].as_str().unwrap()),
            ("code", DEMO_OTP),
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
        .unwrap();
    let page = app
        .http
        .post(app.url(&format!("/3ds/{id}/complete")))
        .form(&[("PaRes", pares), ("MD", md)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert!(page.contains("Оплачено"), "{page}");
    assert_eq!(app.payment_record(id).await.status, "succeeded");
    let replay = app
        .http
        .post(app.url(&format!("/3ds/{id}/complete")))
        .form(&[("PaRes", pares), ("MD", md)])
        .send()
        .await
        .unwrap();
    assert!(
        replay.text().await.unwrap().contains("Оплачено"),
        "a replayed answer changes nothing"
    );
}

async fn a_charge_whose_answer_was_lost_is_reconciled_without_a_second_charge(backend: Backend) {
    let app = card_app(backend).await;
    let card = bind_card(&app, "heat", "alice").await;
    let before = app.moneta.charges_made();
    app.moneta.set_api_mode(ApiMode::DropAfterCharging);

    let (status, pending) = post(&app, &saved_card_payment("heat", "alice", card)).await;
    assert_eq!(status, 201, "{pending}");
    assert_eq!(pending["status"], "processing");
    app.moneta.set_api_mode(ApiMode::Normal);
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
    let looked_at = oplata::workers::reconciliation::reconcile_due(
        &app.services,
        later,
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap();

    assert!(looked_at >= 1);
    assert_eq!(
        app.payment_record(pending["id"].as_str().unwrap())
            .await
            .status,
        "succeeded"
    );
    assert_eq!(app.moneta.charges_made(), before + 1, "one debit");
}

async fn abandoned_payments_expire_and_unresolvable_ones_go_to_review(backend: Backend) {
    let app = card_app(backend).await;
    let robokassa = app.create_payment(&demo_payment_body()).await;
    let mut water = demo_payment_body();
    water["supplier_id"] = "demo-water".into();
    water["account_number"] = "00123456".into();
    let netpay = app.create_payment(&water).await;
    let reconcile = |minutes: i64| {
        let services = app.services.clone();
        async move {
            let at = time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
            oplata::workers::reconciliation::reconcile_due(
                &services,
                at,
                std::time::Duration::from_secs(60),
            )
            .await
            .unwrap()
        }
    };

    assert_eq!(
        reconcile(10).await,
        0,
        "nothing is due while the customer may still act"
    );
    reconcile(31).await;

    let expired = app.payment_record(robokassa["id"].as_str().unwrap()).await;
    assert_eq!(expired.status, "expired");
    let review = app.payment_record(netpay["id"].as_str().unwrap()).await;
    assert_eq!(review.status, "requires_action");
    assert!(review.review_reason.unwrap().contains("no status query"));
    assert!(
        review.next_check_at.is_none(),
        "no more questions nobody can answer"
    );
}

async fn rotating_keys_reseals_every_live_token(backend: Backend) {
    let app = card_app(backend).await;
    let live = bind_card(&app, "heat", "alice").await;
    let deleted = bind_card(&app, "fines", "alice").await;
    app.http
        .delete(app.url(&format!("/v1/users/alice/cards/{deleted}")))
        .bearer_auth(&app.portal_key)
        .send()
        .await
        .unwrap();
    let mut keys = Settings::default().with_demo_defaults().vault.keys;
    keys.insert("k2".into(), oplata::vault::Vault::generate_key());
    let rotated = oplata::vault::Vault::new("k2", &keys).unwrap();

    let first = cards::rotate_keys(app.store.as_ref(), &rotated)
        .await
        .unwrap();
    let second = cards::rotate_keys(app.store.as_ref(), &rotated)
        .await
        .unwrap();

    assert_eq!(
        first,
        cards::Rotation {
            resealed: 1,
            skipped: 0
        }
    );
    assert_eq!(
        second,
        cards::Rotation::default(),
        "a second run has nothing left to do"
    );
    let card = app.store.get_saved_card(live).await.unwrap().unwrap();
    assert_eq!(card.key_id.as_deref(), Some("k2"));
    assert!(cards::open_token(&rotated, &card).is_ok());
    let without_old_key = oplata::vault::Vault::new(
        "k2",
        &keys.into_iter().filter(|(id, _)| id == "k2").collect(),
    )
    .unwrap();
    assert!(
        cards::open_token(&without_old_key, &card).is_ok(),
        "after rotation the old key can go"
    );
}

async fn the_token_never_appears_in_a_log_a_response_an_error_or_a_debug_print(backend: Backend) {
    let app = card_app(backend).await;
    let mut seen = String::new();
    let card = bind_card(&app, "heat", "carol").await;
    let token = {
        let stored = app.store.get_saved_card(card).await.unwrap().unwrap();
        let token = cards::open_token(&app.services.vault, &stored).unwrap();
        seen.push_str(&format!("{stored:?}"));
        token.expose_secret().to_owned()
    };
    assert!(
        token.starts_with("tok_"),
        "the canary is the acquirer's real token"
    );
    for body in [
        saved_card_payment("heat", "carol", card),
        saved_card_payment("fines", "carol", card),
        saved_card_payment("heat2", "carol", card),
    ] {
        let (_, answer) = post(&app, &body).await;
        seen.push_str(&answer.to_string());
    }
    for path in [
        "/v1/users/carol/cards".to_owned(),
        format!("/v1/users/carol/cards/{card}/events"),
    ] {
        seen.push_str(
            &app.http
                .get(app.url(&path))
                .bearer_auth(&app.portal_key)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    for record in app.store.list_saved_cards(None, "carol").await.unwrap() {
        seen.push_str(&format!("{record:?}"));
    }
    seen.push_str(&format!("{:?}", app.services));
    let stored = app.store.get_saved_card(card).await.unwrap().unwrap();
    let ciphertext = stored.token_ciphertext.unwrap();

    assert!(
        !seen.contains(&token),
        "the token leaked into an answer or a debug print"
    );
    assert!(
        !captured_logs().contains(&token),
        "the token leaked into the logs"
    );
    assert!(
        !ciphertext
            .windows(token.len())
            .any(|w| w == token.as_bytes()),
        "the token is stored sealed"
    );
}

async fn a_robokassa_card_is_bound_on_the_page_and_charged_by_recurring(backend: Backend) {
    let app = card_app(backend).await;
    let mut body = demo_payment_body();
    body["user_id"] = "dave".into();
    body["save_card"] = true.into();
    let binding = app.create_payment(&body).await;
    let url = binding["next_action"]["url"].as_str().unwrap();
    assert!(url.contains("Recurring=true"), "{url}");
    app.http.get(url).send().await.unwrap();
    let inv_id = param(&query_params(url), "InvId");
    app.sandbox.decide(DEMO_LOGIN, &inv_id, true).await.unwrap();

    let cards = list_cards(&app, "dave").await;
    assert_eq!(cards.len(), 1, "{cards:?}");
    assert_eq!(cards[0]["acquirer"], "robokassa");
    assert_eq!(cards[0]["last4"], "0002");
    assert!(
        cards[0]["exp_month"].is_null(),
        "Robokassa does not report the expiry"
    );
    let card: Uuid = cards[0]["id"].as_str().unwrap().parse().unwrap();
    let mut again = demo_payment_body();
    again["user_id"] = "dave".into();
    again["payment_method"] = json!({"type": "saved_card", "card_id": card});
    let (status, charged) = post(&app, &again).await;

    assert_eq!(status, 201, "{charged}");
    assert_eq!(
        charged["status"], "processing",
        "accepted by Robokassa; its ResultURL settles it"
    );
    let id = charged["id"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        if app.payment_record(&id).await.status == "succeeded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.payment_record(&id).await.status, "succeeded");
    assert_eq!(
        app.sandbox.charges_made(),
        2,
        "the binding payment and one recurring charge"
    );
}

async fn another_portal_client_cannot_see_charge_or_delete_a_users_cards(backend: Backend) {
    let app = card_app(backend).await;
    let card = bind_card(&app, "heat", "alice").await;
    let other = app
        .key_with_scope(oplata::service::api_keys::Scope::Portal)
        .await;
    let as_other = |method: reqwest::Method, path: String| {
        app.http.request(method, app.url(&path)).bearer_auth(&other)
    };

    let listed: Value = as_other(reqwest::Method::GET, "/v1/users/alice/cards".into())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = as_other(
        reqwest::Method::GET,
        format!("/v1/users/alice/cards/{card}/events"),
    )
    .send()
    .await
    .unwrap()
    .status();
    let charge = app
        .post_payment(
            Some(&other),
            Some(&Uuid::new_v4().to_string()),
            &saved_card_payment("heat", "alice", card).to_string(),
        )
        .await;
    let charge_status = charge.status().as_u16();
    let charge_answer: Value = charge.json().await.unwrap();
    let deleted = as_other(
        reqwest::Method::DELETE,
        format!("/v1/users/alice/cards/{card}"),
    )
    .send()
    .await
    .unwrap()
    .status();
    let reset: Value = as_other(
        reqwest::Method::POST,
        "/v1/users/alice/password-reset".into(),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();

    assert_eq!(listed["cards"].as_array().map(Vec::len), Some(0));
    assert_eq!(events, 404);
    assert_eq!(
        (charge_status, code(&charge_answer)),
        (404, "card_not_found")
    );
    assert_eq!(deleted, 404);
    assert_eq!(
        reset["revoked_cards"], 0,
        "another client's user is another person"
    );
    // The owner still has and can use the card.
    assert_eq!(list_cards(&app, "alice").await.len(), 1);
    let (status, charged) = post(&app, &saved_card_payment("heat", "alice", card)).await;
    assert_eq!(
        (status, charged["status"].as_str()),
        (201, Some("succeeded"))
    );
}

/// For Robokassa the recurring token is the binding payment's invoice number, a plain column of
/// that payment: the tombstone must not lead there.
async fn a_deleted_robokassa_card_keeps_no_handle_and_a_replayed_notification_does_not_revive_it(
    backend: Backend,
) {
    use oplata_providers::robokassa::protocol::RESULT_PATH;
    use oplata_providers::robokassa::wire;
    use oplata_providers::signing::HashAlgorithm;
    let app = card_app(backend).await;
    let mut body = demo_payment_body();
    body["user_id"] = "erin".into();
    body["save_card"] = true.into();
    let binding = app.create_payment(&body).await;
    let binding_id = binding["id"].as_str().unwrap().to_owned();
    let url = binding["next_action"]["url"].as_str().unwrap().to_owned();
    app.http.get(&url).send().await.unwrap();
    let params = query_params(&url);
    let inv_id = param(&params, "InvId");
    app.sandbox.decide(DEMO_LOGIN, &inv_id, true).await.unwrap();
    let cards = list_cards(&app, "erin").await;
    assert_eq!(cards.len(), 1, "{cards:?}");
    let card: Uuid = cards[0]["id"].as_str().unwrap().parse().unwrap();
    let before = app.store.get_saved_card(card).await.unwrap().unwrap();
    assert_eq!(
        before.binding_payment_id,
        Some(binding_id.parse().unwrap()),
        "a live card knows its binding payment"
    );

    let deleted = app
        .http
        .delete(app.url(&format!("/v1/users/erin/cards/{card}")))
        .bearer_auth(&app.portal_key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    let tombstone = app.store.get_saved_card(card).await.unwrap().unwrap();
    assert_eq!(tombstone.status, "deleted");
    assert!(tombstone.token_ciphertext.is_none() && tombstone.key_id.is_none());
    assert_eq!(
        tombstone.binding_payment_id, None,
        "the tombstone names no payment"
    );
    let events = app.store.card_events(card).await.unwrap();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e.payment_id != Some(binding_id.parse().unwrap())),
        "no event of the card leads to the binding payment"
    );
    assert!(
        !app.payment_record(&binding_id).await.save_card,
        "the binding payment no longer asks for a card"
    );

    // The acquirer repeats its notification of the binding payment: it is answered, and the
    // card does not come back.
    let shp: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k.starts_with("Shp_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let out_sum = param(&params, "OutSum");
    let signature =
        wire::result_signature(HashAlgorithm::Md5, &out_sum, &inv_id, DEMO_PASSWORD2, &shp);
    let mut form = vec![
        ("OutSum".to_owned(), out_sum),
        ("InvId".to_owned(), inv_id.clone()),
        ("SignatureValue".to_owned(), signature),
    ];
    form.extend(shp);
    let replayed = app
        .http
        .post(app.url(RESULT_PATH))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 200);
    assert_eq!(replayed.text().await.unwrap(), format!("OK{inv_id}"));
    assert!(list_cards(&app, "erin").await.is_empty());

    // Even a notification handled from a payment read before the deletion cannot store the
    // card again: the store checks the binding payment under its lock.
    let stale = oplata::store::NewSavedCard {
        id: Uuid::now_v7(),
        client_id: before.client_id,
        user_id: "erin".into(),
        payment_type: before.payment_type,
        acquirer: before.acquirer,
        binding_payment_id: binding_id.parse().unwrap(),
        key_id: "k".into(),
        token_ciphertext: vec![1, 2, 3],
        brand: before.brand.clone(),
        last4: before.last4.clone(),
        exp_month: None,
        exp_year: None,
        created_at: time::OffsetDateTime::now_utc(),
    };
    assert!(
        app.store
            .insert_saved_card(&stale, "acquirer:robokassa")
            .await
            .unwrap()
            .is_none()
    );
    assert!(list_cards(&app, "erin").await.is_empty());
}
