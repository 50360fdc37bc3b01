//! Clients of the settlement layer: the claim-posting seam execution uses, and the
//! typed QUIC query client tools use.

use std::time::Duration;

use lamina_interfaces::{CheckpointClaim, Genesis, Settlement, SettlementError, SubmitError, TxSubmit};
use lamina_net::{Endpoint, NetError, Network, PeerSet, ProtocolConfig};
use lamina_primitives::{Keypair, NodeId, Transaction};
use lamina_settlement_core::Entry;

use crate::query::{SettlementProtocol, SettlementRequest, SettlementResponse};

/// Posts checkpoint claims as settlement transactions through transaction intake: the
/// payload is the encoded [`Entry::Claim`], the chain id is the settlement namespace's,
/// the nonce is the claim's `to` height, signed by the claimer's key (the key that
/// bonds it). Settlement replays that namespace of the log.
#[derive(Debug, Clone)]
pub struct LogSettlement<T> {
    submit: T,
    key: Keypair,
}

impl<T: TxSubmit> LogSettlement<T> {
    /// An adapter that submits with `submit`, signing with `key`.
    pub fn new(submit: T, key: Keypair) -> Self {
        LogSettlement { submit, key }
    }

    /// The transaction that carries `claim`.
    pub fn claim_transaction(key: &Keypair, claim: &CheckpointClaim) -> Result<Transaction, SettlementError> {
        Entry::transaction(key, claim.to.0, &Entry::Claim(claim.clone()))
            .map_err(|e| SettlementError::Rejected(e.to_string()))
    }
}

impl<T: TxSubmit> Settlement for LogSettlement<T> {
    async fn post_claim(&self, claim: CheckpointClaim) -> Result<(), SettlementError> {
        let tx = Self::claim_transaction(&self.key, &claim)?;
        match self.submit.submit(tx).await {
            Ok(_) => Ok(()),
            Err(e @ (SubmitError::Busy(_) | SubmitError::Transport(_))) => {
                Err(SettlementError::Unavailable(e.to_string()))
            }
            Err(e) => Err(SettlementError::Rejected(e.to_string())),
        }
    }
}

/// The QUIC query client of the settlement nodes. Cheap to clone.
#[derive(Clone)]
pub struct SettlementClient {
    net: Network<SettlementProtocol>,
    nodes: Vec<NodeId>,
}

impl std::fmt::Debug for SettlementClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettlementClient").field("nodes", &self.nodes.len()).finish()
    }
}

impl SettlementClient {
    /// Registers the settlement protocol on `endpoint`, dialing the genesis settlement
    /// nodes.
    pub fn register(endpoint: &Endpoint, genesis: &Genesis) -> Result<Self, NetError> {
        let peers = PeerSet::dial_entries(&genesis.settlement_nodes).without(&endpoint.node_id());
        let net = endpoint
            .register_client::<SettlementProtocol>(peers, ProtocolConfig::for_protocol::<SettlementProtocol>())?;
        Ok(SettlementClient { net, nodes: genesis.settlement_nodes.iter().map(|n| n.key).collect() })
    }

    /// Asks the settlement nodes in turn until one answers.
    pub async fn query(&self, request: &SettlementRequest, timeout: Duration) -> Result<SettlementResponse, NetError> {
        let mut last = NetError::Config("no settlement node in the genesis".into());
        for n in &self.nodes {
            if !self.net.is_connected(n)
                && let Err(e) = self.net.wait_connected(n, timeout).await
            {
                last = e;
                continue;
            }
            match self.net.request_with_timeout(n, request, timeout).await {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}
