//! oplata: the payment service behind a utility supplier's customer portal.

/// Every binary linking the service (the service itself, its tests, the benchmark) allocates
/// through jemalloc, whose background thread gives a burst's freed memory back to the system
/// while the service is idle.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Building and running the service.
pub mod app;
/// The `oplata` command line.
pub mod cli;
/// The one source of "now" for per-day rules.
pub mod clock;
/// Typed settings from defaults, `oplata.toml` and `OPLATA_…` variables.
pub mod config;
/// The payment rules, free of HTTP and SQL.
pub mod domain;

/// The outbox events billing and the SMS gateway receive.
pub mod events;
/// The HTTP API.
pub mod http;
/// Prometheus metrics.
pub mod metrics;
#[cfg(feature = "sandbox")]
/// The acquirer simulators of the demo and the tests.
pub mod sandbox;
/// Orchestration between the rules, the store and the acquirers.
pub mod service;
/// Storage on SQLite or PostgreSQL.
pub mod store;
/// Logging setup.
pub mod telemetry;
/// Encryption at rest of recurring tokens.
pub mod vault;
/// Signatures of outbound webhooks (Standard Webhooks).
pub mod webhooks;
/// Background workers (reconciliation).
pub mod workers;
