//! The bridge module: a relayer between chains (outbox messages proven against finalized roots).
//!
//! Until the module's protocol lands, its service is the shared peer service of
//! [`crate::peers`]: it binds the node's QUIC endpoint on its genesis address with its
//! pinned key, keeps connections to the peers its role needs, reports them in `/status`
//! and `/readyz`, and on shutdown stops accepting, closes connections and returns.
//!
//! Peers (issue 2): it dials the validators (ready with `f + 1`) and the execution
//! nodes (ready with at least one node of every chain that has execution nodes).
//!
//! To plug in the real service, replace `Config` with `lamina_bridge_service::Config` (keeping
//! a [`ModuleConfig`] impl) and the body of [`start`] with
//! `lamina_bridge_service::run(ctx.service, config, shutdown)` (binding its endpoint with
//! `ctx.endpoint`, which carries the `[net]` settings and the listen address).

use tokio_util::sync::CancellationToken;

use crate::config::AnnotatedToml;
use crate::context::NodeContext;
use crate::modules::{Module, ModuleConfig};
use crate::peers::{Need, PeerPlan};

/// Settings of the bridge module (the `[bridge]` section). None yet: the bridge service
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
    let v = g.validator_committee();
    PeerPlan::new().dial("validators", Module::Consensus, g.validators.clone(), Need::AtLeast(v.max_faulty() + 1)).dial(
        "execution_nodes",
        Module::Execution,
        g.execution_nodes.clone(),
        Need::OnePerChain,
    )
}

/// Runs the bridge service until `shutdown`.
pub async fn start(ctx: NodeContext, _config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let plan = peer_plan(&ctx);
    crate::peers::run(ctx, plan, shutdown).await
}
