//! The execution node's bridge index: the chain's outbound messages, inbound receipts
//! and refunds, and the state proofs relayers carry to the other chains.
//!
//! A bridge proof must be checked against a *finalized anchor*, i.e. the state root at
//! the end of a claim's range. Anchors are known only a challenge window later, when
//! that state is long gone, so the node proves ahead of time: at each claim cut of its
//! claim chain (the same cut points every node with the same `claim_every` computes,
//! [`crate::claims`]), it proves every bridge key written since the previous cut
//! against the state right after the cut. When a claim with those cut points finalizes,
//! its anchor's `to` is the proof's height and the proof verifies against the anchor's
//! root. Keys written in a range whose claim was never anchored (a slashed claim, or
//! anchors cut by another claimer at other heights) have no usable proof here.
//!
//! Memory: at most [`MAX_ENTRIES`] entries of each kind are kept (oldest dropped). The
//! index is saved whole in every state snapshot ([`BridgeIndex::image`], in the
//! snapshot's node file, [`crate::snapshot`]), so a node restarting from a snapshot keeps
//! its proofs; it is not stored incrementally on disk.

use std::collections::{BTreeMap, HashMap};

use lamina_execution_core::ledger::message_key;

use lamina_execution_core::ledger::{self, AssetId, BridgeEntry};
use lamina_execution_core::{AuthenticatedState, ChangeSet, DataKey, StateRead};
use lamina_interfaces::{BridgeCounters, BridgeMessage, Origin, ReceiptKind};
use lamina_primitives::{ChainId, Height};

/// Most outbound messages, receipts, refunds and proofs kept (each).
pub const MAX_ENTRIES: usize = 200_000;

/// A state proof of a bridge key at a claim cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutProof {
    /// The cut's height: the proof is against the state root after it.
    pub at: Height,
    /// The encoded [`lamina_execution_core::smt::StateProof`].
    pub proof: Vec<u8>,
}

/// Where an outbound message or an inbound receipt stands, as this node knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indexed {
    /// The message.
    pub message: BridgeMessage,
    /// Height that wrote the entry.
    pub written_at: Height,
}

/// The index (see the module docs).
#[derive(Debug, Default)]
pub struct BridgeIndex {
    /// Outbound messages by (destination, sequence).
    pub outbox: BTreeMap<(ChainId, u64), Indexed>,
    /// Receipts of inbound messages by (source, sequence).
    pub inbound: BTreeMap<(ChainId, u64), (ReceiptKind, Indexed)>,
    /// Refunded outbound messages by (destination, sequence).
    pub refunded: HashMap<(ChainId, u64), Height>,
    /// Proofs of bridge keys at the first cut after their write.
    pub proofs: HashMap<DataKey, CutProof>,
    /// (peer chain, local asset) pairs the chain has bridged, with the asset's origin
    /// (for audits).
    pub pairs: BTreeMap<(ChainId, AssetId), Origin>,
    /// Bridge keys written since the last cut.
    pending: Vec<DataKey>,
    /// Proof keys in insertion order (to drop the oldest).
    proof_order: std::collections::VecDeque<DataKey>,
    inbound_order: std::collections::VecDeque<(ChainId, u64)>,
    refund_order: std::collections::VecDeque<(ChainId, u64)>,
}

impl BridgeIndex {
    /// Indexes the bridge entries a committed height wrote.
    pub fn on_record(&mut self, chain: ChainId, height: Height, changes: &ChangeSet) {
        for (key, value) in &changes.data {
            let Some(entry) = BridgeEntry::of(key, value.as_deref()) else { continue };
            self.pending.push(*key);
            match entry {
                BridgeEntry::Outbox(m) => {
                    self.pairs.insert((m.dest, ledger::local_asset(chain, m.origin)), m.origin);
                    self.outbox.insert((m.dest, m.sequence), Indexed { message: m, written_at: height });
                    if self.outbox.len() > MAX_ENTRIES {
                        self.outbox.pop_first();
                    }
                }
                BridgeEntry::Inbound(kind, m) => {
                    self.pairs.insert((m.source, ledger::local_asset(chain, m.origin)), m.origin);
                    let k = (m.source, m.sequence);
                    self.inbound.insert(k, (kind, Indexed { message: m, written_at: height }));
                    self.inbound_order.push_back(k);
                    if self.inbound_order.len() > MAX_ENTRIES
                        && let Some(old) = self.inbound_order.pop_front()
                    {
                        self.inbound.remove(&old);
                    }
                }
                BridgeEntry::Refunded(m) => {
                    let k = (m.dest, m.sequence);
                    self.refunded.insert(k, height);
                    self.refund_order.push_back(k);
                    if self.refund_order.len() > MAX_ENTRIES
                        && let Some(old) = self.refund_order.pop_front()
                    {
                        self.refunded.remove(&old);
                    }
                }
            }
        }
    }

    /// A claim was cut at `at` and `state` is the state right after it: proves every
    /// bridge key written since the previous cut.
    pub fn on_cut(&mut self, at: Height, state: &AuthenticatedState) {
        for key in std::mem::take(&mut self.pending) {
            // A full state tree has no opaque nodes: proving cannot fail.
            let Ok((_, p)) = state.prove_data(&key) else { continue };
            let Ok(bytes) = lamina_primitives::encode(&p) else { continue };
            if self.proofs.insert(key, CutProof { at, proof: bytes }).is_none() {
                self.proof_order.push_back(key);
            }
            if self.proof_order.len() > MAX_ENTRIES
                && let Some(old) = self.proof_order.pop_front()
            {
                self.proofs.remove(&old);
            }
        }
    }

    /// The proof of `key` at its first cut, if made.
    pub fn proof(&self, key: &DataKey) -> Option<&CutProof> {
        self.proofs.get(key)
    }

    /// Outbound messages to `dest` from sequence `from` on, at most `max`, as query items.
    pub fn outbox_items(&self, dest: ChainId, from: u64, max: usize) -> Vec<BridgeItem> {
        self.outbox
            .range((dest, from)..=(dest, u64::MAX))
            .take(max)
            .map(|((_, seq), e)| BridgeItem {
                message: e.message.encode().to_vec(),
                written_at: e.written_at,
                receipt: 0,
                proof: self.proof(&message_key(&e.message)).map(|p| (p.at, p.proof.clone())),
                refunded_at: self.refunded.get(&(dest, *seq)).copied(),
            })
            .collect()
    }

    /// Receipts of messages from `source` from sequence `from` on, at most `max`.
    pub fn inbound_items(&self, source: ChainId, from: u64, max: usize) -> Vec<BridgeItem> {
        self.inbound
            .range((source, from)..=(source, u64::MAX))
            .take(max)
            .map(|((_, seq), (kind, e))| BridgeItem {
                message: e.message.encode().to_vec(),
                written_at: e.written_at,
                receipt: kind.as_u8(),
                proof: self.proof(&ledger::inbound_key(source, *seq)).map(|p| (p.at, p.proof.clone())),
                refunded_at: None,
            })
            .collect()
    }
}

/// A [`BridgeIndex`] as a snapshot stores it: every map as a list (sorted where the map
/// is unordered), every insertion order as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BridgeImage {
    /// (destination, sequence, encoded message, written at).
    pub outbox: Vec<(ChainId, u64, Vec<u8>, Height)>,
    /// (source, sequence, receipt kind code, encoded message, written at).
    pub inbound: Vec<(ChainId, u64, u8, Vec<u8>, Height)>,
    /// (destination, sequence, refunded at).
    pub refunded: Vec<(ChainId, u64, Height)>,
    /// (key, cut height, encoded proof).
    pub proofs: Vec<(DataKey, Height, Vec<u8>)>,
    /// (peer, local asset, origin chain, origin asset).
    pub pairs: Vec<(ChainId, AssetId, ChainId, u64)>,
    /// Keys written since the last cut.
    pub pending: Vec<DataKey>,
    /// Proof keys in insertion order.
    pub proof_order: Vec<DataKey>,
    /// Inbound keys in insertion order.
    pub inbound_order: Vec<(ChainId, u64)>,
    /// Refund keys in insertion order.
    pub refund_order: Vec<(ChainId, u64)>,
}

impl lamina_primitives::Wire for BridgeImage {
    const NAME: &'static str = "ExecBridgeImage";
    const MAX_SIZE: usize = 1 << 30;
}

impl BridgeIndex {
    /// The index as a snapshot stores it.
    pub fn image(&self) -> BridgeImage {
        let mut refunded: Vec<_> = self.refunded.iter().map(|((c, s), h)| (*c, *s, *h)).collect();
        refunded.sort_unstable();
        let mut proofs: Vec<_> = self.proofs.iter().map(|(k, p)| (*k, p.at, p.proof.clone())).collect();
        proofs.sort_unstable_by_key(|p| p.0);
        BridgeImage {
            outbox: self.outbox.iter().map(|((d, s), e)| (*d, *s, e.message.encode().to_vec(), e.written_at)).collect(),
            inbound: self
                .inbound
                .iter()
                .map(|((c, s), (k, e))| (*c, *s, k.as_u8(), e.message.encode().to_vec(), e.written_at))
                .collect(),
            refunded,
            proofs,
            pairs: self.pairs.iter().map(|((p, a), o)| (*p, *a, o.chain, o.asset)).collect(),
            pending: self.pending.clone(),
            proof_order: self.proof_order.iter().copied().collect(),
            inbound_order: self.inbound_order.iter().copied().collect(),
            refund_order: self.refund_order.iter().copied().collect(),
        }
    }

    /// Rebuilds an index from its image; `Err` names the first entry that does not
    /// decode.
    pub fn from_image(img: BridgeImage) -> Result<Self, String> {
        let msg = |b: &[u8]| BridgeMessage::decode(b).map_err(|e| format!("bridge message: {e}"));
        let mut ix = BridgeIndex::default();
        for (d, s, m, at) in img.outbox {
            ix.outbox.insert((d, s), Indexed { message: msg(&m)?, written_at: at });
        }
        for (c, s, k, m, at) in img.inbound {
            let kind = ReceiptKind::from_u8(k).ok_or_else(|| format!("receipt kind {k}"))?;
            ix.inbound.insert((c, s), (kind, Indexed { message: msg(&m)?, written_at: at }));
        }
        ix.refunded = img.refunded.into_iter().map(|(c, s, h)| ((c, s), h)).collect();
        ix.proofs = img.proofs.into_iter().map(|(k, at, proof)| (k, CutProof { at, proof })).collect();
        ix.pairs = img.pairs.into_iter().map(|(p, a, chain, asset)| ((p, a), Origin { chain, asset })).collect();
        ix.pending = img.pending;
        ix.proof_order = img.proof_order.into();
        ix.inbound_order = img.inbound_order.into();
        ix.refund_order = img.refund_order.into();
        Ok(ix)
    }
}

/// One bridge entry as the query protocol returns it.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BridgeItem {
    /// The message ([`BridgeMessage::encode`]).
    pub message: Vec<u8>,
    /// Height that wrote the entry (the lock, or the receive).
    pub written_at: Height,
    /// For receipts: [`ReceiptKind::as_u8`]; 0 for outbound messages.
    pub receipt: u8,
    /// (cut height, encoded state proof) of the entry, once a claim cut covered it.
    pub proof: Option<(Height, Vec<u8>)>,
    /// For outbound messages: the height that refunded it.
    pub refunded_at: Option<Height>,
}

/// The counters of `(peer, asset)` in `state`.
pub fn pair_totals(state: &impl StateRead, peer: ChainId, asset: AssetId) -> BridgeCounters {
    BridgeCounters {
        out: state.counter(&ledger::bridge_out_key(peer, asset)),
        inflow: state.counter(&ledger::bridge_in_key(peer, asset)),
        refunded: state.counter(&ledger::bridge_refund_key(peer, asset)),
        escrow: state.counter(&ledger::escrow_key(peer, asset)),
        minted: state.counter(&ledger::minted_key(asset)),
        burned: state.counter(&ledger::burned_key(asset)),
    }
}
