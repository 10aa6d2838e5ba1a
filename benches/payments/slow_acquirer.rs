//! Saved-card charges against an acquirer that takes a second to answer, all sent at once: the
//! service should hold no database connection while it waits, so a burst of N charges should
//! take about one second plus the database work, not N ÷ pool size seconds. Memory is read
//! after each burst and again after a pause, to see whether the burst's memory comes back.

use std::time::{Duration, Instant};

use futures::StreamExt;
use oplata::config::DEMO_MONETA_SUPPLIER_ID;
use oplata_providers::moneta::sandbox::DEMO_OTP;

/// Cards charged in turn: a customer has one card, charged by several bills at once.
const CARDS: usize = 100;
/// The acquirer's answer time.
const ACQUIRER_LATENCY: Duration = Duration::from_secs(1);

pub struct Target<'a> {
    pub label: &'a str,
    pub base: &'a str,
    /// Where the simulators answer: `base` when they are mounted in the service.
    pub sandbox: &'a str,
    pub key: &'a str,
    pub run: &'a str,
    /// The process whose memory is read: this one, or a service of its own
    /// (`scripts/service-rss`).
    pub pid: Option<u32>,
    /// The processes whose CPU time a burst costs, by name: this one alone (service,
    /// simulator and client together), or the service, the simulator and this client.
    pub cpu: Vec<(&'a str, u32)>,
}

impl Target<'_> {
    /// The measured process's resident memory now, in KiB.
    fn resident_kib(&self) -> u64 {
        match self.pid {
            Some(pid) => crate::status_kib_of(&format!("/proc/{pid}/status"), "VmRSS"),
            None => crate::resident_kib(),
        }
    }
}

/// Binds the cards through Moneta's hosted form with 3-D Secure, as customers would, then sends
/// `bursts` bursts of `charges` saved-card charges, each burst all at once.
pub async fn measure(target: &Target<'_>, charges: usize, bursts: usize) {
    let http = reqwest::Client::new();
    println!(
        "{}: RSS {} KiB before the cards are bound",
        target.label,
        target.resident_kib()
    );
    let bound = Instant::now();
    let cards: Vec<(String, String)> = futures::stream::iter(0..CARDS)
        .map(|i| bind_card(&http, target, i))
        .buffer_unordered(16)
        .collect()
        .await;
    println!(
        "{}: {CARDS} cards bound through the 3-D Secure form in {:.1?}",
        target.label,
        bound.elapsed()
    );
    control(
        &http,
        target,
        serde_json::json!({"api": {"mode": "hold", "ms": ACQUIRER_LATENCY.as_millis() as u64}}),
    )
    .await;
    let ticks = ticks_per_second();
    for burst in 0..bursts {
        // A client of its own per burst, dropped after it: the burst's connections close, as
        // a burst's callers would go away, and what memory stays is the service's.
        let http = reqwest::Client::new();
        let cpu_before: Vec<u64> = target.cpu.iter().map(|(_, pid)| cpu_ticks(*pid)).collect();
        let started = Instant::now();
        let mut latencies: Vec<Duration> = futures::future::join_all((0..charges).map(|i| {
            let (user, card) = &cards[i % CARDS];
            charge(&http, target, user, card, burst, i)
        }))
        .await;
        let elapsed = started.elapsed();
        let cpu_spent: Vec<String> = target
            .cpu
            .iter()
            .zip(&cpu_before)
            .map(|((name, pid), before)| {
                let micros = cpu_ticks(*pid).saturating_sub(*before) * 1_000_000 / ticks;
                format!("{name} {} µs", micros / charges.max(1) as u64)
            })
            .collect();
        drop(http);
        latencies.sort_unstable();
        let rss_now = target.resident_kib();
        tokio::time::sleep(Duration::from_secs(3)).await;
        println!(
            "{}: {charges} saved-card charges at once, acquirer {ACQUIRER_LATENCY:?}: {:.2?} in all, {} per second ({} % of {charges} ÷ {ACQUIRER_LATENCY:?}); p50 {:.2?}, p99 {:.2?}; RSS {} KiB after, {} KiB 3 s later",
            target.label,
            elapsed,
            charges as u128 * 1000 / elapsed.as_millis().max(1),
            ACQUIRER_LATENCY.as_millis() * 100 / elapsed.as_millis().max(1),
            crate::percentile(&latencies, 50),
            crate::percentile(&latencies, 99),
            rss_now,
            target.resident_kib(),
        );
        // What the burst cost in CPU bounds it: with two cores, N charges cannot end sooner
        // than the acquirer's second plus N × (CPU per charge) ÷ 2.
        println!(
            "{}: CPU per charge (user + system): {}",
            target.label,
            cpu_spent.join(", ")
        );
    }
    control(
        &http,
        target,
        serde_json::json!({"api": {"mode": "normal"}}),
    )
    .await;
}

/// A process's CPU time so far (user and system, all its threads, those ended included), in
/// clock ticks; 0 where it cannot be read.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The fields after the command name, which may hold spaces, end with `)`: utime and stime
    // are the 12th and 13th of them.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse::<u64>().ok())
        .sum()
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on every Linux this runs on).
fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}

async fn control(http: &reqwest::Client, target: &Target<'_>, body: serde_json::Value) {
    let response = http
        .post(format!("{}/sandbox/moneta/control", target.sandbox))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

async fn charge(
    http: &reqwest::Client,
    target: &Target<'_>,
    user: &str,
    card: &str,
    burst: usize,
    i: usize,
) -> Duration {
    let body = serde_json::json!({
        "supplier_id": DEMO_MONETA_SUPPLIER_ID, "account_number": "18810177230000012345",
        "amount": "500.00", "currency": "RUB", "description": "Штраф", "user_id": user,
        "email": "bench@example.ru",
        "payment_method": {"type": "saved_card", "card_id": card},
    });
    let t = Instant::now();
    let response = http
        .post(format!("{}/v1/payments", target.base))
        .bearer_auth(target.key)
        .header(
            "idempotency-key",
            format!("charge-{}-{burst}-{i}", target.run),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let payment: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{payment}");
    assert_eq!(payment["status"], "succeeded", "{payment}");
    t.elapsed()
}

/// A binding payment paid on the form with the one-time code; answers the user and the card.
async fn bind_card(http: &reqwest::Client, target: &Target<'_>, i: usize) -> (String, String) {
    let user = format!("bench-{}-{i}", target.run);
    let body = serde_json::json!({
        "supplier_id": DEMO_MONETA_SUPPLIER_ID, "account_number": "18810177230000012345",
        "amount": "500.00", "currency": "RUB", "description": "Штраф", "user_id": user,
        "email": "bench@example.ru", "save_card": true,
    });
    let created: serde_json::Value = http
        .post(format!("{}/v1/payments", target.base))
        .bearer_auth(target.key)
        .header("idempotency-key", format!("bind-{}-{i}", target.run))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let action = &created["next_action"];
    let fields: Vec<(String, String)> = action["fields"]
        .as_object()
        .unwrap_or_else(|| panic!("a form to post: {created}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    let form = http
        .post(action["url"].as_str().unwrap())
        .form(&fields)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let operation = form
        .split("name=\"operation\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the form names its operation: {form}"))
        .to_owned();
    let sandbox = |path: &str| format!("{}/sandbox/moneta/{path}", target.sandbox);
    http.post(sandbox("assistant/decide"))
        .form(&[("operation", operation.as_str()), ("action", "pay")])
        .send()
        .await
        .unwrap();
    http.post(sandbox("assistant/3ds"))
        .form(&[("operation", operation.as_str()), ("code", DEMO_OTP)])
        .send()
        .await
        .unwrap();
    let cards: serde_json::Value = http
        .get(format!("{}/v1/users/{user}/cards", target.base))
        .bearer_auth(target.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let card = cards["cards"]
        .as_array()
        .and_then(|cards| cards.first())
        .and_then(|card| card["id"].as_str())
        .unwrap_or_else(|| panic!("the binding payment saved a card: {cards}"))
        .to_owned();
    (user, card)
}
