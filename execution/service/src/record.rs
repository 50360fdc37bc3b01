//! What the service persists: one record per log height it has processed.
//!
//! The records are a lamina-store [`Log`] in `<data>/blocks`, one [`BlockRecord`] per log
//! height in height order, with no gap ([`Records`] addresses them by height). A record
//! is "what the block did": its change set, its receipts, the roots after it and its
//! claim step. The [`Header`] naming the chain and the genesis digest lives in the
//! receipt index ([`crate::index`]): a node refuses data written under another genesis or
//! chain. The state is rebuilt at start from the newest snapshot ([`crate::snapshot`],
//! or the genesis state) by replaying the records after it in order, checking each
//! record's state root, so a damaged or foreign store is detected, never silently used.
//! Records below the retention window are pruned (whole segments).

use lamina_execution_core::ledger::LedgerFailure;
use lamina_execution_core::{ChainFailure, ChangeSet, Receipt};
use lamina_interfaces::ClaimStep;
use lamina_primitives::{ChainId, Digest, Height};
use lamina_store::Log;

use crate::Error;

/// What a store was written for (kept in the receipt index, [`crate::index`]).
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

/// Current format version (3: header in the index, records addressed by height, no
/// header record).
pub const VERSION: u32 = 3;

/// The block records, addressed by height: the record of height `h` is at sequence
/// number `h - offset`.
#[derive(Debug)]
pub struct Records {
    log: Log,
    offset: u64,
}

impl Records {
    /// Wraps `log`; `next` is the height the next appended record must have when the log
    /// holds none. The offset comes from the first retained record otherwise.
    pub fn new<F: ChainFailure>(log: Log, next: Height) -> Result<Self, Error> {
        let first = log.first_seq();
        let offset = if first == log.next_seq() {
            next.0.checked_sub(first).ok_or_else(|| Error::BadStore("empty store ahead of the state".into()))?
        } else {
            let rec = log.read(first)?.ok_or_else(|| Error::BadStore(format!("record {first} missing")))?;
            let r: BlockRecord<F> = lamina_primitives::decode(rec.bytes()).map_err(|e| {
                Error::BadStore(format!(
                    "first record: {e} (data written by a Lamina older than format {VERSION}? wipe the data directory: the node rebuilds from the log)"
                ))
            })?;
            r.height.0.checked_sub(first).ok_or_else(|| Error::BadStore("record height below its position".into()))?
        };
        Ok(Records { log, offset })
    }

    /// Lowest height with a record still on disk (equals [`Records::next_height`] when
    /// none is).
    pub fn first_height(&self) -> Height {
        Height(self.log.first_seq() + self.offset)
    }

    /// The height the next appended record must have.
    pub fn next_height(&self) -> Height {
        Height(self.log.next_seq() + self.offset)
    }

    /// The record of `height`, if on disk.
    pub fn get<F: ChainFailure>(&self, height: Height) -> Result<Option<BlockRecord<F>>, Error> {
        let Some(seq) = height.0.checked_sub(self.offset) else { return Ok(None) };
        let Some(rec) = self.log.read(seq)? else { return Ok(None) };
        let r: BlockRecord<F> = lamina_primitives::decode(rec.bytes()).map_err(|e| Error::BadStore(e.to_string()))?;
        if r.height != height {
            return Err(Error::BadStore(format!("record at the place of height {height} is of height {}", r.height)));
        }
        Ok(Some(r))
    }

    /// Appends `record` (which must be of [`Records::next_height`]) and waits until it is
    /// durable.
    pub fn append_durable(&self, height: Height, bytes: &[u8]) -> Result<(), Error> {
        if height != self.next_height() {
            return Err(Error::Internal(format!("record of height {height}, expected {}", self.next_height())));
        }
        self.log.append_durable(bytes)?;
        Ok(())
    }

    /// Deletes the segments whose records are all below `height`; returns how many.
    pub fn prune_below(&self, height: Height) -> Result<usize, Error> {
        Ok(self.log.prune_below(height.0.saturating_sub(self.offset))?)
    }

    /// Makes every appended record durable.
    pub fn sync(&self) -> Result<(), Error> {
        self.log.sync()?;
        Ok(())
    }
}

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
