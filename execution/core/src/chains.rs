//! The native ledger behind settlement's seams: [`NativeChains`] re-executes a step of
//! any genesis chain from a witness ([`lamina_interfaces::StatelessExecutor`]), and
//! [`NativeReplica`] replays a chain in full, building the witness of a step whose
//! claimed outcome differs from its own ([`lamina_interfaces::ChainReplica`]).
//!
//! Both run the rules of [`crate::block`]: the replica executes a step with the same
//! function as the execution service ([`crate::block::execute_txs`]: signature stage,
//! parallel executor), the stateless path with the sequential executor over the witness
//! ([`crate::witness::execute_stateless`]); the two agree by the executors' property
//! tests and by this crate's differential test.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use lamina_interfaces::{ChainReplica, ChainSpec, Genesis, StatelessError, StatelessExecutor, StepEnv, StepOutcome};
use lamina_primitives::{ChainId, Digest, Transaction};

use crate::block::{execute_txs, inverse};
use crate::changes::ChangeSet;
use crate::ledger::{self, LedgerConfig, NativeLedger};
use crate::machine::receipts_root;
use crate::sigverify;
use crate::state::AuthenticatedState;
use crate::witness::{self, Witness};

struct Chain {
    spec: ChainSpec,
    ledger: NativeLedger,
    genesis_root: OnceLock<Digest>,
}

/// Every chain of a genesis, each with the native ledger its chain spec defines. Chains
/// whose spec asks for a ledger version this build does not implement are not served
/// ([`StatelessError::UnknownChain`]).
#[derive(Clone)]
pub struct NativeChains {
    chains: Arc<Vec<Chain>>,
}

impl std::fmt::Debug for NativeChains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeChains")
            .field("chains", &self.chains.iter().map(|c| c.spec.id).collect::<Vec<_>>())
            .finish()
    }
}

/// The state of a chain's genesis (see [`ledger::genesis`]).
pub fn genesis_state(spec: &ChainSpec) -> AuthenticatedState {
    let mut s = AuthenticatedState::new();
    s.apply(&ledger::genesis(spec), true);
    s
}

impl NativeChains {
    /// The chains of `genesis` (each step's anchors come with its [`StepEnv`]).
    pub fn new(genesis: &Genesis) -> Self {
        let chains = genesis
            .chains
            .iter()
            .filter_map(|spec| {
                let config = LedgerConfig::from_genesis(genesis, spec.id)?;
                Some(Chain { spec: spec.clone(), ledger: NativeLedger::new(config), genesis_root: OnceLock::new() })
            })
            .collect();
        NativeChains { chains: Arc::new(chains) }
    }

    /// The same chains charging governance's fee from `params` (see
    /// [`NativeLedger::with_params`]) in re-execution and replicas. The caller makes
    /// sure the view has applied the heights before each step it serves
    /// ([`lamina_interfaces::ParamsRegistry::final_through`]).
    pub fn with_params(self, params: Arc<dyn lamina_interfaces::ParamsView>) -> Self {
        let chains = self
            .chains
            .iter()
            .map(|c| Chain {
                spec: c.spec.clone(),
                ledger: c.ledger.clone().with_params(params.clone()),
                genesis_root: c.genesis_root.clone(),
            })
            .collect();
        NativeChains { chains: Arc::new(chains) }
    }

    fn chain(&self, id: ChainId) -> Result<&Chain, StatelessError> {
        self.chains.iter().find(|c| c.spec.id == id).ok_or(StatelessError::UnknownChain(id))
    }

    /// The ledger of chain `id`.
    pub fn ledger(&self, id: ChainId) -> Option<&NativeLedger> {
        self.chain(id).ok().map(|c| &c.ledger)
    }

    /// A full replica of chain `id` at genesis (the concrete type behind
    /// [`StatelessExecutor::replica`]).
    pub fn native_replica(&self, id: ChainId) -> Result<NativeReplica, StatelessError> {
        let c = self.chain(id)?;
        Ok(NativeReplica::new(c.ledger.clone(), genesis_state(&c.spec)))
    }
}

impl StatelessExecutor for NativeChains {
    fn reexecute(
        &self,
        chain: ChainId,
        env: &StepEnv,
        pre_state_root: &Digest,
        witness: &[u8],
        txs: &[Transaction],
    ) -> Result<StepOutcome, StatelessError> {
        let c = self.chain(chain)?;
        let w: Witness = lamina_primitives::decode(witness).map_err(|e| StatelessError::BadWitness(e.to_string()))?;
        let r = witness::execute_stateless(&c.ledger.at(env.clone()), env.scope, pre_state_root, &w, txs)
            .map_err(|e| StatelessError::BadWitness(e.to_string()))?;
        Ok(StepOutcome { state_root: r.post_root, receipts_root: receipts_root(&r.output.receipts) })
    }

    fn genesis_root(&self, chain: ChainId) -> Result<Digest, StatelessError> {
        let c = self.chain(chain)?;
        Ok(*c.genesis_root.get_or_init(|| genesis_state(&c.spec).root()))
    }

    fn replica(&self, chain: ChainId) -> Result<Box<dyn ChainReplica>, StatelessError> {
        Ok(Box::new(self.native_replica(chain)?))
    }
}

/// A full replica of one chain (see [`ChainReplica`]); executes on the current rayon
/// pool.
#[derive(Debug, Clone)]
pub struct NativeReplica {
    ledger: NativeLedger,
    state: AuthenticatedState,
    /// (undo, redo) change sets of the last `retain` steps, oldest first.
    history: VecDeque<(ChangeSet, ChangeSet)>,
    retain: usize,
}

impl NativeReplica {
    /// A replica of `ledger`'s chain at `state`.
    pub fn new(ledger: NativeLedger, state: AuthenticatedState) -> Self {
        NativeReplica { ledger, state, history: VecDeque::new(), retain: 0 }
    }

    /// The witness of the current state for `txs` (encoded; `None` if over the codec's
    /// size cap).
    fn witness_now(&self, env: &StepEnv, txs: &[Transaction]) -> Option<Vec<u8>> {
        let verified = sigverify::verify_block(env.scope, txs);
        let built = witness::build(&self.ledger.at(env.clone()), &self.state, txs, &verified);
        // A full state tree has no opaque nodes, so pruning it cannot fail.
        let (_, w) = built.expect("full state tree prunes");
        lamina_primitives::encode(&w).ok()
    }

    /// The replica's state.
    pub fn state(&self) -> &AuthenticatedState {
        &self.state
    }
}

impl ChainReplica for NativeReplica {
    fn chain(&self) -> ChainId {
        use crate::machine::StateMachine as _;
        self.ledger.chain_id()
    }

    fn state_root(&self) -> Digest {
        self.state.root()
    }

    /// Executes the step like the execution service does. When `expected` is given, the
    /// step's undo set is kept so that, if the outcome differs, the pre-step state is
    /// restored, the witness built from it (encoded with the codec), and the step
    /// applied again. A witness that does not encode (over the codec's size cap) is
    /// `None`.
    fn execute_step(
        &mut self,
        env: &StepEnv,
        txs: &[Transaction],
        expected: Option<&StepOutcome>,
    ) -> (StepOutcome, Option<Vec<u8>>) {
        let out = execute_txs(&self.ledger.at(env.clone()), env.scope, &self.state, txs);
        let undo = (expected.is_some() || self.retain > 0).then(|| inverse(&self.state, &out.changes));
        let state_root = self.state.apply(&out.changes, true);
        let outcome = StepOutcome { state_root, receipts_root: receipts_root(&out.receipts) };
        let witness = match (expected, &undo) {
            (Some(e), Some(undo)) if *e != outcome => {
                self.state.apply(undo, true);
                let w = self.witness_now(env, txs);
                self.state.apply(&out.changes, true);
                w
            }
            _ => None,
        };
        if self.retain > 0
            && let Some(undo) = undo
        {
            if self.history.len() == self.retain {
                self.history.pop_front();
            }
            self.history.push_back((undo, out.changes));
        }
        (outcome, witness)
    }

    fn retain_history(&mut self, steps: usize) {
        self.retain = steps;
        while self.history.len() > steps {
            self.history.pop_front();
        }
    }

    fn past_witness(&mut self, back: usize, env: &StepEnv, txs: &[Transaction]) -> Option<Vec<u8>> {
        let n = self.history.len();
        if back >= n {
            return None;
        }
        let target = n - 1 - back;
        for (undo, _) in self.history.iter().skip(target).rev() {
            self.state.apply(undo, true);
        }
        let w = self.witness_now(env, txs);
        for (_, redo) in self.history.iter().skip(target) {
            self.state.apply(redo, true);
        }
        w
    }
}
