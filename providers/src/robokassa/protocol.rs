//! What Robokassa's protocol says about notifications and browser returns before the merchant
//! account is known (see [`crate::Protocol`]).

use crate::{AcquirerKind, CallbackAnswer, CallbackError, NotificationPath, Protocol, RawCallback};

/// ResultURL (POST form, or GET, as set in the shop's cabinet).
pub const RESULT_PATH: &str = "/callbacks/robokassa/result";
/// SuccessURL and FailURL, where the customer's browser comes back (set in the shop's cabinet;
/// oplata's return route for this acquirer).
pub const SUCCESS_PATH: &str = "/return/robokassa/success";
pub const FAIL_PATH: &str = "/return/robokassa/fail";

#[derive(Debug, Clone, Copy)]
pub struct RobokassaProtocol;

pub static PROTOCOL: RobokassaProtocol = RobokassaProtocol;

impl Protocol for RobokassaProtocol {
    fn kind(&self) -> AcquirerKind {
        AcquirerKind::Robokassa
    }

    fn callback_order_id(&self, raw: &RawCallback) -> Result<String, CallbackError> {
        super::wire::ResultNotice::parse(raw).map(|notice| notice.inv_id)
    }

    fn callback_accepted(&self, raw: &RawCallback) -> CallbackAnswer {
        match super::wire::ResultNotice::parse(raw) {
            Ok(notice) => super::wire::result_answer_ok(&notice.inv_id),
            Err(error) => super::wire::result_answer_rejected(&error),
        }
    }

    fn callback_rejected(&self, _raw: &RawCallback, error: &CallbackError) -> CallbackAnswer {
        super::wire::result_answer_rejected(error)
    }

    fn notification_paths(&self) -> &'static [NotificationPath] {
        &[NotificationPath {
            path: RESULT_PATH,
            post: true,
        }]
    }

    fn return_order_id(&self, raw: &RawCallback) -> Option<String> {
        let params = raw.params();
        let mut ids = params.iter().filter(|(k, _)| k == "InvId").map(|(_, v)| v);
        let id = ids.next()?;
        let plain = ids.next().is_none()
            && !id.is_empty()
            && id.len() <= 18
            && id.bytes().all(|b| b.is_ascii_digit());
        plain.then(|| id.clone())
    }
}
