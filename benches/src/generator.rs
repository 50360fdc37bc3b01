//! The open-loop, constant-rate load generator.
//!
//! [`run_open_loop`] sends a point's pre-signed transactions on their [`Schedule`]:
//! it wakes every `burst` interval (or at the next intended time, when that is later),
//! hands everything due to the target as one burst in a task of its own, and goes
//! straight back to the schedule. It never waits for a submit to answer before sending
//! the next burst, so a slow or stalled target cannot slow the offered load down; and if
//! the generator itself falls behind (a loaded machine), it sends everything overdue at
//! once and the lateness stays in the latencies, which run from the *intended* time.
//! `sent − intended` is recorded per transaction so results can show whether the
//! generator kept up.
//!
//! Busy answers (backpressure) are retried with exponential backoff until the drain
//! deadline under [`BusyPolicy::Retry`], or counted as refused under
//! [`BusyPolicy::Drop`]; either way the latency clock keeps running from the intended
//! time.
//!
//! Everything here uses tokio's clock, so tests run it on paused (virtual) time.

use std::sync::Arc;
use std::time::Duration;

use lamina_interfaces::{SubmitError, SubmitOutcome};
use lamina_primitives::Transaction;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::schedule::Schedule;
use crate::target::LoadTarget;
use crate::tracker::{SubmitState, Tracker};

/// What to do with transactions the target answers `Busy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "policy")]
pub enum BusyPolicy {
    /// Count them as refused.
    Drop,
    /// Resubmit after `backoff_ms`, doubling up to 64x, until the drain deadline.
    Retry {
        /// First backoff in milliseconds.
        backoff_ms: u64,
    },
}

impl Default for BusyPolicy {
    fn default() -> Self {
        BusyPolicy::Retry { backoff_ms: 5 }
    }
}

/// Timing of one point's load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadPlan {
    /// Offered rate, tx/s.
    pub rate: f64,
    /// When the first transaction is intended.
    pub t0: Instant,
    /// Burst interval: the generator wakes this often at high rates.
    pub burst: Duration,
    /// Longest time to wait for completions after the last send.
    pub drain: Duration,
    /// Busy handling.
    pub busy: BusyPolicy,
}

/// How the load phase of a point went.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadRun {
    /// Time origin (intended time of transaction 0).
    pub t0: Instant,
    /// When the last burst was handed to the target.
    pub send_end: Instant,
    /// When the point ended (all completed, or the drain deadline).
    pub end: Instant,
    /// Bursts sent.
    pub bursts: u64,
    /// True if every transaction completed (or was refused) before the deadline.
    pub drained: bool,
}

/// Runs one point: sends `txs` (indexed by `tracker`, in schedule order) to `target` at
/// `plan.rate`, then waits for completions up to `plan.drain`.
pub async fn run_open_loop<T: LoadTarget>(
    target: Arc<T>,
    txs: Vec<Transaction>,
    plan: LoadPlan,
    tracker: Arc<Tracker>,
) -> LoadRun {
    let n = txs.len();
    let sched = Schedule::new(plan.rate, n as u64);
    let observes = target.observes();
    tracker.start(plan.t0, !observes.executed);
    let burst = plan.burst.max(Duration::from_micros(100));
    // Retries may continue until the latest possible end of the point.
    let send_span = Duration::from_nanos(sched.intended_ns(n.saturating_sub(1) as u64));
    let retry_deadline = plan.t0 + send_span + plan.drain;

    let mut tasks = JoinSet::new();
    let mut it = txs.into_iter();
    let mut next = 0usize;
    let mut bursts = 0u64;
    let mut tick = 0u64;
    while next < n {
        // Wake at the next burst boundary, or at the next intended time if later.
        let boundary = plan.t0 + Duration::from_nanos((burst.as_nanos() as u64).saturating_mul(tick));
        let intended = plan.t0 + Duration::from_nanos(sched.intended_ns(next as u64));
        tokio::time::sleep_until(boundary.max(intended)).await;
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(plan.t0);
        let due = sched.due_by(elapsed.as_nanos() as u64) as usize;
        if due > next {
            let batch: Vec<Transaction> = it.by_ref().take(due - next).collect();
            tracker.mark_sent(next, due, now);
            tasks.spawn(submit_burst(target.clone(), tracker.clone(), next, batch, plan.busy, retry_deadline));
            bursts += 1;
            next = due;
        }
        while tasks.try_join_next().is_some() {}
        // Next boundary strictly after now (skip missed ones: everything due was sent).
        tick = (elapsed.as_nanos() / burst.as_nanos()) as u64 + 1;
    }
    let send_end = Instant::now();

    // Drain: until every transaction's life is over, or the deadline.
    let deadline = send_end + plan.drain;
    let poll = Duration::from_millis(5);
    let mut drained = tracker.closed() >= n as u64;
    while !drained && Instant::now() < deadline {
        tokio::time::sleep(poll.min(deadline.saturating_duration_since(Instant::now()))).await;
        while tasks.try_join_next().is_some() {}
        drained = tracker.closed() >= n as u64;
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    LoadRun { t0: plan.t0, send_end, end: Instant::now(), bursts, drained }
}

/// Submits one burst (first transaction at index `first`), retrying `Busy` ones under
/// the policy, and records the answers.
async fn submit_burst<T: LoadTarget>(
    target: Arc<T>,
    tracker: Arc<Tracker>,
    first: usize,
    txs: Vec<Transaction>,
    busy: BusyPolicy,
    retry_deadline: Instant,
) {
    let mut indices: Vec<usize> = (first..first + txs.len()).collect();
    let mut txs = txs;
    let mut backoff = match busy {
        BusyPolicy::Retry { backoff_ms } => Duration::from_millis(backoff_ms.max(1)),
        BusyPolicy::Drop => Duration::ZERO,
    };
    let max_backoff = backoff * 64;
    loop {
        let keep = matches!(busy, BusyPolicy::Retry { .. }).then(|| txs.clone());
        let answers = target.submit(txs).await;
        let now = Instant::now();
        let mut retry_idx = Vec::new();
        let mut retry_txs = Vec::new();
        for (k, &i) in indices.iter().enumerate() {
            let state = match answers.get(k) {
                Some(Ok(SubmitOutcome::Accepted(_))) => SubmitState::Accepted,
                Some(Ok(SubmitOutcome::Duplicate(_))) => SubmitState::Duplicate,
                Some(Err(SubmitError::Busy(_))) => {
                    if let Some(kept) = &keep
                        && now + backoff < retry_deadline
                    {
                        retry_idx.push(i);
                        retry_txs.push(kept[k].clone());
                        continue;
                    }
                    SubmitState::Busy
                }
                // Refused, or the target answered fewer outcomes than transactions.
                Some(Err(_)) | None => SubmitState::Rejected,
            };
            tracker.mark_submitted(i, state, now);
        }
        if retry_idx.is_empty() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max_backoff);
        indices = retry_idx;
        txs = retry_txs;
    }
}
