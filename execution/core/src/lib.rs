//! Lamina's execution core: state-machine seam, native ledger, sequential and parallel executors, authenticated state.
//!
//! Pure computation: no I/O, no clock, no async. Parallelism is rayon (the exception
//! DESIGN.md allows core crates), and every parallel algorithm has a sequential twin
//! that a property test holds it to.
//!
//! | module | what |
//! |---|---|
//! | [`machine`] | the [`StateMachine`] seam chain builders implement, its contract, receipts |
//! | [`ledger`] | the native multi-asset ledger (nonces, fees, assets, bridge hooks) |
//! | [`sigverify`] | the signature stage: batched ZIP-215 across all cores |
//! | [`sequential`] | the reference executor (the definition of correct) |
//! | [`parallel`] | the parallel executor: derived access sets, commutative credits, conflict groups (not Block-STM) |
//! | [`smt`], [`state_tree`], [`state`] | sparse Merkle tree over blake3 (partial trees and proofs; the full state's arena-stored, sharded tree), authenticated state |
//! | [`lanes`] | many keyed blake3 hashes of short inputs at once (SIMD across inputs), for merkleization |
//! | [`changes`] | a block's effect as a canonical, persistable change set |
//! | [`witness`] | witnesses and stateless re-execution (for fraud proofs) |
//! | [`block`] | the block state machine: one log height's inputs → changes, receipts, outcomes, claim step |
//! | [`chains`] | settlement's seams over the native ledger: stateless re-execution and full replicas of every genesis chain |
//!
//! A block runs as: `sigverify::verify_block` → `parallel::execute` (or
//! `sequential::execute`) → `AuthenticatedState::apply(changes)` → state root;
//! [`block::execute_block`] wraps that with the per-height rules (steps, receipts
//! chaining, data roots).
//!
//! One block on the native ledger, from genesis to a new state root:
//!
//! ```
//! use lamina_execution_core::ledger::{self, AssetId, LedgerConfig, NativeLedger};
//! use lamina_execution_core::{chains, sequential, sigverify};
//! use lamina_interfaces::ChainSpec;
//! use lamina_primitives::{ChainId, Digest, Keypair, TxScope};
//!
//! // Transactions of this network bind its id (`Genesis::tx_scope` gives a real one).
//! let scope = TxScope::Network(Digest([1; 32]));
//! // A chain whose genesis funds two test accounts with 1,000 each.
//! let spec = ChainSpec {
//!     id: ChainId(1),
//!     name: "demo".into(),
//!     balances: vec![],
//!     funded_test_accounts: 2,
//!     funded_test_accounts_seed: 100,
//!     funded_test_amount: 1_000,
//!     fee: 0,
//!     fee_collector: Default::default(),
//!     ledger_version: ledger::LEDGER_VERSION,
//! };
//! let mut state = chains::genesis_state(&spec);
//! let (alice, bob) = (Keypair::for_testing(100), Keypair::for_testing(101));
//!
//! // One block: alice pays bob 250 with nonce 0.
//! let txs = vec![ledger::transfer(&alice, scope, spec.id, 0, bob.public(), AssetId::NATIVE, 250)];
//! let verified = sigverify::verify_block(scope, &txs);
//! let machine = NativeLedger::new(LedgerConfig::new(spec.id));
//! let out = sequential::execute(&machine, &state, &txs, &verified);
//! assert!(out.receipts[0].is_success());
//! let root = state.apply(&out.changes, false);
//! assert_eq!(root, state.root());
//! assert_eq!(ledger::balance(&state, &bob.public(), AssetId::NATIVE), 1_250);
//! ```

pub mod block;
pub mod chains;
pub mod changes;
pub mod key;
pub mod lanes;
pub mod ledger;
pub mod machine;
pub mod parallel;
pub mod sequential;
pub mod sigverify;
pub mod smt;
pub mod state;
pub mod state_tree;
pub mod witness;

pub use block::{BlockResult, ChainHead, ChainMachine, Executed, Outcome, execute_block, execute_block_verified};
pub use chains::{NativeChains, NativeReplica};
pub use changes::ChangeSet;
pub use key::{CounterKey, DataKey, RawKey};
pub use ledger::{AssetId, LedgerConfig, LedgerFailure, NativeLedger};
pub use machine::{Access, AccessSet, ChainFailure, FailureCode, Receipt, StateMachine, StateRead, Status, TxState};
pub use sequential::BlockOutput;
pub use sigverify::Verified;
pub use state::AuthenticatedState;
