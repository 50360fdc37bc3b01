//! Deterministic simulation of the real consensus core.
//!
//! One thread, simulated time, one seeded RNG: every run is a pure function of its
//! [`Scenario`], so a failing seed replays exactly. The harness plays the driver's part
//! (it performs [`Action`]s in order, with `Persist` durable before later sends), and
//! models the network (delay, reordering, drops, duplication, partitions), crashes
//! (including a crash in the middle of an action list: after a `Persist`, before the
//! sends) and restarts from the WAL and the ordered log.
//!
//! Checkers: agreement, validity, honest non-equivocation, liveness after heal.
#![allow(dead_code, clippy::unwrap_used, clippy::large_enum_variant)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lamina_consensus_core::{
    Action, Config, Core, FaultKind, Mempool, MempoolLimits, Message, Proposal, Recovered, Signer, Verifier, Vote,
    VoteKind, WalRecord,
};
use lamina_interfaces::{Blob, SubmitError, SubmitOutcome};
use lamina_primitives::sig::SignedDigest;
use lamina_primitives::{
    AvailabilityCertificate, Batch, ChainId, Committee, DataCommitment, Digest, FinalizedBlock, Keypair, Namespace,
    PublicKey, QuorumCertificate, Signature, Transaction, TxId, TxScope, View,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ------------------------------------------------------------------ crypto memo

type CheckKey = (PublicKey, Digest, [u8; 64]);

/// Real ed25519 signing and ZIP-215 verification, memoized and shared by all simulated
/// nodes: each distinct signature is computed and checked for real once.
#[derive(Default)]
pub struct Memo {
    signed: Mutex<HashMap<(PublicKey, Digest), Signature>>,
    checked: Mutex<HashMap<CheckKey, bool>>,
    keys: Mutex<HashMap<PublicKey, Option<lamina_primitives::VerifyingKey>>>,
}

impl Memo {
    /// (distinct signatures made, distinct signatures checked)
    pub fn sizes(&self) -> (usize, usize) {
        (self.signed.lock().unwrap().len(), self.checked.lock().unwrap().len())
    }
}

pub struct MemoSigner {
    pub key: Keypair,
    pub memo: Arc<Memo>,
}

impl Signer for MemoSigner {
    fn public_key(&self) -> PublicKey {
        self.key.public()
    }
    fn sign(&self, digest: &Digest) -> Signature {
        let k = (self.key.public(), *digest);
        if let Some(s) = self.memo.signed.lock().unwrap().get(&k) {
            return *s;
        }
        let s = self.key.sign(digest);
        self.memo.signed.lock().unwrap().insert(k, s);
        s
    }
}

pub struct MemoVerifier(pub Arc<Memo>);

impl Verifier for MemoVerifier {
    fn verify_each(&self, items: &[SignedDigest]) -> Vec<bool> {
        let mut out = vec![false; items.len()];
        let mut unknown = Vec::new();
        {
            let checked = self.0.checked.lock().unwrap();
            for (i, it) in items.iter().enumerate() {
                match checked.get(&(it.public_key, it.message, it.signature.0)) {
                    Some(ok) => out[i] = *ok,
                    None => unknown.push(i),
                }
            }
        }
        if !unknown.is_empty() {
            let res: Vec<bool> = unknown
                .iter()
                .map(|&i| {
                    let it = &items[i];
                    let vk = *self
                        .0
                        .keys
                        .lock()
                        .unwrap()
                        .entry(it.public_key)
                        .or_insert_with(|| lamina_primitives::VerifyingKey::new(&it.public_key).ok());
                    vk.is_some_and(|k| k.verify(&it.message, &it.signature).is_ok())
                })
                .collect();
            let mut checked = self.0.checked.lock().unwrap();
            for (&i, ok) in unknown.iter().zip(res) {
                out[i] = ok;
                checked.insert((items[i].public_key, items[i].message, items[i].signature.0), ok);
            }
        }
        out
    }
}

// ------------------------------------------------------------------ fixtures

pub const DA_NODES: u64 = 4;
pub const DA_THRESHOLD: usize = 3;

fn keys() -> &'static (Vec<Keypair>, Vec<Keypair>) {
    static KEYS: std::sync::OnceLock<(Vec<Keypair>, Vec<Keypair>)> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        ((0..16).map(Keypair::for_testing).collect(), (0..DA_NODES).map(|i| Keypair::for_testing(10_000 + i)).collect())
    })
}

pub fn validator_key(i: usize) -> Keypair {
    keys().0[i].clone()
}

pub fn da_key(i: u64) -> Keypair {
    keys().1[i as usize].clone()
}

pub fn committee(n: usize) -> Committee {
    Committee::new((0..n).map(|i| keys().0[i].public()).collect()).unwrap()
}

pub fn da_committee() -> Committee {
    Committee::new(keys().1.iter().map(|k| k.public()).collect()).unwrap()
}

pub fn network_id() -> Digest {
    Digest([0x4c; 32])
}

/// Core configuration used in simulation: short timeouts in simulated time.
pub fn sim_config(n: usize) -> Config {
    let mut c = Config::new(network_id(), committee(n), da_committee(), DA_THRESHOLD);
    c.leader_timeout = Duration::from_millis(200);
    c.notarization_timeout = Duration::from_millis(400);
    c.retry_interval = Duration::from_millis(200);
    c.empty_block_delay = Duration::from_millis(40);
    c.sync_max_blocks = 16;
    c.max_batches_per_block = 8;
    c
}

/// Seeds `base..base + count`, ten times as many with `LAMINA_LONG_TESTS=1`.
pub fn seeds(base: u64, count: u64) -> impl Iterator<Item = u64> {
    let long = std::env::var("LAMINA_LONG_TESTS").is_ok_and(|v| v == "1");
    let count = if long { count * 10 } else { count };
    (0..count).map(move |i| base + i)
}

/// A valid availability certificate for a synthetic square (real DA signatures).
pub fn make_cert(memo: &Arc<Memo>, tag: u64) -> AvailabilityCertificate {
    let commitment = DataCommitment {
        data_root: lamina_primitives::domains::BATCH.hash(&tag.to_le_bytes()),
        square_width: 4,
        codec: 0,
        namespaces: vec![Namespace::from(lamina_primitives::ChainId(1 + tag % 3))],
        blob_bytes: 512 * (1 + tag % 7),
    };
    certify(memo, commitment)
}

/// `commitment` signed by the DA committee at its threshold (real, memoized signatures).
fn certify(memo: &Arc<Memo>, commitment: DataCommitment) -> AvailabilityCertificate {
    let d = commitment.attestation_digest();
    let votes: Vec<(usize, Signature)> = (0..DA_THRESHOLD)
        .map(|i| {
            let s = MemoSigner { key: da_key(i as u64), memo: memo.clone() };
            (i, s.sign(&d))
        })
        .collect();
    AvailabilityCertificate { commitment, signatures: QuorumCertificate::from_votes(d, DA_NODES as usize, &votes) }
}

/// A valid availability certificate for real blobs (the simulation's DA: the shared
/// fake DA's commitment, which hashes the blobs, signed for real by the DA committee).
pub fn make_cert_for(memo: &Arc<Memo>, blobs: &[Blob]) -> AvailabilityCertificate {
    certify(memo, lamina_test_utils::FakeDa::commitment(&mut blobs.to_vec()))
}

/// An availability certificate with a forged (invalid) signature.
pub fn make_bad_cert(memo: &Arc<Memo>, tag: u64) -> AvailabilityCertificate {
    let mut c = make_cert(memo, tag);
    c.signatures.signatures[0].0[5] ^= 0x40;
    c
}

// ------------------------------------------------------------------ scenario

/// A network partition: nodes in different groups cannot talk during `[start, end)`.
#[derive(Clone, Debug)]
pub struct Partition {
    pub start: Duration,
    pub end: Duration,
    /// Group id per committee index.
    pub group: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct Crash {
    pub node: usize,
    pub at: Duration,
    pub restart_after: Duration,
    /// Crash in the middle of the next action list (after some actions, before others).
    pub torn: bool,
}

/// A Byzantine behaviour for one validator (it runs the honest core and mutates what
/// it sends, with its real key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// As leader, sends two different proposals to two halves of the committee.
    EquivocatingLeader,
    /// Sends conflicting notarize and finalize votes (and nullify + finalize).
    ConflictingVotes,
    /// Corrupts the signatures of everything it signs.
    InvalidSignatures,
    /// Replays old messages it received or sent, and stale votes under other signers.
    Replay,
    /// Never votes (proposes as leader).
    WithholdVotes,
    /// Sends floods of junk: duplicates, far-future votes, bad certificates, sync spam.
    Flood,
    /// As leader, proposes blocks with an invalid availability certificate.
    InvalidAvailability,
    /// Silent: sends nothing at all.
    Silent,
}

impl Behaviour {
    /// Every behaviour of the catalogue.
    pub const ALL: [Behaviour; 8] = [
        Behaviour::EquivocatingLeader,
        Behaviour::ConflictingVotes,
        Behaviour::InvalidSignatures,
        Behaviour::Replay,
        Behaviour::WithholdVotes,
        Behaviour::Flood,
        Behaviour::InvalidAvailability,
        Behaviour::Silent,
    ];
}

#[derive(Clone, Debug)]
pub struct NetModel {
    pub delay_min: Duration,
    pub delay_max: Duration,
    pub drop: f64,
    pub duplicate: f64,
}

impl NetModel {
    pub fn good() -> Self {
        NetModel {
            delay_min: Duration::from_millis(1),
            delay_max: Duration::from_millis(10),
            drop: 0.0,
            duplicate: 0.0,
        }
    }
}

/// Twins routing: the partition (group per node instance) in force for a message sent
/// while the sender is in view `v` is the partition of round `v` (see
/// [`Sim::run_until_round`]); deliveries take a fixed 10 ms.
#[derive(Clone, Debug)]
pub struct TwinsRouting;

/// Client transactions through every validator's mempool (the consensus core's
/// [`Mempool`] state machine, driven as the service drives it): each sender sends its
/// nonces in order, to one validator (its home, as the intake client routes), and the
/// client-to-validator delay lets consecutive transactions overtake each other. A
/// validator that is down refuses, and the client retries. Batches are cut by the
/// mempool's rules, "dispersed" to the simulation's DA (a map from attestation to
/// blobs), certified, and submitted to the core; ordered blocks release them. Intake is
/// durable: what a validator acknowledged and had not yet certified is restored when it
/// restarts. [`Sim::check_nonce_order`] then executes the ordered log's transactions as
/// a ledger does (per sender, nonces in order) and counts what it would reject.
#[derive(Clone, Debug)]
pub struct TxLoad {
    pub senders: u64,
    pub per_sender: u64,
    pub chains: u64,
    /// A sender sends its next nonce this long after the previous one.
    pub spacing: Duration,
    /// Client-to-validator delay, uniform in `[0, delay_max)`.
    pub delay_max: Duration,
    /// A refused transaction is sent again after this long.
    pub retry: Duration,
    /// Intake's checks (signatures, which queue on a loaded validator): a transaction is
    /// inserted uniform in `[0, check_max)` after it arrives, marked
    /// [`Mempool::checking`] meanwhile. Zero: inserted on arrival.
    pub check_max: Duration,
    pub limits: MempoolLimits,
    pub batch_bytes: usize,
    pub batch_delay: Duration,
}

/// What executing the ordered log's transactions found ([`Sim::check_nonce_order`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NonceReport {
    /// Transactions executed (first copy, in nonce order).
    pub executed: u64,
    /// Later copies of an executed transaction (harmless: the ledger refuses a used nonce).
    pub duplicates: u64,
    /// Transactions a ledger would reject for a skipped nonce: acknowledged by a
    /// validator, then ordered before a lower nonce of the same sender.
    pub out_of_order: u64,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    pub n: usize,
    pub faulty: BTreeMap<usize, Behaviour>,
    /// Committee indices that run twice (two instances with the same key).
    pub twins: Vec<usize>,
    pub net: NetModel,
    pub healed: NetModel,
    pub partitions: Vec<Partition>,
    pub crashes: Vec<Crash>,
    pub heal_at: Duration,
    pub end: Duration,
    /// Each honest validator submits a batch about this often until `heal_at`.
    pub batch_every: Option<Duration>,
    /// Liveness: every honest node finalizes a new block within this after `heal_at`.
    pub liveness_bound: Option<Duration>,
    pub twins_routing: Option<TwinsRouting>,
    /// With Twins routing: the network has healed, every message is delivered to
    /// everyone whatever its round (for liveness checks after the partitioned rounds).
    pub twins_heal: bool,
    /// Instances that receive one distinct certified batch at time 0 (so that twins
    /// propose different blocks).
    pub initial_batches: Vec<usize>,
    pub config: Config,
    /// Client transactions through the mempools instead of synthetic batches.
    pub txs: Option<TxLoad>,
}

impl Scenario {
    pub fn new(seed: u64, n: usize) -> Self {
        Scenario {
            seed,
            n,
            faulty: BTreeMap::new(),
            twins: Vec::new(),
            net: NetModel::good(),
            healed: NetModel::good(),
            partitions: Vec::new(),
            crashes: Vec::new(),
            heal_at: Duration::ZERO,
            end: Duration::from_secs(3),
            batch_every: Some(Duration::from_millis(60)),
            liveness_bound: Some(Duration::from_secs(4)),
            twins_routing: None,
            twins_heal: false,
            initial_batches: Vec::new(),
            config: sim_config(n),
            txs: None,
        }
    }

    /// Swarm-style random faults drawn from the seed: delay, drops, duplication,
    /// partitions, crash/restart (some torn) of up to f validators, then heal.
    pub fn random(seed: u64, n: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5eed);
        let mut s = Scenario::new(seed, n);
        let f = (n - 1) / 3;
        s.heal_at = Duration::from_millis(rng.random_range(1500..3000));
        s.end = s.heal_at + Duration::from_secs(3);
        s.liveness_bound = Some(Duration::from_secs(3));
        s.batch_every = Some(Duration::from_millis(150));
        s.net = NetModel {
            delay_min: Duration::from_millis(rng.random_range(0..5)),
            delay_max: Duration::from_millis(rng.random_range(5..120)),
            drop: if rng.random_bool(0.7) { rng.random_range(0.0..0.25) } else { 0.0 },
            duplicate: if rng.random_bool(0.5) { rng.random_range(0.0..0.3) } else { 0.0 },
        };
        let parts = rng.random_range(0..3);
        for _ in 0..parts {
            let start = Duration::from_millis(rng.random_range(0..s.heal_at.as_millis() as u64));
            let len = Duration::from_millis(rng.random_range(100..1500));
            let groups = rng.random_range(2..4u8);
            let group = (0..n).map(|_| rng.random_range(0..groups)).collect();
            s.partitions.push(Partition { start, end: (start + len).min(s.heal_at), group });
        }
        let crashes = rng.random_range(0..=f.min(2) + 1);
        let mut crashed = BTreeSet::new();
        for _ in 0..crashes {
            let node = rng.random_range(0..n);
            if crashed.len() >= f.max(1) && !crashed.contains(&node) {
                continue;
            }
            crashed.insert(node);
            let at = Duration::from_millis(rng.random_range(0..s.heal_at.as_millis() as u64));
            let restart_after = Duration::from_millis(rng.random_range(50..1500));
            s.crashes.push(Crash { node, at, restart_after, torn: rng.random_bool(0.5) });
        }
        // Byzantine validators mixed into the random faults (issue 12), drawn from their
        // own stream so every seed's network faults stay what they were. Crashed
        // validators count toward f too: at most f faulty identities in all.
        let mut brng = ChaCha8Rng::seed_from_u64(seed ^ 0xb42_b42b);
        if f > 0 && brng.random_bool(0.4) {
            let b = brng.random_range(1..=f);
            while s.faulty.len() < b {
                let node = brng.random_range(0..n);
                let behaviour = Behaviour::ALL[brng.random_range(0..Behaviour::ALL.len())];
                s.faulty.entry(node).or_insert(behaviour);
            }
            let faulty = s.faulty.clone();
            let mut crashed = BTreeSet::new();
            s.crashes.retain(|c| {
                if faulty.contains_key(&c.node) {
                    return false;
                }
                if crashed.contains(&c.node) || crashed.len() + b < f {
                    crashed.insert(c.node);
                    return true;
                }
                false
            });
        }
        s
    }
}

// ------------------------------------------------------------------ simulator

#[derive(Clone, Debug)]
enum Event {
    /// `round`: the sender's view when it sent (Twins routing).
    Deliver {
        to: usize,
        from_inst: usize,
        from: usize,
        msg: Message,
        round: u64,
    },
    Timer {
        inst: usize,
    },
    Crash {
        inst: usize,
        torn: bool,
    },
    Restart {
        inst: usize,
    },
    Submit {
        inst: usize,
    },
    /// A client's transaction reaches a validator's intake.
    Tx {
        inst: usize,
        tx: Transaction,
    },
    /// Intake's checks of a transaction end: it goes into the mempool. `restarts`: the
    /// instance's restart count when the checks began (a mempool restarted since never
    /// marked it).
    Checked {
        inst: usize,
        tx: Transaction,
        restarts: u32,
    },
}

/// What an honest identity signed, in send order, for the equivocation checker.
#[derive(Clone, Debug, Default)]
pub struct Signed {
    pub notarize: BTreeSet<Digest>,
    pub nullify: bool,
    pub finalize: BTreeSet<Digest>,
    /// A nullify vote sent after a finalize vote (forbidden).
    pub nullify_after_finalize: bool,
    /// Finalize votes sent after a nullify vote (allowed only for final blocks).
    pub finalize_after_nullify: BTreeSet<Digest>,
}

#[derive(Clone)]
pub struct Instance {
    pub id: usize,
    pub core: Option<Core>,
    pub wal: Vec<WalRecord>,
    /// Own certified batches not yet seen ordered (durable, as a driver keeps them).
    pub batches: Vec<AvailabilityCertificate>,
    pub log: Vec<FinalizedBlock>,
    pub finalized_at: Vec<Duration>,
    pub faults: Vec<(usize, FaultKind)>,
    pub behaviour: Option<Behaviour>,
    pub torn_pending: bool,
    pub restarts: u32,
    timer_at: Option<Duration>,
    /// Messages seen (for the replay behaviour).
    seen: Vec<Message>,
    sent: Vec<Message>,
    /// With [`Scenario::txs`]: the mempool (lost in a crash).
    pub mempool: Option<Mempool>,
    /// Acknowledged and not yet certified (the durable intake log): restored on restart.
    pub acked: Vec<Transaction>,
}

#[derive(Clone)]
pub struct Sim {
    pub scenario: Arc<Scenario>,
    pub now: Duration,
    rng: ChaCha8Rng,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    events: BTreeMap<u64, Event>,
    seq: u64,
    pub insts: Vec<Instance>,
    memo: Arc<Memo>,
    pub signed: BTreeMap<(usize, u64), Signed>,
    /// Every block seen in a proposal: digest -> (height, parent).
    pub headers: BTreeMap<Digest, (u64, Digest)>,
    /// Every block digest named by a finalization certificate anyone sent.
    pub certified_final: BTreeSet<Digest>,
    pub submitted: BTreeMap<Digest, Duration>,
    batch_tag: u64,
    pub events_processed: u64,
    pub messages_sent: u64,
    /// Twins: partitions (group per instance) chosen so far, one per round.
    pub twins_rounds: Vec<Vec<u8>>,
    /// The simulation's DA: each certified batch's blobs, by attestation digest.
    pub da: BTreeMap<Digest, Vec<Blob>>,
    /// Client transactions sent, and acknowledged (`Accepted`) by a validator.
    pub txs_sent: u64,
    pub txs_accepted: u64,
}

pub fn wall(now: Duration) -> u64 {
    1_700_000_000_000 + now.as_millis() as u64
}

impl Sim {
    pub fn new(scenario: Scenario, memo: Arc<Memo>) -> Self {
        let scenario = Arc::new(scenario);
        let mut insts = Vec::new();
        for id in 0..scenario.n {
            let copies = if scenario.twins.contains(&id) { 2 } else { 1 };
            for _ in 0..copies {
                insts.push(Instance {
                    id,
                    core: None,
                    wal: Vec::new(),
                    batches: Vec::new(),
                    log: Vec::new(),
                    finalized_at: Vec::new(),
                    faults: Vec::new(),
                    behaviour: scenario.faulty.get(&id).copied(),
                    torn_pending: false,
                    restarts: 0,
                    timer_at: None,
                    seen: Vec::new(),
                    sent: Vec::new(),
                    mempool: None,
                    acked: Vec::new(),
                });
            }
        }
        let mut sim = Sim {
            rng: ChaCha8Rng::seed_from_u64(scenario.seed),
            scenario,
            now: Duration::ZERO,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            insts,
            memo,
            signed: BTreeMap::new(),
            headers: BTreeMap::new(),
            certified_final: BTreeSet::new(),
            submitted: BTreeMap::new(),
            batch_tag: 0,
            events_processed: 0,
            messages_sent: 0,
            twins_rounds: Vec::new(),
            da: BTreeMap::new(),
            txs_sent: 0,
            txs_accepted: 0,
        };
        for i in 0..sim.insts.len() {
            sim.start(i);
        }
        let crashes = sim.scenario.crashes.clone();
        for c in crashes {
            for i in 0..sim.insts.len() {
                if sim.insts[i].id == c.node {
                    sim.schedule(c.at, Event::Crash { inst: i, torn: c.torn });
                    sim.schedule(c.at + c.restart_after, Event::Restart { inst: i });
                }
            }
        }
        if let Some(load) = sim.scenario.txs.clone() {
            for s in 0..load.senders {
                let key = Keypair::for_testing(10_000 + s);
                let chain = ChainId(1 + s % load.chains);
                // The home validator: the first instance of identity `s mod n`.
                let home = (0..sim.insts.len()).find(|&i| sim.insts[i].id == (s as usize) % sim.scenario.n).unwrap();
                let offset = Duration::from_millis(sim.rng.random_range(0..load.spacing.as_millis().max(1) as u64));
                for nonce in 0..load.per_sender {
                    let tx = Transaction::new_signed(&key, TxScope::ChainOnly, chain, nonce, vec![s as u8; 64]);
                    let delay =
                        Duration::from_millis(sim.rng.random_range(0..load.delay_max.as_millis().max(1) as u64));
                    let at = offset + load.spacing * nonce as u32 + delay;
                    sim.txs_sent += 1;
                    sim.schedule(at, Event::Tx { inst: home, tx });
                }
            }
        }
        for i in sim.scenario.initial_batches.clone() {
            sim.schedule(Duration::ZERO, Event::Submit { inst: i });
        }
        if let Some(every) = sim.scenario.batch_every {
            for i in 0..sim.insts.len() {
                if sim.insts[i].behaviour.is_none() {
                    let jitter = Duration::from_millis(sim.rng.random_range(0..every.as_millis().max(1) as u64));
                    sim.schedule(jitter, Event::Submit { inst: i });
                }
            }
        }
        sim
    }

    fn schedule(&mut self, at: Duration, ev: Event) {
        let s = self.seq;
        self.seq += 1;
        self.queue.push(Reverse((at, s)));
        self.events.insert(s, ev);
    }

    fn signer(&self, id: usize) -> Arc<dyn Signer> {
        Arc::new(MemoSigner { key: validator_key(id), memo: self.memo.clone() })
    }

    fn start(&mut self, i: usize) {
        let id = self.insts[i].id;
        let recovered = Recovered {
            finalized: {
                let log = &self.insts[i].log;
                let keep = self.scenario.config.dedup_window as usize;
                log[log.len().saturating_sub(keep)..].to_vec()
            },
            wal: self.insts[i].wal.clone(),
            batches: self.insts[i].batches.clone(),
        };
        let (core, actions) = Core::new(
            self.scenario.config.clone(),
            self.signer(id),
            Arc::new(MemoVerifier(self.memo.clone())),
            recovered,
            self.now,
            wall(self.now),
        )
        .expect("core starts from its own WAL");
        self.insts[i].core = Some(core);
        self.insts[i].timer_at = None;
        if let Some(load) = &self.scenario.txs
            && self.insts[i].mempool.is_none()
        {
            // A (re)start: a new mempool. Its certified batches not yet ordered (given
            // back to the core) hold their transactions and senders, as the service
            // restores them from the intake log; then what intake had acknowledged and
            // not yet certified is queued again, in acknowledgement order.
            let chains = (1..=load.chains).map(ChainId);
            let mut mp = Mempool::new(load.limits.clone(), chains);
            mp.recover_from(self.now);
            let pending = |a: &Digest| self.insts[i].core.as_ref().is_some_and(|c| c.is_pending(a));
            for cert in &self.insts[i].batches {
                let a = cert.commitment.attestation_digest();
                // Only those the core took back: it drops one whose bytes it finds
                // ordered already (the service settles that one as ordered; it also
                // queues again one the core refuses, which never happens here).
                if !pending(&a) {
                    continue;
                }
                let Some(blobs) = self.da.get(&a) else { continue };
                let txs = blobs
                    .iter()
                    .filter_map(|b| lamina_primitives::codec::decode::<Batch>(&b.data).ok())
                    .flat_map(|b| b.txs)
                    .collect();
                mp.in_flight_until_ordered(a, txs);
            }
            for tx in &self.insts[i].acked {
                let _ = mp.insert(tx.clone(), tx.id(), self.now);
            }
            self.insts[i].mempool = Some(mp);
        }
        self.perform(i, actions);
        self.reschedule_timer(i);
    }

    fn reschedule_timer(&mut self, i: usize) {
        let Some(core) = &self.insts[i].core else { return };
        let Some(d) = core.next_deadline() else { return };
        let d = d.max(self.now);
        if self.insts[i].timer_at.is_some_and(|t| t <= d && t >= self.now) {
            return;
        }
        self.insts[i].timer_at = Some(d);
        self.schedule(d, Event::Timer { inst: i });
    }

    /// Runs until the scenario's end (or no events are left).
    pub fn run(&mut self) {
        let end = self.scenario.end;
        self.run_until(end);
    }

    /// Heals a Twins run: from now on every message is delivered, whatever its round.
    pub fn heal_twins(&mut self) {
        Arc::make_mut(&mut self.scenario).twins_heal = true;
    }

    pub fn run_until(&mut self, end: Duration) {
        let _ = self.run_until_round(end, usize::MAX);
    }

    /// Runs until `end`. With Twins routing, a message sent in a round (view) beyond the
    /// partitions chosen so far pauses the run before it is delivered and returns that
    /// round, so the caller can choose its partition (or clone the run once per choice)
    /// and resume; rounds beyond `max_rounds` are dropped. Once the scenario heals
    /// ([`Scenario::twins_heal`]) every message is delivered.
    pub fn run_until_round(&mut self, end: Duration, max_rounds: usize) -> Option<usize> {
        while let Some(Reverse((t, s))) = self.queue.peek().copied() {
            if t > end {
                break;
            }
            if self.scenario.twins_routing.is_some()
                && !self.scenario.twins_heal
                && let Some(Event::Deliver { to, from_inst, round, .. }) = self.events.get(&s)
            {
                let r = *round as usize;
                if r > self.twins_rounds.len() {
                    if self.twins_rounds.len() < max_rounds {
                        return Some(self.twins_rounds.len() + 1);
                    }
                    self.queue.pop();
                    self.events.remove(&s);
                    continue;
                } else {
                    let part = &self.twins_rounds[r - 1];
                    if part[*from_inst] != part[*to] {
                        self.queue.pop();
                        self.events.remove(&s);
                        continue;
                    }
                }
            }
            self.queue.pop();
            let ev = self.events.remove(&s).expect("event stored");
            self.now = t;
            self.events_processed += 1;
            self.handle(ev);
            if self.scenario.twins_routing.is_some()
                && !self.scenario.twins_heal
                && self.twins_rounds.len() >= max_rounds
                && self.insts.iter().all(|i| i.core.as_ref().is_none_or(|c| c.view().0 > max_rounds as u64))
            {
                // Every message from now on belongs to a round past the scenario.
                return None;
            }
        }
        self.now = self.now.max(end);
        None
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Deliver { to, from, msg, .. } => {
                if self.insts[to].core.is_none() {
                    return;
                }
                if self.insts[to].behaviour == Some(Behaviour::Replay) && self.insts[to].seen.len() < 4096 {
                    self.insts[to].seen.push(msg.clone());
                }
                let core = self.insts[to].core.as_mut().unwrap();
                let actions = core.handle_message(self.now, from, msg);
                self.perform(to, actions);
                self.reschedule_timer(to);
            }
            Event::Timer { inst } => {
                if self.insts[inst].timer_at != Some(self.now) {
                    return;
                }
                self.insts[inst].timer_at = None;
                let Some(core) = self.insts[inst].core.as_mut() else { return };
                let actions = if core.next_deadline().is_some_and(|d| d <= self.now) {
                    core.handle_timeout(self.now)
                } else {
                    Vec::new()
                };
                self.perform(inst, actions);
                self.byzantine_tick(inst);
                self.reschedule_timer(inst);
            }
            Event::Crash { inst, torn } => {
                if self.insts[inst].core.is_none() {
                    return;
                }
                if torn {
                    self.insts[inst].torn_pending = true;
                } else {
                    self.insts[inst].core = None;
                    self.insts[inst].mempool = None;
                }
            }
            Event::Restart { inst } => {
                self.insts[inst].torn_pending = false;
                if self.insts[inst].core.is_none() {
                    self.insts[inst].restarts += 1;
                    self.start(inst);
                }
            }
            Event::Submit { inst } if self.scenario.txs.is_some() => self.cut_batch(inst),
            Event::Tx { inst, tx } => self.intake(inst, tx),
            Event::Checked { inst, tx, restarts } => {
                let marked = self.insts[inst].restarts == restarts;
                self.admit(inst, tx, marked)
            }
            Event::Submit { inst } => {
                let every = self.scenario.batch_every.unwrap_or(Duration::from_secs(1));
                if self.now < self.scenario.heal_at
                    || self.scenario.heal_at.is_zero() && self.now < self.scenario.end / 2
                {
                    let next = self.now
                        + every / 2
                        + Duration::from_millis(self.rng.random_range(0..every.as_millis() as u64));
                    self.schedule(next, Event::Submit { inst });
                }
                if self.insts[inst].core.is_none() {
                    return;
                }
                self.batch_tag += 1;
                let tag = self.scenario.seed.wrapping_mul(1_000_003).wrapping_add(self.batch_tag * 131 + inst as u64);
                let cert = make_cert(&self.memo, tag);
                let a = cert.commitment.attestation_digest();
                let core = self.insts[inst].core.as_mut().unwrap();
                match core.submit_batch(self.now, cert.clone()) {
                    Ok(actions) => {
                        self.submitted.insert(a, self.now);
                        self.insts[inst].batches.push(cert);
                        self.perform(inst, actions);
                    }
                    Err(e) => panic!("seed {}: local submit refused: {e}", self.scenario.seed),
                }
                self.reschedule_timer(inst);
            }
        }
    }

    /// A client's transaction at validator `inst`'s intake: the mempool's checks, then
    /// acknowledged (and durable) or refused; a refusal (down, busy) is retried.
    fn intake(&mut self, inst: usize, tx: Transaction) {
        let load = self.scenario.txs.clone().expect("transactions only with a TxLoad");
        if load.check_max.is_zero() {
            return self.admit(inst, tx, false);
        }
        if self.insts[inst].core.is_none() {
            return self.schedule(self.now + load.retry, Event::Tx { inst, tx });
        }
        let Some(mp) = self.insts[inst].mempool.as_mut() else {
            return self.schedule(self.now + load.retry, Event::Tx { inst, tx });
        };
        mp.checking(&[(tx.sender, tx.chain_id, tx.nonce)]);
        let check = Duration::from_millis(self.rng.random_range(0..load.check_max.as_millis().max(1) as u64));
        let restarts = self.insts[inst].restarts;
        self.schedule(self.now + check, Event::Checked { inst, tx, restarts });
    }

    /// A transaction that passed intake's checks goes into validator `inst`'s mempool
    /// (`checked`: this mempool marked it as being checked, so the mark is ended).
    fn admit(&mut self, inst: usize, tx: Transaction, checked: bool) {
        let load = self.scenario.txs.clone().expect("transactions only with a TxLoad");
        let retry = |sim: &mut Self, tx| sim.schedule(sim.now + load.retry, Event::Tx { inst, tx });
        if self.insts[inst].core.is_none() {
            return retry(self, tx);
        }
        let Some(mp) = self.insts[inst].mempool.as_mut() else { return retry(self, tx) };
        if checked {
            mp.checked(&[(tx.sender, tx.chain_id, tx.nonce)]);
        }
        let id =
            Mempool::precheck(&load.limits, mp.chains(), &tx).expect("the workload's transactions pass the checks");
        match mp.insert(tx.clone(), id, self.now) {
            Ok(SubmitOutcome::Accepted(_)) => {
                self.txs_accepted += 1;
                self.insts[inst].acked.push(tx);
            }
            Ok(_) => {}
            Err(SubmitError::Busy(_)) => retry(self, tx),
            Err(e) => panic!("seed {}: intake refused a valid transaction: {e}", self.scenario.seed),
        }
    }

    /// The batcher's tick at validator `inst`: release expired nonce gaps, cut a batch
    /// when the mempool is ready, disperse and certify it, and submit it to the core.
    fn cut_batch(&mut self, inst: usize) {
        let load = self.scenario.txs.clone().expect("cut_batch only with a TxLoad");
        if self.now + load.batch_delay < self.scenario.end {
            self.schedule(self.now + load.batch_delay / 2, Event::Submit { inst });
        }
        if self.insts[inst].core.is_none() {
            return;
        }
        let now = self.now;
        let Some(mp) = self.insts[inst].mempool.as_mut() else { return };
        mp.release_gaps(now);
        if !mp.ready(load.batch_bytes, load.batch_delay, now) {
            return;
        }
        let Some(cut) = mp.cut(load.batch_bytes) else { return };
        let cert = make_cert_for(&self.memo, &cut.blobs);
        let a = cert.commitment.attestation_digest();
        mp.certified(cut.id, a);
        let ids: BTreeSet<TxId> = mp.batch_ids(cut.id).into_iter().collect();
        // Certified: no longer in the intake log (the core keeps the certificate).
        self.insts[inst].acked.retain(|t| !ids.contains(&t.id()));
        self.da.insert(a, cut.blobs);
        let core = self.insts[inst].core.as_mut().unwrap();
        match core.submit_batch(self.now, cert.clone()) {
            Ok(actions) => {
                if !core.is_pending(&a)
                    && let Some(mp) = self.insts[inst].mempool.as_mut()
                {
                    // As the service's driver does: those bytes were ordered already.
                    mp.ordered(&[a]);
                }
                self.submitted.insert(a, self.now);
                self.insts[inst].batches.push(cert);
                self.perform(inst, actions);
            }
            Err(e) => panic!("seed {}: local submit refused: {e}", self.scenario.seed),
        }
        self.reschedule_timer(inst);
    }

    /// Executes the longest honest ordered log's transactions as a ledger does: per
    /// (sender, chain), the next nonce executes, a used one is a duplicate, a higher one
    /// is rejected (a skipped nonce). Errors if a block orders a batch the DA never saw.
    pub fn check_nonce_order(&self) -> Result<NonceReport, String> {
        let seed = self.scenario.seed;
        let log =
            self.honest().into_iter().map(|i| &self.insts[i].log).max_by_key(|l| l.len()).cloned().unwrap_or_default();
        let mut next: HashMap<(PublicKey, ChainId), u64> = HashMap::new();
        let mut report = NonceReport::default();
        for fb in &log {
            for cert in &fb.block.batches {
                let a = cert.commitment.attestation_digest();
                let blobs =
                    self.da.get(&a).ok_or_else(|| format!("seed {seed}: ordered batch {a} was never dispersed"))?;
                for blob in blobs {
                    let batch: Batch = lamina_primitives::codec::decode(&blob.data)
                        .map_err(|e| format!("seed {seed}: a cut batch does not decode: {e}"))?;
                    for tx in batch.txs {
                        let n = next.entry((tx.sender, tx.chain_id)).or_default();
                        if tx.nonce == *n {
                            *n += 1;
                            report.executed += 1;
                        } else if tx.nonce < *n {
                            report.duplicates += 1;
                        } else {
                            report.out_of_order += 1;
                        }
                    }
                }
            }
        }
        Ok(report)
    }

    fn is_honest(&self, i: usize) -> bool {
        self.insts[i].behaviour.is_none() && !self.scenario.twins.contains(&self.insts[i].id)
    }

    /// Performs actions in order, as a driver must. A torn crash stops after a random
    /// prefix (so `Persist` may have happened without the sends that followed).
    fn perform(&mut self, i: usize, mut actions: Vec<Action>) {
        let mut crash_after = None;
        if self.insts[i].torn_pending && !actions.is_empty() {
            crash_after = Some(self.rng.random_range(0..=actions.len()));
        }
        if self.insts[i].behaviour.is_some() {
            actions = self.byzantine_transform(i, actions);
        }
        for (k, a) in actions.into_iter().enumerate() {
            if crash_after == Some(k) {
                break;
            }
            self.perform_one(i, a);
        }
        if crash_after.is_some() {
            self.insts[i].core = None;
            self.insts[i].mempool = None;
            self.insts[i].torn_pending = false;
        }
    }

    fn perform_one(&mut self, i: usize, a: Action) {
        let id = self.insts[i].id;
        match a {
            Action::Persist(rec) => self.insts[i].wal.push(rec),
            Action::Broadcast(msg) => {
                self.record_signed(i, &msg);
                for j in 0..self.insts.len() {
                    if self.insts[j].id != id {
                        self.send(i, j, msg.clone());
                    }
                }
            }
            Action::Send { to, message } => {
                self.record_signed(i, &message);
                for j in 0..self.insts.len() {
                    if self.insts[j].id == to {
                        self.send(i, j, message.clone());
                    }
                }
            }
            Action::ServeFinalized { to, from, max } => {
                let log = &self.insts[i].log;
                let start = (from.0 as usize).saturating_sub(1);
                let blocks: Vec<FinalizedBlock> = log.iter().skip(start).take(max as usize).cloned().collect();
                if !blocks.is_empty() {
                    for fb in &blocks {
                        self.certified_final.insert(fb.block.digest());
                    }
                    for j in 0..self.insts.len() {
                        if self.insts[j].id == to {
                            self.send(i, j, Message::Finalized(blocks.clone()));
                        }
                    }
                }
            }
            Action::Finalized(fb) => {
                let want = self.insts[i].log.len() as u64 + 1;
                assert_eq!(fb.height().0, want, "seed {}: node {id} output height out of order", self.scenario.seed);
                let ordered: BTreeSet<Digest> =
                    fb.block.batches.iter().map(|c| c.commitment.attestation_digest()).collect();
                self.insts[i].batches.retain(|c| !ordered.contains(&c.commitment.attestation_digest()));
                if let Some(mp) = self.insts[i].mempool.as_mut() {
                    mp.ordered(&ordered.iter().copied().collect::<Vec<_>>());
                }
                let h = &fb.block.header;
                self.headers.insert(fb.block.digest(), (h.height.0, h.parent));
                self.certified_final.insert(fb.block.digest());
                self.insts[i].log.push(fb);
                self.insts[i].finalized_at.push(self.now);
            }
            Action::PruneWal { through } => self.insts[i].wal.retain(|r| r.view() > through),
            Action::Fault(f) => self.insts[i].faults.push((f.peer, f.kind)),
        }
    }

    fn record_signed(&mut self, i: usize, msg: &Message) {
        match msg {
            Message::Propose(p) => {
                let h = &p.block.header;
                self.headers.insert(p.block.digest(), (h.height.0, h.parent));
            }
            Message::Certificate(c) if c.kind == VoteKind::Finalize => {
                self.certified_final.insert(c.digest);
            }
            Message::Finalized(blocks) => {
                for fb in blocks {
                    self.certified_final.insert(fb.block.digest());
                }
            }
            _ => {}
        }
        if !self.is_honest(i) {
            return;
        }
        let id = self.insts[i].id;
        let (kind, view, digest) = match msg {
            Message::Vote(v) if v.signer as usize == id => (v.kind, v.view, v.digest),
            Message::Propose(p) => (VoteKind::Notarize, p.block.header.view, p.block.digest()),
            _ => return,
        };
        let s = self.signed.entry((id, view.0)).or_default();
        match kind {
            VoteKind::Notarize => {
                s.notarize.insert(digest);
            }
            VoteKind::Nullify => {
                if !s.finalize.is_empty() {
                    s.nullify_after_finalize = true;
                }
                s.nullify = true;
            }
            VoteKind::Finalize => {
                if s.nullify {
                    s.finalize_after_nullify.insert(digest);
                }
                s.finalize.insert(digest);
            }
        }
    }

    fn sender_view(&self, i: usize) -> u64 {
        self.insts[i].core.as_ref().map(|c| c.view().0).unwrap_or(0)
    }

    fn send(&mut self, i: usize, j: usize, msg: Message) {
        self.messages_sent += 1;
        let now = self.now;
        if self.scenario.twins_routing.is_some() {
            let round = self.sender_view(i).max(1);
            let from = self.insts[i].id;
            self.schedule(now + Duration::from_millis(10), Event::Deliver { to: j, from_inst: i, from, msg, round });
            return;
        }
        let healed = !self.scenario.heal_at.is_zero() && now >= self.scenario.heal_at;
        let model = if healed { self.scenario.healed.clone() } else { self.scenario.net.clone() };
        if !healed {
            let (a, b) = (self.insts[i].id, self.insts[j].id);
            if self.scenario.partitions.iter().any(|p| p.start <= now && now < p.end && p.group[a] != p.group[b]) {
                return;
            }
            if model.drop > 0.0 && self.rng.random_bool(model.drop) {
                return;
            }
        }
        let copies = if model.duplicate > 0.0 && self.rng.random_bool(model.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let span = model.delay_max.saturating_sub(model.delay_min).as_micros() as u64;
            let delay =
                model.delay_min + Duration::from_micros(if span == 0 { 0 } else { self.rng.random_range(0..=span) });
            let from = self.insts[i].id;
            self.schedule(now + delay, Event::Deliver { to: j, from_inst: i, from, msg: msg.clone(), round: 0 });
        }
    }

    // -------------------------------------------------------------- Byzantine

    fn key(&self, i: usize) -> MemoSigner {
        MemoSigner { key: validator_key(self.insts[i].id), memo: self.memo.clone() }
    }

    fn byzantine_transform(&mut self, i: usize, actions: Vec<Action>) -> Vec<Action> {
        let Some(b) = self.insts[i].behaviour else { return actions };
        let id = self.insts[i].id;
        let n = self.scenario.n;
        let net = self.scenario.config.network;
        let key = self.key(i);
        let mut out = Vec::new();
        for a in actions {
            match (b, a) {
                (Behaviour::Silent, Action::Broadcast(_) | Action::Send { .. } | Action::ServeFinalized { .. }) => {}
                (Behaviour::WithholdVotes, Action::Broadcast(Message::Vote(_))) => {}
                (Behaviour::EquivocatingLeader, Action::Broadcast(Message::Propose(p))) => {
                    let p2 = equivocal_proposal(&key, &net, &p);
                    // Even validators get one block, odd ones the other; the first even
                    // validator gets both (so that someone holds the evidence).
                    let witness = (0..n).find(|t| *t != id && t % 2 == 0);
                    for to in 0..n {
                        if to == id {
                            continue;
                        }
                        let m = if to % 2 == 0 { Message::Propose(p.clone()) } else { Message::Propose(p2.clone()) };
                        out.push(Action::Send { to, message: m });
                        if Some(to) == witness {
                            out.push(Action::Send { to, message: Message::Propose(p2.clone()) });
                        }
                    }
                }
                (Behaviour::InvalidAvailability, Action::Broadcast(Message::Propose(p))) => {
                    let mut block = p.block.clone();
                    self.batch_tag += 1;
                    block.batches.push(make_bad_cert(&self.memo, 7_777_000 + self.batch_tag));
                    block.header.payload = lamina_primitives::Block::payload_digest(&block.batches);
                    let d = block.digest();
                    let sig =
                        key.sign(&lamina_consensus_core::vote_digest(&net, VoteKind::Notarize, block.header.view, &d));
                    out.push(Action::Broadcast(Message::Propose(Proposal {
                        block,
                        signature: sig,
                        certificates: p.certificates.clone(),
                    })));
                }
                (Behaviour::ConflictingVotes, Action::Broadcast(Message::Vote(v))) => {
                    out.push(Action::Broadcast(Message::Vote(v.clone())));
                    let mut d = v.digest;
                    d.0[0] ^= 0xA5;
                    let conflicting = match v.kind {
                        VoteKind::Notarize | VoteKind::Finalize => vec![(v.kind, d)],
                        VoteKind::Nullify => vec![(VoteKind::Finalize, d), (VoteKind::Notarize, d)],
                    };
                    for (kind, d) in conflicting {
                        let vote = signed_vote(&key, &net, kind, v.view, d, id as u32);
                        for to in (0..n).filter(|t| *t != id && t % 2 == 1) {
                            out.push(Action::Send { to, message: Message::Vote(vote.clone()) });
                        }
                    }
                    // Nullify the same view as well.
                    if v.kind != VoteKind::Nullify {
                        let vote = signed_vote(&key, &net, VoteKind::Nullify, v.view, Digest::ZERO, id as u32);
                        out.push(Action::Broadcast(Message::Vote(vote)));
                    }
                }
                (Behaviour::InvalidSignatures, Action::Broadcast(m)) => out.push(Action::Broadcast(corrupt(m))),
                (Behaviour::InvalidSignatures, Action::Send { to, message }) => {
                    out.push(Action::Send { to, message: corrupt(message) })
                }
                (Behaviour::Replay, Action::Broadcast(m)) => {
                    self.insts[i].sent.push(m.clone());
                    out.push(Action::Broadcast(m));
                }
                (Behaviour::Flood, Action::Broadcast(m)) => {
                    for _ in 0..3 {
                        out.push(Action::Broadcast(m.clone()));
                    }
                }
                (_, a) => out.push(a),
            }
        }
        out
    }

    /// Extra traffic some behaviours generate on their own timer.
    fn byzantine_tick(&mut self, i: usize) {
        let Some(b) = self.insts[i].behaviour else { return };
        if self.insts[i].core.is_none() {
            return;
        }
        let id = self.insts[i].id;
        let n = self.scenario.n;
        let net = self.scenario.config.network;
        let view = self.sender_view(i);
        let key = self.key(i);
        let mut msgs: Vec<Message> = Vec::new();
        match b {
            Behaviour::Replay => {
                let pool_len = self.insts[i].seen.len() + self.insts[i].sent.len();
                for _ in 0..8.min(pool_len) {
                    let k = self.rng.random_range(0..pool_len);
                    let m = if k < self.insts[i].seen.len() {
                        self.insts[i].seen[k].clone()
                    } else {
                        self.insts[i].sent[k - self.insts[i].seen.len()].clone()
                    };
                    msgs.push(m);
                }
            }
            Behaviour::Flood => {
                for k in 0..16u64 {
                    let v = View(view + k % 100);
                    let d = Digest([(k as u8).wrapping_mul(31); 32]);
                    let kind = [VoteKind::Notarize, VoteKind::Finalize, VoteKind::Nullify][(k % 3) as usize];
                    let d = if kind == VoteKind::Nullify { Digest::ZERO } else { d };
                    let sig = key.sign(&lamina_consensus_core::vote_digest(&net, kind, v, &d));
                    msgs.push(Message::Vote(Vote { kind, view: v, digest: d, signer: id as u32, signature: sig }));
                }
                self.batch_tag += 1;
                msgs.push(Message::Batch(make_bad_cert(&self.memo, 9_000_000 + self.batch_tag)));
                msgs.push(Message::SyncRequest(lamina_consensus_core::SyncRequest {
                    tip: lamina_primitives::Height(0),
                    from_view: View(0),
                }));
                msgs.push(Message::Certificate(lamina_consensus_core::Certificate {
                    kind: VoteKind::Nullify,
                    view: View(view + 1),
                    digest: Digest::ZERO,
                    qc: QuorumCertificate::from_votes(
                        Digest::ZERO,
                        n,
                        &[(0, Signature([1; 64])), (1, Signature([2; 64])), (2, Signature([3; 64]))],
                    ),
                }));
            }
            _ => return,
        }
        for m in msgs {
            for j in 0..self.insts.len() {
                if self.insts[j].id != id {
                    self.send(i, j, m.clone());
                }
            }
        }
        // Keep ticking while alive.
        let t = self.now + Duration::from_millis(50);
        self.insts[i].timer_at = None;
        self.schedule(t, Event::Timer { inst: i });
        self.insts[i].timer_at = Some(t);
    }

    // -------------------------------------------------------------- checkers

    pub fn honest(&self) -> Vec<usize> {
        (0..self.insts.len()).filter(|&i| self.is_honest(i)).collect()
    }

    /// Agreement: no two honest nodes finalize different blocks at one height.
    pub fn check_agreement(&self) -> Result<(), String> {
        let mut by_height: BTreeMap<u64, (Digest, usize)> = BTreeMap::new();
        for i in self.honest() {
            for fb in &self.insts[i].log {
                let d = fb.block.digest();
                match by_height.get(&fb.height().0) {
                    Some((other, j)) if *other != d => {
                        return Err(format!(
                            "agreement violated at height {}: node {} has {:?}, node {} has {:?}",
                            fb.height(),
                            self.insts[*j].id,
                            other,
                            self.insts[i].id,
                            d
                        ));
                    }
                    Some(_) => {}
                    None => {
                        by_height.insert(fb.height().0, (d, i));
                    }
                }
            }
        }
        Ok(())
    }

    /// Agreement over every instance's log (twins included): used by negative controls.
    pub fn check_agreement_among(&self, insts: &[usize]) -> Result<(), String> {
        let mut by_height: BTreeMap<u64, Digest> = BTreeMap::new();
        for &i in insts {
            for fb in &self.insts[i].log {
                let d = fb.block.digest();
                if let Some(o) = by_height.insert(fb.height().0, d)
                    && o != d
                {
                    return Err(format!("fork at height {}", fb.height()));
                }
            }
        }
        Ok(())
    }

    /// Validity: each honest log is a chain of verifiable finalized blocks whose batches
    /// were certified and submitted, each ordered once.
    pub fn check_validity(&self, verified: &mut BTreeSet<Digest>) -> Result<(), String> {
        let committee = committee(self.scenario.n);
        let verifier = MemoVerifier(self.memo.clone());
        for i in self.honest() {
            let log = &self.insts[i].log;
            let mut parent = Digest::ZERO;
            let mut batches = BTreeSet::new();
            for (k, fb) in log.iter().enumerate() {
                let h = &fb.block.header;
                if h.height.0 != k as u64 + 1 || h.parent != parent {
                    return Err(format!("node {} log does not chain at height {}", self.insts[i].id, h.height));
                }
                let d = fb.block.digest();
                if verified.insert(d) {
                    if !fb.block.payload_matches() {
                        return Err(format!("payload mismatch at height {}", h.height));
                    }
                    let qc = &fb.certificate;
                    let signers = qc
                        .check_shape(&committee, &h.finalization_digest(), committee.quorum())
                        .map_err(|e| format!("bad certificate at height {}: {e}", h.height))?;
                    let items: Vec<SignedDigest> = signers
                        .iter()
                        .zip(&qc.signatures)
                        .map(|(&s, sig)| SignedDigest {
                            public_key: committee.members[s],
                            message: h.finalization_digest(),
                            signature: *sig,
                        })
                        .collect();
                    if !verifier.verify_all(&items) {
                        return Err(format!("bad certificate signatures at height {}", h.height));
                    }
                    for c in &fb.block.batches {
                        let a = c.commitment.attestation_digest();
                        if !self.submitted.contains_key(&a) {
                            return Err(format!("height {} orders a batch nobody submitted", h.height));
                        }
                        let da = da_committee();
                        let signers = c
                            .signatures
                            .check_shape(&da, &a, DA_THRESHOLD)
                            .map_err(|e| format!("invalid DA cert ordered: {e}"))?;
                        let items: Vec<SignedDigest> = signers
                            .iter()
                            .zip(&c.signatures.signatures)
                            .map(|(&s, sig)| SignedDigest { public_key: da.members[s], message: a, signature: *sig })
                            .collect();
                        if !verifier.verify_all(&items) {
                            return Err(format!("invalid DA signatures ordered at height {}", h.height));
                        }
                    }
                }
                for c in &fb.block.batches {
                    if !batches.insert(c.commitment.attestation_digest()) {
                        return Err(format!("node {}: batch ordered twice (height {})", self.insts[i].id, h.height));
                    }
                }
                parent = d;
            }
        }
        Ok(())
    }

    /// The blocks that are final: those named by a finalization certificate and their
    /// ancestors (as far as the harness saw their headers).
    pub fn final_blocks(&self) -> BTreeMap<Digest, u64> {
        let mut out = BTreeMap::new();
        for d in &self.certified_final {
            let mut d = *d;
            while let Some((h, parent)) = self.headers.get(&d) {
                if out.insert(d, *h).is_some() {
                    break;
                }
                d = *parent;
            }
        }
        out
    }

    /// Safety over certificates, not only over outputs: no two blocks at one height are
    /// final (certified, or ancestors of certified blocks).
    pub fn check_final_chain(&self) -> Result<(), String> {
        let mut by_height: BTreeMap<u64, Digest> = BTreeMap::new();
        for (d, h) in self.final_blocks() {
            if let Some(other) = by_height.insert(h, d)
                && other != d
            {
                return Err(format!("two final blocks at height {h}: {other:?} and {d:?}"));
            }
        }
        Ok(())
    }

    /// Honest validators never sign conflicting messages (across crashes and restarts).
    pub fn check_no_honest_equivocation(&self) -> Result<(), String> {
        let final_chain = self.final_blocks();
        for ((id, view), s) in &self.signed {
            if s.notarize.len() > 1 {
                return Err(format!("honest node {id} notarized {} blocks in view {view}", s.notarize.len()));
            }
            if s.finalize.len() > 1 {
                return Err(format!("honest node {id} finalized {} blocks in view {view}", s.finalize.len()));
            }
            if s.nullify_after_finalize {
                return Err(format!("honest node {id} nullified view {view} after a finalize vote"));
            }
            for d in &s.finalize_after_nullify {
                if !final_chain.contains_key(d) {
                    return Err(format!(
                        "honest node {id} sent a finalize vote after nullify in view {view} for a non-final block"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Liveness: after the heal, every honest node finalizes a block above the highest
    /// honest height at heal time within the bound, and every batch submitted before
    /// the heal is ordered by then.
    pub fn check_liveness(&self) -> Result<(), String> {
        let Some(bound) = self.scenario.liveness_bound else { return Ok(()) };
        let heal = self.scenario.heal_at;
        let deadline = heal + bound;
        let at_heal = self
            .honest()
            .iter()
            .map(|&i| self.insts[i].finalized_at.iter().filter(|t| **t <= heal).count())
            .max()
            .unwrap_or(0);
        for i in self.honest() {
            let inst = &self.insts[i];
            let reached = inst.finalized_at.get(at_heal).copied();
            match reached {
                Some(t) if t <= deadline => {}
                _ => {
                    return Err(format!(
                        "liveness: node {} did not finalize height {} within {:?} of the heal (has {}, view {:?})",
                        inst.id,
                        at_heal + 1,
                        bound,
                        inst.log.len(),
                        inst.core.as_ref().map(|c| c.view())
                    ));
                }
            }
            let ordered: BTreeSet<Digest> = inst
                .log
                .iter()
                .filter(|_| true)
                .flat_map(|fb| fb.block.batches.iter().map(|c| c.commitment.attestation_digest()))
                .collect();
            for (a, t) in &self.submitted {
                if *t < heal && !ordered.contains(a) {
                    return Err(format!("liveness: node {} never ordered a batch submitted at {:?}", inst.id, t));
                }
            }
        }
        Ok(())
    }

    pub fn check_all(&self, verified: &mut BTreeSet<Digest>) -> Result<(), String> {
        self.check_agreement()?;
        self.check_final_chain()?;
        self.check_validity(verified)?;
        self.check_no_honest_equivocation()?;
        self.check_liveness()?;
        Ok(())
    }

    pub fn max_height(&self) -> usize {
        self.honest().iter().map(|&i| self.insts[i].log.len()).max().unwrap_or(0)
    }

    pub fn min_height(&self) -> usize {
        self.honest().iter().map(|&i| self.insts[i].log.len()).min().unwrap_or(0)
    }

    pub fn faults_seen(&self) -> Vec<(usize, FaultKind)> {
        self.honest().iter().flat_map(|&i| self.insts[i].faults.clone()).collect()
    }
}

/// A vote `key` signs (a Byzantine sender's, which the simulation's behaviours forge).
pub fn signed_vote(key: &MemoSigner, net: &Digest, kind: VoteKind, view: View, digest: Digest, signer: u32) -> Vote {
    let signature = key.sign(&lamina_consensus_core::vote_digest(net, kind, view, &digest));
    Vote { kind, view, digest, signer, signature }
}

/// An equivocating leader's second proposal: `p`'s block with another timestamp (same
/// parent, same view), signed by `key`.
pub fn equivocal_proposal(key: &MemoSigner, net: &Digest, p: &Proposal) -> Proposal {
    let mut block = p.block.clone();
    block.header.timestamp_ms += 1;
    let d = block.digest();
    let signature = key.sign(&lamina_consensus_core::vote_digest(net, VoteKind::Notarize, block.header.view, &d));
    Proposal { block, signature, certificates: p.certificates.clone() }
}

/// `m` with its signature corrupted (a Byzantine sender's invalid signatures).
pub fn corrupt(m: Message) -> Message {
    match m {
        Message::Vote(mut v) => {
            v.signature.0[10] ^= 1;
            Message::Vote(v)
        }
        Message::Propose(mut p) => {
            p.signature.0[10] ^= 1;
            Message::Propose(p)
        }
        Message::Certificate(mut c) => {
            if let Some(s) = c.qc.signatures.first_mut() {
                s.0[10] ^= 1;
            }
            Message::Certificate(c)
        }
        other => other,
    }
}

/// Runs one scenario and all checkers; the error names the seed and how to replay it.
pub fn run_checked(scenario: Scenario) -> Result<Sim, String> {
    let seed = scenario.seed;
    let n = scenario.n;
    let mut sim = Sim::new(scenario, Arc::new(Memo::default()));
    sim.run();
    let mut verified = BTreeSet::new();
    sim.check_all(&mut verified).map_err(|e| {
        format!("seed {seed} (n = {n}) failed: {e}\nreplay: LAMINA_SIM_SEED={seed} LAMINA_SIM_N={n} cargo test -p lamina-consensus-core --test simulation replay -- --nocapture")
    })?;
    Ok(sim)
}
