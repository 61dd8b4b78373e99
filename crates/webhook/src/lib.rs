//! Webhook delivery for patchline, following Standard Webhooks
//! (<https://www.standardwebhooks.com/>): `whsec_` secrets, `v1` HMAC-SHA256
//! signatures, a retry schedule, an SSRF guard for tenant-supplied URLs, the
//! CloudEvents 1.0 body and an HTTP sender that classifies each attempt.
//!
//! The crate holds no state about subscriptions or queues: the server stores
//! those and calls in here for the parts that must be exactly right.

pub mod cloudevents;
pub mod retry;
pub mod secret;
pub mod send;
pub mod sign;
pub mod ssrf;

pub use retry::Schedule;
pub use secret::Secret;
pub use send::{Attempt, Outcome, Sender, SenderConfig};
pub use ssrf::{GuardedResolver, Policy};

/// Header names of Standard Webhooks, lower case as HTTP/2 requires.
pub const HEADER_ID: &str = "webhook-id";
/// Unix seconds of this attempt (not of the event), signed with the body.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Space-separated `v1,<base64>` signatures, one per active secret.
pub const HEADER_SIGNATURE: &str = "webhook-signature";
