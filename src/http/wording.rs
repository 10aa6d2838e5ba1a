//! How pages write times and contacts for Russian readers.

use time::OffsetDateTime;

use oplata_providers::receipt::ReceiptContact;

/// Moscow's offset: Russian time zones are named by their distance from it («МСК+2»).
const MOSCOW_OFFSET_SECS: i32 = 3 * 3600;

/// «02.12.2026 19:10 (МСК)» in `zone`, the zone named as Russians name it.
pub fn local_moment(at: OffsetDateTime, zone: &jiff::tz::TimeZone) -> String {
    in_zone(at, zone, "%d.%m.%Y %H:%M")
}

/// «02.12.2026 19:10:05 (МСК)»: to the second, as the desk's timelines need.
pub fn local_moment_to_the_second(at: OffsetDateTime, zone: &jiff::tz::TimeZone) -> String {
    in_zone(at, zone, "%d.%m.%Y %H:%M:%S")
}

fn in_zone(at: OffsetDateTime, zone: &jiff::tz::TimeZone, format: &str) -> String {
    let Ok(instant) = jiff::Timestamp::from_second(at.unix_timestamp()) else {
        return String::new();
    };
    let zoned = instant.to_zoned(zone.clone());
    let offset = zoned.offset().seconds();
    let from_moscow = offset - MOSCOW_OFFSET_SECS;
    let name = match from_moscow {
        0 => "МСК".to_owned(),
        s if s % 3600 == 0 && s > 0 => format!("МСК+{}", s / 3600),
        s if s % 3600 == 0 => format!("МСК−{}", -s / 3600),
        _ => format!("UTC{}", zoned.offset()),
    };
    format!("{} ({name})", zoned.strftime(format))
}

/// Where the receipt went, shown to whoever holds the page's address: enough for its owner to
/// recognise, not enough to learn it.
pub fn masked_contact(contact: &ReceiptContact) -> String {
    match contact {
        ReceiptContact::Email(email) => match email.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => "***".to_owned(),
        },
        ReceiptContact::Phone(phone) => {
            let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
            let tail: String = digits[digits.len().saturating_sub(4)..].iter().collect();
            match tail.len() {
                4 => format!("+7 *** ***-{}-{}", &tail[..2], &tail[2..]),
                _ => "***".to_owned(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_in_the_suppliers_zone_named_from_moscow() {
        let at = time::macros::datetime!(2026-12-02 16:10 UTC);
        let zone = |name| jiff::tz::TimeZone::get(name).expect("a known zone");
        assert_eq!(
            local_moment(at, &zone("Europe/Moscow")),
            "02.12.2026 19:10 (МСК)"
        );
        assert_eq!(
            local_moment(at, &zone("Asia/Yekaterinburg")),
            "02.12.2026 21:10 (МСК+2)"
        );
        assert_eq!(
            local_moment(at, &zone("Europe/Kaliningrad")),
            "02.12.2026 18:10 (МСК−1)"
        );
        assert_eq!(
            local_moment(at, &zone("Asia/Kolkata")),
            "02.12.2026 21:40 (UTC+05:30)"
        );
    }

    #[test]
    fn contacts_are_recognisable_but_not_readable() {
        assert_eq!(
            masked_contact(&ReceiptContact::Email("ivan.petrov@mail.ru".into())),
            "i***@mail.ru"
        );
        assert_eq!(
            masked_contact(&ReceiptContact::Phone("+79001234567".into())),
            "+7 *** ***-45-67"
        );
        assert_eq!(
            masked_contact(&ReceiptContact::Email("broken".into())),
            "***"
        );
    }
}
