//! Authentication of Raft RPCs when the transport has no mutual TLS.
//!
//! Every node of a cluster derives the same credential from the cluster
//! secret: `HMAC-SHA256(secret, "clusterfunk/raft/v1")`, where the secret is
//! the gossip encryption key (or, without one, the management token). The
//! client side ([`Network`](super::Network), through
//! [`RaftChannel`](super::RaftChannel)) sends it in the `x-clusterfunk-raft-auth`
//! metadata of every call; the server side ([`AuthService`], wrapped around
//! the Raft service by `RaftNode::serve_tls`) refuses a call without a
//! matching one with `UNAUTHENTICATED` before it is decoded. The secret
//! itself never travels, and a credential is useless for anything else
//! (another context string gives an unrelated value).
//!
//! What it does not do: over plaintext TCP the credential is a bearer token,
//! so an on-path observer of Raft traffic could replay it. Against that use
//! mutual TLS (`--tls-*`), which also encrypts the traffic.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::Status;

use super::listener::ConnHandle;

/// Metadata key carrying the credential.
pub const AUTH_HEADER: &str = "x-clusterfunk-raft-auth";
/// Context string of the derivation: changing it changes every credential.
const CONTEXT: &[u8] = b"clusterfunk/raft/v1";
/// Length of a credential (an HMAC-SHA256 output).
const CRED_LEN: usize = 32;
/// Context string of an admission proof (see [`RaftAuth::prove`]).
const PROOF_CONTEXT: &[u8] = b"clusterfunk/raft/admit/v1";

/// The Raft credential of a cluster: the one this node sends, and every one
/// it accepts (more than one while a cluster secret is being rotated).
#[derive(Clone, PartialEq, Eq)]
pub struct RaftAuth {
    send: [u8; CRED_LEN],
    accept: Vec<[u8; CRED_LEN]>,
    /// Calls without any credential are refused (a wrong one always is).
    require: bool,
}

impl std::fmt::Debug for RaftAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print credentials.
        f.debug_struct("RaftAuth")
            .field("accepted", &self.accept.len())
            .field("require", &self.require)
            .finish()
    }
}

fn derive(secret: &[u8]) -> [u8; CRED_LEN] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return [0u8; CRED_LEN],
    };
    mac.update(CONTEXT);
    mac.finalize().into_bytes().into()
}

/// `HMAC-SHA256(credential, PROOF_CONTEXT || len(nonce) || nonce || name)`.
fn proof(credential: &[u8; CRED_LEN], nonce: &[u8], name: &str) -> [u8; CRED_LEN] {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(credential) {
        Ok(m) => m,
        Err(_) => return [0u8; CRED_LEN],
    };
    mac.update(PROOF_CONTEXT);
    mac.update(&(nonce.len() as u64).to_be_bytes());
    mac.update(nonce);
    mac.update(name.as_bytes());
    mac.finalize().into_bytes().into()
}

fn to_hex(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(HEX[(x >> 4) as usize] as char);
        s.push(HEX[(x & 15) as usize] as char);
    }
    s
}

fn from_hex(s: &[u8]) -> Option<[u8; CRED_LEN]> {
    if s.len() != CRED_LEN * 2 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; CRED_LEN];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = nib(pair[0])? << 4 | nib(pair[1])?;
    }
    Some(out)
}

/// Compares without an early exit, so timing does not tell how many leading
/// bytes of a guess were right.
fn same(a: &[u8; CRED_LEN], b: &[u8; CRED_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl RaftAuth {
    /// The credential of a cluster whose secret is `secret` (the gossip
    /// key's bytes, or a token's).
    pub fn from_secret(secret: &[u8]) -> RaftAuth {
        let c = derive(secret);
        RaftAuth {
            send: c,
            accept: vec![c],
            require: true,
        }
    }

    /// Sends the credential but also accepts calls that carry none (a wrong
    /// one is still refused): for switching a running cluster from no
    /// secret to a secret, node by node.
    pub fn optional(mut self) -> RaftAuth {
        self.require = false;
        self
    }

    /// Also accepts the credential of `secret` (not sent): for rotating the
    /// cluster secret without refusing nodes that still use the old one.
    pub fn accept_also(mut self, secret: &[u8]) -> RaftAuth {
        let c = derive(secret);
        if !self.accept.iter().any(|a| same(a, &c)) {
            self.accept.push(c);
        }
        self
    }

    /// The credential after a rotation of the cluster secret from the keys
    /// `before` to `after` (each list with its primary first): sends the
    /// credential of `after`'s primary, accepts those of every key in
    /// `after`, no longer those of keys only in `before`; anything else it
    /// accepted (a token's) stays. `None` when this credential does not
    /// follow the keys (it does not send `before`'s primary's), so a
    /// credential set by hand is never replaced.
    pub fn rekeyed(&self, before: &[&[u8]], after: &[&[u8]]) -> Option<RaftAuth> {
        let (old, new) = (before.first()?, after.first()?);
        if !same(&self.send, &derive(old)) {
            return None;
        }
        let dropped: Vec<_> = before
            .iter()
            .filter(|k| !after.contains(k))
            .map(|k| derive(k))
            .collect();
        let mut next = RaftAuth {
            send: derive(new),
            accept: self
                .accept
                .iter()
                .filter(|a| !dropped.iter().any(|d| same(a, d)))
                .copied()
                .collect(),
            require: self.require,
        };
        for k in after {
            next = next.accept_also(k);
        }
        Some(next)
    }

    /// Whether calls without a credential are refused (see
    /// [`optional`](Self::optional)).
    pub fn required(&self) -> bool {
        self.require
    }

    /// Proof that the node named `name` holds the credential it sends,
    /// over the asker's `nonce` (the admission check): the credential is
    /// the HMAC key, so the proof shows it without sending it.
    pub fn prove(&self, nonce: &[u8], name: &str) -> Vec<u8> {
        proof(&self.send, nonce, name).to_vec()
    }

    /// Whether `got` is a [`prove`](Self::prove) of `nonce` and `name` by a
    /// credential this node accepts.
    pub fn check_proof(&self, nonce: &[u8], name: &str, got: &[u8]) -> bool {
        let Ok(got) = <[u8; CRED_LEN]>::try_from(got) else {
            return false;
        };
        self.accept
            .iter()
            .fold(false, |ok, a| same(&proof(a, nonce, name), &got) | ok)
    }

    /// The credential as sent in metadata (lower-case hex).
    pub fn header_value(&self) -> http::HeaderValue {
        // Hex digits are always a valid header value.
        http::HeaderValue::from_str(&to_hex(&self.send))
            .unwrap_or_else(|_| http::HeaderValue::from_static(""))
    }

    /// Whether `headers` carry an accepted credential.
    pub fn verify(&self, headers: &http::HeaderMap) -> bool {
        let Some(value) = headers.get(AUTH_HEADER) else {
            return !self.require;
        };
        let Some(got) = from_hex(value.as_bytes()) else {
            return false;
        };
        // Check every accepted credential (no early exit either).
        self.accept.iter().fold(false, |ok, a| same(a, &got) | ok)
    }
}

/// A node's credential that can change while it runs (rotation of the
/// cluster secret): one cell shared by its Raft server and its network, so
/// both switch at once. Never held across an await.
#[derive(Clone, Debug)]
pub struct SharedAuth(Arc<RwLock<RaftAuth>>);

impl SharedAuth {
    /// A cell holding `auth`.
    pub fn new(auth: RaftAuth) -> Self {
        SharedAuth(Arc::new(RwLock::new(auth)))
    }

    /// The credential now.
    pub fn get(&self) -> RaftAuth {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the credential for every later call, sent or received.
    pub fn set(&self, auth: RaftAuth) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = auth;
    }

    fn verify(&self, headers: &http::HeaderMap) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .verify(headers)
    }

    pub(crate) fn header_value(&self) -> http::HeaderValue {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .header_value()
    }
}

/// Adds the credential to an outgoing request (client side).
pub(crate) fn attach<B>(req: &mut http::Request<B>, value: &http::HeaderValue) {
    req.headers_mut().insert(AUTH_HEADER, value.clone());
}

/// Wraps a gRPC service: with a [`RaftAuth`], every call must carry an
/// accepted credential or is answered `UNAUTHENTICATED` without reaching
/// the service. Calls that pass mark their connection as proven (see
/// [`listener`](super::listener)), so it is never closed as idle-unproven.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Option<SharedAuth>,
    refused: Arc<AtomicU64>,
}

impl<S> AuthService<S> {
    /// Wraps `inner`; with `auth = None` every call passes.
    pub fn new(inner: S, auth: Option<RaftAuth>) -> Self {
        Self::shared(inner, auth.map(SharedAuth::new))
    }

    /// The same with a credential that can change while serving.
    pub fn shared(inner: S, auth: Option<SharedAuth>) -> Self {
        AuthService {
            inner,
            auth,
            refused: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Calls refused so far (shared by clones).
    pub fn refused(&self) -> Arc<AtomicU64> {
        self.refused.clone()
    }
}

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let ok = self.auth.as_ref().is_none_or(|a| a.verify(req.headers()));
        if !ok {
            let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
            let peer = req
                .extensions()
                .get::<ConnHandle>()
                .and_then(|c| c.remote_addr());
            tracing::debug!(?peer, refused = n, path = %req.uri().path(), "raft call without a valid credential");
            let resp = Status::unauthenticated("raft call without a valid cluster credential")
                .into_http::<tonic::body::Body>();
            return Box::pin(async move { Ok(resp) });
        }
        if let Some(c) = req.extensions().get::<ConnHandle>() {
            c.mark_proven();
        }
        Box::pin(self.inner.call(req))
    }
}

impl<S: NamedService> NamedService for AuthService<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_verify_rotate() {
        let a = RaftAuth::from_secret(b"key one");
        let b = RaftAuth::from_secret(b"key two");
        assert_ne!(a, b);
        let mut h = http::HeaderMap::new();
        assert!(!a.verify(&h), "missing credential");
        h.insert(AUTH_HEADER, a.header_value());
        assert!(a.verify(&h));
        assert!(!b.verify(&h));
        // Rotation: b also accepts a's credential, still sends its own.
        let b2 = b.clone().accept_also(b"key one");
        assert!(b2.verify(&h));
        assert_eq!(b2.header_value(), b.header_value());
        // Garbage is refused, never a panic.
        for bad in ["", "zz", &"g".repeat(64), &"0".repeat(63), &"0".repeat(64)] {
            h.insert(AUTH_HEADER, http::HeaderValue::from_str(bad).unwrap());
            assert!(!a.verify(&h), "{bad:?}");
        }
        // The secret is not what is sent.
        assert!(!format!("{:?}", a.header_value()).contains("key one"));
        assert_eq!(format!("{a:?}"), "RaftAuth { accepted: 1, require: true }");
        // Optional: no credential passes, a wrong one does not.
        let opt = a.clone().optional();
        assert!(opt.verify(&http::HeaderMap::new()));
        let mut wrong = http::HeaderMap::new();
        wrong.insert(AUTH_HEADER, b.header_value());
        assert!(!opt.verify(&wrong));
    }

    #[test]
    fn rekeyed_follows_the_keyring() {
        let (k1, k2): (&[u8], &[u8]) = (b"key one", b"key two");
        let header = |a: &RaftAuth| {
            let mut h = http::HeaderMap::new();
            h.insert(AUTH_HEADER, a.header_value());
            h
        };
        let (only1, only2) = (RaftAuth::from_secret(k1), RaftAuth::from_secret(k2));
        let token = RaftAuth::from_secret(b"token");
        let a = only1.clone().accept_also(b"token");
        // Install k2: still sends k1's, accepts both (and the token's).
        let b = a.rekeyed(&[k1], &[k1, k2]).unwrap();
        assert_eq!(b.header_value(), only1.header_value());
        assert!(b.verify(&header(&only2)) && b.verify(&header(&token)));
        // Use k2, then remove k1.
        let c = b.rekeyed(&[k1, k2], &[k2, k1]).unwrap();
        assert_eq!(c.header_value(), only2.header_value());
        let d = c.rekeyed(&[k2, k1], &[k2]).unwrap();
        assert!(!d.verify(&header(&only1)));
        assert!(d.verify(&header(&only2)) && d.verify(&header(&token)));
        // A credential that does not follow the keys is left alone.
        assert!(token.rekeyed(&[k1], &[k2]).is_none());
        let live = SharedAuth::new(a);
        live.set(d.clone());
        assert_eq!(live.get(), d);
    }

    #[test]
    fn admission_proofs() {
        let a = RaftAuth::from_secret(b"key one");
        let b = RaftAuth::from_secret(b"key two");
        let p = a.prove(b"nonce", "n1");
        assert!(a.check_proof(b"nonce", "n1", &p));
        // Another nonce, name or credential does not match; nor does junk.
        assert!(!a.check_proof(b"other", "n1", &p));
        assert!(!a.check_proof(b"nonce", "n2", &p));
        assert!(!b.check_proof(b"nonce", "n1", &p));
        assert!(!a.check_proof(b"nonce", "n1", &p[1..]));
        assert!(!a.check_proof(b"nonce", "n1", &[]));
        // During a rotation a proof by any accepted key passes.
        assert!(b
            .clone()
            .accept_also(b"key one")
            .check_proof(b"nonce", "n1", &p));
        assert!(a.required() && !a.optional().required());
    }

    #[test]
    fn hex_roundtrip() {
        let c = derive(b"x");
        assert_eq!(from_hex(to_hex(&c).as_bytes()), Some(c));
    }
}
