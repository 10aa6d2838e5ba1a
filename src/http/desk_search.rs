//! What the desk's search form says, read strictly: a field that cannot mean anything is an
//! error beside that field, never a search that quietly drops it and lists every payment.

use std::collections::HashMap;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::payment::PaymentStatus;
use crate::store::PaymentSearch;

/// How many payments one search shows.
pub const LIMIT: i64 = 100;
const MAX_FIELD_CHARS: usize = 64;
/// The form's fields.
const FIELDS: [&str; 6] = ["account", "payment", "order", "from", "to", "status"];

/// A field the form could not read, and what to write instead (in Russian, for the page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: &'static str,
}

/// The search the form asks for; `Ok(None)` when every field is empty (nothing searched yet).
pub fn read(query: &HashMap<String, String>) -> Result<Option<PaymentSearch>, Vec<FieldError>> {
    let field = |name: &str| {
        query
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let mut errors = Vec::new();
    let mut fail = |field: &'static str, message: &'static str| {
        errors.push(FieldError { field, message });
    };
    for name in FIELDS {
        if field(name).is_some_and(|v| v.chars().count() > MAX_FIELD_CHARS) {
            fail(name, "Слишком длинное значение.");
        }
    }
    let payment_id = field("payment").and_then(|v| match Uuid::parse_str(&v) {
        Ok(id) => Some(id),
        Err(_) => {
            fail(
                "payment",
                "Нужен полный номер платежа: 36 знаков вида 0193a1b2-…, как в карточке платежа.",
            );
            None
        }
    });
    let status = field("status").and_then(|v| match PaymentStatus::parse(&v) {
        Some(_) => Some(v),
        None => {
            fail("status", "Такого статуса нет: выберите из списка.");
            None
        }
    });
    let mut day = |name: &'static str| {
        field(name).and_then(|v| match parse_day(&v) {
            Some(day) => Some(day),
            None => {
                fail(name, "Дата в виде ДД.ММ.ГГГГ (например, 31.12.2026).");
                None
            }
        })
    };
    let from = day("from");
    let to = day("to");
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        fail("to", "Конец периода раньше его начала.");
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let search = PaymentSearch {
        account_number: field("account"),
        payment_id,
        acquirer_order_id: field("order"),
        status,
        from,
        // The whole last day.
        to: to.map(|d| d + time::Duration::days(1)),
        limit: LIMIT,
    };
    let anything = search.account_number.is_some()
        || search.payment_id.is_some()
        || search.acquirer_order_id.is_some()
        || search.status.is_some()
        || search.from.is_some()
        || search.to.is_some();
    Ok(anything.then_some(search))
}

/// A day as the date input sends it (`2026-12-31`) or as a person types it (`31.12.2026`).
fn parse_day(text: &str) -> Option<OffsetDateTime> {
    let iso = time::macros::format_description!("[year]-[month]-[day]");
    let russian = time::macros::format_description!("[day].[month].[year]");
    time::Date::parse(text, &iso)
        .or_else(|_| time::Date::parse(text, &russian))
        .ok()
        .map(|d| d.midnight().assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn fields(errors: Vec<FieldError>) -> Vec<&'static str> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn an_empty_form_searches_nothing() {
        assert!(matches!(
            read(&query(&[("account", "  "), ("status", "")])),
            Ok(None)
        ));
    }

    #[test]
    fn what_cannot_be_read_is_an_error_beside_its_field_not_a_search_for_everything() {
        let errors = read(&query(&[
            ("payment", "0193a1b2-77"),
            ("from", "31/12/2026"),
        ]))
        .expect_err("refused");
        assert_eq!(fields(errors), ["payment", "from"]);
        let errors = read(&query(&[("status", "paid")])).expect_err("refused");
        assert_eq!(fields(errors), ["status"]);
        let errors =
            read(&query(&[("from", "31.12.2026"), ("to", "01.12.2026")])).expect_err("refused");
        assert_eq!(fields(errors), ["to"]);
        let long = "1".repeat(65);
        let errors = read(&query(&[("account", &long)])).expect_err("refused");
        assert_eq!(fields(errors), ["account"]);
    }

    #[test]
    fn russian_and_iso_dates_both_read_and_the_last_day_is_included() {
        let search = read(&query(&[("from", "31.12.2026"), ("to", "2026-12-31")]))
            .expect("readable")
            .expect("a search");
        let midnight = time::macros::datetime!(2026-12-31 00:00 UTC);
        assert_eq!(search.from, Some(midnight));
        assert_eq!(search.to, Some(midnight + time::Duration::days(1)));
    }

    #[test]
    fn a_full_payment_id_and_a_known_status_are_searched() {
        let id = "0193a1b2-7777-7000-8000-000000000001";
        let search = read(&query(&[("payment", id), ("status", "succeeded")]))
            .expect("readable")
            .expect("a search");
        assert_eq!(search.payment_id, Some(Uuid::parse_str(id).expect("uuid")));
        assert_eq!(search.status.as_deref(), Some("succeeded"));
    }
}
