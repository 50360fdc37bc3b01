//! [`LogClient`]: the ordered log over QUIC (`lamina/log/1`), an [`OrderedLog`] for
//! execution, settlement and bridge nodes.
//!
//! The client trusts no validator: every block it returns verifies against the validator
//! committee of its height (the genesis committee, or the epoch's from
//! [`LogClient::set_schedule`] where committees change by vote), heights are consecutive from the
//! one asked for, and each block's parent is the previous block (also across reads, for
//! a caller reading sequentially). A validator that sends anything else is skipped
//! (`LogError::Invalid` if no validator answers correctly).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lamina_consensus_core::{CommitteeSchedule, EpochCheckError};
use lamina_interfaces::{Genesis, LogError, NodeEntry, OrderedLog};
use lamina_net::{Endpoint, NetError, Network, PeerSet, ProtocolConfig};
use lamina_primitives::{Digest, FinalizedBlock, Height, NodeId};
use parking_lot::Mutex;

use crate::protocol::{LogProtocol, LogRequest, LogResponse, MAX_READ_WAIT, ReadRequest};

/// The QUIC ordered-log client. Cheap to clone.
#[derive(Clone)]
pub struct LogClient {
    net: Network<LogProtocol>,
    me: NodeId,
    validators: Arc<parking_lot::RwLock<Vec<NodeId>>>,
    /// The committee of each height, as far as known.
    schedule: Arc<parking_lot::RwLock<CommitteeSchedule>>,
    next: Arc<AtomicUsize>,
    /// The last block returned: (height, header digest), to check the next read's parent.
    last: Arc<Mutex<Option<(Height, Digest)>>>,
    wait: Duration,
}

impl std::fmt::Debug for LogClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogClient").field("validators", &self.validators.read().len()).finish()
    }
}

impl LogClient {
    /// Registers the log protocol on `endpoint`, dialing the genesis validators. The
    /// endpoint's key must be a genesis node (or a configured intake client).
    pub fn register(endpoint: &Endpoint, genesis: &Genesis) -> Result<Self, NetError> {
        let peers = PeerSet::dial_entries(&genesis.validators).without(&endpoint.node_id());
        let mut cfg = ProtocolConfig::for_protocol::<LogProtocol>();
        cfg.request_timeout = MAX_READ_WAIT + Duration::from_secs(10);
        let net = endpoint.register_client::<LogProtocol>(peers, cfg)?;
        Ok(LogClient {
            net,
            me: endpoint.node_id(),
            validators: Arc::new(parking_lot::RwLock::new(genesis.validators.iter().map(|v| v.key).collect())),
            schedule: Arc::new(parking_lot::RwLock::new(Self::initial_schedule(genesis))),
            next: Arc::new(AtomicUsize::new(0)),
            last: Arc::new(Mutex::new(None)),
            wait: Duration::from_secs(10),
        })
    }

    /// The genesis committee for every height; where committees change by vote, for no
    /// height until the reader's governance follower sets the schedule (a block of a
    /// later epoch could otherwise pass as the genesis committee's).
    fn initial_schedule(genesis: &Genesis) -> CommitteeSchedule {
        let mut s = CommitteeSchedule::fixed(genesis.validator_committee());
        if genesis.governance.committee_changes {
            s.known_through = Height(0);
        }
        s
    }

    /// A clone with its own parent check, for a second reader at another position (a
    /// plain clone shares the check of consecutive reads with the original).
    pub fn independent_reader(&self) -> Self {
        LogClient { last: Arc::new(Mutex::new(None)), ..self.clone() }
    }

    /// Where committees change by vote: from now on every block is checked against the
    /// committee of its height's epoch, blocks above `schedule.known_through` are not
    /// returned yet (a read stops before them), and reads go to `validators` (those of
    /// the epochs the log is in now and next). Shared by every clone.
    pub fn set_schedule(&self, schedule: CommitteeSchedule, validators: &[NodeEntry]) {
        let me = self.me;
        let ids: Vec<NodeId> = validators.iter().map(|v| v.key).filter(|k| *k != me).collect();
        let peers = PeerSet::dial_entries(validators).without(&me);
        if self.net.peers() != peers {
            self.net.set_peers(peers);
        }
        *self.validators.write() = ids;
        *self.schedule.write() = schedule;
    }

    /// Waits until `n` validators are connected.
    pub async fn wait_for_validators(&self, n: usize, timeout: Duration) -> Result<(), NetError> {
        self.net.wait_for_peers(n, timeout).await
    }

    /// Checks `blocks` read from `from`; returns how many may be returned (those above
    /// the schedule's reach are left for a later read).
    fn check(&self, from: Height, blocks: &[FinalizedBlock]) -> Result<usize, String> {
        let mut parent = match *self.last.lock() {
            Some((h, d)) if h.next() == from => Some(d),
            _ => None,
        };
        let schedule = self.schedule.read();
        for (i, fb) in blocks.iter().enumerate() {
            let want = Height(from.0 + i as u64);
            if fb.height() != want {
                return Err(format!("got height {} for {want}", fb.height()));
            }
            if let Some(p) = parent
                && fb.block.header.parent != p
            {
                return Err(format!("block {want} does not extend the previous block"));
            }
            match schedule.check(fb) {
                Ok(()) => {}
                Err(EpochCheckError::Unknown { .. }) => return Ok(i),
                Err(e) => return Err(format!("block {want}: {e}")),
            }
            parent = Some(fb.block.digest());
        }
        Ok(blocks.len())
    }

    async fn read_once(&self, v: &NodeId, from: Height, max: usize) -> Result<Vec<FinalizedBlock>, LogError> {
        let known_through = self.schedule.read().known_through;
        if from > known_through {
            return Err(LogError::Unavailable(format!(
                "the committee of height {from} is not known yet (the schedule reaches {known_through})"
            )));
        }
        let req = LogRequest::Read(ReadRequest {
            from: from.0,
            max: max.min(u32::MAX as usize) as u32,
            wait_ms: self.wait.as_millis() as u32,
        });
        match self.net.request(v, &req).await {
            Ok(LogResponse::Blocks(mut blocks)) => {
                let keep = self.check(from, &blocks).map_err(LogError::Invalid)?;
                if keep == 0 && !blocks.is_empty() {
                    return Err(LogError::Unavailable(format!(
                        "the committee of height {from} is not known (the schedule reaches {known_through})"
                    )));
                }
                blocks.truncate(keep);
                if let Some(last) = blocks.last() {
                    *self.last.lock() = Some((last.height(), last.block.digest()));
                }
                Ok(blocks)
            }
            Ok(LogResponse::Pruned(oldest)) => Err(LogError::Pruned { requested: from, oldest: Height(oldest) }),
            Ok(LogResponse::Tip(_)) => Err(LogError::Invalid("tip answer to a read".into())),
            Err(e) => Err(LogError::Unavailable(e.to_string())),
        }
    }

    /// Blocks from `from` read from one given validator (verified like every read).
    pub async fn read_from(
        &self,
        validator: &NodeId,
        from: Height,
        max: usize,
    ) -> Result<Vec<FinalizedBlock>, LogError> {
        let saved = self.last.lock().take();
        let r = self.read_once(validator, from, max).await;
        *self.last.lock() = saved;
        r
    }

    /// The finalized height of one given validator.
    pub async fn tip_of(&self, validator: &NodeId) -> Result<Height, LogError> {
        match self.net.request(validator, &LogRequest::Tip).await {
            Ok(LogResponse::Tip(h)) => Ok(Height(h)),
            Ok(_) => Err(LogError::Invalid("unexpected answer to tip".into())),
            Err(e) => Err(LogError::Unavailable(e.to_string())),
        }
    }

    fn pick(&self) -> Option<NodeId> {
        let validators = self.validators.read().clone();
        for _ in 0..validators.len() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % validators.len();
            if self.net.is_connected(&validators[i]) {
                return Some(validators[i]);
            }
        }
        None
    }
}

impl OrderedLog for LogClient {
    fn read(&self, from: Height, max: usize) -> impl Future<Output = Result<Vec<FinalizedBlock>, LogError>> + Send {
        let this = self.clone();
        async move {
            if from.0 == 0 {
                return Err(LogError::GenesisHasNoBlock);
            }
            let (mut failures, mut pruned) = (0usize, 0usize);
            let mut last_err = LogError::Unavailable("no validator connected".into());
            loop {
                let Some(v) = this.pick() else {
                    failures += 1;
                    if failures > 50 {
                        return Err(last_err);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                match this.read_once(&v, from, max).await {
                    Ok(blocks) if !blocks.is_empty() => return Ok(blocks),
                    Ok(_) => continue, // long poll expired: ask again
                    // Another validator may keep more: ask each before giving up.
                    Err(e @ LogError::Pruned { .. }) => {
                        pruned += 1;
                        last_err = e;
                        if pruned >= this.validators.read().len().max(1) {
                            return Err(last_err);
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        last_err = e;
                        if failures >= 3 * this.validators.read().len().max(1) {
                            return Err(last_err);
                        }
                    }
                }
            }
        }
    }

    fn tip(&self) -> impl Future<Output = Result<Height, LogError>> + Send {
        let this = self.clone();
        async move {
            let v = this.pick().ok_or_else(|| LogError::Unavailable("no validator connected".into()))?;
            match this.net.request(&v, &LogRequest::Tip).await {
                Ok(LogResponse::Tip(h)) => Ok(Height(h)),
                Ok(_) => Err(LogError::Invalid("unexpected answer to tip".into())),
                Err(e) => Err(LogError::Unavailable(e.to_string())),
            }
        }
    }
}
