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
) {
    let inflight = Arc::new(Semaphore::new(cfg.max_inflight));
    // Certificates reach the core in cut order, whatever order the concurrent
    // dispersals finish in: a sender's transactions are cut in nonce order, and the core
    // orders a validator's certificates first come, first served, so this keeps each
    // sender's transactions in nonce order in the log.
    let (order_tx, mut order_rx) = mpsc::unbounded_channel::<oneshot::Receiver<(Input, Vec<TxId>)>>();
    let forwarder_log = log.clone();
    let forwarder = tokio::spawn(async move {
        while let Some(rx) = order_rx.recv().await {
            // A dispersal abandoned at shutdown drops its sender: skip it.
            let Ok((input, ids)) = rx.await else { continue };
            // The certificate is durable in the intake log, in cut order, before the core
            // gets it: a restart proposes it again instead of queueing its
            // transactions again, and never has a later batch without an earlier one.
            if let (Some(log), Input::Certified { cert, .. }) = (&forwarder_log, &input) {
                let (log, cert) = (log.clone(), cert.clone());
                match tokio::task::spawn_blocking(move || log.certified(&cert, &ids)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(target: TARGET, error = %e, "intake log: certificate not durable"),
                    Err(e) => tracing::error!(target: TARGET, error = %e, "intake log task failed"),
                }
            }
            if to_core.send(input).await.is_err() {
                return;
            }
        }
    });
    let max_delay = Duration::from_millis(cfg.max_delay_ms);
    loop {
        // A validator leaving the committee (intake already refuses) cuts what it holds
        // at once, so that it is certified and announced while its core still runs.
        let leaving = shared.leaving_after.load(Ordering::Relaxed) > 0;
        let delay = if leaving { Duration::ZERO } else { max_delay };
        let tick = if leaving { LEAVING_TICK } else { (delay / 2).max(Duration::from_millis(1)) };
        // With nothing queued or parked, sleep until intake wakes us (it does when the
        // mempool stops being idle): an idle validator does not tick.
        let idle = mempool.lock().is_idle();
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(tick), if !idle => {}
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
