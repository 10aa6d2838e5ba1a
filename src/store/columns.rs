//! The column lists of the rows the store reads back whole, as literals so that `concat!` can
//! put them into statements (a statement stays one `&'static str`, prepared once per connection).

/// The columns of a [`super::PaymentRecord`].
macro_rules! payment_columns {
    () => {
        "id, client_id, user_id, supplier_id, account_number, amount_minor, currency, description, \
         email, phone, return_url, acquirer, acquirer_order_id, status, next_action, failure_code, \
         failure_message, review_reason, review_detail, acquirer_operation_id, payment_method, saved_card_id, \
         save_card, next_check_at, check_attempts, action_deadline, submitted_at, created_at, \
         updated_at"
    };
}

/// The columns of a [`super::RefundRecord`].
macro_rules! refund_columns {
    () => {
        "id, payment_id, amount_minor, status, reason, operator, client_id, acquirer_refund_id, \
         failure_code, failure_message, next_check_at, check_attempts, review_reason, review_detail, resolved_by, \
         resolution_note, created_at, updated_at"
    };
}

/// The columns of a [`super::SavedCardRecord`].
macro_rules! card_columns {
    () => {
        "id, client_id, user_id, payment_type, acquirer, binding_payment_id, key_id, \
         token_ciphertext, brand, last4, exp_month, exp_year, status, created_at, last_used_at, \
         ended_at"
    };
}

/// The columns of a [`super::SmsMessageRecord`].
macro_rules! sms_columns {
    () => {
        "message_id, phone, local_day, account_day, kind, supplier_id, account_number, payment_id, \
         state, reply, late_reply, received_at, created_at, updated_at, payee"
    };
}

/// The columns of a [`super::OperatorRecord`].
macro_rules! operator_columns {
    () => {
        "id, login, name, password_hash, created_at, disabled_at, totp_key_id, totp_secret, \
         totp_last_step"
    };
}
