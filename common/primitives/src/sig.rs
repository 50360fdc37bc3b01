//! ed25519 keys and signatures, with one verification semantics for the whole engine.
//!
//! # The rule: ZIP-215
//!
//! Lamina accepts a signature `(R, s)` by public key `A` on a message `M` exactly when
//! ZIP-215 (Zcash's consensus rules for ed25519) accepts it:
//!
//! * `A` and `R` are 32-byte strings that decode to curve points; non-canonical
//!   encodings of the y-coordinate and the "negative zero" x are accepted;
//! * `s` is a canonical scalar (`s < ℓ`), otherwise the signature is rejected;
//! * the **cofactored** equation `[8][s]B = [8]R + [8][k]A` holds, with
//!   `k = SHA-512(R ‖ A ‖ M) mod ℓ` over the bytes as received.
//!
//! Because the equation is cofactored, single verification and batch verification
//! accept exactly the same set of signatures (up to a 2^-128 chance, for a batch,
//! of accepting an invalid one). That is the property consensus needs: a block's
//! transactions are valid or invalid independently of how a node chose to batch them.
//! The cofactorless check of `ed25519-dalek`'s `verify` disagrees with its own
//! `verify_batch` on signatures with small-order components, which is why we do not use
//! it.
//!
//! # Implementation
//!
//! `ed25519-consensus` implements these rules on `curve25519-dalek-ng`, which has no
//! runtime AVX2 backend, so it is about 1.5x slower per signature than dalek. We
//! implement the same rules on `curve25519-dalek` 4 (which selects AVX2 at run time)
//! and test them against `ed25519-consensus` as an oracle on random, corrupted,
//! small-order, mixed-order and non-canonical inputs (`tests/zip215.rs`).
//! Signing uses `ed25519-dalek` (signatures are standard RFC 8032 ones).
//!
//! # What is signed
//!
//! Lamina never signs raw bytes: every signed message is a 32-byte [`Digest`] computed
//! under a [`crate::hash::Domain`], so a signature for one purpose can never be
//! replayed as one for another.
//!
//! # Batch coefficients
//!
//! The random coefficients `z_i` of a batch are derived from a blake3 transcript of the
//! whole batch (all keys, signatures and messages) rather than from an OS RNG. A forger
//! who wants an invalid batch to pass must find inputs whose own hash makes a 128-bit
//! linear combination vanish: probability 2^-128 per attempt. Derivation keeps this crate
//! free of I/O and makes verification reproducible.

use std::collections::HashMap;
use std::fmt;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest as _, Sha512};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::hash::{Digest, domains};

/// An ed25519 public key (32 bytes, as transmitted). Also a node's identity.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Hash))]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature `R ‖ s` (64 bytes, as transmitted).
#[derive(Clone, Copy, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct Signature(pub [u8; 64]);

impl Default for Signature {
    fn default() -> Self {
        Signature([0u8; 64])
    }
}

crate::hex_serde!(PublicKey, 32);
crate::hex_serde!(Signature, 64);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pk:{}", &hex::encode(self.0)[..12])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sig:{}", &hex::encode(self.0)[..12])
    }
}

impl PublicKey {
    /// Lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the 64-character hex form.
    pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(PublicKey(out))
    }
}

impl From<&ArchivedPublicKey> for PublicKey {
    fn from(a: &ArchivedPublicKey) -> Self {
        PublicKey(a.0)
    }
}

impl From<&ArchivedSignature> for Signature {
    fn from(a: &ArchivedSignature) -> Self {
        Signature(a.0)
    }
}

/// Why a signature was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The public key bytes do not decode to a curve point.
    #[error("public key is not a curve point")]
    InvalidPublicKey,
    /// The `R` half of the signature does not decode to a curve point.
    #[error("signature R is not a curve point")]
    InvalidR,
    /// The `s` half of the signature is not a canonical scalar.
    #[error("signature s is not canonical")]
    NonCanonicalS,
    /// The verification equation does not hold.
    #[error("signature does not verify")]
    Mismatch,
}

/// A secret signing key (the 32-byte ed25519 seed). Zeroized on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// A key from a 32-byte seed (the caller provides the entropy).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey(seed)
    }

    /// The seed bytes, for writing the key to a 0600 file.
    pub fn seed(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// A signing key pair.
#[derive(Clone)]
pub struct Keypair {
    signing: ed25519_dalek::SigningKey,
    public: PublicKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({:?})", self.public)
    }
}

impl Keypair {
    /// The key pair whose secret is `secret`.
    pub fn from_secret(secret: &SecretKey) -> Self {
        let signing = ed25519_dalek::SigningKey::from_bytes(secret.seed());
        let public = PublicKey(signing.verifying_key().to_bytes());
        Keypair { signing, public }
    }

    /// A key pair from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self::from_secret(&SecretKey::from_seed(seed))
    }

    /// A deterministic key pair for tests, fixtures and devnets: seed = H("lamina test key", n).
    pub fn for_testing(n: u64) -> Self {
        let seed = blake3::derive_key("lamina test key v1", &n.to_le_bytes());
        Self::from_seed(seed)
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The secret key.
    pub fn secret(&self) -> SecretKey {
        SecretKey(self.signing.to_bytes())
    }

    /// Signs a domain-separated digest.
    pub fn sign(&self, msg: &Digest) -> Signature {
        use ed25519_dalek::Signer;
        Signature(self.signing.sign(msg.as_bytes()).to_bytes())
    }
}

/// A public key decoded once, for verifying many signatures by the same signer.
#[derive(Clone, Copy, Debug)]
pub struct VerifyingKey {
    bytes: [u8; 32],
    point: EdwardsPoint,
}

impl VerifyingKey {
    /// Decodes a public key under ZIP-215 rules (non-canonical encodings accepted).
    pub fn new(pk: &PublicKey) -> Result<Self, SignatureError> {
        Ok(VerifyingKey { bytes: pk.0, point: decode_key(pk)? })
    }

    /// The key as transmitted.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.bytes)
    }

    /// Verifies one signature under ZIP-215.
    pub fn verify(&self, msg: &Digest, sig: &Signature) -> Result<(), SignatureError> {
        let (r, s) = split_signature(sig)?;
        let k = challenge(&sig.0[..32], &self.bytes, msg.as_bytes());
        // [s]B - [k]A - R, then clear the cofactor.
        let minus_a = -self.point;
        let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &minus_a, &s);
        if (sb_minus_ka - r).mul_by_cofactor().is_identity() { Ok(()) } else { Err(SignatureError::Mismatch) }
    }
}

/// Verifies one signature under ZIP-215.
pub fn verify(pk: &PublicKey, msg: &Digest, sig: &Signature) -> Result<(), SignatureError> {
    VerifyingKey::new(pk)?.verify(msg, sig)
}

/// Decoded public keys, shared by every verification in the process.
///
/// Decoding a key (a square root in the field, about 5 µs here) is about an eighth of a
/// single signature check and a third of a batched one, and senders sign many
/// transactions, so intake, execution and settlement each decode a
/// sender's key once instead of per signature. The cache is direct-mapped (a key has
/// one slot, chosen by a hash keyed per process) with a fixed size, [`KEY_CACHE_SLOTS`]: memory is
/// bounded whatever keys arrive, and keys that collide only cost their decoding again.
/// Only keys that decode are kept, and a hit compares all 32 bytes, so the cache
/// changes how fast a verdict comes, never the verdict.
struct KeyCache {
    shards: Vec<std::sync::Mutex<Vec<Slot>>>,
    /// Random per process, so nobody can choose keys that evict a given sender's.
    seed: std::hash::RandomState,
}

/// One slot of the [`KeyCache`]: a key's bytes and its point, or nothing.
type Slot = Option<([u8; 32], EdwardsPoint)>;

/// Slots of the process-wide key cache (about 200 bytes each: 12.5 MiB in all, allocated
/// on first use).
pub const KEY_CACHE_SLOTS: usize = 1 << 16;
const KEY_CACHE_SHARDS: usize = 64;

static KEY_CACHE: std::sync::LazyLock<KeyCache> = std::sync::LazyLock::new(|| KeyCache {
    shards: (0..KEY_CACHE_SHARDS)
        .map(|_| std::sync::Mutex::new(vec![None; KEY_CACHE_SLOTS / KEY_CACHE_SHARDS]))
        .collect(),
    seed: std::hash::RandomState::new(),
});

impl KeyCache {
    fn slot(&self, key: &[u8; 32]) -> (usize, usize) {
        // Keyed per process: a collision only costs a decoding, never a wrong answer,
        // and nobody can aim one at a chosen sender.
        let h = std::hash::BuildHasher::hash_one(&self.seed, key) as usize;
        (h % KEY_CACHE_SHARDS, (h / KEY_CACHE_SHARDS) % (KEY_CACHE_SLOTS / KEY_CACHE_SHARDS))
    }

    fn get(&self, key: &[u8; 32]) -> Option<EdwardsPoint> {
        let (shard, slot) = self.slot(key);
        let guard = self.shards[shard].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        guard[slot].as_ref().filter(|(k, _)| k == key).map(|(_, p)| *p)
    }

    fn put(&self, key: &[u8; 32], point: EdwardsPoint) {
        let (shard, slot) = self.slot(key);
        let mut guard = self.shards[shard].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        guard[slot] = Some((*key, point));
    }
}

/// `pk` decoded to a curve point under ZIP-215 (non-canonical encodings accepted),
/// through the process-wide [`KeyCache`].
fn decode_key(pk: &PublicKey) -> Result<EdwardsPoint, SignatureError> {
    if let Some(p) = KEY_CACHE.get(&pk.0) {
        return Ok(p);
    }
    let p = CompressedEdwardsY(pk.0).decompress().ok_or(SignatureError::InvalidPublicKey)?;
    KEY_CACHE.put(&pk.0, p);
    Ok(p)
}

/// `pk` decoded without the cache: for benchmarks that compare the two.
#[doc(hidden)]
pub fn decode_key_uncached(pk: &PublicKey) -> Result<(), SignatureError> {
    CompressedEdwardsY(pk.0).decompress().map(|_| ()).ok_or(SignatureError::InvalidPublicKey)
}

/// `pk` decoded through the cache: for benchmarks that compare the two.
#[doc(hidden)]
pub fn decode_key_cached(pk: &PublicKey) -> Result<(), SignatureError> {
    decode_key(pk).map(|_| ())
}

fn split_signature(sig: &Signature) -> Result<(EdwardsPoint, Scalar), SignatureError> {
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&sig.0[..32]);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&sig.0[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(SignatureError::NonCanonicalS)?;
    let r = CompressedEdwardsY(r_bytes).decompress().ok_or(SignatureError::InvalidR)?;
    Ok((r, s))
}

fn challenge(r: &[u8], a: &[u8; 32], msg: &[u8; 32]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(msg);
    let wide: [u8; 64] = h.finalize().into();
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// One entry of a batch: who signed what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedDigest {
    /// The signer.
    pub public_key: PublicKey,
    /// The domain-separated digest that was signed.
    pub message: Digest,
    /// The signature.
    pub signature: Signature,
}

/// Verifies every entry as one batch: `Ok` iff (with probability 1 - 2^-128) every
/// entry verifies individually. Entries with the same public key share one point in the
/// multiscalar multiplication, so batches from few signers are cheaper.
pub fn verify_batch(items: &[SignedDigest]) -> Result<(), SignatureError> {
    if items.is_empty() {
        return Ok(());
    }
    if items.len() == 1 {
        let it = &items[0];
        return verify(&it.public_key, &it.message, &it.signature);
    }
    let coefficients = batch_coefficients(items);
    let mut key_index: HashMap<[u8; 32], usize> = HashMap::with_capacity(items.len());
    let mut scalars: Vec<Scalar> = Vec::with_capacity(2 * items.len() + 1);
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(2 * items.len() + 1);
    // Slot 0 is the base point; its coefficient accumulates -Σ z_i s_i.
    scalars.push(Scalar::ZERO);
    points.push(ED25519_BASEPOINT_POINT);
    let mut b_coefficient = Scalar::ZERO;
    for (it, z) in items.iter().zip(coefficients) {
        let (r, s) = split_signature(&it.signature)?;
        let k = challenge(&it.signature.0[..32], &it.public_key.0, it.message.as_bytes());
        b_coefficient -= z * s;
        scalars.push(z);
        points.push(r);
        let zk = z * k;
        match key_index.get(&it.public_key.0) {
            Some(&idx) => scalars[idx] += zk,
            None => {
                let a = decode_key(&it.public_key)?;
                key_index.insert(it.public_key.0, points.len());
                scalars.push(zk);
                points.push(a);
            }
        }
    }
    scalars[0] = b_coefficient;
    let sum = EdwardsPoint::vartime_multiscalar_mul(scalars.iter(), points.iter());
    if sum.mul_by_cofactor().is_identity() { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// 128-bit coefficients derived from a transcript of the whole batch.
fn batch_coefficients(items: &[SignedDigest]) -> Vec<Scalar> {
    let mut h = domains::SIG_BATCH_TRANSCRIPT.hasher();
    h.update(&(items.len() as u64).to_le_bytes());
    for it in items {
        h.update(&it.public_key.0);
        h.update(&it.signature.0);
        h.update(it.message.as_bytes());
    }
    let mut xof = h.finalize_xof();
    items
        .iter()
        .map(|_| {
            let mut b = [0u8; 32];
            xof.fill(&mut b[..16]);
            Scalar::from_bytes_mod_order(b)
        })
        .collect()
}

/// Verifies a batch and says which entries are valid. The answer for every entry equals
/// what [`verify`] says for it alone (ZIP-215 makes batch and single agree). Valid
/// batches cost one batch verification; a batch with invalid entries is bisected.
pub fn verify_batch_each(items: &[SignedDigest]) -> Vec<bool> {
    let mut out = vec![false; items.len()];
    bisect(items, &mut out);
    out
}

fn bisect(items: &[SignedDigest], out: &mut [bool]) {
    // Even two signatures are cheaper as a batch than one by one here (batch of 2:
    // 26-31 µs per signature, single 38-47 µs; issue 10), so only a lone entry is
    // verified alone.
    const SINGLE_BELOW: usize = 1;
    if items.len() <= SINGLE_BELOW {
        for (it, o) in items.iter().zip(out.iter_mut()) {
            *o = verify(&it.public_key, &it.message, &it.signature).is_ok();
        }
        return;
    }
    if verify_batch(items).is_ok() {
        out.iter_mut().for_each(|o| *o = true);
        return;
    }
    let mid = items.len() / 2;
    let (left_out, right_out) = out.split_at_mut(mid);
    bisect(&items[..mid], left_out);
    bisect(&items[mid..], right_out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u64, msg: &[u8]) -> SignedDigest {
        let kp = Keypair::for_testing(n);
        let m = domains::TX_ID.hash(msg);
        SignedDigest { public_key: kp.public(), message: m, signature: kp.sign(&m) }
    }

    #[test]
    fn keys_sharing_a_cache_slot_keep_their_own_verdicts() {
        let it = item(7, b"slot");
        verify(&it.public_key, &it.message, &it.signature).unwrap();
        // Other keys in the same slot (found by search; the slot hash is keyed per
        // process): one that is not a point and one that is.
        let target = KEY_CACHE.slot(&it.public_key.0);
        let mut not_point = None;
        let mut point = None;
        for n in 1u64.. {
            let mut k = it.public_key;
            k.0[24..].copy_from_slice(&n.to_le_bytes());
            if k == it.public_key || KEY_CACHE.slot(&k.0) != target {
                continue;
            }
            let decodes = CompressedEdwardsY(k.0).decompress().is_some();
            if decodes && point.is_none() {
                point = Some(k);
            }
            if !decodes && not_point.is_none() {
                not_point = Some(k);
            }
            if point.is_some() && not_point.is_some() {
                break;
            }
        }
        let (point, not_point) = (point.unwrap(), not_point.unwrap());
        for _ in 0..2 {
            assert_eq!(verify(&not_point, &it.message, &it.signature), Err(SignatureError::InvalidPublicKey));
            assert_eq!(verify(&point, &it.message, &it.signature), Err(SignatureError::Mismatch));
            verify(&it.public_key, &it.message, &it.signature).unwrap();
            let forged = SignedDigest { public_key: point, ..it };
            assert_eq!(verify_batch_each(&[it, forged, it, it, it]), vec![true, false, true, true, true]);
        }
        // A key that does not decode is never cached.
        let (shard, slot) = KEY_CACHE.slot(&not_point.0);
        let held = KEY_CACHE.shards[shard].lock().unwrap()[slot].map(|(k, _)| k);
        assert_ne!(held, Some(not_point.0));
    }

    #[test]
    fn sign_then_verify() {
        let it = item(1, b"hello");
        verify(&it.public_key, &it.message, &it.signature).unwrap();
        let other = domains::TX_ID.hash(b"other");
        assert_eq!(verify(&it.public_key, &other, &it.signature), Err(SignatureError::Mismatch));
    }

    #[test]
    fn batch_accepts_valid_and_flags_invalid() {
        let mut items: Vec<_> = (0..37).map(|i| item(i % 5, &i.to_le_bytes())).collect();
        verify_batch(&items).unwrap();
        assert!(verify_batch_each(&items).iter().all(|v| *v));
        items[7].signature.0[40] ^= 1;
        items[30].message = domains::TX_ID.hash(b"swapped");
        assert!(verify_batch(&items).is_err());
        let each = verify_batch_each(&items);
        for (i, ok) in each.iter().enumerate() {
            assert_eq!(*ok, i != 7 && i != 30, "entry {i}");
        }
    }

    #[test]
    fn non_canonical_s_rejected() {
        let mut it = item(3, b"x");
        // s + ℓ is non-canonical; ℓ's top byte is 0x10, so setting bit 7 of the last byte
        // makes s >= 2^255 > ℓ.
        it.signature.0[63] |= 0x80;
        assert_eq!(verify(&it.public_key, &it.message, &it.signature), Err(SignatureError::NonCanonicalS));
    }

    #[test]
    fn secret_round_trip_and_debug_hides_secret() {
        let kp = Keypair::for_testing(9);
        let again = Keypair::from_secret(&kp.secret());
        assert_eq!(kp.public(), again.public());
        assert_eq!(format!("{:?}", kp.secret()), "SecretKey(..)");
    }
}
