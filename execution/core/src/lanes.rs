//! Many keyed blake3 hashes of short inputs at once, one input per SIMD lane.
//!
//! Merkleization hashes millions of independent 64-byte inputs (a node's two child
//! hashes, a leaf's path and value hash) and 48-byte keys. Each is a single blake3
//! block, so hashing them one by one runs one compression at a time, about 550
//! instructions each; blake3's own SIMD only spreads one *long* input over lanes. This
//! module runs the compression function on 4, 8 or 16 independent inputs side by side
//! (the portable code is written lane-wise so that the compiler vectorizes it; the
//! widest instance the CPU supports is chosen once at run time), which costs a fraction
//! of that per hash.
//!
//! The output is exactly [`Domain::hash`] (blake3 `keyed_hash`) of each input: an input
//! of at most 64 bytes is one chunk of one block, so its hash is one compression of the
//! zero-padded block with the domain key as chaining value, counter 0, the input length
//! as block length and the flags `CHUNK_START | CHUNK_END | ROOT | KEYED_HASH` (blake3
//! specification, sections 2.2–2.6). The tests hold every instance to `blake3` itself on
//! random inputs of every length.

use std::sync::OnceLock;

use lamina_primitives::{Digest, Domain};

const IV: [u32; 8] = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19];

/// `CHUNK_START | CHUNK_END | ROOT | KEYED_HASH`.
const FLAGS: u32 = 1 | 2 | 8 | 16;

const PERMUTATION: [usize; 16] = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];

/// Message word used at each position of each of the 7 rounds.
const SCHEDULE: [[usize; 16]; 7] = {
    let mut s = [[0usize; 16]; 7];
    let mut i = 0;
    while i < 16 {
        s[0][i] = i;
        i += 1;
    }
    let mut r = 1;
    while r < 7 {
        let mut i = 0;
        while i < 16 {
            s[r][i] = s[r - 1][PERMUTATION[i]];
            i += 1;
        }
        r += 1;
    }
    s
};

#[inline(always)]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
fn g<const L: usize>(s: &mut [[u32; L]; 16], a: usize, b: usize, c: usize, d: usize, x: &[u32; L], y: &[u32; L]) {
    for j in 0..L {
        s[a][j] = s[a][j].wrapping_add(s[b][j]).wrapping_add(x[j]);
    }
    for j in 0..L {
        s[d][j] = (s[d][j] ^ s[a][j]).rotate_right(16);
    }
    for j in 0..L {
        s[c][j] = s[c][j].wrapping_add(s[d][j]);
    }
    for j in 0..L {
        s[b][j] = (s[b][j] ^ s[c][j]).rotate_right(12);
    }
    for j in 0..L {
        s[a][j] = s[a][j].wrapping_add(s[b][j]).wrapping_add(y[j]);
    }
    for j in 0..L {
        s[d][j] = (s[d][j] ^ s[a][j]).rotate_right(8);
    }
    for j in 0..L {
        s[c][j] = s[c][j].wrapping_add(s[d][j]);
    }
    for j in 0..L {
        s[b][j] = (s[b][j] ^ s[c][j]).rotate_right(7);
    }
}

/// Compresses `L` blocks (each the first `len` bytes of an input, zero-padded) under
/// `key`, writing the `L` hashes.
#[inline(always)]
fn compress<const L: usize>(key: &[u32; 8], blocks: &[[u8; 64]], len: u32, out: &mut [Digest]) {
    let mut m = [[0u32; L]; 16];
    for (j, b) in blocks.iter().enumerate().take(L) {
        for (w, word) in m.iter_mut().enumerate() {
            word[j] = u32::from_le_bytes([b[4 * w], b[4 * w + 1], b[4 * w + 2], b[4 * w + 3]]);
        }
    }
    let mut s = [[0u32; L]; 16];
    for i in 0..8 {
        s[i] = [key[i]; L];
    }
    for i in 0..4 {
        s[8 + i] = [IV[i]; L];
    }
    // s[12], s[13]: the counter, 0.
    s[14] = [len; L];
    s[15] = [FLAGS; L];
    for sch in &SCHEDULE {
        g(&mut s, 0, 4, 8, 12, &m[sch[0]], &m[sch[1]]);
        g(&mut s, 1, 5, 9, 13, &m[sch[2]], &m[sch[3]]);
        g(&mut s, 2, 6, 10, 14, &m[sch[4]], &m[sch[5]]);
        g(&mut s, 3, 7, 11, 15, &m[sch[6]], &m[sch[7]]);
        g(&mut s, 0, 5, 10, 15, &m[sch[8]], &m[sch[9]]);
        g(&mut s, 1, 6, 11, 12, &m[sch[10]], &m[sch[11]]);
        g(&mut s, 2, 7, 8, 13, &m[sch[12]], &m[sch[13]]);
        g(&mut s, 3, 4, 9, 14, &m[sch[14]], &m[sch[15]]);
    }
    for (j, o) in out.iter_mut().enumerate().take(L) {
        for i in 0..8 {
            o.0[4 * i..4 * i + 4].copy_from_slice(&(s[i][j] ^ s[i + 8][j]).to_le_bytes());
        }
    }
}

/// Hashes full groups of `L` blocks, then the tail through a zero-padded group.
#[inline(always)]
fn run<const L: usize>(key: &[u32; 8], blocks: &[[u8; 64]], len: u32, out: &mut [Digest]) {
    let full = blocks.len() / L * L;
    for (b, o) in blocks[..full].chunks_exact(L).zip(out[..full].chunks_exact_mut(L)) {
        compress::<L>(key, b, len, o);
    }
    let rest = blocks.len() - full;
    if rest > 0 {
        let mut b = [[0u8; 64]; L];
        b[..rest].copy_from_slice(&blocks[full..]);
        let mut o = [Digest::ZERO; L];
        compress::<L>(key, &b, len, &mut o);
        out[full..].copy_from_slice(&o[..rest]);
    }
}

fn run_portable(key: &[u32; 8], blocks: &[[u8; 64]], len: u32, out: &mut [Digest]) {
    run::<4>(key, blocks, len, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_avx2(key: &[u32; 8], blocks: &[[u8; 64]], len: u32, out: &mut [Digest]) {
    run::<8>(key, blocks, len, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn run_avx512(key: &[u32; 8], blocks: &[[u8; 64]], len: u32, out: &mut [Digest]) {
    run::<16>(key, blocks, len, out)
}

/// An instance of the compression loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instance {
    /// 4 lanes, any CPU.
    Portable,
    /// 8 lanes of AVX2.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// 16 lanes of AVX-512.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Instance {
    /// The widest instance this CPU runs.
    pub fn detect() -> Instance {
        static DETECTED: OnceLock<Instance> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return Instance::Avx512;
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    return Instance::Avx2;
                }
            }
            Instance::Portable
        })
    }

    /// Every instance this CPU runs (for tests and benchmarks).
    pub fn available() -> Vec<Instance> {
        let mut v = vec![Instance::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                v.push(Instance::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(Instance::Avx512);
            }
        }
        v
    }

    fn run(self, key: &[u32; 8], blocks: &[[u8; 64]], len: u32, out: &mut [Digest]) {
        match self {
            Instance::Portable => run_portable(key, blocks, len, out),
            // SAFETY: `Avx2` is only produced by `detect`/`available` after
            // `is_x86_feature_detected!("avx2")` returned true on this CPU.
            #[cfg(target_arch = "x86_64")]
            Instance::Avx2 => unsafe { run_avx2(key, blocks, len, out) },
            // SAFETY: `Avx512` is only produced by `detect`/`available` after
            // `is_x86_feature_detected!("avx512f")` returned true on this CPU.
            #[cfg(target_arch = "x86_64")]
            Instance::Avx512 => unsafe { run_avx512(key, blocks, len, out) },
        }
    }
}

fn key_words(domain: &Domain) -> [u32; 8] {
    let k = domain.key();
    let mut w = [0u32; 8];
    for (i, word) in w.iter_mut().enumerate() {
        *word = u32::from_le_bytes([k[4 * i], k[4 * i + 1], k[4 * i + 2], k[4 * i + 3]]);
    }
    w
}

/// Sets `out[i]` to `domain.hash(&blocks[i][..len])` for every `i`. The bytes of each
/// block past `len` must be zero.
pub fn hash_blocks(domain: &Domain, blocks: &[[u8; 64]], len: usize, out: &mut [Digest]) {
    hash_blocks_with(Instance::detect(), domain, blocks, len, out)
}

/// [`hash_blocks`] on a given instance.
pub fn hash_blocks_with(imp: Instance, domain: &Domain, blocks: &[[u8; 64]], len: usize, out: &mut [Digest]) {
    assert!(len <= 64 && blocks.len() == out.len(), "one block of at most 64 bytes per output (caller invariant)");
    imp.run(&key_words(domain), blocks, len as u32, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    static D: Domain = Domain::new("lamina execution lanes test v1");

    #[test]
    fn every_instance_equals_blake3_keyed_hash() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut byte = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        };
        for imp in Instance::available() {
            for len in 0..=64usize {
                // Counts around every lane width, so full groups and tails both run.
                for n in [0usize, 1, 3, 4, 5, 8, 15, 16, 17, 33] {
                    let blocks: Vec<[u8; 64]> = (0..n)
                        .map(|_| {
                            let mut b = [0u8; 64];
                            for x in b.iter_mut().take(len) {
                                *x = byte();
                            }
                            b
                        })
                        .collect();
                    let mut out = vec![Digest::ZERO; n];
                    hash_blocks_with(imp, &D, &blocks, len, &mut out);
                    for (b, o) in blocks.iter().zip(&out) {
                        assert_eq!(*o, D.hash(&b[..len]), "{imp:?} len {len} n {n}");
                    }
                }
            }
        }
    }

    #[test]
    fn detected_instance_is_available() {
        assert!(Instance::available().contains(&Instance::detect()));
    }
}
