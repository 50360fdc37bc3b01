//! The data-availability module: a DA storage node (stores columns of erasure-coded squares, signs availability).
//!
//! The service is `lamina_da_service::run_following`: it binds the node's QUIC endpoint (the `[net]`
//! settings and listen address, else the genesis address) with its pinned key, serves
//! `lamina/da/1..2` to every genesis node (validators disperse, execution nodes retrieve,
//! any node may sample), keeps the columns it is assigned in a column store under
//! `data/columns`, signs availability attestations, follows the ordered log (the
//! consensus layer's verifying QUIC client, read once per prune tick) to learn which
//! block ordered each square, and prunes squares ordered more than `retain_heights`
//! below the tip (squares no block carried: after `retention_secs`). Readiness: the
//! `store` and `endpoint` checks. On shutdown it stops intake, drains in-flight
//! requests and closes the store.
//!
//! It follows governance too (`crate::governed`): each epoch's client keys apply to its
//! DA protocol without a restart, and where committees change by vote it stores for the
//! DA committees governance decided (a DA node the genesis does not list starts and
//! serves reads until one names it). The follower reads governance squares through the
//! node's own `lamina/da` registration, so DA nodes dial each other.

use anyhow::Context as _;
use lamina_net::Endpoint;
use tokio_util::sync::CancellationToken;

use crate::context::NodeContext;
use crate::module::{Module, ModuleConfig};
use crate::peers::PeerPlan;

/// Settings of the da module (the `[da]` section): the DA service's own config
/// (`lamina_da_service::Config`), wrapped so that this file can give it its
/// [`ModuleConfig`] impl.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Config(pub lamina_da_service::Config);

impl ModuleConfig for Config {
    fn validate(&self) -> anyhow::Result<()> {
        Ok(self.0.validate()?)
    }
}

/// The peers a DA node talks to: it dials the validators only to read the ordered log
/// (once per prune tick); validators (dispersal) and execution nodes (retrieval)
/// connect to it. (The service itself accepts every genesis node, so
/// that any node may sample; this plan is what the shared peer service reports.)
pub fn peer_plan(ctx: &NodeContext) -> PeerPlan {
    let g = ctx.genesis();
    PeerPlan::new()
        .accept("validators", Module::Consensus, g.validators.clone())
        .accept("execution_nodes", Module::Execution, g.execution_nodes.clone())
        .accept("settlement_nodes", Module::Settlement, g.settlement_nodes.clone())
}

/// Runs the DA storage node until `shutdown`. The endpoint also answers the shared
/// `lamina/node/1` genesis check (see [`crate::peers`]) for the nodes of
/// [`peer_plan`], so that peers still on the shared peer service see this node.
pub async fn start(ctx: NodeContext, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut config = config.0;
    config.net = ctx.endpoint.clone();
    let endpoint = Endpoint::bind(ctx.key(), ctx.endpoint.clone())
        .with_context(|| format!("cannot bind the QUIC endpoint on {}", ctx.endpoint.listen))?;
    let (reporter, plan) = crate::peers::serve_alongside(&ctx, &endpoint, peer_plan(&ctx), &shutdown).await?;
    let log = lamina_consensus_client::LogClient::register(&endpoint, ctx.genesis())
        .context("cannot start the ordered-log client")?;
    // Governance: each epoch's client keys apply to this node's DA protocol. Its reads of
    // governance squares go through the node's own registration (to the other DA
    // nodes), handed over once the node serves.
    let (reads, registered) = tokio::sync::oneshot::channel();
    let stop_follower = shutdown.child_token();
    // Reads never ask this node itself, so a DA node alone in its committee has no one
    // to read governance squares from (not built: reading its own columns).
    let alone = ctx.genesis().da_committee().members.iter().all(|m| *m == endpoint.node_id());
    // The DA committees changed by vote this node stores for, from its follower.
    let committees = lamina_da_service::DaCommittees::default();
    if alone {
        tracing::warn!(target: "lamina::governance", "this DA node is the only one in the DA committee and cannot read governance squares: it keeps the genesis client keys");
    } else {
        let (genesis, reader, me) = (ctx.genesis().clone(), log.independent_reader(), endpoint.node_id());
        let stop = stop_follower.clone();
        let (access, health) = (ctx.service.access.clone(), ctx.health().clone());
        let dir = ctx.service.data_dir.join("governance");
        let stores_for = committees.clone();
        tokio::spawn(async move {
            let Ok(net) = registered.await else { return };
            let da = match lamina_da_client::DaClient::over(net, me, &genesis, Default::default()) {
                Ok(da) => std::sync::Arc::new(da),
                Err(e) => {
                    tracing::error!(target: "lamina::governance", error = %e, "DA reads for governance unavailable; this node keeps the genesis client keys");
                    return;
                }
            };
            let follower = crate::governed::Follower::resume(&genesis, reader.clone(), da.clone(), &dir);
            // DA nodes read no parameter; where committees change, the log client checks
            // each block against its height's committee.
            let g = genesis.clone();
            let on_update = move |state: &lamina_governance_core::GovernanceState| {
                crate::governed::follow_committees(&reader, &g, state);
                // Where committees change, it stores for (and reads under) each DA
                // committee governance decided, and dials their nodes.
                if let Some(committees) = crate::governed::da_committees(&g, state) {
                    stores_for.set(committees.committees.clone());
                    committees.apply(&da);
                }
                // Validators added by vote pass this node's `lamina/node/1` check, and
                // store their batches here without a client quota.
                if let Some(validators) = crate::governed::member_validators(&g, state) {
                    stores_for.set_validators(validators.iter().map(|v| v.key));
                    plan.set_group("validators", validators, None);
                }
            };
            crate::governed::spawn_client_access(genesis, follower, access, None, health, on_update, stop);
        });
    }
    let reads = (!alone).then_some(reads);
    let result =
        lamina_da_service::run_following(endpoint, ctx.service, config, log, reads, committees, shutdown).await;
    // Stops the follower; one not started yet ends when the service drops its handle.
    stop_follower.cancel();
    reporter.abort();
    Ok(result?)
}
