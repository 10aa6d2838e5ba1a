//! Every bad input answers `{"error": {"code", "message", "param"}}` and leaves the database as
//! it was.

use oplata::service::api_keys::Scope;
use serde_json::{Value, json};

use crate::helpers::*;

on_both_backends!(
    each_broken_rule_has_its_own_code_and_changes_nothing,
    requests_without_a_valid_key_or_scope_are_refused,
    a_payment_is_visible_only_to_its_client_and_user,
    an_oversized_body_is_refused_in_the_error_format,
    health_readiness_and_the_api_document_answer,
    metrics_are_for_admins_and_count_what_happened,
);

async fn each_broken_rule_has_its_own_code_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let with = |field: &str, value: Value| {
        let mut body = demo_payment_body();
        body[field] = value;
        body.to_string()
    };
    let mut unknown_field = demo_payment_body();
    unknown_field["save_card_please"] = json!(true);
    let mut missing = demo_payment_body();
    missing.as_object_mut().unwrap().remove("amount");
    let cases: Vec<(String, u16, &str, Option<&str>)> = vec![
        (
            with("supplier_id", json!("nobody")),
            422,
            "unknown_supplier",
            Some("supplier_id"),
        ),
        (
            with("account_number", json!("12-34")),
            422,
            "invalid_account_number",
            Some("account_number"),
        ),
        (
            with("amount", json!("0")),
            422,
            "invalid_amount",
            Some("amount"),
        ),
        (
            with("amount", json!("-5.00")),
            422,
            "invalid_amount",
            Some("amount"),
        ),
        (
            with("amount", json!("1.005")),
            422,
            "invalid_amount",
            Some("amount"),
        ),
        (
            with("amount", json!("1e3")),
            422,
            "invalid_amount",
            Some("amount"),
        ),
        (
            with("amount", json!("100000.01")),
            422,
            "amount_above_limit",
            Some("amount"),
        ),
        (
            with("amount", json!(15.5)),
            400,
            "invalid_field_type",
            Some("amount"),
        ),
        (
            with("currency", json!("USD")),
            422,
            "unsupported_currency",
            Some("currency"),
        ),
        (
            with("email", json!("no-at-sign")),
            422,
            "invalid_email",
            Some("email"),
        ),
        (
            with("return_url", json!("ftp://x")),
            422,
            "invalid_return_url",
            Some("return_url"),
        ),
        (
            with("description", json!("")),
            422,
            "invalid_description",
            Some("description"),
        ),
        (
            unknown_field.to_string(),
            400,
            "unknown_field",
            Some("save_card_please"),
        ),
        (missing.to_string(), 400, "missing_field", Some("amount")),
        ("{\"supplier_id\": ".to_owned(), 400, "malformed_json", None),
        ("[1,2,3]".to_owned(), 400, "invalid_field_type", None),
    ];

    for (i, (body, status, code, param)) in cases.into_iter().enumerate() {
        let response = app
            .post_payment(Some(&app.portal_key), Some(&format!("bad-{i}")), &body)
            .await;
        assert_eq!(response.status().as_u16(), status, "{code}: {body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{body}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert_eq!(error["error"]["param"].as_str(), param, "{body}");
    }

    let missing_key = app
        .post_payment(
            Some(&app.portal_key),
            None,
            &demo_payment_body().to_string(),
        )
        .await;
    assert_eq!(missing_key.status(), 400);
    assert_eq!(
        missing_key.json::<Value>().await.unwrap()["error"]["code"],
        "missing_idempotency_key"
    );
    let not_json = app
        .http
        .post(app.url("/v1/payments"))
        .bearer_auth(&app.portal_key)
        .header("idempotency-key", "form")
        .form(&[("supplier_id", "demo-electro")])
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);
    assert_eq!(app.store.count_payments().await.unwrap(), 0);
}

async fn requests_without_a_valid_key_or_scope_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = demo_payment_body().to_string();
    let sms_key = app.key_with_scope(Scope::Sms).await;
    let (revoked_id, revoked_key) = {
        let (record, key) =
            oplata::service::api_keys::create(app.store.as_ref(), "old", Scope::Portal)
                .await
                .unwrap();
        (
            record.id,
            secrecy::ExposeSecret::expose_secret(&key).to_owned(),
        )
    };
    app.store
        .revoke_api_client(revoked_id, time::OffsetDateTime::now_utc())
        .await
        .unwrap();

    let cases = [
        (None, 401, "unauthorized"),
        (Some("opk_not-a-real-key"), 401, "unauthorized"),
        (Some(revoked_key.as_str()), 401, "unauthorized"),
        (Some(sms_key.as_str()), 403, "forbidden_scope"),
    ];
    for (key, status, code) in cases {
        let response = app.post_payment(key, Some("auth"), &body).await;
        assert_eq!(response.status().as_u16(), status, "{key:?}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"]["code"],
            code
        );
    }
    assert_eq!(app.store.count_payments().await.unwrap(), 0);
}

async fn a_payment_is_visible_only_to_its_client_and_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&demo_payment_body()).await;
    let id = payment["id"].as_str().unwrap();
    let other_portal = app.key_with_scope(Scope::Portal).await;

    let own = app.get_payment(id, Some("user-42")).await;
    let other_user = app.get_payment(id, Some("user-43")).await;
    let no_user = app.get_payment(id, None).await;
    let other_client = app
        .http
        .get(app.url(&format!("/v1/payments/{id}?user_id=user-42")))
        .bearer_auth(&other_portal)
        .send()
        .await
        .unwrap();
    let not_an_id = app.get_payment("not-a-uuid", None).await;
    let unknown = app
        .get_payment(&uuid::Uuid::now_v7().to_string(), None)
        .await;

    assert_eq!(own.status(), 200);
    for response in [other_user, no_user, other_client, not_an_id, unknown] {
        assert_eq!(response.status(), 404);
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"]["code"],
            "not_found"
        );
    }
}

async fn an_oversized_body_is_refused_in_the_error_format(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = demo_payment_body();
    body["description"] = "я".repeat(100_000).into();

    let response = app
        .post_payment(Some(&app.portal_key), Some("huge"), &body.to_string())
        .await;

    assert_eq!(response.status(), 413);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "payload_too_large"
    );
    assert_eq!(app.store.count_payments().await.unwrap(), 0);
}

async fn health_readiness_and_the_api_document_answer(backend: Backend) {
    let app = spawn_app(backend).await;

    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    let ready: Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let document: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let unknown = app.http.get(app.url("/nothing-here")).send().await.unwrap();

    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));
    let expected_backend = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(ready["database"], expected_backend);
    assert!(document["paths"]["/v1/payments"]["post"].is_object());
    let codes = document["components"]["schemas"]["ErrorCode"].to_string();
    for code in [
        "idempotency_key_reused",
        "idempotency_key_in_use",
        "missing_idempotency_key",
        "amount_above_limit",
        "invalid_account_number",
        "forbidden_scope",
    ] {
        assert!(codes.contains(code), "{code} missing from {codes}");
    }
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
}

async fn metrics_are_for_admins_and_count_what_happened(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.key_with_scope(Scope::Admin).await;
    app.create_payment(&demo_payment_body()).await;

    let anonymous = app.http.get(app.url("/metrics")).send().await.unwrap();
    let portal = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(&app.portal_key)
        .send()
        .await
        .unwrap();
    let scraped = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert_eq!(anonymous.status(), 401);
    assert_eq!(portal.status(), 403);
    assert!(
        scraped.contains("oplata_payments_created_total{"),
        "{scraped}"
    );
    assert!(
        scraped
            .lines()
            .any(|line| line.starts_with("oplata_payments_created_total{")
                && line.contains("commits=\"one\"")),
        "a new hosted payment under a fresh key is one commit: {scraped}"
    );
    if matches!(backend, Backend::Sqlite) {
        for counter in [
            "oplata_sqlite_commits_total ",
            "oplata_sqlite_committed_transactions_total ",
        ] {
            assert!(
                scraped.lines().any(|line| line.starts_with(counter)),
                "{counter}in {scraped}"
            );
        }
    }
    for gauge in [
        "oplata_webhooks_dead 0",
        "oplata_payments_in_review 0",
        "oplata_refunds_awaiting_acquirer 0",
    ] {
        assert!(scraped.contains(gauge), "{gauge} in {scraped}");
    }
}
