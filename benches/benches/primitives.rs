//! Baselines every later layer is held against: blake3 (plain and domain-keyed, single
//! and multi-threaded), Merkle roots, and ed25519 signing and verification: single and
//! batch, ours (ZIP-215 on curve25519-dalek 4) beside `ed25519-consensus` (the reference
//! ZIP-215 implementation) and `ed25519-dalek`'s own batch verification (faster rules
//! we do not use, because its single and batch checks disagree).
//!
//! Run: `cargo bench -p lamina-benches --bench primitives`

#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lamina_primitives::merkle::{leaf_hash, root};
use lamina_primitives::sig::{self, SignedDigest};
use lamina_primitives::{Keypair, domains};
use rayon::prelude::*;

fn blake3_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("primitives::blake3");
    for size in [64usize, 1024, 64 * 1024, 1 << 20] {
        let data = vec![0xA5u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("blake3::hash", size), &data, |b, d| b.iter(|| blake3::hash(d)));
        g.bench_with_input(BenchmarkId::new("domain_keyed", size), &data, |b, d| b.iter(|| domains::BATCH.hash(d)));
    }
    let big = vec![0x5Au8; 8 << 20];
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("blake3::update_rayon/8MiB", |b| {
        b.iter(|| {
            let mut h = blake3::Hasher::new();
            h.update_rayon(&big);
            h.finalize()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("primitives::merkle");
    for n in [1024usize, 16384] {
        let leaves: Vec<_> = (0..n as u64).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        g.throughput(Throughput::Elements(n as u64 - 1));
        g.bench_with_input(BenchmarkId::new("root", n), &leaves, |b, l| b.iter(|| root(l)));
    }
    g.finish();
}

struct Sigs {
    ours: Vec<SignedDigest>,
    consensus: Vec<(ed25519_consensus::VerificationKeyBytes, ed25519_consensus::Signature, [u8; 32])>,
    dalek_keys: Vec<ed25519_dalek_batch::VerifyingKey>,
    dalek_sigs: Vec<ed25519_dalek_batch::Signature>,
    msgs: Vec<[u8; 32]>,
}

/// `n` signatures by `n` distinct keys over distinct digests (the worst case for key
/// grouping; the research measurements used the same shape).
fn sigs(n: usize) -> Sigs {
    let ours: Vec<SignedDigest> = (0..n as u64)
        .map(|i| {
            let kp = Keypair::for_testing(i);
            let m = domains::TX_ID.hash(&i.to_le_bytes());
            SignedDigest { public_key: kp.public(), message: m, signature: kp.sign(&m) }
        })
        .collect();
    let consensus = ours
        .iter()
        .map(|s| {
            (
                ed25519_consensus::VerificationKeyBytes::from(s.public_key.0),
                ed25519_consensus::Signature::from(s.signature.0),
                s.message.0,
            )
        })
        .collect();
    let dalek_keys =
        ours.iter().map(|s| ed25519_dalek_batch::VerifyingKey::from_bytes(&s.public_key.0).unwrap()).collect();
    let dalek_sigs = ours.iter().map(|s| ed25519_dalek_batch::Signature::from_bytes(&s.signature.0)).collect();
    let msgs = ours.iter().map(|s| s.message.0).collect();
    Sigs { ours, consensus, dalek_keys, dalek_sigs, msgs }
}

fn ed25519_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("primitives::ed25519");
    let kp = Keypair::for_testing(1);
    let m = domains::TX_ID.hash(b"bench");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign", |b| b.iter(|| kp.sign(&m)));
    let s = sigs(1);
    let one = s.ours[0];
    g.bench_function("verify_single/lamina_zip215", |b| {
        b.iter(|| sig::verify(&one.public_key, &one.message, &one.signature).unwrap())
    });
    // The key cache (issue 10): decoding a key against finding it decoded.
    g.bench_function("decode_key/uncached", |b| {
        b.iter(|| sig::decode_key_uncached(std::hint::black_box(&one.public_key)).unwrap())
    });
    g.bench_function("decode_key/cached", |b| {
        b.iter(|| sig::decode_key_cached(std::hint::black_box(&one.public_key)).unwrap())
    });
    let vk = ed25519_consensus::VerificationKey::try_from(one.public_key.0).unwrap();
    g.bench_function("verify_single/ed25519_consensus", |b| {
        b.iter(|| vk.verify(&s.consensus[0].1, &s.consensus[0].2).unwrap())
    });
    g.bench_function("verify_single/dalek_cofactorless", |b| {
        b.iter(|| s.dalek_keys[0].verify_strict(&s.msgs[0], &s.dalek_sigs[0]).unwrap())
    });

    for n in [2usize, 4, 16, 32, 64, 128, 256, 512, 1024] {
        let s = sigs(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("verify_batch/lamina_zip215", n), &s, |b, s| {
            b.iter(|| sig::verify_batch(&s.ours).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("verify_batch/ed25519_consensus", n), &s, |b, s| {
            b.iter(|| {
                let mut v = ed25519_consensus::batch::Verifier::new();
                for (k, sg, m) in &s.consensus {
                    v.queue((*k, *sg, &m[..]));
                }
                v.verify(rand_core_06::OsRng).unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("verify_batch/dalek_batch", n), &s, |b, s| {
            let msgs: Vec<&[u8]> = s.msgs.iter().map(|m| &m[..]).collect();
            b.iter(|| ed25519_dalek_batch::verify_batch(&msgs, &s.dalek_sigs, &s.dalek_keys).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("verify_batch_each/lamina_zip215", n), &s, |b, s| {
            b.iter(|| assert!(sig::verify_batch_each(&s.ours).iter().all(|v| *v)))
        });
    }
    // Whole box: 2 threads, each verifying half of 2048 signatures as batches of 1024.
    let s = sigs(2048);
    g.throughput(Throughput::Elements(2048));
    g.bench_function("verify_batch_all_cores/lamina_zip215/2048", |b| {
        b.iter(|| s.ours.par_chunks(1024).for_each(|chunk| sig::verify_batch(chunk).unwrap()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(3));
    targets = blake3_group, ed25519_group
}
criterion_main!(benches);
