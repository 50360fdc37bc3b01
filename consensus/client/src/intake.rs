//! [`IntakeClient`]: submits transactions to the validators' QUIC intake
//! (`lamina/intake/1..2`).

use std::time::{Duration, Instant};

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
    /// Validators that answered they are outside the committee, and when: skipped by
    /// `route` for [`OUTSIDE_TTL`].
    outside: std::sync::Arc<parking_lot::Mutex<std::collections::HashMap<NodeId, Instant>>>,
}

/// How long a validator that said it is outside the committee is skipped before it is
/// asked again (it may be voted back in).
const OUTSIDE_TTL: Duration = Duration::from_secs(10);

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
        Ok(IntakeClient {
            net,
            validators: genesis.validators.iter().map(|v| v.key).collect(),
            outside: Default::default(),
        })
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
        self.submit_keeping(validator, txs).await.0
    }

    /// [`IntakeClient::submit_to`], handing the transactions back (for a retry elsewhere).
    async fn submit_keeping(
        &self,
        validator: &NodeId,
        txs: Vec<Transaction>,
    ) -> (Result<Vec<Result<SubmitOutcome, SubmitError>>, NetError>, Vec<Transaction>) {
        let n = txs.len();
        let req = SubmitRequest { txs };
        let answer = match self.net.request(validator, &req).await {
            Ok(resp) if resp.results.len() != n => {
                Err(NetError::MalformedFrame(format!("{} results for {n} transactions", resp.results.len())))
            }
            Ok(resp) => Ok(resp.results.into_iter().map(Into::into).collect()),
            Err(e) => Err(e),
        };
        (answer, req.txs)
    }

    /// The validator a sender's transactions go to: a fixed choice per sender, so that
    /// resubmitting is idempotent (the same mempool sees it again) and a sender's nonces
    /// reach one mempool in order. If it is not connected, or said lately that it is
    /// outside the committee, the next one.
    fn route(&self, sender: &lamina_primitives::PublicKey) -> impl Iterator<Item = NodeId> + '_ {
        let n = self.validators.len();
        let first = u64::from_le_bytes(sender.0[..8].try_into().unwrap_or([0; 8])) as usize % n.max(1);
        (0..n).map(move |k| self.validators[(first + k) % n])
    }

    /// Whether `v` said within [`OUTSIDE_TTL`] that it is outside the committee.
    fn is_outside(&self, v: &NodeId) -> bool {
        let mut outside = self.outside.lock();
        outside.retain(|_, at| at.elapsed() < OUTSIDE_TTL);
        outside.contains_key(v)
    }

    async fn submit_chunk(&self, txs: Vec<Transaction>) -> Vec<Result<SubmitOutcome, SubmitError>> {
        let n = txs.len();
        let mut out: Vec<Option<Result<SubmitOutcome, SubmitError>>> = vec![None; n];
        let mut pending: Vec<(usize, Transaction)> = txs.into_iter().enumerate().collect();
        // A validator outside the committee refuses everything (nothing it accepted
        // would be ordered): its senders go on to the next validator of their route,
        // each round skipping the validators that said so.
        for _ in 0..self.validators.len().max(1) {
            if pending.is_empty() {
                break;
            }
            // Group by target validator, keeping each sender's order.
            pending.sort_by_key(|(i, _)| *i);
            let mut groups: std::collections::BTreeMap<NodeId, Vec<(usize, Transaction)>> = Default::default();
            for (i, tx) in pending.drain(..) {
                let usable = |v: &NodeId| self.net.is_connected(v) && !self.is_outside(v);
                let target = self.route(&tx.sender).find(usable).or_else(|| self.route(&tx.sender).next());
                groups.entry(target.unwrap_or(self.validators[0])).or_default().push((i, tx));
            }
            let sends = groups.into_iter().map(|(v, group)| {
                let this = self.clone();
                async move {
                    let (idx, txs): (Vec<usize>, Vec<Transaction>) = group.into_iter().unzip();
                    let (r, txs) = this.submit_keeping(&v, txs).await;
                    (v, idx, txs, r)
                }
            });
            for (v, idx, txs, r) in futures::future::join_all(sends).await {
                match r {
                    Ok(results) => {
                        for ((i, tx), r) in idx.into_iter().zip(txs).zip(results) {
                            if let Err(e) = &r
                                && e.is_outside_committee()
                            {
                                self.outside.lock().insert(v, Instant::now());
                                pending.push((i, tx));
                            }
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
            // Retry only where another validator is left to ask.
            if self.validators.iter().all(|v| self.is_outside(v)) {
                break;
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
