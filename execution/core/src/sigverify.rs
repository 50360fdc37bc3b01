//! The signature stage: verifies a block's transactions in batches across all cores.
//!
//! Every transaction's id is computed once here (the executors reuse it for receipts)
//! and its signature checked under the engine's one rule, ZIP-215
//! ([`lamina_primitives::sig`]). Because ZIP-215 batch and single verification accept the
//! same signatures, the verdict for each transaction does not depend on the batch size,
//! on how the block was split, or on the thread count: a valid batch costs one
//! multiscalar multiplication, and a batch containing invalid signatures is bisected
//! ([`lamina_primitives::sig::verify_batch_each`]) down to the culprits.
//!
//! Batches are contiguous chunks of at most [`MAX_BATCH`] signatures, at least enough
//! chunks to keep every rayon thread busy. The sequential twin uses the same chunking on
//! one thread.

use lamina_primitives::sig::{self, SignedDigest};
use lamina_primitives::{Transaction, TxId, TxScope};
use rayon::prelude::*;

/// Largest batch handed to one multiscalar multiplication (the per-signature cost stops
/// falling around 1024 on this class of machine).
pub const MAX_BATCH: usize = 1024;

/// Ids and signature verdicts of a block's transactions, by position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Transaction ids (the signed digests).
    pub ids: Vec<TxId>,
    /// `true` where the signature verifies.
    pub valid: Vec<bool>,
}

impl Verified {
    /// Verdicts for already-trusted transactions (every signature taken as valid): for
    /// tests and for benchmarks that measure execution alone. Ids are still computed.
    pub fn assume_valid(txs: &[Transaction]) -> Self {
        let ids: Vec<TxId> = txs.par_iter().map(Transaction::id).collect();
        let valid = vec![true; txs.len()];
        Verified { ids, valid }
    }

    /// Number of transactions.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True for an empty block.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

fn chunk_size(n: usize, threads: usize) -> usize {
    // One chunk per thread, at most MAX_BATCH per chunk, at least 64 so that batching
    // still pays: a batch's cost per signature falls with its size. Four chunks per
    // thread (better load balance) cost more CPU for no throughput: a 500-transaction
    // block on two threads took 16.1 µs per signature against 13.9 (criterion), and
    // three interleaved end-to-end rounds at 22–26k tx/s gave execution 24–25 µs per
    // transfer against 25–28 with p99 as good or better; a later, noisier series was
    // mixed at the box's limit (BENCHMARKS.md, 2026-12-07).
    n.div_ceil(threads.max(1)).clamp(64, MAX_BATCH)
}

fn verify_chunk(chunk: &[SignedDigest]) -> Vec<bool> {
    sig::verify_batch_each(chunk)
}

/// A transaction's id and what its signature must verify as in `scope`.
fn signed(tx: &Transaction, scope: TxScope) -> (TxId, SignedDigest) {
    let id = tx.id();
    (id, SignedDigest { public_key: tx.sender, message: scope.message(&id), signature: tx.signature })
}

/// Verifies a block of a network of scope `scope` (what its signatures bind) on the
/// current rayon pool.
pub fn verify_block(scope: TxScope, txs: &[Transaction]) -> Verified {
    let (ids, items): (Vec<TxId>, Vec<SignedDigest>) = txs.par_iter().map(|tx| signed(tx, scope)).unzip();
    let size = chunk_size(items.len(), rayon::current_num_threads());
    let valid: Vec<bool> = items.par_chunks(size).flat_map_iter(verify_chunk).collect();
    Verified { ids, valid }
}

/// Verifies the transactions of several consecutive blocks as one signature stage and
/// returns each block's [`Verified`], in order. Each verdict is the one
/// [`verify_block`] gives (ZIP-215 batch and single verification agree), but the blocks
/// are chunked together, so on a machine with few threads an execution node that has
/// fallen behind and holds several fetched blocks verifies them in larger, cheaper
/// batches (one per thread, each of at most 1,024: on the 2-thread development box a
/// group of 4,096 goes as four batches of 1,024, where one block of 500 goes as two
/// of 250).
pub fn verify_blocks(scope: TxScope, blocks: &[&[Transaction]]) -> Vec<Verified> {
    let all: Vec<&Transaction> = blocks.iter().flat_map(|b| b.iter()).collect();
    let (mut ids, items): (Vec<TxId>, Vec<SignedDigest>) = all.par_iter().map(|tx| signed(tx, scope)).unzip();
    let size = chunk_size(items.len(), rayon::current_num_threads());
    let mut valid: Vec<bool> = items.par_chunks(size).flat_map_iter(verify_chunk).collect();
    // Split back, last block first (each split takes the tail).
    let mut out: Vec<Verified> = blocks
        .iter()
        .rev()
        .map(|b| {
            let at = ids.len() - b.len();
            Verified { ids: ids.split_off(at), valid: valid.split_off(at) }
        })
        .collect();
    out.reverse();
    out
}

/// The sequential twin of [`verify_block`]: same verdicts, one thread.
pub fn verify_block_sequential(scope: TxScope, txs: &[Transaction]) -> Verified {
    let (ids, items): (Vec<TxId>, Vec<SignedDigest>) = txs.iter().map(|tx| signed(tx, scope)).unzip();
    let size = chunk_size(items.len(), 1);
    let valid: Vec<bool> = items.chunks(size).flat_map(verify_chunk).collect();
    Verified { ids, valid }
}

/// Raw batch verification of the given signatures across the pool, with the same
/// chunking and no id computation: the reference rate the signature stage is measured
/// against. Returns how many verified.
pub fn raw_batch_verify(items: &[SignedDigest]) -> usize {
    let size = chunk_size(items.len(), rayon::current_num_threads());
    items.par_chunks(size).map(|c| if sig::verify_batch(c).is_ok() { c.len() } else { 0 }).sum()
}
