//! Webhook signing secrets at rest. Without an operator key they are stored
//! as they are, protected by the 0600 database file; with one
//! (`PATCHLINE_SECRET_KEY` or a key file) every subscription's secrets are
//! sealed with ChaCha20-Poly1305 under it, bound to the subscription id, and
//! tagged with the key's id so that a rotation can open what the previous
//! key sealed. At start the store reseals everything under the current key.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use sha2::{Digest, Sha256};

use crate::StoreError;

const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 12;

/// One 32-byte key and its id (the first 8 hex digits of its SHA-256).
#[derive(Clone)]
struct Key {
    id: String,
    cipher: ChaCha20Poly1305,
}

impl Key {
    fn parse(text: &str) -> Result<Key, String> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|e| e.to_string())?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
                .map_err(|_| {
                    "a key is 32 bytes written as 64 hex digits or in base64".to_string()
                })?
        };
        if bytes.len() != 32 {
            return Err(format!(
                "a key is 32 bytes; this one has {} (64 hex digits or base64)",
                bytes.len()
            ));
        }
        let digest = Sha256::digest(&bytes);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        let cipher = ChaCha20Poly1305::new_from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok(Key { id, cipher })
    }
}

/// The operator's keys: the current one seals, every one opens.
#[derive(Clone, Default)]
pub struct SecretKeys {
    keys: Vec<Key>,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only: the keys themselves never reach a log.
        f.debug_list()
            .entries(self.keys.iter().map(|k| &k.id))
            .finish()
    }
}

impl SecretKeys {
    /// No key: secrets are stored as they are.
    pub fn none() -> SecretKeys {
        SecretKeys::default()
    }

    /// The current key first, then previous ones (still able to open what
    /// they sealed).
    pub fn new<'a>(
        current: &str,
        previous: impl IntoIterator<Item = &'a str>,
    ) -> Result<SecretKeys, String> {
        let mut keys = vec![Key::parse(current)?];
        for p in previous {
            if !p.trim().is_empty() {
                keys.push(Key::parse(p)?);
            }
        }
        Ok(SecretKeys { keys })
    }

    /// A key file: one key a line, the current one first; blank lines and
    /// lines starting with `#` are skipped.
    pub fn from_file_text(text: &str) -> Result<SecretKeys, String> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let current = lines.next().ok_or("the key file holds no key")?;
        SecretKeys::new(current, lines)
    }

    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The id of the sealing key.
    pub fn current_id(&self) -> Option<&str> {
        self.keys.first().map(|k| k.id.as_str())
    }

    /// Seals `plain` (bound to `context`, the subscription id) under the
    /// current key, or returns it as it is when there is no key.
    pub fn seal(&self, plain: &str, context: &str) -> Result<String, StoreError> {
        let Some(key) = self.keys.first() else {
            return Ok(plain.to_string());
        };
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| StoreError::Secrets(format!("no random nonce: {e}")))?;
        let sealed = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Secrets("cannot seal a secret".into()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(format!(
            "{PREFIX}{}:{}",
            key.id,
            base64::engine::general_purpose::STANDARD.encode(blob)
        ))
    }

    /// Opens a stored value; answers the plain text and whether it should
    /// be sealed again (stored in clear while a key is set, or sealed under
    /// a previous key).
    pub fn open(&self, stored: &str, context: &str) -> Result<(String, bool), StoreError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok((stored.to_string(), self.is_enabled()));
        };
        let (id, data) = rest
            .split_once(':')
            .ok_or_else(|| StoreError::Corrupt("a sealed secret has no key id".into()))?;
        let Some((pos, key)) = self.keys.iter().enumerate().find(|(_, k)| k.id == id) else {
            return Err(StoreError::Secrets(format!(
                "webhook secrets are sealed under key {id}, which was not given \
                 (set PATCHLINE_SECRET_KEY, or list it as a previous key)"
            )));
        };
        let blob = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| StoreError::Corrupt("a sealed secret is not base64".into()))?;
        if blob.len() < NONCE_LEN {
            return Err(StoreError::Corrupt("a sealed secret is too short".into()));
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let plain = key
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| {
                StoreError::Secrets(format!(
                    "a webhook secret sealed under key {id} does not open (altered or moved)"
                ))
            })?;
        let plain = String::from_utf8(plain)
            .map_err(|_| StoreError::Corrupt("a sealed secret is not UTF-8".into()))?;
        Ok((plain, pos != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    #[test]
    fn seal_open_rotate() {
        let one = SecretKeys::new(K1, []).unwrap();
        let sealed = one.seal("[\"whsec_abc\"]", "sub_1").unwrap();
        assert!(sealed.starts_with("enc:v1:") && !sealed.contains("whsec"));
        assert_eq!(
            one.open(&sealed, "sub_1").unwrap(),
            ("[\"whsec_abc\"]".into(), false)
        );
        assert!(one.open(&sealed, "sub_2").is_err(), "bound to its row");
        let rotated = SecretKeys::new(K2, [K1]).unwrap();
        assert_eq!(
            rotated.open(&sealed, "sub_1").unwrap(),
            ("[\"whsec_abc\"]".into(), true)
        );
        let only_new = SecretKeys::new(K2, []).unwrap();
        assert!(matches!(
            only_new.open(&sealed, "sub_1"),
            Err(StoreError::Secrets(_))
        ));
        assert_eq!(
            SecretKeys::none().open("plain", "x").unwrap(),
            ("plain".into(), false)
        );
        assert!(SecretKeys::new("short", []).is_err());
        let file = SecretKeys::from_file_text(&format!("# keys\n{K2}\n\n{K1}\n")).unwrap();
        assert_eq!(file.current_id(), rotated.current_id());
        assert!(!format!("{file:?}").contains(K1));
    }
}
