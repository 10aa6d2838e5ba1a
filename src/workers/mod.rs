//! Background work that finishes what requests left pending. Every worker claims its rows with
//! a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so any number of replicas can run them.

pub mod purge;
pub mod reconciliation;
pub mod webhooks;
