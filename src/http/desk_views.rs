//! What the desk's pages show (`templates/desk_*.html`), as plain data already in words: the
//! handlers fill these, the templates lay them out and escape every value.

use askama::Template;
use uuid::Uuid;

use crate::store::SessionRecord;

/// A page that says one thing (not found, a stale form).
#[derive(Template)]
#[template(path = "desk_notice.html")]
pub(super) struct DeskNotice<'a> {
    pub title: &'a str,
    pub session: Option<&'a SessionRecord>,
    pub message: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "desk_login.html")]
pub(super) struct LoginPage<'a> {
    pub title: &'a str,
    pub session: Option<&'a SessionRecord>,
    pub message: Option<&'a str>,
    pub token: &'a str,
}

/// One input with its label and, after a refusal, the message beside it.
pub(super) struct DeskInput {
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
    /// The input's own attributes: fixed text, written as is.
    pub attributes: &'static str,
    pub max_length: Option<usize>,
    pub placeholder: Option<String>,
    pub error: Option<String>,
    /// The first field in error takes the focus.
    pub focus: bool,
    pub hint: Option<&'static str>,
}

impl DeskInput {
    pub fn new(name: &'static str, label: &'static str, value: &str) -> Self {
        DeskInput {
            name,
            label,
            value: value.to_owned(),
            attributes: "",
            max_length: None,
            placeholder: None,
            error: None,
            focus: false,
            hint: None,
        }
    }
}

#[derive(Template)]
#[template(path = "desk_search.html")]
pub(super) struct SearchPage<'a> {
    pub title: &'a str,
    pub session: Option<&'a SessionRecord>,
    pub inputs: Vec<DeskInput>,
    /// Each status's value, its words, and whether it is the one asked for.
    pub statuses: Vec<(&'static str, &'static str, bool)>,
    pub status_error: Option<&'static str>,
    pub status_focus: bool,
    pub results: SearchResults,
}

pub(super) enum SearchResults {
    NotAsked,
    Found {
        rows: Vec<PaymentRow>,
        /// The next page's query string, when there is more.
        next: Option<String>,
    },
    Unavailable,
    Refused {
        /// What is wrong with the next page's link, when that is what was refused.
        page_link: Option<&'static str>,
    },
}

pub(super) struct PaymentRow {
    pub id: Uuid,
    pub created: String,
    pub supplier: String,
    pub account: String,
    pub amount: String,
    pub status: &'static str,
}

/// An item on the review list, with the form that settles it.
pub(super) struct ReviewItem {
    pub anchor: String,
    pub action: String,
    pub title: String,
    pub advice: &'static str,
    /// Each outcome's value and words.
    pub outcomes: &'static [(&'static str, &'static str)],
}

pub(super) struct TimelineLine {
    pub when: String,
    pub status: &'static str,
    pub who: String,
    pub what: String,
}

pub(super) struct RefundLine {
    /// Asked for by oplata itself (a payment without 3-D Secure), not by an operator.
    pub automatic: bool,
    pub when: String,
    pub amount: String,
    pub status: String,
    pub operator: String,
    pub reason: String,
}

/// The refund form on a payment's page (`templates/desk_refund_form.html`).
pub(super) struct RefundFormView {
    pub payment_id: Uuid,
    pub csrf: String,
    pub attempt: Uuid,
    pub remaining: String,
    /// A refusal that belongs to no one field.
    pub general: Option<String>,
    pub inputs: Vec<DeskInput>,
}

#[derive(Template)]
#[template(path = "desk_payment.html")]
pub(super) struct PaymentPage<'a> {
    pub title: String,
    pub session: Option<&'a SessionRecord>,
    pub csrf: &'a str,
    /// A sentence at the top, and whether it reports success.
    pub message: Option<(&'a str, bool)>,
    pub payment_review: Option<ReviewItem>,
    pub status: &'static str,
    pub status_words: &'static str,
    pub amount: String,
    pub supplier: String,
    pub account: String,
    pub acquirer: &'static str,
    pub order: String,
    pub created: String,
    pub timeline: Vec<TimelineLine>,
    pub refunds: Vec<RefundLine>,
    pub refund_reviews: Vec<ReviewItem>,
    pub refund_form: Option<RefundFormView>,
}

#[derive(Template)]
#[template(path = "desk_refund_confirm.html")]
pub(super) struct RefundConfirmation<'a> {
    pub title: &'a str,
    pub session: Option<&'a SessionRecord>,
    pub csrf: &'a str,
    pub payment_id: Uuid,
    pub attempt: Uuid,
    pub supplier: &'a str,
    pub account: &'a str,
    pub customer: String,
    pub paid: String,
    /// The amount confirmed: all that remains when the field was left empty.
    pub amount: String,
    /// The amount as typed, for «Изменить».
    pub typed_amount: &'a str,
    pub left: String,
    pub reason: &'a str,
}

#[derive(Template)]
#[template(path = "desk_review.html")]
pub(super) struct ReviewPage<'a> {
    pub title: &'a str,
    pub session: Option<&'a SessionRecord>,
    pub payments: Vec<PaymentInReview>,
    pub refunds: Vec<RefundInReview>,
    pub awaiting: Vec<RefundAwaiting>,
    pub dead: Vec<DeadWebhook>,
    pub settled: Vec<SettledItem>,
}

pub(super) struct PaymentInReview {
    pub id: Uuid,
    pub supplier: String,
    pub amount: String,
    pub status: &'static str,
    pub why: String,
    pub advice: &'static str,
    pub when: String,
}

pub(super) struct RefundInReview {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub amount: String,
    pub why: String,
    pub when: String,
}

pub(super) struct RefundAwaiting {
    pub payment_id: Uuid,
    pub amount: String,
    pub operator: String,
    pub when: String,
}

pub(super) struct DeadWebhook {
    pub event_id: String,
    pub endpoint: String,
    pub attempts: String,
    pub error: String,
}

/// A payment whose review item (or a refund's) a person settled lately.
pub(super) struct SettledItem {
    pub payment_id: Uuid,
    pub supplier: String,
    pub amount: String,
    pub status: &'static str,
    pub when: String,
}
