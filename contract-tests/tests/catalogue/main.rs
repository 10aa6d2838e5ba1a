//! One scenario catalogue, run against every adapter talking to its simulator over real HTTP on
//! 127.0.0.1. A scenario an adapter's capabilities rule out is generated as an ignored test
//! whose reason names the capability, so every skip shows in the output by name; a separate
//! test checks that the declared skips are exactly what the adapter declares it cannot do.
//!
//! Exactly-once state changes (the same notification many times, notification and browser
//! return in either order) need the service's store: those scenarios run in `tests/api` against
//! the real service, for each acquirer.

#![allow(clippy::unwrap_used)]

mod harness;
mod moneta;
mod net_pay;
mod robokassa;
mod scenarios;

use oplata_providers::Capabilities;

/// Generates one test per scenario for a harness; `skip` lists scenarios ruled out by the
/// adapter's capabilities, with the reason.
macro_rules! catalogue {
    ($harness:ty, run: [$($scenario:ident),* $(,)?], skip: [$($skipped:ident = $reason:literal),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let harness = <$harness as $crate::harness::Harness>::start().await;
                $crate::scenarios::$scenario(&harness).await;
            }
        )*
        $(
            #[tokio::test]
            #[ignore = $reason]
            async fn $skipped() {
                let harness = <$harness as $crate::harness::Harness>::start().await;
                $crate::scenarios::$skipped(&harness).await;
            }
        )*
        #[tokio::test]
        async fn declared_skips_match_the_adapters_capabilities() {
            let harness = <$harness as $crate::harness::Harness>::start().await;
            let skipped: Vec<&str> = vec![$(stringify!($skipped)),*];
            $crate::scenarios::check_skips($crate::harness::Harness::adapter(&harness).capabilities(), &skipped);
        }
    };
}
pub(crate) use catalogue;

/// Scenarios each capability makes possible.
pub fn scenarios_needing(capabilities: Capabilities) -> Vec<&'static str> {
    let mut ruled_out = Vec::new();
    if !capabilities.status_query {
        ruled_out.extend([
            "status_query_resolves_a_payment_whose_notification_was_lost",
            "status_query_reports_an_abandoned_payment_as_pending",
        ]);
    }
    if !capabilities.saved_cards {
        ruled_out.extend([
            "a_saved_card_is_charged_without_the_customer",
            "a_saved_card_charge_can_be_declined",
            "a_charge_retried_after_a_timeout_never_charges_twice",
        ]);
    }
    if !capabilities.saved_card_challenge {
        ruled_out.push("a_saved_card_charge_meets_a_three_ds_challenge");
    }
    if !capabilities.refunds {
        ruled_out.extend([
            "refunds_full_partial_repeated_and_over_the_remainder",
            "a_refund_whose_answer_is_lost_or_unreadable_is_unknown_never_a_decline",
        ]);
    }
    if capabilities.three_ds != oplata_providers::ThreeDsAssurance::ReportedPerPayment {
        ruled_out.push("a_card_without_three_ds_is_reported_as_such");
    }
    ruled_out
}
