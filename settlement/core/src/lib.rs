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
    Account, ChallengeOutcome, ClaimRecord, ClaimStatus, Event, HeldClaim, Input, OrphanReason, ProofInputs,
    SettlementState, Stats,
};
