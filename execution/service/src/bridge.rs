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
//! An anchor is usable only through the anchor window after its chain's next anchor
//! ([`lamina_interfaces::SettlementSpec::anchor_window`]), so a proof does not stay
//! good forever: at each cut, the proofs older than half the window are made again
//! against the state after that cut ([`BridgeIndex::set_refresh`]; at most
//! [`MAX_REFRESH_PER_CUT`] per cut, oldest first; every proven key, delivered ones
//! too, since the node cannot tell). The new cut is anchored only a challenge window
//! (plus the claim's trip to the log) later, so the previous proof is still served
//! until the new one is `settle_after` heights old (twice the challenge window); the
//! genesis requires `anchor_window >= 4 x challenge_window`, so the old anchor is
//! still usable until then. An undelivered message thus always has a usable proof
//! (and a key whose first cut was never anchored gets another chance).
//!
//! Memory: at most [`MAX_ENTRIES`] entries of each kind are kept (oldest dropped). The
//! index is saved whole in every state snapshot ([`BridgeIndex::image`], in the
//! snapshot's node file, [`crate::snapshot`]), so a node restarting from a snapshot keeps
//! its proofs; it is not stored incrementally on disk.

use std::collections::{BTreeMap, HashMap, VecDeque};

use lamina_execution_core::ledger::message_key;

use lamina_execution_client::BridgeItem;
use lamina_execution_core::ledger::{self, AssetId, BridgeEntry};
use lamina_execution_core::{AuthenticatedState, ChangeSet, DataKey, StateRead};
use lamina_interfaces::{BridgeCounters, BridgeMessage, Origin, ReceiptKind};
use lamina_primitives::{ChainId, Height};

/// Most outbound messages, receipts, refunds and proofs kept (each).
pub const MAX_ENTRIES: usize = 200_000;

/// Most proofs made again at one cut (the rest wait for the next cuts).
pub const MAX_REFRESH_PER_CUT: usize = 4_096;

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
    /// Proofs of bridge keys at the first cut after their write (or at the cut that
    /// last refreshed them).
    pub proofs: HashMap<DataKey, CutProof>,
    /// For keys refreshed lately: the proof before, served until the new one settles.
    previous: HashMap<DataKey, CutProof>,
    /// (peer chain, local asset) pairs the chain has bridged, with the asset's origin
    /// (for audits).
    pub pairs: BTreeMap<(ChainId, AssetId), Origin>,
    /// Bridge keys written since the last cut.
    pending: Vec<DataKey>,
    /// Proof keys in the order their proofs were made (to drop the oldest, and to
    /// refresh the oldest): a key proven again is pushed again, and its earlier
    /// entries are counted in `order_stale`.
    proof_order: VecDeque<DataKey>,
    /// Per key, how many of its entries in `proof_order` are earlier than its last one.
    order_stale: HashMap<DataKey, u32>,
    /// Age in heights after which a proof is made again at the next cut (0: never).
    refresh_after: u64,
    /// Age in heights from which a refreshed proof is served instead of the previous.
    settle_after: u64,
    /// Outbox keys in the order they were first written (to drop the oldest: the
    /// smallest key is the lowest destination's, not the oldest message).
    outbox_order: VecDeque<(ChainId, u64)>,
    inbound_order: VecDeque<(ChainId, u64)>,
    refund_order: VecDeque<(ChainId, u64)>,
}

/// Notes a key written to one of the capped indexes (outbox, inbound, refunds): a new
/// key joins the end of `order` (a rewritten one keeps its place), and beyond
/// [`MAX_ENTRIES`] the oldest written key is returned for the caller to drop.
fn written(order: &mut VecDeque<(ChainId, u64)>, k: (ChainId, u64), new: bool) -> Option<(ChainId, u64)> {
    if new {
        order.push_back(k);
    }
    if order.len() > MAX_ENTRIES { order.pop_front() } else { None }
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
                    let k = (m.dest, m.sequence);
                    let new = self.outbox.insert(k, Indexed { message: m, written_at: height }).is_none();
                    if let Some(old) = written(&mut self.outbox_order, k, new) {
                        self.outbox.remove(&old);
                    }
                }
                BridgeEntry::Inbound(kind, m) => {
                    self.pairs.insert((m.source, ledger::local_asset(chain, m.origin)), m.origin);
                    let k = (m.source, m.sequence);
                    let new = self.inbound.insert(k, (kind, Indexed { message: m, written_at: height })).is_none();
                    if let Some(old) = written(&mut self.inbound_order, k, new) {
                        self.inbound.remove(&old);
                    }
                }
                BridgeEntry::Refunded(m) => {
                    let k = (m.dest, m.sequence);
                    let new = self.refunded.insert(k, height).is_none();
                    if let Some(old) = written(&mut self.refund_order, k, new) {
                        self.refunded.remove(&old);
                    }
                }
            }
        }
    }

    /// Proofs older than `refresh_after` heights are made again at the next cuts (half
    /// the anchor window; 0 turns refreshing off), and a refreshed proof is served only
    /// once it is `settle_after` heights old (twice the challenge window: its cut's
    /// claim has finalized), the previous one until then.
    pub fn set_refresh(&mut self, refresh_after: u64, settle_after: u64) {
        self.refresh_after = refresh_after;
        self.settle_after = settle_after;
    }

    /// The proof of `key` to serve at height `now` (see [`BridgeIndex::set_refresh`]).
    pub fn served_proof(&self, key: &DataKey, now: Height) -> Option<&CutProof> {
        let current = self.proofs.get(key)?;
        match self.previous.get(key) {
            Some(p) if current.at.0.saturating_add(self.settle_after) > now.0 => Some(p),
            _ => Some(current),
        }
    }

    /// A claim was cut at `at` and `state` is the state right after it: proves every
    /// bridge key written since the previous cut, and again the oldest proofs past
    /// their refresh age.
    pub fn on_cut(&mut self, at: Height, state: &AuthenticatedState) {
        for key in std::mem::take(&mut self.pending) {
            // A new write: a proof of the key's earlier value is of no use.
            self.previous.remove(&key);
            self.prove(key, at, state);
        }
        if self.refresh_after == 0 {
            return;
        }
        let mut refreshed = 0;
        while refreshed < MAX_REFRESH_PER_CUT {
            let Some(key) = self.proof_order.front().copied() else { break };
            if self.pop_stale_front() {
                continue;
            }
            match self.proofs.get(&key) {
                Some(p) if p.at.0.saturating_add(self.refresh_after) > at.0 => break,
                Some(_) => {
                    // Its only entry leaves the order here: the new proof is not a
                    // second one.
                    self.proof_order.pop_front();
                    if let Some(old) = self.proofs.remove(&key) {
                        self.previous.insert(key, old);
                    }
                    self.prove(key, at, state);
                    refreshed += 1;
                }
                None => {
                    self.proof_order.pop_front();
                }
            }
        }
        if refreshed > 0 {
            metrics::counter!("lamina_execution_bridge_proofs_refreshed_total").increment(refreshed as u64);
        }
    }

    /// Pops the front of `proof_order` if it is an earlier entry of a key pushed again.
    fn pop_stale_front(&mut self) -> bool {
        let Some(key) = self.proof_order.front() else { return false };
        let Some(n) = self.order_stale.get_mut(key) else { return false };
        *n -= 1;
        if *n == 0 {
            self.order_stale.remove(key);
        }
        self.proof_order.pop_front();
        true
    }

    /// Proves `key` against `state` (the state after cut `at`).
    fn prove(&mut self, key: DataKey, at: Height, state: &AuthenticatedState) {
        // A full state tree has no opaque nodes: proving cannot fail.
        let Ok((_, p)) = state.prove_data(&key) else { return };
        let Ok(bytes) = lamina_primitives::encode(&p) else { return };
        if self.proofs.insert(key, CutProof { at, proof: bytes }).is_some() {
            *self.order_stale.entry(key).or_default() += 1;
        }
        self.proof_order.push_back(key);
        while self.proof_order.len() > MAX_ENTRIES {
            if self.pop_stale_front() {
                continue;
            }
            if let Some(old) = self.proof_order.pop_front() {
                self.proofs.remove(&old);
                self.previous.remove(&old);
            }
        }
    }

    /// The proof of `key` at its first cut, if made.
    pub fn proof(&self, key: &DataKey) -> Option<&CutProof> {
        self.proofs.get(key)
    }

    /// Outbound messages to `dest` from sequence `from` on, at most `max`, as query items
    /// (proofs as served at height `now`).
    pub fn outbox_items(&self, dest: ChainId, from: u64, max: usize, now: Height) -> Vec<BridgeItem> {
        self.outbox
            .range((dest, from)..=(dest, u64::MAX))
            .take(max)
            .map(|((_, seq), e)| BridgeItem {
                message: e.message.encode().to_vec(),
                written_at: e.written_at,
                receipt: 0,
                proof: self.served_proof(&message_key(&e.message), now).map(|p| (p.at, p.proof.clone())),
                refunded_at: self.refunded.get(&(dest, *seq)).copied(),
            })
            .collect()
    }

    /// Receipts of messages from `source` from sequence `from` on, at most `max` (proofs
    /// as served at height `now`).
    pub fn inbound_items(&self, source: ChainId, from: u64, max: usize, now: Height) -> Vec<BridgeItem> {
        self.inbound
            .range((source, from)..=(source, u64::MAX))
            .take(max)
            .map(|((_, seq), (kind, e))| BridgeItem {
                message: e.message.encode().to_vec(),
                written_at: e.written_at,
                receipt: kind.as_u8(),
                proof: self.served_proof(&ledger::inbound_key(source, *seq), now).map(|p| (p.at, p.proof.clone())),
                refunded_at: None,
            })
            .collect()
    }
}

/// A [`BridgeIndex`] as a snapshot stores it: every map as a list (sorted where the map
/// is unordered), every insertion order as it was except the outbox's, which
/// [`BridgeIndex::from_image`] rebuilds from the entries' heights.
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
    /// Proofs before a recent refresh: (key, cut height, encoded proof).
    pub previous: Vec<(DataKey, Height, Vec<u8>)>,
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
        let mut previous: Vec<_> = self.previous.iter().map(|(k, p)| (*k, p.at, p.proof.clone())).collect();
        previous.sort_unstable_by_key(|p| p.0);
        BridgeImage {
            outbox: self.outbox.iter().map(|((d, s), e)| (*d, *s, e.message.encode().to_vec(), e.written_at)).collect(),
            inbound: self
                .inbound
                .iter()
                .map(|((c, s), (k, e))| (*c, *s, k.as_u8(), e.message.encode().to_vec(), e.written_at))
                .collect(),
            refunded,
            proofs,
            previous,
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
        // Oldest written first (by height, then key), so eviction goes on where it was.
        let mut order: Vec<(Height, (ChainId, u64))> = ix.outbox.iter().map(|(k, e)| (e.written_at, *k)).collect();
        order.sort_unstable();
        ix.outbox_order = order.into_iter().map(|(_, k)| k).collect();
        for (c, s, k, m, at) in img.inbound {
            let kind = ReceiptKind::from_u8(k).ok_or_else(|| format!("receipt kind {k}"))?;
            ix.inbound.insert((c, s), (kind, Indexed { message: msg(&m)?, written_at: at }));
        }
        ix.refunded = img.refunded.into_iter().map(|(c, s, h)| ((c, s), h)).collect();
        ix.proofs = img.proofs.into_iter().map(|(k, at, proof)| (k, CutProof { at, proof })).collect();
        ix.previous = img.previous.into_iter().map(|(k, at, proof)| (k, CutProof { at, proof })).collect();
        ix.pairs = img.pairs.into_iter().map(|(p, a, chain, asset)| ((p, a), Origin { chain, asset })).collect();
        ix.pending = img.pending;
        for k in &img.proof_order {
            *ix.order_stale.entry(*k).or_default() += 1;
        }
        // The last entry of each key is not stale.
        ix.order_stale.retain(|_, n| {
            *n -= 1;
            *n > 0
        });
        ix.proof_order = img.proof_order.into();
        ix.inbound_order = img.inbound_order.into();
        ix.refund_order = img.refund_order.into();
        Ok(ix)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_execution_core::state::verify_data;
    use lamina_primitives::{Digest, Keypair};

    fn lock(sequence: u64) -> (DataKey, BridgeMessage) {
        let m = BridgeMessage {
            network: Digest([1; 32]),
            source: ChainId(1),
            dest: ChainId(2),
            sequence,
            sender: Keypair::for_testing(1).public(),
            nonce: sequence,
            recipient: Keypair::for_testing(2).public(),
            origin: Origin { chain: ChainId(1), asset: 0 },
            amount: 10,
            timeout: Height(1_000_000),
        };
        (message_key(&m), m)
    }

    /// Writes `seqs` as outbox entries at `height`, with the cut right after.
    fn write(ix: &mut BridgeIndex, state: &mut AuthenticatedState, height: u64, seqs: std::ops::Range<u64>) {
        let changes =
            ChangeSet { counters: vec![], data: seqs.map(lock).map(|(k, m)| (k, Some(m.encode().to_vec()))).collect() };
        state.apply(&changes, false);
        ix.on_record(ChainId(1), Height(height), &changes);
        ix.on_cut(Height(height), state);
    }

    #[test]
    fn the_oldest_outbox_entries_are_dropped_whatever_their_destination() {
        // A full outbox of messages to chain 3, then newer ones to chain 2 (a lower
        // id): the oldest messages to 3 go, the new ones to 2 stay.
        let mut ix = BridgeIndex::default();
        let to = |dest: u64, seqs: std::ops::Range<u64>| ChangeSet {
            counters: vec![],
            data: seqs
                .map(|s| {
                    let (_, mut m) = lock(s);
                    m.dest = ChainId(dest);
                    (message_key(&m), Some(m.encode().to_vec()))
                })
                .collect(),
        };
        ix.on_record(ChainId(1), Height(1), &to(3, 0..MAX_ENTRIES as u64));
        ix.on_record(ChainId(1), Height(2), &to(2, 0..10));
        assert_eq!(ix.outbox.len(), MAX_ENTRIES);
        assert!((0..10).all(|s| ix.outbox.contains_key(&(ChainId(2), s))), "the newest messages are kept");
        assert!((0..10).all(|s| !ix.outbox.contains_key(&(ChainId(3), s))), "the oldest are dropped");
        assert!(ix.outbox.contains_key(&(ChainId(3), 10)));
        // Through a snapshot image, the order is rebuilt and eviction goes on from it.
        let mut back = BridgeIndex::from_image(ix.image()).unwrap();
        back.on_record(ChainId(1), Height(3), &to(4, 0..20));
        assert_eq!(back.outbox.len(), MAX_ENTRIES);
        assert!((10..30).all(|s| !back.outbox.contains_key(&(ChainId(3), s))), "the oldest go first");
        assert!((0..10).all(|s| back.outbox.contains_key(&(ChainId(2), s))));
    }

    fn proof_height(ix: &BridgeIndex, seq: u64) -> Height {
        ix.proof(&lock(seq).0).expect("proven").at
    }

    #[test]
    fn proofs_older_than_half_the_window_are_made_again_at_a_later_cut() {
        let mut ix = BridgeIndex::default();
        ix.set_refresh(100, 0);
        let mut state = AuthenticatedState::new();
        write(&mut ix, &mut state, 10, 0..3);
        write(&mut ix, &mut state, 60, 3..5);
        // Not old enough yet: nothing is proven again.
        write(&mut ix, &mut state, 109, 5..6);
        assert_eq!((0..3).map(|s| proof_height(&ix, s)).collect::<Vec<_>>(), vec![Height(10); 3]);
        // At 110 the proofs of height 10 are 100 heights old: made again against the
        // state after 110, and they verify against it (the anchor of that cut).
        write(&mut ix, &mut state, 110, 6..7);
        for s in 0..3 {
            assert_eq!(proof_height(&ix, s), Height(110));
            let (key, m) = lock(s);
            let proof = lamina_primitives::decode(&ix.proof(&key).unwrap().proof).unwrap();
            verify_data(&state.root(), &key, Some(&m.encode()), &proof).unwrap();
        }
        assert_eq!(proof_height(&ix, 3), Height(60), "younger proofs wait");
        // The order stays by age: the next refresh takes 3 and 4 (from 60), then the
        // refreshed ones again only 100 heights after 110.
        write(&mut ix, &mut state, 160, 7..8);
        assert_eq!((proof_height(&ix, 3), proof_height(&ix, 4)), (Height(160), Height(160)));
        assert_eq!(proof_height(&ix, 0), Height(110));
        // A snapshot's image keeps the order (and the refresh age is set again by the
        // node that loads it).
        let mut back = BridgeIndex::from_image(ix.image()).unwrap();
        back.set_refresh(100, 0);
        write(&mut back, &mut state, 210, 8..9);
        assert_eq!(proof_height(&back, 0), Height(210));
        assert_eq!(proof_height(&back, 3), Height(160));
        assert!(back.order_stale.is_empty() && ix.order_stale.is_empty());
        assert_eq!(back.proof_order.len(), back.proofs.len());
    }

    #[test]
    fn a_key_proven_again_is_refreshed_by_its_newest_proof() {
        let mut ix = BridgeIndex::default();
        ix.set_refresh(100, 0);
        let mut state = AuthenticatedState::new();
        write(&mut ix, &mut state, 10, 0..2);
        // Key 0 is written again at 50: a new proof, pushed to the back; its earlier
        // entry, now at the front, is stale and dropped by that cut's refresh pass.
        write(&mut ix, &mut state, 50, 0..1);
        assert_eq!(ix.proof_order.iter().copied().collect::<Vec<_>>(), vec![lock(1).0, lock(0).0]);
        write(&mut ix, &mut state, 110, 2..3);
        // Key 1 (from 10) is refreshed; key 0's proof from 50 is not old enough.
        assert_eq!(proof_height(&ix, 1), Height(110));
        assert_eq!(proof_height(&ix, 0), Height(50));
        assert!(ix.order_stale.is_empty());
        let back = BridgeIndex::from_image(ix.image()).unwrap();
        assert_eq!(back.proof_order, ix.proof_order);
        assert!(back.order_stale.is_empty());
    }

    #[test]
    fn the_previous_proof_is_served_until_the_refreshed_one_settles() {
        let mut ix = BridgeIndex::default();
        ix.set_refresh(100, 20);
        let mut state = AuthenticatedState::new();
        write(&mut ix, &mut state, 10, 0..1);
        write(&mut ix, &mut state, 110, 1..2);
        let key = lock(0).0;
        assert_eq!(proof_height(&ix, 0), Height(110), "made again at 110");
        let served = |ix: &BridgeIndex, now| ix.served_proof(&key, Height(now)).unwrap().at;
        // Until its cut's claim can have finalized, relayers get the proof at 10.
        assert_eq!(served(&ix, 110), Height(10));
        assert_eq!(served(&ix, 129), Height(10));
        assert_eq!(served(&ix, 130), Height(110));
        let item = |ix: &BridgeIndex, now| ix.outbox_items(ChainId(2), 0, 1, Height(now))[0].proof.clone().unwrap().0;
        assert_eq!((item(&ix, 120), item(&ix, 140)), (Height(10), Height(110)));
        // Kept across a snapshot.
        let mut back = BridgeIndex::from_image(ix.image()).unwrap();
        back.set_refresh(100, 20);
        assert_eq!(served(&back, 120), Height(10));
        // A new write of the key drops the old proof (it proves the earlier value).
        write(&mut back, &mut state, 115, 0..1);
        assert_eq!(served(&back, 116), Height(115));
    }

    #[test]
    fn refreshing_is_off_by_default() {
        let mut ix = BridgeIndex::default();
        let mut state = AuthenticatedState::new();
        write(&mut ix, &mut state, 10, 0..1);
        write(&mut ix, &mut state, 1_000_000, 1..2);
        assert_eq!(proof_height(&ix, 0), Height(10));
    }
}
