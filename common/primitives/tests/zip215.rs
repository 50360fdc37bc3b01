//! Differential tests: Lamina's ZIP-215 verification (on curve25519-dalek 4) must accept
//! and reject exactly what `ed25519-consensus` (the reference ZIP-215 implementation)
//! does, for single and batch verification, including the edge cases where ed25519
//! implementations disagree: small-order keys and nonces, mixed-order points,
//! non-canonical point encodings and non-canonical scalars.

#![allow(clippy::unwrap_used)]

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use lamina_primitives::sig::{self, SignedDigest};
use lamina_primitives::{Digest, Keypair, PublicKey, Signature, domains};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn oracle_single(pk: &PublicKey, msg: &Digest, s: &Signature) -> bool {
    let Ok(vk) = ed25519_consensus::VerificationKey::try_from(pk.0) else { return false };
    vk.verify(&ed25519_consensus::Signature::from(s.0), msg.as_bytes()).is_ok()
}

fn oracle_batch(items: &[SignedDigest]) -> bool {
    let mut v = ed25519_consensus::batch::Verifier::new();
    for it in items {
        let vkb = ed25519_consensus::VerificationKeyBytes::from(it.public_key.0);
        v.queue((vkb, ed25519_consensus::Signature::from(it.signature.0), it.message.as_bytes()));
    }
    v.verify(rand_core_06::OsRng).is_ok()
}

/// Encodings of the 8 small-order points, plus non-canonical encodings of the ones
/// whose y-coordinate allows it (y + p < 2^255) and sign-flipped encodings of x = 0.
fn small_order_encodings() -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for t in EIGHT_TORSION.iter() {
        let enc = t.compress().to_bytes();
        out.push(enc);
        // x = 0 points (identity and (0,-1)) with the sign bit set.
        let mut flipped = enc;
        flipped[31] |= 0x80;
        out.push(flipped);
    }
    // Non-canonical y: y + p for small y values (p = 2^255 - 19). y = 0 and y = 1 give
    // 2^255 - 19 and 2^255 - 18, both below 2^255.
    for y in [0u8, 1u8] {
        let mut enc = [0xFFu8; 32];
        enc[0] = 0xED + y; // 0xED = 237 = 256 - 19
        enc[31] = 0x7F;
        out.push(enc);
        let mut neg = enc;
        neg[31] |= 0x80;
        out.push(neg);
    }
    out
}

fn check(pk: &PublicKey, msg: &Digest, s: &Signature, label: &str) -> bool {
    let ours = sig::verify(pk, msg, s).is_ok();
    let theirs = oracle_single(pk, msg, s);
    assert_eq!(ours, theirs, "single verification disagrees on {label}: pk={pk} sig={}", hex::encode(s.0));
    let item = [SignedDigest { public_key: *pk, message: *msg, signature: *s }];
    assert_eq!(sig::verify_batch(&item).is_ok(), ours, "batch-of-one disagrees on {label}");
    ours
}

#[test]
fn small_order_and_non_canonical_points_match_oracle() {
    let encs = small_order_encodings();
    let msg = domains::TX_ID.hash(b"Zcash");
    let mut accepted = 0;
    let mut total = 0;
    for a in &encs {
        for r in &encs {
            // s = 0: valid under the cofactored equation iff [8]R + [8]kA = 0, which
            // holds for all small-order A and R.
            let mut s = [0u8; 64];
            s[..32].copy_from_slice(r);
            total += 1;
            if check(&PublicKey(*a), &msg, &Signature(s), "small-order") {
                accepted += 1;
            }
        }
    }
    // Every decodable small-order combination is accepted by ZIP-215.
    assert!(accepted > 0 && accepted <= total);
}

#[test]
fn mixed_order_keys_and_nonces_match_oracle() {
    let mut rng = ChaCha20Rng::seed_from_u64(215);
    for i in 0..64u64 {
        let kp = Keypair::for_testing(i);
        let msg = domains::TX_ID.hash(&i.to_le_bytes());
        let good = kp.sign(&msg);
        check(&kp.public(), &msg, &good, "valid");

        // Add a torsion component to R: cofactored verification still accepts.
        let t = EIGHT_TORSION[rng.random_range(1..8)];
        let r = CompressedEdwardsY(good.0[..32].try_into().unwrap()).decompress().unwrap();
        let mut bad_r = good;
        bad_r.0[..32].copy_from_slice(&(r + t).compress().to_bytes());
        check(&kp.public(), &msg, &bad_r, "mixed-order R");

        // Add a torsion component to A.
        let a = CompressedEdwardsY(kp.public().0).decompress().unwrap();
        let pk_t = PublicKey((a + t).compress().to_bytes());
        check(&pk_t, &msg, &good, "mixed-order A");

        // Non-canonical s (s + ℓ).
        let s = Scalar::from_canonical_bytes(good.0[32..].try_into().unwrap()).unwrap();
        let l_bytes = (Scalar::ZERO - Scalar::ONE).to_bytes(); // ℓ - 1
        let mut sum = [0u8; 32];
        let mut carry = 0u16;
        let sb = s.to_bytes();
        for k in 0..32 {
            let add = if k == 0 { l_bytes[k] as u16 + 1 } else { l_bytes[k] as u16 };
            let v = sb[k] as u16 + add + carry;
            sum[k] = v as u8;
            carry = v >> 8;
        }
        if carry == 0 && sum[31] < 0x80 {
            let mut nc = good;
            nc.0[32..].copy_from_slice(&sum);
            assert!(!check(&kp.public(), &msg, &nc, "non-canonical s"));
        }

        // Random corruption of any byte.
        let mut corrupt = good;
        let pos = rng.random_range(0..64);
        corrupt.0[pos] ^= 1 << rng.random_range(0..8);
        check(&kp.public(), &msg, &corrupt, "bit flip");
    }
}

#[test]
fn random_batches_match_oracle_and_single() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    for round in 0..40 {
        let n = rng.random_range(2..48);
        let mut items: Vec<SignedDigest> = (0..n)
            .map(|i| {
                let kp = Keypair::for_testing(rng.random_range(0..6));
                let msg = domains::TX_ID.hash(&[round as u8, i as u8]);
                SignedDigest { public_key: kp.public(), message: msg, signature: kp.sign(&msg) }
            })
            .collect();
        // Corrupt some entries in some rounds, including torsion on R (which stays valid).
        if round % 3 == 1 {
            let j = rng.random_range(0..n);
            items[j].signature.0[5] ^= 0x10;
        }
        if round % 4 == 2 {
            let j = rng.random_range(0..n);
            let r = CompressedEdwardsY(items[j].signature.0[..32].try_into().unwrap()).decompress();
            if let Some(r) = r {
                items[j].signature.0[..32].copy_from_slice(&(r + EIGHT_TORSION[3]).compress().to_bytes());
            }
        }
        let ours = sig::verify_batch(&items).is_ok();
        assert_eq!(ours, oracle_batch(&items), "round {round}");
        let each = sig::verify_batch_each(&items);
        for (it, ok) in items.iter().zip(&each) {
            assert_eq!(*ok, sig::verify(&it.public_key, &it.message, &it.signature).is_ok());
            assert_eq!(*ok, oracle_single(&it.public_key, &it.message, &it.signature));
        }
        assert_eq!(ours, each.iter().all(|v| *v));
    }
}
