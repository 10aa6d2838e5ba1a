//! The storage story, told against each backend directly.

use oplata::domain::payment::PaymentEvent;
use oplata::store::{
    ClaimedKey, FirstMove, IdempotencyClaim, KeyAnswer, NewPaymentRecord, PaymentRecord,
    StatusChange, StoredResponse, TransitionResult,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::helpers::*;

on_both_backends!(
    concurrent_creations_get_order_numbers_that_never_repeat,
    replicas_creating_at_once_never_repeat_an_order_number,
    a_payment_and_its_first_move_are_written_together,
    a_creation_answered_with_its_key_writes_what_the_transaction_writes,
    a_change_to_a_payment_as_read_writes_what_the_transaction_writes,
    a_refused_transition_writes_nothing,
    a_change_from_a_stale_read_applies_to_the_payment_as_it_is,
    a_dead_request_frees_its_key_and_an_expired_key_can_be_reused,
    two_workers_claiming_at_once_never_take_the_same_payment,
    the_retention_pass_deletes_only_rows_past_their_time_in_batches,
);

fn new_payment(acquirer: &str) -> NewPaymentRecord {
    NewPaymentRecord {
        phone: None,
        id: Uuid::now_v7(),
        client_id: None,
        user_id: None,
        supplier_id: "demo-electro".into(),
        account_number: "1234567890".into(),
        amount_minor: 12_345,
        currency: "RUB".into(),
        description: "test".into(),
        email: None,
        return_url: None,
        acquirer: oplata_providers::AcquirerKind::parse(acquirer).expect("a known acquirer"),
        payment_method: oplata::domain::payment::PaymentMethod::NewCard,
        saved_card_id: None,
        save_card: false,
        created_at: OffsetDateTime::now_utc(),
        payer: None,
    }
}

/// A hosted page built without a call to the acquirer: the payment, its order number, and its
/// move to `requires_action` with the page are one transaction, audited and announced in order.
async fn a_payment_and_its_first_move_are_written_together(backend: Backend) {
    let app = spawn_app(backend).await;
    let moved = app
        .store
        .create_payment(&new_payment("robokassa"), "test", &to_the_page)
        .await
        .unwrap();

    assert_eq!(moved.status, "requires_action");
    assert!(
        moved
            .next_action
            .as_deref()
            .unwrap()
            .ends_with(&format!("/{}\"}}", moved.acquirer_order_id)),
        "the move saw the order number allocated in its transaction"
    );
    let trail: Vec<String> = app
        .store
        .payment_audit(moved.id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.to_status)
        .collect();
    assert_eq!(trail, ["created", "requires_action"]);
    let events: Vec<String> = app
        .store
        .outbox_for(moved.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(events, ["payment.created", "payment.requires_action"]);
    let stays = app
        .store
        .create_payment(&new_payment("robokassa"), "test", &|_| None)
        .await
        .unwrap();
    assert_eq!(
        stays.status, "created",
        "no move decided: the payment waits"
    );
}

/// A portal's API client, for the keys it sends.
async fn portal_client(app: &TestApp) -> Uuid {
    let (client, _) = oplata::service::api_keys::create(
        app.store.as_ref(),
        "portal",
        oplata::service::api_keys::Scope::Portal,
    )
    .await
    .unwrap();
    client.id
}

/// The hosted page's first move, as the service decides it from the row.
fn to_the_page(record: &PaymentRecord) -> Option<FirstMove> {
    Some(FirstMove {
        event: PaymentEvent::ActionRequired,
        next_action: Some(format!(
            "{{\"type\":\"redirect\",\"url\":\"https://pay.example/{}\"}}",
            record.acquirer_order_id
        )),
        failure: None,
        reason: &oplata::domain::audit::AuditReason::SentToAcquirerPage,
    })
}

/// What two payments' rows, audit trails and events must share when the same thing happened
/// to both: everything but their ids, order numbers and times.
async fn same_story(app: &TestApp, one: &PaymentRecord, other: &PaymentRecord) {
    let plain = |p: &PaymentRecord| PaymentRecord {
        id: Uuid::nil(),
        acquirer_order_id: String::new(),
        next_action: p
            .next_action
            .as_ref()
            .map(|a| a.replace(&p.acquirer_order_id, "N")),
        next_check_at: None,
        action_deadline: None,
        submitted_at: None,
        created_at: OffsetDateTime::UNIX_EPOCH,
        updated_at: OffsetDateTime::UNIX_EPOCH,
        ..p.clone()
    };
    assert_eq!(plain(one), plain(other));
    // Times differ; what is set at the change stands as far from it in both, what is kept
    // from before is there in both.
    let shape = |p: &PaymentRecord| {
        (
            p.next_check_at.map(|at| at - p.updated_at),
            p.action_deadline.is_some(),
            p.submitted_at.is_some(),
        )
    };
    assert_eq!(shape(one), shape(other));
    let trail = |id| async move {
        app.store
            .payment_audit(id)
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.from_status, a.to_status, a.actor, a.reason, a.detail))
            .collect::<Vec<_>>()
    };
    assert_eq!(trail(one.id).await, trail(other.id).await);
    let events = |p: PaymentRecord| async move {
        app.store
            .outbox_for(p.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| {
                let mut payload: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
                assert_eq!(payload["payment_id"], p.id.to_string());
                assert_eq!(payload["acquirer_order_id"], p.acquirer_order_id);
                for varying in ["payment_id", "acquirer_order_id", "occurred_at"] {
                    payload[varying] = serde_json::Value::Null;
                }
                (e.event_type, payload)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(events(one.clone()).await, events(other.clone()).await);
}

/// A hosted creation with its idempotency key (on PostgreSQL one statement, on SQLite one
/// transaction) writes the row, the audit trail and the events the step-by-step creation
/// writes, reads back exactly as it answered, keeps the answer with the key, and a second
/// request with the key writes nothing.
async fn a_creation_answered_with_its_key_writes_what_the_transaction_writes(backend: Backend) {
    let app = spawn_app(backend).await;
    let client_id = portal_client(&app).await;
    let now = OffsetDateTime::now_utc();
    let answer = |record: &PaymentRecord| {
        Some(StoredResponse {
            status: 201,
            body: format!(
                "{{\"id\":\"{}\",\"status\":\"{}\"}}",
                record.id, record.status
            ),
        })
    };
    let key = KeyAnswer {
        client_id,
        key: "answered-1",
        fingerprint: "f1",
        now,
        expires_at: now + Duration::days(1),
        answer: &answer,
    };
    let request = new_payment("robokassa");
    let answered = app
        .store
        .create_payment_answered(&request, "test", &to_the_page, &key)
        .await
        .unwrap()
        .expect("a new key: created");
    let stepwise = app
        .store
        .create_payment(&new_payment("robokassa"), "test", &to_the_page)
        .await
        .unwrap();

    assert_eq!(answered.status, "requires_action");
    assert_eq!(
        app.store.get_payment(answered.id).await.unwrap().as_ref(),
        Some(&answered),
        "the row reads back as the request answered it"
    );
    same_story(&app, &answered, &stepwise).await;
    let claim = app
        .store
        .claim_idempotency_key(
            client_id,
            "answered-1",
            "f1",
            now,
            now,
            now + Duration::days(1),
        )
        .await
        .unwrap();
    assert_eq!(
        claim,
        IdempotencyClaim::Completed(answer(&answered).unwrap()),
        "the key keeps the answer"
    );
    let payments = app.store.count_payments().await.unwrap();
    let again = app
        .store
        .create_payment_answered(&new_payment("robokassa"), "test", &to_the_page, &key)
        .await
        .unwrap();
    assert!(again.is_none(), "a known key creates nothing: {again:?}");
    assert_eq!(app.store.count_payments().await.unwrap(), payments);
}

/// A change to a payment still as its caller read it (on PostgreSQL one statement) writes
/// what the transaction that locks the payment first writes: the row, the audit line, the
/// event.
async fn a_change_to_a_payment_as_read_writes_what_the_transaction_writes(backend: Backend) {
    let app = spawn_app(backend).await;
    let change = |event| StatusChange {
        event,
        next_action: None,
        failure: Some(("refused", "declined by the issuer")),
        actor: "test",
        reason: &oplata::domain::audit::AuditReason::SettledFromReview,
        acquirer_operation_id: Some("op-1"),
    };
    let create = || async {
        app.store
            .create_payment(&new_payment("robokassa"), "test", &to_the_page)
            .await
            .unwrap()
    };
    let (as_read, locked) = (create().await, create().await);
    for event in [PaymentEvent::Submitted, PaymentEvent::Failed] {
        let one = app
            .store
            .transition_payment_from(
                &app.store.get_payment(as_read.id).await.unwrap().unwrap(),
                &change(event),
            )
            .await
            .unwrap();
        let other = app
            .store
            .transition_payment(locked.id, &change(event))
            .await
            .unwrap();
        let (TransitionResult::Applied(one), TransitionResult::Applied(other)) = (one, other)
        else {
            panic!("both applied");
        };
        assert_eq!(
            app.store.get_payment(one.id).await.unwrap().as_ref(),
            Some(&one)
        );
        same_story(&app, &one, &other).await;
    }
}

async fn concurrent_creations_get_order_numbers_that_never_repeat(backend: Backend) {
    let app = spawn_app(backend).await;

    let created = futures::future::join_all((0..20).map(|_| async {
        app.store
            .create_payment(&new_payment("robokassa"), "test", &|_| None)
            .await
    }))
    .await;
    let other = app
        .store
        .create_payment(&new_payment("moneta"), "test", &|_| None)
        .await
        .unwrap();

    let mut numbers: Vec<i64> = created
        .into_iter()
        .map(|p| p.unwrap().acquirer_order_id.parse().unwrap())
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    // Gaps are allowed (PostgreSQL hands them out from one sequence for every acquirer, so
    // nothing is locked per creation); repeats never are.
    assert_eq!(numbers.len(), 20, "{numbers:?}");
    assert!(numbers.iter().all(|n| *n > 0), "{numbers:?}");
    let found = app
        .store
        .find_payment_by_order("moneta", &other.acquirer_order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, other.id);
    assert_eq!(found.amount_minor, 12_345);
}

/// Two processes on one database (a second replica: a store of its own, so an order-number
/// block of its own on PostgreSQL), each creating at once both ways (a hosted creation with its
/// key, which takes a number from the block in hand, and the step-by-step one, which asks the
/// sequence itself): no number is handed out twice, and the page each payment answered with
/// names the number it was stored under.
async fn replicas_creating_at_once_never_repeat_an_order_number(backend: Backend) {
    let app = spawn_app(backend).await;
    let replica = oplata::store::connect(&app.database_url)
        .await
        .expect("a second process opens the database");
    let client_id = portal_client(&app).await;
    let now = OffsetDateTime::now_utc();
    let answer = |record: &PaymentRecord| {
        Some(StoredResponse {
            status: 201,
            body: record.next_action.clone().unwrap_or_default(),
        })
    };
    let keys: Vec<String> = (0..90).map(|i| format!("replica-{i}")).collect();
    let stores = [app.store.clone(), replica];
    let created = futures::future::join_all(keys.iter().enumerate().map(|(i, key)| {
        let store = stores[i % 2].clone();
        async move {
            if i % 3 == 0 {
                store
                    .create_payment(&new_payment("robokassa"), "test", &to_the_page)
                    .await
                    .map(Some)
            } else {
                store
                    .create_payment_answered(
                        &new_payment("robokassa"),
                        "test",
                        &to_the_page,
                        &KeyAnswer {
                            client_id,
                            key,
                            fingerprint: "f",
                            now,
                            expires_at: now + Duration::days(1),
                            answer: &answer,
                        },
                    )
                    .await
            }
        }
    }))
    .await;

    let created: Vec<PaymentRecord> = created
        .into_iter()
        .map(|c| c.unwrap().expect("every key is new"))
        .collect();
    let mut numbers: Vec<i64> = created
        .iter()
        .map(|p| p.acquirer_order_id.parse().unwrap())
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 90, "{numbers:?}");
    for payment in &created {
        let stored = app.store.get_payment(payment.id).await.unwrap().unwrap();
        assert_eq!(stored.acquirer_order_id, payment.acquirer_order_id);
        assert!(
            stored
                .next_action
                .as_deref()
                .is_some_and(|page| page.contains(&format!("/{}\"", stored.acquirer_order_id))),
            "{stored:?}"
        );
    }
}

async fn a_refused_transition_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app
        .store
        .create_payment(&new_payment("robokassa"), "test", &|_| None)
        .await
        .unwrap();
    let change = |event| StatusChange {
        event,
        next_action: None,
        failure: Some(("refused", "declined by the issuer")),
        actor: "test",
        reason: &oplata::domain::audit::AuditReason::SettledFromReview,
        acquirer_operation_id: None,
    };

    let failed = app
        .store
        .transition_payment(payment.id, &change(PaymentEvent::Failed))
        .await
        .unwrap();
    let revived = app
        .store
        .transition_payment(payment.id, &change(PaymentEvent::Succeeded))
        .await
        .unwrap();
    let again = app
        .store
        .transition_payment(payment.id, &change(PaymentEvent::Failed))
        .await
        .unwrap();

    assert!(
        matches!(failed, TransitionResult::Applied(ref p) if p.status == "failed" && p.failure_code.as_deref() == Some("refused"))
    );
    assert!(matches!(revived, TransitionResult::Refused(ref p, _) if p.status == "failed"));
    assert!(matches!(again, TransitionResult::AlreadyThere(_)));
    assert_eq!(app.store.payment_audit(payment.id).await.unwrap().len(), 2);
    assert_eq!(app.store.outbox_for(payment.id).await.unwrap().len(), 2);
}

/// A caller that read the payment before someone else moved it: its change is judged by the
/// status the payment has now, and the audit names that status as where it came from.
async fn a_change_from_a_stale_read_applies_to_the_payment_as_it_is(backend: Backend) {
    let app = spawn_app(backend).await;
    let change = |event| StatusChange {
        event,
        next_action: Some("{\"type\":\"redirect\",\"url\":\"https://pay.example/\"}"),
        failure: None,
        actor: "test",
        reason: &oplata::domain::audit::AuditReason::SettledFromReview,
        acquirer_operation_id: None,
    };
    // A payment read while `created`, then moved by someone else; the stale read then asks
    // for success.
    let succeed_after = |event| {
        let store = app.store.clone();
        async move {
            let stale = store
                .create_payment(&new_payment("robokassa"), "test", &|_| None)
                .await
                .unwrap();
            store
                .transition_payment(stale.id, &change(event))
                .await
                .unwrap();
            let result = store
                .transition_payment_from(&stale, &change(PaymentEvent::Succeeded))
                .await
                .unwrap();
            (stale.id, result)
        }
    };

    let (moved_on, settled) = succeed_after(PaymentEvent::ActionRequired).await;

    assert!(
        matches!(settled, TransitionResult::Applied(ref p) if p.status == "succeeded" && p.next_action.is_none()),
        "{settled:?}"
    );
    let audit = app.store.payment_audit(moved_on).await.unwrap();
    let steps: Vec<(Option<&str>, &str)> = audit
        .iter()
        .map(|a| (a.from_status.as_deref(), a.to_status.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            (None, "created"),
            (Some("created"), "requires_action"),
            (Some("requires_action"), "succeeded")
        ]
    );

    let (failed, refused) = succeed_after(PaymentEvent::Failed).await;
    assert!(
        matches!(refused, TransitionResult::Refused(ref p, _) if p.status == "failed"),
        "{refused:?}"
    );
    assert_eq!(app.store.payment_audit(failed).await.unwrap().len(), 2);
    assert_eq!(app.store.outbox_for(failed).await.unwrap().len(), 2);
}

async fn a_dead_request_frees_its_key_and_an_expired_key_can_be_reused(backend: Backend) {
    let app = spawn_app(backend).await;
    let client_id = portal_client(&app).await;
    let now = OffsetDateTime::now_utc();
    let claim = |at: OffsetDateTime, fingerprint: &'static str| {
        let store = app.store.clone();
        async move {
            store
                .claim_idempotency_key(
                    client_id,
                    "key",
                    fingerprint,
                    at,
                    at + Duration::minutes(2),
                    at + Duration::hours(24),
                )
                .await
                .unwrap()
        }
    };

    let IdempotencyClaim::Claimed(first) = claim(now, "a").await else {
        panic!("a fresh key is claimed");
    };
    assert!(!first.resumed);
    assert_eq!(
        claim(now + Duration::seconds(1), "a").await,
        IdempotencyClaim::InProgress
    );
    assert_eq!(
        claim(now + Duration::seconds(1), "b").await,
        IdempotencyClaim::Mismatch
    );
    // The first request died: after its lock ran out another may take the key over, bound to
    // the resource the first one was making.
    assert_eq!(
        claim(now + Duration::minutes(3), "a").await,
        IdempotencyClaim::Claimed(ClaimedKey {
            resource_id: first.resource_id,
            resumed: true
        })
    );
    let answer = StoredResponse {
        status: 201,
        body: "{}".into(),
    };
    app.store
        .complete_idempotency_key(client_id, "key", &answer)
        .await
        .unwrap();
    assert_eq!(
        claim(now + Duration::minutes(4), "a").await,
        IdempotencyClaim::Completed(answer)
    );
    // Past its lifetime the key is free for a new request, which makes a new resource.
    let IdempotencyClaim::Claimed(reused) = claim(now + Duration::hours(25), "b").await else {
        panic!("an expired key is claimed again");
    };
    assert!(!reused.resumed);
    assert_ne!(reused.resource_id, first.resource_id);
}

async fn two_workers_claiming_at_once_never_take_the_same_payment(backend: Backend) {
    let app = spawn_app(backend).await;
    for _ in 0..30 {
        app.store
            .create_payment(&new_payment("robokassa"), "test", &|_| None)
            .await
            .unwrap();
    }
    let later = OffsetDateTime::now_utc() + Duration::hours(1);
    let claim = || {
        let store = app.store.clone();
        async move {
            store
                .claim_due_payments(later, later + Duration::minutes(2), 20)
                .await
                .unwrap()
        }
    };

    let (first, second) = tokio::join!(claim(), claim());
    let third = claim().await;

    let mut ids: Vec<Uuid> = first.iter().chain(second.iter()).map(|p| p.id).collect();
    let claimed = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), claimed, "no payment was claimed twice");
    assert_eq!(
        claimed, 30,
        "between them, the two workers took every due payment"
    );
    assert!(
        third.is_empty(),
        "a claimed payment is leased, not due again at once"
    );
}

async fn the_retention_pass_deletes_only_rows_past_their_time_in_batches(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.retention.batch = 2).await;
    // Five anonymous payments make five idempotency keys and five attempts.
    for n in 0..5 {
        let body = serde_json::json!({"supplier_id": "demo-electro",
            "account_number": format!("12345678{n:02}"), "amount": "10.00", "email": "a@b.ru"});
        let answer = app
            .http
            .post(app.url("/v1/public/payments"))
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
    }
    let now = time::OffsetDateTime::now_utc();
    for at in [now - time::Duration::days(30), now] {
        app.store.record_login_failure("olga", at).await.unwrap();
    }
    // Three keys expired, three attempts old; the rest are recent.
    let old = "2000-01-01T00:00:00Z";
    app.execute_sql(format!(
        "UPDATE idempotency_keys SET expires_at = '{old}' WHERE idem_key IN \
         (SELECT idem_key FROM idempotency_keys ORDER BY created_at LIMIT 3)"
    ))
    .await;
    app.execute_sql(format!(
        "UPDATE public_attempts SET created_at = '{old}' WHERE payment_id IN \
         (SELECT payment_id FROM public_attempts ORDER BY payment_id LIMIT 3)"
    ))
    .await;

    let report = oplata::workers::purge::retention_due(&app.services, now)
        .await
        .unwrap();

    assert_eq!(report.idempotency_keys, 3, "{report:?}");
    assert_eq!(report.public_attempts, 3, "{report:?}");
    assert_eq!(report.login_failures, 1, "{report:?}");
    assert_eq!(
        app.store
            .login_failures_since("olga", now - time::Duration::days(365))
            .await
            .unwrap(),
        1
    );
    let again = oplata::workers::purge::retention_due(&app.services, now)
        .await
        .unwrap();
    assert_eq!(again.total(), 0, "nothing more is past its time");
    assert_eq!(
        app.store.count_payments().await.unwrap(),
        5,
        "payments are kept"
    );
}
