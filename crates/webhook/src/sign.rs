//! Standard Webhooks `v1` signatures: HMAC-SHA256 over `{id}.{timestamp}.{body}`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Version tag of symmetric signatures in the `webhook-signature` header.
pub const VERSION: &str = "v1";
/// Tolerance the reference libraries use for `webhook-timestamp`.
pub const DEFAULT_TOLERANCE_S: i64 = 5 * 60;

/// Why a delivery did not verify. Carries no key material and no body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("webhook-id is empty")]
    MissingId,
    #[error("webhook-timestamp is not an integer number of seconds")]
    InvalidTimestamp,
    #[error("webhook-timestamp is too old")]
    TimestampTooOld,
    #[error("webhook-timestamp is too far in the future")]
    TimestampTooNew,
    #[error("webhook-signature is empty")]
    MissingSignature,
    #[error("no matching v1 signature")]
    NoMatchingSignature,
}

/// The MAC state after absorbing the signed content. Fed piecewise so the
/// body (which may be large) is never copied into a concatenated buffer.
fn mac(secret: &Secret, msg_id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed), so this cannot
    // fail; `Secret` also guarantees 24..=64 bytes.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    m.update(msg_id.as_bytes());
    m.update(b".");
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// `v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">`.
///
/// The caller must choose `msg_id` without `.` (the spec's rule against
/// ambiguous signed content); patchline's ids are generated, not tenant input.
#[must_use]
pub fn signature(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, msg_id, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("{VERSION},{}", STANDARD.encode(tag))
}

/// The `webhook-signature` header: one signature per secret, space
/// separated. During a secret rotation both the new and the old secret sign,
/// so receivers that still hold the old one keep verifying.
#[must_use]
pub fn header_value(secrets: &[&Secret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| signature(s, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Verifies a received webhook as a Standard Webhooks consumer would.
///
/// `timestamp` is the raw `webhook-timestamp` header; it must be within
/// `tolerance_s` of `now` in either direction (replay protection, clock skew).
/// Any `v1,` entry of the space-separated `signature_header` that matches any
/// of `secrets` is enough; other versions (e.g. `v1a`) and malformed entries
/// are skipped, as the reference libraries do. The comparison is constant
/// time (`hmac`'s `verify_slice`), so a receiver built on this is no timing
/// oracle.
pub fn verify(
    secrets: &[&Secret],
    msg_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance_s: i64,
) -> Result<(), VerifyError> {
    if msg_id.is_empty() {
        return Err(VerifyError::MissingId);
    }
    let ts = parse_timestamp(timestamp)?;
    // Saturating: a hostile timestamp near i64::MIN/MAX must not overflow.
    if now.saturating_sub(ts) > tolerance_s {
        return Err(VerifyError::TimestampTooOld);
    }
    if ts.saturating_sub(now) > tolerance_s {
        return Err(VerifyError::TimestampTooNew);
    }
    if signature_header.trim().is_empty() {
        return Err(VerifyError::MissingSignature);
    }
    // The signed timestamp is the header text itself (already proven to be a
    // plain integer), exactly what the sender signed.
    let macs: Vec<HmacSha256> = secrets
        .iter()
        .map(|s| mac(s, msg_id, timestamp, body))
        .collect();
    for entry in signature_header.split(' ').filter(|e| !e.is_empty()) {
        let Some((version, b64)) = entry.split_once(',') else {
            continue;
        };
        if version != VERSION {
            continue;
        }
        let Ok(candidate) = STANDARD.decode(b64) else {
            continue;
        };
        if macs
            .iter()
            .any(|m| m.clone().verify_slice(&candidate).is_ok())
        {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatchingSignature)
}

/// Integer seconds only: the spec says "integer unix timestamp". Leading `+`,
/// spaces, fractions and leading zeros are refused so that the text that was
/// signed has exactly one spelling.
fn parse_timestamp(s: &str) -> Result<i64, VerifyError> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return Err(VerifyError::InvalidTimestamp);
    }
    s.parse::<i64>().map_err(|_| VerifyError::InvalidTimestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::parse(s).unwrap()
    }

    // Known-answer vector from the reference Python library's tests,
    // standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py
    // (`test_sign_function`).
    const PY_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const PY_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const PY_TS: i64 = 1_614_265_330;
    const PY_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const PY_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    // Known-answer vector from the reference Rust library's tests,
    // standard-webhooks/standard-webhooks, libraries/rust/src/lib.rs (`test_sign`).
    const RS_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const RS_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const RS_TS: i64 = 1_649_367_553;
    const RS_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const RS_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn known_answer_python_reference() {
        assert_eq!(signature(&secret(PY_SECRET), PY_ID, PY_TS, PY_BODY), PY_SIG);
    }

    #[test]
    fn known_answer_rust_reference() {
        assert_eq!(signature(&secret(RS_SECRET), RS_ID, RS_TS, RS_BODY), RS_SIG);
    }

    #[test]
    fn verifies_reference_vectors() {
        let s = secret(PY_SECRET);
        let ts = PY_TS.to_string();
        assert_eq!(
            verify(&[&s], PY_ID, &ts, PY_SIG, PY_BODY, PY_TS, 300),
            Ok(())
        );
        // The reference suite's "invalid signature" differs in one character.
        let bad = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
        assert_eq!(
            verify(&[&s], PY_ID, &ts, bad, PY_BODY, PY_TS, 300),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn multi_signature_header_as_in_reference_suite() {
        let s = secret(PY_SECRET);
        let ts = PY_TS.to_string();
        let header = [
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            PY_SIG,
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        ]
        .join(" ");
        assert_eq!(
            verify(&[&s], PY_ID, &ts, &header, PY_BODY, PY_TS, 300),
            Ok(())
        );
        // Same list without the valid one.
        let without = header.replace(PY_SIG, "v1a,garbage");
        assert_eq!(
            verify(&[&s], PY_ID, &ts, &without, PY_BODY, PY_TS, 300),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn rotation_both_secrets_sign_and_either_verifies() {
        let old = Secret::generate();
        let new = Secret::generate();
        let h = header_value(&[&new, &old], "msg_1", 1000, b"{}");
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature(&new, "msg_1", 1000, b"{}"));
        assert_eq!(parts[1], signature(&old, "msg_1", 1000, b"{}"));
        for s in [&old, &new] {
            assert_eq!(verify(&[s], "msg_1", "1000", &h, b"{}", 1000, 300), Ok(()));
        }
        let other = Secret::generate();
        assert_eq!(
            verify(&[&other], "msg_1", "1000", &h, b"{}", 1000, 300),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(header_value(&[], "msg_1", 1000, b"{}"), "");
    }

    #[test]
    fn tampering_is_detected() {
        let s = Secret::generate();
        let sig = signature(&s, "msg_1", 1000, b"{\"a\":1}");
        let ok = |id: &str, ts: &str, body: &[u8]| verify(&[&s], id, ts, &sig, body, 1000, 300);
        assert_eq!(ok("msg_1", "1000", b"{\"a\":1}"), Ok(()));
        assert!(ok("msg_2", "1000", b"{\"a\":1}").is_err());
        assert!(ok("msg_1", "1001", b"{\"a\":1}").is_err());
        assert!(ok("msg_1", "1000", b"{\"a\":2}").is_err());
        assert!(ok("msg_1", "1000", b"{\"a\": 1}").is_err());
    }

    #[test]
    fn timestamp_tolerance_both_ways() {
        let s = Secret::generate();
        let check = |ts: i64, now: i64| {
            let sig = signature(&s, "m", ts, b"x");
            verify(&[&s], "m", &ts.to_string(), &sig, b"x", now, 300)
        };
        assert_eq!(check(1000, 1300), Ok(()));
        assert_eq!(check(1000, 700), Ok(()));
        assert_eq!(check(1000, 1301), Err(VerifyError::TimestampTooOld));
        assert_eq!(check(1000, 699), Err(VerifyError::TimestampTooNew));
        assert_eq!(check(i64::MIN, i64::MAX), Err(VerifyError::TimestampTooOld));
        assert_eq!(check(i64::MAX, i64::MIN), Err(VerifyError::TimestampTooNew));
    }

    #[test]
    fn malformed_headers_are_refused_without_panicking() {
        let s = Secret::generate();
        let sig = signature(&s, "m", 1000, b"x");
        for ts in [
            "",
            "hello",
            "1000.0",
            " 1000",
            "+1000",
            "01000",
            "-",
            "99999999999999999999",
        ] {
            assert_eq!(
                verify(&[&s], "m", ts, &sig, b"x", 1000, 300),
                Err(VerifyError::InvalidTimestamp),
                "{ts:?}"
            );
        }
        assert_eq!(
            verify(&[&s], "", "1000", &sig, b"x", 1000, 300),
            Err(VerifyError::MissingId)
        );
        assert_eq!(
            verify(&[&s], "m", "1000", "  ", b"x", 1000, 300),
            Err(VerifyError::MissingSignature)
        );
        for header in ["v1", "v1,", "v1,!!!", ",,,", "v1,AAAA v1,====", "\u{0}"] {
            assert_eq!(
                verify(&[&s], "m", "1000", header, b"x", 1000, 300),
                Err(VerifyError::NoMatchingSignature),
                "{header:?}"
            );
        }
        // Doubled spaces between entries are tolerated.
        let spaced = format!("v1,AAAA  {sig}");
        assert_eq!(verify(&[&s], "m", "1000", &spaced, b"x", 1000, 300), Ok(()));
        // A truncated (prefix) signature must not match.
        let truncated = &sig[..sig.len() - 8];
        assert!(verify(&[&s], "m", "1000", truncated, b"x", 1000, 300).is_err());
        assert_eq!(
            verify(&[], "m", "1000", &sig, b"x", 1000, 300),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn negative_timestamps_sign_as_written() {
        let s = Secret::generate();
        let sig = signature(&s, "m", -5, b"x");
        assert_eq!(verify(&[&s], "m", "-5", &sig, b"x", 0, 300), Ok(()));
    }

    #[test]
    fn non_utf8_body_is_signed_as_bytes() {
        let s = Secret::generate();
        let body = [0xff, 0xfe, 0x00];
        let sig = signature(&s, "m", 1, &body);
        assert_eq!(verify(&[&s], "m", "1", &sig, &body, 1, 300), Ok(()));
    }
}
