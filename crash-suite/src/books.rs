//! The invariant checker: oplata's books against the simulators' own ledgers.
//!
//! - one resource per accepted key, and no payment or refund that no key stands for;
//! - no order debited twice, and no debit oplata does not know of;
//! - a payment the acquirer was paid for is not failed (unless a person was told), and one
//!   oplata calls paid was paid at the acquirer;
//! - per payment, what the acquirer refunded equals oplata's succeeded refunds (refunds still
//!   pending may explain a difference, never an excess), and never more than was paid;
//! - every payment or refund not final has an exit: a time to be asked about again, or a
//!   person's review;
//! - every final payment has its outbox event.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oplata::store::{PaymentRecord, PaymentSearch, RefundRecord, Store};
use oplata_providers::Amount;
use serde_json::Value;
use uuid::Uuid;

use crate::load::{Client, Counts};
use crate::processes::Database;

struct Books {
    payments: Vec<PaymentRecord>,
    refunds: BTreeMap<Uuid, Vec<RefundRecord>>,
}

async fn read(store: &Arc<Store>) -> anyhow::Result<Books> {
    let payments = store
        .search_payments(&PaymentSearch {
            limit: 1_000_000,
            ..PaymentSearch::default()
        })
        .await?;
    let mut refunds = BTreeMap::new();
    for payment in &payments {
        refunds.insert(payment.id, store.list_refunds(payment.id).await?);
    }
    Ok(Books { payments, refunds })
}

/// How much is still waiting for an answer the service can get by itself.
fn unsettled(books: &Books) -> usize {
    let processing = books
        .payments
        .iter()
        .filter(|p| p.status == "processing" && p.review_reason.is_none())
        .count();
    let pending = books
        .refunds
        .values()
        .flatten()
        .filter(|r| r.status == "pending" && r.review_reason.is_none())
        .count();
    processing + pending
}

/// Waits until nothing is left for the workers to settle, or until it stops shrinking for 30 s
/// (what is left then waits for a deadline further away: it is checked for an exit).
pub async fn wait_until_settled(database: &Database, at_most: Duration) -> anyhow::Result<()> {
    let store = oplata::store::connect(&database.url).await?;
    let deadline = Instant::now() + at_most;
    let (mut least, mut since) = (usize::MAX, Instant::now());
    while Instant::now() < deadline {
        let left = unsettled(&read(&store).await?);
        if left == 0 {
            return Ok(());
        }
        if left < least {
            (least, since) = (left, Instant::now());
        } else if since.elapsed() > Duration::from_secs(30) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}

fn minor(text: &str) -> i64 {
    Amount::parse_api(text).map(|a| a.minor()).unwrap_or(0)
}

/// What the acquirers did, by (acquirer, order id).
#[derive(Default)]
struct Ledger {
    /// Successful debits per order (more than one is a double charge).
    debits: BTreeMap<(String, String), u32>,
    /// Money given back per order, in kopecks.
    refunded: BTreeMap<(String, String), i64>,
}

async fn ledger(client: &Client) -> anyhow::Result<Ledger> {
    let get = |acquirer: &str| {
        let url = format!("{}/sandbox/{acquirer}/ledger", client.sandbox());
        async move { anyhow::Ok(client.http().get(url).send().await?.json::<Value>().await?) }
    };
    let mut ledger = Ledger::default();
    let moneta = get("moneta").await?;
    let operations = moneta["operations"].as_array().cloned().unwrap_or_default();
    let order_of: BTreeMap<u64, String> = operations
        .iter()
        .filter_map(|o| Some((o["id"].as_u64()?, o["transaction_id"].as_str()?.to_owned())))
        .collect();
    for op in &operations {
        if op["status"] != "SUCCEED" {
            continue;
        }
        if op["is_refund"] == true {
            if let Some(order) = op["parent"].as_u64().and_then(|p| order_of.get(&p)) {
                *ledger
                    .refunded
                    .entry(("moneta".into(), order.clone()))
                    .or_default() += minor(op["amount"].as_str().unwrap_or_default());
            }
        } else if let Some(order) = op["transaction_id"].as_str() {
            *ledger
                .debits
                .entry(("moneta".into(), order.to_owned()))
                .or_default() += 1;
        }
    }
    let robokassa = get("robokassa").await?;
    for invoice in robokassa["invoices"].as_array().into_iter().flatten() {
        let Some(order) = invoice["inv_id"].as_str() else {
            continue;
        };
        let key = ("robokassa".to_owned(), order.to_owned());
        if invoice["paid"] == true {
            *ledger.debits.entry(key.clone()).or_default() += 1;
        }
        let refunded = minor(invoice["refunded"].as_str().unwrap_or_default());
        if refunded > 0 {
            ledger.refunded.insert(key, refunded);
        }
    }
    Ok(ledger)
}

const FINAL_FAILURES: [&str; 3] = ["failed", "canceled", "expired"];
const PAID: [&str; 3] = ["succeeded", "partially_refunded", "refunded"];

pub async fn check(
    database: &Database,
    client: &Client,
    counts: &Counts,
) -> anyhow::Result<Vec<String>> {
    let store = oplata::store::connect(&database.url).await?;
    let books = read(&store).await?;
    let ledger = ledger(client).await?;
    let mut events = BTreeMap::new();
    for payment in &books.payments {
        let types = store
            .outbox_for(payment.id)
            .await?
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        events.insert(payment.id, types);
    }
    Ok(judge(&books, &ledger, counts, &events))
}

/// The invariants (see the module docs), on books already read.
fn judge(
    books: &Books,
    ledger: &Ledger,
    counts: &Counts,
    events: &BTreeMap<Uuid, Vec<String>>,
) -> Vec<String> {
    let mut violations = Vec::new();

    // One resource per accepted key; nothing no key stands for.
    let mut answered: BTreeSet<Uuid> = BTreeSet::new();
    for (key, ids) in &counts.resources {
        let distinct: BTreeSet<_> = ids.iter().collect();
        if distinct.len() > 1 {
            violations.push(format!("key {key} was answered with {distinct:?}"));
        }
        answered.extend(distinct.into_iter().copied());
    }
    let orphans: Vec<Uuid> = books
        .payments
        .iter()
        .map(|p| p.id)
        .chain(books.refunds.values().flatten().map(|r| r.id))
        .filter(|id| !answered.contains(id))
        .collect();
    if orphans.len() as u64 > counts.abandoned {
        violations.push(format!(
            "{} payments or refunds no answered key stands for ({} keys abandoned): {:?}",
            orphans.len(),
            counts.abandoned,
            orphans.iter().take(5).collect::<Vec<_>>()
        ));
    }

    let mut known_orders = BTreeSet::new();
    for payment in &books.payments {
        let order = (
            payment.acquirer.as_str().to_owned(),
            payment.acquirer_order_id.clone(),
        );
        known_orders.insert(order.clone());
        let status = payment.status.as_str();

        // Debits against payments.
        let debits = ledger.debits.get(&order).copied().unwrap_or(0);
        if debits > 1 {
            violations.push(format!(
                "order {order:?} (payment {}) debited {debits} times",
                payment.id
            ));
        }
        if debits > 0 && FINAL_FAILURES.contains(&status) && payment.review_reason.is_none() {
            violations.push(format!(
                "payment {} is {status} but {} took the money for order {}",
                payment.id, payment.acquirer, payment.acquirer_order_id
            ));
        }
        if debits == 0 && PAID.contains(&status) {
            violations.push(format!(
                "payment {} is {status} but {} has no debit for order {}",
                payment.id, payment.acquirer, payment.acquirer_order_id
            ));
        }

        // Refunds.
        let refunds = books.refunds.get(&payment.id).cloned().unwrap_or_default();
        let sum = |status: &str| -> i64 {
            refunds
                .iter()
                .filter(|r| r.status == status)
                .map(|r| r.amount_minor)
                .sum()
        };
        let (succeeded, pending) = (sum("succeeded"), sum("pending"));
        let at_acquirer = ledger.refunded.get(&order).copied().unwrap_or(0);
        if at_acquirer > succeeded + pending {
            violations.push(format!(
                "payment {}: {} refunded {at_acquirer} kopecks, oplata knows of {succeeded} done and {pending} pending",
                payment.id, payment.acquirer
            ));
        }
        if at_acquirer < succeeded {
            violations.push(format!(
                "payment {}: oplata counts {succeeded} kopecks refunded, {} only {at_acquirer}",
                payment.id, payment.acquirer
            ));
        }
        if succeeded + pending > payment.amount_minor {
            violations.push(format!(
                "payment {}: refunds of {} kopecks against {} paid",
                payment.id,
                succeeded + pending,
                payment.amount_minor
            ));
        }

        // Exits.
        if !(PAID.contains(&status) || FINAL_FAILURES.contains(&status))
            && payment.next_check_at.is_none()
            && payment.review_reason.is_none()
        {
            violations.push(format!(
                "payment {} is {status} with no exit (never asked again, nobody told)",
                payment.id
            ));
        }
        for refund in &refunds {
            if refund.status == "pending"
                && refund.next_check_at.is_none()
                && refund.review_reason.is_none()
            {
                violations.push(format!("refund {} is pending with no exit", refund.id));
            }
        }

        // Events.
        if PAID.contains(&status) || FINAL_FAILURES.contains(&status) {
            let wanted = format!("payment.{status}");
            let has = events
                .get(&payment.id)
                .is_some_and(|types| types.contains(&wanted));
            if !has {
                violations.push(format!(
                    "payment {} is {status} without {wanted}",
                    payment.id
                ));
            }
        }
    }
    for order in ledger.debits.keys() {
        if !known_orders.contains(order) {
            violations.push(format!(
                "the acquirer debited order {order:?}, which oplata has no payment for"
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(order: &str, status: &str, amount_minor: i64) -> PaymentRecord {
        let now = time::OffsetDateTime::now_utc();
        PaymentRecord {
            id: Uuid::now_v7(),
            client_id: None,
            user_id: None,
            supplier_id: "demo-gibdd".into(),
            account_number: "1".into(),
            amount_minor,
            currency: "RUB".into(),
            description: "test".into(),
            email: None,
            phone: None,
            return_url: None,
            acquirer: oplata_providers::AcquirerKind::Moneta,
            acquirer_order_id: order.into(),
            status: oplata::domain::payment::PaymentStatus::parse(status).expect("a known status"),
            next_action: None,
            failure_code: None,
            failure_message: None,
            review_reason: None,
            review_detail: None,
            acquirer_operation_id: None,
            payment_method: oplata::domain::payment::PaymentMethod::SavedCard,
            saved_card_id: None,
            save_card: false,
            next_check_at: None,
            check_attempts: 0,
            action_deadline: None,
            submitted_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn refund(payment: &PaymentRecord, status: &str, amount_minor: i64) -> RefundRecord {
        let now = time::OffsetDateTime::now_utc();
        RefundRecord {
            id: Uuid::now_v7(),
            payment_id: payment.id,
            amount_minor,
            status: oplata::domain::refunds::RefundStatus::parse(status).expect("a known status"),
            reason: "r".into(),
            operator: "o".into(),
            client_id: None,
            acquirer_refund_id: None,
            failure_code: None,
            failure_message: None,
            next_check_at: None,
            check_attempts: 0,
            review_reason: None,
            review_detail: None,
            resolved_by: None,
            resolution_note: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Books of one paid payment that agree with the ledger: no violation. Each case below
    /// changes one fact and must be caught.
    fn agreeing() -> (Books, Ledger, Counts, BTreeMap<Uuid, Vec<String>>) {
        let paid = payment("100", "partially_refunded", 150_000);
        let refunded = refund(&paid, "succeeded", 10_000);
        let mut counts = Counts::default();
        counts.resources.insert("k1".into(), vec![paid.id]);
        counts.resources.insert("k2".into(), vec![refunded.id]);
        let mut ledger = Ledger::default();
        ledger.debits.insert(("moneta".into(), "100".into()), 1);
        ledger
            .refunded
            .insert(("moneta".into(), "100".into()), 10_000);
        let events = BTreeMap::from([(paid.id, vec!["payment.partially_refunded".into()])]);
        let books = Books {
            refunds: BTreeMap::from([(paid.id, vec![refunded])]),
            payments: vec![paid],
        };
        (books, ledger, counts, events)
    }

    #[test]
    fn books_that_agree_with_the_ledger_pass() {
        let (books, ledger, counts, events) = agreeing();
        assert_eq!(
            judge(&books, &ledger, &counts, &events),
            Vec::<String>::new()
        );
    }

    #[test]
    fn every_kind_of_disagreement_is_a_violation() {
        type Break = Box<dyn Fn(&mut Books, &mut Ledger, &mut Counts)>;
        let cases: Vec<(&str, Break)> = vec![
            (
                "debited twice",
                Box::new(|_, l, _| {
                    l.debits.insert(("moneta".into(), "100".into()), 2);
                }),
            ),
            (
                "refunded more than oplata knows",
                Box::new(|_, l, _| {
                    l.refunded.insert(("moneta".into(), "100".into()), 20_000);
                }),
            ),
            (
                "oplata counts a refund the acquirer never made",
                Box::new(|_, l, _| {
                    l.refunded.clear();
                }),
            ),
            (
                "paid but failed",
                Box::new(|b, _, _| {
                    b.payments[0].status = oplata::domain::payment::PaymentStatus::Failed
                }),
            ),
            (
                "succeeded without a debit",
                Box::new(|_, l, _| l.debits.clear()),
            ),
            (
                "a debit oplata does not know",
                Box::new(|_, l, _| {
                    l.debits.insert(("moneta".into(), "999".into()), 1);
                }),
            ),
            (
                "a second payment for one key",
                Box::new(|b, _, _| {
                    let mut second = payment("101", "processing", 100);
                    second.next_check_at = Some(time::OffsetDateTime::now_utc());
                    b.payments.push(second);
                }),
            ),
            (
                "one key answered with two resources",
                Box::new(|_, _, c| {
                    c.resources
                        .insert("k1".into(), vec![Uuid::now_v7(), Uuid::now_v7()]);
                }),
            ),
            (
                "processing with no exit",
                Box::new(|b, _, c| {
                    let stuck = payment("102", "processing", 100);
                    c.resources.insert("k3".into(), vec![stuck.id]);
                    b.payments.push(stuck);
                }),
            ),
            (
                "a pending refund with no exit",
                Box::new(|b, _, c| {
                    let id = b.payments[0].id;
                    let stuck = refund(&b.payments[0], "pending", 100);
                    c.resources.insert("k4".into(), vec![stuck.id]);
                    if let Some(refunds) = b.refunds.get_mut(&id) {
                        refunds.push(stuck);
                    }
                }),
            ),
            (
                "refunds beyond the payment",
                Box::new(|b, l, c| {
                    let id = b.payments[0].id;
                    let over = refund(&b.payments[0], "succeeded", 150_000);
                    c.resources.insert("k5".into(), vec![over.id]);
                    if let Some(refunds) = b.refunds.get_mut(&id) {
                        refunds.push(over);
                    }
                    l.refunded.insert(("moneta".into(), "100".into()), 160_000);
                }),
            ),
        ];
        for (name, break_it) in cases {
            let (mut books, mut ledger, mut counts, events) = agreeing();
            break_it(&mut books, &mut ledger, &mut counts);
            assert!(
                !judge(&books, &ledger, &counts, &events).is_empty(),
                "not caught: {name}"
            );
        }
        let (books, ledger, counts, _) = agreeing();
        assert!(
            !judge(&books, &ledger, &counts, &BTreeMap::new()).is_empty(),
            "not caught: a final payment without its event"
        );
    }
}
