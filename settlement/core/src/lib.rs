//! Lamina's settlement core: checkpoint claims, bonds, fraud proofs and finality counted in log heights.
//!
//! Settlement replays the settlement namespace of the ordered log. Everything here is a
//! pure, deterministic function of the genesis ([`Params`]) and the ordered inputs: no
//! clock (windows count log heights), no I/O, no threads. The service crate fetches
//! what the log references (a challenged step's transactions, DA-held witnesses) and
//! feeds it in.
//!
//! * [`entry`]: what settlement transactions carry ([`Entry`]: claims, challenges,
//!   bad-encoding proofs) and how to build them.
//! * [`state`]: the state machine ([`SettlementState`]): the rules, bonds and finality.
//! * [`anchors`]: finalized [`Anchor`]s and their Merkle proofs ([`AnchorProof`]).
//! * [`params`]: the parameters taken from the genesis.
//!
//! # Guarantees (tested in `tests/`)
//!
//! * A claim with a wrong state or receipts root at any step is slashed by one
//!   challenge within its window and never anchored (S1).
//! * Finality of an honest claim comes exactly W heights after its inclusion,
//!   whatever competing claims and failing challenges others post (S2, S4).
//! * Challenges after the window, duplicate claims, claims for another network, other
//!   ledger parameters or heights not yet ordered are rejected (S3, S5, S10).
//! * A forged witness costs the challenger its bond; malformed challenges are rejected
//!   with no state change (S6, S7).
//! * Claims over data without a valid availability certificate, or naming inputs the
//!   log did not order, never finalize (S8); a proven wrongly encoded square is
//!   recorded as evidence and means "no transactions" for the namespaces whose rows
//!   are bad (the DA layer's canonical rule), so chains keep finalizing over it; a
//!   claim never finalizes before its pre-state is final, i.e. before its parent or an
//!   equivalent claim (S9).
//! * Several claimers of one chain all keep finalizing: a claim with the same range,
//!   pre-state and roots as the anchored one finalizes as its duplicate (no second
//!   anchor) and its children stay valid; claims cut differently lose only the ones
//!   straddling an anchor boundary, refunded (`tests/claimers.rs`).
//! * A claim whose parent reaches the log after it (consecutive claims of a claimer
//!   reordered) is held, bounded and expiring, and accepted when its parent is; the
//!   claimer's chain of claims keeps finalizing (`tests/reorder.rs`).
//! * Bonds are conserved: free + bonded + burned is constant.
//!
//! # Example
//!
//! A checkpoint claim of chain 7 is accepted and bonded, goes unchallenged through its
//! window (W = 3 heights) and finalizes: the bond is returned and the chain gets its first
//! [`Anchor`], provable against the chain's anchors root.
//!
//! ```
//! use lamina_interfaces::settlement::{chain_receipts, inputs_digest};
//! use lamina_interfaces::{
//!     ChainReplica, CheckpointClaim, ClaimStep, EncodingFraudVerifier, StatelessError, StatelessExecutor, StepEnv,
//!     StepOutcome,
//! };
//! use lamina_primitives::{ChainId, Digest, Height, Keypair, Signature, Transaction, TxScope};
//! use lamina_settlement_core::{Entry, Event, Input, Params, SettlementState};
//!
//! // The execution and DA layers' seams. An unchallenged claim needs only the genesis root.
//! struct Exec;
//! impl StatelessExecutor for Exec {
//!     fn reexecute(&self, chain: ChainId, _: &StepEnv, _: &Digest, _: &[u8], _: &[Transaction])
//!     -> Result<StepOutcome, StatelessError> {
//!         Err(StatelessError::UnknownChain(chain))
//!     }
//!     fn genesis_root(&self, _: ChainId) -> Result<Digest, StatelessError> {
//!         Ok(Digest([1; 32]))
//!     }
//!     fn replica(&self, chain: ChainId) -> Result<Box<dyn ChainReplica>, StatelessError> {
//!         Err(StatelessError::UnknownChain(chain))
//!     }
//! }
//! struct NoDa;
//! impl EncodingFraudVerifier for NoDa {
//!     fn verify_bad_encoding(&self, _: &Digest, _: &[u8]) -> Result<(), String> {
//!         Err("no bad-encoding proofs here".into())
//!     }
//! }
//!
//! let (chain, claimer) = (ChainId(7), Keypair::for_testing(1));
//! let params = Params {
//!     network: Digest([9; 32]),
//!     scope: TxScope::Network(Digest([9; 32])),
//!     window: 3,
//!     claim_bond: 100,
//!     challenge_bond: 50,
//!     challenger_reward_percent: 50,
//!     anchor_window: 100,
//!     chains: [(chain, Digest([2; 32]))].into(),
//!     balances: vec![(claimer.public(), 1_000)],
//! };
//! let mut st = SettlementState::new(params.clone());
//!
//! // Log height 1 carries one certified square with data for the chain.
//! let data_root = Digest([3; 32]);
//! st.observe_block(Height(1), &[(chain, vec![data_root], true)]);
//! st.apply_entries(Height(1), vec![], &Exec, &NoDa);
//!
//! // The claim "executing height 1 from genesis gave these roots", posted at height 2.
//! let inputs = inputs_digest(&[data_root]);
//! let step = ClaimStep { height: Height(1), inputs, state_root: Digest([4; 32]), receipts_root: Digest([5; 32]) };
//! let claim = CheckpointClaim {
//!     network: params.network,
//!     chain_id: chain,
//!     parent: Digest::ZERO,
//!     from: Height(0),
//!     to: Height(1),
//!     steps: vec![step],
//!     state_root: step.state_root,
//!     receipts_root: chain_receipts(&Digest::ZERO, Height(1), &step.receipts_root),
//!     params: params.chains[&chain],
//!     claimer: claimer.public(),
//!     signature: Signature::default(),
//! }
//! .sign(&claimer);
//! let tx = Entry::transaction(&claimer, params.scope, 0, &Entry::Claim(claim.clone())).unwrap();
//! st.observe_block(Height(2), &[]);
//! let events = st.apply_entries(Height(2), vec![Input { tx, proof: None }], &Exec, &NoDa);
//! assert!(matches!(events[..], [Event::ClaimAccepted { deadline: Height(5), .. }]), "{events:?}");
//! assert_eq!(st.account(&claimer.public()).bonded, 100);
//!
//! // Unchallenged, it finalizes at the end of its deadline, height 2 + W.
//! for h in 3..=5 {
//!     st.observe_block(Height(h), &[]);
//!     let events = st.apply_entries(Height(h), vec![], &Exec, &NoDa);
//!     assert_eq!(matches!(events[..], [Event::Finalized { .. }]), h == 5, "{events:?}");
//! }
//! assert_eq!(st.account(&claimer.public()).free, 1_000);
//! let anchor = st.finalized(chain).unwrap();
//! assert_eq!((anchor.claim, anchor.state_root), (claim.id(), claim.state_root));
//! st.anchor_proof(chain, Height(1)).unwrap().verify(&st.anchors_root(chain)).unwrap();
//! ```

pub mod anchors;
pub mod entry;
mod error;
pub mod params;
pub mod state;

pub use anchors::{Anchor, AnchorProof, verify_anchor};
pub use entry::{Challenge, Entry, SETTLEMENT_CHAIN, WitnessRef, witness_hash};
pub use error::Error;
pub use params::Params;
pub use state::{
    Account, ChainImage, ChallengeOutcome, ClaimRecord, ClaimStatus, Event, HeldClaim, ImageError, Input, OrphanReason,
    ProofInputs, SettlementState, StateImage, Stats,
};
