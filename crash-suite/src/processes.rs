//! The processes under test: the simulators (`oplata sandbox`), which live through the whole
//! run as a real acquirer would, and `oplata serve`, killed with SIGKILL and started again on
//! the same database.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::Backend;

/// A database only this run uses.
pub struct Database {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl Database {
    pub async fn create(backend: Backend) -> anyhow::Result<Database> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir()?;
                Ok(Database {
                    url: format!("sqlite://{}/oplata.db", dir.path().display()),
                    _dir: Some(dir),
                    postgres: None,
                })
            }
            Backend::Postgres => {
                let server = std::env::var("OPLATA_TEST_POSTGRES_URL")
                    .context("OPLATA_TEST_POSTGRES_URL must name the PostgreSQL server")?;
                let name = format!("oplata_crash_{}", uuid::Uuid::new_v4().simple());
                admin(&server, &format!("CREATE DATABASE {name}")).await?;
                let mut url = url::Url::parse(&server)?;
                url.set_path(&format!("/{name}"));
                Ok(Database {
                    url: url.to_string(),
                    _dir: None,
                    postgres: Some((server, name)),
                })
            }
        }
    }

    pub async fn drop_it(&self) {
        if let Some((server, name)) = &self.postgres {
            let _ = admin(
                server,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await;
        }
    }
}

async fn admin(server: &str, statement: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(server)
        .await
        .context("PostgreSQL is not reachable")?;
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut connection)
        .await?;
    Ok(())
}

/// The two processes and how to reach them.
pub struct World {
    binary: PathBuf,
    env: Vec<(String, String)>,
    pub oplata_url: String,
    pub sandbox_url: String,
    sandbox: Child,
    oplata: Child,
    logs: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl World {
    pub async fn start(binary: &Path, database: &Database) -> anyhow::Result<World> {
        let (oplata_port, sandbox_port) = (free_port()?, free_port()?);
        let oplata_url = format!("http://127.0.0.1:{oplata_port}");
        let sandbox_url = format!("http://127.0.0.1:{sandbox_port}");
        let logs = std::env::temp_dir().join(format!("oplata-crash-{}.log", std::process::id()));
        let env: Vec<(String, String)> = [
            ("OPLATA_MODE", "demo"),
            ("OPLATA_LISTEN", &format!("127.0.0.1:{oplata_port}")),
            ("OPLATA_PUBLIC_BASE_URL", &format!("{oplata_url}/")),
            ("OPLATA_DATABASE_URL", &database.url),
            ("OPLATA_SANDBOX__URL", &format!("{sandbox_url}/")),
            // The simulators keep re-delivering notifications while oplata is down.
            ("OPLATA_SANDBOX__RETRY_INTERVAL_MS", "500"),
            ("OPLATA_SANDBOX__MAX_ATTEMPTS", "240"),
            ("OPLATA_WORKERS__RECONCILE_INTERVAL_MS", "500"),
            ("OPLATA_ACQUIRER_TIMEOUT_SECS", "5"),
            // A request whose process died frees its key after this; retries then resume.
            ("OPLATA_IDEMPOTENCY_LEASE_SECS", "10"),
            ("OPLATA_LOG_FILTER", "warn"),
            ("OPLATA_LOG_FORMAT", "json"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let sandbox = spawn(binary, "sandbox", &env, &logs)?;
        wait_for(&format!("{sandbox_url}/sandbox/moneta/ledger"), &mut None).await?;
        let oplata = spawn(binary, "serve", &env, &logs)?;
        let mut world = World {
            binary: binary.to_owned(),
            env,
            oplata_url,
            sandbox_url,
            sandbox,
            oplata,
            logs,
        };
        world.wait_ready().await?;
        Ok(world)
    }

    /// Runs a CLI command of the binary against the same database and returns its output.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(&self.binary)
            .args(args)
            .envs(self.env.iter().cloned())
            .env("OPLATA_CONFIG", "/nonexistent/oplata.toml")
            .output()
            .await?;
        if !output.status.success() {
            bail!(
                "oplata {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.oplata_url);
        wait_for(&url, &mut Some(&mut self.oplata)).await
    }

    /// SIGKILL, then a new process on the same database.
    pub async fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        self.oplata.kill().await?;
        self.oplata = spawn(&self.binary, "serve", &self.env, &self.logs)?;
        self.wait_ready().await
    }

    pub async fn stop(&mut self) {
        let _ = self.oplata.kill().await;
        let _ = self.sandbox.kill().await;
    }
}

fn spawn(
    binary: &Path,
    command: &str,
    env: &[(String, String)],
    logs: &Path,
) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs)?;
    Command::new(binary)
        .arg(command)
        .envs(env.iter().cloned())
        .env("OPLATA_CONFIG", "/nonexistent/oplata.toml")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {} {command}", binary.display()))
}

/// Polls `url` until it answers 200 (30 s at most); fails at once if `child` exits.
async fn wait_for(url: &str, child: &mut Option<&mut Child>) -> anyhow::Result<()> {
    let http = oplata_providers::http_client(Duration::from_secs(5))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = http.get(url).send().await
            && response.status() == 200
        {
            return Ok(());
        }
        if let Some(child) = child
            && let Some(status) = child.try_wait()?
        {
            bail!("the process exited while starting: {status}");
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
