//! The bridge module: a relayer between the chains of the network
//! ([`lamina_bridge_service::Relayer`]).
//!
//! It binds the node's QUIC endpoint with its pinned key, registers the execution,
//! settlement and intake clients ([`crate::bridge_net::NetBridge`]), keeps its progress
//! in `<data>/relayer.json`, and relays until shutdown. Anyone may run one: the
//! destination ledgers check every proof, so a relayer is trusted for liveness only.
//!
//! Peers: it dials the validators (ready with `f + 1`) and the execution nodes (ready
//! with at least one node of every chain that has execution nodes).
//!
//! It follows governance like the other client nodes (its own log and DA readers, state
//! in `<data>/governance`): where committees change by vote, its readiness counts the
//! epoch's validators and its intake client submits to the epoch's committee.

use std::time::Duration;

use anyhow::Context as _;
use lamina_net::Endpoint;
use tokio_util::sync::CancellationToken;

use crate::context::NodeContext;
use crate::module::{Module, ModuleConfig};
use crate::peers::{Need, PeerPlan};

/// Settings of the bridge module (the `[bridge]` section): the relayer's own.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Config(pub lamina_bridge_service::Config);

impl ModuleConfig for Config {
    fn validate(&self) -> anyhow::Result<()> {
        Ok(self.0.validate()?)
    }
}

/// The peers this node needs, and which it accepts.
pub fn peer_plan(ctx: &NodeContext) -> PeerPlan {
    let g = ctx.genesis();
    let v = g.validator_committee();
    PeerPlan::new().dial("validators", Module::Consensus, g.validators.clone(), Need::AtLeast(v.max_faulty() + 1)).dial(
        "execution_nodes",
        Module::Execution,
        g.execution_nodes.clone(),
        Need::OnePerChain,
    )
}

/// Runs the relayer until `shutdown`.
pub async fn start(ctx: NodeContext, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    if !ctx.genesis().bridge.enabled {
        anyhow::bail!("the genesis does not enable the bridge ([bridge] enabled = false): nothing to relay");
    }
    let endpoint = Endpoint::bind(ctx.key(), ctx.endpoint.clone())
        .with_context(|| format!("cannot bind the QUIC endpoint on {}", ctx.endpoint.listen))?;
    let net = match crate::bridge_net::NetBridge::register(&endpoint, ctx.genesis()) {
        Ok(n) => n,
        Err(e) => {
            endpoint.shutdown().await;
            return Err(e);
        }
    };
    let readers = (|| {
        let log = lamina_consensus_client::LogClient::register(&endpoint, ctx.genesis())
            .context("cannot start the ordered-log client")?;
        let da = lamina_da_client::DaClient::register(&endpoint, ctx.genesis(), Default::default())
            .context("cannot start the DA client")?;
        anyhow::Ok((log, std::sync::Arc::new(da)))
    })();
    let (log, da) = match readers {
        Ok(r) => r,
        Err(e) => {
            endpoint.shutdown().await;
            return Err(e);
        }
    };
    let (reporter, plan) = crate::peers::serve_alongside(&ctx, &endpoint, peer_plan(&ctx), &shutdown).await?;
    endpoint.report_to(ctx.health().clone(), Duration::from_millis(ctx.net.stats_interval_ms));
    // Governance: the committee its readiness counts and its transactions go to. (It
    // reads no parameter: the destination ledgers apply them.)
    let _params = crate::governed::spawn_on_client_node(&ctx, &log, &da, net.intake(), &plan, &shutdown);
    let result = async {
        let mut relayer =
            lamina_bridge_service::Relayer::open(net, ctx.key().clone(), config.0, &ctx.service.data_dir)?;
        tracing::info!(target: "lamina::bridge", key = %ctx.key().public(), "relaying");
        relayer.run(ctx.health(), &shutdown).await?;
        anyhow::Ok(())
    }
    .await;
    reporter.abort();
    endpoint.shutdown().await;
    result
}
