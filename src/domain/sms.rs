//! The SMS-payment flow's rules: the grammar of an inbound SMS, the daily limits (rule 14) and
//! every reply text.
//!
//! Replies are Cyrillic, so the gateway sends them as UCS-2: one SMS holds 70 characters, and
//! every reply fits in one (tested with the longest account number and amount).

use oplata_providers::Amount;

/// Longest account number the grammar takes; longer ones are not any supplier's and would not
/// fit a reply.
pub const MAX_ACCOUNT_CHARS: usize = 25;
/// After this many malformed SMS in a day the phone is blocked until the day ends.
pub const MALFORMED_PER_DAY: i64 = 3;
/// One SMS in UCS-2.
pub const MAX_REPLY_CHARS: usize = 70;

/// What an inbound SMS asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Pay { account: String, amount: Amount },
    Malformed,
}

/// `?` for help; `ОПЛАТА <account> <amount>` or `PAY …`, any case, the amount with a comma or a
/// point and at most two decimals.
pub fn parse(text: &str) -> Command {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["?"] => Command::Help,
        [verb, account, amount] if is_pay_verb(verb) => {
            let account_ok = account.chars().count() <= MAX_ACCOUNT_CHARS
                && account
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-');
            match (account_ok, parse_amount(amount)) {
                (true, Some(amount)) => Command::Pay {
                    account: (*account).to_owned(),
                    amount,
                },
                _ => Command::Malformed,
            }
        }
        _ => Command::Malformed,
    }
}

fn is_pay_verb(word: &str) -> bool {
    let upper = word.to_uppercase();
    upper == "ОПЛАТА" || upper == "PAY"
}

fn parse_amount(text: &str) -> Option<Amount> {
    let (units, decimals) = match text.split_once([',', '.']) {
        Some((units, decimals)) => (units, Some(decimals)),
        None => (text, None),
    };
    let units_ok =
        !units.is_empty() && units.len() <= 9 && units.bytes().all(|b| b.is_ascii_digit());
    let decimals_ok = decimals
        .is_none_or(|d| (1..=2).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()));
    if !units_ok || !decimals_ok {
        return None;
    }
    Amount::parse_api(&text.replace(',', ".")).ok()
}

/// What the phone has done so far today (in the SMS time zone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayCounts {
    pub malformed: i64,
    pub help: i64,
    /// Accepted payment SMS for the account this SMS names (from any phone).
    pub account_payments: i64,
    /// Accepted payment SMS from this phone today, and their sum in kopecks.
    pub phone_payments: i64,
    pub phone_amount_minor: i64,
}

/// What one phone may pay by SMS in a day: a typo or a stolen phone costs at most this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhoneCaps {
    pub payments: i64,
    pub amount: Amount,
}

/// What the limits allow this SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Three malformed SMS today already: nothing is done until the day ends.
    Blocked,
    Help,
    HelpAlreadySent,
    /// Not understood; `now_blocked` when this was the third today.
    Malformed {
        now_blocked: bool,
    },
    AccountAlreadyPaidToday,
    /// The phone's payments for today are used up.
    PhoneCountReached,
    /// This payment would take the phone past its amount for today.
    PhoneAmountReached,
    /// The limits allow a payment; the payment's own rules come next.
    Proceed,
}

/// Rule 14, in the order the supplier's SMS rules give.
pub fn judge(command: &Command, today: DayCounts, caps: PhoneCaps) -> Verdict {
    if today.malformed >= MALFORMED_PER_DAY {
        return Verdict::Blocked;
    }
    match command {
        Command::Help if today.help == 0 => Verdict::Help,
        Command::Help => Verdict::HelpAlreadySent,
        Command::Malformed => Verdict::Malformed {
            now_blocked: today.malformed + 1 >= MALFORMED_PER_DAY,
        },
        Command::Pay { .. } if today.account_payments > 0 => Verdict::AccountAlreadyPaidToday,
        Command::Pay { .. } if today.phone_payments >= caps.payments => Verdict::PhoneCountReached,
        Command::Pay { amount, .. }
            if today.phone_amount_minor.saturating_add(amount.minor()) > caps.amount.minor() =>
        {
            Verdict::PhoneAmountReached
        }
        Command::Pay { .. } => Verdict::Proceed,
    }
}

/// How an SMS is recorded: what it counts as, and its reply; no reply means it is accepted and
/// the charge runs. The limits come first, then the payment's own refusal, if any.
pub fn decide(
    command: &Command,
    today: DayCounts,
    caps: PhoneCaps,
    refusal: Option<Reply>,
) -> (&'static str, Option<Reply>) {
    match judge(command, today, caps) {
        Verdict::Blocked => (kind::BLOCKED, Some(Reply::Blocked)),
        Verdict::Help => (kind::HELP, Some(Reply::Help)),
        Verdict::HelpAlreadySent => (kind::HELP_REPEATED, Some(Reply::HelpAlreadySent)),
        Verdict::Malformed { now_blocked } => (
            kind::MALFORMED,
            Some(if now_blocked {
                Reply::MalformedNowBlocked
            } else {
                Reply::Malformed
            }),
        ),
        Verdict::AccountAlreadyPaidToday => (kind::REFUSED, Some(Reply::AccountAlreadyPaidToday)),
        // The payment's own refusal (above the supplier's limit, no card…) says more than the
        // phone's caps do.
        Verdict::PhoneCountReached | Verdict::PhoneAmountReached if refusal.is_some() => {
            (kind::REFUSED, refusal)
        }
        Verdict::PhoneCountReached => (kind::REFUSED, Some(Reply::PhoneCountReached)),
        Verdict::PhoneAmountReached => (
            kind::REFUSED,
            Some(Reply::PhoneAmountReached { max: caps.amount }),
        ),
        Verdict::Proceed => match refusal {
            Some(reply) => (kind::REFUSED, Some(reply)),
            None => (kind::PAYMENT, None),
        },
    }
}

/// What a stored SMS counted as.
/// Where an inbound SMS stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsState {
    /// Its charge is being made; a redelivery waits or, when stale, settles it.
    InProgress,
    /// Charged; the reply waits for the payment's outcome.
    AwaitingResult,
    /// Answered for good.
    Done,
}

impl SmsState {
    pub fn as_str(self) -> &'static str {
        match self {
            SmsState::InProgress => "in_progress",
            SmsState::AwaitingResult => "awaiting_result",
            SmsState::Done => "done",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            SmsState::InProgress,
            SmsState::AwaitingResult,
            SmsState::Done,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

impl TryFrom<String> for SmsState {
    type Error = crate::domain::payment::UnknownStatus;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        SmsState::parse(&text).ok_or(crate::domain::payment::UnknownStatus(text))
    }
}

pub mod kind {
    pub const HELP: &str = "help";
    pub const HELP_REPEATED: &str = "help_repeated";
    pub const MALFORMED: &str = "malformed";
    pub const BLOCKED: &str = "blocked";
    pub const REFUSED: &str = "refused";
    /// Accepted: counts against the account's one payment SMS a day.
    pub const PAYMENT: &str = "payment";
    /// Accepted, but the charge never started (the card went meanwhile).
    pub const ABORTED: &str = "aborted";
}

/// The reply a payment's final status gives; `None` while it is still open.
pub fn final_reply(
    status: crate::domain::payment::PaymentStatus,
    amount: Amount,
    account: &str,
    payee: Option<&str>,
) -> Option<Reply> {
    use crate::domain::payment::PaymentStatus as S;
    match status {
        S::Succeeded | S::PartiallyRefunded | S::Refunded => Some(Reply::Succeeded {
            amount,
            account: account.to_owned(),
            payee: payee.map(str::to_owned),
        }),
        S::Failed | S::Canceled | S::Expired => Some(Reply::Failed { amount }),
        S::Created | S::RequiresAction | S::Processing => None,
    }
}

/// Every answer the flow can give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Help,
    HelpAlreadySent,
    Malformed,
    MalformedNowBlocked,
    Blocked,
    PhoneNotLinked,
    UnknownAccount,
    /// Rule 3: no earlier full-card-entry payment to this supplier.
    FirstPaymentToSupplier,
    /// The supplier was paid, but never this account with the card entered: a typo or a
    /// stranger's account is not paid by SMS.
    FirstPaymentToAccount,
    NoSavedCard,
    AmountAboveLimit {
        max: Amount,
    },
    AccountAlreadyPaidToday,
    /// The phone's SMS payments for today are used up.
    PhoneCountReached,
    PhoneAmountReached {
        max: Amount,
    },
    PersonalDataRequired,
    Succeeded {
        amount: Amount,
        account: String,
        /// The supplier and the card: "Демо-Энергосбыт, карта *4242".
        payee: Option<String>,
    },
    Failed {
        amount: Amount,
    },
    ThreeDsRequired,
    Processing,
    NotDone,
}

/// `1500,50`: the way a Russian reader writes money.
fn rubles(amount: Amount) -> String {
    amount.to_string().replace('.', ",")
}

impl Reply {
    pub fn text(&self) -> String {
        match self {
            Reply::Help => "ОПЛАТА <счёт> <сумма>, напр. ОПЛАТА 1234567890 1500,50".into(),
            Reply::HelpAlreadySent => "Справка сегодня уже была: ОПЛАТА <счёт> <сумма>".into(),
            Reply::Malformed => "Не понял SMS. Формат: ОПЛАТА <счёт> <сумма>. Справка: ?".into(),
            Reply::MalformedNowBlocked => {
                "Третья ошибка за день: SMS-оплата закрыта до конца дня.".into()
            }
            Reply::Blocked => "SMS-оплата закрыта до конца дня после 3 ошибочных SMS.".into(),
            Reply::PhoneNotLinked => "Номер не привязан к личному кабинету.".into(),
            Reply::UnknownAccount => "Счёт не найден. Проверьте номер лицевого счёта.".into(),
            Reply::FirstPaymentToSupplier => {
                "Первый платёж этому получателю возможен только в кабинете.".into()
            }
            Reply::FirstPaymentToAccount => {
                "Этот счёт вы ещё не оплачивали картой. Первый платёж — в кабинете.".into()
            }
            Reply::NoSavedCard => "Нет сохранённой карты для этого платежа. Привяжите её.".into(),
            Reply::AmountAboveLimit { max } => {
                format!("Сумма больше лимита {} руб.", rubles(*max))
            }
            Reply::AccountAlreadyPaidToday => {
                "По этому счёту сегодня уже была оплата по SMS.".into()
            }
            Reply::PhoneCountReached => {
                "Лимит SMS-платежей на сегодня исчерпан. Оплатите в кабинете.".into()
            }
            Reply::PhoneAmountReached { max } => format!(
                "SMS-платежи за день: не больше {} руб. Оплатите в кабинете.",
                rubles(*max)
            ),
            Reply::PersonalDataRequired => {
                "Нужны паспортные данные: оплатите в личном кабинете.".into()
            }
            Reply::Succeeded {
                amount,
                account,
                payee,
            } => {
                let paid = format!("Оплачено {} руб., счёт {account}.", rubles(*amount));
                match payee {
                    // Who was paid and with which card, cut to fit one SMS.
                    Some(payee) => {
                        let room = MAX_REPLY_CHARS.saturating_sub(paid.chars().count() + 2);
                        let payee: String = payee.chars().take(room).collect();
                        if payee.is_empty() {
                            paid
                        } else {
                            format!("{paid} {payee}.")
                        }
                    }
                    None => paid,
                }
            }
            Reply::Failed { amount } => {
                format!(
                    "Платёж {} руб. не прошёл, деньги не списаны.",
                    rubles(*amount)
                )
            }
            Reply::ThreeDsRequired => {
                "Банк запросил 3-D Secure. Оплатите в личном кабинете.".into()
            }
            Reply::Processing => "Платёж обрабатывается, результат придёт в SMS.".into(),
            Reply::NotDone => "Платёж не выполнен, деньги не списаны. Попробуйте позже.".into(),
        }
    }
}

/// The calendar day of `at` in `zone`, as `YYYY-MM-DD`: the limits count per such day.
pub fn local_day(at: time::OffsetDateTime, zone: &jiff::tz::TimeZone) -> String {
    let instant =
        jiff::Timestamp::from_second(at.unix_timestamp()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    instant.to_zoned(zone.clone()).date().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(text: &str) -> Amount {
        Amount::parse_api(text).expect("amount")
    }

    #[test]
    fn the_grammar() {
        let pay = |account: &str, value: &str| Command::Pay {
            account: account.into(),
            amount: amount(value),
        };
        let cases = [
            ("?", Command::Help),
            ("  ?  ", Command::Help),
            ("ОПЛАТА 1234567890 1500,50", pay("1234567890", "1500.50")),
            ("оплата 1234567890 1500.5", pay("1234567890", "1500.50")),
            ("Оплата   1234567890   100", pay("1234567890", "100")),
            ("PAY 1234567890 99.99", pay("1234567890", "99.99")),
            ("pay 1234567890 99,99", pay("1234567890", "99.99")),
            ("ОПЛАТА 1234567890", Command::Malformed),
            ("ОПЛАТА 1234567890 1500,505", Command::Malformed),
            ("ОПЛАТА 1234567890 -5", Command::Malformed),
            ("ОПЛАТА 1234567890 0", Command::Malformed),
            ("ОПЛАТА 1234567890 0,00", Command::Malformed),
            ("ОПЛАТА 1234567890 1e3", Command::Malformed),
            ("ОПЛАТА 1234567890 1 500", Command::Malformed),
            ("ОПЛАТА 12345678901234567890123456 10", Command::Malformed),
            ("ОПЛАТИТЬ 1234567890 10", Command::Malformed),
            ("?? ", Command::Malformed),
            ("", Command::Malformed),
            ("привет", Command::Malformed),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), expected, "{text:?}");
        }
    }

    #[test]
    fn the_daily_limits() {
        let pay = parse("ОПЛАТА 1234567890 10");
        let fresh = DayCounts::default();
        let caps = PhoneCaps {
            payments: 5,
            amount: amount("15000.00"),
        };
        assert_eq!(judge(&Command::Help, fresh, caps), Verdict::Help);
        assert_eq!(
            judge(&Command::Help, DayCounts { help: 1, ..fresh }, caps),
            Verdict::HelpAlreadySent
        );
        assert_eq!(judge(&pay, fresh, caps), Verdict::Proceed);
        assert_eq!(
            judge(
                &pay,
                DayCounts {
                    account_payments: 1,
                    ..fresh
                },
                caps
            ),
            Verdict::AccountAlreadyPaidToday
        );
        assert_eq!(
            judge(
                &Command::Malformed,
                DayCounts {
                    malformed: 1,
                    ..fresh
                },
                caps
            ),
            Verdict::Malformed { now_blocked: false }
        );
        assert_eq!(
            judge(
                &Command::Malformed,
                DayCounts {
                    malformed: 2,
                    ..fresh
                },
                caps
            ),
            Verdict::Malformed { now_blocked: true }
        );
        for command in [Command::Help, Command::Malformed, pay.clone()] {
            assert_eq!(
                judge(
                    &command,
                    DayCounts {
                        malformed: 3,
                        ..fresh
                    },
                    caps
                ),
                Verdict::Blocked
            );
        }
        // Per phone: five payments, 15,000.00 a day.
        assert_eq!(
            judge(
                &pay,
                DayCounts {
                    phone_payments: 5,
                    ..fresh
                },
                caps
            ),
            Verdict::PhoneCountReached
        );
        let big = parse("ОПЛАТА 1234567890 500,01");
        assert_eq!(
            judge(
                &big,
                DayCounts {
                    phone_payments: 1,
                    phone_amount_minor: 1_450_000,
                    ..fresh
                },
                caps
            ),
            Verdict::PhoneAmountReached
        );
        assert_eq!(
            judge(
                &parse("ОПЛАТА 1234567890 500"),
                DayCounts {
                    phone_payments: 1,
                    phone_amount_minor: 1_450_000,
                    ..fresh
                },
                caps
            ),
            Verdict::Proceed
        );
        assert_eq!(
            judge(&parse("ОПЛАТА 1234567890 499999"), fresh, caps),
            Verdict::PhoneAmountReached
        );
    }

    #[test]
    fn every_reply_fits_one_ucs2_sms_and_they_all_differ() {
        let longest_account = "1".repeat(MAX_ACCOUNT_CHARS);
        let largest = amount("999999999.99");
        let replies = [
            Reply::PhoneCountReached,
            Reply::PhoneAmountReached { max: largest },
            Reply::FirstPaymentToAccount,
            Reply::Help,
            Reply::HelpAlreadySent,
            Reply::Malformed,
            Reply::MalformedNowBlocked,
            Reply::Blocked,
            Reply::PhoneNotLinked,
            Reply::UnknownAccount,
            Reply::FirstPaymentToSupplier,
            Reply::NoSavedCard,
            Reply::AmountAboveLimit { max: largest },
            Reply::AccountAlreadyPaidToday,
            Reply::PersonalDataRequired,
            Reply::Succeeded {
                amount: largest,
                account: longest_account.clone(),
                payee: Some(format!("{}, карта *4242", "Ж".repeat(80))),
            },
            Reply::Succeeded {
                amount: largest,
                account: longest_account,
                payee: None,
            },
            Reply::Failed { amount: largest },
            Reply::ThreeDsRequired,
            Reply::Processing,
            Reply::NotDone,
        ];
        let mut texts = std::collections::BTreeSet::new();
        for reply in &replies {
            let text = reply.text();
            let chars = text.chars().count();
            assert!(chars <= MAX_REPLY_CHARS, "{chars} chars: {text}");
            texts.insert(text);
        }
        assert_eq!(texts.len(), replies.len());
    }

    #[test]
    fn the_day_follows_the_time_zone() {
        let moscow = jiff::tz::TimeZone::get("Europe/Moscow").expect("zone");
        // 20:59:59 UTC is 23:59:59 in Moscow; a second later it is the next day there.
        let before = time::macros::datetime!(2026-11-22 20:59:59 UTC);
        assert_eq!(local_day(before, &moscow), "2026-11-22");
        assert_eq!(
            local_day(before + time::Duration::seconds(1), &moscow),
            "2026-11-23"
        );
        assert_eq!(local_day(before, &jiff::tz::TimeZone::UTC), "2026-11-22");
    }
}
