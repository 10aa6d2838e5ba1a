//! What Moneta's protocol says about notifications and browser returns before the merchant
//! account is known (see [`crate::Protocol`]).

use crate::{AcquirerKind, CallbackAnswer, CallbackError, NotificationPath, Protocol, RawCallback};

/// The Pay URL (after payment) and the Check URL (before it), set in the account's settings;
/// GET or POST as configured there.
pub const PAY_PATH: &str = "/callbacks/moneta/pay";
pub const CHECK_PATH: &str = "/callbacks/moneta/check";

#[derive(Debug, Clone, Copy)]
pub struct MonetaProtocol;

pub static PROTOCOL: MonetaProtocol = MonetaProtocol;

impl Protocol for MonetaProtocol {
    fn kind(&self) -> AcquirerKind {
        AcquirerKind::Moneta
    }

    fn callback_order_id(&self, raw: &RawCallback) -> Result<String, CallbackError> {
        super::wire::PayNotice::parse(raw).map(|notice| notice.transaction_id)
    }

    fn callback_accepted(&self, _raw: &RawCallback) -> CallbackAnswer {
        CallbackAnswer {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: "SUCCESS".to_owned(),
        }
    }

    fn callback_rejected(&self, _raw: &RawCallback, _error: &CallbackError) -> CallbackAnswer {
        CallbackAnswer {
            status: 400,
            content_type: "text/plain; charset=utf-8",
            body: "FAIL".to_owned(),
        }
    }

    fn notification_paths(&self) -> &'static [NotificationPath] {
        &[
            NotificationPath {
                path: PAY_PATH,
                post: true,
            },
            NotificationPath {
                path: CHECK_PATH,
                post: true,
            },
        ]
    }

    // oplata puts `order=<its order id>` into the return URLs it gives this acquirer.
    fn return_order_id(&self, raw: &RawCallback) -> Option<String> {
        crate::order_from_return(raw)
    }
}
