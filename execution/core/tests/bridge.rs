#![allow(clippy::unwrap_used)]
//! The bridge calls of the native ledger, between two chains of one network, with real
//! state proofs against anchors: the happy path, and the attack classes of the research
//! file's list (B4–B13) that the ledger itself must stop. Each test names the hack it
//! replays. B1–B3 and B9 are about committee signatures and light-client headers; this
//! bridge has neither — it trusts only anchors of settlement's registry, which a wrong
//! claim never reaches (settlement's S1 tests) — so their analogues here are: a forged
//! anchor (the registry itself compromised) minting at most the rate limit (B1), and
//! proofs against anchors that are not final, not of the source chain, or zero (B3, B9).
//! B2 (a revoked signer) has no analogue: no key signs for the bridge. B11 (adversarial
//! and racing relayers) is the multi-process test `node/tests/bridge.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use lamina_execution_core::block::execute_txs;
use lamina_execution_core::ledger::{self, AssetId, LedgerConfig, LedgerFailure, NativeLedger, balance};
use lamina_execution_core::state::AuthenticatedState;
use lamina_execution_core::{DataKey, StateRead, Status, sequential, sigverify};
use lamina_interfaces::{
    AnchorList, AnchoredProof, BridgeMessage, BridgeSpec, ChainSpec, FinalizedRoot, GenesisBalance, ReceiptKind,
    StepEnv,
};
use lamina_primitives::{ChainId, Digest, Height, Keypair, Transaction, TxScope};

/// What the tests' transactions bind: a network of their own.
const SCOPE: TxScope = TxScope::Network(Digest([0x5c; 32]));
use proptest::prelude::*;

const HOME: ChainId = ChainId(1);
const AWAY: ChainId = ChainId(2);
const NETWORK: Digest = Digest([7; 32]);

struct Chain {
    ledger: NativeLedger,
    state: AuthenticatedState,
    nonces: BTreeMap<u8, u64>,
}

/// Two chains driven by one log: every `run` is one log height; anchors finalize when
/// a test says so (at the current height, visible from the next one).
struct Net {
    height: u64,
    anchors: AnchorList,
    chains: BTreeMap<ChainId, Chain>,
    keys: Vec<Keypair>,
}

fn spec(id: ChainId, keys: &[Keypair]) -> ChainSpec {
    ChainSpec {
        id,
        name: format!("c{}", id.0),
        balances: keys.iter().map(|k| GenesisBalance { account: k.public(), amount: 1_000 }).collect(),
        ..ChainSpec::default()
    }
}

impl Net {
    fn new(bridge: BridgeSpec) -> Self {
        let keys: Vec<Keypair> = (0..6).map(Keypair::for_testing).collect();
        let mut chains = BTreeMap::new();
        for id in [HOME, AWAY, ChainId(3)] {
            let s = spec(id, &keys);
            let mut state = AuthenticatedState::new();
            state.apply(&ledger::genesis(&s), false);
            let mut config = LedgerConfig::from_spec(&s).unwrap();
            config.network = NETWORK;
            config.bridge = BridgeSpec { enabled: true, ..bridge.clone() };
            chains.insert(id, Chain { ledger: NativeLedger::new(config), state, nonces: BTreeMap::new() });
        }
        Net { height: 0, anchors: AnchorList::default(), chains, keys }
    }

    fn nonce(&mut self, chain: ChainId, who: u8) -> u64 {
        let n = self.chains.get_mut(&chain).unwrap().nonces.entry(who).or_default();
        *n += 1;
        *n - 1
    }

    /// One log height: `txs` on `chain` (both executors must agree); returns statuses.
    fn run(&mut self, chain: ChainId, txs: &[Transaction]) -> Vec<Status<LedgerFailure>> {
        self.height += 1;
        let env = StepEnv::new(Height(self.height), SCOPE, Arc::new(self.anchors.clone()));
        let c = self.chains.get_mut(&chain).unwrap();
        let l = c.ledger.at(env);
        let out = execute_txs(&l, SCOPE, &c.state, txs);
        let v = sigverify::verify_block(SCOPE, txs);
        assert_eq!(sequential::execute(&l, &c.state, txs, &v), out, "executors agree");
        c.state.apply(&out.changes, false);
        out.receipts.into_iter().map(|r| r.status).collect()
    }

    fn idle(&mut self, heights: u64) {
        self.height += heights;
    }

    /// Finalizes `chain`'s current state as its next anchor (visible from the next
    /// height); returns the anchor's index.
    fn finalize(&mut self, chain: ChainId) -> u64 {
        let index = (0..).find(|i| lamina_interfaces::AnchorView::anchor(&self.anchors, chain, *i).is_none()).unwrap();
        let root = self.chains[&chain].state.root();
        self.anchors.push(FinalizedRoot {
            chain,
            index,
            to: Height(self.height),
            state_root: root,
            finalized_at: Height(self.height),
            usable_until: None,
        });
        self.height += 1;
        index
    }

    /// Proof of `key` in `chain`'s current state, naming anchor `index`.
    fn prove(&self, chain: ChainId, index: u64, key: &DataKey) -> Vec<u8> {
        let (_, p) = self.chains[&chain].state.prove_data(key).unwrap();
        AnchoredProof { anchor_index: index, state_proof: lamina_primitives::encode(&p).unwrap() }.encode()
    }

    /// Message `seq` of the channel `chain → dest` (the tests lock with sender 0 or 1
    /// only, so the entry is found by trying their nonces).
    fn outbox(&self, chain: ChainId, dest: ChainId, seq: u64) -> BridgeMessage {
        let st = &self.chains[&chain].state;
        for who in [0usize, 1] {
            for n in 0..64 {
                if let Some(b) = st.data(&ledger::outbox_key(dest, &self.keys[who].public(), n)) {
                    let m = BridgeMessage::decode(&b).unwrap();
                    if m.sequence == seq {
                        return m;
                    }
                }
            }
        }
        panic!("no message {seq} on {chain} → {dest}")
    }

    fn okey(&self, chain: ChainId, dest: ChainId, seq: u64) -> DataKey {
        ledger::message_key(&self.outbox(chain, dest, seq))
    }

    fn lock(
        &mut self,
        chain: ChainId,
        who: u8,
        asset: AssetId,
        amount: u64,
        dest: ChainId,
        timeout: u64,
    ) -> Status<LedgerFailure> {
        let n = self.nonce(chain, who);
        let to = self.keys[who as usize + 1].public();
        let tx = ledger::bridge_lock(&self.keys[who as usize], SCOPE, chain, n, asset, amount, dest, to, timeout);
        self.run(chain, &[tx]).remove(0)
    }

    fn receive(&mut self, m: BridgeMessage, proof: Vec<u8>) -> Status<LedgerFailure> {
        let n = self.nonce(m.dest, 5);
        let tx = ledger::bridge_receive(&self.keys[5], SCOPE, m.dest, n, m, proof);
        self.run(m.dest, &[tx]).remove(0)
    }

    fn refund(&mut self, m: BridgeMessage, proof: Vec<u8>) -> Status<LedgerFailure> {
        let n = self.nonce(m.source, 5);
        let tx = ledger::bridge_refund(&self.keys[5], SCOPE, m.source, n, m, proof);
        self.run(m.source, &[tx]).remove(0)
    }

    /// Relays message `seq` of `src → dest`: finalizes the source and receives.
    fn relay(&mut self, src: ChainId, dest: ChainId, seq: u64) -> Status<LedgerFailure> {
        let m = self.outbox(src, dest, seq);
        let i = self.finalize(src);
        let p = self.prove(src, i, &self.okey(src, dest, seq));
        self.receive(m, p)
    }

    fn counter(&self, chain: ChainId, key: &lamina_execution_core::CounterKey) -> u128 {
        self.chains[&chain].state.counter(key)
    }

    fn bal(&self, chain: ChainId, who: u8, asset: AssetId) -> u128 {
        balance(&self.chains[&chain].state, &self.keys[who as usize].public(), asset)
    }

    fn root(&self, chain: ChainId) -> Digest {
        self.chains[&chain].state.root()
    }
}

fn wrapped() -> AssetId {
    ledger::wrapped_asset_id(HOME, AssetId::NATIVE)
}

fn failed(f: LedgerFailure) -> Status<LedgerFailure> {
    Status::Failed(f)
}

#[test]
fn lock_receive_and_return_move_assets_between_chains() {
    let mut net = Net::new(BridgeSpec::default());
    assert_eq!(net.lock(HOME, 0, AssetId::NATIVE, 40, AWAY, 100), Status::Success);
    let m = net.outbox(HOME, AWAY, 0);
    assert_eq!((m.source, m.dest, m.sequence, m.amount, m.network), (HOME, AWAY, 0, 40, NETWORK));
    assert_eq!(m.timeout, Height(1 + 100));
    assert_eq!(net.counter(HOME, &ledger::escrow_key(AWAY, AssetId::NATIVE)), 40);
    assert_eq!(net.relay(HOME, AWAY, 0), Status::Success);
    assert_eq!(net.bal(AWAY, 1, wrapped()), 40);
    assert_eq!(net.counter(AWAY, &ledger::minted_key(wrapped())), 40);
    // The wrapped asset goes home: burned away, unlocked from escrow at home.
    assert_eq!(net.lock(AWAY, 1, wrapped(), 15, HOME, 100), Status::Success);
    assert_eq!(net.relay(AWAY, HOME, 0), Status::Success);
    assert_eq!(net.bal(HOME, 2, AssetId::NATIVE), 1_000 + 15);
    assert_eq!(net.counter(HOME, &ledger::escrow_key(AWAY, AssetId::NATIVE)), 25);
    // A wrapped asset cannot go on to a third chain.
    assert_eq!(net.lock(AWAY, 1, wrapped(), 5, ChainId(3), 100), failed(LedgerFailure::BadDestination));
    // Sequences count per channel.
    assert_eq!(net.lock(HOME, 0, AssetId::NATIVE, 1, ChainId(3), 100), Status::Success);
    assert_eq!(net.lock(HOME, 0, AssetId::NATIVE, 1, AWAY, 100), Status::Success);
    assert_eq!(net.outbox(HOME, ChainId(3), 0).sequence, 0);
    assert_eq!(net.outbox(HOME, AWAY, 1).sequence, 1);
}

#[test]
fn b4_nomad_unproven_messages_and_zero_roots_are_never_processed() {
    let mut net = Net::new(BridgeSpec::default());
    net.lock(HOME, 0, AssetId::NATIVE, 40, AWAY, 100);
    let m = net.outbox(HOME, AWAY, 0);
    // No proof at all: the payload does not even decode.
    let s = net.run(AWAY, &[ledger::bridge_receive(&net.keys[4].clone(), SCOPE, AWAY, 0, m, vec![])]);
    assert_eq!(s[0], Status::Rejected(LedgerFailure::Malformed));
    // An anchor whose root is zero is never trusted (Nomad's `confirmAt[0x00] = 1`).
    let zero = FinalizedRoot {
        chain: HOME,
        index: 0,
        to: Height(1),
        state_root: Digest::ZERO,
        finalized_at: Height(1),
        usable_until: None,
    };
    net.anchors.push(zero);
    let p = net.prove(HOME, 0, &net.okey(HOME, AWAY, 0));
    assert_eq!(net.receive(m, p), failed(LedgerFailure::AnchorUnknown));
    // A proof naming an anchor that does not exist.
    let p = net.prove(HOME, 9, &net.okey(HOME, AWAY, 0));
    assert_eq!(net.receive(m, p), failed(LedgerFailure::AnchorUnknown));
    // A message that was never locked (its own bytes, forged amount) has no proof.
    let i = net.finalize(HOME);
    let forged = BridgeMessage { amount: 4_000, ..m };
    let p = net.prove(HOME, i, &net.okey(HOME, AWAY, 0));
    assert_eq!(net.receive(forged, p), failed(LedgerFailure::BridgeProofInvalid));
    assert_eq!(net.bal(AWAY, 1, wrapped()), 0);
}

#[test]
fn b3_b9_anchor_must_be_final_before_the_height_and_of_the_source_chain() {
    let mut net = Net::new(BridgeSpec::default());
    net.lock(HOME, 0, AssetId::NATIVE, 40, AWAY, 100);
    let m = net.outbox(HOME, AWAY, 0);
    // An anchor finalizing at the very height of the receive is not yet visible.
    let root = net.root(HOME);
    net.anchors.push(FinalizedRoot {
        chain: HOME,
        index: 0,
        to: Height(net.height),
        state_root: root,
        finalized_at: Height(net.height + 1),
        usable_until: None,
    });
    let p = net.prove(HOME, 0, &net.okey(HOME, AWAY, 0));
    assert_eq!(net.receive(m, p.clone()), failed(LedgerFailure::AnchorUnknown));
    // The same root registered as another chain's anchor proves nothing for HOME
    // (spoofed verifier context: the anchor is looked up by the message's source).
    let mut net2 = Net::new(BridgeSpec::default());
    net2.lock(HOME, 0, AssetId::NATIVE, 40, AWAY, 100);
    let root = net2.root(HOME);
    net2.anchors.push(FinalizedRoot {
        chain: ChainId(3),
        index: 0,
        to: Height(1),
        state_root: root,
        finalized_at: Height(1),
        usable_until: None,
    });
    net2.idle(1);
    let p = net2.prove(HOME, 0, &net2.okey(HOME, AWAY, 0));
    assert_eq!(net2.receive(m, p), failed(LedgerFailure::AnchorUnknown));
    // Once final (the next height), the first proof is good.
    assert_eq!(net.receive(m, p_again(&net, 0)), Status::Success);

    fn p_again(net: &Net, index: u64) -> Vec<u8> {
        net.prove(HOME, index, &net.okey(HOME, AWAY, 0))
    }
}

#[test]
fn b5_poly_a_message_only_moves_assets() {
    // A receive touches exactly the receipt, the credited balance, the asset's supply
    // (or escrow) and the bridge counters; nothing a message says can reach the pause
    // switch, another account, or any key of the ledger's own configuration.
    let mut net = Net::new(BridgeSpec { inflow_limit: 1_000_000, ..BridgeSpec::default() });
    net.lock(HOME, 0, AssetId::NATIVE, 40, AWAY, 100);
    let m = net.outbox(HOME, AWAY, 0);
    let i = net.finalize(HOME);
    let proof = net.prove(HOME, i, &net.okey(HOME, AWAY, 0));
    let env = StepEnv::new(Height(net.height + 1), SCOPE, Arc::new(net.anchors.clone()));
    let c = &net.chains[&AWAY];
    let tx = ledger::bridge_receive(&net.keys[5], SCOPE, AWAY, 0, m, proof);
    let out = execute_txs(&c.ledger.at(env.clone()), SCOPE, &c.state, &[tx]);
    assert!(out.receipts[0].is_success());
    let w = wrapped();
    let mut allowed_counters = vec![
        ledger::nonce_key(&net.keys[5].public()),
        ledger::balance_key(&m.recipient, w),
        ledger::minted_key(w),
        ledger::bridge_in_key(HOME, w),
        ledger::inflow_key(m.origin, env.height.0 / BridgeSpec::default().window_heights),
    ];
    allowed_counters.sort();
    let mut got: Vec<_> = out.changes.counters.iter().map(|(k, _)| *k).collect();
    got.sort();
    assert_eq!(got, allowed_counters);
    let data: Vec<_> = out.changes.data.iter().map(|(k, _)| *k).collect();
    let mut want = vec![ledger::inbound_key(HOME, 0), ledger::asset_key(w)];
    want.sort();
    assert_eq!(data, want);
    // The pause switch answers to the guardian's own transaction only.
    assert_eq!(
        net.run(AWAY, &[ledger::bridge_pause(&net.keys[5].clone(), SCOPE, AWAY, 0, true)])[0],
        failed(LedgerFailure::NotGuardian)
    );
}

#[test]
fn b6_bnb_forged_state_proofs_are_refused() {
    let mut net = Net::new(BridgeSpec::default());
    net.lock(HOME, 0, AssetId::NATIVE, 40, AWAY, 100);
    net.lock(HOME, 0, AssetId::NATIVE, 50, AWAY, 100);
    let m0 = net.outbox(HOME, AWAY, 0);
    let m1 = net.outbox(HOME, AWAY, 1);
    let i = net.finalize(HOME);
    let good = net.prove(HOME, i, &net.okey(HOME, AWAY, 0));
    // A valid proof of another key (message 1's entry) does not prove message 0, and
    // message 0's proof does not prove message 1.
    let other = net.prove(HOME, i, &net.okey(HOME, AWAY, 1));
    assert_eq!(net.receive(m0, other.clone()), failed(LedgerFailure::BridgeProofInvalid));
    assert_eq!(net.receive(m1, good.clone()), failed(LedgerFailure::BridgeProofInvalid));
    // A proof of a non-bridge key with the same value bytes is not the outbox entry.
    let balance_key_proof = net.prove(HOME, i, &ledger::asset_key(AssetId::NATIVE));
    assert_eq!(net.receive(m0, balance_key_proof), failed(LedgerFailure::BridgeProofInvalid));
    // Every truncation and every flipped byte of the state proof is refused.
    let root_before = net.root(AWAY);
    for cut in [9, good.len() / 2, good.len() - 1] {
        assert_ne!(net.receive(m0, good[..cut].to_vec()), Status::Success, "cut {cut}");
    }
    for at in (8..good.len()).step_by(7) {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        assert_ne!(net.receive(m0, bad), Status::Success, "flip at {at}");
    }
    // Appending bytes is refused too (no extra fields).
    let mut longer = good.clone();
    longer.push(0);
    assert_ne!(net.receive(m0, longer), Status::Success);
    // Nothing was credited by any of them; only fees and nonces moved.
    assert_eq!(net.bal(AWAY, 1, wrapped()), 0);
    assert_ne!(net.root(AWAY), root_before, "the relayer's nonce advanced");
    assert_eq!(net.receive(m0, good), Status::Success);
    assert_eq!(net.bal(AWAY, 1, wrapped()), 40);
}

#[test]
fn b7_omni_replay_on_another_network_chain_or_twice_is_refused() {
    let mut net = Net::new(BridgeSpec::default());
    net.lock(HOME, 0, AssetId::NATIVE, 40, AWAY, 100);
    let m = net.outbox(HOME, AWAY, 0);
    let i = net.finalize(HOME);
    let p = net.prove(HOME, i, &net.okey(HOME, AWAY, 0));
    // Another network's (or a fork's) message: refused before any proof is read.
    let fork = BridgeMessage { network: Digest([8; 32]), ..m };
    assert_eq!(net.receive(fork, p.clone()), failed(LedgerFailure::WrongChannel));
    // The same message submitted to a chain it is not for.
    let n = net.nonce(ChainId(3), 5);
    let s = net.run(ChainId(3), &[ledger::bridge_receive(&net.keys[5].clone(), SCOPE, ChainId(3), n, m, p.clone())]);
    assert_eq!(s[0], failed(LedgerFailure::WrongChannel));
    // Delivered once; a replay of the very same transaction bytes is a used nonce, a
    // fresh transaction with the same message is a duplicate.
    assert_eq!(net.receive(m, p.clone()), Status::Success);
    assert_eq!(net.receive(m, p), failed(LedgerFailure::AlreadyReceived));
    assert_eq!(net.bal(AWAY, 1, wrapped()), 40);
}

#[test]
fn b8_timeout_and_delivery_race_has_exactly_one_outcome() {
    let mut net = Net::new(BridgeSpec::default());
    // Message 0 times out; message 1 is delivered.
    net.lock(HOME, 0, AssetId::NATIVE, 40, AWAY, 5);
    net.lock(HOME, 0, AssetId::NATIVE, 30, AWAY, 1_000);
    let (m0, m1) = (net.outbox(HOME, AWAY, 0), net.outbox(HOME, AWAY, 1));
    let after_lock = net.bal(HOME, 0, AssetId::NATIVE);
    assert_eq!(net.relay(HOME, AWAY, 1), Status::Success);
    net.idle(10);
    // Delivered after its timeout height: only a timeout receipt, no credit.
    assert_eq!(net.relay(HOME, AWAY, 0), Status::Success);
    assert_eq!(net.bal(AWAY, 1, wrapped()), 30);
    let key0 = ledger::inbound_key(HOME, 0);
    assert_eq!(net.chains[&AWAY].state.data(&key0).unwrap()[0], ReceiptKind::TimedOut.as_u8());
    // A second receive of either is a duplicate.
    let i = net.finalize(HOME);
    let p0 = net.prove(HOME, i, &net.okey(HOME, AWAY, 0));
    assert_eq!(net.receive(m0, p0), failed(LedgerFailure::AlreadyReceived));
    // Refund against the destination's finalized timeout receipt: once.
    let j = net.finalize(AWAY);
    let r0 = net.prove(AWAY, j, &key0);
    assert_eq!(net.refund(m0, r0.clone()), Status::Success);
    assert_eq!(net.bal(HOME, 0, AssetId::NATIVE), after_lock + 40);
    assert_eq!(net.refund(m0, r0), failed(LedgerFailure::AlreadyRefunded));
    // The delivered message cannot be refunded: its receipt says delivered.
    let r1 = net.prove(AWAY, j, &ledger::inbound_key(HOME, 1));
    assert_eq!(net.refund(m1, r1), failed(LedgerFailure::BridgeProofInvalid));
    // A refund of a message this chain never sent (forged amount) is refused.
    let mut net2 = Net::new(BridgeSpec::default());
    net2.lock(HOME, 0, AssetId::NATIVE, 40, AWAY, 2);
    net2.idle(5);
    assert_eq!(net2.relay(HOME, AWAY, 0), Status::Success);
    let m = net2.outbox(HOME, AWAY, 0);
    let j = net2.finalize(AWAY);
    let r = net2.prove(AWAY, j, &ledger::inbound_key(HOME, 0));
    assert_eq!(net2.refund(BridgeMessage { amount: 400, ..m }, r.clone()), failed(LedgerFailure::BridgeProofInvalid));
    // Nor can it be refunded before the destination's receipt is final.
    let mut net3 = Net::new(BridgeSpec::default());
    net3.lock(HOME, 0, AssetId::NATIVE, 40, AWAY, 2);
    let m = net3.outbox(HOME, AWAY, 0);
    assert_eq!(net3.refund(m, r), failed(LedgerFailure::AnchorUnknown));
}

#[test]
fn b10_unordered_channel_accepts_any_order_once() {
    let mut net = Net::new(BridgeSpec::default());
    for a in [10, 20, 30] {
        net.lock(HOME, 0, AssetId::NATIVE, a, AWAY, 100);
    }
    assert_eq!(net.relay(HOME, AWAY, 2), Status::Success);
    assert_eq!(net.relay(HOME, AWAY, 0), Status::Success);
    assert_eq!(net.relay(HOME, AWAY, 2), failed(LedgerFailure::AlreadyReceived));
    assert_eq!(net.relay(HOME, AWAY, 1), Status::Success);
    assert_eq!(net.bal(AWAY, 1, wrapped()), 60);
}

#[test]
fn b13_rate_limit_and_pause() {
    let guardian = Keypair::for_testing(4);
    let spec =
        BridgeSpec { inflow_limit: 100, window_heights: 50, guardian: guardian.public(), ..BridgeSpec::default() };
    let mut net = Net::new(spec);
    net.lock(HOME, 0, AssetId::NATIVE, 60, AWAY, 1_000);
    net.lock(HOME, 0, AssetId::NATIVE, 60, AWAY, 1_000);
    assert_eq!(net.relay(HOME, AWAY, 0), Status::Success);
    // Over the window's limit: fails, nothing lost, retried in the next window.
    assert_eq!(net.relay(HOME, AWAY, 1), failed(LedgerFailure::RateLimited));
    net.idle(50);
    assert_eq!(net.relay(HOME, AWAY, 1), Status::Success);
    assert_eq!(net.bal(AWAY, 1, wrapped()), 120);
    // Paused by the guardian: locks, receives and refunds all stop; resumed, they work.
    let g = 4u8;
    let n = net.nonce(HOME, g);
    assert_eq!(net.run(HOME, &[ledger::bridge_pause(&guardian, SCOPE, HOME, n, true)])[0], Status::Success);
    assert_eq!(net.lock(HOME, 0, AssetId::NATIVE, 5, AWAY, 100), failed(LedgerFailure::BridgePaused));
    let n = net.nonce(AWAY, g);
    assert_eq!(net.run(AWAY, &[ledger::bridge_pause(&guardian, SCOPE, AWAY, n, true)])[0], Status::Success);
    net.lock(AWAY, 1, wrapped(), 5, HOME, 100);
    assert_eq!(net.lock(AWAY, 1, wrapped(), 5, HOME, 100), failed(LedgerFailure::BridgePaused));
    let n = net.nonce(HOME, g);
    assert_eq!(net.run(HOME, &[ledger::bridge_pause(&guardian, SCOPE, HOME, n, false)])[0], Status::Success);
    assert_eq!(net.lock(HOME, 0, AssetId::NATIVE, 5, AWAY, 100), Status::Success);
    // The chain still paused refuses the receive.
    assert_eq!(net.relay(HOME, AWAY, 2), failed(LedgerFailure::BridgePaused));
    // A bridge not enabled in the genesis refuses every bridge call.
    let mut off = Net::new(BridgeSpec::default());
    for c in off.chains.values_mut() {
        let mut config = c.ledger.config().clone();
        config.bridge.enabled = false;
        c.ledger = NativeLedger::new(config);
    }
    assert_eq!(off.lock(HOME, 0, AssetId::NATIVE, 5, AWAY, 100), failed(LedgerFailure::BridgeDisabled));
}

/// Governance's bridge limit from height `from` on: 200 per window (the genesis says 100).
struct RaisedFrom {
    from: u64,
}

impl lamina_interfaces::ParamsView for RaisedFrom {
    fn value(&self, param: lamina_interfaces::GovernedParam, height: Height) -> Option<u64> {
        use lamina_interfaces::GovernedParam as P;
        match param {
            _ if height.0 < self.from => None,
            P::BridgeInflowLimit => Some(200),
            P::Fee(_) | P::ChallengeWindow | P::BridgeWindowHeights => None,
        }
    }
}

/// Governance's bridge window of `w` heights from height `from` on (the genesis says
/// 10,000).
struct WindowFrom {
    from: u64,
    w: u64,
}

impl lamina_interfaces::ParamsView for WindowFrom {
    fn value(&self, param: lamina_interfaces::GovernedParam, height: Height) -> Option<u64> {
        (param == lamina_interfaces::GovernedParam::BridgeWindowHeights && height.0 >= self.from).then_some(self.w)
    }

    fn since(&self, param: lamina_interfaces::GovernedParam, height: Height) -> Option<Height> {
        self.value(param, height).map(|_| Height(self.from))
    }
}

#[test]
fn a_window_length_set_by_vote_starts_its_windows_at_the_change() {
    let spec = BridgeSpec { inflow_limit: 100, window_heights: 10_000, ..BridgeSpec::default() };
    let mut net = Net::new(spec);
    // From height 1,025 on, windows of 50 heights: [1025, 1075), [1075, 1125), ...
    let (from, w) = (1_025, 50);
    for c in net.chains.values_mut() {
        c.ledger = c.ledger.clone().with_params(Arc::new(WindowFrom { from, w }));
    }
    for _ in 0..3 {
        net.lock(HOME, 0, AssetId::NATIVE, 60, AWAY, 10_000);
    }
    // The genesis window [0, 10000) takes 100: the second receive is refused.
    assert_eq!(net.relay(HOME, AWAY, 0), Status::Success);
    assert_eq!(net.relay(HOME, AWAY, 1), failed(LedgerFailure::RateLimited));
    // The first window of the new length starts at the change, with nothing used (a
    // relay finalizes at one height and receives at the next).
    net.idle(from - 2 - net.height);
    assert_eq!(net.relay(HOME, AWAY, 1), Status::Success);
    assert_eq!(net.height, from);
    assert_eq!(net.relay(HOME, AWAY, 2), failed(LedgerFailure::RateLimited));
    // Its last height is still that window (aligned to the change, not to 50)...
    net.idle(from + w - 3 - net.height);
    assert_eq!(net.relay(HOME, AWAY, 2), failed(LedgerFailure::RateLimited));
    assert_eq!(net.height, from + w - 1);
    // ...and the next one starts fresh.
    assert_eq!(net.relay(HOME, AWAY, 2), Status::Success);
    assert_eq!(net.bal(AWAY, 1, wrapped()), 180);
}

#[test]
fn the_rate_limit_is_the_one_governance_set_for_the_height() {
    let spec = BridgeSpec { inflow_limit: 100, window_heights: 10_000, ..BridgeSpec::default() };
    let mut net = Net::new(spec);
    let from = 1_000;
    for c in net.chains.values_mut() {
        c.ledger = c.ledger.clone().with_params(Arc::new(RaisedFrom { from }));
    }
    for _ in 0..3 {
        net.lock(HOME, 0, AssetId::NATIVE, 60, AWAY, 10_000);
    }
    // Before the change: the genesis limit, 100 per window.
    assert_eq!(net.relay(HOME, AWAY, 0), Status::Success);
    assert_eq!(net.relay(HOME, AWAY, 1), failed(LedgerFailure::RateLimited));
    // From the change on, in the same window: 200, so the two others fit.
    net.idle(from - net.height);
    assert_eq!(net.relay(HOME, AWAY, 1), Status::Success);
    assert_eq!(net.relay(HOME, AWAY, 2), Status::Success);
    assert_eq!(net.bal(AWAY, 1, wrapped()), 180);
    check_conservation(&net);
}

/// The supply invariant across the two chains, from state alone (see
/// `ledger::bridge_out_key`): escrow and wrapped supply match the bridge counters, and
/// nothing is delivered or refunded that was not sent.
fn check_conservation(net: &Net) {
    let (h, a) = (HOME, AssetId::NATIVE);
    let w = wrapped();
    let c = |chain, k: &lamina_execution_core::CounterKey| net.counter(chain, k);
    let (out_h, in_h, ref_h) = (
        c(h, &ledger::bridge_out_key(AWAY, a)),
        c(h, &ledger::bridge_in_key(AWAY, a)),
        c(h, &ledger::bridge_refund_key(AWAY, a)),
    );
    let (out_a, in_a, ref_a) = (
        c(AWAY, &ledger::bridge_out_key(h, w)),
        c(AWAY, &ledger::bridge_in_key(h, w)),
        c(AWAY, &ledger::bridge_refund_key(h, w)),
    );
    let escrow = c(h, &ledger::escrow_key(AWAY, a));
    let supply = c(AWAY, &ledger::minted_key(w)) - c(AWAY, &ledger::burned_key(w));
    assert_eq!(escrow, out_h - in_h - ref_h, "home escrow identity");
    assert_eq!(supply, in_a + ref_a - out_a, "wrapped supply identity");
    assert!(in_a + ref_h <= out_h, "delivered + refunded <= sent (home → away)");
    assert!(in_h + ref_a <= out_a, "delivered + refunded <= sent (away → home)");
    assert!(supply <= escrow, "minted <= escrowed");
}

#[derive(Clone, Debug)]
enum Op {
    Lock(u64, u64),
    Return(u64, u64),
    RelayOut(u8),
    RelayBack(u8),
    Idle(u8),
    Refund(bool, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1..200u64, 1..20u64).prop_map(|(a, t)| Op::Lock(a, t)),
        (1..100u64, 1..20u64).prop_map(|(a, t)| Op::Return(a, t)),
        any::<u8>().prop_map(Op::RelayOut),
        any::<u8>().prop_map(Op::RelayBack),
        (1..10u8).prop_map(Op::Idle),
        (any::<bool>(), any::<u8>()).prop_map(|(b, s)| Op::Refund(b, s)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// B12: random lock / receive / return / timeout / refund sequences never break
    /// conservation, and never deliver or refund a message twice.
    #[test]
    fn b12_supply_is_conserved_under_random_sequences(ops in proptest::collection::vec(op(), 1..40)) {
        let mut net = Net::new(BridgeSpec::default());
        for op in ops {
            match op {
                Op::Lock(a, t) => { net.lock(HOME, 0, AssetId::NATIVE, a, AWAY, t); }
                Op::Return(a, t) => { net.lock(AWAY, 1, wrapped(), a, HOME, t); }
                Op::RelayOut(s) | Op::RelayBack(s) => {
                    let (src, dest) = if matches!(op, Op::RelayOut(_)) { (HOME, AWAY) } else { (AWAY, HOME) };
                    let n = net.counter(src, &ledger::sequence_key(dest)) as u64;
                    if n > 0 {
                        let before = net.chains[&dest].state.data(&ledger::inbound_key(src, u64::from(s) % n));
                        let st = net.relay(src, dest, u64::from(s) % n);
                        prop_assert!(before.is_none() || st == failed(LedgerFailure::AlreadyReceived));
                    }
                }
                Op::Idle(k) => net.idle(u64::from(k)),
                Op::Refund(back, s) => {
                    let (src, dest) = if back { (AWAY, HOME) } else { (HOME, AWAY) };
                    let n = net.counter(src, &ledger::sequence_key(dest)) as u64;
                    if n > 0 {
                        let seq = u64::from(s) % n;
                        let key = ledger::inbound_key(src, seq);
                        if net.chains[&dest].state.data(&key).is_some() {
                            let m = net.outbox(src, dest, seq);
                            let j = net.finalize(dest);
                            let p = net.prove(dest, j, &key);
                            let _ = net.refund(m, p);
                        }
                    }
                }
            }
            check_conservation(&net);
        }
    }
}

#[test]
fn b1_ronin_a_forged_anchor_mints_at_most_the_rate_limit() {
    // Suppose the worst: settlement's registry itself holds a forged root (every
    // challenger asleep for a whole window), committing to an outbox the source never
    // wrote. Each forged message verifies; the inflow limit still caps the loss per
    // window, and the audit (`lamina_bridge_core::audit`) flags the credit as
    // delivered > sent.
    let spec = BridgeSpec { inflow_limit: 250, window_heights: 1_000, ..BridgeSpec::default() };
    let mut net = Net::new(spec);
    // A forged source state with ten 100-unit messages to AWAY.
    let mut forged = Net::new(BridgeSpec::default());
    for _ in 0..10 {
        assert_eq!(forged.lock(HOME, 0, AssetId::NATIVE, 100, AWAY, 1_000), Status::Success);
    }
    let index = forged.finalize(HOME);
    let root = forged.root(HOME);
    net.anchors.push(FinalizedRoot {
        chain: HOME,
        index,
        to: Height(1),
        state_root: root,
        finalized_at: Height(1),
        usable_until: None,
    });
    net.idle(2);
    let mut credited = 0u128;
    for seq in 0..10 {
        let m = forged.outbox(HOME, AWAY, seq);
        let p = forged.prove(HOME, index, &forged.okey(HOME, AWAY, seq));
        if net.receive(m, p) == Status::Success {
            credited += 100;
        }
    }
    assert_eq!(credited, 200, "two messages fit the 250 limit, the third would exceed it");
    assert_eq!(net.bal(AWAY, 1, wrapped()), 200);
}

#[test]
fn oversize_and_malformed_payloads_are_rejected_without_effect() {
    let mut net = Net::new(BridgeSpec::default());
    net.lock(HOME, 0, AssetId::NATIVE, 40, AWAY, 100);
    let m = net.outbox(HOME, AWAY, 0);
    let root = net.root(AWAY);
    let big = vec![0u8; ledger::MAX_BRIDGE_PROOF + 1];
    let k = net.keys[4].clone();
    let s = net.run(AWAY, &[ledger::bridge_receive(&k, SCOPE, AWAY, 0, m, big)]);
    assert_eq!(s[0], Status::Rejected(LedgerFailure::Malformed));
    // A payload cut inside the message.
    let mut payload = ledger::Call::BridgeReceive { message: m, proof: vec![0; 16] }.encode();
    payload.truncate(40);
    let s = net.run(AWAY, &[Transaction::new_signed(&k, SCOPE, AWAY, 0, payload)]);
    assert_eq!(s[0], Status::Rejected(LedgerFailure::Malformed));
    assert_eq!(net.root(AWAY), root, "rejections change nothing");
}

#[test]
fn a_wrapped_asset_leaves_only_by_going_home() {
    let mut net = Net::new(BridgeSpec::default());
    net.lock(HOME, 0, AssetId::NATIVE, 40, AWAY, 100);
    assert_eq!(net.relay(HOME, AWAY, 0), Status::Success);
    let k = net.keys[1].clone();
    let n = net.nonce(AWAY, 1);
    let s = net.run(AWAY, &[ledger::burn(&k, SCOPE, AWAY, n, wrapped(), 10)]);
    assert_eq!(s[0], failed(LedgerFailure::WrappedBurn));
    assert_eq!(net.bal(AWAY, 1, wrapped()), 40);
}
