//! The system-under-test seam: submit transactions, observe completions.
//!
//! A [`LoadTarget`] is what the load generator talks to. It has two halves:
//!
//! * **submit** (pulled by the generator): one call per burst, answered per transaction
//!   with the [`lamina_interfaces::TxSubmit`] outcome types, so a QUIC or HTTP intake
//!   client plugs in through [`SubmitAdapter`];
//! * **completions** (pushed by the target): the [`CompletionSink`] handed to
//!   [`TargetFactory::connect`] receives *finalized* events (ordered by consensus: for
//!   consensus latency) and *executed* events (receipt available: for end-to-end
//!   latency), each with the time it was observed. A real target gets these by
//!   following the ordered log (see [`crate::follow`]) and the execution services'
//!   receipts.
//!
//! # Contract
//!
//! * `submit` must answer once intake has taken or refused each transaction; it must not
//!   wait for finalization. It may be slow (that is measured: latency runs from the
//!   *intended* send time), and many calls may be in flight at once (the generator never
//!   waits for one burst before sending the next).
//! * Completion timestamps are on the tokio clock ([`tokio::time::Instant`]); report
//!   each transaction at most once per kind (repeats are ignored).
//! * [`LoadTarget::observes`] states which kinds of completion the target reports; a
//!   point ends when every accepted transaction reached the last observed stage (or the
//!   drain time is up).

use std::future::Future;

use lamina_interfaces::{SubmitError, SubmitOutcome, TxSubmit};
use lamina_primitives::Transaction;

use crate::BenchError;
use crate::cluster::Deployment;
use crate::tracker::CompletionSink;

/// Which completions a target reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Observes {
    /// Reports finalization (consensus latency).
    pub finalized: bool,
    /// Reports execution receipts (end-to-end latency).
    pub executed: bool,
}

impl Observes {
    /// Both kinds.
    pub const BOTH: Observes = Observes { finalized: true, executed: true };
    /// Finalization only (ordering benchmarks).
    pub const FINALIZED: Observes = Observes { finalized: true, executed: false };
}

/// Cumulative counters a target may expose, sampled during a point.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TargetSample {
    /// Total blob bytes stored by DA so far (for DA bytes/s).
    pub da_bytes: Option<u64>,
    /// Finalized height of the ordered log.
    pub height: Option<u64>,
}

/// One submit answer per transaction, in order.
pub type SubmitResults = Vec<Result<SubmitOutcome, SubmitError>>;

/// The system under test, as the load generator sees it.
pub trait LoadTarget: Send + Sync + 'static {
    /// Which completions this target reports through its sink.
    fn observes(&self) -> Observes;

    /// Submits one burst; returns one outcome per transaction, in order.
    fn submit(&self, txs: Vec<Transaction>) -> impl Future<Output = SubmitResults> + Send;

    /// Current cumulative counters (DA bytes, height). Called about once per sample
    /// interval; should answer quickly.
    fn sample(&self) -> impl Future<Output = TargetSample> + Send {
        std::future::ready(TargetSample::default())
    }
}

/// Connects a [`LoadTarget`] to a started deployment. The runner calls it once per
/// deployment (topology), inside the load runtime (so it may spawn tokio tasks, e.g.
/// log followers that feed `sink`).
pub trait TargetFactory<H> {
    /// The target type.
    type Target: LoadTarget;

    /// Connects to `deployment`; completions go to `sink`.
    fn connect(
        &self,
        deployment: &Deployment<H>,
        sink: CompletionSink,
    ) -> impl Future<Output = Result<Self::Target, BenchError>>;
}

/// A [`LoadTarget`] whose submit half is any [`TxSubmit`] (a QUIC or HTTP intake
/// client); completions come from whatever the factory wired to the sink.
pub struct SubmitAdapter<S> {
    intake: S,
    observes: Observes,
    sample: Option<Box<dyn Fn() -> TargetSample + Send + Sync>>,
}

impl<S> std::fmt::Debug for SubmitAdapter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitAdapter").field("observes", &self.observes).finish_non_exhaustive()
    }
}

impl<S: TxSubmit + 'static> SubmitAdapter<S> {
    /// Wraps `intake`; `observes` states what the factory's followers report.
    pub fn new(intake: S, observes: Observes) -> Self {
        SubmitAdapter { intake, observes, sample: None }
    }

    /// Adds a counter source (e.g. reading a follower's DA byte count).
    pub fn with_sample(mut self, f: impl Fn() -> TargetSample + Send + Sync + 'static) -> Self {
        self.sample = Some(Box::new(f));
        self
    }
}

impl<S: TxSubmit + 'static> LoadTarget for SubmitAdapter<S> {
    fn observes(&self) -> Observes {
        self.observes
    }

    fn submit(&self, txs: Vec<Transaction>) -> impl Future<Output = SubmitResults> + Send {
        self.intake.submit_many(txs)
    }

    fn sample(&self) -> impl Future<Output = TargetSample> + Send {
        std::future::ready(self.sample.as_ref().map(|f| f()).unwrap_or_default())
    }
}
