//! The data-availability module: a DA storage node (stores columns of erasure-coded squares, signs availability).
//!
//! Until the module's protocol lands, its service is the shared peer service of
//! [`crate::peers`]: it binds the node's QUIC endpoint on its genesis address with its
//! pinned key, keeps connections to the peers its role needs, reports them in `/status`
//! and `/readyz`, and on shutdown stops accepting, closes connections and returns.
//!
//! Peers (issue 2): a DA node dials no one; it accepts validators (dispersal) and
//! execution nodes (retrieval), and reports who is connected. It is ready once its
//! endpoint is bound and serving: its clients connect to it, not the reverse.
//!
//! To plug in the real service, replace `Config` with `lamina_da_service::Config` (keeping
//! a [`ModuleConfig`] impl) and the body of [`start`] with
//! `lamina_da_service::run(ctx.service, config, shutdown)` (binding its endpoint with
//! `ctx.endpoint`, which carries the `[net]` settings and the listen address).

use tokio_util::sync::CancellationToken;

use crate::config::AnnotatedToml;
use crate::context::NodeContext;
use crate::modules::{Module, ModuleConfig};
use crate::peers::PeerPlan;

/// Settings of the da module (the `[da]` section). None yet: the da service
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
    PeerPlan::new().accept("validators", Module::Consensus, g.validators.clone()).accept(
        "execution_nodes",
        Module::Execution,
        g.execution_nodes.clone(),
    )
}

/// Runs the da service until `shutdown`.
pub async fn start(ctx: NodeContext, _config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let plan = peer_plan(&ctx);
    crate::peers::run(ctx, plan, shutdown).await
}
