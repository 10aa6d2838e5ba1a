//! The customer's result page: what became of the payment, said truthfully, with what support
//! will ask for (supplier, amount, time in the supplier's zone, payment number, where the receipt
//! went) and the way on: back to the acquirer while the payment can still be paid, a new attempt
//! after a decline or expiry.

use askama::Template;
use time::OffsetDateTime;

use super::wording;
use crate::domain::payment::PaymentStatus;
use crate::service::Services;
use crate::store::PaymentRecord;

/// How long an anonymous page keeps reloading itself while the outcome is unknown: 20 reloads
/// 3 s apart. After that it says what is known and stops; the payment's own exit (expiry,
/// reconciliation) does not depend on anyone watching.
const MAX_CHECKS: u32 = 20;
const CHECK_EVERY_SECS: u32 = 3;
/// A signed-in customer's page has no counter in its address (the acquirer's return address
/// is reloaded as it is), so it reloads for this long after the payment last changed.
const CLIENT_CHECK_WINDOW: time::Duration = time::Duration::minutes(2);

/// What the customer is told; one per distinct situation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Paid,
    PartlyRefunded,
    Refunded,
    Declined,
    /// Paid without 3-D Secure: oplata failed it and sent the money back (rule 7).
    CanceledAndRefunded,
    Expired,
    Canceled,
    /// Waiting for the acquirer's word after the customer came back.
    Checking,
    /// The customer left the acquirer's page without paying (or we stopped waiting to hear).
    Unfinished,
    Processing,
}

impl Outcome {
    pub fn of(status: PaymentStatus, failure_code: Option<&str>, checking: bool) -> Self {
        match status {
            PaymentStatus::Succeeded => Outcome::Paid,
            PaymentStatus::PartiallyRefunded => Outcome::PartlyRefunded,
            PaymentStatus::Refunded => Outcome::Refunded,
            PaymentStatus::Failed
                if failure_code == Some(crate::service::callbacks::PAID_WITHOUT_THREE_DS) =>
            {
                Outcome::CanceledAndRefunded
            }
            PaymentStatus::Failed => Outcome::Declined,
            PaymentStatus::Expired => Outcome::Expired,
            PaymentStatus::Canceled => Outcome::Canceled,
            PaymentStatus::Created | PaymentStatus::RequiresAction if checking => Outcome::Checking,
            PaymentStatus::Created | PaymentStatus::RequiresAction => Outcome::Unfinished,
            PaymentStatus::Processing => Outcome::Processing,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Outcome::Paid => "paid",
            Outcome::PartlyRefunded => "partly_refunded",
            Outcome::Refunded => "refunded",
            Outcome::Declined => "declined",
            Outcome::CanceledAndRefunded => "canceled_and_refunded",
            Outcome::Expired => "expired",
            Outcome::Canceled => "canceled",
            Outcome::Checking => "checking",
            Outcome::Unfinished => "unfinished",
            Outcome::Processing => "processing",
        }
    }

    /// The headline and the sentence under it.
    pub fn texts(self, reloading: bool) -> (&'static str, &'static str) {
        match self {
            Outcome::Paid => ("Оплачено", "Спасибо! Платёж принят."),
            Outcome::PartlyRefunded => (
                "Оплачено",
                "Платёж принят. Часть суммы возвращена на карту.",
            ),
            Outcome::Refunded => (
                "Платёж возвращён",
                "Деньги возвращены на карту. Банк обычно зачисляет возврат в течение нескольких дней.",
            ),
            Outcome::Declined => (
                "Платёж отклонён",
                "Банк не провёл платёж, деньги не списаны. Проверьте данные карты или оплатите другой картой.",
            ),
            Outcome::CanceledAndRefunded => (
                "Платёж отменён",
                "Карта не прошла проверку 3-D Secure, поэтому платёж отменён. Списанная сумма вернётся \
                 на карту, обычно в течение нескольких дней. Оплатите ещё раз картой с 3-D Secure.",
            ),
            Outcome::Expired => (
                "Время на оплату истекло",
                "Оплата не была завершена вовремя, деньги не списаны.",
            ),
            Outcome::Canceled => ("Платёж отменён", "Деньги не списаны."),
            Outcome::Checking => (
                "Проверяем оплату",
                "Если вы оплатили на странице банка, результат появится здесь через несколько секунд.",
            ),
            Outcome::Unfinished => (
                "Оплата не завершена",
                "Банк не сообщил об оплате: похоже, оплата на странице банка не была завершена. \
                 Если вы всё же оплатили, результат появится здесь позже.",
            ),
            Outcome::Processing if reloading => (
                "Платёж обрабатывается",
                "Банк ещё не сообщил результат. Страница обновится сама.",
            ),
            Outcome::Processing => (
                "Платёж обрабатывается",
                "Банк ещё не сообщил результат. Мы узнаем его сами — загляните на эту страницу позже.",
            ),
        }
    }

    /// The colour of the card: done, stopped (no money taken, or given back), still open.
    fn tone(self) -> &'static str {
        match self {
            Outcome::Paid | Outcome::PartlyRefunded => "done",
            Outcome::Refunded
            | Outcome::Declined
            | Outcome::CanceledAndRefunded
            | Outcome::Expired
            | Outcome::Canceled => "stopped",
            Outcome::Checking | Outcome::Unfinished | Outcome::Processing => "waiting",
        }
    }

    /// A new attempt makes sense: nothing was paid, and nothing is still going on.
    fn invites_retry(self) -> bool {
        matches!(
            self,
            Outcome::Declined
                | Outcome::CanceledAndRefunded
                | Outcome::Expired
                | Outcome::Canceled
                | Outcome::Unfinished
        )
    }

    fn tells_receipt(self) -> bool {
        matches!(
            self,
            Outcome::Paid | Outcome::PartlyRefunded | Outcome::Refunded
        )
    }
}

#[derive(Template)]
#[template(path = "result.html")]
pub struct ResultPage {
    title: &'static str,
    detail: &'static str,
    status: &'static str,
    outcome: &'static str,
    tone: &'static str,
    payee: String,
    amount: String,
    account: String,
    moment: String,
    number: String,
    receipt: Option<String>,
    deadline: Option<String>,
    resume: Option<String>,
    retry: Option<String>,
    refresh: Option<String>,
}

/// Which visit this is: an anonymous page counts its own reloads in its address; the browser
/// that created the payment holds the link back to the acquirer's page.
#[derive(Debug, Clone)]
pub struct Visit {
    pub check: u32,
    pub now: OffsetDateTime,
    pub resume: Option<String>,
}

impl ResultPage {
    pub fn new(services: &Services, payment: &PaymentRecord, visit: Visit) -> Self {
        let anonymous = payment.client_id.is_none();
        let open = !payment.status.is_final();
        let refresh = match (open, anonymous) {
            (true, true) if visit.check < MAX_CHECKS => Some(format!(
                "{CHECK_EVERY_SECS};url=/pay/result/{}?check={}",
                payment.id,
                visit.check + 1
            )),
            (true, false) if visit.now - payment.updated_at < CLIENT_CHECK_WINDOW => {
                Some(CHECK_EVERY_SECS.to_string())
            }
            _ => None,
        };
        let outcome = Outcome::of(
            payment.status,
            payment.failure_code.as_deref(),
            refresh.is_some(),
        );
        let (title, detail) = outcome.texts(refresh.is_some());
        let entry = services.suppliers.get(&payment.supplier_id);
        let zone = entry
            .map(|e| e.time_zone.clone())
            .unwrap_or_else(|| services.settings.sms_time_zone());
        let supplier = entry.map(|e| &e.supplier);
        let receipt = supplier
            .filter(|s| s.receipt.is_some() && outcome.tells_receipt())
            .and_then(|_| {
                crate::domain::receipt::contact(payment.email.as_deref(), payment.phone.as_deref())
            })
            .map(|contact| format!("отправлен на {}", wording::masked_contact(&contact)));
        let resume = visit.resume.filter(|_| {
            outcome == Outcome::Unfinished
                && payment
                    .action_deadline
                    .is_none_or(|deadline| deadline > visit.now)
                && crate::service::payments::next_action(payment).is_some()
        });
        let deadline = payment
            .action_deadline
            .filter(|_| resume.is_some())
            .map(|deadline| wording::local_moment(deadline, &zone));
        let retry = supplier
            .filter(|s| anonymous && s.anonymous && outcome.invites_retry())
            .map(|s| {
                let query = serde_urlencoded::to_string([
                    ("supplier", s.id.as_str()),
                    ("account", payment.account_number.as_str()),
                ])
                .unwrap_or_default();
                format!("/pay?{query}")
            });
        ResultPage {
            title,
            detail,
            status: payment.status.as_str(),
            outcome: outcome.code(),
            tone: outcome.tone(),
            payee: supplier
                .map(|s| s.name.clone())
                .unwrap_or_else(|| payment.supplier_id.clone()),
            amount: crate::domain::money::rubles_ru(payment.amount_minor),
            account: payment.account_number.clone(),
            moment: wording::local_moment(payment.created_at, &zone),
            number: payment.acquirer_order_id.clone(),
            receipt,
            deadline,
            resume,
            retry,
            refresh,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_own_words() {
        use PaymentStatus as S;
        let cases = [
            (S::Succeeded, None, false, Outcome::Paid),
            (S::PartiallyRefunded, None, false, Outcome::PartlyRefunded),
            (S::Refunded, None, false, Outcome::Refunded),
            (S::Failed, Some("declined"), false, Outcome::Declined),
            (
                S::Failed,
                Some("paid_without_three_ds"),
                false,
                Outcome::CanceledAndRefunded,
            ),
            (S::Failed, Some("three_ds_failed"), false, Outcome::Declined),
            (S::Expired, None, false, Outcome::Expired),
            (S::Canceled, None, false, Outcome::Canceled),
            (S::RequiresAction, None, true, Outcome::Checking),
            (S::RequiresAction, None, false, Outcome::Unfinished),
            (S::Created, None, false, Outcome::Unfinished),
            (S::Processing, None, true, Outcome::Processing),
        ];
        for (status, failure, checking, expected) in cases {
            assert_eq!(Outcome::of(status, failure, checking), expected, "{status}");
        }
    }

    #[test]
    fn a_card_refunded_for_lack_of_3ds_is_not_told_nothing_was_taken() {
        let (_, detail) = Outcome::CanceledAndRefunded.texts(false);
        assert!(!detail.contains("не списаны"), "{detail}");
        assert!(detail.contains("вернётся"), "{detail}");
    }

    #[test]
    fn only_a_payment_that_took_no_money_invites_a_new_attempt() {
        for outcome in [Outcome::Paid, Outcome::PartlyRefunded, Outcome::Refunded] {
            assert!(!outcome.invites_retry(), "{outcome:?}");
        }
        for outcome in [Outcome::Checking, Outcome::Processing] {
            assert!(!outcome.invites_retry(), "{outcome:?}: still going on");
        }
        for outcome in [Outcome::Declined, Outcome::Expired, Outcome::Unfinished] {
            assert!(outcome.invites_retry(), "{outcome:?}");
        }
    }

    #[test]
    fn the_texts_are_distinct() {
        let all = [
            Outcome::Paid,
            Outcome::Refunded,
            Outcome::Declined,
            Outcome::CanceledAndRefunded,
            Outcome::Expired,
            Outcome::Canceled,
            Outcome::Checking,
            Outcome::Unfinished,
            Outcome::Processing,
        ];
        let details: std::collections::HashSet<_> = all.iter().map(|o| o.texts(false).1).collect();
        assert_eq!(details.len(), all.len());
    }
}
