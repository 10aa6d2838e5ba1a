//! Why a line of a payment's audit trail was written, and why an item is on the review list: a
//! stable code with its facts. Stored as JSON beside the English sentence (which logs and the API
//! keep); pages render the code in Russian, with what the operator can do about a review item.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One line of the audit trail: what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum AuditReason {
    PaymentCreated,
    SentToAcquirerPage,
    ContinuedThroughOplata,
    AcquirerRefused,
    NotStarted,
    SavedCardInactive,
    TokenUnopenable,
    SavedCardChargeSent,
    SavedCardCharged,
    IssuerDemandsThreeDs,
    ChargeDeclined,
    ChargeNotSent,
    ThreeDsAnswerReceived,
    StatusQueryPaid,
    StatusQueryFailed,
    NotificationPaid,
    NotificationFailed,
    NotThreeDsAuthenticated,
    ThreeDsWithoutCustomer,
    NeverHappened,
    ActionWindowPassed,
    RefundSucceeded,
    SettledFromReview,
    FlaggedForReview {
        review: ReviewReason,
    },
    RefundFlaggedForReview {
        refund_id: Uuid,
        review: ReviewReason,
    },
    ReviewResolved {
        note: String,
    },
    RefundRequested {
        refund_id: Uuid,
        amount_minor: i64,
        reason: String,
    },
    RefundSettledFromReview {
        refund_id: Uuid,
        status: String,
        note: String,
    },
}

impl AuditReason {
    pub fn code(&self) -> &'static str {
        match self {
            AuditReason::PaymentCreated => "payment_created",
            AuditReason::SentToAcquirerPage => "sent_to_acquirer_page",
            AuditReason::ContinuedThroughOplata => "continued_through_oplata",
            AuditReason::AcquirerRefused => "acquirer_refused",
            AuditReason::NotStarted => "not_started",
            AuditReason::SavedCardInactive => "saved_card_inactive",
            AuditReason::TokenUnopenable => "token_unopenable",
            AuditReason::SavedCardChargeSent => "saved_card_charge_sent",
            AuditReason::SavedCardCharged => "saved_card_charged",
            AuditReason::IssuerDemandsThreeDs => "issuer_demands_three_ds",
            AuditReason::ChargeDeclined => "charge_declined",
            AuditReason::ChargeNotSent => "charge_not_sent",
            AuditReason::ThreeDsAnswerReceived => "three_ds_answer_received",
            AuditReason::StatusQueryPaid => "status_query_paid",
            AuditReason::StatusQueryFailed => "status_query_failed",
            AuditReason::NotificationPaid => "notification_paid",
            AuditReason::NotificationFailed => "notification_failed",
            AuditReason::NotThreeDsAuthenticated => "not_three_ds_authenticated",
            AuditReason::ThreeDsWithoutCustomer => "three_ds_without_customer",
            AuditReason::NeverHappened => "never_happened",
            AuditReason::ActionWindowPassed => "action_window_passed",
            AuditReason::RefundSucceeded => "refund_succeeded",
            AuditReason::SettledFromReview => "settled_from_review",
            AuditReason::FlaggedForReview { .. } => "flagged_for_review",
            AuditReason::RefundFlaggedForReview { .. } => "refund_flagged_for_review",
            AuditReason::ReviewResolved { .. } => "review_resolved",
            AuditReason::RefundRequested { .. } => "refund_requested",
            AuditReason::RefundSettledFromReview { .. } => "refund_settled_from_review",
        }
    }

    /// The English sentence, for logs, the API and the `reason` column.
    pub fn english(&self) -> String {
        let fixed = match self {
            AuditReason::PaymentCreated => "payment created",
            AuditReason::SentToAcquirerPage => "customer sent to the acquirer's page",
            AuditReason::ContinuedThroughOplata => {
                "customer sent on to the acquirer's page through oplata"
            }
            AuditReason::AcquirerRefused => "the acquirer refused the payment",
            AuditReason::NotStarted => "the payment could not be started",
            AuditReason::SavedCardInactive => "the saved card is no longer active",
            AuditReason::TokenUnopenable => "the card's token could not be opened",
            AuditReason::SavedCardChargeSent => "saved-card charge sent to the acquirer",
            AuditReason::SavedCardCharged => "the acquirer charged the saved card",
            AuditReason::IssuerDemandsThreeDs => "the issuer demands 3-D Secure",
            AuditReason::ChargeDeclined => "the acquirer declined the charge",
            AuditReason::ChargeNotSent => "the charge was not sent",
            AuditReason::ThreeDsAnswerReceived => {
                "3-D Secure answer received; completing with the acquirer"
            }
            AuditReason::StatusQueryPaid => "the acquirer's status query reports the payment paid",
            AuditReason::StatusQueryFailed => {
                "the acquirer's status query reports the payment failed"
            }
            AuditReason::NotificationPaid => {
                "the acquirer's signed notification reports the payment paid"
            }
            AuditReason::NotificationFailed => {
                "the acquirer's signed notification reports the payment failed"
            }
            AuditReason::NotThreeDsAuthenticated => {
                "the acquirer reports the payment was not 3-D Secure authenticated"
            }
            AuditReason::ThreeDsWithoutCustomer => {
                "3-D Secure demanded without the customer present"
            }
            AuditReason::NeverHappened => {
                "the acquirer has no such operation past the deadline: it never happened"
            }
            AuditReason::ActionWindowPassed => "nothing happened within the action window",
            AuditReason::RefundSucceeded => "a refund succeeded",
            AuditReason::SettledFromReview => "settled from the review list",
            AuditReason::FlaggedForReview { review } => {
                return format!("flagged for manual review: {}", review.english());
            }
            AuditReason::RefundFlaggedForReview { refund_id, review } => {
                return format!(
                    "refund {refund_id} flagged for manual review: {}",
                    review.english()
                );
            }
            AuditReason::ReviewResolved { note } => return format!("review resolved: {note}"),
            AuditReason::RefundRequested {
                refund_id,
                amount_minor,
                reason,
            } => {
                return format!(
                    "refund {refund_id} of {} requested: {reason}",
                    amount(*amount_minor)
                );
            }
            AuditReason::RefundSettledFromReview {
                refund_id,
                status,
                note,
            } => return format!("refund {refund_id} settled from review as {status}: {note}"),
        };
        fixed.to_owned()
    }

    /// The sentence an operator reads on the desk.
    pub fn russian(&self) -> String {
        let fixed = match self {
            AuditReason::PaymentCreated => "Платёж создан.",
            AuditReason::SentToAcquirerPage => "Покупатель направлен на страницу оплаты эквайера.",
            AuditReason::ContinuedThroughOplata => {
                "Покупатель перешёл на страницу оплаты эквайера по ссылке oplata."
            }
            AuditReason::AcquirerRefused => "Эквайер отказался принять платёж.",
            AuditReason::NotStarted => "Платёж не удалось начать: эквайер недоступен.",
            AuditReason::SavedCardInactive => "Сохранённая карта больше не действует.",
            AuditReason::TokenUnopenable => "Токен сохранённой карты не расшифровался.",
            AuditReason::SavedCardChargeSent => "Списание с сохранённой карты отправлено эквайеру.",
            AuditReason::SavedCardCharged => "Эквайер списал деньги с сохранённой карты.",
            AuditReason::IssuerDemandsThreeDs => "Банк карты требует 3-D Secure.",
            AuditReason::ChargeDeclined => "Эквайер отклонил списание.",
            AuditReason::ChargeNotSent => "Списание не было отправлено эквайеру.",
            AuditReason::ThreeDsAnswerReceived => {
                "Получен ответ 3-D Secure; платёж завершается у эквайера."
            }
            AuditReason::StatusQueryPaid => "По запросу статуса эквайер подтвердил оплату.",
            AuditReason::StatusQueryFailed => "По запросу статуса эквайер сообщил об отказе.",
            AuditReason::NotificationPaid => "Эквайер прислал подписанное уведомление об оплате.",
            AuditReason::NotificationFailed => "Эквайер прислал подписанное уведомление об отказе.",
            AuditReason::NotThreeDsAuthenticated => {
                "Эквайер сообщил, что платёж прошёл без 3-D Secure."
            }
            AuditReason::ThreeDsWithoutCustomer => {
                "Банк потребовал 3-D Secure, а покупателя нет рядом (оплата по SMS)."
            }
            AuditReason::NeverHappened => {
                "У эквайера нет такой операции и срок прошёл: платежа не было."
            }
            AuditReason::ActionWindowPassed => "Покупатель не оплатил вовремя: срок истёк.",
            AuditReason::RefundSucceeded => "Возврат выполнен.",
            AuditReason::SettledFromReview => "Решение оператора по проверке.",
            AuditReason::FlaggedForReview { review } => {
                return format!("Поставлен на проверку: {}", review.russian());
            }
            AuditReason::RefundFlaggedForReview { review, .. } => {
                return format!("Возврат поставлен на проверку: {}", review.russian());
            }
            AuditReason::ReviewResolved { note } => {
                return format!("Проверка закрыта. Примечание: {note}");
            }
            AuditReason::RefundRequested {
                amount_minor,
                reason,
                ..
            } => {
                return format!(
                    "Оформлен возврат {} ₽. Причина: {reason}",
                    amount(*amount_minor)
                );
            }
            AuditReason::RefundSettledFromReview { status, note, .. } => {
                let outcome = match status.as_str() {
                    "succeeded" => "возврат был",
                    "failed" => "возврата не было",
                    _ => status.as_str(),
                };
                return format!("Проверка возврата закрыта ({outcome}). Примечание: {note}");
            }
        };
        fixed.to_owned()
    }

    /// The stored form: the code and its facts.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| format!("{{\"code\":\"{}\"}}", self.code()))
    }

    /// `None` for a line written before codes were stored, or by a newer version.
    pub fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// Why a payment or a refund is on the review list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum ReviewReason {
    /// The acquirer reports another amount (or currency) taken than the payment's.
    OtherAmount {
        reported: String,
        expected: String,
        detail: String,
    },
    UnrequestedRefund {
        amount: String,
    },
    /// A notification oplata did not start; the acquirer's own words.
    Unexpected {
        words: String,
    },
    /// Paid without 3-D Secure: failed, and the money is being sent back.
    PaidWithoutThreeDs,
    PaidWithoutThreeDsRefunded {
        refund_id: String,
    },
    PaidWithoutThreeDsRefundIncomplete {
        detail: String,
    },
    NotificationForClosedPayment {
        event: String,
        status: String,
    },
    TokenUnopenable {
        card_id: Uuid,
    },
    SupplierGone,
    NoStatusQuery {
        acquirer: String,
    },
    ChargeUnfinished {
        acquirer: String,
        in_progress: bool,
    },
    RefundAnswerLost {
        acquirer: String,
        amount_minor: i64,
    },
    RefundAnswerUnreadable {
        acquirer: String,
        amount_minor: i64,
        detail: String,
    },
    RefundUnfinished {
        acquirer: String,
        acquirer_refund_id: String,
        days: i64,
    },
}

impl ReviewReason {
    pub fn code(&self) -> &'static str {
        match self {
            ReviewReason::OtherAmount { .. } => "other_amount",
            ReviewReason::UnrequestedRefund { .. } => "unrequested_refund",
            ReviewReason::Unexpected { .. } => "unexpected",
            ReviewReason::PaidWithoutThreeDs => "paid_without_three_ds",
            ReviewReason::PaidWithoutThreeDsRefunded { .. } => "paid_without_three_ds_refunded",
            ReviewReason::PaidWithoutThreeDsRefundIncomplete { .. } => {
                "paid_without_three_ds_refund_incomplete"
            }
            ReviewReason::NotificationForClosedPayment { .. } => "notification_for_closed_payment",
            ReviewReason::TokenUnopenable { .. } => "token_unopenable",
            ReviewReason::SupplierGone => "supplier_gone",
            ReviewReason::NoStatusQuery { .. } => "no_status_query",
            ReviewReason::ChargeUnfinished { .. } => "charge_unfinished",
            ReviewReason::RefundAnswerLost { .. } => "refund_answer_lost",
            ReviewReason::RefundAnswerUnreadable { .. } => "refund_answer_unreadable",
            ReviewReason::RefundUnfinished { .. } => "refund_unfinished",
        }
    }

    /// The English sentence (the API's `review_reason`).
    pub fn english(&self) -> String {
        match self {
            ReviewReason::OtherAmount { detail, .. } => detail.clone(),
            ReviewReason::UnrequestedRefund { amount } => {
                format!("the acquirer reports a refund of {amount} that nobody asked oplata for")
            }
            ReviewReason::Unexpected { words } => words.clone(),
            ReviewReason::PaidWithoutThreeDs => "paid without 3-D Secure: the payment fails and \
                the money is refunded automatically; check that the refund reached the customer"
                .to_owned(),
            ReviewReason::PaidWithoutThreeDsRefunded { refund_id } => {
                format!("paid without 3-D Secure; refunded in full (refund {refund_id})")
            }
            ReviewReason::PaidWithoutThreeDsRefundIncomplete { detail } => {
                format!("paid without 3-D Secure; the automatic refund did not complete: {detail}")
            }
            ReviewReason::NotificationForClosedPayment { event, status } => {
                format!("notification {event} arrived for a {status} payment")
            }
            ReviewReason::TokenUnopenable { card_id } => {
                format!("the token of card {card_id} does not open")
            }
            ReviewReason::SupplierGone => {
                "the supplier is no longer configured: the outcome cannot be asked".to_owned()
            }
            ReviewReason::NoStatusQuery { acquirer } => format!(
                "{acquirer} has no status query and no notification came within the window: check \
                 the acquirer's cabinet"
            ),
            ReviewReason::ChargeUnfinished {
                acquirer,
                in_progress,
            } => format!(
                "{acquirer} has not finished this charge an hour after it was sent ({}): check it \
                 in the acquirer's cabinet",
                if *in_progress {
                    "its status query says it is in progress"
                } else {
                    "its status query gives no answer"
                }
            ),
            ReviewReason::RefundAnswerLost {
                acquirer,
                amount_minor,
            } => format!(
                "the refund of {} was sent to {acquirer} but its answer was lost, and {acquirer} \
                 cannot be asked about it without its request id: check the acquirer's cabinet \
                 and settle it here",
                amount(*amount_minor)
            ),
            ReviewReason::RefundAnswerUnreadable {
                acquirer,
                amount_minor,
                detail,
            } => format!(
                "{acquirer} did not answer the refund of {} readably ({detail}): check the \
                 acquirer's cabinet and settle it here",
                amount(*amount_minor)
            ),
            ReviewReason::RefundUnfinished {
                acquirer,
                acquirer_refund_id,
                days,
            } => format!(
                "{acquirer} has not finished refund {acquirer_refund_id} after {days} days: check \
                 it in the acquirer's cabinet"
            ),
        }
    }

    /// Why the item is on the list, for the operator.
    pub fn russian(&self) -> String {
        match self {
            ReviewReason::OtherAmount {
                reported, expected, ..
            } => format!(
                "эквайер сообщил об оплате {reported}, а платёж на {expected}; платёж не отмечен \
                 оплаченным."
            ),
            ReviewReason::UnrequestedRefund { amount } => {
                format!("эквайер сообщил о возврате {amount}, которого через oplata не оформляли.")
            }
            ReviewReason::Unexpected { words } => {
                format!("эквайер прислал уведомление, которого oplata не ждала: «{words}».")
            }
            ReviewReason::PaidWithoutThreeDs => "платёж прошёл без 3-D Secure: он отменён, \
                деньги возвращаются автоматически."
                .to_owned(),
            ReviewReason::PaidWithoutThreeDsRefunded { refund_id } => format!(
                "платёж прошёл без 3-D Secure: он отменён, деньги возвращены полностью (возврат \
                 эквайера {refund_id})."
            ),
            ReviewReason::PaidWithoutThreeDsRefundIncomplete { .. } => "платёж прошёл без 3-D \
                Secure и отменён, но автоматический возврат не завершился."
                .to_owned(),
            ReviewReason::NotificationForClosedPayment { event, status } => format!(
                "уведомление эквайера ({event}) пришло по уже закрытому платежу ({})",
                crate::domain::payment::PaymentStatus::parse(status)
                    .map_or(status.as_str(), |s| s.russian())
            ),
            ReviewReason::TokenUnopenable { .. } => {
                "токен сохранённой карты не расшифровался; списания не было.".to_owned()
            }
            ReviewReason::SupplierGone => {
                "поставщик платежа больше не настроен: узнать исход у эквайера нельзя.".to_owned()
            }
            ReviewReason::NoStatusQuery { acquirer } => format!(
                "у {acquirer} нет запроса статуса, а уведомление за отведённое время не пришло."
            ),
            ReviewReason::ChargeUnfinished {
                acquirer,
                in_progress,
            } => format!(
                "{acquirer} не завершил списание за час ({}).",
                if *in_progress {
                    "по запросу статуса — в обработке"
                } else {
                    "запрос статуса не отвечает"
                }
            ),
            ReviewReason::RefundAnswerLost {
                acquirer,
                amount_minor,
            } => format!(
                "возврат {} ₽ отправлен в {acquirer}, ответ потерян, а спросить {acquirer} о нём \
                 нельзя.",
                amount(*amount_minor)
            ),
            ReviewReason::RefundAnswerUnreadable {
                acquirer,
                amount_minor,
                ..
            } => format!(
                "{acquirer} ответил на возврат {} ₽ нечитаемо.",
                amount(*amount_minor)
            ),
            ReviewReason::RefundUnfinished {
                acquirer,
                acquirer_refund_id,
                days,
            } => format!("{acquirer} не завершил возврат {acquirer_refund_id} за {days} дн."),
        }
    }

    /// What the operator can do about it.
    pub fn advice(&self) -> &'static str {
        match self {
            ReviewReason::OtherAmount { .. } | ReviewReason::UnrequestedRefund { .. } => {
                "Сверьте операцию в кабинете эквайера и запишите, что нашли."
            }
            ReviewReason::Unexpected { .. } | ReviewReason::NotificationForClosedPayment { .. } => {
                "Найдите операцию в кабинете эквайера: если деньги списаны по закрытому платежу, \
                 верните их там, затем запишите решение."
            }
            ReviewReason::PaidWithoutThreeDs
            | ReviewReason::PaidWithoutThreeDsRefunded { .. }
            | ReviewReason::PaidWithoutThreeDsRefundIncomplete { .. } => {
                "Проверьте в кабинете эквайера, что возврат дошёл до покупателя; если нет — \
                 верните деньги там. Затем запишите «Проверено»."
            }
            ReviewReason::TokenUnopenable { .. } => {
                "Деньги не списаны. Проверьте ключи хранилища; карту покупатель может привязать \
                 заново."
            }
            ReviewReason::SupplierGone
            | ReviewReason::NoStatusQuery { .. }
            | ReviewReason::ChargeUnfinished { .. } => {
                "Найдите платёж в кабинете эквайера и отметьте, был он или нет."
            }
            ReviewReason::RefundAnswerLost { .. }
            | ReviewReason::RefundAnswerUnreadable { .. }
            | ReviewReason::RefundUnfinished { .. } => {
                "Найдите возврат в кабинете эквайера и отметьте, был он или нет: если нет, сумма \
                 снова станет доступной для возврата."
            }
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| format!("{{\"code\":\"{}\"}}", self.code()))
    }

    pub fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

fn amount(minor: i64) -> String {
    oplata_providers::Amount::from_minor(minor)
        .map(|a| a.to_string())
        .unwrap_or_else(|_| format!("{minor} kopecks"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_stored_as_its_code_and_facts_and_read_back() {
        let reason = AuditReason::RefundFlaggedForReview {
            refund_id: Uuid::nil(),
            review: ReviewReason::RefundAnswerLost {
                acquirer: "net_pay".into(),
                amount_minor: 150_050,
            },
        };
        let stored = reason.to_json();
        assert!(
            stored.contains("\"code\":\"refund_flagged_for_review\""),
            "{stored}"
        );
        assert!(
            stored.contains("\"code\":\"refund_answer_lost\""),
            "{stored}"
        );
        assert_eq!(AuditReason::from_json(&stored), Some(reason));
        assert_eq!(
            AuditReason::from_json("{\"code\":\"from_the_future\"}"),
            None
        );
    }

    #[test]
    fn english_stays_what_logs_and_the_api_always_said() {
        assert_eq!(
            AuditReason::NotificationPaid.english(),
            "the acquirer's signed notification reports the payment paid"
        );
        assert_eq!(
            ReviewReason::PaidWithoutThreeDsRefunded {
                refund_id: "r1".into()
            }
            .english(),
            "paid without 3-D Secure; refunded in full (refund r1)"
        );
    }

    #[test]
    fn every_review_reason_says_what_to_do_in_russian() {
        let reasons = [
            ReviewReason::SupplierGone,
            ReviewReason::PaidWithoutThreeDs,
            ReviewReason::UnrequestedRefund {
                amount: "1.00".into(),
            },
            ReviewReason::RefundUnfinished {
                acquirer: "robokassa".into(),
                acquirer_refund_id: "x".into(),
                days: 7,
            },
        ];
        for reason in reasons {
            let text = format!("{} {}", reason.russian(), reason.advice());
            assert!(text.chars().any(|c| ('а'..='я').contains(&c)), "{text}");
            assert!(!text.contains("the "), "{text}");
        }
    }
}
