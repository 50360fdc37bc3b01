//! [`IntakeClient`]: submits transactions to the validators' QUIC intake
//! (`lamina/intake/1..2`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lamina_interfaces::{Genesis, NodeEntry, SubmitError, SubmitOutcome, TxSubmit};
use lamina_net::{Endpoint, NetError, Network, PeerSet, ProtocolConfig};
use lamina_primitives::{NodeId, Transaction};
use parking_lot::{Mutex, RwLock};

use crate::protocol::{IntakeProtocol, MAX_SUBMIT_TXS, SubmitRequest};

/// The QUIC intake client: submits to the validators of a genesis (or, where a node
/// follows governance, of the current epoch: [`IntakeClient::set_validators`]), each
/// sender's transactions to one validator (see `route`), requests to different
/// validators in parallel. Cheap to clone; clones share the validator list.
#[derive(Clone)]
pub struct IntakeClient {
    net: Network<IntakeProtocol>,
    validators: Arc<RwLock<Arc<Vec<NodeId>>>>,
    /// Validators that answered they are outside the committee, and when: skipped by
    /// `route` for [`OUTSIDE_TTL`].
    outside: Arc<Mutex<HashMap<NodeId, Instant>>>,
    /// Validators not connected yet since this client started (or since
    /// [`IntakeClient::set_validators`] added them), each with the time until which the
    /// senders routed to it wait for its first connection instead of failing over.
    first_connect: Arc<Mutex<HashMap<NodeId, Instant>>>,
    /// How long a validator's first connection is waited for ([`FIRST_CONNECT_WAIT`]).
    first_connect_wait: Duration,
    /// This client's own key (a node that is also a validator never waits for itself).
    me: NodeId,
}

/// The transactions a round of `submit_chunk` sends to one validator (with their
/// positions in the submission), and how long to wait first for its first connection.
type Group = (Option<Duration>, Vec<(usize, Transaction)>);

/// How long, after a client starts or a validator joins its list, the senders routed to
/// a validator it has not connected to yet wait for that connection before going to the
/// next validator of their route. Failing over at once would split a sender's first
/// transactions between two validators, whose batches the log may order either way:
/// nonce 1 before nonce 0, and every later one rejected (DESIGN.md, "Per-sender
/// order"). A handshake takes milliseconds; this covers a validator still starting: a
/// dial that times out (5 s by default) and the next one after its backoff. A validator
/// that refuses the client, or was connected once and is lost later, is failed over at
/// once; so is one not connected within the wait (its senders come back to it once it
/// is, and may then be split after all). Only the senders routed to that validator
/// wait; the others of the same submission go on at once.
pub const FIRST_CONNECT_WAIT: Duration = Duration::from_secs(10);

/// How long a validator that said it is outside the committee is skipped before it is
/// asked again (it may be voted back in).
const OUTSIDE_TTL: Duration = Duration::from_secs(10);

/// The validators a sender's transactions go to, in order of preference: a fixed
/// choice per sender among `validators`, so that resubmitting is idempotent (the same
/// mempool sees it again) and a sender's nonces reach one mempool in order; if it is
/// not connected, or said lately that it is outside the committee, the next one.
fn route<'a>(validators: &'a [NodeId], sender: &lamina_primitives::PublicKey) -> impl Iterator<Item = NodeId> + 'a {
    let n = validators.len();
    let first = u64::from_le_bytes(sender.0[..8].try_into().unwrap_or([0; 8])) as usize % n.max(1);
    (0..n).map(move |k| validators[(first + k) % n])
}

impl std::fmt::Debug for IntakeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntakeClient").field("validators", &self.validators.read().len()).finish()
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
        let keys: Vec<NodeId> = genesis.validators.iter().map(|v| v.key).filter(|k| *k != endpoint.node_id()).collect();
        let until = Instant::now() + FIRST_CONNECT_WAIT;
        Ok(IntakeClient {
            net,
            validators: Arc::new(RwLock::new(Arc::new(genesis.validators.iter().map(|v| v.key).collect()))),
            outside: Default::default(),
            first_connect: Arc::new(Mutex::new(keys.into_iter().map(|k| (k, until)).collect())),
            first_connect_wait: FIRST_CONNECT_WAIT,
            me: endpoint.node_id(),
        })
    }

    /// Waits `wait` instead of [`FIRST_CONNECT_WAIT`] for each validator's first
    /// connection (counted from now) before failing its senders over; zero fails over at
    /// once.
    pub fn with_first_connect_wait(mut self, wait: Duration) -> Self {
        self.first_connect_wait = wait;
        let until = Instant::now() + wait;
        self.first_connect.lock().values_mut().for_each(|u| *u = until);
        self
    }

    /// Submits to `validators` from now on (the current epoch's committee, from a
    /// governance follower, where committees change by vote), dialing those not dialed
    /// yet and closing the connections to the others. Every clone follows. A sender's
    /// route is a function of the list, so a change may send its next transactions to
    /// another validator than its earlier ones (see DESIGN.md, "Per-sender order").
    pub fn set_validators(&self, validators: &[NodeEntry]) {
        let keys: Vec<NodeId> = validators.iter().map(|v| v.key).collect();
        if keys.is_empty() || **self.validators.read() == keys {
            return;
        }
        self.net.set_peers(PeerSet::dial_entries(validators));
        {
            let old = self.validators.read().clone();
            let until = Instant::now() + self.first_connect_wait;
            let mut first = self.first_connect.lock();
            first.retain(|k, _| keys.contains(k));
            for k in keys.iter().filter(|k| !old.contains(k) && **k != self.me) {
                first.insert(*k, until);
            }
        }
        *self.validators.write() = Arc::new(keys);
    }

    /// The validators `sender`'s transactions go to, in order of preference: the first
    /// while it is connected (and has not said it is outside the committee; one not
    /// connected yet since the client started is waited for, [`FIRST_CONNECT_WAIT`]),
    /// else the next.
    pub fn route(&self, sender: &lamina_primitives::PublicKey) -> Vec<NodeId> {
        route(&self.validators(), sender).collect()
    }

    /// The validators submitted to, in route order.
    pub fn validators(&self) -> Arc<Vec<NodeId>> {
        self.validators.read().clone()
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

    /// The validators that said within [`OUTSIDE_TTL`] that they are outside the
    /// committee.
    fn outside_now(&self) -> HashSet<NodeId> {
        let mut outside = self.outside.lock();
        outside.retain(|_, at| at.elapsed() < OUTSIDE_TTL);
        outside.keys().copied().collect()
    }

    /// Forgets the validators connected since, or whose wait has run out: one lost
    /// after its first connection is failed over at once, like any other.
    fn prune_first_connect(&self) {
        let mut first = self.first_connect.lock();
        if !first.is_empty() {
            let now = Instant::now();
            first.retain(|v, until| *until > now && !self.net.is_connected(v));
        }
    }

    /// How long the senders routed first to `v` still wait for its first connection
    /// (see [`FIRST_CONNECT_WAIT`]); `None` once it has been connected or its wait has
    /// run out (then it is forgotten).
    fn first_connect_left(&self, v: &NodeId) -> Option<Duration> {
        let mut first = self.first_connect.lock();
        let until = *first.get(v)?;
        let now = Instant::now();
        if until > now && !self.net.is_connected(v) {
            return Some(until - now);
        }
        first.remove(v);
        None
    }

    async fn submit_chunk(&self, txs: Vec<Transaction>) -> Vec<Result<SubmitOutcome, SubmitError>> {
        let n = txs.len();
        let mut out: Vec<Option<Result<SubmitOutcome, SubmitError>>> = vec![None; n];
        let mut pending: Vec<(usize, Transaction)> = txs.into_iter().enumerate().collect();
        let validators = self.validators();
        let Some(&any) = validators.first() else {
            return vec![Err(SubmitError::Transport("no validator to submit to".into())); n];
        };
        // A validator outside the committee refuses everything (nothing it accepted
        // would be ordered): its senders go on to the next validator of their route,
        // each round skipping the validators that said so. A validator not connected
        // yet since the client started is waited for (its senders' group only, up to
        // FIRST_CONNECT_WAIT); if it does not come, its senders go on in the next round
        // (hence one round more than there are validators).
        for _ in 0..=validators.len() {
            if pending.is_empty() {
                break;
            }
            // Group by target validator, keeping each sender's order.
            pending.sort_by_key(|(i, _)| *i);
            self.prune_first_connect();
            let outside = self.outside_now();
            let usable = |v: &NodeId| self.net.is_connected(v) && !outside.contains(v);
            let mut waits: HashMap<NodeId, Option<Duration>> = HashMap::new();
            let mut groups: std::collections::BTreeMap<NodeId, Group> = Default::default();
            for (i, tx) in pending.drain(..) {
                let primary = route(&validators, &tx.sender).find(|v| !outside.contains(v));
                let waiting =
                    primary.and_then(|p| waits.entry(p).or_insert_with(|| self.first_connect_left(&p)).map(|w| (p, w)));
                let (target, wait) = match waiting {
                    Some((p, w)) => (Some(p), Some(w)),
                    None => (
                        route(&validators, &tx.sender).find(usable).or_else(|| route(&validators, &tx.sender).next()),
                        None,
                    ),
                };
                let group = groups.entry(target.unwrap_or(any)).or_default();
                group.0 = group.0.or(wait);
                group.1.push((i, tx));
            }
            let sends = groups.into_iter().map(|(v, (wait, group))| {
                let this = self.clone();
                async move {
                    let (idx, txs): (Vec<usize>, Vec<Transaction>) = group.into_iter().unzip();
                    if let Some(wait) = wait
                        && let Err(e) = this.net.wait_connected(&v, wait).await
                    {
                        // Refused, or not up within the wait: its senders fail over
                        // from now on (next round). Logged once per validator, not
                        // once per submission that waited.
                        if this.first_connect.lock().remove(&v).is_some() {
                            tracing::warn!(validator = %v, error = %e, "intake: no first connection to a validator; its senders go to the next one");
                        }
                        return (v, idx, txs, Err(e));
                    }
                    let (r, txs) = this.submit_keeping(&v, txs).await;
                    (v, idx, txs, Ok(r))
                }
            });
            for (v, idx, txs, r) in futures::future::join_all(sends).await {
                let r = match r {
                    Ok(r) => r,
                    Err(e) => {
                        // Sent on in the next round; answered with the wait's error if
                        // no round is left.
                        for (i, tx) in idx.into_iter().zip(txs) {
                            out[i] = Some(Err(SubmitError::Transport(format!("no connection to {v}: {e}"))));
                            pending.push((i, tx));
                        }
                        continue;
                    }
                };
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
            let outside = self.outside_now();
            if validators.iter().all(|v| outside.contains(v)) {
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
            let validators = this.validators();
            let sends = validators.iter().map(|v| this.submit_to(v, vec![tx.clone()]));
            let mut last = Err(SubmitError::Transport("no validator to submit to".into()));
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
