//! The consensus module: a BFT validator (mempool, batcher, ordering).
//!
//! Until the module's protocol lands, its service is the shared peer service of
//! [`crate::peers`]: it binds the node's QUIC endpoint on its genesis address with its
//! pinned key, keeps connections to the peers its role needs, reports them in `/status`
//! and `/readyz`, and on shutdown stops accepting, closes connections and returns.
//!
//! Peers (issue 2): it dials the other validators (ready with a quorum of the
//! committee counting itself, `n - f - 1` others) and the DA nodes (ready with as many as
//! an availability certificate needs, the DA threshold), and accepts connections from
//! execution, settlement and bridge nodes.
//!
//! To plug in the real service, replace `Config` with `lamina_consensus_service::Config` (keeping
//! a [`ModuleConfig`] impl) and the body of [`start`] with
//! `lamina_consensus_service::run(ctx.service, config, shutdown)` (binding its endpoint with
//! `ctx.endpoint`, which carries the `[net]` settings and the listen address).

use tokio_util::sync::CancellationToken;

use crate::config::AnnotatedToml;
use crate::context::NodeContext;
use crate::modules::{Module, ModuleConfig};
use crate::peers::{Need, PeerPlan, others};

/// Settings of the consensus module (the `[consensus]` section). None yet: the consensus service
/// brings its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

impl ModuleConfig for Config {
    fn validate(&self) -> anyhow::Result<()> {
        Ok(())
    }

    fn annotate(&self, doc: &mut AnnotatedToml) {
        doc.comment("(no settings yet: this module currently runs the shared peer service)");
    }
}

/// The peers this node needs, and which it accepts.
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

/// Runs the consensus service until `shutdown`.
pub async fn start(ctx: NodeContext, _config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let plan = peer_plan(&ctx);
    crate::peers::run(ctx, plan, shutdown).await
}
