//! Anonymous pay-by-account-number: `POST /v1/public/payments` for other front ends, and the
//! service's own pay page (`/pay`), server-rendered, in Russian, without scripts of its own but
//! the one line that submits an acquirer's form.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use oplata_providers::NextAction;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::idempotency::{self, IdempotencyKey};
use super::json::{self, Body};
use super::pages::{self, Notice, cookie_value, respond, same, secure_flag, set_cookie};
use super::payments::{PayerRequest, PaymentView};
use crate::domain::new_payment::{PaymentDraft, PaymentRuleError};
use crate::domain::payer::PayerDraft;
use crate::domain::supplier::{PaymentType, Supplier};
use crate::service::api_keys::{ApiClient, Scope};
use crate::service::idempotency::{self as keys, Ending};
use crate::service::{ServiceError, Services, payments, public};
use crate::store::{IdempotencyClaim, StoredResponse};

const CSRF_COOKIE: &str = "oplata_pay_csrf";

/// The idempotency keys of anonymous callers live under this one client id.
fn anonymous_client() -> ApiClient {
    ApiClient {
        id: Uuid::nil(),
        name: "public".to_owned(),
        scope: Scope::Portal,
    }
}

/// The caller's address: the TCP peer, or the configured header of the reverse proxy.
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

impl FromRequestParts<Arc<Services>> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &Arc<Services>,
    ) -> Result<Self, Self::Rejection> {
        let peer: Option<IpAddr> = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let forwarded = services
            .settings
            .public
            .client_ip_header
            .as_deref()
            .and_then(|name| parts.headers.get(name))
            .and_then(|v| v.to_str().ok());
        let address =
            super::client_address::client_address(peer, forwarded, &services.trusted_proxies);
        Ok(ClientIp(
            address.map_or_else(|| "unknown".to_owned(), |a| a.to_string()),
        ))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublicPaymentRequest {
    pub supplier_id: String,
    pub account_number: String,
    #[schema(example = "1234.56")]
    pub amount: String,
    /// `RUB` (the default).
    pub currency: Option<String>,
    /// Refused: the acquirer's page shows the supplier's own text,
    /// "<supplier>: оплата по лицевому счёту <account>".
    #[schema(value_type = Option<String>)]
    pub description: Option<serde_json::Value>,
    /// Where to send the receipt.
    pub email: Option<String>,
    /// Where to send the receipt when there is no e-mail address: `+7XXXXXXXXXX`.
    pub phone: Option<String>,
    pub return_url: Option<String>,
    /// Passport data, for budget suppliers only.
    pub payer: Option<PayerRequest>,
    /// Refused: anonymous payments never save a card.
    #[schema(value_type = Option<bool>)]
    pub save_card: Option<serde_json::Value>,
    /// Refused: a portal user pays through the portal.
    #[schema(value_type = Option<String>)]
    pub user_id: Option<serde_json::Value>,
}

fn default_description(account: &str) -> String {
    format!("Оплата по лицевому счёту {account}")
}

/// The supplier's own words for an anonymous payment, with the account number filled in.
fn supplier_description(services: &Services, supplier_id: &str, account: &str) -> String {
    match services.suppliers.supplier(supplier_id) {
        Some(supplier) => format!("{}: оплата по лицевому счёту {account}", supplier.name),
        None => default_description(account),
    }
}

/// After paying, an anonymous customer goes back only to oplata itself or to a host the
/// operator listed: never to an address the caller chose.
fn return_url_allowed(services: &Services, url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let own = services.public_base_url.host_str();
    let host = parsed.host_str();
    parsed.scheme() == "https"
        && host.is_some_and(|h| {
            services
                .settings
                .public
                .allowed_return_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(h))
        })
        || (host.is_some() && host == own && parsed.scheme() == services.public_base_url.scheme())
}

/// Pay an account anonymously; rate limited per account number and per client address.
#[utoipa::path(
    post, path = "/v1/public/payments", tag = "public",
    request_body = PublicPaymentRequest,
    params(("Idempotency-Key" = String, Header, description = "A fresh random value (a UUID) per intended payment")),
    responses(
        (status = 201, description = "Payment created; send the browser to `next_action`", body = PaymentView),
        (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, description = "A rule is broken; `save_card` and `user_id` are refused here", body = ErrorBody),
        (status = 429, description = "Too many attempts; see `Retry-After`", body = ErrorBody),
    )
)]
pub async fn create(
    State(services): State<Arc<Services>>,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let key = IdempotencyKey::from_headers(&headers)?;
    json::require_json_content_type(&headers)?;
    let fingerprint = idempotency::fingerprint("POST /v1/public/payments", &body);
    idempotency::run(
        services,
        anonymous_client(),
        key,
        fingerprint,
        move |services, _, claimed| async move {
            let request: PublicPaymentRequest = json::parse(&body)?;
            // The acquirer's page shows the description under the supplier's name: an anonymous
            // caller does not write it.
            for (field, present) in [
                ("save_card", request.save_card.is_some()),
                ("user_id", request.user_id.is_some()),
                ("description", request.description.is_some()),
            ] {
                if present {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        ErrorCode::NotAllowedForAnonymous,
                        format!("{field} is not accepted for anonymous payments"),
                    )
                    .with_param(field));
                }
            }
            if let Some(url) = &request.return_url
                && !return_url_allowed(&services, url)
            {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorCode::InvalidReturnUrl,
                    "an anonymous payment returns only to a host the operator configured \
                     (public.allowed_return_hosts); leave return_url out for oplata's own result page",
                )
                .with_param("return_url"));
            }
            let description = supplier_description(&services, &request.supplier_id, &request.account_number);
            let draft = PaymentDraft {
                supplier_id: &request.supplier_id,
                account_number: &request.account_number,
                amount: &request.amount,
                currency: request.currency.as_deref().unwrap_or("RUB"),
                description: &description,
                user_id: None,
                email: request.email.as_deref(),
                phone: request.phone.as_deref(),
                return_url: request.return_url.as_deref(),
                payer: request.payer.as_ref().map(PayerRequest::draft),
            };
            let payment = public::create(&services, &client_ip, &draft, claimed).await?;
            let view = PaymentView::try_from(payment)?;
            let body = serde_json::to_string(&view).map_err(|e| ApiError::internal(&e))?;
            Ok((StatusCode::CREATED, body))
        },
    )
    .await
}

/// Read an anonymous payment's status (without the receipt e-mail or `next_action`).
#[utoipa::path(
    get, path = "/v1/public/payments/{id}", tag = "public",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PaymentView), (status = 404, body = ErrorBody))
)]
pub async fn get(
    State(services): State<Arc<Services>>,
    Path(id): Path<String>,
) -> Result<axum::Json<PaymentView>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found())?;
    let mut payment = public::get(&services, id).await?;
    // Whoever holds the id sees the status, not the payer's address (which the acquirer's
    // address in `next_action` may carry too: the creator got that in the first answer).
    payment.email = None;
    let mut view = PaymentView::try_from(payment)?;
    view.next_action = None;
    Ok(axum::Json(view))
}

// ---- The pay page ----

#[derive(Debug, Default, Deserialize)]
pub struct PayQuery {
    supplier: Option<String>,
    /// Filled in for a new attempt from a result page.
    account: Option<String>,
}

/// What the person typed, echoed back into the form after an error.
#[derive(Default, Deserialize)]
pub struct PayForm {
    #[serde(default)]
    csrf: String,
    /// One per rendering of the form: a second submission of the same form (a double click, a
    /// reload) finds the payment the first made.
    #[serde(default)]
    attempt: String,
    #[serde(default)]
    supplier_id: String,
    #[serde(default)]
    account_number: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    passport_series: String,
    #[serde(default)]
    passport_number: String,
    #[serde(default)]
    full_name: String,
}

impl std::fmt::Debug for PayForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayForm")
            .field("supplier_id", &self.supplier_id)
            .finish_non_exhaustive()
    }
}

fn new_csrf_cookie(services: &Services, token: &str) -> String {
    format!(
        "{CSRF_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/pay; Max-Age=3600{}",
        secure_flag(services)
    )
}

/// One input with its label and, after a refusal, the message beside it.
/// The fields of the pay form in their order: the first with an error takes the focus.
const FORM_ORDER: [&str; 6] = [
    "account_number",
    "amount",
    "email",
    "passport_series",
    "passport_number",
    "full_name",
];

/// One input of the pay form as `templates/pay_field.html` shows it.
struct PayField {
    name: &'static str,
    label: &'static str,
    value: String,
    /// The input's own attributes (fixed text, written as is).
    attributes: &'static str,
    error: Option<String>,
    /// A note under the field that the input is described by: its id and text.
    hint: Option<(&'static str, &'static str)>,
    focus: bool,
}

impl PayField {
    /// What describes the input to assistive technology: its error first, then its note.
    fn described_by(&self) -> Option<String> {
        let ids: Vec<String> = self
            .error
            .as_ref()
            .map(|_| format!("error-{}", self.name))
            .into_iter()
            .chain(self.hint.map(|(id, _)| id.to_owned()))
            .collect();
        (!ids.is_empty()).then(|| ids.join(" "))
    }
}

#[derive(askama::Template)]
#[template(path = "pay_form.html")]
struct PayPage {
    title: String,
    supplier: String,
    supplier_id: String,
    csrf: String,
    attempt: Uuid,
    general: Vec<String>,
    fields: Vec<PayField>,
    passport: Vec<PayField>,
}

#[derive(askama::Template)]
#[template(path = "pay_choice.html")]
struct ChoicePage {
    title: &'static str,
    suppliers: Vec<(String, String)>,
}

fn supplier_choice_page(services: &Services, status: StatusCode) -> Response {
    respond(
        status,
        &ChoicePage {
            title: "Оплата по лицевому счёту",
            suppliers: services
                .suppliers
                .iter()
                .filter(|e| e.supplier.anonymous)
                .map(|e| (e.supplier.id.clone(), e.supplier.name.clone()))
                .collect(),
        },
    )
}

fn pay_form(
    status: StatusCode,
    supplier: &Supplier,
    form: &PayForm,
    csrf: &str,
    errors: &[(String, String)],
) -> Response {
    let focus = FORM_ORDER
        .into_iter()
        .find(|field| errors.iter().any(|(param, _)| param == field));
    let field = |name: &'static str,
                 label: &'static str,
                 value: &str,
                 attributes: &'static str,
                 hint: Option<(&'static str, &'static str)>| PayField {
        name,
        label,
        value: value.to_owned(),
        attributes,
        error: errors
            .iter()
            .find(|(param, _)| param == name)
            .map(|(_, message)| message.clone()),
        hint,
        focus: focus == Some(name),
    };
    let email = if supplier.receipt.is_some() {
        // 54-FZ: the supplier's cashbox sends the receipt there.
        field(
            "email",
            "E-mail для кассового чека",
            &form.email,
            "type=\"email\" maxlength=\"254\" required autocomplete=\"email\"",
            Some((
                "receipt-note",
                "Кассовый чек придёт на этот адрес сразу после оплаты.",
            )),
        )
    } else {
        field(
            "email",
            "E-mail для уведомления об оплате (необязательно)",
            &form.email,
            "type=\"email\" maxlength=\"254\" autocomplete=\"email\"",
            None,
        )
    };
    let fields = vec![
        field(
            "account_number",
            "Лицевой счёт",
            &form.account_number,
            "inputmode=\"numeric\" maxlength=\"40\" required autocomplete=\"off\"",
            None,
        ),
        field(
            "amount",
            "Сумма, ₽ (например, 1 500,50)",
            &form.amount,
            "inputmode=\"decimal\" maxlength=\"15\" required",
            None,
        ),
        email,
    ];
    let passport = if supplier.payment_type == PaymentType::Budget {
        vec![
            field(
                "passport_series",
                "Серия",
                &form.passport_series,
                "inputmode=\"numeric\" maxlength=\"5\" required autocomplete=\"off\"",
                None,
            ),
            field(
                "passport_number",
                "Номер",
                &form.passport_number,
                "inputmode=\"numeric\" maxlength=\"6\" required autocomplete=\"off\"",
                None,
            ),
            field(
                "full_name",
                "Фамилия, имя, отчество",
                &form.full_name,
                "maxlength=\"150\" required autocomplete=\"name\"",
                None,
            ),
        ]
    } else {
        Vec::new()
    };
    let page = PayPage {
        title: "Оплата".to_owned(),
        supplier: supplier.name.clone(),
        supplier_id: supplier.id.clone(),
        csrf: csrf.to_owned(),
        attempt: Uuid::new_v4(),
        general: errors
            .iter()
            .filter(|(param, _)| param.is_empty())
            .map(|(_, message)| message.clone())
            .collect(),
        fields,
        passport,
    };
    respond(status, &page)
}

pub async fn page(
    State(services): State<Arc<Services>>,
    Query(query): Query<PayQuery>,
) -> Response {
    let Some(supplier) = query
        .supplier
        .as_deref()
        .and_then(|id| services.suppliers.supplier(id))
        .filter(|s| s.anonymous)
    else {
        return supplier_choice_page(&services, StatusCode::OK);
    };
    let token = crate::service::operators::form_token();
    let typed = PayForm {
        account_number: query.account.unwrap_or_default(),
        ..PayForm::default()
    };
    let mut response = pay_form(StatusCode::OK, supplier, &typed, &token, &[]);
    set_cookie(&mut response, new_csrf_cookie(&services, &token));
    response
}

/// The Russian sentence for a refusal, and the field it belongs beside ("" for the page).
fn explain(error: &ServiceError) -> Option<(String, String)> {
    use crate::domain::payer::PayerError as P;
    let (param, message) = match error {
        ServiceError::Rule(rule) => match rule {
            PaymentRuleError::UnknownSupplier => ("", "Такого получателя нет.".to_owned()),
            PaymentRuleError::InvalidAccountNumber { .. } => (
                "account_number",
                "Неверный номер лицевого счёта: проверьте его по квитанции.".to_owned(),
            ),
            PaymentRuleError::InvalidAmount(_) => (
                "amount",
                "Укажите сумму больше нуля, не более двух знаков после запятой.".to_owned(),
            ),
            PaymentRuleError::AmountAboveLimit { max } => (
                "amount",
                format!(
                    "Сумма больше допустимой ({} ₽).",
                    max.to_string().replace('.', ",")
                ),
            ),
            PaymentRuleError::InvalidEmail => ("email", "Неверный адрес e-mail.".to_owned()),
            PaymentRuleError::ReceiptContactRequired => (
                "email",
                "Укажите e-mail: на него придёт кассовый чек.".to_owned(),
            ),
            PaymentRuleError::InvalidPhone => {
                ("email", "Телефон — в формате +7 и 10 цифр.".to_owned())
            }
            PaymentRuleError::Payer(P::InvalidSeries) => {
                ("passport_series", "Серия паспорта — 4 цифры.".to_owned())
            }
            PaymentRuleError::Payer(P::InvalidNumber) => {
                ("passport_number", "Номер паспорта — 6 цифр.".to_owned())
            }
            PaymentRuleError::Payer(P::InvalidFullName) => (
                "full_name",
                "Укажите фамилию, имя и отчество русскими буквами.".to_owned(),
            ),
            PaymentRuleError::Payer(P::Required) => (
                "",
                "Для этого платежа нужны паспортные данные плательщика.".to_owned(),
            ),
            _ => ("", "Проверьте данные платежа.".to_owned()),
        },
        _ => return None,
    };
    Some((param.to_owned(), message))
}

fn retry_page(seconds: u64) -> Response {
    let message = format!(
        "Слишком много попыток оплаты. Повторите через {} мин.",
        seconds.div_ceil(60)
    );
    let mut response = respond(
        StatusCode::TOO_MANY_REQUESTS,
        &Notice::new("Слишком много попыток", &message)
            .alert()
            .link("/pay", "Вернуться к оплате"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The page that posts the acquirer's form for the browser.
#[derive(askama::Template)]
#[template(path = "to_acquirer.html")]
struct ToAcquirer<'a> {
    title: &'a str,
    url: &'a str,
    fields: &'a [(String, String)],
}

/// Sends the browser on to the acquirer: a redirect, or a form that submits itself (with a
/// button for a browser that runs no scripts).
pub(super) fn go_to_acquirer(action: NextAction) -> Response {
    match action {
        NextAction::Redirect { url } => Redirect::to(&url).into_response(),
        NextAction::FormPost { url, fields } => {
            let mut response = respond(
                StatusCode::OK,
                &ToAcquirer {
                    title: "Переход к оплате",
                    url: &url,
                    fields: &fields,
                },
            );
            // The template's one inline script submits the form that leaves for the acquirer.
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
                ),
            );
            response
        }
    }
}

/// `POST /pay`: creates the payment and sends the browser to the acquirer, or shows the form
/// again with the error beside its field.
pub async fn submit(
    State(services): State<Arc<Services>>,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<PayForm>,
) -> Response {
    let expected = cookie_value(&headers, CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same(&form.csrf, &expected) {
        return respond(
            StatusCode::FORBIDDEN,
            &Notice::new("Форма устарела", "Откройте страницу оплаты заново.")
                .alert()
                .link("/pay", "Оплата по лицевому счёту"),
        );
    }
    let Some(supplier) = services
        .suppliers
        .supplier(&form.supplier_id)
        .filter(|s| s.anonymous)
    else {
        return supplier_choice_page(&services, StatusCode::UNPROCESSABLE_ENTITY);
    };
    let account = form.account_number.trim();
    let description = supplier_description(&services, &supplier.id, account);
    let amount = crate::domain::money::typed_amount(&form.amount);
    let email = Some(form.email.trim()).filter(|e| !e.is_empty());
    let budget = supplier.payment_type == PaymentType::Budget;
    let draft = PaymentDraft {
        supplier_id: &supplier.id,
        account_number: account,
        amount: &amount,
        currency: "RUB",
        description: &description,
        user_id: None,
        email,
        phone: None,
        return_url: None,
        payer: budget.then_some(PayerDraft {
            passport_series: &form.passport_series,
            passport_number: &form.passport_number,
            full_name: &form.full_name,
        }),
    };
    // Every mistake at once, beside its field, before anything is written.
    let problems: Vec<(String, String)> =
        crate::domain::new_payment::every_problem(&draft, |id| services.suppliers.supplier(id))
            .into_iter()
            .filter_map(|problem| explain(&ServiceError::Rule(problem)))
            .collect();
    if !problems.is_empty() {
        return pay_form(
            StatusCode::UNPROCESSABLE_ENTITY,
            supplier,
            &form,
            &expected,
            &problems,
        );
    }
    let Ok(attempt) = Uuid::parse_str(&form.attempt) else {
        return supplier_choice_page(&services, StatusCode::UNPROCESSABLE_ENTITY);
    };
    let key = format!("pay-form:{attempt}");
    let fingerprint = idempotency::fingerprint(
        "POST /pay",
        format!(
            "{}\n{account}\n{amount}\n{}",
            supplier.id,
            form.email.trim()
        )
        .as_bytes(),
    );
    let owner = anonymous_client().id;
    let claimed = match keys::claim(&services, owner, &key, &fingerprint).await {
        Ok(IdempotencyClaim::Claimed(claimed)) => claimed,
        Ok(IdempotencyClaim::Completed(stored)) => {
            let first = serde_json::from_str::<serde_json::Value>(&stored.body)
                .ok()
                .and_then(|v| {
                    v["payment_id"]
                        .as_str()
                        .and_then(|id| Uuid::parse_str(id).ok())
                });
            return match first {
                Some(id) => match public::get(&services, id).await {
                    Ok(payment) => after_creation(&services, &payment),
                    Err(_) => pages::temporary_failure(),
                },
                None => pages::temporary_failure(),
            };
        }
        Ok(IdempotencyClaim::InProgress) => {
            return respond(
                StatusCode::CONFLICT,
                &Notice::new(
                    "Платёж создаётся",
                    "Форма уже отправлена. Подождите несколько секунд и обновите страницу.",
                )
                .alert(),
            );
        }
        Ok(IdempotencyClaim::Mismatch) => {
            return supplier_choice_page(&services, StatusCode::UNPROCESSABLE_ENTITY);
        }
        Err(error) => {
            tracing::error!(%error, "pay form idempotency");
            return pages::temporary_failure();
        }
    };
    let created = public::create(&services, &client_ip, &draft, claimed).await;
    // Only a created payment keeps the key; after a refusal the form is shown again with a new
    // attempt id.
    let ending = match &created {
        Ok(payment) => Ending::Answered(StoredResponse {
            status: 201,
            body: serde_json::json!({ "payment_id": payment.id }).to_string(),
        }),
        // A refusal wrote nothing: the form is shown again with a new attempt id.
        Err(
            ServiceError::Rule(_)
            | ServiceError::Card(_)
            | ServiceError::Limited(_)
            | ServiceError::Refund(_),
        ) => Ending::RefusedUnwritten,
        // A failure may have left the payment half made: sending the form again resumes it.
        Err(_) => Ending::Interrupted,
    };
    keys::end(&services, owner, &key, ending).await;
    match created {
        Ok(payment) => after_creation(&services, &payment),
        Err(ServiceError::Limited(limited)) => retry_page(limited.retry_after_secs()),
        Err(error) => match explain(&error) {
            Some(explained) => pay_form(
                StatusCode::UNPROCESSABLE_ENTITY,
                supplier,
                &form,
                &expected,
                &[explained],
            ),
            None => {
                tracing::error!(%error, "public payment failed");
                pages::temporary_failure()
            }
        },
    }
}

/// Where the browser goes once its payment exists; it keeps the way back to the acquirer's page.
fn after_creation(services: &Services, payment: &crate::store::PaymentRecord) -> Response {
    let mut response = match payments::next_action(payment) {
        // The person who sent this form created the payment: they get the unlocking link.
        Some(NextAction::Redirect { url }) if url == services.continue_url(payment.id) => {
            Redirect::to(&services.continue_link(payment.id)).into_response()
        }
        Some(action) => go_to_acquirer(action),
        // Declined or unreachable at once: the result page says so.
        None => Redirect::to(&format!("/pay/result/{}", payment.id)).into_response(),
    };
    set_cookie(&mut response, pages::resume_cookie(services, payment.id));
    response
}

#[derive(Debug, Deserialize)]
pub struct ResultQuery {
    /// How many times the page has reloaded itself so far (anything unreadable counts as 0).
    check: Option<String>,
}

/// `GET /pay/result/{id}`: the outcome from oplata's own record.
pub async fn result(
    State(services): State<Arc<Services>>,
    Path(id): Path<String>,
    Query(query): Query<ResultQuery>,
    headers: HeaderMap,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return pages::not_found();
    };
    match public::get(&services, id).await {
        Ok(payment) => {
            let visit = super::result_page::Visit {
                check: query.check.and_then(|c| c.parse().ok()).unwrap_or(0),
                now: time::OffsetDateTime::now_utc(),
                resume: pages::resume_link(&services, &headers, &payment),
            };
            pages::payment_result(&services, &payment, visit)
        }
        Err(ServiceError::NotFound) => pages::not_found(),
        Err(error) => {
            tracing::error!(%error, "result page");
            pages::temporary_failure()
        }
    }
}

#[derive(Deserialize)]
pub struct ContinueQuery {
    #[serde(default)]
    token: String,
}

impl std::fmt::Debug for ContinueQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContinueQuery(<token>)")
    }
}

/// `GET /pay/{id}/continue?token=…`: the acquirer's form of a payment carrying personal data.
pub async fn continue_payment(
    State(services): State<Arc<Services>>,
    Path(id): Path<String>,
    Query(query): Query<ContinueQuery>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return pages::not_found();
    };
    match payments::continue_to_acquirer(&services, id, &query.token).await {
        Ok(action) => {
            let mut response = go_to_acquirer(action);
            // The form carries personal data: keep it out of every cache.
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(ServiceError::NotFound) => pages::not_found(),
        Err(error) => {
            tracing::error!(%error, "continue to the acquirer");
            pages::temporary_failure()
        }
    }
}
