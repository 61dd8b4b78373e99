//! Bearer tokens: generated random, stored as SHA-256 only, resolved to a
//! principal on every request. The admin token comes from
//! `PATCHLINE_ADMIN_TOKEN` and is only ever held as its hash too.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use patchline_core::{Actor, TenantId, TenantIdx};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Tenant {
        idx: TenantIdx,
        id: TenantId,
        publisher: bool,
        /// The id of the token used (streams opened with it close when it
        /// is revoked; tokens it mints are revoked with it).
        token: String,
    },
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match self {
            Principal::Admin => Actor::Admin,
            Principal::Tenant { id, .. } => Actor::Tenant(id.clone()),
        }
    }

    /// `None` for the admin (who may act on every tenant).
    pub fn tenant(&self) -> Option<TenantIdx> {
        match self {
            Principal::Admin => None,
            Principal::Tenant { idx, .. } => Some(*idx),
        }
    }

    /// How the delivery view renders notices for this caller.
    pub fn reader(&self) -> patchline_delivery::Reader {
        match self {
            Principal::Admin => patchline_delivery::Reader::Admin,
            Principal::Tenant { idx, .. } => patchline_delivery::Reader::Tenant(*idx),
        }
    }

    /// The id of the tenant token used; `None` for the admin.
    pub fn token_id(&self) -> Option<&str> {
        match self {
            Principal::Admin => None,
            Principal::Tenant { token, .. } => Some(token),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin)
    }

    pub fn is_publisher(&self) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Tenant { publisher, .. } => *publisher,
        }
    }
}

/// Hex SHA-256 of a token.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS RNG failing is not a condition a server can work around.
    if getrandom::fill(&mut buf).is_err() {
        panic!("the operating system's random number generator failed");
    }
    buf
}

/// A new token: `plt_` and 32 random bytes, base64url; with its id.
pub fn new_token() -> (String, String) {
    let token = format!(
        "plt_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    );
    let id = format!("tok_{}", hex(&random_bytes::<8>()));
    (id, token)
}

/// A random id with a prefix (`sub_…`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex(&random_bytes::<10>()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two hex digests without an early exit.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Principal, ApiError> {
        authenticate_fresh(state, &parts.headers).await
    }
}

/// [`authenticate`]; on a node of a deployment, a token this node does not
/// know yet is looked up again once the node has read the change log
/// (a token made on another node a moment ago is accepted, not answered
/// 401 for up to half a second: found by a new user). An unknown token
/// waits for that, at most a second, before its 401.
pub async fn authenticate_fresh(
    state: &Arc<AppState>,
    headers: &axum::http::HeaderMap,
) -> Result<Principal, ApiError> {
    let first = authenticate(state, headers);
    if first.is_ok() || state.config.bus.is_none() || !has_bearer(headers) {
        return first;
    }
    // Two catch-ups after this moment: the first may have begun before the
    // token was committed elsewhere.
    let mut rounds = state.catch_ups.subscribe();
    let from = *rounds.borrow_and_update();
    let wait = async {
        for round in 1..=2 {
            state.follow_kick.notify_one();
            let _ = rounds.wait_for(|n| *n >= from + round).await;
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), wait).await;
    authenticate(state, headers)
}

fn has_bearer(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| h.len() > 7 && h[..7].eq_ignore_ascii_case("bearer "))
}

/// The caller of a request, from its bearer token (401 without a valid
/// one). The body reader calls it before reading any body, so that nobody
/// without a token makes the server buffer anything.
pub fn authenticate(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Principal, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::unauthorized)?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 512)
        .ok_or_else(ApiError::unauthorized)?;
    let hash = hash_token(token);
    if let Some(admin) = &state.config.admin_token_hash
        && same(admin, &hash)
    {
        return Ok(Principal::Admin);
    }
    // The snapshot of live tokens, not the engine: a long write (a
    // fan-out) does not hold up requests that only read.
    let c = state
        .credentials
        .get(&hash)
        .ok_or_else(ApiError::unauthorized)?;
    Ok(Principal::Tenant {
        idx: c.tenant,
        id: c.tenant_id,
        publisher: c.publisher,
        token: c.token_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let (id1, t1) = new_token();
        let (id2, t2) = new_token();
        assert_ne!(t1, t2);
        assert_ne!(id1, id2);
        assert!(t1.starts_with("plt_") && t1.len() > 40);
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(same(&hash_token(&t1), &hash_token(&t1)));
        assert!(!same(&hash_token(&t1), &hash_token(&t2)));
    }
}
