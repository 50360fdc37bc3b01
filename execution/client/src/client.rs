//! A typed client of the execution query protocol ([`QueryProtocol`]): what wallets, the
//! CLI, the bridge relayer and chain builders' tools use to read a chain.
//!
//! One [`QueryClient`] serves every chain of a genesis: a query names its chain and is
//! asked of that chain's execution nodes in genesis order, each connected on demand,
//! until one answers. `F` is the chain machine's failure type (the native ledger's by
//! default), which receipts carry.

use std::collections::BTreeMap;
use std::time::Duration;

use lamina_execution_core::ledger::{AssetId, LedgerFailure};
use lamina_execution_core::{ChainFailure, CounterKey, DataKey, Receipt};
use lamina_interfaces::{Genesis, NodeEntry};
use lamina_net::{Endpoint, NetError, Network, PeerSet, ProtocolConfig};
use lamina_primitives::{ChainId, Height, PublicKey, TxId};

use crate::protocol::{QueryProtocol, QueryRequest, QueryResponse, StatusInfo};

/// How long a node may take to connect before the next one is asked.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one query may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a query got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    /// The genesis lists no execution node for the chain.
    #[error("chain {0} has no execution node in the genesis")]
    NoNode(ChainId),
    /// No execution node of the chain answered; each one's reason.
    #[error("execution node unreachable: {}", .0.join("; "))]
    Unreachable(Vec<String>),
    /// The asked height was pruned by the node's retention window.
    #[error("height {height} was pruned: the node keeps records from height {retained_from} on")]
    Pruned {
        /// The asked height.
        height: Height,
        /// The lowest height the node keeps.
        retained_from: Height,
    },
    /// The node could not read its own store.
    #[error("execution node failed to answer: {0}")]
    Failed(String),
    /// A node answered with another kind of answer (a bug or a foreign node).
    #[error("execution node answered a {asked} query with {got}")]
    Unexpected {
        /// The query.
        asked: &'static str,
        /// What came back.
        got: &'static str,
    },
}

/// Reads chains from their execution nodes. Cheap to clone.
#[derive(Clone)]
pub struct QueryClient<F: ChainFailure = LedgerFailure> {
    net: Network<QueryProtocol<F>>,
    chains: BTreeMap<ChainId, Vec<NodeEntry>>,
}

impl<F: ChainFailure> std::fmt::Debug for QueryClient<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryClient").field("chains", &self.chains.keys().collect::<Vec<_>>()).finish()
    }
}

/// The kind of an answer, for errors.
pub fn kind<F>(r: &QueryResponse<F>) -> &'static str {
    match r {
        QueryResponse::Status(_) => "a status",
        QueryResponse::Balance(..) => "a balance",
        QueryResponse::Nonce(..) => "a nonce",
        QueryResponse::Receipt(_) => "a receipt",
        QueryResponse::BlockReceipts(..) => "block receipts",
        QueryResponse::Pruned(_) => "pruned",
        QueryResponse::Failed(_) => "a failure",
        QueryResponse::BalanceProof(..) => "a balance proof",
        QueryResponse::Outcomes(..) => "outcomes",
        QueryResponse::Bridge(..) => "bridge entries",
        QueryResponse::BridgeTotals(..) => "bridge totals",
        QueryResponse::Counter(..) => "a counter",
        QueryResponse::Data(..) => "a data value",
    }
}

impl<F: ChainFailure> QueryClient<F> {
    /// Registers the query protocol on `endpoint` for every execution node of `genesis`
    /// (except the endpoint's own key).
    pub fn register(endpoint: &Endpoint, genesis: &Genesis) -> Result<Self, NetError> {
        Self::register_where(endpoint, genesis, |_| true)
    }

    /// [`QueryClient::register`] for the execution nodes of `chain` only (a wallet of one
    /// chain dials no other chain's nodes).
    pub fn register_chain(endpoint: &Endpoint, genesis: &Genesis, chain: ChainId) -> Result<Self, NetError> {
        Self::register_where(endpoint, genesis, |c| c == chain)
    }

    fn register_where(
        endpoint: &Endpoint,
        genesis: &Genesis,
        keep: impl Fn(ChainId) -> bool,
    ) -> Result<Self, NetError> {
        let me = endpoint.node_id();
        let mut chains: BTreeMap<ChainId, Vec<NodeEntry>> = BTreeMap::new();
        for n in genesis.execution_nodes.iter().filter(|n| n.key != me) {
            if let Some(c) = n.chain.filter(|c| keep(*c)) {
                chains.entry(c).or_default().push(n.clone());
            }
        }
        let net = endpoint.register_client::<QueryProtocol<F>>(
            PeerSet::dial_entries(chains.values().flatten()),
            ProtocolConfig::for_protocol::<QueryProtocol<F>>(),
        )?;
        Ok(QueryClient { net, chains })
    }

    /// The chains this client reads (those with an execution node in the genesis).
    pub fn chains(&self) -> Vec<ChainId> {
        self.chains.keys().copied().collect()
    }

    /// The execution nodes of `chain`, in the order they are asked.
    pub fn nodes(&self, chain: ChainId) -> &[NodeEntry] {
        self.chains.get(&chain).map_or(&[], Vec::as_slice)
    }

    /// Asks `chain`'s execution nodes in turn until one answers.
    pub async fn ask(&self, chain: ChainId, req: &QueryRequest) -> Result<QueryResponse<F>, QueryError> {
        let nodes = self.nodes(chain);
        if nodes.is_empty() {
            return Err(QueryError::NoNode(chain));
        }
        let mut errors = Vec::new();
        for n in nodes {
            if !self.net.is_connected(&n.key)
                && let Err(e) = self.net.wait_connected(&n.key, CONNECT_TIMEOUT).await
            {
                errors.push(format!("{} ({}): {e}", n.name, n.addr));
                continue;
            }
            match self.net.request_with_timeout(&n.key, req, QUERY_TIMEOUT).await {
                Ok(r) => return Ok(r),
                Err(e) => errors.push(format!("{} ({}): {e}", n.name, n.addr)),
            }
        }
        Err(QueryError::Unreachable(errors))
    }

    /// The chain's committed height and roots.
    pub async fn status(&self, chain: ChainId) -> Result<StatusInfo, QueryError> {
        match self.ask(chain, &QueryRequest::Status).await? {
            QueryResponse::Status(s) => Ok(s),
            other => Err(QueryError::Unexpected { asked: "status", got: kind(&other) }),
        }
    }

    /// A native-ledger balance, with the height it was read at.
    pub async fn balance(
        &self,
        chain: ChainId,
        account: PublicKey,
        asset: AssetId,
    ) -> Result<(Height, u128), QueryError> {
        match self.ask(chain, &QueryRequest::Balance(account, asset)).await? {
            QueryResponse::Balance(h, v) => Ok((h, v)),
            other => Err(QueryError::Unexpected { asked: "balance", got: kind(&other) }),
        }
    }

    /// A native-ledger account's next nonce, with the height it was read at.
    pub async fn nonce(&self, chain: ChainId, account: PublicKey) -> Result<(Height, u64), QueryError> {
        match self.ask(chain, &QueryRequest::Nonce(account)).await? {
            QueryResponse::Nonce(h, n) => Ok((h, n)),
            other => Err(QueryError::Unexpected { asked: "nonce", got: kind(&other) }),
        }
    }

    /// A transaction's receipt and the height that included it; `None` if not (yet)
    /// executed.
    pub async fn receipt(&self, chain: ChainId, tx: TxId) -> Result<Option<(Height, Receipt<F>)>, QueryError> {
        match self.ask(chain, &QueryRequest::Receipt(tx)).await? {
            QueryResponse::Receipt(r) => Ok(r),
            QueryResponse::Failed(e) => Err(QueryError::Failed(e)),
            other => Err(QueryError::Unexpected { asked: "receipt", got: kind(&other) }),
        }
    }

    /// Every receipt of a committed height, in block order, with the committed height
    /// the answer was read at; [`QueryError::Pruned`] when the height was pruned.
    pub async fn block_receipts(
        &self,
        chain: ChainId,
        height: Height,
    ) -> Result<(Height, Vec<Receipt<F>>), QueryError> {
        let mut out = Vec::new();
        loop {
            let skip = u32::try_from(out.len()).unwrap_or(u32::MAX);
            match self.ask(chain, &QueryRequest::BlockReceipts(height, skip)).await? {
                QueryResponse::BlockReceipts(committed, _, total, page) => {
                    let empty = page.is_empty();
                    out.extend(page);
                    // A block holds at most what fits in a 16 MiB record: stop there
                    // whatever `total` a node claims.
                    if empty || out.len() >= total as usize || out.len() >= 1 << 20 {
                        return Ok((committed, out));
                    }
                }
                QueryResponse::Pruned(from) => return Err(QueryError::Pruned { height, retained_from: from }),
                QueryResponse::Failed(e) => return Err(QueryError::Failed(e)),
                other => return Err(QueryError::Unexpected { asked: "block receipts", got: kind(&other) }),
            }
        }
    }

    /// Any counter key's value (a chain builder's machine's state).
    pub async fn counter(&self, chain: ChainId, key: CounterKey) -> Result<(Height, u128), QueryError> {
        match self.ask(chain, &QueryRequest::Counter(key)).await? {
            QueryResponse::Counter(h, v) => Ok((h, v)),
            other => Err(QueryError::Unexpected { asked: "counter", got: kind(&other) }),
        }
    }

    /// Any data key's value.
    pub async fn data(&self, chain: ChainId, key: DataKey) -> Result<(Height, Option<Vec<u8>>), QueryError> {
        match self.ask(chain, &QueryRequest::Data(key)).await? {
            QueryResponse::Data(h, v) => Ok((h, v)),
            other => Err(QueryError::Unexpected { asked: "data", got: kind(&other) }),
        }
    }
}
