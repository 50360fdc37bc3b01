//! The mempool the service drives: `lamina-consensus-core`'s pure [`Mempool`] state
//! machine (limits, duplicate ids, per-sender nonce order, batches until ordered), on
//! this process's monotonic clock ([`now`]).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use lamina_consensus_core::mempool::{Cut, Mempool, MempoolLimits, MempoolStats, Requeued};

/// The mempool's `now`: time since this process first asked (monotonic).
pub fn now() -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}
