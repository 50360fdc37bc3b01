//! The native ledger: Lamina's built-in state machine.
//!
//! Accounts are ed25519 public keys. Each account has a nonce and a balance per asset.
//! Asset 0 is the chain's native asset: it exists at genesis, has no issuer, and pays the
//! flat fee. Other assets are created by an issuer ([`Call::CreateAsset`]), minted only
//! by it, transferred by anyone and burned by their holders. Bridge hooks:
//! [`Call::BridgeLock`] escrows (or, for a wrapped asset going home, burns) an amount and
//! writes an outbox message into the state, where a relayer can prove it against a
//! finalized state root; [`Call::BridgeReceive`] checks such a proof through the
//! configured [`InboundVerifier`] and then unlocks from escrow (the asset is native here)
//! or mints the wrapped asset (it is foreign), each message at most once.
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

use lamina_interfaces::ChainSpec;
use lamina_primitives::{ChainId, Digest, Domain, Keypair, PublicKey, Transaction};

use crate::changes::ChangeSet;
use crate::key::{CounterKey, DataKey};
use crate::machine::{Access, AccessSet, FailureCode, Rejection, StateMachine, StateRead, TxState};

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
static BRIDGE_MESSAGE: Domain = Domain::new("lamina execution bridge message v1");

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

/// Key of the outbound bridge message written by `sender`'s lock transaction with
/// `nonce` (value: [`BridgeMessage::encode`]). It depends on the transaction alone, so
/// the lock's access set is known before execution.
pub fn outbox_key(sender: &PublicKey, nonce: u64) -> DataKey {
    DataKey::new(tag::OUTBOX, &[&sender.0, &nonce.to_le_bytes()])
}

/// Key marking an inbound bridge message as received.
pub fn inbound_key(id: &Digest) -> DataKey {
    DataKey::new(tag::INBOUND, &[&id.0])
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

/// A bridge message: written to the outbox of `source_chain` by a lock, consumed once on
/// `dest_chain` by a receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeMessage {
    /// Chain whose outbox holds the message.
    pub source_chain: ChainId,
    /// Chain that may consume it.
    pub dest_chain: ChainId,
    /// Who locked.
    pub sender: PublicKey,
    /// The sender's nonce of the lock transaction (makes the message unique).
    pub nonce: u64,
    /// Who receives on the destination.
    pub recipient: PublicKey,
    /// Where the asset originates.
    pub origin_chain: ChainId,
    /// Its id there.
    pub origin_asset: AssetId,
    /// Amount.
    pub amount: u64,
}

impl BridgeMessage {
    /// Encoded length.
    pub const LEN: usize = 8 + 8 + 32 + 8 + 32 + 8 + 8 + 8;

    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN);
        v.extend_from_slice(&self.source_chain.0.to_le_bytes());
        v.extend_from_slice(&self.dest_chain.0.to_le_bytes());
        v.extend_from_slice(&self.sender.0);
        v.extend_from_slice(&self.nonce.to_le_bytes());
        v.extend_from_slice(&self.recipient.0);
        v.extend_from_slice(&self.origin_chain.0.to_le_bytes());
        v.extend_from_slice(&self.origin_asset.0.to_le_bytes());
        v.extend_from_slice(&self.amount.to_le_bytes());
        v
    }

    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(BridgeMessage {
            source_chain: ChainId(r.u64()?),
            dest_chain: ChainId(r.u64()?),
            sender: r.pk()?,
            nonce: r.u64()?,
            recipient: r.pk()?,
            origin_chain: ChainId(r.u64()?),
            origin_asset: AssetId(r.u64()?),
            amount: r.u64()?,
        })
    }

    /// Decodes a message; `None` if malformed.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != Self::LEN {
            return None;
        }
        Self::read(&mut Reader(b))
    }

    /// The key of this message in its source chain's outbox.
    pub fn outbox_key(&self) -> DataKey {
        outbox_key(&self.sender, self.nonce)
    }

    /// The message id (its inbound key on the destination).
    pub fn id(&self) -> Digest {
        BRIDGE_MESSAGE.hash(&self.encode())
    }
}

/// Checks that a bridge message really is in the finalized outbox of its source chain.
/// The bridge layer provides the implementation (it knows the finalized state roots,
/// which come from settlement through the log, so the answer is deterministic).
pub trait InboundVerifier: Send + Sync {
    /// True if `proof` shows `message` in the outbox of `message.source_chain`.
    fn verify(&self, message: &BridgeMessage, proof: &[u8]) -> bool;
}

/// The default verifier: no bridge configured, every inbound message is refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoBridge;

impl InboundVerifier for NoBridge {
    fn verify(&self, _: &BridgeMessage, _: &[u8]) -> bool {
        false
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
    },
    /// Consumes a message from another chain's outbox.
    BridgeReceive {
        /// The message.
        message: BridgeMessage,
        /// Proof of the message against the source chain's finalized state.
        proof: Vec<u8>,
    },
}

mod op {
    pub const TRANSFER: u8 = 1;
    pub const CREATE_ASSET: u8 = 2;
    pub const MINT: u8 = 3;
    pub const BURN: u8 = 4;
    pub const BRIDGE_LOCK: u8 = 5;
    pub const BRIDGE_RECEIVE: u8 = 6;
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
            Call::BridgeLock { asset, amount, dest_chain, recipient } => {
                v.push(op::BRIDGE_LOCK);
                v.extend_from_slice(&asset.0.to_le_bytes());
                v.extend_from_slice(&amount.to_le_bytes());
                v.extend_from_slice(&dest_chain.0.to_le_bytes());
                v.extend_from_slice(&recipient.0);
            }
            Call::BridgeReceive { message, proof } => {
                v.push(op::BRIDGE_RECEIVE);
                v.extend_from_slice(&message.encode());
                v.extend_from_slice(proof);
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
                exact(56)?;
                (|| {
                    Some(Call::BridgeLock {
                        asset: AssetId(r.u64()?),
                        amount: r.u64()?,
                        dest_chain: ChainId(r.u64()?),
                        recipient: r.pk()?,
                    })
                })()
            }
            op::BRIDGE_RECEIVE => {
                if rest.len() < BridgeMessage::LEN || rest.len() > BridgeMessage::LEN + MAX_BRIDGE_PROOF {
                    return Err(LedgerFailure::Malformed);
                }
                let message = BridgeMessage::read(&mut r);
                message.map(|message| Call::BridgeReceive { message, proof: r.0.to_vec() })
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
        /// The bridge proof does not verify, or the message is not for this chain (failure).
        #[error("bridge message not proven")]
        BridgeProofInvalid,
        /// The bridge message was already received (failure).
        #[error("bridge message already received")]
        AlreadyReceived,
        /// The locked asset cannot go to that destination (failure).
        #[error("bad bridge destination")]
        BadDestination,
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
        }
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
}

/// The version of the ledger rules this build implements ([`ChainSpec::ledger_version`]).
pub const LEDGER_VERSION: u32 = 1;

impl LedgerConfig {
    /// A fee-less ledger for `chain_id`.
    pub fn new(chain_id: ChainId) -> Self {
        LedgerConfig { chain_id, fee: 0, fee_collector: PublicKey::default() }
    }

    /// The ledger a genesis chain spec defines (every replica and verifier of the chain
    /// derives it the same way); `None` if the spec asks for ledger rules other than
    /// [`LEDGER_VERSION`].
    pub fn from_spec(spec: &ChainSpec) -> Option<Self> {
        (spec.ledger_version == LEDGER_VERSION).then_some(LedgerConfig {
            chain_id: spec.id,
            fee: spec.fee,
            fee_collector: spec.fee_collector,
        })
    }

    /// The transition-function parameters claims bind (see
    /// [`lamina_interfaces::LedgerParams::digest`]).
    pub fn params(&self) -> lamina_interfaces::LedgerParams {
        lamina_interfaces::LedgerParams { version: LEDGER_VERSION, fee: self.fee, fee_collector: self.fee_collector }
    }
}

/// The native ledger state machine.
#[derive(Clone)]
pub struct NativeLedger {
    config: LedgerConfig,
    bridge: Arc<dyn InboundVerifier>,
}

impl std::fmt::Debug for NativeLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeLedger").field("config", &self.config).finish_non_exhaustive()
    }
}

impl NativeLedger {
    /// A ledger with no bridge (inbound messages are refused).
    pub fn new(config: LedgerConfig) -> Self {
        NativeLedger { config, bridge: Arc::new(NoBridge) }
    }

    /// A ledger whose inbound bridge messages are checked by `bridge`.
    pub fn with_bridge(config: LedgerConfig, bridge: Arc<dyn InboundVerifier>) -> Self {
        NativeLedger { config, bridge }
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
        if self.config.fee > 0 {
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
                if *asset != AssetId::NATIVE {
                    s.data(asset_key(*asset), Access::Read);
                }
                s.counter(balance_key(me, *asset), Access::Debit);
                // Which of the two counters is credited depends on the asset's kind;
                // declaring both is a superset, which the contract allows.
                s.counter(burned_key(*asset), Access::Credit);
                s.counter(escrow_key(*dest_chain, *asset), Access::Credit);
                s.data(outbox_key(me, tx.nonce), Access::Write);
            }
            Call::BridgeReceive { message, .. } => {
                let id = message.id();
                s.data(inbound_key(&id), Access::Write);
                let local = self.receive_asset(message);
                if message.origin_chain == self.config.chain_id {
                    s.counter(escrow_key(message.source_chain, local), Access::Debit);
                } else {
                    s.data(asset_key(local), Access::Write);
                    s.counter(minted_key(local), Access::Credit);
                }
                s.counter(balance_key(&message.recipient, local), Access::Credit);
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
        if self.config.fee > 0 {
            if !state.debit(&balance_key(&tx.sender, AssetId::NATIVE), u128::from(self.config.fee)) {
                return Err(LedgerFailure::FeeUnpaid);
            }
            state.credit(&balance_key(&self.config.fee_collector, AssetId::NATIVE), u128::from(self.config.fee));
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
                Self::require_asset(state, *asset)?;
                if !state.debit(&balance_key(me, *asset), u128::from(*amount)) {
                    return Err(LedgerFailure::InsufficientBalance);
                }
                state.credit(&burned_key(*asset), u128::from(*amount));
                Ok(())
            }
            Call::BridgeLock { asset, amount, dest_chain, recipient } => {
                if *dest_chain == self.config.chain_id || !dest_chain.is_user_chain() {
                    return Err(LedgerFailure::BadDestination);
                }
                let info = Self::require_asset(state, *asset)?;
                let msg = self.lock_message(tx, *asset, *amount, *dest_chain, *recipient, info.as_ref());
                if !state.debit(&balance_key(me, *asset), u128::from(*amount)) {
                    return Err(LedgerFailure::InsufficientBalance);
                }
                match info {
                    // A wrapped asset going back to its origin is burned here; the origin
                    // unlocks it from escrow.
                    Some(i) if i.kind == AssetKind::Wrapped && i.origin_chain == *dest_chain => {
                        state.credit(&burned_key(*asset), u128::from(*amount));
                    }
                    Some(i) if i.kind == AssetKind::Wrapped => return Err(LedgerFailure::BadDestination),
                    _ => state.credit(&escrow_key(*dest_chain, *asset), u128::from(*amount)),
                }
                state.set_data(&outbox_key(me, tx.nonce), Some(msg.encode().into()));
                Ok(())
            }
            Call::BridgeReceive { message, proof } => {
                if message.dest_chain != self.config.chain_id || !self.bridge.verify(message, proof) {
                    return Err(LedgerFailure::BridgeProofInvalid);
                }
                let ik = inbound_key(&message.id());
                if state.data(&ik).is_some() {
                    return Err(LedgerFailure::AlreadyReceived);
                }
                let local = self.receive_asset(message);
                let amount = u128::from(message.amount);
                if message.origin_chain == self.config.chain_id {
                    if !state.debit(&escrow_key(message.source_chain, local), amount) {
                        return Err(LedgerFailure::InsufficientBalance);
                    }
                } else {
                    let ak = asset_key(local);
                    if state.data(&ak).is_none() {
                        let info = AssetInfo {
                            kind: AssetKind::Wrapped,
                            issuer: PublicKey::default(),
                            origin_chain: message.origin_chain,
                            origin_asset: message.origin_asset,
                            symbol: *b"wrapped\0",
                        };
                        state.set_data(&ak, Some(info.encode().into()));
                    }
                    state.credit(&minted_key(local), amount);
                }
                state.credit(&balance_key(&message.recipient, local), amount);
                state.set_data(&ik, Some(Arc::from(&[1u8][..])));
                Ok(())
            }
        }
    }
}

impl NativeLedger {
    fn lock_message(
        &self,
        tx: &Transaction,
        asset: AssetId,
        amount: u64,
        dest_chain: ChainId,
        recipient: PublicKey,
        info: Option<&AssetInfo>,
    ) -> BridgeMessage {
        let (origin_chain, origin_asset) = match info {
            Some(i) if i.kind == AssetKind::Wrapped => (i.origin_chain, i.origin_asset),
            _ => (self.config.chain_id, asset),
        };
        BridgeMessage {
            source_chain: self.config.chain_id,
            dest_chain,
            sender: tx.sender,
            nonce: tx.nonce,
            recipient,
            origin_chain,
            origin_asset,
            amount,
        }
    }

    /// The local asset id a received message credits.
    fn receive_asset(&self, m: &BridgeMessage) -> AssetId {
        if m.origin_chain == self.config.chain_id {
            m.origin_asset
        } else {
            wrapped_asset_id(m.origin_chain, m.origin_asset)
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
    chain: ChainId,
    nonce: u64,
    to: PublicKey,
    asset: AssetId,
    amount: u64,
) -> Transaction {
    Transaction::new_signed(keypair, chain, nonce, Call::Transfer { to, asset, amount }.encode())
}

/// A signed asset creation; returns the transaction and the new asset's id.
pub fn create_asset(keypair: &Keypair, chain: ChainId, nonce: u64, symbol: [u8; 8]) -> (Transaction, AssetId) {
    let id = created_asset_id(chain, &keypair.public(), nonce);
    (Transaction::new_signed(keypair, chain, nonce, Call::CreateAsset { symbol }.encode()), id)
}

/// A signed mint (issuer only).
pub fn mint(keypair: &Keypair, chain: ChainId, nonce: u64, asset: AssetId, to: PublicKey, amount: u64) -> Transaction {
    Transaction::new_signed(keypair, chain, nonce, Call::Mint { asset, to, amount }.encode())
}

/// A signed burn.
pub fn burn(keypair: &Keypair, chain: ChainId, nonce: u64, asset: AssetId, amount: u64) -> Transaction {
    Transaction::new_signed(keypair, chain, nonce, Call::Burn { asset, amount }.encode())
}

/// A signed bridge lock.
pub fn bridge_lock(
    keypair: &Keypair,
    chain: ChainId,
    nonce: u64,
    asset: AssetId,
    amount: u64,
    dest_chain: ChainId,
    recipient: PublicKey,
) -> Transaction {
    Transaction::new_signed(keypair, chain, nonce, Call::BridgeLock { asset, amount, dest_chain, recipient }.encode())
}

/// A signed bridge receive (anyone may relay it; the relayer pays the fee).
pub fn bridge_receive(
    keypair: &Keypair,
    chain: ChainId,
    nonce: u64,
    message: BridgeMessage,
    proof: Vec<u8>,
) -> Transaction {
    Transaction::new_signed(keypair, chain, nonce, Call::BridgeReceive { message, proof }.encode())
}
