//! The rules of paying a bill, free of HTTP and SQL: money, suppliers, the payment state machine
//! and the validation of a new payment.

pub mod audit;
pub mod cards;
pub mod money;
pub mod new_payment;
pub mod payer;
pub mod payment;
pub mod public_limits;
pub mod receipt;
pub mod refunds;
pub mod sms;
pub mod supplier;
