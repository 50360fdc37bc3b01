//! The consensus module: a BFT validator (mempool, batcher, ordering).
//!
//! The service is `lamina_consensus_service::run_on`: it binds the node's QUIC endpoint
//! (the `[net]` settings and listen address, else the genesis address) with its pinned
//! key and serves, on that one endpoint, `lamina/consensus/1` to the other validators,
//! `lamina/intake/1` (transaction intake) and `lamina/log/1` (the ordered log) to every
//! genesis node and the configured `intake_clients`, plus the HTTP/JSON intake on the
//! validator's genesis `http` address. Batches are made available through the DA
//! client (`lamina_da_service::DaClient`, `lamina/da/1`, dialing the genesis DA nodes)
//! registered on the same endpoint. The WAL and the ordered log live under
//! `data/consensus/`.
//!
//! Readiness: `peers` (a quorum of validators connected, counting this one) and
//! `caught_up` (no finalized block known that is not yet in the local log), plus the
//! shared `lamina/node/1` genesis check's per-group needs (see [`peer_plan`] and
//! [`crate::peers`]), which also lets nodes still on the shared peer service see this
//! one.

use std::time::Duration;

use anyhow::Context as _;
use lamina_net::Endpoint;
use tokio_util::sync::CancellationToken;

use crate::annotated::AnnotatedToml;
use crate::context::NodeContext;
use crate::module::{Module, ModuleConfig};
use crate::peers::{Need, PeerPlan, others};

/// Settings of the consensus module (the `[consensus]` section): the consensus
/// service's own config, wrapped so that this file can give it its [`ModuleConfig`]
/// impl.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Config(pub lamina_consensus_service::Config);

impl ModuleConfig for Config {
    fn validate(&self) -> anyhow::Result<()> {
        Ok(self.0.validate()?)
    }

    fn annotate(&self, doc: &mut AnnotatedToml) {
        let c = &self.0;
        doc.field(
            "Time to wait for a view's proposal before voting to skip the view (ms).",
            "leader_timeout_ms",
            &c.leader_timeout_ms,
        );
        doc.field(
            "Time to wait for a view's notarization before voting to skip it (ms; >= leader_timeout_ms).",
            "notarization_timeout_ms",
            &c.notarization_timeout_ms,
        );
        doc.field(
            "Retry period: re-send skip votes and certificates, re-ask peers for missing blocks (ms).",
            "retry_interval_ms",
            &c.retry_interval_ms,
        );
        doc.field(
            "Idle heartbeat: a leader with nothing to order waits this long before an empty block (ms).",
            "empty_block_delay_ms",
            &c.empty_block_delay_ms,
        );
        doc.field("Most batches (DA squares) ordered by one block.", "max_batches_per_block", &c.max_batches_per_block);
        doc.optional(
            "HTTP/JSON intake address (POST /v1/tx, /v1/txs; GET /v1/tip). Default: this validator's `http`\n\
             address in the genesis.",
            "http_listen",
            &c.http_listen,
            "\"127.0.0.1:8100\"",
        );
        doc.field(
            "Public keys (hex) of clients allowed to use the QUIC intake and ordered log besides genesis nodes\n\
             (load generators, gateways).",
            "intake_clients",
            &c.intake_clients,
        );
        doc.field(
            "WAL segment size under data/consensus/wal (bytes; multiple of 4096).",
            "wal_segment_bytes",
            &c.wal_segment_bytes,
        );
        doc.field(
            "Ordered-log segment size under data/consensus/log (bytes; multiple of 4096).",
            "log_segment_bytes",
            &c.log_segment_bytes,
        );
        doc.field("Most blocks per ordered-log read and per catch-up answer.", "log_max_blocks", &c.log_max_blocks);
        doc.field(
            "Finalized blocks kept below the tip in the ordered log (0: all). Older segments are deleted and\n\
             reads below the oldest kept height answer \"pruned\": a lagging execution node must state-sync, and\n\
             readers that start from genesis (a new settlement node, a far-behind validator) need a validator\n\
             that keeps more. 0 or at least 10000.",
            "log_retain_heights",
            &c.log_retain_heights,
        );
        doc.field(
            "TEST/DEMO ONLY: disperse every square with a wrongly encoded row (a Byzantine disperser).",
            "faulty_dispersal",
            &c.faulty_dispersal,
        );
        let m = &c.mempool;
        doc.section(
            "consensus.mempool",
            "Mempool limits and intake checks. A full mempool answers \"busy\" (backpressure).",
        );
        doc.field(
            "Most transactions held (queued, being made available, or waiting to be ordered).",
            "max_txs",
            &m.max_txs,
        );
        doc.field("Most payload bytes held.", "max_bytes", &m.max_bytes);
        doc.field("Most transactions held per sender.", "max_per_sender", &m.max_per_sender);
        doc.field("Largest transaction accepted (bytes).", "max_tx_bytes", &m.max_tx_bytes);
        doc.field(
            "Verify signatures (ZIP-215) on intake. Turn off only to measure ordering capacity.",
            "verify_signatures",
            &m.verify_signatures,
        );
        doc.field(
            "Remembered ids of recently ordered transactions (duplicate detection).",
            "recent_ids",
            &m.recent_ids,
        );
        doc.field(
            "Senders (per chain) whose next expected nonce is remembered while they have nothing held.",
            "max_tracked_senders",
            &m.max_tracked_senders,
        );
        doc.field(
            "A transaction beyond a nonce gap waits this long (ms) for the missing nonce, then is queued anyway.",
            "nonce_gap_ms",
            &m.nonce_gap_ms,
        );
        doc.field(
            "A sender's first transaction, if its nonce is above 0, waits this long (ms) for lower ones in flight.",
            "new_sender_wait_ms",
            &m.new_sender_wait_ms,
        );
        doc.field(
            "Accepted = durable: answer only once a transaction is synced to the intake log (restored after a crash).",
            "durable_intake",
            &m.durable_intake,
        );
        let b = &c.batch;
        doc.section("consensus.batch", "Batching: one DA square per cut, one blob per chain (namespace).");
        doc.field("Cut when this many transaction bytes are queued.", "max_bytes", &b.max_bytes);
        doc.field(
            "... or when the oldest queued transaction has waited this long (ms). Fewer, larger squares cost\n\
             less per transaction; a lone transaction waits up to this long.",
            "max_delay_ms",
            &b.max_delay_ms,
        );
        doc.field("Dispersals to DA in flight at once.", "max_inflight", &b.max_inflight);
        doc.field("Wait before retrying a failed dispersal, doubling up to 5 s (ms).", "retry_ms", &b.retry_ms);
    }
}

/// The peers this node needs, and which it accepts, on the shared `lamina/node/1`
/// genesis check: reported in `/status` (`peers`) with readiness checks per dialed group
/// (`peers:validators`, `peers:da_nodes`), next to the service's own `peers` and
/// `caught_up` checks on its consensus connections.
pub fn peer_plan(ctx: &NodeContext) -> PeerPlan {
    let g = ctx.genesis();
    let committee = g.validator_committee();
    PeerPlan::new()
        .dial("validators", Module::Consensus, others(&g.validators, &ctx.me), Need::AtLeast(committee.quorum() - 1))
        .dial("da_nodes", Module::Da, g.da_nodes.clone(), Need::AtLeast(g.da_threshold()))
        .accept("execution_nodes", Module::Execution, g.execution_nodes.clone())
        .accept("settlement_nodes", Module::Settlement, g.settlement_nodes.clone())
        .accept("bridge_nodes", Module::Bridge, g.bridge_nodes.clone())
}

/// Runs the consensus validator until `shutdown`.
pub async fn start(ctx: NodeContext, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let endpoint = Endpoint::bind(ctx.key(), ctx.endpoint.clone())
        .with_context(|| format!("cannot bind the QUIC endpoint on {}", ctx.endpoint.listen))?;
    let da_config =
        lamina_da_service::ClientConfig { faulty_encoding: config.0.faulty_dispersal, ..Default::default() };
    if config.0.faulty_dispersal {
        tracing::warn!(target: "lamina::consensus", "faulty_dispersal is on: every square this validator disperses is wrongly encoded (test/demo only)");
    }
    let da = match lamina_da_service::DaClient::register(&endpoint, ctx.genesis(), da_config) {
        Ok(d) => d,
        Err(e) => {
            endpoint.shutdown().await;
            return Err(e).context("cannot start the DA client");
        }
    };
    let reporter = crate::peers::serve_alongside(&ctx, &endpoint, peer_plan(&ctx), &shutdown).await?;
    endpoint.report_to(ctx.health().clone(), Duration::from_millis(ctx.net.stats_interval_ms));
    let result = lamina_consensus_service::run_on(endpoint, ctx.service, config.0, da, shutdown).await;
    reporter.abort();
    Ok(result?)
}
