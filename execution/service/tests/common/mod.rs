//! A deterministic fixture: genesis, blocks with real finality and availability
//! certificates, and an in-process DA holding their batches. Built identically in a
//! parent test and its child process.
#![allow(dead_code, clippy::unwrap_used)]

use lamina_execution_core::ledger::{self, AssetId, LedgerConfig, NativeLedger};
use lamina_execution_core::{AuthenticatedState, sequential, sigverify};
use lamina_interfaces::{Blob, ChainSpec, DataAvailability, Genesis, NodeEntry};
use lamina_primitives::{
    Batch, Block, BlockHeader, ChainId, Digest, FinalizedBlock, Height, Keypair, Namespace, QuorumCertificate,
    Transaction, View,
};
use lamina_test_utils::FakeDa;
use rand::{Rng, SeedableRng};

pub const CHAIN: ChainId = ChainId(1);
pub const OTHER: ChainId = ChainId(2);
pub const ACCOUNTS: u64 = 40;
pub const SEED: u64 = 1000;

fn entry(i: u64, chain: Option<ChainId>) -> NodeEntry {
    NodeEntry {
        chain,
        ..lamina_test_utils::node(format!("n{i}"), &Keypair::for_testing(i), lamina_test_utils::localhost(0))
    }
}

pub fn genesis() -> Genesis {
    let spec = |id: ChainId| ChainSpec {
        name: format!("c{}", id.0),
        funded_test_accounts: ACCOUNTS,
        funded_test_accounts_seed: SEED,
        funded_test_amount: 1_000_000,
        ..lamina_test_utils::chain(id.0)
    };
    Genesis {
        chains: vec![spec(CHAIN), spec(OTHER)],
        validators: (0..4).map(|i| entry(i, None)).collect(),
        da_nodes: (10..14).map(|i| entry(i, None)).collect(),
        execution_nodes: vec![entry(20, Some(CHAIN))],
        ..lamina_test_utils::genesis("exec-test")
    }
}

pub fn exec_key() -> Keypair {
    Keypair::for_testing(20)
}

pub struct Fixture {
    pub genesis: Genesis,
    pub blocks: Vec<FinalizedBlock>,
    pub da: FakeDa,
    /// Each height's transactions for CHAIN, in execution order.
    pub chain_txs: Vec<Vec<Transaction>>,
}

fn sign_qc(keys: &[Keypair], digest: Digest, signers: usize) -> QuorumCertificate {
    let votes: Vec<(usize, _)> = keys.iter().take(signers).enumerate().map(|(i, k)| (i, k.sign(&digest))).collect();
    QuorumCertificate::from_votes(digest, keys.len(), &votes)
}

/// `heights` blocks; most carry a batch for CHAIN (some two, some none), some a batch
/// for OTHER, a few a garbage blob under CHAIN's namespace.
pub async fn fixture(heights: u64) -> Fixture {
    fixture_with(heights, genesis()).await
}

/// [`fixture`] on `genesis` (a variant of [`genesis`]): its transactions are signed for
/// that network (the network id hashes the whole genesis, addresses included).
pub async fn fixture_with(heights: u64, genesis: Genesis) -> Fixture {
    let scope = genesis.tx_scope();
    let validators: Vec<Keypair> = (0..4).map(Keypair::for_testing).collect();
    let da_keys: Vec<Keypair> = (10..14).map(Keypair::for_testing).collect();
    let accounts: Vec<Keypair> = (0..ACCOUNTS).map(|i| Keypair::for_testing(SEED + i)).collect();
    let da = FakeDa::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut nonces = vec![0u64; ACCOUNTS as usize];
    let mut parent = Digest::ZERO;
    let mut blocks = Vec::new();
    let mut chain_txs = Vec::new();
    for h in 1..=heights {
        let mut certs = Vec::new();
        let mut mine = Vec::new();
        let squares = match h % 5 {
            0 => 0,
            3 => 2,
            _ => 1,
        };
        for _ in 0..squares {
            let mut txs = Vec::new();
            for _ in 0..rng.random_range(1..40) {
                let s = rng.random_range(0..ACCOUNTS) as usize;
                let r = rng.random_range(0..ACCOUNTS) as usize;
                let mut t = ledger::transfer(
                    &accounts[s],
                    scope,
                    CHAIN,
                    nonces[s],
                    accounts[r].public(),
                    AssetId::NATIVE,
                    rng.random_range(1..50_000),
                );
                nonces[s] += 1;
                if rng.random_bool(0.03) {
                    t.signature.0[5] ^= 1;
                }
                txs.push(t);
            }
            mine.extend(txs.iter().cloned());
            let mut blobs = vec![Blob {
                namespace: Namespace::from(CHAIN),
                data: lamina_primitives::encode(&Batch { namespace: Namespace::from(CHAIN), txs }).unwrap(),
            }];
            if h % 2 == 0 {
                let t = ledger::transfer(&accounts[0], scope, OTHER, h, accounts[1].public(), AssetId::NATIVE, 1);
                blobs.push(Blob {
                    namespace: Namespace::from(OTHER),
                    data: lamina_primitives::encode(&Batch { namespace: Namespace::from(OTHER), txs: vec![t] })
                        .unwrap(),
                });
            }
            if h % 7 == 0 {
                blobs.push(Blob { namespace: Namespace::from(CHAIN), data: vec![0xEE; 33] });
            }
            let mut cert = da.submit(blobs).await.unwrap();
            let d = cert.commitment.attestation_digest();
            cert.signatures = sign_qc(&da_keys, d, 3);
            certs.push(cert);
        }
        let header = BlockHeader {
            height: Height(h),
            view: View(h),
            parent,
            proposer: validators[0].public(),
            payload: Block::payload_digest(&certs),
            timestamp_ms: 1_000 * h,
        };
        parent = header.digest();
        let certificate = sign_qc(&validators, header.finalization_digest(), 3);
        blocks.push(FinalizedBlock { block: Block { header, batches: certs }, certificate });
        chain_txs.push(mine);
    }
    Fixture { genesis, blocks, da, chain_txs }
}

/// Reference state roots after each height (index h-1), by the sequential executor.
pub fn reference_roots(f: &Fixture) -> Vec<Digest> {
    let spec = f.genesis.chain(CHAIN).unwrap();
    let mut st = AuthenticatedState::new();
    st.apply(&ledger::genesis(spec), false);
    let l = NativeLedger::new(LedgerConfig::new(CHAIN));
    f.chain_txs
        .iter()
        .map(|txs| {
            let v = sigverify::verify_block_sequential(f.genesis.tx_scope(), txs);
            let out = sequential::execute(&l, &st, txs, &v);
            st.apply(&out.changes, false)
        })
        .collect()
}

/// Reference claim steps (index h-1; `None` at heights without data for CHAIN), by the
/// sequential executor and the interfaces' extraction rule.
pub fn reference_steps(f: &Fixture) -> Vec<Option<lamina_interfaces::ClaimStep>> {
    let spec = f.genesis.chain(CHAIN).unwrap();
    let mut st = AuthenticatedState::new();
    st.apply(&ledger::genesis(spec), false);
    let l = NativeLedger::new(LedgerConfig::new(CHAIN));
    f.chain_txs
        .iter()
        .zip(&f.blocks)
        .map(|(txs, b)| {
            let roots = lamina_interfaces::inputs::namespace_data_roots(b, Namespace::from(CHAIN));
            if roots.is_empty() {
                assert!(txs.is_empty());
                return None;
            }
            let v = sigverify::verify_block_sequential(f.genesis.tx_scope(), txs);
            let out = sequential::execute(&l, &st, txs, &v);
            Some(lamina_interfaces::ClaimStep {
                height: b.height(),
                inputs: lamina_interfaces::settlement::inputs_digest(&roots),
                state_root: st.apply(&out.changes, false),
                receipts_root: lamina_execution_core::machine::receipts_root(&out.receipts),
            })
        })
        .collect()
}

/// Checks that `claims` (deduplicated by id, in order) form one chain from genesis whose
/// steps are exactly `want`'s up to the last claim, with the reference roots (state
/// roots corrupted when `faulty`). Returns the claims in chain order.
pub fn check_claim_chain(
    claims: &[lamina_interfaces::CheckpointClaim],
    want: &[Option<lamina_interfaces::ClaimStep>],
    faulty: bool,
) -> Vec<lamina_interfaces::CheckpointClaim> {
    let mut seen = std::collections::HashSet::new();
    let chain: Vec<_> = claims.iter().filter(|c| seen.insert(c.id())).cloned().collect();
    let (mut parent, mut from, mut receipts) = (Digest::ZERO, Height(0), Digest::ZERO);
    let mut steps = Vec::new();
    for c in &chain {
        c.verify_signature().unwrap();
        assert_eq!((c.parent, c.from), (parent, from), "claims chain through their parents");
        c.check_shape(&receipts).unwrap();
        assert_eq!(c.chain_id, CHAIN);
        steps.extend(c.steps.iter().copied());
        (parent, from, receipts) = (c.id(), c.to, c.receipts_root);
    }
    let mut expect: Vec<_> = want[..from.0 as usize].iter().flatten().copied().collect();
    if faulty {
        for s in &mut expect {
            s.state_root.0[0] ^= 0xFF;
        }
    }
    assert_eq!(steps, expect, "claims cover exactly the heights with data");
    chain
}

pub fn config() -> lamina_execution_service::Config {
    lamina_execution_service::Config { chain: Some(CHAIN), read_batch: 4, threads: 2, ..Default::default() }
}
