//! Standard Webhooks signing secrets: random keys shown as `whsec_<base64>`.

use std::fmt;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

/// Prefix that marks a symmetric Standard Webhooks secret.
pub const PREFIX: &str = "whsec_";
/// Bytes drawn by [`Secret::generate`]: the spec's minimum (192 bits).
pub const GENERATED_LEN: usize = 24;
/// The spec asks for at least 24 bytes …
pub const MIN_LEN: usize = 24;
/// … and at most 64 (512 bits).
pub const MAX_LEN: usize = 64;

/// Standard alphabet, padding optional: the reference Python library also
/// accepts unpadded secrets, and a secret pasted without its `=` is still the
/// same key.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a secret string was refused. Never carries the secret itself, so the
/// error can be logged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("webhook secret must start with `whsec_`")]
    MissingPrefix,
    #[error("webhook secret is not valid base64")]
    Base64,
    #[error("webhook secret has {0} bytes; Standard Webhooks asks for 24 to 64")]
    Length(usize),
}

/// The raw key of one endpoint. `Debug` prints only its length so that a
/// stray `{:?}` in a log line cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

impl Secret {
    /// A fresh secret of [`GENERATED_LEN`] bytes from the operating system's
    /// random source.
    ///
    /// # Panics
    /// Only if the OS random source fails, which leaves no safe way to make a
    /// key (a weak key would be worse than stopping).
    #[must_use]
    pub fn generate() -> Secret {
        let mut key = vec![0u8; GENERATED_LEN];
        getrandom::fill(&mut key).expect("the OS random number generator failed");
        Secret { key }
    }

    /// Parses `whsec_<base64>` (padding optional).
    pub fn parse(s: &str) -> Result<Secret, SecretError> {
        let b64 = s
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = LENIENT.decode(b64).map_err(|_| SecretError::Base64)?;
        Secret::from_bytes(key)
    }

    /// Wraps raw key bytes, checking the length the spec asks for.
    pub fn from_bytes(key: Vec<u8>) -> Result<Secret, SecretError> {
        if (MIN_LEN..=MAX_LEN).contains(&key.len()) {
            Ok(Secret { key })
        } else {
            Err(SecretError::Length(key.len()))
        }
    }

    /// The raw key, for HMAC and for storage.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.key
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<redacted {} bytes>)", self.key.len())
    }
}

/// The form handed to tenants and stored: `whsec_` + padded standard base64,
/// as the reference libraries print it.
impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", STANDARD.encode(&self.key))
    }
}

impl std::str::FromStr for Secret {
    type Err = SecretError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Secret::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_round_trips_and_differs() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_eq!(a.as_bytes().len(), 24);
        assert_ne!(a, b);
        let shown = a.to_string();
        assert!(shown.starts_with("whsec_"));
        assert_eq!(shown.len(), 6 + 32);
        assert_eq!(Secret::parse(&shown).unwrap(), a);
    }

    #[test]
    fn debug_hides_the_key() {
        let s = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("MfKQ"), "{dbg}");
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn parse_accepts_unpadded_and_refuses_bad_input() {
        // 25 bytes -> 36 chars padded ("==") -> 34 unpadded.
        let key = vec![7u8; 25];
        let padded = Secret::from_bytes(key.clone()).unwrap().to_string();
        assert!(padded.ends_with("=="));
        let unpadded = padded.trim_end_matches('=');
        assert_eq!(Secret::parse(unpadded).unwrap().as_bytes(), &key[..]);

        assert_eq!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::MissingPrefix)
        );
        assert_eq!(Secret::parse("whsec_not base64!"), Err(SecretError::Base64));
        assert_eq!(Secret::parse("whsec_AAAA"), Err(SecretError::Length(3)));
        assert_eq!(Secret::parse("whsec_"), Err(SecretError::Length(0)));
        assert!(Secret::from_bytes(vec![0; 65]).is_err());
        assert!(Secret::from_bytes(vec![0; 64]).is_ok());
    }

    #[test]
    fn errors_do_not_echo_the_input() {
        let e = Secret::parse("whsec_sup3rs3cr3t!!").unwrap_err();
        assert!(!e.to_string().contains("sup3r"));
    }
}
