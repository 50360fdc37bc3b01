//! A wallet's end-to-end run against a counter chain, as any client would do it: a fresh
//! key that no genesis lists (client access is open by default), transactions through
//! consensus intake, receipts and state from the execution nodes over QUIC.
//!
//! [`run`] submits four operations — add 5, add 7, subtract 100 (fails: underflow, yet
//! included), set a note — waits for their receipts and checks the outcomes and the
//! state they left. It fails with the reason when anything differs.

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use lamina_consensus_client::IntakeClient;
use lamina_execution_client::client::QueryClient;
use lamina_execution_core::{Receipt, Status};
use lamina_interfaces::{Genesis, TxSubmit};
use lamina_net::{Endpoint, EndpointConfig};
use lamina_primitives::{ChainId, Height, Keypair, PublicKey, TxId};

use crate::counter::{Call, CounterFailure, counter_key, note_key, total_key};

/// What the scenario saw.
#[derive(Debug)]
pub struct Report {
    /// The wallet's key.
    pub wallet: PublicKey,
    /// Each operation's receipt, with the height that included it.
    pub receipts: Vec<(Height, Receipt<CounterFailure>)>,
    /// The wallet's counter afterwards.
    pub counter: u128,
    /// The chain's total afterwards.
    pub total: u128,
    /// The height the state was read at.
    pub height: Height,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "wallet {} (not in the genesis)", self.wallet)?;
        for (h, r) in &self.receipts {
            let status = match &r.status {
                Status::Success => "success".to_string(),
                Status::Failed(e) => format!("failed ({e})"),
                Status::Rejected(e) => format!("rejected ({e})"),
            };
            writeln!(f, "  tx {} at height {h}: {status}", r.tx_id)?;
        }
        write!(f, "counter {} and chain total {} at height {}", self.counter, self.total, self.height)
    }
}

/// A wallet's connections to one counter chain.
struct Wallet {
    key: Keypair,
    /// What the network's transaction signatures bind.
    scope: lamina_primitives::TxScope,
    endpoint: Endpoint,
    intake: IntakeClient,
    queries: QueryClient<CounterFailure>,
    validators: usize,
}

impl Wallet {
    fn open(genesis: &Genesis, chain: ChainId) -> anyhow::Result<Wallet> {
        let key = lamina_node::keys::generate()?;
        let endpoint = Endpoint::bind(&key, EndpointConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0))))
            .context("cannot bind a client endpoint")?;
        let intake = IntakeClient::register(&endpoint, genesis).context("intake client")?;
        let queries = QueryClient::register_chain(&endpoint, genesis, chain).context("query client")?;
        ensure!(!queries.nodes(chain).is_empty(), "chain {chain} has no execution node in the genesis");
        Ok(Wallet { key, scope: genesis.tx_scope(), endpoint, intake, queries, validators: genesis.validators.len() })
    }

    async fn receipt(
        &self,
        chain: ChainId,
        id: TxId,
        timeout: Duration,
    ) -> anyhow::Result<(Height, Receipt<CounterFailure>)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.queries.receipt(chain, id).await? {
                Some(r) => return Ok(r),
                None if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
                None => bail!("transaction {id} not executed within {timeout:?}"),
            }
        }
    }
}

/// Runs the scenario against the network of `genesis` (chain `chain` must run the counter
/// machine); `timeout` bounds the wait for each receipt.
pub async fn run(genesis: &Genesis, chain: ChainId, timeout: Duration) -> anyhow::Result<Report> {
    let w = Wallet::open(genesis, chain)?;
    let result = scenario(&w, chain, timeout).await;
    w.endpoint.shutdown().await;
    result
}

async fn scenario(w: &Wallet, chain: ChainId, timeout: Duration) -> anyhow::Result<Report> {
    // Every validator connected: a sender's transactions then all go to one mempool.
    w.intake.wait_for_validators(w.validators, Duration::from_secs(30)).await.context("validators unreachable")?;
    let note = format!("hello from {}", &w.key.public().to_hex()[..8]).into_bytes();
    let calls = [Call::Add(5), Call::Add(7), Call::Sub(100), Call::Note(note.clone())];
    let txs: Vec<_> = calls.iter().enumerate().map(|(n, c)| c.sign(&w.key, w.scope, chain, n as u64)).collect();
    let ids: Vec<TxId> = txs.iter().map(|t| t.id()).collect();
    for (i, r) in w.intake.submit_many(txs).await.into_iter().enumerate() {
        r.with_context(|| format!("intake refused operation {i}"))?;
    }
    let mut receipts = Vec::new();
    for id in ids {
        receipts.push(w.receipt(chain, id, timeout).await?);
    }
    let statuses: Vec<_> = receipts.iter().map(|(_, r)| r.status.clone()).collect();
    ensure!(
        statuses == [Status::Success, Status::Success, Status::Failed(CounterFailure::Underflow), Status::Success],
        "unexpected outcomes: {statuses:?}"
    );
    let last = receipts.iter().map(|(h, _)| *h).max().unwrap_or_default();
    let (height, counter) = w.queries.counter(chain, counter_key(&w.key.public())).await?;
    ensure!(height >= last, "state read at height {height}, before the receipts' {last}");
    ensure!(counter == 12, "counter {counter}, expected 12 (5 + 7; the failed subtraction changes nothing)");
    let (_, total) = w.queries.counter(chain, total_key()).await?;
    ensure!(total >= 12, "chain total {total} below this wallet's counter");
    match w.queries.data(chain, note_key(&w.key.public())).await? {
        (_, Some(v)) if v == note => {}
        other => bail!("note not stored: {other:?}"),
    }
    Ok(Report { wallet: w.key.public(), receipts, counter, total, height })
}
