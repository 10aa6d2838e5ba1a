//! A database outage, through a TCP proxy in front of PostgreSQL that the test cuts and
//! restores: clients get a quick `503 service_unavailable` with `Retry-After` (not a 500 after
//! ten seconds), nothing is stored under their keys, `/readyz` answers within a second, and the
//! service recovers by itself. (SQLite is a file in the process: it has no such outage.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::helpers::*;

/// Forwards connections to the real server while up; while down, kills the ones it carries and
/// drops new ones at once.
struct Proxy {
    address: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (accept_up, accept_links) = (up.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                accept_links.lock().await.push(link);
            }
        });
        Proxy { address, up, links }
    }

    async fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

mod postgres {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_outage_answers_503_quickly_and_the_retry_after_it_succeeds_once() {
        let server = std::env::var(POSTGRES_URL_VAR).expect("the PostgreSQL half needs its URL");
        let parsed = url::Url::parse(&server).unwrap();
        let target = tokio::net::lookup_host((
            parsed.host_str().unwrap_or("127.0.0.1"),
            parsed.port().unwrap_or(5432),
        ))
        .await
        .unwrap()
        .next()
        .unwrap();
        let proxy = Proxy::start(target).await;
        let through_proxy = proxy.address;
        let app = spawn_app_with(Backend::Postgres, move |settings| {
            let mut url = url::Url::parse(&settings.database_url).unwrap();
            url.set_ip_host(through_proxy.ip()).unwrap();
            url.set_port(Some(through_proxy.port())).unwrap();
            settings.database_url = url.to_string();
            settings.database_acquire_timeout_ms = 500;
        })
        .await;
        app.create_payment(&demo_payment_body()).await;
        let count = app.store.count_payments().await.unwrap();
        let key = Uuid::new_v4().to_string();

        proxy.down().await;
        let started = Instant::now();
        let refused = app
            .post_payment(
                Some(&app.portal_key),
                Some(&key),
                &demo_payment_body().to_string(),
            )
            .await;
        let waited = started.elapsed();
        let status = refused.status().as_u16();
        let retry_after = refused
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value = refused.json().await.unwrap();
        let started = Instant::now();
        let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
        let ready_in = started.elapsed();

        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "service_unavailable");
        assert!(retry_after.is_some(), "Retry-After tells when to come back");
        assert!(
            waited < Duration::from_secs(5),
            "answered in {waited:?}, not after the database's own timeouts"
        );
        assert_eq!(ready.status(), 503);
        assert!(ready_in < Duration::from_millis(1500), "{ready_in:?}");

        proxy.restore();
        let mut retried = None;
        for _ in 0..50 {
            let response = app
                .post_payment(
                    Some(&app.portal_key),
                    Some(&key),
                    &demo_payment_body().to_string(),
                )
                .await;
            if response.status() != 503 {
                retried = Some(response);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let retried = retried.expect("the service recovers by itself");
        assert_eq!(retried.status(), 201, "the 503 was not kept under the key");
        let created: Value = retried.json().await.unwrap();
        let replayed: Value = app
            .post_payment(
                Some(&app.portal_key),
                Some(&key),
                &demo_payment_body().to_string(),
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(replayed["id"], created["id"]);
        assert_eq!(app.store.count_payments().await.unwrap(), count + 1);
        assert_eq!(
            app.http
                .get(app.url("/readyz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
}
