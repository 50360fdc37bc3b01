//! Synthetic, in-process targets: a queueing model with a known service time and
//! capacity, optionally stalling for a window. For testing the harness itself (and for
//! showing what its plots look like) without a cluster.
//!
//! The model is a FIFO queue with `servers` identical servers, each taking
//! `service_time` per transaction: a transaction arriving at `a` starts at
//! `max(a, earliest free server)` and is *finalized* at `start + service_time +
//! finalize_delay`, then *executed* `execute_delay` later. Capacity is
//! `servers / service_time` tx/s; above it the queue, and the latency, grow without
//! bound. With `queue_limit`, submissions beyond that many waiting transactions are
//! answered [`SubmitError::Busy`] (backpressure).
//!
//! A **stall** (`stall: after, length`, measured from the first submit) models a system
//! that stops: during the window submit calls do not answer until it ends, and no
//! transaction starts service inside it.
//!
//! Completions are reported with their *model* times (not the time the emitter task
//! woke up to report them), so latencies are exact even on a loaded machine, and exactly
//! reproducible on tokio's paused clock.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lamina_interfaces::{SubmitError, SubmitOutcome};
use lamina_primitives::{Transaction, TxId};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::BenchError;
use crate::cluster::Deployment;
use crate::target::{LoadTarget, Observes, SubmitResults, TargetFactory, TargetSample};
use crate::tracker::{CompletionSink, ExecStatus};

/// A stall window, relative to the first submit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    /// Start of the stall after the first submit.
    pub after: Duration,
    /// Its length.
    pub length: Duration,
}

/// Parameters of the synthetic target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntheticConfig {
    /// Service time per transaction per server.
    pub service_time: Duration,
    /// Servers working in parallel (capacity = servers / service_time).
    pub servers: usize,
    /// Answer `Busy` when more than this many transactions wait (None: unbounded).
    pub queue_limit: Option<usize>,
    /// From end of service to finalized.
    pub finalize_delay: Duration,
    /// From finalized to executed; `None`: the target reports finalization only.
    pub execute_delay: Option<Duration>,
    /// Optional stall.
    pub stall: Option<Stall>,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            service_time: Duration::from_micros(10),
            servers: 1,
            queue_limit: None,
            finalize_delay: Duration::from_millis(5),
            execute_delay: Some(Duration::from_millis(5)),
            stall: None,
        }
    }
}

impl SyntheticConfig {
    /// Capacity in tx/s.
    pub fn capacity(&self) -> f64 {
        self.servers as f64 / self.service_time.as_secs_f64().max(1e-12)
    }
}

struct Event {
    id: TxId,
    finalized: Instant,
    executed: Option<Instant>,
}

struct Model {
    /// Free times of the servers, earliest first (constant service time keeps them in
    /// assignment order).
    free: VecDeque<Instant>,
    /// Modelled completions not yet reported, in finalization order.
    pending_final: VecDeque<Event>,
    /// Finalized, execution not yet reported, in execution order.
    pending_exec: VecDeque<(TxId, Instant)>,
    /// Start times of queued transactions (to count the waiting ones).
    starts: VecDeque<Instant>,
    epoch: Option<Instant>,
}

struct Inner {
    cfg: SyntheticConfig,
    model: Mutex<Model>,
    wake: Notify,
    sink: CompletionSink,
    da_bytes: AtomicU64,
    finalized: AtomicU64,
}

/// The synthetic target (see the module docs). Dropping it stops its emitter task.
pub struct SyntheticTarget {
    inner: Arc<Inner>,
    emitter: JoinHandle<()>,
}

impl std::fmt::Debug for SyntheticTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyntheticTarget").field("config", &self.inner.cfg).finish_non_exhaustive()
    }
}

impl Drop for SyntheticTarget {
    fn drop(&mut self) {
        self.emitter.abort();
    }
}

impl SyntheticTarget {
    /// Starts the target (spawns its emitter on the current tokio runtime).
    pub fn start(cfg: SyntheticConfig, sink: CompletionSink) -> Self {
        let servers = cfg.servers.max(1);
        let now = Instant::now();
        let inner = Arc::new(Inner {
            model: Mutex::new(Model {
                free: (0..servers).map(|_| now).collect(),
                pending_final: VecDeque::new(),
                pending_exec: VecDeque::new(),
                starts: VecDeque::new(),
                epoch: None,
            }),
            cfg,
            wake: Notify::new(),
            sink,
            da_bytes: AtomicU64::new(0),
            finalized: AtomicU64::new(0),
        });
        let emitter = tokio::spawn(emit(inner.clone()));
        SyntheticTarget { inner, emitter }
    }

    /// Transactions finalized so far (all points).
    pub fn finalized_total(&self) -> u64 {
        self.inner.finalized.load(Ordering::Relaxed)
    }

    /// The stall window in absolute time, once the first submit fixed the epoch.
    fn stall_window(cfg: &SyntheticConfig, epoch: Instant) -> Option<(Instant, Instant)> {
        cfg.stall.map(|s| (epoch + s.after, epoch + s.after + s.length))
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enqueues `txs` arriving at `arrival`; returns the per-transaction answers.
    fn enqueue(&self, txs: &[Transaction], arrival: Instant) -> SubmitResults {
        let cfg = &self.cfg;
        let mut m = self.lock();
        let epoch = *m.epoch.get_or_insert(arrival);
        let stall = SyntheticTarget::stall_window(cfg, epoch);
        while m.starts.front().is_some_and(|s| *s <= arrival) {
            m.starts.pop_front();
        }
        let mut out = Vec::with_capacity(txs.len());
        let mut bytes = 0u64;
        for tx in txs {
            if cfg.queue_limit.is_some_and(|limit| m.starts.len() >= limit) {
                out.push(Err(SubmitError::Busy("synthetic queue full".into())));
                continue;
            }
            let free = m.free.pop_front().unwrap_or(arrival);
            let mut start = free.max(arrival);
            if let Some((s0, s1)) = stall
                && start >= s0
                && start < s1
            {
                start = s1;
            }
            let done = start + cfg.service_time;
            m.free.push_back(done);
            m.starts.push_back(start);
            let finalized = done + cfg.finalize_delay;
            m.pending_final.push_back(Event {
                id: tx.id(),
                finalized,
                executed: cfg.execute_delay.map(|d| finalized + d),
            });
            bytes += tx.approx_size() as u64;
            out.push(Ok(SubmitOutcome::Accepted(tx.id())));
        }
        self.da_bytes.fetch_add(bytes, Ordering::Relaxed);
        drop(m);
        self.wake.notify_one();
        out
    }
}

/// Reports modelled completions once their time has come.
async fn emit(inner: Arc<Inner>) {
    loop {
        let now = Instant::now();
        let mut fin = Vec::new();
        let mut exe = Vec::new();
        let next = {
            let mut m = inner.lock();
            while m.pending_final.front().is_some_and(|e| e.finalized <= now) {
                let Some(e) = m.pending_final.pop_front() else { break };
                if let Some(x) = e.executed {
                    m.pending_exec.push_back((e.id, x));
                }
                fin.push((e.id, e.finalized));
            }
            while m.pending_exec.front().is_some_and(|e| e.1 <= now) {
                let Some((id, at)) = m.pending_exec.pop_front() else { break };
                exe.push((id, ExecStatus::Success, at));
            }
            let a = m.pending_final.front().map(|e| e.finalized);
            let b = m.pending_exec.front().map(|e| e.1);
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (x, y) => x.or(y),
            }
        };
        if !fin.is_empty() {
            inner.finalized.fetch_add(fin.len() as u64, Ordering::Relaxed);
            inner.sink.finalized(&fin);
        }
        if !exe.is_empty() {
            inner.sink.executed(&exe);
        }
        match next {
            Some(t) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(t) => {}
                    _ = inner.wake.notified() => {}
                }
            }
            None => inner.wake.notified().await,
        }
    }
}

impl LoadTarget for SyntheticTarget {
    fn observes(&self) -> Observes {
        Observes { finalized: true, executed: self.inner.cfg.execute_delay.is_some() }
    }

    fn submit(&self, txs: Vec<Transaction>) -> impl Future<Output = SubmitResults> + Send {
        let inner = self.inner.clone();
        async move {
            let arrival = Instant::now();
            let out = inner.enqueue(&txs, arrival);
            // A stalled system does not answer until the stall ends.
            let epoch = inner.lock().epoch;
            if let Some((s0, s1)) = epoch.and_then(|e| SyntheticTarget::stall_window(&inner.cfg, e))
                && arrival >= s0
                && arrival < s1
            {
                tokio::time::sleep_until(s1).await;
            }
            out
        }
    }

    fn sample(&self) -> impl Future<Output = TargetSample> + Send {
        std::future::ready(TargetSample { da_bytes: Some(self.inner.da_bytes.load(Ordering::Relaxed)), height: None })
    }
}

/// A [`TargetFactory`] for [`SyntheticTarget`]s, usable with any cluster.
#[derive(Clone, Debug, Default)]
pub struct SyntheticFactory {
    /// The model of every target it connects.
    pub config: SyntheticConfig,
}

impl<H> TargetFactory<H> for SyntheticFactory {
    type Target = SyntheticTarget;

    fn connect(
        &self,
        _deployment: &Deployment<H>,
        sink: CompletionSink,
    ) -> impl Future<Output = Result<SyntheticTarget, BenchError>> {
        let cfg = self.config.clone();
        async move {
            if cfg.servers == 0 {
                return Err(BenchError::Target("a synthetic target needs at least one server".into()));
            }
            Ok(SyntheticTarget::start(cfg, sink))
        }
    }
}
