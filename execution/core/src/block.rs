//! The block state machine: (pre-state, finalized block's inputs) → (record, receipts
//! root, claim step, outcomes).
//!
//! This is the one definition of what a log height does to a chain, shared by the
//! execution service (which fetches the inputs from DA and persists the result) and by
//! [`crate::chains::NativeReplica`] (settlement's verifier). The inputs of a height are
//! what [`lamina_interfaces::inputs`] extracts from the finalized block: the data roots
//! of the squares listing the chain's namespace, and the transactions decoded from
//! their blobs.
//!
//! # Rules
//!
//! * A height whose block lists no square for the chain's namespace (no data roots) is
//!   not a step: it changes nothing (state root, chained receipts root and data root stay
//!   as they were) and produces no [`ClaimStep`].
//! * A height with at least one such square is a step, even if none of its blobs decoded
//!   into transactions: its [`ClaimStep`] commits to the data roots
//!   ([`inputs_digest`]), the post-state root (unchanged for an empty step) and the
//!   receipts root of the height's transactions alone (of the empty list for an empty
//!   step). The chained receipts root advances with [`chain_receipts`].
//! * Transactions run through the signature stage ([`crate::sigverify::verify_block`])
//!   and the parallel executor ([`crate::parallel::execute`]), which equals the
//!   sequential reference.

use lamina_interfaces::bridge::StepEnv;
use lamina_interfaces::settlement::{chain_receipts, inputs_digest};
use lamina_interfaces::{ChainSpec, ClaimStep, StepOutcome};
use lamina_primitives::{Digest, Height, Transaction, TxId, TxScope};

use crate::changes::ChangeSet;
use crate::ledger::{LedgerFailure, NativeLedger};
use crate::machine::{ChainFailure, Receipt, StateMachine, StateRead, Status, receipts_root};
use crate::sequential::BlockOutput;
use crate::state::AuthenticatedState;
use crate::{parallel, sigverify};

/// A state machine the execution service can run as a chain: the [`StateMachine`] seam
/// plus what the per-height rules need. The native ledger is one; a chain builder's
/// machine is another (see the `examples/` workspace member).
///
/// Everything here is part of the chain's definition: a pure function of the genesis
/// chain spec and the step's environment, identical on every replica.
pub trait ChainMachine: StateMachine<Failure: ChainFailure> + Clone + 'static {
    /// The chain's genesis state, as changes to the empty state.
    fn genesis(&self, spec: &ChainSpec) -> ChangeSet;

    /// The machine for the step `env` describes (settlement's anchors final before its
    /// height). Machines that never read anchors keep the default (themselves).
    fn at(&self, _env: StepEnv) -> Self {
        self.clone()
    }

    /// True when executing `txs` reads settlement's anchors: the service then waits
    /// until settlement's anchor registry covers the height before it executes it. The
    /// registry runs only on a genesis that enables the bridge; elsewhere a `true` here
    /// stops the node with a configuration error at that height, so machines must
    /// return `false` there.
    fn reads_anchors(&self, _txs: &[Transaction]) -> bool {
        false
    }
}

impl ChainMachine for NativeLedger {
    fn genesis(&self, spec: &ChainSpec) -> ChangeSet {
        crate::ledger::genesis(spec)
    }

    fn at(&self, env: StepEnv) -> Self {
        NativeLedger::at(self, env)
    }

    fn reads_anchors(&self, txs: &[Transaction]) -> bool {
        self.config().bridge.enabled && txs.iter().any(crate::ledger::reads_anchors)
    }
}

/// What happened to a transaction, without the failure detail (for outcome feeds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Executed; all its effects are in the state.
    Success,
    /// Included (nonce and fee charged) but the operation failed.
    Failed,
    /// Not included: no effect.
    Rejected,
}

impl Outcome {
    /// The outcome of a receipt status.
    pub fn of<F>(status: &Status<F>) -> Self {
        match status {
            Status::Success => Outcome::Success,
            Status::Failed(_) => Outcome::Failed,
            Status::Rejected(_) => Outcome::Rejected,
        }
    }

    /// Stable wire code: 0 success, 1 failed, 2 rejected (the receipt commitment's kind
    /// byte, and the code of the execution query protocol's outcome feed).
    pub fn as_u8(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failed => 1,
            Outcome::Rejected => 2,
        }
    }

    /// The inverse of [`Outcome::as_u8`]; `None` for an unknown code.
    pub fn from_u8(code: u8) -> Option<Self> {
        match code {
            0 => Some(Outcome::Success),
            1 => Some(Outcome::Failed),
            2 => Some(Outcome::Rejected),
            _ => None,
        }
    }
}

/// Where a chain stands after a log height: what the next height builds on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChainHead {
    /// Last executed log height (0: genesis).
    pub height: Height,
    /// State root after it.
    pub state_root: Digest,
    /// Receipts root chained over every step so far ([`chain_receipts`]; zero at
    /// genesis).
    pub receipts_root: Digest,
    /// Data root of the last square, at or below `height`, that held the chain's data
    /// (zero if none yet).
    pub data_root: Digest,
}

impl ChainHead {
    /// The head at genesis, for a genesis state with root `state_root`.
    pub fn genesis(state_root: Digest) -> Self {
        ChainHead { height: Height(0), state_root, receipts_root: Digest::ZERO, data_root: Digest::ZERO }
    }
}

/// A height executed against the pre-state but not applied yet (the pre-state is only
/// read, so queries may keep reading it meanwhile). [`Executed::apply`] finishes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed<F = LedgerFailure> {
    prev: ChainHead,
    height: Height,
    /// `Some((inputs digest, last data root))` for a step.
    inputs: Option<(Digest, Digest)>,
    output: BlockOutput<F>,
    block_receipts_root: Digest,
}

/// What a log height did to a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockResult<F = LedgerFailure> {
    /// The log height.
    pub height: Height,
    /// Its changes to the state (empty when it is not a step).
    pub changes: ChangeSet,
    /// Receipts of its transactions, in order.
    pub receipts: Vec<Receipt<F>>,
    /// Each transaction's outcome, in order.
    pub outcomes: Vec<(TxId, Outcome)>,
    /// Receipts root of this height's transactions alone (the empty list's when it is
    /// not a step).
    pub block_receipts_root: Digest,
    /// The claim step, when the height carried data for the chain.
    pub step: Option<ClaimStep>,
    /// The chain head after the height.
    pub head: ChainHead,
}

/// Verifies signatures and executes `txs` against `state` on the current rayon pool
/// (the transaction part of a step, without touching the state), in the environment
/// `machine` is bound to ([`ChainMachine::at`]).
pub fn execute_txs<M: StateMachine>(
    machine: &M,
    scope: TxScope,
    state: &impl StateRead,
    txs: &[Transaction],
) -> BlockOutput<M::Failure> {
    let verified = sigverify::verify_block(scope, txs);
    parallel::execute(machine, state, txs, &verified)
}

/// Executes log height `env.height` of the chain whose head is `head`, in the step
/// environment `env`: the anchors it shows (only those final before the height count:
/// [`StepEnv::anchor`]) and governance's parameters for the height. `data_roots` are the
/// data roots of the block's squares listing the chain's namespace, in block order
/// ([`lamina_interfaces::inputs::namespace_data_roots`]); `txs` the transactions
/// extracted from them ([`lamina_interfaces::inputs::namespace_transactions`]). With no
/// data roots the height is not a step and `txs` is ignored (it can only be empty).
/// Reads `state` (which must be the state committed by `head`); call
/// [`Executed::apply`] to apply the result.
pub fn execute_block<M: ChainMachine>(
    machine: &M,
    env: StepEnv,
    state: &AuthenticatedState,
    head: &ChainHead,
    data_roots: &[Digest],
    txs: &[Transaction],
) -> Executed<M::Failure> {
    execute_block_verified(machine, env, state, head, data_roots, txs, None)
}

/// [`execute_block`] with the signature stage already run: `verified` is what
/// [`sigverify::verify_block`] (or [`sigverify::verify_blocks`]) returned for `txs` in
/// `env.scope`, so a caller can verify several blocks' signatures in one stage. `None`,
/// or verdicts of another length than `txs`, runs the stage here. The result is the
/// same either way: verdicts depend only on each transaction and the scope. Verdicts of
/// other transactions of the same length are a caller's bug that this does not catch
/// in release builds (debug builds assert the ids): their ids would go into receipts.
pub fn execute_block_verified<M: ChainMachine>(
    machine: &M,
    env: StepEnv,
    state: &AuthenticatedState,
    head: &ChainHead,
    data_roots: &[Digest],
    txs: &[Transaction],
    verified: Option<&sigverify::Verified>,
) -> Executed<M::Failure> {
    let height = env.height;
    debug_assert!(height > head.height, "heights run in order");
    let (inputs, output) = match data_roots.last() {
        None => (None, BlockOutput { receipts: Vec::new(), changes: ChangeSet::default() }),
        Some(last) => {
            let scope = env.scope;
            let machine = machine.at(env);
            let verified = verified.filter(|v| v.len() == txs.len());
            debug_assert!(
                verified.is_none_or(|v| v.ids.iter().copied().eq(txs.iter().map(Transaction::id))),
                "verdicts computed ahead belong to these transactions"
            );
            let output = match verified {
                Some(v) => parallel::execute(&machine, state, txs, v),
                None => execute_txs(&machine, scope, state, txs),
            };
            (Some((inputs_digest(data_roots), *last)), output)
        }
    };
    let block_receipts_root = receipts_root(&output.receipts);
    Executed { prev: *head, height, inputs, output, block_receipts_root }
}

impl<F: ChainFailure> Executed<F> {
    /// The height.
    pub fn height(&self) -> Height {
        self.height
    }

    /// True when the height carried data for the chain.
    pub fn is_step(&self) -> bool {
        self.inputs.is_some()
    }

    /// The receipts and changes.
    pub fn output(&self) -> &BlockOutput<F> {
        &self.output
    }

    /// Applies the changes to `state` (the state [`execute_block`] read; hashing in
    /// parallel on the current rayon pool when `parallel`) and completes the result.
    pub fn apply(self, state: &mut AuthenticatedState, parallel: bool) -> BlockResult<F> {
        let Executed { prev, height, inputs, output, block_receipts_root } = self;
        let outcomes = output.receipts.iter().map(|r| (r.tx_id, Outcome::of(&r.status))).collect();
        let (step, head) = match inputs {
            None => (None, ChainHead { height, ..prev }),
            Some((inputs, data_root)) => {
                let state_root =
                    if output.changes.is_empty() { state.root() } else { state.apply(&output.changes, parallel) };
                let step = ClaimStep { height, inputs, state_root, receipts_root: block_receipts_root };
                let head = ChainHead {
                    height,
                    state_root,
                    receipts_root: chain_receipts(&prev.receipts_root, height, &block_receipts_root),
                    data_root,
                };
                (Some(step), head)
            }
        };
        BlockResult {
            height,
            changes: output.changes,
            receipts: output.receipts,
            outcomes,
            block_receipts_root,
            step,
            head,
        }
    }
}

impl<F> BlockResult<F> {
    /// The step's outcome (what [`lamina_interfaces::StatelessExecutor::reexecute`]
    /// returns for it), when the height is a step.
    pub fn step_outcome(&self) -> Option<StepOutcome> {
        self.step.map(|s| StepOutcome { state_root: s.state_root, receipts_root: s.receipts_root })
    }
}

/// The change set that undoes `changes` on `state` (the state before `changes` is
/// applied): every changed key back to its current value.
pub fn inverse(state: &impl StateRead, changes: &ChangeSet) -> ChangeSet {
    ChangeSet {
        counters: changes.counters.iter().map(|(k, _)| (*k, state.counter(k))).collect(),
        data: changes.data.iter().map(|(k, _)| (*k, state.data(k).map(|b| b.to_vec()))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{self, AssetId, LedgerConfig};
    use lamina_primitives::{ChainId, Keypair};

    const SCOPE: TxScope = TxScope::Network(Digest([0x5c; 32]));

    fn env(height: u64) -> StepEnv {
        StepEnv::without_anchors(Height(height), SCOPE)
    }

    fn setup() -> (NativeLedger, AuthenticatedState, Vec<Keypair>) {
        let keys: Vec<Keypair> = (0..4).map(Keypair::for_testing).collect();
        let mut st = AuthenticatedState::new();
        let spec = lamina_interfaces::ChainSpec {
            id: ChainId(1),
            name: "t".into(),
            balances: keys
                .iter()
                .map(|k| lamina_interfaces::GenesisBalance { account: k.public(), amount: 1_000 })
                .collect(),
            funded_test_accounts: 0,
            funded_test_accounts_seed: 0,
            funded_test_amount: 0,
            fee: 0,
            fee_collector: Default::default(),
            ledger_version: 1,
        };
        st.apply(&ledger::genesis(&spec), false);
        (NativeLedger::new(LedgerConfig::new(ChainId(1))), st, keys)
    }

    #[test]
    fn steps_only_at_heights_with_data() {
        let (l, mut st, keys) = setup();
        let genesis_root = st.root();
        let head = ChainHead::genesis(genesis_root);
        // No data: nothing changes, no step.
        let r = execute_block(&l, env(1), &st, &head, &[], &[]).apply(&mut st, false);
        assert_eq!(r.step, None);
        assert_eq!(r.head, ChainHead { height: Height(1), ..head });
        // Data but no decodable transactions: an empty step.
        let root = Digest([5; 32]);
        let r2 = execute_block(&l, env(2), &st, &r.head, &[root], &[]).apply(&mut st, false);
        let step = r2.step.unwrap();
        assert_eq!(step.state_root, genesis_root);
        assert_eq!(step.receipts_root, receipts_root::<LedgerFailure>(&[]));
        assert_eq!(step.inputs, inputs_digest(&[root]));
        assert_eq!(r2.head.receipts_root, chain_receipts(&Digest::ZERO, Height(2), &step.receipts_root));
        assert_eq!(r2.head.data_root, root);
        // A transfer, a bad nonce: outcomes typed, state root moves.
        let txs = vec![
            ledger::transfer(&keys[0], SCOPE, ChainId(1), 0, keys[1].public(), AssetId::NATIVE, 5),
            ledger::transfer(&keys[0], SCOPE, ChainId(1), 7, keys[1].public(), AssetId::NATIVE, 5),
            ledger::transfer(&keys[2], SCOPE, ChainId(1), 0, keys[1].public(), AssetId::NATIVE, 5_000),
        ];
        // Verdicts computed ahead give the same result; verdicts of another length
        // than the block are not used (the stage runs again).
        let ahead = sigverify::verify_block(SCOPE, &txs);
        let short = sigverify::verify_block(SCOPE, &txs[..2]);
        let plain = execute_block(&l, env(4), &st, &r2.head, &[root, Digest([6; 32])], &txs);
        for v in [Some(&ahead), Some(&short), None] {
            let e = execute_block_verified(&l, env(4), &st, &r2.head, &[root, Digest([6; 32])], &txs, v);
            assert_eq!(e.output.receipts, plain.output.receipts);
            assert_eq!(e.block_receipts_root, plain.block_receipts_root);
        }
        let r3 = plain.apply(&mut st, true);
        let outs: Vec<Outcome> = r3.outcomes.iter().map(|o| o.1).collect();
        assert_eq!(outs, vec![Outcome::Success, Outcome::Rejected, Outcome::Failed]);
        for (o, r) in r3.outcomes.iter().zip(&r3.receipts) {
            assert_eq!(o.1.as_u8(), r.commitment_bytes()[32]);
            assert_eq!(Outcome::from_u8(o.1.as_u8()), Some(o.1));
        }
        assert_eq!(r3.head.state_root, st.root());
        assert_ne!(r3.head.state_root, genesis_root);
        assert_eq!(r3.head.data_root, Digest([6; 32]));
        assert_eq!(r3.step_outcome().unwrap().state_root, st.root());
    }

    /// Governance's fee schedule for the test: 9 from height 10 on, the genesis fee before.
    struct FeeFrom10;

    impl lamina_interfaces::ParamsView for FeeFrom10 {
        fn value(&self, param: lamina_interfaces::GovernedParam, height: Height) -> Option<u64> {
            (param == lamina_interfaces::GovernedParam::Fee(ChainId(1)) && height.0 >= 10).then_some(9)
        }
    }

    #[test]
    fn the_fee_is_the_one_governance_set_for_the_height() {
        let (l, st, keys) = setup();
        let collector = ledger::balance_key(&l.config().fee_collector, AssetId::NATIVE);
        let charged = |ledger: &NativeLedger, env: StepEnv| {
            let txs = vec![ledger::transfer(&keys[0], SCOPE, ChainId(1), 0, keys[1].public(), AssetId::NATIVE, 5)];
            let out = execute_txs(&ledger.at(env), SCOPE, &st, &txs);
            assert_eq!(out.receipts[0].status, crate::Status::Success);
            let mut after = st.clone();
            after.apply(&out.changes, false);
            after.counter(&collector) - st.counter(&collector)
        };
        let view: std::sync::Arc<dyn lamina_interfaces::ParamsView> = std::sync::Arc::new(FeeFrom10);
        // From the environment.
        assert_eq!(charged(&l, env(9).with_params(view.clone())), 0, "genesis fee before the change");
        assert_eq!(charged(&l, env(10).with_params(view.clone())), 9);
        // From the ledger, for environments that bring none (settlement's re-execution).
        let governed = l.clone().with_params(view);
        assert_eq!(charged(&governed, env(9)), 0);
        assert_eq!(charged(&governed, env(10)), 9);
        assert_eq!(charged(&l, env(10)), 0, "no view: the genesis fee");
    }

    #[test]
    fn inverse_restores_the_root() {
        let (l, mut st, keys) = setup();
        let pre = st.root();
        let txs = vec![ledger::transfer(&keys[0], SCOPE, ChainId(1), 0, keys[3].public(), AssetId::NATIVE, 1_000)];
        let out = execute_txs(&l, SCOPE, &st, &txs);
        let undo = inverse(&st, &out.changes);
        assert_ne!(st.apply(&out.changes, false), pre);
        assert_eq!(st.apply(&undo, false), pre);
    }
}
