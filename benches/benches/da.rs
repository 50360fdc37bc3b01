//! Data-availability benchmarks (issue 3).
//!
//! Group `da::square`, for k = 64, 128, 256 (512-byte shares: 2, 8, 32 MiB of original
//! data), each at 1 and 2 rayon threads (`t=1`, `t=2`; the `t=1` figures are the
//! per-core ones):
//!
//! * `extend/...codec=simd|rse`: RS extension k x k -> 2k x 2k, per codec (rse only up
//!   to k = 128: GF(2^8) allows 256 shards);
//! * `commit/...`: all 4k axis roots, both root trees and the data root of an
//!   extended square;
//! * `extend+commit/...`: the fused disperser path (the <= 40 ms at k = 128 target);
//! * `blake3-flat/...`: blake3 over the extended square as one flat buffer (the
//!   hashing limit; the commitment hashes every cell twice, rows and columns);
//! * `repair/...`: reconstruction with half of every row missing (k random cells per
//!   row), per codec;
//!
//! and group `da::verify`: one sample proof, and one namespace range proof (a 128 KiB
//! blob in a k = 128 square), verified against the data root.
//!
//! Throughput is original-square bytes for `da::square` and proof bytes for
//! `da::verify`. Run:
//!
//! ```text
//! cargo bench -p lamina-benches --bench da
//! ```
//!
//! Set `LAMINA_DA_BENCH_K=128` to run one width only.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lamina_da_core::{
    Axis, CodecId, OriginalSquare, Parallelism, SHARE_SIZE, Widths, commit, extend, extend_and_commit,
    extend_and_commit_into, extend_into, repair,
};
use lamina_interfaces::Blob;
use lamina_primitives::Namespace;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn ods(k: usize, seed: u64) -> OriginalSquare {
    // Eight chains share the square; their blobs fill it exactly.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let per = k * k * SHARE_SIZE / 8;
    let blobs: Vec<Blob> = (0..8u64)
        .map(|i| {
            let mut data = vec![0u8; per];
            rng.fill(&mut data[..]);
            Blob { namespace: Namespace((i + 1).to_be_bytes()), data }
        })
        .collect();
    let o = OriginalSquare::from_blobs(&blobs, CodecId::Leopard16).unwrap();
    assert_eq!(o.k(), k);
    o
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

fn widths() -> Vec<usize> {
    match std::env::var("LAMINA_DA_BENCH_K") {
        Ok(v) => v.split(',').map(|s| s.trim().parse().unwrap()).collect(),
        Err(_) => vec![64, 128, 256],
    }
}

/// Thread CPU time (`CLOCK_THREAD_CPUTIME_ID`) of the benchmarking thread: the per-core
/// cost of work run on that thread (the sequential twin), without time spent
/// descheduled. This box is shared (other builds keep the load average at 2-5 on 2
/// cores), so wall-clock per-core figures are inflated by whatever else runs; the
/// research note's single-thread figures use the same clock.
struct ThreadCpu;

fn thread_cpu_ns() -> u64 {
    lamina_benches::procstat::cpu_clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, i: u64) -> u64 {
        thread_cpu_ns().saturating_sub(i)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NsFormatter
    }
}

struct NsFormatter;

impl ValueFormatter for NsFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if ns < 1e3 {
            (1.0, "ns")
        } else if ns < 1e6 {
            (1e-3, "µs")
        } else if ns < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(&self, typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let per = match *t {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => b as f64,
            Throughput::Elements(e) | Throughput::ElementsAndBytes { elements: e, .. } => e as f64,
            Throughput::Bits(b) => b as f64 / 8.0,
        };
        let _ = typical;
        values.iter_mut().for_each(|v| *v = per * 1e9 / *v / (1024.0 * 1024.0));
        "MiB/s"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// The per-core figures: the sequential twin on this thread, in thread CPU time.
fn cpu_group(c: &mut Criterion<ThreadCpu>) {
    let mut g = c.benchmark_group("da::square-cpu");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    for k in widths() {
        let o = ods(k, k as u64);
        g.throughput(Throughput::Bytes((k * k * SHARE_SIZE) as u64));
        let eds = extend(&o, CodecId::Leopard16, Parallelism::Sequential).unwrap();
        for codec in CodecId::ALL {
            if codec == CodecId::Vandermonde8 && k > 128 {
                continue;
            }
            let mut buf = Some(Vec::new());
            g.bench_function(BenchmarkId::new("extend", format!("k={k} codec={} seq", codec.short_name())), |b| {
                b.iter(|| {
                    let e = extend_into(&o, codec, Parallelism::Sequential, buf.take().unwrap()).unwrap();
                    buf = Some(e.into_cells());
                })
            });
        }
        g.bench_function(BenchmarkId::new("commit", format!("k={k} seq")), |b| {
            b.iter(|| commit(&eds, o.table(), Parallelism::Sequential).unwrap().data_root())
        });
        let mut buf = Some(Vec::new());
        g.bench_function(BenchmarkId::new("extend+commit", format!("k={k} codec=simd seq")), |b| {
            b.iter(|| {
                let sq = extend_and_commit_into(&o, CodecId::Leopard16, Parallelism::Sequential, buf.take().unwrap())
                    .unwrap();
                let root = sq.data_root();
                buf = Some(sq.into_eds().into_cells());
                root
            })
        });
        g.bench_function(BenchmarkId::new("extend+commit", format!("k={k} codec=simd seq fresh-alloc")), |b| {
            b.iter(|| extend_and_commit(&o, CodecId::Leopard16, Parallelism::Sequential).unwrap().data_root())
        });
        g.bench_function(BenchmarkId::new("blake3-flat", format!("k={k} seq")), |b| {
            b.iter(|| blake3::hash(eds.cells()))
        });
        for codec in CodecId::ALL {
            if codec == CodecId::Vandermonde8 && k > 128 {
                continue;
            }
            let (damaged, known) = half_rows_missing(&o, codec, k);
            g.bench_function(BenchmarkId::new("repair", format!("k={k} codec={} seq", codec.short_name())), |b| {
                b.iter_batched(
                    || (damaged.clone(), known.clone()),
                    |(mut cells, mut kn)| {
                        repair(k, codec, &mut cells, &mut kn, Parallelism::Sequential).unwrap();
                        cells
                    },
                    BatchSize::LargeInput,
                )
            });
        }
    }
    g.finish();
}

/// An extended square with k random cells of every row erased (zeroed), and its flags.
fn half_rows_missing(o: &OriginalSquare, codec: CodecId, k: usize) -> (Vec<u8>, Vec<bool>) {
    let sq = extend(o, codec, Parallelism::Sequential).unwrap();
    let w = 2 * k;
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut known = vec![true; w * w];
    for r in 0..w {
        let mut cols: Vec<usize> = (0..w).collect();
        for i in 0..k {
            let j = rng.random_range(i..w);
            cols.swap(i, j);
            known[r * w + cols[i]] = false;
        }
    }
    let mut damaged = sq.into_cells();
    for (i, kn) in known.iter().enumerate() {
        if !kn {
            damaged[i * SHARE_SIZE..(i + 1) * SHARE_SIZE].fill(0);
        }
    }
    (damaged, known)
}

fn square_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("da::square");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    let pools = [(1usize, pool(1)), (2, pool(2))];
    for k in widths() {
        let o = ods(k, k as u64);
        g.throughput(Throughput::Bytes((k * k * SHARE_SIZE) as u64));
        let eds = extend(&o, CodecId::Leopard16, Parallelism::Sequential).unwrap();
        for (t, p) in &pools {
            for codec in CodecId::ALL {
                if codec == CodecId::Vandermonde8 && k > 128 {
                    continue;
                }
                let id = format!("k={k} codec={} t={t}", codec.short_name());
                let mut buf = Some(Vec::new());
                g.bench_function(BenchmarkId::new("extend", &id), |b| {
                    b.iter(|| {
                        let eds =
                            p.install(|| extend_into(&o, codec, Parallelism::Rayon, buf.take().unwrap()).unwrap());
                        buf = Some(eds.into_cells());
                    })
                });
            }
            let id = format!("k={k} t={t}");
            g.bench_function(BenchmarkId::new("commit", &id), |b| {
                b.iter(|| p.install(|| commit(&eds, o.table(), Parallelism::Rayon).unwrap().data_root()))
            });
            let mut buf = Some(Vec::new());
            g.bench_function(BenchmarkId::new("extend+commit", format!("k={k} codec=simd t={t}")), |b| {
                b.iter(|| {
                    let sq = p.install(|| {
                        extend_and_commit_into(&o, CodecId::Leopard16, Parallelism::Rayon, buf.take().unwrap()).unwrap()
                    });
                    let root = sq.data_root();
                    buf = Some(sq.into_eds().into_cells());
                    root
                })
            });
            g.bench_function(BenchmarkId::new("extend+commit", format!("k={k} codec=simd t={t} fresh-alloc")), |b| {
                b.iter(|| {
                    p.install(|| extend_and_commit(&o, CodecId::Leopard16, Parallelism::Rayon).unwrap().data_root())
                })
            });
            g.bench_function(BenchmarkId::new("blake3-flat", &id), |b| {
                b.iter(|| {
                    p.install(|| {
                        if *t == 1 {
                            blake3::hash(eds.cells())
                        } else {
                            let mut h = blake3::Hasher::new();
                            h.update_rayon(eds.cells());
                            h.finalize()
                        }
                    })
                })
            });
            for codec in CodecId::ALL {
                if codec == CodecId::Vandermonde8 && k > 128 {
                    continue;
                }
                let (damaged, known) = half_rows_missing(&o, codec, k);
                let id = format!("k={k} codec={} t={t}", codec.short_name());
                g.bench_function(BenchmarkId::new("repair", &id), |b| {
                    b.iter_batched(
                        || (damaged.clone(), known.clone()),
                        |(mut cells, mut kn)| {
                            p.install(|| repair(k, codec, &mut cells, &mut kn, Parallelism::Rayon).unwrap());
                            cells
                        },
                        BatchSize::LargeInput,
                    )
                });
            }
        }
        // The sequential twin beside rayon with one thread.
        let mut buf = Some(Vec::new());
        g.bench_function(BenchmarkId::new("extend+commit", format!("k={k} codec=simd seq")), |b| {
            b.iter(|| {
                let sq = extend_and_commit_into(&o, CodecId::Leopard16, Parallelism::Sequential, buf.take().unwrap())
                    .unwrap();
                let root = sq.data_root();
                buf = Some(sq.into_eds().into_cells());
                root
            })
        });
    }
    g.finish();
}

fn verify_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("da::verify");
    let k = 128usize;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut blobs = Vec::new();
    for (i, len) in [(1u64, 3 << 20), (2, 128 << 10), (3, 3 << 20)] {
        let mut data = vec![0u8; len];
        rng.fill(&mut data[..]);
        blobs.push(Blob { namespace: Namespace(i.to_be_bytes()), data });
    }
    // 12,544 shares: 112 wide in any width, 128 in powers of two (what this group measures).
    let ods = OriginalSquare::from_blobs_with(&blobs, CodecId::Leopard16, Widths::PowersOfTwo).unwrap();
    let sq = extend_and_commit(&ods, CodecId::Leopard16, Parallelism::Rayon).unwrap();
    assert_eq!(sq.eds().k(), k);
    let root = sq.data_root();
    for axis in [Axis::Row, Axis::Col] {
        let p = sq.sample_proof(37, 201, axis).unwrap();
        g.throughput(Throughput::Bytes(lamina_primitives::codec::encode(&p).unwrap().len() as u64));
        g.bench_function(BenchmarkId::new("sample", format!("k={k} axis={}", axis.name())), |b| {
            b.iter(|| p.verify(&root).unwrap().len())
        });
    }
    let ns = Namespace(2u64.to_be_bytes());
    let p = sq.namespace_proof(ns).unwrap();
    g.throughput(Throughput::Bytes(lamina_primitives::codec::encode(&p).unwrap().len() as u64));
    g.bench_function(BenchmarkId::new("namespace", format!("k={k} blob=128KiB")), |b| {
        b.iter(|| p.verify(&root, ns).unwrap().len())
    });
    let absent = Namespace(9u64.to_be_bytes());
    let p = sq.namespace_proof(absent).unwrap();
    g.throughput(Throughput::Bytes(lamina_primitives::codec::encode(&p).unwrap().len() as u64));
    g.bench_function(BenchmarkId::new("namespace", format!("k={k} absent")), |b| {
        b.iter(|| p.verify(&root, absent).unwrap().len())
    });
    g.finish();
}

criterion_group!(benches, square_group, verify_group);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = cpu_group
}
criterion_main!(cpu, benches);
