//! Throughput and latency of the hot paths, measured over real HTTP on 127.0.0.1:
//! creating a payment (validation, the idempotency key, the payment and its move to the page in one transaction, signing the Robokassa URL) and
//! handling a ResultURL notification (verification, row lock, state change, audit, outbox); an
//! anonymous payment (the same plus the abuse limits under an account lock); an inbound SMS
//! (message-id dedupe and the daily counts under a phone lock). On PostgreSQL it also runs
//! pgbench on the least a lifecycle must write (`benches/minimal_lifecycle.sql`) and prints
//! oplata's share of that limit, and its time per commit with one client, beside creations sent
//! at half the closed loop's rate. Last, bursts of saved-card charges against an acquirer that
//! answers after a second (`slow_acquirer.rs`; alone: `cargo bench --bench payments --
//! slow-acquirer`; only the lifecycles and pgbench: `-- lifecycles`). `cargo bench --bench
//! payments -- million` measures instead the reads, the
//! desk's searches and the lifecycle before and after a million payments are stored
//! (`million.rs`).
//!
//! `cargo bench --bench payments` runs it on SQLite; with `OPLATA_BENCH_POSTGRES_URL` set it runs
//! on PostgreSQL as well. Numbers go into the README by hand; nothing here asserts a time.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use oplata::app::Application;
use oplata::config::{DEMO_ROBOKASSA_PASSWORD2, Mode, Settings, WebhookEndpoint};
use oplata::service::api_keys::{self, Scope};
use oplata_providers::robokassa::wire;
use oplata_providers::signing::HashAlgorithm;
use secrecy::ExposeSecret;

mod million;
mod slow_acquirer;

const PAYMENTS: usize = 2000;
const CONCURRENCY: usize = 16;
/// Saved-card charges sent at once to an acquirer that answers after a second, and how many
/// such bursts (memory is read after each).
const SLOW_CHARGES: usize = 1000;
const SLOW_BURSTS: usize = 3;

/// `cargo bench --bench payments -- slow-acquirer` measures only the saved-card charges against
/// a slow acquirer.
fn slow_acquirer_only() -> bool {
    std::env::args().any(|arg| arg == "slow-acquirer")
}

/// `cargo bench --bench payments -- lifecycles` measures only the lifecycles, the creations at
/// half load, the delivery of their events and (on PostgreSQL) pgbench beside them: the
/// comparison with the database's limit.
fn lifecycles_only() -> bool {
    std::env::args().any(|arg| arg == "lifecycles")
}

/// `cargo bench --bench payments -- million` measures only the endpoints and pages before and
/// after a million payments are stored.
fn million_only() -> bool {
    std::env::args().any(|arg| arg == "million")
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Prints a measurement; answers how many a second.
fn report(name: &str, total: Duration, mut latencies: Vec<Duration>) -> u128 {
    latencies.sort_unstable();
    let per_second = latencies.len() as u128 * 1_000_000 / total.as_micros().max(1);
    println!(
        "{name:<34} {:>6} req  {:>6} req/s  p50 {:>7.2?}  p99 {:>7.2?}  max {:>7.2?}",
        latencies.len(),
        per_second,
        percentile(&latencies, 50),
        percentile(&latencies, 99),
        latencies[latencies.len() - 1],
    );
    per_second
}

/// Sends one request per item, `CONCURRENCY` at a time, and reports throughput and latency.
/// `request` answers its latency and what a later phase needs.
async fn measure<I, F, Fut, T>(name: &str, items: I, request: F) -> Vec<T>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: std::future::Future<Output = (Duration, T)>,
{
    let started = Instant::now();
    let done: Vec<(Duration, T)> = futures::stream::iter(items)
        .map(request)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let (latencies, outputs): (Vec<Duration>, Vec<T>) = done.into_iter().unzip();
    report(name, started.elapsed(), latencies);
    outputs
}

/// A memory figure of this process from `/proc/self/status` (`VmRSS`: now, `VmHWM`: peak), in
/// KiB; 0 where it cannot be read.
fn status_kib(field: &str) -> u64 {
    status_kib_of("/proc/self/status", field)
}

/// The same from another process's status file.
fn status_kib_of(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The process's resident memory now, in KiB.
fn resident_kib() -> u64 {
    status_kib("VmRSS")
}

/// pgbench replaying the least a lifecycle must write (`benches/minimal_lifecycle.sql`) with
/// `clients` clients for `seconds`: its stdout, or why it did not run.
async fn pgbench(url: &str, clients: usize, seconds: u32) -> Result<String, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/minimal_lifecycle.sql");
    let (url, clients, seconds) = (url.to_owned(), clients.to_string(), seconds.to_string());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("pgbench")
            .args([
                "-n", "-f", script, "-c", &clients, "-j", "2", "-T", &seconds, &url,
            ])
            .output()
    })
    .await
    .unwrap()
    .map_err(|_| "pgbench is not installed".to_owned())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// A figure pgbench printed (`tps = 812.3 …`, `latency average = 2.1 ms`).
fn pgbench_figure(printed: &str, prefix: &str) -> Option<rust_decimal::Decimal> {
    printed
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
}

/// The same database's own limit: pgbench on the minimal lifecycle with as many clients, and
/// oplata's share of it; then with one client, the database's own time for a lifecycle's two
/// commits, against which a creation's latency at half load is read.
async fn pgbench_minimal(url: &str, oplata_lifecycles_per_second: u128) {
    match pgbench(url, CONCURRENCY, 10).await {
        Ok(printed) => match pgbench_figure(&printed, "tps = ") {
            Some(tps) => println!(
                "postgres: pgbench minimal lifecycle ({CONCURRENCY} clients)  {:>6} per second; oplata reaches {}% of it",
                tps.round(),
                (rust_decimal::Decimal::from(oplata_lifecycles_per_second)
                    * rust_decimal::Decimal::ONE_HUNDRED
                    / tps.max(rust_decimal::Decimal::ONE))
                .round()
            ),
            None => println!("postgres: pgbench printed no rate: {printed}"),
        },
        Err(why) => {
            println!("postgres: {why}: the comparison with the database's own limit is skipped");
            return;
        }
    }
    if let Ok(printed) = pgbench(url, 1, 3).await
        && let Some(latency) = pgbench_figure(&printed, "latency average = ")
    {
        println!(
            "postgres: pgbench minimal lifecycle (1 client)  {} ms per lifecycle (two commits), about {} ms per commit",
            latency.round_dp(2),
            (latency / rust_decimal::Decimal::TWO).round_dp(2)
        );
    }
}

/// A schema of the run's own on the PostgreSQL server, dropped at the end: every run starts
/// from empty tables, as the SQLite half does, and leaves nothing to the next (neither rows that
/// a server with autovacuum off never analyzes, nor pending deliveries, nor a million seeded
/// payments that would make the next "fresh" phase a large one). pgbench runs in it too.
struct RunSchema {
    server: String,
    name: String,
    /// Whether the benchmark must analyze between phases (see [`RunSchema::analyze`]).
    autovacuum_off: bool,
}

impl RunSchema {
    async fn create(server: &str) -> Self {
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::PgPool::connect(server).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&pool)
            .await
            .unwrap();
        let (autovacuum,): (String,) = sqlx::query_as("SHOW autovacuum")
            .fetch_one(&pool)
            .await
            .unwrap();
        let autovacuum_off = autovacuum != "on";
        if autovacuum_off {
            println!(
                "postgres: autovacuum is {autovacuum} on this server (it is on by default and oplata expects it): the benchmark analyzes the tables between its phases"
            );
        }
        RunSchema {
            server: server.to_owned(),
            name,
            autovacuum_off,
        }
    }

    /// The server's URL with the schema first on the search path (libpq and sqlx both read
    /// `options`).
    fn url(&self) -> String {
        let separator = if self.server.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.server, self.name
        )
    }

    /// Between two phases on a server with autovacuum off, what autovacuum would have done as
    /// the tables grew: `ANALYZE`. A table never analyzed is planned with default estimates,
    /// and the webhook claim's "first pending event of this payment" then scanned every pending
    /// delivery for each candidate (0.5–2.5 s a claim; the drain 421 events/s); a server with
    /// autovacuum on (the default) analyzes a new table after its first 50 changes and again as
    /// it grows. Done between phases so that no measurement includes it.
    async fn analyze(&self) {
        if !self.autovacuum_off {
            return;
        }
        let pool = sqlx::PgPool::connect(&self.url()).await.unwrap();
        // The run's own tables only (a bare `ANALYZE` would visit every schema on the server).
        let (tables,): (String,) = sqlx::query_as(
            "SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') \
             FROM pg_tables WHERE schemaname = current_schema()",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {tables}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }

    async fn drop(self) {
        let pool = sqlx::PgPool::connect(&self.server).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.name
        )))
        .execute(&pool)
        .await
        .unwrap();
    }
}

/// What PostgreSQL's WAL and checkpointer did over a measurement, to tell a tail the database
/// caused from one it did not: the WAL written, its full-page images (the first change of a page
/// after a checkpoint logs the whole page), and whether a checkpoint's closing `fsync`, which
/// commits queue behind, fell inside. (On 2026-12-08 it ruled checkpoints out: README.)
struct WalActivity {
    pool: sqlx::PgPool,
    at_start: WalCounters,
    /// When the measurement began, to be read against the server's log of checkpoints.
    began: time::OffsetDateTime,
}

#[derive(Clone, Copy)]
struct WalCounters {
    bytes: i64,
    full_page_images: i64,
    /// Milliseconds checkpoints spent in their last step, the `fsync` of every file they
    /// wrote; counted when a checkpoint completes.
    checkpoint_sync_ms: f64,
}

impl WalActivity {
    async fn start(schema: &RunSchema) -> Self {
        let pool = sqlx::PgPool::connect(&schema.server).await.unwrap();
        let at_start = Self::counters(&pool).await;
        WalActivity {
            pool,
            at_start,
            began: time::OffsetDateTime::now_utc(),
        }
    }

    async fn counters(pool: &sqlx::PgPool) -> WalCounters {
        let (bytes, full_page_images, checkpoint_sync_ms): (i64, i64, f64) = sqlx::query_as(
            "SELECT (SELECT wal_bytes::bigint FROM pg_stat_wal), \
             (SELECT wal_fpi FROM pg_stat_wal), \
             (SELECT checkpoint_sync_time FROM pg_stat_bgwriter)",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        WalCounters {
            bytes,
            full_page_images,
            checkpoint_sync_ms,
        }
    }

    async fn report(self, label: &str, requests: usize) {
        let end = Self::counters(&self.pool).await;
        let start = self.at_start;
        // Only printed: a float from the server, never used in arithmetic on money.
        #[allow(clippy::float_arithmetic)]
        let synced_ms = end.checkpoint_sync_ms - start.checkpoint_sync_ms;
        let checkpoint = if synced_ms > 0.0 {
            format!(
                "a checkpoint ended in it: its fsync of the data files took {synced_ms:.0} ms, \
                 commits wait behind it"
            )
        } else {
            "no checkpoint ended in it".to_owned()
        };
        let per_request = (end.bytes - start.bytes) / i64::try_from(requests.max(1)).unwrap();
        let clock =
            time::macros::format_description!("[hour]:[minute]:[second].[subsecond digits:3]");
        let (began, ended) = (self.began, time::OffsetDateTime::now_utc());
        println!(
            "{label}: {}–{} UTC: WAL {} kB a creation, {} full-page images; {checkpoint}",
            began.format(&clock).unwrap(),
            ended.format(&clock).unwrap(),
            per_request / 1024,
            end.full_page_images - start.full_page_images,
        );
        self.pool.close().await;
    }
}

/// What runs between two phases on one database: on PostgreSQL, [`RunSchema::analyze`].
async fn between_phases(schema: Option<&RunSchema>) {
    if let Some(schema) = schema {
        schema.analyze().await;
    }
}

/// Runs every measurement on one database (PostgreSQL's in `schema`); returns lifecycles
/// (creation, then its ResultURL) per second.
async fn run(label: &str, database_url: String, schema: Option<&RunSchema>) -> u128 {
    let mut settings = Settings {
        mode: Mode::Demo,
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url,
        log_filter: "error".into(),
        ..Settings::default()
    };
    // Measured alone: the background workers would compete for the two cores.
    settings.workers.enabled = false;
    // Anonymous payments come from many customers, each behind the proxy at 127.0.0.1 with an
    // address of their own (one address would meet the per-address cap after a few).
    settings.public.client_ip_header = Some("X-Forwarded-For".into());
    settings.public.trusted_proxies = vec!["127.0.0.1/32".into()];
    // A billing endpoint that answers at once, for the webhook drain measured last.
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_url = format!("http://{}/events", receiver.local_addr().unwrap());
    tokio::spawn(async move {
        let router = axum::Router::new().route(
            "/events",
            axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }),
        );
        axum::serve(receiver, router).await
    });
    settings.webhooks.endpoints = vec![WebhookEndpoint {
        name: "billing".into(),
        url: receiver_url.parse().unwrap(),
        secrets: vec![secrecy::SecretString::from(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )],
    }];
    let settings_database_url = settings.database_url.clone();
    let app = Application::build(settings).await.unwrap();
    let services = app.services();
    let base = app.base_url().as_str().trim_end_matches('/').to_owned();
    let store = app.store();
    let (_, key) = api_keys::create(store.as_ref(), "bench", Scope::Portal)
        .await
        .unwrap();
    let key = key.expose_secret().to_owned();
    let (_, sms_key) = api_keys::create(store.as_ref(), "bench gateway", Scope::Sms)
        .await
        .unwrap();
    let sms_key = sms_key.expose_secret().to_owned();
    let (_, admin_key) = api_keys::create(store.as_ref(), "bench monitor", Scope::Admin)
        .await
        .unwrap();
    let (_, desk_key) = api_keys::create(store.as_ref(), "bench desk", Scope::Desk)
        .await
        .unwrap();
    let database_url = settings_database_url;
    tokio::spawn(app.run_until(std::future::pending()));
    // A prefix of this run's idempotency keys, message ids and phones.
    let run = uuid::Uuid::new_v4().simple().to_string();

    if million_only() {
        let target = million::Target {
            label,
            base: &base,
            key: &key,
            admin_key: admin_key.expose_secret(),
            desk_key: desk_key.expose_secret(),
            run: &run,
            services: &services,
        };
        let empty_lifecycles = best_lifecycles(label, &base, &key, &run).await;
        let empty = million::reads(&target, "fresh").await;
        million::seed(&database_url).await;
        // The reads before the lifecycles, so that both read the same day's payments.
        let full = million::reads(&target, "1M").await;
        let full_lifecycles = best_lifecycles(
            &format!("{label} (1M)"),
            &base,
            &key,
            &format!("{run}-full"),
        )
        .await;
        million::compare(
            label,
            &[("lifecycles", empty_lifecycles)],
            &[("lifecycles", full_lifecycles)],
        );
        million::compare(label, &empty, &full);
        return 0;
    }
    let lifecycles_per_second = if slow_acquirer_only() {
        0
    } else {
        let (per_second, creations_per_second) = lifecycles(label, &base, &key, &run).await;
        between_phases(schema).await;
        at_half_load(label, &base, &key, &run, creations_per_second, schema).await;
        if lifecycles_only() {
            // The drain is measured in this mode too.
            between_phases(schema).await;
            drain_webhooks(label, &services).await;
            return per_second;
        }
        between_phases(schema).await;
        others(label, &base, &sms_key, &run).await;
        between_phases(schema).await;
        drain_webhooks(label, &services).await;
        per_second
    };
    between_phases(schema).await;
    slow_acquirer::measure(
        &slow_acquirer::Target {
            label,
            base: &base,
            sandbox: &base,
            key: &key,
            run: &run,
            pid: None,
            cpu: vec![(
                "service, simulator and client in one process",
                std::process::id(),
            )],
        },
        SLOW_CHARGES,
        SLOW_BURSTS,
    )
    .await;
    lifecycles_per_second
}

/// Creations with a fresh key, then each one's signed ResultURL; answers lifecycles per second and
/// creations per second.
async fn lifecycles(label: &str, base: &str, key: &str, run: &str) -> (u128, u128) {
    let http = reqwest::Client::new();
    let creating = Instant::now();
    let created: Vec<serde_json::Value> =
        measure(&format!("{label}: POST /v1/payments"), 0..PAYMENTS, |i| {
            create_payment(
                http.clone(),
                base.to_owned(),
                key.to_owned(),
                format!("bench-{run}-{i}"),
                i,
            )
        })
        .await;

    let creating = creating.elapsed();
    let creations_per_second = PAYMENTS as u128 * 1_000_000 / creating.as_micros().max(1);
    let settling = Instant::now();
    measure(
        &format!("{label}: POST /callbacks/robokassa/result"),
        created.iter(),
        |payment| {
            let http = http.clone();
            let base = base.to_owned();
            async move {
                let url = url::Url::parse(payment["next_action"]["url"].as_str().unwrap()).unwrap();
                let param = |n: &str| {
                    url.query_pairs()
                        .find(|(k, _)| k == n)
                        .unwrap()
                        .1
                        .into_owned()
                };
                let (inv, sum, id) = (
                    param("InvId"),
                    format!("{}0000", param("OutSum")),
                    param("Shp_payment"),
                );
                let shp = vec![("Shp_payment".to_owned(), id.clone())];
                let signature = wire::result_signature(
                    HashAlgorithm::Md5,
                    &sum,
                    &inv,
                    DEMO_ROBOKASSA_PASSWORD2,
                    &shp,
                );
                let t = Instant::now();
                let answer = http
                    .post(format!("{base}/callbacks/robokassa/result"))
                    .form(&[
                        ("OutSum", sum),
                        ("InvId", inv.clone()),
                        ("SignatureValue", signature),
                        ("Shp_payment", id),
                    ])
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                assert_eq!(answer, format!("OK{inv}"));
                (t.elapsed(), ())
            }
        },
    )
    .await;
    let lifecycle = creating + settling.elapsed();
    let lifecycles_per_second = PAYMENTS as u128 * 1_000_000 / lifecycle.as_micros().max(1);
    println!(
        "{label}: lifecycle (creation, then its ResultURL)  {lifecycles_per_second:>6} per second"
    );
    (lifecycles_per_second, creations_per_second)
}

/// One hosted payment under a fresh key; answers its latency and the payment.
async fn create_payment(
    http: reqwest::Client,
    base: String,
    key: String,
    idempotency_key: String,
    i: usize,
) -> (Duration, serde_json::Value) {
    let body = serde_json::json!({
        "supplier_id": "demo-electro", "account_number": "1234567890",
        "amount": format!("{}.{:02}", 100 + i % 10_000, i % 100), "currency": "RUB",
        "description": "Электроэнергия", "email": "bench@example.ru"
    });
    let t = Instant::now();
    let response = http
        .post(format!("{base}/v1/payments"))
        .bearer_auth(&key)
        .header("idempotency-key", idempotency_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let payment: serde_json::Value = response.json().await.unwrap();
    (t.elapsed(), payment)
}

/// Two rounds of lifecycles, the better counting (as the million mode's reads take the best of
/// three): what the code can do, not what else ran on the machine meanwhile.
async fn best_lifecycles(label: &str, base: &str, key: &str, run: &str) -> u128 {
    let mut best = 0;
    for round in 0..2 {
        let (per_second, _) = lifecycles(label, base, key, &format!("{run}-{round}")).await;
        best = best.max(per_second);
    }
    best
}

/// Creations sent at half the rate the closed loop reached, each at its own time whatever the
/// others are doing (an open loop, as customers arrive), for five seconds: the latency a request
/// sees when the service is busy but not saturated.
async fn at_half_load(
    label: &str,
    base: &str,
    key: &str,
    run: &str,
    max_per_second: u128,
    schema: Option<&RunSchema>,
) {
    let wal = match schema {
        Some(schema) => Some(WalActivity::start(schema).await),
        None => None,
    };
    let rate = u64::try_from(max_per_second / 2).unwrap_or(1).max(1);
    let count = rate * 5;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let http = reqwest::Client::new();
    let started = tokio::time::Instant::now();
    let mut requests = Vec::new();
    for i in 0..count {
        tokio::time::sleep_until(started + interval * u32::try_from(i).unwrap()).await;
        requests.push(tokio::spawn(create_payment(
            http.clone(),
            base.to_owned(),
            key.to_owned(),
            format!("half-{run}-{i}"),
            i as usize,
        )));
    }
    let mut latencies = Vec::new();
    for request in requests {
        latencies.push(request.await.unwrap().0);
    }
    let requests = latencies.len();
    report(
        &format!("{label}: POST /v1/payments at {rate}/s"),
        started.elapsed(),
        latencies,
    );
    if let Some(wal) = wal {
        wal.report(label, requests).await;
    }
}

/// Anonymous payments and inbound SMS.
async fn others(label: &str, base: &str, sms_key: &str, run: &str) {
    let http = reqwest::Client::new();
    let phone_block = 100 + (uuid::Uuid::new_v4().as_u128() % 900) as u32;
    measure(
        &format!("{label}: POST /v1/public/payments"),
        0..PAYMENTS,
        |i| {
            let http = http.clone();
            let base = base.to_owned();
            let run = run.to_owned();
            async move {
                let body = serde_json::json!({
                    "supplier_id": "demo-electro", "account_number": format!("{:010}", i),
                    "amount": "1500.00", "email": "bench@example.ru"
                });
                let t = Instant::now();
                let customer = format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
                let response = http
                    .post(format!("{base}/v1/public/payments"))
                    .header("idempotency-key", format!("public-{run}-{i}"))
                    .header("x-forwarded-for", customer)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
                (t.elapsed(), ())
            }
        },
    )
    .await;

    measure(&format!("{label}: POST /v1/sms/inbound (help)"), 0..PAYMENTS, |i| {
            let http = http.clone();
            let base = base.to_owned();
            let key = sms_key.to_owned();
            let run = run.to_owned();
            async move {
                let body = serde_json::json!({
                    "message_id": format!("bench-{run}-{i}"), "from": format!("+7{phone_block}{i:07}"),
                    "text": "?", "received_at": "2026-11-22T10:00:00Z"
                });
                let t = Instant::now();
                let response = http
                    .post(format!("{base}/v1/sms/inbound"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                (t.elapsed(), ())
            }
    })
    .await;
}

/// Delivers every event the run made (about 6 per payment, SMS and public payments included)
/// to a receiver that answers at once, pass after pass as the worker would, and says how fast.
async fn drain_webhooks(label: &str, services: &oplata::service::Services) {
    let http = oplata_providers::http_client(Duration::from_secs(5)).unwrap();
    let started = Instant::now();
    let mut delivered = 0;
    loop {
        let sent = oplata::workers::webhooks::deliver_due(
            services,
            &http,
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
        if sent == 0 {
            break;
        }
        delivered += sent;
    }
    let elapsed = started.elapsed();
    println!(
        "{label}: webhook drain  {delivered} events in {elapsed:.1?}: {} events/s",
        delivered as u128 * 1_000_000 / elapsed.as_micros().max(1)
    );
}

/// The slow-acquirer bursts against a service running as a process of its own, named by
/// `OPLATA_BENCH_TARGET`, `OPLATA_BENCH_SANDBOX`, `OPLATA_BENCH_KEY` and `OPLATA_BENCH_PID`
/// (`scripts/service-rss` starts it): its memory is then the service's alone. `false` when
/// they are not set.
async fn external_service() -> bool {
    let variable = |name: &str| std::env::var(name).ok();
    let (Some(base), Some(sandbox), Some(key), Some(pid)) = (
        variable("OPLATA_BENCH_TARGET"),
        variable("OPLATA_BENCH_SANDBOX"),
        variable("OPLATA_BENCH_KEY"),
        variable("OPLATA_BENCH_PID"),
    ) else {
        return false;
    };
    // The TLS provider that building the service would install (the clients below need one).
    oplata_providers::http_client(Duration::from_secs(5)).unwrap();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let serve_pid: u32 = pid.parse().unwrap();
    let mut cpu = vec![("service", serve_pid)];
    if let Some(sandbox_pid) = variable("OPLATA_BENCH_SANDBOX_PID") {
        cpu.push(("acquirer simulator", sandbox_pid.parse().unwrap()));
    }
    cpu.push(("client", std::process::id()));
    slow_acquirer::measure(
        &slow_acquirer::Target {
            label: "oplata serve",
            base: &base,
            sandbox: &sandbox,
            key: &key,
            run: &run,
            pid: Some(serve_pid),
            cpu,
        },
        SLOW_CHARGES,
        SLOW_BURSTS,
    )
    .await;
    println!(
        "oplata serve: peak RSS (VmHWM) {} KiB",
        status_kib_of(&format!("/proc/{pid}/status"), "VmHWM")
    );
    true
}

#[tokio::main]
async fn main() {
    if external_service().await {
        return;
    }
    println!("{PAYMENTS} payments, {CONCURRENCY} concurrent clients, one process, loopback HTTP");
    let dir = tempfile::tempdir().unwrap();
    run(
        "sqlite",
        format!("sqlite://{}/bench.db", dir.path().display()),
        None,
    )
    .await;
    if let Ok(server) = std::env::var("OPLATA_BENCH_POSTGRES_URL") {
        // The SQLite half's writes sit in the page cache until the kernel writes them back,
        // some 30 s later: in the middle of PostgreSQL's half, whose commits then wait for
        // the disk behind them. Written now, they are counted to neither.
        let _ = std::process::Command::new("sync").status();
        let schema = RunSchema::create(&server).await;
        let url = schema.url();
        let oplata = run("postgres", url.clone(), Some(&schema)).await;
        if !slow_acquirer_only() && !million_only() {
            pgbench_minimal(&url, oplata).await;
        }
        schema.drop().await;
    }
    println!("VmHWM:\t{:>8} kB", status_kib("VmHWM"));
}
