//! What the service persists: one record per log height it has processed.
//!
//! The store is a lamina-store [`Log`](lamina_store::Log) in `<data>/blocks`. Record 0 is
//! a [`Header`] naming the chain and the genesis digest (a node refuses data written
//! under another genesis or chain). Record `h` (for `h >= 1`) is the [`BlockRecord`] of
//! log height `h`: the block's change set, its receipts, the roots after it and its claim step. The
//! state is rebuilt at start by replaying the change sets in order from the genesis
//! state, checking each record's state root, so a record is "what the block did", and
//! a damaged or foreign store is detected, never silently used. The claim chain
//! ([`crate::claims`]) is rebuilt from the records' steps.

use lamina_execution_core::ledger::LedgerFailure;
use lamina_execution_core::{ChainFailure, ChangeSet, Receipt};
use lamina_interfaces::ClaimStep;
use lamina_primitives::{ChainId, Digest, Height};

/// First record of a store.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Header {
    /// Format version.
    pub version: u32,
    /// The chain this store executes.
    pub chain: ChainId,
    /// Digest of the genesis the store was written under.
    pub genesis: Digest,
}

impl lamina_primitives::Wire for Header {
    const NAME: &'static str = "ExecHeader";
    const MAX_SIZE: usize = 256;
}

/// The effect of one log height on the chain; `F` is the chain machine's failure type.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BlockRecord<F = LedgerFailure> {
    /// Log height.
    pub height: Height,
    /// State changes (empty when the block held no data for this chain).
    pub changes: ChangeSet,
    /// Receipts of the chain's transactions in this block, in order.
    pub receipts: Vec<Receipt<F>>,
    /// State root after the block.
    pub state_root: Digest,
    /// Receipts root chained over every step so far (unchanged by heights without data
    /// for the chain).
    pub receipts_root: Digest,
    /// Data root of the last square at or below this height that held this chain's data.
    pub data_root: Digest,
    /// The claim step, when the height carried data for the chain (see
    /// [`lamina_execution_core::block`]).
    pub step: Option<ClaimStep>,
}

impl<F: ChainFailure> lamina_primitives::Wire for BlockRecord<F> {
    const NAME: &'static str = "ExecBlockRecord";
    const MAX_SIZE: usize = 1 << 30;
}

/// Current format version.
pub const VERSION: u32 = 2;

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_execution_core::machine::FailureCode;
    use lamina_execution_core::{Receipt, Status};
    use lamina_primitives::TxId;

    // rkyv's derive generates undocumented items for the fields of enum variants.
    #[allow(missing_docs)]
    mod failure {
        /// A chain builder's failure type, with a field (as the native ledger's bad nonce).
        #[derive(
            Clone,
            Debug,
            PartialEq,
            Eq,
            thiserror::Error,
            serde::Serialize,
            rkyv::Archive,
            rkyv::Serialize,
            rkyv::Deserialize,
        )]
        pub enum Custom {
            #[error("too low: {0}")]
            TooLow(u64),
            #[error("denied")]
            Denied,
        }
    }
    use failure::Custom;

    impl FailureCode for Custom {
        fn code(&self) -> u32 {
            match self {
                Custom::TooLow(_) => 1,
                Custom::Denied => 2,
            }
        }
    }

    impl ChainFailure for Custom {
        fn label(&self) -> &'static str {
            match self {
                Custom::TooLow(_) => "too_low",
                Custom::Denied => "denied",
            }
        }
    }

    /// What a restart decodes: a record of another machine's receipts survives the
    /// round trip through the store's encoding, and bad bytes are refused.
    #[test]
    fn records_of_a_custom_machine_round_trip() {
        let r = BlockRecord::<Custom> {
            height: Height(7),
            changes: ChangeSet::default(),
            receipts: vec![
                Receipt { tx_id: TxId(Digest([1; 32])), status: Status::Success },
                Receipt { tx_id: TxId(Digest([2; 32])), status: Status::Failed(Custom::TooLow(3)) },
                Receipt { tx_id: TxId(Digest([3; 32])), status: Status::Rejected(Custom::Denied) },
            ],
            state_root: Digest([4; 32]),
            receipts_root: Digest([5; 32]),
            data_root: Digest([6; 32]),
            step: None,
        };
        let bytes = lamina_primitives::encode(&r).unwrap();
        assert_eq!(lamina_primitives::decode::<BlockRecord<Custom>>(&bytes).unwrap(), r);
        let mut bad = bytes.clone();
        let n = bad.len();
        bad.truncate(n / 2);
        assert!(lamina_primitives::decode::<BlockRecord<Custom>>(&bad).is_err());
    }
}
