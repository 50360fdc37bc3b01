//! A toy world for the settlement tests: a deterministic stateless executor, a
//! bad-encoding verifier, and a driver that plays the settlement service (observes
//! blocks, fetches proof inputs, records the log for replays).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use lamina_interfaces::settlement::{chain_receipts, inputs_digest};
use lamina_interfaces::{
    ChainReplica, ChainSpec, CheckpointClaim, ClaimStep, EncodingFraudVerifier, Genesis, GenesisBalance, ParamsView,
    SettlementSpec, StatelessError, StatelessExecutor, StepOutcome,
};
use lamina_primitives::{ChainId, Digest, Domain, Height, Keypair, PublicKey, Signature, Transaction, TxScope};
use lamina_settlement_core::{
    Challenge, Entry, Event, Input, Params, ProofInputs, SettlementState, WitnessRef, witness_hash,
};

pub static TOY: Domain = Domain::new("lamina settlement test toy state v1");
pub static TOY_RECEIPTS: Domain = Domain::new("lamina settlement test toy receipts v1");
pub static TOY_WITNESS: Domain = Domain::new("lamina settlement test toy witness v1");
pub static TOY_DATA: Domain = Domain::new("lamina settlement test toy data root v1");

pub const CHAIN: ChainId = ChainId(7);
pub const OTHER_CHAIN: ChainId = ChainId(8);
pub const W: u64 = 10;
pub const CLAIM_BOND: u64 = 1_000;
pub const CHALLENGE_BOND: u64 = 300;
pub const REWARD_PERCENT: u8 = 40;
pub const FUNDS: u64 = 100_000;

/// State root = H(pre ‖ tx ids); the witness must be H_w(pre).
pub struct ToyExec;

pub fn toy_witness(pre: &Digest) -> Vec<u8> {
    TOY_WITNESS.hash(pre.as_bytes()).0.to_vec()
}

pub fn toy_genesis_root(chain: ChainId) -> Digest {
    TOY.hash_parts(&[b"genesis", &chain.0.to_le_bytes()])
}

pub fn toy_step(pre: &Digest, txs: &[Transaction]) -> StepOutcome {
    let mut s = TOY.hasher();
    let mut r = TOY_RECEIPTS.hasher();
    s.update(pre.as_bytes());
    for t in txs {
        s.update(t.id().0.as_bytes());
        r.update(t.id().0.as_bytes());
    }
    StepOutcome { state_root: Digest(*s.finalize().as_bytes()), receipts_root: Digest(*r.finalize().as_bytes()) }
}

impl StatelessExecutor for ToyExec {
    fn reexecute(
        &self,
        chain: ChainId,
        _env: &lamina_interfaces::StepEnv,
        pre: &Digest,
        witness: &[u8],
        txs: &[Transaction],
    ) -> Result<StepOutcome, StatelessError> {
        if chain != CHAIN && chain != OTHER_CHAIN {
            return Err(StatelessError::UnknownChain(chain));
        }
        if witness != toy_witness(pre).as_slice() {
            return Err(StatelessError::BadWitness("toy witness mismatch".into()));
        }
        Ok(toy_step(pre, txs))
    }

    fn genesis_root(&self, chain: ChainId) -> Result<Digest, StatelessError> {
        Ok(toy_genesis_root(chain))
    }

    fn replica(&self, chain: ChainId) -> Result<Box<dyn ChainReplica>, StatelessError> {
        Err(StatelessError::UnknownChain(chain))
    }
}

/// Accepts a proof iff it is `b"bad" ‖ data_root`.
pub struct ToyEnc;

pub fn bad_encoding_proof(root: &Digest) -> Vec<u8> {
    [b"bad".as_slice(), root.as_bytes()].concat()
}

impl EncodingFraudVerifier for ToyEnc {
    fn verify_bad_encoding(&self, data_root: &Digest, proof: &[u8]) -> Result<(), String> {
        if proof == bad_encoding_proof(data_root).as_slice() { Ok(()) } else { Err("not a toy proof".into()) }
    }
}

pub fn key(n: u64) -> Keypair {
    Keypair::for_testing(n)
}

/// Claimers are keys 1..=9, challengers 11..=19, all funded.
pub fn genesis() -> Genesis {
    let chain = |id: ChainId, name: &str| ChainSpec { name: name.into(), ..lamina_test_utils::chain(id.0) };
    Genesis {
        chains: vec![chain(CHAIN, "seven"), chain(OTHER_CHAIN, "eight")],
        settlement: SettlementSpec {
            challenge_window: W,
            claim_bond: CLAIM_BOND,
            challenge_bond: CHALLENGE_BOND,
            challenger_reward_percent: REWARD_PERCENT,
            anchor_window: W,
            balances: (1..20).map(|i| GenesisBalance { account: key(i).public(), amount: FUNDS }).collect(),
        },
        ..lamina_test_utils::genesis("settlement-test")
    }
}

/// A claim's transaction on the network of [`genesis`], with `nonce = claim.to` as the
/// execution nodes send them.
#[allow(dead_code)] // Not every test binary posts claims this way.
pub fn claim_tx(k: &Keypair, c: &lamina_interfaces::CheckpointClaim) -> Transaction {
    Entry::transaction(k, genesis().tx_scope(), c.to.0, &Entry::Claim(c.clone())).unwrap()
}

/// What one log height carried, as the service hands it to the core.
#[derive(Clone, Debug)]
pub struct HeightLog {
    pub height: Height,
    pub namespaces: Vec<(ChainId, Vec<Digest>, bool)>,
    pub inputs: Vec<Input>,
}

/// One chain's data at a height.
#[derive(Clone, Debug)]
pub struct ChainData {
    pub roots: Vec<Digest>,
    pub txs: Vec<Transaction>,
    pub available: bool,
}

/// The settlement service, played by the test.
pub struct Net {
    pub genesis: Genesis,
    /// What the genesis's transaction signatures bind.
    pub scope: TxScope,
    pub st: SettlementState,
    pub data: BTreeMap<(ChainId, u64), ChainData>,
    pub blobs: HashMap<Digest, Vec<u8>>,
    pub nonces: HashMap<PublicKey, u64>,
    pub log: Vec<HeightLog>,
    pub events: Vec<Vec<Event>>,
    user_nonce: u64,
    /// Governance's parameters, when the test changes some (the genesis's otherwise).
    pub governed: Option<std::sync::Arc<dyn ParamsView>>,
}

impl Default for Net {
    fn default() -> Self {
        Self::new(genesis())
    }
}

impl Net {
    pub fn new(genesis: Genesis) -> Self {
        let st = SettlementState::new(Params::from_genesis(&genesis));
        Net {
            scope: genesis.tx_scope(),
            genesis,
            st,
            data: BTreeMap::new(),
            blobs: HashMap::new(),
            nonces: HashMap::new(),
            log: Vec::new(),
            events: Vec::new(),
            user_nonce: 0,
            governed: None,
        }
    }

    pub fn params(&self) -> Params {
        Params::from_genesis(&self.genesis)
    }

    /// Next height to be processed.
    pub fn next_height(&self) -> u64 {
        self.log.len() as u64 + 1
    }

    /// `n` user transactions for a chain (unsigned: the toy executor only hashes them).
    pub fn user_txs(&mut self, chain: ChainId, n: usize) -> Vec<Transaction> {
        (0..n)
            .map(|_| {
                self.user_nonce += 1;
                Transaction {
                    chain_id: chain,
                    sender: PublicKey([9; 32]),
                    nonce: self.user_nonce,
                    payload: self.user_nonce.to_le_bytes().to_vec(),
                    signature: Signature::default(),
                }
            })
            .collect()
    }

    /// A settlement transaction from `key` with its next nonce.
    pub fn tx(&mut self, key: &Keypair, entry: &Entry) -> Transaction {
        let n = self.nonces.entry(key.public()).or_default();
        let tx = Entry::transaction(key, self.scope, *n, entry).unwrap();
        *n += 1;
        tx
    }

    /// Processes one height: `chains` = (chain, number of user txs, available), then
    /// the settlement transactions (proof inputs filled like the service does).
    pub fn block(&mut self, chains: &[(ChainId, usize, bool)], entries: Vec<Transaction>) -> Vec<Event> {
        let h = self.next_height();
        let mut namespaces = Vec::new();
        for &(chain, n, available) in chains {
            let txs = self.user_txs(chain, n);
            let roots = vec![TOY_DATA.hash_parts(&[&chain.0.to_le_bytes(), &h.to_le_bytes()])];
            namespaces.push((chain, roots.clone(), available));
            self.data.insert((chain, h), ChainData { roots, txs, available });
        }
        let inputs = entries.into_iter().map(|tx| self.input(tx)).collect();
        self.apply(HeightLog { height: Height(h), namespaces, inputs })
    }

    /// The service's job for one transaction: fetch what a challenge needs.
    pub fn input(&self, tx: Transaction) -> Input {
        let proof = match Entry::from_transaction(&tx) {
            Ok(Entry::Challenge(c)) => self.st.challenge_target(&c).map(|(chain, h)| {
                let txs = self.data.get(&(chain, h.0)).map(|d| d.txs.clone()).unwrap_or_default();
                let witness = match &c.witness {
                    WitnessRef::Inline(_) => Ok(Vec::new()),
                    WitnessRef::Da { hash, .. } => self.blobs.get(hash).cloned().ok_or_else(|| "blob not found".into()),
                };
                ProofInputs { txs, witness }
            }),
            _ => None,
        };
        Input { tx, proof }
    }

    pub fn apply(&mut self, hl: HeightLog) -> Vec<Event> {
        self.st.observe_block(hl.height, &hl.namespaces);
        let events = match &self.governed {
            Some(g) => self.st.apply_entries_governed(hl.height, hl.inputs.clone(), &ToyExec, &ToyEnc, g.as_ref()),
            None => self.st.apply_entries(hl.height, hl.inputs.clone(), &ToyExec, &ToyEnc),
        };
        self.log.push(hl);
        self.events.push(events.clone());
        events
    }

    /// `n` heights with nothing in them.
    pub fn idle(&mut self, n: u64) -> Vec<Event> {
        (0..n).flat_map(|_| self.block(&[], vec![])).collect()
    }

    /// An honest claim by `key` extending `parent` (or genesis) through height `to`.
    pub fn claim(&self, key: &Keypair, chain: ChainId, parent: Option<&CheckpointClaim>, to: u64) -> CheckpointClaim {
        self.claim_with(key, chain, parent, to, |_| {})
    }

    /// Like [`Net::claim`], with the steps altered by `tamper` before sealing (the
    /// claim stays internally consistent and validly signed).
    pub fn claim_with(
        &self,
        key: &Keypair,
        chain: ChainId,
        parent: Option<&CheckpointClaim>,
        to: u64,
        tamper: impl FnOnce(&mut Vec<ClaimStep>),
    ) -> CheckpointClaim {
        let (parent_id, from, mut root, receipts) = match parent {
            Some(p) => (p.id(), p.to.0, p.state_root, p.receipts_root),
            None => (Digest::ZERO, 0, toy_genesis_root(chain), Digest::ZERO),
        };
        let mut steps = Vec::new();
        for ((_, h), d) in self.data.range((chain, from + 1)..=(chain, to)) {
            let out = toy_step(&root, &d.txs);
            root = out.state_root;
            steps.push(ClaimStep {
                height: Height(*h),
                inputs: inputs_digest(&d.roots),
                state_root: out.state_root,
                receipts_root: out.receipts_root,
            });
        }
        tamper(&mut steps);
        seal(key, &self.params(), chain, parent_id, Height(from), Height(to), steps, receipts)
    }

    /// A challenge of `step` of a pending claim with the correct toy witness inline.
    pub fn challenge(&self, claim: &Digest, step: u32) -> Entry {
        let rec = self.st.claim(claim).expect("claim known");
        let pre = if step == 0 { rec.pre_state_root } else { rec.claim.steps[step as usize - 1].state_root };
        Entry::Challenge(Challenge { claim: *claim, step, witness: WitnessRef::Inline(toy_witness(&pre)) })
    }

    pub fn assert_conserved(&self) {
        assert_eq!(self.st.total_supply(), self.params().total_supply(), "free + bonded + burned must be constant");
    }
}

/// Builds a consistent, signed claim from steps.
#[allow(clippy::too_many_arguments)]
pub fn seal(
    key: &Keypair,
    params: &Params,
    chain: ChainId,
    parent: Digest,
    from: Height,
    to: Height,
    steps: Vec<ClaimStep>,
    parent_receipts: Digest,
) -> CheckpointClaim {
    let receipts = steps.iter().fold(parent_receipts, |r, s| chain_receipts(&r, s.height, &s.receipts_root));
    CheckpointClaim {
        network: params.network,
        chain_id: chain,
        parent,
        from,
        to,
        state_root: steps.last().map(|s| s.state_root).unwrap_or_default(),
        steps,
        receipts_root: receipts,
        params: params.chains[&chain],
        claimer: key.public(),
        signature: Signature::default(),
    }
    .sign(key)
}

/// Replays a recorded log into a fresh state, returning it and the events per height.
pub fn replay(genesis: &Genesis, log: &[HeightLog]) -> (SettlementState, Vec<Vec<Event>>) {
    let mut st = SettlementState::new(Params::from_genesis(genesis));
    let events = log.iter().map(|hl| apply_to(&mut st, hl)).collect();
    (st, events)
}

pub fn apply_to(st: &mut SettlementState, hl: &HeightLog) -> Vec<Event> {
    st.observe_block(hl.height, &hl.namespaces);
    st.apply_entries(hl.height, hl.inputs.clone(), &ToyExec, &ToyEnc)
}

pub fn witness_ref_da(bytes: &[u8]) -> WitnessRef {
    WitnessRef::Da {
        commitment: Default::default(),
        namespace: lamina_primitives::Namespace::from(CHAIN),
        hash: witness_hash(bytes),
        len: bytes.len() as u64,
    }
}

pub fn rejected(events: &[Event]) -> Vec<lamina_settlement_core::Error> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::EntryRejected { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

pub fn accepted(events: &[Event]) -> Vec<Digest> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ClaimAccepted { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}
