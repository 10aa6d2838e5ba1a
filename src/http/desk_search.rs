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
/// The form's fields (and `after`, the next page's place, which the form's link carries).
pub const FIELDS: [&str; 11] = [
    "account", "payment", "order", "email", "phone", "card", "amount", "from", "to", "status",
    "after",
];
/// The shortest payment id prefix searched: its first 8 characters (the id's first 32 bits, the
/// top of its time stamp) name at most a few minutes of payments.
const MIN_ID_PREFIX: usize = 8;

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
    let id_range = field("payment").and_then(|v| match id_range(&v) {
        Some(range) => Some(range),
        None => {
            fail(
                "payment",
                "Номер платежа: полностью или его первые 8 знаков и больше (0193a1b2…), как в \
                 карточке платежа.",
            );
            None
        }
    });
    let email = field("email").and_then(|v| {
        let (local, domain) = v.split_once('@').unwrap_or_default();
        if local.is_empty() || !domain.contains('.') || v.chars().any(char::is_whitespace) {
            fail("email", "E-mail вида name@example.ru.");
            None
        } else {
            Some(v.to_lowercase())
        }
    });
    let phone = field("phone").and_then(|v| match phone(&v) {
        Some(phone) => Some(phone),
        None => {
            fail("phone", "Телефон: +7 и 10 цифр, например +7 900 123-45-67.");
            None
        }
    });
    let card_last4 = field("card").and_then(|v| {
        if v.len() == 4 && v.chars().all(|c| c.is_ascii_digit()) {
            Some(v)
        } else {
            fail("card", "Последние 4 цифры карты.");
            None
        }
    });
    let amount_minor = field("amount").and_then(|v| {
        match oplata_providers::Amount::parse_api(&crate::domain::money::typed_amount(&v)) {
            Ok(amount) => Some(amount.minor()),
            Err(_) => {
                fail("amount", "Сумма вида 1 500,50.");
                None
            }
        }
    });
    let before = field("after").and_then(|v| match read_place(&v) {
        Some(place) => Some(place),
        None => {
            fail(
                "after",
                "Ссылка на следующую страницу испорчена: начните поиск заново.",
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
        id_range,
        acquirer_order_id: field("order"),
        status,
        from,
        // The whole last day.
        to: to.map(|d| d + time::Duration::days(1)),
        email,
        phone,
        amount_minor,
        card_last4,
        before,
        // One more than is shown: whether there is a next page.
        limit: LIMIT + 1,
    };
    let anything = search.account_number.is_some()
        || search.id_range.is_some()
        || search.acquirer_order_id.is_some()
        || search.status.is_some()
        || search.from.is_some()
        || search.to.is_some()
        || search.email.is_some()
        || search.phone.is_some()
        || search.amount_minor.is_some()
        || search.card_last4.is_some();
    Ok(anything.then_some(search))
}

/// The ids a whole id or its prefix (at least [`MIN_ID_PREFIX`] hex digits, hyphens anywhere)
/// stands for.
fn id_range(text: &str) -> Option<(Uuid, Uuid)> {
    let hex: String = text
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_lowercase();
    if hex.len() < MIN_ID_PREFIX || hex.len() > 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let first = Uuid::parse_str(&format!("{hex:0<32}")).ok()?;
    let last = Uuid::parse_str(&format!("{hex:f<32}")).ok()?;
    Some((first, last))
}

/// A phone as people write it (`+7 900 123-45-67`, `8 900 1234567`) in the stored form.
fn phone(text: &str) -> Option<String> {
    if text
        .chars()
        .any(|c| !(c.is_ascii_digit() || " +-()".contains(c)))
    {
        return None;
    }
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let national = match digits.len() {
        10 => &digits[..],
        11 if digits.starts_with('7') || digits.starts_with('8') => &digits[1..],
        _ => return None,
    };
    Some(format!("+7{national}"))
}

/// Where the next page starts: the last payment shown, as [`place`] wrote it.
fn read_place(text: &str) -> Option<(OffsetDateTime, Uuid)> {
    let (nanos, id) = text.split_once('~')?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos.parse().ok()?).ok()?;
    Some((at, Uuid::parse_str(id).ok()?))
}

/// The place of a payment in the list, for the next page's link.
pub fn place(created_at: OffsetDateTime, id: Uuid) -> String {
    format!("{}~{id}", created_at.unix_timestamp_nanos())
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
        let errors =
            read(&query(&[("payment", "0193a1b"), ("from", "31/12/2026")])).expect_err("refused");
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
        let id = Uuid::parse_str(id).expect("uuid");
        assert_eq!(search.id_range, Some((id, id)));
        assert_eq!(search.status.as_deref(), Some("succeeded"));
    }

    #[test]
    fn an_id_prefix_is_the_range_of_ids_it_begins() {
        let search = read(&query(&[("payment", "0193A1B2-77")]))
            .expect("readable")
            .expect("a search");
        let (first, last) = search.id_range.expect("a range");
        assert_eq!(first.to_string(), "0193a1b2-7700-0000-0000-000000000000");
        assert_eq!(last.to_string(), "0193a1b2-77ff-ffff-ffff-ffffffffffff");
        let errors = read(&query(&[("payment", "0193a1b")])).expect_err("too short");
        assert_eq!(fields(errors), ["payment"]);
    }

    #[test]
    fn contacts_amounts_and_cards_are_read_as_people_write_them() {
        let search = read(&query(&[
            ("email", " Anna@Example.RU "),
            ("phone", "8 (900) 123-45-67"),
            ("amount", "1 500,50"),
            ("card", "4242"),
        ]))
        .expect("readable")
        .expect("a search");
        assert_eq!(search.email.as_deref(), Some("anna@example.ru"));
        assert_eq!(search.phone.as_deref(), Some("+79001234567"));
        assert_eq!(search.amount_minor, Some(150_050));
        assert_eq!(search.card_last4.as_deref(), Some("4242"));
        let errors = read(&query(&[
            ("email", "anna"),
            ("phone", "12345"),
            ("amount", "сто"),
            ("card", "42424"),
        ]))
        .expect_err("refused");
        assert_eq!(fields(errors), ["email", "phone", "card", "amount"]);
    }

    #[test]
    fn the_next_page_starts_after_the_last_payment_shown() {
        let at = time::macros::datetime!(2026-12-02 16:10:00.123456789 UTC);
        let id = Uuid::now_v7();
        let search = read(&query(&[("account", "1"), ("after", &place(at, id))]))
            .expect("readable")
            .expect("a search");
        assert_eq!(search.before, Some((at, id)));
        let errors = read(&query(&[("account", "1"), ("after", "12~x")])).expect_err("refused");
        assert_eq!(fields(errors), ["after"]);
    }
}
