//! `Idempotency-Key`: replay, mismatch, concurrency.

use crate::helpers::*;

on_both_backends!(
    the_same_key_and_body_answer_the_first_response_again,
    the_same_key_with_another_body_is_refused,
    an_error_answer_is_replayed_too,
    fifty_concurrent_requests_with_one_key_make_one_payment,
    keys_belong_to_one_client,
);

async fn the_same_key_and_body_answer_the_first_response_again(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = demo_payment_body().to_string();

    let first = app
        .post_payment(Some(&app.portal_key), Some("k-1"), &body)
        .await;
    let first_status = first.status();
    let first_body = first.text().await.unwrap();
    // The same JSON with other spacing and key order is the same request.
    let reordered: serde_json::Value = serde_json::from_str(&body).unwrap();
    let second = app
        .post_payment(
            Some(&app.portal_key),
            Some("k-1"),
            &serde_json::to_string_pretty(&reordered).unwrap(),
        )
        .await;

    assert_eq!(first_status, 201);
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.text().await.unwrap(), first_body);
    assert_eq!(app.store.count_payments().await.unwrap(), 1);
}

async fn the_same_key_with_another_body_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut other = demo_payment_body();
    other["amount"] = "10.00".into();

    app.post_payment(
        Some(&app.portal_key),
        Some("k-2"),
        &demo_payment_body().to_string(),
    )
    .await;
    let reused = app
        .post_payment(Some(&app.portal_key), Some("k-2"), &other.to_string())
        .await;

    assert_eq!(reused.status(), 422);
    let error: serde_json::Value = reused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "idempotency_key_reused");
    assert_eq!(app.store.count_payments().await.unwrap(), 1);
}

async fn an_error_answer_is_replayed_too(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut bad = demo_payment_body();
    bad["amount"] = "0".into();

    let first = app
        .post_payment(Some(&app.portal_key), Some("k-3"), &bad.to_string())
        .await;
    let first_body = first.text().await.unwrap();
    let again = app
        .post_payment(Some(&app.portal_key), Some("k-3"), &bad.to_string())
        .await;

    assert_eq!(again.status(), 422);
    assert_eq!(again.text().await.unwrap(), first_body);
    assert!(first_body.contains("invalid_amount"), "{first_body}");
}

async fn fifty_concurrent_requests_with_one_key_make_one_payment(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = demo_payment_body().to_string();

    let answers = futures::future::join_all((0..50).map(|_| async {
        let response = app
            .post_payment(Some(&app.portal_key), Some("k-race"), &body)
            .await;
        (response.status().as_u16(), response.text().await.unwrap())
    }))
    .await;

    assert_eq!(app.store.count_payments().await.unwrap(), 1);
    let created: Vec<&String> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert!(!created.is_empty());
    assert!(
        created.iter().all(|b| *b == created[0]),
        "every 201 is the stored answer"
    );
    for (status, body) in &answers {
        assert!(*status == 201 || *status == 409, "{status} {body}");
        if *status == 409 {
            assert!(body.contains("idempotency_key_in_use"), "{body}");
        }
    }
    // One acquirer invoice: the one payment's. (Requests that found the key taken may have
    // skipped order numbers on PostgreSQL, which takes one before the key's statement; gaps
    // are fine for every acquirer.)
    let payment: serde_json::Value = serde_json::from_str(created[0]).unwrap();
    let url = payment["next_action"]["url"].as_str().unwrap();
    let stored = app
        .store
        .find_payment_by_order("robokassa", &param(&query_params(url), "InvId"))
        .await
        .unwrap()
        .expect("the invoice is the stored payment's");
    assert_eq!(payment["id"], stored.id.to_string());
}

async fn keys_belong_to_one_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let other_portal = app
        .key_with_scope(oplata::service::api_keys::Scope::Portal)
        .await;
    let body = demo_payment_body().to_string();

    let mine = app
        .post_payment(Some(&app.portal_key), Some("shared"), &body)
        .await;
    let theirs = app
        .post_payment(Some(&other_portal), Some("shared"), &body)
        .await;

    assert_eq!(mine.status(), 201);
    assert_eq!(theirs.status(), 201);
    assert_eq!(app.store.count_payments().await.unwrap(), 2);
}
