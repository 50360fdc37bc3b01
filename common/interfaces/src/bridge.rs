//! The bridge's shared vocabulary: messages between the chains of one network, the
//! finalized roots they are proven against, and the per-step environment that makes a
//! receive a pure function of the ordered log.
//!
//! A [`BridgeMessage`] is written by a lock into the outbox of its source chain at the
//! key of its *channel* (source → destination) and *sequence*. A relayer (anyone) proves
//! it against a [`FinalizedRoot`] of the source chain — an anchor of settlement's
//! registry — and submits a receive on the destination. Which anchors a receive may use
//! is decided by the log alone: a step at log height `h` sees exactly the anchors whose
//! `finalized_at < h` ([`StepEnv`]), so every execution replica and every settlement
//! verifier (stateless re-execution included) reaches the same verdict.
//!
//! Exactly once, and never both a credit and a refund: the destination writes one
//! receipt per `(source chain, sequence)`, either *delivered* (a receive before the
//! message's `timeout` height) or *timed out* (a receive at or after it, which credits
//! nothing). The source refunds only against a finalized proof of a *timed out* receipt,
//! once.

use std::sync::Arc;

use lamina_primitives::{ChainId, Digest, Domain, Height, PublicKey, TxScope};

/// Domain of [`BridgeMessage::id`].
pub static BRIDGE_MESSAGE: Domain = Domain::new("lamina bridge message v2");

/// A finalized claim's roots, as settlement's anchor registry holds them: what a bridge
/// proof is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FinalizedRoot {
    /// The chain.
    pub chain: ChainId,
    /// Position in the chain's anchor list.
    pub index: u64,
    /// Last log height the finalized claim covered (the state root is the state after it).
    pub to: Height,
    /// The chain's state root after `to`.
    pub state_root: Digest,
    /// Log height at whose end the claim finalized.
    pub finalized_at: Height,
    /// Last log height whose steps may prove against this anchor: the anchor window
    /// ([`crate::SettlementSpec::anchor_window`]) after the chain's next anchor
    /// finalized. `None` while this is the chain's newest anchor (or the view does not
    /// know the next one yet).
    #[serde(default)]
    pub usable_until: Option<Height>,
}

/// Read access to settlement's registry of finalized anchors.
///
/// # Contract
///
/// Anchors are append-only: once `anchor(chain, i)` returns a root, it returns the same
/// root, except that `usable_until` goes from `None` to its value once the chain's
/// next anchor is known. A view may know anchors finalized after the height a step
/// runs at; the reader (the ledger) ignores those, and an anchor is usable at a height
/// only through its `usable_until` ([`StepEnv::anchor`]). Since `usable_until` is
/// never earlier than the next anchor's finalization, a view that is *complete up to*
/// a step's height gives the same verdict as any later one. A view may forget an
/// anchor once no step it will still serve can use it ([`AnchorRegistry::hold`]).
pub trait AnchorView: Send + Sync {
    /// The `index`-th finalized anchor of `chain`, if known.
    fn anchor(&self, chain: ChainId, index: u64) -> Option<FinalizedRoot>;
}

/// An anchor view built by following the log (settlement's follower, in a settlement
/// node or inside an execution node of a bridged network).
///
/// It forgets anchors that no step can use any more (past their `usable_until`). A
/// reader that executes steps behind the registry's own position (an execution node's
/// driver, a verifier) takes a [`AnchorHold`] so that nothing its next steps need is
/// forgotten, and checks [`AnchorRegistry::serves_from`] before its first step.
pub trait AnchorRegistry: AnchorView {
    /// Last log height applied: the view is complete for steps at heights up to
    /// `applied() + 1`.
    fn applied(&self) -> Height;
    /// Lowest step height the view can still serve: anchors usable only below it are
    /// forgotten. A reader about to execute a lower height must not use this view
    /// (its verdicts could differ from the network's).
    fn serves_from(&self) -> Height;
    /// Keeps every anchor usable at `from` or above until the hold is advanced or
    /// dropped.
    fn hold(&self, from: Height) -> AnchorHold;
}

/// A reader's promise to an [`AnchorRegistry`] that it will execute only heights at
/// or above its position from now on (see [`AnchorRegistry::hold`]). Dropping it
/// releases the registry.
#[derive(Debug)]
pub struct AnchorHold(Arc<std::sync::atomic::AtomicU64>);

impl AnchorHold {
    /// A hold at `from`, and the shared position a registry keeps (weakly) to read it.
    pub fn new(from: Height) -> (AnchorHold, std::sync::Weak<std::sync::atomic::AtomicU64>) {
        let at = Arc::new(std::sync::atomic::AtomicU64::new(from.0));
        let weak = Arc::downgrade(&at);
        (AnchorHold(at), weak)
    }

    /// Moves the hold up to `to` (never down).
    pub fn advance(&self, to: Height) {
        self.0.fetch_max(to.0, std::sync::atomic::Ordering::Relaxed);
    }

    /// The lowest height the holder may still execute.
    pub fn position(&self) -> Height {
        Height(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// A view with no anchors (no bridge: every proof is refused).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAnchors;

impl AnchorView for NoAnchors {
    fn anchor(&self, _: ChainId, _: u64) -> Option<FinalizedRoot> {
        None
    }
}

/// A fixed set of anchors (tests, benchmarks, snapshots of a registry).
#[derive(Clone, Debug, Default)]
pub struct AnchorList(std::collections::BTreeMap<(ChainId, u64), FinalizedRoot>);

impl AnchorList {
    /// Adds (or replaces) an anchor.
    pub fn push(&mut self, a: FinalizedRoot) {
        self.0.insert((a.chain, a.index), a);
    }

    /// Number of anchors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<FinalizedRoot> for AnchorList {
    fn from_iter<I: IntoIterator<Item = FinalizedRoot>>(iter: I) -> Self {
        AnchorList(iter.into_iter().map(|a| ((a.chain, a.index), a)).collect())
    }
}

impl AnchorView for AnchorList {
    fn anchor(&self, chain: ChainId, index: u64) -> Option<FinalizedRoot> {
        self.0.get(&(chain, index)).copied()
    }
}

/// What a step (one log height of one chain) may read besides its chain's state: the
/// height itself, what the network's transaction signatures bind, the anchors
/// finalized before it and the parameters governance set for it.
#[derive(Clone)]
pub struct StepEnv {
    /// The log height being executed.
    pub height: Height,
    /// What the network's transaction signatures bind (`Genesis::tx_scope`): the
    /// signature stage verifies every transaction of the step in it.
    pub scope: TxScope,
    anchors: Arc<dyn AnchorView>,
    params: Option<Arc<dyn crate::ParamsView>>,
}

impl std::fmt::Debug for StepEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepEnv").field("height", &self.height).field("scope", &self.scope).finish_non_exhaustive()
    }
}

impl StepEnv {
    /// The environment of log height `height` on a network of scope `scope`, with
    /// anchors from `anchors`.
    pub fn new(height: Height, scope: TxScope, anchors: Arc<dyn AnchorView>) -> Self {
        StepEnv { height, scope, anchors, params: None }
    }

    /// Height `height` on a network of scope `scope`, with no anchors at all.
    pub fn without_anchors(height: Height, scope: TxScope) -> Self {
        StepEnv { height, scope, anchors: Arc::new(NoAnchors), params: None }
    }

    /// The same environment reading governance's parameters from `params` (without
    /// one, every parameter keeps its genesis value).
    pub fn with_params(mut self, params: Arc<dyn crate::ParamsView>) -> Self {
        self.params = Some(params);
        self
    }

    /// Whether a parameters view is set.
    pub fn has_params(&self) -> bool {
        self.params.is_some()
    }

    /// The value governance set for `param` at this height; `None`: the genesis value.
    pub fn param(&self, param: crate::GovernedParam) -> Option<u64> {
        self.params.as_ref().and_then(|p| p.value(param, self.height))
    }

    /// The height from which [`StepEnv::param`]'s answer holds ([`crate::ParamsView::since`]);
    /// `None`: the genesis value, from height 1.
    pub fn param_since(&self, param: crate::GovernedParam) -> Option<Height> {
        self.params.as_ref().and_then(|p| p.since(param, self.height))
    }

    /// The fee governance set for `chain` at this height; `None`: the genesis value.
    pub fn fee(&self, chain: ChainId) -> Option<u64> {
        self.param(crate::GovernedParam::Fee(chain))
    }

    /// The `index`-th anchor of `chain` if it finalized strictly before this height,
    /// is still usable at it (`usable_until` not passed) and commits to a non-zero
    /// state root; `None` otherwise (the zero root is never trusted).
    pub fn anchor(&self, chain: ChainId, index: u64) -> Option<FinalizedRoot> {
        self.anchors
            .anchor(chain, index)
            .filter(|a| a.chain == chain && a.index == index && a.finalized_at < self.height)
            .filter(|a| a.usable_until.is_none_or(|u| self.height <= u))
            .filter(|a| a.state_root != Digest::ZERO)
    }

    /// The anchor view itself.
    pub fn anchors(&self) -> &Arc<dyn AnchorView> {
        &self.anchors
    }
}

/// Where an asset originates: its home chain and its id there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    /// Home chain.
    pub chain: ChainId,
    /// Asset id on the home chain.
    pub asset: u64,
}

/// A message from `source` to `dest`: written by a lock (`sender`'s transaction with
/// `nonce`) into the source's outbox, with the next `sequence` of the channel, and
/// received at most once on `dest` (one receipt per `(source, sequence)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BridgeMessage {
    /// The network (its [`crate::Genesis::network_id`]): a message of another network
    /// or of a fork with another genesis is refused.
    pub network: Digest,
    /// Chain whose outbox holds the message.
    pub source: ChainId,
    /// The only chain that may receive it.
    pub dest: ChainId,
    /// Position on the channel `source → dest` (0, 1, 2, … per channel).
    pub sequence: u64,
    /// Who locked.
    pub sender: PublicKey,
    /// The lock transaction's nonce (with `sender`, names the outbox entry).
    pub nonce: u64,
    /// Who is credited on `dest`.
    pub recipient: PublicKey,
    /// The asset's home.
    pub origin: Origin,
    /// Amount.
    pub amount: u64,
    /// First log height at which the message can no longer be delivered (a receive at
    /// or after it records a timeout, which the source refunds).
    pub timeout: Height,
}

/// Why bytes are not a [`BridgeMessage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bridge message must be {len} bytes, got {got}", len = BridgeMessage::LEN)]
pub struct MessageLenError {
    /// Bytes given.
    pub got: usize,
}

impl BridgeMessage {
    /// Encoded length.
    pub const LEN: usize = 32 + 8 + 8 + 8 + 32 + 8 + 32 + 8 + 8 + 8 + 8;

    /// The fixed-size encoding (integers little-endian, fields in declaration order).
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut v = [0u8; Self::LEN];
        let mut at = 0;
        let mut put = |b: &[u8]| {
            v[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        };
        put(self.network.as_bytes());
        put(&self.source.0.to_le_bytes());
        put(&self.dest.0.to_le_bytes());
        put(&self.sequence.to_le_bytes());
        put(&self.sender.0);
        put(&self.nonce.to_le_bytes());
        put(&self.recipient.0);
        put(&self.origin.chain.0.to_le_bytes());
        put(&self.origin.asset.to_le_bytes());
        put(&self.amount.to_le_bytes());
        put(&self.timeout.0.to_le_bytes());
        v
    }

    /// Decodes exactly [`BridgeMessage::LEN`] bytes.
    pub fn decode(b: &[u8]) -> Result<Self, MessageLenError> {
        if b.len() != Self::LEN {
            return Err(MessageLenError { got: b.len() });
        }
        let mut at = 0;
        let mut take = |n: usize| {
            let s = &b[at..at + n];
            at += n;
            s
        };
        let d32 = |s: &[u8]| -> [u8; 32] { s.try_into().expect("32 bytes") };
        let u64_ = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
        Ok(BridgeMessage {
            network: Digest(d32(take(32))),
            source: ChainId(u64_(take(8))),
            dest: ChainId(u64_(take(8))),
            sequence: u64_(take(8)),
            sender: PublicKey(d32(take(32))),
            nonce: u64_(take(8)),
            recipient: PublicKey(d32(take(32))),
            origin: Origin { chain: ChainId(u64_(take(8))), asset: u64_(take(8)) },
            amount: u64_(take(8)),
            timeout: Height(u64_(take(8))),
        })
    }

    /// The message id: a digest of every field (network, both chains and the sequence
    /// included), what users and relayers name a message by.
    pub fn id(&self) -> Digest {
        BRIDGE_MESSAGE.hash(&self.encode())
    }
}

/// What the destination recorded for a message (the value of its receipt key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptKind {
    /// Received before its timeout: the recipient was credited.
    Delivered,
    /// Received at or after its timeout: nothing credited; the source may refund.
    TimedOut,
}

impl ReceiptKind {
    /// Stable code (the first byte of the stored receipt).
    pub fn as_u8(self) -> u8 {
        match self {
            ReceiptKind::Delivered => 1,
            ReceiptKind::TimedOut => 2,
        }
    }

    /// The inverse of [`ReceiptKind::as_u8`].
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(ReceiptKind::Delivered),
            2 => Some(ReceiptKind::TimedOut),
            _ => None,
        }
    }
}

/// A proof that a key has a value in a chain's state at a finalized anchor: the anchor's
/// index in settlement's registry and the execution layer's state proof (opaque here).
/// Relayers carry it from the execution node that made it to a receive or a refund.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnchoredProof {
    /// Index of the anchor in its chain's registry.
    pub anchor_index: u64,
    /// The state proof, in the execution layer's encoding.
    pub state_proof: Vec<u8>,
}

impl AnchoredProof {
    /// `anchor_index ‖ state_proof`.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + self.state_proof.len());
        v.extend_from_slice(&self.anchor_index.to_le_bytes());
        v.extend_from_slice(&self.state_proof);
        v
    }

    /// Splits `anchor_index ‖ state_proof`; `None` if shorter than 8 bytes.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let (i, rest) = b.split_at_checked(8)?;
        Some(AnchoredProof { anchor_index: u64::from_le_bytes(i.try_into().ok()?), state_proof: rest.to_vec() })
    }
}

/// One chain's bridge counters for one (peer chain, local asset) pair, as its state
/// holds them: what the supply audit adds up across chains.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct BridgeCounters {
    /// Sent by locks to the peer.
    pub out: u128,
    /// Credited by receives from the peer.
    pub inflow: u128,
    /// Refunded for locks to the peer that timed out.
    pub refunded: u128,
    /// Held in escrow toward the peer (assets whose home is this chain).
    pub escrow: u128,
    /// The local asset's total minted here.
    pub minted: u128,
    /// The local asset's total burned here.
    pub burned: u128,
}

/// The bridge's genesis parameters (every chain of the network runs the same ones).
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeSpec {
    /// Bridge calls are executed at all. Off (the default), every bridge call fails and
    /// execution nodes need no anchor registry; on, every execution node follows
    /// settlement's registry in-process so receives are decided from the log alone.
    pub enabled: bool,
    /// Most of one asset (by its home) a chain credits from receives per window
    /// (0: no limit). A receive over the limit fails and can be retried in a later
    /// window; nothing is lost.
    pub inflow_limit: u64,
    /// Length of a rate-limit window in log heights (windows are `[k·w, (k+1)·w)`).
    pub window_heights: u64,
    /// Longest timeout a lock may ask for, in log heights after the lock.
    pub max_timeout_heights: u64,
    /// Key allowed to pause and resume the bridge on each chain (zero key: nobody).
    pub guardian: PublicKey,
    /// Start paused (locks and receives refused until the guardian resumes).
    pub paused: bool,
}

impl Default for BridgeSpec {
    fn default() -> Self {
        BridgeSpec {
            enabled: false,
            inflow_limit: 0,
            window_heights: 1_000,
            max_timeout_heights: 1_000_000,
            guardian: PublicKey::default(),
            paused: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> BridgeMessage {
        BridgeMessage {
            network: Digest([9; 32]),
            source: ChainId(1),
            dest: ChainId(2),
            sequence: 7,
            sender: PublicKey([1; 32]),
            nonce: 3,
            recipient: PublicKey([2; 32]),
            origin: Origin { chain: ChainId(1), asset: 0 },
            amount: 100,
            timeout: Height(500),
        }
    }

    #[test]
    fn message_round_trips_and_id_binds_every_field() {
        let m = msg();
        assert_eq!(BridgeMessage::decode(&m.encode()), Ok(m));
        assert_eq!(BridgeMessage::decode(&m.encode()[1..]), Err(MessageLenError { got: BridgeMessage::LEN - 1 }));
        let variants = [
            BridgeMessage { network: Digest([8; 32]), ..m },
            BridgeMessage { source: ChainId(3), ..m },
            BridgeMessage { dest: ChainId(3), ..m },
            BridgeMessage { sequence: 8, ..m },
            BridgeMessage { amount: 101, ..m },
            BridgeMessage { timeout: Height(501), ..m },
        ];
        for v in variants {
            assert_ne!(v.id(), m.id());
        }
    }

    #[test]
    fn step_env_hides_anchors_not_yet_final_and_zero_roots() {
        let a = |index, finalized_at, root| FinalizedRoot {
            chain: ChainId(1),
            index,
            to: Height(10),
            state_root: Digest([root; 32]),
            finalized_at: Height(finalized_at),
            usable_until: None,
        };
        let view: Arc<AnchorList> = Arc::new([a(0, 20, 1), a(1, 30, 0)].into_iter().collect());
        assert!(StepEnv::new(Height(20), TxScope::ChainOnly, view.clone()).anchor(ChainId(1), 0).is_none());
        assert!(StepEnv::new(Height(21), TxScope::ChainOnly, view.clone()).anchor(ChainId(1), 0).is_some());
        assert!(StepEnv::new(Height(21), TxScope::ChainOnly, view.clone()).anchor(ChainId(2), 0).is_none());
        assert!(
            StepEnv::new(Height(99), TxScope::ChainOnly, view).anchor(ChainId(1), 1).is_none(),
            "zero root never trusted"
        );
    }

    #[test]
    fn step_env_hides_anchors_past_their_window() {
        let old = FinalizedRoot {
            chain: ChainId(1),
            index: 0,
            to: Height(10),
            state_root: Digest([1; 32]),
            finalized_at: Height(20),
            usable_until: Some(Height(130)),
        };
        let view: Arc<AnchorList> = Arc::new([old].into_iter().collect());
        assert!(
            StepEnv::new(Height(130), TxScope::ChainOnly, view.clone()).anchor(ChainId(1), 0).is_some(),
            "usable through its last height"
        );
        assert!(
            StepEnv::new(Height(131), TxScope::ChainOnly, view).anchor(ChainId(1), 0).is_none(),
            "expired one height later"
        );
    }

    #[test]
    fn holds_only_move_up_and_release_on_drop() {
        let (hold, weak) = AnchorHold::new(Height(10));
        hold.advance(Height(15));
        hold.advance(Height(12));
        assert_eq!(hold.position(), Height(15));
        assert_eq!(weak.upgrade().map(|a| a.load(std::sync::atomic::Ordering::Relaxed)), Some(15));
        drop(hold);
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn anchored_proof_round_trips() {
        let p = AnchoredProof { anchor_index: 3, state_proof: vec![1, 2, 3] };
        assert_eq!(AnchoredProof::decode(&p.encode()), Some(p));
        assert_eq!(AnchoredProof::decode(&[1, 2]), None);
    }
}
