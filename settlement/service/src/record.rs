//! What the service persists: the inputs of each log height that had any.
//!
//! The store is a lamina-store [`Log`](lamina_store::Log) in `<data>/settlement`.
//! Record 0 is a [`Header`] naming the network id (a node refuses data written for
//! another network). Every later record is a [`HeightRecord`]: one log height's chain
//! data roots and settlement transactions, with the inputs fetched for challenges.
//! Heights with neither are not stored (replay applies them as empty). A restart
//! replays the records into a fresh state machine, which reaches the identical state
//! because the core is a pure function of its inputs, then follows the log from the
//! last stored height.

use lamina_primitives::{ChainId, Digest, Height, Transaction};
use lamina_settlement_core::{Input, ProofInputs};

/// First record of a store.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Header {
    /// Format version.
    pub version: u32,
    /// The network id the store was written for.
    pub network: Digest,
}

impl lamina_primitives::Wire for Header {
    const NAME: &'static str = "SettlementHeader";
    const MAX_SIZE: usize = 128;
}

/// Current format version.
pub const VERSION: u32 = 1;

/// One chain's data at a height (what [`lamina_settlement_core::SettlementState::observe_block`] takes).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ChainData {
    /// The chain.
    pub chain: ChainId,
    /// Data roots of the block's squares holding the chain, in block order.
    pub data_roots: Vec<Digest>,
    /// Whether every one of those squares' availability certificates verified.
    pub available: bool,
}

/// A settlement transaction with what was fetched to judge it.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StoredInput {
    /// The transaction.
    pub tx: Transaction,
    /// For a challenge: the challenged step's chain transactions.
    pub step_txs: Option<Vec<Transaction>>,
    /// For a challenge: the witness bytes, or why they could not be obtained.
    pub witness: Option<Result<Vec<u8>, String>>,
}

impl StoredInput {
    /// The state machine's input.
    pub fn to_input(&self) -> Input {
        let proof = match (&self.step_txs, &self.witness) {
            (Some(txs), Some(w)) => Some(ProofInputs { txs: txs.clone(), witness: w.clone() }),
            _ => None,
        };
        Input { tx: self.tx.clone(), proof }
    }
}

/// One log height's inputs.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct HeightRecord {
    /// Log height.
    pub height: Height,
    /// Chains with data at this height.
    pub chains: Vec<ChainData>,
    /// The settlement namespace's transactions, in log order.
    pub entries: Vec<StoredInput>,
}

impl HeightRecord {
    /// True if the height carried nothing settlement needs to remember.
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty() && self.entries.is_empty()
    }

    /// The (chain, data roots, available) list the core observes.
    pub fn observed(&self) -> Vec<(ChainId, Vec<Digest>, bool)> {
        self.chains.iter().map(|c| (c.chain, c.data_roots.clone(), c.available)).collect()
    }
}

impl lamina_primitives::Wire for HeightRecord {
    const NAME: &'static str = "SettlementHeightRecord";
    const MAX_SIZE: usize = 1 << 30;
}
