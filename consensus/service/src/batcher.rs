//! The batcher: cuts squares from the mempool (by size or age), disperses them to DA,
//! and hands each availability certificate to the core, which announces it to the other
//! validators and orders it. A validator that knows it leaves the committee cuts what
//! it holds at once instead of waiting for `max_delay`.
//!
//! A failed dispersal is retried with the same blobs (doubling the wait up to 5 s) until
//! it succeeds or the service stops: transactions are never dropped. While DA is down,
//! no certificate arrives, the mempool fills and intake answers `Busy`; the core keeps
//! producing empty blocks. At most `max_inflight` dispersals run at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lamina_interfaces::{DataAvailability, Health};
use lamina_primitives::TxId;
use parking_lot::Mutex;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::BatchConfig;
use crate::driver::{Input, Shared};
use crate::intake_log::IntakeLog;
use crate::mempool::{Cut, Mempool};
use crate::metrics as m;

const TARGET: &str = "lamina::consensus";
/// How often a validator leaving the committee looks for something to cut.
const LEAVING_TICK: Duration = Duration::from_millis(5);

/// Shared DA status for `/status`.
#[derive(Debug, Default)]
pub(crate) struct DaStatus {
    pub(crate) consecutive_failures: u64,
    pub(crate) last_error: Option<String>,
}

/// Runs until `stop`; then waits (at most `grace`) for dispersals in flight, so their
/// certificates still reach the core.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<D: DataAvailability + 'static>(
    da: Arc<D>,
    mempool: Arc<Mutex<Mempool>>,
    cfg: BatchConfig,
    wake: Arc<Notify>,
    to_core: mpsc::Sender<Input>,
    status: Arc<Mutex<DaStatus>>,
    health: Health,
    stop: CancellationToken,
    grace: Duration,
    log: Option<Arc<IntakeLog>>,
    shared: Arc<Shared>,
    (fatal, error): (CancellationToken, Arc<Mutex<Option<crate::error::Error>>>),
) {
    let inflight = Arc::new(Semaphore::new(cfg.max_inflight));
    // Certificates reach the core in cut order, whatever order the concurrent
    // dispersals finish in: a sender's transactions are cut in nonce order, and the core
    // orders a validator's certificates first come, first served, so this keeps each
    // sender's transactions in nonce order in the log.
    let (order_tx, mut order_rx) = mpsc::unbounded_channel::<oneshot::Receiver<(Input, Vec<TxId>)>>();
    let forwarder_log = log.clone();
    let forwarder_fatal = fatal.clone();
    let forwarder = tokio::spawn(async move {
        while let Some(rx) = order_rx.recv().await {
            // A dispersal abandoned at shutdown drops its sender: skip it.
            let Ok((input, ids)) = rx.await else { continue };
            // The certificate is durable in the intake log, in cut order, before the core
            // gets it: a restart proposes it again instead of queueing its
            // transactions again, and never has a later batch without an earlier one.
            if let (Some(log), Input::Certified { cert, .. }) = (&forwarder_log, &input) {
                let (log, cert) = (log.clone(), cert.clone());
                let failed = match tokio::task::spawn_blocking(move || log.certified(&cert, &ids)).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e),
                    Err(e) => Some(crate::error::Error::Internal(format!("intake log task: {e}"))),
                };
                // Fail-stop, as for the WAL: a batch the core has whose transactions the
                // intake log thinks uncertified would be ordered twice after a restart
                // (the WAL gives the certificate back, the log the transactions).
                if let Some(e) = failed {
                    tracing::error!(target: TARGET, error = %e, "intake log: certificate not durable: stopping (fail-stop)");
                    error.lock().get_or_insert(e);
                    forwarder_fatal.cancel();
                    return;
                }
            }
            if to_core.send(input).await.is_err() {
                return;
            }
        }
    });
    let max_delay = Duration::from_millis(cfg.max_delay_ms);
    let busy_delay = Duration::from_millis(cfg.busy_delay_ms).max(max_delay);
    // The batcher looks for a batch to cut on ticks, and whenever it is woken. Ticks
    // start when work arrives in an idle mempool (so a lone transaction is cut
    // `max_delay` after it came); a later wake does not move them.
    let mut next_tick: Option<tokio::time::Instant> = None;
    loop {
        // A validator leaving the committee (intake already refuses) cuts what it holds
        // at once, so that it is certified and announced while its core still runs.
        let leaving = shared.leaving_after.load(Ordering::Relaxed) > 0;
        let delay = if leaving { Duration::ZERO } else { max_delay };
        let tick = if leaving { LEAVING_TICK } else { (delay / 2).max(Duration::from_millis(1)) };
        // With nothing queued or parked, sleep until intake wakes us (it does when the
        // mempool stops being idle): an idle validator does not tick. The driver wakes
        // us too when one of our batches is ordered (see `cut_delay`).
        let idle = mempool.lock().is_idle();
        let now = tokio::time::Instant::now();
        let due = match next_tick {
            _ if idle => None,
            Some(t) if t > now => Some(t.min(now + tick)),
            _ => Some(now + tick),
        };
        next_tick = due;
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = fatal.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(due.unwrap_or(now)), if due.is_some() => {}
        }
        loop {
            let Ok(permit) = inflight.clone().try_acquire_owned() else { break };
            let cut = {
                let mut mp = mempool.lock();
                let now = crate::mempool::now();
                // Leaving, it takes no more transactions: no lower nonce can come to
                // fill a gap, so what is parked goes now.
                let released = if leaving { mp.release_all_gaps(now) } else { mp.release_gaps(now) };
                if released > 0 {
                    metrics::counter!(m::NONCE_GAPS_RELEASED).increment(released as u64);
                }
                let delay = cut_delay(&cfg, &mp, delay, busy_delay);
                if mp.ready(cfg.max_bytes, delay, now) { mp.cut(cfg.max_bytes) } else { None }
            };
            let Some(cut) = cut else { break };
            for (ns, n) in &cut.per_namespace {
                let label = ns.to_string();
                metrics::counter!(m::BATCHES, "namespace" => label.clone()).increment(1);
                metrics::counter!(m::BATCH_TXS, "namespace" => label).increment(*n as u64);
            }
            let (da, mempool, status, health, stop) =
                (da.clone(), mempool.clone(), status.clone(), health.clone(), stop.clone());
            let retry = Duration::from_millis(cfg.retry_ms);
            let (done, rx) = oneshot::channel();
            let _ = order_tx.send(rx);
            tokio::spawn(async move {
                let _permit = permit;
                disperse(da, mempool, cut, done, status, health, stop, retry).await;
            });
        }
    }
    // Let dispersals in flight finish (they hand their certificates to the core).
    let deadline = tokio::time::Instant::now() + grace;
    let _ = tokio::time::timeout_at(deadline, inflight.acquire_many(cfg.max_inflight as u32)).await;
    drop(order_tx);
    if tokio::time::timeout_at(deadline, forwarder).await.is_err() {
        tracing::warn!(target: TARGET, "certificates of dispersals still in flight were not handed to the core in time");
    }
}

/// How long the oldest transaction waits for a cut: `delay` (zero while leaving the
/// committee), or `busy_delay` under load (`busy_bytes` queued) while `max_unordered` of
/// our batches are unordered. Then the next batch waits for one of them to be ordered
/// (the driver wakes the batcher), so that it grows with the load instead of the
/// squares multiplying.
fn cut_delay(cfg: &BatchConfig, mp: &Mempool, delay: Duration, busy_delay: Duration) -> Duration {
    if !delay.is_zero()
        && cfg.max_unordered > 0
        && mp.queued_bytes() >= cfg.busy_bytes
        && mp.unordered_batches() >= cfg.max_unordered
    {
        busy_delay
    } else {
        delay
    }
}

#[allow(clippy::too_many_arguments)]
async fn disperse<D: DataAvailability + 'static>(
    da: Arc<D>,
    mempool: Arc<Mutex<Mempool>>,
    cut: Cut,
    done: oneshot::Sender<(Input, Vec<TxId>)>,
    status: Arc<Mutex<DaStatus>>,
    health: Health,
    stop: CancellationToken,
    retry: Duration,
) {
    let mut wait = retry;
    let started = Instant::now();
    loop {
        match da.submit(cut.blobs.clone()).await {
            Ok(cert) => {
                tracing::debug!(target: TARGET, batch = cut.id, txs = cut.txs, bytes = cut.bytes, took = ?started.elapsed(), "batch certified");
                {
                    let mut s = status.lock();
                    s.consecutive_failures = 0;
                    s.last_error = None;
                }
                health.set_status("da", serde_json::json!({"ok": true}));
                let attestation = cert.commitment.attestation_digest();
                let ids = {
                    let mut mp = mempool.lock();
                    mp.certified(cut.id, attestation);
                    mp.batch_ids(cut.id)
                };
                let _ = done.send((Input::Certified { cert, cut_at: started, txs: cut.txs }, ids));
                return;
            }
            Err(e) => {
                metrics::counter!(m::DA_FAILURES).increment(1);
                let failures = {
                    let mut s = status.lock();
                    s.consecutive_failures += 1;
                    s.last_error = Some(e.to_string());
                    s.consecutive_failures
                };
                health.set_status("da", serde_json::json!({"ok": false, "failures": failures, "error": e.to_string()}));
                tracing::warn!(target: TARGET, error = %e, batch = cut.id, txs = cut.txs, "dispersal failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => {
                        // One last attempt happens in the loop; after the stop, give up
                        // once the wait has grown (the service is shutting down).
                        if wait >= Duration::from_secs(1) {
                            return;
                        }
                    }
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use lamina_primitives::{ChainId, Keypair, Transaction, TxScope};

    use super::*;
    use crate::mempool::MempoolLimits;

    fn queue(m: &mut Mempool, sender: u64) {
        let tx =
            Transaction::new_signed(&Keypair::for_testing(sender), TxScope::ChainOnly, ChainId(1), 0, vec![7; 100]);
        let id = Mempool::precheck(&MempoolLimits::default(), m.chains(), &tx).unwrap();
        m.insert(tx, id, Duration::ZERO).unwrap();
    }

    /// The next cut waits `busy_delay` while `max_unordered` of our batches are cut and
    /// not yet ordered and `busy_bytes` are queued, `max_delay` otherwise; a leaving
    /// validator (delay zero) never waits, and 0 turns the rule off.
    #[test]
    fn the_next_cut_waits_for_an_unordered_batch() {
        let (max, busy) = (Duration::from_millis(50), Duration::from_millis(200));
        let cfg = BatchConfig::default();
        assert_eq!((cfg.max_unordered, cfg.busy_delay_ms), (1, 200));
        let mut m = Mempool::new(MempoolLimits::default(), [ChainId(1)]);
        assert_eq!(cut_delay(&cfg, &m, max, busy), max, "nothing unordered");
        queue(&mut m, 1);
        let cut = m.cut(1 << 20).unwrap();
        assert_eq!(cut_delay(&cfg, &m, max, busy), max, "one batch cut, not ordered, but nothing queued");
        for sender in 2..200 {
            queue(&mut m, sender);
        }
        assert!(m.queued_bytes() >= cfg.busy_bytes);
        assert_eq!(cut_delay(&cfg, &m, max, busy), busy, "one batch cut, not ordered, under load");
        assert_eq!(cut_delay(&cfg, &m, Duration::ZERO, busy), Duration::ZERO, "leaving");
        let off = BatchConfig { max_unordered: 0, ..BatchConfig::default() };
        assert_eq!(cut_delay(&off, &m, max, busy), max, "rule off");
        let two = BatchConfig { max_unordered: 2, ..BatchConfig::default() };
        assert_eq!(cut_delay(&two, &m, max, busy), max, "one of two allowed");
        m.certified(cut.id, lamina_primitives::Digest([9; 32]));
        m.ordered(&[lamina_primitives::Digest([9; 32])]);
        assert_eq!(cut_delay(&cfg, &m, max, busy), max, "ordered");
    }
}
