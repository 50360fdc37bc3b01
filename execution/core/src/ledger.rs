//! The native ledger: Lamina's built-in state machine.
//!
//! Accounts are ed25519 public keys. Each account has a nonce and a balance per asset.
//! Asset 0 is the chain's native asset: it exists at genesis, has no issuer, and pays the
//! flat fee. Other assets are created by an issuer ([`Call::CreateAsset`]), minted only
//! by it, transferred by anyone and burned by their holders.
//!
//! # Bridge
//!
//! Messages between the chains of one network ([`lamina_interfaces::bridge`]):
//!
//! * [`Call::BridgeLock`] escrows the amount (or, for a wrapped asset going home, burns
//!   it) and writes a [`BridgeMessage`] at [`outbox_key`]`(dest, sender, nonce)`, with the
//!   next sequence of the channel to `dest` and `timeout = height + timeout_heights`.
//! * [`Call::BridgeReceive`] proves a message against a finalized anchor of its source
//!   chain that the step's [`StepEnv`] shows (finalized before this height, non-zero
//!   root), by a state proof of exactly its outbox key and bytes. Before the timeout it
//!   unlocks from escrow (the asset is native here) or mints the wrapped asset, within
//!   the per-window inflow limit, and records *delivered*; at or after it, it only
//!   records *timed out*. One receipt per `(source, sequence)`: a second receive fails.
//! * [`Call::BridgeRefund`] on the source, with a finalized proof that the destination
//!   recorded *timed out*, returns the amount to the sender, once.
//! * [`Call::BridgePause`]: the genesis guardian pauses or resumes locks, receives and
//!   refunds on this chain.
//!
//! Messages can only move assets: there is no call in them. Per `(peer chain, local
//! asset)` the chain counts what it sent ([`bridge_out_key`]), received
//! ([`bridge_in_key`]) and refunded ([`bridge_refund_key`]), so the supply invariant
//! across chains can be audited from state alone.
//!
//! # Transaction rules
//!
//! * Admission (rejection on error, no effect): the nonce must equal the account's
//!   nonce (used and skipped nonces are rejected: [`LedgerFailure::BadNonce`]), and the
//!   fee, if non-zero, must be payable from the native balance ([`LedgerFailure::FeeUnpaid`]).
//!   The fee goes to the configured collector and the nonce advances.
//! * Operation (failure on error: only the fee and nonce effects remain): insufficient
//!   balance, unknown asset, not the issuer, supply cap, bridge checks.
//!
//! # Supply invariant (why credits never overflow)
//!
//! Each asset's `minted` counter is only increased by mints (checked against `u128::MAX`)
//! and bridge receipts; every balance is at most `minted`, so balances, escrows and the
//! `burned` counter stay within `u128`. Supply is `minted - burned`.
//!
//! # Payload encoding
//!
//! A compact hand-written format, validated on decode (exact length per tag, integers
//! little-endian): see [`Call::encode`] and [`Call::decode`].

use std::sync::Arc;

use lamina_interfaces::bridge::{AnchoredProof, BridgeMessage, BridgeSpec, Origin, ReceiptKind, StepEnv};
use lamina_interfaces::{ChainSpec, Genesis};
use lamina_primitives::{ChainId, Digest, Domain, Height, Keypair, PublicKey, Transaction, TxScope};

use crate::changes::ChangeSet;
use crate::key::{CounterKey, DataKey};
use crate::machine::{Access, AccessSet, FailureCode, Rejection, StateMachine, StateRead, TxState};
use crate::smt::StateProof;
use crate::state::verify_data;

/// An asset id. 0 is the chain's native asset.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(transparent)]
pub struct AssetId(pub u64);

impl AssetId {
    /// The native asset of every chain.
    pub const NATIVE: AssetId = AssetId(0);
}

static ASSET_ID: Domain = Domain::new("lamina execution asset id v1");
static WRAPPED_ID: Domain = Domain::new("lamina execution wrapped asset id v1");
static OUTBOX_ENTRY: Domain = Domain::new("lamina execution outbox entry v1");

fn id_from(d: Digest, top: bool) -> AssetId {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.0[..8]);
    let v = u64::from_le_bytes(b) & !(1 << 63);
    let v = if top { v | (1 << 63) } else { v.max(1) };
    AssetId(v)
}

/// The id of the asset created by `creator`'s transaction with `nonce` on `chain`.
pub fn created_asset_id(chain: ChainId, creator: &PublicKey, nonce: u64) -> AssetId {
    id_from(ASSET_ID.hash_parts(&[&chain.0.to_le_bytes(), &creator.0, &nonce.to_le_bytes()]), false)
}

/// The id, on every chain but its origin, of the wrapped form of `origin_asset` of
/// `origin_chain`.
pub fn wrapped_asset_id(origin_chain: ChainId, origin_asset: AssetId) -> AssetId {
    id_from(WRAPPED_ID.hash_parts(&[&origin_chain.0.to_le_bytes(), &origin_asset.0.to_le_bytes()]), true)
}

/// Key tags of the native ledger.
mod tag {
    pub const NONCE: u8 = 1;
    pub const BALANCE: u8 = 2;
    pub const ASSET: u8 = 3;
    pub const MINTED: u8 = 4;
    pub const BURNED: u8 = 5;
    pub const ESCROW: u8 = 6;
    pub const OUTBOX: u8 = 7;
    pub const INBOUND: u8 = 8;
    pub const SEQUENCE: u8 = 9;
    pub const REFUNDED: u8 = 10;
    pub const INFLOW: u8 = 11;
    pub const BRIDGE_OUT: u8 = 12;
    pub const BRIDGE_IN: u8 = 13;
    pub const BRIDGE_REFUND: u8 = 14;
    pub const PAUSED: u8 = 15;
}

/// Key of an account's nonce.
pub fn nonce_key(account: &PublicKey) -> CounterKey {
    CounterKey::new(tag::NONCE, &[&account.0])
}

/// Key of an account's balance of an asset.
pub fn balance_key(account: &PublicKey, asset: AssetId) -> CounterKey {
    CounterKey::new(tag::BALANCE, &[&account.0, &asset.0.to_le_bytes()])
}

/// Key of an asset's metadata ([`AssetInfo`]).
pub fn asset_key(asset: AssetId) -> DataKey {
    DataKey::new(tag::ASSET, &[&asset.0.to_le_bytes()])
}

/// Key of an asset's total minted amount.
pub fn minted_key(asset: AssetId) -> CounterKey {
    CounterKey::new(tag::MINTED, &[&asset.0.to_le_bytes()])
}

/// Key of an asset's total burned amount.
pub fn burned_key(asset: AssetId) -> CounterKey {
    CounterKey::new(tag::BURNED, &[&asset.0.to_le_bytes()])
}

/// Key of the escrow holding `asset` locked for transfer to `dest`.
pub fn escrow_key(dest: ChainId, asset: AssetId) -> CounterKey {
    CounterKey::new(tag::ESCROW, &[&dest.0.to_le_bytes(), &asset.0.to_le_bytes()])
}

/// Key of the outbound bridge message to `dest` written by `sender`'s lock with `nonce`
/// (value: [`BridgeMessage::encode`]), in the source chain's state. It depends on the
/// transaction alone, so a lock's access set is known before execution.
pub fn outbox_key(dest: ChainId, sender: &PublicKey, nonce: u64) -> DataKey {
    let id = OUTBOX_ENTRY.hash_parts(&[&dest.0.to_le_bytes(), &sender.0, &nonce.to_le_bytes()]);
    DataKey::new(tag::OUTBOX, &[id.as_bytes()])
}

/// The outbox key of `m` in its source chain.
pub fn message_key(m: &BridgeMessage) -> DataKey {
    outbox_key(m.dest, &m.sender, m.nonce)
}

/// Key of the destination's receipt of message `sequence` from `source` (value:
/// [`inbound_value`]).
pub fn inbound_key(source: ChainId, sequence: u64) -> DataKey {
    DataKey::new(tag::INBOUND, &[&source.0.to_le_bytes(), &sequence.to_le_bytes()])
}

/// The stored receipt: `kind ‖ message` (1 + [`BridgeMessage::LEN`] bytes).
pub fn inbound_value(kind: ReceiptKind, message: &BridgeMessage) -> [u8; 1 + BridgeMessage::LEN] {
    let mut v = [0u8; 1 + BridgeMessage::LEN];
    v[0] = kind.as_u8();
    v[1..].copy_from_slice(&message.encode());
    v
}

/// A bridge entry of the state, read back from a changed key and its new value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BridgeEntry {
    /// An outbound message ([`outbox_key`]).
    Outbox(BridgeMessage),
    /// A receipt of an inbound message ([`inbound_key`]).
    Inbound(ReceiptKind, BridgeMessage),
    /// An outbound message refunded ([`refunded_key`]).
    Refunded(BridgeMessage),
}

impl BridgeEntry {
    /// The entry a changed data key holds, if it is a bridge entry with a well-formed
    /// value (the ledger writes only those).
    pub fn of(key: &DataKey, value: Option<&[u8]>) -> Option<Self> {
        let v = value?;
        match key.raw().0[0] {
            tag::OUTBOX => BridgeMessage::decode(v).ok().map(BridgeEntry::Outbox),
            tag::REFUNDED => BridgeMessage::decode(v).ok().map(BridgeEntry::Refunded),
            tag::INBOUND => {
                let (k, m) = v.split_first()?;
                Some(BridgeEntry::Inbound(ReceiptKind::from_u8(*k)?, BridgeMessage::decode(m).ok()?))
            }
            _ => None,
        }
    }

    /// The state key of the entry.
    pub fn key(&self) -> DataKey {
        match self {
            BridgeEntry::Outbox(m) => message_key(m),
            BridgeEntry::Inbound(_, m) => inbound_key(m.source, m.sequence),
            BridgeEntry::Refunded(m) => refunded_key(m.dest, m.sequence),
        }
    }
}

/// Counter of the next sequence of the channel to `dest`.
pub fn sequence_key(dest: ChainId) -> CounterKey {
    CounterKey::new(tag::SEQUENCE, &[&dest.0.to_le_bytes()])
}

/// Key marking message `sequence` to `dest` as refunded (value: the message).
pub fn refunded_key(dest: ChainId, sequence: u64) -> DataKey {
    DataKey::new(tag::REFUNDED, &[&dest.0.to_le_bytes(), &sequence.to_le_bytes()])
}

/// The top bit of a window key ([`inflow_key`]) whose window starts at the height a
/// governed length took effect (see `NativeLedger::window`).
pub const WINDOW_FROM_CHANGE: u64 = 1 << 63;

/// Counter of what receives of `origin`'s asset credited in rate-limit window `window`.
pub fn inflow_key(origin: Origin, window: u64) -> CounterKey {
    CounterKey::new(tag::INFLOW, &[&origin.chain.0.to_le_bytes(), &origin.asset.to_le_bytes(), &window.to_le_bytes()])
}

/// Total of local `asset` sent by locks to `peer`.
pub fn bridge_out_key(peer: ChainId, asset: AssetId) -> CounterKey {
    CounterKey::new(tag::BRIDGE_OUT, &[&peer.0.to_le_bytes(), &asset.0.to_le_bytes()])
}

/// Total of local `asset` credited by receives from `peer`.
pub fn bridge_in_key(peer: ChainId, asset: AssetId) -> CounterKey {
    CounterKey::new(tag::BRIDGE_IN, &[&peer.0.to_le_bytes(), &asset.0.to_le_bytes()])
}

/// Total of local `asset` refunded for locks to `peer` that timed out.
pub fn bridge_refund_key(peer: ChainId, asset: AssetId) -> CounterKey {
    CounterKey::new(tag::BRIDGE_REFUND, &[&peer.0.to_le_bytes(), &asset.0.to_le_bytes()])
}

/// Key of the pause switch (absent: the genesis setting; `[1]` paused; `[0]` running).
pub fn paused_key() -> DataKey {
    DataKey::new(tag::PAUSED, &[])
}

/// The local id of the asset a message moves, on `chain`.
pub fn local_asset(chain: ChainId, origin: Origin) -> AssetId {
    if origin.chain == chain { AssetId(origin.asset) } else { wrapped_asset_id(origin.chain, AssetId(origin.asset)) }
}

/// An account's nonce in a state.
pub fn nonce<R: StateRead + ?Sized>(state: &R, account: &PublicKey) -> u64 {
    state.counter(&nonce_key(account)) as u64
}

/// An account's balance in a state.
pub fn balance<R: StateRead + ?Sized>(state: &R, account: &PublicKey, asset: AssetId) -> u128 {
    state.counter(&balance_key(account, asset))
}

/// What kind of asset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssetKind {
    /// The chain's native asset.
    Native,
    /// Created on this chain by an issuer.
    Issued,
    /// The wrapped form of an asset of another chain.
    Wrapped,
}

/// An asset's metadata, stored under [`asset_key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssetInfo {
    /// Kind.
    pub kind: AssetKind,
    /// Who may mint (issued assets); zero for native and wrapped assets.
    pub issuer: PublicKey,
    /// The chain where the asset originates.
    pub origin_chain: ChainId,
    /// Its id there.
    pub origin_asset: AssetId,
    /// A short display symbol (not unique).
    pub symbol: [u8; 8],
}

impl AssetInfo {
    const LEN: usize = 1 + 32 + 8 + 8 + 8;

    /// Encodes the metadata.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN);
        v.push(match self.kind {
            AssetKind::Native => 0,
            AssetKind::Issued => 1,
            AssetKind::Wrapped => 2,
        });
        v.extend_from_slice(&self.issuer.0);
        v.extend_from_slice(&self.origin_chain.0.to_le_bytes());
        v.extend_from_slice(&self.origin_asset.0.to_le_bytes());
        v.extend_from_slice(&self.symbol);
        v
    }

    /// Decodes metadata; `None` if malformed.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != Self::LEN {
            return None;
        }
        let mut r = Reader(b);
        let kind = match r.u8()? {
            0 => AssetKind::Native,
            1 => AssetKind::Issued,
            2 => AssetKind::Wrapped,
            _ => return None,
        };
        Some(AssetInfo {
            kind,
            issuer: r.pk()?,
            origin_chain: ChainId(r.u64()?),
            origin_asset: AssetId(r.u64()?),
            symbol: r.array()?,
        })
    }
}

/// A decoded native-ledger payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// Moves `amount` of `asset` from the sender to `to`.
    Transfer {
        /// Recipient.
        to: PublicKey,
        /// Asset.
        asset: AssetId,
        /// Amount.
        amount: u64,
    },
    /// Creates an asset issued by the sender; its id is [`created_asset_id`].
    CreateAsset {
        /// Display symbol.
        symbol: [u8; 8],
    },
    /// Mints `amount` of an issued asset to `to` (issuer only).
    Mint {
        /// Asset.
        asset: AssetId,
        /// Recipient.
        to: PublicKey,
        /// Amount.
        amount: u64,
    },
    /// Destroys `amount` of the sender's `asset`.
    Burn {
        /// Asset.
        asset: AssetId,
        /// Amount.
        amount: u64,
    },
    /// Locks (or burns, for a wrapped asset going home) `amount` for `recipient` on
    /// `dest_chain`, and writes the outbox message.
    BridgeLock {
        /// Asset.
        asset: AssetId,
        /// Amount.
        amount: u64,
        /// Destination chain.
        dest_chain: ChainId,
        /// Recipient there.
        recipient: PublicKey,
        /// Log heights after this one until the message times out (1 ..=
        /// [`BridgeSpec::max_timeout_heights`]).
        timeout_heights: u64,
    },
    /// Consumes a message from another chain's outbox.
    BridgeReceive {
        /// The message.
        message: BridgeMessage,
        /// [`AnchoredProof`] of the message's outbox entry in the source chain.
        proof: Vec<u8>,
    },
    /// Refunds a message of this chain that the destination recorded as timed out.
    BridgeRefund {
        /// The message.
        message: BridgeMessage,
        /// [`AnchoredProof`] of the destination's *timed out* receipt.
        proof: Vec<u8>,
    },
    /// Pauses (`true`) or resumes bridge operations on this chain (guardian only).
    BridgePause {
        /// The new setting.
        paused: bool,
    },
}

mod op {
    pub const TRANSFER: u8 = 1;
    pub const CREATE_ASSET: u8 = 2;
    pub const MINT: u8 = 3;
    pub const BURN: u8 = 4;
    pub const BRIDGE_LOCK: u8 = 5;
    pub const BRIDGE_RECEIVE: u8 = 6;
    pub const BRIDGE_REFUND: u8 = 7;
    pub const BRIDGE_PAUSE: u8 = 8;
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Some(out)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }
    fn pk(&mut self) -> Option<PublicKey> {
        Some(PublicKey(self.array()?))
    }
}

/// True if `tx` is a bridge receive or refund: the only calls that read the step's
/// anchors ([`StepEnv::anchor`]). A step without them executes identically with any
/// anchor view, so a driver need not wait for settlement's registry to cover it.
pub fn reads_anchors(tx: &Transaction) -> bool {
    matches!(tx.payload.first(), Some(&(op::BRIDGE_RECEIVE | op::BRIDGE_REFUND)))
}

/// Largest accepted bridge proof.
pub const MAX_BRIDGE_PROOF: usize = 64 << 10;

impl Call {
    /// Encodes the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        match self {
            Call::Transfer { to, asset, amount } => {
                v.push(op::TRANSFER);
                v.extend_from_slice(&to.0);
                v.extend_from_slice(&asset.0.to_le_bytes());
                v.extend_from_slice(&amount.to_le_bytes());
            }
            Call::CreateAsset { symbol } => {
                v.push(op::CREATE_ASSET);
                v.extend_from_slice(symbol);
            }
            Call::Mint { asset, to, amount } => {
                v.push(op::MINT);
                v.extend_from_slice(&asset.0.to_le_bytes());
                v.extend_from_slice(&to.0);
                v.extend_from_slice(&amount.to_le_bytes());
            }
            Call::Burn { asset, amount } => {
                v.push(op::BURN);
                v.extend_from_slice(&asset.0.to_le_bytes());
                v.extend_from_slice(&amount.to_le_bytes());
            }
            Call::BridgeLock { asset, amount, dest_chain, recipient, timeout_heights } => {
                v.push(op::BRIDGE_LOCK);
                v.extend_from_slice(&asset.0.to_le_bytes());
                v.extend_from_slice(&amount.to_le_bytes());
                v.extend_from_slice(&dest_chain.0.to_le_bytes());
                v.extend_from_slice(&recipient.0);
                v.extend_from_slice(&timeout_heights.to_le_bytes());
            }
            Call::BridgeReceive { message, proof } | Call::BridgeRefund { message, proof } => {
                v.push(if matches!(self, Call::BridgeReceive { .. }) { op::BRIDGE_RECEIVE } else { op::BRIDGE_REFUND });
                v.extend_from_slice(&message.encode());
                v.extend_from_slice(proof);
            }
            Call::BridgePause { paused } => {
                v.push(op::BRIDGE_PAUSE);
                v.push(u8::from(*paused));
            }
        }
        v
    }

    /// Decodes and validates a payload (exact length per operation).
    pub fn decode(b: &[u8]) -> Result<Self, LedgerFailure> {
        let (&tag, rest) = b.split_first().ok_or(LedgerFailure::Malformed)?;
        let mut r = Reader(rest);
        let exact = |n: usize| if rest.len() == n { Ok(()) } else { Err(LedgerFailure::Malformed) };
        let call = match tag {
            op::TRANSFER => {
                exact(48)?;
                (|| Some(Call::Transfer { to: r.pk()?, asset: AssetId(r.u64()?), amount: r.u64()? }))()
            }
            op::CREATE_ASSET => {
                exact(8)?;
                r.array().map(|symbol| Call::CreateAsset { symbol })
            }
            op::MINT => {
                exact(48)?;
                (|| Some(Call::Mint { asset: AssetId(r.u64()?), to: r.pk()?, amount: r.u64()? }))()
            }
            op::BURN => {
                exact(16)?;
                (|| Some(Call::Burn { asset: AssetId(r.u64()?), amount: r.u64()? }))()
            }
            op::BRIDGE_LOCK => {
                exact(64)?;
                (|| {
                    Some(Call::BridgeLock {
                        asset: AssetId(r.u64()?),
                        amount: r.u64()?,
                        dest_chain: ChainId(r.u64()?),
                        recipient: r.pk()?,
                        timeout_heights: r.u64()?,
                    })
                })()
            }
            op::BRIDGE_RECEIVE | op::BRIDGE_REFUND => {
                if rest.len() < BridgeMessage::LEN + 8 || rest.len() > BridgeMessage::LEN + MAX_BRIDGE_PROOF {
                    return Err(LedgerFailure::Malformed);
                }
                let (m, proof) = rest.split_at(BridgeMessage::LEN);
                let message = BridgeMessage::decode(m).map_err(|_| LedgerFailure::Malformed)?;
                let proof = proof.to_vec();
                Some(if tag == op::BRIDGE_RECEIVE {
                    Call::BridgeReceive { message, proof }
                } else {
                    Call::BridgeRefund { message, proof }
                })
            }
            op::BRIDGE_PAUSE => {
                exact(1)?;
                match r.u8() {
                    Some(0) => Some(Call::BridgePause { paused: false }),
                    Some(1) => Some(Call::BridgePause { paused: true }),
                    _ => None,
                }
            }
            _ => None,
        };
        call.ok_or(LedgerFailure::Malformed)
    }
}

pub use failure::*;

// rkyv's derive generates undocumented items for the fields of enum variants.
#[allow(missing_docs)]
mod failure {

    /// Why the native ledger rejected or failed a transaction.
    #[derive(
        Clone,
        Copy,
        Debug,
        PartialEq,
        Eq,
        thiserror::Error,
        serde::Serialize,
        serde::Deserialize,
        rkyv::Archive,
        rkyv::Serialize,
        rkyv::Deserialize,
    )]
    pub enum LedgerFailure {
        /// The signature does not verify (rejection).
        #[error("invalid signature")]
        BadSignature,
        /// The transaction is for another chain (rejection).
        #[error("wrong chain id")]
        WrongChain,
        /// The payload does not decode (rejection).
        #[error("malformed payload")]
        Malformed,
        /// Used or skipped nonce (rejection).
        #[error("bad nonce: expected {expected}, got {got}")]
        BadNonce {
            /// The account's next nonce.
            expected: u64,
            /// The transaction's nonce.
            got: u64,
        },
        /// The fee cannot be paid from the native balance (rejection).
        #[error("fee unpaid")]
        FeeUnpaid,
        /// Not enough balance for the operation (failure).
        #[error("insufficient balance")]
        InsufficientBalance,
        /// The asset does not exist (failure).
        #[error("unknown asset")]
        UnknownAsset,
        /// Only the issuer may mint (failure).
        #[error("not the issuer")]
        NotIssuer,
        /// Minting would exceed `u128::MAX` in total (failure).
        #[error("supply cap")]
        SupplyOverflow,
        /// An asset with this id already exists (failure).
        #[error("asset exists")]
        AssetExists,
        /// The bridge proof does not decode or does not prove exactly the claimed entry
        /// under the named anchor's state root (failure).
        #[error("bridge message not proven")]
        BridgeProofInvalid,
        /// The bridge message was already received (failure).
        #[error("bridge message already received")]
        AlreadyReceived,
        /// The locked asset cannot go to that destination (failure).
        #[error("bad bridge destination")]
        BadDestination,
        /// Bridge operations are paused on this chain (failure).
        #[error("bridge paused")]
        BridgePaused,
        /// The lock's timeout is 0 or over the network's maximum (failure).
        #[error("bad bridge timeout")]
        BadTimeout,
        /// The proof names an anchor that is not finalized before this height, or whose
        /// root is zero (failure; retry once the anchor is final).
        #[error("anchor not finalized")]
        AnchorUnknown,
        /// The receive would exceed the asset's inflow limit for this window (failure;
        /// retry in a later window).
        #[error("bridge rate limit")]
        RateLimited,
        /// The message was already refunded (failure).
        #[error("bridge message already refunded")]
        AlreadyRefunded,
        /// Only the bridge guardian may pause or resume (failure).
        #[error("not the bridge guardian")]
        NotGuardian,
        /// The message belongs to another network or channel than this call serves
        /// (failure).
        #[error("wrong bridge channel")]
        WrongChannel,
        /// The network's genesis does not enable the bridge (failure).
        #[error("bridge not enabled")]
        BridgeDisabled,
        /// A wrapped asset cannot be burned; it leaves by going home (failure).
        #[error("wrapped assets cannot be burned")]
        WrappedBurn,
    }
}

impl From<Rejection> for LedgerFailure {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::BadSignature => LedgerFailure::BadSignature,
            Rejection::WrongChain => LedgerFailure::WrongChain,
        }
    }
}

impl LedgerFailure {
    /// A short stable name (metrics labels, logs).
    pub fn label(&self) -> &'static str {
        match self {
            LedgerFailure::BadSignature => "bad_signature",
            LedgerFailure::WrongChain => "wrong_chain",
            LedgerFailure::Malformed => "malformed",
            LedgerFailure::BadNonce { .. } => "bad_nonce",
            LedgerFailure::FeeUnpaid => "fee_unpaid",
            LedgerFailure::InsufficientBalance => "insufficient_balance",
            LedgerFailure::UnknownAsset => "unknown_asset",
            LedgerFailure::NotIssuer => "not_issuer",
            LedgerFailure::SupplyOverflow => "supply_overflow",
            LedgerFailure::AssetExists => "asset_exists",
            LedgerFailure::BridgeProofInvalid => "bridge_proof_invalid",
            LedgerFailure::AlreadyReceived => "already_received",
            LedgerFailure::BadDestination => "bad_destination",
            LedgerFailure::BridgePaused => "bridge_paused",
            LedgerFailure::BadTimeout => "bad_timeout",
            LedgerFailure::AnchorUnknown => "anchor_unknown",
            LedgerFailure::RateLimited => "rate_limited",
            LedgerFailure::AlreadyRefunded => "already_refunded",
            LedgerFailure::NotGuardian => "not_guardian",
            LedgerFailure::WrongChannel => "wrong_channel",
            LedgerFailure::BridgeDisabled => "bridge_disabled",
            LedgerFailure::WrappedBurn => "wrapped_burn",
        }
    }
}

impl crate::machine::ChainFailure for LedgerFailure {
    fn label(&self) -> &'static str {
        LedgerFailure::label(self)
    }
}

impl FailureCode for LedgerFailure {
    fn code(&self) -> u32 {
        match self {
            LedgerFailure::BadSignature => 1,
            LedgerFailure::WrongChain => 2,
            LedgerFailure::Malformed => 3,
            LedgerFailure::BadNonce { .. } => 4,
            LedgerFailure::FeeUnpaid => 5,
            LedgerFailure::InsufficientBalance => 6,
            LedgerFailure::UnknownAsset => 7,
            LedgerFailure::NotIssuer => 8,
            LedgerFailure::SupplyOverflow => 9,
            LedgerFailure::AssetExists => 10,
            LedgerFailure::BridgeProofInvalid => 11,
            LedgerFailure::AlreadyReceived => 12,
            LedgerFailure::BadDestination => 13,
            LedgerFailure::BridgePaused => 14,
            LedgerFailure::BadTimeout => 15,
            LedgerFailure::AnchorUnknown => 16,
            LedgerFailure::RateLimited => 17,
            LedgerFailure::AlreadyRefunded => 18,
            LedgerFailure::NotGuardian => 19,
            LedgerFailure::WrongChannel => 20,
            LedgerFailure::BridgeDisabled => 21,
            LedgerFailure::WrappedBurn => 22,
        }
    }
}

/// Native-ledger parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerConfig {
    /// The chain.
    pub chain_id: ChainId,
    /// Flat fee per included transaction, in the native asset (may be 0).
    pub fee: u64,
    /// Who receives fees.
    pub fee_collector: PublicKey,
    /// The network id bridge messages bind ([`Genesis::network_id`]).
    pub network: Digest,
    /// Bridge parameters ([`Genesis::bridge`]).
    pub bridge: BridgeSpec,
}

/// The version of the ledger rules this build implements ([`ChainSpec::ledger_version`]).
pub const LEDGER_VERSION: u32 = 1;

impl LedgerConfig {
    /// A fee-less ledger for `chain_id`.
    pub fn new(chain_id: ChainId) -> Self {
        LedgerConfig {
            chain_id,
            fee: 0,
            fee_collector: PublicKey::default(),
            network: Digest::ZERO,
            bridge: BridgeSpec::default(),
        }
    }

    /// The ledger a genesis chain spec defines (every replica and verifier of the chain
    /// derives it the same way); `None` if the spec asks for ledger rules other than
    /// [`LEDGER_VERSION`].
    /// The network id is zero and the bridge parameters the defaults: use
    /// [`LedgerConfig::from_genesis`] for a chain of a real network.
    pub fn from_spec(spec: &ChainSpec) -> Option<Self> {
        (spec.ledger_version == LEDGER_VERSION).then_some(LedgerConfig {
            chain_id: spec.id,
            fee: spec.fee,
            fee_collector: spec.fee_collector,
            network: Digest::ZERO,
            bridge: BridgeSpec::default(),
        })
    }

    /// The ledger of chain `chain` of `genesis` (its spec, the network id and the bridge
    /// parameters); `None` if the chain is unknown or asks for other ledger rules.
    pub fn from_genesis(genesis: &Genesis, chain: ChainId) -> Option<Self> {
        let mut c = Self::from_spec(genesis.chain(chain)?)?;
        c.network = genesis.network_id();
        c.bridge = genesis.bridge.clone();
        Some(c)
    }

    /// The transition-function parameters claims bind (see
    /// [`lamina_interfaces::LedgerParams::digest`]).
    pub fn params(&self) -> lamina_interfaces::LedgerParams {
        lamina_interfaces::LedgerParams { version: LEDGER_VERSION, fee: self.fee, fee_collector: self.fee_collector }
    }
}

/// The native ledger state machine, bound to the environment of one step
/// ([`NativeLedger::at`]): the log height and the finalized anchors it may read.
#[derive(Clone)]
pub struct NativeLedger {
    config: Arc<LedgerConfig>,
    env: StepEnv,
    /// Governance's parameters, given to every step whose environment has none
    /// ([`NativeLedger::with_params`]).
    params: Option<Arc<dyn lamina_interfaces::ParamsView>>,
    /// The governed parameters of this step, resolved once by [`NativeLedger::at`].
    resolved: Resolved,
}

/// The parameters governance may change, as in force at one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Resolved {
    fee: u64,
    inflow_limit: u64,
    /// The bridge's window length, and the height it holds from where governance
    /// changed it (`None`: the genesis length, windows aligned to height 0).
    window: (u64, Option<Height>),
}

impl Resolved {
    /// `config`'s values, overridden by what `env` says governance set.
    fn at(config: &LedgerConfig, env: &StepEnv) -> Self {
        use lamina_interfaces::GovernedParam as P;
        Resolved {
            fee: env.param(P::Fee(config.chain_id)).unwrap_or(config.fee),
            inflow_limit: env.param(P::BridgeInflowLimit).unwrap_or(config.bridge.inflow_limit),
            window: (
                env.param(P::BridgeWindowHeights).unwrap_or(config.bridge.window_heights),
                env.param_since(P::BridgeWindowHeights).filter(|h| h.0 > 1),
            ),
        }
    }
}

impl std::fmt::Debug for NativeLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeLedger").field("config", &self.config).field("height", &self.env.height).finish()
    }
}

impl NativeLedger {
    /// A ledger at height 0 with no anchors (bridge proofs are refused): call
    /// [`NativeLedger::at`] for each step.
    pub fn new(config: LedgerConfig) -> Self {
        // The ledger reads no signature (the signature stage runs before it, in the
        // step's own scope), so the scope of this placeholder environment is unused.
        let env = StepEnv::without_anchors(Height(0), TxScope::ChainOnly);
        let resolved = Resolved::at(&config, &env);
        NativeLedger { config: Arc::new(config), env, params: None, resolved }
    }

    /// The same ledger reading governance's parameters (the fee, the bridge's rate limit)
    /// from `params` at every step whose environment brings none: what a settlement node's re-execution and
    /// replicas run with, so that they charge what the execution nodes charged.
    pub fn with_params(mut self, params: Arc<dyn lamina_interfaces::ParamsView>) -> Self {
        self.params = Some(params);
        self
    }

    /// The same ledger for the step `env` describes (cheap: shares the configuration).
    pub fn at(&self, env: StepEnv) -> Self {
        let env = match &self.params {
            Some(p) if !env.has_params() => env.with_params(p.clone()),
            _ => env,
        };
        let resolved = Resolved::at(&self.config, &env);
        NativeLedger { config: self.config.clone(), env, params: self.params.clone(), resolved }
    }

    /// The flat fee charged at this step: governance's value for the height if it set
    /// one ([`StepEnv::fee`]), else the genesis chain spec's.
    pub fn fee(&self) -> u64 {
        self.resolved.fee
    }

    /// The step environment.
    pub fn env(&self) -> &StepEnv {
        &self.env
    }

    /// The configuration.
    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    fn asset_info<S: TxState>(state: &mut S, asset: AssetId) -> Option<AssetInfo> {
        state.data(&asset_key(asset)).and_then(|b| AssetInfo::decode(&b))
    }

    fn require_asset<S: TxState>(state: &mut S, asset: AssetId) -> Result<Option<AssetInfo>, LedgerFailure> {
        if asset == AssetId::NATIVE {
            return Ok(None);
        }
        Self::asset_info(state, asset).map(Some).ok_or(LedgerFailure::UnknownAsset)
    }

    fn fee_accesses(&self, tx: &Transaction, set: &mut AccessSet) {
        set.counter(nonce_key(&tx.sender), Access::Write);
        if self.fee() > 0 {
            set.counter(balance_key(&tx.sender, AssetId::NATIVE), Access::Debit);
            set.counter(balance_key(&self.config.fee_collector, AssetId::NATIVE), Access::Credit);
        }
    }
}

impl StateMachine for NativeLedger {
    type Call = Call;
    type Failure = LedgerFailure;

    fn chain_id(&self) -> ChainId {
        self.config.chain_id
    }

    fn decode(&self, tx: &Transaction) -> Result<Call, LedgerFailure> {
        Call::decode(&tx.payload)
    }

    fn access(&self, tx: &Transaction, call: &Call, s: &mut AccessSet) -> bool {
        self.fee_accesses(tx, s);
        let me = &tx.sender;
        match call {
            Call::Transfer { to, asset, .. } => {
                if *asset != AssetId::NATIVE {
                    s.data(asset_key(*asset), Access::Read);
                }
                s.counter(balance_key(me, *asset), Access::Debit);
                s.counter(balance_key(to, *asset), Access::Credit);
            }
            Call::CreateAsset { .. } => {
                s.data(asset_key(created_asset_id(self.config.chain_id, me, tx.nonce)), Access::Write);
            }
            Call::Mint { asset, to, .. } => {
                s.data(asset_key(*asset), Access::Read);
                s.counter(minted_key(*asset), Access::Write);
                s.counter(balance_key(to, *asset), Access::Credit);
            }
            Call::Burn { asset, .. } => {
                if *asset != AssetId::NATIVE {
                    s.data(asset_key(*asset), Access::Read);
                }
                s.counter(balance_key(me, *asset), Access::Debit);
                s.counter(burned_key(*asset), Access::Credit);
            }
            Call::BridgeLock { asset, dest_chain, .. } => {
                s.data(paused_key(), Access::Read);
                if *asset != AssetId::NATIVE {
                    s.data(asset_key(*asset), Access::Read);
                }
                s.counter(balance_key(me, *asset), Access::Debit);
                // Which of the two counters is credited depends on the asset's kind;
                // declaring both is a superset, which the contract allows.
                s.counter(burned_key(*asset), Access::Credit);
                s.counter(escrow_key(*dest_chain, *asset), Access::Credit);
                s.counter(sequence_key(*dest_chain), Access::Write);
                s.counter(bridge_out_key(*dest_chain, *asset), Access::Credit);
                s.data(outbox_key(*dest_chain, me, tx.nonce), Access::Write);
            }
            Call::BridgeReceive { message, .. } => {
                s.data(paused_key(), Access::Read);
                s.data(inbound_key(message.source, message.sequence), Access::Write);
                let local = local_asset(self.config.chain_id, message.origin);
                self.credit_accesses(message.origin, local, message.source, s);
                s.counter(balance_key(&message.recipient, local), Access::Credit);
                s.counter(bridge_in_key(message.source, local), Access::Credit);
                if self.resolved.inflow_limit > 0 {
                    s.counter(inflow_key(message.origin, self.window()), Access::Write);
                }
            }
            Call::BridgeRefund { message, .. } => {
                s.data(paused_key(), Access::Read);
                s.data(message_key(message), Access::Read);
                s.data(refunded_key(message.dest, message.sequence), Access::Write);
                let local = local_asset(self.config.chain_id, message.origin);
                self.credit_accesses(message.origin, local, message.dest, s);
                s.counter(balance_key(&message.sender, local), Access::Credit);
                s.counter(bridge_refund_key(message.dest, local), Access::Credit);
            }
            Call::BridgePause { .. } => {
                s.data(paused_key(), Access::Write);
            }
        }
        true
    }

    fn admit<S: TxState>(&self, tx: &Transaction, _call: &Call, state: &mut S) -> Result<(), LedgerFailure> {
        let nk = nonce_key(&tx.sender);
        let expected = state.counter(&nk);
        if u128::from(tx.nonce) != expected {
            return Err(LedgerFailure::BadNonce { expected: expected as u64, got: tx.nonce });
        }
        let fee = self.fee();
        if fee > 0 {
            if !state.debit(&balance_key(&tx.sender, AssetId::NATIVE), u128::from(fee)) {
                return Err(LedgerFailure::FeeUnpaid);
            }
            state.credit(&balance_key(&self.config.fee_collector, AssetId::NATIVE), u128::from(fee));
        }
        state.set_counter(&nk, expected + 1);
        Ok(())
    }

    fn apply<S: TxState>(&self, tx: &Transaction, call: &Call, state: &mut S) -> Result<(), LedgerFailure> {
        let me = &tx.sender;
        match call {
            Call::Transfer { to, asset, amount } => {
                Self::require_asset(state, *asset)?;
                if !state.debit(&balance_key(me, *asset), u128::from(*amount)) {
                    return Err(LedgerFailure::InsufficientBalance);
                }
                state.credit(&balance_key(to, *asset), u128::from(*amount));
                Ok(())
            }
            Call::CreateAsset { symbol } => {
                let id = created_asset_id(self.config.chain_id, me, tx.nonce);
                let key = asset_key(id);
                if state.data(&key).is_some() {
                    return Err(LedgerFailure::AssetExists);
                }
                let info = AssetInfo {
                    kind: AssetKind::Issued,
                    issuer: *me,
                    origin_chain: self.config.chain_id,
                    origin_asset: id,
                    symbol: *symbol,
                };
                state.set_data(&key, Some(info.encode().into()));
                Ok(())
            }
            Call::Mint { asset, to, amount } => {
                let info = Self::asset_info(state, *asset).ok_or(LedgerFailure::UnknownAsset)?;
                if info.kind != AssetKind::Issued || info.issuer != *me {
                    return Err(LedgerFailure::NotIssuer);
                }
                let mk = minted_key(*asset);
                let minted = state.counter(&mk);
                let total = minted.checked_add(u128::from(*amount)).ok_or(LedgerFailure::SupplyOverflow)?;
                state.set_counter(&mk, total);
                state.credit(&balance_key(to, *asset), u128::from(*amount));
                Ok(())
            }
            Call::Burn { asset, amount } => {
                // A wrapped asset leaves only by going home (a lock to its origin), so
                // the wrapped supply always matches the bridge counters.
                if Self::require_asset(state, *asset)?.is_some_and(|i| i.kind == AssetKind::Wrapped) {
                    return Err(LedgerFailure::WrappedBurn);
                }
                if !state.debit(&balance_key(me, *asset), u128::from(*amount)) {
                    return Err(LedgerFailure::InsufficientBalance);
                }
                state.credit(&burned_key(*asset), u128::from(*amount));
                Ok(())
            }
            Call::BridgeLock { asset, amount, dest_chain, recipient, timeout_heights } => {
                self.require_running(state)?;
                if *dest_chain == self.config.chain_id || !dest_chain.is_user_chain() {
                    return Err(LedgerFailure::BadDestination);
                }
                if *timeout_heights == 0 || *timeout_heights > self.config.bridge.max_timeout_heights {
                    return Err(LedgerFailure::BadTimeout);
                }
                let info = Self::require_asset(state, *asset)?;
                let origin = match info {
                    Some(i) if i.kind == AssetKind::Wrapped => {
                        // A wrapped asset only goes back to its origin, where it is burned
                        // here and unlocked from escrow there.
                        if i.origin_chain != *dest_chain {
                            return Err(LedgerFailure::BadDestination);
                        }
                        Origin { chain: i.origin_chain, asset: i.origin_asset.0 }
                    }
                    _ => Origin { chain: self.config.chain_id, asset: asset.0 },
                };
                if !state.debit(&balance_key(me, *asset), u128::from(*amount)) {
                    return Err(LedgerFailure::InsufficientBalance);
                }
                if origin.chain == self.config.chain_id {
                    state.credit(&escrow_key(*dest_chain, *asset), u128::from(*amount));
                } else {
                    state.credit(&burned_key(*asset), u128::from(*amount));
                }
                let sk = sequence_key(*dest_chain);
                let sequence = state.counter(&sk) as u64;
                state.set_counter(&sk, u128::from(sequence) + 1);
                let msg = BridgeMessage {
                    network: self.config.network,
                    source: self.config.chain_id,
                    dest: *dest_chain,
                    sequence,
                    sender: *me,
                    nonce: tx.nonce,
                    recipient: *recipient,
                    origin,
                    amount: *amount,
                    timeout: Height(self.env.height.0.saturating_add(*timeout_heights)),
                };
                state.credit(&bridge_out_key(*dest_chain, *asset), u128::from(*amount));
                state.set_data(&outbox_key(*dest_chain, me, tx.nonce), Some(Arc::from(&msg.encode()[..])));
                Ok(())
            }
            Call::BridgeReceive { message, proof } => {
                self.require_running(state)?;
                if message.dest != self.config.chain_id || message.network != self.config.network {
                    return Err(LedgerFailure::WrongChannel);
                }
                self.verify_anchored(message.source, proof, &message_key(message), &message.encode())?;
                let ik = inbound_key(message.source, message.sequence);
                if state.data(&ik).is_some() {
                    return Err(LedgerFailure::AlreadyReceived);
                }
                if self.env.height >= message.timeout {
                    state.set_data(&ik, Some(Arc::from(&inbound_value(ReceiptKind::TimedOut, message)[..])));
                    return Ok(());
                }
                let amount = u128::from(message.amount);
                if self.resolved.inflow_limit > 0 {
                    let fk = inflow_key(message.origin, self.window());
                    let used = state.counter(&fk).saturating_add(amount);
                    if used > u128::from(self.resolved.inflow_limit) {
                        return Err(LedgerFailure::RateLimited);
                    }
                    state.set_counter(&fk, used);
                }
                let local = local_asset(self.config.chain_id, message.origin);
                self.credit_back(state, message.origin, local, message.source, amount)?;
                state.credit(&balance_key(&message.recipient, local), amount);
                state.credit(&bridge_in_key(message.source, local), amount);
                state.set_data(&ik, Some(Arc::from(&inbound_value(ReceiptKind::Delivered, message)[..])));
                Ok(())
            }
            Call::BridgeRefund { message, proof } => {
                self.require_running(state)?;
                if message.source != self.config.chain_id || message.network != self.config.network {
                    return Err(LedgerFailure::WrongChannel);
                }
                // The message must be this chain's own, byte for byte.
                match state.data(&message_key(message)) {
                    Some(b) if *b == message.encode()[..] => {}
                    _ => return Err(LedgerFailure::BridgeProofInvalid),
                }
                let rk = refunded_key(message.dest, message.sequence);
                if state.data(&rk).is_some() {
                    return Err(LedgerFailure::AlreadyRefunded);
                }
                let key = inbound_key(message.source, message.sequence);
                self.verify_anchored(message.dest, proof, &key, &inbound_value(ReceiptKind::TimedOut, message))?;
                let amount = u128::from(message.amount);
                let local = local_asset(self.config.chain_id, message.origin);
                self.credit_back(state, message.origin, local, message.dest, amount)?;
                state.credit(&balance_key(&message.sender, local), amount);
                state.credit(&bridge_refund_key(message.dest, local), amount);
                state.set_data(&rk, Some(Arc::from(&message.encode()[..])));
                Ok(())
            }
            Call::BridgePause { paused } => {
                if !self.config.bridge.enabled {
                    return Err(LedgerFailure::BridgeDisabled);
                }
                let g = self.config.bridge.guardian;
                if g == PublicKey::default() || *me != g {
                    return Err(LedgerFailure::NotGuardian);
                }
                state.set_data(&paused_key(), Some(Arc::from(&[u8::from(*paused)][..])));
                Ok(())
            }
        }
    }
}

impl NativeLedger {
    /// The rate-limit window of this step's height, as its usage counter's key
    /// ([`inflow_key`]). With the genesis length, windows are `[i·W, (i+1)·W)` and the key
    /// is `i` (as before the length could change). Once governance changes the length
    /// to `W'` from height `s`, windows are `[s + j·W', s + (j+1)·W')` and the key is
    /// their first height with the top bit set: a new length never maps onto an old
    /// window's usage (nor onto a genesis window's index, all below `2^63`).
    fn window(&self) -> u64 {
        let h = self.env.height.0;
        match self.resolved.window {
            (w, None) => h / w.max(1),
            (w, Some(since)) => {
                let w = w.max(1);
                WINDOW_FROM_CHANGE | (since.0 + (h.saturating_sub(since.0) / w) * w)
            }
        }
    }

    /// Whether bridge operations are paused in `state`.
    pub fn is_paused<S: TxState>(&self, state: &mut S) -> bool {
        match state.data(&paused_key()).as_deref() {
            Some([b]) => *b == 1,
            _ => self.config.bridge.paused,
        }
    }

    fn require_running<S: TxState>(&self, state: &mut S) -> Result<(), LedgerFailure> {
        if !self.config.bridge.enabled {
            return Err(LedgerFailure::BridgeDisabled);
        }
        if self.is_paused(state) { Err(LedgerFailure::BridgePaused) } else { Ok(()) }
    }

    /// Checks that `proof` (an [`AnchoredProof`]) shows `key = value` in the state of
    /// `chain` at one of its anchors final before this height.
    pub fn verify_anchored(
        &self,
        chain: ChainId,
        proof: &[u8],
        key: &DataKey,
        value: &[u8],
    ) -> Result<(), LedgerFailure> {
        let p = AnchoredProof::decode(proof).ok_or(LedgerFailure::BridgeProofInvalid)?;
        let anchor = self.env.anchor(chain, p.anchor_index).ok_or(LedgerFailure::AnchorUnknown)?;
        let sp: StateProof =
            lamina_primitives::decode(&p.state_proof).map_err(|_| LedgerFailure::BridgeProofInvalid)?;
        verify_data(&anchor.state_root, key, Some(value), &sp).map_err(|_| LedgerFailure::BridgeProofInvalid)
    }

    /// Puts `amount` of `local` back into circulation here for a message with `peer`:
    /// unlocked from the escrow toward `peer` when this chain is the asset's home,
    /// minted (wrapped) otherwise.
    fn credit_back<S: TxState>(
        &self,
        state: &mut S,
        origin: Origin,
        local: AssetId,
        peer: ChainId,
        amount: u128,
    ) -> Result<(), LedgerFailure> {
        if origin.chain == self.config.chain_id {
            if !state.debit(&escrow_key(peer, local), amount) {
                return Err(LedgerFailure::InsufficientBalance);
            }
        } else {
            let ak = asset_key(local);
            if state.data(&ak).is_none() {
                let info = AssetInfo {
                    kind: AssetKind::Wrapped,
                    issuer: PublicKey::default(),
                    origin_chain: origin.chain,
                    origin_asset: AssetId(origin.asset),
                    symbol: *b"wrapped\0",
                };
                state.set_data(&ak, Some(info.encode().into()));
            }
            state.credit(&minted_key(local), amount);
        }
        Ok(())
    }

    fn credit_accesses(&self, origin: Origin, local: AssetId, peer: ChainId, s: &mut AccessSet) {
        if origin.chain == self.config.chain_id {
            s.counter(escrow_key(peer, local), Access::Debit);
        } else {
            s.data(asset_key(local), Access::Write);
            s.counter(minted_key(local), Access::Credit);
        }
    }
}

/// The genesis state of a chain: native asset metadata, genesis balances, funded test
/// accounts (`Keypair::for_testing(funded_test_accounts_seed + i)`), and the native
/// asset's minted total.
pub fn genesis(spec: &ChainSpec) -> ChangeSet {
    use std::collections::BTreeMap;
    let mut balances: BTreeMap<CounterKey, u128> = BTreeMap::new();
    let mut total: u128 = 0;
    for b in &spec.balances {
        *balances.entry(balance_key(&b.account, AssetId::NATIVE)).or_default() += u128::from(b.amount);
        total += u128::from(b.amount);
    }
    for i in 0..spec.funded_test_accounts {
        let pk = Keypair::for_testing(spec.funded_test_accounts_seed + i).public();
        *balances.entry(balance_key(&pk, AssetId::NATIVE)).or_default() += u128::from(spec.funded_test_amount);
        total += u128::from(spec.funded_test_amount);
    }
    let mut counters: Vec<(CounterKey, u128)> = balances.into_iter().filter(|(_, v)| *v != 0).collect();
    if total != 0 {
        counters.push((minted_key(AssetId::NATIVE), total));
    }
    counters.sort_unstable_by_key(|e| e.0);
    let native = AssetInfo {
        kind: AssetKind::Native,
        issuer: PublicKey::default(),
        origin_chain: spec.id,
        origin_asset: AssetId::NATIVE,
        symbol: *b"native\0\0",
    };
    ChangeSet { counters, data: vec![(asset_key(AssetId::NATIVE), Some(native.encode()))] }
}

/// A signed transfer of `amount` of `asset` to `to`.
pub fn transfer(
    keypair: &Keypair,
    scope: TxScope,
    chain: ChainId,
    nonce: u64,
    to: PublicKey,
    asset: AssetId,
    amount: u64,
) -> Transaction {
    Transaction::new_signed(keypair, scope, chain, nonce, Call::Transfer { to, asset, amount }.encode())
}

/// A signed asset creation; returns the transaction and the new asset's id.
pub fn create_asset(
    keypair: &Keypair,
    scope: TxScope,
    chain: ChainId,
    nonce: u64,
    symbol: [u8; 8],
) -> (Transaction, AssetId) {
    let id = created_asset_id(chain, &keypair.public(), nonce);
    (Transaction::new_signed(keypair, scope, chain, nonce, Call::CreateAsset { symbol }.encode()), id)
}

/// A signed mint (issuer only).
pub fn mint(
    keypair: &Keypair,
    scope: TxScope,
    chain: ChainId,
    nonce: u64,
    asset: AssetId,
    to: PublicKey,
    amount: u64,
) -> Transaction {
    Transaction::new_signed(keypair, scope, chain, nonce, Call::Mint { asset, to, amount }.encode())
}

/// A signed burn.
pub fn burn(keypair: &Keypair, scope: TxScope, chain: ChainId, nonce: u64, asset: AssetId, amount: u64) -> Transaction {
    Transaction::new_signed(keypair, scope, chain, nonce, Call::Burn { asset, amount }.encode())
}

/// A signed bridge lock.
#[allow(clippy::too_many_arguments)]
pub fn bridge_lock(
    keypair: &Keypair,
    scope: TxScope,
    chain: ChainId,
    nonce: u64,
    asset: AssetId,
    amount: u64,
    dest_chain: ChainId,
    recipient: PublicKey,
    timeout_heights: u64,
) -> Transaction {
    Transaction::new_signed(
        keypair,
        scope,
        chain,
        nonce,
        Call::BridgeLock { asset, amount, dest_chain, recipient, timeout_heights }.encode(),
    )
}

/// A signed bridge receive (anyone may relay it; the relayer pays the fee).
pub fn bridge_receive(
    keypair: &Keypair,
    scope: TxScope,
    chain: ChainId,
    nonce: u64,
    message: BridgeMessage,
    proof: Vec<u8>,
) -> Transaction {
    Transaction::new_signed(keypair, scope, chain, nonce, Call::BridgeReceive { message, proof }.encode())
}

/// A signed bridge refund (anyone may submit it; the amount goes to the message's
/// sender).
pub fn bridge_refund(
    keypair: &Keypair,
    scope: TxScope,
    chain: ChainId,
    nonce: u64,
    message: BridgeMessage,
    proof: Vec<u8>,
) -> Transaction {
    Transaction::new_signed(keypair, scope, chain, nonce, Call::BridgeRefund { message, proof }.encode())
}

/// A signed pause (`true`) or resume of the bridge (guardian only).
pub fn bridge_pause(keypair: &Keypair, scope: TxScope, chain: ChainId, nonce: u64, paused: bool) -> Transaction {
    Transaction::new_signed(keypair, scope, chain, nonce, Call::BridgePause { paused }.encode())
}
