//! [`IntakeClient`]: submits transactions to the validators' QUIC intake
//! (`lamina/intake/1..2`).

use std::time::Duration;

use lamina_interfaces::{Genesis, SubmitError, SubmitOutcome, TxSubmit};
use lamina_net::{Endpoint, NetError, Network, PeerSet, ProtocolConfig};
use lamina_primitives::{NodeId, Transaction};

use crate::protocol::{IntakeProtocol, MAX_SUBMIT_TXS, SubmitRequest};

/// The QUIC intake client: submits to the validators of a genesis, each sender's
/// transactions to one validator (see `route`), requests to different validators in
/// parallel. Cheap to clone.
#[derive(Clone)]
pub struct IntakeClient {
    net: Network<IntakeProtocol>,
    validators: Vec<NodeId>,
}

impl std::fmt::Debug for IntakeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntakeClient").field("validators", &self.validators.len()).finish()
    }
}

impl IntakeClient {
    /// Registers the intake protocol on `endpoint`, dialing every validator of
    /// `genesis`. The endpoint's key must be a genesis node or one of the validators'
    /// configured `intake_clients`.
    pub fn register(endpoint: &Endpoint, genesis: &Genesis) -> Result<Self, NetError> {
        let peers = PeerSet::dial_entries(&genesis.validators).without(&endpoint.node_id());
        let net =
            endpoint.register_client::<IntakeProtocol>(peers, ProtocolConfig::for_protocol::<IntakeProtocol>())?;
        Ok(IntakeClient { net, validators: genesis.validators.iter().map(|v| v.key).collect() })
    }

    /// The intake protocol version negotiated with `validator` (`None` while not
    /// connected): 2 with a validator of this release, 1 with an older one.
    pub fn version(&self, validator: &NodeId) -> Option<u32> {
        self.net.version(validator)
    }

    /// Waits until `n` validators are connected.
    pub async fn wait_for_validators(&self, n: usize, timeout: Duration) -> Result<(), NetError> {
        self.net.wait_for_peers(n, timeout).await
    }

    /// Submits to one validator.
    pub async fn submit_to(
        &self,
        validator: &NodeId,
        txs: Vec<Transaction>,
    ) -> Result<Vec<Result<SubmitOutcome, SubmitError>>, NetError> {
        let n = txs.len();
        let resp = self.net.request(validator, &SubmitRequest { txs }).await?;
        if resp.results.len() != n {
            return Err(NetError::MalformedFrame(format!("{} results for {n} transactions", resp.results.len())));
        }
        Ok(resp.results.into_iter().map(Into::into).collect())
    }

    /// The validator a sender's transactions go to: a fixed choice per sender, so that
    /// resubmitting is idempotent (the same mempool sees it again) and a sender's nonces
    /// reach one mempool in order. If it is not connected, the next connected one.
    fn route(&self, sender: &lamina_primitives::PublicKey) -> impl Iterator<Item = NodeId> + '_ {
        let n = self.validators.len();
        let first = u64::from_le_bytes(sender.0[..8].try_into().unwrap_or([0; 8])) as usize % n.max(1);
        (0..n).map(move |k| self.validators[(first + k) % n])
    }

    async fn submit_chunk(&self, txs: Vec<Transaction>) -> Vec<Result<SubmitOutcome, SubmitError>> {
        // Group by target validator, keeping each sender's order.
        let n = txs.len();
        let mut groups: std::collections::BTreeMap<NodeId, Vec<(usize, Transaction)>> = Default::default();
        for (i, tx) in txs.into_iter().enumerate() {
            let target = self.route(&tx.sender).find(|v| self.net.is_connected(v));
            match target {
                Some(v) => groups.entry(v).or_default().push((i, tx)),
                None => groups.entry(self.validators[0]).or_default().push((i, tx)),
            }
        }
        let mut out: Vec<Option<Result<SubmitOutcome, SubmitError>>> = vec![None; n];
        let sends = groups.into_iter().map(|(v, group)| {
            let this = self.clone();
            async move {
                let (idx, txs): (Vec<usize>, Vec<Transaction>) = group.into_iter().unzip();
                let r = this.submit_to(&v, txs).await;
                (idx, r)
            }
        });
        for (idx, r) in futures::future::join_all(sends).await {
            match r {
                Ok(results) => {
                    for (i, r) in idx.into_iter().zip(results) {
                        out[i] = Some(r);
                    }
                }
                Err(e) => {
                    for i in idx {
                        out[i] = Some(Err(SubmitError::Transport(e.to_string())));
                    }
                }
            }
        }
        out.into_iter().map(|r| r.unwrap_or_else(|| Err(SubmitError::Transport("no answer".into())))).collect()
    }
}

impl TxSubmit for IntakeClient {
    fn submit(&self, tx: Transaction) -> impl Future<Output = Result<SubmitOutcome, SubmitError>> + Send {
        let this = self.clone();
        async move {
            this.submit_chunk(vec![tx]).await.pop().unwrap_or_else(|| Err(SubmitError::Transport("no answer".into())))
        }
    }

    fn submit_many(
        &self,
        txs: Vec<Transaction>,
    ) -> impl Future<Output = Vec<Result<SubmitOutcome, SubmitError>>> + Send {
        let this = self.clone();
        async move {
            let mut out = Vec::with_capacity(txs.len());
            let mut rest = txs;
            while !rest.is_empty() {
                let tail = rest.split_off(rest.len().min(MAX_SUBMIT_TXS));
                out.extend(this.submit_chunk(rest).await);
                rest = tail;
            }
            out
        }
    }

    fn submit_widely(&self, tx: Transaction) -> impl Future<Output = Result<SubmitOutcome, SubmitError>> + Send {
        let this = self.clone();
        async move {
            let sends = this.validators.iter().map(|v| this.submit_to(v, vec![tx.clone()]));
            let mut last = Err(SubmitError::Transport("no validator in the genesis".into()));
            for r in futures::future::join_all(sends).await {
                match r
                    .map_err(|e| SubmitError::Transport(e.to_string()))
                    .and_then(|mut v| v.pop().unwrap_or_else(|| Err(SubmitError::Transport("no answer".into()))))
                {
                    Ok(o) => return Ok(o),
                    Err(e) => last = Err(e),
                }
            }
            last
        }
    }
}
