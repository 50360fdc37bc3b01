//! The workload: signed transfers among funded test accounts, pre-signed before the clock.
//!
//! A point's transactions are produced in two steps:
//!
//! 1. **Plan** (sequential, cheap): transaction `i` goes to chain `i mod chains`; its
//!    sender and recipient are drawn uniformly (`sender != recipient`) from the chain's
//!    first `accounts` funded test accounts with a seeded ChaCha RNG; the sender's next
//!    nonce is taken from a per-(chain, sender) counter that persists across the points
//!    of one deployment (a fresh [`Workload`] is made for each new deployment, whose
//!    genesis resets every nonce to 0).
//! 2. **Sign** (parallel, rayon): each plan entry becomes a real, ed25519-signed
//!    [`Transaction`] through a [`PayloadBuilder`]. Signing costs ~16 µs per
//!    transaction, which is why it happens before the clock starts. The sequential twin
//!    [`Workload::sign_sequential`] produces byte-identical output (property test).
//!
//! Contention is set with `accounts`: fewer accounts means more transactions per sender
//! and per recipient (hot keys for the parallel executor).
//!
//! Memory: a pre-signed transaction costs about [`tx_memory_bytes`] (the struct, its
//! payload allocation, and the tracker's per-transaction slots and index entry), so a
//! 60 s point at 40,000 tx/s (2.4 M transactions of 161 bytes) holds about 0.7 GB;
//! [`crate::BenchSpec::memory_limit_bytes`] refuses points above a limit.

use lamina_execution_core::AssetId;
use lamina_execution_core::ledger::{self, Call};
use lamina_interfaces::ChainSpec;
use lamina_primitives::{ChainId, Keypair, PublicKey, Transaction, TxScope};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::BenchError;

/// Bytes of a native transfer payload (`op ‖ to ‖ asset ‖ amount`).
pub const NATIVE_TRANSFER_PAYLOAD: usize = 1 + 32 + 8 + 8;
/// [`Transaction::approx_size`] of a native transfer.
pub const NATIVE_TRANSFER_TX_SIZE: usize = 8 + 32 + 8 + NATIVE_TRANSFER_PAYLOAD + 64;

/// Which payloads the workload signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadKind {
    /// Native-ledger transfers of the native asset, built with
    /// `lamina_execution_core::ledger::transfer`: executable end to end. Their size is
    /// fixed ([`NATIVE_TRANSFER_TX_SIZE`]); the ledger rejects padded payloads.
    NativeTransfer,
    /// A native transfer followed by zero padding up to the requested size. For
    /// ordering/DA runs (submit → finalized, bytes/s): the native ledger rejects these
    /// as malformed, so executed receipts are failures.
    PaddedTransfer,
}

/// What to send.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkloadSpec {
    /// Accounts per chain that send and receive (>= 2; at most the chain's funded test
    /// accounts). Fewer accounts = more contention.
    pub accounts: u64,
    /// Target [`Transaction::approx_size`] in bytes (`None`: the payload's natural size).
    pub tx_size: Option<usize>,
    /// Payload kind.
    pub payload: PayloadKind,
    /// Amount of the native asset moved by each transfer.
    pub amount: u64,
    /// Seed of the sender/recipient draw.
    pub seed: u64,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec { accounts: 1000, tx_size: None, payload: PayloadKind::NativeTransfer, amount: 1, seed: 1 }
    }
}

impl WorkloadSpec {
    /// Checks the spec on its own (deployment-independent checks).
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.accounts < 2 {
            return Err(BenchError::Workload("at least 2 accounts are needed (sender != recipient)".into()));
        }
        if self.accounts > u64::from(u32::MAX) {
            return Err(BenchError::Workload("at most 2^32 - 1 accounts per chain".into()));
        }
        self.builder().map(|_| ())
    }

    /// The payload builder this spec describes.
    pub fn builder(&self) -> Result<Box<dyn PayloadBuilder>, BenchError> {
        match (self.payload, self.tx_size) {
            (PayloadKind::NativeTransfer, None) => Ok(Box::new(NativeTransfer)),
            (PayloadKind::NativeTransfer, Some(s)) if s == NATIVE_TRANSFER_TX_SIZE => Ok(Box::new(NativeTransfer)),
            (PayloadKind::NativeTransfer, Some(s)) => Err(BenchError::Workload(format!(
                "native transfers are {NATIVE_TRANSFER_TX_SIZE} bytes; for tx_size = {s} use payload = padded_transfer \
                 (ordering/DA runs: the native ledger rejects padded payloads)"
            ))),
            (PayloadKind::PaddedTransfer, s) => {
                let size = s.unwrap_or(NATIVE_TRANSFER_TX_SIZE);
                if size < NATIVE_TRANSFER_TX_SIZE {
                    return Err(BenchError::Workload(format!(
                        "tx_size {size} is below a transfer's {NATIVE_TRANSFER_TX_SIZE} bytes"
                    )));
                }
                Ok(Box::new(PaddedTransfer { payload_len: size - (NATIVE_TRANSFER_TX_SIZE - NATIVE_TRANSFER_PAYLOAD) }))
            }
        }
    }
}

/// Builds and signs one transaction of the workload. Implement it to benchmark another
/// state machine's transactions; it must be deterministic (same inputs, same bytes).
pub trait PayloadBuilder: Send + Sync {
    /// A signed transaction from `keypair` on `chain` with `nonce` that moves `amount`
    /// to `to`, signed for a network of scope `scope`.
    fn build(
        &self,
        keypair: &Keypair,
        scope: TxScope,
        chain: ChainId,
        nonce: u64,
        to: PublicKey,
        amount: u64,
    ) -> Transaction;

    /// Length of the payloads it builds (for memory estimates).
    fn payload_len(&self) -> usize;
}

/// Native-ledger transfers (the execution layer's own constructor).
#[derive(Clone, Copy, Debug, Default)]
pub struct NativeTransfer;

impl PayloadBuilder for NativeTransfer {
    fn build(
        &self,
        keypair: &Keypair,
        scope: TxScope,
        chain: ChainId,
        nonce: u64,
        to: PublicKey,
        amount: u64,
    ) -> Transaction {
        ledger::transfer(keypair, scope, chain, nonce, to, AssetId::NATIVE, amount)
    }

    fn payload_len(&self) -> usize {
        NATIVE_TRANSFER_PAYLOAD
    }
}

/// A native transfer's payload, zero-padded to `payload_len` bytes.
#[derive(Clone, Copy, Debug)]
pub struct PaddedTransfer {
    /// Payload length (>= [`NATIVE_TRANSFER_PAYLOAD`]).
    pub payload_len: usize,
}

impl PayloadBuilder for PaddedTransfer {
    fn build(
        &self,
        keypair: &Keypair,
        scope: TxScope,
        chain: ChainId,
        nonce: u64,
        to: PublicKey,
        amount: u64,
    ) -> Transaction {
        let mut payload = Call::Transfer { to, asset: AssetId::NATIVE, amount }.encode();
        payload.resize(self.payload_len.max(payload.len()), 0);
        Transaction::new_signed(keypair, scope, chain, nonce, payload)
    }

    fn payload_len(&self) -> usize {
        self.payload_len
    }
}

/// Approximate resident bytes per pre-generated transaction with `payload_len` bytes of
/// payload: the struct, the payload allocation, the tracker's slots and index entry.
pub fn tx_memory_bytes(payload_len: usize) -> u64 {
    // Transaction struct + payload heap (rounded to 16) + 4 u64 slots and 2 status bytes
    // in the tracker + a hash-map entry (TxId 32 + u32 + control/padding ~ 24).
    (std::mem::size_of::<Transaction>() + payload_len.div_ceil(16) * 16 + 34 + 60) as u64
}

/// One planned transaction (before signing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxPlan {
    /// Index into the workload's chains.
    pub chain: u32,
    /// Sender's account index.
    pub from: u32,
    /// Recipient's account index (`!= from`).
    pub to: u32,
    /// Sender's nonce.
    pub nonce: u64,
}

/// A chain the workload sends to: its funded test accounts.
#[derive(Clone, Debug)]
struct ChainAccounts {
    id: ChainId,
    keys: Vec<Keypair>,
    publics: Vec<PublicKey>,
    next_nonce: Vec<u64>,
}

/// The workload of one deployment: keys, nonces and the RNG, carried across points.
pub struct Workload {
    chains: Vec<ChainAccounts>,
    scope: TxScope,
    builder: Box<dyn PayloadBuilder>,
    amount: u64,
    rng: ChaCha8Rng,
    planned: u64,
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("chains", &self.chains.iter().map(|c| (c.id, c.keys.len())).collect::<Vec<_>>())
            .field("planned", &self.planned)
            .finish_non_exhaustive()
    }
}

impl Workload {
    /// The workload for a deployment's chains. Uses each chain's funded test accounts
    /// (`Keypair::for_testing(funded_test_accounts_seed + i)`, `i < spec.accounts`);
    /// fails if a chain funds fewer than `spec.accounts`. Transactions are signed for a
    /// network of scope `scope` (the deployment's, [`crate::Deployment::scope`]).
    pub fn new(spec: &WorkloadSpec, chains: &[ChainSpec], scope: TxScope) -> Result<Self, BenchError> {
        spec.validate()?;
        if chains.is_empty() {
            return Err(BenchError::Workload("the deployment has no chains".into()));
        }
        let builder = spec.builder()?;
        let mut out = Vec::with_capacity(chains.len());
        for c in chains {
            if c.funded_test_accounts < spec.accounts {
                return Err(BenchError::Workload(format!(
                    "chain {} funds {} test accounts; the workload needs {}",
                    c.id, c.funded_test_accounts, spec.accounts
                )));
            }
            let keys: Vec<Keypair> = (0..spec.accounts)
                .into_par_iter()
                .map(|i| Keypair::for_testing(c.funded_test_accounts_seed + i))
                .collect();
            let publics = keys.iter().map(Keypair::public).collect();
            out.push(ChainAccounts { id: c.id, keys, publics, next_nonce: vec![0; spec.accounts as usize] });
        }
        Ok(Workload {
            chains: out,
            scope,
            builder,
            amount: spec.amount,
            rng: ChaCha8Rng::seed_from_u64(spec.seed),
            planned: 0,
        })
    }

    /// Replaces the payload builder (for another state machine's transactions).
    pub fn with_builder(mut self, builder: Box<dyn PayloadBuilder>) -> Self {
        self.builder = builder;
        self
    }

    /// The chains, in workload order.
    pub fn chain_ids(&self) -> Vec<ChainId> {
        self.chains.iter().map(|c| c.id).collect()
    }

    /// Payload length of the builder.
    pub fn payload_len(&self) -> usize {
        self.builder.payload_len()
    }

    /// Plans the next `n` transactions (advances nonces and the RNG).
    pub fn plan(&mut self, n: usize) -> Vec<TxPlan> {
        let mut out = Vec::with_capacity(n);
        let nchains = self.chains.len() as u64;
        for _ in 0..n {
            let ci = (self.planned % nchains) as usize;
            self.planned += 1;
            let c = &mut self.chains[ci];
            let accounts = c.keys.len() as u32;
            let from = self.rng.random_range(0..accounts);
            // Uniform over the other accounts.
            let mut to = self.rng.random_range(0..accounts - 1);
            if to >= from {
                to += 1;
            }
            let nonce = c.next_nonce[from as usize];
            c.next_nonce[from as usize] += 1;
            out.push(TxPlan { chain: ci as u32, from, to, nonce });
        }
        out
    }

    fn sign_one(&self, p: &TxPlan) -> Transaction {
        let c = &self.chains[p.chain as usize];
        self.builder.build(&c.keys[p.from as usize], self.scope, c.id, p.nonce, c.publics[p.to as usize], self.amount)
    }

    /// Signs planned transactions on all cores (rayon), in plan order.
    pub fn sign_parallel(&self, plan: &[TxPlan]) -> Vec<Transaction> {
        plan.par_iter().map(|p| self.sign_one(p)).collect()
    }

    /// The sequential twin of [`Workload::sign_parallel`]: same output, one core.
    pub fn sign_sequential(&self, plan: &[TxPlan]) -> Vec<Transaction> {
        plan.iter().map(|p| self.sign_one(p)).collect()
    }

    /// Plans and signs (in parallel) the next `n` transactions.
    pub fn generate(&mut self, n: usize) -> Vec<Transaction> {
        let plan = self.plan(n);
        self.sign_parallel(&plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(id: u64, accounts: u64) -> ChainSpec {
        ChainSpec {
            id: ChainId(id),
            name: format!("c{id}"),
            balances: vec![],
            funded_test_accounts: accounts,
            funded_test_accounts_seed: (id - 1) * 1_000_000,
            funded_test_amount: 1_000_000,
            fee: 0,
            fee_collector: Default::default(),
            ledger_version: 1,
        }
    }

    #[test]
    fn plans_distinct_endpoints_and_consecutive_nonces_per_sender() {
        let spec = WorkloadSpec { accounts: 3, ..Default::default() };
        let mut w = Workload::new(&spec, &[chain(1, 5), chain(2, 5)], TxScope::ChainOnly).unwrap();
        let a = w.plan(500);
        let b = w.plan(500);
        let mut next = std::collections::HashMap::new();
        for (i, p) in a.iter().chain(&b).enumerate() {
            assert_ne!(p.from, p.to);
            assert!(p.from < 3 && p.to < 3);
            assert_eq!(p.chain as usize, i % 2, "round robin over chains");
            let n = next.entry((p.chain, p.from)).or_insert(0u64);
            assert_eq!(p.nonce, *n, "nonces continue across calls");
            *n += 1;
        }
    }

    #[test]
    fn native_transfers_are_signed_and_decode_as_transfers() {
        let spec = WorkloadSpec { accounts: 4, amount: 7, ..Default::default() };
        let mut w = Workload::new(&spec, &[chain(1, 4)], TxScope::ChainOnly).unwrap();
        let txs = w.generate(20);
        for tx in &txs {
            tx.verify(TxScope::ChainOnly).unwrap();
            assert_eq!(tx.approx_size(), NATIVE_TRANSFER_TX_SIZE);
            let Call::Transfer { amount, .. } = Call::decode(&tx.payload).unwrap() else { panic!("not a transfer") };
            assert_eq!(amount, 7);
            // The sender is one of the chain's funded test accounts.
            assert!((0..4).any(|i| Keypair::for_testing(i).public() == tx.sender));
        }
    }

    #[test]
    fn padded_transfers_have_the_requested_size() {
        let spec = WorkloadSpec {
            accounts: 2,
            tx_size: Some(512),
            payload: PayloadKind::PaddedTransfer,
            ..Default::default()
        };
        let mut w = Workload::new(&spec, &[chain(3, 2)], TxScope::ChainOnly).unwrap();
        for tx in w.generate(5) {
            tx.verify(TxScope::ChainOnly).unwrap();
            assert_eq!(tx.approx_size(), 512);
        }
    }

    #[test]
    fn rejects_what_cannot_be_generated() {
        let bad = WorkloadSpec { accounts: 1, ..Default::default() };
        assert!(bad.validate().is_err());
        let bad = WorkloadSpec { tx_size: Some(512), ..Default::default() };
        assert!(bad.validate().is_err(), "native transfers cannot be padded");
        let bad = WorkloadSpec { tx_size: Some(100), payload: PayloadKind::PaddedTransfer, ..Default::default() };
        assert!(bad.validate().is_err());
        let spec = WorkloadSpec { accounts: 10, ..Default::default() };
        assert!(Workload::new(&spec, &[chain(1, 9)], TxScope::ChainOnly).is_err(), "too few funded accounts");
        assert!(Workload::new(&spec, &[], TxScope::ChainOnly).is_err());
    }
}
