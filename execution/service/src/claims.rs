//! The claim chain: which [`CheckpointClaim`]s a node makes, as a pure function of its
//! committed records and its key.
//!
//! Steps accumulate as heights commit. After committing height `h`, if there are pending
//! steps and either `claim_every > 0 && h % claim_every == 0` or [`MAX_CLAIM_STEPS`]
//! steps are pending, the pending steps become one claim over `(last claim's to, h]`
//! whose parent is the last claim ([`Digest::ZERO`] and 0 for the first). The cut
//! points depend on heights alone, so a node that replays its records after a restart
//! rebuilds exactly the claims (same ids) it made before. `claim_every == 0` makes no
//! claims at all. A height without data adds no step, so an idle chain claims nothing.
//!
//! With `faulty` (fault injection for demos and tests only), every step's state root and
//! the claim's state root are corrupted deterministically (first byte flipped): the claim
//! is wrong but self-consistent, so only re-execution (a fraud proof) can tell.

use lamina_execution_core::ChainHead;
use lamina_interfaces::settlement::MAX_CLAIM_STEPS;
use lamina_interfaces::{CheckpointClaim, ClaimStep};
use lamina_primitives::{ChainId, Digest, Height, Keypair, PublicKey, Signature};

/// What every claim of a chain binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimParams {
    /// [`lamina_interfaces::Genesis::network_id`].
    pub network: Digest,
    /// The chain.
    pub chain: ChainId,
    /// [`lamina_interfaces::ChainSpec::params_digest`].
    pub params: Digest,
    /// Cut a claim at heights divisible by this (0: no claims).
    pub claim_every: u64,
    /// Corrupt state roots (fault injection; see the module docs).
    pub faulty: bool,
}

/// The claim chain's state (see the module docs).
#[derive(Clone, Debug)]
pub struct ClaimChain {
    params: ClaimParams,
    parent: Digest,
    from: Height,
    pending: Vec<ClaimStep>,
}

fn corrupt(root: &Digest) -> Digest {
    let mut r = *root;
    r.0[0] ^= 0xFF;
    r
}

impl ClaimChain {
    /// A chain with no claims yet (extending the genesis state).
    pub fn new(params: ClaimParams) -> Self {
        ClaimChain { params, parent: Digest::ZERO, from: Height(0), pending: Vec::new() }
    }

    /// The cut interval in force (0: no claims).
    pub fn claim_every(&self) -> u64 {
        self.params.claim_every
    }

    /// Id of the last claim made ([`Digest::ZERO`] before the first).
    pub fn last_claim(&self) -> Digest {
        self.parent
    }

    /// Height the next claim starts after (the last claim's `to`; 0 before the first).
    pub fn from(&self) -> Height {
        self.from
    }

    /// Continues a claim chain saved in a snapshot: the last claim's id and `to`, and
    /// the steps committed since.
    pub fn restore(&mut self, parent: Digest, from: Height, pending: Vec<ClaimStep>) {
        self.parent = parent;
        self.from = from;
        self.pending = pending;
    }

    /// Steps committed since the last claim.
    pub fn pending(&self) -> &[ClaimStep] {
        &self.pending
    }

    /// Records the commit of `head.height` (with its step, if it was one) and returns
    /// the claim cut there, signed with `key`, if any.
    pub fn on_commit(&mut self, step: Option<ClaimStep>, head: &ChainHead, key: &Keypair) -> Option<CheckpointClaim> {
        let every = self.params.claim_every;
        if every == 0 {
            return None;
        }
        if let Some(s) = step {
            self.pending.push(s);
        }
        let h = head.height;
        if self.pending.is_empty() || (!h.0.is_multiple_of(every) && self.pending.len() < MAX_CLAIM_STEPS) {
            return None;
        }
        let mut steps = std::mem::take(&mut self.pending);
        let mut state_root = head.state_root;
        if self.params.faulty {
            for s in &mut steps {
                s.state_root = corrupt(&s.state_root);
            }
            state_root = corrupt(&state_root);
        }
        let claim = CheckpointClaim {
            network: self.params.network,
            chain_id: self.params.chain,
            parent: self.parent,
            from: self.from,
            to: h,
            steps,
            state_root,
            receipts_root: head.receipts_root,
            params: self.params.params,
            claimer: PublicKey::default(),
            signature: Signature::default(),
        }
        .sign(key);
        self.parent = claim.id();
        self.from = h;
        Some(claim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_interfaces::settlement::chain_receipts;

    fn params(every: u64, faulty: bool) -> ClaimParams {
        ClaimParams { network: Digest([1; 32]), chain: ChainId(1), params: Digest([2; 32]), claim_every: every, faulty }
    }

    /// Heights 1..=n, a step at every height not divisible by 3.
    fn run(chain: &mut ClaimChain, n: u64) -> Vec<CheckpointClaim> {
        let key = Keypair::for_testing(1);
        let mut head = ChainHead::genesis(Digest([9; 32]));
        let mut out = Vec::new();
        for h in 1..=n {
            head.height = Height(h);
            let step = (h % 3 != 0).then(|| ClaimStep {
                height: Height(h),
                inputs: Digest([h as u8; 32]),
                state_root: Digest([h as u8 + 100; 32]),
                receipts_root: Digest([h as u8 + 50; 32]),
            });
            if let Some(s) = step {
                head.state_root = s.state_root;
                head.receipts_root = chain_receipts(&head.receipts_root, s.height, &s.receipts_root);
            }
            out.extend(chain.on_commit(step, &head, &key));
        }
        out
    }

    #[test]
    fn claims_chain_cover_steps_and_check_shape() {
        for (every, faulty) in [(1, false), (4, false), (4, true)] {
            let claims = run(&mut ClaimChain::new(params(every, faulty)), 20);
            let (mut parent, mut from, mut receipts) = (Digest::ZERO, Height(0), Digest::ZERO);
            let mut heights = Vec::new();
            for c in &claims {
                c.verify_signature().unwrap();
                assert_eq!((c.parent, c.from), (parent, from));
                c.check_shape(&receipts).unwrap();
                assert!(c.to.0.is_multiple_of(every));
                let honest =
                    c.steps.last().unwrap().state_root == Digest([c.steps.last().unwrap().height.0 as u8 + 100; 32]);
                assert_eq!(honest, !faulty);
                heights.extend(c.steps.iter().map(|s| s.height.0));
                (parent, from, receipts) = (c.id(), c.to, c.receipts_root);
            }
            let want: Vec<u64> = (1..=20).filter(|h| h % 3 != 0 && *h <= from.0).collect();
            assert_eq!(heights, want);
        }
        assert!(run(&mut ClaimChain::new(params(0, false)), 20).is_empty());
    }
}
