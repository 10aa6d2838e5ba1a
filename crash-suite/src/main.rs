//! The crash suite: the release binary under a mixed load (hosted payments paid on the acquirer's
//! page, saved-card charges at two acquirers, partial refunds), killed with SIGKILL at random
//! moments and restarted on the same database, while the acquirer simulators run on in a
//! process of their own (`oplata sandbox`) and clients retry with the same Idempotency-Keys.
//! Afterwards it compares oplata's books with what the simulators actually did.
//!
//! `crash-suite --oplata target/release/oplata [--backend sqlite|postgres|both] [--kills N]`;
//! PostgreSQL needs `OPLATA_TEST_POSTGRES_URL` (a database is created and dropped per run).
//! Ends with `crash-suite: N passed, M failed` (one per backend) and exits non-zero on any
//! violation.

mod books;
mod load;
mod processes;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How one run went.
#[derive(Debug, Default)]
pub struct Report {
    pub kills: u32,
    pub http_requests: u64,
    pub operations: load::Counts,
    pub violations: Vec<String>,
    pub seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

struct Args {
    oplata: PathBuf,
    backends: Vec<Backend>,
    kills: u32,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut oplata = None;
    let mut backends = vec![Backend::Sqlite, Backend::Postgres];
    let mut kills = 12;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--oplata" => oplata = args.next().map(PathBuf::from),
            "--backend" => {
                backends = match args.next().as_deref() {
                    Some("sqlite") => vec![Backend::Sqlite],
                    Some("postgres") => vec![Backend::Postgres],
                    Some("both") => vec![Backend::Sqlite, Backend::Postgres],
                    other => bail!("--backend sqlite|postgres|both, not {other:?}"),
                }
            }
            "--kills" => {
                kills = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .context("--kills takes a number")?
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(Args {
        oplata: oplata.context("--oplata <path to the release binary> is required")?,
        backends,
        kills,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("crash-suite: {error:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for backend in &args.backends {
        let started = Instant::now();
        let outcome = run(&args, *backend).await;
        match outcome {
            Ok(mut report) => {
                report.seconds = started.elapsed().as_secs();
                print_report(*backend, &report);
                if report.violations.is_empty() {
                    passed += 1;
                } else {
                    failed += 1;
                }
            }
            Err(error) => {
                eprintln!("crash-suite [{backend:?}]: the run could not complete: {error:#}");
                failed += 1;
            }
        }
    }
    eprintln!("crash-suite: {passed} passed, {failed} failed");
    if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

fn print_report(backend: Backend, report: &Report) {
    let c = &report.operations;
    eprintln!(
        "crash-suite [{backend:?}]: {} kills, {} HTTP requests in {} s; keys answered: {} hosted payments \
         ({} paid), {} saved-card charges, {} refunds; {} keys answered on a retry after a kill or \
         while in progress; {} answers 5xx replayed, {} keys abandoned; {} violations",
        report.kills,
        report.http_requests,
        report.seconds,
        c.hosted,
        c.hosted_paid,
        c.charges,
        c.refunds,
        c.retried,
        c.server_errors,
        c.abandoned,
        report.violations.len()
    );
    for violation in &report.violations {
        eprintln!("  violation: {violation}");
    }
}

async fn run(args: &Args, backend: Backend) -> anyhow::Result<Report> {
    let database = processes::Database::create(backend).await?;
    let mut world = processes::World::start(&args.oplata, &database).await?;
    let client = load::Client::new(&world).await?;
    let cards = client.bind_cards().await?;
    let load = load::Load::start(client.clone(), cards);
    let mut kills = 0;
    while kills < args.kills {
        let pause = Duration::from_millis(rand::random_range(1500..4000));
        tokio::time::sleep(pause).await;
        world.kill_and_restart().await?;
        kills += 1;
    }
    let counts = load.finish().await;
    // Let the restarted service finish what the kills left: callbacks re-delivered, unknown
    // outcomes asked about by the reconciliation worker.
    client.normal_acquirers().await?;
    books::wait_until_settled(&database, Duration::from_secs(90)).await?;
    let violations = books::check(&database, &client, &counts).await?;
    let report = Report {
        kills,
        http_requests: client.requests(),
        operations: counts,
        violations,
        seconds: 0,
    };
    world.stop().await;
    database.drop_it().await;
    Ok(report)
}
