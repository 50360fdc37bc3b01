//! The load of the network tests: signed native-ledger transfers between a chain's
//! funded test accounts, submitted through the validators' QUIC intake with the devnet's
//! client key, and the client that checks what execution did with them (the execution
//! nodes' QUIC queries). A transaction is *acknowledged* when intake answers `Accepted`
//! (or `Duplicate` for a resubmission).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lamina_consensus_client::IntakeClient;
use lamina_execution_client::protocol::{QueryProtocol, QueryRequest, QueryResponse, StatusInfo};
use lamina_execution_core::AssetId;
use lamina_execution_core::ledger::{self, LedgerFailure};
use lamina_execution_core::machine::Receipt;
use lamina_interfaces::{ChainSpec, SubmitError, SubmitOutcome, TxSubmit as _};
use lamina_net::{Endpoint, EndpointConfig, Network, PeerSet, ProtocolConfig};
use lamina_primitives::{Height, Keypair, NodeId, Transaction, TxId, TxScope};

use super::{Devnet, WITHIN};

/// Transfers submitted per tick of the load (one per sender), and the tick.
pub const PER_TICK: usize = 10;
pub const TICK: Duration = Duration::from_millis(200);
/// Senders of one load phase: each sends once every `SENDERS / PER_TICK` ticks, so one
/// sender's transactions are seconds apart and reach the log in nonce order.
pub const SENDERS: u64 = 100;

/// The test's client: the devnet client key on one QUIC endpoint, with the intake
/// client (every validator) and the execution query protocol (every execution node).
pub struct Client {
    pub endpoint: Endpoint,
    pub intake: IntakeClient,
    /// What the network's transaction signatures bind.
    pub scope: TxScope,
    pub query: Network<QueryProtocol>,
    pub execs: HashMap<String, NodeId>,
}

impl Client {
    pub async fn connect(net: &Devnet) -> Client {
        let endpoint = Endpoint::bind(&net.client_key, EndpointConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let intake = IntakeClient::register(&endpoint, &net.genesis).unwrap();
        let mut peers = PeerSet::new();
        let mut execs = HashMap::new();
        for e in &net.genesis.execution_nodes {
            peers = peers.with_dial(e.key, e.addr);
            execs.insert(e.name.clone(), e.key);
        }
        let query =
            endpoint.register_client::<QueryProtocol>(peers, ProtocolConfig::for_protocol::<QueryProtocol>()).unwrap();
        intake.wait_for_validators(net.genesis.validators.len(), WITHIN).await.unwrap();
        for id in execs.values() {
            query.wait_connected(id, WITHIN).await.unwrap();
        }
        Client { endpoint, intake, scope: net.genesis.tx_scope(), query, execs }
    }

    pub async fn ask(&self, exec: &str, q: &QueryRequest) -> Option<QueryResponse> {
        self.query.request_with_timeout(&self.execs[exec], q, Duration::from_secs(10)).await.ok()
    }

    /// An execution node's committed height and roots, if it answers.
    pub async fn exec_status(&self, exec: &str) -> Option<StatusInfo> {
        match self.ask(exec, &QueryRequest::Status).await? {
            QueryResponse::Status(s) => Some(s),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    pub async fn receipt(&self, exec: &str, id: TxId) -> Option<Option<(Height, Receipt<LedgerFailure>)>> {
        match self.ask(exec, &QueryRequest::Receipt(id)).await? {
            QueryResponse::Receipt(r) => Some(r),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    /// Of `ids`, those `exec` has no receipt for (or all, if it does not answer).
    pub async fn missing(&self, exec: &str, ids: &[TxId]) -> Vec<TxId> {
        let mut out = Vec::new();
        for id in ids {
            if !matches!(self.receipt(exec, *id).await, Some(Some(_))) {
                out.push(*id);
            }
        }
        out
    }

    /// Waits until `exec` has a receipt for every one of `ids`.
    pub async fn wait_executed(&self, exec: &str, ids: &[TxId], what: &str) {
        let start = Instant::now();
        let mut missing = ids.to_vec();
        loop {
            missing = self.missing(exec, &missing).await;
            if missing.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < WITHIN,
                "{what}: {exec} has no receipt for {} of {} acknowledged transactions (e.g. {}); status {:?}",
                missing.len(),
                ids.len(),
                missing[0],
                self.exec_status(exec).await
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until `exec` has committed a height above `above`.
    pub async fn wait_exec_height_above(&self, exec: &str, above: u64, what: &str) -> StatusInfo {
        let start = Instant::now();
        loop {
            let st = self.exec_status(exec).await;
            if let Some(st) = st.as_ref().filter(|s| s.height.0 > above) {
                return st.clone();
            }
            assert!(start.elapsed() < WITHIN, "{what}: {exec} did not pass height {above}: {st:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Samples both execution nodes (they keep following empty blocks) until they
    /// report the same height, and asserts the same state there.
    pub async fn assert_same_state(&self, a: &str, b: &str) {
        let start = Instant::now();
        loop {
            let (x, y) = (self.exec_status(a).await.unwrap(), self.exec_status(b).await.unwrap());
            if x.height == y.height {
                assert_eq!(x, y, "{a} and {b}: same height, different roots");
                eprintln!("{a} and {b} agree at height {}: state root {}", x.height, x.state_root);
                return;
            }
            assert!(start.elapsed() < WITHIN, "never saw {a} and {b} at the same height: {x:?} {y:?}");
            tokio::time::sleep(Duration::from_millis(7)).await;
        }
    }

    pub async fn shutdown(self) {
        self.endpoint.shutdown().await;
    }
}

/// What a load phase did.
#[derive(Default, Debug)]
pub struct LoadStats {
    /// Acknowledged transactions (Accepted or Duplicate), in order.
    pub acked: Vec<TxId>,
    pub busy: u64,
    pub errors: u64,
    pub last_error: Option<String>,
}

impl LoadStats {
    /// Prints what the load did (for the test's log).
    pub fn print(&self) {
        eprintln!(
            "load: {} acknowledged, {} busy, {} errors ({:?})",
            self.acked.len(),
            self.busy,
            self.errors,
            self.last_error
        );
    }
}

/// Waits until `exec` has a receipt for every one of `acked` and asserts that each
/// succeeded: none lost, none rejected (for instance for its nonce), none failed.
pub async fn assert_all_succeed(client: &Client, exec: &str, acked: &[TxId], what: &str) {
    client.wait_executed(exec, acked, what).await;
    let (ok, failed, rejected) = outcomes(client, exec, acked).await;
    eprintln!("outcomes: {ok} succeeded, {failed} failed, {rejected} rejected");
    assert_eq!(
        ok,
        acked.len(),
        "{what}: acknowledged transfers did not succeed ({failed} failed, {rejected} rejected)"
    );
}

/// Signed transfers from `SENDERS` funded accounts (`first..first + SENDERS`) of one
/// chain, `PER_TICK` per tick, each to the next account; a refused transaction is
/// resubmitted unchanged (same id) on the sender's next turn.
pub struct Load {
    pub stop: Arc<AtomicBool>,
    pub stats: Arc<std::sync::Mutex<LoadStats>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Load {
    pub fn start(intake: IntakeClient, scope: TxScope, chain: &ChainSpec, first: u64) -> Load {
        assert!(first + SENDERS < chain.funded_test_accounts, "not enough funded test accounts");
        let keys: Vec<Keypair> =
            (0..=SENDERS).map(|i| Keypair::for_testing(chain.funded_test_accounts_seed + first + i)).collect();
        let chain_id = chain.id;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(std::sync::Mutex::new(LoadStats::default()));
        let (stop2, stats2) = (stop.clone(), stats.clone());
        let task = tokio::spawn(async move {
            let n = SENDERS as usize;
            let mut nonces = vec![0u64; n];
            let mut pending: Vec<Option<Transaction>> = vec![None; n];
            let mut next = 0usize;
            let mut tick = tokio::time::interval(TICK);
            while !stop2.load(Ordering::Relaxed) {
                tick.tick().await;
                let who: Vec<usize> = (0..PER_TICK).map(|k| (next + k) % n).collect();
                next = (next + PER_TICK) % n;
                let txs: Vec<Transaction> = who
                    .iter()
                    .map(|&i| {
                        pending[i]
                            .get_or_insert_with(|| {
                                let to = keys[i + 1].public();
                                ledger::transfer(&keys[i], scope, chain_id, nonces[i], to, AssetId::NATIVE, 1)
                            })
                            .clone()
                    })
                    .collect();
                let results = intake.submit_many(txs).await;
                let mut st = stats2.lock().unwrap();
                for (&i, r) in who.iter().zip(results) {
                    match r {
                        Ok(SubmitOutcome::Accepted(id) | SubmitOutcome::Duplicate(id)) => {
                            st.acked.push(id);
                            nonces[i] += 1;
                            pending[i] = None;
                        }
                        Err(SubmitError::Busy(_)) => st.busy += 1,
                        Err(e) => {
                            st.errors += 1;
                            st.last_error = Some(e.to_string());
                        }
                    }
                }
            }
        });
        Load { stop, stats, task }
    }

    /// Acknowledged so far.
    pub fn acked(&self) -> Vec<TxId> {
        self.stats.lock().unwrap().acked.clone()
    }

    pub fn busy(&self) -> u64 {
        self.stats.lock().unwrap().busy
    }

    pub async fn stop(self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        Arc::try_unwrap(self.stats).unwrap().into_inner().unwrap()
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Counts (success, failed, rejected) receipts of `ids` on `exec`, and prints the first
/// few unsuccessful ones.
pub async fn outcomes(client: &Client, exec: &str, ids: &[TxId]) -> (usize, usize, usize) {
    let mut c = (0, 0, 0);
    for id in ids {
        if let Some(Some((h, r))) = client.receipt(exec, *id).await {
            match r.commitment_bytes()[32] {
                0 => c.0 += 1,
                1 => c.1 += 1,
                _ => c.2 += 1,
            }
            if r.commitment_bytes()[32] != 0 && c.1 + c.2 <= 3 {
                eprintln!("{exec}: {id} at height {h}: {:?}", r.status);
            }
        }
    }
    c
}
