//! The network seam of the bridge ([`lamina_bridge_service::BridgeNet`]), filled with the
//! layers' QUIC clients: execution queries per chain, settlement queries, and the
//! consensus intake. Used by the relayer module and by `lamina bridge transfer | status |
//! audit`.

use std::time::Duration;

use anyhow::Context as _;
use lamina_bridge_core::{ChainTotals, Entry};
use lamina_bridge_service::BridgeNet;
use lamina_consensus_client::IntakeClient;
use lamina_execution_client::BridgeItem;
use lamina_execution_client::client::QueryClient;
use lamina_execution_client::protocol::{QueryRequest, QueryResponse};
use lamina_execution_core::ledger;
use lamina_interfaces::{BridgeMessage, FinalizedRoot, Genesis, ReceiptKind, TxSubmit as _};
use lamina_net::Endpoint;
use lamina_primitives::{ChainId, Height, Keypair, PublicKey, Transaction, TxScope};
use lamina_settlement_client::client::SettlementClient;
use lamina_settlement_client::protocol::{SettlementRequest, SettlementResponse};

/// Most entries [`NetBridge::all_outbox`] lists.
pub const MAX_LISTED: usize = 1_000_000;

/// How long one query may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The bridge's view of a network.
pub struct NetBridge {
    genesis: Genesis,
    /// What the network's transaction signatures bind: receipts and refunds are signed
    /// in it.
    scope: TxScope,
    /// One execution query client for every execution node (one registration per
    /// protocol and endpoint).
    exec: QueryClient,
    settlement: SettlementClient,
    intake: IntakeClient,
}

impl std::fmt::Debug for NetBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetBridge").field("exec", &self.exec).finish_non_exhaustive()
    }
}

fn entry(i: &BridgeItem) -> Option<Entry> {
    Some(Entry {
        message: BridgeMessage::decode(&i.message).ok()?,
        written_at: i.written_at,
        receipt: ReceiptKind::from_u8(i.receipt),
        proof: i.proof.clone(),
        refunded_at: i.refunded_at,
    })
}

impl NetBridge {
    /// Registers the clients on `endpoint` (which must not already serve them).
    pub fn register(endpoint: &Endpoint, genesis: &Genesis) -> anyhow::Result<Self> {
        let exec = QueryClient::register(endpoint, genesis).context("cannot start the execution query client")?;
        if genesis.settlement_nodes.is_empty() {
            anyhow::bail!("the genesis has no settlement node: the bridge needs finalized anchors");
        }
        let settlement =
            SettlementClient::register(endpoint, genesis).context("cannot start the settlement query client")?;
        let intake = IntakeClient::register(endpoint, genesis).context("cannot start the intake client")?;
        Ok(NetBridge { scope: genesis.tx_scope(), genesis: genesis.clone(), exec, settlement, intake })
    }

    /// The intake client.
    pub fn intake(&self) -> &IntakeClient {
        &self.intake
    }

    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// Asks `chain`'s execution nodes in turn until one answers.
    pub async fn ask(&self, chain: ChainId, req: &QueryRequest) -> Result<QueryResponse, String> {
        self.exec.ask(chain, req).await.map_err(|e| format!("chain {chain}: {e}"))
    }

    async fn items(&self, chain: ChainId, req: QueryRequest) -> Result<(Height, Vec<Entry>), String> {
        match self.ask(chain, &req).await? {
            QueryResponse::Bridge(h, items) => Ok((h, items.iter().filter_map(entry).collect())),
            _ => Err(format!("chain {chain}: unexpected answer to a bridge query")),
        }
    }

    /// `chain`'s bridge counters and execution height.
    pub async fn totals(&self, chain: ChainId) -> Result<ChainTotals, String> {
        match self.ask(chain, &QueryRequest::BridgeTotals).await? {
            QueryResponse::BridgeTotals(height, list) => Ok(ChainTotals {
                chain,
                height,
                pairs: list.into_iter().map(|(peer, _, oc, oa, c)| ((peer, oc, oa), c)).collect(),
            }),
            _ => Err(format!("chain {chain}: unexpected answer to a totals query")),
        }
    }

    /// `chain`'s committed execution height.
    pub async fn height(&self, chain: ChainId) -> Result<Height, String> {
        match self.ask(chain, &QueryRequest::Status).await? {
            QueryResponse::Status(s) => Ok(s.height),
            _ => Err(format!("chain {chain}: unexpected answer to a status query")),
        }
    }

    /// Outbound messages of `chain` to `dest` from `from` on, page after page, at most
    /// [`MAX_LISTED`] (every page must move forward).
    pub async fn all_outbox(&self, chain: ChainId, dest: ChainId, from: u64) -> Result<Vec<Entry>, String> {
        let mut out: Vec<Entry> = Vec::new();
        let mut at = from;
        while out.len() < MAX_LISTED {
            let (_, page) = self.items(chain, QueryRequest::BridgeOutbox(dest, at)).await?;
            if page.first().is_none_or(|e| e.message.sequence < at) {
                break;
            }
            let Some(next) = page.last().and_then(|l| l.message.sequence.checked_add(1)) else {
                out.extend(page);
                break;
            };
            at = next;
            out.extend(page);
        }
        Ok(out)
    }
}

impl BridgeNet for NetBridge {
    fn chains(&self) -> Vec<ChainId> {
        self.exec.chains()
    }

    async fn outbox(&self, chain: ChainId, dest: ChainId, from: u64) -> Result<(Height, Vec<Entry>), String> {
        self.items(chain, QueryRequest::BridgeOutbox(dest, from)).await
    }

    async fn receipts(&self, chain: ChainId, source: ChainId, from: u64) -> Result<(Height, Vec<Entry>), String> {
        self.items(chain, QueryRequest::BridgeInbound(source, from)).await
    }

    async fn nonce(&self, chain: ChainId, account: PublicKey) -> Result<u64, String> {
        match self.ask(chain, &QueryRequest::Nonce(account)).await? {
            QueryResponse::Nonce(_, n) => Ok(n),
            _ => Err(format!("chain {chain}: unexpected answer to a nonce query")),
        }
    }

    async fn anchor(&self, chain: ChainId, at: Height) -> Result<Option<FinalizedRoot>, String> {
        match self.settlement.query(&SettlementRequest::Anchor(chain, at), TIMEOUT).await {
            Ok(SettlementResponse::Anchor(a)) => Ok(a.map(|a| FinalizedRoot {
                chain,
                index: a.index,
                to: a.height,
                state_root: a.state_root,
                finalized_at: a.finalized_at,
                usable_until: None,
            })),
            Ok(_) => Err("settlement: unexpected answer to an anchor query".into()),
            Err(e) => Err(format!("settlement unreachable: {e}")),
        }
    }

    async fn submit(&self, txs: Vec<Transaction>) -> Vec<Result<(), String>> {
        self.intake.submit_many(txs).await.into_iter().map(|r| r.map(|_| ()).map_err(|e| e.to_string())).collect()
    }

    fn receive_tx(&self, key: &Keypair, nonce: u64, m: &BridgeMessage, proof: Vec<u8>) -> Transaction {
        ledger::bridge_receive(key, self.scope, m.dest, nonce, *m, proof)
    }

    fn refund_tx(&self, key: &Keypair, nonce: u64, m: &BridgeMessage, proof: Vec<u8>) -> Transaction {
        ledger::bridge_refund(key, self.scope, m.source, nonce, *m, proof)
    }
}
