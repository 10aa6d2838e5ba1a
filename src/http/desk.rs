//! The refunds desk for operators in a browser: sign-in, search, a payment's page with its
//! timeline and refunds, the refund form, the review list. Server-rendered Russian pages with no
//! scripts. Sessions live in an HttpOnly, SameSite=Strict cookie (Secure when the service is
//! reached over TLS); every form carries a CSRF token bound to the session (or, for the sign-in
//! form, to a cookie of its own).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use oplata_providers::Amount;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use uuid::Uuid;

use super::desk_refund::RefundDraft;
use super::desk_views::{
    DeadWebhook, DeskInput, DeskNotice, LoginPage, PaymentInReview, PaymentPage, PaymentRow,
    RefundAwaiting, RefundInReview, RefundLine, ReviewItem, ReviewPage, SearchPage, SearchResults,
    SettledItem, TimelineLine,
};
use super::pages::{cookie_value, respond, same, secure_flag, set_cookie};
use crate::domain::audit::{AuditReason, ReviewReason};
use crate::domain::payment::PaymentStatus;
use crate::service::operators::{self, LoginError};
use crate::service::{ServiceError, Services, desk};
use crate::store::{PaymentRecord, RefundRecord, SessionRecord};

const SESSION_COOKIE: &str = "oplata_desk";
const LOGIN_COOKIE: &str = "oplata_desk_login";

pub(super) fn kopecks(minor: i64) -> String {
    Amount::from_minor(minor)
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "0.00".into())
}

/// What a desk page puts facts into words with: the desk's zone (`desk.time_zone`, Moscow unless
/// set), resolved once per page rather than once per time shown.
struct Words<'a> {
    services: &'a Services,
    zone: jiff::tz::TimeZone,
}

impl<'a> Words<'a> {
    fn new(services: &'a Services) -> Self {
        Words {
            services,
            zone: services.settings.desk_time_zone(),
        }
    }

    /// A time in the desk's zone, to the second.
    fn moment(&self, at: OffsetDateTime) -> String {
        super::wording::local_moment_to_the_second(at, &self.zone)
    }
}

fn supplier_name<'a>(services: &'a Services, id: &'a str) -> &'a str {
    services
        .suppliers
        .supplier(id)
        .map_or(id, |s| s.name.as_str())
}

/// Why an item is on the review list and what to do about it, from its stored code; an item
/// flagged before codes were stored shows its English sentence.
fn review_words(detail: Option<&str>, english: Option<&str>) -> (String, &'static str) {
    match detail.and_then(ReviewReason::from_json) {
        Some(reason) => (reason.russian(), reason.advice()),
        None => (
            english.unwrap_or_default().to_owned(),
            "Проверьте операцию в кабинете эквайера и запишите решение.",
        ),
    }
}

/// The refund oplata asks for by itself when a card paid without 3-D Secure (rule 7), listed
/// with the operators' refunds: it is made at the acquirer directly, and its outcome is on the
/// payment's audit trail.
fn automatic_refund_line(
    words: &Words,
    payment: &PaymentRecord,
    line: &crate::store::AuditRecord,
) -> Option<RefundLine> {
    let AuditReason::FlaggedForReview { review } =
        line.detail.as_deref().and_then(AuditReason::from_json)?
    else {
        return None;
    };
    let status = match review {
        ReviewReason::PaidWithoutThreeDsRefunded { refund_id } => {
            format!("выполнен (возврат эквайера {refund_id})")
        }
        ReviewReason::PaidWithoutThreeDsRefundIncomplete { .. } => {
            "не завершён: проверьте в кабинете эквайера".to_owned()
        }
        _ => return None,
    };
    Some(RefundLine {
        automatic: true,
        when: words.moment(line.created_at),
        amount: kopecks(payment.amount_minor),
        status,
        operator: "автоматически".to_owned(),
        reason: "платёж без 3-D Secure".to_owned(),
    })
}

/// One line of the audit trail in Russian, from its stored code.
fn audit_words(line: &crate::store::AuditRecord) -> String {
    line.detail
        .as_deref()
        .and_then(AuditReason::from_json)
        .map_or_else(|| line.reason.clone(), |reason| reason.russian())
}

fn status_ru(status: &str) -> &'static str {
    PaymentStatus::parse(status).map_or("неизвестно", PaymentStatus::russian)
}

fn refund_status_ru(status: &str) -> &'static str {
    match status {
        "pending" => "в обработке",
        "awaiting_acquirer" => "ждёт эквайера: выполните возврат в кабинете эквайера",
        "succeeded" => "выполнен",
        "failed" => "отклонён",
        _ => "неизвестно",
    }
}

/// A page that says one thing, with the operator's header when signed in.
pub(super) fn notice(
    status: StatusCode,
    title: &str,
    session: Option<&SessionRecord>,
    message: Option<&str>,
) -> Response {
    respond(
        status,
        &DeskNotice {
            title,
            session,
            message,
        },
    )
}

/// A signed-in operator; anything else is sent to the sign-in page.
#[derive(Debug)]
pub struct Operator {
    pub(super) session: SessionRecord,
}

impl FromRequestParts<Arc<Services>> for Operator {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &Arc<Services>,
    ) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/desk/login").into_response();
        let token = cookie_value(&parts.headers, SESSION_COOKIE).ok_or_else(to_login)?;
        match operators::session(services, &token, OffsetDateTime::now_utc()).await {
            Ok(Some(session)) => Ok(Operator { session }),
            Ok(None) => Err(to_login()),
            Err(error) => {
                tracing::error!(%error, "desk session lookup failed");
                Err(StatusCode::SERVICE_UNAVAILABLE.into_response())
            }
        }
    }
}

fn login_page(services: &Services, message: Option<&str>, status: StatusCode) -> Response {
    let token = operators::form_token();
    let mut response = respond(
        status,
        &LoginPage {
            title: "Вход",
            session: None,
            message,
            token: &token,
        },
    );
    set_cookie(
        &mut response,
        format!(
            "{LOGIN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/desk; Max-Age=3600{}",
            secure_flag(services)
        ),
    );
    response
}

pub async fn login_form(State(services): State<Arc<Services>>) -> Response {
    login_page(&services, None, StatusCode::OK)
}

#[derive(Debug, serde::Deserialize)]
pub struct LoginForm {
    login: String,
    password: String,
    #[serde(default)]
    code: String,
    csrf: String,
}

pub async fn login(
    State(services): State<Arc<Services>>,
    super::public::ClientIp(client): super::public::ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie_value(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same(&form.csrf, &expected) {
        return login_page(
            &services,
            Some("Форма устарела. Попробуйте ещё раз."),
            StatusCode::FORBIDDEN,
        );
    }
    let password = SecretString::from(form.password);
    let credentials = operators::Credentials {
        login: form.login.trim(),
        password: &password,
        code: Some(form.code.trim()).filter(|code| !code.is_empty()),
    };
    match operators::login(&services, &credentials, &client, OffsetDateTime::now_utc()).await {
        Ok(Ok(session)) => {
            let mut response = Redirect::to("/desk").into_response();
            set_cookie(
                &mut response,
                format!(
                    "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/desk; Max-Age={}{}",
                    session.token.expose_secret(),
                    operators::SESSION_LIFETIME.whole_seconds(),
                    secure_flag(&services)
                ),
            );
            response
        }
        Ok(Err(LoginError::Invalid)) => login_page(
            &services,
            Some("Неверный логин, пароль или код."),
            StatusCode::UNAUTHORIZED,
        ),
        Ok(Err(LoginError::SecondFactorMissing)) => login_page(
            &services,
            Some(
                "Для входа нужен второй фактор. Попросите администратора подключить его \
                 (oplata operator second-factor).",
            ),
            StatusCode::FORBIDDEN,
        ),
        Ok(Err(LoginError::TooManyAttempts)) => login_page(
            &services,
            Some("Слишком много неудачных попыток. Попробуйте через 15 минут."),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(error) => {
            tracing::error!(%error, "desk sign-in failed");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn logout(
    State(services): State<Arc<Services>>,
    operator: Operator,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !same(&form.csrf, &operator.session.csrf_token) {
        return StatusCode::FORBIDDEN.into_response();
    }
    if let Some(token) = cookie_value(&headers, SESSION_COOKIE) {
        let _ = operators::logout(&services, &token).await;
    }
    let mut response = Redirect::to("/desk/login").into_response();
    set_cookie(
        &mut response,
        format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/desk; Max-Age=0"),
    );
    response
}

fn payment_row(words: &Words, payment: &PaymentRecord) -> PaymentRow {
    PaymentRow {
        id: payment.id,
        created: words.moment(payment.created_at),
        supplier: supplier_name(words.services, &payment.supplier_id).to_owned(),
        account: payment.account_number.clone(),
        amount: kopecks(payment.amount_minor),
        status: status_ru(payment.status.as_str()),
    }
}

/// The search form's inputs after the status: name, label, the input's own attributes.
const SEARCH_INPUTS: [(&str, &str, &str); 9] = [
    ("account", "Лицевой счёт", ""),
    (
        "payment",
        "Платёж: номер или его начало (от 8 знаков)",
        " size=\"36\"",
    ),
    ("order", "Номер заказа эквайера", ""),
    ("email", "E-mail покупателя", " inputmode=\"email\""),
    (
        "phone",
        "Телефон покупателя",
        " inputmode=\"tel\" placeholder=\"+7 900 123-45-67\"",
    ),
    (
        "card",
        "Последние 4 цифры карты",
        " inputmode=\"numeric\" maxlength=\"4\" size=\"4\"",
    ),
    ("amount", "Сумма, ₽", " inputmode=\"decimal\""),
    (
        "from",
        "С",
        " inputmode=\"numeric\" placeholder=\"ДД.ММ.ГГГГ\" size=\"10\"",
    ),
    (
        "to",
        "по",
        " inputmode=\"numeric\" placeholder=\"ДД.ММ.ГГГГ\" size=\"10\"",
    ),
];

/// The query string of the page after `last`: the same search, from after that payment.
fn next_page_query(query: &HashMap<String, String>, last: &PaymentRecord) -> String {
    let mut pairs: Vec<(&str, String)> = super::desk_search::FIELDS
        .iter()
        .filter(|name| **name != "after")
        .filter_map(|name| {
            query
                .get(*name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (*name, v.clone()))
        })
        .collect();
    pairs.push(("after", super::desk_search::place(last.created_at, last.id)));
    serde_urlencoded::to_string(&pairs).unwrap_or_default()
}

pub async fn search(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (results, errors) = match super::desk_search::read(&query) {
        Ok(None) => (SearchResults::NotAsked, Vec::new()),
        Ok(Some(search)) => match desk::search(&services, &search).await {
            Ok(mut found) => {
                let shown = usize::try_from(super::desk_search::LIMIT).unwrap_or(usize::MAX);
                let more = found.len() > shown;
                found.truncate(shown);
                let next = found
                    .last()
                    .filter(|_| more)
                    .map(|last| next_page_query(&query, last));
                let words = Words::new(&services);
                let rows = found.iter().map(|p| payment_row(&words, p)).collect();
                (SearchResults::Found { rows, next }, Vec::new())
            }
            Err(error) => {
                tracing::error!(%error, "desk search failed");
                (SearchResults::Unavailable, Vec::new())
            }
        },
        Err(errors) => {
            let page_link = errors
                .iter()
                .find(|e| e.field == "after")
                .map(|e| e.message);
            (SearchResults::Refused { page_link }, errors)
        }
    };
    // A field the search could not read says so beside it; the first one takes the focus.
    let first_error = errors.iter().find(|e| e.field != "after").map(|e| e.field);
    let error_of = |name: &str| errors.iter().find(|e| e.field == name).map(|e| e.message);
    let typed = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
    let inputs = SEARCH_INPUTS
        .iter()
        .map(|&(name, label, attributes)| DeskInput {
            attributes,
            error: error_of(name).map(str::to_owned),
            focus: first_error == Some(name),
            ..DeskInput::new(name, label, typed(name))
        })
        .collect();
    let statuses = PaymentStatus::ALL
        .iter()
        .map(|s| {
            (
                s.as_str(),
                status_ru(s.as_str()),
                typed("status") == s.as_str(),
            )
        })
        .collect();
    respond(
        StatusCode::OK,
        &SearchPage {
            title: "Поиск платежей",
            session: Some(&operator.session),
            inputs,
            statuses,
            status_error: error_of("status"),
            status_focus: first_error == Some("status"),
            results,
        },
    )
}

const PAYMENT_OUTCOMES: &[(&str, &str)] = &[
    ("happened", "Эквайер провёл платёж (оплачен)"),
    ("never_happened", "Платежа не было"),
    ("acknowledged", "Проверено, без изменений"),
];

const REFUND_OUTCOMES: &[(&str, &str)] = &[
    ("happened", "Эквайер вернул деньги"),
    ("never_happened", "Возврата не было (сумма освободится)"),
];

/// What the top of a payment's page says.
#[derive(Debug, Clone, Copy)]
pub(super) enum Heading<'a> {
    Nothing,
    /// A sentence, and whether it reports success.
    Said(&'a str, bool),
    /// The refund the operator just confirmed, in words for the state it is in now.
    RefundMade(Uuid),
}

pub(super) async fn payment_page(
    services: &Services,
    operator: &Operator,
    id: Uuid,
    heading: Heading<'_>,
    draft: Option<RefundDraft>,
    status: StatusCode,
) -> Response {
    let file = match desk::payment_file(services, id).await {
        Ok(file) => file,
        Err(ServiceError::NotFound) => return payment_not_found(operator),
        Err(error) => {
            tracing::error!(%error, "desk payment page failed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let desk::PaymentFile {
        payment,
        audit,
        refunds: refund_list,
        refundable_minor: remaining,
        actors,
    } = file;
    let words = Words::new(services);
    // The refund just made is one of this payment's, read with them: no lookup of its own.
    let message = match heading {
        Heading::Nothing => None,
        Heading::Said(text, ok) => Some((text, ok)),
        Heading::RefundMade(refund_id) => refund_list
            .iter()
            .find(|refund| refund.id == refund_id)
            .map(refund_made_words),
    };
    let who = |actor: &str| {
        actors
            .get(actor)
            .cloned()
            .unwrap_or_else(|| actor.to_owned())
    };
    let timeline = audit
        .iter()
        .map(|a| TimelineLine {
            when: words.moment(a.created_at),
            status: status_ru(&a.to_status),
            who: who(&a.actor),
            what: audit_words(a),
        })
        .collect();
    let refunds = refund_list
        .iter()
        .map(|r| RefundLine {
            automatic: false,
            when: words.moment(r.created_at),
            amount: kopecks(r.amount_minor),
            status: refund_status_ru(r.status.as_str()).to_owned(),
            operator: who(&format!("operator:{}", r.operator)),
            reason: r.reason.clone(),
        })
        .chain(
            audit
                .iter()
                .filter_map(|line| automatic_refund_line(&words, &payment, line)),
        )
        .collect();
    let refund_reviews = refund_list
        .iter()
        .filter(|r| {
            r.status == crate::domain::refunds::RefundStatus::Pending && r.review_reason.is_some()
        })
        .map(|r| {
            let (why, advice) =
                review_words(r.review_detail.as_deref(), r.review_reason.as_deref());
            ReviewItem {
                anchor: format!("refund-review-{}", r.id),
                action: format!("/desk/refunds/{}/review", r.id),
                title: format!("Возврат {} ₽ на проверке: {why}", kopecks(r.amount_minor)),
                advice,
                outcomes: REFUND_OUTCOMES,
            }
        })
        .collect();
    let refundable = matches!(
        payment.status,
        PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded
    );
    let refund_form = (refundable && remaining > 0).then(|| {
        super::desk_refund::form_view(
            payment.id,
            &operator.session.csrf_token,
            remaining,
            draft.unwrap_or_else(RefundDraft::fresh),
        )
    });
    let payment_review = payment.review_reason.as_deref().map(|reason| {
        let (why, advice) = review_words(payment.review_detail.as_deref(), Some(reason));
        ReviewItem {
            anchor: "payment-review".to_owned(),
            action: format!("/desk/payments/{}/review", payment.id),
            title: format!("На проверке: {why}"),
            advice,
            outcomes: PAYMENT_OUTCOMES,
        }
    });
    respond(
        status,
        &PaymentPage {
            title: format!("Платёж {}", payment.id),
            session: Some(&operator.session),
            csrf: &operator.session.csrf_token,
            message,
            payment_review,
            status: payment.status.as_str(),
            status_words: status_ru(payment.status.as_str()),
            amount: kopecks(payment.amount_minor),
            supplier: supplier_name(services, &payment.supplier_id).to_owned(),
            account: payment.account_number.clone(),
            acquirer: payment.acquirer.as_str(),
            order: payment.acquirer_order_id.clone(),
            created: words.moment(payment.created_at),
            timeline,
            refunds,
            refund_reviews,
            refund_form,
        },
    )
}

fn payment_not_found(operator: &Operator) -> Response {
    notice(
        StatusCode::NOT_FOUND,
        "Платёж не найден",
        Some(&operator.session),
        None,
    )
}

/// What became of the refund the operator just confirmed, as it stands now: an acquirer that
/// has not answered, or answered unreadably, is not a refund done.
fn refund_made_words(refund: &RefundRecord) -> (&'static str, bool) {
    use crate::domain::refunds::RefundStatus;
    match refund.status {
        RefundStatus::Succeeded => ("Возврат выполнен.", true),
        RefundStatus::Failed => ("Эквайер отклонил возврат: деньги не вернулись.", false),
        RefundStatus::AwaitingAcquirer => (
            "Возврат оформлен: выполните его в кабинете эквайера, его уведомление закроет возврат.",
            true,
        ),
        RefundStatus::Pending if refund.review_reason.is_some() => (
            "Возврат оформлен, но ответ эквайера не прочитан: возврат на проверке ниже.",
            false,
        ),
        RefundStatus::Pending => ("Возврат оформлен и ждёт ответа эквайера.", true),
    }
}

pub async fn payment(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return payment_not_found(&operator);
    };
    let refunded = query
        .get("refunded")
        .and_then(|refund_id| Uuid::parse_str(refund_id).ok());
    let heading = match refunded {
        Some(refund_id) => Heading::RefundMade(refund_id),
        None if query.contains_key("resolved") => Heading::Said("Решение записано.", true),
        None => Heading::Nothing,
    };
    let draft = RefundDraft::from_query(&query);
    payment_page(
        &services,
        &operator,
        id,
        heading,
        Some(draft),
        StatusCode::OK,
    )
    .await
}

/// The answer to a form whose CSRF token is not the session's.
pub(super) fn stale_form(operator: &Operator) -> Response {
    notice(
        StatusCode::FORBIDDEN,
        "Форма устарела",
        Some(&operator.session),
        Some("Обновите страницу."),
    )
}

#[derive(Debug, serde::Deserialize)]
pub struct ReviewForm {
    csrf: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    note: String,
}

impl ReviewForm {
    fn resolution(&self) -> Option<crate::service::review::Resolution> {
        use crate::service::review::Resolution;
        match self.outcome.as_str() {
            "happened" => Some(Resolution::Happened),
            "never_happened" => Some(Resolution::NeverHappened),
            "acknowledged" => Some(Resolution::Acknowledged),
            _ => None,
        }
    }

    fn note(&self) -> Option<&str> {
        let note = self.note.trim();
        (!note.is_empty() && note.chars().count() <= 1000 && !note.chars().any(char::is_control))
            .then_some(note)
    }
}

/// An operator settles a payment, or one of its refunds, on the review list.
async fn settle_review(
    services: &Services,
    operator: &Operator,
    payment_id: Uuid,
    refund_id: Option<Uuid>,
    form: &ReviewForm,
) -> Response {
    if !same(&form.csrf, &operator.session.csrf_token) {
        return stale_form(operator);
    }
    let (Some(resolution), Some(note)) = (form.resolution(), form.note()) else {
        return payment_page(
            services,
            operator,
            payment_id,
            Heading::Said("Выберите решение и напишите примечание.", false),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let login = &operator.session.login;
    let settled = match refund_id {
        Some(refund_id) => {
            crate::service::review::resolve_refund(services, refund_id, resolution, login, note)
                .await
                .map(|_| ())
        }
        None => {
            crate::service::review::resolve_payment(services, payment_id, resolution, login, note)
                .await
                .map(|_| ())
        }
    };
    let text = match settled {
        Ok(()) => {
            return Redirect::to(&format!("/desk/payments/{payment_id}?resolved=1"))
                .into_response();
        }
        Err(ServiceError::NotInReview) => "Это уже не на проверке.",
        Err(ServiceError::InvalidResolution) => "Возврат либо был, либо нет: выберите одно.",
        Err(ServiceError::Store(crate::store::StoreError::Refused(_))) => {
            "Такое решение невозможно для платежа в этом статусе."
        }
        Err(ServiceError::NotFound) => return StatusCode::NOT_FOUND.into_response(),
        Err(error) => {
            tracing::error!(%error, "desk review settlement failed");
            "Не удалось записать решение, попробуйте позже."
        }
    };
    payment_page(
        services,
        operator,
        payment_id,
        Heading::Said(text, false),
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

pub async fn review_payment(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Path(id): Path<String>,
    Form(form): Form<ReviewForm>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    settle_review(&services, &operator, id, None, &form).await
}

pub async fn review_refund(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Path(id): Path<String>,
    Form(form): Form<ReviewForm>,
) -> Response {
    let refund = match Uuid::parse_str(&id) {
        Ok(id) => desk::refund(&services, id).await,
        Err(_) => Err(ServiceError::NotFound),
    };
    match refund {
        Ok(refund) => {
            settle_review(
                &services,
                &operator,
                refund.payment_id,
                Some(refund.id),
                &form,
            )
            .await
        }
        Err(ServiceError::NotFound) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

pub async fn review(State(services): State<Arc<Services>>, operator: Operator) -> Response {
    let (review, awaiting, dead) = match (
        crate::service::review::list(&services).await,
        desk::refunds_awaiting(&services).await,
        desk::dead_webhooks(&services).await,
    ) {
        (Ok(review), Ok(awaiting), Ok(dead)) => (review, awaiting, dead),
        _ => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let crate::service::review::ReviewList {
        payments,
        refunds: in_review,
        settled,
    } = review;
    let words = Words::new(&services);
    let payments = payments
        .iter()
        .map(|p| {
            let (why, advice) =
                review_words(p.review_detail.as_deref(), p.review_reason.as_deref());
            PaymentInReview {
                id: p.id,
                supplier: supplier_name(&services, &p.supplier_id).to_owned(),
                amount: kopecks(p.amount_minor),
                status: status_ru(p.status.as_str()),
                why,
                advice,
                when: words.moment(p.updated_at),
            }
        })
        .collect();
    let refunds = in_review
        .iter()
        .map(|r| RefundInReview {
            id: r.id,
            payment_id: r.payment_id,
            amount: kopecks(r.amount_minor),
            why: review_words(r.review_detail.as_deref(), r.review_reason.as_deref()).0,
            when: words.moment(r.created_at),
        })
        .collect();
    let awaiting = awaiting
        .iter()
        .map(|r| RefundAwaiting {
            payment_id: r.payment_id,
            amount: kopecks(r.amount_minor),
            operator: r.operator.clone(),
            when: words.moment(r.created_at),
        })
        .collect();
    let dead = dead
        .iter()
        .map(|d| DeadWebhook {
            event_id: d.event_id.to_string(),
            endpoint: d.endpoint.clone(),
            attempts: d.attempts.to_string(),
            error: d.last_error.clone().unwrap_or_default(),
        })
        .collect();
    let settled = settled
        .iter()
        .map(|p| SettledItem {
            payment_id: p.payment_id,
            supplier: supplier_name(&services, &p.supplier_id).to_owned(),
            amount: kopecks(p.amount_minor),
            status: p.status.russian(),
            when: words.moment(p.settled_at),
        })
        .collect();
    respond(
        StatusCode::OK,
        &ReviewPage {
            title: "На проверку",
            session: Some(&operator.session),
            payments,
            refunds,
            awaiting,
            dead,
            settled,
        },
    )
}
