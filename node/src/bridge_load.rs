//! The bridge share of `devnet up`'s built-in load (`--bridge-share`): signed locks sent
//! open-loop at a fixed rate, each followed to the moment the destination credits it.
//!
//! Locks go round-robin over the chains, each to the next chain, from funded test
//! accounts the transfer load does not use (the upper half), to the sender's own key.
//! A poller reads every destination's receipts and every source's outbox from cursors
//! and matches them to the locks by (source, sender, nonce). Latency runs from the
//! *intended* send time (no coordinated omission) to the first poll that saw the
//! receipt (so it includes up to one poll interval), and in log heights from the lock's
//! height to the receipt's. Delivered messages per second are per destination, over the
//! span between its first and last credit.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use lamina_bridge_service::BridgeNet as _;
use lamina_execution_core::ledger::{self, AssetId};
use lamina_interfaces::{Genesis, ReceiptKind, TxSubmit as _};
use lamina_net::{Endpoint, EndpointConfig};
use lamina_primitives::{ChainId, Height, Keypair, PublicKey};
use tokio::time::Instant;

use crate::bridge_net::NetBridge;

/// What to send.
#[derive(Clone, Debug)]
pub struct BridgeLoadSpec {
    /// Locks per second over all chains.
    pub rate: f64,
    /// How long to send.
    pub duration: Duration,
    /// How long to wait for the last credits after sending stops.
    pub drain: Duration,
    /// First funded test account (per chain) the locks come from.
    pub first_account: u64,
    /// Accounts per chain to send from.
    pub accounts: u64,
}

/// Counters the status line reads while the load runs.
#[derive(Debug, Default)]
pub struct BridgeLive {
    /// Locks accepted by intake.
    pub sent: AtomicU64,
    /// Locks credited on their destination.
    pub credited: AtomicU64,
}

/// The outcome.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BridgeReport {
    /// Locks submitted.
    pub submitted: u64,
    /// Locks intake accepted.
    pub accepted: u64,
    /// Locks credited on the destination.
    pub credited: u64,
    /// Locks that timed out instead.
    pub timed_out: u64,
    /// Lock → credited latency percentiles in ms (p50, p99).
    pub latency_ms: Option<(f64, f64)>,
    /// Lock height → credit height percentiles (p50, p99).
    pub latency_heights: Option<(u64, u64)>,
    /// Delivered messages per second per destination chain.
    pub delivered_per_s: BTreeMap<u64, f64>,
}

impl BridgeReport {
    /// One summary line.
    pub fn line(&self) -> String {
        let lat = match (self.latency_ms, self.latency_heights) {
            (Some((p50, p99)), Some((h50, h99))) => {
                format!("lock → credited p50 {p50:.0} ms / {h50} heights, p99 {p99:.0} ms / {h99} heights")
            }
            _ => "no message credited".into(),
        };
        let rates: Vec<String> = self.delivered_per_s.iter().map(|(c, r)| format!("chain {c}: {r:.0}/s")).collect();
        format!(
            "bridge: {} locks accepted, {} credited, {} timed out; {lat}; delivered {}",
            self.accepted,
            self.credited,
            self.timed_out,
            if rates.is_empty() { "–".into() } else { rates.join(", ") }
        )
    }
}

fn percentile<T: Copy + Ord>(sorted: &[T], p: f64) -> T {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs the bridge load against the network of `genesis` with `client_key`.
pub async fn run(
    genesis: &Genesis,
    client_key: &Keypair,
    spec: &BridgeLoadSpec,
    live: Arc<BridgeLive>,
) -> anyhow::Result<BridgeReport> {
    let endpoint = Endpoint::bind(client_key, EndpointConfig::new("127.0.0.1:0".parse()?))
        .context("cannot bind the bridge load's endpoint")?;
    let result = drive(&endpoint, genesis, spec, &live).await;
    endpoint.shutdown().await;
    result
}

async fn drive(
    endpoint: &Endpoint,
    genesis: &Genesis,
    spec: &BridgeLoadSpec,
    live: &BridgeLive,
) -> anyhow::Result<BridgeReport> {
    let b = NetBridge::register(endpoint, genesis)?;
    let scope = genesis.tx_scope();
    b.intake().wait_for_validators(1, Duration::from_secs(30)).await.context("intake unreachable")?;
    let chains: Vec<ChainId> = b.chains();
    if chains.len() < 2 {
        anyhow::bail!("the bridge load needs two chains with execution nodes");
    }
    let keys: BTreeMap<ChainId, Vec<Keypair>> = chains
        .iter()
        .map(|c| {
            let s = genesis.chain(*c).map_or(0, |s| s.funded_test_accounts_seed);
            (*c, (0..spec.accounts).map(|i| Keypair::for_testing(s + spec.first_account + i)).collect())
        })
        .collect();
    // (source, sender, nonce) → intended send time.
    let mut sent: HashMap<(ChainId, PublicKey, u64), Instant> = HashMap::new();
    let mut nonces: HashMap<(ChainId, usize), u64> = HashMap::new();
    let mut report = BridgeReport::default();
    let start = Instant::now();
    let tick = Duration::from_millis(10);
    let mut i = 0u64;
    let mut poll = Poller::new(&chains);
    let mut next_poll = start;
    loop {
        let now = Instant::now();
        let sending = now.duration_since(start) < spec.duration;
        if sending {
            // Open loop: as many locks as the rate says by now, however long the
            // previous submissions took.
            let target = (spec.rate * now.duration_since(start).as_secs_f64()) as u64;
            let mut txs = Vec::new();
            let mut meta = Vec::new();
            while i < target {
                let src = chains[(i % chains.len() as u64) as usize];
                let dest = chains[((i + 1) % chains.len() as u64) as usize];
                let k = ((i / chains.len() as u64) % spec.accounts) as usize;
                let key = &keys[&src][k];
                let n = nonces.entry((src, k)).or_default();
                txs.push(ledger::bridge_lock(key, scope, src, *n, AssetId::NATIVE, 1, dest, key.public(), 1_000_000));
                meta.push((src, key.public(), *n));
                *n += 1;
                i += 1;
            }
            if !txs.is_empty() {
                report.submitted += txs.len() as u64;
                for (r, m) in b.intake().submit_many(txs).await.into_iter().zip(meta) {
                    if r.is_ok() {
                        report.accepted += 1;
                        live.sent.fetch_add(1, Ordering::Relaxed);
                        sent.insert(m, now);
                    }
                }
            }
        } else if poll.credited.len() as u64 + poll.timed_out >= report.accepted
            || now.duration_since(start) >= spec.duration + spec.drain
        {
            break;
        }
        if now >= next_poll {
            poll.poll(&b, &chains, &sent).await;
            live.credited.store(poll.credited.len() as u64, Ordering::Relaxed);
            next_poll = now + Duration::from_millis(200);
        }
        tokio::time::sleep_until(now + tick).await;
    }
    poll.poll(&b, &chains, &sent).await;
    report.credited = poll.credited.len() as u64;
    report.timed_out = poll.timed_out;
    let mut ms: Vec<u64> = poll.credited.iter().map(|c| c.latency.as_micros() as u64).collect();
    let mut hs: Vec<u64> = poll.credited.iter().filter_map(|c| c.heights).collect();
    ms.sort_unstable();
    hs.sort_unstable();
    if !ms.is_empty() {
        report.latency_ms = Some((percentile(&ms, 0.5) as f64 / 1e3, percentile(&ms, 0.99) as f64 / 1e3));
    }
    if !hs.is_empty() {
        report.latency_heights = Some((percentile(&hs, 0.5), percentile(&hs, 0.99)));
    }
    let mut spans: BTreeMap<ChainId, (Instant, Instant, u64)> = BTreeMap::new();
    for c in &poll.credited {
        let e = spans.entry(c.dest).or_insert((c.at, c.at, 0));
        e.0 = e.0.min(c.at);
        e.1 = e.1.max(c.at);
        e.2 += 1;
    }
    for (dest, (first, last, n)) in spans {
        let span = last.duration_since(first).as_secs_f64();
        if span > 0.0 {
            report.delivered_per_s.insert(dest.0, n as f64 / span);
        }
    }
    Ok(report)
}

struct Credit {
    dest: ChainId,
    at: Instant,
    latency: Duration,
    heights: Option<u64>,
}

/// Follows receipts (per channel, from a cursor) and lock heights.
struct Poller {
    /// (dest, source) → next sequence to read.
    receipt_cursor: BTreeMap<(ChainId, ChainId), u64>,
    /// (source, dest) → next sequence to read.
    outbox_cursor: BTreeMap<(ChainId, ChainId), u64>,
    /// (source, sender, nonce) → lock height.
    lock_height: HashMap<(ChainId, PublicKey, u64), Height>,
    /// (source, dest, sequence) of receipts counted above the cursor.
    seen: std::collections::HashSet<(ChainId, ChainId, u64)>,
    credited: Vec<Credit>,
    timed_out: u64,
}

impl Poller {
    fn new(chains: &[ChainId]) -> Self {
        let mut p = Poller {
            receipt_cursor: BTreeMap::new(),
            outbox_cursor: BTreeMap::new(),
            lock_height: HashMap::new(),
            seen: Default::default(),
            credited: Vec::new(),
            timed_out: 0,
        };
        for a in chains {
            for b in chains {
                if a != b {
                    p.receipt_cursor.insert((*a, *b), 0);
                    p.outbox_cursor.insert((*a, *b), 0);
                }
            }
        }
        p
    }

    async fn poll(&mut self, b: &NetBridge, chains: &[ChainId], sent: &HashMap<(ChainId, PublicKey, u64), Instant>) {
        let now = Instant::now();
        for src in chains {
            for dest in chains {
                if src == dest {
                    continue;
                }
                let c = self.outbox_cursor.get_mut(&(*src, *dest)).expect("every pair");
                if let Ok(items) = b.all_outbox(*src, *dest, *c).await {
                    for e in items {
                        *c = e.message.sequence + 1;
                        self.lock_height.insert((*src, e.message.sender, e.message.nonce), e.written_at);
                    }
                }
                // Receipts arrive in any order: read everything from the lowest sequence
                // not yet seen, skip the ones already counted.
                let c = self.receipt_cursor.get_mut(&(*dest, *src)).expect("every pair");
                let mut items = Vec::new();
                let mut from = *c;
                while let Ok((_, page)) = b.receipts(*dest, *src, from).await {
                    if page.first().is_none_or(|e| e.message.sequence < from) {
                        break;
                    }
                    let Some(next) = page.last().and_then(|l| l.message.sequence.checked_add(1)) else { break };
                    from = next;
                    items.extend(page);
                }
                for e in items {
                    if !self.seen.insert((*src, *dest, e.message.sequence)) {
                        continue;
                    }
                    let key = (*src, e.message.sender, e.message.nonce);
                    let Some(t0) = sent.get(&key) else { continue };
                    match e.receipt {
                        Some(ReceiptKind::Delivered) => self.credited.push(Credit {
                            dest: *dest,
                            at: now,
                            latency: now.duration_since(*t0),
                            heights: self.lock_height.get(&key).map(|h| e.written_at.0.saturating_sub(h.0)),
                        }),
                        _ => self.timed_out += 1,
                    }
                }
                while self.seen.remove(&(*src, *dest, *c)) {
                    *c += 1;
                }
            }
        }
    }
}
