//! `lamina bridge transfer | status | audit`: client commands of the bridge, against a
//! running network (found like the other client commands: `--devnet`, or `--genesis`
//! with `--client-key`).
//!
//! * `transfer` locks on the source chain and follows the message: locked → covered by a
//!   finalized claim → received on the destination (or timed out and refunded), printing
//!   each step with its log height.
//! * `status <message id>` finds a message in the chains' outboxes and says where it is.
//! * `audit` checks the supply invariant across every chain ([`lamina_bridge_core::audit`])
//!   and exits non-zero when it is broken.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use lamina_bridge_core::Entry;
use lamina_bridge_service::BridgeNet as _;
use lamina_execution_client::protocol::{QueryRequest, QueryResponse};
use lamina_execution_core::ledger::{self, AssetId};
use lamina_interfaces::{BridgeMessage, ReceiptKind, SubmitOutcome, TxSubmit as _};
use lamina_primitives::{ChainId, Digest, Height, Keypair, PublicKey};

use crate::args::{ModuleCmd, parse_duration, parse_public_key};
use crate::bridge_net::NetBridge;
use crate::client::{NetArgs, Out, OutputArgs, with_net};

/// `lamina bridge ...`
#[derive(Debug, Subcommand)]
pub enum BridgeCmd {
    /// Module commands (init, start, config): the relayer.
    #[command(flatten)]
    Module(ModuleCmd),
    /// Move an asset to another chain: lock (or burn a wrapped asset going home) and
    /// follow the message until it is credited on the destination (or refunded).
    Transfer(TransferArgs),
    /// Where a message is: locked, proven, anchored, delivered, timed out, refunded.
    Status(StatusArgs),
    /// Check the supply invariant across every chain (exit status 1 when broken).
    Audit(AuditArgs),
}

/// `lamina bridge transfer` arguments.
#[derive(Debug, Clone, Args)]
pub struct TransferArgs {
    /// Source chain.
    #[arg(long)]
    pub from_chain: u64,
    /// Destination chain.
    #[arg(long)]
    pub to_chain: u64,
    /// Asset: `native` or an asset id on the source chain.
    #[arg(long, default_value = "native")]
    pub asset: String,
    /// Amount.
    #[arg(long)]
    pub amount: u64,
    /// Recipient on the destination (default: the sender's own key).
    #[arg(long, value_parser = parse_public_key)]
    pub to: Option<PublicKey>,
    /// Sender: this funded deterministic test account of the source chain (default 0).
    #[arg(long, conflicts_with = "key")]
    pub from_test_account: Option<u64>,
    /// Sender: the key in this file.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Log heights until the message times out (then it is refunded, not delivered).
    #[arg(long, default_value_t = 10_000)]
    pub timeout_heights: u64,
    /// Return once the lock is executed.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to follow the message.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The network.
    #[command(flatten)]
    pub net: NetArgs,
}

/// `lamina bridge status` arguments.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The message id (64 hex digits, as `transfer` prints it).
    pub id: String,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
    /// The network.
    #[command(flatten)]
    pub net: NetArgs,
}

/// `lamina bridge audit` arguments.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The network.
    #[command(flatten)]
    pub net: NetArgs,
}

/// Runs a bridge client command.
pub fn run(cmd: BridgeCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BridgeCmd::Module(_) => unreachable!("module commands are dispatched by the cli"),
        BridgeCmd::Transfer(a) => with_net(&a.net, a.key.as_deref(), async |net| {
            let bridge = NetBridge::register(&net.endpoint, &net.genesis)?;
            net.route_to_committee(bridge.intake()).await;
            transfer(&bridge, &a).await
        }),
        BridgeCmd::Status(a) => with_net(&a.net, None, async |net| {
            let bridge = NetBridge::register(&net.endpoint, &net.genesis)?;
            status(&bridge, &a.id, Out::new(a.output)).await
        }),
        BridgeCmd::Audit(a) => with_net(&a.net, None, async |net| {
            let bridge = NetBridge::register(&net.endpoint, &net.genesis)?;
            audit(&bridge, a.json).await
        }),
    }
}

const POLL: Duration = Duration::from_millis(200);

async fn transfer(bridge: &NetBridge, a: &TransferArgs) -> anyhow::Result<ExitCode> {
    let (src, dest) = (ChainId(a.from_chain), ChainId(a.to_chain));
    let g = bridge.genesis();
    let spec = g.chain(src).with_context(|| format!("chain {src} is not in the genesis"))?;
    g.chain(dest).with_context(|| format!("chain {dest} is not in the genesis"))?;
    if !g.bridge.enabled {
        bail!("this network's genesis does not enable the bridge");
    }
    let asset = match a.asset.as_str() {
        "native" => AssetId::NATIVE,
        s => AssetId(s.parse().with_context(|| format!("--asset {s:?}: `native` or a numeric asset id"))?),
    };
    let sender = match &a.key {
        Some(p) => crate::keys::read(p).context("cannot read the sender key")?,
        None => {
            let i = a.from_test_account.unwrap_or(0);
            if i >= spec.funded_test_accounts {
                bail!(
                    "chain {src} has {} funded test accounts; account {i} is out of range",
                    spec.funded_test_accounts
                );
            }
            Keypair::for_testing(spec.funded_test_accounts_seed + i)
        }
    };
    let to = a.to.unwrap_or(sender.public());
    let nonce = bridge.nonce(src, sender.public()).await.map_err(anyhow::Error::msg)?;
    let tx = ledger::bridge_lock(
        &sender,
        bridge.genesis().tx_scope(),
        src,
        nonce,
        asset,
        a.amount,
        dest,
        to,
        a.timeout_heights,
    );
    let tx_id = tx.id();
    let intake = bridge.intake();
    intake.wait_for_validators(1, Duration::from_secs(10)).await.context("consensus intake unreachable")?;
    match intake.submit(tx).await.map_err(|e| anyhow::anyhow!("intake refused the lock {tx_id}: {e}"))? {
        SubmitOutcome::Accepted(_) | SubmitOutcome::Duplicate(_) => {}
    }
    println!("tx: {tx_id}");
    let started = Instant::now();
    let deadline = |what: &str| -> anyhow::Result<()> {
        if started.elapsed() > a.timeout {
            bail!("timed out after {:?} waiting for {what}", a.timeout);
        }
        Ok(())
    };
    // 1. The lock executes.
    let lock_height = loop {
        if let QueryResponse::Receipt(Some((h, r))) =
            bridge.ask(src, &QueryRequest::Receipt(tx_id)).await.map_err(anyhow::Error::msg)?
        {
            if !r.is_success() {
                println!("lock: {:?} at height {}", r.status, h.0);
                return Ok(ExitCode::FAILURE);
            }
            break h;
        }
        deadline("the lock to execute")?;
        tokio::time::sleep(POLL).await;
    };
    let message = find_own(bridge, src, dest, &sender.public(), nonce).await?;
    let id = message.message.id();
    println!(
        "locked: message {id} (chain {src} → {dest}, sequence {}) at height {}",
        message.message.sequence, lock_height.0
    );
    let local = ledger::local_asset(dest, message.message.origin);
    println!(
        "credited asset on chain {dest}: {} ({})",
        local.0,
        if local == AssetId(message.message.origin.asset) && message.message.origin.chain == dest {
            "unlocked from escrow"
        } else {
            "wrapped"
        }
    );
    if a.no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    // 2. Covered by a finalized claim.
    let seq = message.message.sequence;
    let anchor = loop {
        let e = bridge.outbox(src, dest, seq).await.map_err(anyhow::Error::msg)?.1.into_iter().next();
        if let Some((at, _)) = e.and_then(|e| e.proof)
            && let Some(anchor) = bridge.anchor(src, at).await.map_err(anyhow::Error::msg)?
            && anchor.to == at
        {
            break anchor;
        }
        deadline("a finalized claim covering the lock")?;
        tokio::time::sleep(POLL).await;
    };
    println!(
        "finalized: claim to height {} anchored (index {}) at height {}",
        anchor.to.0,
        anchor.index.to_owned(),
        anchor.finalized_at.0
    );
    // 3. Received on the destination (or timed out and refunded).
    let receipt = loop {
        let (_, items) = bridge.receipts(dest, src, seq).await.map_err(anyhow::Error::msg)?;
        if let Some(r) = items.into_iter().find(|e| e.message.sequence == seq) {
            break r;
        }
        deadline("the receive on the destination")?;
        tokio::time::sleep(POLL).await;
    };
    match receipt.receipt {
        Some(ReceiptKind::Delivered) => {
            println!(
                "received: chain {dest} credited {} to {} at height {}",
                message.message.amount, to, receipt.written_at.0
            );
            let lat = receipt.written_at.0.saturating_sub(lock_height.0);
            println!("latency: {lat} heights, {:.1} s", started.elapsed().as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            println!("timed out: chain {dest} recorded the timeout at height {}", receipt.written_at.0);
            loop {
                let e = bridge.outbox(src, dest, seq).await.map_err(anyhow::Error::msg)?.1.into_iter().next();
                if let Some(h) = e.and_then(|e| e.refunded_at) {
                    println!("refunded: chain {src} returned {} at height {}", message.message.amount, h.0);
                    return Ok(ExitCode::FAILURE);
                }
                deadline("the refund")?;
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// The outbox entry written by `sender`'s lock with `nonce` (scans the channel).
async fn find_own(
    bridge: &NetBridge,
    src: ChainId,
    dest: ChainId,
    sender: &PublicKey,
    nonce: u64,
) -> anyhow::Result<Entry> {
    let all = bridge.all_outbox(src, dest, 0).await.map_err(anyhow::Error::msg)?;
    all.into_iter()
        .rev()
        .find(|e| e.message.sender == *sender && e.message.nonce == nonce)
        .with_context(|| format!("the lock executed but chain {src}'s execution node does not list its message"))
}

async fn status(bridge: &NetBridge, id: &str, mut out: Out) -> anyhow::Result<ExitCode> {
    let id = Digest::from_hex(id).map_err(|_| anyhow::anyhow!("bad message id {id:?} (64 hex digits)"))?;
    for src in bridge.chains() {
        for dest in bridge.chains() {
            if src == dest {
                continue;
            }
            let all = bridge.all_outbox(src, dest, 0).await.map_err(anyhow::Error::msg)?;
            let Some(e) = all.into_iter().find(|e| e.message.id() == id) else { continue };
            print_status(bridge, &e.message, &e, &mut out).await?;
            out.finish();
            return Ok(ExitCode::SUCCESS);
        }
    }
    out.put("message", id);
    out.put("state", "not found in any chain's outbox");
    out.finish();
    Ok(ExitCode::FAILURE)
}

/// The message's life so far: `key: value` lines, or one JSON object with `--json`
/// (`state` is the furthest stage reached: locked, proven, finalized, delivered,
/// timed_out or refunded).
async fn print_status(bridge: &NetBridge, m: &BridgeMessage, e: &Entry, out: &mut Out) -> anyhow::Result<()> {
    out.put("message", m.id());
    out.put("channel", format!("chain {} → chain {}, sequence {}", m.source, m.dest, m.sequence));
    out.raw("source", m.source.0.into());
    out.raw("dest", m.dest.0.into());
    out.raw("sequence", m.sequence.into());
    out.put(
        "amount",
        format!("{} (origin chain {} asset {}), to {}", m.amount, m.origin.chain, m.origin.asset, m.recipient),
    );
    out.raw("value", m.amount.to_string().into());
    out.raw("recipient", m.recipient.to_hex().into());
    out.put("locked", format!("height {} (timeout height {})", e.written_at.0, m.timeout.0));
    out.raw("locked_at", e.written_at.0.into());
    out.raw("timeout", m.timeout.0.into());
    let mut state = "locked";
    match e.proof {
        None => out.put("proven", "not yet (no claim cut since the lock)"),
        Some((at, _)) => match bridge.anchor(m.source, at).await.map_err(anyhow::Error::msg)? {
            Some(a) if a.to == at => {
                state = "finalized";
                out.put(
                    "finalized",
                    format!("anchor {} (to height {}) at height {}", a.index, a.to.0, a.finalized_at.0),
                );
                out.raw("finalized_at", a.finalized_at.0.into());
            }
            _ => {
                state = "proven";
                out.put("proven", format!("at claim cut {} (not finalized yet)", at.0));
            }
        },
    }
    let (_, r) = bridge.receipts(m.dest, m.source, m.sequence).await.map_err(anyhow::Error::msg)?;
    match r.into_iter().find(|r| r.message.sequence == m.sequence) {
        None => out.put("destination", "not received yet"),
        Some(r) => {
            let kind = r.receipt.unwrap_or(ReceiptKind::Delivered);
            state = match kind {
                ReceiptKind::Delivered => "delivered",
                _ => "timed_out",
            };
            out.put("destination", format!("{kind:?} at height {}", r.written_at.0));
            out.raw("received_at", r.written_at.0.into());
        }
    }
    if let Some(h) = e.refunded_at {
        state = "refunded";
        out.put("refunded", format!("height {}", h.0));
        out.raw("refunded_at", h.0.into());
    }
    out.raw("state", state.into());
    Ok(())
}

async fn audit(bridge: &NetBridge, json: bool) -> anyhow::Result<ExitCode> {
    let chains = bridge.chains();
    let mut first = Vec::new();
    for c in &chains {
        first.push(bridge.totals(*c).await.map_err(anyhow::Error::msg)?);
    }
    let top = first.iter().map(|t| t.height).max().unwrap_or(Height(0));
    // The second read is at a height at least the first's highest on every chain.
    let mut second = Vec::new();
    let started = Instant::now();
    for c in &chains {
        loop {
            let t = bridge.totals(*c).await.map_err(anyhow::Error::msg)?;
            if t.height >= top {
                second.push(t);
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("chain {c} stays below height {} (at {}): cannot audit a consistent cut", top.0, t.height.0);
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let heights: Vec<String> = second.iter().map(|t| format!("chain {} at {}", t.chain, t.height.0)).collect();
    match lamina_bridge_core::audit(&first, &second) {
        Ok(r) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": true, "pairs": r.pairs, "escrowed": r.escrowed.to_string(), "wrapped": r.wrapped.to_string(), "heights": heights})
                );
            } else {
                println!(
                    "audit: ok ({} asset routes; escrowed {}, wrapped {}; {})",
                    r.pairs,
                    r.escrowed,
                    r.wrapped,
                    heights.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(v) => {
            if json {
                let list: Vec<String> = v.iter().map(ToString::to_string).collect();
                println!("{}", serde_json::json!({"ok": false, "violations": list, "heights": heights}));
            } else {
                println!("audit: BROKEN ({})", heights.join(", "));
                for x in &v {
                    println!("  {x}");
                }
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
