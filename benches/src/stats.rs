//! From per-transaction records to a point's figures.
//!
//! Definitions (also in the results schema):
//!
//! * **measurement window**: `[t0 + warmup, t0 + warmup + duration)`. Latency statistics
//!   cover the transactions *intended* in the window; throughputs count completions
//!   *observed* in the window, divided by its length (a saturated system shows its
//!   capacity, an unsaturated one the offered rate).
//! * **consensus latency**: finalized − intended; **end-to-end latency**: executed −
//!   intended. Both from the intended send time (no coordinated omission).
//! * **censored**: an accepted transaction of the window that never reached the stage
//!   before the point ended enters the histogram with latency `end − intended` (a lower
//!   bound), so a stalled system cannot hide its worst transactions by never finishing
//!   them. Refused transactions (busy, rejected) are counted, not timed.
//! * **generator lag**: sent − intended; large values mean the load generator itself
//!   could not keep up (the latencies are still honest, the offered rate was not).

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::schedule::Schedule;
use crate::tracker::{ExecStatus, Records, SubmitState};

/// Percentiles of one latency distribution, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencySummary {
    /// Transactions timed (completed + censored).
    pub count: u64,
    /// Of which censored (not completed when the point ended; timed as a lower bound).
    pub censored: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Smallest.
    pub min_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// A latency histogram in microseconds (3 significant digits).
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    hist: Histogram<u64>,
    censored: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram (1 µs .. auto-resized, 3 significant digits).
    pub fn new() -> Self {
        let mut hist = Histogram::<u64>::new(3).expect("3 significant digits is a valid HdrHistogram precision");
        hist.auto(true);
        LatencyHistogram { hist, censored: 0 }
    }

    /// Records one latency in nanoseconds.
    pub fn record_ns(&mut self, ns: u64, censored: bool) {
        // Auto-resize makes recording infallible; saturate rather than panic regardless.
        let us = (ns / 1000).max(1);
        let _ = self.hist.record(us);
        if censored {
            self.censored += 1;
        }
    }

    /// Number of values.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// True if no value was recorded.
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// Latency at quantile `q` in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// Percentile summary.
    pub fn summary(&self) -> LatencySummary {
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.hist.len(),
            censored: self.censored,
            mean_ms: self.hist.mean() / 1000.0,
            p50_ms: self.quantile_ms(0.50),
            p90_ms: self.quantile_ms(0.90),
            p99_ms: self.quantile_ms(0.99),
            p999_ms: self.quantile_ms(0.999),
            min_ms: self.hist.min() as f64 / 1000.0,
            max_ms: self.hist.max() as f64 / 1000.0,
        }
    }

    /// The CDF as `(latency_ms, fraction)` points: one per percent, then the tail
    /// (99.9, 99.99, 100).
    pub fn cdf(&self) -> Vec<(f64, f64)> {
        if self.hist.is_empty() {
            return Vec::new();
        }
        let mut qs: Vec<f64> = (0..=99).map(|p| p as f64 / 100.0).collect();
        qs.extend([0.995, 0.999, 0.9999, 1.0]);
        qs.into_iter().map(|q| (self.quantile_ms(q), q)).collect()
    }
}

/// Submit answers of a point.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SubmitCounts {
    /// Transactions scheduled.
    pub scheduled: u64,
    /// Handed to the target.
    pub sent: u64,
    /// Taken (accepted or duplicate).
    pub accepted: u64,
    /// Refused busy (after retries, if any).
    pub busy: u64,
    /// Refused for other reasons.
    pub rejected: u64,
    /// Never answered before the point ended.
    pub unanswered: u64,
}

/// Receipt statuses of a point.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExecCounts {
    /// Applied.
    pub success: u64,
    /// Included, operation failed.
    pub failed: u64,
    /// Included, rejected.
    pub rejected: u64,
    /// Rejected receipts by reason, for those the target looked up before the point
    /// ended (a target that cannot tell leaves it empty).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub rejected_reasons: std::collections::BTreeMap<String, u64>,
    /// The first few rejected receipts looked up, as the target described them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_samples: Vec<String>,
}

/// One bucket of a point's time series.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TimeBucket {
    /// Bucket start, seconds after t0.
    pub t_s: f64,
    /// Transactions intended in the bucket, per second.
    pub offered_tps: f64,
    /// Handed to the target in the bucket, per second.
    pub sent_tps: f64,
    /// Finalized in the bucket, per second.
    pub finalized_tps: f64,
    /// Executed in the bucket, per second.
    pub executed_tps: f64,
    /// Consensus latency p50 of the transactions intended in the bucket (ms).
    pub consensus_p50_ms: Option<f64>,
    /// Consensus latency p99 (ms).
    pub consensus_p99_ms: Option<f64>,
    /// End-to-end latency p50 (ms).
    pub e2e_p50_ms: Option<f64>,
    /// End-to-end latency p99 (ms).
    pub e2e_p99_ms: Option<f64>,
}

/// Everything computed from one point's records.
#[derive(Clone, Debug, Default)]
pub struct PointStats {
    /// Submit answers.
    pub submit: SubmitCounts,
    /// Receipt statuses (all transactions of the point).
    pub exec: ExecCounts,
    /// Finalized in the window, per second.
    pub finalized_tps: f64,
    /// Executed in the window, per second.
    pub executed_tps: f64,
    /// Consensus latency of the window's transactions.
    pub consensus: LatencyHistogram,
    /// End-to-end latency of the window's transactions.
    pub e2e: LatencyHistogram,
    /// Generator lag (sent − intended) of the window's transactions.
    pub lag: LatencyHistogram,
    /// Time series over the whole point.
    pub series: Vec<TimeBucket>,
    /// Bytes of the transactions finalized in the window, per second.
    pub finalized_bytes_per_s: f64,
}

/// Inputs of [`compute`] besides the records.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// The point's schedule.
    pub schedule: Schedule,
    /// Warm-up excluded from the statistics.
    pub warmup: Duration,
    /// Length of the measurement window.
    pub duration: Duration,
    /// When the point ended, after t0 (censoring time).
    pub end: Duration,
    /// Time-series bucket.
    pub bucket: Duration,
}

/// Computes a point's statistics. `finalized_stage` / `executed_stage` say whether the
/// target observes each stage (an unobserved stage gets no histogram entries).
pub fn compute(r: &Records, w: &Window, finalized_stage: bool, executed_stage: bool) -> PointStats {
    let n = r.sent.len();
    let w0 = w.warmup.as_nanos() as u64;
    let w1 = w0 + w.duration.as_nanos() as u64;
    let end = w.end.as_nanos() as u64;
    let (lo, hi) = w.schedule.range_intended(w0, w1);
    let mut st = PointStats { consensus: LatencyHistogram::new(), e2e: LatencyHistogram::new(), ..Default::default() };

    // Counts over the whole point.
    st.submit.scheduled = n as u64;
    for i in 0..n {
        if r.sent[i] != 0 {
            st.submit.sent += 1;
        }
        match r.submit[i] {
            SubmitState::Accepted | SubmitState::Duplicate => st.submit.accepted += 1,
            SubmitState::Busy => st.submit.busy += 1,
            SubmitState::Rejected => st.submit.rejected += 1,
            SubmitState::Pending => st.submit.unanswered += 1,
        }
        match r.exec[i] {
            Some(ExecStatus::Success) => st.exec.success += 1,
            Some(ExecStatus::Failed) => st.exec.failed += 1,
            Some(ExecStatus::Rejected) => st.exec.rejected += 1,
            None => {}
        }
    }

    // Latency of the window's transactions.
    for i in lo as usize..hi as usize {
        let intended = w.schedule.intended_ns(i as u64);
        if let Some(sent) = Records::ns(r.sent[i]) {
            st.lag.record_ns(sent.saturating_sub(intended), false);
        }
        let refused = matches!(r.submit[i], SubmitState::Busy | SubmitState::Rejected);
        for (enabled, slot, hist) in
            [(finalized_stage, r.finalized[i], &mut st.consensus), (executed_stage, r.executed[i], &mut st.e2e)]
        {
            if !enabled {
                continue;
            }
            match Records::ns(slot) {
                Some(t) => hist.record_ns(t.saturating_sub(intended), false),
                None if !refused => hist.record_ns(end.saturating_sub(intended), true),
                None => {}
            }
        }
    }

    // Throughput: completions observed in the window.
    let secs = w.duration.as_secs_f64().max(1e-9);
    let in_window = |slot: u64| Records::ns(slot).is_some_and(|t| t >= w0 && t < w1);
    let fin = (0..n).filter(|&i| in_window(r.finalized[i]));
    let (mut fin_n, mut fin_bytes) = (0u64, 0u64);
    for i in fin {
        fin_n += 1;
        fin_bytes += u64::from(r.sizes[i]);
    }
    st.finalized_tps = fin_n as f64 / secs;
    st.finalized_bytes_per_s = fin_bytes as f64 / secs;
    st.executed_tps = (0..n).filter(|&i| in_window(r.executed[i])).count() as f64 / secs;

    st.series = series(r, w, finalized_stage, executed_stage);
    st
}

fn series(r: &Records, w: &Window, finalized_stage: bool, executed_stage: bool) -> Vec<TimeBucket> {
    let b = w.bucket.as_nanos().max(1) as u64;
    let end = w.end.as_nanos() as u64;
    let nb = end.div_ceil(b).max(1) as usize;
    let bs = w.bucket.as_secs_f64().max(1e-9);
    let mut out: Vec<TimeBucket> =
        (0..nb).map(|k| TimeBucket { t_s: (k as u64 * b) as f64 / 1e9, ..Default::default() }).collect();
    let bucket_of = |ns: u64| ((ns / b) as usize).min(nb - 1);
    let n = r.sent.len();
    for i in 0..n {
        out[bucket_of(w.schedule.intended_ns(i as u64))].offered_tps += 1.0;
        if let Some(t) = Records::ns(r.sent[i]) {
            out[bucket_of(t)].sent_tps += 1.0;
        }
        if let Some(t) = Records::ns(r.finalized[i]) {
            out[bucket_of(t)].finalized_tps += 1.0;
        }
        if let Some(t) = Records::ns(r.executed[i]) {
            out[bucket_of(t)].executed_tps += 1.0;
        }
    }
    for (k, bucket) in out.iter_mut().enumerate() {
        bucket.offered_tps /= bs;
        bucket.sent_tps /= bs;
        bucket.finalized_tps /= bs;
        bucket.executed_tps /= bs;
        let (lo, hi) = w.schedule.range_intended(k as u64 * b, (k as u64 + 1) * b);
        let mut cons = LatencyHistogram::new();
        let mut e2e = LatencyHistogram::new();
        for i in lo as usize..hi as usize {
            let intended = w.schedule.intended_ns(i as u64);
            let refused = matches!(r.submit[i], SubmitState::Busy | SubmitState::Rejected);
            if refused {
                continue;
            }
            if finalized_stage {
                let t = Records::ns(r.finalized[i]);
                cons.record_ns(t.unwrap_or(end).saturating_sub(intended), t.is_none());
            }
            if executed_stage {
                let t = Records::ns(r.executed[i]);
                e2e.record_ns(t.unwrap_or(end).saturating_sub(intended), t.is_none());
            }
        }
        if !cons.is_empty() {
            bucket.consensus_p50_ms = Some(cons.quantile_ms(0.5));
            bucket.consensus_p99_ms = Some(cons.quantile_ms(0.99));
        }
        if !e2e.is_empty() {
            bucket.e2e_p50_ms = Some(e2e.quantile_ms(0.5));
            bucket.e2e_p99_ms = Some(e2e.quantile_ms(0.99));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records of `n` transactions at `rate`, each finalized `lat_f(i)` ns and executed
    /// `lat_e(i)` ns after its intended time.
    fn records(rate: f64, n: u64, lat_f: impl Fn(u64) -> u64, lat_e: impl Fn(u64) -> u64) -> (Records, Schedule) {
        let s = Schedule::new(rate, n);
        let mut r = Records::default();
        for i in 0..n {
            let t = s.intended_ns(i);
            r.sent.push(t + 1);
            r.accepted.push(t + 1);
            r.finalized.push(t + lat_f(i) + 1);
            r.executed.push(t + lat_e(i) + 1);
            r.submit.push(SubmitState::Accepted);
            r.exec.push(Some(ExecStatus::Success));
            r.sizes.push(100);
        }
        (r, s)
    }

    #[test]
    fn percentiles_and_throughput_of_a_known_distribution() {
        // 1000 tx/s for 3 s; latency of tx i in the window is (i mod 100 + 1) ms for
        // consensus and twice that end to end: p50 = 50 ms, p99 = 99 ms.
        let (r, s) = records(1000.0, 3000, |i| (i % 100 + 1) * 1_000_000, |i| 2 * (i % 100 + 1) * 1_000_000);
        let w = Window {
            schedule: s,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(1),
            end: Duration::from_secs(4),
            bucket: Duration::from_secs(1),
        };
        let st = compute(&r, &w, true, true);
        let c = st.consensus.summary();
        assert_eq!(c.count, 1000);
        assert_eq!(c.censored, 0);
        assert!((c.p50_ms - 50.0).abs() < 0.1, "{c:?}");
        assert!((c.p99_ms - 99.0).abs() < 0.1, "{c:?}");
        assert!((c.mean_ms - 50.5).abs() < 0.1, "{c:?}");
        assert!((c.min_ms - 1.0).abs() < 0.01 && (c.max_ms - 100.0).abs() < 0.1);
        let e = st.e2e.summary();
        assert!((e.p50_ms - 100.0).abs() < 0.1, "{e:?}");
        // Completions in [1 s, 2 s): steady state at 1000 tx/s.
        assert!((st.finalized_tps - 1000.0).abs() <= 5.0, "{}", st.finalized_tps);
        assert!((st.executed_tps - 1000.0).abs() <= 5.0, "{}", st.executed_tps);
        assert!((st.finalized_bytes_per_s - 100_000.0).abs() <= 500.0);
        assert_eq!(st.submit.accepted, 3000);
        assert_eq!(st.exec.success, 3000);
        // The CDF is monotone and ends at 1.
        let cdf = st.consensus.cdf();
        assert!(cdf.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(cdf.last().unwrap().1, 1.0);
        // Series: 4 one-second buckets; the first three offered 1000/s.
        assert_eq!(st.series.len(), 4);
        assert!(st.series[..3].iter().all(|b| (b.offered_tps - 1000.0).abs() < 1e-9));
        assert!(st.series[1].consensus_p99_ms.is_some());
    }

    #[test]
    fn unfinished_transactions_are_censored_not_dropped() {
        // Half the window never finalizes; the point ended at 5 s.
        let (mut r, s) = records(100.0, 300, |_| 1_000_000, |_| 2_000_000);
        for i in 100..150 {
            r.finalized[i] = 0;
            r.executed[i] = 0;
        }
        // And 10 were refused: not timed.
        for i in 150..160 {
            r.finalized[i] = 0;
            r.executed[i] = 0;
            r.submit[i] = SubmitState::Busy;
        }
        let w = Window {
            schedule: s,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(1),
            end: Duration::from_secs(5),
            bucket: Duration::from_secs(1),
        };
        let st = compute(&r, &w, true, true);
        let c = st.consensus.summary();
        assert_eq!(c.count, 90);
        assert_eq!(c.censored, 50);
        // Censored latencies are end − intended >= 3.5 s, so the median is above 3 s.
        assert!(c.p50_ms >= 3000.0, "{c:?}");
        assert_eq!(st.submit.busy, 10);
    }

    #[test]
    fn unobserved_stage_has_no_latency() {
        let (r, s) = records(100.0, 100, |_| 1_000_000, |_| 0);
        let w = Window {
            schedule: s,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            end: Duration::from_secs(2),
            bucket: Duration::from_millis(500),
        };
        let st = compute(&r, &w, true, false);
        assert!(st.e2e.is_empty());
        assert_eq!(st.consensus.len(), 100);
        assert_eq!(st.series.len(), 4);
        assert!(st.series.iter().all(|b| b.e2e_p50_ms.is_none()));
    }
}
