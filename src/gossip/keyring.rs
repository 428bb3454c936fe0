//! AES-GCM keyring: encrypt with the primary key, try every key on
//! decrypt (so keys can be rotated across a running cluster). Keys are 16,
//! 24 or 32 bytes (AES-128/192/256, as Serf's `-encrypt`); 32 is the
//! recommended size.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce};
use rand::RngCore;

use super::error::{ConfigError, GossipError};

/// Nonce length of AES-GCM.
pub(crate) const NONCE_LEN: usize = 12;
/// Authentication tag length of AES-GCM.
pub(crate) const TAG_LEN: usize = 16;

/// One key and its cipher.
#[derive(Clone)]
enum Cipher {
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<AesGcm<Aes192, U12>>),
    Aes256(Box<Aes256Gcm>),
}

impl Cipher {
    fn new(key: &[u8]) -> Result<Cipher, ConfigError> {
        let bad = |_| ConfigError::KeyLength(key.len());
        Ok(match key.len() {
            16 => Cipher::Aes128(Box::new(Aes128Gcm::new_from_slice(key).map_err(bad)?)),
            24 => Cipher::Aes192(Box::new(
                AesGcm::<Aes192, U12>::new_from_slice(key).map_err(bad)?,
            )),
            32 => Cipher::Aes256(Box::new(Aes256Gcm::new_from_slice(key).map_err(bad)?)),
            n => return Err(ConfigError::KeyLength(n)),
        })
    }

    fn encrypt(&self, nonce: &[u8; NONCE_LEN], p: Payload<'_, '_>) -> Option<Vec<u8>> {
        let n = Nonce::from_slice(nonce);
        match self {
            Cipher::Aes128(c) => c.encrypt(n, p).ok(),
            Cipher::Aes192(c) => c.encrypt(n, p).ok(),
            Cipher::Aes256(c) => c.encrypt(n, p).ok(),
        }
    }

    fn decrypt(&self, nonce: &[u8], p: Payload<'_, '_>) -> Option<Vec<u8>> {
        let n = Nonce::from_slice(nonce);
        match self {
            Cipher::Aes128(c) => c.decrypt(n, p).ok(),
            Cipher::Aes192(c) => c.decrypt(n, p).ok(),
            Cipher::Aes256(c) => c.decrypt(n, p).ok(),
        }
    }
}

/// A set of keys; the first is the primary, used to encrypt.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(Vec<u8>, Cipher)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keyring")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Keyring {
    /// A keyring holding only `primary` (16, 24 or 32 bytes).
    pub fn new(primary: &[u8]) -> Result<Self, ConfigError> {
        Ok(Keyring {
            keys: vec![(primary.to_vec(), Cipher::new(primary)?)],
        })
    }

    /// Adds a secondary key (accepted on decrypt, not used to encrypt).
    pub fn add_key(&mut self, key: &[u8]) -> Result<(), ConfigError> {
        let cipher = Cipher::new(key)?;
        if !self.keys.iter().any(|(x, _)| x.as_slice() == key) {
            self.keys.push((key.to_vec(), cipher));
        }
        Ok(())
    }

    /// The primary key's bytes (to derive other credentials from the
    /// cluster secret; never log them).
    pub fn primary_key(&self) -> &[u8] {
        &self.keys[0].0
    }

    /// Every key's bytes, the primary first.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.keys.iter().map(|(k, _)| k.as_slice())
    }

    /// Makes `key` the primary, adding it if needed.
    pub fn use_key(&mut self, key: &[u8]) -> Result<(), ConfigError> {
        self.add_key(key)?;
        if let Some(i) = self.keys.iter().position(|(x, _)| x.as_slice() == key) {
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
        if let Some(ct) = cipher.encrypt(&nonce, Payload { msg: plain, aad }) {
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
        self.keys
            .iter()
            .find_map(|(_, c)| c.decrypt(nonce, Payload { msg: ct, aad }))
    }
}

/// A change to a running node's keyring (Serf's key manager): applied with
/// [`Gossip::keys`](super::Gossip::keys).
#[derive(Clone, PartialEq, Eq)]
pub enum KeyOp {
    /// Change nothing; answer the keyring.
    List,
    /// Add a secondary key: accepted on receive, not yet used to send.
    Install(Vec<u8>),
    /// Make an installed key the primary (used to send).
    Use(Vec<u8>),
    /// Remove a secondary key (the primary is refused).
    Remove(Vec<u8>),
}

impl KeyOp {
    /// The operation's name (`list`, `install`, `use`, `remove`), for
    /// logs, the CLI and the management API alike.
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyOp::List => "list",
            KeyOp::Install(_) => "install",
            KeyOp::Use(_) => "use",
            KeyOp::Remove(_) => "remove",
        }
    }
}

impl std::fmt::Debug for KeyOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material: the fingerprint names the key.
        match self {
            KeyOp::List => f.write_str("List"),
            KeyOp::Install(k) | KeyOp::Use(k) | KeyOp::Remove(k) => {
                write!(f, "{}({})", self.as_str(), fingerprint(k))
            }
        }
    }
}

/// A short public name of a key: the first 8 bytes of its SHA-256, in hex.
/// Lets operators tell keys apart without showing them.
pub fn fingerprint(key: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(key);
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Keyring {
    /// Applies `op` as a running node does: `Use` needs an installed key,
    /// `Remove` refuses the primary and unknown keys.
    pub fn apply(&mut self, op: &KeyOp) -> Result<(), GossipError> {
        let installed = |k: &Keyring, key: &[u8]| k.keys().any(|x| x == key);
        match op {
            KeyOp::List => Ok(()),
            KeyOp::Install(key) => Ok(self.add_key(key)?),
            KeyOp::Use(key) if !installed(self, key) => {
                Err(GossipError::UnknownKey(fingerprint(key)))
            }
            KeyOp::Use(key) => Ok(self.use_key(key)?),
            KeyOp::Remove(key) if self.primary_key() == key.as_slice() => {
                Err(GossipError::PrimaryKey(fingerprint(key)))
            }
            KeyOp::Remove(key) if !self.remove_key(key) => {
                Err(GossipError::UnknownKey(fingerprint(key)))
            }
            KeyOp::Remove(_) => Ok(()),
        }
    }
}

impl Keyring {
    /// Reads a keyring file: one base64 key a line, the primary first.
    /// `Ok(None)` when there is no file.
    pub fn load(path: &std::path::Path) -> std::io::Result<Option<Keyring>> {
        use base64::Engine as _;
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |why: String| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("keyring file {}: {why}", path.display()),
            )
        };
        let mut ring: Option<Keyring> = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let key = base64::engine::general_purpose::STANDARD
                .decode(line)
                .map_err(|e| bad(format!("a line is not base64: {e}")))?;
            let r = match ring.as_mut() {
                None => Keyring::new(&key).map(|k| ring = Some(k)),
                Some(k) => k.add_key(&key),
            };
            r.map_err(|e| bad(e.to_string()))?;
        }
        ring.map(Some).ok_or_else(|| bad("no key".into()))
    }

    /// Writes the keyring file atomically, readable by the owner only.
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        use base64::Engine as _;
        use std::io::Write as _;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        for k in self.keys() {
            writeln!(f, "{}", base64::engine::general_purpose::STANDARD.encode(k))?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
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
            Keyring::new(&[0u8; 20]),
            Err(ConfigError::KeyLength(20))
        ));
    }

    #[test]
    fn serf_key_sizes() {
        for len in [16, 24, 32] {
            let a = Keyring::new(&vec![3u8; len]).unwrap();
            let sealed = a.seal(b"m", b"h");
            assert_eq!(a.open(&sealed, b"h").unwrap(), b"m");
            assert_eq!(a.primary_key().len(), len);
        }
        // Same first bytes, other length: a different key.
        let a = Keyring::new(&[3u8; 16]).unwrap();
        let b = Keyring::new(&[3u8; 32]).unwrap();
        assert!(b.open(&a.seal(b"m", b""), b"").is_none());
        assert!(a.open(&[0u8; 5], b"").is_none());
    }

    #[test]
    fn operations_as_a_running_node_applies_them() {
        let (k1, k2) = (vec![1u8; 32], vec![2u8; 16]);
        let mut r = Keyring::new(&k1).unwrap();
        assert!(matches!(
            r.apply(&KeyOp::Use(k2.clone())),
            Err(GossipError::UnknownKey(_))
        ));
        assert!(matches!(
            r.apply(&KeyOp::Remove(k1.clone())),
            Err(GossipError::PrimaryKey(_))
        ));
        assert!(matches!(
            r.apply(&KeyOp::Install(vec![0u8; 5])),
            Err(GossipError::Config(ConfigError::KeyLength(5)))
        ));
        r.apply(&KeyOp::Install(k2.clone())).unwrap();
        r.apply(&KeyOp::Use(k2.clone())).unwrap();
        assert_eq!(r.primary_key(), k2.as_slice());
        r.apply(&KeyOp::Remove(k1.clone())).unwrap();
        assert!(matches!(
            r.apply(&KeyOp::Remove(k1.clone())),
            Err(GossipError::UnknownKey(_))
        ));
        assert_eq!(r.len(), 1);
        let shown = format!("{:?}", KeyOp::Use(k2.clone()));
        assert_eq!(shown, format!("use({})", fingerprint(&k2)));
        assert_eq!(fingerprint(&k2).len(), 16);
    }

    #[test]
    fn keyring_file_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keyring");
        assert!(Keyring::load(&p).unwrap().is_none());
        let mut r = Keyring::new(&[4u8; 32]).unwrap();
        r.add_key(&[5u8; 16]).unwrap();
        r.save(&p).unwrap();
        let back = Keyring::load(&p).unwrap().unwrap();
        assert_eq!(
            back.keys().collect::<Vec<_>>(),
            r.keys().collect::<Vec<_>>()
        );
        std::fs::write(&p, "not base64!\n").unwrap();
        assert!(Keyring::load(&p).is_err());
        std::fs::write(&p, "\n").unwrap();
        assert!(Keyring::load(&p).is_err());
    }
}
