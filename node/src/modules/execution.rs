//! The execution module: executes one chain's batches from the ordered log and DA.
//!
//! Until the module's protocol lands, its service is the shared peer service of
//! [`crate::peers`]: it binds the node's QUIC endpoint on its genesis address with its
//! pinned key, keeps connections to the peers its role needs, reports them in `/status`
//! and `/readyz`, and on shutdown stops accepting, closes connections and returns.
//!
//! Peers (issue 2): it dials the validators (ready with `f + 1`, so at least one is
//! honest) and the DA nodes (ready with `n - t + 1` for DA threshold `t`, so at least one
//! signer of every availability certificate is reachable), and accepts bridge relayers.
//!
//! To plug in the real service, replace `Config` with `lamina_execution_service::Config` (keeping
//! a [`ModuleConfig`] impl) and the body of [`start`] with
//! `lamina_execution_service::run(ctx.service, config, shutdown)` (binding its endpoint with
//! `ctx.endpoint`, which carries the `[net]` settings and the listen address).

use tokio_util::sync::CancellationToken;

use crate::config::AnnotatedToml;
use crate::context::NodeContext;
use crate::modules::{Module, ModuleConfig};
use crate::peers::{Need, PeerPlan};

/// Settings of the execution module (the `[execution]` section). None yet: the execution service
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
    let da_needed = g.da_nodes.len() - g.da_threshold() + 1;
    PeerPlan::new()
        .dial("validators", Module::Consensus, g.validators.clone(), Need::AtLeast(v.max_faulty() + 1))
        .dial("da_nodes", Module::Da, g.da_nodes.clone(), Need::AtLeast(da_needed))
        .accept("bridge_nodes", Module::Bridge, g.bridge_nodes.clone())
}

/// Runs the execution service until `shutdown`.
pub async fn start(ctx: NodeContext, _config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let plan = peer_plan(&ctx);
    crate::peers::run(ctx, plan, shutdown).await
}
