//! The bridge relayer service: relays outbox messages between chains against settlement's anchors, with refunds of timed-out messages.
//!
//! It carries messages between the chains of one network.
//!
//! A relayer is untrusted and permissionless: it reads each chain's outbox and receipts
//! from execution nodes and the anchors from settlement, and submits receives (and
//! refunds of timed-out messages) signed with its own key. The destination ledger checks
//! every proof against the anchors the log finalized, so a relayer that lies, replays,
//! reorders or withholds can at most delay delivery; two relayers racing deliver each
//! message once (the second receive fails as a duplicate, costing its sender a fee).
//!
//! The relayer is generic over [`BridgeNet`], the seam the binary fills with the
//! execution, settlement and intake clients (layers never import each other).
//!
//! # Loop
//!
//! For every ordered pair of chains (a *channel*), from the channel's persisted cursor:
//! read the outbox and the destination's receipts, look up the anchors that the entries'
//! proofs were made at, and submit what [`lamina_bridge_core::plan_channel`] says is
//! ready, receives to the destination and refunds to the source, in batches. An action
//! not finished [`Config::resubmit_after_ms`] later is submitted again (with the chain's
//! current nonce: a rejected transaction uses no nonce). Cursors move past finished
//! messages and are saved atomically, so a restart (or `kill -9`) resumes with at most
//! idempotent repeats.
//!
//! # Observability
//!
//! Metrics: `lamina_bridge_pending_messages` (open messages seen in the last round),
//! `lamina_bridge_oldest_pending_heights` (destination height minus the lock height of
//! the oldest open message), `lamina_bridge_submitted_total{kind="receive"|"refund"}`,
//! `lamina_bridge_finished_total` (messages delivered, or timed out and refunded, as
//! the cursors pass them). Health: `reachable` (every chain answered in the last round);
//! status `bridge_pending`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lamina_bridge_core::{Action, Entry, plan_channel};
use lamina_interfaces::{BridgeMessage, FinalizedRoot, Health};
use lamina_primitives::{ChainId, Height, Keypair, PublicKey, Transaction};
use tokio_util::sync::CancellationToken;

/// What the relayer needs from the network (implemented by the binary).
pub trait BridgeNet: Send + Sync {
    /// The chains of the network.
    fn chains(&self) -> Vec<ChainId>;
    /// `chain`'s outbound messages to `dest` from sequence `from` on (a bounded page),
    /// with `chain`'s execution height.
    fn outbox(
        &self,
        chain: ChainId,
        dest: ChainId,
        from: u64,
    ) -> impl Future<Output = Result<(Height, Vec<Entry>), String>> + Send;
    /// `chain`'s receipts of messages from `source` from sequence `from` on.
    fn receipts(
        &self,
        chain: ChainId,
        source: ChainId,
        from: u64,
    ) -> impl Future<Output = Result<(Height, Vec<Entry>), String>> + Send;
    /// `account`'s next nonce on `chain`.
    fn nonce(&self, chain: ChainId, account: PublicKey) -> impl Future<Output = Result<u64, String>> + Send;
    /// Settlement's finalized anchor of `chain` at or before log height `at`.
    fn anchor(&self, chain: ChainId, at: Height) -> impl Future<Output = Result<Option<FinalizedRoot>, String>> + Send;
    /// Submits transactions (one outcome per transaction, `Err` if refused).
    fn submit(&self, txs: Vec<Transaction>) -> impl Future<Output = Vec<Result<(), String>>> + Send;
    /// A signed receive of `message` on its destination.
    fn receive_tx(&self, key: &Keypair, nonce: u64, message: &BridgeMessage, proof: Vec<u8>) -> Transaction;
    /// A signed refund of `message` on its source.
    fn refund_tx(&self, key: &Keypair, nonce: u64, message: &BridgeMessage, proof: Vec<u8>) -> Transaction;
}

/// Most messages of one channel a round looks at beyond its cursor.
pub const WINDOW: usize = 8_192;

/// Relayer settings.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Pause between relay rounds when there was nothing to do, in milliseconds (above 0).
    pub idle_poll_ms: u64,
    /// An action (a receive or a refund) not finished after this many milliseconds is
    /// submitted again (above 0).
    pub resubmit_after_ms: u64,
    /// Relay only messages from these source chains (empty: every chain).
    #[schemars(with = "Vec<u64>")]
    pub chains: Vec<ChainId>,
}

impl Default for Config {
    fn default() -> Self {
        Config { idle_poll_ms: 200, resubmit_after_ms: 5_000, chains: Vec::new() }
    }
}

impl Config {
    /// Checks the settings: an idle relayer must pause between rounds (0 would spin a
    /// core with nothing to do) and an action must get time to finish before it is sent
    /// again.
    pub fn validate(&self) -> Result<(), Error> {
        if self.idle_poll_ms == 0 {
            return Err(Error::Config("idle_poll_ms must be > 0".into()));
        }
        if self.resubmit_after_ms == 0 {
            return Err(Error::Config("resubmit_after_ms must be > 0".into()));
        }
        Ok(())
    }
}

/// Why the relayer stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is out of range ([`Config::validate`]).
    #[error("bridge config: {0}")]
    Config(String),
    /// Its progress file cannot be read or written.
    #[error("relayer state {path}: {reason}")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Persisted progress: the cursor of every channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Progress {
    /// "source-dest" → lowest sequence not finished.
    cursors: BTreeMap<String, u64>,
}

fn channel_name(src: ChainId, dest: ChainId) -> String {
    format!("{}-{}", src.0, dest.0)
}

impl Progress {
    fn load(path: &Path) -> Result<Self, Error> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::State { path: path.to_path_buf(), reason: format!("unreadable: {e}") }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Progress::default()),
            Err(e) => Err(Error::State { path: path.to_path_buf(), reason: e.to_string() }),
        }
    }

    /// Writes atomically (temp file, fsync, rename).
    fn save(&self, path: &Path) -> Result<(), Error> {
        let err = |e: std::io::Error| Error::State { path: path.to_path_buf(), reason: e.to_string() };
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp).map_err(err)?;
            f.write_all(&bytes).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, path).map_err(err)?;
        if let Some(dir) = path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// What one channel's pass produced.
#[derive(Debug, Default)]
struct ChannelRound {
    actions: Vec<Action>,
    open: u64,
    oldest: Option<u64>,
    moved: bool,
}

/// Counters of one relayer (also exported as metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Receives submitted.
    pub receives: u64,
    /// Refunds submitted.
    pub refunds: u64,
    /// Messages seen delivered (cursor moves).
    pub finished: u64,
    /// Messages open in the last round.
    pub pending: u64,
}

/// The relayer.
pub struct Relayer<N: BridgeNet> {
    net: N,
    key: Keypair,
    config: Config,
    state_path: PathBuf,
    progress: Progress,
    /// (source, dest, seq) → when last submitted.
    in_flight: HashMap<(ChainId, ChainId, u64), Instant>,
    /// Next nonce per chain for this relayer's key (re-read when an action expires).
    nonces: HashMap<ChainId, u64>,
    /// Anchor index per (chain, exact `to` height), once found, for the anchors this
    /// round's entries needed.
    anchors: HashMap<(ChainId, Height), u64>,
    /// The previous round's [`Self::anchors`]: an entry still needed moves back, the
    /// rest are dropped when the next round starts. The cache so holds two rounds'
    /// lookups (each about [`WINDOW`] per channel at most), not history.
    anchors_before: HashMap<(ChainId, Height), u64>,
    /// Each chain's newest anchored height, read once per round.
    newest: HashMap<ChainId, Height>,
    stats: Stats,
}

impl<N: BridgeNet> std::fmt::Debug for Relayer<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relayer").field("key", &self.key.public()).field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl<N: BridgeNet> Relayer<N> {
    /// A relayer signing with `key`, keeping its progress in `data_dir/relayer.json`
    /// ([`Error::Config`] if `config` does not validate).
    pub fn open(net: N, key: Keypair, config: Config, data_dir: &Path) -> Result<Self, Error> {
        config.validate()?;
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::State { path: data_dir.to_path_buf(), reason: e.to_string() })?;
        let state_path = data_dir.join("relayer.json");
        let progress = Progress::load(&state_path)?;
        Ok(Relayer {
            net,
            key,
            config,
            state_path,
            progress,
            in_flight: HashMap::new(),
            nonces: HashMap::new(),
            anchors: HashMap::new(),
            anchors_before: HashMap::new(),
            newest: HashMap::new(),
            stats: Stats::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Runs rounds until `shutdown`.
    pub async fn run(&mut self, health: &Health, shutdown: &CancellationToken) -> Result<(), Error> {
        health.set_check("reachable", false, "starting");
        loop {
            let busy = match self.round().await {
                Ok(n) => {
                    health.set_check("reachable", true, format!("{} pending", self.stats.pending));
                    n > 0
                }
                Err(e) => {
                    health.set_check("reachable", false, e.clone());
                    tracing::warn!(target: "lamina::bridge", error = %e, "relay round failed; retrying");
                    false
                }
            };
            health.set_status("bridge_pending", self.stats.pending);
            let pause = if busy { Duration::from_millis(20) } else { Duration::from_millis(self.config.idle_poll_ms) };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Entries from sequence `from` on, page after page, up to [`WINDOW`] (a channel's
    /// unfinished messages beyond the cursor are all seen, not just one page).
    async fn pages<F, Fut>(&self, from: u64, page: F) -> Result<(Height, Vec<Entry>), String>
    where
        F: Fn(u64) -> Fut,
        Fut: Future<Output = Result<(Height, Vec<Entry>), String>>,
    {
        let (mut height, mut all) = page(from).await?;
        while all.len() < WINDOW {
            let Some(next) = all.last().and_then(|l| l.message.sequence.checked_add(1)) else { break };
            let (h, more) = page(next).await?;
            // A page must move forward (a node answering the same page again ends it).
            if more.first().is_none_or(|e| e.message.sequence < next) {
                break;
            }
            height = h;
            all.extend(more);
        }
        Ok((height, all))
    }

    /// The index of `chain`'s anchor ending exactly at `at`, if finalized.
    async fn anchor_at(&mut self, chain: ChainId, at: Height) -> Result<Option<u64>, String> {
        if let Some(i) = self.anchors.get(&(chain, at)) {
            return Ok(Some(*i));
        }
        if let Some(i) = self.anchors_before.remove(&(chain, at)) {
            self.anchors.insert((chain, at), i);
            return Ok(Some(i));
        }
        // Cut heights above the chain's newest anchor are not final yet: no query.
        let newest = match self.newest.get(&chain) {
            Some(n) => *n,
            None => {
                let n = self.net.anchor(chain, Height(u64::MAX)).await?.map_or(Height(0), |a| a.to);
                self.newest.insert(chain, n);
                n
            }
        };
        if at > newest {
            return Ok(None);
        }
        match self.net.anchor(chain, at).await? {
            Some(a) if a.to == at => {
                self.anchors.insert((chain, at), a.index);
                Ok(Some(a.index))
            }
            _ => Ok(None),
        }
    }

    /// One pass over every channel; returns the number of transactions submitted.
    pub async fn round(&mut self) -> Result<usize, String> {
        self.newest.clear();
        self.anchors_before = std::mem::take(&mut self.anchors);
        let chains = self.net.chains();
        let sources: Vec<ChainId> = if self.config.chains.is_empty() {
            chains.clone()
        } else {
            chains.iter().copied().filter(|c| self.config.chains.contains(c)).collect()
        };
        let now = Instant::now();
        let resubmit = Duration::from_millis(self.config.resubmit_after_ms);
        let expired: Vec<ChainId> = self
            .in_flight
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= resubmit)
            .flat_map(|((s, d, _), _)| [*s, *d])
            .collect();
        for c in expired {
            self.nonces.remove(&c);
        }
        self.in_flight.retain(|_, t| now.duration_since(*t) < resubmit);

        let mut actions: Vec<(ChainId, ChainId, Action)> = Vec::new();
        let mut pending = 0u64;
        let mut oldest: Option<u64> = None;
        let mut moved = false;
        // A chain that does not answer stops only its own channels.
        let mut errors = Vec::new();
        for &src in &sources {
            for &dest in &chains {
                if src == dest {
                    continue;
                }
                match self.channel(src, dest).await {
                    Ok(c) => {
                        moved |= c.moved;
                        pending += c.open;
                        if let Some(age) = c.oldest {
                            oldest = Some(oldest.map_or(age, |o| o.max(age)));
                        }
                        actions.extend(c.actions.into_iter().map(|a| (src, dest, a)));
                    }
                    Err(e) => errors.push(format!("channel {src} → {dest}: {e}")),
                }
            }
        }
        if moved {
            self.progress.save(&self.state_path).map_err(|e| e.to_string())?;
        }
        self.stats.pending = pending;
        metrics::gauge!("lamina_bridge_pending_messages").set(pending as f64);
        metrics::gauge!("lamina_bridge_oldest_pending_heights").set(oldest.unwrap_or(0) as f64);
        let sent = self.submit(actions).await?;
        if errors.is_empty() { Ok(sent) } else { Err(errors.join("; ")) }
    }

    /// Reads and plans one channel.
    async fn channel(&mut self, src: ChainId, dest: ChainId) -> Result<ChannelRound, String> {
        let name = channel_name(src, dest);
        let cursor = self.progress.cursors.get(&name).copied().unwrap_or(0);
        let outbox = self.pages(cursor, |from| self.net.outbox(src, dest, from)).await?.1;
        if outbox.is_empty() {
            return Ok(ChannelRound::default());
        }
        let (dest_height, receipts) = self.pages(cursor, |from| self.net.receipts(dest, src, from)).await?;
        let receipts: BTreeMap<u64, Entry> = receipts.into_iter().map(|e| (e.message.sequence, e)).collect();
        // Anchors the entries' proofs need.
        let mut src_anchor = HashMap::new();
        let mut dest_anchor = HashMap::new();
        for e in &outbox {
            match receipts.get(&e.message.sequence) {
                Some(r) => {
                    if let Some((at, _)) = r.proof
                        && let Some(i) = self.anchor_at(dest, at).await?
                    {
                        dest_anchor.insert(at, i);
                    }
                }
                None => {
                    if let Some((at, _)) = e.proof
                        && let Some(i) = self.anchor_at(src, at).await?
                    {
                        src_anchor.insert(at, i);
                    }
                }
            }
        }
        let in_flight = &self.in_flight;
        let plan = plan_channel(
            cursor,
            &outbox,
            &receipts,
            |h| src_anchor.get(&h).copied(),
            |h| dest_anchor.get(&h).copied(),
            |seq| in_flight.contains_key(&(src, dest, seq)),
        );
        let mut round = ChannelRound::default();
        if plan.cursor != cursor {
            self.stats.finished += plan.cursor - cursor;
            metrics::counter!("lamina_bridge_finished_total").increment(plan.cursor - cursor);
            self.progress.cursors.insert(name, plan.cursor);
            round.moved = true;
        }
        round.open = plan.open.len() as u64;
        round.oldest = outbox
            .iter()
            .filter(|e| plan.open.contains_key(&e.message.sequence))
            .map(|e| dest_height.0.saturating_sub(e.written_at.0))
            .max();
        round.actions = plan.actions;
        Ok(round)
    }

    /// Submits `txs`, retrying the refused ones (same bytes, so the same nonces) a few
    /// times: a refusal (intake busy, a validator unreachable) would otherwise leave a
    /// nonce gap that makes every later transaction of this key wait for a resync.
    async fn submit_retrying(&self, txs: Vec<Transaction>) -> Vec<Result<(), String>> {
        let mut outcomes = self.net.submit(txs.clone()).await;
        let mut pause = Duration::from_millis(20);
        for _ in 0..4 {
            let refused: Vec<usize> = (0..outcomes.len()).filter(|i| outcomes[*i].is_err()).collect();
            if refused.is_empty() {
                break;
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
            let again = self.net.submit(refused.iter().map(|i| txs[*i].clone()).collect()).await;
            for (i, r) in refused.into_iter().zip(again) {
                outcomes[i] = r;
            }
        }
        outcomes
    }

    /// Signs and submits `actions`, grouped by the chain they go to.
    async fn submit(&mut self, actions: Vec<(ChainId, ChainId, Action)>) -> Result<usize, String> {
        let mut by_chain: BTreeMap<ChainId, Vec<(ChainId, ChainId, Action)>> = BTreeMap::new();
        for a in actions {
            let to = match &a.2 {
                Action::Receive { message, .. } => message.dest,
                Action::Refund { message, .. } => message.source,
            };
            by_chain.entry(to).or_default().push(a);
        }
        let mut sent = 0;
        for (chain, list) in by_chain {
            let mut nonce = match self.nonces.get(&chain) {
                Some(n) => *n,
                None => self.net.nonce(chain, self.key.public()).await?,
            };
            let mut txs = Vec::with_capacity(list.len());
            let mut keys = Vec::with_capacity(list.len());
            for (src, dest, action) in list {
                let (tx, seq, kind) = match action {
                    Action::Receive { message, proof } => {
                        (self.net.receive_tx(&self.key, nonce, &message, proof), message.sequence, "receive")
                    }
                    Action::Refund { message, proof } => {
                        (self.net.refund_tx(&self.key, nonce, &message, proof), message.sequence, "refund")
                    }
                };
                nonce += 1;
                txs.push(tx);
                keys.push(((src, dest, seq), kind));
            }
            let n = txs.len();
            let outcomes = self.submit_retrying(txs).await;
            let now = Instant::now();
            let mut accepted = 0u64;
            for ((key, kind), outcome) in keys.into_iter().zip(outcomes) {
                match outcome {
                    Ok(()) => {
                        accepted += 1;
                        self.in_flight.insert(key, now);
                        metrics::counter!("lamina_bridge_submitted_total", "kind" => kind).increment(1);
                        if kind == "receive" {
                            self.stats.receives += 1;
                        } else {
                            self.stats.refunds += 1;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(target: "lamina::bridge", %chain, error = %e, "submission refused");
                    }
                }
            }
            if accepted as usize == n {
                self.nonces.insert(chain, nonce);
            } else {
                // A refused transaction leaves a gap: read the nonce again next time.
                self.nonces.remove(&chain);
            }
            sent += n;
            tracing::debug!(target: "lamina::bridge", %chain, submitted = n, accepted, "relayed");
        }
        Ok(sent)
    }
}

/// Registers the `# HELP` text of every metric this crate emits with the installed
/// `metrics` recorder (call once, after installing it; the binary does).
pub fn describe_metrics() {
    ::metrics::describe_counter!(
        "lamina_bridge_finished_total",
        "Bridge messages finished (delivered, or timed out and refunded) as the channel cursors pass them; no labels."
    );
    ::metrics::describe_gauge!(
        "lamina_bridge_oldest_pending_heights",
        "Age in heights (destination height minus lock height) of the oldest open bridge message in the last relay round, 0 when none; no labels."
    );
    ::metrics::describe_gauge!(
        "lamina_bridge_pending_messages",
        "Open bridge messages seen across all channels in the last relay round; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_bridge_submitted_total",
        "Bridge actions the relayer submitted and had accepted, by kind (receive, refund)."
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_interfaces::Origin;
    use lamina_primitives::{Digest, TxScope};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Two chains; chain 1's outbox to chain 2 is whatever the test sets, each entry
    /// proven at the cut height given, no receipts; every cut height at or below 100
    /// is an anchor (index = height). Counts anchor queries.
    #[derive(Default)]
    struct FakeNet {
        proofs_at: Mutex<Vec<u64>>,
        anchor_queries: AtomicUsize,
    }

    fn message(sequence: u64) -> BridgeMessage {
        BridgeMessage {
            network: Digest::default(),
            source: ChainId(1),
            dest: ChainId(2),
            sequence,
            sender: PublicKey::default(),
            nonce: sequence,
            recipient: PublicKey::default(),
            origin: Origin { chain: ChainId(1), asset: 0 },
            amount: 1,
            timeout: Height(1_000_000),
        }
    }

    impl BridgeNet for &FakeNet {
        fn chains(&self) -> Vec<ChainId> {
            vec![ChainId(1), ChainId(2)]
        }
        async fn outbox(&self, chain: ChainId, _: ChainId, from: u64) -> Result<(Height, Vec<Entry>), String> {
            if chain != ChainId(1) {
                return Ok((Height(200), Vec::new()));
            }
            let proofs = self.proofs_at.lock().unwrap().clone();
            let entries = proofs
                .iter()
                .enumerate()
                .map(|(i, &h)| Entry {
                    message: message(i as u64),
                    written_at: Height(1),
                    receipt: None,
                    proof: Some((Height(h), vec![0])),
                    refunded_at: None,
                })
                .filter(|e| e.message.sequence >= from)
                .collect();
            Ok((Height(200), entries))
        }
        async fn receipts(&self, _: ChainId, _: ChainId, _: u64) -> Result<(Height, Vec<Entry>), String> {
            Ok((Height(200), Vec::new()))
        }
        async fn nonce(&self, _: ChainId, _: PublicKey) -> Result<u64, String> {
            Ok(0)
        }
        async fn anchor(&self, chain: ChainId, at: Height) -> Result<Option<FinalizedRoot>, String> {
            self.anchor_queries.fetch_add(1, Ordering::SeqCst);
            let to = Height(at.0.min(100));
            Ok(Some(FinalizedRoot {
                chain,
                index: to.0,
                to,
                state_root: Digest::default(),
                finalized_at: Height(to.0 + 10),
                usable_until: None,
            }))
        }
        async fn submit(&self, txs: Vec<Transaction>) -> Vec<Result<(), String>> {
            txs.iter().map(|_| Ok(())).collect()
        }
        fn receive_tx(&self, key: &Keypair, nonce: u64, message: &BridgeMessage, _: Vec<u8>) -> Transaction {
            Transaction::new_signed(key, TxScope::ChainOnly, message.dest, nonce, vec![1])
        }
        fn refund_tx(&self, key: &Keypair, nonce: u64, message: &BridgeMessage, _: Vec<u8>) -> Transaction {
            Transaction::new_signed(key, TxScope::ChainOnly, message.source, nonce, vec![2])
        }
    }

    #[tokio::test]
    async fn the_anchor_cache_keeps_only_what_open_messages_still_need() {
        let net = FakeNet::default();
        *net.proofs_at.lock().unwrap() = vec![10, 20];
        let dir = tempfile::tempdir().unwrap();
        let mut relayer = Relayer::open(&net, Keypair::for_testing(1), Config::default(), dir.path()).unwrap();
        let queries = || net.anchor_queries.swap(0, Ordering::SeqCst);

        relayer.round().await.unwrap();
        assert_eq!(queries(), 3, "the newest anchor, then the anchors at 10 and 20");
        relayer.round().await.unwrap();
        assert_eq!(queries(), 0, "both anchors come from the cache");

        // The message proven at 10 is gone from the listing (finished).
        *net.proofs_at.lock().unwrap() = vec![20];
        relayer.round().await.unwrap();
        relayer.round().await.unwrap();
        assert_eq!(queries(), 0);
        assert_eq!(relayer.anchors.len() + relayer.anchors_before.len(), 1, "the anchor at 10 was dropped");

        // Needed again, it is asked for again (with the newest, read once a round).
        *net.proofs_at.lock().unwrap() = vec![10, 20];
        relayer.round().await.unwrap();
        assert_eq!(queries(), 2);
    }

    #[test]
    fn config_validation_refuses_spinning_and_instant_resubmits() {
        assert!(Config::default().validate().is_ok());
        let spin = Config { idle_poll_ms: 0, ..Config::default() };
        assert!(matches!(spin.validate(), Err(Error::Config(m)) if m.contains("idle_poll_ms")));
        let instant = Config { resubmit_after_ms: 0, ..Config::default() };
        assert!(matches!(instant.validate(), Err(Error::Config(m)) if m.contains("resubmit_after_ms")));
    }
}
