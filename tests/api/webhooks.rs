//! Outbound webhooks through the real service on both databases: signed, at least once, in
//! order per payment, retried, dead-lettered.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use oplata::config::WebhookEndpoint;
use oplata::service::api_keys::Scope;
use oplata::workers::webhooks::deliver_due;
use secrecy::SecretString;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::helpers::*;

on_both_backends!(
    a_receiver_that_fails_five_times_gets_the_event_again_with_the_same_id,
    an_event_is_dead_lettered_after_the_retry_window_and_the_next_ones_follow,
    events_made_after_a_full_pass_are_queued_by_the_next_bounded_one,
    an_event_whose_transaction_committed_late_is_queued_by_the_next_pass,
    one_pass_drains_a_backlog_beyond_one_batch,
    delivered_events_are_deleted_after_their_retention_and_undelivered_ones_kept,
    a_new_endpoint_receives_the_events_of_the_retention_window_only,
);

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What arrived: webhook-id, webhook-timestamp, webhook-signature, body.
type Seen = (String, String, String, String);

#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    fail_first: Arc<Mutex<usize>>,
}

impl Receiver {
    /// The webhook ids received, in order.
    fn ids(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter().map(|(id, ..)| id.clone()).collect()
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    receiver.seen.lock().unwrap().push((
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        body,
    ));
    let mut left = receiver.fail_first.lock().unwrap();
    if *left > 0 {
        *left -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn app_with_receiver(backend: Backend, fail_first: usize) -> (TestApp, Receiver) {
    app_with_receiver_and(backend, fail_first, |_| {}).await
}

async fn app_with_receiver_and(
    backend: Backend,
    fail_first: usize,
    tweak: impl FnOnce(&mut oplata::config::Settings),
) -> (TestApp, Receiver) {
    let receiver = Receiver {
        fail_first: Arc::new(Mutex::new(fail_first)),
        ..Receiver::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/hooks", listener.local_addr().unwrap())).unwrap();
    let router = Router::new()
        .route("/hooks", post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let app = spawn_app_with(backend, |s| {
        s.webhooks.endpoints = vec![WebhookEndpoint {
            name: "billing".into(),
            url,
            secrets: vec![SecretString::from(SECRET)],
        }];
        tweak(s);
    })
    .await;
    (app, receiver)
}

fn http() -> reqwest::Client {
    oplata_providers::http_client(std::time::Duration::from_secs(5)).unwrap()
}

async fn a_receiver_that_fails_five_times_gets_the_event_again_with_the_same_id(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend, 5).await;
    let payment = app.create_payment(&demo_payment_body()).await;
    let events = app
        .store
        .outbox_for(payment["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        2,
        "payment.created and payment.requires_action"
    );

    let mut now = OffsetDateTime::now_utc();
    for _ in 0..10 {
        deliver_due(&app.services, &http(), now).await.unwrap();
        now += Duration::hours(2);
    }

    let seen = receiver.seen.lock().unwrap().clone();
    let created = events[0].id.to_string();
    let first_six: Vec<&String> = seen.iter().take(6).map(|(id, ..)| id).collect();
    assert!(
        first_six.iter().all(|id| **id == created),
        "the same event, with the same id, six times: {first_six:?}"
    );
    assert_eq!(seen.len(), 7, "then the next event of the payment, once");
    assert_eq!(seen[6].0, events[1].id.to_string(), "in order per payment");
    for (id, timestamp, signature, body) in &seen {
        let at: i64 = timestamp.parse().unwrap();
        assert_eq!(
            oplata::webhooks::verify(
                &[SecretString::from(SECRET)],
                id,
                timestamp,
                signature,
                body.as_bytes(),
                at
            ),
            Ok(())
        );
        let parsed: Value = serde_json::from_str(body).unwrap();
        assert_eq!(parsed["id"].as_str(), Some(id.as_str()));
    }
    let delivered = app.store.webhook_deliveries(events[0].id).await.unwrap();
    assert_eq!(
        (delivered[0].status.as_str(), delivered[0].attempts),
        ("delivered", 6)
    );
}

async fn an_event_is_dead_lettered_after_the_retry_window_and_the_next_ones_follow(
    backend: Backend,
) {
    let (app, receiver) = app_with_receiver(backend, usize::MAX).await;
    let desk = app.key_with_scope(Scope::Desk).await;
    let payment = app.create_payment(&demo_payment_body()).await;
    let events = app
        .store
        .outbox_for(payment["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap();

    let start = OffsetDateTime::now_utc();
    deliver_due(&app.services, &http(), start).await.unwrap();
    deliver_due(&app.services, &http(), start + Duration::hours(25))
        .await
        .unwrap();

    let first = app.store.webhook_deliveries(events[0].id).await.unwrap();
    assert_eq!(first[0].status, "dead");
    assert_eq!(first[0].last_error.as_deref(), Some("HTTP 500"));
    let listed: Value = app
        .http
        .get(app.url("/v1/webhooks/dead"))
        .bearer_auth(&desk)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["dead"][0]["event_id"], events[0].id.to_string());
    let admin = app
        .key_with_scope(oplata::service::api_keys::Scope::Admin)
        .await;
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l == "oplata_webhooks_dead 1"),
        "{metrics}"
    );
    *receiver.fail_first.lock().unwrap() = 0;
    deliver_due(&app.services, &http(), start + Duration::hours(26))
        .await
        .unwrap();
    let second = app.store.webhook_deliveries(events[1].id).await.unwrap();
    assert_eq!(
        second[0].status, "delivered",
        "a dead letter does not hold the payment's later events forever"
    );
}

async fn events_made_after_a_full_pass_are_queued_by_the_next_bounded_one(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend, 0).await;
    let now = OffsetDateTime::now_utc();
    // The first pass looks at the whole outbox; the next ones only at the last hour's ids.
    deliver_due(&app.services, &http(), now).await.unwrap();
    let payment = app.create_payment(&demo_payment_body()).await;
    let events = app
        .store
        .outbox_for(payment["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap();

    let later = OffsetDateTime::now_utc();
    deliver_due(&app.services, &http(), later).await.unwrap();
    deliver_due(&app.services, &http(), later).await.unwrap();

    let seen = receiver.ids();
    let made: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(seen, made, "each event once, in order");
}

async fn an_event_whose_transaction_committed_late_is_queued_by_the_next_pass(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend, 0).await;
    deliver_due(&app.services, &http(), OffsetDateTime::now_utc())
        .await
        .unwrap();
    let payment = app.create_payment(&demo_payment_body()).await;
    let payment_id: uuid::Uuid = payment["id"].as_str().unwrap().parse().unwrap();
    // A payment's second event is due once its first is delivered: two passes.
    for _ in 0..2 {
        deliver_due(&app.services, &http(), OffsetDateTime::now_utc())
            .await
            .unwrap();
    }
    assert_eq!(receiver.seen.lock().unwrap().len(), 2);

    // An event made three hours ago by a transaction that commits only now: its id (time
    // ordered) lies before everything any pass since has seen.
    let three_hours_ago = OffsetDateTime::now_utc() - Duration::hours(3);
    let late = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        three_hours_ago.unix_timestamp() as u64,
        0,
    ));
    app.execute_with_ids(
        "INSERT INTO outbox (id, aggregate_id, event_type, payload, created_at, awaiting_queue) \
         VALUES ($1, $2, 'payment.requires_action', '{}', '2026-01-01T00:00:00.000000Z', true)",
        late,
        payment_id,
    )
    .await;
    deliver_due(&app.services, &http(), OffsetDateTime::now_utc())
        .await
        .unwrap();

    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        3,
        "the late event is delivered by the next pass"
    );
    assert_eq!(seen[2].0, late.to_string());
}

async fn one_pass_drains_a_backlog_beyond_one_batch(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend, 0).await;
    for n in 0..210 {
        let mut body = demo_payment_body();
        body["account_number"] = format!("1234567{n:03}").into();
        app.create_payment(&body).await;
    }

    let sent = deliver_due(&app.services, &http(), OffsetDateTime::now_utc())
        .await
        .unwrap();

    // 420 events in batches of 200: the pass goes on while batches come back full, in several
    // loops at once (a payment's second event becomes due once its first is delivered, so a
    // few wait for the next pass).
    assert!(sent > 200, "{sent}");
    let rest = deliver_due(&app.services, &http(), OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(sent + rest, 420);
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 420);
    // Claimed by several loops side by side, each payment's events still arrive in order.
    let mut per_payment: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (_, _, _, body) in &seen {
        let event: Value = serde_json::from_str(body).unwrap();
        per_payment
            .entry(event["data"]["payment_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(event["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(per_payment.len(), 210);
    for (payment, types) in per_payment {
        assert_eq!(
            types,
            ["payment.created", "payment.requires_action"],
            "{payment}"
        );
    }
}

async fn delivered_events_are_deleted_after_their_retention_and_undelivered_ones_kept(
    backend: Backend,
) {
    // Two events per retention batch, so the pass goes through several.
    let (app, receiver) = app_with_receiver_and(backend, 0, |s| s.retention.batch = 2).await;
    let events_of = |payment: &Value| {
        let id: uuid::Uuid = payment["id"].as_str().unwrap().parse().unwrap();
        let store = app.store.clone();
        async move { store.outbox_for(id).await.unwrap() }
    };
    let now = OffsetDateTime::now_utc();
    let mut delivered = Vec::new();
    for n in 0..3 {
        let mut body = demo_payment_body();
        body["account_number"] = format!("12345670{n:02}").into();
        delivered.push(app.create_payment(&body).await);
    }
    for _ in 0..2 {
        deliver_due(&app.services, &http(), OffsetDateTime::now_utc())
            .await
            .unwrap();
    }
    assert_eq!(receiver.seen.lock().unwrap().len(), 6);
    // A payment whose first event is dead-lettered and whose second is still pending.
    *receiver.fail_first.lock().unwrap() = usize::MAX;
    let mut body = demo_payment_body();
    body["account_number"] = "1234567100".into();
    let stuck = app.create_payment(&body).await;
    deliver_due(&app.services, &http(), OffsetDateTime::now_utc())
        .await
        .unwrap();
    deliver_due(&app.services, &http(), now + Duration::hours(25))
        .await
        .unwrap();
    let stuck_events = events_of(&stuck).await;
    let statuses = |event| {
        let store = app.store.clone();
        async move {
            store.webhook_deliveries(event).await.unwrap()[0]
                .status
                .clone()
        }
    };
    assert_eq!(statuses(stuck_events[0].id).await, "dead");
    assert_eq!(statuses(stuck_events[1].id).await, "pending");
    // And one whose events no pass has queued yet.
    body["account_number"] = "1234567101".into();
    let unqueued = app.create_payment(&body).await;

    let mut delivered_ids = Vec::new();
    for payment in &delivered {
        for event in events_of(payment).await {
            assert_eq!(statuses(event.id).await, "delivered");
            delivered_ids.push(event.id);
        }
    }
    assert_eq!(delivered_ids.len(), 6);

    let early = oplata::workers::purge::retention_due(&app.services, now + Duration::days(29))
        .await
        .unwrap();
    assert_eq!(
        early.webhook_events, 0,
        "nothing is deleted within its retention"
    );
    let report = oplata::workers::purge::retention_due(&app.services, now + Duration::days(31))
        .await
        .unwrap();

    assert_eq!(report.webhook_events, 6, "{report:?}");
    for payment in &delivered {
        assert!(events_of(payment).await.is_empty());
    }
    for &event in &delivered_ids {
        assert!(
            app.store
                .webhook_deliveries(event)
                .await
                .unwrap()
                .is_empty()
        );
    }
    assert_eq!(
        events_of(&stuck).await.len(),
        2,
        "undelivered events are kept"
    );
    assert_eq!(
        events_of(&unqueued).await.len(),
        2,
        "unqueued events are kept"
    );
    assert_eq!(app.store.dead_webhooks().await.unwrap().len(), 1);
    let again = oplata::workers::purge::retention_due(&app.services, now + Duration::days(31))
        .await
        .unwrap();
    assert_eq!(again.webhook_events, 0);
    assert_eq!(
        app.store.count_payments().await.unwrap(),
        5,
        "payments are kept"
    );
    // The next pass queues and delivers the unqueued payment's first event; nothing deleted
    // comes back.
    *receiver.fail_first.lock().unwrap() = 0;
    let before = receiver.seen.lock().unwrap().len();
    deliver_due(&app.services, &http(), now + Duration::hours(26))
        .await
        .unwrap();
    let seen = receiver.seen.lock().unwrap().clone();
    let unqueued_first = events_of(&unqueued).await[0].id.to_string();
    assert!(
        seen[before..].iter().any(|(id, ..)| *id == unqueued_first),
        "{:?}",
        &seen[before..]
    );
    assert!(
        seen[before..]
            .iter()
            .all(|(id, ..)| !seen[..6].iter().any(|(old, ..)| old == id))
    );
}

async fn a_new_endpoint_receives_the_events_of_the_retention_window_only(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend, 0).await;
    // Two events written before the endpoint was configured (queued for no one): one older than
    // the retention of delivered events less a day, one inside it.
    let made = |days_ago: i64| {
        let at = OffsetDateTime::now_utc() - Duration::days(days_ago);
        uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            at.unix_timestamp() as u64,
            0,
        ))
    };
    let (old, recent) = (made(30), made(28));
    for id in [old, recent] {
        app.execute_with_ids(
            "INSERT INTO outbox (id, aggregate_id, event_type, payload, created_at, \
             awaiting_queue) VALUES ($1, $2, 'payment.created', '{}', \
             '2026-01-01T00:00:00.000000Z', false)",
            id,
            uuid::Uuid::now_v7(),
        )
        .await;
    }

    // A process's first pass matches the outbox against the endpoint's deliveries.
    deliver_due(&app.services, &http(), OffsetDateTime::now_utc())
        .await
        .unwrap();

    let seen = receiver.ids();
    assert_eq!(seen, vec![recent.to_string()]);
    assert!(app.store.webhook_deliveries(old).await.unwrap().is_empty());
}
