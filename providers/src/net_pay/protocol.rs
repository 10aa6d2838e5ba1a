//! What NetPay's protocol says about notifications and browser returns before the merchant
//! account is known (see [`crate::Protocol`]).

use crate::{AcquirerKind, CallbackAnswer, CallbackError, NotificationPath, Protocol, RawCallback};

/// Where NetPay sends its notifications, always a GET (registered with NetPay; sent in test
/// mode).
pub const NOTIFICATION_PATH: &str = "/callbacks/net_pay/notification";

#[derive(Debug, Clone, Copy)]
pub struct NetPayProtocol;

pub static PROTOCOL: NetPayProtocol = NetPayProtocol;

impl Protocol for NetPayProtocol {
    fn kind(&self) -> AcquirerKind {
        AcquirerKind::NetPay
    }

    fn callback_order_id(&self, raw: &RawCallback) -> Result<String, CallbackError> {
        super::wire::Notification::parse(&raw.query).map(|notification| notification.order_id)
    }

    fn callback_accepted(&self, raw: &RawCallback) -> CallbackAnswer {
        super::notification_answer(raw, None)
    }

    fn callback_rejected(&self, raw: &RawCallback, error: &CallbackError) -> CallbackAnswer {
        super::notification_answer(raw, Some(&error.to_string()))
    }

    fn notification_paths(&self) -> &'static [NotificationPath] {
        &[NotificationPath {
            path: NOTIFICATION_PATH,
            post: false,
        }]
    }

    // oplata puts `order=<its order id>` into the return URLs it gives this acquirer.
    fn return_order_id(&self, raw: &RawCallback) -> Option<String> {
        crate::order_from_return(raw)
    }
}
