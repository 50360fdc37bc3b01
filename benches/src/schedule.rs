//! The open-loop schedule: fixed intended send times for a constant offered rate.
//!
//! Transaction `i` of a point is *intended* to be sent at `t0 + i / rate`. The generator
//! sends whatever is due when it wakes (every burst interval), and every latency is
//! measured from the intended time, never from the actual send: if the generator or the
//! system falls behind, the delay shows up in the percentiles instead of silently
//! lowering the offered load (no coordinated omission).

/// Intended send times of `count` transactions at `rate` tx/s.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    rate: f64,
    count: u64,
}

impl Schedule {
    /// A schedule of `count` transactions at `rate` tx/s (`rate` finite and > 0).
    pub fn new(rate: f64, count: u64) -> Self {
        assert!(rate.is_finite() && rate > 0.0, "schedule rate must be finite and positive (validated by the spec)");
        Schedule { rate, count }
    }

    /// Number of transactions for `seconds` of load at `rate` (rounded up).
    pub fn count_for(rate: f64, seconds: f64) -> u64 {
        (rate * seconds).ceil().max(0.0) as u64
    }

    /// Offered rate (tx/s).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Number of transactions.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Intended send time of transaction `i`, in nanoseconds after `t0`. Non-decreasing
    /// in `i`.
    pub fn intended_ns(&self, i: u64) -> u64 {
        (i as f64 * 1e9 / self.rate) as u64
    }

    /// How many transactions are due at `ns` after `t0`: the number of `i < count` with
    /// `intended_ns(i) <= ns`.
    pub fn due_by(&self, ns: u64) -> u64 {
        // Estimate, then correct against intended_ns itself so both agree exactly.
        let mut i = ((ns as f64 * self.rate / 1e9) as u64).min(self.count);
        while i > 0 && self.intended_ns(i - 1) > ns {
            i -= 1;
        }
        while i < self.count && self.intended_ns(i) <= ns {
            i += 1;
        }
        i
    }

    /// Index range `[lo, hi)` of the transactions intended in `[from_ns, to_ns)`.
    pub fn range_intended(&self, from_ns: u64, to_ns: u64) -> (u64, u64) {
        let lo = if from_ns == 0 { 0 } else { self.due_by(from_ns - 1) };
        let hi = if to_ns == 0 { 0 } else { self.due_by(to_ns - 1) };
        (lo, hi.max(lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_by_agrees_with_intended_times() {
        for rate in [1.0, 3.0, 999.5, 40_000.0, 1_234_567.0] {
            let s = Schedule::new(rate, 5000);
            for i in 0..5000 {
                let t = s.intended_ns(i);
                assert!(s.due_by(t) > i, "tx {i} is due at its own time");
                if t > 0 && (i == 0 || s.intended_ns(i - 1) < t) {
                    assert_eq!(s.due_by(t - 1), i, "rate {rate}: not due just before");
                }
            }
            assert_eq!(s.due_by(u64::MAX / 2), 5000);
        }
    }

    #[test]
    fn ranges_partition_the_schedule() {
        let s = Schedule::new(1000.0, 3000);
        let mut total = 0;
        let mut prev_hi = 0;
        for k in 0..4 {
            let (lo, hi) = s.range_intended(k * 1_000_000_000, (k + 1) * 1_000_000_000);
            assert_eq!(lo, prev_hi);
            total += hi - lo;
            prev_hi = hi;
        }
        assert_eq!(total, 3000);
        assert_eq!(s.range_intended(0, 1_000_000_000), (0, 1000));
        assert_eq!(Schedule::count_for(1000.0, 2.5), 2500);
    }
}
