//! Sweeps: which offered loads to run, and when to stop.
//!
//! * Offered load: a fixed list, or **adaptive** (the Mysticeti/starfish orchestrator's
//!   method): multiply the rate by `coarse_factor` (x4) while points pass, and after
//!   the first failing point go back to the last passing rate and climb by
//!   `fine_factor` (x1.25) until a point fails again, the failing rate is reached, or
//!   `max_points` / `max_rate` is hit. The result brackets the saturation point.
//! * A point **fails** the [`StopRule`] when its latency (the chosen percentile of the
//!   chosen stage) exceeds the goal, or when achieved throughput falls below
//!   `min_achieved_ratio` x offered. A fixed list also stops at the first failing point
//!   when a stop rule is given (higher loads would only fail harder).
//! * Topologies: the cartesian product of committee sizes, DA node counts and chain
//!   counts; the cluster seam starts each one in turn.

use crate::BenchError;
use crate::cluster::Topology;

/// Which latency the stop rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoalMetric {
    /// End-to-end p50 (submit → executed), falling back to consensus when the target
    /// does not observe execution.
    P50,
    /// End-to-end p99, with the same fallback.
    P99,
    /// Consensus p50 (submit → finalized).
    ConsensusP50,
    /// Consensus p99.
    ConsensusP99,
}

/// When a point fails.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StopRule {
    /// Latency goal in milliseconds.
    pub latency_goal_ms: f64,
    /// Which latency.
    pub metric: GoalMetric,
    /// A point fails if achieved < this x offered (e.g. 0.95).
    pub min_achieved_ratio: f64,
}

impl Default for StopRule {
    fn default() -> Self {
        StopRule { latency_goal_ms: 1000.0, metric: GoalMetric::P50, min_achieved_ratio: 0.95 }
    }
}

/// The figures a stop rule judges.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judged {
    /// Offered tx/s.
    pub offered: f64,
    /// Achieved tx/s at the last observed stage.
    pub achieved: f64,
    /// (p50, p99) end to end, if observed.
    pub e2e: Option<(f64, f64)>,
    /// (p50, p99) consensus, if observed.
    pub consensus: Option<(f64, f64)>,
}

/// A point's verdict.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict", content = "reason")]
pub enum Verdict {
    /// Within the goal.
    Pass,
    /// Failed, with why.
    Fail(String),
}

impl Verdict {
    /// True for [`Verdict::Pass`].
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Pass)
    }
}

impl StopRule {
    /// Checks the rule.
    pub fn validate(&self) -> Result<(), BenchError> {
        if !(self.latency_goal_ms > 0.0 && self.latency_goal_ms.is_finite()) {
            return Err(BenchError::Spec("latency_goal_ms must be positive".into()));
        }
        if !(0.0..=1.0).contains(&self.min_achieved_ratio) {
            return Err(BenchError::Spec("min_achieved_ratio must be in [0, 1]".into()));
        }
        Ok(())
    }

    /// Judges a point.
    pub fn judge(&self, p: &Judged) -> Verdict {
        let (name, lat) = match self.metric {
            GoalMetric::P50 => match (p.e2e, p.consensus) {
                (Some(e), _) => ("e2e p50", Some(e.0)),
                (None, c) => ("consensus p50", c.map(|c| c.0)),
            },
            GoalMetric::P99 => match (p.e2e, p.consensus) {
                (Some(e), _) => ("e2e p99", Some(e.1)),
                (None, c) => ("consensus p99", c.map(|c| c.1)),
            },
            GoalMetric::ConsensusP50 => ("consensus p50", p.consensus.map(|c| c.0)),
            GoalMetric::ConsensusP99 => ("consensus p99", p.consensus.map(|c| c.1)),
        };
        match lat {
            None => return Verdict::Fail(format!("no {name} measured")),
            Some(l) if l > self.latency_goal_ms => {
                return Verdict::Fail(format!("{name} {l:.1} ms > goal {:.1} ms", self.latency_goal_ms));
            }
            Some(_) => {}
        }
        if p.achieved < self.min_achieved_ratio * p.offered {
            return Verdict::Fail(format!(
                "achieved {:.0} tx/s < {:.0}% of offered {:.0} tx/s",
                p.achieved,
                self.min_achieved_ratio * 100.0,
                p.offered
            ));
        }
        Verdict::Pass
    }
}

/// Offered loads to run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LoadSweep {
    /// These rates, in order.
    Fixed {
        /// Offered tx/s.
        rates: Vec<f64>,
    },
    /// Coarse multiplicative steps, then finer ones (see the module docs).
    Adaptive {
        /// First rate.
        start: f64,
        /// Coarse factor (> 1).
        coarse_factor: f64,
        /// Fine factor (> 1, < coarse).
        fine_factor: f64,
        /// Most points per topology.
        max_points: usize,
        /// Highest rate to try.
        max_rate: f64,
    },
}

impl LoadSweep {
    /// Checks the sweep.
    pub fn validate(&self) -> Result<(), BenchError> {
        let ok = |r: f64| r.is_finite() && r > 0.0;
        match self {
            LoadSweep::Fixed { rates } => {
                if rates.is_empty() || !rates.iter().all(|&r| ok(r)) {
                    return Err(BenchError::Spec("fixed sweep needs positive rates".into()));
                }
            }
            LoadSweep::Adaptive { start, coarse_factor, fine_factor, max_points, max_rate } => {
                if !ok(*start) || !ok(*max_rate) || start > max_rate {
                    return Err(BenchError::Spec("adaptive sweep needs 0 < start <= max_rate".into()));
                }
                if !(*fine_factor > 1.0 && coarse_factor > fine_factor && coarse_factor.is_finite()) {
                    return Err(BenchError::Spec("adaptive sweep needs 1 < fine_factor < coarse_factor".into()));
                }
                if *max_points == 0 {
                    return Err(BenchError::Spec("adaptive sweep needs max_points >= 1".into()));
                }
            }
        }
        Ok(())
    }

    /// A driver that yields rates one at a time, given each point's verdict.
    pub fn driver(&self, stop: Option<StopRule>) -> SweepDriver {
        SweepDriver { sweep: self.clone(), stop, done: Vec::new(), phase: Phase::Coarse, finished: None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Coarse,
    /// Refining between the last pass and the first failure.
    Fine {
        fail: f64,
    },
}

/// Yields the next offered rate of a sweep (a pure state machine).
#[derive(Clone, Debug)]
pub struct SweepDriver {
    sweep: LoadSweep,
    stop: Option<StopRule>,
    done: Vec<(f64, bool)>,
    phase: Phase,
    finished: Option<String>,
}

impl SweepDriver {
    /// The stop rule, if any.
    pub fn stop_rule(&self) -> Option<&StopRule> {
        self.stop.as_ref()
    }

    /// The first rate.
    pub fn first(&mut self) -> Option<f64> {
        match &self.sweep {
            LoadSweep::Fixed { rates } => rates.first().copied(),
            LoadSweep::Adaptive { start, .. } => Some(*start),
        }
    }

    /// Why the sweep ended (after [`SweepDriver::next`] returned `None`).
    pub fn finish_reason(&self) -> Option<&str> {
        self.finished.as_deref()
    }

    /// Records the verdict of the point at `rate` and returns the next rate, or `None`
    /// when the sweep is over.
    pub fn next(&mut self, rate: f64, verdict: &Verdict) -> Option<f64> {
        let passed = verdict.passed() || self.stop.is_none();
        self.done.push((rate, passed));
        let next = self.compute_next(rate, passed, verdict);
        if next.is_none() && self.finished.is_none() {
            self.finished = Some("sweep complete".into());
        }
        next
    }

    fn compute_next(&mut self, rate: f64, passed: bool, verdict: &Verdict) -> Option<f64> {
        if !passed && let Verdict::Fail(why) = verdict {
            self.finished = Some(format!("stopped at {rate:.0} tx/s: {why}"));
        }
        match self.sweep.clone() {
            LoadSweep::Fixed { rates } => {
                if !passed {
                    return None;
                }
                let next = rates.get(self.done.len()).copied();
                if next.is_none() {
                    self.finished = Some("all rates run".into());
                }
                next
            }
            LoadSweep::Adaptive { coarse_factor, fine_factor, max_points, max_rate, .. } => {
                if self.done.len() >= max_points {
                    self.finished = Some(format!("max_points ({max_points}) reached"));
                    return None;
                }
                let last_pass = self.done.iter().rev().find(|d| d.1).map(|d| d.0);
                let (step, bound) = match (self.phase, passed) {
                    (Phase::Coarse, true) => (coarse_factor, None),
                    (Phase::Coarse, false) => {
                        // Refine from the last passing rate toward this failure.
                        let base = last_pass?;
                        self.phase = Phase::Fine { fail: rate };
                        self.finished = None;
                        return self.bounded(base * fine_factor, Some(rate), max_rate);
                    }
                    (Phase::Fine { fail }, true) => (fine_factor, Some(fail)),
                    (Phase::Fine { .. }, false) => return None,
                };
                self.bounded(rate * step, bound, max_rate)
            }
        }
    }

    /// `next` unless it reaches the known failing rate or passes max_rate (then
    /// max_rate once, if not yet run).
    fn bounded(&mut self, next: f64, fail: Option<f64>, max_rate: f64) -> Option<f64> {
        if let Some(f) = fail
            && next >= f * 0.999
        {
            self.finished = Some(format!("bracketed: next step {next:.0} tx/s reaches the failing rate {f:.0} tx/s"));
            return None;
        }
        if next > max_rate {
            let ran_max = self.done.iter().any(|d| (d.0 - max_rate).abs() < 1e-9);
            if ran_max {
                self.finished = Some(format!("max_rate ({max_rate:.0} tx/s) reached"));
                return None;
            }
            return Some(max_rate);
        }
        Some(next)
    }
}

/// Topologies to sweep: the product of the lists, in order
/// (validators, then DA nodes, then chains).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopologySweep {
    /// Committee sizes.
    pub validators: Vec<usize>,
    /// DA node counts.
    pub da_nodes: Vec<usize>,
    /// Chain counts.
    pub chains: Vec<usize>,
    /// Execution services per chain.
    pub execution_per_chain: usize,
    /// Funded test accounts per chain.
    pub funded_accounts: u64,
}

impl Default for TopologySweep {
    fn default() -> Self {
        let t = Topology::default();
        TopologySweep {
            validators: vec![t.validators],
            da_nodes: vec![t.da_nodes],
            chains: vec![t.chains],
            execution_per_chain: t.execution_per_chain,
            funded_accounts: t.funded_accounts,
        }
    }
}

impl TopologySweep {
    /// Every topology, in sweep order.
    pub fn topologies(&self) -> Vec<Topology> {
        let mut out = Vec::new();
        for &v in &self.validators {
            for &d in &self.da_nodes {
                for &c in &self.chains {
                    out.push(Topology {
                        validators: v,
                        da_nodes: d,
                        chains: c,
                        execution_per_chain: self.execution_per_chain,
                        funded_accounts: self.funded_accounts,
                    });
                }
            }
        }
        out
    }

    /// Checks the sweep.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.topologies().is_empty() {
            return Err(BenchError::Spec("the topology sweep is empty".into()));
        }
        if self.validators.contains(&0) || self.da_nodes.contains(&0) || self.chains.contains(&0) {
            return Err(BenchError::Spec("validators, DA nodes and chains must be >= 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adaptive(max_points: usize, max_rate: f64) -> LoadSweep {
        LoadSweep::Adaptive { start: 1000.0, coarse_factor: 4.0, fine_factor: 1.25, max_points, max_rate }
    }

    /// Runs a driver against a system whose point passes iff rate <= capacity.
    fn run(sweep: &LoadSweep, capacity: f64) -> (Vec<f64>, String) {
        let mut d = sweep.driver(Some(StopRule::default()));
        let mut rates = Vec::new();
        let mut r = d.first();
        while let Some(rate) = r {
            rates.push(rate);
            let v = if rate <= capacity { Verdict::Pass } else { Verdict::Fail("over".into()) };
            r = d.next(rate, &v);
            assert!(rates.len() < 100, "sweep must terminate");
        }
        (rates, d.finish_reason().unwrap_or_default().to_string())
    }

    #[test]
    fn adaptive_goes_coarse_then_fine_and_brackets_capacity() {
        let (rates, why) = run(&adaptive(20, 1e9), 20_000.0);
        // 1k, 4k, 16k pass; 64k fails; then 16k x 1.25 = 20k passes, 25k fails.
        assert_eq!(rates, vec![1000.0, 4000.0, 16000.0, 64000.0, 20000.0, 25000.0]);
        assert!(why.contains("25000"), "{why}");
    }

    #[test]
    fn adaptive_respects_max_points_and_max_rate() {
        let (rates, why) = run(&adaptive(3, 1e9), 1e12);
        assert_eq!(rates.len(), 3);
        assert!(why.contains("max_points"));
        let (rates, why) = run(&adaptive(20, 10_000.0), 1e12);
        assert_eq!(rates, vec![1000.0, 4000.0, 10000.0]);
        assert!(why.contains("max_rate"), "{why}");
        // First point fails: nothing to refine from.
        let (rates, _) = run(&adaptive(20, 1e9), 10.0);
        assert_eq!(rates, vec![1000.0]);
    }

    #[test]
    fn fixed_sweep_stops_at_first_failure_only_with_a_rule() {
        let s = LoadSweep::Fixed { rates: vec![1.0, 2.0, 3.0, 4.0] };
        let (rates, _) = run(&s, 2.5);
        assert_eq!(rates, vec![1.0, 2.0, 3.0]);
        let mut d = s.driver(None);
        let mut r = d.first();
        let mut n = 0;
        while let Some(rate) = r {
            n += 1;
            r = d.next(rate, &Verdict::Fail("ignored without a rule".into()));
        }
        assert_eq!(n, 4);
    }

    #[test]
    fn judge_uses_the_chosen_latency_and_the_throughput_margin() {
        let rule = StopRule { latency_goal_ms: 100.0, metric: GoalMetric::P50, min_achieved_ratio: 0.9 };
        let p = Judged { offered: 1000.0, achieved: 1000.0, e2e: Some((50.0, 500.0)), consensus: Some((10.0, 20.0)) };
        assert!(rule.judge(&p).passed());
        let p99 = StopRule { metric: GoalMetric::P99, ..rule.clone() };
        assert!(!p99.judge(&p).passed());
        let slow = Judged { achieved: 800.0, ..p };
        assert!(matches!(rule.judge(&slow), Verdict::Fail(w) if w.contains("achieved")));
        let cons_only = Judged { e2e: None, consensus: Some((150.0, 200.0)), ..p };
        assert!(matches!(rule.judge(&cons_only), Verdict::Fail(w) if w.contains("consensus p50")));
    }

    #[test]
    fn topology_product() {
        let t = TopologySweep { validators: vec![4, 7], da_nodes: vec![4], chains: vec![1, 2], ..Default::default() };
        let all: Vec<String> = t.topologies().iter().map(Topology::label).collect();
        assert_eq!(all, vec!["v4 da4 c1", "v4 da4 c2", "v7 da4 c1", "v7 da4 c2"]);
        t.validate().unwrap();
    }
}
