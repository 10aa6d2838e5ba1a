//! HTTP tests: each starts the real service on a random port with its own database, and runs on
//! SQLite and on PostgreSQL (`OPLATA_TEST_POSTGRES_URL`).

#![allow(clippy::unwrap_used)]

mod helpers;

mod api_errors;
mod binary;
mod browser;
mod desk;
mod idempotency;
mod logs;
mod moneta_flow;
mod net_pay_flow;
mod outage;
mod public;
mod recovery;
mod refunds;
mod robokassa_flow;
mod saved_cards;
mod sms;
mod store_story;
mod webhooks;
