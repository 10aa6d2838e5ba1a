//! No secret reaches a log line: API keys, acquirer passwords, signatures.

use crate::helpers::*;

on_both_backends!(a_full_payment_logs_no_secret);

async fn a_full_payment_logs_no_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.create_payment(&demo_payment_body()).await;
    let id = payment["id"].as_str().unwrap().to_owned();
    let url = payment["next_action"]["url"].as_str().unwrap().to_owned();
    let page_signature = param(&query_params(&url), "SignatureValue");
    let inv_id = param(&query_params(&url), "InvId");
    app.http.get(&url).send().await.unwrap();
    let redirect = app
        .http
        .post(app.url("/sandbox/robokassa/Merchant/Decide"))
        .form(&[
            ("login", DEMO_LOGIN),
            ("inv_id", inv_id.as_str()),
            ("action", "pay"),
        ])
        .send()
        .await
        .unwrap();
    let success = redirect.headers()["location"].to_str().unwrap().to_owned();
    let success_signature = param(&query_params(&success), "SignatureValue");
    app.http.get(&success).send().await.unwrap();
    assert_eq!(app.payment_record(&id).await.status, "succeeded");
    // A second payment whose return triggers a signed OpStateExt query.
    let pending = app.create_payment(&demo_payment_body()).await;
    let pending_url = pending["next_action"]["url"].as_str().unwrap();
    let pending_inv = param(&query_params(pending_url), "InvId");
    app.http.get(pending_url).send().await.unwrap();
    app.http
        .get(app.url("/return/robokassa/fail"))
        .query(&[("InvId", pending_inv.as_str())])
        .send()
        .await
        .unwrap();
    let op_state_signature = oplata_providers::robokassa::wire::op_state_signature(
        oplata_providers::signing::HashAlgorithm::Md5,
        DEMO_LOGIN,
        &pending_inv,
        DEMO_PASSWORD2,
    );

    let logs = captured_logs();

    assert!(
        logs.contains(&id),
        "the payment's own log lines were captured"
    );
    for secret in [
        app.portal_key.as_str(),
        DEMO_PASSWORD1,
        DEMO_PASSWORD2,
        page_signature.as_str(),
        success_signature.as_str(),
        op_state_signature.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    for line in logs.lines().filter(|l| l.contains(&id)) {
        let parsed: serde_json::Value = serde_json::from_str(line).expect("every line is JSON");
        assert!(
            parsed["span"]["request_id"].is_string() || parsed["fields"].is_object(),
            "{line}"
        );
    }
}
