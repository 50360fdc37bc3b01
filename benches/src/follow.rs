//! Finalization events from the real seams: follow an [`OrderedLog`], fetch each
//! block's batches of the benchmarked chains from [`DataAvailability`], and report
//! every transaction in them as finalized at the time the block was read.
//!
//! Blocks carry availability certificates, not transaction ids, so the follower reads
//! the batches back from DA (namespace-proven, like an executor does) and takes the ids
//! from the archived transactions without deserializing them (validated zero-copy
//! access). It also counts the DA blob bytes the log orders ([`FollowStats::da_bytes`])
//! for the DA bytes/s figure. A target factory spawns it on the load runtime with the
//! sink it was given.
//!
//! Reading the batches costs the follower what it costs an execution service; on a
//! small box, a target that learns finalized ids from the execution service's receipts
//! stream instead is cheaper. Both report into the same sink.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lamina_interfaces::{DataAvailability, LogError, OrderedLog};
use lamina_primitives::{Batch, Committee, Height, Namespace, codec};
use tokio::time::Instant;

use crate::BenchError;
use crate::tracker::CompletionSink;

/// Blocks whose batches are fetched at once.
const FETCHES: usize = 16;

/// Counters of a running follower (shared with the target's `sample`).
#[derive(Debug, Default)]
pub struct FollowStats {
    /// Highest height read.
    pub height: AtomicU64,
    /// Blob bytes of every batch ordered by the blocks read (all namespaces).
    pub da_bytes: AtomicU64,
    /// Transactions reported finalized.
    pub txs: AtomicU64,
    /// Batches that could not be fetched or decoded (skipped).
    pub batch_errors: AtomicU64,
}

impl FollowStats {
    /// A reading for [`crate::TargetSample`].
    pub fn sample(&self) -> crate::target::TargetSample {
        crate::target::TargetSample {
            da_bytes: Some(self.da_bytes.load(Ordering::Relaxed)),
            height: Some(self.height.load(Ordering::Relaxed)),
        }
    }
}

/// What to follow.
#[derive(Clone, Debug)]
pub struct FollowConfig {
    /// First height to read (usually the tip + 1 when the benchmark starts).
    pub from: Height,
    /// The benchmarked chains' namespaces.
    pub namespaces: Vec<Namespace>,
    /// If set, every block is verified against this validator committee first (for a
    /// log source that is not trusted in transit).
    pub committee: Option<Committee>,
    /// Blocks per read.
    pub max_blocks: usize,
}

/// Follows the log until it is closed; returns an error if the source misbehaves
/// (a block that does not verify, a gap). Unavailability is retried.
pub async fn follow_finalized<L: OrderedLog, D: DataAvailability + Send + Sync + 'static>(
    log: L,
    da: D,
    config: FollowConfig,
    sink: CompletionSink,
    stats: Arc<FollowStats>,
) -> Result<(), BenchError> {
    let mut next = config.from.max(Height(1));
    let da = Arc::new(da);
    let fetches = Arc::new(tokio::sync::Semaphore::new(FETCHES));
    loop {
        let blocks = match log.read(next, config.max_blocks.max(1)).await {
            Ok(b) => b,
            Err(LogError::Closed) => return Ok(()),
            Err(LogError::Unavailable(_)) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(e) => return Err(BenchError::Target(format!("ordered log: {e}"))),
        };
        let seen = Instant::now();
        for fb in blocks {
            if fb.height() != next {
                return Err(BenchError::Target(format!("ordered log gave height {} for {}", fb.height(), next)));
            }
            if let Some(c) = &config.committee {
                fb.verify(c).map_err(|e| BenchError::Target(format!("block {} does not verify: {e}", next)))?;
            }
            // Each block's batches are fetched on their own task (at most FETCHES at
            // once), so a slow fetch does not delay reading (and timestamping) the
            // next blocks.
            let permit = fetches.clone().acquire_owned().await.map_err(|_| BenchError::Target("closed".into()))?;
            let (da, sink, st, namespaces) = (da.clone(), sink.clone(), stats.clone(), config.namespaces.clone());
            tokio::spawn(async move {
                let stats = st;
                let _permit = permit;
                let mut ids = Vec::new();
                for cert in &fb.block.batches {
                    let c = &cert.commitment;
                    stats.da_bytes.fetch_add(c.blob_bytes, Ordering::Relaxed);
                    for ns in namespaces.iter().filter(|ns| c.namespaces.contains(ns)) {
                        match da.get_namespace(c, *ns).await {
                            Ok(blobs) => {
                                for blob in blobs {
                                    match codec::access::<Batch>(&blob) {
                                        Ok(batch) => ids.extend(batch.txs.iter().map(|t| t.id())),
                                        Err(_) => {
                                            stats.batch_errors.fetch_add(1, Ordering::Relaxed);
                                        }
                                    }
                                }
                            }
                            Err(_) => {
                                stats.batch_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                stats.txs.fetch_add(ids.len() as u64, Ordering::Relaxed);
                sink.finalized_at(ids, seen);
            });
            stats.height.store(next.0, Ordering::Relaxed);
            next = next.next();
        }
    }
}
