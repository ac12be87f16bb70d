//! Turns what payment processors send about disputes into one normalised [`Notification`].
//!
//! Each processor has its own wire format and its own signature scheme; this crate is the only place that
//! knows them. It is pure on purpose (no I/O, no async, no HTTP types): the HTTP layer hands in header values
//! and raw body bytes plus the current time, so every scheme can be tested offline against published vectors.
//!
//! Always verify before parsing: the `verify_*` functions authenticate the raw bytes, the `parse_*`
//! functions assume they are authentic and only decide what the message means.

mod common;
pub mod model;
pub mod signature;

pub mod adyen;
pub mod alert;
pub mod braintree;
pub mod paypal;
pub mod stripe;

pub use adyen::{
    adyen_hmac, adyen_item_signature, adyen_raw_items, adyen_signing_string, parse_adyen, verify_adyen_item,
    verify_adyen_notification, verify_adyen_raw_body,
};
pub use alert::{ALERT_SIGNATURE_HEADER, parse_alert, sign_alert, verify_alert};
pub use braintree::{
    BraintreeCredentials, braintree_challenge_valid, braintree_hexdigest, braintree_payload,
    braintree_verify_challenge, parse_braintree, parse_braintree_xml, sign_braintree, verify_braintree,
};
pub use model::{Notification, NotificationKind, ParseError, Parsed, escape_nul};
pub use paypal::{PaypalTransmission, parse_paypal, paypal_cert_url_allowed, verify_paypal};
pub use signature::{DEFAULT_TOLERANCE, SignatureError};
pub use stripe::{parse_stripe, sign_stripe, verify_stripe};
