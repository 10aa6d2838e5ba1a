//! Prometheus metrics at `GET /metrics` (scope `admin`): counters the code increments as things
//! happen, and gauges read from the database at scrape time (so every replica reports the same
//! shared truth: dead webhook deliveries, payments flagged for review, refunds awaiting an
//! acquirer).

use std::fmt::Write;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process-wide recorder (installed once; every app in the process shares it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (never in the service itself).
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The scrape: the recorder's counters, then the gauges read from the database (integers: no
/// floats involved).
pub fn render(gauges: crate::store::AttentionCounts) -> String {
    let mut out = handle().render();
    for (name, help, value) in [
        (
            "oplata_webhooks_dead",
            "Webhook deliveries given up after the retry window.",
            gauges.webhooks_dead,
        ),
        (
            "oplata_payments_in_review",
            "Payments flagged for a person to look at.",
            gauges.payments_in_review,
        ),
        (
            "oplata_refunds_awaiting_acquirer",
            "Refunds waiting to be done in an acquirer's cabinet.",
            gauges.refunds_awaiting_acquirer,
        ),
        (
            "oplata_refunds_in_review",
            "Refunds whose outcome could not be learned from the acquirer: a person must settle them.",
            gauges.refunds_in_review,
        ),
    ] {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        );
    }
    out
}
