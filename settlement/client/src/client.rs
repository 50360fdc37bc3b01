//! Clients of the settlement layer: the claim-posting seam execution uses, and the
//! typed QUIC query client tools use.

use std::time::Duration;

use lamina_interfaces::{CheckpointClaim, Genesis, Settlement, SettlementError, SubmitError, TxSubmit};
use lamina_net::{Endpoint, NetError, Network, PeerSet, ProtocolConfig};
use lamina_primitives::{Keypair, NodeId, Transaction, TxScope};
use lamina_settlement_core::Entry;

use crate::protocol::{SettlementProtocol, SettlementRequest, SettlementResponse};

/// Posts checkpoint claims as settlement transactions through transaction intake: the
/// payload is the encoded [`Entry::Claim`], the chain id is the settlement namespace's,
/// the nonce is the claim's `to` height, signed by the claimer's key (the key that
/// bonds it). Settlement replays that namespace of the log.
///
/// Each claim goes to every validator ([`TxSubmit::submit_widely`]), as fraud proofs
/// do: a claim routed to one validator that never orders it (crashed, censoring, or
/// dispersing squares that are proven wrongly encoded, whose data counts as absent)
/// would be lost, and every later claim of this claimer would wait for it as parent
/// until its hold expires — the chain would never finalize again. The copies ordered
/// after the first are rejected harmlessly by settlement (same id, used nonce).
#[derive(Debug, Clone)]
pub struct LogSettlement<T> {
    submit: T,
    key: Keypair,
    scope: TxScope,
}

impl<T: TxSubmit> LogSettlement<T> {
    /// An adapter that submits with `submit`, signing with `key` for a network of
    /// scope `scope` (`Genesis::tx_scope`).
    pub fn new(submit: T, key: Keypair, scope: TxScope) -> Self {
        LogSettlement { submit, key, scope }
    }

    /// The transaction that carries `claim`, signed for a network of scope `scope`.
    pub fn claim_transaction(
        key: &Keypair,
        scope: TxScope,
        claim: &CheckpointClaim,
    ) -> Result<Transaction, SettlementError> {
        Entry::transaction(key, scope, claim.to.0, &Entry::Claim(claim.clone()))
            .map_err(|e| SettlementError::Rejected(e.to_string()))
    }
}

impl<T: TxSubmit> Settlement for LogSettlement<T> {
    async fn post_claim(&self, claim: CheckpointClaim) -> Result<(), SettlementError> {
        let tx = Self::claim_transaction(&self.key, self.scope, &claim)?;
        match self.submit.submit_widely(tx).await {
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

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::{Arc, Mutex};

    use lamina_interfaces::SubmitOutcome;
    use lamina_primitives::{ChainId, Digest, Height, Signature};

    use super::*;

    /// Records which intake call carried each transaction.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<&'static str>>>);

    impl TxSubmit for Recorder {
        fn submit(&self, _tx: Transaction) -> impl Future<Output = Result<SubmitOutcome, SubmitError>> + Send {
            self.0.lock().unwrap().push("one validator");
            async { Ok(SubmitOutcome::Accepted(lamina_primitives::TxId(Digest::ZERO))) }
        }
        fn submit_many(
            &self,
            txs: Vec<Transaction>,
        ) -> impl Future<Output = Vec<Result<SubmitOutcome, SubmitError>>> + Send {
            self.0.lock().unwrap().push("one validator");
            async move { txs.iter().map(|_| Ok(SubmitOutcome::Accepted(lamina_primitives::TxId(Digest::ZERO)))).collect() }
        }
        fn submit_widely(&self, _tx: Transaction) -> impl Future<Output = Result<SubmitOutcome, SubmitError>> + Send {
            self.0.lock().unwrap().push("every validator");
            async { Ok(SubmitOutcome::Accepted(lamina_primitives::TxId(Digest::ZERO))) }
        }
    }

    #[tokio::test]
    async fn claims_go_to_every_validator_so_one_cannot_lose_them() {
        let key = Keypair::from_seed([7; 32]);
        let claim = CheckpointClaim {
            network: Digest::ZERO,
            chain_id: ChainId(1),
            parent: Digest::ZERO,
            from: Height(0),
            to: Height(10),
            steps: vec![],
            state_root: Digest::ZERO,
            receipts_root: Digest::ZERO,
            params: Digest::ZERO,
            claimer: key.public(),
            signature: Signature([0; 64]),
        };
        let rec = Recorder::default();
        LogSettlement::new(rec.clone(), key, TxScope::ChainOnly).post_claim(claim).await.unwrap();
        assert_eq!(*rec.0.lock().unwrap(), vec!["every validator"]);
    }
}
