//! The settlement rules' parameters, derived once from the genesis.

use std::collections::BTreeMap;

use lamina_interfaces::Genesis;
use lamina_primitives::{ChainId, Digest, PublicKey, TxScope};

/// Everything the state machine needs from the genesis: the same genesis gives the same
/// `Params` on every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// Network id ([`Genesis::network_id`]); claims for another network are rejected.
    pub network: Digest,
    /// What the network's transaction signatures bind ([`Genesis::tx_scope`]):
    /// settlement transactions are verified in it.
    pub scope: TxScope,
    /// The genesis challenge window W in log heights (at least 1): a claim included at
    /// `h` may be challenged through `h + W` and finalizes at the end of `h + W` at the
    /// earliest. Governance may change it from an epoch on
    /// ([`crate::SettlementState::window_at`]).
    pub window: u64,
    /// Bond locked per claim.
    pub claim_bond: u64,
    /// Bond put up per challenge (paid to the claimer when the challenge fails).
    pub challenge_bond: u64,
    /// Percent (at most 100) of a slashed claim bond paid to the challenger; the rest
    /// is burned.
    pub challenger_reward_percent: u8,
    /// Anchor window in log heights ([`lamina_interfaces::SettlementSpec::anchor_window`]):
    /// an anchor is usable for bridge proofs through this many heights after its
    /// chain's next anchor finalized.
    pub anchor_window: u64,
    /// The chains that may be claimed, with the [`lamina_interfaces::ChainSpec::params_digest`]
    /// their claims must bind.
    pub chains: BTreeMap<ChainId, Digest>,
    /// Genesis balances of the settlement ledger, sorted by key, duplicates summed.
    pub balances: Vec<(PublicKey, u64)>,
}

impl Params {
    /// The parameters of `genesis`. Out-of-range values are clamped rather than
    /// refused (windows of 0 become 1, a reward above 100 % becomes 100 %);
    /// [`Genesis::validate`] reports them.
    pub fn from_genesis(genesis: &Genesis) -> Params {
        let st = &genesis.settlement;
        let mut balances: BTreeMap<PublicKey, u64> = BTreeMap::new();
        for b in &st.balances {
            let e = balances.entry(b.account).or_default();
            *e = e.saturating_add(b.amount);
        }
        Params {
            network: genesis.network_id(),
            scope: genesis.tx_scope(),
            window: st.challenge_window.max(1),
            claim_bond: st.claim_bond,
            challenge_bond: st.challenge_bond,
            challenger_reward_percent: st.challenger_reward_percent.min(100),
            anchor_window: st.anchor_window.max(1),
            chains: genesis.chains.iter().map(|c| (c.id, c.params_digest())).collect(),
            balances: balances.into_iter().collect(),
        }
    }

    /// Sum of the genesis balances: the settlement ledger's constant total supply
    /// (free + bonded + burned always adds up to it).
    pub fn total_supply(&self) -> u128 {
        self.balances.iter().map(|(_, a)| u128::from(*a)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_interfaces::{GenesisBalance, SettlementSpec};
    use lamina_primitives::Keypair;

    #[test]
    fn from_genesis_sums_duplicates_and_clamps() {
        let k = |n| Keypair::for_testing(n).public();
        let genesis = Genesis {
            settlement: SettlementSpec {
                challenge_window: 0,
                claim_bond: 5,
                challenge_bond: 6,
                challenger_reward_percent: 250,
                anchor_window: 0,
                balances: vec![
                    GenesisBalance { account: k(2), amount: 3 },
                    GenesisBalance { account: k(1), amount: 4 },
                    GenesisBalance { account: k(2), amount: u64::MAX },
                ],
            },
            ..lamina_test_utils::genesis("p")
        };
        let p = Params::from_genesis(&genesis);
        assert_eq!((p.window, p.challenger_reward_percent, p.anchor_window), (1, 100, 1));
        assert_eq!(p.network, genesis.network_id());
        let mut want = vec![(k(1), 4), (k(2), u64::MAX)];
        want.sort();
        assert_eq!(p.balances, want);
        assert_eq!(p.total_supply(), 4 + u128::from(u64::MAX));
    }
}
