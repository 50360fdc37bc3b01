//! Settlement: where execution's claims about state become final.
//!
//! A [`CheckpointClaim`] says "chain C, starting from the state its parent claim
//! committed to (or its genesis state), executed log heights `(from, to]` and reached
//! these roots". It lists one [`ClaimStep`] per height in that range whose block
//! carried data for the chain (heights without data change nothing), so a challenger can
//! prove fraud at a single step: the step's pre-state root is the previous step's
//! post-state root (or the parent's), and settlement re-executes that one step
//! statelessly ([`crate::StatelessExecutor`]). No bisection game is needed because the
//! claim commits to every intermediate root up front.
//!
//! The settlement layer itself (entries, bonds, windows, finality) lives in
//! `lamina-settlement-core`; this module holds only what execution needs to make a
//! claim and the seam it posts through.

use std::future::Future;

use lamina_primitives::{ChainId, Digest, Domain, Height, Keypair, PublicKey, Signature, domains, sig};

/// Domain of the per-height receipts chain (see [`chain_receipts`]).
pub static RECEIPTS_CHAIN: Domain = Domain::new("lamina execution receipts chain v1");
/// Domain of [`inputs_digest`].
pub static STEP_INPUTS: Domain = Domain::new("lamina settlement step inputs v1");
/// Domain of [`LedgerParams::digest`].
pub static LEDGER_PARAMS: Domain = Domain::new("lamina ledger params v1");

/// Most steps one claim may carry (keeps a claim well inside one transaction).
pub const MAX_CLAIM_STEPS: usize = 256;

/// Chains the receipts root of one block onto the running root of everything before
/// it: `H(prev ‖ height ‖ block_root)`. Applied only at heights that carried data for
/// the chain (a [`ClaimStep`]); heights without data leave the running root unchanged.
pub fn chain_receipts(prev: &Digest, height: Height, block_root: &Digest) -> Digest {
    RECEIPTS_CHAIN.hash_parts(&[prev.as_bytes(), &height.0.to_le_bytes(), block_root.as_bytes()])
}

/// Commitment to a step's inputs: the data roots, in block order, of the squares of one
/// block that list the chain's namespace. Settlement recomputes it from the ordered log,
/// so a claim cannot name data the log did not order (the DA gate).
pub fn inputs_digest(data_roots: &[Digest]) -> Digest {
    let mut h = STEP_INPUTS.hasher();
    h.update(&(data_roots.len() as u64).to_le_bytes());
    for r in data_roots {
        h.update(r.as_bytes());
    }
    Digest(*h.finalize().as_bytes())
}

/// The parameters that define a chain's transition function. Every replica and every
/// verifier must run the same ones, so they live in the genesis chain spec and claims
/// bind their digest. The fee here is the genesis fee: governance may change it from an
/// epoch on ([`crate::ParamsView`]), which every replica and verifier reads from the
/// same log, so claims keep binding the genesis digest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LedgerParams {
    /// Version of the ledger's rules.
    pub version: u32,
    /// Flat fee per transaction in the native asset.
    pub fee: u64,
    /// Who receives fees.
    pub fee_collector: PublicKey,
}

impl LedgerParams {
    /// The digest claims bind.
    pub fn digest(&self, chain: ChainId) -> Digest {
        LEDGER_PARAMS.hash_parts(&[
            &chain.0.to_le_bytes(),
            &self.version.to_le_bytes(),
            &self.fee.to_le_bytes(),
            &self.fee_collector.0,
        ])
    }
}

/// One executed height of a claim's range that carried data for the chain.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Debug,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct ClaimStep {
    /// Log height.
    pub height: Height,
    /// [`inputs_digest`] of the block's squares holding the chain's namespace.
    pub inputs: Digest,
    /// State root after executing the height.
    pub state_root: Digest,
    /// Receipts root of this height's transactions alone (not chained).
    pub receipts_root: Digest,
}

/// A claim about a chain's state after a range of log heights (see the module docs).
#[derive(
    Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct CheckpointClaim {
    /// Network id ([`crate::Genesis::network_id`]): a claim is void on another network.
    pub network: Digest,
    /// The chain.
    pub chain_id: ChainId,
    /// Id ([`CheckpointClaim::id`]) of the claim this one extends; [`Digest::ZERO`] for
    /// the first claim, which extends the chain's genesis state.
    pub parent: Digest,
    /// Exclusive lower bound of the range: the parent's `to` (0 for genesis).
    pub from: Height,
    /// Inclusive upper bound of the range.
    pub to: Height,
    /// One step per height in `(from, to]` with data for the chain, ascending.
    pub steps: Vec<ClaimStep>,
    /// State root after `to` (the last step's).
    pub state_root: Digest,
    /// Receipts root after `to`: the parent's, chained with every step
    /// ([`chain_receipts`]).
    pub receipts_root: Digest,
    /// [`LedgerParams::digest`] of the transition function used.
    pub params: Digest,
    /// Who makes the claim (and bonds it).
    pub claimer: PublicKey,
    /// Claimer's signature over [`CheckpointClaim::id`].
    pub signature: Signature,
}

impl CheckpointClaim {
    /// The claim's id and signed digest (every field except the signature).
    pub fn id(&self) -> Digest {
        let mut h = domains::CHECKPOINT_CLAIM.hasher();
        h.update(self.network.as_bytes());
        h.update(&self.chain_id.0.to_le_bytes());
        h.update(self.parent.as_bytes());
        h.update(&self.from.0.to_le_bytes());
        h.update(&self.to.0.to_le_bytes());
        h.update(&(self.steps.len() as u64).to_le_bytes());
        for s in &self.steps {
            h.update(&s.height.0.to_le_bytes());
            h.update(s.inputs.as_bytes());
            h.update(s.state_root.as_bytes());
            h.update(s.receipts_root.as_bytes());
        }
        h.update(self.state_root.as_bytes());
        h.update(self.receipts_root.as_bytes());
        h.update(self.params.as_bytes());
        h.update(&self.claimer.0);
        Digest(*h.finalize().as_bytes())
    }

    /// Fills `claimer` and `signature` with `key`.
    pub fn sign(mut self, key: &Keypair) -> Self {
        self.claimer = key.public();
        self.signature = key.sign(&self.id());
        self
    }

    /// Checks the claimer's signature.
    pub fn verify_signature(&self) -> Result<(), sig::SignatureError> {
        sig::verify(&self.claimer, &self.id(), &self.signature)
    }

    /// Checks that the claim is internally consistent given its parent's post-state
    /// roots: steps non-empty, at most [`MAX_CLAIM_STEPS`], strictly increasing and
    /// inside `(from, to]`; `state_root` is the last step's; `receipts_root` chains the
    /// steps onto `parent_receipts`.
    pub fn check_shape(&self, parent_receipts: &Digest) -> Result<(), String> {
        if self.to <= self.from {
            return Err(format!("empty range ({}, {}]", self.from, self.to));
        }
        let Some(last) = self.steps.last() else { return Err("claim has no steps".into()) };
        if self.steps.len() > MAX_CLAIM_STEPS {
            return Err(format!("{} steps exceed the limit of {MAX_CLAIM_STEPS}", self.steps.len()));
        }
        let mut prev = self.from;
        let mut receipts = *parent_receipts;
        for s in &self.steps {
            if s.height <= prev || s.height > self.to {
                return Err(format!("step height {} out of order or outside ({}, {}]", s.height, self.from, self.to));
            }
            prev = s.height;
            receipts = chain_receipts(&receipts, s.height, &s.receipts_root);
        }
        if last.state_root != self.state_root {
            return Err("state root is not the last step's".into());
        }
        if receipts != self.receipts_root {
            return Err("receipts root does not chain the steps onto the parent's".into());
        }
        Ok(())
    }
}

impl lamina_primitives::Wire for CheckpointClaim {
    const NAME: &'static str = "CheckpointClaim";
    const MAX_SIZE: usize = 1024 + MAX_CLAIM_STEPS * 112;
}

/// Why a claim could not be posted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    /// Settlement is unreachable or busy; retrying may succeed.
    #[error("settlement unavailable: {0}")]
    Unavailable(String),
    /// The claim was refused (bad signature, unknown chain, not newer than the last).
    #[error("claim rejected: {0}")]
    Rejected(String),
}

/// Where execution posts its checkpoint claims.
///
/// # Contract
///
/// `post_claim` returns once the claim is durably on its way to the settlement layer
/// (for the log-based implementation: accepted by consensus intake under the settlement
/// namespace). Posting the same claim twice is harmless (settlement ignores a claim id
/// it has seen). Claims of one claimer form a chain through `parent`; settlement decides
/// finality in log heights, not wall time.
pub trait Settlement: Send + Sync {
    /// Posts a signed claim.
    fn post_claim(&self, claim: CheckpointClaim) -> impl Future<Output = Result<(), SettlementError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(h: u64) -> ClaimStep {
        ClaimStep {
            height: Height(h),
            inputs: inputs_digest(&[domains::BATCH.hash(&h.to_le_bytes())]),
            state_root: domains::BATCH.hash(b"s"),
            receipts_root: domains::BATCH.hash(b"r"),
        }
    }

    fn claim() -> CheckpointClaim {
        let steps = vec![step(3), step(5)];
        let receipts = steps.iter().fold(Digest::ZERO, |r, s| chain_receipts(&r, s.height, &s.receipts_root));
        CheckpointClaim {
            network: domains::BATCH.hash(b"net"),
            chain_id: ChainId(1),
            parent: Digest::ZERO,
            from: Height(0),
            to: Height(6),
            state_root: steps[1].state_root,
            steps,
            receipts_root: receipts,
            params: Digest::ZERO,
            claimer: PublicKey::default(),
            signature: Signature::default(),
        }
    }

    #[test]
    fn signed_claim_verifies_and_binds_fields() {
        let key = Keypair::for_testing(3);
        let claim = claim().sign(&key);
        claim.verify_signature().unwrap();
        claim.check_shape(&Digest::ZERO).unwrap();
        let mut c = claim.clone();
        c.to = Height(11);
        assert!(c.verify_signature().is_err());
        let mut c = claim.clone();
        c.steps[0].state_root = Digest::ZERO;
        assert!(c.verify_signature().is_err());
        let mut c = claim.clone();
        c.network = Digest::ZERO;
        assert!(c.verify_signature().is_err());
        let bytes = lamina_primitives::encode(&claim).unwrap();
        assert_eq!(lamina_primitives::decode::<CheckpointClaim>(&bytes).unwrap(), claim);
    }

    #[test]
    fn shape_checks_catch_inconsistent_claims() {
        let c = claim();
        assert!(c.check_shape(&domains::BATCH.hash(b"other")).is_err(), "receipts must chain from the parent's");
        let mut bad = c.clone();
        bad.steps.swap(0, 1);
        assert!(bad.check_shape(&Digest::ZERO).is_err());
        let mut bad = c.clone();
        bad.to = Height(4);
        assert!(bad.check_shape(&Digest::ZERO).is_err());
        let mut bad = c.clone();
        bad.state_root = Digest::ZERO;
        assert!(bad.check_shape(&Digest::ZERO).is_err());
        let mut bad = c;
        bad.steps.clear();
        assert!(bad.check_shape(&Digest::ZERO).is_err());
    }
}
