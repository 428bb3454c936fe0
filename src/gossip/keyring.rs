//! AES-256-GCM keyring: encrypt with the primary key, try every key on
//! decrypt (so keys can be rotated across a running cluster).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rand::RngCore;

use super::error::ConfigError;

/// Nonce length of AES-GCM.
pub(crate) const NONCE_LEN: usize = 12;
/// Authentication tag length of AES-GCM.
pub(crate) const TAG_LEN: usize = 16;

/// A set of 32-byte keys; the first is the primary, used to encrypt.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<([u8; 32], Aes256Gcm)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keyring")
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn to_key(key: &[u8]) -> Result<[u8; 32], ConfigError> {
    key.try_into()
        .map_err(|_| ConfigError::KeyLength(key.len()))
}

impl Keyring {
    /// A keyring holding only `primary` (32 bytes).
    pub fn new(primary: &[u8]) -> Result<Self, ConfigError> {
        let k = to_key(primary)?;
        Ok(Keyring {
            keys: vec![(k, Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&k)))],
        })
    }

    /// Adds a secondary key (accepted on decrypt, not used to encrypt).
    pub fn add_key(&mut self, key: &[u8]) -> Result<(), ConfigError> {
        let k = to_key(key)?;
        if !self.keys.iter().any(|(x, _)| *x == k) {
            self.keys
                .push((k, Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&k))));
        }
        Ok(())
    }

    /// Makes `key` the primary, adding it if needed.
    pub fn use_key(&mut self, key: &[u8]) -> Result<(), ConfigError> {
        self.add_key(key)?;
        let k = to_key(key)?;
        if let Some(i) = self.keys.iter().position(|(x, _)| *x == k) {
            let e = self.keys.remove(i);
            self.keys.insert(0, e);
        }
        Ok(())
    }

    /// Removes a secondary key; the primary cannot be removed (returns
    /// false, as does an unknown key).
    pub fn remove_key(&mut self, key: &[u8]) -> bool {
        match self.keys.iter().position(|(x, _)| x.as_slice() == key) {
            Some(0) | None => false,
            Some(i) => {
                self.keys.remove(i);
                true
            }
        }
    }

    /// Number of keys (primary included).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a keyring has a primary key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Bytes an encrypted envelope adds to its content.
    pub(crate) fn overhead() -> usize {
        NONCE_LEN + TAG_LEN
    }

    /// `nonce || ciphertext+tag` of `plain`, authenticated with `aad`.
    pub(crate) fn seal(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let (_, cipher) = &self.keys[0];
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        // Encryption with a valid key and a 12-byte nonce cannot fail for
        // inputs far below AES-GCM's 64 GiB limit; an empty result is never
        // accepted by `open`.
        if let Ok(ct) = cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad }) {
            out.extend_from_slice(&ct);
        }
        out
    }

    /// Opens `nonce || ciphertext+tag` with any key of the ring.
    pub(crate) fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.keys.iter().find_map(|(_, c)| {
            c.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
                .ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_rotation() {
        let k1 = [1u8; 32];
        let k2 = [2u8; 32];
        let mut a = Keyring::new(&k1).unwrap();
        let b = Keyring::new(&k2).unwrap();
        let sealed = a.seal(b"hello", b"hdr");
        assert_eq!(a.open(&sealed, b"hdr").unwrap(), b"hello");
        assert!(a.open(&sealed, b"other").is_none());
        assert!(b.open(&sealed, b"hdr").is_none());
        // b learns k1 as a secondary: decrypts a's traffic.
        let mut b2 = b.clone();
        b2.add_key(&k1).unwrap();
        assert_eq!(b2.open(&sealed, b"hdr").unwrap(), b"hello");
        // a rotates to k2; b (k2 only) can read it.
        a.use_key(&k2).unwrap();
        let sealed2 = a.seal(b"x", b"");
        assert_eq!(b.open(&sealed2, b"").unwrap(), b"x");
        assert!(!a.remove_key(&k2), "primary cannot be removed");
        assert!(a.remove_key(&k1));
        assert_eq!(a.len(), 1);
        assert!(matches!(
            Keyring::new(&[0u8; 16]),
            Err(ConfigError::KeyLength(16))
        ));
    }
}
