//! The `oplata` binary itself, as a newcomer runs it: configuration loading, the demo start,
//! `oplata config`, and the production refusals.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_oplata");

fn oplata(dir: &std::path::Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .current_dir(dir)
        .env_remove("OPLATA_TEST_POSTGRES_URL")
        .env("OPLATA_LISTEN", "127.0.0.1:0")
        .env("OPLATA_CONFIG", dir.join("oplata.toml"));
    command
}

/// Starts the demo in `dir` and reads what it prints: the child, its address and the portal key.
fn start_demo(dir: &std::path::Path) -> (std::process::Child, String, String) {
    let mut child = oplata(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read on a thread that keeps draining: a closed pipe would make the child's next write fail.
    let (lines, printed) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let (mut base, mut key) = (None, None);
    while key.is_none() {
        let line = printed
            .recv_timeout(Duration::from_secs(30))
            .expect("the demo did not start");
        if let Some(rest) = line.strip_prefix("oplata demo is running at ") {
            base = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("A portal API key for this run: ") {
            key = Some(rest.trim().to_owned());
        }
    }
    (
        child,
        base.expect("address printed"),
        key.expect("key printed"),
    )
}

#[tokio::test]
async fn cargo_run_starts_the_demo_and_a_payment_can_be_made_with_what_it_prints() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base, key) = start_demo(dir.path());

    let client = oplata_providers::http_client(Duration::from_secs(10)).unwrap();
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    let created = client
        .post(format!("{base}/v1/payments"))
        .bearer_auth(&key)
        .header("idempotency-key", "demo-1")
        .json(&serde_json::json!({"supplier_id": "demo-gibdd", "account_number": "18810177230000012345",
            "amount": "1500.00", "currency": "RUB", "description": "Штраф", "user_id": "u", "save_card": true,
            "email": "ivan@example.ru"}))
        .send()
        .await
        .unwrap();
    let status = created.status();
    let body = created.text().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();

    assert_eq!(ready.status(), 200);
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("\"status\":\"requires_action\""));
    assert!(
        dir.path().join("oplata.db").exists(),
        "the SQLite file is created on first start"
    );
}

#[test]
fn oplata_config_prints_every_secret_as_stars() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("oplata.toml"),
        "[vault]\nactive_key = \"k1\"\n[vault.keys]\nk1 = \"MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=\"\n",
    )
    .unwrap();

    let output = oplata(dir.path()).arg("config").output().unwrap();

    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success());
    assert!(printed.contains("k1 = \"***\""), "{printed}");
    assert!(!printed.contains("MTExMTEx"));
    assert!(!printed.contains(oplata::config::DEMO_ROBOKASSA_PASSWORD1));
}

#[test]
fn production_mode_refuses_to_start_with_demo_settings_and_says_why() {
    let dir = tempfile::tempdir().unwrap();

    let output = oplata(dir.path())
        .env("OPLATA_MODE", "production")
        .output()
        .unwrap();

    let said = String::from_utf8(output.stderr).unwrap();
    assert!(!output.status.success());
    assert!(
        said.contains("refusing to start in production mode"),
        "{said}"
    );
    assert!(!said.contains("backtrace"));
}

#[test]
fn webhooks_verify_accepts_a_good_event_and_refuses_a_tampered_or_stale_one() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = br#"{"id":"evt_1","type":"payment.succeeded"}"#;
    std::fs::write(dir.path().join("body.json"), body).unwrap();
    std::fs::write(
        dir.path().join("tampered.json"),
        br#"{"id":"evt_1","type":"payment.refunded"}"#,
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sign = |at: i64| {
        oplata::webhooks::sign(&[secrecy::SecretString::from(secret)], "evt_1", at, body).unwrap()
    };
    let verify = |at: i64, signature: &str, payload: &str| {
        oplata(dir.path())
            .args(["webhooks", "verify", "--secret", secret, "--id", "evt_1"])
            .args([
                "--timestamp",
                &at.to_string(),
                "--signature",
                signature,
                "--payload",
                payload,
            ])
            .output()
            .unwrap()
    };

    let good = verify(now, &sign(now), "body.json");
    let tampered = verify(now, &sign(now), "tampered.json");
    let stale = verify(now - 301, &sign(now - 301), "body.json");

    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(!tampered.status.success());
    assert!(String::from_utf8_lossy(&tampered.stderr).contains("no signature matches"));
    assert!(!stale.status.success());
    assert!(String::from_utf8_lossy(&stale.stderr).contains("300 s"));
}

#[test]
fn an_operator_is_added_and_enrolled_from_the_command_line() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("oplata.toml"),
        "database_url = \"sqlite://desk.db\"\n",
    )
    .unwrap();
    let run = |args: &[&str], input: &str| {
        let mut child = oplata(dir.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(run(&["migrate"], "").status.success());
    let added = run(
        &["operator", "add", "--login", "olga", "--name", "Ольга"],
        "correct horse battery\n",
    );
    assert!(added.status.success(), "{added:?}");

    // A wrong code stores nothing.
    let refused = run(
        &["operator", "second-factor", "--login", "olga"],
        "000000\n",
    );
    let stored = || {
        let output = std::process::Command::new("sqlite3")
            .arg(dir.path().join("desk.db"))
            .arg("SELECT count(*) FROM operators WHERE totp_secret IS NOT NULL")
            .output();
        output
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let printed = String::from_utf8_lossy(&refused.stdout).into_owned();
    let secret = printed
        .split("secret: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the secret is printed once")
        .to_owned();
    let code_now = || {
        totp_rs::Builder::new()
            .with_secret(totp_rs::Secret::try_from_base32(&secret).unwrap())
            .build()
            .unwrap()
            .generate_current()
            .to_string()
    };
    if code_now() != "000000" {
        assert!(!refused.status.success(), "a wrong code is refused");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("the code does not match"),
            "{refused:?}"
        );
    }
    if let Some(count) = stored() {
        assert_eq!(count, "0");
    }

    // The real enrolment: the code is typed after reading the secret, as an operator would.
    let mut child = oplata(dir.path())
        .args(["operator", "second-factor", "--login", "olga"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut secret = String::new();
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.trim().strip_prefix("secret: ") {
            secret = rest.to_owned();
            break;
        }
        line.clear();
    }
    let code = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(&secret).unwrap())
        .build()
        .unwrap()
        .generate_current()
        .to_string();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{code}").unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest}");
    assert!(
        rest.contains("second factor enrolled for operator olga"),
        "{rest}"
    );
    if let Some(count) = stored() {
        assert_eq!(count, "1");
    }
}

/// SIGTERM while the webhook worker waits on a receiver that never answers: the process ends
/// within a few seconds (the liveness bound: 8 s, under the 10 s grace), and cleanly.
#[tokio::test]
async fn sigterm_stops_the_service_within_seconds_even_with_a_webhook_receiver_that_hangs() {
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver = hanging.local_addr().unwrap();
    // Accepts and holds every connection without a word.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hanging.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("oplata.toml"),
        format!(
            "[workers]\nreconcile_interval_ms = 200\n\n[[webhooks.endpoints]]\nname = \"billing\"\n\
             url = \"http://{receiver}/events\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n"
        ),
    )
    .unwrap();
    let (mut child, base, key) = start_demo(dir.path());
    let client = oplata_providers::http_client(Duration::from_secs(10)).unwrap();
    let created = client
        .post(format!("{base}/v1/payments"))
        .bearer_auth(&key)
        .header("idempotency-key", "sigterm-1")
        .json(
            &serde_json::json!({"supplier_id": "demo-electro", "account_number": "1234567890",
            "amount": "10.00", "currency": "RUB", "description": "Электроэнергия",
            "email": "ivan@example.ru"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    // Let the webhook worker reach the receiver and hang there.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let asked = std::time::Instant::now();
    let signalled = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if asked.elapsed() > Duration::from_secs(8) {
            let _ = child.kill();
            panic!("still running 8 s after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Within the loop's bound, well under the 10 s a stuck worker would have cost.
    assert!(status.success(), "{status:?}");
}
