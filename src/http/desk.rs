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
use axum::response::{Html, IntoResponse, Redirect, Response};
use oplata_providers::Amount;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use uuid::Uuid;

use super::desk_refund::RefundDraft;
use super::pages::{cookie_value, escape, same, secure_flag, set_cookie};
use crate::domain::audit::{AuditReason, ReviewReason};
use crate::domain::payment::PaymentStatus;
use crate::service::operators::{self, LoginError};
use crate::service::{ServiceError, Services, desk};
use crate::store::{PaymentRecord, SessionRecord};

const SESSION_COOKIE: &str = "oplata_desk";
const LOGIN_COOKIE: &str = "oplata_desk_login";

pub(super) fn kopecks(minor: i64) -> String {
    Amount::from_minor(minor)
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "0.00".into())
}

/// A time in the desk's zone (`desk.time_zone`, Moscow unless set), to the second.
fn moment(services: &Services, at: OffsetDateTime) -> String {
    super::wording::local_moment_to_the_second(at, &services.settings.desk_time_zone())
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
fn automatic_refund_row(
    services: &Services,
    payment: &PaymentRecord,
    line: &crate::store::AuditRecord,
) -> Option<String> {
    let AuditReason::FlaggedForReview { review } =
        line.detail.as_deref().and_then(AuditReason::from_json)?
    else {
        return None;
    };
    let status = match review {
        ReviewReason::PaidWithoutThreeDsRefunded { refund_id } => {
            format!("выполнен (возврат эквайера {})", escape(&refund_id))
        }
        ReviewReason::PaidWithoutThreeDsRefundIncomplete { .. } => {
            "не завершён: проверьте в кабинете эквайера".to_owned()
        }
        _ => return None,
    };
    Some(format!(
        "<tr class=\"automatic-refund\"><td>{}</td><td>{} ₽</td><td class=\"refund-status\">{status}</td>\
<td>автоматически</td><td>платёж без 3-D Secure</td></tr>",
        moment(services, line.created_at),
        kopecks(payment.amount_minor),
    ))
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

/// The desk's additions to the pages' stylesheet: wider, a header that wraps, review items that
/// stand out.
const DESK_STYLE: &str = "body{max-width:64rem}\
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;margin-bottom:.5rem}\
header form{margin:0}.ok{color:#15803d;font-weight:600}\
.review{background:#fff;border-left:6px solid #b91c1c;border-radius:8px;padding:.75rem 1rem;margin:0 0 1rem}\
.advice{margin:.25rem 0 .75rem}form input:not([type=radio]),form select{max-width:28rem}\
label input[type=radio]{width:auto;min-height:0;margin-right:.5rem}\
.error[id^=error-]{display:block}td{overflow-wrap:anywhere}\
@media (max-width:40rem){table.stack,table.stack tbody,table.stack tr,table.stack td{display:block}\
table.stack tr:first-child{display:none}table.stack tr{padding:.5rem 0;border-bottom:1px solid #cbd2d9}\
table.stack td{border:0;padding:.125rem .5rem}}";

pub(super) fn page(title: &str, session: Option<&SessionRecord>, body: &str) -> String {
    let header = match session {
        Some(s) => format!(
            "<header><a href=\"/desk\">Поиск</a> · <a href=\"/desk/review\">На проверку</a> · \
<span id=\"operator\">{}</span> <form method=\"post\" action=\"/desk/logout\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Выйти</button></form></header>",
            escape(&s.name),
            escape(&s.csrf_token)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} — стол возвратов</title>\
<style>{}{DESK_STYLE}</style></head><body>{header}<main><h1>{}</h1>{body}</main></body></html>",
        escape(title),
        super::pages::STYLE,
        escape(title)
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
    let message = message
        .map(|m| format!("<p class=\"error\" id=\"error\">{}</p>", escape(m)))
        .unwrap_or_default();
    let body = format!(
        "{message}<form method=\"post\" action=\"/desk/login\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
<p><label>Логин <input id=\"login\" name=\"login\" autocomplete=\"username\" required></label></p>\
<p><label>Пароль <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
<p><label>Код из приложения <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" maxlength=\"7\" aria-describedby=\"code-hint\"></label> <small id=\"code-hint\">6 цифр, если для входа подключён второй фактор</small></p>\
<p><button id=\"sign-in\" type=\"submit\">Войти</button></p></form>"
    );
    let mut response = (status, Html(page("Вход", None, &body))).into_response();
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

fn payment_rows(services: &Services, payments: &[PaymentRecord]) -> String {
    if payments.is_empty() {
        return "<p id=\"nothing\">Ничего не найдено.</p>".into();
    }
    let rows: String = payments
        .iter()
        .map(|p| {
            format!(
                "<tr><td><a class=\"payment\" href=\"/desk/payments/{id}\">{id}</a></td><td>{created}</td><td>{supplier}</td>\
<td>{account}</td><td>{amount} ₽</td><td>{status}</td></tr>",
                id = p.id,
                created = moment(services, p.created_at),
                supplier = escape(supplier_name(services, &p.supplier_id)),
                account = escape(&p.account_number),
                amount = kopecks(p.amount_minor),
                status = status_ru(p.status.as_str()),
            )
        })
        .collect();
    format!(
        "<table id=\"results\" class=\"stack\"><tr><th>Платёж</th><th>Создан</th><th>Поставщик</th><th>Лицевой счёт</th><th>Сумма</th><th>Статус</th></tr>{rows}</table>"
    )
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

pub async fn search(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (results, errors) = match super::desk_search::read(&query) {
        Ok(None) => (String::new(), Vec::new()),
        Ok(Some(search)) => match desk::search(&services, &search).await {
            Ok(mut found) => {
                let shown = usize::try_from(super::desk_search::LIMIT).unwrap_or(usize::MAX);
                let more = found.len() > shown;
                found.truncate(shown);
                let next = match found.last() {
                    Some(last) if more => {
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
                        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
                        format!(
                            "<p><a id=\"next-page\" href=\"/desk?{}\">Следующие {shown} →</a></p>",
                            escape(&query)
                        )
                    }
                    _ => String::new(),
                };
                (
                    format!("{}{next}", payment_rows(&services, &found)),
                    Vec::new(),
                )
            }
            Err(error) => {
                tracing::error!(%error, "desk search failed");
                (
                    "<p class=\"error\">Поиск временно недоступен.</p>".into(),
                    Vec::new(),
                )
            }
        },
        Err(errors) => {
            let page_link = errors
                .iter()
                .find(|e| e.field == "after")
                .map(|e| format!(" {}", escape(e.message)))
                .unwrap_or_default();
            (
                format!(
                    "<p class=\"error\" id=\"search-refused\" role=\"alert\">Поиск не выполнен: исправьте \
отмеченные поля.{page_link}</p>"
                ),
                errors,
            )
        }
    };
    let value = |name: &str| escape(query.get(name).map(String::as_str).unwrap_or_default());
    // A field the search could not read says so beside it; the first one takes the focus.
    let mut first = true;
    let mut marks = std::collections::HashMap::new();
    for error in errors.iter().filter(|e| e.field != "after") {
        let autofocus = if std::mem::take(&mut first) {
            " autofocus"
        } else {
            ""
        };
        marks.entry(error.field).or_insert_with(|| {
            (
                format!(
                    " aria-invalid=\"true\" aria-describedby=\"error-{}\"{autofocus}",
                    error.field
                ),
                format!(
                    "<span class=\"error\" id=\"error-{}\">{}</span>",
                    error.field,
                    escape(error.message)
                ),
            )
        });
    }
    let attrs = |name: &str| marks.get(name).map(|m| m.0.as_str()).unwrap_or_default();
    let note = |name: &str| marks.get(name).map(|m| m.1.as_str()).unwrap_or_default();
    let statuses: String = PaymentStatus::ALL
        .iter()
        .map(|s| {
            let selected = if query.get("status").map(String::as_str) == Some(s.as_str()) {
                " selected"
            } else {
                ""
            };
            format!(
                "<option value=\"{}\"{selected}>{}</option>",
                s.as_str(),
                status_ru(s.as_str())
            )
        })
        .collect();
    let inputs: String = SEARCH_INPUTS
        .iter()
        .map(|(name, label, own)| {
            format!(
                "<p><label for=\"{name}\">{label}</label> <input id=\"{name}\" name=\"{name}\" \
value=\"{}\"{own}{}> {}</p>",
                value(name),
                attrs(name),
                note(name)
            )
        })
        .collect();
    let body = format!(
        "<form method=\"get\" action=\"/desk\" id=\"search\">{inputs}\
<p><label for=\"status\">Статус</label> <select id=\"status\" name=\"status\"{}><option value=\"\">любой</option>{statuses}</select> {}</p>\
<p><button id=\"find\" type=\"submit\">Найти</button></p></form>{results}",
        attrs("status"),
        note("status"),
    );
    Html(page("Поиск платежей", Some(&operator.session), &body)).into_response()
}

pub(super) async fn payment_page(
    services: &Services,
    operator: &Operator,
    id: Uuid,
    message: Option<(&str, bool)>,
    draft: Option<RefundDraft>,
    status: StatusCode,
) -> Response {
    let file = match desk::payment_file(services, id).await {
        Ok(file) => file,
        Err(ServiceError::NotFound) => {
            return (
                StatusCode::NOT_FOUND,
                Html(page("Платёж не найден", Some(&operator.session), "")),
            )
                .into_response();
        }
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
    let who = |actor: &str| {
        actors
            .get(actor)
            .cloned()
            .unwrap_or_else(|| actor.to_owned())
    };
    let message = message
        .map(|(text, ok)| {
            format!(
                "<p class=\"{}\" id=\"message\">{}</p>",
                if ok { "ok" } else { "error" },
                escape(text)
            )
        })
        .unwrap_or_default();
    let timeline: String = audit
        .iter()
        .map(|a| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                moment(services, a.created_at),
                status_ru(&a.to_status),
                escape(&who(&a.actor)),
                escape(&audit_words(a))
            )
        })
        .collect();
    let refunds_rows: String = refund_list
        .iter()
        .map(|r| {
            format!(
                "<tr><td>{}</td><td>{} ₽</td><td class=\"refund-status\">{}</td><td>{}</td><td>{}</td></tr>",
                moment(services, r.created_at),
                kopecks(r.amount_minor),
                refund_status_ru(r.status.as_str()),
                escape(&who(&format!("operator:{}", r.operator))),
                escape(&r.reason)
            )
        })
        .chain(audit.iter().filter_map(|line| automatic_refund_row(services, &payment, line)))
        .collect();
    let refund_reviews: String = refund_list
        .iter()
        .filter(|r| {
            r.status == crate::domain::refunds::RefundStatus::Pending && r.review_reason.is_some()
        })
        .map(|r| {
            let (why, advice) =
                review_words(r.review_detail.as_deref(), r.review_reason.as_deref());
            review_form(
                &format!("/desk/refunds/{}/review", r.id),
                &format!("refund-review-{}", r.id),
                &format!("Возврат {} ₽ на проверке: {why}", kopecks(r.amount_minor)),
                advice,
                &[
                    ("happened", "Эквайер вернул деньги"),
                    ("never_happened", "Возврата не было (сумма освободится)"),
                ],
                &operator.session.csrf_token,
            )
        })
        .collect();
    let refundable = matches!(
        Some(payment.status),
        Some(PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded)
    );
    let form = if refundable && remaining > 0 {
        let draft = draft.unwrap_or_else(RefundDraft::fresh);
        super::desk_refund::form_section(
            payment.id,
            &operator.session.csrf_token,
            remaining,
            &draft,
        )
    } else {
        "<p>Возврат недоступен для этого платежа.</p>".into()
    };
    let review = payment
        .review_reason
        .as_deref()
        .map(|reason| {
            let (why, advice) = review_words(payment.review_detail.as_deref(), Some(reason));
            review_form(
                &format!("/desk/payments/{}/review", payment.id),
                "payment-review",
                &format!("На проверке: {why}"),
                advice,
                &[
                    ("happened", "Эквайер провёл платёж (оплачен)"),
                    ("never_happened", "Платежа не было"),
                    ("acknowledged", "Проверено, без изменений"),
                ],
                &operator.session.csrf_token,
            )
        })
        .unwrap_or_default();
    let body = format!(
        "{message}{review}<table><tr><th>Статус</th><td id=\"status\" data-status=\"{status}\">{status_ru}</td></tr>\
<tr><th>Сумма</th><td>{amount} ₽</td></tr><tr><th>Поставщик</th><td>{supplier}</td></tr>\
<tr><th>Лицевой счёт</th><td>{account}</td></tr><tr><th>Эквайер, заказ</th><td>{acquirer} {order}</td></tr>\
<tr><th>Создан</th><td>{created}</td></tr></table>\
<h2>История</h2><table id=\"timeline\" class=\"stack\"><tr><th>Когда</th><th>Статус</th><th>Кто</th><th>Что</th></tr>{timeline}</table>\
<h2>Возвраты</h2><table id=\"refunds\" class=\"stack\"><tr><th>Когда</th><th>Сумма</th><th>Статус</th><th>Оператор</th><th>Причина</th></tr>{refunds_rows}</table>{refund_reviews}{form}",
        status = payment.status.as_str(),
        status_ru = status_ru(payment.status.as_str()),
        amount = kopecks(payment.amount_minor),
        supplier = escape(supplier_name(services, &payment.supplier_id)),
        account = escape(&payment.account_number),
        acquirer = payment.acquirer.as_str(),
        order = escape(&payment.acquirer_order_id),
        created = moment(services, payment.created_at),
    );
    (
        status,
        Html(page(
            &format!("Платёж {}", payment.id),
            Some(&operator.session),
            &body,
        )),
    )
        .into_response()
}

pub async fn payment(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return (
            StatusCode::NOT_FOUND,
            Html(page("Платёж не найден", Some(&operator.session), "")),
        )
            .into_response();
    };
    let message = if query.contains_key("refunded") {
        Some(("Возврат оформлен.", true))
    } else if query.contains_key("resolved") {
        Some(("Решение записано.", true))
    } else {
        None
    };
    let draft = RefundDraft::from_query(&query);
    payment_page(
        &services,
        &operator,
        id,
        message,
        Some(draft),
        StatusCode::OK,
    )
    .await
}

/// The answer to a form whose CSRF token is not the session's.
pub(super) fn stale_form(operator: &Operator) -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(page(
            "Форма устарела",
            Some(&operator.session),
            "<p>Обновите страницу.</p>",
        )),
    )
        .into_response()
}

/// A settlement form for an item on the review list: what was found, and a note.
fn review_form(
    action: &str,
    id: &str,
    title: &str,
    advice: &str,
    outcomes: &[(&str, &str)],
    csrf: &str,
) -> String {
    let choices: String = outcomes
        .iter()
        .map(|(value, label)| {
            format!(
                "<label><input type=\"radio\" name=\"outcome\" value=\"{value}\" required> {label}</label><br>",
                label = escape(label),
            )
        })
        .collect();
    format!(
        "<section class=\"review\" id=\"{id}\"><p class=\"error\">{title}</p><p class=\"advice\">{advice}</p>\
<form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<fieldset><legend>Что показал кабинет эквайера</legend>{choices}</fieldset>\
<label>Примечание <input name=\"note\" required maxlength=\"1000\"></label>\
<button type=\"submit\">Записать решение</button></form></section>",
        id = escape(id),
        title = escape(title),
        advice = escape(advice),
        action = escape(action),
        csrf = escape(csrf),
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
            Some(("Выберите решение и напишите примечание.", false)),
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
        Some((text, false)),
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
    let (payments, in_review, awaiting, dead) = match (
        crate::service::review::list(&services).await,
        desk::refunds_awaiting(&services).await,
        desk::dead_webhooks(&services).await,
    ) {
        (Ok(review), Ok(awaiting), Ok(dead)) => (review.payments, review.refunds, awaiting, dead),
        _ => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let in_review_rows: String = in_review
        .iter()
        .map(|r| {
            format!(
                "<tr><td><a href=\"/desk/payments/{p}#refund-review-{id}\">{p}</a></td><td>{amount} ₽</td><td>{reason}</td><td>{at}</td></tr>",
                p = r.payment_id,
                id = r.id,
                amount = kopecks(r.amount_minor),
                reason = escape(&review_words(r.review_detail.as_deref(), r.review_reason.as_deref()).0),
                at = moment(&services, r.created_at),
            )
        })
        .collect();
    let awaiting_rows: String = awaiting
        .iter()
        .map(|r| {
            format!(
                "<tr><td><a href=\"/desk/payments/{p}\">{p}</a></td><td>{amount} ₽</td><td>{operator}</td><td>{at}</td></tr>",
                p = r.payment_id,
                amount = kopecks(r.amount_minor),
                operator = escape(&r.operator),
                at = moment(&services, r.created_at),
            )
        })
        .collect();
    let dead_rows: String = dead
        .iter()
        .map(|d| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                d.event_id,
                escape(&d.endpoint),
                d.attempts,
                escape(d.last_error.as_deref().unwrap_or_default())
            )
        })
        .collect();
    let review_rows: String = payments
        .iter()
        .map(|p| {
            let (why, advice) = review_words(p.review_detail.as_deref(), p.review_reason.as_deref());
            format!(
                "<tr><td><a class=\"payment\" href=\"/desk/payments/{id}#payment-review\">{id}</a></td>\
<td>{supplier}</td><td>{amount} ₽</td><td>{status}</td><td>{why}</td><td>{advice}</td><td>{at}</td></tr>",
                id = p.id,
                supplier = escape(supplier_name(&services, &p.supplier_id)),
                amount = kopecks(p.amount_minor),
                status = status_ru(p.status.as_str()),
                why = escape(&why),
                advice = escape(advice),
                at = moment(&services, p.updated_at),
            )
        })
        .collect();
    // An empty list says so rather than showing a header over nothing.
    let table = |id: &str, head: &[&str], rows: &str| {
        if rows.is_empty() {
            return format!("<p id=\"{id}\" class=\"empty\">Ничего нет.</p>");
        }
        let head: String = head.iter().map(|h| format!("<th>{h}</th>")).collect();
        format!("<table id=\"{id}\" class=\"stack\"><tr>{head}</tr>{rows}</table>")
    };
    let body = format!(
        "<h2>Платежи на проверке</h2><p>Каждый пункт говорит, почему он здесь и что сделать; решение с \
примечанием записывается на странице платежа и закрывает пункт.</p>{}\
<h2>Возвраты на проверке</h2>\
<p>Исход неизвестен: проверьте в кабинете эквайера и запишите решение на странице платежа.</p>{}\
<h2>Возвраты, ожидающие эквайера</h2>\
<p>Выполните их в кабинете эквайера; его уведомление закроет возврат.</p>{}\
<h2>Недоставленные события для биллинга</h2>{}",
        table(
            "payments-in-review",
            &[
                "Платёж",
                "Поставщик",
                "Сумма",
                "Статус",
                "Почему",
                "Что сделать",
                "Когда"
            ],
            &review_rows
        ),
        table(
            "refunds-in-review",
            &["Платёж", "Сумма", "Почему", "Когда"],
            &in_review_rows
        ),
        table(
            "awaiting",
            &["Платёж", "Сумма", "Оператор", "Когда"],
            &awaiting_rows
        ),
        table(
            "dead-webhooks",
            &["Событие", "Получатель", "Попыток", "Ошибка"],
            &dead_rows
        ),
    );
    Html(page("На проверку", Some(&operator.session), &body)).into_response()
}
