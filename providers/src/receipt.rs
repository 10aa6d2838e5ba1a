//! Fiscal receipts (54-FZ): what the customer bought, in one acquirer-neutral shape.
//!
//! A utility supplier must hand the customer a cash receipt for every payment. The acquirers'
//! cashboxes make it from data the merchant sends (Robokassa's `Receipt`, NetPay's
//! `cashbox_data`, Moneta's `INVENTORY`/`CUSTOMER` attributes); each adapter writes this value
//! in its acquirer's format. Amounts in every format are written from [`Amount`]'s exact text,
//! never through a float.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Amount;

/// The seller's tax system (`sno`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaxSystem {
    Osn,
    UsnIncome,
    UsnIncomeOutcome,
    Esn,
    Patent,
}

impl TaxSystem {
    pub fn as_str(self) -> &'static str {
        match self {
            TaxSystem::Osn => "osn",
            TaxSystem::UsnIncome => "usn_income",
            TaxSystem::UsnIncomeOutcome => "usn_income_outcome",
            TaxSystem::Esn => "esn",
            TaxSystem::Patent => "patent",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            TaxSystem::Osn,
            TaxSystem::UsnIncome,
            TaxSystem::UsnIncomeOutcome,
            TaxSystem::Esn,
            TaxSystem::Patent,
        ]
        .into_iter()
        .find(|t| t.as_str() == text)
    }
}

/// The VAT rate of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vat {
    /// Not subject to VAT («без НДС»).
    None,
    Vat0,
    Vat10,
    Vat20,
    /// Calculated 10/110.
    Vat110,
    /// Calculated 20/120.
    Vat120,
}

impl Vat {
    /// The name Robokassa and NetPay (ATOL) use.
    pub fn as_str(self) -> &'static str {
        match self {
            Vat::None => "none",
            Vat::Vat0 => "vat0",
            Vat::Vat10 => "vat10",
            Vat::Vat20 => "vat20",
            Vat::Vat110 => "vat110",
            Vat::Vat120 => "vat120",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Vat::None,
            Vat::Vat0,
            Vat::Vat10,
            Vat::Vat20,
            Vat::Vat110,
            Vat::Vat120,
        ]
        .into_iter()
        .find(|v| v.as_str() == text)
    }

    /// Moneta's (PayAnyWay cashbox) `vatTag`.
    pub fn moneta_tag(self) -> &'static str {
        match self {
            Vat::Vat20 => "1102",
            Vat::Vat10 => "1103",
            Vat::Vat0 => "1104",
            Vat::None => "1105",
            Vat::Vat120 => "1106",
            Vat::Vat110 => "1107",
        }
    }

    pub fn from_moneta_tag(tag: &str) -> Option<Self> {
        [
            Vat::None,
            Vat::Vat0,
            Vat::Vat10,
            Vat::Vat20,
            Vat::Vat110,
            Vat::Vat120,
        ]
        .into_iter()
        .find(|v| v.moneta_tag() == tag)
    }
}

/// The settlement method of an item (tag 1214).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettlementMethod {
    FullPrepayment,
    Prepayment,
    Advance,
    FullPayment,
}

impl SettlementMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SettlementMethod::FullPrepayment => "full_prepayment",
            SettlementMethod::Prepayment => "prepayment",
            SettlementMethod::Advance => "advance",
            SettlementMethod::FullPayment => "full_payment",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            SettlementMethod::FullPrepayment,
            SettlementMethod::Prepayment,
            SettlementMethod::Advance,
            SettlementMethod::FullPayment,
        ]
        .into_iter()
        .find(|m| m.as_str() == text)
    }
}

/// What is sold (tag 1212).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Commodity,
    Service,
    Payment,
    Another,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Commodity => "commodity",
            SubjectKind::Service => "service",
            SubjectKind::Payment => "payment",
            SubjectKind::Another => "another",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            SubjectKind::Commodity,
            SubjectKind::Service,
            SubjectKind::Payment,
            SubjectKind::Another,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// Where the cashbox sends the receipt: one of the two the law allows.
#[derive(Clone, PartialEq, Eq)]
pub enum ReceiptContact {
    Email(String),
    /// `+7XXXXXXXXXX`.
    Phone(String),
}

impl ReceiptContact {
    pub fn as_str(&self) -> &str {
        match self {
            ReceiptContact::Email(text) | ReceiptContact::Phone(text) => text,
        }
    }
}

impl fmt::Debug for ReceiptContact {
    // A customer's address is personal data: logs see only which kind it is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiptContact::Email(_) => f.write_str("Email(<hidden>)"),
            ReceiptContact::Phone(_) => f.write_str("Phone(<hidden>)"),
        }
    }
}

/// One line of the receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptItem {
    pub name: String,
    pub quantity: u32,
    /// The price of one unit.
    pub price: Amount,
    pub vat: Vat,
    pub method: SettlementMethod,
    pub subject: SubjectKind,
}

impl ReceiptItem {
    /// `price × quantity`, or `None` past the largest amount.
    pub fn sum(&self) -> Option<Amount> {
        let minor = self.price.minor().checked_mul(i64::from(self.quantity))?;
        Amount::from_minor(minor).ok()
    }

    /// The name cut to an acquirer's limit, on a character boundary.
    fn name_within(&self, max_chars: usize) -> String {
        self.name.chars().take(max_chars).collect()
    }
}

/// A receipt for one payment or one refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub tax_system: TaxSystem,
    pub contact: ReceiptContact,
    pub items: Vec<ReceiptItem>,
    /// The seller's ИНН (10 or 12 digits).
    pub seller_inn: String,
    /// Where the sale took place: the portal's host.
    pub payment_address: String,
}

/// Longest item name Robokassa takes.
pub const ROBOKASSA_NAME_MAX: usize = 128;
/// Longest item name NetPay's ATOL helper takes.
pub const NET_PAY_NAME_MAX: usize = 64;
/// Most items a receipt may carry (Robokassa and ATOL alike).
pub const MAX_ITEMS: usize = 100;

/// JSON string literal: quotes, backslashes and control characters escaped.
fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

impl Receipt {
    /// The sum of the items, which must equal the amount paid or refunded.
    pub fn total(&self) -> Option<Amount> {
        let minor = self
            .items
            .iter()
            .try_fold(0i64, |acc, item| acc.checked_add(item.sum()?.minor()))?;
        Amount::from_minor(minor).ok()
    }

    /// Robokassa's `Receipt` JSON (compact, before URL encoding). Sums are JSON numbers written
    /// with two decimals.
    pub fn robokassa_json(&self) -> String {
        let items: Vec<String> = self
            .items
            .iter()
            .map(|item| {
                format!(
                    "{{\"name\":{},\"quantity\":{},\"sum\":{},\"tax\":\"{}\",\"payment_method\":\"{}\",\"payment_object\":\"{}\"}}",
                    json_string(&item.name_within(ROBOKASSA_NAME_MAX)),
                    item.quantity,
                    item.sum().map(|s| s.to_string()).unwrap_or_default(),
                    item.vat.as_str(),
                    item.method.as_str(),
                    item.subject.as_str(),
                )
            })
            .collect();
        format!(
            "{{\"sno\":\"{}\",\"items\":[{}]}}",
            self.tax_system.as_str(),
            items.join(",")
        )
    }

    /// The Refund API's `InvoiceItems` array: the lines of what is given back.
    pub fn robokassa_invoice_items(&self) -> String {
        let items: Vec<String> = self
            .items
            .iter()
            .map(|item| {
                format!(
                    "{{\"Name\":{},\"Quantity\":{},\"Cost\":{},\"Tax\":\"{}\",\"PaymentMethod\":\"{}\",\"PaymentObject\":\"{}\"}}",
                    json_string(&item.name_within(ROBOKASSA_NAME_MAX)),
                    item.quantity,
                    item.price,
                    item.vat.as_str(),
                    item.method.as_str(),
                    item.subject.as_str(),
                )
            })
            .collect();
        format!("[{}]", items.join(","))
    }

    /// NetPay's `cashbox_data` (the ATOL shape of its official helper).
    pub fn net_pay_json(&self) -> String {
        let items: Vec<String> = self
            .items
            .iter()
            .map(|item| {
                format!(
                    "{{\"name\":{},\"price\":\"{}\",\"quantity\":\"{}.000\",\"sum\":\"{}\",\"tax\":\"{}\",\"payment_method\":\"{}\",\"payment_object\":\"{}\"}}",
                    json_string(&item.name_within(NET_PAY_NAME_MAX)),
                    item.price,
                    item.quantity,
                    item.sum().map(|s| s.to_string()).unwrap_or_default(),
                    item.vat.as_str(),
                    item.method.as_str(),
                    item.subject.as_str(),
                )
            })
            .collect();
        let (email, phone) = match &self.contact {
            ReceiptContact::Email(email) => (email.as_str(), ""),
            ReceiptContact::Phone(phone) => ("", phone.as_str()),
        };
        let total = self.total().map(|t| t.to_string()).unwrap_or_default();
        format!(
            "{{\"receipt\":{{\"attributes\":{{\"email\":{},\"phone\":{},\"sno\":\"{}\"}},\"items\":[{}],\"payments\":[{{\"sum\":\"{total}\",\"type\":1}}],\"total\":\"{total}\"}},\"service\":{{\"callback_url\":\"\",\"inn\":{},\"payment_address\":{}}},\"timestamp\":\"\"}}",
            json_string(email),
            json_string(phone),
            self.tax_system.as_str(),
            items.join(","),
            json_string(&self.seller_inn),
            json_string(&self.payment_address),
        )
    }

    /// Moneta's `INVENTORY` attribute value.
    pub fn moneta_inventory(&self) -> String {
        let items: Vec<String> = self
            .items
            .iter()
            .map(|item| {
                format!(
                    "{{\"name\":{},\"price\":\"{}\",\"quantity\":\"{}.00\",\"vatTag\":\"{}\",\"pm\":\"{}\",\"po\":\"{}\"}}",
                    json_string(&item.name_within(ROBOKASSA_NAME_MAX)),
                    item.price,
                    item.quantity,
                    item.vat.moneta_tag(),
                    item.method.as_str(),
                    item.subject.as_str(),
                )
            })
            .collect();
        format!("[{}]", items.join(","))
    }
}

/// Why a receipt an acquirer received is refused (the simulators' checks, in their customers'
/// language).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReceiptRefusal(pub String);

/// A receipt line as a cashbox reads it back, amounts still as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadItem {
    pub name: String,
    pub quantity: String,
    /// The line's total.
    pub sum: Amount,
    pub vat: Vat,
}

/// Reads a decimal JSON number or string without a float; a count is `1`, `1.00` or `"1.000"`.
fn raw_amount(raw: &serde_json::value::RawValue, what: &str) -> Result<Amount, ReceiptRefusal> {
    let text = raw.get().trim().trim_matches('"');
    let value: rust_decimal::Decimal = text
        .parse()
        .map_err(|_| ReceiptRefusal(format!("{what}: не число")))?;
    Amount::from_decimal(value.normalize())
        .map_err(|_| ReceiptRefusal(format!("{what}: неверная сумма")))
}

fn raw_quantity(
    raw: &serde_json::value::RawValue,
) -> Result<rust_decimal::Decimal, ReceiptRefusal> {
    let text = raw.get().trim().trim_matches('"');
    text.parse::<rust_decimal::Decimal>()
        .ok()
        .filter(|q| *q > rust_decimal::Decimal::ZERO)
        .ok_or_else(|| ReceiptRefusal("quantity: должно быть положительное число".into()))
}

fn check_lines(items: &[ReadItem], expected_total: Amount) -> Result<(), ReceiptRefusal> {
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(ReceiptRefusal(format!(
            "в чеке должно быть от 1 до {MAX_ITEMS} позиций"
        )));
    }
    let total: i64 = items.iter().map(|i| i.sum.minor()).sum();
    if total != expected_total.minor() {
        return Err(ReceiptRefusal(format!(
            "сумма позиций чека {} не равна сумме платежа {expected_total}",
            Amount::from_minor(total)
                .map(|a| a.to_string())
                .unwrap_or_else(|_| total.to_string())
        )));
    }
    Ok(())
}

fn check_name(name: &str, max: usize) -> Result<(), ReceiptRefusal> {
    let chars = name.chars().count();
    if chars == 0 || chars > max || name.trim().is_empty() {
        return Err(ReceiptRefusal(format!(
            "наименование позиции должно быть от 1 до {max} символов"
        )));
    }
    Ok(())
}

fn sum_of(price: Amount, quantity: rust_decimal::Decimal) -> Result<Amount, ReceiptRefusal> {
    price
        .to_decimal()
        .checked_mul(quantity)
        .map(|d| d.round_dp(2))
        .and_then(|d| Amount::from_decimal(d.normalize()).ok())
        .ok_or_else(|| ReceiptRefusal("неверная сумма позиции".into()))
}

#[derive(Deserialize)]
struct RobokassaReceiptIn<'a> {
    sno: Option<String>,
    #[serde(borrow)]
    items: Vec<RobokassaItemIn<'a>>,
}

/// A Robokassa receipt line as read, before its checks (a refund's `InvoiceItems` line is read
/// into the same shape, without `sum`).
#[derive(Deserialize)]
struct RobokassaItemIn<'a> {
    name: Option<String>,
    #[serde(borrow)]
    quantity: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    sum: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    cost: Option<&'a serde_json::value::RawValue>,
    tax: Option<String>,
    payment_method: Option<String>,
    payment_object: Option<String>,
}

/// How a format names its fields, for the refusals.
struct FieldWords {
    format: &'static str,
    name: &'static str,
    quantity: &'static str,
    sum: &'static str,
    cost: &'static str,
    tax: &'static str,
    method_and_object: &'static str,
}

const RECEIPT_WORDS: FieldWords = FieldWords {
    format: "Receipt",
    name: "name",
    quantity: "quantity",
    sum: "sum",
    cost: "cost",
    tax: "неизвестная ставка НДС (tax)",
    method_and_object: "payment_method или payment_object",
};

const INVOICE_ITEMS_WORDS: FieldWords = FieldWords {
    format: "InvoiceItems",
    name: "Name",
    quantity: "Quantity",
    sum: "Cost",
    cost: "Cost",
    tax: "неизвестная ставка Tax",
    method_and_object: "PaymentMethod или PaymentObject",
};

/// The checks Robokassa makes of one line: a name, a positive quantity, a sum (or a unit cost),
/// a known rate, method and subject.
fn read_robokassa_line(
    line: &RobokassaItemIn<'_>,
    words: &FieldWords,
) -> Result<ReadItem, ReceiptRefusal> {
    let missing = |field: &str| ReceiptRefusal(format!("{}: у позиции нет {field}", words.format));
    let name = line.name.clone().ok_or_else(|| missing(words.name))?;
    check_name(&name, ROBOKASSA_NAME_MAX)?;
    let quantity = raw_quantity(line.quantity.ok_or_else(|| missing(words.quantity))?)?;
    let sum = match (line.sum, line.cost) {
        (Some(sum), _) => raw_amount(sum, words.sum)?,
        (None, Some(cost)) => sum_of(raw_amount(cost, words.cost)?, quantity)?,
        (None, None) => return Err(missing(words.sum)),
    };
    let vat = line
        .tax
        .as_deref()
        .and_then(Vat::parse)
        .ok_or_else(|| ReceiptRefusal(format!("{}: {}", words.format, words.tax)))?;
    let known_method = line
        .payment_method
        .as_deref()
        .and_then(SettlementMethod::parse)
        .is_some();
    let known_subject = line
        .payment_object
        .as_deref()
        .and_then(SubjectKind::parse)
        .is_some();
    if !known_method || !known_subject {
        return Err(ReceiptRefusal(format!(
            "{}: неверный {}",
            words.format, words.method_and_object
        )));
    }
    Ok(ReadItem {
        name,
        quantity: quantity.normalize().to_string(),
        sum,
        vat,
    })
}

/// Robokassa's checks of a `Receipt` (already URL-decoded JSON) against the invoice's `OutSum`.
pub fn read_robokassa(json: &str, out_sum: Amount) -> Result<Vec<ReadItem>, ReceiptRefusal> {
    let parsed: RobokassaReceiptIn<'_> =
        serde_json::from_str(json).map_err(|_| ReceiptRefusal("Receipt: неверный JSON".into()))?;
    if let Some(sno) = &parsed.sno
        && TaxSystem::parse(sno).is_none()
    {
        return Err(ReceiptRefusal(format!(
            "Receipt: неизвестная система налогообложения {sno}"
        )));
    }
    let items = parsed
        .items
        .iter()
        .map(|line| read_robokassa_line(line, &RECEIPT_WORDS))
        .collect::<Result<Vec<_>, _>>()?;
    check_lines(&items, out_sum)?;
    Ok(items)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RobokassaRefundItemIn<'a> {
    name: Option<String>,
    #[serde(borrow)]
    quantity: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    cost: Option<&'a serde_json::value::RawValue>,
    tax: Option<String>,
    payment_method: Option<String>,
    payment_object: Option<String>,
}

/// Robokassa's checks of a refund's `InvoiceItems` (the array's JSON) against the refund sum:
/// each line is a unit `Cost` times its `Quantity`.
pub fn read_robokassa_refund_items(
    json: &str,
    refund_sum: Amount,
) -> Result<Vec<ReadItem>, ReceiptRefusal> {
    let parsed: Vec<RobokassaRefundItemIn<'_>> = serde_json::from_str(json)
        .map_err(|_| ReceiptRefusal("InvoiceItems: неверный JSON".into()))?;
    let items = parsed
        .into_iter()
        .map(|item| {
            let line = RobokassaItemIn {
                name: item.name,
                quantity: item.quantity,
                sum: None,
                cost: item.cost,
                tax: item.tax,
                payment_method: item.payment_method,
                payment_object: item.payment_object,
            };
            read_robokassa_line(&line, &INVOICE_ITEMS_WORDS)
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_lines(&items, refund_sum)?;
    Ok(items)
}

#[derive(Deserialize)]
struct NetPayCashboxIn {
    receipt: NetPayReceiptIn,
    service: NetPayServiceIn,
}

#[derive(Deserialize)]
struct NetPayReceiptIn {
    attributes: NetPayAttributesIn,
    items: Vec<NetPayItemIn>,
    payments: Vec<NetPayPaymentIn>,
    total: String,
}

#[derive(Deserialize)]
struct NetPayAttributesIn {
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
}

#[derive(Deserialize)]
struct NetPayItemIn {
    name: String,
    price: String,
    quantity: String,
    sum: String,
    tax: String,
}

#[derive(Deserialize)]
struct NetPayPaymentIn {
    sum: String,
    #[serde(rename = "type")]
    kind: u8,
}

#[derive(Deserialize)]
struct NetPayServiceIn {
    inn: String,
    payment_address: String,
}

fn text_amount(text: &str, what: &str) -> Result<Amount, ReceiptRefusal> {
    text.parse::<rust_decimal::Decimal>()
        .ok()
        .and_then(|d| Amount::from_decimal(d.normalize()).ok())
        .ok_or_else(|| ReceiptRefusal(format!("cashbox_data: {what} — неверная сумма")))
}

/// The checks NetPay's cashbox makes of `cashbox_data` against the payment's amount.
pub fn read_net_pay(json: &str, amount: Amount) -> Result<Vec<ReadItem>, ReceiptRefusal> {
    let parsed: NetPayCashboxIn = serde_json::from_str(json)
        .map_err(|_| ReceiptRefusal("cashbox_data: неверный JSON".into()))?;
    let attributes = &parsed.receipt.attributes;
    if attributes.email.is_empty() && attributes.phone.is_empty() {
        return Err(ReceiptRefusal(
            "cashbox_data: нужен e-mail или телефон покупателя".into(),
        ));
    }
    let inn = &parsed.service.inn;
    if !matches!(inn.len(), 10 | 12) || !inn.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ReceiptRefusal(
            "cashbox_data: ИНН должен быть из 10 или 12 цифр".into(),
        ));
    }
    if parsed.service.payment_address.trim().is_empty() {
        return Err(ReceiptRefusal(
            "cashbox_data: не указано место расчётов".into(),
        ));
    }
    let mut items = Vec::new();
    for item in &parsed.receipt.items {
        check_name(&item.name, NET_PAY_NAME_MAX)?;
        let price = text_amount(&item.price, "price")?;
        let quantity: rust_decimal::Decimal = item
            .quantity
            .parse()
            .ok()
            .filter(|q| *q > rust_decimal::Decimal::ZERO)
            .ok_or_else(|| ReceiptRefusal("cashbox_data: неверное количество".into()))?;
        let sum = text_amount(&item.sum, "sum")?;
        if sum_of(price, quantity)? != sum {
            return Err(ReceiptRefusal(
                "cashbox_data: sum позиции не равна price × quantity".into(),
            ));
        }
        let vat = Vat::parse(&item.tax)
            .ok_or_else(|| ReceiptRefusal("cashbox_data: неизвестная ставка НДС".into()))?;
        items.push(ReadItem {
            name: item.name.clone(),
            quantity: quantity.normalize().to_string(),
            sum,
            vat,
        });
    }
    check_lines(&items, amount)?;
    let total = text_amount(&parsed.receipt.total, "total")?;
    let paid: i64 = parsed
        .receipt
        .payments
        .iter()
        .map(|p| text_amount(&p.sum, "payments.sum").map(|a| a.minor()))
        .sum::<Result<i64, _>>()?;
    if total != amount
        || paid != amount.minor()
        || parsed.receipt.payments.iter().any(|p| p.kind != 1)
    {
        return Err(ReceiptRefusal(
            "cashbox_data: total и payments должны быть равны сумме платежа, оплата электронная (type 1)"
                .into(),
        ));
    }
    Ok(items)
}

#[derive(Deserialize)]
struct MonetaItemIn {
    name: String,
    price: String,
    quantity: String,
    #[serde(rename = "vatTag")]
    vat_tag: String,
    pm: String,
    po: String,
}

/// The checks the PayAnyWay cashbox makes of the `INVENTORY` and `CUSTOMER` attributes.
pub fn read_moneta(
    inventory: &str,
    customer: Option<&str>,
    amount: Amount,
) -> Result<Vec<ReadItem>, ReceiptRefusal> {
    if customer.is_none_or(|c| c.trim().is_empty()) {
        return Err(ReceiptRefusal(
            "CUSTOMER: нужен e-mail или телефон покупателя".into(),
        ));
    }
    let parsed: Vec<MonetaItemIn> = serde_json::from_str(inventory)
        .map_err(|_| ReceiptRefusal("INVENTORY: неверный JSON".into()))?;
    let mut items = Vec::new();
    for item in &parsed {
        check_name(&item.name, ROBOKASSA_NAME_MAX)?;
        let price = text_amount(&item.price, "price")?;
        let quantity: rust_decimal::Decimal = item
            .quantity
            .parse()
            .ok()
            .filter(|q| *q > rust_decimal::Decimal::ZERO)
            .ok_or_else(|| ReceiptRefusal("INVENTORY: неверное количество".into()))?;
        let vat = Vat::from_moneta_tag(&item.vat_tag)
            .ok_or_else(|| ReceiptRefusal("INVENTORY: неизвестный vatTag".into()))?;
        if SettlementMethod::parse(&item.pm).is_none() || SubjectKind::parse(&item.po).is_none() {
            return Err(ReceiptRefusal("INVENTORY: неверный pm или po".into()));
        }
        items.push(ReadItem {
            name: item.name.clone(),
            quantity: quantity.normalize().to_string(),
            sum: sum_of(price, quantity)?,
            vat,
        });
    }
    check_lines(&items, amount)?;
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(amount: &str, contact: ReceiptContact) -> Receipt {
        Receipt {
            tax_system: TaxSystem::Osn,
            contact,
            items: vec![ReceiptItem {
                name: "Электроэнергия, лицевой счёт \"1234567890\"".into(),
                quantity: 1,
                price: Amount::parse_api(amount).expect("an amount"),
                vat: Vat::Vat20,
                method: SettlementMethod::FullPayment,
                subject: SubjectKind::Service,
            }],
            seller_inn: "7701234567".into(),
            payment_address: "pay.example.ru".into(),
        }
    }

    fn amount(text: &str) -> Amount {
        Amount::parse_api(text).expect("an amount")
    }

    #[test]
    fn every_format_reads_back_to_the_amount_it_was_made_for() {
        let r = receipt("1500.50", ReceiptContact::Email("ivan@example.ru".into()));
        assert_eq!(
            r.robokassa_json(),
            "{\"sno\":\"osn\",\"items\":[{\"name\":\"Электроэнергия, лицевой счёт \\\"1234567890\\\"\",\"quantity\":1,\"sum\":1500.50,\"tax\":\"vat20\",\"payment_method\":\"full_payment\",\"payment_object\":\"service\"}]}"
        );
        assert_eq!(
            read_robokassa(&r.robokassa_json(), amount("1500.50")).map(|items| items.len()),
            Ok(1)
        );
        assert!(read_net_pay(&r.net_pay_json(), amount("1500.50")).is_ok());
        assert!(
            read_moneta(
                &r.moneta_inventory(),
                Some("ivan@example.ru"),
                amount("1500.50")
            )
            .is_ok()
        );
        assert!(
            read_robokassa_refund_items(&r.robokassa_invoice_items(), amount("1500.50")).is_ok()
        );
    }

    #[test]
    fn a_receipt_for_another_sum_is_refused_by_every_cashbox() {
        let r = receipt("1500.00", ReceiptContact::Phone("+79001234567".into()));
        let other = amount("1499.99");
        assert!(read_robokassa(&r.robokassa_json(), other).is_err());
        assert!(read_net_pay(&r.net_pay_json(), other).is_err());
        assert!(read_moneta(&r.moneta_inventory(), Some("+79001234567"), other).is_err());
        assert!(read_robokassa_refund_items(&r.robokassa_invoice_items(), other).is_err());
    }

    #[test]
    fn a_receipt_without_a_customer_contact_or_with_an_unknown_rate_is_refused() {
        let r = receipt("10.00", ReceiptContact::Email(String::new()));
        assert!(read_net_pay(&r.net_pay_json(), amount("10.00")).is_err());
        assert!(read_moneta(&r.moneta_inventory(), None, amount("10.00")).is_err());
        let unknown_rate = r.robokassa_json().replace("vat20", "vat99");
        assert!(read_robokassa(&unknown_rate, amount("10.00")).is_err());
    }

    #[test]
    fn cost_times_quantity_is_read_as_robokassa_allows_and_amounts_never_pass_through_a_float() {
        let json = r#"{"items":[{"name":"a","quantity":3,"cost":0.10,"tax":"none","payment_method":"full_payment","payment_object":"service"},
                                 {"name":"b","quantity":1,"sum":9999999.70,"tax":"none","payment_method":"full_payment","payment_object":"service"}]}"#;
        assert_eq!(
            read_robokassa(json, amount("10000000.00")).map(|items| items.len()),
            Ok(2)
        );
    }

    #[test]
    fn long_names_are_cut_to_each_acquirers_limit() {
        let mut r = receipt("1.00", ReceiptContact::Email("a@b.ru".into()));
        r.items[0].name = "Ж".repeat(200);
        assert!(read_robokassa(&r.robokassa_json(), amount("1.00")).is_ok());
        assert!(read_net_pay(&r.net_pay_json(), amount("1.00")).is_ok());
    }

    #[test]
    fn a_contact_is_never_printed() {
        let debug = format!(
            "{:?}",
            receipt("1.00", ReceiptContact::Email("ivan@example.ru".into()))
        );
        assert!(!debug.contains("ivan@"));
    }
}
